/**
 * strongSwan 5.9.8 (Debian) as an IPsec peer inside a lab namespace (issue 9, docs/LAB.md "strongSwan"): one
 * charon per namespace, ESP in userspace by kernel-libipsec over its TUN `ipsec0` (this kernel has no ESP
 * transform, so kernel-libipsec forces ESP-in-UDP on 4500), driven through swanctl over the instance's own VICI
 * socket. Used by the lab's IPsec site (site-d.ts), the strongSwan rig test and bench:lab's reference edge.
 *
 * One instance = one directory <runDir>/<name>/ holding strongswan.conf, swanctl/swanctl.conf, charon.log,
 * charon.vici, run/ (bind-mounted over /run for charon: its pid file /run/charon.pid is compiled in, so a second
 * charon on the machine refuses to start without a /run of its own) and charon.lab-pid. A run directory
 * (<root>/<prefix>) holds one run's instances and an `owner` file with the pid of the process that made it:
 * removeStrongSwanRun() and removeStaleStrongSwanRuns() kill only charons whose pid files lie under such a
 * directory, by pid, after checking the pid is still a charon — never another live run's charon.
 *
 * Plugin order matters: kernel-libipsec must load before kernel-netlink (the first plugin that registers
 * "kernel-ipsec" wins; kernel-netlink then only does routes and addresses). libstrongswan-standard-plugins
 * provides openssl and gcm: without them no ECP or Curve25519 groups and no AES-GCM.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { formatCommand, LabCommandError, run, sleep, type CommandResult } from './exec.js';

export const CHARON = '/usr/lib/ipsec/charon';
export const SWANCTL = 'swanctl';
/**
 * Where runs of the rig live. Not under /run: charon gets its own /run by a bind mount, which would hide its
 * configuration, log and VICI socket there (the lab's own run directory is under /run, so its IPsec site's
 * charon lives here too, in lab-<prefix>).
 */
export const STRONGSWAN_RUN_ROOT = '/var/tmp/tether-ssw';

/** The Debian packages the rig needs, and a file or command proving each is there. */
export const STRONGSWAN_REQUIREMENTS: ReadonlyArray<{ what: string; debianPackage: string; path: string }> = [
  { what: 'charon', debianPackage: 'strongswan-charon', path: CHARON },
  { what: 'swanctl', debianPackage: 'strongswan-swanctl', path: '/usr/sbin/swanctl' },
  { what: 'kernel-libipsec plugin', debianPackage: 'libcharon-extra-plugins', path: '/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so' },
  { what: 'openssl plugin (ECP, Curve25519, MODP)', debianPackage: 'libstrongswan-standard-plugins', path: '/usr/lib/ipsec/plugins/libstrongswan-openssl.so' },
  { what: 'gcm plugin (AES-GCM)', debianPackage: 'libstrongswan-standard-plugins', path: '/usr/lib/ipsec/plugins/libstrongswan-gcm.so' },
  { what: 'TUN driver', debianPackage: 'kernel module tun', path: '/dev/net/tun' },
];

/** What is missing for the rig, as one sentence with the apt-get line; null when everything is there. */
export function missingStrongSwan(): string | null {
  const missing = STRONGSWAN_REQUIREMENTS.filter((r) => !existsSync(r.path));
  if (missing.length === 0) return null;
  const pkgs = [...new Set(missing.map((m) => m.debianPackage))].join(' ');
  return `strongSwan rig: missing ${missing.map((m) => `${m.what} (${m.path}, Debian package ${m.debianPackage})`).join(', ')}; install with: apt-get install -y --no-install-recommends ${pkgs}`;
}

// ─── Options ─────────────────────────────────────────────────────────────────────────────────────────

/** An IKE identity (RFC 7296 §3.5) as strongSwan writes it; `keyid` is hex. */
export type SwanIdentity =
  | { type: 'fqdn'; value: string }
  | { type: 'ipv4'; value: string }
  | { type: 'ipv6'; value: string }
  | { type: 'email'; value: string }
  | { type: 'keyid'; value: string };

/**
 * strongSwan's identity syntax. FQDN and e-mail carry a type prefix (so a name that looks like an address stays
 * a name); addresses are written bare: strongSwan parses a bare address into its 4 or 16 bytes, while the
 * `ipv4:` prefix would send the text itself as the ID data ("192." as 49.57.50.46, seen here).
 */
