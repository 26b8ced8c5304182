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
 */
import { NEXT_HOP_DROP } from './ids.js';

export const DEFAULT_HEADROOM = 128;
export const DEFAULT_SLOT_SIZE = 2048;

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
    return i;
  }

  /** A view of packet i's bytes (allocates a view: for tests and the control plane, not the hot path). */
  packet(i: number): Uint8Array {
    return this.data.subarray(this.offset[i], this.offset[i] + this.length[i]);
  }
}
