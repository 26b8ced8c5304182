/**
 * The network-namespace lab (docs/LAB.md): builds the network around the edge, then starts the
 * daemon inside the edge namespace. The lab owns namespaces, veth links, addresses, proxy ARP, forwarding,
 * per-namespace routes, the site peers (wireguard-go + wg; scapy GRE is run on demand by helpers.ts), the
 * servers, the edge's config file and the daemon process. The daemon owns only its TUNs and the routes / rules
 * that point at them (docs/UNDERLAY.md).
 *
 *   labUp:   ensureLabTools → labDown(same prefix: leftovers of a dead run) → namespaces → sysctls → veths
 *            → addresses and routes (site-c's router and LAN: site-c.ts) → wireguard-go per WireGuard tunnel
 *            (site-c has two) → servers → tether.yaml → daemon → ready
 *   labDown: daemon first (SIGTERM, then SIGKILL), then every process left in the lab's namespaces, namespaces,
 *            wireguard-go sockets, the run directory. Idempotent; works from nothing but the prefix.
 *
 * Processes are started detached (they outlive a `tether lab up` CLI process) with their output in the run
 * directory; their pids are recorded in state.json, and labDown also kills whatever `ip netns pids` finds, so a
 * run that died halfway is still cleaned up.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringifyConfig, type TetherConfig } from '../config/index.js';
import { defaultConfig, LAB_WIREGUARD_KEYS, labTopologyConfig, SITE_C_ONRAMPS } from './config.js';
import { inNamespaceOk, ip, run, sleep, sysctl } from './exec.js';
import { CHARON } from './strongswan.js';
import { nodeTsArgs, REPO_ROOT, labSourceFile, TETHER_CLI } from './paths.js';
import { buildSiteC, siteCDefaultRoute } from './site-c.js';
import { buildSiteD, removeSiteDStrongSwan, siteDStrongSwan, startSiteDStrongSwan } from './site-d.js';
import { DEFAULT_PREFIX, LAB, labNames, LINKS, WIREGUARD_SOCKET_DIR, type LabNames } from './topology.js';

// ─── Prerequisites ───────────────────────────────────────────────────────────────────────────────────

interface ToolCheck {
  what: string;
  debianPackage: string;
  command: string;
  args: string[];
}

const TOOL_CHECKS: readonly ToolCheck[] = [
  { what: 'ip (iproute2)', debianPackage: 'iproute2', command: 'ip', args: ['-V'] },
  { what: 'wireguard-go', debianPackage: 'wireguard-go', command: 'wireguard-go', args: ['--version'] },
  { what: 'wg', debianPackage: 'wireguard-tools', command: 'wg', args: ['--version'] },
  { what: 'sysctl', debianPackage: 'procps', command: 'sysctl', args: ['-n', 'kernel.ostype'] },
  { what: 'scapy for /usr/bin/python3', debianPackage: 'python3-scapy', command: '/usr/bin/python3', args: ['-c', 'import scapy'] },
];

export interface LabToolsReport {
  missing: Array<{ what: string; debianPackage: string; detail: string }>;
}

export class LabToolsError extends Error {
  readonly missing: LabToolsReport['missing'];
  constructor(missing: LabToolsReport['missing'], notRoot: boolean) {
    const lines: string[] = [];
    if (notRoot) lines.push('the lab needs root (network namespaces, veth links, TUN devices): run it as root');
    if (missing.length > 0) {
      lines.push(`missing: ${missing.map((m) => `${m.what} (Debian package ${m.debianPackage})`).join(', ')}`);
      const pkgs = [...new Set(missing.map((m) => m.debianPackage))].join(' ');
      lines.push(`install with: apt-get install -y --no-install-recommends ${pkgs}`);
    }
    super(`tether lab: ${lines.join('\n  ')}`);
    this.name = 'LabToolsError';
    this.missing = missing;
  }
}

/** Checks root, /dev/net/tun and every tool the lab runs; throws LabToolsError naming the missing Debian packages. */
export async function ensureLabTools(): Promise<void> {
  const missing: LabToolsReport['missing'] = [];
  for (const t of TOOL_CHECKS) {
    let detail = '';
    try {
      const r = await run(t.command, t.args, { timeoutMs: 15_000 });
      if (r.code === 0) continue;
      detail = r.stderr.trim().split('\n').pop() ?? `exit ${r.code}`;
    } catch (e) {
      detail = (e as Error).message;
    }
    missing.push({ what: t.what, debianPackage: t.debianPackage, detail });
  }
  if (!existsSync('/dev/net/tun')) missing.push({ what: '/dev/net/tun (TUN driver)', debianPackage: 'kernel module tun', detail: 'modprobe tun' });
  const notRoot = typeof process.getuid === 'function' && process.getuid() !== 0;
  if (missing.length > 0 || notRoot) throw new LabToolsError(missing, notRoot);
}

