/**
 * IKEv2's cryptography (RFC 7296), pure and over node:crypto (issue 9 allows it on the control path):
 *   dh.ts   Diffie-Hellman: MODP-2048, ECP-256/384, Curve25519 and their KE payload formats
 *   prf.ts  prf and prf+ (§2.13)
 *   sk.ts   the SK payload, one direction (§3.14, RFC 5282), and the transforms' key and ICV lengths
 * and here the key schedule (§2.14 IKE SA, §2.17 child SAs, §2.18 IKE SA rekey), PSK authentication (§2.15),
 * NAT detection (§2.23) and stateless cookies (§2.6).
 * Nothing here does I/O: time is a parameter, randomness is the caller's (CookieJar) or OpenSSL's (DH, CBC IVs).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { concatBytes } from '../../../wire/bytes.js';
import type { EncryptionAlgorithm, IntegrityAlgorithm, PrfAlgorithm } from '../types.js';
import { prf, prfLength, prfPlus } from './prf.js';
import { encryptionKeyLength, integrityKeyLength, isAead, type IkeSuite } from './sk.js';

export { dhPublicLength, dhStart, dhStartWithPrivate, type DhExchange } from './dh.js';
export { prf, prfLength, prfPlus } from './prf.js';
export { encryptionKeyLength, icvLength, integrityKeyLength, isAead, SkCodec, type IkeSuite } from './sk.js';

/** The IKE SA's keys (RFC 7296 §2.14). skAi/skAr are null with an AEAD cipher (RFC 5282 §7.1). */
export interface IkeKeys {
  skD: Uint8Array;
  skAi: Uint8Array | null;
  skAr: Uint8Array | null;
  skEi: Uint8Array;
  skEr: Uint8Array;
  skPi: Uint8Array;
  skPr: Uint8Array;
}

/** The integrity transform a suite really uses: none with an AEAD; a CBC suite without one is a caller's bug. */
function integrityOf(encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm | null): IntegrityAlgorithm | null {
  if (isAead(encryption)) return null;
  if (integrity === null) throw new RangeError(`${encryption} needs an integrity transform (RFC 7296 §3.3.2)`);
  return integrity;
}

/**
 * {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (§2.14),
 * SK_d/SK_pi/SK_pr the PRF's length, SK_a the integrity key's, SK_e the cipher's (GCM: key ‖ salt).
 */
function splitIkeKeys(suite: IkeSuite, skeyseed: Uint8Array, ni: Uint8Array, nr: Uint8Array, spiI: Uint8Array, spiR: Uint8Array): IkeKeys {
  const integrity = integrityOf(suite.encryption, suite.integrity);
  const d = prfLength(suite.prf);
  const a = integrityKeyLength(integrity);
  const e = encryptionKeyLength(suite.encryption);
  const keymat = prfPlus(suite.prf, skeyseed, concatBytes([ni, nr, spiI, spiR]), 3 * d + 2 * a + 2 * e);
  let at = 0;
  const take = (n: number): Uint8Array => keymat.slice(at, (at += n));
  const skD = take(d);
  const skAi = integrity ? take(a) : null;
  const skAr = integrity ? take(a) : null;
  const skEi = take(e);
  const skEr = take(e);
  const skPi = take(d);
  const skPr = take(d);
  skeyseed.fill(0);
  keymat.fill(0);
  return { skD, skAi, skAr, skEi, skEr, skPi, skPr };
}

/**
 * A new IKE SA's keys (§2.14): SKEYSEED = prf(Ni | Nr, g^ir). With an HMAC PRF the whole Ni | Nr is the key
 * (only AES-XCBC/CMAC PRFs, which tether does not offer, take half of each nonce). `shared` is g^ir in the
 * group's format (dh.ts); the SPIs are the 8-byte IKE SPIs from the header.
 */
