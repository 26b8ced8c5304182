import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseIpv4, parseIpv6 } from './addr.js';
import { Drop } from '../common/drop-reasons.js';
import { buildIcmp, buildIcmpEcho, buildIcmpError, buildIp, buildTcp, buildUdp, ipFamily, parsePacket } from './build.js';
import type { Ipv6Extension } from './build.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK_FLAG, TCP_SYN } from './constants.js';
import {
  DNS_QUERY,
  ICMP_FRAG_NEEDED,
  ICMP_PORT_UNREACHABLE,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PACKET_TOO_BIG,
  IPV6_UDP_FRAGMENT_FIRST,
  IPV6_UDP_FRAGMENT_LAST,
  TCP_SYN as TCP_SYN_FIXTURE,
  buildError,
  buildTransport,
  errorCaseArb,
  queryCaseArb,
  fixIpv4Checksum,
} from './fixtures.test.js';
import { readGuard } from '../../test/support/bounds.js';
import { inspect } from './inspect.js';
import { PacketInfo } from './packet-info.js';

const info = new PacketInfo();

function run(bytes: Uint8Array): number {
  return inspect(bytes, 0, bytes.length, info);
}

function v4(text: string): number {
  return parseIpv4(text);
}

function words6(text: string): number[] {
  return [...parseIpv6(text)!];
}

// --- fixtures -----------------------------------------------------------------------------------

test('fixture: IPv4/UDP DNS query', () => {
  assert.equal(run(DNS_QUERY), Drop.None);
  assert.equal(info.family, 4);
  assert.equal(info.l3Offset, 0);
  assert.equal(info.ipLength, 57);
  assert.equal(info.protocol, IPPROTO_UDP);
  assert.equal(info.l4Offset, 20);
  assert.equal(info.l4Length, 37);
  assert.equal(info.ttl, 64);
  assert.equal(info.ttlOffset, 8);
  assert.equal(info.addr[0], v4('10.0.1.10'));
  assert.equal(info.addr[4], v4('8.8.8.8'));
  assert.equal(info.srcPort, 53535);
  assert.equal(info.dstPort, 53);
  assert.equal(info.dontFragment, true);
  assert.equal(info.fragmentId, 0x1c46);
  assert.equal(info.isFragment, false);
  assert.equal(info.hasTransportHeader, true);
  assert.equal(info.isIcmpError, false);
});

test('fixture: IPv4/TCP SYN with MSS, SACK-permitted, timestamps and window scale', () => {
  assert.equal(run(TCP_SYN_FIXTURE), Drop.None);
  assert.equal(info.protocol, IPPROTO_TCP);
  assert.equal(info.srcPort, 40000);
  assert.equal(info.dstPort, 443);
  assert.equal(info.tcpFlags, TCP_SYN);
  assert.equal(info.tcpSeq, 0x12345678);
  assert.equal(info.tcpAck, 0);
  assert.equal(info.tcpWindow, 64240);
  assert.equal(info.tcpHeaderLength, 40);
  assert.equal(info.tcpPayloadLength, 0);
  assert.equal(info.tcpMss, 1460);
  assert.equal(info.tcpMssOffset, 42);
  assert.equal((TCP_SYN_FIXTURE[42] << 8) | TCP_SYN_FIXTURE[43], 1460);
  assert.equal(info.tcpWindowScale, 7);
});

test('fixture: ICMPv4 port unreachable quoting a whole UDP datagram', () => {
  assert.equal(run(ICMP_PORT_UNREACHABLE), Drop.None);
  assert.equal(info.protocol, IPPROTO_ICMP);
  assert.equal(info.icmpType, 3);
  assert.equal(info.icmpCode, 3);
  assert.equal(info.isIcmpError, true);
  assert.equal(info.srcPort, 0);
  assert.equal(info.dstPort, 0);
  assert.equal(info.innerFamily, 4);
  assert.equal(info.innerL3Offset, 28);
  assert.equal(info.innerProtocol, IPPROTO_UDP);
  assert.equal(info.innerL4Offset, 48);
  assert.equal(info.innerL4Available, 37);
  assert.equal(info.innerAddr[0], v4('10.0.1.10'));
  assert.equal(info.innerAddr[4], v4('8.8.8.8'));
  assert.equal(info.innerSrcPort, 53535);
  assert.equal(info.innerDstPort, 53);
});