// ─── State kept in the run directory ─────────────────────────────────────────────────────────────────

export interface LabProcess {
  /** 'edge' (the daemon), 'wg-a', 'wg-b', 'wg-c1', 'wg-c2', 'ssw-d' (site-d's charon), 'inet-servers', 'dc-servers'. */
  name: string;
  namespace: string;
  pid: number;
  log: string;
  command: string[];
}

export interface LabState {
  prefix: string;
  createdAt: string;
  runDir: string;
  configFile: string;
  processes: LabProcess[];
}

function statePath(names: LabNames): string {
  return join(names.runDir, 'state.json');
}

function readState(names: LabNames): LabState | null {
  try {
    return JSON.parse(readFileSync(statePath(names), 'utf8')) as LabState;
  } catch {
    return null;
  }
}

function writeState(state: LabState): void {
  writeFileSync(join(state.runDir, 'state.json'), JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
}

// ─── Processes ───────────────────────────────────────────────────────────────────────────────────────

/** True while the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/PID/stat: "pid (comm) S ..." — the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM, wait up to graceMs, then SIGKILL. */
async function stopProcess(pid: number, graceMs: number): Promise<void> {
  if (!isAlive(pid)) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await sleep(50);
  }
  try { process.kill(pid, 'SIGKILL'); } catch { return; }
  for (let i = 0; i < 40 && isAlive(pid); i++) await sleep(25);
}

/** Starts `command args` detached inside a namespace, stdout and stderr appended to `log`. */
function startInNamespace(name: string, ns: string, command: string, args: string[], log: string, env?: Record<string, string>): LabProcess {
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn('ip', ['netns', 'exec', ns, command, ...args], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['ignore', fd, fd],
      env: env ? { ...process.env, ...env } : process.env,
    });
    child.on('error', () => { /* reported by the readiness check through the log and the dead pid */ });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${name}: ip netns exec ${ns} ${command}`);
    // `ip netns exec` execs the command after setns: the pid is the command's own.
    return { name, namespace: ns, pid: child.pid, log, command: [command, ...args] };
  } finally {
    closeSync(fd);
  }
}

export function logTail(file: string, lines = 20): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.split('\n').filter((l) => l !== '').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `check` until it returns true; throws with `describe()` when the process died or time ran out. */
async function waitFor(p: LabProcess, what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    const dead = !isAlive(p.pid);
    if (dead || Date.now() > deadline) {
      const why = dead ? 'exited' : `not ready after ${timeoutMs} ms`;
      throw new Error(`${p.name} (${p.command.join(' ')} in namespace ${p.namespace}) ${why} waiting for ${what}; last lines of ${p.log}:\n${logTail(p.log)}`);
    }
    await sleep(100);
  }
}

// ─── Down ────────────────────────────────────────────────────────────────────────────────────────────

export interface LabOptions {
  /** Per-run prefix of namespace and wireguard-go names. Default 'tt'. */
  prefix?: string;
}

async function existingNamespaces(): Promise<Set<string>> {
  const r = await run('ip', ['netns', 'list']);
  // Lines look like "tt-edge (id: 3)" or "tt-edge".
  return new Set(r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((n) => n !== undefined && n !== ''));
}

async function namespacePids(ns: string): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', ns]);
  if (r.code !== 0) return [];
  return r.stdout.split('\n').map((l) => Number(l.trim())).filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid);
}

/**
 * Removes everything a lab with this prefix made: the daemon first (SIGTERM, then SIGKILL), every other process
 * in its namespaces, the namespaces (with their veths), wireguard-go sockets and the run directory. Safe to call
 * when nothing exists.
 */
export async function labDown(opts: LabOptions = {}): Promise<void> {
  const names = labNames(opts.prefix ?? DEFAULT_PREFIX);
  const state = readState(names);
  const present = await existingNamespaces();
  // The daemon first, gracefully: it removes its routes and rules on SIGTERM.
  const daemon = state?.processes.find((p) => p.name === 'edge');
  if (daemon) await stopProcess(daemon.pid, 5000);
  for (const p of state?.processes ?? []) await stopProcess(p.pid, 2000);
  // The IPsec site's charon by the pids under its own directory (outside the run directory: see site-d.ts).
  await removeSiteDStrongSwan(names);
  const all = [...names.namespaces, ...names.ipsecNamespaces];
  for (const ns of all) {
    if (!present.has(ns)) continue;
    for (const pid of await namespacePids(ns)) await stopProcess(pid, ns === names.edge ? 5000 : 2000);
  }
  for (const ns of all) {
    if (!present.has(ns)) continue;
    const r = await run('ip', ['netns', 'delete', ns]);
    if (r.code !== 0 && (await existingNamespaces()).has(ns)) {
      throw new Error(`lab down: \`ip netns delete ${ns}\` failed: ${r.stderr.trim()}`);
    }
  }
  for (const wg of [names.wgA, names.wgB, names.wgC1, names.wgC2]) rmSync(join(WIREGUARD_SOCKET_DIR, `${wg}.sock`), { force: true });
  rmSync(names.runDir, { recursive: true, force: true });
}

