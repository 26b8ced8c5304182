/**
 * The edge is a hop (issue 13): ICMP time exceeded for packets whose TTL / hop limit runs out, sent back through the
 * onramp the packet came in on from the edge's address for it, rate limited; echo to the egress pool addresses
 * answered without flow or NAT state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { explain } from '../../src/dataplane/explain.js';
import { buildIcmpEcho, buildIcmpError, buildIp, buildTcp, buildUdp, parsePacket } from '../../src/wire/build.js';
import { icmpv4ChecksumFull } from '../../src/wire/checksum.js';
import { IPPROTO_UDP, TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, onramp, twoSites } from '../support/topology.js';

const POOL6 = '2001:db8:ee::1';

function icmpChecksumOk(bytes: Uint8Array): boolean {
  const p = parsePacket(bytes);
  return icmpv4ChecksumFull(bytes, p.l4Offset, p.l4Length) === ((bytes[p.l4Offset + 2] << 8) | bytes[p.l4Offset + 3]);
}

test('TTL 1 from two overlapping sites: each gets time exceeded back through its own onramp, no flow, no NAT', () => {
  const edge = new PipelineRig(twoSites());
  for (const site of [A_PRIMARY, B_PRIMARY]) {
    const probe = buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 45000, dstPort: 33434, payload: new Uint8Array(32) });
    const out = edge.send(site, probe);
    assert.equal(out.drop, Drop.TtlExceeded, 'the probe itself is dropped');
    const [error] = edge.generated();
    assert.equal(error.hop, site, 'the error leaves on the onramp the probe came in on');
    assert.equal(error.parsed.src, POOL, 'default source: the egress pool\'s first address');
    assert.equal(error.parsed.dst, HOST);
    assert.equal(error.parsed.ttl, 64);
    assert.deepEqual(error.parsed.icmp, { type: 11, code: 0, id: 0, isError: true });
    assert.deepEqual(error.bytes.subarray(28), probe, 'the probe quoted whole, as it arrived');
    assert.ok(icmpChecksumOk(error.bytes));
  }
  assert.equal(edge.pipeline.flows4.size, 0, 'no flow');
  assert.equal(edge.pipeline.counters.icmpTimeExceededSent, 2);
  assert.equal(edge.pipeline.counters.drops[Drop.TtlExceeded], 2, 'still counted as drops');
  // TTL 0 too (RFC 1812 section 5.3.1), TCP SYN probes (traceroute -T) and echo probes (traceroute -I) alike.
  for (const probe of [
    buildUdp({ src: HOST, dst: SERVER, ttl: 0 }, { srcPort: 1, dstPort: 2 }),
    buildTcp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 40000, dstPort: 80, flags: TCP_SYN }),
    buildIcmpEcho({ src: HOST, dst: DC_SERVER, ttl: 1 }, { type: 'request', id: 7, seq: 1 }),
  ]) {
    assert.equal(edge.send(A_PRIMARY, probe).drop, Drop.TtlExceeded);
    assert.equal(edge.generated()[0]?.hop, A_PRIMARY);
  }
  assert.equal(edge.pipeline.flows4.size, 0);
});

test('the source: icmp_source of the family, else the tunnel address, else the pool; the Internet side from the pool', () => {
  const cfg = twoSites();
  cfg.onramps = cfg.onramps.map((o) =>
    o.id === A_PRIMARY ? { ...o, icmpSource: ['192.0.2.254'], localAddress: '169.254.0.1' }
      : o.id === B_PRIMARY ? { ...o, localAddress: '169.254.0.9' } : o);
  const edge = new PipelineRig(cfg);
  const from = (port: number, packet: Uint8Array): string => {
    edge.send(port, packet);
    return edge.generated()[0]?.parsed.src ?? 'none';
  };
  assert.equal(from(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 1, dstPort: 2 })), '192.0.2.254');
  assert.equal(from(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 1, dstPort: 2 })), '169.254.0.9');
  assert.equal(from(DC_ONRAMP, buildUdp({ src: DC_SERVER, dst: HOST, ttl: 1 }, { srcPort: 1, dstPort: 2 })), POOL);
  // IPv6 from site A: no IPv6 icmp_source or tunnel address, so the pool's IPv6 address.
  assert.equal(from(A_PRIMARY, buildUdp({ src: 'fd00:1::10', dst: '2001:db8::10', hopLimit: 1 }, { srcPort: 1, dstPort: 2 })), POOL6);
  // From the Internet (a reply to a NAT mapping that would expire here): back out the egress, from the pool.
  edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL, ttl: 1 }, { srcPort: 53, dstPort: 40000 }));
  const [back] = edge.generated();
  assert.equal(back.hop, INTERNET);
  assert.equal(back.parsed.src, POOL);
  assert.equal(back.parsed.dst, SERVER);
  // No address of the family at all: counted, nothing sent.
  const bare = new PipelineRig({ ...twoSites(), egress: { addresses: [POOL] } });
  bare.send(A_PRIMARY, buildUdp({ src: 'fd00:1::10', dst: '2001:db8::10', hopLimit: 1 }, { srcPort: 1, dstPort: 2 }));
  assert.equal(bare.generated().length, 0);
  assert.equal(bare.pipeline.counters.icmpErrorsNoSource, 1);
});

test('IPv6: hop limit exceeded (type 3 code 0), quoted up to 1280 bytes, back through the onramp', () => {
  const edge = new PipelineRig(twoSites());
  const probe = buildUdp({ src: 'fd00:1::10', dst: '2001:db8::10', hopLimit: 1 }, { srcPort: 45000, dstPort: 33434, payload: new Uint8Array(1400) });
  edge.send(B_PRIMARY, probe);
  const [error] = edge.generated();
  assert.equal(error.hop, B_PRIMARY);
  assert.equal(error.bytes.length, 1280);
  assert.deepEqual(error.parsed.icmp, { type: 3, code: 0, id: 0, isError: true });
  assert.equal(error.parsed.inner?.dstPort, 33434);
});

test('never about an ICMP error, a later fragment, a non-unicast address (RFC 1812 section 4.3.2.7)', () => {
  const edge = new PipelineRig(twoSites());
  const quoted = buildUdp({ src: SERVER, dst: HOST }, { srcPort: 1, dstPort: 2 });
  const cases: Array<[string, Uint8Array]> = [
    ['an ICMP error', buildIcmpError({ src: HOST, dst: SERVER, ttl: 1 }, { type: 3, code: 3 }, quoted)],
    ['a later fragment', buildIp({ src: HOST, dst: SERVER, ttl: 1, fragmentOffset: 1480, id: 9 }, IPPROTO_UDP, new Uint8Array(100))],
    ['a multicast destination', buildUdp({ src: HOST, dst: '224.0.0.251', ttl: 1 }, { srcPort: 5353, dstPort: 5353 })],
    ['a broadcast destination', buildUdp({ src: HOST, dst: '255.255.255.255', ttl: 1 }, { srcPort: 68, dstPort: 67 })],
    ['an unspecified source', buildUdp({ src: '0.0.0.0', dst: SERVER, ttl: 1 }, { srcPort: 68, dstPort: 67 })],
    ['an IPv6 multicast destination', buildUdp({ src: 'fd00:1::10', dst: 'ff02::fb', hopLimit: 1 }, { srcPort: 5353, dstPort: 5353 })],
  ];
  for (const [what, packet] of cases) {
    assert.equal(edge.send(A_PRIMARY, packet).drop, Drop.TtlExceeded, what);
    assert.equal(edge.generated().length, 0, `no error about ${what}`);
  }
  // The first fragment does get one.
  edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 1, moreFragments: true, id: 9 }, { srcPort: 1, dstPort: 2, payload: new Uint8Array(64) }));
  assert.equal(edge.generated().length, 1);
});

test('a WireGuard peer\'s allowed IPs apply: no error toward a source the peer may not send from', () => {
  const cfg = twoSites();
  cfg.onramps = cfg.onramps.map((o) => (o.id === A_PRIMARY ? { ...o, allowedSources: ['10.0.1.0/24'] } : o));
  const edge = new PipelineRig(cfg);
  assert.equal(edge.send(A_PRIMARY, buildUdp({ src: '192.0.2.77', dst: SERVER, ttl: 1 }, { srcPort: 1, dstPort: 2 })).drop, Drop.SourceNotAllowed);
  assert.equal(edge.generated().length, 0);
});

test('rate limit: 500 expiring probes at one instant from one site get the burst; the other site\'s 10.0.1.10 its own', () => {
  const edge = new PipelineRig({ ...twoSites(), icmpErrors: { perSourceBurst: 20, perSourcePerSecond: 100, globalBurst: 1000, globalPerSecond: 1000 } });
  let sent = 0;
  for (let i = 0; i < 500; i++) {
    edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 1000 + i, dstPort: 33434 }));
    sent += edge.generated().length;
  }
  assert.equal(sent, 20);
  assert.equal(edge.pipeline.counters.icmpErrorsRateLimited, 480);
  edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 1, dstPort: 33434 }));
  assert.equal(edge.generated().length, 1, 'site B\'s 10.0.1.10 is another sender');
  edge.now += 10;
  edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 1, dstPort: 33434 }));
  assert.equal(edge.generated().length, 1, 'one token back after 10 ms at 100 per second');
});

test('echo to the egress pool address: answered by the edge from a site and from the Internet, no flow, no mapping', () => {
  const edge = new PipelineRig(twoSites());
  for (const [port, src] of [[A_PRIMARY, HOST], [B_PRIMARY, HOST], [INTERNET, SERVER]] as const) {
    const out = edge.send(port, buildIcmpEcho({ src, dst: POOL, ttl: 9 }, { type: 'request', id: 77, seq: 3, payload: new Uint8Array([1, 2, 3]) }));
    assert.equal(out.hop, port, 'the reply leaves where the request came in');
    assert.equal(out.parsed.src, POOL);
    assert.equal(out.parsed.dst, src);
    assert.equal(out.parsed.icmp?.type, 0);
    assert.ok(icmpChecksumOk(out.bytes));
  }
  const v6 = edge.send(A_PRIMARY, buildIcmpEcho({ src: 'fd00:1::10', dst: POOL6 }, { type: 'request', id: 5 }));
  assert.equal(v6.hop, A_PRIMARY);
  assert.equal(v6.parsed.icmp?.type, 129);
  // ping -t 1 198.51.100.1: the edge is the destination, it answers rather than expiring the packet.
  const ttl1 = edge.send(B_PRIMARY, buildIcmpEcho({ src: HOST, dst: POOL, ttl: 1 }, { type: 'request', id: 78 }));
  assert.equal(ttl1.hop, B_PRIMARY);
  assert.equal(ttl1.parsed.icmp?.type, 0);
  assert.equal(edge.pipeline.flows4.size + edge.pipeline.flows6.size, 0, 'no flow');
  assert.equal(edge.pipeline.snat!.mappings, 0, 'no NAT mapping');
  assert.equal(edge.pipeline.counters.icmpEchoAnswered, 5);
});

test('an echo a flow owns is the flow\'s: a site\'s ping to the Internet still comes back translated', () => {
  const edge = new PipelineRig(twoSites());
  const out = edge.send(B_PRIMARY, buildIcmpEcho({ src: HOST, dst: SERVER }, { type: 'request', id: 4242, seq: 1 }));
  assert.equal(out.hop, INTERNET);
  const ext = out.parsed.icmp!.id;
  const reply = edge.send(INTERNET, buildIcmpEcho({ src: SERVER, dst: POOL }, { type: 'reply', id: ext, seq: 1 }));
  assert.equal(reply.hop, B_PRIMARY);
  assert.equal(reply.parsed.dst, HOST);
  assert.equal(reply.parsed.icmp?.id, 4242);
  // The server's own echo request with the mapping's identifier is not the flow's (a request is keyed by its
  // identifier as the source "port", the flow's replies as the destination): the edge answers it, and the flow
  // and its mapping stay as they were.
  const flows = edge.pipeline.flows4.size;
  const request = edge.send(INTERNET, buildIcmpEcho({ src: SERVER, dst: POOL }, { type: 'request', id: ext, seq: 2 }));
  assert.equal(request.hop, INTERNET);
  assert.equal(request.parsed.icmp?.type, 0);
  assert.equal(edge.pipeline.flows4.size, flows);
  assert.equal(edge.pipeline.snat!.mappings, 1);
  const again = edge.send(INTERNET, buildIcmpEcho({ src: SERVER, dst: POOL }, { type: 'reply', id: ext, seq: 2 }));
  assert.equal(again.hop, B_PRIMARY, 'the flow still takes its replies');
  assert.equal(edge.pipeline.counters.icmpEchoAnswered, 1);
});

test('explain: a TTL-1 packet says time exceeded sent, from which address, through which onramp', () => {
  const cfg = twoSites();
  cfg.onramps = [...cfg.onramps, onramp(50, 50, true, { icmpSource: ['192.0.2.50'] })];
  const edge = new PipelineRig(cfg);
  const e = explain(edge.pipeline, { onramp: A_PRIMARY, protocol: IPPROTO_UDP, src: HOST, dst: SERVER, srcPort: 45000, dstPort: 33434, ttl: 1 });
  assert.equal(e.verdict, 'drop');
  assert.equal(e.dropReason, 'ttl_exceeded');
  assert.match(e.trail.at(-1)!, /time exceeded sent to 10\.0\.1\.10 from 198\.51\.100\.1 back through onramp onramp-1 \(1\)/);
  const own = explain(edge.pipeline, { onramp: 50, protocol: IPPROTO_UDP, src: HOST, dst: SERVER, srcPort: 1, dstPort: 2, ttl: 1 });
  assert.match(own.trail.at(-1)!, /from 192\.0\.2\.50/);
  const ping = explain(edge.pipeline, { onramp: A_PRIMARY, protocol: 1, src: HOST, dst: POOL, srcPort: 9, dstPort: 0, ttl: 1 });
  assert.equal(ping.verdict, 'forward');
  assert.match(ping.trail.at(-1)!, /answered by the edge/);
  const bad = explain(edge.pipeline, { onramp: A_PRIMARY, protocol: IPPROTO_UDP, src: HOST, dst: SERVER, srcPort: 1, dstPort: 2, ttl: 300 });
  assert.match(bad.trail.at(-1)!, /TTL must be 0\.\.255/);
  const fine = explain(edge.pipeline, { onramp: A_PRIMARY, protocol: IPPROTO_UDP, src: HOST, dst: SERVER, srcPort: 1, dstPort: 2 });
  assert.equal(fine.verdict, 'forward');
});
