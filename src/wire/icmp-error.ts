/**
 * ICMP errors the edge originates on the packet path (time exceeded, RFC 792 / RFC 4443 section 3.3; the tunnel
 * MTU path's fragmentation needed / packet too big, src/onramp/tunnel-mtu.ts), written into a preallocated
 * buffer: no allocation, one pass over the quoted bytes. build.ts's buildIcmpError is the slow, record-based
 * builder (tests, tools) and the oracle these writers are tested against (icmp-error.test.ts): same bytes for
 * the same message.
 *
 * Both writers quote as much of the offending packet as keeps the error within 576 bytes for IPv4 (RFC 1812
 * section 4.3.2.3) and within the IPv6 minimum MTU, 1280 bytes (RFC 4443 section 2.4 (c)). Whether an error may
 * be sent at all (never about an ICMP error, a later fragment, a non-unicast source: RFC 1812 section 4.3.2.7)
 * and how often (rate limiting, RFC 1812 section 4.3.2.8) are the caller's.
 */
import { foldChecksum, onesComplementSum, pseudoHeaderSum6 } from './checksum.js';
import { write16, write32 } from './bytes.js';
import { writeIpv4Header, writeIpv6Header } from './header.js';
import {
  ICMP4_ERROR_MAX,
  ICMP6_ERROR_MAX,
  ICMP_CHECKSUM,
  ICMP_CODE,
  ICMP_HEADER,
  ICMP_ID,
  ICMP_TYPE,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPV4_MIN_HEADER,
  IPV6_HEADER,
  ORIGINATED_TTL,
} from './constants.js';

/**
 * Type of service of the errors the edge originates: precedence 6, internetwork control (RFC 1812 section
 * 4.3.2.5 asks for it on ICMP errors; Linux sends 0xc0 too), so that the error is not queued behind the traffic
 * that caused it.
 */
export const ICMP_ERROR_TOS = 0xc0;
/** Bytes of the offending packet an IPv4 / IPv6 error can carry at most. */
export const ICMP4_QUOTE_MAX = ICMP4_ERROR_MAX - IPV4_MIN_HEADER - ICMP_HEADER;
export const ICMP6_QUOTE_MAX = ICMP6_ERROR_MAX - IPV6_HEADER - ICMP_HEADER;
/** Room an error needs in the output buffer, at most (the IPv6 one is the larger). */
export const ICMP_ERROR_ROOM = ICMP6_ERROR_MAX;

/**
 * An ICMPv4 error from `src` to `dst` (unsigned 32-bit numbers) with `type`, `code` and the 32-bit
 * rest-of-header word, quoting quoted[qStart, qStart + qLength) (cut to ICMP4_QUOTE_MAX), written at out[at].
 * Returns its length. `out` must have ICMP4_ERROR_MAX bytes from `at`.
 */
export function writeIcmpError4(
  out: Uint8Array, at: number, type: number, code: number, rest: number, src: number, dst: number,
  quoted: Uint8Array, qStart: number, qLength: number,
): number {
  const n = qLength < ICMP4_QUOTE_MAX ? qLength : ICMP4_QUOTE_MAX;
  const l4 = at + IPV4_MIN_HEADER;
  const total = IPV4_MIN_HEADER + ICMP_HEADER + n;
  // No DF (a router's own error may be fragmented on the way back), id 0: the datagram is never fragmented here.
  writeIpv4Header(out, at, total, 0, ORIGINATED_TTL, IPPROTO_ICMP, src, dst, ICMP_ERROR_TOS, 0);
  writeIcmpBody(out, l4, type, code, rest, quoted, qStart, n);
  // RFC 792: the ICMP checksum covers the ICMP message only (no pseudo-header).
  write16(out, l4 + ICMP_CHECKSUM, foldChecksum(onesComplementSum(out, l4, l4 + ICMP_HEADER + n, 0)));
  return total;
}

/**
 * An ICMPv6 error from addr[srcAt..+4) to addr[dstAt..+4) (words), as writeIcmpError4, cut to ICMP6_QUOTE_MAX;
 * `out` must have ICMP6_ERROR_MAX bytes from `at`. The checksum covers the pseudo-header (RFC 4443 section 2.3).
 */
export function writeIcmpError6(
  out: Uint8Array, at: number, type: number, code: number, rest: number, addr: Uint32Array, srcAt: number, dstAt: number,
  quoted: Uint8Array, qStart: number, qLength: number,
): number {
  const n = qLength < ICMP6_QUOTE_MAX ? qLength : ICMP6_QUOTE_MAX;
  const l4 = at + IPV6_HEADER;
  const icmpLength = ICMP_HEADER + n;
  writeIpv6Header(out, at, icmpLength, IPPROTO_ICMPV6, ORIGINATED_TTL, addr, srcAt, dstAt);
  writeIcmpBody(out, l4, type, code, rest, quoted, qStart, n);
  const start = pseudoHeaderSum6(addr, srcAt, dstAt, IPPROTO_ICMPV6, icmpLength);
  write16(out, l4 + ICMP_CHECKSUM, foldChecksum(onesComplementSum(out, l4, l4 + icmpLength, start)));
  return IPV6_HEADER + icmpLength;
}

/** Type, code, zero checksum, rest-of-header word, then the quote. */
function writeIcmpBody(out: Uint8Array, l4: number, type: number, code: number, rest: number, quoted: Uint8Array, qStart: number, n: number): void {
  out[l4 + ICMP_TYPE] = type;
  out[l4 + ICMP_CODE] = code;
  write16(out, l4 + ICMP_CHECKSUM, 0);
  write32(out, l4 + ICMP_ID, rest);
  // A byte loop rather than set(subarray()): no view object per error. The quote never overlaps the output.
  const to = l4 + ICMP_HEADER;
  for (let i = 0; i < n; i++) out[to + i] = quoted[qStart + i];
}
