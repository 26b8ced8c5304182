/**
 * Lanes (issue 10, item 4; docs/ARCHITECTURE.md "Lanes"): the edge's packet path split over worker threads, each
 * lane with its own pipeline (flow table + NAT). A flow belongs to the lane that set it up; the NAT pool's port
 * ranges are cut into one contiguous slice per lane, so two lanes never hand out the same external endpoint and
 * the external port of a reply names its lane, whichever lane the kernel hands the reply to.
 *
 * Contiguous slices (not port mod N): a slice keeps both parities (RFC 4787 REQ-4) and, for the lane whose slice
 * covers it, the internal port itself (REQ-3 port preservation).
 */

/** Lanes when the configuration and the command line say nothing: the edge on one thread, as before lanes. */
export const DEFAULT_LANES = 1;

/** The most lanes an edge runs: more than any core count this is deployed on, and a lane index fits a byte. */
export const MAX_LANES = 64;

/** Checks a lane count (config, CLI): an integer 1..MAX_LANES. Returns an error text, or null. */
export function laneCountProblem(lanes: number): string | null {
  if (!Number.isInteger(lanes) || lanes < 1 || lanes > MAX_LANES) return `lanes must be an integer 1..${MAX_LANES}, got ${lanes}`;
  return null;
}

/**
 * Lowest port of `lane`'s slice of [min, max] cut into `lanes` contiguous slices whose sizes differ by at most
 * one (the first (size mod lanes) slices are one longer). A lane past the range's size gets an empty slice
 * (laneFirst > laneLast).
 */
export function laneFirst(min: number, max: number, lane: number, lanes: number): number {
  const size = max - min + 1;
  const base = Math.floor(size / lanes);
  const extra = size - base * lanes;
  return min + lane * base + Math.min(lane, extra);
}

/** Highest port of `lane`'s slice (see laneFirst). */
export function laneLast(min: number, max: number, lane: number, lanes: number): number {
  return laneFirst(min, max, lane + 1, lanes) - 1;
}

/** The lane whose slice of [min, max] holds `port`; -1 outside the range. No allocation (per packet). */
export function laneOfPort(min: number, max: number, lanes: number, port: number): number {
  if (port < min || port > max) return -1;
  const size = max - min + 1;
  const base = Math.floor(size / lanes);
  const extra = size - base * lanes;
  const off = port - min;
  // The first `extra` slices hold base + 1 ports each.
  const long = extra * (base + 1);
  return off < long ? Math.floor(off / (base + 1)) : extra + Math.floor((off - long) / base);
}
