// Tunnel health in the pipeline: echo between a site and the edge's own tunnel address (an onramp's
// localAddress) never enters flow setup: replies to the edge's probes go to the health engine, the site's
// probes are answered in place; a health state moves routes (penalty) and ARR/failover (up).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { HealthEngine, REPLY_MATCHED, buildProbe } from '../../src/health/health.js';
import { PENALTY_DEGRADED, PENALTY_DOWN } from '../../src/health/constants.js';
import { NextHopKind } from '../../src/route/route-table.js';
import { icmpv4ChecksumFull, ipv4HeaderChecksum, transportChecksumFull } from '../../src/wire/checksum.js';
import { buildIcmpEcho, buildUdp } from '../../src/wire/build.js';
import { inspect } from '../../src/wire/inspect.js';
import { PacketInfo } from '../../src/wire/packet-info.js';
import { PipelineRig } from '../support/pipeline-rig.js';

const PRIMARY = 1;
const BACKUP = 2;
const DC = 3;
const EDGE_TUNNEL = '100.64.0.1';
const EDGE_TUNNEL6 = 'fd00:64::1';
const SITE_ROUTER = '10.0.1.1';
const SITE_HOST = '10.0.1.10';
const DC_HOST = '172.16.0.20';

function rig(): PipelineRig {
  return new PipelineRig({
    onramps: [
      { id: PRIMARY, name: 'primary', type: 'wireguard', site: 1, automaticReturnRouting: true, preference: 10, localAddress: EDGE_TUNNEL, allowedSources: ['10.0.1.0/24', 'fd00:1::/64'] },
      { id: BACKUP, name: 'backup', type: 'gre', site: 1, automaticReturnRouting: true, preference: 20, localAddress: EDGE_TUNNEL6 },
      { id: DC, name: 'dc', type: 'interconnect', site: 2, automaticReturnRouting: true },
    ],
    routes: [
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: PRIMARY, priority: 100 },
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: BACKUP, priority: 200 },
      { prefix: '172.16.0.0/24', kind: NextHopKind.Onramp, port: DC },
    ],
  });
}

function checksumsValid(bytes: Uint8Array): boolean {
  const info = new PacketInfo();
  assert.equal(inspect(bytes, 0, bytes.length, info), Drop.None);
  if (info.family === 4) {
    const stored = (bytes[10] << 8) | bytes[11];
    const icmpStored = (bytes[info.l4Offset + 2] << 8) | bytes[info.l4Offset + 3];
    return ipv4HeaderChecksum(bytes, 0, info.l4Offset) === stored && icmpv4ChecksumFull(bytes, info.l4Offset, info.l4Length) === icmpStored;
  }
  return transportChecksumFull(bytes, info) === ((bytes[info.l4Offset + 2] << 8) | bytes[info.l4Offset + 3]);
}

test('a reply to the edge probe is taken by the health engine: no flow, no forwarding, counted', () => {
  const r = rig();
  const health: HealthEngine = r.pipeline.health;
  health.add(PRIMARY, { source: EDGE_TUNNEL, target: SITE_ROUTER }, r.now);
  const [probe] = health.poll(r.now);
  const request = buildProbe(probe);
  const reply = buildIcmpEcho({ src: SITE_ROUTER, dst: EDGE_TUNNEL, ttl: 1 }, { type: 'reply', id: probe.id, seq: probe.seq });
  r.now += 12;
  const out = r.send(PRIMARY, reply);
  assert.equal(out.hop, -1);
  assert.equal(out.drop, Drop.None, 'consumed, not dropped (a TTL of 1 does not matter: the edge is the destination)');
  assert.equal(health.counters(PRIMARY)!.repliesMatched, 1);
  assert.equal(health.status(PRIMARY)!.rttMs, 12);
  assert.equal(r.pipeline.flows4.size, 0);
  assert.equal(r.pipeline.counters.rxPackets[PRIMARY], 1);
  assert.equal(request.length, 28, 'an IPv4 header and an 8-byte echo request');
  // A duplicate is still the edge's: taken and counted as rejected, never forwarded.
  assert.equal(r.send(PRIMARY, reply).drop, Drop.None);
  assert.equal(health.counters(PRIMARY)!.repliesRejected, 1);
  // The same reply on another onramp (no local address there): an ordinary reply without a flow.
  const elsewhere = buildIcmpEcho({ src: SITE_ROUTER, dst: EDGE_TUNNEL }, { type: 'reply', id: probe.id, seq: probe.seq });
  assert.equal(r.send(DC, elsewhere).drop, Drop.ReplyNoFlow);
  // An echo reply to the local address that is not for a probe (other identifier) walks on as before.
  assert.equal(r.send(PRIMARY, buildIcmpEcho({ src: SITE_ROUTER, dst: EDGE_TUNNEL }, { type: 'reply', id: probe.id + 1, seq: 0 })).drop, Drop.ReplyNoFlow);
});