export function swanIdentity(id: SwanIdentity): string {
  switch (id.type) {
    case 'fqdn': return `fqdn:${id.value}`;
    case 'ipv4':
    case 'ipv6': {
      if (isIP(id.value) !== (id.type === 'ipv4' ? 4 : 6)) throw new Error(`${id.type} identity "${id.value}" is not an ${id.type} address`);
      return id.value;
    }
    case 'email': return `email:${id.value}`;
    case 'keyid': {
      if (!/^([0-9a-f]{2})+$/i.test(id.value)) throw new Error(`key-id identity "${id.value}": hex bytes expected`);
      return `keyid:#${id.value}`;
    }
  }
}

export interface SwanLifetimes {
  /** Seconds until a rekey (rekey_time); 0 = never. */
  rekeySeconds: number;
  /** IKE: over_time (hard limit = rekey + over); child: life_time. Default strongSwan's (10 % over). */
  overOrLifeSeconds?: number;
  /** rand_time: up to this much earlier, at random. Default 0 here (deterministic tests). */
  randSeconds?: number;
}

export type SwanLogSubsystem = 'dmn' | 'mgr' | 'ike' | 'chd' | 'job' | 'cfg' | 'knl' | 'net' | 'asn' | 'enc' | 'tnc' | 'imc' | 'imv' | 'pts' | 'tls' | 'esp' | 'lib';

export interface StrongSwanOptions {
  /** Instance name: its directory under the run directory. Letters, digits, '-', '_'. */
  name: string;
  /** The network namespace charon runs in (null: the caller's, only for experiments). */
  namespace: string;
  /** The run's directory (<root>/<prefix>, made by strongSwanRunDir(), or the lab's own run directory). */
  runDir: string;
  /** Our underlay address (local_addrs) and the peer's (remote_addrs; '%any' = answer anyone, responder only). */
  localAddress: string;
  remoteAddress: string;
  localId: SwanIdentity;
  remoteId: SwanIdentity;
  /** Pre-shared key (RFC 7296 §2.15), as text. */
  psk: string;
  /** IKE proposals as strongSwan strings, e.g. 'aes256gcm16-prfsha256-ecp256'; several = alternatives. */
  ikeProposals?: string[];
  /** ESP proposals, e.g. 'aes128gcm16-ecp256' (the group is PFS on CREATE_CHILD_SA rekeys, RFC 7296 §1.3.1). */
  espProposals?: string[];
  /** Traffic selectors (RFC 7296 §2.9). Default 0.0.0.0/0 both ways, route-based as Cloudflare's onramps. */
  localTs?: string[];
  remoteTs?: string[];
  /**
   * 'initiator': charon brings the SA up (start_action, or initiate()); also restarts it after a peer's delete
   * (close_action / dpd_action restart). 'responder': waits for the peer and clears what dies (remote_addrs may
   * be '%any'). Both answer an initiation either way, as any IKEv2 peer does.
   */
  role?: 'initiator' | 'responder';
  /** When charon loads the config: 'start' initiates at once, 'trap' on the first matching packet, 'none' waits for initiate(). Default 'none'. */
  startAction?: 'none' | 'trap' | 'start';
  ikeLifetime?: SwanLifetimes;
  childLifetime?: SwanLifetimes;
  /** Dead-peer detection interval in seconds (RFC 7296 §2.4); 0 = off. Default 10. */
  dpdDelaySeconds?: number;
  /** Log levels per subsystem (-1..4); default: default 1, ike 2, knl 2, esp 1, cfg 1. */
  logLevels?: Partial<Record<SwanLogSubsystem | 'default', number>>;
  /** Connection and child names in swanctl.conf. Default 'site' and 'lan'. */
  connection?: string;
  child?: string;
  /** Install routes to the remote TS via ipsec0 in table 220 (default true). */
  installRoutes?: boolean;
  /** ipsec0's MTU (kernel-libipsec's default is 1400). */
  tunMtu?: number;
  /** charon's IKE retransmissions before giving up (default 3 here: a dead peer is noticed in seconds). */
  retransmitTries?: number;
}

