/**
 * `npm run bench:lab` (root) — forwarding over real interfaces, tether beside the Linux kernel doing the same
 * job, in the same run (docs/PERFORMANCE.md). A benchmark, not a test: it prints figures and asserts none.
 *
 *   ns <p>-tsite  10.0.1.10 ── veth 172.30.1.0/30 ──┐
 *   ns <p>-twsite 10.0.1.10 ── wireguard-go <p>wgt ─┤ ns <p>-tedge: tether (dist/, compiled), one interconnect
 *                 over veth 192.168.101.0/24        │ onramp + one WireGuard onramp, ARR on, egress pool
 *                                                   │ 198.51.100.1 ── veth 192.168.200.0/24 ──┐
 *                                                   │                                          ├ ns <p>-inet
 *   ns <p>-ksite  10.0.1.10 ── veth 172.30.2.0/30 ──┐                                          │ 203.0.113.10
 *   ns <p>-kwsite 10.0.1.10 ── wireguard-go <p>wgs ─┤ ns <p>-kedge: the kernel (nftables: a    │ iperf3 -s
 *                 over veth 192.168.102.0/24        │ conntrack zone and a connection mark per │
 *                                                   │ ingress link, SNAT to 198.51.100.2,      │
 *                                                   │ replies routed by mark through ip rule), │
 *                                                   │ wireguard-go <p>wge as the site's WG peer│
 *                                                   └── veth 192.168.201.0/24 ─────────────────┘
 *
 * Measured, each with one iperf3 client in a site namespace and the server in <p>-inet:
 *   interconnect  TCP bulk (one stream) and 64-byte UDP packets/s (iperf3 -u -l 36 -b 0: 36 B payload + 8 UDP
 *                 + 20 IPv4), tether vs kernel; UDP is the rate the server received.
 *   WireGuard     TCP bulk, wireguard-go → tether's WireGuard onramp vs wireguard-go → wireguard-go (kernel
 *                 forwarding and SNAT behind it).
 *   IPsec         TCP bulk, one stream, 10 s (--ipsec-seconds): a site behind strongSwan (kernel-libipsec, ESP-in-UDP)
 *                 → a strongSwan edge (kernel-libipsec; forwarding and SNAT to 198.51.100.3 by the kernel behind
 *                 it), and → tether's IPsec onramp (tetherIpsecPath(): the same kind of site, the lab's site-d terms,
 *                 tether responding on 192.168.106.1, its egress SNAT), in the same run; --json: `ipsec.ratio_tcp`.
 *
 *   ns <p>-ssite  10.0.1.10 (lo), strongSwan ── veth 192.168.107.0/24 ── ns <p>-sedge: strongSwan edge, nftables
 *                                                                       SNAT ── veth 192.168.202.0/24 ── <p>-inet
 *   ns <p>-tisite 10.0.1.10 (lo), strongSwan ── veth 192.168.106.0/24 ── ns <p>-tedge: tether's IPsec onramp (.1)
 *   burst         (issue 10) two WireGuard sites per edge send BURST_DATAGRAMS 64-byte datagrams each at one instant:
 *                 the share a counting server in <p>-inet receives, tether vs the wireguard-go + kernel edge, rounds
 *                 alternating (--burst-rounds), with the kernel's drops at each hop; --json: `burst.*`. The second
 *                 sites: ns <p>-twsite2 (10.0.2.10, wireguard-go <p>wgt2 over 192.168.108.0/24 → tether's site-wg2)
 *                 and <p>-kwsite2 (10.0.2.10, <p>wgs2 over 192.168.109.0/24 → a second peer of <p>wge).
 *   latency       (issue 10) ping -i 0.01 and a TCP request/response (64 B, N round trips, --latency-count) from the
 *                 interconnect and WireGuard sites, tether vs the reference, same run: p50/p99, what tether adds;
 *                 --json: `latency.*`. Edge CPU per Gbit/s of every TCP run: `edge_cpu_cores_per_gbps.*`.
 *                 The floor beside them (`latency.interconnect.bare`): the same figures through a bare userspace
 *                 TUN-to-TUN forwarder in C (bench/bare-forwarder.c, compiled with cc -O2 into a temporary directory),
 *                 placed as tether is: the site's packets routed from its link into one TUN, the forwarder writes
 *                 them into the other, the kernel routes them on to the Internet link; no NAT (the site's host has
 *                 its own address, 10.0.3.10, routed back by <p>-inet):
 *
 *   ns <p>-bsite  10.0.3.10 ── veth 172.30.3.0/30 ── ns <p>-bedge: veth-ic ─rule─▶ <p>bfa ⇄ bare-forwarder ⇄ <p>bfb
 *                                                    ◀─rule─ veth-inet ── veth 192.168.203.0/24 ── ns <p>-inet
 * Every path is first checked to forward (one second of iperf3, at least 256 KiB received) before anything is measured.
 *
 * Own names (prefix `tb` unless --prefix): exactly the namespaces and wireguard-go interfaces listed by
 * benchNames(); leftovers of those names are removed first, and everything again at the end, on failure and on
 * SIGINT/SIGTERM. Progress goes to stderr; stdout carries the table, or one JSON object with --json.
 *
 * Options: --json, --seconds N (per measurement, default 5), --ipsec-seconds N (the IPsec measurement, default 10),
 * --only LIST (comma-separated of interconnect, wireguard, ipsec, burst, latency: measure only those; the others
 * report zeros), --burst-rounds N (default 3), --burst-count N (datagrams per site, default 3000), --latency-count N
 * (pings and round trips per path, default 500), --latency-warmup N (request/response round trips and flood pings through each path
 * before its latency is measured, default LATENCY_WARMUP_ROUND_TRIPS: V8 optimises the daemon's code meanwhile), --underlay-queue N (an experiment: tether's underlay TUN queue set
 * to N packets once the daemon runs, instead of its own TUN_TX_QUEUE_PACKETS), --no-gro (an A/B switch: the daemon
 * writes its TUNs without coalescing TCP segments, as before GRO; --json says `gro: false`),
 * --prefix P, --keep (leave the topology and its processes up, logs in /run/tether-bench/P; strongSwan's in
 * /var/tmp/tether-ssw/bench-P), --down (only remove what a run with this prefix left).
 * Lanes (docs/PERFORMANCE.md "Lanes"): --lanes N runs tether with N lanes (`tether run --lanes N`; tunnel onramps'
 * state stays on lane 0, docs/ARCHITECTURE.md "Lanes");
 * --streams N (iperf3 -P N for the TCP figures: one stream is one flow, so one lane) and --udp-flows N (iperf3 -u
 * -P N: N flows of 64-byte packets) apply to tether and the kernel reference alike.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_BUSY_POLL_US, stringifyConfig, type OnrampConfig, type TetherConfig } from '../src/config/index.js';
import { defaultConfig, LAB_WIREGUARD_KEYS, labTopologyConfig, SITE_D_ONRAMP } from '../src/lab/config.js';
import { ip, sleep, sysctl } from '../src/lab/exec.js';
import { formatCommand, inNamespace, inNamespaceOk, LAB, logTail, PREFIX_PATTERN, run } from '../src/lab/index.js';
import { REPO_ROOT } from '../src/lab/paths.js';
import { DEFAULT_UNDERLAY_NAME } from '../src/daemon/network.js';
import { added, BURST_DATAGRAMS, burstOnce, burstTotals, deviceStat, LATENCY_WARMUP_ROUND_TRIPS, latencyOf, startRrServer, warmUp, type BurstRound, type BurstSite, type Counters, type LatencyFigures } from './lab-burst-latency.js';
import { missingStrongSwan, removeStrongSwanRun, STRONGSWAN_RUN_ROOT, StrongSwan, strongSwanRunDir, type StrongSwanOptions } from '../src/lab/strongswan.js';

// ─── Options ─────────────────────────────────────────────────────────────────────────────────────────

const args = process.argv.slice(2);
const json = args.includes('--json');
const keep = args.includes('--keep');
const downOnly = args.includes('--down');
function option(name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const SECONDS = Number(option('--seconds', '5'));
/** Issue 9: "IPsec TCP, 1 stream", 10 s (strongSwan's receive buffer overflows under a stream: a longer run averages its stalls). */
const IPSEC_SECONDS = Number(option('--ipsec-seconds', '10'));
const PREFIX = option('--prefix', 'tb');
const SECTIONS = ['interconnect', 'wireguard', 'ipsec', 'burst', 'latency'] as const;
const ONLY = new Set(option('--only', SECTIONS.join(',')).split(',').filter((x) => x !== ''));
for (const x of ONLY) if (!(SECTIONS as readonly string[]).includes(x)) throw new Error(`--only ${x}: one of ${SECTIONS.join(', ')}`);
const want = (section: (typeof SECTIONS)[number]): boolean => ONLY.has(section);
const BURST_ROUNDS = Number(option('--burst-rounds', '3'));
const BURST_COUNT = Number(option('--burst-count', String(BURST_DATAGRAMS)));
const LATENCY_COUNT = Number(option('--latency-count', '500'));
/** Request/response round trips and flood pings through each path before its latency is measured (0: none, as before 2026-12-01 17:30). */
const LATENCY_WARMUP = Number(option('--latency-warmup', String(LATENCY_WARMUP_ROUND_TRIPS)));
/** An experiment: the underlay TUN's queue set to N packets (ip link set txqueuelen) once the daemon runs; default: the daemon's own. */
const UNDERLAY_QUEUE = option('--underlay-queue', '');
/** An A/B switch: the daemon runs with `--no-gro` (its TUN writes not coalesced; the figures before GRO, same build). */
const NO_GRO = args.includes('--no-gro');
/** An experiment: the daemon's busy-poll budget, µs (daemon.busy_poll_us; 0 = off); default: the configuration's default. */
const BUSY_POLL_US = option('--busy-poll-us', '');
/** An A/B switch: the native flow cache (daemon.flow_cache) `on` or `off`; default: the configuration's default. */
const FLOW_CACHE = option('--flow-cache', '');
if (FLOW_CACHE !== '' && FLOW_CACHE !== 'on' && FLOW_CACHE !== 'off') throw new Error(`--flow-cache ${FLOW_CACHE}: on or off`);
/** tether's lanes (`tether run --lanes N`). */
const LANES = Number(option('--lanes', '1'));
/** iperf3 -P for TCP and for 64-byte UDP: parallel streams, each its own flow (and so, with lanes, its own lane's). */
const STREAMS = Number(option('--streams', '1'));
const UDP_FLOWS = Number(option('--udp-flows', '1'));

function progress(msg: string): void {
  process.stderr.write(`bench:lab: ${msg}\n`);
}

// ─── Names and addresses ─────────────────────────────────────────────────────────────────────────────

/** The daemon compiled by `tsc -p tsconfig.build.json`: under tsx it would run ~10× slower. */
const DAEMON = join(REPO_ROOT, 'dist', 'src', 'cli', 'tether.js');
const RUN_DIR_ROOT = '/run/tether-bench';