// ─── Up ──────────────────────────────────────────────────────────────────────────────────────────────

export interface LabUpOptions extends LabOptions {
  /** Start the daemon in the edge namespace (default true). false: build everything else (tests of the lab itself). */
  startEdge?: boolean;
  /**
   * The edge's configuration; default labTopologyConfig() (defaultConfig() and site-c). Its default store/token
   * paths are moved into the run directory. site-c's network is built either way; its wireguard-go tunnels are
   * started only for the site-c onramps the configuration has.
   */
  config?: TetherConfig;
  /** How long to wait for the daemon's routes to appear. Default 30 s. */
  edgeReadyTimeoutMs?: number;
  /** With the daemon: wait until every WireGuard tunnel (site-a, site-b, site-c's two) has completed a handshake with the edge (default true). */
  waitForHandshakes?: boolean;
  /** Default 20 s. */
  handshakeTimeoutMs?: number;
  /**
   * Build the IPsec site too (site-d.ts: a strongSwan router and a host 10.0.1.10 behind it, underlay
   * 192.168.106.0/24) and start its charon, without initiating: default false until tether has its IPsec onramp
   * (`tether lab up --ipsec-site`). siteDStrongSwan(names).initiate() brings it up once the edge answers IKE.
   */
  ipsecSite?: boolean;
  /** Keep whatever was built when a step fails (for debugging); default false: tear it down. */
  keepOnFailure?: boolean;
  /**
   * The daemon's entry point as compiled JavaScript, run with plain node (benchmarks: dist/src/cli/tether.js).
   * Default: src/cli/tether.ts through tsx.
   */
  daemonEntry?: string;
  /** Extra `tether run` flags (e.g. --no-offload, --no-gro), after the configuration. Default none. */
  daemonArgs?: string[];
}

export interface LabInfo {
  prefix: string;
  names: LabNames;
  runDir: string;
  configFile: string;
  processes: LabProcess[];
  /** The daemon's log (stdout and stderr), when started. */
  edgeLog?: string;
}

interface SiteLink {
  ns: string;
  edgeLink: string;
  underlay: string;
  router: string;
  extra?: string[];
  /** The link's name on the site side; default LINKS.towardEdge. */
  siteLink?: string;
}

async function createNamespaces(names: LabNames): Promise<void> {
  for (const ns of names.namespaces) {
    await ip(null, ['netns', 'add', ns], 'lab up: create namespace');
    await ip(ns, ['link', 'set', 'lo', 'up']);
  }
}