export function deriveIkeKeys(suite: IkeSuite, ni: Uint8Array, nr: Uint8Array, shared: Uint8Array, spiI: Uint8Array, spiR: Uint8Array): IkeKeys {
  const skeyseed = prf(suite.prf, concatBytes([ni, nr]), shared);
  return splitIkeKeys(suite, skeyseed, ni, nr, spiI, spiR);
}

/**
 * The keys of an IKE SA made by rekeying one (§2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the
 * OLD SA's PRF (the exchange belongs to the old SA); the split then uses the new suite's PRF and lengths, and the
 * new SA's SPIs (the ones in the CREATE_CHILD_SA proposals).
 */
export function deriveRekeyedIkeKeys(
  suite: IkeSuite,
  oldPrf: PrfAlgorithm,
  oldSkD: Uint8Array,
  ni: Uint8Array,
  nr: Uint8Array,
  shared: Uint8Array,
  spiI: Uint8Array,
  spiR: Uint8Array,
): IkeKeys {
  const skeyseed = prf(oldPrf, oldSkD, concatBytes([shared, ni, nr]));
  return splitIkeKeys(suite, skeyseed, ni, nr, spiI, spiR);
}

/** One direction of a child SA's keys. GCM: key ‖ 4-byte salt (RFC 4106 §8.1), no integrity key. */
export interface ChildKeyPair {
  encryptionKey: Uint8Array;
  integrityKey: Uint8Array | null;
}

/**
 * A child SA's keys (§2.17): KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with PFS in a
 * CREATE_CHILD_SA; taken in order encryption I→R, integrity I→R, encryption R→I, integrity R→I. The nonces are
 * those of the exchange that made the child (IKE_SA_INIT's for IKE_AUTH's child, §2.17).
 */
export function deriveChildKeys(
  prfAlg: PrfAlgorithm,
  skD: Uint8Array,
  esp: { encryption: EncryptionAlgorithm; integrity: IntegrityAlgorithm | null },
  ni: Uint8Array,
  nr: Uint8Array,
  shared: Uint8Array | null,
): { initiatorToResponder: ChildKeyPair; responderToInitiator: ChildKeyPair } {
  const integrity = integrityOf(esp.encryption, esp.integrity);
  const e = encryptionKeyLength(esp.encryption);
  const a = integrityKeyLength(integrity);
  const seed = shared ? concatBytes([shared, ni, nr]) : concatBytes([ni, nr]);
  const keymat = prfPlus(prfAlg, skD, seed, 2 * (e + a));
  let at = 0;
  const take = (n: number): Uint8Array => keymat.slice(at, (at += n));
  const pair = (): ChildKeyPair => ({ encryptionKey: take(e), integrityKey: integrity ? take(a) : null });
  const initiatorToResponder = pair();
  const responderToInitiator = pair();
  keymat.fill(0);
  return { initiatorToResponder, responderToInitiator };
}

/** "Key Pad for IKEv2", 17 ASCII octets without a terminator (§2.15). */
const KEY_PAD = new TextEncoder().encode('Key Pad for IKEv2');

/**
 * AUTH for a pre-shared key (§2.15):
 *   prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>),
 *   SignedOctets = RealMessage (our IKE_SA_INIT message, every byte) | peer's nonce (NonceData) | prf(SK_p, RestOfIDPayload)
 * where SK_p is SK_pi for the initiator's AUTH and SK_pr for the responder's, and `idPayloadBody` is the ID
 * payload after its generic header (ID type, 3 reserved octets, ID data). Verify with `authEqual`.
 */
export function pskAuth(prfAlg: PrfAlgorithm, psk: Uint8Array, message: Uint8Array, peerNonce: Uint8Array, skP: Uint8Array, idPayloadBody: Uint8Array): Uint8Array {
  const key = prf(prfAlg, psk, KEY_PAD);
  const out = prf(prfAlg, key, concatBytes([message, peerNonce, prf(prfAlg, skP, idPayloadBody)]));
  key.fill(0);
  return out;
}

