/**
 * Observability across lanes (docs/ARCHITECTURE.md "Lanes"): with `daemon.lanes > 1` the API runs on lane 0, and
 * what it shows of the other lanes — their flows (a page, one flow with its trail), their per-onramp counters and NAT
 * gauges — comes from here. Control plane only: nothing here runs per packet.
 *
 *   lane 0 (API) ── ask {id, walk | flow} ──► lane k's worker: LaneObserver walks its own tables (in slices, its
 *               ◄── answer {id, value} ─────   own LoopShare) and builds the items with its own names
 *               ◄── counters (every LANE_STATUS_INTERVAL_MS, with the status)
 *
 * laneFlowSource turns lane 0's LaneHost into the control plane's OtherLanes.
 */
import { performance } from 'node:perf_hooks';
import { LISTING_BURST_MS, LISTING_LOOP_SHARE, flowWithTrail, walkLaneFlows, type FlowView, type FlowWithTrail } from '../control/api-flows.js';
import { LoopShare } from '../control/flow-walk.js';
import type { LaneWalkAnswer, OtherLanes } from '../control/lane-view.js';
import { NameBook, laneCounters, type LaneCounters } from '../control/metrics.js';
import type { ConfigIds, TetherConfig } from '../config/index.js';
import type { Edge } from './edge.js';
import type { LaneMessage, LaneObservation, LaneQuery } from './lanes.js';

/** A lane's side (in its worker): answers lane 0's questions about this lane's flows, reads its counters. */
export class LaneObserver {
  private readonly names: NameBook;
  private readonly view: FlowView;
  /** This lane's packets keep their share of its loop while a listing walks its tables (as lane 0's do). */
  private readonly share = new LoopShare(LISTING_LOOP_SHARE, LISTING_BURST_MS, () => performance.now());

  /** `edge`: this lane's Edge (in tests, a lane's pipeline and ids on their own). */
  constructor(private readonly edge: Pick<Edge, 'pipeline' | 'ids' | 'laneIndex'>, config: TetherConfig, private readonly send: (m: LaneMessage) => void) {
    this.names = new NameBook(edge.pipeline, config, edge.ids);
    this.view = { pipeline: edge.pipeline, names: this.names, now: () => performance.now() };
  }

  /** A configuration this lane applied: its names follow (LiveEdge's onApplied). */
  renamed(config: TetherConfig, ids: ConfigIds): void {
    this.names.update(config, ids);
  }

  counters(): LaneCounters {
    return laneCounters(this.edge.pipeline, this.edge.laneIndex);
  }

  /** Handles an observability message; false when `m` is not one. */
  handle(m: LaneMessage): boolean {
    if (m.kind !== 'ask') return false;
    void this.answer(m.id, m.query);
    return true;
  }

  private async answer(id: number, query: LaneQuery): Promise<void> {
    try {
      this.send({ kind: 'answer', id, value: await this.ask(query) });
    } catch (e) {
      this.send({ kind: 'answer', id, error: (e as Error).message });
    }
  }

  private async ask(query: LaneQuery): Promise<LaneWalkAnswer | FlowWithTrail | null> {
    const lane = this.edge.laneIndex;
    if (query.what === 'flow') return flowWithTrail(this.view, query.family, query.slot, lane);
    await this.share.admit();
    try {
      return await walkLaneFlows(this.view, lane, query.request, () => this.share.yield());
    } finally {
      this.share.release();
    }
  }
}

/** Lane 0's LaneHost as the control plane's view of the other lanes. */
export function laneFlowSource(host: LaneObservation): OtherLanes {
  return {
    count: host.count,
    walk: (lane, request) => host.ask<LaneWalkAnswer>(lane, { what: 'walk', request }),
    flow: (lane, family, slot) => host.ask<FlowWithTrail | null>(lane, { what: 'flow', family, slot }),
    counters: () => host.counters(),
  };
}
