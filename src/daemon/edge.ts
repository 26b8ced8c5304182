/**
 * The edge: tether's data plane on real interfaces (docs/UNDERLAY.md), and only its lifecycle. The device layer
 * is split by transport (src/daemon/transports/); this file builds the pipeline, hands each transport its
 * onramps, opens and closes them, wires the read loops to process + deliver, runs the edge's timers and
 * answers status.
 *
 *   tt-underlay ─ read batch ─ Underlay.demux (GRE, WireGuard receivers claim their outer packets) ──────────┐
 *   <egress>  ─ read batch, tagged PORT_INTERNET ─────────────────────────────────────────────────────────────┤
 *   tt-ic-<n> ─ read batch, tagged onramp n ──────────────────────────────────────────────────────────────────┤
 *                                                                                                              ▼
 *      pipeline.process(batch, monotonic now) ─ deliver: per packet, DeliveryTable.of(nextHop).deliver(…)
 *      ─ one writeIndices() per TUN (TunOutputs) ─ the underlay's transmit batch flushed ─ WireGuard timers
 *
 * Onramps come and go at runtime through addOnramp / updateOnramp / removeOnramp: the transport of the
 * onramp's type first (its kernel objects, its engine state, its port in the delivery table), then the
 * pipeline's port tables. Ids only grow: a removed onramp's id is never handed to a new one.
 *
 * Time: the pipeline and every transport's timers run on the monotonic clock (performance.now()), so a step of
 * the wall clock changes no flow or protocol timer; WireGuard reads the wall clock only for the TAI64N timestamp
 * its initiations carry (whitepaper §5.4.2, transports/wireguard.ts).
 */
import { performance } from 'node:perf_hooks';
import { DROP_REASON_NAMES } from '../common/drop-reasons.js';
import { MAX_ONRAMP_ID, MAX_SITE_ID, NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import { PacketBatch, VNET_WORDS } from '../common/packet-batch.js';
import { HandoffRing } from '../common/handoff-ring.js';
import { DEFAULT_LANES, laneCountProblem } from '../common/lanes.js';
import { LaneSteering } from '../dataplane/lane-steering.js';
import { LaneHost, LaneTraffic, mergeLaneStatus, type LaneWiring } from './lanes.js';
import {
  assignIds,
  redact,
  toOnrampSpec,
  toPipelineConfig,
  typeSettings,
  type ConfigIds,
  type OnrampConfig,
  type TetherConfig,
  type WireGuardDeviceConfig,
} from '../config/index.js';
import { ApplyError } from '../control/apply.js';
import type { CaptureTap, OuterTap } from '../control/capture.js';
import type { EdgeStatus, IpsecDropStats, KernelDeviceDrops } from '../control/metrics.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { hugePageAllocator } from '../io/memory.js';
import { busyPollCounters, OFFLOAD_BATCH_CAPACITY, offloadBatch, setBusyPoll, type TunDevice } from '../io/tun.js';
import { GRE_DROP_NAMES, type GreOnramp } from '../onramp/gre/index.js';
import { EdgeHealth, type OnrampHealthMetrics } from './health.js';
import type { OnrampHealthView } from '../control/apply.js';
import { DEFAULT_UNDERLAY_NAME, interconnectTunName } from './network.js';
import { KERNEL_DROPS_INTERVAL_MS, KernelDropWatch, type OwnedDevice } from './kernel-drops.js';
import { EDGE_COUNTER_NAMES, EdgeCounter, nonZero } from './transports/counters.js';
import { EgressTransport } from './transports/egress.js';
import { GreTransport } from './transports/gre.js';
import { InterconnectTransport } from './transports/interconnect.js';
import { DeliveryTable, TunOutputs, TunnelAddresses, type Deliverer, type EdgeLogger, type OnrampTransport, type Transport, type TransportHost } from './transports/transport.js';
import { SoftwareGso } from './transports/software-gso.js';
import { Underlay } from './transports/underlay.js';
import { WireGuardTransport } from './transports/wireguard.js';
import { IpsecOnrampTransport } from './transports/ipsec-onramps.js';
import { ViaLaneZero } from './transports/via-lane-zero.js';
import type { HealthState } from '../health/index.js';
import { waitWhile } from './threads.js';
import { FlowOffload } from './flow-offload.js';

export { EDGE_COUNTER_NAMES, EdgeCounter } from './transports/counters.js';
export type { EdgeLogger } from './transports/transport.js';
export type { EdgeStatus } from '../control/metrics.js';
/** The Internet egress is port 0, the underlay's read batch is tagged with it until demux retags each packet. */
const UNDERLAY_INGRESS = 0;

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
  /**
   * TUN offloads (default: the configuration's daemon.offload, true): the egress and interconnect TUNs are opened
   * with TUNSETOFFLOAD (TSO, USO, checksum), so the kernel hands over and takes GSO super-packets (docs/UNDERLAY.md
   * "Super-packets").
   */
  offload?: boolean;
  /**
   * GRO (default true): on those TUNs with offloads, each flow's TCP segments in a delivered batch are coalesced into
   * one super-packet per write (dataplane/gro.ts; docs/PERFORMANCE.md "TUN offloads"). No effect without offload.
   */
  gro?: boolean;
  /** Busy-poll budget of the TUNs, µs (default: the configuration's daemon.busy_poll_us; 0 = off; src/io/tun.ts setBusyPoll). */
  busyPollUs?: number;
  /**
   * The native flow cache (default: the configuration's daemon.flow_cache; flow-offload.ts): established UDP and ICMP
   * echo flows between the egress and interconnect TUNs forwarded inside the addon. One lane only (ignored with lanes).
   */
  flowCache?: boolean;
  /** How often the counters are logged at debug level, ms (default 10 000; 0 = never). */
  countersIntervalMs?: number;
  /**
   * Lanes (docs/ARCHITECTURE.md "Lanes"; default: the configuration's daemon.lanes): worker threads, each with its own pipeline and its own queue
   * of every egress and interconnect TUN (IFF_MULTI_QUEUE). This edge is lane 0 and starts the others.
   */
  lanes?: number;
  /** @internal Set in a lane's worker (lanes.ts): which lane this edge is and its handoff rings. */
  wiring?: LaneWiring;
  /**
   * Start health checking with start() (default true). `tether run` passes false and calls startHealth() once its
   * control plane is up: building the API blocks the event loop for a moment, and probe replies read late would
   * count as lost.
   */
  startHealth?: boolean;
}

