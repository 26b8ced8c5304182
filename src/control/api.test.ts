import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { PipelineRig } from '../../test/support/pipeline-rig.js';
import { API_BODY_LIMIT, buildApi, loadOrCreateToken, tokenMatches } from './api.js';
import { LiveConfig } from './apply.js';
import { REDACTED, toPipelineConfig, validateConfig } from '../config/index.js';
import { defaultConfig, LAB_WIREGUARD_KEYS } from '../lab/config.js';
import { ConfigStore } from './store.js';
import { buildUdp } from '../wire/build.js';

const TOKEN = 'test-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const PSK = 'FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=';
const SECRETS = [LAB_WIREGUARD_KEYS.edgeAPrivate, LAB_WIREGUARD_KEYS.edgeBPrivate, PSK];

function tempDir(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tether-api-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

function labStore(path = ':memory:'): ConfigStore {
  const store = ConfigStore.open(path);
  store.seedFrom(defaultConfig());
  return store;
}

interface Res {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
  headers: Record<string, unknown>;
}

/** inject with the token, and a check that no response ever carries a secret. */
async function call(app: FastifyInstance, method: string, url: string, payload?: unknown, headers: Record<string, string> = AUTH, extra: Partial<InjectOptions> = {}): Promise<Res> {
  const r = await app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined ? { payload: payload as object } : {}), ...extra });
  for (const s of SECRETS) assert.ok(!r.body.includes(s), `${method} ${url} leaked a secret`);
  return { status: r.statusCode, body: r.body === '' ? undefined : JSON.parse(r.body), text: r.body, headers: r.headers };
}

const gre = (name: string, n: number, extra: object = {}): object => ({
  name, type: 'gre', site: 'site-b', automatic_return_routing: true, gre: { local: `192.168.${n}.1`, remote: `192.168.${n}.2` }, ...extra,
});

