/**
 * Prometheus metrics (docs/OBSERVABILITY.md), collected at scrape time from the engines' own counters.
 *
 *   packet path ── increments typed-array counters it already keeps (PipelineCounters, GRE and
 *                  WireGuard drops, the edge's counters, the flow tables' per-port live counts)
 *   GET /metrics ─ metricsText(registry) ─ every metric's collect() reads those arrays once and
 *                  sets its label sets ─ text exposition format
 *
 * Nothing here runs per packet: the data plane knows nothing of prom-client, labels or strings,
 * and a scrape costs O(configured onramps + drop reasons + pool addresses), independent of the
 * packet rate. Counters are Float64Array values that never wrap; they are reported as they are
 * (the metric is reset and refilled on each scrape, so removed onramps simply disappear).
 *
 * Labels carry names, not ids, where a name exists (NameBook below): `onramp` is the onramp's
 * name, "internet" for the Internet egress (port 0); `site` is the site's name, the onramp's own
 * name for an onramp configured without a site (it is a site of its own), "internet" for port 0.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { DROP_REASON_COUNT, DROP_REASON_NAMES } from '../common/drop-reasons.js';
import { CLASSIFY_OUTCOME_COUNT, CLASSIFY_OUTCOME_NAMES } from '../dataplane/classify.js';
import { PORT_INTERNET } from '../common/ids.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import type { Pipeline, PipelineCounters } from '../dataplane/pipeline.js';
import type { OnrampSpec } from '../dataplane/ports.js';
import type { PortUsage } from '../nat/snat-pool.js';
import { GRE_DROP_NAMES } from '../onramp/gre/index.js';
import { WG_DROP_NAMES } from '../onramp/wireguard/index.js';
import type { ConfigIds, TetherConfig } from '../config/index.js';
import type { OnrampHealthView } from './apply.js';
import type { IkeSaStatus } from '../onramp/ipsec/types.js';

/** busyPoll.spinNs is in nanoseconds; Prometheus counts seconds. */
const NS_PER_SECOND = 1e9;

/** Label value of the Internet egress (port 0), as onramp and as site. */
export const INTERNET_NAME = 'internet';

/** Content type of metricsText()'s answer (Prometheus text exposition format 0.0.4). */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** Turns the data plane's ids into the names people configured. */
export interface Names {
  onramp(id: number): string;
  site(id: number): string;
  /** A firewall rule's configured name, if it has one. */
  rule(id: number): string | undefined;
  /**
   * The name of onramp `id`'s site as the configuration last named it: still known between an onramp's removal
   * (the pipeline's port forgets its site) and the next update() (the flow log names its ended flows' sites).
   */
  onrampSite?(id: number): string | undefined;
}

/**
 * Names from the configuration (assignIds), with the pipeline's own onramp specs as a fallback
 * (an onramp added live through the API carries its name in its spec). Call update() after a
 * configuration change. An id nobody names is reported as its number.
 */
export class NameBook implements Names {
  private onramps = new Map<number, string>();
  private sites = new Map<number, string>();
  private rules = new Map<number, string>();
  /** Onramp id → its site's id. */
  private siteOf = new Map<number, number>();

  constructor(private readonly pipeline: Pipeline | null = null, cfg?: TetherConfig, ids?: ConfigIds) {
    if (cfg !== undefined || ids !== undefined) this.update(cfg, ids);
  }

  /** Rebuilds the maps; `ids` is required unless cfg is given (then assignIds' result is expected). */
  update(cfg: TetherConfig | undefined, ids: ConfigIds | undefined): void {
    const onramps = new Map<number, string>();
    const sites = new Map<number, string>();
    const rules = new Map<number, string>();
    const siteOf = new Map<number, number>();
    if (ids !== undefined) {
      for (const [name, id] of ids.onramps) onramps.set(id, name);
      for (const [name, site] of ids.onrampSite) {
        const id = ids.onramps.get(name);
        if (id !== undefined) siteOf.set(id, site);
      }
      for (const [name, id] of ids.sites) sites.set(id, name);
      // An onramp without a site is a site of its own: name that site after the onramp.
      for (const [name, site] of ids.onrampSite) if (!sites.has(site)) sites.set(site, name);
      if (cfg !== undefined) {
        cfg.firewall.rules.forEach((r, i) => {
          if (r.name !== undefined && ids.firewallRules[i] !== undefined) rules.set(ids.firewallRules[i], r.name);
        });
      }
    }
    this.onramps = onramps;
    this.sites = sites;
    this.rules = rules;
    this.siteOf = siteOf;
  }

  onramp(id: number): string {
    if (id === PORT_INTERNET) return INTERNET_NAME;
    return this.onramps.get(id) ?? this.pipeline?.ports.get(id)?.name ?? String(id);
  }

  site(id: number): string {
    return this.sites.get(id) ?? String(id);
  }

  rule(id: number): string | undefined {
    return this.rules.get(id);
  }

  onrampSite(id: number): string | undefined {
    const site = this.siteOf.get(id);
    return site === undefined ? undefined : this.site(site);
  }
}

/**
 * One ESP child SA's data-path counters (the ESP transport keeps them per SA; the IKE engine's IkeSaStatus has the
 * negotiated side). Joined to IkeSaStatus.children by `spiIn`. Hex SPIs, as IkeSaStatus writes them.
 */
