/**
 * The flow table: every conversation the edge forwards, findable from either direction in one
 * probe, with idle expiry, per-onramp quotas and early drop of unestablished flows.
 *
 *                         buckets (2^k heads)          records (one per flow, S words)
 *   key ──hash──▶ h ──▶ [ h ] ──▶ node 2f+0 ──next──▶ node 2g+1 ──▶ -1
 *                                    │
 *                                    ▼
 *          record f: [ node 0: key0 ports next src[W] dst[W] | node 1: same | flow fields ]
 *
 * A flow has two nodes, like conntrack's tuplehash[2]: node = flow * 2 + dir, dir 0 the
 * original direction, dir 1 the reply. Each node carries its own key, so the reply may live in
 * another zone and carry translated (NAT) addresses and ports; both nodes share one hash index.
 *
 * Memory layout: ONE record of S = 2 * (3 + 2W) + 11 words per flow (W = addrWords: IPv4 21 words
 * = 84 bytes, IPv6 33), holding every field the packet path touches, so an established packet
 * touches the bucket word and one record (2-3 adjacent cache lines, one 4 KiB page almost always)
 * instead of ~14 scattered struct-of-arrays lines, each its own TLB miss at 1 M flows. The other
 * node's key (the translation source) is in the same record. Byte and half-word fields are read
 * through Uint8 / Uint16 views of the same buffer; every field is only ever accessed through one
 * view, so the layout does not depend on the platform's byte order. The timer wheel links and
 * the TCP windows stay apart (a UDP packet touches neither).
 *
 * Everything is preallocated for `capacity` flows; lookups, creations and per-packet updates
 * allocate nothing. Memory per flow (IPv4, 2^k buckets ~ 2 per flow): record 84, buckets ~8.4,
 * TCP windows 26, wheel links 8, per-port arrays ~0.5 = ~127 bytes (Linux conntrack: 256).
 * memoryBytes() sums the real figure.
 *
 * Expiry: a timer wheel (timer-wheel.ts) with two rings, "protected" (established) and
 * "evictable" (not established, or TCP in TIME_WAIT / CLOSE). Established flows are never evicted.
 *
 * Early drop is fair between onramps: when the table is full, the victim is an evictable flow of
 * the HEAVIEST onramp (the ingress port holding the most live flows), the one nearest its deadline.
 * So a site flooding the table with unanswered flows evicts its own, never another site's
 * half-open ones (issue 11; docs/FLOW-MODEL.md, "Fair shares"). The search walks the evictable
 * ring in deadline order and stops at the first flow of the heaviest port; it looks at no more
 * than EARLY_DROP_SCAN flows and then takes, of those it saw, the one whose port holds the most
 * flows. No memory per flow: the per-port flow counts exist for quotas anyway, and the heaviest
 * port is kept up to date on every create (and re-checked on the search itself).
 *
 * Time is `now` in milliseconds (any origin), passed in. Deadlines are kept modulo 2^32 ms and
 * compared with serial arithmetic (exact while within 24.8 days of now; timeouts are capped at
 * 20 days, see timeouts.ts).
 */
import { Drop } from '../common/drop-reasons.js';
import { finalMix, mixWord, randomSeed } from '../common/hash.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
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
  /** An onramp it names (started by, replies to, forwarded to) was removed from the configuration. */
  OnrampRemoved = 4,
  /** Cut by DLP: a `block` profile matched in its clear-text bytes (src/dataplane/dlp-tracker.ts). */
  DlpCut = 5,
  /** Cut at its next packet: the policy changed (a new epoch) and no longer allows it (issue 12). */
  PolicyCut = 6,
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
  /**
   * Where the two large arrays (records and buckets) get their memory: a zero-filled buffer of at
   * least `bytes` bytes. Default: ordinary array buffers. The I/O layer passes huge-page memory
   * (src/io/memory.ts), which saves a TLB miss on most packets at a million flows.
   */
  allocate?: (bytes: number) => ArrayBuffer;
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
/** Evictable flows early drop looks at, at most, for one of the heaviest port (see earlyDropVictim). */
const EARLY_DROP_SCAN = 256;

/** status bits (internal, per flow). */
const LIVE = 0x01;
/** Both directions seen (UDP/ICMP/other) or the handshake completed (TCP): conntrack's IPS_ASSURED. */
const ASSURED = 0x02;
/** Filed in the evictable ring of the wheel. */
const EVICTABLE = 0x04;
/** onRemove is running for it; delete() ignores it. */
const REMOVING = 0x08;

/** setQuota's value for "the automatic share" (setAutoQuota), as stored in portQuota. */
export const QUOTA_AUTO = 0xffffffff;

const RING_PROTECTED = 0;
const RING_EVICTABLE = 1;
const RING_COUNT = 2;

const NO_NODE = -1;
/** lookupChunk4(): a packet the caller did not ask about (bucket -1), or one already answered. */
const NOT_LOOKED_UP = -2;
/** lookupChunk4()'s key words per packet: zone | protocol << 16, ports, src, dst. */
export const KEY4_WORDS = 4;
/**
 * Reply-node links create() may defer (flushLinks): a batch of 64 setups' links then makes its cache misses
 * together instead of one after another.
 */
const PENDING_LINKS = 64;
/**
 * createdInto()'s filter: 4,096 bits. A chunk of 64 setups files 128 nodes; at 1,024 bits a later setup's
 * pre-pass miss was a false alarm ~6 % of the time on average (a second lookup, 2.7 % of setup in the
 * profile); at 4,096 ~1.5 %, for a 512-byte clear after a chunk that created.
 */
const CREATED_FILTER_WORDS = 128;
const CREATED_FILTER_MASK = CREATED_FILTER_WORDS * 32 - 1;

