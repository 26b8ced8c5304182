/**
 * Byte mutations of seed inputs (the AFL set): bit flips, bytes set to interesting values (0, 0xff, 0x7f, 0x80,
 * and a length-like field plus or minus one), truncation, extension, splicing two seeds, random bytes, and
 * 16-bit big-endian fields set to boundary values. Every choice comes from the caller's Rng, so a seed
 * reproduces the mutant.
 */
import { write16 } from '../src/wire/bytes.js';
import { ipv4HeaderChecksum } from '../src/wire/checksum.js';
import { IP_VERSION_4, IP_VERSION_6, IPV4_CHECKSUM, IPV4_IHL_MASK, IPV4_MIN_HEADER, IPV4_TOTAL_LENGTH, IPV6_HEADER, IPV6_PAYLOAD_LENGTH } from '../src/wire/constants.js';
import type { Rng } from './rng.js';

const INTERESTING_8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x40, 0x20, 0x10, 0x05, 0x06, 0x0f, 0x45, 0x60];
const INTERESTING_16 = [0x0000, 0x0001, 0x7fff, 0x8000, 0xffff, 0x0014, 0x0028, 0x0100, 0x05dc, 0x0800, 0x86dd];

/** Applies 1..maxSteps random mutations to a copy of `seed`, splicing with `other` when given; at most maxLength bytes. */
export function mutateBytes(rng: Rng, seed: Uint8Array, other: Uint8Array | null, maxLength: number, maxSteps = 4): Uint8Array {
  let p = seed.slice(0, maxLength);
  const steps = 1 + rng.int(maxSteps);
  for (let s = 0; s < steps; s++) {
    const kind = rng.int(10);
    const n = p.length;
    if (kind === 0 && n > 0) {
      p[rng.int(n)] ^= 1 << rng.int(8);
    } else if (kind === 1 && n > 0) {
      p[rng.int(n)] = rng.pick(INTERESTING_8);
    } else if (kind === 2 && n > 0) {
      // A length or offset field off by one: the classic bounds bug.
      const i = rng.int(n);
      p[i] = (p[i] + (rng.chance(0.5) ? 1 : 0xff)) & 0xff;
    } else if (kind === 3 && n > 1) {
      const i = rng.int(n - 1);
      const v = rng.chance(0.5) ? rng.pick(INTERESTING_16) : (((p[i] << 8) | p[i + 1]) + rng.int(9) - 4) & 0xffff;
      p[i] = v >>> 8;
      p[i + 1] = v & 0xff;
    } else if (kind === 4) {
      p = p.slice(0, rng.int(n + 1));
    } else if (kind === 5 && n < maxLength) {
      const extra = Math.min(maxLength - n, 1 + rng.int(64));
      const q = new Uint8Array(n + extra);
      q.set(p);
      if (rng.chance(0.5)) rng.fill(q, n);
      p = q;
    } else if (kind === 6 && other !== null && other.length > 0) {
      // Splice: a prefix of this input, the rest from another seed.
      const cut = rng.int(n + 1);
      const from = rng.int(other.length);
      const q = new Uint8Array(Math.min(maxLength, cut + other.length - from));
      q.set(p.subarray(0, Math.min(cut, q.length)));
      if (cut < q.length) q.set(other.subarray(from, from + q.length - cut), cut);
      p = q;
    } else if (kind === 7 && n > 0) {
      const at = rng.int(n);
      rng.fill(p, at, Math.min(n, at + 1 + rng.int(8)));
    } else if (kind === 8 && n > 1) {
      // Copy a run of bytes onto another place of the same input (repeated headers, shifted fields).
      const from = rng.int(n);
      const to = rng.int(n);
      const len = Math.min(1 + rng.int(16), n - from, n - to);
      p.copyWithin(to, from, from + len);
    } else if (kind === 9 && n > 0) {
      // Cut a run out of the middle.
      const at = rng.int(n);
      const len = Math.min(1 + rng.int(8), n - at);
      const q = new Uint8Array(n - len);
      q.set(p.subarray(0, at));
      q.set(p.subarray(at + len), at);
      p = q;
    }
  }
  return p;
}

/** Random bytes of a random length below maxLength. */
export function randomBytes(rng: Rng, maxLength: number): Uint8Array {
  return rng.fill(new Uint8Array(rng.int(maxLength + 1)));
}

