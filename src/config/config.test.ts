import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  assignIds,
  ConfigError,
  loadConfig,
  redact,
  REDACTED,
  stringifyConfig,
  toPipelineConfig,
  validateConfig,
  type ConfigProblem,
  type TetherConfig,
} from './index.js';
import { defaultConfig, LAB_WIREGUARD_KEYS } from '../lab/config.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { NextHopKind } from '../route/route-table.js';
import { Drop } from '../common/drop-reasons.js';
import { buildUdp } from '../wire/build.js';

const EXAMPLE_PATH = new URL('../../docs/examples/tether.yaml', import.meta.url);
const CONFIG_DOC_PATH = new URL('../../docs/CONFIG.md', import.meta.url);
const EXAMPLE = readFileSync(EXAMPLE_PATH, 'utf8');

/** The problems of a YAML text that must not load. */
function problemsOf(text: string): ConfigProblem[] {
  try {
    loadConfig(text, 'test.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return [...e.problems];
  }
  assert.fail('expected the configuration to be rejected');
}

/** Problems as "line:column path: message" for compact exact assertions. */
function brief(text: string): string[] {
  return problemsOf(text).map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
}

/** A minimal valid onramp block (GRE) for snippets. */
const GRE_ONRAMP = `  - name: t1
    type: gre
    automatic_return_routing: true
    gre: { local: 192.168.103.1, remote: 192.168.103.2 }
`;

test('the default config validates, maps to the data plane, and builds a pipeline', () => {
  const cfg = defaultConfig();
  assert.deepEqual(validateConfig(cfg), cfg);
  const pc = toPipelineConfig(cfg);
  assert.deepEqual(pc.onramps.map((o) => [o.id, o.name, o.type, o.site, o.automaticReturnRouting]), [
    [1, 'site-a-wg', 'wireguard', 1, true],
    [2, 'site-b-wg', 'wireguard', 2, true],
    [3, 'site-gre-tunnel', 'gre', 3, true],
    [4, 'dc-link', 'interconnect', 4, true],
  ]);
  assert.deepEqual(pc.routes.map((r) => [r.prefix, r.kind, r.port, r.siteScope]), [
    ['0.0.0.0/0', NextHopKind.Internet, undefined, 0],
    ['172.16.0.0/24', NextHopKind.Onramp, 4, 0],
  ]);
  assert.deepEqual(pc.egress, { addresses: ['198.51.100.1'], portMin: 1024, portMax: 65535 });
  assert.equal(pc.flows?.timeouts?.tcpEstablished, 7440 * 1000);
  const pipeline = new Pipeline(pc);
  assert.equal(pipeline.ports.list().length, 4);
});

test('the complete example loads, maps with deterministic ids, and builds a pipeline', () => {
  const cfg = loadConfig(EXAMPLE, 'tether.yaml');
  assert.equal(cfg.onramps.length, 6);
  const ids = assignIds(cfg);
  // branch-a pinned to 1; branch-b and dc get the lowest free ids; the site-less partner gets one of its own.
  assert.deepEqual([...ids.sites], [['branch-a', 1], ['branch-b', 2], ['dc', 3]]);
  assert.deepEqual([...ids.onramps], [['branch-a-wg', 1], ['branch-a-gre', 2], ['branch-b-wg', 3], ['dc-link', 4], ['partner', 50], ['branch-b-ipsec', 5]]);
  assert.equal(ids.onrampSite.get('partner'), 4);
  assert.deepEqual(ids.firewallRules, [1, 2, 3, 900, 4, 5]);
  const pc = toPipelineConfig(cfg, ids);
  const rules = pc.firewall!.rules;
  assert.deepEqual(rules[0], { id: 1, action: 'deny', protocols: [6], dstPorts: [[25, 25], [465, 465], [587, 587]] });
  assert.deepEqual(rules[3], { id: 900, action: 'deny', onramps: [50], dstPrefixes: ['172.16.0.0/24'] });
  assert.deepEqual(rules[4].sites, [1, 2]);
  assert.deepEqual(rules[4].protocols, [1, 58]);
  assert.deepEqual(rules[5].srcPorts, [[1024, 65535]]);
  assert.deepEqual(pc.routes[2], { prefix: '192.168.200.0/24', kind: NextHopKind.Onramp, port: 50, priority: 100, weight: 1, siteScope: 1 });
  assert.equal(pc.flows?.capacity4, 1_000_000);
  assert.equal(pc.flows?.timeouts?.udpUnreplied, 120_000);
  assert.equal(pc.flows?.timeouts?.tcpTimeWait, 120_000, 'unset timeouts keep their defaults');
  const pipeline = new Pipeline(pc);
  assert.equal(pipeline.ports.site[50], 4);
  assert.equal(pipeline.ports.zone[50], 0, 'ARR off: global zone');
});

test('docs/CONFIG.md shows the complete example verbatim', () => {
  const doc = readFileSync(CONFIG_DOC_PATH, 'utf8');
  assert.ok(doc.includes(EXAMPLE.trimEnd()), 'docs/CONFIG.md must contain docs/examples/tether.yaml');
});

test('stringifyConfig round-trips through loadConfig', () => {
  for (const cfg of [defaultConfig(), loadConfig(EXAMPLE, 'tether.yaml')]) {
    assert.deepEqual(loadConfig(stringifyConfig(cfg), 'export.yaml'), cfg);
  }
});

test('defaults are filled in; ids are left to assignIds', () => {
  const cfg = loadConfig(`onramps:\n${GRE_ONRAMP}`, 'min.yaml');
  assert.deepEqual(cfg.api, { listen: '127.0.0.1', port: 8470, token_file: '/var/lib/tether/api-token', open_reads: false, allowed_hosts: [], insecure_http: false, rate_limit: { requests_per_second: 50, burst: 200 } });
  assert.equal(cfg.log.level, 'info');
  assert.equal(cfg.egress, undefined);
  assert.deepEqual(cfg.onramps[0], {
    // max_flows absent: the onramp's fair share of the flow table (issue 11: quotas on by default).
    name: 't1', type: 'gre', automatic_return_routing: true, preference: 100,
    gre: { local: '192.168.103.1', remote: '192.168.103.2', mtu: 1476 },
  });
  assert.equal(cfg.firewall.default_action, 'allow');
  assert.equal(cfg.flows.timeouts.udp_established, 300);
  // Null means "not given".
  const nulls = loadConfig(`log:\nfirewall:\n  rules:\nonramps:\n${GRE_ONRAMP}`, 'nulls.yaml');
  assert.deepEqual(nulls.firewall, { default_action: 'allow', rules: [] });
});

test('a wrong type names the key path, line and column, and quotes the value', () => {
  const text = `onramps:
  - name: t1
    type: gre
    automatic_return_routing: yes
    gre: { local: 192.168.103.1, remote: 192.168.103.2 }
`;
  assert.deepEqual(brief(text), ['4:31 onramps[0].automatic_return_routing: must be true or false, got "yes"']);
  try {
    loadConfig(text, 'edge.yaml');
  } catch (e) {
    assert.equal((e as Error).message, 'edge.yaml:4:31: onramps[0].automatic_return_routing: must be true or false, got "yes"');
  }
});

test('unknown keys are errors, with a suggestion for near misses', () => {
  assert.deepEqual(brief(`api:\n  listn: 127.0.0.1\n`), ['2:3 api.listn: unknown key "listn"; did you mean "listen"?']);
  assert.deepEqual(brief(`colour: blue\n`), [
    '1:1 colour: unknown key "colour"; expected one of: version, log, api, store, sites, wireguard_devices, onramps, routes, egress, firewall, gateway, flows, daemon',
  ]);
  assert.deepEqual(brief(`onramps:\n${GRE_ONRAMP}    preferense: 5\n`), ['6:5 onramps[0].preferense: unknown key "preferense"; did you mean "preference"?']);
  assert.deepEqual(brief(`onramps:\n${GRE_ONRAMP.replace('remote: 192.168.103.2', 'remote: 192.168.103.2, kye: 7')}`), [
    '5:57 onramps[0].gre.kye: unknown key "kye"; did you mean "key"?',
  ]);
});

test('a missing required key points at the mapping that lacks it', () => {
  assert.deepEqual(brief(`onramps:\n  - name: t1\n    type: gre\n    gre: { local: 192.168.103.1, remote: 192.168.103.2 }\n`), [
    '2:5 onramps[0].automatic_return_routing: is required: true or false',
  ]);
  // A key written without a value points at that key's line.
  assert.deepEqual(brief(`onramps:\n  - name: t1\n    type: gre\n    automatic_return_routing:\n    gre: { local: 192.168.103.1 }\n`), [
    '4:30 onramps[0].automatic_return_routing: is required: true or false',
    '5:10 onramps[0].gre.remote: is required: an IPv4 or IPv6 address',
  ]);
});

test('bad prefixes and addresses', () => {
  const text = `sites:
  - name: s
    prefixes: [10.0.1.0/33, 10.0.1.7/24, fd00::/64]
onramps:
  - name: t1
    type: gre
    automatic_return_routing: true
    gre: { local: 192.168.103.256, remote: "2001:db8::1" }
routes:
  - prefix: banana
    next_hop: internet
egress:
  addresses: [198.51.100.1, 198.51.100.01]
`;
  assert.deepEqual(brief(text), [
    '3:16 sites[0].prefixes[0]: must be a prefix like 10.0.1.0/24 or 2001:db8::/32, got "10.0.1.0/33"',
    '3:29 sites[0].prefixes[1]: has host bits set: 10.0.1.7/24; did you mean 10.0.1.0/24?',
    '8:19 onramps[0].gre.local: must be an IPv4 or IPv6 address, got "192.168.103.256"',
    '10:13 routes[0].prefix: must be a prefix like 10.0.1.0/24 or 2001:db8::/32, got "banana"',
    '13:29 egress.addresses[1]: must be an IPv4 or IPv6 address, got "198.51.100.01"',
  ]);
  assert.deepEqual(brief(`onramps:\n${GRE_ONRAMP.replace('remote: 192.168.103.2', 'remote: "2001:db8::2"')}`), [
    '5:42 onramps[0].gre.remote: must be of the same address family as local (192.168.103.1), got "2001:db8::2"',
  ]);
});

test('numbers out of range and wrong choices', () => {
  const text = `api:
  port: 70000
log:
  level: loud
flows:
  ipv4_capacity: -1
  timeouts:
    icmp: 0.5
onramps:
  - name: t1
    type: gre
    automatic_return_routing: true
    preference: "high"
    gre: { local: 192.168.103.1, remote: 192.168.103.2, mtu: 100 }
`;
  assert.deepEqual(brief(text), [
    '2:9 api.port: must be an integer 1..65535, got 70000',
    '4:10 log.level: must be one of trace, debug, info, warn, error, fatal, silent, got "loud"',
    '6:18 flows.ipv4_capacity: must be an integer 1..536870912 (flows), got -1',
    '8:11 flows.timeouts.icmp: must be an integer 1..2592000 (seconds), got 0.5',
    '13:17 onramps[0].preference: must be an integer 0..65535, got "high"',
    '14:62 onramps[0].gre.mtu: must be an integer 576..65535 (bytes), got 100',
  ]);
});

test('duplicate names and ids', () => {
  const text = `sites:
  - name: s
    id: 7
  - name: s
  - name: u
    id: 7
onramps:
${GRE_ONRAMP}${GRE_ONRAMP.replace('192.168.103.2', '192.168.103.3')}`;
  assert.deepEqual(brief(text), [
    '4:11 sites[1].name: duplicate site name "s" (already used at sites[0].name)',
    '6:9 sites[2].id: duplicate site id "7" (already used at sites[0].id)',
    '12:11 onramps[1].name: duplicate onramp name "t1" (already used at onramps[0].name)',
  ]);
  // The same GRE tunnel twice is ambiguous on the wire.
  assert.deepEqual(brief(`onramps:\n${GRE_ONRAMP}${GRE_ONRAMP.replace('t1', 't2')}`), [
    '9:42 onramps[1].gre.remote: duplicate GRE tunnel "192.168.103.1/32 → 192.168.103.2/32 key none" (already used at onramps[0].gre.remote)',
  ]);
  // A duplicate YAML key is a syntax problem with its own line.
  assert.deepEqual(brief(`api:\n  port: 1\n  port: 2\n`), ['3:3 : YAML syntax: Map keys must be unique']);
});

test('dangling references', () => {
  const text = `sites:
  - name: s
onramps:
  - name: t1
    type: gre
    site: nowhere
    automatic_return_routing: true
    gre: { local: 192.168.103.1, remote: 192.168.103.2 }
routes:
  - prefix: 10.0.0.0/8
    next_hop: { onramp: t9 }
    site: elsewhere
firewall:
  rules:
    - action: deny
      sites: [s, ghost]
      onramps: t0
`;
  assert.deepEqual(brief(text), [
    '6:11 onramps[0].site: no site named "nowhere" (sites: s); leave site out for an onramp that is a site of its own',
    '11:25 routes[0].next_hop.onramp: no onramp named "t9" (onramps: t1)',
    '12:11 routes[0].site: no site named "elsewhere" (sites: s)',
    '16:18 firewall.rules[0].sites[1]: no site named "ghost" (sites: s)',
    '17:16 firewall.rules[0].onramps: no onramp named "t0" (onramps: t1)',
  ]);
});

test('an onramp with a problem is still a known name for references', () => {
  const text = `onramps:\n  - name: t1\n    type: gre\n    automatic_return_routing: 1\n    gre: { local: 192.168.103.1, remote: 192.168.103.2 }\nroutes:\n  - prefix: 10.0.0.0/8\n    next_hop: { onramp: t1 }\n`;
  assert.deepEqual(brief(text), ['4:31 onramps[0].automatic_return_routing: must be true or false, got 1']);
});

test('YAML syntax errors carry their line', () => {
  const unclosed = brief(`api:\n  port: 1\n  listen: [127.0.0.1\nstore:\n  path: x\n`);
  assert.equal(unclosed[0].split(' ')[0], '4:1', unclosed.join('\n'));
  assert.ok(unclosed[0].includes('YAML syntax: '));
  const problems = problemsOf(`onramps:\n  - name: "unterminated\n`);
  assert.ok(problems.length >= 1);
  assert.ok(problems.every((p) => p.line >= 2 && p.message.startsWith('YAML syntax: ')), JSON.stringify(problems));
  assert.deepEqual(brief(`a: 1\n---\nb: 2\n`).map((l) => l.split(' ')[0]), ['2:1']);
});

test('an empty file (or only comments) is an error', () => {
  for (const text of ['', '\n\n', '# nothing here\n', '~\n']) {
    assert.deepEqual(brief(text), ['1:1 : the file is empty; expected a mapping with sites, onramps, routes, …']);
  }
  assert.deepEqual(brief('just text\n'), ['1:1 : must be a mapping (key: value lines), got "just text"']);
  assert.deepEqual(brief('- a\n- b\n'), ['1:1 : must be a mapping (key: value lines), got a list']);
});

test('every problem is reported together, one per line, in file order', () => {
  const text = `log:
  level: loud
onramps:
  - name: "bad name"
    type: ipsec
    automatic_return_routing: true
  - name: t2
    type: wireguard
    automatic_return_routing: false
    wireguard: { public_key: abc }
routes:
  - prefix: 0.0.0.0/0
    next_hop: internet
`;
  let message = '';
  try {
    loadConfig(text, 'many.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    message = e.message;
  }
  assert.deepEqual(message.split('\n'), [
    'many.yaml:2:10: log.level: must be one of trace, debug, info, warn, error, fatal, silent, got "loud"',
    'many.yaml:4:5: onramps[0].ipsec: is required: the IPsec settings (local_address, psk, …)',
    `many.yaml:4:11: onramps[0].name: must be a name of letters, digits, '-', '_' or '.' (up to 63, starting with a letter or digit), got "bad name"`,
    'many.yaml:10:16: onramps[1].wireguard.device: no wireguard_devices are configured: add one (listen_port, private_key)',
    'many.yaml:10:16: onramps[1].wireguard.allowed_ips: is required: a list of prefixes',
    'many.yaml:10:30: onramps[1].wireguard.public_key: must be a WireGuard key in base64 (44 characters, as printed by wg genkey / wg pubkey) (got 3 characters)',
    'many.yaml:13:15: routes[0].next_hop: leads to the Internet, but no egress pool is configured (egress.addresses)',
  ]);
});

test('WireGuard: device and key rules; secrets never echoed', () => {
  const k = LAB_WIREGUARD_KEYS;
  const secret = `${k.edgeAPrivate.slice(0, 40)}xy=`; // one character short
  const text = `wireguard_devices:
  - name: wg0
    listen_port: 51820
    private_key: ${k.edgeAPrivate}
    private_key_file: /etc/k
  - name: wg1
    listen_port: 51820
    private_key: "${secret}"
onramps:
  - name: a
    type: wireguard
    automatic_return_routing: true
    wireguard: { public_key: ${k.siteAPublic}, allowed_ips: 10.0.1.0/24, endpoint: "host.example:51820" }
  - name: b
    type: wireguard
    automatic_return_routing: true
    wireguard: { device: wg0, public_key: ${k.siteBPublic}, allowed_ips: [10.0.1.0/24] }
    gre: { local: 1.1.1.1, remote: 1.1.1.2 }
`;
  const lines = brief(text);
  assert.deepEqual(lines, [
    '4:18 wireguard_devices[0].private_key: give private_key or private_key_file, not both',
    '7:18 wireguard_devices[1].listen_port: 0.0.0.0:51820 clashes with device "wg0" (0.0.0.0:51820)',
    '8:18 wireguard_devices[1].private_key: must be a WireGuard key in base64 (44 characters, as printed by wg genkey / wg pubkey) (got 43 characters)',
    '13:16 onramps[0].wireguard.device: is required when there are several wireguard_devices (wg0, wg1)',
    '13:112 onramps[0].wireguard.endpoint: must be address:port like 192.0.2.1:51820 or [2001:db8::1]:51820 (no host names), got "host.example:51820"',
    "18:5 onramps[1].gre: settings for a gre onramp, but this onramp's type is wireguard",
  ]);
  assert.ok(lines.every((l) => !l.includes(k.edgeAPrivate.slice(0, 20))), 'no secret in messages');
});

test('WireGuard: overlapping sites may share one device (each peer is checked against its own allowed IPs)', () => {
  const k = LAB_WIREGUARD_KEYS;
  const peer = (name: string, pub: string, device: string): string =>
    `  - name: ${name}\n    type: wireguard\n    automatic_return_routing: true\n    wireguard: { device: ${device}, public_key: ${pub}, allowed_ips: [10.0.1.0/24] }\n`;
  const devices = `wireguard_devices:\n  - { name: wg0, listen_port: 51820, private_key: ${k.edgeAPrivate} }\n`;
  const ok = loadConfig(`${devices}onramps:\n${peer('a', k.siteAPublic, 'wg0')}${peer('b', k.siteBPublic, 'wg0')}`, 'ok.yaml');
  assert.equal(ok.onramps.length, 2);
});

test('firewall: protocols, ports, and ports only with tcp/udp', () => {
  const text = `firewall:
  default_action: reject
  rules:
    - action: allow
      protocols: [tcp, sctp, 300]
      destination_ports: ["2000-1000", 70000, "53"]
    - action: deny
      protocols: [icmp]
      destination_ports: 22
    - name: x
      action: deny
    - name: x
      id: 0
`;
  assert.deepEqual(brief(text), [
    '2:19 firewall.default_action: must be one of allow, deny, got "reject"',
    '5:24 firewall.rules[0].protocols[1]: must be tcp, udp, icmp, icmpv6 or a protocol number 0..255, got "sctp"',
    '5:30 firewall.rules[0].protocols[2]: must be tcp, udp, icmp, icmpv6 or a protocol number 0..255, got 300',
    '6:27 firewall.rules[0].destination_ports[0]: must be a port 0..65535 or a range like "1000-2000" (low first), got "2000-1000"',
    '6:40 firewall.rules[0].destination_ports[1]: must be a port 0..65535 or a range like "1000-2000" (low first), got 70000',
    '9:26 firewall.rules[1].destination_ports: ports apply to tcp and udp only; with other protocols listed this rule would never match them (split the rule)',
    '12:7 firewall.rules[3].action: is required: one of allow, deny',
    '12:13 firewall.rules[3].name: duplicate rule name "x" (already used at firewall.rules[2].name)',
    '13:11 firewall.rules[3].id: must be an integer 1..65535, got 0',
  ]);
  const cfg = loadConfig(`firewall:\n  rules:\n    - { action: allow, protocols: ["TCP", 17, "6"], source_ports: "1000-2000" }\n`, 'fw.yaml');
  assert.deepEqual(toPipelineConfig(cfg).firewall?.rules[0], { id: 1, action: 'allow', protocols: [6, 17, 6], srcPorts: [[1000, 2000]] });
});

test('interconnect links and the egress interface are unique', () => {
  const text = `egress: { interface: uplink0, addresses: [198.51.100.1], port_range: "0-10" }
onramps:
  - { name: a, type: interconnect, automatic_return_routing: true, interconnect: { link: uplink0 } }
  - { name: b, type: interconnect, automatic_return_routing: true, interconnect: { link: "a/b" } }
`;
  assert.deepEqual(brief(text), [
    '1:70 egress.port_range: must be a port 1..65535 or a range like "1000-2000" (low first), got "0-10"',
    '3:90 onramps[0].interconnect.link: is the egress interface (egress.interface); an onramp needs a link of its own',
    '4:90 onramps[1].interconnect.link: must be an interface name (1-15 letters, digits, \'-\', \'_\' or \'.\'), got "a/b"',
  ]);
});

test('aliases are followed; self-reference and alias bombs are refused', () => {
  // The alias is validated where it is used: the same tunnel twice is reported at *g.
  assert.deepEqual(brief(`onramps:
  - { name: a, type: gre, automatic_return_routing: true, gre: &g { local: 192.168.103.1, remote: 192.168.103.2 } }
  - { name: b, type: gre, automatic_return_routing: true, gre: *g }
`), ['3:64 onramps[1].gre.remote: duplicate GRE tunnel "192.168.103.1/32 → 192.168.103.2/32 key none" (already used at onramps[0].gre.remote)']);
  assert.deepEqual(brief('sites: &s [ { name: x, prefixes: *s } ]\n'), ['1:34 sites[0].prefixes: alias *s is inside the value it refers to (a cycle)']);
  const shared = loadConfig(`sites:\n  - name: s\n    prefixes: &p [10.0.1.0/24]\n  - name: t\n    prefixes: *p\n`, 'alias.yaml');
  assert.deepEqual(shared.sites[1].prefixes, ['10.0.1.0/24']);
  let bomb = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
  for (let i = 1; i < 9; i++) bomb += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
  const problems = problemsOf(bomb);
  assert.ok(problems.some((p) => p.message.includes('too large')), JSON.stringify(problems.slice(0, 3)));
});

test('validateConfig checks plain objects with the same rules, without lines', () => {
  const bad = { ...defaultConfig(), routes: [{ prefix: '10.0.0.0/8', next_hop: { onramp: 'nope' } }], extra: 1 };
  assert.throws(() => validateConfig(bad, 'api'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.message.split('\n'), [
      'api: extra: unknown key "extra"; expected one of: version, log, api, store, sites, wireguard_devices, onramps, routes, egress, firewall, gateway, flows, daemon',
      'api: routes[0].next_hop.onramp: no onramp named "nope" (onramps: site-a-wg, site-b-wg, site-gre-tunnel, dc-link)',
    ]);
    return true;
  });
});

test('redact replaces every secret and leaves the original intact', () => {
  const cfg = loadConfig(EXAMPLE.replace('preshared_key_file: /etc/tether/branch-a.psk', `preshared_key: ${LAB_WIREGUARD_KEYS.siteBPrivate}`), 'psk.yaml');
  const safe = redact(cfg);
  const text = JSON.stringify(safe);
  for (const secret of [LAB_WIREGUARD_KEYS.edgeBPrivate, LAB_WIREGUARD_KEYS.siteBPrivate]) {
    assert.ok(JSON.stringify(cfg).includes(secret));
    assert.ok(!text.includes(secret));
  }
  assert.equal(safe.wireguard_devices[1].private_key, REDACTED);
  assert.equal(safe.wireguard_devices[0].private_key_file, '/etc/tether/wg-a.key', 'file paths are not secrets');
  const wg = safe.onramps[0];
  assert.ok(wg.type === 'wireguard' && wg.wireguard.preshared_key === REDACTED);
  assert.equal(cfg.wireguard_devices[1].private_key, LAB_WIREGUARD_KEYS.edgeBPrivate);
  assert.ok(!JSON.stringify(redact(defaultConfig())).includes(LAB_WIREGUARD_KEYS.edgeAPrivate));
});

test('assignIds: given ids kept, others lowest free in order, all distinct (property)', () => {
  const arb = fc.record({
    sites: fc.array(fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }), { maxLength: 8 }),
    onramps: fc.array(fc.record({ id: fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }), site: fc.option(fc.nat(7), { nil: undefined }) }), { maxLength: 8 }),
  });
  fc.assert(fc.property(arb, ({ sites, onramps }) => {
    const cfg = defaultConfig();
    cfg.sites = uniqueIds(sites).map((id, i) => ({ name: `s${i}`, ...(id !== undefined ? { id } : {}), prefixes: [] }));
    cfg.onramps = uniqueIds(onramps.map((o) => o.id)).map((id, i) => ({
      name: `o${i}`, ...(id !== undefined ? { id } : {}), type: 'interconnect', automatic_return_routing: true, preference: 100, max_flows: 0,
      interconnect: { link: `l${i}` },
      ...(onramps[i].site !== undefined && onramps[i].site! < cfg.sites.length ? { site: `s${onramps[i].site}` } : {}),
    }));
    const ids = assignIds(cfg);
    const siteIds = [...ids.sites.values()];
    const ownSites = cfg.onramps.filter((o) => o.site === undefined).map((o) => ids.onrampSite.get(o.name)!);
    assert.equal(new Set([...siteIds, ...ownSites]).size, siteIds.length + ownSites.length);
    cfg.sites.forEach((s) => { if (s.id !== undefined) assert.equal(ids.sites.get(s.name), s.id); });
    assert.equal(new Set(ids.onramps.values()).size, cfg.onramps.length);
    cfg.onramps.forEach((o) => { if (o.id !== undefined) assert.equal(ids.onramps.get(o.name), o.id); });
    assert.deepEqual(assignIds(cfg), ids, 'deterministic');
  }));
});