/** A veth pair created directly in its two namespaces (no temporary name in the caller's namespace). */
async function veth(edgeNs: string, edgeName: string, edgeAddr: string, peerNs: string, peerName: string, peerAddr: string): Promise<void> {
  await ip(edgeNs, ['link', 'add', edgeName, 'type', 'veth', 'peer', 'name', peerName, 'netns', peerNs], `lab up: veth ${edgeName} <-> ${peerNs}`);
  await ip(edgeNs, ['addr', 'add', edgeAddr, 'dev', edgeName]);
  await ip(peerNs, ['addr', 'add', peerAddr, 'dev', peerName]);
  await ip(edgeNs, ['link', 'set', edgeName, 'up']);
  await ip(peerNs, ['link', 'set', peerName, 'up']);
}

async function buildNetwork(names: LabNames): Promise<void> {
  const edge = names.edge;
  await createNamespaces(names);
  // Set before the links exist: new interfaces copy conf.default.
  await sysctl(edge, 'net.ipv4.ip_forward', 1);
  await sysctl(edge, 'net.ipv4.conf.all.rp_filter', 0);
  await sysctl(edge, 'net.ipv4.conf.default.rp_filter', 0);
  for (const ns of [names.internet, names.dc]) await sysctl(ns, 'net.ipv4.icmp_ratelimit', 0);

  const sites: SiteLink[] = [
    { ns: names.siteA, edgeLink: LINKS.edgeToSiteA, underlay: LAB.siteA.underlay, router: LAB.siteA.router },
    { ns: names.siteB, edgeLink: LINKS.edgeToSiteB, underlay: LAB.siteB.underlay, router: LAB.siteB.router },
    { ns: names.siteGre, edgeLink: LINKS.edgeToSiteGre, underlay: LAB.siteGre.underlay, router: LAB.siteGre.router, extra: [LAB.siteGre.secondRouter] },
    // site-c's two underlay links, each its own veth so that one can be cut alone.
    { ns: names.siteCRouter, edgeLink: LINKS.edgeToSiteCPrimary, underlay: LAB.siteC.primary.underlay, router: LAB.siteC.primary.router, siteLink: LINKS.siteCPrimary },
    { ns: names.siteCRouter, edgeLink: LINKS.edgeToSiteCBackup, underlay: LAB.siteC.backup.underlay, router: LAB.siteC.backup.router, siteLink: LINKS.siteCBackup },
  ];
  await buildSiteC(names);
  for (const s of sites) {
    await veth(edge, s.edgeLink, `${s.underlay}.${LAB.edgeSiteHost}/24`, s.ns, s.siteLink ?? LINKS.towardEdge, `${s.router}/24`);
    for (const a of s.extra ?? []) await ip(s.ns, ['addr', 'add', `${a}/24`, 'dev', LINKS.towardEdge]);
    // The endpoint x.1 is not an address of the edge's kernel (the daemon routes it into tt-underlay):
    // proxy ARP makes the kernel answer the site router's ARP for it (needs forwarding, set above).
    await sysctl(edge, `net.ipv4.conf.${s.edgeLink}.proxy_arp`, 1);
    await sysctl(edge, `net.ipv4.conf.${s.edgeLink}.rp_filter`, 0);
  }

  // Internet.
  await veth(edge, LINKS.edgeToInternet, `${LAB.internet.edge}/24`, names.internet, LINKS.towardEdge, `${LAB.internet.router}/24`);
  await sysctl(edge, `net.ipv4.conf.${LINKS.edgeToInternet}.rp_filter`, 0);
  await ip(edge, ['route', 'add', 'default', 'via', LAB.internet.router]);
  await ip(names.internet, ['addr', 'add', `${LAB.internet.server}/32`, 'dev', 'lo']);
  await ip(names.internet, ['route', 'add', LAB.internet.pool, 'via', LAB.internet.edge]);
  // The same over IPv6 (no DAD: the link is ours alone, and a tentative address would delay the first packets).
  const i6 = LAB.internet6;
  await sysctl(edge, 'net.ipv6.conf.all.forwarding', 1);
  await ip(edge, ['addr', 'add', `${i6.edge}/${i6.prefixLength}`, 'dev', LINKS.edgeToInternet, 'nodad']);
  await ip(names.internet, ['addr', 'add', `${i6.router}/${i6.prefixLength}`, 'dev', LINKS.towardEdge, 'nodad']);
  await ip(edge, ['-6', 'route', 'add', 'default', 'via', i6.router]);
  await ip(names.internet, ['addr', 'add', `${i6.server}/128`, 'dev', 'lo']);
  await ip(names.internet, ['-6', 'route', 'add', i6.pool, 'via', i6.edge]);

  // Data center.
  const dc = LAB.dc;
  await veth(edge, LINKS.edgeToDc, `${dc.edge}/${dc.linkPrefixLength}`, names.dc, LINKS.towardEdge, `${dc.router}/${dc.linkPrefixLength}`);
  await sysctl(edge, `net.ipv4.conf.${LINKS.edgeToDc}.rp_filter`, 0);
  await ip(edge, ['route', 'add', dc.prefix, 'via', dc.router]);
  await ip(names.dc, ['addr', 'add', `${dc.server}/32`, 'dev', 'lo']);
  await ip(names.dc, ['route', 'add', dc.sites, 'via', dc.edge]);
  // Not in the contract, harmless: should the edge ever NAT toward the DC with the pool address, replies find their way.
  await ip(names.dc, ['route', 'add', LAB.internet.pool, 'via', dc.edge]);

  // The GRE site's host address (the peer is scapy, run on demand: helpers.ts grePeer).
  await ip(names.siteGre, ['addr', 'add', `${LAB.siteHost}/32`, 'dev', 'lo']);
}

