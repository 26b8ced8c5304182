import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from '../../wire/addr.js';
import { GRE_TX_CHECKSUM, GRE_TX_KEY, GRE_TX_SEQUENCE, GreDecap, decapsulate, decapsulateInspected, encapsulate4, encapsulate6, greHeaderLength } from './codec.js';
import { GRE_PROTO_IPV4, GRE_PROTO_IPV6 } from './constants.js';
import { GreDrop } from './gre-drop.js';
import {
  CSUM_KEY_SEQ_V4_IN_V4,
  CSUM_V6_IN_V6_DESTOPT,
  ENC_V4_KEY,
  ENC_V6_CSUM_SEQ,
  INNER4,
  INNER6,
  KEY_V6_IN_V4,
  PLAIN_V4_IN_V4,
  SEQ_V4_IN_V6,
  SYN,
  innerPacketArb,
} from './fixtures.test.js';
import { fixIpv4Checksum } from '../../wire/fixtures.test.js';
import { readGuard } from '../../../test/support/bounds.js';
import { Drop } from '../../common/drop-reasons.js';
import { inspect } from '../../wire/inspect.js';
import { PacketInfo } from '../../wire/packet-info.js';

const d = new GreDecap();

function run(bytes: Uint8Array): number {
  return decapsulate(bytes, 0, bytes.length, d);
}

function inner(bytes: Uint8Array): Uint8Array {
  return bytes.slice(d.innerOffset, d.innerOffset + d.innerLength);
}

// --- fixtures -----------------------------------------------------------------------------------

test('fixture: plain GRE, IPv4 in IPv4', () => {
  assert.equal(run(PLAIN_V4_IN_V4), GreDrop.None);
  assert.equal(d.family, 4);
  assert.equal(formatIpv4(d.addr[0]), '198.51.100.1');
  assert.equal(formatIpv4(d.addr[4]), '192.0.2.1');
  assert.deepEqual([...d.addr.subarray(1, 4), ...d.addr.subarray(5, 8)], [0, 0, 0, 0, 0, 0]);
  assert.equal(d.protocolType, GRE_PROTO_IPV4);
  assert.equal(d.greOffset, 20);
  assert.equal(d.greLength, 4);
  assert.equal(d.hasKey || d.hasChecksum || d.hasSequence, false);
  assert.deepEqual(inner(PLAIN_V4_IN_V4), INNER4);
});

test('fixture: keyed GRE, IPv6 in IPv4', () => {
  assert.equal(run(KEY_V6_IN_V4), GreDrop.None);
  assert.equal(d.protocolType, GRE_PROTO_IPV6);
  assert.equal(d.hasKey, true);
  assert.equal(d.key, 0xdeadbeef);
  assert.equal(d.greLength, 8);
  assert.deepEqual(inner(KEY_V6_IN_V4), INNER6);
});

test('fixture: checksum + key + sequence, TCP SYN in IPv4', () => {
  assert.equal(run(CSUM_KEY_SEQ_V4_IN_V4), GreDrop.None);
  assert.equal(d.hasChecksum, true);
  assert.equal(d.key, 42);
  assert.equal(d.hasSequence, true);
  assert.equal(d.sequence, 0x01020304);
  assert.equal(d.greLength, 16);
  assert.deepEqual(inner(CSUM_KEY_SEQ_V4_IN_V4), SYN);
});

test('fixture: sequence, IPv4 in IPv6', () => {
  assert.equal(run(SEQ_V4_IN_V6), GreDrop.None);
  assert.equal(d.family, 6);
  assert.equal(formatIpv6(d.addr, 0), '2001:db8:a::1');
  assert.equal(formatIpv6(d.addr, 4), '2001:db8:e::1');
  assert.equal(d.sequence, 7);
  assert.equal(d.ttl, 64);
  assert.deepEqual(inner(SEQ_V4_IN_V6), INNER4);
});

test('fixture: IPv6 outer with a destination-options header (tunnel encapsulation limit) and a checksum', () => {
  assert.equal(run(CSUM_V6_IN_V6_DESTOPT), GreDrop.None);
  assert.equal(d.greOffset, 48);
  assert.equal(d.hasChecksum, true);
  assert.deepEqual(inner(CSUM_V6_IN_V6_DESTOPT), INNER6);
});

