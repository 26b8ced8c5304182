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
/** The identification field is 16 bits (RFC 791 section 3.1). */
const ID_SPACE = 0x10000;
/** Mixed into the seed for the initial counter values, so they are not the bucket hash's own stream. */
const INITIAL_VALUE_SALT = 0x1d1d1d1d;

export interface IpIdOptions {
  /** Counters (rounded up to a power of two). */
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
    while (buckets < (opts.buckets ?? IP_ID_BUCKETS)) buckets <<= 1;
    this.counters = new Uint16Array(buckets);
    this.mask = buckets - 1;
    this.seed = opts.seed | 0;
    const start = mixWord(this.seed, INITIAL_VALUE_SALT);
    for (let b = 0; b < buckets; b++) this.counters[b] = finalMix(mixWord(start, b)) & (ID_SPACE - 1);
  }

  /** The bucket of the IPv4 tuple (source, destination, protocol) as the receiver sees it. */
  bucket4(src: number, dst: number, protocol: number): number {
    return finalMix(mixWord(mixWord(mixWord(this.seed, protocol), src), dst)) & this.mask;
  }

  /** The next identification value for an IPv4 datagram with this source, destination and protocol. */
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
