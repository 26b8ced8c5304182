/**
 * IPsec onramps on the underlay: the ESP data path (RFC 4303 tunnel mode, RFC 3948 UDP encapsulation) for the
 * child SAs the IKE engine installs, and the IKE datagrams it exchanges. The data-path half of IkeSink.
 *
 *   underlay, IP protocol 50 ───────────────┐
 *   underlay, UDP 4500 ─ classify (RFC 3948 §2) ┬ ESP ─┴─ SPI → SA ─ length ─ replay check ─ queued ─┐
 *                                               ├ 0xFF keepalive: counted                            │ end of demux
 *                                               └ marker 0 → IKE ─┐                                   ▼
 *   underlay, UDP 500 ─────────────────────────────────── IKE ────┴─► onIke handler     native open (one call per batch):
 *                                                                                       ICV, decrypt in place ─ trailer ─
 *                                                                                       replay update ─► pipeline (ingress =
 *                                                                                       the onramp), or a counted drop
 *   next hop = an IPsec onramp ─ its sending SA ─ length ≤ MTU ─ header, trailer in place ─ queued ─┐ before the TUN write
 *              (else tunnel-mtu.ts: fragments, or ICMP too-big back through the pipeline)          ▼
 *                                                        native seal (one call per batch) ─ outer IPv4 (+ UDP) ─► underlay
 *
 * Anti-replay (RFC 4303 §3.4.3): checked before decryption, updated only after the ICV verified, so a forged
 * packet costs one lookup and moves nothing. Sequence numbers (no ESN): the SA table flags exhaustion for the
 * engine (childUsage) and never sends past 2^32 − 1.
 *
 * Tunnel MTU: per onramp, the configured `mtu` if any, else what the sending SA leaves of the underlay's MTU
 * (espTunnelMtu: outer IPv4, UDP when encapsulated, ESP header, IV, worst padding, trailer, ICV); the pipeline
 * clamps TCP MSS to the onramp's mtu like GRE's and WireGuard's (the lead's OnrampSpec.mtu; defaultMtu() gives it).
 *
 * Owns: the SA table and the native crypto contexts, the UDP 500/4500 claims and endpoint routes of each local
 * address its onramps use, the IP protocol 50 claim while open.
 */
import { MAX_ONRAMP_ID } from '../../common/ids.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import { EspCrypto, EspEntries, EspStatus, type EspContextKeys } from '../../io/esp-crypto.js';
import type { TunDevice } from '../../io/tun.js';
import {
  ESP_DROP_COUNT,
  ESP_DROP_NAMES,
  ESP_HEADER,
  EspDrop,
  EspOpened,
  EspSaTable,
  IKE_PORT,
  NAT_KEEPALIVE_BYTE,
  NAT_T_PORT,
  NON_ESP_MARKER,
  NO_SA,
  UdpEncap,
  checkEspLength,
  classifyUdpEncap,
  espAlgorithm,
  espPadding,
  espPayloadOffset,
  espSealedLength,
  espSeq,
  espSpi,
  espTunnelMtu,
  nextHeaderOf,
  readEspTrailer,
  writeEspHeader,
  writeEspTrailer,
  type EspAlgorithm,
  type EspSaStatus,
} from '../../onramp/ipsec/esp/index.js';
import type { ChildSa, ChildSaUsage, EncryptionAlgorithm, EspDirectionKeys, IkeSink, IntegrityAlgorithm } from '../../onramp/ipsec/types.js';
import { parseIpv4 } from '../../wire/addr.js';
import { IPPROTO_ESP, IPV4_MIN_HEADER, UDP_HEADER } from '../../wire/constants.js';
import { writeIpv4Header } from '../../wire/header.js';
import { DST, SRC, type PacketInfo } from '../../wire/packet-info.js';
import { ORIGINATED_TTL, UDP4_OVERHEAD, writeUdp4Headers } from '../underlay-packets.js';
import { EdgeCounter, nonZero } from './counters.js';
import type { DeliveryFinisher, OnrampTransport, TransportHost } from './transport.js';
import { TunnelMtu, type TunnelFragmentSink } from './tunnel-mtu.js';
import type { DemuxFinisher, Underlay, UnderlayReceiver } from './underlay.js';