/** The sites' persistent-keepalive (seconds), as in defaultConfig()'s peers. */
const SITE_KEEPALIVE_SECONDS = 25;

interface WireGuardSite {
  name: string;
  ns: string;
  iface: string;
  privateKey: string;
  edgePublicKey: string;
  edgeEndpoint: string;
  /** The site's UDP port (default LAB.wireguardPort; site-c's backup needs another: one router, two sockets). */
  listenPort?: number;
  /** Address/length on the interface: the host 10.0.1.10/32 (site-a, site-b) or the tunnel's inside (site-c). */
  address: string;
  /** `ip route add …` arguments of the site's default route through this tunnel. */
  defaultRoute: string[];
}

/**
 * Setting persistent-keepalive makes wireguard-go send a keepalive at once, which starts a handshake. With the daemon,
 * that waits until the edge is up: an initiation sent earlier sits in the ARP queue (no proxy ARP before the daemon's
 * route), then crosses the edge's own initiation, and wireguard-go, now responder, rejects the edge's late response
 * ("Received invalid response message"); the edge completes its own handshake with wireguard-go's response instead,
 * one round trip later (docs/ARCHITECTURE.md "WireGuard: both ends initiating at once"). Waiting avoids even that.
 */
async function setKeepalive(s: WireGuardSite): Promise<void> {
  await inNamespaceOk(s.ns, 'wg', ['set', s.iface, 'peer', s.edgePublicKey, 'persistent-keepalive', String(SITE_KEEPALIVE_SECONDS)]);
}

async function startWireGuardSite(names: LabNames, s: WireGuardSite, keepaliveNow: boolean): Promise<LabProcess> {
  const socket = join(WIREGUARD_SOCKET_DIR, `${s.iface}.sock`);
  rmSync(socket, { force: true });
  const p = startInNamespace(s.name, s.ns, 'wireguard-go', ['-f', s.iface], join(names.runDir, `${s.name}.log`), {
    // wireguard-go refuses to start where it believes the kernel has WireGuard, unless WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 is set
    // (this kernel has no WireGuard module, but wireguard-go cannot tell).
    WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1',
    LOG_LEVEL: 'verbose',
  });
  await waitFor(p, `its control socket ${socket}`, 10_000, () => existsSync(socket));
  const keyFile = join(names.runDir, `${s.name}.key`);
  const oldMask = process.umask(0o077);
  try {
    writeFileSync(keyFile, s.privateKey + '\n', { mode: 0o600 });
  } finally {
    process.umask(oldMask);
  }
  await inNamespaceOk(s.ns, 'wg', [
    'set', s.iface, 'listen-port', String(s.listenPort ?? LAB.wireguardPort), 'private-key', keyFile,
    'peer', s.edgePublicKey, 'endpoint', `${s.edgeEndpoint}:${LAB.wireguardPort}`, 'allowed-ips', '0.0.0.0/0',
  ]);
  if (keepaliveNow) await setKeepalive(s);
  await ip(s.ns, ['addr', 'add', s.address, 'dev', s.iface]);
  await ip(s.ns, ['link', 'set', s.iface, 'up']);
  // The endpoint stays reachable on-link through the underlay veth (a /24, more specific than the default).
  await ip(s.ns, ['route', 'add', ...s.defaultRoute]);
  return p;
}

