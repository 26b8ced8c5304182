/**
 * Site failover and failback (issue 8, scope item 3): a site with a primary and a backup onramp, its policy
 * (follow, pin, drain) moving established flows' replies between them on an injected clock; replies never
 * leave the site; a randomized comparison against a slow oracle of the policy rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Drop } from '../../src/common/drop-reasons.js';
import { describeFlow, describeReturn, explain } from '../../src/dataplane/explain.js';
import { RETURN_REASONS } from '../../src/dataplane/pipeline.js';
import type { FailoverPolicyName, OnrampSpec } from '../../src/dataplane/ports.js';
import { buildTcp, buildUdp } from '../../src/wire/build.js';
import { IPPROTO_UDP, TCP_ACK_FLAG, TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_BACKUP, A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, SITE_A, onramp, twoSites } from '../support/topology.js';

const SECOND = 1000;
const DRAIN_IDLE_MS = 30 * SECOND;
const POLICIES: FailoverPolicyName[] = ['follow', 'pin', 'drain'];

/** twoSites() with site A's failover policy set. */
function siteA(policy: FailoverPolicyName, arr = true): PipelineRig {
  return new PipelineRig({ ...twoSites({ arr }), sites: [{ id: SITE_A, failover: { policy, drainIdleMs: DRAIN_IDLE_MS } }] });
}

/** One UDP flow of site A's host to the Internet: send its packets in on an onramp, its replies in from the Internet. */
function udpFlow(edge: PipelineRig, srcPort = 40000) {
  const out = (port: number) => edge.send(port, buildUdp({ src: HOST, dst: SERVER }, { srcPort, dstPort: 443 }));
  const first = out(A_PRIMARY);
  assert.equal(first.hop, INTERNET);
  const mapped = first.parsed.srcPort;
  const reply = () => edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 443, dstPort: mapped }));
  const flow = () => edge.pipeline.flows4.lookup4(0, IPPROTO_UDP, ip(SERVER), ip(POOL), (443 << 16) | mapped) >> 1;
  return { out, reply, flow, mapped };
}

function ip(text: string): number {
  return text.split('.').reduce((a, b) => (a << 8) | Number(b), 0) >>> 0;
}

const reason = (edge: PipelineRig, flow: number) => RETURN_REASONS[edge.pipeline.flows4.returnReason(flow)];

for (const policy of POLICIES) {
  test(`${policy}: the primary goes down mid-flow → replies to the backup; it recovers → ${policy === 'drain' ? 'the flow stays on the backup' : 'back to the primary'}`, () => {
    const edge = siteA(policy);
    const f = udpFlow(edge);
    assert.equal(f.reply().hop, A_PRIMARY);
    edge.pipeline.setOnrampUp(A_PRIMARY, false);
    assert.equal(f.reply().hop, A_BACKUP, 'failover to the best healthy onramp of the site');
    edge.advance(SECOND);
    assert.equal(f.reply().hop, A_BACKUP);
    edge.pipeline.setOnrampUp(A_PRIMARY, true);
    assert.equal(f.reply().hop, policy === 'drain' ? A_BACKUP : A_PRIMARY);
    assert.equal(reason(edge, f.flow()), policy === 'drain' ? 'failover' : 'recorded');
  });

  test(`${policy}: the flow arrives on the backup while the primary is up → ${policy === 'pin' ? 'replies stay on the primary' : 'replies move to the backup'}`, () => {
    const edge = siteA(policy);
    const f = udpFlow(edge);
    assert.equal(f.reply().hop, A_PRIMARY);
    assert.equal(f.out(A_BACKUP).hop, INTERNET, 'the same flow, from the other onramp of the site');
    assert.equal(edge.pipeline.flows4.size, 1);
    assert.equal(f.reply().hop, policy === 'pin' ? A_PRIMARY : A_BACKUP);
    assert.equal(reason(edge, f.flow()), policy === 'pin' ? 'recorded' : 'last-arrival');
    // And back on the primary: follow moves again; drain waits for the flow to go idle; pin never moved.
    edge.advance(SECOND);
    f.out(A_PRIMARY);
    assert.equal(f.reply().hop, policy === 'drain' ? A_BACKUP : A_PRIMARY);
  });

  test(`${policy}: a forged packet from another site never moves a flow`, () => {
    for (const arr of [true, false]) {
      const edge = siteA(policy, arr);
      const f = udpFlow(edge);
      if (arr) {
        // Without ARR replies are routed by destination (the classic ambiguity): only the owner check protects.
        edge.pipeline.setOnrampUp(A_PRIMARY, false);
        assert.equal(f.reply().hop, A_BACKUP);
        edge.pipeline.setOnrampUp(A_PRIMARY, true);
        f.reply();
      }
      const before = [edge.pipeline.flows4.returnPort(f.flow())];
      edge.advance(2 * DRAIN_IDLE_MS);
      // Site B sends A's tuple: with ARR it is B's own flow (its own zone); without, the owner check refuses it.
      const forged = f.out(B_PRIMARY);
      if (arr) {
        assert.equal(forged.hop, INTERNET, 'B gets a flow of its own');
        assert.equal(edge.pipeline.flows4.size, 2);
      } else {
        assert.equal(forged.drop, Drop.FlowOwnerMismatch);
        // B forging the reply direction (in the global zone it finds A's flow, and does not own that direction either).
        assert.equal(edge.send(B_PRIMARY, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 443, dstPort: f.mapped })).drop, Drop.FlowOwnerMismatch);
      }
      assert.equal(edge.pipeline.flows4.returnPort(f.flow()), before[0], `arr ${arr}: the return onramp did not move`);
      if (arr) assert.ok([A_PRIMARY, A_BACKUP].includes(f.reply().hop), 'replies stay in site A');
    }
  });
}

