/**
 * Flows across lanes (docs/ARCHITECTURE.md "Lanes"): two pipelines as two lanes share an ownership directory; a
 * packet a lane finds owned by the other is listed for handoff, and the "ring" here carries it to the owner, which
 * processes it as handed in (never handing it on). RFC 4787 REQ-1 across lanes, a data center's reply that reached
 * the lane that does not own its flow, hairpin to another lane's slice, stale hints, and the claims' lifetimes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketBatch } from '../../src/common/packet-batch.js';
import { NEXT_HOP_DROP } from '../../src/common/ids.js';
import { Drop } from '../../src/common/drop-reasons.js';
import { LaneHost } from '../../src/daemon/lanes.js';
import { Pipeline, type PipelineConfig } from '../../src/dataplane/pipeline.js';
import { buildIcmpEcho, buildTcp, buildUdp, parsePacket, type ParsedPacket } from '../../src/wire/build.js';
import { buildProbe } from '../../src/health/health.js';
import { TCP_ACK_FLAG, TCP_SYN } from '../../src/wire/constants.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, twoSites } from '../support/topology.js';

interface Landed {
  /** The lane that processed the packet in the end. */
  lane: number;
  /** Whether the first lane handed it over. */
  handed: boolean;
  hop: number;
  drop: number;
  parsed: ParsedPacket;
}

/** Two lanes of one edge, without threads: the ring is a copy of the packet into the owner's batch. */
class TwoLanes {
  readonly lanes: Pipeline[];
  now = 1_000_000;
  private readonly batch = new PacketBatch(1, 2048, 128);
  private readonly ring = new PacketBatch(1, 2048, 128);

  constructor(config: PipelineConfig = twoSites(), directory = true) {
    const buffer = LaneHost.directory(2, config.flows);
    this.lanes = [0, 1].map((index) => new Pipeline({
      ...config,
      // Each lane's tables have their own seed, as in the edge.
      hashSeed: 1000 + index,
      lane: { index, count: 2, directory: directory ? buffer : undefined },
    }));
  }

  /**
   * `packet` read by lane `lane` from `port`; handed to its owner when that lane says so. `handedIn`: as if another
   * lane had handed it to `lane` (it stays there).
   */
  send(lane: number, port: number, packet: Uint8Array, handedIn = false): Landed {
    const b = this.batch;
    b.clear();
    b.push(packet, 0, packet.length, port);
    const p = this.lanes[lane];
    if (p.lanes !== null) p.lanes.handedIn = handedIn;
    p.process(b, this.now);
    if (p.lanes !== null) p.lanes.handedIn = false;
    const own = p.lanes;
    if (own !== null && own.count > 0) {
      assert.equal(own.count, 1);
      assert.equal(own.index[0], 0);
      assert.equal(b.nextHop[0], NEXT_HOP_DROP, 'a packet to hand over is not delivered');
      assert.equal(b.drop[0], Drop.None, 'nor counted as a drop');
      const owner = own.lane[0];
      own.count = 0;
      const r = this.ring;
      r.clear();
      r.push(b.packet(0), 0, b.length[0], b.ingress[0]);
      const q = this.lanes[owner];
      q.lanes!.handedIn = true;
      q.process(r, this.now);
      q.lanes!.handedIn = false;
      assert.equal(q.lanes!.count, 0, 'a packet handed in is never handed on');
      return this.landed(owner, true, r);
    }
    return this.landed(lane, false, b);
  }

  private landed(lane: number, handed: boolean, b: PacketBatch): Landed {
    const bytes = b.packet(0).slice();
    return { lane, handed, hop: b.nextHop[0] === NEXT_HOP_DROP ? -1 : b.nextHop[0], drop: b.drop[0], parsed: parsePacket(bytes) };
  }

  advance(ms: number): void {
    this.now += ms;
    for (const p of this.lanes) p.expire(this.now, 1 << 20);
  }
}

const SERVERS = Array.from({ length: 32 }, (_, k) => `203.0.113.${100 + k}`);

