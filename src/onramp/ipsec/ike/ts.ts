/**
 * Traffic selectors (RFC 7296 §3.13.1) between config text and the TS payload's entries, and the §2.9 rules:
 * the responder narrows what the initiator proposes to what it is configured for; the initiator checks that the
 * answer lies inside what it proposed. Control path (allocates); addresses are compared as BigInts.
 *
 * Ports: 0..65535 is "any"; start 65535 with end 0 is OPAQUE (§3.13.1: the ports are not available, e.g. a
 * fragment), kept as it is, and lying inside "any" only. Protocol 0 is any protocol.
 */
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from '../../../wire/addr.js';
import type { TrafficSelector } from '../types.js';
import { TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE } from './constants.js';
import type { TsEntry } from './wire.js';

const PORT_MAX = 0xffff;
/** §3.13.1: "Start Port ... 65535 and End Port ... 0" means OPAQUE. */
const OPAQUE_START = PORT_MAX;
const OPAQUE_END = 0;
const ADDRESS_BYTES = { 4: 4, 6: 16 } as const;
const ADDRESS_BITS = { 4: 32, 6: 128 } as const;
const ANY_PROTOCOL = 0;
/** Names strongSwan prints for the common protocols (IANA protocol numbers). */
const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'ipv6-icmp' };

/** A selector with numeric addresses. */
interface Range {
  family: 4 | 6;
  start: bigint;
  end: bigint;
  protocol: number;
  startPort: number;
  endPort: number;
}

function isOpaque(startPort: number, endPort: number): boolean {
  return startPort === OPAQUE_START && endPort === OPAQUE_END;
}
function isAnyPort(startPort: number, endPort: number): boolean {
  return startPort === 0 && endPort === PORT_MAX;
}

function parseAddressText(family: 4 | 6, text: string): bigint {
  if (family === 4) {
    const v = parseIpv4(text);
    if (v >= 0) return BigInt(v);
  } else {
    const words = parseIpv6(text);
    if (words) return words.reduce((acc, w) => (acc << 32n) | BigInt(w), 0n);
  }
  throw new RangeError(`traffic selector: '${text}' is not an IPv${family} address`);
}

function formatAddress(family: 4 | 6, value: bigint): string {
  if (family === 4) return formatIpv4(Number(value));
  const words = [96n, 64n, 32n, 0n].map((shift) => Number((value >> shift) & 0xffff_ffffn));
  return formatIpv6(words);
}

function toRange(ts: TrafficSelector): Range {
  return {
    family: ts.family,
    start: parseAddressText(ts.family, ts.start),
    end: parseAddressText(ts.family, ts.end),
    protocol: ts.protocol,
    startPort: ts.startPort,
    endPort: ts.endPort,
  };
}

function fromRange(r: Range): TrafficSelector {
  return {
    family: r.family,
    start: formatAddress(r.family, r.start),
    end: formatAddress(r.family, r.end),
    protocol: r.protocol,
    startPort: r.startPort,
    endPort: r.endPort,
  };
}