/** ICMP errors originated per received batch, at most (RFC 1812 section 4.3.2.8: rate-limit them). */
const FEEDBACK_CAPACITY = 32;
const DEFAULT_BATCH = 128;
const DEFAULT_MTU = 1500;
const EXPIRE_INTERVAL_MS = 1000;
/** A lane waiting for handed-off packets wakes at least this often to see whether it still runs. */
const LANE_IDLE_WAIT_MS = 1000;

/** Packet `from` of `batch` into index `to` (< from): its slot's offset, length, ingress and virtio-net header move; its bytes stay. */
function moveSlot(batch: PacketBatch, from: number, to: number): void {
  // Swapping the offsets keeps every slot owned by exactly one index, so the next read's slot reuse stays right.
  const offset = batch.offset[to];
  batch.offset[to] = batch.offset[from];
  batch.offset[from] = offset;
  batch.length[to] = batch.length[from];
  batch.ingress[to] = batch.ingress[from];
  batch.vnet.copyWithin(to * VNET_WORDS, from * VNET_WORDS, (from + 1) * VNET_WORDS);
}
const DEFAULT_COUNTERS_INTERVAL_MS = 10_000;
export class Edge {
  /** The configuration the edge was built with (live changes are not written back into it). */
  readonly config: TetherConfig;
  /** Names → ids; live changes add and remove entries. */
  readonly ids: ConfigIds;
  readonly pipeline: Pipeline;
  /** The GRE engine (its drops are read by the metrics). */
  readonly gre: GreOnramp;
  readonly counters = new Float64Array(EDGE_COUNTER_NAMES.length);
  readonly counterNames = EDGE_COUNTER_NAMES;
  private readonly log: EdgeLogger;
  private readonly batchSize: number;
  private readonly countersIntervalMs: number;
  private readonly healthWithStart: boolean;
  private readonly busyPollUs: number;
  private readonly flowCache: boolean;
  /** The native flow cache's glue while running with it (flow-offload.ts); null otherwise. */
  private offload: FlowOffload | null = null;

  private readonly delivery = new DeliveryTable();
  private readonly outputs: TunOutputs;
  /** Packets the edge itself sends into the pipeline (ICMP errors for a tunnel's MTU), processed after each batch. */
  private readonly feedback = new PacketBatch(FEEDBACK_CAPACITY);
  /** Each onramp's tunnel address (health_check.source), the source of its ICMP errors where the underlay's does not fit. */
  private readonly tunnelAddresses = new TunnelAddresses();
  private readonly underlay: Underlay;
  /** Segments super-packets (and completes partial checksums) for next hops without offloads. */
  private readonly softwareGso: SoftwareGso;
  private readonly egress: EgressTransport;
  private readonly wireguard: WireGuardTransport;
  private readonly ipsec: IpsecOnrampTransport;
  private readonly interconnects: InterconnectTransport;
  /** The kernel's drop counters of the TUNs, read every KERNEL_DROPS_INTERVAL_MS (kernel-drops.ts). */
  private readonly kernelWatch: KernelDropWatch;
  /** Tunnel health: probes, WireGuard session age, route penalties (health.ts). */
  private readonly health: EdgeHealth;
  /** The transport of each onramp type. */
  private readonly byType: { [K in OnrampConfig['type']]: OnrampTransport<Extract<OnrampConfig, { type: K }>> };
  /** Opened in this order after the underlay, closed in reverse. */
  private readonly transports: Transport[];
  /** Onramps by name: the configuration each runs with, and its id. */
  private readonly onramps = new Map<string, { config: OnrampConfig; id: number }>();
  /** WireGuard devices by name, as they run. */
  private readonly devices = new Map<string, WireGuardDeviceConfig>();
  private nextOnrampId: number;
  private nextSiteId: number;

  /** A running capture's tap (control/capture.ts); null, the packet path's only cost: one test per batch. */
  private captureTap: CaptureTap | null = null;

  private expireTimer: NodeJS.Timeout | null = null;
  private countersTimer: NodeJS.Timeout | null = null;
  private kernelTimer: NodeJS.Timeout | null = null;
  private running = false;

  /** This edge's lane and how many run (1: no lanes; the rest of this block is then idle). */
  readonly laneIndex: number;
  readonly laneCount: number;
  /** Rings to every other lane (null at this lane's own index) and from them. */
  private readonly toLane: Array<HandoffRing | null>;
  private readonly fromLane: HandoffRing[];
  /** Which lane owns a packet from the Internet (its NAT port slice). */
  private readonly steering: LaneSteering;
  /** Packets handed to this lane by others, popped from the rings (64 KiB slots with offloads: super-packets). */
  private readonly handoffBatch: PacketBatch;
  /** Lane 0: the other lanes' workers. */
  private readonly laneHost: LaneHost | null;
  /** With lanes: the per-onramp packet counts lanes ≥ 1 publish (publishTraffic) and lane 0's health checks add up. */
  private readonly laneTraffic: LaneTraffic | null;

