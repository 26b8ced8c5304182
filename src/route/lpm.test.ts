import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { maskWords } from '../wire/addr.js';
import { StrideTrie } from './lpm.js';

/** Slow oracle: every stored prefix in a list; the longest one containing the address wins. */
class LinearLpm {
  readonly entries: { words: Uint32Array; len: number; leaf: number }[] = [];
  constructor(readonly addrWords: number) {}
  lookup(addr: Uint32Array): number {
    let best = 0;
    let bestLen = -1;
    for (const e of this.entries) {
      const masked = addr.slice(0, this.addrWords);
      maskWords(masked, e.len, this.addrWords);
      if (masked.every((w, i) => w === e.words[i]) && e.len > bestLen) {
        best = e.leaf;
        bestLen = e.len;
      }
    }
    return best;
  }
}

const word = fc.integer({ min: 0, max: 0xffffffff });

/** Prefixes drawn around a few bases so that they nest and overlap. */
function prefixArb(addrWords: number) {
  const bits = addrWords * 32;
  return fc.record({
    base: fc.integer({ min: 0, max: 3 }),
    noise: fc.array(word, { minLength: addrWords, maxLength: addrWords }),
    noiseShift: fc.integer({ min: 0, max: bits }),
    len: fc.oneof(fc.integer({ min: 0, max: bits }), fc.constantFrom(0, bits, 8, 16, 24)),
  });
}

function materialize(bases: number[][], p: { base: number; noise: number[]; noiseShift: number }, addrWords: number): Uint32Array {
  // Flip only the bits after noiseShift so the result stays near its base.
  const w = Uint32Array.from(bases[p.base]);
  const keep = new Uint32Array(addrWords).fill(0xffffffff);
  maskWords(keep, p.noiseShift, addrWords);
  for (let i = 0; i < addrWords; i++) w[i] = (w[i] ^ (p.noise[i] & ~keep[i])) >>> 0;
  return w;
}

function checkAgainstOracle(addrWords: number, rootBits: number, chunkBits: number) {
  fc.assert(
    fc.property(
      fc.array(fc.array(word, { minLength: addrWords, maxLength: addrWords }), { minLength: 4, maxLength: 4 }),
      fc.array(fc.record({ p: prefixArb(addrWords), remove: fc.boolean(), pick: fc.nat() }), { maxLength: 40 }),
      fc.array(prefixArb(addrWords), { minLength: 20, maxLength: 20 }),
      (bases, ops, probes) => {
        const trie = new StrideTrie(rootBits, chunkBits, addrWords);
        const root = trie.allocRoot();
        const oracle = new LinearLpm(addrWords);
        let nextLeaf = 1;
        const probeAll = () => {
          for (const p of probes) {
            const addr = materialize(bases, p, addrWords);
            const got = addrWords === 1 ? trie.lookup32(root, addr[0]) : trie.lookupWords(root, addr, 0);
            assert.equal(got, oracle.lookup(addr));
          }
        };
        for (const op of ops) {
          if (op.remove && oracle.entries.length > 0) {
            const i = op.pick % oracle.entries.length;
            const e = oracle.entries[i];
            trie.remove(root, e.words, 0, e.len, e.leaf);
            oracle.entries.splice(i, 1);
          } else {
            const words = materialize(bases, op.p, addrWords);
            maskWords(words, op.p.len, addrWords);
            if (trie.get(root, words, 0, op.p.len) !== 0) continue;
            const leaf = nextLeaf++;
            trie.insert(root, words, 0, op.p.len, leaf);
            oracle.entries.push({ words, len: op.p.len, leaf });
          }
          probeAll();
        }
        // Removing everything folds every chunk back: memory follows the table.
        for (const e of oracle.entries.splice(0)) trie.remove(root, e.words, 0, e.len, e.leaf);
        assert.equal(trie.chunksInUse(), 0);
        assert.equal(trie.prefixesIn(root), 0);
        probeAll();
      },
    ),
    { numRuns: 150 },
  );
}

test('IPv4 16-8-8 trie agrees with a linear scan through inserts and removes', () => checkAgainstOracle(1, 16, 8));
test('IPv4 8-8-8-8 trie agrees with a linear scan', () => checkAgainstOracle(1, 8, 8));
test('IPv6 8-4-... trie agrees with a linear scan', () => checkAgainstOracle(4, 8, 4));

test('roots are independent and reusable', () => {
  const trie = new StrideTrie(8, 8, 1);
  const a = trie.allocRoot();
  const b = trie.allocRoot();
  const w = Uint32Array.of(0x0a000000);
  trie.insert(a, w, 0, 8, 7);
  assert.equal(trie.lookup32(a, 0x0a010203), 7);
  assert.equal(trie.lookup32(b, 0x0a010203), 0);
  assert.equal(trie.lengthOf(7), 8);
  trie.remove(a, w, 0, 8, 7);
  trie.freeRoot(a);
  const c = trie.allocRoot();
  assert.equal(c, a);
  assert.equal(trie.lookup32(c, 0x0a010203), 0);
});
