/**
 * The gateway's DNS stage (issue 12; docs/GATEWAY.md "DNS at the edge"): a UDP query to port 53 from an onramp is
 * read (src/gateway/dns.ts parseDnsQuery), its name decided by the gateway policy (NameSource.Dns), and a block or
 * override answered by the edge itself — NXDOMAIN, or the override's addresses — written into preallocated space
 * as a UDP datagram from the server the client asked, back to the client. allow, log and no rule: the query goes
 * on to the server unchanged.
 *
 * Pure: no I/O, no clock. The pipeline asks it for every query of a flow toward UDP port 53 (FLAG_DNS), not only
 * a flow's first: a resolver may send many queries from one source port.
 *
 * Cost: reading a name builds a string (the policy matches strings) and the parser's result; that is paid per
 * query of a port-53 flow while rules read DNS names, never by other flows. The answer itself allocates nothing.
 */
import { DNS_ANSWER_ROOM, RCODE_NOERROR, RCODE_NXDOMAIN, parseDnsQuery, writeNxdomain, writeOverride, type DnsOverride, type DnsQuestion } from '../gateway/dns.js';
import { ALL_NAME_SOURCES, GATEWAY_NO_RULE, NameSource, type GatewayRules } from '../gateway/policy.js';
import { parseAddress } from '../wire/addr.js';
import { read16 } from '../wire/bytes.js';
import { AF_INET4, AF_INET6, IPPROTO_UDP, UDP_HEADER, UDP_LENGTH } from '../wire/constants.js';
import type { PacketInfo } from '../wire/packet-info.js';
import { UDP4_PAYLOAD_AT, UDP6_PAYLOAD_AT, writeUdp4, writeUdp6 } from '../wire/udp-write.js';

/** RFC 1035 section 4.2.1: DNS over UDP is served on port 53. */
export const DNS_PORT = 53;

/** inspect(): the query goes on to its server (allow, log, no rule). */
export const DNS_FORWARD = 0;
/** inspect(): not a DNS query the edge can read (a fragment, a response, malformed): forwarded, counted. */
export const DNS_UNPARSED = -1;

/** Source and destination words of the packet being answered (info.addr layout). */
const SRC = 0;
const DST = 4;

/** What the gateway answered, or logged, for one query; one object, refilled per event (copy what you keep). */
export class DnsGateEvent {
  /** The gateway rule's id (GatewayRuleSpec.id). */
  ruleId = 0;
  action: 'block' | 'override' | 'log' = 'log';
  /** The question's name (presentation form, lower-cased), its QTYPE. */
  name = '';
  qtype = 0;
  /** The answer's RCODE (RFC 1035 section 4.1.1: 0 NOERROR, 3 NXDOMAIN); -1 when not answered (log). */
  rcode = -1;
  /** Answer records given (override). */
  answers = 0;
  ingress = 0;
  site = 0;
  family: 4 | 6 = 4;
  /** The client's address (words 0..3, IPv4 in word 0) and port; the server's address (words 4..7). */
  readonly addr = new Uint32Array(8);
  srcPort = 0;
}

interface RuleAnswer {
  readonly nxdomain: boolean;
  readonly override: DnsOverride | null;
}

export class DnsGate {
  /** The answer datagram inspect() wrote, at 0. */
  readonly out = new Uint8Array(UDP6_PAYLOAD_AT + DNS_ANSWER_ROOM);
  readonly event = new DnsGateEvent();
  /** Some rule reads DNS names (a hostname condition whose sources include dns): only then are queries read. */
  active = false;
  /** The rule index the last inspect() decided with; GATEWAY_NO_RULE when none (or the datagram was not read). */
  rule = GATEWAY_NO_RULE;
  private policy: GatewayRules | null = null;
  /** Per rule index: how an override rule answers (null for other actions). */
  private answers: Array<RuleAnswer | null> = [];

