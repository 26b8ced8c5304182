/**
 * The tunnel MTU policy as the device layer runs it, one piece of code for every tunnel transport (GRE,
 * WireGuard; IPsec next). The transport checks the length itself (one compare per packet, allocation-free) and
 * hands only an oversize packet here:
 *
 *   deliver ─ length ≤ MTU ─► encapsulate / encrypt (the transport's own fast path)
 *           └ longer ─► TunnelMtu.oversize: one inspect() (the slow path; the batch metadata has no DF bit,
 *                       addresses or ICMP type, which the verdict and the error need)
 *                        ├ fits after all (IP length ≤ MTU; IPv6 ≤ 1280) ─ true: the transport sends it whole
 *                        ├ IPv4, DF clear ─ RFC 791 fragments, each handed back to the transport (sendFragment)
 *                        └ IPv4 DF / IPv6 ─ dropped; ICMP fragmentation-needed (RFC 1191 section 4) / packet too
 *                                           big (RFC 4443 section 3.2) into the feedback batch, tagged with the
 *                                           onramp: the pipeline takes it as if it came out of the tunnel,
 *                                           matches the flow by the quoted header, reverses the NAT and sends it
 *                                           to the original sender (RFC 8201 for IPv6; RFC 4459 section 3.2)
 *
 * The policy itself (verdict, fragments, the error's bytes) is pure: src/onramp/tunnel-mtu.ts.
 *
 * The error's source: the tunnel's own underlay address when it has the inner packet's family (GRE's local
 * endpoint, a WireGuard device's listen address: an address the edge owns and the one an operator sees the
 * tunnel by, routable where the senders on the Internet are), else the onramp's tunnel address
 * (health_check.source, from the host's TunnelAddresses) when it has that family (an IPv6 packet in an IPv4
 * tunnel), else none: the packet is counted as too big and nothing is reported.
 */
import { Drop } from '../../common/drop-reasons.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import { MtuVerdict, fragmentForTunnel, tunnelMtuVerdict, writePacketTooBig } from '../../onramp/tunnel-mtu.js';
import { ICMP_ERROR_ROOM } from '../../wire/icmp-error.js';
import { AF_INET4 } from '../../wire/constants.js';
import { inspect } from '../../wire/inspect.js';
import { PacketInfo } from '../../wire/packet-info.js';
import type { EdgeCounter } from './counters.js';
import { NO_ADDRESS, type TransportHost } from './transport.js';

/** Where one transport counts its oversize packets (indices into the edge's counters). */
export interface TunnelMtuCounters {
  /** Too big and not ours to fragment (IPv4 with DF, IPv6): dropped. */
  readonly tooBig: EdgeCounter;
  /** IPv4 without DF, sent as fragments (counted per original packet). */
  readonly fragmented: EdgeCounter;
  /** An ICMP error went back into the pipeline for a too-big packet. */
  readonly reported: EdgeCounter;
  /** An oversize packet that could not be inspected again (not sent). */
  readonly dropped: EdgeCounter;
}

/** What the helper hands a fragment back to: the transport's own send path, from its transmit batch. */
export interface TunnelFragmentSink {
  /** Sends one inner packet (a fragment that fits) into the tunnel of `onramp`. Slow path: may allocate. */
  sendFragment(piece: Uint8Array, onramp: number, now: number): void;
}

export class TunnelMtu {
  private readonly info = new PacketInfo();
  /** Where the too-big error is written before the feedback batch copies it. */
  private readonly error = new Uint8Array(ICMP_ERROR_ROOM);

  constructor(private readonly host: TransportHost, private readonly counters: TunnelMtuCounters) {}

  /**
   * Packet i of `batch`, bound for `onramp` whose tunnel carries inner packets of at most `mtu` bytes, is longer
   * than that (the caller compared). `underlay` is the tunnel's own address: an IPv4 number, IPv6 words, or
   * NO_ADDRESS. Fragments go to `sink`; a too-big error goes to the host's feedback batch. Returns true when the
   * packet may be sent whole after all (its IP length fits; or IPv6 up to 1280 bytes, RFC 8200 section 5).
   */
  oversize(batch: PacketBatch, i: number, onramp: number, mtu: number, underlay: number | Uint32Array, sink: TunnelFragmentSink, now: number): boolean {
    const info = this.info;
    const data = batch.data;
    const counters = this.host.counters;
    if (inspect(data, batch.offset[i], batch.length[i], info) !== Drop.None) {
      counters[this.counters.dropped]++;
      return false;
    }
    const verdict = tunnelMtuVerdict(info, mtu);
    if (verdict === MtuVerdict.Fits) return true;
    if (verdict === MtuVerdict.Fragment) {
      counters[this.counters.fragmented]++;
      for (const piece of fragmentForTunnel(data, info, mtu)) sink.sendFragment(piece, onramp, now);
    } else {
      // RFC 1191 / RFC 4443 section 3.2: tell the sender. The error is addressed to the packet as the tunnel
      // would have carried it (translated), so it enters the pipeline as if it came out of the tunnel.
      counters[this.counters.tooBig]++;
      const source = this.sourceFor(info.family, onramp, underlay);
      const length = source === NO_ADDRESS ? 0 : writePacketTooBig(this.error, 0, data, info, mtu, source);
      if (length > 0 && this.host.feedback.push(this.error, 0, length, onramp) >= 0) counters[this.counters.reported]++;
    }
    return false;
  }

  /** The error's source address for an inner packet of `family` (see the file header), or NO_ADDRESS. */
  private sourceFor(family: number, onramp: number, underlay: number | Uint32Array): number | Uint32Array {
    const sameFamily = family === AF_INET4 ? typeof underlay === 'number' && underlay !== NO_ADDRESS : typeof underlay !== 'number';
    return sameFamily ? underlay : this.host.tunnelAddresses.of(family, onramp);
  }
}
