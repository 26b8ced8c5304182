/**
 * An indexed binary min-heap of items keyed by a due time: the HealthEngine's deadline index, so that poll()
 * visits only the onramps whose next deadline has come (O(due · log n)) instead of every onramp.
 * Each item carries its own key (`due`) and position (`heapAt`, -1 when not in the heap), so an item whose
 * due time changed is moved in O(log n) and any item is removed in O(log n). Ties keep no particular order.
 */
export interface HeapItem {
  due: number;
  heapAt: number;
}

export class DeadlineHeap<T extends HeapItem> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** The earliest due time; Infinity when empty. */
  get minDue(): number {
    return this.items.length === 0 ? Infinity : this.items[0].due;
  }

  /** Puts an item in (or moves it, when it is in already) at its current `due`. */
  set(item: T): void {
    if (item.heapAt < 0) {
      item.heapAt = this.items.length;
      this.items.push(item);
      this.up(item.heapAt);
    } else {
      this.down(this.up(item.heapAt));
    }
  }

  /** Takes the earliest item out when it is due at or before `now`; undefined otherwise. */
  popDue(now: number): T | undefined {
    const top = this.items[0];
    if (top === undefined || top.due > now) return undefined;
    this.removeAt(0);
    return top;
  }

  delete(item: T): boolean {
    if (item.heapAt < 0) return false;
    this.removeAt(item.heapAt);
    return true;
  }

  private removeAt(i: number): void {
    const items = this.items;
    const gone = items[i];
    const last = items.pop()!;
    gone.heapAt = -1;
    if (last !== gone) {
      items[i] = last;
      last.heapAt = i;
      this.down(this.up(i));
    }
  }

  /** Moves the item at i toward the root while it is due before its parent; returns where it ends. */
  private up(i: number): number {
    const items = this.items;
    const item = items[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent].due <= item.due) break;
      items[i] = items[parent];
      items[i].heapAt = i;
      i = parent;
    }
    items[i] = item;
    item.heapAt = i;
    return i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i];
    while (true) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && items[right].due < items[left].due ? right : left;
      if (items[child].due >= item.due) break;
      items[i] = items[child];
      items[i].heapAt = i;
      i = child;
    }
    items[i] = item;
    item.heapAt = i;
  }
}
