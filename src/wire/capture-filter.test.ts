import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildIcmpEcho, buildTcp, buildUdp } from './build.js';
import { compileFilter, filterPredicate, FilterError, formatFilter, MAX_FILTER_DEPTH, parseFilter, type FilterNode } from './capture-filter.js';
import { inspect } from './inspect.js';
import { PacketInfo } from './packet-info.js';

function info(packet: Uint8Array): PacketInfo {
  const i = new PacketInfo();
  assert.equal(inspect(packet, 0, packet.length, i), 0);
  return i;
}

const udp = info(buildUdp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 53 }));
const tcp = info(buildTcp({ src: '203.0.113.10', dst: '198.51.100.1' }, { srcPort: 80, dstPort: 61000, flags: 0x12, seq: 1, ack: 2 }));
const ping = info(buildIcmpEcho({ src: '10.0.1.10', dst: '203.0.113.10' }, { type: 'request', id: 53 }));
const v6 = info(buildUdp({ src: '2001:db8::10', dst: '2001:db8:1::1' }, { srcPort: 5000, dstPort: 443 }));

test('filters: hosts, nets, ports, protocols, src/dst, and/or/not, parentheses', () => {
  const cases: Array<[string, boolean[]]> = [
    // expression → [udp, tcp, ping, v6]
    ['', [true, true, true, true]],
    ['host 10.0.1.10', [true, false, true, false]],
    ['src host 10.0.1.10', [true, false, true, false]],
    ['dst host 10.0.1.10', [false, false, false, false]],
    ['dst 203.0.113.10', [true, false, true, false]],
    ['net 203.0.113.0/24', [true, true, true, false]],
    ['dst net 198.51.100.0/24', [false, true, false, false]],
    ['port 53', [true, false, false, false]],
    ['src port 80 or dst port 80', [false, true, false, false]],
    ['tcp', [false, true, false, false]],
    ['udp and not port 53', [false, false, false, true]],
    ['icmp', [false, false, true, false]],
    ['ip6 and net 2001:db8::/32', [false, false, false, true]],
    ['host 2001:db8::10', [false, false, false, true]],
    ['tcp port 80', [false, true, false, false]],
    ['!(udp || tcp)', [false, false, true, false]],
    ['udp and (port 53 or port 443)', [true, false, false, true]],
    ['icmp or udp and port 443', [false, false, true, true]],
    ['ip and not icmp && not tcp', [true, false, false, false]],
  ];
  for (const [expr, want] of cases) {
    const p = filterPredicate(expr);
    assert.deepEqual([udp, tcp, ping, v6].map(p), want, expr);
  }
});

test('filters that do not parse name the column and the token', () => {
  const cases: Array<[string, RegExp]> = [
    ['host', /expected an address after 'host' at column 5 \(end of the expression\)/],
    ['host 10.0.1.300', /not an IPv4 or IPv6 address at column 6 \('10\.0\.1\.300'\)/],
    ['port 70000', /not a port number \(0-65535\) at column 6 \('70000'\)/],
    ['net 10.0.0.1', /not a prefix ADDRESS\/LENGTH .* at column 5 \('10\.0\.0\.1'\)/],
    ['udp and (port 53', /^'\(' at column 9 is not closed: expected '\)' at column 17 \(end of the expression\)$/],
    ['udp )', /'\)' without a matching '\(' at column 5/],
    ['hots 10.0.0.1', /unknown word .* at column 1 \('hots'\)/],
    ['udp port 53 tcp', /unexpected word after a complete expression .* at column 13 \('tcp'\)/],
    ['src foo', /expected host, net, port or an address after 'src' at column 5 \('foo'\)/],
    ['udp and', /expected host, net, .* at column 8 \(end of the expression\)/],
    ['udp & tcp', /unexpected character at column 5 \('&'\)/],
    ['not '.repeat(MAX_FILTER_DEPTH + 1) + 'udp', /nested deeper than 64 levels/],
    ['x'.repeat(2000), /longer than 1024 characters/],
  ];
  for (const [expr, want] of cases) {
    assert.throws(() => parseFilter(expr), (e: unknown) => e instanceof FilterError && want.test(e.message), expr);
  }
});

const TOKENS = ['host', 'net', 'port', 'src', 'dst', 'tcp', 'udp', 'icmp', 'ip6', 'and', 'or', 'not', '(', ')', '!', '&&', '||', '&', '10.0.0.1', '10.0.0.0/8', '::1', '2001:db8::/32', '53', '99999', 'x', '', '/', '1.2.3.4/40'];

test('property: any input parses or throws a FilterError whose column points at its token', () => {
  const input = fc.oneof(fc.string({ maxLength: 80 }), fc.array(fc.constantFrom(...TOKENS), { maxLength: 14 }).map((t) => t.join(' ')));
  fc.assert(fc.property(input, (text) => {
    try {
      compileFilter(parseFilter(text));
    } catch (e) {
      assert.ok(e instanceof FilterError, `not a FilterError: ${String(e)}`);
      assert.ok(e.position >= 0 && e.position <= text.length);
      assert.equal(text.slice(e.position, e.position + e.token.length), e.token);
    }
  }), { numRuns: 2000 });
});

