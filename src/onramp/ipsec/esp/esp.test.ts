import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { ESP_TEST_ALGORITHMS, oracleOpen, oracleSeal, type OracleKeys } from '../../../../test/support/esp-oracle.js';
import type { ChildSa, EncryptionAlgorithm, IntegrityAlgorithm } from '../types.js';
import {
  ESP_HEADER,
  ESP_MAX_SEQUENCE,
  ESP_SEQUENCE_EXHAUSTED,
  EspDrop,
  EspOpened,
  EspReplayWindow,
  EspSaTable,
  NO_SA,
  UdpEncap,
  checkEspLength,
  classifyUdpEncap,
  espAlgorithm,
  espMaxOverhead,
  espPadding,
  espSealedLength,
  espSeq,
  espSpi,
  nextHeaderOf,
  readEspTrailer,
  writeEspHeader,
  writeEspTrailer,
  ROUTE_BASED,
} from './index.js';

interface Vector {
  encryption: EncryptionAlgorithm;
  integrity: IntegrityAlgorithm | null;
  encryptionKey: string;
  integrityKey: string | null;
  spi: number;
  seq: number;
  esp: string;
  inner: string;
}
const VECTORS = JSON.parse(readFileSync(new URL('../../../../test/fixtures/esp/esp-vectors.json', import.meta.url), 'utf8')) as Vector[];
const keysOf = (v: Vector): OracleKeys => ({
  encryption: v.encryption,
  integrity: v.integrity,
  encryptionKey: Buffer.from(v.encryptionKey, 'hex'),
  integrityKey: v.integrityKey === null ? null : Buffer.from(v.integrityKey, 'hex'),
});

const ALGS = ESP_TEST_ALGORITHMS;

/** A random IPv4 or IPv6 inner packet (its first nibble says its version; the rest is noise). */
const innerPacket = fc.tuple(fc.boolean(), fc.uint8Array({ minLength: 19, maxLength: 1500 })).map(([v6, b]) => {
  const p = Uint8Array.from(b);
  p[0] = (v6 ? 0x60 : 0x45) | (p[0] & 0x0f & (v6 ? 0x0f : 0));
  return p;
});

test('scapy-built ESP packets (fixtures): header, length check, trailer and inner packet', () => {
  assert.ok(VECTORS.length >= 12);
  for (const v of VECTORS) {
    const esp = Buffer.from(v.esp, 'hex');
    const alg = espAlgorithm(v.encryption, v.integrity);
    assert.equal(espSpi(esp, 0), v.spi);
    assert.equal(espSeq(esp, 0), v.seq);
    assert.equal(checkEspLength(alg, esp.length), EspDrop.None, `${v.encryption} length`);
    const inner = Buffer.from(v.inner, 'hex');
    assert.equal(esp.length, espSealedLength(alg, inner.length), `${v.encryption}: scapy pads as RFC 4303 §2.4 says`);
    const opened = oracleOpen(keysOf(v), esp);
    assert.ok(typeof opened !== 'string', `${v.encryption}: ${String(opened)}`);
    assert.deepEqual(Buffer.from(opened.inner), inner);
    // The codec's trailer reader over the decrypted packet, in place.
    const plain = Buffer.alloc(esp.length);
    esp.copy(plain, 0, 0, ESP_HEADER + alg.ivLength);
    const body = Buffer.concat([inner, Buffer.from(Array.from({ length: espPadding(alg, inner.length) }, (_, k) => k + 1)), Buffer.from([espPadding(alg, inner.length), opened.nextHeader])]);
    body.copy(plain, ESP_HEADER + alg.ivLength);
    const out = new EspOpened();
    assert.equal(readEspTrailer(alg, plain, 0, plain.length, out), EspDrop.None);
    assert.equal(out.innerLength, inner.length);
    assert.equal(out.nextHeader, inner[0] >> 4 === 6 ? 41 : 4);
  }
});

