/**
 * Lanes (docs/ARCHITECTURE.md "Lanes"): lane 0 is the Edge on the main thread; lanes 1..N-1 are worker threads
 * (lane-worker.ts), each an Edge of its own (its pipeline: flow tables and its slice of the NAT ports) reading its
 * own queue of every egress and interconnect TUN. This is lane 0's side: the handoff rings between every ordered
 * pair of lanes, the workers' start and stop, their logs, their status (sent every LANE_STATUS_INTERVAL_MS and
 * summed into lane 0's status()), and live configuration changes passed on to them in order.
 */
import type { Worker } from 'node:worker_threads';
import { HandoffRing } from '../common/handoff-ring.js';
import { LaneDirectory, directoryBuckets } from '../common/lane-directory.js';
import { DEFAULT_CAPACITY4, DEFAULT_CAPACITY6 } from '../dataplane/pipeline.js';
import type { TetherConfig } from '../config/index.js';
import type { HealthState } from '../health/index.js';
import type { EdgeStatus, LaneCounters } from '../control/metrics.js';
import { LaneUnanswered, type LaneWalkRequest } from '../control/lane-view.js';
import type { CaptureRequest, LaneCaptureData } from '../control/capture.js';
import { MAX_ONRAMP_ID } from '../common/ids.js';
import { startWorker } from './threads.js';
import type { EdgeLogger } from './transports/transport.js';

/** Data bytes of each handoff ring: 64 super-packets of 64 KiB, or ~2,700 packets of 1,500 bytes. */
export const LANE_RING_BYTES = 1 << 22;
/** How often a lane sends lane 0 its status. */
export const LANE_STATUS_INTERVAL_MS = 1000;
/**
 * How long lane 0 waits for a lane's answer to a lookup (one flow: no walk); past this the lane is reported
 * (LaneUnanswered), the API does not hang.
 */
export const LANE_ANSWER_TIMEOUT_MS = 5000;
/**
 * A walk's deadline: it yields to its lane's packets under the listings' share (LISTING_LOOP_SHARE, 3 %), so up to
 * WALK_MAX_SLOTS slots on a loaded core take seconds of wall time by design (lane 0's own walk as much).
 */
export const LANE_WALK_TIMEOUT_MS = 30_000;

/** A question lane 0 asks another lane (the API's flow listing and lookup; lane-observe.ts answers it). */
export type LaneQuery =
  | { what: 'walk'; request: LaneWalkRequest }
  | { what: 'flow'; family: 4 | 6; slot: number }
  /** Shutdown: the lane writes its flow log's pending lines now (they come before the answer: one port, in order). */
  | { what: 'flowLogFlush' };

/**
 * What a lane's Edge is told (EdgeOptions.wiring): its index, the lane count, rings[from][to] (null on the diagonal),
 * and the ownership directory every lane shares (common/lane-directory.ts).
 */
export interface LaneWiring {
  index: number;
  count: number;
  rings: Array<Array<SharedArrayBuffer | null>>;
  directory?: SharedArrayBuffer;
  /** The per-onramp packet counts each lane publishes for lane 0's health checks (LaneTraffic). */
  traffic?: SharedArrayBuffer;
}

/** Onramp ids a LaneTraffic row holds (0 is the Internet: not checked, kept so that an id is its own index). */
const TRAFFIC_PORTS = MAX_ONRAMP_ID + 1;
/** Words per onramp in a row: packets sent into it, packets received from it. */
const TRAFFIC_WORDS = 2;

/**
 * The per-onramp packet counts lane 0's health checks read for silence (daemon/health.ts, HealthEngine.traffic),
 * over every lane. Each lane k ≥ 1 publishes its pipeline's txPackets / rxPackets of its configured onramps into
 * row k of a SharedArrayBuffer every TRAFFIC_LOOK_INTERVAL_MS (lane-worker.ts); lane 0 adds the rows to its own
 * counts at each look. Why not the status post (LANE_STATUS_INTERVAL_MS, 1 s): the silence clock is
 * SILENCE_PROBE_MS (100 ms), so counts a second old would make an onramp whose replies land on lane 1 look silent
 * (a needless probe) and hide lane 1's sends into a cut tunnel (no early probe). Here a count is at most one
 * publish period plus the lane's event-loop lateness old when lane 0 looks: under the silence clock.
 * Control plane: two plain 32-bit stores per onramp a publish, nothing per packet.
 */
