import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IPPROTO_TCP } from './constants.js';
import {
  checksumUpdate16,
  checksumUpdate32,
  foldChecksum,
  icmpv4ChecksumFull,
  ipv4FixedHeaderSum,
  ipv4HeaderChecksum,
  ipv4HeaderSumWithAddrs,
  onesComplementSum,
  onesComplementSumWords,
  pseudoHeaderSum4,
  pseudoHeaderSum6,
  transportChecksumFull,
} from './checksum.js';
import { DNS_QUERY, ICMP_FRAG_NEEDED, ICMP_PORT_UNREACHABLE, ICMPV6_ECHO_REQUEST, ICMPV6_PACKET_TOO_BIG, TCP_SYN } from './fixtures.test.js';
import { inspect } from './inspect.js';
import { PacketInfo } from './packet-info.js';

/** Obviously-correct oracle: RFC 1071 section 4.1, folding after every word. */
function slowChecksum(bytes: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    sum += (bytes[i] << 8) | (i + 1 < bytes.length ? bytes[i + 1] : 0);
    if (sum > 0xffff) sum = (sum & 0xffff) + 1;
  }
  return ~sum & 0xffff;
}

test('RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2', () => {
  const bytes = Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
  assert.equal(foldChecksum(onesComplementSum(bytes, 0, 8, 0)), ~0xddf2 & 0xffff);
  // Odd length: the last byte is padded with zero.
  assert.equal(foldChecksum(onesComplementSum(Uint8Array.of(0xab), 0, 1, 0)), ~0xab00 & 0xffff);
  assert.equal(foldChecksum(0), 0xffff);
  assert.equal(foldChecksum(0xffff), 0);
});

test('onesComplementSum + foldChecksum match the per-word oracle on random data, any start and end', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (bytes, a, b) => {
      const start = bytes.length ? a % bytes.length : 0;
      const end = start + (bytes.length - start ? b % (bytes.length - start + 1) : 0);
      assert.equal(foldChecksum(onesComplementSum(bytes, start, end, 0)), slowChecksum(bytes.subarray(start, end)));
    }),
  );
});

test('onesComplementSumWords folds like the per-word oracle: any start and end, any alignment, up to 64 KiB', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0xffff }), (bytes, a, b, initial) => {
      const buf = new Uint8Array(bytes.length + 4);
      buf.set(bytes);
      const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
      const start = bytes.length ? a % bytes.length : 0;
      const end = start + (bytes.length - start ? b % (bytes.length - start + 1) : 0);
      const want = foldChecksum(onesComplementSum(buf, start, end, initial));
      assert.equal(foldChecksum(onesComplementSumWords(buf, words, start, end, initial)), want);
    }),
    { numRuns: 500 },
  );
  // The largest IP packet of all-ones bytes (the sums' largest), and all zeros (folds to 0xFFFF, as the byte loop).
  for (const fill of [0xff, 0]) {
    const big = new Uint8Array(0x10000).fill(fill);
    const words = new Uint32Array(big.buffer);
    for (const start of [0, 1, 2, 3]) {
      assert.equal(foldChecksum(onesComplementSumWords(big, words, start, 0xffff, 0)), foldChecksum(onesComplementSum(big, start, 0xffff, 0)));
    }
  }
});

test('foldChecksum handles sums beyond 32 bits', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 50 }), fc.integer({ min: 0, max: 2 ** 21 }), (words, repeat) => {
      // sum of `words` repeated `repeat` times, computed once as a big number and once word by word
      let sum = 0;
      for (const w of words) sum += w;
      const big = sum * repeat;
      let folded = big % 0xffff;
      if (folded === 0 && big !== 0) folded = 0xffff;
      assert.equal(foldChecksum(big), ~folded & 0xffff);
    }),
  );
});

test('fixture checksums (computed by Scapy) verify', () => {
  const info = new PacketInfo();
  for (const p of [DNS_QUERY, TCP_SYN, ICMPV6_ECHO_REQUEST, ICMPV6_PACKET_TOO_BIG]) {
    assert.equal(inspect(p, 0, p.length, info), 0);
    const field = info.l4Offset + (info.protocol === IPPROTO_TCP ? 16 : info.protocol === 17 ? 6 : 2);
    assert.equal(transportChecksumFull(p, info), (p[field] << 8) | p[field + 1]);
  }
  for (const p of [DNS_QUERY, TCP_SYN, ICMP_PORT_UNREACHABLE, ICMP_FRAG_NEEDED]) {
    assert.equal(ipv4HeaderChecksum(p, 0, 20), (p[10] << 8) | p[11]);
  }
  assert.equal(icmpv4ChecksumFull(ICMP_PORT_UNREACHABLE, 20, 65), 0x184d);
  assert.equal(icmpv4ChecksumFull(ICMP_FRAG_NEEDED, 20, 36), 0xf0da);
  // The quoted IPv4 header of the port unreachable carries its own valid checksum.
  assert.equal(ipv4HeaderChecksum(ICMP_PORT_UNREACHABLE, 28, 20), 0x0355);
});

