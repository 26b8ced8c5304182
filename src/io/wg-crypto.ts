/**
 * Batched WireGuard transport crypto (native/src/wireguard.cc, ChaCha20-Poly1305 from Node's own OpenSSL): one
 * native call seals or opens every queued transport-data message of a batch in place. The device
 * (src/onramp/wireguard/device.ts) takes it through its WgAead interface (src/onramp/wireguard/aead.ts), which
 * this class fits; the layout of a message and the nonce are described there and in wireguard.cc.
 *
 * Keys: one native slot per session (the device's index-table slot) holding both directions' contexts; the
 * device installs them when a session is derived and removes them when it ends. Nothing is allocated per packet.
 */
import type { CryptoEntries } from '../common/crypto-entries.js';
import { loadNative, type NativeWgCrypto } from './native.js';

export class WgCrypto {
  private readonly native: NativeWgCrypto;

  /** `slots`: session slots (the device's index table, 65,536). */
  constructor(readonly slots: number) {
    this.native = new (loadNative().WgCrypto)(slots);
  }

  /** Both directions' keys of session slot `slot` (32 bytes each, copied into the addon). Throws naming the problem. */
  install(slot: number, sendKey: Uint8Array, recvKey: Uint8Array): void {
    this.native.install(slot, sendKey, recvKey);
  }

  remove(slot: number): void {
    this.native.remove(slot);
  }

  /** Sessions whose keys the addon holds. */
  installed(): number {
    return this.native.installed();
  }

  /** Seals every queued entry of `e` in `data`; returns how many succeeded (e.status says which). */
  seal(data: Uint8Array, e: CryptoEntries): number {
    return this.native.seal(data, e.offset, e.length, e.context, e.n, e.status);
  }

  /** Verifies and decrypts every queued entry in place; returns how many succeeded. */
  open(data: Uint8Array, e: CryptoEntries): number {
    return this.native.open(data, e.offset, e.length, e.context, e.n, e.status);
  }
}