test('drain: established flows stay on the backup until idle for drain_idle_seconds, then move; new flows take the primary', () => {
  const edge = siteA('drain');
  const table = edge.pipeline.flows4;
  // A TCP flow from site A to the data center, and a UDP flow to the Internet.
  const c2s = (port: number, seq: number, ack: number, flags: number) => edge.send(port, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 5000, dstPort: 22, seq, ack, flags }));
  const s2c = (seq: number, ack: number, flags: number, len = 0) => edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 22, dstPort: 5000, seq, ack, flags, payload: new Uint8Array(len) }));
  assert.equal(c2s(A_PRIMARY, 100, 0, TCP_SYN).hop, DC_ONRAMP);
  assert.equal(s2c(900, 101, TCP_SYN | TCP_ACK_FLAG).hop, A_PRIMARY);
  assert.equal(c2s(A_PRIMARY, 101, 901, TCP_ACK_FLAG).hop, DC_ONRAMP);
  const udp = udpFlow(edge);

  // The primary is cut; the site's router sends the TCP flow over the backup; health marks the primary down.
  assert.equal(c2s(A_BACKUP, 101, 901, TCP_ACK_FLAG).hop, DC_ONRAMP);
  let seq = 901;
  assert.equal(s2c(seq, 101, TCP_ACK_FLAG, 100).hop, A_BACKUP, 'TCP: moved by its arrival on the backup');
  seq += 100;
  edge.pipeline.setOnrampUp(A_PRIMARY, false);
  assert.equal(udp.reply().hop, A_BACKUP, 'UDP: moved when its return onramp went down');

  // The primary recovers. Both flows stay busy (a packet every 10 s, for longer than the idle time): they stay.
  edge.advance(5 * SECOND);
  edge.pipeline.setOnrampUp(A_PRIMARY, true);
  for (let i = 0; i < 6; i++) {
    edge.advance(10 * SECOND);
    assert.equal(s2c(seq, 101, TCP_ACK_FLAG, 100).hop, A_BACKUP, `TCP stays on the backup (${i})`);
    seq += 100;
    assert.equal(c2s(A_PRIMARY, 101, seq, TCP_ACK_FLAG).hop, DC_ONRAMP, 'the site sends over the primary again');
    assert.equal(udp.reply().hop, A_BACKUP, `UDP stays on the backup (${i})`);
  }
  // A new flow takes the primary.
  const fresh = udpFlow(edge, 40001);
  assert.equal(fresh.reply().hop, A_PRIMARY);
  const freshTcp = edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 5001, dstPort: 22, seq: 1, flags: TCP_SYN }));
  assert.equal(freshTcp.hop, DC_ONRAMP);
  assert.equal(edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 22, dstPort: 5001, seq: 7, ack: 2, flags: TCP_SYN | TCP_ACK_FLAG })).hop, A_PRIMARY);

  // Idle for just under the drain time: still on the backup. Then idle for the full time: moved back.
  edge.advance(DRAIN_IDLE_MS - 1);
  assert.equal(udp.reply().hop, A_BACKUP, 'idle for less than drain_idle_seconds');
  edge.advance(DRAIN_IDLE_MS);
  assert.equal(udp.reply().hop, A_PRIMARY, 'idle for drain_idle_seconds: drained back');
  assert.equal(reason(edge, udp.flow()), 'drained-back');
  edge.advance(DRAIN_IDLE_MS);
  assert.equal(s2c(seq, 101, TCP_ACK_FLAG, 100).hop, A_PRIMARY, 'TCP drained back too');
  const tcpFlow = table.lookup4(SITE_A, 6, ip(HOST), ip(DC_SERVER), (5000 << 16) | 22) >> 1;
  assert.equal(reason(edge, tcpFlow), 'drained-back');
  assert.equal(table.returnPort(tcpFlow), A_PRIMARY);
});

