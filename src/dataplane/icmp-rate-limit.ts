/**
 * Rate limiting of the ICMP errors the edge originates (RFC 1812 section 4.3.2.8: a router must be able to limit
 * the rate at which it generates ICMP errors; RFC 4443 section 2.4 (f): an IPv6 node must, with a token bucket).
 *
 * Two token buckets, both of which must have a token, as Linux does it (Documentation/networking/ip-sysctl.rst):
 * - per destination of the error (the offending packet's source, in its zone: two overlapping sites' 10.0.1.10
 *   are two senders), like the kernel's per-peer icmp_ratelimit;
 * - one for the whole edge, like the kernel's icmp_msgs_per_sec / icmp_msgs_burst (1000 per second, burst 50).
 *
 * The per-source buckets live in a fixed table of `slots` buckets indexed by a seeded hash of (zone, address):
 * no allocation, no key compare, constant memory whatever the number of sources. Sources whose hashes collide
 * share a bucket: a bucket still never gives out more than burst + rate × elapsed, so sharing only ever makes the
 * limit stricter for the sharers, never looser (an attacker with many sources is held by the global bucket).
 * A bucket's state is its tokens and the time they were counted; a slot never used starts full.
 *
 * Time is a parameter (ms, the pipeline's `now`). Tested against a per-key Map oracle (icmp-rate-limit.test.ts).
 */
import { finalMix, mixWord } from '../common/hash.js';

/** Per source: one error every 10 ms at the most on average (100 per second), bursts of up to 50. */
export const DEFAULT_ICMP_PER_SOURCE_PER_SECOND = 100;
export const DEFAULT_ICMP_PER_SOURCE_BURST = 50;
/** The whole edge: the kernel's icmp_msgs_per_sec and icmp_msgs_burst defaults. */
export const DEFAULT_ICMP_GLOBAL_PER_SECOND = 1000;
export const DEFAULT_ICMP_GLOBAL_BURST = 50;
/** Per-source buckets (a power of two): 4096 × 16 bytes. */
export const DEFAULT_ICMP_SOURCE_SLOTS = 4096;
const MS_PER_SECOND = 1000;
/** Sentinel "never used" time: such a slot is full. */
const NEVER = -1;

export interface IcmpRateLimitOptions {
  perSourcePerSecond?: number;
  perSourceBurst?: number;
  globalPerSecond?: number;
  globalBurst?: number;
  /** Per-source buckets; rounded up to a power of two. */
  slots?: number;
  hashSeed?: number;
}

export class IcmpRateLimit {
  readonly perSourceBurst: number;
  readonly perSourcePerMs: number;
  readonly globalBurst: number;
  readonly globalPerMs: number;
  private readonly mask: number;
  private readonly seed: number;
  private readonly tokens: Float64Array;
  private readonly stamp: Float64Array;
  private globalTokens: number;
  private globalStamp = NEVER;

  constructor(options: IcmpRateLimitOptions = {}) {
    const perSecond = options.perSourcePerSecond ?? DEFAULT_ICMP_PER_SOURCE_PER_SECOND;
    const burst = options.perSourceBurst ?? DEFAULT_ICMP_PER_SOURCE_BURST;
    const globalPerSecond = options.globalPerSecond ?? DEFAULT_ICMP_GLOBAL_PER_SECOND;
    const globalBurst = options.globalBurst ?? DEFAULT_ICMP_GLOBAL_BURST;
    for (const [name, v] of [['per-source rate', perSecond], ['per-source burst', burst], ['global rate', globalPerSecond], ['global burst', globalBurst]] as const) {
      if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`ICMP error ${name} must be a finite number ≥ 0, got ${v}`);
    }
    let slots = 1;
    while (slots < (options.slots ?? DEFAULT_ICMP_SOURCE_SLOTS)) slots <<= 1;
    this.mask = slots - 1;
    this.seed = options.hashSeed ?? 0;
    this.perSourceBurst = burst;
    this.perSourcePerMs = perSecond / MS_PER_SECOND;
    this.globalBurst = globalBurst;
    this.globalPerMs = globalPerSecond / MS_PER_SECOND;
    this.tokens = new Float64Array(slots);
    this.stamp = new Float64Array(slots).fill(NEVER);
    this.globalTokens = globalBurst;
  }

  /** The bucket of (zone, address words addr[at..at + words)). */
  slotOf(zone: number, addr: Uint32Array, at: number, words: number): number {
    let h = mixWord(this.seed, zone);
    for (let w = 0; w < words; w++) h = mixWord(h, addr[at + w]);
    return finalMix(h) & this.mask;
  }

  /**
   * May an error go to (zone, addr[at..at + words)) at `now` (ms)? Takes a token from its bucket and the global
   * one when both have one; takes nothing otherwise.
   */
  allow(zone: number, addr: Uint32Array, at: number, words: number, now: number): boolean {
    const slot = this.slotOf(zone, addr, at, words);
    const last = this.stamp[slot];
    let t = last === NEVER ? this.perSourceBurst : refill(this.tokens[slot], this.perSourceBurst, this.perSourcePerMs, now - last);
    let g = this.globalStamp === NEVER ? this.globalBurst : refill(this.globalTokens, this.globalBurst, this.globalPerMs, now - this.globalStamp);
    const ok = t >= 1 && g >= 1;
    if (ok) {
      t -= 1;
      g -= 1;
    }
    this.tokens[slot] = t;
    this.stamp[slot] = now;
    this.globalTokens = g;
    this.globalStamp = now;
    return ok;
  }
}

/** Tokens after `elapsed` ms at `perMs`, capped at `burst` (time going backwards adds nothing). */
function refill(tokens: number, burst: number, perMs: number, elapsed: number): number {
  const t = elapsed > 0 ? tokens + elapsed * perMs : tokens;
  return t < burst ? t : burst;
}