test('fixture: ICMPv4 fragmentation needed (type 3 code 4, next-hop MTU 1400) quoting header + 8 bytes', () => {
  assert.equal(run(ICMP_FRAG_NEEDED), Drop.None);
  assert.equal(info.icmpType, 3);
  assert.equal(info.icmpCode, 4);
  assert.equal((ICMP_FRAG_NEEDED[info.l4Offset + 6] << 8) | ICMP_FRAG_NEEDED[info.l4Offset + 7], 1400);
  assert.equal(info.isIcmpError, true);
  assert.equal(info.innerProtocol, IPPROTO_TCP);
  assert.equal(info.innerL4Offset, 48);
  assert.equal(info.innerL4Available, 8);
  assert.equal(info.innerAddr[0], v4('10.0.1.10'));
  assert.equal(info.innerAddr[4], v4('203.0.113.10'));
  assert.equal(info.innerSrcPort, 40000);
  assert.equal(info.innerDstPort, 443);
});

test('fixture: IPv6/UDP fragments behind a hop-by-hop header', () => {
  assert.equal(run(IPV6_UDP_FRAGMENT_FIRST), Drop.None);
  assert.equal(info.family, 6);
  assert.equal(info.ipLength, 1280);
  assert.equal(info.ttl, 64);
  assert.equal(info.ttlOffset, 7);
  assert.deepEqual([...info.addr.subarray(0, 4)], words6('2001:db8:1::10'));
  assert.deepEqual([...info.addr.subarray(4, 8)], words6('2001:db8:2::20'));
  assert.equal(info.protocol, IPPROTO_UDP);
  assert.equal(info.l4Offset, 56);
  assert.equal(info.l4Length, 1224);
  assert.equal(info.isFragment, true);
  assert.equal(info.moreFragments, true);
  assert.equal(info.fragmentOffset, 0);
  assert.equal(info.fragmentId, 0x12345678);
  assert.equal(info.hasTransportHeader, true);
  assert.equal(info.srcPort, 5000);
  assert.equal(info.dstPort, 6000);

  assert.equal(run(IPV6_UDP_FRAGMENT_LAST), Drop.None);
  assert.equal(info.protocol, IPPROTO_UDP);
  assert.equal(info.l4Offset, 56);
  assert.equal(info.l4Length, 584);
  assert.equal(info.isFragment, true);
  assert.equal(info.moreFragments, false);
  assert.equal(info.fragmentOffset, 1224);
  assert.equal(info.fragmentId, 0x12345678);
  assert.equal(info.hasTransportHeader, false);
  assert.equal(info.srcPort, 0);
  assert.equal(info.dstPort, 0);
});

test('fixture: ICMPv6 packet too big quoting as much as fits in 1280 bytes', () => {
  assert.equal(run(ICMPV6_PACKET_TOO_BIG), Drop.None);
  assert.equal(info.protocol, IPPROTO_ICMPV6);
  assert.equal(info.icmpType, 2);
  assert.equal(info.isIcmpError, true);
  assert.equal(info.innerFamily, 6);
  assert.equal(info.innerL3Offset, 48);
  assert.equal(info.innerProtocol, IPPROTO_TCP);
  assert.equal(info.innerL4Offset, 88);
  assert.equal(info.innerL4Available, 1192);
  assert.deepEqual([...info.innerAddr.subarray(0, 4)], words6('2001:db8:1::10'));
  assert.deepEqual([...info.innerAddr.subarray(4, 8)], words6('2001:db8:2::20'));
  assert.equal(info.innerSrcPort, 40001);
  assert.equal(info.innerDstPort, 443);
});

test('fixture: ICMPv6 echo request (identifier as source port)', () => {
  assert.equal(run(ICMPV6_ECHO_REQUEST), Drop.None);
  assert.equal(info.protocol, IPPROTO_ICMPV6);
  assert.equal(info.icmpType, 128);
  assert.equal(info.icmpId, 0x1234);
  assert.equal(info.srcPort, 0x1234);
  assert.equal(info.dstPort, 0);
  assert.equal(info.isIcmpError, false);
});

// --- IPv4 header validation ---------------------------------------------------------------------

test('IPv4: version, lengths, checksum and protocol are validated', () => {
  const mutate = (edit: (p: Uint8Array) => void, fix = true): Uint8Array => {
    const p = DNS_QUERY.slice();
    edit(p);
    return fix ? fixIpv4Checksum(p) : p;
  };
  assert.equal(run(new Uint8Array(0)), Drop.Truncated);
  assert.equal(run(DNS_QUERY.subarray(0, 19)), Drop.Truncated);
  assert.equal(run(mutate((p) => (p[0] = 0x55), false)), Drop.BadVersion);
  assert.equal(run(mutate((p) => (p[0] = 0x44), false)), Drop.BadHeaderLength);
  assert.equal(run(mutate((p) => (p[0] = 0x4f), false)), Drop.BadHeaderLength); // 60-byte header in a 57-byte packet
  assert.equal(run(mutate((p) => (p[3] = 58))), Drop.BadTotalLength);
  assert.equal(run(mutate((p) => (p[3] = 19))), Drop.BadHeaderLength);
  assert.equal(run(mutate((p) => (p[11] ^= 1), false)), Drop.BadIpChecksum);
  assert.equal(run(mutate((p) => (p[9] = 47))), Drop.UnsupportedProtocol); // GRE
  assert.equal(run(mutate((p) => (p[25] = 7))), Drop.BadTotalLength); // UDP length 7 < 8
  assert.equal(run(mutate((p) => (p[25] = 38))), Drop.BadTotalLength); // UDP length beyond the IP payload
  // A bad offset/length pair from the caller is refused, not read.
  assert.equal(inspect(DNS_QUERY, 10, DNS_QUERY.length, info), Drop.Truncated);
  assert.equal(inspect(DNS_QUERY, -1, 5, info), Drop.Truncated);
});

