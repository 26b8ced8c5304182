/**
 * GSO super-packets and partial checksums through the pipeline (issue 10, item 1): one flow lookup and one header
 * rewrite per super-packet, the partial L4 checksum kept right through source NAT and its reversal, so that the
 * segments the kernel (or src/wire/gso.ts) cuts afterwards are exactly the segments a naive NAT of each segment
 * would give.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import {
  PacketBatch,
  VNET_CSUM_OFFSET,
  VNET_CSUM_START,
  VNET_F_NEEDS_CSUM,
  VNET_FLAGS,
  VNET_GSO_SIZE,
  VNET_GSO_TCPV4,
  VNET_GSO_TYPE,
  VNET_WORDS,
} from '../../src/common/packet-batch.js';
import { Pipeline } from '../../src/dataplane/pipeline.js';
import { buildTcp, parsePacket } from '../../src/wire/build.js';
import { foldChecksum, pseudoHeaderSum4 } from '../../src/wire/checksum.js';
import { IPPROTO_TCP, TCP_ACK_FLAG, TCP_CHECKSUM, TCP_SYN } from '../../src/wire/constants.js';
import { gsoHeaderLength, gsoSegmentCount, writeSegment } from '../../src/wire/gso.js';
import { write16 } from '../../src/wire/bytes.js';
import { A_PRIMARY, HOST, INTERNET, POOL, SERVER, twoSites } from '../support/topology.js';

const GSO_SIZE = 1448;
const L4 = 20;
const SLOT = 65536 + 256;

/** Packet `bytes` into slot i of `batch` as a TUN with offloads hands it over: partial checksum, GSO when `gso`. */
function pushOffloaded(batch: PacketBatch, bytes: Uint8Array, port: number, gso: boolean): number {
  const i = batch.push(bytes, 0, bytes.length, port);
  const at = batch.offset[i];
  const src = (bytes[12] << 24 | bytes[13] << 16 | bytes[14] << 8 | bytes[15]) >>> 0;
  const dst = (bytes[16] << 24 | bytes[17] << 16 | bytes[18] << 8 | bytes[19]) >>> 0;
  // tcp_v4_send_check for CHECKSUM_PARTIAL: the folded pseudo-header sum over the whole L4 length, not complemented.
  write16(batch.data, at + L4 + TCP_CHECKSUM, ~foldChecksum(pseudoHeaderSum4(src, dst, IPPROTO_TCP, bytes.length - L4)) & 0xffff);
  const v = i * VNET_WORDS;
  batch.vnet[v + VNET_FLAGS] = VNET_F_NEEDS_CSUM;
  batch.vnet[v + VNET_CSUM_START] = L4;
  batch.vnet[v + VNET_CSUM_OFFSET] = TCP_CHECKSUM;
  if (gso) {
    batch.vnet[v + VNET_GSO_TYPE] = VNET_GSO_TCPV4;
    batch.vnet[v + VNET_GSO_SIZE] = GSO_SIZE;
  }
  return i;
}

function segments(batch: PacketBatch, i: number): Uint8Array[] {
  const off = batch.offset[i];
  const len = batch.length[i];
  const header = gsoHeaderLength(batch.data, off, len, VNET_GSO_TCPV4, GSO_SIZE, L4);
  const out: Uint8Array[] = [];
  const scratch = new Uint8Array(2048);
  for (let k = 0; k < gsoSegmentCount(len, header, GSO_SIZE); k++) {
    const n = writeSegment(batch.data, off, len, VNET_GSO_TCPV4, GSO_SIZE, L4, header, k, scratch, 0);
    out.push(scratch.slice(0, n));
  }
  return out;
}

test('a TCP super-packet crosses source NAT whole (one lookup, one rewrite) and segments into correctly checksummed segments', () => {
  const pipeline = new Pipeline({ hashSeed: 7, ...twoSites() });
  const batch = new PacketBatch(4, SLOT);
  const now = 1_000_000;
  // The handshake, plain (a SYN is never GSO; its checksum may still be partial).
  pushOffloaded(batch, buildTcp({ src: HOST, dst: SERVER, ttl: 64 }, { srcPort: 40000, dstPort: 5201, seq: 100, flags: TCP_SYN, options: { mss: 1448 } }), A_PRIMARY, false);
  pipeline.process(batch, now);
  assert.equal(batch.nextHop[0], INTERNET);
  const synOut = parsePacket(batch.packet(0).slice());
  const ext = synOut.srcPort;
  batch.clear();
  const synAck = buildTcp({ src: SERVER, dst: POOL }, { srcPort: 5201, dstPort: ext, seq: 9000, ack: 101, flags: TCP_SYN | TCP_ACK_FLAG, options: { mss: 1448 } });
  batch.push(synAck, 0, synAck.length, INTERNET);
  pipeline.process(batch, now);
  assert.equal(batch.nextHop[0], A_PRIMARY);
  batch.clear();

  // 45 segments of data in one super-packet.
  const payload = Uint8Array.from({ length: 45 * GSO_SIZE - 100 }, (_, i) => (i * 31) & 0xff);
  const superPacket = buildTcp({ src: HOST, dst: SERVER, id: 500, ttl: 64, dontFragment: true }, { srcPort: 40000, dstPort: 5201, seq: 101, ack: 9001, flags: TCP_ACK_FLAG, payload });
  pushOffloaded(batch, superPacket, A_PRIMARY, true);
  const lookupsBefore = pipeline.counters.rxPackets[A_PRIMARY];
  pipeline.process(batch, now + 1);
  assert.equal(batch.drop[0], Drop.None);
  assert.equal(batch.nextHop[0], INTERNET);
  assert.equal(pipeline.counters.rxPackets[A_PRIMARY] - lookupsBefore, 1, 'one packet through the walk, not 45');
  const segs = segments(batch, 0);
  assert.equal(segs.length, 45);
  for (let k = 0; k < segs.length; k++) {
    // The oracle: each segment as the host would have sent it, NATed as a plain packet.
    const want = buildTcp(
      { src: POOL, dst: SERVER, id: 500 + k, ttl: 63, dontFragment: true },
      { srcPort: ext, dstPort: 5201, seq: 101 + k * GSO_SIZE, ack: 9001, flags: TCP_ACK_FLAG, payload: payload.subarray(k * GSO_SIZE, (k + 1) * GSO_SIZE) },
    );
    assert.deepEqual(segs[k], want, `segment ${k}`);
  }

  // And back: a super-packet from the server, reverse NAT on the partial checksum.
  batch.clear();
  const reply = buildTcp({ src: SERVER, dst: POOL, id: 7, ttl: 64 }, { srcPort: 5201, dstPort: ext, seq: 9001, ack: 101 + payload.length, flags: TCP_ACK_FLAG, payload });
  pushOffloaded(batch, reply, INTERNET, true);
  pipeline.process(batch, now + 2);
  assert.equal(batch.nextHop[0], A_PRIMARY);
  const back = segments(batch, 0);
  for (let k = 0; k < back.length; k++) {
    const want = buildTcp(
      { src: SERVER, dst: HOST, id: 7 + k, ttl: 63 },
      { srcPort: 5201, dstPort: 40000, seq: 9001 + k * GSO_SIZE, ack: 101 + payload.length, flags: TCP_ACK_FLAG, payload: payload.subarray(k * GSO_SIZE, (k + 1) * GSO_SIZE) },
    );
    assert.deepEqual(back[k], want, `reply segment ${k}`);
  }
});
