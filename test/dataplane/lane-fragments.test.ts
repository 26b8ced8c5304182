/**
 * Fragments and ICMP errors across lanes (docs/ARCHITECTURE.md "Lanes", "Fragments and ICMP errors"): two pipelines
 * as two lanes, with the edge's handoff decisions around them as edge.ts makes them (LaneSteering on packets from
 * the Internet before the pipeline, the pipeline's handoff list after it, held fragments through onHandHeld) and
 * FIFO "rings" that are arrays. A multi-queue TUN gives every fragment of a datagram to one lane (its hash reads
 * the addresses only): the lane that hands the first fragment to its flow's owner hands the rest after it; an ICMP
 * error about a flow no NAT port steers reaches the flow's lane by the quoted packet's key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketBatch } from '../../src/common/packet-batch.js';
import { NEXT_HOP_DROP } from '../../src/common/ids.js';
import { Drop } from '../../src/common/drop-reasons.js';
import { LaneHost } from '../../src/daemon/lanes.js';
import { LaneSteering } from '../../src/dataplane/lane-steering.js';
import { Pipeline } from '../../src/dataplane/pipeline.js';
import { buildIcmpError, buildUdp, fragmentIpv4, parsePacket, type ParsedPacket } from '../../src/wire/build.js';
import { ICMP4_CODE_FRAGMENTATION_NEEDED, ICMP4_CODE_PORT_UNREACHABLE, ICMP4_DEST_UNREACHABLE, ICMP6_PACKET_TOO_BIG } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, SERVER, twoSites } from '../support/topology.js';

const LANE_COUNT = 2;

interface Delivered {
  lane: number;
  hop: number;
  parsed: ParsedPacket;
  bytes: Uint8Array;
}

interface Packet {
  bytes: Uint8Array;
  ingress: number;
}

/** Two lanes of one edge without threads: what edge.ts does around each pipeline, rings as arrays. */
class TwoLanes {
  readonly lanes: Pipeline[];
  readonly steering: LaneSteering[];
  /** rings[k]: what the other lane handed to lane k, in order. */
  readonly rings: Packet[][] = [[], []];
  readonly delivered: Delivered[] = [];
  readonly drops: Array<{ lane: number; drop: number }> = [];
  now = 1_000_000;

  constructor() {
    const config = twoSites();
    const buffer = LaneHost.directory(LANE_COUNT, config.flows);
    this.lanes = [0, 1].map((index) => new Pipeline({ ...config, hashSeed: 1000 + index, lane: { index, count: LANE_COUNT, directory: buffer } }));
    this.steering = this.lanes.map((p) => new LaneSteering(p.snat, LANE_COUNT));
    // edge.ts handHeld: an early fragment whose first fragment went to `lane`, into that lane's ring at once.
    for (const p of this.lanes) p.onHandHeld = (data, offset, length, ingress, lane) => this.rings[lane].push({ bytes: data.slice(offset, offset + length), ingress });
  }

  /** Lane `lane` reads `packets` (one TUN batch), then each lane drains its ring (as the doorbell wakes it). */
  read(lane: number, packets: Packet[]): void {
    this.process(lane, packets, false);
    for (let k = 0; k < LANE_COUNT; k++) this.drain(k);
  }

  private drain(lane: number): void {
    while (this.rings[lane].length > 0) this.process(lane, this.rings[lane].splice(0), true);
  }

