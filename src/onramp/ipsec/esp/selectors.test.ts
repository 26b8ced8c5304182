import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatIpv4, formatIpv6, parseIpv6 } from '../../../wire/addr.js';
import { buildIcmp, buildIp, buildTcp, buildUdp, fragmentIpv4, type IpHeader } from '../../../wire/build.js';
import { ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../../../wire/constants.js';
import { selectorsWithin } from '../ike/ts.js';
import type { TrafficSelector } from '../types.js';
import { EVERY_SELECTOR, InboundSelectors, ROUTE_BASED } from './selectors.js';

const ANY4: TrafficSelector = EVERY_SELECTOR[0]!;
const ANY6: TrafficSelector = EVERY_SELECTOR[1]!;
const OPAQUE = { startPort: 0xffff, endPort: 0 };
const GRE = 47;

function v4(start: string, end: string, protocol = 0, startPort = 0, endPort = 0xffff): TrafficSelector {
  return { family: 4, start, end, protocol, startPort, endPort };
}

function udp(src: string, dst: string, srcPort = 40000, dstPort = 53): Uint8Array {
  return buildUdp({ src, dst }, { srcPort, dstPort, payload: new Uint8Array(4) });
}

function admits(check: InboundSelectors | null, packet: Uint8Array): boolean {
  return check === null || check.admits(packet, 0, packet.length);
}

test('route-based SAs (0.0.0.0/0 and ::/0 both ways) compile to no check at all', () => {
  assert.equal(InboundSelectors.compile(ROUTE_BASED.remote, ROUTE_BASED.local), null);
  // IPv4 only: IPv4 is admitted on the version nibble, IPv6 is not negotiated and refused.
  const v4only = InboundSelectors.compile([ANY4], [ANY4]);
  assert.ok(v4only !== null);
  assert.equal(admits(v4only, udp('10.0.1.10', '203.0.113.10')), true);
  assert.equal(admits(v4only, buildUdp({ src: 'fd00::1', dst: '2001:db8::1' }, { srcPort: 1, dstPort: 2 })), false);
});

test('a site narrowed to 10.0.1.0/24 may not send from another address (RFC 4301 §5.2 step 4)', () => {
  const check = InboundSelectors.compile([v4('10.0.1.0', '10.0.1.255')], [ANY4, ANY6]);
  assert.equal(admits(check, udp('10.0.1.10', '203.0.113.10')), true);
  assert.equal(admits(check, udp('10.0.2.10', '203.0.113.10')), false, 'another site’s range');
  assert.equal(admits(check, udp('10.0.0.255', '203.0.113.10')), false, 'just below the range');
  assert.equal(admits(check, buildUdp({ src: 'fd00::1', dst: '2001:db8::1' }, { srcPort: 1, dstPort: 2 })), false, 'no IPv6 selector on the peer side');
  assert.equal(admits(check, new Uint8Array([0x45, 0, 0])), false, 'a packet that does not parse');
});

test('protocol and ports: TCP/UDP ports, ICMP type and code, OPAQUE for non-initial fragments', () => {
  const dns = InboundSelectors.compile([v4('10.0.1.0', '10.0.1.255', IPPROTO_UDP)], [v4('0.0.0.0', '255.255.255.255', IPPROTO_UDP, 53, 53)]);
  assert.equal(admits(dns, udp('10.0.1.10', '8.8.8.8', 40000, 53)), true);
  assert.equal(admits(dns, udp('10.0.1.10', '8.8.8.8', 40000, 54)), false);
  assert.equal(admits(dns, buildTcp({ src: '10.0.1.10', dst: '8.8.8.8' }, { srcPort: 40000, dstPort: 53 })), false);
  // ICMP echo request: type 8, code 0 → 0x0800 (RFC 7296 §3.13.1).
  const echo = InboundSelectors.compile([v4('10.0.1.0', '10.0.1.255', IPPROTO_ICMP, 0x0800, 0x08ff)], [v4('0.0.0.0', '255.255.255.255', IPPROTO_ICMP, 0x0800, 0x08ff)]);
  const ping = buildIcmp({ src: '10.0.1.10', dst: '8.8.8.8' }, { type: 8, code: 0, rest: 0x00010001, body: new Uint8Array(8) });
  const reply = buildIcmp({ src: '10.0.1.10', dst: '8.8.8.8' }, { type: 0, code: 0, rest: 0x00010001, body: new Uint8Array(8) });
  assert.equal(admits(echo, ping), true);
  assert.equal(admits(echo, reply), false);
  // A protocol without ports lies inside "any" and OPAQUE only.
  const gre = buildIp({ src: '10.0.1.10', dst: '8.8.8.8' }, GRE, new Uint8Array(8));
  assert.equal(admits(InboundSelectors.compile([v4('10.0.1.0', '10.0.1.255')], [ANY4]), gre), true);
  assert.equal(admits(InboundSelectors.compile([v4('10.0.1.0', '10.0.1.255', 0, 1, 1000)], [ANY4]), gre), false);
  assert.equal(admits(InboundSelectors.compile([v4('10.0.1.0', '10.0.1.255', 0, OPAQUE.startPort, OPAQUE.endPort)], [ANY4]), gre), true);
  // A non-initial fragment carries no ports (RFC 4301 §7.1): "any" and OPAQUE hold it, a port range does not.
  const datagram = buildUdp({ src: '10.0.1.10', dst: '8.8.8.8' }, { srcPort: 40000, dstPort: 53, payload: new Uint8Array(100) });
  const [first, later] = fragmentIpv4(datagram, 68);
  const toDns = (startPort: number, endPort: number): InboundSelectors | null =>
    InboundSelectors.compile([v4('10.0.1.0', '10.0.1.255')], [v4('0.0.0.0', '255.255.255.255', IPPROTO_UDP, startPort, endPort)]);
  assert.equal(admits(toDns(53, 53), first!), true, 'the first fragment has its ports');
  assert.equal(admits(toDns(53, 53), later!), false);
  assert.equal(admits(toDns(0, 0xffff), later!), true);
  assert.equal(admits(toDns(OPAQUE.startPort, OPAQUE.endPort), later!), true);
  assert.equal(admits(toDns(OPAQUE.startPort, OPAQUE.endPort), first!), false);
});

test('a selector with unparseable addresses is refused at compile time, naming it', () => {
  assert.throws(() => InboundSelectors.compile([v4('10.0.1.0', 'nonsense')], [ANY4]), /10\.0\.1\.0-nonsense/);
});

// --- property: the compiled check agrees with the IKE code's own containment (ts.ts selectorsWithin) -----------

/** A packet's point selector on one side: its address, protocol, and port (OPAQUE when it has none). */
function point(family: 4 | 6, address: string, protocol: number, port: number | null): TrafficSelector {
  const ports = port === null ? OPAQUE : { startPort: port, endPort: port };
  return { family, start: address, end: address, protocol, ...ports };
}

/** Addresses from a small space so selectors and packets meet often: 10.0.0.0–10.0.0.15 and fd00::0–fd00::f. */
const HOST = fc.integer({ min: 0, max: 15 });
const address = (family: 4 | 6, host: number): string => (family === 4 ? formatIpv4((10 << 24) + host) : formatIpv6(parseIpv6(`fd00::${host.toString(16)}`)!));
const PORT = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(0xffff));
const PROTOCOL = fc.constantFrom(0, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, GRE);

