/**
 * TUN devices (tun(4), Documentation/networking/tuntap.rst): the edge's door between the kernel's
 * IP stack and tether's userspace data plane.
 *
 *   kernel routes a packet to tunX ──▶ read() ×N into a PacketBatch ──▶ onBatch(batch) once
 *   pipeline ──▶ writeBatch(batch, from, to) ──▶ write() per packet ──▶ kernel receives it on tunX
 *
 * The device is opened with IFF_TUN | IFF_NO_PI: every read returns one whole IP packet (v4 or v6,
 * told apart by the version nibble) with no 4-byte packet-information prefix, and every write is
 * one IP packet. It is not persistent: closing the last descriptor removes the interface.
 *
 * Multi-queue (IFF_MULTI_QUEUE): open the same name again with multiQueue to get another queue; the
 * kernel spreads flows across queues by hash. Each queue is a TunDevice with its own batch.
 *
 * virtio-net header (IFF_VNET_HDR, vnetHdr option): every packet is preceded by a 12-byte
 * virtio_net_hdr_mrg_rxbuf. Without offloads the addon reads it into a scratch and writes a zeroed one, so the
 * batch holds plain IP packets either way.
 *
 * Offloads (offload option: IFF_VNET_HDR + TUNSETOFFLOAD with TUN_F_CSUM | TUN_F_TSO4/6 | TUN_F_USO4/6): the
 * kernel hands over, and accepts, GSO super-packets of up to 64 KiB (one syscall for ~45 MTU-sized TCP
 * segments) and packets with a partial checksum. Each packet's header lands in batch.vnet (PacketBatch's
 * VNET_* words) and is written back with it, so a super-packet read here and forwarded to another TUN with
 * offloads is segmented by the kernel there. The batch must hold 64 KiB per slot (offloadBatch()). Every write
 * passes batch.vnet: a TUN without offloads refuses an offloaded packet (IoCounters.dropsOffload) instead of
 * sending a wrong checksum; the edge segments those in software first (src/wire/gso.ts).
 */
import { getSystemErrorName } from 'node:util';
import { NEXT_HOP_DROP } from '../common/ids.js';
import { DEFAULT_HEADROOM, PacketBatch } from '../common/packet-batch.js';
import { loadNative, TUN_FLAG_MULTI_QUEUE, TUN_FLAG_OFFLOAD, TUN_FLAG_VNET_HDR, type BusyPollCounters, type IoCounters, type NativeHandle } from './native.js';

export type { BusyPollCounters } from './native.js';

/** The largest busy-poll budget, µs (kBusyPollMaxUs in tether_io.cc): beyond a millisecond a spin is a core. */
export const BUSY_POLL_MAX_US = 1000;

/** The largest packet a TUN with offloads hands over: an IP datagram's maximum (RFC 791 total length, 16 bits). */
export const OFFLOAD_MAX_PACKET = 0xffff;
/**
 * Slot of an offload batch: headroom, the largest GSO packet, rounded up to 64-byte lines. 64 slots make a batch
 * of about 4.2 MiB per TUN: bounded, and a read of 64 super-packets carries up to ~2,900 MTU-sized segments.
 */
export const OFFLOAD_SLOT_SIZE = (DEFAULT_HEADROOM + OFFLOAD_MAX_PACKET + 63) & ~63;
export const OFFLOAD_BATCH_CAPACITY = 64;

/** A read batch for a TUN with offloads: slots that hold a 64 KiB super-packet (see OFFLOAD_SLOT_SIZE). */
export function offloadBatch(capacity = OFFLOAD_BATCH_CAPACITY): PacketBatch {
  return new PacketBatch(capacity, OFFLOAD_SLOT_SIZE);
}

export interface TunOptions {
  /** IFF_MULTI_QUEUE: this fd is one queue of a multi-queue device; every queue must set it. */
  multiQueue?: boolean;
  /** IFF_VNET_HDR with a 12-byte header, no offloads (see the file comment). */
  vnetHdr?: boolean;
  /** IFF_VNET_HDR and TUNSETOFFLOAD: GSO super-packets and partial checksums in and out (see the file comment). */
  offload?: boolean;
}

/** Called once per batch of received packets, after batch.count and the per-packet fields are set. */
export type BatchHandler = (batch: PacketBatch) => void;
/** Called when the poll fails (the descriptor is no longer usable); reading has stopped. */
export type ReadErrorHandler = (err: Error) => void;

