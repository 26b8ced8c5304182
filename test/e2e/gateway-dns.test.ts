/**
 * The gateway answers DNS (issue 12), end to end in the lab: dnsmasq (Debian, its own command line, no service)
 * serves names on the Internet server's address; `dig` in the two overlapping sites (10.0.1.10 each, over
 * wireguard-go) asks it through tether. An override rule for site-a: A gets the override, B the server's answer;
 * a block rule: NXDOMAIN from the edge for every site (dnsmasq never sees those queries); other names resolve.
 * Hostile datagrams to port 53 (compression loop, truncated, QDCOUNT 0 or 2, oversized) sent with scapy through
 * site-a: forwarded and counted, or answered when readable; the edge lives and both sites keep resolving.
 * Root only: as in CI, it fails loudly, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { validateConfig } from '../../src/config/index.js';
import { defaultConfig } from '../../src/lab/config.js';
import { inNamespace, labStatus, LAB, run } from '../../src/lab/index.js';
import type { LabInfo } from '../../src/lab/index.js';
import { SYSTEM_PYTHON } from '../../src/lab/paths.js';
import { edgeStatus } from '../support/edge-status.js';
import { labUpForTest } from '../support/lab-test.js';

/** This file's own lab prefix, per process (labUp removes what an earlier run of the same prefix left). */
const PREFIX = `gd${process.pid % 10000}`;
const SERVER = LAB.internet.server;
/** What dnsmasq answers (--address): the server's real answers. */
const REAL = { intranet: '203.0.113.80', blocked: '203.0.113.81', www: '203.0.113.82' };
/** site-a's override for intranet.example (TEST-NET-1). */
const OVERRIDE = '192.0.2.77';
const OVERRIDE_TTL = 30;
/** dig waits 3 s per try, twice: generous on a shared, busy machine; no timing is asserted. */
const DIG_ARGS = ['+time=3', '+tries=2'];

let lab: LabInfo;
let sites: Array<[string, string]>;
let dnsmasq: ChildProcess | null = null;
const dnsDir = `/tmp/tether-${PREFIX}-dns`;
const dnsLog = join(dnsDir, 'dnsmasq.log');

interface DnsStatus {
  gatewayDns: { decided: number; answered: number; unparsed: number; answerLost: number };
}

async function status(): Promise<DnsStatus> {
  const s = await labStatus({ prefix: PREFIX });
  return edgeStatus<DnsStatus>(s.edge!.pid!, lab.edgeLog!);
}

interface Dig {
  status: string;
  answers: Array<{ name: string; ttl: number; type: string; data: string }>;
  server: string;
  text: string;
}

/** dig @SERVER from a site's namespace: the header's status and the answer section. */
async function dig(ns: string, name: string, type = 'A'): Promise<Dig> {
  const r = await inNamespace(ns, 'dig', [...DIG_ARGS, `@${SERVER}`, name, type], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, `dig ${name} in ${ns} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  const text = r.stdout;
  const st = /status: ([A-Z]+)/.exec(text)?.[1] ?? 'none';
  const server = /;; SERVER: ([^#\s]+)/.exec(text)?.[1] ?? 'none';
  const section = text.split(';; ANSWER SECTION:')[1]?.split('\n\n')[0] ?? '';
  const answers = section.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 5)
    .map(([n, ttl, , t, data]) => ({ name: n, ttl: Number(ttl), type: t, data }));
  return { status: st, answers, server, text };
}

function labConfig(): ReturnType<typeof defaultConfig> {
  return validateConfig({
    ...defaultConfig(),
    gateway: {
      rules: [
        {
          name: 'intranet-a', action: 'override', sites: ['site-a'], sources: ['dns'], hostnames: ['intranet.example'],
          override: { addresses: [OVERRIDE], ttl: OVERRIDE_TTL },
        },
        { name: 'no-blocked', action: 'block', hostnames: ['blocked.example', '*.blocked.example'] },
      ],
    },
  }, 'the gateway DNS lab configuration');
}

before(async (t) => {
  for (const [tool, args] of [['dnsmasq', ['--version']], ['dig', ['-v']], [SYSTEM_PYTHON, ['-c', 'import scapy']]] as const) {
    const r = await run(tool, [...args]).catch((e: Error) => ({ code: -1, stderr: e.message, stdout: '' }));
    if (r.code !== 0) throw new Error(`${tool} is missing or broken (scripts/debian-deps.sh installs dnsmasq-base, bind9-dnsutils, python3-scapy): ${r.stderr}`);
  }
  lab = await labUpForTest(t, { prefix: PREFIX, config: labConfig() });
  sites = [['site-a', lab.names.siteA], ['site-b', lab.names.siteB]];
  rmSync(dnsDir, { recursive: true, force: true });
  mkdirSync(dnsDir, { recursive: true });
  writeFileSync(dnsLog, '');
  // Its own configuration only: no /etc/dnsmasq.conf, no resolv.conf, no hosts file, no upstream, no DHCP.
  dnsmasq = spawn('ip', ['netns', 'exec', lab.names.internet, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null',
    '--no-resolv', '--no-hosts', '--no-poll', `--listen-address=${SERVER}`, '--bind-interfaces', '--port=53', '--user=root',
    `--pid-file=${join(dnsDir, 'dnsmasq.pid')}`, '--log-queries', `--log-facility=${dnsLog}`,
    `--address=/intranet.example/${REAL.intranet}`, `--address=/blocked.example/${REAL.blocked}`, `--address=/www.example/${REAL.www}`],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  dnsmasq.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // Ready when it answers in its own namespace.
  for (let i = 0; ; i++) {
    const r = await inNamespace(lab.names.internet, 'dig', ['+time=1', '+tries=1', `@${SERVER}`, 'www.example', 'A', '+short']);
    if (r.stdout.trim() === REAL.www) break;
    if (i === 30 || dnsmasq.exitCode !== null) throw new Error(`dnsmasq did not start in ${lab.names.internet}: ${stderr}\n${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 500));
  }
});