const dir = fc.constantFrom('src', 'dst', 'any') as fc.Arbitrary<'src' | 'dst' | 'any'>;
const v4net = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 })).map(([a, l]) => ({ family: 4 as const, words: [l === 0 ? 0 : (a & (0xffffffff << (32 - l))) >>> 0, 0, 0, 0], length: l }));
const v6net = fc.tuple(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 128 })).map(([w, l]) => ({
  family: 6 as const,
  words: w.map((x, i) => {
    const bits = Math.max(0, Math.min(32, l - 32 * i));
    return bits === 0 ? 0 : bits === 32 ? x : (x & (0xffffffff << (32 - bits))) >>> 0;
  }),
  length: l,
}));
const leaf: fc.Arbitrary<FilterNode> = fc.oneof(
  fc.constantFrom('tcp', 'udp', 'icmp', 'icmp6', 'ip', 'ip6').map((name) => ({ kind: 'proto', name }) as FilterNode),
  fc.tuple(dir, fc.integer({ min: 0, max: 65535 })).map(([d, port]) => ({ kind: 'port', dir: d, port }) as FilterNode),
  fc.tuple(dir, fc.oneof(v4net, v6net)).map(([d, n]) => ({ kind: 'net', dir: d, ...n }) as FilterNode),
);
const tree = fc.letrec<{ node: FilterNode }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.record({ kind: fc.constantFrom('and', 'or') as fc.Arbitrary<'and' | 'or'>, left: tie('node'), right: tie('node') }) as fc.Arbitrary<FilterNode>,
    fc.record({ kind: fc.constant('not' as const), operand: tie('node') }) as fc.Arbitrary<FilterNode>,
  ),
})).node;

test('property: formatFilter → parseFilter gives the same tree back', () => {
  fc.assert(fc.property(tree, (node) => {
    // JSON: fast-check's records have no prototype, the parser's do.
    assert.deepEqual(JSON.parse(JSON.stringify(parseFilter(formatFilter(node)))), JSON.parse(JSON.stringify(node)));
  }), { numRuns: 500 });
});

/** The slow oracle: addresses as bit strings, prefixes as string prefixes. */
function bits(words: ArrayLike<number>, count: number): string {
  let s = '';
  for (let i = 0; i < count; i++) s += (words[i] >>> 0).toString(2).padStart(32, '0');
  return s;
}
function oracle(node: FilterNode, p: PacketInfo): boolean {
  switch (node.kind) {
    case 'all': return true;
    case 'and': return oracle(node.left, p) && oracle(node.right, p);
    case 'or': return oracle(node.left, p) || oracle(node.right, p);
    case 'not': return !oracle(node.operand, p);
    case 'proto': return { tcp: p.protocol === 6, udp: p.protocol === 17, icmp: p.protocol === 1, icmp6: p.protocol === 58, ip: p.family === 4, ip6: p.family === 6 }[node.name];
    case 'port': {
      if (!(p.protocol === 6 || p.protocol === 17) || !p.hasTransportHeader) return false;
      const hits = [node.dir !== 'dst' && p.srcPort === node.port, node.dir !== 'src' && p.dstPort === node.port];
      return hits.some(Boolean);
    }
    case 'net': {
      if (p.family !== node.family) return false;
      const n = node.family === 4 ? 1 : 4;
      const want = bits(node.words, n).slice(0, node.length);
      const src = bits(p.addr.subarray(0, 4), n);
      const dst = bits(p.addr.subarray(4, 8), n);
      return (node.dir !== 'dst' && src.startsWith(want)) || (node.dir !== 'src' && dst.startsWith(want));
    }
  }
}

test('property: the compiled predicate agrees with the slow oracle on random packets', () => {
  const packet = fc.record({
    v4: fc.boolean(),
    a: fc.integer({ min: 0, max: 0xffffffff }),
    b: fc.integer({ min: 0, max: 0xffffffff }),
    proto: fc.constantFrom('udp', 'tcp', 'icmp'),
    sp: fc.constantFrom(53, 80, 443, 40000),
    dp: fc.constantFrom(53, 80, 443, 40000),
  }).map((r) => {
    const toV4 = (x: number): string => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255].join('.');
    const toV6 = (x: number): string => `2001:db8::${(x >>> 16).toString(16)}:${(x & 0xffff).toString(16)}`;
    const ip = r.v4 ? { src: toV4(r.a), dst: toV4(r.b) } : { src: toV6(r.a), dst: toV6(r.b) };
    const bytes = r.proto === 'udp' ? buildUdp(ip, { srcPort: r.sp, dstPort: r.dp })
      : r.proto === 'tcp' ? buildTcp(ip, { srcPort: r.sp, dstPort: r.dp, flags: 0x10, seq: 1, ack: 1 })
      : buildIcmpEcho(ip, { type: 'request', id: r.sp });
    return info(bytes);
  });
  fc.assert(fc.property(tree, packet, (node, p) => {
    assert.equal(compileFilter(node)(p), oracle(node, p));
  }), { numRuns: 1000 });
});
