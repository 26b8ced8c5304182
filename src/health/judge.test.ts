import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HealthJudge } from './judge.js';
import { LossWindow } from './loss-window.js';
import { BUCKET_MS, WINDOW_SECONDS, priorityPenalty, PENALTY_DEGRADED, PENALTY_DOWN } from './constants.js';
import { HealthOracle } from '../../test/support/health-oracle.js';

test('penalties: +500,000 degraded, +1,000,000 down, none healthy', () => {
  assert.equal(priorityPenalty('healthy'), 0);
  assert.equal(priorityPenalty('degraded'), 500_000);
  assert.equal(priorityPenalty('down'), 1_000_000);
  assert.equal(PENALTY_DEGRADED, 500_000);
  assert.equal(PENALTY_DOWN, 1_000_000);
});

test('loss window: counts the current second and the 299 before it, then forgets', () => {
  const w = new LossWindow();
  w.add(0, false);
  w.add(999, true);
  w.add(1_000, true);
  assert.equal(w.total, 3);
  assert.equal(w.failures, 1);
  w.advance(299_999); // second 299: second 0 is still inside
  assert.equal(w.failures, 1);
  w.advance(300_000); // second 300: second 0 has left
  assert.equal(w.total, 1);
  assert.equal(w.failures, 0);
  w.advance(10 * WINDOW_SECONDS * BUCKET_MS); // a long silence clears everything
  assert.equal(w.total, 0);
  assert.equal(w.loss, 0);
});

test('loss window: matches a list of every sample (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ dt: fc.integer({ min: 0, max: 40_000 }), ok: fc.boolean() }), { maxLength: 300, size: 'max' }), (steps) => {
      const w = new LossWindow();
      const all: { t: number; ok: boolean }[] = [];
      let t = 0;
      for (const s of steps) {
        t += s.dt;
        w.add(t, s.ok);
        all.push({ t, ok: s.ok });
        const second = Math.floor(t / BUCKET_MS);
        const inside = all.filter((x) => Math.floor(x.t / BUCKET_MS) > second - WINDOW_SECONDS);
        assert.equal(w.total, inside.length);
        assert.equal(w.failures, inside.filter((x) => !x.ok).length);
      }
    }),
  );
});

test('judge: each transition with its reason and time', () => {
  const j = new HealthJudge(0);
  assert.equal(j.record(false, 1_000), false); // one failure costs nothing
  assert.equal(j.state, 'healthy');
  assert.equal(j.record(true, 2_000), false);
  assert.equal(j.record(false, 3_000), true); // two failures out of three samples >= 0.1 %
  assert.deepEqual([j.from, j.state, j.reason, j.since], ['healthy', 'degraded', 'loss', 3_000]);
  j.record(false, 4_000);
  assert.equal(j.record(false, 5_000), true); // three in a row
  assert.deepEqual([j.from, j.state, j.reason, j.since], ['degraded', 'down', 'consecutive-failures', 5_000]);
  j.record(true, 6_000);
  j.record(true, 6_010);
  assert.equal(j.state, 'down');
  assert.equal(j.record(true, 6_020), true); // three successes: degraded, not healthy
  assert.deepEqual([j.from, j.state, j.reason], ['down', 'degraded', 'consecutive-successes']);
  assert.equal(j.cleanAt(), (5 + WINDOW_SECONDS) * BUCKET_MS);
  assert.equal(j.evaluate(j.cleanAt() - 1), false);
  assert.equal(j.evaluate(j.cleanAt()), true);
  assert.deepEqual([j.from, j.state, j.reason, j.since], ['degraded', 'healthy', 'clean-window', 305_000]);
});

test('judge: 0.1 % needs its share, not just two failures', () => {
  const j = new HealthJudge(0);
  for (let i = 0; i < 2_000; i++) j.record(true, i * 100); // 2,000 successes within the window
  j.record(false, 200_000);
  j.record(true, 200_001);
  assert.equal(j.record(false, 200_002), false); // 2 / 2,003 < 0.1 %
  assert.equal(j.state, 'healthy');
  j.record(true, 200_003);
  assert.equal(j.record(false, 200_004), true); // 3 / 2,005 >= 0.1 %
  assert.equal(j.state, 'degraded');
});

test('judge: agrees with the slow oracle over random sample and tick sequences (property)', () => {
  const step = fc.record({
    dt: fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 0, max: 400_000 })),
    kind: fc.constantFrom('ok', 'ok', 'ok', 'fail', 'fail', 'tick'),
  });
  fc.assert(
    fc.property(fc.array(step, { maxLength: 400, size: 'max' }), (steps) => {
      const j = new HealthJudge(0);
      const o = new HealthOracle(0);
      let t = 0;
      for (const s of steps) {
        t += s.dt;
        if (s.kind === 'tick') {
          j.evaluate(t);
          o.evaluate(t);
        } else {
          j.record(s.kind === 'ok', t);
          o.record(s.kind === 'ok', t);
        }
        assert.equal(j.state, o.state);
        assert.equal(j.since, o.since);
        assert.equal(j.window.loss, o.loss(t));
      }
    }),
    { numRuns: 300 },
  );
});
