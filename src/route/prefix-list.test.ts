import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseIpv6 } from '../wire/addr.js';
import { PrefixList } from './prefix-list.js';

const maskOf = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
const text = (a: number): string => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;

test('lookupWords (the pipeline\'s source filter) agrees with a linear oracle and with the byte lookup', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ addr: fc.integer({ min: 0, max: 0xffffffff }), len: fc.integer({ min: 0, max: 32 }), owner: fc.integer({ min: 0, max: 3 })}), { maxLength: 12 }),
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 20 }),
      (table, probes) => {
        const list = new PrefixList();
        for (const e of table) assert.ok(list.insert(`${text(e.addr)}/${e.len}`, e.owner));
        const words = new Uint32Array(8);
        const bytes = new Uint8Array(4);
        for (const probe of probes) {
          words[4] = probe;
          new DataView(bytes.buffer).setUint32(0, probe);
          for (let owner = 0; owner < 4; owner++) {
            const inside = table.some((e) => e.owner === owner && ((probe & maskOf(e.len)) >>> 0) === ((e.addr & maskOf(e.len)) >>> 0));
            assert.equal(list.lookupWords(4, words, 4, owner) === owner, inside);
            assert.equal(list.lookup(4, bytes, 0, owner), list.lookupWords(4, words, 4, owner));
          }
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('IPv6 words, owners kept apart, removeOwner', () => {
  const list = new PrefixList();
  assert.ok(list.insert('fd00:a::/64', 7));
  assert.ok(list.insert('10.0.1.0/24', 7));
  assert.ok(!list.insert('fd00:a::/129', 7));
  const inside = parseIpv6('fd00:a::10')!;
  const outside = parseIpv6('fd00:b::10')!;
  assert.equal(list.lookupWords(6, inside, 0, 7), 7);
  assert.equal(list.lookupWords(6, inside, 0, 8), -1);
  assert.equal(list.lookupWords(6, outside, 0, 7), -1);
  assert.equal(list.size, 2);
  list.removeOwner(7);
  assert.equal(list.lookupWords(6, inside, 0, 7), -1);
  assert.equal(list.size, 0);
});
