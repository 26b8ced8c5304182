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
import { CaptureHub, DRAIN_INTERVAL_MS, type CaptureLanes, type CaptureRequest, type CaptureSession } from '../control/capture.js';
import { concatBytes } from '../wire/bytes.js';
import { Writable } from 'node:stream';
import { FlowLogger } from '../control/flow-log.js';
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

  /** This lane's part of lane 0's captures: lane 0's capture id → this lane's session and what was sent of it. */
  private readonly parts = new Map<number, CapturePart>();
  private captures: CaptureHub | null = null;
  private flowLog: FlowLogger | null = null;
  private captureTimer: NodeJS.Timeout | null = null;

  /** `edge`: this lane's Edge (in tests, a lane's pipeline, ids and tap on their own). */
  constructor(
    private readonly edge: Pick<Edge, 'pipeline' | 'ids' | 'laneIndex' | 'setCaptureTap'>,
    config: TetherConfig,
    private readonly send: (m: LaneMessage) => void,
    /** The clock the lane's pipeline runs on (the edge's: performance.now()). */
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.names = new NameBook(edge.pipeline, config, edge.ids);
    this.view = { pipeline: edge.pipeline, names: this.names, now: clock };
  }

  /**
   * This lane's flow log (lane 0 has one: flowLogStart): its ended flows as lines, each flush's chunk of whole
   * lines sent to lane 0, which writes it to the one destination with one write (no line of two lanes interleaves).
   */
  startFlowLog(): void {
    if (this.flowLog !== null) return;
    let reported = 0;
    const lane = new Writable({
      write: (chunk: Buffer | string, _encoding, done) => {
        const text = chunk.toString();
        let lines = 0;
        for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lines++;
        const dropped = (this.flowLog?.linesDropped ?? reported) - reported;
        reported += dropped;
        this.send({ kind: 'flowLog', text, lines, dropped });
        done();
      },
    });
    this.flowLog = new FlowLogger({ pipeline: this.edge.pipeline, names: this.names, destination: lane, clock: this.clock });
    this.flowLog.start();
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
    if (m.kind === 'ask') void this.answer(m.id, m.query);
    else if (m.kind === 'captureStart') this.startCapture(m.id, m.request);
    else if (m.kind === 'captureStop') this.stopCapture(m.id);
    else if (m.kind === 'flowLogStart') this.startFlowLog();
    else return false;
    return true;
  }

  // --- captures: this lane taps its own packets, lane 0 writes the file ----------------------------------

  private hub(): CaptureHub {
    this.captures ??= new CaptureHub({
      pipeline: this.edge.pipeline,
      names: this.names,
      ids: () => this.edge.ids,
      attach: (tap) => this.edge.setCaptureTap(tap),
      now: this.clock,
      lane: this.edge.laneIndex,
    });
    return this.captures;
  }

  private startCapture(id: number, request: CaptureRequest): void {
    let session: CaptureSession;
    try {
      session = this.hub().start(request);
    } catch (e) {
      this.send({ kind: 'captureData', id, data: { chunk: null, packets: 0, records: 0, rateSkipped: 0, ringSkipped: 0, final: true, error: (e as Error).message } });
      return;
    }
    // The session's first chunk is its pcapng header: lane 0's file has its own (the same interfaces).
    this.parts.set(id, { session, sent: session.chunks.length, packets: 0, records: 0, rateSkipped: 0, ringSkipped: 0 });
    this.captureTimer ??= setInterval(() => this.sendCaptures(), DRAIN_INTERVAL_MS);
  }

  private stopCapture(id: number): void {
    const part = this.parts.get(id);
    if (part === undefined) return;
    this.hub().stop(part.session.id);
    this.sendPart(id, part, true);
  }

  /** Every DRAIN_INTERVAL_MS: each part's new blocks and counts to lane 0; a part that stopped on its own ends. */
  private sendCaptures(): void {
    for (const [id, part] of this.parts) {
      this.hub().get(part.session.id);
      this.sendPart(id, part, part.session.state !== 'running');
    }
  }

  private sendPart(id: number, part: CapturePart, final: boolean): void {
    const s = part.session;
    this.hub().get(s.id);
    const fresh = s.chunks.slice(part.sent);
    // Sent blocks are lane 0's now: only the header stays here (the session's byte count keeps its limit).
    s.chunks.splice(1);
    part.sent = s.chunks.length;
    const data = {
      chunk: fresh.length === 0 ? null : concatBytes(fresh),
      packets: s.packets - part.packets,
      records: s.records - part.records,
      rateSkipped: s.rateSkipped - part.rateSkipped,
      ringSkipped: s.ringSkipped - part.ringSkipped,
      final,
    };
    part.packets = s.packets;
    part.records = s.records;
    part.rateSkipped = s.rateSkipped;
    part.ringSkipped = s.ringSkipped;
    if (data.chunk !== null || final || data.rateSkipped > 0 || data.ringSkipped > 0) this.send({ kind: 'captureData', id, data });
    if (!final) return;
    this.hub().delete(s.id);
    this.parts.delete(id);
    if (this.parts.size === 0 && this.captureTimer !== null) {
      clearInterval(this.captureTimer);
      this.captureTimer = null;
    }
  }

  /** The lane stops: its captures end (lane 0 keeps what came). */
  close(): void {
    for (const [id, part] of [...this.parts]) this.sendPart(id, part, true);
    this.captures?.close();
    // Its last lines go out with the close's flush (lane 0 writes them if it still runs).
    void this.flowLog?.close();
  }

  private async answer(id: number, query: LaneQuery): Promise<void> {
    try {
      this.send({ kind: 'answer', id, value: await this.ask(query) });
    } catch (e) {
      this.send({ kind: 'answer', id, error: (e as Error).message });
    }
  }

  private async ask(query: LaneQuery): Promise<LaneWalkAnswer | FlowWithTrail | number | null> {
    const lane = this.edge.laneIndex;
    if (query.what === 'flow') return flowWithTrail(this.view, query.family, query.slot, lane);
    // The chunk goes out (send, synchronously: the Writable's write) before this answer does.
    if (query.what === 'flowLogFlush') return this.flowLog?.flush() ?? 0;
    await this.share.admit();
    try {
      return await walkLaneFlows(this.view, lane, query.request, () => this.share.yield());
    } finally {
      this.share.release();
    }
  }
}

