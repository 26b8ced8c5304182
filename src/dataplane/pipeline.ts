/**
 * The pipeline: one packet walk for every onramp type (docs/ARCHITECTURE.md and docs/FLOW-MODEL.md, "The packet walk").
 *
 *   packet from port P ──► inspect ──► ICMP error? ──► match by embedded header ─► translate back ─┐
 *        (onramp or             │                                                                 │
 *         Internet egress)      ├─ later fragment? ──► follow its first fragment's flow ──────────┤
 *                               │                                                                 │
 *                               └─ flow key in P's zone ─► lookup ─ hit ─► owner check, track ────┤
 *                                                                 miss ─► setup: policy, route,   │
 *                                                                         NAT, ARR, create ───────┤
 *                                                                                                  ▼
 *                                     rewrite from the flow's other key (incremental checksums), TTL,
 *                                     next hop: original direction → the flow's next hop;
 *                                               reply direction → ARR ? the return onramp : routing table
 *                                     (the return onramp as the site's failover policy left it: steerReturn)
 *                                     SYN crossing a port with a tunnel MTU: MSS clamped (clampMss)
 *                                     IPv4 toward a shared source: ids renumbered (renumber, FLAG_RENUMBER)
 *
 * inspect is the packet's one parse: its PacketInfo feeds every step here, the port's source filter (a
 * WireGuard peer's allowed IPs, right after inspect) included, and is recorded into the batch's per-packet
 * metadata for the stages after the pipeline.
 *
 * The decision is made once, at flow setup, and stored in the flow; an established packet does no
 * policy or route lookup (except replies of flows without ARR, which the routing table decides per
 * packet: that is the classic behaviour, ambiguity included). Nothing here allocates per packet.
 *
 * Zones keep sites apart: an ARR onramp's packets are keyed in its site's zone, so two sites'
 * identical 5-tuples are two flows. On top of that, a hit is accepted only from a port that owns
 * that direction: the original direction from the flow's own site, the reply direction from the
 * site (or the Internet egress) the flow was sent to. A forged packet from another site changes
 * nothing and is counted as FlowOwnerMismatch.
 */
import { Drop, DROP_REASON_COUNT } from '../common/drop-reasons.js';
import { finalMix, mixWord, randomSeed } from '../common/hash.js';
import { MAX_ONRAMP_ID, NEXT_HOP_DROP, PORT_INTERNET, ZONE_GLOBAL } from '../common/ids.js';
import { PacketBatch, VNET_F_NEEDS_CSUM, VNET_FLAGS, VNET_WORDS } from '../common/packet-batch.js';
import { fairShare } from '../common/fair-share.js';
import { FlowKey, FlowTable, KEY4_WORDS, QUOTA_AUTO, RemoveReason, TcpState, type FlowTimeouts } from '../flow/flow-table.js';
import { HealthEngine, REPLY_NOT_OURS } from '../health/health.js';
import { priorityPenalty } from '../health/constants.js';
import type { HealthState } from '../health/judge.js';
import { IpIdAllocator } from '../nat/ip-id.js';
import { NAT_SITE_QUOTA, SnatPool } from '../nat/snat-pool.js';
import { Firewall, NO_MATCH, type FirewallRuleSpec } from '../policy/firewall.js';
import { ALL_NAME_SOURCES, GATEWAY_NEED_NAME, GATEWAY_NO_RULE, NameSource, type GatewayPolicySpec, type GatewayRules } from '../gateway/policy.js';
import { FastGatewayPolicy } from './gateway-policy.js';
import { LaneOwnership } from './lane-ownership.js';
import { LaneDirectory } from '../common/lane-directory.js';
import type { ClassifyResult } from '../gateway/result.js';
import { seqGt, seqLeq } from '../flow/tcp.js';
import { writeResetToReceiver, writeResetToSender, TCP_RESET_ROOM } from '../wire/tcp-reset.js';
import {
  CLASSIFY_OUTCOME_COUNT,
  ClassifyOutcome,
  ClassifyPool,
  Classifying,
  DEFAULT_CLASSIFY_SLOTS,
  PARSER_TLS,
  GW_ACTION_BLOCK,
  gatewayActionCode,
  gatewayWord,
  isFallback,
} from './classify.js';
import { DNS_PORT, DNS_UNPARSED, DnsGate, type DnsGateEvent } from './dns-gate.js';
import { NextHopKind, RouteTable, type RouteSpec } from '../route/route-table.js';
import {
  AF_INET4,
  AF_INET6,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_TIMESTAMP_REPLY,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP4_TIME_EXCEEDED,
  ICMP6_TIME_EXCEEDED,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_CHECKSUM,
  IPV4_DST,
  IPV4_FLAG_DF,
  IPV4_FLAGS_FRAGMENT,
  IPV4_ID,
  IPV4_MIN_HEADER,
  IPV4_PROTOCOL,
  IPV4_SRC,
  IPV4_TOTAL_LENGTH,
  IPV4_TTL,
  IP_VERSION_4,
  TCP_ACK,
  TCP_ACK_FLAG,
  TCP_CHECKSUM,
  TCP_DATA_OFFSET,
  TCP_DST_PORT,
  TCP_FIN,
  TCP_FLAGS,
  TCP_MIN_HEADER,
  TCP_RST,
  TCP_SEQ,
  TCP_SRC_PORT,
  TCP_SYN,
  TCP_URG,
  TCP_WINDOW,
  UDP_CHECKSUM,
  UDP_HEADER,
  UDP_LENGTH,
} from '../wire/constants.js';
import { ICMP_ERROR_ROOM, writeIcmpError4, writeIcmpError6 } from '../wire/icmp-error.js';
import { inspect } from '../wire/inspect.js';
import { parseAddress } from '../wire/addr.js';
import { DST, PacketInfo, SRC } from '../wire/packet-info.js';
import { mayReportError } from '../onramp/tunnel-mtu.js';
import {
  clampTcpMss,
  decrementTtl,
  echoReplyInPlace,
  echoReplyInPlace6,
  refreshIcmpChecksum,
  setDstAddr4,
  setDstAddr6,
  setDstPort,
  setInnerAddr4,
  setInnerAddr6,
  setInnerPort,
  setIpv4Id,
  setSrcAddr4,
  setSrcAddr6,
  setSrcPort,
} from '../wire/rewrite.js';
import { DLP_CUT, DLP_DONE, DLP_REORDER, DlpTracker, type DlpCounters, type DlpEvent } from './dlp-tracker.js';
import { SetupDecision, type SetupTrace } from './flow-setup.js';
import { FragmentFollower } from './fragments.js';
import { IcmpRateLimit, type IcmpRateLimitOptions } from './icmp-rate-limit.js';
import { FAILOVER_DRAIN, FAILOVER_FOLLOW, LOCAL_SLOT_WORDS, PortRegistry, type OnrampSpec, type SiteSpec } from './ports.js';

/** Bits of FlowTable.flags, owned by the pipeline. */
export const FLAG_TRANSLATE = 1; // the packet's addresses/ports change: rewrite from the other key
export const FLAG_ARR = 2; // replies go to the recorded return onramp, not through the routing table
export const FLAG_POOL = 4; // holds a reference on an egress pool mapping (released when the flow ends)
export const FLAG_CLASH = 8; // source port rewritten because another site's flow had the same reply key
export const FLAG_HAIRPIN = 16; // addressed to the egress pool and turned back inside (RFC 4787 REQ-9)
/**
 * Hairpin not yet admitted by the peer's mapping (RFC 4787 REQ-8, address-and-port-dependent filtering): the
 * peer never sent to this flow's external endpoint. The flow exists (its sender's mapping admits the peer from
 * now on, as an outbound packet opens a filter) but its original-direction packets are dropped as
 * HairpinFiltered until the first reply-direction packet, the peer's contact, clears the flag.
 */
export const FLAG_FILTERED = 32;
/**
 * The original direction's IPv4 ids are the edge's (issue 13; RFC 6864 section 4, RFC 4963): the receiver sees
 * this flow's source shared with other senders — a pool address (source NAT, hairpin), or a site's own address
 * leaving its zone, where another site's identical address arrives too (a data center reached over ARR). Two
 * senders' datagrams with the same id would be reassembled into each other there, so every non-atomic datagram
 * (a fragment, or DF clear) takes its id from the edge's per-(source, destination, protocol) counters instead
 * (src/nat/ip-id.ts); all fragments of one datagram get the same one (the fragment follower keeps it).
 *
 * Atomic datagrams (DF set, not a fragment) keep their id: RFC 6864 section 4.1 gives it no meaning, no receiver
 * reassembles them, and leaving them out keeps the counters' 65,536 values for the datagrams that can meet in
 * a reassembly queue (TCP, DF set by Linux, would otherwise spend a counter's turn at line rate) and the TCP
 * path's cost unchanged.
 *
 * The reply direction keeps its ids (the server's stack made them unique per (server, pool address or site
 * address, protocol); the edge only changes the destination, and each site receives a subset of that unique
 * set), except for a hairpin's replies (FLAG_HAIRPIN), whose source becomes a pool address like an original
 * direction's. See renumbers().
 */
export const FLAG_RENUMBER = 64;
/**
 * The gateway has work on this flow's packets after setup: the flags byte has no bit left, so one bit serves the
 * three kinds of work, told apart by protocol and by the state each keeps — a UDP flow toward port 53 (FLAG_DNS),
 * a TCP flow waiting for its name (FLAG_CLASSIFYING: in the classifying map), a TCP flow under DLP (FLAG_DLP: in
 * the DLP tracker; DLP starts only once classification has ended). The established path pays one bit test.
 */
export const FLAG_GATEWAY_WORK = 128;
/** Pipeline.offloadable's answers: not offloadable; every packet; only packets with DF set (the others get new ids). */
export const OFFLOAD_NO = 0;
export const OFFLOAD_ANY = 1;
export const OFFLOAD_DF_ONLY = 2;
/**
 * A UDP flow toward port 53 (dns-gate.ts): while some gateway rule reads DNS names, every query of its original
 * direction is read and decided, not only the first (a resolver may send many queries from one source port).
 * Set only while such rules exist (the bit sends a packet past the specialised established path): a policy change
 * starts a new epoch, and re-evaluation sets or clears it on the flows already open (reevaluate), so a rule added
 * later applies to them from their next packet. Other flows never carry it.
 */
export const FLAG_DNS = FLAG_GATEWAY_WORK;
/**
 * Waiting for its name (classify.ts; docs/FLOW-MODEL.md, "classifying"): a TCP flow whose first gateway rule has a
 * hostname condition. Its handshake passes; the client's payload is held until the gateway decides. Cleared when it
 * has; the fast path pays one bit test for it.
 */
export const FLAG_CLASSIFYING = FLAG_GATEWAY_WORK;
/**
 * The flow is being scanned by DLP (dlp-tracker.ts): its TCP segments are reassembled and scanned until both
 * directions reached dlpScanBytes (then the flag is cleared and the flow takes the plain fast path again).
 */
export const FLAG_DLP = FLAG_GATEWAY_WORK;

/**
 * Does a packet of a flow with these flags, in direction dir, inspected as `info`, leave with an id of the edge's
 * (FLAG_RENUMBER)? IPv4, the direction whose source the receiver sees shared, and not atomic.
 */
export function renumbers(flags: number, dir: number, info: PacketInfo): boolean {
  return (flags & (dir === 0 ? FLAG_RENUMBER : FLAG_HAIRPIN)) !== 0 && (info.isFragment || !info.dontFragment) && info.family === AF_INET4;
}

/** Is a packet of a flow with these flags, in direction dir, held back by the peer's filter (FLAG_FILTERED)? Explain asks the same. */
export function heldByFilter(flags: number, dir: number): boolean {
  return (flags & FLAG_FILTERED) !== 0 && dir === 0;
}

/** FlowTable.returnReason, owned by the pipeline: why the flow's return onramp is the one it is (steerReturn). */
export const RETURN_RECORDED = 0; // the onramp that started the flow, as recorded at setup
export const RETURN_ARRIVAL = 1; // the onramp the flow's original direction last arrived on (follow, drain)
export const RETURN_FAILOVER = 2; // drain: the best healthy onramp, taken when the return onramp was down
export const RETURN_DRAINED_BACK = 3; // drain: the best healthy onramp, taken after the flow was idle
export const RETURN_REASONS = ['recorded', 'last-arrival', 'failover', 'drained-back'] as const;
/** decideReturn's answer: the port in the low 16 bits, the reason above. */
export const RETURN_PORT_MASK = 0xffff;
export const RETURN_REASON_SHIFT = 16;

/** Returned by forward() for a fragment that waits for its first fragment: consumed, not dropped. */
export const HELD = -256;
/** Returned by forward() for a reply to the edge's own health probe: taken by the health engine, not dropped. */
export const CONSUMED = -257;
/** Returned by forward() for a packet whose flow another lane owns (lane-ownership.ts): listed in `lanes`, not dropped. */
export const HANDED = -260;
/** forwardLocal(): the packet is not the edge's own; the walk goes on. */
const NOT_LOCAL = -258;
/** classifySegment(): the packet is not the classifier's to keep; the walk goes on. */
const CLASSIFY_PASS = -259;
/** A flow's handle in flowName's map: flow index and family in one small integer (flows are < 2^29). */
function flowHandle(v6: boolean, flow: number): number {
  return (flow << 1) | (v6 ? 1 : 0);
}

/** A classified flow's name and where it came from (Pipeline.flowName). */
export interface FlowName {
  readonly source: NameSource;
  readonly name: string;
}
/** gatewayDns(): the edge did not answer the query; it walks on. */
const NOT_ANSWERED = -260;

/** Attempts at finding a free source port when two sites' flows would clash at a data center. */
const CLASH_ATTEMPTS = 64;
const CLASH_PORT_MIN = 1024;
const CLASH_PORT_SPAN = 0x10000 - CLASH_PORT_MIN;

/**
 * Packets whose flow-table lines are fetched ahead in one pre-pass (see prefetch()): enough to
 * keep the CPU's miss buffers busy, few enough that the lines (about three per packet) are still
 * in L1/L2 when the packet's turn comes.
 */
const PREFETCH_CHUNK = 64;
/** IPv4 first byte of a header without options: version 4, IHL 5 words (RFC 791 section 3.1). */
const IPV4_PLAIN_VERSION_IHL = (IP_VERSION_4 << 4) | (IPV4_MIN_HEADER >>> 2);
/** MF flag and the 13-bit fragment offset, in the high byte of the flags/offset field. */
const IPV4_MF_AND_OFFSET_HIGH = 0x3f;
/** Source and destination ports, the first word of the UDP and TCP headers. */
const L4_PORTS_LENGTH = 4;
/** Flow table capacities when the configuration names none. */
export const DEFAULT_CAPACITY4 = 1 << 16;
export const DEFAULT_CAPACITY6 = 1 << 12;
/** A packet the pre-pass did not look up (prefetch()); its hints are otherwise a node or -1 (no flow). */
const HINT_NONE = -2;
/** A packet the pre-pass looked up and whose flow is not there: a setup to come. */
const HINT_MISS = -1;
/** The pre-pass's key words per packet (FlowTable.lookupChunk4, KEY4_WORDS): zone | protocol << 16, ports, source, destination. */
const KEY_ZONE_PROTOCOL = 0;
const KEY_PORTS = 1;
const KEY_SRC = 2;
const KEY_DST = 3;
const KEY_PROTOCOL_SHIFT = 16;
const KEY_ZONE_MASK = 0xffff;
/** The TCP flags that decide a segment's class (src/flow/tcp.ts): a plain established segment has only ACK of them. */
const TCP_CLASS_FLAGS = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK_FLAG | TCP_URG;
/** TTL is the high byte of the IPv4 header word it shares with the protocol (RFC 791 section 3.1). */
const TTL_WORD_SHIFT = 8;
/** IPv4 header checksum over a 20-byte header: the ten words sum to 0xFFFF once folded (RFC 791 section 3.1). */
const CHECKSUM_OK = 0xffff;

export interface PipelineConfig {
  onramps: OnrampSpec[];
  /** Sites' failover policies; a site not listed follows. */
  sites?: SiteSpec[];
  routes: RouteSpec[];
  firewall?: { rules: FirewallRuleSpec[]; defaultAction: 'allow' | 'deny' };
  /** Gateway policy (src/gateway/policy.ts): hostname rules, DLP profiles. Absent = no rules. */
  gateway?: GatewayPolicySpec;
  /**
   * Internet egress source NAT; required when any route leads to the Internet. maxPortsPerSite: ports of one
   * pool address and protocol a site may hold; 0 = no quota; absent = the fair share among the sites.
   */
  egress?: { addresses: string[]; portMin?: number; portMax?: number; maxPortsPerSite?: number };
  /**
   * This pipeline is lane `lane.index` of `lane.count` (common/lanes.ts): its NAT pool hands out that lane's slice of
   * the ports. `directory`: the lanes' shared ownership directory (common/lane-directory.ts; lane-ownership.ts).
   */
  lane?: { index: number; count: number; directory?: SharedArrayBuffer };
  flows?: { capacity4?: number; capacity6?: number; timeouts?: Partial<FlowTimeouts> };
  /** Rate limits of the ICMP errors the edge originates (icmp-rate-limit.ts; defaults there, docs/CONFIG.md). */
  icmpErrors?: IcmpRateLimitOptions;
  /** Fixed hash seed for reproducible tests; random otherwise. */
  hashSeed?: number;
  /** Flows that may hold client payload while waiting for a name at once (classify.ts); default 256. */
  classifySlots?: number;
  /** Memory for the flow tables' large arrays (see FlowTableOptions.allocate); ordinary buffers by default. */
  allocate?: (bytes: number) => ArrayBuffer;
}

const PORT_SPACE = MAX_ONRAMP_ID + 2;
/** Gateway rule ids are 16-bit, as firewall rule ids (FirewallRuleSpec.id). */
const MAX_GATEWAY_RULE_ID = 65535;
const MAX_FIREWALL_RULE_ID = 65535;

