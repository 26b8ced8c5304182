/**
 * The edge's own fragmentation-needed for a WireGuard onramp (src/daemon/transports/tunnel-mtu.ts) through the
 * pipeline: it enters on the onramp as if it came out of the tunnel, from an address outside the peer's allowed
 * IPs (the device's listen address), so it goes through Pipeline.processOwn, which skips the source filter and
 * nothing else; matched to the flow by the quoted header, it leaves toward the sender with the NAT reversed
 * (RFC 5508 section 5). The same bytes from the peer are refused like any source outside its allowed IPs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { PORT_INTERNET } from '../../src/common/ids.js';
import { assignIds, toPipelineConfig } from '../../src/config/index.js';
import { defaultConfig } from '../../src/lab/config.js';
import { writePacketTooBig } from '../../src/onramp/tunnel-mtu.js';
import { ICMP_ERROR_ROOM } from '../../src/wire/icmp-error.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { buildUdp } from '../../src/wire/build.js';
import { inspect } from '../../src/wire/inspect.js';
import { PacketInfo } from '../../src/wire/packet-info.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { HOST, POOL, SERVER } from '../support/topology.js';

/** writePacketTooBig's error as its own array, or null when none may be sent. */
function packetTooBig(buf: Uint8Array, i: PacketInfo, mtu: number, source: number | Uint32Array): Uint8Array | null {
  const out = new Uint8Array(ICMP_ERROR_ROOM);
  const n = writePacketTooBig(out, 0, buf, i, mtu, source);
  return n === 0 ? null : out.slice(0, n);
}

const LISTEN_ADDRESS = '192.168.101.1';
const MTU = 1420;

test('a too-big error the edge sends into a WireGuard onramp passes its allowed IPs and reaches the sender, NAT reversed; from the peer it is refused', () => {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const siteA = ids.onramps.get('site-a-wg')!;
  const edge = new PipelineRig(toPipelineConfig(cfg, ids));
  const out = edge.send(siteA, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 7, payload: new Uint8Array(8) }));
  assert.equal(out.hop, PORT_INTERNET);
  const natPort = out.parsed.srcPort;
  const reply = edge.send(PORT_INTERNET, buildUdp({ src: SERVER, dst: POOL, dontFragment: true }, { srcPort: 7, dstPort: natPort, payload: new Uint8Array(1460) }));
  assert.equal(reply.hop, siteA);
  const info = new PacketInfo();
  assert.equal(inspect(reply.bytes, 0, reply.bytes.length, info), Drop.None);
  const error = packetTooBig(reply.bytes, info, MTU, parseIpv4(LISTEN_ADDRESS))!;

  const fromPeer = edge.send(siteA, error);
  assert.equal(fromPeer.drop, Drop.SourceNotAllowed, 'a peer may not send from the edge\'s listen address');

  const own = edge.send(siteA, error, true);
  assert.equal(own.drop, Drop.None);
  assert.equal(own.hop, PORT_INTERNET);
  assert.deepEqual([own.parsed.src, own.parsed.dst, own.parsed.icmp?.type, own.parsed.icmp?.code], [LISTEN_ADDRESS, SERVER, 3, 4]);
  assert.deepEqual([own.parsed.inner?.src, own.parsed.inner?.dst, own.parsed.inner?.dstPort], [SERVER, POOL, natPort], 'the quote as the server sent it');
  assert.equal((own.bytes[20 + 6] << 8) | own.bytes[20 + 7], MTU);

  const again = edge.send(siteA, buildUdp({ src: '10.9.9.9', dst: SERVER }, { srcPort: 1, dstPort: 7 }));
  assert.equal(again.drop, Drop.SourceNotAllowed, 'processOwn leaves the filter on for what follows');
});