test('drain: a backup that goes down too sends replies to whatever of the site is up; with nothing up, to the recorded onramp', () => {
  const edge = new PipelineRig({
    ...twoSites(),
    onramps: [...twoSites().onramps, onramp(4, SITE_A, true, { preference: 30 })],
    sites: [{ id: SITE_A, failover: { policy: 'drain', drainIdleMs: DRAIN_IDLE_MS } }],
  });
  const f = udpFlow(edge);
  edge.pipeline.setOnrampUp(A_PRIMARY, false);
  assert.equal(f.reply().hop, A_BACKUP);
  edge.pipeline.setOnrampUp(A_BACKUP, false);
  assert.equal(f.reply().hop, 4);
  edge.pipeline.setOnrampUp(4, false);
  assert.equal(f.reply().hop, 4, 'nothing up: the return onramp anyway');
  edge.pipeline.setOnrampUp(A_PRIMARY, true);
  assert.equal(f.reply().hop, A_PRIMARY);
});

test('explain and the decision trail say which policy applied and why the reply goes where it goes', () => {
  const edge = siteA('drain');
  const f = udpFlow(edge);
  const replyExplained = () => explain(edge.pipeline, { onramp: INTERNET, protocol: IPPROTO_UDP, src: SERVER, dst: POOL, srcPort: 443, dstPort: f.mapped });
  let r = describeReturn(edge.pipeline, edge.pipeline.flows4, f.flow());
  assert.equal(r.policy, 'drain');
  assert.equal(r.reason, 'recorded');
  assert.equal(r.onramp, A_PRIMARY);
  assert.match(r.note, /recorded at setup/);
  assert.equal(describeFlow(edge.pipeline.flows4, f.flow()).returnReason, 'recorded');

  edge.pipeline.setOnrampUp(A_PRIMARY, false);
  let e = replyExplained();
  assert.equal(e.nextHop, A_BACKUP);
  assert.match(e.replies!.note, /failed over to when its return onramp was down/);
  f.reply();
  edge.pipeline.setOnrampUp(A_PRIMARY, true);
  r = describeReturn(edge.pipeline, edge.pipeline.flows4, f.flow());
  assert.equal(r.reason, 'failover');
  assert.equal(r.onramp, A_BACKUP);
  assert.match(r.note, /drain/);
  assert.match(r.note, /idle/);
  e = replyExplained();
  assert.equal(e.nextHop, A_BACKUP);
  assert.ok(e.trail.some((line) => /policy drain/.test(line)), e.trail.join('\n'));

  edge.advance(DRAIN_IDLE_MS);
  assert.equal(replyExplained().nextHop, A_PRIMARY, 'explain knows the next packet drains the flow back');
  f.reply();
  r = describeReturn(edge.pipeline, edge.pipeline.flows4, f.flow());
  assert.equal(r.reason, 'drained-back');
  assert.match(r.note, /drained back|moved back/);

  const follow = siteA('follow');
  const g = udpFlow(follow);
  g.out(A_BACKUP);
  assert.match(describeReturn(follow.pipeline, follow.pipeline.flows4, g.flow()).note, /last arrived/);
  const pin = siteA('pin');
  const h = udpFlow(pin);
  h.out(A_BACKUP);
  assert.match(describeReturn(pin.pipeline, pin.pipeline.flows4, h.flow()).note, /pin/);
  // A new flow's explanation names the site's policy.
  const fresh = explain(pin.pipeline, { onramp: A_PRIMARY, protocol: IPPROTO_UDP, src: HOST, dst: SERVER, srcPort: 1, dstPort: 2 });
  assert.match(fresh.replies!.note, /policy pin/);
});

