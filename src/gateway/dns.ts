/**
 * DNS over UDP at the edge: read a query's question (RFC 1035 §4.1) and write the edge's own answers to it —
 * NXDOMAIN for a blocked name, an A/AAAA override for a redirected one.
 *
 * Reading: the 12-octet header (§4.1.1), then exactly one question (§4.1.2: QDCOUNT must be 1, as every
 * resolver sends; more is `malformed`). Answer, authority and additional sections (EDNS's OPT record,
 * RFC 6891) are not read. Names may use compression pointers (§4.1.4) although queries rarely do; they are
 * followed safely: a pointer must point before the label run that contains it and after the header, so
 * every jump goes strictly backwards and the walk ends; at most 127 labels and 255 octets of name (§2.3.4);
 * label types 01 and 10 (RFC 6891 §5, obsolete) are `malformed`. Time and memory are bounded by the
 * message length.
 *
 * The name comes back in presentation form, lower-cased ASCII (RFC 4343 §3), no trailing dot; an octet that
 * cannot stand in a host name (a dot inside a label, a space, non-ASCII) is written `\DDD` (RFC 1035 §5.1),
 * so `a\046b.example` never matches a rule for `b.example`. The question's own wire bytes are kept, case
 * included, because resolvers that randomize the case of their queries (draft-vixie-dnsext-dns0x20) check
 * that the answer echoes it.
 */
import { read16, write16, write32 } from '../wire/bytes.js';
import { HYPHEN, UNDERSCORE, foldCase, isAlnum } from './ascii.js';

/** RFC 1035 §4.1.1. */
export const DNS_HEADER = 12;
const ID = 0;
const FLAGS = 2;
const QDCOUNT = 4;
const ANCOUNT = 6;
const NSCOUNT = 8;
const ARCOUNT = 10;
const FLAG_QR = 0x8000;
const OPCODE_SHIFT = 11;
const OPCODE_MASK = 0xf;
const OPCODE_QUERY = 0;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
/** RFC 1035 §4.1.4: the top two bits of a length octet: 00 label, 11 pointer. */
const LABEL_TYPE_MASK = 0xc0;
const LABEL_POINTER = 0xc0;
const POINTER_MASK = 0x3fff;
/** RFC 1035 §2.3.4. */
const MAX_NAME_WIRE = 255;
/** 255 octets hold at most 127 one-octet labels and the root. */
const MAX_LABELS = 127;
const QUESTION_FIXED = 4;
/** RFC 1035 §3.2.2 / RFC 3596 §2.1. */
export const QTYPE_A = 1;
export const QTYPE_AAAA = 28;
export const QCLASS_IN = 1;
/** RFC 1035 §4.1.1 RCODEs. */
export const RCODE_NOERROR = 0;
export const RCODE_NXDOMAIN = 3;
/** RFC 1035 §4.2.1: a UDP message without EDNS is at most 512 octets. */
const MAX_UDP_MESSAGE = 512;
/** Answer RR: pointer to the question name (2), type, class (4), TTL (4), RDLENGTH (2). */
const ANSWER_FIXED = 12;
/** A compression pointer to offset 12, where the question's name starts. */
const POINTER_TO_QUESTION = 0xc000 | DNS_HEADER;
const IPV4_BYTES = 4;
const IPV6_BYTES = 16;
/** RFC 2181 §8: a TTL is 0 … 2^31 − 1 seconds. */
export const MAX_TTL = 0x7fffffff;
/** RFC 1035 §5.1: \DDD, three decimal digits. */
const ESCAPE_DIGITS = 3;

export interface DnsQuestion {
  readonly id: number;
  /** The header's flags word as received. */
  readonly flags: number;
  /** Presentation form, lower-cased, `\DDD` escapes, no trailing dot; '' for the root. */
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  /** The name in uncompressed wire form, case as received (echoed in answers). */
  readonly nameWire: Uint8Array;
}

export type DnsQueryResult =
  | { readonly kind: 'query'; readonly question: DnsQuestion }
  /** A DNS message, but not a standard query: a response, another opcode. Let it pass or drop it; no answer. */
  | { readonly kind: 'not-query'; readonly reason: string }
  | { readonly kind: 'malformed'; readonly reason: string };

function malformed(reason: string): DnsQueryResult {
  return { kind: 'malformed', reason };
}

/** One octet of a label in presentation form: a host-name character lower-cased, anything else \DDD. */
function nameChar(c: number): string {
  if (isAlnum(c) || c === HYPHEN || c === UNDERSCORE) return String.fromCharCode(foldCase(c));
  return `\\${c.toString().padStart(ESCAPE_DIGITS, '0')}`;
}

