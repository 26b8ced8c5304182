/**
 * Data-loss prevention over one direction of a clear-text flow: the in-order, reassembled TCP payload,
 * its first `scanBytes` (64 KiB by default), fed in chunks as it arrives.
 *
 *   DlpPolicy   the profiles compiled once (per policy epoch): which detectors each uses, keyword automata,
 *               checked regular expressions. Bad configuration: RangeError naming profile and problem.
 *   DlpStream   one direction's scan state (reused: reset() per flow). feed() → matches so far; end() when
 *               the direction closes. A profile matches once: its first detection in stream order.
 *
 * A match names the profile, the detector and the stream offset where the match starts — never the
 * matched bytes — so the trail and the flow log can say what and where without carrying the secret.
 * Card numbers, IBANs and SSNs are computed once per stream whatever the number of profiles using them.
 */
import {
  CardDetector,
  DEFAULT_REGEX_WINDOW,
  IbanDetector,
  KeywordAutomaton,
  KeywordDetector,
  RegexDetector,
  SsnDetector,
  dlpRegexProblem,
  type Detector,
} from './dlp-detectors.js';

export type DlpDetectorKind = 'card' | 'iban' | 'ssn' | 'keyword' | 'regex';

export interface DlpProfileConfig {
  readonly name: string;
  readonly cards?: boolean;
  readonly ibans?: boolean;
  readonly ssns?: boolean;
  /** Matched as UTF-8 bytes, ASCII case-insensitive. */
  readonly keywords?: readonly string[];
  /** JavaScript RegExp source, matched on latin1 text in bounded windows (dlp-detectors.ts). */
  readonly regexes?: readonly string[];
}

export interface DlpOptions {
  /** How much of each direction is scanned (bytes). */
  readonly scanBytes?: number;
  /** Regex window W: matches up to W/2 bytes long are always found. */
  readonly regexWindow?: number;
}

export interface DlpMatch {
  readonly profile: string;
  readonly detector: DlpDetectorKind;
  /** Offset of the match's first byte in this direction's stream. */
  readonly offset: number;
  /** Stream offset of the byte that decided it (the stream's length when its end did). */
  readonly decidedAt: number;
}

/** 64 KiB: a form post or an API body; the "first N KiB per direction". */
export const DEFAULT_DLP_SCAN_BYTES = 64 * 1024;

/** The shared detectors, in the order a tie at one byte is broken. */
const SHARED: readonly DlpDetectorKind[] = ['card', 'iban', 'ssn'];

interface CompiledProfile {
  readonly name: string;
  readonly shared: readonly DlpDetectorKind[];
  readonly keywords: KeywordAutomaton | null;
  readonly regexes: readonly RegExp[];
}

export class DlpPolicy {
  readonly profiles: readonly CompiledProfile[];
  readonly scanBytes: number;
  readonly regexWindow: number;

  constructor(profiles: readonly DlpProfileConfig[], options: DlpOptions = {}) {
    this.scanBytes = options.scanBytes ?? DEFAULT_DLP_SCAN_BYTES;
    this.regexWindow = options.regexWindow ?? DEFAULT_REGEX_WINDOW;
    if (!Number.isInteger(this.scanBytes) || this.scanBytes < 1) throw new RangeError(`DLP scan_bytes ${this.scanBytes} is not a positive whole number`);
    if (!Number.isInteger(this.regexWindow) || this.regexWindow < 2) throw new RangeError(`DLP regex window ${this.regexWindow} is not a whole number ≥ 2`);
    const names = new Set<string>();
    this.profiles = profiles.map((p) => {
      if (names.has(p.name)) throw new RangeError(`DLP profile "${p.name}" defined twice`);
      names.add(p.name);
      const shared = SHARED.filter((k) => (k === 'card' ? p.cards : k === 'iban' ? p.ibans : p.ssns) === true);
      const keywords = p.keywords?.length ? wrap(p.name, () => new KeywordAutomaton(p.keywords!)) : null;
      const regexes = (p.regexes ?? []).map((r) => {
        const problem = dlpRegexProblem(r);
        if (problem !== null) throw new RangeError(`DLP profile "${p.name}": ${problem}`);
        return new RegExp(r);
      });
      if (shared.length === 0 && keywords === null && regexes.length === 0) throw new RangeError(`DLP profile "${p.name}" has no detector`);
      return { name: p.name, shared, keywords, regexes };
    });
  }
}

