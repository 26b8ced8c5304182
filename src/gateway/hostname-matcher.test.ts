import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HostnameMatcher, NO_MATCH, hostnamePatternProblem } from './hostname-matcher.js';

/** The slow, obviously correct matcher: every rule in order, with string operations. */
function oracle(patterns: readonly string[], name: string): number {
  const valid = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/.test(name) && name.replace(/\.$/, '').length <= 253;
  const n = name.toLowerCase().replace(/\.$/, '');
  for (let i = 0; i < patterns.length; i++) {
    const p = patterns[i].toLowerCase().replace(/\.$/, '');
    if (p === '*') return i;
    if (!valid) continue;
    if (p.startsWith('*.') ? n.endsWith(`.${p.slice(2)}`) : n === p) return i;
  }
  return NO_MATCH;
}

test('exact, wildcard below (any depth, not the apex), catch-all, first rule wins', () => {
  const m = new HostnameMatcher(['Example.COM', '*.example.com', 'ads.example.com', '*.b.example.com', '*']);
  assert.equal(m.match('example.com'), 0);
  assert.equal(m.match('EXAMPLE.com.'), 0);
  assert.equal(m.match('a.example.com'), 1);
  assert.equal(m.match('ads.example.com'), 1, 'rule 1 comes first');
  assert.equal(m.match('x.y.b.example.com'), 1);
  assert.equal(m.match('badexample.com'), 4, 'a suffix must start on a label boundary');
  assert.equal(m.match('example.org'), 4);
  assert.equal(m.match('exa mple.com'), 4, 'not a host name: only "*" matches');
  const n = new HostnameMatcher(['*.example.com', 'example.com']);
  assert.equal(n.match('example.com'), 1, 'the wildcard does not match the apex');
  assert.equal(n.match('xn--bcher-kva.example.com'), 0, 'A-labels as given');
  assert.equal(n.match('..example.com'), NO_MATCH);
  assert.equal(n.match('.example.com'), NO_MATCH);
  assert.equal(n.match(''), NO_MATCH);
  assert.equal(new HostnameMatcher([]).match('example.com'), NO_MATCH);
});

test('bad patterns are refused with the rule and the reason', () => {
  assert.equal(hostnamePatternProblem('*.example.com'), null);
  assert.match(hostnamePatternProblem('a.*.example.com')!, /"\*" may only stand alone/);
  assert.match(hostnamePatternProblem('bücher.example')!, /A-labels/);
  assert.match(hostnamePatternProblem('a..b')!, /empty label/);
  assert.match(hostnamePatternProblem(`${'a'.repeat(64)}.com`)!, /longer than 63/);
  assert.throws(() => new HostnameMatcher(['ok.com', 'bad name']), /hostname rule 1: "bad name"/);
});

const label = fc.constantFrom('a', 'B', 'example', 'com', 'x-y', '_s', 'xn--bcher-kva', 'Ads');
const nameArb = fc.array(label, { minLength: 1, maxLength: 5 }).map((ls) => ls.join('.'));
const patternArb = fc.oneof(
  { weight: 5, arbitrary: nameArb },
  { weight: 4, arbitrary: nameArb.map((n) => `*.${n}`) },
  { weight: 1, arbitrary: nameArb.map((n) => `${n}.`) },
  { weight: 1, arbitrary: fc.constant('*') },
);
const queryArb = fc.oneof(
  { weight: 6, arbitrary: nameArb },
  { weight: 1, arbitrary: nameArb.map((n) => `${n}.`) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', '.', 'A', '-', 'é'), maxLength: 12 }) },
);

test('property: the compiled matcher agrees with a linear scan of the rules', () => {
  fc.assert(
    fc.property(fc.array(patternArb, { maxLength: 30 }), fc.array(queryArb, { minLength: 1, maxLength: 20 }), (patterns, names) => {
      const m = new HostnameMatcher(patterns);
      for (const name of names) assert.equal(m.match(name), oracle(patterns, name), `${JSON.stringify(patterns)} ${name}`);
    }),
    { numRuns: 2000 },
  );
});

test('property: 1,000 rules agree with the linear scan', () => {
  fc.assert(
    fc.property(fc.array(patternArb, { minLength: 1000, maxLength: 1000 }), fc.array(queryArb, { minLength: 50, maxLength: 50 }), (patterns, names) => {
      const m = new HostnameMatcher(patterns);
      for (const name of names) assert.equal(m.match(name), oracle(patterns, name));
    }),
    { numRuns: 20 },
  );
});