test('IPv4: trailing bytes after total length (Ethernet padding) are ignored', () => {
  const padded = new Uint8Array(DNS_QUERY.length + 7);
  padded.set(DNS_QUERY);
  padded.fill(0xee, DNS_QUERY.length);
  assert.equal(run(padded), Drop.None);
  assert.equal(info.ipLength, 57);
  assert.equal(info.l4Length, 37);
});

test('IPv4: options are skipped and the header checksum covers them', () => {
  const p = buildUdp({ src: '10.0.0.1', dst: '10.0.0.2', options: Uint8Array.of(0x94, 4, 0, 0, 1) }, { srcPort: 7, dstPort: 9 });
  assert.equal(run(p), Drop.None);
  assert.equal(info.l4Offset, 28);
  assert.equal(info.srcPort, 7);
  p[22] ^= 0x80;
  assert.equal(run(p), Drop.BadIpChecksum);
});

test('IPv4 fragments: first fragment parsed, later fragments carry no transport header, bad geometry dropped', () => {
  const ip = { src: '10.0.0.1', dst: '10.0.0.2', id: 0x4242 };
  const udp = buildUdp(ip, { srcPort: 1000, dstPort: 2000, payload: new Uint8Array(40) });
  const l4 = udp.subarray(20);
  const first = buildIp({ ...ip, moreFragments: true }, IPPROTO_UDP, l4.subarray(0, 24));
  assert.equal(run(first), Drop.None);
  assert.deepEqual([info.isFragment, info.moreFragments, info.fragmentOffset, info.fragmentId], [true, true, 0, 0x4242]);
  assert.deepEqual([info.hasTransportHeader, info.srcPort, info.dstPort], [true, 1000, 2000]);

  const last = buildIp({ ...ip, fragmentOffset: 24 }, IPPROTO_UDP, l4.subarray(24));
  assert.equal(run(last), Drop.None);
  assert.deepEqual([info.isFragment, info.moreFragments, info.fragmentOffset], [true, false, 24]);
  assert.deepEqual([info.hasTransportHeader, info.srcPort, info.dstPort, info.l4Offset, info.l4Length], [false, 0, 0, 20, 24]);

  // MF with a payload that is not a multiple of 8
  assert.equal(run(buildIp({ ...ip, moreFragments: true }, IPPROTO_UDP, l4.subarray(0, 20))), Drop.BadFragment);
  // offset + length beyond 65535
  assert.equal(run(buildIp({ ...ip, fragmentOffset: 65528 }, IPPROTO_UDP, new Uint8Array(16))), Drop.BadFragment);
  // a first TCP fragment that does not hold the whole TCP header (RFC 1858 tiny fragment)
  const tcp = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_SYN }).subarray(20);
  assert.equal(run(buildIp({ ...ip, moreFragments: true }, IPPROTO_TCP, tcp.subarray(0, 8))), Drop.BadFragment);
  // a TCP fragment at offset 8 (RFC 1858 overlapping fragment)
  assert.equal(run(buildIp({ ...ip, fragmentOffset: 8 }, IPPROTO_TCP, new Uint8Array(16))), Drop.BadFragment);
  // a first UDP fragment shorter than the UDP header
  assert.equal(run(buildIp({ ...ip, moreFragments: true }, IPPROTO_UDP, new Uint8Array(0))), Drop.BadFragment);
  // a non-first fragment of an unsupported protocol
  assert.equal(run(buildIp({ ...ip, fragmentOffset: 64 }, 47, new Uint8Array(16))), Drop.UnsupportedProtocol);
});

// --- IPv6 ---------------------------------------------------------------------------------------

const ip6 = { src: '2001:db8::1', dst: '2001:db8::2' };

