/**
 * The setup path's shortcuts keep the slow path's answers (issue 10, item 5): the pre-pass lookup results
 * forward() reuses (Pipeline.prefetch / hinted) when the table changes within a batch, and the reply-key
 * guard that source NAT skips unless a flow holds a global-zone key toward a pool address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { NEXT_HOP_DROP, PORT_INTERNET } from '../../src/common/ids.js';
import { PacketBatch } from '../../src/common/packet-batch.js';
import { Pipeline, type PipelineConfig } from '../../src/dataplane/pipeline.js';
import { FlowKey } from '../../src/flow/flow-table.js';
import { NextHopKind } from '../../src/route/route-table.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { buildUdp, parsePacket } from '../../src/wire/build.js';
import { IPPROTO_UDP } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';

const SITE_PORT = 1;
const NOW = 1_000_000;
const POOL_ADDRESS = '198.51.100.1';
const SERVER = parseIpv4('203.0.113.10');

function oneSite(capacity4: number): PipelineConfig {
  return {
    onramps: [{ id: SITE_PORT, name: 'site', type: 'wireguard', site: 1, automaticReturnRouting: true }],
    routes: [{ prefix: '0.0.0.0/0', kind: NextHopKind.Internet }],
    egress: { addresses: [POOL_ADDRESS] },
    flows: { capacity4, capacity6: 16 },
    hashSeed: 7,
  };
}

function udpFrom(host: string, srcPort: number): Uint8Array {
  return buildUdp({ src: parseIpv4(host), dst: SERVER }, { srcPort, dstPort: 53, payload: new Uint8Array(8) });
}

/** One batch of `packets`, all from the site: each one's hop (or -1) and bytes as they left. */
function sendBatch(pipeline: Pipeline, packets: Uint8Array[], now = NOW): { hop: number; drop: number; srcPort: number }[] {
  const batch = new PacketBatch(packets.length, 256, 0);
  for (const p of packets) batch.push(p, 0, p.length, SITE_PORT);
  pipeline.process(batch, now);
  return packets.map((_, i) => ({
    hop: batch.nextHop[i] === NEXT_HOP_DROP ? -1 : batch.nextHop[i],
    drop: batch.drop[i],
    srcPort: parsePacket(batch.packet(i)).srcPort,
  }));
}

function keyOf(host: string, srcPort: number): FlowKey {
  return new FlowKey().set4(1, IPPROTO_UDP, parseIpv4(host), SERVER, srcPort, 53);
}

test('a packet whose flow an earlier packet of the same batch evicted is set up again, not forwarded on the reused slot', () => {
  const pipeline = new Pipeline(oneSite(1));
  // Flow A fills the one-flow table (unreplied: evictable).
  assert.equal(sendBatch(pipeline, [udpFrom('10.0.0.1', 40000)])[0].hop, PORT_INTERNET);
  assert.ok(pipeline.flows4.lookup(keyOf('10.0.0.1', 40000)) >= 0);
  // B evicts A and takes its slot; A's packet, looked up as a hit before B, must not ride B's flow.
  const [b, a] = sendBatch(pipeline, [udpFrom('10.0.0.2', 40000), udpFrom('10.0.0.1', 40000)]);
  assert.equal(b.hop, PORT_INTERNET);
  assert.equal(a.hop, PORT_INTERNET);
  assert.equal(a.srcPort, 40000, "A keeps its own port (A's mapping, freed with the flow, is taken again)");
  assert.notEqual(b.srcPort, 40000, 'B could not have port 40000: A held it when B was mapped');
  assert.ok(pipeline.flows4.lookup(keyOf('10.0.0.1', 40000)) >= 0, 'A is the flow in the table now');
  assert.equal(pipeline.flows4.lookup(keyOf('10.0.0.2', 40000)), -1, 'B was evicted in turn');
  assert.equal(pipeline.flows4.size, 1);
});

