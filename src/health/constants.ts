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
 * Cloudflare's "up to every second"; high is four per second; low is one per ten seconds for quiet sites that
 * prefer little probe traffic over fast failover. The interval bounds detection only on a tunnel that carries
 * nothing: one that carries traffic and hears nothing back is probed at once (SILENCE_PROBE_MS), so a cut under
 * load is found within SILENCE_PROBE_MS + three timeouts whatever the rate (docs/HEALTH.md has the formula).
 */
export const RATE_INTERVAL_MS: Readonly<Record<ProbeRate, number>> = { low: 10_000, mid: 1_000, high: 250 };

/**
 * How long a probe waits for its reply (ms). Three failures (the probe and its two re-probes) then span
 * three timeouts: 900 ms at low, 600 ms at mid, 360 ms at high, inside the "about one second" of the down rule.
 * Why these: failover is the moment the sender's next TCP retransmission finds the backup, and a Linux sender
 * retransmits at about 1, 3, 7 and 15 times its RTO (200 ms minimum + RTT; RFC 6298 section 5.5 doubles it
 * each time) after a cut: about 0.2, 0.6, 1.4 and 3 s. Detection must come before the 1.4 s one at mid (≤ 3 s
 * goal) and before the 0.6 s one at high (≤ 1 s): 100 + 25 + 3 * 200 ≈ 0.73 s and 100 + 25 + 3 * 120 ≈ 0.49 s,
 * each with a margin for a loaded event loop. And they stay well above the tunnel's round trip: the lab's
 * probe path measured p99.9 16-33 ms during a 400 Mbit/s download on a quiet machine, and 100-211 ms at worst
 * only with its two cores oversubscribed ten times over (npm run bench:probe-rtt, docs/PERFORMANCE.md). A link
 * whose round trip exceeds this (satellite) sets
 * `timeoutMs` in its spec. Always clamped to the interval so that at most one probe per onramp is in flight,
 * which keeps reply matching one comparison.
 */
export const RATE_TIMEOUT_MS: Readonly<Record<ProbeRate, number>> = { low: 300, mid: 200, high: 120 };

/**
 * An onramp that was sent traffic and has returned nothing for this long (ms) gets its next probe at once
 * (HealthEngine.traffic), instead of at the next interval: half the shortest TCP retransmission timeout
 * (Linux's 200 ms minimum RTO), so the probes start before a stalled sender's first retransmission. Only
 * when the onramp is not down and no probe is in flight or confirming; the probe's reply is traffic back, so an
 * onramp that only ever sends (a one-way stream) is probed at most about once per this time.
 */
export const SILENCE_PROBE_MS = 100;

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