interface BenchNames {
  tedge: string;
  kedge: string;
  tsite: string;
  ksite: string;
  twsite: string;
  kwsite: string;
  inet: string;
  /** The IPsec reference: the site behind strongSwan and the strongSwan edge. */
  ssite: string;
  sedge: string;
  /** The site behind strongSwan that connects to tether's IPsec onramp (tetherIpsecPath()). */
  tisite: string;
  /** The second WireGuard site of each edge (the burst figure): → tether, → the wireguard-go edge. */
  twsite2: string;
  kwsite2: string;
  /** The latency floor: a site and an edge whose forwarder is bench/bare-forwarder.c between two TUNs. */
  bsite: string;
  bedge: string;
  bareTunSite: string;
  bareTunInet: string;
  /** strongSwan's run directory (outside /run: charon's own /run is bind-mounted over it). */
  strongSwanDir: string;
  /** wireguard-go interfaces: site → tether, site → wireguard-go edge, the wireguard-go edge. */
  wgTetherSite: string;
  wgKernelSite: string;
  wgKernelEdge: string;
  wgTetherSite2: string;
  wgKernelSite2: string;
  namespaces: string[];
  wireguardInterfaces: string[];
  runDir: string;
}

function benchNames(p: string): BenchNames {
  if (!PREFIX_PATTERN.test(p)) throw new Error(`--prefix "${p}": a lowercase letter followed by at most 5 lowercase letters or digits`);
  const n = {
    tedge: `${p}-tedge`, kedge: `${p}-kedge`, tsite: `${p}-tsite`, ksite: `${p}-ksite`,
    twsite: `${p}-twsite`, kwsite: `${p}-kwsite`, inet: `${p}-inet`, ssite: `${p}-ssite`, sedge: `${p}-sedge`, tisite: `${p}-tisite`,
    twsite2: `${p}-twsite2`, kwsite2: `${p}-kwsite2`, bsite: `${p}-bsite`, bedge: `${p}-bedge`, bareTunSite: `${p}bfa`, bareTunInet: `${p}bfb`,
    wgTetherSite: `${p}wgt`, wgKernelSite: `${p}wgs`, wgKernelEdge: `${p}wge`, wgTetherSite2: `${p}wgt2`, wgKernelSite2: `${p}wgs2`,
  };
  return {
    ...n,
    namespaces: [n.tedge, n.kedge, n.tsite, n.ksite, n.twsite, n.kwsite, n.inet, n.ssite, n.sedge, n.tisite, n.twsite2, n.kwsite2, n.bsite, n.bedge],
    strongSwanDir: join(STRONGSWAN_RUN_ROOT, `bench-${p}`),
    wireguardInterfaces: [n.wgTetherSite, n.wgKernelSite, n.wgKernelEdge, n.wgTetherSite2, n.wgKernelSite2],
    runDir: join(RUN_DIR_ROOT, p),
  };
}

/** Interface names inside the namespaces (the veths are created directly in their two namespaces). */
const IF = Object.freeze({
  towardEdge: 'veth-edge',
  siteLink: 'veth-ic',
  wgLink: 'veth-wg',
  wgLink2: 'veth-wg2',
  edgeToInet: 'veth-inet',
  inetToTether: 'veth-t',
  inetToKernel: 'veth-k',
  inetToStrongSwan: 'veth-s',
  inetToBare: 'veth-b',
  ipsecLink: 'veth-ipsec',
});

const SERVER = LAB.internet.server;
const HOST = LAB.siteHost;
/** The bare forwarder's site host: its own address, so that <p>-inet routes it back without NAT on that edge. */
const BARE_HOST = '10.0.3.10';
/** The second WireGuard sites' host and LAN: wireguard-go's cryptokey routing cannot give two peers one LAN. */
const HOST2 = '10.0.2.10';
const LAN2 = '10.0.2.0/24';
const WG_PORT = LAB.wireguardPort;
/** Both edges side by side: the tether half reuses the lab's WireGuard site-a underlay and Internet link. */
const ADDR = Object.freeze({
  tether: {
    siteLink: { edge: '172.30.1.1', site: '172.30.1.2', len: 30 },
    wg: { edgeHost: `${LAB.siteA.underlay}.${LAB.edgeSiteHost}`, endpoint: LAB.siteA.edgeEndpoint, site: LAB.siteA.router },
    wg2: { edge: '192.168.108.1', site: '192.168.108.2' },
    inet: { edge: LAB.internet.edge, inet: LAB.internet.router },
    pool: '198.51.100.1',
  },
  /** The strongSwan edge (the IPsec reference); tether's IPsec onramp would use LAB.siteD's underlay, endpoint .1. */
  strongswan: {
    underlay: { edge: '192.168.107.1', site: '192.168.107.2', len: 24 },
    inet: { edge: '192.168.202.1', inet: '192.168.202.2' },
    pool: '198.51.100.3',
  },
  kernel: {
    siteLink: { edge: '172.30.2.1', site: '172.30.2.2', len: 30 },
    wg: { edge: LAB.siteB.edgeEndpoint, site: LAB.siteB.router },
    wg2: { edge: '192.168.109.1', site: '192.168.109.2' },
    inet: { edge: '192.168.201.1', inet: '192.168.201.2' },
    pool: '198.51.100.2',
  },
  /** The bare forwarder's edge (the latency floor): routing tables of its two directions. */
  bare: {
    siteLink: { edge: '172.30.3.1', site: '172.30.3.2', len: 30 },
    inet: { edge: '192.168.203.1', inet: '192.168.203.2' },
    siteTable: 301,
    inetTable: 302,
  },
});
/** The kernel edge's onramps: per ingress link a conntrack zone, a connection mark and a policy-routing table. */
function kernelOnramps(n: BenchNames): Array<{ link: string; zone: number; mark: number; table: number }> {
  return [
    { link: IF.siteLink, zone: 1, mark: 1, table: 101 },
    { link: n.wgKernelEdge, zone: 2, mark: 2, table: 102 },
  ];
}

// ─── Processes ───────────────────────────────────────────────────────────────────────────────────────

interface Started {
  name: string;
  ns: string;
  child: ChildProcess;
  log: string;
  exited: boolean;
}

const started: Started[] = [];

/** Starts a long-running command in a namespace, output appended to RUN_DIR/<name>.log. */
function startIn(names: BenchNames, name: string, ns: string, command: string, cmdArgs: string[], env?: Record<string, string>): Started {
  const log = join(names.runDir, `${name}.log`);
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn('ip', ['netns', 'exec', ns, command, ...cmdArgs], {
      cwd: REPO_ROOT,
      stdio: ['ignore', fd, fd],
      env: env ? { ...process.env, ...env } : process.env,
      // --keep: the topology outlives this process (and a Ctrl-C in its terminal).
      detached: keep,
    });
    if (keep) child.unref();
    const s: Started = { name, ns, child, log, exited: false };
    child.on('exit', () => { s.exited = true; });
    child.on('error', () => { s.exited = true; });
    started.push(s);
    return s;
  } finally {
    closeSync(fd);
  }
}

function stopChild(s: Started, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (s.exited) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (!s.exited) s.child.kill('SIGKILL');
      resolve();
    }, graceMs);
    s.child.once('exit', () => { clearTimeout(timer); resolve(); });
    s.child.kill(signal);
  });
}

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>, proc?: Started): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (proc?.exited || Date.now() > deadline) {
      const why = proc?.exited ? `${proc.name} exited` : `not after ${timeoutMs} ms`;
      const tail = proc ? `\nlast lines of ${proc.log}:\n${logTail(proc.log, 15)}` : '';
      throw new Error(`waiting for ${what}: ${why}${tail}`);
    }
    await sleep(100);
  }
}

// ─── Cleanup ─────────────────────────────────────────────────────────────────────────────────────────

async function presentNamespaces(): Promise<Set<string>> {
  const r = await run('ip', ['netns', 'list']);
  return new Set(r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((n) => n !== undefined && n !== ''));
}

/**
 * Removes everything with this run's names: our own children first (the daemon gracefully), then any process
 * still in our namespaces (leftovers of an earlier run that died: SIGKILL, the namespace is about to go), the
 * namespaces with their veths, wireguard-go sockets, the run directory.
 */
