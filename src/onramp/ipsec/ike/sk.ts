/**
 * The Encrypted and Authenticated payload, SK {...} (RFC 7296 §3.14), one direction, over node:crypto:
 *   AES-GCM-16 (RFC 5282 §3, §5): IV (8, explicit) ‖ ciphertext ‖ ICV (16); nonce = salt (last 4 bytes of SK_e) ‖ IV;
 *     AAD = the IKE header ‖ the SK payload's generic header (RFC 5282 §5.1).
 *   AES-CBC (RFC 3602) + HMAC-SHA2-n/2 (RFC 4868): IV (16, random) ‖ ciphertext ‖ ICV, the ICV = HMAC over every
 *     byte of the message before it (IKE header ‖ SK generic header ‖ IV ‖ ciphertext), truncated (RFC 7296 §3.14).
 * The plaintext is the payload chain ‖ padding ‖ pad length (one octet, last). CBC pads to the 16-byte block;
 * GCM needs no padding, so we send none and only the pad length octet (RFC 5282 §3).
 * Control path: allocation is fine. open() never throws: a bad ICV, length or padding gives null.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual, type CipherGCMTypes } from 'node:crypto';
import { AES_BLOCK, CIPHERS, GCM_ICV_LENGTH, GCM_IV_LENGTH, INTEGRITY, type CipherParameters, type IntegrityParameters } from '../algorithms.js';
import type { EncryptionAlgorithm, IntegrityAlgorithm, PrfAlgorithm, DhGroup } from '../types.js';

/** One negotiated IKE SA transform set (RFC 7296 §3.3). `integrity` is null with an AEAD cipher (GCM). */
export interface IkeSuite {
  encryption: EncryptionAlgorithm;
  integrity: IntegrityAlgorithm | null;
  prf: PrfAlgorithm;
  dh: DhGroup;
}

/** The Pad Length octet that ends the plaintext (RFC 7296 §3.14). */
const PAD_LENGTH_OCTET = 1;

/** Whether the cipher is an AEAD (then no integrity transform is negotiated, RFC 5282 §8). */
export function isAead(alg: EncryptionAlgorithm): boolean {
  return CIPHERS[alg].aead;
}

/** Bytes of key material an encryption transform takes from prf+: GCM includes its 4-byte salt (RFC 5282 §7.1). */
export function encryptionKeyLength(alg: EncryptionAlgorithm): number {
  return CIPHERS[alg].keyLength + CIPHERS[alg].saltLength;
}

/** Bytes of key material an integrity transform takes from prf+ (RFC 4868 §2.1.1); 0 for none. */
export function integrityKeyLength(alg: IntegrityAlgorithm | null): number {
  return alg === null ? 0 : INTEGRITY[alg].keyLength;
}

/** The truncated ICV length (RFC 4868 §2.6) or GCM's tag length. */
export function icvLength(encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm | null): number {
  if (CIPHERS[encryption].aead) return GCM_ICV_LENGTH;
  return integrity === null ? 0 : INTEGRITY[integrity].icvLength;
}

/**
 * GCM's explicit IV is a 64-bit counter XORed with a random mask drawn per codec (strongSwan's iv_gen_seq does the
 * same): unique under one key, which is all GCM needs (RFC 5282 §3.1), and still unique should a caller ever build
 * two codecs on the same key (independent masks collide with probability 2^-64).
 */
const IV_COUNTER_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * One direction of the SK payload. `seal` takes the payload chain and returns the SK payload's body
 * (IV ‖ ciphertext ‖ ICV); `aad` is every byte of the message before the IV, lengths already final
 * (use `sealedLength` to compute them). `open` returns the payload chain, or null.
 */
export class SkCodec {
  private readonly cipher: CipherParameters;
  private readonly key: Buffer;
  private readonly salt: Buffer;
  private readonly integrity: IntegrityParameters | null;
  private readonly integrityKey: Buffer | null;
  private readonly random: (n: number) => Uint8Array;
  private ivCounter = 0n;
  private ivMask = 0n;

  /**
   * `random` (default: OpenSSL's randomBytes) draws CBC IVs, which must be unpredictable (RFC 7296 §3.14), and the
   * GCM IV mask.
   * Throws on a key of the wrong length or a missing integrity transform: a caller's bug, not bad input.
   */
  constructor(
    readonly suite: IkeSuite,
    encryptionKey: Uint8Array,
    integrityKey: Uint8Array | null,
    random: (n: number) => Uint8Array = randomBytes,
  ) {
    this.cipher = CIPHERS[suite.encryption];
    if (encryptionKey.length !== encryptionKeyLength(suite.encryption)) {
      throw new RangeError(`SK_e for ${suite.encryption} is ${encryptionKeyLength(suite.encryption)} bytes, got ${encryptionKey.length}`);
    }
    this.key = Buffer.from(encryptionKey.subarray(0, this.cipher.keyLength));
    this.salt = Buffer.from(encryptionKey.subarray(this.cipher.keyLength));
    if (this.cipher.aead) {
      this.integrity = null;
      this.integrityKey = null;
    } else {
      if (suite.integrity === null || integrityKey === null) {
        throw new RangeError(`${suite.encryption} needs an integrity transform and SK_a (RFC 7296 §3.3.2)`);
      }
      this.integrity = INTEGRITY[suite.integrity];
      if (integrityKey.length !== this.integrity.keyLength) {
        throw new RangeError(`SK_a for ${suite.integrity} is ${this.integrity.keyLength} bytes, got ${integrityKey.length}`);
      }
      this.integrityKey = Buffer.from(integrityKey);
    }
    this.random = random;
    if (this.cipher.aead) this.ivMask = Buffer.from(random(GCM_IV_LENGTH).subarray(0, GCM_IV_LENGTH)).readBigUInt64BE(0);
  }