  constructor(options: EdgeOptions) {
    const cfg = options.config;
    this.config = cfg;
    this.log = options.log;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.countersIntervalMs = options.countersIntervalMs ?? DEFAULT_COUNTERS_INTERVAL_MS;
    this.healthWithStart = options.startHealth ?? true;
    this.busyPollUs = options.busyPollUs ?? cfg.daemon.busy_poll_us;
    // A configuration built in code may have no daemon section (see lanes below): the cache is then off.
    this.flowCache = options.flowCache ?? (cfg.daemon as TetherConfig['daemon'] | undefined)?.flow_cache ?? false;
    this.ids = assignIds(cfg);
    this.laneIndex = options.wiring?.index ?? 0;
    // A configuration built in code before lanes existed has no daemon section: one lane.
    this.laneCount = options.wiring?.count ?? options.lanes ?? (cfg.daemon as TetherConfig['daemon'] | undefined)?.lanes ?? DEFAULT_LANES;
    const lanesProblem = laneCountProblem(this.laneCount);
    if (lanesProblem !== null) throw new Error(lanesProblem);
    const pipelineConfig = toPipelineConfig(cfg, this.ids);
    if (options.hugePages ?? true) pipelineConfig.allocate = hugePageAllocator();
    const directory = this.laneCount > 1 ? options.wiring?.directory ?? LaneHost.directory(this.laneCount, pipelineConfig.flows) : undefined;
    if (this.laneCount > 1) pipelineConfig.lane = { index: this.laneIndex, count: this.laneCount, directory };
    this.pipeline = new Pipeline(pipelineConfig);
    this.outputs = new TunOutputs(this.batchSize + this.pipeline.generated.capacity, this.counters);
    this.softwareGso = new SoftwareGso(this.counters);

    const host: TransportHost = {
      log: this.log,
      counters: this.counters,
      delivery: this.delivery,
      outputs: this.outputs,
      feedback: this.feedback,
      tunnelAddresses: this.tunnelAddresses,
      mtu: options.mtu ?? DEFAULT_MTU,
      offload: options.offload ?? cfg.daemon.offload,
      gro: options.gro ?? true,
      multiQueue: this.laneCount > 1,
      ownsKernel: this.laneIndex === 0,
      isRunning: () => this.running,
      // A TUN with offloads reads into 64 KiB slots (bounded: OFFLOAD_BATCH_CAPACITY of them, src/io/tun.ts).
      readPlain: (tun, port) =>
        tun.startReading(tun.offloads ? offloadBatch(Math.min(OFFLOAD_BATCH_CAPACITY, this.batchSize)) : new PacketBatch(this.batchSize), port, this.onPlain, this.onReadError),
    };
    this.steering = new LaneSteering(this.pipeline.snat, this.laneCount);
    const rings = options.wiring?.rings ?? (this.laneCount > 1 ? LaneHost.rings(this.laneCount) : []);
    this.toLane = [];
    this.fromLane = [];
    for (let k = 0; k < this.laneCount && this.laneCount > 1; k++) {
      const to = rings[this.laneIndex][k];
      const from = rings[k][this.laneIndex];
      this.toLane.push(to === null ? null : new HandoffRing(to));
      if (from !== null) this.fromLane.push(new HandoffRing(from));
    }
    this.handoffBatch = this.laneCount > 1 && host.offload === true ? offloadBatch(Math.min(OFFLOAD_BATCH_CAPACITY, this.batchSize)) : new PacketBatch(this.laneCount > 1 ? this.batchSize : 1);
    if (this.laneCount > 1) this.pipeline.onHandHeld = this.handHeld;
    // The lanes' per-onramp packet counts for lane 0's health checks (lanes.ts LaneTraffic).
    const traffic = this.laneCount > 1 ? options.wiring?.traffic ?? LaneTraffic.create(this.laneCount) : undefined;
    this.laneTraffic = traffic === undefined ? null : new LaneTraffic(traffic, this.laneCount);
    this.laneHost = this.laneCount > 1 && this.laneIndex === 0
      ? new LaneHost({ config: cfg, count: this.laneCount, rings, directory: directory!, traffic: traffic!, mtu: host.mtu, batchSize: this.batchSize, offload: host.offload === true, hugePages: options.hugePages ?? true, busyPollUs: this.busyPollUs, log: this.log })
      : null;
    this.underlay = new Underlay(host, options.underlayName ?? DEFAULT_UNDERLAY_NAME, this.batchSize);
    const gre = new GreTransport(host, this.underlay);
    const interconnects = new InterconnectTransport(host);
    this.interconnects = interconnects;
    this.gre = gre.gre;
    this.wireguard = new WireGuardTransport(host, this.underlay);
    this.egress = new EgressTransport(host, cfg.egress ?? null);
    this.ipsec = new IpsecOnrampTransport(host, this.underlay);
    const toLaneZero = this.laneIndex > 0 ? this.toLane[0] : null;
    if (toLaneZero === null) {
      this.byType = { gre, wireguard: this.wireguard, interconnect: interconnects, ipsec: this.ipsec };
      // The TUN order of the start log and status: the underlay, the egress, the interconnects.
      this.transports = [this.egress, interconnects, gre, this.wireguard, this.ipsec];
    } else {
      // Lanes ≥ 1: tunnel state lives on lane 0; this lane delivers to tunnel onramps through it (via-lane-zero.ts).
      const via = { gre: new ViaLaneZero('gre', host, toLaneZero), wireguard: new ViaLaneZero('wireguard', host, toLaneZero), ipsec: new ViaLaneZero('ipsec', host, toLaneZero) };
      this.byType = { interconnect: interconnects, ...via } as typeof this.byType;
      this.transports = [this.egress, interconnects, via.gre, via.wireguard, via.ipsec];
    }

    this.kernelWatch = new KernelDropWatch(() => this.ownedDevices(), this.log);
    this.health = new EdgeHealth({
      pipeline: this.pipeline,
      log: this.log,
      send: (batch) => this.sendOwn(batch),
      lastHandshakeAt: (onramp) => this.wireguard.lastHandshakeAt(onramp),
      ipsecAlive: (onramp, now) => this.ipsec.alive(onramp, now),
      isRunning: () => this.running,
      onState: (onramp, state) => this.laneHost?.health(onramp, state),
      ...(this.laneHost !== null && this.laneTraffic !== null ? { lanes: this.laneTraffic } : {}),
    });
    this.ipsec.setHealth({ peerState: (onramp, up) => this.health.tunnelState(onramp, up) });
    cfg.wireguard_devices.forEach((d, i) => {
      this.wireguard.addDevice(d, `wireguard_devices[${i}] (${d.name})`);
      this.devices.set(d.name, d);
    });
    for (const o of cfg.onramps) {
      const id = this.ids.onramps.get(o.name);
      if (id === undefined) throw new Error(`onramp ${o.name}: no id`);
      this.transportOf(o).add(o, id);
      this.onramps.set(o.name, { config: o, id });
      this.tunnelAddresses.set(id, o.health_check?.source);
      this.health.set(id, o);
    }
    this.nextOnrampId = Math.max(0, ...this.ids.onramps.values()) + 1;
    this.nextSiteId = Math.max(0, ...this.ids.sites.values(), ...this.ids.onrampSite.values()) + 1;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Opens the underlay and every transport (TUNs, routes, rules) and starts reading. Undoes everything and throws on failure. */
  start(): void {
    if (this.running) return;
    this.running = true;
    try {
      if (this.laneIndex === 0) {
        this.underlay.open().startReading(new PacketBatch(this.batchSize), UNDERLAY_INGRESS, this.onUnderlay, this.onReadError);
        for (const t of this.transports) t.open();
      } else {
        // Another lane: its queues of the egress and interconnect TUNs (lane 0 owns the rest), its way to the tunnels.
        for (const t of this.transports) t.open();
      }
      setBusyPoll(this.busyPollUs);
      if (this.flowCache && this.laneCount === 1) this.startFlowCache();
    } catch (e) {
      this.closeTransports();
      this.running = false;
      throw e;
    }
    for (const ring of this.fromLane) void this.drainLoop(ring);
    this.laneHost?.start();
    this.expireTimer = setInterval(this.onExpire, EXPIRE_INTERVAL_MS);
    if (this.laneIndex > 0) return;
    this.kernelWatch.refresh(performance.now());
    this.kernelTimer = setInterval(() => this.kernelWatch.refresh(performance.now()), KERNEL_DROPS_INTERVAL_MS);
    if (this.healthWithStart) this.health.start();
    if (this.countersIntervalMs > 0 && (this.log.isLevelEnabled?.('debug') ?? true)) {
      this.countersTimer = setInterval(() => this.log.debug({ counters: this.status() }, 'counters'), this.countersIntervalMs);
    }

    const redacted = redact(this.config);
    this.log.info({
      onramps: redacted.onramps.map((o) => ({ ...o, id: this.ids.onramps.get(o.name) })),
      wireguard_devices: redacted.wireguard_devices,
      tuns: this.tunDevices().map((t) => t.name),
      routes: [this.underlay, ...this.transports].flatMap((t) => t.routes()),
    }, 'tether started');
  }

  /** Stops reading, removes the routes and rules, closes the TUNs. Idempotent. */
  stop(): void {
    if (!this.running) return;
    this.laneHost?.stop();
    // The final counters go to the log before the devices close (drops by reason, per engine).
    this.kernelWatch.refresh(performance.now());
    const final = this.status();
    this.running = false;
    if (this.expireTimer) clearInterval(this.expireTimer);
    if (this.countersTimer) clearInterval(this.countersTimer);
    if (this.kernelTimer) clearInterval(this.kernelTimer);
    this.expireTimer = this.countersTimer = this.kernelTimer = null;
    this.kernelWatch.close();
    this.health.stop();
    setBusyPoll(0);
    this.offload?.close();
    this.offload = null;
    this.closeTransports();
    this.log.info({ status: final }, 'tether stopped');
  }

  /**
   * The native flow cache on this thread (flow-offload.ts). A second edge on the same thread (tests) finds the
   * thread's cache taken and runs without one: the cache counts into one pipeline's counters.
   */
  private startFlowCache(): void {
    try {
      this.offload = new FlowOffload(this.pipeline, (port) => this.tunOfPort(port), () => performance.now());
      this.offload.setPaused(this.captureTap !== null);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'native flow cache not started');
    }
  }

