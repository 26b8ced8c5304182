/**
 * The end-to-end health tests' time bounds, derived from the default probe rate's figures
 * (src/health/constants.ts) so that a retune moves them too. Bounds of behaviour ("down within seconds"), not
 * timings: the tests print the figures they see.
 */
import { DEFAULT_RATE, DOWN_CONSECUTIVE_FAILURES, RATE_INTERVAL_MS, RATE_TIMEOUT_MS } from '../../src/health/constants.js';

export const HEALTH_RATE = DEFAULT_RATE;
export const INTERVAL_MS = RATE_INTERVAL_MS[DEFAULT_RATE];
export const TIMEOUT_MS = RATE_TIMEOUT_MS[DEFAULT_RATE];
/** A loaded machine's slack on top of the design figures. */
export const SLACK_MS = 3_000;
/** Down within interval + three timeouts of a cut (docs/HEALTH.md), plus slack. */
export const DOWN_BOUND_MS = INTERVAL_MS + DOWN_CONSECUTIVE_FAILURES * TIMEOUT_MS + SLACK_MS;
/** How long a silent target is watched, in probe intervals; while down, one probe per interval is expected. */
export const QUIET_INTERVALS = 4;
export const QUIET_MS = QUIET_INTERVALS * INTERVAL_MS;

/** Probes counted over QUIET_MS while down: one per interval, give or take the edges of the wait, never a storm. */
export function quietProbesOk(n: number): boolean {
  return n >= QUIET_INTERVALS - 2 && n <= 2 * QUIET_INTERVALS;
}
