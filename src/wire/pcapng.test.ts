import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { buildUdp } from './build.js';
import { concatBytes } from './bytes.js';
import {
  BLOCK_ENHANCED_PACKET,
  BLOCK_INTERFACE_DESCRIPTION,
  BLOCK_SECTION_HEADER,
  enhancedPacket,
  enhancedPacketSize,
  interfaceDescription,
  LINKTYPE_RAW,
  OPT_COMMENT,
  sectionHeader,
  writeEnhancedPacket,
} from './pcapng.js';

interface Block {
  type: number;
  body: Uint8Array;
}

/** Slow reader (the oracle): splits a little-endian pcapng file into blocks, checking both length fields. */
function blocks(bytes: Uint8Array): Block[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: Block[] = [];
  for (let at = 0; at < bytes.length;) {
    const type = view.getUint32(at, true);
    const total = view.getUint32(at + 4, true);
    assert.equal(total % 4, 0, 'block length is 32-bit aligned');
    assert.equal(view.getUint32(at + total - 4, true), total, 'trailing length equals the leading one');
    out.push({ type, body: bytes.subarray(at + 8, at + total - 4) });
    at += total;
  }
  return out;
}

/** Options from body[at…] as code → value. */
function options(body: Uint8Array, at: number): Map<number, Uint8Array> {
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const out = new Map<number, Uint8Array>();
  while (at < body.length) {
    const code = view.getUint16(at, true);
    const length = view.getUint16(at + 2, true);
    if (code === 0) break;
    out.set(code, body.subarray(at + 4, at + 4 + length));
    at += 4 + ((length + 3) & ~3);
  }
  return out;
}

test('Section Header Block: byte fixture (little-endian magic, version 1.0, section length -1, shb_userappl)', () => {
  const shb = sectionHeader('tether');
  assert.deepEqual([...shb], [
    0x0a, 0x0d, 0x0d, 0x0a, 44, 0, 0, 0, // type, total length 44
    0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, // byte-order magic (LE), major 1, minor 0
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // section length unknown
    4, 0, 6, 0, 0x74, 0x65, 0x74, 0x68, 0x65, 0x72, 0, 0, // shb_userappl "tether" padded
    0, 0, 0, 0, // opt_endofopt
    44, 0, 0, 0,
  ]);
});

test('Interface Description Block: byte fixture (LINKTYPE_RAW, if_name, if_tsresol 6)', () => {
  const idb = interfaceDescription({ name: 'rx' });
  assert.deepEqual([...idb], [
    1, 0, 0, 0, 40, 0, 0, 0,
    101, 0, 0, 0, 0, 0, 0, 0, // link type 101, reserved, snap length 0
    2, 0, 2, 0, 0x72, 0x78, 0, 0, // if_name "rx"
    9, 0, 1, 0, 6, 0, 0, 0, // if_tsresol 6
    0, 0, 0, 0,
    40, 0, 0, 0,
  ]);
});

test('Enhanced Packet Block: byte fixture (timestamp split in two words, packet padded, opt_comment)', () => {
  const ts = 0x1_0000_0002; // microseconds: high word 1, low word 2
  const epb = enhancedPacket(1, ts, Uint8Array.of(0x45, 0, 0), 'ARR');
  assert.deepEqual([...epb], [
    6, 0, 0, 0, 48, 0, 0, 0,
    1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, // interface 1, timestamp high 1, low 2
    3, 0, 0, 0, 3, 0, 0, 0, // captured 3, original 3
    0x45, 0, 0, 0, // packet, one byte of zero padding
    1, 0, 3, 0, 0x41, 0x52, 0x52, 0, // opt_comment "ARR"
    0, 0, 0, 0,
    48, 0, 0, 0,
  ]);
  assert.equal(enhancedPacketSize(3, 3), 48);
  assert.equal(enhancedPacketSize(4, 0), 36, 'no comment: no options at all');
});

test('Enhanced Packet Block: refuses a comment longer than the option length field and captured > original', () => {
  assert.throws(() => enhancedPacket(0, 0, new Uint8Array(4), 'x'.repeat(0x10000)), /comment: 65536 bytes/);
  assert.throws(() => enhancedPacket(0, 0, new Uint8Array(4), null, 3), /captured length 4 exceeds its original length 3/);
});

test('property: any packet, comment, interface and timestamp round-trip through the reader', () => {
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 300 }),
    fc.option(fc.string({ unit: 'grapheme', maxLength: 200 }), { nil: null }),
    fc.integer({ min: 0, max: 7 }),
    fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    fc.integer({ min: 0, max: 24 }),
    (packet, comment, iface, ts, at) => {
      const c = comment === null || comment === '' ? null : new TextEncoder().encode(comment);
      const size = enhancedPacketSize(packet.length, c === null ? 0 : c.length);
      // Written at an offset into a dirty buffer: the padding must come out zero regardless.
      const out = new Uint8Array(at + size).fill(0xee);
      assert.equal(writeEnhancedPacket(out, at, iface, ts, packet, 0, packet.length, packet.length + 5, c), size);
      const [b] = blocks(out.subarray(at));
      assert.equal(b.type, BLOCK_ENHANCED_PACKET);
      const view = new DataView(b.body.buffer, b.body.byteOffset, b.body.length);
      assert.equal(view.getUint32(0, true), iface);
      assert.equal(view.getUint32(4, true) * 2 ** 32 + view.getUint32(8, true), ts);
      assert.equal(view.getUint32(12, true), packet.length);
      assert.equal(view.getUint32(16, true), packet.length + 5);
      assert.deepEqual(b.body.subarray(20, 20 + packet.length), packet);
      const padEnd = 20 + ((packet.length + 3) & ~3);
      assert.ok(b.body.subarray(20 + packet.length, padEnd).every((x) => x === 0), 'packet padding is zero');
      const opts = options(b.body, padEnd);
      if (c === null) assert.equal(opts.size, 0);
      else assert.equal(new TextDecoder().decode(opts.get(OPT_COMMENT)), comment);
    },
  ));
});

test('tshark reads the file: interfaces, packets, comments and the IP/UDP inside', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-pcapng-'));
  try {
    const udp = buildUdp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 53, payload: Uint8Array.of(1, 2, 3) });
    const file = join(dir, 'x.pcapng');
    const bytes = concatBytes([
      sectionHeader('tether test'),
      interfaceDescription({ name: 'onramp side', description: 'inner packets as received' }),
      interfaceDescription({ name: 'outside side', linkType: LINKTYPE_RAW }),
      enhancedPacket(0, 1_700_000_000_123_456, udp, 'flow 4-7; in site-a; out internet; why routing table'),
      enhancedPacket(1, 1_700_000_000_123_999, udp, 'ünïcode comment ✓'),
    ]);
    assert.deepEqual(blocks(bytes).map((b) => b.type), [BLOCK_SECTION_HEADER, BLOCK_INTERFACE_DESCRIPTION, BLOCK_INTERFACE_DESCRIPTION, BLOCK_ENHANCED_PACKET, BLOCK_ENHANCED_PACKET]);
    writeFileSync(file, bytes);
    const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.interface_name', '-e', 'frame.comment', '-e', 'ip.src', '-e', 'udp.dstport', '-e', 'frame.time_epoch'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 2);
    const [first, second] = lines.map((l) => l.split('|'));
    assert.deepEqual(first.slice(0, 4), ['onramp side', 'flow 4-7; in site-a; out internet; why routing table', '10.0.1.10', '53']);
    assert.match(first[4], /^1700000000\.123456/);
    assert.deepEqual(second.slice(0, 2), ['outside side', 'ünïcode comment ✓']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
