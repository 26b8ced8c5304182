/**
 * Read-only routes over the running data plane (docs/API.md): the flow table with filters and
 * paging, one flow with its decision trail, explain for a hypothetical packet, the overlap report,
 * live counters for the dashboard, and Prometheus /metrics. Registered on the app buildApi made, so
 * they share its auth (reads open from loopback), errors and OpenAPI document.
 */
import { NameSource } from '../gateway/policy.js';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { maskWords, parsePrefix, type Prefix } from '../wire/addr.js';
import { DROP_REASON_NAMES } from '../common/drop-reasons.js';
import { PORT_INTERNET } from '../common/ids.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { chooseRoute, describeFlow, describeReturn, explain, originalKey, type FlowDetail } from '../dataplane/explain.js';
import type { Pipeline } from '../dataplane/pipeline.js';
import { gatewayTrailText, gatewayWordRule } from '../dataplane/classify.js';
import type { FlowTable } from '../flow/flow-table.js';
import type { TetherConfig } from '../config/index.js';
import { LoopShare, WALK_MAX_SLOTS, decodeCursor, encodeCursor, laneFlowNumber, laneOfFlowNumber, walkFlows, type FlowFilter, type WalkPosition } from './flow-walk.js';
import { laneProblem, type LaneWalkAnswer, type LaneWalkRequest, type OtherLanes } from './lane-view.js';
import { ipsecViews } from './ipsec-status.js';
import { METRICS_CONTENT_TYPE, metricsText, protocolName, type EdgeStatus, type IpsecDropStats, type KernelDeviceDrops, type NameBook, type Names, LanePort, sumLanePort } from './metrics.js';

/**
 * /v1/stats' view of the kernel's drops: every owned device with its non-zero kinds, and per onramp id its devices'
 * non-zero kinds keyed "DEVICE KIND" (the underlay's are shown on every tunnel onramp: they share it).
 */
export function kernelDropViews(all: KernelDeviceDrops[]): { devices: Array<{ device: string; role: string; drops: Record<string, number> }>; byOnramp: Map<number, Record<string, number>> } {
  const devices: Array<{ device: string; role: string; drops: Record<string, number> }> = [];
  const byOnramp = new Map<number, Record<string, number>>();
  for (const d of all) {
    const drops: Record<string, number> = {};
    for (const [k, v] of Object.entries(d.drops)) if (v > 0) drops[k] = v;
    devices.push({ device: d.device, role: d.role, drops });
    for (const id of d.onramps) {
      let m = byOnramp.get(id);
      if (m === undefined) byOnramp.set(id, (m = {}));
      for (const [k, v] of Object.entries(drops)) m[`${d.device} ${k}`] = v;
    }
  }
  return { devices, byOnramp };
}

const TCP_STATE_NAMES = ['none', 'syn_sent', 'syn_recv', 'established', 'fin_wait', 'close_wait', 'last_ack', 'time_wait', 'close', 'syn_sent2'];
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

export interface FlowRoutesOptions {
  pipeline: Pipeline;
  names: NameBook;
  /** The configuration in force (for the overlap report). */
  config: () => TetherConfig;
  /** The pipeline's clock, ms (flow ages). */
  now: () => number;
  /** The running edge's IPsec SAs and their counters (Edge.ipsecStatus); absent: ipsec onramps show none. */
  ipsec?: () => Pick<EdgeStatus, 'ipsec' | 'esp'>;
  /** IKE and ESP drops by reason (Edge.ipsecDrops); absent: /v1/stats has no `ipsecDrops`. */
  ipsecDrops?: () => IpsecDropStats;
  /** The kernel's drop counters of the edge's devices (Edge.kernelDrops); absent: /v1/stats has no `kernelDrops`. */
  kernelDrops?: () => KernelDeviceDrops[];
  /** Prometheus registry for GET /metrics (createMetrics); absent: no /metrics route. */
  metrics?: Registry;
  /** Share of the event loop flow listings may take while packets are waiting (default LISTING_LOOP_SHARE). */
  listingShare?: number;
  /**
   * The clock the listing's share is measured on, ms (default performance.now()). A benchmark on a machine other
   * work shares passes the process's CPU time, so the share is of the CPU this process gets.
   */
  listingClock?: () => number;
  /**
   * The other lanes (daemon.lanes > 1; docs/ARCHITECTURE.md "Lanes"): listings, flows by id and the per-onramp
   * counters of /v1/stats cover them too. Absent: one lane.
   */
  lanes?: OtherLanes;
}

