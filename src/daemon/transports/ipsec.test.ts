// The IPsec transport without a TUN: ESP in (raw and in UDP 4500) through the underlay demux to the pipeline's
// input, ESP out through deliver and the batch finish, checked against the node:crypto oracle; IKE datagrams,
// keepalives, make-before-break, replay / unknown SPI / ICV drops, sequence exhaustion, the tunnel MTU.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { oracleOpen, oracleSeal } from '../../../test/support/esp-oracle.js';
import { RecordingUnderlay } from '../../../test/support/recording-underlay.js';
import { transportHost } from '../../../test/support/transport-host.js';
import { PacketBatch } from '../../common/packet-batch.js';
import { ESP_MAX_SEQUENCE, ESP_SEQUENCE_EXHAUSTED, EspDrop, ROUTE_BASED, espAlgorithm } from '../../onramp/ipsec/esp/index.js';
import type { ChildSa, EncryptionAlgorithm, EspDirectionKeys, IntegrityAlgorithm } from '../../onramp/ipsec/types.js';
import { parseIpv4 } from '../../wire/addr.js';
import { buildIp, buildUdp, parsePacket } from '../../wire/build.js';
import { IPPROTO_ESP, IPPROTO_GRE, IPPROTO_UDP } from '../../wire/constants.js';
import type { PacketInfo } from '../../wire/packet-info.js';
import { EdgeCounter } from './counters.js';
import { IpsecTransport, type IkeDatagramPath } from './ipsec.js';
import type { TransportHost } from './transport.js';
import type { UnderlayReceiver } from './underlay.js';

const EDGE = '192.0.2.1';
const PEER = '198.51.100.7';
const ONRAMP = 5;

class Keeper implements UnderlayReceiver {
  receiveUnderlay(batch: PacketBatch, i: number, j: number, _info: PacketInfo): number {
    batch.offset[j] = batch.offset[i];
    batch.length[j] = batch.length[i];
    batch.ingress[j] = 9;
    return j + 1;
  }
}

function keys(enc: EncryptionAlgorithm, integ: IntegrityAlgorithm | null, spi: number): EspDirectionKeys {
  const alg = espAlgorithm(enc, integ);
  return { spi, encryption: enc, integrity: integ, encryptionKey: randomBytes(alg.keyLength + alg.saltLength), integrityKey: integ === null ? null : randomBytes(alg.integKeyLength) };
}

function child(enc: EncryptionAlgorithm, integ: IntegrityAlgorithm | null, spiIn: number, spiOut: number, udp: boolean, createdAt = 0): ChildSa {
  return {
    onramp: ONRAMP,
    inbound: keys(enc, integ, spiIn),
    outbound: keys(enc, integ, spiOut),
    path: { localAddress: parseIpv4(EDGE), remoteAddress: parseIpv4(PEER), localPort: udp ? 4500 : 0, remotePort: udp ? 4501 : 0 },
    replayWindow: 1024,
    selectors: ROUTE_BASED,
    createdAt,
  };
}

function rig(): { h: TransportHost; u: RecordingUnderlay; t: IpsecTransport } {
  const h = transportHost();
  const u = new RecordingUnderlay(h, 'tt-ipsec-unit', 8);
  const t = new IpsecTransport(h, u, { saCapacity: 8, queue: 4 });
  t.open();
  t.add({ type: 'ipsec', name: 'site-x', local: EDGE }, ONRAMP);
  return { h, u, t };
}

const inner = (n = 0): Uint8Array => buildUdp({ src: '10.0.1.10', dst: '203.0.113.7' }, { srcPort: 40000 + n, dstPort: 53, payload: new Uint8Array(20 + n).fill(n) });

/** Outer packets from the peer, as the underlay reads them. */
function espFromPeer(sa: ChildSa, seq: number, packet: Uint8Array, udp: boolean): Uint8Array {
  const esp = oracleSeal(sa.inbound, sa.inbound.spi, seq, packet);
  return udp ? buildUdp({ src: PEER, dst: EDGE }, { srcPort: 4501, dstPort: 4500, payload: esp }) : buildIp({ src: PEER, dst: EDGE }, IPPROTO_ESP, esp);
}

function batchOf(packets: Uint8Array[]): PacketBatch {
  const b = new PacketBatch(Math.max(1, packets.length));
  for (const p of packets) b.push(p, 0, p.length, 0);
  return b;
}

