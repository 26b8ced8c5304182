/**
 * Tunnel health: a pure engine that decides, per onramp, whether the tunnel works — healthy, degraded or
 * down — from probes carried inside it and from other evidence, so that routes over a failing onramp can
 * be penalised (priorityPenalty) and a site's traffic moves to its best healthy onramp.
 *
 * No I/O, no clock, no timers: every call takes `now`, a monotonic time in ms (non-negative, never going
 * backwards). The caller drives it:
 *
 *   loop:  wait until engine.nextDeadline() (or a packet arrives)
 *          for p of engine.poll(now): send buildProbe(p) into onramp p.onramp
 *          an ICMP echo reply to the edge's tunnel address from onramp X: engine.receive(X, bytes, off, len, now)
 *          WireGuard handshake age / IPsec DPD:  engine.observe(X, alive, now)
 *          the site's own probe answered (reverse style): engine.siteProbeAnswered(X, now)
 *          every few tens of ms: engine.traffic(X, packets sent into X, packets received from X, now)
 *          for e of engine.takeEvents(): log one line;  route priority += priorityPenalty(status(X).state)
 *
 * Evidence, by spec.mode:
 *   - 'probe' (default when a target is given): the edge sends ICMP echo requests from its tunnel address
 *     (spec.source) to an address on the site side (spec.target), identifier spec.icmpId (default: the onramp
 *     id), a new 16-bit sequence number each. At most one probe per onramp is in flight (the timeout is
 *     clamped to the interval), so a reply matches when it is an echo reply of the right family from the
 *     target to the source, with our identifier, arriving on this onramp, for the sequence number in flight,
 *     before its timeout. A reply for an older sequence (late, duplicated or forged) or one arriving on
 *     another onramp counts nothing. A probe without its reply by its timeout is a failure. The reply's ICMP
 *     checksum is not verified (inspect does not either): a corrupted reply that still matches every field
 *     above counts as the success it almost certainly is.
 *   - 'reverse': the site probes the edge and the edge answers (the caller does that); each answered probe is
 *     a success and each interval without one (after interval + timeout of grace) a failure.
 *   - 'passive': only observe() and siteProbeAnswered() feed the state.
 *   observe(alive = false) is a failure in every mode (a WireGuard session older than Reject-After-Time,
 *   180 s, carries nothing). observe(alive = true) and answered site probes are successes only in the
 *   reverse and passive modes: with probes configured, only our own probes' replies prove the path, and a
 *   stale-but-not-expired WireGuard session reporting "alive" each second must not break the run of probe
 *   failures that makes an onramp down.
 *
 * States and timings (judge.ts has the rules; constants.ts the figures and where they come from):
 *   - healthy -> down / degraded -> down: three consecutive failed samples. A failure while not down sends
 *     two re-probes at once, one after the other, so a cut is confirmed within three timeouts (600 ms at
 *     the default mid rate) of the first lost probe, and within interval + 3 timeouts of the cut (at most
 *     1.6 s at mid, 610 ms at high); on an onramp that carries traffic, within SILENCE_PROBE_MS + the caller's
 *     look period + 3 timeouts (traffic()), whichever comes first.
 *   - healthy -> degraded: at least 0.1 % of the samples of the last five minutes failed, at least two.
 *     So a cut of a healthy onramp gives two events, one timeout apart: healthy -> degraded at the second
 *     lost probe (two failures are already >= 0.1 %), degraded -> down at the third. The rules are applied
 *     as written rather than held back while re-probes run, so the slow oracle in the tests is the rules.
 *   - down -> degraded: three consecutive successes (a success while down likewise sends two re-probes at
 *     once, so recovery is confirmed within a few round trips, not three intervals).
 *   - degraded -> healthy: a clean window, no failure in the last five minutes.
 *   Why: the down and degraded rules are those Cloudflare documents for its tunnel health checks, the
 *   recovery rules are the hysteresis on top of them; one lost packet never
 *   costs a penalty (two failures are needed), a dead tunnel is given up within about a second, and a
 *   tunnel that just came back is trusted less (degraded) until it has stayed clean for five minutes, so
 *   routes do not flap back and forth with a marginal link.
 *   An onramp starts healthy (spec.initial) so that a new site carries traffic before its first probe.
 *
 * Memory per onramp is fixed: the loss window is a ring of 300 one-second buckets (loss-window.ts), one
 * probe in flight, a few counters; a target that never answers costs one probe per interval and, once down,
 * no further events. Every transition is one event; the queue is bounded (MAX_QUEUED_EVENTS).
 * Cost: poll() visits only the onramps whose next deadline has come (a min-heap keyed by it, deadline-heap.ts:
 * O(due · log n)), nextDeadline() is O(1); `{ scan: true }` visits every onramp instead (the tests' oracle).
 */
