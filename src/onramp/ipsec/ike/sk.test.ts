import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { ENCRYPTION_ALGORITHMS, INTEGRITY_ALGORITHMS, type EncryptionAlgorithm, type IntegrityAlgorithm } from '../types.js';
import { encryptionKeyLength, icvLength, integrityKeyLength, isAead, SkCodec, type IkeSuite } from './sk.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

/** Every suite the SK payload supports: GCM alone, CBC with each integrity transform. */
const SUITES: IkeSuite[] = ENCRYPTION_ALGORITHMS.flatMap((encryption): IkeSuite[] =>
  isAead(encryption)
    ? [{ encryption, integrity: null, prf: 'prfsha256' as const, dh: 'ecp256' as const }]
    : INTEGRITY_ALGORITHMS.map((integrity) => ({ encryption, integrity, prf: 'prfsha256' as const, dh: 'ecp256' as const })),
);
const suiteName = (s: IkeSuite): string => `${s.encryption}${s.integrity ? '-' + s.integrity : ''}`;

function keysFor(suite: IkeSuite, seed: number): { e: Uint8Array; a: Uint8Array | null } {
  const e = Uint8Array.from({ length: encryptionKeyLength(suite.encryption) }, (_, i) => (seed + 3 * i) & 0xff);
  const a = suite.integrity ? Uint8Array.from({ length: integrityKeyLength(suite.integrity) }, (_, i) => (seed + 7 * i + 1) & 0xff) : null;
  return { e, a };
}
const codec = (suite: IkeSuite, seed = 1): SkCodec => {
  const { e, a } = keysFor(suite, seed);
  return new SkCodec(suite, e, a);
};

test('key and ICV lengths: GCM key ‖ 4-byte salt and a 16-byte ICV (RFC 5282), HMAC-SHA2 keys 32/48/64 and ICVs 16/24/32 (RFC 4868)', () => {
  const e: Record<EncryptionAlgorithm, number> = { aes128gcm16: 20, aes256gcm16: 36, aes128: 16, aes256: 32 };
  for (const alg of ENCRYPTION_ALGORITHMS) assert.equal(encryptionKeyLength(alg), e[alg], alg);
  const a: Record<IntegrityAlgorithm, [number, number]> = { sha256: [32, 16], sha384: [48, 24], sha512: [64, 32] };
  for (const alg of INTEGRITY_ALGORITHMS) {
    assert.deepEqual([integrityKeyLength(alg), icvLength('aes256', alg)], a[alg], alg);
  }
  assert.equal(integrityKeyLength(null), 0);
  assert.equal(icvLength('aes128gcm16', null), 16);
});

// GCM spec (McGrew & Viega) test cases 4 (AES-128) and 16 (AES-256): 12-byte IV cafebabe facedbad decaf888, so
// in RFC 5282 terms salt = cafebabe (the last 4 bytes of SK_e) and the explicit IV = facedbaddecaf888.
const GCM_P =
  'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39';
const GCM_A = 'feedfacedeadbeeffeedfacedeadbeefabaddad2';
const GCM_VECTORS = [
  {
    encryption: 'aes128gcm16' as const,
    key: 'feffe9928665731c6d6a8f9467308308',
    c: '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091',
    t: '5bc94fbc3221a5db94fae95ae7121a47',
  },
  {
    encryption: 'aes256gcm16' as const,
    key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
    c: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
    t: '76fc6ece0f4e1768cddf8853bb2d551b',
  },
];

test('GCM open reproduces the GCM spec vectors (nonce = salt ‖ explicit IV, AAD, 16-byte ICV: RFC 5282 §3-5)', () => {
  for (const v of GCM_VECTORS) {
    const sk = new SkCodec({ encryption: v.encryption, integrity: null, prf: 'prfsha256', dh: 'ecp256' }, hex(v.key + 'cafebabe'), null);
    const body = cat(hex('facedbaddecaf888'), hex(v.c), hex(v.t));
    // The vector's plaintext ends in 0x39 = 57: read as IKE's pad length, 60 - 1 - 57 = 2 octets of payload remain.
    assert.equal(toHex(sk.open(hex(GCM_A), body)!), GCM_P.slice(0, 4), v.encryption);
    const tampered = new Uint8Array(body);
    tampered[20] ^= 0x80;
    assert.equal(sk.open(hex(GCM_A), tampered), null);
    assert.equal(sk.open(hex(GCM_A).subarray(1), body), null, 'AAD is authenticated');
  }
});

