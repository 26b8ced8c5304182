import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Exchange, FLAG_INITIATOR, FLAG_RESPONSE, NotifyType, PayloadType, ProtocolId, TransformType, ENCR_AES_GCM_16, PRF_HMAC_SHA2_256, DH_ECP256, CRITICAL_BIT } from './constants.js';
import {
  IkeWireError,
  buildEncryptedMessage,
  buildMessage,
  openEncrypted,
  parseMessage,
  type IkeHeader,
  type IkeMessage,
  type Payload,
  type Proposal,
  type TsEntry,
} from './wire.js';
import {
  AUTH_REQ,
  AUTH_RESP,
  CHILD_DELETE_REQ,
  CHILD_REKEY_REQ,
  CHILD_REKEY_RESP,
  IKE_DELETE_REQ,
  IKE_REKEY_REQ,
  SA_INIT_REQ,
  SA_INIT_RESP,
  hex,
} from './fixtures.test.js';
import { SkCodec } from './crypto.js';

const ALL_FIXTURES = { SA_INIT_REQ, SA_INIT_RESP, AUTH_REQ, AUTH_RESP, CHILD_REKEY_REQ, CHILD_REKEY_RESP, CHILD_DELETE_REQ, IKE_REKEY_REQ, IKE_DELETE_REQ };

function parsed(bytes: Uint8Array): IkeMessage {
  const r = parseMessage(bytes);
  if (!r.ok) assert.fail(`did not parse: ${r.detail}`);
  return r.value;
}

// --- fixtures: strongSwan's bytes -------------------------------------------------------------------

test('fixture: strongSwan IKE_SA_INIT request', () => {
  const m = parsed(SA_INIT_REQ);
  assert.equal(m.header.exchange, Exchange.IkeSaInit);
  assert.equal(m.header.flags, FLAG_INITIATOR);
  assert.equal(m.header.messageId, 0);
  assert.deepEqual(m.header.spiR, new Uint8Array(8));
  assert.deepEqual(
    m.payloads.map((p) => p.type),
    [PayloadType.SA, PayloadType.KE, PayloadType.Nonce, PayloadType.Notify, PayloadType.Notify, PayloadType.Notify, PayloadType.Notify, PayloadType.Notify],
  );
  const sa = m.payloads[0];
  assert.ok(sa.type === PayloadType.SA);
  assert.deepEqual(sa.proposals, [
    {
      number: 1,
      protocol: ProtocolId.IKE,
      spi: new Uint8Array(0),
      transforms: [
        { type: TransformType.ENCR, id: ENCR_AES_GCM_16, keyLength: 256 },
        { type: TransformType.PRF, id: PRF_HMAC_SHA2_256, keyLength: null },
        { type: TransformType.DH, id: DH_ECP256, keyLength: null },
      ],
    },
  ]);
  const ke = m.payloads[1];
  assert.ok(ke.type === PayloadType.KE);
  assert.equal(ke.group, DH_ECP256);
  assert.equal(ke.data.length, 64); // RFC 5903 §7: x ‖ y
  const nonce = m.payloads[2];
  assert.ok(nonce.type === PayloadType.Nonce && nonce.data.length === 32);
  const notifies = m.payloads.slice(3).map((p) => (p.type === PayloadType.Notify ? p.notifyType : -1));
  assert.deepEqual(notifies.slice(0, 2), [NotifyType.NatDetectionSourceIp, NotifyType.NatDetectionDestinationIp]);
  assert.ok(notifies.includes(NotifyType.Ikev2FragmentationSupported));
});

test('fixture: strongSwan IKE_SA_INIT response', () => {
  const m = parsed(SA_INIT_RESP);
  assert.equal(m.header.flags, FLAG_RESPONSE);
  assert.notDeepEqual(m.header.spiR, new Uint8Array(8));
  assert.deepEqual(m.header.spiI, parsed(SA_INIT_REQ).header.spiI);
  assert.equal(m.payloads[0].type, PayloadType.SA);
});

test('fixture: plaintext messages rebuild to the same bytes', () => {
  for (const bytes of [SA_INIT_REQ, SA_INIT_RESP]) {
    const m = parsed(bytes);
    assert.deepEqual(buildMessage(m.header, m.payloads), bytes);
  }
});

