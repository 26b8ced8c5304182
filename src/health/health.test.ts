import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildIcmpEcho, parsePacket } from '../wire/build.js';
import { RATE_INTERVAL_MS, RATE_TIMEOUT_MS, SILENCE_PROBE_MS, WINDOW_SECONDS, BUCKET_MS, type ProbeRate } from './constants.js';
import { HealthEngine, REPLY_MATCHED, REPLY_NOT_OURS, REPLY_REJECTED, buildProbe, type HealthEvent, type HealthSpec, type Probe } from './health.js';
import { HealthOracle } from '../../test/support/health-oracle.js';

const EDGE = '100.64.0.1';
const SITE = '10.0.1.1';
const SPEC: HealthSpec = { source: EDGE, target: SITE };

/** The site's answer to a probe (or a forged packet that looks like one). */
function reply(p: Probe, over: { src?: string; dst?: string; id?: number; seq?: number; type?: 'reply' | 'request' } = {}): Uint8Array {
  return buildIcmpEcho({ src: over.src ?? p.dstAddr, dst: over.dst ?? p.srcAddr }, { type: over.type ?? 'reply', id: over.id ?? p.id, seq: over.seq ?? p.seq });
}

function answer(e: HealthEngine, onramp: number, p: Probe, now: number): number {
  const bytes = reply(p);
  return e.receive(onramp, bytes, 0, bytes.length, now);
}

/**
 * Drives one onramp like the daemon would: waits for nextDeadline(), polls, and answers each probe after
 * `rtt` ms while `up(sentAt)` holds. Returns the events of [from, until).
 */
function drive(e: HealthEngine, from: number, until: number, up: (t: number) => boolean, rtt = 10, onProbe?: (p: Probe, t: number) => void): { events: HealthEvent[]; now: number } {
  const events: HealthEvent[] = [];
  let t = from;
  let pending: { p: Probe; at: number } | null = null;
  while (true) {
    const next = Math.min(e.nextDeadline(), pending ? pending.at : Infinity);
    if (next >= until) break;
    t = Math.max(t, next);
    if (pending && pending.at <= t) {
      assert.equal(answer(e, pending.p.onramp, pending.p, t), REPLY_MATCHED);
      pending = null;
    } else {
      for (const p of e.poll(t)) {
        onProbe?.(p, t);
        if (up(t)) pending = { p, at: t + rtt };
      }
    }
    events.push(...e.takeEvents());
  }
  return { events, now: t };
}

test('probes: an ICMP echo request from the edge tunnel address to the target, one per second by default', () => {
  const e = new HealthEngine();
  e.add(7, SPEC, 0);
  const sent: number[] = [];
  const probes: Probe[] = [];
  drive(e, 0, 5_500, () => true, 10, (p, t) => {
    sent.push(t);
    probes.push(p);
  });
  assert.deepEqual(sent, [0, 1_000, 2_000, 3_000, 4_000, 5_000]);
  assert.deepEqual(
    probes.map((p) => p.seq),
    [0, 1, 2, 3, 4, 5],
  );
  const bytes = parsePacket(buildProbe(probes[0]));
  assert.equal(bytes.src, EDGE);
  assert.equal(bytes.dst, SITE);
  assert.deepEqual(bytes.icmp, { type: 8, code: 0, id: 7, isError: false });
  assert.equal(probes[0].id, 7); // the onramp id is the default identifier
  const s = e.status(7)!;
  assert.equal(s.state, 'healthy');
  assert.equal(s.loss, 0);
  assert.equal(s.rttMs, 10);
  assert.equal(s.since, 0);
  assert.equal(e.counters(7)!.repliesMatched, 6);
});