  /** The TUN this thread reads and writes port's packets through: the egress's, an interconnect's; null for tunnels. */
  private tunOfPort(port: number): TunDevice | null {
    const transport = this.delivery.of(port);
    if (transport === this.egress) return this.egress.tun();
    if (transport === this.interconnects) return this.interconnects.tunOf(port);
    return null;
  }

  private closeTransports(): void {
    for (let k = this.transports.length - 1; k >= 0; k--) this.transports[k].close();
    this.underlay.close();
  }

  private tunDevices(): TunDevice[] {
    return [this.underlay, ...this.transports].flatMap((t) => t.tuns());
  }

  /** Counters for the API and the periodic debug line (allocates: control plane); with lanes, every lane's summed in. */
  status(): EdgeStatus {
    const own = this.ownStatus();
    return this.laneHost === null ? own : mergeLaneStatus(own, this.laneHost.statuses());
  }

  /** Resolves when every lane runs (at once without lanes); rejects with a lane's error. */
  lanesReady(): Promise<void> {
    return this.laneHost === null ? Promise.resolve() : this.laneHost.ready();
  }

  /** Lane 0 with lanes: the other lanes (the API's flows, counters and captures across lanes: lane-observe.ts); else null. */
  otherLanes(): LaneHost | null {
    return this.laneHost;
  }

  /**
   * A configuration applied live on this edge (LiveEdge): the other lanes apply it too, then hear every checked
   * onramp's health state again (a new onramp there starts healthy; lane 0's checks may know better).
   */
  appliedToLanes(config: TetherConfig): void {
    const host = this.laneHost;
    if (host === null) return;
    host.apply(config);
    for (const [onramp, state] of this.health.states()) host.health(onramp, state);
  }

  /** Lanes ≥ 1: this lane's per-onramp packet counts, for lane 0's health checks (lane-worker.ts runs it on a timer). */
  publishTraffic(): void {
    if (this.laneIndex === 0 || this.laneTraffic === null) return;
    const c = this.pipeline.counters;
    this.laneTraffic.publish(this.laneIndex, c.txPackets, c.rxPackets, this.ids.onramps.values());
  }

  /** Lanes ≥ 1: an onramp's health as lane 0's checks judged it (lane-worker.ts), for this lane's routes and ARR. */
  applyLaneZeroHealth(onramp: number, state: HealthState): void {
    if (this.pipeline.ports.configured[onramp] === 1) this.pipeline.setOnrampHealth(onramp, state);
  }

