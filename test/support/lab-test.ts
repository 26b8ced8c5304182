/**
 * The lab (src/lab, docs/LAB.md) for one end-to-end test file, from its top-level before() (or for one test, from
 * that test: gro.test.ts builds a lab per daemon flag set):
 *
 *   before(async (t) => { lab = await labUpForTest(t, { prefix: PREFIX, config }); ... });
 *
 * It fails loudly without root (e2e tests never skip), then labUp (which checks the lab's tools and removes what an
 * earlier run of the same prefix left). labDown is registered with the hook's context (t.after) BEFORE labUp runs,
 * so the lab comes down even when labUp or a later step of the before hook throws; and it runs after the file's
 * own after() hooks, so what those stop (servers, watchers, strongSwan run directories) goes first, as when every
 * file called labDown last itself.
 */
import assert from 'node:assert/strict';
import type { SuiteContext, TestContext } from 'node:test';
import { labDown, labUp, type DownloadResult, type LabInfo, type LabUpOptions } from '../../src/lab/index.js';

/** What the e2e tests say when they are not run as root. */
export const NEEDS_ROOT = 'the end-to-end tests need root (network namespaces, TUN devices); CI runs them as root';

/** Throws `message` unless this process is root: tests that need root fail, they never skip. */
export function requireRoot(message: string = NEEDS_ROOT): void {
  if (process.getuid?.() !== 0) throw new Error(message);
}

/**
 * Root check (NEEDS_ROOT; a file with its own message calls requireRoot first), labDown registered with `t.after`,
 * then labUp(opts). `opts.prefix` is the file's own, unique per process: labDown removes exactly that.
 */
export async function labUpForTest(t: TestContext | SuiteContext, opts: LabUpOptions & { prefix: string }): Promise<LabInfo> {
  if (!('after' in t)) throw new Error('labUpForTest: call it from a top-level before() or a test: their context registers labDown');
  requireRoot();
  t.after(() => labDown({ prefix: opts.prefix }));
  return labUp(opts);
}

/**
 * A lab download (startDownload) checked whole: no error (no reset, no idle timeout), HTTP 200, every one of `bytes`
 * arrived, and their SHA-256 is the one the server sent in its trailer.
 */
export function assertDownloadIntact(r: DownloadResult, bytes: number, what = 'download'): void {
  assert.equal(r.error, undefined, `${what}: the download failed: ${JSON.stringify({ ...r, gaps: r.gaps.length })}`);
  assert.equal(r.status, 200, what);
  assert.equal(r.bytes, bytes, `${what}: every byte arrived`);
  assert.equal(r.sha256, r.serverSha256, `${what}: what arrived is what the server sent`);
}
