/**
 * The gateway policy the pipeline uses (FastGatewayPolicy): src/gateway/policy.ts's GatewayPolicy answers (its
 * header defines the semantics; that plain scan is the oracle, gateway-policy.test.ts), found with the firewall's
 * bit-vector classifier (src/policy/firewall.ts) instead of a scan. A rule decides when its L3/L4 selectors match
 * AND (it has no hostname condition, OR (no name yet) its sources include one this protocol carries, OR (a name)
 * its sources include the name's and one of its patterns matches). The second half is a bitset over the rules,
 * built per question and handed to Firewall.evaluate4/6 as its mask: the first rule in order satisfying both comes
 * back from one classification. Names are matched through one index of every rule's pattern suffixes: a Map get per
 * label of the name, whatever the number of rules. Setup with 1,000 hostname rules: a few dozen word ANDs and one
 * walk of the name's labels, not 1,000 rule checks.
 *
 * Here (dataplane) and not in src/gateway: engines do not import each other (eslint/layering.js), and it uses both.
 * Allocation: a decision with a name builds its suffix strings (once per classified flow, never per packet).
 */
import { Firewall, type FirewallRuleSpec } from '../policy/firewall.js';
import {
  ALL_NAME_SOURCES,
  GATEWAY_NEED_NAME,
  GATEWAY_NO_RULE,
  GatewayPolicy,
  NameSource,
  TCP_NAME_SOURCES,
  UDP_NAME_SOURCES,
  type GatewayPolicySpec,
  type GatewayRuleSpec,
  type GatewayRules,
} from '../gateway/policy.js';
import { MAX_NAME_LENGTH, hostByte } from '../gateway/names.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';

const WORD_BITS = 32;
const DOT = 0x2e;
const WILDCARD_ALL = '*';
const WILDCARD_PREFIX = '*.';

/** Rules (by index) whose patterns name a suffix: exactly the name, or anything below it. */
interface SuffixRules {
  exact: number[];
  below: number[];
}

export class FastGatewayPolicy implements GatewayRules {
  readonly spec: GatewayPolicySpec;
  /** Validation, rule lookups, fallbacks and DLP profiles: the scan's. */
  private readonly scan: GatewayPolicy;
  private readonly l34: Firewall;
  private readonly words: number;
  /** Rules without a hostname condition. */
  private readonly noName: Uint32Array;
  /** Hostname rules a TCP / UDP flow can wait on (its sources include one the protocol carries). */
  private readonly carriedTcp: Uint32Array;
  private readonly carriedUdp: Uint32Array;
  /** Hostname rules by the source they read (index: 0 SNI, 1 Host, 2 DNS). */
  private readonly bySource: Uint32Array[];
  /** Hostname rules with the pattern "*". */
  private readonly everyName: Uint32Array;
  private readonly suffixes = new Map<string, SuffixRules>();
  /** Scratch masks (no allocation per question). */
  private readonly mask: Uint32Array;
  private readonly nameBits: Uint32Array;

  constructor(spec: GatewayPolicySpec) {
    this.scan = new GatewayPolicy(spec);
    this.spec = spec;
    const n = spec.rules.length;
    const words = Math.max(1, Math.ceil(n / WORD_BITS));
    this.words = words;
    const bitset = (): Uint32Array => new Uint32Array(words);
    this.noName = bitset();
    this.carriedTcp = bitset();
    this.carriedUdp = bitset();
    this.bySource = [bitset(), bitset(), bitset()];
    this.everyName = bitset();
    this.mask = bitset();
    this.nameBits = bitset();
    const l34: FirewallRuleSpec[] = [];
    spec.rules.forEach((r, i) => {
      l34.push({ id: r.id, action: 'allow', sites: r.sites, onramps: r.onramps, srcPrefixes: r.srcPrefixes, dstPrefixes: r.dstPrefixes, protocols: r.protocols, srcPorts: r.srcPorts, dstPorts: r.dstPorts });
      const word = i >>> 5;
      const bit = 1 << (i & 31);
      const hostnames = r.hostnames ?? [];
      if (hostnames.length === 0) {
        this.noName[word] |= bit;
        return;
      }
      const sources = r.sources ?? ALL_NAME_SOURCES;
      if ((sources & TCP_NAME_SOURCES) !== 0) this.carriedTcp[word] |= bit;
      if ((sources & UDP_NAME_SOURCES) !== 0) this.carriedUdp[word] |= bit;
      if ((sources & NameSource.Sni) !== 0) this.bySource[0][word] |= bit;
      if ((sources & NameSource.HttpHost) !== 0) this.bySource[1][word] |= bit;
      if ((sources & NameSource.Dns) !== 0) this.bySource[2][word] |= bit;
      for (const pattern of hostnames) {
        if (pattern === WILDCARD_ALL) {
          this.everyName[word] |= bit;
          continue;
        }
        const below = pattern.startsWith(WILDCARD_PREFIX);
        // The scan's constructor checked every pattern: the normal form exists.
        const suffix = foldName(below ? pattern.slice(WILDCARD_PREFIX.length) : pattern)!;
        let entry = this.suffixes.get(suffix);
        if (entry === undefined) this.suffixes.set(suffix, (entry = { exact: [], below: [] }));
        (below ? entry.below : entry.exact).push(i);
      }
    });
    this.l34 = new Firewall(l34, 'allow');
  }

