/**
 * The lanes topology (test/e2e/lanes.test.ts, lanes-observe.test.ts; docs/ARCHITECTURE.md "Lanes"): an edge with two
 * data centers behind ARR interconnects that overlap (both hosts are 172.16.0.20) and a server on the Internet,
 * the UDP echo server and the data-center clients as node scripts (run with ns-child.ts nsScript; the daemon with
 * lanes-daemon.ts startLanesDaemon). Each test file names its namespaces with its own prefix (tt-<pid>-<role>-: removed by
 * removeStaleNamespaces once the run is gone).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLanesDaemon, type NsLanesDaemon } from './lanes-daemon.js';
import { addNamespaces, nsSh, removeNamespaces, removeStaleNamespaces, sh } from './netns.js';
import { nsScript, type Child } from './ns-child.js';

export const LANES_HOST = '172.16.0.20';
export const LANES_SERVER = '203.0.113.10';
export const LANES_SINK_PORT = 9000;
export const LANES_POOL = '198.51.100.1';
export const LANES_BASE_PORT = 40000;

export interface LanesNamespaces {
  edge: string;
  dc1: string;
  dc2: string;
  inet: string;
}

/** The namespaces of a test file's prefix ("tt-<pid>-ln-"). */
export function lanesNamespaces(prefix: string): LanesNamespaces {
  return { edge: `${prefix}edge`, dc1: `${prefix}dc1`, dc2: `${prefix}dc2`, inet: `${prefix}inet` };
}

/** Removes the namespaces (those an earlier run of the same process id left, or this run's). */
export function removeLanesTopology(NS: LanesNamespaces): void {
  removeNamespaces(Object.values(NS));
}

/** An interconnect site of buildInterconnectTopology: its namespace, its host's address, the edge's end of its link. */
export interface InterconnectSite {
  ns: string;
  host: string;
  link: string;
}

/**
 * An edge with interconnect sites and the Internet (lanes tests: this file's topology, lane-ownership's): site k
 * (1-based, in order) is 172.31.k.2/30 at the far end (up0) of the edge's `link`, its host address on lo; what tether
 * writes into onramp k's TUN (tt-ic-k: the configuration gives the sites' onramps ids 1..n in this order) leaves by
 * that site's link, so sites may overlap. The Internet namespace holds `servers` and routes the pool back.
 */
export function buildInterconnectTopology(edge: string, inet: string, sites: readonly InterconnectSite[], servers: readonly string[]): void {
  addNamespaces([edge, ...sites.map((s) => s.ns), inet]);
  for (const s of sites) sh('ip', '-n', edge, 'link', 'add', s.link, 'type', 'veth', 'peer', 'name', 'up0', 'netns', s.ns);
  sh('ip', '-n', edge, 'link', 'add', 'veth-inet', 'type', 'veth', 'peer', 'name', 'inet0', 'netns', inet);
  nsSh(edge, `
    echo 1 > /proc/sys/net/ipv4/ip_forward
    for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
    ${sites.map((s, k) => `ip addr add 172.31.${k + 1}.1/30 dev ${s.link}; ip link set ${s.link} up`).join('\n    ')}
    ip addr add 192.168.200.1/24 dev veth-inet; ip link set veth-inet up
    ip route add default via 192.168.200.2
    ${sites.map((s, k) => `ip rule add iif tt-ic-${k + 1} lookup ${2001 + k} priority ${900 + k}; ip route add default via 172.31.${k + 1}.2 dev ${s.link} table ${2001 + k}`).join('\n    ')}`);
  sites.forEach((s, k) => nsSh(s.ns, `
    ip addr add 172.31.${k + 1}.2/30 dev up0; ip link set up0 up
    ip addr add ${s.host}/32 dev lo
    ip route add default via 172.31.${k + 1}.1`));
  nsSh(inet, `
    ip addr add 192.168.200.2/24 dev inet0; ip link set inet0 up
    ${servers.map((a) => `ip addr add ${a}/32 dev lo`).join('; ')}
    ip route add 198.51.100.0/24 via 192.168.200.1`);
}

/** More of the Internet: `servers`, addresses the inet namespace also answers on (more address pairs for the kernel's hash). */
export interface LanesTopologyOptions {
  servers?: readonly string[];
}

