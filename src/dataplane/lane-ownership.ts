/**
 * Which lane owns a packet that found no flow here (docs/ARCHITECTURE.md "Lanes"): the pipeline's side of the
 * shared ownership directory (common/lane-directory.ts). Asked only on a lookup miss, so an established flow's
 * packets never pay for it; a packet another lane handed over is never asked again (no loops: it is set up where
 * it landed).
 *
 *   to a pool address (hairpin, RFC 4787 REQ-9)  ─ the lane whose NAT port slice holds its destination port
 *   a flow another lane claimed                  ─ that lane (a data center's reply whose learning expired)
 *   a source endpoint whose NAT mapping another lane holds ─ that lane (REQ-1 endpoint-independent mapping)
 *
 * The pipeline claims a flow's two keys (original and reply; they differ when a clash port was rewritten) at
 * setup for flows whose replies no NAT port steers, and releases them when the flow ends; SnatPool claims and
 * releases the endpoints of its mappings. The packets to hand over are listed here (index in the batch, lane);
 * the pipeline marks them neither forwarded nor dropped, and the edge copies them into the owner's ring.
 */
import type { LaneDirectory } from '../common/lane-directory.js';
import type { FlowTable } from '../flow/flow-table.js';
import type { SnatPool } from '../nat/snat-pool.js';
import { FragmentSteer } from './fragment-steer.js';
import { AF_INET4, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { DST, SRC, type PacketInfo } from '../wire/packet-info.js';

/** Handoffs listed per process() call before the list grows (a batch's worth; growing is rare and amortised). */
const INITIAL_HANDOFFS = 256;

export class LaneOwnership {
  /** Set by the edge around packets another lane handed here: they stay (never handed on). */
  handedIn = false;
  /** The packets process() found owned by another lane: their batch indices and lanes, `count` of them. */
  count = 0;
  index = new Int32Array(INITIAL_HANDOFFS);
  lane = new Uint8Array(INITIAL_HANDOFFS);
  /** Packets handed over since start (status). */
  handedOff = 0;
  /** Lanes' later fragments: the lane each datagram's first fragment went to (fragment-steer.ts). */
  readonly fragments = new FragmentSteer();
  /** First fragments this lane handed to another (so their later fragments follow: status, tests). */
  fragmentsSteered = 0;

  constructor(readonly directory: LaneDirectory, readonly self: number, private readonly snat: SnatPool | null) {}

  /**
   * The lane that owns the inspected packet `info` (from a site, keyed in `zone`, no flow here), or -1 when this
   * lane takes it. One or two hashes and bucket reads.
   */
  ownerOfMiss(info: PacketInfo, zone: number): number {
    if (this.handedIn) return -1;
    let owner = this.claimOf(info.protocol, info.family, info.addr, info.srcPort, info.dstPort);
    // Claimed by this lane (another zone's flow of the same tuple, say: the directory has no zones): it stays here.
    if (owner >= 0) return owner === this.self ? -1 : owner;
    const snat = this.snat;
    if (snat === null) return -1;
    const protocol = info.protocol;
    const family = info.family === AF_INET4 ? 4 : 6;
    if ((protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) && (family === 4 ? snat.isPoolAddress4(info.addr[DST]) : snat.isPoolAddress6(info.addr, DST))) {
      // A new hairpin: set up by the lane whose slice gave out the addressed port (it holds that mapping).
      owner = snat.laneOfExternal(protocol, info.dstPort);
    } else if (snat.supportsProtocol(protocol)) {
      const dir = this.directory;
      owner = dir.ownerOf(dir.endpointHash(zone, protocol, family, info.addr, SRC, info.srcPort));
    }
    return owner === this.self ? -1 : owner;
  }

  /**
   * The lane that claimed the flow an ICMP error `info` quotes (no flow here), or -1. The flow key is symmetric, so
   * the quoted packet's tuple (RFC 792; RFC 4443 section 2.4: the packet the flow sent) finds the flow's claim:
   * errors about flows no NAT port steers (a data center's, site to site) reach their flow's lane.
   */
  ownerOfIcmpError(info: PacketInfo): number {
    if (this.handedIn) return -1;
    const owner = this.claimOf(info.innerProtocol, info.family, info.innerAddr, info.innerSrcPort, info.innerDstPort);
    return owner === this.self ? -1 : owner;
  }

  /** The lane this one handed the first fragment of `info`'s datagram to (keyed in `zone`), or -1. */
  ownerOfLaterFragment(info: PacketInfo, zone: number, now: number): number {
    if (this.handedIn) return -1;
    return this.fragments.find(zone, info.protocol, info.family, info.addr, SRC, DST, info.fragmentId, now);
  }

  /** The first fragment `info` (keyed in `zone`) goes to `lane`: the fragments that follow it go there too. */
  rememberFragment(info: PacketInfo, zone: number, lane: number, now: number): void {
    this.fragments.remember(zone, info.protocol, info.family, info.addr, SRC, DST, info.fragmentId, lane, now);
    this.fragmentsSteered++;
  }

  /**
   * The lane that claimed the flow of `info` when that is not this one (-1 otherwise): asked for a packet a held
   * hairpin flow here stopped (Pipeline.heldElsewhere), never on the established path.
   */
  ownerOfHeld(info: PacketInfo): number {
    if (this.handedIn) return -1;
    const owner = this.claimOf(info.protocol, info.family, info.addr, info.srcPort, info.dstPort);
    return owner === this.self ? -1 : owner;
  }

  /**
   * The lane that claimed the flow of a tuple (its symmetric key: either direction), or -1: a packet's own tuple, or
   * the one an ICMP error quotes (`addr` holds SRC and DST words). One hash and bucket read.
   */
  private claimOf(protocol: number, family: number, addr: Uint32Array, srcPort: number, dstPort: number): number {
    const dir = this.directory;
    return dir.ownerOf(dir.flowHash(protocol, family === AF_INET4 ? 4 : 6, addr, SRC, DST, srcPort, dstPort));
  }

  /** Lists packet i of the batch being processed as `lane`'s. */
  handTo(i: number, lane: number): void {
    if (this.count === this.index.length) {
      const index = new Int32Array(this.count * 2);
      index.set(this.index);
      const lanes = new Uint8Array(this.count * 2);
      lanes.set(this.lane);
      this.index = index;
      this.lane = lanes;
    }
    this.index[this.count] = i;
    this.lane[this.count] = lane;
    this.count++;
    this.handedOff++;
  }

  /** A flow just set up here whose replies no NAT port steers: both its keys name this lane. */
  claimFlow(table: FlowTable, flow: number): void {
    const a = this.flowHashOf(table, flow * 2);
    const b = this.flowHashOf(table, flow * 2 + 1);
    this.directory.claim(a, this.self);
    if (b !== a) this.directory.claim(b, this.self);
  }

  /** That flow ends: its keys are cleared where they still name this lane. */
  releaseFlow(table: FlowTable, flow: number): void {
    const a = this.flowHashOf(table, flow * 2);
    const b = this.flowHashOf(table, flow * 2 + 1);
    this.directory.release(a, this.self);
    if (b !== a) this.directory.release(b, this.self);
  }

  private flowHashOf(table: FlowTable, node: number): number {
    const ports = table.nodePorts(node);
    return this.directory.flowHash(table.protocol(node >> 1), table.addrWords === 1 ? 4 : 6, table.records, table.srcIndex(node), table.dstIndex(node), ports >>> 16, ports & 0xffff);
  }
}
