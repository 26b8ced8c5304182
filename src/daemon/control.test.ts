/**
 * The store and the YAML file at start (openStore): the file seeds an empty store; afterwards the store runs,
 * and how the file differs is named in a warning; --config-wins makes the file replace the store; the file's
 * file paths always replace the store's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TetherConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { openStore, storeDiffersWarning } from './control.js';

function fileConfig(dir: string, edit: (c: TetherConfig) => void = () => {}): TetherConfig {
  const c = defaultConfig();
  c.store.path = join(dir, 'tether.db');
  c.api.token_file = join(dir, 'api-token');
  edit(c);
  return c;
}

test('the YAML file differs from the store: the warning names each difference and how to take the file; --config-wins takes it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-open-store-'));
  try {
    const file = fileConfig(dir);
    let opened = openStore(file);
    assert.equal(opened.seeded, true);
    assert.deepEqual(opened.differences, []);
    assert.equal(storeDiffersWarning(opened, 'edge.yaml'), null);
    const siteAId = opened.config.onramps.find((o) => o.name === 'site-a-wg')?.id;
    // Changes through the API: a new onramp, ARR off on another, a route.
    opened.store.update((doc) => {
      doc.entries.onramps.push({ id: 0, value: { name: 'c-gre', type: 'gre', site: 'site-b', automatic_return_routing: true, gre: { local: '192.168.130.1', remote: '192.168.130.2' } } as never });
      (doc.entries.onramps.find((e) => e.value.name === 'site-a-wg')?.value as { automatic_return_routing: boolean }).automatic_return_routing = false;
      doc.entries.routes.push({ id: 0, value: { prefix: '10.8.0.0/16', next_hop: { onramp: 'dc-link' } } as never });
    });
    opened.store.close();

    // Restart with the same file: the store runs, and the warning says what differs.
    opened = openStore(file);
    assert.equal(opened.seeded, false);
    assert.equal(opened.replaced, false);
    assert.deepEqual(opened.differences.sort(), [
      'onramps: c-gre is only in the store',
      'onramps: site-a-wg differs (automatic_return_routing)',
      'routes: 10.8.0.0/16 -> onramp dc-link is only in the store',
    ]);
    assert.equal(opened.config.onramps.find((o) => o.name === 'site-a-wg')?.automatic_return_routing, false, 'the store is what runs');
    const warning = storeDiffersWarning(opened, 'edge.yaml');
    assert.ok(warning !== null);
    assert.match(warning.message, /c-gre is only in the store/);
    assert.match(warning.message, /tether config import edge\.yaml/);
    assert.match(warning.message, /tether run --config edge\.yaml --config-wins/);
    opened.store.close();

    // A compromised peer removed from the file; a secret changed: named, never shown.
    const edited = fileConfig(dir, (c) => {
      c.onramps = c.onramps.filter((o) => o.name !== 'site-b-wg');
      c.wireguard_devices[1].private_key = 'YJ4dbmXXmBYvmlOyG/7xxWf3G1F9gQBGFVqlnDWBbUA=';
    });
    opened = openStore(edited);
    assert.ok(opened.differences.includes('onramps: site-b-wg is only in the store'), opened.differences.join('\n'));
    assert.ok(opened.differences.includes('wireguard_devices: wg-b differs (private_key)'), opened.differences.join('\n'));
    assert.ok(!opened.differences.join('\n').includes('YJ4dbm'), 'no secret in the warning');
    opened.store.close();

    // --config-wins: the file replaces the store; entries keep their ids.
    opened = openStore(edited, { configWins: true });
    assert.equal(opened.replaced, true);
    assert.deepEqual(opened.differences, []);
    assert.deepEqual(opened.config.onramps.map((o) => o.name), ['site-a-wg', 'site-gre-tunnel', 'dc-link']);
    assert.equal(opened.config.onramps[0].automatic_return_routing, true);
    assert.equal(opened.config.onramps[0].id, siteAId, 'the id is kept');
    assert.equal(opened.config.routes.length, 2);
    opened.store.close();
    assert.deepEqual(openStore(edited).differences, [], 'and the next start has nothing to say');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('at start the file\'s file paths replace the store\'s (whatever an older version let the API store)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-open-store-'));
  try {
    const first = openStore(fileConfig(dir, (c) => { c.log.flow_log = '/tmp/somewhere-else.log'; c.api.token_file = '/tmp/planted-token'; }));
    first.store.close();
    const file = fileConfig(dir);
    const opened = openStore(file);
    assert.equal(opened.config.api.token_file, file.api.token_file);
    assert.equal(opened.config.log.flow_log, 'off');
    assert.deepEqual(opened.differences, [], 'taken, so not a difference');
    opened.store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