test('create, read, update and delete every kind', async () => {
  const store = labStore();
  const app = buildApi({ store, token: TOKEN });
  // sites
  let r = await call(app, 'POST', '/v1/sites', { name: 'branch-c', prefixes: '10.3.0.0/24' });
  assert.equal(r.status, 201);
  assert.deepEqual(r.body, { id: 5, name: 'branch-c', prefixes: ['10.3.0.0/24'] });
  assert.equal(r.headers.location, '/v1/sites/5');
  assert.deepEqual((await call(app, 'GET', '/v1/sites/branch-c')).body, r.body);
  assert.deepEqual((await call(app, 'GET', '/v1/sites/5')).body, r.body);
  r = await call(app, 'PATCH', '/v1/sites/5', { description: 'third branch' });
  assert.equal(r.body.description, 'third branch');
  r = await call(app, 'PUT', '/v1/sites/branch-c', { name: 'branch-c', prefixes: ['10.4.0.0/24'] });
  assert.deepEqual(r.body, { id: 5, name: 'branch-c', prefixes: ['10.4.0.0/24'] }, 'PUT replaces: the description is gone');
  assert.equal((await call(app, 'GET', '/v1/sites')).body.length, 5);

  // onramps of every type, ARR
  r = await call(app, 'POST', '/v1/onramps', gre('c-gre', 130, { site: 'branch-c' }));
  assert.equal(r.status, 201);
  assert.equal(r.body.gre.mtu, 1476, 'defaults filled in');
  const greId = r.body.id;
  r = await call(app, 'POST', '/v1/onramps', { name: 'c-link', type: 'interconnect', site: 'branch-c', automatic_return_routing: false, interconnect: { link: 'veth-c' } });
  assert.equal(r.status, 201);
  r = await call(app, 'POST', '/v1/onramps', {
    name: 'c-wg', type: 'wireguard', site: 'branch-c', automatic_return_routing: true,
    wireguard: { device: 'wg-a', public_key: LAB_WIREGUARD_KEYS.siteBPublic, preshared_key: PSK, allowed_ips: '10.4.0.0/24' },
  });
  assert.equal(r.status, 201);
  assert.equal(r.body.wireguard.preshared_key, REDACTED);
  r = await call(app, 'PATCH', `/v1/onramps/${greId}`, { automatic_return_routing: false, gre: { key: 7 } });
  assert.equal(r.body.automatic_return_routing, false);
  assert.deepEqual(r.body.gre, { local: '192.168.130.1', remote: '192.168.130.2', key: 7, mtu: 1476 });
  r = await call(app, 'PATCH', `/v1/onramps/${greId}`, { gre: { key: null } });
  assert.equal(r.body.gre.key, undefined, 'merge patch: null removes a field');

  // routes
  r = await call(app, 'POST', '/v1/routes', { prefix: '10.4.0.0/24', next_hop: { onramp: 'c-gre' }, site: 'branch-c' });
  assert.equal(r.status, 201);
  const routeId = r.body.id;
  r = await call(app, 'PUT', `/v1/routes/${routeId}`, { id: routeId, prefix: '10.4.0.0/24', next_hop: { onramp: 'c-wg' }, weight: 2 });
  assert.deepEqual(r.body, { id: routeId, prefix: '10.4.0.0/24', next_hop: { onramp: 'c-wg' }, priority: 100, weight: 2 });
  r = await call(app, 'PATCH', `/v1/routes/${routeId}`, { priority: 5 });
  assert.equal(r.body.priority, 5);

  // firewall rules and settings
  r = await call(app, 'POST', '/v1/firewall/rules', { name: 'no-smtp', action: 'deny', protocols: 'tcp', destination_ports: [25, '465-587'] });
  assert.equal(r.status, 201);
  assert.deepEqual(r.body, { id: 1, name: 'no-smtp', action: 'deny', protocols: ['tcp'], destination_ports: [25, '465-587'] });
  r = await call(app, 'POST', '/v1/firewall/rules?before=no-smtp', { name: 'dc-ok', action: 'allow', onramps: ['dc-link'] });
  assert.deepEqual((await call(app, 'GET', '/v1/firewall/rules')).body.map((x: { name: string }) => x.name), ['dc-ok', 'no-smtp']);
  r = await call(app, 'PUT', '/v1/firewall', { default_action: 'deny' });
  assert.deepEqual(r.body, { default_action: 'deny' });
  assert.equal(store.load().firewall.default_action, 'deny');

  // egress
  r = await call(app, 'PATCH', '/v1/egress', { addresses: ['198.51.100.1', '198.51.100.2'] });
  assert.deepEqual(r.body.addresses, ['198.51.100.1', '198.51.100.2']);
  r = await call(app, 'DELETE', '/v1/egress');
  assert.equal(r.status, 409, 'the default route leads to the Internet');
  assert.deepEqual(r.body.problems[0], { path: 'next_hop', message: 'leads to the Internet, but no egress pool is configured (egress.addresses)', resource: '/v1/routes/1' });

  // WireGuard devices
  r = await call(app, 'POST', '/v1/wireguard/devices', { name: 'wg-c', listen_port: 51821, private_key: LAB_WIREGUARD_KEYS.siteAPrivate });
  assert.equal(r.status, 201);
  assert.equal(r.body.private_key, REDACTED);

  // deletes, in dependency order
  assert.equal((await call(app, 'DELETE', `/v1/routes/${routeId}`)).status, 204);
  assert.equal((await call(app, 'DELETE', '/v1/routes/' + routeId)).status, 404);
  for (const name of ['c-gre', 'c-link', 'c-wg']) assert.equal((await call(app, 'DELETE', `/v1/onramps/${name}`)).status, 204, name);
  assert.equal((await call(app, 'DELETE', '/v1/sites/branch-c')).status, 204);
  assert.equal((await call(app, 'DELETE', '/v1/firewall/rules/dc-ok')).status, 204);
  assert.equal((await call(app, 'DELETE', '/v1/wireguard/devices/wg-c')).status, 204);
  assert.equal((await call(app, 'GET', '/v1/sites')).body.length, 4);
  assert.equal(store.load().wireguard_devices.length, 2);
  await app.close();
  store.close();
});