/** Counters, in Float64Array so they never wrap; indexed by port id or Drop reason. */
export class PipelineCounters implements DlpCounters {
  readonly drops = new Float64Array(DROP_REASON_COUNT);
  /** Flows (and DNS queries) each gateway rule decided, by rule id (1..65535). */
  readonly gatewayRuleHits = new Float64Array(MAX_GATEWAY_RULE_ID + 1);
  /** First packets each firewall rule decided at setup, by rule id (1..65535); 0: the default action. */
  readonly firewallRuleHits = new Float64Array(MAX_FIREWALL_RULE_ID + 1);
  readonly rxPackets = new Float64Array(PORT_SPACE);
  readonly rxBytes = new Float64Array(PORT_SPACE);
  readonly txPackets = new Float64Array(PORT_SPACE);
  readonly txBytes = new Float64Array(PORT_SPACE);
  /** Drops by the port the packet came in on. */
  readonly rxDrops = new Float64Array(PORT_SPACE);
  /** Flows created by, and ended for, the port that started them. */
  readonly flowsCreated = new Float64Array(PORT_SPACE);
  readonly flowsEnded = new Float64Array(PORT_SPACE);
  /** Flows ended because an onramp they name was removed (endFlowsOf). */
  flowsEndedByRemoval = 0;
  icmpErrorsTranslated = 0;
  fragmentsHeld = 0;
  fragmentsFollowed = 0;
  /** Echo packets handed to the health engine (replies to the edge's probes, the site's probes answered). */
  healthEvidence = 0;
  /** ICMP time exceeded / ICMPv6 hop limit exceeded the edge sent (timeExceeded). */
  icmpTimeExceededSent = 0;
  /** Time exceeded not sent: the source's or the edge's token bucket was empty (icmp-rate-limit.ts). */
  icmpErrorsRateLimited = 0;
  /** Time exceeded not sent: no edge address of the packet's family for its port (icmp_source, egress pool). */
  icmpErrorsNoSource = 0;
  /** Echo requests to an egress pool address answered by the edge itself (answerEcho). */
  icmpEchoAnswered = 0;
  /** TCP flows that waited for a name (the classifying state), and how each wait ended (ClassifyOutcome). */
  classifyStarted = 0;
  readonly classifyOutcomes = new Float64Array(CLASSIFY_OUTCOME_COUNT);
  /** Flows the gateway cut (a block by name, a blocking fallback): one reset to each end. */
  gatewayResets = 0;
  /** UDP/53 queries the gateway read and decided (dns-gate.ts), whatever the outcome. */
  gatewayDnsQueries = 0;
  /** Queries the edge answered itself (block: NXDOMAIN; override), instead of forwarding them. */
  gatewayDnsAnswered = 0;
  /** UDP/53 datagrams of inspected flows that were no query the edge could read (fragment, response, malformed): forwarded. */
  gatewayDnsUnparsed = 0;
  /** Answers not sent: the batch's room for generated packets was full (the query is not forwarded; the client retries). */
  gatewayDnsAnswerLost = 0;
  /** DLP (dlp-tracker.ts): flows scanned, bytes scanned (both directions), flows not scanned for want of a slot. */
  dlpFlowsScanned = 0;
  dlpBytesScanned = 0;
  dlpPoolEmpty = 0;
  /** Flows cut by a `block` profile; segments dropped past the reassembly hold window. */
  dlpFlowsCut = 0;
  dlpReorderDrops = 0;
  /** Matches by DLP profile name (touched only when a profile matches). */
  readonly dlpMatches = new Map<string, number>();
  /** Established flows decided again because the policy epoch moved (reevaluate), and those of them cut. */
  flowsReevaluated = 0;
  flowsCutByPolicy = 0;
  /** Packets the specialised established path handled (forwardChunk); the rest of the batch walked forward(). */
  fastPathPackets = 0;
}

/** Which policy cut a flow (PolicyCutRecord.layer). */
export const CUT_BY_FIREWALL = 0;
export const CUT_BY_GATEWAY = 1;

/**
 * The last flow reevaluate() cut, read by onFlowEnd (the flow log) while that flow ends: the epoch that cut
 * it, the layer and the rule id of the layer's id space (firewall rule id, 0 for the default action; gateway
 * rule id). Filled before the flow is removed; one preallocated record, no allocation on the packet path.
 */
export class PolicyCutRecord {
  epoch = 0;
  layer = CUT_BY_FIREWALL;
  ruleId = 0;
}

/**
 * Re-evaluating a flow whose first payload is gone (no name kept for it): a source no rule can be waiting
 * for (all of them) with no name, so no hostname condition matches and the first rule without one decides.
 */
const NO_NAME_SOURCE = ALL_NAME_SOURCES as NameSource;

const NO_DLP_EVENTS: readonly DlpEvent[] = [];

/** Time exceeded's code 0: TTL / hop limit exceeded in transit (RFC 792; RFC 4443 section 3.3). */
const ICMP_CODE_TTL_EXCEEDED = 0;

export class Pipeline {
  readonly ports = new PortRegistry();
  readonly routes = new RouteTable();
  readonly snat: SnatPool | null;
  /** Lanes with a shared directory: who owns a packet that missed here, and the packets to hand over (null: one lane). */
  readonly lanes: LaneOwnership | null;
  readonly flows4: FlowTable;
  readonly flows6: FlowTable;
  readonly counters = new PipelineCounters();
  /**
   * Tunnel health (src/health): the pipeline hands it the echo replies to the edge's probes it meets on the
   * packet path (forwardLocal); the daemon drives the rest (poll, probes, evidence, transitions).
   */
  readonly health = new HealthEngine();
  /** Packets the pipeline emits on its own during process(): released early fragments. Drain after each call. */
  readonly generated = new PacketBatch(64);
  /**
   * The specialised established path (forwardChunk): on by default; tests turn it off to check that it
   * changes nothing (test/dataplane/fast-path.test.ts compares both, byte for byte).
   */
  fastPath = true;
  /** Called when a flow ends (expired, evicted, deleted), before its slot is reused. */
  onFlowEnd: ((table: FlowTable, flow: number, reason: RemoveReason) => void) | null = null;
  /**
   * Called after every change that may alter how an established flow's packets are forwarded (a policy epoch, an
   * onramp set, its up state, the sites' failover policy, flows ended by a removal): the native flow cache
   * (src/daemon/flow-offload.ts) drops what it learned. Control plane only.
   */
  onChange: (() => void) | null = null;
  /**
   * Called as a flow starts to end, before its counters are read (onFlowEnd, the flow log): the native flow cache
   * counts its last hits into it and forgets it (src/daemon/flow-offload.ts).
   */
  onFlowEnding: ((table: FlowTable, flow: number) => void) | null = null;
  /** Called before the API reads flows' counters (/v1/flows): the native flow cache folds its hits in. */
  onFlowsRead: (() => void) | null = null;
  /**
   * Called for each DNS query a gateway rule blocked, overrode or logged (dns-gate.ts), on the packet path: the
   * event object is reused, copy what you keep.
   */
  onGatewayDns: ((event: DnsGateEvent) => void) | null = null;
  /** The gateway's DNS stage: reads UDP/53 queries of FLAG_DNS flows and answers blocked and overridden names. */
  readonly dnsGate = new DnsGate();
  /** Who cut the flow that is ending with RemoveReason.PolicyCut (valid inside onFlowEnd). */
  readonly lastCut = new PolicyCutRecord();
  /**
   * The policy epoch (issue 12): bumped by every firewall or gateway change (setFirewall, setGateway). A flow
   * records the epoch it was decided under; a packet of a flow from an older epoch has it decided again
   * (reevaluate) before it is forwarded. Starts at 1, so a zeroed record is never current.
   */
  private epoch = 1;
  private firewallRules: Firewall;
  private gatewayRules: GatewayRules | null;
  /** Flows waiting for their name, by flowHandle, in the order they started (Map order: the wait's deadlines). */
  private readonly classifying = new Map<number, Classifying>();
  /** Classifying records to reuse. */
  private readonly classifyRecords: Classifying[] = [];
  /** Held-packet slots for the current classify.buffer_bytes (null until a flow needs one). */
  private classifyPool: ClassifyPool | null = null;
  private readonly classifySlots: number;
  /**
   * The gateway's decision per flow, by flow index (classify.ts gatewayWord: rule id, name source, action,
   * classification outcome; 0 = the gateway decided nothing). Beside the flow tables, not in their records: only
   * setup, classification and the control plane touch it, and the record keeps its 80 bytes (4 bytes per flow here).
   */
  private readonly gatewayWords4: Uint32Array;
  private readonly gatewayWords6: Uint32Array;
  /** Classified flows' names, by flowHandle; deleted when the flow ends (flowName). */
  private readonly names = new Map<number, FlowName>();
  /** A decision released held packets through forward() (classifySegment's caller then inspects its packet again). */
  private released = false;
  /** Where a reset is written, and the flow's original segment the resets are made from. */
  private readonly resetScratch = new Uint8Array(TCP_RESET_ROOM);
  private readonly resetInfo = new PacketInfo();
  /** DLP on the flows whose gateway rule names profiles; null until a policy with such a rule is set. */
  private dlp: DlpTracker | null = null;
  private readonly frags4: FragmentFollower;
  private readonly frags6: FragmentFollower;
  /** egress.maxPortsPerSite as configured (undefined: the fair share). */
  private readonly natPortsPerSite: number | undefined;
  /** ports.version the fair shares were last sized for (sizeShares). */
  private sharesVersion = -1;
  private readonly info = new PacketInfo();
  private readonly key = new FlowKey();
  /** The setup decision of the packet being processed (decideSetup fills it, commitSetup reads it). */
  private readonly decision = new SetupDecision();
  /** Pre-translation addresses of the fragment being processed (source words 0..3, destination 4..7). */
  private readonly fragAddr = new Uint32Array(8);
  /** The source address of a packet on the established path, for the port's source filter (words as PacketInfo.addr). */
  private readonly fastAddr = new Uint32Array(8);
  /** The first fragment being processed: its identification as sent, and the one it leaves with (-1: the same). */
  private fragId = 0;
  private fragNewId = -1;
  /** IPv4 ids for FLAG_RENUMBER (renumber()). */
  private readonly ipIds: IpIdAllocator;
  /**
   * Where forward() records the packet's inspection (PacketBatch metadata): the batch being processed and
   * the packet's index; a one-slot scratch batch when forward() is called on its own.
   */
  private readonly metaScratch = new PacketBatch(1, 64, 0);
  private metaBatch: PacketBatch = this.metaScratch;
  private metaIndex = 0;
  /** True while processOwn() runs: the packets are the edge's own, the ports' source filters do not apply. */
  private ownPackets = false;
  /** Flow node the last forwarded packet used (valid after forward() returned a port). */
  private lastNode = -1;
  /**
   * Flow node of the packet being forwarded, for the batch metadata (PacketBatch.flowNode): -1 until a flow
   * forwards it, so ICMP errors, the edge's own echo replies and drops record none.
   */
  private packetNode = -1;
  private now = 0;
  /** Bucket indices, then head nodes, of the packets being prefetched. */
  private readonly prefetchSlots = new Int32Array(PREFETCH_CHUNK);
  /** What the prefetch loads read: kept in a field so the JIT cannot drop the loads. */
  prefetchSink = 0;
  /** The flow-table buckets of the packets being prefetched (-1: not prefetched), and their lookups' results. */
  private readonly prefetchBuckets = new Int32Array(PREFETCH_CHUNK);
  private readonly prefetchHints = new Int32Array(PREFETCH_CHUNK);
  /** The key words of each packet the pre-pass hashed (KEY4_WORDS each), for its lookup. */
  private readonly prefetchTuples = new Int32Array(PREFETCH_CHUNK * KEY4_WORDS);
  /** flows4.creations and .removals when the hints were taken (hinted()). */
  private hintCreations = 0;
  private hintRemovals = 0;
  /** The hint of the packet process() hands forward() next; HINT_NONE for any other call. And its bucket. */
  private hint = HINT_NONE;
  private hintBucket = -1;
  /**
   * The bucket of the key lookupKey() built, from the pre-pass (hintBucket, a packet it hashed), or -1: flow setup
   * hands it to FlowTable.createWith, which then does not hash the original key again.
   */
  private keyBucket = -1;
  /** The lane handsOver() found for the packet being forwarded (finish() lists it). */
  private handLane = 0;
  /**
   * Live flows that put a key with a pool destination into the global zone other than a source-NAT flow's
   * reply (see replyKeyMayExist): while there are none, a new source-NAT reply key cannot exist already.
   */
  private poolKeyedFlows = 0;
  /** Token buckets for the errors the edge originates (RFC 1812 section 4.3.2.8). */
  readonly icmpLimit: IcmpRateLimit;
  /** The egress pool's first address per family: the ICMP error source of last resort (icmpSourceOf); null = none. */
  private readonly poolSource4: Uint32Array | null;
  private readonly poolSource6: Uint32Array | null;
  /** Where an error is written before it is pushed into `generated`, and its inspection. */
  private readonly errorScratch = new Uint8Array(ICMP_ERROR_ROOM);
  private readonly errorInfo = new PacketInfo();
  /** Error source (words 0..3) and destination (4..7) for the IPv6 writer. */
  private readonly errorAddr = new Uint32Array(8);
  /**
   * Lanes: early fragments this lane held whose first fragment went to lane `lane` (firstFragmentHanded): the edge
   * copies each into that lane's ring. Null: no lanes (they stay held here).
   */
  onHandHeld: ((data: Uint8Array, offset: number, length: number, ingress: number, lane: number) => void) | null = null;
  /** The lane firstFragmentHanded is releasing held fragments to. */
  private heldLane = 0;
  private readonly handHeld = (data: Uint8Array, offset: number, length: number, ingress: number): void => {
    // Its receive was counted when it was held here; the lane it goes to counts it (as handsOver).
    this.counters.rxPackets[ingress]--;
    this.counters.rxBytes[ingress] -= length;
    this.onHandHeld!(data, offset, length, ingress, this.heldLane);
  };
  private readonly takeHeld = (data: Uint8Array, offset: number, length: number, ingress: number): void => {
    this.walkGenerated(data, offset, length, ingress, Drop.FragmentOverflow, true);
  };

  /**
   * A packet the pipeline kept or made (an early fragment, a held client segment, a reset toward a server) walks
   * now: copied into `generated` (full: counted as `overflow`), forwarded from `ingress`, its verdict recorded
   * there. Re-entered from forward() (followFragments, classification): the outer packet has recorded its
   * metadata already. `received`: the packet was counted as received on `ingress` when it arrived (a held
   * fragment or client segment), so the count forward() adds for it again is taken back: each packet once.
   */
  private walkGenerated(data: Uint8Array, offset: number, length: number, ingress: number, overflow: Drop, received: boolean): void {
    const g = this.generated;
    const i = g.push(data, offset, length, ingress);
    if (i < 0) {
      this.countDrop(ingress, overflow);
      return;
    }
    // forward() counts what it reads on a configured port (its first check), as it did when this packet came.
    if (received && ingress <= MAX_ONRAMP_ID && this.ports.configured[ingress] === 1) {
      this.counters.rxPackets[ingress]--;
      this.counters.rxBytes[ingress] -= length;
    }
    const batch = this.metaBatch;
    const index = this.metaIndex;
    this.metaBatch = g;
    this.metaIndex = i;
    this.finish(g, i, this.forward(g.data, g.offset[i], g.length[i], ingress, this.now));
    this.metaBatch = batch;
    this.metaIndex = index;
  }

  constructor(config: PipelineConfig) {
    // One random seed per pipeline for every table that faces packets (flows, NAT mappings): hash flooding.
    const seed = config.hashSeed ?? randomSeed();
    const laneBuffer = config.lane !== undefined && config.lane.count > 1 ? config.lane.directory : undefined;
    const laneDirectory = laneBuffer === undefined ? undefined : new LaneDirectory(laneBuffer);
    this.snat = config.egress && config.egress.addresses.length > 0
      ? new SnatPool({
        addresses: config.egress.addresses,
        portMin: config.egress.portMin,
        portMax: config.egress.portMax,
        lane: config.lane?.index,
        lanes: config.lane?.count,
        directory: laneDirectory,
        hashSeed: seed,
        // A flow holds at most one mapping: room for every flow at once, so setup never stops to rehash.
        initialMappings: (config.flows?.capacity4 ?? DEFAULT_CAPACITY4) + (config.flows?.capacity6 ?? DEFAULT_CAPACITY6),
        allocate: config.allocate,
      })
      : null;
    this.lanes = laneDirectory === undefined ? null : new LaneOwnership(laneDirectory, config.lane!.index, this.snat);
    const flowOpts = config.flows ?? {};
    this.flows4 = new FlowTable({
      capacity: flowOpts.capacity4 ?? DEFAULT_CAPACITY4,
      addrWords: 1,
      allocate: config.allocate,
      timeouts: flowOpts.timeouts,
      hashSeed: seed,
      onRemove: (flow, reason) => this.flowEnded(this.flows4, flow, reason),
    });
    this.flows6 = new FlowTable({
      capacity: flowOpts.capacity6 ?? DEFAULT_CAPACITY6,
      addrWords: 4,
      allocate: config.allocate,
      timeouts: flowOpts.timeouts,
      hashSeed: seed,
      onRemove: (flow, reason) => this.flowEnded(this.flows6, flow, reason),
    });
    this.ipIds = new IpIdAllocator({ seed });
    this.frags4 = new FragmentFollower({ addrWords: 1 });
    this.frags6 = new FragmentFollower({ addrWords: 4 });
    this.natPortsPerSite = config.egress?.maxPortsPerSite;
    this.icmpLimit = new IcmpRateLimit({ ...config.icmpErrors, hashSeed: seed });
    let pool4: Uint32Array | null = null;
    let pool6: Uint32Array | null = null;
    for (const text of config.egress?.addresses ?? []) {
      const words = new Uint32Array(4);
      const family = parseAddress(text, words);
      if (family === AF_INET4) pool4 ??= words;
      else if (family !== 0) pool6 ??= words;
    }
    this.poolSource4 = pool4;
    this.poolSource6 = pool6;
    this.firewallRules = new Firewall(config.firewall?.rules ?? [], config.firewall?.defaultAction ?? 'allow');
    this.gatewayRules = null;
    this.classifySlots = config.classifySlots ?? DEFAULT_CLASSIFY_SLOTS;
    this.gatewayWords4 = new Uint32Array(this.flows4.capacity);
    this.gatewayWords6 = new Uint32Array(this.flows6.capacity);
    this.setGateway(config.gateway === undefined || config.gateway.rules.length === 0 ? null : new FastGatewayPolicy(config.gateway));
    for (const onramp of config.onramps) this.setOnramp(onramp);
    this.setSites(config.sites ?? []);
    for (const route of config.routes) this.addRoute(route);
    this.sizeShares();
  }

  get firewall(): Firewall {
    return this.firewallRules;
  }

  /** The current policy epoch (see `epoch`). */
  get policyEpoch(): number {
    return this.epoch;
  }

  /** Replaces the rule set and starts a new policy epoch: established flows are decided again at their next packet. */
  setFirewall(firewall: Firewall): void {
    this.firewallRules = firewall;
    this.bumpEpoch();
  }

  /** The gateway rules; null when there are none (then no flow is classified). */
  get gateway(): GatewayRules | null {
    return this.gatewayRules;
  }

  setGateway(gateway: GatewayRules | null): void {
    this.dnsGate.setPolicy(gateway);
    this.gatewayRules = gateway;
    const scans = gateway !== null && gateway.spec.rules.some((r) => (r.dlp ?? []).length > 0);
    if (scans && this.dlp === null) this.dlp = new DlpTracker(this.counters, this.flows4.capacity, this.flows6.capacity);
    // Flows in DLP leave it (their next segment clears FLAG_DLP): their scan belonged to the old rules.
    if (this.dlp !== null) this.dlp.setPolicy(gateway);
    this.bumpEpoch();
  }

  /** Uint32 wrap: a flow idle across exactly 2^32 policy changes would be taken as current (never, in practice). */
  private bumpEpoch(): void {
    this.epoch = (this.epoch + 1) >>> 0;
    if (this.epoch === 0) this.epoch = 1;
    this.onChange?.();
  }

