/**
 * Unified routing: one table for every onramp type (GRE, IPsec, WireGuard, interconnect), the
 * Internet egress and blackholes. A route is prefix -> next hop, with a priority, a weight and an
 * optional source-site scope. The lookup runs once per flow, at flow setup (docs/FLOW-MODEL.md, the packet walk).
 *
 * Semantics, for a flow from site S to address D (the tests' oracle applies them literally):
 *  1. Visible routes: those with siteScope 0 (every site) and those with siteScope S.
 *  2. The longest prefix among visible routes containing D wins. At equal length a route scoped to S
 *     beats a global one (it is more specific about whom it applies to). The winner is one "prefix
 *     group": the routes of one (scope, prefix).
 *  3. Within the group, the lowest priority value whose next hop is healthy. A route's priority here is its
 *     configured priority plus its port's health penalty (setPortPenalty: +500,000 over a degraded onramp,
 *     +1,000,000 over a down one, src/health/constants.ts), so a penalised onramp loses to any route that is
 *     not. An Onramp route is healthy while its port is up (setPortUp); Internet and Blackhole routes are always
 *     healthy and never penalised. When no route
 *     of the group is healthy, the lowest priority among all of them is used anyway: a degraded path
 *     beats no path, and Cloudflare's rule is that routes over a down onramp lose priority, not that
 *     they vanish. There is never a fallback to a shorter prefix.
 *  4. ECMP: several routes at that priority (healthy ones only, unless none is healthy) share flows by
 *     weight. Candidates are ordered by route id; r = (flowHash >>> 0) % totalWeight selects the first
 *     candidate whose cumulative weight exceeds r. The same flowHash picks the same route for as long as
 *     the candidate set is unchanged.
 *  5. IPv4 and IPv6 live in separate structures; a lookup never crosses families.
 *
 * Structure: the group chosen by rules 1-2 comes from longest-prefix-match tries (lpm.ts) whose leaves
 * are group ids + 1: a 16-8-8 trie for global IPv4 routes (3 reads at most), an 8-8-8-8 trie holding one
 * small root per site that has scoped IPv4 routes (1 KiB per site, created on demand, freed when the
 * site's last scoped route goes), and an 8-4-4-...-4 trie for IPv6 (root 0 global, one root per scoped
 * site). Rules 3-4 are precomputed per group whenever a route or a port's health changes: the common
 * single-candidate case is one typed-array read, ECMP walks the group's cumulative weights.
 *
 * Route ids are small integers reused after remove(); `version` changes on every update so a caller
 * that caches lookups can tell when to redo them.
 */