  private process(lane: number, packets: Packet[], handedIn: boolean): void {
    const p = this.lanes[lane];
    const batch = new PacketBatch(Math.max(1, packets.length), 2048, 128);
    for (const pk of packets) {
      // edge.ts handOff: replies from the Internet go to the lane of their NAT port before the pipeline sees them.
      if (!handedIn && pk.ingress === INTERNET) {
        const owner = this.steering[lane].owner(pk.bytes, 0, pk.bytes.length);
        if (owner >= 0 && owner !== lane) {
          this.rings[owner].push(pk);
          if (this.steering[lane].firstFragment) p.steeredFirstFragment(pk.bytes, 0, pk.bytes.length, INTERNET, owner, this.now);
          continue;
        }
      }
      batch.push(pk.bytes, 0, pk.bytes.length, pk.ingress);
    }
    p.lanes!.handedIn = handedIn;
    p.process(batch, this.now);
    p.lanes!.handedIn = false;
    const own = p.lanes!;
    if (handedIn) assert.equal(own.count, 0, 'a packet handed in is never handed on');
    // edge.ts handMisses: the listed packets, in batch order.
    const handed = new Set<number>();
    for (let k = 0; k < own.count; k++) {
      handed.add(own.index[k]);
      this.rings[own.lane[k]].push({ bytes: batch.packet(own.index[k]).slice(), ingress: batch.ingress[own.index[k]] });
    }
    own.count = 0;
    for (const b of [batch, p.generated]) {
      for (let i = 0; i < b.count; i++) {
        if (handed.has(i) && b === batch) continue;
        if (b.nextHop[i] !== NEXT_HOP_DROP) {
          const bytes = b.packet(i).slice();
          this.delivered.push({ lane, hop: b.nextHop[i], parsed: parsePacket(bytes), bytes });
        } else if (b.drop[i] !== Drop.None) {
          this.drops.push({ lane, drop: b.drop[i] });
        }
      }
    }
    p.generated.clear();
  }
}

/** The IPv4 payload bytes of fragments put back together by offset (what the receiver reassembles). */
function reassembled(fragments: Delivered[]): Uint8Array {
  const parts = fragments.map((f) => ({ at: f.parsed.fragmentOffset, data: f.bytes.subarray(20, f.parsed.ipLength) }));
  const total = Math.max(...parts.map((p) => p.at + p.data.length));
  const out = new Uint8Array(total);
  for (const p of parts) out.set(p.data, p.at);
  return out;
}

const PAYLOAD = Uint8Array.from({ length: 3000 }, (_, k) => k & 0xff);
const FRAGMENT_MTU = 1280;

test('a data center\'s fragmented reply read by the lane that does not own its flow: every fragment reaches the site, from the owner', () => {
  const edge = new TwoLanes();
  edge.read(0, [{ bytes: buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 41000, dstPort: 9000, payload: new Uint8Array(8) }), ingress: A_PRIMARY }]);
  assert.equal(edge.delivered[0].hop, DC_ONRAMP);
  edge.delivered.length = 0;
  // The reply's fragments all reach lane 1 (the kernel hashes them by addresses).
  const reply = buildUdp({ src: DC_SERVER, dst: HOST, id: 0x4242 }, { srcPort: 9000, dstPort: 41000, payload: PAYLOAD });
  const fragments = fragmentIpv4(reply, FRAGMENT_MTU);
  assert.equal(fragments.length, 3);
  edge.read(1, fragments.map((bytes) => ({ bytes, ingress: DC_ONRAMP })));
  assert.deepEqual(edge.drops, []);
  assert.equal(edge.delivered.length, 3);
  for (const d of edge.delivered) {
    assert.equal(d.lane, 0, 'forwarded by the flow\'s lane');
    assert.equal(d.hop, A_PRIMARY, 'to the site the flow came from (ARR)');
  }
  assert.deepEqual(edge.delivered.map((d) => d.parsed.fragmentOffset), [0, 1256, 2512], 'in order');
  assert.deepEqual(reassembled(edge.delivered), reply.subarray(20));
  assert.equal(edge.lanes[1].lanes!.fragmentsSteered, 1);
  assert.equal(edge.lanes[1].counters.fragmentsHeld, 0, 'nothing waits on the wrong lane');
  assert.equal(edge.lanes[0].counters.fragmentsFollowed, 2);
  assert.equal(edge.lanes[1].flows4.size, 0);
  // Received once: by the lane that forwarded them.
  assert.equal(edge.lanes[0].counters.rxPackets[DC_ONRAMP] + edge.lanes[1].counters.rxPackets[DC_ONRAMP], 3);
});