/** Defaults: strongSwan's default-ish modern proposal and a route-based child. */
export const DEFAULT_IKE_PROPOSAL = 'aes256gcm16-prfsha256-ecp256';
export const DEFAULT_ESP_PROPOSAL = 'aes128gcm16-ecp256';
export const ROUTE_BASED_TS = ['0.0.0.0/0'];
const DEFAULT_DPD_SECONDS = 10;
const DEFAULT_RETRANSMIT_TRIES = 3;
/** strongSwan's own defaults (swanctl.conf(5)): IKE rekey 4 h, child rekey 1 h. */
const DEFAULT_IKE_REKEY_SECONDS = 4 * 3600;
const DEFAULT_CHILD_REKEY_SECONDS = 3600;
const DEFAULT_LOG_LEVELS: Partial<Record<SwanLogSubsystem | 'default', number>> = { default: 1, ike: 2, knl: 2, esp: 1, cfg: 1 };
const NAME_PATTERN = /^[A-Za-z0-9_-]+$/;

/** How long charon may take to open its VICI socket, and each swanctl command. */
const VICI_WAIT_MS = 10_000;
const POLL_MS = 100;
const SWANCTL_TIMEOUT_SECONDS = 20;

// ─── Config files ────────────────────────────────────────────────────────────────────────────────────

/** strongswan.conf for one instance: explicit plugin list, kernel-libipsec first, our VICI socket and log. */
export function strongswanConf(dir: string, opts: Pick<StrongSwanOptions, 'logLevels' | 'installRoutes' | 'tunMtu' | 'retransmitTries'>): string {
  const levels = { ...DEFAULT_LOG_LEVELS, ...opts.logLevels };
  const levelLines = Object.entries(levels).map(([k, v]) => `      ${k} = ${v}`).join('\n');
  return `# written by tether's strongSwan rig (src/lab/strongswan.ts)
charon {
  # nothing from /etc/strongswan.d: exactly these plugins, kernel-libipsec before kernel-netlink
  load_modular = no
  load = random nonce openssl aes sha1 sha2 hmac gcm kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
  install_routes = ${opts.installRoutes === false ? 'no' : 'yes'}
  retransmit_tries = ${opts.retransmitTries ?? DEFAULT_RETRANSMIT_TRIES}
  filelog {
    rig {
      path = ${join(dir, 'charon.log')}
      time_format = %H:%M:%S
      append = yes
      flush_line = yes
      ike_name = yes
${levelLines}
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
  plugins {
    vici {
      socket = unix://${join(dir, 'charon.vici')}
    }
    kernel-libipsec {
      allow_peer_ts = no
    }
  }
}
libipsec {
  tun_mtu = ${opts.tunMtu ?? 1400}
}
swanctl {
  load = pem pkcs1 x509 pubkey openssl random
  socket = unix://${join(dir, 'charon.vici')}
}
`;
}

function lifetimes(kind: 'ike' | 'child', l: SwanLifetimes | undefined): string[] {
  const rekey = l?.rekeySeconds ?? (kind === 'ike' ? DEFAULT_IKE_REKEY_SECONDS : DEFAULT_CHILD_REKEY_SECONDS);
  const out = [`rekey_time = ${rekey}s`, `rand_time = ${l?.randSeconds ?? 0}s`];
  if (l?.overOrLifeSeconds !== undefined) out.push(kind === 'ike' ? `over_time = ${l.overOrLifeSeconds}s` : `life_time = ${l.overOrLifeSeconds}s`);
  return out;
}

/** swanctl.conf for one instance: one connection, one child, its PSK. */
export function swanctlConf(opts: StrongSwanOptions): string {
  const conn = opts.connection ?? 'site';
  const child = opts.child ?? 'lan';
  for (const n of [conn, child]) if (!NAME_PATTERN.test(n)) throw new Error(`strongSwan rig: connection/child name "${n}" must match ${NAME_PATTERN}`);
  const role = opts.role ?? 'initiator';
  const dpd = opts.dpdDelaySeconds ?? DEFAULT_DPD_SECONDS;
  // An initiator restarts what the peer deletes or DPD declares dead; a responder clears it and waits.
  const startAction = opts.startAction ?? 'none';
  const onLoss = role === 'initiator' && startAction !== 'none' ? 'restart' : 'clear';
  const closeAction = role === 'initiator' && startAction !== 'none' ? 'restart' : 'none';
  // Quoted: '#' (key IDs in hex) starts a comment in strongswan.conf syntax.
  const localId = JSON.stringify(swanIdentity(opts.localId));
  const remoteId = JSON.stringify(swanIdentity(opts.remoteId));
  const psk = opts.psk.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  const indent = (lines: string[], n: number): string => lines.map((l) => `${' '.repeat(n)}${l}`).join('\n');
  return `# written by tether's strongSwan rig (src/lab/strongswan.ts), instance ${opts.name}, role ${role}
connections {
  ${conn} {
    version = 2
    local_addrs = ${opts.localAddress}
    remote_addrs = ${opts.remoteAddress}
    proposals = ${(opts.ikeProposals ?? [DEFAULT_IKE_PROPOSAL]).join(', ')}
    # kernel-libipsec only does ESP-in-UDP (it forces it by faking NAT detection anyway)
    encap = yes
    mobike = no
    dpd_delay = ${dpd}s
${indent(lifetimes('ike', opts.ikeLifetime), 4)}
    local {
      auth = psk
      id = ${localId}
    }
    remote {
      auth = psk
      id = ${remoteId}
    }
    children {
      ${child} {
        mode = tunnel
        local_ts = ${(opts.localTs ?? ROUTE_BASED_TS).join(', ')}
        remote_ts = ${(opts.remoteTs ?? ROUTE_BASED_TS).join(', ')}
        esp_proposals = ${(opts.espProposals ?? [DEFAULT_ESP_PROPOSAL]).join(', ')}
        start_action = ${startAction}
        dpd_action = ${onLoss}
        close_action = ${closeAction}
${indent(lifetimes('child', opts.childLifetime), 8)}
      }
    }
  }
}
secrets {
  ike-${conn} {
    id-local = ${localId}
    id-remote = ${remoteId}
    secret = "${psk}"
  }
}
`;
}