/** The two data centers (both LANES_HOST) behind dc1-link and dc2-link, the server (and `opts.servers`) on the Internet. */
export function buildLanesTopology(NS: LanesNamespaces, opts: LanesTopologyOptions = {}): void {
  buildInterconnectTopology(NS.edge, NS.inet, [{ ns: NS.dc1, host: LANES_HOST, link: 'veth-dc1' }, { ns: NS.dc2, host: LANES_HOST, link: 'veth-dc2' }], [LANES_SERVER, ...(opts.servers ?? [])]);
}

/**
 * The edge's configuration: the two interconnects, the Internet route, the egress pool; `extra` is appended (api), `log`
 * the log section; `more` adds sites, onramps and routes (YAML list items, one a string).
 */
export function lanesConfig(dir: string, extra = '', log = '{ level: info }', more: { sites?: string[]; onramps?: string[]; routes?: string[] } = {}): string {
  const items = (list: string[] | undefined): string => (list ?? []).map((item) => `\n  - ${item}`).join('');
  return `version: 1
log: ${log}
store: { path: ${dir}/tether.db }
sites:
  - name: dc1
  - name: dc2${items(more.sites)}
onramps:
  - { name: dc1-link, id: 1, type: interconnect, site: dc1, automatic_return_routing: true, interconnect: { link: veth-dc1 } }
  - { name: dc2-link, id: 2, type: interconnect, site: dc2, automatic_return_routing: true, interconnect: { link: veth-dc2 } }${items(more.onramps)}
routes:
  - { prefix: 0.0.0.0/0, next_hop: internet }${items(more.routes)}
egress:
  interface: tt-egress
  addresses: [${LANES_POOL}]
${extra}`;
}

/**
 * The server, on the address and port it is given: records each datagram "tag:flow:seq" per source (the NATed
 * endpoint; the tag is a site's) and echoes it. On stdin "late": sends one "late:tag:flow" to every source it saw
 * (from the port they wrote to: a reply); "report": prints { source: [tag, flow, seqs...] } as one JSON line.
 */
export const LANES_SERVER_SCRIPT = `
import dgram from 'node:dgram';
const [address, port] = process.argv.slice(1);
const seen = new Map();
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  const [tag, flow, seq] = m.toString().split(':');
  const key = r.address + ':' + r.port;
  if (!seen.has(key)) seen.set(key, [tag, Number(flow)]);
  seen.get(key).push(Number(seq));
  s.send(m, r.port, r.address);
});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  for (const cmd of d.split('\\n')) {
    if (cmd === 'late') for (const [key, [tag, flow]] of seen) { const [a, p] = key.split(':'); s.send('late:' + tag + ':' + flow, Number(p), a); }
    if (cmd === 'report') console.log(JSON.stringify(Object.fromEntries(seen)));
  }
});
s.bind(Number(port), address, () => console.log('ready'));`;

/**
 * A site's host sending flows (lanes tests, tunnel-lanes), argv: tag, bind address, base port, flows, targets (a
 * comma-separated list). One socket per flow (ports base..), flow f to the f-th target (round robin) on `port`, each
 * sends `perFlow` datagrams "tag:flow:seq", the flows interleaved, one round per `paceMs` (no timing: the pace only
 * keeps queues short). Counts its echoes per flow (its own tag and flow, in order) and the late replies. Prints the
 * tally { echoes, late, wrong } on stdin "tally"; and, then exiting, once every flow had its late reply or after
 * `timeoutMs` (when given).
 */
