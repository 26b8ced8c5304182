/**
 * Address text <-> words, for the control plane and tests only (these allocate; never call them per packet).
 * On the packet path an IPv4 address is one unsigned 32-bit number and an IPv6 address is four,
 * most significant word first (network byte order, word by word).
 */
import { AF_INET4, AF_INET6 } from './constants.js';

export interface Prefix {
  family: 4 | 6;
  /** Four words; IPv4 uses words[0] only. Host bits are zero. */
  words: Uint32Array;
  length: number;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted-quad IPv4 text; returns the address as an unsigned 32-bit number, or -1 when malformed. */
export function parseIpv4(text: string): number {
  const m = IPV4_RE.exec(text);
  if (!m) return -1;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255 || (m[i].length > 1 && m[i][0] === '0')) return -1;
    value = (value << 8) | octet;
  }
  return value >>> 0;
}

export function formatIpv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

/** Parses IPv6 text (RFC 4291 section 2.2, including "::" and an embedded dotted quad) into 4 words; null when malformed. */
export function parseIpv6(text: string): Uint32Array | null {
  if (text.length === 0 || text.length > 45) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (part: string): number[] | null => {
    if (part === '') return [];
    const groups: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIpv4(piece);
        if (v4 < 0) return null;
        groups.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) return null;
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };
  const head = parseGroups(halves[0]);
  const tail = halves.length === 2 ? parseGroups(halves[1]) : [];
  if (!head || !tail) return null;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  const words = new Uint32Array(4);
  for (let i = 0; i < 4; i++) words[i] = ((groups[2 * i] << 16) | groups[2 * i + 1]) >>> 0;
  return words;
}

export function formatIpv6(words: ArrayLike<number>, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 4; i++) {
    const w = words[offset + i] >>> 0;
    groups.push(w >>> 16, w & 0xffff);
  }
  // RFC 5952 section 4.2: compress the longest run (>= 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Parses "a.b.c.d", "a.b.c.d/n", "v6", or "v6/n" into a Prefix (host bits cleared); null when malformed. */
export function parsePrefix(text: string): Prefix | null {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? '' : text.slice(slash + 1);
  if (slash >= 0 && !/^\d{1,3}$/.test(lenText)) return null;
  const words = new Uint32Array(4);
  let family: 4 | 6;
  let maxLen: number;
  if (addrText.includes(':')) {
    const v6 = parseIpv6(addrText);
    if (!v6) return null;
    words.set(v6);
    family = AF_INET6;
    maxLen = 128;
  } else {
    const v4 = parseIpv4(addrText);
    if (v4 < 0) return null;
    words[0] = v4;
    family = AF_INET4;
    maxLen = 32;
  }
  const length = slash < 0 ? maxLen : Number(lenText);
  if (length > maxLen) return null;
  maskWords(words, length, family === AF_INET4 ? 1 : 4);
  return { family, words, length };
}

/** Clears every bit after the first `length` bits of a `count`-word address, in place. */
export function maskWords(words: Uint32Array, length: number, count: number): void {
  for (let i = 0; i < count; i++) {
    const bitsInWord = Math.max(0, Math.min(32, length - 32 * i));
    words[i] = bitsInWord === 0 ? 0 : bitsInWord === 32 ? words[i] : (words[i] & (0xffffffff << (32 - bitsInWord))) >>> 0;
  }
}

export function formatPrefix(p: Prefix): string {
  return `${p.family === AF_INET4 ? formatIpv4(p.words[0]) : formatIpv6(p.words)}/${p.length}`;
}

/** Parses an address of either family into 4 words; returns the family or 0 when malformed. */
export function parseAddress(text: string, out: Uint32Array, offset = 0): 0 | 4 | 6 {
  if (text.includes(':')) {
    const v6 = parseIpv6(text);
    if (!v6) return 0;
    out.set(v6, offset);
    return AF_INET6;
  }
  const v4 = parseIpv4(text);
  if (v4 < 0) return 0;
  out[offset] = v4;
  out[offset + 1] = 0;
  out[offset + 2] = 0;
  out[offset + 3] = 0;
  return AF_INET4;
}
