/**
 * Outer packets the daemon writes into the underlay TUN itself, built in place in a batch slot (no
 * allocation): IPv4/UDP around a WireGuard datagram, and ICMP echo replies from a tunnel endpoint.
 * src/wire/build.ts builds the same formats into fresh arrays (tests, slow paths); these are the hot-path
 * forms. TODO: move to src/wire once a second user appears.
 */
import { foldChecksum, ipv4HeaderChecksum, onesComplementSum, pseudoHeaderSum4, checksumUpdate16 } from '../wire/checksum.js';
import {
  ICMP4_ECHO_REPLY,
  ICMP_CHECKSUM,
  ICMP_TYPE,
  IPPROTO_UDP,
  IPV4_CHECKSUM,
  IPV4_DST,
  IPV4_MIN_HEADER,
  IPV4_SRC,
  IPV4_TTL,
  UDP_CHECKSUM,
  UDP_DST_PORT,
  UDP_HEADER,
  UDP_LENGTH,
  UDP_SRC_PORT,
} from '../wire/constants.js';
import { read32, write16, write32 } from '../wire/bytes.js';
import { writeIpv4Header } from '../wire/header.js';

/** Version 4, IHL 5 (RFC 791 section 3.1). */
/** TTL of packets the edge originates (Linux's default, net.ipv4.ip_default_ttl). */
export const ORIGINATED_TTL = 64;
export const UDP4_OVERHEAD = IPV4_MIN_HEADER + UDP_HEADER;

/**
 * Writes IPv4 + UDP headers at buf[at] for a payload already at buf[at + 28, + payloadLength), with a full
 * UDP checksum (RFC 768; a zero checksum would be legal over IPv4, but a computed one lets the receiving
 * kernel catch corruption the TUN path cannot). DF set: the underlay path MTU is the operator's, and
 * WireGuard datagrams must not be fragmented silently (wireguard-go sets DF too). Returns the total length.
 */
export function writeUdp4Headers(
  buf: Uint8Array,
  at: number,
  src: number,
  dst: number,
  srcPort: number,
  dstPort: number,
  payloadLength: number,
  ipId: number,
): number {
  const udpLength = UDP_HEADER + payloadLength;
  const total = IPV4_MIN_HEADER + udpLength;
  writeIpv4Header(buf, at, total, ipId, ORIGINATED_TTL, IPPROTO_UDP, src, dst);
  const u = at + IPV4_MIN_HEADER;
  write16(buf, u + UDP_SRC_PORT, srcPort);
  write16(buf, u + UDP_DST_PORT, dstPort);
  write16(buf, u + UDP_LENGTH, udpLength);
  write16(buf, u + UDP_CHECKSUM, 0);
  let ck = foldChecksum(onesComplementSum(buf, u, u + udpLength, pseudoHeaderSum4(src, dst, IPPROTO_UDP, udpLength)));
  // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
  if (ck === 0) ck = 0xffff;
  write16(buf, u + UDP_CHECKSUM, ck);
  return total;
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
  // The type byte is the high half of the first ICMP word (RFC 1624 incremental update).
  const ck = (buf[l4 + ICMP_CHECKSUM] << 8) | buf[l4 + ICMP_CHECKSUM + 1];
  const firstWord = (buf[l4 + ICMP_TYPE] << 8) | buf[l4 + ICMP_TYPE + 1];
  buf[l4 + ICMP_TYPE] = ICMP4_ECHO_REPLY;
  write16(buf, l4 + ICMP_CHECKSUM, checksumUpdate16(ck, firstWord, (ICMP4_ECHO_REPLY << 8) | (firstWord & 0xff)));
}