test('IPv6: payload length and extension chain are validated', () => {
  const ok = buildUdp(ip6, { srcPort: 1, dstPort: 2 });
  assert.equal(run(ok.subarray(0, 39)), Drop.Truncated);
  const long = ok.slice();
  long[5] += 1;
  assert.equal(run(long), Drop.BadTotalLength);

  const dest: Ipv6Extension = { type: 'destination' };
  const eight = buildUdp({ ...ip6, extensions: Array(8).fill(dest) }, { srcPort: 1, dstPort: 2 });
  assert.equal(run(eight), Drop.None);
  assert.equal(info.l4Offset, 40 + 8 * 8);
  const nine = buildUdp({ ...ip6, extensions: Array(9).fill(dest) }, { srcPort: 1, dstPort: 2 });
  assert.equal(run(nine), Drop.BadExtensionHeader);

  const hopSecond = buildUdp({ ...ip6, extensions: [dest, { type: 'hopByHop' }] }, { srcPort: 1, dstPort: 2 });
  assert.equal(run(hopSecond), Drop.BadExtensionHeader);

  const twoFragments = buildUdp({ ...ip6, extensions: [{ type: 'fragment' }, { type: 'fragment' }] }, { srcPort: 1, dstPort: 2 });
  assert.equal(run(twoFragments), Drop.BadExtensionHeader);

  // an extension header whose length runs past the packet
  const overrun = buildIp({ ...ip6, extensions: [{ type: 'destination' }] }, 59, new Uint8Array(0));
  overrun[41] = 3;
  assert.equal(run(overrun), Drop.BadExtensionHeader);
  // a chain cut short: next header says destination options but no bytes follow
  assert.equal(run(buildIp(ip6, 60, new Uint8Array(0))), Drop.BadExtensionHeader);

  const ah = buildUdp({ ...ip6, extensions: [{ type: 'ah', data: new Uint8Array(20) }] }, { srcPort: 5, dstPort: 6 });
  assert.equal(run(ah), Drop.None);
  assert.equal(info.l4Offset, 40 + 24);
  assert.equal(info.srcPort, 5);

  assert.equal(run(buildIp(ip6, 50, new Uint8Array(16))), Drop.UnsupportedProtocol); // ESP
  assert.equal(run(buildIp(ip6, 59, new Uint8Array(0))), Drop.UnsupportedProtocol); // no next header
  assert.equal(run(buildIp(ip6, IPPROTO_ICMP, new Uint8Array(8))), Drop.UnsupportedProtocol); // ICMPv4 in IPv6
});

test('IPv6: an atomic fragment is not a fragment (RFC 6946); a later fragment has no transport header', () => {
  const atomic = buildTcp({ ...ip6, extensions: [{ type: 'fragment', id: 99 }] }, { srcPort: 3, dstPort: 4 });
  assert.equal(run(atomic), Drop.None);
  assert.deepEqual([info.isFragment, info.fragmentId, info.hasTransportHeader, info.srcPort], [false, 99, true, 3]);
  const later = buildIp({ ...ip6, extensions: [{ type: 'fragment', offset: 1024, more: true, id: 7 }] }, IPPROTO_TCP, new Uint8Array(64));
  assert.equal(run(later), Drop.None);
  assert.deepEqual([info.isFragment, info.fragmentOffset, info.moreFragments, info.hasTransportHeader], [true, 1024, true, false]);
});

// --- TCP ----------------------------------------------------------------------------------------