export interface EspSaCounters {
  onramp: number;
  spiIn: string;
  spiOut: string;
  /** Inbound: packets and bytes whose ICV verified (decrypted); outbound: sealed and sent. */
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  /** RFC 4303 §3.4.3: sequence numbers already seen or left of the window, dropped before decryption. */
  replayDrops: number;
  /** Integrity check failures (RFC 4303 §3.4.4): forged, corrupted or wrong-key packets. */
  icvFailures: number;
}

/** IPsec drops by reason, as GET /v1/stats shows them (docs/API.md "IPsec status"). */
export interface IpsecDropStats {
  /** The IKE engine's drops and refusals by reason (ike-drop.ts names), non-zero only. */
  ike: Record<string, number>;
  /** The ESP data path's drops by reason (esp/drops.ts names), non-zero only. */
  esp: Record<string, number>;
  /** Throws of the IKE engine that the daemon's guard caught (a bug if ever non-zero; the message was dropped). */
  engineErrors: number;
  /** Half-open responder IKE SAs now (between IKE_SA_INIT and IKE_AUTH). */
  halfOpen: number;
}

/** The edge's status as the API and the metrics read it (the daemon's Edge answers it). */
export interface EdgeStatus {
  /** Per TUN the edge owns; gsoIn/gsoOut: GSO super-packets read and written (TUNs with offloads; each is one packet). */
  tuns: Array<{ name: string; packetsIn: number; packetsOut: number; dropsBusy: number; gsoIn?: number; gsoOut?: number; offloads?: boolean }>;
  /** The busy poll of the daemon's TUNs (docs/PERFORMANCE.md "Latency"): budget, spins, time spun, packets caught. */
  busyPoll?: { budgetUs: number; sessions: number; spinNs: number; packets: number };
  /** The native flow cache (docs/ARCHITECTURE.md "Native flow cache"): entries, hits, installs, punts; absent when off. */
  flowCache?: { entries: number; hits: number; hitBytes: number; installs: number; punts: number; removals: number; flushes: number; wakeupsWithoutJs: number; followReads: number; followPackets: number };
  edge: Record<string, number>;
  /** Lanes: each lane's own `lane_*` edge counters, lane 0 first (`edge` sums them; daemon/lanes.ts mergeLaneStatus). */
  laneCounters?: Array<Record<string, number>>;
  pipelineDrops: Record<string, number>;
  greDrops: Record<string, number>;
  wireguard: Array<{ device: string; drops: Record<string, number>; peers: Array<{ onramp: number; hasSession: boolean; endpoint: string | null }> }>;
  flows: { ipv4: number; ipv6: number };
  /** The ICMP the edge originates as a hop (docs/OBSERVABILITY.md): time exceeded sent and not sent, echo answered. */
  icmp: { timeExceededSent: number; rateLimited: number; noSource: number; echoAnswered: number };
  /** The gateway's DNS stage (docs/GATEWAY.md): queries decided, answered by the edge, unparsed, answers lost. */
  gatewayDns?: { decided: number; answered: number; unparsed: number; answerLost: number };
  /** IKE SAs of ipsec onramps (the IKE engine's status()) (transports/ipsec-onramps.ts). */
  ipsec: IkeSaStatus[];
  /** Per child SA data-path counters (the ESP transport), joined to the IKE status on spiIn. */
  esp: EspSaCounters[];
  /** The kernel's drop counters of the devices the edge owns, non-zero kinds only (absent: not read). */
  kernelDrops?: KernelDeviceDrops[];
}

/**
 * The kernel's drop counters of one device the edge owns (docs/OBSERVABILITY.md, "Kernel drops"), read off the
 * packet path on a timer: a TUN's tx_dropped is its queue toward the daemon overflowing.
 */
export interface KernelDeviceDrops {
  device: string;
  /** What the device is to the edge: 'underlay' (every tunnel onramp's outer packets), 'egress', 'interconnect'. */
  role: string;
  /** The onramps whose packets pass through it (port ids; 0 is the Internet egress). */
  onramps: number[];
  /** Count by kind (sysfs statistics file name: tx_dropped, rx_dropped, ...). */
  drops: Record<string, number>;
}

/** One onramp's health and probe counters (the daemon's health driver answers them). */
export interface OnrampHealthSample extends OnrampHealthView {
  onramp: number;
  probesSent: number;
  /** Probes without a reply by their timeout. */
  probesLost: number;
  repliesMatched: number;
  siteProbesAnswered: number;
  transitions: number;
}

export const HEALTH_STATES: ReadonlyArray<OnrampHealthView['state']> = ['healthy', 'degraded', 'down'];
export const IKE_SA_STATES: ReadonlyArray<IkeSaStatus['state']> = ['idle', 'connecting', 'established', 'rekeying', 'deleting'];

/**
 * The part of the running edge the metrics read, handed in by the daemon (control never imports the daemon;
 * structural, so tests can pass a stand-in).
 */
export interface EdgeMetricsSource {
  readonly gre: { readonly drops: ArrayLike<number> };
  /** The edge's own counters, and their names by index. */
  readonly counters: ArrayLike<number>;
  readonly counterNames: readonly string[];
  status(): EdgeStatus;
  /** Tunnel health per checked onramp (docs/HEALTH.md); absent: no health metrics. */
  healthMetrics?(): OnrampHealthSample[];
  /** The kernel's drop counters of the edge's devices (every kind, zeros included); absent: no kernel-drop metric. */
  kernelDrops?(): KernelDeviceDrops[];
}

