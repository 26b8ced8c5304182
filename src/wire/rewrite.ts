/**
 * In-place header rewrites for the fast path (NAT, TTL, MSS clamping, ICMP error translation).
 *
 * Every function takes the buffer and the PacketInfo that inspect() filled for it, writes the new value,
 * keeps every checksum valid with incremental updates (RFC 1624 eqn 3, see checksum.ts), and updates
 * `info` to match, so rewrites can be chained. No allocation, no full recomputation (except
 * refreshIcmpChecksum, for rare ICMP errors).
 *
 * Checksums touched, by rewrite:
 *   outer address: IPv4 header checksum; TCP/UDP (both families) and ICMPv6 checksums (pseudo-header);
 *                  never the ICMPv4 checksum (no pseudo-header, RFC 792).
 *   port / echo id: the transport checksum.
 *   inner (embedded) fields: the inner IPv4 header checksum, the inner transport checksum when its field
 *                  was quoted, and the outer ICMP/ICMPv6 checksum (the embedded bytes are part of its message).
 * UDP checksum 0 means "no checksum" (RFC 768; IPv4, and IPv6 tunnels per RFC 6935): it stays 0; a
 * computed 0 is sent as 0xFFFF.
 *
 * Partial checksums (info.csumPartial: a packet from a TUN with offloads, VIRTIO_NET_HDR_F_NEEDS_CSUM): the
 * TCP/UDP field holds the pseudo-header sum itself, not complemented, and whoever sends the packet sums the
 * transport header and payload into it. So, as the kernel's inet_proto_csum_replace4/2 do for CHECKSUM_PARTIAL
 * (net/core/utils.c): a pseudo-header change (an address) updates the field as a plain sum, field' =
 * fold(field - old + new), i.e. the complemented form of RFC 1624's update; a change inside the transport header
 * (a port, the MSS option) leaves the field alone, since the final sum will read the new bytes. The IPv4 header
 * checksum is never partial.
 */
import { checksumAdjust, checksumUpdate16, foldChecksum, ipv4HeaderChecksum, onesComplementSum, pseudoHeaderSum6, word32Delta, wordDelta } from './checksum.js';
import {
  AF_INET4,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_TIMESTAMP,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP_CHECKSUM,
  ICMP_ID,
  ICMP_TYPE,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_CHECKSUM,
  IPV4_DST,
  IPV4_ID,
  IPV4_SRC,
  IPV4_TTL,
  IPV6_ADDR_BYTES,
  IPV6_DST,
  IPV6_HOP_LIMIT,
  IPV6_SRC,
  MIN_MTU_IPV6,
  MSS_OVERHEAD_IPV4,
  MSS_OVERHEAD_IPV6,
  ORIGINATED_TTL,
  TCP_CHECKSUM,
  TCP_DST_PORT,
  TCP_SRC_PORT,
  UDP_CHECKSUM,
} from './constants.js';
import type { PacketInfo } from './packet-info.js';
import { read16, read32, write16, write32 } from './bytes.js';

/** Bytes 0..1 of the checksum field must be quoted for an inner checksum update. */
const CHECKSUM_FIELD = 2;

/**
 * Applies `delta` to the 16-bit checksum at `pos`; for UDP a stored 0 (no checksum) is left alone and a
 * result of 0 is written as 0xFFFF. Returns the change as a delta term for an enclosing checksum (the
 * outer ICMP checksum when this field is embedded), 0 when nothing changed.
 */
function adjustAt(buf: Uint8Array, pos: number, delta: number, isUdp: boolean): number {
  const old = read16(buf, pos);
  if (isUdp && old === 0) return 0;
  let c = checksumAdjust(old, delta);
  if (isUdp && c === 0) c = 0xffff;
  write16(buf, pos, c);
  return wordDelta(old, c);
}

/** Where the outer transport checksum that covers the pseudo-header is, -1 when there is none in this packet. */
function pseudoChecksumPos(info: PacketInfo): number {
  if (!info.hasTransportHeader) return -1; // non-first fragment: the checksum travels in the first one
  const protocol = info.protocol;
  if (protocol === IPPROTO_TCP) return info.l4Offset + TCP_CHECKSUM;
  if (protocol === IPPROTO_UDP) return info.l4Offset + UDP_CHECKSUM;
  if (protocol === IPPROTO_ICMPV6) return info.l4Offset + ICMP_CHECKSUM;
  return -1; // ICMPv4 has no pseudo-header
}

