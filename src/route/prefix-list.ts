/**
 * A small set of prefixes, each tagged with an owner (a WireGuard peer, a pipeline port), matched longest
 * first. It is the one piece of code behind "is this source inside the prefixes of the peer / onramp it came
 * from?" (WireGuard cryptokey routing, whitepaper section 2, and the pipeline's per-port source filter), and
 * behind WireGuard's destination fallback.
 *
 * A list sorted by prefix length (longest first, configuration order on a tie) and scanned: made for the
 * handful of prefixes one peer or onramp announces; a trie (route/lpm.ts) can replace it behind the same
 * interface. Lookups allocate nothing.
 */
import { parsePrefix } from '../wire/addr.js';
import { read32 } from '../wire/bytes.js';
import { AF_INET4 } from '../wire/constants.js';

interface Entry {
  family: 4 | 6;
  words: Uint32Array; // 4 words, host bits zero
  length: number;
  owner: number;
}

/** The prefix mask for word `w` (0..3) of a prefix of `length` bits. */
function maskWord(length: number, w: number): number {
  const bits = length - w * 32;
  if (bits >= 32) return 0xffffffff;
  if (bits <= 0) return 0;
  return (0xffffffff << (32 - bits)) >>> 0;
}

export class PrefixList {
  private entries: Entry[] = [];

  /** Adds `prefixText` ("10.0.0.0/24", "fd00::/64", a bare address = host route) for `owner`; false when malformed. */
  insert(prefixText: string, owner: number): boolean {
    const p = parsePrefix(prefixText);
    if (!p) return false;
    const words = new Uint32Array(4);
    words.set(p.words.subarray(0, 4));
    const already = this.entries.some(
      (e) => e.owner === owner && e.family === p.family && e.length === p.length && e.words.every((v, i) => v === words[i]),
    );
    if (!already) this.entries.push({ family: p.family, words, length: p.length, owner });
    // Stable sort: longest first, then in configuration order.
    this.entries.sort((a, b) => b.length - a.length);
    return true;
  }

  removeOwner(owner: number): void {
    this.entries = this.entries.filter((e) => e.owner !== owner);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Prefixes of one owner as text-free records (control plane). */
  prefixesOf(owner: number): { family: 4 | 6; words: Uint32Array; length: number }[] {
    return this.entries.filter((e) => e.owner === owner).map((e) => ({ family: e.family, words: e.words, length: e.length }));
  }

  /**
   * Longest-prefix match of an address held as words (wire/addr.ts: IPv4 in words[at], IPv6 in
   * words[at..at+4)); the owner or -1. With `onlyOwner` >= 0, only that owner's prefixes count.
   */
  lookupWords(family: number, words: Uint32Array, at: number, onlyOwner = -1): number {
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (e.family !== family || (onlyOwner >= 0 && e.owner !== onlyOwner)) continue;
      if (family === AF_INET4) {
        if (((words[at] & maskWord(e.length, 0)) >>> 0) === e.words[0]) return e.owner;
        continue;
      }
      let match = true;
      for (let w = 0; w < 4 && match; w++) {
        if (((words[at + w] & maskWord(e.length, w)) >>> 0) !== e.words[w]) match = false;
      }
      if (match) return e.owner;
    }
    return -1;
  }

  /** lookupWords for the address at `packet[off..]` (4 or 16 bytes, network order). */
  lookup(family: 4 | 6, packet: Uint8Array, off: number, onlyOwner = -1): number {
    const scratch = this.scratch;
    scratch[0] = read32(packet, off);
    if (family !== AF_INET4) {
      scratch[1] = read32(packet, off + 4);
      scratch[2] = read32(packet, off + 8);
      scratch[3] = read32(packet, off + 12);
    }
    return this.lookupWords(family, scratch, 0, onlyOwner);
  }

  private readonly scratch = new Uint32Array(4);
}
