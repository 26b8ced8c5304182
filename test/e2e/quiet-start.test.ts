/**
 * A fresh, idle edge shows no drops (docs/UNDERLAY.md "A quiet TUN"). The kernel sends MLD reports (and, where the
 * namespace does not forward, router solicitations) on any device that comes up with IPv6; on tether's TUNs they
 * reached the daemon as if a site had sent them and were counted as drops (`unsupported_protocol` on the egress and
 * the interconnect, `underlay_malformed` on the underlay) before any site sent a packet. The lab has every TUN role
 * (the underlay with WireGuard and GRE, the egress, an interconnect) in a namespace that forwards IPv6: started and
 * left idle, every drop counter must read zero. Behaviour only, no timing: the idle wait only gives the kernel's
 * reports (retransmitted within a few seconds of `up`, RFC 3810 §6.1) time to have happened. Root only: it fails
 * loudly, never skips. Its own prefix per run; labUpForTest removes leftovers of that prefix first and brings the lab down after.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../../src/lab/exec.js';
import { inNamespaceOk, type LabInfo } from '../../src/lab/index.js';
import { DEFAULT_UNDERLAY_NAME, INTERCONNECT_TUN_PREFIX, QUIET_IPV6_SETTINGS } from '../../src/daemon/network.js';
import { labUpForTest } from '../support/lab-test.js';
import { metricSamples } from '../support/live-site.js';

const PREFIX = `qt${(process.pid % 46656).toString(36)}`;
/** Idle time after the lab is up: longer than MLDv2's unsolicited reports take (robustness 2, interval 1 s). */
const IDLE_MS = 5_000;
/** Every counter of something refused or lost: the pipeline's reasons, per onramp, per transport, the kernel's. */
const DROP_SAMPLES = /^tether_[a-z_]*drops_total|^tether_edge_events_total\{event="(underlay_malformed|underlay_not_for_us|[a-z_]*_drop)"\}$/;

let lab: LabInfo;

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX });
});

/** The TUNs the daemon made in the lab, one of each role. */
async function tuns(): Promise<string[]> {
  const links = await inNamespaceOk(lab.names.edge, 'ip', ['-o', 'link', 'show', 'type', 'tun']);
  return links.split('\n').filter((l) => l !== '').map((l) => l.split(': ')[1].split('@')[0]);
}

test('a fresh edge left idle counts no drops of any reason on any onramp, transport or TUN', async (t) => {
  await sleep(IDLE_MS);
  const samples = await metricSamples(lab, DROP_SAMPLES);
  // The families exist (a renamed metric must not make this test pass by matching nothing).
  for (const family of ['tether_drops_total', 'tether_port_drops_total', 'tether_kernel_drops_total', 'tether_edge_events_total']) {
    assert.ok(samples.some(([name]) => name.startsWith(family)), `/metrics has ${family}`);
  }
  const nonZero = samples.filter(([, value]) => value !== 0);
  t.diagnostic(`${samples.length} drop counters read after ${IDLE_MS} ms idle`);
  assert.deepEqual(nonZero, [], `drops on an idle edge: ${nonZero.map(([n, v]) => `${n} ${v}`).join(', ')}`);
});

test('every TUN is up without an IPv6 address of its own and with the quiet settings, IPv6 routes through it still taken', async () => {
  const names = await tuns();
  const lab0 = lab.names.edge;
  const interconnect = names.find((n) => n.startsWith(INTERCONNECT_TUN_PREFIX));
  assert.ok(names.includes(DEFAULT_UNDERLAY_NAME) && interconnect !== undefined && names.length >= 3, `underlay, egress and interconnect TUNs: ${names.join(', ')}`);
  for (const dev of names) {
    assert.equal((await inNamespaceOk(lab0, 'ip', ['-6', '-o', 'addr', 'show', 'dev', dev])).trim(), '', `${dev} has no IPv6 address (no link-local)`);
    for (const [key, value] of QUIET_IPV6_SETTINGS) {
      assert.equal((await inNamespaceOk(lab0, 'cat', [`/proc/sys/net/ipv6/conf/${dev}/${key}`])).trim(), value, `${dev}: ${key}`);
    }
  }
  // The namespace still forwards IPv6 (the devices' own forwarding = 0 is the host role towards tether only), and
  // the interconnect's IPv6 default route into its TUN is in place.
  assert.equal((await inNamespaceOk(lab0, 'cat', ['/proc/sys/net/ipv6/conf/all/forwarding'])).trim(), '1');
  const table = await inNamespaceOk(lab0, 'ip', ['-6', 'route', 'show', 'table', 'all', 'dev', interconnect]);
  assert.match(table, /^default /m, table);
});
