/**
 * Lanes: where the later fragments of a datagram go (docs/ARCHITECTURE.md "Lanes", "Fragments and ICMP errors").
 * A multi-queue TUN hashes every fragment, the first one included, by its addresses only (the kernel's flow
 * dissector parses no ports of a fragment without FLOW_DISSECTOR_F_PARSE_1ST_FRAG), so all fragments of a datagram
 * reach one lane. Only the first carries the ports (RFC 791 section 3.2; RFC 8200 section 4.5): it is steered to
 * the lane that owns its flow (LaneSteering, LaneOwnership.ownerOfMiss), and this table, on the lane that read it,
 * remembers (zone, protocol, source, destination, identification) → that lane, so the fragments that follow take
 * the same ring, in order, to the lane whose FragmentFollower knows the datagram.
 *
 * Bounded and allocation-free, as FragmentFollower: open addressing over a power-of-two array, at most MAX_PROBES
 * slots looked at; an entry lives FRAGMENT_TIMEOUT_MS from its first fragment (the receiver's own reassembly
 * timeout: no later fragment of the datagram is of use after it); when every slot looked at is live, the stalest
 * is overwritten (its datagram's fragments have most likely passed). A lost entry costs what one lane did before
 * lanes: the later fragments stay on the reading lane (held there, then dropped as FragmentTimeout).
 */
import { finalMix, mixWord } from '../common/hash.js';
import { FRAGMENT_TIMEOUT_MS } from './fragments.js';

/** Slots a remember or find looks at (a hit needs no more than this many live keys sharing its window). */
export const FRAGMENT_STEER_PROBES = 8;
/** Datagrams remembered at once by default: far more than one lane hands away within a reassembly timeout in practice. */
export const FRAGMENT_STEER_CAPACITY = 4096;
/** Words of a key: (zone, protocol, family), identification, source (4), destination (4). */
const KEY_WORDS = 10;
const K_HEAD = 0;
const K_IDENT = 1;
const K_SRC = 2;
const K_DST = 6;
/** An IPv6 address's words; IPv4 uses the first. */
const ADDR_WORDS = 4;
const ZONE_MASK = 0xffff;
const PROTO_SHIFT = 16;
const FAMILY_SHIFT = 24;

export class FragmentSteer {
  readonly capacity: number;
  private readonly mask: number;
  private readonly keys: Uint32Array;
  private readonly lanes: Uint8Array;
  /** When each entry stops answering (ms, the pipeline's clock); 0: never used. */
  private readonly deadline: Float64Array;

  constructor(capacity = FRAGMENT_STEER_CAPACITY, private readonly timeoutMs = FRAGMENT_TIMEOUT_MS) {
    let cap = FRAGMENT_STEER_PROBES;
    while (cap < capacity) cap <<= 1;
    this.capacity = cap;
    this.mask = cap - 1;
    this.keys = new Uint32Array(cap * KEY_WORDS);
    this.lanes = new Uint8Array(cap);
    this.deadline = new Float64Array(cap);
  }

  /**
   * The datagram (zone, protocol, family 4 or 6, source addr[src..], destination addr[dst..], identification) goes
   * to `lane` from now on: its entry is rewritten, or takes an expired slot, or the stalest of its window.
   */
  remember(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number, lane: number, now: number): void {
    const head = headWord(zone, protocol, family);
    const words = family === 4 ? 1 : ADDR_WORDS;
    let slot = this.hashOf(head, addr, src, dst, words, ident) & this.mask;
    // The key's own entry if it has one (never two entries of one key), else the first expired slot, else the stalest.
    let victim = -1;
    let victimDeadline = Infinity;
    for (let probe = 0; probe < FRAGMENT_STEER_PROBES; probe++) {
      const d = this.deadline[slot];
      if (d > now && this.matches(slot, head, addr, src, dst, words, ident)) {
        victim = slot;
        break;
      }
      if (d < victimDeadline && victimDeadline > now) {
        victimDeadline = d;
        victim = slot;
      }
      slot = (slot + 1) & this.mask;
    }
    const k = victim * KEY_WORDS;
    const keys = this.keys;
    keys[k + K_HEAD] = head;
    keys[k + K_IDENT] = ident;
    for (let w = 0; w < ADDR_WORDS; w++) {
      keys[k + K_SRC + w] = w < words ? addr[src + w] : 0;
      keys[k + K_DST + w] = w < words ? addr[dst + w] : 0;
    }
    this.lanes[victim] = lane;
    this.deadline[victim] = now + this.timeoutMs;
  }

  /** The lane the datagram's fragments go to, or -1 (not remembered, or its time is up). */
  find(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number, now: number): number {
    const head = headWord(zone, protocol, family);
    const words = family === 4 ? 1 : ADDR_WORDS;
    let slot = this.hashOf(head, addr, src, dst, words, ident) & this.mask;
    for (let probe = 0; probe < FRAGMENT_STEER_PROBES; probe++) {
      if (this.deadline[slot] > now && this.matches(slot, head, addr, src, dst, words, ident)) return this.lanes[slot];
      slot = (slot + 1) & this.mask;
    }
    return -1;
  }

  /**
   * The datagram's entry is gone (its first fragment, sent again with the same identification, was taken by this
   * lane): its later fragments stay here.
   */
  forget(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number): void {
    const head = headWord(zone, protocol, family);
    const words = family === 4 ? 1 : ADDR_WORDS;
    let slot = this.hashOf(head, addr, src, dst, words, ident) & this.mask;
    for (let probe = 0; probe < FRAGMENT_STEER_PROBES; probe++) {
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
    const k = slot * KEY_WORDS;
    const keys = this.keys;
    if (keys[k + K_HEAD] !== head || keys[k + K_IDENT] !== ident >>> 0) return false;
    for (let w = 0; w < words; w++) {
      if (keys[k + K_SRC + w] !== addr[src + w] >>> 0 || keys[k + K_DST + w] !== addr[dst + w] >>> 0) return false;
    }
    return true;
  }

  private hashOf(head: number, addr: Uint32Array, src: number, dst: number, words: number, ident: number): number {
    let h = mixWord(head, ident);
    for (let w = 0; w < words; w++) h = mixWord(mixWord(h, addr[src + w]), addr[dst + w]);
    return finalMix(h) >>> 0;
  }
}

function headWord(zone: number, protocol: number, family: number): number {
  return ((zone & ZONE_MASK) | (protocol << PROTO_SHIFT) | (family << FAMILY_SHIFT)) >>> 0;
}
