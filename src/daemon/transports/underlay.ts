/**
 * The underlay: one TUN that carries every tunnel's outer packets (the endpoint addresses are routed into it),
 * and the demultiplexer that hands each outer packet to the transport that claimed it.
 *
 *   tt-underlay ─ read batch ─ per packet: inspect outer ─┬ IP protocol claimed (GRE 47, ESP 50) ─► its receiver
 *                                                         ├ UDP to a claimed address:port (WireGuard, IKE 500/4500) ─► its receiver
 *                                                         ├ ICMP echo to an endpoint ─ reply in place ─► underlay
 *                                                         └ anything else ─ counted drop
 *
 * Receivers compact the batch in place: each keeps its packet by moving the descriptor to the next free index
 * (its offset pointing at the inner packet), so the read batch itself becomes the pipeline's input. A receiver
 * that works on whole batches (IPsec's decryption) finishes its packets after the loop (DemuxFinisher). The demux
 * knows no transport kind: a transport claims what it serves and releases it when it closes.
 *
 * Packets the device layer builds (WireGuard datagrams, GRE fragments) go through one small transmit batch,
 * flushed at the end of each batch; in-place encapsulations are written through the underlay's Output.
 */
import { DropMarks } from './drop-marks.js';
import { Drop } from '../../common/drop-reasons.js';
import { NEXT_HOP_DROP } from '../../common/ids.js';
import { parseIpv4 } from '../../wire/addr.js';
import { PacketBatch } from '../../common/packet-batch.js';
import type { TunDevice } from '../../io/tun.js';
import type { OuterTap } from '../../control/capture.js';
import { AF_INET4, ICMP4_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_UDP } from '../../wire/constants.js';
import { inspect } from '../../wire/inspect.js';
import { DST, PacketInfo } from '../../wire/packet-info.js';
import { KernelObjects, hostRoute, UNDERLAY_TX_QUEUE_PACKETS } from '../network.js';
import { echoReplyInPlace } from '../underlay-packets.js';
import { EdgeCounter } from './counters.js';
import { closeOwnedTun, openOwnedTun, type OwnedTun } from './owned-tun.js';
import type { TransportHost } from './transport.js';

/** A transport's receive side for the outer packets it claimed. */
export interface UnderlayReceiver {
  /**
   * Packet i of the underlay batch, its outer header inspected into `info`; returns the next free descriptor
   * index (j + 1 when an inner packet was kept at j, j otherwise). Runs per packet: no allocation.
   */
  receiveUnderlay(batch: PacketBatch, i: number, j: number, info: PacketInfo, now: number): number;
}

/**
 * A receiver that works on whole batches (IPsec's ESP, WireGuard's transport messages: decrypted by one native
 * call per batch). Called once at the end of every demux with the number of packets kept; it drops kept packets
 * of its own by marking their descriptors in the underlay's demuxDrops (also while it receives, when its queue
 * fills), which the demux compacts once, after every finisher ran: until then every descriptor index any
 * receiver queued stays valid.
 */
export interface DemuxFinisher {
  finishDemux(batch: PacketBatch, count: number, now: number): void;
}

/** IP protocol numbers are one byte (RFC 791 section 3.1). */
const IP_PROTOCOLS = 256;
const LINK_OWNER = 'link';

export class Underlay {
  readonly tx: PacketBatch;
  private owned: OwnedTun | null = null;
  private readonly info = new PacketInfo();
  private readonly kernel = new KernelObjects();
  private readonly byProtocol = new Array<UnderlayReceiver | null>(IP_PROTOCOLS).fill(null);
  /** UDP claims, scanned in order: a listen address (0 = every address) and port, and who takes them. */
  private udp: Array<{ addr: number; port: number; receiver: UnderlayReceiver }> = [];
  /** Endpoint address text → how many tunnels use it (one host route each, while any does). */
  private readonly endpoints = new Map<string, number>();
  /** Receivers that finish each demuxed batch (IPsec's batched decryption). */
  private finishers: DemuxFinisher[] = [];
  /** Descriptors the finishers drop (DemuxFinisher), compacted at the end of the demux, after all of them ran. */
  readonly demuxDrops = new DropMarks();
  /** IPv4 endpoint addresses that answer echo requests. */
  private echoAddrs = new Uint32Array(0);
  /**
   * An outer capture's tap (`tether capture --outer`); null, the only cost: one test per read batch and per
   * write. Every outer packet passes one of three places: the read batch (demux), writeOne, flushTx, and the
   * in-place encapsulations queued on the underlay's Output (TunOutputs.flush calls the Output's tap).
   */
  private outerTap: OuterTap | null = null;

