/**
 * Sliding anti-replay window over 64-bit message counters (whitepaper §5.4.6; RFC 6479 "IPsec Anti-Replay
 * Algorithm without Bit Shifting", as wireguard-go's replay.Filter does with 64-bit blocks).
 *
 * A ring of BLOCKS × 32-bit words; the newest counter seen is `last`. Moving forward clears whole words rather
 * than shifting bits. The usable window is (BLOCKS − 1) × 32 = 8,160 counters behind `last`, at least the
 * 8,128 of §6.1 / wireguard-go (one word is always being refilled). Counters are JS numbers: exact below 2^53,
 * which is all a conforming peer can reach (callers refuse larger ones before asking).
 */
const BLOCK_BITS = 32;
const BLOCKS = 256; // power of two
const BLOCK_MASK = BLOCKS - 1;
/** Counters at most this far behind the newest are still judged by the bitmap. */
export const REPLAY_WINDOW_SIZE = (BLOCKS - 1) * BLOCK_BITS; // 8160

export class ReplayWindow {
  private readonly ring = new Uint32Array(BLOCKS);
  private last = 0;

  reset(): void {
    this.ring.fill(0);
    this.last = 0;
  }

  /** True when `counter` could be accepted (not yet seen, not too old, below `limit`). Changes nothing. */
  check(counter: number, limit: number): boolean {
    if (counter >= limit) return false;
    if (counter > this.last) return true;
    if (this.last - counter > REPLAY_WINDOW_SIZE) return false;
    const block = Math.floor(counter / BLOCK_BITS) & BLOCK_MASK;
    const bit = 1 << (counter % BLOCK_BITS);
    return (this.ring[block] & bit) === 0;
  }

  /**
   * Accepts `counter` once: true the first time, false for a replay or a counter too old or at/above `limit`.
   * Call only after the packet authenticated, so forged counters cannot move the window (§5.4.6).
   */
  update(counter: number, limit: number): boolean {
    if (counter >= limit) return false;
    const blockIndex = Math.floor(counter / BLOCK_BITS);
    if (counter > this.last) {
      // Clear every word between the old newest block and the new one (at most the whole ring).
      const current = Math.floor(this.last / BLOCK_BITS);
      const diff = Math.min(blockIndex - current, BLOCKS);
      for (let i = 1; i <= diff; i++) this.ring[(current + i) & BLOCK_MASK] = 0;
      this.last = counter;
    } else if (this.last - counter > REPLAY_WINDOW_SIZE) {
      return false;
    }
    const block = blockIndex & BLOCK_MASK;
    const bit = 1 << (counter % BLOCK_BITS);
    const old = this.ring[block];
    if ((old & bit) !== 0) return false;
    this.ring[block] = old | bit;
    return true;
  }
}