  get size(): number {
    return this.scan.size;
  }

  get hasHostnameRules(): boolean {
    return this.scan.hasHostnameRules;
  }

  rule(index: number): GatewayRuleSpec {
    return this.scan.rule(index);
  }

  fallback(index: number): 'allow' | 'block' {
    return this.scan.fallback(index);
  }

  dlpProfiles(index: number): number[] {
    return this.scan.dlpProfiles(index);
  }

  decide4(site: number, onramp: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number, source: NameSource, name: string | null): number {
    const unknown = source === NameSource.Unknown;
    const i = this.l34.evaluate4(site, onramp, protocol, src, dst, srcPort, dstPort, unknown ? this.waitMask(protocol) : this.nameMask(source, name));
    return this.answer(i, unknown);
  }

  decide6(site: number, onramp: number, protocol: number, addr: Uint32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number, source: NameSource, name: string | null): number {
    const unknown = source === NameSource.Unknown;
    const i = this.l34.evaluate6(site, onramp, protocol, addr, srcOffset, dstOffset, srcPort, dstPort, unknown ? this.waitMask(protocol) : this.nameMask(source, name));
    return this.answer(i, unknown);
  }

  pending4(site: number, onramp: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number): number {
    return this.pendingOf(this.l34.evaluate4(site, onramp, protocol, src, dst, srcPort, dstPort, this.waitMask(protocol)));
  }

  pending6(site: number, onramp: number, protocol: number, addr: Uint32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number): number {
    return this.pendingOf(this.l34.evaluate6(site, onramp, protocol, addr, srcOffset, dstOffset, srcPort, dstPort, this.waitMask(protocol)));
  }

  private hasName(i: number): boolean {
    return (this.noName[i >>> 5] & (1 << (i & 31))) === 0;
  }

  private answer(i: number, unknown: boolean): number {
    if (i < 0) return GATEWAY_NO_RULE;
    return unknown && this.hasName(i) ? GATEWAY_NEED_NAME : i;
  }

  private pendingOf(i: number): number {
    return i < 0 || !this.hasName(i) ? GATEWAY_NO_RULE : i;
  }

  /** No name yet: rules without a hostname condition, and hostname rules this protocol's flows can wait on. */
  private waitMask(protocol: number): Uint32Array {
    const m = this.mask;
    const carried = protocol === IPPROTO_TCP ? this.carriedTcp : protocol === IPPROTO_UDP ? this.carriedUdp : null;
    for (let w = 0; w < this.words; w++) m[w] = this.noName[w] | (carried === null ? 0 : carried[w]);
    return m;
  }

  /** A name (or none) from `source`: rules without a hostname condition, and hostname rules it matches. */
  private nameMask(source: NameSource, name: string | null): Uint32Array {
    const m = this.mask;
    const bits = this.nameBits;
    const words = this.words;
    const from = source === NameSource.Sni ? this.bySource[0] : source === NameSource.HttpHost ? this.bySource[1] : source === NameSource.Dns ? this.bySource[2] : null;
    if (name === null || from === null) {
      for (let w = 0; w < words; w++) m[w] = this.noName[w];
      return m;
    }
    for (let w = 0; w < words; w++) bits[w] = this.everyName[w];
    const folded = foldName(name);
    if (folded !== null) {
      // Every suffix starting on a label boundary: the whole name matches exact patterns, a proper suffix below ones.
      const whole = this.suffixes.get(folded);
      if (whole !== undefined) setBits(bits, whole.exact);
      for (let at = folded.indexOf('.'); at >= 0; at = folded.indexOf('.', at + 1)) {
        const entry = this.suffixes.get(folded.slice(at + 1));
        if (entry !== undefined) setBits(bits, entry.below);
      }
    }
    for (let w = 0; w < words; w++) m[w] = this.noName[w] | (bits[w] & from[w]);
    return m;
  }
}

function setBits(bits: Uint32Array, rules: number[]): void {
  for (const i of rules) bits[i >>> 5] |= 1 << (i & 31);
}

/**
 * A name as HostnameMatcher.match compares it: one trailing dot dropped, ASCII folded; null when it is not a host
 * name there (empty, longer than 253, a character outside names.ts's set, an empty label): then only "*" matches.
 */
function foldName(name: string): string | null {
  let end = name.length;
  if (end > 0 && name.charCodeAt(end - 1) === DOT) end--;
  if (end === 0 || end > MAX_NAME_LENGTH) return null;
  let labelStart = 0;
  let upper = false;
  for (let i = 0; i < end; i++) {
    const raw = name.charCodeAt(i);
    const c = hostByte(raw);
    if (c < 0) return null;
    if (c !== raw) upper = true;
    if (c === DOT) {
      if (i === labelStart) return null;
      labelStart = i + 1;
    }
  }
  if (labelStart === end) return null;
  const text = end === name.length ? name : name.slice(0, end);
  // Every character is ASCII now: toLowerCase folds exactly what hostByte folds.
  return upper ? text.toLowerCase() : text;
}
