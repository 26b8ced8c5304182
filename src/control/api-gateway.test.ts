/**
 * Gateway rules and DLP profiles over the API (docs/API.md, "Gateway"): resources over the store's gateway section,
 * applied live (a new policy epoch), a bad rule refused with the key named, nothing lost on restart, and the
 * section round-tripping through GET/PUT /v1/config (`tether config export` / `import`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { PipelineRig } from '../../test/support/pipeline-rig.js';
import { buildApi } from './api.js';
import { LiveConfig } from './apply.js';
import { toPipelineConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { ConfigStore } from './store.js';

const TOKEN = 'test-token-0123456789';

interface Res {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Record<string, unknown>;
}

async function call(app: FastifyInstance, method: string, url: string, payload?: unknown): Promise<Res> {
  const r = await app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${TOKEN}` }, ...(payload !== undefined ? { payload: payload as object } : {}) });
  return { status: r.statusCode, body: r.body === '' ? undefined : JSON.parse(r.body), headers: r.headers };
}

test('gateway rules and DLP profiles: create, read, order, change, delete; applied live as a new policy epoch', async () => {
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  const cfg = store.load();
  const rig = new PipelineRig(toPipelineConfig(cfg));
  const app = buildApi({ store, token: TOKEN, edge: new LiveConfig(rig.pipeline, cfg) });
  const epoch = rig.pipeline.policyEpoch;

  let r = await call(app, 'POST', '/v1/gateway/dlp-profiles', { name: 'finance', cards: true });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.headers.location, '/v1/gateway/dlp-profiles/finance');
  assert.deepEqual(r.body, { name: 'finance', action: 'block', cards: true });
  r = await call(app, 'POST', '/v1/gateway/rules', { name: 'no-social-b', action: 'block', sites: 'site-b', hostnames: ['*.example-social.com'] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.deepEqual(r.body, { id: 1, name: 'no-social-b', action: 'block', sites: ['site-b'], hostnames: ['*.example-social.com'] });
  assert.equal(r.headers.location, '/v1/gateway/rules/1');
  r = await call(app, 'POST', '/v1/gateway/rules?before=no-social-b', { name: 'finance-scan', action: 'allow', sites: ['site-a'], destination_ports: [80], dlp: ['finance'] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.id, 2);
  assert.deepEqual((await call(app, 'GET', '/v1/gateway/rules')).body.map((x: { id: number }) => x.id), [2, 1], 'inserted before');
  assert.deepEqual((await call(app, 'GET', '/v1/gateway/rules/no-social-b')).body, (await call(app, 'GET', '/v1/gateway/rules/1')).body);
  assert.equal(rig.pipeline.gateway?.size, 2, 'applied to the running pipeline');
  assert.ok(rig.pipeline.policyEpoch > epoch, 'each change a new epoch');

  r = await call(app, 'PATCH', '/v1/gateway/rules/1', { hostnames: ['*.example-social.com', 'example-social.com'] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.hostnames, ['*.example-social.com', 'example-social.com']);
  assert.equal(r.body.id, 1);
  r = await call(app, 'PUT', '/v1/gateway/rules/1', { id: 9, action: 'block' });
  assert.equal(r.status, 400);
  assert.equal(r.body.problems[0].path, 'id');

  // Settings: classify and the DLP scan length; rules and profiles are kept.
  r = await call(app, 'PUT', '/v1/gateway', { classify: { wait_ms: 1500 }, dlp_scan_bytes: 8192 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { classify: { buffer_bytes: 16384, wait_ms: 1500, fallback: 'allow' }, dlp_scan_bytes: 8192 });
  assert.equal((await call(app, 'GET', '/v1/gateway/rules')).body.length, 2);
  assert.equal(rig.pipeline.gateway?.spec.classify.waitMs, 1500);

  // A profile a rule names cannot go; the rule first.
  r = await call(app, 'DELETE', '/v1/gateway/dlp-profiles/finance');
  assert.equal(r.status, 409);
  assert.match(JSON.stringify(r.body.problems), /finance/);
  assert.equal((await call(app, 'DELETE', '/v1/gateway/rules/finance-scan')).status, 204);
  assert.equal((await call(app, 'DELETE', '/v1/gateway/dlp-profiles/finance')).status, 204);
  assert.equal((await call(app, 'GET', '/v1/gateway/rules/2')).status, 404);
  r = await call(app, 'POST', '/v1/gateway/rules', { action: 'allow' });
  assert.equal(r.body.id, 2, 'the highest id + 1');
});

test('a bad gateway rule is a 400 naming the key; nothing is stored', async () => {
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  const app = buildApi({ store, token: TOKEN });
  const cases: Array<[unknown, string, RegExp]> = [
    [{ action: 'block', hostnames: ['a..example'] }, 'hostnames[0]', /./],
    [{ action: 'block', sites: ['nowhere'] }, 'sites[0]', /nowhere|no site/],
    [{ action: 'override', hostnames: ['x.example'], sources: ['dns'] }, 'override', /required/],
    [{ action: 'allow', dlp: ['missing'] }, 'dlp[0]', /missing|DLP/],
    [{ action: 'drop' }, 'action', /./],
    [{ action: 'allow', colour: 'red' }, 'colour', /unknown key/],
  ];
  for (const [body, path, re] of cases) {
    const r = await call(app, 'POST', '/v1/gateway/rules', body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    const p = (r.body.problems as Array<{ path: string; message: string }>).find((x) => x.path === path);
    assert.ok(p !== undefined, `${JSON.stringify(body)}: no problem at ${path}: ${JSON.stringify(r.body.problems)}`);
    assert.match(p.message, re);
  }
  assert.deepEqual((await call(app, 'GET', '/v1/gateway/rules')).body, []);
});

test('gateway rules survive a restart, and the section round-trips through /v1/config', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-gw-api-'));
  try {
    const path = join(dir, 'store.db');
    let store = ConfigStore.open(path);
    store.seedFrom(defaultConfig());
    let app = buildApi({ store, token: TOKEN });
    assert.equal((await call(app, 'POST', '/v1/gateway/dlp-profiles', { name: 'pii', ssns: true, action: 'log' })).status, 201);
    assert.equal((await call(app, 'POST', '/v1/gateway/rules', { name: 'dns-intranet', action: 'override', sources: 'dns', hostnames: 'intranet.example', override: { addresses: ['192.0.2.7'] } })).status, 201);
    assert.equal((await call(app, 'POST', '/v1/gateway/rules', { name: 'scan', action: 'log', dlp: 'pii' })).status, 201);
    const before = (await call(app, 'GET', '/v1/gateway/rules')).body;
    await app.close();
    store.close();
    store = ConfigStore.open(path);
    app = buildApi({ store, token: TOKEN });
    assert.deepEqual((await call(app, 'GET', '/v1/gateway/rules')).body, before, 'nothing lost on restart');
    const exported = (await call(app, 'GET', '/v1/config')).body;
    assert.deepEqual(exported.gateway.rules.map((x: { name: string }) => x.name), ['dns-intranet', 'scan']);
    assert.equal((await call(app, 'PUT', '/v1/config', exported)).status, 200);
    assert.deepEqual((await call(app, 'GET', '/v1/gateway/rules')).body, before, 'export then import: the same rules, the same ids');
    assert.deepEqual((await call(app, 'GET', '/v1/gateway/dlp-profiles')).body, [{ name: 'pii', action: 'log', ssns: true }]);
    await app.close();
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
