import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatIpv4, formatIpv6, maskWords, parseAddress, parsePrefix } from '../wire/addr.js';
import { NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import { MAX_WEIGHT, NextHopKind, NO_ROUTE, RouteTable, type RouteSpec } from './route-table.js';

// --- the oracle: every route in a list, the semantics applied literally ----------------------------

interface OracleRoute {
  family: number;
  words: Uint32Array;
  len: number;
  kind: NextHopKind;
  port: number;
  priority: number;
  weight: number;
  scope: number;
}

class OracleTable {
  readonly routes = new Map<number, OracleRoute>();
  readonly down = new Set<number>();
  /** Health penalty by port (setPortPenalty); absent = 0. */
  readonly penalty = new Map<number, number>();

  add(id: number, spec: RouteSpec): void {
    const p = parsePrefix(spec.prefix)!;
    this.routes.set(id, {
      family: p.family,
      words: p.words,
      len: p.length,
      kind: spec.kind,
      port: spec.port ?? 0,
      priority: spec.priority ?? 100,
      weight: spec.weight ?? 1,
      scope: spec.siteScope ?? 0,
    });
  }

  private healthy(r: OracleRoute): boolean {
    return r.kind !== NextHopKind.Onramp || !this.down.has(r.port);
  }

  lookup(site: number, address: string, flowHash: number): number {
    const addr = new Uint32Array(4);
    const family = parseAddress(address, addr);
    // Rule 1: visible routes of the family that contain the address.
    const matching = [...this.routes].filter(([, r]) => {
      if (r.family !== family || (r.scope !== 0 && r.scope !== site)) return false;
      const masked = addr.slice();
      maskWords(masked, r.len, family === 4 ? 1 : 4);
      return masked.every((w, i) => w === r.words[i]);
    });
    if (matching.length === 0) return NO_ROUTE;
    // Rule 2: longest prefix; at equal length the scoped group beats the global one.
    const rank = (r: OracleRoute) => r.len * 2 + (r.scope !== 0 ? 1 : 0);
    const best = Math.max(...matching.map(([, r]) => rank(r)));
    const group = matching.filter(([, r]) => rank(r) === best);
    // Rule 3: lowest priority among healthy routes, else among all of them.
    const healthy = group.filter(([, r]) => this.healthy(r));
    const pool = healthy.length > 0 ? healthy : group;
    const prio = (r: OracleRoute) => r.priority + (r.kind === NextHopKind.Onramp ? this.penalty.get(r.port) ?? 0 : 0);
    const top = Math.min(...pool.map(([, r]) => prio(r)));
    // Rule 4: weighted pick by flowHash over the candidates in id order.
    const candidates = pool.filter(([, r]) => prio(r) === top).sort(([a], [b]) => a - b);
    const total = candidates.reduce((s, [, r]) => s + r.weight, 0);
    let x = (flowHash >>> 0) % total;
    for (const [id, r] of candidates) {
      if (x < r.weight) return id;
      x -= r.weight;
    }
    throw new Error('unreachable');
  }
}

// --- random tables ----------------------------------------------------------------------------------

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const PORTS = 4;
const SITES = 3;

/** Routes built around a few bases so prefixes nest, overlap and repeat. */
const routeArb = (family: 4 | 6): fc.Arbitrary<Draw> =>
  fc.record({
    base: fc.integer({ min: 0, max: 2 }),
    noise: fc.array(u32, { minLength: 4, maxLength: 4 }),
    len: family === 4
      ? fc.oneof(fc.integer({ min: 0, max: 32 }), fc.constantFrom(0, 32, 24, 16))
      : fc.oneof(fc.integer({ min: 0, max: 128 }), fc.constantFrom(0, 128, 64, 48)),
    kind: fc.constantFrom(NextHopKind.Onramp, NextHopKind.Onramp, NextHopKind.Internet, NextHopKind.Blackhole),
    port: fc.integer({ min: 1, max: PORTS }),
    priority: fc.constantFrom(undefined, 10, 20, 100),
    weight: fc.constantFrom(undefined, 1, 2, 5),
    siteScope: fc.constantFrom(0, 0, 1, 2, undefined),
  });

interface Draw {
  base: number;
  noise: number[];
  len: number;
  kind: NextHopKind;
  port: number;
  priority: number | undefined;
  weight: number | undefined;
  siteScope: number | undefined;
}

interface Probe {
  base: number;
  noise: number[];
  keep: number;
  site: number;
  hash: number;
}

/** An address near base `b`: the first `keep` bits of the base, the rest from `noise`. */
function near(bases: number[][], b: number, noise: number[], keep: number, family: 4 | 6): Uint32Array {
  const words = family === 4 ? 1 : 4;
  const mask = new Uint32Array(4).fill(0xffffffff);
  maskWords(mask, keep, words);
  const out = new Uint32Array(4);
  for (let i = 0; i < words; i++) out[i] = ((bases[b][i] & mask[i]) | (noise[i] & ~mask[i])) >>> 0;
  return out;
}

const text = (w: Uint32Array, family: 4 | 6) => (family === 4 ? formatIpv4(w[0]) : formatIpv6(w));

function toSpec(bases: number[][], d: Draw, family: 4 | 6): RouteSpec {
  // Keep most of the base so that different draws share prefixes.
  const addr = near(bases, d.base, d.noise, Math.max(0, d.len - 3), family);
  return {
    prefix: `${text(addr, family)}/${d.len}`,
    kind: d.kind,
    port: d.port,
    priority: d.priority,
    weight: d.weight,
    siteScope: d.siteScope,
  };
}

const probeArb: fc.Arbitrary<Probe> = fc.record({
  base: fc.integer({ min: 0, max: 2 }),
  noise: fc.array(u32, { minLength: 4, maxLength: 4 }),
  keep: fc.integer({ min: 0, max: 128 }),
  site: fc.integer({ min: 0, max: SITES }),
  hash: u32,
});

function compare(table: RouteTable, oracle: OracleTable, bases: number[][], probes: Probe[], family: 4 | 6) {
  for (const p of probes) {
    const addr = near(bases, p.base, p.noise, Math.min(p.keep, family === 4 ? 32 : 128), family);
    const want = oracle.lookup(p.site, text(addr, family), p.hash);
    const got = family === 4 ? table.lookup4(p.site, addr[0], p.hash) : table.lookup6(p.site, addr, 0, p.hash);
    assert.equal(got, want, `site ${p.site} dst ${text(addr, family)} hash ${p.hash}`);
    // Flow setup passes the word and the hash as int32 (lookup4 takes either sign).
    if (family === 4) assert.equal(table.lookup4(p.site, addr[0] | 0, p.hash | 0), want, `signed words, dst ${text(addr, family)}`);
  }
}

for (const family of [4, 6] as const) {
  const basesArb = fc.array(fc.array(u32, { minLength: 4, maxLength: 4 }), { minLength: 3, maxLength: 3 });

  test(`IPv${family}: random tables agree with the oracle (route ids exactly)`, () => {
    fc.assert(
      fc.property(
        basesArb,
        fc.array(routeArb(family), { maxLength: 30 }),
        fc.subarray([1, 2, 3, 4]),
        fc.array(probeArb, { minLength: 30, maxLength: 30 }),
        (bases, draws, down, probes) => {
          const table = new RouteTable();
          const oracle = new OracleTable();
          for (const d of draws) {
            const spec = toSpec(bases, d, family);
            oracle.add(table.add(spec), spec);
          }
          for (const port of down) {
            table.setPortUp(port, false);
            oracle.down.add(port);
          }
          compare(table, oracle, bases, probes, family);
        },
      ),
      { numRuns: 200 },
    );
  });

  /** Random add / remove / port-health (and, with penalties, penalty) sequences; after each step the table agrees with the oracle. */
  const sequences = (penalties: number[]): void => {
    const ops = [
      fc.record({ op: fc.constant('add' as const), route: routeArb(family) }),
      fc.record({ op: fc.constant('remove' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('port' as const), port: fc.integer({ min: 1, max: PORTS }), up: fc.boolean() }),
    ];
    const penaltyOp = fc.record({ op: fc.constant('penalty' as const), port: fc.integer({ min: 1, max: PORTS }), penalty: fc.constantFrom(0, ...penalties) });
    const opArb = penalties.length > 0 ? fc.oneof(...ops, penaltyOp) : fc.oneof(...ops);
    fc.assert(
      fc.property(basesArb, fc.array(opArb, { maxLength: 40 }), fc.array(probeArb, { minLength: 12, maxLength: 12 }), (bases, ops, probes) => {
        const table = new RouteTable();
        const oracle = new OracleTable();
        for (const o of ops) {
          if (o.op === 'add') {
            const spec = toSpec(bases, o.route, family);
            const id = table.add(spec);
            assert.ok(!oracle.routes.has(id), 'route ids are unique among live routes');
            oracle.add(id, spec);
          } else if (o.op === 'remove') {
            const ids = [...oracle.routes.keys()];
            if (ids.length === 0) {
              assert.equal(table.remove(o.pick), false);
              continue;
            }
            const id = ids[o.pick % ids.length];
            assert.equal(table.remove(id), true);
            assert.equal(table.remove(id), false);
            oracle.routes.delete(id);
          } else if (o.op === 'port') {
            table.setPortUp(o.port, o.up);
            if (o.up) oracle.down.delete(o.port);
            else oracle.down.add(o.port);
          } else {
            table.setPortPenalty(o.port, o.penalty);
            oracle.penalty.set(o.port, o.penalty);
            assert.equal(table.penaltyOf(o.port), o.penalty);
          }
          assert.equal(table.size, oracle.routes.size);
          compare(table, oracle, bases, probes, family);
        }
      }),
      { numRuns: 120 },
    );
  };

  test(`IPv${family}: add/remove/health sequences agree with the oracle`, () => sequences([]));

  test(`IPv${family}: health penalties with add/remove/health sequences agree with the oracle`, () => sequences([500_000, 1_000_000, 0xffffffff]));
}

// --- fixtures -----------------------------------------------------------------------------------------

const onramp = (prefix: string, port: number, extra: Partial<RouteSpec> = {}): RouteSpec => ({
  prefix,
  kind: NextHopKind.Onramp,
  port,
  ...extra,
});

test('empty table and default route', () => {
  const t = new RouteTable();
  assert.equal(t.lookupAddress(0, '8.8.8.8'), NO_ROUTE);
  assert.equal(t.lookupAddress(0, '2001:db8::1'), NO_ROUTE);
  const def = t.add({ prefix: '0.0.0.0/0', kind: NextHopKind.Internet });
  assert.equal(t.lookupAddress(0, '8.8.8.8'), def);
  assert.equal(t.lookupAddress(7, '255.255.255.255'), def);
  assert.equal(t.routeKind[def], NextHopKind.Internet);
  assert.equal(t.routePort[def], PORT_INTERNET);
  assert.equal(t.lookupAddress(0, '2001:db8::1'), NO_ROUTE, 'families are separate');
  const def6 = t.add({ prefix: '::/0', kind: NextHopKind.Internet });
  assert.equal(t.lookupAddress(0, '2001:db8::1'), def6);
});

test('host routes win over everything shorter', () => {
  const t = new RouteTable();
  const net = t.add(onramp('10.0.1.0/24', 1));
  const host = t.add(onramp('10.0.1.10/32', 2));
  const host6 = t.add(onramp('2001:db8::1/128', 3));
  const net6 = t.add(onramp('2001:db8::/32', 4));
  assert.equal(t.lookupAddress(0, '10.0.1.10'), host);
  assert.equal(t.lookupAddress(0, '10.0.1.11'), net);
  assert.equal(t.lookupAddress(0, '2001:db8::1'), host6);
  assert.equal(t.lookupAddress(0, '2001:db8::2'), net6);
  assert.equal(t.remove(host), true);
  assert.equal(t.lookupAddress(0, '10.0.1.10'), net);
});

test('a scoped route beats a global one of equal length, only for its site', () => {
  const t = new RouteTable();
  const global = t.add(onramp('172.16.0.0/24', 1));
  const scoped = t.add(onramp('172.16.0.0/24', 2, { siteScope: 5 }));
  assert.equal(t.lookupAddress(5, '172.16.0.9'), scoped);
  assert.equal(t.lookupAddress(6, '172.16.0.9'), global);
  assert.equal(t.lookupAddress(0, '172.16.0.9'), global);
  // The scoped group stands alone: its down route is used over the healthy global one (no mixing).
  t.setPortUp(2, false);
  assert.equal(t.lookupAddress(5, '172.16.0.9'), scoped);
});

test('a longer global prefix beats a shorter scoped one', () => {
  const t = new RouteTable();
  const scoped = t.add(onramp('10.0.0.0/8', 1, { siteScope: 3 }));
  const global = t.add(onramp('10.1.0.0/16', 2));
  assert.equal(t.lookupAddress(3, '10.1.2.3'), global);
  assert.equal(t.lookupAddress(3, '10.2.2.3'), scoped);
  assert.equal(t.lookupAddress(4, '10.2.2.3'), NO_ROUTE);
  const s6 = t.add(onramp('fd00::/8', 1, { siteScope: 3 }));
  const g6 = t.add(onramp('fd00:1::/32', 2));
  assert.equal(t.lookupAddress(3, 'fd00:1::5'), g6);
  assert.equal(t.lookupAddress(3, 'fd00:2::5'), s6);
});

test('down primary fails over to the backup; all down keeps the primary; no shorter-prefix fallback', () => {
  const t = new RouteTable();
  const def = t.add({ prefix: '0.0.0.0/0', kind: NextHopKind.Internet });
  const primary = t.add(onramp('10.9.0.0/16', 1, { priority: 10 }));
  const backup = t.add(onramp('10.9.0.0/16', 2, { priority: 20 }));
  assert.equal(t.lookupAddress(0, '10.9.1.1'), primary);
  t.setPortUp(1, false);
  assert.equal(t.isPortUp(1), false);
  assert.equal(t.lookupAddress(0, '10.9.1.1'), backup);
  t.setPortUp(2, false);
  assert.equal(t.lookupAddress(0, '10.9.1.1'), primary, 'degraded path beats no path');
  assert.notEqual(t.lookupAddress(0, '10.9.1.1'), def);
  t.setPortUp(1, true);
  assert.equal(t.lookupAddress(0, '10.9.1.1'), primary);
});

test('ECMP: stable per hash and roughly weight-proportional', () => {
  const t = new RouteTable();
  const a = t.add(onramp('192.0.2.0/24', 1, { weight: 1 }));
  const b = t.add(onramp('192.0.2.0/24', 2, { weight: 3 }));
  const dst = 0xc0000205;
  const counts = new Map<number, number>();
  const N = 40_000;
  let h = 0x12345678;
  for (let i = 0; i < N; i++) {
    h = (Math.imul(h, 1103515245) + 12345) >>> 0; // any well-spread 32-bit hash
    const id = t.lookup4(0, dst, h);
    assert.equal(t.lookup4(0, dst, h), id, 'same hash, same route');
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const share = (counts.get(b) ?? 0) / N;
  assert.ok(share > 0.7 && share < 0.8, `weight 3 of 4 got ${share}`);
  assert.ok((counts.get(a) ?? 0) > 0, '(counts.get(a) ?? 0) > 0');
  // A down member leaves the set; the survivor takes every flow.
  t.setPortUp(2, false);
  for (let i = 0; i < 100; i++) assert.equal(t.lookup4(0, dst, i * 7919), a);
});

test('ECMP picks as the oracle\'s (flowHash >>> 0) % total for any 32-bit hash, signed or not, and any weights up to MAX_WEIGHT', () => {
  // Totals from 1 to past 2^15 (where modU32 leaves its int32 split for a plain modulo), hashes at the edges of
  // both readings of 32 bits (finalMix gives int32s, a caller may pass them unsigned).
  const hashArb = fc.oneof(u32, fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(0, 1, -1, 0x7fffffff, 0x80000000, 0xffffffff, -0x80000000, 0xffff, 0x10000));
  const weightArb = fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: MAX_WEIGHT }), fc.constantFrom(1, MAX_WEIGHT));
  fc.assert(fc.property(fc.array(weightArb, { minLength: 2, maxLength: 6 }), fc.array(hashArb, { minLength: 20, maxLength: 20 }), (weights, hashes) => {
    const t = new RouteTable();
    const oracle = new OracleTable();
    weights.forEach((weight, k) => {
      const spec = onramp('192.0.2.0/24', 1 + k, { weight });
      oracle.add(t.add(spec), spec);
    });
    for (const h of hashes) assert.equal(t.lookup4(0, 0xc0000201, h), oracle.lookup(0, '192.0.2.1', h), `hash ${h}, weights ${weights}`);
  }), { numRuns: 300 });
});

