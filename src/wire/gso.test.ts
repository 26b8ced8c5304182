/**
 * The software segmenter against an oracle that builds each segment naively (build.ts: the segment as a packet of
 * its own, every field and checksum computed from scratch), plus byte fixtures and the partial-checksum completion.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Drop } from '../common/drop-reasons.js';
import type { IpHeader, Ipv4Header, Ipv6Header, TcpSegment } from './build.js';
import { buildTcp, buildUdp, ipFamily } from './build.js';
import { read16, write16 } from './bytes.js';
import { foldChecksum, onesComplementSum, pseudoHeaderSum4, transportChecksumFull } from './checksum.js';
import { IPPROTO_TCP, IPPROTO_UDP, TCP_ACK_FLAG, TCP_CHECKSUM, TCP_CWR, TCP_FIN, TCP_PSH, UDP_CHECKSUM } from './constants.js';
import { ipv4HeaderArb, ipv6HeaderArb, tcpArb } from './fixtures.test.js';
import { completeChecksum, GSO_BAD, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, gsoHeaderLength, gsoSegmentCount, writeSegment } from './gso.js';
import { inspect } from './inspect.js';
import { PacketInfo } from './packet-info.js';

const IP_ID_MASK = 0xffff;

/** Where the transport header starts in a built packet (csum_start of its virtio-net header). */
function l4Of(packet: Uint8Array): number {
  const info = new PacketInfo();
  assert.equal(inspect(packet, 0, packet.length, info), Drop.None);
  return info.l4Offset;
}

/** Every segment of the super-packet, by writeSegment, into one scratch buffer per segment. */
function segmentAll(packet: Uint8Array, gsoType: number, gsoSize: number): Uint8Array[] {
  const l4 = l4Of(packet);
  const header = gsoHeaderLength(packet, 0, packet.length, gsoType, gsoSize, l4);
  assert.ok(header > 0, 'header length');
  const n = gsoSegmentCount(packet.length, header, gsoSize);
  const out: Uint8Array[] = [];
  const scratch = new Uint8Array(header + gsoSize + 16);
  for (let k = 0; k < n; k++) {
    const len = writeSegment(packet, 0, packet.length, gsoType, gsoSize, l4, header, k, scratch, 8);
    out.push(scratch.slice(8, 8 + len));
  }
  return out;
}

/** The oracle: segment k built on its own. */
function tcpOracle(ip: IpHeader, tcp: TcpSegment, payload: Uint8Array, gsoSize: number): Uint8Array[] {
  const n = Math.max(1, Math.ceil(payload.length / gsoSize));
  const out: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    let flags = tcp.flags ?? TCP_ACK_FLAG;
    if (k !== n - 1) flags &= ~(TCP_FIN | TCP_PSH);
    if (k !== 0) flags &= ~TCP_CWR;
    const segIp = ipFamily(ip) === 4 ? { ...(ip as Ipv4Header), id: (((ip as Ipv4Header).id ?? 0) + k) & IP_ID_MASK } : ip;
    out.push(buildTcp(segIp, { ...tcp, flags, seq: ((tcp.seq ?? 0) + k * gsoSize) >>> 0, payload: payload.subarray(k * gsoSize, (k + 1) * gsoSize) }));
  }
  return out;
}

/** A super-packet as a TUN with offloads hands it over: lengths of the whole, the L4 checksum field partial. */
function partial(packet: Uint8Array): Uint8Array {
  const info = new PacketInfo();
  assert.equal(inspect(packet, 0, packet.length, info), Drop.None);
  const field = info.l4Offset + (info.protocol === IPPROTO_TCP ? TCP_CHECKSUM : UDP_CHECKSUM);
  write16(packet, field, 0x1234); // anything: the segmenter must not carry it over
  return packet;
}

/** No fragment header: the kernel never hands a fragment over as a super-packet. */
const gsoIpv6Arb = ipv6HeaderArb.map((h): Ipv6Header => ({ ...h, extensions: (h.extensions ?? []).filter((e) => e.type !== 'fragment') }));

