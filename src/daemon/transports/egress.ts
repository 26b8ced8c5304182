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
import type { EgressConfig } from '../../control/config.js';
import { openTun, type TunDevice } from '../../io/tun.js';
import { KernelObjects, disableRpFilter, hostRoute, planLink } from '../network.js';
import type { Output, Transport, TransportHost } from './transport.js';

const OWNER = 'egress';

export class EgressTransport implements Transport {
  private readonly kernel = new KernelObjects();
  private tun: TunDevice | null = null;
  private out: Output | null = null;

  /** `egress` null: no Internet egress (PORT_INTERNET has no delivery). */
  constructor(private readonly host: TransportHost, private readonly egress: EgressConfig | null) {
    if (egress !== null) host.delivery.set(PORT_INTERNET, this);
  }

  open(): void {
    const cfg = this.egress;
    if (cfg === null || this.tun !== null) return;
    const tun = openTun(cfg.interface);
    try {
      disableRpFilter(tun.name);
      this.kernel.apply(OWNER, [planLink(tun.name, this.host.mtu), ...cfg.addresses.map((a) => hostRoute(a, tun.name))]);
    } catch (e) {
      tun.close();
      throw e;
    }
    this.tun = tun;
    this.out = this.host.outputs.add(tun);
    this.host.readPlain(tun, PORT_INTERNET);
  }

  close(): void {
    const tun = this.tun;
    if (tun === null) return;
    tun.stopReading();
    const failed = this.kernel.releaseAll();
    if (failed.length > 0) this.host.log.warn({ failed }, 'some egress routes were already gone');
    if (this.out !== null) this.host.outputs.remove(this.out);
    this.out = null;
    this.tun = null;
    tun.close();
  }

  tuns(): TunDevice[] {
    return this.tun === null ? [] : [this.tun];
  }

  routes(): string[] {
    return this.kernel.applied();
  }

  deliver(_batch: PacketBatch, i: number): void {
    const out = this.out;
    if (out !== null) out.idx[out.n++] = i;
  }
}
