/**
 * The dashboard's capture button in headless Chromium (docs/CAPTURE.md, docs/DASHBOARD.md): a click on an onramp's
 * "capture" starts a bounded capture over the API, waits for it to stop, and downloads the pcapng, which tshark
 * reads with each packet's decision in its comment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { buildUdp } from '../../src/wire/build.js';
import { registerDashboard } from '../../src/control/dashboard.js';
import { registerCaptureRoutes } from '../../src/control/api-captures.js';
import { CaptureHub } from '../../src/control/capture.js';
import { NameBook } from '../../src/control/metrics.js';
import { apiRig } from '../support/api.js';
import { openDashboard } from '../support/browser.js';

const TOKEN = 'dashboard-capture-token-0123456789';
const HOST = '10.0.1.10';
const SERVER = '203.0.113.10';
const WAIT_MS = 20_000;

test('dashboard: the capture button of an onramp downloads a bounded pcapng with decisions that tshark reads', async () => {
  const rig = apiRig({ token: TOKEN, prefix: 'tether-dashboard-capture-', extend: registerDashboard });
  const { app, edge, ids, dir } = rig;
  const hub = new CaptureHub({
    pipeline: edge.pipeline,
    names: new NameBook(edge.pipeline, rig.cfg, ids),
    ids: () => ids,
    attach: (tap) => (edge.tap = tap),
    now: () => edge.now,
  });
  registerCaptureRoutes(app, hub);
  const a = ids.onramps.get('site-a-wg') as number;
  // site-a's exchanges with the server, all along; the capture's clock is the rig's, moved on by each burst.
  let port = 40000;
  const traffic = setInterval(() => {
    const out = edge.send(a, buildUdp({ src: HOST, dst: SERVER }, { srcPort: port, dstPort: 53, payload: Uint8Array.of(1) }));
    edge.send(0, buildUdp({ src: SERVER, dst: out.parsed.src }, { srcPort: 53, dstPort: out.parsed.srcPort, payload: Uint8Array.of(2) }));
    port = port === 40010 ? 40000 : port + 1;
    edge.now += 500;
  }, 100);
  const { page, problems, close } = await openDashboard(app, dir, TOKEN);
  try {
    const button = page.locator('#onramps-table tr[data-onramp="site-a-wg"] button[data-capture]');
    await button.waitFor({ timeout: WAIT_MS });
    await page.waitForFunction('!document.querySelector(\'#onramps-table tr[data-onramp="site-a-wg"] button[data-capture]\').disabled', undefined, { timeout: WAIT_MS });
    const downloading = page.waitForEvent('download', { timeout: WAIT_MS });
    await button.click();
    const download = await downloading;
    assert.match(download.suggestedFilename(), /^tether-site-a-wg-\d+\.pcapng$/);
    const file = join(dir, 'dashboard.pcapng');
    await download.saveAs(file);
    const comments = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8' }).trim().split('\n');
    assert.ok(comments.length >= 2, comments.join('\n'));
    assert.ok(comments.some((c) => /; in site-a-wg; out internet; routing table \(original direction/.test(c)), comments.join('\n'));
    assert.ok(comments.some((c) => /; in internet; out site-a-wg; ARR \(return onramp recorded at setup\)$/.test(c)), comments.join('\n'));
    assert.deepEqual(hub.list(), [], 'the page deletes the capture once downloaded');
    assert.deepEqual(problems, []);
  } finally {
    clearInterval(traffic);
    await close();
    await rig.close();
  }
});
