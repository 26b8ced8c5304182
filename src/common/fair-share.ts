/**
 * Fair shares (issue 11): how much of a shared, bounded resource one holder may take by default, so that
 * one site's flood never takes another site's ability to open flows (docs/FLOW-MODEL.md, "Fair shares").
 * Used for the flow tables' per-onramp quotas, the NAT pool's per-site port quotas and the fragment
 * follower's per-site hold slots.
 */

/**
 * The automatic share of a resource of `capacity` units (flow slots, a pool address's ports, held
 * fragments) among `holders` (onramps, sites): each other holder keeps a reserve of
 * ceil(capacity / (2 * holders)), and one holder may take everything else, at least 1. One holder: all.
 * Example: 65,536 flows, 4 onramps: reserve 8,192, share 65,536 - 3 * 8,192 = 40,960.
 */
export function fairShare(capacity: number, holders: number): number {
  if (holders <= 1) return capacity;
  const reserve = Math.ceil(capacity / (2 * holders));
  return Math.max(1, capacity - (holders - 1) * reserve);
}

