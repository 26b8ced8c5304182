/**
 * Measuring a failover in the lab (the end-to-end test and `npm run bench:failover`): a checksummed download
 * that reports its own progress and stalls, a watcher of a link's byte counters that reports when data
 * starts to flow on it, a watcher of the onramps' health states as the API shows them, and a steady UDP
 * stream (one long flow, paused and resumed at will: drain's failback). All run as small CommonJS clients
 * inside a namespace (`ip netns exec … node -e`), like helpers.ts's, and print JSON lines; times are
 * wall-clock milliseconds (Date.now()), comparable with the moment cutSiteCPrimary() returns because every
 * process reads the same clock.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { runOk } from './exec.js';
import { cutSiteCPrimary, siteCUnderlayLink } from './site-c.js';
import { LAB, type LabNames } from './topology.js';

/** A pause in the download's progress: no data between `from` and `to` (ms), after `atBytes` bytes. */
export interface DownloadGap {
  from: number;
  to: number;
  atBytes: number;
}

export interface DownloadResult {
  status?: number;
  bytes: number;
  /** SHA-256 of the bytes received (hex). */
  sha256: string;
  /** The server's SHA-256 of the bytes it sent, from the `x-sha256` trailer; absent when the trailer never came. */
  serverSha256?: string;
  /** Node's error code (ECONNRESET, ETIMEDOUT, …) when the transfer failed. */
  error?: string;
  startedAt: number;
  endedAt: number;
  /** Pauses longer than the gap threshold, in order. */
  gaps: DownloadGap[];
}

export interface DownloadOptions {
  /** A gap in progress at least this long is reported. Default 50 ms. */
  gapMs?: number;
  /** A progress line every this many bytes. Default 8 MiB. */
  progressBytes?: number;
  /** Give up (ETIMEDOUT) after this long without a byte. Default 30 s. */
  idleTimeoutMs?: number;
}

const DOWNLOAD_CLIENT = `
const http = require('node:http');
const { createHash } = require('node:crypto');
const [url, gapMs, progressBytes, idleTimeoutMs] = process.argv.slice(1).map((a, i) => (i === 0 ? a : Number(a)));
const hash = createHash('sha256');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const r = { bytes: 0, startedAt: Date.now(), gaps: [] };
let last = r.startedAt, nextProgress = progressBytes, done = false;
const finish = (extra) => { if (done) return; done = true; Object.assign(r, extra, { sha256: hash.digest('hex'), endedAt: Date.now() }); out({ result: r }); process.exit(0); };
const req = http.get(url, { agent: false, timeout: idleTimeoutMs }, (res) => {
  r.status = res.statusCode;
  res.on('data', (c) => {
    const now = Date.now();
    if (now - last >= gapMs) r.gaps.push({ from: last, to: now, atBytes: r.bytes });
    last = now;
    hash.update(c);
    r.bytes += c.length;
    if (r.bytes >= nextProgress) { out({ progress: r.bytes, t: now }); nextProgress += progressBytes; }
  });
  res.on('end', () => finish({ serverSha256: res.trailers['x-sha256'] }));
  res.on('error', (e) => finish({ error: e.code || e.message }));
});
req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
req.on('error', (e) => finish({ error: e.code || e.message }));
`;

/** The download's longest pause that ended after `cutAt` (ms): its own view of a failover. Null when none was reported. */
export function stallAfter(r: DownloadResult, cutAt: number): DownloadGap | null {
  let longest: DownloadGap | null = null;
  for (const g of r.gaps) if (g.to > cutAt && (longest === null || g.to - g.from > longest.to - longest.from)) longest = g;
  return longest;
}

/** A download running in a namespace: progress as it goes, the result at the end. */
export interface Download {
  /** Resolves with the byte count once at least `bytes` have arrived (or rejects when the download ended first). */
  reached(bytes: number): Promise<number>;
  readonly result: Promise<DownloadResult>;
}

/** GETs `url` from inside `ns`, hashing what arrives (servers.ts's /download sends its own hash as a trailer). */
export function startDownload(ns: string, url: string, opts: DownloadOptions = {}): Download {
  const args = [url, String(opts.gapMs ?? 50), String(opts.progressBytes ?? 8 * 1024 * 1024), String(opts.idleTimeoutMs ?? 30_000)];
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', DOWNLOAD_CLIENT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let received = 0;
  const waiters: Array<{ bytes: number; resolve: (n: number) => void; reject: (e: Error) => void }> = [];
  const stderr: string[] = [];
  child.stderr.on('data', (b: Buffer) => stderr.push(b.toString()));
  const result = new Promise<DownloadResult>((resolve, reject) => {
    let final: DownloadResult | undefined;
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { progress?: number; result?: DownloadResult };
      if (msg.progress !== undefined) received = msg.progress;
      if (msg.result) final = msg.result;
      for (const w of waiters.filter((x) => received >= x.bytes)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(received);
      }
    });
    child.on('close', (code) => {
      const why = new Error(`download of ${url} in ${ns} ended (exit ${code}) ${final ? `at ${final.bytes} bytes` : stderr.join('')}`);
      for (const w of waiters.splice(0)) w.reject(why);
      if (final) resolve(final);
      else reject(why);
    });
  });
  result.catch(() => undefined);
  return {
    result,
    reached: (bytes) => (received >= bytes ? Promise.resolve(received) : new Promise((resolve, reject) => waiters.push({ bytes, resolve, reject }))),
  };
}