/**
 * What listings may charge of the packet loop: 3 %. Charged: the walk, the items, the JSON, the response's write
 * and the collector's pauses around a listing (LoopShare). Not charged, because nothing measures it as it
 * happens: what a page costs the packet path afterwards in cache misses (its records, its items and its 400 KB
 * of JSON push the stream's own flow records out; the stream warms them again), and Fastify's routing before
 * the handler. On a machine with a core free that came to about three times what is charged, per page; at 5 %
 * forwarding kept 0.85–0.89 of its idle rate under a client paging back to back, at 3 % 0.94–0.99
 * (docs/PERFORMANCE.md, `npm run bench:flows-list`).
 */
export const LISTING_LOOP_SHARE = 0.03;
/** Budget a listing may run on at once after an idle spell (ms): a small page answers without waiting. */
export const LISTING_BURST_MS = 5;
/** A collector pause this soon after a listing's end (ms) is still charged to it: its page's garbage. */
const GC_GRACE_MS = 50;

const FlowItem = Type.Object({
  id: Type.String(),
  family: Type.Number(),
  protocol: Type.Number(),
  protocolName: Type.String(),
  original: Type.String(),
  reply: Type.String(),
  site: Type.String(),
  onramp: Type.String(),
  returnOnramp: Type.String(),
  nextHop: Type.String(),
  arr: Type.Boolean(),
  nat: Type.Boolean(),
  clash: Type.Boolean(),
  hairpin: Type.Boolean(),
  state: Type.String(),
  established: Type.Boolean(),
  packets: Type.Array(Type.Number()),
  bytes: Type.Array(Type.Number()),
  ageSeconds: Type.Number(),
  firewallRuleId: Type.Number(),
  /** The name the gateway classified the flow by (docs/POLICY.md), and where it was read; absent when none was kept. */
  hostname: Type.Optional(Type.String()),
  hostnameSource: Type.Optional(Type.String()),
});
export type FlowItem = Static<typeof FlowItem>;
export type FlowWithTrail = FlowItem & { trail: string[] };

/** Where the flow stands with the policy epochs (docs/POLICY.md, "Epochs"). */
function epochNote(flowEpoch: number, current: number): string {
  return flowEpoch === current
    ? `decided under the current policy (epoch ${current})`
    : `decided under policy epoch ${flowEpoch}; the policy changed since (epoch ${current}): its next packet has it decided again, and cut if the new rules deny it`;
}

/** NameSource (src/gateway/policy.ts) → the configuration's words for it (`sources:`). */
const NAME_SOURCE_TEXT: Readonly<Record<number, string>> = { [NameSource.Sni]: 'sni', [NameSource.HttpHost]: 'http_host', [NameSource.Dns]: 'dns' };

const FlowQuery = Type.Object(
  {
    site: Type.Optional(Type.String({ description: 'site name' })),
    onramp: Type.Optional(Type.String({ description: 'name of the onramp that started the flow' })),
    zone: Type.Optional(Type.Integer({ minimum: 0 })),
    src: Type.Optional(Type.String({ description: 'prefix the original source lies in' })),
    dst: Type.Optional(Type.String({ description: 'prefix the original destination lies in' })),
    protocol: Type.Optional(Type.String({ description: 'tcp, udp, icmp, icmpv6 or a number' })),
    state: Type.Optional(Type.Union([Type.Literal('established'), Type.Literal('pending')])),
    family: Type.Optional(Type.Union([Type.Literal('4'), Type.Literal('6')])),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]+$' })),
    offset: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'matches to skip (old clients; use cursor)' })),
    cursor: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'where to go on: the cursor of the page before' })),
  },
  { additionalProperties: false },
);

