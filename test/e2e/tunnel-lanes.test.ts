/**
 * Tunnel onramps with lanes (docs/ARCHITECTURE.md "Lanes", issue 10 item 4), end to end: the lab with its IPsec
 * site (labUp({ ipsecSite: true })) and `tether run --lanes 2`. Real peers: wireguard-go (site-a, site-c, a site
 * added live), strongSwan (site-d); every site is 10.0.1.10 on 10.0.1.0/24. Checks:
 *   - site-a (WireGuard) and site-d (IPsec) each open many UDP flows to a server on the Internet (through the NAT)
 *     and to one in the data center: every flow's datagrams arrive in order at the server and its echoes in order
 *     at the site that sent them, nothing of another site; after the kernel's multi-queue egress TUN has forgotten
 *     which queue each flow was written on (drivers/net/tun.c TUN_FLOW_EXPIRE, 3 s), late replies the kernel
 *     hands to lane 1 are handed to lane 0 by their NAT port and still arrive;
 *   - a data-center host opens many flows toward site-c (WireGuard) over the data center's route: those the kernel
 *     gave lane 1 are set up there and delivered through lane 0 (the lane counters say so), in order; a capture of
 *     site-c running meanwhile holds every datagram site-c received exactly once as sent (lane 1 taps what it
 *     forwards, lane 0 does not tap the deliveries it makes for it: docs/CAPTURE.md "Lanes");
 *   - with lanes running, a WireGuard site added live through the API (device, site, onramp, a data-center route to
 *     it) carries the data center's flows, lane 1's among them (lane 1 applied the change too).
 * Namespaces and wireguard-go interfaces carry the prefix tl<pid>; labUp removes leftovers of that prefix first.
 * Needs root, wireguard-go and strongSwan; never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LANE_FLOW_STRIDE } from '../../src/control/flow-walk.js';
import { LAB, udpExchange, type LabInfo } from '../../src/lab/index.js';
import { missingStrongSwan } from '../../src/lab/strongswan.js';
import { siteDStrongSwan } from '../../src/lab/site-d.js';
import { labUpLanes, type LanesDaemon, type LanesStatus } from '../support/lanes-daemon.js';
import { LANES_SERVER_SCRIPT, flowClientScript } from '../support/lanes-topology.js';
import { edgeApi, newWgKeys, startLiveSite, type LiveSite } from '../support/live-site.js';
import { waitForEcho, type IpsecSite } from '../support/strongswan.js';
import { nsScript, type Child } from '../support/ns-child.js';
import { requireRoot } from '../support/lab-test.js';

const PREFIX = `tl${(process.pid % 36 ** 4).toString(36)}`;
/** Flows per site and destination: enough that the kernel spreads them over both queues. */
const FLOWS = 40;
const PER_FLOW = 60;
/** The test's own servers (the lab's echo on port 7 answers too, but cannot send late replies). */
const SERVER_PORT = 9100;
/**
 * Pause between rounds of one datagram per flow: keeps the offered load under what the Node servers read on a
 * shared core. UDP may lose a datagram under load; order may never be broken.
 */
const PACE_MS = 10;
/** Generous behavioural bounds on a loaded 2-core machine, not timed assertions. */
const WAIT_MS = 90_000;
/** drivers/net/tun.c forgets a flow's queue after TUN_FLOW_EXPIRE (3 s) without a write; twice that and a cleanup pass. */
const KERNEL_FORGETS_MS = 8_000;
const LIVE_DEVICE = 'wg-lanes';
/** tshark's text for the capture (about 10,000 records with their comments: a few MiB). */
const TSHARK_OUTPUT_BYTES = 64 * 1024 * 1024;
const LIVE_ENDPOINT = '192.168.111.1';

/** The sites' and the data center's clients (lanes-topology.ts flowClientScript): their tally on stdin "tally". */
const CLIENT_SCRIPT = flowClientScript({ perFlow: PER_FLOW, paceMs: PACE_MS, port: SERVER_PORT });

interface Tally { echoes: number[]; late: number[]; wrong: string[] }
type Report = Record<string, [string, number, ...number[]]>;
type Status = LanesStatus;