export interface DnsName {
  /** Presentation form (see the top of this file). */
  readonly name: string;
  /** Uncompressed wire form, case as received. */
  readonly wire: Uint8Array;
  /** Where the record continues after the name (after its first pointer, or its root label). */
  readonly next: number;
}

/**
 * The name at `at` of the message buf[offset, end), following compression pointers (RFC 1035 §4.1.4), or
 * the problem. A pointer must point before the label run that holds it — so the jumps go strictly
 * backwards and a loop is impossible — and past the header. In a one-question query nothing but the header
 * precedes the name, so there every pointer is refused; answers and later records use them.
 */
/** The name being read, before it is copied out (module scratch: the reader is synchronous, never re-entered). */
const scratch = new Uint8Array(MAX_NAME_WIRE);

export function readDnsName(buf: Uint8Array, offset: number, end: number, at: number): DnsName | string {
  const wire = scratch;
  let wireLen = 0;
  let labels = 0;
  let name = '';
  let p = at;
  let next = -1;
  /** The start of the label run being read: a pointer must point before it. */
  let runStart = p;
  while (true) {
    if (p >= end) return 'name runs past the end of the message';
    const len = buf[p];
    const type = len & LABEL_TYPE_MASK;
    if (type === LABEL_POINTER) {
      if (p + 1 >= end) return 'compression pointer cut short';
      const target = offset + (read16(buf, p) & POINTER_MASK);
      if (target >= runStart) return 'compression pointer does not point backwards (loop)';
      if (target < offset + DNS_HEADER) return 'compression pointer into the header';
      if (next < 0) next = p + 2;
      p = runStart = target;
      continue;
    }
    if (type !== 0) return 'extended label type (RFC 6891 §5)';
    if (len === 0) {
      wire[wireLen++] = 0;
      if (next < 0) next = p + 1;
      return { name, wire: wire.slice(0, wireLen), next };
    }
    if (++labels > MAX_LABELS || wireLen + 1 + len + 1 > MAX_NAME_WIRE) return 'name longer than 255 octets';
    if (p + 1 + len > end) return 'label runs past the end of the message';
    wire[wireLen++] = len;
    if (labels > 1) name += '.';
    for (let k = 1; k <= len; k++) {
      const c = buf[p + k];
      wire[wireLen++] = c;
      name += nameChar(c);
    }
    p += 1 + len;
  }
}

/** Reads a query message in buf[offset, offset + length). Never throws; allocates the result only. */
export function parseDnsQuery(buf: Uint8Array, offset = 0, length = buf.length - offset): DnsQueryResult {
  const end = offset + length;
  if (length < DNS_HEADER) return malformed('shorter than the 12-octet DNS header');
  const flags = read16(buf, offset + FLAGS);
  if (flags & FLAG_QR) return { kind: 'not-query', reason: 'a response (QR=1), not a query' };
  const opcode = (flags >> OPCODE_SHIFT) & OPCODE_MASK;
  if (opcode !== OPCODE_QUERY) return { kind: 'not-query', reason: `opcode ${opcode} is not QUERY` };
  const qdcount = read16(buf, offset + QDCOUNT);
  if (qdcount !== 1) return malformed(`QDCOUNT is ${qdcount}, not 1`);
  const read = readDnsName(buf, offset, end, offset + DNS_HEADER);
  if (typeof read === 'string') return malformed(read);
  const after = read.next;
  if (after + QUESTION_FIXED > end) return malformed('question ends before QTYPE and QCLASS');
  return {
    kind: 'query',
    question: {
      id: read16(buf, offset + ID),
      flags,
      name: read.name,
      qtype: read16(buf, after),
      qclass: read16(buf, after + 2),
      nameWire: read.wire,
    },
  };
}

/** RFC 1035 §4.2.1: the most the edge ever writes (writeNxdomain, writeOverride): room for an answer. */
export const DNS_ANSWER_ROOM = MAX_UDP_MESSAGE;

