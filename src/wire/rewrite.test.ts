/**
 * Rewrites are checked against the builders as the oracle: rewriting build(record) must give exactly the bytes of
 * build(record with the new values), every checksum included (RFC 1624 eqn 3 matches full recomputation bit for bit).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Drop } from '../common/drop-reasons.js';
import type { IcmpEcho, IpHeader, Ipv4Header, Ipv6Header, TcpSegment, UdpDatagram } from './build.js';
import { buildIcmp, buildIcmpError, buildIp, buildTcp, buildUdp, fragmentIpv4, ipFamily } from './build.js';
import { foldChecksum, pseudoHeaderSum4, pseudoHeaderSum6, transportChecksumFull } from './checksum.js';
import { completeChecksum } from './gso.js';
import { IPPROTO_TCP, IPPROTO_UDP, TCP_ACK_FLAG, TCP_SYN } from './constants.js';
import {
  DNS_QUERY,
  ICMP_PORT_UNREACHABLE,
  addr4Arb,
  addr6Arb,
  buildTransport,
  errorCaseArb,
  ipv4HeaderArb,
  ipv6HeaderArb,
  portArb,
  queryCaseArb,
  tcpArb,
  udpArb,
} from './fixtures.test.js';
import type { ErrorCase, TransportRecord } from './fixtures.test.js';
import { inspect } from './inspect.js';
import { PacketInfo } from './packet-info.js';
import {
  clampTcpMss,
  decrementTtl,
  refreshIcmpChecksum,
  setDstAddr4,
  setDstAddr6,
  setDstPort,
  setInnerAddr4,
  setInnerAddr6,
  setInnerPort,
  setIpv4Id,
  setSrcAddr4,
  setSrcAddr6,
  setSrcPort,
} from './rewrite.js';

function inspected(bytes: Uint8Array): PacketInfo {
  const info = new PacketInfo();
  assert.equal(inspect(bytes, 0, bytes.length, info), Drop.None);
  return info;
}

/** The fields a rewrite must keep in sync, compared with a fresh inspection of the rewritten bytes. */
function assertInfoInSync(info: PacketInfo, bytes: Uint8Array): void {
  const fresh = inspected(bytes);
  const pick = (i: PacketInfo) => [
    [...i.addr], i.srcPort, i.dstPort, i.icmpId, i.ttl, i.tcpMss,
    i.innerFamily ? [...i.innerAddr] : [], i.innerSrcPort, i.innerDstPort,
  ];
  assert.deepEqual(pick(info), pick(fresh));
}

interface NewValues {
  src?: number | Uint32Array;
  dst?: number | Uint32Array;
  srcPort?: number;
  dstPort?: number;
}

const newValues = (family: 4 | 6): fc.Arbitrary<NewValues> => {
  const addr = family === 4 ? addr4Arb : addr6Arb;
  return fc.record({ src: addr, dst: addr, srcPort: portArb, dstPort: portArb }, { requiredKeys: [] });
};

function withAddresses(ip: IpHeader, v: NewValues): IpHeader {
  const out = { ...ip } as IpHeader;
  if (v.src !== undefined) out.src = v.src as never;
  if (v.dst !== undefined) out.dst = v.dst as never;
  return out;
}

/** The transport record after setSrcPort / setDstPort under the port convention. */
function withPorts(t: TransportRecord, v: NewValues): TransportRecord {
  if (t.kind === 'udp') return { kind: 'udp', udp: { ...t.udp, srcPort: v.srcPort ?? t.udp.srcPort, dstPort: v.dstPort ?? t.udp.dstPort } };
  if (t.kind === 'tcp') return { kind: 'tcp', tcp: { ...t.tcp, srcPort: v.srcPort ?? t.tcp.srcPort, dstPort: v.dstPort ?? t.tcp.dstPort } };
  // Echo: a request's identifier is its srcPort, a reply's its dstPort; the other slot does not exist.
  const id = t.echo.type === 'request' ? (v.srcPort ?? t.echo.id) : (v.dstPort ?? t.echo.id);
  return { kind: 'echo', echo: { ...t.echo, id } };
}

function applyOuter(bytes: Uint8Array, info: PacketInfo, v: NewValues): void {
  if (info.family === 4) {
    if (v.src !== undefined) setSrcAddr4(bytes, info, v.src as number);
    if (v.dst !== undefined) setDstAddr4(bytes, info, v.dst as number);
  } else {
    if (v.src !== undefined) setSrcAddr6(bytes, info, v.src as Uint32Array, 0);
    if (v.dst !== undefined) setDstAddr6(bytes, info, v.dst as Uint32Array, 0);
  }
  if (v.srcPort !== undefined) setSrcPort(bytes, info, v.srcPort);
  if (v.dstPort !== undefined) setDstPort(bytes, info, v.dstPort);
}

