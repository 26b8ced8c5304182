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

/**
 * A random 32-bit seed for a table that faces untrusted keys, so nobody can precompute keys that collide
 * (hash flooding). Not cryptographic: Murmur3 is not a keyed PRF, the seed only moves the collisions.
 */
export function randomSeed(): number {
  return (Math.random() * 0x100000000) | 0;
}