export function flowClientScript(o: { perFlow: number; paceMs: number; port: number; timeoutMs?: number }): string {
  return `
import dgram from 'node:dgram';
const [tag, bind, base, flows, targets] = process.argv.slice(1);
const FLOWS = Number(flows), to = targets.split(',');
const echoes = new Array(FLOWS).fill(0), last = new Array(FLOWS).fill(-1), late = new Array(FLOWS).fill(0), wrong = [];
let bound = 0, done = false;
const socks = [];
const tally = () => console.log(JSON.stringify({ echoes, late, wrong }));
const finish = () => { if (done) return; done = true; tally(); process.exit(0); };
for (let f = 0; f < FLOWS; f++) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m) => {
    const parts = m.toString().split(':');
    if (parts[0] === 'late') { if (parts[1] === tag && Number(parts[2]) === f) late[f]++; else wrong.push(m.toString()); }
    else if (parts[0] === tag && Number(parts[1]) === f && Number(parts[2]) > last[f]) { echoes[f]++; last[f] = Number(parts[2]); }
    else wrong.push(m.toString() + ' at flow ' + f + ' after ' + last[f]);
    if (late.every((n) => n > 0)) finish();
  });
  s.bind(Number(base) + f, bind, () => { if (++bound === FLOWS) { console.log('bound'); send(0); } });
  socks.push(s);
}
function send(seq) {
  if (seq === ${o.perFlow}) { console.log('sent'); return; }
  let n = 0;
  for (let f = 0; f < FLOWS; f++) socks[f].send(tag + ':' + f + ':' + seq, ${o.port}, to[f % to.length], () => { if (++n === FLOWS) setTimeout(() => send(seq + 1), ${o.paceMs}); });
}
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { if (d.includes('tally')) tally(); });
${o.timeoutMs !== undefined ? `setTimeout(finish, ${o.timeoutMs});` : ''}`;
}

/** A data center's host of the lanes topology (flowClientScript toward the server; startLanesRig passes its argv). */
export function lanesClientScript(o: { perFlow: number; paceMs: number; timeoutMs: number }): string {
  return flowClientScript({ ...o, port: LANES_SINK_PORT });
}

/** A lanes test's whole setup: the topology, the edge running with lanes, the server ready (startLanesRig). */
export interface LanesRig {
  NS: LanesNamespaces;
  /** A temporary directory: the configuration, the store, the API token (`token`), the flow log (`flows.log`). */
  dir: string;
  edge: NsLanesDaemon;
  server: Child;
  /** Each data center's host running `script` (lanesClientScript) with `flows` flows as site dc1 or dc2, once both printed "sent". */
  sendFromBothSites(script: string, flows: number): Promise<Child[]>;
  /** Stops every child, removes the namespaces and the directory (after(); also when the setup fails). */
  close(): void;
}

/**
 * Builds the lanes topology afresh for `prefix` (first removing what a dead run or this one left), writes the edge's
 * configuration (`api`: with its API and token file; `flowLog`: the flow log in dir/flows.log), starts the edge with
 * lanes (lanes-daemon.ts) and the server.
 */
export async function startLanesRig(prefix: string, o: { lanes?: number; api?: boolean; flowLog?: boolean } = {}): Promise<LanesRig> {
  const NS = lanesNamespaces(prefix);
  removeStaleNamespaces();
  removeLanesTopology(NS);
  const children: Child[] = [];
  let edge: NsLanesDaemon | null = null;
  let dir = '';
  const close = (): void => {
    edge?.stop();
    for (const c of children) c.child.kill('SIGKILL');
    removeLanesTopology(NS);
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  };
  try {
    buildLanesTopology(NS);
    dir = mkdtempSync(join(tmpdir(), prefix));
    writeFileSync(join(dir, 'edge.yaml'), lanesConfig(dir, o.api === true ? `api: { token_file: ${dir}/token }\n` : '', o.flowLog === true ? `{ level: info, flow_log: ${dir}/flows.log }` : undefined));
    edge = await startLanesDaemon(NS.edge, join(dir, 'edge.yaml'), { lanes: o.lanes, api: o.api });
    const server = nsScript(NS.inet, LANES_SERVER_SCRIPT, [LANES_SERVER, String(LANES_SINK_PORT)], { stdin: true });
    children.push(server);
    await server.waitFor('ready');
    const sendFromBothSites = async (script: string, flows: number): Promise<Child[]> => {
      const clients = ([[NS.dc1, 'dc1'], [NS.dc2, 'dc2']] as const).map(([ns, site]) => nsScript(ns, script, [site, LANES_HOST, String(LANES_BASE_PORT), String(flows), LANES_SERVER]));
      children.push(...clients);
      await Promise.all(clients.map((c) => c.waitFor('sent')));
      return clients;
    };
    return { NS, dir, edge, server, sendFromBothSites, close };
  } catch (e) {
    close();
    throw e;
  }
}
