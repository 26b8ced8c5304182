/**
 * A slow, obviously correct ESP (RFC 4303 tunnel mode) with node:crypto, one cipher object per packet: the
 * oracle the codec, the native batched crypto and the transport are checked against. Written from the RFCs
 * without the codec's helpers: RFC 4106 (AES-GCM-16: nonce = salt ‖ 8-byte IV, AAD = SPI ‖ sequence), RFC 3602
 * (AES-CBC, explicit 16-byte IV) with RFC 4868 (HMAC-SHA2 truncated to half the hash: 128/192/256 bits).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual, type CipherGCM, type DecipherGCM } from 'node:crypto';
import type { EncryptionAlgorithm, IntegrityAlgorithm } from '../../src/onramp/ipsec/types.js';

/** Every ESP algorithm pair tether supports (issue 9's ESP matrix and more), for tests that go through all. */
export const ESP_TEST_ALGORITHMS: ReadonlyArray<readonly [EncryptionAlgorithm, IntegrityAlgorithm | null]> = [
  ['aes128gcm16', null],
  ['aes256gcm16', null],
  ['aes128', 'sha256'],
  ['aes256', 'sha256'],
  ['aes256', 'sha384'],
  ['aes256', 'sha512'],
];

export interface OracleKeys {
  encryption: EncryptionAlgorithm;
  integrity: IntegrityAlgorithm | null;
  encryptionKey: Uint8Array;
  integrityKey: Uint8Array | null;
}

const isGcm = (k: OracleKeys): boolean => k.encryption.endsWith('gcm16');
const aesBits = (k: OracleKeys): number => (k.encryption.startsWith('aes128') ? 128 : 256);
const icvOf = (k: OracleKeys): number => (isGcm(k) ? 16 : { sha256: 16, sha384: 24, sha512: 32 }[k.integrity!]);

function header(spi: number, seq: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(spi >>> 0, 0);
  h.writeUInt32BE(seq >>> 0, 4);
  return h;
}

/** Seals one inner IP packet: the whole ESP packet, SPI to ICV. `iv`: GCM's 8 bytes / CBC's 16 (random if absent). */
export function oracleSeal(k: OracleKeys, spi: number, seq: number, inner: Uint8Array, iv?: Uint8Array): Uint8Array {
  return oracleSealPlain(k, spi, seq, oraclePlaintext(k, inner), iv);
}

/** The plaintext ESP encrypts for an inner packet: inner ‖ padding 1, 2, 3, … ‖ pad length ‖ next header (§2.4). */
export function oraclePlaintext(k: OracleKeys, inner: Uint8Array): Buffer {
  const align = isGcm(k) ? 4 : 16;
  const pad = (align - ((inner.length + 2) % align)) % align;
  const plain = Buffer.alloc(inner.length + pad + 2);
  plain.set(inner, 0);
  for (let i = 1; i <= pad; i++) plain[inner.length + i - 1] = i;
  plain[plain.length - 2] = pad;
  plain[plain.length - 1] = inner[0] >> 4 === 6 ? 41 : 4;
  return plain;
}

/**
 * Seals a plaintext as it is (its length a multiple of the block: 4 for GCM, 16 for CBC), trailer included: for
 * tests of what the receiver does with a trailer that authenticates but is wrong.
 */
export function oracleSealPlain(k: OracleKeys, spi: number, seq: number, plain: Uint8Array, iv?: Uint8Array): Uint8Array {
  const h = header(spi, seq);
  if (isGcm(k)) {
    const keyLen = aesBits(k) / 8;
    const salt = k.encryptionKey.subarray(keyLen);
    const explicit = iv ?? Buffer.concat([Buffer.alloc(4), h.subarray(4)]);
    const c = createCipheriv(`aes-${aesBits(k)}-gcm`, k.encryptionKey.subarray(0, keyLen), Buffer.concat([salt, explicit])) as CipherGCM;
    c.setAAD(h);
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([h, explicit, ct, c.getAuthTag()]);
  }
  const cbcIv = iv ?? randomBytes(16);
  const c = createCipheriv(`aes-${aesBits(k)}-cbc`, k.encryptionKey, cbcIv);
  c.setAutoPadding(false);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  const body = Buffer.concat([h, cbcIv, ct]);
  const mac = createHmac(k.integrity!, k.integrityKey!).update(body).digest().subarray(0, icvOf(k));
  return Buffer.concat([body, mac]);
}

/** Opens one ESP packet: the inner packet, or a reason string ('icv', 'length', 'padding', 'next-header'). */
export function oracleOpen(k: OracleKeys, esp: Uint8Array): { inner: Uint8Array; nextHeader: number } | string {
  const icv = icvOf(k);
  const ivLen = isGcm(k) ? 8 : 16;
  const align = isGcm(k) ? 4 : 16;
  const ctLen = esp.length - 8 - ivLen - icv;
  if (ctLen < 2 || ctLen % align !== 0) return 'length';
  const h = esp.subarray(0, 8);
  const iv = esp.subarray(8, 8 + ivLen);
  const ct = esp.subarray(8 + ivLen, esp.length - icv);
  const tag = esp.subarray(esp.length - icv);
  let plain: Buffer;
  if (isGcm(k)) {
    const keyLen = aesBits(k) / 8;
    const d = createDecipheriv(`aes-${aesBits(k)}-gcm`, k.encryptionKey.subarray(0, keyLen), Buffer.concat([k.encryptionKey.subarray(keyLen), iv])) as DecipherGCM;
    d.setAAD(h);
    d.setAuthTag(tag);
    try {
      plain = Buffer.concat([d.update(ct), d.final()]);
    } catch {
      return 'icv';
    }
  } else {
    const mac = createHmac(k.integrity!, k.integrityKey!).update(esp.subarray(0, esp.length - icv)).digest().subarray(0, icv);
    if (!timingSafeEqual(mac, tag)) return 'icv';
    const d = createDecipheriv(`aes-${aesBits(k)}-cbc`, k.encryptionKey, iv);
    d.setAutoPadding(false);
    plain = Buffer.concat([d.update(ct), d.final()]);
  }
  const pad = plain[plain.length - 2];
  const nh = plain[plain.length - 1];
  if (pad + 2 > plain.length) return 'padding';
  for (let i = 1; i <= pad; i++) if (plain[plain.length - 2 - pad + i - 1] !== i) return 'padding';
  if (nh !== 4 && nh !== 41) return 'next-header';
  return { inner: plain.subarray(0, plain.length - 2 - pad), nextHeader: nh };
}
