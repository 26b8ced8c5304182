import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LaneSteering } from './lane-steering.js';
import { PacketBatch } from '../common/packet-batch.js';
import { SnatPool } from '../nat/snat-pool.js';
import { buildIcmpEcho, buildIcmpError, buildTcp, buildUdp, parsePacket } from '../wire/build.js';
import { ICMP4_DEST_UNREACHABLE, ICMP6_DEST_UNREACHABLE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';

const POOL4 = '198.51.100.1';
const POOL6 = '2001:db8::1';
const LANES = 3;
const pool = new SnatPool({ addresses: [POOL4, POOL6], portMin: 1024, portMax: 65535, lanes: LANES, lane: 0, hashSeed: 1 });
const steering = new LaneSteering(pool, LANES);

function owner(bytes: Uint8Array): number {
  const batch = new PacketBatch(1, 4096);
  batch.push(bytes, 0, bytes.length, 0);
  return steering.ownerOf(batch, 0);
}

describe('LaneSteering', () => {
  it('byte fixtures: a reply names the lane of its external port, identifier, or quoted source port', () => {
    // 1024..22527 lane 0, 22528..44031 lane 1, 44032..65535 lane 2 (TCP/UDP); ICMP ids 0..21845 | ..43690 | ..65535.
    assert.equal(owner(buildUdp({ src: '203.0.113.10', dst: POOL4 }, { srcPort: 53, dstPort: 30000 })), 1);
    assert.equal(owner(buildTcp({ src: '203.0.113.10', dst: POOL4 }, { srcPort: 80, dstPort: 1024 })), 0);
    assert.equal(owner(buildTcp({ src: '2001:db8:1::9', dst: POOL6 }, { srcPort: 80, dstPort: 65535 })), 2);
    assert.equal(owner(buildIcmpEcho({ src: '203.0.113.10', dst: POOL4 }, { type: 'reply', id: 50000 })), 2);
    const sent = buildUdp({ src: POOL4, dst: '203.0.113.10' }, { srcPort: 23000, dstPort: 9 });
    assert.equal(owner(buildIcmpError({ src: '203.0.113.10', dst: POOL4 }, { type: ICMP4_DEST_UNREACHABLE, code: 3 }, sent)), 1);
    // Not to a pool address, an echo request, a port below the range: any lane.
    assert.equal(owner(buildUdp({ src: '203.0.113.10', dst: '198.51.100.2' }, { srcPort: 53, dstPort: 30000 })), -1);
    assert.equal(owner(buildIcmpEcho({ src: '203.0.113.10', dst: POOL4 }, { type: 'request', id: 50000 })), -1);
    assert.equal(owner(buildUdp({ src: '203.0.113.10', dst: POOL4 }, { srcPort: 53, dstPort: 80 })), -1);
    // One lane, or no NAT: never steered.
    assert.equal(new LaneSteering(null, 2).owner(sent, 0, sent.length), -1);
  });

  // The oracle: parsePacket (the checked inspection) and the pool's own laneOfExternal, over random replies.
  it('agrees with parsePacket + laneOfExternal over random replies, errors and other packets', () => {
    const v6 = fc.boolean();
    const kind = fc.constantFrom('udp', 'tcp', 'echo-reply', 'echo-request', 'error-udp', 'error-tcp', 'error-echo');
    fc.assert(fc.property(v6, kind, fc.integer({ min: 0, max: 65535 }), fc.boolean(), (six, k, port, toPool) => {
      const dst = toPool ? (six ? POOL6 : POOL4) : six ? '2001:db8::2' : '198.51.100.2';
      const src = six ? '2001:db8:1::9' : '203.0.113.10';
      const icmp = six ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
      let bytes: Uint8Array;
      let expected: number;
      const lane = (protocol: number, p: number): number => (toPool ? pool.laneOfExternal(protocol, p) : -1);
      if (k === 'udp' || k === 'tcp') {
        bytes = k === 'udp' ? buildUdp({ src, dst }, { srcPort: 443, dstPort: port }) : buildTcp({ src, dst }, { srcPort: 443, dstPort: port });
        const parsed = parsePacket(bytes);
        expected = lane(parsed.protocol, parsed.dstPort);
      } else if (k === 'echo-reply' || k === 'echo-request') {
        bytes = buildIcmpEcho({ src, dst }, { type: k === 'echo-reply' ? 'reply' : 'request', id: port });
        expected = k === 'echo-reply' ? lane(icmp, parsePacket(bytes).icmp!.id) : -1;
      } else {
        const quoted = k === 'error-udp' ? buildUdp({ src: dst, dst: src }, { srcPort: port, dstPort: 9 })
          : k === 'error-tcp' ? buildTcp({ src: dst, dst: src }, { srcPort: port, dstPort: 9 })
            : buildIcmpEcho({ src: dst, dst: src }, { type: 'request', id: port });
        bytes = buildIcmpError({ src, dst }, { type: six ? ICMP6_DEST_UNREACHABLE : ICMP4_DEST_UNREACHABLE, code: 1 }, quoted);
        const inner = parsePacket(quoted);
        expected = lane(inner.protocol, inner.protocol === IPPROTO_TCP || inner.protocol === IPPROTO_UDP ? inner.srcPort : inner.icmp!.id);
      }
      assert.equal(owner(bytes), expected);
    }), { numRuns: 2000 });
  });

  it('first fragments are steered by their ports and say so; later fragments are not (they carry none)', () => {
    const v4 = buildUdp({ src: '203.0.113.10', dst: POOL4, id: 7, moreFragments: true }, { srcPort: 53, dstPort: 30000, payload: new Uint8Array(16) });
    assert.equal(steering.owner(v4, 0, v4.length), 1);
    assert.equal(steering.firstFragment, true);
    const whole = buildUdp({ src: '203.0.113.10', dst: POOL4 }, { srcPort: 53, dstPort: 30000 });
    assert.equal(steering.owner(whole, 0, whole.length), 1);
    assert.equal(steering.firstFragment, false);
    const later4 = buildUdp({ src: '203.0.113.10', dst: POOL4, id: 7, fragmentOffset: 24 }, { srcPort: 53, dstPort: 30000 });
    assert.equal(steering.owner(later4, 0, later4.length), -1);
    // IPv6: the fragment header right after the fixed header (RFC 8200 section 4.5); its next header is UDP.
    const v6 = buildUdp({ src: '2001:db8:1::9', dst: POOL6, extensions: [{ type: 'fragment', offset: 0, more: true, id: 0x12345678 }] }, { srcPort: 53, dstPort: 65000, payload: new Uint8Array(16) });
    assert.equal(steering.owner(v6, 0, v6.length), 2);
    assert.equal(steering.firstFragment, true);
    const atomic6 = buildUdp({ src: '2001:db8:1::9', dst: POOL6, extensions: [{ type: 'fragment', offset: 0, more: false, id: 1 }] }, { srcPort: 53, dstPort: 1024 });
    assert.equal(steering.owner(atomic6, 0, atomic6.length), 0, 'an atomic fragment (RFC 6946) is a whole packet');
    assert.equal(steering.firstFragment, false);
    const later6 = buildUdp({ src: '2001:db8:1::9', dst: POOL6, extensions: [{ type: 'fragment', offset: 1232, more: false, id: 0x12345678 }] }, { srcPort: 53, dstPort: 65000 });
    assert.equal(steering.owner(later6, 0, later6.length), -1);
  });

  it('bad input: random and truncated bytes give a lane or -1, never a throw or a read past the packet', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 120 }), fc.integer({ min: 0, max: 120 }), (bytes, cut) => {
      const n = Math.min(cut, bytes.length);
      // The bytes after the packet are poison: a read of them would change nothing only by chance, so they are
      // made to name a pool address and port everywhere.
      const arena = new Uint8Array(n + 64).fill(0xff);
      arena.set(bytes.subarray(0, n));
      const got = steering.owner(arena, 0, n);
      assert.ok(got >= -1 && got < LANES);
      assert.equal(got, steering.owner(Uint8Array.from([...bytes.subarray(0, n)]), 0, n));
    }), { numRuns: 3000 });
  });
});