const PORT_SPACE = MAX_ONRAMP_ID + 1;
/** ESP packets queued for one native call; a fuller batch is sealed/opened in several calls. */
const DEFAULT_QUEUE = 1024;
const IP_ID_MASK = 0xffff;
/** mtu[] value of an onramp with no MTU of its own configured. */
const NO_MTU = 0;
const NAT_KEEPALIVE = new Uint8Array([NAT_KEEPALIVE_BYTE]);

/** What the transport needs of an `type: ipsec` onramp (the lead maps the compiled config onto it). */
export interface IpsecTransportOnramp {
  type: 'ipsec';
  name: string;
  /** Our underlay address for this onramp (IPv4 text): IKE and ESP are sent from it and received on it. */
  local: string;
  /** Tunnel MTU (inner packet bytes); default: what the sending SA leaves of the underlay MTU (espTunnelMtu). */
  mtu?: number;
}

/** Where an IKE datagram came from and arrived at (addresses as IPv4 numbers). */
export interface IkeDatagramPath {
  localAddress: number;
  localPort: number;
  remoteAddress: number;
  remotePort: number;
}

/** Receives IKE messages (the non-ESP marker already removed on port 4500). Control plane: `message` is a copy. */
export type IkeHandler = (message: Uint8Array, path: IkeDatagramPath, now: number) => void;

export interface IpsecStatus {
  drops: Record<string, number>;
  sas: EspSaStatus[];
}

