/**
 * TunOutputs with GRO (transport.ts): what reaches a TUN with offloads, call by call — super-packets from the
 * coalescer's arena and the batch's other packets in runs, each flow in its order — and the edge's counters. The TUN
 * is a recorder (the coalescer itself is tested against its oracle in dataplane/gro.test.ts; the kernel's side in
 * test/e2e/gro.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketBatch, VNET_GSO_TCPV4, VNET_GSO_TYPE, VNET_WORDS } from '../../common/packet-batch.js';
import type { TunDevice } from '../../io/tun.js';
import { buildTcp, buildUdp, type Ipv4Header, type TcpSegment } from '../../wire/build.js';
import { EDGE_COUNTER_NAMES, EdgeCounter } from './counters.js';
import { TunOutputs } from './transport.js';

interface Write {
  kind: 'arena' | 'batch';
  packets: Array<{ bytes: number; gsoType: number }>;
}

/** A TUN that records each write call: the packets' lengths and gso_type. */
function recordingTun(offloads: boolean): { tun: TunDevice; writes: Write[] } {
  const writes: Write[] = [];
  const of = (b: PacketBatch, i: number) => ({ bytes: b.length[i], gsoType: b.vnet[i * VNET_WORDS + VNET_GSO_TYPE] });
  const tun = {
    name: 'rec',
    offloads,
    writeIndices(b: PacketBatch, idx: Uint32Array, n: number): number {
      writes.push({ kind: 'batch', packets: Array.from(idx.subarray(0, n), (i) => of(b, i)) });
      return n;
    },
    writeBatch(b: PacketBatch, from: number, to: number): number {
      writes.push({ kind: 'arena', packets: Array.from({ length: to - from }, (_, k) => of(b, from + k)) });
      return to - from;
    },
  } as unknown as TunDevice;
  return { tun, writes };
}

const IP: Ipv4Header = { src: '10.0.1.10', dst: '203.0.113.10', id: 10, dontFragment: true };
const TCP: TcpSegment = { srcPort: 40000, dstPort: 5201, seq: 100, ack: 1 };
const MSS = 1000;
const seg = (k: number, size = MSS): Uint8Array =>
  buildTcp({ ...IP, id: IP.id! + k }, { ...TCP, seq: TCP.seq! + k * MSS, payload: new Uint8Array(size).fill(k) });

function deliver(outputs: TunOutputs, packets: Uint8Array[], add: ReturnType<TunOutputs['add']>): PacketBatch {
  const batch = new PacketBatch(packets.length);
  for (const p of packets) batch.push(p, 0, p.length, 1);
  outputs.reset();
  for (let i = 0; i < packets.length; i++) add.idx[add.n++] = i;
  outputs.flush(batch);
  return batch;
}

test('a flow split by its own ACK: super-packet, the ACK, super-packet, in that order; a UDP datagram between stays in its run', () => {
  const counters = new Float64Array(EDGE_COUNTER_NAMES.length);
  const outputs = new TunOutputs(16, counters);
  const { tun, writes } = recordingTun(true);
  const out = outputs.add(tun, { gro: true });
  assert.ok(out.gro !== null);
  const ack = seg(2, 0);
  const udp = buildUdp(IP, { srcPort: 53, dstPort: 53, payload: new Uint8Array(10) });
  deliver(outputs, [seg(0), seg(1), ack, udp, seg(2), seg(3), seg(4, 500)], out);
  assert.deepEqual(writes, [
    { kind: 'arena', packets: [{ bytes: 20 + 20 + 2 * MSS, gsoType: VNET_GSO_TCPV4 }] },
    { kind: 'batch', packets: [{ bytes: ack.length, gsoType: 0 }, { bytes: udp.length, gsoType: 0 }] },
    { kind: 'arena', packets: [{ bytes: 20 + 20 + 2 * MSS + 500, gsoType: VNET_GSO_TCPV4 }] },
  ]);
  assert.equal(counters[EdgeCounter.GroSegments], 5);
  assert.equal(counters[EdgeCounter.GroSuperPackets], 2);
});

test('nothing to merge, one packet, no offloads or GRO off: the batch is written as it is, in one call', () => {
  const counters = new Float64Array(EDGE_COUNTER_NAMES.length);
  const outputs = new TunOutputs(16, counters);
  const on = recordingTun(true);
  const outOn = outputs.add(on.tun, { gro: true });
  deliver(outputs, [seg(0, 0), seg(1, 0)], outOn);
  deliver(outputs, [seg(0)], outOn);
  assert.deepEqual(on.writes.map((w) => [w.kind, w.packets.length]), [['batch', 2], ['batch', 1]]);
  outputs.remove(outOn);

  for (const [offloads, gro] of [[false, true], [true, false]] as const) {
    const rec = recordingTun(offloads);
    const out = outputs.add(rec.tun, { gro });
    assert.equal(out.gro, null, 'no coalescer without offloads, or with GRO off');
    deliver(outputs, [seg(0), seg(1), seg(2)], out);
    assert.deepEqual(rec.writes.map((w) => [w.kind, w.packets.length]), [['batch', 3]]);
    outputs.remove(out);
  }
  assert.equal(counters[EdgeCounter.GroSuperPackets], 0);
});
