import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DlpPolicy, DlpStream, type DlpDetectorKind, type DlpMatch, type DlpProfileConfig } from './dlp.js';
import { IBAN_LENGTH_BY_COUNTRY, dlpRegexProblem } from './dlp-detectors.js';

const latin1 = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'latin1'));

// --- the slow, obviously correct scan over the whole stream -----------------------------------------

interface Hit { at: number; offset: number }

function luhnOk(digits: string): boolean {
  let sum = 0;
  for (let j = 0; j < digits.length; j++) {
    let d = Number(digits[digits.length - 1 - j]);
    if (j % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
}

function oracleCard(s: string): Hit | null {
  let best: Hit | null = null;
  for (const run of s.matchAll(/\d+(?:[ -]\d+)*/g)) {
    const groups: { start: number; text: string }[] = [];
    for (const g of run[0].matchAll(/\d+/g)) groups.push({ start: run.index! + g.index!, text: g[0] });
    for (let e = 0; e < groups.length; e++) {
      const at = groups[e].start + groups[e].text.length;
      for (let b = 0; b <= e; b++) {
        const digits = groups.slice(b, e + 1).map((g) => g.text).join('');
        if (digits.length >= 13 && digits.length <= 19 && luhnOk(digits)) {
          if (best === null || at < best.at || (at === best.at && groups[b].start < best.offset)) best = { at, offset: groups[b].start };
        }
      }
    }
  }
  return best;
}

const ibanLength = (cc: string): number => IBAN_LENGTH_BY_COUNTRY[(cc.charCodeAt(0) - 65) * 26 + cc.charCodeAt(1) - 65] ?? 0;

function ibanChecks(iban: string): boolean {
  const moved = iban.slice(4) + iban.slice(0, 4);
  const digits = [...moved].map((c) => (/[A-Z]/.test(c) ? String(c.charCodeAt(0) - 55) : c)).join('');
  return BigInt(digits) % 97n === 1n;
}

function oracleIban(s: string): Hit | null {
  let best: Hit | null = null;
  for (let p = 0; p < s.length; p++) {
    if (!/[A-Z]/.test(s[p]) || (p > 0 && /[A-Za-z0-9]/.test(s[p - 1]))) continue;
    const len = /^[A-Z]{2}/.test(s.slice(p, p + 2)) ? ibanLength(s.slice(p, p + 2)) : 0;
    if (len === 0) continue;
    let text = '';
    let j = p;
    while (text.length < len && j < s.length) {
      if (/[A-Z0-9]/.test(s[j])) text += s[j++];
      else if (s[j] === ' ' && s[j - 1] !== ' ' && text.length >= 4 && text.length % 4 === 0) j++;
      else break;
    }
    if (text.length !== len || s[j - 1] === ' ') continue;
    if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(text) || (j < s.length && /[A-Za-z0-9]/.test(s[j])) || !ibanChecks(text)) continue;
    if (best === null || j < best.at) best = { at: j, offset: p };
  }
  return best;
}

function oracleSsn(s: string): Hit | null {
  for (const m of s.matchAll(/(?<!\d)(\d{3})([- ])(\d{2})\2(\d{4})(?!\d)/g)) {
    const area = Number(m[1]);
    if (area === 0 || area === 666 || area >= 900 || m[3] === '00' || m[4] === '0000') continue;
    return { at: m.index! + 11, offset: m.index! };
  }
  return null;
}

const fold = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

function oracleKeyword(s: string, keywords: readonly string[]): Hit | null {
  const text = fold(s);
  for (let i = 0; i < text.length; i++) {
    let longest = 0;
    for (const k of keywords) {
      const kb = Buffer.from(k, 'utf8').toString('latin1');
      if (i + 1 >= kb.length && text.slice(i + 1 - kb.length, i + 1) === fold(kb)) longest = Math.max(longest, kb.length);
    }
    if (longest > 0) return { at: i, offset: i + 1 - longest };
  }
  return null;
}

function oracleRegex(s: string, patterns: readonly string[], window: number): Hit | null {
  const half = window >> 1;
  const windows: [number, number, number][] = [];
  let k = 0;
  for (; k * half + window <= s.length; k++) windows.push([k * half, k * half + window, k * half + window - 1]);
  if ((k === 0 && s.length > 0) || (k > 0 && s.length > (k + 1) * half)) windows.push([k * half, s.length, s.length]);
  for (const [from, to, at] of windows) {
    const text = s.slice(from, to);
    const idx = patterns.map((p) => new RegExp(p).exec(text)?.index ?? -1).filter((i) => i >= 0);
    if (idx.length) return { at, offset: from + Math.min(...idx) };
  }
  return null;
}

/** The oracle's matches for a whole stream (already cut to the scan bound). */
function oracle(s: string, profiles: readonly DlpProfileConfig[], window: number): DlpMatch[] {
  const out: DlpMatch[] = [];
  for (const p of profiles) {
    const hits: [DlpDetectorKind, Hit | null][] = [];
    if (p.cards) hits.push(['card', oracleCard(s)]);
    if (p.ibans) hits.push(['iban', oracleIban(s)]);
    if (p.ssns) hits.push(['ssn', oracleSsn(s)]);
    if (p.keywords?.length) hits.push(['keyword', oracleKeyword(s, p.keywords)]);
    if (p.regexes?.length) hits.push(['regex', oracleRegex(s, p.regexes, window)]);
    let best: [DlpDetectorKind, Hit] | null = null;
    for (const [kind, h] of hits) if (h !== null && (best === null || h.at < best[1].at)) best = [kind, h];
    if (best !== null) out.push({ profile: p.name, detector: best[0], offset: best[1].offset, decidedAt: best[1].at });
  }
  return out.sort((a, b) => a.decidedAt - b.decidedAt);
}

function scanChunked(policy: DlpPolicy, bytes: Uint8Array, cuts: number[], stream = new DlpStream(policy)): DlpMatch[] {
  stream.reset();
  let at = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b), bytes.length]) {
    stream.feed(bytes, at, c - at);
    at = c;
  }
  stream.end();
  return [...stream.matches];
}

