import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseIpv4 } from '../../wire/addr.js';
import { PacketBatch } from '../../common/packet-batch.js';
import { buildIp, buildUdp } from '../../wire/build.js';
import { GRE_TX_CHECKSUM, GRE_TX_KEY, GRE_TX_SEQUENCE, encapsulate4 } from './codec.js';
import { GreDrop } from './gre-drop.js';
import { GRE_RECEIVE_DROP, GRE_RECEIVE_REFLECT, GreOnramp } from './onramp.js';
import { INNER4, INNER6, innerPacketArb } from './fixtures.test.js';

const EDGE = '192.0.2.1';
const SITE_A = '198.51.100.1';
const SITE_B = '198.51.100.2';

/** The outer packet a site router at `remote` would send us (encapsulated with our own encoder, checked against Scapy in codec.test.ts). */
function fromSite(inner: Uint8Array, remote: string, flags = 0, key = 0, sequence = 0): Uint8Array {
  const buf = new Uint8Array(64 + inner.length);
  buf.set(inner, 64);
  const o = encapsulate4(buf, 64, inner.length, 0, flags, key, sequence, parseIpv4(remote), parseIpv4(EDGE), 1);
  assert.ok(o >= 0);
  return buf.slice(o);
}

function receive(g: GreOnramp, outer: Uint8Array): number {
  return g.receive(outer, 0, outer.length);
}

test('two sites with the same inner source are told apart by their tunnel', () => {
  const g = new GreOnramp(8);
  g.tunnels.add({ onrampId: 1, local: EDGE, remote: SITE_A });
  g.tunnels.add({ onrampId: 2, local: EDGE, remote: SITE_B });
  const same = buildUdp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 5000, dstPort: 53 });
  assert.equal(receive(g, fromSite(same, SITE_A)), 1);
  assert.deepEqual(g.decap.innerLength, same.length);
  assert.equal(receive(g, fromSite(same, SITE_B)), 2);
  assert.equal(receive(g, fromSite(same, '198.51.100.3')), GRE_RECEIVE_DROP);
  assert.equal(g.lastDrop, GreDrop.UnknownTunnel);
  assert.equal(g.drops[GreDrop.UnknownTunnel], 1);
  assert.deepEqual([g.tunnels.rxPackets[0], g.tunnels.rxPackets[1]], [1, 1]);
});

test('keys: the right key reaches its onramp, an unknown or missing key is a counted drop', () => {
  const g = new GreOnramp(8);
  g.tunnels.add({ onrampId: 5, local: EDGE, remote: SITE_A, key: 100 });
  g.tunnels.add({ onrampId: 6, local: EDGE, remote: SITE_A, key: 200 });
  assert.equal(receive(g, fromSite(INNER4, SITE_A, GRE_TX_KEY, 100)), 5);
  assert.equal(receive(g, fromSite(INNER4, SITE_A, GRE_TX_KEY, 200)), 6);
  assert.equal(receive(g, fromSite(INNER4, SITE_A, GRE_TX_KEY, 300)), GRE_RECEIVE_DROP);
  assert.equal(receive(g, fromSite(INNER4, SITE_A)), GRE_RECEIVE_DROP);
  assert.equal(g.drops[GreDrop.UnknownKey], 2);
});

test('malformed packets are counted by reason', () => {
  const g = new GreOnramp(2);
  g.tunnels.add({ onrampId: 1, local: EDGE, remote: SITE_A });
  const bad = fromSite(INNER4, SITE_A);
  bad[21] = 1; // GRE version 1
  assert.equal(receive(g, bad), GRE_RECEIVE_DROP);
  assert.equal(g.drops[GreDrop.BadVersion], 1);
  assert.equal(receive(g, Uint8Array.of(0x45, 0, 0)), GRE_RECEIVE_DROP);
  assert.equal(g.drops[GreDrop.Truncated], 1);
});