test('GCM seal: explicit IV ‖ ciphertext ‖ ICV, the IV a masked counter, no padding and a zero pad length (RFC 5282 §3)', () => {
  const suite: IkeSuite = { encryption: 'aes128gcm16', integrity: null, prf: 'prfsha256', dh: 'ecp256' };
  const key = hex('feffe9928665731c6d6a8f9467308308cafebabe');
  const sk = new SkCodec(suite, key, null);
  const aad = hex(GCM_A);
  const plain = hex('2a00000401020304');
  const first = sk.seal(aad, plain);
  const second = sk.seal(aad, plain);
  assert.equal(first.length, sk.sealedLength(plain.length));
  assert.equal(first.length, 8 + plain.length + 1 + 16);
  const ivOf = (b: Uint8Array): bigint => Buffer.from(b.subarray(0, 8)).readBigUInt64BE(0);
  assert.equal(ivOf(first) ^ ivOf(second), 1n ^ 2n, 'counter 1 then 2 under one mask');
  assert.notEqual(toHex(first.subarray(0, 8)), toHex(new SkCodec(suite, key, null).seal(aad, plain).subarray(0, 8)), 'another codec, another mask');
  const fixed = new SkCodec(suite, key, null, (n) => new Uint8Array(n));
  assert.equal(toHex(fixed.seal(aad, plain).subarray(0, 8)), '0000000000000001', 'a zero mask shows the counter');
  const d = createDecipheriv('aes-128-gcm', key.subarray(0, 16), cat(key.subarray(16), first.subarray(0, 8)));
  d.setAAD(aad);
  d.setAuthTag(first.subarray(first.length - 16));
  const raw = Buffer.concat([d.update(first.subarray(8, first.length - 16)), d.final()]);
  assert.equal(raw.toString('hex'), toHex(plain) + '00');
});

// RFC 3602 §4 case #2: AES-128-CBC, 32 bytes 00..1f. Read as IKE, the last octet 0x1f = 31 is the pad length:
// the payload chain is empty.
test('CBC open reproduces RFC 3602 case #2 and checks the HMAC-SHA2 ICV over header ‖ IV ‖ ciphertext (RFC 7296 §3.14)', () => {
  const key = hex('c286696d887c9aa0611bbb3e2025a45a');
  const iv = hex('562e17996d093d28ddb3ba695a2e6f58');
  const ct = hex('d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1');
  const aad = hex('0011223344556677 8899aabbccddeeff 2e202308 00000001 00000050 2900 0034');
  for (const integrity of INTEGRITY_ALGORITHMS) {
    const ik = new Uint8Array(integrityKeyLength(integrity)).fill(0x42);
    const icv = createHmac(integrity, ik).update(aad).update(iv).update(ct).digest().subarray(0, icvLength('aes128', integrity));
    const sk = new SkCodec({ encryption: 'aes128', integrity, prf: 'prfsha256', dh: 'modp2048' }, key, ik);
    assert.equal(sk.open(aad, cat(iv, ct, icv))?.length, 0, integrity);
    const badIcv = new Uint8Array(icv);
    badIcv[0] ^= 1;
    assert.equal(sk.open(aad, cat(iv, ct, badIcv)), null, `${integrity}: ICV`);
    // A truncated ICV of the wrong length (e.g. a sha256-256 one) does not verify either.
    assert.equal(sk.open(aad, cat(iv, ct, icv.subarray(1))), null, `${integrity}: short`);
  }
});

test('CBC seal: random IV ‖ block-padded ciphertext (pad length octet last) ‖ truncated HMAC', () => {
  const suite: IkeSuite = { encryption: 'aes256', integrity: 'sha384', prf: 'prfsha384', dh: 'modp2048' };
  const { e, a } = keysFor(suite, 9);
  const iv = hex('000102030405060708090a0b0c0d0e0f');
  const sk = new SkCodec(suite, e, a, () => iv);
  const aad = hex('0011223344556677 8899aabbccddeeff 2e202308 00000001 00000060 2900 0044');
  for (const n of [0, 1, 14, 15, 16, 17, 31, 32]) {
    const plain = Uint8Array.from({ length: n }, (_, i) => i + 100);
    const body = sk.seal(aad, plain);
    const padded = Math.ceil((n + 1) / 16) * 16;
    assert.equal(body.length, 16 + padded + 24, `${n}`);
    assert.equal(body.length, sk.sealedLength(n));
    assert.equal(toHex(body.subarray(0, 16)), toHex(iv));
    const icv = createHmac('sha384', a!).update(aad).update(body.subarray(0, 16 + padded)).digest().subarray(0, 24);
    assert.equal(toHex(body.subarray(16 + padded)), icv.toString('hex'));
    const d = createDecipheriv('aes-256-cbc', e, iv);
    d.setAutoPadding(false);
    const raw = Buffer.concat([d.update(body.subarray(16, 16 + padded)), d.final()]);
    assert.equal(raw[raw.length - 1], padded - n - 1, `pad length for ${n}`);
    assert.equal(raw.subarray(0, n).toString('hex'), toHex(plain));
  }
});

