/**
 * The specialised established path (Pipeline.forwardChunk, issue 10 item 5) against the general walk as
 * its oracle: random packet sequences — UDP and TCP flows of overlapping sites toward the Internet (source NAT)
 * and toward a data center onramp without ARR, replies, and the cases the fast path must hand back (bad
 * checksums, TTL 1, truncation, FIN/RST/SYN, replies on the wrong port, sources outside an onramp's allowed
 * IPs, a draining site's onramp going down, flows expiring) in batches of random size — go through two
 * pipelines built alike, one with the fast path off. Every packet must leave byte for byte the same, with the
 * same next hop, drop reason and batch metadata; counters and flow records must end equal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PacketBatch } from '../../src/common/packet-batch.js';
import { PORT_INTERNET } from '../../src/common/ids.js';
import { Pipeline, type PipelineConfig, type PipelineCounters } from '../../src/dataplane/pipeline.js';
import { NextHopKind } from '../../src/route/route-table.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { buildTcp, buildUdp, parsePacket } from '../../src/wire/build.js';
import { TCP_ACK_FLAG, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG } from '../../src/wire/constants.js';

/** Not 53: UDP flows toward port 53 carry the gateway-work bit (DNS queries are read) and take the general walk. */
const NTP_PORT = 123;
const SITE1 = 1; // allowed sources 10.1.0.0/16 only
const SITE2_A = 2; // site 2, drain policy: its onramps may steer
const SITE2_B = 3;
const DC = 4; // a data center onramp, no ARR: its replies to sites are routed
const PORTS = [PORT_INTERNET, SITE1, SITE2_A, SITE2_B, DC];
const START = 1_000_000;

function config(): PipelineConfig {
  return {
    onramps: [
      { id: SITE1, name: 's1', type: 'wireguard', site: 1, automaticReturnRouting: true, allowedSources: ['10.1.0.0/16'] },
      { id: SITE2_A, name: 's2a', type: 'wireguard', site: 2, automaticReturnRouting: true, preference: 1 },
      { id: SITE2_B, name: 's2b', type: 'wireguard', site: 2, automaticReturnRouting: true, preference: 2 },
      { id: DC, name: 'dc', type: 'wireguard', site: 3, automaticReturnRouting: false },
    ],
    sites: [{ id: 2, failover: { policy: 'drain', drainIdleMs: 5_000 } }],
    routes: [
      { prefix: '0.0.0.0/0', kind: NextHopKind.Internet },
      { prefix: '172.16.0.0/12', kind: NextHopKind.Onramp, port: DC },
      { prefix: '10.1.0.0/16', kind: NextHopKind.Onramp, port: SITE1 },
    ],
    egress: { addresses: ['198.51.100.1', '198.51.100.2'] },
    flows: { capacity4: 64, capacity6: 16 },
    hashSeed: 99,
  };
}

/** A flow of the model: who sends what to whom; the seq numbers of its TCP ends. */
interface Flow {
  site: number;
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  tcp: boolean;
  seqO: number;
  seqR: number;
  /** Handshake progress of 'auto' segments: 0 SYN next, 1 SYN-ACK next, 2 the final ACK, then data. */
  phase: number;
  /** The last forwarded original packet as it left (replies answer it) and where it went. */
  out: { src: number; dst: number; srcPort: number; dstPort: number; hop: number } | null;
}

const MUTATIONS = ['none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'badChecksum', 'ttl1', 'ttl2', 'df', 'truncate', 'wrongPort', 'zeroChecksum', 'outsideSource'] as const;
/** 'auto': the next segment of a well-behaved exchange (the handshake first, then data); the others break it. */
const TCP_KINDS = ['auto', 'auto', 'auto', 'auto', 'auto', 'auto', 'auto', 'auto', 'syn', 'synack', 'ack', 'psh', 'fin', 'rst', 'urg', 'badSeq'] as const;

interface Step {
  flow: number;
  reply: boolean;
  mutation: (typeof MUTATIONS)[number];
  tcpKind: (typeof TCP_KINDS)[number];
  payload: number;
  /** Ends the batch after this packet; advances the clock by `advance` ms; toggles an onramp's health. */
  endBatch: boolean;
  advance: number;
  down: number;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  flow: fc.nat(11),
  reply: fc.boolean(),
  mutation: fc.constantFrom(...MUTATIONS),
  tcpKind: fc.constantFrom(...TCP_KINDS),
  payload: fc.nat(40),
  endBatch: fc.boolean(),
  advance: fc.oneof({ weight: 20, arbitrary: fc.constant(0) }, { weight: 5, arbitrary: fc.nat(3_000) }, { weight: 1, arbitrary: fc.constant(200_000) }),
  down: fc.oneof({ weight: 20, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(SITE2_A, -SITE2_A) }),
});

