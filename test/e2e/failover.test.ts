/**
 * Failover end to end (issue 8, "Must show"): the lab's dual-tunnel site-c (two wireguard-go tunnels from one
 * router, 10.0.1.10 behind it) with real TCP stacks, site-c's onramps health-checked at the default rate (mid)
 * and the site's failover policy `drain` (drain_idle_seconds small, so failback can be watched). In order:
 *   - HTTP from site-a, site-b and site-c at once gets every answer to the site that asked, site-c's over its
 *     primary;
 *   - a 200 MiB checksummed download from the Internet server survives the cut of site-c's primary in its
 *     middle (no reset, same SHA-256); the edge's health check finds the primary down (GET /v1/onramps) and the
 *     replies move to the backup: the client sends nothing to help;
 *   - while it is down, the route penalty shows in `tether routes` and `tether explain` (the data center's
 *     routes to site-c's LAN), and the three sites still get their answers, site-c's over the backup;
 *   - drain: the primary restored is degraded after three good probes; new flows take it while an old UDP
 *     stream stays on the backup, until it idles for drain_idle_seconds; then its replies move to the primary;
 *   - a probe target that never answers (the router drops the probes) keeps the primary down with one log line
 *     for the transition, no more, and no error lines.
 * Root only: as in CI, it fails loudly, never skips. Its own prefix per run; labUp removes leftovers of that
 * prefix first.
 *
 * "Cut to first byte over the backup" is measured from byte counters on the backup's underlay link (the
 * router's end, polled every 2 ms from inside its namespace; the first poll whose packets average a
 * near-full-size datagram), and cross-checked against the download's own stall and resume. Which tunnel a flow's
 * replies take is read the same way: the router's receive counters on each tunnel's underlay link.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PENALTY_DOWN } from '../../src/health/constants.js';
import { DOWN_BOUND_MS, HEALTH_RATE, INTERVAL_MS, QUIET_INTERVALS, QUIET_MS, SLACK_MS, TIMEOUT_MS, quietProbesOk } from '../support/health-timing.js';
import { labTopologyConfig, SITE_C_ONRAMPS, SITE_C_ROUTE_PRIORITY } from '../../src/lab/config.js';
import { httpRound, REQUESTS_PER_SITE } from '../../src/lab/demo.js';
import {
  inNamespaceOk, LAB, linkRxBytes, measureSiteCFailover, restoreSiteCPrimary, siteCUnderlayLink, startUdpStream, watchHealth, type HealthWatcher, type LabInfo,
} from '../../src/lab/index.js';
import { nodeTsArgs, TETHER_CLI } from '../../src/lab/paths.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `f${(process.pid % 46656).toString(36)}`;
const DOWNLOAD_BYTES = 200 * 1024 * 1024;
/** The cut comes once this share of the download has arrived. */
const CUT_AT_SHARE = 0.4;
/** drain's idle time in this test's config: small, so failback is watched within seconds. */
const DRAIN_IDLE_SECONDS = 2;
/** Generous bounds, not measurements: a failover slower than this is broken, not slow. */
const FAILOVER_BOUND_MS = 20_000;
/** Restored → degraded takes three answered probes (the next regular one and its two re-probes); the tunnel's
 * own recovery (a WireGuard handshake) comes on top, hence the larger slack. site-c is probed at the default
 * rate (labTopologyConfig); the bounds come from its figures (test/support/health-timing.ts). */
const RECOVER_BOUND_MS = INTERVAL_MS + 4 * SLACK_MS;
/** WireGuard keepalives and health probes on an idle tunnel during one round stay far below. */
const IDLE_TUNNEL_BYTES = 4096;
const { primary: PRIMARY, backup: BACKUP } = SITE_C_ONRAMPS;
const CONFIG = labTopologyConfig({ failover: 'drain', drainIdleSeconds: DRAIN_IDLE_SECONDS });
const API = `http://${CONFIG.api.listen}:${CONFIG.api.port}`;
/** The UDP stream's flow: one datagram of STREAM_BYTES every STREAM_INTERVAL_MS from this port. */
const STREAM_PORT = 47000;
const STREAM_BYTES = 1000;
const STREAM_INTERVAL_MS = 50;
/** A counting window: long enough for the stream to put tens of kilobytes on the tunnel its replies take. */
const WINDOW_MS = 1500;
/** The stream's replies over one window, counted low (half the datagrams): well above IDLE_TUNNEL_BYTES. */
const STREAM_WINDOW_BYTES = (WINDOW_MS / STREAM_INTERVAL_MS / 2) * STREAM_BYTES;

