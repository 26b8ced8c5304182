/**
 * The API cannot be turned against its host: token on reads, Host and Origin, rate limit, TLS, file paths
 * only from the YAML file, the token file's refusals and the modes of the files tether creates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { apiRig } from '../../test/support/api.js';
import { ConfigError, validateConfig, type ApiConfig } from '../config/index.js';
import { defaultConfig, LAB_WIREGUARD_KEYS } from '../lab/config.js';
import { buildApi, loadOrCreateToken } from './api.js';
import { hostAllowed, hostOf, RateLimiter } from './api-guard.js';
import { ConfigStore } from './store.js';
import { readTokenFile, TokenFileError } from './token.js';

const TOKEN = 'guard-test-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };

function tempDir(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tether-guard-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

function app(settings: Partial<ApiConfig> = {}, extra: { now?: () => number; store?: ConfigStore } = {}): { app: FastifyInstance; store: ConfigStore; close: () => Promise<void> } {
  const store = extra.store ?? ConfigStore.open(':memory:');
  if (store.isEmpty()) store.seedFrom(defaultConfig());
  const a = buildApi({ store, token: TOKEN, settings: { ...store.load().api, ...settings }, now: extra.now });
  return { app: a, store, close: async () => { await a.close(); store.close(); } };
}

async function status(a: FastifyInstance, o: InjectOptions): Promise<{ status: number; body: { error: string; problems: Array<{ path: string; message: string }> }; headers: Record<string, unknown> }> {
  const r = await a.inject(o);
  return { status: r.statusCode, body: r.body === '' ? undefined : JSON.parse(r.body), headers: r.headers };
}

test('reads need the token: GET and POST /v1/explain without it are 401; api.open_reads opens loopback reads only', async () => {
  const rig = apiRig({ token: TOKEN, metrics: true, prefix: 'tether-guard-' });
  try {
    for (const o of [{ method: 'GET', url: '/v1/onramps' }, { method: 'GET', url: '/v1/flows' }, { method: 'GET', url: '/v1/config' }, { method: 'GET', url: '/metrics' },
      { method: 'POST', url: '/v1/explain', payload: { onramp: 'site-a-wg', protocol: 'udp', src: '10.0.1.10', dst: '203.0.113.10' } }] as InjectOptions[]) {
      const r = await status(rig.app, o);
      assert.equal(r.status, 401, `${o.method} ${o.url}`);
      assert.equal(r.body.problems[0].path, 'Authorization');
      assert.match(r.body.error, /reads need the API token/);
      assert.equal((await rig.inject(o)).statusCode, 200, `${o.method} ${o.url} with the token`);
    }
    // The OpenAPI document holds no data: no token needed.
    assert.equal((await status(rig.app, { method: 'GET', url: '/openapi.json' })).status, 200);
  } finally {
    await rig.close();
  }
  const open = app({ open_reads: true });
  try {
    assert.equal((await status(open.app, { method: 'GET', url: '/v1/onramps' })).status, 200, 'loopback read, open_reads');
    assert.equal((await status(open.app, { method: 'GET', url: '/v1/onramps', remoteAddress: '::1' })).status, 200, 'IPv6 loopback');
    assert.equal((await status(open.app, { method: 'GET', url: '/v1/onramps', remoteAddress: '192.0.2.7' })).status, 401, 'not from another host');
    assert.equal((await status(open.app, { method: 'POST', url: '/v1/sites', payload: { name: 'x' } })).status, 401, 'writes still need it');
  } finally {
    await open.close();
  }
});

test('the Host header must name the listen address or localhost: a rebound name is answered 421, naming the header', async () => {
  const a = app();
  try {
    const r = await status(a.app, { method: 'GET', url: '/v1/onramps', headers: { ...AUTH, host: 'rebind.example' } });
    assert.equal(r.status, 421);
    assert.equal(r.body.problems[0].path, 'Host');
    assert.match(r.body.problems[0].message, /127\.0\.0\.1.*localhost.*rebind\.example/);
    assert.equal((await status(a.app, { method: 'GET', url: '/', headers: { host: 'rebind.example:8470' } })).status, 421, 'the dashboard page too');
    for (const host of ['127.0.0.1', '127.0.0.1:8470', 'localhost', 'LOCALHOST:8470', 'localhost.']) {
      assert.equal((await status(a.app, { method: 'GET', url: '/v1/onramps', headers: { ...AUTH, host } })).status, 200, host);
    }
    assert.equal((await status(a.app, { method: 'GET', url: '/v1/onramps', headers: { ...AUTH, host: '[::1]:8470' } })).status, 421, 'not the address it listens on');
  } finally {
    await a.close();
  }
  // Wildcard listen address: any IP literal (rebinding needs a name); names only from allowed_hosts.
  assert.equal(hostAllowed(hostOf('192.0.2.1:8470'), '0.0.0.0', []), true);
  assert.equal(hostAllowed(hostOf('[2001:db8::1]:8470'), '::', []), true);
  assert.equal(hostAllowed(hostOf('edge.example:8470'), '0.0.0.0', []), false);
  assert.equal(hostAllowed(hostOf('Edge.Example.:8470'), '0.0.0.0', ['edge.example']), true);
  assert.equal(hostAllowed(hostOf('[::1]'), '::1', []), true);
  assert.equal(hostAllowed(hostOf('0:0:0:0:0:0:0:1'), '::1', []), true);
});

test('a browser request from a foreign Origin is refused with 403; the API\'s own origin passes; no CORS headers', async () => {
  const a = app();
  try {
    const host = '127.0.0.1:8470';
    for (const origin of ['http://evil.example', 'null', 'https://127.0.0.1:8470', 'http://127.0.0.1:8471']) {
      const r = await status(a.app, { method: 'PATCH', url: '/v1/onramps/site-a-wg', payload: { automatic_return_routing: false }, headers: { ...AUTH, host, origin } });
      assert.equal(r.status, 403, origin);
      assert.equal(r.body.problems[0].path, 'Origin');
    }
    assert.equal((await status(a.app, { method: 'GET', url: '/v1/config', headers: { ...AUTH, host, origin: 'http://evil.example' } })).status, 403, 'reads too');
    assert.equal(a.store.load().onramps[0].automatic_return_routing, true, 'nothing changed');
    const ok = await status(a.app, { method: 'PATCH', url: '/v1/onramps/site-a-wg', payload: { automatic_return_routing: false }, headers: { ...AUTH, host, origin: `http://${host}` } });
    assert.equal(ok.status, 200);
    assert.ok(!Object.keys(ok.headers).some((h) => h.startsWith('access-control-')), 'no CORS headers');
  } finally {
    await a.close();
  }
});

test('rate limit: a token bucket per client address; 429 with Retry-After when empty; refilled with time', async () => {
  let now = 0;
  const a = app({ rate_limit: { requests_per_second: 2, burst: 3 } }, { now: () => now });
  try {
    const get = (remoteAddress = '127.0.0.1') => status(a.app, { method: 'GET', url: '/v1/sites', headers: AUTH, remoteAddress });
    for (let i = 0; i < 3; i++) assert.equal((await get()).status, 200);
    const limited = await get();
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['retry-after'], '1');
    assert.match(limited.body.problems[0].message, /api\.rate_limit/);
    assert.equal((await status(a.app, { method: 'GET', url: '/v1/sites', remoteAddress: '127.0.0.1' })).status, 429, 'before the token is even looked at');
    assert.equal((await get('192.0.2.9')).status, 200, 'another client has its own bucket');
    now += 500; // one token back at 2 per second
    assert.equal((await get()).status, 200);
    assert.equal((await get()).status, 429);
  } finally {
    await a.close();
  }
  const off = new RateLimiter(0, 1);
  for (let i = 0; i < 1000; i++) assert.equal(off.take('x', 0), 0, 'requests_per_second 0: no limit');
  const lim = new RateLimiter(10, 1);
  for (let i = 0; i < 5000; i++) lim.take(`client-${i}`, 0); // the table stays bounded: no error, still answers
  assert.equal(lim.take('client-4999', 0), 100);
});

test('file paths are set only in the YAML file: the API answers 400 naming the field (PUT /v1/config, resource routes)', async () => {
  const a = app();
  try {
    const put = (cfg: unknown) => status(a.app, { method: 'PUT', url: '/v1/config', payload: cfg as object, headers: AUTH });
    const whole = (await status(a.app, { method: 'GET', url: '/v1/config', headers: AUTH })).body as unknown as Record<string, Record<string, unknown>>;
    assert.equal((await put(whole)).status, 200, 'the same paths round-trip');
    for (const [section, key, value, field] of [
      ['api', 'token_file', '/etc/shadow', 'api.token_file'],
      ['store', 'path', '/tmp/elsewhere.db', 'store.path'],
      ['log', 'flow_log', '/root/.bashrc', 'log.flow_log'],
      ['api', 'tls', { cert_file: '/etc/shadow', key_file: '/etc/shadow' }, 'api.tls.cert_file'],
    ] as const) {
      const r = await put({ ...whole, [section]: { ...whole[section], [key]: value, ...(section === 'api' && key === 'tls' ? { insecure_http: false } : {}) } });
      assert.equal(r.status, 400, field);
      assert.ok(r.body.problems.some((p) => p.path === field && /only in the YAML file/.test(p.message)), `${field}: ${JSON.stringify(r.body)}`);
    }
    // Left out: the running value stays (an export without them, a hand-written file).
    const { api: _api, log: _log, store: _store, ...bare } = whole;
    assert.equal((await put(bare)).status, 200);
    assert.equal(a.store.load().api.token_file, whole.api.token_file);
    assert.equal((await put({ ...bare, log: { flow_log: 'stdout' } })).status, 200, "'stdout' is not a file");

    // Key files on resources: new ones refused, with the path relative to the body.
    const psk = await status(a.app, { method: 'POST', url: '/v1/onramps', headers: AUTH, payload: {
      name: 'c-wg', type: 'wireguard', automatic_return_routing: true,
      wireguard: { device: 'wg-a', public_key: LAB_WIREGUARD_KEYS.siteBPublic, preshared_key_file: '/root/.ssh/id_ed25519', allowed_ips: '10.4.0.0/24' },
    } });
    assert.equal(psk.status, 400);
    assert.equal(psk.body.problems[0].path, 'wireguard.preshared_key_file');
    const dev = await status(a.app, { method: 'PATCH', url: '/v1/wireguard/devices/wg-a', headers: AUTH, payload: { private_key: null, private_key_file: '/etc/ssl/private/key.pem' } });
    assert.equal(dev.status, 400);
    assert.equal(dev.body.problems[0].path, 'private_key_file');
    const newDev = await status(a.app, { method: 'POST', url: '/v1/wireguard/devices', headers: AUTH, payload: { name: 'wg-c', listen_port: 51999, private_key_file: '/etc/shadow' } });
    assert.equal(newDev.status, 400);
    assert.equal(newDev.body.problems[0].path, 'private_key_file');
    assert.equal(a.store.load().wireguard_devices.length, 2, 'nothing stored');
  } finally {
    await a.close();
  }
  // A key file the YAML gave is kept by a PUT that sends it back unchanged.
  const withFile = ConfigStore.open(':memory:');
  const cfg = defaultConfig();
  delete cfg.wireguard_devices[0].private_key;
  cfg.wireguard_devices[0].private_key_file = '/etc/tether/wg-a.key';
  withFile.seedFrom(cfg);
  const b = app({}, { store: withFile });
  try {
    const d = (await status(b.app, { method: 'GET', url: '/v1/wireguard/devices/wg-a', headers: AUTH })).body as unknown as Record<string, unknown>;
    assert.equal((await status(b.app, { method: 'PUT', url: '/v1/wireguard/devices/wg-a', headers: AUTH, payload: { ...d, listen_port: 51830 } })).status, 200);
    const moved = await status(b.app, { method: 'PUT', url: '/v1/wireguard/devices/wg-a', headers: AUTH, payload: { ...d, private_key_file: '/tmp/other.key' } });
    assert.equal(moved.status, 400);
    assert.match(moved.body.problems[0].message, /running value: "\/etc\/tether\/wg-a\.key"/);
  } finally {
    await b.close();
  }
});

test('the token file: never through a symbolic link, never one others can read or another user owns; created 0600', () => {
  const t = tempDir();
  try {
    const real = join(t.dir, 'real-token');
    writeFileSync(real, 'chosen-by-someone-else\n', { mode: 0o600 });
    const link = join(t.dir, 'api-token');
    symlinkSync(real, link);
    assert.throws(() => loadOrCreateToken(link), (e: Error) => e instanceof TokenFileError && /symbolic link/.test(e.message));
    assert.throws(() => readTokenFile(link), /symbolic link/, 'the CLI refuses it too');
    const dangling = join(t.dir, 'dangling');
    symlinkSync(join(t.dir, 'nowhere'), dangling);
    assert.throws(() => loadOrCreateToken(dangling), /symbolic link/, 'a dangling link is not followed to create a file');
    assert.equal(existsSync(join(t.dir, 'nowhere')), false);

    const loose = join(t.dir, 'loose');
    writeFileSync(loose, 'tok\n');
    chmodSync(loose, 0o644);
    assert.throws(() => loadOrCreateToken(loose), /mode 0644: others may have read it/);
    assert.equal(statSync(loose).mode & 0o777, 0o644, 'refused, not chmod-ed');
    if (process.getuid?.() === 0) {
      const foreign = join(t.dir, 'foreign');
      writeFileSync(foreign, 'tok\n', { mode: 0o600 });
      chownSync(foreign, 65534, 65534);
      assert.throws(() => loadOrCreateToken(foreign), /belongs to uid 65534/);
    }
    const fresh = join(t.dir, 'new', 'api-token');
    const token = loadOrCreateToken(fresh);
    assert.equal(statSync(fresh).mode & 0o777, 0o600);
    assert.equal(readTokenFile(fresh), token);
    assert.equal(loadOrCreateToken(fresh), token);
  } finally {
    t.done();
  }
});

test('the store database and its WAL and SHM files are 0600', () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'state', 'tether.db');
    const store = ConfigStore.open(path);
    store.seedFrom(defaultConfig());
    store.update((doc) => { doc.settings.default_action = 'deny'; });
    for (const f of [path, `${path}-wal`, `${path}-shm`]) {
      assert.ok(existsSync(f), f);
      assert.equal(statSync(f).mode & 0o777, 0o600, f);
    }
    assert.equal(statSync(join(t.dir, 'state')).mode & 0o777, 0o700);
    store.close();
  } finally {
    t.done();
  }
});

test('listening beyond loopback needs api.tls or api.insecure_http: true', () => {
  const base = defaultConfig();
  assert.throws(() => validateConfig({ ...base, api: { listen: '0.0.0.0' } }), (e: Error) => e instanceof ConfigError && e.problems.some((p) => p.path === 'api.listen' && /api\.tls/.test(p.message)));
  assert.throws(() => validateConfig({ ...base, api: { listen: '192.0.2.1' } }), ConfigError);
  assert.equal(validateConfig({ ...base, api: { listen: '0.0.0.0', insecure_http: true } }).api.insecure_http, true);
  assert.equal(validateConfig({ ...base, api: { listen: '::', tls: { cert_file: '/c', key_file: '/k' } } }).api.tls?.cert_file, '/c');
  for (const listen of ['127.0.0.1', '127.1.2.3', '::1']) assert.equal(validateConfig({ ...base, api: { listen } }).api.listen, listen);
});

test('TLS: with api.tls the API answers over https (a self-signed certificate made with openssl req)', async () => {
  const t = tempDir();
  const store = ConfigStore.open(':memory:');
  store.seedFrom(defaultConfig());
  try {
    const key = join(t.dir, 'key.pem');
    const cert = join(t.dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const a = buildApi({ store, token: TOKEN, https: { key: readFileSync(key), cert: readFileSync(cert) } });
    await a.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = (a.server.address() as { port: number }).port;
      const get = (headers: Record<string, string>): Promise<{ status: number; body: string }> => new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/v1/onramps', ca: readFileSync(cert), headers }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => { body += c.toString(); });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
      const r = await get(AUTH);
      assert.equal(r.status, 200);
      assert.equal((JSON.parse(r.body) as unknown[]).length, 4);
      assert.equal((await get({})).status, 401);
      const origin = await get({ ...AUTH, origin: `http://127.0.0.1:${port}` });
      assert.equal(origin.status, 403, 'the API\'s own origin is https now');
    } finally {
      await a.close();
    }
  } finally {
    store.close();
    t.done();
  }
});
