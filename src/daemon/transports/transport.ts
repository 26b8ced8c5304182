/**
 * The device layer's shared shapes: what a transport is, what it is handed, and the per-port delivery table.
 *
 *   Edge (lifecycle) ── open/close ──► Underlay (demux) ◄── claims: IP protocol, UDP address:port ── GRE, WireGuard
 *        │                                                                                           (IPsec: 50, UDP 500/4500)
 *        ├── add/update/remove(onramp, id) ──► the transport of the onramp's type ── DeliveryTable.set(id, itself)
 *        └── deliver: per forwarded packet, DeliveryTable.of(nextHop).deliver(batch, i, nextHop, now)
 *
 * A transport owns its engine state (tunnel table, peers) and its kernel objects (TUNs, routes, rules,
 * endpoint addresses); it may be handed onramps before open() (the start configuration) and at any time after
 * (live changes): kernel objects are created at open() for what it already holds, immediately for what comes
 * later, and taken back by remove() and close().
 */
import { MAX_ONRAMP_ID } from '../../common/ids.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import type { OnrampConfig } from '../../config/index.js';
import type { OuterTap } from '../../control/capture.js';
import type { TunDevice } from '../../io/tun.js';
import { GroCoalescer } from '../../dataplane/gro.js';
import { parseAddress } from '../../wire/addr.js';
import { AF_INET4, AF_INET6 } from '../../wire/constants.js';
import { EdgeCounter } from './counters.js';

/** What the device layer needs of a logger (pino's Logger fits). */
export interface EdgeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  isLevelEnabled?(level: string): boolean;
}

/** Sends the forwarded packets of the ports it serves. */
export interface Deliverer {
  /** Packet i of `batch`, whose next hop is `port`, at monotonic `now` (ms). Runs per packet: no allocation. */
  deliver(batch: PacketBatch, i: number, port: number, now: number): void;
  /**
   * True when `port` leaves through a TUN with offloads, which takes GSO super-packets and partial checksums as they
   * are (the kernel segments them). Absent or false: the edge segments and completes checksums in software first.
   */
  acceptsOffload?(port: number): boolean;
}

/** Every transport: the Internet egress, the onramp transports. */
export interface Transport extends Deliverer {
  /** Creates the kernel objects of everything it holds and starts serving. */
  open(): void;
  /** Takes its kernel objects back; idempotent. What it holds stays, so open() can run again. */
  close(): void;
  /** Its TUN devices while open, for status (allocates: control plane). */
  tuns(): TunDevice[];
  /** The routes and rules it applied, as `ip …` commands, for the start log. */
  routes(): string[];
}

/** The onramp types a transport can serve: the configured kinds, and the ones a later transport adds (ipsec). */
export type OnrampType = OnrampConfig['type'] | 'ipsec';

/**
 * A transport that carries onramps of one type. `id` is the onramp's port (onramp id); the caller (the Edge)
 * keeps the pipeline's port tables in step. add() and update() throw with a message naming the onramp when the
 * change cannot be made (nothing is changed then).
 */
export interface OnrampTransport<C extends { type: string; name: string } = OnrampConfig> extends Transport {
  readonly type: OnrampType;
  add(onramp: C, id: number): void;
  update(onramp: C, id: number): void;
  remove(id: number): void;
}

/** One TUN the edge writes, with the indices of the current batch's packets headed there. */
export interface Output {
  readonly tun: TunDevice;
  readonly idx: Uint32Array;
  n: number;
  /** Sees batch[idx[0…n)] just before they are written (the underlay's outer capture, Underlay.setOuterTap); null: none. */
  tap: OuterTap | null;
  /**
   * Coalesces each flow's TCP segments into super-packets before the write (dataplane/gro.ts); only on a TUN with
   * offloads that the edge forwards plain IP into (egress, interconnect), never one whose packets a tunnel
   * encrypts per packet. null: written as they are.
   */
  readonly gro: GroCoalescer | null;
  /** Scratch for the runs of uncoalesced packets between super-packets (gro only). */
  readonly run: Uint32Array;
}