/** Drops repeated ids (a valid config has none). */
function uniqueIds(ids: Array<number | undefined>): Array<number | undefined> {
  const seen = new Set<number>();
  return ids.map((id) => {
    if (id === undefined || seen.has(id)) return undefined;
    seen.add(id);
    return id;
  });
}

function onlyConfigErrors(text: string): void {
  try {
    loadConfig(text, 'fuzz.yaml');
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    assert.ok(e.problems.length > 0);
    for (const p of e.problems) assert.ok(p.line >= 1 && p.column >= 1, JSON.stringify(p));
  }
}

const TOKENS = [
  'onramps', 'sites', 'routes', 'firewall', 'rules', 'egress', 'wireguard', 'gre', 'name', 'type', 'site', 'prefix',
  'next_hop', 'onramp', 'automatic_return_routing', 'addresses', 'local', 'remote', 'true', 'yes', '~', 'null', '1',
  '-1', '0x10', '.inf', '10.0.1.0/24', '::', ':', ': ', '- ', '\n', '\n  ', '\n    ', '  ', '[', ']', '{', '}', ',',
  '&a ', '*a', '!!str ', '!tag ', '"', "'", '#', '? ', '|', '>', '---', '...', '%YAML 1.2', '<<: ', '\t', '__proto__',
];

