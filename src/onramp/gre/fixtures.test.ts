/**
 * Shared test material for src/onramp/gre: GRE byte fixtures and fast-check arbitraries.
 * (A .test.ts file so that neither it nor fast-check ends up in the build; its own test checks the framing.)
 *
 * The fixtures were produced with Scapy 2.5 (Debian python3-scapy, /usr/bin/python3); the generating
 * expressions are next to each one, with
 *   inner4 = IP(src='10.0.1.10', dst='203.0.113.10', id=7, flags='DF', ttl=63)/ICMP(type=8, id=0x1234, seq=1)/b'ping'
 *   inner6 = IPv6(src='fd00:1::10', dst='2001:db8::10', hlim=63)/UDP(sport=5353, dport=53)/b'q'
 *   syn    = IP(src='10.0.1.10', dst='203.0.113.10', id=9, flags='DF')/TCP(sport=40000, dport=443, flags='S',
 *            seq=1000, options=[('MSS', 1460), ('NOP', None), ('WScale', 7)])
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hex } from '../../wire/fixtures.test.js';

export { hex };

export const INNER4 = hex('45000020 0007 4000 3f01 f4c1 0a00010a cb00710a  0800 06fa 1234 0001 70696e67');
export const INNER6 = hex(`
  60000000 0009 11 3f fd000001000000000000000000000010 20010db8000000000000000000000010
  14e9 0035 0009 4ee3 71`);
export const SYN = hex('45000030 0009 4000 4006 f3aa 0a00010a cb00710a  9c40 01bb 000003e8 00000000 7002 2000 7b20 0000 020405b4 01 030307');

/** IP(src='198.51.100.1', dst='192.0.2.1', id=1, flags='DF')/GRE()/inner4 */
export const PLAIN_V4_IN_V4 = hex(`
  4500 0038 0001 4000 402f 4e60 c6336401 c0000201
  0000 0800
  45000020000740003f01f4c10a00010acb00710a080006fa1234000170696e67`);

/** IP(src='198.51.100.2', dst='192.0.2.1', id=2, flags='DF')/GRE(key_present=1, key=0xdeadbeef)/inner6 */
export const KEY_V6_IN_V4 = hex(`
  4500 004d 0002 4000 402f 4e49 c6336402 c0000201
  2000 86dd deadbeef
  600000000009113ffd00000100000000000000000000001020010db800000000000000000000001014e9003500094ee371`);

/**
 * IP(src='198.51.100.1', dst='192.0.2.1', id=3, flags='DF')/GRE(chksum_present=1, key_present=1, key=42,
 * seqnum_present=1, sequence_number=0x01020304)/syn
 */
export const CSUM_KEY_SEQ_V4_IN_V4 = hex(`
  4500 0054 0003 4000 402f 4e42 c6336401 c0000201
  b000 0800 8b06 0000 0000002a 01020304
  45000030000940004006f3aa0a00010acb00710a9c4001bb000003e800000000700220007b200000020405b401030307`);

/** IPv6(src='2001:db8:a::1', dst='2001:db8:e::1')/GRE(seqnum_present=1, sequence_number=7)/inner4 */
export const SEQ_V4_IN_V6 = hex(`
  60000000 0028 2f 40 20010db8000a00000000000000000001 20010db8000e00000000000000000001
  1000 0800 00000007
  45000020000740003f01f4c10a00010acb00710a080006fa1234000170696e67`);

/**
 * IPv6(src='2001:db8:a::1', dst='2001:db8:e::1')/IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=4, optdata=b'\x04'),
 * PadN(optdata=b'')])/GRE(chksum_present=1)/inner6 — the RFC 2473 tunnel encapsulation limit option Linux ip6gre sends.
 */
export const CSUM_V6_IN_V6_DESTOPT = hex(`
  60000000 0041 3c 40 20010db8000a00000000000000000001 20010db8000e00000000000000000001
  2f00 0401 0401 0000
  8000 86dd 87f3 0000
  600000000009113ffd00000100000000000000000000001020010db800000000000000000000001014e9003500094ee371`);

/** What encapsulate4 must emit: IP(src='192.0.2.1', dst='198.51.100.1', id=0x0102, flags='DF', ttl=64)/GRE(key_present=1, key=42)/inner4 */
export const ENC_V4_KEY = hex(`
  4500 003c 0102 4000 402f 4d5b c0000201 c6336401
  2000 0800 0000002a
  45000020000740003f01f4c10a00010acb00710a080006fa1234000170696e67`);

/** What encapsulate6 must emit: IPv6(src='2001:db8:e::1', dst='2001:db8:a::1', hlim=64)/GRE(chksum_present=1, seqnum_present=1, sequence_number=5)/inner6 */
export const ENC_V6_CSUM_SEQ = hex(`
  60000000 003d 2f 40 20010db8000e00000000000000000001 20010db8000a00000000000000000001
  9000 86dd 77ee 0000 00000005
  600000000009113ffd00000100000000000000000000001020010db800000000000000000000001014e9003500094ee371`);

/** An inner IPv4 or IPv6 packet: version nibble right, the rest random (GRE does not look further). */
export const innerPacketArb = fc
  .tuple(fc.constantFrom(4, 6), fc.uint8Array({ minLength: 1, maxLength: 200 }))
  .map(([version, bytes]) => {
    const p = bytes.slice();
    p[0] = (version << 4) | (p[0] & 0x0f);
    return p;
  });

test('fixtures: outer length fields match the bytes', () => {
  for (const p of [PLAIN_V4_IN_V4, KEY_V6_IN_V4, CSUM_KEY_SEQ_V4_IN_V4, ENC_V4_KEY]) assert.equal((p[2] << 8) | p[3], p.length);
  for (const p of [SEQ_V4_IN_V6, CSUM_V6_IN_V6_DESTOPT, ENC_V6_CSUM_SEQ]) assert.equal(40 + ((p[4] << 8) | p[5]), p.length);
  assert.equal(INNER4.length, 32);
  assert.equal(INNER6.length, 49);
  assert.equal(SYN.length, 48);
});
