/**
 * The health state machine of one onramp: samples in (a probe answered or timed out, other evidence), at most
 * one transition out per evaluation. Knows nothing about probes or packets; health.ts feeds it.
 *
 *            3 consecutive failures                      3 consecutive failures
 *   healthy ──────────────────────────────► down ◄──────────────────────────────── degraded
 *      │  ▲                                  │                                       ▲   │
 *      │  └────────────── clean window (no failure in the loss window) ──────────────┼───┘
 *      │                                     └──── 3 consecutive successes ─────────►┘
 *      └──── >= 0.1 % failures over the window, at least 2 ────────────────────────►┘ (degraded)
 *
 * Rules, checked in this order at every evaluation (after each sample, and on every poll because the window
 * slides with time alone), the first that applies wins:
 *   1. not down, and the last DOWN_CONSECUTIVE_FAILURES samples all failed      -> down
 *   2. down, and the last RECOVER_CONSECUTIVE_SUCCESSES samples all succeeded   -> degraded
 *   3. healthy, failures >= DEGRADED_MIN_FAILURES and failures / samples >= 0.1 % over the window -> degraded
 *   4. degraded, and no failure in the window                                    -> healthy
 * Rule 1 counts a run, not a time span: the re-probes (health.ts) put a probe's three failures within three
 * timeouts, and failures reported by observe() further apart still mean the tunnel carries nothing.
 * Hysteresis comes from rules 2 and 4: leaving down only reaches degraded, and degraded lasts until the
 * failures that caused it have left the five-minute window.
 */
import {
  DEGRADED_LOSS_DENOMINATOR,
  DEGRADED_MIN_FAILURES,
  DOWN_CONSECUTIVE_FAILURES,
  RECOVER_CONSECUTIVE_SUCCESSES,
  BUCKET_MS,
  WINDOW_SECONDS,
} from './constants.js';
import { LossWindow } from './loss-window.js';

export type HealthState = 'healthy' | 'degraded' | 'down';

/** Why a transition happened (rules 1..4 above). */
export type TransitionReason = 'consecutive-failures' | 'consecutive-successes' | 'loss' | 'clean-window';

export class HealthJudge {
  state: HealthState;
  /** When the current state was entered (ms, the caller's monotonic clock). */
  since: number;
  /** Set by the last evaluation that changed the state. */
  from: HealthState;
  reason: TransitionReason = 'loss';
  /** Length of the run of failures / successes that ends the sample history. */
  tailFailures = 0;
  tailSuccesses = 0;
  /** Time of the newest sample and of the newest failure (-Infinity before the first). */
  lastSampleAt = -Infinity;
  lastFailureAt = -Infinity;
  readonly window = new LossWindow();

  constructor(now: number, initial: HealthState = 'healthy') {
    this.state = initial;
    this.from = initial;
    this.since = now;
  }

  /** Counts one sample at time t (clamped to be no earlier than the previous one); true when the state changed. */
  record(ok: boolean, t: number): boolean {
    t = Math.max(t, this.lastSampleAt);
    this.lastSampleAt = t;
    this.window.add(t, ok);
    if (ok) {
      this.tailSuccesses++;
      this.tailFailures = 0;
    } else {
      this.tailFailures++;
      this.tailSuccesses = 0;
      this.lastFailureAt = t;
    }
    return this.evaluate(t);
  }

  /** Applies the first rule that holds at time t; true when the state changed. */
  evaluate(t: number): boolean {
    t = Math.max(t, this.lastSampleAt);
    this.window.advance(t);
    const { failures, total } = this.window;
    if (this.state !== 'down' && this.tailFailures >= DOWN_CONSECUTIVE_FAILURES) return this.enter('down', 'consecutive-failures', t);
    if (this.state === 'down' && this.tailSuccesses >= RECOVER_CONSECUTIVE_SUCCESSES) return this.enter('degraded', 'consecutive-successes', t);
    if (this.state === 'healthy' && failures >= DEGRADED_MIN_FAILURES && failures * DEGRADED_LOSS_DENOMINATOR >= total) {
      return this.enter('degraded', 'loss', t);
    }
    if (this.state === 'degraded' && failures === 0) return this.enter('healthy', 'clean-window', t);
    return false;
  }

  /**
   * When the window will hold no failure any more (rule 4 can fire by time alone): the start of the first
   * second after the newest failure's second has left the window. Infinity when that cannot matter.
   */
  cleanAt(): number {
    if (this.state !== 'degraded') return Infinity;
    if (this.lastFailureAt === -Infinity) return this.since;
    return (Math.floor(this.lastFailureAt / BUCKET_MS) + WINDOW_SECONDS) * BUCKET_MS;
  }

  private enter(state: HealthState, reason: TransitionReason, t: number): boolean {
    this.from = this.state;
    this.state = state;
    this.reason = reason;
    this.since = t;
    return true;
  }
}
