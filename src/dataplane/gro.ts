/**
 * Receive coalescing (GRO) in software: consecutive TCP segments of one flow, as they leave a batch for a TUN with
 * offloads, become one GSO super-packet — one write() and one pass through the kernel's forwarding and receive
 * path instead of ~45. The inverse of src/wire/gso.ts's writeSegment: segmenting a super-packet made here again
 * gives back its segments byte for byte (gro.test.ts checks exactly that).
 *
 *   packets idx[0..n) of a batch, bound for one TUN        entries, in the order of each one's first packet
 *     flow A seg 1 ─┐                                        ├ super-packet A (arena): IP | TCP | payload 1 2 3
 *     flow A seg 2 ─┤ same flow, may merge (rules below)     ├ flow B ACK (the batch's own bytes, not copied)
 *     flow B ACK   ─┼──────────────────────────────────────► └ ...
 *     flow A seg 3 ─┘
 *
 * The merge rules are Linux's (net/ipv4/tcp_offload.c tcp_gro_receive, net/ipv4/af_inet.c inet_gro_receive,
 * net/ipv6/ip6_offload.c ipv6_gro_receive), so the receiver sees what a NIC with GRO would have handed it:
 *   - IPv4 without options and not a fragment, total length = the packet's; IPv6 with TCP as next header and
 *     payload length = the packet's; IP and TCP checksums verified (GRO validates them: a super-packet is written
 *     with a partial checksum, the kernel would compute a fresh, valid one over corrupt data).
 *   - same addresses and ports; IPv4: same TTL, TOS and DF, identification = the first's + the segment's index
 *     (RFC 6864 allows a fixed one under DF, but virtio has no FIXEDID: re-segmented ids would count up);
 *     IPv6: same first word (traffic class, flow label) and hop limit.
 *   - TCP: same ACK number, same data offset, flags and window (the 32-bit word at offset 12) but for CWR, FIN and
 *     PSH; the same option bytes (timestamps must be identical); no CWR but on the first (RFC 3168 section 6.1.2);
 *     sequence number = where the previous one ended; payload > 0 and ≤ the first's (gso_size, the MSS); a shorter
 *     one, or one with PSH or FIN, ends the super-packet (it carries them); URG, RST and SYN never merge.
 *   - at most 64 KiB (an IP total length, RFC 791), at most GRO_MAX_FLOWS flows open at once (Linux's
 *     MAX_GRO_SKBS), the oldest closed first.
 * A packet of a flow that cannot merge closes that flow's super-packet first, and anything this does not
 * understand closes them all, so every flow's packets leave in the order they came (flows may interleave
 * differently, as with GRO).
 *
 * The super-packet's virtio-net header (virtio 1.x section 5.1.6): gso_type TCPV4/TCPV6 (+ ECN when the first
 * carries CWR), gso_size = the first segment's payload, hdr_len = IP + TCP header, NEEDS_CSUM with csum_start at
 * the TCP header and the checksum field holding the pseudo-header sum over the whole TCP length, as the kernel's
 * own TCP stack leaves it for TSO (__tcp_v4_send_check). Pure and allocation-free: super-packets are built in a
 * preallocated arena; single packets are not copied.
 */
import { DEFAULT_HEADROOM, DEFAULT_SLOT_SIZE, PacketBatch, VNET_CSUM_OFFSET, VNET_CSUM_START, VNET_F_NEEDS_CSUM, VNET_FLAGS, VNET_GSO_ECN, VNET_GSO_SIZE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_TYPE, VNET_HDR_LEN, VNET_WORDS } from '../common/packet-batch.js';
import { read16, read32, write16 } from '../wire/bytes.js';
import { foldChecksum, onesComplementSum, onesComplementSumWords } from '../wire/checksum.js';
import {
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_CHECKSUM,
  IPV4_FLAG_DF,
  IPV4_FLAGS_FRAGMENT,
  IPV4_ID,
  IPV4_MAX_TOTAL_LENGTH,
  IPV4_MIN_HEADER,
  IPV4_PROTOCOL,
  IPV4_SRC,
  IPV4_TOTAL_LENGTH,
  IPV4_TTL,
  IPV6_HEADER,
  IPV6_HOP_LIMIT,
  IPV6_NEXT_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_SRC,
  IP_VERSION_4,
  IP_VERSION_6,
  TCP_ACK,
  TCP_CHECKSUM,
  TCP_CWR,
  TCP_DATA_OFFSET,
  TCP_FIN,
  TCP_FLAGS,
  TCP_MIN_HEADER,
  TCP_PSH,
  TCP_RST,
  TCP_SEQ,
  TCP_SYN,
  TCP_URG,
} from '../wire/constants.js';

