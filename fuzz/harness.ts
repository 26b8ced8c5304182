/**
 * The fuzz harness: a target is one parser or state machine entry point with its real, preallocated state;
 * the harness feeds it generated inputs, counts outcomes, and keeps the first failure as a file that
 * `npm run fuzz -- --replay FILE` runs again.
 *
 * A failure is anything the target throws: an exception from the code under test (the entry points promise
 * never to throw on input), or a FuzzFailure the target raises for a broken property (a write outside the
 * input's bytes, an unknown drop reason, a 5xx answer, results that differ between two placements of the
 * same bytes).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Rng } from './rng.js';

/** A broken property (as opposed to an exception thrown by the code under test). */
export class FuzzFailure extends Error {
  override readonly name = 'FuzzFailure';
}

export interface FuzzTarget {
  readonly name: string;
  /** Produces the next input (from the target's seeds and mutations). */
  generate(rng: Rng): Uint8Array;
  /**
   * Runs one input through the entry point and checks its properties; returns the outcome's label (a drop
   * reason, a verdict, a status) for the counts. `rng` chooses placements; it never changes the input.
   */
  run(input: Uint8Array, rng: Rng): string | Promise<string>;
  close?(): void | Promise<void>;
}

export type TargetFactory = () => FuzzTarget | Promise<FuzzTarget>;

export interface FailureRecord {
  index: number;
  message: string;
  /** Where the input was saved (replay with --replay), or null when saving was not asked for. */
  file: string | null;
}

export interface TargetReport {
  name: string;
  inputs: number;
  ms: number;
  failures: number;
  first: FailureRecord | null;
  outcomes: Map<string, number>;
}

/** The file a failing input is saved in: which target, which run, the bytes. */
interface ReplayFile {
  target: string;
  seed: number;
  index: number;
  message: string;
  hex: string;
}

export interface RunOptions {
  count: number;
  seed: number;
  /** Directory for failing inputs; null: keep them in memory only (the short pass in npm test). */
  saveDir: string | null;
  /** Called every PROGRESS_EVERY inputs (long runs print it, so a stopped run still has its figures). */
  progress?: (name: string, inputs: number, failures: number, ms: number) => void;
}

const PROGRESS_EVERY = 100_000;

function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}${e instanceof FuzzFailure ? '' : `\n${e.stack?.split('\n').slice(1, 4).join('\n') ?? ''}`}`;
  return String(e);
}

/** Runs `count` generated inputs through one target. */
export async function runTarget(make: TargetFactory, options: RunOptions): Promise<TargetReport> {
  const target = await make();
  const gen = new Rng(options.seed);
  const place = new Rng(options.seed ^ 0x5bd1e995);
  const outcomes = new Map<string, number>();
  let failures = 0;
  let first: FailureRecord | null = null;
  const start = performance.now();
  for (let i = 0; i < options.count; i++) {
    const input = target.generate(gen);
    let outcome: string;
    try {
      const r = target.run(input, place);
      outcome = typeof r === 'string' ? r : await r;
    } catch (e) {
      failures++;
      outcome = e instanceof FuzzFailure ? 'FAILED (property)' : 'FAILED (threw)';
      if (first === null) {
        const message = describeError(e);
        let file: string | null = null;
        if (options.saveDir !== null) {
          mkdirSync(options.saveDir, { recursive: true });
          file = join(options.saveDir, `${target.name.replace(/\W+/g, '-')}-seed${options.seed}-${i}.json`);
          const record: ReplayFile = { target: target.name, seed: options.seed, index: i, message, hex: Buffer.from(input).toString('hex') };
          writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
        }
        first = { index: i, message, file };
      }
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (options.progress !== undefined && (i + 1) % PROGRESS_EVERY === 0) options.progress(target.name, i + 1, failures, performance.now() - start);
  }
  const ms = performance.now() - start;
  await target.close?.();
  return { name: target.name, inputs: options.count, ms, failures, first, outcomes };
}

/** Runs a saved failing input once on a fresh target; returns its outcome or the failure's message. */
export async function replay(file: string, targets: ReadonlyMap<string, TargetFactory>): Promise<{ target: string; ok: boolean; text: string }> {
  const record = JSON.parse(readFileSync(file, 'utf8')) as ReplayFile;
  const make = targets.get(record.target);
  if (make === undefined) throw new Error(`${file}: no target named ${record.target}`);
  const target = await make();
  try {
    const outcome = await target.run(Uint8Array.from(Buffer.from(record.hex, 'hex')), new Rng(record.seed));
    return { target: record.target, ok: true, text: outcome };
  } catch (e) {
    return { target: record.target, ok: false, text: describeError(e) };
  } finally {
    await target.close?.();
  }
}

/** One line per target, then its outcomes, largest first. */
export function formatReport(r: TargetReport): string {
  const rate = r.ms > 0 ? Math.round((r.inputs * 1000) / r.ms) : 0;
  const head = `${r.name.padEnd(16)} ${String(r.inputs).padStart(9)} inputs  ${(r.ms / 1000).toFixed(1).padStart(7)} s  ${String(rate).padStart(8)}/s  failures ${r.failures}`;
  const sorted = [...r.outcomes].sort((a, b) => b[1] - a[1]);
  const lines = [head, `  outcomes: ${sorted.map(([k, v]) => `${k} ${v}`).join(', ')}`];
  if (r.first !== null) {
    lines.push(`  first failure (input ${r.first.index}): ${r.first.message}`);
    if (r.first.file !== null) lines.push(`  saved: ${r.first.file}  (npm run fuzz -- --replay ${r.first.file})`);
  }
  return lines.join('\n');
}
