/**
 * Policy epochs (issue 12, docs/POLICY.md "Epochs"): a firewall or gateway change starts a new epoch; each
 * established flow is decided again at its next packet, in either direction, on its original tuple. A flow the
 * new policy denies is cut (dropped as PolicyCut, removed with RemoveReason.PolicyCut); every other flow goes on
 * exactly as before: the oracle is a second edge that sees the same packets and no change, whose output must be
 * byte-identical (NAT, ARR return onramp, ids, checksums).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { RemoveReason, type FlowTable } from '../../src/flow/flow-table.js';
import { CUT_BY_FIREWALL, CUT_BY_GATEWAY } from '../../src/dataplane/pipeline.js';
import { Firewall, type FirewallRuleSpec } from '../../src/policy/firewall.js';
import { GatewayPolicy, NameSource, type GatewayRuleSpec } from '../../src/gateway/policy.js';
import { buildTcp, buildUdp, type IpHeader } from '../../src/wire/build.js';
import { IPPROTO_TCP, IPPROTO_UDP, TCP_ACK_FLAG, TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig, type Sent } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, INTERNET, SITE_A, SITE_B, twoSites } from '../support/topology.js';

interface Family {
  host: string;
  server: string;
  serverPrefix: string;
  dc: string;
}
const V4: Family = { host: '10.0.1.10', server: '203.0.113.10', serverPrefix: '203.0.113.0/24', dc: '172.16.0.20' };
const V6: Family = { host: 'fd00:a::10', server: '2001:db8:5::10', serverPrefix: '2001:db8:5::/48', dc: 'fd00:dc::20' };

const CLIENT_ISN = 1000;
const SERVER_ISN = 900_000;
const DATA = 100;

/** DF set, as TCP stacks send (RFC 1191): atomic datagrams keep their IPv4 id (FLAG_RENUMBER leaves them). */
function ip(src: string, dst: string): IpHeader {
  return src.includes(':') ? { src, dst } : { src, dst, dontFragment: true };
}

/** One TCP connection through the edge: the client on a site port, the server behind the hop the SYN took. */
class Conn {
  hop = -1;
  outSrc = '';
  outPort = 0;
  private c = CLIENT_ISN;
  private s = SERVER_ISN;

  constructor(readonly rig: PipelineRig, readonly port: number, readonly src: string, readonly dst: string, readonly srcPort: number, readonly dstPort: number) {}

  open(): void {
    const syn = this.rig.send(this.port, buildTcp(ip(this.src, this.dst), { srcPort: this.srcPort, dstPort: this.dstPort, seq: this.c, flags: TCP_SYN }));
    assert.equal(syn.drop, Drop.None);
    this.hop = syn.hop;
    this.outSrc = syn.parsed.src as string;
    this.outPort = syn.parsed.srcPort as number;
    this.c++;
    const synAck = this.rig.send(this.hop, buildTcp(ip(this.dst, this.outSrc), { srcPort: this.dstPort, dstPort: this.outPort, seq: this.s, ack: this.c, flags: TCP_SYN | TCP_ACK_FLAG }));
    assert.equal(synAck.hop, this.port, 'SYN-ACK back to the onramp that opened');
    this.s++;
    assert.equal(this.c2s(0).drop, Drop.None);
  }

  /** A client segment with `len` bytes of data. */
  c2s(len = DATA, fill = 1): Sent {
    const out = this.rig.send(this.port, buildTcp(ip(this.src, this.dst), { srcPort: this.srcPort, dstPort: this.dstPort, seq: this.c, ack: this.s, flags: TCP_ACK_FLAG, payload: new Uint8Array(len).fill(fill) }));
    this.c += len;
    return out;
  }

  s2c(len = DATA, fill = 2): Sent {
    const out = this.rig.send(this.hop, buildTcp(ip(this.dst, this.outSrc), { srcPort: this.dstPort, dstPort: this.outPort, seq: this.s, ack: this.c, flags: TCP_ACK_FLAG, payload: new Uint8Array(len).fill(fill) }));
    this.s += len;
    return out;
  }
}

/** The flows of one scenario, on one edge. */
function flowsOn(rig: PipelineRig, f: Family) {
  const conns = {
    // Concerned by "site A may not reach the server's prefix on TCP 443": cut at their next packet.
    aOrig: new Conn(rig, A_PRIMARY, f.host, f.server, 40001, 443),
    aReply: new Conn(rig, A_PRIMARY, f.host, f.server, 40002, 443),
    // Not concerned: another site, another destination, another port.
    b: new Conn(rig, B_PRIMARY, f.host, f.server, 40001, 443),
    aDc: new Conn(rig, A_PRIMARY, f.host, f.dc, 40003, 443),
    aOtherPort: new Conn(rig, A_PRIMARY, f.host, f.server, 40004, 8443),
  };
  for (const c of Object.values(conns)) c.open();
  return conns;
}

