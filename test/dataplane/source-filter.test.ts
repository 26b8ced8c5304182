/**
 * The per-port source filter (OnrampSpec.allowedSources, a WireGuard peer's allowed IPs): the pipeline checks
 * the source of the packet it inspects anyway, so the WireGuard device on the edge does not parse it again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DROP_REASON_NAMES, Drop } from '../../src/common/drop-reasons.js';
import { explain } from '../../src/dataplane/explain.js';
import type { PipelineConfig } from '../../src/dataplane/pipeline.js';
import { PortRegistry } from '../../src/dataplane/ports.js';
import { NextHopKind } from '../../src/route/route-table.js';
import { buildIcmpEcho, buildUdp } from '../../src/wire/build.js';
import { IPPROTO_UDP } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, DC_ONRAMP, DC_SERVER, SITE_A, SITE_B, SITE_DC, onramp } from '../support/topology.js';

function config(): PipelineConfig {
  return {
    onramps: [
      onramp(A_PRIMARY, SITE_A, true, { allowedSources: ['10.0.1.0/24', 'fd00:a::/64'] }),
      onramp(B_PRIMARY, SITE_B, true),
      onramp(DC_ONRAMP, SITE_DC, false, { type: 'interconnect' }),
    ],
    routes: [
      { prefix: '172.16.0.0/24', kind: NextHopKind.Onramp, port: DC_ONRAMP },
      { prefix: 'fd00:dc::/64', kind: NextHopKind.Onramp, port: DC_ONRAMP },
    ],
  };
}

const udp = (src: string, dst: string): Uint8Array => buildUdp({ ...(src.includes(':') ? { family: 6 as const } : {}), src, dst }, { srcPort: 5000, dstPort: 53 });

test('a packet from inside the onramp\'s allowed sources passes; one from outside is dropped and counted', () => {
  const edge = new PipelineRig(config());
  assert.equal(edge.send(A_PRIMARY, udp('10.0.1.10', DC_SERVER)).hop, DC_ONRAMP);
  assert.equal(edge.send(A_PRIMARY, udp('fd00:a::10', 'fd00:dc::20')).hop, DC_ONRAMP);
  const spoofed = edge.send(A_PRIMARY, udp('10.0.3.5', DC_SERVER));
  assert.equal(spoofed.hop, -1);
  assert.equal(spoofed.drop, Drop.SourceNotAllowed);
  const spoofed6 = edge.send(A_PRIMARY, udp('fd00:b::10', 'fd00:dc::20'));
  assert.equal(spoofed6.drop, Drop.SourceNotAllowed);
  // ICMP too: the filter is on the packet's source, whatever it carries.
  assert.equal(edge.send(A_PRIMARY, buildIcmpEcho({ src: '10.0.9.9', dst: DC_SERVER }, { type: 'request', id: 1, seq: 1 })).drop, Drop.SourceNotAllowed);
  assert.equal(edge.pipeline.counters.drops[Drop.SourceNotAllowed], 3);
  assert.equal(edge.pipeline.counters.rxDrops[A_PRIMARY], 3);
});

test('ports without allowed sources take any source; replacing the onramp replaces its filter', () => {
  const edge = new PipelineRig(config());
  assert.equal(edge.send(B_PRIMARY, udp('10.0.3.5', DC_SERVER)).hop, DC_ONRAMP);
  edge.pipeline.setOnramp(onramp(A_PRIMARY, SITE_A, true, { allowedSources: ['10.0.3.0/24'] }));
  assert.equal(edge.send(A_PRIMARY, udp('10.0.3.5', DC_SERVER)).hop, DC_ONRAMP);
  assert.equal(edge.send(A_PRIMARY, udp('10.0.1.10', DC_SERVER)).drop, Drop.SourceNotAllowed);
  edge.pipeline.setOnramp(onramp(A_PRIMARY, SITE_A, true));
  assert.equal(edge.send(A_PRIMARY, udp('10.0.1.10', DC_SERVER)).hop, DC_ONRAMP);
});

test('a malformed allowed source is refused at configuration', () => {
  assert.throws(() => new PipelineRig({ ...config(), onramps: [onramp(A_PRIMARY, SITE_A, true, { allowedSources: ['10.0.1.0/33'] })] }), /allowed source/);
});

test('the port registry keeps filters in a dense list and reuses a removed port\'s slot', () => {
  const ports = new PortRegistry();
  ports.set(onramp(5, 1, true, { allowedSources: ['10.0.5.0/24'] }));
  ports.set(onramp(6, 2, true, { allowedSources: ['10.0.6.0/24'] }));
  assert.deepEqual([ports.sourceFilterIndex[5], ports.sourceFilterIndex[6]], [1, 2]);
  ports.set(onramp(5, 1, true, { allowedSources: ['10.0.7.0/24'] }));
  assert.equal(ports.sourceFilterIndex[5], 1, 'replaced in place');
  assert.ok(ports.remove(5));
  assert.equal(ports.sourceFilterIndex[5], 0);
  ports.set(onramp(7, 3, true, { allowedSources: ['10.0.8.0/24'] }));
  assert.equal(ports.sourceFilterIndex[7], 1, 'the freed slot is reused');
  assert.equal(ports.sourceFilters.length, 2);
});

test('explain asks the same source filter: a source outside the allowed IPs is explained as that drop', () => {
  const edge = new PipelineRig(config());
  const hypothetical = { onramp: A_PRIMARY, protocol: IPPROTO_UDP, src: '10.0.9.9', dst: DC_SERVER, srcPort: 5000, dstPort: 53 };
  const refused = explain(edge.pipeline, hypothetical);
  assert.equal(refused.verdict, 'drop');
  assert.equal(refused.dropReason, DROP_REASON_NAMES[Drop.SourceNotAllowed]);
  assert.equal(edge.send(A_PRIMARY, udp('10.0.9.9', DC_SERVER)).drop, Drop.SourceNotAllowed, 'and forwarding agrees');
  assert.equal(explain(edge.pipeline, { ...hypothetical, src: '10.0.1.10' }).verdict, 'forward');
});
