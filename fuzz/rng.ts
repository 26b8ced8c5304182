/**
 * The fuzzer's randomness: a small seeded generator (mulberry32), so that `--seed S` reproduces every input of
 * a run exactly. Not cryptographic; only fast and deterministic.
 */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n); 0 when n <= 0. */
  int(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }

  /** true with probability p. */
  chance(p: number): boolean {
    return this.u32() < p * 0x100000000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  fill(b: Uint8Array, from = 0, to = b.length): Uint8Array {
    for (let i = from; i < to; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}
