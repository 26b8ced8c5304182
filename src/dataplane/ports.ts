/**
 * The port registry: what the pipeline needs to know about every port (onramp or the Internet
 * egress), in typed arrays indexed by port id so the packet path reads them without a lookup.
 *
 * A site is a group of onramps sharing one private address space. With Automatic Return Routing
 * (ARR) an onramp's packets belong to its site's zone (zone id = site id); without ARR they belong
 * to the global zone, like the Internet's. Replies for a site whose recorded onramp is down go to
 * the site's best healthy onramp: lowest preference value, then lowest id.
 *
 * Per site, a failover policy (SiteFailover) says how an established flow's return onramp moves
 * between the site's onramps; the pipeline applies it (Pipeline.steerReturn). The site tables it
 * reads (policy, drain idle time, best healthy onramp, each onramp's rank) are preallocated and
 * kept current on every change, so the packet path looks nothing up.
 */
import { MAX_ONRAMP_ID, MAX_SITE_ID, PORT_INTERNET, ZONE_GLOBAL } from '../common/ids.js';
import { AF_INET4, AF_INET6, MIN_MTU_IPV4 } from '../wire/constants.js';
import { tcpMssCeiling } from '../wire/rewrite.js';
import { PrefixList } from '../route/prefix-list.js';
import { parseAddress } from '../wire/addr.js';

/** Every onramp kind: the one list (the configuration schema and the API derive theirs from it). */
export const ONRAMP_TYPES = ['wireguard', 'gre', 'interconnect', 'ipsec'] as const;
export type OnrampType = (typeof ONRAMP_TYPES)[number];

/**
 * How an established flow's replies move between its site's onramps (the configuration schema derives its
 * list from this one; the index is the code in PortRegistry.sitePolicy):
 * - follow: to the onramp the flow last arrived on (or the best healthy one while that is down);
 * - pin: to the onramp recorded at setup while it is not down (then the best healthy one); arrivals on
 *   other onramps of the site do not move it;
 * - drain: failover at once (a down return onramp, or an arrival on a less preferred onramp, moves the flow
 *   there), failback only when idle: a flow on a backup returns to the best healthy onramp after
 *   drainIdleMs without a packet. New flows take the preferred onramp anyway (routing).
 */
export const FAILOVER_POLICIES = ['follow', 'pin', 'drain'] as const;
export type FailoverPolicyName = (typeof FAILOVER_POLICIES)[number];
export const FAILOVER_FOLLOW = 0;
export const FAILOVER_PIN = 1;
export const FAILOVER_DRAIN = 2;
export const DEFAULT_DRAIN_IDLE_MS = 30_000;

export interface SiteFailover {
  policy: FailoverPolicyName;
  /** drain: idle time (ms) after which a flow on a backup moves back to the best healthy onramp. Default 30 s. */
  drainIdleMs?: number;
}

/** A site's settings for the pipeline; sites without one (an onramp's own site) follow. */
export interface SiteSpec {
  /** 1..65534 */
  id: number;
  failover?: SiteFailover;
}

