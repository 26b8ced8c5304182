/**
 * The IPv4 and IPv6 headers the edge writes. IPv4: in place in front of packets it originates or encapsulates
 * (WireGuard datagrams, GRE's outer header): 20 bytes, no options, TOS 0 (RFC 6040's
 * compatibility mode for tunnels), DF set (the edge does path-MTU discovery, RFC 1191), the
 * header checksum filled in (RFC 791 section 3.1). Allocates nothing.
 */
import { ipv4HeaderChecksum } from './checksum.js';
import { write16, write32 } from './bytes.js';
import {
  IPV6_DST,
  IPV6_HOP_LIMIT,
  IPV6_NEXT_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_SRC,
  IPV4_CHECKSUM,
  IPV4_DST,
  IPV4_FLAG_DF,
  IPV4_FLAGS_FRAGMENT,
  IPV4_ID,
  IPV4_MIN_HEADER,
  IPV4_PROTOCOL,
  IPV4_SRC,
  IPV4_TOS,
  IPV4_TOTAL_LENGTH,
  IPV4_TTL,
  IPV4_VERSION_IHL,
} from './constants.js';

/** Version 4, IHL 5 (no options). */
const VERSION_IHL_PLAIN = 0x45;

/**
 * `tos` and `flags` (the flags / fragment offset word) default to the tunnel header's 0 and DF; the ICMP errors the
 * edge originates (icmp-error.ts) set precedence 6 and no DF.
 */
export function writeIpv4Header(
  buf: Uint8Array, at: number, totalLength: number, id: number, ttl: number, protocol: number, src: number, dst: number,
  tos = 0, flags = IPV4_FLAG_DF,
): void {
  buf[at + IPV4_VERSION_IHL] = VERSION_IHL_PLAIN;
  buf[at + IPV4_TOS] = tos;
  write16(buf, at + IPV4_TOTAL_LENGTH, totalLength);
  write16(buf, at + IPV4_ID, id);
  write16(buf, at + IPV4_FLAGS_FRAGMENT, flags);
  buf[at + IPV4_TTL] = ttl;
  buf[at + IPV4_PROTOCOL] = protocol;
  write32(buf, at + IPV4_SRC, src);
  write32(buf, at + IPV4_DST, dst);
  write16(buf, at + IPV4_CHECKSUM, ipv4HeaderChecksum(buf, at, IPV4_MIN_HEADER));
}

/** First word of an IPv6 header: version 6, traffic class 0, flow label 0 (RFC 8200 section 3). */
const IPV6_VERSION_WORD = 6 << 28;

/**
 * An IPv6 header (RFC 8200 section 3) at buf[at], traffic class and flow label 0, from addr[srcAt..+4) to
 * addr[dstAt..+4) (32-bit words). Allocates nothing.
 */
export function writeIpv6Header(
  buf: Uint8Array, at: number, payloadLength: number, nextHeader: number, hopLimit: number, addr: Uint32Array, srcAt: number, dstAt: number,
): void {
  write32(buf, at, IPV6_VERSION_WORD);
  write16(buf, at + IPV6_PAYLOAD_LENGTH, payloadLength);
  buf[at + IPV6_NEXT_HEADER] = nextHeader;
  buf[at + IPV6_HOP_LIMIT] = hopLimit;
  for (let w = 0; w < 4; w++) {
    write32(buf, at + IPV6_SRC + 4 * w, addr[srcAt + w]);
    write32(buf, at + IPV6_DST + 4 * w, addr[dstAt + w]);
  }
}
