// The native batched WireGuard crypto (native/src/wireguard.cc via wg-crypto.ts) against node:crypto's
// chacha20-poly1305 as the oracle, one createCipheriv per message (RFC 8439 §2.8, whitepaper §5.4.6 nonce):
// random keys in several slots, counters up to 2^53, lengths 0–1500, mixed slots in one batch, tampering. The
// engine's own node:crypto AEAD (NodeWgAead) is held to the same oracle; then a device on the native AEAD talks
// to one on node:crypto through the batch calls, and its keys leave the addon when sessions end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ADDR_A, ADDR_B, PORT_A, PORT_B, T0, copyOut, deliver, endpoint, handshake, ipv4Packet, pair } from '../../test/support/wireguard.js';
import { CryptoEntries, CryptoStatus } from '../common/crypto-entries.js';
import { NodeWgAead, WG_KEY_SLOTS, sealedLength, type WgAead } from '../onramp/wireguard/aead.js';
import { DATA_HEADER_LEN, REJECT_AFTER_TIME_MS } from '../onramp/wireguard/constants.js';
import { WgDrop } from '../onramp/wireguard/wg-drop.js';
import { WgCrypto } from './wg-crypto.js';

const TAG = 16;
const SLOTS = 8;
const SPACING = 1600;
const MAX_SAFE_COUNTER = Number.MAX_SAFE_INTEGER;

/** The oracle: header (type 4, receiver, counter LE) ‖ ChaCha20-Poly1305(key, 0^32 ‖ counter, body) ‖ tag. */
function oracleSeal(key: Uint8Array, receiver: number, counter: number, body: Uint8Array): Uint8Array {
  const header = new Uint8Array(DATA_HEADER_LEN);
  const view = new DataView(header.buffer);
  view.setUint32(0, 4, true);
  view.setUint32(4, receiver, true);
  view.setBigUint64(8, BigInt(counter), true);
  const nonce = new Uint8Array(12);
  nonce.set(header.subarray(8, 16), 4);
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  const ct = Buffer.concat([c.update(body), c.final()]);
  return Uint8Array.from(Buffer.concat([header, ct, c.getAuthTag()]));
}

function oracleOpen(key: Uint8Array, message: Uint8Array): Uint8Array | null {
  const nonce = new Uint8Array(12);
  nonce.set(message.subarray(8, 16), 4);
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  d.setAuthTag(message.subarray(message.length - TAG));
  const pt = d.update(message.subarray(DATA_HEADER_LEN, message.length - TAG));
  try {
    d.final();
  } catch {
    return null;
  }
  return Uint8Array.from(pt);
}

interface Keys {
  send: Uint8Array;
  recv: Uint8Array;
}

function installAll(aead: WgAead): Keys[] {
  const keys: Keys[] = [];
  for (let s = 0; s < SLOTS; s++) {
    const k = { send: Uint8Array.from(randomBytes(32)), recv: Uint8Array.from(randomBytes(32)) };
    aead.install(s, k.send, k.recv);
    keys.push(k);
  }
  return keys;
}

const entry = fc.record({
  slot: fc.integer({ min: 0, max: SLOTS - 1 }),
  counter: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: MAX_SAFE_COUNTER })),
  receiver: fc.integer({ min: 0, max: 0xffffffff }),
  length: fc.integer({ min: 0, max: 1500 }),
  tamper: fc.constantFrom('none', 'none', 'tag', 'body', 'counter'),
});

const implementations: Array<[string, () => WgAead]> = [
  ['native WgCrypto', () => new WgCrypto(WG_KEY_SLOTS)],
  ['NodeWgAead', () => new NodeWgAead()],
];