const ExplainBody = Type.Object(
  {
    onramp: Type.String({ minLength: 1, description: 'onramp name, or "internet"' }),
    protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp'), Type.Literal('icmp'), Type.Literal('icmpv6'), Type.Integer({ minimum: 0, maximum: 255 })]),
    src: Type.String({ minLength: 1 }),
    dst: Type.String({ minLength: 1 }),
    src_port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    dst_port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    /** TTL / hop limit as the packet arrives (default 64): 1 shows the edge's time exceeded (docs/TROUBLESHOOTING.md). */
    ttl: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    /** The name a TCP flow's first payload would carry: what the gateway's hostname rules decide with it (docs/POLICY.md). */
    sni: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
  },
  { additionalProperties: false },
);

const Problem = Type.Object({ error: Type.String(), problems: Type.Array(Type.Object({ path: Type.String(), message: Type.String() })) });

const PROTOCOLS: Record<string, number> = { tcp: IPPROTO_TCP, udp: IPPROTO_UDP, icmp: IPPROTO_ICMP, icmpv6: IPPROTO_ICMPV6 };

class BadRequest extends Error {
  constructor(readonly path: string, message: string) {
    super(message);
  }
}

/** The flow's gateway decision as trail lines (none when the gateway decided nothing for it). */
export function gatewayTrail(pipeline: Pipeline, table: FlowTable, flow: number): string[] {
  const word = pipeline.gatewayOf(table, flow);
  const id = gatewayWordRule(word);
  const ruleName = id === 0 ? undefined : pipeline.gateway?.spec.rules.find((r) => r.id === id)?.name;
  const line = gatewayTrailText(word, pipeline.flowName(table, flow)?.name, ruleName);
  return line === null ? [] : [line];
}

function protocolNumber(text: string | number, path: string): number {
  if (typeof text === 'number') return text;
  const n = PROTOCOLS[text.toLowerCase()] ?? (/^[0-9]{1,3}$/.test(text) ? Number(text) : NaN);
  if (!(n >= 0 && n <= 255)) throw new BadRequest(path, `must be tcp, udp, icmp, icmpv6 or 0..255, got ${JSON.stringify(text)}`);
  return n;
}

function prefixOf(text: string | undefined, path: string): Prefix | null {
  if (text === undefined) return null;
  const p = parsePrefix(text);
  if (p === null) throw new BadRequest(path, `must be a prefix like 10.0.1.0/24 or 2001:db8::/32, got ${JSON.stringify(text)}`);
  return p;
}

/** Does prefix p contain words (four, host bits included)? (Configuration only: it allocates.) */
function prefixContains(p: Prefix, words: Uint32Array): boolean {
  const masked = Uint32Array.from(words);
  maskWords(masked, p.length, 4);
  return masked.every((w, i) => w === p.words[i]);
}

/** What a flow's item and trail are read from: one lane's pipeline, the names, its clock. */
export interface FlowView {
  pipeline: Pipeline;
  names: Names;
  /** The pipeline's clock, ms (flow ages). */
  now: () => number;
}

/** The flow id the API shows: `FAMILY-N`, N the lane's slot with the lane above it (laneFlowNumber). */
export function flowId(family: number, lane: number, slot: number): string {
  return `${family}-${laneFlowNumber(lane, slot)}`;
}

