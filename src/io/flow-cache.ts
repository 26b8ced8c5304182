/**
 * The native flow cache (native/src/flow_cache.h; docs/ARCHITECTURE.md "Native flow cache"): established IPv4 UDP
 * and ICMP echo flows forwarded TUN to TUN inside the addon, their packets never entering JavaScript. This is the
 * cache's face for the daemon (src/daemon/flow-offload.ts decides what to install and when to forget it).
 *
 * One cache per thread (the main thread, or a lane's worker), as the TUN handles it reads. Installs, removals and
 * flushes are one node-api call each: a flow's direction is installed once, never per packet. The rest is the addon's:
 * a wakeup that read at most FLOW_CACHE_MAX_BATCH packets has its installed flows' packets rewritten and written to
 * their egress TUN there, the others handed to JS as before, and none at all when every packet hit.
 */
import type { TunDevice } from './tun.js';
import { loadNative, type FlowCacheStats, type NativeAddon } from './native.js';

export type { FlowCacheStats } from './native.js';

/** Bytes of a packet's start an install compares before and after the pipeline (kHeaderBytes): IPv4 (20) + 8 of L4. */
export const FLOW_CACHE_HEADER_BYTES = 28;
/** Wakeups of more packets than this go to JS whole (kMaxBatch): a full batch is throughput-bound, the JS chunk path better. */
export const FLOW_CACHE_MAX_BATCH = 8;
/** Entries per thread (kCapacity). */
export const FLOW_CACHE_CAPACITY = 4096;
/** flowCacheInstall's answer when the table is full (kRefusedFull): flush, then install again. */
const REFUSED_FULL = -2;
/** Numbers per folded entry: node, packets, bytes. */
const FOLD_WORDS = 3;

/** The per-port counters the cache adds its hits to (PipelineCounters' arrays: never replaced). */
export interface PortCounters {
  readonly rxPackets: Float64Array;
  readonly rxBytes: Float64Array;
  readonly txPackets: Float64Array;
  readonly txBytes: Float64Array;
}

/** Called per flow node with hits since the last fold. */
export type FoldVisitor = (node: number, packets: number, bytes: number) => void;

export class NativeFlowCache {
  private readonly addon: NativeAddon;
  /** Installed flow nodes and their slots (a removal names the slot; the addon checks it still holds the node). */
  private readonly slots = new Map<number, number>();
  private readonly foldOut = new Float64Array(FLOW_CACHE_CAPACITY * FOLD_WORDS);
  private open = true;
  private readonly taken = { packets: 0, bytes: 0, out: new Float64Array(2) };

  /** Turns this thread's cache on, its hits counted in `counters` (bound once: the arrays must never be replaced). */
  constructor(counters: PortCounters) {
    this.addon = loadNative();
    this.addon.flowCacheEnable(true, counters.rxPackets, counters.rxBytes, counters.txPackets, counters.txBytes);
  }

  /** Entries installed (as this side knows them: a closed TUN's entries go in the addon, and with the next flush here). */
  get size(): number {
    return this.slots.size;
  }

  has(node: number): boolean {
    return this.slots.has(node);
  }

  /**
   * Installs flow node `node`'s rewrite, learned from one packet it forwarded from `ingress` (port inPort) to `egress`
   * (port outPort): its first FLOW_CACHE_HEADER_BYTES as read (`before` at beforeAt) and as written (`after` at
   * afterAt). `dfOnly`: the cache takes the direction's packets with DF set only (the others' ids are renumbered).
   * False when the addon refuses (not a packet or a rewrite it takes).
   */
  install(ingress: TunDevice, egress: TunDevice, before: Uint8Array, beforeAt: number, after: Uint8Array, afterAt: number, inPort: number, outPort: number, node: number, dfOnly = false): boolean {
    if (!this.open || ingress.closed || egress.closed) return false;
    let slot = this.addon.flowCacheInstall(ingress.native, egress.native, before, beforeAt, after, afterAt, inPort, outPort, node, dfOnly);
    if (slot === REFUSED_FULL) {
      this.flush();
      slot = this.addon.flowCacheInstall(ingress.native, egress.native, before, beforeAt, after, afterAt, inPort, outPort, node, dfOnly);
    }
    if (slot < 0) return false;
    this.slots.set(node, slot);
    return true;
  }

  /** Forgets node's entry and returns its hits since the last fold (null: none installed). Reuses one object. */
  take(node: number): { packets: number; bytes: number } | null {
    const slot = this.slots.get(node);
    if (slot === undefined) return null;
    this.slots.delete(node);
    const t = this.taken;
    if (!this.addon.flowCacheTake(slot, node, t.out)) return null;
    t.packets = t.out[0];
    t.bytes = t.out[1];
    return t;
  }

  /** Forgets every entry (fold first to keep their hits). */
  flush(): void {
    if (!this.open) return;
    this.addon.flowCacheFlush();
    this.slots.clear();
  }

  /** Hands every entry's hits since the last fold to `visit` and resets them; returns how many entries had hits. */
  fold(visit: FoldVisitor): number {
    if (!this.open) return 0;
    const out = this.foldOut;
    const n = this.addon.flowCacheFold(out);
    for (let k = 0; k < n; k++) visit(out[k * FOLD_WORDS], out[k * FOLD_WORDS + 1], out[k * FOLD_WORDS + 2]);
    return n;
  }

  stats(): FlowCacheStats {
    return this.addon.flowCacheStats();
  }

  /** Turns this thread's cache off (every entry and binding dropped). */
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.slots.clear();
    this.addon.flowCacheEnable(false);
  }
}