after(async () => {
  if (dnsmasq !== null && dnsmasq.exitCode === null) dnsmasq.kill('SIGTERM');
  rmSync(dnsDir, { recursive: true, force: true });
});

test('override for site-a: A gets the override address, B the server\'s real answer; other names resolve from both', async () => {
  const a = await dig(lab.names.siteA, 'intranet.example');
  assert.equal(a.status, 'NOERROR', a.text);
  assert.equal(a.server, SERVER, 'the answer comes from the server the client asked');
  assert.deepEqual(a.answers, [{ name: 'intranet.example.', ttl: OVERRIDE_TTL, type: 'A', data: OVERRIDE }], a.text);
  const b = await dig(lab.names.siteB, 'intranet.example');
  assert.equal(b.status, 'NOERROR', b.text);
  assert.deepEqual(b.answers.map((x) => x.data), [REAL.intranet], b.text);
  // AAAA for the override (no IPv6 address in it): NODATA, not the server's answer.
  const aaaa = await dig(lab.names.siteA, 'intranet.example', 'AAAA');
  assert.deepEqual([aaaa.status, aaaa.answers], ['NOERROR', []], aaaa.text);
  for (const [site, ns] of sites) {
    const w = await dig(ns, 'www.example');
    assert.deepEqual([w.status, w.answers.map((x) => x.data)], ['NOERROR', [REAL.www]], `${site}\n${w.text}`);
  }
});

test('a blocked name gets NXDOMAIN from the edge for every site; the server never sees the query', async () => {
  const before = await status();
  for (const [site, ns] of sites) {
    for (const name of ['blocked.example', 'deep.sub.Blocked.Example']) {
      const r = await dig(ns, name);
      assert.equal(r.status, 'NXDOMAIN', `${site} ${name}\n${r.text}`);
      assert.deepEqual(r.answers, []);
    }
  }
  const after = await status();
  assert.ok(after.gatewayDns.answered - before.gatewayDns.answered >= 4, JSON.stringify(after.gatewayDns));
  const asked = readFileSync(dnsLog, 'utf8');
  assert.doesNotMatch(asked, /blocked\.example/i, `dnsmasq saw a blocked query:\n${asked}`);
  assert.match(asked, /query\[A\] www\.example/, 'dnsmasq logs the queries it does see');
});

/** A query for `name` (id 0x4242, RD), written out: header, labels, QTYPE A, QCLASS IN. */
function query(name: string, qdcount = 1): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([Buffer.from([0x42, 0x42, 1, 0, 0, qdcount, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

test('hostile datagrams to port 53 through site-a: counted and forwarded (or answered when readable); the edge lives, both sites resolve', async () => {
  const unreadable = [
    // A compression pointer to itself (offset 12): a loop.
    Buffer.from([0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]),
    // Truncated inside the name, and inside QTYPE.
    query('blocked.example').subarray(0, 20),
    query('blocked.example').subarray(0, 31),
    // QDCOUNT 0 and 2.
    query('blocked.example', 0),
    query('blocked.example', 2),
    // Shorter than the header.
    Buffer.from([0x42, 0x42, 1]),
    // A name over 255 octets: five 63-octet labels.
    query(Array.from({ length: 5 }, () => 'a'.repeat(63)).join('.')),
  ];
  // Oversized but readable: a blocked query followed by 1,200 octets of junk (the question is all the edge reads).
  const oversized = Buffer.concat([query('blocked.example'), Buffer.alloc(1200, 0xab)]);
  const before = await status();
  const r = await inNamespace(lab.names.siteA, SYSTEM_PYTHON, [join(import.meta.dirname, '../support/dns-hostile.py'), SERVER, '47000'], {
    input: JSON.stringify([...unreadable, oversized].map((b) => b.toString('hex'))), timeoutMs: 60_000,
  });
  assert.equal(r.code, 0, `scapy: ${r.stderr}`);
  assert.equal(r.stdout.trim(), String(unreadable.length + 1));
  // Counted: scapy's datagrams cross the tunnel asynchronously; wait (behaviourally) until the edge has seen them.
  let after = await status();
  for (let i = 0; i < 50 && after.gatewayDns.unparsed - before.gatewayDns.unparsed < unreadable.length; i++) {
    await new Promise((res) => setTimeout(res, 200));
    after = await status();
  }
  assert.equal(after.gatewayDns.unparsed - before.gatewayDns.unparsed, unreadable.length, JSON.stringify(after.gatewayDns));
  assert.ok(after.gatewayDns.answered - before.gatewayDns.answered >= 1, 'the oversized readable query was answered');
  const st = await labStatus({ prefix: PREFIX });
  assert.ok(st.edge?.alive, 'the edge is still running');
  for (const [site, ns] of sites) {
    const w = await dig(ns, 'www.example');
    assert.deepEqual([w.status, w.answers.map((x) => x.data)], ['NOERROR', [REAL.www]], `${site}\n${w.text}`);
    const nx = await dig(ns, 'blocked.example');
    assert.equal(nx.status, 'NXDOMAIN', `${site}\n${nx.text}`);
  }
});