  /**
   * Starts DLP on a TCP flow decided by gateway rule `ruleIndex` (a decide4/decide6 answer): the entry point for
   * whoever decides a flow's gateway rule (flow setup for rules without hostnames; classification for hostname
   * rules, once the name is known). seq0 / seq1: the client's and the server's initial sequence numbers when known,
   * else -1 (the direction's stream then starts at its first data segment seen from now on, so call this before
   * releasing held payload). False when the rule names no profile or the pool is empty (counted: dlpPoolEmpty).
   */
  startDlp(table: FlowTable, flow: number, ruleIndex: number, seq0 = -1, seq1 = -1): boolean {
    if (this.dlp === null || table.protocol(flow) !== IPPROTO_TCP) return false;
    if (!this.dlp.start(DlpTracker.familyOf(table), flow, ruleIndex, seq0, seq1)) return false;
    table.setFlags(flow, table.flags(flow) | FLAG_DLP);
    return true;
  }

  /** The DLP matches recorded for a live flow (profile, detector, direction, offset; never the data). */
  dlpEvents(table: FlowTable, flow: number): readonly DlpEvent[] {
    return this.dlp === null ? NO_DLP_EVENTS : this.dlp.eventsOf(DlpTracker.familyOf(table), flow);
  }

  /** The flow waits in the classifying state for its name (FLAG_CLASSIFYING is the shared gateway-work bit). */
  isClassifying(table: FlowTable, flow: number): boolean {
    return (table.flags(flow) & FLAG_CLASSIFYING) !== 0 && this.classifying.has(flowHandle(table !== this.flows4, flow));
  }

  /**
   * A classified flow's name and its source (SNI, Host), or undefined: the flow was not classified, or no name
   * was found. Kept beside the flow table (only classified flows have one) until the flow ends.
   */
  flowName(table: FlowTable, flow: number): FlowName | undefined {
    return this.names.get(flowHandle(table !== this.flows4, flow));
  }

  /** The gateway's decision word of a live flow (classify.ts: gatewayWordRule, …Source, …Action, …Outcome). */
  gatewayOf(table: FlowTable, flow: number): number {
    return (table === this.flows4 ? this.gatewayWords4 : this.gatewayWords6)[flow];
  }

  private setGatewayOf(table: FlowTable, flow: number, word: number): void {
    (table === this.flows4 ? this.gatewayWords4 : this.gatewayWords6)[flow] = word;
  }

  /** Flows waiting for a name now, and held-packet slots in use. */
  get classifyingFlows(): number {
    return this.classifying.size;
  }

  get classifySlotsInUse(): number {
    return this.classifyPool?.inUse ?? 0;
  }

  setOnramp(spec: OnrampSpec): void {
    this.ports.set(spec);
    const quota = spec.maxFlows ?? QUOTA_AUTO;
    this.flows4.setQuota(spec.id, quota);
    this.flows6.setQuota(spec.id, quota);
    this.onChange?.();
  }

  /**
   * Fair shares (docs/FLOW-MODEL.md): sizes the automatic quotas for the onramps and sites configured now —
   * per onramp, its share of each flow table; per site, its share of each pool address's ports and of the
   * fragment hold slots. Run on the slow path whenever ports.version moved (an onramp set or removed, by
   * whichever caller), so no caller has to remember it.
   */
  sizeShares(): void {
    const ports = this.ports;
    this.sharesVersion = ports.version;
    const onramps = ports.onrampCount;
    const sites = ports.siteCount;
    this.flows4.setAutoQuota(onramps > 1 ? fairShare(this.flows4.capacity, onramps) : 0);
    this.flows6.setAutoQuota(onramps > 1 ? fairShare(this.flows6.capacity, onramps) : 0);
    if (this.snat !== null) this.snat.setSiteQuota({ sites, maxPorts: this.natPortsPerSite });
    this.frags4.setSiteShare(sites);
    this.frags6.setSiteShare(sites);
  }

  /**
   * Replaces every site's failover policy (a site not listed follows). Established flows read the policy per
   * packet, so the change applies to them at once.
   */
  setSites(sites: readonly SiteSpec[]): void {
    this.ports.setSites(sites);
    this.onChange?.();
  }

  setOnrampUp(id: number, up: boolean): void {
    this.ports.setUp(id, up);
    this.routes.setPortUp(id, up);
    this.onChange?.();
  }

  /**
   * May the native flow cache (native/src/flow_cache.h) forward the next packets of flow node `node` (IPv4 table)
   * arriving on `ingress` without this pipeline? Yes when forwardChunk's established path would take every one of
   * them and rewrite each the same way: a live, ASSURED UDP or ICMP flow (TCP's tracker checks every segment),
   * owned by the arrival port's site, not on a port whose site may move the return onramp, no hairpin filter, no
   * gateway work, no hairpin, a reply only with ARR, decided under the current policy epoch, and no lanes (a packet
   * may belong to another lane). A direction whose IPv4 ids are renumbered (FLAG_RENUMBER: a new id per packet) is
   * offloadable for its packets with DF set only (renumbers(): RFC 6864 section 4 leaves an atomic datagram's id
   * alone): OFFLOAD_DF_ONLY. What varies per packet (TTL, header checksum, DF, offload flags) the cache checks
   * itself; what these conditions read changes only through the calls that fire onChange, or when the flow ends
   * (onFlowEnd). Returns OFFLOAD_NO, OFFLOAD_ANY or OFFLOAD_DF_ONLY.
   */
  offloadable(node: number, ingress: number): number {
    const table = this.flows4;
    const flow = node >> 1;
    const dir = node & 1;
    if (this.lanes !== null || !table.isLive(flow) || !table.isAssured(flow)) return OFFLOAD_NO;
    const protocol = table.protocol(flow);
    if (protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMP) return OFFLOAD_NO;
    const ports = this.ports;
    if (ports.site[ingress] !== ports.site[dir === 0 ? table.ingressPort(flow) : table.nextHop(flow)]) return OFFLOAD_NO;
    const ret = table.returnPort(flow);
    if (dir === 0 ? ingress !== ret || ports.steerable[ingress] !== 0 : ports.steerable[ret] !== 0) return OFFLOAD_NO;
    const flags = table.flags(flow);
    if ((flags & (FLAG_FILTERED | FLAG_GATEWAY_WORK | FLAG_HAIRPIN)) !== 0 || (dir === 1 && (flags & FLAG_ARR) === 0)) return OFFLOAD_NO;
    if (table.policyEpoch(flow) !== this.epoch) return OFFLOAD_NO;
    return dir === 0 && (flags & FLAG_RENUMBER) !== 0 ? OFFLOAD_DF_ONLY : OFFLOAD_ANY;
  }

  /**
   * An onramp's health state (docs/HEALTH.md): routes over it take priorityPenalty(state) (+500,000 degraded,
   * +1,000,000 down), so new flows move to the best healthy path; a down onramp is also not up, so ARR replies
   * and flows recorded for it go to the best healthy onramp of its site (setOnrampUp).
   */
  setOnrampHealth(id: number, state: HealthState): void {
    this.routes.setPortPenalty(id, priorityPenalty(state));
    this.setOnrampUp(id, state !== 'down');
  }

  addRoute(spec: RouteSpec): number {
    if (spec.kind === NextHopKind.Internet && this.snat === null) {
      throw new RangeError(`route ${spec.prefix}: leads to the Internet but no egress pool is configured (egress.addresses)`);
    }
    if (spec.kind === NextHopKind.Onramp && (spec.port === undefined || this.ports.configured[spec.port] !== 1 || spec.port === PORT_INTERNET)) {
      throw new RangeError(`route ${spec.prefix}: next hop onramp ${spec.port} is not configured`);
    }
    return this.routes.add(spec);
  }

  /** Forwards every packet of the batch: fills nextHop and drop for each. */
  process(batch: PacketBatch, now: number): void {
    this.now = now;
    this.generated.clear();
    if (this.lanes !== null) this.lanes.count = 0;
    const n = batch.count;
    this.metaBatch = batch;
    for (let start = 0; start < n; start += PREFETCH_CHUNK) {
      const end = Math.min(n, start + PREFETCH_CHUNK);
      this.prefetch(batch, start, end);
      if (this.fastPath && !this.ownPackets) this.forwardChunk(batch, start, end, now);
      else this.walkChunk(batch, start, end, now);
    }
    this.metaBatch = this.metaScratch;
    this.metaIndex = 0;
    // Reply links create() deferred (FlowTable.flushLinks): the tables are whole again between calls.
    this.flows4.flushLinks();
    this.flows6.flushLinks();
  }

  /**
   * Forwards packets the edge itself originated into a port as if they came out of it (a tunnel's ICMP
   * fragmentation-needed / packet-too-big, which must be matched to the flow and translated back like any
   * error from the site side: src/daemon/transports/tunnel-mtu.ts). Everything applies as in process() but the
   * port's source filter: a WireGuard peer's allowed IPs say which sources the peer may send from, and these
   * packets never came from the peer (no peer can put a packet into this batch).
   */
  processOwn(batch: PacketBatch, now: number): void {
    this.ownPackets = true;
    try {
      this.process(batch, now);
    } finally {
      this.ownPackets = false;
      // The edge's own packets (ICMP errors: matched, never set up) are nobody else's: none is listed for a handoff.
      if (this.lanes !== null) this.lanes.count = 0;
    }
  }

  /**
   * Memory-level parallelism: at 1 M flows every lookup misses the cache (and the TLB) twice, on
   * the bucket and on the flow record, and one packet's misses wait for each other. Walking the
   * packets first and reading each one's bucket, then its head record, in independent loads lets the CPU
   * overlap the misses of many packets (FlowTable.lookupChunk4); the lookups themselves then compare keys
   * on lines in cache, and only a packet whose head is another key reads the next record (again all of
   * them in one loop). Only the common case is looked up ahead (plain 20-byte IPv4 header, UDP or TCP, not
   * a fragment); the rest simply is not, and nothing here decides anything.
   *
   * Each packet's result is kept as its hint, which forwardChunk() and forward() take instead of
   * hashing and walking the chain again (hinted() says when it still holds). A packet that found no flow is
   * a setup to come: its source endpoint's NAT mapping bucket and head record are fetched the same way, so
   * the mapping lookup of every setup in the chunk overlaps too.
   */
  private prefetch(batch: PacketBatch, start: number, end: number): void {
    const data = batch.data;
    const slots = this.prefetchSlots;
    const buckets = this.prefetchBuckets;
    const hints = this.prefetchHints;
    const tuple = this.prefetchTuples;
    const zoneOf = this.ports.zone;
    const configured = this.ports.configured;
    const table = this.flows4;
    const count = end - start;
    for (let i = start; i < end; i++) {
      const o = batch.offset[i];
      const ingress = batch.ingress[i];
      let slot = -1;
      if (
        batch.length[i] >= IPV4_MIN_HEADER + L4_PORTS_LENGTH &&
        data[o] === IPV4_PLAIN_VERSION_IHL &&
        ingress <= MAX_ONRAMP_ID &&
        configured[ingress] === 1 &&
        (data[o + IPV4_FLAGS_FRAGMENT] & IPV4_MF_AND_OFFSET_HIGH) === 0 &&
        data[o + IPV4_FLAGS_FRAGMENT + 1] === 0
      ) {
        const protocol = data[o + IPV4_PROTOCOL];
        if (protocol === IPPROTO_UDP || protocol === IPPROTO_TCP) {
          // Kept for the lookups below (FlowTable.lookupChunk4's key words): the bytes are read once.
          const zone = zoneOf[ingress];
          const src = readI32(data, o + IPV4_SRC);
          const dst = readI32(data, o + IPV4_DST);
          const ports = readI32(data, o + IPV4_MIN_HEADER);
          const at = (i - start) * KEY4_WORDS;
          tuple[at + KEY_ZONE_PROTOCOL] = zone | (protocol << KEY_PROTOCOL_SHIFT);
          tuple[at + KEY_PORTS] = ports;
          tuple[at + KEY_SRC] = src;
          tuple[at + KEY_DST] = dst;
          slot = table.bucket4(zone, protocol, src, dst, ports);
        }
      }
      slots[i - start] = slot;
      buckets[i - start] = slot;
      hints[i - start] = HINT_NONE;
    }
    this.prefetchSink ^= table.lookupChunk4(slots, tuple, hints, count);
    const snat = this.snat;
    let setups = 0;
    let mapped = 0;
    for (let k = 0; k < count; k++) {
      const node = hints[k];
      slots[k] = -1;
      // The Internet only answers (decideSetup): a miss from it is no setup and never takes a mapping.
      if (node === HINT_MISS && batch.ingress[start + k] !== PORT_INTERNET) {
        setups++;
        if (snat !== null) {
          const at = k * KEY4_WORDS;
          const key0 = tuple[at + KEY_ZONE_PROTOCOL];
          // The mapping bucket; prefetch() then reads the port bitmap lines a new mapping reads (SnatPool.forecast4).
          slots[k] = snat.forecast4(k, key0 & KEY_ZONE_MASK, key0 >>> KEY_PROTOCOL_SHIFT, tuple[at + KEY_SRC], tuple[at + KEY_PORTS] >>> 16);
          mapped++;
        }
      }
    }
    if (mapped !== 0) this.prefetchSink ^= snat!.prefetch(slots, count);
    // The records the chunk's setups will fill (FlowTable.prefetchFree).
    if (setups !== 0) this.prefetchSink ^= table.prefetchFree(setups);
    this.hintCreations = table.creations;
    this.hintRemovals = table.removals;
    table.markCreations();
  }

