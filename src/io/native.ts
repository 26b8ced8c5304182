/**
 * Loader and types of tether's native I/O addon (native/src/tether_io.cc), the only code that calls
 * read()/write() on TUN devices (the TypeScript face is src/io/tun.ts), and of its batched crypto: ESP
 * (native/src/esp.cc; src/io/esp-crypto.ts) and WireGuard (native/src/wireguard.cc; src/io/wg-crypto.ts).
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

/** Where node-gyp puts the addon, relative to the repository root. */
export const ADDON_RELATIVE_PATH = join('native', 'build', 'Release', 'tether_io.node');
/** openTun flag bits (kTunFlag* in tether_io.cc). */
export const TUN_FLAG_MULTI_QUEUE = 1;
export const TUN_FLAG_VNET_HDR = 2;
/** IFF_VNET_HDR plus TUNSETOFFLOAD (checksum, TSO4/6, USO4/6): GSO super-packets in and out. */
export const TUN_FLAG_OFFLOAD = 4;
/** How many directory levels above this file to look for the repository root (src/io, or dist/src/io). */
const MAX_ROOT_SEARCH_DEPTH = 5;

/** Counters kept by the addon for one TUN queue. Byte and packet counts are plain numbers (exact to 2^53). */
export interface IoCounters {
  packetsIn: number;
  bytesIn: number;
  /** JS callbacks made for received packets: packetsIn / batchesIn is the mean batch size. */
  batchesIn: number;
  packetsOut: number;
  bytesOut: number;
  /** writeBound calls (TunDevice.writeBatch). */
  batchesOut: number;
  /** Packets not written because the kernel said EAGAIN (the call never blocks). */
  dropsBusy: number;
  /** Received packets larger than a batch slot (read() longer than the slot). */
  dropsTruncated: number;
  /** writeBatch entries whose bytes lie outside the slab or are empty. */
  dropsInvalid: number;
  /** writeBatch entries with GSO or a partial checksum to a queue without offloads (the caller should segment). */
  dropsOffload: number;
  /** GSO super-packets read (each is also one of packetsIn). */
  gsoIn: number;
  /** GSO super-packets written, segmented by the kernel (each is also one of packetsOut). */
  gsoOut: number;
  /**
   * Datagrams written inside a UDP super-packet (USO) the addon built from a run of one flow's datagrams (each is
   * also one of packetsOut; each super-packet one of gsoOut): native/src/tether_io.cc "UDP coalescing".
   */
  coalescedOut: number;
  /** Read failures other than EAGAIN, by errno name ("EIO": 3). */
  readErrors: Record<string, number>;
  /** Write failures other than EAGAIN, by errno name ("EINVAL": 1). */
  writeErrors: Record<string, number>;
}

/** The addon's handle object (one TUN queue). Use TunDevice instead. */
export interface NativeHandle {
  readonly fd: number;
  readonly name: string;
  readonly vnetHdrSize: number;
  /** TUN_F_* bits TUNSETOFFLOAD accepted; 0 without offloads. */
  readonly offloads: number;
  startReading(
    data: Uint8Array,
    offset: Uint32Array,
    length: Uint32Array,
    slotSize: number,
    headroom: number,
    capacity: number,
    onBatch: (count: number, err: number) => void,
    vnet?: Uint16Array | null,
  ): void;
  stopReading(): void;
  /**
   * Binds a batch's arrays (and the index list it is written by, or null) to write slot `slot` (0..7) for
   * writeBound; the addon keeps their pointers and backing stores (native/src/tether_io.cc "views bound once").
   */
  bindWrite(
    slot: number,
    data: Uint8Array,
    offset: Uint32Array,
    length: Uint32Array,
    indices: Uint32Array | Uint16Array | null,
    vnet: Uint16Array | null,
  ): void;
  /**
   * Writes packets indices[from..to) (or from..to without indices) of the batch bound to `slot`; never blocks (EAGAIN:
   * the rest counted in dropsBusy). The addon's only write: TunDevice.writeBatch binds once and calls this.
   */
  writeBound(slot: number, from: number, to: number): number;
  counters(): IoCounters;
  close(): void;
}

/** The call shape every batched crypto class of the addon has (native/src/batch.h). */
export interface NativeCryptoBatch {
  remove(slot: number): void;
  seal(data: Uint8Array, offset: Uint32Array, length: Uint32Array, slot: Uint32Array, n: number, status: Uint8Array): number;
  open(data: Uint8Array, offset: Uint32Array, length: Uint32Array, slot: Uint32Array, n: number, status: Uint8Array): number;
  installed(): number;
}

