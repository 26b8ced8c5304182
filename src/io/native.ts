/**
 * Loader and shared plumbing for tether's native I/O addon (native/src/tether_io.cc), the only code
 * that calls read()/write() on TUN devices and recvmmsg()/sendmmsg() on UDP sockets.
 *
 * The addon is built by node-gyp from native/binding.gyp when `npm ci` runs the package's install
 * script (or by `npm run build:native`) into native/build/Release/tether_io.node. It is loaded
 * lazily, on the first open, so that importing src/io never fails on a machine without it; the
 * first open then throws {@link NativeAddonMissingError}.
 *
 * Reading model: the addon polls the descriptor with libuv (uv_poll_t) on Node's main loop. On a
 * readable event it drains packets into a preallocated {@link PacketBatch} until EAGAIN or the batch
 * is full, then calls JS once with the count. The batch's contents are valid until the callback
 * returns: the next readable event overwrites them.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { NEXT_HOP_DROP } from '../common/ids.js';
import type { PacketBatch } from '../common/packet-batch.js';

/** Where node-gyp puts the addon, relative to the repository root. */
export const ADDON_RELATIVE_PATH = join('native', 'build', 'Release', 'tether_io.node');
/** openTun flag bits (kTunFlag* in tether_io.cc). */
export const TUN_FLAG_MULTI_QUEUE = 1;
export const TUN_FLAG_VNET_HDR = 2;
/** How many directory levels above this file to look for the repository root (src/io, or dist/src/io). */
const MAX_ROOT_SEARCH_DEPTH = 5;

/** Counters kept by the addon for one device or socket. Byte and packet counts are plain numbers (exact to 2^53). */
export interface IoCounters {
  packetsIn: number;
  bytesIn: number;
  /** JS callbacks made for received packets: packetsIn / batchesIn is the mean batch size. */
  batchesIn: number;
  packetsOut: number;
  bytesOut: number;
  /** writeBatch/sendBatch calls. */
  batchesOut: number;
  /** Packets not written because the kernel said EAGAIN/ENOBUFS (the call never blocks). */
  dropsBusy: number;
  /** Received packets larger than a batch slot (TUN: read() longer than the slot; UDP: MSG_TRUNC). */
  dropsTruncated: number;
  /** writeBatch entries whose bytes lie outside the slab, are empty, or (UDP) have port 0. */
  dropsInvalid: number;
  /** Read/receive failures other than EAGAIN, by errno name ("EIO": 3). */
  readErrors: Record<string, number>;
  /** Write/send failures other than EAGAIN, by errno name ("EMSGSIZE": 1). */
  writeErrors: Record<string, number>;
}

/** The addon's handle object (one TUN queue or one UDP socket). Use TunDevice / UdpBatchSocket instead. */
export interface NativeHandle {
  readonly fd: number;
  readonly name: string;
  readonly localPort: number;
  readonly vnetHdrSize: number;
  startReading(
    data: Uint8Array,
    offset: Uint32Array,
    length: Uint32Array,
    slotSize: number,
    headroom: number,
    capacity: number,
    srcAddr: Uint32Array | null,
    srcPort: Uint16Array | null,
    onBatch: (count: number, err: number) => void,
  ): void;
  stopReading(): void;
  writeBatch(
    data: Uint8Array,
    offset: Uint32Array,
    length: Uint32Array,
    indices: Uint32Array | Uint16Array | null,
    from: number,
    to: number,
    dstAddr: Uint32Array | null,
    dstPort: Uint16Array | null,
  ): number;
  counters(): IoCounters;
  close(): void;
}

export interface NativeAddon {
  openTun(name: string, flags: number): NativeHandle;
  openUdp(bind: string, port: number, family: 4 | 6): NativeHandle;
  allocHugePages(bytes: number): ArrayBuffer;
}

/** Thrown by the first open when native/build/Release/tether_io.node is absent or does not load. */
export class NativeAddonMissingError extends Error {
  constructor(detail: string) {
    super(`tether's native I/O addon is not built (${detail}); run npm ci / npm run build:native`);
    this.name = 'NativeAddonMissingError';
  }
}

let addon: NativeAddon | null = null;

function findAddon(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i <= MAX_ROOT_SEARCH_DEPTH; i++) {
    const candidate = join(dir, ADDON_RELATIVE_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

/** Loads the addon once (control plane); throws NativeAddonMissingError with the reason when it cannot. */
export function loadNative(): NativeAddon {
  if (addon) return addon;
  const path = findAddon();
  if (path === null) throw new NativeAddonMissingError(`${ADDON_RELATIVE_PATH} not found`);
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    throw new NativeAddonMissingError(`${path} does not load: ${(e as Error).message}`);
  }
  return addon;
}

/** Called once per batch of received packets, after batch.count and the per-packet fields are set. */
export type BatchHandler = (batch: PacketBatch) => void;
/** Called when the poll fails (the descriptor is no longer usable); reading has stopped. */
export type ReadErrorHandler = (err: Error) => void;

/**
 * The function the addon calls per batch (made once per startReading, not per batch): it completes
 * the batch the way PacketBatch.push would (count, ingress, nextHop, drop) with whole-range fills,
 * then hands it to the pipeline.
 */
export function batchCallback(
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
    batch.ingress.fill(ingress, 0, count);
    batch.nextHop.fill(NEXT_HOP_DROP, 0, count);
    batch.drop.fill(0, 0, count);
    onBatch(batch);
  };
}

/** Checks that `to` lies within the batch before handing a range to the addon (control-plane error, so it throws). */
export function checkRange(batch: PacketBatch, from: number, to: number): void {
  if (!(from >= 0 && from <= to && to <= batch.capacity)) {
    throw new RangeError(`packet range [${from}, ${to}) outside a batch of capacity ${batch.capacity}`);
  }
}

/** Checks an index-list write's count (control-plane error, so it throws). */
export function checkIndexCount(indices: Uint32Array | Uint16Array, count: number): void {
  if (!(count >= 0 && count <= indices.length)) throw new RangeError(`count ${count} exceeds ${indices.length} indices`);
}

/**
 * What TUN devices and UDP sockets share: the addon handle, its counters, stop and close. Closing
 * is safe inside the batch callback and idempotent; a closed endpoint throws on writes.
 */
export abstract class NativeEndpoint {
  readonly fd: number;
  protected readonly handle: NativeHandle;
  private isClosed = false;

  protected constructor(handle: NativeHandle) {
    this.handle = handle;
    this.fd = handle.fd;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Hands the batch (and, for UDP, the source-address arrays) to the addon's poll; see the subclasses. */
  protected startPolling(
    batch: PacketBatch,
    srcAddr: Uint32Array | null,
    srcPort: Uint16Array | null,
    ingress: number,
    onBatch: BatchHandler,
    onError: ReadErrorHandler | undefined,
    what: string,
  ): void {
    this.handle.startReading(
      batch.data,
      batch.offset,
      batch.length,
      batch.slotSize,
      batch.headroom,
      batch.capacity,
      srcAddr,
      srcPort,
      batchCallback(batch, ingress, onBatch, onError, what),
    );
  }

  /** Stops polling; packets queue in the kernel (TUN: up to txqueuelen; UDP: SO_RCVBUF) until reading starts again. */
  stopReading(): void {
    if (!this.isClosed) this.handle.stopReading();
  }

  /** A snapshot of the addon's counters (allocates: control plane). */
  counters(): IoCounters {
    return this.handle.counters();
  }

  /** Stops polling and closes the descriptor (a TUN interface disappears with its last queue). */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.handle.close();
  }
}