/** A flow of `lane`'s pipeline as /v1/flows lists it. */
export function flowItem(view: FlowView, detail: FlowDetail, lane: number): FlowItem {
  const { pipeline, names } = view;
  return {
    id: flowId(detail.family, lane, detail.flow),
    family: detail.family,
    protocol: detail.protocol,
    protocolName: protocolName(detail.protocol),
    original: detail.original,
    reply: detail.reply,
    site: names.site(pipeline.ports.site[detail.ingressOnramp]),
    onramp: names.onramp(detail.ingressOnramp),
    returnOnramp: names.onramp(detail.returnOnramp),
    nextHop: detail.nextHop === PORT_INTERNET ? 'internet' : names.onramp(detail.nextHop),
    arr: detail.automaticReturnRouting,
    nat: detail.natMapping || detail.hairpin,
    clash: detail.clashRewrite,
    hairpin: detail.hairpin,
    state: detail.protocol === IPPROTO_TCP ? TCP_STATE_NAMES[detail.state] ?? String(detail.state) : detail.established ? 'established' : 'pending',
    established: detail.established,
    packets: detail.packets,
    bytes: detail.bytes,
    ageSeconds: Math.max(0, Math.floor(view.now() / 1000) - detail.createdAtSeconds),
    firewallRuleId: detail.firewallRuleId,
    ...hostnameOf(pipeline, detail),
  };
}

/** Pipeline.flowName (filled by the gateway's classification) as the listing shows it; nothing when no name was kept. */
function hostnameOf(pipeline: Pipeline, detail: FlowDetail): { hostname?: string; hostnameSource?: string } {
  const named = pipeline.flowName(detail.family === 4 ? pipeline.flows4 : pipeline.flows6, detail.flow);
  if (named === undefined || named.name === null) return {};
  return { hostname: named.name, hostnameSource: NAME_SOURCE_TEXT[named.source] ?? String(named.source) };
}

/** One live flow of `lane`'s pipeline with its decision trail (GET /v1/flows/:id); null when the slot holds none. */
export function flowWithTrail(view: FlowView, family: 4 | 6, index: number, lane: number): FlowWithTrail | null {
  const { pipeline, names } = view;
  const table = family === 4 ? pipeline.flows4 : pipeline.flows6;
  if (index >= table.capacity || !table.isLive(index)) return null;
  const detail = describeFlow(table, index);
  const it = flowItem(view, detail, lane);
  const routeNow = chooseRoute(pipeline, detail.family, pipeline.ports.site[detail.ingressOnramp], originalKey(table, index));
  const rule = names.rule(detail.firewallRuleId);
  const returnPath = detail.automaticReturnRouting ? describeReturn(pipeline, table, index, undefined, view.now()) : null;
  const trail = [
    `started by onramp ${it.onramp} (site ${it.site}) as ${detail.original}`,
    detail.firewallRuleId === 0 ? 'allowed by the firewall\'s default action' : `allowed by firewall rule ${detail.firewallRuleId}${rule ? ` (${rule})` : ''}`,
    ...gatewayTrail(pipeline, table, index),
    epochNote(table.policyEpoch(index), pipeline.policyEpoch),
    `next hop: ${it.nextHop}`,
    routeNow === null ? 'the routing table has no route for it now' : `route for it in the table now: ${routeNow.prefix} -> ${routeNow.nextHop} (${routeNow.why}); the flow keeps the next hop chosen at setup`,
    detail.hairpin ? 'hairpinned through the egress pool to another internal endpoint' : detail.natMapping ? `source NAT: replies come back as ${detail.reply}` : detail.clashRewrite ? `source port rewritten because another site's flow held the same tuple: replies come back as ${detail.reply}` : 'no translation',
    returnPath !== null ? `replies return by ARR ${returnPath.where}; ${returnPath.policyNote}` : 'ARR off: replies are routed by the routing table on their destination',
    `${it.state}; ${detail.packets[0]}/${detail.packets[1]} packets and ${detail.bytes[0]}/${detail.bytes[1]} bytes (original/reply); ${it.ageSeconds} s old`,
  ];
  // DLP matches: profile, detector, direction and stream offset — never the matched bytes.
  for (const e of pipeline.dlpEvents(table, index)) {
    trail.push(`DLP profile ${e.profile} (gateway rule ${e.ruleId}) matched: ${e.detector} at offset ${e.offset} of the ${e.direction === 0 ? 'client-to-server' : 'server-to-client'} stream; action ${e.action}`);
  }
  if (lane > 0) trail.push(`owned by lane ${lane} (daemon.lanes): its flow tables and NAT ports`);
  return { ...it, trail };
}

