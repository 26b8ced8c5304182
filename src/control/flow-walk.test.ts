import { test } from 'node:test';
import { performance } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FlowKey, FlowTable } from '../flow/flow-table.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { maskWords, type Prefix } from '../wire/addr.js';
import { LoopShare, NO_FILTER, decodeCursor, encodeCursor, flowMatches, walkFlows, type FlowFilter, type WalkPosition, type WalkTable } from './flow-walk.js';

const PORTS = 4;
const ADDR_WORDS_MAX = 4;

/** The slow oracle's prefix test: copy the address, mask it, compare (what the route did before). */
function slowInPrefix(p: Prefix, table: FlowTable, node: number, dst: boolean): boolean {
  if ((table.addrWords === 1) !== (p.family === 4)) return false;
  const words = new Uint32Array(ADDR_WORDS_MAX);
  for (let w = 0; w < table.addrWords; w++) words[w] = dst ? table.nodeDst(node, w) : table.nodeSrc(node, w);
  maskWords(words, p.length, ADDR_WORDS_MAX);
  return words.every((w, i) => w === p.words[i]);
}

function slowMatches(table: FlowTable, flow: number, f: FlowFilter): boolean {
  const node = flow * 2;
  return (f.ports === null || f.ports[table.ingressPort(flow)] === 1)
    && (f.zone < 0 || table.nodeZone(node) === f.zone)
    && (f.protocol < 0 || table.protocol(flow) === f.protocol)
    && (f.src === null || slowInPrefix(f.src, table, node, false))
    && (f.dst === null || slowInPrefix(f.dst, table, node, true));
}

/** Two tables (IPv4, IPv6) and the flows in them, each creation an instance with its own number. */
class Tables {
  readonly list: WalkTable[];
  /** Per family: slot → live instance number (0: free). */
  readonly instance = new Map<number, Int32Array>();
  /** Instances that ended (deleted, or evicted by a creation in a full table). */
  readonly ended = new Set<number>();
  private serial = 0;
  private readonly orig = new FlowKey();
  private readonly reply = new FlowKey();
  private readonly addr = new Uint32Array(2 * ADDR_WORDS_MAX);

  constructor(cap4: number, cap6: number) {
    const onRemove = (family: number) => (flow: number): void => {
      const slots = this.instance.get(family)!;
      this.ended.add(slots[flow]);
      slots[flow] = 0;
    };
    this.list = [
      { family: 4, table: new FlowTable({ capacity: cap4, addrWords: 1, hashSeed: 1, maxPorts: PORTS, onRemove: onRemove(4) }) },
      { family: 6, table: new FlowTable({ capacity: cap6, addrWords: 4, hashSeed: 2, maxPorts: PORTS, onRemove: onRemove(6) }) },
    ];
    this.instance.set(4, new Int32Array(cap4));
    this.instance.set(6, new Int32Array(cap6));
  }

  /** A flow from a 10.0.s.0/24-like source (the top byte of every word picked from a small set), to port 53. */
  create(which: number, r: number): void {
    const { family, table } = this.list[which];
    const n = ++this.serial;
    const protocol = r & 1 ? IPPROTO_UDP : IPPROTO_TCP;
    const zone = (r >>> 1) & 1;
    for (let w = 0; w < 2 * ADDR_WORDS_MAX; w++) this.addr[w] = w < table.addrWords || (w >= ADDR_WORDS_MAX && w < ADDR_WORDS_MAX + table.addrWords) ? (((r >>> (2 + (w & 3))) & 3) << 24 | 0x0a000000 | n) >>> 0 : 0;
    this.orig.setWords(zone, protocol, this.addr, 1024 + (n & 0x7fff), 53);
    this.reply.reverseOf(this.orig);
    const flow = table.create(this.orig, this.reply, (r >>> 8) % PORTS, 0);
    if (flow >= 0) this.instance.get(family)![flow] = n;
  }

  delete(which: number, pick: number): void {
    const { family, table } = this.list[which];
    const slots = this.instance.get(family)!;
    const flow = pick % slots.length;
    if (slots[flow] !== 0) table.delete(flow);
  }

  /** Instance numbers of the live flows that pass the filter, by the slow oracle. */
  live(filter: FlowFilter): Set<number> {
    const out = new Set<number>();
    for (const { family, table } of this.list) {
      const slots = this.instance.get(family)!;
      for (let f = 0; f < table.capacity; f++) if (table.isLive(f) && slowMatches(table, f, filter)) out.add(slots[f]);
    }
    return out;
  }
}

const prefixArb = (family: 4 | 6): fc.Arbitrary<Prefix> =>
  fc.record({ top: fc.integer({ min: 0, max: 3 }), length: fc.integer({ min: 0, max: family === 4 ? 32 : 128 }) }).map(({ top, length }) => {
    const words = new Uint32Array(ADDR_WORDS_MAX);
    for (let w = 0; w < (family === 4 ? 1 : ADDR_WORDS_MAX); w++) words[w] = (0x0a000000 | (top << 24)) >>> 0;
    maskWords(words, length, ADDR_WORDS_MAX);
    return { family, words, length };
  });

const filterArb: fc.Arbitrary<FlowFilter> = fc.record({
  ports: fc.option(fc.uint8Array({ minLength: PORTS, maxLength: PORTS, min: 0, max: 1 }), { nil: null }),
  zone: fc.integer({ min: -1, max: 1 }),
  protocol: fc.constantFrom(-1, IPPROTO_TCP, IPPROTO_UDP),
  established: fc.constant(-1),
  src: fc.option(fc.oneof(prefixArb(4), prefixArb(6)), { nil: null }),
  dst: fc.option(fc.oneof(prefixArb(4), prefixArb(6)), { nil: null }),
});

