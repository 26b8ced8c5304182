import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Firewall, NO_MATCH, intervalOf, intervalOf4, topIndex4, type FirewallRuleSpec } from './firewall.js';
import { formatIpv4, formatIpv6, parseAddress, parsePrefix, type Prefix } from '../wire/addr.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';

const TCP = IPPROTO_TCP;
const UDP = IPPROTO_UDP;

interface Packet {
  site: number;
  onramp: number;
  protocol: number;
  family: 4 | 6;
  src: Uint32Array;
  dst: Uint32Array;
  srcPort: number;
  dstPort: number;
}

function packet(site: number, onramp: number, protocol: number, src: string, dst: string, srcPort = 0, dstPort = 0): Packet {
  const s = new Uint32Array(4);
  const d = new Uint32Array(4);
  const family = parseAddress(src, s) as 4 | 6;
  assert.equal(parseAddress(dst, d), family);
  return { site, onramp, protocol, family, src: s, dst: d, srcPort, dstPort };
}

const scratch = new Uint32Array(8);
function evaluate(fw: Firewall, p: Packet): number {
  if (p.family === 4) return fw.evaluate4(p.site, p.onramp, p.protocol, p.src[0], p.dst[0], p.srcPort, p.dstPort);
  scratch.set(p.src, 0);
  scratch.set(p.dst, 4);
  return fw.evaluate6(p.site, p.onramp, p.protocol, scratch, 0, 4, p.srcPort, p.dstPort);
}

// --- the oracle: first rule whose every condition matches, straight from the spec -------------

const parsed = new Map<string, Prefix>();
function addressIn(prefixes: string[] | undefined, family: 4 | 6, addr: Uint32Array): boolean {
  if (!prefixes || prefixes.length === 0) return true;
  return prefixes.some((text) => {
    let p = parsed.get(text);
    if (!p) parsed.set(text, (p = parsePrefix(text)!));
    if (p.family !== family) return false;
    for (let bit = 0; bit < p.length; bit++) {
      const w = bit >>> 5;
      const mask = 1 << (31 - (bit & 31));
      if ((addr[w] & mask) !== (p.words[w] & mask)) return false;
    }
    return true;
  });
}

function oracle(rules: FirewallRuleSpec[], p: Packet): number {
  const listed = (list: number[] | undefined, v: number) => !list || list.length === 0 || list.includes(v);
  const inRanges = (list: Array<[number, number]> | undefined, v: number) => !list || list.length === 0 || list.some(([lo, hi]) => v >= lo && v <= hi);
  const hasPorts = (r: FirewallRuleSpec) => (r.srcPorts?.length ?? 0) > 0 || (r.dstPorts?.length ?? 0) > 0;
  return rules.findIndex(
    (r) =>
      listed(r.sites, p.site) &&
      listed(r.onramps, p.onramp) &&
      listed(r.protocols, p.protocol) &&
      addressIn(r.srcPrefixes, p.family, p.src) &&
      addressIn(r.dstPrefixes, p.family, p.dst) &&
      (!hasPorts(r) || ((p.protocol === TCP || p.protocol === UDP) && inRanges(r.srcPorts, p.srcPort) && inRanges(r.dstPorts, p.dstPort))),
  );
}

// --- fixtures ----------------------------------------------------------------------------------

test('no rules: the default action decides', () => {
  for (const action of ['allow', 'deny'] as const) {
    const fw = new Firewall([], action);
    const r = evaluate(fw, packet(1, 1, TCP, '10.0.0.1', '8.8.8.8', 1000, 443));
    assert.equal(r, NO_MATCH);
    assert.equal(fw.allows(r), action === 'allow');
    assert.equal(fw.ruleId(r), 0);
    assert.equal(fw.size, 0);
  }
});

test('first match wins, whatever the later rules say', () => {
  const fw = new Firewall(
    [
      { id: 10, action: 'deny', srcPrefixes: ['10.0.1.0/24'], dstPorts: [[22, 22]] },
      { id: 20, action: 'allow', srcPrefixes: ['10.0.0.0/8'] },
      { id: 30, action: 'deny' },
    ],
    'allow',
  );
  const ssh = evaluate(fw, packet(1, 1, TCP, '10.0.1.5', '203.0.113.1', 5555, 22));
  assert.deepEqual([ssh, fw.ruleId(ssh), fw.allows(ssh)], [0, 10, false]);
  const web = evaluate(fw, packet(1, 1, TCP, '10.0.1.5', '203.0.113.1', 5555, 443));
  assert.deepEqual([web, fw.ruleId(web), fw.allows(web)], [1, 20, true]);
  const outside = evaluate(fw, packet(1, 1, UDP, '192.168.0.1', '203.0.113.1', 53, 53));
  assert.deepEqual([outside, fw.ruleId(outside), fw.allows(outside)], [2, 30, false]);
});