test('TCP: data offset bounds, unsigned fields, options only on SYN, malformed options tolerated', () => {
  const ip = { src: '10.0.0.1', dst: '10.0.0.2' };
  const base = buildTcp(ip, { srcPort: 1, dstPort: 2, seq: 0xffffffff, ack: 0x80000000, window: 0xffff, flags: TCP_ACK_FLAG, payload: new Uint8Array(5) });
  assert.equal(run(base), Drop.None);
  assert.deepEqual([info.tcpSeq, info.tcpAck, info.tcpWindow, info.tcpPayloadLength], [0xffffffff, 0x80000000, 0xffff, 5]);
  const small = base.slice();
  small[32] = 0x40;
  assert.equal(run(small), Drop.BadHeaderLength);
  const big = base.slice();
  big[32] = 0x70; // 28 bytes > 25 available
  assert.equal(run(big), Drop.BadHeaderLength);
  assert.equal(run(base.subarray(0, 39).slice()), Drop.BadTotalLength);

  const opts = { mss: 1400, windowScale: 9 };
  const notSyn = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_ACK_FLAG, options: opts });
  assert.equal(run(notSyn), Drop.None);
  assert.deepEqual([info.tcpMss, info.tcpMssOffset, info.tcpWindowScale], [0, 0, -1]);

  const clamp = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { windowScale: 15 } });
  assert.equal(run(clamp), Drop.None);
  assert.equal(info.tcpWindowScale, 14);

  // MSS, then an option with length 0: parsing stops, MSS stands, no drop.
  const zeroLength = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { mss: 536, raw: Uint8Array.of(8, 0, 3, 3, 7) } });
  assert.equal(run(zeroLength), Drop.None);
  assert.deepEqual([info.tcpMss, info.tcpWindowScale], [536, -1]);
  // An option running past the header end.
  const overrun = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { raw: Uint8Array.of(1, 3, 3, 7, 2, 9, 5, 0xb4) } });
  assert.equal(run(overrun), Drop.None);
  assert.deepEqual([info.tcpMss, info.tcpWindowScale], [0, 7]);
  // A lone kind byte at the very end of the option space.
  const lone = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { raw: Uint8Array.of(1, 1, 1, 2) } });
  assert.equal(run(lone), Drop.None);
  // MSS with a wrong length is not taken; odd-aligned MSS (after one NOP) is.
  const wrongLength = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { raw: Uint8Array.of(2, 3, 5, 1) } });
  assert.equal(run(wrongLength), Drop.None);
  assert.equal(info.tcpMss, 0);
  const odd = buildTcp(ip, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { raw: Uint8Array.of(1, 2, 4, 5, 0xb4) } });
  assert.equal(run(odd), Drop.None);
  assert.deepEqual([info.tcpMss, info.tcpMssOffset], [1460, 20 + 20 + 3]);

  // Fields from a previous SYN never leak into the next packet.
  run(TCP_SYN_FIXTURE);
  run(DNS_QUERY);
  assert.deepEqual([info.tcpMss, info.tcpMssOffset, info.tcpWindowScale, info.tcpFlags], [0, 0, -1, 0]);
});

// --- ICMP ---------------------------------------------------------------------------------------

test('ICMP queries use the identifier as a port: requests in srcPort, replies in dstPort', () => {
  const ip = { src: '10.0.0.1', dst: '10.0.0.2' };
  run(buildIcmpEcho(ip, { type: 'request', id: 77, seq: 1 }));
  assert.deepEqual([info.srcPort, info.dstPort, info.icmpId, info.icmpType], [77, 0, 77, 8]);
  run(buildIcmpEcho(ip, { type: 'reply', id: 77, seq: 1 }));
  assert.deepEqual([info.srcPort, info.dstPort, info.icmpId, info.icmpType], [0, 77, 77, 0]);
  assert.equal(run(buildIcmp(ip, { type: 13, code: 0, rest: 0x00420001, body: new Uint8Array(12) })), Drop.None);
  assert.deepEqual([info.srcPort, info.dstPort], [0x42, 0]);
  assert.equal(run(buildIcmp(ip, { type: 14, code: 0, rest: 0x00420001, body: new Uint8Array(12) })), Drop.None);
  assert.deepEqual([info.srcPort, info.dstPort], [0, 0x42]);
  run(buildIcmpEcho(ip6, { type: 'reply', id: 9 }));
  assert.deepEqual([info.srcPort, info.dstPort, info.icmpType], [0, 9, 129]);
});

