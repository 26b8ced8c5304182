/**
 * Ordered hostname rules, compiled: which rule (the first in order) matches a name.
 *
 * Patterns:
 *   `example.com`     exactly that name.
 *   `*.example.com`   any name below example.com, at any depth (`a.example.com`, `a.b.example.com`), but
 *                     not `example.com` itself. Any depth, because a rule that blocks `*.social.example` and
 *                     lets `cdn.eu.social.example` through would be a hole, not a policy. Not the apex, as
 *                     in DNS wildcards (RFC 4592 §2.1.1) and TLS certificates (RFC 6125 §6.4.3): the apex is
 *                     often a different service, and `example.com` + `*.example.com` says both plainly.
 *   `*`               every name.
 * Names and patterns compare in the normal form of names.ts: case-insensitive, one trailing dot ignored,
 * IDNA A-labels as given.
 *
 * How: every pattern is a suffix ("exact" suffixes must start at the name's first character, "below"
 * suffixes at a label boundary after it). A lookup walks the name once from its last character to its
 * first, hashing as it goes; at each label boundary the hash so far is the hash of that suffix, looked up
 * in one Map of hash → candidates, each confirmed by a character comparison. So a lookup costs one Map
 * get per label whatever the number of rules, allocates nothing, and the first matching rule is the
 * smallest rule index among the candidates that match.
 */
import { MAX_NAME_LENGTH, hostByte, nameProblemText, normalizeHostname } from './names.js';

/** No rule matches. */
export const NO_MATCH = -1;

const DOT = 0x2e;
const WILDCARD_ALL = '*';
const WILDCARD_PREFIX = '*.';
/** FNV-1a 32-bit (the offset basis and prime of the FNV reference). */
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** Map keys stay small integers (V8 Smis): 30 bits of the hash. */
const KEY_MASK = 0x3fffffff;

/** Entry kinds. */
const EXACT = 0;
const BELOW = 1;

interface Candidate {
  readonly suffix: string;
  readonly kind: number;
  /** The first rule with this suffix and kind (later duplicates can never win). */
  readonly rule: number;
}

/** Why a pattern is refused, or null when it is a pattern. */
export function hostnamePatternProblem(pattern: string): string | null {
  if (pattern === WILDCARD_ALL) return null;
  const body = pattern.startsWith(WILDCARD_PREFIX) ? pattern.slice(WILDCARD_PREFIX.length) : pattern;
  for (let i = 0; i < body.length; i++) {
    if (body.charCodeAt(i) > 0x7f) return `"${pattern}": not ASCII (write IDNA names as their A-labels, xn--…)`;
  }
  if (body.includes('*')) return `"${pattern}": "*" may only stand alone or as the whole first label ("*.example.com")`;
  const normal = normalizeHostname(body);
  if (typeof normal === 'number') return `"${pattern}": ${nameProblemText(normal)}`;
  return null;
}

/** Hash one more character (already lower-cased) onto a suffix hash. */
function step(h: number, c: number): number {
  return Math.imul(h ^ c, FNV_PRIME) >>> 0;
}

function hashSuffix(s: string): number {
  let h = FNV_OFFSET;
  for (let i = s.length - 1; i >= 0; i--) h = step(h, s.charCodeAt(i));
  return h & KEY_MASK;
}

export class HostnameMatcher {
  private readonly table = new Map<number, Candidate[]>();
  private readonly all: number;
  readonly size: number;

  /** Compiles the patterns (rule i is patterns[i]); throws RangeError naming the first bad pattern. */
  constructor(patterns: readonly string[]) {
    let all = NO_MATCH;
    for (let rule = 0; rule < patterns.length; rule++) {
      const pattern = patterns[rule];
      const problem = hostnamePatternProblem(pattern);
      if (problem !== null) throw new RangeError(`hostname rule ${rule}: ${problem}`);
      if (pattern === WILDCARD_ALL) {
        if (all === NO_MATCH) all = rule;
        continue;
      }
      const below = pattern.startsWith(WILDCARD_PREFIX);
      const suffix = normalizeHostname(below ? pattern.slice(WILDCARD_PREFIX.length) : pattern) as string;
      const kind = below ? BELOW : EXACT;
      const key = hashSuffix(suffix);
      let list = this.table.get(key);
      if (list === undefined) this.table.set(key, (list = []));
      if (!list.some((c) => c.kind === kind && c.suffix === suffix)) list.push({ suffix, kind, rule });
    }
    this.all = all;
    this.size = patterns.length;
  }

  /**
   * The first rule matching `name` (any case, with or without one trailing dot), or NO_MATCH. A name
   * that is not a host name (a character outside names.ts's set, an empty label) matches only `*`.
   */
  match(name: string): number {
    let end = name.length;
    if (end > 0 && name.charCodeAt(end - 1) === DOT) end--;
    if (end === 0 || end > MAX_NAME_LENGTH) return this.all;
    let best = this.all;
    let h = FNV_OFFSET;
    let labelEnd = end;
    for (let i = end - 1; i >= -1; i--) {
      if (i >= 0) {
        const c = hostByte(name.charCodeAt(i));
        if (c < 0) return this.all;
        if (c !== DOT) {
          h = step(h, c);
          continue;
        }
        if (labelEnd === i + 1) return this.all; // empty label
        labelEnd = i;
      } else if (labelEnd === 0) {
        return this.all; // leading dot
      }
      // [i + 1, end) is a suffix starting on a label boundary.
      const list = this.table.get(h & KEY_MASK);
      if (list !== undefined) {
        const kind = i < 0 ? EXACT : BELOW;
        for (let k = 0; k < list.length; k++) {
          const cand = list[k];
          if (cand.kind === kind && (best === NO_MATCH || cand.rule < best) && sameSuffix(name, i + 1, end, cand.suffix)) {
            best = cand.rule;
          }
        }
      }
      if (i >= 0) h = step(h, DOT);
    }
    return best;
  }
}

/** name[start, end) equals `suffix` (already in normal form), ASCII case folded. */
function sameSuffix(name: string, start: number, end: number, suffix: string): boolean {
  if (end - start !== suffix.length) return false;
  for (let i = 0; i < suffix.length; i++) {
    if (hostByte(name.charCodeAt(start + i)) !== suffix.charCodeAt(i)) return false;
  }
  return true;
}