const queryWithValues = queryCaseArb.chain((c) => newValues(ipFamily(c.ip)).map((v) => ({ ...c, v })));

test('address and port rewrites equal building the rewritten record (TCP, UDP incl. zero checksum, ICMP echo; both families)', () => {
  fc.assert(
    fc.property(queryWithValues, ({ ip, t, v }) => {
      const bytes = buildTransport(ip, t);
      const info = inspected(bytes);
      applyOuter(bytes, info, v);
      const expected = buildTransport(withAddresses(ip, v), withPorts(t, v));
      assert.deepEqual(bytes, expected);
      assertInfoInSync(info, bytes);
      const field = info.protocol === IPPROTO_TCP ? 16 : info.protocol === IPPROTO_UDP ? 6 : 2;
      const stored = (bytes[info.l4Offset + field] << 8) | bytes[info.l4Offset + field + 1];
      const zeroUdp = t.kind === 'udp' && t.udp.zeroChecksum && info.family === 4;
      assert.equal(stored, zeroUdp ? 0 : transportChecksumFull(bytes, info));
    }),
    { numRuns: 500 },
  );
});

test('a UDP checksum that becomes 0 is sent as 0xFFFF (RFC 768), and 0xFFFF is updated like 0', () => {
  // Find a source port that makes the computed checksum 0 by solving for it, then rewrite into and out of it.
  const ip = { src: '10.0.0.1', dst: '10.0.0.2' };
  const base = buildUdp(ip, { srcPort: 0, dstPort: 53 });
  const c = (base[26] << 8) | base[27];
  // Adding d to the data subtracts d from the checksum (one's complement): choose srcPort = c.
  const bytes = base.slice();
  const info = inspected(bytes);
  setSrcPort(bytes, info, c);
  assert.equal((bytes[26] << 8) | bytes[27], 0xffff);
  assert.deepEqual(bytes, buildUdp(ip, { srcPort: c, dstPort: 53 }));
  setSrcPort(bytes, info, 7);
  assert.deepEqual(bytes, buildUdp(ip, { srcPort: 7, dstPort: 53 }));
});

test('decrementTtl: refuses at 1 and 0, otherwise equals building with ttl - 1', () => {
  fc.assert(
    fc.property(queryCaseArb, ({ ip, t }) => {
      const bytes = buildTransport(ip, t);
      const before = bytes.slice();
      const info = inspected(bytes);
      const ttl = ip.family === 4 ? (ip as Ipv4Header).ttl! : (ip as Ipv6Header).hopLimit!;
      const ok = decrementTtl(bytes, info);
      assert.equal(ok, ttl > 1);
      if (!ok) {
        assert.deepEqual(bytes, before);
        return;
      }
      const next = ip.family === 4 ? { ...ip, ttl: ttl - 1 } : { ...ip, hopLimit: ttl - 1 };
      assert.deepEqual(bytes, buildTransport(next, t));
      assert.equal(info.ttl, ttl - 1);
    }),
    { numRuns: 300 },
  );
});

test('clampTcpMss lowers a larger MSS (aligned or after a NOP) and keeps the checksum', () => {
  const ipArb = fc.oneof(ipv4HeaderArb, ipv6HeaderArb);
  fc.assert(
    fc.property(ipArb, tcpArb, portArb, portArb, fc.boolean(), (ip, tcp, mss, max, odd) => {
      const mssBytes = (m: number) => (odd ? Uint8Array.of(1, 2, 4, m >>> 8, m & 0xff) : Uint8Array.of(2, 4, m >>> 8, m & 0xff));
      const seg = (m: number): TcpSegment => ({ ...tcp, flags: TCP_SYN, options: { raw: mssBytes(m) } });
      const bytes = buildTcp(ip, seg(mss));
      const info = inspected(bytes);
      assert.equal(info.tcpMss, mss);
      clampTcpMss(bytes, info, max);
      assert.deepEqual(bytes, buildTcp(ip, seg(Math.min(mss, max))));
      assert.equal(info.tcpMss, Math.min(mss, max));
    }),
    { numRuns: 300 },
  );
  // Not a SYN: no MSS recorded, nothing changes.
  const ack = buildTcp({ src: '10.0.0.1', dst: '10.0.0.2' }, { srcPort: 1, dstPort: 2, flags: TCP_ACK_FLAG, options: { mss: 9000 } });
  const copy = ack.slice();
  clampTcpMss(copy, inspected(copy), 1200);
  assert.deepEqual(copy, ack);
});