test('fragments of a reply from the Internet follow their first fragment to the lane of its NAT port', () => {
  const edge = new TwoLanes();
  // Lane 1 maps the flow (its slice's port); its replies' fragments reach lane 0.
  edge.read(1, [{ bytes: buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 9000, payload: new Uint8Array(8) }), ingress: A_PRIMARY }]);
  const out = edge.delivered[0].parsed;
  assert.equal(edge.delivered[0].hop, INTERNET);
  edge.delivered.length = 0;
  const reply = buildUdp({ src: SERVER, dst: out.src, id: 0x777 }, { srcPort: 9000, dstPort: out.srcPort, payload: PAYLOAD });
  edge.read(0, fragmentIpv4(reply, FRAGMENT_MTU).map((bytes) => ({ bytes, ingress: INTERNET })));
  assert.deepEqual(edge.drops, []);
  assert.equal(edge.delivered.length, 3);
  for (const d of edge.delivered) {
    assert.equal(d.lane, 1);
    assert.equal(d.hop, A_PRIMARY);
    assert.equal(d.parsed.dst, HOST, 'translated back');
  }
  const first = edge.delivered.find((d) => d.parsed.fragmentOffset === 0)!;
  assert.equal(first.parsed.dstPort, 5000);
  assert.equal(edge.lanes[0].lanes!.fragmentsSteered, 1);
  assert.equal(edge.lanes[0].counters.fragmentsHeld, 0);
});

test('fragments that came before their first fragment are held, then follow it to its lane (as on one lane)', () => {
  const edge = new TwoLanes();
  edge.read(0, [{ bytes: buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 41001, dstPort: 9000 }), ingress: A_PRIMARY }]);
  edge.delivered.length = 0;
  const reply = buildUdp({ src: DC_SERVER, dst: HOST, id: 0x99 }, { srcPort: 9000, dstPort: 41001, payload: PAYLOAD });
  const [f0, f1, f2] = fragmentIpv4(reply, FRAGMENT_MTU);
  // The last two first (a sender that fragments back to front), each in a batch of its own: lane 1 holds them.
  edge.read(1, [{ bytes: f2, ingress: DC_ONRAMP }]);
  edge.read(1, [{ bytes: f1, ingress: DC_ONRAMP }]);
  assert.equal(edge.lanes[1].counters.fragmentsHeld, 2);
  assert.equal(edge.delivered.length, 0);
  edge.read(1, [{ bytes: f0, ingress: DC_ONRAMP }]);
  assert.deepEqual(edge.drops, []);
  assert.equal(edge.delivered.length, 3);
  assert.ok(edge.delivered.every((d) => d.lane === 0 && d.hop === A_PRIMARY));
  assert.deepEqual(reassembled(edge.delivered), reply.subarray(20));
  assert.equal(edge.lanes[1].lanes!.fragmentsSteered, 1);
  // Lane 1 gave its receive counts back when it handed them: lane 0 counts them (as one lane would), each once,
  // although lane 0 held the two that reached it before their first fragment, and released them.
  assert.equal(edge.lanes[1].counters.rxPackets[DC_ONRAMP], 0);
  assert.equal(edge.lanes[0].counters.fragmentsHeld, 2);
  assert.equal(edge.lanes[0].counters.rxPackets[DC_ONRAMP], 3);
  assert.equal(edge.lanes[0].counters.rxBytes[DC_ONRAMP], f0.length + f1.length + f2.length);
});

test('one lane: a fragment held before its first fragment is received once, counted when it came, not again when released', () => {
  const edge = new PipelineRig(twoSites());
  const out = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40002, dstPort: 53 }));
  const c = edge.pipeline.counters;
  const [f0, f1, f2] = fragmentIpv4(buildUdp({ src: SERVER, dst: out.parsed.src, id: 0x4321 }, { srcPort: 53, dstPort: out.parsed.srcPort, payload: PAYLOAD }), FRAGMENT_MTU);
  assert.equal(edge.send(INTERNET, f2).drop, Drop.None, 'held');
  assert.equal(c.fragmentsHeld, 1);
  assert.deepEqual([c.rxPackets[INTERNET], c.rxBytes[INTERNET]], [1, f2.length], 'counted as it came');
  assert.equal(edge.send(INTERNET, f0).hop, A_PRIMARY);
  const released = edge.generated();
  assert.deepEqual(released.map((r) => r.hop), [A_PRIMARY], 'the held fragment follows its first');
  assert.deepEqual([c.rxPackets[INTERNET], c.rxBytes[INTERNET]], [2, f0.length + f2.length], 'the released fragment is not received again');
  assert.equal(edge.send(INTERNET, f1).hop, A_PRIMARY);
  assert.deepEqual([c.rxPackets[INTERNET], c.rxBytes[INTERNET]], [3, f0.length + f1.length + f2.length]);
  assert.equal(c.txPackets[A_PRIMARY], 3);
  assert.equal(c.rxDrops[INTERNET], 0);
});

