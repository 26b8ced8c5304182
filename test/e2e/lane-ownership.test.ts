// Who owns a flow across lanes, end to end (docs/ARCHITECTURE.md "Lanes", "The ownership directory"):
// `tether run --lanes 2` in a namespace; two sites with the same host address behind ARR interconnects (s1, s2), a
// data center (dc) and 32 Internet servers (inet). Checks:
//  - RFC 4787 REQ-1 across lanes: one UDP socket of s1 sending to 32 servers (the kernel hashes the flows onto both
//    lanes) is seen from one external address:port by every server;
//  - a data-center flow whose replies reach the lane that does not own it: s2's flows clash with s1's identical ones
//    at the data center and get a rewritten source port, so their replies hash anywhere; once the kernel has
//    forgotten which queue wrote each flow (TUN_FLOW_EXPIRE, 3 s) every late reply still reaches its site and socket;
//  - hairpin across lanes: s1 and s2 reach each other through the pool address, at the external endpoints they
//    learned from a server on the Internet, whatever lane holds each mapping.
// Namespaces tt-<pid>-lo-*; those of dead runs are removed first (test/support/netns.ts). Needs root; never skips.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeNamespaces, removeStaleNamespaces } from '../support/netns.js';
import { buildInterconnectTopology } from '../support/lanes-topology.js';
import { nsScript, type Child } from '../support/ns-child.js';
import { startLanesDaemon, type LanesStatus, type NsLanesDaemon } from '../support/lanes-daemon.js';
import { laneOfPort } from '../../src/common/lanes.js';

const PREFIX = `tt-${process.pid}-lo-`;
const NS = { edge: `${PREFIX}edge`, s1: `${PREFIX}s1`, s2: `${PREFIX}s2`, dc: `${PREFIX}dc`, inet: `${PREFIX}inet` };
/** Both sites' host (they overlap: ARR keeps them apart). */
const HOST = '10.1.0.10';
const DC_HOST = '172.16.0.20';
const POOL = '198.51.100.1';
const SERVER_PORT = 9000;
/** Enough destinations that the kernel's flow hash puts some on each of two lanes (2^-31 that it does not). */
const SERVERS = Array.from({ length: 32 }, (_, k) => `203.0.113.${100 + k}`);
const REQ1_PORT = 5000;
const DC_FLOWS = 16;
const DC_BASE_PORT = 41000;
/** Hairpin: s1's socket, and s2's candidate sockets (one whose mapping another lane holds than s1's). */
const HAIRPIN_PORT = 6000;
const HAIRPIN_CANDIDATES = 16;
const HAIRPIN_BASE = 7000;
/** drivers/net/tun.c forgets a flow's queue after TUN_FLOW_EXPIRE (3 s) without a write; twice that and a cleanup pass. */
const KERNEL_FORGETS_MS = 8_000;
/** Clients resend what got no answer this often (UDP may lose a datagram on a loaded machine). */
const RESEND_MS = 300;
/** A generous behavioural bound for a client's whole exchange, not a timed assertion. */
const CLIENT_TIMEOUT_MS = 60_000;
/** egress.port_range's default, cut in two slices (common/lanes.ts laneOfPort). */
const PORT_MIN = 1024;
const PORT_MAX = 65535;

function removeOwn(): void {
  removeNamespaces(Object.values(NS));
}

function buildTopology(): void {
  buildInterconnectTopology(NS.edge, NS.inet, [{ ns: NS.s1, host: HOST, link: 'veth-s1' }, { ns: NS.s2, host: HOST, link: 'veth-s2' }, { ns: NS.dc, host: DC_HOST, link: 'veth-dc' }], SERVERS);
}

