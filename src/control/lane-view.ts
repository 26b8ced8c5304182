/**
 * What the API reads of lanes other than its own (docs/ARCHITECTURE.md "Lanes"): with `daemon.lanes > 1` the API
 * runs on lane 0's thread and every other lane is a worker with flow tables, counters and a capture tap of its own.
 * The daemon (daemon/lane-observe.ts) answers this interface by asking the workers over their MessagePorts, each
 * question with an id, its answer matched by that id, and a deadline: a lane that does not answer in time is an
 * error that names it (LaneUnanswered: the API's 503), never a request that hangs. Control plane only: nothing
 * here runs per packet.
 */
import type { FlowFilter } from './flow-walk.js';
import type { FlowItem, FlowWithTrail } from './api-flows.js';
import type { LaneCounters } from './metrics.js';

/** A walk of one lane's table of one family (GET /v1/flows): from `slot`, at most `limit` matches and `maxSlots` slots. */
export interface LaneWalkRequest {
  family: 4 | 6;
  slot: number;
  filter: FlowFilter;
  limit: number;
  maxSlots: number;
}

/** What the walk found: the items (ids with the lane in them), where it stopped (null: the table's end). */
export interface LaneWalkAnswer {
  items: FlowItem[];
  next: number | null;
  matches: number;
  slots: number;
}

export interface OtherLanes {
  /** Lanes in all, lane 0 (the API's) included. */
  readonly count: number;
  /** Walks lane `lane`'s table (1 ≤ lane < count); rejects with LaneUnanswered when it does not answer in time. */
  walk(lane: number, request: LaneWalkRequest): Promise<LaneWalkAnswer>;
  /** One flow of lane `lane` with its trail (null: not live); rejects with LaneUnanswered. */
  flow(lane: number, family: 4 | 6, slot: number): Promise<FlowWithTrail | null>;
  /** The other lanes' per-onramp counters and NAT gauges, as each last posted them (at most a second old). */
  counters(): readonly LaneCounters[];
}

/** A lane that did not answer a question within its deadline. */
export class LaneUnanswered extends Error {
  constructor(readonly lane: number, readonly what: string, readonly waitedMs: number) {
    super(`lane ${lane} did not answer (${what}) within ${waitedMs} ms: its thread is stuck or gone; the other lanes' part is not shown`);
  }
}

/** The API's answer (503) for a question a lane did not answer; other errors are rethrown. */
export function laneProblem(e: unknown): { error: string; problems: Array<{ path: string; message: string }> } {
  if (e instanceof LaneUnanswered) return { error: 'a lane did not answer', problems: [{ path: `lanes[${e.lane}]`, message: e.message }] };
  throw e;
}
