/**
 * IPv4 identification values for translated datagrams (issue 13; RFC 6864 section 4, RFC 4963).
 *
 * A receiver reassembles fragments by (source, destination, protocol, identification) (RFC 791 section 3.2).
 * Source NAT folds many senders onto one pool address, and ARR lets two sites' 10.0.1.10 reach one data-center
 * server as the same 10.0.1.10: if the edge kept each sender's own id, two sites' datagrams sent with the same id
 * would meet in one reassembly queue at the server and be spliced into each other, or both thrown away. So the
 * edge numbers such datagrams itself, from counters keyed by the tuple the receiver sees.
 *
 * How: a fixed array of 16-bit counters, one per bucket; a tuple (source as sent, destination, protocol) hashes
 * to a bucket, and each datagram takes that bucket's next value. This is RFC 7739's hash-based selection
 * algorithm and what Linux does for its own packets (ip_idents): per-tuple counters without per-tuple state.
 * The counters start at random values drawn from the pipeline's seed, so a tuple's ids are not predictable from
 * another tuple's (the point of RFC 7739).
 *
 * Collision behaviour: two tuples hashed to one bucket share its counter. That never makes an id repeat for a
 * tuple sooner than 65,536 draws from its bucket: a counter returns each of its 65,536 values once per turn,
 * whoever draws them. Sharing only makes a turn pass faster, as if the tuple's traffic were the bucket's. RFC 6864
 * section 4's bound therefore reads, per bucket: ids are unique while a bucket serves fewer than 65,536
 * non-atomic datagrams within the receiver's reassembly lifetime (Linux: 30 s, ipfrag_time), about 2,184 per
 * second sustained. Beyond that a 16-bit id space cannot be unique for any implementation (RFC 4963 section 2;
 * RFC 6864 section 4 is why atomic datagrams are exempt: they never enter reassembly).
 *
 * Pure: no I/O, no clock (the counters need none), no allocation per call.
 */
import { finalMix, mixWord } from '../common/hash.js';

/** Buckets by default: 4,096 counters (8 KB, stays in cache); many more busy tuples than this only share turns. */
export const IP_ID_BUCKETS = 4096;
/** The bucket index is taken from the high half of the hash: at most 2^16 buckets. */
const MAX_BUCKETS = 0x10000;
const HASH_INDEX_SHIFT = 16;
/** Multiplicative hashing constants: 2^32 / golden ratio (Knuth), and MurmurHash3's first finalizer multiplier. */
const GOLDEN = 0x9e3779b1;
const SPREAD = 0x85ebca6b;
/** The protocol enters the hash in the byte no address bit reaches by xor alone. */
const PROTOCOL_SHIFT = 24;
/** The identification field is 16 bits (RFC 791 section 3.1). */
const ID_SPACE = 0x10000;
/** Mixed into the seed for the initial counter values, so they are not the bucket hash's own stream. */
const INITIAL_VALUE_SALT = 0x1d1d1d1d;

export interface IpIdOptions {
  /** Counters (rounded up to a power of two, at most 65,536). */
  buckets?: number;
  /** Hash seed (the pipeline's; random in production): places tuples in buckets and draws the counters' starts. */
  seed: number;
}

export class IpIdAllocator {
  private readonly counters: Uint16Array;
  private readonly mask: number;
  private readonly seed: number;

  constructor(opts: IpIdOptions) {
    let buckets = 1;
    while (buckets < Math.min(opts.buckets ?? IP_ID_BUCKETS, MAX_BUCKETS)) buckets <<= 1;
    this.counters = new Uint16Array(buckets);
    this.mask = buckets - 1;
    this.seed = opts.seed | 0;
    const start = mixWord(this.seed, INITIAL_VALUE_SALT);
    for (let b = 0; b < buckets; b++) this.counters[b] = finalMix(mixWord(start, b)) & (ID_SPACE - 1);
  }

  /**
   * The bucket of the IPv4 tuple (source, destination, protocol) as the receiver sees it: multiplicative hashing,
   * two multiplies, the high half kept (this runs per renumbered packet, and is cheaper than common/hash.ts's
   * MurmurHash3 steps). Its strength is no defence and needs none: whoever can aim tuples at one counter can as well send through
   * the very tuple they want to hurry along (a pool address is shared), and either way only shortens that
   * counter's turn, never makes an id repeat within it.
   */
  bucket4(src: number, dst: number, protocol: number): number {
    const h = Math.imul(Math.imul(src ^ this.seed, GOLDEN) ^ dst ^ (protocol << PROTOCOL_SHIFT), SPREAD);
    return (h >>> HASH_INDEX_SHIFT) & this.mask;
  }

  /** The next identification value for an IPv4 datagram with this source, destination and protocol (words signed or not). */
  next4(src: number, dst: number, protocol: number): number {
    const b = this.bucket4(src, dst, protocol);
    const id = this.counters[b];
    this.counters[b] = id + 1; // a Uint16Array wraps at 65,536 on its own
    return id;
  }

  /** How many counters there are (a power of two). */
  get buckets(): number {
    return this.counters.length;
  }
}