function wrap<T>(profile: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new RangeError(`DLP profile "${profile}": ${(e as Error).message}`);
  }
}

interface ProfileState {
  readonly name: string;
  /** Its detectors and their kinds, in tie-break order. */
  readonly detectors: readonly Detector[];
  readonly kinds: readonly DlpDetectorKind[];
  matched: boolean;
}

export class DlpStream {
  /** Matches so far, in the order they were decided. */
  readonly matches: DlpMatch[] = [];
  private readonly all: Detector[] = [];
  private readonly states: ProfileState[];
  private total = 0;
  private ended = false;

  constructor(readonly policy: DlpPolicy) {
    const shared = new Map<DlpDetectorKind, Detector>();
    const sharedOf = (k: DlpDetectorKind): Detector => {
      let d = shared.get(k);
      if (d === undefined) {
        d = k === 'card' ? new CardDetector() : k === 'iban' ? new IbanDetector() : new SsnDetector();
        shared.set(k, d);
        this.all.push(d);
      }
      return d;
    };
    this.states = policy.profiles.map((p) => {
      const detectors: Detector[] = p.shared.map(sharedOf);
      const kinds: DlpDetectorKind[] = [...p.shared];
      if (p.keywords !== null) {
        detectors.push(new KeywordDetector(p.keywords));
        kinds.push('keyword');
      }
      if (p.regexes.length > 0) {
        detectors.push(new RegexDetector(p.regexes, policy.regexWindow));
        kinds.push('regex');
      }
      for (const d of detectors) if (!this.all.includes(d)) this.all.push(d);
      return { name: p.name, detectors, kinds, matched: false };
    });
  }

  reset(): void {
    for (const d of this.all) d.reset();
    for (const s of this.states) s.matched = false;
    this.matches.length = 0;
    this.total = 0;
    this.ended = false;
  }

  /** Bytes of this direction scanned so far (at most policy.scanBytes). */
  get scanned(): number {
    return this.total;
  }

  /** True when nothing more can match: every profile matched, or the scan ended. */
  get done(): boolean {
    return this.ended || this.matches.length === this.states.length;
  }

  /** The next in-order bytes chunk[offset, offset + length); returns the number of matches so far. */
  feed(chunk: Uint8Array, offset = 0, length = chunk.length - offset): number {
    if (this.done) return this.matches.length;
    const n = Math.max(0, Math.min(length, this.policy.scanBytes - this.total));
    for (const d of this.all) d.scan(chunk, offset, offset + n, this.total);
    this.total += n;
    this.collect();
    if (this.total >= this.policy.scanBytes) this.end();
    return this.matches.length;
  }

  /** The direction ended (FIN, or the scan bound): detections its end decides. */
  end(): number {
    if (this.ended) return this.matches.length;
    for (const d of this.all) d.finish(this.total);
    this.collect();
    this.ended = true;
    return this.matches.length;
  }

  /**
   * Each profile not yet matched takes its earliest detection (ties at one byte: card, iban, ssn, keyword,
   * regex); new matches are appended in stream order (ties: profile order).
   */
  private collect(): void {
    const before = this.matches.length;
    for (const s of this.states) {
      if (s.matched) continue;
      let best = -1;
      for (let k = 0; k < s.detectors.length; k++) {
        const at = s.detectors[k].detectAt;
        if (at >= 0 && (best < 0 || at < s.detectors[best].detectAt)) best = k;
      }
      if (best < 0) continue;
      s.matched = true;
      const d = s.detectors[best];
      this.matches.push({ profile: s.name, detector: s.kinds[best], offset: d.offset, decidedAt: d.detectAt });
    }
    if (this.matches.length - before > 1) {
      const added = this.matches.splice(before).sort((a, b) => a.decidedAt - b.decidedAt);
      this.matches.push(...added);
    }
  }
}
