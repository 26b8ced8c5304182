/** Unified routing: one table for every onramp type (see route-table.ts for the semantics). */
export {
  RouteTable,
  NextHopKind,
  NO_ROUTE,
  DEFAULT_PRIORITY,
  DEFAULT_WEIGHT,
  MAX_PRIORITY,
  MAX_WEIGHT,
  type RouteSpec,
  type RouteRecord,
} from './route-table.js';
