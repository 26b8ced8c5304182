// The native batched ESP crypto against the slow oracle (node:crypto per packet, test/support/esp-oracle.ts) and
// scapy-built packets (test/fixtures/esp): random batches of mixed SAs and algorithms, both directions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { ESP_TEST_ALGORITHMS, oracleOpen, oracleSeal, type OracleKeys } from '../../test/support/esp-oracle.js';
import { ESP_HEADER, espAlgorithm, espPadding, espSealedLength, nextHeaderOf, writeEspHeader, writeEspTrailer } from '../onramp/ipsec/esp/index.js';
import type { EncryptionAlgorithm, EspDirectionKeys, IntegrityAlgorithm } from '../onramp/ipsec/types.js';
import { EspCrypto, EspEntries, EspStatus, type EspContextKeys } from './esp-crypto.js';

/** The engine's keys as the addon takes them. */
function ctx(k: EspDirectionKeys): EspContextKeys {
  const alg = espAlgorithm(k.encryption, k.integrity);
  return { cipher: alg.cipher, integ: alg.integ, encryptionKey: k.encryptionKey, integrityKey: k.integrityKey };
}

const ALGS = ESP_TEST_ALGORITHMS;
const SLOT = 2048;

function keys(enc: EncryptionAlgorithm, integ: IntegrityAlgorithm | null, spi: number): EspDirectionKeys {
  const alg = espAlgorithm(enc, integ);
  return { spi, encryption: enc, integrity: integ, encryptionKey: randomBytes(alg.keyLength + alg.saltLength), integrityKey: integ === null ? null : randomBytes(alg.integKeyLength) };
}

/** One SA per algorithm, in slots 0..5: inbound and outbound keys differ. */
function setup(): { crypto: EspCrypto; sas: Array<{ in: EspDirectionKeys; out: EspDirectionKeys }> } {
  const crypto = new EspCrypto(16, 256);
  const sas = ALGS.map(([e, i], s) => {
    const sa = { in: keys(e, i, 0x1000 + s), out: keys(e, i, 0x2000 + s) };
    crypto.install(s, ctx(sa.in), ctx(sa.out));
    return sa;
  });
  return { crypto, sas };
}

const innerPacket = fc.tuple(fc.boolean(), fc.uint8Array({ minLength: 20, maxLength: 1400 })).map(([v6, b]) => {
  const p = Uint8Array.from(b);
  p[0] = v6 ? 0x60 : 0x45;
  return p;
});

/** Lays out inner packets as ESP in slots of one buffer (the codec's job in the transport). */
function layout(sas: number[], inners: Uint8Array[], spis: number[], seqs: number[]): { data: Uint8Array; e: EspEntries } {
  const data = new Uint8Array(SLOT * inners.length);
  const e = new EspEntries(inners.length);
  inners.forEach((inner, k) => {
    const [enc, integ] = ALGS[sas[k]];
    const alg = espAlgorithm(enc, integ);
    const at = k * SLOT + 64;
    writeEspHeader(data, at, spis[k], seqs[k]);
    const payload = at + ESP_HEADER + alg.ivLength;
    data.set(inner, payload);
    writeEspTrailer(data, payload + inner.length, espPadding(alg, inner.length), nextHeaderOf(inner, 0, inner.length));
    e.push(at, espSealedLength(alg, inner.length), sas[k], k);
  });
  return { data, e };
}

const oracleKeys = (k: EspDirectionKeys): OracleKeys => k;

test('native seal, oracle open: random batches of mixed SAs (GCM bytes equal the oracle\'s)', () => {
  const { crypto, sas } = setup();
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: ALGS.length - 1 }), innerPacket, fc.integer({ min: 1, max: 0xffffffff })), { minLength: 1, maxLength: 40 }), (items) => {
      const { data, e } = layout(items.map((x) => x[0]), items.map((x) => x[1]), items.map((x) => sas[x[0]].out.spi), items.map((x) => x[2]));
      assert.equal(crypto.seal(data, e), items.length);
      items.forEach(([s, inner, seq], k) => {
        assert.equal(e.status[k], EspStatus.Ok);
        const esp = data.subarray(e.offset[k], e.offset[k] + e.length[k]);
        const opened = oracleOpen(oracleKeys(sas[s].out), esp);
        assert.ok(typeof opened !== 'string', `oracle refused: ${String(opened)}`);
        assert.deepEqual(Buffer.from(opened.inner), Buffer.from(inner));
        if (ALGS[s][1] === null) assert.deepEqual(Buffer.from(esp), Buffer.from(oracleSeal(oracleKeys(sas[s].out), sas[s].out.spi, seq, inner)));
      });
    }),
    { numRuns: 60 },
  );
});