/** Batched ESP crypto contexts (native/src/esp.cc); use EspCrypto (src/io/esp-crypto.ts) instead. */
export interface NativeEspCrypto extends NativeCryptoBatch {
  install(slot: number, direction: number, cipher: number, key: Uint8Array, integ: number, integKey: Uint8Array | null): void;
}

/** Batched WireGuard transport crypto (native/src/wireguard.cc); use WgCrypto (src/io/wg-crypto.ts) instead. */
export interface NativeWgCrypto extends NativeCryptoBatch {
  install(slot: number, sendKey: Uint8Array, recvKey: Uint8Array): void;
}

/** The busy poll of one thread's TUNs (native/src/tether_io.cc "busy polling"; src/io/tun.ts setBusyPoll). */
export interface BusyPollCounters {
  /** The budget in force, µs (0: off). */
  budgetUs: number;
  /** Spins started (each after a wakeup that carried packets). */
  sessions: number;
  /** Time spent spinning, packets' processing included, ns. */
  spinNs: number;
  /** Packets caught while spinning, each a thread wakeup saved; `batches`: the JS calls that carried them. */
  packets: number;
  batches: number;
}

/** The native flow cache's figures on one thread (native/src/flow_cache.h; src/io/flow-cache.ts). */
export interface FlowCacheStats {
  enabled: boolean;
  /** Entries one thread's table holds at most. */
  capacity: number;
  /** Entries installed now. */
  entries: number;
  /** Packets forwarded by the cache, TUN to TUN, without JavaScript, and their bytes. */
  hits: number;
  hitBytes: number;
  /** Packets that matched an entry but went to JS (TTL, header checksum, offload flags, or an earlier packet of the pair did). */
  punts: number;
  installs: number;
  /** Installs refused: the packet or its rewrite is not one the cache takes. */
  refused: number;
  removals: number;
  flushes: number;
  /** Wakeups whose packets all hit: JS was not called. */
  wakeupsWithoutJs: number;
  /**
   * Follow-through (tether_io.cc FollowThrough): reads of the egress TUN a wakeup's hits were just written to, before
   * the addon returns to libuv, and the packets they found (a reply queued within the write: no loop iteration, no epoll wait).
   */
  followReads: number;
  followPackets: number;
}

export interface NativeAddon {
  openTun(name: string, flags: number): NativeHandle;
  /** The busy-poll budget of this thread's TUNs, µs, 0..1000 (0: off). */
  setBusyPoll(us: number): void;
  busyPollCounters(): BusyPollCounters;
  EspCrypto: new (slots: number) => NativeEspCrypto;
  WgCrypto: new (slots: number) => NativeWgCrypto;
  allocHugePages(bytes: number): ArrayBuffer;
  /** The flow cache of this thread on (bound to the pipeline's per-port counters) or off. */
  flowCacheEnable(on: boolean, rxPackets?: Float64Array, rxBytes?: Float64Array, txPackets?: Float64Array, txBytes?: Float64Array): void;
  /**
   * Slot (>= 0), -1 refused (shape or rewrite), -2 full. `before`/`after`: the packet's first 28 bytes at those
   * offsets; `dfOnly`: only packets with DF set hit.
   */
  flowCacheInstall(ingress: NativeHandle, egress: NativeHandle, before: Uint8Array, beforeAt: number, after: Uint8Array, afterAt: number, inPort: number, outPort: number, node: number, dfOnly: boolean): number;
  flowCacheRemove(slot: number, node: number): boolean;
  /** flowCacheRemove, and the entry's hits since the last fold into out[0] (packets), out[1] (bytes); false: gone already. */
  flowCacheTake(slot: number, node: number, out: Float64Array): boolean;
  flowCacheFlush(): void;
  /** The slot whose key the packet's first 28 bytes at `at` match, -1 for none (tests, diagnostics). */
  flowCacheLookup(ingress: NativeHandle, packet: Uint8Array, at: number): number;
  /** (node, packets, bytes) triples of entries with hits since the last fold, into out; returns how many. */
  flowCacheFold(out: Float64Array): number;
  flowCacheStats(): FlowCacheStats;
  /** The addon's own copies of {@link TUN_FLAG_MULTI_QUEUE} and {@link TUN_FLAG_VNET_HDR}. */
  readonly TUN_FLAG_MULTI_QUEUE: number;
  readonly TUN_FLAG_VNET_HDR: number;
  readonly TUN_FLAG_OFFLOAD: number;
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
