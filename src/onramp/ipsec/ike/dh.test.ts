import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createDiffieHellmanGroup } from 'node:crypto';
import fc from 'fast-check';
import { DH_GROUPS } from '../types.js';
import { dhPublicLength, dhStart, dhStartWithPrivate } from './dh.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const toBig = (b: Uint8Array): bigint => BigInt('0x' + (toHex(b) || '0'));
const fromBig = (n: bigint, length: number): Uint8Array => hex(n.toString(16).padStart(length * 2, '0'));

/** RFC 3526 §3, the 2048-bit MODP group (IKE group 14): p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }, g = 2. */
const RFC3526_GROUP14_PRIME = hex(`
  FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
  EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
  EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
  83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
  E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
  15728E5A 8AACAA68 FFFFFFFF FFFFFFFF`);
const P = toBig(RFC3526_GROUP14_PRIME);

/** Square-and-multiply: the obviously correct oracle for g^x mod p. */
function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let b = base % modulus;
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
  }
  return result;
}

test('the MODP group is RFC 3526 §3 group 14 (prime and generator 2)', () => {
  const group = createDiffieHellmanGroup('modp14');
  assert.equal(toHex(group.getPrime()), toHex(RFC3526_GROUP14_PRIME));
  assert.equal(toHex(group.getGenerator()), '02');
});

test('KE data lengths: 256 (modp2048), 64 and 96 (x ‖ y, RFC 5903 §7), 32 (RFC 8031)', () => {
  assert.deepEqual(DH_GROUPS.map(dhPublicLength), [256, 64, 96, 32]);
  for (const g of DH_GROUPS) assert.equal(dhStart(g).publicValue.length, dhPublicLength(g), g);
});

test('modp2048 matches a BigInt g^x mod p oracle, public value and shared secret zero-padded to 256 bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.uint8Array({ minLength: 1, maxLength: 40 }), (a, b) => {
      fc.pre(toBig(a) > 1n && toBig(b) > 1n);
      const x = dhStartWithPrivate('modp2048', a);
      const y = dhStartWithPrivate('modp2048', b);
      assert.equal(toHex(x.publicValue), toHex(fromBig(modPow(2n, toBig(a), P), 256)));
      const shared = x.computeShared(y.publicValue);
      assert.ok(shared);
      assert.equal(toHex(shared), toHex(fromBig(modPow(2n, toBig(a) * toBig(b), P), 256)));
      assert.equal(toHex(shared), toHex(y.computeShared(x.publicValue)!));
    }),
    { numRuns: 20 },
  );
  // A small exponent gives a small g^x: its leading zero octets must be there (RFC 7296 §3.4 pads to the prime).
  const small = dhStartWithPrivate('modp2048', Uint8Array.of(5));
  assert.equal(small.publicValue.length, 256);
  assert.equal(toHex(small.publicValue), '00'.repeat(255) + '20');
  const peer = dhStartWithPrivate('modp2048', Uint8Array.of(7));
  assert.equal(toHex(small.computeShared(peer.publicValue)!), toHex(fromBig(1n << 35n, 256)));
});

test('modp2048 refuses 0, 1, p-1, p, values above p and the wrong length (RFC 7296 §5)', () => {
  const x = dhStart('modp2048');
  for (const bad of [0n, 1n, P - 1n, P, P + 5n, (1n << 2048n) - 1n]) {
    assert.equal(x.computeShared(fromBig(bad, 256)), null, `y = ${bad.toString(16).slice(0, 12)}`);
  }
  assert.ok(x.computeShared(fromBig(2n, 256)));
  assert.ok(x.computeShared(fromBig(P - 2n, 256)));
  const peer = dhStart('modp2048').publicValue;
  assert.equal(x.computeShared(peer.subarray(1)), null);
  assert.equal(x.computeShared(new Uint8Array([0, ...peer])), null);
  assert.equal(x.computeShared(new Uint8Array(0)), null);
});

// RFC 5903 §8.1 and §8.2: i, g^i, r, g^r, g^ir (x and y); the KE payload holds x ‖ y, the secret is x (§7).
const RFC5903 = [
  {
    group: 'ecp256' as const,
    i: 'C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433',
    gi: 'DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180 5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3',
    r: 'C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53',
    gr: 'D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63 56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB',
    girx: 'D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE',
  },
  {
    group: 'ecp384' as const,
    i: '099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194',
    gi: `667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA
         9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C`,
    r: '41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942E0308312916B8ED2960E4BD55A7448FC',
    gr: `E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571
         DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C`,
    girx: '11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4D603135569B9E9D09CF5D4A270F59746',
  },
];

