// The native flow cache's table (native/src/flow_cache.h: open addressing with tombstones) against a Map, the slow
// and obviously correct oracle: installs, takes and flushes in any order leave exactly the model's keys findable,
// and a full table is flushed by the install that finds no room. Needs root (two TUN handles, never brought up).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { FLOW_CACHE_CAPACITY, FLOW_CACHE_HEADER_BYTES, NativeFlowCache } from './flow-cache.js';
import { loadNative } from './native.js';
import { openTun, type TunDevice } from './tun.js';

const PORTS = 8;
/** Installs stop at 3/4 of the slots used or tombstoned (kMaxLoad). */
const MAX_LOAD = (FLOW_CACHE_CAPACITY / 4) * 3;
const KEYS = 4 * FLOW_CACHE_CAPACITY;
const SOURCE_BASE = 0x0a000000; // 10.0.0.0: key k's source is 10.0.0.0 + k
const POOL = [198, 51, 100, 1];
const TTL = 64;

/** Key k's first 28 bytes as read (UDP 10.x → 203.0.113.7:53) and as JS would write them (source translated, TTL − 1). */
function headers(k: number): { before: Uint8Array; after: Uint8Array } {
  const before = new Uint8Array(FLOW_CACHE_HEADER_BYTES);
  before.set([0x45, 0, 0, 40, 0, 1, 0x40, 0, TTL, 17, 0, 0]);
  const src = SOURCE_BASE + k;
  before.set([src >>> 24, (src >>> 16) & 0xff, (src >>> 8) & 0xff, src & 0xff], 12);
  before.set([203, 0, 113, 7], 16);
  before.set([0x0f, 0xa0, 0, 53, 0, 20, 0, 0], 20);
  const after = before.slice();
  after[8] = TTL - 1;
  after.set(POOL, 12);
  return { before, after };
}

describe('the native flow cache table against a Map (fast-check)', () => {
  let a: TunDevice;
  let b: TunDevice;
  let cache: NativeFlowCache;
  const counters = { rxPackets: new Float64Array(PORTS), rxBytes: new Float64Array(PORTS), txPackets: new Float64Array(PORTS), txBytes: new Float64Array(PORTS) };
  const addon = loadNative();
  const lookup = (k: number): number => addon.flowCacheLookup(a.native, headers(k).before, 0);
  const install = (k: number): boolean => {
    const h = headers(k);
    return cache.install(a, b, h.before, 0, h.after, 0, 1, 0, k * 2);
  };

  before(() => {
    assert.equal(process.getuid?.(), 0, 'the flow cache tests need root (TUN devices); they fail rather than skip');
    a = openTun(`of${process.pid}x`);
    b = openTun(`of${process.pid}y`);
    cache = new NativeFlowCache(counters);
  });

  after(() => {
    cache?.close();
    a?.close();
    b?.close();
  });

  it('installs, takes and flushes leave exactly the model\'s keys findable', () => {
    const op = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('install' as const), k: fc.nat(KEYS - 1) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('take' as const), k: fc.nat(KEYS - 1) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('flush' as const), k: fc.constant(0) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), fc.nat(KEYS - 1), (ops, offset) => {
        cache.flush();
        const model = new Set<number>();
        for (const { kind, k: raw } of ops) {
          // Keys bunched around `offset`: takes and reinstalls meet the same keys (and their tombstones) often.
          const k = (raw % 64 + offset) % KEYS;
          if (kind === 'install') {
            const flushes = cache.stats().flushes;
            assert.equal(install(k), true);
            if (cache.stats().flushes !== flushes) model.clear(); // full: flushed, then installed
            model.add(k);
          } else if (kind === 'take') {
            assert.equal(cache.take(k * 2) !== null, model.has(k));
            model.delete(k);
          } else {
            cache.flush();
            model.clear();
          }
          assert.equal(cache.stats().entries, model.size);
        }
        for (let j = 0; j < 64; j++) {
          const k = (j + offset) % KEYS;
          assert.equal(lookup(k) >= 0, model.has(k), `key ${k}`);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a full table: the install that finds no room flushes it and installs, and every key in it is findable till then', () => {
    cache.flush();
    for (let k = 0; k < MAX_LOAD; k++) assert.equal(install(k), true);
    assert.equal(cache.stats().entries, MAX_LOAD);
    for (let k = 0; k < MAX_LOAD; k++) assert.ok(lookup(k) >= 0, `key ${k}`);
    const flushes = cache.stats().flushes;
    assert.equal(install(MAX_LOAD), true);
    assert.equal(cache.stats().flushes, flushes + 1);
    assert.equal(cache.stats().entries, 1);
    assert.equal(lookup(0), -1);
    assert.ok(lookup(MAX_LOAD) >= 0);
  });

  it('refuses a rewrite it cannot learn: the IP id renumbered, the TTL not decremented, not UDP / ICMP echo', () => {
    const refused = cache.stats().refused;
    const h = headers(1);
    const renumbered = h.after.slice();
    renumbered[5] = 2;
    assert.equal(cache.install(a, b, h.before, 0, renumbered, 0, 1, 0, 2), false);
    assert.equal(cache.install(a, b, h.before, 0, h.before, 0, 1, 0, 2), false);
    const tcp = h.before.slice();
    tcp[9] = 6;
    const tcpAfter = h.after.slice();
    tcpAfter[9] = 6;
    assert.equal(cache.install(a, b, tcp, 0, tcpAfter, 0, 1, 0, 2), false);
    assert.equal(cache.stats().refused, refused + 3);
  });
});
