/**
 * Proposals (RFC 7296 §3.3): our configured IkeProposal / EspProposal as SA payload substructures, and the
 * responder's choice among what an initiator offers (§2.7: the responder picks one proposal and one transform of
 * each type; the initiator's order is its preference, we follow it).
 */
import type { DhGroup, EncryptionAlgorithm, EspProposal, IkeProposal, IntegrityAlgorithm, PrfAlgorithm } from '../types.js';
import type { IkeSuite } from './crypto.js';
import {
  AUTH_HMAC_SHA2_256_128,
  AUTH_HMAC_SHA2_384_192,
  AUTH_HMAC_SHA2_512_256,
  DH_CURVE25519,
  DH_ECP256,
  DH_ECP384,
  DH_MODP2048,
  ENCR_AES_CBC,
  ENCR_AES_GCM_16,
  ESN_NONE,
  PRF_HMAC_SHA2_256,
  PRF_HMAC_SHA2_384,
  PRF_HMAC_SHA2_512,
  ProtocolId,
  TransformType,
} from './constants.js';
import type { Proposal, Transform } from './wire.js';

const ENCR: Record<EncryptionAlgorithm, { id: number; keyLength: number }> = {
  aes128gcm16: { id: ENCR_AES_GCM_16, keyLength: 128 },
  aes256gcm16: { id: ENCR_AES_GCM_16, keyLength: 256 },
  aes128: { id: ENCR_AES_CBC, keyLength: 128 },
  aes256: { id: ENCR_AES_CBC, keyLength: 256 },
};
const PRF: Record<PrfAlgorithm, number> = { prfsha256: PRF_HMAC_SHA2_256, prfsha384: PRF_HMAC_SHA2_384, prfsha512: PRF_HMAC_SHA2_512 };
const INTEG: Record<IntegrityAlgorithm, number> = { sha256: AUTH_HMAC_SHA2_256_128, sha384: AUTH_HMAC_SHA2_384_192, sha512: AUTH_HMAC_SHA2_512_256 };
const DH: Record<DhGroup, number> = { modp2048: DH_MODP2048, ecp256: DH_ECP256, ecp384: DH_ECP384, curve25519: DH_CURVE25519 };

/** IANA number of a DH group (the KE payload's field). */
export function dhNumber(group: DhGroup): number {
  return DH[group];
}

/** The DH group of an IANA number, or null if tether does not speak it. */
export function dhGroupOf(id: number): DhGroup | null {
  for (const [name, n] of Object.entries(DH)) if (n === id) return name as DhGroup;
  return null;
}

export function isAeadName(alg: EncryptionAlgorithm): boolean {
  return ENCR[alg].id === ENCR_AES_GCM_16;
}

const encrTransform = (a: EncryptionAlgorithm): Transform => ({ type: TransformType.ENCR, id: ENCR[a].id, keyLength: ENCR[a].keyLength });
const prfTransform = (a: PrfAlgorithm): Transform => ({ type: TransformType.PRF, id: PRF[a], keyLength: null });
const integTransform = (a: IntegrityAlgorithm): Transform => ({ type: TransformType.INTEG, id: INTEG[a], keyLength: null });
const dhTransform = (a: DhGroup): Transform => ({ type: TransformType.DH, id: DH[a], keyLength: null });
const ESN_OFF: Transform = { type: TransformType.ESN, id: ESN_NONE, keyLength: null };

/**
 * A configured proposal that mixes AEAD and CBC ciphers goes out as two: RFC 5282 §8 forbids integrity transforms
 * in a proposal that offers an AEAD cipher (strongSwan splits them the same way).
 */
function splitAead<T extends { encryption: EncryptionAlgorithm[] }>(configured: readonly T[]): Array<T & { aead: boolean }> {
  const out: Array<T & { aead: boolean }> = [];
  for (const p of configured) {
    const aead = p.encryption.filter(isAeadName);
    const cbc = p.encryption.filter((e) => !isAeadName(e));
    if (aead.length > 0) out.push({ ...p, encryption: aead, aead: true });
    if (cbc.length > 0) out.push({ ...p, encryption: cbc, aead: false });
  }
  return out;
}