test('link padding after the outer packet is not part of the inner packet', () => {
  const padded = new Uint8Array(PLAIN_V4_IN_V4.length + 6);
  padded.set(PLAIN_V4_IN_V4);
  assert.equal(run(padded), GreDrop.None);
  assert.equal(d.innerLength, INNER4.length);
});

// --- drops --------------------------------------------------------------------------------------

function mutated(base: Uint8Array, edit: (p: Uint8Array) => void, fixChecksum = true): Uint8Array {
  const p = base.slice();
  edit(p);
  return fixChecksum && p[0] >>> 4 === 4 ? fixIpv4Checksum(p) : p;
}

test('drops: each malformation has its reason', () => {
  const cases: [string, Uint8Array, number][] = [
    ['empty', new Uint8Array(0), GreDrop.Truncated],
    ['short IPv4', PLAIN_V4_IN_V4.slice(0, 19), GreDrop.Truncated],
    ['version 5', mutated(PLAIN_V4_IN_V4, (p) => (p[0] = 0x55), false), GreDrop.BadOuterIp],
    ['IHL 4', mutated(PLAIN_V4_IN_V4, (p) => (p[0] = 0x44), false), GreDrop.BadOuterIp],
    ['total length beyond the bytes', mutated(PLAIN_V4_IN_V4, (p) => (p[3] += 1)), GreDrop.BadOuterIp],
    ['bad header checksum', mutated(PLAIN_V4_IN_V4, (p) => (p[11] ^= 1), false), GreDrop.BadOuterChecksum],
    ['protocol UDP', mutated(PLAIN_V4_IN_V4, (p) => (p[9] = 17)), GreDrop.NotGre],
    ['outer MF', mutated(PLAIN_V4_IN_V4, (p) => (p[6] |= 0x20)), GreDrop.OuterFragment],
    ['outer offset', mutated(PLAIN_V4_IN_V4, (p) => (p[7] = 1)), GreDrop.OuterFragment],
    ['GRE version 1 (PPTP)', mutated(PLAIN_V4_IN_V4, (p) => (p[21] |= 1)), GreDrop.BadVersion],
    ['bit 1: RFC 1701 routing present', mutated(PLAIN_V4_IN_V4, (p) => (p[20] |= 0x40)), GreDrop.ReservedBits],
    ['bit 4: strict source route', mutated(PLAIN_V4_IN_V4, (p) => (p[20] |= 0x08)), GreDrop.ReservedBits],
    ['bit 5: recursion control', mutated(PLAIN_V4_IN_V4, (p) => (p[20] |= 0x04)), GreDrop.ReservedBits],
    ['GRE checksum wrong', mutated(CSUM_KEY_SEQ_V4_IN_V4, (p) => (p[p.length - 1] ^= 0x10)), GreDrop.BadChecksum],
    ['transparent Ethernet bridging', mutated(PLAIN_V4_IN_V4, (p) => ((p[22] = 0x65), (p[23] = 0x58))), GreDrop.UnsupportedProtocol],
    ['protocol type IPv6, inner IPv4', mutated(PLAIN_V4_IN_V4, (p) => ((p[22] = 0x86), (p[23] = 0xdd))), GreDrop.BadInner],
    ['GRE header only', mutated(PLAIN_V4_IN_V4.slice(0, 24), (p) => (p[3] = 24)), GreDrop.Truncated],
    ['K flag without room for the key', mutated(PLAIN_V4_IN_V4.slice(0, 26), (p) => ((p[3] = 26), (p[20] = 0x20))), GreDrop.Truncated],
    ['IPv6 payload length beyond the bytes', mutated(SEQ_V4_IN_V6, (p) => (p[5] += 1)), GreDrop.BadOuterIp],
    ['IPv6 next header UDP', mutated(SEQ_V4_IN_V6, (p) => (p[6] = 17)), GreDrop.NotGre],
    ['IPv6 fragment header', mutated(SEQ_V4_IN_V6, (p) => (p[6] = 44)), GreDrop.OuterFragment],
    ['IPv6 routing header with segments left', mutated(CSUM_V6_IN_V6_DESTOPT, (p) => ((p[6] = 43), (p[43] = 1))), GreDrop.OuterExtension],
    ['IPv6 hop-by-hop not first', mutated(CSUM_V6_IN_V6_DESTOPT, (p) => (p[40] = 0)), GreDrop.OuterExtension],
  ];
  for (const [name, bytes, reason] of cases) assert.equal(run(bytes), reason, name);
  // The edge's path gives the same reason wherever inspect hands the packet on.
  for (const [, bytes] of cases) checkInspectedPath(bytes);
});

