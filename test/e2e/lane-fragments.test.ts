// Fragments and ICMP errors across lanes, end to end (docs/ARCHITECTURE.md "Lanes", "Fragments and ICMP errors"):
// `tether run --lanes 2` in a namespace, the lanes topology (test/support/lanes-topology.ts: two overlapping sites
// dc1 and dc2 behind ARR interconnects, 172.16.0.20 in both, the Internet with 8 more server addresses) plus a data
// center reached by a route (core): a router (dcr) and a host (dch, 172.20.0.20) behind a 1200-byte link.
// A multi-queue TUN hashes every fragment by its addresses only, so a datagram's fragments reach one lane, which
// need not own the flow. Checks:
//  - fragmented UDP both ways: every site socket's 3000-byte datagrams (fragmented by the site's kernel) to the
//    Internet servers and to the data center, and their echoes (fragmented by the server's kernel, and again by the
//    1200-byte link), all come back whole to the socket that sent them, and both lanes handed first fragments (whose
//    later fragments followed) to the other: lane_fragments_steered per lane;
//  - ICMP errors from the data center about its flows, whichever lane owns each: fragmentation needed from the router
//    (RFC 1191: PMTUD works with lanes) and port unreachable from the host, each read by the socket that sent the
//    datagram (IP_RECVERR: the kernel matched the error's quoted packet, translated back, to it).
// Namespaces tt-<pid>-lf-*; those of dead runs are removed first (test/support/netns.ts). Needs root; never skips.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addNamespaces, nsSh, removeNamespaces, removeStaleNamespaces, sh } from '../support/netns.js';
import { LANES_HOST as HOST, LANES_SERVER, buildLanesTopology, lanesConfig, lanesNamespaces, removeLanesTopology } from '../support/lanes-topology.js';
import { childStatus, nsSpawn, type Child } from '../support/ns-child.js';

const PREFIX = `tt-${process.pid}-lf-`;
const NS = lanesNamespaces(PREFIX);
const CORE = { router: `${PREFIX}dcr`, host: `${PREFIX}dch` };
const DC_HOST = '172.20.0.20';
/** The data center's inner link: smaller than the 1500 bytes of every other link, so the router sends fragmentation needed. */
const DC_MTU = 1200;
/** Server addresses: with the sites' 172.16.0.20, address pairs enough that the kernel's hash spreads fragments over both lanes. */
const SERVERS = [LANES_SERVER, ...Array.from({ length: 7 }, (_, k) => `203.0.113.${100 + k}`)];
const ECHO_PORT = 9000;
const CLOSED_PORT = 9001;
/** Flows per site: each to one of the servers or the data center host (f mod 9), 4 of each per site. */
const FLOWS = 36;
const PER_FLOW = 5;
/** Bytes of a big datagram: three fragments on a 1500-byte link, more on the data center's. */
const BIG = 3000;
const FRAGMENT_BASE_PORT = 42000;
const ERROR_BASE_PORT = 43000;
const ERROR_FLOWS = 16;
/** A datagram of PMTUD's probe size: fits 1500, not DC_MTU. */
const PROBE_BYTES = 1300;
/** Behavioural bound for a client's whole exchange (not a timed assertion; under ns-child's 60 s wait, so its tally is read); clients resend what got no answer. */
const CLIENT_TIMEOUT_S = 45;
const RESEND_MS = 300;
/** Lanes ≥ 1 post their status every second (daemon/lanes.ts): poll a little faster than that. */
const STATUS_SETTLE_MS = 600;

interface LaneStatus {
  edge: Record<string, number>;
  laneCounters?: Array<Record<string, number>>;
}

function removeOwn(): void {
  removeLanesTopology(NS);
  removeNamespaces(Object.values(CORE));
}