// --- fragments ----------------------------------------------------------------------------------

test('IPv4 fragments: addresses in every fragment, ports only in the first; equals fragmenting the rewritten packet', () => {
  const transport = fc.oneof(
    udpArb.map((udp) => ({ kind: 'udp' as const, udp: { ...udp, payload: new Uint8Array(300).fill(3) } })),
    tcpArb.map((tcp) => ({ kind: 'tcp' as const, tcp: { ...tcp, payload: new Uint8Array(300).fill(4) } })),
  );
  fc.assert(
    fc.property(ipv4HeaderArb, transport, newValues(4), fc.integer({ min: 100, max: 200 }), (ip, t, v, mtu) => {
      const fragments = fragmentIpv4(buildTransport(ip, t), mtu);
      for (const f of fragments) applyOuter(f, inspected(f), v);
      const expected = fragmentIpv4(buildTransport(withAddresses(ip, v), withPorts(t, v)), mtu);
      assert.deepEqual(fragments, expected);
    }),
    { numRuns: 200 },
  );
});

test('setIpv4Id equals building with the new id: whole packets and every fragment, header checksum kept, nothing else touched', () => {
  const transport = fc.oneof(
    udpArb.map((udp) => ({ kind: 'udp' as const, udp: { ...udp, payload: new Uint8Array(300).fill(5) } })),
    tcpArb.map((tcp) => ({ kind: 'tcp' as const, tcp: { ...tcp, payload: new Uint8Array(300).fill(6) } })),
  );
  fc.assert(
    fc.property(ipv4HeaderArb, transport, fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 100, max: 400 }), (ip, t, id, mtu) => {
      const fragments = fragmentIpv4(buildTransport(ip, t), mtu);
      for (const f of fragments) {
        const info = inspected(f);
        setIpv4Id(f, info, id);
        assert.equal(info.fragmentId, id);
        assert.equal(inspected(f).fragmentId, id, 'the header checksum still verifies (inspect checks it)');
      }
      assert.deepEqual(fragments, fragmentIpv4(buildTransport({ ...ip, id }, t), mtu));
    }),
    { numRuns: 300 },
  );
  // Byte fixture: id 0x1234 -> 0xbeef in a 20-byte header; the checksum moves by the difference alone.
  const bytes = buildUdp({ src: '10.0.1.10', dst: '203.0.113.10', id: 0x1234 }, { srcPort: 1, dstPort: 2 });
  setIpv4Id(bytes, inspected(bytes), 0xbeef);
  assert.deepEqual([...bytes.subarray(4, 6)], [0xbe, 0xef]);
  assert.deepEqual(bytes, buildUdp({ src: '10.0.1.10', dst: '203.0.113.10', id: 0xbeef }, { srcPort: 1, dstPort: 2 }));
});

/** An IPv6 datagram cut into two fragments behind a fragment header. */
function fragments6(ip: Ipv6Header, udp: UdpDatagram, cut: number): Uint8Array[] {
  const whole = buildUdp(ip, udp);
  const l4 = whole.subarray(whole.length - 8 - (udp.payload?.length ?? 0));
  const frag = (offset: number, more: boolean) => ({ ...ip, extensions: [...(ip.extensions ?? []), { type: 'fragment' as const, offset, more, id: 77 }] });
  return [buildIp(frag(0, true), IPPROTO_UDP, l4.subarray(0, cut)), buildIp(frag(cut, false), IPPROTO_UDP, l4.subarray(cut))];
}

test('IPv6 fragments: address rewrites fix the checksum in the first fragment only', () => {
  fc.assert(
    fc.property(ipv6HeaderArb, udpArb, newValues(6), (ip, udp, v) => {
      ip = { ...ip, extensions: [] };
      udp = { ...udp, payload: new Uint8Array(100).fill(9) };
      const got = fragments6(ip, udp, 64);
      for (const f of got) applyOuter(f, inspected(f), v);
      const expected = fragments6(withAddresses(ip, v) as Ipv6Header, { ...udp, srcPort: v.srcPort ?? udp.srcPort, dstPort: v.dstPort ?? udp.dstPort }, 64);
      assert.deepEqual(got, expected);
    }),
    { numRuns: 200 },
  );
});

// --- ICMP errors --------------------------------------------------------------------------------

interface InnerValues {
  outer: NewValues;
  inner: NewValues;
}