export interface OnrampSpec {
  /** 1..65534 */
  id: number;
  name: string;
  type: OnrampType;
  /** 1..65534 */
  site: number;
  automaticReturnRouting: boolean;
  /**
   * Flow quota for flows this onramp starts and holds at once; 0 = none; absent = the automatic share of each
   * flow table among the configured onramps (fairShare, docs/FLOW-MODEL.md "Fair shares").
   */
  maxFlows?: number;
  /** Among a site's onramps, the lower value is preferred for failover (default 100). */
  preference?: number;
  /** Health as last reported by the onramp's health checks (default up). */
  up?: boolean;
  /**
   * Inner MTU of the tunnel behind this onramp (GRE's `mtu`; IPsec's later), bytes. When set, the pipeline
   * clamps the MSS option of TCP SYNs entering from or leaving toward this onramp so that neither end sends
   * segments the tunnel would have to fragment or drop (RFC 4459 section 3.2). Absent: no clamping.
   */
  mtu?: number;
  /**
   * Prefixes this onramp may send from (a WireGuard peer's allowed IPs, whitepaper section 2): when set, the
   * pipeline drops a packet from it whose source lies outside them (Drop.SourceNotAllowed). Absent: any source.
   */
  allowedSources?: string[];
  /**
   * The edge's own address inside this onramp's tunnel (health_check.source): ICMP echo from this onramp to it is
   * the edge's (probe replies for the health engine, the site's probes answered in place) and never sets up a flow.
   */
  localAddress?: string;
  /**
   * The edge's address in the ICMP errors it originates toward this onramp (time exceeded: what traceroute shows
   * as the edge's hop), at most one per family. A family not given falls back to localAddress, then to the
   * egress pool's first address of that family (Pipeline.icmpSourceOf, docs/CONFIG.md `icmp_source`).
   */
  icmpSource?: string[];
}

/** An onramp's own ICMP error sources (OnrampSpec.icmpSource, else its localAddress), per family; null = none. */
export interface IcmpSources {
  v4: Uint32Array | null;
  v6: Uint32Array | null;
}

const PORT_SPACE = MAX_ONRAMP_ID + 2; // ids 0..0xfffe, plus one so NEXT_HOP_DROP indexes safely
/** Words per local address slot (IPv6: four; IPv4 uses the first). */
export const LOCAL_SLOT_WORDS = 4;
const ADDR_WORDS = LOCAL_SLOT_WORDS;
const SITE_SPACE = MAX_SITE_ID + 1;
/** The drain idle time is kept in a Uint32Array (ms). */
const MAX_U32 = 0xffffffff;

export class PortRegistry {
  /** 1 when the port exists. The Internet egress (port 0) always exists. */
  readonly configured = new Uint8Array(PORT_SPACE);
  readonly site = new Uint16Array(PORT_SPACE);
  readonly zone = new Uint16Array(PORT_SPACE);
  readonly arr = new Uint8Array(PORT_SPACE);
  readonly up = new Uint8Array(PORT_SPACE);
  readonly preference = new Uint16Array(PORT_SPACE);
  /** Largest TCP MSS a SYN crossing the port may announce, per family, from OnrampSpec.mtu; 0 = no ceiling. */
  readonly mssCeiling4 = new Uint16Array(PORT_SPACE);
  readonly mssCeiling6 = new Uint16Array(PORT_SPACE);
  /**
   * The sources a port may send from (OnrampSpec.allowedSources; owner = the port id): sourceFilters[k - 1]
   * for k = sourceFilterIndex[port], 0 = any source. Two steps so that the packet path tests a typed array and
   * only filtered ports (a few WireGuard peers) cost a list.
   */
  readonly sourceFilterIndex = new Uint16Array(PORT_SPACE);
  readonly sourceFilters: (PrefixList | null)[] = [];
  /**
   * The port's own tunnel address (OnrampSpec.localAddress): slot k = localIndex[port] (0 = none) holds its family
   * in localFamily[k - 1] and its words (PacketInfo layout, IPv4 in the first) at localWords[(k - 1) * 4 ..].
   * Dense slots, so the packet path tests one typed array and only health-checked ports cost a slot.
   */
  readonly localIndex = new Uint16Array(PORT_SPACE);
  localFamily = new Uint8Array(0);
  localWords = new Uint32Array(0);
  private readonly localFree: number[] = [];
  /**
   * Per onramp with an icmp_source or a local address: the source of the ICMP errors the edge originates toward it
   * (OnrampSpec.icmpSource). A Map: read only on the rate-limited error path, never per forwarded packet.
   */
  readonly icmpSources = new Map<number, IcmpSources>();
  /** Per site: its failover policy (FAILOVER_FOLLOW, _PIN, _DRAIN) and, for drain, the idle time in ms. */
  readonly sitePolicy = new Uint8Array(SITE_SPACE);
  readonly drainIdleMs = new Uint32Array(SITE_SPACE).fill(DEFAULT_DRAIN_IDLE_MS);
  /** Per site: its best healthy onramp (the first up one in failover order); 0 when none is up. */
  readonly bestUp = new Uint16Array(SITE_SPACE);
  /** Per onramp: its position in its site's failover order (0 = preferred). */
  readonly rank = new Uint16Array(PORT_SPACE);
  /**
   * Per onramp: 1 when a flow returning to it may have to move without arriving elsewhere (its site drains and
   * it is not the site's best healthy onramp). The packet path tests this one byte for replies.
   */
  readonly steerable = new Uint8Array(PORT_SPACE);
  private readonly specs = new Map<number, OnrampSpec>();
  /** Bumped on every set and remove: the pipeline re-sizes its fair shares (onramps, sites) when it moves. */
  version = 0;
  /** Per site, its onramps in failover order (preference, then id). Rebuilt on every change. */
  private siteOrder: number[][] = [];