test('bad requests get precise 4xx answers naming the field', async () => {
  const store = labStore();
  const app = buildApi({ store, token: TOKEN });
  const before = store.read();
  const cases: Array<[string, string, unknown, number, Array<{ path: string; re: RegExp; resource?: string }>]> = [
    ['POST', '/v1/onramps', { ...gre('x', 140), automatic_return_routing: 'yes' }, 400, [{ path: 'automatic_return_routing', re: /^must be boolean, got "yes"$/ }]],
    ['POST', '/v1/onramps', { ...gre('x', 140), gre: { local: '192.168.140.1', remote: '192.168.140.2', mtu: '1400' } }, 400, [{ path: 'gre.mtu', re: /^must be integer, got "1400"$/ }]],
    ['POST', '/v1/onramps', { ...gre('x', 140), preferense: 5 }, 400, [{ path: 'preferense', re: /^unknown key "preferense"$/ }]],
    ['POST', '/v1/onramps', { name: 'x', type: 'gre', gre: { local: '192.168.140.1', remote: '192.168.140.2' } }, 400, [{ path: 'automatic_return_routing', re: /is required/ }]],
    ['POST', '/v1/onramps', gre('site-a-wg', 140), 400, [{ path: 'name', re: /^duplicate onramp name "site-a-wg" \(already used at onramps\[0\]\.name\)$/ }]],
    ['POST', '/v1/onramps', gre('x', 140, { site: 'nowhere' }), 400, [{ path: 'site', re: /^no site named "nowhere"/ }]],
    ['POST', '/v1/onramps', { ...gre('x', 140), type: 'ipsec', gre: undefined }, 400, [{ path: 'ipsec', re: /^is required: the IPsec settings/ }]],
    ['POST', '/v1/onramps', { ...gre('x', 140), type: 'ipsec', gre: undefined, ipsec: { local_address: '192.168.140.1', remote_address: '192.168.140.2', psk: 'a-long-enough-secret', ike_proposals: 'aes256-sha1-modp2048' } }, 400, [{ path: 'ipsec.ike_proposals', re: /^unknown keyword "sha1" in "aes256-sha1-modp2048"; supported: encryption aes128gcm16/ }]],
    ['POST', '/v1/onramps', { ...gre('x', 140), type: 'ipsec', gre: undefined, ipsec: { local_address: '192.168.140.1', psk: 'short' } }, 400, [{ path: 'ipsec.psk', re: /^is too short: 5 bytes, at least 16/ }, { path: 'ipsec.remote_id', re: /is required when remote_address is any/ }]],
    ['POST', '/v1/routes', { prefix: '10.9.0.0/16', next_hop: { onramp: 't9' } }, 400, [{ path: 'next_hop.onramp', re: /^no onramp named "t9" \(onramps: site-a-wg, site-b-wg, site-gre-tunnel, dc-link\)$/ }]],
    ['POST', '/v1/routes', { prefix: '172.16.0.0/24', next_hop: { onramp: 'dc-link' } }, 400, [{ path: '', re: /^duplicate route "172\.16\.0\.0\/24 via onramp dc-link scope \*"/ }]],
    ['POST', '/v1/routes', { prefix: '10.0.1.7/24', next_hop: 'blackhole' }, 400, [{ path: 'prefix', re: /did you mean 10\.0\.1\.0\/24\?/ }]],
    ['POST', '/v1/routes', { prefix: 10, next_hop: 'nowhere' }, 400, [{ path: 'prefix', re: /^must be string, got 10$/ }, { path: 'next_hop', re: /must be/ }]],
    ['POST', '/v1/firewall/rules', { action: 'deny', protocols: ['icmp'], destination_ports: 53 }, 400, [{ path: 'destination_ports', re: /ports apply to tcp and udp only/ }]],
    ['PUT', '/v1/sites/1', { name: 'site-a', id: 9 }, 400, [{ path: 'id', re: /cannot be changed \(this site is 1\)/ }]],
    ['PUT', '/v1/onramps/dc-link', { name: 'dc-link2', type: 'interconnect', site: 'dc', automatic_return_routing: true, interconnect: { link: 'veth-dc' } }, 409, [{ path: 'next_hop.onramp', re: /no onramp named "dc-link"/, resource: '/v1/routes/2' }]],
    ['DELETE', '/v1/sites/dc', undefined, 409, [{ path: 'site', re: /no site named "dc"/, resource: '/v1/onramps/4' }]],
    ['DELETE', '/v1/onramps/dc-link', undefined, 409, [{ path: 'next_hop.onramp', re: /no onramp named "dc-link"/, resource: '/v1/routes/2' }]],
    ['GET', '/v1/onramps/nope', undefined, 404, [{ path: 'ref', re: /no onramp with this id or name/ }]],
    ['PATCH', '/v1/routes/77', { weight: 2 }, 404, [{ path: 'ref', re: /no route/ }]],
    ['PATCH', '/v1/egress', { port_range: '2000-1000' }, 400, [{ path: 'port_range', re: /low first/ }]],
  ];
  for (const [method, url, body, status, problems] of cases) {
    const r = await call(app, method, url, body);
    const what = `${method} ${url} ${JSON.stringify(body)} → ${r.text}`;
    assert.equal(r.status, status, what);
    assert.equal(typeof r.body.error, 'string', what);
    assert.equal(r.body.problems.length, problems.length, what);
    problems.forEach((p, i) => {
      assert.equal(r.body.problems[i].path, p.path, what);
      assert.match(r.body.problems[i].message, p.re, what);
      assert.equal(r.body.problems[i].resource, p.resource, what);
    });
  }
  assert.deepEqual(store.read(), before, 'no failed request changed anything');

  // Not JSON, empty, prototype keys (application/json and merge patches): 400s that name the problem and where.
  const json = { ...AUTH, 'content-type': 'application/json' };
  const patch = { ...AUTH, 'content-type': 'application/merge-patch+json' };
  const raw: Array<[string, string, string, Record<string, string>, string, { path: string; re: RegExp }]> = [
    ['POST', '/v1/routes', '{"prefix":', json, 'the request body is not valid JSON', { path: '', re: /^Unexpected end of JSON input$/ }],
    ['POST', '/v1/routes', '', json, 'the request body is empty', { path: '', re: /is empty/ }],
    ['POST', '/v1/sites', '{"name":"x","__proto__":{"admin":true}}', json, 'body: key __proto__ is not allowed', { path: '__proto__', re: /^key __proto__ is not allowed$/ }],
    ['POST', '/v1/onramps', '{"name":"x","gre":{"local":"192.168.140.1","__proto__":{}}}', json, 'body: key __proto__ is not allowed', { path: 'gre.__proto__', re: /^key __proto__ is not allowed$/ }],
    ['POST', '/v1/sites', '{"name":"x","constructor":{"prototype":{"admin":true}}}', json, 'body: key constructor.prototype is not allowed', { path: 'constructor.prototype', re: /^key constructor\.prototype is not allowed$/ }],
    ['PATCH', '/v1/sites/1', '{"description":"y","__proto__":{"admin":true}}', patch, 'body: key __proto__ is not allowed', { path: '__proto__', re: /^key __proto__ is not allowed$/ }],
    ['PATCH', '/v1/egress', '{"port_range":', patch, 'the request body is not valid JSON', { path: '', re: /JSON/ }],
  ];
  for (const [method, url, payload, headers, error, problem] of raw) {
    const r = await call(app, method, url, payload, headers);
    const what = `${method} ${url} ${payload} → ${r.text}`;
    assert.equal(r.status, 400, what);
    assert.equal(r.body.error, error, what);
    assert.equal(r.body.problems.length, 1, what);
    assert.equal(r.body.problems[0].path, problem.path, what);
    assert.match(r.body.problems[0].message, problem.re, what);
  }
  assert.deepEqual(store.read(), before, 'no refused body changed anything');
  assert.equal(({} as Record<string, unknown>).admin, undefined, 'no prototype was polluted');

  // Too big.
  const r = await call(app, 'POST', '/v1/sites', { name: 'big', description: 'x'.repeat(API_BODY_LIMIT) });
  assert.equal(r.status, 413);
  assert.match(r.body.problems[0].message, /larger than 262144 bytes/);
  await app.close();
  store.close();
});