function config(dir: string): string {
  return `version: 1
log: { level: info }
store: { path: ${dir}/tether.db }
sites:
  - name: s1
  - name: s2
  - name: dc
onramps:
  - { name: s1-link, id: 1, type: interconnect, site: s1, automatic_return_routing: true, interconnect: { link: veth-s1 } }
  - { name: s2-link, id: 2, type: interconnect, site: s2, automatic_return_routing: true, interconnect: { link: veth-s2 } }
  - { name: dc-link, id: 3, type: interconnect, site: dc, automatic_return_routing: false, interconnect: { link: veth-dc } }
routes:
  - { prefix: 0.0.0.0/0, next_hop: internet }
  - { prefix: 172.16.0.0/24, next_hop: { onramp: dc-link } }
egress:
  interface: tt-egress
  addresses: [${POOL}]
`;
}

/**
 * A server on every address it is given (the Internet's 32, or the data center's one): answers each datagram with
 * the source it saw ("seen:<address>:<port>") as a STUN server would. On stdin "late": sends "late" to every source
 * it saw; "report": prints { source: [destinations it wrote to] } as JSON.
 */
const SERVER_SCRIPT = `
import dgram from 'node:dgram';
const addrs = process.argv.slice(1);
const seen = new Map();
const socks = addrs.map((a) => {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => {
    const key = r.address + ':' + r.port;
    if (!seen.has(key)) seen.set(key, { sock: s, to: new Set() });
    seen.get(key).to.add(a);
    s.send('seen:' + key, r.port, r.address);
  });
  return new Promise((resolve) => s.bind(${SERVER_PORT}, a, resolve));
});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  for (const cmd of d.split('\\n')) {
    if (cmd === 'late') for (const [key, { sock }] of seen) { const [a, p] = key.split(':'); sock.send('late', Number(p), a); }
    if (cmd === 'report') console.log(JSON.stringify(Object.fromEntries([...seen].map(([k, v]) => [k, [...v.to]]))));
  }
});
Promise.all(socks).then(() => console.log('ready'));`;

/**
 * A site's client. Commands on stdin, one JSON line each, answers on stdout as one JSON line:
 *   {"ask":[[localPort, address, port], ...]}  each local socket sends "hello" to its destination until answered
 *                                              (resent every RESEND_MS): prints {"answers":[text, ...]} in order
 *   {"late":[localPort, ...]}                  waits until each of those sockets got "late": prints {"late":[n, ...]}
 * Every socket also answers "hello" from anyone with "hi:<its port>" (the hairpin's far end), and counts what else came.
 */
const CLIENT_SCRIPT = `
import dgram from 'node:dgram';
const socks = new Map();
const answers = new Map();
const lates = new Map();
const waiters = [];
const check = () => { for (let k = waiters.length - 1; k >= 0; k--) if (waiters[k]()) waiters.splice(k, 1); };
function sock(port) {
  if (socks.has(port)) return Promise.resolve(socks.get(port));
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.on('message', (m, r) => {
      const text = m.toString();
      if (text === 'hello') s.send('hi:' + port, r.port, r.address);
      else if (text === 'late') lates.set(port, (lates.get(port) ?? 0) + 1);
      else answers.set(port + '>' + r.address + ':' + r.port, text);
      check();
    });
    s.bind(port, '${HOST}', () => { socks.set(port, s); resolve(s); });
  });
}
process.stdin.setEncoding('utf8');
let buffered = '';
process.stdin.on('data', async (d) => {
  buffered += d;
  let nl;
  while ((nl = buffered.indexOf('\\n')) >= 0) {
    const cmd = JSON.parse(buffered.slice(0, nl));
    buffered = buffered.slice(nl + 1);
    if (cmd.ask) {
      const asks = await Promise.all(cmd.ask.map(async ([port, addr, to]) => ({ s: await sock(port), key: port + '>' + addr + ':' + to, addr, to })));
      for (const a of asks) answers.delete(a.key);
      const send = () => { for (const a of asks) if (!answers.has(a.key)) a.s.send('hello', a.to, a.addr); };
      send();
      const timer = setInterval(send, ${RESEND_MS});
      waiters.push(() => {
        if (!asks.every((a) => answers.has(a.key))) return false;
        clearInterval(timer);
        console.log(JSON.stringify({ answers: asks.map((a) => answers.get(a.key)) }));
        return true;
      });
      check();
    }
    if (cmd.late) {
      waiters.push(() => {
        if (!cmd.late.every((p) => (lates.get(p) ?? 0) > 0)) return false;
        console.log(JSON.stringify({ late: cmd.late.map((p) => lates.get(p)) }));
        return true;
      });
      check();
    }
  }
});
console.log('ready');`;

