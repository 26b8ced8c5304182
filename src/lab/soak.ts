/**
 * The soak (`npm run soak -- --minutes M`, docs/SOAK.md; issue 11): the lab under mixed, churning traffic from
 * every well-behaved site while a hostile site and a hostile Internet attack the edge, for minutes or hours,
 * with one report line per interval: the daemon's RSS, V8 heap and open file descriptors, its flows, drops by
 * reason, each site's exchanges, and the misdelivered replies — a reply that reached a site other than the one
 * that asked. That must stay 0.
 *
 *   site-a, site-b, site-c (all 10.0.1.10, WireGuard)   the well-behaved sites: SITE_CLIENT (UDP echo, HTTP,
 *                                                       each exchange on a fresh source port: flows churn) and
 *                                                       soak_ping.py (ICMP echo), to the Internet and the data
 *                                                       center. Every request names its site; the servers
 *                                                       echo it (servers.ts), the host checks the answer names
 *                                                       its own site.
 *   site-gre                                            the hostile site (soak_hostile.py --role site): spoofed
 *                                                       sources, a UDP flood from every port, a SYN flood, made-
 *                                                       up replies, garbage GRE; and a WireGuard handshake flood
 *                                                       from a key the edge does not know, at site-a's device.
 *   site-a's host                                       also a compromised host (soak_hostile.py --role
 *                                                       tunnel): sources outside site-a's allowed IPs.
 *   internet                                            forged replies to the pool (soak_hostile.py --role
 *                                                       internet): ports and addresses nobody talked to, ICMP
 *                                                       errors quoting made-up flows, echo replies, stray RSTs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { keyFromBase64, WireGuardDevice } from '../onramp/wireguard/index.js';
import { buildUdp } from '../wire/build.js';
import { LAB_WIREGUARD_KEYS } from './config.js';
import { inNamespaceOk } from './exec.js';
import { ensureLabTools, isAlive, labDown, labUp, type LabInfo } from './lab.js';
import { labSourceFile, SYSTEM_PYTHON } from './paths.js';
import { LAB } from './topology.js';

/** The API inside the edge namespace (the lab's config keeps the default listen address and port). */
const API_URL = 'http://127.0.0.1:8470';
const MIB = 1024 * 1024;
/** The route that sends the hostile site's handshake flood to site-a's device through the edge. */
const HANDSHAKE_TARGET = `${LAB.siteA.edgeEndpoint}:${LAB.wireguardPort}`;
/**
 * The hostile site's UDP flood, packets per second: within the unreplied-UDP timeout (120 s, RFC 4787 REQ-5) that is more flows than
 * its fair share of the flow table and its NAT-port quota (docs/FLOW-MODEL.md, "Fair shares"), so they must hold.
 */
const DEFAULT_FLOOD_RATE = 500;
/** The compromised host in site-a sends at the hostile rate divided by this (400/s → 50/s): its tunnel also carries site-a's own traffic. */
const TUNNEL_SHARE = 8;
/** How long children get after their own end to print their last line. */
const CHILD_GRACE_MS = 10_000;

export interface SoakOptions {
  /** The lab's prefix (default 'sk'). */
  prefix?: string;
  durationMs: number;
  /** One report per interval (default 60 s). */
  intervalMs?: number;
  /** Exchanges per second per kind (UDP, HTTP, ICMP) per well-behaved site; default 10. */
  siteRate?: number;
  /** Packets per second from the hostile site and from the hostile Internet; default 400 each. */
  hostileRate?: number;
  /** The hostile site's UDP flood (distinct source ports, unanswered), packets per second on top; default 500: enough to meet its flow and NAT-port quotas. */
  floodRate?: number;
  /** Handshake initiations per second in the flood; default 200. */
  handshakeRate?: number;
  /** The daemon's compiled entry point (see LabUpOptions.daemonEntry); default: under tsx. */
  daemonEntry?: string;
  /** Each interval's report line (default: stderr). */
  print?: (line: string) => void;
}

export interface ExchangeCounts {
  sent: number;
  ok: number;
  lost: number;
  /** Answers naming another site's request: misdelivered. */
  foreign: number;
  /** Answers naming no soak request (a forged one that found this site's mapping). */
  stray: number;
}

