// Health checks across lanes end to end (docs/HEALTH.md "Lanes"): `tether run --lanes 2` with the lanes topology
// (test/support/lanes-topology.ts), dc1's interconnect checked by the site's own probes (`type: reply`): dc1 pings
// the edge's tunnel address from many source addresses. The kernel picks each pair's TUN queue by hash, so some
// land on lane 1, which hands them to lane 0, where the checks run: every ping is answered and every one is counted
// by lane 0's engine (before, lane 1 answered those itself and lane 0 never heard of them).
// Namespaces tt-<pid>-lh-*; those of dead runs are removed first (test/support/netns.ts). Needs root; never skips.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nsSh, removeStaleNamespaces } from '../support/netns.js';
import { buildLanesTopology, lanesConfig, lanesNamespaces, removeLanesTopology } from '../support/lanes-topology.js';
import { childStatus, nsSpawn, type Child as NsChild } from '../support/ns-child.js';

const PREFIX = `tt-${process.pid}-lh-`;
const NS = lanesNamespaces(PREFIX);
const API = 'http://127.0.0.1:8470';
/** dc1-link's tunnel address (health_check.source): the address dc1 pings. */
const EDGE_TUNNEL = '100.64.1.1';
/** Source addresses in dc1: each (source, edge) pair's queue is the kernel's hash pick; 12 leave all on lane 0 1 time in 4,096. */
const SOURCES = Array.from({ length: 12 }, (_, k) => `172.31.9.${10 + k}`);
const PINGS = 3;

describe('tether run --lanes 2: the site\'s probes reach lane 0\'s health checks from every lane (real interfaces, root)', () => {
  let dir = '';
  let token = '';
  let edge: NsChild | null = null;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lanes health test needs root (CAP_NET_ADMIN): run it as root; it is never skipped');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing');
    for (const tool of ['curl', 'ping']) execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    removeStaleNamespaces();
    removeLanesTopology(NS);
    buildLanesTopology(NS);
    nsSh(NS.dc1, SOURCES.map((a) => `ip addr add ${a}/32 dev lo`).join('\n'));
    dir = mkdtempSync(join(tmpdir(), PREFIX));
    const config = lanesConfig(dir, `api: { token_file: ${dir}/token }\n`)
      .replace('interconnect: { link: veth-dc1 } }', `interconnect: { link: veth-dc1 }, health_check: { type: reply, source: ${EDGE_TUNNEL} } }`);
    assert.ok(config.includes(EDGE_TUNNEL), 'dc1-link has its health check');
    writeFileSync(join(dir, 'edge.yaml'), config);
    edge = nsSpawn(NS.edge, ['--import', 'tsx', 'src/cli/tether.ts', 'run', '--lanes', '2', '--config', join(dir, 'edge.yaml')]);
    await edge.waitFor('"lanes running"');
    await edge.waitFor('"API listening"');
    token = readFileSync(join(dir, 'token'), 'utf8').trim();
  });

  after(() => {
    edge?.child.kill('SIGKILL');
    removeLanesTopology(NS);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every ping from every source answered and counted by lane 0; some were read by lane 1 and handed over', async () => {
    for (const source of SOURCES) {
      // Exit 0: every echo answered (a generous per-reply wait on a loaded machine: behaviour, not timing).
      execFileSync('ip', ['netns', 'exec', NS.dc1, 'ping', '-n', '-q', '-c', String(PINGS), '-i', '0.2', '-W', '5', '-I', source, EDGE_TUNNEL], { stdio: 'ignore' });
    }
    const metrics = execFileSync('ip', ['netns', 'exec', NS.edge, 'curl', '-sS', '--fail-with-body', '-H', `authorization: Bearer ${token}`, `${API}/metrics`], { encoding: 'utf8' });
    const answered = /tether_onramp_health_site_probes_answered_total\{onramp="dc1-link"\} (\d+)/.exec(metrics)?.[1];
    assert.equal(Number(answered), SOURCES.length * PINGS, metrics.split('\n').filter((l) => l.startsWith('tether_onramp_health')).join('\n'));
    // Lane 1's counters reach lane 0's status once a second: polled until its handoffs show.
    let handed = 0;
    for (let tries = 0; tries < 40 && handed === 0; tries++) {
      handed = (await childStatus<{ edge: Record<string, number> }>(edge!)).edge.lane_handed_off ?? 0;
      if (handed === 0) await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(handed > 0, 'some pings were read by lane 1 and handed to lane 0');
  });
});
