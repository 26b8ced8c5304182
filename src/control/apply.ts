/**
 * Live configuration changes: applies a new TetherConfig to a running Pipeline without rebuilding it, so
 * established flows keep working (docs/API.md, "What a change does to traffic").
 *
 *   previous config ─┐
 *                    ├─ stableIds ─ toPipelineConfig ─ diff against the pipeline's own state:
 *   next config ─────┘      onramps: setOnramp for new or changed ones (health kept), ports.remove for gone ones
 *                           routes:  remove the routes no longer wanted, add the new ones (multiset diff)
 *                           sites:    every site's failover policy replaced (setSites; flows read it per packet)
 *                           firewall: a new Firewall when its rules or default changed (setFirewall)
 *
 * What changes and what does not:
 *  - A flow's decisions (firewall verdict, route, NAT mapping, ARR and its return onramp) are made once, at
 *    flow setup, and stored in the flow. Route, firewall and ARR changes therefore affect NEW flows only.
 *    Exceptions by design of the pipeline: replies of flows without ARR are routed per packet (so a route
 *    change moves them at once), and switching ARR changes the onramp's zone, so packets of its existing
 *    flows no longer find them and start new flows (keyed in the new zone).
 *  - Removing an onramp here only takes its port away (its packets are dropped as UnknownPort from then on);
 *    the daemon (src/daemon/live.ts) then ends its flows at once (Pipeline.endFlowsOf).
 *  - The egress pool, the flow-table sizes and timeouts, the API, store and log settings are fixed when the
 *    pipeline / edge is built: `restartRequired` names them when they changed, and `check()` refuses changes
 *    that cannot be half-applied (an Internet route with no pool in the pipeline).
 *  - Time proportional to the change: the store hands over configurations whose untouched entries are the
 *    previous configuration's own objects. When only onramps were replaced in place (same name, id, site and
 *    type: the ids stay as they are), only those are compiled and compared; everything else takes the full
 *    diff below. LiveConfig therefore keeps the configuration it is given (no copy): callers hand it a
 *    configuration they no longer change.
 *  - Onramp transports (the GRE tunnel table, WireGuard devices and peers, interconnect TUNs) belong to the
 *    Edge, not the pipeline: `transportChanged` lists the onramps whose transport must be added, removed or
 *    reconfigured; the daemon's EdgeLike applies them together with this (Edge.applyTransports).
 */
import { MAX_SITE_ID, NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import type { Pipeline, PipelineConfig } from '../dataplane/pipeline.js';
import type { OnrampSpec } from '../dataplane/ports.js';
import { Firewall } from '../policy/firewall.js';
import { NextHopKind, type RouteRecord, type RouteSpec } from '../route/route-table.js';
import { parsePrefix, formatPrefix } from '../wire/addr.js';
import { assignIds, toOnrampSpec, toPipelineConfig, typeSettings, type ConfigIds, type TetherConfig } from '../config/index.js';

/** What the API needs of the running edge. */
export interface EdgeLike {
  /** Throws ApplyError when `next` cannot be applied live (the store then rolls the change back). */
  checkConfig?(next: TetherConfig, previous: TetherConfig): void;
  /** Applies a validated configuration (ids pinned) that the store has just committed. */
  applyConfig(next: TetherConfig): ApplyResult;
  /** The running edge's health of the onramp named `name` (docs/HEALTH.md); undefined when it has none (not running it). */
  onrampHealth?(name: string): OnrampHealthView | undefined;
}

/** An onramp's health as the API shows it (GET /v1/onramps: `health`). */
export interface OnrampHealthView {
  state: 'healthy' | 'degraded' | 'down';
  /** Failed / all samples over the last five minutes, 0..1. */
  loss: number;
  /** Smoothed probe round-trip time (ms), null before the first reply or without probes. */
  rtt_ms: number | null;
  /** When the current state was entered (ISO 8601). */
  since: string;
  /** Priority added to routes over this onramp: 0, 500000 (degraded) or 1000000 (down). */
  penalty: number;
}

export interface ApplyResult {
  onrampsAdded: string[];
  onrampsChanged: string[];
  onrampsRemoved: string[];
  routesAdded: number;
  routesRemoved: number;
  firewallReplaced: boolean;
  /** Onramps whose transport (GRE tunnel, WireGuard peer, interconnect link) the Edge must set up, change or remove. */
  transportChanged: string[];
  /** Settings stored but effective only after a restart ("egress", "flows", "api", "store", "log"). */
  restartRequired: string[];
  /** Flows ended at once because an onramp they name was removed (set by the daemon's EdgeLike). */
  flowsEnded?: number;
}

/** A change that is valid but cannot be applied to the running edge. */
export class ApplyError extends Error {
  constructor(readonly path: string, message: string) {
    super(message);
    this.name = 'ApplyError';
  }
}

/** What a running edge cannot change (docs/API.md, "What a change does to traffic", says why for each). */
const RESTART_SECTIONS = ['log', 'api', 'store', 'flows', 'daemon', 'egress'] as const;

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Two port specs are the same apart from `up` (the health state, which a configuration never carries). Field
 * by field, arrays element by element (anything deeper through JSON): one change with 1,000 onramps configured
 * compares 1,000 specs, and stringifying each made the change measurably slower (bench/apply.ts).
 */
function sameSpec(a: OnrampSpec, b: OnrampSpec): boolean {
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
    if (k === 'up') continue;
    const u = x[k];
    const v = y[k];
    if (u === v) continue;
    if (Array.isArray(u) && Array.isArray(v)) {
      if (u.length !== v.length || u.some((e, i) => e !== v[i] && !same(e, v[i]))) return false;
    } else if (typeof u !== 'object' || typeof v !== 'object' || !same(u, v)) return false;
  }
  return true;
}

