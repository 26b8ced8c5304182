/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are plain JavaScript numbers holding an unfolded one's-complement sum of 16-bit words: they may
 * exceed 16 bits and are folded (end-around carry) only once, by foldChecksum(). A double is exact up
 * to 2^53, so a sum over any IP packet (at most 2^15 words of at most 2^16) plus a few pseudo-header
 * words never loses precision.
 */
import { ICMP_CHECKSUM, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV4_CHECKSUM, TCP_CHECKSUM, UDP_CHECKSUM, UDP_LENGTH } from './constants.js';
import type { PacketInfo } from './packet-info.js';

/**
 * Sums buf[start, end) as big-endian 16-bit words (RFC 1071 section 4.1); an odd trailing byte is
 * padded with a zero byte. Returns the unfolded sum added to `initial`.
 */
export function onesComplementSum(buf: Uint8Array, start: number, end: number, initial: number): number {
  let sum = initial;
  let i = start;
  // Two words per iteration: halves the loop overhead, which dominates for short headers.
  const last4 = end - 3;
  for (; i < last4; i += 4) sum += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3]);
  if (i + 1 < end) {
    sum += (buf[i] << 8) | buf[i + 1];
    i += 2;
  }
  if (i < end) sum += buf[i] << 8;
  return sum;
}

/** True where a Uint32Array reads memory little-endian (x86, arm64 as Linux runs them): onesComplementSumWords relies on it. */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
/** Below this many bytes the word loop's set-up costs more than it saves. */
const WORDS_MIN_BYTES = 32;
const BYTE_MASK = 0xff;
const WORD_MASK = 0xffff;
const WORD_RANGE = 0x10000;

/**
 * onesComplementSum with one 32-bit load per 4 bytes (a few times faster over a full-sized segment), for the
 * checksums GRO verifies per packet. `words` views the same memory as `buf`: new Uint32Array(buf.buffer,
 * buf.byteOffset, buf.byteLength >>> 2), with buf.byteOffset a multiple of 4. The result folds to the same
 * checksum as onesComplementSum's (it is not the same unfolded number).
 *
 * Why it is right (RFC 1071 section 2 B, byte-order independence): a little-endian 32-bit load sums the bytes at
 * even addresses as low bytes and those at odd addresses as high bytes; relative to `start`, words begin at
 * start's parity, so for an even start the aligned part's folded sum is the big-endian one byte-swapped, for an
 * odd start it is the big-endian one as it is. The up to 3 bytes before and after the aligned part are added one
 * by one, high or low by their distance from start.
 */
export function onesComplementSumWords(buf: Uint8Array, words: Uint32Array, start: number, end: number, initial: number): number {
  if (!LITTLE_ENDIAN || end - start < WORDS_MIN_BYTES) return onesComplementSum(buf, start, end, initial);
  let sum = initial;
  const a = (start + 3) & ~3;
  let p = start;
  for (; p < a; p++) sum += ((p - start) & 1) === 0 ? buf[p] << 8 : buf[p];
  const b = a + ((end - a) & ~3);
  let le = 0;
  for (let q = a >>> 2, qe = b >>> 2; q < qe; q++) {
    const w = words[q];
    le += (w & WORD_MASK) + (w >>> 16);
  }
  // At most 16,384 words of two terms ≤ 0xFFFF each: exact in a double; two end-around folds bring it to 16 bits.
  le = (le % WORD_RANGE) + Math.floor(le / WORD_RANGE);
  le = (le % WORD_RANGE) + Math.floor(le / WORD_RANGE);
  if ((start & 1) === 0) le = ((le & BYTE_MASK) << 8) | (le >>> 8);
  sum += le;
  for (p = b; p < end; p++) sum += ((p - start) & 1) === 0 ? buf[p] << 8 : buf[p];
  return sum;
}

/**
 * ipv4FixedHeaderSum when the caller already holds the source and destination addresses as 32-bit words (signed
 * or not): the first six words from the bytes, the addresses' four from the words (the same sum).
 */
export function ipv4HeaderSumWithAddrs(buf: Uint8Array, o: number, src: number, dst: number): number {
  return (
    ((buf[o] << 8) | buf[o + 1]) +
    ((buf[o + 2] << 8) | buf[o + 3]) +
    ((buf[o + 4] << 8) | buf[o + 5]) +
    ((buf[o + 6] << 8) | buf[o + 7]) +
    ((buf[o + 8] << 8) | buf[o + 9]) +
    ((buf[o + 10] << 8) | buf[o + 11]) +
    (src >>> 16) + (src & WORD_MASK) + (dst >>> 16) + (dst & WORD_MASK)
  );
}

/**
 * The unfolded one's-complement sum of the ten words of an IPv4 header's fixed 20 bytes at `o` (RFC 791 section
 * 3.1), unrolled: inspection verifies every packet's header with it, options (if any) added by the caller.
 */
export function ipv4FixedHeaderSum(buf: Uint8Array, o: number): number {
  return ipv4HeaderSumWithAddrs(
    buf,
    o,
    (buf[o + 12] << 24) | (buf[o + 13] << 16) | (buf[o + 14] << 8) | buf[o + 15],
    (buf[o + 16] << 24) | (buf[o + 17] << 16) | (buf[o + 18] << 8) | buf[o + 19],
  );
}