test('RFC 4787 REQ-1 across lanes: every flow of one internal endpoint gets the mapping of the lane that made it', () => {
  const edge = new TwoLanes();
  const first = edge.send(0, A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 3478 }));
  assert.equal(first.hop, INTERNET);
  const ext = `${first.parsed.src}:${first.parsed.srcPort}`;
  // New flows of the endpoint reach either lane (the kernel's hash): each leaves with the same external endpoint.
  SERVERS.forEach((server, k) => {
    const out = edge.send(k % 2, A_PRIMARY, buildUdp({ src: HOST, dst: server }, { srcPort: 5000, dstPort: 3478 }));
    assert.equal(out.hop, INTERNET, server);
    assert.equal(out.lane, 0, `${server}: set up by the lane that holds the mapping`);
    assert.equal(out.handed, k % 2 === 1);
    assert.equal(`${out.parsed.src}:${out.parsed.srcPort}`, ext, server);
  });
  assert.equal(edge.lanes[1].flows4.size, 0);
  assert.equal(edge.lanes[0].snat!.mappings, 1);
  // The same endpoint in the other site (its own zone with ARR) is another endpoint: lane 1 maps it itself.
  const b = edge.send(1, B_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 3478 }));
  assert.equal(b.lane, 1);
  assert.equal(b.handed, false);
  assert.notEqual(`${b.parsed.src}:${b.parsed.srcPort}`, ext);
  // Receive counters: the handed packets are counted once, by the lane that forwarded them.
  assert.equal(edge.lanes[0].counters.rxPackets[A_PRIMARY] + edge.lanes[1].counters.rxPackets[A_PRIMARY], 1 + SERVERS.length);
});

test('without the directory (the problem it solves): the second lane maps the endpoint again', () => {
  const edge = new TwoLanes(twoSites(), false);
  const a = edge.send(0, A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 3478 }));
  const b = edge.send(1, A_PRIMARY, buildUdp({ src: HOST, dst: SERVERS[0] }, { srcPort: 5000, dstPort: 3478 }));
  assert.equal(b.handed, false);
  assert.notEqual(a.parsed.srcPort, b.parsed.srcPort);
});

test('a data center\'s reply that reaches the lane not owning its flow is handed to the owner and reaches the site', () => {
  const edge = new TwoLanes();
  const syn = edge.send(0, A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 41000, dstPort: 443, seq: 100, flags: TCP_SYN }));
  assert.equal(syn.hop, DC_ONRAMP);
  // The kernel forgot which queue wrote the flow: the SYN-ACK comes in on lane 1.
  const synAck = edge.send(1, DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: 41000, seq: 900, ack: 101, flags: TCP_SYN | TCP_ACK_FLAG }));
  assert.equal(synAck.handed, true);
  assert.equal(synAck.lane, 0);
  assert.equal(synAck.hop, A_PRIMARY, 'automatic return routing: back to the onramp the flow came from');
  assert.equal(synAck.drop, Drop.None);
  assert.equal(edge.lanes[1].flows4.size, 0, 'no second flow on the wrong lane');
  // The client's next segment reaches lane 1 too: handed over as well.
  const ack = edge.send(1, A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 41000, dstPort: 443, seq: 101, ack: 901, flags: TCP_ACK_FLAG }));
  assert.equal(ack.lane, 0);
  assert.equal(ack.hop, DC_ONRAMP);
  // A clash-rewritten flow is found by its rewritten reply key too: B's identical tuple gets another source port on lane 1.
  const clash = edge.send(1, B_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 41000, dstPort: 443, seq: 7, flags: TCP_SYN }));
  assert.equal(clash.lane, 0, 'the same 5-tuple is claimed by lane 0 (zone-less key): a hint, set up there, which then sees the clash');
  assert.equal(clash.drop, Drop.None);
  assert.equal(clash.hop, DC_ONRAMP);
  assert.notEqual(clash.parsed.srcPort, 41000);
  const clashReply = edge.send(1, DC_ONRAMP, buildTcp({ src: DC_SERVER, dst: HOST }, { srcPort: 443, dstPort: clash.parsed.srcPort, seq: 50, ack: 8, flags: TCP_SYN | TCP_ACK_FLAG }));
  assert.equal(clashReply.lane, 0);
  assert.equal(clashReply.hop, B_PRIMARY);
  assert.equal(clashReply.parsed.dstPort, 41000);
});