  constructor() {
    this.configured[PORT_INTERNET] = 1;
    this.up[PORT_INTERNET] = 1;
    this.zone[PORT_INTERNET] = ZONE_GLOBAL;
  }

  /** Adds or replaces an onramp. Throws with a message naming the field on bad input. */
  set(spec: OnrampSpec): void {
    if (!Number.isInteger(spec.id) || spec.id < 1 || spec.id > MAX_ONRAMP_ID) {
      throw new RangeError(`onramp id must be an integer 1..${MAX_ONRAMP_ID}, got ${spec.id}`);
    }
    if (!Number.isInteger(spec.site) || spec.site < 1 || spec.site > MAX_SITE_ID) {
      throw new RangeError(`onramp ${spec.id}: site must be an integer 1..${MAX_SITE_ID}, got ${spec.site}`);
    }
    const pref = spec.preference ?? 100;
    if (!Number.isInteger(pref) || pref < 0 || pref > 0xffff) {
      throw new RangeError(`onramp ${spec.id}: preference must be an integer 0..65535, got ${pref}`);
    }
    if (spec.mtu !== undefined && (!Number.isInteger(spec.mtu) || spec.mtu < MIN_MTU_IPV4 || spec.mtu > 0xffff)) {
      throw new RangeError(`onramp ${spec.id}: mtu must be an integer ${MIN_MTU_IPV4}..65535, got ${spec.mtu}`);
    }
    let filter: PrefixList | null = null;
    if (spec.allowedSources !== undefined) {
      filter = new PrefixList();
      for (const prefix of spec.allowedSources) {
        if (!filter.insert(prefix, spec.id)) throw new RangeError(`onramp ${spec.id}: allowed source ${prefix} is not a prefix`);
      }
    }
    const local = new Uint32Array(ADDR_WORDS);
    const localFamily = spec.localAddress === undefined ? 0 : parseAddress(spec.localAddress, local);
    if (spec.localAddress !== undefined && localFamily === 0) throw new RangeError(`onramp ${spec.id}: local address ${spec.localAddress} is not an IPv4 or IPv6 address`);
    const icmp = icmpSourcesOf(spec, localFamily, local);
    const id = spec.id;
    this.specs.set(id, { ...spec });
    if (icmp.v4 === null && icmp.v6 === null) this.icmpSources.delete(id);
    else this.icmpSources.set(id, icmp);
    this.setSourceFilter(id, filter);
    this.setLocal(id, localFamily, local);
    this.mssCeiling4[id] = spec.mtu === undefined ? 0 : tcpMssCeiling(AF_INET4, spec.mtu);
    this.mssCeiling6[id] = spec.mtu === undefined ? 0 : tcpMssCeiling(AF_INET6, spec.mtu);
    this.configured[id] = 1;
    this.site[id] = spec.site;
    this.arr[id] = spec.automaticReturnRouting ? 1 : 0;
    this.zone[id] = spec.automaticReturnRouting ? spec.site : ZONE_GLOBAL;
    this.up[id] = spec.up === false ? 0 : 1;
    this.preference[id] = pref;
    this.rebuildSiteOrder();
    this.version++;
  }