export class IpsecTransport
  implements OnrampTransport<IpsecTransportOnramp>, UnderlayReceiver, DemuxFinisher, DeliveryFinisher, TunnelFragmentSink, Omit<IkeSink, 'peerState'>
{
  readonly type = 'ipsec';
  readonly table: EspSaTable;
  /** Per EspDrop reason, in and out. */
  readonly drops = new Float64Array(ESP_DROP_COUNT);
  private readonly crypto: EspCrypto;
  private readonly tunnelMtu: TunnelMtu;
  /** Onramp id → its local address (text); its configured MTU (NO_MTU: none) and the MTU in force. */
  private readonly locals = new Map<number, string>();
  private readonly configuredMtu = new Uint16Array(PORT_SPACE);
  private readonly mtu = new Uint16Array(PORT_SPACE);
  /** Local address (number) → how many onramps use it (UDP 500 and 4500 claimed while any does). */
  private readonly claims = new Map<number, number>();
  private readonly inQueue: EspEntries;
  private readonly outQueue: EspEntries;
  private readonly oneQueue = new EspEntries(1);
  private readonly opened = new EspOpened();
  private ikeHandler: IkeHandler | null = null;
  private ipId = 0;
  private isOpen = false;

  constructor(
    private readonly host: TransportHost,
    private readonly underlay: Underlay,
    options: { saCapacity?: number; queue?: number } = {},
  ) {
    this.table = new EspSaTable(options.saCapacity);
    const queue = options.queue ?? DEFAULT_QUEUE;
    this.crypto = new EspCrypto(this.table.capacity, queue);
    this.inQueue = new EspEntries(queue);
    this.outQueue = new EspEntries(queue);
    this.tunnelMtu = new TunnelMtu(host, {
      tooBig: EdgeCounter.IpsecTooBig,
      fragmented: EdgeCounter.IpsecFragmented,
      reported: EdgeCounter.IpsecTooBigReported,
      dropped: EdgeCounter.IpsecSendDrop,
    });
  }

  open(): void {
    if (this.isOpen) return;
    this.underlay.claimProtocol(IPPROTO_ESP, this);
    this.underlay.addFinisher(this);
    this.host.outputs.addFinisher(this);
    this.isOpen = true;
  }

  close(): void {
    if (!this.isOpen) return;
    this.underlay.releaseProtocol(IPPROTO_ESP, this);
    this.underlay.removeFinisher(this);
    this.host.outputs.removeFinisher(this);
    this.inQueue.clear();
    this.outQueue.clear();
    this.isOpen = false;
  }

  tuns(): TunDevice[] {
    return [];
  }

  routes(): string[] {
    return [];
  }

  // --- onramps (control plane) ----------------------------------------------------------------------------

  add(o: IpsecTransportOnramp, id: number): void {
    if (this.locals.has(id)) throw new Error(`onramp ${o.name}: IPsec onramp ${id} exists already`);
    this.attach(o);
    this.locals.set(id, o.local);
    this.configuredMtu[id] = o.mtu ?? NO_MTU;
    this.updateMtu(id);
    this.host.delivery.set(id, this);
  }

  /** A new local address or MTU; the onramp's SAs stay (the IKE engine re-establishes them if the address moved). */
  update(o: IpsecTransportOnramp, id: number): void {
    const old = this.locals.get(id);
    if (old === undefined) throw new Error(`onramp ${o.name}: no IPsec onramp ${id}`);
    if (old !== o.local) {
      // The new address first (nothing changed if that fails), then the old one goes.
      this.attach(o);
      this.detach(old);
      this.locals.set(id, o.local);
    }
    this.configuredMtu[id] = o.mtu ?? NO_MTU;
    this.updateMtu(id);
  }

  /** Its SAs go at once (their packets are then UnknownSpi drops), and nothing more is sent into it. */
  remove(id: number): void {
    const local = this.locals.get(id);
    if (local === undefined) return;
    this.host.delivery.clear(id, this);
    for (const s of this.table.removeOnramp(id)) this.crypto.remove(s);
    this.locals.delete(id);
    this.detach(local);
    this.mtu[id] = 0;
  }

  /** The tunnel MTU to give the pipeline (OnrampSpec.mtu, for MSS clamping) for an onramp with these algorithms. */
  static defaultMtu(underlayMtu: number, encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm | null, udpEncapsulated: boolean): number {
    return espTunnelMtu(espAlgorithm(encryption, integrity), underlayMtu, udpEncapsulated);
  }

  /** Whether `id` is an IPsec onramp of this transport. */
  serves(id: number): boolean {
    return this.locals.has(id);
  }

  /** The tunnel MTU in force for an onramp (0: not an IPsec onramp here). */
  mtuOf(id: number): number {
    return this.mtu[id];
  }

  // --- IkeSink, the data-path half -------------------------------------------------------------------------

  /** A new child SA: inbound at once; it becomes the onramp's sending SA (make-before-break on rekey). */
  installChild(sa: ChildSa): void {
    if (!this.locals.has(sa.onramp)) throw new Error(`child SA for onramp ${sa.onramp}: no IPsec onramp ${sa.onramp} here`);
    const s = this.table.install(sa);
    try {
      this.crypto.install(s, contextKeys(sa.inbound), contextKeys(sa.outbound));
    } catch (e) {
      this.table.remove(sa.onramp, sa.inbound.spi);
      throw new Error(`child SA for onramp ${sa.onramp}: ${(e as Error).message}`);
    }
    this.updateMtu(sa.onramp);
  }

  removeChild(onramp: number, inboundSpi: number): void {
    const s = this.table.remove(onramp, inboundSpi);
    if (s === NO_SA) return;
    this.crypto.remove(s);
    this.updateMtu(onramp);
  }

  childUsage(onramp: number, inboundSpi: number): ChildSaUsage | null {
    return this.table.usage(onramp, inboundSpi);
  }

  /** IKE datagrams received from now on go to `handler` (one handler: the IKE engine). */
  onIke(handler: IkeHandler | null): void {
    this.ikeHandler = handler;
  }

  /**
   * One IKE message from the onramp's local address and `localPort` (500, or 4500 with the non-ESP marker, RFC
   * 3948 §2.2). Written at once (IKE runs on timers, outside the batch cycle). Control plane.
   */
  sendIke(onramp: number, message: Uint8Array, localPort: number, remoteAddress: number, remotePort: number): void {
    this.sendUdp(onramp, localPort === NAT_T_PORT ? NON_ESP_MARKER : 0, message, localPort, remoteAddress, remotePort);
  }

  /** One NAT-keepalive (RFC 3948 §2.3: a single 0xFF byte) from the onramp's local address, UDP 4500. */
  sendNatKeepalive(onramp: number, remoteAddress: number, remotePort: number): void {
    this.sendUdp(onramp, 0, NAT_KEEPALIVE, NAT_T_PORT, remoteAddress, remotePort);
  }

  /** `zeros` zero bytes (the non-ESP marker, or none), then `payload`, in one UDP datagram. Written at once. */
  private sendUdp(onramp: number, zeros: number, payload: Uint8Array, localPort: number, remoteAddress: number, remotePort: number): void {
    const local = this.locals.get(onramp);
    const tx = this.underlay.tx;
    if (local === undefined || UDP4_OVERHEAD + zeros + payload.length > tx.maxPacketSize) {
      this.host.counters[EdgeCounter.IpsecSendDrop]++;
      return;
    }
    const k = this.underlay.reserveTx();
    const at = k * tx.slotSize + tx.headroom;
    tx.data.fill(0, at + UDP4_OVERHEAD, at + UDP4_OVERHEAD + zeros);
    tx.data.set(payload, at + UDP4_OVERHEAD + zeros);
    tx.offset[k] = at;
    tx.length[k] = writeUdp4Headers(tx.data, at, parseIpv4(local), remoteAddress >>> 0, localPort, remotePort, zeros + payload.length, this.nextIpId());
    this.underlay.flushTx();
  }

  status(): IpsecStatus {
    return { drops: nonZero(this.drops, ESP_DROP_NAMES), sas: this.table.status() };
  }

  // --- receive --------------------------------------------------------------------------------------------

  receiveUnderlay(batch: PacketBatch, _i: number, j: number, info: PacketInfo, now: number): number {
    const data = batch.data;
    if (info.isFragment) return this.dropIn(EspDrop.OuterFragment, j);
    const end = info.l3Offset + info.ipLength;
    let at = info.l4Offset;
    if (info.protocol !== IPPROTO_ESP) {
      // UDP to a claimed address on 500 or 4500.
      const payload = info.l4Offset + UDP_HEADER;
      const length = end - payload;
      if (info.dstPort === IKE_PORT) {
        this.ike(data, payload, length, info, now);
        return j;
      }
      const kind = classifyUdpEncap(data, payload, length);
      if (kind === UdpEncap.Keepalive) {
        this.host.counters[EdgeCounter.IpsecKeepalive]++;
        return j;
      }
      if (kind === UdpEncap.Ike) {
        this.ike(data, payload + NON_ESP_MARKER, length - NON_ESP_MARKER, info, now);
        return j;
      }
      if (kind === UdpEncap.Malformed) return this.dropIn(EspDrop.Malformed, j);
      at = payload;
    }
    const length = end - at;
    if (length < ESP_HEADER) return this.dropIn(EspDrop.Truncated, j);
    const t = this.table;
    const s = t.inbound(espSpi(data, at));
    if (s === NO_SA) return this.dropIn(EspDrop.UnknownSpi, j);
    if (checkEspLength(t.algIn[s]!, length) !== EspDrop.None) {
      t.otherDrops[s]++;
      return this.dropIn(EspDrop.Truncated, j);
    }
    if (!t.replay[s]!.check(espSeq(data, at))) {
      t.replayDrops[s]++;
      return this.dropIn(EspDrop.Replay, j);
    }
    if (this.inQueue.n === this.inQueue.capacity) this.finishDemuxQueue(batch, now);
    this.inQueue.push(at, length, s, j);
    batch.offset[j] = at;
    batch.length[j] = length;
    batch.ingress[j] = t.onramp[s];
    return j + 1;
  }

  /** The batch's queued ESP packets: opened in one native call, then kept (inner packet) or dropped. */
  finishDemux(batch: PacketBatch, _count: number, now: number): void {
    if (this.inQueue.n > 0) this.finishDemuxQueue(batch, now);
  }

  /** Opens the queued entries; marks failures in the underlay's demuxDrops for the demux to compact. */
  private finishDemuxQueue(batch: PacketBatch, now: number): void {
    const e = this.inQueue;
    const t = this.table;
    const data = batch.data;
    this.crypto.open(data, e);
    for (let k = 0; k < e.n; k++) {
      const j = e.tag[k];
      const s = e.context[k];
      const at = e.offset[k];
      const status = e.status[k];
      let drop = EspDrop.None;
      if (status !== EspStatus.Ok) {
        drop = status === EspStatus.AuthFailed ? EspDrop.IcvFailed : status === EspStatus.BadLength ? EspDrop.Truncated : EspDrop.CryptoFailed;
        if (drop === EspDrop.IcvFailed) t.icvFailures[s]++;
        else t.otherDrops[s]++;
      } else {
        const alg = t.algIn[s]!;
        drop = readEspTrailer(alg, data, at, e.length[k], this.opened);
        if (drop !== EspDrop.None) {
          t.otherDrops[s]++;
        } else if (!t.replay[s]!.update(espSeq(data, at))) {
          // Two copies in one batch: both passed check() before either was accepted.
          drop = EspDrop.Replay;
          t.replayDrops[s]++;
        } else if (!t.admits(s, data, espPayloadOffset(alg, at), this.opened.innerLength)) {
          // Authentic, and its sequence number recorded (RFC 4301 §5.2 step 3), but outside what the SA carries.
          drop = EspDrop.SelectorMismatch;
          t.otherDrops[s]++;
        } else {
          batch.offset[j] = espPayloadOffset(alg, at);
          batch.length[j] = this.opened.innerLength;
          t.inPackets[s]++;
          t.inBytes[s] += e.length[k];
          t.lastInbound[s] = now;
        }
      }
      if (drop !== EspDrop.None) {
        this.underlay.demuxDrops.mark(batch, j);
        this.dropIn(drop, 0);
      }
    }
    e.clear();
  }

  private ike(data: Uint8Array, at: number, length: number, info: PacketInfo, now: number): void {
    this.host.counters[EdgeCounter.IpsecIkeReceived]++;
    const handler = this.ikeHandler;
    if (handler === null || length <= 0) return;
    handler(data.slice(at, at + length), { localAddress: info.addr[DST], localPort: info.dstPort, remoteAddress: info.addr[SRC], remotePort: info.srcPort }, now);
  }

  private dropIn(reason: EspDrop, j: number): number {
    this.drops[reason]++;
    this.host.counters[EdgeCounter.IpsecReceiveDrop]++;
    return j;
  }

  // --- deliver --------------------------------------------------------------------------------------------

  deliver(batch: PacketBatch, i: number, onramp: number, now: number): void {
    const s = this.table.outboundOf(onramp);
    if (s === NO_SA) {
      this.dropOut(this.locals.has(onramp) ? EspDrop.NoSa : EspDrop.NotAdded);
      return;
    }
    // Fits by length: the pipeline inspected (and MSS-clamped) the packet; only an oversize one is looked at again.
    const mtu = this.mtu[onramp];
    if (batch.length[i] > mtu && !this.tunnelMtu.oversize(batch, i, onramp, mtu, this.table.localAddress[s], this, now)) return;
    if (this.outQueue.n === this.outQueue.capacity) this.finishDelivery(batch);
    this.prepare(batch, i, s, this.outQueue);
  }

  /** The batch's queued packets: sealed in one native call, outer headers written, queued for the underlay. */
  finishDelivery(batch: PacketBatch): void {
    const e = this.outQueue;
    if (e.n === 0) return;
    this.crypto.seal(batch.data, e);
    for (let k = 0; k < e.n; k++) {
      const i = e.tag[k];
      if (this.finishSeal(batch, i, e, k)) this.underlay.queue(i);
    }
    e.clear();
  }

  /** Slow path (rare once MSS clamping works): one RFC 791 fragment, sealed on its own from the transmit batch. */
  sendFragment(piece: Uint8Array, onramp: number): void {
    const s = this.table.outboundOf(onramp);
    if (s === NO_SA) return;
    const k = this.underlay.reserveTx();
    const tx = this.underlay.tx;
    const at = k * tx.slotSize + tx.headroom;
    tx.data.set(piece, at);
    tx.offset[k] = at;
    tx.length[k] = piece.length;
    const e = this.oneQueue;
    e.clear();
    if (!this.prepare(tx, k, s, e)) {
      tx.count--;
      return;
    }
    this.crypto.seal(tx.data, e);
    if (!this.finishSeal(tx, k, e, 0)) tx.count--;
    e.clear();
  }

  /** ESP header and trailer around packet i in place, queued in `e` for sealing; false (counted) when it cannot go. */
  private prepare(batch: PacketBatch, i: number, s: number, e: EspEntries): boolean {
    const t = this.table;
    const alg = t.algOut[s]!;
    const data = batch.data;
    const off = batch.offset[i];
    const len = batch.length[i];
    const nextHeader = nextHeaderOf(data, off, len);
    if (nextHeader < 0) return this.dropOut(EspDrop.BadInnerPacket);
    const outer = t.localPort[s] === 0 ? IPV4_MIN_HEADER : UDP4_OVERHEAD;
    const esp = off - ESP_HEADER - alg.ivLength;
    const espLength = espSealedLength(alg, len);
    const floor = ((off / batch.slotSize) | 0) * batch.slotSize;
    if (esp - outer < floor || esp + espLength > floor + batch.slotSize) return this.dropOut(EspDrop.TooBig);
    const seq = t.nextSequence(s);
    if (seq < 0) return this.dropOut(EspDrop.SequenceExhausted);
    writeEspHeader(data, esp, t.spiOut[s], seq);
    writeEspTrailer(data, off + len, espPadding(alg, len), nextHeader);
    e.push(esp, espLength, s, i);
    return true;
  }

  /** After sealing entry k (packet i): the outer IPv4 (+ UDP) header and the descriptor; false (counted) on failure. */
  private finishSeal(batch: PacketBatch, i: number, e: EspEntries, k: number): boolean {
    if (e.status[k] !== EspStatus.Ok) return this.dropOut(EspDrop.CryptoFailed);
    const t = this.table;
    const s = e.context[k];
    const esp = e.offset[k];
    const espLength = e.length[k];
    const data = batch.data;
    let at: number;
    let total: number;
    if (t.localPort[s] === 0) {
      at = esp - IPV4_MIN_HEADER;
      total = IPV4_MIN_HEADER + espLength;
      writeIpv4Header(data, at, total, this.nextIpId(), ORIGINATED_TTL, IPPROTO_ESP, t.localAddress[s], t.remoteAddress[s]);
    } else {
      at = esp - UDP4_OVERHEAD;
      total = writeUdp4Headers(data, at, t.localAddress[s], t.remoteAddress[s], t.localPort[s], t.remotePort[s], espLength, this.nextIpId());
    }
    batch.offset[i] = at;
    batch.length[i] = total;
    t.outPackets[s]++;
    t.outBytes[s] += espLength;
    return true;
  }

  private dropOut(reason: EspDrop): false {
    this.drops[reason]++;
    this.host.counters[EdgeCounter.IpsecSendDrop]++;
    return false;
  }

  private nextIpId(): number {
    this.ipId = (this.ipId + 1) & IP_ID_MASK;
    return this.ipId;
  }

  // --- helpers (control plane) ----------------------------------------------------------------------------

  /** The onramp's local address: its UDP 500/4500 claims and endpoint route; on failure nothing is left behind. */
  private attach(o: IpsecTransportOnramp): void {
    const addr = parseIpv4(o.local);
    if (addr < 0) throw new Error(`onramp ${o.name}: local address ${o.local} is not IPv4`);
    this.claim(addr, o.name);
    try {
      this.underlay.addEndpoint(o.local);
    } catch (e) {
      this.unclaim(addr);
      throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
    }
  }

  /** Undoes attach() for a local address. */
  private detach(local: string): void {
    this.underlay.removeEndpoint(local);
    this.unclaim(parseIpv4(local));
  }

  private claim(addr: number, name: string): void {
    const users = this.claims.get(addr) ?? 0;
    if (users === 0) {
      try {
        this.underlay.claimUdp(addr, IKE_PORT, this);
        try {
          this.underlay.claimUdp(addr, NAT_T_PORT, this);
        } catch (e) {
          this.underlay.releaseUdp(addr, IKE_PORT, this);
          throw e;
        }
      } catch (e) {
        throw new Error(`onramp ${name}: ${(e as Error).message}`);
      }
    }
    this.claims.set(addr, users + 1);
  }

  private unclaim(addr: number): void {
    const users = this.claims.get(addr) ?? 0;
    if (users > 1) {
      this.claims.set(addr, users - 1);
      return;
    }
    this.claims.delete(addr);
    this.underlay.releaseUdp(addr, IKE_PORT, this);
    this.underlay.releaseUdp(addr, NAT_T_PORT, this);
  }

  /** The configured MTU, else the sending SA's (espTunnelMtu over the host's MTU), else the host's MTU. */
  private updateMtu(id: number): void {
    const configured = this.configuredMtu[id];
    if (configured !== NO_MTU) {
      this.mtu[id] = configured;
      return;
    }
    const s = this.table.outboundOf(id);
    const alg: EspAlgorithm | null = s === NO_SA ? null : this.table.algOut[s];
    this.mtu[id] = alg === null ? this.host.mtu : espTunnelMtu(alg, this.host.mtu, this.table.localPort[s] !== 0);
  }
}

function contextKeys(k: EspDirectionKeys): EspContextKeys {
  const alg = espAlgorithm(k.encryption, k.integrity);
  return { cipher: alg.cipher, integ: alg.integ, encryptionKey: k.encryptionKey, integrityKey: k.integrityKey };
}