test('checksum and sequence tunnels: required on receipt, sent on transmit, old sequence numbers dropped', () => {
  const g = new GreOnramp(2);
  g.tunnels.add({ onrampId: 1, local: EDGE, remote: SITE_A, checksum: true, sequence: true });
  const both = GRE_TX_CHECKSUM | GRE_TX_SEQUENCE;
  assert.equal(receive(g, fromSite(INNER4, SITE_A, GRE_TX_SEQUENCE, 0, 1)), GRE_RECEIVE_DROP);
  assert.equal(g.lastDrop, GreDrop.MissingChecksum);
  assert.equal(receive(g, fromSite(INNER4, SITE_A, GRE_TX_CHECKSUM)), GRE_RECEIVE_DROP);
  assert.equal(g.lastDrop, GreDrop.MissingSequence);
  assert.equal(receive(g, fromSite(INNER4, SITE_A, both, 0, 0xfffffffe)), 1);
  assert.equal(receive(g, fromSite(INNER4, SITE_A, both, 0, 0xffffffff)), 1);
  assert.equal(receive(g, fromSite(INNER4, SITE_A, both, 0, 1)), 1, 'wraps around (serial arithmetic)');
  assert.equal(receive(g, fromSite(INNER4, SITE_A, both, 0, 0)), GRE_RECEIVE_DROP);
  assert.equal(g.lastDrop, GreDrop.OutOfOrder);
  assert.equal(receive(g, fromSite(INNER4, SITE_A, both, 0, 5)), 1, 'a gap is accepted');
  assert.equal(receive(g, fromSite(INNER4, SITE_A, both, 0, 4)), GRE_RECEIVE_DROP);

  const batch = new PacketBatch(2);
  for (let k = 0; k < 2; k++) {
    const i = batch.push(INNER4, 0, INNER4.length, 0);
    const o = g.send(1, batch.data, batch.offset[i], batch.length[i], i * batch.slotSize);
    assert.ok(o >= 0);
    assert.equal(g.lastLength, 20 + 12 + INNER4.length);
    assert.equal(g.tunnels.family[0], 4);
    const loop = new GreOnramp(2);
    loop.tunnels.add({ onrampId: 9, local: SITE_A, remote: EDGE });
    assert.equal(loop.receive(batch.data, o, g.lastLength), 9);
    assert.equal(loop.decap.hasChecksum, true);
    assert.equal(loop.decap.sequence, k, 'sequence numbers count from 0');
    assert.equal((batch.data[o + 4] << 8) | batch.data[o + 5], k, 'IP id counts per tunnel');
  }
});

test('send into PacketBatch headroom, then receive at the far end: the same inner bytes, both outer families', () => {
  fc.assert(
    fc.property(innerPacketArb, fc.boolean(), fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }), (inner, v6, key) => {
      const [edge, site] = v6 ? ['2001:db8:e::1', '2001:db8:a::1'] : [EDGE, SITE_A];
      const near = new GreOnramp(2);
      near.tunnels.add({ onrampId: 3, local: edge, remote: site, key });
      const far = new GreOnramp(2);
      far.tunnels.add({ onrampId: 4, local: site, remote: edge, key });
      const batch = new PacketBatch(2, 2048, 64);
      batch.push(inner, 0, inner.length, 0);
      const i = batch.push(inner, 0, inner.length, 0);
      const o = near.send(3, batch.data, batch.offset[i], batch.length[i], i * batch.slotSize);
      assert.ok(o >= i * batch.slotSize);
      assert.equal(far.receive(batch.data, o, near.lastLength), 4);
      assert.deepEqual(batch.data.slice(far.decap.innerOffset, far.decap.innerOffset + far.decap.innerLength), inner);
      assert.deepEqual(batch.packet(0), inner, 'the previous slot is untouched');
    }),
    { numRuns: 200 },
  );
});

test('send: unknown onramp and missing headroom are counted drops', () => {
  const g = new GreOnramp(2);
  g.tunnels.add({ onrampId: 1, local: EDGE, remote: SITE_A });
  const buf = new Uint8Array(100);
  buf.set(INNER6, 10);
  assert.equal(g.send(2, buf, 10, INNER6.length, 0), -GreDrop.NoTunnel);
  assert.equal(g.send(1, buf, 10, INNER6.length, 0), -GreDrop.NoHeadroom);
  assert.deepEqual([g.drops[GreDrop.NoTunnel], g.drops[GreDrop.NoHeadroom]], [1, 1]);
  assert.equal(g.tunnels.txPackets[0], 0);
});

test('a Cisco-style keepalive is reflected; GRE to anyone else is ordinary traffic', () => {
  const g = new GreOnramp(2);
  g.tunnels.add({ onrampId: 1, local: EDGE, remote: SITE_A });
  // The site wraps "GRE(protocol 0) from the edge to the site" and sends it to us.
  const reply = buildIp({ src: EDGE, dst: SITE_A }, 47, new Uint8Array(4));
  assert.equal(receive(g, fromSite(reply, SITE_A)), GRE_RECEIVE_REFLECT);
  assert.equal(g.lastTunnel, 0);
  assert.equal(g.decap.innerLength, reply.length);
  const other = buildIp({ src: EDGE, dst: '203.0.113.9' }, 47, new Uint8Array(4));
  assert.equal(receive(g, fromSite(other, SITE_A)), 1);
});
