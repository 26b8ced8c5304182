/**
 * Bounded walks over the flow tables for GET /v1/flows (docs/API.md, "Paging with a cursor").
 *
 *   cursor (family, slot) ─ walkFlows ─ slice of ≤ sliceSlots slots: live? filter? → onMatch
 *                                     ─ between(): the route yields to the event loop (setImmediate), so the
 *                                       packet loop's batches run between slices
 *                                     ─ stops at `limit` matches, after `maxSlots` slots, or at the end
 *                           ─ next cursor: the slot after the last one looked at (null at the end)
 *
 * The API runs on the packet loop's thread: a walk of the whole table in one go (1 M slots) would hold
 * every batch back for as long as it takes. Here one request looks at no more than `maxSlots` slots, in
 * slices of `sliceSlots`, and costs in proportion to its page, not to the table.
 *
 * A cursor names a slot, and a flow stays in its slot for its whole life, so paging with cursors lists every
 * flow that is live from the first page to the last exactly once, however flows come and go meanwhile: a flow
 * created behind the cursor is not seen, one ahead of it is, and nothing is seen twice. A flow is described
 * when its slot is looked at, in the same event-loop turn.
 *
 * The per-slot test reads numbers out of the table and allocates nothing (the prefix filter compares masked
 * words; the onramp and site filters are a per-port table made once per request).
 */
import type { FlowTable } from '../flow/flow-table.js';
import type { Prefix } from '../wire/addr.js';

/** Slots looked at between two yields to the event loop. */
export const WALK_SLICE_SLOTS = 4096;
/** A listed flow (described, its item built) costs as much of a slice as this many slots looked at. */
export const WALK_MATCH_SLOTS = 64;
/** Slots one request looks at, at most: a filter that matches little returns a short page and a cursor. */
export const WALK_MAX_SLOTS = 1 << 18;
const BITS_PER_WORD = 32;
const ALL_ONES = 0xffffffff;

/** What a listed flow must be; each field off (null or -1) matches every flow. */
export interface FlowFilter {
  /** Per ingress port: 1 when flows started by it are wanted (onramp and site filters); null: every port. */
  ports: Uint8Array | null;
  zone: number;
  protocol: number;
  /** 1 established, 0 pending, -1 either. */
  established: number;
  src: Prefix | null;
  dst: Prefix | null;
}

export const NO_FILTER: Readonly<FlowFilter> = { ports: null, zone: -1, protocol: -1, established: -1, src: null, dst: null };

/** One table of the walk and the family its cursor names. */
export interface WalkTable {
  family: 4 | 6;
  table: FlowTable;
}

/** Where a walk starts or resumes: a table's family and a slot in it. */
export interface WalkPosition {
  family: 4 | 6;
  slot: number;
}

export interface WalkOptions {
  /** Matches to stop at. */
  limit: number;
  maxSlots?: number;
  sliceSlots?: number;
  /** Slice budget a match uses (default WALK_MATCH_SLOTS). */
  matchSlots?: number;
  /** Awaited between slices (the route: one setImmediate turn; tests: changes to the tables). */
  between: () => Promise<void>;
}

export interface WalkResult {
  /** Where the next page starts; null when the walk reached the end of the last table. */
  next: WalkPosition | null;
  matches: number;
  slots: number;
}

/** Is the node's source (or destination) inside p? Compares masked words: no allocation. */
export function nodeInPrefix(p: Prefix, table: FlowTable, node: number, dst: boolean): boolean {
  if ((table.addrWords === 1) !== (p.family === 4)) return false;
  for (let w = 0; w < table.addrWords; w++) {
    const bits = p.length - BITS_PER_WORD * w;
    if (bits <= 0) return true;
    const mask = bits >= BITS_PER_WORD ? ALL_ONES : (ALL_ONES << (BITS_PER_WORD - bits)) >>> 0;
    const addr = dst ? table.nodeDst(node, w) : table.nodeSrc(node, w);
    if (((addr & mask) >>> 0) !== p.words[w]) return false;
  }
  return true;
}