/** Flows with a super-packet open at once (Linux: MAX_GRO_SKBS, net/core/gro.c); more close the oldest. */
export const GRO_MAX_FLOWS = 8;
/** The longest packet that may join a super-packet: one ordinary batch slot (MTU-sized, never a super-packet). */
export const GRO_MEMBER_MAX = DEFAULT_SLOT_SIZE - DEFAULT_HEADROOM;
/** A super-packet's IP total length at most (RFC 791: 16 bits; Linux: GRO_LEGACY_MAX_SIZE). */
export const GRO_MAX_LENGTH = IPV4_MAX_TOTAL_LENGTH;

/** An IPv4 header without options: version 4, IHL 5 words (RFC 791 section 3.1). */
const IPV4_NO_OPTIONS = (IP_VERSION_4 << 4) | (IPV4_MIN_HEADER >>> 2);
/** Fragment offset, MF and the reserved bit: any of them set means a fragment (or a bogus header). */
const IPV4_NOT_DF = ~IPV4_FLAG_DF & 0xffff;
const IPV4_TOS = 1;
const IPV4_ADDRS = 8;
const IPV6_ADDRS = 32;
const IP_ID_MASK = 0xffff;
/** TCP's data offset: the high nibble of byte 12, in 32-bit words (RFC 9293 section 3.1). */
const TCP_DATA_OFFSET_SHIFT = 4;
const TCP_WORD = 4;
/** The flags that end a super-packet when a segment carries them (tcp_gro_receive's final flush). */
const ENDING_FLAGS = TCP_URG | TCP_PSH | TCP_RST | TCP_SYN | TCP_FIN;
/** The flags a merged segment may carry that the first lacks: FIN and PSH (the last's), CWR (never merged). */
const MAY_DIFFER = TCP_CWR | TCP_FIN | TCP_PSH;
/** The last's FIN and PSH move to the super-packet (tcp_gro_receive: tcp_flag_word(th2) |= FIN | PSH). */
const LAST_FLAGS = TCP_FIN | TCP_PSH;
/** The flags byte's place in the 32-bit word at TCP offset 12 (data offset, flags, window). */
const FLAGS_SHIFT_IN_WORD = 16;
/** An aligned start for each super-packet in the arena. */
const ARENA_ALIGN = 8;

/** What parse() made of a packet. */
const NOT_TCP = 0; // cannot belong to a TCP flow: passes, closes nothing
const BARRIER = 1; // could belong to an open flow but cannot be read: closes every open super-packet
const TCP_ONLY = 2; // a TCP packet of a known flow that cannot merge: closes its flow's super-packet
const MERGEABLE = 3;

/** Node's Buffer has a copy without a view object (Uint8Array.set needs a subarray per call). */
type Bytes = Buffer;

export class GroCoalescer {
  /** Super-packets, packed one after another (offset/length/vnet per arena packet). */
  readonly arena: PacketBatch;
  /** After coalesce(): entries in write order; entryArena[e] 1 = arena packet entryIndex[e], 0 = batch packet entryIndex[e]. */
  readonly entryArena: Uint8Array;
  readonly entryIndex: Uint32Array;
  entries = 0;
  /** After coalesce(): super-packets built, and the segments they hold. */
  superPackets = 0;
  segments = 0;