/** Compares two AUTH values (or any MACs) in constant time; false for different lengths. */
export function authEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** NAT_DETECTION_*_IP data (§2.23): SHA-1(SPIi | SPIr | IP address | port), port in network order. */
export function natDetectionHash(spiI: Uint8Array, spiR: Uint8Array, address: Uint8Array, port: number): Uint8Array {
  const portBytes = Uint8Array.of((port >>> 8) & 0xff, port & 0xff);
  return new Uint8Array(createHash('sha1').update(spiI).update(spiR).update(address).update(portBytes).digest());
}

/** How long one cookie secret is handed out (§2.6: "the responder should change the value of <secret> frequently"). */
export const COOKIE_SECRET_LIFETIME_MS = 60_000;
/** Bytes of the secret (SHA-256's block of strength). */
const COOKIE_SECRET_LENGTH = 32;
/** The cookie starts with the secret's version, 4 octets, so the right secret is found without trying both (§2.6). */
const COOKIE_VERSION_LENGTH = 4;
/** SHA-256 output; cookie = version ‖ hash, 36 octets (a COOKIE notify holds 1..64, §3.10.1). */
const COOKIE_HASH_LENGTH = 32;
export const COOKIE_LENGTH = COOKIE_VERSION_LENGTH + COOKIE_HASH_LENGTH;

interface CookieSecret {
  version: number;
  secret: Uint8Array;
}

/**
 * Stateless cookies (§2.6): Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>), SHA-256.
 * The secret is replaced every COOKIE_SECRET_LIFETIME_MS (checked lazily against `now`, monotonic ms); the one
 * before it stays accepted until the next change, so a cookie stays valid for at least one lifetime.
 */
export class CookieJar {
  private current: CookieSecret | null = null;
  private previous: CookieSecret | null = null;
  private since = 0;

  constructor(private readonly random: (n: number) => Uint8Array) {}

  private advance(now: number): CookieSecret {
    if (this.current === null) {
      this.current = { version: 0, secret: this.random(COOKIE_SECRET_LENGTH) };
      this.since = now;
    } else if (now - this.since >= COOKIE_SECRET_LIFETIME_MS) {
      // Two lifetimes without a call: the current secret is stale too.
      this.previous = now - this.since < 2 * COOKIE_SECRET_LIFETIME_MS ? this.current : null;
      this.current = { version: (this.current.version + 1) >>> 0, secret: this.random(COOKIE_SECRET_LENGTH) };
      this.since = now;
    }
    return this.current;
  }

  private static make(s: CookieSecret, ni: Uint8Array, address: Uint8Array, spiI: Uint8Array): Uint8Array {
    const out = new Uint8Array(COOKIE_LENGTH);
    new DataView(out.buffer).setUint32(0, s.version);
    out.set(createHash('sha256').update(ni).update(address).update(spiI).update(s.secret).digest(), COOKIE_VERSION_LENGTH);
    return out;
  }

  /** The cookie to send in a COOKIE notify for this IKE_SA_INIT request (Ni, source address, SPIi). */
  cookie(ni: Uint8Array, address: Uint8Array, spiI: Uint8Array, now: number): Uint8Array {
    return CookieJar.make(this.advance(now), ni, address, spiI);
  }

  /** Whether a returned cookie is one we made, for this Ni, address and SPIi, with a secret still accepted. */
  valid(cookie: Uint8Array, ni: Uint8Array, address: Uint8Array, spiI: Uint8Array, now: number): boolean {
    if (cookie.length !== COOKIE_LENGTH) return false;
    this.advance(now);
    const version = new DataView(cookie.buffer, cookie.byteOffset, cookie.byteLength).getUint32(0);
    const s = this.current?.version === version ? this.current : this.previous?.version === version ? this.previous : null;
    return s !== null && authEqual(CookieJar.make(s, ni, address, spiI), cookie);
  }
}