async function cleanup(names: BenchNames): Promise<void> {
  const daemon = started.find((s) => s.name === 'tether');
  if (daemon) await stopChild(daemon, 'SIGTERM', 5000);
  await Promise.all(started.map((s) => stopChild(s, 'SIGTERM', 2000)));
  const present = await presentNamespaces();
  for (const ns of names.namespaces) {
    if (!present.has(ns)) continue;
    const pids = await run('ip', ['netns', 'pids', ns]);
    for (const pid of pids.stdout.split('\n').map((l) => Number(l.trim())).filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  if (present.size > 0) await sleep(100);
  for (const ns of names.namespaces) {
    if (!present.has(ns)) continue;
    const r = await run('ip', ['netns', 'delete', ns]);
    if (r.code !== 0 && (await presentNamespaces()).has(ns)) throw new Error(`cleanup: ip netns delete ${ns}: ${r.stderr.trim()}`);
  }
  for (const wg of names.wireguardInterfaces) rmSync(join('/var/run/wireguard', `${wg}.sock`), { force: true });
  await removeStrongSwanRun(names.strongSwanDir);
  rmSync(names.runDir, { recursive: true, force: true });
  try { rmdirSync(RUN_DIR_ROOT); } catch { /* another run's directory is still there */ }
}

// ─── Topology ────────────────────────────────────────────────────────────────────────────────────────

async function veth(aNs: string, aName: string, aAddr: string, bNs: string, bName: string, bAddr: string): Promise<void> {
  await ip(aNs, ['link', 'add', aName, 'type', 'veth', 'peer', 'name', bName, 'netns', bNs], `veth ${aNs}/${aName} <-> ${bNs}/${bName}`);
  await ip(aNs, ['addr', 'add', aAddr, 'dev', aName]);
  await ip(bNs, ['addr', 'add', bAddr, 'dev', bName]);
  await ip(aNs, ['link', 'set', aName, 'up']);
  await ip(bNs, ['link', 'set', bName, 'up']);
}

/** A site joined to its edge by a plain link: the host address on lo, everything via the edge, from the host. */
async function plainSite(edge: string, site: string, link: { edge: string; site: string; len: number }, host: string = HOST): Promise<void> {
  await veth(edge, IF.siteLink, `${link.edge}/${link.len}`, site, IF.towardEdge, `${link.site}/${link.len}`);
  await ip(site, ['addr', 'add', `${host}/32`, 'dev', 'lo']);
  await ip(site, ['route', 'add', 'default', 'via', link.edge, 'src', host]);
}

async function buildNetwork(n: BenchNames): Promise<void> {
  for (const ns of n.namespaces) {
    await ip(null, ['netns', 'add', ns], 'create namespace');
    await ip(ns, ['link', 'set', 'lo', 'up']);
  }
  for (const edge of [n.tedge, n.kedge, n.bedge]) {
    // Before the links exist: new interfaces copy conf.default.
    await sysctl(edge, 'net.ipv4.ip_forward', 1);
    await sysctl(edge, 'net.ipv4.conf.all.rp_filter', 0);
    await sysctl(edge, 'net.ipv4.conf.default.rp_filter', 0);
  }
  await sysctl(n.inet, 'net.ipv4.conf.all.rp_filter', 0);

  // Internet: one server reached through either edge, each edge's pool routed back to it.
  const t = ADDR.tether;
  const k = ADDR.kernel;
  await veth(n.tedge, IF.edgeToInet, `${t.inet.edge}/24`, n.inet, IF.inetToTether, `${t.inet.inet}/24`);
  await veth(n.kedge, IF.edgeToInet, `${k.inet.edge}/24`, n.inet, IF.inetToKernel, `${k.inet.inet}/24`);
  // The Internet links segment UDP super-packets (USO) as they leave the edge, as a NIC without USO does in software
  // and one with it in hardware: what arrives in <p>-inet, and what its nftables counter counts, is datagrams.
  // (A veth would otherwise carry tether's coalesced 64-byte UDP whole, one skb for up to 64 datagrams, into the
  // counter; TCP's super-packets still cross whole, on both edges.)
  for (const edge of [n.tedge, n.kedge]) await inNamespaceOk(edge, 'ethtool', ['-K', IF.edgeToInet, 'tx-udp-segmentation', 'off']);
  await ip(n.tedge, ['route', 'add', 'default', 'via', t.inet.inet]);
  await ip(n.kedge, ['route', 'add', 'default', 'via', k.inet.inet]);
  await ip(n.inet, ['addr', 'add', `${SERVER}/32`, 'dev', 'lo']);
  await ip(n.inet, ['route', 'add', `${t.pool}/32`, 'via', t.inet.edge]);
  await ip(n.inet, ['route', 'add', `${k.pool}/32`, 'via', k.inet.edge]);

  // Interconnect sites. The tether edge gets the route back to the site's LAN (what it writes into tt-ic-N is
  // routed by destination); the kernel edge only through its per-mark table (below), as ARR would.
  await plainSite(n.tedge, n.tsite, t.siteLink);
  await ip(n.tedge, ['route', 'add', LAB.siteLan, 'via', t.siteLink.site]);
  await plainSite(n.kedge, n.ksite, k.siteLink);

  // WireGuard underlays. tether's endpoint .1 is routed by the daemon into its underlay TUN: proxy ARP answers
  // the site's ARP for it (docs/UNDERLAY.md). The kernel edge's wireguard-go owns its address.
  await veth(n.tedge, IF.wgLink, `${t.wg.edgeHost}/24`, n.twsite, IF.towardEdge, `${t.wg.site}/24`);
  await sysctl(n.tedge, `net.ipv4.conf.${IF.wgLink}.proxy_arp`, 1);
  await veth(n.kedge, IF.wgLink, `${k.wg.edge}/24`, n.kwsite, IF.towardEdge, `${k.wg.site}/24`);
  // The second WireGuard sites reach their edge's endpoint through the edge's end of their own link.
  await veth(n.tedge, IF.wgLink2, `${t.wg2.edge}/24`, n.twsite2, IF.towardEdge, `${t.wg2.site}/24`);
  await ip(n.twsite2, ['route', 'add', `${t.wg.endpoint}/32`, 'via', t.wg2.edge]);
  await veth(n.kedge, IF.wgLink2, `${k.wg2.edge}/24`, n.kwsite2, IF.towardEdge, `${k.wg2.site}/24`);
  await ip(n.kwsite2, ['route', 'add', `${k.wg.edge}/32`, 'via', k.wg2.edge]);

  // The bare forwarder's site and edge (its TUNs and the rules into them come with the forwarder: bareForwarder()).
  const b = ADDR.bare;
  await veth(n.bedge, IF.edgeToInet, `${b.inet.edge}/24`, n.inet, IF.inetToBare, `${b.inet.inet}/24`);
  await ip(n.bedge, ['route', 'add', 'default', 'via', b.inet.inet]);
  await ip(n.inet, ['route', 'add', `${BARE_HOST}/32`, 'via', b.inet.edge]);
  await plainSite(n.bedge, n.bsite, b.siteLink, BARE_HOST);
  await ip(n.bedge, ['route', 'add', `${BARE_HOST}/32`, 'via', b.siteLink.site]);
}

/**
 * Compiles bench/bare-forwarder.c (cc -O2, into a temporary directory removed once it runs), starts it in <p>-bedge
 * with its two TUNs, and routes through it: what arrives from the site's link goes into <p>bfa, what arrives from
 * the Internet link into <p>bfb (ip rule by input interface); what it writes into either is routed on by the main
 * table. Resolves once a ping crosses it.
 */
async function bareForwarder(n: BenchNames): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-bare-'));
  let proc: Started;
  try {
    const bin = join(dir, 'bare-forwarder');
    const cc = await run('cc', ['-O2', '-Wall', '-o', bin, join(REPO_ROOT, 'bench', 'bare-forwarder.c')], { timeoutMs: 60_000 });
    if (cc.code !== 0) throw new Error(`cc -O2 bench/bare-forwarder.c failed (exit ${cc.code}): ${cc.stderr.trim()}`);
    proc = startIn(n, 'bare-forwarder', n.bedge, bin, [n.bareTunSite, n.bareTunInet]);
    await waitUntil('the bare forwarder\'s TUNs', 10_000, async () => existsSync(proc.log) && readFileSync(proc.log, 'utf8').includes('ready'), proc);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const b = ADDR.bare;
  for (const [link, tun, table] of [[IF.siteLink, n.bareTunSite, b.siteTable], [IF.edgeToInet, n.bareTunInet, b.inetTable]] as const) {
    await ip(n.bedge, ['link', 'set', tun, 'up']);
    await ip(n.bedge, ['route', 'add', 'default', 'dev', tun, 'table', String(table)]);
    await ip(n.bedge, ['rule', 'add', 'iif', link, 'lookup', String(table), 'priority', String(table)]);
  }
  await waitUntil('a ping through the bare forwarder', 10_000, async () => (await inNamespace(n.bsite, 'ping', ['-n', '-c', '1', '-W', '1', '-I', BARE_HOST, SERVER])).code === 0, proc);
  return proc;
}

/** nftables doing ARR's job on the kernel edge, and the ip rules that route replies by connection mark. */
async function kernelEdge(n: BenchNames): Promise<void> {
  const onramps = kernelOnramps(n);
  const zoneRules = onramps.map((o) => `    iifname "${o.link}" ct original zone set ${o.zone} counter`).join('\n');
  const markRules = onramps.map((o) => `    ct state new iifname "${o.link}" ct mark set ${o.mark} counter`).join('\n');
  // Zones are set in the original direction only (raw, before conntrack): a site's 10.0.1.10 is its own,
  // while replies from the Internet, in zone 0, still find their connection. The mark is restored on replies
  // only (restoring it on the original direction would send a site's packets back to the site).
  const ruleset = `table ip ${PREFIX}bench {
  chain zones {
    type filter hook prerouting priority raw; policy accept;
${zoneRules}
  }
  chain marks {
    type filter hook prerouting priority mangle; policy accept;
${markRules}
    ct direction reply meta mark set ct mark counter
  }
  chain egress {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${IF.edgeToInet}" snat to ${ADDR.kernel.pool}
  }
}
`;
  await inNamespaceOk(n.kedge, 'nft', ['-f', '-'], { input: ruleset });
  await ip(n.kedge, ['rule', 'add', 'fwmark', String(onramps[0].mark), 'lookup', String(onramps[0].table), 'priority', String(onramps[0].table)]);
  await ip(n.kedge, ['route', 'add', 'default', 'via', ADDR.kernel.siteLink.site, 'dev', IF.siteLink, 'table', String(onramps[0].table)]);
  await ip(n.kedge, ['rule', 'add', 'fwmark', String(onramps[1].mark), 'lookup', String(onramps[1].table), 'priority', String(onramps[1].table)]);
  await ip(n.kedge, ['route', 'add', 'default', 'dev', n.wgKernelEdge, 'table', String(onramps[1].table)]);
}

/** The nft counters of the kernel edge (evidence that zones, marks and mark-routed replies were used). */
async function kernelCounters(n: BenchNames): Promise<Record<string, number>> {
  const r = await inNamespace(n.kedge, 'nft', ['-j', 'list', 'table', 'ip', `${PREFIX}bench`]);
  type Expr = { counter?: { packets: number }; match?: { left?: { meta?: { key: string }; ct?: { key: string } }; right?: unknown } };
  const out: Record<string, number> = {};
  try {
    const doc = JSON.parse(r.stdout) as { nftables: Array<{ rule?: { chain: string; expr: Expr[] } }> };
    for (const { rule } of doc.nftables) {
      const counter = rule?.expr.find((e) => e.counter !== undefined)?.counter;
      if (!rule || !counter) continue;
      // "zones:veth-ic", "marks:veth-ic", "marks:reply" (the mark restored on replies).
      const iif = rule.expr.find((e) => e.match?.left?.meta?.key === 'iifname')?.match?.right;
      out[`${rule.chain}:${typeof iif === 'string' ? iif : 'reply'}`] = counter.packets;
    }
  } catch { /* informative only */ }
  return out;
}

// ─── WireGuard peers (wireguard-go + wg, as src/lab does) ────────────────────────────────────────────

const WG_ENV = { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' };

async function wireguardGo(n: BenchNames, name: string, ns: string, iface: string, privateKey: string, listenPort: number): Promise<Started> {
  const socket = join('/var/run/wireguard', `${iface}.sock`);
  rmSync(socket, { force: true });
  const p = startIn(n, name, ns, 'wireguard-go', ['-f', iface], WG_ENV);
  await waitUntil(`${name}'s control socket ${socket}`, 10_000, async () => existsSync(socket), p);
  const keyFile = join(n.runDir, `${name}.key`);
  writeFileSync(keyFile, `${privateKey}\n`, { mode: 0o600 });
  await inNamespaceOk(ns, 'wg', ['set', iface, 'listen-port', String(listenPort), 'private-key', keyFile]);
  return p;
}

/** A WireGuard site: the host address on the tunnel interface and everything through it. */
async function wireguardSite(ns: string, iface: string, peerPublic: string, endpoint: string, host: string = HOST): Promise<void> {
  await inNamespaceOk(ns, 'wg', ['set', iface, 'peer', peerPublic, 'endpoint', `${endpoint}:${WG_PORT}`, 'allowed-ips', '0.0.0.0/0']);
  await ip(ns, ['addr', 'add', `${host}/32`, 'dev', iface]);
  await ip(ns, ['link', 'set', iface, 'up']);
  await ip(ns, ['route', 'add', 'default', 'dev', iface, 'src', host]);
}

async function handshakeDone(ns: string, iface: string): Promise<boolean> {
  const r = await inNamespace(ns, 'wg', ['show', iface, 'latest-handshakes']);
  return r.code === 0 && r.stdout.split('\n').some((l) => Number(l.trim().split(/\s+/)[1] ?? 0) > 0);
}

// ─── IPsec: strongSwan sites, the strongSwan edge ────────────────────────────────────────────────────


/** Both strongSwan ends use the lab's IPsec site terms (identities, PSK, proposals: LAB.siteD), ESP-in-UDP. */
function ipsecOptions(n: BenchNames, name: string, ns: string, role: 'initiator' | 'responder', addrs: { local: string; remote: string }, ts: { local: string[]; remote: string[] }): StrongSwanOptions {
  const d = LAB.siteD;
  const site = role === 'initiator';
  return {
    name, namespace: ns, runDir: n.strongSwanDir, role,
    localAddress: addrs.local, remoteAddress: addrs.remote,
    localId: { type: 'fqdn', value: site ? d.siteId : d.edgeId },
    remoteId: { type: 'fqdn', value: site ? d.edgeId : d.siteId },
    psk: d.psk, ikeProposals: [d.ikeProposal], espProposals: [d.espProposal],
    localTs: ts.local, remoteTs: ts.remote,
    // Neither end may rekey or declare the other dead during a measurement.
    ikeLifetime: { rekeySeconds: 0 }, childLifetime: { rekeySeconds: 0 }, dpdDelaySeconds: 0,
    logLevels: { default: 0, ike: 1, knl: 0, esp: 0, cfg: 0 },
  };
}

/**
 * A site behind strongSwan, ready to initiate toward `endpoint` (whatever answers IKE there: the strongSwan edge,
 * tether): the host 10.0.1.10 on lo, an underlay veth to `edgeNs` (the edge's end gets `link.edge`; when that is
 * not the endpoint, proxy ARP answers for it, as the lab does for tether), selectors 10.0.1.10/32 ↔ 0.0.0.0/0.
 * Its charon's route `default dev ipsec0 src 10.0.1.10` (table 220) appears when the SA is up.
 */
async function ipsecSite(n: BenchNames, name: string, siteNs: string, edgeNs: string, link: { edge: string; site: string; len: number }, endpoint: string): Promise<StrongSwan> {
  await veth(edgeNs, IF.ipsecLink, `${link.edge}/${link.len}`, siteNs, IF.towardEdge, `${link.site}/${link.len}`);
  if (link.edge !== endpoint) await sysctl(edgeNs, `net.ipv4.conf.${IF.ipsecLink}.proxy_arp`, 1);
  await ip(siteNs, ['addr', 'add', `${HOST}/32`, 'dev', 'lo']);
  return StrongSwan.start(ipsecOptions(n, name, siteNs, 'initiator', { local: link.site, remote: endpoint }, { local: [`${HOST}/32`], remote: ['0.0.0.0/0'] }));
}

/** The strongSwan edge: responder, decrypted packets forwarded and SNATed (198.51.100.3) by the kernel to <p>-inet. */
async function strongSwanEdge(n: BenchNames): Promise<StrongSwan> {
  const s = ADDR.strongswan;
  // Before the links exist (new interfaces copy conf.default).
  await sysctl(n.sedge, 'net.ipv4.ip_forward', 1);
  await sysctl(n.sedge, 'net.ipv4.conf.all.rp_filter', 0);
  await sysctl(n.sedge, 'net.ipv4.conf.default.rp_filter', 0);
  await veth(n.sedge, IF.edgeToInet, `${s.inet.edge}/24`, n.inet, IF.inetToStrongSwan, `${s.inet.inet}/24`);
  await ip(n.sedge, ['route', 'add', 'default', 'via', s.inet.inet]);
  await ip(n.inet, ['route', 'add', `${s.pool}/32`, 'via', s.inet.edge]);
  await inNamespaceOk(n.sedge, 'nft', ['-f', '-'], {
    input: `table ip ${PREFIX}ssw {\n  chain egress {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname "${IF.edgeToInet}" snat to ${s.pool}\n  }\n}\n`,
  });
  // Replies to 10.0.1.0/24 (after de-NAT) go into ipsec0 by charon's table 220 route.
  return StrongSwan.start(ipsecOptions(n, 'edge', n.sedge, 'responder', { local: s.underlay.edge, remote: '%any' }, { local: ['0.0.0.0/0'], remote: [LAB.siteLan] }));
}

/** The namespace's cumulative UDP RcvbufErrors (/proc/net/snmp): datagrams dropped because a socket's buffer was full. */
async function udpRcvbufErrors(ns: string): Promise<number> {
  const lines = (await inNamespaceOk(ns, 'cat', ['/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Udp:'));
  if (lines.length < 2) return 0;
  const keys = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[keys.indexOf('RcvbufErrors')] ?? 0);
}

/** The daemon's underlay TUN (src/daemon/transports/underlay.ts): what the kernel routes to its endpoints. */
const UNDERLAY_TUN = DEFAULT_UNDERLAY_NAME;

/** A device's TX drops: for a TUN, packets the kernel had for the daemon while its queue (txqueuelen) was full. */
async function txDropped(ns: string, dev: string): Promise<number> {
  const r = await inNamespace(ns, 'ip', ['-j', '-s', 'link', 'show', 'dev', dev]);
  try {
    const [link] = JSON.parse(r.stdout) as Array<{ stats64?: { tx?: { dropped?: number } } }>;
    return link?.stats64?.tx?.dropped ?? 0;
  } catch {
    return 0;
  }
}

/** A device's queue length (txqueuelen), 0 when it is not there. */
async function deviceQueue(ns: string, dev: string): Promise<number> {
  const r = await inNamespace(ns, 'cat', [`/sys/class/net/${dev}/tx_queue_len`]);
  return r.code === 0 ? Number(r.stdout.trim()) : 0;
}

/** kernel-libipsec's TUN at each strongSwan site: what the site's kernel routes into the tunnel waits there for charon. */
const SITE_TUN = 'ipsec0';

/**
 * The tether side of "IPsec TCP, 1 stream": a strongSwan site connected to tether's IPsec onramp (tetherConfig():
 * `site-ipsec`, responding on LAB.siteD.edgeEndpoint), as a Path for tcpBulk().
 */
async function tetherIpsecPath(n: BenchNames, daemon: Started): Promise<Path> {
  const d = LAB.siteD;
  const swan = await ipsecSite(n, 'site-tether', n.tisite, n.tedge, { edge: `${d.underlay}.${LAB.edgeSiteHost}`, site: d.router, len: 24 }, d.edgeEndpoint);
  await swan.initiate();
  await checkForwards(n.tisite, 'strongSwan → tether');
  return { ns: n.tisite, what: 'strongSwan → tether', procs: [daemon], sitePids: [swan.processId ?? 0], inetLink: IF.inetToTether };
}

// ─── The tether edge ─────────────────────────────────────────────────────────────────────────────────

/**
 * defaultConfig() cut down to the bench: one interconnect site, one WireGuard site and one IPsec site (the lab's
 * site-d onramp: responder on LAB.siteD.edgeEndpoint, its IDs, PSK and proposals), all ARR, one pool address.
 */
function tetherConfig(n: BenchNames): TetherConfig {
  const cfg = defaultConfig();
  const lan = LAB.siteLan;
  const wgOnramp = cfg.onramps.find((o) => o.type === 'wireguard' && o.wireguard.device === 'wg-a');
  const icOnramp = cfg.onramps.find((o) => o.type === 'interconnect');
  const ipsecOnramp = labTopologyConfig({ ipsecSite: true }).onramps.find((o) => o.name === SITE_D_ONRAMP);
  if (!wgOnramp || wgOnramp.type !== 'wireguard' || !icOnramp || icOnramp.type !== 'interconnect') throw new Error('defaultConfig() changed: no wg-a peer or interconnect onramp');
  if (!ipsecOnramp || ipsecOnramp.type !== 'ipsec') throw new Error(`labTopologyConfig() changed: no ipsec onramp ${SITE_D_ONRAMP}`);
  const onramps: OnrampConfig[] = [
    { ...icOnramp, name: 'site-ic-link', site: 'site-ic', automatic_return_routing: true, interconnect: { link: IF.siteLink } },
    { ...wgOnramp, name: 'site-wg', site: 'site-wg', automatic_return_routing: true },
    {
      ...wgOnramp, name: 'site-wg2', site: 'site-wg2', automatic_return_routing: true,
      wireguard: { ...wgOnramp.wireguard, public_key: LAB_WIREGUARD_KEYS.siteC1Public, allowed_ips: [LAN2], endpoint: `${ADDR.tether.wg2.site}:${WG_PORT}` },
    },
    // No DPD: the strongSwan site answers none during a measurement (ipsecOptions), and the data keeps it alive.
    { ...ipsecOnramp, name: 'site-ipsec', site: 'site-ipsec', automatic_return_routing: true, ipsec: { ...ipsecOnramp.ipsec, dpd_seconds: 0 } },
  ];
  cfg.sites = [
    { name: 'site-ic', description: 'bench: interconnect site', prefixes: [lan] },
    { name: 'site-wg', description: 'bench: WireGuard site (same LAN)', prefixes: [lan] },
    { name: 'site-wg2', description: 'bench: second WireGuard site (the burst figure)', prefixes: [LAN2] },
    { name: 'site-ipsec', description: 'bench: IPsec site behind strongSwan (same LAN)', prefixes: [lan] },
  ];
  cfg.wireguard_devices = cfg.wireguard_devices.filter((d) => d.name === 'wg-a');
  cfg.onramps = onramps;
  cfg.routes = cfg.routes.filter((r) => r.next_hop === 'internet');
  if (!cfg.egress) throw new Error('defaultConfig() changed: no egress');
  cfg.egress.addresses = [ADDR.tether.pool];
  cfg.store.path = join(n.runDir, 'tether.db');
  cfg.api.token_file = join(n.runDir, 'api-token');
  // With lanes, info: the bench waits for the daemon's "lanes running" line (nothing is logged per packet).
  cfg.log.level = LANES > 1 ? 'info' : 'warn';
  if (BUSY_POLL_US !== '') cfg.daemon.busy_poll_us = Number(BUSY_POLL_US);
  if (FLOW_CACHE !== '') cfg.daemon.flow_cache = FLOW_CACHE === 'on';
  return cfg;
}

async function startTether(n: BenchNames): Promise<Started> {
  const configFile = join(n.runDir, 'tether.yaml');
  writeFileSync(configFile, `# written by bench/lab.ts (prefix ${PREFIX}); lab keys only\n${stringifyConfig(tetherConfig(n))}`, { mode: 0o600 });
  const daemon = startIn(n, 'tether', n.tedge, process.execPath, [DAEMON, 'run', '--no-api', '--lanes', String(LANES), '--config', configFile, ...(NO_GRO ? ['--no-gro'] : [])]);
  await waitUntil('the daemon\'s routes and rules', 30_000, async () => {
    const routes = await run('ip', ['-n', n.tedge, '-4', 'route', 'show']);
    const rules = await run('ip', ['-n', n.tedge, 'rule', 'show']);
    const tunnels = routes.stdout.includes(ADDR.tether.wg.endpoint) && routes.stdout.includes(LAB.siteD.edgeEndpoint);
    return routes.stdout.includes(ADDR.tether.pool) && tunnels && rules.stdout.includes(`iif ${IF.siteLink}`);
  }, daemon);
  // The other lanes open their queues after lane 0's routes exist: wait for the line that says they run.
  if (LANES > 1) await waitUntil('the daemon\'s lanes', 30_000, async () => readFileSync(daemon.log, 'utf8').includes('"lanes running"'), daemon);
  return daemon;
}

// ─── iperf3 ──────────────────────────────────────────────────────────────────────────────────────────

interface IperfSum { bytes: number; seconds: number; bits_per_second: number; packets?: number; lost_packets?: number; retransmits?: number }
interface IperfJson { error?: string; end?: { sum_sent?: IperfSum; sum_received?: IperfSum; sum?: IperfSum } }

/**
 * iperf3 -s (3.12) runs one test at a time and, between two, closes its listening socket and opens a new one
 * (cleanup_server, iperf_server_listen). The runs here follow one another at once, and a client that comes before the
 * server's process is done with the previous test (slow to be scheduled: see CHECK_SECONDS) is told "the server is
 * busy running a test", or is reset or refused with the old listener: seen in 2 of 20 runs of the checks, and over
 * loopback alone with a slow server (docs/PERFORMANCE.md). Those are tried again after a pause, a few times; a path
 * that does not forward times out instead.
 */
function serverBetweenTests(error: string): boolean {
  return error.startsWith('the server is busy') || (/^unable to (connect to server|receive control message)/.test(error) && /reset by peer|refused/.test(error));
}
const SERVER_BUSY_ATTEMPTS = 3;
const SERVER_BUSY_PAUSE_MS = 1000;

async function iperf(ns: string, extra: string[], what: string, seconds = SECONDS, host: string = HOST): Promise<IperfJson> {
  const cmd = ['-c', SERVER, '-B', host, '--connect-timeout', '3000', '-J', ...extra];
  for (let attempt = 1; ; attempt++) {
    const r = await inNamespace(ns, 'iperf3', cmd, { timeoutMs: (seconds + 20) * 1000 });
    let out: IperfJson;
    try {
      out = JSON.parse(r.stdout) as IperfJson;
    } catch {
      throw new Error(`${what}: \`${formatCommand('ip', ['netns', 'exec', ns, 'iperf3', ...cmd])}\` printed no JSON (exit ${r.code}): ${r.stderr.trim()}`);
    }
    if (out.error !== undefined && serverBetweenTests(out.error) && attempt < SERVER_BUSY_ATTEMPTS) {
      progress(`${what}: iperf3: ${out.error} (attempt ${attempt} of ${SERVER_BUSY_ATTEMPTS})`);
      await sleep(SERVER_BUSY_PAUSE_MS);
      continue;
    }
    if (out.error) throw new Error(`${what}: iperf3: ${out.error}`);
    return out;
  }
}

/**
 * The forwarding check runs for a time, not a byte count (it was `-n 256K`): iperf3's server (3.12,
 * iperf_handle_message_server, case TEST_END) closes its data streams as soon as the client's TEST_END arrives on the
 * control connection, without reading what they hold, and with -n the client sends TEST_END once its last byte is in
 * its own socket buffer. If the server process got no CPU between the first data segment and TEST_END (two cores, busy
 * with the client, the daemon and other jobs), it reported 0 bytes although its kernel had ACKed them all: the capture
 * on <p>-inet showed the data ACKed, then a RST (TcpExtTCPAbortOnClose: closed with unread data). The kernel edge
 * does the same when the server is slow to be scheduled (docs/PERFORMANCE.md, "The forwarding check").
 */
const CHECK_SECONDS = 1;
/**
 * What the server must have read for the path to count as forwarding both ways: far more than a sender puts out
 * without ACKs coming back (an initial window of 10 segments, ~14.6 KB, RFC 6928 §2), far less than a second of the
 * slowest path (strongSwan, ~0.2 Gbit/s).
 */
const CHECK_MIN_BYTES = 256 * 1024;

/** A transfer that must go through: the path forwards in both directions (data out, ACKs back). */
async function checkForwards(ns: string, what: string, host: string = HOST): Promise<void> {
  const r = await iperf(ns, ['-t', String(CHECK_SECONDS)], `checking ${what}`, CHECK_SECONDS, host);
  const got = r.end?.sum_received?.bytes ?? 0;
  const sent = r.end?.sum_sent?.bytes ?? 0;
  if (got === 0) throw new Error(`checking ${what}: the connection opened but no data arrived in ${CHECK_SECONDS} s (${sent} bytes sent)`);
  if (got < CHECK_MIN_BYTES) throw new Error(`checking ${what}: only ${got} bytes arrived in ${CHECK_SECONDS} s (${sent} sent, ${r.end?.sum_sent?.retransmits ?? 0} retransmitted): are the ACKs coming back?`);
}

/** CPU seconds (user + system) a process has used so far: /proc/PID/stat fields 14 and 15, in clock ticks. */
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux architecture we run on
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** One measurement: which site sends, which edge process(es) forward, and the Internet-side link it arrives on. */
interface Path {
  ns: string;
  what: string;
  /** The forwarding processes whose CPU is sampled (the daemon, wireguard-go), none for the kernel. */
  procs: Started[];
  /** Other forwarding processes by pid (a charon: started detached by the strongSwan rig). */
  pids?: number[];
  /** The sending site's own forwarding process (its charon), sampled apart: is the site the bottleneck? */
  sitePids?: number[];
  /** The interface of <p>-inet the edge's packets arrive on (counted by nftables there). */
  inetLink: string;
}

interface TcpResult { gbps: number; retransmits: number; cpu_percent: number; site_cpu_percent: number }
interface UdpResult { received_pps: number; forwarded_pps: number; sent_pps: number; cpu_percent: number }

async function measured<T>(path: Path, f: () => Promise<T>): Promise<{ value: T; cpuPercent: number; siteCpuPercent: number; seconds: number }> {
  const pidsCpu = (pids: number[] | undefined): number => (pids ?? []).reduce((a, pid) => a + cpuSeconds(pid), 0);
  const cpu = (): number => path.procs.reduce((a, p) => a + cpuSeconds(p.child.pid), 0) + pidsCpu(path.pids);
  const cpu0 = cpu();
  const site0 = pidsCpu(path.sitePids);
  const t0 = performance.now();
  const value = await f();
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = cpu();
  const site1 = pidsCpu(path.sitePids);
  return { value, cpuPercent: (100 * (cpu1 - cpu0)) / seconds, siteCpuPercent: (100 * (site1 - site0)) / seconds, seconds };
}

async function tcpBulk(path: Path, seconds = SECONDS): Promise<TcpResult> {
  progress(`${path.what}: TCP, ${STREAMS === 1 ? 'one stream' : `${STREAMS} streams`}, ${seconds} s`);
  const { value: r, cpuPercent, siteCpuPercent } = await measured(path, () => iperf(path.ns, ['-t', String(seconds), '-P', String(STREAMS)], path.what, seconds));
  const recv = r.end?.sum_received;
  return { gbps: (recv?.bits_per_second ?? 0) / 1e9, retransmits: r.end?.sum_sent?.retransmits ?? 0, cpu_percent: cpuPercent, site_cpu_percent: siteCpuPercent };
}

/** Packets counted on <p>-inet's side of each edge link (nftables), independent of how fast iperf3 -s reads. */
async function inetUdpCount(n: BenchNames, link: string): Promise<number> {
  const r = await inNamespaceOk(n.inet, 'nft', ['-j', 'list', 'chain', 'ip', `${PREFIX}count`, 'in']);
  type Expr = { counter?: { packets: number }; match?: { left?: { meta?: { key: string } }; right?: unknown } };
  const doc = JSON.parse(r) as { nftables: Array<{ rule?: { expr: Expr[] } }> };
  for (const { rule } of doc.nftables) {
    if (rule?.expr.some((e) => e.match?.left?.meta?.key === 'iifname' && e.match.right === link)) {
      return rule.expr.find((e) => e.counter !== undefined)?.counter?.packets ?? 0;
    }
  }
  return 0;
}

async function countInetUdp(n: BenchNames): Promise<void> {
  const rules = [IF.inetToTether, IF.inetToKernel].map((l) => `    iifname "${l}" udp dport 5201 counter`).join('\n');
  await inNamespaceOk(n.inet, 'nft', ['-f', '-'], { input: `table ip ${PREFIX}count {\n  chain in {\n    type filter hook prerouting priority 0; policy accept;\n${rules}\n  }\n}\n` });
}

/** 64-byte IPv4 packets as fast as iperf3 sends them: what the server received, and what the edge put on the wire. */
const UDP_PAYLOAD = 36;
async function udpSmall(n: BenchNames, path: Path): Promise<UdpResult> {
  progress(`${path.what}: UDP, 64-byte packets, ${UDP_FLOWS} flow(s), ${SECONDS} s`);
  const before = await inetUdpCount(n, path.inetLink);
  const { value: r, cpuPercent } = await measured(path, () => iperf(path.ns, ['-u', '-l', String(UDP_PAYLOAD), '-b', '0', '-t', String(SECONDS), '-P', String(UDP_FLOWS)], path.what));
  const forwarded = (await inetUdpCount(n, path.inetLink)) - before;
  const sent = r.end?.sum_sent;
  const recv = r.end?.sum_received;
  const received = recv ? (recv.packets ?? 0) - (recv.lost_packets ?? 0) : 0;
  return {
    received_pps: received / (recv?.seconds || SECONDS),
    forwarded_pps: forwarded / (sent?.seconds || SECONDS),
    sent_pps: (sent?.packets ?? 0) / (sent?.seconds || SECONDS),
    cpu_percent: cpuPercent,
  };
}

// ─── Burst and latency (issue 10) ────────────────────────────────────────────────────────────────────

/**
 * The sites' own TUN queues during the burst: above a whole burst, so that no site drops its own datagrams before
 * they reach its wireguard-go (the figure is the edges'); set before the first burst.
 */
const SITE_TUN_QUEUE = 4096;

/** Sum of a statistics counter over (namespace, device) pairs. */
async function statSum(pairs: Array<[string, string]>, stat: string): Promise<number> {
  let sum = 0;
  for (const [ns, dev] of pairs) sum += await deviceStat(ns, dev, stat);
  return sum;
}

async function burstFigure(n: BenchNames): Promise<BurstResult> {
  progress(`burst: two WireGuard sites x ${BURST_COUNT} datagrams of 64 bytes at once, ${BURST_ROUNDS} round(s) per edge`);
  const tSites: Array<[string, string]> = [[n.twsite, n.wgTetherSite], [n.twsite2, n.wgTetherSite2]];
  const kSites: Array<[string, string]> = [[n.kwsite, n.wgKernelSite], [n.kwsite2, n.wgKernelSite2]];
  for (const [ns, dev] of [...tSites, ...kSites]) await ip(ns, ['link', 'set', 'dev', dev, 'txqueuelen', String(Math.max(SITE_TUN_QUEUE, BURST_COUNT + 1))]);
  const egressTun = tetherConfig(n).egress?.interface ?? '';
  // Where a datagram can be lost, in path order: the site's TUN (toward its wireguard-go), the edge's link, the
  // edge (tether: the underlay TUN's queue toward the daemon, its writes into the egress TUN; wireguard-go: its UDP
  // socket's receive buffer, its writes into its TUN), the server's socket.
  const tether: Counters = {
    site_tun_tx_dropped: () => statSum(tSites, 'tx_dropped'),
    arrived_at_edge: () => statSum([[n.tedge, IF.wgLink], [n.tedge, IF.wgLink2]], 'rx_packets'),
    edge_underlay_tun_tx_dropped: () => deviceStat(n.tedge, UNDERLAY_TUN, 'tx_dropped'),
    edge_egress_tun_rx_dropped: () => deviceStat(n.tedge, egressTun, 'rx_dropped'),
    edge_udp_rcvbuf_errors: () => udpRcvbufErrors(n.tedge),
    server_udp_rcvbuf_errors: () => udpRcvbufErrors(n.inet),
  };
  const reference: Counters = {
    site_tun_tx_dropped: () => statSum(kSites, 'tx_dropped'),
    arrived_at_edge: () => statSum([[n.kedge, IF.wgLink], [n.kedge, IF.wgLink2]], 'rx_packets'),
    edge_wg_tun_rx_dropped: () => deviceStat(n.kedge, n.wgKernelEdge, 'rx_dropped'),
    edge_udp_rcvbuf_errors: () => udpRcvbufErrors(n.kedge),
    server_udp_rcvbuf_errors: () => udpRcvbufErrors(n.inet),
  };
  const tSenders: BurstSite[] = [{ ns: n.twsite, host: HOST, tag: 'a' }, { ns: n.twsite2, host: HOST2, tag: 'b' }];
  const kSenders: BurstSite[] = [{ ns: n.kwsite, host: HOST, tag: 'a' }, { ns: n.kwsite2, host: HOST2, tag: 'b' }];
  const t: BurstRound[] = [];
  const k: BurstRound[] = [];
  for (let i = 0; i < BURST_ROUNDS; i++) {
    k.push(await burstOnce(n.inet, SERVER, kSenders, BURST_COUNT, reference));
    t.push(await burstOnce(n.inet, SERVER, tSenders, BURST_COUNT, tether));
    progress(`burst round ${i + 1}: tether ${t[i].delivered}/${t[i].sent} ${JSON.stringify(t[i].counters)}; wireguard-go edge ${k[i].delivered}/${k[i].sent} ${JSON.stringify(k[i].counters)}`);
  }
  const tt = burstTotals(t);
  const kt = burstTotals(k);
  return { datagrams_per_site: BURST_COUNT, sites: 2, rounds: BURST_ROUNDS, tether: tt, reference: kt, tether_share: tt.share, reference_share: kt.share, ratio: ratio(tt.share, kt.share) };
}

async function latencyFigures(n: BenchNames, daemon: Started): Promise<LatencyResult> {
  progress(`latency: ping and TCP request/response, ${LATENCY_COUNT} each, interconnect and WireGuard, tether vs reference`);
  const stop = await startRrServer(n.inet, SERVER);
  // Each path warmed up first, then measured (LATENCY_WARMUP_ROUND_TRIPS).
  const measure = async (ns: string, host: string): Promise<LatencyFigures> => {
    await warmUp(ns, host, SERVER, LATENCY_WARMUP);
    return latencyOf(ns, host, SERVER, LATENCY_COUNT);
  };
  try {
    const kernelIc = await measure(n.ksite, HOST);
    // The daemon's CPU over its interconnect run: what busy polling (daemon.busy_poll_us) costs at ping's rate.
    await warmUp(n.tsite, HOST, SERVER, LATENCY_WARMUP);
    const cpuBefore = cpuSeconds(daemon.child.pid);
    const icStart = performance.now();
    const tetherIc = await latencyOf(n.tsite, HOST, SERVER, LATENCY_COUNT);
    const icCpuPercent = (100 * (cpuSeconds(daemon.child.pid) - cpuBefore)) / ((performance.now() - icStart) / 1000);
    const bare = await bareForwarder(n);
    const bareIc = await measure(n.bsite, BARE_HOST);
    await stopChild(bare, 'SIGTERM', 2000);
    const wgGo = await measure(n.kwsite, HOST);
    const tetherWg = await measure(n.twsite, HOST);
    const ic = added(tetherIc, kernelIc);
    return {
      count: LATENCY_COUNT,
      warmup_round_trips: LATENCY_WARMUP,
      ping_p50_us: tetherIc.ping_p50_us,
      ping_p99_us: tetherIc.ping_p99_us,
      tcp_rr_p50_us: tetherIc.tcp_rr_p50_us,
      tcp_rr_p99_us: tetherIc.tcp_rr_p99_us,
      added_p50_us: ic.per_pass_ping_p50_us,
      added_p99_us: ic.per_pass_ping_p99_us,
      busy_poll_us: BUSY_POLL_US === '' ? DEFAULT_BUSY_POLL_US : Number(BUSY_POLL_US),
      daemon_cpu_percent: icCpuPercent,
      interconnect: { tether: tetherIc, kernel: kernelIc, added: ic, bare: bareIc, bare_added: added(bareIc, kernelIc) },
      wireguard: { tether: tetherWg, wireguard_go: wgGo, added: added(tetherWg, wgGo) },
    };
  } finally {
    stop();
  }
}

/** CPU cores the edge spent per Gbit/s of a TCP run (CPU-seconds per gigabit); null without a rate or a process. */
function coresPerGbps(t: TcpResult): number | null {
  return t.gbps > 0 && t.cpu_percent > 0 ? t.cpu_percent / 100 / t.gbps : null;
}

// ─── Main ────────────────────────────────────────────────────────────────────────────────────────────

async function checkPrerequisites(): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new Error('needs root (namespaces, veths, TUN, nftables)');
  const missing: string[] = [];
  for (const [cmd, a, pkg] of [['iperf3', '--version', 'iperf3'], ['nft', '--version', 'nftables'], ['wireguard-go', '--version', 'wireguard-go'], ['wg', '--version', 'wireguard-tools'], ['ip', '-V', 'iproute2'], ['ping', '-V', 'iputils-ping'], ['python3', '--version', 'python3'], ['ethtool', '--version', 'ethtool'], ['cc', '--version', 'gcc']] as const) {
    try {
      if ((await run(cmd, [a], { timeoutMs: 10_000 })).code !== 0) missing.push(pkg);
    } catch {
      missing.push(pkg);
    }
  }
  if (missing.length > 0) throw new Error(`missing: ${missing.join(', ')} (apt-get install -y --no-install-recommends ${missing.join(' ')})`);
  const swan = missingStrongSwan();
  if (swan !== null) throw new Error(swan);
  if (!existsSync(DAEMON)) throw new Error(`${DAEMON} does not exist: build first (npx tsc -p tsconfig.build.json; npm run bench:lab does)`);
}

/** Issue 9's goal: tether's IPsec onramp at least twice the strongSwan (kernel-libipsec) edge. */
const IPSEC_GOAL = 2.0;
/** Issue 10's latency goal: at most 30 µs added per pass through tether, p50. */
const LATENCY_GOAL_US = 30;
/** Issue 10's throughput goals, each a ratio to the same-run reference. */
const INTERCONNECT_TCP_GOAL = 0.5;
const UDP64_FORWARDED_GOAL = 1.0;
const WIREGUARD_TCP_GOAL = 1.5;

function ratio(a: number, b: number): number {
  return b > 0 ? a / b : 0;
}

async function main(): Promise<void> {
  const names = benchNames(PREFIX);
  const t0 = Date.now();
  let cleaning: Promise<void> | null = null;
  let interrupted = false;
  const finish = (): Promise<void> => (cleaning ??= keep ? Promise.resolve() : cleanup(names).then(() => progress('cleaned up')));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = true;
      progress(`${sig}: cleaning up`);
      void finish().finally(() => process.exit(130));
    });
  }
  if (downOnly) {
    await cleanup(names);
    progress(`removed everything of prefix ${PREFIX}`);
    return;
  }
  try {
    await checkPrerequisites();
    progress(`removing leftovers of prefix ${PREFIX}`);
    await cleanup(names);
    started.length = 0;
    mkdirSync(names.runDir, { recursive: true, mode: 0o700 });

    progress(`building namespaces (${names.namespaces.length}) and veths`);
    await buildNetwork(names);
    const k = LAB_WIREGUARD_KEYS;
    startIn(names, 'iperf3-server', names.inet, 'iperf3', ['-s', '-B', SERVER]);

    progress('kernel edge: nftables zones, marks, SNAT; wireguard-go edge');
    await wireguardGo(names, 'wg-kernel-edge', names.kedge, names.wgKernelEdge, k.edgeBPrivate, WG_PORT);
    await inNamespaceOk(names.kedge, 'wg', ['set', names.wgKernelEdge, 'peer', k.siteBPublic, 'allowed-ips', LAB.siteLan]);
    await ip(names.kedge, ['link', 'set', names.wgKernelEdge, 'up']);
    await kernelEdge(names);
    await wireguardGo(names, 'wg-kernel-site', names.kwsite, names.wgKernelSite, k.siteBPrivate, WG_PORT);
    await wireguardSite(names.kwsite, names.wgKernelSite, k.edgeBPublic, ADDR.kernel.wg.edge);
    await inNamespaceOk(names.kwsite, 'wg', ['set', names.wgKernelSite, 'peer', k.edgeBPublic, 'persistent-keepalive', '25']);
    // The second site (the burst figure): a second peer of the wireguard-go edge, with a LAN of its own.
    await inNamespaceOk(names.kedge, 'wg', ['set', names.wgKernelEdge, 'peer', k.siteC2Public, 'allowed-ips', LAN2]);
    await wireguardGo(names, 'wg-kernel-site2', names.kwsite2, names.wgKernelSite2, k.siteC2Private, WG_PORT);
    await wireguardSite(names.kwsite2, names.wgKernelSite2, k.edgeBPublic, ADDR.kernel.wg.edge, HOST2);
    await inNamespaceOk(names.kwsite2, 'wg', ['set', names.wgKernelSite2, 'peer', k.edgeBPublic, 'persistent-keepalive', '25']);

    progress(`tether edge: ${DAEMON} run (interconnect, WireGuard and IPsec onramps, ARR on)`);
    const wgTether = await wireguardGo(names, 'wg-tether-site', names.twsite, names.wgTetherSite, k.siteAPrivate, WG_PORT);
    await wireguardSite(names.twsite, names.wgTetherSite, k.edgeAPublic, ADDR.tether.wg.endpoint);
    const wgTether2 = await wireguardGo(names, 'wg-tether-site2', names.twsite2, names.wgTetherSite2, k.siteC1Private, WG_PORT);
    await wireguardSite(names.twsite2, names.wgTetherSite2, k.edgeAPublic, ADDR.tether.wg.endpoint, HOST2);
    const daemon = await startTether(names);
    if (UNDERLAY_QUEUE !== '') await ip(names.tedge, ['link', 'set', 'dev', UNDERLAY_TUN, 'txqueuelen', UNDERLAY_QUEUE]);
    const underlayQueue = await deviceQueue(names.tedge, UNDERLAY_TUN);
    // Only now: an initiation sent before the daemon's route exists would wait in the ARP queue and cross the
    // edge's own (docs/LAB.md, "The peers").
    await inNamespaceOk(names.twsite, 'wg', ['set', names.wgTetherSite, 'peer', k.edgeAPublic, 'persistent-keepalive', '25']);
    await inNamespaceOk(names.twsite2, 'wg', ['set', names.wgTetherSite2, 'peer', k.edgeAPublic, 'persistent-keepalive', '25']);
    await waitUntil('WireGuard handshake site → tether', 20_000, () => handshakeDone(names.twsite, names.wgTetherSite), wgTether);
    await waitUntil('WireGuard handshake second site → tether', 20_000, () => handshakeDone(names.twsite2, names.wgTetherSite2), wgTether2);
    await waitUntil('WireGuard handshake site → wireguard-go edge', 20_000, () => handshakeDone(names.kwsite, names.wgKernelSite));
    await waitUntil('WireGuard handshake second site → wireguard-go edge', 20_000, () => handshakeDone(names.kwsite2, names.wgKernelSite2));
    await waitUntil('iperf3 server', 10_000, async () => (await inNamespace(names.inet, 'ss', ['-ltn'])).stdout.includes(':5201'));

    const ipsecOn = want('ipsec');
    let sswEdge: StrongSwan | null = null;
    if (ipsecOn) {
      progress('IPsec reference: strongSwan site → strongSwan edge (kernel-libipsec both ends, kernel SNAT)');
      await strongSwanRunDir(`bench-${PREFIX}`);
      sswEdge = await strongSwanEdge(names);
    }
    const sswSite = sswEdge === null ? null : await ipsecSite(names, 'site', names.ssite, names.sedge, ADDR.strongswan.underlay, ADDR.strongswan.underlay.edge);
    await sswSite?.initiate();

    progress('checking that every path forwards');
    const paths = [
      [names.tsite, 'tether interconnect'], [names.ksite, 'kernel edge'],
      [names.twsite, 'tether WireGuard'], [names.kwsite, 'wireguard-go edge'],
    ] as const;
    for (const [ns, what] of paths) await checkForwards(ns, what);
    await checkForwards(names.twsite2, 'tether WireGuard, second site', HOST2);
    await checkForwards(names.kwsite2, 'wireguard-go edge, second site', HOST2);
    if (ipsecOn) await checkForwards(names.ssite, 'strongSwan → strongSwan edge');
    const tetherIpsec = ipsecOn ? await tetherIpsecPath(names, daemon) : null;
    if (daemon.exited) throw new Error(`the tether daemon exited:\n${logTail(daemon.log, 15)}`);

    // Alternating kernel and tether, so that a noisy neighbour hurts both more evenly.
    await countInetUdp(names);
    const kernelEdgeWg = started.find((s) => s.name === 'wg-kernel-edge');
    const kernelIc: Path = { ns: names.ksite, what: 'kernel edge', procs: [], inetLink: IF.inetToKernel };
    const tetherIc: Path = { ns: names.tsite, what: 'tether interconnect', procs: [daemon], inetLink: IF.inetToTether };
    const kernelWg: Path = { ns: names.kwsite, what: 'wireguard-go → wireguard-go edge', procs: kernelEdgeWg ? [kernelEdgeWg] : [], inetLink: IF.inetToKernel };
    const tetherWg: Path = { ns: names.twsite, what: 'wireguard-go → tether', procs: [daemon], inetLink: IF.inetToTether };
    const NO_TCP: TcpResult = { gbps: 0, retransmits: 0, cpu_percent: 0, site_cpu_percent: 0 };
    const NO_UDP: UdpResult = { received_pps: 0, forwarded_pps: 0, sent_pps: 0, cpu_percent: 0 };
    const icOn = want('interconnect');
    const wgOn = want('wireguard');
    const kernelTcp = icOn ? await tcpBulk(kernelIc) : NO_TCP;
    const tetherTcp = icOn ? await tcpBulk(tetherIc) : NO_TCP;
    const kernelUdp = icOn ? await udpSmall(names, kernelIc) : NO_UDP;
    const tetherUdp = icOn ? await udpSmall(names, tetherIc) : NO_UDP;
    const wgGoTcp = wgOn ? await tcpBulk(kernelWg) : NO_TCP;
    const wgTetherTcp = wgOn ? await tcpBulk(tetherWg) : NO_TCP;
    let sswTcp = NO_TCP;
    let ipsecTetherTcp = NO_TCP;
    let sswRcvbufErrors = 0, sswSiteTunDrops = 0, tetherRcvbufErrors = 0, tetherTunDrops = 0, tetherSiteTunDrops = 0;
    let sswSa: Awaited<ReturnType<StrongSwan['established']>> | null = null;
    if (sswEdge !== null && sswSite !== null && tetherIpsec !== null) {
      const sswPath: Path = { ns: names.ssite, what: 'strongSwan → strongSwan edge', procs: [], pids: [sswEdge.processId ?? 0], sitePids: [sswSite.processId ?? 0], inetLink: IF.inetToStrongSwan };
      const rcvbuf0 = await udpRcvbufErrors(names.sedge);
      const sswSiteTun0 = await txDropped(names.ssite, SITE_TUN);
      sswTcp = await tcpBulk(sswPath, IPSEC_SECONDS);
      sswRcvbufErrors = (await udpRcvbufErrors(names.sedge)) - rcvbuf0;
      sswSiteTunDrops = (await txDropped(names.ssite, SITE_TUN)) - sswSiteTun0;
      sswSa = await sswSite.established();
      const rcvbufT0 = await udpRcvbufErrors(names.tedge);
      const tunDrops0 = await txDropped(names.tedge, UNDERLAY_TUN);
      const tetherSiteTun0 = await txDropped(names.tisite, SITE_TUN);
      ipsecTetherTcp = await tcpBulk(tetherIpsec, IPSEC_SECONDS);
      tetherRcvbufErrors = (await udpRcvbufErrors(names.tedge)) - rcvbufT0;
      tetherTunDrops = (await txDropped(names.tedge, UNDERLAY_TUN)) - tunDrops0;
      tetherSiteTunDrops = (await txDropped(names.tisite, SITE_TUN)) - tetherSiteTun0;
    }
    const burst = want('burst') ? await burstFigure(names) : null;
    const latency = want('latency') ? await latencyFigures(names, daemon) : null;
    if (daemon.exited) throw new Error(`the tether daemon exited during the run:\n${logTail(daemon.log, 15)}`);
    const counters = await kernelCounters(names);

    const icFigures = (tcp: TcpResult, udp: UdpResult, withCpu: boolean): Record<string, number | null> => ({
      tcp_gbps: tcp.gbps,
      tcp_retransmits: tcp.retransmits,
      tcp_edge_cpu_percent: withCpu ? tcp.cpu_percent : null,
      udp64_received_pps: udp.received_pps,
      udp64_forwarded_pps: udp.forwarded_pps,
      udp64_sent_pps: udp.sent_pps,
      udp64_edge_cpu_percent: withCpu ? udp.cpu_percent : null,
    });
    const wgFigures = (tcp: TcpResult): Record<string, number> => ({ tcp_gbps: tcp.gbps, tcp_retransmits: tcp.retransmits, edge_cpu_percent: tcp.cpu_percent });
    const result: BenchResult = {
      bench: 'lab',
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, kernel: release(), node: process.version },
      seconds_per_measurement: SECONDS,
      lanes: LANES,
      tcp_streams: STREAMS,
      udp64_flows: UDP_FLOWS,
      sections: [...ONLY],
      gro: !NO_GRO,
      tether_underlay_queue_packets: underlayQueue,
      interconnect: {
        tether: icFigures(tetherTcp, tetherUdp, true),
        kernel: icFigures(kernelTcp, kernelUdp, false),
        ratio_tcp: ratio(tetherTcp.gbps, kernelTcp.gbps),
        ratio_udp64_received: ratio(tetherUdp.received_pps, kernelUdp.received_pps),
        ratio_udp64_forwarded: ratio(tetherUdp.forwarded_pps, kernelUdp.forwarded_pps),
      },
      wireguard: {
        tether: wgFigures(wgTetherTcp),
        wireguard_go: wgFigures(wgGoTcp),
        ratio_tcp: ratio(wgTetherTcp.gbps, wgGoTcp.gbps),
      },
      ipsec: {
        seconds: IPSEC_SECONDS,
        algorithms: sswSa ? `${sswSa.ike.algorithms} | ${sswSa.child.algorithms}` : null,
        tether: { ...wgFigures(ipsecTetherTcp), site_cpu_percent: ipsecTetherTcp.site_cpu_percent, udp_rcvbuf_errors: tetherRcvbufErrors, underlay_tun_drops: tetherTunDrops, site_tun_drops: tetherSiteTunDrops },
        strongswan_edge: { ...wgFigures(sswTcp), site_cpu_percent: sswTcp.site_cpu_percent, udp_rcvbuf_errors: sswRcvbufErrors, site_tun_drops: sswSiteTunDrops },
        ratio_tcp: ratio(ipsecTetherTcp.gbps, sswTcp.gbps),
      },
      goals: {
        interconnect_tcp_vs_kernel: { goal: INTERCONNECT_TCP_GOAL, met: ratio(tetherTcp.gbps, kernelTcp.gbps) >= INTERCONNECT_TCP_GOAL },
        interconnect_udp64_forwarded_vs_kernel: { goal: UDP64_FORWARDED_GOAL, met: ratio(tetherUdp.forwarded_pps, kernelUdp.forwarded_pps) >= UDP64_FORWARDED_GOAL },
        wireguard_tcp_vs_wireguard_go: { goal: WIREGUARD_TCP_GOAL, met: ratio(wgTetherTcp.gbps, wgGoTcp.gbps) >= WIREGUARD_TCP_GOAL },
        ipsec_tcp_vs_strongswan_edge: { goal: IPSEC_GOAL, met: ratio(ipsecTetherTcp.gbps, sswTcp.gbps) >= IPSEC_GOAL },
        ...(burst !== null ? { burst_share_vs_reference: { goal: 1.0, met: burst.tether_share >= burst.reference_share } } : {}),
        ...(latency !== null ? { latency_added_p50_us: { goal: LATENCY_GOAL_US, met: latency.added_p50_us <= LATENCY_GOAL_US } } : {}),
      },
      burst,
      latency,
      edge_cpu_cores_per_gbps: {
        interconnect_tether: coresPerGbps(tetherTcp),
        wireguard_tether: coresPerGbps(wgTetherTcp),
        wireguard_go: coresPerGbps(wgGoTcp),
        ipsec_tether: coresPerGbps(ipsecTetherTcp),
        ipsec_strongswan: coresPerGbps(sswTcp),
      },
      kernel_edge_nft_counters: counters,
      wall_seconds: 0,
    };
    result.wall_seconds = (Date.now() - t0) / 1000;
    await finish();
    result.wall_seconds = (Date.now() - t0) / 1000;
    if (keep) progress(`kept: namespaces ${names.namespaces.join(' ')}, logs in ${names.runDir}; remove with --down`);
    if (json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      printTable(result);
    }
  } catch (e) {
    if (interrupted) return; // the signal handler cleans up and exits; what broke was our own cleanup
    progress(`FAILED: ${(e as Error).message}`);
    const daemon = started.find((s) => s.name === 'tether');
    if (daemon && !(e as Error).message.includes(daemon.log)) progress(`last lines of the daemon's log:\n${logTail(daemon.log, 10)}`);
    await finish().catch((c: Error) => progress(`cleanup failed: ${c.message}`));
    process.exitCode = 1;
  }
}

