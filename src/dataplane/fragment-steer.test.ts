import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FragmentSteer } from './fragment-steer.js';
import { FRAGMENT_TIMEOUT_MS } from './fragments.js';
import { DST, SRC } from '../wire/packet-info.js';
import { loadDatagram, type Datagram } from '../../test/support/datagrams.js';

function remember(t: FragmentSteer, d: Datagram, lane: number, now: number): void {
  t.remember(d.zone, d.protocol, d.family, loadDatagram(d), SRC, DST, d.ident, lane, now);
}

function find(t: FragmentSteer, d: Datagram, now: number): number {
  return t.find(d.zone, d.protocol, d.family, loadDatagram(d), SRC, DST, d.ident, now);
}

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
    t.forget(d.zone, d.protocol, d.family, loadDatagram(d), SRC, DST, d.ident);
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
  // The table's own behaviour against a Map oracle: datagram-table.test.ts.
});