  private ownStatus(): EdgeStatus {
    return {
      tuns: this.tunDevices().map((t) => {
        const c = t.counters();
        return { name: t.name, packetsIn: c.packetsIn, packetsOut: c.packetsOut, dropsBusy: c.dropsBusy, gsoIn: c.gsoIn, gsoOut: c.gsoOut, offloads: t.offloads };
      }),
      busyPoll: this.running ? busyPollCounters() : undefined,
      flowCache: this.offload?.status(),
      edge: nonZero(this.counters, EDGE_COUNTER_NAMES),
      pipelineDrops: nonZero(this.pipeline.counters.drops, DROP_REASON_NAMES),
      greDrops: nonZero(this.gre.drops, GRE_DROP_NAMES),
      wireguard: this.wireguard.status(),
      flows: { ipv4: this.pipeline.flows4.size, ipv6: this.pipeline.flows6.size },
      icmp: {
        timeExceededSent: this.pipeline.counters.icmpTimeExceededSent,
        rateLimited: this.pipeline.counters.icmpErrorsRateLimited,
        noSource: this.pipeline.counters.icmpErrorsNoSource,
        echoAnswered: this.pipeline.counters.icmpEchoAnswered,
      },
      gatewayDns: {
        decided: this.pipeline.counters.gatewayDnsQueries,
        answered: this.pipeline.counters.gatewayDnsAnswered,
        unparsed: this.pipeline.counters.gatewayDnsUnparsed,
        answerLost: this.pipeline.counters.gatewayDnsAnswerLost,
      },
      ...this.ipsecStatus(),
      kernelDrops: this.kernelWatch.nonZero(),
    };
  }

  /**
   * The TUNs the edge owns and the onramps whose packets pass through each: the underlay carries every tunnel
   * onramp's outer packets (WireGuard, GRE, IPsec), the egress the Internet's (port 0), an interconnect TUN its
   * own onramp's.
   */
  ownedDevices(): OwnedDevice[] {
    const out: OwnedDevice[] = [];
    const tunnels: number[] = [];
    const icByTun = new Map<string, number>();
    for (const o of this.onramps.values()) {
      if (o.config.type === 'interconnect') icByTun.set(interconnectTunName(o.id), o.id);
      else tunnels.push(o.id);
    }
    for (const t of this.underlay.tuns()) out.push({ device: t.name, role: 'underlay', onramps: tunnels });
    for (const t of this.egress.tuns()) out.push({ device: t.name, role: 'egress', onramps: [PORT_INTERNET] });
    for (const t of this.interconnects.tuns()) {
      const id = icByTun.get(t.name);
      out.push({ device: t.name, role: 'interconnect', onramps: id === undefined ? [] : [id] });
    }
    return out;
  }

  /** The kernel's drop counters of every owned TUN, every kind (as last read, at most KERNEL_DROPS_INTERVAL_MS old). */
  kernelDrops(): KernelDeviceDrops[] {
    return this.kernelWatch.snapshot();
  }

  /**
   * IKE SAs (the IKE engine's status()) and the ESP data path's per-child-SA counters, for the API's /v1/stats and
   * the metrics.
   */
  ipsecStatus(): Pick<EdgeStatus, 'ipsec' | 'esp'> {
    return { ipsec: this.ipsec.ikeStatus(), esp: this.ipsec.espStatus() };
  }

  /** IKE and ESP drops by reason, the engine's caught throws and its half-open SAs, for GET /v1/stats. */
  ipsecDrops(): IpsecDropStats {
    return this.ipsec.dropStats();
  }

  // --- onramps at runtime (control plane) -----------------------------------------------------------------

  /**
   * Adds an onramp: its transport (kernel objects, engine state, delivery), then its port in the pipeline.
   * Its id is `onramp.id` when given, else one above every id handed out so far. Returns the id. Throws with a
   * message naming the onramp, and changes nothing, when it cannot be added.
   */
  addOnramp(onramp: OnrampConfig): number {
    if (this.onramps.has(onramp.name)) throw new Error(`onramp ${onramp.name}: exists already`);
    const id = onramp.id ?? this.nextOnrampId;
    if (!Number.isInteger(id) || id < 1 || id > MAX_ONRAMP_ID) throw new Error(`onramp ${onramp.name}: no onramp id left (or ${id} is out of range)`);
    for (const o of this.onramps.values()) if (o.id === id) throw new Error(`onramp ${onramp.name}: id ${id} is in use`);
    const site = this.siteOf(onramp, null);
    const transport = this.transportOf(onramp);
    transport.add(onramp, id);
    try {
      this.pipeline.setOnramp(toOnrampSpec(onramp, id, site));
    } catch (e) {
      transport.remove(id);
      throw e;
    }
    this.remember(onramp, id, site);
    this.health.set(id, onramp);
    this.nextOnrampId = Math.max(this.nextOnrampId, id + 1);
    return id;
  }

  /** Changes an onramp in place, under the same id: its transport, then its port (site, ARR, preference, quota). */
  updateOnramp(onramp: OnrampConfig): void {
    const have = this.onramps.get(onramp.name);
    if (have === undefined) throw new Error(`onramp ${onramp.name}: no such onramp`);
    const id = have.id;
    const site = this.siteOf(onramp, have.config);
    const spec = toOnrampSpec(onramp, id, site);
    if (have.config.type === onramp.type) {
      this.transportOf(onramp).update(onramp, id);
    } else {
      this.transportOf(have.config).remove(id);
      try {
        this.transportOf(onramp).add(onramp, id);
      } catch (e) {
        this.transportOf(have.config).add(have.config, id);
        throw e;
      }
    }
    this.pipeline.setOnramp(spec);
    this.remember(onramp, id, site);
    this.health.set(id, onramp);
  }

  /**
   * Removes an onramp: from now on its packets are dropped and counted (by its transport: GRE drops, the
   * edge's wg_peer_removed; by the pipeline: unknown port), and packets routed to it are counted as no_delivery.
   */
  removeOnramp(name: string): void {
    const have = this.onramps.get(name);
    if (have === undefined) throw new Error(`onramp ${name}: no such onramp`);
    this.transportOf(have.config).remove(have.id);
    this.offload?.invalidate();
    this.tunnelAddresses.clear(have.id);
    this.health.remove(have.id);
    this.pipeline.ports.remove(have.id);
    this.onramps.delete(name);
    this.ids.onramps.delete(name);
    this.ids.onrampSite.delete(name);
  }

  // --- health (control plane) -----------------------------------------------------------------------------

  /** Starts health checking on a started edge (see EdgeOptions.startHealth); idempotent. */
  startHealth(): void {
    this.health.start();
  }