for (const [name, make] of implementations) {
  test(`${name}: a batch of mixed slots seals exactly as node:crypto and opens what node:crypto sealed; tampering fails`, () => {
    const aead = make();
    const keys = installAll(aead);
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 24 }), (list) => {
        const data = new Uint8Array(SPACING * list.length);
        const e = new CryptoEntries(list.length);
        const bodies = list.map((x) => Uint8Array.from(randomBytes(x.length)));
        // Seal: header and body laid out as the device does, the batch seals in place.
        list.forEach((x, k) => {
          const want = oracleSeal(keys[x.slot].send, x.receiver, x.counter, bodies[k]);
          data.set(want.subarray(0, DATA_HEADER_LEN), k * SPACING);
          data.set(bodies[k], k * SPACING + DATA_HEADER_LEN);
          e.push(k * SPACING, want.length, x.slot, k);
        });
        assert.equal(aead.seal(data, e), list.length);
        list.forEach((x, k) => {
          const want = oracleSeal(keys[x.slot].send, x.receiver, x.counter, bodies[k]);
          assert.deepEqual(data.subarray(k * SPACING, k * SPACING + want.length), want);
        });
        // Open: messages sealed by the oracle with the receiving keys, some tampered with.
        e.clear();
        const expectOk: boolean[] = [];
        list.forEach((x, k) => {
          const m = oracleSeal(keys[x.slot].recv, x.receiver, x.counter, bodies[k]);
          if (x.tamper === 'tag') m[m.length - 1] ^= 1;
          if (x.tamper === 'body' && x.length > 0) m[DATA_HEADER_LEN] ^= 0x80;
          if (x.tamper === 'counter') m[8] ^= 1;
          expectOk.push(oracleOpen(keys[x.slot].recv, m) !== null);
          data.set(m, k * SPACING);
          e.push(k * SPACING, m.length, x.slot, k);
        });
        assert.equal(aead.open(data, e), expectOk.filter(Boolean).length);
        list.forEach((x, k) => {
          assert.equal(e.status[k], expectOk[k] ? CryptoStatus.Ok : CryptoStatus.AuthFailed, `entry ${k} (${x.tamper})`);
          if (expectOk[k]) assert.deepEqual(data.subarray(k * SPACING + DATA_HEADER_LEN, k * SPACING + DATA_HEADER_LEN + x.length), bodies[k]);
        });
      }),
      { numRuns: 150 },
    );
  });

  test(`${name}: an empty slot, a removed one, a short message and one outside the buffer are flagged per entry`, () => {
    const aead = make();
    const keys = installAll(aead);
    assert.equal(aead.installed(), SLOTS);
    aead.remove(3);
    assert.equal(aead.installed(), SLOTS - 1);
    const data = new Uint8Array(4 * SPACING);
    const good = oracleSeal(keys[0].recv, 1, 7, new Uint8Array(100));
    data.set(good, 0);
    const e = new CryptoEntries(6);
    e.push(0, good.length, 0, 0); // fine
    e.push(SPACING, 48, 3, 1); // removed
    e.push(SPACING, 48, SLOTS + 1, 2); // never installed
    e.push(2 * SPACING, DATA_HEADER_LEN + TAG - 1, 1, 3); // shorter than an encrypted keepalive
    e.push(3 * SPACING, SPACING + 1, 1, 4); // past the end
    assert.equal(aead.open(data, e), 1);
    assert.deepEqual(Array.from(e.status.subarray(0, 5)), [CryptoStatus.Ok, CryptoStatus.NoKey, CryptoStatus.NoKey, CryptoStatus.BadLength, CryptoStatus.OutOfBounds]);
  });
}

test('native WgCrypto: bad arguments are clear errors, not crashes', () => {
  const c = new WgCrypto(4);
  assert.throws(() => c.install(4, new Uint8Array(32), new Uint8Array(32)), /slot out of range/);
  assert.throws(() => c.install(0, new Uint8Array(31), new Uint8Array(32)), /32 bytes/);
  assert.throws(() => new WgCrypto(0), /slots must be/);
  const e = new CryptoEntries(2);
  e.n = 3; // more entries than its arrays hold
  assert.throws(() => c.seal(new Uint8Array(10), e), /n exceeds/);
  c.remove(99); // out of range: nothing to do
});

// --- the device on the native AEAD -------------------------------------------------------------------------------

const hex = (b: Uint8Array | null): string => (b ? Buffer.from(b).toString('hex') : 'null');