test('ECMP orders candidates by route id, also after ids are reused', () => {
  const t = new RouteTable();
  const oracle = new OracleTable();
  const add = (spec: RouteSpec) => {
    const id = t.add(spec);
    oracle.add(id, spec);
    return id;
  };
  const first = add(onramp('192.0.2.0/24', 1, { weight: 2 }));
  add(onramp('192.0.2.0/24', 2, { weight: 3 }));
  t.remove(first);
  oracle.routes.delete(first);
  assert.equal(add(onramp('192.0.2.0/24', 3, { weight: 1 })), first);
  for (let h = 0; h < 12; h++) assert.equal(t.lookup4(0, 0xc0000201, h), oracle.lookup(0, '192.0.2.1', h));
});

test('blackhole routes are always healthy and report NEXT_HOP_DROP', () => {
  const t = new RouteTable();
  const hole = t.add({ prefix: '198.51.100.0/24', kind: NextHopKind.Blackhole, priority: 50 });
  const via = t.add(onramp('198.51.100.0/24', 1, { priority: 10 }));
  assert.equal(t.lookupAddress(0, '198.51.100.1'), via);
  t.setPortUp(1, false);
  assert.equal(t.lookupAddress(0, '198.51.100.1'), hole);
  assert.equal(t.routeKind[hole], NextHopKind.Blackhole);
  assert.equal(t.routePort[hole], NEXT_HOP_DROP);
});

