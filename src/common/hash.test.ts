import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { modU32 } from './hash.js';

// The oracle is the float64 modulo modU32 replaces: the same number for every 32-bit word, signed or not.
test('modU32(x, n) is (x >>> 0) % n for every 32-bit x and divisor, both sides of the int32 split', () => {
  const word = fc.oneof(fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.integer({ min: 0, max: 0xffffffff }));
  const divisor = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 1 << 15 }), fc.integer({ min: 1, max: 0x7fffffff }));
  fc.assert(
    fc.property(word, divisor, (x, n) => {
      assert.equal(modU32(x, n), (x >>> 0) % n);
    }),
    { numRuns: 5000 },
  );
  for (const x of [0, 1, -1, 0x7fffffff, -0x80000000, 0xffffffff, 0x80000000, 0xffff, 0x10000]) {
    for (const n of [1, 2, 3, 2047, 32767, 32768, 32769, 0x7fffffff]) assert.equal(modU32(x, n), (x >>> 0) % n, `${x} % ${n}`);
  }
});
