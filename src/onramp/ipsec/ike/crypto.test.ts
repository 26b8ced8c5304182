import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { DH_GROUPS, ENCRYPTION_ALGORITHMS, INTEGRITY_ALGORITHMS, PRF_ALGORITHMS, type EncryptionAlgorithm, type IntegrityAlgorithm } from '../types.js';
import {
  authEqual,
  COOKIE_LENGTH,
  COOKIE_SECRET_LIFETIME_MS,
  CookieJar,
  deriveChildKeys,
  deriveIkeKeys,
  deriveRekeyedIkeKeys,
  dhStart,
  isAead,
  natDetectionHash,
  pskAuth,
  SkCodec,
  type IkeKeys,
  type IkeSuite,
} from './crypto.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b).toString('hex'));
const keysHex = (k: IkeKeys): Record<string, string | null> => Object.fromEntries(Object.entries(k).map(([n, v]) => [n, toHex(v)]));

/** Known answers from testdata/crypto-kat.py: Python's hmac/hashlib, written from RFC 7296's text alone. */
interface Kat {
  ni: string; nr: string; shared: string; spiI: string; spiR: string;
  ike: Array<{ suite: IkeSuite; keys: Record<string, string | null> }>;
  rekey: Array<{ suite: IkeSuite; oldPrf: 'prfsha384'; oldSkD: string; spiI: string; spiR: string; keys: Record<string, string | null> }>;
  child: Array<{
    prf: 'prfsha256'; skD: string; pfs: boolean;
    esp: { encryption: EncryptionAlgorithm; integrity: IntegrityAlgorithm | null };
    initiatorToResponder: { encryptionKey: string; integrityKey: string | null };
    responderToInitiator: { encryptionKey: string; integrityKey: string | null };
  }>;
  psk: { prf: 'prfsha256'; psk: string; message: string; peerNonce: string; skP: string; idBody: string; auth: string };
  nat: { address: string; port: number; hash: string };
}
const KAT = JSON.parse(readFileSync(new URL('./testdata/crypto-kat.json', import.meta.url), 'utf8')) as Kat;
const [NI, NR, SHARED, SPI_I, SPI_R] = [KAT.ni, KAT.nr, KAT.shared, KAT.spiI, KAT.spiR].map(hex);

test('deriveIkeKeys reproduces the independent known answers (§2.14: SKEYSEED = prf(Ni | Nr, g^ir), prf+ split)', () => {
  for (const k of KAT.ike) {
    assert.deepEqual(keysHex(deriveIkeKeys(k.suite, NI, NR, SHARED, SPI_I, SPI_R)), k.keys, `${k.suite.encryption} ${k.suite.prf}`);
  }
});

test('deriveRekeyedIkeKeys reproduces the known answer (§2.18: SKEYSEED = prf_old(SK_d old, g^ir | Ni | Nr), new SPIs)', () => {
  for (const k of KAT.rekey) {
    const keys = deriveRekeyedIkeKeys(k.suite, k.oldPrf, hex(k.oldSkD), NI, NR, SHARED, hex(k.spiI), hex(k.spiR));
    assert.deepEqual(keysHex(keys), k.keys);
  }
});

test('deriveChildKeys reproduces the known answers (§2.17: encr I→R, integ I→R, encr R→I, integ R→I; with and without PFS)', () => {
  for (const c of KAT.child) {
    const keys = deriveChildKeys(c.prf, hex(c.skD), c.esp, NI, NR, c.pfs ? SHARED : null);
    const pairHex = (p: { encryptionKey: Uint8Array; integrityKey: Uint8Array | null }) => ({
      encryptionKey: toHex(p.encryptionKey),
      integrityKey: toHex(p.integrityKey),
    });
    assert.deepEqual(pairHex(keys.initiatorToResponder), c.initiatorToResponder, `${c.esp.encryption} pfs=${c.pfs}`);
    assert.deepEqual(pairHex(keys.responderToInitiator), c.responderToInitiator, `${c.esp.encryption} pfs=${c.pfs}`);
  }
});

