/**
 * The lanes' ownership directory (docs/ARCHITECTURE.md "Lanes"): which lane owns a flow or a source-NAT mapping,
 * for the lane that reads a packet of it and has no flow. A hash table of hints on one SharedArrayBuffer that
 * every lane maps (lane 0 creates it, as it creates the handoff rings):
 *
 *   header (64 bytes, its own cache line): [SEED] the hash seed every lane uses · [BUCKETS] bucket count
 *   slots (Int32 pairs): BUCKETS buckets of WAYS slots; a slot is [tag, value], tag 0 (empty) or
 *                        (fingerprint << LANE_BITS) | lane, value what the owner says of the key (an endpoint's
 *                        external port and pool address: a hairpin borrows the sender's mapping, see claim())
 *
 * Two kinds of keys (their hashes are salted apart):
 *   flow      protocol + the two endpoints, unordered (flowHash): a packet of either direction finds it;
 *             written for flows whose replies no NAT port steers (data centers, site to site)
 *   endpoint  (zone, protocol, address, port) of a source-NAT mapping's internal side (endpointHash); written
 *             when a lane's SnatPool creates the mapping, so a new flow of that endpoint goes where its mapping is
 *             (RFC 4787 REQ-1 across lanes)
 *
 * Hints, not truth: the owner writes (claim) and clears (release: compare-and-clear, so a newer owner's entry is
 * kept); a full bucket evicts; two keys may share a fingerprint. A wrong or stale answer costs one handoff, after
 * which the receiving lane sets the flow up as usual, and a missing one leaves the packet where it is (as before
 * the directory). Nothing here allocates; a lookup reads one bucket (16 bytes, one cache line).
 */
import { finalMix, mixWord, randomSeed } from './hash.js';

/** Header words (Int32), in the first 64 bytes. */
const SEED = 0;
const BUCKETS = 1;
export const DIRECTORY_HEADER_BYTES = 64;
/** Slots per bucket: 4 × 8 bytes, half a cache line, so a lookup touches one line. */
export const DIRECTORY_WAYS = 4;
/** Int32 words per slot: tag, value. */
const SLOT_WORDS = 2;
const VALUE = 1;
/** Bytes of a bucket. */
const BUCKET_BYTES = DIRECTORY_WAYS * SLOT_WORDS * 4;
/** Low bits of a slot: the owner lane (common/lanes.ts MAX_LANES = 64 fits); the other 26 the fingerprint, never 0 (0 is the empty slot). */
const LANE_BITS = 6;
const LANE_MASK = (1 << LANE_BITS) - 1;
/** The fingerprint of a slot a claim has taken and not yet published: no key's (fingerprint() skips it). */
const RESERVED = 1;
/** Salts keeping the two kinds of keys and the fingerprint apart. */
const SALT_FLOW = 0x3c6ef372;
const SALT_ENDPOINT = 0x5be0cd19;
const SALT_FINGERPRINT = 0x1f83d9ab;
/** Bucket counts: a power of two, 2^10..2^22 (32 KiB..128 MiB). */
export const MIN_DIRECTORY_BUCKETS = 1 << 10;
export const MAX_DIRECTORY_BUCKETS = 1 << 22;

/** Bucket count for `entries` live keys at most (about half the slots used; clamped to the bounds). */
export function directoryBuckets(entries: number): number {
  let b = MIN_DIRECTORY_BUCKETS;
  while (b < MAX_DIRECTORY_BUCKETS && b * DIRECTORY_WAYS < entries * 2) b <<= 1;
  return b;
}

export class LaneDirectory {
  /** Pass this to the other lanes (workerData) and wrap it there with `new LaneDirectory(buffer)`. */
  readonly buffer: SharedArrayBuffer;
  readonly buckets: number;
  private readonly seed: number;
  private readonly mask: number;
  private readonly slots: Int32Array;
  /** The value of the entry ownerOf() found last (valid after it returned >= 0). */
  value = 0;

  /** A new, empty directory of `buckets` buckets (a power of two in the bounds) with a random seed (or `seed`). */
  static create(buckets: number, seed = randomSeed()): LaneDirectory {
    if (!Number.isInteger(buckets) || buckets < MIN_DIRECTORY_BUCKETS || buckets > MAX_DIRECTORY_BUCKETS || (buckets & (buckets - 1)) !== 0) {
      throw new RangeError(`lane directory: buckets must be a power of two ${MIN_DIRECTORY_BUCKETS}..${MAX_DIRECTORY_BUCKETS}, got ${buckets}`);
    }
    const buffer = new SharedArrayBuffer(DIRECTORY_HEADER_BYTES + buckets * BUCKET_BYTES);
    const header = new Int32Array(buffer, 0, 2);
    header[SEED] = seed | 0;
    header[BUCKETS] = buckets;
    return new LaneDirectory(buffer);
  }

  /** A view of a directory made by create() (in this thread or another). */
  constructor(buffer: SharedArrayBuffer) {
    const header = new Int32Array(buffer, 0, 2);
    const buckets = header[BUCKETS];
    if (buckets < MIN_DIRECTORY_BUCKETS || (buckets & (buckets - 1)) !== 0 || buffer.byteLength !== DIRECTORY_HEADER_BYTES + buckets * BUCKET_BYTES) {
      throw new RangeError(`lane directory: a buffer of ${buffer.byteLength} bytes is not a directory`);
    }
    this.buffer = buffer;
    this.buckets = buckets;
    this.seed = header[SEED];
    this.mask = buckets - 1;
    this.slots = new Int32Array(buffer, DIRECTORY_HEADER_BYTES, buckets * DIRECTORY_WAYS * SLOT_WORDS);
  }