test('device on the native AEAD: handshake with a node:crypto peer, then batches both ways through prepareSeal / prepareOpen / finishOpen', () => {
  const native = new WgCrypto(WG_KEY_SLOTS);
  const { a, b } = pair({ aeadA: native });
  const first = ipv4Packet('10.0.1.5', '10.0.2.9', 100);
  const { delivered } = handshake(a, b, first, T0);
  assert.equal(hex(delivered[0].packet), hex(first));
  assert.equal(native.installed(), 1, 'one session, its keys in the addon');

  // A seals a batch in its own buffer: packets at 128 bytes into 2 KiB slots, as the transport lays them out.
  const slot = 2048;
  const headroom = 128;
  const packets = [0, 1, 15, 16, 700, 1380].map((n, k) => ipv4Packet('10.0.1.5', '10.0.2.9', n, k + 1));
  const data = new Uint8Array(packets.length * slot);
  const e = new CryptoEntries(packets.length);
  const side = copyOut([]);
  packets.forEach((p, k) => {
    const off = k * slot + headroom;
    data.set(p, off);
    const keySlot = a.prepareSeal(0, data, off, p.length, T0 + 1, side);
    assert.ok(keySlot >= 0);
    assert.equal(a.sealTicket.length, sealedLength(p.length));
    e.push(off - DATA_HEADER_LEN, a.sealTicket.length, keySlot, k);
  });
  assert.equal(native.seal(data, e), packets.length);
  const datagrams = Array.from({ length: e.n }, (_, k) => ({ data: data.slice(e.offset[k], e.offset[k] + e.length[k]), endpoint: endpoint(ADDR_B, PORT_B), peer: 0 }));
  const got = deliver(b, datagrams, ADDR_A, PORT_A, T0 + 1);
  assert.deepEqual(got.map((r) => hex(r.packet)), packets.map(hex), 'the node:crypto peer reads every one');

  // B answers; A opens the batch in place, one native call, the replay window moving only in finishOpen.
  const replies = packets.map((p, k) => copyOut(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', p.length, 0x40 + k), T0 + 2))[0]);
  const inbox = new Uint8Array(replies.length * slot + slot);
  const ie = new CryptoEntries(replies.length + 1);
  replies.forEach((o, k) => {
    inbox.set(o.data, k * slot);
    const keySlot = a.prepareOpen(inbox, k * slot, o.data.length, T0 + 2);
    assert.ok(keySlot >= 0);
    ie.push(k * slot, o.data.length, keySlot, k);
  });
  // A copy of the first reply in the same batch: it passes the pre-check, and finishOpen refuses it.
  inbox.set(replies[0].data, replies.length * slot);
  ie.push(replies.length * slot, replies[0].data.length, a.prepareOpen(inbox, replies.length * slot, replies[0].data.length, T0 + 2), replies.length);
  assert.equal(native.open(inbox, ie), replies.length + 1);
  const src = endpoint(ADDR_B, PORT_B);
  for (let k = 0; k < replies.length; k++) {
    const r = a.finishOpen(inbox, ie.offset[k], ie.length[k], ie.status[k], src, T0 + 2);
    assert.equal(r.kind, 'data');
    assert.equal(hex(inbox.slice(r.packetOffset, r.packetOffset + r.packetLength)), hex(ipv4Packet('10.0.2.9', '10.0.1.5', packets[k].length, 0x40 + k)));
  }
  const dup = a.finishOpen(inbox, ie.offset[replies.length], ie.length[replies.length], ie.status[replies.length], src, T0 + 2);
  assert.equal(dup.kind, 'drop');
  assert.equal(dup.reason, WgDrop.Replay);

  // A forged message (tag flipped) fails in the batch and leaves the window where it was: the real one still opens.
  const real = copyOut(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 30), T0 + 3))[0].data;
  const forged = real.slice();
  forged[forged.length - 1] ^= 1;
  const [bad] = deliver(a, [{ data: forged, endpoint: src, peer: 0 }], ADDR_B, PORT_B, T0 + 3);
  assert.equal(bad.reason, WgDrop.DecryptFailed);
  const [ok] = deliver(a, [{ data: real, endpoint: src, peer: 0 }], ADDR_B, PORT_B, T0 + 3);
  assert.equal(ok.kind, 'data');
});

test('device on the native AEAD: keys leave the addon at Reject-After-Time and when the peer is removed', () => {
  const native = new WgCrypto(WG_KEY_SLOTS);
  const { a, b } = pair({ aeadA: native });
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0);
  assert.equal(native.installed(), 1);
  assert.ok(a.nextDeadline() <= T0 + REJECT_AFTER_TIME_MS, 'a timer is due by Reject-After-Time');
  a.poll(T0 + REJECT_AFTER_TIME_MS - 1);
  assert.equal(native.installed(), 1);
  a.poll(T0 + REJECT_AFTER_TIME_MS);
  assert.equal(native.installed(), 0, 'expired: the keys are gone');
  assert.equal(a.prepareSeal(0, new Uint8Array(256), 64, 20, T0 + REJECT_AFTER_TIME_MS, []), -1, 'nothing is sealed with an expired session');

  const again = pair({ aeadA: native });
  handshake(again.a, again.b, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0);
  assert.equal(native.installed(), 1);
  again.a.removePeer(0);
  assert.equal(native.installed(), 0, 'removed peer: the keys are gone');
});