  /**
   * process()'s per-packet half for one chunk the pre-pass has looked up (issue 10, item 5): the specialised
   * established path inline, one loop over the chunk, and the general walk (forward()) for every other packet,
   * in packet order. The established path takes a plain IPv4 UDP or TCP packet whose flow the pre-pass found
   * (its hint, still valid: no flow removed since) that needs nothing but what every packet of an established
   * flow gets: the same checks and results as forward() — inspect's validation (lengths, header checksum),
   * TTL > 1, the port's source filter, the owner check, tracking, counters, the translation, the id renumbering,
   * TTL − 1, the next hop, the batch metadata — read straight from the bytes and the record, the header
   * rewritten with one checksum update per checksum field. Anything else leaves the established block
   * (`break established`) before anything is changed or counted, and forward() walks it: a TTL about to expire,
   * a port whose site may move the return onramp (failover), a flow held by its hairpin filter, a reply routed
   * without ARR, a TCP segment that is not a plain ACK on an established flow (a SYN may need its MSS clamped,
   * FIN and RST change state), a packet with a partial checksum (TUN offloads), a malformed one (forward()
   * drops it with its reason).
   *
   * One loop rather than a call per packet: the batch's arrays, the ports' and counters' arrays and the
   * table's records are read from locals set once per chunk (none of them is ever replaced; a packet forward()
   * walks changes their contents, which every packet reads afresh, never the arrays), and the fast-path count
   * is summed per chunk. One checksum update per field equals the chain of updates forward() makes:
   * one's-complement addition is associative, and each term is added only where forward() adds it (a field
   * that changes).
   */
  private forwardChunk(batch: PacketBatch, start: number, end: number, now: number): void {
    const hints = this.prefetchHints;
    const buckets = this.prefetchBuckets;
    const table = this.flows4;
    const rec = table.records;
    const key = this.prefetchTuples;
    const data = batch.data;
    const dataLength = data.length;
    const offsets = batch.offset;
    const lengths = batch.length;
    const ingresses = batch.ingress;
    const vnet = batch.vnet;
    const nextHops = batch.nextHop;
    const drops = batch.drop;
    const ports = this.ports;
    const filterIndex = ports.sourceFilterIndex;
    const site = ports.site;
    const steerable = ports.steerable;
    const counters = this.counters;
    const rxPackets = counters.rxPackets;
    const rxBytes = counters.rxBytes;
    const txPackets = counters.txPackets;
    const txBytes = counters.txBytes;
    const up = ports.up;
    const bestUp = ports.bestUp;
    const family = batch.family;
    const l3Offsets = batch.l3Offset;
    const l4Offsets = batch.l4Offset;
    const protocols = batch.protocol;
    const srcPorts = batch.srcPort;
    const dstPorts = batch.dstPort;
    const tcpFlagsOf = batch.tcpFlags;
    const mssOffsets = batch.mssOffset;
    const flowNodes = batch.flowNode;
    const removals = this.hintRemovals;
    const epoch = this.epoch;
    let fastPackets = 0;
    for (let i = start; i < end; i++) {
      const k = i - start;
      const node = hints[k];
      established: if (node >= 0 && table.removals === removals) {
        const o = offsets[i];
        const length = lengths[i];
        const ingress = ingresses[i];
        if (o + length > dataLength || (vnet[i * VNET_WORDS + VNET_FLAGS] & VNET_F_NEEDS_CSUM) !== 0) break established;
        // inspect4 on a 20-byte header (the pre-pass saw version 4, IHL 5, no fragment, UDP or TCP).
        const totalLength = (data[o + IPV4_TOTAL_LENGTH] << 8) | data[o + IPV4_TOTAL_LENGTH + 1];
        if (totalLength > length || totalLength < IPV4_MIN_HEADER) break established;
        // The addresses and ports as the pre-pass read them (prefetchTuples): the packet has not changed since.
        const keyAt = k * KEY4_WORDS;
        let src = key[keyAt + KEY_SRC] >>> 0;
        let dst = key[keyAt + KEY_DST] >>> 0;
        // ipv4HeaderSumWithAddrs (wire/checksum.ts), written out for the inlining budget (see the rewrite below).
        let sum =
          ((data[o] << 8) | data[o + 1]) + ((data[o + 2] << 8) | data[o + 3]) + ((data[o + 4] << 8) | data[o + 5]) +
          ((data[o + 6] << 8) | data[o + 7]) + ((data[o + 8] << 8) | data[o + 9]) + ((data[o + 10] << 8) | data[o + 11]) +
          (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff);
        sum = (sum & 0xffff) + (sum >>> 16);
        sum = (sum & 0xffff) + (sum >>> 16);
        const ttl = data[o + IPV4_TTL];
        if (sum !== CHECKSUM_OK || ttl <= 1) break established;
        const protocol = key[keyAt + KEY_ZONE_PROTOCOL] >>> KEY_PROTOCOL_SHIFT;
        const l4 = o + IPV4_MIN_HEADER;
        const avail = totalLength - IPV4_MIN_HEADER;
        const isTcp = protocol === IPPROTO_TCP;
        let tcpFlags = 0;
        let tcpHeaderLength = 0;
        if (isTcp) {
          if (avail < TCP_MIN_HEADER) break established;
          tcpHeaderLength = (data[l4 + TCP_DATA_OFFSET] >>> 4) << 2;
          tcpFlags = data[l4 + TCP_FLAGS];
          if (tcpHeaderLength < TCP_MIN_HEADER || tcpHeaderLength > avail || (tcpFlags & TCP_CLASS_FLAGS) !== TCP_ACK_FLAG) break established;
        } else {
          if (avail < UDP_HEADER) break established;
          const udpLength = (data[l4 + UDP_LENGTH] << 8) | data[l4 + UDP_LENGTH + 1];
          if (udpLength < UDP_HEADER || udpLength > avail) break established;
        }
        const filter = filterIndex[ingress];
        if (filter !== 0) {
          this.fastAddr[SRC] = src;
          if (ports.sourceFilters[filter - 1]!.lookupWords(AF_INET4, this.fastAddr, SRC, ingress) !== ingress) break established;
        }
        const flow = node >> 1;
        const dir = (node & 1) as 0 | 1;
        if (site[ingress] !== site[dir === 0 ? table.ingressPort(flow) : table.nextHop(flow)]) break established;
        const ret = table.returnPort(flow);
        if (dir === 0 ? ingress !== ret || steerable[ingress] !== 0 : steerable[ret] !== 0) break established;
        const flags = table.flags(flow);
        // The gateway's work (classifying, DLP, DNS queries) and a held hairpin take the general walk.
        if ((flags & (FLAG_FILTERED | FLAG_GATEWAY_WORK)) !== 0 || (dir === 1 && (flags & FLAG_ARR) === 0)) break established;
        if (isTcp && table.state(flow) !== TcpState.Established) break established;
        // Policy epochs: a flow decided under an older policy is decided again by forwardOnFlow (one compare here).
        if (table.policyEpoch(flow) !== epoch) break established;

        fastPackets++;
        rxPackets[ingress]++;
        rxBytes[ingress] += length;
        const portsWord = key[keyAt + KEY_PORTS];
        let srcPort = portsWord >>> 16;
        let dstPort = portsWord & 0xffff;
        if (isTcp) {
          const verdict = table.trackTcp(
            flow, dir, tcpFlags, readU32(data, l4 + TCP_SEQ), readU32(data, l4 + TCP_ACK),
            (data[l4 + TCP_WINDOW] << 8) | data[l4 + TCP_WINDOW + 1], avail - tcpHeaderLength, -1, now,
          );
          if (verdict !== Drop.None) {
            // As forward() records a packet the tracker refused: as it arrived, no flow.
            recordPlain4(batch, i, o, protocol, srcPort, dstPort, tcpFlags, -1);
            this.finish(batch, i, -verdict);
            continue;
          }
          table.count(flow, dir, length);
        } else {
          // touch() and count() in one (FlowTable.touchCount).
          table.touchCount(flow, dir, now, length);
        }

        // The rewrite: translate (from the other node), renumber, TTL − 1, as forward() does them, one checksum update
        // each: for every changed 16-bit word the term ~old + new (RFC 1624 eqn 3), summed, then applied once. The
        // arithmetic and the byte stores are written out here instead of calling wire/checksum.ts's wordDelta,
        // word32Delta, checksumAdjust and wire/bytes.ts's read16/write16/write32 (the same formulas): V8 inlines at
        // most ~920 bytes of bytecode into one optimised function, this loop used that up before reaching them, and
        // each stayed a call — a dozen calls per packet (`node --trace-turbo-inlining`).
        let ipDelta = 0;
        let l4Delta = 0;
        if ((flags & FLAG_TRANSLATE) !== 0) {
          // The other node's key, ends swapped: one address index for its three words (an IPv4 table: dst follows src).
          const other = node ^ 1;
          const at = table.srcIndex(other);
          const newSrc = rec[at + 1];
          const newDst = rec[at];
          const otherPorts = table.nodePorts(other);
          const newSrcPort = otherPorts & 0xffff;
          const newDstPort = otherPorts >>> 16;
          if (src !== newSrc) {
            const d = (~src & 0xffff) + ((~src >>> 16) & 0xffff) + (newSrc & 0xffff) + (newSrc >>> 16);
            data[o + IPV4_SRC] = newSrc >>> 24;
            data[o + IPV4_SRC + 1] = newSrc >>> 16;
            data[o + IPV4_SRC + 2] = newSrc >>> 8;
            data[o + IPV4_SRC + 3] = newSrc;
            ipDelta += d;
            l4Delta += d;
            src = newSrc;
          }
          if (dst !== newDst) {
            const d = (~dst & 0xffff) + ((~dst >>> 16) & 0xffff) + (newDst & 0xffff) + (newDst >>> 16);
            data[o + IPV4_DST] = newDst >>> 24;
            data[o + IPV4_DST + 1] = newDst >>> 16;
            data[o + IPV4_DST + 2] = newDst >>> 8;
            data[o + IPV4_DST + 3] = newDst;
            ipDelta += d;
            l4Delta += d;
            dst = newDst;
          }
          if (srcPort !== newSrcPort) {
            data[l4 + TCP_SRC_PORT] = newSrcPort >>> 8; // the same offsets in UDP
            data[l4 + TCP_SRC_PORT + 1] = newSrcPort;
            l4Delta += (~srcPort & 0xffff) + newSrcPort;
            srcPort = newSrcPort;
          }
          if (dstPort !== newDstPort) {
            data[l4 + TCP_DST_PORT] = newDstPort >>> 8;
            data[l4 + TCP_DST_PORT + 1] = newDstPort;
            l4Delta += (~dstPort & 0xffff) + newDstPort;
            dstPort = newDstPort;
          }
        }
        // renumbers(): never a fragment here, so only DF decides (RFC 6864 section 4).
        if ((flags & (dir === 0 ? FLAG_RENUMBER : FLAG_HAIRPIN)) !== 0 && (data[o + IPV4_FLAGS_FRAGMENT] & (IPV4_FLAG_DF >>> 8)) === 0) {
          const id = this.ipIds.next4(src | 0, dst | 0, protocol);
          const old = (data[o + IPV4_ID] << 8) | data[o + IPV4_ID + 1];
          if (old !== id) {
            data[o + IPV4_ID] = id >>> 8;
            data[o + IPV4_ID + 1] = id;
            ipDelta += (~old & 0xffff) + id;
          }
        }
        data[o + IPV4_TTL] = ttl - 1;
        ipDelta += (~(ttl << TTL_WORD_SHIFT) & 0xffff) + ((ttl - 1) << TTL_WORD_SHIFT);
        // checksumAdjust: HC' = ~(~HC + delta), folded; delta is a few terms under 2^17 each, so no 32-bit overflow.
        let ipSum = (~((data[o + IPV4_CHECKSUM] << 8) | data[o + IPV4_CHECKSUM + 1]) & 0xffff) + ipDelta;
        ipSum = (ipSum & 0xffff) + (ipSum >>> 16);
        ipSum = ~((ipSum & 0xffff) + (ipSum >>> 16)) & 0xffff;
        data[o + IPV4_CHECKSUM] = ipSum >>> 8;
        data[o + IPV4_CHECKSUM + 1] = ipSum;
        if (l4Delta !== 0) {
          const at = l4 + (isTcp ? TCP_CHECKSUM : UDP_CHECKSUM);
          const old = (data[at] << 8) | data[at + 1];
          // UDP: 0 is "no checksum" and stays; a computed 0 is sent as 0xFFFF (RFC 768).
          if (isTcp || old !== 0) {
            let c = (~old & 0xffff) + l4Delta;
            c = (c & 0xffff) + (c >>> 16);
            c = ~((c & 0xffff) + (c >>> 16)) & 0xffff;
            if (c === 0 && !isTcp) c = 0xffff;
            data[at] = c >>> 8;
            data[at + 1] = c;
          }
        }
        this.lastNode = this.packetNode = node;
        // recordPlain4() and ports.deliverable(), written out for the inlining budget.
        family[i] = AF_INET4;
        l3Offsets[i] = o;
        l4Offsets[i] = l4;
        protocols[i] = protocol;
        srcPorts[i] = srcPort;
        dstPorts[i] = dstPort;
        tcpFlagsOf[i] = tcpFlags;
        mssOffsets[i] = 0;
        flowNodes[i] = node;
        const to = dir === 0 ? table.nextHop(flow) : ret;
        const best = up[to] === 1 ? 0 : bestUp[site[to]];
        // finish() for a port.
        const hop = best !== 0 ? best : to;
        nextHops[i] = hop;
        drops[i] = Drop.None;
        txPackets[hop]++;
        txBytes[hop] += length;
        continue;
      }
      this.metaIndex = i;
      this.hint = node;
      this.hintBucket = buckets[k];
      const hop = this.forward(data, offsets[i], lengths[i], ingresses[i], now);
      // finish(): a port here, the rest there (less for V8 to inline: a setup passes here every packet).
      if (hop >= 0) {
        nextHops[i] = hop;
        drops[i] = Drop.None;
        txPackets[hop]++;
        txBytes[hop] += lengths[i];
      } else {
        this.finish(batch, i, hop);
      }
    }
    counters.fastPathPackets += fastPackets;
  }

  /**
   * The general walk (forward()) for every packet of a chunk, with its pre-pass hint: processOwn(), and every
   * packet while `fastPath` is off. Its own function, so that forwardChunk's inlining budget goes to the
   * established path (V8 inlines by call frequency, and the bench's general-walk rounds would make this hot).
   */
  private walkChunk(batch: PacketBatch, start: number, end: number, now: number): void {
    const hints = this.prefetchHints;
    const buckets = this.prefetchBuckets;
    for (let i = start; i < end; i++) {
      this.metaIndex = i;
      this.hint = hints[i - start];
      this.hintBucket = buckets[i - start];
      this.finish(batch, i, this.forward(batch.data, batch.offset[i], batch.length[i], batch.ingress[i], now));
    }
  }

  /** Fills this.key from the inspected packet, keyed in `zone` (setup reads it), and looks it up, by its hint when that holds. */
  private lookupKey(table: FlowTable, zone: number, hint: number): number {
    const info = this.info;
    const key = this.key;
    key.zone = zone;
    key.protocol = info.protocol;
    key.srcPort = info.srcPort;
    key.dstPort = info.dstPort;
    copyAddrs(key, info.addr);
    // Any pre-pass hint (hit or miss) came with this packet's bucket (prefetch: bucket4 of the same zone and words).
    const prepassed = hint !== HINT_NONE && table === this.flows4;
    this.keyBucket = prepassed ? this.hintBucket : -1;
    return prepassed ? this.hinted(hint, key) : table.lookup(key);
  }

  /**
   * The lookup of the packet being forwarded, from its pre-pass hint (prefetch()) when that still holds: a
   * hit while no flow was removed since (its node may have been freed and reused), a miss while no flow
   * created since filed a node into the packet's bucket (an earlier packet of the chunk may have set it up;
   * FlowTable.createdInto). Otherwise the table is asked again.
   */
  private hinted(hint: number, key: FlowKey): number {
    const table = this.flows4;
    if (hint >= 0 ? table.removals === this.hintRemovals : table.creations === this.hintCreations || !table.createdInto(this.hintBucket)) return hint;
    return table.lookup(key);
  }

  /**
   * Ends at once every flow that names one of `ports` (onramps just removed) as where it came from, where its
   * replies go or where it is forwarded; each is counted in flowsEnded and reported to onFlowEnd with
   * RemoveReason.OnrampRemoved. Control plane: scans both flow tables. Returns the number of flows ended.
   */
  endFlowsOf(ports: readonly number[]): number {
    if (ports.length === 0) return 0;
    const mask = new Uint8Array(PORT_SPACE);
    for (const p of ports) if (p !== PORT_INTERNET) mask[p] = 1;
    const ended = this.flows4.removePorts(mask) + this.flows6.removePorts(mask);
    this.counters.flowsEndedByRemoval += ended;
    this.onChange?.();
    return ended;
  }

  /**
   * Ends flows whose time is up, and early fragments that waited too long; `budget` bounds the work. Flows that
   * waited classify.wait_ms for a name get their rule's fallback here too: the packets that releases or the resets
   * it sends are in `generated` afterwards (drain it, as after process()).
   */
  expire(now: number, budget = 4096): number {
    this.now = now;
    this.expireClassifying(now);
    const ended = this.flows4.expire(now, budget) + this.flows6.expire(now, budget);
    const timedOut = this.frags4.expire(now) + this.frags6.expire(now);
    this.counters.drops[Drop.FragmentTimeout] += timedOut;
    return ended;
  }

  private finish(batch: PacketBatch, i: number, hop: number): void {
    if (hop >= 0) {
      batch.nextHop[i] = hop;
      batch.drop[i] = Drop.None;
      this.counters.txPackets[hop]++;
      this.counters.txBytes[hop] += batch.length[i];
    } else {
      batch.nextHop[i] = NEXT_HOP_DROP;
      if (hop === HELD || hop === CONSUMED) {
        batch.drop[i] = Drop.None;
      } else if (hop === HANDED) {
        batch.drop[i] = Drop.None;
        this.lanes!.handTo(i, this.handLane);
      } else {
        batch.drop[i] = -hop;
        this.countDrop(batch.ingress[i], -hop);
      }
    }
  }

  private countDrop(ingress: number, reason: number): void {
    this.counters.drops[reason]++;
    this.counters.rxDrops[ingress]++;
  }

  /**
   * One packet: returns the port to send it to, or a negative Drop reason (or HELD).
   * The packet is rewritten in place.
   */
  forward(buf: Uint8Array, offset: number, length: number, ingress: number, now: number): number {
    const hint = this.hint;
    this.hint = HINT_NONE;
    if (ingress > MAX_ONRAMP_ID || this.ports.configured[ingress] !== 1) return -Drop.UnknownPort;
    this.packetNode = -1;
    this.counters.rxPackets[ingress]++;
    this.counters.rxBytes[ingress] += length;
    const info = this.info;
    const bad = inspect(buf, offset, length, info);
    if (bad !== Drop.None) return -bad;
    // A packet from a TUN with offloads may carry a partial L4 checksum (and be a GSO super-packet: one lookup and
    // one rewrite for all its segments; the lengths are the whole's, as the kernel gives them). The rewrites keep
    // the partial field right (rewrite.ts); whoever sends the packet completes it.
    info.csumPartial = (this.metaBatch.vnet[this.metaIndex * VNET_WORDS + VNET_FLAGS] & VNET_F_NEEDS_CSUM) !== 0;
    // Before the TTL check: a packet addressed to the edge itself is delivered, not forwarded.
    const local = this.ports.localIndex[ingress];
    if (local !== 0) {
      const hop = this.forwardLocal(buf, ingress, local - 1, length, now);
      if (hop !== NOT_LOCAL) return this.recorded(hop);
    }
    // RFC 1812 section 5.3.1: a router must not forward a packet whose TTL would reach zero; it tells the sender.
    if (info.ttl <= 1) return this.timeExceeded(buf, ingress, now);
    if (!this.ownPackets && this.sourceRefused(ingress, info)) return -Drop.SourceNotAllowed;
    const zone = this.ports.zone[ingress];
    if (info.isIcmpError) return this.recorded(this.forwardIcmpError(buf, ingress, zone, length));
    if (!info.hasTransportHeader) return this.recorded(this.forwardLaterFragment(buf, offset, length, ingress, zone, now));

    const isFirstFragment = info.isFragment;
    if (isFirstFragment) {
      this.fragAddr.set(info.addr);
      this.fragId = info.fragmentId;
      this.fragNewId = -1;
    }
    const table = info.family === AF_INET4 ? this.flows4 : this.flows6;
    // The pre-pass found the flow and none was removed since: no key to build (forwardOnFlow reads info).
    const node = hint >= 0 && table === this.flows4 && table.removals === this.hintRemovals ? hint : this.lookupKey(table, zone, hint);
    if (node < 0 && this.isEchoRequestToPool(info)) return this.recorded(this.answerEcho(buf, ingress));
    if (node < 0 && this.lanes !== null && ingress !== PORT_INTERNET && this.handsOver(this.lanes.ownerOfMiss(info, zone), ingress, length)) {
      if (isFirstFragment) this.firstFragmentHanded(zone, this.handLane, now);
      return HANDED;
    }
    const hop = node >= 0
      ? this.forwardOnFlow(buf, table, node, ingress, length, now)
      : this.setupFlow(buf, table, ingress, zone, length, now);
    // Only a SYN carries an MSS option (inspect looks for it on SYNs only): one compare for every other packet.
    if (info.tcpMssOffset !== 0 && hop >= 0) this.clampMss(buf, ingress, hop);
    this.recorded(hop);
    if (isFirstFragment && hop >= 0) this.followFragments(zone, info.protocol, this.fragId, info.family);
    return hop;
  }

  /**
   * ICMP echo between the site and the edge's own tunnel address (OnrampSpec.localAddress, slot `slot`), which
   * never enters flow setup: a reply from this onramp is offered to the health engine (its probe's reply is
   * CONSUMED and counted there; a late or forged one too), an echo request is answered in place and sent back
   * into the tunnel it came from (RFC 792; RFC 4443 section 4.2) and counted as the site's probe. Anything else
   * is NOT_LOCAL and walks on. Allocation-free: typed-array compares and an in-place rewrite.
   */
  private forwardLocal(buf: Uint8Array, ingress: number, slot: number, length: number, now: number): number {
    const info = this.info;
    const family = this.ports.localFamily[slot];
    if (info.family !== family || !info.hasTransportHeader || info.isIcmpError) return NOT_LOCAL;
    const v4 = family === AF_INET4;
    if (info.protocol !== (v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6)) return NOT_LOCAL;
    const type = info.icmpType;
    const isReply = type === (v4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY);
    if (!isReply && type !== (v4 ? ICMP4_ECHO_REQUEST : ICMP6_ECHO_REQUEST)) return NOT_LOCAL;
    const words = this.ports.localWords;
    const at = slot * LOCAL_SLOT_WORDS;
    const n = v4 ? 1 : 4;
    for (let w = 0; w < n; w++) if (info.addr[DST + w] !== words[at + w]) return NOT_LOCAL;
    if (this.sourceRefused(ingress, info)) return -Drop.SourceNotAllowed;
    // Lanes: the health checks run on lane 0 (its engine has the probe in flight and counts the site's probes). An
    // echo the kernel gave another lane (an interconnect's queue is picked by hash once the TUN forgot lane 0's
    // write) goes to lane 0, which decides it as here; a packet handed in is never handed on.
    const lanes = this.lanes;
    if (lanes !== null && lanes.self !== 0 && !lanes.handedIn && this.handsOver(0, ingress, length)) return HANDED;
    if (isReply) {
      if (this.health.receiveInspected(ingress, info, buf, now) === REPLY_NOT_OURS) return NOT_LOCAL;
      this.counters.healthEvidence++;
      return CONSUMED;
    }
    this.counters.healthEvidence++;
    if (v4) echoReplyInPlace(buf, info.l3Offset, info.l4Offset - info.l3Offset, info.l4Offset);
    else echoReplyInPlace6(buf, info.l3Offset, info.l4Offset);
    this.health.siteProbeAnswered(ingress, now);
    return ingress;
  }

