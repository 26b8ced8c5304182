/**
 * Debian's Chromium driven by playwright-core (never a downloaded browser). The flags keep it off
 * the network it cannot reach here (background networking, component updates, sync, QUIC).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A fresh headless Chromium with its profile under `dir`; fails loudly (never skips) when the browser is missing. */
export async function openBrowser(dir: string, viewport = { width: 1440, height: 960 }): Promise<BrowserContext> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's browser with \`apt-get install -y --no-install-recommends chromium\` (this test never skips)`);
  return chromium.launchPersistentContext(mkdtempSync(join(dir, 'chromium-')), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport });
}
