/**
 * Explain ("what would happen and why", docs/API.md): for a hypothetical packet — an onramp and a
 * 5-tuple — the decisions the pipeline would make, read from its current state without sending or
 * changing anything; and for an existing flow, the decision stored in it (the decision trail).
 *
 * Control plane: builds text and objects freely. The hypothetical packet is built as bytes and
 * inspected like any packet; a new flow's decision is the pipeline's own: Pipeline.decideSetup,
 * run with a SetupTrace and never committed (flow-setup.ts), so explain cannot drift from setup.
 * What only commit finds (a new mapping's external port, a clash's free port, room in the table)
 * is said as what it will be, not which.
 */
import { formatIpv4, formatIpv6, parseAddress } from '../wire/addr.js';
import { DROP_REASON_NAMES, Drop } from '../common/drop-reasons.js';
import { MAX_ONRAMP_ID, PORT_INTERNET, ZONE_GLOBAL } from '../common/ids.js';
import { FlowKey, type FlowTable } from '../flow/flow-table.js';
import { NextHopKind } from '../route/route-table.js';
import { buildIcmpEcho, buildIp, buildTcp, buildUdp } from '../wire/build.js';
import { AF_INET4, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_SYN } from '../wire/constants.js';
import { inspect } from '../wire/inspect.js';
import { PacketInfo } from '../wire/packet-info.js';
import { SetupDecision, SetupTrace } from './flow-setup.js';
import { GATEWAY_NO_RULE, NameSource } from '../gateway/policy.js';
import { DNS_PORT } from './dns-gate.js';
import { PENALTY_DOWN } from '../health/constants.js';
import { gatewayTrailText, gatewayWordRule } from './classify.js';
import {
  FLAG_ARR,
  FLAG_CLASH,
  FLAG_DNS,
  FLAG_FILTERED,
  FLAG_HAIRPIN,
  FLAG_POOL,
  FLAG_RENUMBER,
  FLAG_TRANSLATE,
  heldByFilter,
  mayReportTimeExceeded,
  RETURN_PORT_MASK,
  RETURN_REASONS,
  RETURN_REASON_SHIFT,
  tupleHash,
  type Pipeline,
} from './pipeline.js';
import type { FailoverPolicyName } from './ports.js';

export interface HypotheticalPacket {
  onramp: number;
  protocol: number;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  /** TTL / hop limit as the packet arrives (default 64): 1 or 0 shows what the edge does with an expiring packet. */
  ttl?: number;
  /** The name a TCP flow's first payload would carry (TLS SNI, or HTTP Host): what a hostname rule would decide. */
  sni?: string;
  host?: string;
}

export interface RouteChoice {
  id: number;
  prefix: string;
  nextHop: string;
  priority: number;
  weight: number;
  siteScope: number;
  /** Why this route: longest prefix, scope, priority and health, ECMP. */
  why: string;
}

export interface Explanation {
  packet: HypotheticalPacket;
  verdict: 'forward' | 'drop';
  /** Drop reason name when verdict is drop. */
  dropReason: string | null;
  /** The port the packet would leave on (0 = the Internet egress), when forwarded. */
  nextHop: number | null;
  /** An existing flow the packet belongs to, if any (then no policy or route lookup happens). */
  flow: FlowDetail | null;
  firewall: { ruleId: number; action: 'allow' | 'deny'; byDefault: boolean } | null;
  /**
   * The gateway (docs/POLICY.md): the rule that decides (0: none) and its action; `by` says when: at setup, by the
   * given SNI or Host, or 'waits' (a hostname rule needs the flow's name and none was given: `waitsOn` is it).
   */
  gateway: { ruleId: number; action: string; by: 'setup' | 'sni' | 'host' | 'waits'; waitsOn: number | null } | null;
  route: RouteChoice | null;
  nat: { kind: 'none' | 'source-nat' | 'clash-port-rewrite' | 'hairpin'; note: string } | null;
  replies: { by: 'automatic-return-routing' | 'routing-table'; note: string } | null;
  /** The same story as sentences, in order. */
  trail: string[];
}

export interface FlowDetail {
  family: 4 | 6;
  flow: number;
  protocol: number;
  original: string;
  reply: string;
  ingressOnramp: number;
  returnOnramp: number;
  nextHop: number;
  firewallRuleId: number;
  automaticReturnRouting: boolean;
  /** Why returnOnramp is the one it is: recorded at setup, the last arrival, a failover, drained back (site failover). */
  returnReason: ReturnReason;
  translated: boolean;
  natMapping: boolean;
  clashRewrite: boolean;
  hairpin: boolean;
  state: number;
  established: boolean;
  packets: [number, number];
  bytes: [number, number];
  createdAtSeconds: number;
}