test('tokens: every call needs the right bearer token; loopback reads are open only with api.open_reads', async () => {
  const store = labStore();
  const app = buildApi({ store, token: TOKEN, settings: { ...store.load().api, open_reads: true } });
  const body = { name: 'z', prefixes: [] };
  let r = await call(app, 'POST', '/v1/sites', body, {});
  assert.equal(r.status, 401);
  assert.equal(r.body.problems[0].path, 'Authorization');
  assert.match(r.body.problems[0].message, /missing/);
  r = await call(app, 'POST', '/v1/sites', body, { authorization: 'Bearer wrong' });
  assert.equal(r.status, 401);
  assert.match(r.body.problems[0].message, /does not match/);
  r = await call(app, 'DELETE', '/v1/sites/site-a', undefined, { authorization: TOKEN });
  assert.equal(r.status, 401, 'the Bearer scheme is required');
  assert.equal((await call(app, 'GET', '/v1/sites', undefined, {})).status, 200);
  assert.equal((await call(app, 'GET', '/v1/sites', undefined, {}, { remoteAddress: '192.0.2.7' })).status, 401);
  assert.equal((await call(app, 'GET', '/v1/sites', undefined, AUTH, { remoteAddress: '192.0.2.7' })).status, 200);
  assert.equal(store.load().sites.length, 4);
  assert.equal(tokenMatches(TOKEN, TOKEN), true);
  assert.equal(tokenMatches(`${TOKEN}x`, TOKEN), false);
  await app.close();
  store.close();
});