type Status = LanesStatus;

describe('flows across lanes: ownership directory (tether run --lanes 2, real interfaces, root)', () => {
  let dir = '';
  let edge: NsLanesDaemon | null = null;
  let inet: Child | null = null;
  let dc: Child | null = null;
  let s1: Child | null = null;
  let s2: Child | null = null;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lane ownership test needs root (CAP_NET_ADMIN): run it as root; it is never skipped');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing');
    removeStaleNamespaces();
    removeOwn();
    buildTopology();
    dir = mkdtempSync(join(tmpdir(), PREFIX));
    writeFileSync(join(dir, 'edge.yaml'), config(dir));
    edge = await startLanesDaemon(NS.edge, join(dir, 'edge.yaml'));
    const clients = { stdin: true, waitMs: CLIENT_TIMEOUT_MS };
    inet = nsScript(NS.inet, SERVER_SCRIPT, SERVERS, clients);
    dc = nsScript(NS.dc, SERVER_SCRIPT, [DC_HOST], clients);
    s1 = nsScript(NS.s1, CLIENT_SCRIPT, [], clients);
    s2 = nsScript(NS.s2, CLIENT_SCRIPT, [], clients);
    await Promise.all([inet, dc, s1, s2].map((c) => c.waitFor('ready')));
  });

  after(() => {
    edge?.stop();
    for (const c of [inet, dc, s1, s2]) c?.child.kill('SIGKILL');
    removeOwn();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Sends a command to a client and returns its next answer line (JSON) that starts with `{"<kind>"`. */
  async function ask<T>(client: Child, kind: string, cmd: object): Promise<T> {
    try {
      return JSON.parse(await client.ask(JSON.stringify(cmd), `{"${kind}"`)) as T;
    } catch (e) {
      return assert.fail(`no ${kind} answer to ${JSON.stringify(cmd)} (${(e as Error).message.slice(0, 200)}): ${JSON.stringify(await edge!.status())}`);
    }
  }

  const laneOf = (endpoint: string): number => laneOfPort(PORT_MIN, PORT_MAX, 2, Number(endpoint.split(':').pop()));

  it('RFC 4787 REQ-1 across lanes: one internal endpoint is one external endpoint at all 32 servers', async () => {
    // The first datagram makes the mapping (on the lane the kernel hands it to); the other 31 flows' first datagrams
    // reach either lane, and each leaves with that mapping.
    const [first] = (await ask<{ answers: string[] }>(s1!, 'answers', { ask: [[REQ1_PORT, SERVERS[0], SERVER_PORT]] })).answers;
    assert.match(first, new RegExp(`^seen:${POOL.replace(/\./g, '\\.')}:\\d+$`));
    const { answers } = await ask<{ answers: string[] }>(s1!, 'answers', { ask: SERVERS.slice(1).map((a) => [REQ1_PORT, a, SERVER_PORT]) });
    assert.deepEqual(answers, new Array<string>(SERVERS.length - 1).fill(first), 'every server saw the same external endpoint');
    // Lane 1's counters reach lane 0's status once a second (LANE_STATUS_INTERVAL_MS): poll until they are in (its
    // queue's packets and its edge counters may arrive in different posts).
    const readers = (st: Status) => st.tuns.filter((t) => t.name.startsWith('tt-ic-1') && t.packetsIn > 0).map((t) => t.name);
    const status = await edge!.statusUntil((st) => readers(st).includes('tt-ic-1#1') && (st.edge.lane_handed_off ?? 0) > 0);
    assert.ok(readers(status).includes('tt-ic-1') && readers(status).includes('tt-ic-1#1'), `both lanes read s1's first datagrams: ${JSON.stringify(status.tuns)}`);
    assert.ok((status.edge.lane_handed_off ?? 0) > 0, `the other lane's first datagrams handed to the mapping's lane: ${JSON.stringify(status.edge)}`);
  });

  it('a data center\'s late replies that reach the lane not owning their flow still reach their site and socket', async () => {
    const ports = Array.from({ length: DC_FLOWS }, (_, k) => DC_BASE_PORT + k);
    const flows = ports.map((p) => [p, DC_HOST, SERVER_PORT]);
    const one = await ask<{ answers: string[] }>(s1!, 'answers', { ask: flows });
    assert.deepEqual(one.answers, ports.map((p) => `seen:${HOST}:${p}`), 's1 reaches the data center untranslated');
    // s2's flows have s1's tuples: rewritten at the data center (docs/FLOW-MODEL.md), so their replies hash anywhere.
    const two = await ask<{ answers: string[] }>(s2!, 'answers', { ask: flows });
    for (const [k, a] of two.answers.entries()) assert.match(a, new RegExp(`^seen:${HOST.replace(/\./g, '\\.')}:(?!${ports[k]}$)\\d+$`), `s2 flow ${k}: a rewritten source port`);
    const handedBefore = (await edge!.status()).edge.lane_handed_off ?? 0;
    await new Promise((r) => setTimeout(r, KERNEL_FORGETS_MS));
    dc!.child.stdin!.write('late\n');
    const [late1, late2] = await Promise.all([s1!, s2!].map((c) => ask<{ late: number[] }>(c, 'late', { late: ports })));
    assert.deepEqual(late1.late, new Array<number>(DC_FLOWS).fill(1), 's1: every late reply, once');
    assert.deepEqual(late2.late, new Array<number>(DC_FLOWS).fill(1), 's2: every late reply, once, to the socket whose port was rewritten');
    // The other lane's counters reach lane 0's status once a second (LANE_STATUS_INTERVAL_MS).
    const last = await edge!.statusUntil((st) => (st.edge.lane_handed_off ?? 0) > handedBefore);
    assert.ok((last.edge.lane_handed_off ?? 0) > handedBefore, `late replies handed to their flow's lane: ${JSON.stringify(last.edge)}`);
  });

  it('hairpin across lanes: two sites reach each other at the external endpoints a server told them', async () => {
    const [a] = (await ask<{ answers: string[] }>(s1!, 'answers', { ask: [[HAIRPIN_PORT, SERVERS[1], SERVER_PORT]] })).answers;
    const aEndpoint = a.slice('seen:'.length);
    // s2's candidates get mappings on both lanes: take one the other lane holds.
    const candidates = Array.from({ length: HAIRPIN_CANDIDATES }, (_, k) => HAIRPIN_BASE + k);
    const seen = (await ask<{ answers: string[] }>(s2!, 'answers', { ask: candidates.map((p) => [p, SERVERS[1], SERVER_PORT]) })).answers.map((s) => s.slice('seen:'.length));
    const k = seen.findIndex((e) => laneOf(e) !== laneOf(aEndpoint));
    assert.ok(k >= 0, `a mapping of s2 on the lane s1's is not on: ${aEndpoint} vs ${JSON.stringify(seen)}`);
    const [bAddr, bPort] = seen[k].split(':');
    const [aAddr, aPort] = aEndpoint.split(':');
    // Both send at once, each to the other's external endpoint, until answered (REQ-8: each mapping opens once its
    // own side has sent to the other's).
    const [toB, toA] = await Promise.all([
      ask<{ answers: string[] }>(s1!, 'answers', { ask: [[HAIRPIN_PORT, bAddr, Number(bPort)]] }),
      ask<{ answers: string[] }>(s2!, 'answers', { ask: [[candidates[k], aAddr, Number(aPort)]] }),
    ]);
    assert.deepEqual(toB.answers, [`hi:${candidates[k]}`], 's1 reached s2\'s socket');
    assert.deepEqual(toA.answers, [`hi:${HAIRPIN_PORT}`], 's2 reached s1\'s socket');
  });
});
