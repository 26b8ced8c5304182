import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Drop } from '../common/drop-reasons.js';
import { FRAGMENT_TIMEOUT_MS, FragmentFollower } from './fragments.js';
import { loadDatagram, type Datagram } from '../../test/support/datagrams.js';

const remember = (f: FragmentFollower, d: Datagram, node: number, now: number, newId = -1): void =>
  f.remember(d.zone, d.protocol, loadDatagram(d), d.ident, node, now, newId);
const find = (f: FragmentFollower, d: Datagram, now: number): number => f.find(d.zone, d.protocol, loadDatagram(d), d.ident, now);

const V4: Datagram = { zone: 1, protocol: 17, family: 4, src: [0xc6336401, 0, 0, 0], dst: [0xcb00710a, 0, 0, 0], ident: 0x4242 };
const V6: Datagram = { zone: 1, protocol: 17, family: 6, src: [0xfd000001, 0, 0, 0x10], dst: [0xfd00dc00, 0, 0, 0x20], ident: 0x80000001 };

describe('FragmentFollower', () => {
  for (const d of [V4, V6]) {
    it(`IPv${d.family}: remembers the flow node and new identification of a datagram until the reassembly timeout`, () => {
      const f = new FragmentFollower({ addrWords: d.family === 4 ? 1 : 4 });
      remember(f, d, 7, 1000, 0x1111);
      assert.equal(find(f, d, 1000), 7);
      assert.equal(f.foundNewId, 0x1111);
      for (const other of [{ ...d, zone: 2 }, { ...d, protocol: 6 }, { ...d, ident: d.ident + 1 }, { ...d, src: [1, 0, 0, 0x10] }, { ...d, dst: [1, 0, 0, 0x20] }]) {
        assert.equal(find(f, other, 1000), -1, JSON.stringify(other));
      }
      // A first fragment seen again (another flow reused the id): the latest decides, kept as sent this time.
      remember(f, d, 9, 2000);
      assert.equal(find(f, d, 2000), 9);
      assert.equal(f.foundNewId, -1);
      f.forget(d.zone, d.protocol, loadDatagram(d), d.ident);
      assert.equal(find(f, d, 2000), -1, 'forgotten, with no older entry of the key behind it');
      remember(f, d, 3, 3000);
      assert.equal(find(f, d, 3000 + FRAGMENT_TIMEOUT_MS - 1), 3);
      assert.equal(find(f, d, 3000 + FRAGMENT_TIMEOUT_MS), -1);
    });
  }

  it('holds early fragments of a datagram and releases them, in arrival order, when asked for it', () => {
    const f = new FragmentFollower({ addrWords: 1, holdPackets: 4 });
    const bytes = (n: number): Uint8Array => new Uint8Array(40).fill(n);
    const other = { ...V4, ident: 1 };
    for (const [n, d] of [[1, V4], [2, other], [3, V4]] as Array<[number, Datagram]>) {
      assert.equal(f.hold(bytes(n), 0, 40, n, d.zone, d.protocol, loadDatagram(d), d.ident, 0, 1), Drop.None);
    }
    assert.equal(f.heldCount, 3);
    assert.equal(f.heldBySite(1), 3);
    const got: number[] = [];
    assert.equal(f.release(V4.zone, V4.protocol, loadDatagram(V4), V4.ident, (data, offset, length, ingress) => got.push(data[offset], length, ingress)), 2);
    assert.deepEqual(got, [1, 40, 1, 3, 40, 3]);
    assert.equal(f.heldCount, 1);
    assert.equal(f.expire(FRAGMENT_TIMEOUT_MS), 1, 'the other datagram\'s fragment times out');
    assert.equal(f.heldBySite(1), 0);
    assert.equal(f.hold(new Uint8Array(4096), 0, 4096, 1, 0, 17, loadDatagram(V4), 1, 0), Drop.FragmentOverflow, 'longer than a hold slot');
  });

  // Values per slot of its DatagramTable (datagram-table.test.ts checks the table against a Map): with no more live
  // datagrams than a window's 16 probes, the follower answers exactly what a Map of (node, new id) does.
  it('agrees with a Map of (node, new id) while its datagrams fit a window', () => {
    // 2 protocols x 2 sources x 2 destinations x 2 ids: 16 keys, never more live than a window's 16 probes.
    const dg: fc.Arbitrary<Datagram> = fc.record({
      zone: fc.constant(0),
      protocol: fc.constantFrom(6, 17),
      family: fc.constant(4 as const),
      src: fc.integer({ min: 0, max: 1 }).map((w) => [w, 0, 0, 0]),
      dst: fc.integer({ min: 0, max: 1 }).map((w) => [w, 0, 0, 0]),
      ident: fc.integer({ min: 0, max: 1 }),
    });
    const op = fc.oneof(
      fc.record({ kind: fc.constant('remember' as const), d: dg, node: fc.nat(1000), newId: fc.integer({ min: -1, max: 0xffff }) }),
      fc.record({ kind: fc.constant('find' as const), d: dg }),
      fc.record({ kind: fc.constant('forget' as const), d: dg }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 100 }), fc.integer({ min: 1, max: 64 }), (ops, capacity) => {
      const f = new FragmentFollower({ addrWords: 1, capacity: Math.max(capacity, 16) });
      const oracle = new Map<string, { node: number; newId: number }>();
      for (const o of ops) {
        const d = o.d;
        const key = `${d.protocol},${d.src[0]},${d.dst[0]},${d.ident}`;
        if (o.kind === 'remember') {
          remember(f, d, o.node, 1, o.newId);
          oracle.set(key, { node: o.node, newId: o.newId });
        } else if (o.kind === 'forget') {
          f.forget(d.zone, d.protocol, loadDatagram(d), d.ident);
          oracle.delete(key);
        } else {
          const want = oracle.get(key);
          assert.equal(find(f, d, 1), want === undefined ? -1 : want.node);
          if (want !== undefined) assert.equal(f.foundNewId, want.newId);
        }
      }
    }), { numRuns: 200 });
  });
});
