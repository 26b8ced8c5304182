/**
 * The flow table: every conversation the edge forwards, findable from either direction in one
 * probe, with idle expiry, per-onramp quotas and early drop of unestablished flows.
 *
 *                         buckets (2^k heads)          nodes (2 per flow)
 *   key ──hash──▶ h ──▶ [ h ] ──▶ node 2f+0 ──next──▶ node 2g+1 ──▶ -1
 *                                    │  zone, src, dst, ports (this direction's key)
 *                                    ▼
 *                                  flow f = node >> 1: protocol, state, ports, counters, deadline
 *
 * A flow has two nodes, like conntrack's tuplehash[2]: node = flow * 2 + dir, dir 0 the
 * original direction, dir 1 the reply. Each node carries its own key, so the reply may live in
 * another zone and carry translated (NAT) addresses and ports; both nodes share one hash index.
 *
 * Everything is preallocated for `capacity` flows as struct-of-arrays; lookups, creations and
 * per-packet updates allocate nothing. Memory per flow (IPv4, 2^k buckets ~ 2 per flow):
 *   node keys 2 x (2 zone + 4 src + 4 dst + 4 ports) = 28, node next 8, buckets ~8.4,
 *   flow scalars 12 (protocol, state, status, flags, ruleId, ingressPort, returnPort, nextHop),
 *   counters 24, TCP windows 26, deadline 4, createdAt 4, wheel links 8, per-port arrays ~0.5
 *   = ~123 bytes (Linux conntrack: 256). memoryBytes() sums the real figure.
 *
 * Expiry: a timer wheel (timer-wheel.ts) with two rings, "protected" (established) and
 * "evictable" (not established, or TCP in TIME_WAIT / CLOSE). Early drop takes the evictable
 * flow filed earliest, i.e. nearest its deadline; among flows of one kind that is the oldest
 * (least recently refreshed). Established flows are never evicted.
 *
 * Time is `now` in milliseconds (any origin), passed in. Deadlines are kept modulo 2^32 ms and
 * compared with serial arithmetic (exact while within 24.8 days of now; timeouts are capped at
 * 20 days, see timeouts.ts).
 */
import { Drop } from '../common/drop-reasons.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../common/ids.js';
import { FlowKey } from './flow-key.js';
import { TCP_STATE_COUNT, TcpState, TcpTracker } from './tcp.js';
import { TimerWheel, WHEEL_NONE } from './timer-wheel.js';
import { resolveTimeouts, type FlowTimeouts } from './timeouts.js';

export { FlowKey } from './flow-key.js';
export { TcpState } from './tcp.js';
export { DEFAULT_TIMEOUTS, type FlowTimeouts } from './timeouts.js';

export const enum RemoveReason {
  Expired = 1,
  Evicted = 2,
  Deleted = 3,
}

export interface FlowTableOptions {
  /** Hard maximum number of flows; everything is preallocated for it. */
  capacity: number;
  /** 1: IPv4 (one word per address); 4: IPv6. */
  addrWords: 1 | 4;
  timeouts?: Partial<FlowTimeouts>;
  /** Hash seed; random by default (hash-flooding defence). Tests pass a fixed one. */
  hashSeed?: number;
  /** Ingress port ids are 0..maxPorts-1 (quotas, per-port counts). Default 65536. */
  maxPorts?: number;
  /**
   * Called before a flow's slot is freed (expiry, eviction, delete) so the owner can release NAT
   * mappings or log it; the flow's fields are still readable. It must not create or delete flows.
   */
  onRemove?: (flow: number, reason: RemoveReason) => void;
  /** Timer wheel granularity (ms): flows are removed at most this long after their deadline. Default 1000. */
  wheelTickMs?: number;
  /** Number of hash buckets (rounded up to a power of two). Default: the power of two >= 2 * capacity. */
  buckets?: number;
}

