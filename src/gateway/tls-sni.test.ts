import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { SniParser } from './tls-sni.js';
import type { ClassifyResult } from './result.js';

const hellos = JSON.parse(readFileSync(new URL('./testdata/client-hellos.json', import.meta.url), 'utf8')).hex as Record<string, string>;
const fixture = (name: string): Uint8Array => Uint8Array.from(Buffer.from(hellos[name], 'hex'));

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

/** A ClientHello handshake message (header included) with the given extensions, as bytes. */
function clientHello(extensions: number[][] | null, opts: { sessionId?: number } = {}): Uint8Array {
  const body = [3, 3, ...new Array(32).fill(7), opts.sessionId ?? 0, ...new Array(opts.sessionId ?? 0).fill(1), ...u16(4), 0x13, 0x01, 0x13, 0x02, 1, 0];
  if (extensions !== null) {
    const ext = extensions.flat();
    body.push(...u16(ext.length), ...ext);
  }
  return Uint8Array.from([1, (body.length >> 16) & 0xff, (body.length >> 8) & 0xff, body.length & 0xff, ...body]);
}

function ext(type: number, data: number[]): number[] {
  return [...u16(type), ...u16(data.length), ...data];
}

function sni(...names: string[]): number[] {
  const list = names.flatMap((n) => [0, ...u16(n.length), ...Buffer.from(n, 'latin1')]);
  return ext(0, [...u16(list.length), ...list]);
}

/** The handshake bytes framed as TLS records of at most `size` bytes each. */
function records(hs: Uint8Array, size: number, type = 22): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < hs.length; i += size) {
    const part = hs.subarray(i, Math.min(hs.length, i + size));
    out.push(type, 3, 1, ...u16(part.length), ...part);
  }
  return Uint8Array.from(out);
}

function feedAll(bytes: Uint8Array, cuts: number[] = [], parser = new SniParser()): ClassifyResult {
  let at = 0;
  let r: ClassifyResult = parser.current;
  for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b), bytes.length]) {
    r = parser.feed(bytes, at, c - at);
    at = c;
  }
  return r;
}

/** Extension types of a record-framed ClientHello (for asserting what a fixture carries). */
function extensionTypes(bytes: Uint8Array): number[] {
  let p = 5 + 4 + 34;
  p += 1 + bytes[p];
  p += 2 + ((bytes[p] << 8) | bytes[p + 1]);
  p += 1 + bytes[p];
  const end = p + 2 + ((bytes[p] << 8) | bytes[p + 1]);
  p += 2;
  const types = [];
  while (p < end) {
    types.push((bytes[p] << 8) | bytes[p + 1]);
    p += 4 + ((bytes[p + 2] << 8) | bytes[p + 3]);
  }
  return types;
}

test('fixtures: real ClientHellos from Node, curl, openssl and Chromium', () => {
  assert.deepEqual(feedAll(fixture('node')), { kind: 'name', name: 'secure.example.com' });
  assert.deepEqual(feedAll(fixture('curl')), { kind: 'name', name: 'www.example.org' });
  assert.deepEqual(feedAll(fixture('openssl')), { kind: 'name', name: 'mail.example.net' });
  assert.deepEqual(feedAll(fixture('openssl_nosni')), { kind: 'no-name' });
  assert.deepEqual(feedAll(fixture('chromium')), { kind: 'name', name: 'video.example.com' });
});

test('fixture: Chromium sends GREASE and an ECH extension, and both are skipped', () => {
  const types = extensionTypes(fixture('chromium'));
  assert.ok(types.some((t) => (t & 0x0f0f) === 0x0a0a && t >> 8 === (t & 0xff)), 'a GREASE extension (RFC 8701)');
  assert.ok(types.includes(0xfe0d), 'encrypted_client_hello');
  assert.ok(types.includes(0));
});

test('fixtures split at every byte, and re-framed into records of every size from 1 byte', () => {
  for (const name of ['node', 'curl', 'chromium']) {
    const bytes = fixture(name);
    const want = feedAll(bytes);
    for (let cut = 1; cut < bytes.length; cut++) assert.deepEqual(feedAll(bytes, [cut]), want, `${name} cut at ${cut}`);
    const hs = bytes.subarray(5);
    for (const size of [1, 2, 3, 5, 100, 511]) {
      const framed = records(hs, size);
      assert.deepEqual(feedAll(framed, [7, 8, 9, 200]), want, `${name} in ${size}-byte records`);
    }
  }
});

test('every truncation of a ClientHello needs more, and no byte after the decision changes it', () => {
  const bytes = fixture('curl');
  for (let len = 0; len < bytes.length; len++) assert.equal(feedAll(bytes.subarray(0, len)).kind, 'need-more', `prefix ${len}`);
  const p = new SniParser();
  p.feed(bytes);
  assert.deepEqual(p.feed(Uint8Array.of(21, 3, 3, 0, 2, 2, 40)), { kind: 'name', name: 'www.example.org' });
  p.reset();
  assert.equal(p.feed(Uint8Array.of(0x47)).kind, 'not-protocol', 'reset: a new flow');
});

