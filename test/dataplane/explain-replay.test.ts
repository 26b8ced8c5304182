/**
 * Explain against the pipeline itself: over randomly built multi-site configurations (ARR on and
 * off, scoped and prioritised routes, blackholes, firewall rules, with and without an egress pool,
 * onramps down), every hypothetical packet is explained, then the same packet is forwarded, and
 * what explain said — verdict, drop reason, next hop, kind of translation, return path — is what
 * the pipeline did. Explain and setup share decideSetup, so this holds by construction; the test
 * keeps it that way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DROP_REASON_NAMES } from '../../src/common/drop-reasons.js';
import { PORT_INTERNET } from '../../src/common/ids.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../../src/wire/constants.js';
import { explain, type Explanation, type FlowDetail, type HypotheticalPacket } from '../../src/dataplane/explain.js';
import type { PipelineConfig } from '../../src/dataplane/pipeline.js';
import type { FirewallRuleSpec } from '../../src/policy/firewall.js';
import { NextHopKind, type RouteSpec } from '../../src/route/route-table.js';
import { buildIcmpEcho, buildTcp, buildUdp } from '../../src/wire/build.js';
import { TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { onramp } from '../support/topology.js';

const POOL4 = '198.51.100.1';
const POOL6 = '2001:db8:ee::1';
/** Site onramps 1..5 (sites 1..3), the data center's 9 (site 9); 77 is configured nowhere. */
const SITE_ONRAMPS = [1, 2, 3, 4, 5];
const DC = 9;
const UNKNOWN = 77;
const SITES = [1, 2, 3];

const PREFIXES4 = ['0.0.0.0/0', '10.0.1.0/24', '172.16.0.0/16', '172.16.0.0/24', '192.168.5.0/24', '203.0.113.0/24'];
const PREFIXES6 = ['::/0', 'fd00:1::/64', 'fd00:dc::/64'];
/** Few addresses and ports, so that flows, clashes, mappings and hairpins meet. A martian or two. */
const SRC4 = ['10.0.1.10', '10.0.1.11', '172.16.0.20', '203.0.113.10', '224.0.0.5'];
const DST4 = ['203.0.113.10', '172.16.0.20', '172.16.9.9', '10.0.1.10', '192.168.5.1', POOL4, '127.0.0.1'];
const SRC6 = ['fd00:1::10', 'fd00:dc::20', '2001:db8::10'];
const DST6 = ['2001:db8::10', 'fd00:dc::20', 'fd00:1::10', POOL6];
const SRC_PORTS = [1234, 40000, 40001];
const DST_PORTS = [53, 443, 40000, 40001];
const PROTOCOLS = [IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMP];

const routeArb = (egress: boolean): fc.Arbitrary<RouteSpec> =>
  fc.record({
    prefix: fc.constantFrom(...PREFIXES4, ...PREFIXES6),
    kind: fc.constantFrom(...(egress ? [NextHopKind.Onramp, NextHopKind.Onramp, NextHopKind.Internet, NextHopKind.Blackhole] : [NextHopKind.Onramp, NextHopKind.Blackhole])),
    port: fc.constantFrom(...SITE_ONRAMPS, DC),
    priority: fc.constantFrom(10, 100),
    siteScope: fc.constantFrom(0, 0, ...SITES),
  });

const ruleArb = (id: number): fc.Arbitrary<FirewallRuleSpec> =>
  fc.record(
    {
      id: fc.constant(id),
      action: fc.constantFrom('allow' as const, 'deny' as const),
      sites: fc.subarray(SITES, { minLength: 1 }),
      protocols: fc.subarray(PROTOCOLS, { minLength: 1 }),
      dstPrefixes: fc.constantFrom(['172.16.0.0/24'], ['203.0.113.0/24'], ['10.0.1.0/24'], ['fd00:dc::/64']),
      dstPorts: fc.constant([[53, 53]] as Array<[number, number]>),
    },
    { requiredKeys: ['id', 'action'] },
  );

