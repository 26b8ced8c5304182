/**
 * Metrics on a real pipeline: traffic through the lab configuration (named sites and onramps),
 * then the exposition text is parsed and checked against what was sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../common/drop-reasons.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { Edge as RealEdge } from '../daemon/edge.js';
import { buildIcmpEcho, buildUdp } from '../wire/build.js';
import { PipelineRig } from '../../test/support/pipeline-rig.js';
import { twoSites } from '../../test/support/topology.js';
import { assignIds, toPipelineConfig, validateConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { METRICS_CONTENT_TYPE, NameBook, createMetrics, laneCounters, metricsText, type EdgeMetricsSource, type EdgeStatus } from './metrics.js';
import { buildTcp } from '../wire/build.js';
import { TCP_ACK_FLAG, TCP_PSH, TCP_SYN } from '../wire/constants.js';
import { A_PRIMARY, INTERNET, POOL as TWO_SITES_POOL, SERVER as TWO_SITES_SERVER, HOST as TWO_SITES_HOST, twoSites as twoSitesConfig } from '../../test/support/topology.js';
import { ikeSa, ipsecStatus } from '../../test/support/ipsec-status.js';
import { GatewayPolicy } from '../gateway/policy.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition format 0.0.4: samples, and the TYPE of each metric family. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, types };
}

/** The one sample of `name` whose labels include `labels`. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(found.length, 1, `${name}${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0].value;
}

async function scrape(registry: Awaited<ReturnType<typeof createMetrics>>): Promise<{ samples: Sample[]; types: Map<string, string> }> {
  return parseExposition(await metricsText(registry));
}

/** The lab configuration: sites site-a, site-b, site-gre, dc; onramps site-a-wg (1), site-b-wg (2), site-gre-tunnel (3), dc-link (4). */
function lab(): { edge: PipelineRig; names: NameBook; ids: ReturnType<typeof assignIds> } {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const edge = new PipelineRig(toPipelineConfig(cfg, ids));
  return { edge, names: new NameBook(edge.pipeline, cfg, ids), ids };
}

const SERVER = '203.0.113.10';
const POOL = '198.51.100.1';
const HOST = '10.0.1.10';