/** Walks one lane's table of one family for a listing (lane 0 in the API's thread, the others in their workers). */
export async function walkLaneFlows(view: FlowView, lane: number, request: LaneWalkRequest, between: () => Promise<void>): Promise<LaneWalkAnswer> {
  const table = request.family === 4 ? view.pipeline.flows4 : view.pipeline.flows6;
  const items: FlowItem[] = [];
  const walk = await walkFlows([{ family: request.family, table }], { family: request.family, slot: request.slot }, request.filter,
    { limit: request.limit, maxSlots: request.maxSlots, between }, (t, flow) => items.push(flowItem(view, describeFlow(t, flow), lane)));
  return { items, next: walk.next === null ? null : walk.next.slot, matches: walk.matches, slots: walk.slots };
}

export function registerFlowRoutes(app: FastifyInstance, opts: FlowRoutesOptions): void {
  const { pipeline, names } = opts;
  const view: FlowView = { pipeline, names, now: opts.now };
  const share = new LoopShare(opts.listingShare ?? LISTING_LOOP_SHARE, LISTING_BURST_MS, opts.listingClock ?? (() => performance.now()));
  // The collector's pauses during a listing, or within GC_GRACE_MS after one, collect mostly its page's garbage:
  // they are charged to the listings' budget (the packet path allocates nothing, so it causes none).
  let lastListingEnd = -Infinity;
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (share.listing || e.startTime - lastListingEnd <= GC_GRACE_MS) share.chargeExtra(e.duration);
  });
  gc.observe({ entryTypes: ['gc'] });
  app.addHook('onClose', async () => gc.disconnect());

  const sendBad = (e: unknown): { error: string; problems: { path: string; message: string }[] } => {
    if (e instanceof BadRequest) return { error: 'bad query', problems: [{ path: e.path, message: e.message }] };
    throw e;
  };

  /** The onramp and site filters as one per-port table (null: no such filter), made once per request. */
  const portFilter = (onramp: string | undefined, site: string | undefined): Uint8Array | null => {
    if (onramp === undefined && site === undefined) return null;
    const ports = new Uint8Array(pipeline.ports.site.length);
    for (let p = 0; p < ports.length; p++) {
      if (onramp !== undefined && names.onramp(p) !== onramp) continue;
      if (site !== undefined && names.site(pipeline.ports.site[p]) !== site) continue;
      ports[p] = 1;
    }
    return ports;
  };

  app.get('/v1/flows', {
    schema: {
      summary: 'Live flows, filtered and paged with a cursor',
      tags: ['flows'],
      querystring: FlowQuery,
      response: { 200: Type.Object({ total: Type.Number(), items: Type.Array(FlowItem), cursor: Type.Union([Type.String(), Type.Null()]) }), 400: Problem, 503: Problem },
    },
  }, async (req, reply) => {
    pipeline.onFlowsRead?.(); // the native flow cache's hits counted in first
    const q = req.query as Static<typeof FlowQuery>;
    let filter: FlowFilter;
    let start: WalkPosition | null = null;
    try {
      const protocol = q.protocol === undefined ? -1 : protocolNumber(q.protocol, 'protocol');
      filter = {
        ports: portFilter(q.onramp, q.site),
        zone: q.zone ?? -1,
        protocol,
        established: q.state === undefined ? -1 : q.state === 'established' ? 1 : 0,
        src: prefixOf(q.src, 'src'),
        dst: prefixOf(q.dst, 'dst'),
      };
      if (q.cursor !== undefined) {
        start = decodeCursor(q.cursor);
        if (start === null) throw new BadRequest('cursor', 'not a cursor this API returned (pass the last page\'s cursor as it is)');
      }
    } catch (e) {
      return reply.code(400).send(sendBad(e));
    }
    const limit = Math.min(MAX_PAGE, q.limit === undefined ? DEFAULT_PAGE : Number(q.limit));
    const offset = q.offset === undefined ? 0 : Number(q.offset);
    const families: Array<4 | 6> = q.family === '4' ? [4] : q.family === '6' ? [6] : [4, 6];
    const lanes = opts.lanes;
    const laneCount = lanes?.count ?? 1;
    const items: FlowItem[] = [];
    let skipped = 0;
    let matches = 0;
    let slots = 0;
    let next: WalkPosition | null = null;
    // One listing at a time, admitted with budget in hand; its last slice ends once the response is written.
    await share.admit();
    try {
      // The merged walk: family 4 lane 0, lane 1, …, then family 6 the same; a cursor is (family, lane's flow number).
      const from = start === null ? null : { family: start.family, ...laneOfFlowNumber(start.slot) };
      walk: for (const family of families) {
        if (from !== null && family < from.family) continue;
        for (let lane = from !== null && family === from.family ? from.lane : 0; lane < laneCount; lane++) {
          const slot = from !== null && family === from.family && lane === from.lane ? from.slot : 0;
          const wanted = limit + offset - matches;
          if (wanted <= 0 || slots >= WALK_MAX_SLOTS) {
            next = { family, slot: laneFlowNumber(lane, slot) };
            break walk;
          }
          const request: LaneWalkRequest = { family, slot, filter, limit: wanted, maxSlots: WALK_MAX_SLOTS - slots };
          let answer: LaneWalkAnswer;
          if (lane === 0) {
            answer = await walkLaneFlows(view, 0, request, () => share.yield());
          } else {
            // Waiting for a worker is not the packet loop's time: not charged to the listings' share.
            share.charge();
            try {
              answer = await lanes!.walk(lane, request);
            } finally {
              share.begin();
            }
          }
          // offset (kept for old clients) skips the first matches of this walk; they count toward the page.
          for (const it of answer.items) {
            if (skipped < offset) skipped++;
            else items.push(it);
          }
          matches += answer.matches;
          slots += answer.slots;
          if (answer.next !== null) {
            next = { family, slot: laneFlowNumber(lane, answer.next) };
            break walk;
          }
        }
      }
      const unfiltered = filter.ports === null && filter.zone < 0 && filter.protocol < 0 && filter.established < 0 && filter.src === null && filter.dst === null;
      // The tables count their flows (the other lanes' counts as they last posted them); a filtered count is what
      // this walk saw (the whole table's only when the walk covered it: docs/API.md).
      let total = matches;
      if (unfiltered) {
        total = 0;
        for (const family of families) {
          total += (family === 4 ? pipeline.flows4 : pipeline.flows6).size;
          for (const c of lanes?.counters() ?? []) total += family === 4 ? c.flows.ipv4 : c.flows.ipv6;
        }
      }
      const body = JSON.stringify({ total, items, cursor: next === null ? null : encodeCursor(next) });
      // Fastify writes the response in send() (no onSend hooks): the write is part of the charged slice.
      reply.type('application/json; charset=utf-8').send(body);
    } catch (e) {
      reply.code(503).send(laneProblem(e));
    } finally {
      share.release();
      lastListingEnd = performance.now();
    }
    return reply;
  });

  app.get('/v1/flows/:id', {
    schema: { summary: 'One flow with its decision trail', tags: ['flows'], params: Type.Object({ id: Type.String({ pattern: '^[46]-[0-9]+$' }) }), response: { 200: Type.Intersect([FlowItem, Type.Object({ trail: Type.Array(Type.String()) })]), 404: Problem, 503: Problem } },
  }, async (req, reply) => {
    pipeline.onFlowsRead?.();
    const [family, number] = (req.params as { id: string }).id.split('-').map(Number);
    const { lane, slot } = laneOfFlowNumber(number);
    const notLive = { error: 'no such flow (it may have ended)', problems: [{ path: 'id', message: 'not a live flow' }] };
    if (lane === 0) return flowWithTrail(view, family as 4 | 6, slot, 0) ?? reply.code(404).send(notLive);
    const lanes = opts.lanes;
    if (lanes === undefined || lane >= lanes.count) return reply.code(404).send(notLive);
    try {
      return (await lanes.flow(lane, family as 4 | 6, slot)) ?? reply.code(404).send(notLive);
    } catch (e) {
      return reply.code(503).send(laneProblem(e));
    }
  });

  app.post('/v1/explain', {
    schema: { summary: 'What would happen to a hypothetical packet, and why (sends nothing)', tags: ['flows'], body: ExplainBody, response: { 200: Type.Any(), 400: Problem } },
  }, async (req, reply) => {
    const b = req.body as Static<typeof ExplainBody>;
    let onramp = b.onramp === 'internet' ? PORT_INTERNET : -1;
    if (onramp < 0) {
      for (const spec of pipeline.ports.list()) if (names.onramp(spec.id) === b.onramp) onramp = spec.id;
    }
    if (onramp < 0) return reply.code(400).send({ error: 'unknown onramp', problems: [{ path: 'onramp', message: `no onramp named ${JSON.stringify(b.onramp)}` }] });
    const e = explain(pipeline, { onramp, protocol: protocolNumber(b.protocol, 'protocol'), src: b.src, dst: b.dst, srcPort: b.src_port ?? 0, dstPort: b.dst_port ?? 0, ...(b.ttl !== undefined ? { ttl: b.ttl } : {}), ...(b.sni !== undefined ? { sni: b.sni } : {}), ...(b.host !== undefined ? { host: b.host } : {}) });
    return { ...e, nextHop: e.nextHop === null ? null : e.nextHop === PORT_INTERNET ? 'internet' : names.onramp(e.nextHop) };
  });

  app.get('/v1/overlaps', {
    schema: { summary: 'Onramps whose source prefixes overlap, and whether ARR covers them', tags: ['flows'], response: { 200: Type.Any() } },
  }, async () => {
    const cfg = opts.config();
    const siteOf = new Map(cfg.sites.map((s) => [s.name, s]));
    const sources: { prefix: Prefix; text: string; onramp: string; site: string; arr: boolean }[] = [];
    for (const o of cfg.onramps) {
      const texts = new Set<string>(o.type === 'wireguard' ? o.wireguard.allowed_ips : []);
      for (const t of (o.site !== undefined ? siteOf.get(o.site)?.prefixes : undefined) ?? []) texts.add(t);
      for (const t of texts) {
        const prefix = parsePrefix(t);
        if (prefix) sources.push({ prefix, text: t, onramp: o.name, site: o.site ?? o.name, arr: o.automatic_return_routing });
      }
    }
    // Two prefixes overlap when the shorter one contains the longer one's network address.
    const overlaps = (a: Prefix, b: Prefix): boolean =>
      a.family === b.family && (a.length <= b.length ? prefixContains(a, b.words) : prefixContains(b, a.words));
    const items: { prefix: string; onramps: { name: string; site: string; arr: boolean }[]; coveredByArr: boolean }[] = [];
    for (let i = 0; i < sources.length; i++) {
      const group = sources.filter((s) => s.site !== sources[i].site && overlaps(s.prefix, sources[i].prefix));
      if (group.length === 0 || items.some((it) => it.prefix === sources[i].text)) continue;
      const members = [sources[i], ...group];
      const onramps = [...new Map(members.map((m) => [m.onramp, { name: m.onramp, site: m.site, arr: m.arr }])).values()];
      items.push({ prefix: sources[i].text, onramps, coveredByArr: onramps.every((o) => o.arr) });
    }
    return { items };
  });

  app.get('/v1/stats', {
    schema: { summary: 'Live counters per onramp (for charts)', tags: ['flows'], response: { 200: Type.Any() } },
  }, async () => {
    const c = pipeline.counters;
    // With lanes: lane 0's counters plus what the other lanes last posted (at most a second old).
    const others = opts.lanes?.counters() ?? [];
    const sum = (own: Float64Array, p: number, field: LanePort): number => own[p] + sumLanePort(others, p, field);
    const drops: Record<string, number> = {};
    c.drops.forEach((own, reason) => {
      const v = others.reduce((n, l) => n + (l.drops[reason] ?? 0), own);
      if (v > 0) drops[DROP_REASON_NAMES[reason] ?? String(reason)] = v;
    });
    const ipsecStatus = opts.ipsec?.();
    const ipsec = ipsecStatus === undefined ? new Map() : ipsecViews(ipsecStatus.ipsec, ipsecStatus.esp, opts.now());
    const kernel = opts.kernelDrops === undefined ? null : kernelDropViews(opts.kernelDrops());
    return {
      time: Date.now(),
      flows: { ipv4: others.reduce((n, l) => n + l.flows.ipv4, pipeline.flows4.size), ipv6: others.reduce((n, l) => n + l.flows.ipv6, pipeline.flows6.size) },
      onramps: pipeline.ports.list().map((s) => ({
        name: names.onramp(s.id),
        type: s.type,
        site: names.site(s.site),
        up: pipeline.ports.up[s.id] === 1,
        arr: pipeline.ports.arr[s.id] === 1,
        rxPackets: sum(c.rxPackets, s.id, LanePort.RxPackets),
        txPackets: sum(c.txPackets, s.id, LanePort.TxPackets),
        rxBytes: sum(c.rxBytes, s.id, LanePort.RxBytes),
        txBytes: sum(c.txBytes, s.id, LanePort.TxBytes),
        flowsActive: pipeline.flows4.flowsOfPort(s.id) + pipeline.flows6.flowsOfPort(s.id) + sumLanePort(others, s.id, LanePort.FlowsActive),
        // IKE SAs with their child SAs and ESP counters (docs/API.md); [] while none is up.
        ...(s.type === 'ipsec' ? { ipsec: ipsec.get(s.id) ?? [] } : {}),
        // The kernel's non-zero drops at the devices this onramp's packets pass through ({} when none).
        ...(kernel !== null ? { kernelDrops: kernel.byOnramp.get(s.id) ?? {} } : {}),
      })),
      internet: { rxPackets: sum(c.rxPackets, PORT_INTERNET, LanePort.RxPackets), txPackets: sum(c.txPackets, PORT_INTERNET, LanePort.TxPackets),
        rxBytes: sum(c.rxBytes, PORT_INTERNET, LanePort.RxBytes), txBytes: sum(c.txBytes, PORT_INTERNET, LanePort.TxBytes),
        ...(kernel !== null ? { kernelDrops: kernel.byOnramp.get(PORT_INTERNET) ?? {} } : {}) },
      drops,
      ...(opts.ipsecDrops !== undefined ? { ipsecDrops: opts.ipsecDrops() } : {}),
      ...(kernel !== null ? { kernelDrops: kernel.devices } : {}),
    };
  });

  if (opts.metrics !== undefined) {
    const registry = opts.metrics;
    app.get('/metrics', { schema: { summary: 'Prometheus metrics (docs/OBSERVABILITY.md)', tags: ['metrics'] } }, async (_req, reply) => {
      return reply.type(METRICS_CONTENT_TYPE).send(await metricsText(registry));
    });
  }
}