import { parseAddress, parsePrefix, formatPrefix, type Prefix } from '../wire/addr.js';
import { MAX_ONRAMP_ID, MAX_SITE_ID, NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import { AF_INET4, AF_INET6 } from '../wire/constants.js';
import { modU32 } from '../common/hash.js';
import { StrideTrie, growTyped } from './lpm.js';

export const enum NextHopKind {
  Onramp = 0,
  Internet = 1,
  Blackhole = 2,
}

export interface RouteSpec {
  /** "10.0.1.0/24", "2001:db8::/32"; host bits are cleared; no "/n" means a host route. */
  prefix: string;
  kind: NextHopKind;
  /** Onramp id (1..MAX_ONRAMP_ID) when kind is Onramp; ignored otherwise. */
  port?: number;
  /** Default 100; lower wins. 0..0xffffffff. */
  priority?: number;
  /** Default 1; ECMP share among equal-priority healthy routes of the same prefix. 1..0xffff. */
  weight?: number;
  /** 0 / absent: applies to every site; N: only to flows whose source site is N (1..MAX_SITE_ID). */
  siteScope?: number;
}

/** A route as stored, read back for the control plane. */
export interface RouteRecord {
  id: number;
  /** Canonical text (host bits cleared). */
  prefix: string;
  kind: NextHopKind;
  /** Onramp id; PORT_INTERNET for Internet; NEXT_HOP_DROP for Blackhole. */
  port: number;
  priority: number;
  weight: number;
  siteScope: number;
}

export const DEFAULT_PRIORITY = 100;
export const DEFAULT_WEIGHT = 1;
export const MAX_PRIORITY = 0xffffffff;
export const MAX_WEIGHT = 0xffff;
export const NO_ROUTE = -1;

/** Site ids index these maps directly (0..MAX_SITE_ID; slot 0 = global, never holds a scoped root). */
const SITE_SLOTS = MAX_SITE_ID + 1;
const PORT_SLOTS = MAX_ONRAMP_ID + 1;
/** Trie geometry: IPv4 global 16-8-8 (3 reads), IPv4 per-site 8-8-8-8 (1 KiB roots), IPv6 8 then 4-bit steps. */
const V4_GLOBAL_ROOT_BITS = 16;
const V4_GLOBAL_CHUNK_BITS = 8;
const V4_SITE_ROOT_BITS = 8;
const V4_SITE_CHUNK_BITS = 8;
const V6_ROOT_BITS = 8;
const V6_CHUNK_BITS = 4;
const V4_WORDS = 1;
const V6_WORDS = 4;
const WORDS_PER_GROUP = 4;
const V6_GLOBAL_ROOT = 0;
const V4_GLOBAL_ROOT = 0;
const INITIAL_ROUTES = 64;
const INITIAL_SELECTION = 64;
/** gPick value meaning "several candidates: walk the selection pool". */
const PICK_ECMP = -1;

export class RouteTable {
  // LPM structures; leaves are group id + 1.
  private readonly v4Global = new StrideTrie(V4_GLOBAL_ROOT_BITS, V4_GLOBAL_CHUNK_BITS, V4_WORDS);
  private readonly v4Sites = new StrideTrie(V4_SITE_ROOT_BITS, V4_SITE_CHUNK_BITS, V4_WORDS);
  private readonly v6 = new StrideTrie(V6_ROOT_BITS, V6_CHUNK_BITS, V6_WORDS);
  /** Site id -> root in v4Sites + 1 (0 = the site has no scoped IPv4 routes). */
  private readonly siteRoot4 = new Int32Array(SITE_SLOTS);
  /** Site id -> root in v6 + 1 (0 = the site has no scoped IPv6 routes). */
  private readonly siteRoot6 = new Int32Array(SITE_SLOTS);
  /** Onramp health by port; 1 = up (the default). */
  private readonly portUp = new Uint8Array(PORT_SLOTS).fill(1);
  /** Priority added to the routes over a port (health penalty); 0 by default. */
  private readonly portPenalty = new Uint32Array(PORT_SLOTS);

  // Routes, struct of arrays by route id.
  private rKind = new Uint8Array(INITIAL_ROUTES);
  private rPort = new Uint16Array(INITIAL_ROUTES);
  private rPriority = new Uint32Array(INITIAL_ROUTES);
  private rWeight = new Uint16Array(INITIAL_ROUTES);
  /** Group of the route, -1 when the id is free. */
  private rGroup = new Int32Array(INITIAL_ROUTES).fill(-1);
  private routeNext = 0;
  private readonly routeFree: number[] = [];
  private routeCount = 0;

  // Prefix groups, struct of arrays by group id.
  private gFamily = new Uint8Array(INITIAL_ROUTES);
  private gScope = new Uint16Array(INITIAL_ROUTES);
  private gLen = new Uint8Array(INITIAL_ROUTES);
  private gWords = new Uint32Array(INITIAL_ROUTES * WORDS_PER_GROUP);
  /** The single chosen route, or PICK_ECMP when gSelCount candidates sit in the selection pool. */
  private gPick = new Int32Array(INITIAL_ROUTES);
  private gSelOff = new Int32Array(INITIAL_ROUTES);
  private gSelCount = new Int32Array(INITIAL_ROUTES);
  private gSelTotal = new Float64Array(INITIAL_ROUTES);
  private readonly gRoutes: number[][] = [];
  private groupNext = 0;
  private readonly groupFree: number[] = [];

  // ECMP candidates of every group with more than one: route id and cumulative weight (exclusive end).
  private selRoute = new Int32Array(INITIAL_SELECTION);
  private selCum = new Float64Array(INITIAL_SELECTION);
  private selUsed = 0;

  /** Onramp port -> ids of the routes over it, to recompute groups when the port's health changes. */
  private readonly portRoutes = new Map<number, Set<number>>();
  private versionCounter = 0;

  constructor() {
    this.v4Global.allocRoot(); // V4_GLOBAL_ROOT
    this.v6.allocRoot(); // V6_GLOBAL_ROOT
  }

  /** Next-hop kind by route id. The array is replaced when the table grows: read the property, do not keep it. */
  get routeKind(): Uint8Array {
    return this.rKind;
  }

  /** Port by route id (onramp id; PORT_INTERNET; NEXT_HOP_DROP for blackholes). Same caveat as routeKind. */
  get routePort(): Uint16Array {
    return this.rPort;
  }

  /** Changes on every add, remove and health change. */
  get version(): number {
    return this.versionCounter;
  }

  get size(): number {
    return this.routeCount;
  }

  // --- lookups (hot path: no allocation, no exceptions) -------------------------------------------

  /** `dst` signed or unsigned (flow setup passes int32: no heap number for a word >= 2^31); `flowHash` too. */
  lookup4(site: number, dst: number, flowHash: number): number {
    const global = this.v4Global;
    let leaf = global.lookup32(V4_GLOBAL_ROOT, dst);
    const slot = site >>> 0;
    if (slot !== 0 && slot < SITE_SLOTS) {
      const root = this.siteRoot4[slot];
      if (root !== 0) {
        const sites = this.v4Sites;
        const scoped = sites.lookup32(root - 1, dst);
        // Rule 2: longer prefix wins; at equal length the site's route wins.
        if (scoped !== 0 && (leaf === 0 || sites.lengthOf(scoped) >= global.lengthOf(leaf))) leaf = scoped;
      }
    }
    return leaf === 0 ? NO_ROUTE : this.resolve(leaf - 1, flowHash);
  }

  lookup6(site: number, dst: Uint32Array, dstOffset: number, flowHash: number): number {
    const trie = this.v6;
    let leaf = trie.lookupWords(V6_GLOBAL_ROOT, dst, dstOffset);
    const slot = site >>> 0;
    if (slot !== 0 && slot < SITE_SLOTS) {
      const root = this.siteRoot6[slot];
      if (root !== 0) {
        const scoped = trie.lookupWords(root - 1, dst, dstOffset);
        if (scoped !== 0 && (leaf === 0 || trie.lengthOf(scoped) >= trie.lengthOf(leaf))) leaf = scoped;
      }
    }
    return leaf === 0 ? NO_ROUTE : this.resolve(leaf - 1, flowHash);
  }

  /** Rules 3-4 on a group, from its precomputed selection. */
  private resolve(group: number, flowHash: number): number {
    const pick = this.gPick[group];
    if (pick !== PICK_ECMP) return pick;
    // (flowHash >>> 0) % total in int32 divisions (modU32; a float modulo once the hash reaches 2^31).
    const r = modU32(flowHash, this.gSelTotal[group]);
    const cum = this.selCum;
    let i = this.gSelOff[group];
    const last = i + this.gSelCount[group] - 1;
    while (i < last && cum[i] <= r) i++;
    return this.selRoute[i];
  }

  /** Control plane / tests: lookup by address text (either family). Allocates. */
  lookupAddress(site: number, address: string, flowHash = 0): number {
    const words = new Uint32Array(4);
    const family = parseAddress(address, words);
    if (family === 0) throw new TypeError(`"${address}" is not an IPv4 or IPv6 address`);
    return family === AF_INET4 ? this.lookup4(site, words[0], flowHash) : this.lookup6(site, words, 0, flowHash);
  }

  isPortUp(port: number): boolean {
    return port >= 0 && port < PORT_SLOTS ? this.portUp[port] === 1 : false;
  }

  // --- updates (control plane) -------------------------------------------------------------------

  add(spec: RouteSpec): number {
    if (spec === null || typeof spec !== 'object') throw new TypeError('route spec must be an object');
    if (typeof spec.prefix !== 'string') throw new TypeError('route prefix must be a string such as "10.0.1.0/24"');
    const prefix = parsePrefix(spec.prefix);
    if (!prefix) throw new TypeError(`route prefix "${spec.prefix}" is not an IPv4 or IPv6 prefix (address/length)`);
    const kind = spec.kind;
    if (kind !== NextHopKind.Onramp && kind !== NextHopKind.Internet && kind !== NextHopKind.Blackhole) {
      throw new RangeError(`route kind ${String(kind)} is not Onramp (0), Internet (1) or Blackhole (2)`);
    }
    let port: number;
    if (kind === NextHopKind.Onramp) {
      port = checkInt('onramp route port', spec.port, undefined, 1, MAX_ONRAMP_ID);
    } else {
      port = kind === NextHopKind.Internet ? PORT_INTERNET : NEXT_HOP_DROP;
    }
    const priority = checkInt('route priority', spec.priority, DEFAULT_PRIORITY, 0, MAX_PRIORITY);
    const weight = checkInt('route weight', spec.weight, DEFAULT_WEIGHT, 1, MAX_WEIGHT);
    const scope = checkInt('route siteScope', spec.siteScope, 0, 0, MAX_SITE_ID);

    let group = this.findGroup(prefix, scope);
    if (group < 0) group = this.createGroup(prefix, scope);
    const id = this.allocRoute();
    this.rKind[id] = kind;
    this.rPort[id] = port;
    this.rPriority[id] = priority;
    this.rWeight[id] = weight;
    this.rGroup[id] = group;
    this.gRoutes[group].push(id);
    if (kind === NextHopKind.Onramp) {
      let set = this.portRoutes.get(port);
      if (!set) this.portRoutes.set(port, (set = new Set()));
      set.add(id);
    }
    this.recompute(group);
    this.versionCounter++;
    return id;
  }

  remove(id: number): boolean {
    if (!Number.isInteger(id) || id < 0 || id >= this.routeNext || this.rGroup[id] < 0) return false;
    const group = this.rGroup[id];
    const routes = this.gRoutes[group];
    routes.splice(routes.indexOf(id), 1);
    if (this.rKind[id] === NextHopKind.Onramp) {
      const set = this.portRoutes.get(this.rPort[id])!;
      set.delete(id);
      if (set.size === 0) this.portRoutes.delete(this.rPort[id]);
    }
    this.rGroup[id] = -1;
    this.routeFree.push(id);
    this.routeCount--;
    if (routes.length === 0) this.deleteGroup(group);
    else this.recompute(group);
    this.versionCounter++;
    return true;
  }

  /** Onramp health (default up). Routes over a down onramp lose priority (rule 3). */
  setPortUp(port: number, up: boolean): void {
    checkInt('port', port, undefined, 1, MAX_ONRAMP_ID);
    const value = up ? 1 : 0;
    if (this.portUp[port] === value) return;
    this.portUp[port] = value;
    this.portChanged(port);
  }

  /** Priority added to every route over the port (rule 3); 0 removes it. Control plane: recomputes the port's groups. */
  setPortPenalty(port: number, penalty: number): void {
    checkInt('port', port, undefined, 1, MAX_ONRAMP_ID);
    checkInt('penalty', penalty, undefined, 0, MAX_PRIORITY);
    if (this.portPenalty[port] === penalty) return;
    this.portPenalty[port] = penalty;
    this.portChanged(port);
  }

  /** The port's health penalty (0 when none). */
  penaltyOf(port: number): number {
    return port >= 0 && port < PORT_SLOTS ? this.portPenalty[port] : 0;
  }

  /** A route's priority as rule 3 compares it: configured priority plus its port's penalty (may exceed 2^32 - 1). */
  effectivePriority(id: number): number {
    return this.rPriority[id] + (this.rKind[id] === NextHopKind.Onramp ? this.portPenalty[this.rPort[id]] : 0);
  }

  private portChanged(port: number): void {
    const ids = this.portRoutes.get(port);
    if (ids) {
      const groups = new Set<number>();
      for (const id of ids) groups.add(this.rGroup[id]);
      for (const g of groups) this.recompute(g);
    }
    this.versionCounter++;
  }

  get(id: number): RouteRecord | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.routeNext || this.rGroup[id] < 0) return undefined;
    const g = this.rGroup[id];
    const words = this.gWords.slice(g * WORDS_PER_GROUP, (g + 1) * WORDS_PER_GROUP);
    const family = this.gFamily[g] === AF_INET4 ? AF_INET4 : AF_INET6;
    return {
      id,
      prefix: formatPrefix({ family, words, length: this.gLen[g] }),
      kind: this.rKind[id] as NextHopKind,
      port: this.rPort[id],
      priority: this.rPriority[id],
      weight: this.rWeight[id],
      siteScope: this.gScope[g],
    };
  }

  /** Every route, by ascending id. */
  list(): RouteRecord[] {
    const out: RouteRecord[] = [];
    for (let id = 0; id < this.routeNext; id++) {
      const r = this.get(id);
      if (r) out.push(r);
    }
    return out;
  }

  /** Bytes held by the typed arrays of the table and its tries (not the control plane's Maps and lists). */
  memoryBytes(): number {
    let bytes = this.v4Global.memoryBytes() + this.v4Sites.memoryBytes() + this.v6.memoryBytes();
    for (const a of [this.siteRoot4, this.siteRoot6, this.portUp, this.portPenalty, this.rKind, this.rPort, this.rPriority, this.rWeight,
      this.rGroup, this.gFamily, this.gScope, this.gLen, this.gWords, this.gPick, this.gSelOff, this.gSelCount,
      this.gSelTotal, this.selRoute, this.selCum]) bytes += a.byteLength;
    return bytes;
  }

  // --- internals ---------------------------------------------------------------------------------

  /** The trie holding (family, scope). */
  private trieOf(family: number, scope: number): StrideTrie {
    if (family === AF_INET6) return this.v6;
    return scope === 0 ? this.v4Global : this.v4Sites;
  }

  /** The root holding (family, scope) in its trie; -1 when the scope has no root yet. */
  private rootOf(family: number, scope: number): number {
    if (scope === 0) return family === AF_INET6 ? V6_GLOBAL_ROOT : V4_GLOBAL_ROOT;
    return (family === AF_INET6 ? this.siteRoot6 : this.siteRoot4)[scope] - 1;
  }

  private findGroup(prefix: Prefix, scope: number): number {
    const root = this.rootOf(prefix.family, scope);
    if (root < 0) return -1;
    return this.trieOf(prefix.family, scope).get(root, prefix.words, 0, prefix.length) - 1;
  }

  private createGroup(prefix: Prefix, scope: number): number {
    const family = prefix.family;
    const trie = this.trieOf(family, scope);
    let root = this.rootOf(family, scope);
    if (root < 0) {
      root = trie.allocRoot();
      (family === AF_INET6 ? this.siteRoot6 : this.siteRoot4)[scope] = root + 1;
    }
    let g = this.groupFree.pop();
    if (g === undefined) {
      g = this.groupNext++;
      if (g >= this.gPick.length) this.growGroups(this.gPick.length * 2);
    }
    this.gFamily[g] = family;
    this.gScope[g] = scope;
    this.gLen[g] = prefix.length;
    this.gWords.set(prefix.words, g * WORDS_PER_GROUP);
    this.gSelCount[g] = 0;
    this.gRoutes[g] = [];
    trie.insert(root, prefix.words, 0, prefix.length, g + 1);
    return g;
  }

  private deleteGroup(g: number): void {
    const family = this.gFamily[g];
    const scope = this.gScope[g];
    const trie = this.trieOf(family, scope);
    const root = this.rootOf(family, scope);
    trie.remove(root, this.gWords, g * WORDS_PER_GROUP, this.gLen[g], g + 1);
    if (scope !== 0 && trie.prefixesIn(root) === 0) {
      trie.freeRoot(root);
      (family === AF_INET6 ? this.siteRoot6 : this.siteRoot4)[scope] = 0;
    }
    this.gSelCount[g] = 0;
    this.gPick[g] = NO_ROUTE;
    this.gFamily[g] = 0;
    this.groupFree.push(g);
  }

  private healthy(id: number): boolean {
    return this.rKind[id] !== NextHopKind.Onramp || this.portUp[this.rPort[id]] === 1;
  }

  /** Precomputes rules 3-4 for a group. */
  private recompute(g: number): void {
    const routes = this.gRoutes[g];
    let bestAll = Infinity;
    let bestHealthy = Infinity;
    for (const id of routes) {
      const p = this.effectivePriority(id);
      if (p < bestAll) bestAll = p;
      if (p < bestHealthy && this.healthy(id)) bestHealthy = p;
    }
    const anyHealthy = bestHealthy !== Infinity;
    const target = anyHealthy ? bestHealthy : bestAll;
    const candidates = routes
      .filter((id) => this.effectivePriority(id) === target && (!anyHealthy || this.healthy(id)))
      .sort((a, b) => a - b);
    this.gSelCount[g] = 0; // its old pool region is garbage from here on
    if (candidates.length === 1) {
      this.gPick[g] = candidates[0];
      return;
    }
    const off = this.reserveSelection(candidates.length);
    let total = 0;
    for (let i = 0; i < candidates.length; i++) {
      total += this.rWeight[candidates[i]];
      this.selRoute[off + i] = candidates[i];
      this.selCum[off + i] = total;
    }
    this.gPick[g] = PICK_ECMP;
    this.gSelOff[g] = off;
    this.gSelCount[g] = candidates.length;
    this.gSelTotal[g] = total;
  }

  /** Bump allocation in the selection pool; compacts (and grows) the pool when it runs out. */
  private reserveSelection(n: number): number {
    if (this.selUsed + n > this.selRoute.length) {
      let live = 0;
      for (let g = 0; g < this.groupNext; g++) live += this.gSelCount[g];
      const size = Math.max(INITIAL_SELECTION, 2 * (live + n));
      const route = new Int32Array(size);
      const cum = new Float64Array(size);
      let used = 0;
      for (let g = 0; g < this.groupNext; g++) {
        const count = this.gSelCount[g];
        if (count === 0) continue;
        const from = this.gSelOff[g];
        route.set(this.selRoute.subarray(from, from + count), used);
        cum.set(this.selCum.subarray(from, from + count), used);
        this.gSelOff[g] = used;
        used += count;
      }
      this.selRoute = route;
      this.selCum = cum;
      this.selUsed = used;
    }
    const off = this.selUsed;
    this.selUsed += n;
    return off;
  }

  private allocRoute(): number {
    let id = this.routeFree.pop();
    if (id === undefined) {
      id = this.routeNext++;
      if (id >= this.rKind.length) {
        const size = this.rKind.length * 2;
        this.rKind = growTyped(this.rKind, size);
        this.rPort = growTyped(this.rPort, size);
        this.rPriority = growTyped(this.rPriority, size);
        this.rWeight = growTyped(this.rWeight, size);
        const group = growTyped(this.rGroup, size);
        group.fill(-1, id);
        this.rGroup = group;
      }
    }
    this.routeCount++;
    return id;
  }

  private growGroups(size: number): void {
    this.gFamily = growTyped(this.gFamily, size);
    this.gScope = growTyped(this.gScope, size);
    this.gLen = growTyped(this.gLen, size);
    this.gWords = growTyped(this.gWords, size * WORDS_PER_GROUP);
    this.gPick = growTyped(this.gPick, size);
    this.gSelOff = growTyped(this.gSelOff, size);
    this.gSelCount = growTyped(this.gSelCount, size);
    this.gSelTotal = growTyped(this.gSelTotal, size);
  }
}

/** Validates an optional integer field; `fallback` undefined makes it required. */
function checkInt(what: string, value: unknown, fallback: number | undefined, min: number, max: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${what} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  if (value < min || value > max) throw new RangeError(`${what} ${value} is outside ${min}..${max}`);
  return value;
}