test('rates: high, mid and low intervals; a spec interval and timeout override them (timeout clamped to the interval)', () => {
  for (const rate of ['high', 'mid', 'low'] as ProbeRate[]) {
    const e = new HealthEngine();
    e.add(1, { ...SPEC, rate }, 0);
    const sent: number[] = [];
    drive(e, 0, RATE_INTERVAL_MS[rate] * 3 + 1, () => true, 1, (_p, t) => sent.push(t));
    assert.deepEqual(sent, [0, 1, 2, 3].map((k) => k * RATE_INTERVAL_MS[rate]), rate);
  }
  assert.ok(RATE_INTERVAL_MS.high < RATE_INTERVAL_MS.mid && RATE_INTERVAL_MS.mid < RATE_INTERVAL_MS.low);
  assert.equal(RATE_INTERVAL_MS.mid, 1_000);
  const e = new HealthEngine();
  e.add(1, { ...SPEC, intervalMs: 100, timeoutMs: 5_000 }, 0);
  const [p] = e.poll(0);
  assert.equal(e.nextDeadline(), 100); // the timeout became the interval
  assert.equal(answer(e, 1, p, 100), REPLY_REJECTED); // too late: timed out at 100
  assert.equal(e.counters(1)!.timeouts, 1);
});

test('cut: down within about one second at the default rate; a failure sends two re-probes at once', () => {
  const e = new HealthEngine();
  e.add(1, SPEC, 0);
  const cut = 1_500;
  const sent: number[] = [];
  const { events } = drive(e, 0, 5_000, (t) => t < cut, 10, (_p, t) => sent.push(t));
  const timeout = RATE_TIMEOUT_MS.mid;
  // probe at 2000 is lost; the re-probes go out at its timeout and at the first re-probe's timeout.
  assert.deepEqual(sent.slice(0, 5), [0, 1_000, 2_000, 2_000 + timeout, 2_000 + 2 * timeout]);
  const down = events.find((ev) => ev.to === 'down')!;
  assert.equal(down.now, 2_000 + 3 * timeout); // three timeouts after the first lost probe
  assert.ok(down.now - cut <= RATE_INTERVAL_MS.mid + 3 * timeout, 'within interval + three timeouts of the cut');
  assert.deepEqual(
    events.map((ev) => [ev.from, ev.to, ev.reason]),
    [
      ['healthy', 'degraded', 'loss'], // the second failure already is >= 0.1 % with two failures
      ['degraded', 'down', 'consecutive-failures'],
    ],
  );
  assert.equal(e.status(1)!.state, 'down');
  assert.equal(e.status(1)!.since, down.now);
  assert.deepEqual(sent.slice(5), [3_000, 4_000]); // once down, failures send no more re-probes
});

test('cut at the high rate: down within one second', () => {
  const e = new HealthEngine();
  e.add(1, { ...SPEC, rate: 'high' }, 0);
  const cut = 1_010; // just after a probe's reply
  const { events } = drive(e, 0, 5_000, (t) => t < cut, 5);
  const down = events.find((ev) => ev.to === 'down')!;
  assert.ok(down.now - cut <= 1_000, `down ${down.now - cut} ms after the cut`);
});

/** The daemon's look period at the per-onramp packet counts (src/daemon/health.ts TRAFFIC_LOOK_INTERVAL_MS). */
const LOOK_MS = 25;

/**
 * Drives one onramp in 1 ms steps with traffic: each look (every LOOK_MS) reports the packet counts, `out(t)`
 * and `back(t)` say whether data went into the onramp / came back from it during the step; probes sent while
 * `up(t)` are answered after `rtt` (a reply is traffic back too).
 */
function driveTraffic(e: HealthEngine, until: number, up: (t: number) => boolean, out: (t: number) => boolean, back: (t: number) => boolean, rtt = 5) {
  let sent = 0;
  let received = 0;
  const probesAt: number[] = [];
  const events: HealthEvent[] = [];
  let pending: { p: Probe; at: number } | null = null;
  for (let t = 0; t < until; t++) {
    if (out(t)) sent++;
    if (back(t)) received++;
    if (pending && pending.at <= t) {
      answer(e, pending.p.onramp, pending.p, t);
      received++;
      pending = null;
    }
    if (t % LOOK_MS === 0) e.traffic(1, sent, received, t);
    for (const p of e.poll(t)) {
      probesAt.push(t);
      if (up(t)) pending = { p, at: t + rtt };
    }
    events.push(...e.takeEvents());
  }
  return { probesAt, events };
}