test('oracle seal, native open: random batches; every flipped bit is an ICV failure, every cut a counted refusal', () => {
  const { crypto, sas } = setup();
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: ALGS.length - 1 }), innerPacket, fc.integer({ min: 1, max: 0xffffffff }), fc.nat(), fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 40 }),
      (items) => {
        const data = new Uint8Array(SLOT * items.length);
        const e = new EspEntries(items.length);
        const expect: number[] = [];
        items.forEach(([s, inner, seq, where, mutation], k) => {
          const esp = Uint8Array.from(oracleSeal(oracleKeys(sas[s].in), sas[s].in.spi, seq, inner));
          let len = esp.length;
          let want: number = EspStatus.Ok;
          if (mutation === 1) {
            const bit = where % (esp.length * 8);
            esp[bit >> 3] ^= 1 << (bit & 7);
            want = EspStatus.AuthFailed;
          } else if (mutation === 2) {
            len = where % esp.length;
            want = -1; // BadLength, or IcvFailed when the cut keeps the alignment
          }
          data.set(esp.subarray(0, len), k * SLOT);
          e.push(k * SLOT, len, s, k);
          expect.push(want);
        });
        crypto.open(data, e);
        items.forEach(([, inner], k) => {
          const st = e.status[k] as EspStatus;
          if (expect[k] === -1) assert.ok(st === EspStatus.BadLength || st === EspStatus.AuthFailed, `cut: ${st}`);
          else assert.equal(st, expect[k]);
          if (st === EspStatus.Ok) {
            const s = items[k][0];
            const payload = e.offset[k] + ESP_HEADER + espAlgorithm(...ALGS[s]).ivLength;
            assert.deepEqual(Buffer.from(data.subarray(payload, payload + inner.length)), Buffer.from(inner));
          }
        });
      },
    ),
    { numRuns: 60 },
  );
});

test('scapy-built ESP packets open natively', () => {
  interface Vector { encryption: EncryptionAlgorithm; integrity: IntegrityAlgorithm | null; encryptionKey: string; integrityKey: string | null; spi: number; esp: string; inner: string }
  const vectors = JSON.parse(readFileSync(new URL('../../test/fixtures/esp/esp-vectors.json', import.meta.url), 'utf8')) as Vector[];
  const crypto = new EspCrypto(vectors.length, vectors.length);
  const data = new Uint8Array(SLOT * vectors.length);
  const e = new EspEntries(vectors.length);
  vectors.forEach((v, k) => {
    const ks: EspDirectionKeys = { spi: v.spi, encryption: v.encryption, integrity: v.integrity, encryptionKey: Buffer.from(v.encryptionKey, 'hex'), integrityKey: v.integrityKey === null ? null : Buffer.from(v.integrityKey, 'hex') };
    crypto.install(k, ctx(ks), ctx(ks));
    const esp = Buffer.from(v.esp, 'hex');
    data.set(esp, k * SLOT);
    e.push(k * SLOT, esp.length, k, k);
  });
  assert.equal(crypto.open(data, e), vectors.length);
  vectors.forEach((v, k) => {
    const alg = espAlgorithm(v.encryption, v.integrity);
    const inner = Buffer.from(v.inner, 'hex');
    const payload = e.offset[k] + ESP_HEADER + alg.ivLength;
    assert.deepEqual(Buffer.from(data.subarray(payload, payload + inner.length)), inner, `${v.encryption}/${v.integrity}`);
  });
});

test('wrong direction, removed SA, out-of-bounds entries and bad keys are refused, not crashes', () => {
  const { crypto, sas } = setup();
  assert.equal(crypto.installed(), 2 * ALGS.length);
  const { data, e } = layout([0], [Uint8Array.from([0x45, ...new Array<number>(30).fill(1)])], [sas[0].out.spi], [1]);
  crypto.remove(0);
  assert.equal(crypto.seal(data, e), 0);
  assert.equal(e.status[0], EspStatus.NoKey);
  e.clear();
  e.push(data.length - 4, 100, 1, 0);
  crypto.seal(data, e);
  assert.equal(e.status[0], EspStatus.OutOfBounds);
  const bad = keys('aes128gcm16', null, 0x3000);
  bad.encryptionKey = new Uint8Array(5);
  assert.throws(() => crypto.install(3, ctx(bad), ctx(bad)), /20 or 36 bytes/);
  const cbc = keys('aes256', 'sha256', 0x3001);
  cbc.integrityKey = new Uint8Array(20);
  assert.throws(() => crypto.install(3, ctx(cbc), ctx(cbc)), /as long as the hash/);
});
