/**
 * `npm run bench:probe-rtt` (root) — the round trip a health probe sees through site-c's tunnels while a
 * download fills the primary: what the probe timeouts (src/health/constants.ts) must stay well above. A
 * benchmark, not a test: it prints figures and asserts none.
 *
 * It brings up the lab (docs/LAB.md) under its own prefix with the daemon compiled, starts a download from the
 * Internet server to site-c's 10.0.1.10, and meanwhile sends ICMP echo from site-c's router to the edge's
 * inside address of each tunnel (health_check.source: the edge answers them in its pipeline, the path its own
 * probes and their replies take, reversed): 100 per second over the loaded primary, 10 per second over the
 * idle backup. A reply later than 2 s counts as lost. The pinger is a raw-socket loop in Debian's python
 * (the lab has no ping), its clock time.monotonic(). Run it again under load (CPU hogs) to see the tail grow.
 *
 * Own names: the lab's, prefix `tr` unless --prefix; leftovers of that prefix are removed first, everything
 * again at the end. Options: --rounds N (downloads, default 2), --mib N (per download, default 400), --prefix P.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { labTopologyConfig } from '../src/lab/config.js';
import { ensureLabTools, labDown, labUp, LAB, startDownload } from '../src/lab/index.js';
import { REPO_ROOT, SYSTEM_PYTHON } from '../src/lab/paths.js';

const args = process.argv.slice(2);
function option(name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const PREFIX = option('--prefix', 'tr');
const ROUNDS = Number(option('--rounds', '2'));
const BYTES = Number(option('--mib', '400')) * 1024 * 1024;
const DAEMON = join(REPO_ROOT, 'dist', 'src', 'cli', 'tether.js');
/** Pings per tunnel per round and their spacing (s): 10 s of 100/s on the loaded primary, 10/s on the idle backup. */
const LOADED = { count: 1_000, interval: 0.01 };
const IDLE = { count: 100, interval: 0.1 };
/** The download is under way (past slow start) before the pings begin. */
const WARM_BYTES = 10 * 1024 * 1024;

/** A raw-socket ICMP echo loop: argv dst, count, interval (s); prints one line per echo, `time=<ms>` or `lost`. */
const PINGER = `
import socket, struct, time, sys, select, os
dst, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
def csum(b):
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
sent, rtts, i, nxt, end = {}, {}, 0, time.monotonic(), None
while True:
    now = time.monotonic()
    if i < count and now >= nxt:
        h = struct.pack('!BBHHH', 8, 0, 0, ident, i) + b'x' * 56
        s.sendto(h[:2] + struct.pack('!H', csum(h)) + h[4:], (dst, 0)); sent[i] = now; i += 1; nxt += interval
        if i == count: end = now + 2.0
    if end is not None and now > end: break
    if select.select([s], [], [], max(0, min(nxt - now, 0.01)))[0]:
        d = s.recv(2048); t = time.monotonic(); ihl = (d[0] & 15) * 4
        ty, _, _, idn, seq = struct.unpack('!BBHHH', d[ihl:ihl + 8])
        if ty == 0 and idn == ident and seq in sent and seq not in rtts: rtts[seq] = (t - sent[seq]) * 1000
for k in range(count): print('time=%.3f' % rtts[k] if k in rtts else 'lost')
`;

function ping(ns: string, dst: string, count: number, interval: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, SYSTEM_PYTHON, '-c', PINGER, dst, String(count), String(interval)]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(out.split('\n').filter((l) => l !== '').map((l) => (l === 'lost' ? Infinity : Number(l.slice('time='.length))))));
  });
}

function summary(what: string, rtts: number[]): string {
  const s = [...rtts].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  const ms = (x: number) => (x === Infinity ? 'lost' : `${x.toFixed(1)}`);
  const answered = s.filter((x) => x !== Infinity);
  return `${what.padEnd(26)}${String(s.length).padStart(6)}${ms(q(0.5)).padStart(8)}${ms(q(0.99)).padStart(8)}${ms(q(0.999)).padStart(8)}${ms(answered.at(-1) ?? Infinity).padStart(10)}${String(s.length - answered.length).padStart(6)}`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:probe-rtt needs root (network namespaces, TUN devices)');
  await ensureLabTools();
  const config = labTopologyConfig({});
  const lab = await labUp({ prefix: PREFIX, daemonEntry: DAEMON, config });
  const lines = [`${'round / tunnel'.padEnd(26)}${'echoes'.padStart(6)}${'p50'.padStart(8)}${'p99'.padStart(8)}${'p99.9'.padStart(8)}${'max ans.'.padStart(10)}${'lost'.padStart(6)}   (ms)`];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      process.stderr.write(`bench:probe-rtt: round ${round}/${ROUNDS}: ${BYTES / 1024 / 1024} MiB download, pings from the site-c router\n`);
      const download = startDownload(lab.names.siteC, `http://${LAB.internet.server}/download?bytes=${BYTES}`);
      await download.reached(WARM_BYTES);
      const [loaded, idle] = await Promise.all([
        ping(lab.names.siteCRouter, LAB.siteC.primary.edgeInside, LOADED.count, LOADED.interval),
        ping(lab.names.siteCRouter, LAB.siteC.backup.edgeInside, IDLE.count, IDLE.interval),
      ]);
      const r = await download.result;
      lines.push(summary(`${round} primary (downloading)`, loaded), summary(`${round} backup (idle)`, idle));
      lines.push(`${''.padEnd(26)}download ${Math.round((r.bytes * 8) / (r.endedAt - r.startedAt) / 1000)} Mbit/s`);
    }
  } finally {
    await labDown({ prefix: PREFIX });
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch(async (e: unknown) => {
  process.stderr.write(`bench:probe-rtt: ${(e as Error).stack ?? String(e)}\n`);
  await labDown({ prefix: PREFIX }).catch(() => undefined);
  process.exitCode = 1;
});
