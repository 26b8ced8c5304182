/**
 * DLP on clear-text TCP flows (issue 12 item 3; docs/POLICY.md "DLP profiles"): the flows whose deciding gateway
 * rule names DLP profiles get, per direction, in-order reassembly of their first `dlpScanBytes`
 * (src/flow/stream-reassembler.ts) fed to a DlpStream (src/gateway/dlp.ts).
 *
 *   start(table, flow, rule)  a slot from the bounded pool (none free: not scanned, counted in dlpPoolEmpty —
 *                             traffic is never held back for want of a slot)
 *   segment(...)              every TCP segment of such a flow, after the flow table accepted it:
 *                             DLP_PASS      forward it
 *                             DLP_DONE      forward it; both directions are scanned to their end: the flow leaves
 *                                           DLP (the slot is back in the pool, the fast path resumes)
 *                             DLP_REORDER   drop it: it lies past the hold window; its sender sends it again
 *                             DLP_CUT       a `block` profile matched in the bytes this segment completed: drop
 *                                           it and cut the flow (RST both ways, the pipeline does it)
 *   flowEnded(table, flow)    the slot goes back to the pool
 *
 * Every match is recorded as a DlpEvent (profile, detector, direction, stream offset, action) — never the matched
 * bytes — kept beside the flow for its trail and flow-log line until the flow ends. `log` profiles are only
 * recorded and counted.
 *
 * Pure: no I/O, no clock. The pool is allocated once per tracker (slots × 2 × 2 × holdWindow bytes); a slot's
 * DlpStreams are built the first time it serves a rule (slow path, once per slot and rule) and reused.
 */
import type { FlowTable } from '../flow/flow-table.js';
import { REASSEMBLY_OUT_OF_WINDOW, StreamReassembler } from '../flow/stream-reassembler.js';
import { DlpPolicy, DlpStream, type DlpDetectorKind } from '../gateway/dlp.js';
import type { GatewayRules } from '../gateway/policy.js';

export const DLP_PASS = 0;
export const DLP_DONE = 1;
export const DLP_REORDER = 2;
export const DLP_CUT = 3;

/** Flows scanned at once by default: each holds 2 directions × (window + presence) bytes. */
export const DEFAULT_DLP_POOL = 256;
/**
 * Bytes held ahead of a gap per direction: a few full-size segments (1460-byte MSS) of reordering, the common
 * case on a path with one loss; anything further is dropped and retransmitted (stream-reassembler.ts).
 */
export const DEFAULT_DLP_HOLD_WINDOW = 8192;

export interface DlpEvent {
  readonly profile: string;
  readonly detector: DlpDetectorKind;
  /** 0: client → server (the flow's original direction); 1: server → client. */
  readonly direction: 0 | 1;
  /** Offset of the match's first byte in that direction's stream. */
  readonly offset: number;
  readonly action: 'block' | 'log';
  /** Gateway rule id that named the profile. */
  readonly ruleId: number;
}

/** What the tracker counts (the pipeline's counters hold these). */
export interface DlpCounters {
  dlpFlowsScanned: number;
  dlpBytesScanned: number;
  dlpPoolEmpty: number;
  dlpFlowsCut: number;
  dlpReorderDrops: number;
  /** Matches by profile name. */
  readonly dlpMatches: Map<string, number>;
}

/** A rule's scan: its profiles compiled together, and each profile's action. */
interface RuleScan {
  readonly ruleId: number;
  readonly policy: DlpPolicy;
  readonly actions: Map<string, 'block' | 'log'>;
}

class Slot {
  readonly streams = new Map<number, [DlpStream, DlpStream]>();
  readonly re: [StreamReassembler, StreamReassembler];
  current: [DlpStream, DlpStream] | null = null;
  scan: RuleScan | null = null;
  /** Matches already acted on, per direction. */
  readonly seen = [0, 0];
  /** Owner: 0 flows4, 1 flows6; and its flow index. */
  family = 0;
  flow = -1;
  nextFree = -1;

