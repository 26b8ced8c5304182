/**
 * The daemon's side of the native flow cache (src/io/flow-cache.ts, native/src/flow_cache.h; docs/ARCHITECTURE.md
 * "Native flow cache"): which packets' flows to install, and when the cache must forget.
 *
 *   TUN wakeup of <= FLOW_CACHE_MAX_BATCH packets that reached JS ─ before(): each packet's first 28 bytes copied
 *   ─ pipeline.process ─ after(): a packet forwarded on a flow direction not installed yet, between two TUNs of this
 *   thread, that Pipeline.offloadable allows ─ installed (its rewrite learned from the bytes before and after)
 *
 * Forgetting: a flow's entries when it ends (flowEnded, from pipeline.onFlowEnding: their last hits counted first); everything on any change that may
 * alter an established flow's forwarding (pipeline.onChange: policy epoch, onramp set, up/down, sites, removals), on
 * onramp add / update / remove and on a capture's start (the edge calls invalidate()). A capture running installs
 * nothing (its tap must see every packet).
 *
 * The flow table stays the truth: every sync() (the edge's expiry timer, each second, before the table expires flows;
 * before the API lists flows; before an invalidation) folds the hits since the last into their flows, counted and touched at `now`, so an
 * offloaded flow never expires while it carries packets and does once they stop. The per-port counters the cache
 * increments itself are the pipeline's own (PipelineCounters), so /metrics and health see each packet at once.
 */
import { NEXT_HOP_DROP } from '../common/ids.js';
import { VNET_F_NEEDS_CSUM, VNET_FLAGS, VNET_GSO_NONE, VNET_GSO_TYPE, VNET_WORDS, type PacketBatch } from '../common/packet-batch.js';
import { OFFLOAD_DF_ONLY, OFFLOAD_NO, type Pipeline } from '../dataplane/pipeline.js';
import type { FlowTable } from '../flow/flow-table.js';
import { FLOW_CACHE_HEADER_BYTES, FLOW_CACHE_MAX_BATCH, NativeFlowCache, type FlowCacheStats } from '../io/flow-cache.js';
import type { TunDevice } from '../io/tun.js';
import { AF_INET4, ICMP4_ECHO_REPLY, ICMP4_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_UDP } from '../wire/constants.js';

/** The figures the edge reports (status, /metrics): the cache's own plus what this side counts. */
export interface FlowOffloadStatus extends FlowCacheStats {
  /** Hits folded into the flow table so far. */
  folded: number;
  /** Invalidations (flush of every entry) by a change. */
  invalidations: number;
}

export class FlowOffload {
  private readonly cache: NativeFlowCache;
  /** The first FLOW_CACHE_HEADER_BYTES of each packet of the batch being processed, as read. */
  private readonly before = new Uint8Array(FLOW_CACHE_MAX_BATCH * FLOW_CACHE_HEADER_BYTES);
  /** Packets of the current batch snapshotted by before() (0: none, after() installs nothing). */
  private snapped = 0;
  private paused = false;
  private folded = 0;
  private invalidations = 0;
  private readonly table: FlowTable;

  /**
   * `tunOf(port)`: the TUN this thread reads port's packets from and writes them to (an interconnect's, the egress),
   * null for any other port (tunnels stay in JS). `now()`: the pipeline's clock.
   */
  constructor(private readonly pipeline: Pipeline, private readonly tunOf: (port: number) => TunDevice | null, private readonly now: () => number) {
    const c = pipeline.counters;
    this.cache = new NativeFlowCache({ rxPackets: c.rxPackets, rxBytes: c.rxBytes, txPackets: c.txPackets, txBytes: c.txBytes });
    this.table = pipeline.flows4;
    pipeline.onChange = (): void => this.invalidate();
    pipeline.onFlowEnding = (table, flow): void => this.flowEnded(table, flow);
    pipeline.onFlowsRead = (): void => this.sync();
  }

  /** While paused (a capture runs) nothing is installed; pausing forgets every entry. */
  setPaused(paused: boolean): void {
    if (paused) this.invalidate();
    this.paused = paused;
  }

