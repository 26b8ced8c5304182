/**
 * Flows over time: failover between a site's onramps, TCP from handshake to TIME-WAIT, timeouts on
 * an injected clock, capacity and quotas under a flood, fragments, TTL, garbage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { buildIcmpEcho, buildTcp, buildUdp, fragmentIpv4 } from '../../src/wire/build.js';
import { TCP_ACK_FLAG, TCP_FIN, TCP_RST, TCP_SYN } from '../../src/wire/constants.js';
import { RemoveReason, TcpState } from '../../src/flow/flow-table.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { reassemble } from '../support/reassembly.js';
import { A_BACKUP, A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, twoSites } from '../support/topology.js';

const SECOND = 1000;

test('mid-flow failover: the flow follows the site to its backup onramp; another site cannot take it', () => {
  const edge = new PipelineRig(twoSites());
  const out = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 443 }));
  const reply = () => edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 443, dstPort: out.parsed.srcPort }));
  assert.equal(reply().hop, A_PRIMARY);
  // The primary tunnel fails; the site's router sends the same flow over the backup.
  const moved = edge.send(A_BACKUP, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 443 }));
  assert.equal(moved.parsed.srcPort, out.parsed.srcPort, 'same flow, same mapping');
  assert.equal(edge.pipeline.flows4.size, 1);
  assert.equal(reply().hop, A_BACKUP);
  // Health checks mark the backup down: replies go to the best healthy onramp of the same site.
  edge.pipeline.setOnrampUp(A_BACKUP, false);
  assert.equal(reply().hop, A_PRIMARY);
  edge.pipeline.setOnrampUp(A_BACKUP, true);
  assert.equal(reply().hop, A_BACKUP);
  // Site B sending the identical tuple gets its own flow and does not move A's.
  edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 443 }));
  assert.equal(reply().hop, A_BACKUP);
});

test('TCP through the edge: handshake, data, FIN both ways, TIME-WAIT; out-of-window and unsolicited segments refused', () => {
  const edge = new PipelineRig(twoSites());
  const table = edge.pipeline.flows4;
  const c2s = (seq: number, ack: number, flags: number, len = 0) => edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 40000, dstPort: 22, seq, ack, flags, payload: new Uint8Array(len) }));
  const s2c = (seq: number, ack: number, flags: number, len = 0) => edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 22, dstPort: 40000, seq, ack, flags, payload: new Uint8Array(len) }));
  assert.equal(c2s(100, 0, TCP_ACK_FLAG).drop, Drop.TcpNoFlow, 'no flow starts without a SYN');
  assert.equal(c2s(100, 0, TCP_SYN).hop, DC_ONRAMP);
  assert.equal(table.state(0), TcpState.SynSent);
  assert.equal(s2c(5000, 101, TCP_SYN | TCP_ACK_FLAG).hop, A_PRIMARY);
  assert.equal(c2s(101, 5001, TCP_ACK_FLAG).hop, DC_ONRAMP);
  assert.equal(table.state(0), TcpState.Established);
  assert.equal(c2s(101, 5001, TCP_ACK_FLAG, 500).hop, DC_ONRAMP);
  assert.equal(s2c(5001, 601, TCP_ACK_FLAG, 1000).hop, A_PRIMARY);
  const packetsBefore = [table.packets(0, 0), table.packets(0, 1)];
  assert.equal(s2c(5001 + 10_000_000, 601, TCP_ACK_FLAG, 100).drop, Drop.TcpOutOfWindow, 'far outside the window');
  assert.equal(s2c(6001, 601 + 1_000_000, TCP_ACK_FLAG).drop, Drop.TcpOutOfWindow, 'acknowledges data never sent');
  assert.deepEqual([table.packets(0, 0), table.packets(0, 1)], packetsBefore, 'refused segments are not counted');
  assert.equal(c2s(601, 6001, TCP_FIN | TCP_ACK_FLAG).hop, DC_ONRAMP);
  assert.equal(s2c(6001, 602, TCP_FIN | TCP_ACK_FLAG).hop, A_PRIMARY);
  assert.equal(c2s(602, 6002, TCP_ACK_FLAG).hop, DC_ONRAMP);
  assert.equal(table.state(0), TcpState.TimeWait);
  edge.advance(121 * SECOND);
  assert.equal(table.size, 0, 'TIME-WAIT ends after 2 MSL');
});

test('TCP RST: accepted in window and closes; refused out of window with state unchanged', () => {
  const edge = new PipelineRig(twoSites());
  const table = edge.pipeline.flows4;
  edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 1, dstPort: 2, seq: 10, flags: TCP_SYN }));
  edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 2, dstPort: 1, seq: 50, ack: 11, flags: TCP_SYN | TCP_ACK_FLAG }));
  edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 1, dstPort: 2, seq: 11, ack: 51, flags: TCP_ACK_FLAG }));
  const blind = edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 2, dstPort: 1, seq: 50 + 30000, flags: TCP_RST }));
  assert.equal(blind.drop, Drop.TcpOutOfWindow);
  assert.equal(table.state(0), TcpState.Established);
  const exact = edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 2, dstPort: 1, seq: 51, flags: TCP_RST }));
  assert.equal(exact.hop, A_PRIMARY);
  assert.equal(table.state(0), TcpState.Close);
});

test('UDP and ICMP timeouts on an injected clock; an expired mapping frees its port', () => {
  const edge = new PipelineRig(twoSites());
  const table = edge.pipeline.flows4;
  const udp = (port: number) => buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: port });
  edge.send(A_PRIMARY, udp(53));
  edge.advance(119 * SECOND);
  assert.equal(table.size, 1, 'an unreplied UDP flow lives at least 2 minutes (RFC 4787 REQ-5)');
  edge.advance(2 * SECOND);
  assert.equal(table.size, 0);

  const out = edge.send(A_PRIMARY, udp(53));
  edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: out.parsed.srcPort }));
  edge.advance(290 * SECOND);
  edge.send(A_PRIMARY, udp(53)); // outbound refresh (RFC 4787 REQ-6)
  edge.advance(290 * SECOND);
  assert.equal(table.size, 1, 'refreshed by outbound traffic');
  edge.advance(11 * SECOND);
  assert.equal(table.size, 0, 'an answered UDP flow ends 5 minutes after its last packet');

  // B's identical tuple now gets the preserved port that A's expired mapping held.
  assert.equal(edge.send(B_PRIMARY, udp(53)).parsed.srcPort, 40000);

  edge.send(A_PRIMARY, buildIcmpEcho({ src: HOST, dst: SERVER }, { type: 'request', id: 9 }));
  edge.advance(59 * SECOND);
  assert.equal(table.size, 2);
  edge.advance(2 * SECOND);
  assert.equal(table.size, 1, 'ICMP query flows last 60 s (RFC 5508 REQ-1)');
});

test('capacity and quotas: a flood from site B never evicts site A\'s established flows', () => {
  // Early drop on its own: the automatic per-onramp quotas (fair shares, on by default) switched off, 0 = no quota.
  const config = twoSites({ flows: { capacity4: 256, capacity6: 16 } });
  config.onramps = config.onramps.map((o) => ({ ...o, maxFlows: 0 }));
  const edge = new PipelineRig(config);
  const table = edge.pipeline.flows4;
  const mappings: number[] = [];
  for (let i = 0; i < 200; i++) {
    const out = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 10000 + i, dstPort: 53 }));
    assert.equal(out.hop, INTERNET);
    mappings.push(out.parsed.srcPort);
    assert.equal(edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: out.parsed.srcPort })).hop, A_PRIMARY);
  }
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const flood = edge.send(B_PRIMARY, buildUdp({ src: `10.0.${i >> 8}.${i & 0xff}`, dst: SERVER }, { srcPort: 1000 + (i % 50000), dstPort: 80 }));
    if (flood.hop < 0) {
      assert.equal(flood.drop, Drop.TableFull);
      refused++;
    }
  }
  assert.equal(refused, 0, 'the flood evicts only its own unestablished flows');
  assert.ok(table.size <= 256, `table holds ${table.size} flows, more than its capacity`);
  for (const port of mappings) {
    assert.equal(edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: port })).hop, A_PRIMARY, 'A\'s flows survived');
  }

  // With a quota, B's onramp stops at its share.
  const quoted = new PipelineRig(twoSites());
  quoted.pipeline.setOnramp({ id: B_PRIMARY, name: 'b', type: 'gre', site: 2, automaticReturnRouting: true, maxFlows: 50 });
  let quota = 0;
  for (let i = 0; i < 80; i++) {
    if (quoted.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 2000 + i, dstPort: 80 })).drop === Drop.QuotaExceeded) quota++;
  }
  assert.equal(quota, 30);
  assert.equal(quoted.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 2000, dstPort: 80 })).hop, INTERNET, 'A is not limited by B\'s quota');
});

test('fragments: a large UDP reply in fragments, out of order, reaches the site whole and translated', () => {
  const edge = new PipelineRig(twoSites());
  const out = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53 }));
  const payload = new Uint8Array(3000).map((_, i) => i & 0xff);
  const big = buildUdp({ src: SERVER, dst: POOL, id: 4242 }, { srcPort: 53, dstPort: out.parsed.srcPort, payload });
  const frags = fragmentIpv4(big, 1280);
  assert.ok(frags.length >= 3, 'the datagram is cut into at least three fragments');
  const last = edge.send(INTERNET, frags[frags.length - 1]);
  assert.equal(last.hop, -1);
  assert.equal(last.drop, Drop.None, 'held, not dropped');
  const first = edge.send(INTERNET, frags[0]);
  assert.equal(first.hop, A_PRIMARY);
  assert.equal(first.parsed.dst, HOST);
  const released = edge.generated();
  assert.equal(released.length, 1);
  assert.equal(released[0].hop, A_PRIMARY);
  assert.equal(released[0].parsed.dst, HOST);
  const rest = frags.slice(1, -1).map((f) => edge.send(INTERNET, f));
  for (const r of rest) {
    assert.equal(r.hop, A_PRIMARY);
    assert.equal(r.parsed.dst, HOST);
    assert.equal(r.parsed.drop, Drop.None);
  }
  // Reassemble what A receives and check the UDP checksum over the whole datagram.
  const whole = reassemble([first.bytes, ...rest.map((r) => r.bytes), released[0].bytes]);
  assert.deepEqual(whole.payload, payload);
  assert.ok(whole.checksumOk, 'UDP checksum of the reassembled datagram verifies');
  // A fragment nobody asked for times out.
  const orphan = fragmentIpv4(buildUdp({ src: SERVER, dst: POOL, id: 9 }, { srcPort: 53, dstPort: 1, payload }), 1280);
  edge.send(INTERNET, orphan[1]);
  edge.advance(31 * SECOND);
  assert.ok(edge.pipeline.counters.drops[Drop.FragmentTimeout] >= 1, 'the orphan fragment is counted as timed out');
});

test('TTL: decremented on the way through; a packet that would expire is dropped', () => {
  const edge = new PipelineRig(twoSites());
  const out = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 9 }, { srcPort: 1, dstPort: 2 }));
  assert.equal(out.parsed.ttl, 8);
  assert.equal(edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 1, dstPort: 2 })).drop, Drop.TtlExceeded);
});

test('garbage in, counted drops out; unknown ports and martians refused', () => {
  const edge = new PipelineRig(twoSites());
  assert.equal(edge.send(A_PRIMARY, Uint8Array.of(0x45, 0, 0)).drop, Drop.Truncated);
  assert.equal(edge.send(A_PRIMARY, new Uint8Array(40).fill(0x99)).drop, Drop.BadVersion);
  assert.equal(edge.send(77, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 1, dstPort: 2 })).drop, Drop.UnknownPort);
  assert.equal(edge.send(A_PRIMARY, buildUdp({ src: '127.0.0.1', dst: SERVER }, { srcPort: 1, dstPort: 2 })).drop, Drop.BadAddress);
  assert.equal(edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: '224.0.0.5' }, { srcPort: 1, dstPort: 2 })).drop, Drop.BadAddress);
  const c = edge.pipeline.counters;
  assert.equal(c.drops[Drop.Truncated], 1);
  assert.equal(c.rxDrops[A_PRIMARY], 4);
});

test('an onramp removed: every flow that names it ends at once (counted, reason OnrampRemoved, NAT released); other sites\' flows stay', () => {
  const rig = new PipelineRig(twoSites());
  const p = rig.pipeline;
  const reasons: number[] = [];
  p.onFlowEnd = (_t, _f, reason) => reasons.push(reason);
  const fromA = rig.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 41000, dstPort: 53 }));
  rig.send(A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 41001, dstPort: 53 }));
  rig.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 41000, dstPort: 53 }));
  // A flow from the data center toward site A's onramp (next hop = the onramp to be removed).
  // Both sites announce 10.0.1.0/24 (equal routes): the flow goes to one of them.
  const toA = rig.send(DC_ONRAMP, buildUdp({ src: DC_SERVER, dst: HOST }, { srcPort: 53, dstPort: 41002 })).hop === A_PRIMARY ? 1 : 0;
  assert.equal(fromA.hop, INTERNET);
  assert.equal(p.flows4.size, 4);
  p.ports.remove(A_PRIMARY);
  assert.equal(p.endFlowsOf([A_PRIMARY]), 2 + toA, 'the two flows it started, and the one routed to it');
  assert.deepEqual(reasons, new Array(2 + toA).fill(RemoveReason.OnrampRemoved));
  assert.equal(p.counters.flowsEndedByRemoval, 2 + toA);
  assert.equal(p.flows4.size, 2 - toA, 'site B\'s flows stay');
  assert.equal(p.endFlowsOf([]), 0);
  // Site B's reply still arrives; site A's reply finds no flow.
  const translated = rig.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 41000, dstPort: 53 }));
  assert.equal(rig.send(INTERNET, buildUdp({ src: SERVER, dst: translated.parsed.src }, { srcPort: 53, dstPort: translated.parsed.srcPort })).hop, B_PRIMARY);
  assert.equal(rig.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: fromA.parsed.srcPort })).hop, -1);
});
