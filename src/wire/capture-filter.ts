/**
 * Capture filters (`tether capture --filter EXPR`): a small tcpdump-like language, parsed once into a tree and
 * compiled into a predicate over PacketInfo (the record inspect() fills).
 *
 *   expr    := or
 *   or      := and (('or' | '||') and)*
 *   and     := unary (('and' | '&&') unary)*
 *   unary   := ('not' | '!') unary | primary
 *   primary := '(' expr ')'
 *            | [src | dst] (host ADDR | net ADDR/LEN | port N | ADDR | ADDR/LEN)
 *            | (tcp | udp | icmp | icmp6 | ip | ip6) [primary]      -- "tcp port 80" = "tcp and port 80"
 *
 * Unlike pcap's compiler, `and` binds tighter than `or` (the usual convention; tcpdump gives both the same
 * precedence, left to right): parentheses mean the same in both. Without src/dst a term matches either address
 * (or port). Ports are TCP and UDP ports only; ICMP echo identifiers, which PacketInfo keeps in its port fields,
 * never match `port`.
 *
 * Bad input is a FilterError naming the column and the token, never a crash: the expression length and the
 * nesting depth are bounded so that no input can exhaust the stack.
 */
import { AF_INET4, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from './constants.js';
import { formatIpv4, formatIpv6, parseAddress, parsePrefix } from './addr.js';
import { DST, SRC, type PacketInfo } from './packet-info.js';

/** Longest expression accepted, characters: a filter is typed by a person, not generated. */
export const MAX_FILTER_LENGTH = 1024;
/** Deepest nesting of parentheses and `not`s: bounds the parser's recursion. */
export const MAX_FILTER_DEPTH = 64;
const MAX_PORT = 0xffff;

export type Direction = 'src' | 'dst' | 'any';
export type ProtocolName = 'tcp' | 'udp' | 'icmp' | 'icmp6' | 'ip' | 'ip6';

export type FilterNode =
  | { kind: 'all' }
  | { kind: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { kind: 'not'; operand: FilterNode }
  | { kind: 'net'; dir: Direction; family: 4 | 6; words: number[]; length: number }
  | { kind: 'port'; dir: Direction; port: number }
  | { kind: 'proto'; name: ProtocolName };

/** A filter that does not parse: `position` is the 0-based index of `token` in the expression. */
export class FilterError extends Error {
  constructor(
    readonly detail: string,
    readonly position: number,
    readonly token: string,
  ) {
    super(`${detail} at column ${position + 1}${token === '' ? ' (end of the expression)' : ` ('${token}')`}`);
    this.name = 'FilterError';
  }
}

interface Token {
  text: string;
  at: number;
}

const PROTOCOLS: readonly ProtocolName[] = ['tcp', 'udp', 'icmp', 'icmp6', 'ip', 'ip6'];
const WORD = /[^\s()!&|]+/y;
const EXPECTED_TERM = 'host, net, port, src, dst, tcp, udp, icmp, icmp6, ip, ip6, not or (';

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (c === '(' || c === ')' || (c === '!' && text[i + 1] !== '=')) {
      out.push({ text: c, at: i++ });
    } else if ((c === '&' || c === '|') && text[i + 1] === c) {
      out.push({ text: c + c, at: i });
      i += 2;
    } else {
      WORD.lastIndex = i;
      const m = WORD.exec(text);
      if (m === null) throw new FilterError('unexpected character', i, c);
      out.push({ text: m[0], at: i });
      i += m[0].length;
    }
  }
  return out;
}