test('the second packet of a new flow in the same batch finds the flow the first one created', () => {
  const pipeline = new Pipeline(oneSite(64));
  const out = sendBatch(pipeline, [udpFrom('10.0.0.1', 2000), udpFrom('10.0.0.1', 2000), udpFrom('10.0.0.3', 2000)]);
  assert.deepEqual(out.map((o) => o.hop), [PORT_INTERNET, PORT_INTERNET, PORT_INTERNET]);
  assert.equal(out[0].srcPort, out[1].srcPort);
  assert.equal(pipeline.flows4.size, 2);
  const flow = pipeline.flows4.lookup(keyOf('10.0.0.1', 2000)) >> 1;
  assert.equal(pipeline.flows4.packets(flow, 0), 2, 'one flow, two packets');
  assert.equal(pipeline.counters.flowsCreated[SITE_PORT], 2);
});

test('batches agree with one packet at a time (the slow path), packet for packet', () => {
  // Random traffic over a small table: new flows, repeats and evictions within batches.
  const hosts = Array.from({ length: 40 }, (_, i) => `10.0.${i >> 4}.${(i & 15) + 1}`);
  let seed = 99;
  const next = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const packets = Array.from({ length: 600 }, () => udpFrom(hosts[next(hosts.length)], 3000 + next(3)));
  const batched = new Pipeline(oneSite(16));
  const single = new Pipeline(oneSite(16));
  for (let at = 0; at < packets.length; at += 50) {
    const chunk = packets.slice(at, at + 50);
    const got = sendBatch(batched, chunk);
    const want = chunk.map((p) => sendBatch(single, [p])[0]);
    assert.deepEqual(got, want, `batch at ${at}`);
  }
  assert.equal(batched.flows4.size, single.flows4.size);
});

test('source NAT checks its reply key only while a flow holds a global-zone key toward a pool address, and then refuses the clash', () => {
  // A site without ARR (global zone) sends from the pool address itself to a server it reaches through a
  // data-center onramp (also global): that flow's reply key is the one source NAT would give a site host
  // sending from the same port to the same server over the Internet.
  const GLOBAL_SITE = 1;
  const DC = 2;
  const ARR_SITE = 3;
  const rig = new PipelineRig({
    onramps: [
      { id: GLOBAL_SITE, name: 'global-site', type: 'wireguard', site: 1, automaticReturnRouting: false },
      { id: DC, name: 'dc', type: 'wireguard', site: 2, automaticReturnRouting: false },
      { id: ARR_SITE, name: 'arr-site', type: 'wireguard', site: 3, automaticReturnRouting: true },
    ],
    routes: [
      { prefix: '0.0.0.0/0', kind: NextHopKind.Internet },
      { prefix: '203.0.113.10/32', kind: NextHopKind.Onramp, port: DC, siteScope: 1 },
    ],
    egress: { addresses: [POOL_ADDRESS] },
  });
  const fromPool = buildUdp({ src: parseIpv4(POOL_ADDRESS), dst: SERVER }, { srcPort: 5000, dstPort: 53 });
  assert.equal(rig.send(GLOBAL_SITE, fromPool).hop, DC);
  const natted = buildUdp({ src: parseIpv4('10.9.9.9'), dst: SERVER }, { srcPort: 5000, dstPort: 53 });
  const refused = rig.send(ARR_SITE, natted);
  assert.equal(refused.hop, -1);
  assert.equal(refused.drop, Drop.NatExhausted, 'the reply key 203.0.113.10:53 -> pool:5000 is taken');
  assert.equal(rig.pipeline.snat!.mappings, 0, 'the mapping taken for it was given back');
  // Once that flow is gone, nothing can hold such a key: the host gets its port.
  rig.advance(10 * 60 * 1000);
  assert.equal(rig.pipeline.flows4.size, 0);
  const passed = rig.send(ARR_SITE, natted);
  assert.equal(passed.hop, PORT_INTERNET);
  assert.equal(passed.parsed.srcPort, 5000);
});
