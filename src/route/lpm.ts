/**
 * StrideTrie: a multibit trie (controlled prefix expansion) in typed arrays, for longest-prefix match.
 *
 * Shape: several independent tries ("roots") share one pool of child chunks. A root is a table of
 * 2^rootBits entries indexed by the address's first rootBits bits; each child chunk has 2^chunkBits
 * entries indexed by the next chunkBits bits. IPv4 with rootBits 16 and chunkBits 8 is the classic
 * 16-8-8 layout: at most three array reads per lookup.
 *
 * Entry encoding (Int32):
 *   0      no prefix covers this slot
 *   > 0    leaf value (the caller's id + 1); the longest prefix that covers the whole slot
 *   < 0    ~chunkIndex: the slot holds longer prefixes, continue in that chunk
 *
 * A prefix of length L lands in the level whose bit range contains L and is expanded over the
 * 2^(levelEnd - L) slots it covers; a slot keeps the longer of the prefixes that cover it. On removal
 * the slots that held the prefix's leaf go back to the next shorter covering prefix (found in a per-length
 * index), and a chunk whose slots all became the same leaf folds back into its parent slot, so memory
 * follows the table. Updates are control plane (they may allocate); lookups read two typed arrays only.
 *
 * Addresses are words, most significant first (wire/addr.ts): IPv4 one word, IPv6 four.
 * Strides must divide 32 so that no field straddles two words.
 */
import { maskWords } from '../wire/addr.js';

const EMPTY = 0;
const INITIAL_CHUNKS = 64;
const INITIAL_ROOTS = 1;
const BITS_PER_WORD = 32;

type TypedArray = Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array;

/** A copy of `a` with room for `size` elements (control plane growth of struct-of-arrays storage). */
export function growTyped<T extends TypedArray>(a: T, size: number): T {
  const b = new (a.constructor as new (n: number) => T)(size);
  b.set(a);
  return b;
}

type PrefixKey = number | string;

export class StrideTrie {
  readonly rootBits: number;
  readonly chunkBits: number;
  /** Address width in 32-bit words (1 for IPv4, 4 for IPv6). */
  readonly addrWords: number;
  readonly addrBits: number;
  private readonly rootSize: number;
  private readonly chunkSize: number;
  private readonly chunkMask: number;

  /** Root tables, rootSize entries each. */
  private roots: Int32Array;
  /** Child chunks, chunkSize entries each. */
  private chunks: Int32Array;
  /** Prefix length of each leaf value stored in this trie (indexed by leaf value). */
  private leafLen = new Uint8Array(64);

  private rootNext = 0;
  private readonly rootFree: number[] = [];
  private chunkNext = 0;
  private readonly chunkFree: number[] = [];
  /** Per root, per prefix length: prefix key -> leaf. Answers "which prefix covers this one" on removal. */
  private readonly prefixes: (Map<PrefixKey, number> | undefined)[][] = [];
  private readonly prefixCount: number[] = [];
  private readonly scratch = new Uint32Array(4);
  /** Second result of descend(): how many slots the prefix covers at its level. */
  private spanCount = 0;

  constructor(rootBits: number, chunkBits: number, addrWords: number) {
    if (BITS_PER_WORD % chunkBits !== 0 || BITS_PER_WORD % rootBits !== 0) {
      throw new RangeError(`strides ${rootBits}/${chunkBits} must divide ${BITS_PER_WORD}`);
    }
    if (rootBits > 24 || chunkBits > 16) throw new RangeError('stride too wide for an Int32Array-backed trie');
    this.rootBits = rootBits;
    this.chunkBits = chunkBits;
    this.addrWords = addrWords;
    this.addrBits = addrWords * BITS_PER_WORD;
    this.rootSize = 1 << rootBits;
    this.chunkSize = 1 << chunkBits;
    this.chunkMask = this.chunkSize - 1;
    this.roots = new Int32Array(INITIAL_ROOTS * this.rootSize);
    this.chunks = new Int32Array(INITIAL_CHUNKS * this.chunkSize);
  }

  // --- lookups (hot path: no allocation) ------------------------------------------------------

  /** Longest-prefix match of a one-word address in `root`; returns the leaf value or 0. */
  lookup32(root: number, addr: number): number {
    const chunks = this.chunks;
    const cb = this.chunkBits;
    const cm = this.chunkMask;
    let shift = BITS_PER_WORD - this.rootBits;
    let e = this.roots[root * this.rootSize + (addr >>> shift)];
    while (e < 0) {
      shift -= cb;
      e = chunks[(~e << cb) | ((addr >>> shift) & cm)];
    }
    return e;
  }

