// Lanes end to end (docs/ARCHITECTURE.md "Lanes"): `tether run --lanes 2` in a namespace, two data centers with
// the same host address (172.16.0.20, overlapping sites behind ARR interconnects) sending many UDP flows from the
// same source ports to a server on the Internet through the edge's NAT. Checks, with two lanes: every flow's
// datagrams arrive in order, both lanes carried flows, NAT gives the two sites' identical endpoints different
// external ports, every echo returns to the site and socket that sent it; and, after the kernel's multi-queue TUN
// has forgotten which queue each flow was written on (drivers/net/tun.c TUN_FLOW_EXPIRE, 3 s), replies the kernel
// hands to the wrong lane are handed to the flow's owner and still arrive.
// Namespaces tt-<pid>-ln-*; those of dead runs are removed first (test/support/netns.ts). Needs root; never skips.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addNamespaces, nsSh, removeNamespaces, removeStaleNamespaces, sh } from '../support/netns.js';
import { childStatus, nsSpawn, type Child } from '../support/ns-child.js';

const PREFIX = `tt-${process.pid}-ln-`;
const NS = { edge: `${PREFIX}edge`, dc1: `${PREFIX}dc1`, dc2: `${PREFIX}dc2`, inet: `${PREFIX}inet` };
const HOST = '172.16.0.20';
const SERVER = '203.0.113.10';
const SINK_PORT = 9000;
const POOL = '198.51.100.1';
const FLOWS = 48;
const PER_FLOW = 150;
const BASE_PORT = 40000;
/**
 * Pause between rounds of one datagram per flow: keeps the offered load (2 sites x FLOWS / PACE_MS) under what the
 * Node echo server reads on a shared core. UDP may still lose a datagram under load; order may never be broken.
 */
const PACE_MS = 5;
/** Generous behavioural bound on a loaded 2-core machine, not a timed assertion. */
const CLIENT_TIMEOUT_MS = 60_000;
/** drivers/net/tun.c forgets a flow's queue after TUN_FLOW_EXPIRE (3 s) without a write; twice that and a cleanup pass. */
const KERNEL_FORGETS_MS = 8_000;

function removeOwn(): void {
  removeNamespaces(Object.values(NS));
}

function buildTopology(): void {
  addNamespaces(Object.values(NS));
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-dc1', 'type', 'veth', 'peer', 'name', 'dc0', 'netns', NS.dc1);
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-dc2', 'type', 'veth', 'peer', 'name', 'dc0', 'netns', NS.dc2);
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-inet', 'type', 'veth', 'peer', 'name', 'inet0', 'netns', NS.inet);
  nsSh(NS.edge, `
    echo 1 > /proc/sys/net/ipv4/ip_forward
    for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
    ip addr add 172.31.1.1/30 dev veth-dc1; ip link set veth-dc1 up
    ip addr add 172.31.2.1/30 dev veth-dc2; ip link set veth-dc2 up
    ip addr add 192.168.200.1/24 dev veth-inet; ip link set veth-inet up
    ip route add default via 192.168.200.2
    # The two data centers overlap (both 172.16.0.20): what tether writes into an onramp's TUN leaves by its link.
    ip rule add iif tt-ic-1 lookup 2001 priority 900; ip route add default via 172.31.1.2 dev veth-dc1 table 2001
    ip rule add iif tt-ic-2 lookup 2002 priority 901; ip route add default via 172.31.2.2 dev veth-dc2 table 2002`);
  for (const [ns, net] of [[NS.dc1, 1], [NS.dc2, 2]] as const) {
    nsSh(ns, `
      ip addr add 172.31.${net}.2/30 dev dc0; ip link set dc0 up
      ip addr add ${HOST}/32 dev lo
      ip route add default via 172.31.${net}.1`);
  }
  nsSh(NS.inet, `
    ip addr add 192.168.200.2/24 dev inet0; ip link set inet0 up
    ip addr add ${SERVER}/32 dev lo
    ip route add 198.51.100.0/24 via 192.168.200.1`);
}

function config(dir: string): string {
  return `version: 1
log: { level: info }
store: { path: ${dir}/tether.db }
sites:
  - name: dc1
  - name: dc2
onramps:
  - { name: dc1-link, id: 1, type: interconnect, site: dc1, automatic_return_routing: true, interconnect: { link: veth-dc1 } }
  - { name: dc2-link, id: 2, type: interconnect, site: dc2, automatic_return_routing: true, interconnect: { link: veth-dc2 } }
routes:
  - { prefix: 0.0.0.0/0, next_hop: internet }
egress:
  interface: tt-egress
  addresses: [${POOL}]
`;
}

