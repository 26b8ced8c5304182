/**
 * The gateway's DNS stage in the pipeline (issue 12): UDP/53 queries from an onramp decided by the gateway
 * policy; block → NXDOMAIN, override → the override's records, answered back through the onramp the query came in
 * on from the server it asked; every query of a port-53 flow read, not only the first; anything unreadable
 * forwarded and counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Drop } from '../../src/common/drop-reasons.js';
import { explain } from '../../src/dataplane/explain.js';
import { FLAG_DNS } from '../../src/dataplane/pipeline.js';
import { GatewayPolicy, NameSource, type GatewayPolicySpec, type GatewayRuleSpec } from '../../src/gateway/policy.js';
import { buildTcp, buildUdp, type ParsedPacket } from '../../src/wire/build.js';
import { foldChecksum, onesComplementSum } from '../../src/wire/checksum.js';
import { parseAddress } from '../../src/wire/addr.js';
import { IPPROTO_UDP, TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig, type Sent } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, HOST, INTERNET, SERVER, SITE_A, twoSites } from '../support/topology.js';

const HOST6 = 'fd00:1::10';
const SERVER6 = '2001:db8::53';
const QTYPE_A = 1;
const QTYPE_MX = 15;
const QTYPE_AAAA = 28;
const RCODE_NXDOMAIN = 3;

const RULES: GatewayRuleSpec[] = [
  { id: 10, action: 'override', sites: [SITE_A], hostnames: ['intranet.example'], sources: NameSource.Dns, override: { addresses: ['192.0.2.7', '192.0.2.8', '2001:db8::7'], ttl: 60 } },
  { id: 11, action: 'block', hostnames: ['blocked.example', '*.blocked.example'] },
  { id: 12, action: 'log', hostnames: ['logged.example'] },
  { id: 13, action: 'override', hostnames: ['gone.example'], sources: NameSource.Dns, override: { addresses: [], ttl: 5, nxdomain: true } },
];

function spec(rules: GatewayRuleSpec[] = RULES): GatewayPolicySpec {
  return { rules, dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 65536 };
}

function rig(rules: GatewayRuleSpec[] = RULES): PipelineRig {
  return new PipelineRig({ ...twoSites(), gateway: spec(rules) });
}

/** A standard query (RFC 1035 section 4.1), written out by hand: header, one question. */
function query(id: number, name: string, qtype = QTYPE_A, qdcount = 1): Uint8Array {
  const labels = name.split('.').filter((l) => l !== '');
  const bytes = [id >> 8, id & 0xff, 0x01, 0x00, qdcount >> 8, qdcount & 0xff, 0, 0, 0, 0, 0, 0];
  for (const l of labels) bytes.push(l.length, ...Buffer.from(l, 'latin1'));
  bytes.push(0, qtype >> 8, qtype & 0xff, 0, 1);
  return Uint8Array.from(bytes);
}

function udp4(payload: Uint8Array, srcPort = 40000, dst = SERVER, dstPort = 53): Uint8Array {
  return buildUdp({ src: HOST, dst }, { srcPort, dstPort, payload });
}

function udp6(payload: Uint8Array, srcPort = 40000): Uint8Array {
  return buildUdp({ src: HOST6, dst: SERVER6 }, { srcPort, dstPort: 53, payload });
}

interface Answer {
  id: number; qr: boolean; rd: boolean; rcode: number; qdcount: number; name: string; qtype: number;
  records: { type: number; ttl: number; rdata: string }[];
}

/** A slow reader of the edge's answers: one question, answers whose names point at it. */
function readAnswer(p: ParsedPacket, bytes: Uint8Array): Answer {
  const m = Buffer.from(bytes.subarray(p.l4Offset + 8, p.l4Offset + p.l4Length));
  const labels: string[] = [];
  let at = 12;
  while (m[at] !== 0) {
    labels.push(m.subarray(at + 1, at + 1 + m[at]).toString('latin1'));
    at += 1 + m[at];
  }
  at++;
  const qtype = m.readUInt16BE(at);
  at += 4;
  const records: Answer['records'] = [];
  for (let i = 0; i < m.readUInt16BE(6); i++) {
    assert.equal(m.readUInt16BE(at), 0xc00c, 'the record names the question by pointer');
    const type = m.readUInt16BE(at + 2);
    const ttl = m.readUInt32BE(at + 6);
    const len = m.readUInt16BE(at + 10);
    const rd = m.subarray(at + 12, at + 12 + len);
    const rdata = len === 4 ? [...rd].join('.') : [...Array(8).keys()].map((k) => rd.readUInt16BE(2 * k).toString(16)).join(':');
    records.push({ type, ttl, rdata });
    at += 12 + len;
  }
  assert.equal(at, m.length, 'nothing after the records');
  const flags = m.readUInt16BE(2);
  return { id: m.readUInt16BE(0), qr: (flags & 0x8000) !== 0, rd: (flags & 0x100) !== 0, rcode: flags & 0xf, qdcount: m.readUInt16BE(4), name: labels.join('.'), qtype, records };
}

