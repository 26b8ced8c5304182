/**
 * Shared test material for src/wire: byte fixtures and fast-check arbitraries for packet records.
 * (A .test.ts file so that neither it nor fast-check ends up in the build; its own test checks the fixtures' framing.)
 *
 * The fixtures were produced with Scapy 2.5 (Debian python3-scapy) and cross-checked field by field by hand;
 * the generating expressions are next to each one. Large packets are stored as header hex + a filler run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { IcmpEcho, IcmpError, IpHeader, Ipv4Header, Ipv6Extension, Ipv6Header, TcpSegment, UdpDatagram } from './build.js';
import { buildIcmpEcho, buildIcmpError, buildTcp, buildUdp } from './build.js';
import { ipv4HeaderChecksum } from './checksum.js';

export function hex(text: string, fill = 0, fillCount = 0): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  const out = new Uint8Array(clean.length / 2 + fillCount);
  for (let i = 0; i < clean.length / 2; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  out.fill(fill, clean.length / 2);
  return out;
}

/** The DNS question "example.com A", id 0xbeef, recursion desired (the UDP payload of DNS_QUERY). */
export const DNS_PAYLOAD = hex('beef 0100 0001 0000 0000 0000 076578616d706c6503636f6d00 0001 0001');

/** IP(src='10.0.1.10', dst='8.8.8.8', id=0x1c46, flags='DF', ttl=64)/UDP(sport=53535, dport=53)/DNS(...) */
export const DNS_QUERY = hex(`
  4500 0039 1c46 4000 4011 0355 0a00010a 08080808
  d11f 0035 0025 84d8
  beef01000001000000000000076578616d706c6503636f6d0000010001`);

/**
 * IP(src='10.0.1.10', dst='203.0.113.10', id=0x3a1f, flags='DF')/TCP(sport=40000, dport=443, seq=0x12345678,
 * flags='S', window=64240, options=[MSS 1460, SAckOK, Timestamp (123456, 0), NOP, WScale 7]) — Linux's SYN layout.
 */
export const TCP_SYN = hex(`
  4500 003c 3a1f 4000 4006 b988 0a00010a cb00710a
  9c40 01bb 12345678 00000000 a002 faf0 1d11 0000
  020405b4 0402 080a 0001e240 00000000 01 030307`);

/** IP(src='8.8.8.8', dst='10.0.1.10', id=1, ttl=57)/ICMP(type=3, code=3) quoting all of DNS_QUERY. */
export const ICMP_PORT_UNREACHABLE = hex(`
  4500 0055 0001 0000 3901 668e 08080808 0a00010a
  0303 184d 00000000
  450000391c464000401103550a00010a08080808d11f0035002584d8beef01000001000000000000076578616d706c6503636f6d0000010001`);

/**
 * IP(src='192.0.2.1', dst='10.0.1.10', id=2, ttl=254)/ICMP(type=3, code=4, nexthopmtu=1400) quoting the first 28
 * bytes of a 1492-byte TCP segment 10.0.1.10:40000 -> 203.0.113.10:443 (RFC 1191 "fragmentation needed").
 */
export const ICMP_FRAG_NEEDED = hex(`
  4500 0038 0002 0000 fe01 efb7 c0000201 0a00010a
  0304 f0da 0000 0578
  450005d4 40004000 3f06af0f 0a00010a cb00710a 9c4001bb 12345679`);

/**
 * First fragment of fragment6(IPv6(src='2001:db8:1::10', dst='2001:db8:2::20')/IPv6ExtHdrHopByHop(PadN 4)/
 * IPv6ExtHdrFragment(id=0x12345678)/UDP(sport=5000, dport=6000)/Raw(b'y'*1800), 1280).
 */
export const IPV6_UDP_FRAGMENT_FIRST = hex(
  `6000 0000 04d8 00 40 20010db8000100000000000000000010 20010db8000200000000000000000020
   2c 00 0104 00000000
   11 00 0001 12345678
   1388 1770 0710 5c22`,
  0x79,
  1216,
);