  /** Longest-prefix match of the addrWords-word address at words[off..]; returns the leaf value or 0. */
  lookupWords(root: number, words: Uint32Array, off: number): number {
    const chunks = this.chunks;
    const cb = this.chunkBits;
    const cm = this.chunkMask;
    let e = this.roots[root * this.rootSize + (words[off] >>> (BITS_PER_WORD - this.rootBits))];
    let pos = this.rootBits;
    while (e < 0) {
      const idx = (words[off + (pos >>> 5)] >>> (BITS_PER_WORD - (pos & 31) - cb)) & cm;
      pos += cb;
      e = chunks[(~e << cb) | idx];
    }
    return e;
  }

  /** Prefix length of a leaf value held by this trie. */
  lengthOf(leaf: number): number {
    return this.leafLen[leaf];
  }

  // --- roots ---------------------------------------------------------------------------------

  allocRoot(): number {
    let r = this.rootFree.pop();
    if (r === undefined) {
      r = this.rootNext++;
      if (this.rootNext * this.rootSize > this.roots.length) {
        this.roots = growTyped(this.roots, this.roots.length * 2);
      }
    }
    this.roots.fill(EMPTY, r * this.rootSize, (r + 1) * this.rootSize);
    this.prefixes[r] = [];
    this.prefixCount[r] = 0;
    return r;
  }

  /** Returns an empty root to the pool. */
  freeRoot(root: number): void {
    if (this.prefixCount[root] !== 0) throw new Error(`root ${root} still holds prefixes`);
    this.rootFree.push(root);
  }

  prefixesIn(root: number): number {
    return this.prefixCount[root];
  }

  /** Leaf value of the exact prefix (words[off..], len) in `root`, or 0 when absent. Host bits must be zero. */
  get(root: number, words: Uint32Array, off: number, len: number): number {
    return this.prefixes[root][len]?.get(this.key(words, off)) ?? EMPTY;
  }

  // --- updates (control plane) ---------------------------------------------------------------

  /** Adds a prefix (host bits zero) with a leaf value > 0. The prefix must not be present in `root`. */
  insert(root: number, words: Uint32Array, off: number, len: number, leaf: number): void {
    if (leaf <= 0) throw new RangeError('leaf values start at 1');
    if (leaf >= this.leafLen.length) this.leafLen = growTyped(this.leafLen, Math.max(leaf + 1, this.leafLen.length * 2));
    this.leafLen[leaf] = len;
    const byLen = this.prefixes[root];
    let index = byLen[len];
    if (!index) index = byLen[len] = new Map();
    index.set(this.key(words, off), leaf);
    this.prefixCount[root]++;

    const path: number[] = [];
    const first = this.descend(root, words, off, len, path);
    const table = path.length === 0 ? this.roots : this.chunks;
    const count = this.spanCount;
    for (let i = 0; i < count; i++) this.paint(table, first + i, leaf, len);
  }

  /** Removes a prefix previously inserted with `leaf`; its slots fall back to the next shorter covering prefix. */
  remove(root: number, words: Uint32Array, off: number, len: number, leaf: number): void {
    const key = this.key(words, off);
    const index = this.prefixes[root][len];
    if (!index || index.get(key) !== leaf) throw new Error('prefix not in trie');
    index.delete(key);
    this.prefixCount[root]--;
    const replacement = this.covering(root, words, off, len);

    const path: number[] = [];
    const first = this.descend(root, words, off, len, path);
    const table = path.length === 0 ? this.roots : this.chunks;
    const count = this.spanCount;
    for (let i = 0; i < count; i++) this.unpaint(table, first + i, leaf, replacement);
    // Fold chunks that became uniform, bottom up (path[0] is a root slot, the rest chunk slots).
    for (let k = path.length - 1; k >= 0; k--) {
      if (!this.collapse(k === 0 ? this.roots : this.chunks, path[k])) break;
    }
  }

  /** Bytes held by the typed arrays (the Maps of the prefix index are not counted). */
  memoryBytes(): number {
    return this.roots.byteLength + this.chunks.byteLength + this.leafLen.byteLength;
  }

  /** Chunks in use (allocated and not freed); for tests and metrics. */
  chunksInUse(): number {
    return this.chunkNext - this.chunkFree.length;
  }

  // --- internals -----------------------------------------------------------------------------

