/**
 * The IPv4 header the edge writes in place in front of packets it originates or encapsulates
 * (WireGuard datagrams, GRE's outer header): 20 bytes, no options, TOS 0 (RFC 6040's
 * compatibility mode for tunnels), DF set (the edge does path-MTU discovery, RFC 1191), the
 * header checksum filled in (RFC 791 section 3.1). Allocates nothing.
 */
import { ipv4HeaderChecksum } from './checksum.js';
import { write16, write32 } from './bytes.js';
import {
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
