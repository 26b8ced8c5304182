/**
 * Tunnel onramps on lanes ≥ 1 (docs/ARCHITECTURE.md "Lanes"): the tunnel's state — WireGuard sessions and
 * counters, GRE's tunnel table, IKE SAs and ESP replay windows — lives on lane 0, which alone opens the underlay.
 * A flow another lane owns may still have a tunnel onramp as its next hop (a data-center host opening a
 * connection toward a WireGuard site, a site failing over from an interconnect to a tunnel mid-flow): this
 * lane's stand-in for the tunnel's transport copies each such packet, already forwarded, into the ring to lane 0
 * as a delivery record (HandoffRing.pushDelivery), and lane 0 hands it to the real transport without a second
 * pipeline pass. One ring per ordered pair of lanes, FIFO: each flow's packets leave in the order forwarded.
 *
 * It holds no engine state and no kernel objects: add/update/remove only claim and release the port in this
 * lane's delivery table, so a live change (a tunnel onramp added, a WireGuard peer changed) is the same call on
 * every lane.
 */
import type { HandoffRing } from '../../common/handoff-ring.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import type { TunDevice } from '../../io/tun.js';
import { EdgeCounter } from './counters.js';
import type { DeliveryFinisher, OnrampTransport, OnrampType, TransportHost } from './transport.js';

export class ViaLaneZero implements OnrampTransport<{ type: string; name: string }>, DeliveryFinisher {
  /** Records pushed since the last publish (one publish per delivered batch). */
  private pushed = false;
  private opened = false;

  constructor(readonly type: OnrampType, private readonly host: TransportHost, private readonly ring: HandoffRing) {}

  open(): void {
    if (this.opened) return;
    this.host.outputs.addFinisher(this);
    this.opened = true;
  }

  close(): void {
    if (!this.opened) return;
    this.host.outputs.removeFinisher(this);
    this.opened = false;
  }

  tuns(): TunDevice[] {
    return [];
  }

  routes(): string[] {
    return [];
  }

  add(_onramp: { name: string }, id: number): void {
    this.host.delivery.set(id, this);
  }

  update(): void {
    // Nothing of the onramp's settings is used here: lane 0's transport applies them.
  }

  remove(id: number): void {
    this.host.delivery.clear(id, this);
  }

  deliver(batch: PacketBatch, i: number, port: number): void {
    if (this.ring.pushDelivery(batch, i, port)) {
      this.host.counters[EdgeCounter.LaneDeliveredViaLane0]++;
      this.pushed = true;
    } else {
      this.host.counters[EdgeCounter.LaneRingFull]++;
    }
  }

  /** Super-packets and partial checksums go as they are: lane 0 segments or completes them for the tunnel. */
  acceptsOffload(): boolean {
    return true;
  }

  /** After each delivered batch (TunOutputs.flush): the records pushed become visible to lane 0, one doorbell. */
  finishDelivery(): void {
    if (!this.pushed) return;
    this.pushed = false;
    this.ring.publish();
  }
}