interface CapturePart {
  session: CaptureSession;
  /** Chunks of the session already sent (the header counts as sent). */
  sent: number;
  packets: number;
  records: number;
  rateSkipped: number;
  ringSkipped: number;
}

/** Lane 0's side of captures: the hub starts and stops each lane's part, and the lanes' blocks go into its files. */
export function laneCaptures(host: LaneObservation): { lanes: CaptureLanes; attach(hub: CaptureHub): void } {
  return {
    lanes: {
      count: host.count,
      start: (id, request, lane) => host.post({ kind: 'captureStart', id, request }, lane),
      stop: (id, lane) => host.post({ kind: 'captureStop', id }, lane),
    },
    attach: (hub) => host.listen((lane, m) => {
      if (m.kind === 'captureData') hub.laneData(m.id, lane, m.data);
    }),
  };
}

/**
 * Lane 0's flow log takes the other lanes' lines (LaneObserver.startFlowLog) into its one destination. Returns the
 * shutdown's flush: each lane writes what its logger holds (up to its last flush period, 250 ms, of ended flows)
 * and lane 0 waits for every lane's answer, each bounded by the lookup deadline (LANE_ANSWER_TIMEOUT_MS), before it
 * closes the log; resolves with the lanes that did not answer (their pending lines are lost, nothing hangs).
 */
export function laneFlowLog(host: LaneObservation, log: FlowLogger): () => Promise<number[]> {
  host.listen((_lane, m) => {
    if (m.kind === 'flowLog') log.append(m.text, m.lines, m.dropped);
  });
  host.post({ kind: 'flowLogStart' });
  return async () => {
    const lanes = Array.from({ length: host.count - 1 }, (_, k) => k + 1);
    const answers = await Promise.allSettled(lanes.map((lane) => host.ask<number>(lane, { what: 'flowLogFlush' })));
    return lanes.filter((_, k) => answers[k].status === 'rejected');
  };
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
