/**
 * Fair shares and filtering everywhere (issue 11, findings 1 and 2): one site's flood never takes another
 * site's ability to open flows (flow tables, NAT ports, fragment hold slots), early drop takes the heaviest
 * onramp's unestablished flows first, and a hairpin passes the peer mapping's filter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { fairShare } from '../../src/common/fair-share.js';
import { explain } from '../../src/dataplane/explain.js';
import { FlowKey, FlowTable, RemoveReason } from '../../src/flow/flow-table.js';
import { IPPROTO_UDP } from '../../src/wire/constants.js';
import { buildUdp } from '../../src/wire/build.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, HOST, INTERNET, POOL, SERVER, twoSites } from '../support/topology.js';

const V6_HOST = 'fd00:1::10';
const V6_SERVER = '2001:db8:5::1';
const V6_POOL = '2001:db8:ee::1';
const ALL_SOURCE_PORTS = 65535;

/** Site B sends one unanswered datagram from each source port 1..65535; returns the drops by reason. */
function flood(edge: PipelineRig, src: string, dst: string): Map<number, number> {
  const drops = new Map<number, number>();
  for (let port = 1; port <= ALL_SOURCE_PORTS; port++) {
    const sent = edge.send(B_PRIMARY, buildUdp({ src, dst }, { srcPort: port, dstPort: 9 }));
    if (sent.hop < 0) drops.set(sent.drop, (drops.get(sent.drop) ?? 0) + 1);
  }
  return drops;
}

/** Site A opens `n` flows to `server` and each gets its reply. */
function siteAStillWorks(edge: PipelineRig, host: string, server: string, pool: string, n: number): void {
  for (let i = 0; i < n; i++) {
    const out = edge.send(A_PRIMARY, buildUdp({ src: host, dst: server }, { srcPort: 30000 + i, dstPort: 53 }));
    assert.equal(out.hop, INTERNET, `site A's flow ${i} is refused: drop ${out.drop}`);
    const reply = edge.send(INTERNET, buildUdp({ src: server, dst: pool }, { srcPort: 53, dstPort: out.parsed.srcPort }));
    assert.equal(reply.hop, A_PRIMARY);
    assert.equal(reply.parsed.dst, host);
    assert.equal(reply.parsed.dstPort, 30000 + i);
  }
}

test('fairShare: every other holder keeps ceil(C / 2n), one holder takes the rest; one holder: all', () => {
  assert.equal(fairShare(65536, 1), 65536);
  assert.equal(fairShare(65536, 2), 49152);
  assert.equal(fairShare(65536, 4), 40960);
  assert.equal(fairShare(64512, 3), 43008);
  assert.equal(fairShare(64, 3), 42);
  assert.equal(fairShare(64, 1000), 1);
  for (const [c, n] of [[4096, 7], [65536, 33], [100, 3]]) {
    assert.ok(c - fairShare(c, n) >= (n - 1) * Math.ceil(c / (2 * n)), `${c}/${n}: the others keep their reserve`);
  }
});

test('IPv4: site B floods from all 64 k source ports; site A still opens flows and gets replies; B\'s excess is counted', () => {
  const edge = new PipelineRig(twoSites());
  const p = edge.pipeline;
  const drops = flood(edge, HOST, SERVER);
  const share = fairShare(p.flows4.capacity, 4);
  assert.equal(p.flows4.flowsOfPort(B_PRIMARY), share, 'B holds exactly its share of the table');
  assert.equal(drops.get(Drop.QuotaExceeded), ALL_SOURCE_PORTS - share, 'the rest of the flood is quota_exceeded');
  assert.equal(p.counters.drops[Drop.QuotaExceeded], ALL_SOURCE_PORTS - share);
  siteAStillWorks(edge, HOST, SERVER, POOL, 200);
});