test('codec layout = the oracle layout: header, padding 1,2,3…, pad length, next header (property)', () => {
  fc.assert(
    fc.property(fc.constantFrom(...ALGS), innerPacket, fc.integer({ min: 256, max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff }), ([e, i], inner, spi, seq) => {
      const alg = espAlgorithm(e, i);
      const keys: OracleKeys = { encryption: e, integrity: i, encryptionKey: new Uint8Array(alg.keyLength + alg.saltLength).fill(7), integrityKey: i === null ? null : new Uint8Array(alg.integKeyLength).fill(9) };
      const sealed = oracleSeal(keys, spi, seq, inner);
      const len = espSealedLength(alg, inner.length);
      assert.equal(sealed.length, len);
      assert.ok(len - inner.length <= espMaxOverhead(alg));
      const buf = new Uint8Array(len + 16);
      const at = 3;
      writeEspHeader(buf, at, spi, seq);
      const payload = at + ESP_HEADER + alg.ivLength;
      buf.set(inner, payload);
      const icvAt = writeEspTrailer(buf, payload + inner.length, espPadding(alg, inner.length), nextHeaderOf(inner, 0, inner.length));
      assert.equal(icvAt + alg.icvLength - at, len);
      assert.deepEqual(Buffer.from(buf.subarray(at, at + ESP_HEADER)), Buffer.from(sealed.subarray(0, ESP_HEADER)));
      const out = new EspOpened();
      assert.equal(readEspTrailer(alg, buf, at, len, out), EspDrop.None);
      assert.equal(out.innerLength, inner.length);
      const opened = oracleOpen(keys, sealed);
      assert.ok(typeof opened !== 'string');
      assert.deepEqual(Buffer.from(opened.inner), Buffer.from(inner));
    }),
  );
});

test('truncated or misaligned ESP lengths are Truncated; every shorter length of a fixture is refused', () => {
  for (const v of VECTORS) {
    const alg = espAlgorithm(v.encryption, v.integrity);
    const full = v.esp.length / 2;
    for (let len = 0; len < full; len++) {
      const verdict = checkEspLength(alg, len);
      // A shorter length can only pass when it is a whole number of alignment units shorter; it then fails the ICV.
      if ((full - len) % alg.align !== 0) assert.equal(verdict, EspDrop.Truncated, `${v.encryption} length ${len}`);
    }
    assert.equal(checkEspLength(alg, espSealedLength(alg, 0) - 1), EspDrop.Truncated);
  }
});

test('trailer: bad padding, dummy packets, other next headers and a lying inner version are counted reasons', () => {
  const alg = espAlgorithm('aes128gcm16', null);
  const make = (inner: number[], pad: number[], nh: number): Uint8Array => {
    const b = [...new Array<number>(ESP_HEADER + alg.ivLength).fill(0), ...inner, ...pad, pad.length, nh, ...new Array<number>(alg.icvLength).fill(0)];
    return Uint8Array.from(b);
  };
  const out = new EspOpened();
  const v4 = [0x45, 0, 0, 0, 0, 0];
  let p = make(v4, [1, 2], 4);
  assert.equal(readEspTrailer(alg, p, 0, p.length, out), EspDrop.None);
  p = make(v4, [1, 3], 4);
  assert.equal(readEspTrailer(alg, p, 0, p.length, out), EspDrop.BadPadding);
  p = make(v4, [1, 2], 59);
  assert.equal(readEspTrailer(alg, p, 0, p.length, out), EspDrop.Dummy);
  p = make(v4, [1, 2], 17);
  assert.equal(readEspTrailer(alg, p, 0, p.length, out), EspDrop.BadNextHeader);
  p = make(v4, [1, 2], 41);
  assert.equal(readEspTrailer(alg, p, 0, p.length, out), EspDrop.BadInnerPacket);
  // A pad length longer than the payload.
  p = make([], [], 4);
  p[p.length - alg.icvLength - 2] = 200;
  assert.equal(readEspTrailer(alg, p, 0, p.length, out), EspDrop.BadPadding);
});