test('pskAuth reproduces the known answer (§2.15) and authEqual compares in constant time', () => {
  const p = KAT.psk;
  const auth = pskAuth(p.prf, hex(p.psk), hex(p.message), hex(p.peerNonce), hex(p.skP), hex(p.idBody));
  assert.equal(toHex(auth), p.auth);
  assert.ok(authEqual(auth, hex(p.auth)));
  const wrong = pskAuth(p.prf, new TextEncoder().encode('wrong'), hex(p.message), hex(p.peerNonce), hex(p.skP), hex(p.idBody));
  assert.ok(!authEqual(wrong, auth));
  assert.ok(!authEqual(auth.subarray(1), auth));
});

test('natDetectionHash is SHA-1(SPIi | SPIr | IP | port) (§2.23)', () => {
  assert.equal(toHex(natDetectionHash(SPI_I, SPI_R, hex(KAT.nat.address), KAT.nat.port)), KAT.nat.hash);
  assert.notEqual(toHex(natDetectionHash(SPI_I, SPI_R, hex(KAT.nat.address), 500)), KAT.nat.hash);
});

test('every IKE suite: key lengths per transform, and SK_e/SK_a drive an SkCodec pair that interoperates', () => {
  const e: Record<EncryptionAlgorithm, number> = { aes128gcm16: 20, aes256gcm16: 36, aes128: 16, aes256: 32 };
  const a: Record<IntegrityAlgorithm, number> = { sha256: 32, sha384: 48, sha512: 64 };
  const d = { prfsha256: 32, prfsha384: 48, prfsha512: 64 };
  for (const encryption of ENCRYPTION_ALGORITHMS) {
    for (const integrity of isAead(encryption) ? [null] : INTEGRITY_ALGORITHMS) {
      for (const prf of PRF_ALGORITHMS) {
        const suite: IkeSuite = { encryption, integrity, prf, dh: 'ecp256' };
        const k = deriveIkeKeys(suite, NI, NR, SHARED, SPI_I, SPI_R);
        assert.deepEqual(
          [k.skD, k.skPi, k.skPr, k.skEi, k.skEr].map((x) => x.length),
          [d[prf], d[prf], d[prf], e[encryption], e[encryption]],
        );
        assert.equal(k.skAi?.length ?? 0, integrity ? a[integrity] : 0);
        assert.equal(k.skAr?.length ?? 0, integrity ? a[integrity] : 0);
        const aad = Uint8Array.of(1, 2, 3);
        const plain = Uint8Array.of(0x29, 0, 0, 8, 0, 0, 0x40, 0);
        const sealed = new SkCodec(suite, k.skEi, k.skAi).seal(aad, plain);
        assert.equal(toHex(new SkCodec(suite, k.skEi, k.skAi).open(aad, sealed)), toHex(plain));
        assert.equal(new SkCodec(suite, k.skEr, k.skAr).open(aad, sealed), null, 'the other direction key');
      }
    }
  }
});

test('a CBC suite without an integrity transform is refused with a message naming it', () => {
  const suite: IkeSuite = { encryption: 'aes256', integrity: null, prf: 'prfsha256', dh: 'ecp256' };
  assert.throws(() => deriveIkeKeys(suite, NI, NR, SHARED, SPI_I, SPI_R), /aes256 needs an integrity transform/);
  assert.throws(() => deriveChildKeys('prfsha256', NI, { encryption: 'aes128', integrity: null }, NI, NR, null), /aes128 needs/);
  // With GCM an integrity transform given by mistake is ignored: no integrity key (RFC 4106 §8.1).
  const gcm = deriveChildKeys('prfsha256', NI, { encryption: 'aes128gcm16', integrity: 'sha256' }, NI, NR, null);
  assert.equal(gcm.initiatorToResponder.integrityKey, null);
  assert.equal(gcm.initiatorToResponder.encryptionKey.length, 20);
});

test('both sides of a real exchange derive the same keys from their own DH halves (every group)', () => {
  for (const group of DH_GROUPS) {
    const i = dhStart(group);
    const r = dhStart(group);
    const suite: IkeSuite = { encryption: 'aes256gcm16', integrity: null, prf: 'prfsha512', dh: group };
    const ki = deriveIkeKeys(suite, NI, NR, i.computeShared(r.publicValue)!, SPI_I, SPI_R);
    const kr = deriveIkeKeys(suite, NI, NR, r.computeShared(i.publicValue)!, SPI_I, SPI_R);
    assert.deepEqual(keysHex(ki), keysHex(kr), group);
  }
});

