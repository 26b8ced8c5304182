/**
 * Out-of-bounds detection for parsers over Uint8Array, shared by the parser tests (src/wire, src/onramp/gre) and
 * the fuzzer (fuzz/): a read guard that throws on any indexed read outside a window, and a sentinel arena that
 * places an input at a chosen offset inside a larger buffer filled with a known byte, so that a write outside
 * the input's bytes shows up as a changed sentinel and a read outside them (through the buffer and an offset)
 * sees the sentinel instead of the input's bytes (two runs with different sentinels must agree).
 */

/**
 * A view that throws on any indexed read outside [lo, hi): a parser that reads past its window
 * fails loudly even when the over-read would not change its result (sentinel bytes only catch
 * over-reads that do). Only for code that indexes the array itself: methods such as subarray or
 * node:crypto's functions need a real typed array and refuse the proxy.
 */
export function readGuard(bytes: Uint8Array, lo: number, hi: number): Uint8Array {
  return new Proxy(bytes, {
    get(target, prop) {
      if (typeof prop === 'string') {
        const i = Number(prop);
        if (Number.isInteger(i) && (i < lo || i >= hi)) throw new RangeError(`read at ${i} outside [${lo}, ${hi})`);
      }
      return Reflect.get(target, prop, target);
    },
  });
}

/**
 * One preallocated buffer of `guard + maxLength + guard` bytes. place() fills it with a sentinel and copies an
 * input to an offset in [0, guard]; view() is the exact-size view of the input; changedOutside() names the
 * first sentinel byte that something overwrote.
 */
export class SentinelArena {
  readonly buf: Uint8Array;
  offset = 0;
  length = 0;
  sentinel = 0;

  constructor(readonly maxLength: number, readonly guard = 64) {
    this.buf = new Uint8Array(guard + maxLength + guard);
  }

  /** Copies `bytes` (at most maxLength) to buf[offset, offset + bytes.length); every other byte becomes `sentinel`. */
  place(bytes: Uint8Array, offset: number, sentinel: number): number {
    if (bytes.length > this.maxLength) throw new RangeError(`input of ${bytes.length} bytes exceeds the arena's ${this.maxLength}`);
    if (offset < 0 || offset > this.guard) throw new RangeError(`offset ${offset} outside [0, ${this.guard}]`);
    const end = offset + bytes.length;
    this.buf.fill(sentinel, 0, offset);
    this.buf.set(bytes, offset);
    this.buf.fill(sentinel, end, Math.min(this.buf.length, end + this.guard + this.guard));
    this.offset = offset;
    this.length = bytes.length;
    this.sentinel = sentinel;
    return offset;
  }

  /** The input as an exact-size view: nothing past its length is reachable through indexing. */
  view(): Uint8Array {
    return this.buf.subarray(this.offset, this.offset + this.length);
  }

  /** null when every byte outside the input still holds the sentinel, else where the first one changed. */
  changedOutside(): string | null {
    return changedOutside(this.buf, this.offset, this.length, this.sentinel, 0, Math.min(this.buf.length, this.offset + this.length + 2 * this.guard));
  }
}

/** null when buf[from, to) outside [offset, offset + length) all equal `sentinel`, else the first differing byte. */
export function changedOutside(buf: Uint8Array, offset: number, length: number, sentinel: number, from: number, to: number): string | null {
  for (let i = from; i < to; i++) {
    if (i === offset) i = offset + length;
    if (i >= to) break;
    if (buf[i] !== sentinel) return `byte ${i} outside [${offset}, ${offset + length}) changed from ${sentinel} to ${buf[i]}`;
  }
  return null;
}