test('bits 6-12 are ignored on receipt (RFC 2784 section 2.5)', () => {
  const p = mutated(PLAIN_V4_IN_V4, (b) => ((b[20] |= 0x03), (b[21] |= 0xf8)));
  assert.equal(run(p), GreDrop.None);
  assert.deepEqual(inner(p), INNER4);
});

test('an IPv6 routing header with no segments left is stepped over', () => {
  const p = mutated(CSUM_V6_IN_V6_DESTOPT, (b) => ((b[6] = 43), (b[42] = 0), (b[43] = 0)));
  assert.equal(run(p), GreDrop.None);
});

// --- encapsulation ------------------------------------------------------------------------------

test('encapsulate4 emits what Scapy builds (key, DF, TTL 64, id, header checksum)', () => {
  const buf = new Uint8Array(64 + INNER4.length);
  buf.set(INNER4, 64);
  const o = encapsulate4(buf, 64, INNER4.length, 0, GRE_TX_KEY, 42, 0, parseIpv4('192.0.2.1'), parseIpv4('198.51.100.1'), 0x0102);
  assert.equal(o, 64 - 28);
  assert.deepEqual(buf.slice(o), ENC_V4_KEY);
});

test('encapsulate6 emits what Scapy builds (checksum + sequence)', () => {
  const buf = new Uint8Array(100 + INNER6.length);
  buf.set(INNER6, 100);
  const addr = new Uint32Array(8);
  addr.set(parseIpv6('2001:db8:e::1')!, 0);
  addr.set(parseIpv6('2001:db8:a::1')!, 4);
  const o = encapsulate6(buf, 100, INNER6.length, 0, GRE_TX_CHECKSUM | GRE_TX_SEQUENCE, 0, 5, addr, 0, 4);
  assert.equal(o, 100 - 52);
  assert.deepEqual(buf.slice(o), ENC_V6_CSUM_SEQ);
});

test('encapsulation refuses to write below the floor, and non-IP inner packets', () => {
  const buf = new Uint8Array(200);
  buf.set(INNER4, 26);
  assert.equal(encapsulate4(buf, 26, INNER4.length, 0, GRE_TX_KEY, 1, 0, 1, 2, 0), -GreDrop.NoHeadroom);
  assert.equal(encapsulate4(buf, 26, INNER4.length, 3, 0, 0, 0, 1, 2, 0), -GreDrop.NoHeadroom);
  assert.equal(encapsulate4(buf, 26, INNER4.length, 2, 0, 0, 0, 1, 2, 0), 2);
  buf[130] = 0x20;
  assert.equal(encapsulate4(buf, 130, 10, 0, 0, 0, 0, 1, 2, 0), -GreDrop.BadInner);
  assert.equal(encapsulate6(buf, 130, 0, 0, 0, 0, 0, new Uint32Array(8), 0, 4), -GreDrop.BadInner);
});

const txFlagsArb = fc.integer({ min: 0, max: 7 });
const v4Arb = fc.integer({ min: 0, max: 0xffffffff });
const v6Arb = fc.uint32Array({ minLength: 8, maxLength: 8 });

