/**
 * The fast path's same-run reference (issue 10, item 5): a bare loop that makes the same random memory
 * accesses per packet as Pipeline.process on an established flow, and none of the pipeline's logic. It runs
 * in the same process, on the same packets, in the same minute as the fast-path figure, so the ratio
 * fastpath / reference says how much of the per-packet time is the pipeline and how much is memory — a
 * figure that moves by 2× from machine to machine does not.
 *
 * What it has, per flow, with the flow table's sizes and layout (src/flow/flow-table.ts, IPv4):
 *   - a bucket array of the same length (Int32, the power of two the table chose) and a record array of
 *     the same stride (21 words = 84 bytes per flow), on the same memory (huge pages when the table has them);
 *   - both keys of every live flow of the benchmarked table, chained from their buckets the way the table
 *     chains them, with a seed of its own (node = 2 * flow + direction; zone | protocol, ports, src, dst,
 *     next per node);
 *   - the flow fields the fast path writes: packet and byte counters per direction, the deadline, the
 *     next hop.
 *
 * What it does, per batch of 256 (the fast path's batch), after the same restore copy of the batch:
 *   per chunk of 64 packets (the pipeline's PREFETCH_CHUNK): one pass reading each packet's 5-tuple bytes,
 *   hashing them (the flow table's MurmurHash3 steps) and reading the bucket head; one pass reading the
 *   head records' lines (the pipeline's prefetch); then per packet: walk the chain comparing keys, add
 *   the packet and its bytes to the record, write the deadline, write the other node's addresses and
 *   ports into the packet with incremental checksums (RFC 1624) and decrement the TTL, set the next hop.
 * What it leaves out: inspection and validation of the packet, ownership check, TCP tracking, site
 * failover, fragments, ICMP errors, MSS clamping, per-port counters, metadata recording — the logic.
 */
import { checksumAdjust, word32Delta, wordDelta } from '../src/wire/checksum.js';
import { read16, write16, write32 } from '../src/wire/bytes.js';
import { finalMix, mixWord } from '../src/common/hash.js';
import type { PacketBatch } from '../src/common/packet-batch.js';
import type { FlowTable } from '../src/flow/flow-table.js';
import { NEXT_HOP_DROP } from '../src/common/ids.js';

/** The pipeline's prefetch chunk (src/dataplane/pipeline.ts, PREFETCH_CHUNK). */
const CHUNK = 64;
/** IPv4 header fields (RFC 791 section 3.1) and the UDP header after a 20-byte header (RFC 768). */
const TTL = 8;
const PROTOCOL = 9;
const IP_CHECKSUM = 10;
const SRC = 12;
const DST = 16;
const PORTS = 20;
const UDP_CHECKSUM = 26;
/** One TTL step in the TTL/protocol word. */
const TTL_ONE = 0x100;
/** Record layout of the flow table (IPv4): two nodes of 5 words, then the flow fields. */
const NODE_WORDS = 5;
const N_KEY0 = 0;
const N_PORTS = 1;
const N_NEXT = 2;
const N_SRC = 3;
const N_DST = 4;
const F_PACKETS = 2 * NODE_WORDS + 4;
const F_BYTES = 2 * NODE_WORDS + 6;
const F_DEADLINE = 2 * NODE_WORDS + 3;
const F_HOP = 2 * NODE_WORDS + 2;
/** Flow fields: 11 words since the policy epoch word (issue 12), which the reference does not compare (logic). */
const STRIDE = 2 * NODE_WORDS + 11;
const PROTOCOL_SHIFT = 16;
const IDLE_TIMEOUT_MS = 120_000;
const NO_NODE = -1;
const SEED = 0x5eed;

export class FastPathReference {
  private readonly buckets: Int32Array;
  private readonly records: Int32Array;
  private readonly mask: number;
  private readonly zoneOf: Uint16Array;
  private readonly slots = new Int32Array(CHUNK);
  sink = 0;

  /**
   * Copies the keys of every live flow of `table` (an IPv4 table) into a bare chained table with the same
   * bucket count and record stride. `zoneOf` maps an ingress port to its zone, as the pipeline's ports do.
   */
  constructor(table: FlowTable, bucketCount: number, zoneOf: Uint16Array, allocate: (bytes: number) => ArrayBuffer) {
    if (table.addrWords !== 1 || table.stride !== STRIDE) throw new Error(`reference: an IPv4 flow table of ${STRIDE}-word records is expected`);
    this.buckets = new Int32Array(allocate(bucketCount * 4), 0, bucketCount).fill(NO_NODE);
    this.records = new Int32Array(allocate(table.capacity * STRIDE * 4), 0, table.capacity * STRIDE);
    this.mask = bucketCount - 1;
    this.zoneOf = zoneOf;
    const rec = this.records;
    for (let flow = 0; flow < table.capacity; flow++) {
      if (!table.isLive(flow)) continue;
      for (let dir = 0; dir < 2; dir++) {
        const node = flow * 2 + dir;
        const at = flow * STRIDE + dir * NODE_WORDS;
        rec[at + N_KEY0] = table.nodeZone(node) | (table.protocol(flow) << PROTOCOL_SHIFT);
        rec[at + N_PORTS] = table.nodePorts(node);
        rec[at + N_SRC] = table.nodeSrc(node, 0);
        rec[at + N_DST] = table.nodeDst(node, 0);
        const b = this.bucket(rec[at + N_KEY0], rec[at + N_SRC], rec[at + N_DST], rec[at + N_PORTS]);
        rec[at + N_NEXT] = this.buckets[b];
        this.buckets[b] = node;
      }
      rec[flow * STRIDE + F_HOP] = table.nextHop(flow);
    }
  }