/**
 * Write slots per TUN (kWriteSlots in tether_io.cc): each (batch, index list) pair written to one TUN keeps its arrays
 * bound in the addon, so a write passes three numbers and the addon re-reads no typed array. The edge writes a TUN
 * from a handful of batches (its read batches, the pipeline's generated and feedback batches, GRO's arena, software
 * GSO's segments); beyond this many the oldest binding is replaced (a rebind costs what every write used to).
 */
const WRITE_SLOTS = 8;

/** Up to this many packets a read batch's per-packet fields are reset by a loop rather than fill() (see batchCallback). */
const SMALL_BATCH = 16;

/**
 * The function the addon calls per batch (made once per startReading, not per batch): it completes
 * the batch the way PacketBatch.push would (count, ingress, nextHop, drop) with whole-range fills,
 * then hands it to the pipeline.
 */
function batchCallback(
  batch: PacketBatch,
  ingress: number,
  onBatch: BatchHandler,
  onError: ReadErrorHandler | undefined,
  what: string,
): (count: number, err: number) => void {
  return (count: number, err: number): void => {
    if (err !== 0) {
      const error = new Error(`${what}: polling failed: ${getSystemErrorName(err)}; reading stopped`);
      if (onError) onError(error);
      else throw error;
      return;
    }
    batch.count = count;
    if (count <= SMALL_BATCH) {
      // Most wakeups at a low packet rate carry one packet or a few: three fill() calls would each enter V8's C++
      // builtin (TypedArray.prototype.fill is not inlined), a fixed cost per wakeup that a loop here does not pay.
      const ingressOf = batch.ingress;
      const nextHop = batch.nextHop;
      const drop = batch.drop;
      for (let i = 0; i < count; i++) {
        ingressOf[i] = ingress;
        nextHop[i] = NEXT_HOP_DROP;
        drop[i] = 0;
      }
    } else {
      batch.ingress.fill(ingress, 0, count);
      batch.nextHop.fill(NEXT_HOP_DROP, 0, count);
      batch.drop.fill(0, 0, count);
    }
    onBatch(batch);
  };
}

/**
 * One queue of a TUN device: non-blocking, close-on-exec, read by libuv polling on the main loop.
 * Closing is safe inside the batch callback and idempotent; a closed device throws on writes.
 */
export class TunDevice {
  readonly fd: number;
  /** The interface name the kernel gave (the requested one, or tunN for a name like "tun%d" or ""). */
  readonly name: string;
  /** Bytes of virtio-net header per packet on the wire of the fd: 0, or 12 with vnetHdr. */
  readonly vnetHdrSize: number;
  /** True when TUNSETOFFLOAD is on: reads may return super-packets, writes take them (batch.vnet). */
  readonly offloads: boolean;
  private readonly handle: NativeHandle;
  private isClosed = false;
  /** What each write slot is bound to (see WRITE_SLOTS): the batch, its data array (a check that it is the same), the index list. */
  private readonly slotBatch: (PacketBatch | null)[] = new Array<PacketBatch | null>(WRITE_SLOTS).fill(null);
  private readonly slotData: (Uint8Array | null)[] = new Array<Uint8Array | null>(WRITE_SLOTS).fill(null);
  private readonly slotIndices: (Uint32Array | Uint16Array | null)[] = new Array<Uint32Array | Uint16Array | null>(WRITE_SLOTS).fill(null);
  /** The slot the next new binding replaces (round robin). */
  private nextSlot = 0;