const configArb: fc.Arbitrary<PipelineConfig> = fc.constantFrom(true, true, false).chain((egress) =>
  fc.record({
    onramps: fc.tuple(
      fc.array(fc.record({ site: fc.constantFrom(...SITES), arr: fc.boolean(), up: fc.boolean() }), { minLength: SITE_ONRAMPS.length, maxLength: SITE_ONRAMPS.length }),
      fc.boolean(),
    ).map(([sites, dcArr]) => [
      ...sites.map((s, i) => onramp(SITE_ONRAMPS[i], s.site, s.arr, { up: s.up || i === 0 })),
      onramp(DC, 9, dcArr, { type: 'interconnect' }),
    ]),
    // Random routes over a floor that lets some packets through: the data center, and the Internet when there is an egress.
    routes: fc.array(routeArb(egress), { maxLength: 10 }).map((random) => [...random, ...floorRoutes(egress)]),
    firewall: fc.record({
      rules: fc.integer({ min: 0, max: 4 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, k) => ruleArb(k + 1)))),
      defaultAction: fc.constantFrom('allow' as const, 'allow' as const, 'deny' as const),
    }),
    egress: fc.constant(egress ? { addresses: [POOL4, POOL6] } : undefined),
    flows: fc.constant({ capacity4: 1024, capacity6: 256 }),
  }),
);

/**
 * A fresh packet; one sent before again, possibly on another onramp (the same tuple from another
 * site: clashes, a second flow to the same endpoint, forged owners); the answer to one that left
 * (it arrives on the port it left by, addressed as it left: replies, hits in the reply direction);
 * an onramp going down or up.
 */
/** Routes of last resort (priority 1000 loses to every random one). */
function floorRoutes(egress: boolean): RouteSpec[] {
  const floor: RouteSpec[] = [{ prefix: '172.16.0.0/24', kind: NextHopKind.Onramp, port: DC, priority: 1000 }];
  if (egress) floor.push({ prefix: '0.0.0.0/0', kind: NextHopKind.Internet, priority: 1000 }, { prefix: '::/0', kind: NextHopKind.Internet, priority: 1000 });
  return floor;
}

type Step =
  | { kind: 'packet'; packet: HypotheticalPacket }
  | { kind: 'again'; pick: number; onramp: number | null }
  | { kind: 'reply'; pick: number }
  | { kind: 'health'; onramp: number; up: boolean };

const packetArb: fc.Arbitrary<HypotheticalPacket> = fc.record({
  onramp: fc.constantFrom(PORT_INTERNET, ...SITE_ONRAMPS, ...SITE_ONRAMPS, DC, UNKNOWN),
  v6: fc.boolean(),
  protocol: fc.constantFrom(...PROTOCOLS),
  srcPick: fc.nat(),
  dstPick: fc.nat(),
  srcPort: fc.constantFrom(...SRC_PORTS),
  dstPort: fc.constantFrom(...DST_PORTS),
}).map(({ onramp: port, v6, protocol, srcPick, dstPick, srcPort, dstPort }) => {
  const [srcs, dsts] = v6 ? [SRC6, DST6] : [SRC4, DST4];
  const icmp = protocol === IPPROTO_ICMP;
  // An echo request's identifier is its source "port"; its destination "port" is 0 (packet-info.ts).
  return { onramp: port, protocol: icmp && v6 ? IPPROTO_ICMPV6 : protocol, src: srcs[srcPick % srcs.length], dst: dsts[dstPick % dsts.length], srcPort, dstPort: icmp ? 0 : dstPort };
});

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: packetArb.map((packet) => ({ kind: 'packet' as const, packet })) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('again' as const), pick: fc.nat(), onramp: fc.option(fc.constantFrom(...SITE_ONRAMPS, DC)) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('reply' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('health' as const), onramp: fc.constantFrom(...SITE_ONRAMPS, DC), up: fc.boolean() }) },
);

/** The packet a hypothetical stands for, as a host would send it (a TCP SYN, an echo request). */
function bytesOf(p: HypotheticalPacket): Uint8Array {
  const ip = { src: p.src, dst: p.dst };
  if (p.protocol === IPPROTO_TCP) return buildTcp(ip, { srcPort: p.srcPort, dstPort: p.dstPort, flags: TCP_SYN });
  if (p.protocol === IPPROTO_UDP) return buildUdp(ip, { srcPort: p.srcPort, dstPort: p.dstPort });
  return buildIcmpEcho(ip, { type: 'request', id: p.srcPort });
}

/** The kind of translation a stored flow carries (the oracle side of Explanation.nat.kind). */
function storedNatKind(f: FlowDetail): NonNullable<Explanation['nat']>['kind'] {
  return f.hairpin ? 'hairpin' : f.natMapping ? 'source-nat' : f.clashRewrite ? 'clash-port-rewrite' : 'none';
}

const TCP_TRACKER_DROPS = new Set([DROP_REASON_NAMES[23], DROP_REASON_NAMES[24]]); // tcp_out_of_window, tcp_invalid