test('round trip: encapsulate4 then decapsulate gives back endpoints, key, sequence and the inner bytes', () => {
  fc.assert(
    fc.property(innerPacketArb, txFlagsArb, v4Arb, v4Arb, v4Arb, v4Arb, fc.integer({ min: 0, max: 0xffff }), (pkt, flags, key, seq, src, dst, id) => {
      const headroom = 40;
      const buf = new Uint8Array(headroom + pkt.length).fill(0xee);
      buf.set(pkt, headroom);
      const o = encapsulate4(buf, headroom, pkt.length, 0, flags, key, seq, src, dst, id);
      assert.equal(o, headroom - 20 - greHeaderLength(flags));
      assert.equal(decapsulate(buf, o, buf.length - o, d), GreDrop.None);
      assert.equal(d.family, 4);
      assert.equal(d.addr[0], src >>> 0);
      assert.equal(d.addr[4], dst >>> 0);
      assert.equal(d.hasChecksum, (flags & GRE_TX_CHECKSUM) !== 0);
      assert.equal(d.hasKey, (flags & GRE_TX_KEY) !== 0);
      assert.equal(d.key, d.hasKey ? key >>> 0 : 0);
      assert.equal(d.hasSequence, (flags & GRE_TX_SEQUENCE) !== 0);
      assert.equal(d.sequence, d.hasSequence ? seq >>> 0 : 0);
      assert.equal(d.protocolType, pkt[0] >>> 4 === 4 ? GRE_PROTO_IPV4 : GRE_PROTO_IPV6);
      assert.equal(d.innerOffset, headroom);
      assert.deepEqual(buf.slice(d.innerOffset, d.innerOffset + d.innerLength), pkt);
    }),
  );
});

test('round trip: encapsulate6 then decapsulate', () => {
  fc.assert(
    fc.property(innerPacketArb, txFlagsArb, v4Arb, v4Arb, v6Arb, (pkt, flags, key, seq, addr) => {
      const headroom = 64;
      const buf = new Uint8Array(headroom + pkt.length);
      buf.set(pkt, headroom);
      const o = encapsulate6(buf, headroom, pkt.length, 0, flags, key, seq, addr, 0, 4);
      assert.ok(o >= 0);
      assert.equal(decapsulate(buf, o, buf.length - o, d), GreDrop.None);
      assert.deepEqual([...d.addr], [...addr]);
      assert.equal(d.key, (flags & GRE_TX_KEY) !== 0 ? key >>> 0 : 0);
      assert.equal(d.sequence, (flags & GRE_TX_SEQUENCE) !== 0 ? seq >>> 0 : 0);
      assert.deepEqual(buf.slice(d.innerOffset, d.innerOffset + d.innerLength), pkt);
    }),
  );
});

// --- robustness ---------------------------------------------------------------------------------

function snapshot(x: GreDecap, shift: number): unknown[] {
  return [
    x.family, x.outerOffset - shift, x.greOffset - shift, x.greLength, x.greFlags, x.protocolType, x.hasChecksum, x.hasKey,
    x.key, x.hasSequence, x.sequence, x.innerOffset - shift, x.innerLength, x.ttl, x.tos, [...x.addr],
  ];
}

const scratch = new GreDecap();

const outer = new PacketInfo();
const viaInspection = new GreDecap();

/**
 * The edge's path (inspect the outer packet, then decapsulateInspected) against the codec's own IP parser:
 * whenever inspect lets the packet through to GRE (None, or UnsupportedProtocol: it does not track GRE),
 * both give the same verdict and, on success, the same record.
 */
function checkInspectedPath(bytes: Uint8Array): void {
  const pad = 11;
  const big = new Uint8Array(pad + bytes.length + pad).fill(0xa5);
  big.set(bytes, pad);
  const inspected = inspect(big, pad, bytes.length, outer);
  if (inspected !== Drop.None && inspected !== Drop.UnsupportedProtocol) return;
  const expected = decapsulate(big, pad, bytes.length, d);
  assert.equal(decapsulateInspected(big, outer, viaInspection), expected);
  if (expected === GreDrop.None) assert.deepEqual(snapshot(viaInspection, 0), snapshot(d, 0));
}

