/**
 * The GRE onramp: raw outer IP packets in, inner packets tagged with their onramp out, and back.
 *
 *   receive(buf, off, len) ─ decapsulate ─ tunnel lookup (local, remote, key) ─ per-tunnel checks
 *                            (checksum required, RFC 2890 sequence order) ─┬─ onramp id, inner at decap.inner*
 *                                                                          └─ keepalive: reflect the inner packet
 *   receiveInspected(buf, len, outer) ─ decapsulateInspected (the outer header as the caller's inspect() read it) ─ the same
 *   send(onrampId, buf, off, len, floor) ─ tunnel ─ encapsulate4/6 in place ─ outer offset (+ lastLength)
 *
 * The MTU decision (fragment / ICMP too-big) acts on the inner packet: the caller decides "fits" by length
 * and inspects only an oversize packet (see ../tunnel-mtu.ts). MSS clamping is the pipeline's (OnrampSpec.mtu).
 *
 * Pure: no I/O, no clock. Nothing is allocated per packet. Drops are counted in `drops` (by GreDrop) and
 * per tunnel traffic in the rx / tx counters.
 */
import { IPV4_DST, IPV4_MIN_HEADER, IPV4_PROTOCOL, IPV4_SRC } from '../../wire/constants.js';
import { GRE_TX_SEQUENCE, GreDecap, decapsulate, decapsulateInspected, encapsulate4, encapsulate6, greHeaderLength } from './codec.js';
import type { PacketInfo } from '../../wire/packet-info.js';
import { DEFAULT_MAX_TUNNELS, GRE_PROTO_IPV4, IPPROTO_GRE, OUTER_IPV4_HEADER, OUTER_IPV6_HEADER } from './constants.js';
import { GRE_DROP_COUNT, GreDrop } from './gre-drop.js';
import { ADDR_WORDS, GreTunnelTable, LOCAL, REMOTE, RX_REQUIRE_CHECKSUM, RX_SEQUENCE } from './tunnel-table.js';
import { read32 } from '../../wire/bytes.js';

/** receive() results that are not an onramp id. */
export const GRE_RECEIVE_DROP = -1;
/**
 * A GRE keepalive (the Cisco scheme): the inner packet is itself a GRE packet from our local address back to
 * the tunnel's remote end. Send decap.inner* unchanged to the network, as the sender expects of a GRE peer.
 */
export const GRE_RECEIVE_REFLECT = -2;

export class GreOnramp {
  readonly tunnels: GreTunnelTable;
  /** What the last receive() parsed; the inner packet is buf[decap.innerOffset, + decap.innerLength). */
  readonly decap = new GreDecap();
  /** Drops by GreDrop reason. */
  readonly drops = new Float64Array(GRE_DROP_COUNT);
  /** Tunnel index of the last receive() that returned an onramp id or REFLECT. */
  lastTunnel = -1;
  /** Outer packet length written by the last successful send(). */
  lastLength = 0;
  /** The drop reason of the last failed receive() / send(). */
  lastDrop = 0;

  constructor(capacity = DEFAULT_MAX_TUNNELS) {
    this.tunnels = new GreTunnelTable(capacity);
  }

  private drop(reason: number): number {
    this.drops[reason]++;
    this.lastDrop = reason;
    return GRE_RECEIVE_DROP;
  }

  /**
   * Takes one outer packet at buf[offset, offset + length). Returns the onramp id (>= 1) with the inner packet
   * described by `decap`, GRE_RECEIVE_REFLECT for a keepalive, or GRE_RECEIVE_DROP (counted in drops[lastDrop]).
   */
  receive(buf: Uint8Array, offset: number, length: number): number {
    const parsed = decapsulate(buf, offset, length, this.decap);
    if (parsed !== GreDrop.None) return this.drop(parsed);
    return this.accept(buf, length);
  }

  /**
   * receive() for an outer packet of `length` bytes the caller has inspected already (`outer`, see
   * codec.ts decapsulateInspected): the outer IP header is not parsed a second time.
   */
  receiveInspected(buf: Uint8Array, length: number, outer: PacketInfo): number {
    const parsed = decapsulateInspected(buf, outer, this.decap);
    if (parsed !== GreDrop.None) return this.drop(parsed);
    return this.accept(buf, length);
  }

