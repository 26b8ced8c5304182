import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DH_GROUPS, ENCRYPTION_ALGORITHMS, INTEGRITY_ALGORITHMS, PRF_ALGORITHMS, type IkeProposal } from '../types.js';
import { ENCR_AES_CBC, ENCR_AES_GCM_16, PayloadType, ProtocolId, TransformType } from './constants.js';
import { SA_INIT_REQ } from './fixtures.test.js';
import { espAnswer, espProposalsToWire, ikeProposalsToWire, selectEsp, selectIke } from './proposals.js';
import { parseMessage, type Proposal } from './wire.js';

const GCM256: IkeProposal = { encryption: ['aes256gcm16'], integrity: [], prf: ['prfsha256'], dh: ['ecp256'] };

function strongswanOffer(): Proposal[] {
  const m = parseMessage(SA_INIT_REQ);
  assert.ok(m.ok);
  const sa = m.value.payloads[0];
  assert.ok(sa.type === PayloadType.SA);
  return sa.proposals;
}

test('strongSwan\'s IKE_SA_INIT offer (aes256gcm16-prfsha256-ecp256, KE ecp256) is chosen as is', () => {
  const s = selectIke(strongswanOffer(), [GCM256], 19);
  assert.ok(s.ok);
  assert.deepEqual(s.suite, { encryption: 'aes256gcm16', integrity: null, prf: 'prfsha256', dh: 'ecp256' });
  assert.deepEqual(s.answer, strongswanOffer()[0]); // one transform of each type: the offer itself
});

test('key length must match: aes128gcm16 configured refuses strongSwan\'s aes256gcm16', () => {
  assert.deepEqual(selectIke(strongswanOffer(), [{ ...GCM256, encryption: ['aes128gcm16'] }], 19), { ok: false, invalidKe: null });
});

test('an acceptable proposal with another DH group than the KE: INVALID_KE with our group', () => {
  assert.deepEqual(selectIke(strongswanOffer(), [{ ...GCM256, dh: ['curve25519', 'ecp256'] }], 31), { ok: false, invalidKe: 'ecp256' });
  // A later offered proposal carrying the KE's group wins over an earlier one that does not.
  const offer = [...ikeProposalsToWire([{ ...GCM256, dh: ['ecp384'] }, { ...GCM256, dh: ['ecp256'] }], new Uint8Array(0))];
  const s = selectIke(offer, [{ ...GCM256, dh: ['ecp384', 'ecp256'] }], 19);
  assert.ok(s.ok && s.suite.dh === 'ecp256' && s.answer.number === 2);
});

test('CBC needs an integrity transform; GCM takes none', () => {
  const cbc = ikeProposalsToWire([{ encryption: ['aes256'], integrity: ['sha256'], prf: ['prfsha256'], dh: ['ecp256'] }], new Uint8Array(0));
  const noInteg = [{ ...cbc[0], transforms: cbc[0].transforms.filter((t) => t.type !== TransformType.INTEG) }];
  const mine: IkeProposal[] = [{ encryption: ['aes256'], integrity: ['sha256'], prf: ['prfsha256'], dh: ['ecp256'] }];
  assert.ok(selectIke(cbc, mine, 19).ok);
  assert.deepEqual(selectIke(noInteg, mine, 19), { ok: false, invalidKe: null });
  assert.ok(!ikeProposalsToWire([GCM256], new Uint8Array(0))[0].transforms.some((t) => t.type === TransformType.INTEG));
});

test('a transform with an unknown attribute is never chosen (§3.3.6)', () => {
  const offer = strongswanOffer();
  offer[0].transforms[0].unknownAttribute = true;
  assert.deepEqual(selectIke(offer, [GCM256], 19), { ok: false, invalidKe: null });
});

