/**
 * Generic segmentation offload in software: what the kernel does with a GSO super-packet (net/ipv4/tcp_offload.c
 * tcp_gso_segment, net/ipv4/udp_offload.c __udp_gso_segment, net/ipv4/af_inet.c inet_gso_segment) and with a
 * partial checksum (net/core/dev.c skb_checksum_help), for the places that cannot hand the job to a kernel: a
 * tunnel that encrypts or encapsulates per packet (WireGuard, GRE, IPsec), a TUN without offloads.
 *
 *   super-packet  [ IP | TCP/UDP header | payload: n × gso_size (the last one shorter) ]   (virtio-net header
 *   from a TUN with offloads: gso_type, gso_size, csum_start = the L4 header's offset; PacketBatch.vnet)
 *        │ writeSegment(k) for k in 0..n-1
 *        ▼
 *   segment k     [ IP | TCP/UDP header | payload k ]
 *     IPv4: total length, identification + k (inet_gso_segment: ids count up per segment), header checksum
 *     IPv6: payload length
 *     TCP:  sequence number + k × gso_size; FIN and PSH on the last segment only, CWR on the first only
 *           (tcp_gso_segment; RFC 3168 section 6.1.2: CWR once per window reduction); checksum computed in full
 *     UDP (USO, VIRTIO_NET_HDR_GSO_UDP_L4): one datagram per gso_size, UDP length, checksum in full (a computed 0
 *           is sent as 0xFFFF, RFC 768)
 *
 * Every checksum is computed from the segment's bytes, never carried over: the super-packet's L4 field holds
 * only a pseudo-header sum (NEEDS_CSUM), whose length convention does not matter here. Pure and allocation-free:
 * the caller hands the destination buffer (a preallocated batch slot). Bad input (a header the packet does not
 * hold, gso_size 0, a gso_type that does not match the IP version) is reported as GSO_BAD, never thrown.
 */
import { foldChecksum, onesComplementSum } from './checksum.js';
import { read16, read32, write16, write32 } from './bytes.js';
import {
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_CHECKSUM,
  IPV4_DST,
  IPV4_ID,
  IPV4_MIN_HEADER,
  IPV4_SRC,
  IPV4_TOTAL_LENGTH,
  IPV6_ADDR_BYTES,
  IPV6_DST,
  IPV6_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_SRC,
  IP_VERSION_4,
  IP_VERSION_6,
  TCP_CHECKSUM,
  TCP_CWR,
  TCP_DATA_OFFSET,
  TCP_FIN,
  TCP_FLAGS,
  TCP_MIN_HEADER,
  TCP_PSH,
  TCP_SEQ,
  UDP_CHECKSUM,
  UDP_HEADER,
  UDP_LENGTH,
} from './constants.js';

/** virtio 1.x section 5.1.6 gso_type values (the same numbers as PacketBatch's VNET_GSO_*; wire/ imports no batch). */
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_TCPV6 = 4;
export const GSO_UDP_L4 = 5;
/** The ECN bit on top of a TCP gso_type. */
export const GSO_ECN = 0x80;
/** Returned for a super-packet that cannot be segmented (a counted drop for the caller). */
export const GSO_BAD = -1;

/** The TCP data offset is the high nibble of byte 12, in 32-bit words (RFC 9293 section 3.1). */
const TCP_DATA_OFFSET_SHIFT = 4;
const TCP_WORD = 4;
/** Flags only the last segment keeps (FIN, PSH), and only the first (CWR). */
const LAST_ONLY_FLAGS = TCP_FIN | TCP_PSH;
const FIRST_ONLY_FLAGS = TCP_CWR;
const IP_ID_MASK = 0xffff;
/** An IPv4 address is 4 bytes (RFC 791 section 3.1). */
const IPV4_ADDR_BYTES = 4;
/** RFC 768: a computed UDP checksum of 0 is sent as all ones (0 means "no checksum"). */
const UDP_ZERO_CHECKSUM_SENT_AS = 0xffff;

/** The transport protocol a gso_type segments, or 0 for one we do not (UFO, unknown). */
function gsoProtocol(gsoType: number): number {
  const t = gsoType & ~GSO_ECN;
  if (t === GSO_TCPV4 || t === GSO_TCPV6) return IPPROTO_TCP;
  if (t === GSO_UDP_L4) return IPPROTO_UDP;
  return 0;
}

/**
 * Validates the super-packet at buf[off, off+length) against its virtio-net header and returns the length of the
 * headers every segment repeats (IP and TCP/UDP, up to the payload), or GSO_BAD. `l4` is csum_start: the offset
 * of the transport header from the packet's first byte.
 */
