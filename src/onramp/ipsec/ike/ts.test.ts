import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { TrafficSelector } from '../types.js';
import { entryToTs, formatTs, narrowSelectors, selectorsWithin, tsToEntry } from './ts.js';
import { TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE } from './constants.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const ts = (family: 4 | 6, start: string, end: string, protocol = 0, startPort = 0, endPort = 65535): TrafficSelector => ({
  family,
  start,
  end,
  protocol,
  startPort,
  endPort,
});
const ANY4 = ts(4, '0.0.0.0', '255.255.255.255');
const ANY6 = ts(6, '::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');

test('tsToEntry: IPv4 and IPv6 ranges as the TS payload carries them (RFC 7296 §3.13.1)', () => {
  const v4 = tsToEntry(ts(4, '10.50.1.0', '10.50.1.255', 6, 80, 443));
  assert.equal(v4.type, TS_IPV4_ADDR_RANGE);
  assert.deepEqual([v4.protocol, v4.startPort, v4.endPort, toHex(v4.start), toHex(v4.end)], [6, 80, 443, '0a320100', '0a3201ff']);
  const v6 = tsToEntry(ts(6, '2001:db8::', '2001:db8::ffff'));
  assert.equal(v6.type, TS_IPV6_ADDR_RANGE);
  assert.equal(toHex(v6.start), '20010db8000000000000000000000000');
  assert.equal(toHex(v6.end), '20010db800000000000000000000ffff');
  assert.deepEqual([v6.protocol, v6.startPort, v6.endPort], [0, 0, 65535]);
  assert.throws(() => tsToEntry(ts(4, '10.0.0.256', '10.0.0.1')), /'10.0.0.256' is not an IPv4 address/);
});

test('entryToTs: the bytes strongSwan sends for 10.50.2.1/32 and 0.0.0.0/0, and refusals', () => {
  // TS entry bodies as in a TSr payload from strongSwan (type 7, proto 0, length 16, ports 0-65535).
  const host = { type: 7, protocol: 0, startPort: 0, endPort: 65535, start: hex('0a320201'), end: hex('0a320201') };
  assert.deepEqual(entryToTs(host), ts(4, '10.50.2.1', '10.50.2.1'));
  assert.deepEqual(entryToTs({ ...host, start: hex('00000000'), end: hex('ffffffff') }), ANY4);
  assert.deepEqual(entryToTs({ ...host, type: 8, start: new Uint8Array(16), end: new Uint8Array(16).fill(0xff) }), ANY6);
  assert.equal(entryToTs({ ...host, type: 9 }), null, 'TS_FC_ADDR_RANGE (RFC 4595) is not ours');
  assert.equal(entryToTs({ ...host, type: 8 }), null, 'IPv6 type with 4-byte addresses');
  assert.equal(entryToTs({ ...host, end: hex('0a32020100') }), null, 'wrong length');
  assert.equal(entryToTs({ ...host, start: hex('0a320202') }), null, 'start after end');
  assert.equal(entryToTs({ ...host, startPort: 90, endPort: 80 }), null, 'ports reversed');
  assert.deepEqual(entryToTs({ ...host, startPort: 65535, endPort: 0 }), ts(4, '10.50.2.1', '10.50.2.1', 0, 65535, 0), 'OPAQUE');
});

test('entryToTs ∘ tsToEntry is the identity on well-formed selectors (property)', () => {
  fc.assert(
    fc.property(fc.constantFrom(4 as const, 6 as const), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat(255), fc.nat(65535), fc.nat(65535), (family, a, b, protocol, p1, p2) => {
      const n = family === 4 ? 4 : 16;
      const [s, e] = toHex(a.subarray(0, n)) <= toHex(b.subarray(0, n)) ? [a, b] : [b, a];
      const entry = { type: family === 4 ? 7 : 8, protocol, startPort: Math.min(p1, p2), endPort: Math.max(p1, p2), start: s.subarray(0, n), end: e.subarray(0, n) };
      const sel = entryToTs(entry);
      assert.ok(sel);
      const back = tsToEntry(sel);
      assert.deepEqual({ ...back, start: toHex(back.start), end: toHex(back.end) }, { ...entry, start: toHex(entry.start), end: toHex(entry.end) });
    }),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(fc.nat(10), fc.nat(255), fc.uint8Array({ maxLength: 20 }), fc.uint8Array({ maxLength: 20 }), fc.nat(70000), fc.nat(70000), (type, protocol, start, end, sp, ep) => {
      const sel = entryToTs({ type, protocol, startPort: sp, endPort: ep, start, end });
      if (sel) assert.ok(selectorsWithin([sel], [sel]));
    }),
    { numRuns: 200 },
  );
});