test('after traffic, the exposition text holds the flows, packets, bytes, drops and NAT ports by name', async () => {
  const { edge, names, ids } = lab();
  const A = ids.onramps.get('site-a-wg')!;
  const B = ids.onramps.get('site-b-wg')!;
  const DC = ids.onramps.get('dc-link')!;
  const registry = createMetrics({ pipeline: edge.pipeline, names });

  const toServer = buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 443, payload: new Uint8Array(100) });
  const a = edge.send(A, toServer);
  const b = edge.send(B, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 443, payload: new Uint8Array(100) }));
  assert.equal(a.hop, 0);
  assert.equal(b.hop, 0);
  const reply = buildUdp({ src: SERVER, dst: POOL }, { srcPort: 443, dstPort: a.parsed.srcPort, payload: new Uint8Array(300) });
  assert.equal(edge.send(0, reply).hop, A);
  const toDc = buildIcmpEcho({ src: HOST, dst: '172.16.0.20' }, { type: 'request', id: 7 });
  assert.equal(edge.send(A, toDc).hop, DC);
  const dying = buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 40001, dstPort: 443 });
  assert.equal(edge.send(A, dying).drop, Drop.TtlExceeded);

  const { samples, types } = await scrape(registry);
  const site = { site: 'site-a', onramp: 'site-a-wg' };
  assert.equal(value(samples, 'tether_flows_active', site), 2);
  assert.equal(value(samples, 'tether_flows_created_total', site), 2);
  assert.equal(value(samples, 'tether_flows_ended_total', site), 0);
  assert.equal(value(samples, 'tether_flows_active', { site: 'site-b', onramp: 'site-b-wg' }), 1);
  assert.equal(value(samples, 'tether_flows_active', { site: 'internet', onramp: 'internet' }), 0);
  assert.equal(value(samples, 'tether_flow_table_flows', { family: 'ipv4' }), 3);

  assert.equal(value(samples, 'tether_packets_total', { onramp: 'site-a-wg', direction: 'rx' }), 3);
  // The reply, and the time exceeded the edge sent back for the dying packet.
  assert.equal(value(samples, 'tether_packets_total', { onramp: 'site-a-wg', direction: 'tx' }), 2);
  assert.equal(value(samples, 'tether_icmp_errors_sent_total', { type: 'time_exceeded' }), 1);
  assert.equal(value(samples, 'tether_bytes_total', { onramp: 'site-a-wg', direction: 'rx' }), toServer.length + toDc.length + dying.length);
  assert.equal(value(samples, 'tether_bytes_total', { onramp: 'site-a-wg', direction: 'tx' }), reply.length + 28 + dying.length);
  assert.equal(value(samples, 'tether_packets_total', { onramp: 'internet', direction: 'tx' }), 2);
  assert.equal(value(samples, 'tether_packets_total', { onramp: 'internet', direction: 'rx' }), 1);
  assert.equal(value(samples, 'tether_packets_total', { onramp: 'dc-link', direction: 'tx' }), 1);

  assert.equal(value(samples, 'tether_drops_total', { reason: 'ttl_exceeded' }), 1);
  assert.equal(value(samples, 'tether_drops_total', { reason: 'no_route' }), 0);
  assert.equal(samples.filter((s) => s.name === 'tether_drops_total' && s.labels.reason === 'none').length, 0, 'no "none" reason');
  assert.equal(value(samples, 'tether_port_drops_total', { onramp: 'site-a-wg' }), 1);
  assert.equal(value(samples, 'tether_port_drops_total', { onramp: 'site-b-wg' }), 0);

  // Two sites' identical endpoints are two mappings on the pool address.
  assert.equal(value(samples, 'tether_nat_ports_in_use', { address: POOL, protocol: 'udp' }), 2);
  assert.equal(value(samples, 'tether_nat_ports_in_use', { address: POOL, protocol: 'tcp' }), 0);
  assert.equal(value(samples, 'tether_nat_ports_total', { address: POOL, protocol: 'udp' }), 65535 - 1024 + 1);
  assert.equal(value(samples, 'tether_nat_mappings'), 2);

  assert.equal(value(samples, 'tether_onramp_up', { onramp: 'site-gre-tunnel', type: 'gre', site: 'site-gre' }), 1);
  assert.equal(value(samples, 'tether_onramp_up', { onramp: 'internet' }), 1);
  assert.equal(value(samples, 'tether_onramp_arr', { onramp: 'site-a-wg' }), 1);
  assert.equal(value(samples, 'tether_icmp_errors_translated_total'), 0);

  assert.equal(types.get('tether_flows_active'), 'gauge');
  assert.equal(types.get('tether_flows_created_total'), 'counter');
  assert.equal(types.get('tether_drops_total'), 'counter');
  assert.equal(types.get('tether_nat_ports_in_use'), 'gauge');
  assert.match(METRICS_CONTENT_TYPE, /^text\/plain; version=0\.0\.4/);
});

test('gauges follow the state: flows ending, an onramp going down, a live onramp change', async () => {
  const { edge, names, ids } = lab();
  const A = ids.onramps.get('site-a-wg')!;
  const registry = createMetrics({ pipeline: edge.pipeline, names });
  edge.send(A, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53 }));
  edge.pipeline.setOnrampUp(A, false);
  let { samples } = await scrape(registry);
  assert.equal(value(samples, 'tether_flows_active', { onramp: 'site-a-wg' }), 1);
  assert.equal(value(samples, 'tether_onramp_up', { onramp: 'site-a-wg', type: 'wireguard' }), 0);
  assert.equal(value(samples, 'tether_nat_ports_in_use', { address: POOL, protocol: 'udp' }), 1);

  edge.advance(10 * 60 * 1000);
  edge.pipeline.setOnramp({ id: 40, name: 'added-live', type: 'interconnect', site: 40, automaticReturnRouting: false });
  ({ samples } = await scrape(registry));
  assert.equal(value(samples, 'tether_flows_active', { onramp: 'site-a-wg' }), 0);
  assert.equal(value(samples, 'tether_flows_ended_total', { onramp: 'site-a-wg' }), 1);
  assert.equal(value(samples, 'tether_flows_created_total', { onramp: 'site-a-wg' }), 1);
  assert.equal(value(samples, 'tether_nat_ports_in_use', { address: POOL, protocol: 'udp' }), 0);
  // Not in the configuration the names came from: the onramp's own name, its site as a number.
  assert.equal(value(samples, 'tether_onramp_arr', { onramp: 'added-live', site: '40' }), 0);
});