test('policies are per site and replaced live: a site not listed follows', () => {
  const edge = siteA('pin');
  const f = udpFlow(edge);
  f.out(A_BACKUP);
  assert.equal(f.reply().hop, A_PRIMARY);
  edge.pipeline.setSites([]);
  assert.equal(edge.pipeline.ports.siteFailover(SITE_A).policy, 'follow');
  f.out(A_BACKUP);
  assert.equal(f.reply().hop, A_BACKUP, 'follow now applies to the established flow');
  edge.pipeline.setSites([{ id: SITE_A, failover: { policy: 'drain', drainIdleMs: DRAIN_IDLE_MS } }]);
  edge.advance(DRAIN_IDLE_MS);
  assert.equal(f.reply().hop, A_PRIMARY, 'drain, set while the flow sat on the backup: drained back after idling');
  assert.throws(() => edge.pipeline.setSites([{ id: SITE_A, failover: { policy: 'sideways' as FailoverPolicyName } }]), /failover policy/);
  assert.throws(() => edge.pipeline.setSites([{ id: 0, failover: { policy: 'pin' } }]), /site id/);
});

// ─── Randomized: the pipeline against a slow oracle of the policy rules ──────────────────────────────────

/** Site A's onramps for the property test: three, preferences out of id order. */
const SITE_A_ONRAMPS: OnrampSpec[] = [
  onramp(A_PRIMARY, SITE_A, true, { preference: 10 }),
  onramp(A_BACKUP, SITE_A, true, { preference: 20 }),
  onramp(4, SITE_A, true, { preference: 15 }),
];
const A_IDS = SITE_A_ONRAMPS.map((o) => o.id);
const FLOWS = 3;

type Event =
  | { kind: 'out'; flow: number; onramp: number }
  | { kind: 'reply'; flow: number }
  | { kind: 'forge'; flow: number }
  | { kind: 'health'; onramp: number; up: boolean }
  | { kind: 'wait'; ms: number };

interface OracleFlow {
  ret: number;
  reason: (typeof RETURN_REASONS)[number];
  last: number;
}

/** The rules, written out plainly: lists, sorts and filters, recomputed from scratch at every step. */
class FailoverOracle {
  readonly up = new Map<number, boolean>(A_IDS.map((id) => [id, true]));
  readonly flows = new Map<number, OracleFlow>();
  constructor(readonly policy: FailoverPolicyName, readonly idleMs: number) {}

  order(): number[] {
    return [...SITE_A_ONRAMPS].sort((a, b) => a.preference! - b.preference! || a.id - b.id).map((o) => o.id);
  }

  best(): number | undefined {
    return this.order().find((id) => this.up.get(id));
  }

  /** Where a reply goes: the return onramp while it is up, else the site's best healthy, else the return onramp. */
  replyHop(f: OracleFlow): number {
    return this.up.get(f.ret) ? f.ret : this.best() ?? f.ret;
  }

