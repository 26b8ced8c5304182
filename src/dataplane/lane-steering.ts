/**
 * Which lane owns a packet from the Internet (docs/ARCHITECTURE.md "Lanes"). Each lane's NAT pool hands out only
 * its slice of the external ports (common/lanes.ts), so a reply's destination port names the lane whose flow it
 * belongs to, whichever lane the kernel handed it to (a multi-queue TUN steers a flow to the queue that last wrote
 * it, but forgets a flow after a few idle seconds, and learns at most a few thousand: drivers/net/tun.c,
 * TUN_FLOW_EXPIRE, MAX_TAP_FLOWS).
 *
 *   TCP / UDP to a pool address ─ its destination port
 *   ICMP echo reply             ─ its identifier (RFC 5508 section 3.1: the identifier is NATed like a port)
 *   ICMP error                  ─ the source port (or echo identifier) of the packet it quotes, which the edge sent
 *
 * A first fragment (IPv4; IPv6 with its fragment header right after the fixed header) is steered by its ports like
 * any packet, and `firstFragment` says so: its later fragments, which carry no ports, follow it from the lane that
 * read them (Pipeline.steeredFirstFragment, fragment-steer.ts).
 *
 * Anything else (not to a pool address, a non-first fragment, other IPv6 extension headers, a truncated packet): -1,
 * the lane that read it keeps it. One read of a few header bytes per packet from the Internet; nothing allocated.
 */
import type { PacketBatch } from '../common/packet-batch.js';
import type { SnatPool } from '../nat/snat-pool.js';
import { read16, read32 } from '../wire/bytes.js';
import {
  ICMP4_DEST_UNREACHABLE,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_PARAMETER_PROBLEM,
  ICMP4_TIME_EXCEEDED,
  ICMP6_DEST_UNREACHABLE,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_PARAMETER_PROBLEM,
  ICMP_HEADER,
  ICMP_ID,
  ICMP_TYPE,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_DST,
  IPV4_FLAGS_FRAGMENT,
  IPV4_FLAG_MF,
  IPV4_FRAGMENT_OFFSET_MASK,
  IPV4_IHL_MASK,
  IPV4_IHL_UNIT,
  IPV4_MIN_HEADER,
  IPV4_PROTOCOL,
  IPV6_DST,
  IPV6_EXT_FRAGMENT,
  IPV6_FRAG_M,
  IPV6_FRAG_OFFSET_FIELD,
  IPV6_FRAG_OFFSET_MASK,
  IPV6_FRAGMENT_HEADER,
  IPV6_HEADER,
  IPV6_NEXT_HEADER,
  IP_VERSION_SHIFT,
  TCP_DST_PORT,
  TCP_SRC_PORT,
} from '../wire/constants.js';

/** TCP's and UDP's port fields are at the same offsets (RFC 793, RFC 768). */
const PORTS_BYTES = 4;
/** An ICMP echo's identifier ends 6 bytes into its header. */
const ICMP_ID_END = ICMP_ID + 2;

export class LaneSteering {
  /** Scratch for an IPv6 destination (no allocation per packet). */
  private readonly addr6 = new Uint32Array(4);
  /** The packet owner() last looked at was a first fragment (valid after it returned >= 0). */
  firstFragment = false;

  constructor(private readonly snat: SnatPool | null, readonly lanes: number) {}

  /** The lane that owns packet i of `batch` (read from the Internet), or -1 when any lane may take it. */
  ownerOf(batch: PacketBatch, i: number): number {
    if (this.snat === null || this.lanes <= 1) return -1;
    return this.owner(batch.data, batch.offset[i], batch.length[i]);
  }