export type ReturnReason = (typeof RETURN_REASONS)[number];

/** Where a flow's replies go and why: its site's failover policy, the return onramp and how it got there. */
export interface ReturnPath {
  site: number;
  policy: FailoverPolicyName;
  drainIdleMs: number;
  /** The flow's return onramp (FlowDetail.returnOnramp). */
  returnOnramp: number;
  reason: ReturnReason;
  /** Where a reply goes now: the return onramp, or the site's best healthy onramp while it is down. */
  onramp: number;
  /** "to onramp X (n), why it is that one[; it is down: they fail over to …]". */
  where: string;
  /** What the site's policy does with the flow from here. */
  policyNote: string;
  /** "replies return " + where + "; " + policyNote. */
  note: string;
}

function formatAddr(family: number, words: ArrayLike<number>, at: number): string {
  return family === AF_INET4 ? formatIpv4(words[at]) : formatIpv6(words, at);
}

function endpoint(family: number, words: ArrayLike<number>, at: number, port: number): string {
  return family === AF_INET4 ? `${formatAddr(family, words, at)}:${port}` : `[${formatAddr(family, words, at)}]:${port}`;
}

/** One key of a flow as text: "src:port -> dst:port (zone z)". */
function nodeText(table: FlowTable, node: number): string {
  const family = table.addrWords === 1 ? 4 : 6;
  const src = new Uint32Array(4);
  const dst = new Uint32Array(4);
  for (let w = 0; w < table.addrWords; w++) {
    src[w] = table.nodeSrc(node, w);
    dst[w] = table.nodeDst(node, w);
  }
  const ports = table.nodePorts(node);
  return `${endpoint(family, src, 0, ports >>> 16)} -> ${endpoint(family, dst, 0, ports & 0xffff)} (zone ${table.nodeZone(node)})`;
}

/** The original-direction key of a stored flow (for chooseRoute). */
export function originalKey(table: FlowTable, flow: number): FlowKey {
  const key = new FlowKey();
  const node = flow * 2;
  key.zone = table.nodeZone(node);
  key.protocol = table.protocol(flow);
  const ports = table.nodePorts(node);
  key.srcPort = ports >>> 16;
  key.dstPort = ports & 0xffff;
  for (let w = 0; w < table.addrWords; w++) {
    key.src[w] = table.nodeSrc(node, w);
    key.dst[w] = table.nodeDst(node, w);
  }
  return key;
}

/** The decision stored in an existing flow. */
export function describeFlow(table: FlowTable, flow: number): FlowDetail {
  const flags = table.flags(flow);
  return {
    family: table.addrWords === 1 ? 4 : 6,
    flow,
    protocol: table.protocol(flow),
    original: nodeText(table, flow * 2),
    reply: nodeText(table, flow * 2 + 1),
    ingressOnramp: table.ingressPort(flow),
    returnOnramp: table.returnPort(flow),
    nextHop: table.nextHop(flow),
    firewallRuleId: table.ruleId(flow),
    automaticReturnRouting: (flags & FLAG_ARR) !== 0,
    returnReason: RETURN_REASONS[table.returnReason(flow)],
    translated: (flags & FLAG_TRANSLATE) !== 0,
    natMapping: (flags & FLAG_POOL) !== 0,
    clashRewrite: (flags & FLAG_CLASH) !== 0,
    hairpin: (flags & FLAG_HAIRPIN) !== 0,
    state: table.state(flow),
    established: table.isEstablished(flow),
    packets: [table.packets(flow, 0), table.packets(flow, 1)],
    bytes: [table.bytes(flow, 0), table.bytes(flow, 1)],
    createdAtSeconds: table.createdAt(flow),
  };
}

function hopName(pipeline: Pipeline, port: number): string {
  if (port === PORT_INTERNET) return 'the Internet egress';
  const spec = pipeline.ports.get(port);
  return spec ? `onramp ${spec.name} (${port})` : `port ${port}`;
}

/**
 * The return path of an existing flow (site failover, ports.ts FAILOVER_POLICIES): its site's policy, its
 * return onramp, why it is that one, where a reply goes now, in a sentence. `decided` (Pipeline.decideReturn's
 * answer) describes the state a packet would leave behind instead of the stored one; `now` (ms, default the
 * table's latest time) measures the idle time drain waits for.
 */