/**
 * One lane's per-onramp counters and NAT gauges (docs/ARCHITECTURE.md "Lanes"): every lane other than lane 0 posts
 * them with its status (LANE_STATUS_INTERVAL_MS) and lane 0's metrics and /v1/stats add them to its own. Ports are
 * the Internet egress and the configured onramps only (what the metrics report), so a post is small.
 */
export interface LaneCounters {
  lane: number;
  /** Per port id: PORT_FIELDS' values in that order. */
  ports: Record<number, number[]>;
  /** Pipeline drops by reason (DROP_REASON_NAMES' order). */
  drops: number[];
  flows: { ipv4: number; ipv6: number };
  /** This lane's NAT slice: each address and protocol's ports in use and its slice's size (null: no egress pool). */
  nat: { ports: PortUsage[]; mappings: number } | null;
  /** The pipeline's scalar counters, LANE_SCALARS' order. */
  scalars: number[];
  /** Firewall and gateway rule hits by rule id (ids with hits only), classify outcomes (CLASSIFY_OUTCOME_NAMES' order), DLP matches by profile. */
  firewallRuleHits: Record<number, number>;
  gatewayRuleHits: Record<number, number>;
  classifyOutcomes: number[];
  dlpMatches: Array<[string, number]>;
  /** The gateway's classify gauges now: flows waiting for a name, classify slots holding client payload. */
  classifying: { waiting: number; holding: number };
}

/** The pipeline's scalar counters each lane posts, summed with lane 0's in /metrics. */
export const LANE_SCALARS = [
  'icmpErrorsTranslated', 'fragmentsHeld', 'fragmentsFollowed', 'icmpTimeExceededSent', 'icmpErrorsRateLimited',
  'icmpErrorsNoSource', 'icmpEchoAnswered', 'gatewayResets', 'gatewayDnsQueries', 'gatewayDnsAnswered',
  'gatewayDnsUnparsed', 'gatewayDnsAnswerLost', 'dlpFlowsScanned', 'dlpBytesScanned', 'dlpPoolEmpty', 'dlpFlowsCut',
  'flowsReevaluated', 'flowsCutByPolicy',
] as const satisfies ReadonlyArray<keyof PipelineCounters>;
export type LaneScalar = (typeof LANE_SCALARS)[number];

/** The ids of `hits` with a non-zero count (a rule-hit array is 65,536 long; a lane posts only what it counted). */
function nonZero(hits: Float64Array): Record<number, number> {
  const out: Record<number, number> = {};
  for (let id = 0; id < hits.length; id++) if (hits[id] !== 0) out[id] = hits[id];
  return out;
}

/** The per-port fields of LaneCounters.ports, in order. */
export const LanePort = Object.freeze({ RxPackets: 0, TxPackets: 1, RxBytes: 2, TxBytes: 3, RxDrops: 4, FlowsCreated: 5, FlowsEnded: 6, FlowsActive: 7 });
export type LanePort = (typeof LanePort)[keyof typeof LanePort];

/** This lane's LaneCounters, read from its pipeline (control plane: allocates). */
export function laneCounters(pipeline: Pipeline, lane: number): LaneCounters {
  const c = pipeline.counters;
  const ports: Record<number, number[]> = {};
  for (const p of [PORT_INTERNET, ...pipeline.ports.list().map((s) => s.id)]) {
    ports[p] = [c.rxPackets[p], c.txPackets[p], c.rxBytes[p], c.txBytes[p], c.rxDrops[p], c.flowsCreated[p], c.flowsEnded[p],
      pipeline.flows4.flowsOfPort(p) + pipeline.flows6.flowsOfPort(p)];
  }
  const snat = pipeline.snat;
  return {
    lane,
    ports,
    drops: Array.from(c.drops),
    flows: { ipv4: pipeline.flows4.size, ipv6: pipeline.flows6.size },
    nat: snat === null ? null : { ports: snat.portsInUse(), mappings: snat.mappings },
    scalars: LANE_SCALARS.map((name) => c[name]),
    firewallRuleHits: nonZero(c.firewallRuleHits),
    gatewayRuleHits: nonZero(c.gatewayRuleHits),
    classifyOutcomes: Array.from(c.classifyOutcomes),
    dlpMatches: [...c.dlpMatches],
    classifying: { waiting: pipeline.classifyingFlows, holding: pipeline.classifySlotsInUse },
  };
}

/** A port's field summed over the lanes (0 for a lane that has not posted it: an onramp it does not know yet). */
export function sumLanePort(lanes: readonly LaneCounters[], port: number, field: LanePort): number {
  let n = 0;
  for (const l of lanes) n += l.ports[port]?.[field] ?? 0;
  return n;
}

/** Flow-log health (flow-log.ts's FlowLogger fits). */
export interface FlowLogStats {
  readonly linesWritten: number;
  readonly linesDropped: number;
}

