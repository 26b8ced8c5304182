/**
 * `npm run bench:gateway` — the gateway's pure building blocks (src/gateway/, issue 12), one core, in process,
 * each beside a reference measured in the same run:
 *
 *   sni_ns            SniParser.reset() + feed() of a whole ClientHello: curl's (517 B) and Chromium's (2,021 B,
 *                     GREASE, ECH, a post-quantum key share). Reference: copying the same bytes into a buffer.
 *   http_ns           HttpHostParser on curl's GET (78 B) and a browser-sized request with cookies (~900 B).
 *                     Reference: Buffer.indexOf("\r\n\r\n") over the same bytes.
 *   dns_ns            parseDnsQuery on a c-ares query, and parse + buildNxdomain. Reference: copying the message.
 *   pipeline_dns_ns   The pipeline's DNS stage (src/dataplane/dns-gate.ts), one packet per process() call on an
 *                     established flow, with a block rule of 500 names and an override rule: a query no rule
 *                     matches (read, decided, forwarded) and a blocked one (answered by the edge). Reference: a
 *                     UDP packet of an established flow to port 443, same rules, same copy into the batch.
 *   match_ns          HostnameMatcher.match with 1,000 rules (500 exact, 500 "*.suffix"), names 2–5 labels, half of
 *                     them matching. Reference: Map.get of the same names in a Map of the 500 exact names.
 *   dlp_mb_s          DlpStream over 64 KiB of JSON-like text with digits, fed in 1,448-byte chunks (a TCP MSS):
 *                     each detector alone, then a profile with all of them (cards, IBANs, SSNs, 10 keywords,
 *                     one regex). Reference: Buffer.indexOf of one keyword over the same bytes (native memmem).
 *   dlp_flow_us       One flow's DLP as the pipeline runs it (src/dataplane/dlp-tracker.ts, the `cards` profile): a
 *                     slot taken, 64 KiB client → server in MSS segments and 4 KiB back, reassembled and scanned,
 *                     the slot returned; in order, and with every other pair of segments swapped (held, then
 *                     passed). Reference: DlpStream alone over the same bytes (dlp_stream_cards_us).
 *
 * Times are CPU time of this process (user + system) per operation: the machine is shared.
 * Options: --json (one JSON object), --quick (shorter runs).
 */
import { readFileSync } from 'node:fs';
import { DlpTracker } from '../src/dataplane/dlp-tracker.js';
import { PipelineCounters } from '../src/dataplane/pipeline.js';
import { DlpPolicy, DlpStream, type DlpProfileConfig } from '../src/gateway/dlp.js';
import { GatewayPolicy } from '../src/gateway/policy.js';
import { buildNxdomain, parseDnsQuery } from '../src/gateway/dns.js';
import { HostnameMatcher } from '../src/gateway/hostname-matcher.js';
import { HttpHostParser } from '../src/gateway/http-host.js';
import { SniParser } from '../src/gateway/tls-sni.js';
import { PacketBatch } from '../src/common/packet-batch.js';
import { Pipeline } from '../src/dataplane/pipeline.js';
import { NameSource } from '../src/gateway/policy.js';
import { NextHopKind } from '../src/route/route-table.js';
import { buildUdp } from '../src/wire/build.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const RUN_MS = args.includes('--quick') ? 100 : 400;
const NS_PER_US = 1e3;
const US_PER_MS = 1e3;
const BYTES_PER_MB = 1e6;
const MSS = 1448;
const DLP_STREAM = 64 * 1024;
const RULES = 1000;
const NAMES = 4096;