  // Groups (one per entry): the positions in idx of its first and last member, members, bytes, and the
  // first member's facts the next one is compared with.
  private readonly head: Int32Array;
  private readonly tail: Int32Array;
  private readonly count: Uint32Array;
  private readonly total: Uint32Array;
  private readonly mss: Uint32Array;
  private readonly nextSeq: Uint32Array;
  private readonly hdr: Uint32Array;
  private readonly l4: Uint32Array;
  private readonly flags: Uint8Array;
  /** The member after each position in idx, -1 for a group's last. */
  private readonly next: Int32Array;
  /** Open groups (may still grow), oldest first. */
  private readonly open = new Int32Array(GRO_MAX_FLOWS);
  private openCount = 0;
  private groups = 0;

  // The packet parse() read last.
  private pOff = 0;
  private pLen = 0;
  private pL4 = 0;
  private pHdr = 0;
  private pFamily = 0;

  private arenaBytes: Bytes;
  private srcData: Uint8Array | null = null;
  private readonly views = new WeakMap<Uint8Array, { bytes: Bytes; words: Uint32Array }>();
  /** The batch's bytes as 32-bit words (for the checksums), made when the batch changes. */
  private srcWords: Uint32Array = new Uint32Array(0);
  /** The offsets of the batch being coalesced. */
  private batchOffsets: Uint32Array = new Uint32Array(0);
  private srcBytes: Bytes = Buffer.alloc(0);

  /** `capacity`: the most packets one coalesce() sees. */
  constructor(readonly capacity: number) {
    // Members are at most GRO_MEMBER_MAX bytes, so the super-packets of `capacity` packets fit capacity slots.
    this.arena = new PacketBatch(capacity);
    this.arenaBytes = Buffer.from(this.arena.data.buffer, this.arena.data.byteOffset, this.arena.data.byteLength);
    this.entryArena = new Uint8Array(capacity);
    this.entryIndex = new Uint32Array(capacity);
    this.head = new Int32Array(capacity);
    this.tail = new Int32Array(capacity);
    this.count = new Uint32Array(capacity);
    this.total = new Uint32Array(capacity);
    this.mss = new Uint32Array(capacity);
    this.nextSeq = new Uint32Array(capacity);
    this.hdr = new Uint32Array(capacity);
    this.l4 = new Uint32Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.next = new Int32Array(capacity);
  }

  /**
   * Plans and builds the entries for packets batch[idx[0..n)] (n ≤ capacity): returns the number of super-packets
   * (0: nothing merged, write the packets as they are).
   */
  coalesce(batch: PacketBatch, idx: Uint32Array | Uint16Array, n: number): number {
    if (n > this.capacity) throw new RangeError(`coalesce: ${n} packets exceed the capacity ${this.capacity}`);
    const data = batch.data;
    this.batchOffsets = batch.offset;
    if (this.srcData !== data) this.viewsOf(data);
    this.groups = 0;
    this.openCount = 0;
    this.superPackets = 0;
    this.segments = 0;
    let merged = false;
    for (let k = 0; k < n; k++) {
      const i = idx[k];
      this.next[k] = -1;
      const kind = this.parse(batch, i);
      if (kind === NOT_TCP) {
        this.single(k);
        continue;
      }
      if (kind === BARRIER) {
        this.openCount = 0;
        this.single(k);
        continue;
      }
      const o = this.findOpen(data, idx);
      if (o >= 0) {
        const g = this.open[o];
        if (kind === MERGEABLE && this.canMerge(data, idx, g)) {
          this.append(data, g, k);
          merged = true;
          continue;
        }
        this.closeAt(o);
      }
      if (kind === MERGEABLE) this.start(data, k);
      else this.single(k);
    }
    this.entries = this.groups;
    if (merged) this.build(batch, idx);
    return this.superPackets;
  }

