/**
 * Gateway policy: ordered rules with the firewall's L3/L4 selectors plus a hostname selector, read from one of
 * three places — the DNS query name (UDP 53), the TLS ClientHello's server_name (RFC 6066 §3) or the HTTP Host
 * header (RFC 9110 §7.2). First match wins, as in the firewall (src/policy/firewall.ts), whose selector
 * semantics these rules share (absent or empty list = any; ports apply to TCP and UDP only; a rule's prefixes
 * of the other family do not match).
 *
 * The gateway runs after the firewall allowed a flow. It is asked at most twice per flow:
 *   1. At setup, with NameSource.Unknown: if the first rule whose L3/L4 selectors match has no hostname
 *      condition, that rule decides now; if it has one that this protocol can carry (SNI and Host for TCP, DNS
 *      for UDP), the answer is GATEWAY_NEED_NAME and the flow waits in `classifying` for its first payload.
 *   2. When the name is known (or known to be absent: not TLS/HTTP, a ClientHello without SNI), with its
 *      source: the first rule whose L3/L4 selectors match and whose hostname condition (if any) matches that
 *      name from that source decides. A null name matches no hostname condition.
 * GATEWAY_NO_RULE: no rule matched; the flow goes on as the firewall decided.
 *
 * This implementation is the simple one: a scan over the rules in order. It is the oracle the pipeline's faster one
 * (src/dataplane/gateway-policy.ts, FastGatewayPolicy: the firewall's bit-vector classifier plus one suffix index
 * over every rule's patterns) is tested against: same constructor, same answers (GatewayRules).
 *
 * Immutable: the control plane builds a new GatewayPolicy on every change (and the pipeline bumps its policy
 * epoch, so established flows are decided again under the new rules).
 */
