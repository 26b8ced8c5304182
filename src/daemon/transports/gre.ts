/**
 * GRE onramps (RFC 2784, RFC 2890 keys) on the underlay: the tunnel table, and the tunnel MTU policy around it.
 *
 *   underlay, IP protocol 47 ─ GreOnramp.receiveInspected (the demux's outer header) ─ inner (in place) ─► pipeline
 *                                                └ keepalive ─ reflected to its sender
 *   next hop = a GRE onramp ─ length ≤ MTU ─┬ fits: encapsulate in place ─► underlay
 *              (else inspected once:)       ├ too big, no DF: RFC 791 fragments, each encapsulated ─► underlay
 *                                           └ too big, DF: ICMP too-big back through the pipeline
 *
 * MSS clamping to the tunnel (RFC 4459 section 3.2) is the pipeline's, on both directions, from the onramp's
 * `mtu` in its port spec: it has inspected the packet anyway.
 *
 * Owns: its tunnels and their local endpoint addresses (routed into the underlay while a tunnel uses them).
 */
import { Drop } from '../../common/drop-reasons.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import type { GreOnrampConfig } from '../../config/index.js';
import type { TunDevice } from '../../io/tun.js';
import {
  GRE_RECEIVE_REFLECT,
  GreOnramp,
  IPPROTO_GRE,
  MtuVerdict,
  buildPacketTooBig,
  fragmentForTunnel,
  tunnelMtuVerdict,
} from '../../onramp/gre/index.js';
import { inspect } from '../../wire/inspect.js';
import { PacketInfo } from '../../wire/packet-info.js';
import { EdgeCounter } from './counters.js';
import type { OnrampTransport, TransportHost } from './transport.js';
import type { Underlay, UnderlayReceiver } from './underlay.js';

export class GreTransport implements OnrampTransport<GreOnrampConfig>, UnderlayReceiver {
  readonly type = 'gre';
  readonly gre = new GreOnramp();
  private readonly innerInfo = new PacketInfo();
  /** Onramp id → its tunnel's local endpoint address (text), to release it on removal. */
  private readonly locals = new Map<number, string>();
  private opened = false;

  constructor(private readonly host: TransportHost, private readonly underlay: Underlay) {}

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

  deliver(batch: PacketBatch, i: number, onramp: number): void {
    this.sendGre(batch, i, onramp);
  }

  private sendGre(batch: PacketBatch, i: number, onramp: number): void {
    const data = batch.data;
    const off = batch.offset[i];
    const len = batch.length[i];
    const info = this.innerInfo;
    const counters = this.host.counters;
    const t = this.gre.tunnels.tunnelOf(onramp);
    if (t < 0) {
      counters[EdgeCounter.GreSendDrop]++;
      return;
    }
    const mtu = this.gre.tunnels.mtu[t];
    // Fits by length: the pipeline inspected (and MSS-clamped) the packet; only an oversize one is looked at again.
    let verdict: number = MtuVerdict.Fits;
    if (len > mtu) {
      if (inspect(data, off, len, info) !== Drop.None) {
        counters[EdgeCounter.GreSendDrop]++;
        return;
      }
      verdict = tunnelMtuVerdict(info, mtu);
    }
    if (verdict === MtuVerdict.Fits) {
      const floor = ((off / batch.slotSize) | 0) * batch.slotSize;
      const o = this.gre.send(onramp, data, off, len, floor);
      if (o < 0) {
        counters[EdgeCounter.GreSendDrop]++;
        return;
      }
      batch.offset[i] = o;
      batch.length[i] = this.gre.lastLength;
      this.underlay.queue(i);
    } else if (verdict === MtuVerdict.Fragment) {
      // Slow path (rare once MSS clamping works): RFC 791 fragments, each encapsulated from the transmit batch.
      counters[EdgeCounter.GreFragmented]++;
      for (const piece of fragmentForTunnel(data, info, mtu)) {
        const k = this.underlay.reserveTx();
        const tx = this.underlay.tx;
        const slot = k * tx.slotSize;
        tx.data.set(piece, slot + tx.headroom);
        const o = this.gre.send(onramp, tx.data, slot + tx.headroom, piece.length, slot);
        if (o < 0) {
          tx.count--;
          counters[EdgeCounter.GreSendDrop]++;
          continue;
        }
        tx.offset[k] = o;
        tx.length[k] = this.gre.lastLength;
      }
    } else {
      // RFC 1191 / RFC 4443 section 3.2: tell the sender. The error is addressed to the packet as
      // the tunnel would have carried it (translated), so it enters the pipeline as if it came out
      // of the tunnel: the pipeline matches it to the flow by the quoted header, translates it
      // back and sends it toward the original sender, NAT reversed.
      counters[EdgeCounter.GreTooBig]++;
      const error = buildPacketTooBig(data, info, mtu, this.gre.tunnels.localSource(t));
      if (error !== null && this.host.feedback.push(error, 0, error.length, onramp) >= 0) counters[EdgeCounter.GreTooBigReported]++;
    }
  }
}
