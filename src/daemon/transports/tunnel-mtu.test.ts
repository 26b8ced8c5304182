// The tunnel MTU as the transports run it (tunnel-mtu.ts), without TUNs: a WireGuard onramp against a real peer
// (tether's own engine, handshake and all), and a GRE onramp. What leaves is read from the underlay's transmit
// batch; what goes back through the pipeline, from the host's feedback batch.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PacketBatch } from '../../common/packet-batch.js';
import type { GreOnrampConfig, WireGuardOnrampConfig } from '../../config/index.js';
import { WireGuardDevice, type Outgoing } from '../../onramp/wireguard/index.js';
import { buildUdp, parsePacket } from '../../wire/build.js';
import { IPV4_MIN_HEADER, UDP_HEADER } from '../../wire/constants.js';
import { UdpEndpoint } from '../../wire/endpoint.js';
import { keyPair } from '../../../test/support/wireguard.js';
import { RecordingUnderlay } from '../../../test/support/recording-underlay.js';
import { transportHost } from '../../../test/support/transport-host.js';
import { EdgeCounter } from './counters.js';
import { GreTransport } from './gre.js';
import { Underlay } from './underlay.js';
import { WireGuardTransport } from './wireguard.js';

const EDGE = '192.0.2.1';
const SITE = '192.0.2.2';
const WG_PORT = 51820;
const ONRAMP = 5;
const MTU = 1420;
const HOST = '10.0.1.10';
const HOST6 = 'fd00:a::10';
const SERVER = '203.0.113.10';
const SERVER6 = '2001:db8::10';
const EDGE_INSIDE6 = 'fd00:ffff::1';
const OUTER = IPV4_MIN_HEADER + UDP_HEADER;
/** The underlay link the datagrams must fit. */
const UNDERLAY_MTU = 1500;
const T = 1_700_000_000_000;

const b64 = (key: Uint8Array): string => Buffer.from(key).toString('base64');

function udp4(length: number, dontFragment: boolean): Uint8Array {
  return buildUdp({ src: SERVER, dst: HOST, dontFragment, id: 0x4242 }, { srcPort: 443, dstPort: 40000, payload: new Uint8Array(length - 28).fill(0x5a) });
}

function udp6(length: number): Uint8Array {
  return buildUdp({ src: SERVER6, dst: HOST6 }, { srcPort: 443, dstPort: 40000, payload: new Uint8Array(length - 48).fill(0x5a) });
}