// --- record layout (word offsets) -----------------------------------------------------------------
// Per node, at record + dir * nodeWords:
/** zone | protocol << 16: exactly the first word the hash mixes, so one compare checks both. */
const N_KEY0 = 0;
/** (srcPort << 16 | dstPort) >>> 0 */
const N_PORTS = 1;
/** Next node in the bucket chain (int32 stored as uint32; -1 ends the chain). */
const N_NEXT = 2;
/** src[W] then dst[W]. */
const N_SRC = 3;
const NODE_FIXED_WORDS = 3;
// Per flow, at record + 2 * nodeWords:
/**
 * Bytes (Uint8 view): state (TcpState), status, flags and returnReason (both the pipeline's). returnReason
 * took the spare byte (site failover, issue 8): the record stays 20 words (80 bytes) for IPv4, 32 for IPv6.
 */
const F_META = 0;
const META_STATE = 0;
const META_STATUS = 1;
const META_FLAGS = 2;
const META_RETURN_REASON = 3;
/** Half-words (Uint16 view): ingressPort, returnPort. */
const F_PORTS = 1;
/** Half-words: nextHop, ruleId. */
const F_HOP = 2;
/** Deadline in ms, modulo 2^32. */
const F_DEADLINE = 3;
/** packets[dir] (wraps at 2^32). */
const F_PACKETS = 4;
/**
 * bytes[dir]: low 32 bits at F_BYTES_LO + dir, high 16 bits in half-word dir of F_BYTES_HI (a
 * 48-bit count, 256 TiB per direction, without Float64Array's 8-byte alignment; it costs one word
 * less than two 64-bit counts, which keeps an IPv4 flow within 128 bytes).
 */
const F_BYTES_LO = 6;
const F_BYTES_HI = 8;
/** Creation time in whole seconds; the packet path never reads it. */
const F_CREATED = 9;
/**
 * The policy epoch the flow was decided under (the pipeline's, issue 12): an established packet compares it with
 * the pipeline's current epoch, one word of a line the packet touches anyway. The record grows to 21 words for
 * IPv4 (84 bytes): ~128 bytes per flow with the buckets and TCP windows (the budget was 128, now 132).
 */
const F_EPOCH = 10;
const FLOW_WORDS = 11;
const TWO_POW_32 = 0x100000000;
const U16_MASK = 0xffff;
const PROTOCOL_SHIFT = 16;
const PROTOCOL_MASK = 0xff;
const MS_PER_SECOND = 1000;
const PROTOCOL_COUNT = 256;

