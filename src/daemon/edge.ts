/**
 * The edge: tether's data plane on real interfaces (docs/UNDERLAY.md; helper-notes/EDGE-CONTRACT.md).
 *
 *   tt-underlay ─ read batch ─ per packet: inspect outer ─┬ GRE ─────── GreOnramp.receive ─ inner (in place) ─┐
 *   (endpoints routed here)                               ├ UDP to a WireGuard listen addr:port ─ receive ─┐  │
 *                                                         │      'data' → inner copied into the slot ──────┼──┤
 *                                                         │      'send' → handshake datagrams ─► underlay  │  │
 *                                                         ├ ICMP echo to an endpoint ─ reply in place ─► underlay
 *                                                         └ anything else ─ counted drop                      │
 *   <egress>  ─ read batch, tagged PORT_INTERNET ─────────────────────────────────────────────────────────────┤
 *   tt-ic-<n> ─ read batch, tagged onramp n ──────────────────────────────────────────────────────────────────┤
 *                                                                                                              ▼
 *                                                 pipeline.process(batch, monotonic now) ─ deliver by nextHop:
 *     PORT_INTERNET ─► <egress> │ interconnect n ─► tt-ic-<n> │ GRE ─► MTU by length, encapsulate in place ─► underlay
 *     WireGuard peer ─► device.send ─► datagrams ─► IPv4/UDP from the device's address:port ─► underlay
 *
 * The read batch itself is the pipeline's input: underlay packets are compacted in place (each packet's
 * descriptor moved to the next free index, its offset pointing at the inner packet), so GRE and the plain TUNs
 * copy nothing; a WireGuard packet's plaintext (a buffer of the engine's) is copied into its own slot.
 * Outputs are written with one writeIndices() per TUN per batch. Built packets (WireGuard datagrams, GRE
 * fragments) go through one small transmit batch, flushed at the end of each batch.
 *
 * Time: the pipeline runs on a monotonic clock (performance.now()); WireGuard on Unix-epoch ms (Date.now()),
 * because its initiations carry a TAI64N timestamp a peer compares with the last it saw (whitepaper §5.1).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseIpv4 } from '../common/addr.js';
import { Drop, DROP_REASON_NAMES } from '../common/drop-reasons.js';
import { MAX_ONRAMP_ID, NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import { PacketBatch } from '../common/packet-batch.js';
import { assignIds, redact, toPipelineConfig, type ConfigIds, type TetherConfig } from '../control/config.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { hugePageAllocator } from '../io/memory.js';
import { openTun, type TunDevice } from '../io/tun.js';
import {
  GRE_DROP_NAMES,
  GRE_RECEIVE_REFLECT,
  GreOnramp,
  IPPROTO_GRE,
  MtuVerdict,
  buildPacketTooBig,
  fragmentForTunnel,
  tunnelMtuVerdict,
} from '../onramp/gre/index.js';
import { WG_DROP_NAMES, WireGuardDevice, keyFromBase64, type Outgoing } from '../onramp/wireguard/index.js';
import { AF_INET4, ICMP4_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_UDP, UDP_HEADER } from '../wire/constants.js';
import { UdpEndpoint } from '../wire/endpoint.js';
import { inspect } from '../wire/inspect.js';
import { DST, PacketInfo, SRC } from '../wire/packet-info.js';
import {
  DEFAULT_UNDERLAY_NAME,
  applyPlan,
  disableRpFilter,
  interconnectTunName,
  planNetwork,
  removeStaleRules,
  tunNames,
  undoPlan,
  type NetworkSpec,
} from './network.js';
import { UDP4_OVERHEAD, echoReplyInPlace, writeUdp4Headers } from './underlay-packets.js';

/** What the edge needs of a logger (pino's Logger fits). */
export interface EdgeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  isLevelEnabled?(level: string): boolean;
}