function adjustTransport(buf: Uint8Array, info: PacketInfo, delta: number): void {
  const pos = pseudoChecksumPos(info);
  if (pos < 0) return;
  if (info.csumPartial && info.protocol !== IPPROTO_ICMPV6) adjustPartial(buf, pos, delta);
  else adjustAt(buf, pos, delta, info.protocol === IPPROTO_UDP);
}

/** A partial checksum field (the pseudo-header sum, not complemented): field' = fold(field + delta). */
function adjustPartial(buf: Uint8Array, pos: number, delta: number): void {
  write16(buf, pos, ~checksumAdjust(~read16(buf, pos) & 0xffff, delta) & 0xffff);
}

// --- outer addresses ----------------------------------------------------------------------------

function setAddr4(buf: Uint8Array, info: PacketInfo, which: number, addr: number): void {
  addr >>>= 0;
  const old = info.addr[which];
  const o = info.l3Offset;
  write32(buf, o + (which === 0 ? IPV4_SRC : IPV4_DST), addr);
  const delta = word32Delta(old, addr);
  write16(buf, o + IPV4_CHECKSUM, checksumAdjust(read16(buf, o + IPV4_CHECKSUM), delta));
  adjustTransport(buf, info, delta);
  info.addr[which] = addr;
}

/** Rewrites the IPv4 source address (the IPv4 header checksum and the TCP/UDP pseudo-header part). */
export function setSrcAddr4(buf: Uint8Array, info: PacketInfo, addr: number): void {
  setAddr4(buf, info, 0, addr);
}

export function setDstAddr4(buf: Uint8Array, info: PacketInfo, addr: number): void {
  setAddr4(buf, info, 4, addr);
}

/** Writes 4 words at buf[pos..pos+16) over `current[at..at+4)`, updating `current`; returns the checksum delta. */
function writeAddr6(buf: Uint8Array, pos: number, current: Uint32Array, at: number, words: Uint32Array, wordsOffset: number): number {
  let delta = 0;
  for (let i = 0; i < 4; i++) {
    const w = words[wordsOffset + i] >>> 0;
    delta += word32Delta(current[at + i], w);
    write32(buf, pos + 4 * i, w);
    current[at + i] = w;
  }
  return delta;
}

function setAddr6(buf: Uint8Array, info: PacketInfo, which: number, words: Uint32Array, wordsOffset: number): void {
  // which (0 or 4) is both the word index in info.addr and, times 4, the byte distance from src to dst.
  const delta = writeAddr6(buf, info.l3Offset + IPV6_SRC + which * 4, info.addr, which, words, wordsOffset);
  adjustTransport(buf, info, delta);
}

/** Rewrites the IPv6 source address from words[wordsOffset..+4); TCP, UDP and ICMPv6 checksums all cover it. */
export function setSrcAddr6(buf: Uint8Array, info: PacketInfo, words: Uint32Array, wordsOffset: number): void {
  setAddr6(buf, info, 0, words, wordsOffset);
}

export function setDstAddr6(buf: Uint8Array, info: PacketInfo, words: Uint32Array, wordsOffset: number): void {
  setAddr6(buf, info, 4, words, wordsOffset);
}

// --- ports and echo identifiers -----------------------------------------------------------------

/** True when an ICMP query's identifier sits in the srcPort slot (a request), false when in dstPort (a reply). */
function isIcmpRequest(family: number, type: number): boolean {
  return family === 4 ? type === ICMP4_ECHO_REQUEST || type === ICMP4_TIMESTAMP : type === ICMP6_ECHO_REQUEST;
}

/**
 * Rewrites one port slot (which 0: srcPort, 4: dstPort). For ICMP queries the slot holding the identifier
 * rewrites the identifier; the other slot is 0 by convention and writing it is a no-op. Errors have no ports.
 */
