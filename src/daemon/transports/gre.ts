/**
 * GRE onramps (RFC 2784, RFC 2890 keys) on the underlay: the tunnel table, and the tunnel MTU policy around it.
 *
 *   underlay, IP protocol 47 ─ GreOnramp.receiveInspected (the demux's outer header) ─ inner (in place) ─► pipeline
 *                                                └ keepalive ─ reflected to its sender
 *   next hop = a GRE onramp ─ length ≤ MTU ─┬ fits: encapsulate in place ─► underlay
 *              (else inspected once,        ├ too big, no DF: RFC 791 fragments, each encapsulated ─► underlay
 *               tunnel-mtu.ts:)             └ too big, DF: ICMP too-big (from the tunnel's local address) back
 *                                             through the pipeline
 *
 * MSS clamping to the tunnel (RFC 4459 section 3.2) is the pipeline's, on both directions, from the onramp's
 * `mtu` in its port spec: it has inspected the packet anyway.
 *
 * Owns: its tunnels and their local endpoint addresses (routed into the underlay while a tunnel uses them).
 */
import type { PacketBatch } from '../../common/packet-batch.js';
import type { GreOnrampConfig } from '../../config/index.js';
import type { TunDevice } from '../../io/tun.js';
import { GRE_RECEIVE_REFLECT, GreOnramp, IPPROTO_GRE } from '../../onramp/gre/index.js';
import type { PacketInfo } from '../../wire/packet-info.js';
import { EdgeCounter } from './counters.js';
import type { OnrampTransport, TransportHost } from './transport.js';
import { TunnelMtu, type TunnelFragmentSink } from './tunnel-mtu.js';
import type { Underlay, UnderlayReceiver } from './underlay.js';

export class GreTransport implements OnrampTransport<GreOnrampConfig>, UnderlayReceiver, TunnelFragmentSink {
  readonly type = 'gre';
  readonly gre = new GreOnramp();
  private readonly tunnelMtu: TunnelMtu;
  /** Onramp id → its tunnel's local endpoint address (text), to release it on removal. */
  private readonly locals = new Map<number, string>();
  private opened = false;

  constructor(private readonly host: TransportHost, private readonly underlay: Underlay) {
    this.tunnelMtu = new TunnelMtu(host, {
      tooBig: EdgeCounter.GreTooBig,
      fragmented: EdgeCounter.GreFragmented,
      reported: EdgeCounter.GreTooBigReported,
      dropped: EdgeCounter.GreSendDrop,
    });
  }

  open(): void {
    this.underlay.claimProtocol(IPPROTO_GRE, this);
    this.opened = true;
  }

  close(): void {
    if (!this.opened) return;
    this.underlay.releaseProtocol(IPPROTO_GRE, this);
    this.opened = false;
  }

  tuns(): TunDevice[] {
    return [];
  }

  routes(): string[] {
    return [];
  }

  add(o: GreOnrampConfig, id: number): void {
    if (this.locals.has(id)) throw new Error(`onramp ${o.name}: GRE onramp ${id} exists already`);
    this.gre.tunnels.add({ onrampId: id, local: o.gre.local, remote: o.gre.remote, key: o.gre.key, mtu: o.gre.mtu });
    try {
      this.underlay.addEndpoint(o.gre.local);
    } catch (e) {
      this.gre.tunnels.remove(id);
      throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
    }
    this.locals.set(id, o.gre.local);
    this.host.delivery.set(id, this);
  }

  /** New endpoints, key or MTU: the tunnel is replaced (its sequence numbers and counters start again). */
  update(o: GreOnrampConfig, id: number): void {
    const local = this.locals.get(id);
    if (local === undefined) throw new Error(`onramp ${o.name}: no GRE onramp ${id}`);
    // The new endpoint's route goes in before the old one's goes out, so a kept address never flaps.
    this.underlay.addEndpoint(o.gre.local);
    this.gre.tunnels.remove(id);
    try {
      this.gre.tunnels.add({ onrampId: id, local: o.gre.local, remote: o.gre.remote, key: o.gre.key, mtu: o.gre.mtu });
    } catch (e) {
      this.underlay.removeEndpoint(o.gre.local);
      throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
    }
    this.locals.set(id, o.gre.local);
    this.underlay.removeEndpoint(local);
  }

  /** From now on the tunnel's packets are refused (GRE drops: no tunnel) and nothing is sent into it. */
  remove(id: number): void {
    const local = this.locals.get(id);
    if (local === undefined) return;
    this.host.delivery.clear(id, this);
    this.gre.tunnels.remove(id);
    this.locals.delete(id);
    this.underlay.removeEndpoint(local);
  }

  // --- receive --------------------------------------------------------------------------------------------

  receiveUnderlay(batch: PacketBatch, i: number, j: number, info: PacketInfo): number {
    const id = this.gre.receiveInspected(batch.data, batch.length[i], info);
    const d = this.gre.decap;
    if (id > 0) {
      batch.offset[j] = d.innerOffset;
      batch.length[j] = d.innerLength;
      batch.ingress[j] = id;
      return j + 1;
    } else if (id === GRE_RECEIVE_REFLECT) {
      batch.offset[i] = d.innerOffset;
      batch.length[i] = d.innerLength;
      this.underlay.writeOne(batch, i);
      this.host.counters[EdgeCounter.GreReflected]++;
    } else {
      this.host.counters[EdgeCounter.GreReceiveDrop]++;
    }
    return j;
  }

  // --- deliver --------------------------------------------------------------------------------------------

  deliver(batch: PacketBatch, i: number, onramp: number, now: number): void {
    const t = this.gre.tunnels.tunnelOf(onramp);
    if (t < 0) {
      this.host.counters[EdgeCounter.GreSendDrop]++;
      return;
    }
    // Fits by length: the pipeline inspected (and MSS-clamped) the packet; only an oversize one is looked at again.
    const mtu = this.gre.tunnels.mtu[t];
    if (batch.length[i] > mtu && !this.tunnelMtu.oversize(batch, i, onramp, mtu, this.gre.tunnels.localSource(t), this, now)) return;
    const off = batch.offset[i];
    const floor = ((off / batch.slotSize) | 0) * batch.slotSize;
    const o = this.gre.send(onramp, batch.data, off, batch.length[i], floor);
    if (o < 0) {
      this.host.counters[EdgeCounter.GreSendDrop]++;
      return;
    }
    batch.offset[i] = o;
    batch.length[i] = this.gre.lastLength;
    this.underlay.queue(i);
  }

  /** Slow path (rare once MSS clamping works): one RFC 791 fragment, encapsulated from the transmit batch. */
  sendFragment(piece: Uint8Array, onramp: number): void {
    const k = this.underlay.reserveTx();
    const tx = this.underlay.tx;
    const slot = k * tx.slotSize;
    tx.data.set(piece, slot + tx.headroom);
    const o = this.gre.send(onramp, tx.data, slot + tx.headroom, piece.length, slot);
    if (o < 0) {
      tx.count--;
      this.host.counters[EdgeCounter.GreSendDrop]++;
      return;
    }
    tx.offset[k] = o;
    tx.length[k] = this.gre.lastLength;
  }
}