let lab: LabInfo;
let health: HealthWatcher;
let tokenFile: string;
/** Wall-clock ms of the cut (the download test). */
let cutAt = 0;

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX, config: CONFIG });
  tokenFile = join(lab.runDir, 'api-token');
  health = watchHealth(lab.names.edge, API, tokenFile);
  await health.ready;
});

after(async () => {
  health?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bytes the site-c router received from the edge on each tunnel's underlay link while `f` ran. */
async function perTunnel<T>(f: () => Promise<T>): Promise<{ value: T; primary: number; backup: number }> {
  const read = () => Promise.all(['primary', 'backup'].map((t) => linkRxBytes(lab.names.siteCRouter, siteCUnderlayLink(t as 'primary' | 'backup'))));
  const [p0, b0] = await read();
  const value = await f();
  const [p1, b1] = await read();
  return { value, primary: p1 - p0, backup: b1 - b0 };
}

/** HTTP from the three overlapping sites at once; every answer must reach the site that asked. */
async function threeSites(): Promise<{ primary: number; backup: number }> {
  const names = { 'site-a': lab.names.siteA, 'site-b': lab.names.siteB, 'site-c': lab.names.siteC };
  const { value, primary, backup } = await perTunnel(() => httpRound(names, LAB.internet.server));
  for (const r of value) {
    assert.equal(r.own, REQUESTS_PER_SITE, `${r.site}: ${JSON.stringify(r)}`);
    assert.equal(r.foreign, 0, `${r.site} received another site's answers`);
    assert.deepEqual(r.seenAs, ['198.51.100.1'], `${r.site} is seen as the pool address`);
  }
  return { primary, backup };
}

/** `tether …` in the edge namespace, with the lab's token (reads need it too). */
async function cli(...args: string[]): Promise<string> {
  return inNamespaceOk(lab.names.edge, process.execPath, nodeTsArgs(TETHER_CLI, [...args, '--api', API, '--token-file', tokenFile]), { timeoutMs: 30_000 });
}

interface LogLine { level: number; time: number; msg: string; reqId?: string; onramp?: string; from?: string; to?: string; reason?: string }

/** The edge's JSON log so far. */
function edgeLog(): LogLine[] {
  return readFileSync(lab.edgeLog!, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

const healthLines = (onramp: string, since = 0) => edgeLog().filter((l) => l.msg === 'onramp health' && l.onramp === onramp && l.time >= since);
/** pino's levels: 50 error, 60 fatal. */
const errorLines = () => edgeLog().filter((l) => l.level >= 50);

test('site-a, site-b and site-c (10.0.1.10 each) fetch at once: every answer reaches the site that asked; site-c\'s over its primary', async () => {
  const { primary, backup } = await threeSites();
  assert.ok(primary > REQUESTS_PER_SITE * 200, `site-c's answers came over the primary (${primary} bytes)`);
  assert.ok(backup < IDLE_TUNNEL_BYTES, `and not over the backup (${backup} bytes)`);
  for (const onramp of [PRIMARY, BACKUP]) {
    assert.notEqual(health.seen.filter((s) => s.onramp === onramp).at(-1)?.state, 'down', `${onramp} is up: ${JSON.stringify(health.seen)}`);
  }
});

test('a 200 MB download from site-c through the Internet egress survives the cut of the primary tunnel: same SHA-256 at both ends, no reset; the health check finds the primary down within seconds', async (t) => {
  const m = await measureSiteCFailover(lab.names, { bytes: DOWNLOAD_BYTES, cutAtShare: CUT_AT_SHARE, giveUpMs: FAILOVER_BOUND_MS });
  cutAt = m.cutAt;
  const r = m.download;
  assert.equal(r.error, undefined, `the transfer ended with ${r.error} after ${r.bytes} bytes`);
  assert.equal(r.status, 200);
  assert.equal(r.bytes, DOWNLOAD_BYTES);
  assert.equal(r.serverSha256 !== undefined && r.sha256 === r.serverSha256, true, `SHA-256 received ${r.sha256}, sent ${r.serverSha256}`);
  assert.notEqual(m.failoverMs, null, `no data on the backup's underlay link within ${FAILOVER_BOUND_MS} ms of the cut`);
  const remaining = DOWNLOAD_BYTES * (1 - CUT_AT_SHARE);
  assert.ok(m.backupBytes > remaining / 2, `the rest of the download came over the backup (${m.backupBytes} bytes on its link)`);

  const downAt = await health.reached(PRIMARY, 'down', cutAt, DOWN_BOUND_MS);
  assert.notEqual(downAt, null, `GET /v1/onramps did not show ${PRIMARY} down within ${DOWN_BOUND_MS} ms of the cut: ${JSON.stringify(health.seen)}`);
  const logged = healthLines(PRIMARY, cutAt).find((l) => l.to === 'down');
  assert.ok(logged, `the transition is logged: ${JSON.stringify(healthLines(PRIMARY))}`);
  assert.ok(!health.seen.some((s) => s.onramp === BACKUP && s.state === 'down'), `the backup never went down: ${JSON.stringify(health.seen)}`);

  const seconds = (r.endedAt - r.startedAt) / 1000;
  t.diagnostic(`cut to first byte over the backup: ${m.failoverMs} ms (byte counters on the backup's underlay link, 2 ms polls)`);
  t.diagnostic(`the download's own view: ${m.stall ? `its longest pause after the cut ran from ${m.stall.from - cutAt} to ${m.stall.to - cutAt} ms after it` : 'no pause of 50 ms or more after the cut'}`);
  t.diagnostic(`cut to ${PRIMARY} down: ${downAt! - cutAt} ms in GET /v1/onramps (50 ms polls), ${logged.time - cutAt} ms by the edge's log line (rate ${HEALTH_RATE}: interval ${INTERVAL_MS} ms, timeout ${TIMEOUT_MS} ms)`);
  t.diagnostic(`200 MiB in ${seconds.toFixed(1)} s (${((DOWNLOAD_BYTES * 8) / seconds / 1e6).toFixed(0)} Mbit/s through the edge); the client sends nothing but its ACKs`);
});

test('with the primary down: its route penalty shows in tether routes and tether explain; the three sites again get every answer, site-c\'s over the backup', async () => {
  const routes = await cli('routes');
  const down = `${SITE_C_ROUTE_PRIORITY.primary} (+${PENALTY_DOWN} down = ${SITE_C_ROUTE_PRIORITY.primary + PENALTY_DOWN})`;
  assert.ok(routes.split('\n').some((l) => l.includes(`onramp ${PRIMARY}`) && l.includes(down)), `tether routes shows the penalty (${down}):\n${routes}`);
  const explained = await cli('explain', '--onramp', 'dc-link', '--src', LAB.dc.server, '--dst', LAB.siteHost, '--protocol', 'tcp', '--sport', '40000', '--dport', '80');
  assert.match(explained, new RegExp(`^forward to .*${BACKUP}`), explained);
  assert.match(explained, new RegExp(`penalised by health: route \\d+ via onramp ${PRIMARY} \\(\\d+\\) at ${SITE_C_ROUTE_PRIORITY.primary + PENALTY_DOWN}`), explained);

  const cut = await threeSites();
  assert.equal(cut.primary, 0, 'nothing reaches the router over the cut link');
  assert.ok(cut.backup > REQUESTS_PER_SITE * 200, `site-c's answers came over the backup (${cut.backup} bytes)`);
});

test('drain: the primary restored is degraded after three good probes; new flows take it while an established flow stays on the backup until it idles for drain_idle_seconds, then its replies move to the primary', async (t) => {
  const stream = startUdpStream(lab.names.siteC, LAB.internet.server, LAB.echoPort, { sourcePort: STREAM_PORT, bytes: STREAM_BYTES, intervalMs: STREAM_INTERVAL_MS });
  try {
    await stream.ready;
    const onBackup = await perTunnel(() => sleep(WINDOW_MS));
    assert.ok(onBackup.backup > STREAM_WINDOW_BYTES && onBackup.primary === 0, `the stream's replies come over the backup while the primary is cut: ${JSON.stringify(onBackup)}`);

    const restoredAt = Date.now();
    await restoreSiteCPrimary(lab.names);
    const degradedAt = await health.reached(PRIMARY, 'degraded', restoredAt, RECOVER_BOUND_MS);
    assert.notEqual(degradedAt, null, `${PRIMARY} not degraded within ${RECOVER_BOUND_MS} ms of the restore: ${JSON.stringify(health.seen)}`);
    const back = healthLines(PRIMARY, restoredAt);
    assert.deepEqual(back.map((l) => [l.from, l.to, l.reason]), [['down', 'degraded', 'consecutive-successes']], 'back to degraded (not healthy: five clean minutes are needed)');
    t.diagnostic(`restore to ${PRIMARY} degraded: ${degradedAt! - restoredAt} ms in GET /v1/onramps, ${back[0].time - restoredAt} ms by the log line`);

    // New flows from site-c (the router's default route is the primary's again) are answered over the primary;
    // the stream, still going, keeps its replies on the backup although its datagrams now arrive on the primary.
    const both = await perTunnel(() => httpRound({ 'site-c': lab.names.siteC }, LAB.internet.server));
    assert.equal(both.value[0].own, REQUESTS_PER_SITE, JSON.stringify(both.value));
    assert.ok(both.primary > REQUESTS_PER_SITE * 200, `new flows' answers came over the primary (${both.primary} bytes)`);
    const stays = await perTunnel(() => sleep(WINDOW_MS));
    assert.ok(stays.backup > STREAM_WINDOW_BYTES, `the established stream's replies stay on the backup while it is active: ${JSON.stringify(stays)}`);
    assert.ok(stays.primary < IDLE_TUNNEL_BYTES, `and not on the primary: ${JSON.stringify(stays)}`);

    // The stream idles longer than drain_idle_seconds; its next datagram moves it to the primary.
    const paused = await stream.pause();
    await sleep(DRAIN_IDLE_SECONDS * 1000 + 500);
    await stream.resume();
    const drained = await perTunnel(() => sleep(WINDOW_MS));
    assert.ok(drained.primary > STREAM_WINDOW_BYTES, `after idling, the stream's replies come over the primary: ${JSON.stringify(drained)}`);
    assert.ok(drained.backup < IDLE_TUNNEL_BYTES, `and no longer over the backup: ${JSON.stringify(drained)}`);
    const done = await stream.stop();
    assert.ok(done.received > paused.received, `the stream goes on after the move: ${JSON.stringify({ paused, done })}`);
    t.diagnostic(`UDP stream: ${done.sent} datagrams sent, ${done.received} answered`);
  } finally {
    await stream.stop().catch(() => undefined);
  }
});

test('a probe target that never answers keeps the primary down: one log line for the transition, none while it stays down, no error lines', async (t) => {
  // The router drops the edge's probes to its primary inside address (counted), and answers everything else.
  const table = ['inet', 'tetherlab'];
  const nft = (...args: string[]) => inNamespaceOk(lab.names.siteCRouter, 'nft', args);
  await nft('add', 'table', ...table);
  await nft('add', 'chain', ...table, 'input', '{ type filter hook input priority 0; }');
  await nft('add', 'rule', ...table, 'input', 'ip', 'daddr', LAB.siteC.primary.routerInside, 'icmp', 'type', 'echo-request', 'counter', 'drop');
  const dropped = async () => Number(/counter packets (\d+)/.exec(await nft('list', 'chain', ...table, 'input'))?.[1] ?? NaN);
  const silentAt = Date.now();
  const downAt = await health.reached(PRIMARY, 'down', silentAt, DOWN_BOUND_MS);
  assert.notEqual(downAt, null, `${PRIMARY} not down within ${DOWN_BOUND_MS} ms of its target falling silent: ${JSON.stringify(health.seen)}`);
  t.diagnostic(`target silent to ${PRIMARY} down: ${downAt! - silentAt} ms`);

  const lines = edgeLog().length;
  const probes = await dropped();
  await sleep(QUIET_MS);
  // The API logs each request it serves (`reqId`): those are this test's own polls of GET /v1/onramps.
  const added = edgeLog().slice(lines).filter((l) => l.reqId === undefined);
  assert.deepEqual(added.map((l) => l.msg), [], 'the edge logs nothing while the onramp stays down');
  const sent = (await dropped()) - probes;
  assert.ok(quietProbesOk(sent), `probes go on at one per interval, no re-probe storm: ${sent} in ${QUIET_INTERVALS} intervals`);
  assert.deepEqual(healthLines(PRIMARY, silentAt).map((l) => [l.from, l.to]), [['degraded', 'down']], 'one line for the one transition');
  assert.deepEqual(errorLines(), [], 'no error lines in the edge\'s whole log');
  assert.deepEqual(health.errors, [], 'every GET /v1/onramps was answered');
});