const LINK_WATCHER = `
const { readFileSync } = require('node:fs');
const [iface, pollMs, quietMs, minAvg] = process.argv.slice(1).map((a, i) => (i === 0 ? a : Number(a)));
const dir = '/sys/class/net/' + iface + '/statistics/';
const read = () => [Number(readFileSync(dir + 'rx_bytes', 'utf8')), Number(readFileSync(dir + 'rx_packets', 'utf8'))];
const [startBytes] = read();
let [bytes, packets] = read(), lastData = 0;
process.stdout.write(JSON.stringify({ ready: true, t: Date.now() }) + '\\n');
setInterval(() => {
  const [b, p] = read(), now = Date.now();
  // Data, not keepalives or probes: this poll's packets average a near-full-size datagram.
  if (p > packets && (b - bytes) / (p - packets) >= minAvg) {
    if (now - lastData >= quietMs) process.stdout.write(JSON.stringify({ dataStarted: now, packets: p - packets, bytes: b - bytes }) + '\\n');
    lastData = now;
  }
  bytes = b; packets = p;
}, pollMs);
process.stdin.on('end', () => { process.stdout.write(JSON.stringify({ rxBytes: read()[0] - startBytes }) + '\\n'); process.exit(0); });
process.stdin.resume();
`;

export interface LinkWatcherOptions {
  /** Counter poll interval. Default 2 ms: the resolution of the measurement. */
  pollMs?: number;
  /** A data start is reported after at least this long without data. Default 200 ms. */
  quietMs?: number;
  /**
   * Mean bytes per received packet (link-layer frame) that marks a poll as data. Default 1000: WireGuard
   * keepalives (32-byte messages) and ICMP health probes (a few dozen bytes inside the tunnel) stay far below;
   * a full-size TCP segment in WireGuard is about 1,480.
   */
  minAverageBytes?: number;
}

/** Watches a link's receive counters from inside its namespace. */
export interface LinkWatcher {
  readonly ready: Promise<void>;
  /** The first time data started on the link at or after `since` (ms), or null if not within timeoutMs. */
  dataStartedAfter(since: number, timeoutMs: number): Promise<number | null>;
  /** Stops the watcher; resolves with the bytes the link received while it ran. */
  stop(): Promise<number>;
}

export function watchLink(ns: string, iface: string, opts: LinkWatcherOptions = {}): LinkWatcher {
  const args = [iface, String(opts.pollMs ?? 2), String(opts.quietMs ?? 200), String(opts.minAverageBytes ?? 1000)];
  const child = spawnClient(ns, LINK_WATCHER, args);
  const starts = new Sightings<number>();
  let onReady!: () => void;
  let onTotal!: (n: number) => void;
  const ready = new Promise<void>((resolve) => { onReady = resolve; });
  const total = new Promise<number>((resolve) => { onTotal = resolve; });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line) as { ready?: boolean; dataStarted?: number; rxBytes?: number };
    if (msg.ready) onReady();
    if (msg.dataStarted !== undefined) starts.add(msg.dataStarted);
    if (msg.rxBytes !== undefined) onTotal(msg.rxBytes);
  });
  child.on('close', () => onTotal(-1));
  return {
    ready,
    dataStartedAfter: (since, timeoutMs) => starts.first((t) => t >= since, timeoutMs),
    stop() {
      child.stdin.end();
      return total;
    },
  };
}

/** A small CommonJS client run with `node -e` inside a namespace, stdio piped (its stdin's end tells it to stop). */
function spawnClient(ns: string, script: string, args: string[]): ChildProcessWithoutNullStreams {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, ...args], { stdio: 'pipe' });
}

/** What a watcher has seen so far, in order, and waits for the first that matches. */
class Sightings<T> {
  readonly seen: T[] = [];
  private readonly listeners = new Set<() => void>();

  add(item: T): void {
    this.seen.push(item);
    for (const l of [...this.listeners]) l();
  }