test('not TLS: plain HTTP, an SSLv2-style hello, a ServerHello, another content type first', () => {
  assert.equal(feedAll(Buffer.from('GET / HTTP/1.1\r\n')).kind, 'not-protocol');
  assert.equal(feedAll(Uint8Array.of(0x80, 0x2e, 0x01, 0x00, 0x02)).kind, 'not-protocol');
  assert.equal(feedAll(records(Uint8Array.of(2, 0, 0, 0), 10)).kind, 'not-protocol');
  assert.equal(feedAll(Uint8Array.of(23, 3, 3, 0, 1, 0)).kind, 'not-protocol');
  assert.equal(feedAll(Uint8Array.of(22, 2, 0)).kind, 'not-protocol');
  assert.equal(feedAll(Uint8Array.of(22, 3, 9)).kind, 'not-protocol');
});

test('malformed: each named', () => {
  const reason = (bytes: Uint8Array): string => {
    const r = feedAll(bytes);
    assert.equal(r.kind, 'malformed');
    return (r as { reason: string }).reason;
  };
  assert.match(reason(records(clientHello([sni('a.com'), sni('b.com')]), 1000)), /two server_name extensions/);
  assert.match(reason(records(clientHello([sni('a.com', 'b.com')]), 1000)), /two host_name entries/);
  assert.match(reason(records(clientHello([sni('a..com')]), 1000)), /empty label/);
  assert.match(reason(records(clientHello([sni('a com')]), 1000)), /character/);
  assert.match(reason(records(clientHello([sni('')]), 1000)), /empty host name/);
  assert.match(reason(records(clientHello([ext(0, [0, 0])]), 1000)), /empty server_name list/);
  assert.match(reason(records(clientHello([], { sessionId: 33 }), 1000)), /legacy_session_id/);
  assert.match(reason(Uint8Array.of(22, 3, 1, 0, 0)), /zero-length/);
  assert.match(reason(Uint8Array.of(22, 3, 1, 0x40, 0x01)), /2\^14/);
  const hs = clientHello([sni('a.com')]);
  assert.match(reason(Uint8Array.from([...records(hs.subarray(0, 10), 10), ...records(Uint8Array.of(2, 40), 2, 21)])), /another type/);
  const badLen = clientHello([sni('a.com')]);
  badLen[badLen.length - 12] ^= 0x01; // inside the extensions length / entries
  assert.equal(feedAll(records(badLen, 1000)).kind, 'malformed');
});

test('no server_name, extensions omitted, unknown name types: no-name', () => {
  assert.deepEqual(feedAll(records(clientHello(null), 100)), { kind: 'no-name' });
  assert.deepEqual(feedAll(records(clientHello([ext(0x0a0a, []), ext(0xfe0d, [1, 2, 3])]), 100)), { kind: 'no-name' });
  const otherType = ext(0, [...u16(4), 7, ...u16(1), 0x61]);
  assert.deepEqual(feedAll(records(clientHello([otherType]), 100)), { kind: 'no-name' });
});

test('too large: a ClientHello over the bound is refused from its header, before the bytes arrive', () => {
  assert.deepEqual(feedAll(Uint8Array.of(22, 3, 1, 0x40, 0x00, 1, 0, 0x40, 0x00)), { kind: 'too-large' });
  const big = clientHello([ext(0x1234, new Array(3000).fill(0)), sni('big.example')]);
  assert.deepEqual(feedAll(records(big, 1000), [], new SniParser(2048)), { kind: 'too-large' });
  assert.deepEqual(feedAll(records(big, 1000)), { kind: 'name', name: 'big.example' });
});

const labelArb = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,10}$/);
const hostArb = fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
const otherExtArb = fc.tuple(fc.integer({ min: 1, max: 0xffff }), fc.uint8Array({ maxLength: 40 })).map(([t, d]) => ext(t, [...d]));

test('property: any ClientHello, any record sizes, any segment cuts → the same server name', () => {
  fc.assert(
    fc.property(hostArb, fc.array(otherExtArb, { maxLength: 6 }), fc.nat({ max: 6 }), fc.integer({ min: 1, max: 300 }), fc.array(fc.nat({ max: 2000 }), { maxLength: 8 }),
      (host, others, at, size, cuts) => {
        const exts = [...others];
        exts.splice(Math.min(at, exts.length), 0, sni(host.toUpperCase()));
        const bytes = records(clientHello(exts), size);
        assert.deepEqual(feedAll(bytes, cuts), { kind: 'name', name: host });
      }),
    { numRuns: 1000 },
  );
});

test('property: garbage and mutated ClientHellos never throw and end in a known kind; a decision is final', () => {
  const kinds = new Set(['need-more', 'name', 'no-name', 'not-protocol', 'malformed', 'too-large']);
  const base = fixture('node');
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    fc.uint8Array({ maxLength: 600 }).map((b) => Uint8Array.from([22, 3, 1, ...b])),
    fc.array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 6 }).map((muts) => {
      const b = Uint8Array.from(base);
      for (const [i, v] of muts) b[i] = v;
      return b;
    }),
  );
  fc.assert(
    fc.property(input, fc.array(fc.nat({ max: 700 }), { maxLength: 5 }), (bytes, cuts) => {
      const p = new SniParser(1024);
      const r = feedAll(bytes, cuts, p);
      assert.ok(kinds.has(r.kind));
      assert.deepEqual(feedAll(bytes, [], new SniParser(1024)), r, 'segmentation does not change the answer');
      if (r.kind !== 'need-more') assert.equal(p.feed(Uint8Array.of(22, 3, 1, 0, 1, 1)), r);
    }),
    { numRuns: 3000 },
  );
});
