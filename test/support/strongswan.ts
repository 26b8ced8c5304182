/**
 * The strongSwan rig for tests (issue 9): a site router running strongSwan (src/lab/strongswan.ts) in a
 * namespace, with the site's host address 10.0.1.10 behind it, and the checks every IPsec interop test runs
 * against "the other side" — a second strongSwan today (test/e2e/strongswan-rig.test.ts), tether's IPsec
 * onramp later: the proposal matrix of issue 9 §2, traffic through the tunnel, child and IKE rekeys under a
 * TCP transfer, and strongSwan killed and restarted mid-traffic.
 *
 * The other side is an IpsecPeerSide: whatever answers IKE at the site's remote address, forwards what comes
 * out of the tunnel to a server that runs src/lab/servers.ts (UDP echo, HTTP, /download), and can be told
 * which proposals to accept. The checks drive the site's strongSwan and look at traffic from the site's host;
 * they ask the other side only what it must know.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ip, run, sleep } from '../../src/lab/exec.js';
import { startDownload, type DownloadResult } from '../../src/lab/failover.js';
import { udpExchange } from '../../src/lab/helpers.js';
import { labSourceFile, nodeTsArgs, REPO_ROOT } from '../../src/lab/paths.js';
import { StrongSwan, type SwanChildSa, type SwanIkeSa } from '../../src/lab/strongswan.js';
import { nsSpawn } from './ns-child.js';

export {
  StrongSwan, strongSwanRunDir, removeStrongSwanRun, removeStaleStrongSwanRuns, missingStrongSwan, STRONGSWAN_RUN_ROOT,
  type StrongSwanOptions, type SwanIkeSa, type SwanChildSa, type SwanIdentity,
} from '../../src/lab/strongswan.js';

// ─── The proposal matrix (issue 9 §2) ────────────────────────────────────────────────────────────────

/** What strongSwan's list-sas shows for each proposal keyword (algorithm names of libstrongswan). */
const ENCRYPTION: Record<string, { encr: string; keySize: number; aead: boolean }> = {
  aes128gcm16: { encr: 'AES_GCM_16', keySize: 128, aead: true },
  aes256gcm16: { encr: 'AES_GCM_16', keySize: 256, aead: true },
  aes128: { encr: 'AES_CBC', keySize: 128, aead: false },
  aes256: { encr: 'AES_CBC', keySize: 256, aead: false },
};
const INTEGRITY: Record<string, string> = { sha256: 'HMAC_SHA2_256_128', sha384: 'HMAC_SHA2_384_192', sha512: 'HMAC_SHA2_512_256' };
const PRF: Record<string, string> = { prfsha256: 'PRF_HMAC_SHA2_256', prfsha384: 'PRF_HMAC_SHA2_384', prfsha512: 'PRF_HMAC_SHA2_512' };
const DH: Record<string, string> = { modp2048: 'MODP_2048', ecp256: 'ECP_256', ecp384: 'ECP_384', curve25519: 'CURVE_25519' };

/** IKE SA ciphers of the matrix: AES-GCM-16 128/256, AES-CBC-128/256 with HMAC-SHA2-256/384/512. */
export const IKE_CIPHERS = ['aes128gcm16', 'aes256gcm16', 'aes128-sha256', 'aes256-sha256', 'aes256-sha384', 'aes256-sha512'] as const;
export const IKE_PRFS = ['prfsha256', 'prfsha384', 'prfsha512'] as const;
export const DH_GROUPS = ['modp2048', 'ecp256', 'ecp384', 'curve25519'] as const;
/** ESP ciphers: AES-GCM-16 128/256 (RFC 4106), AES-CBC-256 with HMAC-SHA2-256-128. */
export const ESP_CIPHERS = ['aes128gcm16', 'aes256gcm16', 'aes256-sha256'] as const;

export interface ProposalCase {
  /** Short name for the printed matrix. */
  id: string;
  /** strongSwan proposal strings. */
  ike: string;
  esp: string;
  /** Rekey the child after it is up: the ESP proposal's group is PFS there (RFC 7296 §1.3.1), not in IKE_AUTH. */
  rekeyChild: boolean;
  /** What list-sas must show. */
  expectIke: string;
  expectEsp: string;
  /** After the child rekey (with the PFS group). */
  expectEspRekeyed: string;
}

function cipherParts(cipher: string): { enc: string; integ: string | null } {
  const [enc, integ] = cipher.split('-');
  return { enc, integ: integ ?? null };
}

function expected(cipher: string, extra: Array<string | null>): string {
  const { enc, integ } = cipherParts(cipher);
  const e = ENCRYPTION[enc];
  return [`${e.encr}_${e.keySize}`, integ === null ? null : INTEGRITY[integ], ...extra].filter((x): x is string => x !== null).join('/');
}