test('ecp256 and ecp384 reproduce RFC 5903 §8: KE data x ‖ y without 0x04, shared secret x alone', () => {
  for (const v of RFC5903) {
    const i = dhStartWithPrivate(v.group, hex(v.i));
    const r = dhStartWithPrivate(v.group, hex(v.r));
    assert.equal(toHex(i.publicValue), toHex(hex(v.gi)), `${v.group} g^i`);
    assert.equal(toHex(r.publicValue), toHex(hex(v.gr)), `${v.group} g^r`);
    assert.equal(toHex(i.computeShared(r.publicValue)!), toHex(hex(v.girx)), `${v.group} g^ir from i`);
    assert.equal(toHex(r.computeShared(i.publicValue)!), toHex(hex(v.girx)), `${v.group} g^ir from r`);
  }
});

test('ECP refuses points off the curve, the all-zero point, a 0x04-prefixed value and wrong lengths', () => {
  for (const v of RFC5903) {
    const i = dhStartWithPrivate(v.group, hex(v.i));
    const gr = hex(v.gr);
    const offCurve = new Uint8Array(gr);
    offCurve[offCurve.length - 1] ^= 1;
    assert.equal(i.computeShared(offCurve), null, `${v.group} y changed`);
    assert.equal(i.computeShared(new Uint8Array(gr.length)), null, `${v.group} zeros`);
    assert.equal(i.computeShared(new Uint8Array([0x04, ...gr])), null, `${v.group} SEC 1 prefix`);
    assert.equal(i.computeShared(gr.subarray(1)), null, `${v.group} short`);
  }
  fc.assert(
    fc.property(fc.constantFrom('ecp256' as const, 'ecp384' as const), fc.uint8Array({ minLength: 0, maxLength: 100 }), (group, bytes) => {
      const out = dhStart(group).computeShared(bytes);
      assert.ok(out === null || out.length === dhPublicLength(group) / 2);
    }),
    { numRuns: 100 },
  );
});

test('curve25519 reproduces RFC 7748 §6.1 and refuses an all-zero shared secret (RFC 8031 §2.3)', () => {
  const alice = dhStartWithPrivate('curve25519', hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
  const bob = dhStartWithPrivate('curve25519', hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
  assert.equal(toHex(alice.publicValue), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  assert.equal(toHex(bob.publicValue), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assert.equal(toHex(alice.computeShared(bob.publicValue)!), k);
  assert.equal(toHex(bob.computeShared(alice.publicValue)!), k);
  // Low-order points (RFC 7748 §7): 0 and 1 give an all-zero result.
  assert.equal(alice.computeShared(new Uint8Array(32)), null);
  assert.equal(alice.computeShared(Uint8Array.of(1, ...new Uint8Array(31))), null);
  assert.equal(alice.computeShared(bob.publicValue.subarray(1)), null);
  assert.equal(alice.computeShared(new Uint8Array(33)), null);
});

test('every group: two fresh exchanges agree, and the shared secret has the group format length', () => {
  const secretLength = { modp2048: 256, ecp256: 32, ecp384: 48, curve25519: 32 };
  for (const g of DH_GROUPS) {
    const a = dhStart(g);
    const b = dhStart(g);
    const s = a.computeShared(b.publicValue);
    assert.ok(s, g);
    assert.equal(s.length, secretLength[g], g);
    assert.equal(toHex(s), toHex(b.computeShared(a.publicValue)!), g);
    assert.equal(a.group, g);
    assert.notEqual(toHex(a.publicValue), toHex(b.publicValue), `${g}: fresh private values`);
  }
});

test('computeShared never throws on arbitrary bytes, for any group', () => {
  const exchanges = DH_GROUPS.map(dhStart);
  fc.assert(
    fc.property(fc.nat({ max: DH_GROUPS.length - 1 }), fc.uint8Array({ maxLength: 300 }), (g, bytes) => {
      exchanges[g].computeShared(bytes);
    }),
    { numRuns: 200 },
  );
});
