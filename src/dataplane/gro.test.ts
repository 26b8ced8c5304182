/**
 * The coalescer against a slow, obviously correct oracle: every super-packet it builds, cut again by the software
 * segmenter (src/wire/gso.ts, itself tested against naive per-segment builds), gives back the segments it was made
 * of byte for byte, and every flow's packets come out in the order they went in. Plus a fixture per rule that must
 * keep two segments apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PacketBatch, VNET_CSUM_OFFSET, VNET_CSUM_START, VNET_F_NEEDS_CSUM, VNET_FLAGS, VNET_GSO_ECN, VNET_GSO_SIZE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_TYPE, VNET_HDR_LEN, VNET_WORDS } from '../common/packet-batch.js';
import { buildTcp, buildUdp, ipFamily, type IpHeader, type Ipv4Header, type Ipv6Header, type TcpSegment } from '../wire/build.js';
import { read16, write16 } from '../wire/bytes.js';
import { foldChecksum, onesComplementSum } from '../wire/checksum.js';
import { TCP_ACK_FLAG, TCP_CHECKSUM, TCP_CWR, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG } from '../wire/constants.js';
import { gsoHeaderLength, gsoSegmentCount, writeSegment } from '../wire/gso.js';
import { GRO_MAX_FLOWS, GroCoalescer } from './gro.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A batch holding `packets`, and the identity index list. */
function batchOf(packets: Uint8Array[]): { batch: PacketBatch; idx: Uint32Array } {
  const batch = new PacketBatch(Math.max(1, packets.length));
  for (const p of packets) assert.ok(batch.push(p, 0, p.length, 1) >= 0);
  return { batch, idx: Uint32Array.from(packets.keys()) };
}

/** The entries as packets on the wire after the kernel segments them: super-packets cut by gso.ts, singles as they are. */
function expand(gro: GroCoalescer, batch: PacketBatch): Uint8Array[][] {
  const out: Uint8Array[][] = [];
  for (let e = 0; e < gro.entries; e++) {
    if (gro.entryArena[e] === 0) {
      out.push([batch.packet(gro.entryIndex[e]).slice()]);
      continue;
    }
    const a = gro.entryIndex[e];
    const arena = gro.arena;
    const v = a * VNET_WORDS;
    const off = arena.offset[a];
    const len = arena.length[a];
    const type = arena.vnet[v + VNET_GSO_TYPE];
    const size = arena.vnet[v + VNET_GSO_SIZE];
    const l4 = arena.vnet[v + VNET_CSUM_START];
    assert.equal(arena.vnet[v + VNET_FLAGS], VNET_F_NEEDS_CSUM);
    assert.equal(arena.vnet[v + VNET_CSUM_OFFSET], TCP_CHECKSUM);
    const header = gsoHeaderLength(arena.data, off, len, type, size, l4);
    assert.ok(header > 0, 'a valid super-packet');
    assert.equal(arena.vnet[v + VNET_HDR_LEN], header);
    // The checksum field is the pseudo-header sum over the whole TCP length, as the kernel's TCP leaves it for TSO.
    const partialSum = read16(arena.data, off + l4 + TCP_CHECKSUM);
    const scratch = new Uint8Array(len);
    scratch.set(arena.data.subarray(off, off + len));
    write16(scratch, l4 + TCP_CHECKSUM, 0);
    const v4 = scratch[0] >>> 4 === 4;
    const addrs = v4 ? [12, 20] : [8, 40];
    const l4Length = len - l4;
    const pseudo = onesComplementSum(scratch, addrs[0], addrs[1], 0) + 6 + (l4Length >>> 16) + (l4Length & 0xffff);
    assert.equal(partialSum, ~foldChecksum(pseudo) & 0xffff, 'partial checksum');
    const n = gsoSegmentCount(len, header, size);
    assert.ok(n >= 2, 'a super-packet holds two segments at least');
    const segs: Uint8Array[] = [];
    const dst = new Uint8Array(header + size);
    for (let k = 0; k < n; k++) segs.push(dst.slice(0, writeSegment(arena.data, off, len, type, size, l4, header, k, dst, 0)));
    out.push(segs);
  }
  return out;
}

