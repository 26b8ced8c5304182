import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HandoffRing, MIN_RING_BYTES, RECORD_HEADER, RING_CONTROL_BYTES } from './handoff-ring.js';
import { NEXT_HOP_DROP } from './ids.js';
import { PacketBatch, VNET_WORDS } from './packet-batch.js';
import { startWorker, waitWhile } from '../daemon/threads.js';
import { producedByte, producedLength } from '../../test/support/ring-producer.js';

/** A packet whose bytes are a function of (seq, length), so the receiver can check every byte. */
function fill(batch: PacketBatch, seq: number, length: number, ingress: number): number {
  const i = batch.count++;
  const at = i * batch.slotSize + batch.headroom;
  for (let k = 0; k < length; k++) batch.data[at + k] = (seq * 31 + k * 7) & 0xff;
  batch.offset[i] = at;
  batch.length[i] = length;
  batch.ingress[i] = ingress;
  for (let k = 0; k < VNET_WORDS; k++) batch.vnet[i * VNET_WORDS + k] = (seq + k) & 0xffff;
  return i;
}

function check(batch: PacketBatch, i: number, seq: number, length: number, ingress: number, nextHop = NEXT_HOP_DROP): void {
  assert.equal(batch.length[i], length, `packet ${seq}: length`);
  assert.equal(batch.ingress[i], ingress, `packet ${seq}: ingress`);
  assert.equal(batch.nextHop[i], nextHop, `packet ${seq}: next hop`);
  for (let k = 0; k < VNET_WORDS; k++) assert.equal(batch.vnet[i * VNET_WORDS + k], (seq + k) & 0xffff, `packet ${seq}: vnet ${k}`);
  const at = batch.offset[i];
  for (let k = 0; k < length; k++) if (batch.data[at + k] !== ((seq * 31 + k * 7) & 0xff)) assert.fail(`packet ${seq}: byte ${k}`);
}

