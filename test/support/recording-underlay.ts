/**
 * An Underlay (src/daemon/transports/underlay.ts) that records what would be written, for transport tests without
 * a TUN: the packets a transport queued from the batch it was delivered (queue(i)), and the datagrams it built in
 * the transmit batch (flushTx).
 */
import { Underlay } from '../../src/daemon/transports/underlay.js';

export class RecordingUnderlay extends Underlay {
  readonly queued: number[] = [];
  readonly written: Uint8Array[] = [];
  override queue(i: number): void {
    this.queued.push(i);
  }
  override flushTx(): void {
    for (let k = 0; k < this.tx.count; k++) this.written.push(this.tx.packet(k).slice());
    this.tx.count = 0;
  }
}