test('silence: an onramp that was sent traffic and returned nothing is probed at once, so a cut is down within SILENCE_PROBE_MS + a look + three timeouts', () => {
  for (const rate of ['mid', 'high', 'low'] as ProbeRate[]) {
    const e = new HealthEngine();
    e.add(1, { ...SPEC, rate }, 0);
    const cut = 1_010; // just after a regular probe's reply at mid and low: the worst phase without traffic
    const active = (t: number) => t < cut + 3; // the data in flight at the cut still goes out for a moment
    const { probesAt, events } = driveTraffic(e, 12_000, (t) => t < cut, active, (t) => t < cut);
    const down = events.find((ev) => ev.to === 'down')!;
    const timeout = RATE_TIMEOUT_MS[rate];
    const bound = Math.min(RATE_INTERVAL_MS[rate], SILENCE_PROBE_MS + LOOK_MS) + 3 * timeout;
    assert.ok(down.now - cut <= bound, `${rate}: down ${down.now - cut} ms after the cut, bound ${bound}`);
    assert.ok(probesAt.some((t) => t > cut && t <= cut + SILENCE_PROBE_MS + LOOK_MS), `${rate}: a probe soon after the silence began: ${probesAt.filter((t) => t > cut - 100).slice(0, 5)}`);
    if (rate !== 'high') assert.equal(e.counters(1)!.silenceProbes, 1, rate);
    assert.deepEqual(events.map((ev) => ev.to), ['degraded', 'down'], rate);
    // Down: probes at one per interval, whatever the traffic.
    const after = probesAt.filter((t) => t > down.now);
    for (let k = 1; k < after.length; k++) assert.equal(after[k] - after[k - 1], RATE_INTERVAL_MS[rate], rate);
  }
});

test('silence: no early probe while traffic comes back, for an idle onramp, while down, or without probing; a one-way stream is probed about once per SILENCE_PROBE_MS', () => {
  const regular = (until: number) => Array.from({ length: Math.ceil(until / RATE_INTERVAL_MS.mid) }, (_, k) => k * RATE_INTERVAL_MS.mid);
  // Both ways (a TCP transfer): the regular schedule only.
  let e = new HealthEngine();
  e.add(1, SPEC, 0);
  assert.deepEqual(driveTraffic(e, 5_000, () => true, () => true, () => true).probesAt, regular(5_000));
  // Idle: the same.
  e = new HealthEngine();
  e.add(1, SPEC, 0);
  assert.deepEqual(driveTraffic(e, 5_000, () => true, () => false, () => false).probesAt, regular(5_000));
  assert.equal(e.counters(1)!.silenceProbes, 0);
  // Out only, the site answering its probes: one early probe per silence, never two in flight, state healthy.
  e = new HealthEngine();
  e.add(1, SPEC, 0);
  const { probesAt, events } = driveTraffic(e, 5_000, () => true, () => true, () => false);
  assert.deepEqual(events, []);
  const gaps = probesAt.slice(1).map((t, k) => t - probesAt[k]);
  assert.ok(gaps.every((g) => g >= SILENCE_PROBE_MS), `gaps ${gaps}`);
  assert.ok(probesAt.length <= 5_000 / SILENCE_PROBE_MS + 1, `${probesAt.length} probes in 5 s`);
  assert.ok(probesAt.length > regular(5_000).length, 'more than the regular ones');
  // Down: a target that never answers costs one probe per interval, traffic or not.
  e = new HealthEngine();
  e.add(1, { ...SPEC, initial: 'down' }, 0);
  assert.deepEqual(driveTraffic(e, 5_000, () => false, () => true, () => false).probesAt, regular(5_000));
  // Passive and reverse onramps are never probed; an unknown onramp is not an error.
  e = new HealthEngine();
  e.add(1, {}, 0);
  e.add(2, { mode: 'reverse' }, 0);
  for (let t = 0; t < 1_000; t += LOOK_MS) {
    assert.equal(e.traffic(1, t, 0, t), false);
    assert.equal(e.traffic(2, t, 0, t), false);
    assert.equal(e.traffic(3, t, 0, t), false);
  }
  assert.deepEqual(e.poll(1_000), []);
});

