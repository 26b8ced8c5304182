import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseIpv4 } from '../wire/addr.js';
import { Drop } from '../common/drop-reasons.js';
import { buildIcmpEcho, buildUdp, parsePacket } from '../wire/build.js';
import { transportChecksumFull } from '../wire/checksum.js';
import { inspect } from '../wire/inspect.js';
import { PacketInfo } from '../wire/packet-info.js';
import { UDP4_OVERHEAD, echoReplyInPlace, writeUdp4Headers } from './underlay-packets.js';

const AT = 7; // an odd offset: nothing may assume alignment

describe('writeUdp4Headers', () => {
  it('writes what buildUdp builds (oracle), checksums included', () => {
    fc.assert(fc.property(
      fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 0xffff }),
      (payload, srcPort, dstPort, id) => {
        const buf = new Uint8Array(AT + UDP4_OVERHEAD + payload.length);
        buf.set(payload, AT + UDP4_OVERHEAD);
        const n = writeUdp4Headers(buf, AT, parseIpv4('192.168.101.1'), parseIpv4('192.168.101.2'), srcPort, dstPort, payload.length, id);
        const expected = buildUdp({ src: '192.168.101.1', dst: '192.168.101.2', id, dontFragment: true }, { srcPort, dstPort, payload });
        assert.deepEqual(buf.subarray(AT, AT + n), expected);
      },
    ));
  });
});

describe('echoReplyInPlace', () => {
  it('turns an echo request into the reply buildIcmpEcho builds (oracle)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (payload, id, seq) => {
      const request = buildIcmpEcho({ src: '192.168.103.2', dst: '192.168.103.1', ttl: 3 }, { type: 'request', id, seq, payload });
      const buf = new Uint8Array(AT + request.length);
      buf.set(request, AT);
      const info = new PacketInfo();
      assert.equal(inspect(buf, AT, request.length, info), Drop.None);
      echoReplyInPlace(buf, info.l3Offset, info.l4Offset - info.l3Offset, info.l4Offset);
      const reply = buf.subarray(AT);
      const expected = buildIcmpEcho({ src: '192.168.103.1', dst: '192.168.103.2', ttl: 64 }, { type: 'reply', id, seq, payload });
      assert.deepEqual(reply, expected);
      const p = parsePacket(reply);
      assert.equal(p.drop, Drop.None);
      assert.equal(p.icmp?.type, 0);
      assert.equal(inspect(reply, 0, reply.length, info), Drop.None);
      assert.equal(transportChecksumFull(reply, info), (reply[info.l4Offset + 2] << 8) | reply[info.l4Offset + 3]);
    }));
  });
});
