/**
 * `npm run soak -- --minutes M` (root) — the lab under mixed, churning traffic from every well-behaved site and
 * a hostile site and Internet (src/lab/soak.ts, docs/SOAK.md), for M minutes, with one report line per interval
 * on stderr: the daemon's RSS, heap and open descriptors, flows, each site's exchanges, drops by reason, and the
 * misdelivered replies (a reply at a site other than the one that asked: must be 0). A tool, not a test: it
 * exits 1 when a reply was misdelivered or the edge died, 0 otherwise.
 *
 * The daemon runs compiled (dist/src/cli/tether.js; `npm run soak` builds it first). Own names: the lab's, with
 * prefix `sk` unless --prefix; leftovers of that prefix are removed first and everything again at the end, on
 * failure and on SIGINT/SIGTERM. stdout carries the summary, or one JSON object (every interval) with --json.
 *
 * Options: --minutes M (default 30), --interval S (seconds per report, default 60), --site-rate N (exchanges per
 * second per kind per site, default 10), --hostile-rate N (packets per second, default 400),
 * --flood-rate N (the hostile site's UDP flood, packets per second, default 500), --prefix P, --json.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { labDown } from '../src/lab/index.js';
import { REPO_ROOT } from '../src/lab/paths.js';
import { runSoak } from '../src/lab/soak.js';

const args = process.argv.slice(2);
function option(name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const PREFIX = option('--prefix', 'sk');
const DAEMON = join(REPO_ROOT, 'dist', 'src', 'cli', 'tether.js');
const MINUTE_MS = 60_000;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('soak needs root (network namespaces, TUN devices)');
  if (!existsSync(DAEMON)) throw new Error(`${DAEMON} does not exist: build first (npx tsc -p tsconfig.build.json; npm run soak does)`);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => void labDown({ prefix: PREFIX }).finally(() => process.exit(130)));
  }
  const minutes = Number(option('--minutes', '30'));
  const started = new Date();
  const report = await runSoak({
    prefix: PREFIX,
    durationMs: minutes * MINUTE_MS,
    intervalMs: Number(option('--interval', '60')) * 1000,
    siteRate: Number(option('--site-rate', '10')),
    hostileRate: Number(option('--hostile-rate', '400')),
    floodRate: Number(option('--flood-rate', '500')),
    daemonEntry: DAEMON,
  });
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify({ started: started.toISOString(), minutes, ...report })}\n`);
  } else {
    const line = (label: string, v: unknown) => process.stdout.write(`${label.padEnd(14)}${typeof v === 'string' ? v : JSON.stringify(v)}\n`);
    line('started', started.toISOString());
    line('minutes', String(minutes));
    line('misdelivered', String(report.misdelivered));
    line('edge alive', String(report.edgeAlive));
    line('rss MiB', report.rssMiB);
    line('heap MiB', report.heapMiB);
    line('fds', report.fds);
    for (const [site, kinds] of Object.entries(report.sites)) line(site, kinds);
    line('hostile sent', report.hostile);
    line('drops', report.drops);
  }
  process.exitCode = report.misdelivered === 0 && report.edgeAlive ? 0 : 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`soak: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