/** What transports are handed by the Edge. */
export interface TransportHost {
  readonly log: EdgeLogger;
  /** The edge's counters, indexed by EdgeCounter. */
  readonly counters: Float64Array;
  readonly delivery: DeliveryTable;
  readonly outputs: TunOutputs;
  /** Packets the edge itself sends into the pipeline (ICMP errors for a tunnel's MTU), processed after each batch. */
  readonly feedback: PacketBatch;
  /** Each onramp's own address inside its tunnel (health_check.source), as the onramp runs now. */
  readonly tunnelAddresses: TunnelAddresses;
  /** MTU of every TUN the edge creates. */
  readonly mtu: number;
  /** Open the TUNs that take plain IP traffic (egress, interconnects) with offloads (TSO/USO, checksum); default off. */
  readonly offload?: boolean;
  /** On those TUNs, coalesce each flow's TCP segments into super-packets before writing (GRO); default on. */
  readonly gro?: boolean;
  /**
   * Lanes (docs/ARCHITECTURE.md "Lanes"): with more than one, the egress and interconnect TUNs are opened with
   * IFF_MULTI_QUEUE, one queue per lane; only lane 0 (`ownsKernel`) applies their links, routes and rules.
   */
  readonly multiQueue?: boolean;
  readonly ownsKernel?: boolean;
  /** True between the Edge's start() and stop(). */
  isRunning(): boolean;
  /** Starts reading a TUN whose packets enter the pipeline tagged with `port` (the Edge's read loop). */
  readPlain(tun: TunDevice, port: number): void;
}

const PORT_SPACE = MAX_ONRAMP_ID + 1;
const IPV6_WORDS = 4;
/** TunnelAddresses.of: the onramp has no tunnel address of that family. */
export const NO_ADDRESS = 0;

/**
 * Per port: the onramp's own address inside its tunnel (its health_check.source), which the Edge keeps with the
 * configuration each onramp runs with (a change to health_check alone reaches no transport, so the transports do
 * not keep it themselves). Read on slow paths only (the source of a tunnel's ICMP errors: tunnel-mtu.ts).
 */
export class TunnelAddresses {
  private readonly v4 = new Uint32Array(PORT_SPACE);
  private readonly v6 = new Map<number, Uint32Array>();

  /** The onramp's address (text), or none; replaces what it had. */
  set(port: number, address: string | undefined): void {
    this.clear(port);
    if (address === undefined) return;
    const words = new Uint32Array(IPV6_WORDS);
    const family = parseAddress(address, words);
    if (family === AF_INET4) this.v4[port] = words[0];
    else if (family === AF_INET6) this.v6.set(port, words);
  }

  clear(port: number): void {
    this.v4[port] = NO_ADDRESS;
    this.v6.delete(port);
  }

  clearAll(): void {
    this.v4.fill(NO_ADDRESS);
    this.v6.clear();
  }

  /** The onramp's address of `family`: an IPv4 number, IPv6 words, or NO_ADDRESS. */
  of(family: number, port: number): number | Uint32Array {
    return family === AF_INET4 ? this.v4[port] : (this.v6.get(port) ?? NO_ADDRESS);
  }
}

/**
 * Per port (onramp id, or PORT_INTERNET): which transport delivers it. Replaces fixed kind/device/peer maps
 * built once at start: transports set and clear their own ports as onramps come and go.
 */
export class DeliveryTable {
  private readonly owner: Array<Deliverer | null> = new Array<Deliverer | null>(PORT_SPACE).fill(null);

  /** The transport of `port`, or null (no delivery: counted by the caller). */
  of(port: number): Deliverer | null {
    return this.owner[port];
  }

  set(port: number, deliverer: Deliverer): void {
    const have = this.owner[port];
    if (have !== null && have !== deliverer) throw new Error(`port ${port} is already delivered by another transport`);
    this.owner[port] = deliverer;
  }

