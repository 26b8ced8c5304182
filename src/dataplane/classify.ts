/**
 * The `classifying` state of a TCP flow (docs/FLOW-MODEL.md, docs/POLICY.md "Hostname rules: how a flow is
 * classified"): what the pipeline keeps for a flow whose first gateway rule needs a name, until it is decided.
 *
 *   setup ── GATEWAY_NEED_NAME ──► Classifying record (start time, the rule it waits on, the policy)
 *                                     │  handshake and pure ACKs pass
 *   client payload ─► in order? ──────┤  yes: a held-packet slot from the pool (first payload only), the packet
 *                     retransmission  │       copied in, its new bytes fed to SniParser (first byte 0x16, a TLS
 *                     of held bytes:  │       handshake record, RFC 8446 §5.1) or HttpHostParser (anything else)
 *                     dropped; past   │
 *                     a gap: dropped  ▼
 *                                  decided (name, no name, not the protocol, malformed) ─► the policy decides
 *                                  too large, the wait over, no free slot ─────────────► the rule's fallback
 *
 * Pool: at most `slots` held-packet slots, each allocated on first use and reused ever after (one packet store
 * of bufferBytes payload plus header room for MAX_HELD_PACKETS packets, and one parser of each kind, reset per
 * flow): a classifying flow costs its slot only from its first payload byte to its decision, and a flood of
 * handshakes that never send costs no slot. Records are pooled the same way. Nothing here is touched by a flow
 * that is not classifying; nothing is allocated per packet once the pool is warm.
 */
import type { FlowTable } from '../flow/flow-table.js';
import { NameSource, type GatewayRules } from '../gateway/policy.js';
import { HttpHostParser } from '../gateway/http-host.js';
import { NEED_MORE, type ClassifyResult } from '../gateway/result.js';
import { SniParser } from '../gateway/tls-sni.js';

/** How a classification ended; the index of PipelineCounters.classifyOutcomes. */
export const enum ClassifyOutcome {
  /** A name: the rules decided with it. */
  Name = 0,
  /** The protocol without a name (a ClientHello without server_name, HTTP/1.0 without Host): decided with none. */
  NoName = 1,
  /** Neither TLS nor HTTP/1.x: decided with no name. */
  NotProtocol = 2,
  /** TLS or HTTP, broken: decided with no name. */
  Malformed = 3,
  /** More than bufferBytes (or MAX_HELD_PACKETS segments) before a decision: the fallback. */
  TooLarge = 4,
  /** waitMs passed since the flow's first packet without a decision: the fallback. */
  Timeout = 5,
  /** No free slot in the pool at the first payload: the fallback. */
  NoBuffer = 6,
  /** The server sent payload first (SMTP, SSH, FTP): decided with no name, nothing is held. */
  ServerFirst = 7,
  /** The client closed (FIN or RST) before a decision: decided with what was there (RST: nothing). */
  Closed = 8,
  /** The gateway rules were removed while the flow waited: no rule, it goes on. */
  PolicyGone = 9,
}
export const CLASSIFY_OUTCOME_COUNT = 10;
export const CLASSIFY_OUTCOME_NAMES: readonly string[] = [
  'name', 'no_name', 'not_protocol', 'malformed', 'too_large', 'timeout', 'no_buffer', 'server_first', 'closed', 'policy_gone',
];

/** Is the outcome one where the rule's fallback applies (no decision could be made in bounds)? */
export function isFallback(outcome: ClassifyOutcome): boolean {
  return outcome === ClassifyOutcome.TooLarge || outcome === ClassifyOutcome.Timeout || outcome === ClassifyOutcome.NoBuffer;
}

/** Held-packet slots when the configuration names none: 256 × ~50 KiB ≈ 12.5 MiB at most, only once used. */
export const DEFAULT_CLASSIFY_SLOTS = 256;
/**
 * Segments one flow may have held: a 16 KiB ClientHello is 12 segments at an MSS of 1,400; 64 leaves room for
 * small MSS values while bounding a client that trickles one byte per segment (then: too large, the fallback).
 */
export const MAX_HELD_PACKETS = 64;
/** Bytes of IP and TCP header allowed per held packet on top of the payload bound (IPv6 40 + TCP 60 + slack). */
const HEADER_ALLOWANCE = 128;
/** RFC 8446 §5.1: ContentType handshake(22), the first byte of every TLS ClientHello record. */
const TLS_HANDSHAKE = 22;