/**
 * The server: records each datagram "site:flow:seq" per source (the NATed endpoint) and echoes it. On stdin
 * "late": sends one "late:site:flow" to every source it saw (from the port they wrote to: a reply); "report":
 * prints { source: [site, flow, seqs...] } as JSON.
 */
const SERVER_SCRIPT = `
import dgram from 'node:dgram';
const seen = new Map();
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  const [site, flow, seq] = m.toString().split(':');
  const key = r.address + ':' + r.port;
  if (!seen.has(key)) seen.set(key, [site, Number(flow)]);
  seen.get(key).push(Number(seq));
  s.send(m, r.port, r.address);
});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  for (const cmd of d.split('\\n')) {
    if (cmd === 'late') for (const [key, [site, flow]] of seen) { const [a, p] = key.split(':'); s.send('late:' + site + ':' + flow, Number(p), a); }
    if (cmd === 'report') console.log(JSON.stringify(Object.fromEntries(seen)));
  }
});
s.bind(${SINK_PORT}, '${SERVER}', () => console.log('ready'));`;

/**
 * A data center host: FLOWS sockets on ports BASE_PORT.., each sends PER_FLOW datagrams "site:flow:seq", the flows
 * interleaved, a few per event-loop turn (no timing: the pace only keeps queues short). Counts its echoes per flow
 * (checking they carry its own site and flow, in order) and the late replies; prints the tally when every echo
 * and late reply is in, or at the timeout.
 */
const CLIENT_SCRIPT = `
import dgram from 'node:dgram';
const [site] = process.argv.slice(1);
const PACE_MS = ${PACE_MS};
const echoes = new Array(${FLOWS}).fill(0), last = new Array(${FLOWS}).fill(-1), late = new Array(${FLOWS}).fill(0), wrong = [];
let bound = 0, done = false;
const socks = [];
const finish = () => { if (done) return; done = true; console.log(JSON.stringify({ echoes, late, wrong })); process.exit(0); };
for (let f = 0; f < ${FLOWS}; f++) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m) => {
    const parts = m.toString().split(':');
    if (parts[0] === 'late') { if (parts[1] === site && Number(parts[2]) === f) late[f]++; else wrong.push(m.toString()); }
    else if (parts[0] === site && Number(parts[1]) === f && Number(parts[2]) > last[f]) { echoes[f]++; last[f] = Number(parts[2]); }
    else wrong.push(m.toString() + ' at flow ' + f + ' after ' + last[f]);
    if (late.every((n) => n > 0)) finish();
  });
  s.bind(${BASE_PORT} + f, '${HOST}', () => { if (++bound === ${FLOWS}) { console.log('bound'); send(0); } });
  socks.push(s);
}
function send(seq) {
  if (seq === ${PER_FLOW}) { console.log('sent'); return; }
  let n = 0;
  for (let f = 0; f < ${FLOWS}; f++) socks[f].send(site + ':' + f + ':' + seq, ${SINK_PORT}, '${SERVER}', () => { if (++n === ${FLOWS}) setTimeout(() => send(seq + 1), PACE_MS); });
}
setTimeout(finish, ${CLIENT_TIMEOUT_MS});`;

interface Tally {
  echoes: number[];
  late: number[];
  wrong: string[];
}