  /**
   * An ICMP echo request to an egress pool address (the edge's own public address, RFC 1122 section 3.2.2.6: every
   * host answers echo). Asked only once the flow lookup missed: a pool address is also the NAT destination of
   * replies, and an echo a flow owns (a site's ping through the pool) is that flow's, never answered here.
   */
  isEchoRequestToPool(info: PacketInfo): boolean {
    if (this.snat === null || !info.hasTransportHeader) return false;
    const v4 = info.family === AF_INET4;
    if (info.protocol !== (v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6) || info.icmpType !== (v4 ? ICMP4_ECHO_REQUEST : ICMP6_ECHO_REQUEST)) return false;
    return this.isPoolDestination(info);
  }

  /** Answers the inspected echo request in place and sends it back where it came from; no flow, no NAT state. */
  private answerEcho(buf: Uint8Array, ingress: number): number {
    const info = this.info;
    if (info.family === AF_INET4) echoReplyInPlace(buf, info.l3Offset, info.l4Offset - info.l3Offset, info.l4Offset);
    else echoReplyInPlace6(buf, info.l3Offset, info.l4Offset);
    // The reply's own inspection for the batch metadata: addresses swapped, type changed.
    inspect(buf, info.l3Offset, info.ipLength, info);
    this.counters.icmpEchoAnswered++;
    return ingress;
  }

  /**
   * A DNS query of a FLAG_DNS flow (or one setting up), the firewall passed: the gateway reads and decides it
   * (dns-gate.ts). A block or override is answered from preallocated space, pushed into `generated` toward the
   * onramp the query came in on, and the query is CONSUMED; otherwise NOT_ANSWERED and the query walks on.
   */
  private gatewayDns(buf: Uint8Array, ingress: number): number {
    const gate = this.dnsGate;
    const c = this.counters;
    const n = gate.inspect(buf, this.info, this.ports.site[ingress], ingress);
    if (n === DNS_UNPARSED) {
      c.gatewayDnsUnparsed++;
      return NOT_ANSWERED;
    }
    c.gatewayDnsQueries++;
    const policy = this.gatewayRules;
    if (gate.rule >= 0 && policy !== null) c.gatewayRuleHits[policy.rule(gate.rule).id]++;
    if (n > 0 || (gate.rule >= 0 && policy !== null && policy.rule(gate.rule).action === 'log')) {
      if (this.onGatewayDns !== null) this.onGatewayDns(gate.event);
    }
    if (n <= 0) return NOT_ANSWERED;
    if (this.pushOwn(gate.out, n, ingress, ingress)) c.gatewayDnsAnswered++;
    else c.gatewayDnsAnswerLost++;
    return CONSUMED;
  }

  /**
   * A packet whose TTL / hop limit would reach zero here (RFC 1812 section 5.3.1): dropped as TtlExceeded, and its
   * sender told with ICMP time exceeded (RFC 792; RFC 1812 section 4.3.2; ICMPv6 type 3 code 0, RFC 4443 section
   * 3.3) unless RFC 1812 section 4.3.2.7 forbids it (an ICMP error, a later fragment, a non-unicast source or
   * destination), the port's source filter refuses the sender, or the sender's or the edge's token bucket is
   * empty (RFC 1812 section 4.3.2.8). An echo request to a pool address is the edge's own and answered instead.
   *
   * The packet is still as it arrived (nothing is translated before the TTL check), so its source is an address of
   * the ingress port's own space: the error goes straight back out of that port, from the edge's address for it
   * (icmpSourceOf), quoting as much of the packet as fits. It creates no flow and no NAT state. Slow path: only
   * packets with TTL ≤ 1 come here, nothing is added before the TTL check; the error is written into a
   * preallocated scratch buffer and pushed into `generated` (no allocation).
   */
  private timeExceeded(buf: Uint8Array, ingress: number, now: number): number {
    const info = this.info;
    if (this.isEchoRequestToPool(info) && !this.ownPackets && !this.sourceRefused(ingress, info)) {
      const key = this.key;
      key.zone = this.ports.zone[ingress];
      key.protocol = info.protocol;
      key.srcPort = info.srcPort;
      key.dstPort = info.dstPort;
      copyAddrs(key, info.addr);
      if ((info.family === AF_INET4 ? this.flows4 : this.flows6).lookup(key) < 0) return this.recorded(this.answerEcho(buf, ingress));
    }
    if (this.ownPackets || !mayReportTimeExceeded(info)) return -Drop.TtlExceeded;
    const v4 = info.family === AF_INET4;
    if (this.sourceRefused(ingress, info)) return -Drop.SourceNotAllowed;
    const source = this.icmpSourceOf(ingress, info.family);
    if (source === null) {
      this.counters.icmpErrorsNoSource++;
      return -Drop.TtlExceeded;
    }
    if (!this.icmpLimit.allow(this.ports.zone[ingress], info.addr, SRC, v4 ? 1 : 4, now)) {
      this.counters.icmpErrorsRateLimited++;
      return -Drop.TtlExceeded;
    }
    const out = this.errorScratch;
    let n: number;
    if (v4) {
      n = writeIcmpError4(out, 0, ICMP4_TIME_EXCEEDED, ICMP_CODE_TTL_EXCEEDED, 0, source[0], info.addr[SRC], buf, info.l3Offset, info.ipLength);
    } else {
      const a = this.errorAddr;
      for (let w = 0; w < 4; w++) {
        a[w] = source[w];
        a[4 + w] = info.addr[SRC + w];
      }
      n = writeIcmpError6(out, 0, ICMP6_TIME_EXCEEDED, ICMP_CODE_TTL_EXCEEDED, 0, a, 0, 4, buf, info.l3Offset, info.ipLength);
    }
    if (this.pushOwn(out, n, ingress, ingress)) this.counters.icmpTimeExceededSent++;
    else this.counters.icmpErrorsRateLimited++;
    return -Drop.TtlExceeded;
  }

  /**
   * The edge's address in the errors it sends out of `port` for packets of `family` (docs/CONFIG.md `icmp_source`):
   * the onramp's icmp_source of that family, else its tunnel address (health_check.source) of that family, else
   * (and always for the Internet egress) the egress pool's first address of that family; null when there is none.
   */
  icmpSourceOf(port: number, family: number): Uint32Array | null {
    const own = port === PORT_INTERNET ? undefined : this.ports.icmpSources.get(port);
    if (family === AF_INET4) return own?.v4 ?? this.poolSource4;
    return own?.v6 ?? this.poolSource6;
  }

  /**
   * The port's source filter (OnrampSpec.allowedSources, a WireGuard peer's allowed IPs): true when the inspected
   * packet's source lies outside it. Ports without a filter accept any source. Explain asks the same question.
   */
  sourceRefused(ingress: number, info: PacketInfo): boolean {
    const filter = this.ports.sourceFilterIndex[ingress];
    return filter !== 0 && this.ports.sourceFilters[filter - 1]!.lookupWords(info.family, info.addr, SRC, ingress) !== ingress;
  }

  /** Records the packet's inspection (as rewritten) into the batch metadata; returns `hop` unchanged. */
  private recorded(hop: number): number {
    this.metaBatch.record(this.metaIndex, this.info);
    this.metaBatch.flowNode[this.metaIndex] = this.packetNode;
    return hop;
  }

  /**
   * MSS clamping (RFC 4459 section 3.2; RFC 9293 section 3.7.1): a SYN or SYN-ACK entering from a tunnel, or
   * leaving toward one, announces at most the MSS the tunnel carries (the lower of the two ports' ceilings),
   * so that neither end sends segments the tunnel would fragment or drop. The checksum is updated incrementally.
   */
  private clampMss(buf: Uint8Array, ingress: number, hop: number): void {
    const ceilings = this.info.family === AF_INET4 ? this.ports.mssCeiling4 : this.ports.mssCeiling6;
    const from = ceilings[ingress];
    const to = ceilings[hop];
    const ceiling = from === 0 ? to : to === 0 || from < to ? from : to;
    if (ceiling !== 0) clampTcpMss(buf, this.info, ceiling);
  }

  /** A packet of an existing flow: the stored decision, no policy, no route lookup. */
  private forwardOnFlow(buf: Uint8Array, table: FlowTable, node: number, ingress: number, length: number, now: number): number {
    const flow = node >> 1;
    const dir = (node & 1) as 0 | 1;
    if (!this.ownsDirection(table, flow, dir, ingress)) return -Drop.FlowOwnerMismatch;
    // Policy epochs (issue 12): one compare; a flow decided under an older policy is decided again, here, once.
    if (table.policyEpoch(flow) !== this.epoch) {
      const cut = this.reevaluate(table, flow, now);
      if (cut !== Drop.None) return -cut;
    }
    const info = this.info;
    let flags = table.flags(flow);
    if ((flags & FLAG_CLASSIFYING) !== 0 && info.protocol === IPPROTO_TCP) {
      const l3 = info.l3Offset;
      this.released = false;
      const held = this.classifySegment(buf, table, flow, dir, ingress, length);
      if (held !== CLASSIFY_PASS) return held;
      if (!table.isLive(flow)) return -Drop.GatewayBlocked;
      if (this.released) {
        // Held packets walked the pipeline (forward() re-entered) and left this.info describing the last of them.
        inspect(buf, l3, length, info);
        info.csumPartial = (this.metaBatch.vnet[this.metaIndex * VNET_WORDS + VNET_FLAGS] & VNET_F_NEEDS_CSUM) !== 0;
      }
      flags = table.flags(flow);
    }
    // Site failover: the site's policy may move the return onramp (steerReturn). Nothing can move it while
    // the packet is a reply or came in on it, unless its site drains and it is not the site's best healthy
    // onramp (ports.steerable): the common case costs a compare and one byte. Decided before this packet
    // refreshes the flow (drain measures the idle time the packet ends), applied once the flow accepts it.
    const steerable = this.ports.steerable;
    const decided = (dir === 0 ? ingress !== table.returnPort(flow) || steerable[ingress] !== 0 : steerable[table.returnPort(flow)] !== 0)
      ? this.decideReturnNow(table, flow, dir, ingress, now)
      : -1;
    if (info.protocol === IPPROTO_TCP) {
      const verdict = table.trackTcp(flow, dir, info.tcpFlags, info.tcpSeq, info.tcpAck, info.tcpWindow, info.tcpPayloadLength, info.tcpWindowScale, now);
      if (verdict !== Drop.None) return -verdict;
    } else {
      table.touch(flow, dir, now);
    }
    if (decided >= 0) this.steerReturn(table, flow, decided);
    if ((flags & FLAG_FILTERED) !== 0) {
      // A hairpin the peer has not admitted (FLAG_FILTERED): the sender's packets keep its mapping alive but
      // stop here; the peer's first packet toward it is its contact and admits the flow (RFC 4787 REQ-8).
      // Lanes: both ends' first packets may have been set up at once on two lanes, each waiting for the other's: a
      // held packet whose conversation another lane claimed since goes there, where it admits that lane's flow.
      if (heldByFilter(flags, dir)) return this.lanes !== null && this.handsOver(this.lanes.ownerOfHeld(info), ingress, length) ? HANDED : -Drop.HairpinFiltered;
      flags &= ~FLAG_FILTERED;
      table.setFlags(flow, flags);
    }
    // FLAG_DLP is the gateway-work bit: a flow still classifying is not DLP's yet (DLP starts at its decision).
    if ((flags & FLAG_DLP) !== 0 && info.protocol === IPPROTO_TCP && (this.classifying.size === 0 || !this.classifying.has(flowHandle(table !== this.flows4, flow)))) {
      const verdict = this.dlp === null
        ? DLP_DONE
        : this.dlp.segment(DlpTracker.familyOf(table), flow, dir, info.tcpSeq, buf, info.l4Offset + info.tcpHeaderLength, info.tcpPayloadLength, (info.tcpFlags & TCP_SYN) !== 0, (info.tcpFlags & TCP_FIN) !== 0);
      if (verdict === DLP_REORDER) return -Drop.DlpReorder;
      if (verdict === DLP_CUT) return this.cutByDlp(buf, table, node, ingress);
      if (verdict === DLP_DONE) table.setFlags(flow, (flags &= ~FLAG_DLP));
    }
    table.count(flow, dir, length);
    if ((flags & FLAG_DNS) !== 0 && dir === 0 && this.dnsGate.active) {
      const answered = this.gatewayDns(buf, ingress);
      if (answered !== NOT_ANSWERED) return answered;
    }
    if ((flags & FLAG_TRANSLATE) !== 0) this.translate(buf, table, node ^ 1);
    if (renumbers(flags, dir, info)) this.renumber(buf, node);
    decrementTtl(buf, info);
    this.lastNode = this.packetNode = node;
    return this.hopFor(table, flow, dir, ingress);
  }

  /**
   * A `block` DLP profile matched in the bytes this segment completed (docs/POLICY.md "DLP profiles"): the segment
   * is dropped, its sender gets a reset as from its peer, its receiver a reset in the segment's place
   * (src/wire/tcp-reset.ts), and the flow ends (RemoveReason.DlpCut). The sender's reset is written from the
   * segment as it arrived, the receiver's from it translated as the flow would have sent it on.
   */
  private cutByDlp(buf: Uint8Array, table: FlowTable, node: number, ingress: number): number {
    const info = this.info;
    const flow = node >> 1;
    const dir = (node & 1) as 0 | 1;
    this.pushOwn(this.resetScratch, writeResetToSender(this.resetScratch, 0, info), ingress, ingress);
    if ((table.flags(flow) & FLAG_TRANSLATE) !== 0) this.translate(buf, table, node ^ 1);
    const hop = this.hopFor(table, flow, dir, ingress);
    // The segment is dropped: the receiver still expects its first byte (RCV.NXT = SEG.SEQ; it is in order, DLP saw
    // every byte before it).
    if (hop >= 0) this.pushOwn(this.resetScratch, writeResetToReceiver(this.resetScratch, 0, info, info.tcpSeq), hop, hop);
    table.delete(flow, RemoveReason.DlpCut);
    return -Drop.DlpBlocked;
  }

  /**
   * Pushes a packet the edge originates (out[0, n): an ICMP error, a reset, a DNS answer) into `generated`, tagged
   * as come in on `ingress` and bound for `hop`, its inspection recorded and counted as sent on `hop`. False when
   * `generated` is full.
   */
  private pushOwn(out: Uint8Array, n: number, ingress: number, hop: number): boolean {
    const g = this.generated;
    const i = g.push(out, 0, n, ingress);
    if (i < 0) return false;
    const e = this.errorInfo;
    inspect(g.data, g.offset[i], n, e);
    g.record(i, e);
    g.nextHop[i] = hop;
    g.drop[i] = Drop.None;
    this.counters.txPackets[hop]++;
    this.counters.txBytes[hop] += n;
    return true;
  }

  /**
   * Policy epochs (issue 12; docs/POLICY.md, "Epochs"): an established flow decided under an older epoch, met by a
   * packet in either direction, is decided again by the policy as it is now, on its original tuple as the first
   * packet carried it (site, onramp, the pre-NAT addresses and ports: the original node's key):
   *   1. the firewall (a hairpin is asked twice, as at setup: for the pool address and for the internal peer);
   *   2. the gateway, when the firewall allows: first with NameSource.Unknown; a rule waiting for a name
   *      (GATEWAY_NEED_NAME) is then decided with the name classify kept for the flow (flowName), or, when it
   *      kept none (the flow's first payload is gone and cannot be read again), with no name: hostname rules
   *      do not match and the first rule without a hostname condition (or none) decides.
   * Allowed: the flow records the new epoch and the firewall rule that allows it now; its NAT mapping, return
   * onramp and every other decision stay as they are. Blocked: the flow is cut — removed with
   * RemoveReason.PolicyCut (lastCut says which epoch and rule, for the flow log) and this packet dropped as
   * PolicyCut; a TCP flow gets a reset to each end first (resetBoth, as a gateway block); other protocols learn it
   * when their next packet finds no flow.
   * Returns Drop.None or Drop.PolicyCut. Slow path: once per flow and policy change.
   */
  reevaluate(table: FlowTable, flow: number, _now: number): number {
    this.counters.flowsReevaluated++;
    const orig = flow * 2;
    const ingress = table.ingressPort(flow);
    const site = this.ports.site[ingress];
    const protocol = table.protocol(flow);
    const ports = table.nodePorts(orig);
    const srcPort = ports >>> 16;
    const dstPort = ports & 0xffff;
    const words = table.records;
    const v4 = table.addrWords === 1;
    const fw = this.firewallRules;
    let rule = v4
      ? fw.evaluate4(site, ingress, protocol, table.nodeSrc(orig, 0), table.nodeDst(orig, 0), srcPort, dstPort)
      : fw.evaluate6(site, ingress, protocol, words, table.srcIndex(orig), table.dstIndex(orig), srcPort, dstPort);
    if (fw.allows(rule) && (table.flags(flow) & FLAG_HAIRPIN) !== 0) {
      // The internal peer is the reply key's source (translatedReply): the rules for it must allow too.
      const reply = orig + 1;
      const peerPort = table.nodePorts(reply) >>> 16;
      rule = v4
        ? fw.evaluate4(site, ingress, protocol, table.nodeSrc(orig, 0), table.nodeSrc(reply, 0), srcPort, peerPort)
        : fw.evaluate6(site, ingress, protocol, words, table.srcIndex(orig), table.srcIndex(reply), srcPort, peerPort);
    }
    if (!fw.allows(rule)) return this.cut(table, flow, CUT_BY_FIREWALL, fw.ruleId(rule));
    const gw = this.gatewayRules;
    if (gw !== null) {
      let g = v4
        ? gw.decide4(site, ingress, protocol, table.nodeSrc(orig, 0), table.nodeDst(orig, 0), srcPort, dstPort, NameSource.Unknown, null)
        : gw.decide6(site, ingress, protocol, words, table.srcIndex(orig), table.dstIndex(orig), srcPort, dstPort, NameSource.Unknown, null);
      if (g === GATEWAY_NEED_NAME) {
        const named = this.flowName(table, flow);
        const source = named?.source ?? NO_NAME_SOURCE;
        const name = named?.name ?? null;
        g = v4
          ? gw.decide4(site, ingress, protocol, table.nodeSrc(orig, 0), table.nodeDst(orig, 0), srcPort, dstPort, source, name)
          : gw.decide6(site, ingress, protocol, words, table.srcIndex(orig), table.dstIndex(orig), srcPort, dstPort, source, name);
      }
      if (g >= 0 && gw.rule(g).action === 'block') return this.cut(table, flow, CUT_BY_GATEWAY, gw.rule(g).id);
    }
    table.setRuleId(flow, fw.ruleId(rule));
    table.setPolicyEpoch(flow, this.epoch);
    // DNS queries are read while rules read DNS names (FLAG_DNS): a UDP flow toward port 53 follows the new policy.
    if (protocol === IPPROTO_UDP && dstPort === DNS_PORT) {
      table.setFlags(flow, this.dnsGate.active ? table.flags(flow) | FLAG_DNS : table.flags(flow) & ~FLAG_DNS);
    }
    return Drop.None;
  }

