/**
 * The DLP detectors, each a small state machine over a byte stream fed in chunks (dlp.ts drives them).
 * Each reports its FIRST detection: `detectAt`, the stream index of the byte that decided it (or the
 * stream's length when its end decided), and `offset`, where the match starts. What matched is never kept
 * beyond the few bytes a detector needs (a card's last 19 digits, an SSN's 12-byte window, one regex
 * window), and never reported.
 *
 * Every detector's answer is a function of the stream alone, not of where the chunks were cut: the state
 * carried between chunks is exactly what the next byte needs. dlp.test.ts checks each against a plain scan
 * of the whole stream, cut at every point.
 */
import { DIGIT_0, DIGIT_9, HYPHEN as DASH, SPACE, UPPER_A, UPPER_Z, foldCase, isAlnum, isDigit, isUpper } from './ascii.js';

export interface Detector {
  /** -1 until the first detection. */
  detectAt: number;
  offset: number;
  /** Scans chunk[start, end), whose first byte is stream index `base`; stops at the first detection. */
  scan(chunk: Uint8Array, start: number, end: number, base: number): void;
  /** The stream ended after `total` bytes. */
  finish(total: number): void;
  reset(): void;
}

// --- card numbers ----------------------------------------------------------------------------------

/** ISO/IEC 7812 PANs are 13 … 19 digits (the lengths card schemes issue). */
export const CARD_MIN_DIGITS = 13;
export const CARD_MAX_DIGITS = 19;
const RING = 32;
const RING_MASK = RING - 1;

/**
 * Card numbers: digit groups joined by single spaces or dashes form a run ("4111 1111-1111 1111"); any
 * consecutive groups of one run holding 13–19 digits in all and passing the Luhn check (ISO/IEC 7812-1
 * Annex B) are a card number. Whole groups only: a 25-digit order number is not searched for cards inside
 * it, but a card followed by " 123" (a CVV) is still found. Decided when a group ends.
 */
export class CardDetector implements Detector {
  detectAt = -1;
  offset = -1;
  /** The current run's last digits (ring) and how many it has had. */
  private readonly digits = new Uint8Array(RING);
  private runDigits = 0;
  /** The current run's last groups: digit counts and start offsets (ring). */
  private readonly groupLen = new Uint8Array(RING);
  private readonly groupStart = new Float64Array(RING);
  private groups = 0;
  private inGroup = false;
  private groupDigits = 0;
  private curStart = 0;
  /** The byte before was a separator after a group. */
  private pendingSep = false;

  reset(): void {
    this.detectAt = this.offset = -1;
    this.runDigits = this.groups = this.groupDigits = 0;
    this.inGroup = this.pendingSep = false;
  }

  scan(chunk: Uint8Array, start: number, end: number, base: number): void {
    if (this.detectAt >= 0) return;
    for (let i = start; i < end; i++) {
      const c = chunk[i];
      if (c >= DIGIT_0 && c <= DIGIT_9) {
        if (!this.inGroup) {
          if (!this.pendingSep) this.runDigits = this.groups = 0;
          this.inGroup = true;
          this.pendingSep = false;
          this.groupDigits = 0;
          this.curStart = base + i - start;
        }
        this.digits[this.runDigits++ & RING_MASK] = c - DIGIT_0;
        this.groupDigits++;
        continue;
      }
      const at = base + i - start;
      if (this.inGroup) {
        this.inGroup = false;
        if (this.endGroup(at)) return;
        this.pendingSep = c === SPACE || c === DASH;
      } else {
        this.pendingSep = false;
      }
    }
  }

  finish(total: number): void {
    if (this.detectAt < 0 && this.inGroup) {
      this.inGroup = false;
      this.endGroup(total);
    }
  }

  /** A group just ended (decided by the byte at `at`): look for a card ending with it. */
  private endGroup(at: number): boolean {
    if (this.groupDigits > CARD_MAX_DIGITS) {
      // Too long to be in any card: the run restarts after it.
      this.runDigits = this.groups = 0;
      return false;
    }
    const g = this.groups++ & RING_MASK;
    this.groupLen[g] = this.groupDigits;
    this.groupStart[g] = this.curStart;
    let total = 0;
    let found = -1;
    for (let k = 0; k < this.groups && k < RING; k++) {
      const idx = (this.groups - 1 - k) & RING_MASK;
      total += this.groupLen[idx];
      if (total > CARD_MAX_DIGITS) break;
      if (total >= CARD_MIN_DIGITS && this.luhn(total)) found = idx;
    }
    if (found < 0) return false;
    this.detectAt = at;
    this.offset = this.groupStart[found];
    return true;
  }