// ─── SA listing (swanctl --list-sas --pretty) ───────────────────────────────────────────────────────

export interface SwanChildSa {
  name: string;
  uniqueId: number;
  /** INSTALLED, REKEYING, REKEYED, DELETING, … */
  state: string;
  mode: string;
  encap: boolean;
  /** Hex, as swanctl prints them. */
  spiIn: string;
  spiOut: string;
  /** e.g. "AES_GCM_16_128" or "AES_CBC_256/HMAC_SHA2_256_128", plus "/ECP_256" when rekeyed with PFS. */
  algorithms: string;
  encryption: string;
  keySize: number;
  integrity: string | null;
  dhGroup: string | null;
  bytesIn: number;
  packetsIn: number;
  bytesOut: number;
  packetsOut: number;
  rekeyInSeconds: number | null;
  lifeInSeconds: number | null;
  installedSeconds: number;
  localTs: string[];
  remoteTs: string[];
}

export interface SwanIkeSa {
  name: string;
  uniqueId: number;
  /** ESTABLISHED, CONNECTING, REKEYING, REKEYED, DELETING, … */
  state: string;
  initiator: boolean;
  spiI: string;
  spiR: string;
  localHost: string;
  localPort: number;
  remoteHost: string;
  remotePort: number;
  localId: string;
  remoteId: string;
  natLocal: boolean;
  natRemote: boolean;
  /** e.g. "AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256". */
  algorithms: string;
  encryption: string;
  keySize: number;
  integrity: string | null;
  prf: string;
  dhGroup: string;
  establishedSeconds: number;
  rekeyInSeconds: number | null;
  children: SwanChildSa[];
}

/** A section of swanctl's pretty VICI dump: keys to values, lists or sections. */
type VNode = { [key: string]: string | string[] | VNode };

/**
 * Parses `swanctl --list-sas --pretty`: one "list-sa event {" block per IKE SA, in VICI's pretty form —
 * `key = value` (the value is the rest of the line), `key = [` … `]` (one item a line), `key {` … `}`.
 */
