/**
 * WireGuard onramps on the underlay: userspace devices (one listen address:port each) and their peers (one
 * onramp each), the glue around the engine: the under-load signal, the timers, the outer IPv4/UDP headers.
 *
 *   underlay, UDP to a device's address:port ─┬ type 4: device.prepareOpen (index, expiry, replay pre-check) ─ queued
 *                                             │   ─ finishDemux: one native open per device per batch, in place
 *                                             │   ─ device.finishOpen (replay window, timers) ─ inner packet ─► pipeline
 *                                             └ handshakes: device.receive ─ 'send' → handshake datagrams ─► underlay
 *   next hop = a WireGuard onramp ─ length ≤ MTU ─ device.prepareSeal (header, padding, counter) ─ queued
 *              │   ─ finishDelivery: one native seal per device per batch, in place ─ IPv4/UDP headers ─► underlay
 *              │   (no session yet, or no room in the slot: device.send, a datagram of its own ─► underlay)
 *              (else inspected once, tunnel-mtu.ts: ├ no DF: RFC 791 fragments, each encrypted ─► underlay
 *               the same policy as GRE's)            └ DF / IPv6: ICMP too-big back through the pipeline
 *   timers: one setTimeout for every device, at the earliest nextDeadline() ─ poll ─► underlay
 *
 * Crypto: each device's transport keys live in the addon (src/io/wg-crypto.ts, native/src/wireguard.cc), handed to
 * the engine as its WgAead; the batch's messages are sealed and opened where they lie in the batch, the way
 * IPsec's ESP is (ipsec.ts).
 *
 * The tunnel MTU (wireguard.mtu, default 1420) bounds the inner packet: the pipeline clamps TCP MSS to it both
 * ways (OnrampSpec.mtu), and a longer packet is never encrypted whole, because its datagram (inner + padding to 16 +
 * 32 + 28 bytes, DF set: underlay-packets.ts) would be dropped by the first underlay link it does not fit, silently.
 * The too-big error comes from the device's listen address (the address the last datagram arrived at, for a
 * wildcard device): an address the edge owns, routable where the senders on the Internet are, as GRE's comes from
 * its tunnel's local endpoint; an IPv6 packet's from the onramp's IPv6 health_check.source (the listen address is
 * IPv4), and none without one (counted in wg_too_big only).
 *
 * Owns: its devices, their UDP claims and listen addresses (routed into the underlay), the peer ↔ onramp maps.
 * Removing an onramp removes its peer from the engine at once (removePeer: sessions, index entries and keys
 * gone); changing one changes the peer in place (updatePeer: a new public or preshared key revokes its
 * sessions, new allowed IPs apply to the next packet). From then on the old peer's datagrams are dropped by the
 * engine as Revoked and counted here as WgPeerRemoved. Re-adding a removed key makes a new peer with the
 * settings it is added with.
 *
 * Time: the engine's timers (rekey, reject, keepalive, cookie, rate limit) and the under-load window run on the
 * monotonic clock (performance.now(), the pipeline's); the engine reads the wall clock (Date.now) only to build
 * an initiation's TAI64N timestamp (whitepaper §5.4.2), so a wall-clock step changes no timer.
 */
import { performance } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { parseIpv4 } from '../../wire/addr.js';
import { MAX_ONRAMP_ID } from '../../common/ids.js';
import type { PacketBatch } from '../../common/packet-batch.js';
import type { WireGuardDeviceConfig, WireGuardOnrampConfig } from '../../config/index.js';
import type { EdgeStatus } from '../../control/metrics.js';
import type { TunDevice } from '../../io/tun.js';
import { WgCrypto } from '../../io/wg-crypto.js';
import { CryptoEntries, CryptoStatus, WG_KEY_SLOTS, sealedLength } from '../../onramp/wireguard/aead.js';
import { DATA_HEADER_LEN, MSG_TRANSPORT } from '../../onramp/wireguard/constants.js';
import { WG_DROP_NAMES, WgDrop, WireGuardDevice, keyFromBase64, type Outgoing, type WireGuardPeerChange } from '../../onramp/wireguard/index.js';
import { AF_INET4, UDP_HEADER } from '../../wire/constants.js';
import { UdpEndpoint } from '../../wire/endpoint.js';
import { DST, SRC, type PacketInfo } from '../../wire/packet-info.js';
import { UDP4_OVERHEAD, writeUdp4Headers } from '../underlay-packets.js';
import { EdgeCounter, nonZero } from './counters.js';
import type { DeliveryFinisher, OnrampTransport, TransportHost } from './transport.js';
import { TunnelMtu, type TunnelFragmentSink } from './tunnel-mtu.js';
import type { DemuxFinisher, Underlay, UnderlayReceiver } from './underlay.js';