test('recovery: three good probes bring down back to degraded at once; a clean five minutes to healthy', () => {
  const e = new HealthEngine();
  e.add(1, SPEC, 0);
  const back = 20_000;
  const sent: number[] = [];
  const { events } = drive(e, 0, back + 2_000, (t) => t < 1_500 || t >= back, 10, (_p, t) => sent.push(t));
  const up = events.find((ev) => ev.to === 'degraded' && ev.from === 'down')!;
  // the regular probe at 20000 succeeds at 20010 and its two re-probes follow at once: 20020, 20030.
  assert.equal(up.now, back + 30);
  assert.equal(up.reason, 'consecutive-successes');
  assert.deepEqual(
    sent.filter((t) => t >= back),
    [back, back + 10, back + 20, back + 1_000],
  );
  const lastFailure = 19_000 + RATE_TIMEOUT_MS.mid; // the probe at 19000 timed out
  const healthyAt = (Math.floor(lastFailure / BUCKET_MS) + WINDOW_SECONDS) * BUCKET_MS;
  const rest = drive(e, back + 2_000, healthyAt + 10_000, () => true);
  assert.deepEqual(
    rest.events.map((ev) => [ev.from, ev.to, ev.reason, ev.now]),
    [['degraded', 'healthy', 'clean-window', healthyAt]],
  );
  assert.equal(e.status(1)!.loss, 0);
});

test('replies: stray, late, duplicate, forged and other-onramp replies count nothing', () => {
  const e = new HealthEngine();
  e.add(1, SPEC, 0);
  e.add(2, { source: EDGE, target: SITE }, 0); // another site with the same private target address
  const [p1, p2] = e.poll(0);
  assert.equal(p1.onramp, 1);
  assert.equal(p2.onramp, 2);
  const send = (onramp: number, bytes: Uint8Array, now = 5): number => e.receive(onramp, bytes, 0, bytes.length, now);
  assert.equal(send(2, reply(p1)), REPLY_NOT_OURS); // onramp 1's reply arriving on onramp 2: other identifier
  assert.equal(send(1, reply(p1, { src: '10.0.1.2' })), REPLY_NOT_OURS); // not from the target
  assert.equal(send(1, reply(p1, { dst: '100.64.0.2' })), REPLY_NOT_OURS); // not to our tunnel address
  assert.equal(send(1, reply(p1, { id: 99 })), REPLY_NOT_OURS);
  assert.equal(send(1, reply(p1, { type: 'request' })), REPLY_NOT_OURS);
  assert.equal(send(1, reply(p1, { seq: p1.seq + 1 })), REPLY_REJECTED); // a guessed sequence number
  assert.equal(send(1, new Uint8Array([0x45, 0, 0])), REPLY_NOT_OURS); // garbage
  assert.equal(send(3, reply(p1)), REPLY_NOT_OURS); // unknown onramp
  assert.equal(send(1, reply(p1)), REPLY_MATCHED);
  assert.equal(send(1, reply(p1)), REPLY_REJECTED); // duplicate
  assert.equal(e.counters(1)!.repliesMatched, 1);
  assert.equal(e.counters(1)!.repliesRejected, 2);
  assert.equal(e.counters(2)!.repliesMatched, 0);
  // onramp 2's probe times out: a stale reply arriving later counts nothing and the failure stands.
  e.poll(RATE_TIMEOUT_MS.mid);
  assert.equal(e.counters(2)!.timeouts, 1);
  assert.equal(send(2, reply(p2), RATE_TIMEOUT_MS.mid + 1), REPLY_REJECTED);
  assert.equal(e.status(2)!.loss, 1);
  assert.equal(e.status(1)!.loss, 0);
});

test('IPv6 probes and replies', () => {
  const e = new HealthEngine();
  e.add(4, { source: 'fd00::1', target: 'fd00:1::1' }, 0);
  const [p] = e.poll(0);
  const parsed = parsePacket(buildProbe(p));
  assert.equal(parsed.family, 6);
  assert.equal(parsed.icmp!.type, 128);
  assert.equal(answer(e, 4, p, 3), REPLY_MATCHED);
  assert.equal(e.status(4)!.rttMs, 3);
  const [q] = e.poll(1_000);
  const forged = reply(q, { src: 'fd00:1::2' });
  assert.equal(e.receive(4, forged, 0, forged.length, 1_001), REPLY_NOT_OURS);
});