function startServers(names: LabNames, name: string, ns: string, address: string): LabProcess {
  return startInNamespace(name, ns, process.execPath, nodeTsArgs(labSourceFile('servers.ts'), [
    '--name', name.replace(/-servers$/, ''), '--address', address, '--http', String(LAB.httpPort), '--udp', String(LAB.echoPort),
  ]), join(names.runDir, `${name}.log`));
}

/** labTopologyConfig() (or the given one) with its default on-disk paths moved into the run directory. */
export function labConfig(names: LabNames, base: TetherConfig = labTopologyConfig()): TetherConfig {
  const cfg = structuredClone(base);
  const defaults = defaultConfig();
  if (cfg.store.path === defaults.store.path) cfg.store.path = join(names.runDir, 'tether.db');
  if (cfg.api.token_file === defaults.api.token_file) cfg.api.token_file = join(names.runDir, 'api-token');
  cfg.log.level = 'info';
  return cfg;
}

/** What must exist in the edge namespace once the daemon is up (docs/UNDERLAY.md): endpoint and pool routes, link rules. */
function expectedEdgeState(cfg: TetherConfig): { routes: string[]; ruleLinks: string[] } {
  const routes = new Set<string>();
  for (const d of cfg.wireguard_devices) if (d.listen_address !== '0.0.0.0' && d.listen_address !== '::') routes.add(d.listen_address);
  const ruleLinks: string[] = [];
  for (const o of cfg.onramps) {
    if (o.type === 'gre') routes.add(o.gre.local);
    if (o.type === 'interconnect') ruleLinks.push(o.interconnect.link);
    if (o.type === 'ipsec') routes.add(o.ipsec.local_address);
  }
  for (const a of cfg.egress?.addresses ?? []) if (!a.includes(':')) routes.add(a);
  return { routes: [...routes], ruleLinks };
}

async function edgeReady(ns: string, want: { routes: string[]; ruleLinks: string[] }): Promise<boolean> {
  const routes = await run('ip', ['-n', ns, '-4', 'route', 'show']);
  const have = new Set(routes.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]));
  for (const a of want.routes) if (!have.has(a) && !have.has(`${a}/32`)) return false;
  if (want.ruleLinks.length > 0) {
    const rules = await run('ip', ['-n', ns, 'rule', 'show']);
    for (const link of want.ruleLinks) if (!rules.stdout.includes(`iif ${link} `) && !rules.stdout.includes(`iif ${link}\n`)) return false;
  }
  return true;
}

