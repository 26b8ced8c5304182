/**
 * Descriptors the DemuxFinishers (underlay.ts) drop after the fact: a transport that decrypts a whole batch in one
 * call (IPsec, WireGuard) keeps every candidate at demux time and marks the ones that fail; the underlay compacts
 * the batch's descriptors once, after every finisher ran (so no finisher's queued indices move under another's).
 * Grown to the batch's capacity on first use, nothing allocated per packet.
 */
import type { PacketBatch } from '../../common/packet-batch.js';

export class DropMarks {
  private marks = new Uint8Array(0);
  private count = 0;

  /** Descriptor j of `batch` is to be dropped by the next compact(). */
  mark(batch: PacketBatch, j: number): void {
    if (this.marks.length < batch.capacity) this.marks = new Uint8Array(batch.capacity);
    this.marks[j] = 1;
    this.count++;
  }

  /** Removes the marked descriptors among the first `count` (order kept); returns how many remain. */
  compact(batch: PacketBatch, count: number): number {
    if (this.count === 0) return count;
    this.count = 0;
    const marks = this.marks;
    let w = 0;
    for (let r = 0; r < count; r++) {
      if (marks[r] === 1) {
        marks[r] = 0;
        continue;
      }
      if (w !== r) {
        batch.offset[w] = batch.offset[r];
        batch.length[w] = batch.length[r];
        batch.ingress[w] = batch.ingress[r];
      }
      w++;
    }
    return w;
  }
}
