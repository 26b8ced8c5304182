/**
 * Cryptokey routing (whitepaper §2): each peer has a set of prefixes; inbound, a decrypted packet is accepted
 * only when its source lies in one of the prefixes of the peer it came from.
 *
 * Unlike `wg`, a prefix configured on a second peer does not move: on an edge with Automatic Return
 * Routing, many sites behind one WireGuard device share the same private prefix (two branches on
 * 10.0.1.0/24), and the edge picks the peer of an outbound packet by its flow's onramp, not by its
 * destination. lookupDestination (longest match, the earliest configured on a tie) is only a fallback
 * for a device used as a plain router, where overlapping prefixes are ambiguous by nature.
 *
 * The matching itself is route/prefix-list.ts, shared with the pipeline's per-port source filter: on the
 * edge the pipeline checks the source of the packet it inspects anyway (see WireGuardDeviceOptions.checkSources),
 * and this class serves the standalone device. Lookups allocate nothing.
 */
import { PrefixList } from '../../route/prefix-list.js';
import {
  IPV4_DST,
  IPV4_MIN_HEADER,
  IPV4_SRC,
  IPV4_TOTAL_LENGTH,
  IPV6_DST,
  IPV6_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_SRC,
  IP_VERSION_4,
  IP_VERSION_6,
} from '../../wire/constants.js';

/** The peers' prefixes (owner = peer index) in the shared PrefixList, read from raw IP packets. */
export class AllowedIps extends PrefixList {
  removePeer(peer: number): void {
    this.removeOwner(peer);
  }

  /** Is the source address of an IP packet inside one of `peer`'s prefixes? (False for a packet too short to hold it.) */
  sourceAllowed(packet: Uint8Array, len: number, peer: number): boolean {
    const version = len > 0 ? packet[0] >> 4 : 0;
    if (version === IP_VERSION_4 && len >= IPV4_MIN_HEADER) return this.lookup(IP_VERSION_4, packet, IPV4_SRC, peer) === peer;
    if (version === IP_VERSION_6 && len >= IPV6_HEADER) return this.lookup(IP_VERSION_6, packet, IPV6_SRC, peer) === peer;
    return false;
  }

  /** The peer an outbound IP packet should go to by its destination (cryptokey routing), or -1. */
  lookupDestination(packet: Uint8Array, len: number): number {
    const version = len > 0 ? packet[0] >> 4 : 0;
    if (version === IP_VERSION_4 && len >= IPV4_MIN_HEADER) return this.lookup(IP_VERSION_4, packet, IPV4_DST);
    if (version === IP_VERSION_6 && len >= IPV6_HEADER) return this.lookup(IP_VERSION_6, packet, IPV6_DST);
    return -1;
  }
}

/**
 * Length of the IP packet at the front of a decrypted payload (which carries zero padding to 16 bytes,
 * §5.4.6), from its own length field; -1 when it is not a well-formed IPv4/IPv6 header or claims more bytes
 * than we hold (wireguard-go device/receive.go does the same checks). `off`: where the payload starts in `p`.
 */
export function innerPacketLength(p: Uint8Array, len: number, off = 0): number {
  if (len < 1) return -1;
  const version = p[off] >> 4;
  if (version === IP_VERSION_4) {
    if (len < IPV4_MIN_HEADER) return -1;
    const total = (p[off + IPV4_TOTAL_LENGTH] << 8) | p[off + IPV4_TOTAL_LENGTH + 1];
    return total < IPV4_MIN_HEADER || total > len ? -1 : total;
  }
  if (version === IP_VERSION_6) {
    if (len < IPV6_HEADER) return -1;
    const total = IPV6_HEADER + ((p[off + IPV6_PAYLOAD_LENGTH] << 8) | p[off + IPV6_PAYLOAD_LENGTH + 1]);
    return total > len ? -1 : total;
  }
  return -1;
}
