/**
 * Flow logs (docs/OBSERVABILITY.md): one JSON line per ended flow, to stdout or appended to a file.
 *
 *   flow ends (expired in pipeline.expire, evicted by a create on the packet path, deleted)
 *     └─ pipeline.onFlowEnd ─► capture(): ~40 numbers copied into a preallocated ring (no allocation,
 *                               no text: an eviction runs inside process(), on the packet path)
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
/** A flow cut by a policy change (RemoveReason.PolicyCut): Pipeline.lastCut's epoch, layer and rule id. */
const R_CUT_EPOCH = R_NODE + 2 * NODE_SLOTS;
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
const REASON_NAMES: readonly string[] = ['', 'expired', 'evicted', 'deleted', 'onramp_removed', 'policy_cut'];
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

/** One flow-log line, as JSON.parse returns it (see docs/OBSERVABILITY.md). */
export interface FlowLogLine {
  time: string;
  event: 'flow_end';
  reason: 'expired' | 'evicted' | 'deleted' | 'onramp_removed' | 'policy_cut';
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
  private attached = false;
  private closed = false;

  private readonly hook = (table: FlowTable, flow: number, reason: RemoveReason): void => {
    this.capture(table, flow, reason);
    if (this.previous !== null) this.previous(table, flow, reason);
  };

  constructor(opts: FlowLoggerOptions) {
    this.pipeline = opts.pipeline;
    this.names = opts.names ?? new NameBook(opts.pipeline);
    this.clock = opts.clock ?? (() => performance.now());
    this.wallClock = opts.wallClock ?? Date.now;
    this.capacity = opts.capacity ?? DEFAULT_CAPACITY;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new RangeError(`flow log capacity must be a positive integer, got ${opts.capacity}`);
    this.ring = new Float64Array(this.capacity * RECORD_SLOTS);
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
    this.attached = true;
    if (this.flushIntervalMs > 0) {
      this.timer = setInterval(() => this.flush(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Ended flows captured and not yet written. */
  get pending(): number {
    return this.count;
  }

  /** Writes every captured flow now, as one chunk; returns the number of lines written. */
  flush(): number {
    const n = this.count;
    if (n === 0) return 0;
    const first = (this.head - n + this.capacity) % this.capacity;
    this.count = 0;
    const stream = this.stream;
    if (stream.destroyed || !stream.writable || stream.writableLength > this.maxPendingBytes) {
      // Failed (lastError says why), or cannot keep up (slow disk, a stdout pipe nobody reads): shed, do not queue.
      this.linesDropped += n;
      return 0;
    }
    const lines: string[] = new Array<string>(n);
    for (let k = 0; k < n; k++) lines[k] = JSON.stringify(this.line((first + k) % this.capacity));
    stream.write(lines.join('\n') + '\n');
    this.linesWritten += n;
    return n;
  }

  /** Unhooks (restoring the previous hook), writes what is pending, and closes a file it opened. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.attached && this.pipeline.onFlowEnd === this.hook) this.pipeline.onFlowEnd = this.previous;
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
    r[at + R_SITE] = this.pipeline.ports.site[ingress];
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
    if (reason === RemoveReason.PolicyCut) {
      const cut = this.pipeline.lastCut;
      r[at + R_CUT_EPOCH] = cut.epoch;
      r[at + R_CUT_LAYER] = cut.layer;
      r[at + R_CUT_RULE] = cut.ruleId;
    }
    this.head = this.head + 1 === this.capacity ? 0 : this.head + 1;
    this.count++;
  }

  /** The line of captured record `slot`. */
  private line(slot: number): FlowLogLine {
    const r = this.ring;
    const at = slot * RECORD_SLOTS;
    const names = this.names;
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
    const ruleName = names.rule(ruleId);
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
      site: names.site(r[at + R_SITE]),
      onramp: names.onramp(r[at + R_INGRESS]),
      return_onramp: (flags & FLAG_ARR) !== 0 ? names.onramp(r[at + R_RETURN]) : null,
      next_hop: names.onramp(r[at + R_NEXT_HOP]),
      rule: ruleId,
      rule_name: ruleName,
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
    };
    if (r[at + R_REASON] === RemoveReason.PolicyCut) {
      const byGateway = r[at + R_CUT_LAYER] === CUT_BY_GATEWAY;
      const rule = r[at + R_CUT_RULE];
      out.cut = { policy_epoch: r[at + R_CUT_EPOCH], by: byGateway ? 'gateway' : 'firewall', rule, rule_name: byGateway ? undefined : names.rule(rule) };
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
