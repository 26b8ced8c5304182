/**
 * SoftwareGso, the edge's fallback for next hops without offloads: super-packets cut into the segments the oracle
 * (build.ts, one packet per segment) builds, in rounds of SEGMENT_CAPACITY; partial checksums completed in place;
 * headers that lie counted and dropped. Pure: no TUN involved.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketBatch, VNET_CSUM_OFFSET, VNET_CSUM_START, VNET_F_NEEDS_CSUM, VNET_FLAGS, VNET_GSO_SIZE, VNET_GSO_TCPV4, VNET_GSO_TYPE, VNET_WORDS } from '../../common/packet-batch.js';
import { OFFLOAD_SLOT_SIZE } from '../../io/tun.js';
import { buildTcp, buildUdp } from '../../wire/build.js';
import { parseIpv4 } from '../../wire/addr.js';
import { write16 } from '../../wire/bytes.js';
import { foldChecksum, pseudoHeaderSum4 } from '../../wire/checksum.js';
import { IPPROTO_UDP, TCP_ACK_FLAG, TCP_CHECKSUM, UDP_CHECKSUM } from '../../wire/constants.js';
import { EDGE_COUNTER_NAMES, EdgeCounter } from './counters.js';
import { SEGMENT_CAPACITY, SoftwareGso } from './software-gso.js';

const IP = { src: '198.51.100.1', dst: '203.0.113.10', id: 40 };
const L4 = 20;

function offloaded(batch: PacketBatch, packet: Uint8Array, gsoSize: number, field: number): number {
  const i = batch.push(packet, 0, packet.length, 0);
  batch.data[batch.offset[i] + L4 + field] ^= 0x5a; // not the full checksum: the segmenter computes its own
  const v = i * VNET_WORDS;
  batch.vnet[v + VNET_FLAGS] = VNET_F_NEEDS_CSUM;
  batch.vnet[v + VNET_CSUM_START] = L4;
  batch.vnet[v + VNET_CSUM_OFFSET] = field;
  if (gsoSize > 0) {
    batch.vnet[v + VNET_GSO_TYPE] = VNET_GSO_TCPV4;
    batch.vnet[v + VNET_GSO_SIZE] = gsoSize;
  }
  return i;
}

test('a super-packet of 100 segments comes out in rounds of SEGMENT_CAPACITY, each segment as the oracle builds it', () => {
  const counters = new Float64Array(EDGE_COUNTER_NAMES.length);
  const gso = new SoftwareGso(counters);
  const batch = new PacketBatch(2, OFFLOAD_SLOT_SIZE);
  const gsoSize = 500;
  const payload = Uint8Array.from({ length: 100 * gsoSize }, (_, k) => k & 0xff);
  const tcp = { srcPort: 5201, dstPort: 40000, seq: 1, ack: 2, flags: TCP_ACK_FLAG };
  const i = offloaded(batch, buildTcp(IP, { ...tcp, payload }), gsoSize, TCP_CHECKSUM);
  assert.ok(gso.isSuper(batch, i));
  const total = gso.begin(batch, i);
  assert.equal(total, 100);
  const got: Uint8Array[] = [];
  for (let from = 0; from < total; ) {
    const m = gso.fill(batch, i, from, total, 7);
    assert.ok(m >= 1 && m <= SEGMENT_CAPACITY);
    for (let s = 0; s < m; s++) {
      assert.equal(gso.segments.nextHop[s], 7);
      got.push(gso.segments.packet(s).slice());
    }
    from += m;
  }
  assert.equal(got.length, 100);
  for (let k = 0; k < 100; k++) {
    const want = buildTcp({ ...IP, id: IP.id + k }, { ...tcp, seq: 1 + k * gsoSize, payload: payload.subarray(k * gsoSize, (k + 1) * gsoSize) });
    assert.deepEqual(got[k], want, `segment ${k}`);
  }
  assert.equal(counters[EdgeCounter.GsoSegmented], 1);
  assert.equal(counters[EdgeCounter.GsoSegments], 100);
});

test('a partial checksum alone is completed in place and the packet marked plain', () => {
  const counters = new Float64Array(EDGE_COUNTER_NAMES.length);
  const gso = new SoftwareGso(counters);
  const batch = new PacketBatch(2);
  const packet = buildUdp(IP, { srcPort: 53, dstPort: 40000, payload: new Uint8Array(300).fill(3) });
  const i = offloaded(batch, packet, 0, UDP_CHECKSUM);
  // As a sending stack leaves it (udp_send_skb for CHECKSUM_PARTIAL): the folded pseudo-header sum, not complemented.
  const pseudo = ~foldChecksum(pseudoHeaderSum4(parseIpv4(IP.src), parseIpv4(IP.dst), IPPROTO_UDP, packet.length - L4)) & 0xffff;
  write16(batch.data, batch.offset[i] + L4 + UDP_CHECKSUM, pseudo);
  assert.equal(gso.isSuper(batch, i), false);
  assert.ok(gso.complete(batch, i));
  assert.deepEqual(batch.packet(i), packet);
  assert.equal(batch.offloaded(i), false);
  assert.equal(counters[EdgeCounter.ChecksumCompleted], 1);
});

test('headers that do not fit the packet, or segments bigger than a slot, are counted and dropped', () => {
  const counters = new Float64Array(EDGE_COUNTER_NAMES.length);
  const gso = new SoftwareGso(counters);
  const batch = new PacketBatch(3, OFFLOAD_SLOT_SIZE);
  const packet = buildTcp(IP, { srcPort: 1, dstPort: 2, payload: new Uint8Array(9000) });
  const tooBig = offloaded(batch, packet, 4000, TCP_CHECKSUM);
  assert.equal(gso.begin(batch, tooBig), -1, 'a 4,000-byte segment does not fit a 2 KiB slot');
  const lying = offloaded(batch, packet, 1000, TCP_CHECKSUM);
  batch.vnet[lying * VNET_WORDS + VNET_CSUM_START] = 4; // inside the IP header
  assert.equal(gso.begin(batch, lying), -1);
  const partialOnly = offloaded(batch, packet, 0, TCP_CHECKSUM);
  batch.vnet[partialOnly * VNET_WORDS + VNET_CSUM_START] = 0xfff0;
  assert.equal(gso.complete(batch, partialOnly), false);
  assert.equal(counters[EdgeCounter.GsoBad], 3);
});