export const PARSER_NONE = 0;
export const PARSER_TLS = 1;
export const PARSER_HTTP = 2;

/** One flow's held packets and parsers. */
export class ClassifySlot {
  /** Held packets, back to back: packet k at starts[k], lengths[k] bytes, arrived on ingress[k]. */
  readonly store: Uint8Array;
  readonly starts = new Int32Array(MAX_HELD_PACKETS);
  readonly lengths = new Int32Array(MAX_HELD_PACKETS);
  readonly ingress = new Int32Array(MAX_HELD_PACKETS);
  count = 0;
  used = 0;
  /** Payload bytes fed to the parser so far. */
  fed = 0;
  parser = PARSER_NONE;
  readonly tls: SniParser;
  readonly http: HttpHostParser;
  /** The pool it belongs to (a policy change may make a new pool while this slot is still in use). */
  readonly pool: ClassifyPool;

  constructor(pool: ClassifyPool, bufferBytes: number) {
    this.pool = pool;
    this.store = new Uint8Array(bufferBytes + MAX_HELD_PACKETS * HEADER_ALLOWANCE);
    this.tls = new SniParser(bufferBytes);
    this.http = new HttpHostParser(bufferBytes);
  }

  reset(): void {
    this.count = 0;
    this.used = 0;
    this.fed = 0;
    this.parser = PARSER_NONE;
    this.tls.reset();
    this.http.reset();
  }

  /** Room for one more packet of `length` bytes? */
  fits(length: number): boolean {
    return this.count < MAX_HELD_PACKETS && this.used + length <= this.store.length;
  }

  /** Copies buf[offset, offset + length) in (the caller checked fits()). */
  hold(buf: Uint8Array, offset: number, length: number, ingress: number): void {
    const at = this.used;
    const store = this.store;
    // A byte loop: no view object per packet (packets are at most a generated batch slot).
    for (let i = 0; i < length; i++) store[at + i] = buf[offset + i];
    this.starts[this.count] = at;
    this.lengths[this.count] = length;
    this.ingress[this.count] = ingress;
    this.count++;
    this.used = at + length;
  }

  /** Feeds payload bytes in order; the first byte picks the parser. Returns the parser's answer so far. */
  feed(buf: Uint8Array, offset: number, length: number): ClassifyResult {
    if (length === 0) return this.current();
    if (this.parser === PARSER_NONE) this.parser = buf[offset] === TLS_HANDSHAKE ? PARSER_TLS : PARSER_HTTP;
    this.fed += length;
    return this.parser === PARSER_TLS ? this.tls.feed(buf, offset, length) : this.http.feed(buf, offset, length);
  }

  current(): ClassifyResult {
    if (this.parser === PARSER_NONE) return NEED_MORE;
    return this.parser === PARSER_TLS ? this.tls.current : this.http.current;
  }
}

/** A bounded pool of slots, each allocated on first use. */
export class ClassifyPool {
  readonly bufferBytes: number;
  readonly capacity: number;
  private readonly free: ClassifySlot[] = [];
  private made = 0;

  constructor(capacity: number, bufferBytes: number) {
    this.capacity = capacity;
    this.bufferBytes = bufferBytes;
  }

  /** A reset slot, or null when all `capacity` are in use. */
  acquire(): ClassifySlot | null {
    let slot = this.free.pop();
    if (slot === undefined) {
      if (this.made >= this.capacity) return null;
      this.made++;
      slot = new ClassifySlot(this, this.bufferBytes);
    }
    slot.reset();
    return slot;
  }

  release(slot: ClassifySlot): void {
    this.free.push(slot);
  }

  get inUse(): number {
    return this.made - this.free.length;
  }
}

/** A flow waiting for its name. Pooled by the pipeline. */
export class Classifying {
  table: FlowTable | null = null;
  flow = -1;
  /** The flow's first packet (the SYN): the wait is measured from it. */
  startedAt = 0;
  /** The policy that asked for a name, and the rule index it waits on (its fallback applies). */
  policy: GatewayRules | null = null;
  pendingRule = -1;
  slot: ClassifySlot | null = null;
  /** The next client sequence number the classifier expects (valid once `started`). */
  nextSeq = 0;
  /** The sequence number of the first held byte: where the server's RCV.NXT stays until the flow is released. */
  firstSeq = 0;
  started = false;
  /** The client's last segment's sequence and acknowledgment numbers (for resets without a packet at hand). */
  lastSeq = 0;
  lastAck = 0;
  /** The client sent FIN: nothing more will come. */
  finished = false;