test('metrics read the counters at scrape and add nothing to the packet path', async () => {
  const edge = new PipelineRig(twoSites());
  const p = edge.pipeline;
  const registry = createMetrics({ pipeline: p });
  // Nothing hooked: the pipeline's methods and its flow-end hook are its own.
  assert.equal(p.onFlowEnd, null);
  assert.equal(p.process, Pipeline.prototype.process);
  assert.equal(p.forward, Pipeline.prototype.forward);
  // A value written straight into a counter array is what the next scrape reports.
  p.counters.drops[Drop.PolicyDeny] = 12345;
  p.counters.rxBytes[3] = 2 ** 40;
  p.counters.fragmentsHeld = 7;
  const { samples } = await scrape(registry);
  assert.equal(value(samples, 'tether_drops_total', { reason: 'policy_deny' }), 12345);
  assert.equal(value(samples, 'tether_bytes_total', { onramp: 'onramp-3', direction: 'rx' }), 2 ** 40);
  assert.equal(value(samples, 'tether_fragments_held_total'), 7);
  // Without a configuration: onramp names from the pipeline's specs, sites by number.
  assert.equal(value(samples, 'tether_flows_active', { onramp: 'onramp-1', site: '1' }), 0);
  // Both pool addresses (IPv4 and IPv6) and ICMP by family.
  assert.equal(value(samples, 'tether_nat_ports_total', { address: '2001:db8:ee::1', protocol: 'icmpv6' }), 65536);
  // A second scrape reports the same values (reset and refill, no double counting).
  const again = (await scrape(registry)).samples;
  assert.equal(value(again, 'tether_drops_total', { reason: 'policy_deny' }), 12345);
});

test('with an edge: GRE and WireGuard drops by reason, edge counters; flow-log counters', async () => {
  const cfg = defaultConfig();
  const silent = { info() {}, warn() {}, error() {}, debug() {} };
  const edge = new RealEdge({ config: cfg, log: silent, hugePages: false });
  const names = new NameBook(edge.pipeline, cfg, edge.ids);
  const flowLog = { linesWritten: 5, linesDropped: 1 };
  const registry = createMetrics({ pipeline: edge.pipeline, edge, names, flowLog });
  edge.gre.drops[1] += 3;
  edge.counters[0] = 4;
  const { samples } = await scrape(registry);
  assert.equal(value(samples, 'tether_gre_drops_total', { reason: 'truncated' }), 3);
  assert.equal(value(samples, 'tether_gre_drops_total', { reason: 'bad_outer_ip' }), 0);
  assert.equal(value(samples, 'tether_wireguard_drops_total', { device: 'wg-a', reason: 'decrypt_failed' }), 0);
  assert.equal(value(samples, 'tether_wireguard_drops_total', { device: 'wg-b', reason: 'replay' }), 0);
  assert.equal(value(samples, 'tether_wireguard_peer_session', { device: 'wg-a', onramp: 'site-a-wg' }), 0);
  assert.equal(value(samples, 'tether_edge_events_total', { event: 'underlay_malformed' }), 4);
  assert.equal(value(samples, 'tether_flow_log_lines_total'), 5);
  assert.equal(value(samples, 'tether_flow_log_dropped_total'), 1);
  assert.equal(value(samples, 'tether_flows_active', { onramp: 'dc-link', site: 'dc' }), 0);
});

