/**
 * A batch of packets in one preallocated slab, the unit every stage of the data plane works on
 * (the shape of wireguard-go's Read(bufs, sizes)): one call moves many packets, nothing is
 * allocated per packet.
 *
 * Slot i occupies data[i * slotSize, (i + 1) * slotSize). A packet is written at
 * offset[i] = i * slotSize + headroom, so an encapsulation can prepend its header in place
 * by moving offset[i] back into the headroom.
 *
 * Inputs per packet: offset, length, ingress (the port it arrived on, see ids.ts).
 * Outputs per packet, written by the pipeline: nextHop (a port, or NEXT_HOP_DROP) and drop (a Drop reason).
 *
 * Metadata per packet (struct of arrays, the shape of VPP's buffer metadata): the FIRST inspection of a
 * packet (the pipeline's) records what it learned — family, header offsets, protocol, ports, TCP flags,
 * where the MSS option is — so that stages after it (delivery, encapsulation) read it instead of parsing
 * the packet again. Valid for a packet the pipeline forwarded (nextHop is a port); ports are as the packet
 * leaves (after NAT). push() clears them.
 *
 * virtio-net header per packet (`vnet`, VNET_WORDS words per packet: the fields of struct virtio_net_hdr,
 * virtio 1.x section 5.1.6): filled by a TUN read with offloads (src/io/tun.ts), all zero otherwise. A
 * non-zero gso_type marks a GSO super-packet (up to 64 KiB: many TCP segments or UDP datagrams of gso_size
 * payload bytes behind one header); the NEEDS_CSUM flag a packet whose L4 checksum field holds only the
 * pseudo-header sum, to be completed over [csum_start, end). Offsets are relative to the packet's first byte,
 * so they stay valid as long as the packet is rewritten in place. Such packets leave only through a TUN with
 * offloads, or after software segmentation (src/wire/gso.ts).
 */
import { NEXT_HOP_DROP } from './ids.js';

/** What an inspection learned that later stages read (wire/packet-info.ts's PacketInfo has these fields). */
export interface InspectionRecord {
  readonly family: number;
  readonly l3Offset: number;
  readonly l4Offset: number;
  readonly protocol: number;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly tcpFlags: number;
  readonly tcpMssOffset: number;
}

export const DEFAULT_HEADROOM = 128;
export const DEFAULT_SLOT_SIZE = 2048;

/** Words of `vnet` per packet, and each field's index (mirrored in native/src/tether_io.cc, kVnet*). */
export const VNET_WORDS = 6;
export const VNET_FLAGS = 0;
export const VNET_GSO_TYPE = 1;
export const VNET_HDR_LEN = 2;
export const VNET_GSO_SIZE = 3;
export const VNET_CSUM_START = 4;
export const VNET_CSUM_OFFSET = 5;
/** virtio 1.x section 5.1.6: flags and gso_type values (VIRTIO_NET_HDR_F_*, VIRTIO_NET_HDR_GSO_*). */
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_TCPV6 = 4;
/** UDP segmentation (USO, <linux/virtio_net.h> VIRTIO_NET_HDR_GSO_UDP_L4): one datagram per gso_size. */
export const VNET_GSO_UDP_L4 = 5;
/** Set on top of TCPV4/TCPV6 when the stream uses ECN (the CWR flag then stays on the first segment only). */
export const VNET_GSO_ECN = 0x80;

export class PacketBatch {
  readonly capacity: number;
  readonly slotSize: number;
  readonly headroom: number;
  readonly data: Uint8Array;
  readonly offset: Uint32Array;
  readonly length: Uint32Array;
  readonly ingress: Uint16Array;
  readonly nextHop: Uint16Array;
  readonly drop: Uint8Array;
  /** Metadata (see the file header): IP version (4 or 6; 0 = not inspected), absolute header offsets, ... */
  readonly family: Uint8Array;
  readonly l3Offset: Uint32Array;
  readonly l4Offset: Uint32Array;
  readonly protocol: Uint8Array;
  readonly srcPort: Uint16Array;
  readonly dstPort: Uint16Array;
  readonly tcpFlags: Uint8Array;
  /** Absolute offset of the 2-byte MSS value of a SYN's MSS option; 0 = none. */
  readonly mssOffset: Uint32Array;
  /**
   * The flow node that forwarded the packet (flow index * 2 + direction, in the flow table of its family), -1
   * when none did (an ICMP error, the edge's own echo reply). Valid, like the metadata above, for a packet the
   * pipeline forwarded. Read by captures to name the flow and its decision.
   */
  readonly flowNode: Int32Array;
  /** virtio-net header per packet (see the file header): VNET_WORDS words each, zero for a plain packet. */
  readonly vnet: Uint16Array;
  count = 0;