export function parsePrettyVici(text: string): VNode[] {
  const events: VNode[] = [];
  const stack: VNode[] = [];
  let list: string[] | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (list !== null) {
      if (line === ']') list = null;
      else list.push(line);
      continue;
    }
    if (line === '}') {
      stack.pop();
      continue;
    }
    const section = /^(.*\S)\s*\{$/.exec(line);
    if (section) {
      const node: VNode = {};
      if (stack.length === 0) events.push(node);
      else stack[stack.length - 1][section[1]] = node;
      stack.push(node);
      continue;
    }
    const arr = /^(\S+)(?: =)?\s*\[$/.exec(line);
    if (arr && stack.length > 0) {
      list = [];
      stack[stack.length - 1][arr[1]] = list;
      continue;
    }
    const kv = /^(\S+) = (.*)$/.exec(line);
    if (kv && stack.length > 0) stack[stack.length - 1][kv[1]] = kv[2];
  }
  return events;
}

const str = (n: VNode, k: string): string => (typeof n[k] === 'string' ? (n[k] as string) : '');
const num = (n: VNode, k: string): number => (typeof n[k] === 'string' ? Number(n[k]) : 0);
const optNum = (n: VNode, k: string): number | null => (typeof n[k] === 'string' ? Number(n[k]) : null);
const optStr = (n: VNode, k: string): string | null => (typeof n[k] === 'string' ? (n[k] as string) : null);
const arrOf = (n: VNode, k: string): string[] => (Array.isArray(n[k]) ? (n[k] as string[]) : []);
const sub = (n: VNode, k: string): VNode => (typeof n[k] === 'object' && !Array.isArray(n[k]) ? (n[k] as VNode) : {});

function algos(parts: Array<string | null>): string {
  return parts.filter((p): p is string => p !== null && p !== '').join('/');
}

function withKeySize(encr: string, keySize: number): string {
  return keySize > 0 ? `${encr}_${keySize}` : encr;
}

/** The typed shape of one list-sa event's IKE SAs. */
export function ikeSasFromVici(events: VNode[]): SwanIkeSa[] {
  const out: SwanIkeSa[] = [];
  for (const ev of events) {
    for (const [name, v] of Object.entries(ev)) {
      if (typeof v !== 'object' || Array.isArray(v)) continue;
      const children: SwanChildSa[] = [];
      for (const c of Object.values(sub(v, 'child-sas'))) {
        if (typeof c !== 'object' || Array.isArray(c)) continue;
        const keySize = num(c, 'encr-keysize');
        children.push({
          name: str(c, 'name'),
          uniqueId: num(c, 'uniqueid'),
          state: str(c, 'state'),
          mode: str(c, 'mode'),
          encap: str(c, 'encap') === 'yes',
          spiIn: str(c, 'spi-in'),
          spiOut: str(c, 'spi-out'),
          algorithms: algos([withKeySize(str(c, 'encr-alg'), keySize), optStr(c, 'integ-alg'), optStr(c, 'dh-group')]),
          encryption: str(c, 'encr-alg'),
          keySize,
          integrity: optStr(c, 'integ-alg'),
          dhGroup: optStr(c, 'dh-group'),
          bytesIn: num(c, 'bytes-in'),
          packetsIn: num(c, 'packets-in'),
          bytesOut: num(c, 'bytes-out'),
          packetsOut: num(c, 'packets-out'),
          rekeyInSeconds: optNum(c, 'rekey-time'),
          lifeInSeconds: optNum(c, 'life-time'),
          installedSeconds: num(c, 'install-time'),
          localTs: arrOf(c, 'local-ts'),
          remoteTs: arrOf(c, 'remote-ts'),
        });
      }
      const keySize = num(v, 'encr-keysize');
      out.push({
        name,
        uniqueId: num(v, 'uniqueid'),
        state: str(v, 'state'),
        initiator: str(v, 'initiator') === 'yes',
        spiI: str(v, 'initiator-spi'),
        spiR: str(v, 'responder-spi'),
        localHost: str(v, 'local-host'),
        localPort: num(v, 'local-port'),
        remoteHost: str(v, 'remote-host'),
        remotePort: num(v, 'remote-port'),
        localId: str(v, 'local-id'),
        remoteId: str(v, 'remote-id'),
        natLocal: str(v, 'nat-local') === 'yes',
        natRemote: str(v, 'nat-remote') === 'yes',
        algorithms: algos([withKeySize(str(v, 'encr-alg'), keySize), optStr(v, 'integ-alg'), str(v, 'prf-alg'), str(v, 'dh-group')]),
        encryption: str(v, 'encr-alg'),
        keySize,
        integrity: optStr(v, 'integ-alg'),
        prf: str(v, 'prf-alg'),
        dhGroup: str(v, 'dh-group'),
        establishedSeconds: num(v, 'established'),
        rekeyInSeconds: optNum(v, 'rekey-time'),
        children,
      });
    }
  }
  return out;
}

// ─── Run directories and leftovers ───────────────────────────────────────────────────────────────────

const OWNER_FILE = 'owner';
const LAB_PID_FILE = 'charon.lab-pid';

/** Makes (after removing its leftovers) the run directory <root>/<prefix>, owned by this process. */
export async function strongSwanRunDir(prefix: string, root: string = STRONGSWAN_RUN_ROOT): Promise<string> {
  if (!NAME_PATTERN.test(prefix)) throw new Error(`strongSwan rig: run prefix "${prefix}" must match ${NAME_PATTERN}`);
  const dir = join(root, prefix);
  await removeStrongSwanRun(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, OWNER_FILE), `${process.pid}\n`);
  return dir;
}