  /** Reads packet i's headers into the p* fields and says what it is (see NOT_TCP … MERGEABLE). */
  private parse(batch: PacketBatch, i: number): number {
    const data = batch.data;
    const off = batch.offset[i];
    const len = batch.length[i];
    if (batch.offloaded(i)) return BARRIER; // a super-packet of its own, or a partial checksum: not ours to touch
    if (len < IPV4_MIN_HEADER) return BARRIER;
    const version = data[off] >>> 4;
    let l4: number;
    if (version === IP_VERSION_4) {
      if (data[off + IPV4_PROTOCOL] !== IPPROTO_TCP) return NOT_TCP;
      if ((read16(data, off + IPV4_FLAGS_FRAGMENT) & IPV4_NOT_DF) !== 0) return BARRIER; // a fragment: no ports
      l4 = (data[off] & 0x0f) * TCP_WORD;
      if (l4 < IPV4_MIN_HEADER || l4 + TCP_MIN_HEADER > len) return BARRIER;
    } else if (version === IP_VERSION_6) {
      if (len < IPV6_HEADER + TCP_MIN_HEADER) return BARRIER;
      const nh = data[off + IPV6_NEXT_HEADER];
      // Another next header is NOT_TCP only when it is a transport: an extension header may hide TCP behind it.
      if (nh !== IPPROTO_TCP) return nh === IPPROTO_UDP || nh === IPPROTO_ICMPV6 ? NOT_TCP : BARRIER;
      l4 = IPV6_HEADER;
    } else {
      return BARRIER;
    }
    const hdr = l4 + (data[off + l4 + TCP_DATA_OFFSET] >>> TCP_DATA_OFFSET_SHIFT) * TCP_WORD;
    this.pOff = off;
    this.pLen = len;
    this.pL4 = l4;
    this.pHdr = hdr;
    this.pFamily = version;
    if (hdr < l4 + TCP_MIN_HEADER || hdr >= len || len > GRO_MEMBER_MAX) return TCP_ONLY;
    if (version === IP_VERSION_4) {
      if (data[off] !== IPV4_NO_OPTIONS || read16(data, off + IPV4_TOTAL_LENGTH) !== len) return TCP_ONLY;
      if (foldChecksum(onesComplementSum(data, off, off + IPV4_MIN_HEADER, 0)) !== 0) return TCP_ONLY;
    } else if (read16(data, off + IPV6_PAYLOAD_LENGTH) + IPV6_HEADER !== len) {
      return TCP_ONLY;
    }
    if ((data[off + l4 + TCP_FLAGS] & (TCP_URG | TCP_RST | TCP_SYN)) !== 0) return TCP_ONLY;
    // The TCP checksum over pseudo-header and segment (RFC 9293 section 3.1) folds to 0 when it is right.
    if (foldChecksum(this.pseudo(data, off, version, len - l4) + this.sum(data, off + l4, off + len)) !== 0) return TCP_ONLY;
    return MERGEABLE;
  }

  /** The one's-complement sum of data[start, end), four bytes per load where the slab allows. */
  private sum(data: Uint8Array, start: number, end: number): number {
    return this.srcWords.length > 0 ? onesComplementSumWords(data, this.srcWords, start, end, 0) : onesComplementSum(data, start, end, 0);
  }

  /** Unfolded pseudo-header sum (RFC 9293 section 3.1, RFC 8200 section 8.1) for a TCP length of `l4Length`. */
  private pseudo(data: Uint8Array, off: number, version: number, l4Length: number): number {
    const addrs = version === IP_VERSION_4 ? IPV4_ADDRS : IPV6_ADDRS;
    const at = off + (version === IP_VERSION_4 ? IPV4_SRC : IPV6_SRC);
    return onesComplementSum(data, at, at + addrs, 0) + IPPROTO_TCP + (l4Length >>> 16) + (l4Length & 0xffff);
  }

  /** The open group of the parsed packet's flow (same family, addresses and ports), as its place in `open`, or -1. */
  private findOpen(data: Uint8Array, idx: Uint32Array | Uint16Array): number {
    const off = this.pOff;
    const v4 = this.pFamily === IP_VERSION_4;
    const a = off + (v4 ? IPV4_SRC : IPV6_SRC);
    const addrs = v4 ? IPV4_ADDRS : IPV6_ADDRS;
    for (let o = 0; o < this.openCount; o++) {
      const g = this.open[o];
      const first = this.firstOffset(idx, g);
      if (data[first] >>> 4 !== this.pFamily) continue;
      // Ports: the first 4 bytes of the TCP header.
      if (read32(data, first + this.l4[g]) !== read32(data, off + this.pL4)) continue;
      const b = first + (v4 ? IPV4_SRC : IPV6_SRC);
      let same = true;
      for (let j = 0; j < addrs; j += 4) {
        if (read32(data, a + j) !== read32(data, b + j)) {
          same = false;
          break;
        }
      }
      if (same) return o;
    }
    return -1;
  }

