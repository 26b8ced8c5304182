/**
 * Issue 12's figures in `npm run bench` (bench/core.ts calls these; docs/PERFORMANCE.md, "Policy"):
 *
 *   classify_sni_ns        per flow: SniParser.reset() + feed() of the flow's own ClientHello (a synthetic one, one
 *                          distinct server_name per flow, ~250 B)
 *   classify_decide_ns     per flow: the pipeline's FastGatewayPolicy.decide4 with that name under 1,000 hostname
 *                          rules (500 exact, 500 "*.suffix"; half the flows match one, the rest match none)
 *   classify_decide_scan_ns  the same for the first SCAN_FLOWS flows with src/gateway/policy.ts's plain scan (the
 *                          oracle FastGatewayPolicy is tested against): what the index saves
 *   classify_per_flow_ns   the two together: what a TCP flow's classification adds to its setup
 *   reevaluate_ns          per flow, the first packet after a policy change: the epoch compare fails and the flow is
 *                          decided again (1,000 firewall rules, then the gateway), minus the same packet's cost
 *                          once the flow is current again (same packets, same run)
 *
 * CPU time of this process per operation: the machine is shared.
 */
import { performance } from 'node:perf_hooks';
import { PacketBatch } from '../src/common/packet-batch.js';
import { GatewayPolicy, NameSource, type GatewayPolicySpec, type GatewayRuleSpec } from '../src/gateway/policy.js';
import { FastGatewayPolicy } from '../src/dataplane/gateway-policy.js';
import { SniParser } from '../src/gateway/tls-sni.js';
import type { Pipeline } from '../src/dataplane/pipeline.js';
import { IPPROTO_TCP } from '../src/wire/constants.js';

export const GATEWAY_RULES = 1000;
/** The plain scan costs ~1,000 rule checks per unmatched name: a thousand flows show it. */
const SCAN_FLOWS = 1000;
const NS_PER_US = 1e3;
/** TLS record and handshake framing (RFC 8446 §5.1, §4): content type 22 = handshake, 1 = ClientHello. */
const TLS_HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const TLS_LEGACY_VERSION = [3, 1];
const TLS12 = [3, 3];
const RANDOM_BYTES = 32;
const EXT_SERVER_NAME = 0;
const EXT_SUPPORTED_VERSIONS = 43;
/** Padding to a browser-like size (an extension the parser skips: RFC 7685). */
const EXT_PADDING = 21;
const PADDING_BYTES = 160;
const SERVER = 0xcb00710a; // 203.0.113.10
const CLIENT = 0x0a00010a; // 10.0.1.10
const HTTPS = 443;

const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const u24 = (n: number): number[] => [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const ext = (type: number, data: number[]): number[] => [...u16(type), ...u16(data.length), ...data];

/** A record-framed TLS 1.3 ClientHello carrying `name` in server_name (RFC 6066 §3). */
export function syntheticClientHello(name: string): Uint8Array {
  const host = [...Buffer.from(name, 'latin1')];
  const list = [0, ...u16(host.length), ...host];
  const extensions = [
    ...ext(EXT_SERVER_NAME, [...u16(list.length), ...list]),
    ...ext(EXT_SUPPORTED_VERSIONS, [2, 3, 4]),
    ...ext(EXT_PADDING, new Array<number>(PADDING_BYTES).fill(0)),
  ];
  const body = [...TLS12, ...new Array<number>(RANDOM_BYTES).fill(7), 0, ...u16(4), 0x13, 0x01, 0x13, 0x02, 1, 0, ...u16(extensions.length), ...extensions];
  const hs = [CLIENT_HELLO, ...u24(body.length), ...body];
  return Uint8Array.from([TLS_HANDSHAKE, ...TLS_LEGACY_VERSION, ...u16(hs.length), ...hs]);
}

/** CPU nanoseconds per call of `fn(i)` for i over 0..count-1, after one warm-up pass. */
function cpuNsPer(count: number, fn: (i: number) => void): number {
  for (let i = 0; i < count; i++) fn(i);
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) fn(i);
  const d = process.cpuUsage(start);
  return ((d.user + d.system) * NS_PER_US) / count;
}

export interface ClassifyFigures {
  classify_sni_ns: number;
  classify_decide_ns: number;
  classify_decide_scan_ns: number;
  classify_per_flow_ns: number;
  gateway_rules: number;
  classified_flows: number;
}

/** 1,000 hostname rules that read SNI and HTTP Host on every port (half on exact names, half on subdomains). */
export function hostnameRulesSpec(): GatewayPolicySpec {
  const rules: GatewayRuleSpec[] = [];
  for (let i = 0; i < GATEWAY_RULES; i++) {
    const domain = `d${i}.example-${i % 7}.com`;
    rules.push({ id: i + 1, action: i % 2 === 0 ? 'block' : 'allow', hostnames: [i < GATEWAY_RULES / 2 ? domain : `*.${domain}`], sources: NameSource.Sni | NameSource.HttpHost });
  }
  return { rules, dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 4096 };
}