test('hairpin across lanes keeps each sender\'s one external endpoint (REQ-1, REQ-9): two sites reach each other at the endpoints a server told them', () => {
  for (const firstLane of [0, 1]) {
    const edge = new TwoLanes();
    // A's mapping on lane 0, B's on lane 1 (the same pool address, ports of two slices), learned as from a STUN server.
    const a = edge.send(0, A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 6000, dstPort: 3478 }));
    const b = edge.send(1, B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: SERVER }, { srcPort: 7000, dstPort: 3478 }));
    assert.equal(a.lane, 0);
    assert.equal(b.lane, 1);
    // A sends to B's external endpoint, read by either lane: lane 1 holds B's mapping and sets the flow up, with
    // A's mapping borrowed from lane 0; filtered until B has sent to A (REQ-8).
    const toB = edge.send(firstLane, A_PRIMARY, buildUdp({ src: HOST, dst: POOL }, { srcPort: 6000, dstPort: b.parsed.srcPort }));
    assert.equal(toB.lane, 1);
    assert.equal(toB.drop, Drop.HairpinFiltered);
    // B sends to A's external endpoint, read by either lane: that flow's reply, on lane 1, delivered to A from B's endpoint.
    const toA = edge.send(1 - firstLane, B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: POOL }, { srcPort: 7000, dstPort: a.parsed.srcPort }));
    assert.equal(toA.lane, 1);
    assert.equal(toA.hop, A_PRIMARY);
    assert.equal(toA.parsed.dst, HOST);
    assert.equal(toA.parsed.dstPort, 6000);
    assert.equal(`${toA.parsed.src}:${toA.parsed.srcPort}`, `${b.parsed.src}:${b.parsed.srcPort}`);
    // And A's next packet reaches B from A's one external endpoint, whichever lane reads it.
    for (const lane of [0, 1]) {
      const again = edge.send(lane, A_PRIMARY, buildUdp({ src: HOST, dst: POOL }, { srcPort: 6000, dstPort: b.parsed.srcPort }));
      assert.equal(again.lane, 1);
      assert.equal(again.hop, B_PRIMARY);
      assert.equal(again.parsed.dstPort, 7000);
      assert.equal(`${again.parsed.src}:${again.parsed.srcPort}`, `${a.parsed.src}:${a.parsed.srcPort}`, 'A\'s Internet mapping, borrowed');
    }
    // The borrowed mapping stays lane 0's: lane 1 took none for A, and ending the hairpin flow releases nothing there.
    assert.equal(edge.lanes[1].snat!.mappings, 1);
    edge.advance(10 * 60 * 1000);
    assert.equal(edge.lanes[0].snat!.mappings + edge.lanes[1].snat!.mappings, 0);
    assert.equal(edge.lanes[0].lanes!.directory.used(), 0);
  }
});

test('hairpin: both ends\' first packets set up at once on two lanes, each held for the other\'s, do not wait forever', () => {
  const edge = new TwoLanes();
  const a = edge.send(0, A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 6000, dstPort: 3478 }));
  const b = edge.send(1, B_PRIMARY, buildUdp({ src: '10.0.1.20', dst: SERVER }, { srcPort: 7000, dstPort: 3478 }));
  const toB = () => buildUdp({ src: HOST, dst: POOL }, { srcPort: 6000, dstPort: b.parsed.srcPort });
  const toA = () => buildUdp({ src: '10.0.1.20', dst: POOL }, { srcPort: 7000, dstPort: a.parsed.srcPort });
  // At the same moment, before either claimed the conversation: A's on lane 1 (B's mapping), B's on lane 0 (A's).
  assert.equal(edge.send(1, A_PRIMARY, toB(), true).drop, Drop.HairpinFiltered);
  assert.equal(edge.send(0, B_PRIMARY, toA(), true).drop, Drop.HairpinFiltered);
  // The kernel keeps giving A's packets to lane 1 and B's to lane 0: held there, but lane 0 claimed the conversation last.
  const again = edge.send(1, A_PRIMARY, toB());
  assert.equal(again.handed, true);
  assert.equal(again.lane, 0);
  assert.equal(again.hop, B_PRIMARY);
  assert.equal(`${again.parsed.src}:${again.parsed.srcPort}`, `${a.parsed.src}:${a.parsed.srcPort}`);
  const back = edge.send(0, B_PRIMARY, toA());
  assert.equal(back.lane, 0);
  assert.equal(back.hop, A_PRIMARY);
  assert.equal(`${back.parsed.src}:${back.parsed.srcPort}`, `${b.parsed.src}:${b.parsed.srcPort}`);
});

test('a stale hint costs one handoff: the receiving lane sets the flow up itself and claims it', () => {
  const edge = new TwoLanes();
  const dir = edge.lanes[0].lanes!.directory;
  const words = new Uint32Array(8);
  words[0] = 0xac100014; // DC_SERVER
  words[4] = 0x0a00010a; // HOST
  const h = dir.flowHash(17, 4, words, 4, 0, 9999, 53);
  dir.claim(h, 1); // lane 1 "owns" a flow it no longer has
  const out = edge.send(0, A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 9999, dstPort: 53 }));
  assert.equal(out.handed, true);
  assert.equal(out.lane, 1);
  assert.equal(out.hop, DC_ONRAMP);
  assert.equal(dir.ownerOf(h), 1);
});