  /** Luhn over the run's last n digits: from the right, every second digit doubled. */
  private luhn(n: number): boolean {
    let sum = 0;
    for (let j = 0; j < n; j++) {
      let d = this.digits[(this.runDigits - 1 - j) & RING_MASK];
      if (j & 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    return sum % 10 === 0;
  }
}

// --- IBANs -----------------------------------------------------------------------------------------

/** IBAN lengths by country: the SWIFT IBAN Registry (ISO 13616-1 registrar), release 98 (2024). */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28,
  CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18,
  FK: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HN: 28, HR: 21, HU: 28,
  IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20,
  LU: 20, LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28,
  NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24,
  SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26,
  UA: 29, VA: 22, VG: 24, XK: 20, YE: 30,
};
const LETTERS = 26;
/** Country (two letters A–Z) → IBAN length, 0 when not in the registry. */
export const IBAN_LENGTH_BY_COUNTRY = new Uint8Array(LETTERS * LETTERS);
for (const [cc, len] of Object.entries(IBAN_LENGTHS)) {
  IBAN_LENGTH_BY_COUNTRY[(cc.charCodeAt(0) - UPPER_A) * LETTERS + cc.charCodeAt(1) - UPPER_A] = len;
}
/** ISO 13616 paper format: groups of four characters separated by one space. */
const IBAN_GROUP = 4;
const IBAN_HEAD = 4;
/** ISO 7064 MOD 97-10: a valid IBAN's rearranged number is 1 mod 97; letters count as 10 … 35. */
const MOD = 97;
const LETTER_VALUE_BASE = 10;
/**
 * At most this many candidates are open at once: a new one starts only after a non-alphanumeric byte, and
 * inside an open candidate that is one of its ≤ 8 group-separating spaces (34 characters at most).
 */
const IBAN_SLOTS = 12;

/**
 * IBANs (ISO 13616-1): two upper-case letters of a registered country, two check digits, then the BBAN
 * (upper-case letters and digits), the country's exact length in all, in electronic form (no spaces) or
 * paper form (one space after every group of four). Starts after a non-alphanumeric byte; must not run on
 * into a letter or digit; the check digits must verify (MOD 97-10). Decided by the byte after its last
 * character. Overlapping candidates ("DE12 DE89 3704 …") are each followed.
 */
export class IbanDetector implements Detector {
  detectAt = -1;
  offset = -1;
  private readonly active = new Uint8Array(IBAN_SLOTS);
  private readonly len = new Uint8Array(IBAN_SLOTS);
  private readonly expected = new Uint8Array(IBAN_SLOTS);
  private readonly head = new Uint8Array(IBAN_SLOTS * IBAN_HEAD);
  private readonly mod = new Uint8Array(IBAN_SLOTS);
  private readonly spaced = new Uint8Array(IBAN_SLOTS);
  private readonly start = new Float64Array(IBAN_SLOTS);
  private open = 0;
  private prevAlnum = false;

  reset(): void {
    this.detectAt = this.offset = -1;
    this.active.fill(0);
    this.open = 0;
    this.prevAlnum = false;
  }

  scan(chunk: Uint8Array, start: number, end: number, base: number): void {
    if (this.detectAt >= 0) return;
    for (let i = start; i < end; i++) {
      const c = chunk[i];
      const at = base + i - start;
      if (this.open > 0 && this.step(c, at)) return;
      const alnum = isAlnum(c);
      if (!this.prevAlnum && isUpper(c)) this.begin(c, at);
      this.prevAlnum = alnum;
    }
  }

  finish(total: number): void {
    if (this.detectAt >= 0) return;
    let best = -1;
    for (let s = 0; s < IBAN_SLOTS; s++) {
      if (this.active[s] && this.len[s] === this.expected[s] && this.valid(s) && (best < 0 || this.start[s] < this.start[best])) best = s;
    }
    if (best >= 0) {
      this.detectAt = total;
      this.offset = this.start[best];
    }
  }

  private begin(c: number, at: number): void {
    for (let s = 0; s < IBAN_SLOTS; s++) {
      if (this.active[s]) continue;
      this.active[s] = 1;
      this.open++;
      this.len[s] = 1;
      this.head[s * IBAN_HEAD] = c - UPPER_A;
      this.expected[s] = 0;
      this.mod[s] = 0;
      this.spaced[s] = 0;
      this.start[s] = at;
      return;
    }
  }