export function gsoHeaderLength(buf: Uint8Array, off: number, length: number, gsoType: number, gsoSize: number, l4: number): number {
  const protocol = gsoProtocol(gsoType);
  if (protocol === 0 || gsoSize <= 0 || off < 0 || off + length > buf.length) return GSO_BAD;
  const t = gsoType & ~GSO_ECN;
  const version = buf[off] >>> 4;
  if (t === GSO_TCPV4 && version !== IP_VERSION_4) return GSO_BAD;
  if (t === GSO_TCPV6 && version !== IP_VERSION_6) return GSO_BAD;
  if (version !== IP_VERSION_4 && version !== IP_VERSION_6) return GSO_BAD;
  const minL4 = version === IP_VERSION_4 ? IPV4_MIN_HEADER : IPV6_HEADER;
  if (l4 < minL4) return GSO_BAD;
  let header: number;
  if (protocol === IPPROTO_TCP) {
    if (l4 + TCP_MIN_HEADER > length) return GSO_BAD;
    header = l4 + (buf[off + l4 + TCP_DATA_OFFSET] >>> TCP_DATA_OFFSET_SHIFT) * TCP_WORD;
    if (header < l4 + TCP_MIN_HEADER) return GSO_BAD;
  } else {
    header = l4 + UDP_HEADER;
  }
  return header <= length ? header : GSO_BAD;
}

/** Segments a super-packet of `length` bytes with `header` bytes of headers makes (at least one). */
export function gsoSegmentCount(length: number, header: number, gsoSize: number): number {
  const payload = length - header;
  return payload <= gsoSize ? 1 : Math.ceil(payload / gsoSize);
}

/**
 * Writes segment k of the super-packet at src[off, off+length) to dst[at, ...) and returns its length. `header`
 * comes from gsoHeaderLength (the caller checked it, and that dst has room for header + gsoSize bytes).
 */
export function writeSegment(
  src: Uint8Array,
  off: number,
  length: number,
  gsoType: number,
  gsoSize: number,
  l4: number,
  header: number,
  k: number,
  dst: Uint8Array,
  at: number,
): number {
  const n = gsoSegmentCount(length, header, gsoSize);
  const from = off + header + k * gsoSize;
  const payload = Math.min(gsoSize, off + length - from);
  const total = header + payload;
  dst.set(src.subarray(off, off + header), at);
  dst.set(src.subarray(from, from + payload), at + header);
  const l4Length = total - l4;
  let pseudo: number;
  if (dst[at] >>> 4 === IP_VERSION_4) {
    write16(dst, at + IPV4_TOTAL_LENGTH, total);
    write16(dst, at + IPV4_ID, (read16(src, off + IPV4_ID) + k) & IP_ID_MASK);
    write16(dst, at + IPV4_CHECKSUM, 0);
    write16(dst, at + IPV4_CHECKSUM, foldChecksum(onesComplementSum(dst, at, at + l4, 0)));
    pseudo = onesComplementSum(dst, at + IPV4_SRC, at + IPV4_DST + IPV4_ADDR_BYTES, 0) + l4Length;
  } else {
    write16(dst, at + IPV6_PAYLOAD_LENGTH, total - IPV6_HEADER);
    // RFC 8200 section 8.1: the upper-layer length is 32 bits in the IPv6 pseudo-header.
    pseudo = onesComplementSum(dst, at + IPV6_SRC, at + IPV6_DST + IPV6_ADDR_BYTES, 0) + (l4Length >>> 16) + (l4Length & 0xffff);
  }
  const l4At = at + l4;
  let field: number;
  if (gsoProtocol(gsoType) === IPPROTO_TCP) {
    pseudo += IPPROTO_TCP;
    write32(dst, l4At + TCP_SEQ, (read32(src, off + l4 + TCP_SEQ) + k * gsoSize) >>> 0);
    let flags = src[off + l4 + TCP_FLAGS];
    if (k !== n - 1) flags &= ~LAST_ONLY_FLAGS;
    if (k !== 0) flags &= ~FIRST_ONLY_FLAGS;
    dst[l4At + TCP_FLAGS] = flags;
    field = l4At + TCP_CHECKSUM;
  } else {
    pseudo += IPPROTO_UDP;
    write16(dst, l4At + UDP_LENGTH, l4Length);
    field = l4At + UDP_CHECKSUM;
  }
  write16(dst, field, 0);
  let c = foldChecksum(onesComplementSum(dst, l4At, at + total, pseudo));
  if (c === 0 && gsoProtocol(gsoType) === IPPROTO_UDP) c = UDP_ZERO_CHECKSUM_SENT_AS;
  write16(dst, field, c);
  return total;
}

/**
 * Completes a partial checksum in place (VIRTIO_NET_HDR_F_NEEDS_CSUM; skb_checksum_help): the field at
 * csum_start + csum_offset holds the pseudo-header sum, so the one's-complement sum of [csum_start, end) with the
 * field as it is, folded and complemented, is the checksum. `udp`: a computed 0 is sent as 0xFFFF (RFC 768).
 * Returns false (nothing written) when the offsets do not lie inside the packet.
 */
export function completeChecksum(buf: Uint8Array, off: number, length: number, csumStart: number, csumOffset: number, udp: boolean): boolean {
  const field = csumStart + csumOffset;
  if (csumStart <= 0 || field + 2 > length || off + length > buf.length) return false;
  let c = foldChecksum(onesComplementSum(buf, off + csumStart, off + length, 0));
  if (c === 0 && udp) c = UDP_ZERO_CHECKSUM_SENT_AS;
  write16(buf, off + field, c);
  return true;
}
