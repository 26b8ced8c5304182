/**
 * WireGuard's primitives (whitepaper §5.4 "Protocol & Cryptography"):
 *   DH      X25519 (RFC 7748)                      node:crypto (OpenSSL)
 *   AEAD    ChaCha20-Poly1305 (RFC 8439)           node:crypto
 *   XAEAD   XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha)  HChaCha20 derived from node's ChaCha20 stream
 *   HASH    BLAKE2s-256 (RFC 7693)                 @noble/hashes
 *   MAC     keyed BLAKE2s-128                      @noble/hashes
 *   HMAC    HMAC-BLAKE2s-256 (RFC 2104)            @noble/hashes
 *   KDFn    HKDF-style chain over HMAC (§5.4, "KDF_n")
 *
 * Allocation: node:crypto allocates a cipher object and output buffers per call, which we cannot avoid;
 * everything else (nonces, HChaCha20 scratch) is preallocated at module level. Nothing here throws on bad
 * input: AEAD open returns null on an authentication failure, DH returns null for a low-order public key.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  type KeyObject,
} from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { AEAD_TAG_LEN, KEY_LEN, MAC_LEN } from './constants.js';

const AEAD_ALGORITHM = 'chacha20-poly1305';
const AEAD_NONCE_LEN = 12;
const AEAD_OPTIONS = { authTagLength: AEAD_TAG_LEN } as const;
const HASH_LEN = 32;
const XNONCE_LEN = 24;
const HCHACHA_NONCE_LEN = 16;

// --- BLAKE2s ------------------------------------------------------------------------------------------------

/** HASH(a || b || ...) = BLAKE2s-256 of the concatenation. */
export function hash(a: Uint8Array, b?: Uint8Array, c?: Uint8Array): Uint8Array {
  const h = blake2s.create({ dkLen: HASH_LEN });
  h.update(a);
  if (b) h.update(b);
  if (c) h.update(c);
  return h.digest();
}

/** MAC(key, input) = Keyed-BLAKE2s(key, input, 16) (§5.4). */
export function mac(key: Uint8Array, input: Uint8Array): Uint8Array {
  return blake2s(input, { key, dkLen: MAC_LEN });
}

/** HMAC(key, input) = HMAC-BLAKE2s(key, input, 32) (§5.4). */
export function hmacBlake2s(key: Uint8Array, input: Uint8Array): Uint8Array {
  return hmac(blake2s, key, input);
}

const ONE = Uint8Array.of(1);

/**
 * KDF_n(key, input) (§5.4): τ0 = HMAC(key, input); τ1 = HMAC(τ0, 0x1); τi = HMAC(τ0, τ(i−1) || i).
 * Returns n 32-byte outputs.
 */
export function kdf(n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Uint8Array[] {
  const t0 = hmacBlake2s(key, input);
  const out: Uint8Array[] = [];
  let prev = hmacBlake2s(t0, ONE);
  out.push(prev);
  for (let i = 2; i <= n; i++) {
    const buf = new Uint8Array(HASH_LEN + 1);
    buf.set(prev, 0);
    buf[HASH_LEN] = i;
    prev = hmacBlake2s(t0, buf);
    out.push(prev);
  }
  t0.fill(0);
  return out;
}

// --- X25519 -------------------------------------------------------------------------------------------------

/** DER prefixes for raw 32-byte X25519 keys (RFC 8410: PKCS#8 private key, SubjectPublicKeyInfo). */
const PKCS8_X25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);
const SPKI_X25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00]);

function withPrefix(prefix: Uint8Array, key: Uint8Array): Buffer {
  const der = Buffer.alloc(prefix.length + KEY_LEN);
  der.set(prefix, 0);
  der.set(key.subarray(0, KEY_LEN), prefix.length);
  return der;
}

/** Raw 32-byte private key → KeyObject. (X25519 clamps the scalar itself, RFC 7748 §5.) */
export function privateKeyObject(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: withPrefix(PKCS8_X25519_PREFIX, raw), format: 'der', type: 'pkcs8' });
}