test('from the Internet too: fragments held before their first fragment follow it when LaneSteering hands it to its lane', () => {
  const edge = new TwoLanes();
  edge.read(1, [{ bytes: buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5001, dstPort: 9000 }), ingress: A_PRIMARY }]);
  const out = edge.delivered[0].parsed;
  edge.delivered.length = 0;
  const reply = buildUdp({ src: SERVER, dst: out.src, id: 0x778 }, { srcPort: 9000, dstPort: out.srcPort, payload: PAYLOAD });
  const [f0, f1, f2] = fragmentIpv4(reply, FRAGMENT_MTU);
  edge.read(0, [{ bytes: f1, ingress: INTERNET }, { bytes: f2, ingress: INTERNET }]);
  assert.equal(edge.lanes[0].counters.fragmentsHeld, 2);
  edge.read(0, [{ bytes: f0, ingress: INTERNET }]);
  assert.deepEqual(edge.drops, []);
  assert.equal(edge.delivered.length, 3);
  assert.ok(edge.delivered.every((d) => d.lane === 1 && d.hop === A_PRIMARY && d.parsed.dst === HOST));
  assert.deepEqual(edge.delivered.map((d) => d.parsed.fragmentOffset), [0, 1256, 2512], 'the first fragment, then the two it released');
  assert.equal(edge.lanes[0].counters.rxPackets[INTERNET], 0, 'lane 0 gave its receive counts back');
});

test('an identification used again by another flow: the latest first fragment decides where the later fragments go', () => {
  const edge = new TwoLanes();
  // Two data-center flows, one per lane; their replies (same addresses, so the same lane reads them) reuse an id.
  edge.read(0, [{ bytes: buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 41010, dstPort: 9000 }), ingress: A_PRIMARY }]);
  edge.read(1, [{ bytes: buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 41011, dstPort: 9000 }), ingress: A_PRIMARY }]);
  const replyTo = (port: number): Uint8Array[] => fragmentIpv4(buildUdp({ src: DC_SERVER, dst: HOST, id: 0x1111 }, { srcPort: 9000, dstPort: port, payload: PAYLOAD }), FRAGMENT_MTU);
  for (const [port, lane] of [[41011, 1], [41010, 0], [41011, 1], [41010, 0]]) {
    edge.delivered.length = 0;
    edge.read(1, replyTo(port).map((bytes) => ({ bytes, ingress: DC_ONRAMP })));
    assert.deepEqual(edge.drops, []);
    assert.equal(edge.delivered.length, 3);
    assert.ok(edge.delivered.every((d) => d.lane === lane), `the reply to ${port}: every fragment on lane ${lane}`);
    assert.ok(edge.delivered.slice(1).every((d) => d.parsed.fragmentOffset > 0));
  }
});

test('two sites\' identical datagrams (overlap) are two datagrams: each site\'s fragments follow its own first fragment', () => {
  const edge = new TwoLanes();
  // A's flow on lane 0, B's (the same tuple in its own zone; the DC sees a clash-rewritten port) on lane 1.
  edge.read(0, [{ bytes: buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 9000 }), ingress: A_PRIMARY }]);
  edge.read(1, [{ bytes: buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 9000 }), ingress: B_PRIMARY }]);
  // Their fragmented datagrams toward the server, the same id, both read by lane 0 then lane 1.
  const big = buildUdp({ src: HOST, dst: SERVER, id: 0x55 }, { srcPort: 5000, dstPort: 9000, payload: PAYLOAD });
  edge.delivered.length = 0;
  for (const lane of [0, 1]) {
    edge.read(lane, fragmentIpv4(big, FRAGMENT_MTU).flatMap((bytes) => [{ bytes, ingress: A_PRIMARY }, { bytes, ingress: B_PRIMARY }]));
  }
  assert.deepEqual(edge.drops, []);
  assert.equal(edge.delivered.length, 12);
  assert.ok(edge.delivered.every((d) => d.hop === INTERNET));
  const ports = new Set(edge.delivered.filter((d) => d.parsed.fragmentOffset === 0).map((d) => `${d.lane}:${d.parsed.srcPort}`));
  assert.equal(ports.size, 2, 'each site\'s first fragments leave from its own lane and mapping');
});