/** Delivers packets to the onramp as the Edge does, and returns what went to the underlay. */
function send(t: IpsecTransport, h: TransportHost, u: RecordingUnderlay, packets: Uint8Array[]): Uint8Array[] {
  const b = batchOf(packets);
  u.queued.length = 0;
  for (let i = 0; i < b.count; i++) t.deliver(b, i, ONRAMP, 0);
  h.outputs.flush(b);
  return u.queued.map((i) => b.packet(i).slice());
}

for (const [enc, integ, udp] of [
  ['aes128gcm16', null, false],
  ['aes256gcm16', null, true],
  ['aes256', 'sha256', false],
  ['aes128', 'sha512', true],
] as Array<[EncryptionAlgorithm, IntegrityAlgorithm | null, boolean]>) {
  describe(`IpsecTransport, ${enc}${integ ? '-' + integ : ''}, ${udp ? 'ESP in UDP 4500' : 'raw ESP'}`, () => {
    it('decrypts a batch of ESP into inner packets tagged with the onramp, compacting around other receivers', () => {
      const { h, u, t } = rig();
      const sa = child(enc, integ, 0x1000, 0x2000, udp);
      t.installChild(sa);
      u.claimProtocol(IPPROTO_GRE, new Keeper());
      const gre = buildIp({ src: PEER, dst: EDGE }, IPPROTO_GRE, new Uint8Array(8));
      const flipped = espFromPeer(sa, 3, inner(3), udp);
      flipped[flipped.length - 20] ^= 0x10;
      const unknown = espFromPeer({ ...sa, inbound: { ...sa.inbound, spi: 0x7777 } }, 4, inner(4), udp);
      const b = batchOf([espFromPeer(sa, 1, inner(1), udp), flipped, gre, espFromPeer(sa, 2, inner(2), udp), unknown, espFromPeer(sa, 1, inner(1), udp)]);
      const kept = u.demux(b, 1000);
      assert.equal(kept, 3);
      assert.deepEqual([b.ingress[0], b.ingress[1], b.ingress[2]], [ONRAMP, 9, ONRAMP]);
      assert.deepEqual(Buffer.from(b.packet(0)), Buffer.from(inner(1)));
      assert.deepEqual(Buffer.from(b.packet(2)), Buffer.from(inner(2)));
      const st = t.status();
      assert.deepEqual(st.drops, { icv_failed: 1, unknown_spi: 1, replay: 1 });
      assert.equal(h.counters[EdgeCounter.IpsecReceiveDrop], 3);
      assert.equal(st.sas[0].icvFailures, 1);
      assert.equal(st.sas[0].replayDrops, 1);
      assert.equal(st.sas[0].inPackets, 2);
      assert.deepEqual(t.childUsage(ONRAMP, 0x1000), { inboundPackets: 2, outboundPackets: 0, lastInbound: 1000, sequenceExhausted: false });
    });

    it('encrypts delivered packets in one batch call: outer IPv4 (+ UDP) from the SA path, the oracle opens them', () => {
      const { h, u, t } = rig();
      const sa = child(enc, integ, 0x1000, 0x2000, udp);
      t.installChild(sa);
      const packets = [inner(1), inner(2), inner(300), inner(7), inner(9)]; // more than the queue of 4: two native calls
      const out = send(t, h, u, packets);
      assert.equal(out.length, packets.length);
      out.forEach((o, k) => {
        const p = parsePacket(o);
        assert.equal(p.src, EDGE);
        assert.equal(p.dst, PEER);
        assert.equal(p.protocol, udp ? IPPROTO_UDP : IPPROTO_ESP);
        const esp = o.subarray(udp ? 28 : 20);
        if (udp) assert.deepEqual([p.srcPort, p.dstPort], [4500, 4501]);
        assert.equal(Buffer.from(esp).readUInt32BE(0), 0x2000);
        assert.equal(Buffer.from(esp).readUInt32BE(4), k + 1, 'sequence numbers 1, 2, 3, …');
        const opened = oracleOpen(sa.outbound, esp);
        assert.ok(typeof opened !== 'string', String(opened));
        assert.deepEqual(Buffer.from(opened.inner), Buffer.from(packets[k]));
      });
      assert.equal(t.status().sas[0].outPackets, packets.length);
    });
  });
}