describe('HandoffRing', () => {
  it('lays a record out as documented (byte fixture)', () => {
    const ring = HandoffRing.create(MIN_RING_BYTES);
    const src = new PacketBatch(1);
    src.push(Uint8Array.of(0x45, 0x00, 0x00, 0x05, 0xaa), 0, 5, 3);
    src.vnet.set([1, 4, 34, 1448, 20, 16], 0);
    assert.equal(ring.push(src, 0), true);
    const raw = new Uint8Array(ring.buffer);
    // Nothing is visible before publish.
    assert.equal(ring.used, 0);
    ring.publish();
    assert.equal(ring.used, RECORD_HEADER + 8);
    const d = RING_CONTROL_BYTES;
    // Little-endian host words: length 5, ingress 3, the six vnet halves, reserved, bytes, padding to 8.
    assert.deepEqual([...raw.subarray(d, d + RECORD_HEADER + 8)], [
      5, 0, 0, 0, 3, 0, 0, 0, 1, 0, 4, 0, 34, 0, 0xa8, 0x05, 20, 0, 16, 0, 0, 0, 0, 0, 0x45, 0x00, 0x00, 0x05, 0xaa, 0, 0, 0,
    ]);
    assert.equal(ring.bell, 1);
    const dst = new PacketBatch(2);
    assert.equal(new HandoffRing(ring.buffer).pop(dst), 1);
    assert.deepEqual([...dst.packet(0)], [0x45, 0x00, 0x00, 0x05, 0xaa]);
    assert.deepEqual([...dst.vnet.subarray(0, VNET_WORDS)], [1, 4, 34, 1448, 20, 16]);
    assert.equal(ring.used, 0);
  });

  it('lays a delivery record out as documented: the ingress word\'s top bit and the next hop (byte fixture)', () => {
    const ring = HandoffRing.create(MIN_RING_BYTES);
    const src = new PacketBatch(1);
    src.push(Uint8Array.of(0x45, 0x00, 0x00, 0x05, 0xaa), 0, 5, 3);
    assert.equal(ring.pushDelivery(src, 0, 0x0102), true);
    ring.publish();
    const raw = new Uint8Array(ring.buffer);
    const d = RING_CONTROL_BYTES;
    // Length 5, ingress 3 | RECORD_DELIVERY, the vnet halves (zero), next hop 0x0102, the bytes, padding.
    assert.deepEqual([...raw.subarray(d, d + RECORD_HEADER + 8)], [
      5, 0, 0, 0, 3, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01, 0, 0, 0x45, 0x00, 0x00, 0x05, 0xaa, 0, 0, 0,
    ]);
    const dst = new PacketBatch(2);
    const consumer = new HandoffRing(ring.buffer);
    assert.equal(consumer.pop(dst), 1);
    assert.equal(consumer.delivery, true);
    assert.equal(dst.ingress[0], 3, 'the ingress without the flag');
    assert.equal(dst.nextHop[0], 0x0102);
  });

  it('pop returns runs of one kind: handoffs and deliveries are never mixed in one batch, order kept', () => {
    const ring = HandoffRing.create(MIN_RING_BYTES);
    const src = new PacketBatch(1);
    const kinds = [0, 0, 7, 7, 7, 0, 9];
    kinds.forEach((hop, seq) => {
      src.count = 0;
      fill(src, seq, 40 + seq, 2);
      assert.equal(hop === 0 ? ring.push(src, 0) : ring.pushDelivery(src, 0, hop), true);
    });
    ring.publish();
    const consumer = new HandoffRing(ring.buffer);
    const runs: Array<[boolean, number[]]> = [];
    const dst = new PacketBatch(8);
    for (let seq = 0; ; ) {
      dst.count = 0;
      const n = consumer.pop(dst);
      if (n === 0) break;
      for (let i = 0; i < n; i++, seq++) check(dst, i, seq, 40 + seq, 2, kinds[seq] === 0 ? NEXT_HOP_DROP : kinds[seq]);
      runs.push([consumer.delivery, [...dst.nextHop.subarray(0, n)]]);
    }
    // Deliveries 7, 7, 7 then 9 are two runs: a handoff stands between them.
    assert.deepEqual(runs, [[false, [NEXT_HOP_DROP, NEXT_HOP_DROP]], [true, [7, 7, 7]], [false, [NEXT_HOP_DROP]], [true, [9]]]);
  });

  it('refuses a bad capacity or buffer with a clear error', () => {
    assert.throws(() => HandoffRing.create(1000), /power of two/);
    assert.throws(() => new HandoffRing(new SharedArrayBuffer(100)), /not a ring/);
  });

  it('a record longer than the receiving slots is consumed and counted, not left to block the ring', () => {
    const ring = HandoffRing.create(MIN_RING_BYTES);
    const big = new PacketBatch(2, 4096);
    fill(big, 1, 3000, 1);
    fill(big, 2, 100, 1);
    ring.push(big, 0);
    ring.push(big, 1);
    ring.publish();
    const small = new PacketBatch(4);
    const counters = new Float64Array(2);
    assert.equal(ring.pop(small, counters, 1), 1);
    assert.equal(counters[1], 1);
    check(small, 0, 2, 100, 1);
  });

  // The oracle: an array queue. Operations: push a packet (any length up to a 64 KiB super-packet), publish, pop
  // into a batch of some capacity. Checks FIFO, every byte, that nothing unpublished is seen, and that a push
  // fails only when the ring is really near full (padding at the end wastes less than one record).
  it('agrees with a queue oracle over random push / publish / pop sequences (wrapping many times)', () => {
    const op = fc.oneof(
      // hop 0: a handoff (push); else a delivery to that next hop (pushDelivery).
      fc.record({ kind: fc.constant('push' as const), length: fc.oneof(fc.integer({ min: 0, max: 1600 }), fc.integer({ min: 1601, max: 65535 })), ingress: fc.integer({ min: 0, max: 0xffff }), hop: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xffff })) }),
      fc.record({ kind: fc.constant('publish' as const) }),
      fc.record({ kind: fc.constant('pop' as const), room: fc.integer({ min: 1, max: 8 }) }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const ring = HandoffRing.create(MIN_RING_BYTES);
      const consumer = new HandoffRing(ring.buffer);
      const src = new PacketBatch(1, 65536 + 128);
      const published: [number, number, number, number][] = [];
      const pending: [number, number, number, number][] = [];
      let outstanding = 0;
      let seq = 0;
      for (const o of ops) {
        if (o.kind === 'push') {
          src.count = 0;
          fill(src, seq, o.length, o.ingress);
          const need = RECORD_HEADER + ((o.length + 7) & ~7);
          if (o.hop === 0 ? ring.push(src, 0) : ring.pushDelivery(src, 0, o.hop)) {
            pending.push([seq, o.length, o.ingress, o.hop]);
            outstanding += need;
          } else {
            // At most one pad before the new record and one wasted at the end of the data: each smaller than a record.
            assert.ok(outstanding + need + 2 * (RECORD_HEADER + 65536) > ring.capacity, `push of ${o.length} refused with ${outstanding} bytes outstanding`);
          }
          seq++;
        } else if (o.kind === 'publish') {
          published.push(...pending.splice(0));
          ring.publish();
        } else {
          const dst = new PacketBatch(o.room, 65536 + 128);
          const n = consumer.pop(dst);
          // The run of the first published record's kind, up to the room.
          let run = 0;
          while (run < published.length && run < o.room && (published[run][3] === 0) === (published[0][3] === 0)) run++;
          assert.equal(n, run);
          if (n > 0) assert.equal(consumer.delivery, published[0][3] !== 0);
          for (let i = 0; i < n; i++) {
            const [s, length, ingress, hop] = published.shift()!;
            check(dst, i, s, length, ingress, hop === 0 ? NEXT_HOP_DROP : hop);
            outstanding -= RECORD_HEADER + ((length + 7) & ~7);
          }
        }
      }
    }), { numRuns: 150 });
  });

  it('two real threads: many flows of sequence-numbered packets arrive complete and in order per flow', async () => {
    const FLOWS = 64;
    const PER_FLOW = 400;
    const ring = HandoffRing.create(MIN_RING_BYTES);
    // The producer thread hands off FLOWS interleaved flows with the real HandoffRing (test/support/ring-producer.ts).
    const worker = startWorker(new URL('../../test/support/ring-producer.ts', import.meta.url), { workerData: { buffer: ring.buffer, flows: FLOWS, perFlow: PER_FLOW } });
    const failed = new Promise<never>((_, reject) => worker.once('error', reject));
    const next = new Int32Array(FLOWS);
    let received = 0;
    const batch = new PacketBatch(32);
    const [bellArray, bellIndex] = ring.bellWord;
    while (received < FLOWS * PER_FLOW) {
      const bell = ring.bell;
      batch.count = 0;
      const n = ring.pop(batch);
      for (let i = 0; i < n; i++) {
        const at = batch.offset[i];
        const flow = (batch.data[at] << 8) | batch.data[at + 1];
        const seq = ((batch.data[at + 2] << 24) | (batch.data[at + 3] << 16) | (batch.data[at + 4] << 8) | batch.data[at + 5]) >>> 0;
        assert.equal(batch.ingress[i], flow);
        assert.equal(seq, next[flow], `flow ${flow}: expected packet ${next[flow]}, got ${seq}`);
        assert.equal(batch.length[i], producedLength(flow, seq));
        for (let k = 6; k < batch.length[i]; k++) if (batch.data[at + k] !== producedByte(flow, seq, k)) assert.fail(`flow ${flow} packet ${seq}: byte ${k}`);
        next[flow]++;
      }
      received += n;
      // Nothing to read: sleep on the doorbell (the wakeup a lane's event loop uses), bounded so a lost wakeup shows.
      if (n === 0) await Promise.race([waitWhile(bellArray, bellIndex, bell, 10_000), failed]);
    }
    assert.deepEqual([...next], new Array<number>(FLOWS).fill(PER_FLOW));
    await worker.terminate();
  });
});