export class LaneTraffic {
  private readonly words: Uint32Array;

  /** A board for `count` lanes (row 0, lane 0's, stays unused: lane 0 reads its own pipeline). */
  static create(count: number): SharedArrayBuffer {
    return new SharedArrayBuffer(count * TRAFFIC_PORTS * TRAFFIC_WORDS * Uint32Array.BYTES_PER_ELEMENT);
  }

  constructor(buffer: SharedArrayBuffer, private readonly count: number) {
    this.words = new Uint32Array(buffer);
    if (this.words.length !== count * TRAFFIC_PORTS * TRAFFIC_WORDS) throw new Error(`lane traffic board: ${buffer.byteLength} bytes, not a board for ${count} lanes`);
  }

  /** Lane `lane` (≥ 1) publishes its counts of `onramps` (ids). */
  publish(lane: number, tx: Float64Array, rx: Float64Array, onramps: Iterable<number>): void {
    const words = this.words;
    const base = lane * TRAFFIC_PORTS * TRAFFIC_WORDS;
    for (const id of onramps) {
      if (id <= 0 || id >= TRAFFIC_PORTS) continue;
      // A Uint32 store keeps the count modulo 2^32 (ToUint32): enough, the reader only asks whether it changed;
      // and an aligned integer access is tear-free across threads (ECMA-262, memory model), a Float64 one is not.
      words[base + id * TRAFFIC_WORDS] = tx[id];
      words[base + id * TRAFFIC_WORDS + 1] = rx[id];
    }
  }

  /** Packets the lanes ≥ 1 sent into `onramp` (as last published; modulo 2^32 each). */
  sent(onramp: number): number {
    return this.sum(onramp, 0);
  }

  /** Packets the lanes ≥ 1 received from `onramp` (as last published; modulo 2^32 each). */
  received(onramp: number): number {
    return this.sum(onramp, 1);
  }

  private sum(onramp: number, word: number): number {
    if (onramp <= 0 || onramp >= TRAFFIC_PORTS) return 0;
    let n = 0;
    for (let lane = 1; lane < this.count; lane++) n += this.words[(lane * TRAFFIC_PORTS + onramp) * TRAFFIC_WORDS + word];
    return n;
  }
}

/** workerData of a lane's worker. */
export interface LaneWorkerData {
  tetherLane: LaneWiring;
  config: TetherConfig;
  mtu: number;
  batchSize: number;
  offload: boolean;
  hugePages: boolean;
  /** Lane 0's busy-poll budget, µs: every lane's thread spins on its own queues with it (the addon's budget is per thread). */
  busyPollUs: number;
}

/** Messages between lane 0 and a lane worker. */
export type LaneMessage =
  | { kind: 'ready' }
  | { kind: 'failed'; error: string }
  | { kind: 'log'; level: 'info' | 'warn' | 'error' | 'debug'; obj: object; msg?: string }
  | { kind: 'status'; status: EdgeStatus }
  | { kind: 'apply'; config: TetherConfig }
  /** Lane 0's health checks judged an onramp (every lane's pipeline routes and returns by it; health runs on lane 0). */
  | { kind: 'health'; onramp: number; state: HealthState }
  | { kind: 'stop' }
  // Observability (lane-observe.ts): questions and answers matched by id, counters posted with the status.
  | { kind: 'ask'; id: number; query: LaneQuery }
  | { kind: 'answer'; id: number; value?: unknown; error?: string }
  | { kind: 'counters'; counters: LaneCounters }
  | { kind: 'captureStart'; id: number; request: CaptureRequest }
  | { kind: 'captureStop'; id: number }
  | { kind: 'captureData'; id: number; data: LaneCaptureData }
  // A chunk of whole flow-log lines (the lane's FlowLogger wrote it) and the lines the lane dropped since the last.
  | { kind: 'flowLog'; text: string; lines: number; dropped: number }
  // Lane 0 has a flow log: each lane logs its own ended flows to it.
  | { kind: 'flowLogStart' };