describe('IpsecTransport, the rest', () => {
  it('UDP 4500: keepalives counted, IKE after the non-ESP marker and IKE on 500 reach the handler; sendIke adds the marker', () => {
    const { h, u, t } = rig();
    const got: Array<[number[], IkeDatagramPath]> = [];
    t.onIke((m, path) => got.push([[...m], path]));
    const ike = [0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    const b = batchOf([
      buildUdp({ src: PEER, dst: EDGE }, { srcPort: 4501, dstPort: 4500, payload: Uint8Array.from([0xff]) }),
      buildUdp({ src: PEER, dst: EDGE }, { srcPort: 4501, dstPort: 4500, payload: Uint8Array.from([0, 0, 0, 0, ...ike]) }),
      buildUdp({ src: PEER, dst: EDGE }, { srcPort: 500, dstPort: 500, payload: Uint8Array.from(ike) }),
      buildUdp({ src: PEER, dst: EDGE }, { srcPort: 4501, dstPort: 4500, payload: Uint8Array.from([1, 2]) }),
    ]);
    assert.equal(u.demux(b, 0), 0);
    assert.equal(h.counters[EdgeCounter.IpsecKeepalive], 1);
    assert.equal(h.counters[EdgeCounter.IpsecIkeReceived], 2);
    assert.deepEqual(t.status().drops, { malformed: 1 });
    assert.deepEqual(got.map((g) => g[0]), [ike, ike]);
    assert.deepEqual(got[0][1], { localAddress: parseIpv4(EDGE), localPort: 4500, remoteAddress: parseIpv4(PEER), remotePort: 4501 });
    t.sendIke(ONRAMP, Uint8Array.from(ike), 4500, parseIpv4(PEER), 4501);
    t.sendIke(ONRAMP, Uint8Array.from(ike), 500, parseIpv4(PEER), 500);
    assert.equal(u.written.length, 2);
    assert.deepEqual([...u.written[0].subarray(28)], [0, 0, 0, 0, ...ike]);
    assert.deepEqual([...u.written[1].subarray(28)], ike);
    assert.equal(parsePacket(u.written[0]).src, EDGE);
    // RFC 3948 §2.3: a NAT-keepalive is the single byte 0xFF, no marker, from port 4500.
    t.sendNatKeepalive(ONRAMP, parseIpv4(PEER), 4501);
    assert.deepEqual([...u.written[2].subarray(28)], [0xff]);
    assert.equal(Buffer.from(u.written[2]).readUInt16BE(20), 4500);
  });

  it('make-before-break: a rekeyed SA sends, the old inbound SPI is accepted until removeChild', () => {
    const { h, u, t } = rig();
    const old = child('aes128gcm16', null, 0x1000, 0x2000, false, 1);
    const fresh = child('aes128gcm16', null, 0x1001, 0x2001, false, 2);
    t.installChild(old);
    t.installChild(fresh);
    const out = send(t, h, u, [inner(1)]);
    assert.equal(Buffer.from(out[0]).readUInt32BE(20), 0x2001);
    let b = batchOf([espFromPeer(old, 1, inner(1), false), espFromPeer(fresh, 1, inner(2), false)]);
    assert.equal(u.demux(b, 0), 2);
    t.removeChild(ONRAMP, 0x1000);
    b = batchOf([espFromPeer(old, 2, inner(1), false)]);
    assert.equal(u.demux(b, 0), 0);
    assert.deepEqual(t.status().drops, { unknown_spi: 1 });
    t.removeChild(ONRAMP, 0x1001);
    assert.equal(send(t, h, u, [inner(1)]).length, 0);
    assert.deepEqual(t.status().drops, { unknown_spi: 1, no_sa: 1 });
  });

  it('sequence numbers: exhaustion is flagged for the engine, nothing goes past 2^32 − 1', () => {
    const { h, u, t } = rig();
    t.installChild(child('aes128gcm16', null, 0x1000, 0x2000, false));
    const s = t.table.outboundOf(ONRAMP);
    t.table.seqOut[s] = ESP_SEQUENCE_EXHAUSTED;
    assert.equal(t.childUsage(ONRAMP, 0x1000)?.sequenceExhausted, true);
    t.table.seqOut[s] = ESP_MAX_SEQUENCE - 1;
    const out = send(t, h, u, [inner(1), inner(2)]);
    assert.equal(out.length, 1);
    assert.equal(Buffer.from(out[0]).readUInt32BE(24), ESP_MAX_SEQUENCE);
    assert.equal(t.drops[EspDrop.SequenceExhausted], 1);
  });

  it('tunnel MTU: the default leaves room for every ESP term; a DF packet too big goes back as ICMP, not encrypted', () => {
    const { h, u, t } = rig();
    assert.equal(t.mtuOf(ONRAMP), 1500, 'no SA yet: the host MTU');
    const sa = child('aes128gcm16', null, 0x1000, 0x2000, true);
    t.installChild(sa);
    assert.equal(t.mtuOf(ONRAMP), 1435);
    assert.equal(IpsecTransport.defaultMtu(1500, 'aes256', 'sha256', false), 1500 - 20 - 8 - 16 - 15 - 2 - 16);
    h.tunnelAddresses.set(ONRAMP, '10.0.1.1');
    const big = (df: boolean): Uint8Array => buildUdp({ src: '203.0.113.7', dst: '10.0.1.10', dontFragment: df }, { srcPort: 53, dstPort: 40000, payload: new Uint8Array(1450) });
    const out = send(t, h, u, [big(true), inner(1)]);
    assert.equal(out.length, 1, 'the DF packet is not sent');
    assert.equal(h.counters[EdgeCounter.IpsecTooBig], 1);
    assert.equal(h.counters[EdgeCounter.IpsecTooBigReported], 1);
    assert.equal(h.feedback.count, 1, 'fragmentation needed goes back through the pipeline');
    // Without DF: RFC 791 fragments, each sealed on its own into the transmit batch.
    assert.equal(send(t, h, u, [big(false)]).length, 0);
    assert.equal(h.counters[EdgeCounter.IpsecFragmented], 1);
    u.flushTx();
    assert.equal(u.written.length, 2);
    for (const w of u.written) {
      assert.ok(w.length <= 1500, `fragment ${w.length} fits the underlay`);
      const opened = oracleOpen(sa.outbound, w.subarray(28));
      assert.ok(typeof opened !== 'string', `a fragment decrypts: ${String(opened)}`);
      assert.ok(parsePacket(opened.inner).isFragment);
    }
  });

  it('update moves the local address (claims follow) and leaves everything as it was when the new one cannot be had', () => {
    const { u, t } = rig();
    const other = new Keeper();
    const MOVED = '192.0.2.9';
    const TAKEN = '192.0.2.10';
    u.claimUdp(parseIpv4(TAKEN), 500, other);
    t.installChild(child('aes128gcm16', null, 0x1000, 0x2000, false));
    assert.throws(() => t.update({ type: 'ipsec', name: 'site-x', local: TAKEN }, ONRAMP), /UDP port 500 on that address is already claimed/);
    assert.throws(() => t.update({ type: 'ipsec', name: 'site-x', local: 'fd00::1' }, ONRAMP), /is not IPv4/);
    // Still on EDGE: its ports are ours (another claim there fails), and nothing was left claimed on TAKEN.
    assert.throws(() => u.claimUdp(parseIpv4(EDGE), 4500, other), /already claimed/);
    u.claimUdp(parseIpv4(TAKEN), 4500, other);
    t.update({ type: 'ipsec', name: 'site-x', local: MOVED }, ONRAMP);
    u.claimUdp(parseIpv4(EDGE), 500, other);
    assert.throws(() => u.claimUdp(parseIpv4(MOVED), 500, other), /already claimed/);
    assert.equal(t.table.size, 1, 'the SAs stay (the IKE engine re-establishes them if the peer cannot follow)');
  });

  it('refuses a child SA for an onramp it does not hold, and removing the onramp takes its SAs', () => {
    const { t } = rig();
    assert.throws(() => t.installChild({ ...child('aes128gcm16', null, 0x1000, 0x2000, false), onramp: 6 }), /no IPsec onramp 6/);
    t.installChild(child('aes128gcm16', null, 0x1000, 0x2000, false));
    t.remove(ONRAMP);
    assert.equal(t.table.size, 0);
    assert.equal(t.childUsage(ONRAMP, 0x1000), null);
  });
});