export function describeReturn(pipeline: Pipeline, table: FlowTable, flow: number, decided?: number, now = table.latestNow()): ReturnPath {
  const ports = pipeline.ports;
  const site = ports.site[table.ingressPort(flow)];
  const { policy, drainIdleMs } = ports.siteFailover(site);
  const ret = decided === undefined ? table.returnPort(flow) : decided & RETURN_PORT_MASK;
  const reason = RETURN_REASONS[decided === undefined ? table.returnReason(flow) : decided >>> RETURN_REASON_SHIFT];
  const onramp = ports.deliverable(ret);
  const name = hopName(pipeline, ret);
  const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;
  const how = {
    'recorded': 'the onramp that started the flow (recorded at setup)',
    'last-arrival': 'where the flow last arrived',
    'failover': 'the backup the flow failed over to when its return onramp was down',
    'drained-back': 'where the flow was drained back once it had been idle',
  }[reason];
  let where = `to ${name}, ${how}`;
  if (onramp !== ret) where += `; it is down: they fail over to ${hopName(pipeline, onramp)}, the best healthy onramp of site ${site}`;
  else if (ports.up[ret] !== 1) where += `; it is down and no onramp of site ${site} is up: they are sent to it anyway`;
  const best = ports.bestUp[site];
  let policyNote: string;
  if (policy === 'follow') {
    policyNote = `site ${site}'s failover policy follow: replies move to whichever onramp of the site the flow last arrives on`;
  } else if (policy === 'pin') {
    policyNote = `site ${site}'s failover policy pin: replies stay on ${name} while it is not down; arrivals on other onramps of the site do not move them`;
  } else if (best !== 0 && best !== ret) {
    const idle = Math.max(0, now - table.lastActive(flow));
    policyNote = `site ${site}'s failover policy drain: the flow stays on ${name} while it is active and moves back to ${hopName(pipeline, best)} once idle for ${seconds(drainIdleMs)} (idle now ${seconds(idle)})`;
  } else {
    policyNote = `site ${site}'s failover policy drain: failover at once, failback to the preferred onramp only after ${seconds(drainIdleMs)} idle`;
  }
  return { site, policy, drainIdleMs, returnOnramp: ret, reason, onramp, where, policyNote, note: `replies return ${where}; ${policyNote}` };
}


/** A route as explain shows it: where it leads, and why it won for `site` (longest prefix, scope, priority and health, ECMP). */
function describeRoute(pipeline: Pipeline, routeId: number, site: number): RouteChoice {
  const routes = pipeline.routes;
  const record = routes.get(routeId)!;
  const rivals = routes.list().filter((r) => r.prefix === record.prefix && (r.siteScope === 0 || r.siteScope === site));
  const healthy = (r: typeof record) => r.kind !== NextHopKind.Onramp || routes.isPortUp(r.port);
  const effective = routes.effectivePriority(routeId);
  // A health penalty (docs/HEALTH.md) is part of the priority the table compares: say so, with the onramp's state.
  const penalty = effective - record.priority;
  const state = penalty >= PENALTY_DOWN ? 'down' : 'degraded';
  const priority = penalty > 0 ? `priority ${record.priority} + ${penalty} health penalty (onramp ${state}) = ${effective}` : `priority ${record.priority}`;
  const penalised = rivals.filter((r) => r.id !== routeId && routes.effectivePriority(r.id) !== r.priority);
  const why = [
    `longest prefix ${record.prefix}${record.siteScope ? ` scoped to site ${record.siteScope}` : ''}`,
    rivals.length > 1 ? `${rivals.length} routes for it; ${priority}${healthy(record) ? '' : ' (its next hop is down, but nothing healthier exists)'}` : `the only route for it${penalty > 0 ? `; ${priority}` : ''}`,
    penalised.length > 0 ? `penalised by health: ${penalised.map((r) => `route ${r.id} via ${hopName(pipeline, r.port)} at ${routes.effectivePriority(r.id)}`).join(', ')}` : '',
    rivals.filter((r) => routes.effectivePriority(r.id) === effective && healthy(r) === healthy(record)).length > 1 ? `ECMP by flow hash among equal priority (weight ${record.weight})` : '',
  ].filter(Boolean).join('; ');
  const nextHop = record.kind === NextHopKind.Internet ? 'the Internet' : record.kind === NextHopKind.Blackhole ? 'blackhole' : hopName(pipeline, record.port);
  return { id: routeId, prefix: record.prefix, nextHop, priority: record.priority, weight: record.weight, siteScope: record.siteScope, why };
}