function setPort(buf: Uint8Array, info: PacketInfo, which: number, port: number): void {
  if (!info.hasTransportHeader || info.isIcmpError) return;
  port &= 0xffff;
  const l4 = info.l4Offset;
  const protocol = info.protocol;
  if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) {
    const old = which === 0 ? info.srcPort : info.dstPort;
    write16(buf, l4 + (which === 0 ? TCP_SRC_PORT : TCP_DST_PORT), port); // same offsets in UDP
    // A partial checksum covers the ports when it is completed: nothing to adjust now.
    if (!info.csumPartial) adjustAt(buf, l4 + (protocol === IPPROTO_TCP ? TCP_CHECKSUM : UDP_CHECKSUM), wordDelta(old, port), protocol === IPPROTO_UDP);
  } else if (protocol === IPPROTO_ICMP || protocol === IPPROTO_ICMPV6) {
    if (isIcmpRequest(info.family, info.icmpType) !== (which === 0)) return;
    write16(buf, l4 + ICMP_ID, port);
    adjustAt(buf, l4 + ICMP_CHECKSUM, wordDelta(info.icmpId, port), false);
    info.icmpId = port;
  } else {
    return;
  }
  if (which === 0) info.srcPort = port;
  else info.dstPort = port;
}

export function setSrcPort(buf: Uint8Array, info: PacketInfo, port: number): void {
  setPort(buf, info, 0, port);
}

export function setDstPort(buf: Uint8Array, info: PacketInfo, port: number): void {
  setPort(buf, info, 4, port);
}

// --- TTL and MSS --------------------------------------------------------------------------------

/**
 * Decrements the IPv4 TTL / IPv6 hop limit (RFC 1812 section 5.3.1; RFC 8200 section 3). Returns false,
 * changing nothing, when it is 1 or 0: the packet must not be forwarded (time exceeded).
 * The IPv4 checksum is updated with RFC 1624 eqn 3 (not RFC 1141's shortcut, which can yield -0).
 */
export function decrementTtl(buf: Uint8Array, info: PacketInfo): boolean {
  const ttl = info.ttl;
  if (ttl <= 1) return false;
  const pos = info.ttlOffset;
  buf[pos] = ttl - 1;
  if (info.family === 4) {
    // TTL is the high byte of the word it shares with the protocol byte.
    const c = info.l3Offset + IPV4_CHECKSUM;
    write16(buf, c, checksumAdjust(read16(buf, c), wordDelta(ttl << 8, (ttl - 1) << 8)));
  }
  info.ttl = ttl - 1;
  return true;
}

/**
 * Rewrites the IPv4 identification field (RFC 791 section 3.1) to `id` and updates the header checksum
 * incrementally (the field is one whole 16-bit word of the header; no transport checksum covers it).
 * `info.fragmentId` follows. IPv4 only: IPv6 carries its identification in a fragment header, not here.
 */
export function setIpv4Id(buf: Uint8Array, info: PacketInfo, id: number): void {
  id &= 0xffff;
  const old = info.fragmentId;
  if (old === id) return;
  const o = info.l3Offset;
  write16(buf, o + IPV4_ID, id);
  write16(buf, o + IPV4_CHECKSUM, checksumAdjust(read16(buf, o + IPV4_CHECKSUM), wordDelta(old, id)));
  info.fragmentId = id;
}

/**
 * Lowers the MSS option of a SYN to maxMss when it is larger (RFC 4459 section 3.2 style MSS clamping),
 * updating the TCP checksum. The option may sit at an odd offset (after a single NOP): the one's-complement
 * sum is byte-order independent (RFC 1071 section 2 (B)), so an odd-aligned word counts byte-swapped.
 */
/**
 * The largest MSS a TCP SYN may announce for segments that must cross a link of MTU `mtu`: MTU - 40 (IPv4)
 * or - 60 (IPv6) (RFC 9293 section 3.7.1; RFC 8200 section 8.3). IPv6 links carry at least 1280 bytes
 * (RFC 8200 section 5), so an IPv6 ceiling never goes below 1280 - 60.
 */
export function tcpMssCeiling(family: number, mtu: number): number {
  if (family === AF_INET4) return mtu - MSS_OVERHEAD_IPV4;
  return (mtu < MIN_MTU_IPV6 ? MIN_MTU_IPV6 : mtu) - MSS_OVERHEAD_IPV6;
}