test('explain says what the pipeline then does: verdict, drop reason, next hop, NAT kind, return path (random sites, routes, rules, egress)', (t) => {
  const seen = new Map<string, number>();
  fc.assert(
    fc.property(configArb, fc.array(stepArb, { minLength: 20, maxLength: 60 }), (config, steps) => {
      let edge: PipelineRig;
      try {
        edge = new PipelineRig(config);
      } catch {
        return; // a route to the Internet without an egress pool: the configuration is refused, nothing to explain
      }
      const pipeline = edge.pipeline;
      const sentBefore: HypotheticalPacket[] = [];
      const departed: HypotheticalPacket[] = [];
      for (const step of steps) {
        if (step.kind === 'health') {
          pipeline.setOnrampUp(step.onramp, step.up);
          continue;
        }
        let p: HypotheticalPacket;
        if (step.kind === 'packet') p = step.packet;
        else if (step.kind === 'again' && sentBefore.length > 0) {
          const before = sentBefore[step.pick % sentBefore.length];
          p = { ...before, onramp: step.onramp ?? before.onramp };
        } else if (step.kind === 'reply' && departed.length > 0) p = departed[step.pick % departed.length];
        else continue;
        sentBefore.push(p);
        const flowsBefore = pipeline.flows4.size + pipeline.flows6.size;
        const mappingsBefore = pipeline.snat?.mappings ?? 0;
        const e = explain(pipeline, p);
        const context = `${JSON.stringify(p)}\n${e.trail.join('\n')}`;
        assert.equal(pipeline.flows4.size + pipeline.flows6.size, flowsBefore, `explain sets nothing up\n${context}`);
        assert.equal(pipeline.snat?.mappings ?? 0, mappingsBefore, `explain takes no mapping\n${context}`);

        const sent = edge.send(p.onramp, bytesOf(p));
        // Its answer (echo replies are not hypotheticals: explain asks about queries).
        if (sent.hop >= 0 && p.protocol !== IPPROTO_ICMP && p.protocol !== IPPROTO_ICMPV6) {
          const out = sent.parsed;
          departed.push({ onramp: sent.hop, protocol: p.protocol, src: out.dst, dst: out.src, srcPort: out.dstPort, dstPort: out.srcPort });
        }
        const done = sent.hop < 0 ? `drop ${DROP_REASON_NAMES[sent.drop]}` : `forward to ${sent.hop}`;
        const label = e.flow !== null ? `hit ${e.verdict}` : e.verdict === 'drop' ? `setup drop ${e.dropReason}` : `setup ${e.nat?.kind}`;
        seen.set(label, (seen.get(label) ?? 0) + 1);
        if (e.verdict === 'drop') {
          assert.equal(done, `drop ${e.dropReason}`, context);
          continue;
        }
        if (e.flow !== null) {
          // An existing flow: explain names the stored next hop (a reply without ARR is routed per packet: no claim).
          if (p.protocol === IPPROTO_TCP && sent.hop < 0 && TCP_TRACKER_DROPS.has(DROP_REASON_NAMES[sent.drop])) continue;
          if (e.nextHop !== null) assert.equal(done, `forward to ${e.nextHop}`, context);
          continue;
        }
        assert.equal(done, `forward to ${e.nextHop}`, context);
        // An echo request to a pool address is the edge's own: answered, no flow (Pipeline.answerEcho).
        if (e.trail.at(-1)!.includes('answered by the edge')) continue;
        const stored = explain(pipeline, p).flow;
        assert.ok(stored !== null, `the flow explain described now exists\n${context}`);
        assert.equal(storedNatKind(stored), e.nat?.kind, context);
        assert.equal(stored.automaticReturnRouting, e.replies?.by === 'automatic-return-routing', context);
        assert.equal(stored.firewallRuleId, e.firewall?.ruleId, context);
      }
    }),
    { numRuns: 150, seed: 7, endOnFailure: true },
  );
  // The generators must reach the interesting decisions, or the property says little. A hairpin's first packet is
  // always held by the peer's filter (RFC 4787 REQ-8; it passes once the peer answers, a hit): 'setup drop hairpin_filtered'.
  for (const label of ['setup source-nat', 'setup none', 'setup clash-port-rewrite', 'setup drop hairpin_filtered', 'setup drop policy_deny', 'setup drop no_route', 'setup drop blackhole', 'setup drop bad_address', 'setup drop no_nat_mapping', 'hit forward', 'hit drop']) {
    assert.ok((seen.get(label) ?? 0) > 0, `no case of "${label}" was generated: ${JSON.stringify([...seen])}`);
  }
  t.diagnostic(`cases: ${[...seen].sort().map(([label, n]) => `${label} ${n}`).join(', ')}`);
});
