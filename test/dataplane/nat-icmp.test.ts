/**
 * Source NAT toward the Internet (RFC 4787), the data-center clash rewrite, hairpinning, and ICMP
 * errors translated back to the right site (RFC 5508).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { buildIcmpEcho, buildIcmpError, buildTcp, buildUdp, parsePacket } from '../../src/wire/build.js';
import { icmpv4ChecksumFull } from '../../src/wire/checksum.js';
import { TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, twoSites } from '../support/topology.js';

const ROUTER = '192.0.2.1';

/** The ICMPv4 checksum field holds the value computed over the message. */
function icmpChecksumOk(bytes: Uint8Array): boolean {
  const p = parsePacket(bytes);
  const stored = (bytes[p.l4Offset + 2] << 8) | bytes[p.l4Offset + 3];
  return icmpv4ChecksumFull(bytes, p.l4Offset, p.l4Length) === stored;
}

test('endpoint-independent mapping: one external endpoint per internal endpoint, whatever the destination', () => {
  const edge = new PipelineRig(twoSites());
  const first = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 53 }));
  const second = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: '203.0.113.99' }, { srcPort: 5000, dstPort: 123 }));
  assert.equal(first.parsed.srcPort, second.parsed.srcPort);
  assert.equal(first.parsed.src, second.parsed.src);
  // Unsolicited traffic to the mapping from the Internet is filtered (address-and-port dependent).
  const unsolicited = edge.send(INTERNET, buildUdp({ src: '203.0.113.200', dst: POOL }, { srcPort: 999, dstPort: first.parsed.srcPort }));
  assert.equal(unsolicited.drop, Drop.NoNatMapping);
  const stray = edge.send(INTERNET, buildUdp({ src: SERVER, dst: '198.51.100.77' }, { srcPort: 53, dstPort: 5000 }));
  assert.equal(stray.drop, Drop.ReplyNoFlow);
});

test('ICMP port unreachable for a NAT\'ed datagram reaches the right site, inner header restored', () => {
  const edge = new PipelineRig(twoSites());
  const query = () => buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 9 });
  const outA = edge.send(A_PRIMARY, query());
  const outB = edge.send(B_PRIMARY, query());
  for (const [out, site] of [[outB, B_PRIMARY], [outA, A_PRIMARY]] as const) {
    const flowsBefore = edge.pipeline.flows4.size;
    const error = edge.send(INTERNET, buildIcmpError({ src: SERVER, dst: POOL }, { type: 3, code: 3 }, out.bytes));
    assert.equal(error.hop, site);
    assert.equal(error.parsed.dst, HOST);
    assert.equal(error.parsed.src, SERVER);
    assert.deepEqual(
      { src: error.parsed.inner!.src, dst: error.parsed.inner!.dst, srcPort: error.parsed.inner!.srcPort, dstPort: error.parsed.inner!.dstPort },
      { src: HOST, dst: SERVER, srcPort: 40000, dstPort: 9 },
    );
    assert.ok(icmpChecksumOk(error.bytes), 'ICMP checksum recomputed');
    assert.equal(error.parsed.drop, Drop.None);
    assert.equal(edge.pipeline.flows4.size, flowsBefore, 'an ICMP error creates no flow');
  }
});

test('fragmentation needed and time exceeded from a router on the path, for TCP and for a clashing data-center flow', () => {
  const edge = new PipelineRig(twoSites());
  const syn = edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: SERVER }, { srcPort: 33000, dstPort: 443, seq: 1, flags: TCP_SYN }));
  const table = edge.pipeline.flows4;
  const deadlineBefore = table.deadline(0);
  edge.now += 5000;
  const fragNeeded = edge.send(INTERNET, buildIcmpError({ src: ROUTER, dst: POOL }, { type: 3, code: 4, mtu: 1400 }, syn.bytes));
  assert.equal(fragNeeded.hop, A_PRIMARY);
  assert.equal(fragNeeded.parsed.src, ROUTER, 'the router\'s own address is not translated');
  assert.equal(fragNeeded.parsed.inner!.srcPort, 33000);
  assert.equal(fragNeeded.parsed.inner!.src, HOST);
  assert.equal(fragNeeded.bytes[fragNeeded.parsed.l4Offset + 6] * 256 + fragNeeded.bytes[fragNeeded.parsed.l4Offset + 7], 1400, 'next-hop MTU kept');
  assert.ok(icmpChecksumOk(fragNeeded.bytes), 'ICMP checksum of the translated frag-needed verifies');
  assert.equal(table.deadline(0), deadlineBefore, 'an ICMP error never refreshes a flow');
  assert.equal(table.packets(0, 1), 0, 'nor counts toward it');

  // Data center: A and B send the identical tuple; B's is port-rewritten; a router's time exceeded
  // about B's packet must come back to B with B's original port inside.
  edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 50000, dstPort: 8080 }));
  const outB = edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 50000, dstPort: 8080 }));
  assert.notEqual(outB.parsed.srcPort, 50000);
  const exceeded = edge.send(DC_ONRAMP, buildIcmpError({ src: '172.16.0.1', dst: HOST }, { type: 11, code: 0 }, outB.bytes));
  assert.equal(exceeded.hop, B_PRIMARY);
  assert.equal(exceeded.parsed.inner!.srcPort, 50000);
  assert.equal(exceeded.parsed.dst, HOST);
  assert.ok(icmpChecksumOk(exceeded.bytes), 'ICMP checksum of the translated time-exceeded verifies');
});