  remove(id: number): boolean {
    if (!this.specs.delete(id)) return false;
    this.configured[id] = 0;
    this.site[id] = 0;
    this.zone[id] = 0;
    this.arr[id] = 0;
    this.up[id] = 0;
    this.mssCeiling4[id] = 0;
    this.mssCeiling6[id] = 0;
    this.rank[id] = 0;
    this.steerable[id] = 0;
    this.setSourceFilter(id, null);
    this.setLocal(id, 0, null);
    this.icmpSources.delete(id);
    this.rebuildSiteOrder();
    this.version++;
    return true;
  }

  setUp(id: number, up: boolean): void {
    const spec = this.specs.get(id);
    if (!spec) throw new RangeError(`no onramp with id ${id}`);
    spec.up = up;
    this.up[id] = up ? 1 : 0;
    this.updateSite(spec.site);
  }

  /** Replaces every site's failover policy; a site not listed follows (the default). */
  setSites(sites: readonly SiteSpec[]): void {
    const idle = new Uint32Array(SITE_SPACE).fill(DEFAULT_DRAIN_IDLE_MS);
    const policy = new Uint8Array(SITE_SPACE);
    for (const site of sites) {
      if (!Number.isInteger(site.id) || site.id < 1 || site.id > MAX_SITE_ID) {
        throw new RangeError(`site id must be an integer 1..${MAX_SITE_ID}, got ${site.id}`);
      }
      const f = site.failover;
      if (f === undefined) continue;
      const code = FAILOVER_POLICIES.indexOf(f.policy);
      if (code < 0) throw new RangeError(`site ${site.id}: failover policy must be one of ${FAILOVER_POLICIES.join(', ')}, got ${f.policy}`);
      const ms = f.drainIdleMs ?? DEFAULT_DRAIN_IDLE_MS;
      if (!Number.isInteger(ms) || ms < 0 || ms > MAX_U32) throw new RangeError(`site ${site.id}: drain idle time must be an integer 0..${MAX_U32} ms, got ${ms}`);
      policy[site.id] = code;
      idle[site.id] = ms;
    }
    this.sitePolicy.set(policy);
    this.drainIdleMs.set(idle);
    this.siteOrder.forEach((_, site) => this.updateSite(site));
  }

  /** A site's failover policy as configured (follow when none was set). */
  siteFailover(site: number): Required<SiteFailover> {
    return { policy: FAILOVER_POLICIES[this.sitePolicy[site]], drainIdleMs: this.drainIdleMs[site] };
  }

  get(id: number): OnrampSpec | undefined {
    const spec = this.specs.get(id);
    return spec ? { ...spec } : undefined;
  }

  list(): OnrampSpec[] {
    return [...this.specs.values()].map((s) => ({ ...s })).sort((a, b) => a.id - b.id);
  }

  /** Configured onramps. */
  get onrampCount(): number {
    return this.specs.size;
  }

  /** Sites with at least one configured onramp. */
  get siteCount(): number {
    let n = 0;
    for (const ids of this.siteOrder) if (ids !== undefined && ids.length > 0) n++;
    return n;
  }

  /** The site's onramps in failover order (shared array: do not modify). */
  onrampsOfSite(site: number): readonly number[] {
    return this.siteOrder[site] ?? EMPTY;
  }

  /**
   * Where to send traffic recorded for `port` (ARR return, or a flow's next hop): the port itself
   * when it is up, else the first healthy onramp of the same site, else the port anyway (a
   * degraded path beats none; the onramp's own I/O counts what it cannot deliver).
   */
  deliverable(port: number): number {
    if (this.up[port] === 1) return port;
    const best = this.bestUp[this.site[port]];
    return best !== 0 ? best : port;
  }