test('ICMP: unhandled types are unsupported, short messages and bad quotes are BadIcmp', () => {
  const ip = { src: '10.0.0.1', dst: '10.0.0.2' };
  assert.equal(run(buildIcmp(ip, { type: 5, code: 1, body: DNS_QUERY.subarray(0, 28) })), Drop.UnsupportedProtocol); // redirect
  assert.equal(run(buildIcmp(ip, { type: 4, code: 0, body: DNS_QUERY.subarray(0, 28) })), Drop.UnsupportedProtocol); // source quench
  assert.equal(run(buildIcmp(ip, { type: 9, code: 0 })), Drop.UnsupportedProtocol); // router advertisement
  assert.equal(run(buildIcmp(ip6, { type: 134, code: 0 })), Drop.UnsupportedProtocol); // ND router advertisement
  assert.equal(run(buildIcmp(ip6, { type: 5, code: 0 })), Drop.UnsupportedProtocol); // unassigned error type
  assert.equal(run(buildIp(ip, IPPROTO_ICMP, new Uint8Array(7))), Drop.BadIcmp);

  const err = (embedded: Uint8Array) => run(buildIcmp(ip, { type: 11, code: 0, body: embedded }));
  assert.equal(err(DNS_QUERY.subarray(0, 28)), Drop.None);
  assert.equal(err(DNS_QUERY.subarray(0, 27)), Drop.BadIcmp); // 7 bytes of UDP
  assert.equal(err(DNS_QUERY.subarray(0, 19)), Drop.BadIcmp); // header cut
  assert.equal(err(new Uint8Array(0)), Drop.BadIcmp);
  assert.equal(err(ICMPV6_ECHO_REQUEST), Drop.BadIcmp); // IPv6 inside ICMPv4
  const fragment = buildIp({ ...ip, fragmentOffset: 64 }, IPPROTO_UDP, new Uint8Array(16));
  assert.equal(err(fragment), Drop.BadIcmp); // quoted non-first fragment: no ports
  const gre = buildIp(ip, 47, new Uint8Array(16));
  assert.equal(err(gre), Drop.UnsupportedProtocol);
  const errorAboutError = buildIcmpError(ip, { type: 3, code: 1 }, ICMP_PORT_UNREACHABLE);
  assert.equal(run(errorAboutError), Drop.BadIcmp);
  const aboutRedirect = buildIcmpError(ip, { type: 3, code: 1 }, buildIcmp(ip, { type: 5, code: 0, body: new Uint8Array(28) }));
  assert.equal(run(aboutRedirect), Drop.BadIcmp);
  const aboutRouterAdvert = buildIcmpError(ip, { type: 3, code: 1 }, buildIcmp(ip, { type: 9, code: 0 }));
  assert.equal(run(aboutRouterAdvert), Drop.UnsupportedProtocol);
  // The quoted header's checksum is not verified (routers quote what they saw).
  const quoted = DNS_QUERY.slice(0, 28);
  quoted[10] ^= 0xff;
  assert.equal(err(quoted), Drop.None);

  const err6 = (embedded: Uint8Array) => run(buildIcmp(ip6, { type: 1, code: 4, body: embedded }));
  assert.equal(err6(ICMPV6_ECHO_REQUEST), Drop.None);
  assert.deepEqual([info.innerProtocol, info.innerSrcPort, info.innerDstPort], [IPPROTO_ICMPV6, 0x1234, 0]);
  assert.equal(err6(ICMPV6_ECHO_REQUEST.subarray(0, 47)), Drop.BadIcmp);
  assert.equal(err6(DNS_QUERY), Drop.BadIcmp); // IPv4 inside ICMPv6
  assert.equal(err6(ICMPV6_PACKET_TOO_BIG.subarray(0, 200)), Drop.BadIcmp); // error about an error
  assert.equal(err6(IPV6_UDP_FRAGMENT_LAST.subarray(0, 200)), Drop.BadIcmp); // quoted non-first fragment
  const quotedExt = buildUdp({ ...ip6, extensions: [{ type: 'hopByHop' }, { type: 'destination' }] }, { srcPort: 11, dstPort: 12 });
  assert.equal(err6(quotedExt), Drop.None);
  assert.deepEqual([info.innerL4Offset, info.innerSrcPort, info.innerDstPort], [48 + 40 + 16, 11, 12]);
  assert.equal(err6(quotedExt.subarray(0, 60)), Drop.BadIcmp); // chain cut inside the quote
});

// --- round trip ---------------------------------------------------------------------------------

test('builder -> inspect round trip for random queries (both families, TCP/UDP/ICMP)', () => {
  fc.assert(
    fc.property(queryCaseArb, ({ ip, t }) => {
      const bytes = buildTransport(ip, t);
      const p = parsePacket(bytes);
      assert.equal(p.drop, Drop.None);
      const family = ipFamily(ip);
      assert.equal(p.family, family);
      assert.equal(p.ipLength, bytes.length);
      assert.equal(p.ttl, family === 4 ? ip.family === 4 && ip.ttl : ip.family === 6 && ip.hopLimit);
      assert.equal(p.hasTransportHeader, true);
      if (t.kind === 'udp') {
        assert.equal(p.protocol, IPPROTO_UDP);
        assert.deepEqual([p.srcPort, p.dstPort], [t.udp.srcPort, t.udp.dstPort]);
      } else if (t.kind === 'tcp') {
        const tcp = t.tcp;
        assert.equal(p.protocol, IPPROTO_TCP);
        assert.deepEqual([p.srcPort, p.dstPort], [tcp.srcPort, tcp.dstPort]);
        assert.deepEqual([p.tcp!.seq, p.tcp!.ack, p.tcp!.flags, p.tcp!.window], [tcp.seq, tcp.ack, tcp.flags, tcp.window]);
        assert.equal(p.tcp!.payloadLength, tcp.payload!.length);
        const syn = (tcp.flags! & TCP_SYN) !== 0;
        assert.equal(p.tcp!.mss, syn && tcp.options!.mss !== undefined ? tcp.options!.mss : 0);
        const ws = tcp.options!.windowScale;
        assert.equal(p.tcp!.windowScale, syn && ws !== undefined ? Math.min(ws, 14) : -1);
      } else {
        assert.equal(p.protocol, family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6);
        const request = t.echo.type === 'request';
        assert.deepEqual([p.srcPort, p.dstPort], request ? [t.echo.id, 0] : [0, t.echo.id]);
        assert.equal(p.icmp!.id, t.echo.id);
      }
    }),
    { numRuns: 300 },
  );
});