export function clampTcpMss(buf: Uint8Array, info: PacketInfo, maxMss: number): void {
  if (info.protocol !== IPPROTO_TCP || info.tcpMssOffset === 0 || info.tcpMss <= maxMss) return;
  const pos = info.tcpMssOffset;
  const old = info.tcpMss;
  write16(buf, pos, maxMss);
  const odd = ((pos - info.l4Offset) & 1) !== 0;
  const delta = odd ? wordDelta(swap16(old), swap16(maxMss)) : wordDelta(old, maxMss);
  if (!info.csumPartial) adjustAt(buf, info.l4Offset + TCP_CHECKSUM, delta, false);
  info.tcpMss = maxMss;
}

function swap16(v: number): number {
  return ((v & 0xff) << 8) | (v >>> 8);
}

// --- the packet embedded in an ICMP error -------------------------------------------------------

/**
 * Every embedded field we write lies at an even distance from the start of the ICMP message (the quote
 * starts at +8, IPv4 header lengths are multiples of 4 and IPv6 extension headers of 8), so each change
 * folds into the outer checksum as a plain word delta.
 */
function adjustOuterIcmp(buf: Uint8Array, info: PacketInfo, delta: number): void {
  adjustAt(buf, info.l4Offset + ICMP_CHECKSUM, delta, false);
}

/**
 * Applies a pseudo-header delta to the embedded transport checksum when that field was quoted; returns
 * the resulting delta for the outer ICMP checksum. Inner UDP checksum 0 stays 0; inner ICMPv4 has no
 * pseudo-header.
 */
function adjustInnerTransport(buf: Uint8Array, info: PacketInfo, delta: number): number {
  const protocol = info.innerProtocol;
  const l4 = info.innerL4Offset;
  if (protocol === IPPROTO_TCP) {
    if (info.innerL4Available < TCP_CHECKSUM + CHECKSUM_FIELD) return 0;
    return adjustAt(buf, l4 + TCP_CHECKSUM, delta, false);
  }
  if (protocol === IPPROTO_UDP) return adjustAt(buf, l4 + UDP_CHECKSUM, delta, true); // inspect guarantees 8 bytes
  if (protocol === IPPROTO_ICMPV6) return adjustAt(buf, l4 + ICMP_CHECKSUM, delta, false);
  return 0;
}

/** Rewrites the embedded IPv4 header's source (which 0) or destination (which 4) address. */
export function setInnerAddr4(buf: Uint8Array, info: PacketInfo, which: 0 | 4, addr: number): void {
  if (!info.isIcmpError || info.innerFamily !== 4) return;
  addr >>>= 0;
  const l3 = info.innerL3Offset;
  const old = info.innerAddr[which];
  write32(buf, l3 + IPV4_SRC + which, addr);
  const delta = word32Delta(old, addr);
  let outer = delta;
  outer += adjustAt(buf, l3 + IPV4_CHECKSUM, delta, false);
  outer += adjustInnerTransport(buf, info, delta);
  info.innerAddr[which] = addr;
  adjustOuterIcmp(buf, info, outer);
}

/** Rewrites the embedded IPv6 header's source (which 0) or destination (which 4) address. */
export function setInnerAddr6(buf: Uint8Array, info: PacketInfo, which: 0 | 4, words: Uint32Array, wordsOffset: number): void {
  if (!info.isIcmpError || info.innerFamily !== 6) return;
  const delta = writeAddr6(buf, info.innerL3Offset + IPV6_SRC + which * 4, info.innerAddr, which, words, wordsOffset);
  const outer = delta + adjustInnerTransport(buf, info, delta);
  adjustOuterIcmp(buf, info, outer);
}

/**
 * Rewrites the embedded packet's source (which 0) or destination (which 4) port, or its echo identifier
 * under the port convention (an inner request's id is innerSrcPort, a reply's innerDstPort).
 */