let lab: LabInfo;
let edge: LanesDaemon & { lab: LabInfo };
const children: Child[] = [];
const liveSites: LiveSite[] = [];

function start(ns: string, script: string, args: string[]): Child {
  const c = nsScript(ns, script, args, { stdin: true, waitMs: WAIT_MS });
  children.push(c);
  return c;
}

async function server(ns: string, address: string): Promise<Child> {
  const s = start(ns, LANES_SERVER_SCRIPT, [address, String(SERVER_PORT)]);
  await s.waitFor('ready');
  return s;
}

/** The edge's merged status; statusUntil: once `done` holds (the other lane's counters reach lane 0's status once a second). */
const status = (): Promise<Status> => edge.status();
const statusUntil = (done: (s: Status) => boolean): Promise<Status> => edge.statusUntil(done);

/** The server's report once every datagram is in, or nothing more arrives. */
async function report(s: Child, expected: number): Promise<Report> {
  let r: Report = {};
  let previous = -1;
  for (let tries = 0; tries < 100; tries++) {
    r = JSON.parse(await s.ask('report', '{')) as Report;
    const total = Object.values(r).reduce((n, x) => n + x.length - 2, 0);
    if (total >= expected || total === previous) break;
    previous = total;
    await new Promise((res) => setTimeout(res, 300));
  }
  return r;
}

/** Every source's sequence numbers strictly increasing; returns how many datagrams arrived per tag. */
function inOrder(r: Report, what: string): Map<string, number> {
  const per = new Map<string, number>();
  for (const [source, [tag, flow, ...seqs]] of Object.entries(r)) {
    for (let k = 1; k < seqs.length; k++) assert.ok(seqs[k] > seqs[k - 1], `${what}: ${tag} flow ${flow} (${source}): ${seqs[k]} after ${seqs[k - 1]}: out of order`);
    per.set(tag, (per.get(tag) ?? 0) + seqs.length);
  }
  return per;
}

before(async (t) => {
  requireRoot('the tunnel-lanes test needs root (network namespaces, TUN devices); CI runs it as root; it is never skipped');
  const missing = missingStrongSwan();
  if (missing !== null) throw new Error(missing);
  edge = await labUpLanes(t, { prefix: PREFIX, ipsecSite: true });
  lab = edge.lab;
  const site: IpsecSite = { swan: siteDStrongSwan(lab.names), hostNs: lab.names.siteD };
  await site.swan.waitEstablished('site-d\'s SA');
  await waitForEcho(site, { address: LAB.internet.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort }, 'site-d UDP echo');
});

after(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  for (const s of liveSites) await s.stop();
});