  private bucket(key0: number, src: number, dst: number, ports: number): number {
    return finalMix(mixWord(mixWord(mixWord(mixWord(SEED, key0), ports), src), dst)) & this.mask;
  }

  /** One batch of plain IPv4 UDP/TCP packets: fills batch.nextHop. */
  process(batch: PacketBatch, now: number): void {
    const data = batch.data;
    const rec = this.records;
    const buckets = this.buckets;
    const slots = this.slots;
    const n = batch.count;
    let acc = 0;
    for (let start = 0; start < n; start += CHUNK) {
      const end = Math.min(n, start + CHUNK);
      for (let i = start; i < end; i++) {
        const o = batch.offset[i];
        const key0 = this.zoneOf[batch.ingress[i]] | (data[o + PROTOCOL] << PROTOCOL_SHIFT);
        slots[i - start] = buckets[this.bucket(key0, readI32(data, o + SRC), readI32(data, o + DST), readI32(data, o + PORTS))];
      }
      for (let i = start; i < end; i++) {
        const node = slots[i - start];
        if (node >= 0) {
          const base = (node >> 1) * STRIDE;
          acc ^= rec[base] ^ rec[base + (STRIDE >> 1)] ^ rec[base + STRIDE - 1];
        }
      }
      for (let i = start; i < end; i++) {
        const o = batch.offset[i];
        const key0 = this.zoneOf[batch.ingress[i]] | (data[o + PROTOCOL] << PROTOCOL_SHIFT);
        const src = readI32(data, o + SRC);
        const dst = readI32(data, o + DST);
        const ports = readI32(data, o + PORTS);
        let node = slots[i - start];
        let at = 0;
        while (node !== NO_NODE) {
          at = (node >> 1) * STRIDE + (node & 1) * NODE_WORDS;
          if (rec[at + N_KEY0] === key0 && rec[at + N_PORTS] === ports && rec[at + N_SRC] === src && rec[at + N_DST] === dst) break;
          node = rec[at + N_NEXT];
        }
        if (node === NO_NODE) {
          batch.nextHop[i] = NEXT_HOP_DROP;
          continue;
        }
        const dir = node & 1;
        const f = (node >> 1) * STRIDE;
        rec[f + F_PACKETS + dir]++;
        rec[f + F_BYTES + dir] += batch.length[i];
        rec[f + F_DEADLINE] = now + IDLE_TIMEOUT_MS;
        // The packet becomes the image of the other node, ends swapped: src := other.dst, dst := other.src.
        const other = f + (dir ^ 1) * NODE_WORDS;
        const newSrc = rec[other + N_DST];
        const newDst = rec[other + N_SRC];
        const otherPorts = rec[other + N_PORTS];
        const newPorts = ((otherPorts & 0xffff) << 16) | (otherPorts >>> 16);
        const delta = word32Delta(src >>> 0, newSrc >>> 0) + word32Delta(dst >>> 0, newDst >>> 0);
        const ttlWord = read16(data, o + TTL);
        write32(data, o + SRC, newSrc);
        write32(data, o + DST, newDst);
        write32(data, o + PORTS, newPorts);
        data[o + TTL] = (ttlWord >>> 8) - 1;
        // TTL is the high byte of the TTL/protocol word (RFC 1624 section 4's example).
        const ipDelta = delta + wordDelta(ttlWord, ttlWord - TTL_ONE);
        write16(data, o + IP_CHECKSUM, checksumAdjust(read16(data, o + IP_CHECKSUM), ipDelta));
        const portsDelta = word32Delta(ports >>> 0, newPorts >>> 0);
        write16(data, o + UDP_CHECKSUM, checksumAdjust(read16(data, o + UDP_CHECKSUM), delta + portsDelta));
        batch.nextHop[i] = rec[f + F_HOP] & 0xffff;
      }
    }
    this.sink ^= acc;
  }
}

function readI32(b: Uint8Array, at: number): number {
  return (b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];
}