  clear(port: number, deliverer: Deliverer): void {
    if (this.owner[port] === deliverer) this.owner[port] = null;
  }
}

/**
 * A transport that works on whole delivered batches (IPsec: ESP is encrypted by one native call per batch):
 * called once after the per-packet deliver loop, before the TUN writes, with the batch just delivered.
 */
export interface DeliveryFinisher {
  finishDelivery(batch: PacketBatch): void;
}

/**
 * The TUNs written by index at the end of each delivered batch (one writeIndices() per TUN per batch). A
 * transport adds its TUN when it opens it and removes it when it closes it (control plane, between batches).
 */
export class TunOutputs {
  private list: Output[] = [];
  private finishers: DeliveryFinisher[] = [];

  /**
   * `capacity`: the most packets one delivered batch can hold (read batch plus the pipeline's generated ones).
   * `counters`: the edge's (EdgeCounter), for GRO's; none: not counted.
   */
  constructor(private readonly capacity: number, private readonly counters: Float64Array | null = null) {}

  /** `gro`: coalesce before writing (the TUN must have offloads: a super-packet needs TUNSETOFFLOAD). */
  add(tun: TunDevice, opts: { gro?: boolean } = {}): Output {
    const gro = opts.gro === true && tun.offloads ? new GroCoalescer(this.capacity) : null;
    const out: Output = { tun, idx: new Uint32Array(this.capacity), n: 0, tap: null, gro, run: new Uint32Array(gro === null ? 0 : this.capacity) };
    this.list.push(out);
    return out;
  }

  remove(out: Output): void {
    this.list = this.list.filter((o) => o !== out);
  }

  reset(): void {
    const outs = this.list;
    for (let k = 0; k < outs.length; k++) outs[k].n = 0;
  }

  /** `f` finishes every delivered batch before it is written (see DeliveryFinisher). */
  addFinisher(f: DeliveryFinisher): void {
    if (!this.finishers.includes(f)) this.finishers = [...this.finishers, f];
  }

  removeFinisher(f: DeliveryFinisher): void {
    this.finishers = this.finishers.filter((x) => x !== f);
  }

  flush(batch: PacketBatch): void {
    const finishers = this.finishers;
    for (let k = 0; k < finishers.length; k++) finishers[k].finishDelivery(batch);
    const outs = this.list;
    for (let k = 0; k < outs.length; k++) {
      const o = outs[k];
      if (o.n === 0) continue;
      if (o.tap !== null) o.tap.outer(batch, o.idx, 0, o.n, true);
      if (o.gro === null || o.n < 2) o.tun.writeIndices(batch, o.idx, o.n);
      else this.writeCoalesced(batch, o, o.gro);
    }
  }

  /**
   * The entries GRO made, in order: runs of the batch's own packets (one writeIndices each) between runs of
   * super-packets (one writeBatch over the arena each), so every flow's packets reach the kernel in order.
   */
  private writeCoalesced(batch: PacketBatch, o: Output, gro: GroCoalescer): void {
    if (gro.coalesce(batch, o.idx, o.n) === 0) {
      o.tun.writeIndices(batch, o.idx, o.n);
      return;
    }
    const c = this.counters;
    if (c !== null) {
      c[EdgeCounter.GroSegments] += gro.segments;
      c[EdgeCounter.GroSuperPackets] += gro.superPackets;
    }
    const m = gro.entries;
    const kind = gro.entryArena;
    const index = gro.entryIndex;
    for (let e = 0; e < m; ) {
      if (kind[e] === 1) {
        const from = index[e];
        while (e < m && kind[e] === 1) e++;
        o.tun.writeBatch(gro.arena, from, index[e - 1] + 1);
      } else {
        let r = 0;
        while (e < m && kind[e] === 0) o.run[r++] = index[e++];
        o.tun.writeIndices(batch, o.run, r);
      }
    }
  }
}