/**
 * The route a flow with this original key from `site` gets from the routing table as it is now,
 * and why it won (setupFlow's lookup, the same flow hash); null when there is none.
 */
export function chooseRoute(pipeline: Pipeline, family: 4 | 6, site: number, key: FlowKey): RouteChoice | null {
  const hash = tupleHash(key.protocol, (key.srcPort << 16) | key.dstPort, key.src, 0, key.dst, 0);
  const routeId = family === AF_INET4 ? pipeline.routes.lookup4(site, key.dst[0], hash) : pipeline.routes.lookup6(site, key.dst, 0, hash);
  return routeId < 0 ? null : describeRoute(pipeline, routeId, site);
}

/** The translation a flow with these FLAG_* bits gets. */
function natKind(flags: number): NonNullable<Explanation['nat']>['kind'] {
  if ((flags & FLAG_HAIRPIN) !== 0) return 'hairpin';
  if ((flags & FLAG_POOL) !== 0) return 'source-nat';
  if ((flags & FLAG_CLASH) !== 0) return 'clash-port-rewrite';
  return 'none';
}

/**
 * The packet a hypothetical stands for, as bytes the pipeline would receive: a TCP SYN, a UDP
 * datagram, an echo request (identifier = srcPort; ICMP keys carry it as the source "port",
 * packet-info.ts), or a bare IP packet of another protocol (which inspection refuses like any).
 */
function hypotheticalBytes(packet: HypotheticalPacket, family: 4 | 6): Uint8Array {
  const ip = { src: packet.src, dst: packet.dst, ttl: packet.ttl ?? DEFAULT_TTL, hopLimit: packet.ttl ?? DEFAULT_TTL };
  const ports = { srcPort: packet.srcPort, dstPort: packet.dstPort };
  if (packet.protocol === IPPROTO_TCP) return buildTcp(ip, { ...ports, flags: TCP_SYN });
  if (packet.protocol === IPPROTO_UDP) return buildUdp(ip, ports);
  if (packet.protocol === (family === AF_INET4 ? IPPROTO_ICMP : IPPROTO_ICMPV6)) return buildIcmpEcho(ip, { type: 'request', id: packet.srcPort });
  return buildIp(ip, packet.protocol, new Uint8Array(0));
}

/** A hypothetical packet's TTL when none is given: a fresh packet of a Linux host (net.ipv4.ip_default_ttl). */
const DEFAULT_TTL = 64;
const MAX_TTL = 0xff;

const isPort = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff;
/** Highest IP protocol number (the IPv4 protocol / IPv6 next-header byte). */
const MAX_PROTOCOL = 0xff;

