import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { parseIpv4, parseIpv6 } from '../wire/addr.js';
import { QTYPE_A, QTYPE_AAAA, buildNxdomain, buildOverride, dnsOverrideProblem, parseDnsQuery, readDnsName, type DnsQuestion } from './dns.js';

const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Queries Node 20's c-ares resolver sent to a UDP listener on 127.0.0.1 (resolve4 / resolve6). */
const CARES_A = hex('865a0100000100000000000003777777076578616d706c6503636f6d0000010001');
const CARES_AAAA = hex('987f010000010000000000000469707636076578616d706c65036e657400001c0001');

interface ScapyMessage {
  error?: string;
  id: number; qr: number; opcode: number; rd: number; ra: number; rcode: number; qdcount: number; ancount: number;
  qd: { name: string; type: number; class: number }[];
  an: { name: string; type: number; class: number; ttl: number; rdata: string }[];
}

/** scapy (Debian's /usr/bin/python3) decodes and builds DNS messages: test/support/dns-scapy.py. */
function scapy(req: { decode?: string[]; build?: object[] }): { decoded: ScapyMessage[]; built: string[] } {
  const r = spawnSync('/usr/bin/python3', [new URL('../../test/support/dns-scapy.py', import.meta.url).pathname], { input: JSON.stringify(req), encoding: 'utf8' });
  assert.equal(r.status, 0, `scapy (python3-scapy under /usr/bin/python3) is needed for this test: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function question(bytes: Uint8Array): DnsQuestion {
  const r = parseDnsQuery(bytes);
  assert.equal(r.kind, 'query', JSON.stringify(r));
  return (r as { question: DnsQuestion }).question;
}

function reason(bytes: Uint8Array): string {
  const r = parseDnsQuery(bytes);
  assert.equal(r.kind, 'malformed', JSON.stringify(r));
  return (r as { reason: string }).reason;
}

test('fixtures: c-ares queries; scapy-built queries with EDNS and mixed case', () => {
  const a = question(CARES_A);
  assert.deepEqual([a.id, a.name, a.qtype, a.qclass, a.flags], [0x865a, 'www.example.com', QTYPE_A, 1, 0x0100]);
  assert.deepEqual([question(CARES_AAAA).name, question(CARES_AAAA).qtype], ['ipv6.example.net', QTYPE_AAAA]);
  const built = scapy({ build: [{ id: 7, qname: 'WwW.ExAmple.COM.', qtype: 28, edns: true }, { id: 8, qname: '.', qtype: 2 }] }).built;
  const q = question(hex(built[0]));
  assert.equal(q.name, 'www.example.com');
  assert.equal(Buffer.from(q.nameWire).toString('latin1'), '\x03WwW\x07ExAmple\x03COM\x00', 'case kept for the answer (0x20)');
  assert.equal(question(hex(built[1])).name, '', 'the root');
});

test('the edge\'s answers, as scapy reads them: NXDOMAIN, A and AAAA overrides, NODATA, 512-octet cap', () => {
  const mixed = question(hex(scapy({ build: [{ id: 0xbeef, qname: 'Blocked.Example.', qtype: 1, edns: true }] }).built[0]));
  const aaaa = question(CARES_AAAA);
  const mx = { ...question(CARES_A), qtype: 15 };
  const override = { ipv4: [parseIpv4('192.0.2.10'), parseIpv4('192.0.2.11')], ipv6: [parseIpv6('2001:db8::10')!], ttl: 300 };
  const many = { ipv4: Array.from({ length: 100 }, (_, i) => parseIpv4(`198.51.100.${i}`)), ipv6: [], ttl: 0 };
  const msgs = [buildNxdomain(mixed), buildOverride(mixed, override), buildOverride(aaaa, override), buildOverride(mx, override), buildOverride(mixed, many)];
  const [nx, a, six, nodata, capped] = scapy({ decode: msgs.map(toHex) }).decoded;
  assert.deepEqual([nx.id, nx.qr, nx.rcode, nx.rd, nx.ra, nx.ancount], [0xbeef, 1, 3, 1, 1, 0]);
  assert.deepEqual(nx.qd, [{ name: 'Blocked.Example.', type: 1, class: 1 }]);
  assert.deepEqual([a.rcode, a.id], [0, 0xbeef]);
  assert.deepEqual(a.an, [
    { name: 'Blocked.Example.', type: 1, class: 1, ttl: 300, rdata: '192.0.2.10' },
    { name: 'Blocked.Example.', type: 1, class: 1, ttl: 300, rdata: '192.0.2.11' },
  ]);
  assert.deepEqual(six.an, [{ name: 'ipv6.example.net.', type: 28, class: 1, ttl: 300, rdata: '2001:db8::10' }]);
  assert.deepEqual([nodata.rcode, nodata.ancount, nodata.qd[0].type], [0, 0, 15]);
  assert.ok(msgs[4].length <= 512 && capped.ancount === capped.an.length && capped.ancount > 20, `${msgs[4].length} octets, ${capped.ancount} answers`);
  assert.match(dnsOverrideProblem({ ipv4: [1], ipv6: [], ttl: 2 ** 31 })!, /RFC 2181/);
  assert.match(dnsOverrideProblem({ ipv4: [], ipv6: [], ttl: 1 })!, /without an address/);
});

test('not a query: a response, NOTIFY; malformed: each named', () => {
  const q = Uint8Array.from(CARES_A);
  const with_ = (i: number, v: number, b = CARES_A): Uint8Array => {
    const c = Uint8Array.from(b);
    c[i] = v;
    return c;
  };
  assert.equal(parseDnsQuery(with_(2, 0x81)).kind, 'not-query');
  assert.match((parseDnsQuery(with_(2, 0x20)) as { reason: string }).reason, /opcode 4/);
  assert.match(reason(q.subarray(0, 11)), /12-octet/);
  assert.match(reason(with_(5, 0)), /QDCOUNT is 0/);
  assert.match(reason(with_(5, 2)), /QDCOUNT is 2/);
  assert.match(reason(hex('0001010000010000000000000161c00c00010001')), /backwards/);
  assert.match(reason(hex('000101000001000000000000c00c00010001')), /backwards/);
  assert.match(reason(hex('000101000001000000000000c01000010001')), /backwards/, 'a forward pointer');
  assert.match(reason(hex('000101000001000000000000c00200010001')), /into the header/);
  assert.match(reason(hex('0001010000010000000000000561620001')), /past the end/);
  assert.match(reason(hex('0001010000010000000000004161620001')), /extended label/);
  assert.match(reason(hex('00010100000100000000000001610000')), /QTYPE/);
  const long = Uint8Array.from([...CARES_A.subarray(0, 12), ...new Array(128).fill([1, 0x61]).flat(), 0, 0, 1, 0, 1]);
  assert.match(reason(long), /longer than 255/);
  assert.match(reason(Uint8Array.from([...CARES_A.subarray(0, 12), ...new Array(4).fill([63, ...new Array(63).fill(0x61)]).flat(), 0, 0, 1, 0, 1])), /longer than 255/);
});

test('readDnsName follows real compression in an answer, and a chain of 8,000 backward pointers ends', () => {
  // Question www.example.com at 12, an answer named mail + pointer to "example.com" (offset 16).
  const msg = hex('000181800001000100000000037777770765' + '78616d706c6503636f6d0000010001' + '046d61696cc010');
  const n = readDnsName(msg, 0, msg.length, 33);
  assert.ok(typeof n !== 'string');
  assert.deepEqual([n.name, n.next], ['mail.example.com', msg.length]);
  assert.equal(Buffer.from(n.wire).toString('latin1'), '\x04mail\x07example\x03com\x00');
  // A root label at 12, then 8,000 pointers, each to the one before: the longest chain 14-bit pointers reach.
  const chain = new Uint8Array(12 + 1 + 2 * 8000);
  for (let i = 0; i < 8000; i++) {
    const at = 13 + 2 * i;
    const target = at - (i === 0 ? 1 : 2);
    chain[at] = 0xc0 | (target >> 8);
    chain[at + 1] = target & 0xff;
  }
  const s = readDnsName(chain, 0, chain.length, chain.length - 2);
  assert.ok(typeof s !== 'string' && s.name === '');
});

const labelBytes = fc.uint8Array({ minLength: 1, maxLength: 63 });
/** The obvious presentation form: letters lower-cased, LDH and "_" as they are, every other octet \DDD. */
function presentation(labels: Uint8Array[]): string {
  return labels.map((l) => [...l].map((c) => {
    const ch = String.fromCharCode(c);
    return /[A-Za-z0-9_-]/.test(ch) ? ch.toLowerCase() : `\\${String(c).padStart(3, '0')}`;
  }).join('')).join('.');
}

test('property: any question name round-trips; any bytes never throw', () => {
  fc.assert(
    fc.property(fc.array(labelBytes, { maxLength: 6 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (labels, id, qtype) => {
      const wire = [...labels.flatMap((l) => [l.length, ...l]), 0];
      const msg = Uint8Array.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...wire, qtype >> 8, qtype & 0xff, 0, 1]);
      const q = question(msg);
      assert.equal(q.name, presentation(labels));
      assert.deepEqual([...q.nameWire], wire);
      assert.deepEqual([q.id, q.qtype], [id, qtype]);
      const nx = buildNxdomain(q);
      assert.deepEqual(question(Uint8Array.from([...nx.subarray(0, 2), 1, 0, ...nx.subarray(4)])).nameWire, q.nameWire);
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, header) => {
      const msg = header ? Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...bytes]) : bytes;
      assert.ok(['query', 'not-query', 'malformed'].includes(parseDnsQuery(msg).kind));
    }),
    { numRuns: 5000 },
  );
});

test('property: the edge\'s answers to random queries are read back by scapy as the question asked', () => {
  const cases = fc.sample(fc.tuple(fc.array(fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/), { minLength: 1, maxLength: 4 }), fc.constantFrom(1, 28, 16), fc.nat({ max: 0xffff }), fc.nat({ max: 86400 })), 40);
  const msgs: Uint8Array[] = [];
  for (const [labels, qtype, id, ttl] of cases) {
    const q = question(Uint8Array.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels.flatMap((l) => [l.length, ...Buffer.from(l)]), 0, 0, qtype, 0, 1]));
    msgs.push(buildOverride(q, { ipv4: [parseIpv4('203.0.113.7')], ipv6: [parseIpv6('2001:db8::7')!], ttl }), buildNxdomain(q));
  }
  const decoded = scapy({ decode: msgs.map(toHex) }).decoded;
  cases.forEach(([labels, qtype, id, ttl], i) => {
    const [ov, nx] = [decoded[2 * i], decoded[2 * i + 1]];
    const name = `${labels.join('.')}.`;
    assert.deepEqual([ov.id, ov.rcode, ov.qd[0].name, nx.rcode, nx.qd[0].name], [id, 0, name, 3, name]);
    const want = qtype === 1 ? ['203.0.113.7'] : qtype === 28 ? ['2001:db8::7'] : [];
    assert.deepEqual(ov.an.map((r) => [r.name, r.ttl, r.rdata]), want.map((w) => [name, ttl, w]));
  });
});
