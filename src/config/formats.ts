/**
 * The text formats of the configuration (the schema's `format` values): each checks a value, reports what is
 * wrong in the file's words, and returns the normalised value (or undefined after reporting).
 */
import { formatPrefix, parseAddress, parseIpv4, parsePrefix } from '../wire/addr.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { keyFromBase64 } from '../onramp/wireguard/index.js';
import { decodePsk, parseIdentity, parseProposal } from './ipsec.js';
import { REDACTED } from './output.js';
import { describe, type Problems } from './problems.js';
import { MAX_PROTOCOL, MAX_U16 } from './schema.js';

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const PORT_RANGE_RE = /^(\d{1,5})\s*-\s*(\d{1,5})$/;
const ENDPOINT_RE = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/;
const PORT_RE = /^\d{1,5}$/;
const PROTOCOL_NUMBER_RE = /^\d{1,3}$/;

const PROTOCOL_NAMES: Readonly<Record<string, number>> = {
  icmp: IPPROTO_ICMP,
  tcp: IPPROTO_TCP,
  udp: IPPROTO_UDP,
  icmpv6: IPPROTO_ICMPV6,
  'ipv6-icmp': IPPROTO_ICMPV6,
};

/** A format check: `what` is the schema's wording for the expected value. */
export type FormatCheck = (v: unknown, path: string, p: Problems, what: string, minimum: number) => unknown;

/** A prefix in canonical form; a bare address is a host prefix; host bits must be zero. */
function prefix(v: unknown, path: string, p: Problems): string | undefined {
  const parsed = typeof v === 'string' ? parsePrefix(v.trim()) : null;
  if (typeof v !== 'string' || parsed === null) {
    p.fail(path, `must be a prefix like 10.0.1.0/24 or 2001:db8::/32, got ${describe(v)}`);
    return undefined;
  }
  const text = v.trim();
  const slash = text.indexOf('/');
  if (slash >= 0) {
    const words = new Uint32Array(4);
    parseAddress(text.slice(0, slash), words);
    const count = parsed.family === 4 ? 1 : 4;
    for (let i = 0; i < count; i++) {
      if (words[i] !== parsed.words[i]) {
        p.fail(path, `has host bits set: ${text}; did you mean ${formatPrefix(parsed)}?`);
        return undefined;
      }
    }
  }
  return text;
}

function address(v: unknown, path: string, p: Problems): string | undefined {
  if (typeof v !== 'string' || parseAddress(v, new Uint32Array(4)) === 0) {
    p.fail(path, `must be an IPv4 or IPv6 address, got ${describe(v)}`);
    return undefined;
  }
  return v;
}

/** A WireGuard key in base64 (44 characters, 32 bytes). */
function wireguardKey(v: unknown, path: string, p: Problems, what: string): string | undefined {
  if (typeof v !== 'string' || keyFromBase64(v) === null) {
    // Never echo a secret back: it may be a real key with one character wrong.
    p.fail(path, `must be ${what}${typeof v === 'string' ? ` (got ${v.length} characters)` : `, got ${describe(v)}`}`);
    return undefined;
  }
  return v.trim();
}

function ifname(v: unknown, path: string, p: Problems, what: string): string | undefined {
  if (typeof v !== 'string' || !IFNAME_RE.test(v) || v === '.' || v === '..') {
    p.fail(path, `must be ${what}, got ${describe(v)}`);
    return undefined;
  }
  return v;
}

function endpoint(v: unknown, path: string, p: Problems): string | undefined {
  const m = typeof v === 'string' ? ENDPOINT_RE.exec(v.trim()) : null;
  const addr = m ? m[1] ?? m[2] : '';
  const port = m ? Number(m[3]) : 0;
  if (m === null || parseAddress(addr, new Uint32Array(4)) === 0 || port < 1 || port > MAX_U16 || (m[1] !== undefined) !== addr.includes(':')) {
    p.fail(path, `must be address:port like 192.0.2.1:51820 or [2001:db8::1]:51820 (no host names), got ${describe(v)}`);
    return undefined;
  }
  return (v as string).trim();
}

/** "lo-hi" or one port. Returns [lo, hi]. */
function portPair(v: unknown, path: string, p: Problems, min: number): [number, number] | undefined {
  let lo = -1;
  let hi = -1;
  if (typeof v === 'number' && Number.isInteger(v)) {
    lo = hi = v;
  } else if (typeof v === 'string') {
    const m = PORT_RANGE_RE.exec(v.trim());
    if (m) { lo = Number(m[1]); hi = Number(m[2]); } else if (PORT_RE.test(v.trim())) lo = hi = Number(v.trim());
  }
  if (lo < min || hi > MAX_U16 || lo > hi) {
    p.fail(path, `must be a port ${min}..65535 or a range like "1000-2000" (low first), got ${describe(v)}`);
    return undefined;
  }
  return [lo, hi];
}