test('fuzz: YAML-ish garbage never throws anything but ConfigError', () => {
  fc.assert(fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }), (tokens) => onlyConfigErrors(tokens.join(''))), { numRuns: 600 });
  fc.assert(fc.property(fc.string({ maxLength: 200 }), onlyConfigErrors), { numRuns: 300 });
});

test('fuzz: mutations of the example file load or fail with ConfigError', () => {
  const lines = EXAMPLE.split('\n');
  const mutation = fc.tuple(fc.nat(lines.length - 1), fc.nat(80), fc.constantFrom('', ' ', '-', ':', 'x', '  ', '[', '1', '"'), fc.constantFrom('insert', 'delete-line', 'replace-char'));
  fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (muts) => {
    const copy = [...lines];
    for (const [line, col, text, kind] of muts) {
      const l = copy[line % copy.length];
      if (kind === 'delete-line') copy.splice(line % copy.length, 1);
      else if (kind === 'insert') copy[line % copy.length] = l.slice(0, col) + text + l.slice(col);
      else copy[line % copy.length] = l.slice(0, col) + text + l.slice(col + 1);
    }
    let cfg: TetherConfig | undefined;
    try {
      cfg = loadConfig(copy.join('\n'), 'mutant.yaml');
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
    }
    // Whatever loads must map and build: validation is the only gate before the data plane.
    if (cfg !== undefined) {
      const pc = toPipelineConfig(cfg);
      pc.flows = { ...pc.flows, capacity4: 1024, capacity6: 1024 }; // small tables: the mapping is what is tested
      new Pipeline(pc);
    }
  }), { numRuns: 300 });
});

