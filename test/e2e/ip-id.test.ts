/**
 * IP ids after NAT never collide (issue 13, "must show"), end to end in the lab (docs/LAB.md): both overlapping
 * WireGuard sites' 10.0.1.10 send, at the same moment, one UDP datagram cut into three fragments with the same
 * original IP id to the same server, their fragments interleaved in time. The server's own kernel reassembles
 * (a plain UDP socket receives): each site's datagram must arrive whole, its payload matching the checksum it
 * carries. Once through source NAT to the Internet server (both sites become the pool address), once to the
 * data-center server (both stay 10.0.1.10, ARR keeps them apart). Without the edge's renumbering the two
 * datagrams share (source, destination, protocol, id) at the server and at most one of them, often neither,
 * survives reassembly. Root only: fails loudly, never skips.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { defaultConfig } from '../../src/lab/config.js';
import { inNamespaceOk, LAB, type LabInfo } from '../../src/lab/index.js';
import { REPO_ROOT, SYSTEM_PYTHON } from '../../src/lab/paths.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `id${(process.pid % 46656).toString(36)}`;
const SENDER = join(REPO_ROOT, 'test', 'support', 'frag-sender.py');
const SINK = join(REPO_ROOT, 'test', 'support', 'udp-sink.py');
const SINK_PORT = 9100;
/** Both sites send from this port too: the most alike two datagrams can be. */
const SITE_PORT = 41000;
/** 3,000 bytes of body in 1,200-byte fragments: three fragments, each fits the 1,420-byte WireGuard tunnel. */
const BODY_BYTES = 3000;
const FRAGMENT_DATA = 1200;
const FRAGMENTS = 3;
/** Seconds between a site's fragments: both sites' first fragments leave before either's last. */
const FRAGMENT_GAP_S = 0.3;
/** Time for both senders to start (python3 importing scapy on a busy machine) before the common moment. */
const START_DELAY_MS = 4000;
const SINK_TIMEOUT_S = 30;

interface Sent {
  site: string;
  id: number;
  sha256: string;
  sizes: number[];
  sentAt: number[];
  lateBy: number;
}

interface Received {
  from: string;
  port: number;
  length: number;
  site: string;
  intact: boolean;
}

let lab: LabInfo;

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX, config: defaultConfig() });
});

/** A namespace kernel's counters of one /proc/net/snmp group ("Ip": ReasmOKs, ReasmFails; "Udp": InCsumErrors...). */
async function snmpCounters(ns: string, group: 'Ip' | 'Udp'): Promise<Record<string, number>> {
  const lines = (await inNamespaceOk(ns, 'cat', ['/proc/net/snmp'])).split('\n').filter((l) => l.startsWith(`${group}:`));
  const names = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, values[i]]));
}

/** What changed in a namespace's IP and UDP counters between two readings (only the counters that moved). */
async function countersNow(ns: string): Promise<Record<string, number>> {
  return { ...(await snmpCounters(ns, 'Ip')), ...(await snmpCounters(ns, 'Udp')) };
}

function moved(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(after).filter((k) => after[k] !== before[k]).map((k) => [k, after[k] - before[k]]));
}

/** Starts the UDP sink in `ns`; resolves once it listens, with `done`: a promise of everything it received. */
async function startSink(ns: string, count: number): Promise<{ done: Promise<Received[]> }> {
  const child = spawn('ip', ['netns', 'exec', ns, SYSTEM_PYTHON, SINK, String(SINK_PORT), String(count), String(SINK_TIMEOUT_S)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr.on('data', (b: Buffer) => stderr.push(b.toString()));
  const received: Received[] = [];
  let onReady!: () => void;
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    child.on('close', (code) => reject(new Error(`the UDP sink in ${ns} ended before it listened (exit ${code}): ${stderr.join('')}`)));
  });
  const done = new Promise<Received[]>((resolve, reject) => {
    child.on('close', (code) => (code === 0 ? resolve(received) : reject(new Error(`the UDP sink in ${ns} failed (exit ${code}): ${stderr.join('')}`))));
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line) as Received & { ready?: boolean; done?: boolean };
    if (msg.ready) onReady();
    else if (!msg.done) received.push(msg);
  });
  await ready;
  return { done }; // wrapped: an async function returning the promise itself would wait for it
}

/** Both sites send their fragmented datagram (same source, port and original id) to `dst` at the same moment. */
async function sendFromBothSites(dst: string, id: number): Promise<Sent[]> {
  const at = (Date.now() + START_DELAY_MS) / 1000;
  const sites = [['site-a', lab.names.siteA], ['site-b', lab.names.siteB]] as const;
  return Promise.all(sites.map(async ([site, ns]) => {
    const cfg = { src: LAB.siteHost, dst, sport: SITE_PORT, dport: SINK_PORT, id, site, bytes: BODY_BYTES, fragsize: FRAGMENT_DATA, at, gap: FRAGMENT_GAP_S };
    return JSON.parse(await inNamespaceOk(ns, SYSTEM_PYTHON, [SENDER, JSON.stringify(cfg)], { timeoutMs: 60_000 })) as Sent;
  }));
}

for (const [where, server, seenFrom] of [
  ['the Internet server, through source NAT (both sites become the pool address)', LAB.internet.server, '198.51.100.1'],
  ['the data-center server, without NAT (both sites stay 10.0.1.10)', LAB.dc.server, LAB.siteHost],
] as const) {
  test(`two sites, same 10.0.1.10, same port, same original IP id, 3 fragments each at the same moment, to ${where}: the server reassembles each site's datagram whole`, async () => {
    const ns = server === LAB.dc.server ? lab.names.dc : lab.names.internet;
    const before = await countersNow(ns);
    const sink = await startSink(ns, 2);
    const sent = await sendFromBothSites(server, 0x4242);
    for (const s of sent) assert.equal(s.sizes.length, FRAGMENTS, `${s.site}: ${JSON.stringify(s)}`);
    // The fragments really were interleaved: both first fragments left before either last one.
    const firsts = sent.map((s) => s.sentAt[0]);
    const lasts = sent.map((s) => s.sentAt[FRAGMENTS - 1]);
    assert.ok(Math.max(...firsts) < Math.min(...lasts), `not interleaved: ${JSON.stringify(sent.map((s) => ({ site: s.site, sentAt: s.sentAt, lateBy: s.lateBy })))}`);
    const got = await sink.done;
    const counters = moved(before, await countersNow(ns));
    const context = JSON.stringify({ got, sent: sent.map((s) => ({ site: s.site, sentAt: s.sentAt })), counters });
    assert.deepEqual(got.map((r) => r.site).sort(), ['site-a', 'site-b'], `each site's datagram arrives once: ${context}`);
    for (const r of got) {
      assert.ok(r.intact, `${r.site}'s datagram arrives intact (its body matches the sha256 it carries): ${context}`);
      assert.equal(r.from, seenFrom, context);
    }
    assert.notEqual(got[0].port, got[1].port, 'two flows: the second site\'s port was rewritten (NAT mapping or clash)');
    assert.ok((counters.ReasmOKs ?? 0) >= 2, `the server's kernel reassembled both: ${context}`);
  });
}
