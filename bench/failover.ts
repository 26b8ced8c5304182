/**
 * `npm run bench:failover` (root) — how long site-c's traffic is without a path when its primary tunnel is cut
 * (issue 8, "Performance": goal ≤ 3 s at the default probe rate, ≤ 1 s at high). A benchmark, not a test: it
 * prints figures and asserts none.
 *
 * Per probe rate (low, mid, high) it brings up the lab (src/lab, docs/LAB.md) under its own prefix with site-c's
 * health checks at that rate, starts a checksummed download from the Internet server to site-c's 10.0.1.10,
 * cuts the primary tunnel (cutSiteCPrimary: its underlay link down, the router onto its backup) once a share of
 * it has arrived, and reports:
 *   failover   cut → first data on the backup's underlay link (the router's byte counters, 2 ms polls)
 *   stall      cut → the download's own resume (its longest pause after the cut)
 *   down       cut → the primary shown down in GET /v1/onramps (a poller in the edge namespace, 50 ms, with the token)
 * plus the transfer's rate and whether both ends' SHA-256 agreed.
 *
 * The client sends nothing but its ACKs: the edge's own health checks must find the primary down and move the
 * replies (site-c's failover policy is the default, follow). With --runs N the primary is restored between runs
 * and the next run waits until it answers its probes again (degraded in the API).
 *
 * The daemon runs compiled (dist/src/cli/tether.js; `npm run bench:failover` builds it first), never under tsx.
 * Own names: the lab's, with prefix `tf` unless --prefix; leftovers of that prefix are removed first and
 * everything again at the end, on failure and on SIGINT/SIGTERM. Progress goes to stderr; stdout carries the
 * table, or one JSON object with --json.
 *
 * Options: --json, --mib N (download size, default 200), --runs N (cuts per rate, default 1), --prefix P.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { labTopologyConfig, SITE_C_ONRAMPS, type LabProbeRate } from '../src/lab/config.js';
import { ensureLabTools, labDown, labNames, labUp, measureSiteCFailover, restoreSiteCPrimary, watchHealth, type HealthWatcher } from '../src/lab/index.js';
import { REPO_ROOT } from '../src/lab/paths.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
function option(name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const PREFIX = option('--prefix', 'tf');
const BYTES = Number(option('--mib', '200')) * 1024 * 1024;
const RUNS = Number(option('--runs', '1'));
const CUT_AT_SHARE = 0.4;
const GIVE_UP_MS = 30_000;
/** A restored primary answers its probes again within one probe interval (10 s at low) and a few round trips. */
const RECOVER_MS = 30_000;
const DAEMON = join(REPO_ROOT, 'dist', 'src', 'cli', 'tether.js');

function progress(msg: string): void {
  process.stderr.write(`bench:failover: ${msg}\n`);
}

interface Run {
  rate: LabProbeRate;
  failover_ms: number | null;
  stall_ms: number | null;
  /** Cut → the primary shown down in GET /v1/onramps (50 ms polls). */
  down_ms: number | null;
  mbit_s: number;
  checksum_ok: boolean;
  error?: string;
}

async function measure(rate: LabProbeRate, health: HealthWatcher): Promise<Run> {
  const m = await measureSiteCFailover(labNames(PREFIX), { bytes: BYTES, cutAtShare: CUT_AT_SHARE, giveUpMs: GIVE_UP_MS });
  const r = m.download;
  const downAt = await health.reached(SITE_C_ONRAMPS.primary, 'down', m.cutAt, GIVE_UP_MS);
  return {
    rate,
    failover_ms: m.failoverMs,
    stall_ms: m.stall ? m.stall.to - m.cutAt : null,
    down_ms: downAt === null ? null : downAt - m.cutAt,
    mbit_s: Math.round((r.bytes * 8) / ((r.endedAt - r.startedAt) / 1000) / 1e6),
    checksum_ok: r.bytes === BYTES && r.serverSha256 !== undefined && r.sha256 === r.serverSha256,
    ...(r.error ? { error: r.error } : {}),
  };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:failover needs root (network namespaces, TUN devices)');
  if (!existsSync(DAEMON)) throw new Error(`${DAEMON} does not exist: build first (npx tsc -p tsconfig.build.json; npm run bench:failover does)`);
  await ensureLabTools();
  const rates: LabProbeRate[] = ['low', 'mid', 'high'];
  const mode = 'health checks on site-c\'s onramps at each probe rate; the client sends nothing extra';
  progress(mode);
  const runs: Run[] = [];
  for (const rate of rates) {
    progress(`lab up (prefix ${PREFIX}, probe rate ${rate}, daemon ${DAEMON})`);
    const config = labTopologyConfig({ probeRate: rate });
    const lab = await labUp({ prefix: PREFIX, daemonEntry: DAEMON, config });
    const health = watchHealth(lab.names.edge, `http://${config.api.listen}:${config.api.port}`, join(lab.runDir, 'api-token'));
    try {
      await health.ready;
      for (let i = 0; i < RUNS; i++) {
        if (i > 0) {
          // Until its probes answer again the primary is down and the edge sends its replies over the backup:
          // the next download would start there, and its cut would measure nothing.
          const restoredAt = Date.now();
          await restoreSiteCPrimary(lab.names);
          if (await health.reached(SITE_C_ONRAMPS.primary, 'degraded', restoredAt, RECOVER_MS) === null) throw new Error(`the primary did not recover within ${RECOVER_MS} ms`);
        }
        progress(`rate ${rate}, run ${i + 1}/${RUNS}: ${BYTES / 1024 / 1024} MiB, cut at ${CUT_AT_SHARE * 100} %`);
        const r = await measure(rate, health);
        progress(JSON.stringify(r));
        runs.push(r);
      }
    } finally {
      health.stop();
    }
    await labDown({ prefix: PREFIX });
  }
  if (json) {
    process.stdout.write(JSON.stringify({ mode, mib: BYTES / 1024 / 1024, runs }) + '\n');
    return;
  }
  const show = (ms: number | null) => (ms === null ? '—' : `${(ms / 1000).toFixed(3)} s`);
  const lines = [
    `site-c primary cut during a ${BYTES / 1024 / 1024} MiB download (${mode})`,
    '',
    `${'probe rate'.padEnd(12)}${'failover'.padStart(10)}${'stall'.padStart(10)}${'down'.padStart(10)}${'rate'.padStart(14)}  checksum`,
    ...runs.map((r) => `${r.rate.padEnd(12)}${show(r.failover_ms).padStart(10)}${show(r.stall_ms).padStart(10)}${show(r.down_ms).padStart(10)}${`${r.mbit_s} Mbit/s`.padStart(14)}  ${r.checksum_ok ? 'match' : `MISMATCH ${r.error ?? ''}`}`),
    '',
    'failover: cut → first data on the backup\'s underlay link (byte counters); stall: cut → the download resumed; down: cut → the primary down in GET /v1/onramps.',
    'Goal: failover ≤ 3 s at mid, ≤ 1 s at high.',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    progress(`${signal}: removing the lab (prefix ${PREFIX})`);
    void labDown({ prefix: PREFIX }).finally(() => process.exit(130));
  });
}

main().catch(async (e: unknown) => {
  process.stderr.write(`bench:failover: ${(e as Error).stack ?? String(e)}\n`);
  await labDown({ prefix: PREFIX }).catch(() => undefined);
  process.exitCode = 1;
});
