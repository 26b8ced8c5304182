// valgrind driver for native/src/wireguard.cc: batches of mixed sessions and lengths (0..1500, keepalives
// included) sealed then opened, a flipped tag bit, a short message, an empty slot, re-installs and removal;
// throws on a mismatch. Run: valgrind --leak-check=full --show-leak-kinds=definite,possible node scripts/wg-valgrind.mjs
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';

const a = createRequire(import.meta.url)('../native/build/Release/tether_io.node');
const SESSIONS = 6, SLOT = 2048, n = 32;
const c = new a.WgCrypto(64);
for (let round = 0; round < 3; round++) {
  for (let s = 0; s < SESSIONS; s++) {
    const k = randomBytes(32);
    c.install(s, k, k); // the same key both ways: what a session seals, it opens
  }
  const data = new Uint8Array(n * SLOT);
  const off = new Uint32Array(n), len = new Uint32Array(n), sl = new Uint32Array(n), st = new Uint8Array(n);
  const plain = [];
  for (let k = 0; k < n; k++) {
    const inner = k === 0 ? 0 : (47 * k * (round + 1)) % 1501;
    off[k] = k * SLOT + 64; len[k] = 16 + Math.ceil(inner / 16) * 16 + 16; sl[k] = k % SESSIONS;
    data[off[k]] = 4; data[off[k] + 8] = k; data[off[k] + 14] = round;
    data.set(randomBytes(inner), off[k] + 16);
    plain.push(data.slice(off[k] + 16, off[k] + 16 + inner));
  }
  if (c.seal(data, off, len, sl, n, st) !== n) throw new Error('seal failed ' + st);
  data[off[1] + len[1] - 1] ^= 1; // tag
  len[2] = 31; // shorter than a keepalive
  sl[3] = 40; // nothing installed there
  const ok = c.open(data, off, len, sl, n, st);
  if (ok !== n - 3 || st[1] !== 1 || st[2] !== 2 || st[3] !== 3) throw new Error('open: ' + ok + ' ' + st);
  for (let k = 4; k < n; k++) {
    const got = data.subarray(off[k] + 16, off[k] + 16 + plain[k].length);
    if (got.some((b, i) => b !== plain[k][i])) throw new Error('plaintext ' + k);
  }
  for (let s = 0; s < SESSIONS; s += 2) c.remove(s);
}
for (let s = 0; s < SESSIONS; s++) c.remove(s);
console.log('wireguard valgrind driver ok, installed', c.installed());