function denyRule(f: Family): FirewallRuleSpec {
  return { id: 7, action: 'deny', sites: [SITE_A], protocols: [IPPROTO_TCP], dstPrefixes: [f.serverPrefix], dstPorts: [[443, 443]] };
}

function same(a: Sent, b: Sent, what: string): void {
  assert.equal(a.hop, b.hop, `${what}: hop`);
  assert.equal(a.drop, b.drop, `${what}: drop`);
  assert.deepEqual([...a.bytes], [...b.bytes], `${what}: bytes as they left`);
}

for (const [label, f] of [['IPv4', V4], ['IPv6', V6]] as const) {
  test(`${label}: a firewall change cuts exactly the flows it now denies, in either direction; the others leave byte-identical`, () => {
    const subject = new PipelineRig(twoSites());
    const oracle = new PipelineRig(twoSites());
    const s = flowsOn(subject, f);
    const o = flowsOn(oracle, f);
    const table: FlowTable = label === 'IPv4' ? subject.pipeline.flows4 : subject.pipeline.flows6;
    assert.equal(table.size, 5);
    const ended: Array<{ reason: RemoveReason; epoch: number; layer: number; rule: number; srcPort: number }> = [];
    subject.pipeline.onFlowEnd = (t, flow, reason) => {
      const c = subject.pipeline.lastCut;
      ended.push({ reason, epoch: c.epoch, layer: c.layer, rule: c.ruleId, srcPort: t.nodePorts(flow * 2) >>> 16 });
    };
    const epochBefore = subject.pipeline.policyEpoch;
    subject.pipeline.setFirewall(new Firewall([denyRule(f)], 'allow'));
    assert.equal(subject.pipeline.policyEpoch, epochBefore + 1);

    // The oracle sees the same packets.
    for (let i = 0; i < 2; i++) {
      assert.notEqual(o.aOrig.c2s().hop, -1);
      assert.notEqual(o.aReply.s2c().hop, -1);
    }
    // Original direction: the client's next segment is the one that finds the flow stale.
    assert.equal(s.aOrig.c2s().drop, Drop.PolicyCut);
    assert.equal(s.aOrig.c2s().drop, Drop.TcpNoFlow, 'the flow is gone: a later segment is not a SYN');
    // Reply direction: the server's next segment.
    assert.equal(s.aReply.s2c().drop, Drop.PolicyCut);
    assert.equal(s.aReply.s2c().drop, Drop.NoNatMapping, 'its NAT mapping went with the flow');
    assert.deepEqual(ended.map((e) => [e.reason, e.epoch, e.layer, e.rule, e.srcPort]), [
      [RemoveReason.PolicyCut, epochBefore + 1, CUT_BY_FIREWALL, 7, 40001],
      [RemoveReason.PolicyCut, epochBefore + 1, CUT_BY_FIREWALL, 7, 40002],
    ]);

    // The flows the change does not concern: both directions, twice (the second packet takes the plain fast path).
    for (const k of ['b', 'aDc', 'aOtherPort'] as const) {
      for (let round = 0; round < 2; round++) {
        same(s[k].s2c(), o[k].s2c(), `${k} reply, round ${round}`);
        same(s[k].c2s(), o[k].c2s(), `${k} original, round ${round}`);
      }
    }
    same(s.b.s2c(), o.b.s2c(), 'b reply');
    assert.equal(s.b.s2c().hop, B_PRIMARY, 'site B\'s replies still return to site B (ARR)');
    assert.equal(o.b.s2c().hop, B_PRIMARY);
    assert.equal(s.aDc.c2s().hop, DC_ONRAMP);
    assert.equal(o.aDc.c2s().hop, DC_ONRAMP);
    assert.equal(s.aOtherPort.c2s().hop, INTERNET);
    assert.equal(o.aOtherPort.c2s().hop, INTERNET);
    assert.equal(table.size, 3);
    assert.equal(subject.pipeline.counters.flowsCutByPolicy, 2);
    assert.equal(subject.pipeline.counters.flowsReevaluated, 5, 'each flow decided again once, not per packet');
    assert.equal(subject.pipeline.counters.drops[Drop.PolicyCut], 2);

    // A new flow the rule denies is refused at setup as before; a new epoch without a change in verdict cuts nothing.
    assert.equal(subject.send(A_PRIMARY, buildTcp({ src: f.host, dst: f.server }, { srcPort: 40009, dstPort: 443, seq: 1, flags: TCP_SYN })).drop, Drop.PolicyDeny);
    subject.pipeline.setFirewall(new Firewall([denyRule(f)], 'allow'));
    for (const k of ['b', 'aDc', 'aOtherPort'] as const) same(s[k].c2s(), o[k].c2s(), `${k} after an epoch that changes nothing`);
    assert.equal(subject.pipeline.counters.flowsCutByPolicy, 2);
    assert.equal(subject.pipeline.counters.flowsReevaluated, 8);
  });
}

