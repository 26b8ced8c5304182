/**
 * The one integer hash every table uses: MurmurHash3 (x86_32) body and finalizer steps, in
 * Math.imul arithmetic so they stay int32 and allocate nothing. Tables that face untrusted keys
 * start from a random seed (hash-flooding defence).
 */

/** Mixes one 32-bit word into a running hash (a MurmurHash3 block). */
export function mixWord(h: number, word: number): number {
  let k = Math.imul(word, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's finalizer: every output bit depends on every input bit. Returns an int32. */
export function finalMix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** The largest divisor modU32 reduces in int32 arithmetic: (n - 1) * 2^16 + 0xffff must stay below 2^31. */
const MOD_SPLIT_MAX = 1 << 15;

/**
 * (x >>> 0) % n, exactly, for any 32-bit x and 1 <= n. `(x >>> 0) % n` is a float64 modulo in V8 whenever x may
 * reach 2^31 (an x87 fprem loop on x64, ~9 % of SnatPool.acquire in a perf profile of flow setup); split as
 * x = hi * 2^16 + lo, ((hi % n) * 2^16 + lo) % n is the same number in two int32 divisions while n <= 2^15.
 */
export function modU32(x: number, n: number): number {
  if (n > MOD_SPLIT_MAX) return (x >>> 0) % n;
  return ((((x >>> 16) % n) << 16) + (x & 0xffff)) % n;
}

/**
 * A random 32-bit seed for a table that faces untrusted keys, so nobody can precompute keys that collide
 * (hash flooding). Not cryptographic: Murmur3 is not a keyed PRF, the seed only moves the collisions.
 */
export function randomSeed(): number {
  return (Math.random() * 0x100000000) | 0;
}
