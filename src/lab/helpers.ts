/**
 * Traffic helpers for the end-to-end tests and the quick start: each runs a small client inside a lab
 * namespace (`ip netns exec`), so the client's source address is that namespace's (a site's host 10.0.1.10).
 * Failures of the client itself (cannot start, bad output) throw; network outcomes (timeouts, refusals) are
 * returned as values, because tests assert on them.
 */
import { inNamespace, LabCommandError, formatCommand } from './exec.js';
import { labSourceFile, SYSTEM_PYTHON } from './paths.js';

export { inNamespace, inNamespaceOk } from './exec.js';

/** What the lab's HTTP and UDP echo servers (servers.ts) answer: unique per request. */
export interface ServerReply {
  /** 'inet' or 'dc'. */
  server: string;
  /** Random per server process. */
  instance: string;
  /** Request counter of that server process (HTTP and UDP share it). */
  n: number;
  /** The peer address and port the server saw (after NAT, if any). */
  client: { address: string; port: number };
  /** HTTP: "GET /path". */
  path?: string;
  /** UDP: the datagram's payload as UTF-8. */
  payload?: string;
}

export interface HttpResult {
  ok: boolean;
  status?: number;
  body?: string;
  /** Node's error code or message when !ok (ETIMEDOUT when the timeout expired). */
  error?: string;
}

export interface HttpOptions {
  /** Per request, milliseconds. Default 5000. */
  timeoutMs?: number;
  /** Requests in flight at once (httpGetMany). Default 8. */
  concurrency?: number;
}

// The clients are plain CommonJS run with `node -e` (no tsx start-up cost: ~40 ms per namespace process).
const HTTP_CLIENT = `
const http = require('node:http');
const [url, count, concurrency, timeoutMs] = process.argv.slice(1);
const total = Number(count), results = new Array(total);
let next = 0;
function one(i) {
  return new Promise((done) => {
    const sep = url.includes('?') ? '&' : '?';
    const req = http.get(url + sep + 'i=' + i, { agent: false, timeout: Number(timeoutMs) }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => { results[i] = { ok: res.statusCode === 200, status: res.statusCode, body: Buffer.concat(chunks).toString() }; done(); });
      res.on('error', (e) => { results[i] = { ok: false, error: e.code || e.message }; done(); });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => { results[i] = { ok: false, error: e.code || e.message }; done(); });
  });
}
async function worker() { while (next < total) await one(next++); }
Promise.all(Array.from({ length: Math.min(Number(concurrency), total) }, worker))
  .then(() => process.stdout.write(JSON.stringify(results)));
`;

const UDP_CLIENT = `
const dgram = require('node:dgram');
const [dst, port, payloadHex, timeoutMs, sourcePort] = process.argv.slice(1);
const s = dgram.createSocket(dst.includes(':') ? 'udp6' : 'udp4');
const finish = (r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); };
s.on('error', (e) => finish(e.code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'error', error: e.code || e.message }));
s.on('message', (m, rinfo) => finish({ kind: 'reply', payload: m.toString('utf8'), from: { address: rinfo.address, port: rinfo.port } }));
s.bind(Number(sourcePort), () => s.connect(Number(port), dst, () => {
  s.send(Buffer.from(payloadHex, 'hex'));
  setTimeout(() => finish({ kind: 'timeout' }), Number(timeoutMs));
}));
`;

async function runNodeClient(ns: string, script: string, args: string[], timeoutMs: number): Promise<unknown> {
  const fullArgs = ['-e', script, ...args];
  const result = await inNamespace(ns, process.execPath, fullArgs, { timeoutMs });
  const shown = formatCommand('ip', ['netns', 'exec', ns, 'node', '-e', '<client>', ...args]);
  if (result.code !== 0) throw new LabCommandError(shown, result);
  try {
    return JSON.parse(result.stdout) as unknown;
  } catch {
    throw new LabCommandError(shown, { ...result, stderr: `unexpected output: ${result.stdout}\n${result.stderr}` });
  }
}

/** `count` GET requests (each gets `?i=N` appended) from inside `ns`, `concurrency` at a time; results in order. */
export async function httpGetMany(ns: string, url: string, count: number, opts: HttpOptions = {}): Promise<HttpResult[]> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const concurrency = opts.concurrency ?? 8;
  const budget = timeoutMs * Math.ceil(count / concurrency) + 10_000;
  return (await runNodeClient(ns, HTTP_CLIENT, [url, String(count), String(concurrency), String(timeoutMs)], budget)) as HttpResult[];
}

/** One GET from inside `ns`; returns the body; throws (naming the namespace and URL) unless the status is 200. */
export async function httpGet(ns: string, url: string, opts: HttpOptions = {}): Promise<string> {
  const [r] = await httpGetMany(ns, url, 1, opts);
  if (!r.ok) throw new Error(`GET ${url} from namespace ${ns}: ${r.error ?? `HTTP ${r.status}`}`);
  return r.body ?? '';
}