test('ESP: ESN on only is refused; the answer has our SPI and one transform per type', () => {
  const spi = Uint8Array.of(1, 2, 3, 4);
  const mine = [{ encryption: ['aes128gcm16' as const], integrity: [], dh: [] }];
  const offer = espProposalsToWire(mine, spi, false);
  const s = selectEsp(offer, mine, null, false);
  assert.ok(s.ok);
  assert.equal(s.peerSpi, 0x01020304);
  const esnOnly = [{ ...offer[0], transforms: offer[0].transforms.map((t) => (t.type === TransformType.ESN ? { ...t, id: 1 } : t)) }];
  assert.equal(selectEsp(esnOnly, mine, null, false).ok, false);
  const answer = espAnswer(s.number, Uint8Array.of(9, 9, 9, 9), s.suite);
  assert.deepEqual(answer.transforms.map((t) => t.type), [TransformType.ENCR, TransformType.ESN]);
  assert.equal(answer.protocol, ProtocolId.ESP);
});

test('ESP in IKE_AUTH ignores DH transforms; in CREATE_CHILD_SA our groups require a matching KE', () => {
  const spi = Uint8Array.of(1, 2, 3, 4);
  const pfs = [{ encryption: ['aes256gcm16' as const], integrity: [], dh: ['ecp384' as const] }];
  const offer = espProposalsToWire(pfs, spi, true);
  assert.ok(selectEsp(offer, pfs, null, false).ok);
  assert.deepEqual(selectEsp(offer, pfs, 19, true), { ok: false, invalidKe: 'ecp384' });
  const s = selectEsp(offer, pfs, 20, true);
  assert.ok(s.ok && s.suite.dh === 'ecp384');
  // The peer wants PFS, we have none configured: refused.
  assert.equal(selectEsp(offer, [{ ...pfs[0], dh: [] }], 20, true).ok, false);
});

test('a configuration mixing GCM and CBC goes out as two proposals, the GCM one without integrity (RFC 5282 §8)', () => {
  const wire = ikeProposalsToWire([{ encryption: ['aes128gcm16', 'aes256'], integrity: ['sha256'], prf: ['prfsha256'], dh: ['ecp256'] }], new Uint8Array(0));
  assert.deepEqual(
    wire.map((p) => [p.number, p.transforms.map((t) => t.type)]),
    [
      [1, [TransformType.ENCR, TransformType.PRF, TransformType.DH]],
      [2, [TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH]],
    ],
  );
});

// Oracle: a proposal list built from one config selects that config's first choices, for every config.
test('property: our own proposals are always acceptable to ourselves, and the choice is a member of each list', () => {
  const pick = <T>(xs: readonly T[]) => fc.subarray([...xs], { minLength: 1 });
  const proposalArb = fc.record({ encryption: pick(ENCRYPTION_ALGORITHMS), integrity: pick(INTEGRITY_ALGORITHMS), prf: pick(PRF_ALGORITHMS), dh: pick(DH_GROUPS) });
  fc.assert(
    fc.property(proposalArb, (p) => {
      const offer = ikeProposalsToWire([p], new Uint8Array(0));
      for (const t of offer[0].transforms) if (t.type === TransformType.ENCR) assert.ok(t.id === ENCR_AES_GCM_16 || t.id === ENCR_AES_CBC);
      const s = selectIke(offer, [p], 0);
      const allGcm = p.encryption.every((e) => e.includes('gcm'));
      // With a KE group we cannot know (0), the answer names the group to use.
      assert.ok(!s.ok && s.invalidKe === p.dh[0]);
      const group = { modp2048: 14, ecp256: 19, ecp384: 20, curve25519: 31 }[p.dh[0]];
      const ok = selectIke(offer, [p], group);
      assert.ok(ok.ok);
      assert.ok(p.encryption.includes(ok.suite.encryption) && p.prf.includes(ok.suite.prf) && p.dh.includes(ok.suite.dh));
      assert.equal(ok.suite.integrity === null, ok.suite.encryption.includes('gcm'));
      if (allGcm) assert.equal(ok.suite.integrity, null);
    }),
  );
});
