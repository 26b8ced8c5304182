/**
 * Automatic Return Routing with overlapping sites: every reply reaches the site that asked; without
 * ARR the routing table cannot tell, and replies go astray; no site can reach into another's flow.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { FlowKey } from '../../src/flow/flow-table.js';
import { buildTcp, buildUdp } from '../../src/wire/build.js';
import { TCP_ACK_FLAG, TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import {
  A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, SITE_A, SITE_B, twoSites,
} from '../support/topology.js';

function dnsQuery(id: number): Uint8Array {
  return buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53, payload: Uint8Array.of(id >> 8, id & 0xff, 1, 0) });
}

test('two sites, identical 10.0.1.10:40000 -> 203.0.113.10:53: each reply returns to its own site', () => {
  const edge = new PipelineRig(twoSites());
  const outA = edge.send(A_PRIMARY, dnsQuery(1));
  const outB = edge.send(B_PRIMARY, dnsQuery(2));
  assert.equal(outA.hop, INTERNET);
  assert.equal(outB.hop, INTERNET);
  assert.equal(outA.parsed.src, POOL);
  assert.equal(outB.parsed.src, POOL);
  // Port preservation for the first, no port overloading for the second (RFC 4787 REQ-3).
  assert.equal(outA.parsed.srcPort, 40000);
  assert.notEqual(outB.parsed.srcPort, 40000);

  // The server answers each query from its external endpoint.
  const replyToB = edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: outB.parsed.srcPort, payload: Uint8Array.of(0, 2) }));
  const replyToA = edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: 40000, payload: Uint8Array.of(0, 1) }));
  assert.equal(replyToA.hop, A_PRIMARY);
  assert.equal(replyToB.hop, B_PRIMARY);
  for (const r of [replyToA, replyToB]) {
    assert.equal(r.parsed.dst, HOST);
    assert.equal(r.parsed.dstPort, 40000);
    assert.equal(r.parsed.src, SERVER);
    assert.equal(r.parsed.srcPort, 53);
    assert.equal(r.parsed.drop, Drop.None, 'checksums still verify after translation');
  }
  assert.deepEqual([...replyToA.bytes.subarray(-2)], [0, 1]);
  assert.deepEqual([...replyToB.bytes.subarray(-2)], [0, 2]);
});

/** A small deterministic generator, so a failure names its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

test('thousands of randomized overlapping flows across several sites, Internet and data center: every reply reaches its site', () => {
  const SITES = 6;
  const edge = new PipelineRig(twoSites({ extraSites: SITES }));
  const next = rng(7);
  const sitePorts = Array.from({ length: SITES }, (_, i) => 100 + i);
  interface Sent { port: number; host: string; srcPort: number; dst: string; dstPort: number; outSrc: string; outPort: number; hop: number; tag: number }
  const flows: Sent[] = [];
  for (let i = 0; i < 4000; i++) {
    const port = sitePorts[next() % SITES];
    // Few hosts and ports, so identical tuples from different sites are common.
    const host = `10.0.1.${10 + (next() % 4)}`;
    const srcPort = 40000 + (next() % 8);
    const toDc = next() % 3 === 0;
    const dst = toDc ? DC_SERVER : `203.0.113.${10 + (next() % 3)}`;
    const dstPort = toDc ? 443 : 53;
    const tag = i;
    const out = edge.send(port, buildUdp({ src: host, dst }, { srcPort, dstPort, payload: Uint8Array.of(tag >> 8, tag & 0xff) }));
    if (out.drop !== 0) continue; // the same flow sent twice is fine too: it just hits its flow
    flows.push({ port, host, srcPort, dst, dstPort, outSrc: out.parsed.src, outPort: out.parsed.srcPort, hop: out.hop, tag });
  }
  assert.ok(flows.length >= 3900, `only ${flows.length} flows were set up`);
  let dcClashes = 0;
  for (const f of flows) {
    const fromPort = f.hop;
    if (f.dst === DC_SERVER) {
      assert.equal(fromPort, DC_ONRAMP);
      assert.equal(f.outSrc, f.host, 'no NAT toward the data center');
      if (f.outPort !== f.srcPort) dcClashes++;
    } else {
      assert.equal(fromPort, INTERNET);
      assert.equal(f.outSrc, POOL);
    }
    const reply = edge.send(fromPort, buildUdp({ src: f.dst, dst: f.outSrc }, { srcPort: f.dstPort, dstPort: f.outPort, payload: Uint8Array.of(f.tag >> 8, f.tag & 0xff) }));
    assert.equal(reply.hop, f.port, `reply for flow ${f.tag} went to ${reply.hop}, not its site's ${f.port}`);
    assert.equal(reply.parsed.dst, f.host);
    assert.equal(reply.parsed.dstPort, f.srcPort);
    assert.equal(reply.parsed.drop, Drop.None);
  }
  assert.ok(dcClashes > 0, 'the random mix produced data-center clashes, and they were resolved');
});

test('without ARR, both sites announcing 10.0.1.0/24: replies are misdelivered (the problem tether exists to solve)', () => {
  const edge = new PipelineRig(twoSites({ arr: false }));
  let misdelivered = 0;
  let delivered = 0;
  for (let i = 0; i < 200; i++) {
    // Distinct source ports per site so both sites' flows exist side by side.
    const srcPort = 20000 + i;
    const a = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort, dstPort: 443 }));
    const b = edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: srcPort + 1000, dstPort: 443 }));
    assert.equal(a.hop, DC_ONRAMP);
    assert.equal(b.hop, DC_ONRAMP);
    for (const [sentFrom, port] of [[A_PRIMARY, srcPort], [B_PRIMARY, srcPort + 1000]] as const) {
      const reply = edge.send(DC_ONRAMP, buildUdp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: port }));
      assert.ok(reply.hop === A_PRIMARY || reply.hop === B_PRIMARY, `reply went to ${reply.hop}, neither site`);
      if (reply.hop === sentFrom) delivered++;
      else misdelivered++;
    }
  }
  assert.ok(misdelivered > 50, `expected many misdelivered replies, got ${misdelivered} of ${misdelivered + delivered}`);

  // The same traffic with ARR on: none astray.
  const arrEdge = new PipelineRig(twoSites({ arr: true }));
  for (let i = 0; i < 50; i++) {
    arrEdge.send(A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 30000 + i, dstPort: 443 }));
    const reply = arrEdge.send(DC_ONRAMP, buildUdp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: 30000 + i }));
    assert.equal(reply.hop, A_PRIMARY);
  }
});

function flowSnapshot(edge: PipelineRig, flow: number): string {
  const t = edge.pipeline.flows4;
  return JSON.stringify({
    state: t.state(flow), ret: t.returnPort(flow), next: t.nextHop(flow), flags: t.flags(flow),
    packets: [t.packets(flow, 0), t.packets(flow, 1)], bytes: [t.bytes(flow, 0), t.bytes(flow, 1)],
    deadline: t.deadline(flow),
  });
}

test('injection: site B forging packets of site A\'s flow, in either direction, changes nothing in that flow', () => {
  for (const arr of [true, false]) {
    const edge = new PipelineRig(twoSites({ arr }));
    // Site A opens a TCP connection to the data center and gets an answer.
    const syn = edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 40000, dstPort: 443, seq: 1000, flags: TCP_SYN, options: { mss: 1400 } }));
    assert.equal(syn.hop, DC_ONRAMP);
    const synAck = edge.send(DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: 40000, seq: 5000, ack: 1001, flags: TCP_SYN | TCP_ACK_FLAG }));
    assert.ok(synAck.hop === A_PRIMARY || !arr, `with ARR the SYN-ACK goes to A (got ${synAck.hop})`);
    const node = edge.pipeline.flows4.lookup(keyOf(arr ? SITE_A : 0, HOST, DC_SERVER, 40000, 443));
    assert.ok(node >= 0, 'site A\'s flow exists');
    const flow = node >> 1;
    const before = flowSnapshot(edge, flow);

    edge.now += 1000; // a refresh would move the deadline: it must not
    // Original direction: B sends A's exact tuple (with A's sequence numbers).
    const forgedOrig = edge.send(B_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 40000, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_ACK_FLAG, payload: new Uint8Array(10) }));
    // Reply direction: B pretends to be the data-center server answering A.
    const forgedReply = edge.send(B_PRIMARY, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: 40000, seq: 5001, ack: 1001, flags: TCP_ACK_FLAG, payload: new Uint8Array(10) }));
    assert.equal(flowSnapshot(edge, flow), before, `arr=${arr}: A's flow unchanged`);
    for (const forged of [forgedOrig, forgedReply]) {
      assert.equal(forged.hop, -1, `arr=${arr}: forged packet dropped`);
      // With ARR it never matches (another zone) and, lacking SYN, starts nothing; without ARR it
      // matches in the shared zone and the ownership check refuses it.
      assert.ok(forged.drop === Drop.TcpNoFlow || forged.drop === Drop.FlowOwnerMismatch, `drop reason ${forged.drop}`);
    }
    // UDP, where a forged first packet can start a flow: it starts B's own, never touches A's.
    const udpA = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 41000, dstPort: 53 }));
    const udpNode = edge.pipeline.flows4.lookup(keyOf(arr ? SITE_A : 0, HOST, SERVER, 41000, 53, 17));
    const udpBefore = flowSnapshot(edge, udpNode >> 1);
    const forgedInternetReply = edge.send(B_PRIMARY, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: udpA.parsed.srcPort }));
    const forgedUdpOrig = edge.send(B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 41000, dstPort: 53 }));
    assert.equal(flowSnapshot(edge, udpNode >> 1), udpBefore, `arr=${arr}: A's UDP flow unchanged`);
    // B's packet toward A's external endpoint is hairpinned as B's own flow: it carries B's
    // external source, never the server's address, so it cannot pass for A's reply.
    if (forgedInternetReply.hop >= 0) assert.equal(forgedInternetReply.parsed.src, POOL);
    if (arr) assert.equal(forgedUdpOrig.hop, INTERNET, 'with ARR, B\'s identical tuple is simply B\'s own flow');
    else assert.equal(forgedUdpOrig.drop, Drop.FlowOwnerMismatch, 'without ARR the shared zone refuses B');
  }
});

function keyOf(zone: number, src: string, dst: string, srcPort: number, dstPort: number, protocol = 6): FlowKey {
  const k = new FlowKey();
  k.zone = zone;
  k.protocol = protocol;
  k.src[0] = parseIpv4(src);
  k.dst[0] = parseIpv4(dst);
  k.srcPort = srcPort;
  k.dstPort = dstPort;
  return k;
}

test('site B reusing site A\'s tuple to the Internet gets its own mapping; both see their own replies (SITE_B zone)', () => {
  const edge = new PipelineRig(twoSites());
  edge.send(A_PRIMARY, dnsQuery(1));
  const b = edge.send(B_PRIMARY, dnsQuery(2));
  assert.ok(edge.pipeline.flows4.lookup(keyOf(SITE_B, HOST, SERVER, 40000, 53, 17)) >= 0, 'edge.pipeline.flows4.lookup(keyOf(SITE_B, HOST, SERVER, 40000, 53, 17)) >= 0');
  assert.ok(edge.pipeline.flows4.lookup(keyOf(SITE_A, HOST, SERVER, 40000, 53, 17)) >= 0, 'edge.pipeline.flows4.lookup(keyOf(SITE_A, HOST, SERVER, 40000, 53, 17)) >= 0');
  assert.equal(edge.pipeline.flows4.size, 2);
  assert.ok(b.parsed.srcPort !== 40000, 'B\'s mapping does not overload A\'s port');
});
