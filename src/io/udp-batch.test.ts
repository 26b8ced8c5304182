// Batched UDP through the native addon, over real sockets on the loopback interface.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PacketBatch } from '../common/packet-batch.js';
import { parseIpv4, parseIpv6 } from '../common/addr.js';
import { openUdp, PeerAddrs, type UdpBatchSocket } from './udp-batch.js';

const LOOPBACK4 = parseIpv4('127.0.0.1');
const INGRESS = 7;

/** Waits until `done()` holds, giving the event loop (and so the addon's poll) turns in between. */
async function until(done: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Fills packet i of `batch` with a recognisable payload: [i, seq bytes..]. */
function fill(batch: PacketBatch, n: number, size: (i: number) => number): void {
  batch.clear();
  const scratch = new Uint8Array(batch.maxPacketSize);
  for (let i = 0; i < n; i++) {
    const len = size(i);
    for (let b = 0; b < len; b++) scratch[b] = (i * 31 + b) & 0xff;
    assert.equal(batch.push(scratch, 0, len, 0), i);
  }
}

function expectPayload(got: Uint8Array, i: number, len: number): void {
  assert.equal(got.length, len);
  for (let b = 0; b < len; b++) if (got[b] !== ((i * 31 + b) & 0xff)) assert.fail(`datagram ${i} byte ${b} differs`);
}

describe('UdpBatchSocket (recvmmsg/sendmmsg)', () => {
  const open: UdpBatchSocket[] = [];
  after(() => {
    for (const s of open) s.close();
  });

  it('moves a burst of IPv4 datagrams between two sockets with correct sources, in fewer callbacks than datagrams', async () => {
    const a = openUdp({ bind: '127.0.0.1', port: 0, family: 4 });
    const b = openUdp({ bind: '127.0.0.1', port: 0, family: 4 });
    open.push(a, b);
    assert.ok(a.localPort > 0 && b.localPort > 0 && a.localPort !== b.localPort, 'a.localPort > 0 && b.localPort > 0 && a.localPort !== b.localPort');

    const N = 150;
    const out = new PacketBatch(256);
    const dst = new PeerAddrs(256);
    fill(out, N, (i) => 1 + ((i * 37) % 300));
    for (let i = 0; i < N; i++) dst.setIpv4(i, LOOPBACK4, b.localPort);
    // The whole burst is queued in b's receive buffer before b starts reading, so the drain is batched
    // (small datagrams: 150 fit the default SO_RCVBUF of ~208 KiB counting per-skb overhead).
    assert.equal(a.sendBatch(out, dst), N);

    const inBatch = new PacketBatch(64);
    const src = new PeerAddrs(64);
    const seen: number[] = [];
    let callbacks = 0;
    b.startReading(inBatch, src, INGRESS, (batch) => {
      callbacks++;
      for (let i = 0; i < batch.count; i++) {
        assert.equal(batch.offset[i], i * batch.slotSize + batch.headroom);
        assert.equal(batch.ingress[i], INGRESS);
        assert.equal(src.addr[i * 4], LOOPBACK4);
        assert.deepEqual([src.addr[i * 4 + 1], src.addr[i * 4 + 2], src.addr[i * 4 + 3]], [0, 0, 0]);
        assert.equal(src.port[i], a.localPort);
        const k = seen.length;
        expectPayload(batch.packet(i), k, 1 + ((k * 37) % 300));
        seen.push(k);
      }
    });
    await until(() => seen.length === N, `${N} datagrams`);
    assert.ok(callbacks < N, `${callbacks} callbacks for ${N} datagrams`);
    assert.ok(callbacks >= Math.ceil(N / inBatch.capacity), 'callbacks >= Math.ceil(N / inBatch.capacity)');
    const ca = a.counters();
    const cb = b.counters();
    assert.equal(ca.packetsOut, N);
    assert.equal(cb.packetsIn, N);
    assert.equal(cb.batchesIn, callbacks);
    assert.equal(cb.bytesIn, ca.bytesOut);
  });

  it('sends by index list, drops invalid entries and truncated datagrams with counts', async () => {
    const a = openUdp({ bind: '127.0.0.1', port: 0, family: 4 });
    const b = openUdp({ bind: '127.0.0.1', port: 0, family: 4 });
    open.push(a, b);
    const out = new PacketBatch(8);
    const dst = new PeerAddrs(8);
    fill(out, 6, (i) => (i === 4 ? 1500 : 10 + i));
    for (let i = 0; i < 6; i++) dst.setIpv4(i, LOOPBACK4, b.localPort);
    dst.port[2] = 0; // no destination: invalid
    // Packets 5, 2 (invalid), 0, 4 (too big for the receiver's slots), in that order.
    assert.equal(a.sendIndices(out, dst, Uint16Array.of(5, 2, 0, 4), 4), 3);
    assert.equal(a.counters().dropsInvalid, 1);

    const small = new PacketBatch(4, 256, 64); // 192-byte packets at most
    const src = new PeerAddrs(4);
    const got: number[] = [];
    b.startReading(small, src, INGRESS, (batch) => {
      for (let i = 0; i < batch.count; i++) got.push(batch.length[i]);
    });
    await until(() => got.length === 2 && b.counters().dropsTruncated === 1, 'two datagrams and one truncation');
    assert.deepEqual(got, [15, 10]);
  });

  it('works over IPv6 (::1) with four-word source addresses', async () => {
    const a = openUdp({ bind: '::1', port: 0, family: 6 });
    const b = openUdp({ bind: '::1', port: 0, family: 6 });
    open.push(a, b);
    const one = parseIpv6('::1')!;
    const out = new PacketBatch(4);
    const dst = new PeerAddrs(4);
    fill(out, 3, (i) => 20 + i);
    for (let i = 0; i < 3; i++) {
      dst.addr.set(one, i * 4);
      dst.port[i] = b.localPort;
    }
    assert.equal(a.sendBatch(out, dst), 3);
    const inBatch = new PacketBatch(4);
    const src = new PeerAddrs(4);
    let n = 0;
    b.startReading(inBatch, src, INGRESS, (batch) => {
      for (let i = 0; i < batch.count; i++, n++) {
        assert.deepEqual(Array.from(src.addr.subarray(i * 4, i * 4 + 4)), Array.from(one));
        assert.equal(src.port[i], a.localPort);
        expectPayload(batch.packet(i), n, 20 + n);
      }
    });
    await until(() => n === 3, 'three IPv6 datagrams');
  });

  it('can be closed from inside its batch callback, and refuses use afterwards', async () => {
    const a = openUdp({ bind: '127.0.0.1', port: 0, family: 4 });
    const b = openUdp({ bind: '127.0.0.1', port: 0, family: 4 });
    open.push(a, b);
    const out = new PacketBatch(4);
    const dst = new PeerAddrs(4);
    fill(out, 4, () => 8);
    for (let i = 0; i < 4; i++) dst.setIpv4(i, LOOPBACK4, b.localPort);
    const inBatch = new PacketBatch(2); // smaller than the burst: more would be announced after close
    const src = new PeerAddrs(2);
    let callbacks = 0;
    b.startReading(inBatch, src, INGRESS, () => {
      callbacks++;
      b.close();
    });
    assert.equal(a.sendBatch(out, dst), 4);
    await until(() => callbacks === 1, 'the first batch');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(callbacks, 1);
    assert.ok(b.closed, 'b.closed');
    assert.throws(() => b.sendBatch(out, dst), /closed/);
    b.close(); // idempotent
  });

  it('survives a worker thread that is terminated while its socket is being polled', async () => {
    const addon = fileURLToPath(new URL('../../native/build/Release/tether_io.node', import.meta.url));
    const code = `
      const a = require(${JSON.stringify(addon)});
      const s = a.openUdp('127.0.0.1', 0, 4);
      s.startReading(new Uint8Array(4 * 2048), new Uint32Array(4), new Uint32Array(4), 2048, 128, 4,
        new Uint32Array(16), new Uint16Array(4), () => {});
      require('node:worker_threads').parentPort.postMessage(s.localPort);`;
    const w = new Worker(code, { eval: true });
    const port = await new Promise<number>((r) => w.once('message', r));
    assert.ok(port > 0, 'port > 0');
    // Before the fix (an async cleanup hook per poll handle) this crashed the whole process.
    await w.terminate();
  });

  it('reports bind errors by errno name', () => {
    const a = openUdp({ bind: '127.0.0.1', port: 0, family: 4 });
    open.push(a);
    assert.throws(() => openUdp({ bind: '127.0.0.1', port: a.localPort, family: 4 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'EADDRINUSE');
      assert.match(e.message, /EADDRINUSE/);
      return true;
    });
    assert.throws(() => openUdp({ bind: 'not-an-address', port: 0, family: 4 }), /bad IPv4 address/);
  });
});