  /** A packet the flow accepts at t, in the original direction on `arrival` or (null) a reply. */
  packet(id: number, arrival: number | null, t: number): void {
    const f = this.flows.get(id);
    if (f === undefined) {
      this.flows.set(id, { ret: arrival!, reason: 'recorded', last: t });
      return;
    }
    const idle = t - f.last;
    f.last = t;
    // Each rule in turn on a candidate; the flow keeps its reason when the candidate ends where it started.
    const c = { ret: f.ret, reason: f.reason };
    if (this.policy === 'follow') {
      if (arrival !== null) Object.assign(c, { ret: arrival, reason: 'last-arrival' });
    } else if (this.policy === 'drain') {
      const order = this.order();
      const best = this.best();
      if (best !== undefined && best !== c.ret && idle >= this.idleMs) Object.assign(c, { ret: best, reason: 'drained-back' });
      if (arrival !== null && order.indexOf(arrival) > order.indexOf(c.ret)) Object.assign(c, { ret: arrival, reason: 'last-arrival' });
      if (!this.up.get(c.ret) && best !== undefined) Object.assign(c, { ret: best, reason: 'failover' });
    }
    if (c.ret !== f.ret) Object.assign(f, c);
  }
}

const eventArb: fc.Arbitrary<Event> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('out' as const), flow: fc.nat(FLOWS - 1), onramp: fc.constantFrom(...A_IDS) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('reply' as const), flow: fc.nat(FLOWS - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('forge' as const), flow: fc.nat(FLOWS - 1) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('health' as const), onramp: fc.constantFrom(...A_IDS), up: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.oneof(fc.integer({ min: 0, max: 2 * DRAIN_IDLE_MS }), fc.constantFrom(DRAIN_IDLE_MS - 1, DRAIN_IDLE_MS, DRAIN_IDLE_MS + 1)) }) },
);

test('randomized: replies follow the oracle of the policy rules over arrivals, health changes and time, and never leave the site', () => {
  fc.assert(
    fc.property(fc.constantFrom(...POLICIES), fc.array(eventArb, { minLength: 1, maxLength: 80 }), (policy, events) => {
      const base = twoSites({ flows: { capacity4: 64, capacity6: 16, timeouts: { udpUnreplied: 10 * 86400 * SECOND, udpEstablished: 10 * 86400 * SECOND } } });
      const edge = new PipelineRig({
        ...base,
        onramps: [...SITE_A_ONRAMPS, ...base.onramps.filter((o) => o.site !== SITE_A)],
        sites: [{ id: SITE_A, failover: { policy, drainIdleMs: DRAIN_IDLE_MS } }],
      });
      const oracle = new FailoverOracle(policy, DRAIN_IDLE_MS);
      const mapped = new Map<number, number>();
      const table = edge.pipeline.flows4;
      const flowIndex = (id: number) => table.lookup4(SITE_A, IPPROTO_UDP, ip(HOST), ip(SERVER), ((40000 + id) << 16) | 443) >> 1;
      for (const ev of events) {
        if (ev.kind === 'wait') {
          edge.advance(ev.ms);
        } else if (ev.kind === 'health') {
          edge.pipeline.setOnrampUp(ev.onramp, ev.up);
          oracle.up.set(ev.onramp, ev.up);
        } else if (ev.kind === 'out') {
          const sent = edge.send(ev.onramp, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000 + ev.flow, dstPort: 443 }));
          assert.equal(sent.hop, INTERNET);
          mapped.set(ev.flow, sent.parsed.srcPort);
          oracle.packet(ev.flow, ev.onramp, edge.now);
        } else if (ev.kind === 'forge') {
          // Site B sends A's tuple: its own flow in its own zone; A's flows do not move.
          edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000 + ev.flow, dstPort: 443 }));
        } else {
          const port = mapped.get(ev.flow);
          if (port === undefined) continue;
          const expected = oracle.flows.get(ev.flow)!;
          oracle.packet(ev.flow, null, edge.now);
          const hop = edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 443, dstPort: port })).hop;
          assert.ok(A_IDS.includes(hop), `a reply of site A left on ${hop}`);
          assert.equal(hop, oracle.replyHop(expected), `reply of flow ${ev.flow}`);
        }
        for (const [id, f] of oracle.flows) {
          const flow = flowIndex(id);
          assert.ok(flow >= 0);
          assert.equal(table.returnPort(flow), f.ret, `return onramp of flow ${id}`);
          assert.equal(RETURN_REASONS[table.returnReason(flow)], f.reason, `why, flow ${id}`);
        }
      }
    }),
    { numRuns: 300 },
  );
});