const PORT_SPACE = MAX_ONRAMP_ID + 1;
/** WireGuard message type 1, handshake initiation (whitepaper section 5.4.2). */
const WG_MESSAGE_INITIATION = 1;
/** Initiations per second above which a device is under load (wireguard-go: a queue of 128). */
const HANDSHAKES_UNDER_LOAD = 128;
const WG_LOAD_WINDOW_MS = 1000;
/** setTimeout's largest delay (a signed 32-bit millisecond count). */
const MAX_TIMER_MS = 0x7fffffff;
const NOT_A_NUMBER_ADDR = -1;
/** peerOnramp value of a peer index that serves no onramp (removed from the engine). */
const NO_ONRAMP = -1;
/** Transport messages queued per device and direction before a native call (more in one batch: a call each 1024). */
const CRYPTO_QUEUE = 1024;

type WireGuardStatus = EdgeStatus['wireguard'][number];

/** One device: its engine, where it listens, and which onramp each of its peers is. */
class WgDev implements UnderlayReceiver {
  /** Wildcard devices: the local address the last datagram arrived at. */
  lastLocal = 0;
  /** Peer index → onramp id (NO_ONRAMP: removed). */
  readonly peerOnramp: number[] = [];
  ipId = 0;
  /** Handshake initiations received in the current one-second window, and when that window started (monotonic ms). */
  initiations = 0;
  windowStart = 0;
  /** Received transport messages awaiting the batch's open (tag: the descriptor index), and each one's source. */
  readonly inQueue = new CryptoEntries(CRYPTO_QUEUE);
  readonly inSrcAddr = new Uint32Array(CRYPTO_QUEUE);
  readonly inSrcPort = new Uint16Array(CRYPTO_QUEUE);
  /** Delivered packets awaiting the batch's seal (tag: the batch index), and where each goes. */
  readonly outQueue = new CryptoEntries(CRYPTO_QUEUE);
  readonly outEndpoint: Array<UdpEndpoint | null> = new Array<UdpEndpoint | null>(CRYPTO_QUEUE).fill(null);

  constructor(
    private readonly transport: WireGuardTransport,
    readonly name: string,
    readonly device: WireGuardDevice,
    /** The device's transport keys and batched AEAD (also handed to the engine as its WgAead). */
    readonly crypto: WgCrypto,
    /** Listen address as a number; 0 = wildcard (answer from the address the peer wrote to). */
    readonly localAddr: number,
    readonly listenAddress: string,
    readonly port: number,
  ) {}

  receiveUnderlay(batch: PacketBatch, i: number, j: number, info: PacketInfo, now: number): number {
    return this.transport.receiveWireGuard(batch, i, j, this, info, now);
  }
}