/** Where a question goes: a lane's Worker, or a stand-in in tests. */
export interface LanePort {
  postMessage(m: LaneMessage): void;
}

/**
 * Lane 0's questions in flight: each gets an id, its answer resolves it, and a timer rejects it with LaneUnanswered
 * after `timeoutMs` (a lane whose thread is stuck or gone must not hang the API). A late answer is dropped.
 */
export class LaneRequests {
  private nextId = 1;
  private readonly pending = new Map<number, { lane: number; what: string; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  /** Deadlines, ms: a lookup's and a walk's (tests shorten them). */
  constructor(private readonly timeoutMs = LANE_ANSWER_TIMEOUT_MS, private readonly walkTimeoutMs = LANE_WALK_TIMEOUT_MS) {}

  ask<T>(lane: number, port: LanePort, query: LaneQuery): Promise<T> {
    const id = this.nextId++;
    const waitMs = query.what === 'walk' ? this.walkTimeoutMs : this.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new LaneUnanswered(lane, query.what, waitMs));
      }, waitMs);
      this.pending.set(id, { lane, what: query.what, resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        port.postMessage({ kind: 'ask', id, query });
      } catch (e) {
        this.settle(id)?.reject(new Error(`lane ${lane}: ${(e as Error).message}`));
      }
    });
  }

  /** An answer from a lane: resolves (or, with `error`, rejects) its question; unknown or late ids are ignored. */
  answered(m: { id: number; value?: unknown; error?: string }): void {
    const p = this.settle(m.id);
    if (p === undefined) return;
    if (m.error !== undefined) p.reject(new Error(`lane ${p.lane} could not answer (${p.what}): ${m.error}`));
    else p.resolve(m.value);
  }

  /** Rejects every question still waiting on `lane` (its thread ended) or on every lane (null). */
  failAll(lane: number | null): void {
    for (const [id, p] of [...this.pending]) if (lane === null || p.lane === lane) this.settle(id)?.reject(new LaneUnanswered(p.lane, p.what, 0));
  }

  get waiting(): number {
    return this.pending.size;
  }

  private settle(id: number): { lane: number; what: string; resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined {
    const p = this.pending.get(id);
    if (p === undefined) return undefined;
    clearTimeout(p.timer);
    this.pending.delete(id);
    return p;
  }
}

export interface LaneHostOptions {
  config: TetherConfig;
  count: number;
  rings: Array<Array<SharedArrayBuffer | null>>;
  directory: SharedArrayBuffer;
  /** LaneTraffic.create(count): the lanes publish their per-onramp packet counts there. */
  traffic: SharedArrayBuffer;
  mtu: number;
  batchSize: number;
  offload: boolean;
  hugePages: boolean;
  busyPollUs: number;
  log: EdgeLogger;
}

interface Lane {
  index: number;
  worker: Worker;
  ready: Promise<void>;
  status: EdgeStatus | null;
  counters: LaneCounters | null;
}

export class LaneHost implements LaneObservation {
  private lanes: Lane[] = [];
  private config: TetherConfig;
  private readonly requests = new LaneRequests();
  /** Listeners of the lanes' observability messages (captures, flow log: lane-observe.ts). */
  private readonly listeners: Array<(lane: number, m: LaneMessage) => void> = [];

  /** The rings for `count` lanes: rings[from][to], one per ordered pair (lane 0 makes them, every lane maps them). */
  static rings(count: number): Array<Array<SharedArrayBuffer | null>> {
    const out: Array<Array<SharedArrayBuffer | null>> = [];
    for (let from = 0; from < count; from++) {
      const row: Array<SharedArrayBuffer | null> = [];
      for (let to = 0; to < count; to++) row.push(from === to ? null : HandoffRing.create(LANE_RING_BYTES).buffer);
      out.push(row);
    }
    return out;
  }

