/**
 * IKEv2's pseudo-random functions (RFC 7296 §2.13) over node:crypto: PRF_HMAC_SHA2_256/384/512 (RFC 4868 §2.1.2).
 * Control path only: allocation per call is fine here.
 */
import { createHmac } from 'node:crypto';
import type { PrfAlgorithm } from '../types.js';

/** OpenSSL digest behind each PRF (RFC 4868 §2.1.2: HMAC with the full, untruncated output). */
const PRF_DIGEST: Readonly<Record<PrfAlgorithm, string>> = {
  prfsha256: 'sha256',
  prfsha384: 'sha384',
  prfsha512: 'sha512',
};

/** Output (and preferred key) length in bytes of each PRF (RFC 4868 §2.1.2). */
const PRF_LENGTH: Readonly<Record<PrfAlgorithm, number>> = {
  prfsha256: 32,
  prfsha384: 48,
  prfsha512: 64,
};

/** prf+ counts its blocks in one octet: at most 255 blocks (RFC 7296 §2.13). */
const PRF_PLUS_MAX_BLOCKS = 255;

/** The PRF's output length in bytes: the length of SK_d, SK_pi and SK_pr (RFC 7296 §2.14). */
export function prfLength(alg: PrfAlgorithm): number {
  return PRF_LENGTH[alg];
}

/** prf(key, data) (RFC 7296 §2.13); HMAC takes a key of any length, so the whole key is used (§2.14). */
export function prf(alg: PrfAlgorithm, key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac(PRF_DIGEST[alg], key).update(data).digest());
}

/**
 * prf+(K, S) = T1 | T2 | ... truncated to `length` (RFC 7296 §2.13):
 *   T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
 * Throws when more than 255 blocks would be needed: a caller's bug (no suite asks for that much), not bad input.
 */
export function prfPlus(alg: PrfAlgorithm, key: Uint8Array, seed: Uint8Array, length: number): Uint8Array {
  const blockLength = PRF_LENGTH[alg];
  const blocks = Math.ceil(length / blockLength);
  if (!Number.isInteger(length) || length < 0 || blocks > PRF_PLUS_MAX_BLOCKS) {
    throw new RangeError(`prf+: ${length} bytes is more than 255 blocks of ${alg} (RFC 7296 §2.13)`);
  }
  const out = new Uint8Array(blocks * blockLength);
  const counter = new Uint8Array(1);
  let previous: Uint8Array = new Uint8Array(0);
  for (let n = 1; n <= blocks; n++) {
    counter[0] = n;
    const h = createHmac(PRF_DIGEST[alg], key);
    h.update(previous).update(seed).update(counter);
    previous = new Uint8Array(h.digest());
    out.set(previous, (n - 1) * blockLength);
  }
  return blocks * blockLength === length ? out : out.slice(0, length);
}