/** Header and question of the answer to `q` at out[at]; returns where the answer records start. */
function writeHeaderAndQuestion(q: DnsQuestion, out: Uint8Array, at: number, rcode: number, answers: number): number {
  write16(out, at + ID, q.id);
  // QR, opcode QUERY, RD copied (RFC 1035 §4.1.1), RA: the edge answers as the recursive resolver would.
  write16(out, at + FLAGS, FLAG_QR | (q.flags & FLAG_RD) | FLAG_RA | rcode);
  write16(out, at + QDCOUNT, 1);
  write16(out, at + ANCOUNT, answers);
  write16(out, at + NSCOUNT, 0);
  write16(out, at + ARCOUNT, 0);
  out.set(q.nameWire, at + DNS_HEADER);
  let p = at + DNS_HEADER + q.nameWire.length;
  write16(out, p, q.qtype);
  write16(out, p + 2, q.qclass);
  p += QUESTION_FIXED;
  return p;
}

/** NXDOMAIN for `q` written at out[at] (DNS_ANSWER_ROOM bytes suffice); returns its length. Allocates nothing. */
export function writeNxdomain(q: DnsQuestion, out: Uint8Array, at: number): number {
  return writeHeaderAndQuestion(q, out, at, RCODE_NXDOMAIN, 0) - at;
}

/** NXDOMAIN for a blocked name: the question echoed, no records. */
export function buildNxdomain(q: DnsQuestion): Uint8Array {
  const out = new Uint8Array(DNS_HEADER + q.nameWire.length + QUESTION_FIXED);
  writeNxdomain(q, out, 0);
  return out;
}

export interface DnsOverride {
  /** IPv4 addresses as 32-bit numbers (wire/addr.ts parseIpv4). */
  readonly ipv4: readonly number[];
  /** IPv6 addresses as four 32-bit words (wire/addr.ts parseIpv6). */
  readonly ipv6: readonly Uint32Array[];
  /** Seconds, 0 … MAX_TTL. */
  readonly ttl: number;
}

/** Why an override cannot be answered with, or null. */
export function dnsOverrideProblem(o: DnsOverride): string | null {
  if (!Number.isInteger(o.ttl) || o.ttl < 0 || o.ttl > MAX_TTL) return `override TTL ${o.ttl} is not 0 … 2^31−1 seconds (RFC 2181 §8)`;
  if (o.ipv4.length === 0 && o.ipv6.length === 0) return 'override without an address';
  return null;
}

/**
 * The override answer for `q` written at out[at] (DNS_ANSWER_ROOM bytes suffice); returns its length. Class IN
 * queries for A get the IPv4 addresses, for AAAA the IPv6 ones, each with `ttl`; any other type or class, or a
 * family the override lacks (or no address at all), gets NOERROR with no records (NODATA, RFC 2308 §2.2), so
 * the client does not fall back to a real answer. Records that would take the message past 512 octets
 * (RFC 1035 §4.2.1) are left out. Allocates nothing; the TTL is taken as given (dnsOverrideProblem checks it).
 */
export function writeOverride(q: DnsQuestion, o: DnsOverride, out: Uint8Array, at: number): number {
  const inClass = q.qclass === QCLASS_IN;
  const v4 = inClass && q.qtype === QTYPE_A;
  const v6 = inClass && q.qtype === QTYPE_AAAA;
  const rdlength = v6 ? IPV6_BYTES : IPV4_BYTES;
  const head = DNS_HEADER + q.nameWire.length + QUESTION_FIXED;
  const available = v4 ? o.ipv4.length : v6 ? o.ipv6.length : 0;
  const fit = Math.max(0, Math.floor((MAX_UDP_MESSAGE - head) / (ANSWER_FIXED + rdlength)));
  const count = Math.min(available, fit);
  let p = writeHeaderAndQuestion(q, out, at, RCODE_NOERROR, count);
  for (let i = 0; i < count; i++) {
    write16(out, p, POINTER_TO_QUESTION);
    write16(out, p + 2, q.qtype);
    write16(out, p + 4, QCLASS_IN);
    write32(out, p + 6, o.ttl);
    write16(out, p + 10, rdlength);
    p += ANSWER_FIXED;
    if (v4) {
      write32(out, p, o.ipv4[i]);
    } else {
      const w = o.ipv6[i];
      for (let k = 0; k < 4; k++) write32(out, p + 4 * k, w[k]);
    }
    p += rdlength;
  }
  return p - at;
}

/** writeOverride into a buffer of its own; throws RangeError for an override dnsOverrideProblem refuses. */
export function buildOverride(q: DnsQuestion, o: DnsOverride): Uint8Array {
  const problem = dnsOverrideProblem(o);
  if (problem !== null) throw new RangeError(problem);
  const out = new Uint8Array(DNS_ANSWER_ROOM);
  return out.slice(0, writeOverride(q, o, out, 0));
}