  private cut(table: FlowTable, flow: number, layer: number, ruleId: number): number {
    const c = this.lastCut;
    c.epoch = this.epoch;
    c.layer = layer;
    c.ruleId = ruleId;
    this.counters.flowsCutByPolicy++;
    if (table.protocol(flow) === IPPROTO_TCP && table.state(flow) !== TcpState.Close) {
      // A reset to each end, as a gateway block sends (RFC 9293 §3.10.7.1; exact under RFC 5961 §3.2): the
      // server's goes through forward(), which must find the flow current, not cut it again.
      table.setPolicyEpoch(flow, this.epoch);
      this.resetBoth(table, flow, RemoveReason.PolicyCut);
    } else {
      table.delete(flow, RemoveReason.PolicyCut);
    }
    return Drop.PolicyCut;
  }

  /**
   * Ownership of a direction (see the file header): the original direction belongs to the site
   * that started the flow; the reply direction to the site of its next hop (site 0: the Internet).
   */
  private ownsDirection(table: FlowTable, flow: number, dir: number, ingress: number): boolean {
    const site = this.ports.site;
    const owner = dir === 0 ? table.ingressPort(flow) : table.nextHop(flow);
    // Onramps have sites 1..; the Internet egress alone has site 0.
    return site[ingress] === site[owner];
  }

  /**
   * Site failover (issue 8): moves an established flow's return onramp as its site's policy says (ports.ts,
   * FAILOVER_POLICIES) and records why (RETURN_*), for a packet the flow accepted: `decided` is decideReturn's
   * answer, taken before the packet refreshed the flow. Replies then go to ports.deliverable(returnPort): the
   * return onramp while it is up, else the site's best healthy onramp. Only onramps of the flow's own site are ever chosen: the
   * arrival onramp passed the ownership check, and bestUp is the site's. ICMP errors and later fragments
   * never come here: they change no flow (hopFor reads the result).
   */
  private steerReturn(table: FlowTable, flow: number, decided: number): void {
    const next = decided & RETURN_PORT_MASK;
    if (next !== table.returnPort(flow)) {
      table.setReturnPort(flow, next);
      table.setReturnReason(flow, decided >>> RETURN_REASON_SHIFT);
    }
  }

  /** decideReturn for a packet at `now`, the flow's idle time read from the table (before the packet refreshes it). */
  private decideReturnNow(table: FlowTable, flow: number, dir: 0 | 1, ingress: number, now: number): number {
    return this.decideReturn(table, flow, dir, ingress, now - table.lastActive(flow));
  }

  /**
   * steerReturn's decision, changing nothing (explain runs it too): the return onramp a packet of the flow in
   * direction `dir` arriving on `ingress` after `idleMs` of silence leaves behind, with why, as
   * `port | reason << RETURN_REASON_SHIFT`; the stored port and reason when nothing moves.
   */
  decideReturn(table: FlowTable, flow: number, dir: 0 | 1, ingress: number, idleMs: number): number {
    const ports = this.ports;
    const site = ports.site[table.ingressPort(flow)];
    const policy = ports.sitePolicy[site];
    const ret = table.returnPort(flow);
    let next = ret;
    let reason = RETURN_RECORDED;
    if (policy === FAILOVER_FOLLOW) {
      // The site's traffic moved to another of its onramps: replies follow it.
      if (dir === 0) {
        next = ingress;
        reason = RETURN_ARRIVAL;
      }
    } else if (policy === FAILOVER_DRAIN) {
      const best = ports.bestUp[site];
      // Failback only when idle: an active flow is never moved toward a more preferred onramp.
      if (best !== 0 && next !== best && idleMs >= ports.drainIdleMs[site]) {
        next = best;
        reason = RETURN_DRAINED_BACK;
      }
      // Failover at once: the site sends the flow over a less preferred onramp.
      if (dir === 0 && ingress !== next && ports.rank[ingress] > ports.rank[next]) {
        next = ingress;
        reason = RETURN_ARRIVAL;
      }
      // The return onramp is down: the flow moves to the backup and stays there (until idle).
      if (ports.up[next] === 0 && best !== 0) {
        next = best;
        reason = RETURN_FAILOVER;
      }
    }
    // pin: the recorded onramp stays; deliverable() covers its down time. A move and its reason, or what is stored.
    if (next === ret) reason = table.returnReason(flow);
    return next | (reason << RETURN_REASON_SHIFT);
  }

  private hopFor(table: FlowTable, flow: number, dir: 0 | 1, ingress: number): number {
    if (dir === 0) return this.ports.deliverable(table.nextHop(flow));
    if ((table.flags(flow) & FLAG_ARR) !== 0) return this.ports.deliverable(table.returnPort(flow));
    return this.routeReply(ingress);
  }

  /** Without ARR a reply is routed like any packet, by its (translated) destination. */
  private routeReply(ingress: number): number {
    const info = this.info;
    const site = this.ports.site[ingress];
    const hash = tupleHash(info.protocol, (info.srcPort << 16) | info.dstPort, info.addr, SRC, info.addr, DST);
    const route = info.family === AF_INET4
      ? this.routes.lookup4(site, info.addr[DST], hash)
      : this.routes.lookup6(site, info.addr, DST, hash);
    return this.routeHop(route);
  }

  private routeHop(route: number): number {
    if (route < 0) return -Drop.NoRoute;
    const kind = this.routes.routeKind[route];
    if (kind === NextHopKind.Blackhole) return -Drop.Blackhole;
    if (kind === NextHopKind.Internet) return PORT_INTERNET;
    return this.ports.deliverable(this.routes.routePort[route]);
  }

  /**
   * Lanes: a packet another lane owns (`owner` >= 0, lane-ownership.ts) is not forwarded here: its receive counters
   * are taken back (the owner counts it) and finish() lists it for the edge to hand over. False for owner -1.
   */
  private handsOver(owner: number, ingress: number, length: number): boolean {
    if (owner < 0) return false;
    this.handLane = owner;
    this.counters.rxPackets[ingress]--;
    this.counters.rxBytes[ingress] -= length;
    return true;
  }

  /** First packet of a flow: decide once (policy, route, NAT, return onramp), then store it. */
  private setupFlow(buf: Uint8Array, table: FlowTable, ingress: number, zone: number, length: number, now: number): number {
    const d = this.decision;
    const hop = this.decideSetup(this.info, this.key, table, ingress, d, null);
    // Per-rule hits (docs/OBSERVABILITY.md): first packets the firewall decided, allowed or denied; index 0 is the default action.
    if (d.firewallAsked) this.counters.firewallRuleHits[this.firewallRules.ruleId(d.rule)]++;
    if (hop < 0) {
      // A gateway rule without a hostname condition blocked it at setup: counted for the rule (decideSetup counts nothing).
      if (hop === -Drop.GatewayBlocked) this.counters.gatewayRuleHits[this.gatewayRules!.rule(d.gateway).id]++;
      return hop;
    }
    // The firewall allowed it: a DNS query is the gateway's next (its first query creates no flow when answered).
    if (this.info.protocol === IPPROTO_UDP && this.info.dstPort === DNS_PORT && this.dnsGate.active) {
      d.flags |= FLAG_DNS;
      const answered = this.gatewayDns(buf, ingress);
      if (answered !== NOT_ANSWERED) return answered;
    }
    if (this.ports.version !== this.sharesVersion) this.sizeShares();
    return this.commitSetup(buf, table, ingress, zone, length, now);
  }

  /**
   * Flow setup, step one: what the first packet `info` (keyed as `key` in its onramp's zone, no flow
   * in `table` yet) would become, read from the state as it is now: the checks before policy, the
   * firewall, the route and why, the next hop, the kind of translation, the return path (FLAG_ARR).
   * Changes nothing, so explain runs it too (with a trace); the pipeline runs commitSetup after it.
   * Fills `d`, and `trace` when not null. Returns the next hop (as recorded, before failover) or a
   * negative Drop.
   *
   * The boundary of what this knows: everything up to the resources commit takes. Commit can still
   * drop with NatExhausted (no free pool port, no free clash port), TableFull or QuotaExceeded, or
   * a TCP verdict on the segment; the exact external port of a new mapping and the rewritten clash
   * port exist only once commit has taken them (a trace shows an existing mapping, via peek).
   */
  decideSetup(info: PacketInfo, key: FlowKey, table: FlowTable, ingress: number, d: SetupDecision, trace: SetupTrace | null): number {
    d.flags = 0;
    d.hop = -1;
    d.rule = NO_MATCH;
    d.firewallAsked = false;
    d.borrowedPort = -1;
    if (trace !== null) trace.clear();
    if (ingress === PORT_INTERNET) {
      // Address-and-port-dependent filtering (RFC 4787 REQ-8 allows it): the Internet only answers.
      return this.snat !== null && this.isPoolDestination(info) ? -Drop.NoNatMapping : -Drop.ReplyNoFlow;
    }
    const protocol = info.protocol;
    if (protocol === IPPROTO_TCP && (info.tcpFlags & (TCP_SYN | TCP_ACK_FLAG | TCP_RST | TCP_FIN)) !== TCP_SYN) {
      return -Drop.TcpNoFlow;
    }
    if (isQueryReply(info)) return -Drop.ReplyNoFlow;
    if (!validEndpoints(info)) return -Drop.BadAddress;

    const site = this.ports.site[ingress];
    const fw = this.firewallRules;
    // IPv4 words as int32 into the firewall and the routes (both take either sign): an unsigned word >= 2^31 passed to
    // a call V8 did not inline is a heap-allocated number, and which calls it inlines varies from run to run.
    const rule = info.family === AF_INET4
      ? fw.evaluate4(site, ingress, protocol, info.addr[SRC] | 0, info.addr[DST] | 0, info.srcPort, info.dstPort)
      : fw.evaluate6(site, ingress, protocol, info.addr, SRC, DST, info.srcPort, info.dstPort);
    d.rule = rule;
    d.firewallAsked = true;
    if (trace !== null) trace.firewallAsked = true;
    if (!fw.allows(rule)) return -Drop.PolicyDeny;
    // The gateway decides only what the firewall allowed: now when its first matching rule needs no name, after
    // the client's first payload when it does (TCP: the classifying state; UDP 53: the DNS query).
    d.gateway = GATEWAY_NO_RULE;
    const gw = this.gatewayRules;
    if (gw !== null) {
      const g = info.family === AF_INET4
        ? gw.decide4(site, ingress, protocol, info.addr[SRC], info.addr[DST], info.srcPort, info.dstPort, NameSource.Unknown, null)
        : gw.decide6(site, ingress, protocol, info.addr, SRC, DST, info.srcPort, info.dstPort, NameSource.Unknown, null);
      d.gateway = g;
      if (trace !== null) trace.gatewayAsked = true;
      if (g >= 0 && gw.rule(g).action === 'block') return -Drop.GatewayBlocked;
      // Data on the SYN (TCP Fast Open, RFC 7413) would pass before any name is known: refused, the client's
      // retransmitted SYN without data (RFC 7413 section 4.2.1's fallback) sets the flow up.
      if (g === GATEWAY_NEED_NAME && protocol === IPPROTO_TCP && info.tcpPayloadLength > 0) return -Drop.ClassifyUnheld;
    }

    d.reply.reverseOf(key);
    const arr = this.ports.arr[ingress] === 1 ? FLAG_ARR : 0;
    const hash = tupleHash(protocol, (key.srcPort << 16) | key.dstPort, key.src, 0, key.dst, 0);
    d.hash = hash;
    if (this.snat !== null && this.isPoolDestination(info)) {
      d.flags = arr | FLAG_TRANSLATE | FLAG_POOL | FLAG_HAIRPIN | FLAG_RENUMBER;
      return this.decideHairpin(info, key, table, site, ingress, d, trace);
    }
    const route = info.family === AF_INET4
      ? this.routes.lookup4(site, info.addr[DST] | 0, hash)
      : this.routes.lookup6(site, info.addr, DST, hash);
    if (trace !== null) trace.route = route;
    if (route < 0) return -Drop.NoRoute;
    const kind = this.routes.routeKind[route];
    if (kind === NextHopKind.Blackhole) return -Drop.Blackhole;
    if (kind === NextHopKind.Internet) {
      if (this.snat === null) return -Drop.NoRoute;
      d.flags = arr | FLAG_TRANSLATE | FLAG_POOL | FLAG_RENUMBER;
      d.hop = PORT_INTERNET;
      if (trace !== null) trace.natPort = this.snat.peek(key.zone, protocol, info.family as 4 | 6, info.addr, SRC, key.srcPort, trace.natAddr, 0);
      return PORT_INTERNET;
    }
    const hop = this.routes.routePort[route];
    // Replies come back through the next hop's port, keyed in its zone. Another site already has
    // this exact tuple to this server: our source port is rewritten, only now, only for this flow
    // (docs/FLOW-MODEL.md: NAT a data center only on a clash); commit finds the free port.
    d.reply.zone = this.ports.zone[hop];
    d.flags = table.lookup(d.reply) >= 0 ? arr | FLAG_TRANSLATE | FLAG_CLASH : arr;
    // Leaving its zone, the source address may meet another zone's identical one at the server (FLAG_RENUMBER).
    if (d.reply.zone !== key.zone) d.flags |= FLAG_RENUMBER;
    d.hop = hop;
    return hop;
  }