test('the flow records the firewall rule that allows it under the new epoch', () => {
  const rig = new PipelineRig(twoSites());
  const c = new Conn(rig, B_PRIMARY, V4.host, V4.server, 40001, 443);
  c.open();
  const table = rig.pipeline.flows4;
  assert.equal(table.ruleId(0), 0, 'set up under the default action');
  rig.pipeline.setFirewall(new Firewall([{ id: 21, action: 'allow', sites: [SITE_B] }], 'deny'));
  assert.equal(c.s2c().hop, B_PRIMARY);
  assert.equal(table.ruleId(0), 21);
  assert.equal(table.policyEpoch(0), rig.pipeline.policyEpoch);
});

test('a gateway change cuts the flows a rule now blocks (L3/L4 rules; hostname rules with the name classify kept, or none)', () => {
  const rig = new PipelineRig(twoSites());
  const conns = flowsOn(rig, V4);
  const dns = (port: number, srcPort: number): Sent => rig.send(port, buildUdp({ src: V4.host, dst: V4.server }, { srcPort, dstPort: 53, payload: Uint8Array.of(1, 2) }));
  assert.equal(dns(B_PRIMARY, 5353).hop, INTERNET);
  assert.equal(dns(A_PRIMARY, 5353).hop, INTERNET);
  const ended: Array<[number, number, number]> = [];
  rig.pipeline.onFlowEnd = (_t, _flow, reason) => ended.push([reason, rig.pipeline.lastCut.layer, rig.pipeline.lastCut.ruleId]);
  const rules: GatewayRuleSpec[] = [
    { id: 3, action: 'block', hostnames: ['*.example-social.com'], sources: NameSource.Sni, sites: [SITE_A], dstPorts: [[443, 443]] },
    { id: 4, action: 'block', sites: [SITE_B], protocols: [IPPROTO_UDP], dstPorts: [[53, 53]] },
  ];
  rig.pipeline.setGateway(new GatewayPolicy({ rules, dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 4096 }));
  assert.equal(dns(B_PRIMARY, 5353).drop, Drop.PolicyCut, 'site B\'s DNS flow: an L3/L4 block rule');
  assert.equal(dns(A_PRIMARY, 5353).hop, INTERNET, 'site A\'s is not concerned');
  // No name kept for A's flows (classify not merged, or the first payload gone): the hostname rule cannot match.
  assert.equal(conns.aOrig.c2s().hop, INTERNET);
  // With the name classify kept, the hostname rule decides.
  rig.pipeline.flowName = (t, flow) => ((t.nodePorts(flow * 2) >>> 16) === 40002 ? { source: NameSource.Sni, name: 'www.example-social.com' } : undefined);
  rig.pipeline.setGateway(new GatewayPolicy({ rules, dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 4096 }));
  assert.equal(conns.aReply.s2c().drop, Drop.PolicyCut);
  assert.equal(conns.aOrig.s2c().hop, A_PRIMARY);
  assert.equal(conns.b.c2s().hop, INTERNET);
  assert.deepEqual(ended, [[RemoveReason.PolicyCut, CUT_BY_GATEWAY, 4], [RemoveReason.PolicyCut, CUT_BY_GATEWAY, 3]]);
  rig.pipeline.setGateway(null);
  assert.equal(conns.aOrig.c2s().hop, INTERNET, 'no gateway: only the firewall decides');
});

test('a TCP flow cut by a policy change gets a reset to each end: the client through its onramp, the server translated', () => {
  const rig = new PipelineRig(twoSites());
  const c = new Conn(rig, A_PRIMARY, V4.host, V4.server, 40001, 443);
  c.open();
  rig.pipeline.setFirewall(new Firewall([denyRule(V4)], 'allow'));
  assert.equal(c.c2s().drop, Drop.PolicyCut);
  const resets = rig.generated();
  assert.equal(resets.length, 2);
  const [toClient, toServer] = resets;
  // RFC 9293 §3.10.7.1: the client's reset answers as the server, SEQ = what the client expects next.
  assert.deepEqual([toClient.hop, toClient.parsed.src, toClient.parsed.dst, toClient.parsed.srcPort, toClient.parsed.dstPort], [A_PRIMARY, V4.server, V4.host, 443, 40001]);
  assert.equal(toClient.parsed.tcp?.seq, SERVER_ISN + 1);
  // The server's as from the client's NAT endpoint, SEQ = the server's RCV.NXT (the dropped segment never reached it).
  assert.deepEqual([toServer.hop, toServer.parsed.src, toServer.parsed.dst, toServer.parsed.srcPort, toServer.parsed.dstPort], [INTERNET, c.outSrc, V4.server, c.outPort, 443]);
  assert.equal(toServer.parsed.tcp?.seq, CLIENT_ISN + 1);
  for (const r of resets) assert.equal(r.drop, Drop.None);
  assert.equal(rig.pipeline.counters.flowsCutByPolicy, 1);
  assert.equal(rig.pipeline.flows4.size, 0);
});
