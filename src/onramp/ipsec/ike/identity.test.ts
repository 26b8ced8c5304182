import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IdType } from './constants.js';
import { identityMatches, identityToWire } from './identity.js';

test('ID payload bodies of each type (RFC 7296 §3.5)', () => {
  assert.deepEqual(identityToWire({ type: 'fqdn', value: 'sswa.lab' }), { idType: IdType.FQDN, data: new TextEncoder().encode('sswa.lab') });
  assert.deepEqual(identityToWire({ type: 'rfc822', value: 'ops@site.example' })?.idType, IdType.RFC822);
  assert.deepEqual(identityToWire({ type: 'ipv4', value: '192.0.2.1' }), { idType: IdType.IPv4, data: Uint8Array.of(192, 0, 2, 1) });
  assert.deepEqual(identityToWire({ type: 'ipv6', value: '2001:db8::1' }), { idType: IdType.IPv6, data: Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1) });
  assert.deepEqual(identityToWire({ type: 'key-id', value: Uint8Array.of(7, 8) }), { idType: IdType.KeyId, data: Uint8Array.of(7, 8) });
  assert.equal(identityToWire({ type: 'ipv4', value: '300.1.1.1' }), null);
  assert.equal(identityToWire({ type: 'ipv6', value: 'not-an-address' }), null);
});

test('matching: type and bytes; names case-insensitive, addresses and key IDs exact', () => {
  const fqdn = new TextEncoder().encode('SSWA.lab');
  assert.ok(identityMatches({ type: 'fqdn', value: 'sswa.LAB' }, IdType.FQDN, fqdn));
  assert.ok(!identityMatches({ type: 'fqdn', value: 'sswa.lab' }, IdType.RFC822, fqdn));
  assert.ok(!identityMatches({ type: 'fqdn', value: 'sswb.lab' }, IdType.FQDN, fqdn));
  assert.ok(identityMatches({ type: 'ipv4', value: '192.0.2.1' }, IdType.IPv4, Uint8Array.of(192, 0, 2, 1)));
  assert.ok(!identityMatches({ type: 'ipv4', value: '192.0.2.1' }, IdType.IPv4, Uint8Array.of(192, 0, 2, 1, 0)));
  assert.ok(!identityMatches({ type: 'key-id', value: Uint8Array.of(1) }, IdType.KeyId, Uint8Array.of(2)));
});

test('property: every identity matches its own wire form, and no other type', () => {
  const idArb = fc.oneof(
    fc.domain().map((value) => ({ type: 'fqdn' as const, value })),
    fc.emailAddress().map((value) => ({ type: 'rfc822' as const, value })),
    fc.ipV4().map((value) => ({ type: 'ipv4' as const, value })),
    fc.ipV6().map((value) => ({ type: 'ipv6' as const, value })),
    fc.uint8Array({ minLength: 1, maxLength: 32 }).map((value) => ({ type: 'key-id' as const, value })),
  );
  fc.assert(
    fc.property(idArb, fc.integer({ min: 0, max: 255 }), (id, otherType) => {
      const w = identityToWire(id);
      assert.ok(w !== null);
      assert.ok(identityMatches(id, w.idType, w.data));
      if (otherType !== w.idType) assert.ok(!identityMatches(id, otherType, w.data));
    }),
  );
});
