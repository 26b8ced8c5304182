/**
 * The Internet egress: one TUN whose packets leave through the kernel's own routing, and the SNAT pool
 * addresses routed back into it (their replies enter the pipeline as the Internet, port 0).
 *
 *   next hop PORT_INTERNET ─► <egress> (one writeIndices per batch) ─► kernel ─► default route
 *   pool address ─ ip route ADDR/32 dev <egress> ─► TUN read, tagged PORT_INTERNET ─► pipeline
 *
 * Owns: the egress TUN and the pool's host routes. The pool itself is the pipeline's (fixed at start).
 */
import { PORT_INTERNET } from '../../common/ids.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import type { EgressConfig } from '../../config/index.js';
import type { TunDevice } from '../../io/tun.js';
import { KernelObjects, hostRoute } from '../network.js';
import { closeOwnedTun, openOwnedTun, type OwnedTun } from './owned-tun.js';
import type { Transport, TransportHost } from './transport.js';

const OWNER = 'egress';

export class EgressTransport implements Transport {
  private readonly kernel = new KernelObjects();
  private owned: OwnedTun | null = null;

  /** `egress` null: no Internet egress (PORT_INTERNET has no delivery). */
  constructor(private readonly host: TransportHost, private readonly egress: EgressConfig | null) {
    if (egress !== null) host.delivery.set(PORT_INTERNET, this);
  }

  open(): void {
    const cfg = this.egress;
    if (cfg === null || this.owned !== null) return;
    this.owned = openOwnedTun(this.host, this.kernel, OWNER, cfg.interface, cfg.addresses.map((a) => hostRoute(a, cfg.interface)), { offload: this.host.offload });
    this.host.readPlain(this.owned.tun, PORT_INTERNET);
  }

  close(): void {
    if (this.owned === null) return;
    closeOwnedTun(this.host, this.kernel, this.owned);
    this.owned = null;
  }

  tuns(): TunDevice[] {
    return this.owned === null ? [] : [this.owned.tun];
  }

  routes(): string[] {
    return this.kernel.applied();
  }

  /** The egress TUN while open (the native flow cache writes to it: flow-offload.ts). */
  tun(): TunDevice | null {
    return this.owned === null ? null : this.owned.tun;
  }

  acceptsOffload(): boolean {
    return this.owned !== null && this.owned.tun.offloads;
  }

  deliver(_batch: PacketBatch, i: number): void {
    const owned = this.owned;
    if (owned !== null) owned.out.idx[owned.out.n++] = i;
  }
}
