import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildIcmpError, buildTcp, buildUdp, parsePacket, type IpHeader } from './build.js';
import { icmpv4ChecksumFull, onesComplementSum, foldChecksum, pseudoHeaderSum6 } from './checksum.js';
import { ICMP4_TIME_EXCEEDED, ICMP6_TIME_EXCEEDED, IPPROTO_ICMPV6, IPV6_HEADER, TCP_SYN } from './constants.js';
import { parseIpv4, parseIpv6 } from './addr.js';
import { ICMP4_QUOTE_MAX, ICMP6_QUOTE_MAX, ICMP_ERROR_ROOM, ICMP_ERROR_TOS, writeIcmpError4, writeIcmpError6 } from './icmp-error.js';

const hex = (s: string): Uint8Array => Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!.map((b) => parseInt(b, 16)));

/** writeIcmpError4 into a fresh buffer at `at`, the error's bytes. */
function time4(packet: Uint8Array, src: string, dst: string, at = 0): Uint8Array {
  const out = new Uint8Array(at + ICMP_ERROR_ROOM);
  const n = writeIcmpError4(out, at, ICMP4_TIME_EXCEEDED, 0, 0, parseIpv4(src), parseIpv4(dst), packet, 0, packet.length);
  return out.slice(at, at + n);
}

function time6(packet: Uint8Array, src: string, dst: string, at = 0): Uint8Array {
  const out = new Uint8Array(at + ICMP_ERROR_ROOM);
  const addr = new Uint32Array(8);
  addr.set(parseIpv6(src)!, 0);
  addr.set(parseIpv6(dst)!, 4);
  const n = writeIcmpError6(out, at, ICMP6_TIME_EXCEEDED, 0, 0, addr, 0, 4, packet, 0, packet.length);
  return out.slice(at, at + n);
}

/** The slow builder's time exceeded with the same header choices (the oracle). */
function oracle(ip: IpHeader, type: number, packet: Uint8Array): Uint8Array {
  return buildIcmpError({ ...ip, tos: ICMP_ERROR_TOS, ttl: 64, hopLimit: 64 } as IpHeader, { type, code: 0, quote: 'max' }, packet);
}

test('byte fixture: time exceeded for a traceroute UDP probe (TTL 1), RFC 792 layout', () => {
  // traceroute's first probe from 10.0.1.10 to 203.0.113.10:33434, TTL 1, 4 bytes of payload.
  const probe = buildUdp({ src: '10.0.1.10', dst: '203.0.113.10', ttl: 1, id: 0x1234 }, { srcPort: 45000, dstPort: 33434, payload: hex('40414243') });
  const error = time4(probe, '198.51.100.1', '10.0.1.10');
  // Scapy's bytes for IP(src, dst, tos=0xc0, ttl=64, id=0)/ICMP(type=11, code=0)/probe (an independent encoder).
  assert.deepEqual(error, hex(
    // IPv4: 45 c0 (precedence 6), total 60, id 0, no flags, TTL 64, ICMP, checksum, 198.51.100.1 -> 10.0.1.10
    '45c0003c 00000000 4001 44c3 c6336401 0a00010a' +
    // ICMP: type 11 code 0, checksum, unused word, then the whole probe as received (TTL 1 in it)
    '0b00 3c32 00000000' +
    '4500 0020 1234 0000 0111 6085 0a00010a cb00710a afc8 829a 000c 03da 40414243',
  ));
  assert.deepEqual(error, oracle({ src: '198.51.100.1', dst: '10.0.1.10' }, ICMP4_TIME_EXCEEDED, probe));
});

test('byte fixture: ICMPv6 time exceeded (type 3 code 0) for a hop-limit-1 UDP probe, RFC 4443 section 3.3', () => {
  const probe = buildUdp({ src: 'fd00:1::10', dst: '2001:db8::10', hopLimit: 1 }, { srcPort: 45000, dstPort: 33434 });
  const error = time6(probe, '2001:db8:ee::1', 'fd00:1::10');
  // Scapy: IPv6(src, dst, hlim=64)/ICMPv6TimeExceeded(code=0)/probe.
  assert.deepEqual(error, hex(
    '60000000 0038 3a 40 20010db800ee00000000000000000001 fd000001000000000000000000000010' +
    '03 00 5fe3 00000000' +
    '60000000 0008 11 01 fd000001000000000000000000000010 20010db8000000000000000000000010 afc8 829a 0008 a2a0',
  ));
  const p = parsePacket(error);
  assert.equal(p.protocol, IPPROTO_ICMPV6);
  assert.equal(p.ttl, 64);
  assert.deepEqual(p.icmp, { type: 3, code: 0, id: 0, isError: true });
  assert.deepEqual(error.subarray(IPV6_HEADER + 8), probe, 'the whole probe quoted');
  assert.deepEqual(error, oracle({ family: 6, src: '2001:db8:ee::1', dst: 'fd00:1::10' }, ICMP6_TIME_EXCEEDED, probe));
});

