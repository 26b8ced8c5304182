/**
 * Lanes: where the later fragments of a datagram go (docs/ARCHITECTURE.md "Lanes", "Fragments and ICMP errors").
 * A multi-queue TUN hashes every fragment, the first one included, by its addresses only (the kernel's flow
 * dissector parses no ports of a fragment without FLOW_DISSECTOR_F_PARSE_1ST_FRAG), so all fragments of a datagram
 * reach one lane. Only the first carries the ports (RFC 791 section 3.2; RFC 8200 section 4.5): it is steered to
 * the lane that owns its flow (LaneSteering, LaneOwnership.ownerOfMiss), and this table, on the lane that read it,
 * remembers (zone, protocol, source, destination, identification) → that lane, so the fragments that follow take
 * the same ring, in order, to the lane whose FragmentFollower knows the datagram.
 *
 * The datagrams are a DatagramTable (datagram-table.ts, as FragmentFollower's): bounded, allocation-free, an entry
 * living FRAGMENT_TIMEOUT_MS from its first fragment, the stalest of a full window overwritten. Here each slot's
 * value is a lane. A lost entry costs what one lane did before lanes: the later fragments stay on the reading lane
 * (held there, then dropped as FragmentTimeout).
 */
import { DatagramTable } from './datagram-table.js';
import { FRAGMENT_TIMEOUT_MS } from './fragments.js';

/** Slots a remember or find looks at (a hit needs no more than this many live keys sharing its window). */
export const FRAGMENT_STEER_PROBES = 8;
/** Datagrams remembered at once by default: far more than one lane hands away within a reassembly timeout in practice. */
export const FRAGMENT_STEER_CAPACITY = 4096;
/** Both families in one table: keys keep an IPv6 address's four words. */
const ADDR_WORDS = 4;

export class FragmentSteer {
  readonly capacity: number;
  private readonly table: DatagramTable;
  /** Per slot of the table: the lane its datagram's fragments go to. */
  private readonly lanes: Uint8Array;

  constructor(capacity = FRAGMENT_STEER_CAPACITY, timeoutMs = FRAGMENT_TIMEOUT_MS) {
    // At least one window's slots, so a window never wraps onto itself.
    this.table = new DatagramTable({ capacity: Math.max(capacity, FRAGMENT_STEER_PROBES), probes: FRAGMENT_STEER_PROBES, addrWords: ADDR_WORDS, timeoutMs });
    this.capacity = this.table.capacity;
    this.lanes = new Uint8Array(this.capacity);
  }

  /**
   * The datagram (zone, protocol, family 4 or 6, source addr[src..], destination addr[dst..], identification) goes
   * to `lane` from now on.
   */
  remember(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number, lane: number, now: number): void {
    this.lanes[this.table.claim(zone, protocol, family, addr, src, dst, ident, now)] = lane;
  }

  /** The lane the datagram's fragments go to, or -1 (not remembered, or its time is up). */
  find(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number, now: number): number {
    const slot = this.table.find(zone, protocol, family, addr, src, dst, ident, now);
    return slot < 0 ? -1 : this.lanes[slot];
  }

  /**
   * The datagram's entry is gone (its first fragment, sent again with the same identification, was taken by this
   * lane): its later fragments stay here.
   */
  forget(zone: number, protocol: number, family: number, addr: Uint32Array, src: number, dst: number, ident: number): void {
    this.table.forget(zone, protocol, family, addr, src, dst, ident);
  }

  /** Entries live at `now` (a scan: tests, status). */
  live(now: number): number {
    return this.table.live(now);
  }
}