test("the site's probe to the edge tunnel address is answered in place, back into its tunnel, and counted", () => {
  const r = rig();
  const health = r.pipeline.health;
  health.add(PRIMARY, { mode: 'reverse' }, r.now);
  const ping = buildIcmpEcho({ src: SITE_ROUTER, dst: EDGE_TUNNEL, ttl: 9 }, { type: 'request', id: 4242, seq: 7, payload: new Uint8Array([1, 2, 3, 4, 5]) });
  const out = r.send(PRIMARY, ping);
  assert.equal(out.hop, PRIMARY);
  assert.equal(out.parsed.src, EDGE_TUNNEL);
  assert.equal(out.parsed.dst, SITE_ROUTER);
  assert.equal(out.parsed.ttl, 64);
  assert.deepEqual(out.parsed.icmp, { type: 0, code: 0, id: 4242, isError: false });
  assert.deepEqual([...out.bytes.subarray(out.bytes.length - 5)], [1, 2, 3, 4, 5]);
  assert.ok(checksumsValid(out.bytes));
  assert.equal(health.counters(PRIMARY)!.siteProbesAnswered, 1);
  assert.equal(r.pipeline.flows4.size, 0);
  // From a source outside the onramp's allowed IPs: dropped as any such packet.
  assert.equal(r.send(PRIMARY, buildIcmpEcho({ src: '192.0.2.9', dst: EDGE_TUNNEL }, { type: 'request', id: 1 })).drop, Drop.SourceNotAllowed);
  // Not echo: walks on (no route to the edge address: dropped there, as before).
  assert.equal(r.send(PRIMARY, buildUdp({ src: SITE_HOST, dst: EDGE_TUNNEL }, { srcPort: 1, dstPort: 2 })).drop, Drop.NoRoute);
});

test('IPv6: the site probe to the edge tunnel address is answered with a valid ICMPv6 checksum', () => {
  const r = rig();
  const ping = buildIcmpEcho({ src: 'fd00:1::2', dst: EDGE_TUNNEL6 }, { type: 'request', id: 9, seq: 3, payload: new Uint8Array([9, 9, 9]) });
  const out = r.send(BACKUP, ping);
  assert.equal(out.hop, BACKUP);
  assert.equal(out.parsed.src, EDGE_TUNNEL6);
  assert.equal(out.parsed.dst, 'fd00:1::2');
  assert.equal(out.parsed.icmp?.type, 129);
  assert.ok(checksumsValid(out.bytes));
  const probe = { onramp: BACKUP, id: 5, seq: 0, srcAddr: EDGE_TUNNEL6, dstAddr: 'fd00:1::2' };
  r.pipeline.health.add(BACKUP, { source: EDGE_TUNNEL6, target: 'fd00:1::2', icmpId: 5 }, r.now);
  assert.equal(r.pipeline.health.poll(r.now).length, 1);
  const reply = buildIcmpEcho({ src: probe.dstAddr, dst: probe.srcAddr }, { type: 'reply', id: 5, seq: 0 });
  assert.equal(r.send(BACKUP, reply).drop, Drop.None);
  assert.equal(r.pipeline.health.counters(BACKUP)!.repliesMatched, 1);
  assert.equal(REPLY_MATCHED, 1);
});

test('health states: degraded and down penalise routes for new flows; down also fails ARR replies over to the backup', () => {
  const r = rig();
  const p = r.pipeline;
  const flowTo = (sport: number) => r.send(DC, buildUdp({ src: DC_HOST, dst: SITE_HOST }, { srcPort: sport, dstPort: 53 }));
  assert.equal(flowTo(1000).hop, PRIMARY);
  p.setOnrampHealth(PRIMARY, 'degraded');
  assert.equal(p.routes.penaltyOf(PRIMARY), PENALTY_DEGRADED);
  assert.equal(flowTo(1001).hop, BACKUP, 'a degraded primary (100 + 500,000) loses to the backup (200)');
  assert.equal(p.ports.up[PRIMARY], 1);
  p.setOnrampHealth(BACKUP, 'down');
  assert.equal(flowTo(1002).hop, PRIMARY, 'degraded beats down');
  p.setOnrampHealth(BACKUP, 'healthy');

  // A flow from the site over the primary; its replies come back over the backup once the primary is down.
  const out = r.send(PRIMARY, buildUdp({ src: SITE_HOST, dst: DC_HOST }, { srcPort: 5000, dstPort: 53 }));
  assert.equal(out.hop, DC);
  p.setOnrampHealth(PRIMARY, 'down');
  assert.equal(p.routes.penaltyOf(PRIMARY), PENALTY_DOWN);
  assert.equal(p.ports.up[PRIMARY], 0);
  assert.equal(r.send(DC, buildUdp({ src: DC_HOST, dst: SITE_HOST }, { srcPort: 53, dstPort: 5000 })).hop, BACKUP);
  p.setOnrampHealth(PRIMARY, 'healthy');
  assert.equal(p.routes.penaltyOf(PRIMARY), 0);
  assert.equal(r.send(DC, buildUdp({ src: DC_HOST, dst: SITE_HOST }, { srcPort: 53, dstPort: 5000 })).hop, PRIMARY);
});

test('removing an onramp frees its local address; replacing it with another address moves the check', () => {
  const r = rig();
  const p = r.pipeline;
  const ping = (dst: string) => r.send(PRIMARY, buildIcmpEcho({ src: SITE_ROUTER, dst }, { type: 'request', id: 1 }));
  assert.equal(ping(EDGE_TUNNEL).hop, PRIMARY);
  p.setOnramp({ ...p.ports.get(PRIMARY)!, localAddress: '100.64.0.9' });
  assert.equal(ping(EDGE_TUNNEL).drop, Drop.NoRoute);
  assert.equal(ping('100.64.0.9').hop, PRIMARY);
  p.setOnramp({ ...p.ports.get(PRIMARY)!, localAddress: undefined });
  assert.equal(ping('100.64.0.9').drop, Drop.NoRoute);
  assert.equal(p.ports.localIndex[PRIMARY], 0);
  // Slots are reused: a third onramp gets the freed one.
  p.setOnramp({ id: 4, name: 'x', type: 'gre', site: 3, automaticReturnRouting: false, localAddress: '100.64.0.4' });
  assert.equal(p.ports.localFamily.length, 2);
});
