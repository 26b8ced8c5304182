/**
 * IP ids after NAT never collide (issue 13, scope item 2; RFC 6864 section 4, RFC 4963): two overlapping sites'
 * 10.0.1.10 sending fragmented datagrams with the same original id to one server present different
 * (source, destination, protocol, id) there, and all fragments of one datagram agree. The receiver is the slow
 * reassembler of test/support/reassembly.ts, keyed the way a real one is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Drop } from '../../src/common/drop-reasons.js';
import { explain } from '../../src/dataplane/explain.js';
import { buildIcmpError, buildUdp, fragmentIpv4 } from '../../src/wire/build.js';
import { IPV4_ID } from '../../src/wire/constants.js';
import { PipelineRig, type Sent } from '../support/pipeline-rig.js';
import { reassemble, reassemblyKey } from '../support/reassembly.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, INTERNET, POOL, SERVER, twoSites } from '../support/topology.js';

const UDP = 17;
const SERVER_PORT = 9999;
const SITE_PORT = 40000;
/** Small enough that a 1,000-byte datagram is three fragments. */
const FRAGMENT_MTU = 400;
/** ICMP destination unreachable, port unreachable (RFC 792). */
const ICMP_UNREACHABLE = 3;
const ICMP_PORT_UNREACHABLE = 3;
/** Where the quoted IPv4 header starts in an ICMP error (20-byte outer header, 8-byte ICMP header). */
const QUOTE_AT = 28;

/** A UDP datagram from the site host, payload `marker` repeated, cut into fragments of at most FRAGMENT_MTU. */
function datagram(dst: string, id: number, marker: number, length = 1000, dontFragment = false): Uint8Array[] {
  const payload = new Uint8Array(length).fill(marker);
  return fragmentIpv4(buildUdp({ src: HOST, dst, id, dontFragment }, { srcPort: SITE_PORT, dstPort: SERVER_PORT, payload }), FRAGMENT_MTU);
}

/** Sends one packet; returns what left the edge toward anywhere: the packet itself and any fragments it released. */
function pass(edge: PipelineRig, port: number, packet: Uint8Array): Sent[] {
  const sent = edge.send(port, packet);
  assert.ok(sent.hop >= 0 || (sent.hop === -1 && sent.drop === Drop.None), `dropped: ${sent.drop}`);
  return [...(sent.hop >= 0 ? [sent] : []), ...edge.generated()];
}

/** Groups what a server received by the receiver's reassembly key. */
function byKey(received: Sent[]): Map<string, Uint8Array[]> {
  const queues = new Map<string, Uint8Array[]>();
  for (const r of received) queues.set(reassemblyKey(r.bytes), [...(queues.get(reassemblyKey(r.bytes)) ?? []), r.bytes]);
  return queues;
}

const idOf = (bytes: Uint8Array) => (bytes[IPV4_ID] << 8) | bytes[IPV4_ID + 1];

for (const [where, dst, hop] of [['the Internet server (source NAT)', SERVER, INTERNET], ['the data-center server (no NAT, ARR zones)', DC_SERVER, DC_ONRAMP]] as const) {
  test(`two sites' 10.0.1.10, same original id, fragments interleaved, to ${where}: two reassembly queues, each datagram whole`, () => {
    const edge = new PipelineRig(twoSites());
    const a = datagram(dst, 0x4242, 0xaa);
    const b = datagram(dst, 0x4242, 0xbb);
    assert.equal(a.length, 3);
    const received: Sent[] = [];
    for (let i = 0; i < 3; i++) received.push(...pass(edge, A_PRIMARY, a[i]), ...pass(edge, B_PRIMARY, b[i]));
    assert.deepEqual(received.map((r) => r.hop), [hop, hop, hop, hop, hop, hop]);
    assert.equal(new Set(received.map((r) => r.parsed.src)).size, 1, 'both sites arrive from one source address');
    const queues = byKey(received);
    assert.equal(queues.size, 2, `one reassembly queue per datagram: ${[...queues.keys()].join(', ')}`);
    const payloads = [...queues.values()].map((q) => {
      assert.equal(q.length, 3, 'all three fragments of a datagram carry the same id');
      const whole = reassemble(q);
      assert.ok(whole.checksumOk, 'the UDP checksum of the reassembled datagram verifies');
      return whole.payload[0];
    });
    assert.deepEqual(payloads.sort(), [0xaa, 0xbb]);
  });
}