/** The coalescer's output, expanded: asserts it is the input in per-flow order and returns the entries. */
function checkAgainstOracle(packets: Uint8Array[], flowOf: (p: Uint8Array) => string): Uint8Array[][] {
  const { batch, idx } = batchOf(packets);
  const gro = new GroCoalescer(packets.length);
  const supers = gro.coalesce(batch, idx, packets.length);
  const entries = supers === 0 ? packets.map((p) => [p]) : expand(gro, batch);
  if (supers === 0) assert.equal(gro.entries, packets.length, 'nothing merged: one entry per packet');
  const flat = entries.flat();
  assert.equal(flat.length, packets.length, 'as many packets out as in');
  assert.deepEqual(flat.map(hex).sort(), packets.map(hex).sort(), 'the same packets, byte for byte');
  const perFlow = (list: Uint8Array[]): Map<string, string[]> => {
    const m = new Map<string, string[]>();
    for (const p of list) {
      const f = flowOf(p);
      if (!m.has(f)) m.set(f, []);
      m.get(f)!.push(hex(p));
    }
    return m;
  };
  assert.deepEqual(perFlow(flat), perFlow(packets), 'each flow in its order');
  assert.equal(gro.superPackets, supers);
  assert.equal(gro.segments, entries.filter((e) => e.length > 1).reduce((s, e) => s + e.length, 0));
  return entries;
}

/** Flow key for the oracle: family, addresses, protocol and ports (UDP/TCP), from the bytes. */
function flowKey(p: Uint8Array): string {
  if (p[0] >>> 4 === 4) {
    const l4 = (p[0] & 0x0f) * 4;
    return `4 ${hex(p.subarray(12, 20))} ${p[9]} ${hex(p.subarray(l4, l4 + 4))}`;
  }
  return `6 ${hex(p.subarray(8, 40))} ${p[6]} ${hex(p.subarray(40, 44))}`;
}

/** n segments of one TCP stream, as a sender's TSO would cut them (ids and sequence numbers counting up). */
function stream(ip: IpHeader, tcp: TcpSegment, mss: number, payloadLength: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const n = Math.max(1, Math.ceil(payloadLength / mss));
  for (let k = 0; k < n; k++) {
    const size = Math.min(mss, payloadLength - k * mss);
    const payload = Uint8Array.from({ length: size }, (_, j) => (k * 31 + j * 7) & 0xff);
    let flags = tcp.flags ?? TCP_ACK_FLAG;
    if (k !== n - 1) flags &= ~(TCP_FIN | TCP_PSH);
    if (k !== 0) flags &= ~TCP_CWR;
    const segIp = ipFamily(ip) === 6 ? ip : { ...(ip as Ipv4Header), id: (((ip as Ipv4Header).id ?? 0) + k) & 0xffff };
    out.push(buildTcp(segIp, { ...tcp, flags, seq: ((tcp.seq ?? 0) + k * mss) >>> 0, payload }));
  }
  return out;
}

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const v4Arb: fc.Arbitrary<IpHeader> = fc.record({
  family: fc.constant(4 as const),
  src: fc.constantFrom('10.0.1.10', '10.0.1.11'),
  dst: fc.constantFrom('203.0.113.10', '198.51.100.7'),
  id: u16,
  ttl: fc.constantFrom(63, 64),
  dontFragment: fc.boolean(),
});
const v6Arb: fc.Arbitrary<IpHeader> = fc.record({
  family: fc.constant(6 as const),
  src: fc.constantFrom('fd00::10', 'fd00::11'),
  dst: fc.constantFrom('2001:db8::1', '2001:db8::2'),
  flowLabel: fc.constantFrom(0, 0x12345),
});
const streamArb = fc.record({
  ip: fc.oneof(v4Arb, v6Arb),
  tcp: fc.record({
    srcPort: fc.constantFrom(40000, 40001),
    dstPort: fc.constant(5201),
    seq: u32,
    ack: u32,
    flags: fc.constantFrom(TCP_ACK_FLAG, TCP_ACK_FLAG | TCP_PSH, TCP_ACK_FLAG | TCP_CWR, TCP_ACK_FLAG | TCP_FIN | TCP_PSH),
    window: u16,
    options: fc.option(fc.record({ timestamps: fc.record({ value: u32, echo: u32 }) }), { nil: undefined }),
  }),
  mss: fc.integer({ min: 1, max: 1400 }),
  payload: fc.integer({ min: 0, max: 12_000 }),
});