/**
 * The matrix: every IKE cipher with every DH group (the PRF cycling through SHA2-256/384/512, so each appears
 * with every cipher family), each with the default ESP; then every ESP cipher with every PFS group, the child
 * rekeyed to use it.
 */
export function proposalMatrix(): ProposalCase[] {
  const cases: ProposalCase[] = [];
  const defaultEsp = 'aes128gcm16';
  let i = 0;
  for (const cipher of IKE_CIPHERS) {
    for (const dh of DH_GROUPS) {
      const prf = IKE_PRFS[i++ % IKE_PRFS.length];
      cases.push({
        id: `ike ${cipher}-${prf}-${dh}`,
        ike: `${cipher}-${prf}-${dh}`,
        esp: defaultEsp,
        rekeyChild: false,
        expectIke: expected(cipher, [PRF[prf], DH[dh]]),
        expectEsp: expected(defaultEsp, []),
        expectEspRekeyed: expected(defaultEsp, []),
      });
    }
  }
  for (const cipher of ESP_CIPHERS) {
    for (const dh of DH_GROUPS) {
      cases.push({
        id: `esp ${cipher}-${dh}`,
        ike: 'aes256gcm16-prfsha256-ecp256',
        esp: `${cipher}-${dh}`,
        rekeyChild: true,
        expectIke: expected('aes256gcm16', [PRF.prfsha256, DH.ecp256]),
        expectEsp: expected(cipher, []),
        expectEspRekeyed: expected(cipher, [DH[dh]]),
      });
    }
  }
  return cases;
}

// ─── The other side, the site, the traffic ───────────────────────────────────────────────────────────

/** The peer the site's strongSwan talks to: a second strongSwan here, tether's IPsec onramp later. */
export interface IpsecPeerSide {
  name: string;
  /** Accept (and propose, when it initiates) exactly these strongSwan proposal strings from now on. */
  setProposals(ike: string, esp: string): Promise<void>;
  /** Forget every SA with the site (between matrix rows; a DELETE the site sends covers most of it). */
  reset(): Promise<void>;
  /** How many IKE SAs it holds with the site (after a restart: the stale one must be gone). */
  ikeSaCount(): Promise<number>;
  /** Bring the tunnel up from this side ("tether initiates to strongSwan"). */
  initiate(): Promise<void>;
}

/** The site: its strongSwan, and where its host (10.0.1.10 behind it) runs clients. */
export interface IpsecSite {
  swan: StrongSwan;
  /** The namespace whose address 10.0.1.10 sends through the tunnel (the router itself, or a LAN host). */
  hostNs: string;
}

/** A server reached through the tunnel, running src/lab/servers.ts (UDP echo, HTTP, /download). */
export interface IpsecTarget {
  address: string;
  udpPort: number;
  httpPort: number;
}

/** UDP echoes from the site's host through the tunnel: how many of `count` came back, each with its own payload. */
export async function echoesThrough(site: IpsecSite, target: IpsecTarget, count = 3, tag = 'ipsec'): Promise<number> {
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const payload = `${tag}-${i}-${Date.now()}`;
    const r = await udpExchange(site.hostNs, target.address, target.udpPort, payload, { timeoutMs: 2000 });
    if (r.kind === 'reply' && r.payload.includes(payload)) ok++;
  }
  return ok;
}

/** Waits until a UDP echo crosses the tunnel (after initiate or a restart). */
export async function waitForEcho(site: IpsecSite, target: IpsecTarget, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await echoesThrough(site, target, 1, what)) === 0) {
    if (Date.now() > deadline) throw new Error(`${what}: no UDP echo from ${target.address}:${target.udpPort} through the tunnel within ${timeoutMs} ms\n${site.swan.tail()}`);
    await sleep(200);
  }
}

// ─── The checks ──────────────────────────────────────────────────────────────────────────────────────

export interface MatrixRow {
  id: string;
  ike: string;
  esp: string;
  /** What the site's strongSwan negotiated (list-sas). */
  ikeSeen: string;
  espSeen: string;
  espAfterRekey: string | null;
  echoes: number;
  echoesAfterRekey: number | null;
  ok: boolean;
  error?: string;
}