const errorWithValues = errorCaseArb.chain((c) =>
  fc.record({ outer: newValues(ipFamily(c.ip)), inner: newValues(ipFamily(c.innerIp)) }).map((v: InnerValues) => ({ c, v })),
);

function applyInner(bytes: Uint8Array, info: PacketInfo, v: NewValues): void {
  if (info.innerFamily === 4) {
    if (v.src !== undefined) setInnerAddr4(bytes, info, 0, v.src as number);
    if (v.dst !== undefined) setInnerAddr4(bytes, info, 4, v.dst as number);
  } else {
    if (v.src !== undefined) setInnerAddr6(bytes, info, 0, v.src as Uint32Array, 0);
    if (v.dst !== undefined) setInnerAddr6(bytes, info, 4, v.dst as Uint32Array, 0);
  }
  if (v.srcPort !== undefined) setInnerPort(bytes, info, 0, v.srcPort);
  if (v.dstPort !== undefined) setInnerPort(bytes, info, 4, v.dstPort);
}

test('ICMP error translation: outer and inner rewrites equal building the translated error (all checksums)', () => {
  fc.assert(
    fc.property(errorWithValues, ({ c, v }: { c: ErrorCase; v: InnerValues }) => {
      const bytes = buildIcmpError(c.ip, c.error, buildTransport(c.innerIp, c.inner));
      const info = inspected(bytes);
      applyOuter(bytes, info, v.outer); // ports are no-ops on an error
      applyInner(bytes, info, v.inner);
      const expected = buildIcmpError(
        withAddresses(c.ip, { src: v.outer.src, dst: v.outer.dst }),
        c.error,
        buildTransport(withAddresses(c.innerIp, v.inner), withPorts(c.inner, v.inner)),
      );
      assert.deepEqual(bytes, expected);
      assertInfoInSync(info, bytes);
      refreshIcmpChecksum(bytes, info);
      assert.deepEqual(bytes, expected);
    }),
    { numRuns: 500 },
  );
});

test('inner TCP checksum is left alone when the quote does not hold it; refreshIcmpChecksum repairs the outer checksum', () => {
  const inner = buildTcp({ src: '10.0.0.1', dst: '10.0.0.2' }, { srcPort: 1000, dstPort: 2000, seq: 5 });
  const ip = { src: '10.0.0.254', dst: '10.0.0.1' };
  for (const quoted of [8, 16, 17]) {
    const bytes = buildIcmp(ip, { type: 11, code: 0, body: inner.subarray(0, 20 + quoted) });
    const info = inspected(bytes);
    assert.equal(info.innerL4Available, quoted);
    setInnerAddr4(bytes, info, 0, 0x0a000009);
    setInnerPort(bytes, info, 0, 1234);
    const innerL4 = info.innerL4Offset;
    if (quoted === 17) assert.equal(bytes[innerL4 + 16], inner[36]); // half a checksum field: untouched
    const expectedInner = buildTcp({ src: '10.0.0.9', dst: '10.0.0.2' }, { srcPort: 1234, dstPort: 2000, seq: 5 });
    const body = expectedInner.slice(0, 20 + quoted);
    if (quoted === 17) body[36] = inner[36]; // we could not update it, the builder did
    assert.deepEqual(bytes, buildIcmp(ip, { type: 11, code: 0, body }));
  }
  // A broken outer checksum is repaired by refreshIcmpChecksum.
  const broken = ICMP_PORT_UNREACHABLE.slice();
  broken[22] ^= 0x55;
  refreshIcmpChecksum(broken, inspected(broken));
  assert.deepEqual(broken, ICMP_PORT_UNREACHABLE);
});

test('port rewrites are no-ops where there is no such port', () => {
  // ICMP error: no outer ports.
  const err = ICMP_PORT_UNREACHABLE.slice();
  const info = inspected(err);
  setSrcPort(err, info, 1);
  setDstPort(err, info, 2);
  assert.deepEqual(err, ICMP_PORT_UNREACHABLE);
  // Echo request: the dstPort slot is 0 by convention.
  const echo: IcmpEcho = { type: 'request', id: 5, seq: 1 };
  const ip = { src: '10.0.0.1', dst: '10.0.0.2' };
  const bytes = buildTransport(ip, { kind: 'echo', echo });
  setDstPort(bytes, inspected(bytes), 99);
  assert.deepEqual(bytes, buildTransport(ip, { kind: 'echo', echo }));
  // Inner rewrites on a packet that is not an error.
  const dns = DNS_QUERY.slice();
  const dnsInfo = inspected(dns);
  setInnerAddr4(dns, dnsInfo, 0, 1);
  setInnerPort(dns, dnsInfo, 0, 1);
  assert.deepEqual(dns, DNS_QUERY);
  // A non-first fragment: ports are in another packet.
  const later = buildIp({ ...ip, fragmentOffset: 64 }, IPPROTO_UDP, new Uint8Array(16));
  const copy = later.slice();
  setSrcPort(copy, inspected(copy), 1);
  assert.deepEqual(copy, later);
});