test('fuzz: validateConfig on arbitrary values throws only ConfigError', () => {
  fc.assert(fc.property(fc.anything(), (v) => {
    try {
      validateConfig(v);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
    }
  }), { numRuns: 300 });
});

test('sites[].failover: policy and drain idle time, defaults, bad values, mapped to the pipeline', () => {
  const cfg = loadConfig(`sites:
  - name: branch
    failover: { policy: drain, drain_idle_seconds: 45 }
  - name: pinned
    failover: { policy: pin }
  - name: plain
onramps:
${GRE_ONRAMP.replace('name: t1', 'name: t1\n    site: branch')}`, 'test.yaml');
  assert.deepEqual(cfg.sites.map((s) => s.failover), [{ policy: 'drain', drain_idle_seconds: 45 }, { policy: 'pin', drain_idle_seconds: 30 }, undefined]);
  const pc = toPipelineConfig(cfg);
  assert.deepEqual(pc.sites, [
    { id: 1, failover: { policy: 'drain', drainIdleMs: 45_000 } },
    { id: 2, failover: { policy: 'pin', drainIdleMs: 30_000 } },
    { id: 3 },
  ]);
  const pipeline = new Pipeline(pc);
  assert.deepEqual(pipeline.ports.siteFailover(1), { policy: 'drain', drainIdleMs: 45_000 });
  assert.deepEqual(pipeline.ports.siteFailover(3), { policy: 'follow', drainIdleMs: 30_000 });
  assert.deepEqual(brief(`sites:\n  - name: s\n    failover: { policy: sideways, drain_idle_seconds: 0, drain: 3 }\n`), [
    '3:25 sites[0].failover.policy: must be one of follow, pin, drain, got "sideways"',
    '3:55 sites[0].failover.drain_idle_seconds: must be an integer 1..2592000 (seconds), got 0',
    '3:58 sites[0].failover.drain: unknown key "drain"; expected one of: policy, drain_idle_seconds',
  ]);
});