export type SiteKind = 'udp' | 'http' | 'icmp';

export interface SoakInterval {
  /** Seconds since traffic started. */
  t: number;
  rssMiB: number;
  heapMiB: number | null;
  fds: number;
  flows: number;
  /** Drops during the interval, by "family:reason" (pipeline, gre, wireguard:<device>, tun). */
  drops: Record<string, number>;
  /** Per site and kind, counts during the interval. */
  sites: Record<string, Record<SiteKind, ExchangeCounts>>;
  /** Hostile packets sent during the interval, by kind. */
  hostile: Record<string, number>;
  /** Misdelivered replies during the interval (every site and kind). */
  misdelivered: number;
}

export interface SoakReport {
  intervals: SoakInterval[];
  /** Totals over the run. */
  sites: Record<string, Record<SiteKind, ExchangeCounts>>;
  drops: Record<string, number>;
  hostile: Record<string, number>;
  misdelivered: number;
  edgeAlive: boolean;
  /** RSS and heap at the first and the last interval, and the most seen. */
  rssMiB: { first: number; last: number; max: number };
  heapMiB: { first: number | null; last: number | null; max: number | null };
  fds: { first: number; last: number; max: number };
}

/**
 * The well-behaved site's UDP and HTTP client (CommonJS, run with `node -e` in the site's namespace): each
 * exchange on its own socket (a fresh source port: a new flow), alternating the Internet and data-center
 * servers, `rate` of each kind per second; one JSON line of cumulative counts per second.
 */
const SITE_CLIENT = `
const dgram = require('node:dgram'), http = require('node:http');
const [site, targetsArg, seconds, rate] = process.argv.slice(1);
const targets = targetsArg.split(','), end = Date.now() + Number(seconds) * 1000;
const TIMEOUT_MS = 3000, MAX_IN_FLIGHT = 200;
const zero = () => ({ sent: 0, ok: 0, lost: 0, foreign: 0, stray: 0 });
const counts = { udp: zero(), http: zero() };
let n = 0, inFlight = 0;
function judge(c, named) {
  if (named === null) c.stray++;
  else if (named === site) c.ok++;
  else c.foreign++;
}
const siteOf = (text, re) => { const m = re.exec(text); return m ? m[1] : null; };
function udpOnce(target, i) {
  const c = counts.udp; c.sent++; inFlight++;
  const s = dgram.createSocket('udp4');
  let done = false;
  const finish = (fn) => { if (done) return; done = true; inFlight--; clearTimeout(t); fn(); try { s.close(); } catch {} };
  const t = setTimeout(() => finish(() => c.lost++), TIMEOUT_MS);
  s.on('error', () => finish(() => c.lost++));
  s.on('message', (m) => finish(() => {
    let p = null; try { p = JSON.parse(m.toString()).payload; } catch {}
    judge(c, typeof p === 'string' ? siteOf(p, /^soak (\\S+) /) : null);
  }));
  s.connect(7, target, () => s.send('soak ' + site + ' ' + i));
}
function httpOnce(target, i) {
  const c = counts.http; c.sent++; inFlight++;
  let done = false;
  const finish = (fn) => { if (done) return; done = true; inFlight--; fn(); };
  const req = http.get('http://' + target + '/soak-' + site + '?i=' + i, { agent: false, timeout: TIMEOUT_MS }, (res) => {
    const chunks = [];
    res.on('data', (b) => chunks.push(b));
    res.on('end', () => finish(() => {
      let p = null; try { p = JSON.parse(Buffer.concat(chunks).toString()).path; } catch {}
      judge(c, typeof p === 'string' ? siteOf(p, /^GET \\/soak-(\\S+)\\?/) : null);
    }));
    res.on('error', () => finish(() => c.lost++));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', () => finish(() => c.lost++));
}
const tick = setInterval(() => {
  if (Date.now() >= end) { clearInterval(tick); return; }
  if (inFlight >= MAX_IN_FLIGHT) { counts.udp.lost++; counts.http.lost++; return; }
  const i = n++, target = targets[i % targets.length];
  udpOnce(target, i); httpOnce(target, i);
}, 1000 / Number(rate));
const report = () => process.stdout.write(JSON.stringify(counts) + '\\n');
const reporter = setInterval(() => {
  report();
  if (Date.now() >= end && inFlight === 0) { clearInterval(reporter); process.exit(0); }
}, 1000);
`;