/** One row: both sides set to the proposals, the site initiates, the algorithms are checked, UDP echoes pass (and again after a PFS rekey). */
export async function checkProposal(site: IpsecSite, peer: IpsecPeerSide, target: IpsecTarget, c: ProposalCase): Promise<MatrixRow> {
  const row: MatrixRow = { id: c.id, ike: c.ike, esp: c.esp, ikeSeen: '', espSeen: '', espAfterRekey: null, echoes: 0, echoesAfterRekey: null, ok: false };
  try {
    await site.swan.terminate();
    await peer.reset();
    await peer.setProposals(c.ike, c.esp);
    await site.swan.reconfigure({ ikeProposals: [c.ike], espProposals: [c.esp] });
    await site.swan.initiate();
    const e = await site.swan.waitEstablished(c.id);
    row.ikeSeen = e.ike.algorithms;
    row.espSeen = e.child.algorithms;
    row.echoes = await echoesThrough(site, target, 3, c.id.replace(/\s/g, '_'));
    let ok = row.ikeSeen === c.expectIke && row.espSeen === c.expectEsp && row.echoes === 3;
    if (c.rekeyChild) {
      const { after } = await site.swan.rekeyChild();
      row.espAfterRekey = after.algorithms;
      row.echoesAfterRekey = await echoesThrough(site, target, 3, `${c.id.replace(/\s/g, '_')}-rekeyed`);
      ok &&= row.espAfterRekey === c.expectEspRekeyed && row.echoesAfterRekey === 3;
    }
    row.ok = ok;
  } catch (err) {
    row.error = (err as Error).message.split('\n')[0];
  }
  return row;
}

/** Runs every case; returns the rows (a failed row carries its error instead of throwing). */
export async function runProposalMatrix(site: IpsecSite, peer: IpsecPeerSide, target: IpsecTarget, cases: ProposalCase[] = proposalMatrix()): Promise<MatrixRow[]> {
  const rows: MatrixRow[] = [];
  for (const c of cases) rows.push(await checkProposal(site, peer, target, c));
  return rows;
}

/** The matrix as a table (printed by the tests). */
export function formatMatrix(rows: MatrixRow[], peerName: string): string {
  const head = ['', 'case', 'IKE negotiated', 'ESP negotiated', 'ESP after PFS rekey', 'echoes'];
  const lines = rows.map((r) => [
    r.ok ? 'PASS' : 'FAIL', r.id, r.ikeSeen || '-', r.espSeen || '-', r.espAfterRekey ?? '', `${r.echoes}/3${r.echoesAfterRekey === null ? '' : ` ${r.echoesAfterRekey}/3`}${r.error ? `  ${r.error}` : ''}`,
  ]);
  const all = [head, ...lines];
  const w = head.map((_, i) => Math.max(...all.map((l) => l[i].length)));
  const text = all.map((l) => l.map((x, i) => x.padEnd(w[i])).join('  ').trimEnd()).join('\n');
  return `IPsec proposal matrix, strongSwan site ↔ ${peerName} (${rows.filter((r) => r.ok).length}/${rows.length} pass)\n${text}`;
}

export interface TransferResult {
  download: DownloadResult;
  /** The rekeys done while the transfer ran. */
  childRekey?: { before: SwanChildSa; after: SwanChildSa };
  ikeRekey?: { before: SwanIkeSa; after: SwanIkeSa };
  /** Bytes the transfer had received when each step started. */
  marks: Record<string, number>;
}

/** Bytes of the transfer used by the rekey and restart checks: long enough to span them at the rig's ~0.2–0.3 Gbit/s. */
export const TRANSFER_BYTES = 96 * 1024 * 1024;

/**
 * A checksummed TCP download (servers.ts /download) from the target to the site's host; once it is under way,
 * the child SA and then the IKE SA are rekeyed by the site. The caller checks the result: complete, the hash
 * the server sent, no error (no reset).
 */
export async function rekeyUnderTransfer(site: IpsecSite, target: IpsecTarget, bytes = TRANSFER_BYTES): Promise<TransferResult> {
  const url = `http://${target.address}:${target.httpPort}/download?bytes=${bytes}`;
  const dl = startDownload(site.hostNs, url, { progressBytes: 1024 * 1024, idleTimeoutMs: 20_000 });
  const marks: Record<string, number> = {};
  marks.childRekey = await dl.reached(Math.floor(bytes / 8));
  const childRekey = await site.swan.rekeyChild();
  marks.ikeRekey = await dl.reached(Math.floor(bytes / 3));
  const ikeRekey = await site.swan.rekeyIke();
  return { download: await dl.result, childRekey, ikeRekey, marks };
}

export interface RestartResult {
  download: DownloadResult;
  /** IKE SAs the other side held once traffic flowed again (1: the one from before the restart was cleaned up). */
  peerIkeSas: number;
  before: SwanIkeSa;
  after: SwanIkeSa;
  marks: Record<string, number>;
}

/**
 * strongSwan restarted mid-traffic: a TCP download runs, the site's charon is killed (SIGKILL: no DELETE
 * reaches the other side) and started again; it initiates with INITIAL_CONTACT (RFC 7296 §3.16), so the other
 * side must drop the old IKE SA at once. The caller checks the download and the other side's SA count.
 */
