// valgrind driver for native/src/tether_io.cc's bound views ("views bound once"): a TUN in a namespace of its own,
// writes from more batches than there are write slots (rebinding, small on-heap index arrays, a detached buffer
// written again), reads into a bound batch (rebound, detached while polling), stop, close; garbage collected in
// between. Throws on a wrong count. Needs root.
// Run: valgrind --leak-check=full --show-leak-kinds=definite,possible node --expose-gc scripts/tun-valgrind.mjs
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';

/* global structuredClone */

const a = createRequire(import.meta.url)('../native/build/Release/tether_io.node');
const NS = `wkvg-${process.pid}`;
const ip = (...args) => execFileSync('ip', args, { stdio: 'ignore' });
try { ip('netns', 'del', NS); } catch { /* not left over */ }
ip('netns', 'add', NS);
const SLOT = 2048, HEAD = 128;
try {
  const t = a.openTun(`wkvg${process.pid}`.slice(0, 15), 0);
  ip('link', 'set', t.name, 'netns', NS);
  ip('-n', NS, 'addr', 'add', '10.99.0.1/24', 'dev', t.name);
  ip('-n', NS, 'link', 'set', t.name, 'up');
  // An IPv4/UDP packet to 10.99.0.1 (the namespace's own address: delivered to no socket, dropped there).
  const packet = Uint8Array.from([0x45, 0, 0, 29, 0, 0, 0, 0, 64, 17, 0, 0, 10, 99, 0, 2, 10, 99, 0, 1, 0, 9, 0, 9, 0, 9, 0, 0, 7]);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (packet[i] << 8) | packet[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  packet[10] = ~sum >> 8 & 0xff; packet[11] = ~sum & 0xff;
  const batch = (n) => {
    const data = new Uint8Array(n * SLOT), offset = new Uint32Array(n), length = new Uint32Array(n);
    for (let k = 0; k < n; k++) { offset[k] = k * SLOT + HEAD; length[k] = packet.length; data.set(packet, offset[k]); }
    return { data, offset, length };
  };
  let written = 0;
  for (let round = 0; round < 40; round++) {
    const b = batch(1 + (round % 5));
    const idx = new Uint16Array([0]);
    const slot = round % 8;
    t.bindWrite(slot, b.data, b.offset, b.length, round % 2 ? idx : null, null);
    written += t.writeBound(slot, 0, 1);
    if (round % 10 === 9) {
      structuredClone(b.data.buffer, { transfer: [b.data.buffer] });
      written += t.writeBound(slot, 0, 1); // the addon still holds the memory
    }
    globalThis.gc?.();
  }
  if (written !== 44) throw new Error(`written ${written}, want 44`);
  // Reads: ping 10.99.0.2 (routed into the TUN) from the namespace.
  let read = 0;
  for (let round = 0; round < 3; round++) {
    const b = batch(4);
    t.startReading(b.data, b.offset, b.length, SLOT, HEAD, 4, (count, err) => { if (err === 0) read += count; });
    if (round === 2) structuredClone(b.data.buffer, { transfer: [b.data.buffer] });
    const ping = spawn('ip', ['netns', 'exec', NS, 'ping', '-c', '5', '-i', '0.05', '-W', '1', '10.99.0.2'], { stdio: 'ignore' });
    await new Promise((r) => ping.on('exit', r));
    globalThis.gc?.();
  }
  t.stopReading();
  if (read < 15) throw new Error(`read ${read} packets, want at least 15`);
  t.close();
  globalThis.gc?.();
  console.log('tun valgrind driver ok: written', written, 'read', read);
} finally {
  try { ip('netns', 'del', NS); } catch { /* gone */ }
}