  private close(s: number): void {
    this.active[s] = 0;
    this.open--;
  }

  /** Byte c at stream index `at` for every open candidate; true when one was detected. */
  private step(c: number, at: number): boolean {
    let best = -1;
    for (let s = 0; s < IBAN_SLOTS; s++) {
      if (!this.active[s]) continue;
      const len = this.len[s];
      if (len > 2 && len === this.expected[s]) {
        // Complete: the byte after it decides. A letter or digit running on means it is something else.
        if (!isAlnum(c) && this.valid(s) && (best < 0 || this.start[s] < this.start[best])) best = s;
        this.close(s);
        continue;
      }
      if (this.spaced[s]) {
        this.spaced[s] = 0;
        if (!this.consume(s, c)) this.close(s);
        continue;
      }
      if (c === SPACE && len >= IBAN_HEAD && len % IBAN_GROUP === 0) {
        this.spaced[s] = 1;
        continue;
      }
      if (!this.consume(s, c)) this.close(s);
    }
    if (best < 0) return false;
    this.detectAt = at;
    this.offset = this.start[best];
    return true;
  }

  /** Character number len[s] of candidate s; false when it cannot be one. */
  private consume(s: number, c: number): boolean {
    const len = this.len[s];
    if (len < 2) {
      if (!isUpper(c)) return false;
      this.head[s * IBAN_HEAD + 1] = c - UPPER_A;
      const expected = IBAN_LENGTH_BY_COUNTRY[this.head[s * IBAN_HEAD] * LETTERS + c - UPPER_A];
      if (expected === 0) return false;
      this.expected[s] = expected;
    } else if (len < IBAN_HEAD) {
      if (!isDigit(c)) return false;
      this.head[s * IBAN_HEAD + len] = c - DIGIT_0;
    } else if (isDigit(c)) {
      this.mod[s] = (this.mod[s] * 10 + c - DIGIT_0) % MOD;
    } else if (isUpper(c)) {
      this.mod[s] = (this.mod[s] * 100 + c - UPPER_A + LETTER_VALUE_BASE) % MOD;
    } else {
      return false;
    }
    this.len[s] = len + 1;
    return true;
  }

  /** MOD 97-10 with the first four characters moved to the end (ISO 13616-1 / ISO 7064). */
  private valid(s: number): boolean {
    const h = s * IBAN_HEAD;
    let m = this.mod[s];
    m = (m * 100 + this.head[h] + LETTER_VALUE_BASE) % MOD;
    m = (m * 100 + this.head[h + 1] + LETTER_VALUE_BASE) % MOD;
    m = (m * 100 + this.head[h + 2] * 10 + this.head[h + 3]) % MOD;
    return m === 1;
  }
}

// --- US social security numbers --------------------------------------------------------------------

/** "AAA-GG-SSSS": 11 bytes; one more before it that must not be a digit. */
const SSN_LENGTH = 11;
const SSN_WINDOW = 16;
const SSN_MASK = SSN_WINDOW - 1;
/** SSA: area 000, 666 and 900–999 are never issued; group 00 and serial 0000 neither. */
const SSN_AREA_UNUSED = 666;
const SSN_AREA_MAX = 899;

/**
 * US SSNs written AAA-GG-SSSS or AAA GG SSSS (the same separator twice; nine bare digits are too common to
 * flag), not inside a longer number, with the SSA's issuance rules: area not 000, 666 or 900–999, group not
 * 00, serial not 0000. Decided by the byte after it.
 */
export class SsnDetector implements Detector {
  detectAt = -1;
  offset = -1;
  private readonly ring = new Uint8Array(SSN_WINDOW);
  private seen = 0;

  reset(): void {
    this.detectAt = this.offset = -1;
    this.seen = 0;
  }

  scan(chunk: Uint8Array, start: number, end: number, base: number): void {
    if (this.detectAt >= 0) return;
    for (let i = start; i < end; i++) {
      const c = chunk[i];
      if (!isDigit(c) && this.check()) {
        this.detectAt = base + i - start;
        this.offset = this.detectAt - SSN_LENGTH;
        return;
      }
      this.ring[this.seen++ & SSN_MASK] = c;
    }
  }