test('fixture: encrypted messages parse to one SK payload naming the first inner payload', () => {
  const expectFirst: Record<string, number> = {
    AUTH_REQ: PayloadType.IDi,
    AUTH_RESP: PayloadType.IDr,
    CHILD_REKEY_REQ: PayloadType.Notify, // REKEY_SA comes first
    IKE_REKEY_REQ: PayloadType.SA,
    IKE_DELETE_REQ: PayloadType.Delete,
    CHILD_DELETE_REQ: PayloadType.Delete,
  };
  for (const [name, first] of Object.entries(expectFirst)) {
    const bytes = ALL_FIXTURES[name as keyof typeof ALL_FIXTURES];
    const m = parsed(bytes);
    assert.equal(m.payloads.length, 1, name);
    const sk = m.payloads[0];
    assert.ok(sk.type === PayloadType.SK, name);
    assert.equal(sk.firstPayload, first, name);
    assert.equal(sk.offset, 28, name);
    assert.equal(sk.body.length, bytes.length - 32, name);
    assert.deepEqual(buildMessage(m.header, m.payloads), bytes, name);
  }
  assert.equal(parsed(AUTH_REQ).header.exchange, Exchange.IkeAuth);
  assert.equal(parsed(CHILD_REKEY_REQ).header.exchange, Exchange.CreateChildSa);
  assert.equal(parsed(IKE_DELETE_REQ).header.exchange, Exchange.Informational);
});

// --- errors -----------------------------------------------------------------------------------------

test('every truncation of every fixture is a typed error', () => {
  for (const [name, bytes] of Object.entries(ALL_FIXTURES)) {
    for (let n = 0; n < bytes.length; n++) {
      const r = parseMessage(bytes.subarray(0, n));
      assert.equal(r.ok, false, `${name} cut at ${n}`);
      if (!r.ok) assert.ok([IkeWireError.Truncated, IkeWireError.BadLength].includes(r.error), `${name} at ${n}: ${r.detail}`);
    }
  }
});

test('a truncated message with its length field fixed up: Truncated or BadPayload, never a throw', () => {
  for (const bytes of [SA_INIT_REQ, SA_INIT_RESP]) {
    for (let n = 28; n < bytes.length; n++) {
      const cut = bytes.slice(0, n);
      new DataView(cut.buffer).setUint32(24, n);
      const r = parseMessage(cut);
      assert.equal(r.ok, false);
      if (!r.ok) assert.ok([IkeWireError.Truncated, IkeWireError.BadPayload, IkeWireError.BadLength].includes(r.error), r.detail);
    }
  }
});

const HEADER: IkeHeader = { spiI: hex('0102030405060708'), spiR: new Uint8Array(8), exchange: Exchange.IkeSaInit, flags: FLAG_INITIATOR, messageId: 0 };

/** A message whose payload number `at` is replaced by an unknown type 200 with the given critical bit. */
function withUnknown(critical: boolean): Uint8Array {
  const bytes = buildMessage(HEADER, [
    { type: PayloadType.Nonce, data: hex('00112233445566778899aabbccddeeff') },
    { type: PayloadType.Vendor, data: hex('aabbcc') },
    { type: PayloadType.Notify, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.InitialContact, data: new Uint8Array(0) },
  ]);
  // The Vendor payload starts at 28 + 4 + 16; the Nonce's header names it.
  const vendorAt = 28 + 4 + 16;
  bytes[28] = 200;
  bytes[vendorAt + 1] = critical ? CRITICAL_BIT : 0;
  return bytes;
}

test('an unknown non-critical payload is skipped; a critical one is UnsupportedCritical with its type', () => {
  const skipped = parsed(withUnknown(false));
  assert.deepEqual(
    skipped.payloads.map((p) => p.type),
    [PayloadType.Nonce, PayloadType.Notify],
  );
  const r = parseMessage(withUnknown(true));
  assert.ok(!r.ok && r.error === IkeWireError.UnsupportedCritical && r.payloadType === 200);
});

test('a known payload with the critical bit is parsed as usual (§2.5)', () => {
  const bytes = buildMessage(HEADER, [{ type: PayloadType.Nonce, data: hex('00112233445566778899aabbccddeeff') }]);
  bytes[29] = CRITICAL_BIT;
  assert.equal(parsed(bytes).payloads[0].type, PayloadType.Nonce);
});

