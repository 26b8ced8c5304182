/**
 * Flow logs (docs/OBSERVABILITY.md): one JSON line per ended flow, to stdout or appended to a file.
 *
 *   flow ends (expired in pipeline.expire, evicted by a create on the packet path, deleted)
 *     └─ pipeline.onFlowEnd ─► capture(): ~40 numbers and the names' references (FlowNames) copied into a
 *                               preallocated ring (no allocation, no text: an eviction runs inside process(),
 *                               on the packet path)
 *   every flushIntervalMs, and on flush() / close():
 *     └─ format each captured flow as a JSON line (text is built here, per ENDED flow, never per
 *        packet) ─► one write() of the whole chunk to the destination stream
 *
 * Bounded: the ring holds `capacity` ended flows between flushes, and the destination may queue at
 * most `maxPendingBytes`; beyond either, lines are dropped and counted (linesDropped), never
 * buffered without limit and never written synchronously.
 *
 * Time: the pipeline's clock is monotonic (the edge passes performance.now()) and a flow stores its
 * creation in whole seconds of that clock (FlowTable.createdAt), so the duration is a whole number
 * of seconds, exact to within one second; the line's `time` is the wall clock when the flow ended.
 */
import { createWriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { formatIpv4, formatIpv6 } from '../wire/addr.js';
import { AF_INET4, IPPROTO_TCP } from '../wire/constants.js';
import { CUT_BY_GATEWAY, FLAG_ARR, FLAG_CLASH, FLAG_HAIRPIN, FLAG_POOL, FLAG_TRANSLATE, type Pipeline } from '../dataplane/pipeline.js';
import { CLASSIFY_OUTCOME_NAMES, GW_ACTION_NAMES, GW_ACTION_NONE, gatewayWordAction, gatewayWordOutcome, gatewayWordRule, gatewayWordSource, nameSourceText } from '../dataplane/classify.js';
import type { DnsGateEvent } from '../dataplane/dns-gate.js';
import type { DlpEvent } from '../dataplane/dlp-tracker.js';
import { RemoveReason, type FlowTable } from '../flow/flow-table.js';
import { NameBook, protocolName, type Names } from './metrics.js';

// --- captured record layout (Float64Array slots; every value is an integer below 2^53) ----------
/** The mode a flow-log file is created with: owner read/write only. */
export const FLOW_LOG_FILE_MODE = 0o600;

const R_WALL = 0; // wall-clock ms when the flow ended
const R_NOW = 1; // pipeline clock ms when the flow ended (for an expired flow: its deadline)
const R_REASON = 2;
const R_FAMILY = 3;
const R_PROTOCOL = 4;
const R_STATE = 5;
const R_FLAGS = 6;
const R_INGRESS = 7;
const R_RETURN = 8;
const R_NEXT_HOP = 9;
const R_RULE = 10;
const R_CREATED = 11; // seconds of the pipeline clock, mod 2^32
const R_PACKETS = 12; // + dir
const R_BYTES = 14; // + dir
const R_SITE = 16;
const R_ESTABLISHED = 17;
/** Per node (dir 0 at R_NODE, dir 1 at R_NODE + NODE_SLOTS): zone, ports word, src[4], dst[4]. */
const R_NODE = 18;
const N_ZONE = 0;
const N_PORTS = 1;
const N_SRC = 2;
const N_DST = 6;
const NODE_SLOTS = 10;
/** The gateway's decision word (dataplane/classify.ts gatewayWord), after the two nodes. */
const R_GATEWAY = R_NODE + 2 * NODE_SLOTS;
/** A flow cut by a policy change (RemoveReason.PolicyCut): Pipeline.lastCut's epoch, layer and rule id. */
const R_CUT_EPOCH = R_GATEWAY + 1;
const R_CUT_LAYER = R_CUT_EPOCH + 1;
const R_CUT_RULE = R_CUT_EPOCH + 2;
const RECORD_SLOTS = R_CUT_EPOCH + 3;

const MS_PER_SECOND = 1000;
const TWO_POW_32 = 0x100000000;
const PORT_MASK = 0xffff;
const PORT_SHIFT = 16;

const DEFAULT_CAPACITY = 16384;
const DEFAULT_FLUSH_INTERVAL_MS = 250;
const DEFAULT_MAX_PENDING_BYTES = 8 << 20;

/** RemoveReason → text. */
const REASON_NAMES: readonly string[] = ['', 'expired', 'evicted', 'deleted', 'onramp_removed', 'dlp_cut', 'policy_cut'];
/** TcpState → text (flow/tcp.ts numbering). */
const TCP_STATE_NAMES: readonly string[] = [
  'none', 'syn_sent', 'syn_recv', 'established', 'fin_wait', 'close_wait', 'last_ack', 'time_wait', 'close', 'syn_sent2',
];

/** Where the lines go: 'stdout', a file path (appended, created if missing), or any writable stream. */
export type FlowLogDestination = 'stdout' | string | Writable;

export interface FlowLoggerOptions {
  pipeline: Pipeline;
  destination: FlowLogDestination;
  /** Id → name for sites, onramps and rules (default: a NameBook over the pipeline). */
  names?: Names;
  /** The clock the pipeline is driven with, ms (default performance.now(), the edge's). */
  clock?: () => number;
  /** Wall clock for `time`, ms since the epoch (default Date.now). */
  wallClock?: () => number;
  /** Ended flows held between flushes (default 16384); more are dropped and counted. */
  capacity?: number;
  /** Flush period, ms (default 250); 0: only flush() and close() write. */
  flushIntervalMs?: number;
  /** Bytes the destination may have queued (not yet written) before lines are dropped (default 8 MiB). */
  maxPendingBytes?: number;
  /** Write errors (a file that cannot be opened, a full disk). Default: remembered in lastError. */
  onError?: (err: Error) => void;
}

/**
 * A DNS query a gateway rule blocked, overrode or logged (src/dataplane/dns-gate.ts): one line each, in the same
 * stream as the ended flows (docs/OBSERVABILITY.md). `rcode` is what the edge answered; null for `log` (the query
 * went on to its server).
 */
export interface DnsLogLine {
  time: string;
  event: 'gateway_dns';
  action: 'block' | 'override' | 'log';
  rule: number;
  rule_name?: string;
  name: string;
  qtype: number;
  rcode: 'NOERROR' | 'NXDOMAIN' | null;
  answers: number;
  family: 4 | 6;
  src: string;
  src_port: number;
  dst: string;
  site: string;
  onramp: string;
}

/** A captured gateway DNS event: numbers and the name string the parser made (held, not copied). */
class DnsRecord {
  wall = 0;
  ruleId = 0;
  action: DnsLogLine['action'] = 'log';
  name = '';
  qtype = 0;
  rcode = -1;
  answers = 0;
  family: 4 | 6 = 4;
  readonly addr = new Uint32Array(8);
  srcPort = 0;
  /** Names looked up at the query (see FlowNames). */
  site = '';
  onramp = '';
}

/**
 * A captured flow's names, looked up when the flow ends (references to the name book's strings: no allocation).
 * Not when its line is written: an onramp removed through the API ends its flows, then the name book forgets it
 * (LiveEdge: endFlowsOf, then onApplied), and the flush comes up to flushIntervalMs later. The line an operator
 * greps must name the onramp, site and rule the flow was set up with, not their bare ids.
 */
class FlowNames {
  site = '';
  onramp = '';
  returnOnramp = '';
  nextHop = '';
  rule: string | undefined = undefined;
  cutRule: string | undefined = undefined;
}

/** RFC 1035 section 4.1.1 RCODEs the edge answers with. */
const RCODE_NAMES: Readonly<Record<number, DnsLogLine['rcode']>> = { 0: 'NOERROR', 3: 'NXDOMAIN' };
/** Gateway DNS events held between flushes, at most (a burst of blocked queries must not grow memory). */
const MAX_DNS_CAPACITY = 4096;

/** One flow-log line, as JSON.parse returns it (see docs/OBSERVABILITY.md). */
export interface FlowLogLine {
  time: string;
  event: 'flow_end';
  reason: 'expired' | 'evicted' | 'deleted' | 'onramp_removed' | 'dlp_cut' | 'policy_cut';
  family: 4 | 6;
  protocol: string;
  src: string;
  src_port: number;
  dst: string;
  dst_port: number;
  /** The tuple as it left the edge in the original direction, when the flow is translated (NAT, clash, hairpin). */
  translated?: { src: string; src_port: number; dst: string; dst_port: number };
  zone: number;
  site: string;
  onramp: string;
  /** Where replies went: the recorded onramp with ARR; null without (the routing table decided). */
  return_onramp: string | null;
  next_hop: string;
  rule: number;
  rule_name?: string;
  packets_orig: number;
  packets_reply: number;
  bytes_orig: number;
  bytes_reply: number;
  duration_s: number;
  established: boolean;
  tcp_state?: string;
  arr: boolean;
  nat: boolean;
  clash: boolean;
  hairpin: boolean;
  /** The gateway rule that decided the flow (0: none) and its action; absent when the gateway decided nothing. */
  gateway_rule?: number;
  gateway_action?: string;
  /** How classification ended (docs/POLICY.md "Hostname rules: how a flow is classified"), when the flow waited for a name. */
  classify?: string;
  /** The name the flow was decided with, and where it was read (SNI, Host). */
  name_source?: string;
  name?: string;
  /**
   * DLP matches on this flow (profile, detector, direction, stream offset, action, the gateway rule): never the
   * matched bytes. Absent when none. A flow cut by a `block` profile ends with reason 'dlp_cut'.
   */
  dlp?: Array<{ profile: string; detector: string; direction: 'client_to_server' | 'server_to_client'; offset: number; action: 'block' | 'log'; rule: number }>;
  /**
   * reason policy_cut: the policy change that cut the flow (docs/POLICY.md, "Epochs"): the epoch, the layer
   * whose rule no longer allows it, that rule's id (firewall: 0 = the default action) and, for the firewall, its name.
   */
  cut?: { policy_epoch: number; by: 'firewall' | 'gateway'; rule: number; rule_name?: string };
}

export class FlowLogger {
  /** Lines handed to the destination. */
  linesWritten = 0;
  /** Ended flows not logged: the ring was full, or the destination had maxPendingBytes queued. */
  linesDropped = 0;
  lastError: Error | null = null;

  private readonly pipeline: Pipeline;
  private readonly names: Names;
  private readonly clock: () => number;
  private readonly wallClock: () => number;
  private readonly ring: Float64Array;
  /** The classified name of each captured flow (a reference to the pipeline's string: no copy, no allocation). */
  private readonly ringNames: Array<string | undefined>;
  /** Per captured record: its names as they were when the flow ended (preallocated; see FlowNames). */
  private readonly ringLabels: FlowNames[];
  /** Per captured record: the flow's DLP events (the tracker's own list, kept by reference), or null. */
  private readonly dlpRing: Array<readonly DlpEvent[] | null>;
  private readonly capacity: number;
  private readonly maxPendingBytes: number;
  private readonly stream: Writable;
  private readonly ownsStream: boolean;
  private readonly flushIntervalMs: number;
  private readonly onError: (err: Error) => void;
  private head = 0;
  private count = 0;
  private timer: NodeJS.Timeout | null = null;
  private previous: Pipeline['onFlowEnd'] = null;
  private previousDns: Pipeline['onGatewayDns'] = null;
  /** Gateway DNS events: a ring of preallocated records (dnsHead: next to fill; dnsCount: filled). */
  private readonly dnsRing: DnsRecord[];
  private dnsHead = 0;
  private dnsCount = 0;
  private attached = false;
  private closed = false;

  private readonly hook = (table: FlowTable, flow: number, reason: RemoveReason): void => {
    this.capture(table, flow, reason);
    if (this.previous !== null) this.previous(table, flow, reason);
  };

  private readonly dnsHook = (e: DnsGateEvent): void => {
    this.captureDns(e);
    if (this.previousDns !== null) this.previousDns(e);
  };

  constructor(opts: FlowLoggerOptions) {
    this.pipeline = opts.pipeline;
    this.names = opts.names ?? new NameBook(opts.pipeline);
    this.clock = opts.clock ?? (() => performance.now());
    this.wallClock = opts.wallClock ?? Date.now;
    this.capacity = opts.capacity ?? DEFAULT_CAPACITY;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new RangeError(`flow log capacity must be a positive integer, got ${opts.capacity}`);
    this.ring = new Float64Array(this.capacity * RECORD_SLOTS);
    this.ringNames = new Array<string | undefined>(this.capacity).fill(undefined);
    this.ringLabels = Array.from({ length: this.capacity }, () => new FlowNames());
    this.dnsRing = Array.from({ length: Math.min(this.capacity, MAX_DNS_CAPACITY) }, () => new DnsRecord());
    this.dlpRing = new Array<readonly DlpEvent[] | null>(this.capacity).fill(null);
    this.maxPendingBytes = opts.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
    this.flushIntervalMs = opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
    this.onError = opts.onError ?? ((err) => void err);
    const dest = opts.destination;
    if (dest === 'stdout') {
      this.stream = process.stdout;
      this.ownsStream = false;
    } else if (typeof dest === 'string') {
      if (dest === '' || dest === 'off') throw new RangeError(`flow log destination must be 'stdout' or a file path, got '${dest}'`);
      // Flow logs name hosts and conversations: readable by the operator alone (0600; umask can only narrow it).
      this.stream = createWriteStream(dest, { flags: 'a', mode: FLOW_LOG_FILE_MODE });
      this.ownsStream = true;
    } else {
      this.stream = dest;
      this.ownsStream = false;
    }
    this.stream.on('error', this.fail);
  }

  /** Hooks pipeline.onFlowEnd (keeping any hook already there, which is still called) and starts the flush timer. */
  start(): void {
    if (this.attached || this.closed) return;
    this.previous = this.pipeline.onFlowEnd;
    this.pipeline.onFlowEnd = this.hook;
    this.previousDns = this.pipeline.onGatewayDns;
    this.pipeline.onGatewayDns = this.dnsHook;
    this.attached = true;
    if (this.flushIntervalMs > 0) {
      this.timer = setInterval(() => this.flush(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Ended flows and gateway DNS events captured and not yet written. */
  get pending(): number {
    return this.count + this.dnsCount;
  }

  /** Writes every captured flow now, as one chunk; returns the number of lines written. */
  flush(): number {
    const flows = this.count;
    const dns = this.dnsCount;
    const n = flows + dns;
    if (n === 0) return 0;
    const first = (this.head - flows + this.capacity) % this.capacity;
    const dnsSize = this.dnsRing.length;
    const dnsFirst = (this.dnsHead - dns + dnsSize) % dnsSize;
    this.count = 0;
    this.dnsCount = 0;
    const stream = this.stream;
    if (stream.destroyed || !stream.writable || stream.writableLength > this.maxPendingBytes) {
      // Failed (lastError says why), or cannot keep up (slow disk, a stdout pipe nobody reads): shed, do not queue.
      this.linesDropped += n;
      return 0;
    }
    const lines: string[] = new Array<string>(n);
    for (let k = 0; k < flows; k++) lines[k] = JSON.stringify(this.line((first + k) % this.capacity));
    for (let k = 0; k < dns; k++) lines[flows + k] = JSON.stringify(this.dnsLine(this.dnsRing[(dnsFirst + k) % dnsSize]));
    stream.write(lines.join('\n') + '\n');
    this.linesWritten += n;
    return n;
  }

  /**
   * Whole lines another lane's logger wrote (daemon.lanes > 1: each lane logs its own flows and sends its chunks
   * here): one write() each, like flush()'s, so lines of two lanes never interleave; shed and counted the same way.
   * `dropped`: lines that lane could not log (its ring was full).
   */
  append(text: string, lines: number, dropped: number): void {
    this.linesDropped += dropped;
    if (lines === 0 || this.closed) return;
    const stream = this.stream;
    if (stream.destroyed || !stream.writable || stream.writableLength > this.maxPendingBytes) {
      this.linesDropped += lines;
      return;
    }
    stream.write(text);
    this.linesWritten += lines;
  }

  /** Unhooks (restoring the previous hook), writes what is pending, and closes a file it opened. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.attached && this.pipeline.onFlowEnd === this.hook) this.pipeline.onFlowEnd = this.previous;
    if (this.attached && this.pipeline.onGatewayDns === this.dnsHook) this.pipeline.onGatewayDns = this.previousDns;
    this.attached = false;
    this.flush();
    this.closed = true;
    if (!this.ownsStream) return;
    const stream = this.stream;
    await new Promise<void>((resolve) => {
      if (stream.destroyed) {
        resolve();
        return;
      }
      stream.once('close', () => resolve());
      stream.end();
    });
  }

  private readonly fail = (err: Error): void => {
    this.lastError = err;
    this.onError(err);
  };

  /** On the flow's end, before its slot is reused: numbers only. */
  private capture(table: FlowTable, flow: number, reason: RemoveReason): void {
    if (this.count === this.capacity) {
      this.linesDropped++;
      return;
    }
    const r = this.ring;
    const at = this.head * RECORD_SLOTS;
    const ingress = table.ingressPort(flow);
    const now = this.clock();
    // An expired flow ended at its deadline (last packet + idle timeout), not when the sweep found it.
    const end = reason === RemoveReason.Expired ? Math.min(now, table.deadline(flow)) : now;
    r[at + R_WALL] = this.wallClock() - (now - end);
    r[at + R_NOW] = end;
    r[at + R_REASON] = reason;
    r[at + R_FAMILY] = table.addrWords === 1 ? 4 : 6;
    r[at + R_PROTOCOL] = table.protocol(flow);
    r[at + R_STATE] = table.state(flow);
    r[at + R_FLAGS] = table.flags(flow);
    r[at + R_INGRESS] = ingress;
    r[at + R_RETURN] = table.returnPort(flow);
    r[at + R_NEXT_HOP] = table.nextHop(flow);
    r[at + R_RULE] = table.ruleId(flow);
    r[at + R_CREATED] = table.createdAt(flow);
    r[at + R_PACKETS] = table.packets(flow, 0);
    r[at + R_PACKETS + 1] = table.packets(flow, 1);
    r[at + R_BYTES] = table.bytes(flow, 0);
    r[at + R_BYTES + 1] = table.bytes(flow, 1);
    const ports = this.pipeline.ports;
    r[at + R_SITE] = ports.site[ingress];
    r[at + R_ESTABLISHED] = table.isEstablished(flow) ? 1 : 0;
    const words = table.addrWords;
    for (let dir = 0; dir < 2; dir++) {
      const node = flow * 2 + dir;
      const n = at + R_NODE + dir * NODE_SLOTS;
      r[n + N_ZONE] = table.nodeZone(node);
      r[n + N_PORTS] = table.nodePorts(node);
      for (let w = 0; w < 4; w++) {
        r[n + N_SRC + w] = w < words ? table.nodeSrc(node, w) : 0;
        r[n + N_DST + w] = w < words ? table.nodeDst(node, w) : 0;
      }
    }
    const labels = this.ringLabels[this.head];
    const names = this.names;
    // A removed onramp's port has forgotten its site (ports.remove, before its flows end): the name book has not.
    labels.site = ports.configured[ingress] === 1 ? names.site(r[at + R_SITE]) : (names.onrampSite?.(ingress) ?? names.site(r[at + R_SITE]));
    labels.onramp = names.onramp(ingress);
    labels.returnOnramp = names.onramp(r[at + R_RETURN]);
    labels.nextHop = names.onramp(r[at + R_NEXT_HOP]);
    labels.rule = names.rule(r[at + R_RULE]);
    labels.cutRule = undefined;
    r[at + R_GATEWAY] = this.pipeline.gatewayOf(table, flow);
    this.ringNames[this.head] = this.pipeline.flowName(table, flow)?.name;
    const events = this.pipeline.dlpEvents(table, flow);
    this.dlpRing[this.head] = events.length === 0 ? null : events;
    if (reason === RemoveReason.PolicyCut) {
      const cut = this.pipeline.lastCut;
      r[at + R_CUT_EPOCH] = cut.epoch;
      r[at + R_CUT_LAYER] = cut.layer;
      r[at + R_CUT_RULE] = cut.ruleId;
      if (cut.layer !== CUT_BY_GATEWAY) labels.cutRule = names.rule(cut.ruleId);
    }
    this.head = this.head + 1 === this.capacity ? 0 : this.head + 1;
    this.count++;
  }

  /** On the packet path, per gateway DNS event: copies numbers into a preallocated record (the name is the parser's string). */
  private captureDns(e: DnsGateEvent): void {
    const size = this.dnsRing.length;
    if (this.dnsCount === size) {
      this.linesDropped++;
      return;
    }
    const d = this.dnsRing[this.dnsHead];
    d.wall = this.wallClock();
    d.ruleId = e.ruleId;
    d.action = e.action;
    d.name = e.name;
    d.qtype = e.qtype;
    d.rcode = e.rcode;
    d.answers = e.answers;
    d.family = e.family;
    d.addr.set(e.addr);
    d.srcPort = e.srcPort;
    d.site = this.names.site(e.site);
    d.onramp = this.names.onramp(e.ingress);
    this.dnsHead = this.dnsHead + 1 === size ? 0 : this.dnsHead + 1;
    this.dnsCount++;
  }

  private dnsLine(d: DnsRecord): DnsLogLine {
    const addr = (at: number): string => (d.family === 4 ? formatIpv4(d.addr[at]) : formatIpv6(d.addr, at));
    const rule = this.pipeline.gateway?.spec.rules.find((r) => r.id === d.ruleId);
    return {
      time: new Date(d.wall).toISOString(),
      event: 'gateway_dns',
      action: d.action,
      rule: d.ruleId,
      rule_name: rule?.name,
      name: d.name,
      qtype: d.qtype,
      rcode: d.rcode < 0 ? null : (RCODE_NAMES[d.rcode] ?? null),
      answers: d.answers,
      family: d.family,
      src: addr(0),
      src_port: d.srcPort,
      dst: addr(4),
      site: d.site,
      onramp: d.onramp,
    };
  }

  /** The line of captured record `slot`. */
  private line(slot: number): FlowLogLine {
    const r = this.ring;
    const at = slot * RECORD_SLOTS;
    const labels = this.ringLabels[slot];
    const family = r[at + R_FAMILY] === AF_INET4 ? 4 : 6;
    const addr = (index: number): string => (family === 4 ? formatIpv4(r[index]) : formatIpv6(r, index));
    const orig = at + R_NODE;
    const reply = orig + NODE_SLOTS;
    const origPorts = r[orig + N_PORTS];
    const flags = r[at + R_FLAGS];
    const protocol = r[at + R_PROTOCOL];
    const nowSeconds = Math.floor(r[at + R_NOW] / MS_PER_SECOND);
    // createdAt is kept modulo 2^32 seconds; so is the difference.
    let duration = (nowSeconds - r[at + R_CREATED]) % TWO_POW_32;
    if (duration < 0) duration += TWO_POW_32;
    const ruleId = r[at + R_RULE];
    const out: FlowLogLine = {
      time: new Date(r[at + R_WALL]).toISOString(),
      event: 'flow_end',
      reason: REASON_NAMES[r[at + R_REASON]] as FlowLogLine['reason'],
      family,
      protocol: protocolName(protocol),
      src: addr(orig + N_SRC),
      src_port: origPorts >>> PORT_SHIFT,
      dst: addr(orig + N_DST),
      dst_port: origPorts & PORT_MASK,
      // Optional fields hold their place (JSON.stringify skips undefined) so every line reads in one order.
      translated: undefined,
      zone: r[orig + N_ZONE],
      site: labels.site,
      onramp: labels.onramp,
      return_onramp: (flags & FLAG_ARR) !== 0 ? labels.returnOnramp : null,
      next_hop: labels.nextHop,
      rule: ruleId,
      rule_name: labels.rule,
      packets_orig: r[at + R_PACKETS],
      packets_reply: r[at + R_PACKETS + 1],
      bytes_orig: r[at + R_BYTES],
      bytes_reply: r[at + R_BYTES + 1],
      duration_s: duration,
      established: r[at + R_ESTABLISHED] === 1,
      tcp_state: protocol === IPPROTO_TCP ? (TCP_STATE_NAMES[r[at + R_STATE]] ?? String(r[at + R_STATE])) : undefined,
      arr: (flags & FLAG_ARR) !== 0,
      nat: (flags & FLAG_POOL) !== 0,
      clash: (flags & FLAG_CLASH) !== 0,
      hairpin: (flags & FLAG_HAIRPIN) !== 0,
      dlp: undefined,
    };
    const gw = r[at + R_GATEWAY];
    if (gatewayWordAction(gw) !== GW_ACTION_NONE || gatewayWordOutcome(gw) >= 0) {
      out.gateway_rule = gatewayWordRule(gw);
      out.gateway_action = GW_ACTION_NAMES[gatewayWordAction(gw)];
      const outcome = gatewayWordOutcome(gw);
      if (outcome >= 0) out.classify = CLASSIFY_OUTCOME_NAMES[outcome];
      const name = this.ringNames[slot];
      if (name !== undefined) {
        out.name_source = nameSourceText(gatewayWordSource(gw));
        out.name = name;
      }
    }
    this.ringNames[slot] = undefined;
    const events = this.dlpRing[slot];
    if (events !== null) {
      this.dlpRing[slot] = null;
      out.dlp = events.map((e) => ({ profile: e.profile, detector: e.detector, direction: e.direction === 0 ? 'client_to_server' : 'server_to_client', offset: e.offset, action: e.action, rule: e.ruleId }));
    }
    if (r[at + R_REASON] === RemoveReason.PolicyCut) {
      const byGateway = r[at + R_CUT_LAYER] === CUT_BY_GATEWAY;
      const rule = r[at + R_CUT_RULE];
      out.cut = { policy_epoch: r[at + R_CUT_EPOCH], by: byGateway ? 'gateway' : 'firewall', rule, rule_name: labels.cutRule };
    }
    if ((flags & FLAG_TRANSLATE) !== 0) {
      // The reply key, ends swapped: the original direction as it left the edge.
      const replyPorts = r[reply + N_PORTS];
      out.translated = {
        src: addr(reply + N_DST),
        src_port: replyPorts & PORT_MASK,
        dst: addr(reply + N_SRC),
        dst_port: replyPorts >>> PORT_SHIFT,
      };
    }
    return out;
  }
}

/**
 * The logger for the configuration's `log.flow_log` ('off' | 'stdout' | a path): null for 'off'.
 * The caller starts it (start()) and closes it on shutdown (close()).
 */
export function flowLoggerFor(setting: string, opts: Omit<FlowLoggerOptions, 'destination'>): FlowLogger | null {
  if (setting === 'off' || setting === '') return null;
  return new FlowLogger({ ...opts, destination: setting });
}