interface BenchResult {
  bench: 'lab';
  date: string;
  machine: { cpus: number; kernel: string; node: string };
  seconds_per_measurement: number;
  /** false with --no-gro: the daemon wrote its TUNs without coalescing (the before of an A/B). */
  gro: boolean;
  /** tether's lanes (--lanes), and iperf3's parallel flows for TCP (--streams) and 64-byte UDP (--udp-flows). */
  lanes: number;
  tcp_streams: number;
  udp64_flows: number;
  /** What was measured (--only); the others report zeros. */
  sections: string[];
  /** The txqueuelen of tether's underlay TUN during the run. */
  tether_underlay_queue_packets: number;
  interconnect: {
    tether: Record<string, number | null>;
    kernel: Record<string, number | null>;
    ratio_tcp: number;
    ratio_udp64_received: number;
    ratio_udp64_forwarded: number;
  };
  wireguard: { tether: Record<string, number>; wireguard_go: Record<string, number>; ratio_tcp: number };
  ipsec: { seconds: number; algorithms: string | null; tether: Record<string, number>; strongswan_edge: Record<string, number>; ratio_tcp: number };
  goals: Record<string, { goal: number; met: boolean }>;
  burst: BurstResult | null;
  latency: LatencyResult | null;
  edge_cpu_cores_per_gbps: Record<string, number | null>;
  kernel_edge_nft_counters: Record<string, number>;
  wall_seconds: number;
}

