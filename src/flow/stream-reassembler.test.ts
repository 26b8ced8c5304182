import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { REASSEMBLY_OK, REASSEMBLY_OUT_OF_WINDOW, StreamReassembler, type ByteSink } from './stream-reassembler.js';

class Collect implements ByteSink {
  readonly parts: number[] = [];
  feed(chunk: Uint8Array, offset: number, length: number): void {
    for (let i = 0; i < length; i++) this.parts.push(chunk[offset + i]);
  }
}

interface Seg { start: number; end: number }

/**
 * Offers segments (stream offsets relative to the ISN + 1) in the given order; a segment answered
 * OUT_OF_WINDOW is offered again at the end of the queue, as its sender would retransmit it.
 */
function run(stream: Uint8Array, isn: number, segs: Seg[], window: number, limit: number, syn: boolean): { got: number[]; reorder: number } {
  const r = new StreamReassembler(window, limit);
  r.reset(limit);
  if (syn) r.syn(isn);
  const sink = new Collect();
  const queue = [...segs];
  let reorder = 0;
  for (let guard = 0; queue.length > 0 && guard < 100_000; guard++) {
    const s = queue.shift()!;
    const seq = (isn + 1 + s.start) % 0x100000000;
    if (r.offer(seq, stream, s.start, s.end - s.start, false, sink) === REASSEMBLY_OUT_OF_WINDOW) {
      reorder++;
      queue.push(s);
    }
  }
  return { got: sink.parts, reorder };
}

/** Segments covering [0, n) (each byte at least once), overlapping and duplicated at random. */
const segmentsOf = (n: number): fc.Arbitrary<Seg[]> =>
  fc.tuple(
    fc.array(fc.integer({ min: 1, max: Math.max(1, n) }), { minLength: 1, maxLength: 40 }),
    fc.array(fc.tuple(fc.nat({ max: n }), fc.integer({ min: 1, max: 300 })), { maxLength: 10 }),
  ).map(([cuts, extra]) => {
    const bounds = [...new Set([0, n, ...cuts.filter((c) => c < n)])].sort((a, b) => a - b);
    const segs: Seg[] = [];
    for (let i = 0; i + 1 < bounds.length; i++) segs.push({ start: bounds[i], end: bounds[i + 1] });
    for (const [s, len] of extra) segs.push({ start: s, end: Math.min(n, s + len) });
    return segs.filter((s) => s.end > s.start);
  });

test('oracle: segments in any order, overlapping, duplicated, retransmitted when out of window → exactly the stream\'s first limit bytes, once, in order', () => {
  fc.assert(fc.property(
    fc.uint8Array({ minLength: 1, maxLength: 3000 }).chain((stream) =>
      fc.tuple(fc.constant(stream), segmentsOf(stream.length).chain((segs) => fc.shuffledSubarray(segs, { minLength: segs.length, maxLength: segs.length })))),
    fc.nat({ max: 0xffffffff }), fc.constantFrom(1, 16, 256, 4096), fc.integer({ min: 1, max: 4000 }), fc.boolean(),
    ([stream, segs], isn, window, limit, syn) => {
      // Without the SYN the stream starts at the first data segment offered: put one at offset 0 first.
      const order = syn ? segs : [...segs.filter((s) => s.start === 0).slice(0, 1), ...segs];
      const { got } = run(stream, isn, order, window, limit, syn);
      assert.deepEqual(got, [...stream.subarray(0, Math.min(limit, stream.length))]);
    }), { numRuns: 300 });
});

test('retransmissions of scanned bytes are not passed again; a held byte keeps its first value', () => {
  const r = new StreamReassembler(16, 100);
  r.reset(100);
  r.syn(999);
  const sink = new Collect();
  const b = new TextEncoder().encode('abcdefgh');
  assert.equal(r.offer(1000, b, 0, 4, false, sink), REASSEMBLY_OK);
  assert.equal(r.offer(1000, b, 0, 4, false, sink), REASSEMBLY_OK);
  assert.equal(r.offer(1002, b, 2, 2, false, sink), REASSEMBLY_OK);
  assert.equal(String.fromCharCode(...sink.parts), 'abcd');
  // Held: offsets 6..7 ('gh'), then a different copy of them arrives: the first is kept.
  r.offer(1006, b, 6, 2, false, sink);
  r.offer(1006, new TextEncoder().encode('XY'), 0, 2, false, sink);
  r.offer(1004, b, 4, 2, false, sink);
  assert.equal(String.fromCharCode(...sink.parts), 'abcdefgh');
  // Past the window (16 bytes from offset 8): refused, nothing kept.
  assert.equal(r.offer(1020, b, 0, 8, false, sink), REASSEMBLY_OUT_OF_WINDOW);
  assert.equal(r.next, 8);
});

test('the limit: nothing past it is passed or held; FIN ends the stream; sequence numbers wrap', () => {
  const r = new StreamReassembler(8, 5);
  r.reset(5);
  r.syn(0xfffffffd); // stream starts at 0xfffffffe: its bytes wrap through 0
  const sink = new Collect();
  const b = Uint8Array.of(1, 2, 3, 4, 5, 6, 7);
  r.offer(0xfffffffe, b, 0, 7, false, sink);
  assert.deepEqual(sink.parts, [1, 2, 3, 4, 5]);
  assert.equal(r.done, true);
  const f = new StreamReassembler(8, 100);
  f.reset(100);
  f.syn(10);
  f.offer(11, b, 0, 3, true, sink);
  assert.equal(f.done, true, 'FIN reached');
  assert.throws(() => new StreamReassembler(12, 10), /power of two/);
});