/** 1,000 hostname rules, then `flows` ClientHellos (half naming a rule's domain), each classified once. */
export function benchClassify(flows: number, next: () => number): ClassifyFigures {
  const rules: GatewayRuleSpec[] = [];
  const domains: string[] = [];
  for (let i = 0; i < GATEWAY_RULES; i++) {
    const domain = `d${i}.example-${i % 7}.com`;
    domains.push(domain);
    rules.push({ id: i + 1, action: i % 2 === 0 ? 'block' : 'allow', hostnames: [i < GATEWAY_RULES / 2 ? domain : `*.${domain}`], sources: NameSource.Sni, dstPorts: [[HTTPS, HTTPS]] });
  }
  const spec = { rules, dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' as const }, dlpScanBytes: 4096 };
  const policy = new FastGatewayPolicy(spec);
  const scan = new GatewayPolicy(spec);
  const hellos: Uint8Array[] = [];
  for (let f = 0; f < flows; f++) {
    const r = next() % GATEWAY_RULES;
    const matching = f % 2 === 0;
    const name = matching ? (r < GATEWAY_RULES / 2 ? domains[r] : `f${f}.${domains[r]}`) : `f${f}.unlisted-${r}.example.org`;
    hellos.push(syntheticClientHello(name));
  }
  const parser = new SniParser();
  const names: string[] = new Array<string>(flows).fill('');
  const sniNs = cpuNsPer(flows, (i) => {
    parser.reset();
    const r = parser.feed(hellos[i]);
    if (r.kind === 'name') names[i] = r.name;
  });
  if (names.some((n) => n === '')) throw new Error('benchClassify: a synthetic ClientHello gave no name');
  let matched = 0;
  const decideNs = cpuNsPer(flows, (i) => {
    if (policy.decide4(1, 1, IPPROTO_TCP, CLIENT, SERVER, 40000 + (i & 0x3fff), HTTPS, NameSource.Sni, names[i]) >= 0) matched++;
  });
  if (matched === 0) throw new Error('benchClassify: no flow matched a rule');
  const scanFlows = Math.min(flows, SCAN_FLOWS);
  let scanMatched = 0;
  const scanNs = cpuNsPer(scanFlows, (i) => {
    if (scan.decide4(1, 1, IPPROTO_TCP, CLIENT, SERVER, 40000 + (i & 0x3fff), HTTPS, NameSource.Sni, names[i]) >= 0) scanMatched++;
  });
  if (scanMatched === 0) throw new Error('benchClassify: the scan matched no flow');
  return {
    classify_sni_ns: Math.round(sniNs),
    classify_decide_ns: Math.round(decideNs),
    classify_decide_scan_ns: Math.round(scanNs),
    classify_per_flow_ns: Math.round(sniNs + decideNs),
    gateway_rules: GATEWAY_RULES,
    classified_flows: flows,
  };
}

/**
 * The cost of deciding established flows again after a policy change: `slab` holds one packet per flow (already
 * set up in `pipeline`). Pass 1 after setFirewall(the same rules): every packet finds its flow's epoch old and
 * re-evaluates; pass 2: the same packets (restored), flows current. The difference per packet is the re-evaluation.
 */
export function benchReevaluate(pipeline: Pipeline, slab: PacketBatch, batchSize: number): { reevaluate_ns: number; reevaluated: number } {
  const pristine = slab.data.slice();
  const slot = slab.slotSize;
  const batch = new PacketBatch(batchSize, slot, 0);
  const pass = (): number => {
    slab.data.set(pristine);
    const start = performance.now();
    for (let base = 0; base + batchSize <= slab.count; base += batchSize) {
      batch.data.set(slab.data.subarray(base * slot, (base + batchSize) * slot));
      for (let k = 0; k < batchSize; k++) {
        batch.offset[k] = k * slot;
        batch.length[k] = slab.length[base + k];
        batch.ingress[k] = slab.ingress[base + k];
      }
      batch.count = batchSize;
      pipeline.process(batch, 3000);
    }
    return performance.now() - start;
  };
  const before = pipeline.counters.flowsReevaluated;
  pipeline.setFirewall(pipeline.firewall);
  const stale = pass();
  const reevaluated = pipeline.counters.flowsReevaluated - before;
  const current = pass();
  const packets = Math.floor(slab.count / batchSize) * batchSize;
  return { reevaluate_ns: Math.round(((stale - current) * 1e6) / packets), reevaluated };
}