  /** The same over raw bytes (tests, explain). */
  owner(d: Uint8Array, at: number, length: number): number {
    const snat = this.snat;
    this.firstFragment = false;
    if (snat === null || length < 1) return -1;
    const version = d[at] >>> IP_VERSION_SHIFT;
    let l4: number;
    let protocol: number;
    if (version === 4) {
      if (length < IPV4_MIN_HEADER) return -1;
      const ihl = (d[at] & IPV4_IHL_MASK) * IPV4_IHL_UNIT;
      const fragment = read16(d, at + IPV4_FLAGS_FRAGMENT);
      if (ihl < IPV4_MIN_HEADER || (fragment & IPV4_FRAGMENT_OFFSET_MASK) !== 0) return -1;
      if (snat.addressIndex4(read32(d, at + IPV4_DST)) < 0) return -1;
      l4 = ihl;
      protocol = d[at + IPV4_PROTOCOL];
      this.firstFragment = (fragment & IPV4_FLAG_MF) !== 0;
    } else if (version === 6) {
      if (length < IPV6_HEADER) return -1;
      const a = this.addr6;
      for (let w = 0; w < 4; w++) a[w] = read32(d, at + IPV6_DST + 4 * w);
      if (snat.addressIndex6(a, 0) < 0) return -1;
      l4 = IPV6_HEADER;
      protocol = d[at + IPV6_NEXT_HEADER];
      if (protocol === IPV6_EXT_FRAGMENT) {
        // RFC 8200 section 4.5: offset 0 is a first fragment (M set; M clear: an atomic fragment, RFC 6946), whose
        // transport header follows this one.
        if (l4 + IPV6_FRAGMENT_HEADER > length) return -1;
        const field = read16(d, at + l4 + IPV6_FRAG_OFFSET_FIELD);
        if ((field & IPV6_FRAG_OFFSET_MASK) !== 0) return -1;
        protocol = d[at + l4];
        l4 += IPV6_FRAGMENT_HEADER;
        this.firstFragment = (field & IPV6_FRAG_M) !== 0;
      }
    } else {
      return -1;
    }
    if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) {
      if (l4 + PORTS_BYTES > length) return -1;
      return snat.laneOfExternal(protocol, read16(d, at + l4 + TCP_DST_PORT));
    }
    if (protocol !== (version === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6) || l4 + ICMP_HEADER > length) return -1;
    const type = d[at + l4 + ICMP_TYPE];
    if (type === (version === 4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY)) return snat.laneOfExternal(protocol, read16(d, at + l4 + ICMP_ID));
    const isError = version === 4
      ? type === ICMP4_DEST_UNREACHABLE || type === ICMP4_TIME_EXCEEDED || type === ICMP4_PARAMETER_PROBLEM
      : type >= ICMP6_DEST_UNREACHABLE && type <= ICMP6_PARAMETER_PROBLEM;
    return isError ? this.quotedOwner(d, at + l4 + ICMP_HEADER, at + length, version) : -1;
  }

  /** The owner of the packet an ICMP error quotes (RFC 792 / RFC 4443 section 2.4): the edge sent it, from a pool port. */
  private quotedOwner(d: Uint8Array, q: number, end: number, version: number): number {
    const snat = this.snat!;
    let l4: number;
    let protocol: number;
    if (version === 4) {
      if (q + IPV4_MIN_HEADER > end || d[q] >>> IP_VERSION_SHIFT !== 4) return -1;
      if ((read16(d, q + IPV4_FLAGS_FRAGMENT) & IPV4_FRAGMENT_OFFSET_MASK) !== 0) return -1;
      l4 = q + (d[q] & IPV4_IHL_MASK) * IPV4_IHL_UNIT;
      protocol = d[q + IPV4_PROTOCOL];
    } else {
      if (q + IPV6_HEADER > end || d[q] >>> IP_VERSION_SHIFT !== 6) return -1;
      l4 = q + IPV6_HEADER;
      protocol = d[q + IPV6_NEXT_HEADER];
    }
    if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) {
      return l4 + PORTS_BYTES > end ? -1 : snat.laneOfExternal(protocol, read16(d, l4 + TCP_SRC_PORT));
    }
    if (protocol === (version === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6) && l4 + ICMP_ID_END <= end && d[l4 + ICMP_TYPE] === (version === 4 ? ICMP4_ECHO_REQUEST : ICMP6_ECHO_REQUEST)) {
      return snat.laneOfExternal(protocol, read16(d, l4 + ICMP_ID));
    }
    return -1;
  }
}