  constructor(private readonly host: TransportHost, readonly name: string, batchSize: number) {
    this.tx = new PacketBatch(batchSize);
  }

  /** The underlay TUN while open (the Edge wires its read loop to demux()). */
  get device(): TunDevice | null {
    return this.owned === null ? null : this.owned.tun;
  }

  /** Opens the TUN, brings it up and routes every endpoint address held so far into it. */
  open(): TunDevice {
    if (this.owned !== null) return this.owned.tun;
    const owned = openOwnedTun(this.host, this.kernel, LINK_OWNER, this.name, [], { queue: UNDERLAY_TX_QUEUE_PACKETS });
    this.owned = owned;
    owned.out.tap = this.outerTap;
    try {
      for (const addr of this.endpoints.keys()) this.kernel.apply(endpointOwner(addr), [hostRoute(addr, this.name)]);
    } catch (e) {
      this.close();
      throw e;
    }
    return owned.tun;
  }

  close(): void {
    if (this.owned === null) return;
    this.tx.count = 0;
    // Endpoint routes first (they name the TUN), then the TUN itself.
    const failed = this.kernel.releaseAll();
    if (failed.length > 0) this.host.log.warn({ failed }, 'some underlay routes were already gone');
    closeOwnedTun(this.host, this.kernel, this.owned);
    this.owned = null;
  }

  tuns(): TunDevice[] {
    return this.device === null ? [] : [this.device];
  }

  routes(): string[] {
    return this.kernel.applied();
  }

  // --- claims and endpoints (control plane) -------------------------------------------------------------

  /** Outer packets of IP protocol `protocol` go to `receiver`. One receiver per protocol. */
  claimProtocol(protocol: number, receiver: UnderlayReceiver): void {
    const have = this.byProtocol[protocol];
    if (have !== null && have !== receiver) throw new Error(`IP protocol ${protocol} is already claimed on the underlay`);
    this.byProtocol[protocol] = receiver;
  }

  releaseProtocol(protocol: number, receiver: UnderlayReceiver): void {
    if (this.byProtocol[protocol] === receiver) this.byProtocol[protocol] = null;
  }

  /** IPv4 UDP datagrams to addr:port (addr 0: to any address) go to `receiver`. */
  claimUdp(addr: number, port: number, receiver: UnderlayReceiver): void {
    if (this.udp.some((c) => c.port === port && (c.addr === addr || c.addr === 0 || addr === 0))) {
      throw new Error(`UDP port ${port} on that address is already claimed on the underlay`);
    }
    this.udp = [...this.udp, { addr, port, receiver }];
  }

  releaseUdp(addr: number, port: number, receiver: UnderlayReceiver): void {
    this.udp = this.udp.filter((c) => !(c.addr === addr && c.port === port && c.receiver === receiver));
  }

  /** `f` finishes every demuxed batch from now on (see DemuxFinisher). */
  addFinisher(f: DemuxFinisher): void {
    if (!this.finishers.includes(f)) this.finishers = [...this.finishers, f];
  }

  removeFinisher(f: DemuxFinisher): void {
    this.finishers = this.finishers.filter((x) => x !== f);
  }

  /** A local tunnel endpoint: routed into the underlay (while open) and answering pings; counted per user. */
  addEndpoint(addr: string): void {
    const users = this.endpoints.get(addr) ?? 0;
    if (users === 0 && this.owned !== null) this.kernel.apply(endpointOwner(addr), [hostRoute(addr, this.name)]);
    this.endpoints.set(addr, users + 1);
    if (users === 0) this.rebuildEcho();
  }

  removeEndpoint(addr: string): void {
    const users = this.endpoints.get(addr) ?? 0;
    if (users > 1) {
      this.endpoints.set(addr, users - 1);
      return;
    }
    if (users === 0) return;
    this.endpoints.delete(addr);
    this.rebuildEcho();
    const failed = this.kernel.release(endpointOwner(addr));
    if (failed.length > 0) this.host.log.warn({ failed }, 'an endpoint route was already gone');
  }

  private rebuildEcho(): void {
    const echo: number[] = [];
    for (const addr of this.endpoints.keys()) {
      const v4 = parseIpv4(addr);
      if (v4 >= 0) echo.push(v4);
    }
    this.echoAddrs = Uint32Array.from(echo);
  }