export interface MetricsOptions {
  pipeline: Pipeline;
  /** When given: GRE and WireGuard drops by reason, the edge's own counters, TUN packet counts. */
  edge?: EdgeMetricsSource;
  /** Id → name; default: a NameBook without configuration (onramp names from the pipeline, site ids as numbers). */
  names?: Names;
  /** Registers flow-log line counters. */
  flowLog?: FlowLogStats;
  /** Also Node's process metrics (CPU, memory, event-loop lag), prefixed tether_process_. Default false. */
  processMetrics?: boolean;
  /** Names for the GRE / WireGuard drop reasons and the edge counters (default: the engines' and the edge's own tables). */
  greDropNames?: readonly string[];
  wgDropNames?: readonly string[];
  edgeCounterNames?: readonly string[];
  /**
   * The other lanes' counters (daemon.lanes > 1): per-onramp packets, bytes, drops and flows, drops by reason, the
   * flow tables' sizes and the NAT gauges are lane 0's plus theirs, under the same names and labels.
   */
  lanes?: () => readonly LaneCounters[];
}

/** Site and onramp label values of a port. */
function portLabels(names: Names, port: number, spec: OnrampSpec | null): { site: string; onramp: string } {
  if (port === PORT_INTERNET || spec === null) return { site: INTERNET_NAME, onramp: INTERNET_NAME };
  return { site: names.site(spec.site), onramp: names.onramp(port) };
}

/** Protocol label text: tcp, udp, icmp, icmpv6, or the number. */
export function protocolName(protocol: number): string {
  switch (protocol) {
    case IPPROTO_TCP:
      return 'tcp';
    case IPPROTO_UDP:
      return 'udp';
    case IPPROTO_ICMP:
      return 'icmp';
    case IPPROTO_ICMPV6:
      return 'icmpv6';
    default:
      return String(protocol);
  }
}

/** Sets one label set's value during a scrape. */
type Emit = (labels: Record<string, string>, value: number) => void;

/**
 * A registry whose metrics are all filled on scrape from the engines' counters. Serve it at the
 * API's GET /metrics with metricsText(). Edge-only metrics exist only when `edge` is given.
 */
