/**
 * The port registry: what the pipeline needs to know about every port (onramp or the Internet
 * egress), in typed arrays indexed by port id so the packet path reads them without a lookup.
 *
 * A site is a group of onramps sharing one private address space. With Automatic Return Routing
 * (ARR) an onramp's packets belong to its site's zone (zone id = site id); without ARR they belong
 * to the global zone, like the Internet's. Replies for a site whose recorded onramp is down go to
 * the site's best healthy onramp: lowest preference value, then lowest id.
 */
import { MAX_ONRAMP_ID, MAX_SITE_ID, PORT_INTERNET, ZONE_GLOBAL } from '../common/ids.js';
import { AF_INET4, AF_INET6, MIN_MTU_IPV4 } from '../wire/constants.js';
import { tcpMssCeiling } from '../wire/rewrite.js';
import { PrefixList } from '../route/prefix-list.js';
import { parseAddress } from '../wire/addr.js';

/** Every onramp kind: the one list (the configuration schema and the API derive theirs from it). */
export const ONRAMP_TYPES = ['wireguard', 'gre', 'interconnect', 'ipsec'] as const;
export type OnrampType = (typeof ONRAMP_TYPES)[number];

export interface OnrampSpec {
  /** 1..65534 */
  id: number;
  name: string;
  type: OnrampType;
  /** 1..65534 */
  site: number;
  automaticReturnRouting: boolean;
  /** Flow quota for flows this onramp starts; 0 or absent = none. */
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
}

const PORT_SPACE = MAX_ONRAMP_ID + 2; // ids 0..0xfffe, plus one so NEXT_HOP_DROP indexes safely
/** Words per local address slot (IPv6: four; IPv4 uses the first). */
export const LOCAL_SLOT_WORDS = 4;
const ADDR_WORDS = LOCAL_SLOT_WORDS;

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
  private readonly specs = new Map<number, OnrampSpec>();
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
    const id = spec.id;
    this.specs.set(id, { ...spec });
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
    this.setSourceFilter(id, null);
    this.setLocal(id, 0, null);
    this.rebuildSiteOrder();
    return true;
  }

  setUp(id: number, up: boolean): void {
    const spec = this.specs.get(id);
    if (!spec) throw new RangeError(`no onramp with id ${id}`);
    spec.up = up;
    this.up[id] = up ? 1 : 0;
  }

  get(id: number): OnrampSpec | undefined {
    const spec = this.specs.get(id);
    return spec ? { ...spec } : undefined;
  }

  list(): OnrampSpec[] {
    return [...this.specs.values()].map((s) => ({ ...s })).sort((a, b) => a.id - b.id);
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
    const order = this.siteOrder[this.site[port]];
    if (order !== undefined) {
      for (let i = 0; i < order.length; i++) {
        if (this.up[order[i]] === 1) return order[i];
      }
    }
    return port;
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
    this.siteOrder = order;
  }
}

const EMPTY: readonly number[] = [];