/** Our IKE proposals as sent in IKE_SA_INIT (empty SPI) or an IKE rekey (our new 8-byte SPI). */
export function ikeProposalsToWire(configured: readonly IkeProposal[], spi: Uint8Array): Proposal[] {
  return splitAead(configured).map((p, i) => ({
    number: i + 1,
    protocol: ProtocolId.IKE,
    spi,
    transforms: [...p.encryption.map(encrTransform), ...p.prf.map(prfTransform), ...(p.aead ? [] : p.integrity.map(integTransform)), ...p.dh.map(dhTransform)],
  }));
}

/** Our ESP proposals (4-byte SPI); `withDh`: PFS groups included (CREATE_CHILD_SA only, never IKE_AUTH: §1.2). */
export function espProposalsToWire(configured: readonly EspProposal[], spi: Uint8Array, withDh: boolean): Proposal[] {
  return splitAead(configured).map((p, i) => ({
    number: i + 1,
    protocol: ProtocolId.ESP,
    spi,
    transforms: [...p.encryption.map(encrTransform), ...(p.aead ? [] : p.integrity.map(integTransform)), ...(withDh ? p.dh.map(dhTransform) : []), ESN_OFF],
  }));
}

/** The values of one transform type an offered proposal carries that `accept` maps, in the offer's order. */
function accepted<T>(offer: Proposal, type: TransformType, accept: (t: Transform) => T | null): T[] {
  const out: T[] = [];
  for (const t of offer.transforms) {
    if (t.type !== type || t.unknownAttribute) continue;
    const v = accept(t);
    if (v !== null && !out.includes(v)) out.push(v);
  }
  return out;
}

function encrOf(t: Transform, allowed: readonly EncryptionAlgorithm[]): EncryptionAlgorithm | null {
  for (const a of allowed) if (ENCR[a].id === t.id && ENCR[a].keyLength === t.keyLength) return a;
  return null;
}
function byId<T extends string>(table: Record<T, number>, allowed: readonly T[], id: number): T | null {
  for (const a of allowed) if (table[a] === id) return a;
  return null;
}
const hasType = (offer: Proposal, type: TransformType): boolean => offer.transforms.some((t) => t.type === type);

export type IkeSelection =
  | { ok: true; suite: IkeSuite; answer: Proposal }
  /** Acceptable, but the KE payload carries another group: INVALID_KE_PAYLOAD with this one (§1.2). */
  | { ok: false; invalidKe: DhGroup }
  | { ok: false; invalidKe: null };

/**
 * The responder's choice (§2.7) among `offered` against our `configured`; `keGroup` is the KE payload's group
 * (IKE_SA_INIT or an IKE rekey). An offered proposal that carries the KE's group wins over an earlier one that
 * does not, so a good guess is never refused.
 */
export function selectIke(offered: readonly Proposal[], configured: readonly IkeProposal[], keGroup: number): IkeSelection {
  let fallback: DhGroup | null = null;
  for (const offer of offered) {
    if (offer.protocol !== ProtocolId.IKE) continue;
    for (const c of configured) {
      const encr = accepted(offer, TransformType.ENCR, (t) => encrOf(t, c.encryption));
      const prf = accepted(offer, TransformType.PRF, (t) => byId(PRF, c.prf, t.id));
      const dh = accepted(offer, TransformType.DH, (t) => byId(DH, c.dh, t.id));
      if (encr.length === 0 || prf.length === 0 || dh.length === 0) continue;
      const integ = accepted(offer, TransformType.INTEG, (t) => byId(INTEG, c.integrity, t.id));
      // AEAD wants no integrity transform; CBC needs one (§3.3.3).
      const e = encr.find((a) => (isAeadName(a) ? true : integ.length > 0));
      if (e === undefined) continue;
      const integrity = isAeadName(e) ? null : integ[0];
      const group = dh.find((g) => DH[g] === keGroup);
      if (group === undefined) {
        fallback ??= dh[0];
        continue;
      }
      const suite: IkeSuite = { encryption: e, integrity, prf: prf[0], dh: group };
      return { ok: true, suite, answer: ikeAnswer(offer.number, offer.spi, suite) };
    }
  }
  return { ok: false, invalidKe: fallback };
}

