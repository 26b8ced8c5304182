import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6, parsePrefix, formatPrefix } from './addr.js';

test('IPv4 text round-trips and rejects junk', () => {
  assert.equal(parseIpv4('10.0.1.10'), 0x0a00010a);
  assert.equal(parseIpv4('255.255.255.255'), 0xffffffff);
  for (const bad of ['256.0.0.1', '1.2.3', '01.2.3.4', '1.2.3.4.5', '', 'a.b.c.d']) assert.equal(parseIpv4(bad), -1, bad);
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (a) => parseIpv4(formatIpv4(a)) === a));
});

test('IPv6 text round-trips (RFC 5952 form) and rejects junk', () => {
  assert.deepEqual([...parseIpv6('2001:db8::1')!], [0x20010db8, 0, 0, 1]);
  assert.deepEqual([...parseIpv6('::ffff:10.0.1.10')!], [0, 0, 0xffff, 0x0a00010a]);
  assert.equal(formatIpv6(parseIpv6('2001:db8:0:0:1:0:0:1')!), '2001:db8::1:0:0:1');
  for (const bad of ['1::2::3', ':::', '12345::', '1:2:3:4:5:6:7:8:9', 'g::1']) assert.equal(parseIpv6(bad), null, bad);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 4, maxLength: 4 }), (w) => {
      const words = Uint32Array.from(w);
      assert.deepEqual([...parseIpv6(formatIpv6(words))!], [...words]);
    }),
  );
});

test('prefixes clear host bits and validate lengths', () => {
  assert.equal(formatPrefix(parsePrefix('10.0.1.77/24')!), '10.0.1.0/24');
  assert.equal(formatPrefix(parsePrefix('2001:db8::ff/64')!), '2001:db8::/64');
  assert.equal(parsePrefix('10.0.0.0/33'), null);
  assert.equal(parsePrefix('10.0.0.0/'), null);
  assert.equal(parsePrefix('10.0.0.0')!.length, 32);
});