  /** The first sighting that matches, as soon as there is one; null when none came within timeoutMs. */
  first(match: (item: T) => boolean, timeoutMs: number): Promise<T | null> {
    const found = () => this.seen.find(match) ?? null;
    const now = found();
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve) => {
      const check = () => {
        const t = found();
        if (t === null) return;
        this.listeners.delete(check);
        clearTimeout(timer);
        resolve(t);
      };
      const timer = setTimeout(() => { this.listeners.delete(check); resolve(null); }, timeoutMs);
      this.listeners.add(check);
    });
  }
}

const HEALTH_WATCHER = `
const { readFileSync } = require('node:fs');
const [api, tokenFile, pollMs] = process.argv.slice(1).map((a, i) => (i === 2 ? Number(a) : a));
const headers = { authorization: 'Bearer ' + readFileSync(tokenFile, 'utf8').trim() };
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const last = new Map();
let stopping = false, first = true;
async function poll() {
  const t = Date.now();
  try {
    const res = await fetch(api + '/v1/onramps', { headers });
    if (!res.ok) throw new Error('GET /v1/onramps: ' + res.status);
    for (const o of await res.json()) {
      const h = o.health;
      if (h && last.get(o.name) !== h.state) { last.set(o.name, h.state); out({ onramp: o.name, state: h.state, penalty: h.penalty, t }); }
    }
    if (first) { first = false; out({ ready: true }); }
  } catch (e) { out({ error: String(e && e.message || e) }); }
  if (!stopping) setTimeout(poll, pollMs);
}
poll();
process.stdin.on('end', () => { stopping = true; process.exit(0); });
process.stdin.resume();
`;

/** An onramp seen in a health state: `t` is the wall-clock time (ms) of the poll that first saw it. */
export interface HealthSighting {
  onramp: string;
  state: 'healthy' | 'degraded' | 'down';
  penalty: number;
  t: number;
}

export interface HealthWatcher {
  /** Resolves after the first poll (every onramp's state at the start is in `seen`). */
  readonly ready: Promise<void>;
  /** Every change of an onramp's state, in order (the first poll's states included). */
  readonly seen: readonly HealthSighting[];
  /** Errors of the polls (HTTP status, connection), in order. */
  readonly errors: readonly string[];
  /** The first time at or after `since` (ms) the onramp was seen in `state`; null when not within timeoutMs. */
  reached(onramp: string, state: HealthSighting['state'], since: number, timeoutMs: number): Promise<number | null>;
  stop(): void;
}

/**
 * Polls the edge's GET /v1/onramps (with the bearer token) from inside its namespace every `pollMs` (default 50)
 * and reports each onramp's health state when it changes: the API's view of a cut, as an operator sees it.
 */
export function watchHealth(ns: string, api: string, tokenFile: string, pollMs = 50): HealthWatcher {
  const child = spawnClient(ns, HEALTH_WATCHER, [api, tokenFile, String(pollMs)]);
  const sightings = new Sightings<HealthSighting>();
  const errors: string[] = [];
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => { onReady = resolve; });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line) as Partial<HealthSighting> & { ready?: boolean; error?: string };
    if (msg.ready) onReady();
    else if (msg.error !== undefined) errors.push(msg.error);
    else sightings.add(msg as HealthSighting);
  });
  return {
    ready,
    seen: sightings.seen,
    errors,
    reached: async (onramp, state, since, timeoutMs) =>
      (await sightings.first((s) => s.onramp === onramp && s.state === state && s.t >= since, timeoutMs))?.t ?? null,
    stop: () => void child.stdin.end(),
  };
}

const UDP_STREAM = `
const dgram = require('node:dgram');
const [dst, port, sourcePort, bytes, intervalMs] = process.argv.slice(1).map((a, i) => (i === 0 ? a : Number(a)));
const s = dgram.createSocket('udp4');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const payload = Buffer.alloc(bytes, 'x');
let sent = 0, received = 0, paused = false, first = true;
s.on('message', () => { received++; if (first) { first = false; out({ ready: true }); } });
s.on('error', () => undefined);
s.bind(sourcePort, () => s.connect(port, dst, () => setInterval(() => { if (!paused) { sent++; s.send(payload); } }, intervalMs)));
require('node:readline').createInterface({ input: process.stdin }).on('line', (cmd) => {
  if (cmd === 'pause') paused = true;
  if (cmd === 'resume') paused = false;
  out({ sent, received });
}).on('close', () => { out({ sent, received }); process.exit(0); });
`;

export interface UdpStreamOptions {
  /** The client's UDP port (one flow for the whole stream). */
  sourcePort: number;
  /** Payload bytes per datagram. Default 1000: its echo is far above a keepalive or a probe on a link's counters. */
  bytes?: number;
  /** One datagram every this many ms. Default 50. */
  intervalMs?: number;
}