/** What the pipeline would do with this packet now, and why. */
export function explain(pipeline: Pipeline, packet: HypotheticalPacket): Explanation {
  const out: Explanation = { packet, verdict: 'drop', dropReason: null, nextHop: null, flow: null, firewall: null, gateway: null, route: null, nat: null, replies: null, trail: [] };
  const drop = (reason: Drop, why: string): Explanation => {
    out.verdict = 'drop';
    out.dropReason = DROP_REASON_NAMES[reason];
    out.trail.push(`dropped (${out.dropReason}): ${why}`);
    return out;
  };
  const ports = pipeline.ports;
  const ingress = packet.onramp;
  if (!Number.isInteger(ingress) || ingress < 0 || ingress > MAX_ONRAMP_ID || ports.configured[ingress] !== 1) {
    return drop(Drop.UnknownPort, `no onramp ${ingress} is configured`);
  }
  const addr = new Uint32Array(8);
  const family = parseAddress(packet.src, addr, 0);
  if (family === 0 || parseAddress(packet.dst, addr, 4) !== family) return drop(Drop.BadAddress, 'source and destination must be addresses of one family');
  if (!isPort(packet.srcPort) || !isPort(packet.dstPort) || !Number.isInteger(packet.protocol) || packet.protocol < 0 || packet.protocol > MAX_PROTOCOL) {
    return drop(Drop.UnsupportedProtocol, 'the protocol must be 0..255 and the ports 0..65535');
  }
  if (packet.ttl !== undefined && (!Number.isInteger(packet.ttl) || packet.ttl < 0 || packet.ttl > MAX_TTL)) {
    return drop(Drop.UnsupportedProtocol, 'the TTL must be 0..255');
  }
  const bytes = hypotheticalBytes(packet, family);
  const info = new PacketInfo();
  const bad = inspect(bytes, 0, bytes.length, info);
  if (bad !== Drop.None) return drop(bad, 'header inspection refuses such a packet');
  if (pipeline.sourceRefused(ingress, info)) return drop(Drop.SourceNotAllowed, `${packet.src} is outside the sources this onramp may send from (its allowed IPs)`);
  const zone = ports.zone[ingress];
  const site = ports.site[ingress];
  out.trail.push(
    ingress === PORT_INTERNET
      ? 'arrives from the Internet egress (global zone)'
      : `arrives on ${hopName(pipeline, ingress)}, site ${site}, ${ports.arr[ingress] ? `ARR on: keyed in the site's own zone ${zone}` : 'ARR off: keyed in the global zone'}`,
  );

  const table = family === AF_INET4 ? pipeline.flows4 : pipeline.flows6;
  if (info.ttl <= 1) return timeExceeded(pipeline, info, ingress, packet, out, drop);
  const key = new FlowKey();
  key.zone = zone;
  key.protocol = info.protocol;
  key.srcPort = info.srcPort;
  key.dstPort = info.dstPort;
  key.src.set(info.addr.subarray(0, 4));
  key.dst.set(info.addr.subarray(4, 8));
  const node = table.lookup(key);
  if (node >= 0) {
    const flow = node >> 1;
    out.flow = describeFlow(table, flow);
    const dir = node & 1;
    const owner = dir === 0 ? table.ingressPort(flow) : table.nextHop(flow);
    out.trail.push(`matches flow ${flow} in its ${dir === 0 ? 'original' : 'reply'} direction: no policy or route lookup, the stored decision applies`);
    const gwWord = pipeline.gatewayOf(table, flow);
    const gwRule = gatewayWordRule(gwWord);
    const gwLine = gatewayTrailText(gwWord, pipeline.flowName(table, flow)?.name, gwRule === 0 ? undefined : pipeline.gateway?.spec.rules.find((r) => r.id === gwRule)?.name);
    if (gwLine !== null) out.trail.push(gwLine);
    if (pipeline.isClassifying(table, flow)) out.trail.push('the flow is classifying: it waits for its name (SNI or Host); client payload is held until the gateway decides');
    if (ports.site[owner] !== site) return drop(Drop.FlowOwnerMismatch, `that direction belongs to ${hopName(pipeline, owner)}'s site, not this one`);
    const flags = table.flags(flow);
    if (heldByFilter(flags, dir)) {
      return drop(Drop.HairpinFiltered, 'a hairpin the peer has not admitted yet: the peer never sent to this sender\'s external endpoint (RFC 4787 REQ-8, REQ-9); its first packet toward it will admit the flow');
    }
    if ((flags & FLAG_FILTERED) !== 0) out.trail.push('this packet is the peer\'s first toward the sender: it admits the hairpin flow both ways (RFC 4787 REQ-8)');
    if ((flags & FLAG_DNS) !== 0 && dir === 0 && table.protocol(flow) === IPPROTO_UDP) dnsNote(pipeline, out);
    out.verdict = 'forward';
    // The packet as the pipeline would take it (forwardOnFlow): the site's failover policy first.
    const now = table.latestNow();
    const decided = pipeline.decideReturn(table, flow, dir as 0 | 1, ingress, now - table.lastActive(flow));
    if ((table.flags(flow) & FLAG_ARR) !== 0) {
      const path = describeReturn(pipeline, table, flow, decided, now);
      if (path.returnOnramp !== table.returnPort(flow)) {
        out.trail.push(`this packet moves the flow's replies from ${hopName(pipeline, table.returnPort(flow))} to ${hopName(pipeline, path.returnOnramp)} (${path.reason}, failover policy ${path.policy})`);
      }
      out.replies = { by: 'automatic-return-routing', note: path.note };
      out.trail.push(path.note);
      out.nextHop = dir === 0 ? ports.deliverable(table.nextHop(flow)) : path.onramp;
    } else {
      out.nextHop = dir === 0 ? ports.deliverable(table.nextHop(flow)) : null;
    }
    out.trail.push(out.nextHop !== null ? `leaves on ${hopName(pipeline, out.nextHop)}` : 'a reply of a flow without ARR: the routing table decides its next hop per packet');
    return out;
  }

  if (pipeline.isEchoRequestToPool(info)) return answeredByEdge(pipeline, ingress, packet, out);
  if (ingress !== PORT_INTERNET) out.trail.push('no flow yet: this packet would set one up');
  const decision = new SetupDecision();
  const trace = new SetupTrace();
  const hop = pipeline.decideSetup(info, key, table, ingress, decision, trace);
  return renderSetup(pipeline, out, info, site, decision, trace, hop, drop);
}