  /** The SK payload body's length (IV ‖ ciphertext ‖ ICV) for a payload chain of `plainLength` bytes. */
  sealedLength(plainLength: number): number {
    if (this.cipher.aead) return GCM_IV_LENGTH + plainLength + PAD_LENGTH_OCTET + GCM_ICV_LENGTH;
    const padded = Math.ceil((plainLength + PAD_LENGTH_OCTET) / AES_BLOCK) * AES_BLOCK;
    return AES_BLOCK + padded + this.integrity!.icvLength;
  }

  seal(aad: Uint8Array, plain: Uint8Array): Uint8Array {
    return this.cipher.aead ? this.sealGcm(aad, plain) : this.sealCbc(aad, plain);
  }

  open(aad: Uint8Array, body: Uint8Array): Uint8Array | null {
    try {
      return this.cipher.aead ? this.openGcm(aad, body) : this.openCbc(aad, body);
    } catch {
      return null;
    }
  }

  private nextGcmIv(): Buffer {
    if (this.ivCounter >= IV_COUNTER_MAX) throw new RangeError('SK payload: GCM IV space exhausted; rekey the IKE SA');
    this.ivCounter++;
    const iv = Buffer.alloc(GCM_IV_LENGTH);
    iv.writeBigUInt64BE(this.ivCounter ^ this.ivMask);
    return iv;
  }

  private sealGcm(aad: Uint8Array, plain: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.sealedLength(plain.length));
    const iv = this.nextGcmIv();
    out.set(iv, 0);
    const c = createCipheriv(this.cipher.openssl as CipherGCMTypes, this.key, Buffer.concat([this.salt, iv]), { authTagLength: GCM_ICV_LENGTH });
    c.setAAD(aad);
    // No padding: pad length 0 (RFC 5282 §3 allows any; strongSwan sends none either).
    const ct = Buffer.concat([c.update(plain), c.update(Uint8Array.of(0)), c.final()]);
    out.set(ct, GCM_IV_LENGTH);
    out.set(c.getAuthTag(), GCM_IV_LENGTH + ct.length);
    return out;
  }

  private openGcm(aad: Uint8Array, body: Uint8Array): Uint8Array | null {
    const ctLength = body.length - GCM_IV_LENGTH - GCM_ICV_LENGTH;
    if (ctLength < PAD_LENGTH_OCTET) return null;
    const iv = body.subarray(0, GCM_IV_LENGTH);
    const d = createDecipheriv(this.cipher.openssl as CipherGCMTypes, this.key, Buffer.concat([this.salt, iv]), { authTagLength: GCM_ICV_LENGTH });
    d.setAAD(aad);
    d.setAuthTag(body.subarray(GCM_IV_LENGTH + ctLength));
    const plain = Buffer.concat([d.update(body.subarray(GCM_IV_LENGTH, GCM_IV_LENGTH + ctLength)), d.final()]);
    return stripPadding(plain);
  }

  private icv(aad: Uint8Array, ivAndCiphertext: Uint8Array): Buffer {
    const h = createHmac(this.integrity!.digest, this.integrityKey!);
    return h.update(aad).update(ivAndCiphertext).digest().subarray(0, this.integrity!.icvLength);
  }

  private sealCbc(aad: Uint8Array, plain: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.sealedLength(plain.length));
    const paddedLength = out.length - AES_BLOCK - this.integrity!.icvLength;
    const padded = new Uint8Array(paddedLength);
    padded.set(plain, 0);
    // Padding octets may hold anything (RFC 7296 §3.14); zeros. The pad length octet is last.
    padded[paddedLength - 1] = paddedLength - plain.length - PAD_LENGTH_OCTET;
    const iv = this.random(AES_BLOCK);
    out.set(iv.subarray(0, AES_BLOCK), 0);
    const c = createCipheriv(this.cipher.openssl, this.key, out.subarray(0, AES_BLOCK));
    c.setAutoPadding(false);
    out.set(Buffer.concat([c.update(padded), c.final()]), AES_BLOCK);
    out.set(this.icv(aad, out.subarray(0, AES_BLOCK + paddedLength)), AES_BLOCK + paddedLength);
    return out;
  }

  private openCbc(aad: Uint8Array, body: Uint8Array): Uint8Array | null {
    const icvLength = this.integrity!.icvLength;
    const ctLength = body.length - AES_BLOCK - icvLength;
    if (ctLength < AES_BLOCK || ctLength % AES_BLOCK !== 0) return null;
    const signed = body.subarray(0, AES_BLOCK + ctLength);
    // Integrity first, in constant time (RFC 7296 §3.14: verify before decrypting).
    if (!timingSafeEqual(this.icv(aad, signed), body.subarray(AES_BLOCK + ctLength))) return null;
    const d = createDecipheriv(this.cipher.openssl, this.key, body.subarray(0, AES_BLOCK));
    d.setAutoPadding(false);
    const plain = Buffer.concat([d.update(body.subarray(AES_BLOCK, AES_BLOCK + ctLength)), d.final()]);
    return stripPadding(plain);
  }
}

/** Drops padding ‖ pad length; null when the pad length points before the start (RFC 7296 §3.14). */
function stripPadding(plain: Uint8Array): Uint8Array | null {
  if (plain.length < PAD_LENGTH_OCTET) return null;
  const padLength = plain[plain.length - 1];
  const end = plain.length - PAD_LENGTH_OCTET - padLength;
  if (end < 0) return null;
  return new Uint8Array(plain.subarray(0, end));
}
