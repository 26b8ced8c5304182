// The daemon's health driver in-process: a pure pipeline, a stand-in for the edge's deliver, time by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketBatch } from '../common/packet-batch.js';
import { NEXT_HOP_DROP } from '../common/ids.js';
import type { OnrampConfig } from '../config/index.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { PENALTY_DEGRADED, PENALTY_DOWN, RATE_INTERVAL_MS, RATE_TIMEOUT_MS, SILENCE_PROBE_MS } from '../health/constants.js';
import { REJECT_AFTER_TIME_MS } from '../onramp/wireguard/constants.js';
import { NextHopKind } from '../route/route-table.js';
import { buildIcmpEcho, parsePacket } from '../wire/build.js';
import { EdgeHealth, TRAFFIC_LOOK_INTERVAL_MS, wireGuardAlive } from './health.js';
import { LaneTraffic } from './lanes.js';

const GRE = 1;
const WG = 2;
const EDGE_TUNNEL = '100.64.0.1';
const TARGET = '10.0.1.1';

const greOnramp = (extra: Partial<OnrampConfig> = {}): OnrampConfig => ({
  name: 'site-gre', type: 'gre', automatic_return_routing: true, preference: 100, max_flows: 0,
  gre: { local: '192.0.2.1', remote: '192.0.2.2', mtu: 1476 },
  health_check: { source: EDGE_TUNNEL, target: TARGET, rate: 'mid', type: 'request' },
  ...extra,
} as OnrampConfig);

function setup(lastHandshake: (id: number) => number | undefined = () => undefined, lanes?: LaneTraffic) {
  const pipeline = new Pipeline({
    onramps: [
      { id: GRE, name: 'site-gre', type: 'gre', site: 1, automaticReturnRouting: true, localAddress: EDGE_TUNNEL },
      { id: WG, name: 'site-wg', type: 'wireguard', site: 2, automaticReturnRouting: true },
    ],
    routes: [
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: GRE },
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: WG, priority: 200 },
    ],
  });
  const sent: Array<{ hop: number; bytes: Uint8Array }> = [];
  const lines: Array<Record<string, unknown>> = [];
  const log = { info: (o: object, m?: string) => lines.push({ ...o, msg: m }), warn() {}, error() {}, debug() {} };
  const health = new EdgeHealth({
    pipeline,
    log,
    send: (b) => {
      for (let i = 0; i < b.count; i++) sent.push({ hop: b.nextHop[i], bytes: b.packet(i).slice() });
    },
    lastHandshakeAt: lastHandshake,
    isRunning: () => false, // no timers: the test drives run()
    ...(lanes !== undefined ? { lanes } : {}),
  });
  const batch = new PacketBatch(4);
  /** The site answers a probe: its reply enters the pipeline from the onramp. */
  const answer = (probe: Uint8Array, now: number): number => {
    const p = parsePacket(probe);
    const seq = (probe[p.l4Offset + 6] << 8) | probe[p.l4Offset + 7];
    const reply = buildIcmpEcho({ src: p.dst, dst: p.src }, { type: 'reply', id: p.icmp!.id, seq });
    batch.clear();
    batch.push(reply, 0, reply.length, GRE);
    pipeline.process(batch, now);
    return batch.nextHop[0];
  };
  return { pipeline, health, sent, lines, answer };
}

test('probes go into the onramp (next hop set, echo request from the tunnel address); answered ones keep it healthy', () => {
  const { pipeline, health, sent, lines, answer } = setup();
  health.set(GRE, greOnramp(), 0);
  for (let t = 0; t < 5_000; t += RATE_INTERVAL_MS.mid) {
    health.run(t);
    const last = sent.at(-1)!;
    assert.equal(last.hop, GRE);
    const p = parsePacket(last.bytes);
    assert.equal(p.src, EDGE_TUNNEL);
    assert.equal(p.dst, TARGET);
    assert.equal(p.icmp?.type, 8);
    assert.equal(answer(last.bytes, t + 5), NEXT_HOP_DROP, 'the reply is consumed');
  }
  assert.equal(sent.length, 5);
  assert.equal(health.view(GRE)?.state, 'healthy');
  assert.equal(health.view(GRE)?.rtt_ms, 5);
  assert.equal(pipeline.flows4.size, 0);
  assert.equal(lines.length, 0);
});

