import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GatewayPolicy, NameSource, type GatewayPolicySpec, type GatewayRuleSpec } from '../gateway/policy.js';
import { parseIpv4, parseIpv6 } from '../wire/addr.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { FastGatewayPolicy } from './gateway-policy.js';

const spec = (rules: GatewayRuleSpec[], fallback: 'allow' | 'block' = 'allow'): GatewayPolicySpec => ({ rules, dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback }, dlpScanBytes: 65536 });

/** Small vocabularies, so rules and packets meet often. */
const LABELS = ['a', 'b', 'www', 'example', 'social', 'com', 'org', 'xn--nxasmq6b'];
const name = fc.array(fc.constantFrom(...LABELS), { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
const pattern = fc.oneof(name, name.map((n) => `*.${n}`), fc.constant('*'));
const queryName = fc.oneof(
  name,
  name.map((n) => n.toUpperCase()),
  name.map((n) => `${n}.`),
  fc.constantFrom('', '.', 'a..b', '-bad_/', 'é.com', `${'x'.repeat(70)}.com`, `${'a.'.repeat(130)}com`),
);
const V4 = ['10.0.1.0/24', '10.0.0.0/8', '203.0.113.0/24', '2001:db8::/32'];
const ports: fc.Arbitrary<Array<[number, number]>> = fc.constantFrom<Array<[number, number]>>([[443, 443]], [[80, 80]], [[1, 1023]], [[8000, 9000], [443, 443]]);
const rule = (id: number): fc.Arbitrary<GatewayRuleSpec> =>
  fc.record({
    id: fc.constant(id),
    action: fc.constantFrom('allow', 'block', 'log'),
    sites: fc.option(fc.subarray([1, 2, 3], { minLength: 1 }), { nil: undefined }),
    onramps: fc.option(fc.subarray([1, 2, 5], { minLength: 1 }), { nil: undefined }),
    srcPrefixes: fc.option(fc.subarray(V4, { minLength: 1 }), { nil: undefined }),
    dstPrefixes: fc.option(fc.subarray(V4, { minLength: 1 }), { nil: undefined }),
    protocols: fc.option(fc.subarray([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP], { minLength: 1 }), { nil: undefined }),
    dstPorts: fc.option(ports, { nil: undefined }),
    hostnames: fc.option(fc.array(pattern, { minLength: 1, maxLength: 3 }), { nil: undefined }),
    sources: fc.option(fc.integer({ min: 1, max: 7 }), { nil: undefined }),
    fallback: fc.option(fc.constantFrom<'allow' | 'block'>('allow', 'block'), { nil: undefined }),
  }, { requiredKeys: ['id', 'action'] });
const rules = fc.integer({ min: 0, max: 40 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => rule(i + 1))));
const packet = fc.record({
  site: fc.integer({ min: 0, max: 4 }),
  onramp: fc.constantFrom(1, 2, 5, 7),
  protocol: fc.constantFrom(IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP),
  src: fc.constantFrom('10.0.1.10', '10.9.0.1', '203.0.113.5', '192.0.2.1'),
  dst: fc.constantFrom('203.0.113.10', '10.0.1.1', '198.51.100.7'),
  srcPort: fc.constantFrom(40000, 80, 443),
  dstPort: fc.constantFrom(443, 80, 8443, 53, 22),
});
const SOURCES = [NameSource.Unknown, NameSource.Sni, NameSource.HttpHost, NameSource.Dns];

test('property: FastGatewayPolicy answers exactly as the plain scan (decide with every source, pending), IPv4 and IPv6', () => {
  fc.assert(fc.property(rules, fc.array(fc.tuple(packet, queryName), { minLength: 1, maxLength: 12 }), (rs, questions) => {
    const scan = new GatewayPolicy(spec(rs));
    const fast = new FastGatewayPolicy(spec(rs));
    assert.equal(fast.hasHostnameRules, scan.hasHostnameRules);
    const addr6 = new Uint32Array(8);
    for (const [p, n] of questions) {
      const src = parseIpv4(p.src);
      const dst = parseIpv4(p.dst);
      const args = [p.site, p.onramp, p.protocol, src, dst, p.srcPort, p.dstPort] as const;
      for (const source of SOURCES) {
        for (const nm of source === NameSource.Unknown ? [null] : [n, null]) {
          assert.equal(fast.decide4(...args, source, nm), scan.decide4(...args, source, nm), `decide4 ${JSON.stringify(p)} source ${source} name ${String(nm)}`);
        }
      }
      assert.equal(fast.pending4(...args), scan.pending4(...args));
      // The same question over IPv6 (the documentation prefix): only rules without IPv4 prefixes can match it.
      addr6.set(parseIpv6('2001:db8::1')!, 0);
      addr6.set(parseIpv6('2001:db8:5::1')!, 4);
      const args6 = [p.site, p.onramp, p.protocol, addr6, 0, 4, p.srcPort, p.dstPort] as const;
      assert.equal(fast.decide6(...args6, NameSource.Sni, n), scan.decide6(...args6, NameSource.Sni, n));
      assert.equal(fast.pending6(...args6), scan.pending6(...args6));
    }
  }), { numRuns: 300 });
});

test('1,000 hostname rules: the fast policy agrees with the scan on named and unnamed questions', () => {
  const many: GatewayRuleSpec[] = [];
  for (let i = 0; i < 1000; i++) many.push({ id: i + 1, action: i % 2 === 0 ? 'block' : 'log', sites: [1 + (i % 3)], hostnames: [`*.site${i}.example`, `site${i}.example`] });
  many.push({ id: 1001, action: 'allow' });
  const scan = new GatewayPolicy(spec(many));
  const fast = new FastGatewayPolicy(spec(many));
  const src = parseIpv4('10.0.1.10');
  const dst = parseIpv4('203.0.113.10');
  for (const site of [1, 2, 3, 4]) {
    for (const n of ['www.site999.example', 'site0.example', 'SITE500.example.', 'nothing.example', 'a.b.site998.example']) {
      assert.equal(fast.decide4(site, 1, IPPROTO_TCP, src, dst, 40000, 443, NameSource.Sni, n), scan.decide4(site, 1, IPPROTO_TCP, src, dst, 40000, 443, NameSource.Sni, n));
    }
    assert.equal(fast.decide4(site, 1, IPPROTO_TCP, src, dst, 40000, 443, NameSource.Unknown, null), scan.decide4(site, 1, IPPROTO_TCP, src, dst, 40000, 443, NameSource.Unknown, null));
  }
  // Rule index 999 names site999.example for site 1 + 999 % 3 = 1; for site 2 only the catch-all allow (index 1000) is left.
  assert.equal(fast.decide4(1, 1, IPPROTO_TCP, src, dst, 40000, 443, NameSource.Sni, 'www.site999.example'), 999);
  assert.equal(fast.decide4(2, 1, IPPROTO_TCP, src, dst, 40000, 443, NameSource.Sni, 'www.site999.example'), 1000);
});