type BurstTotals = ReturnType<typeof burstTotals>;
interface BurstResult {
  datagrams_per_site: number;
  sites: number;
  rounds: number;
  tether: BurstTotals;
  reference: BurstTotals;
  tether_share: number;
  reference_share: number;
  ratio: number;
}
interface LatencyResult {
  count: number;
  /** Request/response round trips and flood pings through each path before it was measured (--latency-warmup). */
  warmup_round_trips: number;
  /** tether's interconnect path (the headline figures); added_*: per pass, half the round trip's difference to the kernel edge. */
  ping_p50_us: number;
  ping_p99_us: number;
  tcp_rr_p50_us: number;
  tcp_rr_p99_us: number;
  added_p50_us: number;
  added_p99_us: number;
  /** The daemon's busy-poll budget in this run (daemon.busy_poll_us, --busy-poll-us), and its CPU over the interconnect run (ping + request/response). */
  busy_poll_us: number;
  daemon_cpu_percent: number;
  /** bare, bare_added: the same through bench/bare-forwarder.c (a process that only moves packets between two TUNs). */
  interconnect: { tether: LatencyFigures; kernel: LatencyFigures; added: Record<string, number>; bare: LatencyFigures; bare_added: Record<string, number> };
  wireguard: { tether: LatencyFigures; wireguard_go: LatencyFigures; added: Record<string, number> };
}