test('out of order: later fragments before the first wait, then leave with the id the first fragment got', () => {
  const edge = new PipelineRig(twoSites());
  const [first, middle, last] = datagram(SERVER, 7, 0x11);
  assert.deepEqual(pass(edge, A_PRIMARY, last), [], 'held');
  assert.deepEqual(pass(edge, A_PRIMARY, middle), [], 'held');
  const out = pass(edge, A_PRIMARY, first);
  assert.equal(out.length, 3, 'the first fragment and the two it released');
  assert.equal(new Set(out.map((r) => reassemblyKey(r.bytes))).size, 1);
  assert.notEqual(idOf(out[0].bytes), 7, 'the edge numbered it (seeded counters start at random values)');
  assert.ok(reassemble(out.map((r) => r.bytes)).checksumOk);
});

test('a duplicated first fragment keeps the id its datagram was given, so every fragment still agrees', () => {
  const edge = new PipelineRig(twoSites());
  const [first, middle, last] = datagram(SERVER, 99, 0x22);
  const ids = [first, middle, first, last].map((f) => idOf(pass(edge, A_PRIMARY, f)[0].bytes));
  assert.equal(new Set(ids).size, 1, `ids ${ids.join(', ')}`);
  // A new datagram of the same flow (next original id) takes the counter's next value.
  assert.equal(idOf(pass(edge, A_PRIMARY, datagram(SERVER, 100, 0x23)[0])[0].bytes), (ids[0] + 1) & 0xffff);
});

test('what is renumbered: non-atomic datagrams toward a shared source; DF-set ones, replies and same-zone flows keep their ids', () => {
  const edge = new PipelineRig(twoSites());
  const whole = (id: number, dontFragment: boolean, dst = SERVER) => buildUdp({ src: HOST, dst, id, dontFragment }, { srcPort: SITE_PORT, dstPort: SERVER_PORT });
  const atomic = edge.send(A_PRIMARY, whole(1234, true));
  assert.equal(atomic.parsed.fragmentId, 1234, 'atomic (DF set, not a fragment): its id means nothing (RFC 6864 section 4.1) and is kept');
  const plain = edge.send(A_PRIMARY, whole(1234, false));
  const plain2 = edge.send(A_PRIMARY, whole(1234, false));
  assert.equal(plain2.parsed.fragmentId, (plain.parsed.fragmentId + 1) & 0xffff, 'DF clear: it may be fragmented later, so it is numbered');
  // The server's reply: its ids are already unique per (server, pool address); the site gets a subset.
  const reply = edge.send(INTERNET, buildUdp({ src: SERVER, dst: POOL, id: 555 }, { srcPort: SERVER_PORT, dstPort: plain.parsed.srcPort }));
  assert.equal(reply.hop, A_PRIMARY);
  assert.equal(reply.parsed.fragmentId, 555);
  // Without ARR both sites share the global zone with the (ARR-off) data center: nothing is shared that was not.
  const classic = new PipelineRig(twoSites({ arr: false }));
  assert.equal(classic.send(A_PRIMARY, whole(77, false, DC_SERVER)).parsed.fragmentId, 77);
  assert.notEqual(classic.send(A_PRIMARY, whole(77, false, SERVER)).parsed.fragmentId, 77, 'toward the pool it is numbered anyway');
  // Explain says so.
  const e = explain(edge.pipeline, { onramp: B_PRIMARY, protocol: UDP, src: HOST, dst: SERVER, srcPort: 1, dstPort: 2 });
  assert.ok(e.trail.some((line) => line.startsWith('IPv4 ids:')), e.trail.join('\n'));
});

