/**
 * The dashboard's gateway view (issue 12) in headless Chromium: the gateway rules in order with their selectors, a
 * rule added through the API appearing, and the host name beside a flow the gateway classified (Pipeline.flowName:
 * set by the test here until classification fills it). Never skips: without /usr/bin/chromium it fails and says
 * how to install it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registerDashboard } from '../../src/control/dashboard.js';
import { NameSource } from '../../src/gateway/policy.js';
import { buildTcp } from '../../src/wire/build.js';
import { TCP_SYN } from '../../src/wire/constants.js';
import { apiRig } from '../support/api.js';
import { openDashboard } from '../support/browser.js';

const TOKEN = 'dashboard-gateway-token-0123456789';
const WAIT_MS = 25_000;

test('dashboard: gateway rules in order with their selectors; a new rule appears; the classified host name beside its flow', async () => {
  const rig = apiRig({ token: TOKEN, prefix: 'tether-dashboard-gw-', extend: registerDashboard });
  const post = async (url: string, body: unknown): Promise<void> => {
    const r = await rig.inject({ method: 'POST', url, payload: body as object });
    assert.equal(r.statusCode, 201, r.body);
  };
  await post('/v1/gateway/dlp-profiles', { name: 'cards', cards: true });
  await post('/v1/gateway/rules', { name: 'no-social-b', action: 'block', sites: ['site-b'], hostnames: ['*.example-social.com'], sources: ['sni', 'http_host'], destination_ports: [443] });
  await post('/v1/gateway/rules', { name: 'scan-a', action: 'log', sites: ['site-a'], protocols: ['tcp'], destination_ports: [80], dlp: ['cards'] });
  const a = rig.ids.onramps.get('site-a-wg')!;
  assert.equal(rig.edge.send(a, buildTcp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 41000, dstPort: 443, seq: 1, flags: TCP_SYN })).drop, 0);
  assert.equal(rig.edge.send(a, buildTcp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 41001, dstPort: 443, seq: 1, flags: TCP_SYN })).drop, 0);
  // The name classification kept for the first flow only.
  rig.edge.pipeline.flowName = (table, flow) => ((table.nodePorts(flow * 2) >>> 16) === 41000 ? { source: NameSource.Sni, name: 'www.example-news.com' } : undefined);

  const { page, problems, close } = await openDashboard(rig.app, rig.dir, TOKEN);
  try {
    const rows = page.locator('#gateway-table tbody tr[data-rule-id]');
    await rows.nth(1).waitFor({ timeout: WAIT_MS });
    assert.deepEqual(await rows.nth(0).locator('td').allTextContents(), ['1', 'no-social-b', 'block', 'site-b', '*.example-social.com', 'sni, http_host', '', '443', '']);
    assert.deepEqual(await rows.nth(1).locator('td').allTextContents(), ['2', 'scan-a', 'log', 'site-a', '', '', 'tcp', '80', 'cards']);

    // The host name beside its flow, and nothing beside the flow without one.
    const named = page.locator('#flows-table tbody tr[data-flow-id]', { hasText: '41000' });
    await named.locator('td.host').waitFor({ timeout: WAIT_MS });
    assert.equal(await named.locator('td').nth(1).textContent(), 'www.example-news.com');
    assert.equal(await named.locator('td.host').getAttribute('title'), 'read from sni');
    const other = page.locator('#flows-table tbody tr[data-flow-id]', { hasText: '41001' });
    assert.equal(await other.locator('td').nth(1).textContent(), '');

    // A rule added through the API shows up (the rules are polled with the routes).
    await post('/v1/gateway/rules?before=no-social-b', { name: 'intranet-dns', action: 'override', sources: ['dns'], hostnames: ['intranet.example'], override: { addresses: ['192.0.2.7'] } });
    await page.locator('#gateway-table tbody tr[data-rule-id="3"]').waitFor({ timeout: WAIT_MS });
    assert.deepEqual((await rows.allTextContents()).map((t) => t.slice(0, 1)), ['3', '1', '2'], 'in rule order');
    assert.deepEqual(problems, []);
  } finally {
    await close();
    await rig.close();
  }
});