/**
 * Ids for `cfg` that keep the previous ones where they still fit. Sites, onramps and firewall rules carry
 * pinned ids (the store writes them), so assignIds gives them back unchanged; the exception is the own site
 * of an onramp without a site, which has no id field: it keeps its previous number unless a configured site
 * took that number meanwhile. (An ARR onramp's zone is its site id: renumbering it would orphan its flows.)
 */
export function stableIds(previous: ConfigIds | undefined, cfg: TetherConfig): ConfigIds {
  const ids = assignIds(cfg);
  if (previous === undefined) return ids;
  const siteless = cfg.onramps.filter((o) => o.site === undefined);
  if (siteless.length === 0) return ids;
  const taken = new Set(ids.sites.values());
  const keep = new Map<string, number>();
  for (const o of siteless) {
    const before = previous.onrampSite.get(o.name);
    const wasSiteless = before !== undefined && ![...previous.sites.values()].includes(before);
    if (wasSiteless && !taken.has(before)) { keep.set(o.name, before); taken.add(before); }
  }
  let next = 1;
  for (const o of siteless) {
    if (keep.has(o.name)) continue;
    while (taken.has(next)) next++;
    if (next > MAX_SITE_ID) throw new RangeError(`more than ${MAX_SITE_ID} sites`);
    keep.set(o.name, next);
    taken.add(next);
  }
  for (const [name, site] of keep) ids.onrampSite.set(name, site);
  return ids;
}

function routeKey(r: { prefix: string; kind: NextHopKind; port?: number; priority?: number; weight?: number; siteScope?: number }): string {
  const p = parsePrefix(r.prefix);
  const port = r.kind === NextHopKind.Onramp ? r.port : r.kind === NextHopKind.Internet ? PORT_INTERNET : NEXT_HOP_DROP;
  return `${p === null ? r.prefix : formatPrefix(p)}|${r.kind}|${port}|${r.priority}|${r.weight}|${r.siteScope ?? 0}`;
}

/** Applies configurations to one running Pipeline (the Edge delegates to it; tests use it directly). */
export class LiveConfig implements EdgeLike {
  private current: TetherConfig;
  private currentIds: ConfigIds;

  /** `pipeline` must have been built from `config` (toPipelineConfig(config, ids)). */
  /** The firewall the pipeline runs, as compiled (compared with the next one's). */
  private firewall: PipelineConfig['firewall'];

  constructor(private readonly pipeline: Pipeline, config: TetherConfig, ids: ConfigIds = assignIds(config)) {
    this.current = config;
    this.currentIds = ids;
    this.firewall = toPipelineConfig(config, ids).firewall;
  }

  get config(): TetherConfig {
    return this.current;
  }

  get ids(): ConfigIds {
    return this.currentIds;
  }

  checkConfig(next: TetherConfig): void {
    if (this.pipeline.snat === null && next.routes.some((r) => r.next_hop === 'internet')) {
      const i = next.routes.findIndex((r) => r.next_hop === 'internet');
      throw new ApplyError(`routes[${i}].next_hop`, 'the running edge has no egress pool (egress.addresses is fixed at start): store the pool, restart, then add Internet routes');
    }
    if (this.replacedOnramps(next) === undefined) stableIds(this.currentIds, next); // throws on id exhaustion before anything is stored
  }

  /**
   * The indexes of the onramps `next` replaced in place — same name, id, site and type, so every id stays —
   * when nothing else changed (the other entries, sites, routes, rules and devices are the current
   * configuration's own objects; the settings are equal); undefined otherwise.
   */
  private replacedOnramps(next: TetherConfig): number[] | undefined {
    const cur = this.current;
    const sameEntries = (a: readonly unknown[], b: readonly unknown[]): boolean => a === b || (a.length === b.length && a.every((x, i) => x === b[i]));
    if (!sameEntries(cur.sites, next.sites) || !sameEntries(cur.routes, next.routes) || !sameEntries(cur.firewall.rules, next.firewall.rules)) return undefined;
    if (!sameEntries(cur.wireguard_devices, next.wireguard_devices) || cur.firewall.default_action !== next.firewall.default_action) return undefined;
    if (cur.onramps.length !== next.onramps.length) return undefined;
    for (const key of RESTART_SECTIONS) if (cur[key] !== next[key] && !same(cur[key], next[key])) return undefined;
    const changed: number[] = [];
    for (let i = 0; i < next.onramps.length; i++) {
      const a = cur.onramps[i];
      const b = next.onramps[i];
      if (a === b) continue;
      if (a.name !== b.name || a.id !== b.id || a.site !== b.site || a.type !== b.type) return undefined;
      changed.push(i);
    }
    return changed;
  }

