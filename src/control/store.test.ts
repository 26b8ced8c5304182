import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { ConfigError, loadConfig, stringifyConfig, validateConfig, type OnrampConfig, type RouteConfig, type SiteConfig, type TetherConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { ConfigStore, NotFoundError, STORE_SCHEMA_VERSION } from './store.js';

const EXAMPLE = readFileSync(new URL('../../docs/examples/tether.yaml', import.meta.url), 'utf8');

function tempDir(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tether-store-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

function route(prefix: string, onramp = 'dc-link'): RouteConfig {
  return { prefix, next_hop: { onramp }, priority: 100, weight: 1 };
}

/** The configuration with every id pinned the way the store pins them. */
function withoutIds(cfg: TetherConfig): TetherConfig {
  const c = structuredClone(cfg);
  for (const s of c.sites) delete s.id;
  for (const o of c.onramps) delete o.id;
  for (const r of c.firewall.rules) delete r.id;
  return c;
}

test('seeds only an empty store, pins ids, and a reopened store restores everything', () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'sub', 'tether.db');
    const file = loadConfig(EXAMPLE, 'tether.yaml');
    let store = ConfigStore.open(path);
    assert.equal(store.isEmpty(), true);
    assert.equal(store.seedFrom(file), true);
    assert.equal(store.seedFrom(defaultConfig()), false, 'the store wins after the first start');
    const loaded = store.load();
    // Same configuration, with ids written in (the file's own ids kept: partner 50, rule 900).
    assert.deepEqual(withoutIds(loaded), withoutIds(file));
    assert.equal(loaded.onramps.find((o) => o.name === 'partner')?.id, 50);
    assert.equal(loaded.firewall.rules.find((r) => r.name === 'partner-limited')?.id, 900);
    assert.ok(loaded.sites.every((s) => s.id !== undefined) && loaded.onramps.every((o) => o.id !== undefined));
    store.create('routes', route('10.77.0.0/16'));
    store.close();
    assert.equal(statSync(path).mode & 0o777, 0o600, 'the database may hold private keys');

    store = ConfigStore.open(path);
    const again = store.load();
    assert.equal(again.routes.at(-1)?.prefix, '10.77.0.0/16');
    assert.deepEqual(again.onramps, loaded.onramps);
    // export → YAML → load gives the same configuration back.
    assert.deepEqual(loadConfig(store.exportYaml(), 'export.yaml'), again);
    assert.equal(stringifyConfig(store.exportConfig()), store.exportYaml());
    store.close();
  } finally {
    t.done();
  }
});

test('create, replace, remove per kind; invalid results roll back with ConfigError', () => {
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  const created = store.create('sites', { name: 'branch-c', prefixes: ['10.3.0.0/24'] });
  assert.equal(created.result.id, 5, 'lowest free site id');
  assert.equal(created.result.value.id, 5);
  assert.equal(store.get('sites', 5)?.value.name, 'branch-c');

  const before = store.read();
  assert.throws(() => store.create('routes', route('10.1.0.0/16', 'no-such')), (e: unknown) => e instanceof ConfigError && e.problems[0].path === 'routes[2].next_hop.onramp');
  assert.throws(() => store.remove('sites', 4), (e: unknown) => e instanceof ConfigError && /no site named "dc"/.test(e.message), 'dc-link uses site dc');
  assert.throws(() => store.replace('routes', 99, route('10.0.0.0/8')), NotFoundError);
  assert.deepEqual(store.read(), before, 'nothing changed');

  const r = store.create('routes', route('10.1.0.0/16'));
  store.replace('routes', r.result.id, { ...route('10.1.0.0/16'), weight: 5 });
  assert.equal(store.get('routes', r.result.id)?.value.weight, 5);
  store.remove('routes', r.result.id);
  assert.equal(store.get('routes', r.result.id), undefined);
  const next = store.create('routes', route('10.2.0.0/16'));
  assert.ok(next.result.id > r.result.id, 'route ids are never reused');

  store.create('firewall_rules', { action: 'deny', protocols: ['tcp'], destination_ports: [25] });
  const first = store.create('firewall_rules', { name: 'first', action: 'allow' }, undefined, store.list('firewall_rules')[0].id);
  assert.deepEqual(store.load().firewall.rules.map((x) => x.name ?? x.id), ['first', 1]);
  assert.equal(first.result.value.id, 2);
  store.close();
});

test('ids are pinned: deleting an onramp never renumbers the others', () => {
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  const ids = new Map(store.load().onramps.map((o) => [o.name, o.id]));
  store.remove('onramps', ids.get('site-b-wg')!);
  store.create('onramps', { name: 'new-gre', type: 'gre', site: 'site-b', automatic_return_routing: true, preference: 100, max_flows: 0, gre: { local: '192.168.110.1', remote: '192.168.110.2', mtu: 1476 } });
  const after = store.load();
  for (const o of after.onramps) if (ids.has(o.name)) assert.equal(o.id, ids.get(o.name), o.name);
  // Issue 8: the freed id is never handed out again (flows, metric series and log lines may still name it).
  assert.equal(after.onramps.find((o) => o.name === 'new-gre')?.id, Math.max(...[...ids.values()].map(Number)) + 1, 'a new onramp gets an id above every id ever used');
  store.close();
});

