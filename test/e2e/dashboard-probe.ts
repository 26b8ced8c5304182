/**
 * Run inside the lab's edge namespace (the daemon's API listens on its loopback): opens the
 * dashboard in headless Chromium, waits until the flow table shows flows of both WireGuard sites,
 * prints the rows it saw as JSON and saves a screenshot. Used by test/e2e/lab.test.ts.
 *   node --import tsx test/e2e/dashboard-probe.ts URL SCREENSHOT_PATH
 * URL is what `tether dashboard` prints: the page takes the token from its fragment and drops it from the
 * address bar (checked: the probe fails if the token stays in the address).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPage } from '../support/browser.js';

const [url, screenshot] = process.argv.slice(2);
const { page, close } = await openPage(mkdtempSync(join(tmpdir(), 'tether-probe-')));
try {
  await page.goto(url);
  await page.waitForFunction('!location.hash.includes("token=")');
  let rows: string[] = [];
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await page.waitForTimeout(300)) {
    rows = await page.locator('#flows-table tbody tr[data-flow-id]').evaluateAll((trs) => trs.map((tr) => `${tr.getAttribute('data-onramp')} ${tr.textContent ?? ''}`));
    if (rows.some((r) => r.startsWith('site-a-wg ')) && rows.some((r) => r.startsWith('site-b-wg '))) break;
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  process.stdout.write(JSON.stringify({ rows }));
} finally {
  await close();
}