  /**
   * The ownership directory for `count` lanes (lane 0 makes it, every lane maps it): room for every lane's flow
   * tables full (a flow claims one key, two when a clash port was rewritten; a NAT mapping one).
   */
  static directory(count: number, flows?: { capacity4?: number; capacity6?: number }): SharedArrayBuffer {
    const perLane = (flows?.capacity4 ?? DEFAULT_CAPACITY4) + (flows?.capacity6 ?? DEFAULT_CAPACITY6);
    return LaneDirectory.create(directoryBuckets(count * perLane)).buffer;
  }

  constructor(private readonly opts: LaneHostOptions) {
    this.config = opts.config;
  }

  /** Starts lanes 1..count-1 (after lane 0 opened the TUNs: their queues attach to the devices lane 0 made). */
  start(): void {
    const { opts } = this;
    const own = import.meta.url;
    const entry = new URL(own.endsWith('.ts') ? './lane-worker.ts' : './lane-worker.js', own);
    for (let index = 1; index < opts.count; index++) {
      const data: LaneWorkerData = {
        tetherLane: { index, count: opts.count, rings: opts.rings, directory: opts.directory, traffic: opts.traffic },
        config: this.config,
        mtu: opts.mtu,
        batchSize: opts.batchSize,
        offload: opts.offload,
        hugePages: opts.hugePages,
        busyPollUs: opts.busyPollUs,
      };
      const worker = startWorker(entry, { workerData: data });
      const lane: Lane = { index, worker, ready: Promise.resolve(), status: null, counters: null };
      lane.ready = new Promise<void>((resolve, reject) => {
        worker.on('message', (m: LaneMessage) => {
          if (m.kind === 'ready') resolve();
          else if (m.kind === 'failed') {
            opts.log.error({ lane: index, err: m.error }, 'lane failed');
            reject(new Error(`lane ${index}: ${m.error}`));
          } else if (m.kind === 'log') opts.log[m.level]({ lane: index, ...m.obj }, m.msg);
          else if (m.kind === 'status') lane.status = m.status;
          else this.observed(lane, m);
        });
        worker.once('exit', () => this.requests.failAll(index));
        worker.once('error', (e) => {
          opts.log.error({ lane: index, err: e.message }, 'lane thread failed');
          reject(e);
        });
      });
      // A lane that fails after start is logged above; nobody need await ready() for it not to be unhandled.
      lane.ready.catch(() => undefined);
      this.lanes.push(lane);
    }
  }

  /** Resolves when every lane has opened its queues; rejects with the first lane's error. */
  ready(): Promise<void> {
    return Promise.all(this.lanes.map((l) => l.ready)).then(() => undefined);
  }

  /** Stops every lane (their queues close with their threads). */
  stop(): void {
    this.requests.failAll(null);
    for (const lane of this.lanes) {
      lane.worker.postMessage({ kind: 'stop' } satisfies LaneMessage);
      void lane.worker.terminate();
    }
    this.lanes = [];
  }

  /** A configuration lane 0 applied: every lane applies it too (in order; each lane's own ids follow the same rule). */
  apply(config: TetherConfig): void {
    this.config = config;
    for (const lane of this.lanes) lane.worker.postMessage({ kind: 'apply', config } satisfies LaneMessage);
  }

  /** An onramp's health state as lane 0 judged it: every lane's pipeline applies it (in order with apply()). */
  health(onramp: number, state: HealthState): void {
    for (const lane of this.lanes) lane.worker.postMessage({ kind: 'health', onramp, state } satisfies LaneMessage);
  }

  /** The lanes' last statuses (at most LANE_STATUS_INTERVAL_MS old), lane 1 first. */
  statuses(): EdgeStatus[] {
    const out: EdgeStatus[] = [];
    for (const lane of this.lanes) if (lane.status !== null) out.push(lane.status);
    return out;
  }

  // --- observability (lane-observe.ts; docs/ARCHITECTURE.md "Lanes") -----------------------------------------