/**
 * Builds the lab (removing leftovers of the same prefix first) and, unless startEdge is false, starts the daemon
 * in the edge namespace and waits until its routes exist. On failure it tears down what it built (unless
 * keepOnFailure) and throws an error naming the failed step, with its stderr or the last lines of its log.
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabInfo> {
  const names = labNames(opts.prefix ?? DEFAULT_PREFIX);
  await ensureLabTools();
  await labDown({ prefix: names.prefix });
  mkdirSync(names.runDir, { recursive: true, mode: 0o700 });
  const configFile = join(names.runDir, 'tether.yaml');
  const state: LabState = { prefix: names.prefix, createdAt: new Date().toISOString(), runDir: names.runDir, configFile, processes: [] };
  writeState(state);
  try {
    const cfg = labConfig(names, opts.config ?? labTopologyConfig({ ipsecSite: opts.ipsecSite }));
    const configured = new Set(cfg.onramps.map((o) => o.name));
    await buildNetwork(names);
    if (opts.ipsecSite) {
      await buildSiteD(names);
      const swan = await startSiteDStrongSwan(names);
      state.processes.push({ name: 'ssw-d', namespace: names.siteDRouter, pid: swan.processId ?? 0, log: swan.log, command: [CHARON] });
      writeState(state);
    }
    const k = LAB_WIREGUARD_KEYS;
    const host = (iface: string) => ({ address: `${LAB.siteHost}/32`, defaultRoute: ['default', 'dev', iface, 'src', LAB.siteHost] });
    const c = LAB.siteC;
    const inside = (t: typeof c.primary) => `${t.routerInside}/${c.insidePrefixLength}`;
    const tunnels: Array<WireGuardSite & { onramp?: string }> = [
      { name: 'wg-a', ns: names.siteA, iface: names.wgA, privateKey: k.siteAPrivate, edgePublicKey: k.edgeAPublic, edgeEndpoint: LAB.siteA.edgeEndpoint, ...host(names.wgA) },
      { name: 'wg-b', ns: names.siteB, iface: names.wgB, privateKey: k.siteBPrivate, edgePublicKey: k.edgeBPublic, edgeEndpoint: LAB.siteB.edgeEndpoint, ...host(names.wgB) },
      {
        name: 'wg-c1', ns: names.siteCRouter, iface: names.wgC1, privateKey: k.siteC1Private, edgePublicKey: k.edgeC1Public, edgeEndpoint: c.primary.edgeEndpoint,
        listenPort: c.primary.routerPort, address: inside(c.primary), defaultRoute: siteCDefaultRoute(names, 'primary'), onramp: SITE_C_ONRAMPS.primary,
      },
      {
        name: 'wg-c2', ns: names.siteCRouter, iface: names.wgC2, privateKey: k.siteC2Private, edgePublicKey: k.edgeC2Public, edgeEndpoint: c.backup.edgeEndpoint,
        listenPort: c.backup.routerPort, address: inside(c.backup), defaultRoute: siteCDefaultRoute(names, 'backup'), onramp: SITE_C_ONRAMPS.backup,
      },
    ];
    const sites = tunnels.filter((t) => t.onramp === undefined || configured.has(t.onramp));
    const startEdge = opts.startEdge ?? true;
    for (const s of sites) {
      state.processes.push(await startWireGuardSite(names, s, !startEdge));
      writeState(state);
    }
    const servers = [
      startServers(names, 'inet-servers', names.internet, `${LAB.internet.server},${LAB.internet6.server}`),
      startServers(names, 'dc-servers', names.dc, LAB.dc.server),
    ];
    state.processes.push(...servers);
    writeState(state);
    for (const p of servers) await waitFor(p, 'its "ready" line', 30_000, () => logTail(p.log, 50).includes('"ready":true'));

    writeFileSync(configFile, `# written by tether lab up (prefix ${names.prefix}); lab keys only, see docs/LAB.md\n${stringifyConfig(cfg)}`, { mode: 0o600 });
    let edgeLog: string | undefined;
    if (startEdge) {
      const entry = opts.daemonEntry ?? TETHER_CLI;
      if (!existsSync(entry)) throw new Error(`lab up: the daemon's entry point ${entry} does not exist (use startEdge: false)`);
      edgeLog = join(names.runDir, 'tether.log');
      const daemonArgs = ['run', '--config', configFile, ...(opts.daemonArgs ?? [])];
      const daemon = startInNamespace('edge', names.edge, process.execPath, opts.daemonEntry ? [entry, ...daemonArgs] : nodeTsArgs(entry, daemonArgs), edgeLog);
      state.processes.unshift(daemon);
      writeState(state);
      const want = expectedEdgeState(cfg);
      await waitFor(daemon, `its routes (${want.routes.join(', ')}) and rules (iif ${want.ruleLinks.join(', ')})`,
        opts.edgeReadyTimeoutMs ?? 30_000, () => edgeReady(names.edge, want));
      for (const s of sites) await setKeepalive(s);
      if (opts.waitForHandshakes ?? true) await waitForHandshakes(sites, state.processes, opts.handshakeTimeoutMs ?? 20_000);
      // site-d's strongSwan dials the edge once tether answers IKE there (its onramp is in the configuration).
      if (opts.ipsecSite && cfg.onramps.some((o) => o.type === 'ipsec' && o.ipsec.local_address === LAB.siteD.edgeEndpoint)) {
        await siteDStrongSwan(names).initiate();
      }
    }
    return { prefix: names.prefix, names, runDir: names.runDir, configFile, processes: state.processes, edgeLog };
  } catch (e) {
    if (!opts.keepOnFailure) await labDown({ prefix: names.prefix }).catch(() => undefined);
    throw e;
  }
}

async function waitForHandshakes(sites: WireGuardSite[], processes: LabProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(sites);
  for (;;) {
    for (const s of [...pending]) {
      const st = await wireGuardStatus(s.ns, s.iface);
      if ('peers' in st && st.peers.some((p) => p.latestHandshake > 0)) pending.delete(s);
    }
    if (pending.size === 0) return;
    if (Date.now() > deadline) {
      const logs = [...pending].map((s) => processes.find((p) => p.name === s.name))
        .concat(processes.find((p) => p.name === 'edge'))
        .filter((p): p is LabProcess => p !== undefined)
        .map((p) => `--- ${p.log}:\n${logTail(p.log, 12)}`).join('\n');
      throw new Error(`lab up: no WireGuard handshake between the edge and ${[...pending].map((s) => `${s.name} (${s.iface} in ${s.ns})`).join(', ')} after ${timeoutMs} ms\n${logs}`);
    }
    await sleep(200);
  }
}

// ─── Status ──────────────────────────────────────────────────────────────────────────────────────────

export interface WireGuardPeerStatus {
  publicKey: string;
  endpoint: string | null;
  /** Unix seconds of the last handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
}

export interface LabStatus {
  prefix: string;
  runDir: string;
  /** True when the run directory's state file exists. */
  up: boolean;
  namespaces: Record<string, boolean>;
  processes: Array<LabProcess & { alive: boolean }>;
  wireguard: Record<string, { interface: string; peers: WireGuardPeerStatus[] } | { interface: string; error: string }>;
  edge: { pid: number; alive: boolean; log: string; logTail: string } | null;
}

