/**
 * The transforms tether negotiates, as IKE's SK payload (ike/sk.ts) and ESP (esp/constants.ts) both use them: one
 * table of key, salt, IV and ICV lengths, so the two cannot disagree about an algorithm. Pure: no I/O.
 *   AES-GCM-16 (RFC 4106 for ESP, RFC 5282 for IKE): key ‖ 4-byte salt from the keying material, 8-byte explicit
 *     IV, 16-byte ICV; an AEAD, so no integrity transform (RFC 5282 §8).
 *   AES-CBC (RFC 3602): a 16-byte IV (the AES block), with HMAC-SHA2-256-128 / -384-192 / -512-256 (RFC 4868).
 */
import type { EncryptionAlgorithm, IntegrityAlgorithm } from './types.js';

/** AES block, and the CBC IV (RFC 3602 §2.1). */
export const AES_BLOCK = 16;
/** GCM keying material ends in a 4-byte salt (RFC 4106 §8.1, RFC 5282 §7.1); the nonce is salt ‖ IV. */
export const GCM_SALT_LENGTH = 4;
/** GCM's explicit IV in each packet or SK payload (RFC 4106 §3.1, RFC 5282 §3.1). */
export const GCM_IV_LENGTH = 8;
/** "16" in aes*gcm16: a 16-octet ICV (RFC 4106 §6, RFC 5282 §8). */
export const GCM_ICV_LENGTH = 16;

export interface CipherParameters {
  /** OpenSSL cipher name. */
  openssl: string;
  /** AES key bytes (without GCM's salt). */
  keyLength: number;
  /** GCM: the salt appended to the key in the keying material; CBC: 0. */
  saltLength: number;
  aead: boolean;
}

export const CIPHERS: Readonly<Record<EncryptionAlgorithm, CipherParameters>> = {
  aes128gcm16: { openssl: 'aes-128-gcm', keyLength: 16, saltLength: GCM_SALT_LENGTH, aead: true },
  aes256gcm16: { openssl: 'aes-256-gcm', keyLength: 32, saltLength: GCM_SALT_LENGTH, aead: true },
  aes128: { openssl: 'aes-128-cbc', keyLength: 16, saltLength: 0, aead: false },
  aes256: { openssl: 'aes-256-cbc', keyLength: 32, saltLength: 0, aead: false },
};

export interface IntegrityParameters {
  /** OpenSSL digest name. */
  digest: string;
  /** RFC 4868 §2.1.1: the key is the digest's length. */
  keyLength: number;
  /** RFC 4868 §2.6: the ICV is the HMAC truncated to half the digest. */
  icvLength: number;
}

export const INTEGRITY: Readonly<Record<IntegrityAlgorithm, IntegrityParameters>> = {
  sha256: { digest: 'sha256', keyLength: 32, icvLength: 16 },
  sha384: { digest: 'sha384', keyLength: 48, icvLength: 24 },
  sha512: { digest: 'sha512', keyLength: 64, icvLength: 32 },
};
