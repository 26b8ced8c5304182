/**
 * Software segmentation for next hops without offloads: what the edge does with a GSO super-packet or a partial
 * checksum (read from a TUN with offloads, src/io/tun.ts) whose next hop cannot take it — a tunnel that encrypts
 * or encapsulates per packet (WireGuard, GRE, IPsec), or a TUN opened without offloads.
 *
 *   packet i, batch.offloaded(i), next hop without acceptsOffload
 *     ├ partial checksum only ─ complete() in place (gso.ts completeChecksum) ─ delivered as any packet
 *     └ super-packet ─ begin(): header checked (gso.ts gsoHeaderLength) ─ fill(): up to SEGMENT_CAPACITY segments
 *                      into `segments`, a preallocated batch of ordinary slots, delivered as a batch of their own
 *
 * The edge delivers the segments right where the super-packet stood in its batch (edge.ts deliver), so a flow's
 * packets leave in the order they came. A segment longer than the tunnel's MTU meets the transport's tunnel-MTU
 * path like any packet (tunnel-mtu.ts). Nothing allocates per packet.
 */
import {
  PacketBatch,
  VNET_CSUM_OFFSET,
  VNET_CSUM_START,
  VNET_GSO_NONE,
  VNET_GSO_SIZE,
  VNET_GSO_TYPE,
  VNET_WORDS,
} from '../../common/packet-batch.js';
import { UDP_CHECKSUM } from '../../wire/constants.js';
import { completeChecksum, GSO_BAD, gsoHeaderLength, gsoSegmentCount, writeSegment } from '../../wire/gso.js';
import { EdgeCounter } from './counters.js';

/**
 * Segments per delivered round: one 64 KiB super-packet of 1,448-byte segments makes 46, so one round almost
 * always carries a whole super-packet; smaller gso_size values take more rounds.
 */
export const SEGMENT_CAPACITY = 64;

export class SoftwareGso {
  /** The segments of the super-packet being delivered (ordinary 2 KiB slots with the usual headroom). */
  readonly segments = new PacketBatch(SEGMENT_CAPACITY);
  /** Headers each segment repeats, for the super-packet begin() accepted. */
  private header = 0;

  constructor(private readonly counters: Float64Array) {}

  /** Is packet i a GSO super-packet (else it only carries a partial checksum)? */
  isSuper(batch: PacketBatch, i: number): boolean {
    return batch.vnet[i * VNET_WORDS + VNET_GSO_TYPE] !== VNET_GSO_NONE;
  }

  /** Completes packet i's partial checksum in place and marks it plain; false (counted, dropped) when the header lies. */
  complete(batch: PacketBatch, i: number): boolean {
    const v = i * VNET_WORDS;
    const start = batch.vnet[v + VNET_CSUM_START];
    const field = batch.vnet[v + VNET_CSUM_OFFSET];
    const off = batch.offset[i];
    // csum_offset tells the protocol: 6 is UDP's checksum field (RFC 768), 16 TCP's (RFC 9293 section 3.1).
    if (!completeChecksum(batch.data, off, batch.length[i], start, field, field === UDP_CHECKSUM)) {
      this.counters[EdgeCounter.GsoBad]++;
      return false;
    }
    batch.clearVnet(i);
    this.counters[EdgeCounter.ChecksumCompleted]++;
    return true;
  }

  /** Checks super-packet i and returns how many segments it makes, or -1 (counted, dropped). */
  begin(batch: PacketBatch, i: number): number {
    const v = i * VNET_WORDS;
    const type = batch.vnet[v + VNET_GSO_TYPE];
    const size = batch.vnet[v + VNET_GSO_SIZE];
    const header = gsoHeaderLength(batch.data, batch.offset[i], batch.length[i], type, size, batch.vnet[v + VNET_CSUM_START]);
    if (header === GSO_BAD || header + size > this.segments.maxPacketSize) {
      this.counters[EdgeCounter.GsoBad]++;
      return -1;
    }
    this.header = header;
    this.counters[EdgeCounter.GsoSegmented]++;
    return gsoSegmentCount(batch.length[i], header, size);
  }

  /**
   * Writes segments from..from+m-1 of super-packet i (begin() accepted it) into `segments`, each with next hop
   * `hop`, and returns m (at most SEGMENT_CAPACITY, at least 1 while segments remain).
   */
  fill(batch: PacketBatch, i: number, from: number, total: number, hop: number): number {
    const v = i * VNET_WORDS;
    const type = batch.vnet[v + VNET_GSO_TYPE];
    const size = batch.vnet[v + VNET_GSO_SIZE];
    const l4 = batch.vnet[v + VNET_CSUM_START];
    const seg = this.segments;
    const m = Math.min(SEGMENT_CAPACITY, total - from);
    const off = batch.offset[i];
    const len = batch.length[i];
    for (let s = 0; s < m; s++) {
      const at = s * seg.slotSize + seg.headroom;
      seg.offset[s] = at;
      seg.length[s] = writeSegment(batch.data, off, len, type, size, l4, this.header, from + s, seg.data, at);
      seg.ingress[s] = batch.ingress[i];
      seg.nextHop[s] = hop;
      seg.drop[s] = 0;
    }
    seg.count = m;
    this.counters[EdgeCounter.GsoSegments] += m;
    return m;
  }
}