export interface EdgeOptions {
  config: TetherConfig;
  log: EdgeLogger;
  /** Name of the underlay TUN (default tt-underlay). */
  underlayName?: string;
  /** MTU of every TUN the edge creates (default 1500). */
  mtu?: number;
  /** Packets per read batch (default 128). */
  batchSize?: number;
  /** Flow tables on huge pages (default true). */
  hugePages?: boolean;
  /** How often the counters are logged at debug level, ms (default 10 000; 0 = never). */
  countersIntervalMs?: number;
}

/** Edge-level counters (the engines keep their own: pipeline, GRE, WireGuard). */
export const enum EdgeCounter {
  /** Underlay packets that are not valid IP (inspect failed on the outer header). */
  UnderlayMalformed = 0,
  /** Underlay packets for no endpoint we serve (protocol, address or port). */
  UnderlayNotForUs = 1,
  /** GRE packets GreOnramp refused (reasons in the GRE drops). */
  GreReceiveDrop = 2,
  /** GRE keepalives reflected to their sender. */
  GreReflected = 3,
  /** WireGuard datagrams the device refused (reasons in its drops). */
  WgReceiveDrop = 4,
  /** WireGuard inner packets bigger than a batch slot. */
  WgInnerTooBig = 5,
  /** WireGuard datagrams we could not send: IPv6 peer endpoint, or a wildcard device with no local address yet. */
  WgUnsendable = 6,
  /** Echo requests to an endpoint address, answered. */
  EchoReplied = 7,
  /** Packets for a GRE tunnel that exceed its MTU with DF set (dropped; an ICMP error goes back, see GreTooBigReported). */
  GreTooBig = 8,
  /** IPv4 packets without DF fragmented to fit a GRE tunnel (counted per original packet). */
  GreFragmented = 9,
  /** Packets GreOnramp.send refused. */
  GreSendDrop = 10,
  /** Forwarded packets whose next hop has no delivery here (should stay 0). */
  NoDelivery = 11,
  /** ICMP fragmentation-needed / packet-too-big sent back for packets too big for a GRE tunnel. */
  GreTooBigReported = 12,
}
export const EDGE_COUNTER_NAMES: readonly string[] = [
  'underlay_malformed',
  'underlay_not_for_us',
  'gre_receive_drop',
  'gre_reflected',
  'wg_receive_drop',
  'wg_inner_too_big',
  'wg_unsendable',
  'echo_replied',
  'gre_too_big',
  'gre_fragmented',
  'gre_send_drop',
  'no_delivery',
  'gre_too_big_reported',
];

const PORT_SPACE = MAX_ONRAMP_ID + 1;
/** WireGuard message type 1, handshake initiation (whitepaper section 5.4.2). */
const WG_MESSAGE_INITIATION = 1;
/** Initiations per second above which a device is under load (wireguard-go: a queue of 128). */
const HANDSHAKES_UNDER_LOAD = 128;
const WG_LOAD_WINDOW_MS = 1000;
/** ICMP errors originated per received batch, at most (RFC 1812 section 4.3.2.8: rate-limit them). */
const FEEDBACK_CAPACITY = 32;
/** portKind: 0 = no delivery; 1 = written into a TUN (the egress, an interconnect). */
const KIND_TUN = 1;
const KIND_GRE = 2;
const KIND_WIREGUARD = 3;

const DEFAULT_BATCH = 128;
const DEFAULT_MTU = 1500;
const EXPIRE_INTERVAL_MS = 1000;
const DEFAULT_COUNTERS_INTERVAL_MS = 10_000;
/** setTimeout's largest delay (a signed 32-bit millisecond count). */
const MAX_TIMER_MS = 0x7fffffff;
const UNDERLAY_OUT = 0;
const NOT_A_NUMBER_ADDR = -1;

interface WgDev {
  name: string;
  device: WireGuardDevice;
  /** Listen address as a number; 0 = wildcard (answer from the address the peer wrote to). */
  localAddr: number;
  port: number;
  /** Wildcard devices: the local address the last datagram arrived at. */
  lastLocal: number;
  /** Peer index → onramp id. */
  peerOnramp: number[];
  ipId: number;
  /** Handshake initiations received in the current one-second window, and when that window started (wall ms). */
  initiations: number;
  windowStart: number;
}