test('a target that never answers: stays down, one probe per interval, no growth in events', () => {
  const e = new HealthEngine();
  e.add(1, SPEC, 0);
  let probes = 0;
  const { events } = drive(e, 0, 3_600_000, () => false, 10, () => probes++);
  assert.deepEqual(
    events.map((ev) => ev.to),
    ['degraded', 'down'],
  );
  assert.equal(e.status(1)!.state, 'down');
  assert.equal(e.status(1)!.loss, 1);
  assert.equal(probes, 3_600 + 2); // one per second plus the first failure's two re-probes
  assert.equal(e.counters(1)!.timeouts, probes);
  assert.equal(e.droppedEvents, 0);
  assert.deepEqual(e.takeEvents(), []);
});

test('RTT: RFC 6298 smoothing of the probe round trips', () => {
  const e = new HealthEngine();
  e.add(1, SPEC, 0);
  let t = 0;
  let srtt = NaN;
  // round trips below the mid timeout (a reply at or after it is late)
  for (const r of [RATE_TIMEOUT_MS.mid / 2, 20, 20, RATE_TIMEOUT_MS.mid - 1]) {
    const [p] = e.poll(t);
    answer(e, 1, p, t + r);
    srtt = Number.isNaN(srtt) ? r : (7 / 8) * srtt + r / 8;
    assert.equal(e.status(1)!.rttMs, srtt);
    t += 1_000;
  }
});

test('observe: a failure is evidence in every mode; "alive" only counts without probes', () => {
  const e = new HealthEngine();
  e.add(1, SPEC, 0);
  const [p] = e.poll(0);
  answer(e, 1, p, 5);
  e.observe(1, false, 100); // e.g. the WireGuard session passed Reject-After-Time
  assert.equal(e.poll(100).length, 1); // a re-probe goes out at once
  assert.equal(e.observe(1, true, 150), true);
  assert.equal(e.status(1)!.loss, 1 / 2); // "alive" did not count as a sample
  assert.equal(e.observe(9, true, 150), false);

  const w = new HealthEngine();
  w.add(2, {}, 0); // passive: only evidence
  for (const t of [1_000, 2_000, 3_000]) w.observe(2, false, t);
  assert.equal(w.status(2)!.state, 'down');
  for (const t of [4_000, 5_000]) w.observe(2, true, t);
  assert.equal(w.status(2)!.state, 'down');
  w.siteProbeAnswered(2, 6_000);
  assert.equal(w.status(2)!.state, 'degraded');
  assert.deepEqual(w.poll(7_000), []); // passive onramps are never probed
  assert.equal(w.nextDeadline(), (3 + WINDOW_SECONDS) * BUCKET_MS); // the clean-window moment
});

test('reverse style: the site probes the edge; missing probes are failures, answered ones successes', () => {
  const e = new HealthEngine();
  e.add(3, { mode: 'reverse' }, 0);
  assert.equal(e.nextDeadline(), RATE_INTERVAL_MS.mid + RATE_TIMEOUT_MS.mid);
  for (let t = 500; t <= 10_500; t += 1_000) e.siteProbeAnswered(3, t);
  e.poll(10_600);
  assert.equal(e.status(3)!.state, 'healthy');
  assert.equal(e.counters(3)!.siteProbesAnswered, 11);
  // the site stops probing after 10500: misses at one interval + timeout after it, then one per interval
  e.poll(20_000);
  const events = e.takeEvents();
  const firstMiss = 10_500 + RATE_INTERVAL_MS.mid + RATE_TIMEOUT_MS.mid;
  assert.deepEqual(
    events.map((ev) => [ev.to, ev.now]),
    [
      ['degraded', firstMiss + RATE_INTERVAL_MS.mid],
      ['down', firstMiss + 2 * RATE_INTERVAL_MS.mid],
    ],
  );
  assert.equal(e.counters(3)!.siteProbesMissed, 9);
  // a day of silence is bounded work and still counts as down
  e.poll(86_400_000);
  assert.equal(e.status(3)!.state, 'down');
  assert.equal(e.status(3)!.loss, 1);
});