test('formatTs: CIDR blocks as prefixes, other ranges as a-b, protocol and ports when not any', () => {
  assert.equal(formatTs(ANY4), '0.0.0.0/0');
  assert.equal(formatTs(ANY6), '::/0');
  assert.equal(formatTs(ts(4, '10.50.2.1', '10.50.2.1')), '10.50.2.1/32');
  assert.equal(formatTs(ts(4, '10.0.0.0', '10.255.255.255')), '10.0.0.0/8');
  assert.equal(formatTs(ts(4, '10.0.0.1', '10.0.0.5')), '10.0.0.1-10.0.0.5');
  assert.equal(formatTs(ts(4, '10.0.0.2', '10.0.0.5')), '10.0.0.2-10.0.0.5', 'aligned size, unaligned start');
  assert.equal(formatTs(ts(6, '2001:db8::', '2001:db8::ffff', 17, 53, 53)), '2001:db8::/112[udp/53]');
  assert.equal(formatTs(ts(4, '10.0.0.0', '10.0.0.255', 6)), '10.0.0.0/24[tcp]');
  assert.equal(formatTs(ts(4, '10.0.0.0', '10.0.0.255', 0, 1000, 2000)), '10.0.0.0/24[any/1000-2000]');
  assert.equal(formatTs(ts(4, '10.0.0.0', '10.0.0.255', 132)), '10.0.0.0/24[132]');
  assert.equal(formatTs(ts(4, '10.0.0.0', '10.0.0.255', 6, 65535, 0)), '10.0.0.0/24[tcp/OPAQUE]');
});

test('narrowSelectors (§2.9): 0.0.0.0/0 and ::/0 against narrower config, narrower proposals, families apart', () => {
  const site = ts(4, '10.50.1.0', '10.50.1.255');
  // strongSwan proposes TSi = its packet's address, then its configured 0.0.0.0/0.
  assert.deepEqual(narrowSelectors([ANY4, ANY6], [site]), [site]);
  assert.deepEqual(narrowSelectors([ts(4, '10.50.1.10', '10.50.1.10'), ANY4], [site]), [ts(4, '10.50.1.10', '10.50.1.10'), site]);
  assert.deepEqual(narrowSelectors([ANY4], [ANY4, ANY6]), [ANY4]);
  assert.deepEqual(narrowSelectors([ANY4, ANY6], [ANY4, ANY6]), [ANY4, ANY6]);
  assert.deepEqual(narrowSelectors([ANY6], [site]), [], 'TS_UNACCEPTABLE');
  assert.deepEqual(narrowSelectors([ts(4, '10.0.0.0', '10.0.0.255', 6, 80, 80)], [ts(4, '10.0.0.128', '10.0.1.255', 0, 0, 1024)]), [ts(4, '10.0.0.128', '10.0.0.255', 6, 80, 80)]);
  assert.deepEqual(narrowSelectors([ts(4, '10.0.0.0', '10.0.0.255', 6)], [ts(4, '10.0.0.0', '10.0.0.255', 17)]), [], 'tcp vs udp');
  assert.deepEqual(narrowSelectors([ts(4, '10.0.0.0', '10.0.0.255', 6, 65535, 0)], [site]), [], 'OPAQUE outside the site');
  assert.deepEqual(narrowSelectors([ts(4, '10.50.1.0', '10.50.1.255', 6, 65535, 0)], [site]), [ts(4, '10.50.1.0', '10.50.1.255', 6, 65535, 0)]);
  assert.deepEqual(narrowSelectors([ts(4, '10.50.1.0', '10.50.1.255', 6, 65535, 0)], [ts(4, '10.50.1.0', '10.50.1.255', 0, 80, 80)]), []);
  assert.deepEqual(narrowSelectors([site, site], [ANY4]), [site], 'duplicates dropped');
});

test('selectorsWithin: the responder may only narrow (§2.9)', () => {
  const site = ts(4, '10.50.1.0', '10.50.1.255');
  assert.ok(selectorsWithin([site], [ANY4]));
  assert.ok(selectorsWithin([site, ANY6], [ANY4, ANY6]));
  assert.ok(!selectorsWithin([ANY4], [site]));
  assert.ok(!selectorsWithin([ANY6], [ANY4]));
  assert.ok(selectorsWithin([ts(4, '10.50.1.0', '10.50.1.255', 6, 80, 80)], [site]));
  assert.ok(!selectorsWithin([site], [ts(4, '10.50.1.0', '10.50.1.255', 6)]), 'any protocol is wider than tcp');
  assert.ok(selectorsWithin([ts(4, '10.50.1.0', '10.50.1.255', 6, 65535, 0)], [site]), 'OPAQUE inside any port');
  assert.ok(!selectorsWithin([ts(4, '10.50.1.0', '10.50.1.255', 6, 65535, 0)], [ts(4, '10.50.1.0', '10.50.1.255', 6, 0, 1000)]));
  assert.ok(selectorsWithin([], [site]), 'vacuous');
});