test('CBC open refuses a pad length longer than the plaintext, with a valid ICV (RFC 7296 §3.14)', () => {
  const suite: IkeSuite = { encryption: 'aes128', integrity: 'sha256', prf: 'prfsha256', dh: 'modp2048' };
  const { e, a } = keysFor(suite, 3);
  // A block whose last octet is 16: one more than the 15 octets before it.
  const block = new Uint8Array(16);
  block[15] = 16;
  const iv = new Uint8Array(16).fill(7);
  const encryptor = new SkCodec(suite, e, a, () => iv);
  // seal() of 15 octets gives exactly this layout with pad length 0; forge the pad length by re-encrypting.
  const aad = hex('00');
  const honest = encryptor.seal(aad, block.subarray(0, 15));
  assert.equal(toHex(new SkCodec(suite, e, a).open(aad, honest)!), toHex(block.subarray(0, 15)));
  const c = createCipheriv('aes-128-cbc', e, iv);
  c.setAutoPadding(false);
  const ct = Buffer.concat([c.update(block), c.final()]);
  const icv = createHmac('sha256', a!).update(aad).update(iv).update(ct).digest().subarray(0, 16);
  assert.equal(new SkCodec(suite, e, a).open(aad, cat(iv, ct, icv)), null);
  // Ciphertext that is not whole blocks, or no block at all.
  const short = honest.subarray(0, honest.length - 17);
  assert.equal(new SkCodec(suite, e, a).open(aad, short), null);
  assert.equal(new SkCodec(suite, e, a).open(aad, honest.subarray(0, 16 + 16)), null);
});

test('seal then open gives the payload chain back, for every suite and length (property)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...SUITES),
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 400 }),
      fc.nat({ max: 255 }),
      (suite, aad, plain, seed) => {
        const tx = codec(suite, seed);
        const rx = codec(suite, seed);
        const body = tx.seal(aad, plain);
        assert.equal(body.length, tx.sealedLength(plain.length), suiteName(suite));
        assert.equal(toHex(rx.open(aad, body)!), toHex(plain), suiteName(suite));
      },
    ),
    { numRuns: 300 },
  );
});

test('any changed bit of AAD or body, or the other direction key, makes open return null (property)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...SUITES),
      fc.uint8Array({ minLength: 1, maxLength: 40 }),
      fc.uint8Array({ maxLength: 100 }),
      fc.nat(),
      fc.nat({ max: 7 }),
      fc.boolean(),
      (suite, aad, plain, where, bit, inAad) => {
        const body = codec(suite).seal(aad, plain);
        const a2 = new Uint8Array(aad);
        const b2 = new Uint8Array(body);
        if (inAad) a2[where % a2.length] ^= 1 << bit;
        else b2[where % b2.length] ^= 1 << bit;
        assert.equal(codec(suite).open(a2, b2), null, suiteName(suite));
        assert.equal(codec(suite, 2).open(aad, body), null, `${suiteName(suite)}: other key`);
      },
    ),
    { numRuns: 300 },
  );
});

test('open never throws on arbitrary or truncated bodies (property)', () => {
  fc.assert(
    fc.property(fc.constantFrom(...SUITES), fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 200 }), fc.nat({ max: 200 }), (suite, aad, bytes, cut) => {
      const sk = codec(suite);
      const r = sk.open(aad, bytes);
      assert.ok(r === null || r instanceof Uint8Array);
      const sealed = sk.seal(aad, bytes);
      assert.equal(codec(suite).open(aad, sealed.subarray(0, Math.min(cut, sealed.length - 1))), null);
    }),
    { numRuns: 300 },
  );
});

test('the constructor names a wrong key length or a missing integrity transform', () => {
  const gcm: IkeSuite = { encryption: 'aes256gcm16', integrity: null, prf: 'prfsha256', dh: 'ecp256' };
  assert.throws(() => new SkCodec(gcm, new Uint8Array(32), null), /SK_e for aes256gcm16 is 36 bytes, got 32/);
  const cbc: IkeSuite = { encryption: 'aes256', integrity: null, prf: 'prfsha256', dh: 'ecp256' };
  assert.throws(() => new SkCodec(cbc, new Uint8Array(32), null), /needs an integrity transform/);
  const cbc2: IkeSuite = { ...cbc, integrity: 'sha256' };
  assert.throws(() => new SkCodec(cbc2, new Uint8Array(32), new Uint8Array(16)), /SK_a for sha256 is 32 bytes, got 16/);
});