const ADDRESS = Uint8Array.of(192, 0, 2, 7);

test('CookieJar: a cookie is valid for the Ni, address and SPIi it was made for, and only those (§2.6)', () => {
  let n = 0;
  const jar = new CookieJar((len) => new Uint8Array(len).fill(++n));
  const c = jar.cookie(NI, ADDRESS, SPI_I, 1000);
  assert.equal(c.length, COOKIE_LENGTH);
  assert.ok(COOKIE_LENGTH <= 64, 'a COOKIE notify carries 1..64 octets (§3.10.1)');
  assert.ok(jar.valid(c, NI, ADDRESS, SPI_I, 1000));
  assert.ok(!jar.valid(c, NR, ADDRESS, SPI_I, 1000), 'other Ni');
  assert.ok(!jar.valid(c, NI, Uint8Array.of(192, 0, 2, 8), SPI_I, 1000), 'other address');
  assert.ok(!jar.valid(c, NI, ADDRESS, SPI_R, 1000), 'other SPIi');
  assert.ok(!jar.valid(c.subarray(1), NI, ADDRESS, SPI_I, 1000), 'short');
  assert.ok(!jar.valid(new Uint8Array(0), NI, ADDRESS, SPI_I, 1000), 'empty');
  // Another jar (another secret) does not accept it.
  assert.ok(!new CookieJar((len) => new Uint8Array(len).fill(0xee)).valid(c, NI, ADDRESS, SPI_I, 1000));
});

test('CookieJar: the secret rotates; a cookie survives one rotation, not two, and is valid for at least one lifetime', () => {
  let n = 0;
  const jar = new CookieJar((len) => new Uint8Array(len).fill(++n));
  const t0 = 5_000;
  const c = jar.cookie(NI, ADDRESS, SPI_I, t0);
  const later = t0 + COOKIE_SECRET_LIFETIME_MS - 1;
  const c2 = jar.cookie(NI, ADDRESS, SPI_I, later);
  assert.deepEqual(c2, c, 'same secret within its lifetime');
  const rotated = t0 + COOKIE_SECRET_LIFETIME_MS;
  assert.ok(jar.valid(c, NI, ADDRESS, SPI_I, rotated), 'previous secret still accepted');
  const c3 = jar.cookie(NI, ADDRESS, SPI_I, rotated);
  assert.notDeepEqual(c3, c, 'a new secret after the lifetime');
  assert.ok(jar.valid(c3, NI, ADDRESS, SPI_I, rotated));
  assert.ok(!jar.valid(c, NI, ADDRESS, SPI_I, rotated + COOKIE_SECRET_LIFETIME_MS), 'two rotations: gone');
  assert.ok(jar.valid(c3, NI, ADDRESS, SPI_I, rotated + COOKIE_SECRET_LIFETIME_MS), 'one rotation: kept');
  // A long silence: both secrets are stale.
  const quiet = new CookieJar((len) => new Uint8Array(len).fill(++n));
  const q = quiet.cookie(NI, ADDRESS, SPI_I, 0);
  assert.ok(!quiet.valid(q, NI, ADDRESS, SPI_I, 2 * COOKIE_SECRET_LIFETIME_MS));
});

test('CookieJar: any changed octet of a cookie is refused, and valid() never throws (property)', () => {
  const jar = new CookieJar((len) => Uint8Array.from({ length: len }, (_, i) => i * 31));
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 16, maxLength: 256 }),
      fc.uint8Array({ minLength: 4, maxLength: 16 }),
      fc.uint8Array({ minLength: 8, maxLength: 8 }),
      fc.nat({ max: COOKIE_LENGTH - 1 }),
      fc.integer({ min: 1, max: 255 }),
      fc.uint8Array({ maxLength: 80 }),
      (ni, address, spi, at, xor, junk) => {
        const c = jar.cookie(ni, address, spi, 0);
        assert.ok(jar.valid(c, ni, address, spi, 0));
        const bad = new Uint8Array(c);
        bad[at] ^= xor;
        assert.ok(!jar.valid(bad, ni, address, spi, 0));
        jar.valid(junk, ni, address, spi, 0);
      },
    ),
    { numRuns: 200 },
  );
});
