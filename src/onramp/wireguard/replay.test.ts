import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { REPLAY_WINDOW_SIZE, ReplayWindow } from './replay.js';

/** The obviously-correct rule: accept once, never below `newest - window`, never at/above the limit. */
class OracleWindow {
  private readonly seen = new Set<number>();
  private newest = 0;
  update(counter: number, limit: number): boolean {
    if (counter >= limit) return false;
    if (counter <= this.newest && this.newest - counter > REPLAY_WINDOW_SIZE) return false;
    if (this.seen.has(counter)) return false;
    this.seen.add(counter);
    if (counter > this.newest) this.newest = counter;
    return true;
  }
}

const LIMIT = Number.MAX_SAFE_INTEGER;

test('the window is at least the 8,128 counters of wireguard-go', () => {
  assert.ok(REPLAY_WINDOW_SIZE >= 8128, 'REPLAY_WINDOW_SIZE >= 8128');
});

test('replay window agrees with a Set oracle on random counter streams', () => {
  // Counters cluster around a moving point so that replays, reorderings, window edges and big jumps all occur.
  const step = fc.oneof(
    fc.integer({ min: -20, max: 20 }),
    fc.integer({ min: -REPLAY_WINDOW_SIZE - 40, max: -REPLAY_WINDOW_SIZE + 40 }),
    fc.integer({ min: 0, max: 3 * REPLAY_WINDOW_SIZE }),
    fc.constant(0),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 400 }), fc.integer({ min: 0, max: 2 ** 40 }), (steps, base) => {
      const fast = new ReplayWindow();
      const slow = new OracleWindow();
      let cursor = base;
      // A fresh window accepts counter 0 like wireguard-go's; start the stream at `base`.
      for (const s of steps) {
        cursor = Math.max(0, cursor + s);
        const expected = slow.update(cursor, LIMIT);
        assert.equal(fast.check(cursor, LIMIT), expected, `check(${cursor})`);
        assert.equal(fast.update(cursor, LIMIT), expected, `update(${cursor})`);
      }
    }),
    { numRuns: 300 },
  );
});

test('in-order, reordered and replayed counters', () => {
  const w = new ReplayWindow();
  for (let i = 0; i < 100; i++) assert.ok(w.update(i, LIMIT));
  for (let i = 0; i < 100; i++) assert.ok(!w.update(i, LIMIT), 'replay');
  assert.ok(w.update(200, LIMIT), 'w.update(200, LIMIT)');
  assert.ok(w.update(150, LIMIT), 'late but inside the window');
  assert.ok(!w.update(150, LIMIT), '!w.update(150, LIMIT)');
  assert.ok(w.update(200 + REPLAY_WINDOW_SIZE, LIMIT), 'w.update(200 + REPLAY_WINDOW_SIZE, LIMIT)');
  assert.ok(w.update(200, LIMIT) === false, 'w.update(200, LIMIT) === false');
  assert.ok(w.update(201, LIMIT), 'exactly at the window edge');
  assert.ok(!w.update(199, LIMIT), 'behind the window');
  assert.ok(!w.update(LIMIT, LIMIT), 'at the limit');
});