test('hairpin: both directions leave from a pool address, so both are numbered by the edge', () => {
  const edge = new PipelineRig(twoSites());
  const B_HOST = '10.0.1.20';
  const a = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 6000, dstPort: 3478 }));
  const b = edge.send(B_PRIMARY, buildUdp({ src: B_HOST, dst: SERVER }, { srcPort: 7000, dstPort: 3478 }));
  const bToA = () => edge.send(B_PRIMARY, buildUdp({ src: B_HOST, dst: POOL, id: 1 }, { srcPort: 7000, dstPort: a.parsed.srcPort }));
  const aToB = () => edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: POOL, id: 2 }, { srcPort: 6000, dstPort: b.parsed.srcPort }));
  assert.equal(bToA().drop, Drop.HairpinFiltered, 'A has not contacted B yet (RFC 4787 REQ-8): B\'s hairpin flow is set up, held back');
  // A's packets are the reply direction of B's hairpin flow; B's the original direction. Same original id twice:
  // numbered by the edge means two consecutive counter values, kept means the same id twice.
  const replies = [aToB(), aToB()];
  const originals = [bToA(), bToA()];
  for (const [sent, hop] of [[replies, B_PRIMARY], [originals, A_PRIMARY]] as const) {
    assert.deepEqual(sent.map((r) => [r.hop, r.parsed.src]), [[hop, POOL], [hop, POOL]]);
    assert.equal(sent[1].parsed.fragmentId, (sent[0].parsed.fragmentId + 1) & 0xffff);
  }
});

test('ICMP errors: the quoted header keeps the id the datagram left with (as Linux\'s NAT does); addresses and ports are translated back', () => {
  const edge = new PipelineRig(twoSites());
  const sent = edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER, id: 4321 }, { srcPort: SITE_PORT, dstPort: SERVER_PORT }));
  const newId = sent.parsed.fragmentId;
  assert.notEqual(newId, 4321);
  const error = edge.send(INTERNET, buildIcmpError({ src: SERVER, dst: POOL }, { type: ICMP_UNREACHABLE, code: ICMP_PORT_UNREACHABLE }, sent.bytes));
  assert.equal(error.hop, A_PRIMARY);
  assert.equal(error.parsed.inner?.src, HOST);
  assert.equal(error.parsed.inner?.srcPort, SITE_PORT);
  assert.equal(idOf(error.bytes.subarray(QUOTE_AT)), newId);
});

/**
 * The property the issue asks for: any interleaving (out-of-order included) of fragment chains from two zones,
 * both sites using the same original ids, to the Internet server and the data-center server.
 */
test('property: different datagrams never share (src, dst, proto, id) at the server; all fragments of one datagram agree', () => {
  const chains = fc
    .record({
      ids: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 3 }),
      lengths: fc.array(fc.integer({ min: 200, max: 1000 }), { minLength: 12, maxLength: 12 }),
    })
    .map(({ ids, lengths }) => {
      const fragments: Array<{ port: number; bytes: Uint8Array; marker: number }> = [];
      let marker = 0;
      for (const port of [A_PRIMARY, B_PRIMARY]) {
        for (const dst of [SERVER, DC_SERVER]) {
          for (const id of ids) {
            marker++;
            for (const bytes of datagram(dst, id, marker, lengths[marker - 1])) fragments.push({ port, bytes, marker });
          }
        }
      }
      return { fragments, datagrams: marker };
    })
    .chain(({ fragments, datagrams }) => fc.shuffledSubarray(fragments, { minLength: fragments.length, maxLength: fragments.length }).map((order) => ({ order, datagrams })));
  fc.assert(
    fc.property(chains, fc.integer(), ({ order, datagrams }, seed) => {
      const edge = new PipelineRig({ ...twoSites(), hashSeed: seed });
      const received: Sent[] = [];
      for (const f of order) received.push(...pass(edge, f.port, f.bytes));
      assert.equal(received.length, order.length, 'every fragment leaves');
      // Each fragment ends in its datagram's payload, so its last byte names the datagram.
      const keyOf = new Map<number, Set<string>>();
      for (const r of received) {
        const marker = r.bytes[r.bytes.length - 1];
        keyOf.set(marker, (keyOf.get(marker) ?? new Set()).add(reassemblyKey(r.bytes)));
      }
      assert.equal(keyOf.size, datagrams);
      const keys = [...keyOf.values()].map((k) => {
        assert.equal(k.size, 1, 'all fragments of one datagram carry one (src, dst, proto, id)');
        return [...k][0];
      });
      assert.equal(new Set(keys).size, datagrams, 'no two datagrams share a reassembly key');
      for (const queue of byKey(received).values()) assert.ok(reassemble(queue).checksumOk, 'each reassembles with a valid checksum');
    }),
    { numRuns: 150 },
  );
});
