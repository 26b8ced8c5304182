/**
 * bench:lab's figures for issue 10's "no silent loss" and "latency" (items 3 and 6; docs/PERFORMANCE.md), used by
 * bench/lab.ts on its topology:
 *
 *   burst     two WireGuard sites at once, each BURST_DATAGRAMS 64-byte UDP datagrams back to back (36 B payload
 *             + 8 UDP + 20 IPv4, as iperf3 -l 36), all started at one instant; a counting server in <p>-inet with a
 *             64 MiB receive buffer counts each site's distinct datagrams. tether (two wireguard-go sites → its
 *             WireGuard onramp) and the wireguard-go + kernel edge (two wireguard-go sites → wireguard-go, kernel
 *             forwarding and SNAT) in the same run, rounds alternating. Share = delivered / sent. The kernel's drop
 *             counters at every hop are read around each burst, so a loss is placed.
 *   latency   ping (ICMP echo, -i 0.01) and a TCP request/response (64 bytes each way, TCP_NODELAY, one connection,
 *             N round trips timed by the client) from a site to the server, through tether and through the
 *             reference edge, same run: p50 and p99 of the round trip, and what tether adds.
 *
 * A benchmark, not a test: it prints figures and asserts none.
 */
import { spawn } from 'node:child_process';
import { inNamespace, inNamespaceOk } from '../src/lab/index.js';

/** Datagrams per site per burst: issue 10's "3,000 small UDP datagrams from each of two WireGuard sites at once". */
export const BURST_DATAGRAMS = 3000;
/** Payload bytes: a 64-byte IPv4 packet. */
const BURST_PAYLOAD = 36;
/** The counting server's port (clear of iperf3's 5201). */
export const BURST_PORT = 5301;
/** The request/response server's port. */
export const RR_PORT = 5302;
/** Receive buffer of the counting server (SO_RCVBUFFORCE): it must never be where a datagram is lost. */
const SERVER_RCVBUF = 64 << 20;
/** The server stops this long after the last datagram (s), or after SERVER_LIMIT_S in all. */
const SERVER_IDLE_S = 2;
const SERVER_LIMIT_S = 30;
/** Both senders start at one wall-clock instant this far ahead (s): time for `ip netns exec` and Python to start. */
const START_AHEAD_S = 1.0;
/** Linux SO_RCVBUFFORCE (asm-generic/socket.h): root may exceed net.core.rmem_max. */
const SO_RCVBUFFORCE = 33;

/** Counts distinct datagrams per site tag (first byte); prints `ready`, then one JSON line {tag: count}. */
const BURST_SERVER = `
import json, socket, sys
addr, port, expect, idle, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, ${SO_RCVBUFFORCE}, ${SERVER_RCVBUF})
s.bind((addr, port))
print('ready', flush=True)
seen = {}
total = 0
s.settimeout(limit)
while total < expect:
    try:
        data = s.recv(2048)
    except socket.timeout:
        break
    tag = chr(data[0])
    got = seen.setdefault(tag, set())
    n = len(got)
    got.add(data[1:9])
    total += len(got) - n
    s.settimeout(idle)
print(json.dumps({k: len(v) for k, v in seen.items()}), flush=True)
`;

/** Sends `count` datagrams tagged `tag` back to back from `host`, starting at wall-clock `start`; prints how many went. */
const BURST_SENDER = `
import socket, sys, time
host, dst, port, tag, count, size, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, 0))
payloads = [(tag + '%08d' % i).encode().ljust(size, b'.') for i in range(count)]
target = (dst, port)
while time.time() < start:
    pass
sent = 0
for p in payloads:
    try:
        s.sendto(p, target)
        sent += 1
    except OSError:
        pass
print(sent)
`;

