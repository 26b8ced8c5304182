import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DlpPolicy, DlpStream } from '../gateway/dlp.js';
import { GatewayPolicy, type DlpProfileSpec } from '../gateway/policy.js';
import { PipelineCounters } from './pipeline.js';
import { DLP_CUT, DLP_DONE, DLP_PASS, DLP_REORDER, DlpTracker } from './dlp-tracker.js';

const ISN = [0xfffff000, 77];
const SCAN = 2048;

function tracker(profiles: DlpProfileSpec[], pool = 4, window = 256): { t: DlpTracker; counters: PipelineCounters } {
  const gw = new GatewayPolicy({
    rules: [{ id: 7, action: 'allow', dstPorts: [[80, 80]], dlp: profiles.map((p) => p.name) }, { id: 8, action: 'allow' }],
    dlpProfiles: profiles,
    classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' },
    dlpScanBytes: SCAN,
  });
  const counters = new PipelineCounters();
  const t = new DlpTracker(counters, 16, 16, pool, window);
  t.setPolicy(gw);
  return { t, counters };
}

const PIECES = ['4111 1111 1111 1111', '4111-1111-1111-1112', '5500 0000 0000 0004', ' ', '\n', 'secret', 'SeCrEt', 'amount=12', 'abc', '0', '99 '];
const text = fc.array(fc.constantFrom(...PIECES), { maxLength: 150 }).map((a) => new TextEncoder().encode(a.join('')));

/** Segments covering the stream, some overlapping or duplicated, in random order. */
const segments = (n: number): fc.Arbitrary<Array<[number, number]>> =>
  fc.tuple(fc.array(fc.nat({ max: n }), { maxLength: 30 }), fc.array(fc.tuple(fc.nat({ max: n }), fc.integer({ min: 1, max: 200 })), { maxLength: 8 }))
    .map(([cuts, extra]) => {
      const b = [...new Set([0, n, ...cuts])].sort((x, y) => x - y);
      const segs: Array<[number, number]> = [];
      for (let i = 0; i + 1 < b.length; i++) segs.push([b[i], b[i + 1]]);
      for (const [s, l] of extra) if (s < n) segs.push([s, Math.min(n, s + l)]);
      return segs;
    })
    .chain((segs) => fc.shuffledSubarray(segs, { minLength: segs.length, maxLength: segs.length }));

/** Drives direction `dir` of flow 3 with the segments (re-offering the ones dropped as reorder); the verdicts seen. */
function drive(t: DlpTracker, dir: 0 | 1, stream: Uint8Array, segs: Array<[number, number]>): number[] {
  const verdicts: number[] = [];
  const queue = [...segs];
  while (queue.length > 0) {
    const [s, e] = queue.shift()!;
    const v = t.segment(0, 3, dir, (ISN[dir] + 1 + s) % 0x100000000, stream, s, e - s, false, false);
    verdicts.push(v);
    if (v === DLP_REORDER) queue.push([s, e]);
    if (v === DLP_CUT || v === DLP_DONE) break;
  }
  return verdicts;
}

function oracle(profiles: DlpProfileSpec[], stream: Uint8Array): DlpStream {
  const s = new DlpStream(new DlpPolicy(profiles, { scanBytes: SCAN }));
  s.feed(stream.subarray(0, SCAN));
  return s;
}

test('oracle (log profiles): segments in random order, overlapping, duplicated → the matches of the concatenated stream', () => {
  const profiles: DlpProfileSpec[] = [{ name: 'cards', cards: true, action: 'log' }, { name: 'words', keywords: ['secret'], action: 'log' }];
  fc.assert(fc.property(text.chain((s) => fc.tuple(fc.constant(s), segments(s.length))), fc.constantFrom(0, 1) as fc.Arbitrary<0 | 1>, ([stream, segs], dir) => {
    const { t } = tracker(profiles);
    assert.equal(t.start(0, 3, 0, ISN[0], ISN[1]), true);
    const verdicts = drive(t, dir, stream, segs);
    assert.ok(!verdicts.includes(DLP_CUT), 'log profiles never cut');
    const want = oracle(profiles, stream).matches.map((m) => ({ profile: m.profile, detector: m.detector, offset: m.offset, direction: dir }));
    const got = t.eventsOf(0, 3).map((e) => ({ profile: e.profile, detector: e.detector, offset: e.offset, direction: e.direction }));
    assert.deepEqual(got, want);
  }), { numRuns: 300 });
});

test('oracle (block profile): the flow is cut exactly when the concatenated stream holds a card, at that card', () => {
  const profiles: DlpProfileSpec[] = [{ name: 'cards', cards: true, action: 'block' }];
  fc.assert(fc.property(text.chain((s) => fc.tuple(fc.constant(s), segments(s.length))), ([stream, segs]) => {
    const { t, counters } = tracker(profiles);
    t.start(0, 3, 0, ISN[0], ISN[1]);
    const verdicts = drive(t, 0, stream, segs);
    const want = oracle(profiles, stream).matches[0];
    assert.equal(verdicts.includes(DLP_CUT), want !== undefined);
    if (want !== undefined) {
      assert.equal(verdicts.at(-1), DLP_CUT);
      assert.deepEqual(t.eventsOf(0, 3).map((e) => [e.profile, e.offset, e.action, e.ruleId]), [['cards', want.offset, 'block', 7]]);
      assert.equal(counters.dlpFlowsCut, 1);
      assert.equal(t.tracking(0, 3), false, 'a cut flow leaves the pool');
    }
  }), { numRuns: 300 });
});

test('pool: bounded; an empty pool is counted and the flow is not scanned; scanned flows leave after dlpScanBytes both ways', () => {
  const { t, counters } = tracker([{ name: 'cards', cards: true, action: 'block' }], 2);
  assert.equal(t.start(0, 1, 0), true);
  assert.equal(t.start(1, 1, 0), true);
  assert.equal(t.start(0, 2, 0), false);
  assert.equal(counters.dlpPoolEmpty, 1);
  assert.equal(t.start(0, 2, 1), false, 'a rule without profiles scans nothing');
  assert.equal(counters.dlpFlowsScanned, 2);
  const big = new Uint8Array(SCAN + 10).fill(0x61);
  assert.equal(t.segment(0, 1, 0, 5000, big, 0, 1000, false, false), DLP_PASS, 'first segment seen starts the stream (no SYN given)');
  assert.equal(t.segment(0, 1, 0, 6000, big, 0, SCAN, false, false), DLP_PASS, 'client direction done, the server\'s not');
  assert.equal(t.segment(0, 1, 1, 100, big, 0, 10, false, true), DLP_DONE, 'server FIN: both done');
  assert.equal(t.busy, 1);
  assert.equal(counters.dlpBytesScanned, SCAN + 10);
  assert.equal(t.start(0, 2, 0), true, 'the slot is back');
  t.flowEnded(1, 1);
  t.flowEnded(0, 2);
  assert.equal(t.busy, 0);
  t.setPolicy(null);
  assert.equal(t.active, false);
  assert.equal(t.segment(0, 5, 0, 1, big, 0, 1, false, false), DLP_DONE, 'an untracked flow leaves DLP');
});