import { parseAddress } from '../wire/addr.js';
import { MAX_ONRAMP_ID } from '../common/ids.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6 } from '../wire/constants.js';
import { Drop } from '../common/drop-reasons.js';
import { buildIcmpEcho } from '../wire/build.js';
import { read16 } from '../wire/bytes.js';
import { ICMP4_ECHO_REPLY, ICMP6_ECHO_REPLY, ICMP_SEQ } from '../wire/constants.js';
import { inspect } from '../wire/inspect.js';
import { DST, PacketInfo, SRC } from '../wire/packet-info.js';
import {
  BUCKET_MS,
  DEFAULT_RATE,
  DEGRADED_LOSS_DENOMINATOR,
  DEGRADED_MIN_FAILURES,
  MAX_QUEUED_EVENTS,
  RATE_INTERVAL_MS,
  RATE_TIMEOUT_MS,
  REPROBES,
  RTT_ALPHA,
  RTT_BETA,
  SILENCE_PROBE_MS,
  WINDOW_SECONDS,
  type ProbeRate,
} from './constants.js';
import { DeadlineHeap, type HeapItem } from './deadline-heap.js';
import { HealthJudge, type HealthState, type TransitionReason } from './judge.js';

export type HealthMode = 'probe' | 'reverse' | 'passive';

export interface HealthSpec {
  /** Default: 'probe' when `target` is given, else 'passive'. */
  mode?: HealthMode;
  /** Default 'mid' (one probe per second). */
  rate?: ProbeRate;
  /** Overrides the rate's interval (ms, 1..MAX_INTERVAL_MS). */
  intervalMs?: number;
  /** Overrides the rate's reply timeout (ms, > 0); clamped to the interval. */
  timeoutMs?: number;
  /** The edge's tunnel address, IPv4 or IPv6 text: the probes' source (mode 'probe'). */
  source?: string;
  /** The address on the site side the probes go to, same family as source (mode 'probe'). */
  target?: string;
  /** ICMP identifier of the probes (0..0xffff). Default: the onramp id. */
  icmpId?: number;
  /** First sequence number (0..0xffff); the daemon may pick a random one so replies are harder to guess. Default 0. */
  firstSeq?: number;
  /** State at add(). Default 'healthy'. */
  initial?: HealthState;
}

/** One probe to send: an ICMP echo request srcAddr -> dstAddr with this identifier and sequence number, into onramp. */
export interface Probe {
  onramp: number;
  id: number;
  seq: number;
  srcAddr: string;
  dstAddr: string;
}

/** One state transition, for one log line. `now` is when it happened (a timeout's deadline, a reply's arrival). */
export interface HealthEvent {
  onramp: number;
  from: HealthState;
  to: HealthState;
  reason: TransitionReason;
  now: number;
}

export interface HealthStatus {
  state: HealthState;
  /** Failed / all samples over the five-minute window (0..1), as of the last call that saw this onramp. */
  loss: number;
  /** Smoothed round-trip time of the probes (RFC 6298 section 2 SRTT), null before the first reply. */
  rttMs: number | null;
  /** When the current state was entered (ms, the caller's clock). */
  since: number;
}

export interface HealthCounters {
  probesSent: number;
  repliesMatched: number;
  /** Replies with our identity (addresses, identifier) but no probe in flight with their sequence number. */
  repliesRejected: number;
  timeouts: number;
  siteProbesAnswered: number;
  siteProbesMissed: number;
  observedFailures: number;
  observedAlive: number;
  /** Probes sent early because the onramp carried traffic out and nothing came back (traffic()). */
  silenceProbes: number;
}