interface Child {
  name: string;
  proc: ChildProcess;
  /** The last JSON line it printed. */
  last: Record<string, unknown>;
  stderr: string[];
  exited: Promise<number | null>;
}

/** Starts `command` inside `ns` and keeps its last JSON line (each line carries cumulative counts). */
function startChild(name: string, ns: string, command: string, args: string[]): Child {
  const proc = spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const child: Child = {
    name, proc, last: {}, stderr: [],
    exited: new Promise((resolve) => proc.on('close', (code) => resolve(code))),
  };
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try { child.last = JSON.parse(line) as Record<string, unknown>; } catch { child.stderr.push(line); }
  });
  createInterface({ input: proc.stderr! }).on('line', (line) => { child.stderr.push(line); if (child.stderr.length > 20) child.stderr.shift(); });
  return child;
}

/** Every Prometheus sample of the daemon's /metrics, by its name and labels. */
async function scrape(lab: LabInfo): Promise<Map<string, number>> {
  const token = readFileSync(join(lab.runDir, 'api-token'), 'utf8').trim();
  const out = await inNamespaceOk(lab.names.edge, 'curl', ['-sf', '-H', `authorization: Bearer ${token}`, `${API_URL}/metrics`]);
  const samples = new Map<string, number>();
  for (const line of out.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

const DROP_FAMILIES: Array<[RegExp, (m: RegExpExecArray) => string]> = [
  [/^tether_drops_total\{reason="([^"]+)"\}$/, (m) => m[1]],
  [/^tether_gre_drops_total\{reason="([^"]+)"\}$/, (m) => `gre:${m[1]}`],
  [/^tether_wireguard_drops_total\{device="([^"]+)",reason="([^"]+)"\}$/, (m) => `${m[1]}:${m[2]}`],
  [/^tether_tun_busy_drops_total\{tun="([^"]+)"\}$/, (m) => `tun_busy:${m[1]}`],
];

/** Drop counters by "family:reason", from one scrape. */
export function dropsOf(samples: Map<string, number>): Record<string, number> {
  const drops: Record<string, number> = {};
  for (const [key, value] of samples) {
    for (const [re, name] of DROP_FAMILIES) {
      const m = re.exec(key);
      if (m !== null) drops[name(m)] = (drops[name(m)] ?? 0) + value;
    }
  }
  return drops;
}

function sumOf(samples: Map<string, number>, re: RegExp): number {
  let sum = 0;
  for (const [key, value] of samples) if (re.test(key)) sum += value;
  return sum;
}

/** The daemon's resident set and open descriptors, from /proc (the soak runs as root beside it). */
function procFigures(pid: number): { rssMiB: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  return { rssMiB: rssKiB / 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

function diff(now: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(now)) {
    const delta = v - (before[k] ?? 0);
    if (delta !== 0) d[k] = delta;
  }
  return d;
}

const KINDS: SiteKind[] = ['udp', 'http', 'icmp'];
const ZERO: ExchangeCounts = { sent: 0, ok: 0, lost: 0, foreign: 0, stray: 0 };

function countsDiff(now: ExchangeCounts, before: ExchangeCounts): ExchangeCounts {
  return { sent: now.sent - before.sent, ok: now.ok - before.ok, lost: now.lost - before.lost, foreign: now.foreign - before.foreign, stray: now.stray - before.stray };
}

/** One interval as a line: figures first, then each site's ok/lost(/foreign), then the drops. */
export function formatInterval(i: SoakInterval): string {
  const sites = Object.entries(i.sites).map(([site, k]) => `${site} ${KINDS.map((kind) => {
    const c = k[kind];
    return `${kind} ${c.ok}/${c.lost}${c.foreign ? `/FOREIGN ${c.foreign}` : ''}${c.stray ? ` stray ${c.stray}` : ''}`;
  }).join(' ')}`).join('; ');
  const drops = Object.entries(i.drops).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  const hostile = Object.values(i.hostile).reduce((a, b) => a + b, 0);
  return `soak t=${i.t}s rss=${i.rssMiB.toFixed(1)}MiB heap=${i.heapMiB === null ? '?' : i.heapMiB.toFixed(1)}MiB fds=${i.fds} flows=${i.flows}` +
    ` misdelivered=${i.misdelivered} | ok/lost: ${sites} | hostile sent ${hostile} | drops: ${drops || 'none'}`;
}

/** A handshake initiation from a key the edge does not know, toward site-a's device. */
function strangerInitiation(): string {
  const stranger = new WireGuardDevice({
    privateKey: randomBytes(32),
    peers: [{ publicKey: keyFromBase64(LAB_WIREGUARD_KEYS.edgeAPublic)!, endpoint: { addr: LAB.siteA.edgeEndpoint, port: LAB.wireguardPort } }],
  });
  const [initiation] = stranger.send(0, buildUdp({ src: '10.9.9.9', dst: LAB.internet.server }, { srcPort: 1, dstPort: 2 }), Date.now());
  return Buffer.from(initiation.data).toString('hex');
}

/**
 * Brings the lab up under `prefix` (removing leftovers first), runs the traffic for `durationMs` with a report
 * every `intervalMs`, and takes the lab down again (also on failure).
 */
export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const prefix = opts.prefix ?? 'sk';
  const intervalMs = opts.intervalMs ?? 60_000;
  const print = opts.print ?? ((line: string) => process.stderr.write(`${line}\n`));
  const seconds = String(opts.durationMs / 1000);
  const siteRate = String(opts.siteRate ?? 10);
  const hostileRate = String(opts.hostileRate ?? 400);
  await ensureLabTools();
  const lab = await labUp({ prefix, daemonEntry: opts.daemonEntry });
  const children: Child[] = [];
  try {
    const edge = lab.processes.find((p) => p.name === 'edge');
    if (edge === undefined) throw new Error('soak: the lab started no daemon');
    // The hostile site's handshake flood reaches site-a's device through the edge, as any routed sender's would.
    await inNamespaceOk(lab.names.siteGre, 'ip', ['route', 'replace', `${LAB.siteA.edgeEndpoint}/32`, 'via', `${LAB.siteGre.underlay}.${LAB.edgeSiteHost}`]);
    const sites: Record<string, string> = { 'site-a': lab.names.siteA, 'site-b': lab.names.siteB, 'site-c': lab.names.siteC };
    const targets = `${LAB.internet.server},${LAB.dc.server}`;
    const siteChildren: Array<{ site: string; client: Child; ping: Child }> = [];
    for (const [site, ns] of Object.entries(sites)) {
      const client = startChild(`${site} client`, ns, process.execPath, ['-e', SITE_CLIENT, site, targets, seconds, siteRate]);
      const ping = startChild(`${site} ping`, ns, SYSTEM_PYTHON, [labSourceFile('soak_ping.py'), '--site', site, '--targets', targets, '--seconds', seconds, '--rate', siteRate]);
      children.push(client, ping);
      siteChildren.push({ site, client, ping });
    }
    const hostileSite = startChild('hostile site', lab.names.siteGre, SYSTEM_PYTHON, [labSourceFile('soak_hostile.py'), '--role', 'site', '--seconds', seconds,
      '--rate', hostileRate, '--flood-rate', String(opts.floodRate ?? DEFAULT_FLOOD_RATE), '--wg-endpoint', HANDSHAKE_TARGET, '--initiation', strangerInitiation(), '--handshake-burst', String(opts.handshakeRate ?? 200)]);
    const hostileNet = startChild('hostile internet', lab.names.internet, SYSTEM_PYTHON, [labSourceFile('soak_hostile.py'), '--role', 'internet', '--seconds', seconds,
      '--rate', hostileRate, '--pool', LAB.internet.pool.replace(/\.0\/24$/, '.1')]);
    // A compromised host in site-a: sources outside its onramp's allowed IPs, through its real tunnel.
    const hostileHost = startChild('hostile host', lab.names.siteA, SYSTEM_PYTHON, [labSourceFile('soak_hostile.py'), '--role', 'tunnel', '--seconds', seconds,
      '--rate', String(Math.max(1, Number(hostileRate) / TUNNEL_SHARE))]);
    children.push(hostileSite, hostileNet, hostileHost);

    const siteCounts = (): Record<string, Record<SiteKind, ExchangeCounts>> => Object.fromEntries(siteChildren.map(({ site, client, ping }) => {
      const c = client.last as Partial<Record<SiteKind, ExchangeCounts>>;
      const p = ping.last as Partial<Record<SiteKind, ExchangeCounts>>;
      return [site, { udp: c.udp ?? ZERO, http: c.http ?? ZERO, icmp: p.icmp ?? ZERO }];
    }));
    const hostileCounts = (): Record<string, number> => ({
      ...((hostileSite.last.sent ?? {}) as Record<string, number>),
      ...((hostileNet.last.sent ?? {}) as Record<string, number>),
      ...((hostileHost.last.sent ?? {}) as Record<string, number>),
    });

    const started = Date.now();
    const intervals: SoakInterval[] = [];
    let prevDrops = dropsOf(await scrape(lab));
    const firstDrops = prevDrops;
    let prevSites = siteCounts();
    let prevHostile = hostileCounts();
    const finished = Promise.all(children.map((c) => c.exited));
    let done = false;
    void finished.then(() => { done = true; });
    const measure = async (): Promise<void> => {
      const samples = await scrape(lab);
      const { rssMiB, fds } = procFigures(edge.pid);
      const heap = samples.get('tether_process_nodejs_heap_size_used_bytes');
      const drops = dropsOf(samples);
      const nowSites = siteCounts();
      const nowHostile = hostileCounts();
      const sitesDelta = Object.fromEntries(Object.entries(nowSites).map(([site, k]) =>
        [site, Object.fromEntries(KINDS.map((kind) => [kind, countsDiff(k[kind], prevSites[site]?.[kind] ?? ZERO)])) as Record<SiteKind, ExchangeCounts>]));
      const interval: SoakInterval = {
        t: Math.round((Date.now() - started) / 1000),
        rssMiB, heapMiB: heap === undefined ? null : heap / MIB, fds,
        flows: sumOf(samples, /^tether_flows_active\{/),
        drops: diff(drops, prevDrops),
        sites: sitesDelta,
        hostile: diff(nowHostile, prevHostile),
        misdelivered: Object.values(sitesDelta).reduce((n, k) => n + KINDS.reduce((m, kind) => m + k[kind].foreign, 0), 0),
      };
      intervals.push(interval);
      print(formatInterval(interval));
      prevDrops = drops;
      prevSites = nowSites;
      prevHostile = nowHostile;
    };
    const deadline = started + opts.durationMs + CHILD_GRACE_MS;
    for (let next = started + intervalMs; ; next += intervalMs) {
      while (Date.now() < next && !done) await new Promise((r) => setTimeout(r, Math.min(500, next - Date.now())));
      if (!isAlive(edge.pid)) throw new Error(`soak: the edge (pid ${edge.pid}) died; see ${lab.edgeLog}`);
      await measure();
      if (done || Date.now() > deadline) break;
    }
    await Promise.race([finished, new Promise((r) => setTimeout(r, CHILD_GRACE_MS))]);
    for (const c of children) {
      const code = c.proc.exitCode;
      if (code !== null && code !== 0) throw new Error(`soak: ${c.name} exited with ${code}: ${c.stderr.join('\n')}`);
    }
    const totals = siteCounts();
    const last = intervals[intervals.length - 1];
    const first = intervals[0];
    const heaps = intervals.map((i) => i.heapMiB).filter((h): h is number => h !== null);
    return {
      intervals,
      sites: totals,
      drops: diff(prevDrops, firstDrops),
      hostile: hostileCounts(),
      misdelivered: Object.values(totals).reduce((n, k) => n + KINDS.reduce((m, kind) => m + k[kind].foreign, 0), 0),
      edgeAlive: isAlive(edge.pid),
      rssMiB: { first: first.rssMiB, last: last.rssMiB, max: Math.max(...intervals.map((i) => i.rssMiB)) },
      heapMiB: { first: first.heapMiB, last: last.heapMiB, max: heaps.length ? Math.max(...heaps) : null },
      fds: { first: first.fds, last: last.fds, max: Math.max(...intervals.map((i) => i.fds)) },
    };
  } finally {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    await labDown({ prefix });
  }
}
