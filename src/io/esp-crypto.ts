/**
 * Batched ESP crypto (native/src/esp.cc, OpenSSL EVP from Node's own OpenSSL): one native call seals or opens
 * every queued ESP packet of a batch in place. The layout around the crypto is the codec's
 * (src/onramp/ipsec/esp/codec.ts):
 *
 *   seal: JS writes SPI ‖ seq, the inner packet, padding, pad length, next header ─► seal(): IV, ciphertext, ICV
 *   open: JS checks the length and the replay window ─► open(): ICV verified, decrypted in place ─► JS: trailer
 *
 * Each SA direction has its own native context, created at install and kept (SA slot s: seal context 2s, open
 * context 2s + 1). Entries are queued in preallocated arrays (EspEntries): nothing is allocated per packet.
 */
import { CryptoEntries } from '../common/crypto-entries.js';
import { loadNative, type NativeEspCrypto } from './native.js';

/** Per-entry result of seal/open: the shared CryptoStatus (tether_batch::Status in native/src/batch.h). */
export { CryptoStatus as EspStatus } from '../common/crypto-entries.js';

/**
 * One direction's keys as the addon takes them: cipher and integrity numbers are EspCipher / EspInteg of
 * src/onramp/ipsec/esp/constants.ts (the engine's; src/io does not import it), the GCM key with its salt appended.
 */
export interface EspContextKeys {
  cipher: number;
  integ: number;
  encryptionKey: Uint8Array;
  integrityKey: Uint8Array | null;
}

const DIRECTION_SEAL = 0;
const DIRECTION_OPEN = 1;
const CONTEXTS_PER_SA = 2;

/** A batch's queued ESP packets (the shared CryptoEntries): offset and length in the data buffer, SA slot, result. */
export { CryptoEntries as EspEntries };

export class EspCrypto {
  private readonly native: NativeEspCrypto;
  /** Scratch: entries' SA slots mapped to native context numbers, per call. */
  private readonly contexts: Uint32Array;

  /** `saCapacity`: SA slots (the SA table's capacity); `batchCapacity`: the most entries one call takes. */
  constructor(readonly saCapacity: number, batchCapacity: number) {
    this.native = new (loadNative().EspCrypto)(saCapacity * CONTEXTS_PER_SA);
    this.contexts = new Uint32Array(batchCapacity);
  }

  /** Creates both directions' contexts of SA slot `sa` (replacing what it held). Throws naming the problem. */
  install(sa: number, inbound: EspContextKeys, outbound: EspContextKeys): void {
    this.installOne(sa * CONTEXTS_PER_SA + DIRECTION_OPEN, DIRECTION_OPEN, inbound);
    this.installOne(sa * CONTEXTS_PER_SA + DIRECTION_SEAL, DIRECTION_SEAL, outbound);
  }

  remove(sa: number): void {
    this.native.remove(sa * CONTEXTS_PER_SA + DIRECTION_OPEN);
    this.native.remove(sa * CONTEXTS_PER_SA + DIRECTION_SEAL);
  }

  /** Native contexts alive (two per installed SA). */
  installed(): number {
    return this.native.installed();
  }

  /** Seals every queued entry of `e` in `data`; returns how many succeeded (e.status says which). */
  seal(data: Uint8Array, e: CryptoEntries): number {
    return this.run(data, e, DIRECTION_SEAL);
  }

  /** Verifies and decrypts every queued entry in place; returns how many succeeded. */
  open(data: Uint8Array, e: CryptoEntries): number {
    return this.run(data, e, DIRECTION_OPEN);
  }

  private run(data: Uint8Array, e: CryptoEntries, direction: number): number {
    const n = e.n;
    if (n > this.contexts.length) throw new RangeError(`ESP batch of ${n} entries exceeds the crypto's ${this.contexts.length}`);
    const c = this.contexts;
    for (let k = 0; k < n; k++) c[k] = e.context[k] * CONTEXTS_PER_SA + direction;
    return direction === DIRECTION_SEAL ? this.native.seal(data, e.offset, e.length, c, n, e.status) : this.native.open(data, e.offset, e.length, c, n, e.status);
  }

  private installOne(context: number, direction: number, keys: EspContextKeys): void {
    this.native.install(context, direction, keys.cipher, keys.encryptionKey, keys.integ, keys.integrityKey);
  }
}
