/**
 * Firewall: ordered L3/L4 rules, first match wins, evaluated in time independent of the rule's position.
 *
 * Classifier: decomposition with bit vectors (Lakshman & Stiliadis, "High-speed policy-based packet
 * forwarding using efficient multi-dimensional range matching", SIGCOMM 1998 — the "Lucent bit vector").
 * Every dimension is cut into elementary intervals at the rules' range boundaries; each interval carries
 * a bitset over the rules (bit i = rule i, in rule order) of the rules whose condition on that dimension
 * holds there. A packet looks up one interval per dimension, ANDs the 7 bitsets word by word and returns
 * the lowest set bit: the first rule in order that matches every dimension.
 *
 *   dimension          lookup                            rows
 *   site, onramp       direct Uint16Array[65536] -> row  elementary intervals of the values named
 *   protocol           direct, 256 rows (+ out of range) one per protocol number
 *   src/dst port       direct Uint16Array[65536] -> row  elementary intervals of the ranges
 *   src/dst address    binary search of interval starts  per family; IPv6 boundaries are ranked first
 *
 * Cost per evaluation: 2 binary searches (IPv4: within the intervals of the address's top byte, topIndex4; ≤ 12 steps
 * for 1,000 rules) + 7 aggregate words per 1,024 rules, then
 * 7 word loads per bitset word that is non-zero in every row's aggregate (at most ceil(rules / 32)).
 *
 * Semantics, per condition (absent or empty list = any):
 *   - A rule's prefixes may mix IPv4 and IPv6; the prefixes of the packet's family are the condition. A rule
 *     whose srcPrefixes (or dstPrefixes) are all of the other family never matches that family.
 *   - Port conditions apply to TCP and UDP only: a rule with srcPorts or dstPorts never matches any other
 *     protocol (for ICMP the data plane puts the echo identifier in the port fields; rules do not see it).
 *     Packets of other protocols skip the port dimensions.
 *   - Out-of-range inputs (a site or onramp beyond 16 bits, a protocol beyond 8 bits, a port beyond 16 bits)
 *     match only the rules without a condition on that dimension.
 *
 * Rule ids are reported back as given; the constructor does not require them to be unique (a caller may expand
 * one configured rule into several specs).
 *
 * Immutable: the control plane builds a new Firewall on every change, so evaluation never sees half a rule set.
 * Construction allocates; evaluate4/evaluate6 allocate nothing.
 */