test('IPsec: IKE SAs by state per onramp, counters per child SA; an SA gone takes its series with it', async () => {
  const cfg = validateConfig({ ...defaultConfig(), onramps: [...defaultConfig().onramps,
    { name: 'branch-ipsec', type: 'ipsec', automatic_return_routing: true, ipsec: { local_address: '192.168.106.1', remote_address: '192.168.106.2', psk: 'correct horse battery staple' } }] });
  const ids = assignIds(cfg);
  const rig = new PipelineRig(toPipelineConfig(cfg, ids));
  const names = new NameBook(rig.pipeline, cfg, ids);
  const id = ids.onramps.get('branch-ipsec')!;
  // A rekey in progress: the old child SA and its successor, both held by the data path.
  let now = ipsecStatus([ikeSa(id, 1e6, ['a0000001', 'a0000002'])]);
  const status = { tuns: [], edge: {}, pipelineDrops: {}, greDrops: {}, wireguard: [], flows: { ipv4: 0, ipv6: 0 }, icmp: { timeExceededSent: 0, rateLimited: 0, noSource: 0, echoAnswered: 0 } };
  const edge: EdgeMetricsSource = { gre: { drops: [] }, counters: [], counterNames: [], status: (): EdgeStatus => ({ ...status, ...now }) };
  const registry = createMetrics({ pipeline: rig.pipeline, edge, names });
  let { samples } = await scrape(registry);
  assert.equal(value(samples, 'tether_ipsec_ike_sas', { onramp: 'branch-ipsec', state: 'established' }), 1);
  assert.equal(value(samples, 'tether_ipsec_ike_sas', { onramp: 'branch-ipsec', state: 'rekeying' }), 0);
  assert.equal(samples.filter((s) => s.name === 'tether_ipsec_ike_sas').length, 5, 'one series per state, ipsec onramps only');
  assert.equal(value(samples, 'tether_ipsec_child_packets_total', { onramp: 'branch-ipsec', spi: 'a0000001', direction: 'in' }), 10);
  assert.equal(value(samples, 'tether_ipsec_child_packets_total', { onramp: 'branch-ipsec', spi: 'a0000002', direction: 'out' }), 21);
  assert.equal(value(samples, 'tether_ipsec_child_bytes_total', { onramp: 'branch-ipsec', spi: 'a0000001', direction: 'out' }), 1100);
  assert.equal(value(samples, 'tether_ipsec_child_replay_drops_total', { onramp: 'branch-ipsec', spi: 'a0000002' }), 22);
  assert.equal(value(samples, 'tether_ipsec_child_icv_failures_total', { onramp: 'branch-ipsec', spi: 'a0000001' }), 13);
  // The old child SA is deleted, a new one comes, many times over: only the live SAs have series.
  for (let k = 3; k < 50; k++) {
    now = ipsecStatus([ikeSa(id, 1e6, [`a${String(k).padStart(7, '0')}`])]);
    ({ samples } = await scrape(registry));
  }
  const spis = new Set(samples.filter((s) => s.name.startsWith('tether_ipsec_child_')).map((s) => s.labels.spi));
  assert.deepEqual([...spis], ['a0000049'], 'bounded: series of deleted SAs are gone');
  now = { ipsec: [], esp: [] };
  ({ samples } = await scrape(registry));
  assert.equal(samples.filter((s) => s.name.startsWith('tether_ipsec_child_')).length, 0);
  assert.equal(value(samples, 'tether_ipsec_ike_sas', { onramp: 'branch-ipsec', state: 'established' }), 0);
});

test('names: configured names, a site-less onramp is its own site, rule names, the Internet, unknown ids as numbers', () => {
  const cfg = defaultConfig();
  cfg.onramps.push({ ...cfg.onramps[3], name: 'lonely', site: undefined } as (typeof cfg.onramps)[number]);
  cfg.firewall.rules.push({ name: 'no-telnet', action: 'deny', protocols: ['tcp'], destination_ports: [23] });
  const ids = assignIds(cfg);
  const edge = new PipelineRig(toPipelineConfig(cfg, ids));
  const names = new NameBook(edge.pipeline, cfg, ids);
  const lonely = ids.onramps.get('lonely')!;
  assert.equal(names.onramp(lonely), 'lonely');
  assert.equal(names.site(ids.onrampSite.get('lonely')!), 'lonely');
  assert.equal(names.site(ids.sites.get('site-b')!), 'site-b');
  assert.equal(names.rule(ids.firewallRules[0]), 'no-telnet');
  assert.equal(names.rule(0), undefined);
  assert.equal(names.onramp(0), 'internet');
  assert.equal(names.onramp(999), '999');
  assert.equal(names.site(999), '999');
});

