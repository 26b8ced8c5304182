/**
 * The handoff ring between two lanes (docs/ARCHITECTURE.md "Lanes"): a single-producer single-consumer byte ring
 * in a SharedArrayBuffer that carries whole packets — bytes, ingress port, virtio-net header — from the lane that
 * read a packet to the lane that owns its flow. One ring per ordered pair of lanes, so each ring has exactly one
 * writer and one reader and needs no lock: FIFO per ring, hence per flow (a flow has one owner, and packets of it
 * that one lane reads go through one ring).
 *
 *   control (64 bytes, its own cache line):  [HEAD] bytes consumed · [TAIL] bytes published · [BELL] wakeups
 *   data (capacity bytes, a power of two):   record · record · … · PAD (to the end) · record …
 *   record: u32 length · u32 ingress (bit 31: DELIVERY) · 6 × u16 virtio-net header · u32 next hop · bytes, padded to 8
 *
 * Two kinds of record: a *handoff* (push) is a packet the receiving lane runs through its pipeline as if it had read
 * it; a *delivery* (pushDelivery) is a packet the sending lane already forwarded to a port only the receiving lane
 * can send on (a tunnel onramp: tunnel state lives on lane 0), carrying its next hop, which the receiver delivers
 * without a second pipeline pass. pop() returns a run of one kind (`delivery` says which), so the caller never has
 * to sort a batch.
 *
 * HEAD and TAIL count bytes since the start and wrap at 2^32 (>>> 0), so full and empty never look alike; a
 * position in the data is the count & (capacity - 1). A record never straddles the end: where one does not fit
 * before the end, a PAD word sends the reader to the start. The producer copies records in, then publish()
 * stores TAIL once per batch (Atomics.store: the JavaScript memory model orders the plain writes before it for a
 * reader that Atomics.load()s it); the consumer copies records out, then stores HEAD once. Nothing allocates per
 * packet but the view `TypedArray.set` needs for a bulk copy of a packet longer than BULK_COPY bytes (the plain
 * loop below it costs more than the view past that size).
 */
import { NEXT_HOP_DROP } from './ids.js';
import { VNET_WORDS, type PacketBatch } from './packet-batch.js';

/** Control words (Int32, in the first 64 bytes). */
const HEAD = 0;
const TAIL = 1;
/** Bumped by the producer after a publish: a consumer that sleeps waits on it (Atomics.waitAsync). */
const BELL = 2;
/** The control block is one cache line: the data never shares a line with the hot counters. */
export const RING_CONTROL_BYTES = 64;
/** Record header bytes: length, ingress, the virtio-net header (VNET_WORDS u16), the next hop of a delivery. */
export const RECORD_HEADER = 24;
const R_LENGTH = 0;
const R_INGRESS = 1;
/** u16 index of the virtio-net header within a record (byte 8). */
const R_VNET16 = 4;
/** u32 index of a delivery's next hop (byte 20; 0 in a handoff). */
const R_NEXT_HOP = 5;
/** In the ingress word: the record is a delivery (ports are < 2^16, so bit 31 is free). */
export const RECORD_DELIVERY = 0x80000000;
/** Records start on 8-byte boundaries (the u32/u16 header views stay aligned). */
const RECORD_ALIGN = 8;
/** A length word that means "the rest of the data up to its end is padding". */
const PAD = 0xffffffff;
/** Up to this many bytes a copy is a plain loop (no view object); above it TypedArray.set on a subarray. */
const BULK_COPY = 128;
/** Smallest and largest data areas (bytes): room for a 64 KiB super-packet, and under the 2^31 counter horizon. */
export const MIN_RING_BYTES = 1 << 17;
export const MAX_RING_BYTES = 1 << 30;

function align(n: number): number {
  return (n + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1);
}

function copyBytes(dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number): void {
  if (length > BULK_COPY) {
    dst.set(src.subarray(srcOffset, srcOffset + length), dstOffset);
    return;
  }
  for (let k = 0; k < length; k++) dst[dstOffset + k] = src[srcOffset + k];
}

export class HandoffRing {
  /** Pass this to the other lane (postMessage / workerData) and wrap it there with `new HandoffRing(buffer)`. */
  readonly buffer: SharedArrayBuffer;
  /** Bytes of the data area. */
  readonly capacity: number;
  private readonly control: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly words: Uint32Array;
  private readonly halves: Uint16Array;
  private readonly mask: number;
  /** The producer's TAIL before publish() (only the producer's instance uses it). */
  private tail: number;
  /** Consumer: whether the run the last pop() returned was of deliveries (next hops set) or of handoffs. */
  delivery = false;