test('trailer reader never throws and never reports an inner packet outside the payload (property)', () => {
  const alg = espAlgorithm('aes256', 'sha256');
  fc.assert(
    fc.property(fc.uint8Array({ minLength: espSealedLength(alg, 0), maxLength: 300 }), (b) => {
      const out = new EspOpened();
      const r = readEspTrailer(alg, b, 0, b.length, out);
      if (r === EspDrop.None) assert.ok(out.innerLength >= 0 && out.innerLength <= b.length - ESP_HEADER - alg.ivLength - alg.icvLength - 2);
    }),
  );
});

test('UDP 4500 classification (RFC 3948 §2): keepalive, non-ESP marker, ESP, malformed', () => {
  const c = (b: number[]): UdpEncap => classifyUdpEncap(Uint8Array.from([9, ...b]), 1, b.length);
  assert.equal(c([0xff]), UdpEncap.Keepalive);
  assert.equal(c([0x00]), UdpEncap.Malformed);
  assert.equal(c([]), UdpEncap.Malformed);
  assert.equal(c([0, 0, 0, 0, 1, 2, 3]), UdpEncap.Ike);
  assert.equal(c([0, 0, 1, 0, 0, 0, 0, 1]), UdpEncap.Esp);
  assert.equal(c([0, 0, 1, 0, 0]), UdpEncap.Malformed);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => void classifyUdpEncap(b, 0, b.length)));
});

/** The obviously correct window: a Set of accepted numbers and the newest; RFC 4303 §3.4.3 semantics. */
class SlowWindow {
  private readonly seen = new Set<number>();
  private newest = 0;
  constructor(private readonly size: number) {}
  check(seq: number): boolean {
    if (this.size === 0) return true;
    if (seq === 0) return false;
    if (seq > this.newest) return true;
    return this.newest - seq < this.size && !this.seen.has(seq);
  }
  update(seq: number): boolean {
    if (!this.check(seq)) return false;
    if (this.size === 0) return true;
    this.seen.add(seq);
    if (seq > this.newest) this.newest = seq;
    return true;
  }
}

test('replay window agrees with a Set oracle (sizes 0, 1024 and more; check before, update after the ICV)', () => {
  const step = fc.oneof(fc.integer({ min: -40, max: 40 }), fc.integer({ min: -2100, max: -900 }), fc.integer({ min: 0, max: 5000 }), fc.constant(0));
  fc.assert(
    fc.property(fc.constantFrom(0, 1, 1024, 2000, 4096), fc.array(fc.tuple(step, fc.boolean()), { maxLength: 400 }), fc.integer({ min: 0, max: 2 ** 31 }), (req, steps, base) => {
      const fast = new EspReplayWindow(req);
      assert.ok(req === 0 ? fast.size === 0 : fast.size >= req);
      const slow = new SlowWindow(fast.size);
      let cursor = base;
      for (const [s, icvOk] of steps) {
        cursor = Math.max(0, Math.min(ESP_MAX_SEQUENCE, cursor + s));
        assert.equal(fast.check(cursor), slow.check(cursor), `check ${cursor}`);
        // A packet whose ICV fails must not move the window.
        if (icvOk) assert.equal(fast.update(cursor), slow.update(cursor), `update ${cursor}`);
      }
    }),
  );
});

test('the default window is 1,024 packets or more; sequence number 0 is refused', () => {
  const w = new EspReplayWindow(1024);
  assert.ok(w.size >= 1024);
  assert.equal(w.check(0), false);
  assert.equal(w.update(5), true);
  assert.equal(w.update(5), false);
  assert.equal(w.check(5 + w.size + 10), true);
  assert.throws(() => new EspReplayWindow(-1), /non-negative/);
});

