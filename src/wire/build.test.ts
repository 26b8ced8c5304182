import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Drop } from '../common/drop-reasons.js';
import { buildIcmpEcho, buildIcmpError, buildIp, buildTcp, buildUdp, fragmentIpv4, ipFamily, parsePacket } from './build.js';
import { ipv4HeaderChecksum } from './checksum.js';
import { IPPROTO_UDP, TCP_ACK_FLAG, TCP_PSH, TCP_SYN } from './constants.js';
import {
  DNS_PAYLOAD,
  DNS_QUERY,
  ICMP_FRAG_NEEDED,
  ICMP_PORT_UNREACHABLE,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PACKET_TOO_BIG,
  IPV6_UDP_FRAGMENT_FIRST,
  IPV6_UDP_FRAGMENT_LAST,
  TCP_SYN as TCP_SYN_FIXTURE,
  ipv4HeaderArb,
  udpArb,
} from './fixtures.test.js';

const text = (s: string) => new TextEncoder().encode(s);

// The builders must reproduce Scapy's bytes exactly: same layout, same checksums.

test('builders reproduce the Scapy fixtures byte for byte (IPv4)', () => {
  const dns = buildUdp({ src: '10.0.1.10', dst: '8.8.8.8', id: 0x1c46, dontFragment: true, ttl: 64 }, { srcPort: 53535, dstPort: 53, payload: DNS_PAYLOAD });
  assert.deepEqual(dns, DNS_QUERY);
  const syn = buildTcp(
    { src: '10.0.1.10', dst: '203.0.113.10', id: 0x3a1f, dontFragment: true },
    {
      srcPort: 40000,
      dstPort: 443,
      seq: 0x12345678,
      flags: TCP_SYN,
      window: 64240,
      options: { mss: 1460, sackPermitted: true, timestamps: { value: 123456, echo: 0 }, windowScale: 7 },
    },
  );
  assert.deepEqual(syn, TCP_SYN_FIXTURE);
  const unreachable = buildIcmpError({ src: '8.8.8.8', dst: '10.0.1.10', id: 1, ttl: 57 }, { type: 3, code: 3, quote: 'max' }, DNS_QUERY);
  assert.deepEqual(unreachable, ICMP_PORT_UNREACHABLE);
  const data = buildTcp(
    { src: '10.0.1.10', dst: '203.0.113.10', id: 0x4000, dontFragment: true, ttl: 63 },
    { srcPort: 40000, dstPort: 443, seq: 0x12345679, ack: 0x11111111, flags: TCP_PSH | TCP_ACK_FLAG, window: 502, payload: new Uint8Array(1452).fill(0x78) },
  );
  assert.equal(data.length, 1492);
  const fragNeeded = buildIcmpError({ src: '192.0.2.1', dst: '10.0.1.10', id: 2, ttl: 254 }, { type: 3, code: 4, mtu: 1400 }, data);
  assert.deepEqual(fragNeeded, ICMP_FRAG_NEEDED);
});

test('builders reproduce the Scapy fixtures byte for byte (IPv6)', () => {
  const ip = { src: '2001:db8:1::10', dst: '2001:db8:2::20' };
  assert.deepEqual(buildIcmpEcho(ip, { type: 'request', id: 0x1234, seq: 1, payload: text('abcdefgh') }), ICMPV6_ECHO_REQUEST);

  const quoted = buildTcp({ ...ip, hopLimit: 63 }, { srcPort: 40001, dstPort: 443, seq: 1, ack: 2, flags: TCP_ACK_FLAG, window: 8192, payload: new Uint8Array(1300).fill(0x7a) });
  const ptb = buildIcmpError({ src: '2001:db8:ffff::1', dst: '2001:db8:1::10' }, { type: 2, code: 0, mtu: 1280, quote: 'max' }, quoted);
  assert.deepEqual(ptb, ICMPV6_PACKET_TOO_BIG);

  // The fragments: the UDP datagram (checksum over all of it) cut at 1224 bytes behind hop-by-hop + fragment headers.
  const whole = buildUdp(ip, { srcPort: 5000, dstPort: 6000, payload: new Uint8Array(1800).fill(0x79) });
  const udp = whole.subarray(40);
  const first = buildIp({ ...ip, extensions: [{ type: 'hopByHop' }, { type: 'fragment', offset: 0, more: true, id: 0x12345678 }] }, IPPROTO_UDP, udp.subarray(0, 1224));
  const last = buildIp({ ...ip, extensions: [{ type: 'hopByHop' }, { type: 'fragment', offset: 1224, more: false, id: 0x12345678 }] }, IPPROTO_UDP, udp.subarray(1224));
  assert.deepEqual(first, IPV6_UDP_FRAGMENT_FIRST);
  assert.deepEqual(last, IPV6_UDP_FRAGMENT_LAST);
});

test('family follows the address form or the explicit field', () => {
  assert.equal(ipFamily({ src: '10.0.0.1', dst: '10.0.0.2' }), 4);
  assert.equal(ipFamily({ src: 0x0a000001, dst: 0x0a000002 }), 4);
  assert.equal(ipFamily({ src: '::1', dst: '::2' }), 6);
  assert.equal(ipFamily({ src: new Uint32Array(4), dst: new Uint32Array(4) }), 6);
  assert.equal(ipFamily({ family: 6, src: '::1', dst: '::2' }), 6);
  assert.throws(() => buildUdp({ src: '10.0.0.300', dst: '10.0.0.1' }, { srcPort: 1, dstPort: 2 }));
  assert.throws(() => buildUdp({ src: '10.0.0.1', dst: '10.0.0.2' }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(70000) }));
});