function readSecret(path: string, what: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new Error(`${what}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const key = keyFromBase64(text);
  if (key === null) throw new Error(`${what}: ${path} does not hold a base64 32-byte key`);
  return key;
}

/** "addr:port" or "[v6]:port" → the engine's endpoint; absent or unparsable: none. */
function endpointOf(text: string | undefined): { addr: string; port: number } | null {
  const m = text === undefined ? null : /^\[?([^\]]+?)\]?:(\d+)$/.exec(text);
  return m ? { addr: m[1], port: Number(m[2]) } : null;
}

function inlineKey(text: string, what: string): Uint8Array {
  const key = keyFromBase64(text);
  if (key === null) throw new Error(`${what}: not a base64 32-byte key`);
  return key;
}

export class WireGuardTransport implements OnrampTransport<WireGuardOnrampConfig>, TunnelFragmentSink, DemuxFinisher, DeliveryFinisher {
  readonly type = 'wireguard';
  private devices: WgDev[] = [];
  /** Per port: the device and peer index that deliver it. */
  private readonly portDevice = new Array<WgDev | null>(PORT_SPACE).fill(null);
  private readonly portPeer = new Int32Array(PORT_SPACE).fill(-1);
  /** Per port: its tunnel MTU (wireguard.mtu), the largest inner packet encrypted whole. */
  private readonly portMtu = new Uint16Array(PORT_SPACE);
  private readonly tunnelMtu: TunnelMtu;
  /** Per port: the settings its peer was added with (a change the engine cannot make is refused). */
  private readonly portConfig = new Map<number, WireGuardOnrampConfig['wireguard']>();
  /** The current datagram's source, lent to the device for one receive(). */
  private readonly source = new UdpEndpoint();
  /** Datagrams the engine asks for while a packet is prepared (a rekey initiation), sent right after. */
  private readonly sideOut: Outgoing[] = [];
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  /**
   * Set by every call that can move a device's timers (each device call below but the read-only ones): while it
   * is clear, nextDeadline() would give what the last scheduleTimers saw, so the per-batch call returns at once
   * (a batch that never touched WireGuard — the interconnect's — costs no walk over the peers).
   */
  private timersDirty = true;
  private opened = false;

  constructor(private readonly host: TransportHost, private readonly underlay: Underlay) {
    this.tunnelMtu = new TunnelMtu(host, {
      tooBig: EdgeCounter.WgTooBig,
      fragmented: EdgeCounter.WgFragmented,
      reported: EdgeCounter.WgTooBigReported,
      dropped: EdgeCounter.WgSendDrop,
    });
  }

  // --- lifecycle ------------------------------------------------------------------------------------------

  /** Claims every device's address:port on the underlay and sends the persistent keepalives. */
  open(): void {
    if (this.opened) return;
    const done: WgDev[] = [];
    try {
      for (const d of this.devices) {
        this.claim(d);
        done.push(d);
      }
    } catch (e) {
      for (const d of done) this.release(d);
      throw e;
    }
    this.underlay.addFinisher(this);
    this.host.outputs.addFinisher(this);
    this.opened = true;
    const now = performance.now();
    this.timersDirty = true;
    for (const d of this.devices) this.sendDatagrams(d, d.device.start(now));
    this.underlay.flushTx();
    this.scheduleTimers();
  }

  close(): void {
    if (!this.opened) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    for (const d of this.devices) this.release(d);
    this.underlay.removeFinisher(this);
    this.host.outputs.removeFinisher(this);
    for (const d of this.devices) {
      d.inQueue.clear();
      d.outQueue.clear();
    }
    this.opened = false;
  }

  tuns(): TunDevice[] {
    return [];
  }

  routes(): string[] {
    return [];
  }

  private claim(d: WgDev): void {
    this.underlay.claimUdp(d.localAddr, d.port, d);
    try {
      if (d.localAddr !== 0) this.underlay.addEndpoint(d.listenAddress);
    } catch (e) {
      this.underlay.releaseUdp(d.localAddr, d.port, d);
      throw e;
    }
  }

  private release(d: WgDev): void {
    this.underlay.releaseUdp(d.localAddr, d.port, d);
    if (d.localAddr !== 0) this.underlay.removeEndpoint(d.listenAddress);
  }

  // --- devices --------------------------------------------------------------------------------------------

  /** A device (live: its address:port is claimed and routed at once). Throws naming the device. */
  addDevice(d: WireGuardDeviceConfig, what = `wireguard device ${d.name}`): void {
    if (this.devices.some((x) => x.name === d.name)) throw new Error(`${what}: exists already`);
    const privateKey = d.private_key_file !== undefined ? readSecret(d.private_key_file, what) : inlineKey(d.private_key ?? '', what);
    const wildcard = d.listen_address === '0.0.0.0' || d.listen_address === '::';
    const local = wildcard ? 0 : parseIpv4(d.listen_address);
    if (local < 0) throw new Error(`${what}: IPv6 listen addresses are not supported by the underlay yet`);
    if (wildcard) this.host.log.warn({ device: d.name }, 'wireguard device listens on every address: route an underlay address to the underlay TUN yourself');
    // Allowed IPs are checked by the pipeline on the packet it inspects anyway (the onramp spec's allowedSources,
    // which toOnrampSpec fills from the peer's allowed_ips): the device need not parse the plaintext again.
    const crypto = new WgCrypto(WG_KEY_SLOTS);
    const engine = new WireGuardDevice({ privateKey, checkSources: false, wallClock: Date.now, aead: crypto });
    const dev = new WgDev(this, d.name, engine, crypto, local, d.listen_address, d.listen_port);
    if (this.opened) this.claim(dev);
    this.devices = [...this.devices, dev];
  }

  /** Removes a device that no onramp uses any more. */
  removeDevice(name: string): void {
    const dev = this.devices.find((d) => d.name === name);
    if (dev === undefined) throw new Error(`wireguard device ${name}: no such device`);
    if (dev.peerOnramp.some((o) => o !== NO_ONRAMP)) throw new Error(`wireguard device ${name}: onramps still use it`);
    if (this.opened) this.release(dev);
    this.devices = this.devices.filter((d) => d !== dev);
  }

  // --- onramps (peers) ------------------------------------------------------------------------------------

  add(o: WireGuardOnrampConfig, id: number): void {
    const w = o.wireguard;
    const what = `onramp ${o.name}`;
    if (this.portDevice[id] !== null) throw new Error(`${what}: WireGuard onramp ${id} exists already`);
    const dev = this.devices.find((d) => d.name === w.device);
    if (dev === undefined) throw new Error(`onramp ${o.name}: no wireguard device ${w.device}`);
    const publicKey = inlineKey(w.public_key, `${what} public_key`);
    const other = dev.device.findPeer(publicKey);
    if (other >= 0) throw new Error(`${what}: public key already used by onramp ${dev.peerOnramp[other]}`);
    this.timersDirty = true;
    const peer = dev.device.addPeer({
      publicKey,
      presharedKey: this.presharedKey(o),
      allowedIps: w.allowed_ips,
      endpoint: endpointOf(w.endpoint),
      persistentKeepalive: w.persistent_keepalive,
    });
    dev.peerOnramp[peer] = id;
    this.portDevice[id] = dev;
    this.portPeer[id] = peer;
    this.portConfig.set(id, w);
    this.portMtu[id] = w.mtu;
    this.host.delivery.set(id, this);
  }

  /**
   * A new device moves the onramp: its old peer is removed and a new one added there. Anything else (public
   * key, preshared key, allowed IPs, endpoint, keepalive) changes the peer in place; a new public or preshared
   * key revokes its sessions at once. Throws naming the onramp, with nothing changed, when it cannot be made.
   */
  update(o: WireGuardOnrampConfig, id: number): void {
    const had = this.portConfig.get(id);
    const dev = this.portDevice[id];
    if (had === undefined || dev === null) throw new Error(`onramp ${o.name}: no WireGuard onramp ${id}`);
    const w = o.wireguard;
    if (had.device !== w.device) {
      const target = this.devices.find((d) => d.name === w.device);
      if (target === undefined) throw new Error(`onramp ${o.name}: no wireguard device ${w.device}`);
      const key = inlineKey(w.public_key, `onramp ${o.name} public_key`);
      if (target.device.findPeer(key) >= 0) throw new Error(`onramp ${o.name}: public key already used by onramp ${target.peerOnramp[target.device.findPeer(key)]}`);
      this.presharedKey(o); // a key file that cannot be read refuses the change before the old peer goes
      this.remove(id);
      try {
        this.add(o, id);
      } catch (e) {
        this.add({ ...o, wireguard: had }, id);
        throw e;
      }
      return;
    }
    const change: WireGuardPeerChange = {};
    if (had.public_key !== w.public_key) change.publicKey = inlineKey(w.public_key, `onramp ${o.name} public_key`);
    // A key file is read again on every change: its content may have changed under the same path.
    if (had.preshared_key !== w.preshared_key || had.preshared_key_file !== undefined || w.preshared_key_file !== undefined) change.presharedKey = this.presharedKey(o);
    if (had.allowed_ips.join() !== w.allowed_ips.join()) change.allowedIps = w.allowed_ips;
    if (had.endpoint !== w.endpoint) change.endpoint = endpointOf(w.endpoint);
    if (had.persistent_keepalive !== w.persistent_keepalive) change.persistentKeepalive = w.persistent_keepalive;
    let out: Outgoing[];
    try {
      this.timersDirty = true;
      out = dev.device.updatePeer(this.portPeer[id], change, performance.now());
    } catch (e) {
      throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
    }
    this.portConfig.set(id, w);
    this.portMtu[id] = w.mtu;
    if (this.opened) this.flush(dev, out);
  }

  /** Removes the onramp's peer from its device: from now on its datagrams are dropped and counted, nothing goes to it. */
  remove(id: number): void {
    const dev = this.portDevice[id];
    if (dev === null) return;
    this.host.delivery.clear(id, this);
    const peer = this.portPeer[id];
    this.timersDirty = true;
    dev.device.removePeer(peer);
    dev.peerOnramp[peer] = NO_ONRAMP;
    this.portDevice[id] = null;
    this.portPeer[id] = -1;
    this.portConfig.delete(id);
    this.portMtu[id] = 0;
  }

  /** The onramp's peer's last completed handshake (Unix ms, -Infinity when none); undefined when it is not a WireGuard onramp. */
  lastHandshakeAt(id: number): number | undefined {
    const dev = this.portDevice[id];
    if (dev === null) return undefined;
    return dev.device.peerStatus(this.portPeer[id])?.lastHandshakeAt ?? -Infinity;
  }

  private presharedKey(o: WireGuardOnrampConfig): Uint8Array | null {
    const w = o.wireguard;
    if (w.preshared_key_file !== undefined) return readSecret(w.preshared_key_file, `onramp ${o.name}`);
    return w.preshared_key !== undefined ? inlineKey(w.preshared_key, `onramp ${o.name} preshared_key`) : null;
  }

  private flush(dev: WgDev, out: Outgoing[]): void {
    if (out.length === 0) return;
    this.sendDatagrams(dev, out);
    this.underlay.flushTx();
    this.scheduleTimers();
  }

  status(): WireGuardStatus[] {
    return this.devices.map((d) => ({
      device: d.name,
      drops: nonZero(d.device.drops, WG_DROP_NAMES),
      peers: d.peerOnramp.flatMap((onramp, peer) => {
        if (onramp === NO_ONRAMP) return [];
        const s = d.device.peerStatus(peer);
        return [{ onramp, hasSession: s?.hasSession ?? false, endpoint: s?.endpoint ? `${s.endpoint.addr}:${s.endpoint.port}` : null }];
      }),
    }));
  }

  // --- receive --------------------------------------------------------------------------------------------

  /**
   * "Under load" (whitepaper section 5.3): wireguard-go answers initiations with cookie replies
   * (and then rate-limits by source) while its handshake queue holds more than 128 entries. We
   * process handshakes inline, so the equivalent signal is their rate: more than
   * HANDSHAKES_UNDER_LOAD initiations in one second puts the device under load until a second
   * passes below that rate.
   */
  private noteInitiation(dev: WgDev, now: number): void {
    if (now - dev.windowStart >= WG_LOAD_WINDOW_MS) {
      dev.device.underLoad = dev.initiations > HANDSHAKES_UNDER_LOAD;
      dev.windowStart = now;
      dev.initiations = 0;
    }
    if (++dev.initiations > HANDSHAKES_UNDER_LOAD) dev.device.underLoad = true;
  }

  /**
   * One WireGuard datagram (packet i); returns the next free descriptor index. A transport message is checked by
   * the engine and queued (descriptor j kept, finishDemux opens it or drops it); a handshake is handled at once.
   */
  receiveWireGuard(batch: PacketBatch, _i: number, j: number, dev: WgDev, info: PacketInfo, now: number): number {
    const start = info.l4Offset + UDP_HEADER;
    const end = info.l3Offset + info.ipLength;
    const data = batch.data;
    if (dev.localAddr === 0) dev.lastLocal = info.addr[DST];
    if (data[start] === MSG_TRANSPORT) {
      const length = end - start;
      this.timersDirty = true;
      const slot = dev.device.prepareOpen(data, start, length, now);
      if (slot < 0) {
        this.countReceiveDrop(-slot);
        return j;
      }
      const e = dev.inQueue;
      if (e.n === e.capacity) this.openQueued(dev, batch, now);
      dev.inSrcAddr[e.n] = info.addr[SRC];
      dev.inSrcPort[e.n] = info.srcPort;
      e.push(start, length, slot, j);
      batch.offset[j] = start;
      batch.length[j] = length;
      return j + 1;
    }
    if (data[start] === WG_MESSAGE_INITIATION) this.noteInitiation(dev, now);
    // Handshakes: the engine takes a view (an allocation it forces) and the source as numbers.
    this.timersDirty = true;
    const r = dev.device.receive(data.subarray(start, end), this.source.set4(info.addr[SRC], info.srcPort), now);
    if (r.datagrams.length > 0) this.sendDatagrams(dev, r.datagrams);
    if (r.kind === 'drop') this.countReceiveDrop(r.reason);
    return j;
  }

  /** A removed or re-keyed peer (Revoked): nothing it sends is delivered or answered, counted apart. */
  private countReceiveDrop(reason: WgDrop): void {
    this.host.counters[reason === WgDrop.Revoked ? EdgeCounter.WgPeerRemoved : EdgeCounter.WgReceiveDrop]++;
  }

  /** The batch's queued transport messages: opened in one native call per device, then kept (inner packet) or dropped. */
  finishDemux(batch: PacketBatch, _count: number, now: number): void {
    const devices = this.devices;
    for (let d = 0; d < devices.length; d++) if (devices[d].inQueue.n > 0) this.openQueued(devices[d], batch, now);
  }

  /** Opens a device's queued messages in place; each then goes through the engine's finishOpen (failures: the underlay's demuxDrops). */
  private openQueued(dev: WgDev, batch: PacketBatch, now: number): void {
    const e = dev.inQueue;
    const data = batch.data;
    dev.crypto.open(data, e);
    for (let k = 0; k < e.n; k++) {
      const j = e.tag[k];
      this.timersDirty = true;
      const r = dev.device.finishOpen(data, e.offset[k], e.length[k], e.status[k], this.source.set4(dev.inSrcAddr[k], dev.inSrcPort[k]), now);
      if (r.datagrams.length > 0) this.sendDatagrams(dev, r.datagrams);
      if (r.kind === 'data') {
        batch.offset[j] = r.packetOffset;
        batch.length[j] = r.packetLength;
        batch.ingress[j] = dev.peerOnramp[r.peer];
        continue;
      }
      this.underlay.demuxDrops.mark(batch, j);
      if (r.kind === 'drop') this.countReceiveDrop(r.reason);
    }
    e.clear();
  }

  // --- deliver --------------------------------------------------------------------------------------------

  deliver(batch: PacketBatch, i: number, port: number, now: number): void {
    const dev = this.portDevice[port];
    if (dev === null) return;
    // Fits by length: the pipeline inspected (and MSS-clamped) the packet; only an oversize one is looked at again.
    const mtu = this.portMtu[port];
    if (batch.length[i] > mtu && !this.tunnelMtu.oversize(batch, i, port, mtu, dev.localAddr !== 0 ? dev.localAddr : dev.lastLocal, this, now)) return;
    const off = batch.offset[i];
    const len = batch.length[i];
    // In place when the slot has room for the outer headers before and the padding and tag after.
    const floor = ((off / batch.slotSize) | 0) * batch.slotSize;
    const message = off - DATA_HEADER_LEN;
    if (message - UDP4_OVERHEAD >= floor && message + sealedLength(len) <= floor + batch.slotSize) {
      const side = this.sideOut;
      this.timersDirty = true;
      const slot = dev.device.prepareSeal(this.portPeer[port], batch.data, off, len, now, side);
      if (side.length > 0) {
        this.sendDatagrams(dev, side);
        side.length = 0;
      }
      if (slot >= 0) {
        const e = dev.outQueue;
        if (e.n === e.capacity) this.sealQueued(dev, batch);
        dev.outEndpoint[e.n] = dev.device.sealTicket.endpoint;
        e.push(message, dev.device.sealTicket.length, slot, i);
        return;
      }
    }
    this.timersDirty = true;
    this.sendDatagrams(dev, dev.device.send(this.portPeer[port], batch.data.subarray(off, off + len), now));
  }

  /** The batch's queued packets: sealed in one native call per device, outer headers written, queued for the underlay. */
  finishDelivery(batch: PacketBatch): void {
    const devices = this.devices;
    for (let d = 0; d < devices.length; d++) if (devices[d].outQueue.n > 0) this.sealQueued(devices[d], batch);
  }

  private sealQueued(dev: WgDev, batch: PacketBatch): void {
    const e = dev.outQueue;
    const data = batch.data;
    dev.crypto.seal(data, e);
    const src = dev.localAddr !== 0 ? dev.localAddr : dev.lastLocal;
    for (let k = 0; k < e.n; k++) {
      const to = dev.outEndpoint[k];
      dev.outEndpoint[k] = null;
      if (e.status[k] !== CryptoStatus.Ok) {
        this.host.counters[EdgeCounter.WgSendDrop]++;
        continue;
      }
      if (to === null || to.family !== AF_INET4 || src === 0) {
        this.host.counters[EdgeCounter.WgUnsendable]++;
        continue;
      }
      const i = e.tag[k];
      const at = e.offset[k] - UDP4_OVERHEAD;
      dev.ipId = (dev.ipId + 1) & 0xffff;
      batch.offset[i] = at;
      batch.length[i] = writeUdp4Headers(data, at, src, to.addr[0], dev.port, to.port, e.length[k], dev.ipId);
      this.underlay.queue(i);
    }
    e.clear();
  }

  /** Slow path (rare once MSS clamping works): one RFC 791 fragment of an oversize packet, encrypted on its own. */
  sendFragment(piece: Uint8Array, port: number, now: number): void {
    const dev = this.portDevice[port];
    this.timersDirty = true;
    if (dev !== null) this.sendDatagrams(dev, dev.device.send(this.portPeer[port], piece, now));
  }

  /** WireGuard datagrams → IPv4/UDP from the device's address and port, into the transmit batch. */
  private sendDatagrams(dev: WgDev, list: Outgoing[]): void {
    for (let q = 0; q < list.length; q++) {
      const o = list[q];
      const to = o.endpoint;
      const dst = to.family === AF_INET4 ? to.addr[0] : NOT_A_NUMBER_ADDR;
      const src = dev.localAddr !== 0 ? dev.localAddr : dev.lastLocal;
      const tx = this.underlay.tx;
      if (dst < 0 || src === 0 || o.data.length + UDP4_OVERHEAD > tx.slotSize - tx.headroom) {
        this.host.counters[EdgeCounter.WgUnsendable]++;
        continue;
      }
      const k = this.underlay.reserveTx();
      const at = k * tx.slotSize + tx.headroom;
      tx.data.set(o.data, at + UDP4_OVERHEAD);
      dev.ipId = (dev.ipId + 1) & 0xffff;
      tx.offset[k] = at;
      tx.length[k] = writeUdp4Headers(tx.data, at, src, dst, dev.port, to.port, o.data.length, dev.ipId);
    }
  }

  // --- timers ---------------------------------------------------------------------------------------------

  /** One setTimeout for every device, at the earliest nextDeadline(). Called after every batch. */
  scheduleTimers(): void {
    if (!this.timersDirty) return; // no device call since the last schedule: the same deadline, already handled
    const devices = this.devices;
    if (devices.length === 0) return;
    if (!this.opened || !this.host.isRunning()) return; // stays dirty: scheduled once running
    this.timersDirty = false;
    let at = Infinity;
    for (let k = 0; k < devices.length; k++) at = Math.min(at, devices[k].device.nextDeadline());
    if (at >= this.timerAt) return; // the pending timer fires first and reschedules
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (at === Infinity) return;
    // +1 ms: a timer may fire a little early by the monotonic clock; poll() then finds nothing due.
    this.timer = setTimeout(this.onTimer, Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now()) + 1));
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    if (!this.opened || !this.host.isRunning()) return;
    const now = performance.now();
    this.timersDirty = true;
    for (const d of this.devices) this.sendDatagrams(d, d.device.poll(now));
    this.underlay.flushTx();
    this.scheduleTimers();
  };
}