function buildTopology(): void {
  buildLanesTopology(NS, { servers: SERVERS.slice(1) });
  addNamespaces(Object.values(CORE));
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-core', 'type', 'veth', 'peer', 'name', 'up0', 'netns', CORE.router);
  sh('ip', '-n', CORE.router, 'link', 'add', 'inner0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', CORE.host);
  nsSh(NS.edge, `
    ip addr add 172.31.3.1/30 dev veth-core; ip link set veth-core up
    ip rule add iif tt-ic-3 lookup 2003 priority 902; ip route add default via 172.31.3.2 dev veth-core table 2003`);
  // The routers and hosts answer every error at once (no ICMP rate limit: RFC 1812 section 4.3.2.8 allows it off).
  nsSh(CORE.router, `
    echo 1 > /proc/sys/net/ipv4/ip_forward
    echo 0 > /proc/sys/net/ipv4/icmp_ratelimit
    ip addr add 172.31.3.2/30 dev up0; ip link set up0 up
    ip addr add 172.20.0.1/24 dev inner0; ip link set inner0 mtu ${DC_MTU} up
    ip route add default via 172.31.3.1`);
  nsSh(CORE.host, `
    echo 0 > /proc/sys/net/ipv4/icmp_ratelimit
    ip addr add ${DC_HOST}/24 dev eth0; ip link set eth0 mtu ${DC_MTU} up
    ip route add default via 172.20.0.1`);
}

function config(dir: string): string {
  return lanesConfig(dir, '', '{ level: info }', {
    sites: ['name: core'],
    onramps: ['{ name: core-link, id: 3, type: interconnect, site: core, automatic_return_routing: false, interconnect: { link: veth-core } }'],
    routes: ['{ prefix: 172.20.0.0/24, next_hop: { onramp: core-link } }'],
  });
}

/** Echoes every datagram as it came, on each address given. */
const ECHO_SCRIPT = `
import dgram from 'node:dgram';
const addrs = process.argv.slice(1);
let bound = 0;
for (const a of addrs) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  s.bind(${ECHO_PORT}, a, () => { if (++bound === addrs.length) console.log('ready'); });
}`;

/**
 * A site: FLOWS sockets, flow f to destination f mod the list. Each flow sends one small datagram (its first packet
 * carries the ports, so the kernel's hash spreads the flows' setups over both lanes), then PER_FLOW big ones, one at a
 * time, each resent until its echo comes back whole and equal. Prints { done, resent, bad } when all are done or at
 * the timeout; bad: echoes equal to no datagram the flow sent, or more echoes of one than its sends (under load the
 * echoes of resent copies came back after the flow had moved on: not bad).
 */
const CLIENT_SCRIPT = `
import dgram from 'node:dgram';
const [site, ...dests] = process.argv.slice(1);
const done = new Array(${FLOWS}).fill(0), resent = new Array(${FLOWS}).fill(0), bad = [];
let finished = 0, ended = false;
const payload = (f, seq) => {
  const size = seq < 0 ? 32 : ${BIG};
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + f * 13 + seq) & 0xff;
  Buffer.from(site + ':' + f + ':' + seq + ':').copy(b);
  return b;
};
const end = () => { if (ended) return; ended = true; console.log(JSON.stringify({ done, resent, bad })); process.exit(0); };
for (let f = 0; f < ${FLOWS}; f++) {
  const s = dgram.createSocket('udp4');
  const dest = dests[f % dests.length];
  // Per datagram (index seq + 1): times sent, echoes back. Every copy of a resent datagram may be echoed, late, after
  // the flow moved on: an echo of an earlier datagram is bad only when it outnumbers that datagram's sends.
  const sends = new Array(${PER_FLOW} + 1).fill(0), echoes = new Array(${PER_FLOW} + 1).fill(0);
  let seq = -1, timer = null;
  const send = () => { sends[seq + 1]++; s.send(payload(f, seq), ${ECHO_PORT}, dest); clearTimeout(timer); timer = setTimeout(() => { resent[f]++; send(); }, ${RESEND_MS}); };
  s.on('message', (m) => {
    if (!m.equals(payload(f, seq))) {
      let late = -2;
      for (let e = -1; e < seq && late === -2; e++) if (echoes[e + 1] < sends[e + 1] && m.equals(payload(f, e))) late = e;
      if (late >= -1) echoes[late + 1]++;
      else if (bad.length < 20) bad.push(f + ': ' + m.length + ' bytes ' + m.subarray(0, 24).toString());
      return;
    }
    echoes[seq + 1]++;
    if (seq >= 0) done[f]++;
    if (++seq === ${PER_FLOW}) { clearTimeout(timer); if (++finished === ${FLOWS}) end(); return; }
    send();
  });
  s.bind(${FRAGMENT_BASE_PORT} + f, '${HOST}', send);
}
setTimeout(end, ${CLIENT_TIMEOUT_S * 1000});`;