const DEFAULT_MAX_PORTS = 65536;
const DEFAULT_WHEEL_TICK_MS = 1000;
/** Wheel size bounds (slots); the wheel spans the longest timeout when it can, re-files beyond. */
const MIN_WHEEL_SLOTS = 64;
const MAX_WHEEL_SLOTS = 1 << 16;
/** Node indices are int32: 2 * capacity must stay below 2^31. */
const MAX_CAPACITY = 1 << 29;
/** Work spent reclaiming overdue flows before evicting when the table is full. */
const FULL_TABLE_EXPIRE_BUDGET = 64;

/** status bits (internal, per flow). */
const LIVE = 0x01;
/** Both directions seen (UDP/ICMP/other) or the handshake completed (TCP): conntrack's IPS_ASSURED. */
const ASSURED = 0x02;
/** Filed in the evictable ring of the wheel. */
const EVICTABLE = 0x04;
/** onRemove is running for it; delete() ignores it. */
const REMOVING = 0x08;

const RING_PROTECTED = 0;
const RING_EVICTABLE = 1;
const RING_COUNT = 2;

const NO_NODE = -1;
const MS_PER_SECOND = 1000;
const PROTOCOL_COUNT = 256;

// MurmurHash3 (x86_32) constants: a well-mixed, Math.imul-only hash of the key words.
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const M5 = 5;
const N1 = 0xe6546b64;
const F1 = 0x85ebca6b;
const F2 = 0xc2b2ae35;

/** One MurmurHash3 block; `key` is a secret added to every word before mixing. */
function mixWord(h: number, word: number, key: number): number {
  let k = Math.imul((word + key) | 0, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, M5) + N1) | 0;
}

