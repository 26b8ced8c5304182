/**
 * `tether capture` end to end in the lab (docs/CAPTURE.md): the daemon in the edge namespace, the CLI beside it,
 * a site's real HTTP exchange (curl over wireguard-go), the pcapng read back by tshark. Root only: as in CI, it
 * fails loudly, never skips.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig } from '../../src/lab/config.js';
import { arrOffConfig, udpRound } from '../../src/lab/demo.js';
import { inNamespace, labDown, labUp, LAB } from '../../src/lab/index.js';
import { nodeTsArgs, TETHER_CLI } from '../../src/lab/paths.js';
import type { LabInfo } from '../../src/lab/index.js';
import { labUpForTest } from '../support/lab-test.js';

// Unique per test file: a capture run never collides with lab.test.ts's namespaces.
const PREFIX = `cap${(process.pid % 1296).toString(36)}`;
const API = 'http://127.0.0.1:8470';

let lab: LabInfo;

before(async (t) => {
  execFileSync('tshark', ['-v'], { stdio: 'ignore' }); // throws, naming tshark, when it is missing (scripts/debian-deps.sh installs it)
  lab = await labUpForTest(t, { prefix: PREFIX, config: defaultConfig() });
});

const tokenFile = (): string => join(lab.runDir, 'api-token');
const cli = (...args: string[]) => inNamespace(lab.names.edge, process.execPath, nodeTsArgs(TETHER_CLI, [...args, '--token-file', tokenFile()]), { timeoutMs: 60_000 });

/** The captures the daemon holds, read with curl inside the edge namespace (the API listens on its loopback). */
async function captures(): Promise<Array<{ id: number; state: string }>> {
  const token = readFileSync(tokenFile(), 'utf8').trim();
  const r = await inNamespace(lab.names.edge, 'curl', ['-sS', '-H', `authorization: Bearer ${token}`, `${API}/v1/captures`], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { items: Array<{ id: number; state: string }> }).items;
}

/** Waits (generously: the machine is shared) until `n` captures run. */
async function running(n: number): Promise<void> {
  for (let waited = 0; waited < 30_000; waited += 200) {
    if ((await captures()).filter((c) => c.state === 'running').length >= n) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${n} captures did not start within 30 s: ${JSON.stringify(await captures())}`);
}

/** tshark's view of a pcapng file: interface, addresses, ports, comment per packet. */
function tshark(file: string, ...fields: string[]): string[][] {
  const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', ...['frame.interface_name', 'ip.src', 'ip.dst', ...fields, 'frame.comment'].flatMap((f) => ['-e', f])], { encoding: 'utf8' });
  return out.trim() === '' ? [] : out.trim().split('\n').map((l) => l.split('|'));
}

test("a capture of site-a's HTTP exchange (curl): tshark shows each packet with its flow, onramp, next hop and why (ARR)", async () => {
  const file = join(lab.runDir, 'http.pcapng');
  const capture = cli('capture', '--onramp', 'site-a-wg', '--filter', 'tcp and port 80', '--duration', '6', '-w', file);
  await running(1);
  const curl = await inNamespace(lab.names.siteA, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://${LAB.internet.server}/captured`], { timeoutMs: 20_000 });
  assert.equal(curl.stdout, '200', curl.stderr);
  const done = await capture;
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stderr, /capture \d+ stopped \(duration limit reached\): \d+ packets/);

  const lines = tshark(file, 'tcp.srcport', 'tcp.dstport', 'tcp.flags.syn', 'tcp.flags.ack', 'http.request.uri');
  const syn = lines.find((l) => l[0] === 'onramp side' && l[5] === '1' && l[6] === '0');
  assert.ok(syn !== undefined, `the SYN as received from site-a: ${JSON.stringify(lines)}`);
  assert.deepEqual([syn[1], syn[2], syn[4]], [LAB.siteHost, LAB.internet.server, '80']);
  assert.match(syn[8], /^received \(before rewrite\); flow 4-\d+ \(original direction\); in site-a-wg; out internet; routing table \(original direction/);
  const flow = /flow (4-\d+)/.exec(syn[8])![1];
  const synOut = lines.find((l) => l[0] === 'outside side' && l[5] === '1' && l[6] === '0');
  assert.equal(synOut?.[1], '198.51.100.1', 'as sent: after source NAT to the pool');
  const synAck = lines.find((l) => l[0] === 'onramp side' && l[5] === '1' && l[6] === '1');
  assert.ok(synAck !== undefined, JSON.stringify(lines));
  assert.deepEqual([synAck[1], synAck[2]], [LAB.internet.server, LAB.siteHost], 'the reply as sent into the tunnel: translated back');
  assert.equal(synAck[8], `sent (after rewrite); flow ${flow} (reply); in internet; out site-a-wg; ARR (return onramp recorded at setup)`);
  assert.ok(lines.some((l) => l[7] === '/captured' && l[0] === 'onramp side'), 'the HTTP request inside, as tether saw it');

  // The verbose dissection shows the comment as Wireshark does.
  const verbose = execFileSync('tshark', ['-r', file, '-V', '-c', '1'], { encoding: 'utf8' });
  assert.match(verbose, /Packet comments\s+received \(before rewrite\); flow 4-\d+/);
});