/** A port or range as the configuration keeps it: a number for one port, else "lo-hi". */
function portRange(v: unknown, path: string, p: Problems, _what: string, min: number): number | string | undefined {
  const r = portPair(v, path, p, min);
  return r === undefined ? undefined : r[0] === r[1] ? r[0] : `${r[0]}-${r[1]}`;
}

/** A pool of ports: always "lo-hi". */
function portPool(v: unknown, path: string, p: Problems, _what: string, min: number): string | undefined {
  const r = portPair(v, path, p, min);
  return r === undefined ? undefined : `${r[0]}-${r[1]}`;
}

/** A protocol name or number → IP protocol number, -1 when invalid. */
export function protocolNumber(v: unknown): number {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= MAX_PROTOCOL ? v : -1;
  if (typeof v !== 'string') return -1;
  const n = PROTOCOL_NAMES[v.toLowerCase()];
  if (n !== undefined && Object.hasOwn(PROTOCOL_NAMES, v.toLowerCase())) return n;
  return PROTOCOL_NUMBER_RE.test(v) && Number(v) <= MAX_PROTOCOL ? Number(v) : -1;
}

function protocol(v: unknown, path: string, p: Problems): number | string | undefined {
  if (protocolNumber(v) < 0) {
    p.fail(path, `must be tcp, udp, icmp, icmpv6 or a protocol number 0..255, got ${describe(v)}`);
    return undefined;
  }
  return typeof v === 'string' ? v.toLowerCase() : (v as number);
}

/** A port or range from a validated configuration → [lo, hi]. */
export function portRangePair(port: number | string): [number, number] {
  if (typeof port === 'number') return [port, port];
  const m = PORT_RANGE_RE.exec(port);
  if (m) return [Number(m[1]), Number(m[2])];
  return [Number(port), Number(port)];
}

/** An address or prefix in canonical text (for comparing two spellings of one address). */
export function canonicalAddress(text: string): string {
  const parsed = parsePrefix(text);
  return parsed === null ? text : formatPrefix(parsed);
}

function ipv4Address(v: unknown, path: string, p: Problems, what: string): string | undefined {
  if (typeof v !== 'string' || parseIpv4(v.trim()) < 0) {
    p.fail(path, `must be ${what}, got ${describe(v)}`);
    return undefined;
  }
  return v.trim();
}

/** An IPsec site's underlay address, or 'any' (also written 0.0.0.0). */
function ipsecRemote(v: unknown, path: string, p: Problems, what: string): string | undefined {
  if (typeof v === 'string' && (v.trim().toLowerCase() === 'any' || v.trim() === '0.0.0.0')) return 'any';
  return ipv4Address(v, path, p, what);
}

function ikeId(v: unknown, path: string, p: Problems, what: string): string | undefined {
  if (typeof v !== 'string') {
    p.fail(path, `must be ${what}, got ${describe(v)}`);
    return undefined;
  }
  const id = parseIdentity(v);
  if (!id.ok) p.fail(path, id.error);
  return id.ok ? id.text : undefined;
}

const proposal = (kind: 'ike' | 'esp') => (v: unknown, path: string, p: Problems, what: string): string | undefined => {
  if (typeof v !== 'string') {
    p.fail(path, `must be ${what}, got ${describe(v)}`);
    return undefined;
  }
  const parsed = kind === 'ike' ? parseProposal('ike', v) : parseProposal('esp', v);
  if (!parsed.ok) p.fail(path, parsed.error);
  return parsed.ok ? parsed.text : undefined;
};

/** A pre-shared key, kept as written (the daemon decodes it); never echoed. */
function psk(v: unknown, path: string, p: Problems, what: string): string | undefined {
  if (typeof v !== 'string') {
    p.fail(path, `must be ${what}, got ${typeof v === 'number' ? 'a number' : describe(v)}`);
    return undefined;
  }
  if (v === REDACTED) {
    p.fail(path, 'is "(redacted)", but there is no stored key to keep (a new onramp, or a file): give the key itself');
    return undefined;
  }
  const key = decodePsk(v);
  if (!key.ok) p.fail(path, key.error);
  return key.ok ? v : undefined;
}

export const FORMATS: Readonly<Record<string, FormatCheck>> = {
  prefix,
  address,
  'wireguard-key': wireguardKey,
  ifname,
  endpoint,
  'port-range': portRange,
  'port-pool': portPool,
  protocol,
  'ipv4-address': ipv4Address,
  'ipsec-remote': ipsecRemote,
  'ike-id': ikeId,
  'ike-proposal': proposal('ike'),
  'esp-proposal': proposal('esp'),
  psk,
};