test('IPv4: the NAT port quota holds a site to its share of the pool address even when its flow quota is off', () => {
  const config = twoSites();
  config.onramps = config.onramps.map((o) => ({ ...o, maxFlows: 0 }));
  const edge = new PipelineRig(config);
  const p = edge.pipeline;
  const drops = flood(edge, HOST, SERVER);
  const portShare = fairShare(65535 - 1024 + 1, 3); // sites A, B and the data center
  assert.equal(p.snat!.sitePortQuota(IPPROTO_UDP), portShare);
  assert.equal(p.snat!.portsOfSite(2, IPPROTO_UDP), portShare);
  assert.equal(drops.get(Drop.NatQuotaExceeded), ALL_SOURCE_PORTS - portShare);
  assert.equal(p.counters.drops[Drop.NatQuotaExceeded], ALL_SOURCE_PORTS - portShare);
  siteAStillWorks(edge, HOST, SERVER, POOL, 200);
  // 0 = no quota, kept explicit: then the flood takes every port of the address and A is refused.
  const open = new PipelineRig({ ...config, egress: { addresses: [POOL, V6_POOL], maxPortsPerSite: 0 } });
  flood(open, HOST, SERVER);
  assert.equal(open.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 30000, dstPort: 53 })).drop, Drop.NatExhausted);
});

test('IPv6: the same flood into the 1 k-flow IPv6 table leaves site A its reserve', () => {
  const edge = new PipelineRig(twoSites());
  const p = edge.pipeline;
  const drops = flood(edge, V6_HOST, V6_SERVER);
  const share = fairShare(p.flows6.capacity, 4);
  assert.equal(p.flows6.flowsOfPort(B_PRIMARY), share);
  assert.equal(drops.get(Drop.QuotaExceeded), ALL_SOURCE_PORTS - share);
  siteAStillWorks(edge, V6_HOST, V6_SERVER, V6_POOL, p.flows6.capacity - share);
});

test('shares follow the onramps: removing onramps re-sizes the automatic quota', () => {
  const edge = new PipelineRig(twoSites());
  const p = edge.pipeline;
  edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 1, dstPort: 9 }));
  assert.equal(p.flows4.quotaOf(B_PRIMARY), fairShare(p.flows4.capacity, 4));
  p.ports.remove(A_PRIMARY);
  edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 2, dstPort: 9 }));
  assert.equal(p.flows4.quotaOf(B_PRIMARY), fairShare(p.flows4.capacity, 3));
  p.setOnramp({ id: B_PRIMARY, name: 'b', type: 'gre', site: 2, automaticReturnRouting: true, maxFlows: 7 });
  assert.equal(p.flows4.quotaOf(B_PRIMARY), 7, 'an explicit max_flows wins');
});