  /** Installs (or, with null, removes) the outer capture's tap on every underlay read and write. */
  setOuterTap(tap: OuterTap | null): void {
    this.outerTap = tap;
    if (this.owned !== null) this.owned.out.tap = tap;
  }

  // --- receive --------------------------------------------------------------------------------------------

  /** Demultiplexes a read batch in place; returns how many inner packets it kept (the batch's new count). */
  demux(batch: PacketBatch, now: number): number {
    const data = batch.data;
    const info = this.info;
    const counters = this.host.counters;
    const n = batch.count;
    // The outer packets as read, before any receiver decrypts or decapsulates them in place.
    const tap = this.outerTap;
    if (tap !== null) tap.outer(batch, null, 0, n, false);
    let j = 0;
    for (let i = 0; i < n; i++) {
      const off = batch.offset[i];
      const len = batch.length[i];
      const bad = inspect(data, off, len, info);
      // Tunnel protocols the flow model does not track (GRE, ESP): inspect validates the IP header and says so.
      if (bad !== Drop.None && bad !== Drop.UnsupportedProtocol) {
        counters[EdgeCounter.UnderlayMalformed]++;
        continue;
      }
      const claimed = this.byProtocol[info.protocol];
      if (claimed !== null) {
        j = claimed.receiveUnderlay(batch, i, j, info, now);
        continue;
      }
      if (bad !== Drop.None) {
        counters[EdgeCounter.UnderlayMalformed]++;
        continue;
      }
      const protocol = info.protocol;
      if (info.family === AF_INET4 && protocol === IPPROTO_UDP) {
        const receiver = this.udpReceiver(info.addr[DST], info.dstPort);
        if (receiver !== null) {
          j = receiver.receiveUnderlay(batch, i, j, info, now);
          continue;
        }
      } else if (info.family === AF_INET4 && protocol === IPPROTO_ICMP && info.icmpType === ICMP4_ECHO_REQUEST && this.isEchoAddr(info.addr[DST])) {
        echoReplyInPlace(data, info.l3Offset, info.l4Offset - info.l3Offset, info.l4Offset);
        this.writeOne(batch, i);
        counters[EdgeCounter.EchoReplied]++;
        continue;
      }
      counters[EdgeCounter.UnderlayNotForUs]++;
    }
    const finishers = this.finishers;
    for (let k = 0; k < finishers.length; k++) finishers[k].finishDemux(batch, j, now);
    return this.demuxDrops.compact(batch, j);
  }

  private udpReceiver(dst: number, port: number): UnderlayReceiver | null {
    const udp = this.udp;
    for (let k = 0; k < udp.length; k++) {
      const c = udp[k];
      if (c.port === port && (c.addr === dst || c.addr === 0)) return c.receiver;
    }
    return null;
  }

  private isEchoAddr(addr: number): boolean {
    const a = this.echoAddrs;
    for (let k = 0; k < a.length; k++) if (a[k] === addr) return true;
    return false;
  }

  // --- transmit -------------------------------------------------------------------------------------------

  /** Writes packet i of `batch` back out at once (a reflected keepalive, an echo reply). */
  writeOne(batch: PacketBatch, i: number): void {
    if (this.owned === null) return;
    if (this.outerTap !== null) this.outerTap.outer(batch, null, i, i + 1, true);
    this.owned.tun.writeBatch(batch, i, i + 1);
  }

  /** Queues packet i of the batch being delivered (encapsulated in place) for this batch's underlay write. */
  queue(i: number): void {
    const owned = this.owned;
    if (owned !== null) owned.out.idx[owned.out.n++] = i;
  }

  /** A slot of the transmit batch for a packet the device layer builds; flushes first when it is full. */
  reserveTx(): number {
    const tx = this.tx;
    if (tx.count === tx.capacity) this.flushTx();
    const k = tx.count++;
    tx.nextHop[k] = NEXT_HOP_DROP;
    return k;
  }

  flushTx(): void {
    const tx = this.tx;
    if (tx.count === 0) return;
    if (this.owned !== null) {
      if (this.outerTap !== null) this.outerTap.outer(tx, null, 0, tx.count, true);
      this.owned.tun.writeBatch(tx, 0, tx.count);
    }
    tx.count = 0;
  }
}

function endpointOwner(addr: string): string {
  return `endpoint ${addr}`;
}
