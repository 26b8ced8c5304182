/**
 * The dashboard's IPsec SAs (issue 9) in headless Chromium: an ipsec onramp, made-up IKE and ESP status (the engines
 * report real ones once the lead wires them in), the page's IPsec table under the onramps. Never skips: without
 * /usr/bin/chromium it fails and says how to install it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config/index.js';
import { registerDashboard } from '../../src/control/dashboard.js';
import { defaultConfig } from '../../src/lab/config.js';
import { apiRig } from '../support/api.js';
import { openDashboard } from '../support/browser.js';
import { ikeSa, ipsecStatus } from '../support/ipsec-status.js';

const TOKEN = 'dashboard-ipsec-token-0123456789';
const WAIT_MS = 8000;
const IPSEC = { name: 'branch-ipsec', type: 'ipsec', automatic_return_routing: true, ipsec: { local_address: '192.168.106.1', remote_address: '192.168.106.2', psk: 'correct horse battery staple' } };

test('dashboard: the IPsec table shows each IKE SA and its child SAs, and follows them as they change', async () => {
  const base = defaultConfig();
  let made = { ipsec: [] as ReturnType<typeof ikeSa>[], esp: [] as ReturnType<typeof ipsecStatus>['esp'] };
  const rig = apiRig({ token: TOKEN, prefix: 'tether-dashboard-ipsec-', extend: registerDashboard, config: validateConfig({ ...base, onramps: [...base.onramps, IPSEC] }), ipsec: () => made });
  const { page, problems, close } = await openDashboard(rig.app, rig.dir, TOKEN);
  try {
    const rows = page.locator('#ipsec-table tbody tr');
    await page.locator('#ipsec').waitFor({ state: 'visible', timeout: WAIT_MS });
    await rows.first().waitFor({ timeout: WAIT_MS });
    assert.match((await rows.first().textContent()) ?? '', /branch-ipsec.*no SA/, 'the onramp is listed before any SA is up');

    const id = rig.ids.onramps.get('branch-ipsec')!;
    made = ipsecStatus([ikeSa(id, rig.edge.now, ['a0000001', 'a0000002'])]);
    const child = page.locator('#ipsec-table tbody tr[data-sa="child"][data-spi="a0000002"]');
    await child.waitFor({ timeout: WAIT_MS });
    const ike = (await page.locator('#ipsec-table tbody tr[data-sa="ike"]').textContent()) ?? '';
    for (const want of ['branch-ipsec', 'established', 'responder', 'aes256gcm16/prfsha256/ecp256', `${id.toString(16).padStart(4, '0')}aaaabbbbcccc_i 1122334455667788_r`, '10m', '1h']) {
      assert.ok(ike.includes(want), `IKE row has ${want}: ${ike}`);
    }
    const cells = await child.locator('td').allTextContents();
    assert.deepEqual(cells.slice(4), ['aes256gcm16', 'a0000002_i c0000002_o', '1m', '30m', '20', '21', '2.0 KiB', '2.1 KiB', '22', '23']);
    // The rekey is over: the old child SA goes from the page.
    made = ipsecStatus([ikeSa(id, rig.edge.now, ['a0000002'])]);
    await page.locator('#ipsec-table tbody tr[data-spi="a0000001"]').waitFor({ state: 'detached', timeout: WAIT_MS });
    assert.equal(await page.locator('#ipsec-table tbody tr[data-sa="child"]').count(), 1);
    assert.deepEqual(problems, []);
  } finally {
    await close();
    await rig.close();
  }
});