/** RFC 768: the UDP checksum over the pseudo-header verifies (sums to zero). */
function udpChecksumOk(bytes: Uint8Array, p: ParsedPacket): boolean {
  const words = new Uint32Array(8);
  parseAddress(p.src, words, 0);
  parseAddress(p.dst, words, 4);
  let sum = 17 + p.l4Length;
  const n = p.family === 4 ? 1 : 4;
  for (let w = 0; w < n; w++) for (const x of [words[w], words[4 + w]]) sum += (x >>> 16) + (x & 0xffff);
  return foldChecksum(onesComplementSum(bytes, p.l4Offset, p.l4Offset + p.l4Length, sum)) === 0;
}

function answered(edge: PipelineRig, out: Sent, onramp: number): Answer {
  assert.equal(out.hop, -1, 'the query is not forwarded');
  assert.equal(out.drop, Drop.None, 'consumed, not a drop');
  const gen = edge.generated();
  assert.equal(gen.length, 1, 'one answer');
  const [a] = gen;
  assert.equal(a.hop, onramp, 'the answer leaves on the onramp the query came in on');
  assert.equal(a.parsed.drop, Drop.None);
  assert.ok(udpChecksumOk(a.bytes, a.parsed), 'UDP checksum');
  assert.equal(a.parsed.srcPort, 53);
  return readAnswer(a.parsed, a.bytes);
}

test('override for site A: A gets the override records (A, AAAA, NODATA for other types); B\'s query goes to the server', () => {
  const edge = rig();
  const out = edge.send(A_PRIMARY, udp4(query(0x1234, 'Intranet.EXAMPLE')));
  const a = answered(edge, out, A_PRIMARY);
  const [ans] = edge.generated();
  assert.equal(ans.parsed.src, SERVER, 'from the server the client asked');
  assert.equal(ans.parsed.dst, HOST);
  assert.equal(ans.parsed.dstPort, 40000);
  assert.deepEqual(a, {
    id: 0x1234, qr: true, rd: true, rcode: 0, qdcount: 1, name: 'Intranet.EXAMPLE', qtype: QTYPE_A,
    records: [{ type: QTYPE_A, ttl: 60, rdata: '192.0.2.7' }, { type: QTYPE_A, ttl: 60, rdata: '192.0.2.8' }],
  }, 'the question echoed as sent (case included), both IPv4 addresses');
  assert.equal(edge.pipeline.flows4.size, 0, 'an answered first query creates no flow');
  const six = answered(edge, edge.send(A_PRIMARY, udp4(query(2, 'intranet.example', QTYPE_AAAA))), A_PRIMARY);
  assert.deepEqual(six.records, [{ type: QTYPE_AAAA, ttl: 60, rdata: '2001:db8:0:0:0:0:0:7' }]);
  const mx = answered(edge, edge.send(A_PRIMARY, udp4(query(3, 'intranet.example', QTYPE_MX))), A_PRIMARY);
  assert.deepEqual([mx.rcode, mx.records], [0, []], 'NODATA');

  const fromB = edge.send(B_PRIMARY, udp4(query(4, 'intranet.example')));
  assert.equal(fromB.hop, INTERNET, 'site B: forwarded to its server');
  assert.equal(edge.generated().length, 0);
  assert.equal(edge.pipeline.flows4.size, 1);
  const c = edge.pipeline.counters;
  assert.equal(c.gatewayDnsQueries, 4);
  assert.equal(c.gatewayDnsAnswered, 3);
  assert.equal(c.gatewayRuleHits[10], 3);
});