/** receive() results. */
export const REPLY_NOT_OURS = 0; // not a reply to this onramp's probes: the caller handles it as any packet
export const REPLY_MATCHED = 1; // the reply to the probe in flight: counted, the caller drops it
export const REPLY_REJECTED = 2; // looks like ours but matches no probe in flight (late, duplicate, forged): drop
export type ReplyResult = typeof REPLY_NOT_OURS | typeof REPLY_MATCHED | typeof REPLY_REJECTED;

/** Longest probe interval accepted: the five-minute window then still holds enough samples to judge loss. */
export const MAX_INTERVAL_MS = 60_000;
const WINDOW_MS = WINDOW_SECONDS * BUCKET_MS;
const SEQ_MASK = 0xffff;
const ICMP_ID_MAX = 0xffff;

interface Resolved {
  mode: HealthMode;
  intervalMs: number;
  timeoutMs: number;
  family: 0 | 4 | 6;
  icmpId: number;
  srcAddr: string;
  dstAddr: string;
  /** Source words [0..3], target words [4..7] (PacketInfo layout: a reply comes from the target to the source). */
  words: Uint32Array;
}

function resolve(onramp: number, spec: HealthSpec): Resolved {
  const mode: HealthMode = spec.mode ?? (spec.target !== undefined ? 'probe' : 'passive');
  const rate = spec.rate ?? DEFAULT_RATE;
  if (!Object.hasOwn(RATE_INTERVAL_MS, rate)) throw new RangeError(`onramp ${onramp}: unknown probe rate ${String(rate)}`);
  const intervalMs = spec.intervalMs ?? RATE_INTERVAL_MS[rate];
  if (!(intervalMs >= 1 && intervalMs <= MAX_INTERVAL_MS)) throw new RangeError(`onramp ${onramp}: probe interval must be 1..${MAX_INTERVAL_MS} ms`);
  const timeout = spec.timeoutMs ?? RATE_TIMEOUT_MS[rate];
  if (!(timeout > 0)) throw new RangeError(`onramp ${onramp}: probe timeout must be positive`);
  const icmpId = spec.icmpId ?? onramp;
  if (!Number.isInteger(icmpId) || icmpId < 0 || icmpId > ICMP_ID_MAX) throw new RangeError(`onramp ${onramp}: ICMP identifier must be 0..65535`);
  const words = new Uint32Array(8);
  let family: 0 | 4 | 6 = 0;
  if (mode === 'probe') {
    if (spec.source === undefined || spec.target === undefined) throw new RangeError(`onramp ${onramp}: probing needs a source and a target address`);
    family = parseAddress(spec.source, words, SRC);
    const targetFamily = parseAddress(spec.target, words, DST);
    if (family === 0) throw new RangeError(`onramp ${onramp}: bad probe source ${spec.source}`);
    if (targetFamily !== family) throw new RangeError(`onramp ${onramp}: probe target ${spec.target} is not an IPv${family} address`);
  }
  return {
    mode,
    intervalMs,
    timeoutMs: Math.min(timeout, intervalMs),
    family,
    icmpId,
    srcAddr: spec.source ?? '',
    dstAddr: spec.target ?? '',
    words,
  };
}

/** Whether two resolved specs probe the same way (a reply to one is a reply to the other). */
function sameProbing(a: Resolved, b: Resolved): boolean {
  return a.mode === b.mode && a.family === b.family && a.icmpId === b.icmpId && a.srcAddr === b.srcAddr && a.dstAddr === b.dstAddr;
}

