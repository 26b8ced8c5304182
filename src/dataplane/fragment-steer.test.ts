import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FRAGMENT_STEER_PROBES, FragmentSteer } from './fragment-steer.js';
import { FRAGMENT_TIMEOUT_MS } from './fragments.js';
import { DST, SRC } from '../wire/packet-info.js';

/** A datagram's identity as the oracle keys it, and its words as PacketInfo.addr lays them out (source 0..3, destination 4..7). */
interface Datagram {
  zone: number;
  protocol: number;
  family: 4 | 6;
  src: number[];
  dst: number[];
  ident: number;
}

function keyOf(d: Datagram): string {
  const words = d.family === 4 ? 1 : 4;
  return [d.zone, d.protocol, d.family, d.ident, ...d.src.slice(0, words), ...d.dst.slice(0, words)].join(',');
}

const addr = new Uint32Array(8);
function load(d: Datagram): Uint32Array {
  for (let w = 0; w < 4; w++) {
    addr[SRC + w] = d.src[w];
    addr[DST + w] = d.dst[w];
  }
  return addr;
}

function remember(t: FragmentSteer, d: Datagram, lane: number, now: number): void {
  t.remember(d.zone, d.protocol, d.family, load(d), SRC, DST, d.ident, lane, now);
}

function find(t: FragmentSteer, d: Datagram, now: number): number {
  return t.find(d.zone, d.protocol, d.family, load(d), SRC, DST, d.ident, now);
}

/** Small ranges, so that keys repeat and differ in one field at a time. */
const word = fc.integer({ min: 0, max: 3 }).map((n) => (n === 3 ? 0xffffffff : n));
const datagram: fc.Arbitrary<Datagram> = fc.record({
  zone: fc.integer({ min: 0, max: 2 }),
  protocol: fc.constantFrom(1, 6, 17, 58),
  family: fc.constantFrom(4 as const, 6 as const),
  src: fc.array(word, { minLength: 4, maxLength: 4 }),
  dst: fc.array(word, { minLength: 4, maxLength: 4 }),
  ident: fc.constantFrom(0, 1, 0xffff, 0xffffffff),
});
type Op = { kind: 'remember'; d: Datagram; lane: number } | { kind: 'find'; d: Datagram } | { kind: 'forget'; d: Datagram } | { kind: 'advance'; ms: number };
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('remember' as const), d: datagram, lane: fc.integer({ min: 0, max: 63 }) }),
  fc.record({ kind: fc.constant('find' as const), d: datagram }),
  fc.record({ kind: fc.constant('forget' as const), d: datagram }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 20_000 }) }),
);

describe('FragmentSteer', () => {
  it('remembers a datagram by zone, protocol, family, addresses and identification until its timeout', () => {
    const t = new FragmentSteer(16);
    const d: Datagram = { zone: 1, protocol: 17, family: 4, src: [0xcb00710a, 0, 0, 0], dst: [0xc6336401, 0, 0, 0], ident: 0x1234 };
    remember(t, d, 1, 1000);
    assert.equal(find(t, d, 1000), 1);
    for (const other of [{ ...d, zone: 2 }, { ...d, protocol: 6 }, { ...d, ident: 0x1235 }, { ...d, src: [1, 0, 0, 0] }, { ...d, dst: [1, 0, 0, 0] }, { ...d, family: 6 as const }]) {
      assert.equal(find(t, other, 1000), -1, JSON.stringify(other));
    }
    // IPv4 keys read one word: the others are whatever the caller's scratch holds.
    assert.equal(find(t, { ...d, src: [0xcb00710a, 7, 7, 7] }, 1000), 1);
    remember(t, d, 0, 2000);
    assert.equal(find(t, d, 2000), 0, 'a first fragment resent to another lane moves its datagram');
    t.forget(d.zone, d.protocol, d.family, load(d), SRC, DST, d.ident);
    assert.equal(find(t, d, 2000), -1, 'forgotten: its fragments stay on this lane');
    remember(t, d, 0, 2000);
    assert.equal(find(t, d, 2000 + FRAGMENT_TIMEOUT_MS - 1), 0);
    assert.equal(find(t, d, 2000 + FRAGMENT_TIMEOUT_MS), -1, 'gone at its timeout');
    assert.equal(t.live(2000 + FRAGMENT_TIMEOUT_MS), 0);
  });

  it('is bounded: the capacity is a power of two, and a full window overwrites its stalest entry', () => {
    const t = new FragmentSteer(10, 1000);
    assert.equal(t.capacity, 16);
    const ds = Array.from({ length: 100 }, (_, k): Datagram => ({ zone: 0, protocol: 17, family: 4, src: [k, 0, 0, 0], dst: [9, 0, 0, 0], ident: k }));
    ds.forEach((d, k) => remember(t, d, k % 2, k));
    assert.ok(t.live(100) <= t.capacity);
    // The newest is always found (it was just written).
    assert.equal(find(t, ds[99], 100), 1);
  });

  // The oracle: a Map from the datagram's key to (lane, deadline). The table may forget an entry (bounded), never
  // answer a wrong lane or an expired one; while no more live keys exist than a window's slots, it forgets none.
  it('agrees with a Map oracle: never a wrong or expired lane; nothing lost while live keys fit a window', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 8, max: 64 }), (ops, capacity) => {
      const timeout = 30_000;
      const t = new FragmentSteer(capacity, timeout);
      const oracle = new Map<string, { lane: number; deadline: number }>();
      let now = 1;
      for (const o of ops) {
        if (o.kind === 'advance') {
          now += o.ms;
          continue;
        }
        const k = keyOf(o.d);
        if (o.kind === 'forget') {
          t.forget(o.d.zone, o.d.protocol, o.d.family, load(o.d), SRC, DST, o.d.ident);
          oracle.delete(k);
          continue;
        }
        if (o.kind === 'remember') {
          remember(t, o.d, o.lane, now);
          oracle.set(k, { lane: o.lane, deadline: now + timeout });
          continue;
        }
        const got = find(t, o.d, now);
        const want = oracle.get(k);
        const live = want !== undefined && want.deadline > now ? want.lane : -1;
        if (got !== -1) assert.equal(got, live, `found ${got} for ${k}, oracle ${live}`);
        const liveKeys = [...oracle.values()].filter((v) => v.deadline > now).length;
        if (liveKeys <= FRAGMENT_STEER_PROBES) assert.equal(got, live, `lost ${k} with ${liveKeys} live keys`);
        assert.ok(t.live(now) <= t.capacity);
        assert.ok(t.live(now) <= liveKeys, 'no more live entries than live keys');
      }
    }), { numRuns: 300 });
  });
});