/** Folds the carries of an unfolded sum into 16 bits and complements it: the value for a checksum field. */
export function foldChecksum(sum: number): number {
  // Above 32 bits `>>> 16` would lose bits: reduce arithmetically first (never happens for one packet).
  if (sum > 0xffffffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * The checksum an IPv4 header of `headerLength` bytes at `l3Offset` should carry (RFC 791 section 3.1),
 * computed as if its checksum field were zero. A received header verifies when this equals the stored field
 * (equivalently, when the sum including the field folds to 0).
 */
export function ipv4HeaderChecksum(buf: Uint8Array, l3Offset: number, headerLength: number): number {
  const field = (buf[l3Offset + IPV4_CHECKSUM] << 8) | buf[l3Offset + IPV4_CHECKSUM + 1];
  return foldChecksum(onesComplementSum(buf, l3Offset, l3Offset + headerLength, 0) - field);
}

/** Unfolded sum of the IPv4 pseudo-header (RFC 9293 section 3.1; RFC 768). */
export function pseudoHeaderSum4(src: number, dst: number, protocol: number, l4Length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + l4Length;
}

/** Unfolded sum of the IPv6 pseudo-header (RFC 8200 section 8.1): addresses are 4 words each in `addr`. */
export function pseudoHeaderSum6(addr: Uint32Array, srcOff: number, dstOff: number, nextHeader: number, l4Length: number): number {
  let sum = nextHeader + (l4Length >>> 16) + (l4Length & 0xffff);
  for (let i = 0; i < 4; i++) {
    const s = addr[srcOff + i];
    const d = addr[dstOff + i];
    sum += (s >>> 16) + (s & 0xffff) + (d >>> 16) + (d & 0xffff);
  }
  return sum;
}

/**
 * Applies an unfolded change `delta` (a sum of terms ~old16 + new16) to a stored checksum:
 * RFC 1624 eqn 3, HC' = ~(~HC + ~m + m').
 *
 * Why eqn 3 and not eqn 2 (HC' = HC - ~m - m'): the one's-complement sum of data that is not all zero is
 * never +0 (0x0000), so a correct checksum is never 0xFFFF and ~HC is never 0; the end-around-carry sum in
 * eqn 3 is therefore never +0 either, and the result matches a full recomputation bit for bit. Eqn 2 (and
 * RFC 1141's shortcut) can produce 0xFFFF (-0) where recomputation gives 0x0000 (RFC 1624 section 3).
 */
export function checksumAdjust(checksum: number, delta: number): number {
  let sum = (~checksum & 0xffff) + delta;
  if (sum > 0xffffffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The delta term for a 16-bit word changing from oldWord to newWord (for checksumAdjust). */
export function wordDelta(oldWord: number, newWord: number): number {
  return (~oldWord & 0xffff) + (newWord & 0xffff);
}

/** The delta term for a 32-bit value (two words) changing from oldValue to newValue. */
export function word32Delta(oldValue: number, newValue: number): number {
  return (~oldValue & 0xffff) + ((~oldValue >>> 16) & 0xffff) + (newValue & 0xffff) + (newValue >>> 16);
}

/** Incremental update for one 16-bit word (RFC 1624 eqn 3). */
export function checksumUpdate16(checksum: number, oldWord: number, newWord: number): number {
  return checksumAdjust(checksum, wordDelta(oldWord, newWord));
}

/** Incremental update for a 32-bit field (an IPv4 address, a TCP sequence number): two words at once. */
export function checksumUpdate32(checksum: number, oldValue32: number, newValue32: number): number {
  return checksumAdjust(checksum, word32Delta(oldValue32, newValue32));
}

/**
 * The value the transport checksum field of the packet described by `info` should hold, computed over
 * pseudo-header + segment with the field treated as zero. TCP, UDP and ICMPv6 include the pseudo-header;
 * ICMPv4 does not. For UDP the length is the UDP length field (RFC 768) and a computed 0 is returned as
 * 0xFFFF, as it is transmitted. Slow path and tests only; meaningless for fragments (the checksum covers
 * the reassembled datagram). Returns -1 for a protocol without a checksum we know.
 */
export function transportChecksumFull(buf: Uint8Array, info: PacketInfo): number {
  const l4 = info.l4Offset;
  let length = info.l4Length;
  let field: number;
  const protocol = info.protocol;
  if (protocol === IPPROTO_TCP) field = l4 + TCP_CHECKSUM;
  else if (protocol === IPPROTO_UDP) {
    field = l4 + UDP_CHECKSUM;
    const udpLength = (buf[l4 + UDP_LENGTH] << 8) | buf[l4 + UDP_LENGTH + 1];
    if (udpLength <= length) length = udpLength;
  } else if (protocol === IPPROTO_ICMP && info.family === 4) return icmpv4ChecksumFull(buf, l4, length);
  else if (protocol === IPPROTO_ICMPV6) field = l4 + ICMP_CHECKSUM;
  else return -1;
  const pseudo =
    info.family === 4
      ? pseudoHeaderSum4(info.addr[0], info.addr[4], protocol, length)
      : pseudoHeaderSum6(info.addr, 0, 4, protocol, length);
  const stored = (buf[field] << 8) | buf[field + 1];
  const checksum = foldChecksum(onesComplementSum(buf, l4, l4 + length, pseudo) - stored);
  return protocol === IPPROTO_UDP && checksum === 0 ? 0xffff : checksum;
}

/** The ICMPv4 checksum (RFC 792: over the ICMP message, no pseudo-header) for the message at [off, off+len). */
export function icmpv4ChecksumFull(buf: Uint8Array, off: number, len: number): number {
  const stored = (buf[off + ICMP_CHECKSUM] << 8) | buf[off + ICMP_CHECKSUM + 1];
  return foldChecksum(onesComplementSum(buf, off, off + len, 0) - stored);
}