/** One transform of each type, as the responder answers (§3.3). */
export function ikeAnswer(number: number, spi: Uint8Array, suite: IkeSuite): Proposal {
  return {
    number,
    protocol: ProtocolId.IKE,
    spi,
    transforms: [encrTransform(suite.encryption), prfTransform(suite.prf), ...(suite.integrity ? [integTransform(suite.integrity)] : []), dhTransform(suite.dh)],
  };
}

export interface EspSuite {
  encryption: EncryptionAlgorithm;
  integrity: IntegrityAlgorithm | null;
  /** PFS group of a CREATE_CHILD_SA, null without. */
  dh: DhGroup | null;
}

export type EspSelection = { ok: true; suite: EspSuite; peerSpi: number; number: number } | { ok: false; invalidKe: DhGroup | null };

/**
 * The responder's ESP choice. `keGroup`: the KE payload's group in a CREATE_CHILD_SA, null in IKE_AUTH or
 * without KE (then DH transforms are ignored in IKE_AUTH, §1.2, and refused when we require PFS on a rekey).
 * `inCreateChild`: a CREATE_CHILD_SA, where our configured groups mean PFS is required.
 */
export function selectEsp(offered: readonly Proposal[], configured: readonly EspProposal[], keGroup: number | null, inCreateChild: boolean): EspSelection {
  let fallback: DhGroup | null = null;
  for (const offer of offered) {
    if (offer.protocol !== ProtocolId.ESP || offer.spi.length !== 4) continue;
    // ESN: off only (types.ts); an offer without an ESN transform means off too.
    if (hasType(offer, TransformType.ESN) && !offer.transforms.some((t) => t.type === TransformType.ESN && t.id === ESN_NONE)) continue;
    for (const c of configured) {
      const encr = accepted(offer, TransformType.ENCR, (t) => encrOf(t, c.encryption));
      const integ = accepted(offer, TransformType.INTEG, (t) => byId(INTEG, c.integrity, t.id));
      const e = encr.find((a) => (isAeadName(a) ? true : integ.length > 0));
      if (e === undefined) continue;
      let dh: DhGroup | null = null;
      if (inCreateChild && c.dh.length > 0) {
        const groups = accepted(offer, TransformType.DH, (t) => byId(DH, c.dh, t.id));
        if (groups.length === 0) continue;
        const g = groups.find((x) => DH[x] === keGroup);
        if (g === undefined) {
          fallback ??= groups[0];
          continue;
        }
        dh = g;
      } else if (inCreateChild && keGroup !== null) {
        continue; // the peer wants PFS, this proposal of ours has none
      }
      const spi = ((offer.spi[0] << 24) | (offer.spi[1] << 16) | (offer.spi[2] << 8) | offer.spi[3]) >>> 0;
      return { ok: true, suite: { encryption: e, integrity: isAeadName(e) ? null : integ[0], dh }, peerSpi: spi, number: offer.number };
    }
  }
  return { ok: false, invalidKe: fallback };
}

/** One transform of each type with our SPI, as the responder answers. */
export function espAnswer(number: number, spi: Uint8Array, suite: EspSuite): Proposal {
  return {
    number,
    protocol: ProtocolId.ESP,
    spi,
    transforms: [encrTransform(suite.encryption), ...(suite.integrity ? [integTransform(suite.integrity)] : []), ...(suite.dh ? [dhTransform(suite.dh)] : []), ESN_OFF],
  };
}

/** strongSwan-style names for status: "aes256gcm16-prfsha256-ecp256". */
export function ikeSuiteName(s: IkeSuite): string {
  return [s.encryption, s.integrity, s.prf, s.dh].filter((x) => x !== null).join('-');
}
export function espSuiteName(s: EspSuite): string {
  return [s.encryption, s.integrity, s.dh].filter((x) => x !== null).join('-');
}
