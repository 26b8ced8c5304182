/**
 * Debian's Chromium driven by playwright-core (never a downloaded browser). The flags keep it off
 * the network it cannot reach here (background networking, component updates, sync, QUIC).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A fresh headless Chromium with its profile under `dir`; fails loudly (never skips) when the browser is missing. */
async function openBrowser(dir: string, viewport = { width: 1440, height: 960 }): Promise<BrowserContext> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's browser with \`apt-get install -y --no-install-recommends chromium\` (this test never skips)`);
  return chromium.launchPersistentContext(mkdtempSync(join(dir, 'chromium-')), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport });
}

export interface OpenPage {
  context: BrowserContext;
  page: Page;
  /** What went wrong in the page (script errors; with `strict`, also console errors and failed or refused requests): tests assert it stays empty. */
  problems: string[];
  /** Closes the browser. */
  close(): Promise<void>;
}

/**
 * openBrowser and its first page, whose problems are collected from the start. `strict`: console errors, HTTP
 * answers of 400 and above and failed requests count too (the dashboard test: CSP violations show as console errors).
 */
export async function openPage(dir: string, o: { strict?: boolean; viewport?: { width: number; height: number } } = {}): Promise<OpenPage> {
  const context = await openBrowser(dir, o.viewport);
  const page = context.pages()[0] ?? await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  if (o.strict === true) {
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  }
  return { context, page, problems, close: () => context.close() };
}

/**
 * Serves `app` (the API with the dashboard registered) on a loopback port and opens the dashboard there with `token`
 * in the address's fragment, as `tether dashboard` prints it; closing the page leaves `app` to the caller.
 */
export async function openDashboard(app: FastifyInstance, dir: string, token: string): Promise<OpenPage & { base: string }> {
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const opened = await openPage(dir);
  try {
    await opened.page.goto(`${base}/#token=${encodeURIComponent(token)}`);
  } catch (e) {
    await opened.close();
    throw e;
  }
  return { ...opened, base };
}
