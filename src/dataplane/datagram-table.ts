/**
 * The one table of fragmented datagrams the dataplane keeps: FragmentFollower (fragments.ts: the flow a datagram's
 * later fragments follow) and FragmentSteer (fragment-steer.ts: the lane they go to) both key a datagram by its
 * identity and keep a value per datagram for as long as its fragments may come. This table finds, claims and
 * forgets the slots; each user keeps its values in typed arrays of its own, indexed by slot.
 *
 * Datagram identity (RFC 791 section 3.2, RFC 8200 section 4.5): source, destination, protocol and identification;
 * plus the zone, so two sites' identical datagrams never meet, and the family, so one table can hold both.
 *
 * Bounded and allocation-free: open addressing over a power-of-two array of fixed-size keys, at most `probes` slots
 * looked at from a key's hash (its window). An entry lives `timeoutMs` from its claim: the receiver's own
 * reassembly timeout, after which no later fragment of the datagram is of use. A claim rewrites the key's own live
 * entry (never two live entries of one key), else takes the window's first expired slot, else its stalest (whose
 * datagram's fragments have most likely passed). While no more live keys exist than a window's slots, nothing is
 * lost (datagram-table.test.ts checks this against a Map).
 */
import { finalMix, mixWord } from '../common/hash.js';

/** Fixed words of a key: (zone, protocol, family) and identification; then source and destination. */
const K_HEAD = 0;
const K_IDENT = 1;
const K_ADDR = 2;
/** An IPv6 address's words; IPv4 uses one. */
const IPV6_WORDS = 4;
const IPV4_WORDS = 1;
const ZONE_MASK = 0xffff;
const PROTO_SHIFT = 16;
const FAMILY_SHIFT = 24;

export interface DatagramTableOptions {
  /** Datagrams remembered at once (rounded up to a power of two). */
  capacity: number;
  /** Slots a claim or find looks at from the key's hash. */
  probes: number;
  /** Address words a key keeps: 1 (an IPv4-only table) or 4 (IPv6, or both families). */
  addrWords: 1 | 4;
  /** How long an entry answers after its claim (ms, the caller's clock). */
  timeoutMs: number;
}

export class DatagramTable {
  readonly capacity: number;
  private readonly mask: number;
  private readonly probes: number;
  private readonly timeoutMs: number;
  private readonly addrWords: number;
  /** Words per key: head, identification, source (addrWords), destination (addrWords). */
  private readonly keyWords: number;
  private readonly keys: Uint32Array;
  /** When each entry stops answering (ms); 0: never used, or forgotten. */
  private readonly deadline: Float64Array;

  constructor(opts: DatagramTableOptions) {
    let cap = 1;
    while (cap < opts.capacity) cap <<= 1;
    this.capacity = cap;
    this.mask = cap - 1;
    this.probes = opts.probes;
    this.timeoutMs = opts.timeoutMs;
    this.addrWords = opts.addrWords;
    this.keyWords = K_ADDR + 2 * opts.addrWords;
    this.keys = new Uint32Array(cap * this.keyWords);
    this.deadline = new Float64Array(cap);
  }

  /**
   * The slot of the datagram (zone, protocol, family 4 or 6, source addr[src..], destination addr[dst..],
   * identification), or -1 (not remembered, or its time is up).
   */
  find(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number, now: number): number {
    const head = headWord(zone, protocol, family);
    const words = family === 4 ? IPV4_WORDS : IPV6_WORDS;
    let slot = this.hashOf(head, addr, src, dst, words, ident) & this.mask;
    for (let probe = 0; probe < this.probes; probe++) {
      if (this.deadline[slot] > now && this.matches(slot, head, addr, src, dst, words, ident)) return slot;
      slot = (slot + 1) & this.mask;
    }
    return -1;
  }

  /**
   * The slot the datagram takes from now on, for `timeoutMs`: its own live entry, else the window's first expired
   * slot, else its stalest (the caller overwrites that slot's values).
   */
  claim(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number, now: number): number {
    const head = headWord(zone, protocol, family);
    const words = family === 4 ? IPV4_WORDS : IPV6_WORDS;
    let slot = this.hashOf(head, addr, src, dst, words, ident) & this.mask;
    // An IPv6 key in an IPv4-only table would be kept cut short: a caller's mistake, not a packet's.
    if (words > this.addrWords) throw new RangeError(`an IPv${family} datagram in a table of ${this.addrWords}-word addresses`);
    let victim = slot;
    let victimDeadline = Infinity;
    for (let probe = 0; probe < this.probes; probe++) {
      const d = this.deadline[slot];
      if (d > now && this.matches(slot, head, addr, src, dst, words, ident)) {
        victim = slot;
        break;
      }
      // Once an expired slot is the victim (victimDeadline <= now) no later one replaces it: the first expired.
      if (d < victimDeadline && victimDeadline > now) {
        victimDeadline = d;
        victim = slot;
      }
      slot = (slot + 1) & this.mask;
    }
    const k = victim * this.keyWords;
    const keys = this.keys;
    const w = this.addrWords;
    keys[k + K_HEAD] = head;
    keys[k + K_IDENT] = ident;
    for (let i = 0; i < w; i++) {
      keys[k + K_ADDR + i] = i < words ? addr[src + i] : 0;
      keys[k + K_ADDR + w + i] = i < words ? addr[dst + i] : 0;
    }
    this.deadline[victim] = now + this.timeoutMs;
    return victim;
  }

  /** The datagram is remembered no more (every entry of its key in its window). */
  forget(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number): void {
    const head = headWord(zone, protocol, family);
    const words = family === 4 ? IPV4_WORDS : IPV6_WORDS;
    let slot = this.hashOf(head, addr, src, dst, words, ident) & this.mask;
    for (let probe = 0; probe < this.probes; probe++) {
      if (this.matches(slot, head, addr, src, dst, words, ident)) this.deadline[slot] = 0;
      slot = (slot + 1) & this.mask;
    }
  }

  /** Entries live at `now` (a scan: tests, status). */
  live(now: number): number {
    let n = 0;
    for (let i = 0; i < this.deadline.length; i++) if (this.deadline[i] > now) n++;
    return n;
  }

  private matches(slot: number, head: number, addr: Uint32Array, src: number, dst: number, words: number, ident: number): boolean {
    const k = slot * this.keyWords;
    const keys = this.keys;
    if (keys[k + K_HEAD] !== head || keys[k + K_IDENT] !== ident >>> 0) return false;
    const w = this.addrWords;
    for (let i = 0; i < words; i++) {
      if (keys[k + K_ADDR + i] !== addr[src + i] || keys[k + K_ADDR + w + i] !== addr[dst + i]) return false;
    }
    return true;
  }

  private hashOf(head: number, addr: Uint32Array, src: number, dst: number, words: number, ident: number): number {
    let h = mixWord(head, ident);
    for (let i = 0; i < words; i++) h = mixWord(mixWord(h, addr[src + i]), addr[dst + i]);
    return finalMix(h) >>> 0;
  }
}

function headWord(zone: number, protocol: number, family: number): number {
  return ((zone & ZONE_MASK) | (protocol << PROTO_SHIFT) | (family << FAMILY_SHIFT)) >>> 0;
}