test('a target that stops answering: down within about a second, penalty on its routes, one log line per transition; bounded while it stays silent', () => {
  const { pipeline, health, sent, lines, answer } = setup();
  health.set(GRE, greOnramp(), 0);
  health.run(0);
  answer(sent.at(-1)!.bytes, 3);
  // Cut at 500: nothing answers any more. Drive the rounds the timer would (every 100 ms is finer than needed).
  let downAt = -1;
  for (let t = 100; t <= 600_000; t += 100) {
    health.run(t);
    if (downAt < 0 && health.view(GRE)?.state === 'down') downAt = t;
  }
  assert.ok(downAt > 0 && downAt - 500 <= 2_000, `down ${downAt - 500} ms after the cut`);
  assert.equal(pipeline.routes.penaltyOf(GRE), PENALTY_DOWN);
  assert.equal(pipeline.ports.up[GRE], 0);
  assert.equal(pipeline.routes.lookupAddress(0, '10.0.1.10'), 1, 'the route over the other onramp wins');
  assert.deepEqual(lines.map((l) => [l.onramp, l.from, l.to, l.msg]), [
    ['site-gre', 'healthy', 'degraded', 'onramp health'],
    ['site-gre', 'degraded', 'down', 'onramp health'],
  ], 'ten minutes of silence: two lines, no more');
  const l = lines[1];
  assert.equal(l.reason, 'consecutive-failures');
  assert.equal(l.penalty, PENALTY_DOWN);
  assert.ok(typeof l.loss === 'number' && l.loss > 0);
  // One probe per interval while down (no re-probe storms): about 600 over ten minutes.
  assert.ok(sent.length <= 600 + 5, `${sent.length} probes`);

  // The target answers again: three good probes bring it back to degraded (not healthy: hysteresis).
  const before = lines.length;
  let t = 600_100;
  for (; health.view(GRE)?.state === 'down' && t < 610_000; t += 10) {
    const n = sent.length;
    health.run(t);
    if (sent.length > n) answer(sent.at(-1)!.bytes, t + 2);
  }
  health.run(t); // the round the edge runs right after a batch that brought the engine evidence (afterPackets)
  assert.equal(health.view(GRE)?.state, 'degraded');
  assert.equal(pipeline.routes.penaltyOf(GRE), PENALTY_DEGRADED);
  assert.equal(pipeline.ports.up[GRE], 1);
  assert.deepEqual(lines.slice(before).map((x) => [x.from, x.to, x.reason]), [['down', 'degraded', 'consecutive-successes']]);
});

test('traffic into an onramp that answers nothing (the pipeline\'s packet counts): probed at once, down within SILENCE_PROBE_MS + a look + three timeouts', () => {
  const { pipeline, health, sent, answer } = setup();
  health.set(GRE, greOnramp(), 0);
  const { txPackets, rxPackets } = pipeline.counters;
  // Data goes out and comes back (answers through the pipeline count as received) until the cut, just after
  // a regular probe was answered; then only the data in flight still goes out.
  const cut = 10;
  let downAt = -1;
  for (let t = 0; t <= 3_000 && downAt < 0; t++) {
    if (t < cut + 3) txPackets[GRE]++;
    if (t < cut) rxPackets[GRE]++;
    const n = sent.length;
    health.run(t);
    if (sent.length > n && t < cut) answer(sent.at(-1)!.bytes, t + 1);
    if (health.view(GRE)?.state === 'down') downAt = t;
  }
  const bound = SILENCE_PROBE_MS + TRAFFIC_LOOK_INTERVAL_MS + 3 * RATE_TIMEOUT_MS.mid;
  assert.ok(downAt > 0 && downAt - cut <= bound, `down ${downAt - cut} ms after the cut (bound ${bound}, the interval alone would give ${RATE_INTERVAL_MS.mid} + three timeouts)`);
  assert.equal(pipeline.routes.penaltyOf(GRE), PENALTY_DOWN);
});