const testdata = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../src/gateway/testdata/${name}`, import.meta.url), 'utf8'));
const hellos = (testdata('client-hellos.json') as { hex: Record<string, string> }).hex;
const requests = (testdata('http-requests.json') as { text: Record<string, string> }).text;

function log(msg: string): void {
  if (!json) process.stderr.write(`${msg}\n`);
}

/** CPU nanoseconds per call of `fn`, which does `per` operations each call. */
function nsPerOp(fn: () => void, per = 1): number {
  for (let i = 0; i < 1000; i++) fn(); // warm up: let the optimizer settle
  let calls = 0;
  const start = process.cpuUsage();
  let used = 0;
  while (used < RUN_MS * US_PER_MS) {
    for (let i = 0; i < 100; i++) fn();
    calls += 100;
    const d = process.cpuUsage(start);
    used = d.user + d.system;
  }
  return (used * NS_PER_US) / (calls * per);
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));
const results: Record<string, number> = {};
let sink = 0;

// --- TLS SNI -------------------------------------------------------------------------------------------
const sni = new SniParser();
const copyBuf = new Uint8Array(16 * 1024);
for (const name of ['curl', 'chromium']) {
  const bytes = Uint8Array.from(Buffer.from(hellos[name], 'hex'));
  results[`sni_${name}_ns`] = round(nsPerOp(() => {
    sni.reset();
    if (sni.feed(bytes).kind === 'name') sink++;
  }));
  results[`sni_${name}_copy_ns`] = round(nsPerOp(() => {
    copyBuf.set(bytes);
    sink += copyBuf[bytes.length - 1];
  }));
}

// --- HTTP Host -----------------------------------------------------------------------------------------
const browser = 'GET /watch?v=abc123&list=xyz HTTP/1.1\r\nHost: video.example.com\r\nConnection: keep-alive\r\n' +
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n' +
  'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n' +
  'Accept-Encoding: gzip, deflate\r\nAccept-Language: en-US,en;q=0.9,de;q=0.8\r\n' +
  `Cookie: ${Array.from({ length: 12 }, (_, i) => `c${i}=${'v'.repeat(30)}`).join('; ')}\r\n\r\n`;
const http = new HttpHostParser();
const CRLFCRLF = Buffer.from('\r\n\r\n');
for (const [name, text] of [['curl', requests.curl], ['browser', browser]] as const) {
  const bytes = Buffer.from(text, 'latin1');
  results[`http_${name}_bytes`] = bytes.length;
  results[`http_${name}_ns`] = round(nsPerOp(() => {
    http.reset();
    if (http.feed(bytes).kind === 'name') sink++;
  }));
  results[`http_${name}_indexof_ns`] = round(nsPerOp(() => {
    sink += bytes.indexOf(CRLFCRLF);
  }));
}

// --- DNS -----------------------------------------------------------------------------------------------
const query = Uint8Array.from(Buffer.from('865a0100000100000000000003777777076578616d706c6503636f6d0000010001', 'hex'));
results.dns_parse_ns = round(nsPerOp(() => {
  if (parseDnsQuery(query).kind === 'query') sink++;
}));
results.dns_parse_nxdomain_ns = round(nsPerOp(() => {
  const r = parseDnsQuery(query);
  if (r.kind === 'query') sink += buildNxdomain(r.question).length;
}));
results.dns_copy_ns = round(nsPerOp(() => {
  sink += query.slice().length;
}));

// --- hostname matching with 1,000 rules ----------------------------------------------------------------
let seed = 12345;
const rand = (n: number): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % n; // the high bits: an LCG's low bits repeat with short periods
};
const word = (): string => Array.from({ length: 3 + rand(8) }, () => String.fromCharCode(97 + rand(26))).join('');
const tlds = ['com', 'net', 'org', 'io', 'de'];
const domains = Array.from({ length: RULES }, () => `${word()}.${tlds[rand(tlds.length)]}`);
const patterns = domains.map((d, i) => (i % 2 === 0 ? `www.${d}` : `*.${d}`));
const matcher = new HostnameMatcher(patterns);
const exact = new Map(patterns.filter((p) => !p.startsWith('*')).map((p, i) => [p, i]));
const names = Array.from({ length: NAMES }, (_, i) => {
  const base = i % 2 === 0 ? domains[rand(RULES)] : `${word()}.${tlds[rand(tlds.length)]}`;
  return `${Array.from({ length: rand(4) }, word).map((w) => `${w}.`).join('')}${base}`;
});
let hits = 0;
for (const n of names) if (matcher.match(n) >= 0) hits++;
results.match_rules = RULES;
results.match_hit_ratio = round(hits / NAMES, 2);
results.match_ns = round(nsPerOp(() => {
  for (let i = 0; i < NAMES; i++) sink += matcher.match(names[i]);
}, NAMES));
results.match_map_exact_ns = round(nsPerOp(() => {
  for (let i = 0; i < NAMES; i++) sink += exact.get(names[i]) ?? -1;
}, NAMES));

// --- DLP -----------------------------------------------------------------------------------------------
const parts: string[] = [];
let size = 0;
while (size < DLP_STREAM) {
  const p = `{"id":${rand(1e9)},"user":"${word()} ${word()}","amount":"${rand(99999)}.${rand(100)}","ref":"${rand(1e6)}-${rand(1e4)}","note":"${word()} ${word()} ${word()}"},\n`;
  parts.push(p);
  size += p.length;
}
const stream = Buffer.from(parts.join('').slice(0, DLP_STREAM), 'latin1');
const keywords = ['confidential', 'secret', 'internal only', 'password', 'api_key', 'private key', 'ssn', 'passport', 'salary', 'merger'];
const profiles: Record<string, DlpProfileConfig> = {
  cards: { name: 'p', cards: true },
  ibans: { name: 'p', ibans: true },
  ssns: { name: 'p', ssns: true },
  keywords: { name: 'p', keywords },
  regex: { name: 'p', regexes: ['AKIA[0-9A-Z]{16}'] },
  all: { name: 'p', cards: true, ibans: true, ssns: true, keywords, regexes: ['AKIA[0-9A-Z]{16}'] },
};
for (const [name, profile] of Object.entries(profiles)) {
  const dlp = new DlpStream(new DlpPolicy([profile], { scanBytes: DLP_STREAM }));
  const ns = nsPerOp(() => {
    dlp.reset();
    for (let at = 0; at < stream.length; at += MSS) dlp.feed(stream, at, Math.min(MSS, stream.length - at));
    dlp.end();
    sink += dlp.matches.length;
  });
  results[`dlp_${name}_mb_s`] = round((stream.length / BYTES_PER_MB) / (ns / 1e9));
}
const needle = Buffer.from('confidential');
const ns = nsPerOp(() => {
  sink += stream.indexOf(needle);
});
results.dlp_indexof_mb_s = round((stream.length / BYTES_PER_MB) / (ns / 1e9));

// One flow through the DLP tracker: per-flow cost of reassembly + scan, beside the scan alone.
const REPLY_BYTES = 4096;
const ISN = 1000;
const gw = new GatewayPolicy({
  rules: [{ id: 1, action: 'allow', dlp: ['cards'] }],
  dlpProfiles: [{ name: 'cards', cards: true, action: 'log' }],
  classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' },
  dlpScanBytes: DLP_STREAM,
});
const tracker = new DlpTracker(new PipelineCounters(), 16, 16, 4);
tracker.setPolicy(gw);
const segs: number[] = [];
for (let at = 0; at < stream.length; at += MSS) segs.push(at);
const swapped = [...segs];
for (let i = 0; i + 1 < swapped.length; i += 4) [swapped[i], swapped[i + 1]] = [swapped[i + 1], swapped[i]];
for (const [name, order] of [['in_order', segs], ['reordered', swapped]] as const) {
  results[`dlp_flow_${name}_us`] = round(nsPerOp(() => {
    tracker.start(0, 1, 0, ISN - 1, ISN - 1);
    for (const at of order) sink += tracker.segment(0, 1, 0, ISN + at, stream, at, Math.min(MSS, stream.length - at), false, false);
    for (let at = 0; at < REPLY_BYTES; at += MSS) sink += tracker.segment(0, 1, 1, ISN + at, stream, at, Math.min(MSS, REPLY_BYTES - at), false, at + MSS >= REPLY_BYTES);
    tracker.flowEnded(0, 1);
  }) / NS_PER_US, 2);
}
const alone = new DlpStream(new DlpPolicy([{ name: 'cards', cards: true }], { scanBytes: DLP_STREAM }));
results.dlp_stream_cards_us = round(nsPerOp(() => {
  alone.reset();
  for (let at = 0; at < stream.length; at += MSS) alone.feed(stream, at, Math.min(MSS, stream.length - at));
  alone.reset();
  for (let at = 0; at < REPLY_BYTES; at += MSS) alone.feed(stream, at, Math.min(MSS, REPLY_BYTES - at));
  alone.end();
  sink += alone.matches.length;
}) / NS_PER_US, 2);
// --- the pipeline's DNS stage ----------------------------------------------------------------------------
{
  const ONRAMP = 1;
  const pipeline = new Pipeline({
    onramps: [{ id: ONRAMP, name: 'site', type: 'wireguard', site: 1, automaticReturnRouting: true }],
    routes: [{ prefix: '0.0.0.0/0', kind: NextHopKind.Internet }],
    egress: { addresses: ['198.51.100.1'] },
    hashSeed: 1,
    gateway: {
      rules: [
        { id: 1, action: 'block', hostnames: domains.slice(0, RULES / 2) },
        { id: 2, action: 'override', hostnames: ['intranet.example'], sources: NameSource.Dns, override: { addresses: ['192.0.2.7'], ttl: 60 } },
      ],
      dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 65536,
    },
  });
  const dnsQuery = (name: string): Uint8Array => Uint8Array.from([0x86, 0x5a, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    ...name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]), 0, 0, 1, 0, 1]);
  const packet = (dstPort: number, payload: Uint8Array): Uint8Array => buildUdp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000 + dstPort, dstPort, payload });
  const batch = new PacketBatch(1);
  const send = (bytes: Uint8Array): void => {
    batch.clear();
    batch.push(bytes, 0, bytes.length, ONRAMP);
    pipeline.process(batch, 1000);
    sink += batch.nextHop[0] + pipeline.generated.count;
  };
  const plain = packet(443, dnsQuery('www.example.org'));
  const allowed = packet(53, dnsQuery('www.example.org'));
  const blocked = packet(53, dnsQuery(domains[7]));
  send(plain);
  send(allowed); // sets up both flows
  results.pipeline_udp_ns = round(nsPerOp(() => send(plain)));
  results.pipeline_dns_forward_ns = round(nsPerOp(() => send(allowed)));
  results.pipeline_dns_answer_ns = round(nsPerOp(() => send(blocked)));
  if (pipeline.counters.gatewayDnsAnswered === 0) throw new Error('bench: the blocked query was not answered');
}

if (sink === 0.5) log('');
if (json) {
  process.stdout.write(`${JSON.stringify(results)}\n`);
} else {
  for (const [k, v] of Object.entries(results)) log(`${k.padEnd(28)} ${v}`);
}
