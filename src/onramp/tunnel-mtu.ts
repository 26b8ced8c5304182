/**
 * Tunnel MTU handling for packets about to enter a tunnel (every kind: GRE, WireGuard), and the TCP MSS ceiling
 * through it. A tunnel's MTU is the largest inner packet it carries whole; the transports in src/daemon/transports
 * apply this policy through one helper (tunnel-mtu.ts there). All of it works on the inner packet as inspect()
 * (src/wire/inspect.ts) described it in a PacketInfo.
 *
 *   tunnelMtuVerdict ─ fits ─────────────────────────────── send
 *                    ├ IPv4, DF clear, too long ─ fragmentForTunnel (RFC 791 section 3.2) ─ send each
 *                    └ IPv4 DF / IPv6, too long ─ writePacketTooBig: ICMP 3/4 with next-hop MTU (RFC 1191
 *                                                 section 4) / ICMPv6 packet too big (RFC 4443 section 3.2)
 *                                                 toward the sender; the packet is dropped
 *   tunnelMaxMss ─ the MSS ceiling MTU - 40 (IPv4) / - 60 (IPv6) (wire/rewrite.ts tcpMssCeiling); the pipeline
 *                  clamps SYNs to it both ways (OnrampSpec.mtu)
 *
 * tunnelMtuVerdict and writePacketTooBig allocate nothing. The fragment builder is the slow path (oversize
 * packets are rare once PMTUD and MSS clamping work) and reuses src/wire/build.ts, which allocates.
 */
import { fragmentIpv4 } from '../wire/build.js';
import { writeIcmpError4, writeIcmpError6 } from '../wire/icmp-error.js';
import {
  ICMP4_CODE_FRAGMENTATION_NEEDED,
  ICMP4_DEST_UNREACHABLE,
  ICMP6_PACKET_TOO_BIG,
  MIN_MTU_IPV6,
} from '../wire/constants.js';
import type { PacketInfo } from '../wire/packet-info.js';
import { DST, SRC } from '../wire/packet-info.js';
import { tcpMssCeiling } from '../wire/rewrite.js';

export const enum MtuVerdict {
  /** The packet fits the tunnel: encapsulate (or encrypt) it. */
  Fits = 0,
  /** IPv4 with DF clear: split it with fragmentForTunnel and send the pieces. */
  Fragment = 1,
  /** Too big and not ours to fragment: drop it and send writePacketTooBig's error back (if any). */
  TooBig = 2,
}

/**
 * The largest inner IPv6 packet we send. RFC 8200 section 5: every link carries 1280 bytes, so a tunnel
 * configured below that still takes IPv6 packets up to 1280 (the outer path must cope: our outer DF is set,
 * so such a tunnel only works over a path with room) and the packet-too-big MTU is never below 1280.
 */
export function ipv6TunnelMtu(mtu: number): number {
  return mtu < MIN_MTU_IPV6 ? MIN_MTU_IPV6 : mtu;
}

/** What to do with an inspected inner packet of info.ipLength bytes headed into a tunnel of inner MTU `mtu`. */
export function tunnelMtuVerdict(info: PacketInfo, mtu: number): number {
  if (info.family === 4) {
    if (info.ipLength <= mtu) return MtuVerdict.Fits;
    // RFC 1812 section 5.2.7 / RFC 1191 section 3: DF set means "report, do not fragment".
    return info.dontFragment ? MtuVerdict.TooBig : MtuVerdict.Fragment;
  }
  // RFC 8200 section 5: routers never fragment IPv6; the source does, after a packet too big.
  return info.ipLength <= ipv6TunnelMtu(mtu) ? MtuVerdict.Fits : MtuVerdict.TooBig;
}

/** The MSS a SYN through a tunnel of inner MTU `mtu` may announce: MTU - 40 (IPv4) or - 60 (IPv6). */
export function tunnelMaxMss(family: number, mtu: number): number {
  return tcpMssCeiling(family, mtu);
}