/**
 * Two lanes: lane 0's pipeline (the health checks') and lane 1's counts, published into a LaneTraffic board every
 * TRAFFIC_LOOK_INTERVAL_MS half a period out of phase with lane 0's looks (as the worker's timer is).
 */
function twoLanes() {
  const board = new LaneTraffic(LaneTraffic.create(2), 2);
  const lane1 = { tx: new Float64Array(GRE + 1), rx: new Float64Array(GRE + 1) };
  const publishAt = (t: number): void => {
    if (t % TRAFFIC_LOOK_INTERVAL_MS === TRAFFIC_LOOK_INTERVAL_MS >> 1) board.publish(1, lane1.tx, lane1.rx, [GRE]);
  };
  return { board, lane1, publishAt };
}

test('lanes: an onramp that lane 0 sends into and whose answers lane 1 reads is not silent (its counts add up); lane 0 alone would probe it every 100 ms', () => {
  const silenceProbes = (withBoard: boolean): number => {
    const { board, lane1, publishAt } = twoLanes();
    const { pipeline, health, sent, answer } = setup(undefined, withBoard ? board : undefined);
    health.set(GRE, greOnramp(), 0);
    for (let t = 0; t <= 5_000; t++) {
      pipeline.counters.txPackets[GRE]++;
      lane1.rx[GRE]++;
      publishAt(t);
      const n = sent.length;
      health.run(t);
      if (sent.length > n) answer(sent.at(-1)!.bytes, t + 1);
    }
    assert.equal(health.view(GRE)?.state, 'healthy');
    return pipeline.health.counters(GRE)!.silenceProbes;
  };
  assert.equal(silenceProbes(true), 0, 'every lane\'s counts: traffic both ways, no silence');
  assert.ok(silenceProbes(false) >= 5_000 / (2 * SILENCE_PROBE_MS), 'the oracle: lane 0\'s counts alone see a one-way stream');
});

test('lanes: traffic only lane 1 sends into a cut tunnel is probed at once: down within SILENCE_PROBE_MS + two looks (publish, look) + three timeouts', () => {
  const { board, lane1, publishAt } = twoLanes();
  const { pipeline, health, sent, answer } = setup(undefined, board);
  health.set(GRE, greOnramp(), 0);
  const cut = 10;
  let downAt = -1;
  for (let t = 0; t <= 3_000 && downAt < 0; t++) {
    if (t < cut + 3) lane1.tx[GRE]++;
    if (t < cut) lane1.rx[GRE]++;
    publishAt(t);
    const n = sent.length;
    health.run(t);
    if (sent.length > n && t < cut) answer(sent.at(-1)!.bytes, t + 1);
    if (health.view(GRE)?.state === 'down') downAt = t;
  }
  const bound = SILENCE_PROBE_MS + 2 * TRAFFIC_LOOK_INTERVAL_MS + 3 * RATE_TIMEOUT_MS.mid;
  assert.ok(downAt > 0 && downAt - cut <= bound, `down ${downAt - cut} ms after the cut (bound ${bound}; lane 0's counts alone: the interval, ${RATE_INTERVAL_MS.mid} + three timeouts)`);
  assert.equal(pipeline.health.counters(GRE)!.silenceProbes, 1);
});