test('major version 3 is BadVersion; a length field that lies is BadLength; bytes after SK are SkNotLast', () => {
  const v3 = SA_INIT_REQ.slice();
  v3[17] = 0x30;
  assert.ok(((r) => !r.ok && r.error === IkeWireError.BadVersion)(parseMessage(v3)));
  const long = new Uint8Array(SA_INIT_REQ.length + 4);
  long.set(SA_INIT_REQ);
  assert.ok(((r) => !r.ok && r.error === IkeWireError.BadLength)(parseMessage(long)));
  new DataView(long.buffer).setUint32(24, long.length);
  assert.ok(((r) => !r.ok && r.error === IkeWireError.BadLength)(parseMessage(long)));
  const m = buildMessage(HEADER, [
    { type: PayloadType.SK, firstPayload: PayloadType.Nonce, body: hex('00'.repeat(20)) },
    { type: PayloadType.Vendor, data: hex('01') },
  ]);
  assert.ok(((r) => !r.ok && r.error === IkeWireError.SkNotLast)(parseMessage(m)));
});

test('SA substructures: wrong "last" bytes, transform counts and attribute lengths are BadPayload', () => {
  const m = parsed(SA_INIT_REQ);
  const good = buildMessage(m.header, m.payloads.slice(0, 1));
  const sa = 28 + 4; // proposal starts here
  const mutations: Array<[number, number]> = [
    [sa, 1], // proposal "last" byte
    [sa + 7, 4], // transform count 4, three present
    [sa + 7, 2], // transform count 2: the third is left over
    [sa + 8, 0], // first transform's "last" byte says last
    [sa + 8 + 3, 20], // first transform's length overruns
  ];
  for (const [at, value] of mutations) {
    const bad = good.slice();
    bad[at] = value;
    const r = parseMessage(bad);
    assert.ok(!r.ok && r.error === IkeWireError.BadPayload, `byte ${at} = ${value}: ${r.ok ? 'parsed' : r.detail}`);
  }
});

// --- SK ---------------------------------------------------------------------------------------------

test('an encrypted message opens to its inner payloads; a flipped bit does not open', () => {
  const key = hex('000102030405060708090a0b0c0d0e0f10111213');
  const suite = { encryption: 'aes128gcm16', integrity: null, prf: 'prfsha256', dh: 'ecp256' } as const;
  const inner: Payload[] = [
    { type: PayloadType.IDi, idType: 2, data: new TextEncoder().encode('site.example') },
    { type: PayloadType.AUTH, method: 2, data: hex('aa'.repeat(32)) },
  ];
  const header = { ...HEADER, exchange: Exchange.IkeAuth, messageId: 1 };
  const bytes = buildEncryptedMessage(header, inner, new SkCodec(suite, key, null));
  const m = parsed(bytes);
  const opened = openEncrypted(bytes, m, new SkCodec(suite, key, null));
  assert.ok(opened !== null && opened.ok);
  assert.deepEqual(opened.value, inner);
  for (const at of [0, 17, 19, 23, 28, 31, 40, bytes.length - 1]) {
    const bad = bytes.slice();
    bad[at] ^= 1;
    const r = parseMessage(bad);
    if (!r.ok) continue;
    assert.equal(openEncrypted(bad, r.value, new SkCodec(suite, key, null)), null, `bit flipped at ${at}`);
  }
});

// --- properties -------------------------------------------------------------------------------------