  /**
   * Hairpinning (RFC 4787 REQ-9): a site addresses another internal endpoint by its external
   * (egress pool) address. The sender gets its own mapping as if it went to the Internet (taken by
   * commit), the destination is translated to the internal endpoint, and the packet turns back
   * inside to that endpoint's site. Fills d.peer and d.hop; returns the next hop or a negative Drop.
   *
   * Rules written for the internal destination must hold for it too, although the packet names
   * the pool address: the firewall is asked again with the translated destination, and both
   * answers must allow.
   */
  private decideHairpin(info: PacketInfo, key: FlowKey, table: FlowTable, site: number, ingress: number, d: SetupDecision, trace: SetupTrace | null): number {
    const family = info.family as 4 | 6;
    const protocol = info.protocol;
    if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP) return -Drop.NoNatMapping;
    const peer = d.peer;
    if (!this.snat!.lookupExternal(protocol, family, info.addr, DST, key.dstPort, peer)) return -Drop.NoNatMapping;
    if (trace !== null) trace.hairpinPeerFound = true;
    const fw = this.firewallRules;
    let rule: number;
    if (family === AF_INET4) {
      rule = fw.evaluate4(site, ingress, protocol, info.addr[SRC] | 0, peer.addr[0] | 0, key.srcPort, peer.port);
    } else {
      d.peerAddr.set(info.addr.subarray(SRC, SRC + 4), SRC);
      d.peerAddr.set(peer.addr, DST);
      rule = fw.evaluate6(site, ingress, protocol, d.peerAddr, SRC, DST, key.srcPort, peer.port);
    }
    if (trace !== null) {
      trace.hairpinAsked = true;
      trace.hairpinRule = rule;
    }
    if (!fw.allows(rule)) return -Drop.PolicyDeny;
    let hop: number;
    if (peer.zone !== ZONE_GLOBAL) {
      // An ARR zone is its site: deliver to that site's best onramp.
      const onramps = this.ports.onrampsOfSite(peer.zone);
      if (onramps.length === 0) return -Drop.NoRoute;
      hop = onramps[0];
    } else {
      const route = family === AF_INET4
        ? this.routes.lookup4(site, peer.addr[0] | 0, d.hash)
        : this.routes.lookup6(site, peer.addr, 0, d.hash);
      if (trace !== null) trace.route = route;
      if (route < 0 || this.routes.routeKind[route] !== NextHopKind.Onramp) return -Drop.NoRoute;
      hop = this.routes.routePort[route];
    }
    // The sender already has its mapping (endpoint-independent: commit takes the same one) and the
    // peer is already talking to that external endpoint: one flow, seen from both ends.
    let extPort = this.snat!.peek(key.zone, protocol, family, info.addr, SRC, key.srcPort, d.ext, 0);
    // Lanes: a sender whose mapping another lane holds keeps it (REQ-1): borrowed from the ownership directory.
    if (extPort < 0 && this.lanes !== null) extPort = d.borrowedPort = this.snat!.peekOtherLane(key.zone, protocol, family, info.addr, SRC, key.srcPort, d.ext, 0);
    if (extPort >= 0 && table.lookup(translatedReply(d, extPort)) >= 0) return -Drop.NoNatMapping;
    // Filtering (RFC 4787 REQ-8; REQ-9: hairpinned packets pass the same filter as any outside sender). The
    // peer's mapping is address-and-port dependent: it admits the sender's external endpoint only once the peer
    // has sent to it. That contact is a flow of the peer toward our external endpoint, and its reply key is this
    // packet's key, which found no flow: the peer never sent. So the flow is set up (our mapping admits the peer
    // from now on, as any outbound packet opens its filter) and this packet is dropped; FLAG_FILTERED holds the
    // flow's packets back until the peer's first one (forwardOnFlow).
    d.flags |= FLAG_FILTERED;
    if (trace !== null) trace.hairpinFiltered = true;
    d.hop = hop;
    return hop;
  }

  /**
   * Flow setup, step two (the pipeline only): takes what this.decision needs — the egress pool
   * mapping (source NAT, hairpin), a free source port (clash) — creates the flow with the decision
   * in it, tracks and counts the first packet and rewrites it. Returns the port or a negative Drop.
   */
  private commitSetup(buf: Uint8Array, table: FlowTable, ingress: number, zone: number, length: number, now: number): number {
    const info = this.info;
    const key = this.key;
    const d = this.decision;
    // A borrowed mapping (hairpin, lanes) is the other lane's: this flow holds no reference (no FLAG_POOL to release).
    const flags = d.borrowedPort >= 0 ? d.flags & ~FLAG_POOL : d.flags;
    const hop = d.hop;
    const reply = d.reply;
    const protocol = info.protocol;
    if (d.borrowedPort >= 0) {
      // decideHairpin found no flow on this reply key.
      translatedReply(d, d.borrowedPort);
    } else if ((flags & FLAG_POOL) !== 0) {
      const snat = this.snat!;
      const extPort = snat.acquire(zone, protocol, info.family as 4 | 6, info.addr, SRC, key.srcPort, d.ext, 0, this.ports.site[ingress]);
      if (extPort < 0) return extPort === NAT_SITE_QUOTA ? -Drop.NatQuotaExceeded : -Drop.NatExhausted;
      const replyKey = translatedReply(d, extPort);
      if (this.replyKeyMayExist(flags) && table.lookup(replyKey) >= 0) {
        // Source NAT: only a key nobody's mapping owns can be in the way (replyKeyMayExist); a wrong
        // reply key would cross flows: refuse rather than trust.
        // Hairpin: decideHairpin refused this for an existing mapping; a new one may still find a
        // stale flow of the peer toward the port it gets.
        snat.release(zone, protocol, info.family as 4 | 6, info.addr, SRC, key.srcPort);
        return (flags & FLAG_HAIRPIN) !== 0 ? -Drop.NoNatMapping : -Drop.NatExhausted;
      }
    } else if ((flags & FLAG_CLASH) !== 0 && !resolveClash(table, reply, d.hash)) {
      return -Drop.NatExhausted;
    }

    // The decision goes into the record as create writes it (flags, next hop, rule id, policy epoch).
    const flow = table.createWith(key, reply, ingress, now, flags, hop, this.firewallRules.ruleId(d.rule), this.epoch, this.keyBucket);
    if (flow < 0) {
      if ((flags & FLAG_POOL) !== 0) this.snat!.release(zone, protocol, info.family as 4 | 6, info.addr, SRC, key.srcPort);
      return flow;
    }
    // Counted where the table creates it, so created and ended stay paired (a refused first TCP segment deletes it again).
    this.counters.flowsCreated[ingress]++;
    if (this.snat !== null && this.poolKeyed(table, flow, flags)) this.poolKeyedFlows++;
    if (protocol === IPPROTO_TCP) {
      const verdict = table.trackTcp(flow, 0, info.tcpFlags, info.tcpSeq, info.tcpAck, info.tcpWindow, info.tcpPayloadLength, info.tcpWindowScale, now);
      if (verdict !== Drop.None) {
        table.delete(flow);
        return -verdict;
      }
    }
    // Not TCP: no touch. create() set what it would (the unreplied timeout from now, evictable, the wheel slot).
    const g = d.gateway;
    this.setGatewayOf(table, flow, 0);
    if (g >= 0) {
      // A rule without a hostname condition decided at setup (a block never got here: decideSetup dropped it).
      const rule = this.gatewayRules!.rule(g);
      this.setGatewayOf(table, flow, gatewayWord(rule.id, NameSource.Unknown, gatewayActionCode(rule.action), -1));
      this.counters.gatewayRuleHits[rule.id]++;
      // DLP from the first byte: the SYN's sequence number starts the client's stream.
      if (protocol === IPPROTO_TCP && this.dlp !== null) this.startDlp(table, flow, g, info.tcpSeq);
    } else if (g === GATEWAY_NEED_NAME && protocol === IPPROTO_TCP) {
      this.startClassifying(table, flow, now);
    }
    // Lanes: a flow no NAT port steers back is found by its keys from any lane (pool flows: SnatPool's endpoint claim).
    if (this.lanes !== null && (flags & FLAG_POOL) === 0) this.lanes.claimFlow(table, flow);
    if ((flags & FLAG_FILTERED) !== 0) return -Drop.HairpinFiltered;
    table.count(flow, 0, length);
    if ((flags & FLAG_TRANSLATE) !== 0) this.translate(buf, table, flow * 2 + 1);
    if (renumbers(flags, 0, info)) this.renumber(buf, flow * 2);
    decrementTtl(buf, info);
    this.lastNode = this.packetNode = flow * 2;
    return this.ports.deliverable(hop);
  }

  // --- classifying (classify.ts; docs/POLICY.md "Hostname rules: how a flow is classified") ---------------------

  /** The flow's first gateway rule needs a name: it waits in the classifying state from its first packet (now). */
  private startClassifying(table: FlowTable, flow: number, now: number): void {
    const gw = this.gatewayRules!;
    const n = flow * 2;
    const ports = table.nodePorts(n);
    const site = this.ports.site[table.ingressPort(flow)];
    const onramp = table.ingressPort(flow);
    const pending = table.addrWords === 1
      ? gw.pending4(site, onramp, IPPROTO_TCP, table.nodeSrc(n, 0), table.nodeDst(n, 0), ports >>> 16, ports & 0xffff)
      : gw.pending6(site, onramp, IPPROTO_TCP, table.records, table.srcIndex(n), table.dstIndex(n), ports >>> 16, ports & 0xffff);
    if (pending < 0) return;
    const c = this.classifyRecords.pop() ?? new Classifying();
    c.table = table;
    c.flow = flow;
    c.startedAt = now;
    c.policy = gw;
    c.pendingRule = pending;
    this.classifying.set(flowHandle(table !== this.flows4, flow), c);
    table.setFlags(flow, table.flags(flow) | FLAG_CLASSIFYING);
    this.counters.classifyStarted++;
  }

  /**
   * A packet of a classifying flow (this.info, before TCP tracking). Returns CLASSIFY_PASS when the packet walks on
   * as any packet of the flow (the handshake, pure ACKs, the server's packets, and a client payload that decided
   * an allow with nothing held before it); HELD when it was held or released with the held ones; a negative Drop
   * otherwise (a retransmission of held bytes, a segment past a gap, a block). Client payload is not tracked while
   * held: the tracker (and the server) still stand at the first held byte, where a reset must point.
   */
  private classifySegment(buf: Uint8Array, table: FlowTable, flow: number, dir: 0 | 1, ingress: number, length: number): number {
    const handle = flowHandle(table !== this.flows4, flow);
    const c = this.classifying.get(handle);
    // Not waiting (FLAG_CLASSIFYING is FLAG_GATEWAY_WORK, shared with DLP): the next stage reads the bit.
    if (c === undefined) return CLASSIFY_PASS;
    const info = this.info;
    if (this.gatewayRules === null) return this.concludeAndPass(c, ClassifyOutcome.PolicyGone, NameSource.Unknown, null);
    // The wait is checked on packets too (the expiry pass may run later): past it, the rule's fallback.
    if (this.now - c.startedAt >= c.policy!.spec.classify.waitMs) {
      return dir === 0 && info.tcpPayloadLength > 0
        ? this.concludeOnPacket(c, ClassifyOutcome.Timeout, NameSource.Unknown, null, false, buf, length, ingress)
        : this.concludeAndPass(c, ClassifyOutcome.Timeout, NameSource.Unknown, null);
    }
    if ((info.tcpFlags & TCP_RST) !== 0) {
      // Either end gives up: nothing to decide, nothing held goes on (the connection is gone).
      this.dropClassifying(c, handle, ClassifyOutcome.Closed);
      return CLASSIFY_PASS;
    }
    const payload = info.tcpPayloadLength;
    if (dir === 1) {
      // The server speaks first (SMTP, SSH, FTP): no client name is coming before it is answered. Decided now
      // with no name; what the client sent meanwhile (nothing, for such protocols) is released.
      if (payload > 0) return this.concludeAndPass(c, ClassifyOutcome.ServerFirst, NameSource.Unknown, null);
      return CLASSIFY_PASS;
    }
    const fin = (info.tcpFlags & TCP_FIN) !== 0;
    if (payload === 0 && !fin) return CLASSIFY_PASS;
    const seq = info.tcpSeq;
    if (!c.started) {
      c.started = true;
      c.firstSeq = c.nextSeq = seq;
    }
    const end = (seq + payload) >>> 0;
    if (payload > 0 ? seqLeq(end, c.nextSeq) : seq !== c.nextSeq && !seqGt(seq, c.nextSeq)) return -Drop.ClassifyRetransmit;
    if (seqGt(seq, c.nextSeq)) return -Drop.ClassifyGap;
    const skip = (c.nextSeq - seq) | 0;
    let slot = c.slot;
    if (slot === null && payload > 0) {
      let pool = this.classifyPool;
      const bytes = c.policy!.spec.classify.bufferBytes;
      if (pool === null || pool.bufferBytes !== bytes) pool = this.classifyPool = new ClassifyPool(this.classifySlots, bytes);
      slot = c.slot = pool.acquire();
      if (slot === null) return this.concludeOnPacket(c, ClassifyOutcome.NoBuffer, NameSource.Unknown, null, false, buf, length, ingress);
    }
    const holdable = slot !== null && !info.csumPartial && length <= this.generated.maxPacketSize && slot.fits(length);
    let result: ClassifyResult | null = null;
    if (slot !== null && payload > skip) {
      if (slot.fed + payload - skip > slot.pool.bufferBytes) return this.concludeOnPacket(c, ClassifyOutcome.TooLarge, NameSource.Unknown, null, false, buf, length, ingress);
      result = slot.feed(buf, info.l4Offset + info.tcpHeaderLength + skip, payload - skip);
    }
    c.nextSeq = end;
    if (result === null || result.kind === 'need-more') {
      if (!fin) {
        if (!holdable) return this.concludeOnPacket(c, ClassifyOutcome.TooLarge, NameSource.Unknown, null, false, buf, length, ingress);
        slot!.hold(buf, info.l3Offset, length, ingress);
        return HELD;
      }
      // The client closed its side undecided (a request without its empty line): nothing more will come.
      return this.concludeOnPacket(c, ClassifyOutcome.Closed, NameSource.Unknown, null, holdable, buf, length, ingress);
    }
    switch (result.kind) {
      case 'name':
        return this.concludeOnPacket(c, ClassifyOutcome.Name, slot!.parser === PARSER_TLS ? NameSource.Sni : NameSource.HttpHost, result.name, holdable, buf, length, ingress);
      case 'no-name':
        return this.concludeOnPacket(c, ClassifyOutcome.NoName, NameSource.Unknown, null, holdable, buf, length, ingress);
      case 'not-protocol':
        return this.concludeOnPacket(c, ClassifyOutcome.NotProtocol, NameSource.Unknown, null, holdable, buf, length, ingress);
      case 'malformed':
        return this.concludeOnPacket(c, ClassifyOutcome.Malformed, NameSource.Unknown, null, holdable, buf, length, ingress);
      default:
        return this.concludeOnPacket(c, ClassifyOutcome.TooLarge, NameSource.Unknown, null, holdable, buf, length, ingress);
    }
  }

  /**
   * Decides a classifying flow on the client packet in this.info. The packet joins the held ones when there are
   * any (`holdable`), so all leave in order (HELD); alone it walks on (CLASSIFY_PASS). A packet that cannot be held
   * while held ones leave is dropped (ClassifyUnheld: the client resends it); a block drops it.
   */
  private concludeOnPacket(c: Classifying, outcome: ClassifyOutcome, source: NameSource, name: string | null, holdable: boolean, buf: Uint8Array, length: number, ingress: number): number {
    const slot = c.slot;
    let joined = false;
    if (slot !== null && slot.count > 0 && holdable) {
      slot.hold(buf, this.info.l3Offset, length, ingress);
      joined = true;
    }
    const hadHeld = slot !== null && slot.count > 0;
    const allowed = this.conclude(c, outcome, source, name);
    if (!allowed) return -this.blockReason(outcome);
    if (joined) return HELD;
    return hadHeld ? -Drop.ClassifyUnheld : CLASSIFY_PASS;
  }

  /** Decides a classifying flow on a packet that is not the client's payload (the server's, or none). */
  private concludeAndPass(c: Classifying, outcome: ClassifyOutcome, source: NameSource, name: string | null): number {
    return this.conclude(c, outcome, source, name) ? CLASSIFY_PASS : -this.blockReason(outcome);
  }

  private blockReason(outcome: ClassifyOutcome): Drop {
    switch (outcome) {
      case ClassifyOutcome.Timeout: return Drop.ClassifyTimeout;
      case ClassifyOutcome.TooLarge: return Drop.ClassifyTooLarge;
      case ClassifyOutcome.NoBuffer: return Drop.ClassifyNoBuffer;
      default: return Drop.GatewayBlocked;
    }
  }

  /**
   * The one decision of a classifying flow: the rules with the name (or the waited-on rule's fallback when no
   * decision could be made in bounds), stored in the flow (FlowTable.gateway), its name beside it (flowName), the
   * rule's hit counted. Allowed: the held packets are released in order through forward() (they take the fast
   * path now) and true. Blocked: a reset to each end, the flow ended, false.
   */
  private conclude(c: Classifying, outcome: ClassifyOutcome, source: NameSource, name: string | null): boolean {
    const table = c.table!;
    const flow = c.flow;
    const v6 = table !== this.flows4;
    const handle = flowHandle(v6, flow);
    let ruleId = 0;
    let action = gatewayActionCode('allow');
    /** The rule the names decided by (not a fallback's): its DLP profiles scan the flow from here. */
    let decidedBy = GATEWAY_NO_RULE;
    if (isFallback(outcome)) {
      const rule = c.policy!.rule(c.pendingRule);
      ruleId = rule.id;
      action = gatewayActionCode(c.policy!.fallback(c.pendingRule));
    } else if (this.gatewayRules !== null && outcome !== ClassifyOutcome.PolicyGone) {
      const gw = this.gatewayRules;
      const n = flow * 2;
      const ports = table.nodePorts(n);
      const onramp = table.ingressPort(flow);
      const site = this.ports.site[onramp];
      const index = v6
        ? gw.decide6(site, onramp, IPPROTO_TCP, table.records, table.srcIndex(n), table.dstIndex(n), ports >>> 16, ports & 0xffff, source, name)
        : gw.decide4(site, onramp, IPPROTO_TCP, table.nodeSrc(n, 0), table.nodeDst(n, 0), ports >>> 16, ports & 0xffff, source, name);
      if (index >= 0) {
        const rule = gw.rule(index);
        ruleId = rule.id;
        action = gatewayActionCode(rule.action);
        decidedBy = index;
      }
    }
    this.setGatewayOf(table, flow, gatewayWord(ruleId, source, action, outcome));
    if (ruleId !== 0) this.counters.gatewayRuleHits[ruleId]++;
    this.counters.classifyOutcomes[outcome]++;
    if (name !== null) this.names.set(handle, { source, name });
    table.setFlags(flow, table.flags(flow) & ~FLAG_CLASSIFYING);
    this.classifying.delete(handle);
    const slot = c.slot;
    this.recycle(c);
    if (action === GW_ACTION_BLOCK) {
      if (slot !== null) slot.pool.release(slot);
      this.counters.gatewayResets++;
      this.resetBoth(table, flow, RemoveReason.Deleted);
      return false;
    }
    // DLP before the held bytes go on: the client's stream starts at the first of them.
    if (decidedBy >= 0 && this.dlp !== null) this.startDlp(table, flow, decidedBy);
    if (slot !== null) {
      if (slot.count > 0) this.released = true;
      // Held packets go on in order; the flow decided, they take the fast path.
      for (let k = 0; k < slot.count; k++) this.walkGenerated(slot.store, slot.starts[k], slot.lengths[k], slot.ingress[k], Drop.ClassifyReleaseOverflow, true);
      slot.pool.release(slot);
    }
    return true;
  }

  /** Ends a classification without a decision (a reset from either end): held packets are dropped with the flow's fate. */
  private dropClassifying(c: Classifying, handle: number, outcome: ClassifyOutcome): void {
    const table = c.table!;
    table.setFlags(c.flow, table.flags(c.flow) & ~FLAG_CLASSIFYING);
    this.setGatewayOf(table, c.flow, gatewayWord(0, NameSource.Unknown, 0, outcome));
    this.counters.classifyOutcomes[outcome]++;
    this.classifying.delete(handle);
    if (c.slot !== null) c.slot.pool.release(c.slot);
    this.recycle(c);
  }

  private recycle(c: Classifying): void {
    c.clear();
    this.classifyRecords.push(c);
  }

  /**
   * Cuts a TCP flow the gateway blocks: a reset to the client (through the port its packets came in on, from the
   * server's address as the client knows it, SEQ = what the client expects next), a reset to the server (as
   * from the client, SEQ = the server's RCV.NXT, walked through forward() so it is translated like the flow's
   * packets), then the flow ends. Both are built from the flow's own record, not a packet: the wait's expiry has
   * none at hand.
   */
  private resetBoth(table: FlowTable, flow: number, reason: RemoveReason): void {
    const r = this.resetInfo;
    const n = flow * 2;
    const v4 = table.addrWords === 1;
    r.family = v4 ? AF_INET4 : AF_INET6;
    for (let w = 0; w < 4; w++) {
      r.addr[SRC + w] = v4 ? (w === 0 ? table.nodeSrc(n, 0) : 0) : table.records[table.srcIndex(n) + w];
      r.addr[DST + w] = v4 ? (w === 0 ? table.nodeDst(n, 0) : 0) : table.records[table.dstIndex(n) + w];
    }
    const ports = table.nodePorts(n);
    r.srcPort = ports >>> 16;
    r.dstPort = ports & 0xffff;
    r.tcpFlags = TCP_ACK_FLAG;
    r.tcpSeq = table.tcpEnd(flow, 0);
    r.tcpAck = table.tcpEnd(flow, 1);
    r.tcpPayloadLength = 0;
    const onramp = table.ingressPort(flow);
    const out = this.resetScratch;
    const g = this.generated;
    // To the client: straight back where its packets came from (ARR: the flow's return onramp).
    const toClient = (table.flags(flow) & FLAG_ARR) !== 0 ? this.ports.deliverable(table.returnPort(flow)) : this.ports.deliverable(onramp);
    let len = writeResetToSender(out, 0, r);
    if (toClient >= 0) {
      this.pushOwn(out, len, onramp, toClient);
    } else {
      // No way back to the client: the reset is kept in the batch as a drop, with the reason.
      const i = g.push(out, 0, len, onramp);
      if (i >= 0) {
        g.nextHop[i] = NEXT_HOP_DROP;
        g.drop[i] = -toClient;
      }
    }
    // To the server: as the client would send it; forward() translates it and tracks the flow to CLOSE.
    len = writeResetToReceiver(out, 0, r, r.tcpSeq);
    this.walkGenerated(out, 0, len, onramp, Drop.ClassifyReleaseOverflow, false);
    table.delete(flow, reason);
  }

  /** Flows whose wait is over get their rule's fallback (in start order: the first still waiting ends the pass). */
  private expireClassifying(now: number): void {
    if (this.classifying.size === 0) return;
    for (const [, c] of this.classifying) {
      if (now - c.startedAt < c.policy!.spec.classify.waitMs) break;
      this.conclude(c, ClassifyOutcome.Timeout, NameSource.Unknown, null);
    }
  }

  /** Rewrites the packet to the image of `other` (the flow's other key) with its ends swapped. */
  private translate(buf: Uint8Array, table: FlowTable, other: number): void {
    const info = this.info;
    if (table.addrWords === 1) {
      // As int32 across the calls (setAddr4 takes either sign): an unsigned word >= 2^31 passed to or returned from
      // a function V8 did not inline is boxed, a heap number per translated address. So read from the records here
      // (nodeSrc/nodeDst return the word unsigned), like the fast path: an IPv4 table's destination follows its source.
      const at = table.srcIndex(other);
      const newSrc = table.records[at + 1] | 0;
      const newDst = table.records[at] | 0;
      if ((info.addr[SRC] | 0) !== newSrc) setSrcAddr4(buf, info, newSrc);
      if ((info.addr[DST] | 0) !== newDst) setDstAddr4(buf, info, newDst);
    } else {
      const words = table.records;
      const src = table.srcIndex(other);
      const dst = table.dstIndex(other);
      if (!sameWords(info.addr, SRC, words, dst)) setSrcAddr6(buf, info, words, dst);
      if (!sameWords(info.addr, DST, words, src)) setDstAddr6(buf, info, words, src);
    }
    if (info.hasTransportHeader) {
      const ports = table.nodePorts(other);
      const newSrcPort = ports & 0xffff;
      const newDstPort = ports >>> 16;
      if (info.srcPort !== newSrcPort) setSrcPort(buf, info, newSrcPort);
      if (info.dstPort !== newDstPort) setDstPort(buf, info, newDstPort);
    }
  }

  /**
   * An ICMP error is matched by the packet it carries (RFC 5508 section 4.2, RFC 5382 section 7):
   * the embedded packet, ends swapped, is a key of the flow in the direction the error travels.
   * Its embedded header is translated back to what its sender sent, the outer destination to that
   * sender; the error never creates, refreshes or counts toward a flow (RFC 5508 REQ-2 spirit:
   * errors never end or extend a mapping).
   */
  private forwardIcmpError(buf: Uint8Array, ingress: number, zone: number, length: number): number {
    const info = this.info;
    if (info.innerFamily !== info.family) return -Drop.BadIcmp;
    const table = info.family === AF_INET4 ? this.flows4 : this.flows6;
    const key = this.key;
    const inner = info.innerAddr;
    key.zone = zone;
    key.protocol = info.innerProtocol;
    key.srcPort = info.innerDstPort;
    key.dstPort = info.innerSrcPort;
    for (let w = 0; w < 4; w++) {
      key.src[w] = inner[DST + w];
      key.dst[w] = inner[SRC + w];
    }
    const node = table.lookup(key);
    if (node < 0) {
      // Lanes: an error about a flow another lane claimed (one no NAT port steers: LaneSteering reads those) goes there.
      return this.lanes !== null && this.handsOver(this.lanes.ownerOfIcmpError(info), ingress, length) ? HANDED : -Drop.IcmpNoFlow;
    }
    const flow = node >> 1;
    const dir = (node & 1) as 0 | 1;
    if (!this.ownsDirection(table, flow, dir, ingress)) return -Drop.FlowOwnerMismatch;
    const flags = table.flags(flow);
    if ((flags & FLAG_TRANSLATE) !== 0) this.translateIcmpError(buf, table, node ^ 1);
    // The error's own header is numbered like any packet of its direction (a fragmented error is not followed).
    // The header it quotes keeps the id it was sent with, renumbered or not, as Linux's NAT leaves it: hosts match
    // errors on addresses, protocol and ports (ping and traceroute on the ICMP id and sequence), never on the IP
    // id; restoring it would take a record per datagram sent; and the errors a host acts on (fragmentation
    // needed, RFC 1191) quote DF datagrams, which are atomic and keep their id anyway.
    if (!info.isFragment && renumbers(flags, dir, info)) this.renumber(buf, node);
    decrementTtl(buf, info);
    this.counters.icmpErrorsTranslated++;
    return this.hopFor(table, flow, dir, ingress);
  }

  /** Embedded packet := the key of `other` as sent; outer destination := its sender. */
  private translateIcmpError(buf: Uint8Array, table: FlowTable, other: number): void {
    const info = this.info;
    const inner = info.innerAddr;
    if (table.addrWords === 1) {
      const innerDstBefore = inner[DST];
      const sender = table.nodeSrc(other, 0);
      const receiver = table.nodeDst(other, 0);
      if (inner[SRC] !== sender) setInnerAddr4(buf, info, SRC, sender);
      if (inner[DST] !== receiver) setInnerAddr4(buf, info, DST, receiver);
      if (info.addr[DST] !== sender) setDstAddr4(buf, info, sender);
      // The error came from the embedded packet's destination itself: it speaks for the translated address.
      if (info.addr[SRC] === innerDstBefore && innerDstBefore !== receiver) setSrcAddr4(buf, info, receiver);
    } else {
      const words = table.records;
      const src = table.srcIndex(other);
      const dst = table.dstIndex(other);
      const fromDestination = sameWords(info.addr, SRC, inner, DST);
      if (!sameWords(inner, SRC, words, src)) setInnerAddr6(buf, info, SRC, words, src);
      if (!sameWords(inner, DST, words, dst)) setInnerAddr6(buf, info, DST, words, dst);
      if (!sameWords(info.addr, DST, words, src)) setDstAddr6(buf, info, words, src);
      if (fromDestination && !sameWords(info.addr, SRC, words, dst)) setSrcAddr6(buf, info, words, dst);
    }
    const ports = table.nodePorts(other);
    if (info.innerSrcPort !== ports >>> 16) setInnerPort(buf, info, SRC, ports >>> 16);
    if (info.innerDstPort !== (ports & 0xffff)) setInnerPort(buf, info, DST, ports & 0xffff);
    refreshIcmpChecksum(buf, info);
  }

  /** A fragment without the transport header follows the flow its first fragment took. */
  private forwardLaterFragment(buf: Uint8Array, offset: number, length: number, ingress: number, zone: number, now: number): number {
    const info = this.info;
    const isV4 = info.family === AF_INET4;
    const follower = isV4 ? this.frags4 : this.frags6;
    const table = isV4 ? this.flows4 : this.flows6;
    const node = follower.find(zone, info.protocol, info.addr, info.fragmentId, now);
    if (node < 0 || !nodeMatches(table, node, zone, info)) {
      // Lanes: this lane handed the datagram's first fragment away; the rest follows it, through the same ring. (Not
      // a packet the pipeline walks from `generated`: the edge hands over packets of the batch it processed only.)
      if (this.lanes !== null && this.metaBatch !== this.generated && this.handsOver(this.lanes.ownerOfLaterFragment(info, zone, now), ingress, length)) return HANDED;
      if (this.ports.version !== this.sharesVersion) this.sizeShares();
      const reason = follower.hold(buf, offset, length, ingress, zone, info.protocol, info.addr, info.fragmentId, now, this.ports.site[ingress]);
      if (reason !== Drop.None) return -reason;
      this.counters.fragmentsHeld++;
      return HELD;
    }
    const flow = node >> 1;
    const dir = (node & 1) as 0 | 1;
    if (!this.ownsDirection(table, flow, dir, ingress)) return -Drop.FlowOwnerMismatch;
    table.count(flow, dir, length);
    if ((table.flags(flow) & FLAG_TRANSLATE) !== 0) this.translate(buf, table, node ^ 1);
    // The id its first fragment left with (renumber), so the receiver puts the pieces together again.
    if (follower.foundNewId >= 0) setIpv4Id(buf, info, follower.foundNewId);
    decrementTtl(buf, info);
    this.counters.fragmentsFollowed++;
    this.packetNode = node;
    return this.hopFor(table, flow, dir, ingress);
  }

  /**
   * FLAG_RENUMBER: the translated IPv4 packet leaves with the next id of its (source, destination, protocol)
   * counter (src/nat/ip-id.ts), the header checksum updated incrementally. A first fragment keeps the id its
   * datagram already has when it passed before (a duplicate or a resent first fragment): the fragments that
   * followed it carry that one. followFragments() hands the id to the fragment follower for the later fragments.
   */
  private renumber(buf: Uint8Array, node: number): void {
    const info = this.info;
    let id = -1;
    if (info.isFragment) {
      const frags = this.frags4;
      if (frags.find(this.key.zone, info.protocol, this.fragAddr, this.fragId, this.now) === node) id = frags.foundNewId;
    }
    // The words as int32 (next4 takes either sign): not inlined, an unsigned word >= 2^31 would be a heap number.
    if (id < 0) id = this.ipIds.next4(info.addr[SRC] | 0, info.addr[DST] | 0, info.protocol);
    if (info.isFragment) this.fragNewId = id;
    setIpv4Id(buf, info, id);
  }

  /**
   * Lanes: the first fragment `info` (keyed in `zone`) goes to `lane`. The fragments that follow it here will too
   * (lane-ownership.ts, fragment-steer.ts), and those that came before it and wait here go now (onHandHeld: the
   * edge copies them into that lane's ring), to wait there for their first fragment as they waited here.
   */
  private firstFragmentHanded(zone: number, lane: number, now: number): void {
    const info = this.info;
    this.lanes!.rememberFragment(info, zone, lane, now);
    const follower = info.family === AF_INET4 ? this.frags4 : this.frags6;
    // The latest first fragment of an identification decides (an id reused within the timeout, by another flow).
    follower.forget(zone, info.protocol, info.addr, info.fragmentId);
    if (follower.heldCount === 0 || this.onHandHeld === null) return;
    this.heldLane = lane;
    follower.release(zone, info.protocol, info.addr, info.fragmentId, this.handHeld);
  }

  /**
   * Lanes: the edge steered packet `data[offset..offset+length)` from `ingress` to `lane` before processing it
   * (LaneSteering: a reply from the Internet by its NAT port). When it is a first fragment, its datagram's later
   * fragments go there too, as firstFragmentHanded. Off the common path: one inspect per steered first fragment.
   */
  steeredFirstFragment(data: Uint8Array, offset: number, length: number, ingress: number, lane: number, now: number): void {
    if (this.lanes === null) return;
    const info = this.info;
    if (inspect(data, offset, length, info) !== Drop.None || !info.isFragment || !info.hasTransportHeader) return;
    this.firstFragmentHanded(this.ports.zone[ingress], lane, now);
  }

  /** The first fragment passed: remember its datagram, then send any fragments that arrived before it. */
  private followFragments(zone: number, protocol: number, fragmentId: number, family: number): void {
    const follower = family === AF_INET4 ? this.frags4 : this.frags6;
    follower.remember(zone, protocol, this.fragAddr, fragmentId, this.lastNode, this.now, this.fragNewId);
    // Lanes: this lane took the datagram; an older one of the same identification it handed away no longer decides.
    if (this.lanes !== null) this.lanes.fragments.forget(zone, protocol, family, this.fragAddr, SRC, DST, fragmentId);
    follower.release(zone, protocol, this.fragAddr, fragmentId, this.takeHeld);
  }

  private isPoolDestination(info: PacketInfo): boolean {
    return info.family === AF_INET4 ? this.snat!.isPoolAddress4(info.addr[DST] | 0) : this.snat!.isPoolAddress6(info.addr, DST);
  }

  /**
   * Must commitSetup look for a flow holding the reply key it completed? Hairpin: always (the peer's zone
   * may hold anything). Source NAT: the reply key is (global zone, server, the mapping's external endpoint);
   * another source-NAT flow's reply key equals it only if it is this endpoint's flow to the same server
   * (endpoint-independent mapping, no port overloading: RFC 4787 REQ-1, REQ-3), and that flow's original
   * key is this packet's, which the lookup just missed. So only a key in the global zone toward a pool
   * address that is not a source-NAT reply can be in the way — a hairpin between sites of the global zone,
   * a site sending from a pool address — and poolKeyedFlows counts the live flows holding one.
   */
  private replyKeyMayExist(flags: number): boolean {
    return (flags & FLAG_HAIRPIN) !== 0 || this.poolKeyedFlows !== 0;
  }

  /** Does the flow put a key into the global zone toward a pool address, other than a source-NAT reply (replyKeyMayExist)? */
  private poolKeyed(table: FlowTable, flow: number, flags: number): boolean {
    const sourceNat = (flags & (FLAG_POOL | FLAG_HAIRPIN)) === FLAG_POOL;
    return this.globalKeyToPool(table, flow * 2) || (!sourceNat && this.globalKeyToPool(table, flow * 2 + 1));
  }

  private globalKeyToPool(table: FlowTable, node: number): boolean {
    if (table.nodeZone(node) !== ZONE_GLOBAL) return false;
    return table.addrWords === 1 ? this.snat!.isPoolAddress4(table.nodeDst(node, 0) | 0) : this.snat!.isPoolAddress6(table.records, table.dstIndex(node));
  }

  private flowEnded(table: FlowTable, flow: number, reason: RemoveReason): void {
    // First: whoever still holds packets of the flow not counted in it (the native flow cache) counts them now.
    if (this.onFlowEnding !== null) this.onFlowEnding(table, flow);
    const orig = flow * 2;
    if (this.snat !== null && this.poolKeyed(table, flow, table.flags(flow))) this.poolKeyedFlows--;
    if ((table.flags(flow) & FLAG_POOL) !== 0) {
      const family = table.addrWords === 1 ? 4 : 6;
      this.snat!.release(table.nodeZone(orig), table.protocol(flow), family, table.records, table.srcIndex(orig), table.nodePorts(orig) >>> 16);
    }
    if (this.lanes !== null && (table.flags(flow) & FLAG_POOL) === 0) this.lanes.releaseFlow(table, flow);
    this.counters.flowsEnded[table.ingressPort(flow)]++;
    if (this.onFlowEnd !== null) this.onFlowEnd(table, flow, reason);
    // After the hook: the flow log reads the name. A flow that ends still waiting gives its slot back.
    if (this.names.size !== 0) this.names.delete(flowHandle(table !== this.flows4, flow));
    if ((table.flags(flow) & FLAG_CLASSIFYING) !== 0) {
      const handle = flowHandle(table !== this.flows4, flow);
      const c = this.classifying.get(handle);
      if (c !== undefined) this.dropClassifying(c, handle, ClassifyOutcome.Closed);
    }
    if (this.dlp !== null) this.dlp.flowEnded(DlpTracker.familyOf(table), flow);
  }
}