class OnrampHealth implements HeapItem {
  readonly judge: HealthJudge;
  /** The deadline index: when poll() next has something to do for this onramp (dueOf), and its heap slot. */
  due = 0;
  heapAt = -1;
  nextSeq: number;
  inFlight = false;
  inFlightSeq = 0;
  sentAt = 0;
  deadline = 0;
  /** When the next regular probe is due. */
  nextRegularAt: number;
  /** A confirmation run: re-probes still to send, whether one is running, and the outcome it confirms. */
  burstLeft = 0;
  burstActive = false;
  burstOk = false;
  /** Reverse mode: when a site probe is overdue. */
  expectBy: number;
  /** RFC 6298 section 2: NaN until the first measurement. */
  srtt = NaN;
  rttvar = NaN;
  /** traffic(): the packet counts last seen, when the received count last moved, whether something went out since. */
  trafficSeen = false;
  sentSeen = 0;
  receivedSeen = 0;
  quietSince = 0;
  unanswered = false;
  readonly counters: HealthCounters = {
    probesSent: 0,
    repliesMatched: 0,
    repliesRejected: 0,
    timeouts: 0,
    siteProbesAnswered: 0,
    siteProbesMissed: 0,
    observedFailures: 0,
    observedAlive: 0,
    silenceProbes: 0,
  };

  constructor(
    readonly id: number,
    public spec: Resolved,
    now: number,
    initial: HealthState,
    firstSeq: number,
  ) {
    this.judge = new HealthJudge(now, initial);
    this.nextSeq = firstSeq & SEQ_MASK;
    this.nextRegularAt = now;
    this.expectBy = now + spec.intervalMs + spec.timeoutMs;
  }
}

/**
 * When poll() next has something to do for `o`: its probe's timeout, a re-probe (due at once), the next regular
 * probe, a site probe overdue (reverse), or a state that changes with time alone — degraded -> healthy at the
 * clean-window moment, and healthy -> degraded by loss when old successes leave the window while two or more
 * failures stay (possible only above 2,000 samples in the window, i.e. with an interval under 150 ms; checked at
 * each second's start, since the window moves in whole seconds).
 */
function dueOf(o: OnrampHealth): number {
  const j = o.judge;
  let d = j.cleanAt();
  if (o.spec.mode === 'probe') d = Math.min(d, o.inFlight ? o.deadline : o.burstLeft > 0 ? j.lastSampleAt : o.nextRegularAt);
  else if (o.spec.mode === 'reverse') d = Math.min(d, o.expectBy);
  const w = j.window;
  if (j.state === 'healthy' && w.failures >= DEGRADED_MIN_FAILURES && w.failures * DEGRADED_LOSS_DENOMINATOR < w.total) d = Math.min(d, (w.second + 1) * BUCKET_MS);
  return d;
}

function checkOnramp(onramp: number): void {
  if (!Number.isInteger(onramp) || onramp < 1 || onramp > MAX_ONRAMP_ID) throw new RangeError(`onramp id must be 1..${MAX_ONRAMP_ID}, got ${onramp}`);
}

export interface HealthEngineOptions {
  /**
   * Visit every onramp on each poll() and nextDeadline() (the simple scan) instead of only those due (the
   * deadline index). The same results; the tests use it as the oracle and bench:apply as "before".
   */
  scan?: boolean;
}

export class HealthEngine {
  private readonly onramps = new Map<number, OnrampHealth>();
  private readonly scan: boolean;
  private readonly index = new DeadlineHeap<OnrampHealth>();
  /** poll()'s due onramps, taken out of the index while they are visited. */
  private readonly visiting: OnrampHealth[] = [];
  private events: HealthEvent[] = [];
  /** Events dropped because the caller did not take them (the queue holds MAX_QUEUED_EVENTS). */
  droppedEvents = 0;
  private readonly info = new PacketInfo();

  constructor(opts: HealthEngineOptions = {}) {
    this.scan = opts.scan ?? false;
  }

  get size(): number {
    return this.onramps.size;
  }

  has(onramp: number): boolean {
    return this.onramps.has(onramp);
  }

  /** Starts checking an onramp; its first probe is due at `now`. Throws on a bad spec or an onramp already present. */
  add(onramp: number, spec: HealthSpec, now: number): void {
    checkOnramp(onramp);
    if (this.onramps.has(onramp)) throw new RangeError(`onramp ${onramp} is already health-checked`);
    const firstSeq = spec.firstSeq ?? 0;
    if (!Number.isInteger(firstSeq) || firstSeq < 0 || firstSeq > SEQ_MASK) throw new RangeError(`onramp ${onramp}: first sequence number must be 0..65535`);
    const o = new OnrampHealth(onramp, resolve(onramp, spec), now, spec.initial ?? 'healthy', firstSeq);
    this.onramps.set(onramp, o);
    this.reindex(o);
  }

