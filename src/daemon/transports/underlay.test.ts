// The underlay demultiplexer without a TUN: outer packets reach the transport that claimed their IP protocol
// or UDP address:port, echo requests to an endpoint are answered in place, the rest is counted.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseIpv4 } from '../../wire/addr.js';
import { PacketBatch } from '../../common/packet-batch.js';
import { buildIcmpEcho, buildIp, buildUdp, parsePacket } from '../../wire/build.js';
import { IPPROTO_ESP, IPPROTO_GRE } from '../../wire/constants.js';
import type { PacketInfo } from '../../wire/packet-info.js';
import { transportHost } from '../../../test/support/transport-host.js';
import { EdgeCounter } from './counters.js';
import { DeliveryTable } from './transport.js';
import { Underlay, type DemuxFinisher, type UnderlayReceiver } from './underlay.js';

const EDGE = '192.0.2.1';
const PEER = '198.51.100.7';

const host = transportHost;

/** Keeps every packet it is handed, tagged with `port`, and remembers the protocol it saw. */
class Keeper implements UnderlayReceiver {
  readonly seen: number[] = [];
  constructor(private readonly port: number) {}
  receiveUnderlay(batch: PacketBatch, i: number, j: number, info: PacketInfo): number {
    this.seen.push(info.protocol);
    batch.offset[j] = batch.offset[i];
    batch.length[j] = batch.length[i];
    batch.ingress[j] = this.port;
    return j + 1;
  }
}

function batchOf(packets: Uint8Array[]): PacketBatch {
  const b = new PacketBatch(packets.length);
  for (const p of packets) b.push(p, 0, p.length, 0);
  return b;
}

const udpTo = (dst: string, dstPort: number): Uint8Array => buildUdp({ src: PEER, dst }, { srcPort: 1234, dstPort, payload: new Uint8Array(8) });