/** Raw 32-byte public key → KeyObject; null when OpenSSL refuses it. */
export function publicKeyObject(raw: Uint8Array): KeyObject | null {
  if (raw.length !== KEY_LEN) return null;
  try {
    return createPublicKey({ key: withPrefix(SPKI_X25519_PREFIX, raw), format: 'der', type: 'spki' });
  } catch {
    return null;
  }
}

/** The raw public key of a private KeyObject. */
export function publicKeyOf(priv: KeyObject): Uint8Array {
  const der = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(der.length - KEY_LEN));
}

/** Raw public key from a raw private key. */
export function publicKeyFromPrivate(raw: Uint8Array): Uint8Array {
  return publicKeyOf(privateKeyObject(raw));
}

/**
 * DH(private, public) = X25519. Null when the result is all zeros (a low-order point: OpenSSL refuses it, and
 * WireGuard must reject it too) or the public key is unusable.
 */
export function dh(priv: KeyObject, pubRaw: Uint8Array): Uint8Array | null {
  const pub = publicKeyObject(pubRaw);
  if (!pub) return null;
  try {
    const out = new Uint8Array(diffieHellman({ privateKey: priv, publicKey: pub }));
    let acc = 0;
    for (let i = 0; i < out.length; i++) acc |= out[i];
    return acc === 0 ? null : out;
  } catch {
    return null;
  }
}

// --- ChaCha20-Poly1305 (RFC 8439 §2.8) ---------------------------------------------------------------------

/** Scratch nonce: 32 bits of zeros then the 64-bit little-endian counter (§5.4, AEAD nonce). */
const nonceScratch = Buffer.alloc(AEAD_NONCE_LEN);

function setCounterNonce(counter: number): void {
  nonceScratch.writeUInt32LE(0, 0);
  nonceScratch.writeUInt32LE(counter >>> 0, 4);
  nonceScratch.writeUInt32LE(Math.floor(counter / 0x1_0000_0000) >>> 0, 8);
}

/**
 * AEAD(key, counter, plaintext, ad) written into out[outOff ..] as ciphertext || tag.
 * Returns the bytes written (plaintext.length + 16). `key` may be a raw key or a secret KeyObject.
 */
export function aeadSealInto(
  key: Uint8Array | KeyObject,
  counter: number,
  plaintext: Uint8Array,
  ad: Uint8Array | null,
  out: Uint8Array,
  outOff: number,
): number {
  setCounterNonce(counter);
  return sealWithNonce(key, nonceScratch, plaintext, ad, out, outOff);
}

function sealWithNonce(
  key: Uint8Array | KeyObject,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array | null,
  out: Uint8Array,
  outOff: number,
): number {
  const cipher = createCipheriv(AEAD_ALGORITHM, key, nonce, AEAD_OPTIONS);
  if (ad) cipher.setAAD(ad, { plaintextLength: plaintext.length });
  const ct = cipher.update(plaintext);
  cipher.final();
  out.set(ct, outOff);
  out.set(cipher.getAuthTag(), outOff + ct.length);
  return ct.length + AEAD_TAG_LEN;
}

/** AEAD(key, counter, plaintext, ad) as a new array. */
export function aeadSeal(key: Uint8Array | KeyObject, counter: number, plaintext: Uint8Array, ad: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(plaintext.length + AEAD_TAG_LEN);
  aeadSealInto(key, counter, plaintext, ad, out, 0);
  return out;
}

/** Opens ciphertext || tag; the plaintext (a new Buffer), or null when it does not authenticate. */
export function aeadOpen(
  key: Uint8Array | KeyObject,
  counter: number,
  sealed: Uint8Array,
  ad: Uint8Array | null,
): Uint8Array | null {
  setCounterNonce(counter);
  return openWithNonce(key, nonceScratch, sealed, ad);
}

