/**
 * In-order reassembly of the first `limit` bytes of one direction of a TCP stream, for a scanner that must see
 * them exactly once and in order (DLP: src/dataplane/dlp-tracker.ts). Pure: no I/O, no clock, no allocation
 * after construction (the hold window is preallocated; one instance is reused per flow via reset()).
 *
 * Stream offsets count from the first byte after the SYN (RFC 9293 section 3.4: the SYN takes one sequence
 * number), or, when the SYN was not seen (reassembly started mid-flow), from the first data segment offered.
 * Sequence numbers wrap modulo 2^32; a segment's position is its signed 32-bit distance from that base.
 *
 * Per segment, relative to `next` (the first byte not yet passed to the sink):
 *   - entirely before next: a retransmission of bytes already scanned — ignored (never rescanned);
 *   - overlapping next: its new part goes to the sink at once, then any held bytes that now follow;
 *   - after next, within the hold window [next, next + window): its bytes are held (a byte held once keeps its
 *     first value; a later copy does not overwrite it) and passed on when the gap before them fills;
 *   - reaching past the hold window: OUT_OF_WINDOW, nothing kept — the caller drops the segment and the sender
 *     retransmits it once the gap is filled (TCP recovers; a scanner that skipped bytes could be evaded).
 * Bytes at or past `limit` are never held or passed.
 */

/** Where in-order bytes go (DlpStream.feed has this shape). */
export interface ByteSink {
  feed(chunk: Uint8Array, offset: number, length: number): unknown;
}

/** offer() answers. */
export const REASSEMBLY_OK = 0;
/** The segment reaches past the hold window: drop it, its sender will send it again. */
export const REASSEMBLY_OUT_OF_WINDOW = 1;

const SEQ_MOD = 0x100000000;

export class StreamReassembler {
  /** Stream offset of the first byte not yet passed to the sink. */
  next = 0;
  /** Stream offset of the FIN (-1: not seen). */
  finAt = -1;
  private base = 0;
  private known = false;
  private held = 0;
  private readonly ring: Uint8Array;
  private readonly present: Uint8Array;
  private readonly mask: number;

  /** window: bytes held ahead of a gap (a power of two). limit: bytes of the stream reassembled. */
  constructor(readonly window: number, public limit: number) {
    if (!Number.isInteger(window) || window < 1 || (window & (window - 1)) !== 0) throw new RangeError(`reassembly window ${window} is not a power of two`);
    this.ring = new Uint8Array(window);
    this.present = new Uint8Array(window);
    this.mask = window - 1;
  }

  reset(limit: number): void {
    this.limit = limit;
    this.next = 0;
    this.finAt = -1;
    this.base = 0;
    this.known = false;
    if (this.held !== 0) this.present.fill(0);
    this.held = 0;
  }

  /** All `limit` bytes passed, or the stream's FIN reached. */
  get done(): boolean {
    return this.next >= this.limit || (this.finAt >= 0 && this.next >= this.finAt);
  }

  /** Whether the stream's first sequence number is known (SYN seen, or a segment offered). */
  get started(): boolean {
    return this.known;
  }

  /** The SYN (or SYN-ACK) with sequence number `seq`: the stream starts at seq + 1. */
  syn(seq: number): void {
    if (this.known) return;
    this.base = (seq + 1) % SEQ_MOD;
    this.known = true;
  }

  /**
   * A segment: sequence number `seq`, payload buf[offset, offset + length), FIN flag. In-order bytes (this
   * segment's and held ones it joins) go to `sink` before it returns. REASSEMBLY_OK or REASSEMBLY_OUT_OF_WINDOW.
   */
  offer(seq: number, buf: Uint8Array, offset: number, length: number, fin: boolean, sink: ByteSink): number {
    if (!this.known) {
      if (length === 0) return REASSEMBLY_OK;
      this.base = seq >>> 0;
      this.known = true;
    }
    const start = (seq - this.base) | 0;
    const end = start + length;
    if (fin && this.finAt < 0 && start >= 0) this.finAt = end;
    const next = this.next;
    const limit = this.limit;
    if (end <= next || next >= limit || length === 0) return REASSEMBLY_OK;
    if (start <= next) {
      const to = end < limit ? end : limit;
      sink.feed(buf, offset + (next - start), to - next);
      this.advance(to, sink);
      return REASSEMBLY_OK;
    }
    const windowEnd = next + this.window;
    if (start >= limit) return REASSEMBLY_OK;
    const to = end < limit ? end : limit;
    if (to > windowEnd) return REASSEMBLY_OUT_OF_WINDOW;
    const ring = this.ring;
    const present = this.present;
    const mask = this.mask;
    for (let s = start; s < to; s++) {
      const at = s & mask;
      if (present[at] === 0) {
        present[at] = 1;
        ring[at] = buf[offset + s - start];
        this.held++;
      }
    }
    return REASSEMBLY_OK;
  }

  /** next := `to` (bytes before it were passed); then passes the held run that follows, if any. */
  private advance(to: number, sink: ByteSink): void {
    const ring = this.ring;
    const present = this.present;
    const mask = this.mask;
    // Held bytes the in-order data just covered are stale copies: forget them.
    if (this.held !== 0) {
      for (let s = this.next; s < to; s++) {
        const at = s & mask;
        if (present[at] !== 0) {
          present[at] = 0;
          this.held--;
        }
      }
    }
    this.next = to;
    if (this.held === 0) return;
    let end = to;
    const limit = this.limit;
    while (end < limit && present[end & mask] !== 0) {
      present[end & mask] = 0;
      this.held--;
      end++;
    }
    if (end === to) return;
    // The run may wrap around the ring: at most two pieces.
    const a = to & mask;
    const first = Math.min(end - to, this.window - a);
    sink.feed(ring, a, first);
    if (first < end - to) sink.feed(ring, 0, end - to - first);
    this.next = end;
  }
}