  /**
   * Changes an onramp's spec, keeping its state, window and counters. When the probing itself changes (mode,
   * addresses, identifier) the probe in flight is forgotten (its reply will count nothing), the RTT starts
   * over and a probe is due at once; a new rate or timeout applies from the next probe.
   */
  update(onramp: number, spec: HealthSpec, now: number): void {
    const o = this.onramps.get(onramp);
    if (!o) throw new RangeError(`onramp ${onramp} is not health-checked`);
    const next = resolve(onramp, spec);
    if (!sameProbing(o.spec, next)) {
      o.inFlight = false;
      o.burstLeft = 0;
      o.burstActive = false;
      o.srtt = NaN;
      o.rttvar = NaN;
      o.nextRegularAt = now;
      o.expectBy = now + next.intervalMs + next.timeoutMs;
    } else {
      o.nextRegularAt = Math.min(o.nextRegularAt, now + next.intervalMs);
      o.expectBy = Math.min(o.expectBy, now + next.intervalMs + next.timeoutMs);
    }
    o.spec = next;
    this.reindex(o);
  }

  /** Stops checking an onramp; later replies to its probes are not ours. */
  remove(onramp: number): boolean {
    const o = this.onramps.get(onramp);
    if (!o) return false;
    this.index.delete(o);
    return this.onramps.delete(onramp);
  }

  status(onramp: number): HealthStatus | undefined {
    const o = this.onramps.get(onramp);
    if (!o) return undefined;
    const j = o.judge;
    return { state: j.state, loss: j.window.loss, rttMs: Number.isNaN(o.srtt) ? null : o.srtt, since: j.since };
  }

  counters(onramp: number): Readonly<HealthCounters> | undefined {
    return this.onramps.get(onramp)?.counters;
  }

  /** The earliest time poll() has something to do (a probe due, a timeout, a state that changes with time); Infinity when none. */
  nextDeadline(): number {
    if (!this.scan) return this.index.minDue;
    let d = Infinity;
    for (const o of this.onramps.values()) d = Math.min(d, dueOf(o));
    return d;
  }

  /**
   * Times out overdue probes, re-evaluates the onramps, and appends the probes due now to `out`. With the
   * deadline index only the onramps due by `now` are visited: the others' probes and timeouts are not due, and
   * their state cannot change by time alone before their due time (dueOf), so visiting them would change nothing.
   */
  poll(now: number, out: Probe[] = []): Probe[] {
    if (this.scan) {
      for (const o of this.onramps.values()) this.visit(o, now, out);
      return out;
    }
    const visiting = this.visiting;
    for (let o = this.index.popDue(now); o !== undefined; o = this.index.popDue(now)) visiting.push(o);
    for (const o of visiting) {
      this.visit(o, now, out);
      this.reindex(o);
    }
    visiting.length = 0;
    return out;
  }

  private visit(o: OnrampHealth, now: number, out: Probe[]): void {
    this.settle(o, now);
    if (o.judge.evaluate(now)) this.emit(o);
    if (o.spec.mode !== 'probe' || o.inFlight) return;
    if (o.burstLeft > 0) {
      o.burstLeft--;
      this.send(o, now, out);
    } else if (now >= o.nextRegularAt) {
      o.nextRegularAt = now + o.spec.intervalMs;
      this.send(o, now, out);
    }
  }

  /** After anything that may move an onramp's due time: its place in the index. */
  private reindex(o: OnrampHealth): void {
    if (this.scan) return;
    o.due = dueOf(o);
    this.index.set(o);
  }