async function wireGuardStatus(ns: string, iface: string): Promise<LabStatus['wireguard'][string]> {
  const r = await run('ip', ['netns', 'exec', ns, 'wg', 'show', iface, 'dump']);
  if (r.code !== 0) return { interface: iface, error: r.stderr.trim() || `exit ${r.code}` };
  // dump: first line is the interface; then per peer: pubkey psk endpoint allowed-ips handshake rx tx keepalive.
  const peers = r.stdout.trim().split('\n').slice(1).filter((l) => l !== '').map((l) => {
    const f = l.split('\t');
    return { publicKey: f[0], endpoint: f[2] === '(none)' ? null : f[2], latestHandshake: Number(f[4]), rxBytes: Number(f[5]), txBytes: Number(f[6]) };
  });
  return { interface: iface, peers };
}

/** What exists for this prefix: namespaces, processes (alive or not), WireGuard handshakes, the daemon's log tail. */
export async function labStatus(opts: LabOptions = {}): Promise<LabStatus> {
  const names = labNames(opts.prefix ?? DEFAULT_PREFIX);
  const state = readState(names);
  const present = await existingNamespaces();
  const namespaces: Record<string, boolean> = {};
  for (const ns of names.namespaces) namespaces[ns] = present.has(ns);
  for (const ns of names.ipsecNamespaces) if (present.has(ns)) namespaces[ns] = true;
  const wireguard: LabStatus['wireguard'] = {};
  if (present.has(names.siteA)) wireguard['site-a'] = await wireGuardStatus(names.siteA, names.wgA);
  if (present.has(names.siteB)) wireguard['site-b'] = await wireGuardStatus(names.siteB, names.wgB);
  if (present.has(names.siteCRouter)) {
    wireguard['site-c-primary'] = await wireGuardStatus(names.siteCRouter, names.wgC1);
    wireguard['site-c-backup'] = await wireGuardStatus(names.siteCRouter, names.wgC2);
  }
  const processes = (state?.processes ?? []).map((p) => ({ ...p, alive: isAlive(p.pid) }));
  const d = processes.find((p) => p.name === 'edge');
  return {
    prefix: names.prefix,
    runDir: names.runDir,
    up: state !== null,
    namespaces,
    processes,
    wireguard,
    edge: d ? { pid: d.pid, alive: d.alive, log: d.log, logTail: logTail(d.log) } : null,
  };
}