  /**
   * Health checks for a configuration applied live (`ids`: name → id as the control plane assigned them): each
   * onramp the pipeline has gets its check added or updated, checks of onramps gone are removed. Idempotent.
   */
  syncHealth(onramps: readonly OnrampConfig[], ids: ReadonlyMap<string, number>): void {
    const wanted = new Set<number>();
    for (const o of onramps) {
      const id = ids.get(o.name);
      if (id === undefined || this.pipeline.ports.configured[id] !== 1) continue;
      wanted.add(id);
      this.health.set(id, o);
    }
    for (const m of this.health.metrics()) if (!wanted.has(m.onramp)) this.health.remove(m.onramp);
  }

  /** An onramp's health for the API (undefined: no such onramp id). */
  onrampHealth(id: number): OnrampHealthView | undefined {
    return this.health.view(id);
  }

  /** Every checked onramp's health and probe counters, for the metrics. */
  healthMetrics(): OnrampHealthMetrics[] {
    return this.health.metrics();
  }

  /** A WireGuard device (listen address and port) for onramps added after it. */
  addWireGuardDevice(device: WireGuardDeviceConfig): void {
    this.wireguard.addDevice(device);
    this.devices.set(device.name, device);
  }

  /** Removes a WireGuard device no onramp uses any more. */
  removeWireGuardDevice(name: string): void {
    this.wireguard.removeDevice(name);
    this.devices.delete(name);
  }

  /**
   * The transports' part of a live configuration change (LiveConfig makes the pipeline's): brings the
   * WireGuard devices and every onramp's transport to `next`, under `ids` (the ones the pipeline uses).
   *
   *   onramps gone, renumbered, of another type, or on a device that is replaced ─ remove
   *   devices gone or changed (key, listen address, port) ─ remove;  devices new or changed ─ add
   *   onramps whose transport settings changed ─ update in place;  onramps new (or removed above) ─ add
   *
   * Removals come first, so a key, GRE tunnel or port freed by one entry can be taken by another. All or
   * nothing: when a step fails, the steps done are undone in reverse and an ApplyError names the onramp or device
   * and the kernel's or engine's reason. (An undone WireGuard removal comes back as a new peer: its peer makes a
   * new handshake.) Returns the ids of the onramps that are gone (their flows are the caller's to end).
   */
  applyTransports(next: TetherConfig, ids: ConfigIds): { removedIds: number[] } {
    const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
    const nextOnramps = new Map(next.onramps.map((o, i) => [o.name, { o, i }]));
    const nextDevices = new Map(next.wireguard_devices.map((d, i) => [d.name, { d, i }]));
    const replaced = new Set([...this.devices].filter(([name, d]) => nextDevices.has(name) && !same(d, nextDevices.get(name)!.d)).map(([name]) => name));

    const remove: Array<{ config: OnrampConfig; id: number }> = [];
    const update: Array<{ had: OnrampConfig; want: OnrampConfig; id: number; i: number }> = [];
    for (const [name, have] of this.onramps) {
      const want = nextOnramps.get(name);
      const onReplaced = have.config.type === 'wireguard' && replaced.has(have.config.wireguard.device);
      if (want === undefined || ids.onramps.get(name) !== have.id || want.o.type !== have.config.type || onReplaced) remove.push(have);
      else if (!same(typeSettings(have.config), typeSettings(want.o))) update.push({ had: have.config, want: want.o, id: have.id, i: want.i });
    }
    const removedNames = new Set(remove.map((r) => r.config.name));
    const add = next.onramps.map((o, i) => ({ o, i })).filter(({ o }) => !this.onramps.has(o.name) || removedNames.has(o.name));

    const undo: Array<() => void> = [];
    const step = (path: string, what: string, run: () => void, back: () => void): void => {
      try {
        run();
      } catch (e) {
        const message = (e as Error).message;
        throw new ApplyError(path, message.startsWith(what) ? message : `${what}: ${message}`);
      }
      undo.push(back);
    };
    try {
      for (const r of remove) {
        const t = this.transportOf(r.config);
        step('onramps', `onramp ${r.config.name}`, () => t.remove(r.id), () => t.add(r.config, r.id));
      }
      for (const [name, d] of this.devices) {
        if (nextDevices.has(name) && !replaced.has(name)) continue;
        step('wireguard_devices', `wireguard device ${name}`, () => this.wireguard.removeDevice(name), () => this.wireguard.addDevice(d));
      }
      for (const { d, i } of nextDevices.values()) {
        if (this.devices.has(d.name) && !replaced.has(d.name)) continue;
        step(`wireguard_devices[${i}]`, `wireguard device ${d.name}`, () => this.wireguard.addDevice(d), () => this.wireguard.removeDevice(d.name));
      }
      for (const u of update) {
        // Inside the step: a transport that refuses (an ipsec psk_file it cannot read, an address taken) is an ApplyError.
        step(`onramps[${u.i}]`, `onramp ${u.want.name}`, () => this.transportOf(u.want).update(u.want, u.id), () => this.transportOf(u.had).update(u.had, u.id));
      }
      for (const { o, i } of add) {
        const id = ids.onramps.get(o.name);
        if (id === undefined) throw new ApplyError(`onramps[${i}]`, `onramp ${o.name}: no id`);
        step(`onramps[${i}]`, `onramp ${o.name}`, () => this.transportOf(o).add(o, id), () => this.transportOf(o).remove(id));
      }
    } catch (e) {
      for (let k = undo.length - 1; k >= 0; k--) {
        try {
          undo[k]();
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'undoing a failed configuration change');
        }
      }
      throw e;
    }