class Parser {
  private i = 0;
  private depth = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly end: number,
  ) {}

  parse(): FilterNode {
    if (this.tokens.length === 0) return { kind: 'all' };
    const node = this.or();
    const t = this.peek();
    if (t !== null) throw new FilterError(t.text === ')' ? "')' without a matching '('" : 'unexpected word after a complete expression (and/or missing?)', t.at, t.text);
    return node;
  }

  private peek(): Token | null {
    return this.i < this.tokens.length ? this.tokens[this.i] : null;
  }

  private next(what: string): Token {
    const t = this.peek();
    if (t === null) throw new FilterError(`expected ${what}`, this.end, '');
    this.i++;
    return t;
  }

  private or(): FilterNode {
    let left = this.and();
    for (let t = this.peek(); t !== null && (t.text === 'or' || t.text === '||'); t = this.peek()) {
      this.i++;
      left = { kind: 'or', left, right: this.and() };
    }
    return left;
  }

  private and(): FilterNode {
    let left = this.unary();
    for (let t = this.peek(); t !== null && (t.text === 'and' || t.text === '&&'); t = this.peek()) {
      this.i++;
      left = { kind: 'and', left, right: this.unary() };
    }
    return left;
  }

  private enter(t: Token): void {
    if (++this.depth > MAX_FILTER_DEPTH) throw new FilterError(`nested deeper than ${MAX_FILTER_DEPTH} levels`, t.at, t.text);
  }

  private unary(): FilterNode {
    const t = this.peek();
    if (t !== null && (t.text === 'not' || t.text === '!')) {
      this.i++;
      this.enter(t);
      const operand = this.unary();
      this.depth--;
      return { kind: 'not', operand };
    }
    return this.primary();
  }

  private primary(): FilterNode {
    const t = this.next(EXPECTED_TERM);
    if (t.text === '(') {
      this.enter(t);
      const inner = this.or();
      const close = this.peek();
      if (close === null || close.text !== ')') {
        throw new FilterError(`'(' at column ${t.at + 1} is not closed: expected ')'`, close?.at ?? this.end, close?.text ?? '');
      }
      this.i++;
      this.depth--;
      return inner;
    }
    const word = t.text.toLowerCase();
    if ((PROTOCOLS as readonly string[]).includes(word)) {
      const proto: FilterNode = { kind: 'proto', name: word as ProtocolName };
      // "tcp port 80", "udp src host 10.0.0.1": a qualifier right after a protocol narrows it.
      const after = this.peek();
      if (after !== null && ['src', 'dst', 'host', 'net', 'port'].includes(after.text.toLowerCase())) return { kind: 'and', left: proto, right: this.primary() };
      return proto;
    }
    let dir: Direction = 'any';
    let head = t;
    if (word === 'src' || word === 'dst') {
      dir = word;
      head = this.next(`host, net, port or an address after '${t.text}'`);
    }
    const kw = head.text.toLowerCase();
    if (kw === 'host') return this.address(dir, this.next(`an address after '${head.text}'`), 'host');
    if (kw === 'net') return this.address(dir, this.next(`ADDRESS/LENGTH after '${head.text}'`), 'net');
    if (kw === 'port') return this.port(dir, this.next(`a port number after '${head.text}'`));
    // tcpdump's shorthand: "src 10.0.0.1", "dst 10.0.0.0/8", or a bare address.
    if (/^[0-9a-f:.]+(\/\d+)?$/i.test(head.text) && (head.text.includes('.') || head.text.includes(':'))) return this.address(dir, head, head.text.includes('/') ? 'net' : 'host');
    if (dir !== 'any') throw new FilterError(`expected host, net, port or an address after '${t.text}'`, head.at, head.text);
    throw new FilterError(`unknown word (expected ${EXPECTED_TERM})`, head.at, head.text);
  }

  private address(dir: Direction, t: Token, kind: 'host' | 'net'): FilterNode {
    if (kind === 'host') {
      const words = new Uint32Array(4);
      const family = t.text.includes('/') ? 0 : parseAddress(t.text, words);
      if (family === 0) throw new FilterError('not an IPv4 or IPv6 address', t.at, t.text);
      return { kind: 'net', dir, family, words: [...words], length: family === AF_INET4 ? 32 : 128 };
    }
    const p = t.text.includes('/') ? parsePrefix(t.text) : null;
    if (p === null) throw new FilterError('not a prefix ADDRESS/LENGTH (10.0.0.0/8, 2001:db8::/32)', t.at, t.text);
    return { kind: 'net', dir, family: p.family, words: [...p.words], length: p.length };
  }

  private port(dir: Direction, t: Token): FilterNode {
    if (!/^\d{1,5}$/.test(t.text) || Number(t.text) > MAX_PORT) throw new FilterError(`not a port number (0-${MAX_PORT})`, t.at, t.text);
    return { kind: 'port', dir, port: Number(t.text) };
  }
}

