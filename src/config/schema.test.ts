import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { ONRAMP_TYPES } from '../dataplane/ports.js';
import { defaultConfig } from '../lab/config.js';
import {
  ANNOTATION_KEYS,
  inputSchema,
  loadConfig,
  NAME_PATTERN,
  OnrampSchema,
  SiteSchema,
  stringifyConfig,
  TetherConfigSchema,
  validateConfig,
  type TetherConfig,
} from './index.js';

type Json = Record<string, unknown>;
const EXAMPLE = readFileSync(new URL('../../docs/examples/tether.yaml', import.meta.url), 'utf8');

/** Every key of a JSON value, at any depth. */
function keysOf(v: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(v)) for (const x of v) keysOf(x, out);
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) { out.add(k); keysOf(x, out); }
  return out;
}

test('the input schema: defaults and context make keys optional, one value stands for a list, no loader annotations', () => {
  const onramp = inputSchema(OnrampSchema) as unknown as Json;
  assert.deepEqual(onramp.required, ['name', 'type', 'automatic_return_routing']);
  const props = onramp.properties as Record<string, Json>;
  assert.deepEqual((props.type.anyOf as Json[]).map((k) => k.const), [...ONRAMP_TYPES], 'every kind of the data plane, ipsec included');
  assert.deepEqual(Object.keys(props), ['name', 'id', 'description', 'type', 'site', 'automatic_return_routing', 'preference', 'max_flows', 'health_check', 'allowed_sources', 'icmp_source', 'wireguard', 'gre', 'interconnect', 'ipsec']);
  assert.deepEqual((props.wireguard.required as string[]), ['public_key', 'allowed_ips'], 'device is filled in from context');
  assert.equal((props.name as Json).pattern, NAME_PATTERN);
  const site = inputSchema(SiteSchema) as unknown as Json;
  assert.deepEqual(site.required, ['name']);
  assert.equal(((site.properties as Record<string, Json>).prefixes.anyOf as Json[]).length, 2, 'a prefix or a list of prefixes');
  const all = keysOf(inputSchema(TetherConfigSchema));
  for (const k of [...ANNOTATION_KEYS, 'default']) assert.ok(!all.has(k), `no "${k}" left for the API's validator`);
});

test('validateConfig fills every default of the schema', () => {
  const cfg = validateConfig({});
  assert.equal(cfg.version, 1);
  assert.deepEqual(cfg.log, { level: 'info', flow_log: 'off' });
  assert.deepEqual(cfg.firewall, { default_action: 'allow', rules: [] });
  assert.equal(cfg.flows.timeouts.tcp_established, 7440);
  assert.equal(cfg.egress, undefined);
  assert.deepEqual([cfg.sites, cfg.onramps, cfg.routes, cfg.wireguard_devices], [[], [], [], []]);
});

/** A valid configuration with some optional keys left out: the loader must give back the same normalised object. */
const trimmedConfig = fc.record({
  base: fc.constantFrom<() => TetherConfig>(defaultConfig, () => loadConfig(EXAMPLE, 'tether.yaml')),
  drop: fc.uniqueArray(fc.constantFrom('log', 'api', 'store', 'flows', 'firewall', 'preference', 'max_flows', 'mtu', 'keepalive', 'priority', 'weight', 'prefixes', 'listen_address'), { maxLength: 8 }),
  single: fc.boolean(),
});

test('property: normalising is idempotent and leaving out a defaulted key changes nothing', () => {
  fc.assert(fc.property(trimmedConfig, ({ base, drop, single }) => {
    const full = base();
    const plain = structuredClone(full) as unknown as Json & TetherConfig;
    const defaults = validateConfig({ onramps: [], routes: [] });
    for (const key of drop) {
      if (key === 'log' || key === 'api' || key === 'store' || key === 'flows' || key === 'firewall') {
        if (JSON.stringify(plain[key]) === JSON.stringify(defaults[key])) delete plain[key];
      }
      for (const o of plain.onramps as unknown as Json[]) {
        if (key === 'preference' && o.preference === 100) delete o.preference;
        if (key === 'max_flows' && o.max_flows === 0) delete o.max_flows;
        const gre = o.gre as Json | undefined;
        if (key === 'mtu' && gre?.mtu === 1476) delete gre.mtu;
        const wg = o.wireguard as Json | undefined;
        if (key === 'keepalive' && wg?.persistent_keepalive === 0) delete wg.persistent_keepalive;
        if (key === 'mtu' && wg?.mtu === 1420) delete wg.mtu;
        if (single && wg !== undefined && (wg.allowed_ips as string[]).length === 1) wg.allowed_ips = (wg.allowed_ips as string[])[0];
      }
      for (const r of plain.routes as unknown as Json[]) {
        if (key === 'priority' && r.priority === 100) delete r.priority;
        if (key === 'weight' && r.weight === 1) delete r.weight;
      }
      for (const s of plain.sites as unknown as Json[]) if (key === 'prefixes' && (s.prefixes as string[]).length === 0) delete s.prefixes;
      for (const d of plain.wireguard_devices as unknown as Json[]) if (key === 'listen_address' && d.listen_address === '0.0.0.0') delete d.listen_address;
    }
    assert.deepEqual(validateConfig(plain), full);
    assert.deepEqual(validateConfig(full), full);
    assert.deepEqual(loadConfig(stringifyConfig(full), 'export.yaml'), full);
  }), { numRuns: 100 });
});