/** A WireGuard onramp with a live session to a site peer; deliver() a packet and read what the site decrypts. */
function wireGuardRig(opts: { tunnelAddress?: string } = {}) {
  const host = transportHost();
  const underlay = new RecordingUnderlay(host, 'tt-test', 16);
  const wg = new WireGuardTransport(host, underlay);
  const edgeKeys = keyPair(1);
  const siteKeys = keyPair(2);
  wg.addDevice({ name: 'wg0', listen_address: EDGE, listen_port: WG_PORT, private_key: b64(edgeKeys.priv) });
  const onramp: WireGuardOnrampConfig = {
    name: 'site-wg', type: 'wireguard', automatic_return_routing: true, preference: 100, max_flows: 0,
    wireguard: { device: 'wg0', public_key: b64(siteKeys.pub), allowed_ips: ['10.0.1.0/24', 'fd00:a::/64'], endpoint: `${SITE}:${WG_PORT}`, persistent_keepalive: 0, mtu: MTU },
  };
  wg.add(onramp, ONRAMP);
  host.tunnelAddresses.set(ONRAMP, opts.tunnelAddress);
  wg.open();
  const site = new WireGuardDevice({ privateKey: siteKeys.priv, peers: [{ publicKey: edgeKeys.pub, allowedIps: ['0.0.0.0/0', '::/0'], endpoint: { addr: EDGE, port: WG_PORT } }] });
  const siteSource = UdpEndpoint.parse(EDGE, WG_PORT)!;

  const toEdge = (list: Outgoing[]): void => {
    const b = new PacketBatch(8);
    for (const o of list) {
      const p = buildUdp({ src: SITE, dst: EDGE }, { srcPort: WG_PORT, dstPort: WG_PORT, payload: o.data });
      b.push(p, 0, p.length, 0);
    }
    underlay.demux(b, T);
  };
  /**
   * The datagrams the edge sent: those sealed in the delivered batch (`queued` from it) and those it built in the
   * transmit batch; their sizes on the wire, and the inner packets the site decrypts from them.
   */
  const fromEdge = (queued: Uint8Array[] = []): { sizes: number[]; inner: Uint8Array[] } => {
    const sizes: number[] = [];
    const inner: Uint8Array[] = [];
    underlay.flushTx();
    const datagrams = [...queued, ...underlay.written];
    underlay.written.length = 0;
    for (const d of datagrams) {
      sizes.push(d.length);
      assert.equal(d[9], 17, 'IPv4/UDP around the datagram');
      const r = site.receive(d.subarray(OUTER), siteSource, T);
      const replies = r.datagrams.map((o) => ({ ...o, data: o.data.slice() }));
      if (r.kind === 'data' && r.packet !== null && r.packet.length > 0) inner.push(r.packet.slice());
      if (replies.length > 0) toEdge(replies);
    }
    return { sizes, inner };
  };

  // The site initiates; its first packet waits for the session and then confirms it to the edge (the
  // responder may send only after that, whitepaper section 5.4.3).
  toEdge(site.send(0, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 443 }), T).map((o) => ({ ...o, data: o.data.slice() })));
  fromEdge();
  const deliver = (packet: Uint8Array): { sizes: number[]; inner: Uint8Array[] } => {
    const b = new PacketBatch(1);
    b.push(packet, 0, packet.length, 0);
    b.nextHop[0] = ONRAMP;
    underlay.queued.length = 0;
    wg.deliver(b, 0, ONRAMP, T);
    host.outputs.flush(b);
    return fromEdge(underlay.queued.map((i) => b.packet(i).slice()));
  };
  return { host, wg, deliver };
}

describe('WireGuard onramp: the tunnel MTU', () => {
  it('a packet up to the MTU is encrypted whole, and its datagram fits a 1,500-byte underlay', () => {
    const rig = wireGuardRig();
    const packet = udp4(MTU, true);
    const out = rig.deliver(packet);
    assert.deepEqual(out.inner, [packet]);
    assert.equal(out.sizes.length, 1);
    assert.ok(out.sizes[0] <= UNDERLAY_MTU, `datagram of ${out.sizes[0]} bytes`);
    assert.equal(rig.host.feedback.count, 0);
  });

  it('a longer IPv4 packet without DF leaves as RFC 791 fragments, each encrypted on its own, that reassemble', () => {
    const rig = wireGuardRig();
    const packet = udp4(UNDERLAY_MTU, false);
    const out = rig.deliver(packet);
    assert.equal(rig.host.counters[EdgeCounter.WgFragmented], 1);
    assert.ok(out.inner.length >= 2, `${out.inner.length} fragments`);
    for (const size of out.sizes) assert.ok(size <= UNDERLAY_MTU, `datagram of ${size} bytes`);
    const payload = new Uint8Array(packet.length - IPV4_MIN_HEADER);
    let covered = 0;
    for (const f of out.inner) {
      assert.ok(f.length <= MTU);
      const p = parsePacket(f);
      assert.equal(p.isFragment, true);
      payload.set(f.subarray(IPV4_MIN_HEADER), p.fragmentOffset);
      covered += f.length - IPV4_MIN_HEADER;
    }
    assert.equal(covered, payload.length);
    assert.deepEqual(payload, packet.subarray(IPV4_MIN_HEADER));
  });

  it('DF set: nothing is sent; fragmentation-needed with MTU 1420 from the device\'s listen address goes back through the pipeline, tagged with the onramp', () => {
    const rig = wireGuardRig({ tunnelAddress: '100.64.0.1' });
    const packet = udp4(UNDERLAY_MTU, true);
    const out = rig.deliver(packet);
    assert.deepEqual(out.inner, []);
    assert.equal(rig.host.counters[EdgeCounter.WgTooBig], 1);
    assert.equal(rig.host.counters[EdgeCounter.WgTooBigReported], 1);
    const fb = rig.host.feedback;
    assert.equal(fb.count, 1);
    assert.equal(fb.ingress[0], ONRAMP, 'as if it came out of the tunnel');
    const error = fb.packet(0);
    const p = parsePacket(error);
    assert.deepEqual([p.src, p.dst, p.icmp?.type, p.icmp?.code], [EDGE, SERVER, 3, 4]);
    assert.equal((error[IPV4_MIN_HEADER + 6] << 8) | error[IPV4_MIN_HEADER + 7], MTU, 'RFC 1191 next-hop MTU');
    assert.deepEqual([p.inner?.src, p.inner?.dst, p.inner?.dstPort], [SERVER, HOST, 40000], 'quotes the packet');
  });

  it('IPv6: packet too big from the onramp\'s IPv6 tunnel address (the listen address is IPv4); without one it is counted, not reported', () => {
    const rig = wireGuardRig({ tunnelAddress: EDGE_INSIDE6 });
    assert.deepEqual(rig.deliver(udp6(UNDERLAY_MTU)).inner, []);
    const p = parsePacket(rig.host.feedback.packet(0));
    assert.deepEqual([p.src, p.dst, p.icmp?.type], [EDGE_INSIDE6, SERVER6, 2]);
    assert.equal(rig.host.counters[EdgeCounter.WgTooBigReported], 1);
    assert.deepEqual(rig.deliver(udp6(1280)).inner.length, 1, 'IPv6 up to 1280 bytes fits any tunnel (RFC 8200 section 5)');

    const bare = wireGuardRig();
    assert.deepEqual(bare.deliver(udp6(UNDERLAY_MTU)).inner, []);
    assert.equal(bare.host.counters[EdgeCounter.WgTooBig], 1);
    assert.equal(bare.host.counters[EdgeCounter.WgTooBigReported], 0);
    assert.equal(bare.host.feedback.count, 0);
  });
});