test('a WireGuard and an IPsec site (both 10.0.1.10), many flows each to the Internet and the data center: in order, every echo to its own site; late Internet replies on lane 1 handed to lane 0', async (ctx) => {
  const inet = await server(lab.names.internet, LAB.internet.server);
  const dc = await server(lab.names.dc, LAB.dc.server);
  const targets = `${LAB.internet.server},${LAB.dc.server}`;
  // Other source ports per site: toward the data center (no NAT) the two sites' flows stay distinct 5-tuples.
  const sites = [['wg', lab.names.siteA, 41000], ['ipsec', lab.names.siteD, 43000]] as const;
  const clients = sites.map(([tag, ns, base]) => start(ns, CLIENT_SCRIPT, [tag, LAB.siteHost, String(base), String(2 * FLOWS), targets]));
  await Promise.all(clients.map((c) => c.waitFor('sent')));

  const perServer = FLOWS * PER_FLOW * sites.length;
  const fromInet = inOrder(await report(inet, perServer), 'Internet server');
  const fromDc = inOrder(await report(dc, perServer), 'data-center server');
  for (const [tag] of sites) {
    // UDP may lose some under load (both servers and the sites share 2 cores with the edge); most must arrive.
    assert.ok((fromInet.get(tag) ?? 0) > (FLOWS * PER_FLOW) / 2, `${tag}: ${fromInet.get(tag)} of ${FLOWS * PER_FLOW} datagrams at the Internet server`);
    assert.ok((fromDc.get(tag) ?? 0) > (FLOWS * PER_FLOW) / 2, `${tag}: ${fromDc.get(tag)} of ${FLOWS * PER_FLOW} datagrams at the data-center server`);
  }

  // Lane 0 owns the tunnel sites' flows: their NAT ports are lane 0's. After the kernel forgot which queue wrote
  // them, replies are spread by hash: lane 1 gets about half and hands them to lane 0 by port.
  await new Promise((r) => setTimeout(r, KERNEL_FORGETS_MS));
  const before = await status();
  inet.child.stdin!.write('late\n');
  await new Promise((r) => setTimeout(r, 2000));
  for (const [k, c] of clients.entries()) {
    const t = JSON.parse(await c.ask('tally', '{"echoes"')) as Tally;
    const tag = sites[k][0];
    assert.deepEqual(t.wrong, [], `${tag}: nothing of another site or flow, nothing out of order`);
    assert.ok(t.echoes.every((n) => n > 0), `${tag}: echoes back to every flow: ${JSON.stringify(t.echoes)}`);
    // Flows 0, 2, 4, … went to the Internet server (round robin over the targets).
    assert.deepEqual(t.late.filter((_, f) => f % 2 === 0), new Array<number>(FLOWS).fill(1), `${tag}: every late reply back`);
  }
  const after = await statusUntil((s) => (s.edge.lane_received ?? 0) === (s.edge.lane_handed_off ?? 0) && (s.edge.lane_handed_off ?? 0) > (before.edge.lane_handed_off ?? 0));
  assert.ok((after.edge.lane_handed_off ?? 0) > (before.edge.lane_handed_off ?? 0), `late replies handed from lane 1 to lane 0: ${JSON.stringify(after.edge)}`);
  assert.equal(after.edge.lane_received ?? 0, after.edge.lane_handed_off, `every handed-off packet received: ${JSON.stringify(after.edge)}`);
  assert.equal(after.edge.lane_ring_full ?? 0, 0, 'no ring ever full');
  ctx.diagnostic(`arrived at the Internet server ${JSON.stringify(Object.fromEntries(fromInet))}, at the data center ${JSON.stringify(Object.fromEntries(fromDc))} (of ${FLOWS * PER_FLOW} each); late replies handed from lane 1 to lane 0: ${(after.edge.lane_handed_off ?? 0) - (before.edge.lane_handed_off ?? 0)}`);
});

/** Downloads `path` of the daemon's API into `file` (curl in the edge's namespace, the lab's token). */
function download(path: string, file: string): void {
  const token = readFileSync(join(lab.runDir, 'api-token'), 'utf8').trim();
  execFileSync('ip', ['netns', 'exec', lab.names.edge, 'curl', '-sS', '--fail-with-body', '-H', `authorization: Bearer ${token}`, '-o', file, `http://127.0.0.1:8470${path}`]);
}

interface CaptureStatus { state: string; packets: number; rate_skipped: number; ring_skipped: number; lane_errors?: string[] }

