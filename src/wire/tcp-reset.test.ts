import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildTcp } from './build.js';
import { TCP_ACK_FLAG, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from './constants.js';
import { inspect } from './inspect.js';
import { PacketInfo } from './packet-info.js';
import { TCP_RESET_ROOM, writeResetToReceiver, writeResetToSender } from './tcp-reset.js';
import { Drop } from '../common/drop-reasons.js';
import { transportChecksumFull } from './checksum.js';

function info(bytes: Uint8Array): PacketInfo {
  const i = new PacketInfo();
  assert.equal(inspect(bytes, 0, bytes.length, i), Drop.None);
  return i;
}

test('byte fixture: the reset to an IPv4 sender is build.ts\'s segment, ends swapped, SEQ = SEG.ACK (RFC 9293 section 3.10.7.1)', () => {
  const seg = buildTcp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_ACK_FLAG | TCP_PSH, payload: new Uint8Array(100) });
  const out = new Uint8Array(TCP_RESET_ROOM);
  const n = writeResetToSender(out, 0, info(seg));
  const oracle = buildTcp({ src: '203.0.113.10', dst: '10.0.1.10', dontFragment: true }, { srcPort: 443, dstPort: 40000, seq: 5001, ack: 0, flags: TCP_RST, window: 0 });
  assert.deepEqual(out.subarray(0, n), oracle);
});

test('byte fixture: the reset to an IPv6 receiver keeps the ends, takes the given SEQ and acknowledges what the segment did', () => {
  const seg = buildTcp({ src: 'fd00:1::10', dst: '2001:db8:5::1' }, { srcPort: 40000, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_ACK_FLAG });
  const out = new Uint8Array(TCP_RESET_ROOM);
  const n = writeResetToReceiver(out, 0, info(seg), 1001);
  const oracle = buildTcp({ src: 'fd00:1::10', dst: '2001:db8:5::1' }, { srcPort: 40000, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_RST | TCP_ACK_FLAG, window: 0 });
  assert.deepEqual(out.subarray(0, n), oracle);
});

test('a segment without ACK (a SYN): the reset acknowledges SEG.SEQ + SEG.LEN with SEQ 0, SYN counted', () => {
  const syn = buildTcp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 443, seq: 0xffffffff, flags: TCP_SYN });
  const out = new Uint8Array(TCP_RESET_ROOM);
  const n = writeResetToSender(out, 0, info(syn));
  const r = info(out.subarray(0, n));
  assert.equal(r.tcpSeq, 0);
  assert.equal(r.tcpAck, 0, 'wraps modulo 2^32');
  assert.equal(r.tcpFlags, TCP_RST | TCP_ACK_FLAG);
});

test('property: any TCP segment of either family gives two well-formed resets with valid checksums, at any offset', () => {
  const v4 = fc.tuple(fc.integer({ min: 1, max: 0xdfffffff }), fc.integer({ min: 1, max: 0xdfffffff })).map(([a, b]) => ({ src: a >>> 0, dst: b >>> 0 }));
  const v6 = fc.tuple(fc.uint32Array({ minLength: 4, maxLength: 4 }), fc.uint32Array({ minLength: 4, maxLength: 4 })).map(([a, b]) => ({ src: a, dst: b, family: 6 as const }));
  fc.assert(fc.property(
    fc.oneof(v4, v6), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.nat(0xffffffff), fc.nat(0xffffffff),
    fc.constantFrom(TCP_ACK_FLAG, TCP_ACK_FLAG | TCP_PSH, TCP_SYN, TCP_ACK_FLAG | TCP_FIN), fc.nat(300), fc.nat(64), fc.nat(0xffffffff),
    (ip, sp, dp, seq, ack, flags, len, at, rcvNxt) => {
      const seg = buildTcp(ip, { srcPort: sp, dstPort: dp, seq, ack, flags, payload: new Uint8Array(len) });
      const si = info(seg);
      for (const toSender of [true, false]) {
        const out = new Uint8Array(at + TCP_RESET_ROOM);
        const n = toSender ? writeResetToSender(out, at, si) : writeResetToReceiver(out, at, si, rcvNxt);
        const r = new PacketInfo();
        assert.equal(inspect(out, at, n, r), Drop.None);
        assert.equal(r.tcpFlags & TCP_RST, TCP_RST);
        assert.equal(r.tcpPayloadLength, 0);
        assert.equal(transportChecksumFull(out, r), (out[r.l4Offset + 16] << 8) | out[r.l4Offset + 17]);
        assert.equal(r.srcPort, toSender ? dp : sp);
        assert.equal(r.dstPort, toSender ? sp : dp);
        if (!toSender) assert.equal(r.tcpSeq, rcvNxt);
        else if ((flags & TCP_ACK_FLAG) !== 0) assert.equal(r.tcpSeq, ack);
      }
    },
  ));
});