test('allowed_sources: a GRE, interconnect or IPsec onramp filters its inner sources (BCP 38); WireGuard uses allowed_ips', () => {
  const cfg = loadConfig(`onramps:\n${GRE_ONRAMP}    allowed_sources: [10.0.1.0/24, 169.254.103.2/32]\n`, 'test.yaml');
  assert.deepEqual(cfg.onramps[0]!.allowed_sources, ['10.0.1.0/24', '169.254.103.2/32']);
  const pipeline = new Pipeline(toPipelineConfig(cfg));
  const id = pipeline.ports.list().find((p) => p.name === 't1')!.id;
  const from = (src: string): number => pipeline.forward(buildUdp({ src, dst: '203.0.113.10' }, { srcPort: 5000, dstPort: 53 }), 0, 28, id, 0);
  assert.equal(from('10.0.2.10'), -Drop.SourceNotAllowed, 'a source outside the onramp’s prefixes is dropped');
  assert.notEqual(from('10.0.1.10'), -Drop.SourceNotAllowed, 'one inside passes the filter');
  // Absent: any source (as before).
  assert.equal(loadConfig(`onramps:\n${GRE_ONRAMP}`, 'test.yaml').onramps[0]!.allowed_sources, undefined);
  const k = LAB_WIREGUARD_KEYS;
  assert.deepEqual(brief(`wireguard_devices:\n  - { name: wg0, listen_port: 51820, private_key: ${k.edgeAPrivate} }
onramps:
  - name: a
    type: wireguard
    automatic_return_routing: true
    allowed_sources: 10.0.1.0/24
    wireguard: { public_key: ${k.siteAPublic}, allowed_ips: 10.0.1.0/24 }
`), ['7:22 onramps[0].allowed_sources: a WireGuard onramp accepts the sources in wireguard.allowed_ips (cryptokey routing); allowed_sources is for gre, interconnect and ipsec onramps']);
  assert.deepEqual(brief(`onramps:\n${GRE_ONRAMP}    allowed_sources: [10.0.1.0/33]\n`).length, 1, 'a bad prefix is named');
});

test('daemon.lanes: default 1, a count of lanes, a clear error out of range', () => {
  assert.equal(loadConfig('{}', 'edge.yaml').daemon.lanes, 1);
  assert.equal(loadConfig('daemon: { lanes: 2 }\n', 'edge.yaml').daemon.lanes, 2);
  assert.deepEqual(brief('daemon: { lanes: 0 }\n'), ['1:18 daemon.lanes: must be an integer 1..64 (threads), got 0']);
});
