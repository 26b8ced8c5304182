/**
 * ESP anti-replay (RFC 4303 §3.4.3, the bitmap of RFC 6479 "IPsec Anti-Replay Algorithm without Bit Shifting"),
 * for 32-bit sequence numbers (no ESN). Configurable size: `window` packets behind the newest accepted number
 * (rounded up to whole 32-bit words); 0 = off (accept everything, as Cloudflare's onramps default to).
 *
 * check() before decryption (cheap rejection of replays without spending crypto), update() only after the ICV
 * verified (RFC 4303 §3.4.3: "the receive window is updated only if the integrity verification succeeds"), so
 * a forged packet never moves the window. Sequence number 0 is never sent (the first is 1, §3.3.3): refused.
 *
 * The ring holds one word more than the window needs (RFC 6479 §2: the word being refilled), a power of two so
 * indices mask instead of divide. Allocates only in the constructor.
 */
const WORD_BITS = 32;
const WORD_SHIFT = 5;
const BIT_MASK = WORD_BITS - 1;

export class EspReplayWindow {
  /** Packets behind the newest still judged by the bitmap (≥ the requested size; 0 = off). */
  readonly size: number;
  private readonly ring: Uint32Array;
  private readonly mask: number;
  /** Newest accepted sequence number; 0 = none yet. */
  private last = 0;

  constructor(window: number) {
    if (!Number.isInteger(window) || window < 0) throw new RangeError(`replay window must be a non-negative integer, got ${window}`);
    if (window === 0) {
      this.size = 0;
      this.ring = new Uint32Array(0);
      this.mask = 0;
      return;
    }
    let words = 2;
    while ((words - 1) * WORD_BITS < window) words <<= 1;
    this.ring = new Uint32Array(words);
    this.mask = words - 1;
    this.size = (words - 1) * WORD_BITS;
  }

  /** Newest accepted sequence number (0 = none). */
  get newest(): number {
    return this.last;
  }

  /** True when `seq` may be accepted: not seen, not left of the window, not 0. Changes nothing. */
  check(seq: number): boolean {
    if (this.size === 0) return true;
    if (seq === 0) return false;
    if (seq > this.last) return true;
    if (this.last - seq >= this.size) return false;
    return (this.ring[(seq >>> WORD_SHIFT) & this.mask] & (1 << (seq & BIT_MASK))) === 0;
  }

  /** Accepts `seq` once (after the ICV verified): true the first time, false for a replay or a too-old number. */
  update(seq: number): boolean {
    if (this.size === 0) return true;
    if (seq === 0) return false;
    const word = seq >>> WORD_SHIFT;
    if (seq > this.last) {
      // Clear the words between the old newest and the new one (at most the whole ring), RFC 6479 §2.
      const current = this.last >>> WORD_SHIFT;
      const diff = Math.min(word - current, this.ring.length);
      for (let k = 1; k <= diff; k++) this.ring[(current + k) & this.mask] = 0;
      this.last = seq;
    } else if (this.last - seq >= this.size) {
      return false;
    }
    const w = word & this.mask;
    const bit = 1 << (seq & BIT_MASK);
    const old = this.ring[w];
    if ((old & bit) !== 0) return false;
    this.ring[w] = old | bit;
    return true;
  }
}