test('builder -> inspect round trip for random ICMP errors: the quoted packet is parsed into inner*', () => {
  fc.assert(
    fc.property(errorCaseArb, (c) => {
      const bytes = buildError(c);
      const p = parsePacket(bytes);
      assert.equal(p.drop, Drop.None);
      assert.equal(p.icmp!.isError, true);
      assert.deepEqual([p.srcPort, p.dstPort], [0, 0]);
      const inner = parsePacket(buildTransport(c.innerIp, c.inner));
      assert.equal(p.inner!.family, inner.family);
      assert.equal(p.inner!.src, inner.src);
      assert.equal(p.inner!.dst, inner.dst);
      assert.equal(p.inner!.protocol, inner.protocol);
      assert.equal(p.inner!.srcPort, inner.srcPort);
      assert.equal(p.inner!.dstPort, inner.dstPort);
      assert.equal(p.inner!.l4Available, c.error.quote === 'max' ? inner.l4Length : 8);
    }),
    { numRuns: 300 },
  );
});

// --- robustness ---------------------------------------------------------------------------------

/** The fields of a PacketInfo with offsets made relative to the packet start, for comparing placements. */
function snapshot(i: PacketInfo, base: number): unknown[] {
  const rel = (v: number) => (v === 0 ? 0 : v - base);
  return [
    i.family, rel(i.l3Offset), i.ipLength, i.protocol, rel(i.l4Offset), i.l4Length, i.ttl, rel(i.ttlOffset), [...i.addr],
    i.srcPort, i.dstPort, i.isFragment, i.fragmentOffset, i.moreFragments, i.fragmentId, i.dontFragment, i.hasTransportHeader,
    i.tcpFlags, i.tcpSeq, i.tcpAck, i.tcpWindow, i.tcpHeaderLength, i.tcpPayloadLength, i.tcpWindowScale, i.tcpMss, rel(i.tcpMssOffset),
    i.icmpType, i.icmpCode, i.icmpId, i.isIcmpError,
    i.innerFamily, rel(i.innerL3Offset), i.innerProtocol, rel(i.innerL4Offset), i.innerL4Available,
    i.innerFamily ? [...i.innerAddr] : [], i.innerSrcPort, i.innerDstPort,
  ];
}

// Every assert.ok here carries a message: without one, Node 20 re-parses the (tsx-transformed) source to describe the
// failed expression and can hang instead of failing.
function assertWithinBounds(i: PacketInfo, offset: number, length: number): void {
  const end = offset + length;
  const within = (v: number, size: number) => assert.ok(v >= offset && v + size <= end, `offset ${v}+${size} outside [${offset}, ${end})`);
  assert.equal(i.l3Offset, offset);
  assert.ok(i.ipLength <= length, `ipLength ${i.ipLength} > ${length}`);
  within(i.ttlOffset, 1);
  within(i.l4Offset, i.l4Length);
  assert.equal(i.l4Offset + i.l4Length, offset + i.ipLength);
  if (i.tcpMssOffset !== 0) within(i.tcpMssOffset, 2);
  if (i.hasTransportHeader && i.protocol === IPPROTO_TCP) within(i.l4Offset, i.tcpHeaderLength);
  if (i.isIcmpError) {
    assert.ok(i.innerL3Offset >= i.l4Offset + 8, `inner header at ${i.innerL3Offset} inside the ICMP header`);
    assert.ok(i.innerL4Available >= 8, `only ${i.innerL4Available} inner transport bytes`);
    within(i.innerL4Offset, i.innerL4Available);
    assert.equal(i.innerL4Offset + i.innerL4Available, i.l4Offset + i.l4Length);
  }
}

const scratch = new PacketInfo();

/** inspect on an exact-size view, on copies inside sentinel-filled buffers, and through a read guard must agree. */
function checkPlacements(bytes: Uint8Array): void {
  const view = bytes.slice();
  const dropView = inspect(view, 0, view.length, info);
  const expected = snapshot(info, 0);
  if (dropView === Drop.None) assertWithinBounds(info, 0, view.length);
  for (const sentinel of [0x00, 0xff, 0x45]) {
    const pad = 37;
    const big = new Uint8Array(pad + bytes.length + pad).fill(sentinel);
    big.set(bytes, pad);
    const drop = inspect(big, pad, bytes.length, scratch);
    assert.equal(drop, dropView);
    if (sentinel === 0) assert.equal(inspect(readGuard(big, pad, pad + bytes.length), pad, bytes.length, scratch), drop);
    if (drop === Drop.None) {
      assertWithinBounds(scratch, pad, bytes.length);
      assert.deepEqual(snapshot(scratch, pad), expected);
    }
  }
}

