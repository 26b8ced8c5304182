import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { HttpHostParser } from './http-host.js';
import type { ClassifyResult } from './result.js';

const requests = JSON.parse(readFileSync(new URL('./testdata/http-requests.json', import.meta.url), 'utf8')).text as Record<string, string>;
const bytes = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'latin1'));

function feedAll(input: Uint8Array | string, cuts: number[] = [], parser = new HttpHostParser()): ClassifyResult {
  const b = typeof input === 'string' ? bytes(input) : input;
  let at = 0;
  let r = parser.current;
  for (const c of [...cuts.filter((x) => x > 0 && x < b.length).sort((x, y) => x - y), b.length]) {
    r = parser.feed(b, at, c - at);
    at = c;
  }
  return r;
}

const name = (n: string): ClassifyResult => ({ kind: 'name', name: n });

function reason(input: string): string {
  const r = feedAll(input);
  assert.equal(r.kind, 'malformed', input);
  return (r as { reason: string }).reason;
}

test('fixtures: curl direct, through a proxy (absolute-form), CONNECT, POST; Node http', () => {
  assert.deepEqual(feedAll(requests.curl), name('www.example.org'));
  assert.deepEqual(feedAll(requests.curl_proxy), name('proxy.example.com'));
  assert.deepEqual(feedAll(requests.curl_connect), name('tunnel.example.com'));
  assert.deepEqual(feedAll(requests.curl_post), name('upload.example.com'));
  assert.deepEqual(feedAll(requests.node), name('api.example.net'));
});

test('fixtures split at every byte give the same answer; every proper prefix of the head needs more', () => {
  for (const text of Object.values(requests)) {
    const b = bytes(text);
    const want = feedAll(b);
    for (let cut = 1; cut < b.length; cut++) assert.deepEqual(feedAll(b, [cut]), want);
    const headEnd = text.indexOf('\r\n\r\n') + 4;
    for (let len = 0; len < headEnd; len++) assert.equal(feedAll(b.subarray(0, len)).kind, 'need-more', `${JSON.stringify(text)} prefix ${len}`);
  }
});

test('absolute-form: the target authority wins over Host (RFC 9112 §3.2.2); userinfo and port skipped', () => {
  assert.deepEqual(feedAll('GET http://real.example/x HTTP/1.1\r\nHost: decoy.example\r\n\r\n'), name('real.example'));
  assert.deepEqual(feedAll('GET https://user:pw@Real.Example:8443?x HTTP/1.1\r\nHost: x\r\n\r\n'), name('real.example'));
  assert.deepEqual(feedAll('GET http://[2001:DB8::1]:80/ HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n'), name('[2001:db8::1]'));
  assert.deepEqual(feedAll('OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n'), name('star.example'));
  assert.deepEqual(feedAll('GET / HTTP/1.1\nHost: lf.example.\n\n'), name('lf.example'), 'bare LF lines, trailing dot');
  assert.deepEqual(feedAll('\r\n\r\nGET / HTTP/1.1\r\nhOsT:   spaced.example  \r\n\r\n'), name('spaced.example'));
});

test('no name: HTTP/1.0 without Host, an empty Host', () => {
  assert.deepEqual(feedAll('GET / HTTP/1.0\r\nAccept: */*\r\n\r\n'), { kind: 'no-name' });
  assert.deepEqual(feedAll('GET / HTTP/1.1\r\nHost:\r\n\r\n'), { kind: 'no-name' });
});

test('malformed: duplicate Host, missing Host on 1.1, folding, space before colon, bad host, bad port', () => {
  assert.match(reason('GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n'), /two Host/);
  assert.match(reason('GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n'), /two Host/);
  assert.match(reason('GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'), /without Host/);
  assert.match(reason('GET http://a.example/ HTTP/1.1\r\n\r\n'), /without Host/);
  assert.match(reason('GET / HTTP/1.1\r\nX: 1\r\n Host: a.example\r\n\r\n'), /line folding/);
  assert.match(reason('GET / HTTP/1.1\r\nHost : a.example\r\n\r\n'), /whitespace between/);
  assert.match(reason('GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n'), /character/);
  assert.match(reason('GET / HTTP/1.1\r\nHost: a.example:99999\r\n\r\n'), /port above/);
  assert.match(reason('GET / HTTP/1.1\r\nHost: a.example:8x\r\n\r\n'), /port is not a number/);
  assert.match(reason('GET / HTTP/1.1\r\nHost: [::1\r\n\r\n'), /without "\]"/);
  assert.match(reason('GET / HTTP/1.1\r\nHost: a.example\rX: y\r\n\r\n'), /bare CR/);
  assert.match(reason('GET / HTTP/1.1\r\nnocolon\r\n\r\n'), /without a "name:"/);
  assert.match(reason('GET foo HTTP/1.1\r\nHost: a.example\r\n\r\n'), /none of origin-/);
  assert.match(reason('CONNECT :443 HTTP/1.1\r\nHost: a\r\n\r\n'), /CONNECT target: empty host name/);
});