/** One hash block with the table's secret added to the word first (see common/hash.ts). */
function mixKeyed(h: number, word: number, key: number): number {
  return mixWord(h, (word + key) | 0);
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
  /**
   * The records, one per flow (see the file header). Exposed read-only in spirit so callers can
   * hand a node's address words to word-array APIs: records[srcIndex(node) + w]. Write only
   * through the setters.
   */
  readonly records: Uint32Array;
  /** Words per node: 3 + 2 * addrWords. */
  readonly nodeWords: number;
  /** Words per record: 2 * nodeWords + 11. */
  readonly stride: number;

  /**
   * Other views of records' buffer: bytes and half-words for the small fields (each accessed
   * through one view only), int32 for the IPv4 key compare (no uint32 boxing; same bits).
   */
  private readonly recordInts: Int32Array;
  private readonly recordBytes: Uint8Array;
  private readonly recordHalves: Uint16Array;
  /** Offset of the flow fields in a record: 2 * nodeWords. */
  private readonly flowBase: number;
  private readonly buckets: Int32Array;
  private readonly bucketMask: number;
  private readonly hashSeed: number;
  private readonly hashKey: number;
  private readonly tcp: TcpTracker;
  private readonly wheel: TimerWheel;
  private readonly portFlows: Uint32Array;
  private readonly portQuota: Uint32Array;
  /** The quota of ports set to QUOTA_AUTO; 0 = none. */
  private autoQuota = 0;
  /**
   * The port with the most live flows as last seen: raised on every create, so exact unless that port
   * lost flows since (then another may be heavier; the early-drop search corrects it).
   */
  private heaviest = 0;
  /** Timeouts by protocol number before / after a reply (TCP: SYN_SENT for both). */
  private readonly unrepliedTimeout: Float64Array;
  private readonly repliedTimeout: Float64Array;
  private readonly tcpTimeout: Float64Array;
  private readonly onRemove: ((flow: number, reason: RemoveReason) => void) | undefined;
  /** Free flows, linked through the wheel's next[] (a free flow is in no wheel list). */
  private freeHead: number;
  private live = 0;
  /**
   * Flows created and removed so far (each wraps harmlessly: only compared for equality). A lookup result
   * taken earlier stays right while they have not moved: a hit until a removal (the node may be freed and
   * reused), a miss until a creation. The pipeline's pre-pass relies on it (Pipeline.prefetch).
   */
  creations = 0;
  removals = 0;
  /**
   * Reply nodes written but not yet linked into their buckets (deferred links, see create()), with their
   * buckets; linked together by flushLinks(), which every chain walk and removal runs first.
   */
  private readonly pendingNodes = new Int32Array(PENDING_LINKS);
  private readonly pendingBuckets = new Int32Array(PENDING_LINKS);
  private pendingCount = 0;
  /** One bit per bucket (modulo its size) a create filed a node into since markCreations(): see createdInto(). */
  private readonly createdFilter = new Int32Array(CREATED_FILTER_WORDS);
  /** Whether a bit of createdFilter is set (markCreations clears it only then: most chunks of traffic create nothing). */
  private createdSinceMark = false;
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

    this.nodeWords = NODE_FIXED_WORDS + 2 * opts.addrWords;
    this.flowBase = 2 * this.nodeWords;
    this.stride = this.flowBase + FLOW_WORDS;
    const allocate = opts.allocate ?? ((bytes: number) => new ArrayBuffer(bytes));
    this.records = new Uint32Array(allocate(capacity * this.stride * 4), 0, capacity * this.stride);
    this.recordInts = new Int32Array(this.records.buffer);
    this.recordBytes = new Uint8Array(this.records.buffer);
    this.recordHalves = new Uint16Array(this.records.buffer);
    this.tcp = new TcpTracker(capacity);

    const bucketCount = nextPowerOfTwo(Math.max(2, opts.buckets ?? nodes));
    this.buckets = new Int32Array(allocate(bucketCount * 4), 0, bucketCount).fill(NO_NODE);
    this.bucketMask = bucketCount - 1;
    const seed = opts.hashSeed ?? randomSeed();
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

  /** Number of hash buckets (a power of two). */
  get bucketCount(): number {
    return this.bucketMask + 1;
  }

  // --- record addressing ----------------------------------------------------------------------

  /** Index in records of a node's first word. */
  private nodeBase(node: number): number {
    return (node >> 1) * this.stride + (node & 1) * this.nodeWords;
  }

  /** Index in records of a flow's first flow-field word. */
  private flowWord(flow: number): number {
    return flow * this.stride + this.flowBase;
  }

  private meta(flow: number, field: number): number {
    return this.recordBytes[(flow * this.stride + this.flowBase + F_META) * 4 + field];
  }

  private setMeta(flow: number, field: number, value: number): void {
    this.recordBytes[(flow * this.stride + this.flowBase + F_META) * 4 + field] = value;
  }

  private half(flow: number, word: number, which: 0 | 1): number {
    return this.recordHalves[(flow * this.stride + this.flowBase + word) * 2 + which];
  }

  private setHalf(flow: number, word: number, which: 0 | 1, value: number): void {
    this.recordHalves[(flow * this.stride + this.flowBase + word) * 2 + which] = value;
  }

  private status(flow: number): number {
    return this.meta(flow, META_STATUS);
  }

  private setStatus(flow: number, value: number): void {
    this.setMeta(flow, META_STATUS, value);
  }

  private storedDeadline(flow: number): number {
    return this.records[flow * this.stride + this.flowBase + F_DEADLINE];
  }

  // --- field accessors ------------------------------------------------------------------------
  // The getters the pipeline's established path reads per packet index the record themselves rather than through
  // nodeBase()/meta()/half(): V8 counts every inlined level against one optimised function's inlining budget
  // (~920 bytes of bytecode), and a nested level left calls per packet (issue 10, item 5).

  /** Zone of this direction's key. */
  nodeZone(node: number): number {
    return this.records[this.nodeBase(node) + N_KEY0] & U16_MASK;
  }

  /** Source address word w of this direction's key. */
  nodeSrc(node: number, w: number): number {
    return this.records[this.nodeBase(node) + N_SRC + w];
  }

  /** Destination address word w of this direction's key. */
  nodeDst(node: number, w: number): number {
    return this.records[this.nodeBase(node) + N_SRC + this.addrWords + w];
  }

  /** (srcPort << 16 | dstPort) >>> 0 of this direction's key. */
  nodePorts(node: number): number {
    return this.records[(node >> 1) * this.stride + (node & 1) * this.nodeWords + N_PORTS];
  }

  /** Index in `records` of the node's source address (addrWords words), for word-array APIs. */
  srcIndex(node: number): number {
    return (node >> 1) * this.stride + (node & 1) * this.nodeWords + N_SRC;
  }

  /** Index in `records` of the node's destination address (addrWords words). */
  dstIndex(node: number): number {
    return this.nodeBase(node) + N_SRC + this.addrWords;
  }

  /** IP protocol number (part of both keys). */
  protocol(flow: number): number {
    return (this.records[flow * this.stride + N_KEY0] >>> PROTOCOL_SHIFT) & PROTOCOL_MASK;
  }

  /** TcpState for TCP; 0 for other protocols (use isEstablished()). */
  state(flow: number): number {
    return this.recordBytes[(flow * this.stride + this.flowBase + F_META) * 4 + META_STATE];
  }

  /** Free for the pipeline (NAT/ARR bits, 8 bits); zeroed on create, never read by the table. */
  flags(flow: number): number {
    return this.recordBytes[(flow * this.stride + this.flowBase + F_META) * 4 + META_FLAGS];
  }

  setFlags(flow: number, flags: number): void {
    this.setMeta(flow, META_FLAGS, flags);
  }

  /** Free for the pipeline: why returnPort is what it is (8 bits); zeroed on create, never read by the table. */
  returnReason(flow: number): number {
    return this.meta(flow, META_RETURN_REASON);
  }

  setReturnReason(flow: number, reason: number): void {
    this.setMeta(flow, META_RETURN_REASON, reason);
  }

  /** The port that created the flow (quota accounting). */
  ingressPort(flow: number): number {
    return this.recordHalves[(flow * this.stride + this.flowBase + F_PORTS) * 2];
  }

  /** Where replies go (ARR): set to ingressPort on create; the pipeline may change it (failover). */
  returnPort(flow: number): number {
    return this.recordHalves[(flow * this.stride + this.flowBase + F_PORTS) * 2 + 1];
  }

  setReturnPort(flow: number, port: number): void {
    this.setHalf(flow, F_PORTS, 1, port);
  }

  /** Forward next hop, the pipeline's decision; 0 on create. */
  nextHop(flow: number): number {
    return this.recordHalves[(flow * this.stride + this.flowBase + F_HOP) * 2];
  }

  setNextHop(flow: number, port: number): void {
    this.setHalf(flow, F_HOP, 0, port);
  }

  /** Free for the pipeline: the firewall rule that decided (16 bits); zeroed on create. */
  ruleId(flow: number): number {
    return this.half(flow, F_HOP, 1);
  }

  setRuleId(flow: number, ruleId: number): void {
    this.setHalf(flow, F_HOP, 1, ruleId);
  }

  /**
   * TCP: the highest sequence number direction dir has sent plus its length (the tracker's td_end), i.e. the
   * RCV.NXT its peer has once everything arrived. Resets the edge originates (src/wire/tcp-reset.ts) carry it.
   */
  tcpEnd(flow: number, dir: 0 | 1): number {
    return this.tcp.end[flow * 2 + dir];
  }

  /** Free for the pipeline: the policy epoch the flow was last decided under (32 bits); zeroed on create. */
  policyEpoch(flow: number): number {
    return this.records[flow * this.stride + this.flowBase + F_EPOCH];
  }

  setPolicyEpoch(flow: number, epoch: number): void {
    this.records[flow * this.stride + this.flowBase + F_EPOCH] = epoch;
  }

  /** Packets seen in direction dir (wraps at 2^32). */
  packets(flow: number, dir: 0 | 1): number {
    return this.records[this.flowWord(flow) + F_PACKETS + dir];
  }

  /** Bytes seen in direction dir (a 48-bit count: wraps at 2^48 = 256 TiB). */
  bytes(flow: number, dir: 0 | 1): number {
    return this.records[this.flowWord(flow) + F_BYTES_LO + dir] + this.half(flow, F_BYTES_HI, dir) * TWO_POW_32;
  }

  /** Creation time in whole seconds: floor(now / 1000) mod 2^32 (for logs and flow age). */
  createdAt(flow: number): number {
    return this.records[this.flowWord(flow) + F_CREATED];
  }

  // --- hashing --------------------------------------------------------------------------------

  private hashOfKey(key: FlowKey): number {
    const k = this.hashKey;
    let h = mixKeyed(this.hashSeed, key.zone | (key.protocol << PROTOCOL_SHIFT), k);
    h = mixKeyed(h, (key.srcPort << 16) | key.dstPort, k);
    // Address words as int32 (mixKeyed takes either sign): an unsigned word >= 2^31 passed to a call V8 did not
    // inline is a heap-allocated number.
    for (let w = 0; w < this.addrWords; w++) {
      h = mixKeyed(h, key.src[w] | 0, k);
      h = mixKeyed(h, key.dst[w] | 0, k);
    }
    return finalMix(h) & this.bucketMask;
  }

  /** The same hash as hashOfKey, from a stored node (its words read signed, as hashOfKey passes them). */
  private hashOfNode(node: number): number {
    const k = this.hashKey;
    const aw = this.addrWords;
    const rec = this.recordInts;
    const base = this.nodeBase(node);
    let h = mixKeyed(this.hashSeed, rec[base + N_KEY0], k);
    h = mixKeyed(h, rec[base + N_PORTS], k);
    for (let w = 0; w < aw; w++) {
      h = mixKeyed(h, rec[base + N_SRC + w], k);
      h = mixKeyed(h, rec[base + N_SRC + aw + w], k);
    }
    return finalMix(h) & this.bucketMask;
  }

  /**
   * The bucket an IPv4 key hashes to (the same hash as lookup), straight from packet fields;
   * ports = (srcPort << 16 | dstPort); words signed or unsigned (see lookup4). Only meaningful on
   * an addrWords = 1 table. For prefetch().
   */
  bucket4(zone: number, protocol: number, src: number, dst: number, ports: number): number {
    const k = this.hashKey;
    let h = mixKeyed(this.hashSeed, zone | (protocol << PROTOCOL_SHIFT), k);
    h = mixKeyed(h, ports, k);
    h = mixKeyed(h, src, k);
    h = mixKeyed(h, dst, k);
    return finalMix(h) & this.bucketMask;
  }

  /**
   * Memory-level parallelism for a batch: `slots[0..count)` hold bucket indices (bucket4) or -1.
   * Reads every bucket head, then the head records' lines, then the next records' lines, in tight
   * loops whose loads are independent, so the CPU overlaps their cache and TLB misses; the lookups
   * that follow find the lines in cache. Overwrites slots (with the second nodes, or -1). Returns a sum of what it read (callers
   * keep it so the loads are not optimised away). Changes nothing in the table.
   */
  prefetch(slots: Int32Array, count: number): number {
    const buckets = this.buckets;
    let acc = 0;
    for (let i = 0; i < count; i++) {
      const b = slots[i];
      const head = b >= 0 ? buckets[b] : NO_NODE;
      slots[i] = head;
      acc ^= head;
    }
    // Then the head records, then the records second in those chains: at a load near 1 node per
    // bucket about 40 % of lookups pass a non-matching head first.
    for (let i = 0; i < count; i++) {
      const node = slots[i];
      if (node < 0) continue;
      acc ^= this.touchRecord(node);
      slots[i] = this.nextOf(node);
    }
    for (let i = 0; i < count; i++) {
      const node = slots[i];
      if (node >= 0) acc ^= this.touchRecord(node);
    }
    return acc;
  }

  /**
   * Memory-level parallelism for flow setup: reads the records of the next `count` free flows, the ones the next
   * creates take (create() zeroes and fills them: in a table filling up each is a cold line, and zeroing the first
   * word waited for it), in one loop of independent loads so a chunk's setups take those misses together. Returns
   * a sum of what it read (keep it, so the loads stay). Changes nothing.
   */
  prefetchFree(count: number): number {
    const next = this.wheel.next;
    let acc = 0;
    let flow = this.freeHead;
    for (let i = 0; i < count && flow !== NO_NODE; i++) {
      acc ^= this.touchRecord(flow * 2);
      flow = next[flow];
    }
    return acc;
  }

  /** Reads one word of each cache line of node's record (up to three lines: first, middle, last word). */
  private touchRecord(node: number): number {
    const rec = this.records;
    const last = this.stride - 1;
    const base = (node >> 1) * this.stride;
    return rec[base] ^ rec[base + (last >> 1)] ^ rec[base + last];
  }

  /** The node (flow * 2 + dir) whose key equals key, or -1. */
  lookup(key: FlowKey): number {
    if (this.pendingCount !== 0) this.flushLinks();
    if (this.addrWords === 1) {
      return this.lookup4(key.zone, key.protocol, key.src[0] | 0, key.dst[0] | 0, (key.srcPort << 16) | key.dstPort);
    }
    const key0 = (key.zone | (key.protocol << PROTOCOL_SHIFT)) >>> 0;
    const ports = ((key.srcPort << 16) | key.dstPort) >>> 0;
    const src = key.src;
    const dst = key.dst;
    const src0 = src[0];
    const dst0 = dst[0];
    const aw = this.addrWords;
    const rec = this.records;
    const stride = this.stride;
    const nodeWords = this.nodeWords;
    let node = this.buckets[this.hashOfKey(key)];
    while (node !== NO_NODE) {
      const base = (node >> 1) * stride + (node & 1) * nodeWords;
      const srcAt = base + N_SRC;
      const dstAt = srcAt + aw;
      // Word 0 is compared with the scalars in one straight condition (the CPU can issue all of
      // these loads at once); IPv6's words 1..3 follow in the loop, which IPv4 skips.
      if (rec[base + N_KEY0] === key0 && rec[base + N_PORTS] === ports && rec[srcAt] === src0 && rec[dstAt] === dst0) {
        let w = 1;
        while (w < aw && rec[srcAt + w] === src[w] && rec[dstAt + w] === dst[w]) w++;
        if (w === aw) return node;
      }
      node = rec[base + N_NEXT] | 0;
    }
    return NO_NODE;
  }

  /**
   * lookup() of an IPv4 key given as fields (ports = srcPort << 16 | dstPort), on an addrWords = 1
   * table: straight-line hash and compare, no key words to loop over. Words may be passed signed
   * (`| 0`) or unsigned; signed is cheaper: V8 passes an int32 as is but boxes a uint32 >= 2^31.
   */
  lookup4(zone: number, protocol: number, src: number, dst: number, ports: number): number {
    return this.lookup4At(this.bucket4(zone, protocol, src, dst, ports), zone, protocol, src, dst, ports);
  }

  /** lookup4 when the caller already has the key's bucket (bucket4 of the same fields): no second hash. */
  lookup4At(bucket: number, zone: number, protocol: number, src: number, dst: number, ports: number): number {
    if (this.pendingCount !== 0) this.flushLinks();
    const key0 = zone | (protocol << PROTOCOL_SHIFT);
    src |= 0;
    dst |= 0;
    ports |= 0;
    const rec = this.recordInts;
    const stride = this.stride;
    const nodeWords = this.nodeWords;
    let node = this.buckets[bucket];
    while (node !== NO_NODE) {
      const base = (node >> 1) * stride + (node & 1) * nodeWords;
      if (rec[base + N_KEY0] === key0 && rec[base + N_PORTS] === ports && rec[base + N_SRC] === src && rec[base + N_SRC + 1] === dst) return node;
      node = rec[base + N_NEXT] | 0;
    }
    return NO_NODE;
  }

  /**
   * prefetch() and lookup4At() of a whole chunk in one: the same answers, each record line read once. `slots[k]`
   * holds packet k's bucket (bucket4) or -1 (not looked up: hints[k] is left as it is); `keys` holds
   * KEY4_WORDS words per packet: zone | protocol << 16, ports, src, dst (signed or not). Writes each looked-up
   * packet's node (or -1) to hints[k]; overwrites slots. In tight loops whose loads are independent, so the
   * CPU overlaps their misses: the bucket heads, then the head records' lines, then (in cache) the head keys
   * compared; only a packet whose head is another key reads the next record (~40 % at a load near 1 node per
   * bucket), again all of them in one loop before the walks go on. prefetch() read the second record of every
   * chain whether the head matched or not, then lookup4At read every head again. Returns a sum of what it read
   * (callers keep it so the loads are not optimised away).
   */
  lookupChunk4(slots: Int32Array, keys: Int32Array, hints: Int32Array, count: number): number {
    if (this.pendingCount !== 0) this.flushLinks();
    const buckets = this.buckets;
    const rec = this.recordInts;
    const stride = this.stride;
    const nodeWords = this.nodeWords;
    const last = stride - 1;
    const middle = last >> 1;
    let acc = 0;
    for (let k = 0; k < count; k++) {
      const b = slots[k];
      slots[k] = b >= 0 ? buckets[b] : NOT_LOOKED_UP;
    }
    // One word of each cache line of the head record (first, middle, last word: up to three lines).
    for (let k = 0; k < count; k++) {
      const node = slots[k];
      if (node >= 0) {
        const base = (node >> 1) * stride;
        acc ^= rec[base] ^ rec[base + middle] ^ rec[base + last];
      }
    }
    let rest = 0;
    for (let k = 0; k < count; k++) {
      if (slots[k] < 0) {
        // -1: an empty bucket (a miss); below -1: not looked up.
        if (slots[k] === NO_NODE) hints[k] = NO_NODE;
        continue;
      }
      const node = slots[k];
      const at = k * KEY4_WORDS;
      const base = (node >> 1) * stride + (node & 1) * nodeWords;
      if (rec[base + N_KEY0] === keys[at] && rec[base + N_PORTS] === keys[at + 1] && rec[base + N_SRC] === keys[at + 2] && rec[base + N_SRC + 1] === keys[at + 3]) {
        hints[k] = node;
        slots[k] = NOT_LOOKED_UP;
      } else {
        const next = rec[base + N_NEXT];
        slots[k] = next;
        if (next < 0) hints[k] = NO_NODE;
        else rest++;
      }
    }
    if (rest === 0) return acc;
    for (let k = 0; k < count; k++) {
      const node = slots[k];
      if (node >= 0) {
        const base = (node >> 1) * stride;
        acc ^= rec[base] ^ rec[base + middle] ^ rec[base + last];
      }
    }
    for (let k = 0; k < count; k++) {
      let node = slots[k];
      if (node < 0) continue;
      const at = k * KEY4_WORDS;
      const key0 = keys[at];
      const ports = keys[at + 1];
      const src = keys[at + 2];
      const dst = keys[at + 3];
      while (node !== NO_NODE) {
        const base = (node >> 1) * stride + (node & 1) * nodeWords;
        if (rec[base + N_KEY0] === key0 && rec[base + N_PORTS] === ports && rec[base + N_SRC] === src && rec[base + N_SRC + 1] === dst) break;
        node = rec[base + N_NEXT];
      }
      hints[k] = node;
    }
    return acc;
  }

  /** Writes a node's key words; returns its bucket (link() files it there). */
  private writeKey(node: number, key: FlowKey): number {
    this.storeKey(node, key);
    return this.hashOfNode(node);
  }

  /** writeKey without the hash, for a caller that has the bucket already. */
  private storeKey(node: number, key: FlowKey): void {
    const rec = this.records;
    const aw = this.addrWords;
    const base = this.nodeBase(node);
    rec[base + N_KEY0] = (key.zone & U16_MASK) | (key.protocol << PROTOCOL_SHIFT);
    rec[base + N_PORTS] = ((key.srcPort << 16) | key.dstPort) >>> 0;
    for (let w = 0; w < aw; w++) {
      rec[base + N_SRC + w] = key.src[w];
      rec[base + N_SRC + aw + w] = key.dst[w];
    }
  }

  /** Files a node at the head of its bucket's chain. */
  private link(node: number, bucket: number): void {
    this.records[this.nodeBase(node) + N_NEXT] = this.buckets[bucket];
    this.buckets[bucket] = node;
  }

  /** Links every reply node create() left waiting, in one loop (their bucket loads are independent). */
  flushLinks(): void {
    const n = this.pendingCount;
    this.pendingCount = 0;
    for (let i = 0; i < n; i++) this.link(this.pendingNodes[i], this.pendingBuckets[i]);
  }

  private markCreated(bucket: number): void {
    const bit = bucket & CREATED_FILTER_MASK;
    this.createdFilter[bit >>> 5] |= 1 << (bit & 31);
    this.createdSinceMark = true;
  }

  /** Starts a new window for createdInto(). */
  markCreations(): void {
    if (!this.createdSinceMark) return;
    this.createdSinceMark = false;
    this.createdFilter.fill(0);
  }

  /**
   * May a create since markCreations() have filed a node into `bucket`? false is sure (a key that was
   * missing there is still missing); true may be a false alarm (the filter folds buckets together).
   */
  createdInto(bucket: number): boolean {
    const bit = bucket & CREATED_FILTER_MASK;
    return (this.createdFilter[bit >>> 5] & (1 << (bit & 31))) !== 0;
  }

  private nextOf(node: number): number {
    return this.records[this.nodeBase(node) + N_NEXT] | 0;
  }

  private unhashNode(node: number): void {
    const bucket = this.hashOfNode(node);
    let cur = this.buckets[bucket];
    if (cur === node) {
      this.buckets[bucket] = this.nextOf(node);
      return;
    }
    while (cur !== NO_NODE) {
      const nxt = this.nextOf(cur);
      if (nxt === node) {
        this.records[this.nodeBase(cur) + N_NEXT] = this.nextOf(node);
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
   * flows, then evicts the heaviest onramp's evictable flow nearest its deadline (see the file
   * header); never an established one.
   */
  create(orig: FlowKey, reply: FlowKey, ingressPort: number, now: number): number {
    return this.createWith(orig, reply, ingressPort, now, 0, 0, 0, 0);
  }

  /**
   * create() with the pipeline's setup decision stored as the record is written (flags, next hop, rule id, policy
   * epoch: what setFlags, setNextHop, setRuleId and setPolicyEpoch would store next): each flow field is written
   * once, not zeroed first and set again. `origBucket`: the original key's bucket when the caller has it (flow
   * setup's pre-pass hashed the packet: bucket4), so it is not hashed again; -1 to hash it here.
   */
  createWith(orig: FlowKey, reply: FlowKey, ingressPort: number, now: number, flags: number, hop: number, ruleId: number, epoch: number, origBucket = -1): number {
    if (ingressPort >= this.maxPorts || ingressPort < 0) return -Drop.UnknownPort;
    let quota = this.portQuota[ingressPort];
    if (quota === QUOTA_AUTO) quota = this.autoQuota;
    if (quota !== 0 && this.portFlows[ingressPort] >= quota) return -Drop.QuotaExceeded;
    this.advanceClock(now);
    if (this.freeHead === NO_NODE) {
      this.expire(now, FULL_TABLE_EXPIRE_BUDGET);
      if (this.freeHead === NO_NODE) {
        const victim = this.earlyDropVictim();
        if (victim === NO_NODE) return -Drop.TableFull;
        this.remove(victim, RemoveReason.Evicted);
      }
    }
    const flow = this.freeHead;
    this.freeHead = this.wheel.next[flow];

    const protocol = orig.protocol;
    // Every flow field once (FLOW_WORDS words; the deadline below): no zeroing pass before the values.
    const f = this.flowWord(flow);
    const rec = this.records;
    const bytes = this.recordBytes;
    const halves = this.recordHalves;
    const meta = (f + F_META) * 4;
    bytes[meta + META_STATE] = 0;
    bytes[meta + META_STATUS] = LIVE | EVICTABLE;
    bytes[meta + META_FLAGS] = flags;
    bytes[meta + META_RETURN_REASON] = 0;
    halves[(f + F_PORTS) * 2] = ingressPort;
    halves[(f + F_PORTS) * 2 + 1] = ingressPort;
    halves[(f + F_HOP) * 2] = hop;
    halves[(f + F_HOP) * 2 + 1] = ruleId;
    rec[f + F_PACKETS] = 0;
    rec[f + F_PACKETS + 1] = 0;
    rec[f + F_BYTES_LO] = 0;
    rec[f + F_BYTES_LO + 1] = 0;
    rec[f + F_BYTES_HI] = 0;
    rec[f + F_CREATED] = Math.floor(now / MS_PER_SECOND) >>> 0;
    rec[f + F_EPOCH] = epoch;
    // Only a TCP flow ever reads its windows (trackTcp): other protocols skip four more streams of stores.
    if (protocol === IPPROTO_TCP) this.tcp.reset(flow);
    const n = flow * 2;
    const replyBucket = this.writeKey(n + 1, reply);
    if (origBucket < 0) origBucket = this.writeKey(n, orig);
    else this.storeKey(n, orig);
    this.markCreated(replyBucket);
    this.markCreated(origBucket);
    if (replyBucket !== origBucket && this.pendingCount < PENDING_LINKS) {
      // A new reply key lands in a random bucket whose line is cold (the original's was just looked up):
      // its link waits for the next chain walk or removal (flushLinks), which links every waiting node
      // in one loop, so the misses of a batch's setups overlap. Nothing can look for the reply key in
      // between without walking a chain, and every walk flushes first.
      this.pendingNodes[this.pendingCount] = n + 1;
      this.pendingBuckets[this.pendingCount++] = replyBucket;
    } else {
      // Reply node first, original second: should both keys be equal, lookup finds the original.
      this.link(n + 1, replyBucket);
    }
    this.link(n, origBucket);
    const deadline = now + this.unrepliedTimeout[protocol];
    this.records[f + F_DEADLINE] = deadline >>> 0;
    this.wheel.insert(flow, RING_EVICTABLE, deadline);
    if (++this.portFlows[ingressPort] > this.portFlows[this.heaviest]) this.heaviest = ingressPort;
    this.live++;
    this.creations++;
    return flow;
  }

  /** Remove a live flow (onRemove with `reason`, Deleted unless told). No effect on a free flow. */
  delete(flow: number, reason: RemoveReason = RemoveReason.Deleted): void {
    if ((this.status(flow) & (LIVE | REMOVING)) !== LIVE) return;
    this.remove(flow, reason);
  }

  /**
   * Removes every live flow that names a port marked in `ports` (indexed by port id, 1 = marked) as its
   * ingress, return port or next hop, with OnrampRemoved. A scan of the whole table: control plane only, when
   * onramps are removed. Returns the number of flows removed.
   */
  removePorts(ports: Uint8Array): number {
    let removed = 0;
    for (let flow = 0; flow < this.capacity; flow++) {
      if ((this.status(flow) & (LIVE | REMOVING)) !== LIVE) continue;
      if (ports[this.ingressPort(flow)] === 1 || ports[this.returnPort(flow)] === 1 || ports[this.nextHop(flow)] === 1) {
        this.remove(flow, RemoveReason.OnrampRemoved);
        removed++;
      }
    }
    return removed;
  }

  /** True while the flow index holds a flow. */
  isLive(flow: number): boolean {
    return (this.status(flow) & LIVE) !== 0;
  }

  /** Both directions seen (UDP/ICMP/other) or the handshake completed (TCP): conntrack's IPS_ASSURED. */
  isAssured(flow: number): boolean {
    return (this.status(flow) & ASSURED) !== 0;
  }

  private remove(flow: number, reason: RemoveReason): void {
    if (this.pendingCount !== 0) this.flushLinks();
    const status = this.status(flow);
    if (this.onRemove !== undefined) {
      this.setStatus(flow, status | REMOVING);
      this.onRemove(flow, reason);
    }
    this.wheel.remove(flow, (status & EVICTABLE) !== 0 ? RING_EVICTABLE : RING_PROTECTED);
    this.unhashNode(flow * 2);
    this.unhashNode(flow * 2 + 1);
    this.portFlows[this.ingressPort(flow)]--;
    this.setStatus(flow, 0);
    this.setMeta(flow, META_STATE, TcpState.None);
    this.wheel.next[flow] = this.freeHead;
    this.freeHead = flow;
    this.live--;
    this.removals++;
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

  /** The latest time (ms) the table was given: flows' ages and idle times are measured against it. */
  latestNow(): number {
    return this.clock;
  }

  /** Absolute deadline (ms) of a live flow. */
  deadline(flow: number): number {
    return this.clock + ((this.storedDeadline(flow) - (this.clock >>> 0)) | 0);
  }

  /**
   * When the flow last accepted a packet (ms, whole: the deadline is stored truncated): create, touch or an
   * accepted trackTcp. Not stored: every refresh sets deadline = now + the timeout of the state and status it
   * leaves behind, and nothing changes those without refreshing, so subtracting that timeout gives now back
   * (a stored word would take an IPv4 record past 80 bytes).
   */
  lastActive(flow: number): number {
    const protocol = this.protocol(flow);
    const timeout = protocol === IPPROTO_TCP
      ? this.tcpTimeout[this.state(flow)]
      : (this.status(flow) & ASSURED) !== 0 ? this.repliedTimeout[protocol] : this.unrepliedTimeout[protocol];
    return this.deadline(flow) - timeout;
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
      const left = (this.storedDeadline(flow) - now32) | 0;
      if (left <= 0) {
        this.remove(flow, RemoveReason.Expired);
        removed++;
      } else {
        // Refreshed since it was filed: file it again at its real deadline (a later tick).
        const ring = (this.status(flow) & EVICTABLE) !== 0 ? RING_EVICTABLE : RING_PROTECTED;
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
    const at = this.flowWord(flow) + F_DEADLINE;
    const previousLeft = (this.records[at] - (now >>> 0)) | 0;
    this.records[at] = deadline >>> 0;
    const status = this.status(flow);
    if (((status & EVICTABLE) !== 0) !== evictable || timeout < previousLeft) this.refile(flow, status, evictable, deadline);
  }

  /** Files a flow (status: its status byte) again at deadline, in the ring evictable says, and notes the ring in its status. */
  private refile(flow: number, status: number, evictable: boolean, deadline: number): void {
    this.wheel.remove(flow, (status & EVICTABLE) !== 0 ? RING_EVICTABLE : RING_PROTECTED);
    this.wheel.insert(flow, evictable ? RING_EVICTABLE : RING_PROTECTED, deadline);
    this.setStatus(flow, evictable ? status | EVICTABLE : status & ~EVICTABLE);
  }

  // --- fair early drop ------------------------------------------------------------------------

  /**
   * Early drop's victim (see the file header): the evictable flow nearest its deadline among those of
   * the heaviest port, looking at most at EARLY_DROP_SCAN flows in deadline order; failing that, of the
   * flows looked at, the first whose port holds the most flows. NO_NODE when no flow is evictable.
   */
  private earlyDropVictim(): number {
    const wheel = this.wheel;
    const portFlows = this.portFlows;
    let flow = wheel.earliest(RING_EVICTABLE);
    let victim = NO_NODE;
    let most = 0;
    for (let seen = 0; flow !== WHEEL_NONE && seen < EARLY_DROP_SCAN; seen++) {
      const port = this.ingressPort(flow);
      const n = portFlows[port];
      if (n > most) {
        most = n;
        victim = flow;
        if (n >= portFlows[this.heaviest]) {
          this.heaviest = port;
          break;
        }
      }
      flow = wheel.after(RING_EVICTABLE, flow);
    }
    return victim;
  }

  // --- quotas ---------------------------------------------------------------------------------

  /** At most maxFlows live flows created by port; 0 = no quota (the default); QUOTA_AUTO = the automatic share (setAutoQuota). */
  setQuota(port: number, maxFlows: number): void {
    this.portQuota[port] = maxFlows;
  }

  /** The quota of every port set to QUOTA_AUTO; 0 = none. The owner sizes it (fairShare) when onramps come and go. */
  setAutoQuota(maxFlows: number): void {
    this.autoQuota = maxFlows;
  }

  /** A port's quota in force (QUOTA_AUTO resolved); 0 = none. */
  quotaOf(port: number): number {
    const q = this.portQuota[port];
    return q === QUOTA_AUTO ? this.autoQuota : q;
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
    const protocol = this.protocol(flow);
    if (protocol === IPPROTO_TCP) {
      const state = this.state(flow);
      this.refresh(flow, now, this.tcpTimeout[state], (this.status(flow) & EVICTABLE) !== 0);
      return;
    }
    let status = this.status(flow);
    if (dir === 1 && (status & ASSURED) === 0) {
      status |= ASSURED;
      this.setStatus(flow, status);
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
    const old = this.state(flow);
    const next = this.tcp.track(flow * 2 + dir, old, flags, seq, ack, window, payloadLength, windowScale);
    if (next < 0) return -next;
    this.advanceClock(now);
    let status = this.status(flow);
    if (next === TcpState.Established) status |= ASSURED;
    else if (next === TcpState.SynSent) status &= ~ASSURED; // reopened after TIME_WAIT / CLOSE
    this.setStatus(flow, status);
    this.setMeta(flow, META_STATE, next);
    const evictable = (status & ASSURED) === 0 || next === TcpState.TimeWait || next === TcpState.Close;
    this.refresh(flow, now, this.tcpTimeout[next], evictable);
    return Drop.None;
  }

  /**
   * touch() then count() (the pipeline's established fast path, issue 10 item 5): the same deadline, status,
   * wheel filing and counters, with the record's flow word and status read once. A TCP flow takes the two calls.
   */
  touchCount(flow: number, dir: 0 | 1, now: number, bytes: number): void {
    // Small on purpose (under V8's 460-byte limit for inlining a function): the rare paths are calls.
    const rec = this.records;
    const row = flow * this.stride;
    const protocol = (rec[row + N_KEY0] >>> PROTOCOL_SHIFT) & PROTOCOL_MASK;
    if (protocol === IPPROTO_TCP) {
      this.touch(flow, dir, now);
      this.count(flow, dir, bytes);
      return;
    }
    this.advanceClock(now);
    const f = row + this.flowBase;
    const statusAt = (f + F_META) * 4 + META_STATUS;
    let status = this.recordBytes[statusAt];
    if (dir === 1 && (status & ASSURED) === 0) {
      status |= ASSURED;
      this.recordBytes[statusAt] = status;
    }
    // refresh(), on the words already at hand: only a change of ring or an earlier deadline re-files the flow.
    const evictable = (status & ASSURED) === 0;
    const timeout = evictable ? this.unrepliedTimeout[protocol] : this.repliedTimeout[protocol];
    const previousLeft = (rec[f + F_DEADLINE] - (now >>> 0)) | 0;
    rec[f + F_DEADLINE] = (now + timeout) >>> 0;
    if (((status & EVICTABLE) !== 0) !== evictable || timeout < previousLeft) this.refile(flow, status, evictable, now + timeout);
    rec[f + F_PACKETS + dir]++;
    const lo = f + F_BYTES_LO + dir;
    const sum = rec[lo] + bytes;
    rec[lo] = sum; // stored modulo 2^32
    if (sum >= TWO_POW_32) this.recordHalves[(f + F_BYTES_HI) * 2 + dir]++;
  }

  /** Count one packet of `bytes` bytes (< 2^32) in direction dir. */
  /**
   * `packets` packets of `bytes` bytes in all counted at once: the hits the native flow cache forwarded since its last
   * fold (src/daemon/flow-offload.ts). count() for one packet.
   */
  countMany(flow: number, dir: 0 | 1, packets: number, bytes: number): void {
    const rec = this.records;
    const f = this.flowWord(flow);
    rec[f + F_PACKETS + dir] += packets; // wraps at 2^32, like count()
    const lo = f + F_BYTES_LO + dir;
    const sum = rec[lo] + bytes;
    rec[lo] = sum; // stored modulo 2^32
    if (sum >= TWO_POW_32) this.recordHalves[(f + F_BYTES_HI) * 2 + dir] += Math.floor(sum / TWO_POW_32);
  }

  count(flow: number, dir: 0 | 1, bytes: number): void {
    const rec = this.records;
    const f = this.flowWord(flow);
    rec[f + F_PACKETS + dir]++;
    const lo = f + F_BYTES_LO + dir;
    const sum = rec[lo] + bytes;
    rec[lo] = sum; // stored modulo 2^32
    if (sum >= TWO_POW_32) this.recordHalves[(f + F_BYTES_HI) * 2 + dir]++;
  }

  /**
   * Established = protected from early drop: UDP/ICMP/other once the reply direction has been
   * seen; TCP once the handshake completed, until TIME_WAIT or CLOSE (then it is dead and
   * evictable; FIN_WAIT / CLOSE_WAIT / LAST_ACK stay protected, half-closed transfers can last).
   */
  isEstablished(flow: number): boolean {
    return (this.status(flow) & (LIVE | EVICTABLE)) === LIVE;
  }

  // --- accounting -----------------------------------------------------------------------------

  /** Bytes of every preallocated typed array (the table's whole footprint, bar a few hundred bytes of objects). */
  memoryBytes(): number {
    // recordInts, recordBytes and recordHalves are views of records' buffer: counted once.
    const arrays: ArrayBufferView[] = [
      this.records,
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