test('forged ICMP errors that match no flow are dropped; errors from another site are refused', () => {
  const edge = new PipelineRig(twoSites());
  const out = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53 }));
  const invented = buildUdp({ src: POOL, dst: SERVER }, { srcPort: 1234, dstPort: 53 });
  const forged = edge.send(INTERNET, buildIcmpError({ src: SERVER, dst: POOL }, { type: 3, code: 3 }, invented));
  assert.equal(forged.drop, Drop.IcmpNoFlow);
  // Site B quoting A's translated datagram: it is not B's flow's reply direction.
  const fromB = edge.send(B_PRIMARY, buildIcmpError({ src: SERVER, dst: POOL }, { type: 3, code: 3 }, out.bytes));
  assert.equal(fromB.hop, -1);
  assert.equal(edge.pipeline.flows4.size, 1);
});

test('data center: identical 5-tuples from two sites both work; only the later one is port-rewritten', () => {
  const edge = new PipelineRig(twoSites());
  const a = edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 40000, dstPort: 443, seq: 100, flags: TCP_SYN }));
  const b = edge.send(B_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 40000, dstPort: 443, seq: 900, flags: TCP_SYN }));
  assert.equal(a.hop, DC_ONRAMP);
  assert.equal(b.hop, DC_ONRAMP);
  assert.equal(a.parsed.src, HOST);
  assert.equal(a.parsed.srcPort, 40000, 'the first flow is untouched');
  assert.equal(b.parsed.src, HOST, 'no address translation toward the data center');
  assert.notEqual(b.parsed.srcPort, 40000, 'the later flow gets another source port');
  assert.equal(b.parsed.drop, Drop.None);
  const toA = edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: 40000, seq: 7000, ack: 101, flags: TCP_SYN | 0x10 }));
  const toB = edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: b.parsed.srcPort, seq: 8000, ack: 901, flags: TCP_SYN | 0x10 }));
  assert.equal(toA.hop, A_PRIMARY);
  assert.equal(toB.hop, B_PRIMARY);
  assert.equal(toB.parsed.dstPort, 40000, 'restored on the way back');
  assert.equal(toB.parsed.drop, Drop.None);
  // No clash, no rewrite: a third site-A flow with another port keeps its port.
  const c = edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 40001, dstPort: 443, seq: 1, flags: TCP_SYN }));
  assert.equal(c.parsed.srcPort, 40001);
});

test('ICMP echo through NAT: both sites ping with the same identifier and each gets its replies', () => {
  const edge = new PipelineRig(twoSites());
  const ping = () => buildIcmpEcho({ src: HOST, dst: SERVER }, { type: 'request', id: 77, seq: 1 });
  const a = edge.send(A_PRIMARY, ping());
  const b = edge.send(B_PRIMARY, ping());
  assert.equal(a.parsed.icmp!.id, 77);
  assert.notEqual(b.parsed.icmp!.id, 77);
  for (const [out, site] of [[b, B_PRIMARY], [a, A_PRIMARY]] as const) {
    const reply = edge.send(INTERNET, buildIcmpEcho({ src: SERVER, dst: POOL }, { type: 'reply', id: out.parsed.icmp!.id, seq: 1 }));
    assert.equal(reply.hop, site);
    assert.equal(reply.parsed.icmp!.id, 77);
    assert.equal(reply.parsed.dst, HOST);
    assert.ok(icmpChecksumOk(reply.bytes), 'ICMP checksum of the translated echo reply verifies');
  }
  // An unsolicited echo reply starts nothing.
  assert.equal(edge.send(A_PRIMARY, buildIcmpEcho({ src: HOST, dst: SERVER }, { type: 'reply', id: 5 })).drop, Drop.ReplyNoFlow);
});

