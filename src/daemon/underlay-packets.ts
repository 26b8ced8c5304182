/**
 * Outer packets the daemon writes into the underlay TUN itself, built in place in a batch slot (no
 * allocation): IPv4/UDP around a WireGuard datagram, and ICMP echo replies from a tunnel endpoint.
 * src/wire/build.ts builds the same formats into fresh arrays (tests, slow paths); these are the hot-path
 * forms. The echo answer moved to src/wire/rewrite.ts (the pipeline answers probes inside tunnels too); it is
 * re-exported here for the underlay.
 */
import { foldChecksum, onesComplementSum, pseudoHeaderSum4 } from '../wire/checksum.js';
import {
  IPPROTO_UDP,
  IPV4_MIN_HEADER,
  ORIGINATED_TTL,
  UDP_CHECKSUM,
  UDP_DST_PORT,
  UDP_HEADER,
  UDP_LENGTH,
  UDP_SRC_PORT,
} from '../wire/constants.js';
import { write16 } from '../wire/bytes.js';
import { writeIpv4Header } from '../wire/header.js';

export { echoReplyInPlace } from '../wire/rewrite.js';
export { ORIGINATED_TTL };
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
