/**
 * The entries of one batched crypto call (ESP: src/io/esp-crypto.ts; WireGuard: src/io/wg-crypto.ts and the
 * device's node:crypto fallback, src/onramp/wireguard/aead.ts): where each message is in the data buffer
 * (offset, length), which keys seal or open it (context), the result per entry (status) and the caller's own
 * tag. Preallocated arrays, filled with push() and reset with clear(): nothing is allocated per packet.
 */

/** Per-entry result of a batched seal/open (tether_batch::Status in native/src/batch.h). */
export const enum CryptoStatus {
  Ok = 0,
  /** The tag / ICV does not verify (open only). */
  AuthFailed = 1,
  /** Too short for the format, or the encrypted part not a whole number of blocks. */
  BadLength = 2,
  /** No keys in that slot (for that direction). */
  NoKey = 3,
  /** offset/length outside the data buffer. */
  OutOfBounds = 4,
  /** The crypto library reported an error. */
  CryptoError = 5,
}

export class CryptoEntries {
  readonly offset: Uint32Array;
  readonly length: Uint32Array;
  readonly context: Uint32Array;
  readonly status: Uint8Array;
  /** Caller's own tag per entry (the batch index of the packet, say). */
  readonly tag: Uint32Array;
  n = 0;

  constructor(readonly capacity: number) {
    this.offset = new Uint32Array(capacity);
    this.length = new Uint32Array(capacity);
    this.context = new Uint32Array(capacity);
    this.status = new Uint8Array(capacity);
    this.tag = new Uint32Array(capacity);
  }

  /** Queues one message for key slot `context`; returns its entry index, or -1 when full. No allocation. */
  push(offset: number, length: number, context: number, tag: number): number {
    if (this.n === this.capacity) return -1;
    const k = this.n++;
    this.offset[k] = offset;
    this.length[k] = length;
    this.context[k] = context;
    this.tag[k] = tag;
    return k;
  }

  clear(): void {
    this.n = 0;
  }
}