export interface UdpStreamCounts {
  sent: number;
  received: number;
}

/** A long-lived UDP flow: datagrams at a steady pace to an echo server from one source port, paused and resumed at will. */
export interface UdpStream {
  /** Resolves at the first echo (rejects when the client ends first). */
  readonly ready: Promise<void>;
  pause(): Promise<UdpStreamCounts>;
  resume(): Promise<UdpStreamCounts>;
  /** Ends the client (again: the same answer); resolves with its final counts. */
  stop(): Promise<UdpStreamCounts>;
}

/** Starts a UDP stream from inside `ns` to `dst:port` (the lab's echo servers answer every datagram). */
export function startUdpStream(ns: string, dst: string, port: number, opts: UdpStreamOptions): UdpStream {
  const child = spawnClient(ns, UDP_STREAM, [dst, String(port), String(opts.sourcePort), String(opts.bytes ?? 1000), String(opts.intervalMs ?? 50)]);
  const answers: Array<{ resolve: (c: UdpStreamCounts) => void; reject: (e: Error) => void }> = [];
  const stderr: string[] = [];
  let onReady!: () => void;
  let onEnd!: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => { onReady = resolve; onEnd = reject; });
  ready.catch(() => undefined);
  let last: UdpStreamCounts | null = null;
  const ended = new Promise<UdpStreamCounts>((resolve, reject) => {
    child.on('close', (code) => {
      const why = new Error(`the UDP stream in ${ns} ended (exit ${code}) ${stderr.join('')}`);
      onEnd(why);
      for (const a of answers.splice(0)) a.reject(why);
      if (last !== null) resolve(last);
      else reject(why);
    });
  });
  ended.catch(() => undefined);
  child.stderr.on('data', (b: Buffer) => stderr.push(b.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line) as UdpStreamCounts & { ready?: boolean };
    if (msg.ready) return onReady();
    last = msg;
    answers.shift()?.resolve(msg);
  });
  const ask = (cmd: string) => new Promise<UdpStreamCounts>((resolve, reject) => {
    if (child.exitCode !== null) return reject(new Error(`the UDP stream in ${ns} has ended`));
    answers.push({ resolve, reject });
    child.stdin.write(`${cmd}\n`);
  });
  return {
    ready,
    pause: () => ask('pause'),
    resume: () => ask('resume'),
    stop() {
      child.stdin.end();
      return ended;
    },
  };
}

/** A link's receive byte counter, read once from inside its namespace. */
export async function linkRxBytes(ns: string, iface: string): Promise<number> {
  return Number(await runOk('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${iface}/statistics/rx_bytes`]));
}

export interface FailoverOptions {
  /** Download size. */
  bytes: number;
  /** The cut comes once this share has arrived. Default 0.4. */
  cutAtShare?: number;
  /** How long to wait for data on the backup, and the download's idle timeout. Default 30 s. */
  giveUpMs?: number;
}

export interface FailoverMeasurement {
  download: DownloadResult;
  /** Wall-clock ms of the cut. */
  cutAt: number;
  /** Cut to first data on the backup's underlay link (ms); null when none came within giveUpMs. */
  failoverMs: number | null;
  /** The download's longest pause ending after the cut. */
  stall: DownloadGap | null;
  /** Bytes the router received on the backup's underlay link from just before the download to its end. */
  backupBytes: number;
}

/**
 * One failover of site-c: a download from the Internet server to site-c's host, the primary cut once a share
 * of it has arrived (cutSiteCPrimary), data on the backup's underlay link watched from the router's counters.
 * The primary stays cut (restoreSiteCPrimary brings it back).
 */
export async function measureSiteCFailover(names: LabNames, opts: FailoverOptions): Promise<FailoverMeasurement> {
  const giveUpMs = opts.giveUpMs ?? 30_000;
  const watcher = watchLink(names.siteCRouter, siteCUnderlayLink('backup'));
  try {
    await watcher.ready;
    const download = startDownload(names.siteC, `http://${LAB.internet.server}/download?bytes=${opts.bytes}`, { idleTimeoutMs: giveUpMs });
    await download.reached(opts.bytes * (opts.cutAtShare ?? 0.4));
    const cutAt = await cutSiteCPrimary(names);
    const backupAt = await watcher.dataStartedAfter(cutAt, giveUpMs);
    const result = await download.result;
    return { download: result, cutAt, failoverMs: backupAt === null ? null : backupAt - cutAt, stall: stallAfter(result, cutAt), backupBytes: await watcher.stop() };
  } finally {
    await watcher.stop();
  }
}