  /** A new ring of `capacity` data bytes (a power of two, MIN_RING_BYTES..MAX_RING_BYTES). */
  static create(capacity: number): HandoffRing {
    if (!Number.isInteger(capacity) || capacity < MIN_RING_BYTES || capacity > MAX_RING_BYTES || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`handoff ring: capacity must be a power of two ${MIN_RING_BYTES}..${MAX_RING_BYTES} bytes, got ${capacity}`);
    }
    return new HandoffRing(new SharedArrayBuffer(RING_CONTROL_BYTES + capacity));
  }

  /** A view of a ring made by create() (in this thread or another). */
  constructor(buffer: SharedArrayBuffer) {
    const capacity = buffer.byteLength - RING_CONTROL_BYTES;
    if (capacity < MIN_RING_BYTES || (capacity & (capacity - 1)) !== 0) throw new RangeError(`handoff ring: a buffer of ${buffer.byteLength} bytes is not a ring`);
    this.buffer = buffer;
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.control = new Int32Array(buffer, 0, RING_CONTROL_BYTES / 4);
    this.bytes = new Uint8Array(buffer, RING_CONTROL_BYTES, capacity);
    this.words = new Uint32Array(buffer, RING_CONTROL_BYTES, capacity / 4);
    this.halves = new Uint16Array(buffer, RING_CONTROL_BYTES, capacity / 2);
    this.tail = Atomics.load(this.control, TAIL) >>> 0;
  }

  /** Bytes published and not yet consumed (either side; a snapshot). */
  get used(): number {
    return (Atomics.load(this.control, TAIL) - Atomics.load(this.control, HEAD)) >>> 0;
  }

  /** The doorbell's value: a consumer reads it before it drains, then waits while it still holds it. */
  get bell(): number {
    return Atomics.load(this.control, BELL);
  }

  /** The doorbell word for Atomics.waitAsync (the control array and the index of BELL in it). */
  get bellWord(): [Int32Array, number] {
    return [this.control, BELL];
  }

  /**
   * Producer: copies packet i of `batch` (bytes, ingress, virtio-net header) into the ring, unpublished until
   * publish(). False when the ring has no room for it (the caller counts the drop): never blocks, never
   * overwrites what the consumer has not read.
   */
  push(batch: PacketBatch, i: number): boolean {
    return this.record(batch, i, 0, 0);
  }

  /**
   * Producer: packet i of `batch`, already forwarded by this lane, for the consumer to deliver to `nextHop` as it is
   * (a delivery record). False when the ring has no room, as push().
   */
  pushDelivery(batch: PacketBatch, i: number, nextHop: number): boolean {
    return this.record(batch, i, RECORD_DELIVERY, nextHop);
  }

  private record(batch: PacketBatch, i: number, kind: number, nextHop: number): boolean {
    const length = batch.length[i];
    const need = RECORD_HEADER + align(length);
    const head = Atomics.load(this.control, HEAD) >>> 0;
    let tail = this.tail;
    let at = tail & this.mask;
    const toEnd = this.capacity - at;
    const skip = toEnd < need ? toEnd : 0;
    if (((tail - head) >>> 0) + skip + need > this.capacity) return false;
    if (skip !== 0) {
      this.words[at >>> 2] = PAD;
      tail = (tail + skip) >>> 0;
      at = 0;
    }
    const w = at >>> 2;
    this.words[w + R_LENGTH] = length;
    this.words[w + R_INGRESS] = (batch.ingress[i] | kind) >>> 0;
    this.words[w + R_NEXT_HOP] = nextHop;
    const h = (at >>> 1) + R_VNET16;
    const v = i * VNET_WORDS;
    for (let k = 0; k < VNET_WORDS; k++) this.halves[h + k] = batch.vnet[v + k];
    copyBytes(this.bytes, at + RECORD_HEADER, batch.data, batch.offset[i], length);
    this.tail = (tail + need) >>> 0;
    return true;
  }

  /** Producer: makes every pushed record visible to the consumer and rings the doorbell (once per batch). */
  publish(): void {
    if ((Atomics.load(this.control, TAIL) >>> 0) === this.tail) return;
    Atomics.store(this.control, TAIL, this.tail | 0);
    Atomics.add(this.control, BELL, 1);
    Atomics.notify(this.control, BELL);
  }

  /**
   * Consumer: appends published records of one kind — the kind of the first one, left in `delivery` — to `batch`
   * (from batch.count, as PacketBatch.push would: drop and metadata reset; nextHop NEXT_HOP_DROP for a handoff, the
   * record's for a delivery) while it has room and each packet fits a slot; returns how many it appended. A record
   * longer than the batch's slots (a super-packet into a batch without offload slots) is consumed and counted
   * in `tooLong` (the caller's drop counter), never left to block the ring.
   */
  pop(batch: PacketBatch, tooLong?: Float64Array, tooLongIndex = 0): number {
    const tail = Atomics.load(this.control, TAIL) >>> 0;
    let head = Atomics.load(this.control, HEAD) >>> 0;
    let n = 0;
    let kind = -1;
    while (head !== tail && batch.count < batch.capacity) {
      let at = head & this.mask;
      let w = at >>> 2;
      if (this.words[w + R_LENGTH] === PAD) {
        head = (head + this.capacity - at) >>> 0;
        at = 0;
        w = 0;
        if (head === tail) break;
      }
      const ingress = this.words[w + R_INGRESS];
      const recordKind = (ingress & RECORD_DELIVERY) >>> 0;
      if (kind < 0) {
        kind = recordKind;
        this.delivery = recordKind !== 0;
      } else if (recordKind !== kind) break; // the next run starts here
      const length = this.words[w + R_LENGTH];
      head = (head + RECORD_HEADER + align(length)) >>> 0;
      if (length > batch.maxPacketSize) {
        if (tooLong !== undefined) tooLong[tooLongIndex]++;
        continue;
      }
      const i = batch.count++;
      const to = i * batch.slotSize + batch.headroom;
      copyBytes(batch.data, to, this.bytes, at + RECORD_HEADER, length);
      batch.offset[i] = to;
      batch.length[i] = length;
      batch.ingress[i] = (ingress & ~RECORD_DELIVERY) >>> 0;
      batch.nextHop[i] = kind === 0 ? NEXT_HOP_DROP : this.words[w + R_NEXT_HOP];
      batch.drop[i] = 0;
      batch.family[i] = 0;
      const h = (at >>> 1) + R_VNET16;
      const v = i * VNET_WORDS;
      for (let k = 0; k < VNET_WORDS; k++) batch.vnet[v + k] = this.halves[h + k];
      n++;
    }
    Atomics.store(this.control, HEAD, head | 0);
    return n;
  }
}
