/** Explain: what would happen to a hypothetical packet, and why — without changing anything. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeFlow, explain } from '../../src/dataplane/explain.js';
import { Firewall } from '../../src/policy/firewall.js';
import { buildUdp } from '../../src/wire/build.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, twoSites } from '../support/topology.js';

const UDP = 17;
const query = (onramp: number, dst: string, srcPort = 40000, dstPort = 53) => ({ onramp, protocol: UDP, src: HOST, dst, srcPort, dstPort });

test('a new flow to the Internet: firewall default, default route, source NAT, replies by ARR', () => {
  const edge = new PipelineRig(twoSites());
  const e = explain(edge.pipeline, query(A_PRIMARY, SERVER));
  assert.equal(e.verdict, 'forward');
  assert.equal(e.nextHop, INTERNET);
  assert.equal(e.flow, null);
  assert.deepEqual(e.firewall, { ruleId: 0, action: 'allow', byDefault: true });
  assert.equal(e.route?.prefix, '0.0.0.0/0');
  assert.equal(e.nat?.kind, 'source-nat');
  assert.equal(e.replies?.by, 'automatic-return-routing');
  assert.equal(edge.pipeline.flows4.size, 0, 'explain sets nothing up');
  assert.equal(edge.pipeline.snat!.mappings, 0, 'and takes no NAT mapping');
  assert.ok(e.trail.length >= 5, e.trail.join('\n'));
});

test('an existing flow: the stored decision, and the endpoint\'s existing mapping for a new destination', () => {
  const edge = new PipelineRig(twoSites());
  const sent = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53 }));
  const hit = explain(edge.pipeline, query(A_PRIMARY, SERVER));
  assert.equal(hit.flow?.flow, 0);
  assert.equal(hit.nextHop, INTERNET);
  assert.equal(hit.flow?.natMapping, true);
  assert.equal(hit.flow?.automaticReturnRouting, true);
  assert.match(hit.flow!.reply, new RegExp(`${SERVER}:53 -> ${POOL}:${sent.parsed.srcPort}`));
  const reply = explain(edge.pipeline, { onramp: INTERNET, protocol: UDP, src: SERVER, dst: POOL, srcPort: 53, dstPort: sent.parsed.srcPort });
  assert.equal(reply.nextHop, A_PRIMARY, 'the reply goes back to the onramp that started the flow');
  const other = explain(edge.pipeline, query(A_PRIMARY, '203.0.113.99'));
  assert.match(other.nat!.note, new RegExp(`already has the mapping ${POOL}:${sent.parsed.srcPort}`));
  assert.deepEqual(describeFlow(edge.pipeline.flows4, 0).packets, [1, 0]);
});

test('the clash rule, a firewall deny, ARR off, unknown onramps and forged owners are explained', () => {
  const edge = new PipelineRig(twoSites());
  edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 40000, dstPort: 443 }));
  const clash = explain(edge.pipeline, query(B_PRIMARY, DC_SERVER, 40000, 443));
  assert.equal(clash.nat?.kind, 'clash-port-rewrite');
  assert.equal(clash.nextHop, DC_ONRAMP);
  assert.equal(explain(edge.pipeline, query(B_PRIMARY, DC_SERVER, 40001, 443)).nat?.kind, 'none');

  edge.pipeline.setFirewall(new Firewall([{ id: 42, action: 'deny', sites: [2], protocols: [UDP] }], 'allow'));
  const denied = explain(edge.pipeline, query(B_PRIMARY, SERVER));
  assert.equal(denied.verdict, 'drop');
  assert.equal(denied.dropReason, 'policy_deny');
  assert.deepEqual(denied.firewall, { ruleId: 42, action: 'deny', byDefault: false });

  const off = new PipelineRig(twoSites({ arr: false }));
  assert.equal(explain(off.pipeline, query(A_PRIMARY, SERVER)).replies?.by, 'routing-table');
  assert.equal(explain(off.pipeline, query(77, SERVER)).dropReason, 'unknown_port');
  off.send(A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 1, dstPort: 2 }));
  assert.equal(explain(off.pipeline, query(B_PRIMARY, DC_SERVER, 1, 2)).dropReason, 'flow_owner_mismatch', 'without ARR, B cannot use A\'s flow');
});
