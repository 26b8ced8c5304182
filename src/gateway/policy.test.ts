import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parseIpv4 } from '../wire/addr.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { GATEWAY_NEED_NAME, GATEWAY_NO_RULE, GatewayPolicy, NameSource, type GatewayPolicySpec, type GatewayRuleSpec } from './policy.js';

const SITE_A = 1;
const SITE_B = 2;
const CLIENT = parseIpv4('10.0.1.10');
const SERVER = parseIpv4('203.0.113.10');

function policy(rules: GatewayRuleSpec[]): GatewayPolicy {
  const spec: GatewayPolicySpec = { rules, dlpProfiles: [{ name: 'cards', cards: true, action: 'block' }], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 65536 };
  return new GatewayPolicy(spec);
}

const https = (p: GatewayPolicy, site: number, source: NameSource, name: string | null): number =>
  p.decide4(site, 1, IPPROTO_TCP, CLIENT, SERVER, 40000, 443, source, name);

test('a hostname rule for one site: that site waits for the name, the name decides; the other site is not asked', () => {
  const p = policy([
    { id: 1, action: 'block', sites: [SITE_A], hostnames: ['*.example-social.com', 'example-social.com'] },
    { id: 2, action: 'allow', dstPorts: [[443, 443]], dlp: ['cards'] },
  ]);
  assert.equal(https(p, SITE_A, NameSource.Unknown, null), GATEWAY_NEED_NAME);
  assert.equal(p.pending4(SITE_A, 1, IPPROTO_TCP, CLIENT, SERVER, 40000, 443), 0);
  assert.equal(https(p, SITE_A, NameSource.Sni, 'www.Example-Social.com.'), 0);
  assert.equal(https(p, SITE_A, NameSource.HttpHost, 'example-social.com'), 0);
  assert.equal(https(p, SITE_A, NameSource.Sni, 'example.org'), 1);
  assert.equal(https(p, SITE_A, NameSource.Sni, null), 1, 'no name: hostname rules do not match');
  assert.equal(https(p, SITE_B, NameSource.Unknown, null), 1, 'site B: decided at setup');
  assert.equal(p.pending4(SITE_B, 1, IPPROTO_TCP, CLIENT, SERVER, 40000, 443), GATEWAY_NO_RULE);
  assert.deepEqual(p.dlpProfiles(1), [0]);
  assert.equal(p.fallback(0), 'allow');
});

test('sources: a DNS-only rule never makes a TCP flow wait; an SNI rule never matches a Host header', () => {
  const p = policy([
    { id: 1, action: 'override', hostnames: ['intranet.example'], sources: NameSource.Dns, override: { addresses: ['192.0.2.7'], ttl: 60 } },
    { id: 2, action: 'block', hostnames: ['tls-only.example'], sources: NameSource.Sni, fallback: 'block' },
  ]);
  assert.equal(https(p, SITE_A, NameSource.Unknown, null), GATEWAY_NEED_NAME);
  assert.equal(p.pending4(SITE_A, 1, IPPROTO_TCP, CLIENT, SERVER, 40000, 443), 1);
  assert.equal(p.fallback(1), 'block');
  assert.equal(https(p, SITE_A, NameSource.HttpHost, 'tls-only.example'), GATEWAY_NO_RULE);
  assert.equal(https(p, SITE_A, NameSource.Sni, 'tls-only.example'), 1);
  assert.equal(https(p, SITE_A, NameSource.Sni, 'intranet.example'), GATEWAY_NO_RULE);
  assert.equal(p.decide4(SITE_A, 1, IPPROTO_UDP, CLIENT, SERVER, 40000, 53, NameSource.Dns, 'INTRANET.example'), 0);
  assert.equal(p.decide4(SITE_A, 1, IPPROTO_ICMP, CLIENT, SERVER, 0, 0, NameSource.Unknown, null), GATEWAY_NO_RULE, 'ICMP carries no name');
});

test('L3/L4 selectors as the firewall reads them: prefixes per family, ports only for TCP and UDP', () => {
  const p = policy([{ id: 9, action: 'log', srcPrefixes: ['10.0.1.0/24', '2001:db8::/32'], dstPorts: [[80, 80]] }]);
  assert.equal(p.decide4(SITE_A, 1, IPPROTO_TCP, CLIENT, SERVER, 1, 80, NameSource.Unknown, null), 0);
  assert.equal(p.decide4(SITE_A, 1, IPPROTO_TCP, parseIpv4('10.0.2.10'), SERVER, 1, 80, NameSource.Unknown, null), GATEWAY_NO_RULE);
  assert.equal(p.decide4(SITE_A, 1, IPPROTO_ICMP, CLIENT, SERVER, 1, 80, NameSource.Unknown, null), GATEWAY_NO_RULE);
  const addr = new Uint32Array([0x20010db8, 0, 0, 1, 0x20010db9, 0, 0, 2]);
  assert.equal(p.decide6(SITE_A, 1, IPPROTO_TCP, addr, 0, 4, 1, 80, NameSource.Unknown, null), 0);
  assert.equal(p.decide6(SITE_A, 1, IPPROTO_TCP, addr, 4, 0, 1, 80, NameSource.Unknown, null), GATEWAY_NO_RULE);
});

test('bad rules are refused with a message naming the rule', () => {
  assert.throws(() => policy([{ id: 3, action: 'override', hostnames: ['a.example'], override: { addresses: [], ttl: 5 } }]), /rule 3: action override answers DNS queries/);
  assert.throws(() => policy([{ id: 4, action: 'block', hostnames: ['a..example'] }]), /gateway rule 4/);
  assert.throws(() => policy([{ id: 5, action: 'allow', dlp: ['nope'] }]), /rule 5: no DLP profile named "nope"/);
  assert.throws(() => policy([{ id: 6, action: 'allow', dstPrefixes: ['10.0.0.0/33'] }]), /rule 6: destination prefix/);
});
