// type: ipsec through the REST API (issue 9): the same schema and validator as the YAML file, the pre-shared key
// "(redacted)" on every read and kept when sent back, bad fields answered 400 with their path, and the whole
// configuration round-tripping through GET and PUT /v1/config (what `tether config export` / `import` do).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { buildApi } from './api.js';
import { parse } from 'yaml';
import { REDACTED, stringifyConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { ConfigStore } from './store.js';

const TOKEN = 'test-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const PSK = 'ipsec-psk-that-must-never-leave-0123';

interface Res { status: number; body: any; text: string } // eslint-disable-line @typescript-eslint/no-explicit-any

async function call(app: FastifyInstance, method: string, url: string, payload?: unknown): Promise<Res> {
  const r = await app.inject({ method: method as 'GET', url, headers: AUTH, ...(payload !== undefined ? { payload: payload as object } : {}) });
  assert.ok(!r.body.includes(PSK), `${method} ${url} leaked the pre-shared key`);
  return { status: r.statusCode, body: r.body === '' ? undefined : JSON.parse(r.body), text: r.body };
}

const IPSEC = {
  name: 'branch-ipsec', type: 'ipsec', site: 'site-b', automatic_return_routing: true, preference: 20,
  ipsec: { local_address: '192.168.106.1', remote_address: '192.168.106.2', remote_id: 'branch.example.net', psk: PSK, esp_proposals: 'aes256gcm16' },
};

test('ipsec onramps through the API: created, read redacted, kept when "(redacted)" comes back, round-tripped by config export/import', async () => {
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  const app = buildApi({ store, token: TOKEN });
  const created = await call(app, 'POST', '/v1/onramps', IPSEC);
  assert.equal(created.status, 201, created.text);
  assert.equal(created.body.ipsec.psk, REDACTED);
  assert.deepEqual(created.body.ipsec.esp_proposals, ['aes256gcm16'], 'one value stands for a list');
  assert.equal(created.body.ipsec.mtu, 1406);
  for (const url of ['/v1/onramps', '/v1/onramps/branch-ipsec', '/v1/config']) assert.equal((await call(app, 'GET', url)).status, 200, url);
  const stored = (): string | undefined => {
    const o = store.load().onramps.find((x) => x.name === 'branch-ipsec');
    return o?.type === 'ipsec' ? o.ipsec.psk : undefined;
  };
  assert.equal(stored(), PSK);

  // PUT what GET returned (psk "(redacted)"), with a change: the key is kept.
  const got = (await call(app, 'GET', '/v1/onramps/branch-ipsec')).body;
  const put = await call(app, 'PUT', '/v1/onramps/branch-ipsec', { ...got, ipsec: { ...got.ipsec, dpd_seconds: 30 } });
  assert.equal(put.status, 200, put.text);
  assert.equal(stored(), PSK);
  assert.equal(put.body.ipsec.dpd_seconds, 30);

  // Garbage is a 400 naming the field; a short key is not echoed.
  const bad = await call(app, 'PATCH', '/v1/onramps/branch-ipsec', { ipsec: { esp_proposals: ['aes256-md5'], psk: 'short-secret', replay_window: 8 } });
  assert.equal(bad.status, 400);
  const paths = (bad.body.problems as Array<{ path: string; message: string }>).map((p) => p.path);
  assert.deepEqual(paths.sort(), ['ipsec.esp_proposals[0]', 'ipsec.psk', 'ipsec.replay_window'].sort(), bad.text);
  assert.ok(!bad.text.includes('short-secret'));
  const wrongType = await call(app, 'POST', '/v1/onramps', { ...IPSEC, name: 'x', ipsec: { ...IPSEC.ipsec, dpd_seconds: 'often' } });
  assert.equal(wrongType.status, 400);
  assert.equal(wrongType.body.problems[0].path, 'ipsec.dpd_seconds');
  // The same site again under another name: indistinguishable.
  const dup = await call(app, 'POST', '/v1/onramps', { ...IPSEC, name: 'again' });
  assert.equal(dup.status, 400);
  assert.match(dup.text, /duplicate IPsec peer \\"192\.168\.106\.1 → 192\.168\.106\.2\\"/);
  // A psk_file is a file path: only the YAML file may set one.
  const file = await call(app, 'POST', '/v1/onramps', { ...IPSEC, name: 'from-file', ipsec: { local_address: '192.168.107.1', remote_address: '192.168.107.2', psk_file: '/etc/shadow' } });
  assert.equal(file.status, 400);
  assert.match(file.text, /ipsec\.psk_file.*is a file path/);

  // tether config export (GET /v1/config → YAML) and import (YAML → PUT /v1/config): the key survives, never shown.
  const exported = stringifyConfig((await call(app, 'GET', '/v1/config')).body);
  assert.ok(exported.includes(`psk: ${REDACTED}`));
  const imported = await call(app, 'PUT', '/v1/config', parse(exported));
  assert.equal(imported.status, 200, imported.text);
  assert.equal(stored(), PSK);

  assert.equal((await call(app, 'DELETE', '/v1/onramps/branch-ipsec')).status, 204);
  await app.close();
  store.close();
});