/**
 * A site's ICMP error check (Python: Node has no IP_RECVERR): ERROR_FLOWS sockets with IP_RECVERR, DF always set
 * (IP_PMTUDISC_PROBE). Phase "frag": a PROBE_BYTES datagram to the data center host's echo port, which its router
 * cannot forward (fragmentation needed, RFC 1191); phase "unreach": a small one to a closed port (port unreachable).
 * Each socket resends until its error queue holds an ICMP error; prints { frag, unreach }: per socket
 * [type, code, info] of the error it read, or null.
 */
const ERRORS_SCRIPT = `
import json, socket, struct, sys, time
host, dest, base, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, IP_RECVERR, MSG_ERRQUEUE = 10, 3, 11, 0x2000
deadline = time.time() + ${CLIENT_TIMEOUT_S}
def phase(offset, port, size):
    socks = []
    for k in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, base + offset + k))
        s.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
        s.setsockopt(socket.SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        s.setblocking(False)
        socks.append(s)
    got, last = [None] * n, [0.0] * n
    while time.time() < deadline and None in got:
        for k, s in enumerate(socks):
            if got[k] is not None:
                continue
            try:
                _, anc, _, _ = s.recvmsg(2048, 512, MSG_ERRQUEUE)
                for level, kind, data in anc:
                    if level == socket.SOL_IP and kind == IP_RECVERR:
                        _, origin, etype, code, _, info, _ = struct.unpack('=IBBBBII', data[:16])
                        got[k] = [etype, code, info]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            if time.time() - last[k] > ${RESEND_MS / 1000}:
                try:
                    s.sendto(bytes(size), (dest, port))
                except OSError:
                    pass  # the error already reported on send (sk_err): its queue entry is read next turn
                last[k] = time.time()
        time.sleep(0.01)
    for s in socks:
        s.close()
    return got
print(json.dumps({'frag': phase(0, ${ECHO_PORT}, ${PROBE_BYTES}), 'unreach': phase(n, ${CLOSED_PORT}, 16)}), flush=True)
`;