test('policy: per-rule hits of the firewall (default action as rule 0) and the gateway, the epoch, re-evaluated and cut flows', async () => {
  const edge = new PipelineRig({ ...twoSites(), firewall: { rules: [{ id: 5, action: 'deny', dstPorts: [[25, 25]] }], defaultAction: 'allow' } });
  const p = edge.pipeline;
  const registry = createMetrics({ pipeline: p });
  const udp = (dstPort: number): number => edge.send(1, buildUdp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000 + dstPort, dstPort })).drop;
  assert.equal(udp(25), Drop.PolicyDeny);
  assert.equal(udp(53), Drop.None);
  assert.equal(udp(53), Drop.None, 'an established packet is no new hit');
  p.setGateway(new GatewayPolicy({ rules: [{ id: 12, name: 'no-dns-b', action: 'block', sites: [2], dstPorts: [[53, 53]] }], dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 4096 }));
  p.counters.gatewayRuleHits[12] = 3;
  assert.equal(udp(53), Drop.None, 're-evaluated under the new epoch: site A is not concerned');
  const { samples } = await scrape(registry);
  assert.equal(value(samples, 'tether_firewall_rule_hits_total', { rule_id: '5', rule: '5' }), 1);
  assert.equal(value(samples, 'tether_firewall_rule_hits_total', { rule_id: '0', rule: 'default' }), 1);
  assert.equal(value(samples, 'tether_gateway_rule_hits_total', { rule_id: '12', rule: 'no-dns-b' }), 3);
  assert.equal(value(samples, 'tether_policy_epoch'), p.policyEpoch);
  assert.equal(value(samples, 'tether_flows_reevaluated_total'), 1);
  assert.equal(value(samples, 'tether_flows_cut_by_policy_total'), 0);
});

test('lanes: the gateway\'s classify gauges add every lane\'s waiting flows and held payloads (lane 1 as it posted them)', async () => {
  // Every lane: the same gateway, a hostname rule, so a TCP flow to 443 waits for its name after the handshake.
  const gatewayConfig = () => ({
    ...twoSitesConfig(),
    gateway: { rules: [{ id: 7, action: 'block' as const, sites: [1], hostnames: ['*.example.org'] }], dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' as const }, dlpScanBytes: 65536 },
  });
  /** Opens `n` connections on `rig` (from ports 40000…), each through its handshake; `holding` of them send a partial ClientHello. */
  const waitingFlows = (rig: PipelineRig, n: number, holding: number): void => {
    for (let k = 0; k < n; k++) {
      const port = 40000 + k;
      const syn = rig.send(A_PRIMARY, buildTcp({ src: TWO_SITES_HOST, dst: TWO_SITES_SERVER }, { srcPort: port, dstPort: 443, seq: 1000, flags: TCP_SYN }));
      assert.equal(syn.hop, INTERNET, `SYN dropped: ${syn.drop}`);
      rig.send(INTERNET, buildTcp({ src: TWO_SITES_SERVER, dst: TWO_SITES_POOL }, { srcPort: 443, dstPort: syn.parsed.srcPort, seq: 5000, ack: 1001, flags: TCP_SYN | TCP_ACK_FLAG }));
      rig.send(A_PRIMARY, buildTcp({ src: TWO_SITES_HOST, dst: TWO_SITES_SERVER }, { srcPort: port, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_ACK_FLAG }));
      // 0x16 0x03 0x01: the first bytes of a TLS handshake record, too few to name anything: held.
      if (k < holding) rig.send(A_PRIMARY, buildTcp({ src: TWO_SITES_HOST, dst: TWO_SITES_SERVER }, { srcPort: port, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_ACK_FLAG | TCP_PSH, payload: Uint8Array.of(0x16, 0x03, 0x01) }));
    }
  };
  const zero = new PipelineRig(gatewayConfig());
  const one = new PipelineRig({ ...gatewayConfig(), lane: { index: 1, count: 2 } });
  waitingFlows(zero, 1, 0);
  waitingFlows(one, 3, 2);
  // The oracle: each lane's own pipeline.
  assert.deepEqual([zero.pipeline.classifyingFlows, zero.pipeline.classifySlotsInUse], [1, 0]);
  assert.deepEqual([one.pipeline.classifyingFlows, one.pipeline.classifySlotsInUse], [3, 2]);
  const posted = laneCounters(one.pipeline, 1);
  assert.deepEqual(posted.classifying, { waiting: 3, holding: 2 });
  const registry = createMetrics({ pipeline: zero.pipeline, lanes: () => [posted] });
  const { samples } = await scrape(registry);
  assert.equal(value(samples, 'tether_gateway_classifying_flows', { state: 'waiting' }), 4);
  assert.equal(value(samples, 'tether_gateway_classifying_flows', { state: 'holding' }), 2);
});