const bytesArb = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
const transformArb: fc.Arbitrary<Proposal['transforms'][number]> = fc.record({
  type: fc.integer({ min: 1, max: 5 }),
  id: fc.integer({ min: 0, max: 0xffff }),
  keyLength: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: null }),
});
const proposalArb: fc.Arbitrary<Proposal> = fc.record({
  number: fc.integer({ min: 1, max: 255 }),
  protocol: fc.integer({ min: 1, max: 3 }),
  spi: fc.constantFrom(0, 4, 8).chain((n) => bytesArb(n, n)),
  transforms: fc.array(transformArb, { minLength: 1, maxLength: 8 }),
});
const tsArb: fc.Arbitrary<TsEntry> = fc.constantFrom(4, 16).chain((n) =>
  fc.record({
    type: fc.constant(n === 4 ? 7 : 8),
    protocol: fc.integer({ min: 0, max: 255 }),
    startPort: fc.integer({ min: 0, max: 0xffff }),
    endPort: fc.integer({ min: 0, max: 0xffff }),
    start: bytesArb(n, n),
    end: bytesArb(n, n),
  }),
);
const payloadArb: fc.Arbitrary<Payload> = fc.oneof(
  fc.record({ type: fc.constant(PayloadType.SA as const), proposals: fc.array(proposalArb, { minLength: 1, maxLength: 4 }) }),
  fc.record({ type: fc.constant(PayloadType.KE as const), group: fc.integer({ min: 0, max: 0xffff }), data: bytesArb(0, 300) }),
  fc.record({ type: fc.constant(PayloadType.Nonce as const), data: bytesArb(0, 64) }),
  fc.record({ type: fc.constantFrom(PayloadType.IDi as const, PayloadType.IDr as const), idType: fc.integer({ min: 0, max: 255 }), data: bytesArb(0, 40) }),
  fc.record({ type: fc.constant(PayloadType.AUTH as const), method: fc.integer({ min: 0, max: 255 }), data: bytesArb(0, 64) }),
  fc.record({
    type: fc.constant(PayloadType.Notify as const),
    protocol: fc.integer({ min: 0, max: 3 }),
    spi: fc.constantFrom(0, 4, 8).chain((n) => bytesArb(n, n)),
    notifyType: fc.integer({ min: 0, max: 0xffff }),
    data: bytesArb(0, 40),
  }),
  fc.constantFrom(4, 8).chain((n) =>
    fc.record({ type: fc.constant(PayloadType.Delete as const), protocol: fc.integer({ min: 1, max: 3 }), spiSize: fc.constant(n), spis: fc.array(bytesArb(n, n), { maxLength: 5 }) }),
  ),
  fc.record({ type: fc.constant(PayloadType.Vendor as const), data: bytesArb(0, 40) }),
  fc.record({ type: fc.constantFrom(PayloadType.TSi as const, PayloadType.TSr as const), selectors: fc.array(tsArb, { maxLength: 4 }) }),
  fc.record({ type: fc.constantFrom(PayloadType.CP as const, PayloadType.CERTREQ as const), data: bytesArb(0, 20) }),
);
const headerArb: fc.Arbitrary<IkeHeader> = fc.record({
  spiI: bytesArb(8, 8),
  spiR: bytesArb(8, 8),
  exchange: fc.integer({ min: 34, max: 37 }),
  flags: fc.constantFrom(FLAG_INITIATOR, FLAG_RESPONSE, 0, FLAG_INITIATOR | FLAG_RESPONSE),
  messageId: fc.integer({ min: 0, max: 0xffffffff }),
});
const messageArb = fc.record({
  header: headerArb,
  payloads: fc.array(payloadArb, { maxLength: 8 }),
  sk: fc.option(fc.record({ type: fc.constant(PayloadType.SK as const), firstPayload: fc.integer({ min: 0, max: 255 }), body: bytesArb(0, 64) }), { nil: null }),
});

test('property: parse(build(m)) = m', () => {
  fc.assert(
    fc.property(messageArb, ({ header, payloads, sk }) => {
      const all: Payload[] = sk === null ? payloads : [...payloads, sk];
      const bytes = buildMessage(header, all);
      const r = parseMessage(bytes);
      if (!r.ok) throw new Error(r.detail);
      const expected = sk === null ? all : [...payloads, { ...sk, offset: bytes.length - 4 - sk.body.length }];
      assert.deepEqual(r.value, structuredClone({ header, payloads: expected }));
    }),
  );
});

test('property: arbitrary bytes never throw and either parse or name an error', () => {
  fc.assert(
    fc.property(bytesArb(0, 200), fc.boolean(), (bytes, fixLength) => {
      if (fixLength && bytes.length >= 28) {
        bytes[17] = 0x20;
        new DataView(bytes.buffer, bytes.byteOffset).setUint32(24, bytes.length);
      }
      const r = parseMessage(bytes);
      if (!r.ok) assert.ok(r.error > 0 && r.detail.length > 0);
    }),
    { numRuns: 2000 },
  );
});

test('property: mutated fixtures (bytes flipped, payload chains spliced) never throw', () => {
  const fixtures = Object.values(ALL_FIXTURES);
  fc.assert(
    fc.property(
      fc.constantFrom(...fixtures),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
      fc.option(fc.tuple(fc.nat(), fc.nat()), { nil: null }),
      (fixture, flips, cut) => {
        let bytes = fixture.slice();
        for (const [at, v] of flips) bytes[at % bytes.length] = v;
        if (cut !== null) {
          const a = 28 + (cut[0] % (bytes.length - 28));
          const b = a + (cut[1] % (bytes.length - a + 1));
          bytes = Uint8Array.from([...bytes.subarray(0, a), ...bytes.subarray(b)]);
          new DataView(bytes.buffer).setUint32(24, bytes.length);
        }
        const r = parseMessage(bytes);
        if (r.ok) buildMessage(r.value.header, r.value.payloads); // what parsed also rebuilds
        else assert.ok(r.detail.length > 0);
      },
    ),
    { numRuns: 3000 },
  );
});
