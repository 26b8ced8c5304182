/**
 * The dashboard end to end in headless Chromium (docs/DASHBOARD.md): the daemon's API (buildApi + flow routes +
 * registerDashboard) over a real socket, a running Pipeline as its edge, Debian's chromium driven by
 * playwright-core.
 *
 *   the page without a token asks for it and sends nothing; the engineer opens the address `tether dashboard`
 *   prints (the token in the fragment), and the page drops the fragment from the address bar
 *   both sites' 10.0.1.10 start flows ─ the page shows them side by side, each tagged with its site and onramp
 *   the engineer forgets the token (the switch is read-only), pastes it in the form, switches ARR off on site-b-wg
 *     ─ GET /v1/onramps/site-b-wg says automatic_return_routing false; the pipeline's ARR bit is 0
 *     ─ a NEW flow from site-b shows ARR off (replies by the routing table); the old flow keeps ARR
 *     ─ explain for site-b (in the page) says the replies go by the routing table
 *
 * Screenshots: into a temp folder on every run (rendering is exercised), into docs/dashboard-*.png when
 * TETHER_SCREENSHOTS=1 (`TETHER_SCREENSHOTS=1 npm run test:unit -- browser`), so `npm test` leaves the
 * tree clean.
 *
 * This test never skips: without /usr/bin/chromium it fails and says how to install it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Locator, Page } from 'playwright-core';
import { buildUdp } from '../../src/wire/build.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { DASHBOARD_CSP, registerDashboard } from '../../src/control/dashboard.js';
import { apiRig } from '../support/api.js';
import { openPage } from '../support/browser.js';

const TOKEN = 'dashboard-test-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const HOST = '10.0.1.10';
const SERVER = '203.0.113.10';
const DC_SERVER = '172.16.0.20';
const WAIT_MS = 8000;
const SCREENSHOT_HISTORY_MS = 24_000;
const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));

interface Row {
  src: string;
  site: string;
  onramp: string;
  text: string;
}

/** The flow table as the user sees it, in DOM order. */
async function flowRows(page: Page): Promise<Row[]> {
  const rows = page.locator('#flows-table tbody tr[data-flow-id]');
  const out: Row[] = [];
  const n = await rows.count();
  for (let i = 0; i < n; i++) {
    const r = rows.nth(i);
    out.push({ src: (await r.getAttribute('data-src')) ?? '', site: (await r.getAttribute('data-site')) ?? '', onramp: (await r.getAttribute('data-onramp')) ?? '', text: (await r.textContent()) ?? '' });
  }
  return out;
}