/** A query to UDP port 53 the firewall passed: what the gateway's DNS stage does with it (dns-gate.ts). */
function dnsNote(pipeline: Pipeline, out: Explanation): void {
  out.trail.push(pipeline.dnsGate.active
    ? 'a DNS query (UDP 53): the gateway reads its question; a name a block or override rule matches is answered by the edge itself (NXDOMAIN or the override), other queries go on'
    : 'a DNS query (UDP 53): no gateway rule reads DNS names now; every query of this flow is read once one does');
}

/** The trail of a setup decision (decideSetup's result `hop`, its decision and trace), into `out`. */
function renderSetup(
  pipeline: Pipeline,
  out: Explanation,
  info: PacketInfo,
  site: number,
  d: SetupDecision,
  trace: SetupTrace,
  hop: number,
  drop: (reason: Drop, why: string) => Explanation,
): Explanation {
  const packet = out.packet;
  const ingress = packet.onramp;
  const family = info.family;
  if (ingress === PORT_INTERNET) return drop(-hop, 'the Internet may only answer existing flows (address-and-port-dependent filtering, RFC 4787 REQ-8)');
  if (hop === -Drop.BadAddress) return drop(Drop.BadAddress, 'a new flow needs unicast endpoints: no unspecified, loopback, multicast or broadcast address (RFC 1812 section 5.3.7)');
  if (!trace.firewallAsked) return drop(-hop, 'a new flow starts only with a TCP SYN or a query');

  const fw = pipeline.firewall;
  out.firewall = { ruleId: fw.ruleId(d.rule), action: fw.allows(d.rule) ? 'allow' : 'deny', byDefault: d.rule < 0 };
  out.trail.push(d.rule < 0 ? `firewall: no rule matches; the default action is ${out.firewall.action}` : `firewall: rule ${out.firewall.ruleId} (position ${d.rule + 1}) matches: ${out.firewall.action}`);
  if (hop === -Drop.PolicyDeny && !trace.hairpinAsked) return drop(Drop.PolicyDeny, 'the firewall denies it');
  if (trace.gatewayAsked) {
    const blocked = renderGateway(pipeline, out, info, site, d);
    if (blocked !== null) return drop(hop === -Drop.GatewayBlocked || hop >= 0 ? Drop.GatewayBlocked : -hop, blocked);
  }
  if (hop >= 0 && info.protocol === IPPROTO_UDP && info.dstPort === DNS_PORT) dnsNote(pipeline, out);

  const hairpin = (d.flags & FLAG_HAIRPIN) !== 0;
  if (hairpin) {
    const peer = d.peer;
    out.nat = { kind: 'hairpin', note: 'addressed to the egress pool: hairpinned to the internal endpoint that owns that external port (RFC 4787 REQ-9); the firewall is asked again for the real destination' };
    out.trail.push(out.nat.note);
    if (!trace.hairpinPeerFound) return drop(-hop, `no internal endpoint holds ${endpoint(family, info.addr, 4, info.dstPort)} (only TCP and UDP mappings hairpin)`);
    out.trail.push(`the external endpoint belongs to ${endpoint(family, peer.addr, 0, peer.port)} in zone ${peer.zone}`);
    const ruleId = fw.ruleId(trace.hairpinRule);
    const action = fw.allows(trace.hairpinRule) ? 'allow' : 'deny';
    out.trail.push(trace.hairpinRule < 0 ? `firewall for the internal destination: no rule matches; the default action is ${action}` : `firewall for the internal destination: rule ${ruleId} (position ${trace.hairpinRule + 1}) matches: ${action}`);
    if (hop === -Drop.PolicyDeny) return drop(Drop.PolicyDeny, 'the firewall denies it for the internal destination');
    if (trace.route < 0 && hop >= 0) out.trail.push(`zone ${peer.zone} is site ${peer.zone} (ARR): delivered to its best onramp`);
  }
  if (trace.route >= 0) {
    out.route = describeRoute(pipeline, trace.route, site);
    out.trail.push(`route ${out.route.id}: ${out.route.prefix} -> ${out.route.nextHop} (${out.route.why})`);
  }
  if (hop === -Drop.NoRoute) {
    if (trace.route >= 0) {
      return drop(Drop.NoRoute, hairpin ? 'a hairpin turns back inside, but the route for the internal destination does not lead to an onramp' : 'the route leads to the Internet but no egress pool is configured');
    }
    if (hairpin && d.peer.zone !== ZONE_GLOBAL) return drop(Drop.NoRoute, `site ${d.peer.zone} has no onramp`);
    return drop(Drop.NoRoute, `no route to ${hairpin ? formatAddr(family, d.peer.addr, 0) : packet.dst} for site ${site}`);
  }
  if (hop === -Drop.Blackhole) return drop(Drop.Blackhole, 'the route is a blackhole');
  if (hairpin && hop === -Drop.NoNatMapping) return drop(Drop.NoNatMapping, 'the internal endpoint already talks to this endpoint\'s external endpoint: that flow exists, seen from its other end');
  if (hop < 0) return drop(-hop, 'flow setup refuses it');
  if (trace.hairpinFiltered) {
    return drop(
      Drop.HairpinFiltered,
      `${endpoint(family, d.peer.addr, 0, d.peer.port)} has never sent to this sender's external endpoint, and its mapping filters by address and port (RFC 4787 REQ-8, hairpin included: REQ-9). The flow would be set up, so that the peer's first packet to this sender passes and admits it; until then this sender's packets are dropped`,
    );
  }

  if (!hairpin) {
    const kind = natKind(d.flags);
    const note = kind === 'source-nat'
      ? trace.natPort >= 0
        ? `source NAT: the endpoint already has the mapping ${endpoint(family, trace.natAddr, 0, trace.natPort)} (endpoint-independent, RFC 4787 REQ-1)`
        : 'source NAT from the egress pool: the endpoint gets its paired pool address and keeps its port if that port is free there (RFC 4787 REQ-2, REQ-3)'
      : kind === 'clash-port-rewrite'
        ? `another flow already holds the reply tuple in ${hopName(pipeline, d.hop)}'s zone: the source port would be rewritten to a free one, and restored on the way back`
        : 'no translation toward an onramp (no other flow holds this tuple there)';
    out.nat = { kind, note };
    out.trail.push(note);
  }
  if ((d.flags & FLAG_RENUMBER) !== 0 && family === AF_INET4) {
    out.trail.push('IPv4 ids: the receiver sees this source shared with other senders, so datagrams that may be fragmented (a fragment, or DF clear) leave with ids from the edge\'s per-(source, destination, protocol) counters, the same for all fragments of one datagram (RFC 6864 section 4); DF-set datagrams keep theirs');
  }
  if (info.protocol === IPPROTO_TCP) out.trail.push('TCP: only a SYN starts the flow; the tracker then follows the handshake and windows');
  else if (info.protocol !== IPPROTO_UDP) out.trail.push('the first packet must be a query (an echo reply starts nothing)');
  out.replies = (d.flags & FLAG_ARR) !== 0
    ? { by: 'automatic-return-routing', note: `replies return to ${hopName(pipeline, ingress)} (recorded at setup; if it is down, the best healthy onramp of site ${site}; site ${site}'s failover policy ${pipeline.ports.siteFailover(site).policy} moves them later)` }
    : { by: 'routing-table', note: `ARR is off on ${hopName(pipeline, ingress)}: replies are routed by destination ${packet.src}, as any packet` };
  out.trail.push(out.replies.note);
  out.verdict = 'forward';
  out.nextHop = pipeline.ports.deliverable(hop);
  out.trail.push(`leaves on ${hopName(pipeline, out.nextHop)}`);
  return out;
}