test('pseudo-header sums equal summing the pseudo-header bytes (RFC 9293 section 3.1, RFC 8200 section 8.1)', () => {
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  fc.assert(
    fc.property(u32, u32, fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff }), (src, dst, proto, len) => {
      const b = new Uint8Array(12);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, src);
      dv.setUint32(4, dst);
      b[9] = proto;
      dv.setUint16(10, len);
      assert.equal(foldChecksum(pseudoHeaderSum4(src, dst, proto, len)), slowChecksum(b));
    }),
  );
  fc.assert(
    fc.property(fc.array(u32, { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 255 }), u32, (w, nh, len) => {
      const b = new Uint8Array(40);
      const dv = new DataView(b.buffer);
      for (let i = 0; i < 8; i++) dv.setUint32(4 * i, w[i]);
      dv.setUint32(32, len);
      b[39] = nh;
      const words = Uint32Array.from([0, ...w]); // offset 1, to exercise srcOff/dstOff
      assert.equal(foldChecksum(pseudoHeaderSum6(words, 1, 5, nh, len)), slowChecksum(b));
    }),
  );
});

/**
 * Incremental update (RFC 1624 eqn 3) against full recomputation: random data whose first bytes form a
 * valid checksum field; change one 16-bit word or a 32-bit value (at an even offset) and compare.
 */
test('checksumUpdate16 / checksumUpdate32 equal full recomputation, bit for bit', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 8, maxLength: 64 }),
      fc.nat(),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.boolean(),
      (data, at, value, wide) => {
        // bytes 0..1 are the checksum field; bytes 2..3 a fixed non-zero word, as every real packet has one
        // (the pseudo-header's protocol): only all-zero data sums to +0, where eqn 3 and recomputation differ.
        data[0] = 0;
        data[1] = 0;
        data[2] = 0;
        data[3] = 6;
        const c = slowChecksum(data);
        data[0] = c >>> 8;
        data[1] = c & 0xff;
        const width = wide ? 4 : 2;
        const words = (data.length - 4 - width) >> 1;
        const pos = 4 + 2 * (at % (words + 1));
        const dv = new DataView(data.buffer, data.byteOffset);
        let updated: number;
        if (wide) {
          const old = dv.getUint32(pos);
          dv.setUint32(pos, value);
          updated = checksumUpdate32(c, old, value >>> 0);
        } else {
          const old = dv.getUint16(pos);
          dv.setUint16(pos, value & 0xffff);
          updated = checksumUpdate16(c, old, value & 0xffff);
        }
        data[0] = 0;
        data[1] = 0;
        assert.equal(updated, slowChecksum(data));
      },
    ),
    { numRuns: 2000 },
  );
});

test('RFC 1624 section 3 corner case: eqn 3 yields 0x0000, never -0 (0xFFFF), where recomputation does', () => {
  // Data whose checksum becomes 0 after the change: the new sum is exactly 0xFFFF.
  const data = Uint8Array.of(0, 0, 0x12, 0x34, 0xed, 0xca); // 0x1234 + 0xedca = 0xfffe
  const c = slowChecksum(data); // ~0xfffe = 0x0001
  assert.equal(c, 0x0001);
  // change 0xedca -> 0xedcb: the sum becomes 0xffff and the checksum 0x0000
  const updated = checksumUpdate16(c, 0xedca, 0xedcb);
  data[5] = 0xcb;
  assert.equal(slowChecksum(data), 0x0000);
  assert.equal(updated, 0x0000);
  // (RFC 1624 eqn 2, HC' = HC - ~m - m', computes 0xFFFF (-0) here: the value section 3 warns about.)
  // The reverse change, from a zero checksum, goes back to 0x0001.
  assert.equal(checksumUpdate16(0x0000, 0xedcb, 0xedca), 0x0001);
  // No change leaves the checksum as is, including 0.
  assert.equal(checksumUpdate16(0x0000, 0x1234, 0x1234), 0x0000);
  assert.equal(checksumUpdate32(0xabcd, 0xdeadbeef, 0xdeadbeef), 0xabcd);
});

test('ipv4HeaderSumWithAddrs equals ipv4FixedHeaderSum with the addresses given as words, signed or not', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.integer({ min: 0, max: 4 }), fc.boolean(), (bytes, o, signed) => {
      const word = (at: number) => (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
      const src = signed ? word(o + 12) | 0 : word(o + 12) >>> 0;
      const dst = signed ? word(o + 16) | 0 : word(o + 16) >>> 0;
      assert.equal(ipv4HeaderSumWithAddrs(bytes, o, src, dst), ipv4FixedHeaderSum(bytes, o));
    }),
  );
});