describe('Underlay.demux', () => {
  it('hands each outer packet to the transport that claimed it, compacting the batch; the rest is counted', () => {
    const h = host();
    const u = new Underlay(h, 'tt-test', 4);
    const gre = new Keeper(5);
    const wg = new Keeper(6);
    u.claimProtocol(IPPROTO_GRE, gre);
    u.claimUdp(parseIpv4(EDGE), 51820, wg);
    const b = batchOf([
      buildIp({ src: PEER, dst: EDGE }, IPPROTO_GRE, new Uint8Array(24)),
      udpTo(EDGE, 51821),
      buildIp({ src: PEER, dst: EDGE }, IPPROTO_ESP, new Uint8Array(24)),
      udpTo(EDGE, 51820),
      new Uint8Array([0x45, 0, 0]),
    ]);
    const kept = u.demux(b, 0);
    assert.equal(kept, 2);
    assert.deepEqual([b.ingress[0], b.ingress[1]], [5, 6]);
    assert.deepEqual(gre.seen, [IPPROTO_GRE]);
    assert.equal(h.counters[EdgeCounter.UnderlayNotForUs], 1, 'UDP to a port nobody claimed');
    assert.equal(h.counters[EdgeCounter.UnderlayMalformed], 2, 'an unclaimed protocol inspect does not track, and a truncated header');
  });

  it('an outer capture tap sees the whole read batch as read, before the receivers compact it; removed, it sees nothing', () => {
    const u = new Underlay(host(), 'tt-test', 4);
    u.claimProtocol(IPPROTO_GRE, new Keeper(5));
    const seen: Array<[number, number, boolean]> = [];
    u.setOuterTap({ outer: (batch, idx, from, to, sent) => {
      assert.equal(idx, null);
      for (let i = from; i < to; i++) seen.push([batch.length[i], parsePacket(batch.packet(i).slice()).protocol, sent]);
    } });
    const packets = [udpTo(EDGE, 9), buildIp({ src: PEER, dst: EDGE }, IPPROTO_GRE, new Uint8Array(24))];
    assert.equal(u.demux(batchOf(packets), 0), 1);
    assert.deepEqual(seen, [[packets[0].length, 17, false], [packets[1].length, IPPROTO_GRE, false]]);
    u.setOuterTap(null);
    u.demux(batchOf(packets), 0);
    assert.equal(seen.length, 2);
  });

  it('a later transport claims a protocol and UDP ports of its own (IPsec: ESP, IKE on 500 and 4500); released, they are counted again', () => {
    const h = host();
    const u = new Underlay(h, 'tt-test', 4);
    const ipsec = new Keeper(9);
    u.claimProtocol(IPPROTO_ESP, ipsec);
    u.claimUdp(parseIpv4(EDGE), 500, ipsec);
    u.claimUdp(0, 4500, ipsec);
    const packets = (): Uint8Array[] => [buildIp({ src: PEER, dst: EDGE }, IPPROTO_ESP, new Uint8Array(24)), udpTo(EDGE, 500), udpTo('192.0.2.99', 4500)];
    assert.equal(u.demux(batchOf(packets()), 0), 3);
    assert.equal(ipsec.seen.length, 3);
    u.releaseProtocol(IPPROTO_ESP, ipsec);
    u.releaseUdp(parseIpv4(EDGE), 500, ipsec);
    u.releaseUdp(0, 4500, ipsec);
    assert.equal(u.demux(batchOf(packets()), 0), 0);
    assert.equal(h.counters[EdgeCounter.UnderlayMalformed], 1);
    assert.equal(h.counters[EdgeCounter.UnderlayNotForUs], 2);
  });

  it('two batch finishers (IPsec and WireGuard decrypting at the end): each drops what it marks, the other\'s queued descriptors stay right', () => {
    /** Keeps its packets, remembers their descriptors, and at the end drops those whose payload byte is odd. */
    class Deferring extends Keeper implements DemuxFinisher {
      readonly queued: number[] = [];
      constructor(port: number, private readonly u: Underlay) {
        super(port);
      }
      override receiveUnderlay(batch: PacketBatch, i: number, j: number, info: PacketInfo): number {
        this.queued.push(j);
        return super.receiveUnderlay(batch, i, j, info);
      }
      finishDemux(batch: PacketBatch): void {
        for (const j of this.queued) if (batch.data[batch.offset[j] + 28] % 2 === 1) this.u.demuxDrops.mark(batch, j);
        this.queued.length = 0;
      }
    }
    const h = host();
    const u = new Underlay(h, 'tt-test', 4);
    const esp = new Deferring(7, u);
    const wg = new Deferring(6, u);
    u.claimUdp(parseIpv4(EDGE), 4500, esp);
    u.claimUdp(parseIpv4(EDGE), 51820, wg);
    u.addFinisher(esp);
    u.addFinisher(wg);
    const tagged = (port: number, tag: number): Uint8Array => buildUdp({ src: PEER, dst: EDGE }, { srcPort: 1234, dstPort: port, payload: new Uint8Array(8).fill(tag) });
    const b = batchOf([tagged(4500, 1), tagged(51820, 2), tagged(4500, 3), tagged(51820, 4), tagged(51820, 5), tagged(4500, 6)]);
    const kept = u.demux(b, 0);
    assert.equal(kept, 3);
    const survivors = Array.from({ length: kept }, (_, j) => [b.ingress[j], b.data[b.offset[j] + 28]]);
    assert.deepEqual(survivors, [[6, 2], [6, 4], [7, 6]], 'the even ones, in order, each with its own transport');
  });

  it('refuses a second claim on the same protocol or an overlapping address:port', () => {
    const u = new Underlay(host(), 'tt-test', 4);
    u.claimProtocol(IPPROTO_GRE, new Keeper(1));
    assert.throws(() => u.claimProtocol(IPPROTO_GRE, new Keeper(2)), /already claimed/);
    u.claimUdp(parseIpv4(EDGE), 51820, new Keeper(1));
    assert.throws(() => u.claimUdp(parseIpv4(EDGE), 51820, new Keeper(2)), /already claimed/);
    assert.throws(() => u.claimUdp(0, 51820, new Keeper(2)), /already claimed/);
    u.claimUdp(parseIpv4('192.0.2.2'), 51820, new Keeper(3));
  });

  it('answers echo requests to an endpoint while a tunnel uses it, and only then', () => {
    const h = host();
    const u = new Underlay(h, 'tt-test', 4);
    const ping = (): Uint8Array => buildIcmpEcho({ src: PEER, dst: EDGE }, { type: 'request', id: 9, seq: 1, payload: new Uint8Array(4) });
    u.addEndpoint(EDGE);
    u.addEndpoint(EDGE);
    const b = batchOf([ping()]);
    assert.equal(u.demux(b, 0), 0);
    const reply = parsePacket(b.packet(0));
    assert.equal(reply.icmp?.type, 0);
    assert.equal(reply.src, EDGE);
    assert.equal(reply.dst, PEER);
    assert.equal(h.counters[EdgeCounter.EchoReplied], 1);
    u.removeEndpoint(EDGE);
    u.demux(batchOf([ping()]), 0);
    assert.equal(h.counters[EdgeCounter.EchoReplied], 2, 'the second tunnel still uses the address');
    u.removeEndpoint(EDGE);
    u.demux(batchOf([ping()]), 0);
    assert.equal(h.counters[EdgeCounter.EchoReplied], 2);
    assert.equal(h.counters[EdgeCounter.UnderlayNotForUs], 1);
  });
});

describe('DeliveryTable', () => {
  it('one transport per port; cleared only by its owner', () => {
    const t = new DeliveryTable();
    const a = { deliver() {} };
    const b = { deliver() {} };
    assert.equal(t.of(3), null);
    t.set(3, a);
    assert.throws(() => t.set(3, b), /already delivered/);
    t.clear(3, b);
    assert.equal(t.of(3), a);
    t.clear(3, a);
    assert.equal(t.of(3), null);
  });
});