  /**
   * The hash of a flow, the same for both directions: protocol and the two (address, port) endpoints in a fixed
   * order (the smaller first). `addr[srcOffset..]`, `addr[dstOffset..]`: 1 word (IPv4) or 4 (IPv6).
   */
  flowHash(protocol: number, family: 4 | 6, addr: Uint32Array | Int32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number): number {
    const words = family === 4 ? 1 : 4;
    let srcFirst = srcPort <= dstPort;
    for (let w = 0; w < words; w++) {
      const s = addr[srcOffset + w] >>> 0;
      const d = addr[dstOffset + w] >>> 0;
      if (s !== d) {
        srcFirst = s < d;
        break;
      }
    }
    const a = srcFirst ? srcOffset : dstOffset;
    const b = srcFirst ? dstOffset : srcOffset;
    let h = mixWord(this.seed ^ SALT_FLOW, protocol | (family << 8));
    for (let w = 0; w < words; w++) h = mixWord(h, addr[a + w]);
    for (let w = 0; w < words; w++) h = mixWord(h, addr[b + w]);
    h = mixWord(h, srcFirst ? (srcPort << 16) | dstPort : (dstPort << 16) | srcPort);
    return finalMix(h);
  }

  /** The hash of a source-NAT mapping's internal endpoint (zone, protocol, family, address, port). */
  endpointHash(zone: number, protocol: number, family: 4 | 6, addr: Uint32Array | Int32Array, offset: number, port: number): number {
    let h = mixWord(this.seed ^ SALT_ENDPOINT, (zone << 16) | (protocol << 8) | family);
    h = mixWord(h, addr[offset]);
    if (family === 6) {
      h = mixWord(h, addr[offset + 1]);
      h = mixWord(h, addr[offset + 2]);
      h = mixWord(h, addr[offset + 3]);
    }
    return finalMix(mixWord(h, port));
  }

  /**
   * The lane the key of hash `h` was last claimed by, or -1 (no entry); its value in `value`. One bucket read. The
   * tag is read again after the value: a slot another lane rewrote meanwhile (a claim evicting it) is a miss.
   */
  ownerOf(h: number): number {
    const fp = fingerprint(h);
    const at = (h & this.mask) * DIRECTORY_WAYS * SLOT_WORDS;
    const s = this.slots;
    for (let k = at; k < at + DIRECTORY_WAYS * SLOT_WORDS; k += SLOT_WORDS) {
      const tag = Atomics.load(s, k);
      if (tag === 0 || tag >>> LANE_BITS !== fp) continue;
      const value = Atomics.load(s, k + VALUE);
      if (Atomics.load(s, k) !== tag) return -1;
      this.value = value;
      return tag & LANE_MASK;
    }
    return -1;
  }

  /**
   * `lane` owns the key of hash `h` from now on, with `value`: its entry is rewritten in place, or takes an empty
   * slot, or (a full bucket) evicts the slot the key's hash picks. The value is written before the tag is published
   * (a reader checks the tag again after reading the value). Setup only.
   */
  claim(h: number, lane: number, value = 0): void {
    const fp = fingerprint(h);
    const word = (fp << LANE_BITS) | lane;
    const at = (h & this.mask) * DIRECTORY_WAYS * SLOT_WORDS;
    const end = at + DIRECTORY_WAYS * SLOT_WORDS;
    const s = this.slots;
    for (let k = at; k < end; k += SLOT_WORDS) {
      const tag = Atomics.load(s, k);
      // Emptied first, so no reader pairs the old tag with the new value.
      if (tag !== 0 && tag >>> LANE_BITS === fp && Atomics.compareExchange(s, k, tag, 0) === tag) {
        this.publish(k, word, value);
        return;
      }
    }
    // An empty slot: compare-exchange, as another lane may take the same one at the same moment (then the next).
    for (let k = at; k < end; k += SLOT_WORDS) {
      if (Atomics.compareExchange(s, k, 0, RESERVED << LANE_BITS) === 0) {
        this.publish(k, word, value);
        return;
      }
    }
    const victim = at + ((h >>> LANE_BITS) & (DIRECTORY_WAYS - 1)) * SLOT_WORDS;
    Atomics.store(s, victim, 0);
    this.publish(victim, word, value);
  }

  /** Writes a slot this claim holds (emptied, or reserved with a tag no fingerprint matches): value, then tag. */
  private publish(k: number, word: number, value: number): void {
    Atomics.store(this.slots, k + VALUE, value);
    Atomics.store(this.slots, k, word);
  }

  /** `lane` no longer owns the key of hash `h`: its entry is cleared only while it still names `lane` (compare-and-clear). */
  release(h: number, lane: number): void {
    const word = (fingerprint(h) << LANE_BITS) | lane;
    const at = (h & this.mask) * DIRECTORY_WAYS * SLOT_WORDS;
    const s = this.slots;
    for (let k = at; k < at + DIRECTORY_WAYS * SLOT_WORDS; k += SLOT_WORDS) if (Atomics.compareExchange(s, k, word, 0) === word) return;
  }

  /** Slots in use (a scan: tests, status). */
  used(): number {
    let n = 0;
    for (let i = 0; i < this.slots.length; i += SLOT_WORDS) if (Atomics.load(this.slots, i) !== 0) n++;
    return n;
  }
}

/** A hash's fingerprint: 26 bits of a second mix (independent of the bucket bits), never 0 or RESERVED. Exported for the tests. */
export function fingerprint(h: number): number {
  const f = finalMix(h ^ SALT_FINGERPRINT) >>> LANE_BITS;
  return f <= RESERVED ? RESERVED + 1 : f;
}
