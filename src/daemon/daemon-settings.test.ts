// The configuration's `daemon` section reaches the kernel objects: `offload` decides whether the egress and
// interconnect TUNs are opened with TUNSETOFFLOAD, `busy_poll_us` is the addon's spin budget while the edge runs.
// Each case starts an Edge from YAML in its own namespace tt-<pid>-ds (a child process: the TUNs and rules live
// there), reads its status, and stops it. Needs root and /dev/net/tun: without them the suite FAILS.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { removeStaleNamespaces, sh } from '../../test/support/netns.js';
import type { EdgeStatus } from './edge.js';

const NS = `tt-${process.pid}-ds`;
const LINK = 'ds-link';
const EGRESS = 'ds-egress';
/** A generous bound on a child edge's start and stop on a loaded machine; not a timed assertion. */
const CHILD_TIMEOUT_MS = 60_000;

/** Starts an Edge from the YAML in argv, prints its status as JSON, stops it. */
const EDGE_STATUS = `
const [root, yaml] = process.argv.slice(1);
const { Edge } = await import(root + '/src/daemon/edge.ts');
const { loadConfig } = await import(root + '/src/config/index.ts');
const log = { info() {}, warn() {}, debug() {}, error(o, m) { process.stderr.write(m + ' ' + JSON.stringify(o) + '\\n'); } };
const edge = new Edge({ config: loadConfig(yaml, 'test.yaml'), log, hugePages: false, countersIntervalMs: 0 });
edge.start();
const status = edge.status();
edge.stop();
process.stdout.write(JSON.stringify(status));`;

/**
 * The same with lanes: an Edge (given a busy-poll budget as an option, over the configuration's, unless '') started
 * with its lanes; prints every lane's budget as each lane's own status reports it (lane 0 first), then stops.
 */
const LANE_BUDGETS = `
const [root, yaml, us] = process.argv.slice(1);
const { Edge } = await import(root + '/src/daemon/edge.ts');
const { loadConfig } = await import(root + '/src/config/index.ts');
const log = { info() {}, warn() {}, debug() {}, error(o, m) { process.stderr.write(m + ' ' + JSON.stringify(o) + '\\n'); } };
const edge = new Edge({ config: loadConfig(yaml, 'test.yaml'), log, hugePages: false, countersIntervalMs: 0, ...(us === '' ? {} : { busyPollUs: Number(us) }) });
edge.start();
await edge.lanesReady();
const host = edge['laneHost'];
while (host.statuses().length < edge.laneCount - 1) await new Promise((r) => setTimeout(r, 50));
const budgets = [edge.status().busyPoll?.budgetUs, ...host.statuses().map((s) => s.busyPoll?.budgetUs)];
edge.stop();
process.stdout.write(JSON.stringify(budgets));
process.exit(0);`;

function config(daemon: string): string {
  return `version: 1
${daemon}
sites:
  - name: dc
onramps:
  - { name: dc-link, type: interconnect, site: dc, automatic_return_routing: true, interconnect: { link: ${LINK} } }
routes:
  - { prefix: 0.0.0.0/0, next_hop: internet }
egress:
  interface: ${EGRESS}
  addresses: [198.51.100.1]
`;
}

function runEdge(script: string, ...args: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script, '--', process.cwd(), ...args], {
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
  });
  assert.equal(r.status, 0, `the edge ran (${r.signal ?? r.status}): ${r.stderr}`);
  return r.stdout;
}

function edgeStatus(daemon: string): EdgeStatus {
  return JSON.parse(runEdge(EDGE_STATUS, config(daemon))) as EdgeStatus;
}

/** The offloads of the egress and interconnect TUNs (every TUN but the underlay, which never has them). */
function offloadsOf(status: EdgeStatus): Record<string, boolean | undefined> {
  return Object.fromEntries(status.tuns.filter((t) => t.name !== status.tuns[0].name).map((t) => [t.name, t.offloads]));
}

describe('the daemon section of the configuration (real TUNs, root)', () => {
  before(() => {
    assert.equal(process.getuid?.(), 0, 'these tests need root (CAP_NET_ADMIN); they fail rather than skip');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing (modprobe tun)');
    removeStaleNamespaces();
    try { sh('ip', 'netns', 'del', NS); } catch { /* not there */ }
    sh('ip', 'netns', 'add', NS);
    sh('ip', '-n', NS, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', NS, 'link', 'add', LINK, 'type', 'veth', 'peer', 'name', 'ds-peer');
    sh('ip', '-n', NS, 'link', 'set', LINK, 'up');
  });

  after(() => {
    try { sh('ip', 'netns', 'del', NS); } catch { /* never made */ }
  });

  it('offload: true (the default) opens the egress and interconnect TUNs with TUNSETOFFLOAD; false without', () => {
    const byDefault = edgeStatus('');
    assert.equal(Object.keys(offloadsOf(byDefault)).length, 2, `egress and interconnect TUNs: ${JSON.stringify(byDefault.tuns)}`);
    assert.ok(Object.values(offloadsOf(byDefault)).every((o) => o === true), JSON.stringify(byDefault.tuns));
    assert.equal(byDefault.tuns[0].offloads, false, 'the underlay TUN never has offloads');
    const off = edgeStatus('daemon: { offload: false }');
    assert.equal(Object.keys(offloadsOf(off)).length, 2);
    assert.ok(Object.values(offloadsOf(off)).every((o) => o === false), JSON.stringify(off.tuns));
  });

  it('busy_poll_us reaches the TUNs\' busy poll while the edge runs (default 0: off)', () => {
    assert.equal(edgeStatus('').busyPoll?.budgetUs, 0);
    assert.equal(edgeStatus('daemon: { busy_poll_us: 50 }').busyPoll?.budgetUs, 50);
    assert.equal(edgeStatus('daemon: { busy_poll_us: 1000 }').busyPoll?.budgetUs, 1000);
  });

  it('every lane\'s thread busy-polls its own queues with the edge\'s budget, the configuration\'s or the option\'s', () => {
    assert.deepEqual(JSON.parse(runEdge(LANE_BUDGETS, config('daemon: { lanes: 2, busy_poll_us: 40 }'), '')), [40, 40]);
    assert.deepEqual(JSON.parse(runEdge(LANE_BUDGETS, config('daemon: { lanes: 2, busy_poll_us: 0 }'), '70')), [70, 70]);
  });
});
