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
 * This first version keeps a list sorted by prefix length (longest first) and scans it: fine for tens of
 * peers; a trie can replace it behind the same interface. Lookups allocate nothing.
 */
import { parsePrefix } from '../../common/addr.js';
import { read32 } from '../../wire/bytes.js';
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


interface Entry {
  family: 4 | 6;
  words: Uint32Array; // 4 words, host bits zero
  length: number;
  peer: number;
}

/** The prefix mask for word `w` (0..3) of a prefix of `length` bits. */
function maskWord(length: number, w: number): number {
  const bits = length - w * 32;
  if (bits >= 32) return 0xffffffff;
  if (bits <= 0) return 0;
  return (0xffffffff << (32 - bits)) >>> 0;
}

export class AllowedIps {
  private entries: Entry[] = [];

  /** Adds `prefixText` ("10.0.0.0/24", "fd00::/64", a bare address = host route) for `peer`; false when malformed. */
  insert(prefixText: string, peer: number): boolean {
    const p = parsePrefix(prefixText);
    if (!p) return false;
    const words = new Uint32Array(4);
    words.set(p.words.subarray(0, 4));
    const already = this.entries.some(
      (e) => e.peer === peer && e.family === p.family && e.length === p.length && e.words.every((v, i) => v === words[i]),
    );
    if (!already) this.entries.push({ family: p.family, words, length: p.length, peer });
    // Stable sort: longest first, then in configuration order.
    this.entries.sort((a, b) => b.length - a.length);
    return true;
  }

  removePeer(peer: number): void {
    this.entries = this.entries.filter((e) => e.peer !== peer);
  }

  /** Prefixes of one peer as text-free records (control plane). */
  prefixesOf(peer: number): { family: 4 | 6; words: Uint32Array; length: number }[] {
    return this.entries.filter((e) => e.peer === peer).map((e) => ({ family: e.family, words: e.words, length: e.length }));
  }

  /** Longest-prefix match of the address at `packet[off..]` (4 or 16 bytes); the peer or -1. With `onlyPeer` >= 0, only that peer's prefixes count. */
  lookup(family: 4 | 6, packet: Uint8Array, off: number, onlyPeer = -1): number {
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (e.family !== family || (onlyPeer >= 0 && e.peer !== onlyPeer)) continue;
      if (family === IP_VERSION_4) {
        if (((read32(packet, off) & maskWord(e.length, 0)) >>> 0) === e.words[0]) return e.peer;
        continue;
      }
      let match = true;
      for (let w = 0; w < 4 && match; w++) {
        if (((read32(packet, off + w * 4) & maskWord(e.length, w)) >>> 0) !== e.words[w]) match = false;
      }
      if (match) return e.peer;
    }
    return -1;
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
 * than we hold (wireguard-go device/receive.go does the same checks).
 */
export function innerPacketLength(p: Uint8Array, len: number): number {
  if (len < 1) return -1;
  const version = p[0] >> 4;
  if (version === IP_VERSION_4) {
    if (len < IPV4_MIN_HEADER) return -1;
    const total = (p[IPV4_TOTAL_LENGTH] << 8) | p[IPV4_TOTAL_LENGTH + 1];
    return total < IPV4_MIN_HEADER || total > len ? -1 : total;
  }
  if (version === IP_VERSION_6) {
    if (len < IPV6_HEADER) return -1;
    const total = IPV6_HEADER + ((p[IPV6_PAYLOAD_LENGTH] << 8) | p[IPV6_PAYLOAD_LENGTH + 1]);
    return total > len ? -1 : total;
  }
  return -1;
}