test('TCP super-packets segment exactly as the naive oracle builds each segment (IPv4 and IPv6)', () => {
  fc.assert(
    fc.property(
      fc.oneof(ipv4HeaderArb, gsoIpv6Arb),
      tcpArb,
      fc.integer({ min: 1, max: 1400 }),
      fc.integer({ min: 0, max: 6000 }),
      fc.boolean(),
      (ip, tcp, gsoSize, payloadLength, ecn) => {
        const payload = Uint8Array.from({ length: payloadLength }, (_, i) => (i * 7 + payloadLength) & 0xff);
        const seg = { ...tcp, payload };
        const type = (ipFamily(ip) === 4 ? GSO_TCPV4 : GSO_TCPV6) | (ecn ? GSO_ECN : 0);
        const got = segmentAll(partial(buildTcp(ip, seg)), type, gsoSize);
        const want = tcpOracle(ip, seg, payload, gsoSize);
        assert.equal(got.length, want.length);
        for (let k = 0; k < want.length; k++) assert.deepEqual(got[k], want[k], `segment ${k}`);
      },
    ),
    { numRuns: 300 },
  );
});

test('UDP super-packets (USO) become one datagram per gso_size, each checksummed', () => {
  fc.assert(
    fc.property(
      fc.oneof(ipv4HeaderArb, gsoIpv6Arb),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 1, max: 1400 }),
      fc.integer({ min: 0, max: 6000 }),
      (ip, srcPort, dstPort, gsoSize, payloadLength) => {
        const payload = Uint8Array.from({ length: payloadLength }, (_, i) => (i * 13 + 1) & 0xff);
        const got = segmentAll(partial(buildUdp(ip, { srcPort, dstPort, payload })), GSO_UDP_L4, gsoSize);
        const n = Math.max(1, Math.ceil(payloadLength / gsoSize));
        assert.equal(got.length, n);
        for (let k = 0; k < n; k++) {
          const segIp = ipFamily(ip) === 4 ? { ...(ip as Ipv4Header), id: (((ip as Ipv4Header).id ?? 0) + k) & IP_ID_MASK } : ip;
          const want = buildUdp(segIp, { srcPort, dstPort, payload: payload.subarray(k * gsoSize, (k + 1) * gsoSize) });
          assert.deepEqual(got[k], want, `datagram ${k}`);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('byte fixture: 10 payload bytes, gso_size 4, FIN|PSH|CWR: three segments with the flags where the kernel puts them', () => {
  const ip: Ipv4Header = { src: '10.0.1.10', dst: '203.0.113.10', id: 0xfffe, ttl: 63, dontFragment: true };
  const tcp: TcpSegment = { srcPort: 40000, dstPort: 5201, seq: 0xfffffffa, ack: 7, flags: TCP_ACK_FLAG | TCP_FIN | TCP_PSH | TCP_CWR, window: 512 };
  const packet = partial(buildTcp(ip, { ...tcp, payload: new TextEncoder().encode('abcdefghij') }));
  const segs = segmentAll(packet, GSO_TCPV4, 4);
  assert.deepEqual(
    segs.map((s) => Buffer.from(s).toString('hex')),
    [
      // id fffe, seq fffffffa, ACK|CWR, "abcd"
      '4500002cfffe40003f06f4b80a00010acb00710a' + '9c401451fffffffa0000000750900200f0e10000' + '61626364',
      // id ffff, seq fffffffe (wraps next), ACK only, "efgh"
      '4500002cffff40003f06f4b70a00010acb00710a' + '9c401451fffffffe0000000750100200e9550000' + '65666768',
      // id 0000 (wrapped), seq 00000002, ACK|PSH|FIN, "ij"
      '4500002a000040003f06f4b90a00010acb00710a' + '9c4014510000000200000007501902004cb00000' + '696a',
    ],
  );
  // The pinned checksums above agree with full recomputation.
  for (const s of segs) {
    const info = new PacketInfo();
    assert.equal(inspect(s, 0, s.length, info), Drop.None, 'valid IPv4 header checksum');
    assert.equal(transportChecksumFull(s, info), read16(s, info.l4Offset + TCP_CHECKSUM));
  }
});

test('a super-packet that is one segment only comes out whole, checksum completed', () => {
  const packet = buildTcp({ src: '10.0.0.1', dst: '10.0.0.2' }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(100).fill(9) });
  const want = packet.slice();
  const got = segmentAll(partial(packet), GSO_TCPV4, 1000);
  assert.equal(got.length, 1);
  assert.deepEqual(got[0], want);
});

test('bad virtio-net headers are GSO_BAD, never a throw', () => {
  const v4 = buildTcp({ src: '10.0.0.1', dst: '10.0.0.2' }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(100) });
  const v6 = buildTcp({ src: 'fd00::1', dst: 'fd00::2' }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(100) });
  assert.equal(gsoHeaderLength(v4, 0, v4.length, GSO_TCPV4, 10, 20), 40);
  assert.equal(gsoHeaderLength(v4, 0, v4.length, GSO_TCPV6, 10, 20), GSO_BAD, 'TCPv6 type on an IPv4 packet');
  assert.equal(gsoHeaderLength(v6, 0, v6.length, GSO_TCPV4, 10, 40), GSO_BAD, 'TCPv4 type on an IPv6 packet');
  assert.equal(gsoHeaderLength(v4, 0, v4.length, GSO_TCPV4, 0, 20), GSO_BAD, 'gso_size 0');
  assert.equal(gsoHeaderLength(v4, 0, v4.length, 3 /* UFO */, 10, 20), GSO_BAD, 'UFO is not ours');
  assert.equal(gsoHeaderLength(v4, 0, v4.length, GSO_TCPV4, 10, 8), GSO_BAD, 'csum_start inside the IP header');
  assert.equal(gsoHeaderLength(v4, 0, 30, GSO_TCPV4, 10, 20), GSO_BAD, 'TCP header beyond the packet');
  assert.equal(gsoHeaderLength(v4, 0, v4.length + 1, GSO_TCPV4, 10, 20), GSO_BAD, 'length beyond the buffer');
  const badOffset = v4.slice();
  badOffset[20 + 12] = 0x10; // data offset 1 word
  assert.equal(gsoHeaderLength(badOffset, 0, badOffset.length, GSO_TCPV4, 10, 20), GSO_BAD, 'TCP data offset below 5');
});

test('completeChecksum fills a partial checksum (pseudo-header sum in the field) with the full one', () => {
  fc.assert(
    fc.property(fc.boolean(), fc.uint8Array({ maxLength: 3000 }), (udp, payload) => {
      const ip = { src: '192.0.2.1', dst: '198.51.100.7' };
      const packet = udp ? buildUdp(ip, { srcPort: 5, dstPort: 53, payload }) : buildTcp(ip, { srcPort: 5, dstPort: 80, payload });
      const want = packet.slice();
      const field = 20 + (udp ? UDP_CHECKSUM : TCP_CHECKSUM);
      const l4Length = packet.length - 20;
      // What the sending stack leaves for the device (tcp_v4_send_check): the folded pseudo-header sum, not complemented.
      const pseudo = pseudoHeaderSum4(0xc0000201, 0xc6336407, udp ? IPPROTO_UDP : IPPROTO_TCP, l4Length);
      write16(packet, field, ~foldChecksum(pseudo) & 0xffff);
      assert.ok(completeChecksum(packet, 0, packet.length, 20, field - 20, udp));
      assert.deepEqual(packet, want);
    }),
    { numRuns: 200 },
  );
  const p = new Uint8Array(40);
  assert.equal(completeChecksum(p, 0, 40, 20, 30, false), false, 'field beyond the packet');
  assert.equal(onesComplementSum(p, 0, 40, 0), 0, 'nothing written');
});