function makeFlows(): Flow[] {
  const flows: Flow[] = [];
  for (let k = 0; k < 12; k++) {
    // Sites 1 and 2 use the same hosts (overlap); every third flow goes to the data center.
    const site = k % 2 === 0 ? SITE1 : SITE2_A;
    const toDc = k % 3 === 0;
    flows.push({
      site,
      src: parseIpv4(`10.1.0.${1 + (k % 4)}`),
      dst: toDc ? parseIpv4('172.16.0.9') : parseIpv4(`203.0.113.${1 + (k % 5)}`),
      srcPort: 40000 + (k % 6),
      dstPort: toDc ? 443 : NTP_PORT,
      tcp: k % 4 >= 2,
      seqO: 1000 + k,
      seqR: 900_000 + k,
      phase: 0,
      out: null,
    });
  }
  return flows;
}

/** A TCP step of kind 'auto' as the next segment of the exchange: the handshake in order (whatever direction the step drew), then data either way. */
function resolved(f: Flow, s: Step): Step {
  if (!f.tcp || s.tcpKind !== 'auto') return s;
  const phase = f.phase++;
  if (phase === 0) return { ...s, reply: false, tcpKind: 'syn' };
  if (phase === 1) return { ...s, reply: true, tcpKind: 'synack' };
  if (phase === 2) return { ...s, reply: false, tcpKind: 'ack' };
  return { ...s, tcpKind: 'ack' };
}

/** The packet a step (resolved) sends, and its ingress port. */
function packetOf(f: Flow, s: Step): { bytes: Uint8Array; port: number } {
  let src = f.src;
  let dst = f.dst;
  let srcPort = f.srcPort;
  let dstPort = f.dstPort;
  let port = f.site;
  if (s.reply) {
    // Answers the flow as it left; before it left, the untranslated tuple (no flow: dropped either way).
    const o = f.out;
    src = o ? o.dst : f.dst;
    dst = o ? o.src : f.src;
    srcPort = o ? o.dstPort : f.dstPort;
    dstPort = o ? o.srcPort : f.srcPort;
    port = o ? o.hop : PORT_INTERNET;
  }
  if (s.mutation === 'wrongPort') port = PORTS[(PORTS.indexOf(port) + 1 + (s.payload % 4)) % PORTS.length];
  if (s.mutation === 'outsideSource' && !s.reply) src = parseIpv4('10.9.0.1');
  const ip = { src, dst, ttl: s.mutation === 'ttl1' ? 1 : s.mutation === 'ttl2' ? 2 : 64, dontFragment: s.mutation === 'df', id: 7 + s.payload };
  const payload = new Uint8Array(s.payload).fill(0x5a);
  let bytes: Uint8Array;
  if (f.tcp) {
    let flags = TCP_ACK_FLAG;
    let seq = s.reply ? f.seqR : f.seqO;
    const ack = s.reply ? f.seqO : f.seqR;
    const kind = s.tcpKind;
    if (kind === 'syn') flags = TCP_SYN;
    else if (kind === 'synack') flags = TCP_SYN | TCP_ACK_FLAG;
    else if (kind === 'psh') flags = TCP_ACK_FLAG | TCP_PSH;
    else if (kind === 'fin') flags = TCP_ACK_FLAG | TCP_FIN;
    else if (kind === 'rst') flags = TCP_RST | TCP_ACK_FLAG;
    else if (kind === 'urg') flags = TCP_ACK_FLAG | TCP_URG;
    else if (kind === 'badSeq') seq = (seq + 0x40000000) >>> 0;
    const syn = (flags & TCP_SYN) !== 0;
    if (syn) seq = s.reply ? 900_000 : 1000;
    bytes = buildTcp(ip, { srcPort, dstPort, seq, ack: syn && !s.reply ? 0 : ack, flags, window: 8192, options: syn ? { mss: 1460, windowScale: 2 } : undefined, payload: syn ? undefined : payload });
    // The model's ends advance as if every segment arrived (a refused one desynchronises it: fine, both pipelines see the same).
    const advance = (syn ? 1 : s.payload) + ((flags & TCP_FIN) !== 0 ? 1 : 0);
    if (s.reply) f.seqR = (syn ? 900_001 : f.seqR + advance) >>> 0;
    else f.seqO = (syn ? 1001 : f.seqO + advance) >>> 0;
  } else {
    bytes = buildUdp(ip, { srcPort, dstPort, payload, zeroChecksum: s.mutation === 'zeroChecksum' });
  }
  if (s.mutation === 'badChecksum') bytes[10] ^= 0x01;
  if (s.mutation === 'truncate') bytes = bytes.slice(0, Math.max(20, bytes.length - 1 - (s.payload % 12)));
  return { bytes, port };
}

function countersOf(c: PipelineCounters): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) if (k !== 'fastPathPackets') out[k] = v instanceof Float64Array ? Array.from(v) : v;
  return out;
}

