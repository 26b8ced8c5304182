import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_API_TOKEN_FILE, DEFAULT_STORE_PATH } from '../config/index.js';

const CLI = fileURLToPath(new URL('./tether.ts', import.meta.url));
/** tsx resolved from here: the CLI runs in an empty directory. */
const TSX = import.meta.resolve('tsx');
const EXIT_BAD_CONFIG = 2;

test('tether run without --config exits 2, says what to pass, and starts nothing', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'tether-noconfig-'));
  const before = [DEFAULT_STORE_PATH, DEFAULT_API_TOKEN_FILE].map(existsSync);
  try {
    const r = spawnSync(process.execPath, ['--import', TSX, CLI, 'run'], { cwd, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, EXIT_BAD_CONFIG, r.stderr);
    assert.equal(r.stderr, 'tether: tether run needs --config FILE (see docs/CONFIG.md; docs/examples/tether.yaml is a complete example)\n');
    assert.equal(r.stdout, '', 'no log line: nothing started');
    assert.deepEqual(readdirSync(cwd), [], 'nothing written where it ran');
    assert.deepEqual([DEFAULT_STORE_PATH, DEFAULT_API_TOKEN_FILE].map(existsSync), before, 'no store or token created');
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});