  /**
   * The onramp's packet counts (sent into it, received from it; any monotonic counts, e.g. the pipeline's
   * txPackets / rxPackets), looked at every few tens of ms. When something went out and nothing has come back
   * for SILENCE_PROBE_MS, the next probe is due at once rather than at the next interval (and the regular
   * schedule continues from it): a tunnel cut under traffic is then found within SILENCE_PROBE_MS + the look's
   * period + three timeouts, whatever the interval. Only a probe is sent: the state still moves by probe
   * results alone. Not while down (a target that never answers costs one probe per interval), nor while a probe
   * is in flight or confirming, nor within SILENCE_PROBE_MS of the last probe. Returns true when a probe became
   * due (the caller polls).
   */
  traffic(onramp: number, sent: number, received: number, now: number): boolean {
    const o = this.onramps.get(onramp);
    if (!o) return false;
    if (!o.trafficSeen) {
      o.trafficSeen = true;
      o.sentSeen = sent;
      o.receivedSeen = received;
      o.quietSince = now;
      return false;
    }
    if (received !== o.receivedSeen) {
      o.receivedSeen = received;
      o.quietSince = now;
      o.unanswered = false;
    }
    // Sent in the same look as the last receipt: maybe after it, so it counts as unanswered (silence from now).
    if (sent !== o.sentSeen) {
      o.sentSeen = sent;
      o.unanswered = true;
    }
    if (!o.unanswered || o.spec.mode !== 'probe' || o.judge.state === 'down' || o.inFlight || o.burstActive) return false;
    if (now - o.quietSince < SILENCE_PROBE_MS || now - o.sentAt < SILENCE_PROBE_MS || now >= o.nextRegularAt) return false;
    o.nextRegularAt = now;
    o.counters.silenceProbes++;
    this.reindex(o);
    return true;
  }

  /** A packet that arrived on `onramp` and may be a probe reply: inspects it (see receiveInspected). */
  receive(onramp: number, bytes: Uint8Array, offset: number, length: number, now: number): ReplyResult {
    if (!this.onramps.has(onramp)) return REPLY_NOT_OURS;
    if (inspect(bytes, offset, length, this.info) !== Drop.None) return REPLY_NOT_OURS;
    return this.receiveInspected(onramp, this.info, bytes, now);
  }

