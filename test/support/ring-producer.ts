/**
 * A lane that only hands packets off (handoff-ring.test.ts): run as a worker thread, it pushes `flows` flows of
 * `perFlow` sequence-numbered packets, interleaved, into the ring it is given, in batches, with the real
 * HandoffRing; a full ring is retried after yielding to the event loop (the consumer drains it meanwhile).
 * Packet: [flow u16][seq u32] then bytes (flow + seq + k) & 255; ingress = flow; length 64 + (flow * 37 + seq) % 1400.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { HandoffRing } from '../../src/common/handoff-ring.js';
import { PacketBatch } from '../../src/common/packet-batch.js';

export const PRODUCER_BATCH = 32;

export function producedLength(flow: number, seq: number): number {
  return 64 + ((flow * 37 + seq) % 1400);
}

export function producedByte(flow: number, seq: number, k: number): number {
  return (flow + seq + k) & 255;
}

interface ProducerData {
  buffer: SharedArrayBuffer;
  flows: number;
  perFlow: number;
}

if (parentPort !== null && workerData !== null && (workerData as ProducerData).buffer instanceof SharedArrayBuffer) {
  const { buffer, flows, perFlow } = workerData as ProducerData;
  const port = parentPort;
  const ring = new HandoffRing(buffer);
  const batch = new PacketBatch(PRODUCER_BATCH);
  const total = flows * perFlow;
  let sent = 0;
  const run = (): void => {
    batch.count = 0;
    for (let n = 0; n < PRODUCER_BATCH && sent + n < total; n++) {
      const flow = (sent + n) % flows;
      const seq = Math.floor((sent + n) / flows);
      const i = batch.count++;
      const at = i * batch.slotSize + batch.headroom;
      const length = producedLength(flow, seq);
      const d = batch.data;
      d[at] = flow >> 8;
      d[at + 1] = flow & 255;
      d[at + 2] = seq >>> 24;
      d[at + 3] = (seq >> 16) & 255;
      d[at + 4] = (seq >> 8) & 255;
      d[at + 5] = seq & 255;
      for (let k = 6; k < length; k++) d[at + k] = producedByte(flow, seq, k);
      batch.offset[i] = at;
      batch.length[i] = length;
      batch.ingress[i] = flow;
    }
    for (let i = 0; i < batch.count && ring.push(batch, i); i++) sent++;
    ring.publish();
    if (sent < total) setImmediate(run);
    else port.postMessage('done');
  };
  run();
}