test('ids only grow, across a restart too: a deleted onramp\'s or site\'s id is never handed out again, nor taken explicitly', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-ids-'));
  const path = join(dir, 'tether.db');
  let store = ConfigStore.open(path);
  store.seedFrom(defaultConfig());
  const top = Math.max(...store.load().onramps.map((o) => o.id!));
  const gre = (name: string, site: string, id?: number): OnrampConfig => ({ name, ...(id ? { id } : {}), type: 'gre', site, automatic_return_routing: true, preference: 100, max_flows: 0, gre: { local: '192.168.110.1', remote: `192.168.110.1${name.slice(-1)}`, mtu: 1476 } }) as OnrampConfig;
  const added = store.create('onramps', gre('gre-1', 'site-b')).result.id;
  assert.equal(added, top + 1);
  store.remove('onramps', added);
  store.close();
  store = ConfigStore.open(path);
  assert.equal(store.create('onramps', gre('gre-2', 'site-b')).result.id, top + 2, 'the deleted id stays retired after a restart');
  assert.throws(() => store.create('onramps', gre('gre-3', 'site-b', added)), (e: ConfigError) => /never reused/.test(e.problems[0].message) && e.problems[0].path.endsWith('.id'));
  const site = store.create('sites', { name: 'site-x' } as SiteConfig).result.id;
  store.remove('sites', site);
  assert.equal(store.create('sites', { name: 'site-y' } as SiteConfig).result.id, site + 1, 'site ids only grow too');
  assert.equal(store.idHighWater('onramps'), top + 3);
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('random sequences of route creations and deletions match a plain list model', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 40 })), { maxLength: 40 }), (ops) => {
    const store = ConfigStore.open(':memory:');
    store.seedFrom(defaultConfig());
    const model: Array<{ id: number; prefix: string }> = store.list('routes').map((r) => ({ id: r.id, prefix: r.value.prefix }));
    for (const [add, n] of ops) {
      const prefix = `10.${100 + n}.0.0/16`;
      if (add) {
        if (model.some((m) => m.prefix === prefix)) {
          assert.throws(() => store.create('routes', route(prefix)), ConfigError);
        } else {
          model.push({ id: store.create('routes', route(prefix)).result.id, prefix });
        }
      } else if (model.length > 0) {
        const victim = model.splice(n % model.length, 1)[0];
        store.remove('routes', victim.id);
      }
    }
    assert.deepEqual(store.list('routes').map((r) => ({ id: r.id, prefix: r.value.prefix })), model);
    assert.deepEqual(store.load().routes.map((r) => r.prefix), model.map((m) => m.prefix));
    store.close();
  }), { numRuns: 30 });
});

test('a store from a newer tether is refused', () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'tether.db');
    ConfigStore.open(path).close();
    const db = new Database(path);
    db.prepare('UPDATE schema_version SET version = ?').run(STORE_SCHEMA_VERSION + 1);
    db.close();
    assert.throws(() => ConfigStore.open(path), /newer than this tether understands/);
  } finally {
    t.done();
  }
});

/** Runs `n` route creations in a separate process against the store at `path`. */
function writer(path: string, base: number, n: number): Promise<void> {
  const code = `
    import { ConfigStore } from ${JSON.stringify(new URL('./store.ts', import.meta.url).pathname)};
    const store = ConfigStore.open(${JSON.stringify(path)});
    for (let i = 0; i < ${n}; i++) {
      store.create('routes', { prefix: '10.' + (${base} + i) + '.0.0/16', next_hop: { onramp: 'dc-link' }, priority: 100, weight: 1 });
    }
    store.close();
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`writer exited with ${c}`))));
    child.on('error', reject);
  });
}

test('concurrent writers (two processes on one file) stay consistent: every write lands once', async () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'tether.db');
    const store = ConfigStore.open(path);
    store.seedFrom(defaultConfig());
    const N = 100;
    // This process writes too, while the two children do.
    const children = Promise.all([writer(path, 0, N), writer(path, 100, N)]);
    for (let i = 0; i < 10; i++) store.create('routes', route(`11.${i}.0.0/16`));
    await children;
    const cfg = store.load();
    const prefixes = cfg.routes.map((r) => r.prefix);
    assert.equal(prefixes.length, 2 + 10 + 2 * N);
    assert.equal(new Set(prefixes).size, prefixes.length);
    const ids = store.list('routes').map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, 'row ids unique');
    assert.deepEqual(validateConfig(cfg), cfg);
    store.close();
  } finally {
    t.done();
  }
});
