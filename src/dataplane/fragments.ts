/**
 * Fragment following: instead of reassembling (which changes packet sizes and costs memory per
 * datagram), the edge remembers which flow a fragmented datagram belongs to when its first
 * fragment (the one carrying the ports) passes, and sends the later fragments the same way with
 * the same address rewrites. Fragments that arrive before their first fragment wait in a small,
 * bounded hold queue until it comes or they time out.
 *
 * Datagram identity (RFC 791 section 3.2, RFC 8200 section 4.5): source, destination, protocol
 * and identification — plus the zone, so two sites' fragments never meet.
 *
 * Each remembered datagram also keeps the identification the edge gave it (IPv4 translated toward a shared
 * source, src/nat/ip-id.ts; -1: kept as sent), so every later fragment carries the same new id as the first:
 * the receiver reassembles by (source, destination, protocol, id). The mapping lives as long as the entry,
 * FRAGMENT_TIMEOUT_MS from the first fragment, the receiver's own reassembly timeout.
 *
 * Memory is bounded twice: a fixed table of datagrams (a DatagramTable, datagram-table.ts, as FragmentSteer's:
 * open addressing, at most MAX_PROBES slots looked at, the stalest entry overwritten when all are live; here each
 * slot's values are a flow node and a new identification) and a fixed hold slab.
 *
 * The hold slab is shared fairly (issue 11, docs/FLOW-MODEL.md "Fair shares"): a held fragment is
 * charged to its sender's site, and a site may hold at most its share of the slots (setSiteShare;
 * common/fair-share.ts), so one site's early fragments cannot take the slab from the others; the
 * excess is dropped as Drop.FragmentQuotaExceeded.
 */
import { Drop } from '../common/drop-reasons.js';
import { fairShare } from '../common/fair-share.js';
import { MAX_SITE_ID } from '../common/ids.js';
import { DST, SRC } from '../wire/packet-info.js';
import { DatagramTable } from './datagram-table.js';

/** RFC 791 suggests a reassembly timer of 15 s upper bound start; Linux uses 30 s (ipfrag_time). */
export const FRAGMENT_TIMEOUT_MS = 30_000;
const MAX_PROBES = 16;
const HOLD_SLOT_BYTES = 2048;
const DEFAULT_CAPACITY = 4096;

export interface FragmentFollowerOptions {
  addrWords: 1 | 4;
  /** Datagrams remembered at once (power of two is used). */
  capacity?: number;
  /** Early fragments held at once. */
  holdPackets?: number;
  timeoutMs?: number;
}

export class FragmentFollower {
  readonly addrWords: number;
  /** The family of every datagram here (one follower a family). */
  private readonly family: 4 | 6;
  private readonly timeoutMs: number;
  // datagram table, and per slot of it: the flow node, and the identification its fragments leave with (-1: their own)
  private readonly table: DatagramTable;
  private readonly node: Int32Array;
  private readonly newId: Int32Array;
  // hold queue
  private readonly holdData: Uint8Array;
  private readonly holdLength: Uint16Array; // 0 = free slot
  private readonly holdIngress: Uint16Array;
  private readonly holdZone: Uint16Array;
  private readonly holdProto: Uint8Array;
  private readonly holdIdent: Uint32Array;
  private readonly holdSrc: Uint32Array;
  private readonly holdDst: Uint32Array;
  private readonly holdDeadline: Float64Array;
  /** Per slot: the site charged (0: none); per site: the slots it holds. */
  private readonly holdSite: Uint16Array;
  private readonly siteHeld = new Uint16Array(MAX_SITE_ID + 1);
  /** The most slots one site may hold; 0 = no quota. */
  private siteQuota = 0;
  private held = 0;
  /** The new identification of the datagram the last successful find() returned (-1: kept as sent). */
  foundNewId = -1;

  constructor(opts: FragmentFollowerOptions) {
    this.addrWords = opts.addrWords;
    this.family = opts.addrWords === 1 ? 4 : 6;
    this.timeoutMs = opts.timeoutMs ?? FRAGMENT_TIMEOUT_MS;
    const w = this.addrWords;
    this.table = new DatagramTable({ capacity: opts.capacity ?? DEFAULT_CAPACITY, probes: MAX_PROBES, addrWords: opts.addrWords, timeoutMs: this.timeoutMs });
    this.node = new Int32Array(this.table.capacity);
    this.newId = new Int32Array(this.table.capacity);
    const hold = opts.holdPackets ?? 64;
    this.holdData = new Uint8Array(hold * HOLD_SLOT_BYTES);
    this.holdLength = new Uint16Array(hold);
    this.holdIngress = new Uint16Array(hold);
    this.holdZone = new Uint16Array(hold);
    this.holdProto = new Uint8Array(hold);
    this.holdIdent = new Uint32Array(hold);
    this.holdSrc = new Uint32Array(hold * w);
    this.holdDst = new Uint32Array(hold * w);
    this.holdDeadline = new Float64Array(hold);
    this.holdSite = new Uint16Array(hold);
  }