test('UDP zero checksum: IPv4 only', () => {
  const v4 = buildUdp({ src: '10.0.0.1', dst: '10.0.0.2' }, { srcPort: 1, dstPort: 2, zeroChecksum: true });
  assert.equal((v4[26] << 8) | v4[27], 0);
  const v6 = buildUdp({ src: '::1', dst: '::2' }, { srcPort: 1, dstPort: 2, zeroChecksum: true });
  assert.notEqual((v6[46] << 8) | v6[47], 0);
});

test('ICMP errors quote header + 8 bytes by default, up to 576 / 1280 bytes with quote "max"', () => {
  const big4 = buildUdp({ src: '10.0.0.1', dst: '10.0.0.2', options: Uint8Array.of(0x94, 4, 0, 0) }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(1000) });
  const minimal = buildIcmpError({ src: '10.0.0.254', dst: '10.0.0.1' }, { type: 11, code: 0 }, big4);
  assert.equal(minimal.length, 20 + 8 + 24 + 8);
  const max = buildIcmpError({ src: '10.0.0.254', dst: '10.0.0.1' }, { type: 11, code: 0, quote: 'max' }, big4);
  assert.equal(max.length, 576);
  const p = parsePacket(max);
  assert.equal(p.drop, Drop.None);
  assert.equal(p.inner!.l4Available, 576 - 28 - 24);

  const big6 = buildUdp({ src: '::1', dst: '::2', extensions: [{ type: 'destination' }] }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(2000) });
  assert.equal(buildIcmpError({ src: '::9', dst: '::1' }, { type: 1, code: 0 }, big6).length, 40 + 8 + 48 + 8);
  assert.equal(buildIcmpError({ src: '::9', dst: '::1' }, { type: 1, code: 0, quote: 'max' }, big6).length, 1280);
  // A small packet is quoted whole either way.
  assert.equal(buildIcmpError({ src: '::9', dst: '::1' }, { type: 1, code: 0, quote: 'max' }, ICMPV6_ECHO_REQUEST).length, 48 + 56);
  // Parameter problem pointers.
  const pp4 = buildIcmpError({ src: '10.0.0.254', dst: '10.0.0.1' }, { type: 12, code: 0, pointer: 9 }, DNS_QUERY);
  assert.equal(pp4[24], 9);
  const pp6 = buildIcmpError({ src: '::9', dst: '::1' }, { type: 4, code: 0, pointer: 0x01020304 }, ICMPV6_ECHO_REQUEST);
  assert.deepEqual([...pp6.subarray(44, 48)], [1, 2, 3, 4]);
});

/** Reassembles IPv4 fragments (test oracle): payload by offset, header of the first. */
function reassemble(fragments: Uint8Array[]): Uint8Array {
  const first = fragments.find((f) => (((f[6] << 8) | f[7]) & 0x1fff) === 0)!;
  const hl = (first[0] & 15) * 4;
  let total = 0;
  for (const f of fragments) {
    const off = (((f[6] << 8) | f[7]) & 0x1fff) * 8;
    total = Math.max(total, off + f.length - (f[0] & 15) * 4);
  }
  const out = new Uint8Array(hl + total);
  out.set(first.subarray(0, hl));
  for (const f of fragments) {
    const fhl = (f[0] & 15) * 4;
    out.set(f.subarray(fhl), hl + (((f[6] << 8) | f[7]) & 0x1fff) * 8);
  }
  out[2] = out.length >>> 8;
  out[3] = out.length & 0xff;
  out[6] &= 0x40; // keep DF, clear MF and offset
  out[7] = 0;
  out[10] = 0;
  out[11] = 0;
  const c = ipv4HeaderChecksum(out, 0, hl);
  out[10] = c >>> 8;
  out[11] = c & 0xff;
  return out;
}

test('fragmentIpv4: fragments fit the MTU, carry 8-byte-aligned offsets, copy only copied options, and reassemble', () => {
  fc.assert(
    fc.property(ipv4HeaderArb, udpArb, fc.integer({ min: 68, max: 600 }), fc.integer({ min: 0, max: 1500 }), (ip, udp, mtu, size) => {
      const packet = buildUdp(ip, { ...udp, payload: new Uint8Array(size).map((_, i) => i & 0xff) });
      const hl = (packet[0] & 15) * 4;
      if (mtu < hl + 8) return;
      const fragments = fragmentIpv4(packet, mtu);
      for (const [i, f] of fragments.entries()) {
        assert.ok(f.length <= mtu, `fragment of ${f.length} bytes exceeds MTU ${mtu}`);
        const p = parsePacket(f);
        assert.equal(p.drop, Drop.None, `fragment ${i}`);
        assert.equal(p.fragmentOffset % 8, 0);
        assert.equal(p.moreFragments, i < fragments.length - 1);
        assert.equal(p.fragmentId, ip.id);
        if (i > 0) {
          // only the router alert (0x94, copied) survives; the timestamp option (0x44) does not
          const options = f.subarray(20, (f[0] & 15) * 4);
          assert.ok(!options.includes(0x44), 'a non-copied option was copied');
        }
      }
      assert.equal(fragments.length === 1, packet.length <= mtu);
      assert.deepEqual(reassemble(fragments), packet);
    }),
    { numRuns: 200 },
  );
  // A fragment refragmented keeps its offset base and its MF flag.
  const packet = buildUdp({ src: '10.0.0.1', dst: '10.0.0.2', id: 5 }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(200) });
  const [a, b] = fragmentIpv4(packet, 20 + 104);
  const again = fragmentIpv4(a, 20 + 48);
  assert.deepEqual(
    again.map((f) => [parsePacket(f).fragmentOffset, parsePacket(f).moreFragments]),
    [[0, true], [48, true], [96, true]],
  );
  assert.deepEqual(reassemble([...again, b]), packet);
});