export function createMetrics(opts: MetricsOptions): Registry {
  const { pipeline } = opts;
  const names: Names = opts.names ?? new NameBook(pipeline);
  const registry = new Registry();
  const registers = [registry];
  const c = pipeline.counters;

  // Every metric is reset and refilled by its collect(), which prom-client calls on each scrape.
  const counter = (name: string, help: string, labelNames: string[], fill: (emit: Emit) => void): void => {
    const m: Counter<string> = new Counter({ name, help, labelNames, registers, collect: () => {
      m.reset();
      fill((labels, v) => m.inc(labels, v));
    } });
  };
  const gauge = (name: string, help: string, labelNames: string[], fill: (emit: Emit) => void): void => {
    const m: Gauge<string> = new Gauge({ name, help, labelNames, registers, collect: () => {
      m.reset();
      fill((labels, v) => m.set(labels, v));
    } });
  };
  const NO_LABELS = {};
  const lanes = opts.lanes ?? ((): readonly LaneCounters[] => []);
  /** Lane 0's value of a per-port counter plus the other lanes'. */
  const allLanes = (own: (p: number) => number, field: LanePort) => (p: number): number => own(p) + sumLanePort(lanes(), p, field);
  /** Lane 0's scalar pipeline counter plus the other lanes'. */
  const total = (name: LaneScalar): number => {
    const k = LANE_SCALARS.indexOf(name);
    let n = c[name];
    for (const l of lanes()) n += l.scalars[k] ?? 0;
    return n;
  };
  /** Lane 0's per-rule or per-outcome counts plus the other lanes', by index (the lanes read once per series). */
  const totalsOf = (own: Float64Array, pick: (l: LaneCounters) => Record<number, number> | number[]): ((index: number) => number) => {
    const others = lanes().map(pick);
    return (index) => {
      let n = own[index];
      for (const o of others) n += o[index] ?? 0;
      return n;
    };
  };

  /** Ports to report: the Internet egress first, then every configured onramp (a fresh list per scrape). */
  const ports = (): Array<{ port: number; spec: OnrampSpec | null }> => [
    { port: PORT_INTERNET, spec: null },
    ...pipeline.ports.list().map((spec) => ({ port: spec.id, spec })),
  ];
  /** One value per port, labelled {site, onramp} or {onramp}. */
  const perPort = (value: (port: number) => number, withSite: boolean) => (emit: Emit): void => {
    for (const { port, spec } of ports()) {
      const l = portLabels(names, port, spec);
      emit(withSite ? l : { onramp: l.onramp }, value(port));
    }
  };
  const SITE_ONRAMP = ['site', 'onramp'];

  // --- flows -------------------------------------------------------------------------------------
  gauge('tether_flows_active', 'Live flows (IPv4 and IPv6) started by the onramp.', SITE_ONRAMP,
    perPort(allLanes((p) => pipeline.flows4.flowsOfPort(p) + pipeline.flows6.flowsOfPort(p), LanePort.FlowsActive), true));
  counter('tether_flows_created_total', 'Flows started by the onramp.', SITE_ONRAMP, perPort(allLanes((p) => c.flowsCreated[p], LanePort.FlowsCreated), true));
  counter('tether_flows_ended_total', 'Flows started by the onramp that ended (expired, evicted or deleted).', SITE_ONRAMP,
    perPort(allLanes((p) => c.flowsEnded[p], LanePort.FlowsEnded), true));
  counter('tether_flows_ended_onramp_removed_total', 'Flows ended at once because an onramp they came from, return to or lead to was removed.', [],
    (emit) => emit(NO_LABELS, c.flowsEndedByRemoval));
  gauge('tether_flow_table_flows', 'Live flows in the flow table of the address family.', ['family'], (emit) => {
    let v4 = pipeline.flows4.size;
    let v6 = pipeline.flows6.size;
    for (const l of lanes()) {
      v4 += l.flows.ipv4;
      v6 += l.flows.ipv6;
    }
    emit({ family: 'ipv4' }, v4);
    emit({ family: 'ipv6' }, v6);
  });
  gauge('tether_flow_table_capacity', 'Flows the flow table of the address family can hold (preallocated).', ['family'], (emit) => {
    emit({ family: 'ipv4' }, pipeline.flows4.capacity);
    emit({ family: 'ipv6' }, pipeline.flows6.capacity);
  });

  // --- packets and bytes -------------------------------------------------------------------------
  const byDirection = (rx: Float64Array, tx: Float64Array, rxField: LanePort, txField: LanePort) => (emit: Emit): void => {
    const others = lanes();
    for (const { port, spec } of ports()) {
      const onramp = portLabels(names, port, spec).onramp;
      emit({ onramp, direction: 'rx' }, rx[port] + sumLanePort(others, port, rxField));
      emit({ onramp, direction: 'tx' }, tx[port] + sumLanePort(others, port, txField));
    }
  };
  counter('tether_packets_total', 'Packets received from (rx) and forwarded to (tx) the onramp, at the pipeline.', ['onramp', 'direction'],
    byDirection(c.rxPackets, c.txPackets, LanePort.RxPackets, LanePort.TxPackets));
  counter('tether_bytes_total', 'IP bytes received from (rx) and forwarded to (tx) the onramp, at the pipeline.', ['onramp', 'direction'],
    byDirection(c.rxBytes, c.txBytes, LanePort.RxBytes, LanePort.TxBytes));

  // --- policy (docs/POLICY.md) ------------------------------------------------------------------------
  // One series per rule configured now (a removed rule's series go with it); `rule` is its name, or its id.
  counter('tether_firewall_rule_hits_total', 'First packets of flows the firewall rule decided at setup (allowed or denied); rule_id 0 is the default action.', ['rule_id', 'rule'], (emit) => {
    const hits = totalsOf(c.firewallRuleHits, (l) => l.firewallRuleHits);
    emit({ rule_id: '0', rule: 'default' }, hits(0));
    const fw = pipeline.firewall;
    for (let i = 0; i < fw.size; i++) {
      const id = fw.ruleId(i);
      emit({ rule_id: String(id), rule: names.rule(id) ?? String(id) }, hits(id));
    }
  });
  counter('tether_gateway_rule_hits_total', 'Flows and DNS queries the gateway rule decided.', ['rule_id', 'rule'], (emit) => {
    const hits = totalsOf(c.gatewayRuleHits, (l) => l.gatewayRuleHits);
    for (const r of pipeline.gateway?.spec.rules ?? []) emit({ rule_id: String(r.id), rule: r.name ?? String(r.id) }, hits(r.id));
  });
  gauge('tether_policy_epoch', 'The policy epoch: bumped by every firewall or gateway change; established flows from an older one are decided again at their next packet.', [],
    (emit) => emit(NO_LABELS, pipeline.policyEpoch));
  counter('tether_flows_reevaluated_total', 'Established flows decided again under a new policy epoch.', [], (emit) => emit(NO_LABELS, total('flowsReevaluated')));
  counter('tether_flows_cut_by_policy_total', 'Established flows cut because a new policy epoch no longer allows them.', [], (emit) => emit(NO_LABELS, total('flowsCutByPolicy')));

  // --- drops -------------------------------------------------------------------------------------
  counter('tether_drops_total', 'Packets the pipeline dropped, by reason.', ['reason'], (emit) => {
    const others = lanes();
    for (let r = 1; r < DROP_REASON_COUNT; r++) {
      const reason = DROP_REASON_NAMES[r];
      let n = c.drops[r];
      for (const l of others) n += l.drops[r] ?? 0;
      if (reason !== undefined) emit({ reason }, n);
    }
  });
  counter('tether_port_drops_total', 'Packets the pipeline dropped, by the onramp they came in on.', ['onramp'], perPort(allLanes((p) => c.rxDrops[p], LanePort.RxDrops), false));
  counter('tether_icmp_errors_translated_total', 'ICMP errors matched to a flow by their embedded header and forwarded (RFC 5508).', [],
    (emit) => emit(NO_LABELS, total('icmpErrorsTranslated')));
  counter('tether_icmp_errors_sent_total', 'ICMP errors the edge originated: time exceeded (TTL / hop limit would reach zero, RFC 792, RFC 4443 section 3.3).', ['type'],
    (emit) => emit({ type: 'time_exceeded' }, total('icmpTimeExceededSent')));
  counter('tether_icmp_errors_suppressed_total', 'ICMP errors the edge did not send: rate_limited (a token bucket was empty, RFC 1812 section 4.3.2.8) or no_source (no edge address of the family).', ['reason'],
    (emit) => {
      emit({ reason: 'rate_limited' }, total('icmpErrorsRateLimited'));
      emit({ reason: 'no_source' }, total('icmpErrorsNoSource'));
    });
  counter('tether_icmp_echo_answered_total', 'ICMP echo requests to an egress pool address answered by the edge itself (no flow, no NAT state).', [],
    (emit) => emit(NO_LABELS, total('icmpEchoAnswered')));
  counter('tether_gateway_classify_total', 'TCP flows that waited for a name (SNI, Host), by how the wait ended (docs/POLICY.md, "Hostname rules: how a flow is classified").', ['outcome'],
    (emit) => {
      const outcomes = totalsOf(c.classifyOutcomes, (l) => l.classifyOutcomes);
      for (let o = 0; o < CLASSIFY_OUTCOME_COUNT; o++) emit({ outcome: CLASSIFY_OUTCOME_NAMES[o] }, outcomes(o));
    });
  // Each lane classifies its own flows in its own slots: the gauges add up (the other lanes' as last posted).
  gauge('tether_gateway_classifying_flows', 'TCP flows waiting for a name now, and those holding client payload in a classify slot.', ['state'], (emit) => {
    let waiting = pipeline.classifyingFlows;
    let holding = pipeline.classifySlotsInUse;
    for (const l of lanes()) {
      waiting += l.classifying.waiting;
      holding += l.classifying.holding;
    }
    emit({ state: 'waiting' }, waiting);
    emit({ state: 'holding' }, holding);
  });
  counter('tether_gateway_resets_total', 'Flows the gateway cut with a reset to each end (a block by name, a blocking fallback).', [],
    (emit) => emit(NO_LABELS, total('gatewayResets')));
  counter('tether_gateway_dns_queries_total', 'UDP/53 datagrams of port-53 flows the gateway read while rules read DNS names (docs/GATEWAY.md): decided (a query with one question, decided by the rules), answered (by the edge: NXDOMAIN or an override), unparsed (no query it could read: forwarded), answer_lost (no room to send the answer: the query was not forwarded).', ['result'],
    (emit) => {
      emit({ result: 'decided' }, total('gatewayDnsQueries'));
      emit({ result: 'answered' }, total('gatewayDnsAnswered'));
      emit({ result: 'unparsed' }, total('gatewayDnsUnparsed'));
      emit({ result: 'answer_lost' }, total('gatewayDnsAnswerLost'));
    });
  counter('tether_fragments_held_total', 'Non-first fragments held until their first fragment arrived.', [],
    (emit) => emit(NO_LABELS, total('fragmentsHeld')));
  counter('tether_fragments_followed_total', 'Non-first fragments forwarded along their first fragment\'s flow.', [],
    (emit) => emit(NO_LABELS, total('fragmentsFollowed')));

  // --- DLP (docs/POLICY.md "DLP profiles") --------------------------------------------------------
  counter('tether_dlp_flows_scanned_total', 'TCP flows whose gateway rule names DLP profiles and that got a scan slot.', [],
    (emit) => emit(NO_LABELS, total('dlpFlowsScanned')));
  counter('tether_dlp_bytes_scanned_total', 'Bytes of payload scanned by DLP, both directions.', [],
    (emit) => emit(NO_LABELS, total('dlpBytesScanned')));
  counter('tether_dlp_not_scanned_total', 'Flows DLP should have scanned but did not: the scan pool was full (forwarded unscanned).', [],
    (emit) => emit(NO_LABELS, total('dlpPoolEmpty')));
  counter('tether_dlp_flows_cut_total', 'Flows cut (reset both ways) by a block DLP profile.', [],
    (emit) => emit(NO_LABELS, total('dlpFlowsCut')));
  counter('tether_dlp_matches_total', 'DLP profile matches (each profile at most once per flow direction), by profile.', ['profile'],
    (emit) => {
      const sums = new Map(c.dlpMatches);
      for (const l of lanes()) for (const [profile, n] of l.dlpMatches) sums.set(profile, (sums.get(profile) ?? 0) + n);
      for (const [profile, n] of sums) emit({ profile }, n);
    });

  // --- onramps -----------------------------------------------------------------------------------
  gauge('tether_onramp_up', 'Onramp health: 1 up, 0 down (the Internet egress is always 1).', ['onramp', 'type', 'site'], (emit) => {
    for (const { port, spec } of ports()) {
      const l = portLabels(names, port, spec);
      emit({ onramp: l.onramp, site: l.site, type: spec === null ? INTERNET_NAME : spec.type }, pipeline.ports.up[port]);
    }
  });
  gauge('tether_onramp_arr', 'Automatic Return Routing on the onramp: 1 on (replies go back to the onramp that started the flow), 0 off.',
    SITE_ONRAMP, (emit) => {
      for (const spec of pipeline.ports.list()) emit({ onramp: names.onramp(spec.id), site: names.site(spec.site) }, pipeline.ports.arr[spec.id]);
    });

  // --- NAT ---------------------------------------------------------------------------------------
  const snat = pipeline.snat;
  if (snat !== null) {
    // With lanes each pool holds one lane's slice of every address's range: the slices' sums are the address's.
    const natPorts = (pick: (u: PortUsage) => number) => (emit: Emit): void => {
      const sums = new Map<string, { address: string; protocol: number; value: number }>();
      for (const usage of [snat.portsInUse(), ...lanes().map((l) => l.nat?.ports ?? [])]) {
        for (const u of usage) {
          const key = `${u.address} ${u.protocol}`;
          const sum = sums.get(key);
          if (sum === undefined) sums.set(key, { address: u.address, protocol: u.protocol, value: pick(u) });
          else sum.value += pick(u);
        }
      }
      for (const u of sums.values()) emit({ address: u.address, protocol: protocolName(u.protocol) }, u.value);
    };
    gauge('tether_nat_ports_in_use', 'External ports (ICMP: echo identifiers) of the egress pool address in use.', ['address', 'protocol'],
      natPorts((u) => u.used));
    gauge('tether_nat_ports_total', 'External ports (ICMP: echo identifiers) of the egress pool address that can be handed out.',
      ['address', 'protocol'], natPorts((u) => u.total));
    gauge('tether_nat_mappings', 'Live endpoint-independent NAT mappings (RFC 4787), shared by the flows of one internal endpoint.', [],
      (emit) => emit(NO_LABELS, lanes().reduce((n, l) => n + (l.nat?.mappings ?? 0), snat.mappings)));
  }

  // --- edge: tunnels and devices -----------------------------------------------------------------
  if (opts.edge !== undefined) {
    const edge = opts.edge;
    const greNames = opts.greDropNames ?? GRE_DROP_NAMES;
    const wgNames = opts.wgDropNames ?? WG_DROP_NAMES;
    const edgeNames = opts.edgeCounterNames ?? edge.counterNames;
    counter('tether_gre_drops_total', 'GRE packets the GRE onramp refused (decapsulation or encapsulation), by reason.', ['reason'], (emit) => {
      for (let r = 1; r < greNames.length; r++) emit({ reason: greNames[r] }, edge.gre.drops[r] ?? 0);
    });
    // status() builds a small object tree (control plane); each metric asks for its own.
    counter('tether_wireguard_drops_total', 'WireGuard datagrams or packets the device refused, by reason.', ['device', 'reason'], (emit) => {
      for (const d of edge.status().wireguard) {
        for (let r = 1; r < wgNames.length; r++) emit({ device: d.device, reason: wgNames[r] }, d.drops[wgNames[r]] ?? 0);
      }
    });
    gauge('tether_wireguard_peer_session', 'WireGuard peer of the onramp has a live session: 1 yes, 0 no.', ['device', 'onramp'], (emit) => {
      for (const d of edge.status().wireguard) {
        for (const p of d.peers) emit({ device: d.device, onramp: names.onramp(p.onramp) }, p.hasSession ? 1 : 0);
      }
    });
    counter('tether_tun_packets_total', 'Packets read from (rx) and written to (tx) the TUN device.', ['tun', 'direction'], (emit) => {
      for (const t of edge.status().tuns) {
        emit({ tun: t.name, direction: 'rx' }, t.packetsIn);
        emit({ tun: t.name, direction: 'tx' }, t.packetsOut);
      }
    });
    counter('tether_tun_gso_packets_total', 'GSO super-packets read from (rx) and written to (tx) a TUN with offloads; each is one of tether_tun_packets_total.', ['tun', 'direction'], (emit) => {
      for (const t of edge.status().tuns) {
        emit({ tun: t.name, direction: 'rx' }, t.gsoIn ?? 0);
        emit({ tun: t.name, direction: 'tx' }, t.gsoOut ?? 0);
      }
    });
    const kernelDrops = edge.kernelDrops?.bind(edge);
    if (kernelDrops !== undefined) {
      counter('tether_kernel_drops_total', 'Packets the kernel dropped at a device the edge owns, by kind (sysfs statistics: tx_dropped on a TUN is its queue toward tether overflowing).',
        ['device', 'role', 'kind'], (emit) => {
          for (const d of kernelDrops()) for (const [kind, v] of Object.entries(d.drops)) emit({ device: d.device, role: d.role, kind }, v);
        });
    }
    counter('tether_busy_poll_seconds_total', 'Time the daemon spent busy-polling its TUNs after a wakeup (daemon.busy_poll_us), the packets it caught meanwhile handled included.', [], (emit) => {
      const b = edge.status().busyPoll;
      if (b !== undefined) emit({}, b.spinNs / NS_PER_SECOND);
    });
    counter('tether_busy_poll_packets_total', 'Packets read while busy-polling, each a thread wakeup saved.', [], (emit) => {
      const b = edge.status().busyPoll;
      if (b !== undefined) emit({}, b.packets);
    });
    counter('tether_flow_cache_packets_total', 'Packets the native flow cache forwarded TUN to TUN without JavaScript (daemon.flow_cache).', [], (emit) => {
      const f = edge.status().flowCache;
      if (f !== undefined) emit({}, f.hits);
    });
    counter('tether_flow_cache_events_total', 'The native flow cache: entries installed, packets that matched but went to JavaScript (punts), entries removed, flushes, wakeups without JavaScript, follow-through reads of the TUN just written and the packets they found.', ['event'], (emit) => {
      const f = edge.status().flowCache;
      if (f === undefined) return;
      emit({ event: 'install' }, f.installs);
      emit({ event: 'punt' }, f.punts);
      emit({ event: 'remove' }, f.removals);
      emit({ event: 'flush' }, f.flushes);
      emit({ event: 'wakeup_without_js' }, f.wakeupsWithoutJs);
      emit({ event: 'follow_read' }, f.followReads);
      emit({ event: 'follow_packet' }, f.followPackets);
    });
    gauge('tether_flow_cache_entries', 'Flow directions installed in the native flow cache now.', [], (emit) => {
      const f = edge.status().flowCache;
      if (f !== undefined) emit({}, f.entries);
    });
    counter('tether_tun_busy_drops_total', 'Packets dropped because the TUN device was busy (its queue full).', ['tun'], (emit) => {
      for (const t of edge.status().tuns) emit({ tun: t.name }, t.dropsBusy);
    });
    const health = edge.healthMetrics?.bind(edge);
    if (health !== undefined) {
      const perOnramp = (value: (h: OnrampHealthSample) => number | null) => (emit: Emit): void => {
        for (const h of health()) {
          const v = value(h);
          if (v !== null) emit({ onramp: names.onramp(h.onramp) }, v);
        }
      };
      gauge('tether_onramp_health_state', 'Tunnel health: 1 for the state the onramp is in (healthy, degraded or down), 0 for the others.', ['onramp', 'state'], (emit) => {
        for (const h of health()) for (const state of HEALTH_STATES) emit({ onramp: names.onramp(h.onramp), state }, h.state === state ? 1 : 0);
      });
      gauge('tether_onramp_health_loss_ratio', 'Failed / all health samples of the last five minutes (0..1).', ['onramp'], perOnramp((h) => h.loss));
      gauge('tether_onramp_health_rtt_seconds', 'Smoothed round-trip time of the health probes (RFC 6298 SRTT); absent before the first reply.', ['onramp'],
        perOnramp((h) => (h.rtt_ms === null ? null : h.rtt_ms / 1000)));
      gauge('tether_onramp_route_penalty', 'Priority added to routes over the onramp by its health (0, 500000 degraded, 1000000 down).', ['onramp'], perOnramp((h) => h.penalty));
      counter('tether_onramp_health_probes_sent_total', 'Health probes (ICMP echo inside the tunnel) the edge sent.', ['onramp'], perOnramp((h) => h.probesSent));
      counter('tether_onramp_health_probes_lost_total', 'Health probes without a reply by their timeout.', ['onramp'], perOnramp((h) => h.probesLost));
      counter('tether_onramp_health_site_probes_answered_total', "The site's probes to the edge's tunnel address, answered.", ['onramp'], perOnramp((h) => h.siteProbesAnswered));
      counter('tether_onramp_health_transitions_total', 'Health state changes of the onramp (each is one log line).', ['onramp'], perOnramp((h) => h.transitions));
    }
    // IPsec (issue 9): series per IKE state of each ipsec onramp, and per child SA the data path holds. Every scrape
    // refills them (collect() resets first), so an SA's series go with the SA: at most a few child SAs per onramp
    // (the current one, and its successor during a rekey), never a growing history of SPIs.
    gauge('tether_ipsec_ike_sas', 'IKE SAs of the IPsec onramp, by state.', ['onramp', 'state'], (emit) => {
      const sas = edge.status().ipsec;
      for (const spec of pipeline.ports.list()) {
        if (spec.type !== 'ipsec') continue;
        for (const state of IKE_SA_STATES) emit({ onramp: names.onramp(spec.id), state }, sas.filter((sa) => sa.onramp === spec.id && sa.state === state).length);
      }
    });
    const perChild = (fill: (emit: Emit, c: EspSaCounters, labels: { onramp: string; spi: string }) => void) => (emit: Emit): void => {
      for (const c of edge.status().esp) fill(emit, c, { onramp: names.onramp(c.onramp), spi: c.spiIn });
    };
    counter('tether_ipsec_child_packets_total', 'ESP packets of the child SA (spi: its inbound SPI): verified and decrypted (in), sealed and sent (out).', ['onramp', 'spi', 'direction'],
      perChild((emit, c, l) => {
        emit({ ...l, direction: 'in' }, c.packetsIn);
        emit({ ...l, direction: 'out' }, c.packetsOut);
      }));
    counter('tether_ipsec_child_bytes_total', 'Inner bytes of the child SA\'s ESP packets, in and out.', ['onramp', 'spi', 'direction'],
      perChild((emit, c, l) => {
        emit({ ...l, direction: 'in' }, c.bytesIn);
        emit({ ...l, direction: 'out' }, c.bytesOut);
      }));
    counter('tether_ipsec_child_replay_drops_total', 'ESP packets the child SA\'s anti-replay window refused before decryption (RFC 4303 §3.4.3).', ['onramp', 'spi'],
      perChild((emit, c, l) => emit(l, c.replayDrops)));
    counter('tether_ipsec_child_icv_failures_total', 'ESP packets of the child SA whose integrity check failed (RFC 4303 §3.4.4).', ['onramp', 'spi'],
      perChild((emit, c, l) => emit(l, c.icvFailures)));
    counter('tether_edge_events_total', 'Edge events outside the pipeline (underlay demultiplexing, GRE MTU handling, echo replies), by kind.',
      ['event'], (emit) => {
        for (let k = 0; k < edgeNames.length; k++) emit({ event: edgeNames[k] }, edge.counters[k] ?? 0);
      });
  }

  // --- flow log ----------------------------------------------------------------------------------
  const log = opts.flowLog;
  if (log !== undefined) {
    counter('tether_flow_log_lines_total', 'Flow-log lines written (one per ended flow).', [], (emit) => emit(NO_LABELS, log.linesWritten));
    counter('tether_flow_log_dropped_total', 'Flow-log lines dropped because the writer fell behind (bounded buffer).', [],
      (emit) => emit(NO_LABELS, log.linesDropped));
  }

  if (opts.processMetrics === true) collectDefaultMetrics({ register: registry, prefix: 'tether_process_' });
  return registry;
}

/** The exposition text for GET /metrics (send it with METRICS_CONTENT_TYPE). */
export function metricsText(registry: Registry): Promise<string> {
  return registry.metrics();
}
