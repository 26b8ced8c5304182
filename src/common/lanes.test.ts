import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { laneCountProblem, laneFirst, laneLast, laneOfPort, MAX_LANES } from './lanes.js';

/** The oracle: walk the slices one by one. */
function slowLaneOf(min: number, max: number, lanes: number, port: number): number {
  for (let l = 0; l < lanes; l++) if (port >= laneFirst(min, max, l, lanes) && port <= laneLast(min, max, l, lanes)) return l;
  return -1;
}

describe('lanes: port slices', () => {
  it('cuts 1024..65535 in two halves', () => {
    assert.equal(laneFirst(1024, 65535, 0, 2), 1024);
    assert.equal(laneLast(1024, 65535, 0, 2), 33279);
    assert.equal(laneFirst(1024, 65535, 1, 2), 33280);
    assert.equal(laneLast(1024, 65535, 1, 2), 65535);
    assert.equal(laneOfPort(1024, 65535, 2, 33279), 0);
    assert.equal(laneOfPort(1024, 65535, 2, 33280), 1);
    assert.equal(laneOfPort(1024, 65535, 2, 1023), -1);
  });

  it('one lane is the whole range', () => {
    assert.equal(laneFirst(0, 65535, 0, 1), 0);
    assert.equal(laneLast(0, 65535, 0, 1), 65535);
  });

  it('slices tile the range, differ by at most one port, and laneOfPort agrees with them', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 1, max: MAX_LANES }), fc.integer({ min: 0, max: 65535 }), (a, b, lanes, port) => {
      const min = Math.min(a, b);
      const max = Math.max(a, b);
      let next = min;
      let smallest = Infinity;
      let largest = 0;
      for (let l = 0; l < lanes; l++) {
        assert.equal(laneFirst(min, max, l, lanes), next);
        next = laneLast(min, max, l, lanes) + 1;
        const size = next - laneFirst(min, max, l, lanes);
        smallest = Math.min(smallest, size);
        largest = Math.max(largest, size);
      }
      assert.equal(next, max + 1);
      assert.ok(largest - smallest <= 1);
      assert.equal(laneOfPort(min, max, lanes, port), slowLaneOf(min, max, lanes, port));
    }));
  });

  it('names a bad lane count', () => {
    assert.equal(laneCountProblem(2), null);
    assert.match(laneCountProblem(0) ?? '', /lanes must be an integer 1\.\.64, got 0/);
    assert.match(laneCountProblem(1.5) ?? '', /got 1\.5/);
  });
});