test('LaneTraffic: each lane\'s row, summed over lanes ≥ 1 per onramp and direction, modulo 2^32 per lane; ids out of range read 0', () => {
  const board = new LaneTraffic(LaneTraffic.create(3), 3);
  const c = (tx: number[], rx: number[]) => ({ tx: Float64Array.from(tx), rx: Float64Array.from(rx) });
  const one = c([0, 5, 7], [0, 1, 2]);
  const two = c([0, 10, 2 ** 32 + 3], [0, 100, 0]);
  board.publish(1, one.tx, one.rx, [1, 2]);
  board.publish(2, two.tx, two.rx, [1, 2, 0, 70_000]);
  assert.deepEqual([board.sent(1), board.received(1), board.sent(2), board.received(2)], [15, 101, 10, 2]);
  assert.deepEqual([board.sent(0), board.sent(70_000), board.received(-1)], [0, 0, 0]);
  assert.throws(() => new LaneTraffic(LaneTraffic.create(2), 3), /not a board for 3 lanes/);
});

test('WireGuard session age: alive until Reject-After-Time; a stale peer goes down by evidence alone', () => {
  assert.equal(wireGuardAlive(1_000, 0, 1_000 + REJECT_AFTER_TIME_MS - 1), true);
  assert.equal(wireGuardAlive(1_000, 0, 1_000 + REJECT_AFTER_TIME_MS), false);
  assert.equal(wireGuardAlive(-Infinity, 5_000, 5_000 + REJECT_AFTER_TIME_MS - 1), true, 'a new peer gets the same grace');
  assert.equal(wireGuardAlive(-Infinity, 5_000, 5_000 + REJECT_AFTER_TIME_MS), false);

  // WireGuard's handshake times are on the health round's monotonic clock: this one lies before Reject-After-Time.
  const stale = -REJECT_AFTER_TIME_MS - 1_000;
  const { pipeline, health, lines } = setup((id) => (id === WG ? stale : undefined));
  const wg = { name: 'site-wg', type: 'wireguard', automatic_return_routing: true, preference: 100, max_flows: 0, wireguard: { device: 'd', public_key: 'k', allowed_ips: ['10.0.2.0/24'], persistent_keepalive: 0 } } as OnrampConfig;
  health.set(WG, wg, 0);
  health.set(GRE, greOnramp({ health_check: undefined }), 0); // passive, no evidence: stays healthy
  // The peer was added just now, so the grace covers it: measured from its handshake only once it had one.
  for (let t = 0; t <= 3_000; t += 1_000) health.run(t);
  assert.equal(health.view(WG)?.state, 'healthy', 'within the grace of a newly added peer');
  assert.equal(lines.length, 0);
  assert.equal(health.view(GRE)?.state, 'healthy');
  assert.equal(pipeline.routes.penaltyOf(WG), 0);
});

test('set is idempotent and keeps the state; remove stops checking', () => {
  const { health, sent } = setup();
  health.set(GRE, greOnramp(), 0);
  health.set(GRE, greOnramp(), 10);
  health.run(20);
  assert.equal(sent.length, 1);
  health.set(GRE, greOnramp({ health_check: { source: EDGE_TUNNEL, target: '10.0.1.2', rate: 'high', type: 'request' } }), 30);
  health.run(30);
  assert.equal(parsePacket(sent.at(-1)!.bytes).dst, '10.0.1.2', 'a new target is probed at once');
  health.remove(GRE);
  assert.equal(health.view(GRE), undefined);
  health.run(10_000);
  assert.equal(sent.length, 2);
});

test('switching a down onramp to another kind of check starts it over healthy (a passive onramp would never recover)', () => {
  const { pipeline, health, lines } = setup();
  health.set(GRE, greOnramp(), 0);
  for (let t = 0; t <= 5_000; t += 100) health.run(t);
  assert.equal(health.view(GRE)?.state, 'down');
  health.set(GRE, greOnramp({ health_check: undefined }), 5_100);
  assert.equal(health.view(GRE)?.state, 'healthy');
  assert.equal(pipeline.routes.penaltyOf(GRE), 0);
  assert.equal(pipeline.ports.up[GRE], 1);
  assert.deepEqual([lines.at(-1)!.from, lines.at(-1)!.to, lines.at(-1)!.reason], ['down', 'healthy', 'reconfigured']);
});