/**
 * Splits the inspected IPv4 packet into fragments of at most `mtu` bytes (RFC 791 section 3.2; options without
 * the copied flag stay in the first fragment). Slow path: allocates one array per fragment.
 */
export function fragmentForTunnel(buf: Uint8Array, info: PacketInfo, mtu: number): Uint8Array[] {
  return fragmentIpv4(buf.subarray(info.l3Offset, info.l3Offset + info.ipLength), mtu);
}

/**
 * Whether an ICMP error may be sent about this packet: never about an ICMP error (RFC 1122 section 3.2.2,
 * RFC 4443 section 2.4 (e.1)), a non-first fragment (RFC 1812 section 4.3.2.7), or a packet whose source is
 * not a single host (unspecified, loopback, multicast, broadcast / class E). IPv4 multicast or broadcast
 * destinations get none either (RFC 1812 section 4.3.2.7); an IPv6 multicast destination does: packet too
 * big is the exception of RFC 4443 section 2.4 (e.3).
 */
export function mayReportError(info: PacketInfo): boolean {
  if (info.isIcmpError) return false;
  if (info.isFragment && info.fragmentOffset !== 0) return false;
  const a = info.addr;
  if (info.family === 4) {
    const srcTop = a[SRC] >>> 24;
    const dstTop = a[DST] >>> 24;
    return srcTop !== 0 && srcTop !== 127 && srcTop < 224 && dstTop < 224;
  }
  const unspecified = (a[SRC] | a[SRC + 1] | a[SRC + 2] | a[SRC + 3]) === 0;
  const loopback = (a[SRC] | a[SRC + 1] | a[SRC + 2]) === 0 && a[SRC + 3] === 1;
  return !unspecified && !loopback && a[SRC] >>> 24 !== 0xff;
}

/**
 * The ICMP error telling the inspected packet's sender that it does not fit a tunnel of inner MTU `mtu`:
 * ICMPv4 destination unreachable / fragmentation needed with the next-hop MTU (RFC 1191 section 4), or
 * ICMPv6 packet too big (RFC 4443 section 3.2), from `source` (our address in the sender's space: an IPv4
 * number, or 4 words for IPv6) to the packet's source, written at out[at] by the edge's one ICMP error writer
 * (src/wire/icmp-error.ts: the quote cut to 576 / 1280 bytes, TOS internetwork control). `out` needs
 * ICMP_ERROR_ROOM bytes from `at`. Returns the error's length, or 0 when no error may be sent
 * (mayReportError). Rate limiting is the caller's (RFC 1812 section 4.3.2.8).
 */
export function writePacketTooBig(out: Uint8Array, at: number, buf: Uint8Array, info: PacketInfo, mtu: number, source: number | Uint32Array): number {
  if (!mayReportError(info)) return 0;
  if (info.family === 4) {
    if (typeof source !== 'number') throw new TypeError('an IPv4 packet needs an IPv4 error source');
    // RFC 1191 section 4: the rest-of-header word is 16 unused bits, then the next-hop MTU.
    return writeIcmpError4(out, at, ICMP4_DEST_UNREACHABLE, ICMP4_CODE_FRAGMENTATION_NEEDED, mtu & MAX_U16, source >>> 0, info.addr[SRC], buf, info.l3Offset, info.ipLength);
  }
  if (typeof source === 'number') throw new TypeError('an IPv6 packet needs an IPv6 error source');
  for (let w = 0; w < 4; w++) {
    errorAddr6[w] = source[w];
    errorAddr6[4 + w] = info.addr[SRC + w];
  }
  // RFC 4443 section 3.2: the rest-of-header word is the MTU.
  return writeIcmpError6(out, at, ICMP6_PACKET_TOO_BIG, 0, ipv6TunnelMtu(mtu), errorAddr6, 0, 4, buf, info.l3Offset, info.ipLength);
}

/** Source (words 0..3) and destination (4..7) of an IPv6 too-big error. */
const errorAddr6 = new Uint32Array(8);
const MAX_U16 = 0xffff;