  /**
   * Walks from `root` to the level whose bit range holds a prefix of length `len`, turning leaf slots on
   * the way into chunks (inherited value in every slot), and returns the first slot the prefix covers
   * (in the roots when `path` stays empty, else in the chunks). `path` receives the slots walked through
   * (path[0] in the roots, the rest in the chunks); this.spanCount the number of slots covered.
   */
  private descend(root: number, words: Uint32Array, off: number, len: number, path: number[]): number {
    let inRoot = true;
    let base = root * this.rootSize;
    let start = 0;
    let bits = this.rootBits;
    while (len > start + bits) {
      const pos = base + this.field(words, off, start, bits);
      let e = (inRoot ? this.roots : this.chunks)[pos];
      if (e >= 0) {
        const c = this.allocChunk(e);
        (inRoot ? this.roots : this.chunks)[pos] = ~c;
        e = ~c;
      }
      path.push(pos);
      inRoot = false;
      base = ~e * this.chunkSize;
      start += bits;
      bits = this.chunkBits;
    }
    this.spanCount = 1 << (start + bits - len);
    return base + this.field(words, off, start, bits);
  }

  /** `bits` bits of the address starting at bit `start` (never straddles a word: strides divide 32). */
  private field(words: Uint32Array, off: number, start: number, bits: number): number {
    const w = words[off + (start >>> 5)];
    return (w >>> (BITS_PER_WORD - (start & 31) - bits)) & ((1 << bits) - 1);
  }

  private key(words: Uint32Array, off: number): PrefixKey {
    if (this.addrWords === 1) return words[off] >>> 0;
    let k = '';
    for (let i = 0; i < this.addrWords; i++) k += (words[off + i] >>> 0).toString(16) + ':';
    return k;
  }

  /** Leaf of the longest stored prefix strictly shorter than `len` that covers the prefix, or 0. */
  private covering(root: number, words: Uint32Array, off: number, len: number): number {
    const byLen = this.prefixes[root];
    const s = this.scratch;
    for (let l = len - 1; l >= 0; l--) {
      const index = byLen[l];
      if (!index || index.size === 0) continue;
      for (let i = 0; i < this.addrWords; i++) s[i] = words[off + i];
      maskWords(s, l, this.addrWords);
      const leaf = index.get(this.key(s, 0));
      if (leaf !== undefined) return leaf;
    }
    return EMPTY;
  }

  private allocChunk(fillValue: number): number {
    let c = this.chunkFree.pop();
    if (c === undefined) {
      c = this.chunkNext++;
      if (this.chunkNext * this.chunkSize > this.chunks.length) {
        this.chunks = growTyped(this.chunks, this.chunks.length * 2);
      }
    }
    this.chunks.fill(fillValue, c * this.chunkSize, (c + 1) * this.chunkSize);
    return c;
  }

  /** Writes `leaf` into a slot (and every slot below it) unless a longer prefix already holds it. */
  private paint(table: Int32Array, pos: number, leaf: number, len: number): void {
    const e = table[pos];
    if (e < 0) {
      const b = ~e * this.chunkSize;
      for (let i = 0; i < this.chunkSize; i++) this.paint(this.chunks, b + i, leaf, len);
    } else if (e === EMPTY || this.leafLen[e] < len) {
      table[pos] = leaf;
    }
  }

  /** Replaces `leaf` by `replacement` in a slot and below it; folds chunks that became uniform. */
  private unpaint(table: Int32Array, pos: number, leaf: number, replacement: number): void {
    const e = table[pos];
    if (e < 0) {
      const b = ~e * this.chunkSize;
      for (let i = 0; i < this.chunkSize; i++) this.unpaint(this.chunks, b + i, leaf, replacement);
      this.collapse(table, pos);
    } else if (e === leaf) {
      table[pos] = replacement;
    }
  }

  /**
   * If the chunk under slot `pos` holds one leaf value in every slot, stores that value in the parent
   * slot and frees the chunk. Sound because a leaf covering a whole chunk is no longer than the chunk's
   * first bit, so the parent slot can hold it.
   */
  private collapse(table: Int32Array, pos: number): boolean {
    const c = ~table[pos];
    const chunks = this.chunks;
    const b = c * this.chunkSize;
    const v = chunks[b];
    if (v < 0) return false;
    for (let i = 1; i < this.chunkSize; i++) if (chunks[b + i] !== v) return false;
    table[pos] = v;
    this.chunkFree.push(c);
    return true;
  }
}