/** Runs ERRORS_SCRIPT in `ns` with /usr/bin/python3 (the system one: scripts/debian-deps.sh); resolves with its JSON. */
function runErrorsScript(ns: string): Promise<{ frag: Array<number[] | null>; unreach: Array<number[] | null> }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, '/usr/bin/python3', '-c', ERRORS_SCRIPT, HOST, DC_HOST, String(ERROR_BASE_PORT), String(ERROR_FLOWS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`${ns}: the error check exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as { frag: Array<number[] | null>; unreach: Array<number[] | null> });
    });
  });
}

describe('tether run --lanes 2: fragments and ICMP errors across lanes (real interfaces, root)', () => {
  let dir = '';
  let edge: Child | null = null;
  const children: Child[] = [];

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lane fragments test needs root (CAP_NET_ADMIN): run it as root; it is never skipped');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing');
    assert.ok(existsSync('/usr/bin/python3'), '/usr/bin/python3 is missing (scripts/debian-deps.sh installs it)');
    removeStaleNamespaces();
    removeOwn();
    buildTopology();
    dir = mkdtempSync(join(tmpdir(), PREFIX));
    writeFileSync(join(dir, 'edge.yaml'), config(dir));
    edge = nsSpawn(NS.edge, ['--import', 'tsx', 'src/cli/tether.ts', 'run', '--no-api', '--lanes', '2', '--config', join(dir, 'edge.yaml')]);
    await edge.waitFor('"lanes running"');
    for (const [ns, addrs] of [[NS.inet, SERVERS], [CORE.host, [DC_HOST]]] as const) {
      const echo = nsSpawn(ns, ['--input-type=module', '-e', ECHO_SCRIPT, '--', ...addrs]);
      children.push(echo);
      await echo.waitFor('ready');
    }
  });

  after(() => {
    edge?.child.kill('SIGKILL');
    for (const c of children) c.child.kill('SIGKILL');
    removeOwn();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const status = (): Promise<LaneStatus> => childStatus<LaneStatus>(edge!);
  /**
   * The status once every lane has posted what it handed and received (the other lanes' part is up to a second old):
   * every packet handed over received by its lane, the same figures twice in a row.
   */
  const settledStatus = async (): Promise<LaneStatus> => {
    let last = await status();
    for (let tries = 0; tries < 40; tries++) {
      await new Promise((r) => setTimeout(r, STATUS_SETTLE_MS));
      const next = await status();
      const same = JSON.stringify(next.laneCounters) === JSON.stringify(last.laneCounters);
      last = next;
      if (same && (next.edge.lane_received ?? 0) === (next.edge.lane_handed_off ?? 0)) break;
    }
    return last;
  };

  it('fragmented datagrams both ways, to the Internet and to a data center: every one comes back whole; both lanes steered fragments to the other', async (t) => {
    const clients = [NS.dc1, NS.dc2].map((ns, k) => nsSpawn(ns, ['--input-type=module', '-e', CLIENT_SCRIPT, '--', `site${k + 1}`, ...SERVERS, DC_HOST]));
    children.push(...clients);
    const tallies = await Promise.all(clients.map(async (c) => JSON.parse(await c.waitFor('{"done"')) as { done: number[]; resent: number[]; bad: string[] }));
    tallies.forEach((t, k) => {
      assert.deepEqual(t.bad, [], `site ${k + 1}: no echo differs from what its socket sent`);
      assert.deepEqual(t.done, new Array(FLOWS).fill(PER_FLOW), `site ${k + 1}: every big datagram echoed whole (resent: ${JSON.stringify(t.resent)})`);
    });
    const s = await settledStatus();
    const lanes = s.laneCounters ?? [];
    t.diagnostic(`per lane: ${JSON.stringify(lanes)}; resent: ${tallies.map((x) => x.resent.reduce((a, b) => a + b, 0)).join(', ')}`);
    assert.equal(lanes.length, 2, `per-lane counters: ${JSON.stringify(s)}`);
    for (const [k, c] of lanes.entries()) {
      assert.ok((c.lane_fragments_steered ?? 0) > 0, `lane ${k} read first fragments of flows lane ${1 - k} owns and steered their datagrams there: ${JSON.stringify(lanes)}`);
    }
  });

  it('ICMP errors from the data center (fragmentation needed, port unreachable) reach the socket of each flow, whichever lane owns it', async (t) => {
    const before = await settledStatus();
    const results = await Promise.all([NS.dc1, NS.dc2].map((ns) => runErrorsScript(ns)));
    const ICMP_DEST_UNREACHABLE = 3;
    const FRAGMENTATION_NEEDED = 4;
    const PORT_UNREACHABLE = 3;
    results.forEach((r, k) => {
      assert.deepEqual(r.frag, new Array(ERROR_FLOWS).fill([ICMP_DEST_UNREACHABLE, FRAGMENTATION_NEEDED, DC_MTU]), `site ${k + 1}: each socket learned the data center's MTU (RFC 1191)`);
      assert.deepEqual(r.unreach, new Array(ERROR_FLOWS).fill([ICMP_DEST_UNREACHABLE, PORT_UNREACHABLE, 0]), `site ${k + 1}: each socket heard its port unreachable`);
    });
    const after = await settledStatus();
    const handed = (s: LaneStatus): number => s.edge.lane_handed_off ?? 0;
    t.diagnostic(`per lane before: ${JSON.stringify(before.laneCounters)}, after: ${JSON.stringify(after.laneCounters)}`);
    assert.ok(handed(after) > handed(before), `errors read by a lane not owning their flow were handed over: ${JSON.stringify(after.laneCounters)}`);
  });
});