/** Does the live flow pass the filter? Original direction (node flow * 2). */
export function flowMatches(table: FlowTable, flow: number, f: FlowFilter): boolean {
  if (f.ports !== null && f.ports[table.ingressPort(flow)] !== 1) return false;
  const node = flow * 2;
  if (f.zone >= 0 && table.nodeZone(node) !== f.zone) return false;
  if (f.protocol >= 0 && table.protocol(flow) !== f.protocol) return false;
  if (f.established >= 0 && table.isEstablished(flow) !== (f.established === 1)) return false;
  if (f.src !== null && !nodeInPrefix(f.src, table, node, false)) return false;
  if (f.dst !== null && !nodeInPrefix(f.dst, table, node, true)) return false;
  return true;
}

/**
 * Walks the tables from `start` (null: the first slot of the first table), calling onMatch for each live flow
 * that passes the filter, until `limit` matches, `maxSlots` slots or the end. Tables not in `tables` are
 * skipped; a start in a table before the first listed one begins at that one's slot 0.
 */
export async function walkFlows(
  tables: readonly WalkTable[],
  start: WalkPosition | null,
  filter: FlowFilter,
  opts: WalkOptions,
  onMatch: (table: FlowTable, flow: number, family: 4 | 6) => void,
): Promise<WalkResult> {
  const maxSlots = opts.maxSlots ?? WALK_MAX_SLOTS;
  const sliceSlots = opts.sliceSlots ?? WALK_SLICE_SLOTS;
  const matchSlots = opts.matchSlots ?? WALK_MATCH_SLOTS;
  let t = 0;
  let slot = 0;
  if (start !== null) {
    while (t < tables.length && tables[t].family < start.family) t++;
    if (t < tables.length && tables[t].family === start.family) slot = start.slot;
  }
  let matches = 0;
  let slots = 0;
  let sliceLeft = sliceSlots;
  while (t < tables.length) {
    const { table, family } = tables[t];
    // The table may be read again after a yield: its capacity is fixed, so `slot` stays meaningful.
    while (slot < table.capacity) {
      if (matches >= opts.limit || slots >= maxSlots) return { next: { family, slot }, matches, slots };
      if (sliceLeft <= 0) {
        await opts.between();
        sliceLeft = sliceSlots;
      }
      const flow = slot++;
      slots++;
      sliceLeft--;
      if (table.isLive(flow) && flowMatches(table, flow, filter)) {
        matches++;
        sliceLeft -= matchSlots;
        onMatch(table, flow, family);
      }
    }
    t++;
    slot = 0;
  }
  return { next: null, matches, slots };
}

/**
 * The API's share of the event loop. Yielding between slices is not enough when packets keep the core busy:
 * each turn would run one packet batch and one slice, and the listing would take half the CPU. So listings
 * draw on a budget that fills at `share` ms per ms of (monotonic) time, up to `burstMs`; each slice spends what
 * it ran for. With budget left the walk goes on in the next turn (setImmediate); without, it waits until the
 * budget is back (setTimeout). Packets therefore keep at least 1 - share of the loop while someone lists, and
 * a listing on an idle edge pays at most the wait.
 *
 * What a listing costs the loop is more than its slices: the request's own handling, the response's write and
 * the garbage collection of its page. So a request is admitted (admit) only with budget in hand and one at a
 * time — a queue of clients cannot each take a first slice on credit —, its last slice runs until its response
 * is written (release), and the collector's pauses while a listing runs, or shortly after, are charged too
 * (chargeExtra: the route reports them from a `gc` PerformanceObserver).
 */
export class LoopShare {
  private budget: number;
  private at: number;
  /** When the caller's current slice started (the last yield's return). */
  private sliceStart = -1;
  /** Settled when the last admitted listing releases: the next one waits for it. */
  private turn: Promise<void> = Promise.resolve();
  /** The admitted listings' settlers, oldest first (the one running is the oldest). */
  private readonly turns: Array<() => void> = [];
  private active = 0;