test('add / update / remove at runtime', () => {
  const e = new HealthEngine();
  e.add(1, SPEC, 0);
  assert.throws(() => e.add(1, SPEC, 0), /already/);
  assert.throws(() => e.add(0, SPEC, 0), /onramp id/);
  assert.throws(() => e.add(2, { target: SITE }, 0), /source and a target/);
  assert.throws(() => e.add(2, { source: EDGE, target: 'fd00::1' }, 0), /not an IPv4/);
  assert.throws(() => e.add(2, { ...SPEC, rate: 'turbo' as ProbeRate }, 0), /rate/);
  assert.throws(() => e.add(2, { ...SPEC, intervalMs: 0 }, 0), /interval/);
  assert.throws(() => e.add(2, { ...SPEC, icmpId: 70_000 }, 0), /identifier/);
  assert.throws(() => e.update(5, SPEC, 0), /not health-checked/);
  const [p] = e.poll(0);
  e.update(1, { ...SPEC, rate: 'high' }, 100); // same probing: the probe in flight still counts
  assert.equal(answer(e, 1, p, 101), REPLY_MATCHED);
  assert.equal(e.nextDeadline(), 100 + RATE_INTERVAL_MS.high); // the new rate counts from the update
  const [q] = e.poll(350);
  e.update(1, { source: EDGE, target: '10.0.1.9' }, 360); // new target: the probe in flight is forgotten
  assert.equal(answer(e, 1, q, 370), REPLY_NOT_OURS);
  assert.equal(e.status(1)!.rttMs, null);
  const [r] = e.poll(370);
  assert.equal(r.dstAddr, '10.0.1.9');
  assert.equal(r.seq, q.seq + 1);
  assert.equal(e.remove(1), true);
  assert.equal(e.remove(1), false);
  assert.equal(answer(e, 1, r, 380), REPLY_NOT_OURS);
  assert.equal(e.status(1), undefined);
  assert.equal(e.size, 0);
  assert.equal(e.nextDeadline(), Infinity);
  e.add(1, { ...SPEC, firstSeq: 65_535, initial: 'down' }, 1_000);
  const [a] = e.poll(1_000);
  assert.equal(a.seq, 65_535);
  answer(e, 1, a, 1_001);
  assert.equal(e.poll(1_001)[0].seq, 0); // wraps, and a success while down re-probes at once
});

test('events: one per transition, and the queue is bounded when nobody takes them', () => {
  const e = new HealthEngine();
  e.add(1, {}, 0);
  let t = 0;
  for (let i = 0; i < 1_000; i++) {
    for (let k = 0; k < 3; k++) e.observe(1, false, ++t); // -> down (via degraded the first time)
    for (let k = 0; k < 3; k++) e.observe(1, true, ++t); // -> degraded
  }
  assert.equal(e.droppedEvents, 2_001 - 1_024);
  const events = e.takeEvents();
  assert.equal(events.length, 1_024);
  assert.deepEqual([events.at(-1)!.from, events.at(-1)!.to], ['down', 'degraded']);
});