test('family, ports-only-for-TCP/UDP, sites, onramps and protocols', () => {
  const fw = new Firewall(
    [
      { id: 1, action: 'deny', dstPrefixes: ['198.51.100.0/24'] }, // IPv4 only
      { id: 2, action: 'deny', dstPorts: [[0, 65535]] }, // any port, but TCP/UDP only
      { id: 3, action: 'deny', sites: [7], onramps: [70, 71] },
      { id: 4, action: 'deny', protocols: [IPPROTO_ICMPV6], srcPrefixes: ['2001:db8::/32', '10.9.0.0/16'] },
      { id: 5, action: 'allow' },
    ],
    'deny',
  );
  const id = (p: Packet) => fw.ruleId(evaluate(fw, p));
  assert.equal(id(packet(1, 1, IPPROTO_ICMP, '10.0.0.1', '198.51.100.9')), 1);
  assert.equal(id(packet(1, 1, IPPROTO_ICMPV6, 'fd00::1', '2001:db8::9')), 5); // v4-only rule 1 skipped; rule 4 wants 2001:db8::/32 source
  assert.equal(id(packet(1, 1, UDP, 'fd00::1', '2001:db8::9', 1, 2)), 2);
  assert.equal(id(packet(1, 1, 47, '10.0.0.1', '10.0.0.2', 1, 2)), 5); // GRE: port rule 2 does not apply
  assert.equal(id(packet(7, 71, IPPROTO_ICMP, '10.0.0.1', '10.0.0.2')), 3);
  assert.equal(id(packet(7, 72, IPPROTO_ICMP, '10.0.0.1', '10.0.0.2')), 5);
  assert.equal(id(packet(1, 1, IPPROTO_ICMPV6, '2001:db8:ffff::1', '::1')), 4);
  assert.equal(id(packet(1, 1, IPPROTO_ICMP, '10.9.1.1', '10.0.0.2')), 5); // rule 4 is ICMPv6 only
  // Out-of-range inputs only match rules without a condition on that dimension.
  assert.equal(id(packet(70000, -1, IPPROTO_ICMP, '10.0.0.1', '10.0.0.2')), 5);
  assert.equal(id(packet(1, 1, TCP, '10.0.0.1', '10.0.0.2', 70000, 70000)), 5);
});

