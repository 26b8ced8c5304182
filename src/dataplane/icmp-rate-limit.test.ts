import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IcmpRateLimit } from './icmp-rate-limit.js';

/**
 * The oracle: one exact token bucket per (zone, address) in a Map, plus the global one, written the obvious way.
 * A bucket starts full; tokens grow by rate × elapsed up to the burst; a message takes one from each bucket.
 */
class OracleLimit {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private global: { tokens: number; at: number } | null = null;
  constructor(private readonly rate: number, private readonly burst: number, private readonly gRate: number, private readonly gBurst: number) {}

  allow(zone: number, address: number, now: number): boolean {
    const key = `${zone}/${address}`;
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    const g = this.global ?? { tokens: this.gBurst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.at) * this.rate / 1000);
    g.tokens = Math.min(this.gBurst, g.tokens + Math.max(0, now - g.at) * this.gRate / 1000);
    b.at = now;
    g.at = now;
    const ok = b.tokens >= 1 && g.tokens >= 1;
    if (ok) {
      b.tokens--;
      g.tokens--;
    }
    this.buckets.set(key, b);
    this.global = g;
    return ok;
  }
}

const word = new Uint32Array(1);
function allow(limit: IcmpRateLimit, zone: number, address: number, now: number): boolean {
  word[0] = address;
  return limit.allow(zone, word, 0, 1, now);
}

/** A few sources (zone, address) whose buckets are distinct slots of `limit`. */
function distinctSources(limit: IcmpRateLimit, candidates: Array<[number, number]>): Array<[number, number]> {
  const seen = new Set<number>();
  return candidates.filter(([zone, address]) => {
    word[0] = address;
    const slot = limit.slotOf(zone, word, 0, 1);
    if (seen.has(slot)) return false;
    seen.add(slot);
    return true;
  });
}

const eventsArb = fc.array(fc.record({ source: fc.nat(7), gap: fc.integer({ min: 0, max: 40 }) }), { minLength: 1, maxLength: 600 });
const settingsArb = fc.record({ rate: fc.integer({ min: 0, max: 2000 }), burst: fc.integer({ min: 0, max: 60 }), gRate: fc.integer({ min: 0, max: 5000 }), gBurst: fc.integer({ min: 0, max: 80 }) });

test('property: with sources in distinct buckets, the table answers as the per-source Map oracle', () => {
  fc.assert(fc.property(settingsArb, eventsArb, fc.integer(), (s, events, seed) => {
    const limit = new IcmpRateLimit({ perSourcePerSecond: s.rate, perSourceBurst: s.burst, globalPerSecond: s.gRate, globalBurst: s.gBurst, hashSeed: seed });
    const oracle = new OracleLimit(s.rate, s.burst, s.gRate, s.gBurst);
    // Two sites' identical 10.0.1.10 (zones 1 and 2) are two senders; and a few other addresses.
    const sources = distinctSources(limit, [[1, 0x0a00010a], [2, 0x0a00010a], [1, 0x0a00010b], [0, 0xcb00710a], [3, 1], [4, 2], [5, 3], [6, 4]]);
    let now = 1000;
    for (const e of events) {
      now += e.gap;
      const [zone, address] = sources[e.source % sources.length];
      assert.equal(allow(limit, zone, address, now), oracle.allow(zone, address, now));
    }
  }), { numRuns: 300 });
});

test('property: whatever shares a bucket, no source gets more than burst + rate × elapsed', () => {
  fc.assert(fc.property(eventsArb, fc.integer({ min: 1, max: 8 }), (events, slots) => {
    const rate = 100;
    const burst = 5;
    // A tiny table: sources collide; the global bucket out of the way.
    const limit = new IcmpRateLimit({ perSourcePerSecond: rate, perSourceBurst: burst, globalPerSecond: 1e9, globalBurst: 1e9, slots });
    const allowed: number[][] = [[], [], [], [], [], [], [], []];
    let now = 0;
    for (const e of events) {
      now += e.gap;
      if (allow(limit, 1, 0x0a000000 + e.source, now)) allowed[e.source].push(now);
    }
    for (const times of allowed) {
      for (let i = 0; i < times.length; i++) {
        for (let j = i; j < times.length; j++) {
          assert.ok(j - i + 1 <= burst + (rate * (times[j] - times[i])) / 1000 + 1e-9, `${j - i + 1} errors in ${times[j] - times[i]} ms`);
        }
      }
    }
  }), { numRuns: 200 });
});

test('defaults: 50 in a burst per source, then one per 10 ms; the global bucket holds a crowd at 50 + 1 per ms', () => {
  const limit = new IcmpRateLimit({ hashSeed: 7 });
  let sent = 0;
  for (let i = 0; i < 500; i++) if (allow(limit, 1, 0x0a00010a, 1000)) sent++;
  assert.equal(sent, 50, 'a burst of 500 at one instant: 50');
  assert.equal(allow(limit, 2, 0x0a00010a, 1000), false, 'another site\'s 10.0.1.10 has its own bucket, but the global one is empty');
  let crowd = 0;
  for (let i = 0; i < 100; i++) if (allow(limit, 3, 0x0a000100 + i, 1001)) crowd++;
  assert.equal(crowd, 1, 'a crowd of fresh sources 1 ms later: the one global token');
  assert.equal(allow(limit, 1, 0x0a00010a, 1005), false, 'the first source: half a token 5 ms after its burst');
  assert.equal(allow(limit, 1, 0x0a00010a, 1010), true, 'one token after 10 ms');
  assert.throws(() => new IcmpRateLimit({ perSourceBurst: -1 }), /per-source burst must be a finite number ≥ 0, got -1/);
});