test('not HTTP/1.x: TLS, SSH, the HTTP/2 preface, HTTP/0.9, a long method — decided early', () => {
  assert.equal(feedAll(Uint8Array.of(22, 3, 1, 2, 0)).kind, 'not-protocol');
  assert.equal(feedAll('SSH-2.0-OpenSSH_9.2').kind, 'need-more', 'a token so far; the request line decides');
  assert.equal(feedAll('SSH-2.0-OpenSSH_9.2\r\n').kind, 'not-protocol');
  assert.equal(feedAll('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n').kind, 'not-protocol');
  assert.equal(feedAll('GET /\r\n').kind, 'not-protocol');
  assert.equal(feedAll('GET  / HTTP/1.1\r\n').kind, 'not-protocol');
  assert.equal(feedAll(`${'A'.repeat(25)}`).kind, 'not-protocol');
  assert.equal(feedAll(' GET / HTTP/1.1\r\n').kind, 'not-protocol');
});

test('too large: a head that does not end within the bound', () => {
  const p = new HttpHostParser(64);
  assert.deepEqual(feedAll(`GET / HTTP/1.1\r\nHost: a.example\r\nX: ${'y'.repeat(100)}\r\n\r\n`, [], p), { kind: 'too-large' });
  assert.deepEqual(feedAll(`GET / HTTP/1.1\r\nHost: a.example\r\nX: ${'y'.repeat(100)}\r\n\r\n`), name('a.example'));
});

const labelArb = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9-]{0,8}$/);
const hostArb = fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
const fieldArb = fc.tuple(fc.constantFrom('Accept', 'User-Agent', 'X-Host', 'Hostname', 'Cookie'), fc.stringMatching(/^[ -~]{0,30}$/))
  .map(([n, v]) => `${n}: ${v.trim()}`);

test('property: any request with one Host, any fields, any cuts → that host, lower-cased', () => {
  fc.assert(
    fc.property(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), hostArb, fc.option(fc.integer({ min: 1, max: 65535 })), fc.array(fieldArb, { maxLength: 5 }), fc.nat({ max: 5 }),
      fc.constantFrom('\r\n', '\n'), fc.array(fc.nat({ max: 400 }), { maxLength: 6 }),
      (method, host, port, fields, at, eol, cuts) => {
        const lines = [...fields];
        lines.splice(Math.min(at, lines.length), 0, `Host: ${host}${port === null ? '' : `:${port}`}`);
        const text = `${method} /p?q=1 HTTP/1.1${eol}${lines.join(eol)}${eol}${eol}body`;
        assert.deepEqual(feedAll(text, cuts), name(host.toLowerCase()));
      }),
    { numRuns: 1000 },
  );
});

test('property: garbage and mutated requests never throw, end in a known kind, and do not depend on cuts', () => {
  const kinds = new Set(['need-more', 'name', 'no-name', 'not-protocol', 'malformed', 'too-large']);
  const base = bytes(requests.curl_proxy);
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.stringMatching(/^[A-Za-z :\r\n/.@[\]0-9-]{0,200}$/).map((s) => bytes(`GET / HTTP/1.1\r\n${s}`)),
    fc.array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.constantFrom(0x0d, 0x0a, 0x20, 0x3a, 0x40, 0x2f, 0x48, 0x00)), { minLength: 1, maxLength: 4 }).map((muts) => {
      const b = Uint8Array.from(base);
      for (const [i, v] of muts) b[i] = v;
      return b;
    }),
  );
  fc.assert(
    fc.property(input, fc.array(fc.nat({ max: 300 }), { maxLength: 5 }), (b, cuts) => {
      const r = feedAll(b, cuts, new HttpHostParser(256));
      assert.ok(kinds.has(r.kind));
      assert.deepEqual(feedAll(b, [], new HttpHostParser(256)), r);
    }),
    { numRuns: 3000 },
  );
});