/** One TUN the edge writes, with the indices of the current batch's packets headed there. */
interface Output {
  tun: TunDevice;
  idx: Uint32Array;
  n: number;
}

export interface EdgeStatus {
  tuns: Array<{ name: string; packetsIn: number; packetsOut: number; dropsBusy: number }>;
  edge: Record<string, number>;
  pipelineDrops: Record<string, number>;
  greDrops: Record<string, number>;
  wireguard: Array<{ device: string; drops: Record<string, number>; peers: Array<{ onramp: number; hasSession: boolean; endpoint: string | null }> }>;
  flows: { ipv4: number; ipv6: number };
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

function inlineKey(text: string, what: string): Uint8Array {
  const key = keyFromBase64(text);
  if (key === null) throw new Error(`${what}: not a base64 32-byte key`);
  return key;
}

function nonZero(values: ArrayLike<number>, names: Readonly<Record<number, string>> | readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) out[(names as Record<number, string>)[i] ?? String(i)] = values[i];
  return out;
}

export class Edge {
  readonly config: TetherConfig;
  readonly ids: ConfigIds;
  readonly pipeline: Pipeline;
  readonly gre = new GreOnramp();
  readonly counters = new Float64Array(EDGE_COUNTER_NAMES.length);
  readonly network: NetworkSpec;
  private readonly log: EdgeLogger;
  private readonly wg: WgDev[] = [];
  private readonly batchSize: number;
  private readonly countersIntervalMs: number;

  // Per port (onramp id or PORT_INTERNET): how to deliver.
  private readonly portKind = new Uint8Array(PORT_SPACE);
  private readonly portOut = new Int16Array(PORT_SPACE).fill(-1);
  private readonly portDevice = new Int16Array(PORT_SPACE).fill(-1);
  private readonly portPeer = new Int32Array(PORT_SPACE).fill(-1);
  /** IPv4 endpoint addresses that answer echo requests. */
  private readonly echoAddrs: Uint32Array;

  private readonly info = new PacketInfo();
  private readonly innerInfo = new PacketInfo();
  private readonly tx: PacketBatch;
  /** Packets the edge itself sends into the pipeline (ICMP errors for GRE's MTU), processed after each batch. */
  private readonly feedback = new PacketBatch(FEEDBACK_CAPACITY);
  /** The current WireGuard datagram's source, lent to the device for one receive(). */
  private readonly wgSource = new UdpEndpoint();

  private tuns: TunDevice[] = [];
  private outputs: Output[] = [];
  private readBatches: PacketBatch[] = [];
  private undo: string[][] = [];
  private expireTimer: NodeJS.Timeout | null = null;
  private countersTimer: NodeJS.Timeout | null = null;
  private wgTimer: NodeJS.Timeout | null = null;
  private wgTimerAt = Infinity;
  private running = false;

