/**
 * A single-level timer wheel with lazy re-filing, over intrusive doubly linked lists.
 *
 *   tick k = floor(deadline / tickMs)       slot = k mod slotCount
 *   ring 0: [s0]<->a<->b   [s1]   [s2]<->c ...      (one circular list per slot, sentinel [sN])
 *   ring 1: [s0]   [s1]<->d  ...
 *
 * Items are small integers 0..itemCapacity-1 (flow indices). Every item is in at most one list.
 * Links live in prev/next Int32Arrays of itemCapacity + rings * slotCount entries: the tail
 * entries are the slot sentinels, so linking and unlinking never branch on "is this the head".
 * Several rings share one clock (cursor) and one pair of link arrays; the flow table uses two:
 * protected flows and evictable ones, so it can find an evictable flow without walking past
 * protected ones.
 *
 * Lazy re-filing: an item is filed once at its deadline's tick; when its deadline moves later
 * it stays where it is, and when its slot comes due the owner checks the real deadline and
 * files it again. A deadline beyond the wheel's horizon (slotCount ticks) is filed at the
 * horizon and re-filed the same way. Only a deadline that moves EARLIER must be re-filed at once.
 *
 * The wheel only orders items; it never decides expiry (the owner compares real deadlines),
 * so an item is never removed early, and a due item is reached once its tick has elapsed,
 * i.e. at most one tick after its deadline.
 */
export const WHEEL_NONE = -1;

export class TimerWheel {
  readonly tickMs: number;
  readonly slotCount: number;
  readonly rings: number;
  /** Links; entries itemCapacity.. are sentinels (ring r, slot s at itemCapacity + r * slotCount + s). */
  readonly prev: Int32Array;
  readonly next: Int32Array;
  /** Items currently filed, per ring. */
  readonly ringSize: Uint32Array;
  /** The first tick not yet processed: every slot of a tick < cursor has been emptied of due items. */
  cursor = 0;
  private readonly slotMask: number;
  private readonly sentinelBase: number;

  constructor(itemCapacity: number, rings: number, slotCount: number, tickMs: number) {
    if (!Number.isInteger(slotCount) || slotCount < 2 || (slotCount & (slotCount - 1)) !== 0) {
      throw new RangeError(`slotCount must be a power of two >= 2, got ${slotCount}`);
    }
    if (!(tickMs > 0)) throw new RangeError(`tickMs must be positive, got ${tickMs}`);
    this.tickMs = tickMs;
    this.slotCount = slotCount;
    this.rings = rings;
    this.slotMask = slotCount - 1;
    this.sentinelBase = itemCapacity;
    const total = itemCapacity + rings * slotCount;
    this.prev = new Int32Array(total);
    this.next = new Int32Array(total);
    for (let s = itemCapacity; s < total; s++) {
      this.prev[s] = s;
      this.next[s] = s;
    }
    this.ringSize = new Uint32Array(rings);
  }

  /** Start the clock at now (ms); items filed before are unaffected. */
  start(now: number): void {
    this.cursor = Math.floor(now / this.tickMs);
  }

  /** The tick an absolute deadline (ms) is filed at: clamped to [cursor, cursor + slotCount - 1]. */
  tickOf(deadline: number): number {
    const tick = Math.floor(deadline / this.tickMs);
    if (tick < this.cursor) return this.cursor;
    const horizon = this.cursor + this.slotCount - 1;
    return tick > horizon ? horizon : tick;
  }

  /** File item (not currently filed) in ring at the slot of an absolute deadline (ms), at the tail. */
  insert(item: number, ring: number, deadline: number): void {
    const sentinel = this.sentinelBase + ring * this.slotCount + (this.tickOf(deadline) & this.slotMask);
    const prev = this.prev;
    const next = this.next;
    const tail = prev[sentinel];
    next[tail] = item;
    prev[item] = tail;
    next[item] = sentinel;
    prev[sentinel] = item;
    this.ringSize[ring]++;
  }

  /** Unlink a filed item from ring. */
  remove(item: number, ring: number): void {
    const prev = this.prev;
    const next = this.next;
    const p = prev[item];
    const n = next[item];
    next[p] = n;
    prev[n] = p;
    this.ringSize[ring]--;
  }

  /** The oldest item in ring's slot for tick, or WHEEL_NONE. */
  firstAt(ring: number, tick: number): number {
    const sentinel = this.sentinelBase + ring * this.slotCount + (tick & this.slotMask);
    const n = this.next[sentinel];
    return n === sentinel ? WHEEL_NONE : n;
  }

  /**
   * The item of ring filed at the earliest tick from the cursor on (oldest first within a slot),
   * or WHEEL_NONE. Visits at most slotCount slots; O(1) when the ring is empty.
   */
  earliest(ring: number): number {
    if (this.ringSize[ring] === 0) return WHEEL_NONE;
    const base = this.sentinelBase + ring * this.slotCount;
    const next = this.next;
    for (let i = 0; i < this.slotCount; i++) {
      const sentinel = base + ((this.cursor + i) & this.slotMask);
      const n = next[sentinel];
      if (n !== sentinel) return n;
    }
    return WHEEL_NONE;
  }

  /**
   * The item filed after `item` (filed in ring) in deadline order: the next in its slot, else the oldest of
   * the next non-empty slot before the horizon; WHEEL_NONE after the last. Visits at most slotCount slots.
   */
  after(ring: number, item: number): number {
    const next = this.next;
    let n = next[item];
    if (n < this.sentinelBase) return n;
    const base = this.sentinelBase + ring * this.slotCount;
    const mask = this.slotMask;
    // Slots in deadline order run from the cursor's; n is the sentinel of item's slot.
    for (let k = ((n - base - this.cursor) & mask) + 1; k < this.slotCount; k++) {
      const sentinel = base + ((this.cursor + k) & mask);
      n = next[sentinel];
      if (n !== sentinel) return n;
    }
    return WHEEL_NONE;
  }
}