/** True while `pid` is a live (not zombie) process; with `charonOnly`, only if its command line is charon's (a reused pid is not). */
function running(pid: number, charonOnly: boolean): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false;
    return !charonOnly || readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === CHARON;
  } catch {
    return false;
  }
}

/** True while `pid` is a live charon. */
export function isCharon(pid: number): boolean {
  return running(pid, true);
}

function readPid(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** The pids recorded for one instance directory: ours (charon.lab-pid) and charon's own (run/charon.pid). */
function instancePids(dir: string): number[] {
  return [readPid(join(dir, LAB_PID_FILE)), readPid(join(dir, 'run', 'charon.pid'))].filter((p): p is number => p !== null);
}

async function killCharon(pid: number): Promise<void> {
  if (!isCharon(pid)) return;
  try { process.kill(pid, 'SIGKILL'); } catch { return; }
  for (let i = 0; i < 50 && isCharon(pid); i++) await sleep(20);
}

/** Kills (SIGKILL, by pid) the charons whose pid files are under `dir`'s instance directories, then removes `dir`. */
export async function removeStrongSwanRun(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    for (const pid of instancePids(join(dir, e.name))) await killCharon(pid);
  }
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Removes the run directories under `root` whose owner process is gone (test and benchmark runs that died
 * halfway). A directory whose owner is not a pid (the lab's: `lab`, removed by labDown) is left alone.
 */
export async function removeStaleStrongSwanRuns(root: string = STRONGSWAN_RUN_ROOT): Promise<void> {
  if (!existsSync(root)) return;
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const owner = readPid(join(root, e.name, OWNER_FILE));
    if (owner === null || owner === process.pid) continue;
    let alive = true;
    try { process.kill(owner, 0); } catch { alive = false; }
    if (!alive) await removeStrongSwanRun(join(root, e.name));
  }
}

// ─── An instance ─────────────────────────────────────────────────────────────────────────────────────

export class StrongSwan {
  readonly opts: StrongSwanOptions;
  readonly dir: string;
  readonly log: string;
  readonly vici: string;
  readonly confFile: string;
  readonly swanctlFile: string;
  readonly connection: string;
  readonly child: string;
  private pid: number | null = null;

  constructor(opts: StrongSwanOptions) {
    if (!NAME_PATTERN.test(opts.name)) throw new Error(`strongSwan rig: instance name "${opts.name}" must match ${NAME_PATTERN}`);
    if (opts.runDir === '/run' || opts.runDir.startsWith('/run/') || opts.runDir.startsWith('/var/run/')) {
      throw new Error(`strongSwan rig: run directory ${opts.runDir} is under /run, which charon's own bind-mounted /run hides (use ${STRONGSWAN_RUN_ROOT})`);
    }
    this.opts = { ...opts };
    this.dir = join(opts.runDir, opts.name);
    this.log = join(this.dir, 'charon.log');
    this.vici = join(this.dir, 'charon.vici');
    this.confFile = join(this.dir, 'strongswan.conf');
    this.swanctlFile = join(this.dir, 'swanctl', 'swanctl.conf');
    this.connection = opts.connection ?? 'site';
    this.child = opts.child ?? 'lan';
    // A handle on an instance another process started (the lab's site-d after `tether lab up`): adopt its charon.
    const running = readPid(join(this.dir, LAB_PID_FILE));
    if (running !== null && isCharon(running)) this.pid = running;
  }

  /** Starts charon (writing both configs) and loads the connection; throws with the log's tail if charon does not come up. */
  static async start(opts: StrongSwanOptions): Promise<StrongSwan> {
    const s = new StrongSwan(opts);
    await s.start();
    return s;
  }

  /** charon's pid while it runs (null before start and after stop). */
  get processId(): number | null {
    return this.pid;
  }

  /** Writes the configs, starts charon in its namespace with its own /run, waits for VICI, loads swanctl.conf. */
  async start(): Promise<void> {
    const missing = missingStrongSwan();
    if (missing !== null) throw new Error(missing);
    if (this.pid !== null && isCharon(this.pid)) throw new Error(`strongSwan ${this.opts.name}: already running (pid ${this.pid})`);
    // swanctl --load-all also scans x509/, private/, … next to swanctl.conf.
    for (const d of ['run', 'swanctl', 'swanctl/x509', 'swanctl/x509ca', 'swanctl/private', 'swanctl/pubkey']) mkdirSync(join(this.dir, d), { recursive: true, mode: 0o700 });
    writeFileSync(this.confFile, strongswanConf(this.dir, this.opts));
    writeFileSync(this.swanctlFile, swanctlConf(this.opts), { mode: 0o600 });
    rmSync(this.vici, { force: true });
    rmSync(join(this.dir, 'run', 'charon.pid'), { force: true });
    const fd = openSync(join(this.dir, 'charon.stdout'), 'a', 0o600);
    try {
      // `ip netns exec` gives the command a mount namespace of its own: /run is ours there only.
      const child = spawn('ip', ['netns', 'exec', this.opts.namespace, 'sh', '-c', 'mount --bind "$1" /run && exec "$2"', 'sh', join(this.dir, 'run'), CHARON], {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, STRONGSWAN_CONF: this.confFile },
      });
      child.on('error', () => { /* seen below: no VICI socket, dead pid */ });
      child.unref();
      if (child.pid === undefined) throw new Error(`strongSwan ${this.opts.name}: could not spawn charon in ${this.opts.namespace}`);
      // ip netns exec and sh both exec: the pid is charon's.
      this.pid = child.pid;
      writeFileSync(join(this.dir, LAB_PID_FILE), `${child.pid}\n`);
    } finally {
      closeSync(fd);
    }
    const deadline = Date.now() + VICI_WAIT_MS;
    while (!existsSync(this.vici)) {
      // Until `ip netns exec` and `sh` have exec'd, the pid is not charon's yet: any live process will do.
      const alive = running(this.pid, false);
      if (!alive || Date.now() > deadline) {
        const why = alive ? `no VICI socket ${this.vici} after ${VICI_WAIT_MS} ms` : 'charon exited';
        throw new Error(`strongSwan ${this.opts.name} in ${this.opts.namespace}: ${why}\n${this.tail()}\n${tailOf(join(this.dir, 'charon.stdout'), 10)}`);
      }
      await sleep(POLL_MS);
    }
    await this.load();
  }

  /** `swanctl --load-all` from this instance's swanctl.conf (after reconfigure() or at start). */
  async load(): Promise<void> {
    await this.swanctl(['--load-all', '--file', this.swanctlFile], 'load the configuration');
  }

  /** New options for the connection (proposals, TS, lifetimes …): rewrites swanctl.conf and loads it. Existing SAs stay. */
  async reconfigure(change: Partial<Omit<StrongSwanOptions, 'name' | 'namespace' | 'runDir'>>): Promise<void> {
    Object.assign(this.opts, change);
    writeFileSync(this.swanctlFile, swanctlConf(this.opts), { mode: 0o600 });
    await this.load();
  }

  /** Runs swanctl against this instance's VICI socket; throws LabCommandError (with the log's tail) unless it exits 0. */
  async swanctl(args: string[], what: string, timeoutSeconds = SWANCTL_TIMEOUT_SECONDS): Promise<string> {
    const r = await this.swanctlResult(args, timeoutSeconds);
    if (r.code !== 0) {
      throw new LabCommandError(formatCommand(SWANCTL, [...args, '--uri', `unix://${this.vici}`]), { ...r, stderr: `${r.stderr}\n${this.tail()}` }, `strongSwan ${this.opts.name}: ${what}`);
    }
    return r.stdout;
  }

  /** Like swanctl() but returns the result whatever the exit status. */
  swanctlResult(args: string[], timeoutSeconds = SWANCTL_TIMEOUT_SECONDS): Promise<CommandResult> {
    // swanctl wants its command first, then the options.
    return run(SWANCTL, [...args, '--uri', `unix://${this.vici}`], { env: { STRONGSWAN_CONF: this.confFile }, timeoutMs: (timeoutSeconds + 10) * 1000 });
  }

  /** Initiates the child SA (and the IKE SA under it); throws naming the failure (e.g. AUTHENTICATION_FAILED in the log). */
  async initiate(child: string = this.child, timeoutSeconds = SWANCTL_TIMEOUT_SECONDS): Promise<void> {
    await this.swanctl(['--initiate', '--child', child, '--timeout', String(timeoutSeconds)], `initiate ${child}`, timeoutSeconds);
  }

  /** Initiates and reports instead of throwing: true when the child SA came up. */
  async tryInitiate(child: string = this.child, timeoutSeconds = SWANCTL_TIMEOUT_SECONDS): Promise<{ ok: boolean; output: string }> {
    const r = await this.swanctlResult(['--initiate', '--child', child, '--timeout', String(timeoutSeconds)], timeoutSeconds);
    return { ok: r.code === 0, output: `${r.stdout}${r.stderr}` };
  }

  /** Deletes the IKE SA (INFORMATIONAL delete, RFC 7296 §1.4.1) and its children; no error if there is none. */
  async terminate(ike: string = this.connection, timeoutSeconds = 5): Promise<void> {
    if ((await this.listSas()).every((s) => s.name !== ike)) return;
    const r = await this.swanctlResult(['--terminate', '--ike', ike, '--timeout', String(timeoutSeconds)], timeoutSeconds);
    if (r.code !== 0) await this.swanctlResult(['--terminate', '--ike', ike, '--force', '--timeout', String(timeoutSeconds)], timeoutSeconds);
  }

  /** Every IKE SA with its child SAs. */
  async listSas(): Promise<SwanIkeSa[]> {
    return ikeSasFromVici(parsePrettyVici(await this.swanctl(['--list-sas', '--pretty'], 'list SAs')));
  }

  /** The established IKE SA of our connection with an installed child, or null. */
  async established(): Promise<{ ike: SwanIkeSa; child: SwanChildSa } | null> {
    for (const ike of await this.listSas()) {
      if (ike.name !== this.connection || ike.state !== 'ESTABLISHED') continue;
      const child = ike.children.find((c) => c.name === this.child && c.state === 'INSTALLED');
      if (child) return { ike, child };
    }
    return null;
  }

  /** Waits until established() holds and `accept` agrees; returns it. */
  async waitEstablished(what: string, timeoutMs = 20_000, accept: (e: { ike: SwanIkeSa; child: SwanChildSa }) => boolean = () => true): Promise<{ ike: SwanIkeSa; child: SwanChildSa }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = await this.established();
      if (e !== null && accept(e)) return e;
      if (Date.now() > deadline) throw new Error(`strongSwan ${this.opts.name}: ${what} not seen after ${timeoutMs} ms; SAs: ${JSON.stringify(await this.listSas())}\n${this.tail()}`);
      await sleep(POLL_MS * 2);
    }
  }

  /** CREATE_CHILD_SA rekey of the child (RFC 7296 §2.8, with PFS when the ESP proposal has a group); waits for the new SPIs. */
  async rekeyChild(child: string = this.child, timeoutMs = 20_000): Promise<{ before: SwanChildSa; after: SwanChildSa }> {
    const before = (await this.waitEstablished('a child SA to rekey', timeoutMs)).child;
    await this.swanctl(['--rekey', '--child', child], `rekey child ${child}`);
    const after = (await this.waitEstablished('the rekeyed child SA', timeoutMs, (e) => e.child.spiIn !== before.spiIn && e.child.spiOut !== before.spiOut)).child;
    return { before, after };
  }

  /** CREATE_CHILD_SA rekey of the IKE SA (RFC 7296 §2.18); waits for the new IKE SPIs. */
  async rekeyIke(ike: string = this.connection, timeoutMs = 20_000): Promise<{ before: SwanIkeSa; after: SwanIkeSa }> {
    const before = (await this.waitEstablished('an IKE SA to rekey', timeoutMs)).ike;
    await this.swanctl(['--rekey', '--ike', ike], `rekey IKE SA ${ike}`);
    const after = (await this.waitEstablished('the rekeyed IKE SA', timeoutMs, (e) => e.ike.spiI !== before.spiI)).ike;
    return { before, after };
  }

  /**
   * charon killed with SIGKILL (no DELETE sent: the peer must notice by DPD or INITIAL_CONTACT) and started
   * again with the same configuration; its TUN goes with it. The "strongSwan restarted mid-traffic" must-show.
   */
  async restart(): Promise<void> {
    if (this.pid !== null) await killCharon(this.pid);
    this.pid = null;
    await this.start();
  }

  /** Stops charon: SIGTERM (it deletes its SAs, telling the peer), SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    const pid = this.pid;
    this.pid = null;
    if (pid === null || !isCharon(pid)) return;
    try { process.kill(pid, 'SIGTERM'); } catch { return; }
    const deadline = Date.now() + graceMs;
    while (isCharon(pid) && Date.now() < deadline) await sleep(POLL_MS / 2);
    await killCharon(pid);
    rmSync(this.vici, { force: true });
  }

  /** The last lines of charon's log. */
  tail(lines = 25): string {
    return `--- ${this.log}:\n${tailOf(this.log, lines)}`;
  }
}

function tailOf(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