/**
 * The gateway's part of a setup (SetupDecision.gateway) into `out`; with a hostname rule waiting, the decision the
 * given SNI or Host would get (Pipeline's classification asks the same GatewayPolicy with the same source). Returns
 * why the flow is blocked, or null.
 */
function renderGateway(pipeline: Pipeline, out: Explanation, info: PacketInfo, site: number, d: SetupDecision): string | null {
  const gw = pipeline.gateway!;
  const packet = out.packet;
  const label = (index: number): string => {
    const r = gw.rule(index);
    return `gateway rule ${r.id}${r.name !== undefined ? ` (${r.name})` : ''}`;
  };
  if (d.gateway === GATEWAY_NO_RULE) {
    out.gateway = { ruleId: 0, action: 'allow', by: 'setup', waitsOn: null };
    out.trail.push('gateway: no rule matches; the firewall\'s decision stands');
    return null;
  }
  if (d.gateway >= 0) {
    const r = gw.rule(d.gateway);
    out.gateway = { ruleId: r.id, action: r.action, by: 'setup', waitsOn: null };
    out.trail.push(`${label(d.gateway)} matches at setup (no hostname condition): ${r.action}`);
    return r.action === 'block' ? 'the gateway blocks it' : null;
  }
  // GATEWAY_NEED_NAME: a hostname rule comes first.
  const v4 = info.family === AF_INET4;
  const pending = v4
    ? gw.pending4(site, packet.onramp, info.protocol, info.addr[0], info.addr[4], info.srcPort, info.dstPort)
    : gw.pending6(site, packet.onramp, info.protocol, info.addr, 0, 4, info.srcPort, info.dstPort);
  const name = packet.sni ?? packet.host;
  if (info.protocol !== IPPROTO_TCP) {
    out.trail.push(`${label(pending)} reads names from this flow's queries (DNS): decided per query`);
    return null;
  }
  const c = gw.spec.classify;
  if (name === undefined) {
    out.gateway = { ruleId: 0, action: 'allow', by: 'waits', waitsOn: gw.rule(pending).id };
    out.trail.push(`${label(pending)} needs the flow's name: the handshake passes, the client's first payload is held until its SNI or Host decides (at most ${c.bufferBytes} bytes and ${c.waitMs} ms, then the rule's fallback: ${gw.fallback(pending)}); give --sni or --host to see that decision`);
    return null;
  }
  const source = packet.sni !== undefined ? NameSource.Sni : NameSource.HttpHost;
  const by = packet.sni !== undefined ? 'sni' : 'host';
  const index = v4
    ? gw.decide4(site, packet.onramp, info.protocol, info.addr[0], info.addr[4], info.srcPort, info.dstPort, source, name)
    : gw.decide6(site, packet.onramp, info.protocol, info.addr, 0, 4, info.srcPort, info.dstPort, source, name);
  const what = `${by === 'sni' ? 'SNI' : 'Host'} ${name}`;
  if (index < 0) {
    out.gateway = { ruleId: 0, action: 'allow', by, waitsOn: null };
    out.trail.push(`${label(pending)} waits for the flow's name; with ${what} no gateway rule matches: its held payload is released`);
    return null;
  }
  const r = gw.rule(index);
  out.gateway = { ruleId: r.id, action: r.action, by, waitsOn: null };
  out.trail.push(`${label(pending)} waits for the flow's name; with ${what}, ${label(index)} decides: ${r.action}`);
  return r.action === 'block' ? `${label(index)} blocks ${what}: a reset to each end once the client sends it` : null;
}