function child(onramp: number, spiIn: number, spiOut: number, createdAt = 0, enc: EncryptionAlgorithm = 'aes128gcm16'): ChildSa {
  const alg = espAlgorithm(enc, enc.endsWith('gcm16') ? null : 'sha256');
  const keys = (spi: number) => ({
    spi,
    encryption: enc,
    integrity: alg.integKeyLength === 0 ? null : ('sha256' as const),
    encryptionKey: new Uint8Array(alg.keyLength + alg.saltLength),
    integrityKey: alg.integKeyLength === 0 ? null : new Uint8Array(alg.integKeyLength),
  });
  return { onramp, inbound: keys(spiIn), outbound: keys(spiOut), path: { localAddress: 1, remoteAddress: 2, localPort: 0, remotePort: 0 }, replayWindow: 1024, selectors: ROUTE_BASED, createdAt };
}

test('SA table: SPI lookup, make-before-break on rekey, removal, usage', () => {
  const t = new EspSaTable(8);
  const a = t.install(child(5, 0x1000, 0x2000, 1));
  assert.equal(t.inbound(0x1000), a);
  assert.equal(t.outboundOf(5), a);
  const b = t.install(child(5, 0x1001, 0x2001, 2));
  assert.equal(t.outboundOf(5), b, 'the rekeyed SA sends');
  assert.equal(t.inbound(0x1000), a, 'the old inbound SPI is still accepted');
  assert.equal(t.remove(5, 0x1000), a);
  assert.equal(t.inbound(0x1000), NO_SA);
  assert.equal(t.outboundOf(5), b);
  // Removing the sending SA while an older one lives: the survivor sends.
  const c = t.install(child(5, 0x1002, 0x2002, 3));
  t.remove(5, 0x1002);
  assert.equal(t.outboundOf(5), b);
  assert.notEqual(c, NO_SA);
  assert.equal(t.remove(6, 0x1001), NO_SA, 'another onramp cannot remove it');
  assert.deepEqual(t.usage(5, 0x1001), { inboundPackets: 0, outboundPackets: 0, lastInbound: 0, sequenceExhausted: false });
  assert.equal(t.usage(5, 0x9999), null);
  assert.deepEqual(t.removeOnramp(5), [b]);
  assert.equal(t.outboundOf(5), NO_SA);
  assert.equal(t.size, 0);
});

test('SA table refuses what it cannot hold, naming the problem', () => {
  const t = new EspSaTable(2);
  t.install(child(1, 0x1000, 0x2000));
  assert.throws(() => t.install(child(1, 0x1000, 0x2001)), /inbound SPI 0x00001000 is installed already/);
  assert.throws(() => t.install(child(1, 12, 0x2001)), /reserved/);
  const bad = child(1, 0x1003, 0x2003);
  bad.outbound.encryptionKey = new Uint8Array(3);
  assert.throws(() => t.install(bad), /key is 3 bytes, needs 20/);
  t.install(child(2, 0x1001, 0x2001));
  assert.throws(() => t.install(child(3, 0x1002, 0x2002)), /table is full/);
  assert.equal(t.size, 2);
});

test('sequence numbers: 1 first, exhaustion flagged below 2^32, nothing past 2^32 − 1', () => {
  const t = new EspSaTable(1);
  const s = t.install(child(1, 0x1000, 0x2000));
  assert.equal(t.nextSequence(s), 1);
  t.seqOut[s] = ESP_SEQUENCE_EXHAUSTED - 1;
  assert.equal(t.sequenceExhausted(s), false);
  t.nextSequence(s);
  assert.equal(t.sequenceExhausted(s), true);
  assert.equal(t.usage(1, 0x1000)?.sequenceExhausted, true);
  t.seqOut[s] = ESP_MAX_SEQUENCE - 1;
  assert.equal(t.nextSequence(s), ESP_MAX_SEQUENCE);
  assert.equal(t.nextSequence(s), -1);
  assert.equal(t.nextSequence(s), -1);
});