const selectorArb: fc.Arbitrary<TrafficSelector> = fc
  .record({ family: fc.constantFrom<4 | 6>(4, 6), a: HOST, b: HOST, protocol: PROTOCOL, p: PORT, q: PORT, opaque: fc.boolean(), all: fc.boolean() })
  .map(({ family, a, b, protocol, p, q, opaque, all }) => {
    if (all) return family === 4 ? ANY4 : ANY6;
    const ports = opaque ? OPAQUE : { startPort: Math.min(p, q), endPort: Math.max(p, q) };
    return { family, start: address(family, Math.min(a, b)), end: address(family, Math.max(a, b)), protocol, ...ports };
  });

const packetArb = fc.record({
  family: fc.constantFrom<4 | 6>(4, 6),
  src: HOST,
  dst: HOST,
  kind: fc.constantFrom('tcp', 'udp', 'icmp', 'gre'),
  srcPort: PORT,
  dstPort: PORT,
  icmpType: fc.constantFrom(0, 8),
});

test('property: admits() ⇔ source point within the peer’s selectors and destination point within ours (ts.ts oracle)', () => {
  fc.assert(
    fc.property(fc.array(selectorArb, { maxLength: 4 }), fc.array(selectorArb, { maxLength: 4 }), packetArb, (remote, local, p) => {
      const ip: IpHeader = { src: address(p.family, p.src), dst: address(p.family, p.dst) } as IpHeader;
      const icmp = p.family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
      let bytes: Uint8Array;
      let protocol: number;
      let srcPort: number | null = null;
      let dstPort: number | null = null;
      if (p.kind === 'tcp' || p.kind === 'udp') {
        protocol = p.kind === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP;
        bytes = p.kind === 'tcp' ? buildTcp(ip, { srcPort: p.srcPort, dstPort: p.dstPort }) : buildUdp(ip, { srcPort: p.srcPort, dstPort: p.dstPort });
        srcPort = p.srcPort;
        dstPort = p.dstPort;
      } else if (p.kind === 'icmp') {
        protocol = icmp;
        // Echo request and reply (ICMPv6: 128 and 129), as one 16-bit port on both sides (RFC 7296 §3.13.1).
        const type = p.family === 4 ? p.icmpType : p.icmpType === 8 ? ICMP6_ECHO_REQUEST : ICMP6_ECHO_REPLY;
        bytes = buildIcmp(ip, { type, code: 0, rest: 0, body: new Uint8Array(8) });
        srcPort = dstPort = type << 8;
      } else {
        protocol = GRE;
        bytes = buildIp(ip, GRE, new Uint8Array(8));
      }
      const expected =
        remote.length > 0 &&
        local.length > 0 &&
        selectorsWithin([point(p.family, ip.src as string, protocol, srcPort)], remote) &&
        selectorsWithin([point(p.family, ip.dst as string, protocol, dstPort)], local);
      const check = InboundSelectors.compile(remote, local);
      assert.equal(admits(check, bytes), expected, JSON.stringify({ remote, local, p }));
    }),
    { numRuns: 3000 },
  );
});