test('claims end with what they stand for: a flow\'s when it expires, a mapping\'s when its last flow goes', () => {
  const edge = new TwoLanes();
  const dir = edge.lanes[0].lanes!.directory;
  edge.send(0, A_PRIMARY, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 9999, dstPort: 53 }));
  edge.send(1, A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5001, dstPort: 53 }));
  assert.equal(dir.used(), 2, 'one flow key (lane 0), one endpoint key (lane 1)');
  edge.advance(10 * 60 * 1000);
  assert.equal(edge.lanes[0].flows4.size + edge.lanes[1].flows4.size, 0);
  assert.equal(dir.used(), 0);
  // After that, the endpoint's next flow is set up where it lands.
  const next = edge.send(0, A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5001, dstPort: 53 }));
  assert.equal(next.handed, false);
});

test('the pipeline never hands a packet from the Internet: the edge steers those by NAT port before it', () => {
  const edge = new TwoLanes();
  const out = edge.send(1, A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5002, dstPort: 53 }));
  // From the Internet the edge steers by the NAT port before the pipeline (edge.ts handOff); the pipeline never hands those.
  const reply = edge.send(0, INTERNET, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: out.parsed.srcPort }));
  assert.equal(reply.handed, false);
  assert.equal(reply.drop, Drop.NoNatMapping, 'lane 0 has no such mapping, and says so');
});

test('health across lanes: an echo to an onramp\'s tunnel address that lane 1 read goes to lane 0, whose checks take the probe reply and answer the site\'s probe', () => {
  const EDGE_TUNNEL = '100.64.9.1';
  const config = twoSites();
  config.onramps = config.onramps.map((o) => (o.id === DC_ONRAMP ? { ...o, localAddress: EDGE_TUNNEL } : o));
  const edge = new TwoLanes(config);
  const [zero, one] = edge.lanes;
  // Lane 0 runs the checks (lanes ≥ 1 have none: daemon/edge.ts startHealth on lane 0 only).
  zero.health.add(DC_ONRAMP, { source: EDGE_TUNNEL, target: DC_SERVER }, edge.now);
  const [probe] = zero.health.poll(edge.now);
  assert.equal(buildProbe(probe).length, 28);
  edge.now += 3;
  const reply = edge.send(1, DC_ONRAMP, buildIcmpEcho({ src: DC_SERVER, dst: EDGE_TUNNEL }, { type: 'reply', id: probe.id, seq: probe.seq }));
  assert.deepEqual([reply.handed, reply.lane, reply.hop, reply.drop], [true, 0, -1, Drop.None], 'handed to lane 0 and consumed there');
  assert.equal(zero.health.counters(DC_ONRAMP)!.repliesMatched, 1);
  assert.equal(zero.health.status(DC_ONRAMP)!.rttMs, 3);
  // The site's own probe (reverse style): answered by lane 0, back into the interconnect, counted there.
  const ping = edge.send(1, DC_ONRAMP, buildIcmpEcho({ src: DC_SERVER, dst: EDGE_TUNNEL }, { type: 'request', id: 77, seq: 1 }));
  assert.deepEqual([ping.handed, ping.lane, ping.hop, ping.parsed.src, ping.parsed.dst], [true, 0, DC_ONRAMP, EDGE_TUNNEL, DC_SERVER]);
  assert.equal(zero.health.counters(DC_ONRAMP)!.siteProbesAnswered, 1);
  // Counted once, where decided: lane 1 took its receive counts back.
  assert.deepEqual([zero.counters.rxPackets[DC_ONRAMP], one.counters.rxPackets[DC_ONRAMP]], [2, 0]);
  // Lane 0 reading them itself decides them without a handoff (as before lanes).
  const own = edge.send(0, DC_ONRAMP, buildIcmpEcho({ src: DC_SERVER, dst: EDGE_TUNNEL }, { type: 'request', id: 77, seq: 2 }));
  assert.deepEqual([own.handed, own.hop], [false, DC_ONRAMP]);
  assert.deepEqual([zero.flows4.size, one.flows4.size], [0, 0], 'no flow on either lane');
});