// --- partial checksums (a TUN with offloads: VIRTIO_NET_HDR_F_NEEDS_CSUM) ------------------------------

/** The packet as a sending stack leaves it for the device: the L4 field holds the folded pseudo-header sum. */
function makePartial(packet: Uint8Array, info: PacketInfo): number {
  const field = info.l4Offset + (info.protocol === IPPROTO_TCP ? 16 : 6);
  const l4Length = info.l4Length;
  const pseudo = info.family === 4 ? pseudoHeaderSum4(info.addr[0], info.addr[4], info.protocol, l4Length) : pseudoHeaderSum6(info.addr, 0, 4, info.protocol, l4Length);
  packet[field] = (~foldChecksum(pseudo) >>> 8) & 0xff;
  packet[field + 1] = ~foldChecksum(pseudo) & 0xff;
  return field;
}

test('NAT on a partial checksum (CHECKSUM_PARTIAL): completing it afterwards gives the oracle packet', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.record({ ip: ipv4HeaderArb, newSrc: addr4Arb, newDst: addr4Arb }),
        fc.record({ ip: ipv6HeaderArb.map((h) => ({ ...h, extensions: [] })), newSrc: addr6Arb, newDst: addr6Arb }),
      ),
      fc.oneof(tcpArb.map((tcp) => ({ kind: 'tcp' as const, tcp: { ...tcp, flags: TCP_ACK_FLAG, options: {} } })), udpArb.map((udp) => ({ kind: 'udp' as const, udp: { ...udp, zeroChecksum: false } }))),
      portArb,
      portArb,
      ({ ip, newSrc, newDst }, t, newSrcPort, newDstPort) => {
        const packet = t.kind === 'tcp' ? buildTcp(ip, t.tcp) : buildUdp(ip, t.udp);
        const info = new PacketInfo();
        assert.equal(inspect(packet, 0, packet.length, info), Drop.None);
        const field = makePartial(packet, info);
        info.csumPartial = true;
        if (info.family === 4) {
          setSrcAddr4(packet, info, newSrc as number);
          setDstAddr4(packet, info, newDst as number);
        } else {
          setSrcAddr6(packet, info, newSrc as Uint32Array, 0);
          setDstAddr6(packet, info, newDst as Uint32Array, 0);
        }
        setSrcPort(packet, info, newSrcPort);
        setDstPort(packet, info, newDstPort);
        decrementTtl(packet, info);
        assert.ok(completeChecksum(packet, 0, packet.length, info.l4Offset, field - info.l4Offset, t.kind === 'udp'));
        const ip2 = { ...ip, src: newSrc, dst: newDst } as IpHeader;
        if (ipFamily(ip) === 4) (ip2 as Ipv4Header).ttl = ((ip as Ipv4Header).ttl ?? 64) > 1 ? ((ip as Ipv4Header).ttl ?? 64) - 1 : (ip as Ipv4Header).ttl;
        else (ip2 as Ipv6Header).hopLimit = ((ip as Ipv6Header).hopLimit ?? 64) > 1 ? ((ip as Ipv6Header).hopLimit ?? 64) - 1 : (ip as Ipv6Header).hopLimit;
        const want = t.kind === 'tcp' ? buildTcp(ip2, { ...t.tcp, srcPort: newSrcPort, dstPort: newDstPort }) : buildUdp(ip2, { ...t.udp, srcPort: newSrcPort, dstPort: newDstPort });
        assert.deepEqual(packet, want);
      },
    ),
    { numRuns: 300 },
  );
});

test('MSS clamping on a partial checksum leaves the field to the final sum', () => {
  const packet = buildTcp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 80, flags: TCP_SYN, options: { mss: 1460 } });
  const info = new PacketInfo();
  assert.equal(inspect(packet, 0, packet.length, info), Drop.None);
  const field = makePartial(packet, info);
  info.csumPartial = true;
  clampTcpMss(packet, info, 1380);
  completeChecksum(packet, 0, packet.length, info.l4Offset, field - info.l4Offset, false);
  assert.deepEqual(packet, buildTcp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 80, flags: TCP_SYN, options: { mss: 1380 } }));
});