function bytesToBigInt(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function bigIntToBytes(v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** A configured selector as a TS payload entry. Throws on address text that does not parse (config is validated before). */
export function tsToEntry(ts: TrafficSelector): TsEntry {
  const r = toRange(ts);
  return {
    type: ts.family === 4 ? TS_IPV4_ADDR_RANGE : TS_IPV6_ADDR_RANGE,
    protocol: ts.protocol,
    startPort: ts.startPort,
    endPort: ts.endPort,
    start: bigIntToBytes(r.start, ADDRESS_BYTES[ts.family]),
    end: bigIntToBytes(r.end, ADDRESS_BYTES[ts.family]),
  };
}

/**
 * A received TS entry as a selector; null for a TS type other than IPv4/IPv6 ranges (§3.13.1: e.g. FC ranges,
 * RFC 4595), addresses of the wrong length, a start address after the end, or a start port after the end port
 * that is not OPAQUE.
 */
export function entryToTs(e: TsEntry): TrafficSelector | null {
  const family = e.type === TS_IPV4_ADDR_RANGE ? 4 : e.type === TS_IPV6_ADDR_RANGE ? 6 : 0;
  if (family === 0) return null;
  if (e.start.length !== ADDRESS_BYTES[family] || e.end.length !== ADDRESS_BYTES[family]) return null;
  if (e.protocol < 0 || e.protocol > 0xff || e.startPort < 0 || e.endPort > PORT_MAX) return null;
  if (e.startPort > e.endPort && !isOpaque(e.startPort, e.endPort)) return null;
  const start = bytesToBigInt(e.start);
  const end = bytesToBigInt(e.end);
  if (start > end) return null;
  return fromRange({ family, start, end, protocol: e.protocol, startPort: e.startPort, endPort: e.endPort });
}

/** The prefix length when [start, end] is exactly one CIDR block, else -1. */
function cidrLength(family: 4 | 6, start: bigint, end: bigint): number {
  const size = end - start + 1n;
  if ((size & (size - 1n)) !== 0n || (start & (size - 1n)) !== 0n) return -1;
  let hostBits = 0;
  while (1n << BigInt(hostBits) < size) hostBits++;
  return ADDRESS_BITS[family] - hostBits;
}

/** '10.0.0.0/8', '10.0.0.1-10.0.0.5', with '[tcp/80]', '[udp/1000-2000]', '[tcp]', '[any/53]' or '[tcp/OPAQUE]' when not any. */
export function formatTs(ts: TrafficSelector): string {
  const r = toRange(ts);
  const length = cidrLength(r.family, r.start, r.end);
  const addresses = length >= 0 ? `${formatAddress(r.family, r.start)}/${length}` : `${formatAddress(r.family, r.start)}-${formatAddress(r.family, r.end)}`;
  const anyPort = isAnyPort(ts.startPort, ts.endPort);
  if (ts.protocol === ANY_PROTOCOL && anyPort) return addresses;
  const protocol = ts.protocol === ANY_PROTOCOL ? 'any' : (PROTOCOL_NAMES[ts.protocol] ?? String(ts.protocol));
  const ports = anyPort
    ? ''
    : isOpaque(ts.startPort, ts.endPort)
      ? '/OPAQUE'
      : ts.startPort === ts.endPort
        ? `/${ts.startPort}`
        : `/${ts.startPort}-${ts.endPort}`;
  return `${addresses}[${protocol}${ports}]`;
}

/** Port ranges as sets: OPAQUE is its own point, inside "any" only. Null when empty. */
function intersectPorts(a: Range, b: Range): [number, number] | null {
  const aOpaque = isOpaque(a.startPort, a.endPort);
  const bOpaque = isOpaque(b.startPort, b.endPort);
  if (aOpaque || bOpaque) {
    const other = aOpaque ? b : a;
    return (aOpaque && bOpaque) || isAnyPort(other.startPort, other.endPort) ? [OPAQUE_START, OPAQUE_END] : null;
  }
  const start = Math.max(a.startPort, b.startPort);
  const end = Math.min(a.endPort, b.endPort);
  return start <= end ? [start, end] : null;
}

function intersect(a: Range, b: Range): Range | null {
  if (a.family !== b.family) return null;
  if (a.protocol !== ANY_PROTOCOL && b.protocol !== ANY_PROTOCOL && a.protocol !== b.protocol) return null;
  const start = a.start > b.start ? a.start : b.start;
  const end = a.end < b.end ? a.end : b.end;
  if (start > end) return null;
  const ports = intersectPorts(a, b);
  if (ports === null) return null;
  return { family: a.family, start, end, protocol: a.protocol === ANY_PROTOCOL ? b.protocol : a.protocol, startPort: ports[0], endPort: ports[1] };
}

/**
 * RFC 7296 §2.9 narrowing, as the responder: each proposed entry intersected with each configured one, the
 * non-empty results in proposal order, exact duplicates dropped. Empty = TS_UNACCEPTABLE. The union of the
 * result is exactly (union of proposed) ∩ (union of configured).
 */
export function narrowSelectors(proposed: readonly TrafficSelector[], configured: readonly TrafficSelector[]): TrafficSelector[] {
  const conf = configured.map(toRange);
  const out: TrafficSelector[] = [];
  const seen = new Set<string>();
  for (const p of proposed.map(toRange)) {
    for (const c of conf) {
      const r = intersect(p, c);
      if (r === null) continue;
      const key = `${r.family}|${r.start}|${r.end}|${r.protocol}|${r.startPort}|${r.endPort}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(fromRange(r));
    }
  }
  return out;
}

function within(a: Range, p: Range): boolean {
  const r = intersect(a, p);
  return r !== null && r.start === a.start && r.end === a.end && r.protocol === a.protocol && r.startPort === a.startPort && r.endPort === a.endPort;
}

/**
 * As the initiator, checking the responder's TSi or TSr (§2.9: the responder may only narrow): true when every
 * answered entry lies inside one proposed entry. An empty answer is vacuously inside (the caller refuses it).
 */
export function selectorsWithin(answer: readonly TrafficSelector[], proposed: readonly TrafficSelector[]): boolean {
  const prop = proposed.map(toRange);
  return answer.every((a) => {
    const r = toRange(a);
    return prop.some((p) => within(r, p));
  });
}