/** The second (last) fragment of the same datagram: offset 1224, M clear. */
export const IPV6_UDP_FRAGMENT_LAST = hex(
  `6000 0000 0258 00 40 20010db8000100000000000000000010 20010db8000200000000000000000020
   2c 00 0104 00000000
   11 00 04c8 12345678`,
  0x79,
  584,
);

/**
 * IPv6(src='2001:db8:ffff::1', dst='2001:db8:1::10')/ICMPv6PacketTooBig(mtu=1280) quoting the first 1232 bytes of
 * IPv6(src='2001:db8:1::10', dst='2001:db8:2::20', hlim=63)/TCP(sport=40001, dport=443, seq=1, ack=2, flags='A')/
 * Raw(b'z'*1300): as much as fits in 1280 bytes (RFC 4443 section 2.4 (c)).
 */
export const ICMPV6_PACKET_TOO_BIG = hex(
  `6000 0000 04d8 3a 40 20010db8ffff00000000000000000001 20010db8000100000000000000000010
   0200 d0ce 00000500
   6000 0000 0528 06 3f 20010db8000100000000000000000010 20010db8000200000000000000000020
   9c41 01bb 00000001 00000002 5010 2000 9621 0000`,
  0x7a,
  1172,
);

/** IPv6(src='2001:db8:1::10', dst='2001:db8:2::20')/ICMPv6EchoRequest(id=0x1234, seq=1, data=b'abcdefgh') */
export const ICMPV6_ECHO_REQUEST = hex(`
  6000 0000 0010 3a 40 20010db8000100000000000000000010 20010db8000200000000000000000020
  8000 8045 1234 0001 6162636465666768`);

test('fixtures are framed as their IP headers say', () => {
  const v4 = [DNS_QUERY, TCP_SYN, ICMP_PORT_UNREACHABLE, ICMP_FRAG_NEEDED];
  for (const p of v4) assert.equal(p.length, (p[2] << 8) | p[3]);
  const v6 = [IPV6_UDP_FRAGMENT_FIRST, IPV6_UDP_FRAGMENT_LAST, ICMPV6_PACKET_TOO_BIG, ICMPV6_ECHO_REQUEST];
  for (const p of v6) assert.equal(p.length, 40 + ((p[4] << 8) | p[5]));
});

// --- arbitraries --------------------------------------------------------------------------------

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
export const addr4Arb = u32;
export const addr6Arb = fc.tuple(u32, u32, u32, u32).map((w) => Uint32Array.from(w));
export const portArb = u16;
const bytes = (max: number) => fc.uint8Array({ maxLength: max });

/** IPv4 options: NOPs, router alert (copied, RFC 2113) and a timestamp-like option (not copied), padded by the builder. */
const ipv4OptionsArb = fc
  .array(fc.constantFrom([1], [0x94, 4, 0, 0], [0x44, 8, 5, 0, 1, 2, 3, 4]), { maxLength: 4 })
  .map((parts) => Uint8Array.from(parts.flat()));

export const ipv4HeaderArb: fc.Arbitrary<Ipv4Header> = fc.record({
  family: fc.constant(4 as const),
  src: addr4Arb,
  dst: addr4Arb,
  ttl: fc.integer({ min: 0, max: 255 }),
  id: u16,
  tos: u8,
  dontFragment: fc.boolean(),
  options: ipv4OptionsArb,
});

const ipv6ExtensionsArb: fc.Arbitrary<Ipv6Extension[]> = fc
  .record({
    hopByHop: fc.boolean(),
    destination: fc.boolean(),
    routing: fc.boolean(),
    atomicFragment: fc.option(u32, { nil: undefined }),
  })
  .map((r) => {
    const ext: Ipv6Extension[] = [];
    // Options are padding only (PadN): inspect skips option contents.
    if (r.hopByHop) ext.push({ type: 'hopByHop' });
    if (r.destination) ext.push({ type: 'destination' });
    if (r.routing) ext.push({ type: 'routing', routingType: 4, segmentsLeft: 0 });
    if (r.atomicFragment !== undefined) ext.push({ type: 'fragment', offset: 0, more: false, id: r.atomicFragment });
    return ext;
  });

