import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PRF_ALGORITHMS } from '../types.js';
import { prf, prfLength, prfPlus } from './prf.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const fill = (byte: number, n: number): Uint8Array => new Uint8Array(n).fill(byte);

// RFC 4231 §4 (test case 5 is truncated output, not a PRF case). RFC 4868 §2.7.1 uses the same inputs for its
// PRF-HMAC-SHA-256/384/512 vectors.
const RFC4231 = [
  {
    name: '4.2',
    key: fill(0x0b, 20),
    data: text('Hi There'),
    prfsha256: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    prfsha384: 'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6',
    prfsha512: '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
  },
  {
    name: '4.3',
    key: text('Jefe'),
    data: text('what do ya want for nothing?'),
    prfsha256: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    prfsha384: 'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649',
    prfsha512: '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
  },
  {
    name: '4.4',
    key: fill(0xaa, 20),
    data: fill(0xdd, 50),
    prfsha256: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',
    prfsha384: '88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27',
    prfsha512: 'fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb',
  },
  {
    name: '4.5',
    key: Uint8Array.from({ length: 25 }, (_, i) => i + 1),
    data: fill(0xcd, 50),
    prfsha256: '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
    prfsha384: '3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb',
    prfsha512: 'b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd',
  },
  {
    name: '4.7 (key longer than the block: hashed first)',
    key: fill(0xaa, 131),
    data: text('Test Using Larger Than Block-Size Key - Hash Key First'),
    prfsha256: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    prfsha384: '4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952',
    prfsha512: '80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598',
  },
  {
    name: '4.8',
    key: fill(0xaa, 131),
    data: text(
      'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.',
    ),
    prfsha256: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
    prfsha384: '6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e',
    prfsha512: 'e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58',
  },
] as const;

test('prf matches the HMAC-SHA2 vectors of RFC 4231 §4 (RFC 4868 §2.7.1) for all three PRFs', () => {
  for (const c of RFC4231) {
    for (const alg of PRF_ALGORITHMS) {
      assert.equal(toHex(prf(alg, c.key, c.data)), c[alg], `${c.name} ${alg}`);
    }
  }
});

test('prfLength is the HMAC output length (RFC 4868 §2.1.2)', () => {
  assert.deepEqual(PRF_ALGORITHMS.map(prfLength), [32, 48, 64]);
});

test('prf+ is T1 | T2 | ... with T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n) (RFC 7296 §2.13)', () => {
  const key = hex('000102030405060708090a0b0c0d0e0f');
  const seed = text('seed');
  const t1 = prf('prfsha256', key, new Uint8Array([...seed, 1]));
  const t2 = prf('prfsha256', key, new Uint8Array([...t1, ...seed, 2]));
  const t3 = prf('prfsha256', key, new Uint8Array([...t2, ...seed, 3]));
  assert.equal(toHex(prfPlus('prfsha256', key, seed, 96)), toHex(t1) + toHex(t2) + toHex(t3));
  assert.equal(toHex(prfPlus('prfsha256', key, seed, 40)), (toHex(t1) + toHex(t2)).slice(0, 80));
  assert.equal(prfPlus('prfsha256', key, seed, 0).length, 0);
});

test('prf+ of n bytes is a prefix of prf+ of more bytes, for every PRF', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...PRF_ALGORITHMS),
      fc.uint8Array({ maxLength: 80 }),
      fc.uint8Array({ maxLength: 80 }),
      fc.nat({ max: 400 }),
      fc.nat({ max: 400 }),
      (alg, key, seed, a, b) => {
        const [short, long] = a < b ? [a, b] : [b, a];
        const x = prfPlus(alg, key, seed, short);
        const y = prfPlus(alg, key, seed, long);
        assert.equal(x.length, short);
        assert.equal(y.length, long);
        assert.equal(toHex(x), toHex(y.subarray(0, short)));
      },
    ),
    { numRuns: 100 },
  );
});

test('prf+ refuses more than 255 blocks with an error that names the limit', () => {
  assert.equal(prfPlus('prfsha256', fill(1, 32), fill(2, 8), 255 * 32).length, 255 * 32);
  assert.throws(() => prfPlus('prfsha256', fill(1, 32), fill(2, 8), 255 * 32 + 1), /255 blocks/);
  assert.throws(() => prfPlus('prfsha256', fill(1, 32), fill(2, 8), -1), /RFC 7296 §2.13/);
});
