/**
 * Issue 9, live interop before the daemon's glue exists: tether's IKE engine (src/onramp/ipsec/ike/engine.ts) on
 * real UDP sockets in one network namespace (test/support/ike-host.ts), strongSwan 5.9.8's charon in another,
 * a veth between them. charon initiates and tether responds; charon rekeys the child (CREATE_CHILD_SA with PFS)
 * and the IKE SA; charon deletes; then tether initiates and charon narrows the traffic selectors. Each step is
 * checked on both sides: `swanctl --list-sas` against the engine's status() and its installChild() events (the
 * child SPIs crosswise, the IKE SPIs equal). ESP is out of scope here (no data path yet): charon's ESP, if any,
 * is counted and dropped. Root only: it fails loudly, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  DH_GROUPS,
  ENCRYPTION_ALGORITHMS,
  INTEGRITY_ALGORITHMS,
  PRF_ALGORITHMS,
  type EspProposal,
  type IkePeerConfig,
  type IkeProposal,
  type IkeSaStatus,
} from '../../src/onramp/ipsec/types.js';
import type { IkeUdpEvent } from '../support/ike-udp.js';
import { ANY4, peerConfig } from '../support/ike-rig.js';
import { namespaceName, removeStaleNamespaces, sh } from '../support/netns.js';

const CHARON = '/usr/lib/ipsec/charon';
const SWANCTL = '/usr/sbin/swanctl';
const PLUGINS = '/usr/lib/ipsec/plugins';
const NS_TETHER = namespaceName('ike-t');
const NS_SWAN = namespaceName('ike-s');
const VETH_T = `ikt${process.pid}`.slice(0, 15);
const VETH_S = `iks${process.pid}`.slice(0, 15);
const TETHER = '192.168.254.1';
const SWAN = '192.168.254.2';
const PSK = 'e2e-only-psk-ike-strongswan-0123';
const ONRAMP = 9;
/** charon's side of the selectors; tether is configured with 0.0.0.0/0 both ways and narrows to these. */
const SWAN_LAN = '10.52.2.0/24';
const TETHER_LAN = '10.52.1.0/24';
const SWAN_LAN_HOST = '10.52.2.1/32';
const STEP_TIMEOUT_MS = 20_000;

let dir = '';
let charon: ChildProcess | null = null;
let host: ChildProcess | null = null;
const events: Array<IkeUdpEvent | { event: string; [k: string]: unknown }> = [];
let statusId = 0;

/** The engine's side (test/support/ike-rig.ts peerConfig, the rest as there); the PSK as text for the IKE host. */
function tetherConfig(mode: 'initiate' | 'respond'): Omit<IkePeerConfig, 'psk'> & { psk: string } {
  return {
    ...peerConfig({
      onramp: ONRAMP,
      name: 'swan',
      localAddress: TETHER,
      remoteAddress: SWAN,
      localId: { type: 'fqdn', value: 'tether.lab' },
      remoteId: { type: 'fqdn', value: 'swan.lab' },
      mode,
      espProposals: [{ encryption: ['aes128gcm16'], integrity: [], dh: ['ecp256'] }],
      localTs: [ANY4],
      remoteTs: [ANY4],
      dpdSeconds: 0,
      dpdTimeoutSeconds: 30,
    }),
    psk: PSK,
  };
}

function strongswanConf(): string {
  return `charon {
  load_modular = no
  load = random nonce openssl aes sha1 sha2 hmac gcm kdf kernel-libipsec kernel-netlink socket-default vici
  install_routes = no
  retransmit_tries = 3
  filelog { lab { path = ${dir}/charon.log
      time_format = %H:%M:%S
      append = no
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
      chd = 4 } }
  syslog { daemon { default = -1 } }
  plugins { vici { socket = unix://${dir}/charon.vici } }
}
swanctl { load = random openssl
  socket = unix://${dir}/charon.vici }
`;
}