test('engine against the slow oracle: random replies, losses, late answers, late polls and evidence (property)', () => {
  const probeOutcome = fc.record({
    u: fc.integer({ min: 0, max: 999 }).map((x) => x / 1_000),
    rttFraction: fc.double({ min: 0, max: 0.99, noNaN: true }),
    // the caller is usually on time, sometimes late by up to 3 s, rarely away for minutes
    lateBy: fc.oneof(
      { weight: 8, arbitrary: fc.constant(0) },
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 3_000 }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 400_000 }) },
    ),
    observeFailure: fc.integer({ min: 0, max: 19 }),
    // a look at the packet counts before the poll: 0 none, 1 out only, 2 out and back, 3 unchanged
    traffic: fc.integer({ min: 0, max: 3 }),
  });
  fc.assert(
    fc.property(
      fc.constantFrom<ProbeRate>('high', 'mid', 'low'),
      fc.constantFrom(0.01, 0.1, 0.5),
      fc.array(probeOutcome, { minLength: 20, maxLength: 500, size: 'max' }),
      fc.boolean(),
      (rate, lossRate, outcomes, bursty) => {
      const e = new HealthEngine();
      e.add(1, { ...SPEC, rate }, 0);
      const o = new HealthOracle(0);
      const timeout = RATE_TIMEOUT_MS[rate];
      let t = 0;
      let sentCount = 0;
      let receivedCount = 0;
      let i = 0;
      let inFlight: { deadline: number; lost: boolean; p: Probe; replyAt: number } | null = null;
      const settleOracle = (now: number): void => {
        if (inFlight && now >= inFlight.deadline) {
          o.record(false, inFlight.deadline);
          inFlight = null;
        }
      };
      // bursty: losses come in runs (a cut), otherwise independent
      const lost = (k: number): boolean => (bursty ? outcomes[Math.floor(k / 8) % outcomes.length].u : outcomes[k].u) < lossRate;
      let guard = 0;
      while (i < outcomes.length && guard++ < 10_000) {
        const out = outcomes[i];
        const replyAt = inFlight && !inFlight.lost ? inFlight.replyAt : Infinity;
        const next = Math.min(e.nextDeadline(), replyAt);
        t = Math.max(t, next) + out.lateBy;
        if (inFlight && !inFlight.lost && inFlight.replyAt <= t) {
          const late: boolean = t >= inFlight.deadline;
          const p: Probe = inFlight.p;
          settleOracle(t);
          if (!late) {
            o.record(true, t);
            inFlight = null;
          }
          assert.equal(answer(e, 1, p, t), late ? REPLY_REJECTED : REPLY_MATCHED);
        } else if (out.observeFailure === 0) {
          settleOracle(t);
          o.record(false, t);
          e.observe(1, false, t);
          i++;
        } else {
          settleOracle(t);
          o.evaluate(t);
          if (out.traffic !== 0) {
            if (out.traffic !== 3) sentCount++;
            if (out.traffic === 2) receivedCount++;
            e.traffic(1, sentCount, receivedCount, t);
          }
          for (const p of e.poll(t)) {
            assert.equal(inFlight, null, 'one probe in flight at most');
            const l = lost(i);
            inFlight = { deadline: t + timeout, lost: l, p, replyAt: t + Math.floor(out.rttFraction * timeout) };
            i++;
          }
          assert.equal(e.status(1)!.loss, o.loss(t));
        }
        const s = e.status(1)!;
        assert.equal(s.state, o.state);
        assert.equal(s.since, o.since);
      }
      assert.deepEqual(
        e.takeEvents().map((ev) => ({ from: ev.from, to: ev.to, reason: ev.reason, now: ev.now })),
        o.transitions,
      );
    },
    ),
    { numRuns: 200 },
  );
});

