import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assignIds, ConfigError, loadConfig, toGatewaySpec } from './index.js';
import { GatewayPolicy, NameSource } from '../gateway/policy.js';

const BASE = `
sites:
  - { name: branch-a, prefixes: [10.0.1.0/24] }
  - { name: branch-b, prefixes: [10.0.1.0/24] }
`;

function problems(yaml: string): string[] {
  try {
    loadConfig(BASE + yaml, 't.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  return [];
}

test('a gateway section compiles into a GatewayPolicy spec: names to ids, sources to a mask, defaults filled', () => {
  const cfg = loadConfig(`${BASE}
gateway:
  dlp_profiles:
    - { name: finance, cards: true, ibans: true }
  rules:
    - name: no-social-a
      action: block
      sites: branch-a
      hostnames: ["*.example-social.com", example-social.com]
    - name: intranet
      action: override
      sources: dns
      hostnames: intranet.example
      override: { addresses: [192.0.2.7, "2001:db8::7"] }
    - { name: scan-a, action: allow, sites: branch-a, destination_ports: 80, dlp: finance }
`, 't.yaml');
  assert.equal(cfg.gateway.classify.buffer_bytes, 16384);
  assert.equal(cfg.gateway.classify.wait_ms, 2000);
  assert.equal(cfg.gateway.dlp_profiles[0].action, 'block');
  const ids = assignIds(cfg);
  const spec = toGatewaySpec(cfg, ids);
  assert.deepEqual(spec.rules.map((r) => r.id), [1, 2, 3]);
  assert.deepEqual(spec.rules[0].sites, [ids.sites.get('branch-a')]);
  assert.equal(spec.rules[1].sources, NameSource.Dns);
  assert.deepEqual(spec.rules[1].override, { addresses: ['192.0.2.7', '2001:db8::7'], ttl: 60 });
  assert.deepEqual(spec.rules[2].dstPorts, [[80, 80]]);
  const policy = new GatewayPolicy(spec);
  assert.equal(policy.size, 3);
  assert.deepEqual(policy.dlpProfiles(2), [0]);
});

test('gateway problems name the key', () => {
  assert.deepEqual(problems(`
gateway:
  rules:
    - { action: block, hostnames: ["a..example", "*.ok.example"], sites: branch-c }
    - { action: override, hostnames: x.example, override: { nxdomain: true } }
    - { action: allow, override: { nxdomain: true }, dlp: nope }
    - { action: allow, protocols: icmp, destination_ports: 80 }
`).sort(), [
    'gateway.rules[0].hostnames[0]: "a..example": host name has an empty label',
    'gateway.rules[0].sites: no site named "branch-c" (sites: branch-a, branch-b)',
    'gateway.rules[1].sources: action override answers DNS queries: set sources: [dns]',
    'gateway.rules[2].dlp: no DLP profile named "nope" (DLP profiles: none)',
    'gateway.rules[2].override: is only for action override (this rule\'s action is allow)',
    'gateway.rules[3].destination_ports: ports apply to tcp and udp only; with other protocols listed this rule would never match them (split the rule)',
  ].sort());
  assert.deepEqual(problems(`
gateway:
  dlp_profiles:
    - { name: empty }
    - { name: bad-re, regexes: ["(a+)+$"] }
`).length, 2);
});