test('read-back, id reuse, version', () => {
  const t = new RouteTable();
  const v0 = t.version;
  const id = t.add(onramp('10.0.1.77/24', 9, { priority: 5, weight: 2, siteScope: 4 }));
  assert.ok(t.version > v0, 't.version > v0');
  assert.deepEqual(t.get(id), { id, prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: 9, priority: 5, weight: 2, siteScope: 4 });
  const id6 = t.add({ prefix: '2001:db8::/48', kind: NextHopKind.Internet });
  assert.deepEqual(t.get(id6), { id: id6, prefix: '2001:db8::/48', kind: NextHopKind.Internet, port: 0, priority: 100, weight: 1, siteScope: 0 });
  assert.deepEqual(t.list().map((r) => r.id), [id, id6]);
  assert.equal(t.remove(id), true);
  assert.equal(t.get(id), undefined);
  assert.equal(t.lookupAddress(4, '10.0.1.1'), NO_ROUTE);
  assert.equal(t.add(onramp('10.0.2.0/24', 1)), id, 'ids are reused');
  assert.equal(t.remove(-1), false);
  assert.equal(t.remove(1.5), false);
  assert.equal(t.remove(999), false);
});

test('bad input throws clear errors', () => {
  const t = new RouteTable();
  assert.throws(() => t.add({ prefix: '10.0.0.0/33', kind: NextHopKind.Internet }), TypeError);
  assert.throws(() => t.add({ prefix: 'nope', kind: NextHopKind.Internet }), /not an IPv4 or IPv6 prefix/);
  assert.throws(() => t.add({ prefix: '10.0.0.0/8', kind: 7 as NextHopKind }), RangeError);
  assert.throws(() => t.add({ prefix: '10.0.0.0/8', kind: NextHopKind.Onramp }), /port/);
  assert.throws(() => t.add(onramp('10.0.0.0/8', 0)), RangeError);
  assert.throws(() => t.add(onramp('10.0.0.0/8', 0xffff)), RangeError);
  assert.throws(() => t.add(onramp('10.0.0.0/8', 1, { weight: 0 })), RangeError);
  assert.throws(() => t.add(onramp('10.0.0.0/8', 1, { priority: -1 })), RangeError);
  assert.throws(() => t.add(onramp('10.0.0.0/8', 1, { siteScope: 0xffff })), RangeError);
  assert.throws(() => t.add(onramp('10.0.0.0/8', 1, { weight: 1.5 })), TypeError);
  assert.throws(() => t.setPortUp(0, false), RangeError);
  assert.equal(t.size, 0, 'failed adds leave nothing behind');
  // Out-of-range sites on the hot path just see the global routes.
  const g = t.add({ prefix: '0.0.0.0/0', kind: NextHopKind.Internet });
  assert.equal(t.lookup4(0x10000, 1, 0), g);
  assert.equal(t.lookup4(-1, 1, 0), g);
});