test('deadline index against the simple scan: the same probes, events and states for many onramps under random replies, evidence, traffic and changes (property)', () => {
  const op = fc.record({
    kind: fc.integer({ min: 0, max: 9 }),
    onramp: fc.integer({ min: 1, max: 12 }),
    dt: fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: 400 }) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 5_000 }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 400_000 }) },
    ),
    rate: fc.constantFrom<ProbeRate>('high', 'mid', 'low'),
    mode: fc.constantFrom<'probe' | 'reverse' | 'passive'>('probe', 'probe', 'reverse', 'passive'),
    interval: fc.oneof(fc.constant(undefined), fc.integer({ min: 1, max: 2_000 })),
    ok: fc.boolean(),
    n: fc.integer({ min: 0, max: 3 }),
  });
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 400 }), (ops) => {
      const fast = new HealthEngine();
      const slow = new HealthEngine({ scan: true });
      const both = [fast, slow];
      const inFlight = new Map<number, Probe>();
      const counts = new Map<number, { sent: number; received: number }>();
      let t = 0;
      const spec = (o: (typeof ops)[number]): HealthSpec => (o.mode === 'probe'
        ? { ...SPEC, rate: o.rate, intervalMs: o.interval }
        : { mode: o.mode, rate: o.rate, intervalMs: o.interval });
      const byOnramp = (a: { onramp: number }, b: { onramp: number }) => a.onramp - b.onramp;
      for (const o of ops) {
        switch (o.kind) {
          case 0: // add, update or remove
            if (!fast.has(o.onramp)) both.forEach((e) => e.add(o.onramp, spec(o), t));
            else if (o.ok) both.forEach((e) => e.update(o.onramp, spec(o), t));
            else {
              both.forEach((e) => e.remove(o.onramp));
              inFlight.delete(o.onramp);
            }
            break;
          case 1: { // a reply to the probe in flight, maybe late
            const p = inFlight.get(o.onramp);
            if (p) {
              t += o.dt % 500;
              const bytes = reply(p);
              assert.equal(fast.receive(o.onramp, bytes, 0, bytes.length, t), slow.receive(o.onramp, bytes, 0, bytes.length, t));
              inFlight.delete(o.onramp);
            }
            break;
          }
          case 2: // other evidence
            assert.equal(fast.observe(o.onramp, o.ok, t), slow.observe(o.onramp, o.ok, t));
            break;
          case 3:
            assert.equal(fast.siteProbeAnswered(o.onramp, t), slow.siteProbeAnswered(o.onramp, t));
            break;
          case 4: { // a look at the packet counts
            const c = counts.get(o.onramp) ?? { sent: 0, received: 0 };
            if (o.n !== 0) c.sent++;
            if (o.n === 2) c.received++;
            counts.set(o.onramp, c);
            assert.equal(fast.traffic(o.onramp, c.sent, c.received, t), slow.traffic(o.onramp, c.sent, c.received, t));
            break;
          }
          default: { // time passes; poll at a deadline or at any moment
            const d = fast.nextDeadline();
            assert.ok(d <= slow.nextDeadline(), 'the index is never later than the scan');
            t = o.n === 0 && d !== Infinity ? Math.max(t, d) : t + o.dt;
            const a = fast.poll(t).sort(byOnramp);
            const b = slow.poll(t).sort(byOnramp);
            assert.deepEqual(a, b);
            for (const p of a) inFlight.set(p.onramp, p);
          }
        }
        const ea = fast.takeEvents().sort(byOnramp);
        const eb = slow.takeEvents().sort(byOnramp);
        assert.deepEqual(ea, eb);
        for (let id = 1; id <= 12; id++) {
          assert.equal(fast.status(id)?.state, slow.status(id)?.state, `onramp ${id} at ${t}`);
          assert.equal(fast.status(id)?.since, slow.status(id)?.since, `onramp ${id} at ${t}`);
        }
      }
    }),
    { numRuns: 300 },
  );
});

test('deadline index: a state that changes by time alone is due — healthy -> degraded as old successes leave the window, degraded -> healthy once clean', () => {
  const fast = new HealthEngine();
  const slow = new HealthEngine({ scan: true });
  for (const e of [fast, slow]) {
    e.add(1, {}, 0); // passive: evidence only
    // 2,500 successes in the first ten seconds, then two failures: 2 / 2,502 is under 0.1 %, so healthy
    for (let k = 0; k < 2_500; k++) e.observe(1, true, k * 4);
    e.observe(1, false, 10_000);
    e.observe(1, false, 10_001);
    assert.equal(e.status(1)!.state, 'healthy');
  }
  // Nothing more arrives. Both are polled at the index's deadlines and, in between, every second at an odd
  // moment: a change the index did not see coming would show in the scan first, at one of the odd moments.
  const seen: HealthEvent[] = [];
  const scanned: HealthEvent[] = [];
  let odd = 10_001;
  for (let guard = 0; guard < 2_000 && odd < 700_000; guard++) {
    const t = Math.min(fast.nextDeadline(), odd);
    if (t === odd) odd += BUCKET_MS;
    fast.poll(t);
    slow.poll(t);
    seen.push(...fast.takeEvents());
    scanned.push(...slow.takeEvents());
  }
  assert.deepEqual(seen.map((ev) => [ev.to, ev.reason, ev.now]), scanned.map((ev) => [ev.to, ev.reason, ev.now]));
  assert.deepEqual(seen.map((ev) => ev.to), ['degraded', 'healthy']);
  // the successes of the first seconds left the window at WINDOW_SECONDS
  assert.ok(seen[0].now >= WINDOW_SECONDS * BUCKET_MS && seen[0].now < (WINDOW_SECONDS + 10) * BUCKET_MS, `${seen[0].now}`);
});