  applyConfig(next: TetherConfig): ApplyResult {
    this.checkConfig(next);
    const replaced = this.replacedOnramps(next);
    if (replaced !== undefined) return this.applyReplacedOnramps(next, replaced);
    const prev = this.current;
    const ids = stableIds(this.currentIds, next);
    const pc = toPipelineConfig(next, ids);
    const p = this.pipeline;
    const out: ApplyResult = {
      onrampsAdded: [], onrampsChanged: [], onrampsRemoved: [], routesAdded: 0, routesRemoved: 0,
      firewallReplaced: false, transportChanged: [], restartRequired: [],
    };

    // 1. Onramps first: new routes may lead to them.
    const prevByName = new Map(prev.onramps.map((o) => [o.name, o]));
    const wanted = new Set<number>();
    for (const spec of pc.onramps) {
      wanted.add(spec.id);
      const have = p.ports.get(spec.id);
      const desired: OnrampSpec = { ...spec, up: have?.up ?? true };
      if (have === undefined) out.onrampsAdded.push(spec.name);
      else if (!sameSpec(have, desired)) out.onrampsChanged.push(spec.name);
      else continue;
      p.setOnramp(desired);
    }
    for (const o of next.onramps) {
      const before = prevByName.get(o.name);
      if (before === undefined || before.type !== o.type || !same(typeSettings(before), typeSettings(o)) || before.id !== o.id) out.transportChanged.push(o.name);
    }

    // Sites' failover policies: established flows read them per packet, so a change applies at once.
    p.setSites(pc.sites ?? []);

    // 2. Routes: a multiset diff on everything a route is made of.
    const want = new Map<string, RouteSpec[]>();
    for (const r of pc.routes) {
      const k = routeKey(r);
      const list = want.get(k);
      if (list === undefined) want.set(k, [r]); else list.push(r);
    }
    const stale: RouteRecord[] = [];
    for (const rec of p.routes.list()) {
      const list = want.get(routeKey(rec));
      if (list !== undefined && list.length > 0) list.pop();
      else stale.push(rec);
    }
    for (const rec of stale) { p.routes.remove(rec.id); out.routesRemoved++; }
    for (const list of want.values()) for (const r of list) { p.addRoute(r); out.routesAdded++; }

    // 3. Onramps that are gone (no route leads to them any more: the configuration was validated).
    for (const spec of p.ports.list()) {
      if (wanted.has(spec.id)) continue;
      p.ports.remove(spec.id);
      out.onrampsRemoved.push(spec.name);
      if (!out.transportChanged.includes(spec.name)) out.transportChanged.push(spec.name);
    }

    // 4. Firewall: immutable, replaced as a whole when anything in it changed.
    if (!same(this.firewall, pc.firewall)) {
      this.firewall = pc.firewall;
      p.setFirewall(new Firewall(pc.firewall?.rules ?? [], pc.firewall?.defaultAction ?? 'allow'));
      out.firewallReplaced = true;
    }

    for (const key of RESTART_SECTIONS) if (!same(prev[key], next[key])) out.restartRequired.push(key);
    this.current = next;
    this.currentIds = ids;
    return out;
  }

  /**
   * Onramps replaced in place, nothing else changed: the ids, routes, sites and firewall stay; each replaced
   * onramp's port spec and transport are compared as the full diff compares them.
   */
  private applyReplacedOnramps(next: TetherConfig, replaced: readonly number[]): ApplyResult {
    const out: ApplyResult = {
      onrampsAdded: [], onrampsChanged: [], onrampsRemoved: [], routesAdded: 0, routesRemoved: 0,
      firewallReplaced: false, transportChanged: [], restartRequired: [],
    };
    const ids = this.currentIds;
    for (const i of replaced) {
      const before = this.current.onramps[i];
      const o = next.onramps[i];
      const id = ids.onramps.get(o.name)!;
      const have = this.pipeline.ports.get(id);
      const desired: OnrampSpec = { ...toOnrampSpec(o, id, ids.onrampSite.get(o.name)!), up: have?.up ?? true };
      if (have === undefined) out.onrampsAdded.push(o.name);
      else if (!sameSpec(have, desired)) out.onrampsChanged.push(o.name);
      if (have === undefined || out.onrampsChanged.includes(o.name)) this.pipeline.setOnramp(desired);
      if (!same(typeSettings(before), typeSettings(o))) out.transportChanged.push(o.name);
    }
    this.current = next;
    return out;
  }
}