export const ipv6HeaderArb: fc.Arbitrary<Ipv6Header> = fc.record({
  family: fc.constant(6 as const),
  src: addr6Arb,
  dst: addr6Arb,
  hopLimit: fc.integer({ min: 0, max: 255 }),
  trafficClass: u8,
  flowLabel: fc.integer({ min: 0, max: 0xfffff }),
  extensions: ipv6ExtensionsArb,
});

export const ipHeaderArb: fc.Arbitrary<IpHeader> = fc.oneof(ipv4HeaderArb, ipv6HeaderArb);

export const udpArb: fc.Arbitrary<UdpDatagram> = fc.record({
  srcPort: u16,
  dstPort: u16,
  payload: bytes(48),
  zeroChecksum: fc.boolean(),
});

export const tcpArb: fc.Arbitrary<TcpSegment> = fc.record({
  srcPort: u16,
  dstPort: u16,
  seq: u32,
  ack: u32,
  flags: u8,
  window: u16,
  options: fc.record(
    {
      mss: u16,
      windowScale: u8,
      sackPermitted: fc.boolean(),
      timestamps: fc.record({ value: u32, echo: u32 }),
    },
    { requiredKeys: [] },
  ),
  payload: bytes(48),
});

export const echoArb: fc.Arbitrary<IcmpEcho> = fc.record({
  type: fc.constantFrom('request' as const, 'reply' as const),
  id: u16,
  seq: u16,
  payload: bytes(32),
});

export type TransportRecord = { kind: 'udp'; udp: UdpDatagram } | { kind: 'tcp'; tcp: TcpSegment } | { kind: 'echo'; echo: IcmpEcho };

export const transportArb: fc.Arbitrary<TransportRecord> = fc.oneof(
  udpArb.map((udp) => ({ kind: 'udp' as const, udp })),
  tcpArb.map((tcp) => ({ kind: 'tcp' as const, tcp })),
  echoArb.map((echo) => ({ kind: 'echo' as const, echo })),
);

export function buildTransport(ip: IpHeader, t: TransportRecord): Uint8Array {
  if (t.kind === 'udp') return buildUdp(ip, t.udp);
  if (t.kind === 'tcp') return buildTcp(ip, t.tcp);
  return buildIcmpEcho(ip, t.echo);
}

/** A query packet (not an error): IP record + transport record. */
export interface QueryCase {
  ip: IpHeader;
  t: TransportRecord;
}

export const queryCaseArb: fc.Arbitrary<QueryCase> = fc.record({ ip: ipHeaderArb, t: transportArb });

/** An ICMP error quoting an inner packet of the same family. */
export interface ErrorCase {
  ip: IpHeader;
  error: IcmpError;
  innerIp: IpHeader;
  inner: TransportRecord;
}

const error4Arb = fc.record({
  type: fc.constantFrom(3, 11, 12),
  code: fc.integer({ min: 0, max: 5 }),
  mtu: u16,
  pointer: u8,
  quote: fc.constantFrom('minimal' as const, 'max' as const),
});

const error6Arb = fc.record({
  type: fc.constantFrom(1, 2, 3, 4),
  code: fc.integer({ min: 0, max: 5 }),
  mtu: u32,
  pointer: u32,
  quote: fc.constantFrom('minimal' as const, 'max' as const),
});

export const errorCaseArb: fc.Arbitrary<ErrorCase> = fc.oneof(
  fc.record({ ip: ipv4HeaderArb, error: error4Arb, innerIp: ipv4HeaderArb, inner: transportArb }),
  fc.record({ ip: ipv6HeaderArb, error: error6Arb, innerIp: ipv6HeaderArb, inner: transportArb }),
);

export function buildError(c: ErrorCase): Uint8Array {
  return buildIcmpError(c.ip, c.error, buildTransport(c.innerIp, c.inner));
}

/** Recomputes the IPv4 header checksum at p[at] after a test edits the header. */
export function fixIpv4Checksum(p: Uint8Array, at = 0): Uint8Array {
  const c = ipv4HeaderChecksum(p, at, (p[at] & 0x0f) * 4);
  p[at + 10] = c >>> 8;
  p[at + 11] = c & 0xff;
  return p;
}