export type UdpResult =
  | { kind: 'reply'; payload: string; from: { address: string; port: number } }
  /** ICMP port unreachable came back (ECONNREFUSED on the connected socket). */
  | { kind: 'refused' }
  | { kind: 'timeout' }
  | { kind: 'error'; error: string };

export interface UdpOptions {
  /** Default 3000 ms. */
  timeoutMs?: number;
  /** Local port; default 0 (the kernel picks). */
  sourcePort?: number;
}

/** Sends one datagram from inside `ns` on a connected socket and reports the first answer. */
export async function udpExchange(ns: string, dst: string, port: number, payload: string | Uint8Array, opts: UdpOptions = {}): Promise<UdpResult> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const hex = Buffer.from(typeof payload === 'string' ? Buffer.from(payload) : payload).toString('hex');
  return (await runNodeClient(ns, UDP_CLIENT, [dst, String(port), hex, String(timeoutMs), String(opts.sourcePort ?? 0)], timeoutMs + 10_000)) as UdpResult;
}

// ─── GRE peer (gre-peer.py) ──────────────────────────────────────────────────────────────────────────

export interface GrePeerOptions {
  /** Outer source (the site's tunnel endpoint). Default 192.168.103.2; 192.168.103.3 also exists in the lab. */
  outerSrc?: string;
  /** Outer destination (the edge's endpoint). Default 192.168.103.1. */
  outerDst?: string;
  key?: number;
  /** Inner source. Default 10.0.1.10. */
  innerSrc?: string;
  /** Inner destination. Default 203.0.113.10. */
  dst?: string;
  proto?: 'udp' | 'tcp' | 'icmp';
  sport?: number;
  dport?: number;
  /** Added to the source port (ICMP id) for each successive packet. */
  sportStep?: number;
  payload?: string;
  /** Raw inner packet bytes instead of a built one (hostile-input tests). */
  innerHex?: string;
  count?: number;
  /** Seconds between packets. */
  interval?: number;
  /** Seconds to wait for replies after the last packet. Default 2. */
  wait?: number;
  /** Stop waiting after this many replies. */
  expect?: number;
}

export interface GreReplyInner {
  src: string;
  dst: string;
  proto: number;
  len: number;
  sport?: number;
  dport?: number;
  tcp_flags?: string;
  seq?: number;
  ack?: number;
  options?: Array<[string, number | null]>;
  payload?: string;
  icmp_type?: number;
  icmp_code?: number;
  icmp_id?: number;
  icmp_seq?: number;
  /** ICMP errors: the quoted packet's header. */
  quoted?: { src: string; dst: string; proto: number; sport?: number; dport?: number };
  raw?: string;
}

export interface GreReply {
  outer: { src: string; dst: string };
  key: number | null;
  gre_proto?: number;
  inner: GreReplyInner | null;
}

export interface GrePeerResult {
  sent: number;
  received: number;
  replies: GreReply[];
}

/** The argument list of gre-peer.py for these options (for the quick start's printed commands, too). */
export function grePeerArgs(opts: GrePeerOptions = {}): string[] {
  const flags: Array<[string, string | number | undefined]> = [
    ['--outer-src', opts.outerSrc], ['--outer-dst', opts.outerDst], ['--key', opts.key],
    ['--inner-src', opts.innerSrc], ['--dst', opts.dst], ['--proto', opts.proto],
    ['--sport', opts.sport], ['--dport', opts.dport], ['--sport-step', opts.sportStep],
    ['--payload', opts.payload], ['--inner-hex', opts.innerHex], ['--count', opts.count],
    ['--interval', opts.interval], ['--wait', opts.wait], ['--expect', opts.expect],
  ];
  const args = [labSourceFile('gre-peer.py')];
  for (const [flag, value] of flags) if (value !== undefined) args.push(flag, String(value));
  return args;
}

/** Runs gre-peer.py in the GRE site namespace: sends, then collects the GRE replies to its endpoint. */
export async function grePeer(ns: string, opts: GrePeerOptions = {}): Promise<GrePeerResult> {
  const args = grePeerArgs(opts);
  const waitMs = ((opts.wait ?? 2) + (opts.interval ?? 0) * (opts.count ?? 1)) * 1000;
  const result = await inNamespace(ns, SYSTEM_PYTHON, args, { timeoutMs: waitMs + 20_000 });
  if (result.code !== 0) throw new LabCommandError(formatCommand('ip', ['netns', 'exec', ns, SYSTEM_PYTHON, ...args]), result);
  const lines = result.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as GreReply | { sent: number; received: number });
  const summary = lines.pop() as { sent: number; received: number } | undefined;
  return { sent: summary?.sent ?? 0, received: summary?.received ?? 0, replies: lines as GreReply[] };
}