  /** Before pipeline.process(batch): keeps each packet's first bytes when the batch is small enough for the cache. */
  beforeProcess(batch: PacketBatch): void {
    const n = batch.count;
    if (this.paused || n > FLOW_CACHE_MAX_BATCH) {
      this.snapped = 0;
      return;
    }
    const data = batch.data;
    const before = this.before;
    for (let i = 0; i < n; i++) {
      const o = batch.offset[i];
      if (batch.length[i] < FLOW_CACHE_HEADER_BYTES) continue;
      // A byte loop, not set(subarray()): no view allocated per packet.
      const at = i * FLOW_CACHE_HEADER_BYTES;
      for (let k = 0; k < FLOW_CACHE_HEADER_BYTES; k++) before[at + k] = data[o + k];
    }
    this.snapped = n;
  }

  /** After pipeline.process(batch): installs the forwarded packets' flow directions the cache may take. */
  afterProcess(batch: PacketBatch): void {
    const n = this.snapped;
    this.snapped = 0;
    if (n === 0 || n !== batch.count) return;
    for (let i = 0; i < n; i++) {
      const node = batch.flowNode[i];
      const hop = batch.nextHop[i];
      if (node < 0 || hop === NEXT_HOP_DROP || batch.family[i] !== AF_INET4 || batch.length[i] < FLOW_CACHE_HEADER_BYTES) continue;
      const protocol = batch.protocol[i];
      if (protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMP) continue;
      const o = batch.offset[i];
      if (protocol === IPPROTO_ICMP) {
        const type = batch.data[batch.l4Offset[i]];
        if (type !== ICMP4_ECHO_REQUEST && type !== ICMP4_ECHO_REPLY) continue;
      }
      // A partial checksum or a GSO super-packet is JS's each time (the addon checks every packet the same way).
      if ((batch.vnet[i * VNET_WORDS + VNET_FLAGS] & VNET_F_NEEDS_CSUM) !== 0 || batch.vnet[i * VNET_WORDS + VNET_GSO_TYPE] !== VNET_GSO_NONE) continue;
      if (this.cache.has(node)) continue;
      const ingress = batch.ingress[i];
      const allowed = this.pipeline.offloadable(node, ingress);
      if (allowed === OFFLOAD_NO) continue;
      const from = this.tunOf(ingress);
      const to = this.tunOf(hop);
      if (from === null || to === null) continue;
      this.cache.install(from, to, this.before, i * FLOW_CACHE_HEADER_BYTES, batch.data, o, ingress, hop, node, allowed === OFFLOAD_DF_ONLY);
    }
  }

  /** Folds the hits since the last sync into their flows (counted, and touched at now: the idle timer restarts). */
  sync(now: number = this.now()): void {
    if (this.cache.size === 0) return;
    const table = this.table;
    this.cache.fold((node, packets, bytes) => {
      const flow = node >> 1;
      const dir = (node & 1) as 0 | 1;
      if (!table.isLive(flow)) return;
      table.touch(flow, dir, now);
      table.countMany(flow, dir, packets, bytes);
      this.folded += packets;
    });
  }

  /** Forgets every entry, their hits folded first. */
  invalidate(): void {
    if (this.cache.size === 0) return;
    this.sync();
    this.cache.flush();
    this.invalidations++;
  }

  /** A flow ends: its entries go, their last hits counted into it first (the flow log reads them next). */
  private flowEnded(table: FlowTable, flow: number): void {
    if (table !== this.table || this.cache.size === 0) return;
    for (let dir = 0 as 0 | 1; dir <= 1; dir++) {
      const node = flow * 2 + dir;
      if (!this.cache.has(node)) continue;
      const taken = this.cache.take(node);
      if (taken === null) continue;
      table.countMany(flow, dir as 0 | 1, taken.packets, taken.bytes);
      this.folded += taken.packets;
    }
  }

  status(): FlowOffloadStatus {
    return { ...this.cache.stats(), folded: this.folded, invalidations: this.invalidations };
  }

  /** Off: every entry dropped, the pipeline's hooks left as the next owner sets them. */
  close(): void {
    this.sync();
    this.cache.close();
    this.pipeline.onChange = null;
    this.pipeline.onFlowEnding = null;
    this.pipeline.onFlowsRead = null;
  }
}