test("--outer: site-a's WireGuard datagrams (UDP 51820) between its router and the edge endpoint, only when asked", async () => {
  const files = { outer: join(lab.runDir, 'outer.pcapng'), inner: join(lab.runDir, 'inner.pcapng') };
  const withOuter = cli('capture', '--onramp', 'site-a-wg', '--outer', '--duration', '6', '-w', files.outer);
  const without = cli('capture', '--onramp', 'site-a-wg', '--duration', '6', '-w', files.inner);
  await running(2);
  const ping = await inNamespace(lab.names.siteA, 'ping', ['-c', '3', '-i', '0.3', '-W', '2', LAB.internet.server], { timeoutMs: 30_000 });
  assert.equal(ping.code, 0, ping.stderr);
  for (const r of await Promise.all([withOuter, without])) assert.equal(r.code, 0, r.stderr);

  const wg = (file: string): string[][] => {
    const out = execFileSync('tshark', ['-r', file, '-Y', 'udp.port==51820', '-T', 'fields', '-E', 'separator=|', ...['frame.interface_name', 'ip.src', 'ip.dst', 'frame.comment'].flatMap((f) => ['-e', f])], { encoding: 'utf8' });
    return out.trim() === '' ? [] : out.trim().split('\n').map((l) => l.split('|'));
  };
  const outer = wg(files.outer);
  const { router, edgeEndpoint } = LAB.siteA;
  assert.ok(outer.some((l) => l[1] === router && l[2] === edgeEndpoint), `datagrams from the site router as read: ${JSON.stringify(outer)}`);
  assert.ok(outer.some((l) => l[1] === edgeEndpoint && l[2] === router), `datagrams to the site router as written: ${JSON.stringify(outer)}`);
  for (const l of outer) {
    assert.equal(l[0], 'underlay (outer)');
    assert.match(l[3], /^outer packet, underlay (rx|tx) \(.*\); onramp site-a-wg; endpoints 192\.168\.101\.1:51820 \(edge\) and 192\.168\.101\.2$/);
  }
  assert.ok(tshark(files.outer).some((l) => l[0] === 'onramp side' && l[1] === LAB.siteHost), 'the inner packets too');
  assert.deepEqual(wg(files.inner), [], 'without --outer: no outer packet');
  assert.ok(tshark(files.inner).some((l) => l[0] === 'onramp side' && l[1] === LAB.siteHost), 'the inner packets only');
});

test('bad input: a filter that does not parse is refused with its column and token; no token, no capture', async () => {
  const bad = await cli('capture', '--onramp', 'site-a-wg', '--filter', 'tcp and port 99999', '-w', '/dev/null');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /POST \/v1\/captures: 400 cannot start this capture\n {2}filter: not a port number \(0-65535\) at column 14 \('99999'\)/);
  const unknown = await cli('capture', '--onramp', 'nope', '-w', '/dev/null');
  assert.match(unknown.stderr, /onramp: no onramp named nope/);
  const noToken = await inNamespace(lab.names.edge, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '-H', 'content-type: application/json', '-d', '{"onramp":"site-a-wg"}', `${API}/v1/captures`], { timeoutMs: 10_000 });
  assert.equal(noToken.stdout, '401');
});

test('a capture left running is bounded: it stops at its packet count, and at its duration with no traffic', async () => {
  const counted = join(lab.runDir, 'count.pcapng');
  const byCount = cli('capture', '--site', 'site-b', '--filter', 'icmp', '--count', '5', '-w', counted);
  await running(1);
  const ping = await inNamespace(lab.names.siteB, 'ping', ['-c', '10', '-i', '0.2', '-W', '1', LAB.internet.server], { timeoutMs: 30_000 });
  assert.equal(ping.code, 0, ping.stderr);
  const c = await byCount;
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /stopped \(count limit reached\): 5 packets/);
  assert.equal(tshark(counted).length, 10, 'five decisions, each as received and as sent');

  const idle = await cli('capture', '--onramp', 'site-gre-tunnel', '--duration', '2', '-w', join(lab.runDir, 'idle.pcapng'));
  assert.equal(idle.code, 0, idle.stderr);
  assert.match(idle.stderr, /stopped \(duration limit reached\): 0 packets/);
});

test("ARR off: the capture shows replies sent to the other site, and says the routing table chose", async () => {
  await labDown({ prefix: PREFIX });
  lab = await labUp({ prefix: PREFIX, config: arrOffConfig() });
  const files = { 'site-a': join(lab.runDir, 'a.pcapng'), 'site-b': join(lab.runDir, 'b.pcapng') };
  const runs = Object.entries(files).map(([site, file]) => cli('capture', '--site', site, '--filter', `udp and port ${LAB.echoPort}`, '--duration', '8', '-w', file));
  await running(2);
  await udpRound({ 'site-a': lab.names.siteA, 'site-b': lab.names.siteB }, LAB.internet.server);
  for (const r of await Promise.all(runs)) assert.equal(r.code, 0, r.stderr);

  const lines = [...tshark(files['site-a']), ...tshark(files['site-b'])];
  // Where each flow came from (its original direction, as received), and where its replies went.
  const origin = new Map<string, string>();
  for (const l of lines) {
    const m = /^received \(before rewrite\); flow (\S+) \(original direction\); in (\S+);/.exec(l[3]);
    if (m !== null) origin.set(m[1], m[2]);
  }
  const replies = lines.map((l) => /^sent \(after rewrite\); flow (\S+) \(reply\); in internet; out (\S+); (.*)$/.exec(l[3])).filter((m) => m !== null);
  assert.ok(replies.length > 0, JSON.stringify(lines.slice(0, 10)));
  for (const m of replies) assert.equal(m[3], 'routing table (a reply of a flow without ARR: routed by its destination)');
  const astray = replies.filter((m) => origin.has(m[1]) && origin.get(m[1]) !== m[2]);
  assert.ok(astray.length > 0, `some replies went to the other site: ${JSON.stringify(replies.map((m) => [m[1], origin.get(m[1]), m[2]]))}`);
});