// --- generators of streams rich in near-misses --------------------------------------------------------

function luhnComplete(body: string): string {
  for (let d = 0; d < 10; d++) if (luhnOk(body + d)) return body + d;
  throw new Error('unreachable');
}
const cardArb = fc.tuple(fc.integer({ min: 12, max: 18 }), fc.integer({ min: 0, max: 2 ** 31 }), fc.constantFrom('', ' ', '-'), fc.boolean())
  .map(([n, seed, sep, valid]) => {
    let body = '';
    let x = seed;
    for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) % 2 ** 31; body += String(x % 10); }
    let card = luhnComplete(body);
    if (!valid) card = card.slice(0, -1) + String((Number(card.at(-1)) + 1) % 10);
    return sep === '' ? card : card.replace(/(\d{4})(?=\d)/g, `$1${sep}`);
  });
const ibanArb = fc.tuple(fc.constantFrom('DE', 'GB', 'FR', 'NO', 'MT', 'BE'), fc.integer({ min: 0, max: 2 ** 31 }), fc.boolean(), fc.boolean())
  .map(([cc, seed, paper, valid]) => {
    const len = ibanLength(cc);
    let bban = '';
    let x = seed;
    const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
    for (let i = 0; i < len - 4; i++) { x = (x * 1103515245 + 12345) % 2 ** 31; bban += alphabet[x % (i % 3 === 0 ? 36 : 10)]; }
    let check = 2;
    for (; check < 99; check++) if (ibanChecks(`${cc}${String(check).padStart(2, '0')}${bban}`)) break;
    const iban = `${cc}${String(valid ? check : (check + 1) % 100).padStart(2, '0')}${bban}`;
    return paper ? iban.replace(/(.{4})(?=.)/g, '$1 ') : iban;
  });
const ssnArb = fc.tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 99 }), fc.integer({ min: 0, max: 9999 }), fc.constantFrom('-', ' '))
  .map(([a, g, s, sep]) => `${String(a).padStart(3, '0')}${sep}${String(g).padStart(2, '0')}${sep}${String(s).padStart(4, '0')}`);
