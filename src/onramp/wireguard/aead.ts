/**
 * The transport-data AEAD behind an interface the device takes (whitepaper §5.4.6), so the engine stays pure:
 * the daemon hands it the addon's batched ChaCha20-Poly1305 (src/io/wg-crypto.ts, native/src/wireguard.cc), unit
 * tests and the fuzzer get NodeWgAead below (node:crypto, one cipher object per packet, the slow oracle).
 *
 *   install(slot, sendKey, recvKey)  when a session is derived (the slot is its index-table slot); the caller
 *                                    zeroes its copies of the keys at once, the AEAD keeps its own
 *   remove(slot)                     when the session ends: Reject-After-Time, rotation, peer removal/re-key
 *   seal(data, entries)              entry = a whole transport message laid out in data (header with the counter,
 *                                    the packet padded to 16, room for the tag): encrypts in place, writes the tag
 *   open(data, entries)              entry = a received transport message: verifies and decrypts in place
 *
 * The nonce is 32 zero bits ‖ the 64-bit little-endian counter, which is what the header holds at bytes 8..16:
 * both implementations read it from there, so an entry needs nothing but where it is and which slot.
 */
import { createSecretKey, type KeyObject } from 'node:crypto';
import { CryptoEntries, CryptoStatus } from '../../common/crypto-entries.js';
import { AEAD_TAG_LEN, DATA_COUNTER_OFF, DATA_HEADER_LEN, DATA_MIN_LEN, INDEX_SLOT_BITS, KEY_LEN, PADDING_MULTIPLE } from './constants.js';
import { aeadOpen, aeadSealInto } from './crypto.js';

export { CryptoEntries, CryptoStatus };

export interface WgAead {
  /** Keys of the session in index slot `slot` (replacing what it held); both 32 bytes, copied. */
  install(slot: number, sendKey: Uint8Array, recvKey: Uint8Array): void;
  remove(slot: number): void;
  /** Seals every queued entry in place; returns how many succeeded (status per entry). */
  seal(data: Uint8Array, e: CryptoEntries): number;
  /** Verifies and decrypts every queued entry in place; returns how many succeeded. */
  open(data: Uint8Array, e: CryptoEntries): number;
  /** Sessions whose keys are held. */
  installed(): number;
}

/** Index-table slots, one session each: what an AEAD must hold keys for. */
export const WG_KEY_SLOTS = 1 << INDEX_SLOT_BITS;

/** Transport message length for an inner packet of `len` bytes: header ‖ packet padded to 16 ‖ tag (§5.4.6). */
export function sealedLength(len: number): number {
  return DATA_HEADER_LEN + ((len + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1)) + AEAD_TAG_LEN;
}

const TWO_32 = 0x1_0000_0000;

/** The 64-bit counter of a transport message's header (exact below 2^53, all a device sends or accepts). */
export function headerCounter(data: Uint8Array, off: number): number {
  const p = off + DATA_COUNTER_OFF;
  const lo = (data[p] | (data[p + 1] << 8) | (data[p + 2] << 16) | (data[p + 3] << 24)) >>> 0;
  const hi = (data[p + 4] | (data[p + 5] << 8) | (data[p + 6] << 16) | (data[p + 7] << 24)) >>> 0;
  return hi * TWO_32 + lo;
}

/** node:crypto, one createCipheriv per packet: the pure fallback and the oracle the native batch is tested against. */
export class NodeWgAead implements WgAead {
  private readonly send: Array<KeyObject | null> = new Array<KeyObject | null>(WG_KEY_SLOTS).fill(null);
  private readonly recv: Array<KeyObject | null> = new Array<KeyObject | null>(WG_KEY_SLOTS).fill(null);
  private count = 0;

  install(slot: number, sendKey: Uint8Array, recvKey: Uint8Array): void {
    if (!(slot >= 0 && slot < WG_KEY_SLOTS)) throw new RangeError(`wireguard aead: slot ${slot} out of range`);
    if (sendKey.length !== KEY_LEN || recvKey.length !== KEY_LEN) throw new RangeError('wireguard aead: transport keys are 32 bytes');
    if (this.send[slot] === null) this.count++;
    this.send[slot] = createSecretKey(Uint8Array.from(sendKey));
    this.recv[slot] = createSecretKey(Uint8Array.from(recvKey));
  }

  remove(slot: number): void {
    if (this.send[slot] === null || this.send[slot] === undefined) return;
    this.send[slot] = this.recv[slot] = null;
    this.count--;
  }

  installed(): number {
    return this.count;
  }

  seal(data: Uint8Array, e: CryptoEntries): number {
    let ok = 0;
    for (let k = 0; k < e.n; k++) {
      const off = e.offset[k];
      const len = e.length[k];
      const key = this.send[e.context[k]] ?? null;
      let st: CryptoStatus = CryptoStatus.Ok;
      if (off + len > data.length) st = CryptoStatus.OutOfBounds;
      else if (key === null) st = CryptoStatus.NoKey;
      else if (len < DATA_MIN_LEN) st = CryptoStatus.BadLength;
      else aeadSealInto(key, headerCounter(data, off), data.subarray(off + DATA_HEADER_LEN, off + len - AEAD_TAG_LEN), null, data, off + DATA_HEADER_LEN);
      e.status[k] = st;
      if (st === CryptoStatus.Ok) ok++;
    }
    return ok;
  }

  open(data: Uint8Array, e: CryptoEntries): number {
    let ok = 0;
    for (let k = 0; k < e.n; k++) {
      const off = e.offset[k];
      const len = e.length[k];
      const key = this.recv[e.context[k]] ?? null;
      let st: CryptoStatus = CryptoStatus.Ok;
      if (off + len > data.length) st = CryptoStatus.OutOfBounds;
      else if (key === null) st = CryptoStatus.NoKey;
      else if (len < DATA_MIN_LEN) st = CryptoStatus.BadLength;
      else {
        const plain = aeadOpen(key, headerCounter(data, off), data.subarray(off + DATA_HEADER_LEN, off + len), null);
        if (plain === null) st = CryptoStatus.AuthFailed;
        else data.set(plain, off + DATA_HEADER_LEN);
      }
      e.status[k] = st;
      if (st === CryptoStatus.Ok) ok++;
    }
    return ok;
  }
}
