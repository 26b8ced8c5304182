// valgrind driver for native/src/tether_io.cc's bound views ("views bound once"): a TUN in a namespace of its own,
// writes from more batches than there are write slots (rebinding, small on-heap index arrays, a detached buffer
// written again), reads into a bound batch (rebound, detached while polling), stop, close; garbage collected in
// between; then the flow cache (install, hits, fold, remove, flush, a handle closed under an entry). Throws on a wrong
// count. Needs root.
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
  // The flow cache (native/src/flow_cache.h): pings routed into tun A, the first seen by JS installs its rewrite (TTL - 1,
  // destination 10.98.0.1, tun B's own address), the rest forwarded by the addon into tun B; fold, remove, flush, and
  // tun A closed with an entry naming it; the cache off.
  const rx = new Float64Array(4), rxb = new Float64Array(4), tx = new Float64Array(4), txb = new Float64Array(4);
  a.flowCacheEnable(true, rx, rxb, tx, txb);
  const ta = a.openTun(`wkva${process.pid}`.slice(0, 15), 0);
  const tb = a.openTun(`wkvb${process.pid}`.slice(0, 15), 2); // with a virtio-net header
  for (const [t2, addr] of [[ta, '10.97.0.1/24'], [tb, '10.98.0.1/24']]) {
    ip('link', 'set', t2.name, 'netns', NS);
    ip('-n', NS, 'addr', 'add', addr, 'dev', t2.name);
    ip('-n', NS, 'link', 'set', t2.name, 'up');
  }
  const fb = batch(4);
  const vnet = new Uint16Array(4 * 6);
  let slot = -1, js = 0, learned = null;
  ta.startReading(fb.data, fb.offset, fb.length, SLOT, HEAD, 4, (count, err) => {
    if (err !== 0) return;
    js += count;
    for (let k = 0; k < count && slot < 0; k++) {
      const o = fb.offset[k];
      const before = fb.data.slice(o, o + 28), after = before.slice();
      after[8] -= 1;
      after.set([10, 98, 0, 1], 16);
      after[10] = after[11] = 0;
      let s2 = 0;
      for (let i = 0; i < 20; i += 2) s2 += (after[i] << 8) | after[i + 1];
      while (s2 > 0xffff) s2 = (s2 & 0xffff) + (s2 >>> 16);
      after[10] = ~s2 >> 8 & 0xff; after[11] = ~s2 & 0xff;
      slot = a.flowCacheInstall(ta, tb, before, 0, after, 0, 1, 2, 6, false);
      learned = [before, after];
    }
  }, vnet);
  const ping = spawn('ip', ['netns', 'exec', NS, 'ping', '-c', '8', '-i', '0.05', '-W', '1', '10.97.0.2'], { stdio: 'ignore' });
  await new Promise((r) => ping.on('exit', r));
  const fold = new Float64Array(3 * 4096);
  const folded = a.flowCacheFold(fold);
  const st = a.flowCacheStats();
  if (slot < 0 || st.hits < 1 || folded !== 1 || fold[0] !== 6 || rx[1] !== st.hits || tx[2] !== st.hits) throw new Error(`flow cache: slot ${slot}, ${JSON.stringify(st)}, folded ${folded}, rx ${rx}`);
  if (!a.flowCacheRemove(slot, 6) || a.flowCacheRemove(slot, 6)) throw new Error('flow cache: remove');
  a.flowCacheInstall(ta, tb, fb.data, fb.offset[0], fb.data, fb.offset[0], 1, 2, 8, false); // refused (the TTL did not go down), no harm
  if (a.flowCacheInstall(ta, tb, learned[0], 0, learned[1], 0, 1, 2, 6, false) < 0) throw new Error('flow cache: reinstall');
  ta.close(); // the entry naming it goes with it
  if (a.flowCacheStats().entries !== 0) throw new Error('flow cache: a closed handle kept its entry');
  a.flowCacheFlush();
  tb.close();
  a.flowCacheEnable(false);
  globalThis.gc?.();
  console.log('tun valgrind driver ok: written', written, 'read', read, 'flow cache hits', st.hits, 'js', js);
} finally {
  try { ip('netns', 'del', NS); } catch { /* gone */ }
}