  constructor(
    private readonly share: number,
    private readonly burstMs: number,
    private readonly clock: () => number,
  ) {
    this.budget = burstMs;
    this.at = clock();
  }

  /** Marks the start of a slice (a request's first one; later ones start when yield() returns). */
  begin(): void {
    this.sliceStart = this.clock();
  }

  /**
   * Waits for this request's turn (listings run one at a time, in arrival order) and for the budget to be
   * back above zero, then begins its first slice. Every admit() is followed by one release().
   */
  async admit(): Promise<void> {
    const before = this.turn;
    this.turn = new Promise<void>((resolve) => this.turns.push(resolve));
    await before;
    this.refill();
    if (this.budget < 0) await new Promise<void>((resolve) => setTimeout(resolve, Math.ceil(-this.budget / this.share)));
    this.active++;
    this.begin();
  }

  /** Charges the request's last slice (call it after the response is written) and lets the next one in. */
  release(): void {
    this.charge();
    this.active--;
    this.turns.shift()?.();
  }

  /** Is a listing admitted and not yet released? */
  get listing(): boolean {
    return this.active > 0;
  }

  /** Charges work the listings caused outside their slices (the collector's pauses), in ms. */
  chargeExtra(ms: number): void {
    this.budget -= ms;
  }

  /** Charges the slice that ran since begin() or the last yield, then gives the loop back for as long as due. */
  async yield(): Promise<void> {
    this.charge();
    const waitMs = this.budget < 0 ? -this.budget / this.share : 0;
    await new Promise<void>((resolve) => (waitMs > 0 ? setTimeout(resolve, Math.ceil(waitMs)) : setImmediate(resolve)));
    this.sliceStart = this.clock();
  }

  /** Charges the slice that ran since begin() or the last yield (a request's end). */
  charge(): void {
    this.refill();
    if (this.sliceStart >= 0) this.budget -= this.clock() - this.sliceStart;
    this.sliceStart = -1;
  }

  private refill(): void {
    const now = this.clock();
    this.budget = Math.min(this.burstMs, this.budget + (now - this.at) * this.share);
    this.at = now;
  }
}

/**
 * Lanes (docs/ARCHITECTURE.md "Lanes"): each lane has flow tables of its own, so a flow's number in the API is its
 * slot with its lane above it: lane × LANE_FLOW_STRIDE + slot. The stride is the largest flow table
 * (flow-table.ts MAX_CAPACITY, config MAX_FLOW_CAPACITY), so lane 0's numbers are its slots (ids without lanes are
 * unchanged) and a number names one slot of one lane for the flow's whole life. 64 lanes × 2^29 < 2^53: exact.
 */
export const LANE_FLOW_STRIDE = 2 ** 29;

/** The API's flow number of `slot` in `lane`'s table. */
export function laneFlowNumber(lane: number, slot: number): number {
  return lane * LANE_FLOW_STRIDE + slot;
}

/** The lane and slot an API flow number names. */
export function laneOfFlowNumber(n: number): { lane: number; slot: number } {
  const lane = Math.floor(n / LANE_FLOW_STRIDE);
  return { lane, slot: n - lane * LANE_FLOW_STRIDE };
}

/** FAMILY:NUMBER, the number a lane's slot as laneFlowNumber makes it (up to 64 × 2^29: 11 digits). */
const CURSOR_RE = /^([46]):([0-9]{1,12})$/;

/** The opaque text of a position (base64url; clients pass it back unread). */
export function encodeCursor(p: WalkPosition): string {
  return Buffer.from(`${p.family}:${p.slot}`).toString('base64url');
}

/** A position from a cursor's text, or null when it is not one encodeCursor made. */
export function decodeCursor(text: string): WalkPosition | null {
  const m = CURSOR_RE.exec(Buffer.from(text, 'base64url').toString('latin1'));
  if (m === null) return null;
  return { family: m[1] === '4' ? 4 : 6, slot: Number(m[2]) };
}