describe('tether run --lanes 2 (real interfaces, root)', () => {
  let dir = '';
  let edge: Child | null = null;
  let server: Child | null = null;
  const clients: Child[] = [];

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lanes test needs root (CAP_NET_ADMIN): run it as root; it is never skipped');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing');
    removeStaleNamespaces();
    removeOwn();
    buildTopology();
    dir = mkdtempSync(join(tmpdir(), PREFIX));
    writeFileSync(join(dir, 'edge.yaml'), config(dir));
    edge = nsSpawn(NS.edge, ['--import', 'tsx', 'src/cli/tether.ts', 'run', '--no-api', '--lanes', process.env.LN_LANES ?? '2', '--config', join(dir, 'edge.yaml')]);
    await edge.waitFor('"lanes running"');
    server = nsSpawn(NS.inet, ['--input-type=module', '-e', SERVER_SCRIPT], true);
    await server.waitFor('ready');
  });

  after(() => {
    edge?.child.kill('SIGKILL');
    server?.child.kill('SIGKILL');
    for (const c of clients) c.child.kill('SIGKILL');
    removeOwn();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The edge's merged status (SIGUSR1 logs it). */
  const status = () => childStatus<{ tuns: Array<{ name: string; packetsIn: number }>; edge: Record<string, number>; flows: { ipv4: number } }>(edge!);

  it('two overlapping sites, many flows: in order per flow, both lanes used, distinct NAT ports, echoes back to their site; late replies handed to their lane', async () => {
    for (const [ns, site] of [[NS.dc1, 'dc1'], [NS.dc2, 'dc2']] as const) clients.push(nsSpawn(ns, ['--input-type=module', '-e', CLIENT_SCRIPT, '--', site]));
    await Promise.all(clients.map((c) => c.waitFor('sent')));
    // Every datagram in, in order, per flow at the server (NAT endpoints: one per site and flow).
    let report: Record<string, [string, number, ...number[]]> = {};
    let previous = -1;
    for (let tries = 0; tries < 100; tries++) {
      server!.child.stdin!.write('report\n');
      const line = await server!.waitFor('{');
      server!.lines.splice(server!.lines.indexOf(line), 1);
      report = JSON.parse(line) as typeof report;
      // Until all arrived, or nothing more arrives (what is still queued is read within the pause).
      const total = Object.values(report).reduce((n, r) => n + r.length - 2, 0);
      if (total >= 2 * FLOWS * PER_FLOW || total === previous) break;
      previous = total;
      await new Promise((r) => setTimeout(r, 200));
    }
    const endpoints = Object.keys(report);
    assert.equal(endpoints.length, 2 * FLOWS, 'one NAT endpoint per site and flow (the two sites use the same address and ports)');
    let arrived = 0;
    for (const [endpoint, [site, flow, ...seqs]] of Object.entries(report)) {
      assert.equal(endpoint.split(':')[0], POOL);
      for (let k = 1; k < seqs.length; k++) assert.ok(seqs[k] > seqs[k - 1], `${site} flow ${flow} (${endpoint}): ${seqs[k]} after ${seqs[k - 1]}: out of order`);
      arrived += seqs.length;
    }
    const first = await status();
    // Losses are UDP's right under load (the diagnostic says where); more than half lost is a broken path.
    assert.ok(arrived > FLOWS * PER_FLOW, `${arrived} of ${2 * FLOWS * PER_FLOW} datagrams arrived: ${JSON.stringify(first)}`);
    const queues = first.tuns.filter((t) => t.name.startsWith('tt-ic-') && t.packetsIn > 0).map((t) => t.name);
    assert.ok(queues.some((n) => !n.includes('#')) && queues.some((n) => n.endsWith('#1')), `both lanes read site packets: ${JSON.stringify(first.tuns)}`);
    assert.equal(first.flows.ipv4, 2 * FLOWS, 'the flows of both lanes, summed');

    // The kernel forgets each flow's queue; replies are then hashed to either queue and half reach the wrong lane.
    await new Promise((r) => setTimeout(r, KERNEL_FORGETS_MS));
    server!.child.stdin!.write('late\n');
    const tallies = await Promise.all(clients.map(async (c) => JSON.parse(await c.waitFor('{"echoes"')) as Tally));
    for (const [k, t] of tallies.entries()) {
      assert.deepEqual(t.wrong, [], `site ${k + 1}: nothing of another site or flow`);
      assert.ok(t.echoes.every((n) => n > 0), `site ${k + 1}: echoes back to every flow, in order: ${JSON.stringify(t.echoes)}`);
      assert.deepEqual(t.late, new Array<number>(FLOWS).fill(1), `site ${k + 1}: every late reply back`);
    }
    // The other lane's counters reach lane 0's status once a second (LANE_STATUS_INTERVAL_MS): poll until they agree.
    let last = await status();
    for (let tries = 0; tries < 20 && last.edge.lane_received !== last.edge.lane_handed_off; tries++) {
      await new Promise((r) => setTimeout(r, 500));
      last = await status();
    }
    assert.ok((last.edge.lane_handed_off ?? 0) > 0, `replies handed to their lane: ${JSON.stringify(last.edge)}`);
    assert.equal(last.edge.lane_received ?? 0, last.edge.lane_handed_off, `every handed-off packet received by its lane: ${JSON.stringify(last.edge)}`);
  });
});