  /** A decapsulated packet (this.decap): its tunnel, the tunnel's receive checks, keepalive or onramp id. */
  private accept(buf: Uint8Array, length: number): number {
    const d = this.decap;
    const tunnels = this.tunnels;
    const t = tunnels.lookup(d);
    if (t < 0) return this.drop(-t);
    const rx = tunnels.rxFlags[t];
    if ((rx & RX_REQUIRE_CHECKSUM) !== 0 && !d.hasChecksum) return this.drop(GreDrop.MissingChecksum);
    if ((rx & RX_SEQUENCE) !== 0) {
      if (!d.hasSequence) return this.drop(GreDrop.MissingSequence);
      // RFC 2890 section 2.2 with serial-number arithmetic (RFC 1982), as Linux ip_gre does: a packet older
      // than the next expected one is dropped; anything newer is accepted and moves the expectation past it.
      if (tunnels.rxSequenceSeen[t] !== 0 && ((d.sequence - tunnels.rxSequence[t]) | 0) < 0) return this.drop(GreDrop.OutOfOrder);
      tunnels.rxSequence[t] = (d.sequence + 1) >>> 0;
      tunnels.rxSequenceSeen[t] = 1;
    }
    this.lastTunnel = t;
    tunnels.rxPackets[t]++;
    tunnels.rxBytes[t] += length;
    if (d.protocolType === GRE_PROTO_IPV4 && isKeepalive(buf, d, tunnels, t)) return GRE_RECEIVE_REFLECT;
    return tunnels.onrampId[t];
  }

  /**
   * Encapsulates the inner packet at buf[offset, offset + length) for `onrampId`'s tunnel, writing the headers
   * in front of it but not below `floor` (the start of its slot). Returns the outer packet's offset (length in
   * lastLength) or -GreDrop (counted). Does not check the MTU: call ../tunnel-mtu.ts's tunnelMtuVerdict first.
   */
  send(onrampId: number, buf: Uint8Array, offset: number, length: number, floor: number): number {
    const tunnels = this.tunnels;
    const t = tunnels.tunnelOf(onrampId);
    if (t < 0) return this.sendDrop(GreDrop.NoTunnel);
    const txFlags = tunnels.txFlags[t];
    const sequence = tunnels.txSequence[t];
    let o: number;
    if (tunnels.family[t] === 4) {
      const base = t * ADDR_WORDS;
      const a = tunnels.addr;
      o = encapsulate4(buf, offset, length, floor, txFlags, tunnels.key[t], sequence, a[base + LOCAL], a[base + REMOTE], tunnels.ipId[t]);
      if (o >= 0) tunnels.ipId[t] = (tunnels.ipId[t] + 1) & 0xffff;
    } else {
      o = encapsulate6(buf, offset, length, floor, txFlags, tunnels.key[t], sequence, tunnels.addr, t * ADDR_WORDS + LOCAL, t * ADDR_WORDS + REMOTE);
    }
    if (o < 0) return this.sendDrop(-o);
    if ((txFlags & GRE_TX_SEQUENCE) !== 0) tunnels.txSequence[t] = (sequence + 1) >>> 0;
    const outer = length + greHeaderLength(txFlags) + (tunnels.family[t] === 4 ? OUTER_IPV4_HEADER : OUTER_IPV6_HEADER);
    this.lastLength = outer;
    tunnels.txPackets[t]++;
    tunnels.txBytes[t] += outer;
    return o;
  }

  private sendDrop(reason: number): number {
    this.drops[reason]++;
    this.lastDrop = reason;
    return -reason;
  }
}

/**
 * Cisco-style keepalive: an IPv4 outer tunnel whose inner packet is GRE from our local address to the remote
 * end, i.e. a packet the peer built for us to send back. Only ever reflected to the tunnel's own remote end.
 */
function isKeepalive(buf: Uint8Array, d: GreDecap, tunnels: GreTunnelTable, t: number): boolean {
  if (d.family !== 4 || d.innerLength < IPV4_MIN_HEADER) return false;
  const i = d.innerOffset;
  if (buf[i + IPV4_PROTOCOL] !== IPPROTO_GRE) return false;
  const base = t * ADDR_WORDS;
  return read32(buf, i + IPV4_SRC) === tunnels.addr[base + LOCAL] && read32(buf, i + IPV4_DST) === tunnels.addr[base + REMOTE];
}
