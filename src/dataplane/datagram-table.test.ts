import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DatagramTable } from './datagram-table.js';
import { DST, SRC } from '../wire/packet-info.js';
import { loadDatagram, type Datagram } from '../../test/support/datagrams.js';

/** The oracle's key: an IPv4 datagram's addresses are their first words only (the rest is whatever scratch holds). */
function keyOf(d: Datagram): string {
  const words = d.family === 4 ? 1 : 4;
  return [d.zone, d.protocol, d.family, d.ident, ...d.src.slice(0, words), ...d.dst.slice(0, words)].join(',');
}

const claim = (t: DatagramTable, d: Datagram, now: number): number => t.claim(d.zone, d.protocol, d.family, loadDatagram(d), SRC, DST, d.ident, now);
const find = (t: DatagramTable, d: Datagram, now: number): number => t.find(d.zone, d.protocol, d.family, loadDatagram(d), SRC, DST, d.ident, now);
const forget = (t: DatagramTable, d: Datagram): void => t.forget(d.zone, d.protocol, d.family, loadDatagram(d), SRC, DST, d.ident);

/** Small ranges, so that keys repeat and differ in one field at a time. */
const word = fc.integer({ min: 0, max: 3 }).map((n) => (n === 3 ? 0xffffffff : n));
const datagramOf = (families: Array<4 | 6>): fc.Arbitrary<Datagram> => fc.record({
  zone: fc.integer({ min: 0, max: 2 }),
  protocol: fc.constantFrom(1, 6, 17, 58),
  family: fc.constantFrom(...families),
  src: fc.array(word, { minLength: 4, maxLength: 4 }),
  dst: fc.array(word, { minLength: 4, maxLength: 4 }),
  ident: fc.constantFrom(0, 1, 0xffff, 0xffffffff),
});

/** A datagram and its neighbours, each differing from it in one field (an address in its word `w`). */
function variants(b: Datagram, w: number, families: Array<4 | 6>): Datagram[] {
  const flip = (words: number[]): number[] => words.map((x, i) => (i === (b.family === 4 ? 0 : w) ? (x ^ 1) >>> 0 : x));
  const out = [b, { ...b, zone: b.zone ^ 1 }, { ...b, protocol: b.protocol === 17 ? 6 : 17 }, { ...b, ident: (b.ident ^ 1) >>> 0 }, { ...b, src: flip(b.src) }, { ...b, dst: flip(b.dst) }];
  if (families.length === 2) out.push({ ...b, family: b.family === 4 ? 6 : 4 });
  // IPv4: the words past the first are not the key's; the same datagram with other scratch there.
  if (b.family === 4) out.push({ ...b, src: [b.src[0], w, w, w], dst: [b.dst[0], 0, w, 0] });
  return out;
}

/** Operations name datagrams of a small pool by index, so that the same keys come back and windows fill. */
type Op = { kind: 'claim'; d: number; value: number } | { kind: 'find'; d: number } | { kind: 'forget'; d: number } | { kind: 'advance'; ms: number };
const opsOf = (families: Array<4 | 6>): fc.Arbitrary<{ pool: Datagram[]; ops: Op[] }> => {
  const d = fc.nat();
  return fc.record({
    pool: fc.array(fc.tuple(datagramOf(families), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 6 }).map((bases) => bases.flatMap(([b, w]) => variants(b, w, families))),
    ops: fc.array(fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant('claim' as const), d, value: fc.integer({ min: 0, max: 1000 }) }), weight: 4 },
      { arbitrary: fc.record({ kind: fc.constant('find' as const), d }), weight: 4 },
      { arbitrary: fc.record({ kind: fc.constant('forget' as const), d }), weight: 1 },
      { arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 10_000 }) }), weight: 1 },
    ), { maxLength: 300 }),
  });
};

const TIMEOUT = 30_000;