  /** The first member's offset in the batch. */
  private firstOffset(idx: Uint32Array | Uint16Array, g: number): number {
    return this.batchOffsets[idx[this.head[g]]];
  }

  /** May the parsed packet (MERGEABLE, same flow) join open group g? The rules in the file header. */
  private canMerge(data: Uint8Array, idx: Uint32Array | Uint16Array, g: number): boolean {
    const off = this.pOff;
    const first = this.firstOffset(idx, g);
    const l4 = this.pL4;
    const hdr = this.pHdr;
    const payload = this.pLen - hdr;
    if (hdr !== this.hdr[g] || payload > this.mss[g] || this.total[g] + payload > GRO_MAX_LENGTH) return false;
    if (this.pFamily === IP_VERSION_4) {
      if (data[off + IPV4_TTL] !== data[first + IPV4_TTL] || data[off + IPV4_TOS] !== data[first + IPV4_TOS]) return false;
      if ((read16(data, off + IPV4_FLAGS_FRAGMENT) ^ read16(data, first + IPV4_FLAGS_FRAGMENT)) !== 0) return false;
      if (read16(data, off + IPV4_ID) !== ((read16(data, first + IPV4_ID) + this.count[g]) & IP_ID_MASK)) return false;
    } else if (read32(data, off) !== read32(data, first) || data[off + IPV6_HOP_LIMIT] !== data[first + IPV6_HOP_LIMIT]) {
      return false;
    }
    const t = off + l4;
    const u = first + l4;
    if (read32(data, t + TCP_SEQ) !== this.nextSeq[g] || read32(data, t + TCP_ACK) !== read32(data, u + TCP_ACK)) return false;
    const flags = data[t + TCP_FLAGS];
    if ((flags & TCP_CWR) !== 0) return false;
    const mask = ~(MAY_DIFFER << FLAGS_SHIFT_IN_WORD);
    if (((read32(data, t + TCP_DATA_OFFSET) ^ read32(data, u + TCP_DATA_OFFSET)) & mask) !== 0) return false;
    // Options (everything after the fixed header) byte for byte.
    for (let j = TCP_MIN_HEADER; j < hdr - l4; j += 4) if (read32(data, t + j) !== read32(data, u + j)) return false;
    return true;
  }

  /** Starts a group with position k (MERGEABLE): open unless its flags end it at once. */
  private start(data: Uint8Array, k: number): void {
    const g = this.newGroup(k);
    const payload = this.pLen - this.pHdr;
    this.total[g] = this.pLen;
    this.mss[g] = payload;
    this.hdr[g] = this.pHdr;
    this.l4[g] = this.pL4;
    this.nextSeq[g] = (read32(data, this.pOff + this.pL4 + TCP_SEQ) + payload) >>> 0;
    const flags = data[this.pOff + this.pL4 + TCP_FLAGS];
    this.flags[g] = flags;
    if ((flags & ENDING_FLAGS) !== 0) return;
    if (this.openCount === GRO_MAX_FLOWS) this.closeAt(0);
    this.open[this.openCount++] = g;
  }

  /** Position k as a group of its own, closed. */
  private single(k: number): void {
    this.newGroup(k);
  }

  private newGroup(k: number): number {
    const g = this.groups++;
    this.head[g] = k;
    this.tail[g] = k;
    this.count[g] = 1;
    return g;
  }

  /** Adds position k (canMerge said yes) to group g; a short segment or PSH/FIN closes it. */
  private append(data: Uint8Array, g: number, k: number): void {
    const payload = this.pLen - this.pHdr;
    this.next[this.tail[g]] = k;
    this.tail[g] = k;
    this.count[g]++;
    this.total[g] += payload;
    this.nextSeq[g] = (this.nextSeq[g] + payload) >>> 0;
    const flags = data[this.pOff + this.pL4 + TCP_FLAGS];
    this.flags[g] |= flags & LAST_FLAGS;
    if (payload < this.mss[g] || (flags & ENDING_FLAGS) !== 0) {
      for (let o = 0; o < this.openCount; o++) {
        if (this.open[o] === g) {
          this.closeAt(o);
          break;
        }
      }
    }
  }

