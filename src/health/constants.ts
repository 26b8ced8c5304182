/**
 * Health-check figures. The state rules follow what Cloudflare publishes for its Magic Transit / Cloudflare
 * WAN tunnel health checks (documentation pages "Tunnel health checks" and "Update tunnel health checks
 * frequency"), restated here so nothing needs to be looked up:
 *   - a probe is an ICMP echo carried inside the tunnel; its reply coming back is a success;
 *   - when a probe fails, up to two more are sent at once to confirm (and the same when a down tunnel starts
 *     answering again);
 *   - down: at least three samples within about the last second failed;
 *   - degraded: at least 0.1 % of the checks of the previous five minutes failed, with at least two failures
 *     (so one lost packet never costs a penalty);
 *   - rates are named low, mid and high (mid is Cloudflare's API default); its servers probe "up to every
 *     second". Cloudflare publishes no interval per rate name, so the intervals below are ours.
 */
import type { HealthState } from './judge.js';

export type ProbeRate = 'low' | 'mid' | 'high';

/**
 * Interval between regular probes, per rate (ms). mid is one per second, the default the issue asks for and
 * Cloudflare's "up to every second"; high is four per second so that a cut is detected within about one
 * second (interval + three timeouts = 250 + 3 * 200 = 850 ms); low is one per ten seconds for quiet sites
 * that prefer little probe traffic over fast failover.
 */
export const RATE_INTERVAL_MS: Readonly<Record<ProbeRate, number>> = { low: 10_000, mid: 1_000, high: 250 };

/**
 * How long a probe waits for its reply (ms). Three failures (the probe and its two re-probes) then span
 * three timeouts: 900 ms at low and mid, 600 ms at high, the "about one second" of the down rule. A link
 * whose round trip exceeds this (satellite) sets `timeoutMs` in its spec. Always clamped to the interval so
 * that at most one probe per onramp is in flight, which keeps reply matching one comparison.
 */
export const RATE_TIMEOUT_MS: Readonly<Record<ProbeRate, number>> = { low: 300, mid: 300, high: 200 };

export const DEFAULT_RATE: ProbeRate = 'mid';

/** Re-probes sent at once after a surprising result (a failure while not down, a success while down). */
export const REPROBES = 2;

/** Consecutive failed samples that make an onramp down. */
export const DOWN_CONSECUTIVE_FAILURES = 3;

/** Consecutive successful samples that bring a down onramp back to degraded (hysteresis: not to healthy). */
export const RECOVER_CONSECUTIVE_SUCCESSES = 3;

/** The loss window: five minutes of one-second buckets. */
export const WINDOW_SECONDS = 300;
export const BUCKET_MS = 1_000;

/** Degraded when failures / samples over the window >= 1 / 1000 (0.1 %) ... */
export const DEGRADED_LOSS_DENOMINATOR = 1_000;
/** ... and there were at least this many failures. */
export const DEGRADED_MIN_FAILURES = 2;

/** Route priority penalties (added to a route's priority; lower priority values win). */
export const PENALTY_HEALTHY = 0;
export const PENALTY_DEGRADED = 500_000;
export const PENALTY_DOWN = 1_000_000;

/** The penalty a route over an onramp in `state` takes. */
export function priorityPenalty(state: HealthState): number {
  return state === 'down' ? PENALTY_DOWN : state === 'degraded' ? PENALTY_DEGRADED : PENALTY_HEALTHY;
}

/** RFC 6298 section 2.3: alpha = 1/8, beta = 1/4 for the smoothed round-trip time and its variation. */
export const RTT_ALPHA = 1 / 8;
export const RTT_BETA = 1 / 4;

/** Transition events kept until the caller takes them; beyond this the oldest are dropped and counted. */
export const MAX_QUEUED_EVENTS = 1_024;
