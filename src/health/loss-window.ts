/**
 * The five-minute loss window in constant memory: a ring of WINDOW_SECONDS one-second buckets of sample and
 * failure counts, plus running sums. Bucket k % WINDOW_SECONDS holds second k. A sample at time t falls in
 * second floor(t / BUCKET_MS); the window at time t is that second and the WINDOW_SECONDS - 1 before it.
 *
 * Times must not go backwards (the engine clamps them). Advancing clears the buckets that left the window:
 * at most WINDOW_SECONDS per call and one per elapsed second overall, so the cost is O(1) amortized and the
 * memory is fixed whatever the probe rate or however long an onramp stays down.
 */
import { BUCKET_MS, WINDOW_SECONDS } from './constants.js';

/** `head` before the first sample. */
const NONE = -Infinity;

/** The bucket of second k (non-negative for negative k too). */
function bucket(k: number): number {
  return ((k % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
}

export class LossWindow {
  private readonly samples = new Uint32Array(WINDOW_SECONDS);
  private readonly failed = new Uint32Array(WINDOW_SECONDS);
  /** The latest second advanced to; every bucket outside (head - WINDOW_SECONDS, head] is zero. */
  private head = NONE;
  /** Sums over the buckets in the window. */
  total = 0;
  failures = 0;

  /** Moves the window so that it ends at the second of `t` (never backwards). */
  advance(t: number): void {
    const s = Math.floor(t / BUCKET_MS);
    if (s <= this.head) return;
    if (this.head === NONE || s - this.head >= WINDOW_SECONDS) {
      this.clear();
    } else {
      for (let k = this.head + 1; k <= s; k++) this.drop(bucket(k));
    }
    this.head = s;
  }

  /** Counts one sample at time t (advances to t first). */
  add(t: number, ok: boolean): void {
    this.advance(t);
    const i = bucket(this.head);
    this.samples[i]++;
    this.total++;
    if (!ok) {
      this.failed[i]++;
      this.failures++;
    }
  }

  /** The second the window ends at (the last advance); -Infinity before the first sample. */
  get second(): number {
    return this.head;
  }

  /** Failures / samples over the window as of the last advance; 0 when it holds no sample. */
  get loss(): number {
    return this.total === 0 ? 0 : this.failures / this.total;
  }

  private drop(i: number): void {
    this.total -= this.samples[i];
    this.failures -= this.failed[i];
    this.samples[i] = 0;
    this.failed[i] = 0;
  }

  private clear(): void {
    this.samples.fill(0);
    this.failed.fill(0);
    this.total = 0;
    this.failures = 0;
  }
}