  /** @internal use {@link openTun}. */
  constructor(handle: NativeHandle) {
    this.handle = handle;
    this.fd = handle.fd;
    this.name = handle.name;
    this.vnetHdrSize = handle.vnetHdrSize;
    this.offloads = handle.offloads !== 0;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Starts reading packets into `batch`: on each readable event the addon reads until EAGAIN or
   * until the batch is full, sets offset/length per packet (at i * slotSize + headroom), and this
   * calls `onBatch(batch)` once with batch.count set, ingress set to `ingress` and nextHop/drop
   * reset. The batch's contents are valid until onBatch returns. Calling again replaces the batch
   * and handler. A throw from onBatch becomes an uncaught exception.
   */
  startReading(batch: PacketBatch, ingress: number, onBatch: BatchHandler, onError?: ReadErrorHandler): void {
    if (this.offloads && batch.maxPacketSize < OFFLOAD_MAX_PACKET) {
      throw new RangeError(`tun ${this.name}: a TUN with offloads needs slots of ${OFFLOAD_MAX_PACKET} bytes after the headroom (offloadBatch())`);
    }
    this.handle.startReading(
      batch.data,
      batch.offset,
      batch.length,
      batch.slotSize,
      batch.headroom,
      batch.capacity,
      batchCallback(batch, ingress, onBatch, onError, `tun ${this.name}`),
      batch.vnet,
    );
  }

  /** Stops polling; packets queue in the kernel (up to the device's txqueuelen) until reading starts again. */
  stopReading(): void {
    if (!this.isClosed) this.handle.stopReading();
  }

  /**
   * Writes packets from..to-1 of `batch` (each offset[i], length[i], with its virtio-net header from batch.vnet)
   * with one write() each, without blocking: EAGAIN drops the rest of the range (counted as dropsBusy). Returns
   * the number written.
   */
  writeBatch(batch: PacketBatch, from = 0, to: number = batch.count): number {
    // A range outside the batch is a caller's bug (control plane), so it throws.
    if (!(from >= 0 && from <= to && to <= batch.capacity)) {
      throw new RangeError(`packet range [${from}, ${to}) outside a batch of capacity ${batch.capacity}`);
    }
    return this.handle.writeBound(this.slotFor(batch, null), from, to);
  }

  /** Writes the packets whose indices are indices[0..count) (e.g. those the pipeline sent to this port). */
  writeIndices(batch: PacketBatch, indices: Uint32Array | Uint16Array, count: number): number {
    if (!(count >= 0 && count <= indices.length)) throw new RangeError(`count ${count} exceeds ${indices.length} indices`);
    return this.handle.writeBound(this.slotFor(batch, indices), 0, count);
  }

  /**
   * The write slot bound to (batch, indices), binding one (the oldest replaced) on a miss. A batch's arrays are
   * readonly, so the batch and its data array name the binding (the data check catches a batch object reused
   * with other memory).
   */
  private slotFor(batch: PacketBatch, indices: Uint32Array | Uint16Array | null): number {
    const batches = this.slotBatch;
    for (let k = 0; k < WRITE_SLOTS; k++) {
      if (batches[k] === batch && this.slotIndices[k] === indices && this.slotData[k] === batch.data) return k;
    }
    if (this.isClosed) throw new Error(`tun ${this.name}: the device is closed`);
    const k = this.nextSlot;
    this.nextSlot = (k + 1) % WRITE_SLOTS;
    this.handle.bindWrite(k, batch.data, batch.offset, batch.length, indices, batch.vnet);
    batches[k] = batch;
    this.slotData[k] = batch.data;
    this.slotIndices[k] = indices;
    return k;
  }

  /** @internal The addon's handle (the flow cache installs entries naming it: src/io/flow-cache.ts). */
  get native(): NativeHandle {
    return this.handle;
  }

  /** A snapshot of the addon's counters (allocates: control plane). */
  counters(): IoCounters {
    return this.handle.counters();
  }

  /** Stops polling and closes the descriptor (the interface disappears with its last queue). */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.handle.close();
    // The addon let go of the bindings; so do we (a closed device keeps no batch alive).
    this.slotBatch.fill(null);
    this.slotData.fill(null);
    this.slotIndices.fill(null);
  }
}

/**
 * Opens (creating if needed) the TUN interface `name` (at most 15 bytes; "" or "tun%d" lets the
 * kernel pick). Throws an Error whose message says what is wrong: /dev/net/tun missing, "needs
 * CAP_NET_ADMIN (run as root)", or the errno name (EBUSY, EINVAL, ...), with `.code` set to it.
 */
export function openTun(name: string, opts: TunOptions = {}): TunDevice {
  const flags = (opts.multiQueue ? TUN_FLAG_MULTI_QUEUE : 0) | (opts.vnetHdr ? TUN_FLAG_VNET_HDR : 0) | (opts.offload ? TUN_FLAG_OFFLOAD : 0);
  return new TunDevice(loadNative().openTun(name, flags));
}

/**
 * Busy polling of every TUN read on this thread (native/src/tether_io.cc "busy polling"): after a wakeup that carried
 * packets, spin with zero-timeout polls over the TUNs until none has had a packet for `us` microseconds (a session
 * is capped at 1 ms, then libuv runs). Trades CPU for the thread wakeup the next packet would pay. 0 turns it off.
 */
export function setBusyPoll(us: number): void {
  if (!(Number.isFinite(us) && us >= 0 && us <= BUSY_POLL_MAX_US)) throw new RangeError(`busy poll of ${us} µs: must be 0..${BUSY_POLL_MAX_US}`);
  loadNative().setBusyPoll(us);
}

/** This thread's busy-poll figures since start (allocates: control plane). */
export function busyPollCounters(): BusyPollCounters {
  return loadNative().busyPollCounters();
}