  get count(): number {
    return this.opts.count;
  }

  /** Asks lane `index` (1..count-1); rejects with LaneUnanswered when it does not answer by its deadline. */
  ask<T>(index: number, query: LaneQuery): Promise<T> {
    const lane = this.lanes.find((l) => l.index === index);
    if (lane === undefined) return Promise.reject(new LaneUnanswered(index, query.what, 0));
    return this.requests.ask<T>(index, lane.worker, query);
  }

  /** The lanes' per-onramp counters and NAT gauges as each last posted them, lane 1 first. */
  counters(): LaneCounters[] {
    const out: LaneCounters[] = [];
    for (const lane of this.lanes) if (lane.counters !== null) out.push(lane.counters);
    return out;
  }

  post(m: LaneMessage, index?: number): void {
    for (const lane of this.lanes) if (index === undefined || lane.index === index) lane.worker.postMessage(m);
  }

  listen(fn: (lane: number, m: LaneMessage) => void): void {
    this.listeners.push(fn);
  }

  private observed(lane: Lane, m: LaneMessage): void {
    if (m.kind === 'answer') this.requests.answered(m);
    else if (m.kind === 'counters') lane.counters = m.counters;
    else for (const fn of this.listeners) fn(lane.index, m);
  }
}

/** The lanes' observability (lane-observe.ts): answers, posted counters, and messages for listeners. */
export interface LaneObservation {
  /** Lanes in all, lane 0 included. */
  readonly count: number;
  ask<T>(lane: number, query: LaneQuery): Promise<T>;
  counters(): LaneCounters[];
  /** Sends `m` to lane `lane`, or to every lane other than 0. */
  post(m: LaneMessage, lane?: number): void;
  listen(fn: (lane: number, m: LaneMessage) => void): void;
}

function addInto(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** The edge counters about lanes (handoffs, rings, deliveries through lane 0, fragments steered), listed per lane too. */
const LANE_COUNTER_PREFIX = 'lane_';

/**
 * Lane 0's status with the other lanes' summed in: counters, drops and busy polling added by name, flows added, and
 * each lane's TUN queues listed under the TUN's name with `#lane` (the kernel counts per device, the addon per queue);
 * each lane's own `lane_*` counters in `laneCounters` (which lane handed what to which).
 */
export function mergeLaneStatus(own: EdgeStatus, lanes: EdgeStatus[]): EdgeStatus {
  if (lanes.length === 0) return own;
  const out: EdgeStatus = { ...own, tuns: [...own.tuns], edge: { ...own.edge }, pipelineDrops: { ...own.pipelineDrops }, flows: { ...own.flows }, icmp: { ...own.icmp } };
  out.laneCounters = [own, ...lanes].map((s) => Object.fromEntries(Object.entries(s.edge).filter(([name]) => name.startsWith(LANE_COUNTER_PREFIX))));
  lanes.forEach((s, k) => {
    for (const t of s.tuns) out.tuns.push({ ...t, name: `${t.name}#${k + 1}` });
    addInto(out.edge, s.edge);
    addInto(out.pipelineDrops, s.pipelineDrops);
    out.flows.ipv4 += s.flows.ipv4;
    out.flows.ipv6 += s.flows.ipv6;
    out.icmp.timeExceededSent += s.icmp.timeExceededSent;
    out.icmp.rateLimited += s.icmp.rateLimited;
    out.icmp.noSource += s.icmp.noSource;
    out.icmp.echoAnswered += s.icmp.echoAnswered;
    // Each lane's thread spins on its own queues (same budget): the spins, time and packets caught add up.
    const b = s.busyPoll;
    if (b !== undefined) {
      const o = out.busyPoll ?? { budgetUs: b.budgetUs, sessions: 0, spinNs: 0, packets: 0 };
      out.busyPoll = { budgetUs: o.budgetUs, sessions: o.sessions + b.sessions, spinNs: o.spinNs + b.spinNs, packets: o.packets + b.packets };
    }
  });
  return out;
}