test('filters: the allocation-free test agrees with the slow oracle on every live flow', () => {
  fc.assert(fc.property(fc.array(fc.nat(), { maxLength: 120 }), filterArb, (ops, filter) => {
    const t = new Tables(64, 64);
    for (const r of ops) t.create(r & 1, r >>> 1);
    for (const { table } of t.list) {
      for (let f = 0; f < table.capacity; f++) if (table.isLive(f)) assert.equal(flowMatches(table, f, filter), slowMatches(table, f, filter));
    }
  }), { numRuns: 300 });
});

test('paging with cursors lists every flow live throughout exactly once, while flows come and go between slices and pages', async () => {
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 80 }),
    fc.array(fc.nat(), { maxLength: 200 }),
    filterArb,
    fc.record({ limit: fc.integer({ min: 1, max: 12 }), sliceSlots: fc.integer({ min: 1, max: 17 }), maxSlots: fc.integer({ min: 1, max: 60 }) }),
    fc.array(fc.nat(), { minLength: 1, maxLength: 400 }),
    async (cap4, cap6, initial, filter, walk, churn) => {
      const t = new Tables(cap4, cap6);
      for (const r of initial) t.create(r & 1, r >>> 1);
      const before = t.live(filter);
      t.ended.clear();
      let c = 0;
      // Between slices and pages: delete one flow and create one, somewhere in either table.
      const change = async (): Promise<void> => {
        const r = churn[c++ % churn.length];
        t.delete(r & 1, r >>> 2);
        if (r & 2) t.create((r >>> 1) & 1, r >>> 3);
      };
      const listed: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const start: WalkPosition | null = cursor === null ? null : decodeCursor(cursor);
        const r = await walkFlows(t.list, start, filter, { limit: walk.limit, sliceSlots: walk.sliceSlots, maxSlots: walk.maxSlots, between: change }, (table, flow, family) => {
          assert.ok(slowMatches(table, flow, filter), 'only flows that pass the filter');
          listed.push(t.instance.get(family)![flow]);
        });
        assert.ok(r.matches <= walk.limit && r.slots <= walk.maxSlots, 'a page does bounded work');
        cursor = r.next === null ? null : encodeCursor(r.next);
        await change();
        assert.ok(++pages <= cap4 + cap6 + 1, 'every page moves on');
      } while (cursor !== null);
      assert.equal(new Set(listed).size, listed.length, 'no flow is listed twice');
      for (const n of before) if (!t.ended.has(n)) assert.ok(listed.includes(n), `flow ${n}, live throughout, is listed`);
    },
  ), { numRuns: 200, examples: [[1, 1, [472632593], { ports: null, zone: 0, protocol: -1, established: -1, src: null, dst: null }, { limit: 1, sliceSlots: 1, maxSlots: 1 }, [1126586058, 0]]] });
});

test('a family filter walks one table; a cursor from the other family starts at its beginning', async () => {
  const t = new Tables(8, 8);
  for (let i = 0; i < 16; i++) t.create(i & 1, i << 1);
  const only6 = [t.list[1]];
  const seen: number[] = [];
  const r = await walkFlows(only6, { family: 4, slot: 5 }, NO_FILTER, { limit: 100, between: async () => {} }, (_t, flow) => seen.push(flow));
  assert.equal(r.next, null);
  assert.deepEqual(seen.length, t.list[1].table.size);
});

test('cursors: opaque text that round-trips; anything else is refused', () => {
  for (const p of [{ family: 4, slot: 0 }, { family: 6, slot: 1_048_575 }] as WalkPosition[]) assert.deepEqual(decodeCursor(encodeCursor(p)), p);
  for (const bad of ['', 'xyz', Buffer.from('5:1').toString('base64url'), Buffer.from('4:-1').toString('base64url'), Buffer.from('4:1:2').toString('base64url')]) {
    assert.equal(decodeCursor(bad), null, bad);
  }
});

test('LoopShare: within its budget a listing goes on in the next turn; past it, it waits until the budget refilled', async () => {
  let now = 0;
  const share = new LoopShare(0.5, 1, () => now);
  share.begin();
  now += 0.5; // a slice within the 1 ms burst
  let turned = false;
  setImmediate(() => (turned = true));
  await share.yield();
  assert.equal(turned, true, 'the next turn, after what was waiting');
  // A 10.5 ms slice: 1 ms of budget minus 0.5 spent, refilled by 0.5 × 10.5 up to the burst, leaves -9.5 ms,
  // which takes 19 ms at half the loop to refill.
  now += 10.5;
  const t0 = performance.now();
  await share.yield();
  assert.ok(performance.now() - t0 >= 18, `waited ${performance.now() - t0} ms`);
});

test('LoopShare: listings are admitted one at a time, in arrival order, and only with budget in hand', async () => {
  let now = 0;
  const share = new LoopShare(0.5, 1, () => now);
  const order: string[] = [];
  const first = share.admit().then(() => order.push('first in'));
  const second = share.admit().then(() => order.push('second in'));
  await first;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['first in'], 'the second waits while the first runs');
  assert.equal(share.listing, true);
  now += 3; // the first's slice, written response included: the 1 ms burst (full) - 3 = -2 ms
  const t0 = performance.now();
  share.release();
  await second;
  assert.deepEqual(order, ['first in', 'second in']);
  assert.ok(performance.now() - t0 >= 3.5, `the second waited for the budget (2 ms at half the loop = 4 ms): ${performance.now() - t0} ms`);
  share.chargeExtra(10); // a collector pause during the listing
  share.release();
  assert.equal(share.listing, false);
  const t1 = performance.now();
  await share.admit();
  assert.ok(performance.now() - t1 >= 18, `the collector's 10 ms are paid before the next listing: waited ${performance.now() - t1} ms`);
  share.release();
});