/**
 * A packet whose TTL would reach zero at the edge (Pipeline.timeExceeded): dropped, and whether the edge tells its
 * sender with ICMP time exceeded, from which address; an echo request to a pool address is answered instead.
 */
function timeExceeded(
  pipeline: Pipeline, info: PacketInfo, ingress: number, packet: HypotheticalPacket, out: Explanation,
  drop: (reason: Drop, why: string) => Explanation,
): Explanation {
  if (pipeline.isEchoRequestToPool(info)) return answeredByEdge(pipeline, ingress, packet, out);
  const expiring = `TTL ${info.ttl} would reach zero here (RFC 1812 section 5.3.1)`;
  if (!mayReportTimeExceeded(info)) {
    return drop(Drop.TtlExceeded, `${expiring}; no time exceeded: never about an ICMP error, a later fragment or a non-unicast address (RFC 1812 section 4.3.2.7)`);
  }
  const source = pipeline.icmpSourceOf(ingress, info.family);
  if (source === null) {
    return drop(Drop.TtlExceeded, `${expiring}; no time exceeded: the edge has no IPv${info.family} address for ${hopName(pipeline, ingress)} (icmp_source, health_check.source, egress pool)`);
  }
  const from = formatAddr(info.family, source, 0);
  return drop(Drop.TtlExceeded, `${expiring}; time exceeded sent to ${packet.src} from ${from} back through ${hopName(pipeline, ingress)} (rate limit permitting)`);
}

/** An echo request to a pool address no flow owns (Pipeline.answerEcho): the edge's own, answered in place. */
function answeredByEdge(pipeline: Pipeline, ingress: number, packet: HypotheticalPacket, out: Explanation): Explanation {
  out.verdict = 'forward';
  out.nextHop = ingress;
  out.trail.push(`an echo request to the egress pool address ${packet.dst}, the edge's own: answered by the edge (no flow, no NAT state), the reply leaves on ${hopName(pipeline, ingress)}`);
  return out;
}
