import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseAddress } from './addr.js';
import { buildUdp } from './build.js';
import { UDP4_PAYLOAD_AT, UDP6_PAYLOAD_AT, writeUdp4, writeUdp6 } from './udp-write.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('writeUdp4: a byte fixture (RFC 768 checksum over the pseudo-header, DF, id 0, TTL 64)', () => {
  const out = new Uint8Array(64).fill(0xee);
  out.set([1, 2, 3], 4 + UDP4_PAYLOAD_AT);
  const n = writeUdp4(out, 4, 0xcb00710a, 0x0a00010a, 53, 40000, 3);
  assert.equal(n, 31);
  // 203.0.113.10:53 → 10.0.1.10:40000, payload 01 02 03; checksums computed separately (Python, RFC 1071).
  assert.equal(hex(out.subarray(4, 4 + n)), '4500001f000040004011f3b9cb00710a0a00010a00359c40000b184c010203');
  assert.equal(out[3], 0xee, 'nothing before `at` is touched');
});

test('writeUdp4 / writeUdp6 write what the slow builder builds (build.ts), at any offset', () => {
  fc.assert(fc.property(
    fc.boolean(), fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), fc.nat(16),
    fc.tuple(fc.integer({ min: 1, max: 0xfffffffe }), fc.integer({ min: 1, max: 0xfffffffe })),
    (v4, payload, sp, dp, at, [s, d]) => {
      const out = new Uint8Array(at + UDP6_PAYLOAD_AT + payload.length);
      if (v4) {
        const src = `${s >>> 24}.${(s >>> 16) & 255}.${(s >>> 8) & 255}.${s & 255}`;
        const dst = `${d >>> 24}.${(d >>> 16) & 255}.${(d >>> 8) & 255}.${d & 255}`;
        out.set(payload, at + UDP4_PAYLOAD_AT);
        const n = writeUdp4(out, at, s >>> 0, d >>> 0, sp, dp, payload.length);
        return hex(out.subarray(at, at + n)) === hex(buildUdp({ src, dst, dontFragment: true, id: 0, ttl: 64 }, { srcPort: sp, dstPort: dp, payload }));
      }
      const src = `2001:db8::${(s >>> 16).toString(16)}:${(s & 0xffff).toString(16)}`;
      const dst = `fd00::${(d >>> 16).toString(16)}:${(d & 0xffff).toString(16)}`;
      const words = new Uint32Array(8);
      parseAddress(src, words, 0);
      parseAddress(dst, words, 4);
      out.set(payload, at + UDP6_PAYLOAD_AT);
      const n = writeUdp6(out, at, words, 0, 4, sp, dp, payload.length);
      return hex(out.subarray(at, at + n)) === hex(buildUdp({ src, dst, hopLimit: 64 }, { srcPort: sp, dstPort: dp, payload }));
    },
  ), { numRuns: 300 });
});