const noiseArb = fc.string({ unit: fc.constantFrom('0', '1', '7', '9', ' ', '-', 'A', 'D', 'E', 'x', '\n', 'S', 'e', 'c', 'r', 't', 'K'), maxLength: 12 });
const streamArb = fc.array(fc.oneof(cardArb, ibanArb, ssnArb, noiseArb, fc.constantFrom('secret', 'SeCrEt', 'top-secret', 'key=')), { maxLength: 14 }).map((parts) => parts.join(''));

const PROFILES: DlpProfileConfig[] = [
  { name: 'pci', cards: true },
  { name: 'bank', ibans: true, ssns: true },
  { name: 'words', keywords: ['secret', 'top-secret', 'KEY='] },
  { name: 're', regexes: ['K[0-9]{3}', 'x+-x'] },
  { name: 'all', cards: true, ibans: true, ssns: true, keywords: ['ret'], regexes: ['9 9'] },
];

// --- tests --------------------------------------------------------------------------------------------

test('card numbers: Luhn, 13–19 digits, separators, whole groups; reported by offset only', () => {
  const policy = new DlpPolicy([{ name: 'pci', cards: true }]);
  const scan = (s: string): DlpMatch[] => scanChunked(policy, latin1(s), []);
  assert.deepEqual(scan('card=4111111111111111&x=1'), [{ profile: 'pci', detector: 'card', offset: 5, decidedAt: 21 }]);
  assert.deepEqual(scan('pay 4111 1111 1111 1111 cvv'), [{ profile: 'pci', detector: 'card', offset: 4, decidedAt: 23 }]);
  assert.equal(scan('4111-1111-1111-1111').length, 1);
  assert.equal(scan('4111 1111 1111 1111 123').length, 1, 'a CVV after it');
  assert.equal(scan('4111111111111112').length, 0, 'fails Luhn');
  assert.equal(scan('order 41111111111111111111111').length, 0, 'a longer number');
  assert.equal(scan('4111  1111 1111 1111').length, 0, 'two separators break the run');
  assert.equal(scan('378282246310005').length, 1, 'Amex, 15 digits');
});

test('IBANs, SSNs, keywords, regexes: fixtures', () => {
  const one = (p: DlpProfileConfig, s: string): DlpMatch[] => scanChunked(new DlpPolicy([p]), latin1(s), []);
  assert.deepEqual(one({ name: 'b', ibans: true }, 'to DE89 3704 0044 0532 0130 00.').map((m) => m.offset), [3]);
  assert.deepEqual(one({ name: 'b', ibans: true }, 'iban=GB82WEST12345698765432').map((m) => m.offset), [5]);
  assert.equal(one({ name: 'b', ibans: true }, 'DE89 3704 0044 0532 0130 01').length, 0, 'check digits fail');
  assert.equal(one({ name: 'b', ibans: true }, 'DE89370400440532013000X').length, 0, 'runs on');
  assert.equal(one({ name: 'b', ibans: true }, 'XDE89370400440532013000').length, 0, 'inside a word');
  assert.deepEqual(one({ name: 'b', ibans: true }, 'DE12 DE89 3704 0044 0532 0130 00').map((m) => m.offset), [5], 'overlapping candidates');
  assert.deepEqual(one({ name: 's', ssns: true }, 'ssn: 123-45-6789\n').map((m) => m.offset), [5]);
  assert.equal(one({ name: 's', ssns: true }, '666-45-6789 900-12-3456 123-00-4567 123-45-0000 123-45 6789 1123-45-6789').length, 0);
  assert.deepEqual(one({ name: 'k', keywords: ['Confidential', 'secret'] }, 'a CONFIDENTIAL b').map((m) => [m.offset, m.detector]), [[2, 'keyword']]);
  const utf8 = scanChunked(new DlpPolicy([{ name: 'k', keywords: ['geheimnis', 'straße'] }]), Uint8Array.from(Buffer.from('die STRAßE', 'utf8')), [8]);
  assert.deepEqual(utf8.map((m) => m.offset), [4], 'UTF-8 bytes, cut inside ß');
  assert.deepEqual(one({ name: 'r', regexes: ['AKIA[0-9A-Z]{16}'] }, 'aws AKIAIOSFODNN7EXAMPLE').map((m) => [m.offset, m.detector]), [[4, 'regex']]);
});