/** Parses a filter expression into its tree; "" (or only spaces) matches every packet. Throws FilterError. */
export function parseFilter(text: string): FilterNode {
  if (text.length > MAX_FILTER_LENGTH) throw new FilterError(`longer than ${MAX_FILTER_LENGTH} characters`, MAX_FILTER_LENGTH, '');
  return new Parser(tokenize(text), text.length).parse();
}

/** The tree as an expression parseFilter reads back to the same tree (fully parenthesised). */
export function formatFilter(node: FilterNode): string {
  switch (node.kind) {
    case 'all':
      return '';
    case 'and':
    case 'or':
      return `(${formatFilter(node.left)} ${node.kind} ${formatFilter(node.right)})`;
    case 'not':
      return `not ${formatFilter(node.operand)}`;
    case 'proto':
      return node.name;
    case 'port':
      return `${node.dir === 'any' ? '' : `${node.dir} `}port ${node.port}`;
    case 'net': {
      const addr = node.family === AF_INET4 ? formatIpv4(node.words[0]) : formatIpv6(node.words);
      const full = node.length === (node.family === AF_INET4 ? 32 : 128);
      return `${node.dir === 'any' ? '' : `${node.dir} `}${full ? `host ${addr}` : `net ${addr}/${node.length}`}`;
    }
  }
}

export type FilterPredicate = (info: PacketInfo) => boolean;

/** Does the address at info.addr[at…] lie in the node's prefix? */
function inNet(info: PacketInfo, at: number, words: readonly number[], length: number, count: number): boolean {
  for (let w = 0; w < count; w++) {
    const bits = Math.max(0, Math.min(32, length - 32 * w));
    if (bits === 0) return true;
    const mask = bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    if (((info.addr[at + w] & mask) >>> 0) !== words[w]) return false;
  }
  return true;
}

/** Compiles the tree into a predicate over an inspected packet (closures: built once per capture). */
export function compileFilter(node: FilterNode): FilterPredicate {
  switch (node.kind) {
    case 'all':
      return () => true;
    case 'and': {
      const a = compileFilter(node.left);
      const b = compileFilter(node.right);
      return (info) => a(info) && b(info);
    }
    case 'or': {
      const a = compileFilter(node.left);
      const b = compileFilter(node.right);
      return (info) => a(info) || b(info);
    }
    case 'not': {
      const a = compileFilter(node.operand);
      return (info) => !a(info);
    }
    case 'proto': {
      const want = { tcp: IPPROTO_TCP, udp: IPPROTO_UDP, icmp: IPPROTO_ICMP, icmp6: IPPROTO_ICMPV6, ip: 0, ip6: 0 }[node.name];
      if (node.name === 'ip') return (info) => info.family === AF_INET4;
      if (node.name === 'ip6') return (info) => info.family === AF_INET6;
      return (info) => info.protocol === want;
    }
    case 'port': {
      const { port, dir } = node;
      return (info) =>
        info.hasTransportHeader &&
        (info.protocol === IPPROTO_TCP || info.protocol === IPPROTO_UDP) &&
        ((dir !== 'dst' && info.srcPort === port) || (dir !== 'src' && info.dstPort === port));
    }
    case 'net': {
      const { family, words, length, dir } = node;
      const count = family === AF_INET4 ? 1 : 4;
      return (info) => info.family === family && ((dir !== 'dst' && inNet(info, SRC, words, length, count)) || (dir !== 'src' && inNet(info, DST, words, length, count)));
    }
  }
}

/** parseFilter then compileFilter. Throws FilterError. */
export function filterPredicate(text: string): FilterPredicate {
  return compileFilter(parseFilter(text));
}