/** A TCP echo server: one connection at a time, TCP_NODELAY; prints `ready`. */
const RR_SERVER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    c.close()
`;

/** N request/response round trips of `size` bytes on one connection; prints the round trips in ns, one JSON list. */
const RR_CLIENT = `
import json, socket, sys, time
host, dst, port, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
c.bind((host, 0))
c.connect((dst, port))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b'x' * size
out = []
for i in range(n + n // 10):
    t0 = time.perf_counter_ns()
    c.sendall(msg)
    got = 0
    while got < size:
        d = c.recv(size - got)
        if not d:
            raise SystemExit('the server closed the connection')
        got += len(d)
    if i >= n // 10:  # the first tenth warms the path (flow setup, caches) and is not counted
        out.append(time.perf_counter_ns() - t0)
c.close()
print(json.dumps(out))
`;
const RR_SIZE = 64;

// ─── Percentiles ────────────────────────────────────────────────────────────────────────────────────

/** The p-quantile (0..1) of ascending `sorted` by the nearest-rank method; NaN for none. */
export function quantile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

export interface Percentiles { p50_us: number; p99_us: number; samples: number }

function percentiles(us: number[]): Percentiles {
  const sorted = [...us].sort((a, b) => a - b);
  return { p50_us: quantile(sorted, 0.5), p99_us: quantile(sorted, 0.99), samples: sorted.length };
}

// ─── Latency ────────────────────────────────────────────────────────────────────────────────────────

const PING_TIME = /time=([0-9.]+) ms/;

/** `ping -c N -i 0.01` from `host` in `ns` to `server`: the round trips, µs. */
async function pingRtts(ns: string, host: string, server: string, count: number): Promise<number[]> {
  const r = await inNamespace(ns, 'ping', ['-n', '-c', String(count), '-i', '0.01', '-I', host, server], { timeoutMs: (count * 0.05 + 20) * 1000 });
  const out: number[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = PING_TIME.exec(line);
    if (m !== null) out.push(Number(m[1]) * 1000);
  }
  if (out.length === 0) throw new Error(`ping from ${ns}: no replies (exit ${r.code}): ${r.stderr.trim() || r.stdout.slice(-300)}`);
  return out;
}

/** N TCP request/response round trips from `host` in `ns` to the RR server: µs. */
async function rrRtts(ns: string, host: string, server: string, count: number): Promise<number[]> {
  const out = await inNamespaceOk(ns, 'python3', ['-c', RR_CLIENT, host, server, String(RR_PORT), String(count), String(RR_SIZE)], { timeoutMs: (count * 0.01 + 30) * 1000 });
  return (JSON.parse(out) as number[]).map((ns) => ns / 1000);
}

/**
 * Request/response round trips and flood pings through a path before it is measured (every path alike). A daemon fresh from its
 * start runs its per-packet code in V8's baseline tier until TurboFan has optimised it, which takes thousands of
 * packets: at ping's 100 packets/s that is most of a latency run (docs/PERFORMANCE.md "Latency": p50 falling from
 * ~350 to ~230 µs over the first 3,000 pings). Back to back they take about a second.
 */
export const LATENCY_WARMUP_ROUND_TRIPS = 5000;

/**
 * `count` TCP request/response round trips and `count` flood pings (ping -f: the next echo as soon as a reply is
 * back), results discarded: both paths' code (TCP and ICMP echo) gets optimised. See LATENCY_WARMUP_ROUND_TRIPS.
 */
export async function warmUp(ns: string, host: string, server: string, count: number): Promise<void> {
  if (count <= 0) return;
  await rrRtts(ns, host, server, count);
  await inNamespace(ns, 'ping', ['-n', '-q', '-f', '-c', String(count), '-I', host, server], { timeoutMs: (count * 0.01 + 20) * 1000 });
}

export interface LatencyFigures { ping_p50_us: number; ping_p99_us: number; ping_samples: number; tcp_rr_p50_us: number; tcp_rr_p99_us: number; tcp_rr_samples: number }

export async function latencyOf(ns: string, host: string, server: string, count: number): Promise<LatencyFigures> {
  const ping = percentiles(await pingRtts(ns, host, server, count));
  const rr = percentiles(await rrRtts(ns, host, server, count));
  return { ping_p50_us: ping.p50_us, ping_p99_us: ping.p99_us, ping_samples: ping.samples, tcp_rr_p50_us: rr.p50_us, tcp_rr_p99_us: rr.p99_us, tcp_rr_samples: rr.samples };
}

/** What tether adds over the reference, per round trip (two passes through the edge) and per pass (half of it). */
export function added(tether: LatencyFigures, reference: LatencyFigures): Record<string, number> {
  return {
    ping_rtt_p50_us: tether.ping_p50_us - reference.ping_p50_us,
    ping_rtt_p99_us: tether.ping_p99_us - reference.ping_p99_us,
    tcp_rr_p50_us: tether.tcp_rr_p50_us - reference.tcp_rr_p50_us,
    tcp_rr_p99_us: tether.tcp_rr_p99_us - reference.tcp_rr_p99_us,
    per_pass_ping_p50_us: (tether.ping_p50_us - reference.ping_p50_us) / 2,
    per_pass_ping_p99_us: (tether.ping_p99_us - reference.ping_p99_us) / 2,
  };
}

/** Starts a Python server in `ns`: `ready` resolves once it printed `ready`, `done` with the rest of its stdout. */
function startServer(ns: string, script: string, args: string[], timeoutMs: number): { ready: Promise<void>; done: Promise<string>; kill: () => void } {
  const child = spawn('ip', ['netns', 'exec', ns, 'python3', '-c', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const READY = 'ready\n';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => { if (out.startsWith(READY)) resolve(); });
    child.on('exit', (code, signal) => reject(new Error(`server in ${ns} exited (${code ?? signal}) before it was ready: ${err.trim()}`)));
    child.on('error', reject);
  });
  const done = new Promise<string>((resolve, reject) => {
    child.on('exit', () => { clearTimeout(timer); resolve(out.startsWith(READY) ? out.slice(READY.length) : ''); });
    child.on('error', reject);
  });
  // `done` may be awaited never (the echo server is killed): keep its rejection from going unhandled.
  done.catch(() => {});
  return { ready, done, kill: () => child.kill('SIGKILL') };
}

/** The TCP echo server of the request/response figures, in the server's namespace; kill() when done. */
export async function startRrServer(ns: string, server: string): Promise<() => void> {
  const s = startServer(ns, RR_SERVER, [server, String(RR_PORT)], 3_600_000);
  await s.ready;
  return () => s.kill();
}

// ─── Burst ──────────────────────────────────────────────────────────────────────────────────────────

/** One sending site: its namespace, host address, and its tag in the payload. */
export interface BurstSite { ns: string; host: string; tag: string }

/** Kernel counters read around a burst, each a function returning a cumulative count. */
export type Counters = Record<string, () => Promise<number>>;

export interface BurstRound { sent: number; delivered: number; counters: Record<string, number> }

/**
 * One burst: the counting server in `serverNs`, every site sending `count` datagrams at one instant; the counters'
 * growth over the burst.
 */
export async function burstOnce(serverNs: string, server: string, sites: BurstSite[], count: number, counters: Counters): Promise<BurstRound> {
  const srv = startServer(serverNs, BURST_SERVER, [server, String(BURST_PORT), String(count * sites.length), String(SERVER_IDLE_S), String(SERVER_LIMIT_S)], (SERVER_LIMIT_S + 10) * 1000);
  await srv.ready;
  const names = Object.keys(counters);
  const before = await Promise.all(names.map((k) => counters[k]()));
  const start = Date.now() / 1000 + START_AHEAD_S;
  const sent = await Promise.all(sites.map((s) => inNamespaceOk(s.ns, 'python3', ['-c', BURST_SENDER, s.host, server, String(BURST_PORT), s.tag, String(count), String(BURST_PAYLOAD), start.toFixed(3)], { timeoutMs: 60_000 })));
  const got = JSON.parse((await srv.done).trim() || '{}') as Record<string, number>;
  const after = await Promise.all(names.map((k) => counters[k]()));
  const grew: Record<string, number> = {};
  names.forEach((k, i) => { grew[k] = after[i] - before[i]; });
  return {
    sent: sent.reduce((a, s) => a + Number(s.trim()), 0),
    delivered: sites.reduce((a, s) => a + (got[s.tag] ?? 0), 0),
    counters: grew,
  };
}

/** Rounds summed: sent, delivered, share, and each counter's total growth. */
export function burstTotals(rounds: BurstRound[]): { rounds: number; sent: number; delivered: number; share: number; shares: number[]; counters: Record<string, number> } {
  const counters: Record<string, number> = {};
  for (const r of rounds) for (const [k, v] of Object.entries(r.counters)) counters[k] = (counters[k] ?? 0) + v;
  const sent = rounds.reduce((a, r) => a + r.sent, 0);
  const delivered = rounds.reduce((a, r) => a + r.delivered, 0);
  return { rounds: rounds.length, sent, delivered, share: sent > 0 ? delivered / sent : 0, shares: rounds.map((r) => (r.sent > 0 ? r.delivered / r.sent : 0)), counters };
}

/** A device's statistics counter in a namespace (sysfs), 0 when the device is not there. */
export async function deviceStat(ns: string, dev: string, stat: string): Promise<number> {
  const r = await inNamespace(ns, 'cat', [`/sys/class/net/${dev}/statistics/${stat}`]);
  return r.code === 0 ? Number(r.stdout.trim()) : 0;
}