function openWithNonce(
  key: Uint8Array | KeyObject,
  nonce: Uint8Array,
  sealed: Uint8Array,
  ad: Uint8Array | null,
): Uint8Array | null {
  if (sealed.length < AEAD_TAG_LEN) return null;
  const ctLen = sealed.length - AEAD_TAG_LEN;
  const decipher = createDecipheriv(AEAD_ALGORITHM, key, nonce, AEAD_OPTIONS);
  decipher.setAuthTag(sealed.subarray(ctLen));
  if (ad) decipher.setAAD(ad, { plaintextLength: ctLen });
  const pt = decipher.update(sealed.subarray(0, ctLen));
  try {
    // node reports a bad tag only by throwing from final(); this is the one exception we must catch.
    decipher.final();
  } catch {
    return null;
  }
  return pt;
}

// --- HChaCha20 / XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha §2.2, §2.3) ------------------------------------

/** "expand 32-byte k" as four little-endian words (RFC 8439 §2.3). */
const CHACHA_CONSTANTS = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];
const ZERO_BLOCK = Buffer.alloc(64);

/**
 * HChaCha20(key, nonce16): the ChaCha20 state after 20 rounds, words 0..3 and 12..15, without the final
 * addition of the input state. Node's 'chacha20' takes a 16-byte IV that is exactly state words 12..15
 * (32-bit counter || 96-bit nonce), so one keystream block is rounds(state) + state; subtracting the known
 * input words (constants, nonce) recovers rounds(state) for the words we need.
 */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  const stream = createCipheriv('chacha20', key, nonce16.subarray(0, HCHACHA_NONCE_LEN));
  const block = stream.update(ZERO_BLOCK);
  const out = new Uint8Array(KEY_LEN);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) {
    view.setUint32(i * 4, (block.readUInt32LE(i * 4) - CHACHA_CONSTANTS[i]) >>> 0, true);
    const nonceWord = nonce16[i * 4] | (nonce16[i * 4 + 1] << 8) | (nonce16[i * 4 + 2] << 16) | (nonce16[i * 4 + 3] << 24);
    view.setUint32(16 + i * 4, (block.readUInt32LE(48 + i * 4) - nonceWord) >>> 0, true);
  }
  block.fill(0);
  return out;
}

const xNonceScratch = Buffer.alloc(AEAD_NONCE_LEN);

function xSubkey(key: Uint8Array, nonce24: Uint8Array): Uint8Array {
  // §2.3: subkey = HChaCha20(key, nonce[0..16]); the ChaCha20-Poly1305 nonce is 4 zero bytes || nonce[16..24].
  xNonceScratch.fill(0, 0, 4);
  xNonceScratch.set(nonce24.subarray(HCHACHA_NONCE_LEN, XNONCE_LEN), 4);
  return hchacha20(key, nonce24);
}

/** XAEAD(key, nonce24, plaintext, ad) = ciphertext || tag. */
export function xaeadSeal(key: Uint8Array, nonce24: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array {
  const subkey = xSubkey(key, nonce24);
  const out = new Uint8Array(plaintext.length + AEAD_TAG_LEN);
  sealWithNonce(subkey, xNonceScratch, plaintext, ad, out, 0);
  subkey.fill(0);
  return out;
}

/** Opens an XAEAD box; null when it does not authenticate. */
export function xaeadOpen(key: Uint8Array, nonce24: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | null {
  const subkey = xSubkey(key, nonce24);
  const pt = openWithNonce(subkey, xNonceScratch, sealed, ad);
  subkey.fill(0);
  return pt;
}

// --- helpers ------------------------------------------------------------------------------------------------

/** Constant-time comparison of two equal-length byte ranges. */
export function equalBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): boolean {
  let acc = 0;
  for (let i = 0; i < len; i++) acc |= a[aOff + i] ^ b[bOff + i];
  return acc === 0;
}

/** Keys in `wg` text form (standard base64 of 32 bytes). Null when malformed. Control plane only. */
export function keyFromBase64(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(text.trim())) return null;
  const raw = Buffer.from(text.trim(), 'base64');
  return raw.length === KEY_LEN ? new Uint8Array(raw) : null;
}

export function keyToBase64(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64');
}