interface Row { what: string; tether: string; reference: string; ratio: string; goal: string }

function printTable(r: BenchResult): void {
  const gbps = (v: number | null): string => `${(v ?? 0).toFixed(2)} Gbit/s`;
  const kpps = (v: number | null): string => `${((v ?? 0) / 1000).toFixed(1)} k pps`;
  const cpu = (v: number | null): string => `${(v ?? 0).toFixed(0)} %`;
  const t = r.interconnect.tether;
  const k = r.interconnect.kernel;
  const wt = r.wireguard.tether;
  const wg = r.wireguard.wireguard_go;
  const it = r.ipsec.tether;
  const ss = r.ipsec.strongswan_edge;
  const has = (x: string): boolean => r.sections.includes(x);
  const rows: Row[] = [];
  if (has('interconnect')) rows.push(
    { what: 'interconnect TCP, 1 stream', tether: gbps(t.tcp_gbps), reference: `kernel ${gbps(k.tcp_gbps)}`, ratio: r.interconnect.ratio_tcp.toFixed(3), goal: `>= ${INTERCONNECT_TCP_GOAL}` },
    { what: '  edge CPU (daemon)', tether: cpu(t.tcp_edge_cpu_percent), reference: '', ratio: '', goal: '' },
    { what: 'interconnect UDP 64 B, server received', tether: kpps(t.udp64_received_pps), reference: `kernel ${kpps(k.udp64_received_pps)}`, ratio: r.interconnect.ratio_udp64_received.toFixed(3), goal: '' },
    { what: '  forwarded onto the Internet link', tether: kpps(t.udp64_forwarded_pps), reference: `kernel ${kpps(k.udp64_forwarded_pps)}`, ratio: r.interconnect.ratio_udp64_forwarded.toFixed(3), goal: `>= ${UDP64_FORWARDED_GOAL}` },
    { what: '  sent by iperf3', tether: kpps(t.udp64_sent_pps), reference: `kernel ${kpps(k.udp64_sent_pps)}`, ratio: '', goal: '' },
    { what: '  edge CPU (daemon)', tether: cpu(t.udp64_edge_cpu_percent), reference: '', ratio: '', goal: '' },
  );
  if (has('wireguard')) rows.push(
    { what: 'WireGuard TCP, 1 stream', tether: gbps(wt.tcp_gbps), reference: `wireguard-go ${gbps(wg.tcp_gbps)}`, ratio: r.wireguard.ratio_tcp.toFixed(3), goal: `>= ${WIREGUARD_TCP_GOAL}` },
    { what: '  edge CPU (daemon / wireguard-go)', tether: cpu(wt.edge_cpu_percent), reference: cpu(wg.edge_cpu_percent), ratio: '', goal: '' },
  );
  if (has('ipsec')) rows.push(
    {
      what: `IPsec TCP, 1 stream (${r.ipsec.seconds} s)`, tether: gbps(it.tcp_gbps), reference: `strongSwan ${gbps(ss.tcp_gbps)}`,
      ratio: r.ipsec.ratio_tcp.toFixed(3), goal: `>= ${IPSEC_GOAL}`,
    },
    { what: '  edge CPU (daemon / charon)', tether: cpu(it.edge_cpu_percent), reference: cpu(ss.edge_cpu_percent), ratio: '', goal: '' },
    { what: '  site CPU (its charon)', tether: cpu(it.site_cpu_percent), reference: cpu(ss.site_cpu_percent), ratio: '', goal: '' },
    { what: '  drops at the edge: UDP receive buffer', tether: String(it.udp_rcvbuf_errors), reference: String(ss.udp_rcvbuf_errors), ratio: '', goal: '' },
    { what: '  drops at the edge: underlay TUN queue', tether: String(it.underlay_tun_drops), reference: '', ratio: '', goal: '' },
    { what: '  drops at the site: ipsec0 TUN queue', tether: String(it.site_tun_drops), reference: String(ss.site_tun_drops), ratio: '', goal: '' },
  );
  const us = (v: number): string => `${v.toFixed(0)} µs`;
  const b = r.burst;
  if (b !== null) {
    const pct = (v: number): string => `${(v * 100).toFixed(1)} %`;
    const c = (x: BurstTotals, key: string): string => (key in x.counters ? String(x.counters[key]) : '');
    rows.push(
      { what: `burst: 2 WireGuard sites x ${b.datagrams_per_site} x 64 B, ${b.rounds} round(s), delivered (underlay queue ${r.tether_underlay_queue_packets})`, tether: pct(b.tether_share), reference: `wireguard-go ${pct(b.reference_share)}`, ratio: b.ratio.toFixed(3), goal: '>= 1.0' },
      { what: '  per round', tether: b.tether.shares.map(pct).join(' '), reference: b.reference.shares.map(pct).join(' '), ratio: '', goal: '' },
      { what: '  arrived at the edge / sent', tether: `${c(b.tether, 'arrived_at_edge')}/${b.tether.sent}`, reference: `${c(b.reference, 'arrived_at_edge')}/${b.reference.sent}`, ratio: '', goal: '' },
      { what: '  dropped: sites\' TUN queues', tether: c(b.tether, 'site_tun_tx_dropped'), reference: c(b.reference, 'site_tun_tx_dropped'), ratio: '', goal: '' },
      { what: '  dropped: edge underlay TUN queue / UDP socket', tether: c(b.tether, 'edge_underlay_tun_tx_dropped'), reference: c(b.reference, 'edge_udp_rcvbuf_errors'), ratio: '', goal: '' },
      { what: '  dropped: edge writes into its TUN', tether: c(b.tether, 'edge_egress_tun_rx_dropped'), reference: c(b.reference, 'edge_wg_tun_rx_dropped'), ratio: '', goal: '' },
      { what: '  dropped: server socket', tether: c(b.tether, 'server_udp_rcvbuf_errors'), reference: c(b.reference, 'server_udp_rcvbuf_errors'), ratio: '', goal: '' },
    );
  }
  const l = r.latency;
  if (l !== null) {
    const ic = l.interconnect;
    const wl = l.wireguard;
    rows.push(
      { what: `latency, interconnect: ping RTT p50 / p99 (${l.count})`, tether: `${us(ic.tether.ping_p50_us)} / ${us(ic.tether.ping_p99_us)}`, reference: `kernel ${us(ic.kernel.ping_p50_us)} / ${us(ic.kernel.ping_p99_us)}`, ratio: '', goal: '' },
      { what: '  TCP request/response RTT p50 / p99', tether: `${us(ic.tether.tcp_rr_p50_us)} / ${us(ic.tether.tcp_rr_p99_us)}`, reference: `kernel ${us(ic.kernel.tcp_rr_p50_us)} / ${us(ic.kernel.tcp_rr_p99_us)}`, ratio: '', goal: '' },
      { what: '  added per pass (ping) p50 / p99', tether: `${us(l.added_p50_us)} / ${us(l.added_p99_us)}`, reference: '', ratio: '', goal: `p50 <= ${LATENCY_GOAL_US} µs` },
      { what: '  added per pass (TCP RR) p50 / p99', tether: `${us(ic.added.tcp_rr_p50_us / 2)} / ${us(ic.added.tcp_rr_p99_us / 2)}`, reference: '', ratio: '', goal: '' },
      { what: 'latency, bare C TUN-to-TUN forwarder: ping RTT p50 / p99', tether: '', reference: `bare ${us(ic.bare.ping_p50_us)} / ${us(ic.bare.ping_p99_us)}`, ratio: '', goal: '' },
      { what: '  TCP request/response RTT p50 / p99', tether: '', reference: `bare ${us(ic.bare.tcp_rr_p50_us)} / ${us(ic.bare.tcp_rr_p99_us)}`, ratio: '', goal: '' },
      { what: '  added per pass over the kernel: ping, TCP RR p50 / p99', tether: '', reference: `bare ${us(ic.bare_added.per_pass_ping_p50_us)} / ${us(ic.bare_added.per_pass_ping_p99_us)}, ${us(ic.bare_added.tcp_rr_p50_us / 2)} / ${us(ic.bare_added.tcp_rr_p99_us / 2)}`, ratio: '', goal: '' },
      { what: 'latency, WireGuard: ping RTT p50 / p99', tether: `${us(wl.tether.ping_p50_us)} / ${us(wl.tether.ping_p99_us)}`, reference: `wireguard-go ${us(wl.wireguard_go.ping_p50_us)} / ${us(wl.wireguard_go.ping_p99_us)}`, ratio: '', goal: '' },
      { what: '  TCP request/response RTT p50 / p99', tether: `${us(wl.tether.tcp_rr_p50_us)} / ${us(wl.tether.tcp_rr_p99_us)}`, reference: `wireguard-go ${us(wl.wireguard_go.tcp_rr_p50_us)} / ${us(wl.wireguard_go.tcp_rr_p99_us)}`, ratio: '', goal: '' },
    );
  }
  const cpg = r.edge_cpu_cores_per_gbps;
  const cores = (v: number | null | undefined): string => (v === null || v === undefined ? '' : `${v.toFixed(2)} cores`);
  rows.push(
    { what: 'edge CPU per Gbit/s (TCP): interconnect', tether: cores(cpg.interconnect_tether), reference: 'kernel (not sampled)', ratio: '', goal: '' },
    { what: '  WireGuard', tether: cores(cpg.wireguard_tether), reference: `wireguard-go ${cores(cpg.wireguard_go)}`, ratio: '', goal: '' },
    { what: '  IPsec', tether: cores(cpg.ipsec_tether), reference: `charon ${cores(cpg.ipsec_strongswan)}`, ratio: '', goal: '' },
  );
  const head: Row = { what: '', tether: 'tether', reference: 'reference', ratio: 'ratio', goal: 'goal' };
  const all = [head, ...rows];
  const w = (key: keyof Row): number => Math.max(...all.map((x) => x[key].length));
  const line = (x: Row): string => `${x.what.padEnd(w('what'))}  ${x.tether.padStart(w('tether'))}  ${x.reference.padStart(w('reference'))}  ${x.ratio.padStart(w('ratio'))}  ${x.goal}`.trimEnd();
  process.stdout.write(`${all.map(line).join('\n')}\n`);
  process.stdout.write(`(${r.machine.cpus} CPUs, kernel ${r.machine.kernel}, Node ${r.machine.node}; ${r.seconds_per_measurement} s per measurement, ${r.wall_seconds.toFixed(0)} s in all; tether lanes ${r.lanes}, TCP streams ${r.tcp_streams}, UDP flows ${r.udp64_flows})\n`);
}

void main();