test('fragments: one site\'s early fragments cannot take every hold slot', () => {
  const edge = new PipelineRig(twoSites());
  /** A later fragment (offset 8 bytes, no transport header) of datagram `id` from `src`. */
  const laterFragment = (src: string, id: number): Uint8Array => {
    const b = new Uint8Array(28);
    const dv = new DataView(b.buffer);
    b[0] = 0x45;
    dv.setUint16(2, b.length);
    dv.setUint16(4, id);
    dv.setUint16(6, 1); // fragment offset 1 (8 bytes), MF clear: the last fragment
    b[8] = 64;
    b[9] = IPPROTO_UDP;
    src.split('.').forEach((x, i) => (b[12 + i] = Number(x)));
    SERVER.split('.').forEach((x, i) => (b[16 + i] = Number(x)));
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += dv.getUint16(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    dv.setUint16(10, ~sum & 0xffff);
    return b;
  };
  const quota = fairShare(64, 3);
  let held = 0;
  let refused = 0;
  for (let id = 1; id <= 64; id++) {
    const sent = edge.send(B_PRIMARY, laterFragment(HOST, id));
    if (sent.drop === Drop.None) held++;
    else if (sent.drop === Drop.FragmentQuotaExceeded) refused++;
  }
  assert.equal(held, quota);
  assert.equal(refused, 64 - quota);
  assert.equal(edge.pipeline.counters.drops[Drop.FragmentQuotaExceeded], 64 - quota);
  // Site A's early fragment still finds a slot.
  const a = edge.send(A_PRIMARY, laterFragment(HOST, 999));
  assert.equal(a.drop, Drop.None);
  assert.equal(a.hop, -1, 'held, waiting for its first fragment');
});

test('early drop: a full table evicts the heaviest onramp\'s unestablished flows first, oldest first', () => {
  const evicted: number[] = [];
  const t = new FlowTable({ capacity: 16, addrWords: 1, hashSeed: 3, onRemove: (f, r) => { if (r === RemoveReason.Evicted) evicted.push(f); } });
  const key = (port: number, src: number): [FlowKey, FlowKey] => {
    const o = new FlowKey();
    o.zone = 0; o.protocol = IPPROTO_UDP; o.src[0] = src; o.dst[0] = 0xcb00710a; o.srcPort = port; o.dstPort = 53;
    const r = new FlowKey();
    r.reverseOf(o);
    return [o, r];
  };
  let now = 1000;
  // Onramp 1: 4 half-open flows, created first (nearest their deadlines). Onramp 2: 12 half-open flows.
  const light: number[] = [];
  for (let i = 0; i < 4; i++) light.push(t.create(...key(1000 + i, 1), 1, now++));
  const heavy: number[] = [];
  for (let i = 0; i < 12; i++) heavy.push(t.create(...key(2000 + i, 2), 2, now++));
  assert.equal(t.size, 16);
  // Onramp 1 opens 4 more: each evicts one of onramp 2's, oldest first, while onramp 2 is the heavier.
  for (let i = 0; i < 4; i++) assert.ok(t.create(...key(3000 + i, 1), 1, now++) >= 0);
  assert.deepEqual(evicted, heavy.slice(0, 4));
  for (const f of light) assert.ok(t.isLive(f), 'the lighter onramp\'s older half-open flows stay');
  // 8 and 8: a tie takes the flow nearest its deadline among the heaviest, onramp 1's oldest.
  assert.ok(t.create(...key(4000, 2), 2, now++) >= 0);
  assert.deepEqual(evicted, [...heavy.slice(0, 4), light[0]]);
  // Now onramp 2 holds 9, onramp 1 holds 7: onramp 2's oldest goes next, whoever asks.
  assert.ok(t.create(...key(3100, 1), 1, now++) >= 0);
  assert.deepEqual(evicted.slice(5), [heavy[4]]);
});

test('hairpin: without prior contact from the peer it is dropped (counted, explained); with it, it passes', () => {
  const edge = new PipelineRig(twoSites());
  const p = edge.pipeline;
  const a = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 6000, dstPort: 3478 }));
  const b = edge.send(B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: SERVER }, { srcPort: 7000, dstPort: 3478 }));
  const toA = { onramp: B_PRIMARY, protocol: IPPROTO_UDP, src: '10.0.1.20', dst: POOL, srcPort: 7000, dstPort: a.parsed.srcPort };
  const told = explain(p, toA);
  assert.equal(told.verdict, 'drop');
  assert.equal(told.dropReason, 'hairpin_filtered');
  const first = edge.send(B_PRIMARY, buildUdp({ src: toA.src, dst: POOL }, { srcPort: 7000, dstPort: a.parsed.srcPort }));
  assert.equal(first.drop, Drop.HairpinFiltered, 'A never sent to B\'s external endpoint: A\'s mapping filters B');
  // Again: the flow exists now, still held back (explain says so from the flow).
  assert.equal(explain(p, toA).dropReason, 'hairpin_filtered');
  assert.equal(edge.send(B_PRIMARY, buildUdp({ src: toA.src, dst: POOL }, { srcPort: 7000, dstPort: a.parsed.srcPort })).drop, Drop.HairpinFiltered);
  assert.equal(p.counters.drops[Drop.HairpinFiltered], 2);
  // A's packet to B's external endpoint: B has sent to A's, so B's mapping admits A; it passes and admits B.
  const toB = { onramp: A_PRIMARY, protocol: IPPROTO_UDP, src: HOST, dst: POOL, srcPort: 6000, dstPort: b.parsed.srcPort };
  assert.equal(explain(p, toB).verdict, 'forward');
  const contact = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: POOL }, { srcPort: 6000, dstPort: b.parsed.srcPort }));
  assert.equal(contact.hop, B_PRIMARY);
  assert.equal(contact.parsed.dst, '10.0.1.20');
  assert.equal(explain(p, toA).verdict, 'forward');
  const after = edge.send(B_PRIMARY, buildUdp({ src: toA.src, dst: POOL }, { srcPort: 7000, dstPort: a.parsed.srcPort }));
  assert.equal(after.hop, A_PRIMARY);
  assert.equal(after.parsed.dst, HOST);
  assert.equal(after.parsed.dstPort, 6000);
  // A third site's endpoint with no contact at all is still filtered from A's mapping.
  const c = edge.send(B_PRIMARY, buildUdp({ src: '10.0.1.30', dst: POOL }, { srcPort: 7001, dstPort: a.parsed.srcPort }));
  assert.equal(c.drop, Drop.HairpinFiltered);
});