// --- the oracle: points of a small universe ----------------------------------------------------------------
// Selectors are drawn inside 16 addresses (10.0.0.0-15 or 2001:db8::0-f, plus the whole family) and ports
// 0..9 (plus any), so membership of every point of this grid decides set equality exactly.
const BASE = { 4: '10.0.0.', 6: '2001:db8::' } as const;
const addr = (family: 4 | 6, i: number): string => (family === 4 ? `${BASE[4]}${i}` : `${BASE[6]}${i.toString(16)}`);
const PROTOCOLS = [0, 6, 17];
interface Point { family: 4 | 6; a: number; protocol: number; port: number }
const POINTS: Point[] = [];
for (const family of [4, 6] as const) {
  for (let a = -1; a <= 16; a++) {
    for (const protocol of [6, 17, 1]) {
      for (const port of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65535, -1]) POINTS.push({ family, a, protocol, port });
    }
  }
}
const fullStart = { 4: 0n, 6: 0n };
const fullEnd = { 4: 0xffff_ffffn, 6: (1n << 128n) - 1n };
const addrCache = new Map<string, bigint>();
function addrValue(family: 4 | 6, text: string): bigint {
  let v = addrCache.get(text);
  if (v === undefined) {
    v = BigInt('0x' + toHex(tsToEntry(ts(family, text, text)).start));
    addrCache.set(text, v);
  }
  return v;
}
/** A point's address: a = -1 below the universe, 16 above it (still inside the whole family). */
function pointAddr(p: Point): bigint {
  if (p.a < 0) return fullStart[p.family];
  if (p.a >= 16) return fullEnd[p.family];
  return addrValue(p.family, addr(p.family, p.a));
}
/** port -1 is a packet without ports (a fragment): only OPAQUE or any-port selectors match it. */
function member(sel: TrafficSelector, p: Point): boolean {
  if (sel.family !== p.family) return false;
  const x = pointAddr(p);
  if (x < addrValue(sel.family, sel.start) || x > addrValue(sel.family, sel.end)) return false;
  if (sel.protocol !== 0 && sel.protocol !== p.protocol) return false;
  const anyPort = sel.startPort === 0 && sel.endPort === 65535;
  const opaque = sel.startPort === 65535 && sel.endPort === 0;
  if (p.port < 0) return anyPort || opaque;
  return anyPort || (!opaque && p.port >= sel.startPort && p.port <= sel.endPort);
}
const memberOfAny = (sels: readonly TrafficSelector[], p: Point): boolean => sels.some((s) => member(s, p));

const selectorArb: fc.Arbitrary<TrafficSelector> = fc
  .record({
    family: fc.constantFrom(4 as const, 6 as const),
    whole: fc.boolean(),
    a: fc.nat(15),
    b: fc.nat(15),
    protocol: fc.constantFrom(...PROTOCOLS),
    ports: fc.oneof(fc.constant<[number, number]>([0, 65535]), fc.constant<[number, number]>([65535, 0]), fc.tuple(fc.nat(9), fc.nat(9))),
  })
  .map(({ family, whole, a, b, protocol, ports }) => {
    const [s, e] = [Math.min(a, b), Math.max(a, b)];
    const [sp, ep] = ports[0] === 65535 && ports[1] === 0 ? ports : [Math.min(...ports), Math.max(...ports)];
    return whole && family === 4
      ? ts(4, '0.0.0.0', '255.255.255.255', protocol, sp, ep)
      : whole
        ? ts(6, '::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', protocol, sp, ep)
        : ts(family, addr(family, s), addr(family, e), protocol, sp, ep);
  });

test('narrowSelectors = (∪ proposed) ∩ (∪ configured), point by point, against the grid oracle (property)', () => {
  fc.assert(
    fc.property(fc.array(selectorArb, { maxLength: 4 }), fc.array(selectorArb, { maxLength: 4 }), (proposed, configured) => {
      const narrowed = narrowSelectors(proposed, configured);
      for (const p of POINTS) {
        assert.equal(memberOfAny(narrowed, p), memberOfAny(proposed, p) && memberOfAny(configured, p), JSON.stringify(p));
      }
      // The result is what a responder may answer: inside the proposal.
      assert.ok(selectorsWithin(narrowed, proposed));
      const keys = narrowed.map(formatTs);
      assert.equal(new Set(narrowed.map((s) => JSON.stringify(s))).size, keys.length, 'no duplicates');
    }),
    { numRuns: 150 },
  );
});

test('selectorsWithin agrees with the grid oracle: each answer entry ⊆ one proposed entry (property)', () => {
  fc.assert(
    fc.property(fc.array(selectorArb, { maxLength: 3 }), fc.array(selectorArb, { minLength: 1, maxLength: 3 }), (answer, proposed) => {
      const oracle = answer.every((a) => proposed.some((p) => POINTS.every((pt) => !member(a, pt) || member(p, pt))));
      assert.equal(selectorsWithin(answer, proposed), oracle);
    }),
    { numRuns: 150 },
  );
});