test('prefixes touching the ends of the address spaces', () => {
  const fw = new Firewall(
    [
      { id: 1, action: 'deny', srcPrefixes: ['255.255.255.255/32', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128'] },
      { id: 2, action: 'deny', srcPrefixes: ['0.0.0.0/32', '::/128'] },
      { id: 3, action: 'deny', srcPrefixes: ['128.0.0.0/1', '8000::/1'] },
      { id: 4, action: 'allow', srcPrefixes: ['0.0.0.0/0', '::/0'] },
    ],
    'deny',
  );
  const id = (src: string) => fw.ruleId(evaluate(fw, packet(0, 0, UDP, src, src.includes(':') ? '::' : '0.0.0.0', 1, 1)));
  assert.deepEqual(['255.255.255.255', '0.0.0.0', '255.255.255.254', '127.255.255.255', '0.0.0.1'].map(id), [1, 2, 3, 4, 4]);
  assert.deepEqual(['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::', '8000::', '7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::1'].map(id), [1, 2, 3, 4, 4]);
});

test('bad rules are rejected with the rule id and field', () => {
  const bad: Array<[unknown, RegExp]> = [
    [{ id: 0, action: 'allow' }, /rule 0 \(index 1\): id/],
    [{ id: 5, action: 'permit' }, /rule 5 .*action/],
    [{ id: 5, action: 'deny', srcPrefixes: ['10.0.0.0/33'] }, /rule 5 .*srcPrefixes\[0\]/],
    [{ id: 5, action: 'deny', dstPrefixes: ['10.0.0.0/8', 'nope'] }, /rule 5 .*dstPrefixes\[1\]/],
    [{ id: 5, action: 'deny', dstPorts: [[10, 5]] }, /rule 5 .*dstPorts\[0\]/],
    [{ id: 5, action: 'deny', srcPorts: [[1, 70000]] }, /rule 5 .*srcPorts\[0\]/],
    [{ id: 5, action: 'deny', protocols: [256] }, /rule 5 .*protocols\[0\]/],
    [{ id: 5, action: 'deny', sites: [1.5] }, /rule 5 .*sites\[0\]/],
    [{ id: 5, action: 'deny', onramps: 'all' }, /rule 5 .*onramps must be an array/],
    [{ id: 5, action: 'deny', dstPort: [[1, 2]] }, /rule 5 .*dstPort is not a rule field/],
  ];
  for (const [rule, message] of bad) {
    assert.throws(() => new Firewall([{ id: 1, action: 'allow' }, rule as FirewallRuleSpec], 'deny'), message, JSON.stringify(rule));
  }
  assert.throws(() => new Firewall([], 'maybe' as 'allow'), /defaultAction/);
});

// --- property: random rule sets against the oracle --------------------------------------------

/** Small value sets so random prefixes, ranges and packets overlap often; IPv6 varies every word. */
const V4_BASES = [0x0a000000, 0x0a000100, 0x0a000180, 0x0a0001ff, 0xc0a80000, 0xffffffff, 0];
const V6_WORDS = [
  [0x20010db8, 0xffffffff, 0],
  [0, 1, 0xffffffff],
  [0, 0x80000000, 0xffffffff],
  [0, 1, 2, 0xffffffff],
];

const v4AddrArb = fc.tuple(fc.constantFrom(...V4_BASES), fc.integer({ min: -2, max: 2 })).map(([b, d]) => (b + d) >>> 0);
const v6AddrArb = fc.tuple(...V6_WORDS.map((set, k) => (k === 3 ? fc.constantFrom(...set).chain((w) => fc.integer({ min: -1, max: 1 }).map((d) => (w + d) >>> 0)) : fc.constantFrom(...set))));
const v4PrefixArb = fc.tuple(v4AddrArb, fc.oneof(fc.integer({ min: 0, max: 32 }), fc.integer({ min: 22, max: 32 }))).map(([a, len]) => `${formatIpv4(a)}/${len}`);
const v6PrefixArb = fc.tuple(v6AddrArb, fc.integer({ min: 0, max: 128 })).map(([w, len]) => `${formatIpv6(Uint32Array.from(w))}/${len}`);
const prefixesArb = fc.option(fc.array(fc.oneof(v4PrefixArb, v6PrefixArb), { maxLength: 3 }), { nil: undefined });
const PORT_POINTS = [0, 1, 2, 21, 22, 23, 1023, 1024, 65534, 65535];
const portArb = fc.constantFrom(...PORT_POINTS);
const portRangesArb = fc.option(fc.array(fc.tuple(portArb, portArb).map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as [number, number]), { maxLength: 3 }), { nil: undefined });
const smallArb = fc.integer({ min: 0, max: 4 });
const smallListArb = fc.option(fc.array(smallArb, { maxLength: 3 }), { nil: undefined });
const PROTOCOLS = [IPPROTO_ICMP, TCP, UDP, IPPROTO_ICMPV6, 47];
const protocolArb = fc.constantFrom(...PROTOCOLS);

const ruleArb = (id: number): fc.Arbitrary<FirewallRuleSpec> =>
  fc
    .record({
      action: fc.constantFrom('allow' as const, 'deny' as const),
      sites: smallListArb,
      onramps: smallListArb,
      srcPrefixes: prefixesArb,
      dstPrefixes: prefixesArb,
      protocols: fc.option(fc.array(protocolArb, { maxLength: 2 }), { nil: undefined }),
      srcPorts: portRangesArb,
      dstPorts: portRangesArb,
    })
    .map((r) => {
      const rule: FirewallRuleSpec = { id, action: r.action };
      // Leave absent fields absent (the spec's "absent = any"), as a config loader would.
      for (const key of ['sites', 'onramps', 'srcPrefixes', 'dstPrefixes', 'protocols', 'srcPorts', 'dstPorts'] as const) {
        if (r[key] !== undefined) (rule as unknown as Record<string, unknown>)[key] = r[key];
      }
      return rule;
    });

const rulesArb = fc.integer({ min: 0, max: 70 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => ruleArb(i + 1))));

