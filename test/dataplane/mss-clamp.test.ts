/**
 * MSS clamping in the pipeline (RFC 4459 section 3.2, RFC 9293 section 3.7.1): a SYN or SYN-ACK entering
 * from an onramp with a tunnel MTU (GRE's gre.mtu, WireGuard's wireguard.mtu), or leaving toward one, announces at most what the tunnel carries; the
 * TCP checksum still verifies. And the batch metadata the pipeline's inspection records for later stages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { PORT_INTERNET } from '../../src/common/ids.js';
import { PacketBatch } from '../../src/common/packet-batch.js';
import { assignIds, toPipelineConfig } from '../../src/config/index.js';
import { Pipeline, type PipelineConfig } from '../../src/dataplane/pipeline.js';
import { NextHopKind } from '../../src/route/route-table.js';
import { buildTcp, buildUdp } from '../../src/wire/build.js';
import { AF_INET4, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HEADER, IPV6_HEADER, TCP_ACK_FLAG, TCP_SYN } from '../../src/wire/constants.js';
import { inspect } from '../../src/wire/inspect.js';
import { PacketInfo } from '../../src/wire/packet-info.js';
import { defaultConfig } from '../../src/lab/config.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, POOL, SERVER, SITE_A, SITE_DC, onramp } from '../support/topology.js';

const TUNNEL_MTU = 1400;
const HOST6 = 'fd00:a::10';
const DC_SERVER6 = 'fd00:dc::20';

/** Site A behind a GRE tunnel of MTU 1400 (or `mtuA`; null: no MTU), the data center behind an interconnect (optionally with an MTU). */
function tunnelSite(mtuA: number | null = TUNNEL_MTU, mtuDc?: number): PipelineConfig {
  return {
    onramps: [
      onramp(A_PRIMARY, SITE_A, true, { type: 'gre', ...(mtuA !== null ? { mtu: mtuA } : {}) }),
      onramp(DC_ONRAMP, SITE_DC, false, { type: 'interconnect', ...(mtuDc !== undefined ? { mtu: mtuDc } : {}) }),
    ],
    routes: [
      { prefix: '172.16.0.0/24', kind: NextHopKind.Onramp, port: DC_ONRAMP },
      { prefix: 'fd00:dc::/64', kind: NextHopKind.Onramp, port: DC_ONRAMP },
    ],
  };
}

function syn(src: string, dst: string, mss: number, flags = TCP_SYN, srcPort = 40000, dstPort = 443): Uint8Array {
  const family = src.includes(':') ? { family: 6 as const } : {};
  return buildTcp({ ...family, src, dst }, { srcPort, dstPort, seq: flags & TCP_ACK_FLAG ? 5000 : 1000, ack: flags & TCP_ACK_FLAG ? 1001 : 0, flags, options: { mss, windowScale: 7 } });
}

test('a SYN entering from a tunnel onramp is clamped to the tunnel MTU - 40, checksum updated (IPv4)', () => {
  const edge = new PipelineRig(tunnelSite());
  const out = edge.send(A_PRIMARY, syn(HOST, DC_SERVER, 1460));
  assert.equal(out.hop, DC_ONRAMP);
  assert.equal(out.parsed.tcp?.mss, TUNNEL_MTU - 40);
  assert.equal(out.parsed.tcp?.windowScale, 7, 'other options untouched');
  assert.equal(out.parsed.drop, Drop.None, 'the TCP checksum verifies after the incremental update');
});

test('a SYN-ACK leaving toward a tunnel onramp is clamped too (the reply direction of the same flow)', () => {
  const edge = new PipelineRig(tunnelSite());
  assert.equal(edge.send(A_PRIMARY, syn(HOST, DC_SERVER, 1200)).hop, DC_ONRAMP);
  const back = edge.send(DC_ONRAMP, syn(DC_SERVER, HOST, 8960, TCP_SYN | TCP_ACK_FLAG, 443, 40000));
  assert.equal(back.hop, A_PRIMARY);
  assert.equal(back.parsed.tcp?.mss, TUNNEL_MTU - 40);
  assert.equal(back.parsed.drop, Drop.None);
});

test('IPv6: MTU - 60 both ways, and an MSS already below the ceiling is left alone', () => {
  const edge = new PipelineRig(tunnelSite());
  const out = edge.send(A_PRIMARY, syn(HOST6, DC_SERVER6, 1440));
  assert.equal(out.hop, DC_ONRAMP);
  assert.equal(out.parsed.tcp?.mss, TUNNEL_MTU - 60);
  assert.equal(out.parsed.drop, Drop.None);
  const back = edge.send(DC_ONRAMP, syn(DC_SERVER6, HOST6, 1000, TCP_SYN | TCP_ACK_FLAG, 443, 40000));
  assert.equal(back.hop, A_PRIMARY);
  assert.equal(back.parsed.tcp?.mss, 1000);
});