  clear(): void {
    this.table = null;
    this.flow = -1;
    this.policy = null;
    this.pendingRule = -1;
    this.slot = null;
    this.started = false;
    this.finished = false;
  }
}

// --- the gateway's decision word per flow (FlowTable.gateway) -------------------------------------------------
/** Actions as stored: 0 = the gateway decided nothing for the flow. */
export const GW_ACTION_NONE = 0;
export const GW_ACTION_ALLOW = 1;
export const GW_ACTION_LOG = 2;
export const GW_ACTION_BLOCK = 3;
export const GW_ACTION_OVERRIDE = 4;
export const GW_ACTION_NAMES: readonly string[] = ['none', 'allow', 'log', 'block', 'override'];
const RULE_MASK = 0xffff;
const SOURCE_SHIFT = 16;
const NIBBLE = 0xf;
const ACTION_SHIFT = 20;
const OUTCOME_SHIFT = 24;
const BYTE = 0xff;

export function gatewayActionCode(action: string): number {
  return action === 'block' ? GW_ACTION_BLOCK : action === 'log' ? GW_ACTION_LOG : action === 'override' ? GW_ACTION_OVERRIDE : GW_ACTION_ALLOW;
}

/** ruleId 0 = none; outcome -1 = not classified (decided at setup, or never asked). */
export function gatewayWord(ruleId: number, source: number, action: number, outcome: number): number {
  return ((ruleId & RULE_MASK) | ((source & NIBBLE) << SOURCE_SHIFT) | ((action & NIBBLE) << ACTION_SHIFT) | (((outcome + 1) & BYTE) << OUTCOME_SHIFT)) >>> 0;
}
export function gatewayWordRule(word: number): number {
  return word & RULE_MASK;
}
export function gatewayWordSource(word: number): number {
  return (word >>> SOURCE_SHIFT) & NIBBLE;
}
export function gatewayWordAction(word: number): number {
  return (word >>> ACTION_SHIFT) & NIBBLE;
}
/** The ClassifyOutcome, or -1 when the flow was not classified. */
export function gatewayWordOutcome(word: number): number {
  return ((word >>> OUTCOME_SHIFT) & BYTE) - 1;
}

/** NameSource → the word used in trails, logs and the API. */
export function nameSourceText(source: number): string {
  return source === NameSource.Sni ? 'SNI' : source === NameSource.HttpHost ? 'Host' : source === NameSource.Dns ? 'DNS' : 'none';
}

/** Past tense of each stored action, for trails. */
const ACTION_DONE: readonly string[] = ['', 'allowed', 'logged', 'blocked', 'overridden'];

/**
 * The trail line of a flow's gateway decision (word: FlowTable-side gatewayWord; name: Pipeline.flowName's), e.g.
 * "gateway rule 7 (no-social) blocked by SNI www.example-social.com"; null when the gateway decided nothing.
 * Control plane only (builds text).
 */
export function gatewayTrailText(word: number, name: string | undefined, ruleName: string | undefined): string | null {
  const action = gatewayWordAction(word);
  const outcome = gatewayWordOutcome(word);
  if (action === GW_ACTION_NONE && outcome < 0) return null;
  const rule = gatewayWordRule(word);
  const who = rule === 0 ? 'no gateway rule matched:' : `gateway rule ${rule}${ruleName !== undefined ? ` (${ruleName})` : ''}`;
  const done = rule === 0 ? 'allowed' : ACTION_DONE[action];
  if (outcome < 0) return `${who} ${done} at setup (no hostname condition)`;
  if (name !== undefined) return `${who} ${done} by ${nameSourceText(gatewayWordSource(word))} ${name}`;
  if (isFallback(outcome as ClassifyOutcome)) return `${who} ${done} by its fallback: ${CLASSIFY_OUTCOME_NAMES[outcome].replace('_', ' ')} while waiting for a name`;
  if (action === GW_ACTION_NONE) return `classification ended without a decision (${CLASSIFY_OUTCOME_NAMES[outcome].replace('_', ' ')})`;
  return `${who} ${done} with no name (${CLASSIFY_OUTCOME_NAMES[outcome].replace('_', ' ')})`;
}
