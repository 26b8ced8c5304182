/**
 * gateway/*: the first-payload classifiers and the DNS reader of src/gateway (issue 12), on mutants of the
 * real fixtures (src/gateway/testdata: ClientHellos from Node, curl, openssl, Chromium; curl and Node HTTP
 * requests; c-ares and hand-made DNS queries with compression pointers).
 *
 *   gateway/tls-sni    SniParser (16 KiB bound), the input fed in up to four segments
 *   gateway/http-host  HttpHostParser (16 KiB bound), likewise
 *   gateway/dns        parseDnsQuery, and buildNxdomain on what it accepts
 *
 * Checks: no throw; a known result kind; the same result at two placements in buffers filled with two
 * different sentinels and on an exact-size view, whatever the cuts (the parsers read only their window
 * and carry their state between segments correctly); nothing outside the input changed; an NXDOMAIN
 * built for an accepted query parses back as the same question.
 */
import { readFileSync } from 'node:fs';
import { buildNxdomain, parseDnsQuery, type DnsQueryResult } from '../../src/gateway/dns.js';
import { HttpHostParser } from '../../src/gateway/http-host.js';
import type { ClassifyResult } from '../../src/gateway/result.js';
import { SniParser } from '../../src/gateway/tls-sni.js';
import { SentinelArena } from '../../test/support/bounds.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { fromSeeds } from '../mutate.js';
import type { Rng } from '../rng.js';

const MAX_INPUT = 4096;
const MAX_CUTS = 3;
const KINDS = new Set(['need-more', 'name', 'no-name', 'not-protocol', 'malformed', 'too-large']);

/** The fixtures, read from the checkout (run from its top, as fuzz/seeds.ts's SEED_FILE is). */
function testdata(name: string): unknown {
  return JSON.parse(readFileSync(`src/gateway/testdata/${name}`, 'utf8'));
}

interface Parser {
  reset(): void;
  feed(seg: Uint8Array, offset: number, length: number): ClassifyResult;
}

/** Sorted cut points inside an input of `len` bytes. */
function cuts(rng: Rng, len: number): number[] {
  const out: number[] = [];
  const n = rng.int(MAX_CUTS + 1);
  for (let i = 0; i < n && len > 1; i++) out.push(1 + rng.int(len - 1));
  return out.sort((a, b) => a - b);
}

function feedCut(p: Parser, buf: Uint8Array, at: number, len: number, points: readonly number[]): string {
  p.reset();
  let from = 0;
  let r: ClassifyResult = { kind: 'need-more' };
  for (const c of [...points, len]) {
    r = p.feed(buf, at + from, c - from);
    from = c;
  }
  return JSON.stringify(r);
}

function classifierTarget(name: string, seeds: Uint8Array[], parser: Parser): FuzzTarget {
  const arena = new SentinelArena(MAX_INPUT);
  return {
    name,
    generate: (rng: Rng) => fromSeeds(rng, seeds, MAX_INPUT),
    run(input: Uint8Array, rng: Rng): string {
      const len = input.length;
      const points = cuts(rng, len);
      let at = arena.place(input, rng.int(arena.guard + 1), 0x00);
      const first = feedCut(parser, arena.buf, at, len, points);
      const changed = arena.changedOutside();
      if (changed !== null) throw new FuzzFailure(`${name} wrote outside the input: ${changed}`);
      at = arena.place(input, rng.int(arena.guard + 1), 0x0a);
      const second = feedCut(parser, arena.buf, at, len, cuts(rng, len));
      if (second !== first) throw new FuzzFailure(`another placement (sentinel LF) and other cuts: ${second}, first ${first}`);
      const whole = feedCut(parser, arena.view(), 0, len, []);
      if (whole !== first) throw new FuzzFailure(`exact-size view in one piece: ${whole}, first ${first}`);
      const kind = (JSON.parse(first) as ClassifyResult).kind;
      if (!KINDS.has(kind)) throw new FuzzFailure(`unknown result kind ${kind}`);
      return kind;
    },
  };
}

export function tlsSniTarget(): FuzzTarget {
  const hellos = (testdata('client-hellos.json') as { hex: Record<string, string> }).hex;
  const seeds = Object.values(hellos).map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
  return classifierTarget('gateway/tls-sni', seeds, new SniParser());
}

export function httpHostTarget(): FuzzTarget {
  const requests = (testdata('http-requests.json') as { text: Record<string, string> }).text;
  const seeds = Object.values(requests).map((t) => Uint8Array.from(Buffer.from(t, 'latin1')));
  return classifierTarget('gateway/http-host', seeds, new HttpHostParser());
}

/** c-ares queries (A, AAAA), one with a pointer loop, one pointing into the header, one answer-like message. */
const DNS_SEEDS = [
  '865a0100000100000000000003777777076578616d706c6503636f6d0000010001',
  '987f010000010000000000000469707636076578616d706c65036e657400001c0001',
  '0001010000010000000000000161c00c00010001',
  '000101000001000000000000c00200010001',
  '000181800001000100000000037777770765' + '78616d706c6503636f6d0000010001' + '046d61696cc010',
].map((h) => Uint8Array.from(Buffer.from(h, 'hex')));

function dnsSignature(r: DnsQueryResult): string {
  if (r.kind !== 'query') return JSON.stringify(r);
  const q = r.question;
  return JSON.stringify([q.id, q.flags, q.name, q.qtype, q.qclass, [...q.nameWire]]);
}

export function dnsTarget(): FuzzTarget {
  const arena = new SentinelArena(MAX_INPUT);
  return {
    name: 'gateway/dns',
    generate: (rng: Rng) => fromSeeds(rng, DNS_SEEDS, 600),
    run(input: Uint8Array, rng: Rng): string {
      const len = input.length;
      let at = arena.place(input, rng.int(arena.guard + 1), 0x00);
      const r = parseDnsQuery(arena.buf, at, len);
      const first = dnsSignature(r);
      const changed = arena.changedOutside();
      if (changed !== null) throw new FuzzFailure(`parseDnsQuery wrote outside the message: ${changed}`);
      at = arena.place(input, rng.int(arena.guard + 1), 0xc0);
      const second = dnsSignature(parseDnsQuery(arena.buf, at, len));
      if (second !== first) throw new FuzzFailure(`another placement (sentinel 0xc0): ${second}, first ${first}`);
      if (dnsSignature(parseDnsQuery(arena.view())) !== first) throw new FuzzFailure('exact-size view differs');
      if (r.kind === 'query') {
        const nx = buildNxdomain(r.question);
        nx[2] = 0x01; // as a query again: QR 0, RD 1
        nx[3] = 0x00;
        const back = parseDnsQuery(nx);
        if (back.kind !== 'query' || back.question.name !== r.question.name) throw new FuzzFailure(`NXDOMAIN does not echo the question: ${JSON.stringify(back)}`);
      }
      // Numbers (a QDCOUNT, an opcode) folded, so the counts stay a short list.
      return r.kind === 'query' ? 'query' : `${r.kind}: ${r.reason.replace(/\d+/g, 'N')}`;
    },
  };
}