test('a data-center host opens many flows toward the WireGuard site-c: those set up on lane 1 are delivered through lane 0, in order; a capture holds each once', async (ctx) => {
  const siteC = await server(lab.names.siteC, LAB.siteHost);
  // The datagrams to site-c's server and its echoes: one decision each, a received and a sent record.
  const started = await edgeApi(lab, 'POST', '/v1/captures', { site: 'site-c', filter: `udp port ${SERVER_PORT}`, rate: 100_000, count: 1_000_000 });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const captureId = (started.body as { id: number }).id;
  const before = await status();
  const client = start(lab.names.dc, CLIENT_SCRIPT, ['dc', LAB.dc.server, '45000', String(FLOWS), LAB.siteHost]);
  await client.waitFor('sent');
  const got = inOrder(await report(siteC, FLOWS * PER_FLOW), 'site-c\'s server');
  assert.ok((got.get('dc') ?? 0) > (FLOWS * PER_FLOW) / 2, `${got.get('dc')} of ${FLOWS * PER_FLOW} datagrams at site-c`);
  const t = JSON.parse(await client.ask('tally', '{"echoes"')) as Tally;
  assert.deepEqual(t.wrong, [], 'echoes in order, nothing foreign');
  assert.ok(t.echoes.every((n) => n > 0), `echoes back to every flow: ${JSON.stringify(t.echoes)}`);
  const via = (s: Status): number => (s.edge.lane_delivered_via_lane0 ?? 0) - (before.edge.lane_delivered_via_lane0 ?? 0);
  const after = await statusUntil((s) => via(s) > 0 && s.edge.lane_delivered_for_lanes === s.edge.lane_delivered_via_lane0);
  assert.ok(via(after) > 0, `lane 1 set up some of the flows and sent their packets to lane 0 to deliver: ${JSON.stringify(after.edge)}`);
  assert.equal(after.edge.lane_delivered_for_lanes, after.edge.lane_delivered_via_lane0, `lane 0 delivered every one: ${JSON.stringify(after.edge)}`);
  // The capture: every datagram site-c's server got is in it exactly once as sent (not zero: lane 1's deliveries
  // through lane 0 included; not twice: lane 0 does not tap them again), each with its received copy; an echo
  // lane 0 decrypted and handed to lane 1 (the flow's owner) is in it once too (lane 1's decision, not lane 0's
  // handoff as well).
  const stopped = await edgeApi(lab, 'POST', `/v1/captures/${captureId}/stop`);
  assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
  const cap = stopped.body as CaptureStatus;
  assert.deepEqual([cap.rate_skipped, cap.ring_skipped, cap.lane_errors ?? []], [0, 0, []], `nothing skipped: ${JSON.stringify(cap)}`);
  const file = join(lab.runDir, 'site-c.pcapng');
  download(`/v1/captures/${captureId}/pcapng`, file);
  const rows = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.comment', '-e', 'udp.dstport', '-e', 'udp.payload'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: TSHARK_OUTPUT_BYTES })
    .trim().split('\n').filter((l) => l !== '');
  rmSync(file, { force: true });
  const sentCopies = new Map<string, number>();
  const receivedCopies = new Map<string, number>();
  const lanesSeen = new Set<number>();
  const echoCopies = new Map<string, number>();
  for (const row of rows) {
    const [comment, dstPort, hex] = row.split('|');
    const payload = Buffer.from(hex.replaceAll(':', ''), 'hex').toString();
    if (!payload.startsWith('dc:')) continue;
    if (Number(dstPort) !== SERVER_PORT) {
      // An echo: one received and one sent record of one decision, on one lane.
      const key = `${comment.startsWith('sent') ? 'sent' : 'received'} ${payload}`;
      echoCopies.set(key, (echoCopies.get(key) ?? 0) + 1);
      continue;
    }
    const copies = comment.startsWith('sent') ? sentCopies : receivedCopies;
    copies.set(payload, (copies.get(payload) ?? 0) + 1);
    const flow = /flow 4-(\d+)/.exec(comment);
    if (flow !== null) lanesSeen.add(Math.floor(Number(flow[1]) / LANE_FLOW_STRIDE));
  }
  const twice = [...sentCopies, ...receivedCopies, ...echoCopies].filter(([, n]) => n !== 1);
  assert.deepEqual(twice.slice(0, 20), [], `${twice.length} datagrams captured twice`);
  assert.ok(echoCopies.size > 0, 'the echoes are captured');
  const delivered = (await report(siteC, FLOWS * PER_FLOW));
  const missing: string[] = [];
  for (const [tag, flow, ...seqs] of Object.values(delivered)) {
    if (tag !== 'dc') continue;
    for (const seq of seqs) if (sentCopies.get(`dc:${flow}:${seq}`) !== 1 || receivedCopies.get(`dc:${flow}:${seq}`) !== 1) missing.push(`dc:${flow}:${seq}`);
  }
  assert.deepEqual(missing.slice(0, 20), [], `${missing.length} datagrams site-c received are not in the capture once as received and once as sent`);
  assert.ok(lanesSeen.has(1) && lanesSeen.has(0), `the capture names flows of both lanes: ${[...lanesSeen].join(' ')}`);
  ctx.diagnostic(`${got.get('dc')} of ${FLOWS * PER_FLOW} datagrams at site-c; ${via(after)} delivered through lane 0 for lane 1; captured ${sentCopies.size} sent, ${receivedCopies.size} received, ${echoCopies.size} echo records`);
});