test('hairpinning: a site reaches another site\'s mapped endpoint through the pool address (RFC 4787 REQ-9), once that site has sent to it (REQ-8)', () => {
  const edge = new PipelineRig(twoSites());
  const a = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 6000, dstPort: 3478 }));
  // B learns its own external endpoint the way STUN does: from a packet to the Internet.
  const b = edge.send(B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: SERVER }, { srcPort: 7000, dstPort: 3478 }));
  const bExternalPort = b.parsed.srcPort;
  // A's mapping filters by address and port: A never sent to B's external endpoint, so B's packet stops here.
  const early = edge.send(B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: POOL }, { srcPort: 7000, dstPort: a.parsed.srcPort }));
  assert.equal(early.hop, -1);
  assert.equal(early.drop, Drop.HairpinFiltered);
  // A sends to B's external endpoint: B sent to A's (its packet opened B's filter), so it passes.
  const back = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: POOL }, { srcPort: 6000, dstPort: bExternalPort }));
  assert.equal(back.hop, B_PRIMARY);
  assert.equal(back.parsed.dst, '10.0.1.20');
  assert.equal(back.parsed.dstPort, 7000);
  assert.equal(back.parsed.src, POOL, 'the source is A\'s external endpoint ("external source IP address and port")');
  assert.equal(back.parsed.srcPort, a.parsed.srcPort);
  assert.equal(back.parsed.drop, Drop.None);
  // Now A has contacted B's mapping: B's packets to A pass.
  const toA = edge.send(B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: POOL }, { srcPort: 7000, dstPort: a.parsed.srcPort }));
  assert.equal(toA.hop, A_PRIMARY);
  assert.equal(toA.parsed.dst, HOST);
  assert.equal(toA.parsed.dstPort, 6000);
  assert.equal(toA.parsed.src, POOL, 'the source is B\'s external endpoint');
  assert.equal(toA.parsed.srcPort, bExternalPort);
});

test('NAT66 toward the Internet and ICMPv6 packet-too-big back to the right site', () => {
  const edge = new PipelineRig(twoSites());
  const v6host = 'fd00:1::10';
  const outA = edge.send(A_PRIMARY, buildUdp({ src: v6host, dst: '2001:db8:5::1' }, { srcPort: 4444, dstPort: 53 }));
  const outB = edge.send(B_PRIMARY, buildUdp({ src: v6host, dst: '2001:db8:5::1' }, { srcPort: 4444, dstPort: 53 }));
  assert.equal(outA.parsed.src, '2001:db8:ee::1');
  assert.notEqual(outB.parsed.srcPort, outA.parsed.srcPort);
  const ptb = edge.send(INTERNET, buildIcmpError({ src: '2001:db8:ff::1', dst: '2001:db8:ee::1' }, { type: 2, code: 0, mtu: 1280 }, outB.bytes));
  assert.equal(ptb.hop, B_PRIMARY);
  assert.equal(ptb.parsed.dst, v6host);
  assert.equal(ptb.parsed.inner!.src, v6host);
  assert.equal(ptb.parsed.inner!.srcPort, 4444);
  assert.equal(ptb.parsed.drop, Drop.None);
  const reply = edge.send(INTERNET, buildUdp({ src: '2001:db8:5::1', dst: '2001:db8:ee::1' }, { srcPort: 53, dstPort: outA.parsed.srcPort }));
  assert.equal(reply.hop, A_PRIMARY);
  assert.equal(reply.parsed.dst, v6host);
});

test('firewall: the first matching rule decides at setup and its id is stored in the flow', async () => {
  const { Firewall } = await import('../../src/policy/firewall.js');
  const edge = new PipelineRig(twoSites());
  edge.pipeline.setFirewall(new Firewall([
    { id: 7, action: 'deny', sites: [2], protocols: [17], dstPorts: [[53, 53]] },
    { id: 8, action: 'allow', protocols: [17] },
  ], 'deny'));
  assert.equal(edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 1, dstPort: 53 })).drop, Drop.PolicyDeny);
  const ok = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 1, dstPort: 53 }));
  assert.equal(ok.hop, INTERNET);
  assert.equal(edge.pipeline.flows4.ruleId(0), 8);
  assert.equal(edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: SERVER }, { srcPort: 1, dstPort: 80, flags: TCP_SYN })).drop, Drop.PolicyDeny, 'default deny');
  // A deny written for the internal destination also holds for hairpinned traffic to it.
  edge.pipeline.setFirewall(new Firewall([{ id: 9, action: 'deny', sites: [2], dstPrefixes: ['10.0.1.10/32'] }], 'allow'));
  assert.equal(edge.send(B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: POOL }, { srcPort: 7, dstPort: ok.parsed.srcPort })).drop, Drop.PolicyDeny);
});