function sameBatch(a: PacketBatch, b: PacketBatch, where: string): void {
  assert.equal(a.count, b.count, `${where}: count`);
  for (let i = 0; i < a.count; i++) {
    const at = `${where}, packet ${i}`;
    assert.deepEqual(a.packet(i), b.packet(i), `${at}: bytes`);
    assert.equal(a.nextHop[i], b.nextHop[i], `${at}: next hop`);
    assert.equal(a.drop[i], b.drop[i], `${at}: drop`);
    for (const field of ['family', 'l3Offset', 'l4Offset', 'protocol', 'srcPort', 'dstPort', 'tcpFlags', 'mssOffset', 'flowNode'] as const) {
      assert.equal(a[field][i], b[field][i], `${at}: metadata ${field}`);
    }
  }
}

function run(steps: Step[]): number {
  const fast = new Pipeline(config());
  const slow = new Pipeline(config());
  slow.fastPath = false;
  const flows = makeFlows();
  let now = START;
  const a = new PacketBatch(16, 256, 0);
  const b = new PacketBatch(16, 256, 0);
  const sent: Flow[] = [];
  const flush = (where: string): void => {
    fast.process(a, now);
    slow.process(b, now);
    sameBatch(a, b, where);
    sameBatch(fast.generated, slow.generated, `${where} (generated)`);
    for (let i = 0; i < a.count; i++) {
      const f = sent[i];
      const p = parsePacket(a.packet(i));
      // An original packet that left: replies answer it as it left.
      if (a.nextHop[i] !== 0xffff && !isReply(f, p) && a.drop[i] === 0) f.out = { src: parseIpv4(p.src), dst: parseIpv4(p.dst), srcPort: p.srcPort, dstPort: p.dstPort, hop: a.nextHop[i] };
    }
    a.clear();
    b.clear();
    sent.length = 0;
  };
  const isReply = (f: Flow, p: ReturnType<typeof parsePacket>): boolean => f.out !== null && parseIpv4(p.dst) === f.src && p.dstPort === f.srcPort;
  steps.forEach((step, n) => {
    const f = flows[step.flow];
    const s = resolved(f, step);
    const { bytes, port } = packetOf(f, s);
    a.push(bytes, 0, bytes.length, port);
    b.push(bytes, 0, bytes.length, port);
    sent.push(s.reply ? { ...f, out: null } : f);
    if (s.endBatch || a.count === a.capacity) flush(`step ${n}`);
    if (s.down !== 0) {
      fast.setOnrampUp(Math.abs(s.down), s.down > 0 ? false : true);
      slow.setOnrampUp(Math.abs(s.down), s.down > 0 ? false : true);
    }
    if (s.advance !== 0 && a.count === 0) {
      now += s.advance;
      assert.equal(fast.expire(now, 1 << 20), slow.expire(now, 1 << 20), `step ${n}: expired`);
    }
  });
  if (a.count > 0) flush('last batch');
  assert.deepEqual(countersOf(fast.counters), countersOf(slow.counters), 'counters');
  assert.deepEqual(fast.flows4.records, slow.flows4.records, 'flow records, byte for byte');
  assert.equal(slow.counters.fastPathPackets, 0);
  return fast.counters.fastPathPackets;
}

test('random packet sequences: the fast path leaves every packet, counter and flow record as the general walk does', () => {
  let fastTotal = 0;
  fc.assert(
    fc.property(fc.array(stepArb, { minLength: 60, maxLength: 250 }), (steps) => {
      fastTotal += run(steps);
    }),
    { numRuns: 100 },
  );
  assert.ok(fastTotal > 1000, `the fast path took ${fastTotal} packets: the comparison must exercise it`);
});

test('a steady UDP and TCP exchange takes the fast path after setup, and the general walk agrees', () => {
  const steps: Step[] = [];
  const plain = { mutation: 'none' as const, payload: 10, endBatch: false, advance: 0, down: 0 };
  // Flows 2 (TCP, Internet) and 1 (UDP, Internet): handshake, then data both ways.
  steps.push({ ...plain, flow: 2, reply: false, tcpKind: 'syn', endBatch: true });
  steps.push({ ...plain, flow: 2, reply: true, tcpKind: 'synack', endBatch: true });
  steps.push({ ...plain, flow: 2, reply: false, tcpKind: 'ack', endBatch: true });
  steps.push({ ...plain, flow: 1, reply: false, tcpKind: 'ack', endBatch: true });
  for (let i = 0; i < 20; i++) {
    steps.push({ ...plain, flow: 2, reply: i % 2 === 1, tcpKind: i % 3 === 0 ? 'psh' : 'ack' });
    steps.push({ ...plain, flow: 1, reply: i % 2 === 1, tcpKind: 'ack', endBatch: i % 4 === 3 });
  }
  const fastPackets = run(steps);
  assert.ok(fastPackets >= 36, `fast path took ${fastPackets} of the 40 established packets`);
});