export async function restartUnderTransfer(site: IpsecSite, peer: IpsecPeerSide, target: IpsecTarget, bytes = TRANSFER_BYTES): Promise<RestartResult> {
  const url = `http://${target.address}:${target.httpPort}/download?bytes=${bytes}`;
  const before = (await site.swan.waitEstablished('the SA before the restart')).ike;
  const dl = startDownload(site.hostNs, url, { progressBytes: 1024 * 1024, idleTimeoutMs: 30_000 });
  const marks: Record<string, number> = {};
  marks.restart = await dl.reached(Math.floor(bytes / 8));
  await site.swan.restart();
  if (site.swan.opts.startAction !== 'start') await site.swan.initiate();
  const after = (await site.swan.waitEstablished('the SA after the restart')).ike;
  const download = await dl.result;
  return { download, peerIkeSas: await peer.ikeSaCount(), before, after, marks };
}

/** A strongSwan instance as the other side (the rig's own test). */
export function strongSwanPeerSide(swan: StrongSwan): IpsecPeerSide {
  return {
    name: `strongSwan (${swan.opts.name})`,
    async setProposals(ike, esp) {
      await swan.reconfigure({ ikeProposals: [ike], espProposals: [esp] });
    },
    async reset() {
      for (const sa of await swan.listSas()) await swan.terminate(sa.name);
    },
    async ikeSaCount() {
      return (await swan.listSas()).filter((s) => s.state === 'ESTABLISHED').length;
    },
    async initiate() {
      await swan.initiate();
    },
  };
}

// ─── The lab's servers in a namespace ────────────────────────────────────────────────────────────────

export interface RunningServers {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** SIGTERM; resolves when the child has exited. */
function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** src/lab/servers.ts (HTTP 80 with /download, UDP echo 7) on `address` in `ns`; resolves once it is ready. */
export async function startLabServers(ns: string, name: string, address: string, target: Pick<IpsecTarget, 'httpPort' | 'udpPort'>): Promise<RunningServers> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...nodeTsArgs(labSourceFile('servers.ts'), [
    '--name', name, '--address', address, '--http', String(target.httpPort), '--udp', String(target.udpPort),
  ])], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr?.on('data', (b: Buffer) => stderr.push(b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`servers in ${ns}: not ready after 30 s: ${stderr.join('')}`)), 30_000);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l.includes('"ready":true')) { clearTimeout(timer); resolve(); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`servers in ${ns} exited (${code}): ${stderr.join('')}`)); });
  });
  child.stdout?.resume();
  return { child, stop: () => stopChild(child) };
}

const UDP_ECHO_SERVER = `
const [address, port] = process.argv.slice(1);
const s = require('node:dgram').createSocket(address.includes(':') ? 'udp6' : 'udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(Number(port), address, () => console.log('ready'));
`;

const UDP_ECHO_CLIENT = `
const [dst, port, payload, timeoutMs] = process.argv.slice(1);
const s = require('node:dgram').createSocket(dst.includes(':') ? 'udp6' : 'udp4');
s.on('message', (m) => { process.stdout.write(m.toString()); process.exit(0); });
s.send(payload, Number(port), dst);
setTimeout(() => process.exit(3), Number(timeoutMs));
`;

/** A bare UDP echo (IPv4 or IPv6, by the address) in `ns` (servers.ts is IPv4 only); resolves once it listens. */
export async function startUdpEcho(ns: string, address: string, port: number): Promise<RunningServers> {
  const echo = nsSpawn(ns, ['-e', UDP_ECHO_SERVER, address, String(port)]);
  await echo.waitFor('ready');
  return { child: echo.child, stop: () => stopChild(echo.child) };
}

/** One datagram from `ns` to a UDP echo (IPv4 or IPv6): true when the same payload came back. */
export async function udpEchoes(ns: string, dst: string, port: number, payload: string, timeoutMs = 2000): Promise<boolean> {
  const r = await run('ip', ['netns', 'exec', ns, process.execPath, '-e', UDP_ECHO_CLIENT, dst, String(port), payload, String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
  return r.code === 0 && r.stdout === payload;
}

/** The underlay veth of a two-namespace rig, created directly in both namespaces. */
export async function underlayVeth(a: { ns: string; name: string; address: string }, b: { ns: string; name: string; address: string }, prefixLength = 24): Promise<void> {
  await ip(a.ns, ['link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns], 'strongSwan rig: underlay veth');
  await ip(a.ns, ['addr', 'add', `${a.address}/${prefixLength}`, 'dev', a.name]);
  await ip(b.ns, ['addr', 'add', `${b.address}/${prefixLength}`, 'dev', b.name]);
  await ip(a.ns, ['link', 'set', a.name, 'up']);
  await ip(b.ns, ['link', 'set', b.name, 'up']);
}
