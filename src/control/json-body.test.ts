import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { forbiddenKey, JsonBodyError, parseJsonBody } from './json-body.js';

/** What parseJsonBody threw, as { path, detail, message }. */
function refusal(text: string): { path: string; detail: string; message: string } {
  try {
    parseJsonBody(text);
  } catch (e) {
    assert.ok(e instanceof JsonBodyError, `a JsonBodyError, not ${String(e)}`);
    return { path: e.path, detail: e.detail, message: e.message };
  }
  assert.fail(`${text} was accepted`);
}

test('fixtures: the prototype keys are refused with their path; everything else parses as JSON.parse does', () => {
  assert.deepEqual(refusal('{"name":"x","__proto__":{"polluted":1}}'), { path: '__proto__', detail: 'key __proto__ is not allowed', message: 'body: key __proto__ is not allowed' });
  assert.deepEqual(refusal('{"gre":{"local":"1.2.3.4","__proto__":null}}').path, 'gre.__proto__');
  assert.deepEqual(refusal('{"prefixes":[{"a":1},{"__proto__":[]}]}').path, 'prefixes[1].__proto__');
  assert.deepEqual(refusal('[[{"__proto__":1}]]').path, '[0][0].__proto__');
  assert.deepEqual(refusal('{"constructor":{"prototype":{"polluted":1}}}'),
    { path: 'constructor.prototype', detail: 'key constructor.prototype is not allowed', message: 'body: key constructor.prototype is not allowed' });
  assert.equal(refusal('{"a":{"constructor":{"prototype":1}}}').path, 'a.constructor.prototype');
  // The escaped spelling is the same key once parsed.
  assert.equal(refusal('{"\\u005f_proto__":{}}').path, '__proto__');
  // Not JSON, and empty: the whole body, with JSON.parse's own words.
  assert.deepEqual(refusal('{"name":'), { path: '', detail: 'Unexpected end of JSON input', message: 'the request body is not valid JSON' });
  assert.equal(refusal('  ').message, 'the request body is empty');
  // Allowed: a constructor without prototype, a prototype elsewhere, the words as values.
  for (const ok of ['{"constructor":"x"}', '{"constructor":{"name":1}}', '{"prototype":{}}', '{"a":"__proto__"}', '["constructor","prototype"]', 'null', '3', '"s"']) {
    assert.deepEqual(parseJsonBody(ok), JSON.parse(ok), ok);
  }
  const parsed = parseJsonBody('{"a":1}') as object;
  assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
});

test('a body nested 50,000 deep is parsed or refused without overflowing the stack', () => {
  const depth = 50_000;
  const deep = '['.repeat(depth) + ']'.repeat(depth);
  assert.doesNotThrow(() => forbiddenKey(JSON.parse(deep)));
  const deepBad = '{"a":'.repeat(depth) + '{"__proto__":1}' + '}'.repeat(depth);
  assert.equal(refusal(deepBad).path, `${'a.'.repeat(depth)}__proto__`);
});

/** The slow, obviously correct oracle: every path of the value where a forbidden key stands, in document order. */
function oracle(v: unknown, path = ''): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => oracle(x, `${path}[${i}]`));
  if (typeof v !== 'object' || v === null) return [];
  const out: string[] = [];
  for (const [k, x] of Object.entries(v)) {
    const here = path === '' ? k : `${path}.${k}`;
    if (k === '__proto__') return [...out, here];
    if (k === 'constructor' && typeof x === 'object' && x !== null && !Array.isArray(x) && Object.hasOwn(x, 'prototype')) return [...out, `${here}.prototype`];
    out.push(...oracle(x, here));
  }
  return out;
}

/** JSON text whose keys include the dangerous words now and then (as text: an object literal would call the setter). */
const key = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'name', 'a'), fc.string({ maxLength: 4 }));
const json: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.jsonValue({ maxDepth: 0 }).map((v) => JSON.stringify(v)),
    fc.array(tie('value'), { maxLength: 4 }).map((xs) => `[${xs.join(',')}]`),
    fc.array(fc.tuple(key, tie('value')), { maxLength: 4 }).map((kv) => `{${kv.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
  ),
})).value;

test('property: refused exactly when the oracle finds a forbidden key, at the first one it finds; otherwise the value JSON.parse gives', () => {
  fc.assert(fc.property(json, (text) => {
    const expected = oracle(JSON.parse(text));
    if (expected.length === 0) {
      assert.deepEqual(parseJsonBody(text), JSON.parse(text));
    } else {
      assert.equal(refusal(text).path, expected[0]);
    }
  }), { numRuns: 2000 });
});

test('property: any text is parsed or refused with a JsonBodyError, never another exception', () => {
  fc.assert(fc.property(fc.string({ maxLength: 64 }), (text) => {
    try {
      parseJsonBody(text);
    } catch (e) {
      assert.ok(e instanceof JsonBodyError);
    }
  }), { numRuns: 2000 });
});
