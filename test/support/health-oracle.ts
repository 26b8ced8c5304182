/**
 * The slow oracle for the health tests: every sample kept in an array, the window and the runs recomputed
 * from the whole history at each evaluation, the rules of judge.ts written out once more, plainly.
 */
import { BUCKET_MS, DEGRADED_MIN_FAILURES, DOWN_CONSECUTIVE_FAILURES, RECOVER_CONSECUTIVE_SUCCESSES, WINDOW_SECONDS } from '../../src/health/constants.js';
import type { HealthState, TransitionReason } from '../../src/health/judge.js';

export interface OracleTransition {
  from: HealthState;
  to: HealthState;
  reason: TransitionReason;
  now: number;
}

export class HealthOracle {
  readonly samples: { t: number; ok: boolean }[] = [];
  readonly transitions: OracleTransition[] = [];
  state: HealthState = 'healthy';
  since: number;
  private last = -Infinity;

  constructor(now: number) {
    this.since = now;
  }

  record(ok: boolean, t: number): void {
    t = Math.max(t, this.last);
    this.last = t;
    this.samples.push({ t, ok });
    this.evaluate(t);
  }

  /** Samples in the window ending at t: that second and the WINDOW_SECONDS - 1 before it. */
  windowAt(t: number): { t: number; ok: boolean }[] {
    const second = Math.floor(t / BUCKET_MS);
    return this.samples.filter((s) => Math.floor(s.t / BUCKET_MS) > second - WINDOW_SECONDS);
  }

  loss(t: number): number {
    const w = this.windowAt(t);
    return w.length === 0 ? 0 : w.filter((s) => !s.ok).length / w.length;
  }

  private tail(ok: boolean): number {
    let n = 0;
    for (let i = this.samples.length - 1; i >= 0 && this.samples[i].ok === ok; i--) n++;
    return n;
  }

  evaluate(t: number): void {
    t = Math.max(t, this.last);
    const w = this.windowAt(t);
    const failures = w.filter((s) => !s.ok).length;
    const go = (to: HealthState, reason: TransitionReason): void => {
      this.transitions.push({ from: this.state, to, reason, now: t });
      this.state = to;
      this.since = t;
    };
    if (this.state !== 'down' && this.tail(false) >= DOWN_CONSECUTIVE_FAILURES) go('down', 'consecutive-failures');
    else if (this.state === 'down' && this.tail(true) >= RECOVER_CONSECUTIVE_SUCCESSES) go('degraded', 'consecutive-successes');
    else if (this.state === 'healthy' && failures >= DEGRADED_MIN_FAILURES && failures / w.length >= 0.001) go('degraded', 'loss');
    else if (this.state === 'degraded' && failures === 0) go('healthy', 'clean-window');
  }
}
