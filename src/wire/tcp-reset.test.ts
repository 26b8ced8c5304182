import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildTcp } from './build.js';
import { inspect } from './inspect.js';
import { PacketInfo } from './packet-info.js';
import { TCP_ACK_FLAG, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from './constants.js';
import { TCP_RESET_ROOM, writeResetToReceiver, writeResetToSender } from './tcp-reset.js';

const info = (bytes: Uint8Array): PacketInfo => {
  const i = new PacketInfo();
  assert.equal(inspect(bytes, 0, bytes.length, i), 0);
  return i;
};

/** The resets written here must equal what the (independent, allocating) builder makes of the expected record. */
function resets(segment: Uint8Array): [Uint8Array, Uint8Array] {
  const out = new Uint8Array(TCP_RESET_ROOM + 8);
  const i = info(segment);
  const a = out.slice(4, 4 + writeResetToSender(out, 4, i));
  const b = out.slice(4, 4 + writeResetToReceiver(out, 4, i));
  return [a, b];
}

test('IPv4 fixture: a data segment cut both ways, byte for byte as the builder makes them', () => {
  const payload = new TextEncoder().encode('card=4111111111111111&x=1');
  const seg = buildTcp({ src: '10.0.1.10', dst: '203.0.113.10', ttl: 61, id: 999 }, { srcPort: 40000, dstPort: 80, seq: 1000, ack: 5000, flags: TCP_ACK_FLAG | TCP_PSH, payload });
  const [toSender, toReceiver] = resets(seg);
  assert.deepEqual(toSender, buildTcp({ src: '203.0.113.10', dst: '10.0.1.10', dontFragment: true, id: 0 }, { srcPort: 80, dstPort: 40000, seq: 5000, ack: 1000 + payload.length, flags: TCP_RST | TCP_ACK_FLAG, window: 0 }));
  assert.deepEqual(toReceiver, buildTcp({ src: '10.0.1.10', dst: '203.0.113.10', dontFragment: true, id: 0 }, { srcPort: 40000, dstPort: 80, seq: 1000, ack: 5000, flags: TCP_RST | TCP_ACK_FLAG, window: 0 }));
  assert.equal(toSender.length, 40);
  // The exact bytes (seq 5000 = 0x1388, ack 1025 = 0x401, RST|ACK, window 0), so a change to either side shows here.
  assert.equal(Buffer.from(toSender).toString('hex'), '45000028000040004006f3bbcb00710a0a00010a00509c40000013880000040150140000b4a20000');
});

test('IPv6, SYN and FIN count one each, a segment without ACK, sequence wrap', () => {
  const seg = buildTcp({ src: 'fd00:1::10', dst: '2001:db8::10' }, { srcPort: 1, dstPort: 2, seq: 0xffffffff, flags: TCP_SYN | TCP_FIN, payload: new Uint8Array(3) });
  const [toSender, toReceiver] = resets(seg);
  assert.deepEqual(toSender, buildTcp({ src: '2001:db8::10', dst: 'fd00:1::10' }, { srcPort: 2, dstPort: 1, seq: 0, ack: 4, flags: TCP_RST | TCP_ACK_FLAG, window: 0 }));
  assert.deepEqual(toReceiver, buildTcp({ src: 'fd00:1::10', dst: '2001:db8::10' }, { srcPort: 1, dstPort: 2, seq: 0xffffffff, ack: 0, flags: TCP_RST | TCP_ACK_FLAG, window: 0 }));
});

test('property: any segment, either family: the builder\'s resets, byte for byte', () => {
  fc.assert(fc.property(
    fc.boolean(), fc.integer({ min: 1, max: 0xffff }), fc.integer({ min: 1, max: 0xffff }), fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }),
    fc.integer({ min: 0, max: 0xff }), fc.uint8Array({ maxLength: 64 }),
    (v6, sp, dp, seq, ack, flags, payload) => {
      const ip = v6 ? { src: 'fd00:1::10', dst: '2001:db8::10' } : { src: '10.0.1.10', dst: '203.0.113.10' };
      const seg = buildTcp(ip, { srcPort: sp, dstPort: dp, seq, ack, flags, payload });
      const [toSender, toReceiver] = resets(seg);
      const n = payload.length + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0);
      const back = v6 ? { src: ip.dst, dst: ip.src } : { src: ip.dst, dst: ip.src, dontFragment: true, id: 0 };
      const fwd = v6 ? ip : { ...ip, dontFragment: true, id: 0 };
      assert.deepEqual(toSender, buildTcp(back, { srcPort: dp, dstPort: sp, seq: (flags & TCP_ACK_FLAG) !== 0 ? ack : 0, ack: (seq + n) % 0x100000000, flags: TCP_RST | TCP_ACK_FLAG, window: 0 }));
      assert.deepEqual(toReceiver, buildTcp(fwd, { srcPort: sp, dstPort: dp, seq, ack, flags: TCP_RST | TCP_ACK_FLAG, window: 0 }));
    }));
});