  /** Shares the hold slots among `sites` sites (fairShare; one site or none: no quota). */
  setSiteShare(sites: number): void {
    this.siteQuota = sites > 1 ? fairShare(this.holdLength.length, sites) : 0;
  }

  /** Slots one site may hold (0 = no quota). */
  get siteSlotQuota(): number {
    return this.siteQuota;
  }

  /** Early fragments `site` holds now. */
  heldBySite(site: number): number {
    return this.siteHeld[site];
  }

  /** Fragments currently waiting for their first fragment. */
  get heldCount(): number {
    return this.held;
  }

  /**
   * Remembers that the datagram belongs to flow node `node` and leaves with identification `newId` (-1: its own).
   * `addr` holds source words at 0, destination at 4.
   */
  remember(zone: number, proto: number, addr: Uint32Array, ident: number, node: number, now: number, newId = -1): void {
    const slot = this.table.claim(zone, proto, this.family, addr, SRC, DST, ident, now);
    this.node[slot] = node;
    this.newId[slot] = newId;
  }

  /**
   * The flow node a datagram's later fragments follow, or -1. Entries are not removed when their
   * flow ends: the caller checks that the node's key still has this zone, protocol and addresses
   * (a reused flow slot will not), which is cheaper than a scan per ended flow. A hit also sets foundNewId.
   */
  find(zone: number, proto: number, addr: Uint32Array, ident: number, now: number): number {
    const slot = this.table.find(zone, proto, this.family, addr, SRC, DST, ident, now);
    if (slot < 0) return -1;
    this.foundNewId = this.newId[slot];
    return this.node[slot];
  }

  /**
   * Forgets the datagram (lanes: its first fragment, with the same identification as one this lane followed, went to
   * another lane; its later fragments follow it there, not the flow remembered here).
   */
  forget(zone: number, proto: number, addr: Uint32Array, ident: number): void {
    this.table.forget(zone, proto, this.family, addr, SRC, DST, ident);
  }

  /**
   * Holds an early fragment, charged to `site` (0: nobody); returns Drop.None when held, or why it could not be
   * (FragmentQuotaExceeded: the site holds its share; FragmentOverflow: too long, or every slot taken).
   */
  hold(buf: Uint8Array, offset: number, length: number, ingress: number, zone: number, proto: number, addr: Uint32Array, ident: number, now: number, site = 0): number {
    if (length > HOLD_SLOT_BYTES) return Drop.FragmentOverflow;
    const slots = this.holdLength.length;
    let free = -1;
    for (let i = 0; i < slots; i++) {
      if (this.holdLength[i] !== 0 && this.holdDeadline[i] <= now) this.dropHeld(i);
      if (this.holdLength[i] === 0 && free < 0) free = i;
    }
    if (site !== 0 && this.siteQuota !== 0 && this.siteHeld[site] >= this.siteQuota) return Drop.FragmentQuotaExceeded;
    if (free < 0) return Drop.FragmentOverflow;
    this.holdSite[free] = site;
    this.siteHeld[site]++;
    const w = this.addrWords;
    this.holdData.set(buf.subarray(offset, offset + length), free * HOLD_SLOT_BYTES);
    this.holdLength[free] = length;
    this.holdIngress[free] = ingress;
    this.holdZone[free] = zone;
    this.holdProto[free] = proto;
    this.holdIdent[free] = ident;
    for (let k = 0; k < w; k++) {
      this.holdSrc[free * w + k] = addr[SRC + k];
      this.holdDst[free * w + k] = addr[DST + k];
    }
    this.holdDeadline[free] = now + this.timeoutMs;
    this.held++;
    return Drop.None;
  }

  /**
   * Hands every held fragment of the datagram to `take(data, offset, length, ingress)` and frees
   * its slot; returns how many were released.
   */
  release(zone: number, proto: number, addr: Uint32Array, ident: number, take: (data: Uint8Array, offset: number, length: number, ingress: number) => void): number {
    if (this.held === 0) return 0;
    const w = this.addrWords;
    let released = 0;
    for (let i = 0; i < this.holdLength.length; i++) {
      if (this.holdLength[i] === 0) continue;
      if (this.holdZone[i] !== zone || this.holdProto[i] !== proto || this.holdIdent[i] !== ident) continue;
      let same = true;
      for (let k = 0; k < w; k++) {
        if (this.holdSrc[i * w + k] !== addr[SRC + k] || this.holdDst[i * w + k] !== addr[DST + k]) same = false;
      }
      if (!same) continue;
      take(this.holdData, i * HOLD_SLOT_BYTES, this.holdLength[i], this.holdIngress[i]);
      this.dropHeld(i);
      released++;
    }
    return released;
  }

  /** Drops held fragments whose time is up; returns how many. */
  expire(now: number): number {
    let dropped = 0;
    if (this.held === 0) return 0;
    for (let i = 0; i < this.holdLength.length; i++) {
      if (this.holdLength[i] !== 0 && this.holdDeadline[i] <= now) {
        this.dropHeld(i);
        dropped++;
      }
    }
    return dropped;
  }

  private dropHeld(i: number): void {
    this.holdLength[i] = 0;
    this.siteHeld[this.holdSite[i]]--;
    this.held--;
  }

}