test('oracle: interleaved streams, ACKs and UDP come out as the same packets in per-flow order; super-packets re-segment byte for byte', () => {
  let merged = 0;
  fc.assert(
    fc.property(
      fc.array(streamArb, { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      fc.nat({ max: 6 }),
      (streams, picks, extras) => {
        const queues = streams.map((s) => stream(s.ip, s.tcp, s.mss, s.payload));
        for (let e = 0; e < extras; e++) queues.push([buildUdp({ src: '10.0.1.10', dst: '203.0.113.10', id: e }, { srcPort: 53, dstPort: 53, payload: new Uint8Array(e * 10) })]);
        // Interleave: each pick takes the next packet of a queue; the rest in queue order.
        const packets: Uint8Array[] = [];
        for (const p of picks) {
          const q = queues[p % queues.length];
          if (q.length > 0) packets.push(q.shift()!);
        }
        for (const q of queues) packets.push(...q);
        if (packets.length > 0) merged += checkAgainstOracle(packets, flowKey).filter((e) => e.length > 1).length;
      },
    ),
    { numRuns: 300 },
  );
  assert.ok(merged > 100, `the runs built super-packets (${merged})`);
});

test('one flow of full segments becomes one super-packet per 64 KiB (IPv4 and IPv6), gso_size the MSS', () => {
  for (const ip of [{ src: '10.0.1.10', dst: '203.0.113.10', id: 100, dontFragment: true } as Ipv4Header, { src: 'fd00::10', dst: '2001:db8::1' } as Ipv6Header]) {
    const packets = stream(ip, { srcPort: 40000, dstPort: 5201, seq: 1, ack: 2, window: 500, options: { timestamps: { value: 9, echo: 8 } } }, 1388, 1388 * 100);
    const entries = checkAgainstOracle(packets, flowKey);
    // 64 KiB holds 47 segments of 1,388 bytes (and the headers): 100 make 3 super-packets.
    assert.deepEqual(entries.map((e) => e.length), [47, 47, 6]);
    const { batch, idx } = batchOf(packets);
    const gro = new GroCoalescer(packets.length);
    gro.coalesce(batch, idx, packets.length);
    assert.equal(gro.arena.vnet[VNET_GSO_SIZE], 1388);
    assert.equal(gro.arena.vnet[VNET_GSO_TYPE], ipFamily(ip) === 6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4);
    assert.ok(gro.arena.length[0] <= 0xffff);
  }
});

test('CWR on the first segment: gso_type carries ECN; FIN|PSH of the last stay on the super-packet', () => {
  const packets = stream({ src: '10.0.1.10', dst: '203.0.113.10', id: 7 }, { srcPort: 1, dstPort: 2, flags: TCP_ACK_FLAG | TCP_CWR | TCP_PSH | TCP_FIN }, 100, 250);
  const entries = checkAgainstOracle(packets, flowKey);
  assert.deepEqual(entries.map((e) => e.length), [3]);
  const { batch, idx } = batchOf(packets);
  const gro = new GroCoalescer(3);
  gro.coalesce(batch, idx, 3);
  assert.equal(gro.arena.vnet[VNET_GSO_TYPE], VNET_GSO_TCPV4 | VNET_GSO_ECN);
  assert.equal(gro.arena.data[gro.arena.offset[0] + 20 + 13], TCP_ACK_FLAG | TCP_CWR | TCP_PSH | TCP_FIN);
});

// --- must not merge: two (or three) segments that would merge, and one thing changed ------------------------

const BASE_IP: Ipv4Header = { src: '10.0.1.10', dst: '203.0.113.10', id: 1000, ttl: 63, tos: 0, dontFragment: true };
const BASE_TCP: TcpSegment = { srcPort: 40000, dstPort: 5201, seq: 5000, ack: 77, window: 1000, options: { timestamps: { value: 1, echo: 2 } } };
const MSS = 100;
const pay = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill);
/** Segment k of the base stream, with changes. */
function seg(k: number, ip: Partial<Ipv4Header> = {}, tcp: Partial<TcpSegment> = {}, size = MSS): Uint8Array {
  return buildTcp({ ...BASE_IP, id: (BASE_IP.id! + k) & 0xffff, ...ip }, { ...BASE_TCP, seq: BASE_TCP.seq! + k * MSS, payload: pay(size, k + 1), ...tcp });
}
function v6seg(k: number, ip: Partial<Ipv6Header> = {}, tcp: Partial<TcpSegment> = {}): Uint8Array {
  return buildTcp({ src: 'fd00::10', dst: '2001:db8::1', hopLimit: 64, flowLabel: 5, ...ip }, { ...BASE_TCP, seq: BASE_TCP.seq! + k * MSS, payload: pay(MSS, k + 1), ...tcp });
}
function supersOf(packets: Uint8Array[]): number[] {
  return checkAgainstOracle(packets, flowKey).map((e) => e.length);
}

test('fixture: the base pair merges (IPv4 and IPv6)', () => {
  assert.deepEqual(supersOf([seg(0), seg(1)]), [2]);
  assert.deepEqual(supersOf([v6seg(0), v6seg(1)]), [2]);
});

const apart: Array<[string, () => Uint8Array[]]> = [
  ['another source port', () => [seg(0), seg(1, {}, { srcPort: 40001 })]],
  ['another destination address', () => [seg(0), seg(1, { dst: '203.0.113.11' })]],
  ['another TTL', () => [seg(0), seg(1, { ttl: 62 })]],
  ['another TOS (ECN CE)', () => [seg(0), seg(1, { tos: 3 })]],
  ['DF differs', () => [seg(0), seg(1, { dontFragment: false })]],
  ['IP id not the next one', () => [seg(0), seg(1, { id: 1002 })]],
  ['IP id fixed under DF (virtio would renumber it)', () => [seg(0), seg(1, { id: 1000 })]],
  ['IPv4 options', () => [seg(0, { options: Uint8Array.of(1, 1, 1, 0) }), seg(1, { options: Uint8Array.of(1, 1, 1, 0) })]],
  ['a fragment', () => [seg(0, { dontFragment: false }), seg(1, { dontFragment: false, moreFragments: true })]],
  ['another ACK number', () => [seg(0), seg(1, {}, { ack: 78 })]],
  ['another window', () => [seg(0), seg(1, {}, { window: 999 })]],
  ['another timestamp', () => [seg(0), seg(1, {}, { options: { timestamps: { value: 2, echo: 2 } } })]],
  ['options of another length', () => [seg(0), seg(1, {}, { options: {} })]],
  ['a sequence gap', () => [seg(0), seg(1, {}, { seq: BASE_TCP.seq! + MSS + 1 })]],
  ['a retransmission (same sequence number)', () => [seg(0), seg(0)]],
  ['the second longer than the first', () => [seg(0, {}, {}, MSS - 1), seg(1, {}, { seq: BASE_TCP.seq! + MSS - 1 })]],
  ['a pure ACK (no payload)', () => [seg(0), seg(1, {}, {}, 0)]],
  ['the first without payload', () => [seg(0, {}, {}, 0), seg(0)]],
  ['SYN', () => [seg(0, {}, { flags: TCP_SYN | TCP_ACK_FLAG }), seg(1, {}, { flags: TCP_SYN | TCP_ACK_FLAG })]],
  ['RST on the second', () => [seg(0), seg(1, {}, { flags: TCP_RST | TCP_ACK_FLAG })]],
  ['URG on both', () => [seg(0, {}, { flags: TCP_URG | TCP_ACK_FLAG }), seg(1, {}, { flags: TCP_URG | TCP_ACK_FLAG })]],
  ['CWR on the second', () => [seg(0), seg(1, {}, { flags: TCP_CWR | TCP_ACK_FLAG })]],
  ['PSH on the first (it ends the super-packet at once)', () => [seg(0, {}, { flags: TCP_PSH | TCP_ACK_FLAG }), seg(1)]],
  ['FIN on the first', () => [seg(0, {}, { flags: TCP_FIN | TCP_ACK_FLAG }), seg(1)]],
  ['IPv6: another flow label', () => [v6seg(0), v6seg(1, { flowLabel: 6 })]],
  ['IPv6: another traffic class', () => [v6seg(0), v6seg(1, { trafficClass: 4 })]],
  ['IPv6: another hop limit', () => [v6seg(0), v6seg(1, { hopLimit: 63 })]],
  ['IPv6: an extension header', () => [v6seg(0, { extensions: [{ type: 'destination' }] }), v6seg(1, { extensions: [{ type: 'destination' }] })]],
  ['a bad TCP checksum on the second', () => {
    const b = seg(1);
    b[20 + TCP_CHECKSUM] ^= 0x40;
    return [seg(0), b];
  }],
  ['a bad TCP checksum on the first', () => {
    const a = seg(0);
    a[20 + TCP_CHECKSUM] ^= 0x40;
    return [a, seg(1)];
  }],
  ['a bad IPv4 header checksum', () => {
    const b = seg(1);
    b[10] ^= 0x01;
    return [seg(0), b];
  }],
  ['an IPv4 total length shorter than the packet', () => {
    const b = new Uint8Array(seg(1).length + 4);
    b.set(seg(1));
    return [seg(0), b];
  }],
];
for (const [name, make] of apart) {
  test(`fixture, must not merge: ${name}`, () => {
    const packets = make();
    const { batch, idx } = batchOf(packets);
    const gro = new GroCoalescer(packets.length);
    assert.equal(gro.coalesce(batch, idx, packets.length), 0);
    checkAgainstOracle(packets, flowKey);
  });
}

test('fixture: a shorter segment, or PSH, ends the super-packet with it; the next starts anew', () => {
  assert.deepEqual(supersOf([seg(0), seg(1, {}, {}, 50), seg(1, {}, { seq: BASE_TCP.seq! + MSS + 50 }, 100)]).slice(0, 1), [2]);
  assert.deepEqual(supersOf([seg(0), seg(1, {}, { flags: TCP_PSH | TCP_ACK_FLAG }), seg(2), seg(3)]), [2, 2]);
});

test('fixture: more than 64 KiB is cut before the total length would pass 65,535', () => {
  const big = stream(BASE_IP, BASE_TCP, 1448, 1448 * 46);
  // 46 × 1,448 + 20 + 32 = 66,660: the 46th does not fit.
  assert.deepEqual(supersOf(big), [45, 1]);
});

test('fixture: a packet of the flow that cannot merge closes its super-packet (order kept); other flows stay open', () => {
  const other = (k: number): Uint8Array => seg(k, { src: '10.0.1.11' });
  const ack = seg(2, {}, {}, 0);
  const out = supersOf([seg(0), other(0), seg(1), other(1), ack, seg(2), other(2), seg(3)]);
  // Flow A: [0 1] | ack | [2 3]; flow B: [0 1 2] stays open across A's ACK.
  assert.deepEqual(out, [2, 3, 1, 2]);
});

test(`fixture: at most ${GRO_MAX_FLOWS} flows open; the oldest closes first`, () => {
  const interleaved = (flows: number): Uint8Array[] => {
    const packets: Uint8Array[] = [];
    for (let k = 0; k < 2; k++) for (let f = 0; f < flows; f++) packets.push(seg(k, { src: `10.0.2.${f}` }));
    return packets;
  };
  assert.deepEqual(supersOf(interleaved(GRO_MAX_FLOWS)), new Array(GRO_MAX_FLOWS).fill(2));
  // One flow more: each new one closes the oldest before its second segment comes (Linux's list thrashes alike).
  assert.deepEqual(supersOf(interleaved(GRO_MAX_FLOWS + 1)), new Array(2 * (GRO_MAX_FLOWS + 1)).fill(1));
});

test('packets already offloaded (a super-packet read from a TUN, a partial checksum) are passed as they are and close open flows', () => {
  const packets = [seg(0), seg(1), seg(2), seg(3)];
  const { batch, idx } = batchOf(packets);
  batch.vnet[2 * VNET_WORDS + VNET_FLAGS] = VNET_F_NEEDS_CSUM;
  const gro = new GroCoalescer(4);
  assert.equal(gro.coalesce(batch, idx, 4), 1);
  assert.deepEqual([...gro.entryArena.subarray(0, gro.entries)], [1, 0, 0]);
  assert.deepEqual([...gro.entryIndex.subarray(1, gro.entries)], [2, 3]);
});

test('indices pick a subset of the batch; the coalescer allocates nothing visible and can run again', () => {
  const packets = [seg(0), buildUdp(BASE_IP, { srcPort: 1, dstPort: 2 }), seg(1), seg(2)];
  const { batch } = batchOf(packets);
  const gro = new GroCoalescer(8);
  for (let round = 0; round < 3; round++) {
    assert.equal(gro.coalesce(batch, Uint32Array.of(0, 2, 3), 3), 1);
    assert.equal(gro.entries, 1);
    assert.equal(gro.segments, 3);
  }
  assert.equal(gro.coalesce(batch, Uint32Array.of(1), 1), 0);
  // Another batch, then the first again: each is read through its own views.
  const other = batchOf([seg(0, { src: '10.0.1.12' }), seg(1, { src: '10.0.1.12' })]);
  for (const [b, i, src] of [[other.batch, other.idx, 0x0a00010c], [batch, Uint32Array.of(0, 2, 3), 0x0a00010a]] as const) {
    assert.equal(gro.coalesce(b, i, i.length), 1);
    assert.equal(read16(gro.arena.data, gro.arena.offset[0] + 14), src & 0xffff, 'the super-packet of this batch');
  }
  assert.throws(() => gro.coalesce(batch, new Uint32Array(9), 9), /exceed the capacity/);
});