/** Retries `check` until it returns without throwing (the page polls every 2 s). */
async function eventually<T>(what: string, check: () => Promise<T>, timeoutMs = WAIT_MS): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > until) throw new Error(`${what}: still failing after ${timeoutMs} ms: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function text(l: Locator): Promise<string> {
  return (await l.textContent()) ?? '';
}

test('dashboard in headless Chromium: overlapping sources side by side, ARR switched off in the page, new flows and explain follow', async () => {

  const rig = apiRig({ token: TOKEN, prefix: 'tether-dashboard-', extend: registerDashboard });
  const { app, edge, ids, dir } = rig;
  const shots = process.env.TETHER_SCREENSHOTS === '1' ? DOCS : dir;
  const base = await app.listen({ host: '127.0.0.1', port: 0 });

  const a = ids.onramps.get('site-a-wg') as number;
  const b = ids.onramps.get('site-b-wg') as number;
  const udp = (port: number, srcPort: number, dst = SERVER, dstPort = 53): ReturnType<PipelineRig['send']> =>
    edge.send(port, buildUdp({ src: HOST, dst }, { srcPort, dstPort, payload: Uint8Array.of(1, 2, 3, 4) }));
  /** A request from one site and the server's answer through the egress pool. */
  const exchange = (port: number, srcPort: number): void => {
    const out = udp(port, srcPort);
    assert.equal(out.hop, 0, 'to the Internet');
    const back = edge.send(0, buildUdp({ src: SERVER, dst: out.parsed.src }, { srcPort: 53, dstPort: out.parsed.srcPort, payload: Uint8Array.of(9) }));
    assert.equal(back.hop, port, 'ARR: the answer goes back to the onramp that asked');
  };

  // Both sites' 10.0.1.10 talk to the same server, and to the data center with the same tuple (a clash).
  exchange(a, 40000);
  exchange(b, 40000);
  assert.equal(udp(a, 5000, DC_SERVER, 80).hop, ids.onramps.get('dc-link'));
  assert.equal(udp(b, 5000, DC_SERVER, 80).hop, ids.onramps.get('dc-link'));
  // Some traffic while the page is open, so the chart has something to draw (site-b's stops at the ARR switch).
  let bTraffic = true;
  const traffic = setInterval(() => {
    const burst = Math.round(12 + 10 * Math.sin(Date.now() / 2500));
    for (let i = 0; i < burst; i++) {
      exchange(a, 40000);
      if (bTraffic) exchange(b, 40000);
    }
  }, 250);

  const { page, problems, close } = await openPage(dir, { strict: true });
  try {
    // The files: content types and the strict policy.
    for (const [path, type] of [['/', 'text/html'], ['/dashboard/app.js', 'text/javascript'], ['/dashboard/style.css', 'text/css']]) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 200, path);
      assert.ok(String(r.headers.get('content-type')).startsWith(type), `${path}: ${r.headers.get('content-type')}`);
      assert.equal(r.headers.get('content-security-policy'), DASHBOARD_CSP);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    }
    assert.equal((await fetch(`${base}/dashboard/../api.ts`)).status, 404);
    const js = await (await fetch(`${base}/dashboard/app.js`)).text();
    assert.ok(!/\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML\(|document\.write\(|\beval\(|new Function\(/.test(js), 'app.js puts data into the DOM as text only');

    const apiRequests: string[] = [];
    page.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/v1/')) apiRequests.push(`${r.method()} ${r.url()} ${r.headers().authorization === `Bearer ${TOKEN}` ? 'token' : 'none'}`); });

    // 0. Without a token the page asks for it and sends nothing; the address `tether dashboard` prints
    //    carries it in the fragment, which the page takes and removes from the address bar.
    await page.goto(base);
    await eventually('the page asks for the token', async () => assert.match(await text(page.locator('#status')), /paste the API token/));
    assert.equal(await text(page.locator('#token-state')), 'token needed');
    assert.equal(apiRequests.length, 0, `no API request without a token: ${apiRequests.join(', ')}`);
    await page.goto(`${base}/#token=${encodeURIComponent(TOKEN)}`);
    await eventually('the token taken from the fragment', async () => assert.equal(await page.evaluate('sessionStorage.getItem("tether.apiToken")'), TOKEN));
    assert.equal(page.url(), `${base}/`, 'the fragment is gone from the address bar');

    // 1. Both sites' 10.0.1.10, side by side, each tagged with its site and onramp.
    await eventually('both sites in the flow table', async () => {
      const rows = (await flowRows(page)).filter((r) => r.src === HOST);
      assert.deepEqual(new Set(rows.map((r) => `${r.site}/${r.onramp}`)), new Set(['site-a/site-a-wg', 'site-b/site-b-wg']));
    });
    const rows = await flowRows(page);
    const idx = rows.map((r, i) => (r.src === HOST ? i : -1)).filter((i) => i >= 0);
    assert.equal(idx.length, 4, 'two flows per site');
    assert.deepEqual(idx, [idx[0], idx[0] + 1, idx[0] + 2, idx[0] + 3], 'the rows of 10.0.1.10 are contiguous');
    for (const r of rows.filter((x) => x.src === HOST)) {
      assert.ok(r.text.includes(`${HOST}:`) && r.text.includes(r.onramp) && r.text.includes(r.site), r.text);
      assert.match(r.text, /×2/, 'marked as a source in use at two sites');
      assert.match(r.text, /ARR/);
    }
    assert.ok(rows.some((r) => /clash/.test(r.text)), 'the second site\'s flow to the DC needed a clash rewrite');
    await eventually('onramp counters', async () => {
      assert.equal(await text(page.locator('#onramps-table tr[data-onramp="site-b-wg"] td').nth(3)), 'up');
      assert.notEqual(await text(page.locator('#onramps-table tr[data-onramp="site-b-wg"] td').nth(4)), '0');
    });
    await eventually('routes and overlaps', async () => {
      assert.ok((await page.locator('#routes-table tbody tr').count()) >= 2);
      assert.match(await text(page.locator('#overlaps-table tbody')), /10\.0\.1\.0\/24.*site-a-wg.*site-b-wg/s);
    });

    assert.ok(apiRequests.length > 0 && apiRequests.every((r) => r.endsWith(' token')), `every API request carries the token: ${apiRequests.filter((r) => !r.endsWith(' token')).join(', ')}`);

    // 2. Without the token the switch is read-only (and the page stops asking the API); with it, ARR off on site-b-wg.
    await page.click('#token-forget');
    const arrB = page.getByRole('switch', { name: 'ARR on site-b-wg' });
    assert.equal(await arrB.isChecked(), true);
    assert.equal(await arrB.isDisabled(), true, 'no token yet');
    await page.fill('#token', TOKEN);
    await page.click('#token-save');
    assert.equal(await page.evaluate('sessionStorage.getItem("tether.apiToken")'), TOKEN);
    // For the docs' screenshots, let the chart gather some history first.
    if (shots === DOCS) await new Promise((r) => setTimeout(r, SCREENSHOT_HISTORY_MS));
    bTraffic = false; // site-b's packets would start new flows once ARR is off: keep the picture exact
    await arrB.click();
    await eventually('the API sees ARR off', async () => {
      const o = await (await fetch(`${base}/v1/onramps/site-b-wg`, { headers: AUTH })).json() as { automatic_return_routing: boolean };
      assert.equal(o.automatic_return_routing, false);
    });
    assert.equal(edge.pipeline.ports.arr[b], 0, 'applied to the running pipeline');
    assert.equal(edge.pipeline.ports.arr[a], 1, 'site-a untouched');
    await eventually('the switch shows off', async () => {
      assert.equal(await arrB.isChecked(), false);
      assert.equal(await text(page.locator('#onramps-table tr[data-onramp="site-b-wg"] .lbl')), 'off');
    });
    await eventually('the overlap report notices', async () => assert.match(await text(page.locator('#overlaps-table tbody')), /no: replies are ambiguous/));

    // 3. A new flow from site-b: ARR off, its replies go by the routing table. The old one keeps ARR.
    const fresh = udp(b, 40001);
    assert.equal(fresh.hop, 0);
    const newRow = page.locator('#flows-table tbody tr[data-onramp="site-b-wg"]', { hasText: `${HOST}:40001` });
    await eventually('the new flow in the table', async () => assert.equal(await newRow.count(), 1));
    assert.match(await text(newRow), /RT/);
    assert.doesNotMatch(await text(newRow.locator('td').nth(7)), /ARR/);
    const oldRow = page.locator('#flows-table tbody tr[data-onramp="site-b-wg"]', { hasText: `${HOST}:40000 → ${SERVER}` });
    assert.match(await text(oldRow.locator('td').nth(7)), /ARR/, 'the established flow keeps its decision');
    const api = await (await fetch(`${base}/v1/flows?onramp=site-b-wg&dst=${SERVER}/32`, { headers: AUTH })).json() as { items: Array<{ original: string; arr: boolean }> };
    assert.deepEqual(api.items.map((f) => [f.original.split(' ')[0], f.arr]).sort(), [[`${HOST}:40000`, true], [`${HOST}:40001`, false]]);

    await newRow.click();
    await eventually('the flow detail', async () => {
      assert.equal(await page.locator('#flow-detail').isVisible(), true);
      assert.match(await text(page.locator('#detail-fields')), /routing table \(ARR off\)/);
      assert.match(await text(page.locator('#detail-trail')), /ARR off: replies are routed by the routing table/);
    });

    // 4. Explain in the page: site-b now answers "routing table".
    await page.selectOption('#x-onramp', 'site-b-wg');
    await page.selectOption('#x-protocol', 'udp');
    await page.fill('#x-src', HOST);
    await page.fill('#x-dst', SERVER);
    await page.fill('#x-sport', '40002');
    await page.fill('#x-dport', '53');
    await page.click('#x-go');
    await eventually('the explain answer', async () => {
      assert.equal(await text(page.locator('#x-verdict')), 'forward');
      assert.match(await text(page.locator('#x-summary')), /replies by: routing-table/);
      assert.match(await text(page.locator('#x-trail')), /ARR is off on onramp site-b-wg/);
    });

    // 5. Screenshots.
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: join(shots, 'dashboard-overview.png') });
    await page.locator('#flows').screenshot({ path: join(shots, 'dashboard-flows.png') });
    await page.locator('#explain').screenshot({ path: join(shots, 'dashboard-explain.png') });

    assert.deepEqual(problems, [], 'no script errors, CSP violations or failed requests');
  } finally {
    clearInterval(traffic);
    await close();
    await rig.close();
  }
});
