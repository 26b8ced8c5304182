/**
 * `tether gateway rules|add|remove|profiles` against a real API on loopback (the CLI is spawned as a user runs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildApi } from '../control/api.js';
import { ConfigStore } from '../control/store.js';
import { defaultConfig } from '../lab/config.js';

const CLI = fileURLToPath(new URL('./tether.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const TOKEN = 'cli-test-token-0123456789';
const run = promisify(execFile);

test('tether gateway: add a profile and rules (YAML mappings, --before), list them, remove; a bad rule names the key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-gw-cli-'));
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  const app = buildApi({ store, token: TOKEN });
  try {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    const tether = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
      try {
        const r = await run(process.execPath, ['--import', TSX, CLI, ...args, '--api', address, '--token-file', tokenFile], { encoding: 'utf8', timeout: 60_000 });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (e) {
        const x = e as { code: number; stdout: string; stderr: string };
        return { code: x.code, stdout: x.stdout, stderr: x.stderr };
      }
    };
    let r = await tether('gateway', 'add', '--profile', '{name: finance, cards: true}');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /DLP profile finance added/);
    r = await tether('gateway', 'add', '{name: no-social-b, action: block, sites: site-b, hostnames: "*.example-social.com"}');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /gateway rule 1 \(no-social-b\) added/);
    r = await tether('gateway', 'add', '--before', 'no-social-b', '{name: scan-a, action: allow, sites: site-a, destination_ports: 80, dlp: finance}');
    assert.equal(r.code, 0, r.stderr);
    r = await tether('gateway', 'rules');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^id\s+name\s+action\s+sites/);
    assert.match(lines[2], /^2\s+scan-a\s+allow\s+site-a\s+80\s+finance$/);
    assert.match(lines[3], /^1\s+no-social-b\s+block\s+site-b\s+\*\.example-social\.com$/);
    r = await tether('gateway', 'profiles', '--json');
    assert.deepEqual(JSON.parse(r.stdout), [{ name: 'finance', action: 'block', cards: true }]);
    r = await tether('gateway', 'add', '{action: block, hostnames: "a..example"}');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /400 invalid configuration\n {2}hostnames: "a..example": host name has an empty label/);
    r = await tether('gateway', 'remove', 'scan-a');
    assert.equal(r.code, 0, r.stderr);
    r = await tether('gateway', 'remove', '--profile', 'finance');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse((await tether('gateway', 'rules', '--json')).stdout).map((x: { name: string }) => x.name), ['no-social-b']);
  } finally {
    await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