    const removedIds = remove.filter((r) => ids.onramps.get(r.config.name) !== r.id).map((r) => r.id);
    this.onramps.clear();
    this.tunnelAddresses.clearAll();
    for (const o of next.onramps) {
      const id = ids.onramps.get(o.name)!;
      this.onramps.set(o.name, { config: o, id });
      this.tunnelAddresses.set(id, o.health_check?.source);
    }
    this.devices.clear();
    for (const d of next.wireguard_devices) this.devices.set(d.name, d);
    if (ids !== this.ids) {
      for (const key of ['sites', 'onramps', 'onrampSite'] as const) {
        this.ids[key].clear();
        for (const [k, v] of ids[key]) this.ids[key].set(k, v);
      }
      this.ids.firewallRules = [...ids.firewallRules];
      this.ids.gatewayRules = [...ids.gatewayRules];
    }
    this.nextOnrampId = Math.max(this.nextOnrampId, Math.max(0, ...ids.onramps.values()) + 1);
    this.nextSiteId = Math.max(this.nextSiteId, Math.max(0, ...ids.sites.values(), ...ids.onrampSite.values()) + 1);
    return { removedIds };
  }

  // The transports are typed per onramp type; the union cannot be narrowed through the lookup, hence the cast.
  private transportOf(onramp: OnrampConfig): OnrampTransport<OnrampConfig> {
    return this.byType[onramp.type] as OnrampTransport<OnrampConfig>;
  }

  /** The onramp's site id: its named site's (a new name gets a new id), or a site of its own. */
  private siteOf(onramp: OnrampConfig, previous: OnrampConfig | null): number {
    if (previous !== null && previous.site === onramp.site) {
      const kept = this.ids.onrampSite.get(onramp.name);
      if (kept !== undefined) return kept;
    }
    if (onramp.site !== undefined) {
      const named = this.ids.sites.get(onramp.site);
      if (named !== undefined) return named;
    }
    if (this.nextSiteId > MAX_SITE_ID) throw new Error(`onramp ${onramp.name}: no site id left`);
    const id = this.nextSiteId++;
    if (onramp.site !== undefined) this.ids.sites.set(onramp.site, id);
    return id;
  }

  private remember(onramp: OnrampConfig, id: number, site: number): void {
    this.onramps.set(onramp.name, { config: onramp, id });
    this.offload?.invalidate();
    this.tunnelAddresses.set(id, onramp.health_check?.source);
    this.ids.onramps.set(onramp.name, id);
    this.ids.onrampSite.set(onramp.name, site);
  }

  // --- receive, process, deliver --------------------------------------------------------------------------

  private readonly onReadError = (err: Error): void => {
    this.log.error({ err: err.message }, 'TUN read failed');
  };

  /**
   * Installs (or, with null, removes) a capture's tap: it sees each batch of inner packets as received, before
   * the pipeline, and as processed, before delivery (control/capture.ts's CaptureHub).
   */
  setCaptureTap(tap: CaptureTap | null): void {
    this.captureTap = tap;
    // The tap must see every packet: nothing is offloaded while it runs.
    this.offload?.setPaused(tap !== null);
  }

  /** Installs (or removes) an outer capture's tap on the underlay's reads and writes (`tether capture --outer`). */
  setOuterCaptureTap(tap: OuterTap | null): void {
    this.underlay.setOuterTap(tap);
  }

  /**
   * The periodic expiry pass. A flow whose wait for a name ends here (the gateway's classify fallback) may release
   * its held packets or reset both ends: those land in the pipeline's generated batch and are delivered now.
   */
  private readonly onExpire = (): void => {
    const now = performance.now();
    // The cache's hits first: a flow that carried packets since the last pass is touched, never expired.
    this.offload?.sync(now);
    this.pipeline.expire(now);
    const generated = this.pipeline.generated;
    if (generated.count === 0) return;
    const tap = this.captureTap;
    if (tap !== null) tap.after(generated, now, false);
    this.deliver(generated, now);
    generated.clear();
    this.underlay.flushTx();
    this.wireguard.scheduleTimers();
  };

  /** Egress and interconnect TUNs: the batch is already tagged with its port. */
  private readonly onPlain = (batch: PacketBatch): void => {
    if (this.laneCount > 1) {
      this.drainRings();
      this.handOff(batch);
    }
    this.processPlain(batch);
  };

  /** `handed`: packets another lane handed here, which stay here (lane-ownership.ts: never handed on). */
  private processPlain(batch: PacketBatch, handed = false): void {
    const now = performance.now();
    const tap = this.captureTap;
    if (tap !== null) tap.before(batch, now);
    const lanes = this.pipeline.lanes;
    const offload = this.offload;
    if (handed && lanes !== null) {
      lanes.handedIn = true;
      this.pipeline.process(batch, now);
      lanes.handedIn = false;
    } else if (offload !== null) {
      offload.beforeProcess(batch);
      this.pipeline.process(batch, now);
      offload.afterProcess(batch);
    } else {
      this.pipeline.process(batch, now);
    }
    if (tap !== null) tap.after(batch, now, true);
    this.afterProcess(batch, tap);
  }

  /**
   * Lanes: the packets from the Internet that another lane's NAT slice owns go to that lane's ring, in the order
   * read (so each flow stays in order); the batch keeps the rest, compacted by index (the bytes do not move).
   */
  private handOff(batch: PacketBatch): void {
    const n = batch.count;
    let kept = 0;
    let moved = 0;
    for (let i = 0; i < n; i++) {
      const owner = batch.ingress[i] === PORT_INTERNET ? this.steering.ownerOf(batch, i) : -1;
      const ring = owner < 0 ? null : this.toLane[owner];
      if (ring === null || ring === undefined) {
        if (kept !== i) moveSlot(batch, i, kept);
        kept++;
        continue;
      }
      if (ring.push(batch, i)) this.counters[EdgeCounter.LaneHandedOff]++;
      else this.counters[EdgeCounter.LaneRingFull]++;
      moved++;
      // Its later fragments, which carry no port, follow it from here (and those this lane already holds go now).
      if (this.steering.firstFragment) {
        this.pipeline.steeredFirstFragment(batch.data, batch.offset[i], batch.length[i], PORT_INTERNET, owner, performance.now());
        this.counters[EdgeCounter.LaneFragmentsSteered] = this.pipeline.lanes!.fragmentsSteered;
      }
    }
    if (moved === 0) return;
    batch.count = kept;
    for (const ring of this.toLane) ring?.publish();
  }

  /**
   * Processes what other lanes handed to this one (each ring in its order, a run of one kind at a time): handoffs
   * through the pipeline; deliveries (lane 0: packets other lanes forwarded to a tunnel onramp) straight to their
   * next hop's transport, the batch's finishers and writes (afterProcess), without a second pipeline pass.
   */
  private drainRings(): void {
    const batch = this.handoffBatch;
    for (const ring of this.fromLane) {
      for (;;) {
        batch.count = 0;
        if (ring.pop(batch, this.counters, EdgeCounter.LaneHandoffTooLong) === 0) break;
        if (ring.delivery) {
          this.counters[EdgeCounter.LaneDeliveredForLanes] += batch.count;
          // No capture tap: the lane that forwarded these tapped them then (docs/CAPTURE.md "Lanes": once each).
          this.afterProcess(batch, null);
          continue;
        }
        this.counters[EdgeCounter.LaneReceived] += batch.count;
        this.processPlain(batch, true);
      }
    }
  }

  /** One early fragment this lane held, whose first fragment went to `lane` (Pipeline.onHandHeld): into that lane's ring. */
  private readonly heldScratch = new PacketBatch(1);
  private readonly handHeld = (data: Uint8Array, offset: number, length: number, ingress: number, lane: number): void => {
    const ring = this.toLane[lane];
    const scratch = this.heldScratch;
    scratch.clear();
    if (ring === null || ring === undefined || scratch.push(data, offset, length, ingress) < 0) return;
    if (ring.push(scratch, 0)) this.counters[EdgeCounter.LaneHandedOff]++;
    else this.counters[EdgeCounter.LaneRingFull]++;
  };

  /** Waits on a ring's doorbell while this lane has nothing to read (a handoff must not wait for the next TUN read). */
  private async drainLoop(ring: HandoffRing): Promise<void> {
    const [bell, index] = ring.bellWord;
    while (this.running) {
      const rang = ring.bell;
      this.drainRings();
      await waitWhile(bell, index, rang, LANE_IDLE_WAIT_MS);
    }
  }

  private readonly onUnderlay = (batch: PacketBatch): void => {
    const now = performance.now();
    const j = this.underlay.demux(batch, now);
    batch.count = j;
    const tap = this.captureTap;
    if (j > 0) {
      if (tap !== null) tap.before(batch, now);
      this.pipeline.process(batch, now);
      if (tap !== null) tap.after(batch, now, true);
    }
    this.afterProcess(batch, tap);
  };

  /**
   * Lanes: the packets the pipeline found owned by another lane (no flow here; the directory, or a hairpin's port
   * slice, names the owner: lane-ownership.ts) go to that lane's ring, in batch order, so each flow stays in order.
   * The pipeline left them undelivered (NEXT_HOP_DROP, no drop reason).
   */
  private handMisses(batch: PacketBatch): void {
    const lanes = this.pipeline.lanes!;
    for (let k = 0; k < lanes.count; k++) {
      const ring = this.toLane[lanes.lane[k]];
      if (ring === null || ring === undefined) continue;
      if (ring.push(batch, lanes.index[k])) this.counters[EdgeCounter.LaneHandedOff]++;
      else this.counters[EdgeCounter.LaneRingFull]++;
    }
    lanes.count = 0;
    this.counters[EdgeCounter.LaneFragmentsSteered] = lanes.fragmentsSteered;
    for (const ring of this.toLane) ring?.publish();
  }

  private afterProcess(batch: PacketBatch, tap: CaptureTap | null): void {
    const now = performance.now();
    if (this.pipeline.lanes !== null && this.pipeline.lanes.count > 0) this.handMisses(batch);
    if (batch.count > 0) this.deliver(batch, now);
    if (this.pipeline.generated.count > 0) {
      // Packets the pipeline emitted (released fragments, time exceeded): delivered once. Cleared here, not only
      // when the next process() starts: a read whose packets the underlay consumed entirely (handshakes) runs
      // afterProcess without process(), and would send them again. A capture sees them as sent only (early
      // fragments were held when received; the edge's own errors were never received).
      if (tap !== null) tap.after(this.pipeline.generated, now, false);
      this.deliver(this.pipeline.generated, now);
      this.pipeline.generated.clear();
    }
    if (this.feedback.count > 0) {
      // Errors the edge originated (one round: an ICMP error never causes another, RFC 1122 3.2.2).
      this.pipeline.processOwn(this.feedback, now);
      this.deliver(this.feedback, now);
      this.feedback.clear();
    }
    this.underlay.flushTx();
    this.wireguard.scheduleTimers();
    this.health.afterPackets();
  }

  /** Packets the edge originates (health probes, next hop set per packet) into their onramps' transports. */
  private sendOwn(batch: PacketBatch): void {
    if (!this.running) return;
    this.deliver(batch, performance.now());
    this.underlay.flushTx();
    this.wireguard.scheduleTimers();
  }

  /**
   * Per packet, its next hop's transport; one write per TUN at the end. A super-packet or partial checksum bound
   * for a next hop without offloads is made plain first (SoftwareGso): a partial checksum is completed in place; a
   * super-packet's segments are delivered as a round of their own right where it stood, after what came before
   * it in the batch is written (pending), so each flow's packets leave in order.
   */
  private deliver(batch: PacketBatch, now: number): void {
    const outputs = this.outputs;
    const delivery = this.delivery;
    const gso = this.softwareGso;
    outputs.reset();
    const n = batch.count;
    let pending = false;
    for (let i = 0; i < n; i++) {
      const hop = batch.nextHop[i];
      if (hop === NEXT_HOP_DROP) continue;
      const transport = delivery.of(hop);
      if (transport === null) {
        this.counters[EdgeCounter.NoDelivery]++;
        continue;
      }
      if (batch.offloaded(i) && transport.acceptsOffload?.(hop) !== true) {
        if (gso.isSuper(batch, i)) {
          if (pending) {
            outputs.flush(batch);
            outputs.reset();
            pending = false;
          }
          this.deliverSegments(batch, i, hop, transport, now);
          continue;
        }
        if (!gso.complete(batch, i)) continue;
      }
      transport.deliver(batch, i, hop, now);
      pending = true;
    }
    outputs.flush(batch);
  }

  /** Super-packet i of `batch`, cut into segments, each delivered to `transport` (rounds of SEGMENT_CAPACITY). */
  private deliverSegments(batch: PacketBatch, i: number, hop: number, transport: Deliverer, now: number): void {
    const gso = this.softwareGso;
    const outputs = this.outputs;
    const total = gso.begin(batch, i);
    for (let from = 0; from < total; ) {
      const m = gso.fill(batch, i, from, total, hop);
      const segments = gso.segments;
      for (let s = 0; s < m; s++) transport.deliver(segments, s, hop, now);
      outputs.flush(segments);
      outputs.reset();
      from += m;
    }
  }
}