  /** Installs (or with null, removes) a port's source filter, reusing its slot or a free one. */
  private setSourceFilter(id: number, filter: PrefixList | null): void {
    const filters = this.sourceFilters;
    let k = this.sourceFilterIndex[id];
    if (k === 0 && filter !== null) {
      k = filters.indexOf(null) + 1;
      if (k === 0) k = filters.push(null);
    }
    if (k === 0) return;
    filters[k - 1] = filter;
    this.sourceFilterIndex[id] = filter === null ? 0 : k;
  }

  /** Installs (family 0: removes) a port's own address, reusing its slot or a free one. */
  private setLocal(id: number, family: number, words: Uint32Array | null): void {
    let k = this.localIndex[id];
    if (family === 0 || words === null) {
      if (k !== 0) {
        this.localFamily[k - 1] = 0;
        this.localFree.push(k);
        this.localIndex[id] = 0;
      }
      return;
    }
    if (k === 0) {
      k = this.localFree.pop() ?? this.localFamily.length + 1;
      if (k > this.localFamily.length) {
        const family2 = new Uint8Array(k);
        family2.set(this.localFamily);
        const words2 = new Uint32Array(k * ADDR_WORDS);
        words2.set(this.localWords);
        this.localFamily = family2;
        this.localWords = words2;
      }
      this.localIndex[id] = k;
    }
    this.localFamily[k - 1] = family;
    this.localWords.set(words, (k - 1) * ADDR_WORDS);
  }

  private rebuildSiteOrder(): void {
    const order: number[][] = [];
    for (const spec of this.specs.values()) (order[spec.site] ??= []).push(spec.id);
    for (const ids of order) {
      ids?.sort((a, b) => this.preference[a] - this.preference[b] || a - b);
    }
    const previous = this.siteOrder;
    this.siteOrder = order;
    // Sites that lost their last onramp keep no best onramp; every other site's is recomputed.
    previous.forEach((_, site) => this.updateSite(site));
    order.forEach((ids, site) => {
      ids.forEach((id, i) => (this.rank[id] = i));
      this.updateSite(site);
    });
  }

  /** A site's bestUp (the first up onramp in failover order, or 0) and its onramps' steerable: O(onramps of the site). */
  private updateSite(site: number): void {
    const order = this.siteOrder[site] ?? EMPTY;
    let best = 0;
    for (let i = 0; i < order.length && best === 0; i++) {
      if (this.up[order[i]] === 1) best = order[i];
    }
    this.bestUp[site] = best;
    const drains = this.sitePolicy[site] === FAILOVER_DRAIN;
    for (let i = 0; i < order.length; i++) this.steerable[order[i]] = drains && order[i] !== best ? 1 : 0;
  }
}

const EMPTY: readonly number[] = [];

/** OnrampSpec.icmpSource (one address per family), each family not given taken from the local address. */
function icmpSourcesOf(spec: OnrampSpec, localFamily: number, local: Uint32Array): IcmpSources {
  const out: IcmpSources = { v4: null, v6: null };
  for (const text of spec.icmpSource ?? []) {
    const words = new Uint32Array(ADDR_WORDS);
    const family = parseAddress(text, words);
    if (family === 0) throw new RangeError(`onramp ${spec.id}: ICMP source ${text} is not an IPv4 or IPv6 address`);
    if ((family === AF_INET4 ? out.v4 : out.v6) !== null) throw new RangeError(`onramp ${spec.id}: more than one IPv${family} ICMP source`);
    if (family === AF_INET4) out.v4 = words;
    else out.v6 = words;
  }
  if (localFamily === AF_INET4 && out.v4 === null) out.v4 = local.slice();
  if (localFamily === AF_INET6 && out.v6 === null) out.v6 = local.slice();
  return out;
}