test('every query of a port-53 flow is read: a blocked name on an established flow gets NXDOMAIN, from either site', () => {
  const edge = rig();
  for (const site of [A_PRIMARY, B_PRIMARY]) {
    assert.equal(edge.send(site, udp4(query(1, 'example.org'), 41000)).hop, INTERNET, 'no rule: forwarded, the flow is set up');
    const table = edge.pipeline.flows4;
    assert.ok(table.size > 0);
    const nx = answered(edge, edge.send(site, udp4(query(2, 'www.Blocked.example'), 41000)), site);
    assert.deepEqual([nx.id, nx.rcode, nx.records.length, nx.name], [2, RCODE_NXDOMAIN, 0, 'www.Blocked.example']);
    assert.equal(edge.send(site, udp4(query(3, 'example.org'), 41000)).hop, INTERNET, 'the flow goes on');
  }
  assert.equal(edge.pipeline.flows4.size, 2, 'one flow per site, answered queries made none');
  assert.equal(edge.pipeline.counters.gatewayRuleHits[11], 2);
  // An override with nxdomain answers NXDOMAIN too.
  const gone = answered(edge, edge.send(A_PRIMARY, udp4(query(5, 'gone.example'))), A_PRIMARY);
  assert.equal(gone.rcode, RCODE_NXDOMAIN);
});

test('IPv6: the answer is an IPv6 datagram from the server to the client', () => {
  const edge = rig();
  const a = answered(edge, edge.send(A_PRIMARY, udp6(query(9, 'intranet.example', QTYPE_AAAA))), A_PRIMARY);
  const [ans] = edge.generated();
  assert.deepEqual([ans.parsed.family, ans.parsed.src, ans.parsed.dst, ans.parsed.ttl], [6, SERVER6, HOST6, 64]);
  assert.deepEqual(a.records, [{ type: QTYPE_AAAA, ttl: 60, rdata: '2001:db8:0:0:0:0:0:7' }]);
  const nx = answered(edge, edge.send(B_PRIMARY, udp6(query(10, 'blocked.example', QTYPE_AAAA))), B_PRIMARY);
  assert.equal(nx.rcode, RCODE_NXDOMAIN);
});

test('log: forwarded, counted, reported to onGatewayDns with the rule and the name', () => {
  const edge = rig();
  const seen: string[] = [];
  edge.pipeline.onGatewayDns = (e) => seen.push(`${e.ruleId} ${e.action} ${e.name} ${e.rcode} ${e.answers}`);
  assert.equal(edge.send(A_PRIMARY, udp4(query(1, 'logged.example'))).hop, INTERNET);
  edge.send(A_PRIMARY, udp4(query(2, 'blocked.example')));
  edge.send(A_PRIMARY, udp4(query(3, 'intranet.example')));
  edge.send(A_PRIMARY, udp4(query(4, 'example.org')));
  assert.deepEqual(seen, ['12 log logged.example -1 0', '11 block blocked.example 3 0', '10 override intranet.example 0 2']);
  assert.equal(edge.pipeline.counters.gatewayRuleHits[12], 1);
});

test('unreadable datagrams to port 53 are forwarded and counted: QDCOUNT 0 or 2, a pointer loop, truncated, a response, a fragment', () => {
  const edge = rig();
  const loop = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  const response = query(1, 'blocked.example');
  response[2] |= 0x80;
  const bad = [query(1, 'blocked.example', QTYPE_A, 0), query(1, 'blocked.example', QTYPE_A, 2), loop, query(1, 'blocked.example').subarray(0, 20), response, new Uint8Array(0)];
  for (const [i, payload] of bad.entries()) {
    const out = edge.send(A_PRIMARY, udp4(payload, 42000 + i));
    assert.equal(out.hop, INTERNET, `case ${i}: forwarded`);
  }
  assert.equal(edge.generated().length, 0);
  const c = edge.pipeline.counters;
  assert.equal(c.gatewayDnsUnparsed, bad.length);
  assert.equal(c.gatewayDnsQueries, 0);
  // A first fragment carrying a query: its question may be cut; forwarded, counted.
  const frag = buildUdp({ src: HOST, dst: SERVER, moreFragments: true, id: 77 }, { srcPort: 42100, dstPort: 53, payload: Uint8Array.from([...query(1, 'blocked.example'), 0, 0, 0, 0, 0, 0, 0]) });
  const fragOut = edge.send(A_PRIMARY, frag);
  assert.equal(fragOut.hop, INTERNET, `drop ${fragOut.drop}`);
  assert.equal(edge.generated().length, 0);
  assert.equal(c.gatewayDnsUnparsed, bad.length + 1);
});

test('only UDP flows toward port 53 are marked; TCP 53 and other ports are not read', () => {
  const edge = rig();
  edge.send(A_PRIMARY, udp4(query(1, 'example.org'), 43000));
  edge.send(A_PRIMARY, udp4(query(1, 'blocked.example'), 43001, SERVER, 5353));
  const tcp = edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: SERVER }, { srcPort: 43002, dstPort: 53, flags: TCP_SYN }));
  assert.equal(tcp.hop, INTERNET, 'DNS over TCP is forwarded, not read');
  const t = edge.pipeline.flows4;
  const marked: number[] = [];
  // FLAG_DNS is the gateway-work bit: on the TCP flow it means classifying (the rule reads SNI and Host too).
  for (let flow = 0; flow < t.capacity; flow++) if (t.isLive(flow) && t.protocol(flow) === IPPROTO_UDP) marked.push(t.flags(flow) & FLAG_DNS);
  assert.deepEqual(marked.sort(), [0, FLAG_DNS]);
  assert.equal(edge.pipeline.counters.gatewayDnsQueries, 1);
});