test('ICMP errors about a data center flow reach the flow\'s lane from either lane, translated: fragmentation needed, port unreachable', () => {
  const edge = new TwoLanes();
  // A's flow and B's identical one (clash-rewritten at the DC) both set up on lane 0.
  edge.read(0, [
    { bytes: buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 41000, dstPort: 9000, payload: new Uint8Array(8) }), ingress: A_PRIMARY },
    { bytes: buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 41000, dstPort: 9000, payload: new Uint8Array(8) }), ingress: B_PRIMARY },
  ]);
  const sent = edge.delivered.map((d) => d.bytes);
  assert.equal(sent.length, 2);
  const bPort = parsePacket(sent[1]).srcPort;
  assert.notEqual(bPort, 41000, 'B\'s flow was rewritten (clash)');
  edge.delivered.length = 0;
  const errors = [
    buildIcmpError({ src: '172.16.0.1', dst: HOST }, { type: ICMP4_DEST_UNREACHABLE, code: ICMP4_CODE_FRAGMENTATION_NEEDED, mtu: 1400 }, sent[0]),
    buildIcmpError({ src: DC_SERVER, dst: HOST }, { type: ICMP4_DEST_UNREACHABLE, code: ICMP4_CODE_PORT_UNREACHABLE }, sent[1]),
  ];
  // Read by lane 1, which has no flow: handed to lane 0 by the quoted packet's key.
  edge.read(1, errors.map((bytes) => ({ bytes, ingress: DC_ONRAMP })));
  assert.deepEqual(edge.drops, []);
  assert.equal(edge.delivered.length, 2);
  const [toA, toB] = edge.delivered;
  assert.equal(toA.lane, 0);
  assert.equal(toA.hop, A_PRIMARY);
  assert.equal(toA.parsed.icmp!.code, ICMP4_CODE_FRAGMENTATION_NEEDED);
  assert.equal(toB.lane, 0);
  assert.equal(toB.hop, B_PRIMARY);
  assert.equal(toB.parsed.inner!.srcPort, 41000, 'the quoted header translated back to what B sent');
  assert.equal(edge.lanes[0].counters.icmpErrorsTranslated, 2);
  // An error quoting no flow any lane claimed stays where it is, and is dropped there as before.
  const stray = buildIcmpError({ src: DC_SERVER, dst: HOST }, { type: ICMP4_DEST_UNREACHABLE, code: ICMP4_CODE_PORT_UNREACHABLE }, buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 1, dstPort: 2 }));
  edge.read(1, [{ bytes: stray, ingress: DC_ONRAMP }]);
  assert.deepEqual(edge.drops, [{ lane: 1, drop: Drop.IcmpNoFlow }]);
});

test('IPv6: a packet too big about a data center flow reaches the flow\'s lane', () => {
  const edge = new TwoLanes();
  edge.read(1, [{ bytes: buildUdp({ src: 'fd00:1::10', dst: 'fd00:dc::20' }, { srcPort: 41000, dstPort: 9000, payload: new Uint8Array(8) }), ingress: A_PRIMARY }]);
  const sent = edge.delivered[0];
  assert.equal(sent.hop, DC_ONRAMP);
  edge.delivered.length = 0;
  const error = buildIcmpError({ src: 'fd00:dc::1', dst: 'fd00:1::10' }, { type: ICMP6_PACKET_TOO_BIG, code: 0, mtu: 1280 }, sent.bytes);
  edge.read(0, [{ bytes: error, ingress: DC_ONRAMP }]);
  assert.deepEqual(edge.drops, []);
  assert.equal(edge.delivered.length, 1);
  assert.equal(edge.delivered[0].lane, 1);
  assert.equal(edge.delivered[0].hop, A_PRIMARY);
});
