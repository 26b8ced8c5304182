/**
 * Failover end to end (issue 8, "Must show"): the lab's dual-tunnel site-c (two wireguard-go tunnels from one
 * router, 10.0.1.10 behind it) with real TCP stacks. A 200 MB checksummed download from the Internet server
 * survives the cut of site-c's primary tunnel in its middle; HTTP from site-a, site-b and site-c at once gets
 * every answer to the site that asked, over whichever of site-c's tunnels is up. Root only: as in CI, it fails
 * loudly, never skips. Its own prefix per run; labUp removes leftovers of that prefix first.
 *
 * "Cut to first byte over the backup" is measured from byte counters on the backup's underlay link (the
 * router's end, polled every 2 ms from inside its namespace; the first poll whose packets average a
 * near-full-size datagram), and cross-checked against the download's own stall and resume.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { LAB_HEALTH_AND_FAILOVER_KEYS } from '../../src/lab/config.js';
import { httpRound, REQUESTS_PER_SITE } from '../../src/lab/demo.js';
import {
  ensureLabTools, LAB, labDown, labUp, linkRxBytes, measureSiteCFailover, restoreSiteCPrimary, siteCUnderlayLink, type LabInfo,
} from '../../src/lab/index.js';

const PREFIX = `f${(process.pid % 46656).toString(36)}`;
const DOWNLOAD_BYTES = 200 * 1024 * 1024;
/** The cut comes once this share of the download has arrived. */
const CUT_AT_SHARE = 0.4;
/** Generous bounds, not measurements: a failover slower than this is broken, not slow. */
const FAILOVER_BOUND_MS = 20_000;
/** WireGuard keepalives and (once enabled) health probes on an idle tunnel during one round stay far below. */
const IDLE_TUNNEL_BYTES = 4096;
/**
 * Without health checks the edge learns that site-c moved only from the flow's own packets; a receiving host
 * whose data stopped sends none, so the client turns TCP keepalive on (1 s). With health checks the edge finds
 * the primary down itself and the client needs nothing.
 */
const CLIENT_KEEPALIVE_MS = LAB_HEALTH_AND_FAILOVER_KEYS ? 0 : 1000;

let lab: LabInfo;

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the end-to-end tests need root (network namespaces, TUN devices); CI runs them as root');
  await ensureLabTools();
  lab = await labUp({ prefix: PREFIX });
});

after(async () => {
  await labDown({ prefix: PREFIX });
});

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

test('site-a, site-b and site-c (10.0.1.10 each) fetch at once: every answer reaches the site that asked; site-c\'s over its primary', async () => {
  const { primary, backup } = await threeSites();
  assert.ok(primary > REQUESTS_PER_SITE * 200, `site-c's answers came over the primary (${primary} bytes)`);
  assert.ok(backup < IDLE_TUNNEL_BYTES, `and not over the backup (${backup} bytes)`);
});

test('a 200 MB download from site-c through the Internet egress survives the cut of the primary tunnel: same SHA-256 at both ends, no reset', async (t) => {
  const m = await measureSiteCFailover(lab.names, { bytes: DOWNLOAD_BYTES, cutAtShare: CUT_AT_SHARE, keepAliveMs: CLIENT_KEEPALIVE_MS, giveUpMs: FAILOVER_BOUND_MS });
  const r = m.download;
  assert.equal(r.error, undefined, `the transfer ended with ${r.error} after ${r.bytes} bytes`);
  assert.equal(r.status, 200);
  assert.equal(r.bytes, DOWNLOAD_BYTES);
  assert.equal(r.serverSha256 !== undefined && r.sha256 === r.serverSha256, true, `SHA-256 received ${r.sha256}, sent ${r.serverSha256}`);
  assert.notEqual(m.failoverMs, null, `no data on the backup's underlay link within ${FAILOVER_BOUND_MS} ms of the cut`);
  const remaining = DOWNLOAD_BYTES * (1 - CUT_AT_SHARE);
  assert.ok(m.backupBytes > remaining / 2, `the rest of the download came over the backup (${m.backupBytes} bytes on its link)`);

  const seconds = (r.endedAt - r.startedAt) / 1000;
  t.diagnostic(`cut to first byte over the backup: ${m.failoverMs} ms (byte counters on the backup's underlay link, 2 ms polls)`);
  t.diagnostic(`the download's own view: ${m.stall ? `its longest pause after the cut ran from ${m.stall.from - m.cutAt} to ${m.stall.to - m.cutAt} ms after it` : 'no pause of 50 ms or more after the cut'}`);
  t.diagnostic(`200 MiB in ${seconds.toFixed(1)} s (${((DOWNLOAD_BYTES * 8) / seconds / 1e6).toFixed(0)} Mbit/s through the edge); ` +
    `health checks ${LAB_HEALTH_AND_FAILOVER_KEYS ? 'on' : `off (client TCP keepalive ${CLIENT_KEEPALIVE_MS} ms)`}`);
});

test('with the primary cut, the three sites again get every answer, site-c\'s over the backup; once restored, new flows take the primary again', async () => {
  const cut = await threeSites();
  assert.equal(cut.primary, 0, 'nothing reaches the router over the cut link');
  assert.ok(cut.backup > REQUESTS_PER_SITE * 200, `site-c's answers came over the backup (${cut.backup} bytes)`);

  await restoreSiteCPrimary(lab.names);
  const restored = await threeSites();
  assert.ok(restored.primary > REQUESTS_PER_SITE * 200, `site-c's answers came over the primary again (${restored.primary} bytes)`);
  assert.ok(restored.backup < IDLE_TUNNEL_BYTES, `and no longer over the backup (${restored.backup} bytes)`);
});