function finalMix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, F1);
  h ^= h >>> 13;
  h = Math.imul(h, F2);
  return h ^ (h >>> 16);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export class FlowTable {
  readonly capacity: number;
  readonly addrWords: number;
  readonly maxPorts: number;

  // --- per node (node = flow * 2 + dir) --------------------------------------------------------
  /** Zone of this direction's key. */
  readonly nodeZone: Uint16Array;
  /** Source address words of this direction's key: nodeSrc[node * addrWords + w]. */
  readonly nodeSrc: Uint32Array;
  /** Destination address words: nodeDst[node * addrWords + w]. */
  readonly nodeDst: Uint32Array;
  /** (srcPort << 16 | dstPort) >>> 0 of this direction's key. */
  readonly nodePorts: Uint32Array;
  /** Packets seen in this direction (wraps at 2^32). */
  readonly packets: Uint32Array;
  /** Bytes seen in this direction (exact up to 2^53). */
  readonly bytes: Float64Array;

  // --- per flow ---------------------------------------------------------------------------
  /** IP protocol number (part of both keys). */
  readonly protocol: Uint8Array;
  /** TcpState for TCP; 0 for other protocols (use isEstablished()). */
  readonly state: Uint8Array;
  /** The port that created the flow (quota accounting). */
  readonly ingressPort: Uint16Array;
  /** Where replies go (ARR): set to ingressPort on create; the pipeline may change it (failover). */
  readonly returnPort: Uint16Array;
  /** Forward next hop, the pipeline's decision; 0 on create. */
  readonly nextHop: Uint16Array;
  /** Free for the pipeline (NAT/ARR bits); zeroed on create, never read by the table. */
  readonly flags: Uint8Array;
  /** Free for the pipeline: the firewall rule that decided; zeroed on create. */
  readonly ruleId: Uint16Array;
  /** Creation time in whole seconds: floor(now / 1000) mod 2^32 (for logs and flow age). */
  readonly createdAt: Uint32Array;

  private readonly nodeNext: Int32Array;
  private readonly buckets: Int32Array;
  private readonly bucketMask: number;
  private readonly hashSeed: number;
  private readonly hashKey: number;
  /** Deadline in ms, modulo 2^32. */
  private readonly deadlines: Uint32Array;
  private readonly status: Uint8Array;
  private readonly tcp: TcpTracker;
  private readonly wheel: TimerWheel;
  private readonly portFlows: Uint32Array;
  private readonly portQuota: Uint32Array;
  /** Timeouts by protocol number before / after a reply (TCP: SYN_SENT for both). */
  private readonly unrepliedTimeout: Float64Array;
  private readonly repliedTimeout: Float64Array;
  private readonly tcpTimeout: Float64Array;
  private readonly onRemove: ((flow: number, reason: RemoveReason) => void) | undefined;
  /** Free flows, linked through the wheel's next[] (a free flow is in no wheel list). */
  private freeHead: number;
  private live = 0;
  private clockStarted = false;
  /** The latest `now` seen, to turn stored deadlines back into absolute times. */
  private clock = 0;

  constructor(opts: FlowTableOptions) {
    const capacity = opts.capacity;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_CAPACITY) {
      throw new RangeError(`flow table capacity must be an integer in 1..${MAX_CAPACITY}, got ${capacity}`);
    }
    if (opts.addrWords !== 1 && opts.addrWords !== 4) throw new RangeError(`addrWords must be 1 or 4, got ${opts.addrWords}`);
    const maxPorts = opts.maxPorts ?? DEFAULT_MAX_PORTS;
    if (!Number.isInteger(maxPorts) || maxPorts < 1 || maxPorts > DEFAULT_MAX_PORTS) {
      throw new RangeError(`maxPorts must be an integer in 1..${DEFAULT_MAX_PORTS}, got ${maxPorts}`);
    }
    this.capacity = capacity;
    this.addrWords = opts.addrWords;
    this.maxPorts = maxPorts;
    const nodes = capacity * 2;
    const aw = opts.addrWords;

    this.nodeZone = new Uint16Array(nodes);
    this.nodeSrc = new Uint32Array(nodes * aw);
    this.nodeDst = new Uint32Array(nodes * aw);
    this.nodePorts = new Uint32Array(nodes);
    this.nodeNext = new Int32Array(nodes);
    this.packets = new Uint32Array(nodes);
    this.bytes = new Float64Array(nodes);

    this.protocol = new Uint8Array(capacity);
    this.state = new Uint8Array(capacity);
    this.status = new Uint8Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.ruleId = new Uint16Array(capacity);
    this.ingressPort = new Uint16Array(capacity);
    this.returnPort = new Uint16Array(capacity);
    this.nextHop = new Uint16Array(capacity);
    this.createdAt = new Uint32Array(capacity);
    this.deadlines = new Uint32Array(capacity);
    this.tcp = new TcpTracker(capacity);

    const bucketCount = nextPowerOfTwo(Math.max(2, opts.buckets ?? nodes));
    this.buckets = new Int32Array(bucketCount).fill(NO_NODE);
    this.bucketMask = bucketCount - 1;
    const seed = opts.hashSeed ?? (Math.random() * 0x100000000) >>> 0;
    this.hashSeed = seed | 0;
    this.hashKey = finalMix((seed ^ 0x9e3779b9) | 0);

    const t = resolveTimeouts(opts.timeouts);
    this.unrepliedTimeout = new Float64Array(PROTOCOL_COUNT).fill(t.otherUnreplied);
    this.repliedTimeout = new Float64Array(PROTOCOL_COUNT).fill(t.otherEstablished);
    this.unrepliedTimeout[IPPROTO_UDP] = t.udpUnreplied;
    this.repliedTimeout[IPPROTO_UDP] = t.udpEstablished;
    this.unrepliedTimeout[IPPROTO_ICMP] = this.repliedTimeout[IPPROTO_ICMP] = t.icmp;
    this.unrepliedTimeout[IPPROTO_ICMPV6] = this.repliedTimeout[IPPROTO_ICMPV6] = t.icmp;
    this.unrepliedTimeout[IPPROTO_TCP] = this.repliedTimeout[IPPROTO_TCP] = t.tcpSynSent;
    this.tcpTimeout = new Float64Array(TCP_STATE_COUNT);
    this.tcpTimeout[TcpState.None] = t.tcpSynSent;
    this.tcpTimeout[TcpState.SynSent] = t.tcpSynSent;
    this.tcpTimeout[TcpState.SynRecv] = t.tcpSynRecv;
    this.tcpTimeout[TcpState.Established] = t.tcpEstablished;
    this.tcpTimeout[TcpState.FinWait] = t.tcpFinWait;
    this.tcpTimeout[TcpState.CloseWait] = t.tcpCloseWait;
    this.tcpTimeout[TcpState.LastAck] = t.tcpLastAck;
    this.tcpTimeout[TcpState.TimeWait] = t.tcpTimeWait;
    this.tcpTimeout[TcpState.Close] = t.tcpClose;
    this.tcpTimeout[TcpState.SynSent2] = t.tcpSynSent;

    const tickMs = opts.wheelTickMs ?? DEFAULT_WHEEL_TICK_MS;
    let longest = 0;
    for (const v of Object.values(t)) longest = Math.max(longest, v);
    const slots = Math.min(MAX_WHEEL_SLOTS, Math.max(MIN_WHEEL_SLOTS, nextPowerOfTwo(Math.ceil(longest / tickMs) + 2)));
    this.wheel = new TimerWheel(capacity, RING_COUNT, slots, tickMs);

    this.portFlows = new Uint32Array(maxPorts);
    this.portQuota = new Uint32Array(maxPorts);
    this.onRemove = opts.onRemove;

    // Free list in index order, so a fresh table hands out 0, 1, 2...
    const next = this.wheel.next;
    for (let f = 0; f < capacity - 1; f++) next[f] = f + 1;
    next[capacity - 1] = NO_NODE;
    this.freeHead = 0;
  }

  /** Live flows. */
  get size(): number {
    return this.live;
  }

  // --- hashing --------------------------------------------------------------------------------

  private hashOfKey(key: FlowKey): number {
    const k = this.hashKey;
    let h = mixWord(this.hashSeed, key.zone | (key.protocol << 16), k);
    h = mixWord(h, (key.srcPort << 16) | key.dstPort, k);
    for (let w = 0; w < this.addrWords; w++) {
      h = mixWord(h, key.src[w], k);
      h = mixWord(h, key.dst[w], k);
    }
    return finalMix(h) & this.bucketMask;
  }

  /** The same hash as hashOfKey, from a stored node. */
  private hashOfNode(node: number): number {
    const k = this.hashKey;
    const aw = this.addrWords;
    let h = mixWord(this.hashSeed, this.nodeZone[node] | (this.protocol[node >> 1] << 16), k);
    h = mixWord(h, this.nodePorts[node], k);
    const base = node * aw;
    for (let w = 0; w < aw; w++) {
      h = mixWord(h, this.nodeSrc[base + w], k);
      h = mixWord(h, this.nodeDst[base + w], k);
    }
    return finalMix(h) & this.bucketMask;
  }

  /** The node (flow * 2 + dir) whose key equals key, or -1. */
  lookup(key: FlowKey): number {
    const ports = ((key.srcPort << 16) | key.dstPort) >>> 0;
    const zone = key.zone;
    const protocol = key.protocol;
    const src = key.src;
    const dst = key.dst;
    const src0 = src[0];
    const dst0 = dst[0];
    const aw = this.addrWords;
    const nodePorts = this.nodePorts;
    const nodeZone = this.nodeZone;
    const flowProtocol = this.protocol;
    const nodeSrc = this.nodeSrc;
    const nodeDst = this.nodeDst;
    const nodeNext = this.nodeNext;
    let node = this.buckets[this.hashOfKey(key)];
    while (node !== NO_NODE) {
      const base = node * aw;
      // Word 0 is compared with the scalars in one straight condition (the CPU can issue all of
      // these loads at once); IPv6's words 1..3 follow in the loop, which IPv4 skips.
      if (
        nodePorts[node] === ports &&
        nodeZone[node] === zone &&
        flowProtocol[node >> 1] === protocol &&
        nodeSrc[base] === src0 &&
        nodeDst[base] === dst0
      ) {
        let w = 1;
        while (w < aw && nodeSrc[base + w] === src[w] && nodeDst[base + w] === dst[w]) w++;
        if (w === aw) return node;
      }
      node = nodeNext[node];
    }
    return NO_NODE;
  }

  private writeNode(node: number, key: FlowKey): void {
    this.nodeZone[node] = key.zone;
    this.nodePorts[node] = ((key.srcPort << 16) | key.dstPort) >>> 0;
    const aw = this.addrWords;
    const base = node * aw;
    for (let w = 0; w < aw; w++) {
      this.nodeSrc[base + w] = key.src[w];
      this.nodeDst[base + w] = key.dst[w];
    }
    const bucket = this.hashOfNode(node);
    this.nodeNext[node] = this.buckets[bucket];
    this.buckets[bucket] = node;
  }

  private unhashNode(node: number): void {
    const bucket = this.hashOfNode(node);
    let cur = this.buckets[bucket];
    if (cur === node) {
      this.buckets[bucket] = this.nodeNext[node];
      return;
    }
    while (cur !== NO_NODE) {
      const nxt = this.nodeNext[cur];
      if (nxt === node) {
        this.nodeNext[cur] = this.nodeNext[node];
        return;
      }
      cur = nxt;
    }
  }

  // --- life cycle -----------------------------------------------------------------------------

  /**
   * Create a flow; the caller guarantees neither key exists (it looked up first). Returns the flow
   * index, or -Drop.QuotaExceeded (ingressPort at its quota), -Drop.UnknownPort (ingressPort >=
   * maxPorts), -Drop.TableFull (full and nothing evictable). When full it first reclaims overdue
   * flows, then evicts the evictable flow nearest its deadline; never an established one.
   */
  create(orig: FlowKey, reply: FlowKey, ingressPort: number, now: number): number {
    if (ingressPort >= this.maxPorts || ingressPort < 0) return -Drop.UnknownPort;
    const quota = this.portQuota[ingressPort];
    if (quota !== 0 && this.portFlows[ingressPort] >= quota) return -Drop.QuotaExceeded;
    this.advanceClock(now);
    if (this.freeHead === NO_NODE) {
      this.expire(now, FULL_TABLE_EXPIRE_BUDGET);
      if (this.freeHead === NO_NODE) {
        const victim = this.wheel.earliest(RING_EVICTABLE);
        if (victim === WHEEL_NONE) return -Drop.TableFull;
        this.remove(victim, RemoveReason.Evicted);
      }
    }
    const flow = this.freeHead;
    this.freeHead = this.wheel.next[flow];

    const protocol = orig.protocol;
    this.protocol[flow] = protocol;
    this.state[flow] = TcpState.None;
    this.status[flow] = LIVE | EVICTABLE;
    this.flags[flow] = 0;
    this.ruleId[flow] = 0;
    this.ingressPort[flow] = ingressPort;
    this.returnPort[flow] = ingressPort;
    this.nextHop[flow] = 0;
    this.createdAt[flow] = Math.floor(now / MS_PER_SECOND) >>> 0;
    const n = flow * 2;
    this.packets[n] = this.packets[n + 1] = 0;
    this.bytes[n] = this.bytes[n + 1] = 0;
    this.tcp.reset(flow);
    // Reply node first, original second: should both keys be equal, lookup finds the original.
    this.writeNode(n + 1, reply);
    this.writeNode(n, orig);
    const deadline = now + this.unrepliedTimeout[protocol];
    this.deadlines[flow] = deadline >>> 0;
    this.wheel.insert(flow, RING_EVICTABLE, deadline);
    this.portFlows[ingressPort]++;
    this.live++;
    return flow;
  }

  /** Remove a live flow (onRemove with Deleted). No effect on a free flow. */
  delete(flow: number): void {
    if ((this.status[flow] & (LIVE | REMOVING)) !== LIVE) return;
    this.remove(flow, RemoveReason.Deleted);
  }

  /** True while the flow index holds a flow. */
  isLive(flow: number): boolean {
    return (this.status[flow] & LIVE) !== 0;
  }

  private remove(flow: number, reason: RemoveReason): void {
    const status = this.status[flow];
    if (this.onRemove !== undefined) {
      this.status[flow] = status | REMOVING;
      this.onRemove(flow, reason);
    }
    this.wheel.remove(flow, (status & EVICTABLE) !== 0 ? RING_EVICTABLE : RING_PROTECTED);
    this.unhashNode(flow * 2);
    this.unhashNode(flow * 2 + 1);
    this.portFlows[this.ingressPort[flow]]--;
    this.status[flow] = 0;
    this.state[flow] = TcpState.None;
    this.wheel.next[flow] = this.freeHead;
    this.freeHead = flow;
    this.live--;
  }

  private advanceClock(now: number): void {
    if (!this.clockStarted) {
      this.clockStarted = true;
      this.clock = now;
      this.wheel.start(now);
    } else if (now > this.clock) {
      this.clock = now;
    }
  }

  /** Absolute deadline (ms) of a live flow. */
  deadline(flow: number): number {
    return this.clock + ((this.deadlines[flow] - (this.clock >>> 0)) | 0);
  }

  /**
   * Remove flows whose deadline <= now, doing at most `budget` units of work (one unit per flow
   * examined or wheel tick advanced). Returns the number of flows removed. A flow is removed at
   * most one wheel tick after its deadline, given enough budget; never before it.
   */
  expire(now: number, budget: number): number {
    this.advanceClock(now);
    const wheel = this.wheel;
    const tickMs = wheel.tickMs;
    // Tick k may be processed once it has fully elapsed: (k + 1) * tickMs <= now.
    const lastDue = Math.floor(now / tickMs) - 1;
    if (lastDue - wheel.cursor >= wheel.slotCount) {
      // Idle for longer than the wheel spans: every slot is due; visit each once.
      wheel.cursor = lastDue - wheel.slotCount + 1;
    }
    const now32 = now >>> 0;
    let removed = 0;
    let work = 0;
    while (work < budget && wheel.cursor <= lastDue) {
      work++;
      let flow = wheel.firstAt(RING_PROTECTED, wheel.cursor);
      if (flow === WHEEL_NONE) flow = wheel.firstAt(RING_EVICTABLE, wheel.cursor);
      if (flow === WHEEL_NONE) {
        wheel.cursor++;
        continue;
      }
      const left = (this.deadlines[flow] - now32) | 0;
      if (left <= 0) {
        this.remove(flow, RemoveReason.Expired);
        removed++;
      } else {
        // Refreshed since it was filed: file it again at its real deadline (a later tick).
        const ring = (this.status[flow] & EVICTABLE) !== 0 ? RING_EVICTABLE : RING_PROTECTED;
        wheel.remove(flow, ring);
        wheel.insert(flow, ring, now + left);
      }
    }
    return removed;
  }

  /**
   * Set a flow's deadline to now + timeout and its eviction class. The wheel slot is kept when the
   * deadline only moves later (lazy re-filing); it is re-filed when it moves earlier or changes class.
   */
  private refresh(flow: number, now: number, timeout: number, evictable: boolean): void {
    const deadline = now + timeout;
    const previousLeft = (this.deadlines[flow] - (now >>> 0)) | 0;
    this.deadlines[flow] = deadline >>> 0;
    const status = this.status[flow];
    const wasEvictable = (status & EVICTABLE) !== 0;
    if (wasEvictable !== evictable || timeout < previousLeft) {
      this.wheel.remove(flow, wasEvictable ? RING_EVICTABLE : RING_PROTECTED);
      this.wheel.insert(flow, evictable ? RING_EVICTABLE : RING_PROTECTED, deadline);
      this.status[flow] = evictable ? status | EVICTABLE : status & ~EVICTABLE;
    }
  }

  // --- quotas ---------------------------------------------------------------------------------

  /** At most maxFlows live flows created by port; 0 = no quota (the default). */
  setQuota(port: number, maxFlows: number): void {
    this.portQuota[port] = maxFlows;
  }

  /** Live flows created by that ingress port. */
  flowsOfPort(port: number): number {
    return this.portFlows[port];
  }

  // --- per packet -----------------------------------------------------------------------------

  /**
   * UDP / ICMP / other protocols: a packet of flow in direction dir at now. A reply-direction
   * packet makes the flow established; the deadline becomes now + the unreplied or established
   * timeout. Both directions refresh: RFC 4787 REQ-6 requires outbound refresh and allows inbound.
   * On a TCP flow (which uses trackTcp) it only refreshes the deadline for the current state.
   */
  touch(flow: number, dir: 0 | 1, now: number): void {
    this.advanceClock(now);
    const protocol = this.protocol[flow];
    if (protocol === IPPROTO_TCP) {
      const state = this.state[flow];
      this.refresh(flow, now, this.tcpTimeout[state], (this.status[flow] & EVICTABLE) !== 0);
      return;
    }
    let status = this.status[flow];
    if (dir === 1 && (status & ASSURED) === 0) {
      status |= ASSURED;
      this.status[flow] = status;
    }
    if ((status & ASSURED) !== 0) this.refresh(flow, now, this.repliedTimeout[protocol], false);
    else this.refresh(flow, now, this.unrepliedTimeout[protocol], true);
  }

  /**
   * TCP: track one segment of flow in direction dir. Returns 0 (accepted: state, windows and
   * deadline updated) or Drop.TcpOutOfWindow / Drop.TcpInvalid, in which case nothing changed.
   * The first segment must be a SYN (state None -> SynSent).
   *
   * Reopen: a bare SYN in the original direction on a TIME_WAIT or CLOSE flow restarts the same
   * flow in place (SynSent, windows reset, no longer established; keys, ports, counters and the
   * pipeline's decision are kept). conntrack instead deletes and re-creates the entry; keeping it
   * keeps the NAT mapping and return port, which belong to the same 5-tuple anyway.
   */
  trackTcp(
    flow: number,
    dir: 0 | 1,
    flags: number,
    seq: number,
    ack: number,
    window: number,
    payloadLength: number,
    windowScale: number,
    now: number,
  ): number {
    const old = this.state[flow];
    const next = this.tcp.track(flow * 2 + dir, old, flags, seq, ack, window, payloadLength, windowScale);
    if (next < 0) return -next;
    this.advanceClock(now);
    let status = this.status[flow];
    if (next === TcpState.Established) status |= ASSURED;
    else if (next === TcpState.SynSent) status &= ~ASSURED; // reopened after TIME_WAIT / CLOSE
    this.status[flow] = status;
    this.state[flow] = next;
    const evictable = (status & ASSURED) === 0 || next === TcpState.TimeWait || next === TcpState.Close;
    this.refresh(flow, now, this.tcpTimeout[next], evictable);
    return Drop.None;
  }

  /** Count one packet of `bytes` bytes in direction dir. */
  count(flow: number, dir: 0 | 1, bytes: number): void {
    const n = flow * 2 + dir;
    this.packets[n]++;
    this.bytes[n] += bytes;
  }

  /**
   * Established = protected from early drop: UDP/ICMP/other once the reply direction has been
   * seen; TCP once the handshake completed, until TIME_WAIT or CLOSE (then it is dead and
   * evictable; FIN_WAIT / CLOSE_WAIT / LAST_ACK stay protected, half-closed transfers can last).
   */
  isEstablished(flow: number): boolean {
    return (this.status[flow] & (LIVE | EVICTABLE)) === LIVE;
  }

  // --- accounting -----------------------------------------------------------------------------

  /** Bytes of every preallocated typed array (the table's whole footprint, bar a few hundred bytes of objects). */
  memoryBytes(): number {
    const arrays: ArrayBufferView[] = [
      this.nodeZone,
      this.nodeSrc,
      this.nodeDst,
      this.nodePorts,
      this.nodeNext,
      this.packets,
      this.bytes,
      this.protocol,
      this.state,
      this.status,
      this.flags,
      this.ruleId,
      this.ingressPort,
      this.returnPort,
      this.nextHop,
      this.createdAt,
      this.deadlines,
      this.buckets,
      this.wheel.prev,
      this.wheel.next,
      this.wheel.ringSize,
      this.portFlows,
      this.portQuota,
      this.unrepliedTimeout,
      this.repliedTimeout,
      this.tcpTimeout,
    ];
    let total = this.tcp.byteLength();
    for (const a of arrays) total += a.byteLength;
    return total;
  }

  /** memoryBytes() / capacity. */
  bytesPerFlow(): number {
    return this.memoryBytes() / this.capacity;
  }
}
