/**
 * Interconnect onramps: a plain L3 link (a data center's veth, a cross-connect). Everything arriving on the link
 * is policy-routed into the onramp's own TUN, tt-ic-<id>, whose packets enter the pipeline tagged with the
 * onramp; what the pipeline forwards to the onramp is written back into that TUN.
 *
 *   link ─ ip rule iif LINK lookup 1000+n ─ default dev tt-ic-<n> ─► TUN read, tagged n ─► pipeline
 *   next hop n ─► tt-ic-<n> (one writeIndices per batch) ─► kernel ─► link
 *
 * Owns: per onramp, its TUN, its rule and its table's default route.
 */
import { MAX_ONRAMP_ID } from '../../common/ids.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import type { InterconnectOnrampConfig } from '../../config/index.js';
import type { TunDevice } from '../../io/tun.js';
import { ip, ipv6Enabled, KernelObjects, interconnectTunName, planInterconnect } from '../network.js';
import { closeOwnedTun, openOwnedTun, type OwnedTun } from './owned-tun.js';
import type { OnrampTransport, Output, TransportHost } from './transport.js';

interface Interconnect {
  id: number;
  link: string;
  /** Its TUN while open. */
  owned: OwnedTun | null;
}

/**
 * Refuses a link that does not exist: the kernel accepts `ip rule add iif NAME` for any name, so without this
 * check an onramp added live on a mistyped link would be stored and silently carry nothing.
 */
function requireLink(link: string): void {
  try {
    ip(['link', 'show', 'dev', link]);
  } catch {
    throw new Error(`link ${link} does not exist`);
  }
}

export class InterconnectTransport implements OnrampTransport<InterconnectOnrampConfig> {
  readonly type = 'interconnect';
  private readonly kernel = new KernelObjects();
  /** By onramp id, in the order they were added. */
  private readonly links = new Map<number, Interconnect>();
  /** Per port: the output its packets are written to (read per packet). */
  private readonly portOut = new Array<Output | null>(MAX_ONRAMP_ID + 1).fill(null);
  private opened = false;

  constructor(private readonly host: TransportHost) {}

  open(): void {
    if (this.opened) return;
    const done: Interconnect[] = [];
    try {
      for (const ic of this.links.values()) {
        this.openOne(ic);
        done.push(ic);
      }
    } catch (e) {
      for (const ic of done) this.closeOne(ic);
      throw e;
    }
    this.opened = true;
  }

  close(): void {
    if (!this.opened) return;
    for (const ic of [...this.links.values()].reverse()) this.closeOne(ic);
    this.opened = false;
  }

  tuns(): TunDevice[] {
    const out: TunDevice[] = [];
    for (const ic of this.links.values()) if (ic.owned !== null) out.push(ic.owned.tun);
    return out;
  }

  routes(): string[] {
    return this.kernel.applied();
  }

  add(o: InterconnectOnrampConfig, id: number): void {
    if (this.links.has(id)) throw new Error(`onramp ${o.name}: interconnect ${id} exists already`);
    const ic: Interconnect = { id, link: o.interconnect.link, owned: null };
    if (this.opened) {
      try {
        requireLink(ic.link);
        this.openOne(ic);
      } catch (e) {
        throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
      }
    }
    this.links.set(id, ic);
    this.host.delivery.set(id, this);
  }

  /** A new link: the rule moves (the TUN and its table stay). */
  update(o: InterconnectOnrampConfig, id: number): void {
    const ic = this.links.get(id);
    if (ic === undefined) throw new Error(`onramp ${o.name}: no interconnect ${id}`);
    if (ic.link === o.interconnect.link) return;
    const had = ic.link;
    if (this.opened) {
      try {
        requireLink(o.interconnect.link);
      } catch (e) {
        throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
      }
      this.closeOne(ic);
      ic.link = o.interconnect.link;
      try {
        this.openOne(ic);
      } catch (e) {
        ic.link = had;
        this.openOne(ic);
        throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
      }
    } else {
      ic.link = o.interconnect.link;
    }
  }

  remove(id: number): void {
    const ic = this.links.get(id);
    if (ic === undefined) return;
    this.host.delivery.clear(id, this);
    if (this.opened) this.closeOne(ic);
    this.links.delete(id);
  }

  /** Interconnect `port`'s TUN while open (the native flow cache reads and writes it: flow-offload.ts). */
  tunOf(port: number): TunDevice | null {
    const out = this.portOut[port];
    return out === null || out === undefined ? null : out.tun;
  }

  acceptsOffload(port: number): boolean {
    const out = this.portOut[port];
    return out !== null && out.tun.offloads;
  }

  deliver(_batch: PacketBatch, i: number, port: number): void {
    const out = this.portOut[port];
    if (out !== null) out.idx[out.n++] = i;
  }

  private openOne(ic: Interconnect): void {
    const name = interconnectTunName(ic.id);
    const owned = openOwnedTun(this.host, this.kernel, `interconnect ${ic.id}`, name, planInterconnect({ onrampId: ic.id, link: ic.link, tun: name }, ipv6Enabled()), { offload: this.host.offload });
    ic.owned = owned;
    this.portOut[ic.id] = owned.out;
    this.host.readPlain(owned.tun, ic.id);
  }

  private closeOne(ic: Interconnect): void {
    if (ic.owned === null) return;
    this.portOut[ic.id] = null;
    closeOwnedTun(this.host, this.kernel, ic.owned);
    ic.owned = null;
  }
}