  /** Compiles what the rules answer with (control plane: on every policy change). */
  setPolicy(policy: GatewayRules | null): void {
    this.policy = policy;
    this.answers = [];
    this.active = false;
    if (policy === null) return;
    const words = new Uint32Array(4);
    for (let i = 0; i < policy.size; i++) {
      const r = policy.rule(i);
      if ((r.hostnames ?? []).length > 0 && ((r.sources ?? ALL_NAME_SOURCES) & NameSource.Dns) !== 0) this.active = true;
      if (r.action !== 'override' || r.override === undefined) {
        this.answers.push(null);
        continue;
      }
      const ipv4: number[] = [];
      const ipv6: Uint32Array[] = [];
      for (const text of r.override.addresses) {
        const family = parseAddress(text, words);
        if (family === AF_INET4) ipv4.push(words[0]);
        else if (family === AF_INET6) ipv6.push(words.slice());
        else throw new RangeError(`gateway rule ${r.id}: override address "${text}" is not an IP address`);
      }
      this.answers.push({ nxdomain: r.override.nxdomain === true, override: { ipv4, ipv6, ttl: r.override.ttl } });
    }
  }

  /**
   * The UDP datagram `info` (inspected, to port 53, from `ingress` of `site`): its answer's length in `out` (> 0),
   * DNS_FORWARD, or DNS_UNPARSED. The deciding rule's index is left in `rule`; one that blocks, overrides or logs
   * also fills `event`.
   */
  inspect(buf: Uint8Array, info: PacketInfo, site: number, ingress: number): number {
    const policy = this.policy;
    this.rule = GATEWAY_NO_RULE;
    if (policy === null || info.protocol !== IPPROTO_UDP) return DNS_FORWARD;
    // A fragment's payload is cut short: the question may not be in it (real queries are never fragmented).
    if (info.isFragment || info.l4Length < UDP_HEADER) return DNS_UNPARSED;
    const udpLength = read16(buf, info.l4Offset + UDP_LENGTH);
    if (udpLength < UDP_HEADER || udpLength > info.l4Length) return DNS_UNPARSED;
    const parsed = parseDnsQuery(buf, info.l4Offset + UDP_HEADER, udpLength - UDP_HEADER);
    if (parsed.kind !== 'query') return DNS_UNPARSED;
    const q = parsed.question;
    const v4 = info.family === AF_INET4;
    const a = info.addr;
    const index = v4
      ? policy.decide4(site, ingress, IPPROTO_UDP, a[SRC], a[DST], info.srcPort, info.dstPort, NameSource.Dns, q.name)
      : policy.decide6(site, ingress, IPPROTO_UDP, a, SRC, DST, info.srcPort, info.dstPort, NameSource.Dns, q.name);
    this.rule = index;
    if (index === GATEWAY_NO_RULE || index < 0) return DNS_FORWARD;
    const spec = policy.rule(index);
    if (spec.action === 'allow') return DNS_FORWARD;
    const e = this.event;
    e.ruleId = spec.id;
    e.action = spec.action;
    e.name = q.name;
    e.qtype = q.qtype;
    e.rcode = -1;
    e.answers = 0;
    e.ingress = ingress;
    e.site = site;
    e.family = v4 ? 4 : 6;
    e.addr.set(a);
    e.srcPort = info.srcPort;
    if (spec.action === 'log') return DNS_FORWARD;
    const at = v4 ? UDP4_PAYLOAD_AT : UDP6_PAYLOAD_AT;
    const n = this.writeAnswer(q, this.answers[index], at);
    // From the server the client asked (its destination), from port 53, to the client's address and port.
    return v4
      ? writeUdp4(this.out, 0, a[DST], a[SRC], info.dstPort, info.srcPort, n)
      : writeUdp6(this.out, 0, a, DST, SRC, info.dstPort, info.srcPort, n);
  }

  private writeAnswer(q: DnsQuestion, answer: RuleAnswer | null, at: number): number {
    const e = this.event;
    const out = this.out;
    // block, or an override that says nxdomain: the name does not exist (RFC 1035 section 4.1.1 RCODE 3).
    if (answer === null || answer.nxdomain || answer.override === null) {
      e.rcode = RCODE_NXDOMAIN;
      return writeNxdomain(q, out, at);
    }
    e.rcode = RCODE_NOERROR;
    const n = writeOverride(q, answer.override, out, at);
    e.answers = read16(out, at + ANCOUNT_AT);
    return n;
  }
}

/** RFC 1035 section 4.1.1: ANCOUNT's offset in the header. */
const ANCOUNT_AT = 6;