  /** Like receive(), for a packet the caller has already inspected into `info` (bytes is the buffer it inspected). */
  receiveInspected(onramp: number, info: PacketInfo, bytes: Uint8Array, now: number): ReplyResult {
    const o = this.onramps.get(onramp);
    if (!o || o.spec.mode !== 'probe' || !info.hasTransportHeader) return REPLY_NOT_OURS;
    const s = o.spec;
    const v6 = s.family === 6;
    if (info.family !== s.family || info.protocol !== (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) return REPLY_NOT_OURS;
    if (info.icmpType !== (v6 ? ICMP6_ECHO_REPLY : ICMP4_ECHO_REPLY) || info.icmpId !== s.icmpId) return REPLY_NOT_OURS;
    // From the target to our source: IPv4 compares one word, IPv6 four (PacketInfo: source [0..3], destination [4..7]).
    const n = v6 ? 4 : 1;
    for (let i = 0; i < n; i++) {
      if (info.addr[SRC + i] !== s.words[DST + i] || info.addr[DST + i] !== s.words[SRC + i]) return REPLY_NOT_OURS;
    }
    this.settle(o, now); // a reply at or after its probe's timeout is late
    const seq = read16(bytes, info.l4Offset + ICMP_SEQ);
    if (!o.inFlight || seq !== o.inFlightSeq) {
      o.counters.repliesRejected++;
      return REPLY_REJECTED;
    }
    o.inFlight = false;
    o.counters.repliesMatched++;
    this.measure(o, now - o.sentAt);
    this.sample(o, true, now);
    return REPLY_MATCHED;
  }

  /**
   * Other evidence: alive = false is a failure in every mode (e.g. the WireGuard session is older than
   * Reject-After-Time, or IPsec dead-peer detection got no answer); alive = true is a success in the reverse
   * and passive modes only (see the top of this file). Returns false for an unknown onramp.
   */
  observe(onramp: number, alive: boolean, now: number): boolean {
    const o = this.onramps.get(onramp);
    if (!o) return false;
    this.settle(o, now);
    if (!alive) {
      o.counters.observedFailures++;
      this.sample(o, false, now);
    } else {
      o.counters.observedAlive++;
      if (o.spec.mode !== 'probe') this.sample(o, true, now);
    }
    return true;
  }

  /** The site probed the edge through this onramp and was answered (reverse style). Returns false for an unknown onramp. */
  siteProbeAnswered(onramp: number, now: number): boolean {
    const o = this.onramps.get(onramp);
    if (!o) return false;
    o.counters.siteProbesAnswered++;
    this.settle(o, now);
    if (o.spec.mode === 'probe') return true;
    if (o.spec.mode === 'reverse') o.expectBy = now + o.spec.intervalMs + o.spec.timeoutMs;
    this.sample(o, true, now);
    return true;
  }

  /** The transitions since the last call, oldest first. */
  takeEvents(): HealthEvent[] {
    const taken = this.events;
    this.events = [];
    return taken;
  }

  /** Records what became due by `now`: the probe in flight timing out, site probes not arriving (reverse). */
  private settle(o: OnrampHealth, now: number): void {
    if (o.inFlight && now >= o.deadline) {
      o.inFlight = false;
      o.counters.timeouts++;
      this.sample(o, false, o.deadline);
    }
    if (o.spec.mode !== 'reverse' || now < o.expectBy) return;
    const interval = o.spec.intervalMs;
    // After a long silence only the misses still inside the window matter (and they are at least three).
    if (now - o.expectBy > WINDOW_MS) {
      const skipped = Math.floor((now - o.expectBy - WINDOW_MS) / interval) + 1;
      o.counters.siteProbesMissed += skipped;
      o.expectBy += skipped * interval;
    }
    while (now >= o.expectBy) {
      o.counters.siteProbesMissed++;
      this.sample(o, false, o.expectBy);
      o.expectBy += interval;
    }
    this.reindex(o);
  }

  private sample(o: OnrampHealth, ok: boolean, t: number): void {
    if (o.judge.record(ok, t)) this.emit(o);
    if (o.spec.mode === 'probe') this.confirm(o, ok);
    this.reindex(o);
  }

  /**
   * Re-probes: a failure while not down, or a success while down, starts a run of up to REPROBES probes
   * sent at once (one after the other); the run stops at the first result that does not confirm it.
   */
  private confirm(o: OnrampHealth, ok: boolean): void {
    if (o.burstActive) {
      if (ok !== o.burstOk || (o.burstLeft === 0 && !o.inFlight)) {
        o.burstActive = false;
        o.burstLeft = 0;
      }
      return;
    }
    if (ok === (o.judge.state === 'down')) {
      o.burstActive = true;
      o.burstOk = ok;
      o.burstLeft = REPROBES;
    }
  }

  private send(o: OnrampHealth, now: number, out: Probe[]): void {
    const seq = o.nextSeq;
    o.nextSeq = (seq + 1) & SEQ_MASK;
    o.inFlight = true;
    o.inFlightSeq = seq;
    o.sentAt = now;
    o.deadline = now + o.spec.timeoutMs;
    o.counters.probesSent++;
    out.push({ onramp: o.id, id: o.spec.icmpId, seq, srcAddr: o.spec.srcAddr, dstAddr: o.spec.dstAddr });
  }

  /** RFC 6298 section 2.2 (first measurement) and 2.3 (later ones). */
  private measure(o: OnrampHealth, r: number): void {
    if (Number.isNaN(o.srtt)) {
      o.srtt = r;
      o.rttvar = r / 2;
    } else {
      o.rttvar = (1 - RTT_BETA) * o.rttvar + RTT_BETA * Math.abs(o.srtt - r);
      o.srtt = (1 - RTT_ALPHA) * o.srtt + RTT_ALPHA * r;
    }
  }

  private emit(o: OnrampHealth): void {
    const j = o.judge;
    if (this.events.length >= MAX_QUEUED_EVENTS) {
      this.events.shift();
      this.droppedEvents++;
    }
    this.events.push({ onramp: o.id, from: j.from, to: j.state, reason: j.reason, now: j.since });
  }
}

/** The probe's bytes: an ICMP / ICMPv6 echo request (RFC 792; RFC 4443 section 4.1). Allocates: once per probe. */
export function buildProbe(probe: Probe): Uint8Array {
  return buildIcmpEcho({ src: probe.srcAddr, dst: probe.dstAddr }, { type: 'request', id: probe.id, seq: probe.seq });
}