  constructor(options: EdgeOptions) {
    const cfg = options.config;
    this.config = cfg;
    this.log = options.log;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.countersIntervalMs = options.countersIntervalMs ?? DEFAULT_COUNTERS_INTERVAL_MS;
    this.tx = new PacketBatch(this.batchSize);
    this.ids = assignIds(cfg);
    const pipelineConfig = toPipelineConfig(cfg, this.ids);
    if (options.hugePages ?? true) pipelineConfig.allocate = hugePageAllocator();
    this.pipeline = new Pipeline(pipelineConfig);

    const endpoints: string[] = [];
    const echo: number[] = [];
    const addEndpoint = (addr: string): void => {
      if (endpoints.includes(addr)) return;
      endpoints.push(addr);
      const v4 = parseIpv4(addr);
      if (v4 >= 0) echo.push(v4);
    };

    cfg.wireguard_devices.forEach((d, i) => {
      const what = `wireguard_devices[${i}] (${d.name})`;
      const privateKey = d.private_key_file !== undefined ? readSecret(d.private_key_file, what) : inlineKey(d.private_key ?? '', what);
      const wildcard = d.listen_address === '0.0.0.0' || d.listen_address === '::';
      const local = wildcard ? 0 : parseIpv4(d.listen_address);
      if (local < 0) throw new Error(`${what}: IPv6 listen addresses are not supported by the underlay yet`);
      if (!wildcard) addEndpoint(d.listen_address);
      else this.log.warn({ device: d.name }, 'wireguard device listens on every address: route an underlay address to the underlay TUN yourself');
      this.wg.push({ name: d.name, device: new WireGuardDevice({ privateKey, checkSources: false }), localAddr: local, port: d.listen_port, lastLocal: 0, peerOnramp: [], ipId: 0, initiations: 0, windowStart: 0 });
    });

    const interconnects: NetworkSpec['interconnects'] = [];
    for (const o of cfg.onramps) {
      const id = this.ids.onramps.get(o.name);
      if (id === undefined) throw new Error(`onramp ${o.name}: no id`);
      if (o.type === 'gre') {
        this.gre.tunnels.add({ onrampId: id, local: o.gre.local, remote: o.gre.remote, key: o.gre.key, mtu: o.gre.mtu });
        addEndpoint(o.gre.local);
        this.portKind[id] = KIND_GRE;
      } else if (o.type === 'wireguard') {
        const w = o.wireguard;
        const dev = this.wg.findIndex((d) => d.name === w.device);
        if (dev < 0) throw new Error(`onramp ${o.name}: no wireguard device ${w.device}`);
        const what = `onramp ${o.name}`;
        const psk = w.preshared_key_file !== undefined
          ? readSecret(w.preshared_key_file, what)
          : w.preshared_key !== undefined ? inlineKey(w.preshared_key, `${what} preshared_key`) : null;
        let endpoint: { addr: string; port: number } | null = null;
        if (w.endpoint !== undefined) {
          const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(w.endpoint);
          if (m) endpoint = { addr: m[1], port: Number(m[2]) };
        }
        const peer = this.wg[dev].device.addPeer({
          publicKey: inlineKey(w.public_key, `${what} public_key`),
          presharedKey: psk,
          allowedIps: w.allowed_ips,
          endpoint,
          persistentKeepalive: w.persistent_keepalive,
        });
        this.wg[dev].peerOnramp[peer] = id;
        this.portKind[id] = KIND_WIREGUARD;
        this.portDevice[id] = dev;
        this.portPeer[id] = peer;
      } else if (o.type === 'interconnect') {
        interconnects.push({ onrampId: id, link: o.interconnect.link, tun: interconnectTunName(id) });
        this.portKind[id] = KIND_TUN;
      }
    }
    this.echoAddrs = Uint32Array.from(echo);
    this.network = {
      underlay: options.underlayName ?? DEFAULT_UNDERLAY_NAME,
      endpoints,
      egress: cfg.egress ? { tun: cfg.egress.interface, addresses: [...cfg.egress.addresses] } : null,
      interconnects,
      mtu: options.mtu ?? DEFAULT_MTU,
    };
    if (cfg.egress) this.portKind[PORT_INTERNET] = KIND_TUN;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Creates the TUNs, routes and rules, and starts reading. Undoes everything and throws on failure. */
  start(): void {
    if (this.running) return;
    const spec = this.network;
    const steps = planNetwork(spec);
    try {
      for (const name of tunNames(spec)) this.tuns.push(openTun(name));
      for (const tun of this.tuns) disableRpFilter(tun.name);
      removeStaleRules(steps);
      this.undo = applyPlan(steps);
    } catch (e) {
      for (const tun of this.tuns) tun.close();
      this.tuns = [];
      throw e;
    }
    // Outputs: the underlay first, then the egress, then the interconnects (tunNames order).
    this.outputs = this.tuns.map((tun) => ({ tun, idx: new Uint32Array(this.batchSize + this.pipeline.generated.capacity), n: 0 }));
    let t = 1;
    if (spec.egress) this.portOut[PORT_INTERNET] = t++;
    for (const ic of spec.interconnects) this.portOut[ic.onrampId] = t++;

    this.readBatches = this.tuns.map(() => new PacketBatch(this.batchSize));
    this.tuns[UNDERLAY_OUT].startReading(this.readBatches[UNDERLAY_OUT], 0, this.onUnderlay, this.onReadError);
    t = 1;
    if (spec.egress) {
      this.tuns[t].startReading(this.readBatches[t], PORT_INTERNET, this.onPlain, this.onReadError);
      t++;
    }
    for (const ic of spec.interconnects) {
      this.tuns[t].startReading(this.readBatches[t], ic.onrampId, this.onPlain, this.onReadError);
      t++;
    }
    this.running = true;

    this.expireTimer = setInterval(() => this.pipeline.expire(performance.now()), EXPIRE_INTERVAL_MS);
    if (this.countersIntervalMs > 0 && (this.log.isLevelEnabled?.('debug') ?? true)) {
      this.countersTimer = setInterval(() => this.log.debug({ counters: this.status() }, 'counters'), this.countersIntervalMs);
    }
    const now = Date.now();
    for (const d of this.wg) this.sendDatagrams(d, d.device.start(now));
    this.flushTx();
    this.scheduleWg();

    const redacted = redact(this.config);
    this.log.info({
      onramps: redacted.onramps.map((o) => ({ ...o, id: this.ids.onramps.get(o.name) })),
      wireguard_devices: redacted.wireguard_devices,
      tuns: tunNames(spec),
      routes: steps.filter((s) => s.undo !== null).map((s) => `ip ${s.args.join(' ')}`),
    }, 'tether started');
  }

  /** Stops reading, removes the routes and rules, closes the TUNs. Idempotent. */
  stop(): void {
    if (!this.running) return;
    // The final counters go to the log before the devices close (drops by reason, per engine).
    const final = this.status();
    this.running = false;
    for (const tun of this.tuns) tun.stopReading();
    if (this.expireTimer) clearInterval(this.expireTimer);
    if (this.countersTimer) clearInterval(this.countersTimer);
    if (this.wgTimer) clearTimeout(this.wgTimer);
    this.expireTimer = this.countersTimer = this.wgTimer = null;
    const failed = undoPlan(this.undo);
    if (failed.length > 0) this.log.warn({ failed }, 'some routes or rules were already gone');
    this.undo = [];
    for (const tun of this.tuns) tun.close();
    this.tuns = [];
    this.outputs = [];
    this.log.info({ status: final }, 'tether stopped');
  }

  /** Counters for the API and the periodic debug line (allocates: control plane). */
  status(): EdgeStatus {
    return {
      tuns: this.tuns.map((t) => {
        const c = t.counters();
        return { name: t.name, packetsIn: c.packetsIn, packetsOut: c.packetsOut, dropsBusy: c.dropsBusy };
      }),
      edge: nonZero(this.counters, EDGE_COUNTER_NAMES),
      pipelineDrops: nonZero(this.pipeline.counters.drops, DROP_REASON_NAMES),
      greDrops: nonZero(this.gre.drops, GRE_DROP_NAMES),
      wireguard: this.wg.map((d) => ({
        device: d.name,
        drops: nonZero(d.device.drops, WG_DROP_NAMES),
        peers: d.peerOnramp.map((onramp, peer) => {
          const s = d.device.peerStatus(peer);
          return { onramp, hasSession: s?.hasSession ?? false, endpoint: s?.endpoint ? `${s.endpoint.addr}:${s.endpoint.port}` : null };
        }),
      })),
      flows: { ipv4: this.pipeline.flows4.size, ipv6: this.pipeline.flows6.size },
    };
  }

  // --- receive --------------------------------------------------------------------------------------------

  private readonly onReadError = (err: Error): void => {
    this.log.error({ err: err.message }, 'TUN read failed');
  };

  /** Egress and interconnect TUNs: the batch is already tagged with its port. */
  private readonly onPlain = (batch: PacketBatch): void => {
    this.pipeline.process(batch, performance.now());
    this.afterProcess(batch);
  };

  private readonly onUnderlay = (batch: PacketBatch): void => {
    const data = batch.data;
    const info = this.info;
    const wallNow = Date.now();
    const n = batch.count;
    let j = 0;
    for (let i = 0; i < n; i++) {
      const off = batch.offset[i];
      const len = batch.length[i];
      const bad = inspect(data, off, len, info);
      // GRE is a protocol the flow model does not track: inspect validates the IP header and says so.
      if (bad !== Drop.None && !(bad === Drop.UnsupportedProtocol && info.protocol === IPPROTO_GRE)) {
        this.counters[EdgeCounter.UnderlayMalformed]++;
        continue;
      }
      const protocol = info.protocol;
      if (protocol === IPPROTO_GRE) {
        const id = this.gre.receiveInspected(data, len, info);
        const d = this.gre.decap;
        if (id > 0) {
          batch.offset[j] = d.innerOffset;
          batch.length[j] = d.innerLength;
          batch.ingress[j] = id;
          j++;
        } else if (id === GRE_RECEIVE_REFLECT) {
          batch.offset[i] = d.innerOffset;
          batch.length[i] = d.innerLength;
          this.tuns[UNDERLAY_OUT].writeBatch(batch, i, i + 1);
          this.counters[EdgeCounter.GreReflected]++;
        } else {
          this.counters[EdgeCounter.GreReceiveDrop]++;
        }
        continue;
      }
      if (info.family === AF_INET4 && protocol === IPPROTO_UDP) {
        const dev = this.deviceFor(info.addr[DST], info.dstPort);
        if (dev !== null) {
          j = this.receiveWireGuard(batch, i, j, dev, wallNow);
          continue;
        }
      } else if (info.family === AF_INET4 && protocol === IPPROTO_ICMP && info.icmpType === ICMP4_ECHO_REQUEST && this.isEchoAddr(info.addr[DST])) {
        echoReplyInPlace(data, info.l3Offset, info.l4Offset - info.l3Offset, info.l4Offset);
        this.tuns[UNDERLAY_OUT].writeBatch(batch, i, i + 1);
        this.counters[EdgeCounter.EchoReplied]++;
        continue;
      }
      this.counters[EdgeCounter.UnderlayNotForUs]++;
    }
    batch.count = j;
    if (j > 0) this.pipeline.process(batch, performance.now());
    this.afterProcess(batch);
  };

  private deviceFor(dst: number, port: number): WgDev | null {
    const wg = this.wg;
    for (let k = 0; k < wg.length; k++) {
      const d = wg[k];
      if (d.port === port && (d.localAddr === dst || d.localAddr === 0)) return d;
    }
    return null;
  }

  private isEchoAddr(addr: number): boolean {
    const a = this.echoAddrs;
    for (let k = 0; k < a.length; k++) if (a[k] === addr) return true;
    return false;
  }

  /**
   * "Under load" (whitepaper section 5.3): wireguard-go answers initiations with cookie replies
   * (and then rate-limits by source) while its handshake queue holds more than 128 entries. We
   * process handshakes inline, so the equivalent signal is their rate: more than
   * HANDSHAKES_UNDER_LOAD initiations in one second puts the device under load until a second
   * passes below that rate.
   */
  private noteInitiation(dev: WgDev, wallNow: number): void {
    if (wallNow - dev.windowStart >= WG_LOAD_WINDOW_MS) {
      dev.device.underLoad = dev.initiations > HANDSHAKES_UNDER_LOAD;
      dev.windowStart = wallNow;
      dev.initiations = 0;
    }
    if (++dev.initiations > HANDSHAKES_UNDER_LOAD) dev.device.underLoad = true;
  }

  /** One WireGuard datagram (packet i); returns the next free descriptor index. */
  private receiveWireGuard(batch: PacketBatch, i: number, j: number, dev: WgDev, wallNow: number): number {
    const info = this.info;
    const start = info.l4Offset + UDP_HEADER;
    const end = info.l3Offset + info.ipLength;
    if (dev.localAddr === 0) dev.lastLocal = info.addr[DST];
    if (batch.data[start] === WG_MESSAGE_INITIATION) this.noteInitiation(dev, wallNow);
    // The engine takes a view (an allocation it forces) and the source as numbers.
    const r = dev.device.receive(batch.data.subarray(start, end), this.wgSource.set4(info.addr[SRC], info.srcPort), wallNow);
    if (r.datagrams.length > 0) this.sendDatagrams(dev, r.datagrams);
    if (r.kind === 'data' && r.packet !== null) {
      const p = r.packet;
      if (p.length > batch.slotSize - batch.headroom) {
        this.counters[EdgeCounter.WgInnerTooBig]++;
        return j;
      }
      // Slot i held the ciphertext, which is no longer needed: the plaintext takes its place.
      const at = i * batch.slotSize + batch.headroom;
      batch.data.set(p, at);
      batch.offset[j] = at;
      batch.length[j] = p.length;
      batch.ingress[j] = dev.peerOnramp[r.peer];
      return j + 1;
    }
    if (r.kind === 'drop') this.counters[EdgeCounter.WgReceiveDrop]++;
    return j;
  }

  // --- deliver --------------------------------------------------------------------------------------------

  private afterProcess(batch: PacketBatch): void {
    const wallNow = Date.now();
    if (batch.count > 0) this.deliver(batch, wallNow);
    if (this.pipeline.generated.count > 0) this.deliver(this.pipeline.generated, wallNow);
    if (this.feedback.count > 0) {
      // Errors the edge originated (one round: an ICMP error never causes another, RFC 1122 3.2.2).
      this.pipeline.process(this.feedback, performance.now());
      this.deliver(this.feedback, wallNow);
      this.feedback.clear();
    }
    this.flushTx();
    if (this.wg.length > 0) this.scheduleWg();
  }

  private deliver(batch: PacketBatch, wallNow: number): void {
    const outs = this.outputs;
    for (let k = 0; k < outs.length; k++) outs[k].n = 0;
    const n = batch.count;
    for (let i = 0; i < n; i++) {
      const hop = batch.nextHop[i];
      if (hop === NEXT_HOP_DROP) continue;
      const kind = this.portKind[hop];
      if (kind === KIND_TUN) {
        const out = outs[this.portOut[hop]];
        out.idx[out.n++] = i;
      } else if (kind === KIND_GRE) {
        this.sendGre(batch, i, hop);
      } else if (kind === KIND_WIREGUARD) {
        const dev = this.wg[this.portDevice[hop]];
        const off = batch.offset[i];
        this.sendDatagrams(dev, dev.device.send(this.portPeer[hop], batch.data.subarray(off, off + batch.length[i]), wallNow));
      } else {
        this.counters[EdgeCounter.NoDelivery]++;
      }
    }
    for (let k = 0; k < outs.length; k++) if (outs[k].n > 0) outs[k].tun.writeIndices(batch, outs[k].idx, outs[k].n);
  }

  private sendGre(batch: PacketBatch, i: number, onramp: number): void {
    const data = batch.data;
    const off = batch.offset[i];
    const len = batch.length[i];
    const info = this.innerInfo;
    const t = this.gre.tunnels.tunnelOf(onramp);
    if (t < 0) {
      this.counters[EdgeCounter.GreSendDrop]++;
      return;
    }
    const mtu = this.gre.tunnels.mtu[t];
    // Fits by length: the pipeline inspected (and MSS-clamped) the packet; only an oversize one is looked at again.
    let verdict: number = MtuVerdict.Fits;
    if (len > mtu) {
      if (inspect(data, off, len, info) !== Drop.None) {
        this.counters[EdgeCounter.GreSendDrop]++;
        return;
      }
      verdict = tunnelMtuVerdict(info, mtu);
    }
    if (verdict === MtuVerdict.Fits) {
      const floor = ((off / batch.slotSize) | 0) * batch.slotSize;
      const o = this.gre.send(onramp, data, off, len, floor);
      if (o < 0) {
        this.counters[EdgeCounter.GreSendDrop]++;
        return;
      }
      batch.offset[i] = o;
      batch.length[i] = this.gre.lastLength;
      const out = this.outputs[UNDERLAY_OUT];
      out.idx[out.n++] = i;
    } else if (verdict === MtuVerdict.Fragment) {
      // Slow path (rare once MSS clamping works): RFC 791 fragments, each encapsulated from the transmit batch.
      this.counters[EdgeCounter.GreFragmented]++;
      for (const piece of fragmentForTunnel(data, info, mtu)) {
        const k = this.reserveTx();
        const tx = this.tx;
        const slot = k * tx.slotSize;
        tx.data.set(piece, slot + tx.headroom);
        const o = this.gre.send(onramp, tx.data, slot + tx.headroom, piece.length, slot);
        if (o < 0) {
          tx.count--;
          this.counters[EdgeCounter.GreSendDrop]++;
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
      this.counters[EdgeCounter.GreTooBig]++;
      const error = buildPacketTooBig(data, info, mtu, this.gre.tunnels.localSource(t));
      if (error !== null && this.feedback.push(error, 0, error.length, onramp) >= 0) this.counters[EdgeCounter.GreTooBigReported]++;
    }
  }

  /** WireGuard datagrams → IPv4/UDP from the device's address and port, into the transmit batch. */
  private sendDatagrams(dev: WgDev, list: Outgoing[]): void {
    for (let q = 0; q < list.length; q++) {
      const o = list[q];
      const to = o.endpoint;
      const dst = to.family === AF_INET4 ? to.addr[0] : NOT_A_NUMBER_ADDR;
      const src = dev.localAddr !== 0 ? dev.localAddr : dev.lastLocal;
      const tx = this.tx;
      if (dst < 0 || src === 0 || o.data.length + UDP4_OVERHEAD > tx.slotSize - tx.headroom) {
        this.counters[EdgeCounter.WgUnsendable]++;
        continue;
      }
      const k = this.reserveTx();
      const at = k * tx.slotSize + tx.headroom;
      tx.data.set(o.data, at + UDP4_OVERHEAD);
      dev.ipId = (dev.ipId + 1) & 0xffff;
      tx.offset[k] = at;
      tx.length[k] = writeUdp4Headers(tx.data, at, src, dst, dev.port, to.port, o.data.length, dev.ipId);
    }
  }

  private reserveTx(): number {
    const tx = this.tx;
    if (tx.count === tx.capacity) this.flushTx();
    const k = tx.count++;
    tx.nextHop[k] = NEXT_HOP_DROP;
    return k;
  }

  private flushTx(): void {
    const tx = this.tx;
    if (tx.count === 0) return;
    if (this.running) this.tuns[UNDERLAY_OUT].writeBatch(tx, 0, tx.count);
    tx.count = 0;
  }

  // --- WireGuard timers -----------------------------------------------------------------------------------

  /** One setTimeout for every device, at the earliest nextDeadline(). */
  private scheduleWg(): void {
    let at = Infinity;
    for (let k = 0; k < this.wg.length; k++) at = Math.min(at, this.wg[k].device.nextDeadline());
    if (at >= this.wgTimerAt || !this.running) return; // the pending timer fires first and reschedules
    if (this.wgTimer) clearTimeout(this.wgTimer);
    this.wgTimer = null;
    this.wgTimerAt = at;
    if (at === Infinity) return;
    // +1 ms: a timer may fire a little before its time by the wall clock; poll() then finds nothing due.
    this.wgTimer = setTimeout(this.onWgTimer, Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now()) + 1));
  }

  private readonly onWgTimer = (): void => {
    this.wgTimer = null;
    this.wgTimerAt = Infinity;
    if (!this.running) return;
    const now = Date.now();
    for (const d of this.wg) this.sendDatagrams(d, d.device.poll(now));
    this.flushTx();
    this.scheduleWg();
  };
}