  finish(total: number): void {
    if (this.detectAt < 0 && this.check()) {
      this.detectAt = total;
      this.offset = total - SSN_LENGTH;
    }
  }

  /** Byte j of the last 12 seen (0 = the one before the candidate), -1 before the stream's start. */
  private at(j: number): number {
    const idx = this.seen - SSN_LENGTH - 1 + j;
    return idx < 0 ? -1 : this.ring[idx & SSN_MASK];
  }

  /** Whether the last 11 bytes seen are an SSN not preceded by a digit. */
  private check(): boolean {
    if (this.seen < SSN_LENGTH) return false;
    const sep = this.at(4);
    if ((sep !== DASH && sep !== SPACE) || this.at(7) !== sep) return false;
    if (isDigit(this.at(0))) return false;
    let area = 0;
    let group = 0;
    let serial = 0;
    for (let j = 1; j <= 3; j++) {
      const d = this.at(j);
      if (!isDigit(d)) return false;
      area = area * 10 + d - DIGIT_0;
    }
    for (let j = 5; j <= 6; j++) {
      const d = this.at(j);
      if (!isDigit(d)) return false;
      group = group * 10 + d - DIGIT_0;
    }
    for (let j = 8; j <= 11; j++) {
      const d = this.at(j);
      if (!isDigit(d)) return false;
      serial = serial * 10 + d - DIGIT_0;
    }
    return area !== 0 && area !== SSN_AREA_UNUSED && area <= SSN_AREA_MAX && group !== 0 && serial !== 0;
  }
}

// --- keywords --------------------------------------------------------------------------------------

/**
 * Keywords (their UTF-8 bytes), ASCII case-insensitive, by an Aho–Corasick automaton compiled to a full DFA over the byte
 * classes the keywords use (bytes in no keyword share one class): one table read per byte whatever the
 * number of keywords. Decided at a keyword's last byte; where several end there, the longest (earliest
 * start) is reported.
 */
export class KeywordAutomaton {
  readonly classes: number;
  readonly classOf = new Uint8Array(256);
  /** next[state * classes + class]. */
  readonly next: Int32Array;
  /** Length of the longest keyword ending in each state, 0 if none. */
  readonly out: Int32Array;

  constructor(keywords: readonly string[]) {
    let classes = 1;
    const encoder = new TextEncoder();
    const words = keywords.map((k) => encoder.encode(k));
    for (const w of words) {
      if (w.length === 0) throw new RangeError('empty DLP keyword');
      for (const b of w) {
        const f = foldCase(b);
        if (this.classOf[f] === 0) {
          if (classes === 256) throw new RangeError('DLP keywords use more than 255 distinct bytes');
          this.classOf[f] = classes++;
        }
      }
    }
    for (let c = UPPER_A; c <= UPPER_Z; c++) this.classOf[c] = this.classOf[foldCase(c)];
    this.classes = classes;
    // The trie, as lists, then breadth-first failure links into a dense table.
    const goto: Map<number, number>[] = [new Map()];
    const depthOut: number[] = [0];
    for (const w of words) {
      let s = 0;
      for (const b of w) {
        const cls = this.classOf[foldCase(b)];
        let t = goto[s].get(cls);
        if (t === undefined) {
          t = goto.length;
          goto.push(new Map());
          depthOut.push(0);
          goto[s].set(cls, t);
        }
        s = t;
      }
      depthOut[s] = Math.max(depthOut[s], w.length);
    }
    const n = goto.length;
    this.next = new Int32Array(n * classes);
    this.out = Int32Array.from(depthOut);
    const fail = new Int32Array(n);
    const queue: number[] = [];
    for (let cls = 0; cls < classes; cls++) {
      const t = goto[0].get(cls);
      if (t !== undefined) {
        this.next[cls] = t;
        queue.push(t);
      }
    }
    for (let qi = 0; qi < queue.length; qi++) {
      const s = queue[qi];
      this.out[s] = Math.max(this.out[s], this.out[fail[s]]);
      for (let cls = 0; cls < classes; cls++) {
        const t = goto[s].get(cls);
        if (t !== undefined) {
          fail[t] = this.next[fail[s] * classes + cls];
          this.next[s * classes + cls] = t;
          queue.push(t);
        } else {
          this.next[s * classes + cls] = this.next[fail[s] * classes + cls];
        }
      }
    }
  }
}

export class KeywordDetector implements Detector {
  detectAt = -1;
  offset = -1;
  private state = 0;

