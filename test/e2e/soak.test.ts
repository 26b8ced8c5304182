/**
 * The soak's smoke test (issue 11; docs/SOAK.md): `runSoak` for about 20 s — the well-behaved sites' UDP, HTTP
 * and ICMP with churning flows, the hostile site and Internet at full tilt — and the report: no misdelivered
 * reply, the edge alive, every site answered, the hostile traffic dropped with counted reasons, and the
 * figures each interval reports present. The 30-minute run is `npm run soak`. Root only: it fails loudly,
 * never skips. Its own prefix per run; runSoak removes leftovers of that prefix first and everything at the end.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureLabTools } from '../../src/lab/index.js';
import { runSoak } from '../../src/lab/soak.js';

const PREFIX = `k${(process.pid % 46656).toString(36)}`;
const DURATION_MS = 20_000;
const INTERVAL_MS = 5_000;
/** A smaller flood than the soak's: the smoke test checks the tool, not the quotas (test/e2e/fair-share.test.ts does). */
const SMOKE_FLOOD_RATE = 200;

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the end-to-end tests need root (network namespaces, TUN devices); CI runs them as root');
  await ensureLabTools();
});

test('soak smoke: 20 s of mixed traffic from every site beside a hostile site and Internet — no reply misdelivered, every site answered, hostile input counted', async (t) => {
  const report = await runSoak({ prefix: PREFIX, durationMs: DURATION_MS, intervalMs: INTERVAL_MS, floodRate: SMOKE_FLOOD_RATE, print: (line) => t.diagnostic(line) });
  assert.equal(report.misdelivered, 0, 'no reply reached a site other than the one that asked');
  assert.equal(report.edgeAlive, true, 'the edge is still running');
  assert.ok(report.intervals.length >= 3, `one report per interval: ${report.intervals.length}`);
  for (const i of report.intervals) {
    assert.ok(i.rssMiB > 0 && i.fds > 0 && i.heapMiB !== null && i.heapMiB > 0, `figures: ${JSON.stringify(i)}`);
  }
  for (const [site, kinds] of Object.entries(report.sites)) {
    for (const [kind, c] of Object.entries(kinds)) {
      assert.ok(c.ok > 0 && c.ok >= c.sent / 2, `${site} ${kind}: most exchanges answered ${JSON.stringify(c)}`);
      assert.equal(c.foreign, 0, `${site} ${kind}`);
    }
  }
  const hostile = report.hostile;
  for (const kind of ['spoof', 'tunnel_spoof', 'udp_flood', 'syn_flood', 'garbage', 'handshake_flood', 'forged_udp', 'forged_icmp_error', 'forged_tcp']) {
    assert.ok((hostile[kind] ?? 0) > 0, `hostile ${kind} sent: ${JSON.stringify(hostile)}`);
  }
  const drops = report.drops;
  assert.ok((drops.source_not_allowed ?? 0) > 0, `sources outside site-a's allowed IPs dropped: ${JSON.stringify(drops)}`);
  assert.ok(Object.keys(drops).some((k) => k.startsWith('gre:')), `garbage GRE counted: ${JSON.stringify(drops)}`);
  assert.ok((drops['wg-a:cookie_required'] ?? 0) > 0,
    `the handshake flood counted at wg-a: ${JSON.stringify(drops)}`);
});