import { parsePrefix, type Prefix } from '../wire/addr.js';
import { AF_INET4, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import type { DlpProfileConfig } from './dlp.js';
import { HostnameMatcher, NO_MATCH } from './hostname-matcher.js';

/** Where a flow's name came from (bit flags: a rule's `sources` is a mask of them). */
export const enum NameSource {
  /** At setup, before any payload: only "is a name needed?" can be answered. */
  Unknown = 0,
  Sni = 1,
  HttpHost = 2,
  Dns = 4,
}

export const ALL_NAME_SOURCES = NameSource.Sni | NameSource.HttpHost | NameSource.Dns;
/** The sources a TCP flow can carry (its first payload is a ClientHello or a request line). */
export const TCP_NAME_SOURCES = NameSource.Sni | NameSource.HttpHost;
/** The source a UDP flow can carry: a DNS query to port 53. */
export const UDP_NAME_SOURCES = NameSource.Dns;

export type GatewayAction = 'allow' | 'block' | 'log' | 'override';

/** The address list and TTL an `override` rule answers DNS queries with. */
export interface DnsOverrideSpec {
  /** IPv4 addresses answer A queries, IPv6 addresses AAAA queries; an empty list (or none of the family) = NODATA. */
  addresses: string[];
  /** Seconds. */
  ttl: number;
  /** Answer NXDOMAIN instead of addresses. */
  nxdomain?: boolean;
}

export interface GatewayRuleSpec {
  /** Caller's id (1..65535), reported in trails, flow logs and per-rule metrics. */
  id: number;
  /** Operator's label. */
  name?: string;
  action: GatewayAction;
  /** L3/L4 selectors, as FirewallRuleSpec's. Absent/empty = any. */
  sites?: number[];
  onramps?: number[];
  srcPrefixes?: string[];
  dstPrefixes?: string[];
  protocols?: number[];
  srcPorts?: Array<[number, number]>;
  dstPorts?: Array<[number, number]>;
  /** Exact names or "*.suffix" (hostname-matcher.ts); absent/empty = the rule has no hostname condition. */
  hostnames?: string[];
  /** Mask of NameSource the hostname condition reads; absent = all three. */
  sources?: number;
  /** action 'override' only: how the edge answers a DNS query this rule matches. */
  override?: DnsOverrideSpec;
  /** DLP profiles (by name) scanned on clear-text flows this rule allows or logs. */
  dlp?: string[];
  /** What a flow waiting for a name gets when none arrives in time or within the buffer; absent = the policy's. */
  fallback?: 'allow' | 'block';
}

export interface DlpProfileSpec extends DlpProfileConfig {
  /** block: the flow is cut (RST both ways); log: the match is logged, the flow goes on. */
  action: 'block' | 'log';
}

export interface ClassifySpec {
  /** Bytes of a flow's first payload held while waiting for a name. */
  bufferBytes: number;
  /** How long a flow may wait for a name, from its first packet. */
  waitMs: number;
  /** What a flow gets when the wait or the buffer runs out (a rule's own `fallback` wins). */
  fallback: 'allow' | 'block';
}

export interface GatewayPolicySpec {
  rules: GatewayRuleSpec[];
  dlpProfiles: DlpProfileSpec[];
  classify: ClassifySpec;
  /** Bytes of each direction scanned by DLP. */
  dlpScanBytes: number;
}

/** 16 KiB: a ClientHello with a post-quantum key share fits; RFC 8446 §5.1 caps a record at 16 KiB. */
export const DEFAULT_CLASSIFY_BUFFER_BYTES = 16 * 1024;
/** 2 s: a client that opened a connection and sends nothing for that long is not a browser's TLS client. */
export const DEFAULT_CLASSIFY_WAIT_MS = 2000;

/** No rule matched: the flow goes on as the firewall decided. */
export const GATEWAY_NO_RULE = -1;
/** A hostname rule comes first: wait for the flow's name. */
export const GATEWAY_NEED_NAME = -2;

const MAX_RULE_ID = 65535;
const ACTIONS = new Set<GatewayAction>(['allow', 'block', 'log', 'override']);

/** One rule's L3/L4 condition, compiled for a plain scan. */
class Condition {
  private readonly sites: Set<number> | null;
  private readonly onramps: Set<number> | null;
  private readonly protocols: Set<number> | null;
  private readonly srcPorts: Array<[number, number]> | null;
  private readonly dstPorts: Array<[number, number]> | null;
  private readonly src: Prefix[] | null;
  private readonly dst: Prefix[] | null;

  constructor(r: GatewayRuleSpec) {
    const set = (l: number[] | undefined): Set<number> | null => (l === undefined || l.length === 0 ? null : new Set(l));
    const ranges = (l: Array<[number, number]> | undefined): Array<[number, number]> | null => (l === undefined || l.length === 0 ? null : l.map(([a, b]) => [a, b]));
    const prefixes = (l: string[] | undefined, what: string): Prefix[] | null => {
      if (l === undefined || l.length === 0) return null;
      return l.map((text) => {
        const p = parsePrefix(text);
        if (p === null) throw new RangeError(`gateway rule ${r.id}: ${what} "${text}" is not a prefix`);
        return p;
      });
    };
    this.sites = set(r.sites);
    this.onramps = set(r.onramps);
    this.protocols = set(r.protocols);
    this.srcPorts = ranges(r.srcPorts);
    this.dstPorts = ranges(r.dstPorts);
    this.src = prefixes(r.srcPrefixes, 'source prefix');
    this.dst = prefixes(r.dstPrefixes, 'destination prefix');
  }

  /** addr: the packet's address words (IPv4: one word at `offset`). */
  matches(family: 4 | 6, site: number, onramp: number, protocol: number, addr: ArrayLike<number>, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number): boolean {
    if (this.sites !== null && !this.sites.has(site)) return false;
    if (this.onramps !== null && !this.onramps.has(onramp)) return false;
    if (this.protocols !== null && !this.protocols.has(protocol)) return false;
    const ported = protocol === IPPROTO_TCP || protocol === IPPROTO_UDP;
    if (this.srcPorts !== null && !(ported && inRanges(this.srcPorts, srcPort))) return false;
    if (this.dstPorts !== null && !(ported && inRanges(this.dstPorts, dstPort))) return false;
    if (this.src !== null && !inPrefixes(this.src, family, addr, srcOffset)) return false;
    if (this.dst !== null && !inPrefixes(this.dst, family, addr, dstOffset)) return false;
    return true;
  }
}

function inRanges(ranges: Array<[number, number]>, x: number): boolean {
  for (const [lo, hi] of ranges) if (x >= lo && x <= hi) return true;
  return false;
}

function inPrefixes(list: Prefix[], family: 4 | 6, addr: ArrayLike<number>, offset: number): boolean {
  const words = family === AF_INET4 ? 1 : 4;
  outer: for (const p of list) {
    if (p.family !== family) continue;
    let left = p.length;
    for (let k = 0; k < words; k++, left -= 32) {
      if (left <= 0) break;
      const mask = left >= 32 ? 0xffffffff : (0xffffffff << (32 - left)) >>> 0;
      if (((addr[offset + k] & mask) >>> 0) !== p.words[k]) continue outer;
    }
    return true;
  }
  return false;
}

interface CompiledRule {
  readonly spec: GatewayRuleSpec;
  readonly condition: Condition;
  /** null: no hostname condition. */
  readonly names: HostnameMatcher | null;
  readonly sources: number;
}

/** Checks a rule list's shape; the first problem, or null. Names the rule by id. */
export function gatewayRuleProblem(r: GatewayRuleSpec): string | null {
  if (!Number.isInteger(r.id) || r.id < 1 || r.id > MAX_RULE_ID) return `gateway rule id ${r.id} is not 1..${MAX_RULE_ID}`;
  if (!ACTIONS.has(r.action)) return `gateway rule ${r.id}: action "${String(r.action)}" is not allow, block, log or override`;
  const sources = r.sources ?? ALL_NAME_SOURCES;
  if (!Number.isInteger(sources) || sources <= 0 || (sources & ~ALL_NAME_SOURCES) !== 0) return `gateway rule ${r.id}: sources mask ${sources} is not a non-empty set of sni, http_host, dns`;
  if (r.action === 'override') {
    if (r.override === undefined) return `gateway rule ${r.id}: action override needs an override (addresses or nxdomain)`;
    if (sources !== NameSource.Dns) return `gateway rule ${r.id}: action override answers DNS queries; its sources must be dns only`;
    if ((r.hostnames ?? []).length === 0) return `gateway rule ${r.id}: action override needs hostnames`;
  } else if (r.override !== undefined) {
    return `gateway rule ${r.id}: override is only for action override`;
  }
  return null;
}

/** What the pipeline asks of a gateway policy: GatewayPolicy (the scan) and src/dataplane/gateway-policy.ts's FastGatewayPolicy both answer it. */
export interface GatewayRules {
  readonly spec: GatewayPolicySpec;
  readonly size: number;
  readonly hasHostnameRules: boolean;
  rule(index: number): GatewayRuleSpec;
  fallback(index: number): 'allow' | 'block';
  dlpProfiles(index: number): number[];
  decide4(site: number, onramp: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number, source: NameSource, name: string | null): number;
  decide6(site: number, onramp: number, protocol: number, addr: Uint32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number, source: NameSource, name: string | null): number;
  pending4(site: number, onramp: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number): number;
  pending6(site: number, onramp: number, protocol: number, addr: Uint32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number): number;
}

export class GatewayPolicy implements GatewayRules {
  readonly spec: GatewayPolicySpec;
  private readonly rules: CompiledRule[];
  /** Some rule has a hostname condition (else no flow ever waits for a name). */
  readonly hasHostnameRules: boolean;
  /** Profile name → index in spec.dlpProfiles. */
  private readonly profileIndex = new Map<string, number>();
  private readonly addr4 = new Uint32Array(2);

  /** Throws RangeError naming the first problem (a bad rule, pattern or prefix, an unknown DLP profile). */
  constructor(spec: GatewayPolicySpec) {
    this.spec = spec;
    spec.dlpProfiles.forEach((p, i) => {
      if (this.profileIndex.has(p.name)) throw new RangeError(`DLP profile "${p.name}" defined twice`);
      this.profileIndex.set(p.name, i);
    });
    this.rules = spec.rules.map((r) => {
      const problem = gatewayRuleProblem(r);
      if (problem !== null) throw new RangeError(problem);
      for (const name of r.dlp ?? []) if (!this.profileIndex.has(name)) throw new RangeError(`gateway rule ${r.id}: no DLP profile named "${name}"`);
      const hostnames = r.hostnames ?? [];
      let names: HostnameMatcher | null = null;
      if (hostnames.length > 0) {
        try {
          names = new HostnameMatcher(hostnames);
        } catch (e) {
          throw new RangeError(`gateway rule ${r.id}: ${(e as Error).message}`);
        }
      }
      return { spec: r, condition: new Condition(r), names, sources: r.sources ?? ALL_NAME_SOURCES };
    });
    this.hasHostnameRules = this.rules.some((r) => r.names !== null);
  }

  get size(): number {
    return this.rules.length;
  }

  /** The rule at an index decide4/decide6 returned. */
  rule(index: number): GatewayRuleSpec {
    return this.rules[index].spec;
  }

  /** The fallback a flow waiting on rule `index` (a GATEWAY_NEED_NAME answer's pending rule) gets. */
  fallback(index: number): 'allow' | 'block' {
    return this.rules[index].spec.fallback ?? this.spec.classify.fallback;
  }

  decide4(site: number, onramp: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number, source: NameSource, name: string | null): number {
    this.addr4[0] = src;
    this.addr4[1] = dst;
    return this.decide(4, site, onramp, protocol, this.addr4, 0, 1, srcPort, dstPort, source, name);
  }

  decide6(site: number, onramp: number, protocol: number, addr: Uint32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number, source: NameSource, name: string | null): number {
    return this.decide(6, site, onramp, protocol, addr, srcOffset, dstOffset, srcPort, dstPort, source, name);
  }

  /**
   * With NameSource.Unknown, the index of the first rule waiting for a name is `pending(...)`'s; decide returns
   * GATEWAY_NEED_NAME for it.
   */
  pending4(site: number, onramp: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number): number {
    this.addr4[0] = src;
    this.addr4[1] = dst;
    return this.firstPending(4, site, onramp, protocol, this.addr4, 0, 1, srcPort, dstPort);
  }

  pending6(site: number, onramp: number, protocol: number, addr: Uint32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number): number {
    return this.firstPending(6, site, onramp, protocol, addr, srcOffset, dstOffset, srcPort, dstPort);
  }

  private decide(family: 4 | 6, site: number, onramp: number, protocol: number, addr: ArrayLike<number>, so: number, dso: number, sp: number, dp: number, source: NameSource, name: string | null): number {
    const carried = carriedSources(protocol);
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i];
      if (!r.condition.matches(family, site, onramp, protocol, addr, so, dso, sp, dp)) continue;
      if (r.names === null) return i;
      if (source === NameSource.Unknown) {
        if ((r.sources & carried) !== 0) return GATEWAY_NEED_NAME;
        continue;
      }
      if ((r.sources & source) !== 0 && name !== null && r.names.match(name) !== NO_MATCH) return i;
    }
    return GATEWAY_NO_RULE;
  }

  private firstPending(family: 4 | 6, site: number, onramp: number, protocol: number, addr: ArrayLike<number>, so: number, dso: number, sp: number, dp: number): number {
    const carried = carriedSources(protocol);
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i];
      if (!r.condition.matches(family, site, onramp, protocol, addr, so, dso, sp, dp)) continue;
      if (r.names === null) return GATEWAY_NO_RULE;
      if ((r.sources & carried) !== 0) return i;
    }
    return GATEWAY_NO_RULE;
  }

  /** Indexes (into spec.dlpProfiles) of the profiles rule `index` scans. */
  dlpProfiles(index: number): number[] {
    return (this.rules[index].spec.dlp ?? []).map((n) => this.profileIndex.get(n)!);
  }
}

/** The name sources a protocol's flows can carry. */
export function carriedSources(protocol: number): number {
  return protocol === IPPROTO_TCP ? TCP_NAME_SOURCES : protocol === IPPROTO_UDP ? UDP_NAME_SOURCES : 0;
}

