/**
 * Worker threads for lanes (docs/ARCHITECTURE.md "Lanes"). A lane's module is started as a worker from its own
 * URL. Built (dist/, `tether run`), that is a .js file node loads as it is; run from source under tsx (tests,
 * `npx tsx src/cli/tether.ts`), it is a .ts file, and Node 20 does not hand a worker the --import hooks of its
 * parent: the worker then first registers tsx's loader (tsx/esm/api), then imports the module.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function startWorker(url: URL, options: WorkerOptions = {}): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, options);
  const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { ...options, eval: true });
}

/** Atomics.waitAsync (ES2024; V8 has it in Node 20, TypeScript's lib here does not declare it). */
interface AtomicsWaitAsync {
  waitAsync(array: Int32Array, index: number, value: number, timeoutMs?: number): { async: boolean; value: Promise<string> | string };
}

/**
 * Resolves when `array[index]` no longer holds `value` (a handoff ring's doorbell rang, handoff-ring.ts) or after
 * `timeoutMs`: a lane waits for handed-off packets without blocking its event loop. One promise per wait (per
 * idle period, not per packet).
 */
export async function waitWhile(array: Int32Array, index: number, value: number, timeoutMs: number): Promise<void> {
  const r = (Atomics as unknown as AtomicsWaitAsync).waitAsync(array, index, value, timeoutMs);
  if (r.async) await r.value;
}
