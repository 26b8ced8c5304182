/**
 * Batched UDP sockets: recvmmsg(2) fills a PacketBatch with many datagrams (and their source
 * addresses) in one syscall, sendmmsg(2) sends many with per-datagram destinations in one. Node's
 * dgram makes one syscall and one JS callback per datagram (≈ 320 k packets/s here); onramps that
 * ride on UDP (WireGuard, ESP-in-UDP) use this instead.
 *
 * Addresses follow src/common/addr.ts: an IPv4 address is one unsigned 32-bit number in word 0 of
 * its four (words 1..3 zero); an IPv6 address is four words, most significant first.
 */
import type { PacketBatch } from '../common/packet-batch.js';
import {
  checkIndexCount,
  checkRange,
  loadNative,
  NativeEndpoint,
  type BatchHandler,
  type NativeHandle,
  type ReadErrorHandler,
} from './native.js';

/** Words per address in {@link PeerAddrs.addr}. */
export const ADDR_WORDS = 4;

/**
 * Per-packet peer addresses beside a batch (struct of arrays): packet i's address is
 * addr[i*4 .. i*4+4) and its port port[i]. Filled by the receiver with each datagram's source; read
 * by the sender as each datagram's destination.
 */
export class PeerAddrs {
  readonly capacity: number;
  readonly addr: Uint32Array;
  readonly port: Uint16Array;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.addr = new Uint32Array(capacity * ADDR_WORDS);
    this.port = new Uint16Array(capacity);
  }

  /** Sets packet i's IPv4 peer (address as an unsigned 32-bit number). */
  setIpv4(i: number, addr: number, port: number): void {
    const at = i * ADDR_WORDS;
    this.addr[at] = addr;
    this.addr[at + 1] = 0;
    this.addr[at + 2] = 0;
    this.addr[at + 3] = 0;
    this.port[i] = port;
  }
}

export interface UdpOptions {
  /** Local address to bind, as text ("0.0.0.0", "127.0.0.1", "::1", ...). */
  bind: string;
  /** Local port; 0 lets the kernel choose (see {@link UdpBatchSocket.localPort}). */
  port: number;
  family: 4 | 6;
}

/** A non-blocking, close-on-exec UDP socket read by libuv polling, with recvmmsg/sendmmsg batching. */
export class UdpBatchSocket extends NativeEndpoint {
  readonly family: 4 | 6;
  /** The bound port (the kernel's choice when opened with port 0). */
  readonly localPort: number;

  /** @internal use {@link openUdp}. */
  constructor(handle: NativeHandle, family: 4 | 6) {
    super(handle);
    this.family = family;
    this.localPort = handle.localPort;
  }

  /**
   * Starts receiving into `batch` and `src` (whose capacity must be at least the batch's): per
   * readable event, recvmmsg until EAGAIN or a full batch, then `onBatch(batch)` once; packet i's
   * source is in src. Datagrams larger than a slot are dropped (dropsTruncated). Contents are valid
   * until onBatch returns.
   */
  startReading(batch: PacketBatch, src: PeerAddrs, ingress: number, onBatch: BatchHandler, onError?: ReadErrorHandler): void {
    if (src.capacity < batch.capacity) throw new RangeError(`PeerAddrs capacity ${src.capacity} < batch capacity ${batch.capacity}`);
    this.startPolling(batch, src.addr, src.port, ingress, onBatch, onError, `udp :${this.localPort}`);
  }

  /**
   * Sends packets from..to-1 of `batch`, packet i to dst's entry i, with sendmmsg (up to 1024 per
   * syscall), never blocking: EAGAIN/ENOBUFS drop the rest (dropsBusy); a datagram the kernel
   * refuses (EMSGSIZE, ENETUNREACH, ...) is counted in writeErrors and skipped; port 0 or bytes
   * outside the slab count as dropsInvalid. Returns the number sent.
   */
  sendBatch(batch: PacketBatch, dst: PeerAddrs, from = 0, to: number = batch.count): number {
    checkRange(batch, from, to);
    return this.handle.writeBatch(batch.data, batch.offset, batch.length, null, from, to, dst.addr, dst.port);
  }

  /** Sends the packets whose indices are indices[0..count), each to its entry in dst. */
  sendIndices(batch: PacketBatch, dst: PeerAddrs, indices: Uint32Array | Uint16Array, count: number): number {
    checkIndexCount(indices, count);
    return this.handle.writeBatch(batch.data, batch.offset, batch.length, indices, 0, count, dst.addr, dst.port);
  }
}

/** Opens a UDP socket bound to opts.bind:opts.port. Throws with the errno name (EADDRINUSE, ...) when it cannot. */
export function openUdp(opts: UdpOptions): UdpBatchSocket {
  return new UdpBatchSocket(loadNative().openUdp(opts.bind, opts.port, opts.family), opts.family);
}