test('the lower of the two ports ceilings wins; ports without an MTU clamp nothing', () => {
  const both = new PipelineRig(tunnelSite(TUNNEL_MTU, 1300));
  assert.equal(both.send(A_PRIMARY, syn(HOST, DC_SERVER, 1460)).parsed.tcp?.mss, 1300 - 40);
  const none = new PipelineRig(tunnelSite(null));
  assert.equal(none.send(A_PRIMARY, syn(HOST, DC_SERVER, 1460)).parsed.tcp?.mss, 1460);
});

test('an IPv6 tunnel MTU below 1280 still lets IPv6 SYNs announce 1280 - 60 (RFC 8200 section 5)', () => {
  const edge = new PipelineRig(tunnelSite(1200));
  assert.equal(edge.send(A_PRIMARY, syn(HOST6, DC_SERVER6, 1440)).parsed.tcp?.mss, 1280 - 60);
  assert.equal(edge.send(A_PRIMARY, syn(HOST, DC_SERVER, 1460, TCP_SYN, 40001)).parsed.tcp?.mss, 1200 - 40);
});

test('batch metadata: the pipeline records each forwarded packet as it leaves (offsets, protocol, ports after NAT, flags, MSS offset)', () => {
  const pipeline = new Pipeline({ ...tunnelSite(), hashSeed: 7 });
  const batch = new PacketBatch(4);
  const packets = [syn(HOST, DC_SERVER, 1460), syn(HOST6, DC_SERVER6, 1460), buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 5353, dstPort: 53 })];
  for (const p of packets) batch.push(p, 0, p.length, A_PRIMARY);
  pipeline.process(batch, 1_000);
  const reference = new PacketInfo();
  for (let i = 0; i < packets.length; i++) {
    assert.equal(batch.drop[i], Drop.None);
    // The slow oracle: inspect the packet as it left the pipeline.
    assert.equal(inspect(batch.data, batch.offset[i], batch.length[i], reference), Drop.None);
    assert.equal(batch.family[i], reference.family);
    assert.equal(batch.l3Offset[i], batch.offset[i]);
    assert.equal(batch.l4Offset[i], reference.l4Offset);
    assert.equal(batch.protocol[i], reference.protocol);
    assert.equal(batch.srcPort[i], reference.srcPort);
    assert.equal(batch.dstPort[i], reference.dstPort);
    assert.equal(batch.tcpFlags[i], reference.tcpFlags);
    assert.equal(batch.mssOffset[i], reference.tcpMssOffset);
  }
  assert.deepEqual([batch.family[0], batch.family[1], batch.family[2]], [AF_INET4, AF_INET6, AF_INET4]);
  assert.deepEqual([batch.protocol[0], batch.protocol[2]], [IPPROTO_TCP, IPPROTO_UDP]);
  assert.equal(batch.l4Offset[0], batch.offset[0] + IPV4_MIN_HEADER);
  assert.equal(batch.l4Offset[1], batch.offset[1] + IPV6_HEADER);
  assert.notEqual(batch.mssOffset[0], 0);
  assert.equal(batch.mssOffset[2], 0);
});

test('WireGuard onramps clamp too: wireguard.mtu (default 1420) reaches the pipeline, and SYNs through them announce at most MTU - 40 both ways', () => {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const siteA = ids.onramps.get('site-a-wg')!;
  for (const [mtu, mss] of [[undefined, 1420 - 40], [1300, 1300 - 40]] as const) {
    if (mtu !== undefined) (cfg.onramps.find((o) => o.name === 'site-a-wg') as { wireguard: { mtu: number } }).wireguard.mtu = mtu;
    const edge = new PipelineRig(toPipelineConfig(cfg, ids));
    const out = edge.send(siteA, syn(HOST, SERVER, 1460));
    assert.equal(out.hop, PORT_INTERNET);
    assert.equal(out.parsed.tcp?.mss, mss, 'the site host on a 1,500-byte LAN offered 1460');
    assert.equal(out.parsed.drop, Drop.None);
    const back = edge.send(PORT_INTERNET, syn(SERVER, POOL, 1460, TCP_SYN | TCP_ACK_FLAG, 443, out.parsed.srcPort));
    assert.equal(back.hop, siteA);
    assert.equal(back.parsed.tcp?.mss, mss, 'the server\'s SYN-ACK toward the tunnel');
    assert.equal(back.parsed.drop, Drop.None);
  }
});