test('a live policy change applies to open port-53 flows: rules added later answer, rules removed stop answering', () => {
  const edge = new PipelineRig(twoSites());
  assert.equal(edge.send(A_PRIMARY, udp4(query(1, 'blocked.example'), 44000)).hop, INTERNET, 'no rules yet');
  edge.pipeline.setGateway(new GatewayPolicy(spec()));
  assert.equal(answered(edge, edge.send(A_PRIMARY, udp4(query(2, 'blocked.example'), 44000)), A_PRIMARY).rcode, RCODE_NXDOMAIN);
  edge.pipeline.setGateway(null);
  assert.equal(edge.send(A_PRIMARY, udp4(query(3, 'blocked.example'), 44000)).hop, INTERNET);
  // Rules without a DNS-read hostname condition leave queries alone.
  edge.pipeline.setGateway(new GatewayPolicy(spec([{ id: 1, action: 'block', hostnames: ['blocked.example'], sources: NameSource.Sni }])));
  assert.equal(edge.pipeline.dnsGate.active, false);
  assert.equal(edge.send(A_PRIMARY, udp4(query(4, 'blocked.example'), 44000)).hop, INTERNET);
});

test('the firewall runs first: a query it denies is dropped, not answered', () => {
  const edge = new PipelineRig({
    ...twoSites(),
    gateway: spec(),
    firewall: { rules: [{ id: 1, action: 'deny', protocols: [17], dstPorts: [[53, 53]] }], defaultAction: 'allow' },
  });
  const out = edge.send(A_PRIMARY, udp4(query(1, 'blocked.example')));
  assert.equal(out.drop, Drop.PolicyDeny);
  assert.equal(edge.generated().length, 0);
});

test('property: any payload to port 53 is forwarded or answered with a well-formed response of its id; never a throw', () => {
  const edge = rig();
  const name = fc.constantFrom('intranet.example', 'blocked.example', 'x.blocked.example', 'gone.example', 'example.org', 'logged.example');
  const payload = fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    fc.tuple(fc.integer({ min: 0, max: 0xffff }), name, fc.constantFrom(QTYPE_A, QTYPE_AAAA, QTYPE_MX, 255), fc.uint8Array({ maxLength: 40 }))
      .map(([id, n, t, tail]) => Uint8Array.from([...query(id, n, t), ...tail])),
    fc.tuple(name, fc.nat(30), fc.integer({ min: 0, max: 255 })).map(([n, at, v]) => {
      const q = query(7, n);
      q[at % q.length] = v;
      return q;
    }),
  );
  let port = 50000;
  fc.assert(fc.property(payload, fc.constantFrom(A_PRIMARY, B_PRIMARY), fc.boolean(), (p, onramp, v6) => {
    const out = edge.send(onramp, v6 ? udp6(p, port++) : udp4(p, port++));
    if (out.hop === INTERNET) return edge.generated().length === 0;
    const a = answered(edge, out, onramp);
    return a.qr && a.id === ((p[0] << 8) | p[1]) && a.qdcount === 1;
  }), { numRuns: 500 });
});

test('explain says what the DNS stage does with a query, at setup and on an open flow', () => {
  const edge = rig();
  const packet = { onramp: A_PRIMARY, protocol: 17, src: HOST, dst: SERVER, srcPort: 45000, dstPort: 53 };
  const note = (trail: string[]): string | undefined => trail.find((l) => l.startsWith('a DNS query'));
  assert.match(note(explain(edge.pipeline, packet).trail) ?? '', /answered by the edge itself/);
  edge.send(A_PRIMARY, udp4(query(1, 'example.org'), 45000));
  const onFlow = explain(edge.pipeline, packet);
  assert.ok(onFlow.flow !== null);
  assert.match(note(onFlow.trail) ?? '', /answered by the edge itself/);
  edge.pipeline.setGateway(null);
  assert.match(note(explain(edge.pipeline, packet).trail) ?? '', /no gateway rule reads DNS names/);
  assert.equal(note(explain(edge.pipeline, { ...packet, dstPort: 5353 }).trail), undefined);
});