import { AF_INET4, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { parsePrefix, type Prefix } from '../wire/addr.js';

export interface FirewallRuleSpec {
  /** Caller's id (1..65535), reported back by ruleId(). */
  id: number;
  action: 'allow' | 'deny';
  /** Absent/empty = any. */
  sites?: number[];
  onramps?: number[];
  /** Prefix text ("10.0.0.0/8", "2001:db8::/32", a bare address = host prefix); absent/empty = any. */
  srcPrefixes?: string[];
  dstPrefixes?: string[];
  /** IP protocol numbers; absent/empty = any. */
  protocols?: number[];
  /** Inclusive [lo, hi] ranges; absent/empty = any. TCP and UDP only (see the file header). */
  srcPorts?: Array<[number, number]>;
  dstPorts?: Array<[number, number]>;
}

/** Returned by evaluate when no rule matched: the default action applies. */
export const NO_MATCH = -1;

const WORD_BITS = 32;
/** Site, onramp and port values are 16-bit. */
const SMALL_DOMAIN = 65536;
const SMALL_MAX = SMALL_DOMAIN - 1;
/** Protocol numbers are 8-bit. */
const PROTOCOL_DOMAIN = 256;
const IPV4_MAX = 0xffffffff;
const MAX_RULE_ID = 65535;
const ACTION_DENY = 0;
const ACTION_ALLOW = 1;

const RULE_FIELDS = new Set(['id', 'action', 'sites', 'onramps', 'srcPrefixes', 'dstPrefixes', 'protocols', 'srcPorts', 'dstPorts']);

/** One rule's condition on one dimension: null = any, otherwise inclusive [lo, hi] pairs (flat), possibly none. */
type Ranges = number[] | null;

/** Largest i with starts[i] <= x (starts[0] is the domain minimum, so i >= 0 for in-domain x). Exported for tests. */
export function intervalOf(starts: ArrayLike<number>, count: number, x: number): number {
  let lo = 0;
  let hi = count - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (starts[mid] <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** An IPv4 address's top byte indexes where its interval search starts and ends (topIndex4). */
const TOP_SHIFT = 24;
const TOP_SLOTS = 1 << (WORD_BITS - TOP_SHIFT);

/**
 * The IPv4 searches' first step, as a table: entry b is intervalOf(starts, count, b << 24), entry 256 is count - 1.
 * An address with top byte b lies in [b << 24, (b + 1) << 24), so (intervalOf being monotone) its interval lies
 * between entries b and b + 1: intervalOf4 searches only those. 257 words (1 KiB, stays in cache); a rule set's
 * boundaries spread over the space leave a few intervals per top byte (1,000 random /24s: ~8, three steps instead of
 * eleven, each a branch the CPU mispredicts half the time). Exported for tests.
 */
export function topIndex4(starts: Uint32Array, count: number): Int32Array {
  const top = new Int32Array(TOP_SLOTS + 1);
  for (let b = 0; b < TOP_SLOTS; b++) top[b] = intervalOf(starts, count, (b << TOP_SHIFT) >>> 0);
  top[TOP_SLOTS] = count - 1;
  return top;
}

/**
 * intervalOf(starts, count, x >>> 0) for an IPv4 word x, signed or not (passed as int32: an unsigned word >= 2^31
 * crossing a call V8 did not inline is a heap-allocated number), searching only between its top byte's bounds.
 * Exported for tests.
 */
export function intervalOf4(starts: Uint32Array, top: Int32Array, x: number): number {
  const u = x >>> 0;
  const b = u >>> TOP_SHIFT;
  let lo = top[b];
  let hi = top[b + 1];
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (starts[mid] <= u) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** starts[i*4..+3] <= addr[off..+3], as 128-bit unsigned numbers (words most significant first). */
function lessOrEqual6(starts: Uint32Array, i: number, addr: Uint32Array, off: number): boolean {
  const s = i * 4;
  for (let k = 0; k < 4; k++) {
    const a = starts[s + k];
    const b = addr[off + k];
    if (a !== b) return a < b;
  }
  return true;
}

function intervalOf6(starts: Uint32Array, count: number, addr: Uint32Array, off: number): number {
  let lo = 0;
  let hi = count - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (lessOrEqual6(starts, mid, addr, off)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function compare6(a: ArrayLike<number>, b: ArrayLike<number>): number {
  for (let k = 0; k < 4; k++) if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
  return 0;
}

/** Sorted distinct boundaries: the domain minimum, every range start, every range end + 1 within the domain. */
function elementaryStarts(conditions: Ranges[], domainMin: number, domainMax: number): number[] {
  const points = [domainMin];
  for (const ranges of conditions) {
    if (ranges === null) continue;
    for (let k = 0; k < ranges.length; k += 2) {
      points.push(ranges[k]);
      if (ranges[k + 1] < domainMax) points.push(ranges[k + 1] + 1);
    }
  }
  points.sort((a, b) => a - b);
  return points.filter((p, i) => i === 0 || p !== points[i - 1]);
}

/**
 * Bitset rows, one per interval: rule r's bit is set in interval i's row when r's condition holds on it.
 * `conditions` are already in interval-index space (inclusive [first, last] interval pairs).
 */
function buildRows(conditions: Ranges[], intervals: number, words: number): Uint32Array {
  const rows = new Uint32Array(intervals * words);
  for (let r = 0; r < conditions.length; r++) {
    const ranges = conditions[r];
    const w = r >>> 5;
    const bit = 1 << (r & 31);
    if (ranges === null) {
      for (let i = 0; i < intervals; i++) rows[i * words + w] |= bit;
      continue;
    }
    for (let k = 0; k < ranges.length; k += 2) {
      for (let i = ranges[k]; i <= ranges[k + 1]; i++) rows[i * words + w] |= bit;
    }
  }
  return rows;
}

/** Row of the rules that have no condition on a dimension (for out-of-range inputs). */
function anyRow(conditions: Ranges[], words: number): Uint32Array {
  const row = new Uint32Array(words);
  for (let r = 0; r < conditions.length; r++) if (conditions[r] === null) row[r >>> 5] |= 1 << (r & 31);
  return row;
}

/** Maps value ranges to interval-index ranges over `starts`. */
function toIntervalSpace(conditions: Ranges[], starts: ArrayLike<number>): Ranges[] {
  return conditions.map((ranges) => {
    if (ranges === null) return null;
    const out: number[] = [];
    for (let k = 0; k < ranges.length; k += 2) out.push(intervalOf(starts, starts.length, ranges[k]), intervalOf(starts, starts.length, ranges[k + 1]));
    return out;
  });
}

/** A 16-bit dimension: value -> row index, rows, and the any-row. */
interface SmallDimension {
  rowOf: Uint16Array;
  rows: Uint32Array;
  any: Uint32Array;
}

function buildSmallDimension(conditions: Ranges[], words: number): SmallDimension {
  const starts = elementaryStarts(conditions, 0, SMALL_MAX);
  const rows = buildRows(toIntervalSpace(conditions, starts), starts.length, words);
  const rowOf = new Uint16Array(SMALL_DOMAIN);
  for (let i = 0; i < starts.length; i++) rowOf.fill(i, starts[i], i + 1 < starts.length ? starts[i + 1] : SMALL_DOMAIN);
  return { rowOf, rows, any: anyRow(conditions, words) };
}

/** An address dimension of one family: sorted interval starts (4 words each for IPv6) and their rows. */
interface AddressDimension {
  starts: Uint32Array;
  count: number;
  rows: Uint32Array;
}

function buildAddress4(conditions: Ranges[], words: number): AddressDimension {
  const starts = elementaryStarts(conditions, 0, IPV4_MAX);
  return { starts: Uint32Array.from(starts), count: starts.length, rows: buildRows(toIntervalSpace(conditions, starts), starts.length, words) };
}

/** First and last address of a prefix as 4 words each; `next` = last + 1, or null when last is all ones. */
function prefixBounds6(p: Prefix): { first: number[]; next: number[] | null } {
  const first = Array.from(p.words);
  const last = first.slice();
  for (let k = 0; k < 4; k++) {
    const bits = Math.max(0, Math.min(WORD_BITS, p.length - WORD_BITS * k));
    if (bits < WORD_BITS) last[k] = (last[k] | (IPV4_MAX >>> bits)) >>> 0;
  }
  const next = last.slice();
  for (let k = 3; k >= 0; k--) {
    if (next[k] !== IPV4_MAX) {
      next[k]++;
      return { first, next };
    }
    next[k] = 0;
  }
  return { first, next: null };
}

/**
 * IPv6: sorts the 128-bit boundaries, then works in rank space (boundary i = interval i), so the generic
 * row builder applies unchanged.
 */
function buildAddress6(prefixes: Array<Prefix[] | null>, words: number): AddressDimension {
  const points: number[][] = [[0, 0, 0, 0]];
  const bounds = prefixes.map((list) => (list === null ? null : list.map(prefixBounds6)));
  for (const list of bounds) {
    if (list === null) continue;
    for (const b of list) {
      points.push(b.first);
      if (b.next !== null) points.push(b.next);
    }
  }
  points.sort(compare6);
  const unique = points.filter((p, i) => i === 0 || compare6(p, points[i - 1]) !== 0);
  const starts = new Uint32Array(unique.length * 4);
  unique.forEach((p, i) => starts.set(p, i * 4));
  const rank = (w: number[]): number => intervalOf6(starts, unique.length, Uint32Array.from(w), 0);
  const conditions: Ranges[] = bounds.map((list) => {
    if (list === null) return null;
    const out: number[] = [];
    for (const b of list) out.push(rank(b.first), b.next === null ? unique.length - 1 : rank(b.next) - 1);
    return out;
  });
  return { starts, count: unique.length, rows: buildRows(conditions, unique.length, words) };
}

// --- validation ---------------------------------------------------------------------------------

function fail(index: number, id: unknown, field: string, message: string): never {
  throw new RangeError(`firewall rule ${typeof id === 'number' ? id : JSON.stringify(id)} (index ${index}): ${field} ${message}`);
}

function isEmpty(list: unknown[] | undefined): boolean {
  return list === undefined || list.length === 0;
}

function checkIntegers(index: number, id: number, field: string, list: unknown, max: number): Ranges {
  if (list === undefined) return null;
  if (!Array.isArray(list)) fail(index, id, field, 'must be an array');
  if (list.length === 0) return null;
  const out: number[] = [];
  list.forEach((v, k) => {
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > max) fail(index, id, `${field}[${k}]`, `must be an integer 0..${max}, got ${JSON.stringify(v)}`);
    out.push(v as number, v as number);
  });
  return out;
}

function checkPortRanges(index: number, id: number, field: string, list: unknown): Ranges {
  if (list === undefined) return null;
  if (!Array.isArray(list)) fail(index, id, field, 'must be an array of [lo, hi] pairs');
  if (list.length === 0) return null;
  const out: number[] = [];
  list.forEach((pair, k) => {
    if (!Array.isArray(pair) || pair.length !== 2) fail(index, id, `${field}[${k}]`, `must be a [lo, hi] pair, got ${JSON.stringify(pair)}`);
    const [lo, hi] = pair as unknown[];
    const ok = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= SMALL_MAX;
    if (!ok(lo) || !ok(hi) || (lo as number) > (hi as number)) fail(index, id, `${field}[${k}]`, `must be integers 0 <= lo <= hi <= 65535, got ${JSON.stringify(pair)}`);
    out.push(lo as number, hi as number);
  });
  return out;
}

function checkPrefixes(index: number, id: number, field: string, list: unknown): Prefix[] | null {
  if (list === undefined) return null;
  if (!Array.isArray(list)) fail(index, id, field, 'must be an array of prefix strings');
  if (list.length === 0) return null;
  return list.map((text, k) => {
    const p = typeof text === 'string' ? parsePrefix(text) : null;
    if (p === null) fail(index, id, `${field}[${k}]`, `is not a valid IPv4 or IPv6 prefix: ${JSON.stringify(text)}`);
    return p;
  });
}

/** The IPv4 part of an address condition as ranges, or null for any. */
function ranges4(prefixes: Prefix[] | null): Ranges {
  if (prefixes === null) return null;
  const out: number[] = [];
  for (const p of prefixes) {
    if (p.family !== AF_INET4) continue;
    out.push(p.words[0], p.words[0] + 2 ** (WORD_BITS - p.length) - 1);
  }
  return out;
}

function prefixes6(prefixes: Prefix[] | null): Prefix[] | null {
  return prefixes === null ? null : prefixes.filter((p) => p.family !== AF_INET4);
}

export class Firewall {
  readonly size: number;
  readonly defaultAction: 'allow' | 'deny';
  /** Aggregate words in front of each row: ceil(bitset words / 32); a bitset has ceil(size / 32) words. */
  private readonly aggWords: number;
  /** Words per row: aggWords + words. */
  private readonly stride: number;
  private readonly ids: Uint16Array;
  private readonly actions: Uint8Array;
  private readonly defaultAllows: boolean;
  /**
   * Every row of every dimension, concatenated, `stride` words each (aggregate then bitset); the *Base fields
   * are word offsets of row 0 of a dimension, the *Any fields word offsets of single rows.
   */
  private readonly bits: Uint32Array;

  private readonly siteRowOf: Uint16Array;
  private readonly siteBase: number;
  private readonly siteAny: number;
  private readonly onrampRowOf: Uint16Array;
  private readonly onrampBase: number;
  private readonly onrampAny: number;
  /** 256 rows indexed by protocol number, then the out-of-range row. */
  private readonly protocolBase: number;
  private readonly protocolAny: number;
  private readonly srcPortRowOf: Uint16Array;
  private readonly srcPortBase: number;
  private readonly srcPortAny: number;
  private readonly dstPortRowOf: Uint16Array;
  private readonly dstPortBase: number;
  private readonly dstPortAny: number;
  /** Row of every rule: the port dimensions of a non-TCP/UDP packet. */
  private readonly allRules: number;
  private readonly src4: Uint32Array;
  /** topIndex4 of src4: where each top byte's search starts and ends. */
  private readonly src4Top: Int32Array;
  private readonly src4Base: number;
  private readonly dst4: Uint32Array;
  private readonly dst4Top: Int32Array;
  private readonly dst4Base: number;
  private readonly src6: Uint32Array;
  private readonly src6Count: number;
  private readonly src6Base: number;
  private readonly dst6: Uint32Array;
  private readonly dst6Count: number;
  private readonly dst6Base: number;

  /** Validates every rule (throws a RangeError naming the rule id, index and field) and builds the classifier. */
  constructor(rules: FirewallRuleSpec[], defaultAction: 'allow' | 'deny') {
    if (defaultAction !== 'allow' && defaultAction !== 'deny') throw new RangeError(`firewall: defaultAction must be 'allow' or 'deny', got ${JSON.stringify(defaultAction)}`);
    if (!Array.isArray(rules)) throw new TypeError('firewall: rules must be an array');
    const n = rules.length;
    this.size = n;
    this.defaultAction = defaultAction;
    this.defaultAllows = defaultAction === 'allow';
    const words = Math.ceil(n / WORD_BITS);
    this.ids = new Uint16Array(n);
    this.actions = new Uint8Array(n);

    const sites: Ranges[] = [];
    const onramps: Ranges[] = [];
    const protocols: Ranges[] = [];
    const hasPorts: boolean[] = [];
    const srcPorts: Ranges[] = [];
    const dstPorts: Ranges[] = [];
    const srcPrefixes: Array<Prefix[] | null> = [];
    const dstPrefixes: Array<Prefix[] | null> = [];
    rules.forEach((rule, i) => {
      if (rule === null || typeof rule !== 'object') fail(i, undefined, 'rule', 'must be an object');
      const id = rule.id;
      if (!Number.isInteger(id) || id < 1 || id > MAX_RULE_ID) fail(i, id, 'id', `must be an integer 1..${MAX_RULE_ID}`);
      for (const key of Object.keys(rule)) if (!RULE_FIELDS.has(key)) fail(i, id, key, 'is not a rule field');
      if (rule.action !== 'allow' && rule.action !== 'deny') fail(i, id, 'action', `must be 'allow' or 'deny', got ${JSON.stringify(rule.action)}`);
      this.ids[i] = id;
      this.actions[i] = rule.action === 'allow' ? ACTION_ALLOW : ACTION_DENY;
      sites.push(checkIntegers(i, id, 'sites', rule.sites, SMALL_MAX));
      onramps.push(checkIntegers(i, id, 'onramps', rule.onramps, SMALL_MAX));
      protocols.push(checkIntegers(i, id, 'protocols', rule.protocols, PROTOCOL_DOMAIN - 1));
      srcPorts.push(checkPortRanges(i, id, 'srcPorts', rule.srcPorts));
      dstPorts.push(checkPortRanges(i, id, 'dstPorts', rule.dstPorts));
      hasPorts.push(!isEmpty(rule.srcPorts) || !isEmpty(rule.dstPorts));
      srcPrefixes.push(checkPrefixes(i, id, 'srcPrefixes', rule.srcPrefixes));
      dstPrefixes.push(checkPrefixes(i, id, 'dstPrefixes', rule.dstPrefixes));
    });

    const site = buildSmallDimension(sites, words);
    const onramp = buildSmallDimension(onramps, words);
    const srcPort = buildSmallDimension(srcPorts, words);
    const dstPort = buildSmallDimension(dstPorts, words);
    const src4 = buildAddress4(srcPrefixes.map(ranges4), words);
    const dst4 = buildAddress4(dstPrefixes.map(ranges4), words);
    const src6 = buildAddress6(srcPrefixes.map(prefixes6), words);
    const dst6 = buildAddress6(dstPrefixes.map(prefixes6), words);
    // Protocol rows fold in the TCP/UDP-only rule for port conditions, so evaluation can skip the port
    // dimensions for other protocols.
    const protocolRows = new Uint32Array((PROTOCOL_DOMAIN + 1) * words);
    for (let r = 0; r < n; r++) {
      const list = protocols[r];
      const bit = 1 << (r & 31);
      for (let p = 0; p < PROTOCOL_DOMAIN; p++) {
        const listed = list === null || list.includes(p);
        const portsOk = !hasPorts[r] || p === IPPROTO_TCP || p === IPPROTO_UDP;
        if (listed && portsOk) protocolRows[p * words + (r >>> 5)] |= bit;
      }
      if (list === null && !hasPorts[r]) protocolRows[PROTOCOL_DOMAIN * words + (r >>> 5)] |= bit;
    }
    const all = new Uint32Array(words);
    for (let r = 0; r < n; r++) all[r >>> 5] |= 1 << (r & 31);

    // Final layout: every row is [aggregate words | bitset words]; aggregate bit j says bitset word j is non-zero
    // (the "aggregated bit vector" of Baboescu & Varghese, SIGCOMM 2001), so evaluation visits only the words
    // that are non-zero in all seven rows.
    const aggWords = Math.ceil(words / WORD_BITS);
    const stride = aggWords + words;
    this.aggWords = aggWords;
    this.stride = stride;
    const parts = [site.rows, site.any, onramp.rows, onramp.any, protocolRows, srcPort.rows, srcPort.any, dstPort.rows, dstPort.any, all, src4.rows, dst4.rows, src6.rows, dst6.rows];
    const bases: number[] = [];
    let totalRows = 0;
    for (const part of parts) {
      bases.push(totalRows * stride);
      totalRows += words === 0 ? 0 : part.length / words; // no rules: no rows, nothing to scan
    }
    this.bits = new Uint32Array(totalRows * stride);
    parts.forEach((part, k) => {
      for (let row = 0; row * words < part.length; row++) {
        const to = bases[k] + row * stride;
        for (let j = 0; j < words; j++) {
          const word = part[row * words + j];
          this.bits[to + aggWords + j] = word;
          if (word !== 0) this.bits[to + (j >>> 5)] |= 1 << (j & 31);
        }
      }
    });
    [this.siteBase, this.siteAny, this.onrampBase, this.onrampAny, this.protocolBase, this.srcPortBase, this.srcPortAny, this.dstPortBase, this.dstPortAny, this.allRules, this.src4Base, this.dst4Base, this.src6Base, this.dst6Base] = bases;
    this.protocolAny = this.protocolBase + PROTOCOL_DOMAIN * stride;
    this.siteRowOf = site.rowOf;
    this.onrampRowOf = onramp.rowOf;
    this.srcPortRowOf = srcPort.rowOf;
    this.dstPortRowOf = dstPort.rowOf;
    this.src4 = src4.starts;
    this.src4Top = topIndex4(src4.starts, src4.count);
    this.dst4 = dst4.starts;
    this.dst4Top = topIndex4(dst4.starts, dst4.count);
    this.src6 = src6.starts;
    this.src6Count = src6.count;
    this.dst6 = dst6.starts;
    this.dst6Count = dst6.count;
  }

  /** Index (0-based, rule order) of the first rule matching an IPv4 packet, or NO_MATCH (-1). Address words signed or not. */
  evaluate4(site: number, onramp: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number, mask: Uint32Array | null = null): number {
    const stride = this.stride;
    return this.firstMatch(
      mask,
      site,
      onramp,
      protocol,
      srcPort,
      dstPort,
      this.src4Base + intervalOf4(this.src4, this.src4Top, src | 0) * stride,
      this.dst4Base + intervalOf4(this.dst4, this.dst4Top, dst | 0) * stride,
    );
  }

  /** IPv6: source at addr[srcOffset..+3], destination at addr[dstOffset..+3]. */
  evaluate6(site: number, onramp: number, protocol: number, addr: Uint32Array, srcOffset: number, dstOffset: number, srcPort: number, dstPort: number, mask: Uint32Array | null = null): number {
    const stride = this.stride;
    return this.firstMatch(
      mask,
      site,
      onramp,
      protocol,
      srcPort,
      dstPort,
      this.src6Base + intervalOf6(this.src6, this.src6Count, addr, srcOffset) * stride,
      this.dst6Base + intervalOf6(this.dst6, this.dst6Count, addr, dstOffset) * stride,
    );
  }

  /** The matched rule's action, or the default action for NO_MATCH. */
  allows(result: number): boolean {
    return result < 0 ? this.defaultAllows : this.actions[result] === ACTION_ALLOW;
  }

  /** The caller's id of the matched rule, 0 for NO_MATCH. */
  ruleId(result: number): number {
    return result < 0 ? 0 : this.ids[result];
  }

  /**
   * `mask` (evaluate4/6's optional last argument): a bitset over the rules (bit i of word i >>> 5 = rule i, at least
   * ceil(size / 32) words); only rules whose bit is set count. The gateway's policy (src/gateway/policy.ts) narrows
   * its L3/L4 rules this way to those that can decide with the name at hand.
   */
  private firstMatch(mask: Uint32Array | null, site: number, onramp: number, protocol: number, srcPort: number, dstPort: number, srcAddrRow: number, dstAddrRow: number): number {
    const stride = this.stride;
    const bits = this.bits;
    const siteRow = (site & SMALL_MAX) === site ? this.siteBase + this.siteRowOf[site] * stride : this.siteAny;
    const onrampRow = (onramp & SMALL_MAX) === onramp ? this.onrampBase + this.onrampRowOf[onramp] * stride : this.onrampAny;
    const protocolRow = (protocol & (PROTOCOL_DOMAIN - 1)) === protocol ? this.protocolBase + protocol * stride : this.protocolAny;
    let srcPortRow = this.allRules;
    let dstPortRow = this.allRules;
    if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) {
      srcPortRow = (srcPort & SMALL_MAX) === srcPort ? this.srcPortBase + this.srcPortRowOf[srcPort] * stride : this.srcPortAny;
      dstPortRow = (dstPort & SMALL_MAX) === dstPort ? this.dstPortBase + this.dstPortRowOf[dstPort] * stride : this.dstPortAny;
    }
    const aggWords = this.aggWords;
    for (let a = 0; a < aggWords; a++) {
      let agg = bits[siteRow + a] & bits[onrampRow + a] & bits[protocolRow + a] & bits[srcPortRow + a] & bits[dstPortRow + a] & bits[srcAddrRow + a] & bits[dstAddrRow + a];
      while (agg !== 0) {
        // Words in increasing order, so the first non-zero AND holds the lowest-numbered (first) matching rule.
        const k = aggWords + (a << 5) + 31 - Math.clz32(agg & -agg);
        let x = bits[siteRow + k] & bits[onrampRow + k] & bits[protocolRow + k] & bits[srcPortRow + k] & bits[dstPortRow + k] & bits[srcAddrRow + k] & bits[dstAddrRow + k];
        if (mask !== null) x &= mask[k - aggWords];
        if (x !== 0) return ((k - aggWords) << 5) + 31 - Math.clz32(x & -x);
        agg &= agg - 1;
      }
    }
    return NO_MATCH;
  }
}
