/**
 * IpIdAllocator against a slow oracle: a Map of per-bucket counters, each bumped by one per draw (what
 * "per-(source, destination, protocol) counter, hashed into a fixed array" means, written the obvious way).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IP_ID_BUCKETS, IpIdAllocator } from './ip-id.js';

const TUPLE = fc.record({
  src: fc.constantFrom(0xc6336401, 0xc6336402, 0x0a00010a),
  dst: fc.constantFrom(0xcb00710a, 0xac100014, 0x08080808, 0x01010101),
  protocol: fc.constantFrom(1, 6, 17),
});

test('every draw is its bucket\'s previous value plus one (oracle); a tuple\'s ids are distinct within 65,536 draws, whatever shares its bucket', () => {
  fc.assert(
    fc.property(fc.integer(), fc.constantFrom(1, 2, 8, 64), fc.array(TUPLE, { minLength: 1, maxLength: 400 }), (seed, buckets, draws) => {
      const ids = new IpIdAllocator({ seed, buckets });
      const last = new Map<number, number>(); // oracle: bucket -> last id drawn
      const seen = new Map<string, Set<number>>();
      for (const t of draws) {
        const b = ids.bucket4(t.src, t.dst, t.protocol);
        assert.ok(b >= 0 && b < buckets);
        assert.equal(ids.bucket4(t.src | 0, t.dst | 0, t.protocol), b, 'signed words: the same bucket (flow setup passes int32)');
        const id = ids.next4(t.src, t.dst, t.protocol);
        assert.ok(Number.isInteger(id) && id >= 0 && id <= 0xffff);
        const before = last.get(b);
        if (before !== undefined) assert.equal(id, (before + 1) & 0xffff, 'one counter per bucket, one step per draw');
        last.set(b, id);
        const key = `${t.src}/${t.dst}/${t.protocol}`;
        const mine = seen.get(key) ?? new Set<number>();
        assert.ok(!mine.has(id), `${key} got ${id} twice within ${draws.length} draws`);
        mine.add(id);
        seen.set(key, mine);
      }
    }),
    { numRuns: 300 },
  );
});

test('a counter wraps after exactly 65,536 draws; the buckets default to a power of two and start at seeded values', () => {
  const ids = new IpIdAllocator({ seed: 7, buckets: 1 });
  const first = ids.next4(1, 2, 17);
  for (let i = 1; i < 0x10000; i++) assert.notEqual(ids.next4(1 + (i % 3), 2, 17), first);
  assert.equal(ids.next4(9, 9, 6), first, 'the 65,537th draw repeats the first');

  assert.equal(new IpIdAllocator({ seed: 1 }).buckets, IP_ID_BUCKETS);
  assert.equal(new IpIdAllocator({ seed: 1, buckets: 1000 }).buckets, 1024);
  // Same seed, same numbering (reproducible tests); another seed, other starting points.
  const run = (seed: number) => {
    const a = new IpIdAllocator({ seed });
    return [a.next4(0xc6336401, 0xcb00710a, 17), a.next4(0xc6336401, 0xac100014, 17), a.next4(0x0a00010a, 0xac100014, 6)];
  };
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
});
