/**
 * `npm run fuzz -- [--count N] [--target NAME] [--seed S] [--out DIR] [--replay FILE]`
 *
 * Runs every target (or those whose name contains NAME) for N generated inputs each (default 100,000) from
 * seed S (default 1), prints inputs, time, inputs/s, failures and outcome counts per target, saves the first
 * failing input of a target under DIR (default fuzz-failures/) and exits 1 if any target failed.
 * `--replay FILE` runs one saved input again on a fresh target. docs/FUZZING.md has the figures.
 */
import { formatReport, replay, runTarget } from './harness.js';
import { TARGETS } from './targets/index.js';

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) throw new Error(`${name} needs a value`);
  return v;
}

function integer(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  const v = Number(text.replace(/_/g, ''));
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer, got ${text}`);
  return v;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const replayFile = option(args, '--replay');
  if (replayFile !== undefined) {
    const r = await replay(replayFile, TARGETS);
    console.log(`${r.target}: ${r.ok ? `no failure (outcome ${r.text})` : `FAILED\n${r.text}`}`);
    return r.ok ? 0 : 1;
  }
  const count = integer(option(args, '--count'), 100_000, '--count');
  const seed = integer(option(args, '--seed'), 1, '--seed');
  const only = option(args, '--target');
  const saveDir = option(args, '--out') ?? 'fuzz-failures';
  const selected = [...TARGETS].filter(([name]) => only === undefined || name.includes(only));
  if (selected.length === 0) throw new Error(`no target matches ${only}; targets: ${[...TARGETS.keys()].join(', ')}`);
  console.log(`fuzz: ${selected.length} target(s), ${count} inputs each, seed ${seed}`);
  let failed = 0;
  for (const [, make] of selected) {
    const progress = (name: string, inputs: number, failures: number, ms: number): void => {
      console.error(`  ${name}: ${inputs} inputs, ${failures} failures, ${(ms / 1000).toFixed(0)} s`);
    };
    const report = await runTarget(make, { count, seed, saveDir, progress });
    console.log(formatReport(report));
    if (report.failures > 0) failed++;
  }
  console.log(failed === 0 ? 'fuzz: no failures' : `fuzz: ${failed} target(s) failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  },
);