describe('DatagramTable', () => {
  it('finds a datagram by zone, protocol, family, addresses and identification until its timeout', () => {
    const t = new DatagramTable({ capacity: 16, probes: 8, addrWords: 4, timeoutMs: TIMEOUT });
    const d: Datagram = { zone: 1, protocol: 17, family: 4, src: [0xcb00710a, 0, 0, 0], dst: [0xc6336401, 0, 0, 0], ident: 0x1234 };
    const slot = claim(t, d, 1000);
    assert.equal(find(t, d, 1000), slot);
    for (const other of [{ ...d, zone: 2 }, { ...d, protocol: 6 }, { ...d, ident: 0x1235 }, { ...d, src: [1, 0, 0, 0] }, { ...d, dst: [1, 0, 0, 0] }, { ...d, family: 6 as const }]) {
      assert.equal(find(t, other, 1000), -1, JSON.stringify(other));
    }
    assert.equal(find(t, { ...d, src: [0xcb00710a, 7, 7, 7] }, 1000), slot, 'IPv4 keys read one word');
    assert.equal(claim(t, d, 2000), slot, 'claimed again: the same slot, its deadline renewed');
    assert.equal(t.live(2000), 1);
    forget(t, d);
    assert.equal(find(t, d, 2000), -1);
    claim(t, d, 2000);
    assert.notEqual(find(t, d, 2000 + TIMEOUT - 1), -1);
    assert.equal(find(t, d, 2000 + TIMEOUT), -1, 'gone at its timeout');
    assert.equal(t.live(2000 + TIMEOUT), 0);
  });

  it('is bounded: a power-of-two capacity, and a full window gives up its stalest entry', () => {
    const t = new DatagramTable({ capacity: 5, probes: 8, addrWords: 1, timeoutMs: TIMEOUT });
    assert.equal(t.capacity, 8);
    const ds = Array.from({ length: 9 }, (_, k): Datagram => ({ zone: 0, protocol: 17, family: 4, src: [k, 0, 0, 0], dst: [9, 0, 0, 0], ident: k }));
    const slots = ds.slice(0, 8).map((d, k) => claim(t, d, 100 + k));
    assert.equal(new Set(slots).size, 8, 'eight live keys, eight slots');
    // The window is the whole table (8 probes, 8 slots): the ninth takes the slot of the stalest, ds[0].
    assert.equal(claim(t, ds[8], 200), slots[0]);
    assert.equal(find(t, ds[0], 200), -1);
    for (let k = 1; k < 9; k++) assert.notEqual(find(t, ds[k], 200), -1);
    assert.equal(t.live(200), 8);
  });

  it('refuses an IPv6 key in an IPv4-only table (a caller\'s mistake)', () => {
    const t = new DatagramTable({ capacity: 8, probes: 8, addrWords: 1, timeoutMs: TIMEOUT });
    assert.throws(() => claim(t, { zone: 0, protocol: 17, family: 6, src: [1, 2, 3, 4], dst: [5, 6, 7, 8], ident: 1 }, 0), RangeError);
  });

  // The oracle: a Map from the datagram's key to (value, deadline), the value kept per slot as the users do. The
  // table may lose an entry (it is bounded), never answer a wrong value or an expired one; a key claimed while no
  // more live keys existed than a window's slots, and while that stayed so, is never lost.
  for (const [addrWords, families, probes] of [[4, [4, 6], 8], [1, [4], 16], [4, [6], 16]] as Array<[1 | 4, Array<4 | 6>, number]>) {
    it(`agrees with a Map oracle (${addrWords}-word keys, IPv${families.join('/')}, ${probes} probes)`, () => {
      fc.assert(fc.property(opsOf(families), fc.integer({ min: 1, max: 4 * probes }), ({ pool, ops }, capacity) => {
        const t = new DatagramTable({ capacity: Math.max(capacity, probes), probes, addrWords, timeoutMs: TIMEOUT });
        const values = new Int32Array(t.capacity);
        const oracle = new Map<string, { value: number; deadline: number; safe: boolean }>();
        const liveKeys = (now: number): number => [...oracle.values()].filter((v) => v.deadline > now).length;
        let now = 1;
        for (const o of ops) {
          if (o.kind === 'advance') {
            now += o.ms;
            continue;
          }
          const dg = pool[o.d % pool.length];
          const k = keyOf(dg);
          if (o.kind === 'forget') {
            forget(t, dg);
            oracle.delete(k);
          } else if (o.kind === 'claim') {
            const slot = claim(t, dg, now);
            assert.ok(slot >= 0 && slot < t.capacity);
            values[slot] = o.value;
            oracle.set(k, { value: o.value, deadline: now + TIMEOUT, safe: true });
            // More live keys than a window holds: any of them may have been overwritten.
            if (liveKeys(now) > probes) for (const v of oracle.values()) v.safe = false;
          } else {
            const slot = find(t, dg, now);
            const want = oracle.get(k);
            const live = want !== undefined && want.deadline > now ? want.value : -1;
            if (slot !== -1) assert.equal(values[slot], live, `found ${values[slot]} for ${k}, oracle ${live}`);
            if (want !== undefined && want.safe) assert.equal(slot === -1 ? -1 : values[slot], live, `lost ${k}`);
          }
          const n = t.live(now);
          assert.ok(n <= t.capacity);
          assert.ok(n <= liveKeys(now), 'never two live entries of one key');
        }
      }), { numRuns: 300 });
    });
  }
});