test('the token file is created with mode 0600 on first start and reused afterwards', () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'deep', 'dir', 'api-token');
    const a = loadOrCreateToken(path);
    assert.match(a, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(t.dir, 'deep', 'dir')).mode & 0o777, 0o700);
    assert.equal(loadOrCreateToken(path), a);
    writeFileSync(path, '', { mode: 0o644 });
    const b = loadOrCreateToken(path);
    assert.notEqual(b, a);
    assert.equal(readFileSync(path, 'utf8').trim(), b);
    assert.equal(statSync(path).mode & 0o777, 0o600);
  } finally {
    t.done();
  }
});

test('secrets are never returned; "(redacted)" sent back keeps the stored secret', async () => {
  const store = labStore();
  const app = buildApi({ store, token: TOKEN });
  await call(app, 'POST', '/v1/onramps', {
    name: 'c-wg', type: 'wireguard', automatic_return_routing: true,
    wireguard: { device: 'wg-b', public_key: LAB_WIREGUARD_KEYS.siteAPublic, preshared_key: PSK, allowed_ips: ['10.5.0.0/24'] },
  });
  // GET everything (call() asserts no secret appears anywhere).
  for (const url of ['/v1/onramps', '/v1/onramps/c-wg', '/v1/wireguard/devices', '/v1/wireguard/devices/wg-a', '/v1/config', '/openapi.json']) {
    assert.equal((await call(app, 'GET', url)).status, 200, url);
  }
  const dev = (await call(app, 'GET', '/v1/wireguard/devices/wg-a')).body;
  assert.equal(dev.private_key, REDACTED);
  const r = await call(app, 'PUT', '/v1/wireguard/devices/wg-a', { ...dev, listen_port: 51830 });
  assert.equal(r.status, 200, r.text);
  assert.equal(store.load().wireguard_devices[0].private_key, LAB_WIREGUARD_KEYS.edgeAPrivate, 'kept');
  const on = (await call(app, 'GET', '/v1/onramps/c-wg')).body;
  await call(app, 'PUT', '/v1/onramps/c-wg', { ...on, preference: 10 });
  const stored = store.load().onramps.find((o) => o.name === 'c-wg');
  assert.equal(stored?.type === 'wireguard' && stored.wireguard.preshared_key, PSK);
  // A malformed key is reported without echoing it.
  const bad = await call(app, 'PATCH', '/v1/wireguard/devices/wg-a', { private_key: `${PSK.slice(0, 20)}` });
  assert.equal(bad.status, 400);
  assert.ok(!bad.text.includes(PSK.slice(0, 20)));
  // The whole configuration round-trips through GET and PUT /v1/config with secrets intact.
  const whole = (await call(app, 'GET', '/v1/config')).body;
  const put = await call(app, 'PUT', '/v1/config', whole);
  assert.equal(put.status, 200, put.text);
  assert.equal(store.load().wireguard_devices[1].private_key, LAB_WIREGUARD_KEYS.edgeBPrivate);
  await app.close();
  store.close();
});

test('changes persist across a restart (store closed and reopened, app rebuilt)', async () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'tether.db');
    let store = labStore(path);
    let app = buildApi({ store, token: TOKEN });
    await call(app, 'POST', '/v1/routes', { prefix: '10.8.0.0/16', next_hop: { onramp: 'dc-link' } });
    await call(app, 'PATCH', '/v1/onramps/site-a-wg', { automatic_return_routing: false });
    await call(app, 'DELETE', '/v1/routes/2');
    const snapshot = (await call(app, 'GET', '/v1/config')).body;
    await app.close();
    store.close();

    store = ConfigStore.open(path);
    assert.equal(store.seedFrom(defaultConfig()), false, 'a restart does not reseed');
    app = buildApi({ store, token: TOKEN });
    assert.deepEqual((await call(app, 'GET', '/v1/config')).body, snapshot);
    assert.equal((await call(app, 'GET', '/v1/onramps/site-a-wg')).body.automatic_return_routing, false);
    assert.deepEqual((await call(app, 'GET', '/v1/routes')).body.map((r: { id: number; prefix: string }) => [r.id, r.prefix]), [[1, '0.0.0.0/0'], [3, '10.8.0.0/16']]);
    await app.close();
    store.close();
  } finally {
    t.done();
  }
});