test('random bytes: inspect never throws and never reads outside its window', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x00), (bytes, first) => {
      // Half the inputs start with a plausible version/IHL byte so they get past the first check.
      if (bytes.length > 0 && (bytes[bytes.length - 1] & 1)) bytes[0] = first;
      checkPlacements(bytes);
    }),
    { numRuns: 1000 },
  );
});

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'shrink'; at: number }
  | { kind: 'length'; at: number; value: number };

/** Cuts an IP packet to n bytes and makes its length field agree, so the cut reaches the inner parsers. */
function shrink(p: Uint8Array, n: number): Uint8Array {
  const out = p.slice(0, n);
  if (n >= 20 && out[0] >>> 4 === 4) {
    out[2] = n >>> 8;
    out[3] = n & 0xff;
  } else if (n >= 40 && out[0] >>> 4 === 6) {
    out[4] = (n - 40) >>> 8;
    out[5] = (n - 40) & 0xff;
  }
  return out;
}

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('shrink' as const), at: fc.nat() }),
  // Length-like fields: IPv4 total length / IHL, IPv6 payload length, UDP length, TCP data offset, ext lengths...
  fc.record({ kind: fc.constant('length' as const), at: fc.constantFrom(0, 2, 3, 4, 5, 6, 24, 25, 32, 41, 44, 45, 52, 60, 61), value: fc.integer({ min: 0, max: 255 }) }),
);

function mutate(bytes: Uint8Array, mutations: Mutation[], fixChecksum: boolean): Uint8Array {
  let p: Uint8Array = bytes.slice();
  for (const m of mutations) {
    if (p.length === 0) break;
    if (m.kind === 'flip') p[m.at % p.length] ^= 1 << m.bit;
    else if (m.kind === 'truncate') p = p.slice(0, m.at % (p.length + 1));
    else if (m.kind === 'shrink') p = shrink(p, m.at % (p.length + 1));
    else if (m.at < p.length) p[m.at] = m.value;
  }
  // Keep the IPv4 header checksum valid half the time, so mutations reach the transport and ICMP parsers.
  if (fixChecksum && p.length >= 20 && p[0] >>> 4 === 4 && (p[0] & 15) * 4 <= p.length && (p[0] & 15) >= 5) fixIpv4Checksum(p);
  return p;
}

const validPacketArb = fc.oneof(
  queryCaseArb.map((c) => buildTransport(c.ip, c.t)),
  errorCaseArb.map(buildError),
  fc.constantFrom(DNS_QUERY, TCP_SYN_FIXTURE, ICMP_PORT_UNREACHABLE, ICMP_FRAG_NEEDED, ICMPV6_ECHO_REQUEST, IPV6_UDP_FRAGMENT_LAST),
);

test('mutated valid packets (bit flips, truncation, corrupted lengths): never throws, stays in bounds', () => {
  fc.assert(
    fc.property(validPacketArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.boolean(), (bytes, mutations, fix) => {
      checkPlacements(mutate(bytes, mutations, fix));
    }),
    { numRuns: 1500 },
  );
});

test('every prefix of every fixture is handled without reading past it (as is, and with its length field adjusted)', () => {
  const ptb = shrink(ICMPV6_PACKET_TOO_BIG, 200);
  const fixtures = [DNS_QUERY, TCP_SYN_FIXTURE, ICMP_PORT_UNREACHABLE, ICMP_FRAG_NEEDED, ICMPV6_ECHO_REQUEST, ptb, IPV6_UDP_FRAGMENT_FIRST.subarray(0, 100)];
  const echo4 = buildIcmpEcho({ src: '10.0.0.1', dst: '10.0.0.2' }, { type: 'request', id: 1 });
  const ext = buildTcp({ ...ip6, extensions: [{ type: 'hopByHop' }, { type: 'routing' }, { type: 'fragment' }, { type: 'ah' }] }, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { mss: 1 } });
  // SYNs whose last option is cut by the end of the header (and of the packet): kind only, MSS, window scale.
  const cutOptions = [[1, 1, 1, 2], [1, 1, 2, 4], [1, 1, 3, 3]].map((raw) =>
    buildTcp({ src: '10.0.0.1', dst: '10.0.0.2' }, { srcPort: 1, dstPort: 2, flags: TCP_SYN, options: { raw: Uint8Array.from(raw) } }),
  );
  for (const f of [...fixtures, echo4, ext, ...cutOptions]) {
    for (let n = 0; n <= f.length; n++) {
      checkPlacements(f.subarray(0, n));
      const cut = shrink(f, n);
      if (cut[0] >>> 4 === 4 && n >= 20) fixIpv4Checksum(cut);
      checkPlacements(cut);
    }
  }
});