test('the quote stops at 576 bytes (IPv4, RFC 1812 section 4.3.2.3) and 1280 (IPv6, RFC 4443 section 2.4 (c))', () => {
  const big4 = buildUdp({ src: '10.0.1.10', dst: '203.0.113.10', ttl: 1 }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(1400).fill(7) });
  const e4 = time4(big4, '198.51.100.1', '10.0.1.10');
  assert.equal(e4.length, 576);
  assert.deepEqual(e4.subarray(28), big4.subarray(0, ICMP4_QUOTE_MAX));
  const big6 = buildUdp({ src: 'fd00:1::10', dst: '2001:db8::10', hopLimit: 1 }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(1400).fill(7) });
  const e6 = time6(big6, '2001:db8:ee::1', 'fd00:1::10');
  assert.equal(e6.length, 1280);
  assert.deepEqual(e6.subarray(48), big6.subarray(0, ICMP6_QUOTE_MAX));
});

const v4Addr = fc.integer({ min: 0x01000000, max: 0xdfffffff });
const payloadArb = fc.uint8Array({ minLength: 0, maxLength: 1500 });

test('property: IPv4 time exceeded equals the slow builder, checksums verify, the quoted header round-trips', () => {
  fc.assert(fc.property(v4Addr, v4Addr, v4Addr, fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }), payloadArb, fc.boolean(), fc.nat(64),
    (src, dst, edge, sport, dport, payload, tcp, at) => {
      const probe = tcp
        ? buildTcp({ src, dst, ttl: 1 }, { srcPort: sport, dstPort: dport, flags: TCP_SYN, payload })
        : buildUdp({ src, dst, ttl: 1 }, { srcPort: sport, dstPort: dport, payload });
      const out = new Uint8Array(at + ICMP_ERROR_ROOM);
      const n = writeIcmpError4(out, at, ICMP4_TIME_EXCEEDED, 0, 0, edge, src, probe, 0, probe.length);
      const error = out.slice(at, at + n);
      assert.deepEqual(error, oracle({ src: edge, dst: src }, ICMP4_TIME_EXCEEDED, probe));
      const p = parsePacket(error);
      assert.equal(p.drop, 0, 'the IPv4 header checksum verifies (inspect checks it)');
      assert.equal(icmpv4ChecksumFull(error, p.l4Offset, p.l4Length), (error[p.l4Offset + 2] << 8) | error[p.l4Offset + 3]);
      assert.deepEqual(p.inner, {
        family: 4, src: parsePacket(probe).src, dst: parsePacket(probe).dst, protocol: parsePacket(probe).protocol,
        srcPort: sport, dstPort: dport, l4Available: Math.min(probe.length, ICMP4_QUOTE_MAX) - 20,
      });
    }), { numRuns: 300 });
});

const v6Words = fc.tuple(fc.integer({ min: 0x20010000, max: 0xfdffffff }), fc.nat(), fc.nat(), fc.nat()).map((w) => Uint32Array.from(w.map((x) => x >>> 0)));

test('property: IPv6 time exceeded equals the slow builder, the checksum (with pseudo-header) verifies', () => {
  fc.assert(fc.property(v6Words, v6Words, v6Words, fc.integer({ min: 1, max: 65535 }), payloadArb,
    (src, dst, edge, sport, payload) => {
      const probe = buildUdp({ family: 6, src, dst, hopLimit: 1 }, { srcPort: sport, dstPort: 33434, payload });
      const addr = new Uint32Array(8);
      addr.set(edge, 0);
      addr.set(src, 4);
      const out = new Uint8Array(ICMP_ERROR_ROOM);
      const n = writeIcmpError6(out, 0, ICMP6_TIME_EXCEEDED, 0, 0, addr, 0, 4, probe, 0, probe.length);
      const error = out.slice(0, n);
      assert.deepEqual(error, oracle({ family: 6, src: edge, dst: src }, ICMP6_TIME_EXCEEDED, probe));
      const sum = foldChecksum(onesComplementSum(error, IPV6_HEADER, n, pseudoHeaderSum6(addr, 0, 4, IPPROTO_ICMPV6, n - IPV6_HEADER)));
      assert.equal(sum, 0, 'the ones-complement sum over pseudo-header and message, checksum included, is zero');
      const p = parsePacket(error);
      assert.equal(p.inner?.srcPort, sport);
      assert.equal(p.inner?.dstPort, 33434);
    }), { numRuns: 200 });
});