test('bad profiles are refused with the profile and the problem', () => {
  assert.throws(() => new DlpPolicy([{ name: 'x' }]), /"x" has no detector/);
  assert.throws(() => new DlpPolicy([{ name: 'x', cards: true }, { name: 'x', ssns: true }]), /defined twice/);
  assert.throws(() => new DlpPolicy([{ name: 'x', regexes: ['(a+)+b'] }]), /"x": .*exponential/);
  assert.throws(() => new DlpPolicy([{ name: 'x', regexes: ['(a)\\1'] }]), /back-references/);
  assert.throws(() => new DlpPolicy([{ name: 'x', regexes: ['a*'] }]), /empty string/);
  assert.throws(() => new DlpPolicy([{ name: 'x', regexes: ['('] }]), /"x": \/\(\/: Invalid/);
  assert.throws(() => new DlpPolicy([{ name: 'x', keywords: [''] }]), /"x": empty DLP keyword/);
  assert.equal(dlpRegexProblem('[(a+)+]x'), null, 'inside a class is not a group');
  assert.equal(dlpRegexProblem('(ab)+c'), null);
});

test('the scan stops at the bound: a card past it is not seen; a stream is reusable after reset()', () => {
  const policy = new DlpPolicy([{ name: 'pci', cards: true }], { scanBytes: 32 });
  const stream = new DlpStream(policy);
  assert.equal(scanChunked(policy, latin1(`${'.'.repeat(20)}4111111111111111`), [], stream).length, 0);
  assert.equal(stream.scanned, 32);
  assert.ok(stream.done);
  assert.equal(scanChunked(policy, latin1('4111111111111111 more'), [3], stream).length, 1);
});

test('a fixed stream cut at every point finds what the whole-stream oracle finds', () => {
  const s = 'x DE89 3704 0044 0532 0130 00 y 4111-1111-1111-1111 z 123-45-6789 top-SECRET K123 xx-x 9 9 end';
  const policy = new DlpPolicy(PROFILES, { regexWindow: 16 });
  const want = oracle(s, PROFILES, 16);
  assert.equal(want.length, PROFILES.length);
  const bytes = latin1(s);
  for (let a = 0; a <= bytes.length; a++) assert.deepEqual(scanChunked(policy, bytes, [a]), want, `cut at ${a}`);
  for (let a = 1; a < bytes.length; a += 3) assert.deepEqual(scanChunked(policy, bytes, [a, a + 1, a + 2, a + 7]), want);
});

test('property: chunked feeding at random cuts equals the whole-stream oracle', () => {
  const seen: Record<string, number> = {};
  fc.assert(
    fc.property(streamArb, fc.array(fc.nat({ max: 400 }), { maxLength: 10 }), fc.constantFrom(8, 16, 64, 1024), (s, cuts, window) => {
      const policy = new DlpPolicy(PROFILES, { regexWindow: window });
      const want = oracle(s, PROFILES, window);
      assert.deepEqual(scanChunked(policy, latin1(s), cuts), want, JSON.stringify(s));
      for (const m of want) seen[m.detector] = (seen[m.detector] ?? 0) + 1;
    }),
    { numRuns: 1500 },
  );
  // The generator reaches every detector often, so agreement is not agreement on "nothing found". IBANs are the
  // rarest (a random BBAN or its neighbours often break the format): 23 in one run of 1,500, so the bar is 10.
  for (const kind of ['card', 'iban', 'ssn', 'keyword', 'regex']) assert.ok((seen[kind] ?? 0) > 10, `${kind}: ${JSON.stringify(seen)}`);
});

test('property: byte-at-a-time feeding and arbitrary bytes: same answer, never a throw', () => {
  fc.assert(
    fc.property(fc.oneof(streamArb.map(latin1), fc.uint8Array({ maxLength: 200 })), (bytes) => {
      const policy = new DlpPolicy(PROFILES, { regexWindow: 16 });
      const all = Array.from({ length: bytes.length }, (_, i) => i);
      assert.deepEqual(scanChunked(policy, bytes, all), scanChunked(policy, bytes, []));
    }),
    { numRuns: 500 },
  );
});