export function setInnerPort(buf: Uint8Array, info: PacketInfo, which: 0 | 4, port: number): void {
  if (!info.isIcmpError || info.innerFamily === 0) return;
  port &= 0xffff;
  const protocol = info.innerProtocol;
  const l4 = info.innerL4Offset;
  const old = which === 0 ? info.innerSrcPort : info.innerDstPort;
  const delta = wordDelta(old, port);
  let outer = delta;
  if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) {
    write16(buf, l4 + (which === 0 ? TCP_SRC_PORT : TCP_DST_PORT), port);
    if (protocol === IPPROTO_UDP) outer += adjustAt(buf, l4 + UDP_CHECKSUM, delta, true);
    else if (info.innerL4Available >= TCP_CHECKSUM + CHECKSUM_FIELD) outer += adjustAt(buf, l4 + TCP_CHECKSUM, delta, false);
  } else {
    if (isIcmpRequest(info.innerFamily, buf[l4 + ICMP_TYPE]) !== (which === 0)) return;
    write16(buf, l4 + ICMP_ID, port);
    outer += adjustAt(buf, l4 + ICMP_CHECKSUM, delta, false);
  }
  if (which === 0) info.innerSrcPort = port;
  else info.innerDstPort = port;
  adjustOuterIcmp(buf, info, outer);
}

/**
 * Recomputes the outer ICMPv4 / ICMPv6 checksum over the whole message (ICMPv6 with its pseudo-header,
 * RFC 4443 section 2.3). The inner rewrites above already keep it valid incrementally; this is for the
 * slow path (after verifying, or when originating). Does nothing for a fragment: the message is not whole.
 */
export function refreshIcmpChecksum(buf: Uint8Array, info: PacketInfo): void {
  if (info.isFragment) return;
  const l4 = info.l4Offset;
  const length = info.l4Length;
  const pos = l4 + ICMP_CHECKSUM;
  write16(buf, pos, 0);
  const start = info.family === 6 ? pseudoHeaderSum6(info.addr, 0, 4, IPPROTO_ICMPV6, length) : 0;
  write16(buf, pos, foldChecksum(onesComplementSum(buf, l4, l4 + length, start)));
}

/**
 * Turns the inspected IPv4 ICMP echo request at buf[l3] (header `headerLength` bytes, ICMP at l4) into its
 * reply in place (RFC 792: swap the addresses, type 0, same identifier, sequence and data). Options are kept
 * as they are (RFC 1122 section 3.2.2.6 lets a reply carry them).
 */
export function echoReplyInPlace(buf: Uint8Array, l3: number, headerLength: number, l4: number): void {
  const src = read32(buf, l3 + IPV4_SRC);
  write32(buf, l3 + IPV4_SRC, read32(buf, l3 + IPV4_DST));
  write32(buf, l3 + IPV4_DST, src);
  buf[l3 + IPV4_TTL] = ORIGINATED_TTL;
  write16(buf, l3 + IPV4_CHECKSUM, ipv4HeaderChecksum(buf, l3, headerLength));
  typeInPlace(buf, l4, ICMP4_ECHO_REPLY);
}

/**
 * The ICMPv6 echo request at buf[l3] (ICMPv6 at l4) into its reply in place (RFC 4443 section 4.2: addresses
 * swapped, type 129, identifier, sequence and data as received). Swapping the addresses leaves the pseudo-header
 * sum as it was, so only the type changes the checksum.
 */
export function echoReplyInPlace6(buf: Uint8Array, l3: number, l4: number): void {
  for (let w = 0; w < IPV6_ADDR_BYTES; w += 4) {
    const src = read32(buf, l3 + IPV6_SRC + w);
    write32(buf, l3 + IPV6_SRC + w, read32(buf, l3 + IPV6_DST + w));
    write32(buf, l3 + IPV6_DST + w, src);
  }
  buf[l3 + IPV6_HOP_LIMIT] = ORIGINATED_TTL;
  typeInPlace(buf, l4, ICMP6_ECHO_REPLY);
}

/** Sets the ICMP / ICMPv6 type byte, the high half of the message's first word (RFC 1624 incremental update). */
function typeInPlace(buf: Uint8Array, l4: number, type: number): void {
  const ck = read16(buf, l4 + ICMP_CHECKSUM);
  const firstWord = read16(buf, l4 + ICMP_TYPE);
  buf[l4 + ICMP_TYPE] = type;
  write16(buf, l4 + ICMP_CHECKSUM, checksumUpdate16(ck, firstWord, (type << 8) | (firstWord & 0xff)));
}
