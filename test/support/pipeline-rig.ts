/**
 * PipelineRig: a test harness around the pure pipeline: send one packet in on a port, get back where it went and
 * the bytes as they left (copied), parsed into a plain record.
 */
import { PacketBatch } from '../../src/common/packet-batch.js';
import { NEXT_HOP_DROP } from '../../src/common/ids.js';
import { Pipeline, type PipelineConfig } from '../../src/dataplane/pipeline.js';
import { parsePacket, type ParsedPacket } from '../../src/wire/build.js';
import type { CaptureTap } from '../../src/control/capture.js';

export interface Sent {
  /** Port the packet leaves on, or -1 when dropped or held. */
  hop: number;
  /** Drop reason (0 when forwarded or held). */
  drop: number;
  bytes: Uint8Array;
  parsed: ParsedPacket;
}

export class PipelineRig {
  readonly pipeline: Pipeline;
  now = 1_000_000;
  /** A capture's tap, called around process() as the edge's read loop calls it (null: no capture). */
  tap: CaptureTap | null = null;
  private readonly batch = new PacketBatch(1, 65536 + 256, 128);

  constructor(config: PipelineConfig) {
    this.pipeline = new Pipeline({ hashSeed: 12345, ...config });
  }

  /** `own`: a packet the edge itself sends into the pipeline as if it came out of `port` (Pipeline.processOwn). */
  send(port: number, packet: Uint8Array, own = false): Sent {
    const b = this.batch;
    b.clear();
    if (b.push(packet, 0, packet.length, port) < 0) throw new Error('packet does not fit the test batch');
    const tap = own ? null : this.tap;
    if (tap !== null) tap.before(b, this.now);
    if (own) this.pipeline.processOwn(b, this.now);
    else this.pipeline.process(b, this.now);
    if (tap !== null) tap.after(b, this.now, true);
    const bytes = b.packet(0).slice();
    const hop = b.nextHop[0] === NEXT_HOP_DROP ? -1 : b.nextHop[0];
    return { hop, drop: b.drop[0], bytes, parsed: parsePacket(bytes) };
  }

  /** Packets the pipeline emitted on its own during the last send (released fragments). */
  generated(): Sent[] {
    const g = this.pipeline.generated;
    const out: Sent[] = [];
    for (let i = 0; i < g.count; i++) {
      const bytes = g.packet(i).slice();
      out.push({ hop: g.nextHop[i] === NEXT_HOP_DROP ? -1 : g.nextHop[i], drop: g.drop[i], bytes, parsed: parsePacket(bytes) });
    }
    return out;
  }

  advance(ms: number): void {
    this.now += ms;
    this.pipeline.expire(this.now, 1 << 20);
  }
}
