// valgrind driver for native/src/esp.cc: every algorithm, seal then open, a flipped bit, removal; throws on a
// mismatch. Run: valgrind --leak-check=full --show-leak-kinds=definite,possible node scripts/esp-valgrind.mjs
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';

const a = createRequire(import.meta.url)('../native/build/Release/tether_io.node');
const algs = [[1, 20, 0, 0], [1, 36, 0, 0], [2, 16, 1, 32], [2, 32, 1, 32], [2, 32, 2, 48], [2, 32, 3, 64]];
const iv = [8, 8, 16, 16, 16, 16], icv = [16, 16, 16, 16, 24, 32], al = [4, 4, 16, 16, 16, 16];
const c = new a.EspCrypto(64);
for (let round = 0; round < 3; round++) {
  algs.forEach(([ci, kl, ig, il], s) => {
    const k = randomBytes(kl), ik = il ? randomBytes(il) : null;
    c.install(2 * s, 0, ci, k, ig, ik);
    c.install(2 * s + 1, 1, ci, k, ig, ik);
  });
  const n = 24, SLOT = 2048, data = new Uint8Array(n * SLOT);
  const off = new Uint32Array(n), len = new Uint32Array(n), sl = new Uint32Array(n), st = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    const s = k % algs.length, inner = 40 + 57 * k;
    const body = Math.ceil((inner + 2) / al[s]) * al[s];
    off[k] = k * SLOT + 64; len[k] = 8 + iv[s] + body + icv[s]; sl[k] = 2 * s;
    data[off[k] + 3] = 1; data[off[k] + 7] = k + 1;
  }
  if (c.seal(data, off, len, sl, n, st) !== n) throw new Error('seal failed ' + st);
  for (let k = 0; k < n; k++) sl[k]++;
  data[off[0] + 20] ^= 1;
  const ok = c.open(data, off, len, sl, n, st);
  if (ok !== n - 1 || st[0] !== 1) throw new Error('open: ' + ok + ' ' + st);
  for (let s = 0; s < 2 * algs.length; s++) c.remove(s);
}
console.log('esp valgrind driver ok, installed', c.installed());