/**
 * The common generation step of the byte targets: a random input (1 in 16), an unmutated seed (1 in 16), or a
 * mutated seed spliced with another one.
 */
export function fromSeeds(rng: Rng, seeds: readonly Uint8Array[], maxLength: number): Uint8Array {
  const r = rng.int(16);
  if (r === 0) return randomBytes(rng, Math.min(maxLength, 256));
  const seed = rng.pick(seeds);
  if (r === 1) return seed.slice(0, maxLength);
  return mutateBytes(rng, seed, rng.pick(seeds), maxLength);
}

/**
 * Half of the packet mutants get their IP length field and IPv4 header checksum made consistent again, so the
 * mutation reaches the transport, ICMP and extension-header parsers instead of stopping at the IP header.
 */
export function fixIpHeader(rng: Rng, p: Uint8Array): Uint8Array {
  if (p.length === 0 || rng.chance(0.5)) return p;
  const version = p[0] >>> 4;
  if (version === IP_VERSION_4 && p.length >= IPV4_MIN_HEADER) {
    const ihl = (p[0] & IPV4_IHL_MASK) * 4;
    if (rng.chance(0.7)) write16(p, IPV4_TOTAL_LENGTH, p.length);
    if (ihl >= IPV4_MIN_HEADER && ihl <= p.length) {
      write16(p, IPV4_CHECKSUM, 0);
      write16(p, IPV4_CHECKSUM, ipv4HeaderChecksum(p, 0, ihl));
    }
  } else if (version === IP_VERSION_6 && p.length >= IPV6_HEADER && rng.chance(0.7)) {
    write16(p, IPV6_PAYLOAD_LENGTH, p.length - IPV6_HEADER);
  }
  return p;
}

/** A packet input: fromSeeds, then (half the time) fixIpHeader. */
export function packetFromSeeds(rng: Rng, seeds: readonly Uint8Array[], maxLength: number): Uint8Array {
  return fixIpHeader(rng, fromSeeds(rng, seeds, maxLength));
}

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Values a JSON mutation puts in: boundaries, wrong types, paths, names of the lab's objects, prototype keys. */
export const JSON_VALUES: Json[] = [
  null, true, false, 0, -1, 1, 0.5, 65535, 65536, 4294967295, 4294967296, Number.MAX_SAFE_INTEGER, -1e300, '', ' ', '(redacted)',
  '../../../etc/passwd', '/tmp/x', 'a'.repeat(1000), '10.0.0.0/8', '::/0', '0.0.0.0', '999.1.1.1', 'internet', 'drop', 'wireguard', 'gre',
  'ipsec', 'site-a', 'dc-link', '\u0000', '__proto__', [], {}, [1, 'x', null], { onramp: 'dc-link' }, JSON.parse('{"__proto__": {"polluted": true}}') as Json, { prototype: { polluted: true } },
];

/** Structure-aware mutation: one random node of the JSON value replaced, removed, duplicated or extended. */
export function mutateJson(rng: Rng, value: Json): Json {
  type Container = Record<string, Json>;
  const root: Container = { v: structuredClone(value) };
  const steps = 1 + rng.int(3);
  for (let s = 0; s < steps; s++) {
    // Walk down a random path, remembering the container and key (array indexes as text) of the node reached.
    let parent: Container = root;
    let key = 'v';
    let depth = rng.int(6);
    for (;;) {
      const node: Json = parent[key];
      if (depth-- <= 0 || node === null || typeof node !== 'object') break;
      const keys = Object.keys(node);
      if (keys.length === 0) break;
      parent = node as Container;
      key = rng.pick(keys);
    }
    const node: Json = parent[key];
    const op = rng.int(5);
    if (op === 0 && parent !== root) {
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else delete parent[key];
    } else if (op === 1 && Array.isArray(parent)) {
      parent.splice(Number(key), 0, structuredClone(node));
    } else if (op === 2 && node !== null && typeof node === 'object' && !Array.isArray(node)) {
      node[rng.pick(['extra', 'token_file', 'path', 'id', 'name', 'type', 'site', 'constructor'])] = structuredClone(rng.pick(JSON_VALUES));
    } else {
      parent[key] = structuredClone(rng.pick(JSON_VALUES));
    }
  }
  return root.v;
}
