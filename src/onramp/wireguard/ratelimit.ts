/**
 * Per-source handshake rate limit (wireguard-go ratelimiter: a token bucket per source IP, 20 packets/s with a
 * burst of 5). Applied to handshake messages while the device is under load, after mac2 has shown that the
 * sender owns its source address (whitepaper §5.3, §5.4.7). The table is bounded: when full, the source heard
 * from least recently is forgotten (a Map iterates in insertion order and we re-insert on every use).
 * Handshake path only: IPv6 string keys are fine here, never on the data path.
 */
import { RATELIMIT_BURST, RATELIMIT_MAX_ENTRIES, RATELIMIT_PACKETS_PER_SECOND } from './constants.js';

/** Tokens are milliseconds of credit: one packet costs 1000 / rate ms. */
const PACKET_COST_MS = 1000 / RATELIMIT_PACKETS_PER_SECOND;
const MAX_TOKENS_MS = PACKET_COST_MS * RATELIMIT_BURST;

interface Bucket {
  tokens: number;
  last: number;
}

export class RateLimiter {
  private readonly buckets = new Map<number | string, Bucket>();
  constructor(private readonly maxEntries = RATELIMIT_MAX_ENTRIES) {}

  /** True when a handshake from `srcAddr` (an IPv4 address number, or a key for an IPv6 one) may be processed at `now` (ms). */
  allow(srcAddr: number | string, now: number): boolean {
    let bucket = this.buckets.get(srcAddr);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxEntries) {
        const oldest = this.buckets.keys().next();
        if (!oldest.done) this.buckets.delete(oldest.value);
      }
      bucket = { tokens: MAX_TOKENS_MS, last: now };
    } else {
      this.buckets.delete(srcAddr);
      bucket.tokens = Math.min(MAX_TOKENS_MS, bucket.tokens + Math.max(0, now - bucket.last));
      bucket.last = now;
    }
    this.buckets.set(srcAddr, bucket);
    if (bucket.tokens < PACKET_COST_MS) return false;
    bucket.tokens -= PACKET_COST_MS;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }
}
