// The kernel's drops at the edge's devices (issue 10, "no silent loss"): /metrics, GET /v1/stats' views and the
// lines `tether onramps` prints, from a stand-in edge (the e2e test test/e2e/kernel-drops.test.ts overflows a
// real TUN queue).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pipeline } from '../dataplane/pipeline.js';
import { twoSites } from '../../test/support/topology.js';
import { kernelDropsSection } from '../cli/api-client.js';
import { kernelDropViews } from './api-flows.js';
import { createMetrics, metricsText, type EdgeMetricsSource, type KernelDeviceDrops } from './metrics.js';

const DEVICES: KernelDeviceDrops[] = [
  { device: 'tt-underlay', role: 'underlay', onramps: [1, 2], drops: { tx_dropped: 1234, rx_dropped: 0 } },
  { device: 'tt-egress', role: 'egress', onramps: [0], drops: { tx_dropped: 0, rx_dropped: 3 } },
  { device: 'tt-ic-3', role: 'interconnect', onramps: [3], drops: { tx_dropped: 0, rx_dropped: 0 } },
];

function standIn(devices: KernelDeviceDrops[]): EdgeMetricsSource {
  return {
    gre: { drops: [] },
    counters: [],
    counterNames: [],
    status: () => ({ tuns: [], edge: {}, pipelineDrops: {}, greDrops: {}, wireguard: [], flows: { ipv4: 0, ipv6: 0 }, icmp: { timeExceededSent: 0, rateLimited: 0, noSource: 0, echoAnswered: 0 }, ipsec: [], esp: [] }),
    kernelDrops: () => devices,
  };
}

test('/metrics: tether_kernel_drops_total per device, role and kind, zeros included', async () => {
  const registry = createMetrics({ pipeline: new Pipeline(twoSites()), edge: standIn(DEVICES), greDropNames: [], wgDropNames: [], edgeCounterNames: [] });
  const text = await metricsText(registry);
  assert.match(text, /^tether_kernel_drops_total\{device="tt-underlay",role="underlay",kind="tx_dropped"\} 1234$/m);
  assert.match(text, /^tether_kernel_drops_total\{device="tt-egress",role="egress",kind="rx_dropped"\} 3$/m);
  assert.match(text, /^tether_kernel_drops_total\{device="tt-ic-3",role="interconnect",kind="tx_dropped"\} 0$/m);
});

test('/metrics: no kernel-drop metric without a source for it', async () => {
  const { kernelDrops: _, ...withoutKernel } = standIn(DEVICES);
  const text = await metricsText(createMetrics({ pipeline: new Pipeline(twoSites()), edge: withoutKernel, greDropNames: [], wgDropNames: [], edgeCounterNames: [] }));
  assert.doesNotMatch(text, /tether_kernel_drops_total/);
});

test('GET /v1/stats views: non-zero kinds per device, and per onramp keyed "DEVICE KIND" (a shared underlay on each of its onramps)', () => {
  const v = kernelDropViews(DEVICES);
  assert.deepEqual(v.devices, [
    { device: 'tt-underlay', role: 'underlay', drops: { tx_dropped: 1234 } },
    { device: 'tt-egress', role: 'egress', drops: { rx_dropped: 3 } },
    { device: 'tt-ic-3', role: 'interconnect', drops: {} },
  ]);
  assert.deepEqual(v.byOnramp.get(1), { 'tt-underlay tx_dropped': 1234 });
  assert.deepEqual(v.byOnramp.get(2), { 'tt-underlay tx_dropped': 1234 });
  assert.deepEqual(v.byOnramp.get(0), { 'tt-egress rx_dropped': 3 });
  assert.deepEqual(v.byOnramp.get(3), {});
});

test('tether onramps: a kernel-drops section only when a count is non-zero', () => {
  assert.deepEqual(kernelDropsSection(null), []);
  assert.deepEqual(kernelDropsSection({ onramps: [{ name: 'a', kernelDrops: {} }], internet: { kernelDrops: {} } }), []);
  const lines = kernelDropsSection({ onramps: [{ name: 'site-a-wg', kernelDrops: { 'tt-underlay tx_dropped': 1234 } }, { name: 'dc-link', kernelDrops: {} }], internet: { kernelDrops: { 'tt-egress rx_dropped': 3 } } });
  assert.equal(lines[0], '');
  assert.match(lines[1], /^Kernel drops/);
  assert.deepEqual(lines.slice(2), ['site-a-wg: tt-underlay tx_dropped 1234', 'internet: tt-egress rx_dropped 3']);
});
