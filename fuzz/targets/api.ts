/**
 * control/api: request bodies through Fastify's inject into the real API (test/support/api.ts's rig: the lab's
 * configuration, a SQLite store in a temporary directory, live apply to an in-process pipeline). Requests are
 * PUT /v1/config, POST/PUT/PATCH/DELETE of onramps, sites, routes and firewall rules, PUT /v1/egress and
 * /v1/firewall, POST /v1/explain; bodies are mutated real ones: a JSON value replaced, removed, duplicated or
 * given an unknown key (structure-aware), or the text's bytes mutated. Every 500 inputs the configuration is
 * put back, so the run does not drift into an empty one.
 *
 * Input framing: "METHOD URL\n" then the body text (so a saved input replays alone).
 *
 * Checks: never a 5xx and never a crash; every answer is JSON; a 4xx carries { error, problems[] }, and a 400
 * for a body that was well-formed JSON names at least one field (problems[].path).
 */
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../src/config/index.js';
import { apiRig, type ApiRig } from '../../test/support/api.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { mutateBytes, mutateJson, type Json } from '../mutate.js';
import type { Rng } from '../rng.js';

const TOKEN = 'fuzz-token';
const RESET_EVERY = 500;
const MS_PER_REQUEST = 1000;
const MAX_BODY = 64 * 1024;
const NEWLINE = 0x0a;
const SERVER_ERROR = 500;
const BAD_REQUEST = 400;
const CLIENT_ERROR = 400;

interface Request {
  method: string;
  url: string;
  body: unknown;
}

function encode(method: string, url: string, body: string): Uint8Array {
  return new TextEncoder().encode(`${method} ${url}\n${body}`);
}

export async function apiTarget(): Promise<FuzzTarget> {
  // The rate limiter's clock moves a second per request: the fuzzer is one client sending as fast as it can, and
  // a 429 for most inputs would test the limiter instead of the routes (api-guard's own tests cover it).
  let clockMs = 0;
  const rig: ApiRig = apiRig({ token: TOKEN, prefix: 'tether-fuzz-', now: () => (clockMs += MS_PER_REQUEST) });
  await rig.app.ready();
  const original = JSON.stringify(rig.cfg);
  const example = loadConfig(readFileSync('docs/examples/tether.yaml', 'utf8'), 'tether.yaml');
  const cfg = rig.cfg;
  const seeds: Request[] = [
    { method: 'PUT', url: '/v1/config', body: cfg },
    { method: 'PUT', url: '/v1/config', body: example },
    { method: 'POST', url: '/v1/onramps', body: { ...cfg.onramps[2], name: 'fuzz-gre', gre: { local: '192.168.103.1', remote: '192.168.103.9' } } },
    { method: 'POST', url: '/v1/onramps', body: example.onramps[0] },
    { method: 'PUT', url: `/v1/onramps/${cfg.onramps[0].name}`, body: cfg.onramps[0] },
    { method: 'PATCH', url: `/v1/onramps/${cfg.onramps[2].name}`, body: { gre: { mtu: 1400 }, automatic_return_routing: false } },
    { method: 'DELETE', url: `/v1/onramps/${cfg.onramps[2].name}`, body: undefined },
    { method: 'POST', url: '/v1/sites', body: { name: 'fuzz-site', prefixes: ['10.77.0.0/16'] } },
    { method: 'POST', url: '/v1/routes', body: { prefix: '10.50.0.0/16', next_hop: { onramp: 'dc-link' } } },
    { method: 'PUT', url: '/v1/routes/1', body: cfg.routes[0] },
    { method: 'POST', url: '/v1/firewall/rules', body: example.firewall.rules[0] },
    { method: 'POST', url: '/v1/wireguard/devices', body: { ...cfg.wireguard_devices[0], name: 'wg-fuzz', listen_port: 51999 } },
    { method: 'PUT', url: '/v1/egress', body: cfg.egress },
    { method: 'PUT', url: '/v1/firewall', body: { default_action: 'deny' } },
    { method: 'POST', url: '/v1/explain', body: { onramp: 'site-a-wg', protocol: 'tcp', src: '10.0.1.10', dst: '203.0.113.10', src_port: 40000, dst_port: 443 } },
  ];
  let n = 0;
  return {
    name: 'control/api',
    generate(rng: Rng): Uint8Array {
      const seed = rng.pick(seeds);
      if (seed.body === undefined) return encode(seed.method, seed.url, '');
      const text = JSON.stringify(seed.body);
      const r = rng.int(10);
      if (r === 0) return encode(seed.method, seed.url, text);
      if (r === 1) {
        const bytes = mutateBytes(rng, new TextEncoder().encode(text), null, MAX_BODY);
        return encode(seed.method, seed.url, new TextDecoder().decode(bytes));
      }
      return encode(seed.method, seed.url, JSON.stringify(mutateJson(rng, seed.body as Json)) ?? 'null');
    },
    async run(input: Uint8Array): Promise<string> {
      if (++n % RESET_EVERY === 0) {
        const reset = await rig.app.inject({ method: 'PUT', url: '/v1/config', payload: original, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
        if (reset.statusCode !== 200) throw new FuzzFailure(`putting the original configuration back answered ${reset.statusCode}: ${reset.body}`);
      }
      const nl = input.indexOf(NEWLINE);
      const head = new TextDecoder().decode(nl < 0 ? input : input.subarray(0, nl));
      const body = nl < 0 ? '' : new TextDecoder().decode(input.subarray(nl + 1));
      const [method, url] = head.split(' ');
      const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
      if (body !== '') headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
      const res = await rig.app.inject({ method: method as 'GET', url: url ?? '/', payload: body === '' ? undefined : body, headers });
      const status = res.statusCode;
      if (status >= SERVER_ERROR) throw new FuzzFailure(`${method} ${url} answered ${status}: ${res.body.slice(0, 300)}`);
      let answer: unknown = null;
      if (res.body !== '') {
        try {
          answer = JSON.parse(res.body);
        } catch {
          throw new FuzzFailure(`${method} ${url} answered ${status} with a body that is not JSON: ${res.body.slice(0, 200)}`);
        }
      }
      if (status >= CLIENT_ERROR) {
        const a = answer as { error?: unknown; problems?: unknown } | null;
        if (a === null || typeof a.error !== 'string' || !Array.isArray(a.problems)) throw new FuzzFailure(`${method} ${url} answered ${status} without { error, problems }: ${res.body.slice(0, 300)}`);
        let wellFormed = true;
        try {
          JSON.parse(body);
        } catch {
          wellFormed = false;
        }
        // A "__proto__" or constructor.prototype key is refused by the body parser (src/control/json-body.ts),
        // naming where it is, like every other 400: no exception here.
        const named = a.problems.some((p: unknown) => typeof (p as { path?: unknown }).path === 'string');
        if (status === BAD_REQUEST && wellFormed && !named) throw new FuzzFailure(`${method} ${url} answered 400 naming no field: ${res.body.slice(0, 300)}`);
      }
      return `${method} ${status}`;
    },
    close: () => rig.close(),
  };
}