describe('GRE onramp: the same policy through the same helper', () => {
  function greRig(tunnelAddress?: string) {
    const host = transportHost();
    const underlay = new Underlay(host, 'tt-test', 16);
    const gre = new GreTransport(host, underlay);
    const onramp: GreOnrampConfig = {
      name: 'site-gre', type: 'gre', automatic_return_routing: true, preference: 100, max_flows: 0,
      gre: { local: EDGE, remote: SITE, mtu: 1476 },
    };
    gre.add(onramp, ONRAMP);
    host.tunnelAddresses.set(ONRAMP, tunnelAddress);
    const deliver = (packet: Uint8Array): void => {
      const b = new PacketBatch(1);
      b.push(packet, 0, packet.length, 0);
      gre.deliver(b, 0, ONRAMP, T);
    };
    return { host, underlay, deliver };
  }

  it('DF set: fragmentation-needed from the tunnel\'s local address; no DF: fragments, each encapsulated', () => {
    const rig = greRig();
    rig.deliver(udp4(UNDERLAY_MTU, true));
    assert.equal(rig.host.counters[EdgeCounter.GreTooBig], 1);
    assert.equal(rig.host.counters[EdgeCounter.GreTooBigReported], 1);
    assert.equal(parsePacket(rig.host.feedback.packet(0)).src, EDGE);
    rig.deliver(udp4(UNDERLAY_MTU, false));
    assert.equal(rig.host.counters[EdgeCounter.GreFragmented], 1);
    assert.equal(rig.underlay.tx.count, 2, 'two fragments in GRE');
    for (let k = 0; k < rig.underlay.tx.count; k++) assert.ok(rig.underlay.tx.length[k] <= UNDERLAY_MTU);
  });

  it('an IPv6 packet in an IPv4 tunnel: packet too big from the tunnel\'s IPv6 address, or counted only without one (never a mixed-family error)', () => {
    const rig = greRig(EDGE_INSIDE6);
    rig.deliver(udp6(UNDERLAY_MTU));
    assert.equal(parsePacket(rig.host.feedback.packet(0)).src, EDGE_INSIDE6);
    const bare = greRig();
    bare.deliver(udp6(UNDERLAY_MTU));
    assert.equal(bare.host.counters[EdgeCounter.GreTooBig], 1);
    assert.equal(bare.host.feedback.count, 0);
  });
});