test('over a real socket on 127.0.0.1', async () => {
  const store = labStore();
  const app = buildApi({ store, token: TOKEN });
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const addr = app.server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    const base = `http://127.0.0.1:${addr.port}`;
    let r = await fetch(`${base}/v1/onramps`, { headers: AUTH });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as unknown[]).length, 4);
    r = await fetch(`${base}/v1/routes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prefix: '10.6.0.0/16', next_hop: 'blackhole' }) });
    assert.equal(r.status, 401);
    r = await fetch(`${base}/v1/routes`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ prefix: '10.6.0.0/16', next_hop: 'blackhole' }) });
    assert.equal(r.status, 201);
    r = await fetch(`${base}/v1/onramps/dc-link`, { method: 'PATCH', headers: { ...AUTH, 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ preference: 7 }) });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { preference: number }).preference, 7);
    r = await fetch(`${base}/v1/sites`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x', description: 'y'.repeat(API_BODY_LIMIT + 10) }) });
    assert.equal(r.status, 413);
    r = await fetch(`${base}/openapi.json`);
    const doc = (await r.json()) as { openapi: string; paths: Record<string, Record<string, { responses: object; security?: unknown }>> };
    assert.equal(doc.openapi, '3.1.0');
    for (const p of ['/v1/sites', '/v1/sites/{ref}', '/v1/onramps', '/v1/onramps/{ref}', '/v1/routes', '/v1/routes/{ref}', '/v1/egress', '/v1/firewall/rules', '/v1/firewall/rules/{ref}', '/v1/wireguard/devices', '/v1/config']) {
      assert.ok(doc.paths[p] !== undefined, p);
    }
    assert.deepEqual(Object.keys(doc.paths['/v1/onramps/{ref}']).sort(), ['delete', 'get', 'patch', 'put']);
    assert.ok(doc.paths['/v1/routes'].post.security !== undefined);
  } finally {
    await app.close();
    store.close();
  }
});

test('every change is applied live to the running pipeline', async () => {
  const store = labStore();
  const cfg = store.load();
  const edge = new PipelineRig(toPipelineConfig(cfg));
  const live = new LiveConfig(edge.pipeline, cfg);
  const app = buildApi({ store, edge: live, token: TOKEN });
  const flow = (srcPort: number): number => edge.send(1, buildUdp({ src: '10.0.1.10', dst: '10.9.1.1' }, { srcPort, dstPort: 9, payload: Uint8Array.of(1) })).hop;
  assert.equal(flow(40000), 0, 'Internet');

  let r = await call(app, 'POST', '/v1/routes', { prefix: '10.9.0.0/16', next_hop: { onramp: 'dc-link' } });
  assert.equal(r.status, 201);
  assert.ok(edge.pipeline.routes.list().some((x) => x.prefix === '10.9.0.0/16'));
  assert.equal(flow(40001), 4, 'new flows take the new route');
  assert.equal(flow(40000), 0, 'the established flow keeps its path');

  r = await call(app, 'PATCH', '/v1/onramps/site-a-wg', { automatic_return_routing: false });
  assert.equal(edge.pipeline.ports.arr[1], 0);
  r = await call(app, 'PATCH', '/v1/onramps/site-a-wg', { automatic_return_routing: true });
  assert.equal(edge.pipeline.ports.arr[1], 1);

  r = await call(app, 'PUT', '/v1/egress', { addresses: ['198.51.100.9'] });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-tether-restart-required'], 'egress');

  // A change the running edge cannot take is refused and not stored.
  const bare = ConfigStore.open(':memory:');
  bare.seedFrom(validateConfig({ sites: [{ name: 's' }], onramps: [{ name: 'o', type: 'interconnect', site: 's', automatic_return_routing: true, interconnect: { link: 'eth1' } }] }));
  const bareCfg = bare.load();
  const bareEdge = new PipelineRig(toPipelineConfig(bareCfg));
  const bareApp = buildApi({ store: bare, edge: new LiveConfig(bareEdge.pipeline, bareCfg), token: TOKEN });
  assert.equal((await call(bareApp, 'PUT', '/v1/egress', { addresses: ['198.51.100.1'] })).status, 200);
  r = await call(bareApp, 'POST', '/v1/routes', { prefix: '0.0.0.0/0', next_hop: 'internet' });
  assert.equal(r.status, 409);
  assert.match(r.body.problems[0].message, /no egress pool/);
  assert.equal(bare.load().routes.length, 0);
  await bareApp.close();
  bare.close();
  await app.close();
  store.close();
});

test('ids only grow through the API: a deleted onramp\'s or site\'s id is never handed out again; an import without ids keeps ids by name', async () => {
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  const cfg = store.load();
  const edge = new PipelineRig(toPipelineConfig(cfg));
  const app = buildApi({ store, edge: new LiveConfig(edge.pipeline, cfg), token: TOKEN });
  const gre = (name: string, key: number) => ({ name, type: 'gre', site: 'site-b', automatic_return_routing: true, gre: { local: '192.168.110.1', remote: '192.168.110.2', key } });
  const first = await call(app, 'POST', '/v1/onramps', gre('gre-1', 1));
  assert.equal(first.status, 201);
  const firstId = (first.body as { id: number }).id;
  assert.equal((await call(app, 'DELETE', `/v1/onramps/${firstId}`)).status, 204);
  const second = await call(app, 'POST', '/v1/onramps', gre('gre-2', 2));
  assert.equal((second.body as { id: number }).id, firstId + 1, 'the deleted id is skipped');
  const reuse = await call(app, 'POST', '/v1/onramps', { ...gre('gre-3', 3), id: firstId });
  assert.equal(reuse.status, 400);
  assert.equal(reuse.body.problems[0].path, 'id');
  assert.match(reuse.body.problems[0].message, /never reused/);
  const site = (await call(app, 'POST', '/v1/sites', { name: 'site-x' })).body as { id: number };
  assert.equal((await call(app, 'DELETE', `/v1/sites/${site.id}`)).status, 204);
  assert.equal(((await call(app, 'POST', '/v1/sites', { name: 'site-y' })).body as { id: number }).id, site.id + 1);

  // `tether config import` of a file without ids: every entry keeps the id of its namesake.
  const before = new Map(store.load().onramps.map((o) => [o.name, o.id]));
  const plain = store.load();
  for (const o of plain.onramps) delete o.id;
  for (const s of plain.sites) delete s.id;
  for (const r of plain.firewall.rules) delete r.id;
  const imported = await call(app, 'PUT', '/v1/config', plain);
  assert.equal(imported.status, 200, JSON.stringify(imported.body));
  assert.deepEqual(new Map(store.load().onramps.map((o) => [o.name, o.id])), before);
  await app.close();
  store.close();
});

test('changes made at the same time: each is validated against what is committed when it is written', async () => {
  const store = labStore();
  const app = buildApi({ store, token: TOKEN });
  // Both are prepared before either is written (the API lets packets through between the two halves).
  const [a, b] = await Promise.all([
    call(app, 'POST', '/v1/sites', { name: 'branch-c' }),
    call(app, 'POST', '/v1/sites', { name: 'branch-d' }),
  ]);
  assert.deepEqual([a.status, b.status], [201, 201]);
  assert.notEqual(a.body.id, b.body.id);
  // The same name twice: the second is prepared again after the first committed, and refused.
  const [c, d] = await Promise.all([
    call(app, 'POST', '/v1/sites', { name: 'branch-e' }),
    call(app, 'POST', '/v1/sites', { name: 'branch-e' }),
  ]);
  assert.deepEqual([c.status, d.status].sort(), [201, 400]);
  const names = (await call(app, 'GET', '/v1/sites')).body.map((s: { name: string }) => s.name);
  assert.deepEqual(names.filter((n: string) => n.startsWith('branch-')), ['branch-c', 'branch-d', 'branch-e']);
  assert.deepEqual(store.load().sites.map((s) => s.name), names, 'the rows hold what the API answers');
  await app.close();
  store.close();
});