const packetArb: fc.Arbitrary<Packet> = fc
  .record({
    site: smallArb,
    onramp: smallArb,
    protocol: protocolArb,
    v6: fc.boolean(),
    src4: v4AddrArb,
    dst4: v4AddrArb,
    src6: v6AddrArb,
    dst6: v6AddrArb,
    srcPort: portArb,
    dstPort: portArb,
  })
  .map((r) => ({
    site: r.site,
    onramp: r.onramp,
    protocol: r.protocol,
    family: r.v6 ? 6 : 4,
    src: r.v6 ? Uint32Array.from(r.src6) : Uint32Array.of(r.src4, 0, 0, 0),
    dst: r.v6 ? Uint32Array.from(r.dst6) : Uint32Array.of(r.dst4, 0, 0, 0),
    srcPort: r.srcPort,
    dstPort: r.dstPort,
  }));

test('evaluate agrees with a linear scan on random rule sets and packets', () => {
  fc.assert(
    fc.property(rulesArb, fc.array(packetArb, { minLength: 1, maxLength: 40 }), fc.constantFrom('allow' as const, 'deny' as const), (rules, packets, defaultAction) => {
      const fw = new Firewall(rules, defaultAction);
      for (const p of packets) {
        const expected = oracle(rules, p);
        const got = evaluate(fw, p);
        assert.equal(got, expected);
        if (p.family === 4) assert.equal(fw.evaluate4(p.site, p.onramp, p.protocol, p.src[0] | 0, p.dst[0] | 0, p.srcPort, p.dstPort), expected, 'signed words');
        assert.equal(fw.allows(got), expected < 0 ? defaultAction === 'allow' : rules[expected].action === 'allow');
        assert.equal(fw.ruleId(got), expected < 0 ? 0 : rules[expected].id);
      }
    }),
    { numRuns: 300 },
  );
});

test('intervalOf4 (the search narrowed by the top byte) equals the plain binary search: clustered, spread and edge starts, either sign', () => {
  // Starts clustered in a few top bytes (many intervals in one byte's range) or spread over the space, and the
  // byte edges themselves; addresses near the starts, at the byte edges and at both ends of the space.
  const edgeArb = fc.integer({ min: 0, max: 255 }).chain((b) => fc.integer({ min: -1, max: 1 }).map((d) => ((b << 24) + d) >>> 0));
  const clusteredArb = fc.tuple(fc.constantFrom(10, 127, 128, 203, 255), fc.integer({ min: 0, max: 0xffffff })).map(([b, low]) => ((b << 24) | low) >>> 0);
  const wordArb = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), edgeArb, clusteredArb);
  fc.assert(
    fc.property(fc.array(wordArb, { maxLength: 300 }), fc.array(wordArb, { minLength: 1, maxLength: 60 }), (words, xs) => {
      const starts = Uint32Array.from([0, ...new Set(words.filter((w) => w !== 0))].sort((a, b) => a - b));
      const top = topIndex4(starts, starts.length);
      for (const x of [...xs, ...Array.from(starts), 0, 0xffffffff]) {
        const expected = intervalOf(starts, starts.length, x);
        assert.equal(intervalOf4(starts, top, x), expected);
        assert.equal(intervalOf4(starts, top, x | 0), expected);
      }
    }),
    { numRuns: 500 },
  );
});

test('more than 1,024 rules (several aggregate words): deep matches agree with the linear scan', () => {
  // Most rules are parked on site 9 (packets come from sites 0..4), so first matches land anywhere in the list.
  const parkedRuleArb = fc.tuple(ruleArb(1), fc.integer({ min: 0, max: 99 })).map(([rule, dice]) => (dice < 97 ? { ...rule, sites: [9] } : rule));
  fc.assert(
    fc.property(fc.array(parkedRuleArb, { minLength: 1025, maxLength: 1400 }), fc.array(packetArb, { minLength: 50, maxLength: 100 }), (specs, packets) => {
      const rules = specs.map((r, i) => ({ ...r, id: i + 1 }));
      const fw = new Firewall(rules, 'deny');
      for (const p of packets) assert.equal(evaluate(fw, p), oracle(rules, p));
    }),
    { numRuns: 8, endOnFailure: true }, // shrinking 1,000-rule lists takes minutes; the failing case is printed as is
  );
});