test('with lanes running, a WireGuard site added live (device, site, onramp, a data-center route) carries flows set up on both lanes', async (ctx) => {
  const keys = newWgKeys();
  const device = await edgeApi(lab, 'POST', '/v1/wireguard/devices', { name: LIVE_DEVICE, listen_address: LIVE_ENDPOINT, listen_port: LAB.wireguardPort, private_key: keys.privateKey });
  assert.equal(device.status, 201, JSON.stringify(device.body));
  assert.equal((await edgeApi(lab, 'POST', '/v1/sites', { name: 'site-lanes', prefixes: [LAB.siteLan] })).status, 201);
  const site = await startLiveSite(lab, 'ln1', 111, keys.publicKey, LIVE_ENDPOINT);
  liveSites.push(site);
  const onramp = await edgeApi(lab, 'POST', '/v1/onramps', {
    name: 'site-lanes-wg', type: 'wireguard', site: 'site-lanes', automatic_return_routing: true,
    wireguard: { device: LIVE_DEVICE, public_key: site.keys.publicKey, allowed_ips: [LAB.siteLan] },
  });
  assert.equal(onramp.status, 201, JSON.stringify(onramp.body));
  // Ahead of site-c's routes (priority 100 and 200), for the data center's flows only.
  const route = await edgeApi(lab, 'POST', '/v1/routes', { prefix: LAB.siteLan, next_hop: { onramp: 'site-lanes-wg' }, priority: 50, site: 'dc' });
  assert.equal(route.status, 201, JSON.stringify(route.body));
  await site.startKeepalive(1);
  // The tunnel is up (a handshake done, the site answered through it) before the flows start: packets staged
  // while a handshake runs are bounded (MAX_STAGED_PACKETS, as wireguard-go) and not what this test measures.
  let up = false;
  for (let waited = 0; !up && waited < WAIT_MS; waited += 1000) {
    up = (await udpExchange(site.ns, LAB.internet.server, LAB.echoPort, 'up?', { timeoutMs: 1000 })).kind === 'reply';
  }
  assert.ok(up, 'the site added live answers through its tunnel');

  const live = await server(site.ns, LAB.siteHost);
  const before = await status();
  const client = start(lab.names.dc, CLIENT_SCRIPT, ['dc2', LAB.dc.server, '46000', String(FLOWS), LAB.siteHost]);
  await client.waitFor('sent');
  const got = inOrder(await report(live, FLOWS * PER_FLOW), 'the live site\'s server');
  assert.ok((got.get('dc2') ?? 0) > (FLOWS * PER_FLOW) / 2, `${got.get('dc2')} of ${FLOWS * PER_FLOW} datagrams at the site added live`);
  const t = JSON.parse(await client.ask('tally', '{"echoes"')) as Tally;
  assert.deepEqual(t.wrong, [], 'echoes in order, nothing foreign');
  assert.ok(t.echoes.every((n) => n > 0), `echoes back to every flow: ${JSON.stringify(t.echoes)}`);
  const via = (s: Status): number => (s.edge.lane_delivered_via_lane0 ?? 0) - (before.edge.lane_delivered_via_lane0 ?? 0);
  const after = await statusUntil((s) => via(s) > 0);
  assert.ok(via(after) > 0, `lane 1 knew the new onramp and sent its flows' packets through lane 0: ${JSON.stringify(after.edge)}`);
  assert.equal(after.edge.no_delivery ?? 0, 0, `no packet without a transport on any lane: ${JSON.stringify(after.edge)}`);
  ctx.diagnostic(`${got.get('dc2')} of ${FLOWS * PER_FLOW} datagrams at the site added live; ${via(after)} delivered through lane 0 for lane 1`);
});