  constructor(private readonly ac: KeywordAutomaton) {}

  reset(): void {
    this.detectAt = this.offset = -1;
    this.state = 0;
  }

  scan(chunk: Uint8Array, start: number, end: number, base: number): void {
    if (this.detectAt >= 0) return;
    const { next, out, classOf, classes } = this.ac;
    let s = this.state;
    for (let i = start; i < end; i++) {
      s = next[s * classes + classOf[chunk[i]]];
      if (out[s] !== 0) {
        this.detectAt = base + i - start;
        this.offset = this.detectAt - out[s] + 1;
        break;
      }
    }
    this.state = s;
  }

  finish(): void {}
}

// --- regular expressions ---------------------------------------------------------------------------

/** Default regex window: 1 KiB, so any match up to 512 bytes long is found wherever it lies. */
export const DEFAULT_REGEX_WINDOW = 1024;

/** Why a pattern is refused for DLP, or null. */
export function dlpRegexProblem(pattern: string): string | null {
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch (e) {
    return `/${pattern}/: ${(e as Error).message}`;
  }
  if (re.test('')) return `/${pattern}/ matches the empty string`;
  if (/\\[1-9]|\\k</.test(pattern)) return `/${pattern}/: back-references are not allowed (their matching time is not bounded)`;
  if (nestedQuantifier(pattern)) return `/${pattern}/: a quantified group that itself holds a quantifier (e.g. (a+)+) can take exponential time`;
  return null;
}

/** A rough guard against catastrophic backtracking: a group holding a quantifier, itself quantified. */
function nestedQuantifier(p: string): boolean {
  const stack: boolean[] = [];
  let quantified = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      while (i < p.length && p[i] !== ']') i += p[i] === '\\' ? 2 : 1;
      continue;
    }
    if (c === '(') {
      stack.push(quantified);
      quantified = false;
    } else if (c === ')') {
      const inner: boolean = quantified;
      quantified = stack.pop() ?? false;
      const q = p[i + 1];
      if (inner && (q === '*' || q === '+' || q === '{')) return true;
      quantified ||= inner;
    } else if (c === '*' || c === '+' || c === '{') {
      quantified = true;
    }
  }
  return false;
}

/**
 * Regular expressions (JavaScript RegExp, as latin1 text), bounded: the stream is read in windows of W
 * bytes starting every W/2 bytes ([0, W), [W/2, 3W/2), …), and each pattern is run once on each window
 * (the last, shorter window at the stream's end). So every match of at most W/2 bytes lies whole in some
 * window and is found; a longer one may be missed. ^ and $ match a window's edges. Decided at a window's
 * end; the earliest match start in the first window that has one.
 */
export class RegexDetector implements Detector {
  detectAt = -1;
  offset = -1;
  private readonly buf: Uint8Array;
  private readonly half: number;
  /** Bytes in buf; buf[0] is stream index bufStart. */
  private fill = 0;
  private bufStart = 0;

  constructor(private readonly patterns: readonly RegExp[], window = DEFAULT_REGEX_WINDOW) {
    this.half = Math.max(1, window >> 1);
    this.buf = new Uint8Array(this.half * 2);
  }

  reset(): void {
    this.detectAt = this.offset = -1;
    this.fill = this.bufStart = 0;
  }

  scan(chunk: Uint8Array, start: number, end: number): void {
    let i = start;
    while (i < end && this.detectAt < 0) {
      const n = Math.min(end - i, this.buf.length - this.fill);
      this.buf.set(chunk.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.fill < this.buf.length) break;
      if (this.run(this.fill, this.bufStart + this.fill - 1)) return;
      this.buf.copyWithin(0, this.half);
      this.fill = this.half;
      this.bufStart += this.half;
    }
  }

  finish(total: number): void {
    // The bytes not yet in a finished window: all of them before the first window, else those past the half.
    if (this.detectAt < 0 && this.fill > (this.bufStart === 0 ? 0 : this.half)) this.run(this.fill, total);
  }

  private run(length: number, decidedAt: number): boolean {
    const text = String.fromCharCode.apply(null, this.buf.subarray(0, length) as unknown as number[]);
    let best = -1;
    for (const re of this.patterns) {
      const m = re.exec(text);
      if (m !== null && (best < 0 || m.index < best)) best = m.index;
    }
    if (best < 0) return false;
    this.detectAt = decidedAt;
    this.offset = this.bufStart + best;
    return true;
  }
}