/** Big-endian 32-bit word at `at`, as int32 (V8 keeps it unboxed; the flow hash takes either sign). */
function readI32(b: Uint8Array, at: number): number {
  return (b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];
}

/** Big-endian 32-bit word at `at`, unsigned (as PacketInfo.addr and the flow records hold addresses). */
function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** PacketBatch.record for a plain IPv4 UDP/TCP packet of the established path (20-byte header, no MSS option). */
function recordPlain4(batch: PacketBatch, i: number, l3: number, protocol: number, srcPort: number, dstPort: number, tcpFlags: number, node: number): void {
  batch.family[i] = AF_INET4;
  batch.l3Offset[i] = l3;
  batch.l4Offset[i] = l3 + IPV4_MIN_HEADER;
  batch.protocol[i] = protocol;
  batch.srcPort[i] = srcPort;
  batch.dstPort[i] = dstPort;
  batch.tcpFlags[i] = tcpFlags;
  batch.mssOffset[i] = 0;
  batch.flowNode[i] = node;
}

function copyAddrs(key: FlowKey, addr: Uint32Array): void {
  for (let w = 0; w < 4; w++) {
    key.src[w] = addr[SRC + w];
    key.dst[w] = addr[DST + w];
  }
}

function sameWords(a: Uint32Array, aOffset: number, b: Uint32Array, bOffset: number): boolean {
  return a[aOffset] === b[bOffset] && a[aOffset + 1] === b[bOffset + 1] && a[aOffset + 2] === b[bOffset + 2] && a[aOffset + 3] === b[bOffset + 3];
}

/** Is the flow node still the one the fragment table remembered (same zone, protocol, addresses)? */
function nodeMatches(table: FlowTable, node: number, zone: number, info: PacketInfo): boolean {
  const flow = node >> 1;
  if (flow >= table.capacity || table.nodeZone(node) !== zone || table.protocol(flow) !== info.protocol) return false;
  const w = table.addrWords;
  for (let k = 0; k < w; k++) {
    if (table.nodeSrc(node, k) !== info.addr[SRC + k] || table.nodeDst(node, k) !== info.addr[DST + k]) return false;
  }
  return table.isLive(flow);
}

/**
 * Completes the decided reply key with the external endpoint in d.ext / `extPort` (source NAT:
 * the server answers it in the global zone; hairpin: the peer answers it in its own zone).
 */
function translatedReply(d: SetupDecision, extPort: number): FlowKey {
  const reply = d.reply;
  // Four word stores, not TypedArray#set: a builtin call per setup for four words (1.5 % of setup's samples).
  if ((d.flags & FLAG_HAIRPIN) !== 0) {
    const peer = d.peer.addr;
    reply.zone = d.peer.zone;
    for (let w = 0; w < 4; w++) reply.src[w] = peer[w];
    reply.srcPort = d.peer.port;
  } else {
    reply.zone = ZONE_GLOBAL;
  }
  const ext = d.ext;
  for (let w = 0; w < 4; w++) reply.dst[w] = ext[w];
  reply.dstPort = extPort;
  return reply;
}

/**
 * Finds a source port for `reply.dstPort` that makes the reply key unique in its zone, searching
 * from a per-flow start with an odd stride (every port is reachable); false when none is free.
 */
function resolveClash(table: FlowTable, reply: FlowKey, hash: number): boolean {
  for (let attempt = 0; attempt < CLASH_ATTEMPTS; attempt++) {
    reply.dstPort = CLASH_PORT_MIN + ((hash >>> 0) + attempt * 40503) % CLASH_PORT_SPAN;
    if (table.lookup(reply) < 0) return true;
  }
  return false;
}

/** The top byte of IPv6 multicast addresses (RFC 4291 section 2.7). */
const IPV6_MULTICAST_TOP = 0xff;

/**
 * May the edge send time exceeded about this packet? Not about an ICMP error, a later fragment, a packet from a
 * non-unicast source or to an IPv4 multicast / broadcast destination (RFC 1812 section 4.3.2.7, mayReportError),
 * nor to an IPv6 multicast destination (RFC 4443 section 2.4 (e.3): only packet too big and parameter problem
 * code 2 answer those). Explain asks the same.
 */
export function mayReportTimeExceeded(info: PacketInfo): boolean {
  return mayReportError(info) && (info.family === AF_INET4 || info.addr[DST] >>> 24 !== IPV6_MULTICAST_TOP);
}

/** Echo / timestamp replies never start a flow. */
function isQueryReply(info: PacketInfo): boolean {
  if (info.protocol === IPPROTO_ICMP) return info.icmpType === ICMP4_ECHO_REPLY || info.icmpType === ICMP4_TIMESTAMP_REPLY;
  if (info.protocol === IPPROTO_ICMPV6) return info.icmpType === ICMP6_ECHO_REPLY;
  return false;
}

/**
 * RFC 1812 section 5.3.7 (martian filtering) for new flows: no unspecified, loopback, multicast or
 * limited-broadcast source; no multicast or broadcast destination (the edge routes unicast).
 */
function validEndpoints(info: PacketInfo): boolean {
  const a = info.addr;
  if (info.family === AF_INET4) {
    const src = a[SRC];
    const dst = a[DST];
    const srcTop = src >>> 24;
    const dstTop = dst >>> 24;
    if (srcTop === 0 || srcTop === 127 || srcTop >= 224) return false;
    if (dstTop === 0 || dstTop === 127 || dstTop >= 224) return false;
    return true;
  }
  const srcUnspecified = (a[SRC] | a[SRC + 1] | a[SRC + 2] | a[SRC + 3]) === 0;
  const srcLoopback = (a[SRC] | a[SRC + 1] | a[SRC + 2]) === 0 && a[SRC + 3] === 1;
  const multicast = (a[SRC] >>> 24) === 0xff || (a[DST] >>> 24) === 0xff;
  const dstUnspecified = (a[DST] | a[DST + 1] | a[DST + 2] | a[DST + 3]) === 0;
  return !srcUnspecified && !srcLoopback && !multicast && !dstUnspecified;
}

/**
 * A stable 32-bit hash of a tuple, for ECMP and the clash-port search. Addresses are four words each. Returned
 * as an int32 (its users take `>>> 0`): an unsigned word >= 2^31 returned from a call V8 does not inline is a
 * heap-allocated number, half of all flow setups' garbage once.
 */
export function tupleHash(protocol: number, ports: number, src: Uint32Array, srcOffset: number, dst: Uint32Array, dstOffset: number): number {
  let h = mixWord(protocol, ports);
  for (let w = 0; w < 4; w++) h = mixWord(mixWord(h, src[srcOffset + w]), dst[dstOffset + w]);
  return finalMix(h);
}