  private closeAt(o: number): void {
    this.openCount--;
    for (let j = o; j < this.openCount; j++) this.open[j] = this.open[j + 1];
  }

  /** The entries: batch packets for groups of one, super-packets built into the arena for the rest. */
  private build(batch: PacketBatch, idx: Uint32Array | Uint16Array): void {
    const src = this.srcBytes;
    const data = batch.data;
    const arena = this.arena;
    const out = arena.data;
    let at = arena.headroom;
    let a = 0;
    for (let g = 0; g < this.groups; g++) {
      const k0 = this.head[g];
      if (this.count[g] === 1) {
        this.entryArena[g] = 0;
        this.entryIndex[g] = idx[k0];
        continue;
      }
      const hdr = this.hdr[g];
      const l4 = this.l4[g];
      const first = batch.offset[idx[k0]];
      src.copy(this.arenaBytes, at, first, first + hdr);
      let end = at + hdr;
      for (let k = k0; k !== -1; k = this.next[k]) {
        const i = idx[k];
        const off = batch.offset[i];
        const len = batch.length[i];
        src.copy(this.arenaBytes, end, off + hdr, off + len);
        end += len - hdr;
      }
      const length = end - at;
      const v4 = out[at] >>> 4 === IP_VERSION_4;
      if (v4) {
        write16(out, at + IPV4_TOTAL_LENGTH, length);
        write16(out, at + IPV4_CHECKSUM, 0);
        write16(out, at + IPV4_CHECKSUM, foldChecksum(onesComplementSum(out, at, at + IPV4_MIN_HEADER, 0)));
      } else {
        write16(out, at + IPV6_PAYLOAD_LENGTH, length - IPV6_HEADER);
      }
      const firstFlags = data[first + l4 + TCP_FLAGS];
      out[at + l4 + TCP_FLAGS] = this.flags[g];
      // NEEDS_CSUM: the checksum field holds the pseudo-header sum (folded, not complemented) over the whole TCP length.
      write16(out, at + l4 + TCP_CHECKSUM, ~foldChecksum(this.pseudo(out, at, v4 ? IP_VERSION_4 : IP_VERSION_6, length - l4)) & 0xffff);
      const v = a * VNET_WORDS;
      const w = arena.vnet;
      w[v + VNET_FLAGS] = VNET_F_NEEDS_CSUM;
      w[v + VNET_GSO_TYPE] = (v4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6) | ((firstFlags & TCP_CWR) !== 0 ? VNET_GSO_ECN : 0);
      w[v + VNET_HDR_LEN] = hdr;
      w[v + VNET_GSO_SIZE] = this.mss[g];
      w[v + VNET_CSUM_START] = l4;
      w[v + VNET_CSUM_OFFSET] = TCP_CHECKSUM;
      arena.offset[a] = at;
      arena.length[a] = length;
      this.entryArena[g] = 1;
      this.entryIndex[g] = a;
      this.superPackets++;
      this.segments += this.count[g];
      a++;
      at = (end + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    }
    arena.count = a;
  }

  /**
   * A Buffer and 32-bit words over the batch's bytes, made once per batch (the edge delivers a few: the read
   * batches, the pipeline's generated packets, the software-GSO segments) and kept while the batch lives.
   */
  private viewsOf(data: Uint8Array): void {
    let v = this.views.get(data);
    if (v === undefined) {
      // PacketBatch's slab starts its own ArrayBuffer (byteOffset 0), so the words line up with the bytes; any other
      // slab gets no words, and the checksums take the byte loop.
      const words = data.byteOffset % 4 === 0 ? new Uint32Array(data.buffer, data.byteOffset, data.byteLength >>> 2) : new Uint32Array(0);
      v = { bytes: Buffer.from(data.buffer, data.byteOffset, data.byteLength), words };
      this.views.set(data, v);
    }
    this.srcData = data;
    this.srcBytes = v.bytes;
    this.srcWords = v.words;
  }
}