  constructor(capacity: number, slotSize = DEFAULT_SLOT_SIZE, headroom = DEFAULT_HEADROOM) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`batch capacity must be a positive integer, got ${capacity}`);
    if (headroom >= slotSize) throw new RangeError(`headroom ${headroom} must be smaller than the slot size ${slotSize}`);
    this.capacity = capacity;
    this.slotSize = slotSize;
    this.headroom = headroom;
    this.data = new Uint8Array(capacity * slotSize);
    this.offset = new Uint32Array(capacity);
    this.length = new Uint32Array(capacity);
    this.ingress = new Uint16Array(capacity);
    this.nextHop = new Uint16Array(capacity).fill(NEXT_HOP_DROP);
    this.drop = new Uint8Array(capacity);
    this.family = new Uint8Array(capacity);
    this.l3Offset = new Uint32Array(capacity);
    this.l4Offset = new Uint32Array(capacity);
    this.protocol = new Uint8Array(capacity);
    this.srcPort = new Uint16Array(capacity);
    this.dstPort = new Uint16Array(capacity);
    this.tcpFlags = new Uint8Array(capacity);
    this.mssOffset = new Uint32Array(capacity);
    this.flowNode = new Int32Array(capacity).fill(-1);
    this.vnet = new Uint16Array(capacity * VNET_WORDS);
  }

  /** True when packet i is a GSO super-packet or carries a partial checksum (it needs a TUN with offloads, or software). */
  offloaded(i: number): boolean {
    const v = i * VNET_WORDS;
    return this.vnet[v + VNET_GSO_TYPE] !== VNET_GSO_NONE || (this.vnet[v + VNET_FLAGS] & VNET_F_NEEDS_CSUM) !== 0;
  }

  /** Marks packet i as plain: no GSO, checksum complete. */
  clearVnet(i: number): void {
    this.vnet.fill(0, i * VNET_WORDS, (i + 1) * VNET_WORDS);
  }

  /** Largest packet a slot holds after its headroom. */
  get maxPacketSize(): number {
    return this.slotSize - this.headroom;
  }

  clear(): void {
    this.count = 0;
  }

  /**
   * Copies `length` bytes from `src` into the next slot, tagged with its ingress port; returns the
   * packet's index, or -1 when the batch is full or the packet does not fit a slot.
   */
  push(src: Uint8Array, srcOffset: number, length: number, ingress: number): number {
    if (this.count >= this.capacity || length > this.slotSize - this.headroom) return -1;
    const i = this.count++;
    const at = i * this.slotSize + this.headroom;
    this.data.set(src.subarray(srcOffset, srcOffset + length), at);
    this.offset[i] = at;
    this.length[i] = length;
    this.ingress[i] = ingress;
    this.nextHop[i] = NEXT_HOP_DROP;
    this.drop[i] = 0;
    this.family[i] = 0;
    this.clearVnet(i);
    return i;
  }

  /** Records packet i's inspection (the metadata above); allocates nothing. */
  record(i: number, info: InspectionRecord): void {
    this.family[i] = info.family;
    this.l3Offset[i] = info.l3Offset;
    this.l4Offset[i] = info.l4Offset;
    this.protocol[i] = info.protocol;
    this.srcPort[i] = info.srcPort;
    this.dstPort[i] = info.dstPort;
    this.tcpFlags[i] = info.tcpFlags;
    this.mssOffset[i] = info.tcpMssOffset;
  }

  /** A view of packet i's bytes (allocates a view: for tests and the control plane, not the hot path). */
  packet(i: number): Uint8Array {
    return this.data.subarray(this.offset[i], this.offset[i] + this.length[i]);
  }
}