  constructor(window: number, limit: number) {
    this.re = [new StreamReassembler(window, limit), new StreamReassembler(window, limit)];
  }
}

export class DlpTracker {
  private scans: (RuleScan | null)[] = [];
  private readonly slots: Slot[];
  private freeHead = 0;
  /** flow index → slot + 1 (0: none), per table (0: flows4, 1: flows6). */
  private readonly owner: [Int32Array, Int32Array];
  private readonly events = new Map<number, DlpEvent[]>();
  private scanBytes = 0;

  constructor(readonly counters: DlpCounters, capacity4: number, capacity6: number, readonly poolSize = DEFAULT_DLP_POOL, readonly holdWindow = DEFAULT_DLP_HOLD_WINDOW) {
    this.owner = [new Int32Array(capacity4), new Int32Array(capacity6)];
    this.slots = [];
    for (let i = 0; i < poolSize; i++) {
      const s = new Slot(holdWindow, 0);
      s.nextFree = i + 1 < poolSize ? i + 1 : -1;
      this.slots.push(s);
    }
    this.freeHead = poolSize > 0 ? 0 : -1;
  }

  /**
   * A new gateway policy: every flow in DLP leaves it (its next segment gets DLP_DONE); flows set up from now on
   * are scanned under the new rules. Recorded events stay with their flows.
   */
  setPolicy(gateway: GatewayRules | null): void {
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (s.flow >= 0) this.release(s.family, s.flow);
      s.streams.clear();
    }
    this.scans = [];
    this.scanBytes = gateway?.spec.dlpScanBytes ?? 0;
    if (gateway === null) return;
    for (let i = 0; i < gateway.size; i++) {
      const rule = gateway.rule(i);
      const names = rule.dlp ?? [];
      if (names.length === 0 || rule.action === 'block' || rule.action === 'override') {
        this.scans.push(null);
        continue;
      }
      const profiles = gateway.dlpProfiles(i).map((p) => gateway.spec.dlpProfiles[p]);
      this.scans.push({
        ruleId: rule.id,
        policy: new DlpPolicy(profiles, { scanBytes: this.scanBytes }),
        actions: new Map(profiles.map((p) => [p.name, p.action])),
      });
    }
  }

  /** Some rule of the policy scans (so setup must ask which rule decides a TCP flow). */
  get active(): boolean {
    return this.scans.some((s) => s !== null);
  }

  /**
   * Starts scanning flow `flow` of `table` (family 0: flows4, 1: flows6) for rule `index`. seq0 / seq1: the
   * client's / server's initial sequence numbers when known (the SYN's, the SYN-ACK's), else -1 (the stream
   * then starts at the first data segment seen). False when the rule scans nothing or the pool is empty.
   */
  start(family: 0 | 1, flow: number, index: number, seq0 = -1, seq1 = -1): boolean {
    const scan = index >= 0 && index < this.scans.length ? this.scans[index] : null;
    if (scan === null) return false;
    const owner = this.owner[family];
    if (owner[flow] !== 0) this.release(family, flow);
    const at = this.freeHead;
    if (at < 0) {
      this.counters.dlpPoolEmpty++;
      return false;
    }
    const s = this.slots[at];
    this.freeHead = s.nextFree;
    s.nextFree = -1;
    s.family = family;
    s.flow = flow;
    s.scan = scan;
    let streams = s.streams.get(index);
    if (streams === undefined) {
      streams = [new DlpStream(scan.policy), new DlpStream(scan.policy)];
      s.streams.set(index, streams);
    } else {
      streams[0].reset();
      streams[1].reset();
    }
    s.current = streams;
    s.seen[0] = s.seen[1] = 0;
    s.re[0].reset(this.scanBytes);
    s.re[1].reset(this.scanBytes);
    if (seq0 >= 0) s.re[0].syn(seq0);
    if (seq1 >= 0) s.re[1].syn(seq1);
    owner[flow] = at + 1;
    this.counters.dlpFlowsScanned++;
    return true;
  }

  /** Is the flow being scanned? */
  tracking(family: 0 | 1, flow: number): boolean {
    return flow < this.owner[family].length && this.owner[family][flow] !== 0;
  }

  /**
   * One TCP segment of a flow in DLP, direction `dir`: sequence number, payload buf[offset, +length).
   * See the file header for the answers.
   */
  segment(family: 0 | 1, flow: number, dir: 0 | 1, seq: number, buf: Uint8Array, offset: number, length: number, syn: boolean, fin: boolean): number {
    const index = this.owner[family][flow];
    if (index === 0) return DLP_DONE;
    const s = this.slots[index - 1];
    const re = s.re[dir];
    const stream = s.current![dir];
    if (syn) {
      re.syn(seq);
      return DLP_PASS;
    }
    const before = stream.scanned;
    if (re.offer(seq, buf, offset, length, fin, stream) === REASSEMBLY_OUT_OF_WINDOW) {
      this.counters.dlpReorderDrops++;
      return DLP_REORDER;
    }
    if (re.done && !stream.done) stream.end();
    this.counters.dlpBytesScanned += stream.scanned - before;
    let verdict = DLP_PASS;
    const matches = stream.matches;
    if (matches.length !== s.seen[dir]) {
      const scan = s.scan!;
      for (let k = s.seen[dir]; k < matches.length; k++) {
        const m = matches[k];
        const action = scan.actions.get(m.profile) ?? 'log';
        this.record(family, flow, { profile: m.profile, detector: m.detector, direction: dir, offset: m.offset, action, ruleId: scan.ruleId });
        if (action === 'block') verdict = DLP_CUT;
      }
      s.seen[dir] = matches.length;
    }
    if (verdict === DLP_CUT) {
      this.counters.dlpFlowsCut++;
      this.release(family, flow);
      return DLP_CUT;
    }
    if ((re.done || stream.done) && (s.re[dir ^ 1].done || s.current![dir ^ 1].done)) {
      this.release(family, flow);
      return DLP_DONE;
    }
    return verdict;
  }

  private record(family: number, flow: number, e: DlpEvent): void {
    const key = eventKey(family, flow);
    const list = this.events.get(key);
    if (list === undefined) this.events.set(key, [e]);
    else list.push(e);
    const m = this.counters.dlpMatches;
    m.set(e.profile, (m.get(e.profile) ?? 0) + 1);
  }

  /** The matches recorded for a live flow (empty when none). */
  eventsOf(family: 0 | 1, flow: number): readonly DlpEvent[] {
    return this.events.get(eventKey(family, flow)) ?? NO_EVENTS;
  }

  /** The flow ended: its slot (if any) goes back to the pool, its events are forgotten. */
  flowEnded(family: 0 | 1, flow: number): void {
    if (flow < this.owner[family].length && this.owner[family][flow] !== 0) this.release(family, flow);
    if (this.events.size !== 0) this.events.delete(eventKey(family, flow));
  }

  /** Slots in use. */
  get busy(): number {
    let n = 0;
    for (const s of this.slots) if (s.flow >= 0) n++;
    return n;
  }

  private release(family: number, flow: number): void {
    const owner = this.owner[family];
    const at = owner[flow] - 1;
    owner[flow] = 0;
    const s = this.slots[at];
    s.flow = -1;
    s.current = null;
    s.scan = null;
    s.nextFree = this.freeHead;
    this.freeHead = at;
  }

  /** The index the tracker gives a flow table: 0 for flows4 (one address word), 1 for flows6. */
  static familyOf(table: FlowTable): 0 | 1 {
    return table.addrWords === 1 ? 0 : 1;
  }
}

const NO_EVENTS: readonly DlpEvent[] = [];

function eventKey(family: number, flow: number): number {
  return family === 0 ? flow : -1 - flow;
}
