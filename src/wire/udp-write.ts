/**
 * A UDP datagram the edge originates (its own DNS answers, src/dataplane/dns-gate.ts), written in place around a
 * payload already in the buffer: IPv4 (RFC 791, 20 bytes, no options) or IPv6 (RFC 8200, no extension headers)
 * header, UDP header (RFC 768) with its checksum over the pseudo-header. Allocates nothing.
 */
import { write16 } from './bytes.js';
import { foldChecksum, onesComplementSum, pseudoHeaderSum4, pseudoHeaderSum6 } from './checksum.js';
import {
  IPPROTO_UDP,
  IPV4_MIN_HEADER,
  IPV6_HEADER,
  ORIGINATED_TTL,
  UDP_CHECKSUM,
  UDP_DST_PORT,
  UDP_HEADER,
  UDP_LENGTH,
  UDP_SRC_PORT,
} from './constants.js';
import { writeIpv4Header, writeIpv6Header } from './header.js';

/** RFC 768: a computed checksum of zero is sent as all ones (zero means "none", and IPv6 forbids none, RFC 8200 section 8.1). */
const CHECKSUM_ZERO_AS = 0xffff;

/** Where the payload of an originated IPv4 / IPv6 UDP datagram starts, from the datagram's start. */
export const UDP4_PAYLOAD_AT = IPV4_MIN_HEADER + UDP_HEADER;
export const UDP6_PAYLOAD_AT = IPV6_HEADER + UDP_HEADER;

function writeUdpHeader(out: Uint8Array, l4: number, srcPort: number, dstPort: number, udpLength: number): void {
  write16(out, l4 + UDP_SRC_PORT, srcPort);
  write16(out, l4 + UDP_DST_PORT, dstPort);
  write16(out, l4 + UDP_LENGTH, udpLength);
  write16(out, l4 + UDP_CHECKSUM, 0);
}

function finishChecksum(out: Uint8Array, l4: number, udpLength: number, pseudo: number): void {
  const sum = foldChecksum(onesComplementSum(out, l4, l4 + udpLength, pseudo));
  write16(out, l4 + UDP_CHECKSUM, sum === 0 ? CHECKSUM_ZERO_AS : sum);
}

/**
 * An IPv4 UDP datagram at out[at]: its payload (`payloadLength` bytes) must already be at out[at + UDP4_PAYLOAD_AT].
 * src/dst: unsigned 32-bit addresses. DF set, id 0 (RFC 6864 section 4.1: an atomic datagram's id has no meaning).
 * Returns the datagram's length.
 */
export function writeUdp4(out: Uint8Array, at: number, src: number, dst: number, srcPort: number, dstPort: number, payloadLength: number): number {
  const udpLength = UDP_HEADER + payloadLength;
  const total = IPV4_MIN_HEADER + udpLength;
  writeIpv4Header(out, at, total, 0, ORIGINATED_TTL, IPPROTO_UDP, src, dst);
  const l4 = at + IPV4_MIN_HEADER;
  writeUdpHeader(out, l4, srcPort, dstPort, udpLength);
  finishChecksum(out, l4, udpLength, pseudoHeaderSum4(src, dst, IPPROTO_UDP, udpLength));
  return total;
}

/**
 * An IPv6 UDP datagram at out[at] from addr[srcAt..+4) to addr[dstAt..+4) (words); its payload must already be at
 * out[at + UDP6_PAYLOAD_AT]. Returns the datagram's length.
 */
export function writeUdp6(out: Uint8Array, at: number, addr: Uint32Array, srcAt: number, dstAt: number, srcPort: number, dstPort: number, payloadLength: number): number {
  const udpLength = UDP_HEADER + payloadLength;
  writeIpv6Header(out, at, udpLength, IPPROTO_UDP, ORIGINATED_TTL, addr, srcAt, dstAt);
  const l4 = at + IPV6_HEADER;
  writeUdpHeader(out, l4, srcPort, dstPort, udpLength);
  finishChecksum(out, l4, udpLength, pseudoHeaderSum6(addr, srcAt, dstAt, IPPROTO_UDP, udpLength));
  return IPV6_HEADER + udpLength;
}