function swanctlConf(ike = 'aes256gcm16-prfsha256-ecp256', esp = 'aes128gcm16-ecp256'): string {
  return `connections { site { version = 2
    local_addrs = ${SWAN}
    remote_addrs = ${TETHER}
    proposals = ${ike}
    encap = yes
    mobike = no
    local { auth = psk
      id = swan.lab }
    remote { auth = psk
      id = tether.lab }
    children { lan { mode = tunnel
        local_ts = ${SWAN_LAN}
        remote_ts = ${TETHER_LAN}
        esp_proposals = ${esp}
        start_action = none } } } }
secrets { ike-tether { id-a = swan.lab
    id-b = tether.lab
    secret = "${PSK}" } }
`;
}

function swanctl(...args: string[]): string {
  const [command, ...rest] = args;
  return execFileSync(SWANCTL, [command, '-u', `unix://${dir}/charon.vici`, ...rest], {
    encoding: 'utf8',
    env: { ...process.env, STRONGSWAN_CONF: join(dir, 'strongswan.conf') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

interface SwanSa {
  state: string;
  /** charon's names, e.g. AES_GCM_16-256/PRF_HMAC_SHA2_256/ECP_256. */
  algorithms: string;
  spiI: string;
  spiR: string;
  children: Array<{ state: string; algorithms: string; spiIn: string; spiOut: string; localTs: string; remoteTs: string }>;
}

/** `swanctl --list-sas`, as text: "site: #2, ESTABLISHED, IKEv2, <spiI>_i* <spiR>_r", then each child. */
function listSas(): SwanSa[] {
  const sas: SwanSa[] = [];
  let child: SwanSa['children'][number] | null = null;
  for (const line of swanctl('--list-sas').split('\n')) {
    const ike = /^site: #\d+, (\w+), IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r\*?/.exec(line);
    if (ike) {
      sas.push({ state: ike[1], algorithms: '', spiI: ike[2], spiR: ike[3], children: [] });
      child = null;
      continue;
    }
    const algorithms = /^ {2}([A-Z][A-Z0-9_]+-?\d*(?:\/[A-Z0-9_-]+)+)$/.exec(line);
    if (algorithms && sas.length > 0 && child === null) {
      sas[sas.length - 1].algorithms = algorithms[1];
      continue;
    }
    const c = /^\s+lan: #\d+, reqid \d+, (\w+), [\w-]+, ESP:(\S+)/.exec(line);
    if (c && sas.length > 0) {
      child = { state: c[1], algorithms: c[2], spiIn: '', spiOut: '', localTs: '', remoteTs: '' };
      sas[sas.length - 1].children.push(child);
      continue;
    }
    const m = /^\s+(in|out)\s+([0-9a-f]{8}),/.exec(line) ?? /^\s+(local|remote)\s+(\S+)$/.exec(line);
    if (m && child) {
      if (m[1] === 'in') child.spiIn = m[2];
      else if (m[1] === 'out') child.spiOut = m[2];
      else if (m[1] === 'local') child.localTs = m[2];
      else child.remoteTs = m[2];
    }
  }
  return sas;
}

interface CharonChildKeys {
  encryptionInitiator: string;
  encryptionResponder: string;
  integrityInitiator: string;
  integrityResponder: string;
}

/** The child keys charon logged at "chd 4" (`encryption initiator key => 20 bytes @ ...` and its hexdump), in order. */
function charonChildKeys(): CharonChildKeys[] {
  const out: CharonChildKeys[] = [];
  let current: { field: keyof CharonChildKeys; want: number; hex: string } | null = null;
  const flush = (): void => {
    if (current === null) return;
    if (current.field === 'encryptionInitiator') out.push({ encryptionInitiator: '', encryptionResponder: '', integrityInitiator: '', integrityResponder: '' });
    if (out.length > 0) out[out.length - 1][current.field] = current.hex;
    current = null;
  };
  for (const line of readFileSync(join(dir, 'charon.log'), 'utf8').split('\n')) {
    const head = /\[CHD\] (encryption|integrity) (initiator|responder) key => (\d+) bytes/.exec(line);
    if (head) {
      flush();
      current = { field: `${head[1]}${head[2] === 'initiator' ? 'Initiator' : 'Responder'}` as keyof CharonChildKeys, want: Number(head[3]), hex: '' };
      continue;
    }
    const row = /\[CHD\]\s+\d+: ((?:[0-9A-F]{2} )+)/.exec(line);
    if (row && current && current.hex.length < 2 * current.want) current.hex += row[1].replace(/ /g, '').toLowerCase();
    else flush();
  }
  flush();
  return out;
}

/**
 * Tether's newest child's keys equal charon's last logged ones (§2.17: the "initiator" keys protect the direction
 * from the CREATE_CHILD_SA/IKE_AUTH initiator), encryption (key ‖ salt for GCM) and integrity.
 */
function assertKeysMatchCharon(install: Extract<IkeUdpEvent, { event: 'install' }>, charonInitiated: boolean, what: string): void {
  const [fromInitiator, fromResponder] = charonInitiated ? ['in', 'out'] as const : ['out', 'in'] as const;
  assert.deepEqual(
    charonChildKeys().at(-1),
    {
      encryptionInitiator: install[`${fromInitiator}Key`],
      encryptionResponder: install[`${fromResponder}Key`],
      integrityInitiator: install[`${fromInitiator}IntegrityKey`],
      integrityResponder: install[`${fromResponder}IntegrityKey`],
    },
    `${what}: ESP keys equal charon's`,
  );
}

const spiHex = (spi: number): string => (spi >>> 0).toString(16).padStart(8, '0');

function send(command: Record<string, unknown>): void {
  assert.ok(host?.stdin, 'the IKE host runs');
  host.stdin.write(`${JSON.stringify(command)}\n`);
}

async function waitFor<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, limitMs = STEP_TIMEOUT_MS): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() - start > limitMs) {
      const tail = existsSync(join(dir, 'charon.log')) ? readFileSync(join(dir, 'charon.log'), 'utf8').split('\n').slice(-25).join('\n') : '(no charon.log)';
      throw new Error(`timed out waiting for ${what}\nengine events: ${JSON.stringify(events.slice(-10))}\ncharon.log tail:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function tetherStatus(): Promise<{ sas: IkeSaStatus[]; drops: Record<string, number> }> {
  const id = ++statusId;
  send({ cmd: 'status', id });
  const e = await waitFor(`status ${id}`, () => events.find((x) => x.event === 'status' && (x as { id?: number }).id === id));
  return e as unknown as { sas: IkeSaStatus[]; drops: Record<string, number> };
}

const installs = (): Array<Extract<IkeUdpEvent, { event: 'install' }>> => events.filter((e): e is Extract<IkeUdpEvent, { event: 'install' }> => e.event === 'install');
const removed = (spi: number): boolean => events.some((e) => e.event === 'remove' && (e as { inboundSpi: number }).inboundSpi === spi);

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the IKE interop test needs root (network namespaces, charon); CI runs it as root');
  const missing = [CHARON, SWANCTL, `${PLUGINS}/libstrongswan-kernel-libipsec.so`, `${PLUGINS}/libstrongswan-openssl.so`, `${PLUGINS}/libstrongswan-gcm.so`, '/dev/net/tun'].filter(
    (p) => !existsSync(p),
  );
  if (missing.length > 0) {
    throw new Error(`strongSwan interop needs: ${missing.join(', ')} (apt-get install --no-install-recommends strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins)`);
  }
  removeStaleNamespaces();
  for (const ns of [NS_TETHER, NS_SWAN]) {
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      /* not there */
    }
    sh('ip', 'netns', 'add', ns);
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
  sh('ip', 'link', 'add', VETH_T, 'netns', NS_TETHER, 'type', 'veth', 'peer', 'name', VETH_S, 'netns', NS_SWAN);
  sh('ip', '-n', NS_TETHER, 'addr', 'add', `${TETHER}/24`, 'dev', VETH_T);
  sh('ip', '-n', NS_TETHER, 'link', 'set', VETH_T, 'up');
  sh('ip', '-n', NS_SWAN, 'addr', 'add', `${SWAN}/24`, 'dev', VETH_S);
  sh('ip', '-n', NS_SWAN, 'link', 'set', VETH_S, 'up');
  // kernel-libipsec installs a route for each policy with a source address inside charon's own selector.
  sh('ip', '-n', NS_SWAN, 'addr', 'add', SWAN_LAN_HOST, 'dev', 'lo');

  dir = mkdtempSync(join(tmpdir(), 'tt-ike-swan-'));
  mkdirSync(join(dir, 'run'));
  for (const d of ['x509', 'x509ca', 'x509ocsp', 'x509aa', 'x509ac', 'x509crl', 'pubkey', 'private', 'rsa', 'ecdsa', 'bliss', 'pkcs8', 'pkcs12']) {
    mkdirSync(join(dir, 'swanctl', d), { recursive: true });
  }
  writeFileSync(join(dir, 'strongswan.conf'), strongswanConf());
  writeFileSync(join(dir, 'swanctl', 'swanctl.conf'), swanctlConf());
  // charon's pid file is compiled in as /run/charon.pid: give it a private /run (ip netns exec unshares mounts).
  charon = spawn('ip', ['netns', 'exec', NS_SWAN, 'sh', '-c', 'mount --bind "$1" /run && exec "$2"', 'sh', join(dir, 'run'), CHARON], {
    env: { ...process.env, STRONGSWAN_CONF: join(dir, 'strongswan.conf') },
    stdio: 'ignore',
  });
  await waitFor('charon\'s VICI socket', () => existsSync(join(dir, 'charon.vici')), 10_000);
  swanctl('--load-all', '--file', join(dir, 'swanctl', 'swanctl.conf'));

  host = spawn('ip', ['netns', 'exec', NS_TETHER, process.execPath, '--import', 'tsx', 'test/support/ike-host.ts', TETHER], { stdio: ['pipe', 'pipe', 'inherit'] });
  createInterface({ input: host.stdout! }).on('line', (line) => events.push(JSON.parse(line) as IkeUdpEvent));
  await waitFor('the IKE host on UDP 500/4500', () => events.some((e) => e.event === 'ready'), 30_000);
});

after(async () => {
  if (host) {
    host.stdin?.end();
    host.kill('SIGTERM');
  }
  if (charon?.pid) charon.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  for (const ns of [NS_TETHER, NS_SWAN]) {
    try {
      for (const pid of sh('ip', 'netns', 'pids', ns).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* gone */
    }
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      /* gone */
    }
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  const errors = events.filter((e) => e.event === 'error');
  assert.deepEqual(errors, [], 'the IKE host reported no command errors');
});

/** The established IKE SA on both sides, and the newest child: SPIs equal (IKE) and crosswise (child). */
async function checkBothSides(what: string, encryption = 'aes128gcm16'): Promise<{ swan: SwanSa; tether: IkeSaStatus }> {
  const swan = await waitFor(`${what}: charon ESTABLISHED with an INSTALLED child`, () =>
    listSas().find((s) => s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED')),
  );
  let seen: IkeSaStatus[] = [];
  const tether = await waitFor(`${what}: tether has the IKE SA ${swan.spiI}/${swan.spiR} established (it has ${JSON.stringify(seen.map((s) => [s.state, s.spiI, s.spiR]))})`, async () => {
    seen = (await tetherStatus()).sas;
    return seen.find((s) => s.state === 'established' && s.spiI === swan.spiI && s.spiR === swan.spiR);
  });
  const child = swan.children.filter((c) => c.state === 'INSTALLED').at(-1)!;
  const last = installs().at(-1);
  assert.ok(last, `${what}: tether installed a child`);
  assert.equal(spiHex(last.inboundSpi), child.spiOut, `${what}: tether's inbound SPI is charon's outbound`);
  assert.equal(spiHex(last.outboundSpi), child.spiIn, `${what}: tether's outbound SPI is charon's inbound`);
  assert.equal(last.encryption, encryption, `${what}: ESP encryption`);
  return { swan, tether };
}

test('strongSwan initiates, tether responds: IKE SA and child up, IKE SPIs equal and child SPIs crosswise', async () => {
  send({ cmd: 'addPeer', config: tetherConfig('respond') });
  swanctl('--initiate', '--child', 'lan', '--timeout', '20');
  await waitFor('tether installs the child', () => installs().length >= 1);
  const { swan, tether } = await checkBothSides('charon → tether');
  assert.equal(tether.role, 'responder');
  assert.ok(tether.natDetected, 'charon with encap=yes fakes its NAT-D source: tether sees a NAT and floats to 4500');
  assert.equal(installs()[0].remotePort, 4500);
  assert.ok(events.some((e) => e.event === 'state' && (e as { up: boolean }).up), 'peer up');
  const child = swan.children.find((c) => c.state === 'INSTALLED')!;
  assert.deepEqual([child.localTs, child.remoteTs], [SWAN_LAN, TETHER_LAN], 'tether (0.0.0.0/0) narrowed to what charon proposed');
  // charon initiated: its "initiator key" protects charon → tether, tether's inbound direction (§2.17).
  assertKeysMatchCharon(installs()[0], true, 'IKE_AUTH child');
});

test('strongSwan rekeys the child (CREATE_CHILD_SA with PFS): tether installs the new one and removes the old', async () => {
  const before = installs().length;
  const old = installs().at(-1)!;
  swanctl('--rekey', '--child', 'lan');
  await waitFor('a second install', () => installs().length > before);
  await waitFor('the old child removed', () => removed(old.inboundSpi));
  const { swan } = await checkBothSides('child rekey');
  const fresh = installs().at(-1)!;
  assertKeysMatchCharon(fresh, true, 'PFS child');
  assert.ok(!swan.children.some((c) => c.state === 'INSTALLED' && c.spiOut === spiHex(old.inboundSpi)), 'charon no longer has the old child installed');
});

test('strongSwan rekeys the IKE SA: the same child lives on under new IKE SPIs on both sides', async () => {
  const before = listSas().find((s) => s.state === 'ESTABLISHED')!;
  const child = installs().at(-1)!;
  swanctl('--rekey', '--ike', 'site');
  const swan = await waitFor('charon: a new IKE SA', () => listSas().find((s) => s.state === 'ESTABLISHED' && s.spiI !== before.spiI && s.children.some((c) => c.state === 'INSTALLED')));
  await checkBothSides('IKE rekey');
  assert.ok(!removed(child.inboundSpi), 'the child SA was not removed by the IKE rekey');
  assert.equal(swan.children.find((c) => c.state === 'INSTALLED')?.spiOut, spiHex(child.inboundSpi));
  await waitFor('the old IKE SA gone from tether', async () => !(await tetherStatus()).sas.some((s) => s.spiI === before.spiI && s.state === 'established'));
});

test('strongSwan deletes the IKE SA: tether removes the child and reports the peer down', async () => {
  const child = installs().at(-1)!;
  const downs = events.filter((e) => e.event === 'state' && !(e as { up: boolean }).up).length;
  swanctl('--terminate', '--ike', 'site', '--timeout', '10');
  await waitFor('the child removed', () => removed(child.inboundSpi));
  await waitFor('peer down', () => events.filter((e) => e.event === 'state' && !(e as { up: boolean }).up).length > downs);
  await waitFor('no IKE SA left on charon', () => listSas().length === 0);
});

test('tether initiates, strongSwan responds and narrows 0.0.0.0/0 to its selectors', async () => {
  send({ cmd: 'removePeer', onramp: ONRAMP });
  send({ cmd: 'addPeer', config: tetherConfig('initiate') });
  const before = installs().length;
  send({ cmd: 'initiate', onramp: ONRAMP });
  await waitFor('tether installs the child', () => installs().length > before);
  const { swan, tether } = await checkBothSides('tether → charon');
  assert.equal(tether.role, 'initiator');
  const child = swan.children.find((c) => c.state === 'INSTALLED')!;
  assert.deepEqual([child.localTs, child.remoteTs], [SWAN_LAN, TETHER_LAN]);
  const ours = tether.children.at(-1)!;
  assert.deepEqual([ours.localTs, ours.remoteTs], [[TETHER_LAN], [SWAN_LAN]], 'tether took the narrowed selectors');
  const mine = installs().at(-1)!;
  assertKeysMatchCharon(mine, false, 'tether initiating');
  const { drops } = await tetherStatus();
  console.log(`tether IKE drops over the run: ${JSON.stringify(drops)}`);
});

/**
 * Issue 9 §2's proposal set, each transform at least once (strongSwan's keywords; the ESP DH group is the PFS group
 * of the child rekey): IKE AES-GCM-16-128/256 and AES-CBC-128/256 with HMAC-SHA2-256/384/512, PRF-HMAC-SHA2-256/384/512,
 * groups 14, 19, 20, 31; ESP AES-GCM-16-128/256 and AES-CBC-256 with HMAC-SHA2-256-128.
 */
const MATRIX: Array<{ ike: string; esp: string }> = [
  { ike: 'aes128gcm16-prfsha256-ecp256', esp: 'aes256gcm16-ecp256' },
  { ike: 'aes256gcm16-prfsha384-ecp384', esp: 'aes128gcm16-ecp384' },
  { ike: 'aes256gcm16-prfsha512-curve25519', esp: 'aes256-sha256-curve25519' },
  { ike: 'aes128-sha256-prfsha256-modp2048', esp: 'aes256-sha256-modp2048' },
  { ike: 'aes256-sha384-prfsha384-ecp256', esp: 'aes128gcm16-ecp256' },
  { ike: 'aes256-sha512-prfsha512-ecp384', esp: 'aes256gcm16-ecp384' },
];

function pick<T extends string>(all: readonly T[], proposal: string): T[] {
  const parts = proposal.split('-');
  return all.filter((a) => parts.includes(a));
}
const ikeProposal = (p: string): IkeProposal => ({ encryption: pick(ENCRYPTION_ALGORITHMS, p), integrity: pick(INTEGRITY_ALGORITHMS, p), prf: pick(PRF_ALGORITHMS, p), dh: pick(DH_GROUPS, p) });
const espProposal = (p: string): EspProposal => ({ encryption: pick(ENCRYPTION_ALGORITHMS, p), integrity: pick(INTEGRITY_ALGORITHMS, p), dh: pick(DH_GROUPS, p) });

/**
 * Both sides back to nothing. The peer goes first: in 'initiate' mode the engine restarts an IKE SA the other side
 * deleted (as it should), so a charon-side terminate alone would be answered by a new IKE_SA_INIT.
 */
async function terminateAll(): Promise<void> {
  send({ cmd: 'removePeer', onramp: ONRAMP });
  await waitFor('no IKE SA left on tether', async () => (await tetherStatus()).sas.length === 0);
  if (listSas().length > 0) swanctl('--terminate', '--ike', 'site', '--timeout', '10');
  await waitFor('no IKE SA left on charon', () => listSas().length === 0);
}

test('a wrong PSK, either way: AUTHENTICATION_FAILED, nothing installed, nothing kept', async () => {
  await terminateAll();
  writeFileSync(join(dir, 'swanctl', 'swanctl.conf'), swanctlConf());
  swanctl('--load-all', '--file', join(dir, 'swanctl', 'swanctl.conf'));
  const wrong = { ...tetherConfig('respond'), psk: 'not-the-psk-charon-has' };
  const installed = installs().length;
  // charon initiates: tether's AUTH check fails (counted), it answers AUTHENTICATION_FAILED and keeps no SA.
  send({ cmd: 'addPeer', config: wrong });
  const before = (await tetherStatus()).drops.auth_failed ?? 0;
  assert.throws(() => swanctl('--initiate', '--child', 'lan', '--timeout', '20'), 'charon reports the failed initiation');
  assert.match(readFileSync(join(dir, 'charon.log'), 'utf8'), /AUTHENTICATION_FAILED/, 'charon received AUTHENTICATION_FAILED');
  await waitFor('auth_failed counted', async () => ((await tetherStatus()).drops.auth_failed ?? 0) > before);
  await waitFor('nothing kept on tether (only the idle peer row)', async () => (await tetherStatus()).sas.every((sa) => sa.state === 'idle'));
  assert.equal(installs().length, installed, 'no child installed');
  await terminateAll();
  // tether initiates: charon refuses tether's AUTH with AUTHENTICATION_FAILED; tether counts it and keeps nothing.
  send({ cmd: 'addPeer', config: { ...wrong, mode: 'initiate' } });
  const peerErrors = (await tetherStatus()).drops.peer_error ?? 0;
  send({ cmd: 'initiate', onramp: ONRAMP });
  await waitFor('charon refused tether\'s AUTH', () => /MAC mismatched[\s\S]*N\(AUTH_FAILED\)/.test(readFileSync(join(dir, 'charon.log'), 'utf8')));
  await waitFor('tether counted the AUTHENTICATION_FAILED answer', async () => ((await tetherStatus()).drops.peer_error ?? 0) > peerErrors);
  const after = await tetherStatus();
  assert.ok(!after.sas.some((sa) => sa.state === 'established'), 'no IKE SA established on tether');
  assert.equal(installs().length, installed, 'no child installed');
  assert.equal(listSas().filter((sa) => sa.state === 'ESTABLISHED').length, 0, 'charon kept nothing');
  await terminateAll();
});

test('the proposal matrix of issue 9 §2 negotiates with strongSwan both ways, with a PFS child rekey', async () => {
  await terminateAll();
  const rows: string[] = [];
  for (const row of MATRIX) {
    writeFileSync(join(dir, 'swanctl', 'swanctl.conf'), swanctlConf(row.ike, row.esp));
    swanctl('--load-all', '--file', join(dir, 'swanctl', 'swanctl.conf'));
    const config = (mode: 'initiate' | 'respond') => ({ ...tetherConfig(mode), ikeProposals: [ikeProposal(row.ike)], espProposals: [espProposal(row.esp)] });
    const encryption = espProposal(row.esp).encryption[0];
    const what = `${row.ike} / ${row.esp}`;

    // tether initiates; charon then rekeys the child with PFS.
    send({ cmd: 'addPeer', config: config('initiate') });
    let before = installs().length;
    send({ cmd: 'initiate', onramp: ONRAMP });
    await waitFor(`${what}: tether → charon`, () => installs().length > before);
    const { swan } = await checkBothSides(`${what}, tether initiating`, encryption);
    let mine = installs().at(-1)!;
    assertKeysMatchCharon(mine, false, what);
    before = installs().length;
    swanctl('--rekey', '--child', 'lan');
    await waitFor(`${what}: PFS rekey`, () => installs().length > before && removed(mine.inboundSpi));
    const rekeyed = await checkBothSides(`${what}, PFS rekey`, encryption);
    mine = installs().at(-1)!;
    assertKeysMatchCharon(mine, true, `${what}, PFS rekey`);
    await terminateAll();

    // charon initiates, tether responds.
    send({ cmd: 'addPeer', config: config('respond') });
    before = installs().length;
    swanctl('--initiate', '--child', 'lan', '--timeout', '20');
    await waitFor(`${what}: charon → tether`, () => installs().length > before);
    await checkBothSides(`${what}, charon initiating`, encryption);
    mine = installs().at(-1)!;
    assertKeysMatchCharon(mine, true, `${what}, charon initiating`);
    await terminateAll();
    const pfsChild = rekeyed.swan.children.filter((c) => c.state === 'INSTALLED').at(-1)!;
    rows.push(`| ${row.ike.padEnd(34)} | ${row.esp.padEnd(25)} | ${swan.algorithms.padEnd(52)} | ${pfsChild.algorithms.padEnd(40)} | pass both ways |`);
  }
  console.log(['| IKE (tether = charon) | ESP | charon: IKE SA | charon: child after PFS rekey | result |', '| --- | --- | --- | --- | --- |', ...rows].join('\n'));
});