test('the table grows past its initial arrays', () => {
  const t = new RouteTable();
  const ids: number[] = [];
  for (let i = 0; i < 500; i++) ids.push(t.add(onramp(`10.${i >> 8}.${i & 255}.0/24`, 1 + (i % 3), { siteScope: i % 4 })));
  for (let i = 0; i < 500; i++) assert.equal(t.lookupAddress(i % 4, `10.${i >> 8}.${i & 255}.1`), ids[i]);
  for (let i = 0; i < 500; i += 2) t.remove(ids[i]);
  for (let i = 0; i < 500; i++) {
    assert.equal(t.lookupAddress(i % 4, `10.${i >> 8}.${i & 255}.1`), i % 2 === 0 ? NO_ROUTE : ids[i]);
  }
});

test('health penalty: a degraded onramp loses to a healthy one, a down one to a degraded one; the penalty stacks on priority', () => {
  const t = new RouteTable();
  const a = t.add(onramp('10.0.0.0/8', 1, { priority: 100 }));
  const b = t.add(onramp('10.0.0.0/8', 2, { priority: 200 }));
  assert.equal(t.lookupAddress(0, '10.1.1.1'), a);
  t.setPortPenalty(1, 500_000);
  assert.equal(t.lookupAddress(0, '10.1.1.1'), b, 'degraded: 500,100 > 200');
  assert.equal(t.effectivePriority(a), 500_100);
  t.setPortPenalty(2, 1_000_000);
  assert.equal(t.lookupAddress(0, '10.1.1.1'), a, 'degraded beats down');
  t.setPortPenalty(1, 0);
  t.setPortPenalty(2, 0);
  assert.equal(t.lookupAddress(0, '10.1.1.1'), a);
  assert.equal(t.penaltyOf(1), 0);
  // Internet routes are never penalised; the largest penalty on the largest priority still compares exactly.
  const c = t.add(onramp('192.0.2.0/24', 3, { priority: 0xffffffff }));
  const d = t.add({ prefix: '192.0.2.0/24', kind: NextHopKind.Internet, priority: 0xffffffff });
  t.setPortPenalty(3, 1);
  assert.equal(t.lookupAddress(0, '192.0.2.1'), d);
  t.setPortPenalty(3, 0);
  assert.equal(t.lookupAddress(0, '192.0.2.1'), c, 'equal priority: ECMP by hash 0 picks the lower id');
  assert.throws(() => t.setPortPenalty(0, 1), RangeError);
  assert.throws(() => t.setPortPenalty(1, -1), RangeError);
});