/** decapsulate on an exact view, inside sentinel-filled buffers and through a read guard must agree and stay in bounds. */
function checkPlacements(bytes: Uint8Array): void {
  checkInspectedPath(bytes);
  const view = bytes.slice();
  const dropView = decapsulate(view, 0, view.length, d);
  const expected = snapshot(d, 0);
  if (dropView === GreDrop.None) {
    assert.ok(d.innerLength > 0 && d.innerOffset + d.innerLength <= view.length);
    assert.ok(d.greOffset >= 20 && d.greOffset + d.greLength === d.innerOffset);
  }
  for (const sentinel of [0x00, 0xff, 0x45]) {
    const pad = 37;
    const big = new Uint8Array(pad + bytes.length + pad).fill(sentinel);
    big.set(bytes, pad);
    const drop = decapsulate(big, pad, bytes.length, scratch);
    assert.equal(drop, dropView);
    if (sentinel === 0) assert.equal(decapsulate(readGuard(big, pad, pad + bytes.length), pad, bytes.length, scratch), drop);
    if (drop === GreDrop.None) assert.deepEqual(snapshot(scratch, pad), expected);
  }
}

const FIXTURES = [PLAIN_V4_IN_V4, KEY_V6_IN_V4, CSUM_KEY_SEQ_V4_IN_V4, SEQ_V4_IN_V6, CSUM_V6_IN_V6_DESTOPT];

test('fixtures: decapsulateInspected reads the outer header from the inspection and agrees with decapsulate', () => {
  for (const fixture of FIXTURES) {
    assert.equal(inspect(fixture, 0, fixture.length, outer), Drop.UnsupportedProtocol, 'inspect does not track GRE, but fills the IP fields');
    assert.equal(decapsulateInspected(fixture, outer, viaInspection), GreDrop.None);
    assert.equal(run(fixture), GreDrop.None);
    assert.deepEqual(snapshot(viaInspection, 0), snapshot(d, 0));
  }
  const fragment = mutated(PLAIN_V4_IN_V4, (p) => (p[6] |= 0x20));
  inspect(fragment, 0, fragment.length, outer);
  assert.equal(decapsulateInspected(fragment, outer, viaInspection), GreDrop.OuterFragment);
});

test('random bytes: decapsulate never throws, never reads outside its window', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.constantFrom(0x45, 0x46, 0x60, 0x00), (bytes, first) => {
      if (bytes.length > 0) bytes[0] = first;
      checkPlacements(bytes);
    }),
    { numRuns: 500 },
  );
});

test('mutated GRE fixtures: never throw, stay in bounds, and every drop is a known reason', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...FIXTURES),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      fc.boolean(),
      (base, edits, cut, fix) => {
        const p = base.slice(0, base.length - (cut % 8));
        for (const [at, value] of edits) p[at % p.length] = value;
        if (fix && p[0] >>> 4 === 4 && p.length >= 20 && (p[0] & 0x0f) * 4 <= p.length) fixIpv4Checksum(p);
        checkPlacements(p);
        const drop = run(p);
        assert.ok(drop >= GreDrop.None && drop <= GreDrop.BadInner, `unexpected reason ${drop}`);
      },
    ),
    { numRuns: 1000 },
  );
});

test('flag mutations of the GRE header word: accepted exactly when version 0 and bits 1, 4, 5 clear', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), (word) => {
      // Room for every optional field: append 12 bytes to the inner packet and grow the outer length.
      const p = new Uint8Array(PLAIN_V4_IN_V4.length + 12);
      p.set(PLAIN_V4_IN_V4);
      p[3] += 12;
      p[20] = word >>> 8;
      p[21] = word & 0xff;
      fixIpv4Checksum(p);
      const drop = run(p);
      if ((word & 7) !== 0) assert.equal(drop, GreDrop.BadVersion);
      else if ((word & 0x4c00) !== 0) assert.equal(drop, GreDrop.ReservedBits);
      // The optional fields take bytes of the inner packet: its version nibble may no longer say 4.
      else if ((word & 0x8000) !== 0) assert.ok(drop === GreDrop.BadChecksum || drop === GreDrop.BadInner, `reason ${drop}`);
      else assert.ok(drop === GreDrop.None || drop === GreDrop.BadInner, `reason ${drop}`);
    }),
    { numRuns: 300 },
  );
});
