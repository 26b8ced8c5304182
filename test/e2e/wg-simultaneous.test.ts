/**
 * Both ends of a WireGuard tunnel initiating a handshake at the same instant, tether's engine against
 * wireguard-go over real namespaces, a veth and wireguard-go's TUN. Root only: fails loudly, never skips.
 *
 *   ns <P>-t: tether's engine on a UDP socket (test/support/wg-cross.ts) 192.168.207.1:51820, inner 10.207.0.1
 *        │ veth
 *   ns <P>-w: wireguard-go (interface <P>g) 192.168.207.2:51820, inner 10.207.0.2; `ping` makes it initiate
 *
 * Every round makes the two initiations cross (see wg-cross.ts), in both orders of delivery, with no hold and with
 * a hold longer than the largest retry jitter. The long hold is the lab's failure ("no WireGuard handshake after
 * 20000 ms", wireguard-go logging "Received invalid response message"): each end answered the other's initiation
 * more than the jitter after sending its own, so Rekey-Timeout held back both ends' retries, and wireguard-go drops
 * a held-back retry. Every round must converge: both echo requests answered.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureLabTools, inNamespaceOk, isAlive, runOk } from '../../src/lab/index.js';
import { WIREGUARD_SOCKET_DIR } from '../../src/lab/topology.js';
import { keyToBase64 } from '../../src/onramp/wireguard/index.js';
import { addNamespaces, removeNamespaces } from '../support/netns.js';
import { keyPair } from '../support/wireguard.js';
import type { CrossArgs, CrossRound } from '../support/wg-cross.js';

const P = `ws${(process.pid % 46656).toString(36)}`;
const NS_T = `${P}-t`;
const NS_W = `${P}-w`;
const VETH_T = `${P}a`;
const VETH_W = `${P}b`;
const WG_IF = `${P}g`;
const UNDERLAY_T = '192.168.207.1';
const UNDERLAY_W = '192.168.207.2';
const INNER_T = '10.207.0.1';
const INNER_W = '10.207.0.2';
const WG_PORT = 51820;
/** Longer than the largest retry jitter (REKEY_TIMEOUT_JITTER_MAX_MS, 334 ms): both ends' retries are held back. */
const LONG_HOLD_MS = 400;
const ROUNDS_PER_CASE = 5;
/** A round's bound: well under wireguard-go's next try without a retry (none: no persistent keepalive). */
const ROUND_TIMEOUT_MS = 15_000;

const tetherKeys = keyPair(0x7773);
const wgKeys = keyPair(0x7774);
let dir = '';
let wireguardGo: ChildProcess | null = null;

/** What a run with this prefix leaves behind: its namespaces (the veth and wireguard-go's TUN go with them), the socket. */
function removeOwn(): void {
  removeNamespaces([NS_T, NS_W]);
  rmSync(join(WIREGUARD_SOCKET_DIR, `${WG_IF}.sock`), { force: true });
}

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the WireGuard interop test needs root (network namespaces, wireguard-go\'s TUN)');
  await ensureLabTools();
  removeOwn();
  dir = mkdtempSync(join(tmpdir(), `${P}-`));
  addNamespaces([NS_T, NS_W]);
  await runOk('ip', ['link', 'add', VETH_T, 'netns', NS_T, 'type', 'veth', 'peer', 'name', VETH_W, 'netns', NS_W]);
  await runOk('ip', ['-n', NS_T, 'addr', 'add', `${UNDERLAY_T}/24`, 'dev', VETH_T]);
  await runOk('ip', ['-n', NS_W, 'addr', 'add', `${UNDERLAY_W}/24`, 'dev', VETH_W]);
  await runOk('ip', ['-n', NS_T, 'link', 'set', VETH_T, 'up']);
  await runOk('ip', ['-n', NS_W, 'link', 'set', VETH_W, 'up']);

  const log = openSync(join(dir, 'wireguard-go.log'), 'a');
  wireguardGo = spawn('ip', ['netns', 'exec', NS_W, 'wireguard-go', '-f', WG_IF], {
    stdio: ['ignore', log, log],
    // As the lab (src/lab/lab.ts): wireguard-go cannot tell this kernel has no WireGuard module.
    env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'verbose' },
  });
  const socket = join(WIREGUARD_SOCKET_DIR, `${WG_IF}.sock`);
  for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 100));
  if (!existsSync(socket)) throw new Error(`wireguard-go did not open ${socket}:\n${readFileSync(join(dir, 'wireguard-go.log'), 'utf8')}`);
  const keyFile = join(dir, 'wg.key');
  writeFileSync(keyFile, `${keyToBase64(wgKeys.priv)}\n`, { mode: 0o600 });
  await inNamespaceOk(NS_W, 'wg', ['set', WG_IF, 'listen-port', String(WG_PORT), 'private-key', keyFile]);
  await runOk('ip', ['-n', NS_W, 'addr', 'add', `${INNER_W}/32`, 'dev', WG_IF]);
  await runOk('ip', ['-n', NS_W, 'link', 'set', WG_IF, 'up']);
  await runOk('ip', ['-n', NS_W, 'route', 'add', `${INNER_T}/32`, 'dev', WG_IF]);
});

after(async () => {
  if (wireguardGo?.pid !== undefined && isAlive(wireguardGo.pid)) wireguardGo.kill();
  removeOwn();
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

function runRounds(rounds: CrossArgs['rounds']): Promise<{ results: CrossRound[]; stderr: string }> {
  const args: CrossArgs = {
    privateKey: keyToBase64(tetherKeys.priv),
    publicKey: keyToBase64(tetherKeys.pub),
    wgPublicKey: keyToBase64(wgKeys.pub),
    wgNamespace: NS_W,
    wgInterface: WG_IF,
    local: { addr: UNDERLAY_T, port: WG_PORT },
    remote: { addr: UNDERLAY_W, port: WG_PORT },
    innerLocal: INNER_T,
    innerRemote: INNER_W,
    rounds,
    roundTimeoutMs: ROUND_TIMEOUT_MS,
  };
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', NS_T, process.execPath, '--import', 'tsx', 'test/support/wg-cross.ts', JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`wg-cross exited ${code}:\n${err}\n${out}`));
      else resolve({ results: out.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as CrossRound), stderr: err });
    });
  });
}

/** wireguard-go's log lines since `from` (bytes) that name a refused handshake message. */
function refusedByWireguardGo(from: number): string[] {
  return readFileSync(join(dir, 'wireguard-go.log'), 'utf8').slice(from).split('\n').filter((l) => /Received invalid (response|initiation)/.test(l));
}

test('both ends initiate at the same instant (initiations crossing, both delivery orders, with and without a hold past the retry jitter): every round converges, data both ways', async (t) => {
  const rounds: CrossArgs['rounds'] = [];
  for (let i = 0; i < ROUNDS_PER_CASE; i++) {
    for (const holdMs of [0, LONG_HOLD_MS]) for (const order of ['initiation-first', 'answer-first'] as const) rounds.push({ holdMs, order });
  }
  const logStart = readFileSync(join(dir, 'wireguard-go.log'), 'utf8').length;
  const { results } = await runRounds(rounds);
  assert.equal(results.length, rounds.length, 'every round ran');
  for (const r of results) t.diagnostic(JSON.stringify(r));
  t.diagnostic(`wireguard-go refused: ${refusedByWireguardGo(logStart).length} handshake messages (its own initiation's state replaced by answering ours)`);
  const failed = results.filter((r) => !r.ourReply || r.pingExit !== 0);
  assert.deepEqual(failed, [], `rounds that did not converge within ${ROUND_TIMEOUT_MS} ms:\n${failed.map((r) => JSON.stringify(r)).join('\n')}\n` +
    `wireguard-go:\n${readFileSync(join(dir, 'wireguard-go.log'), 'utf8').slice(logStart).split('\n').slice(-40).join('\n')}`);
  // Converged on the first exchange: neither end needed a retry (Rekey-Timeout is 5 s; a round takes well under).
  const retried = results.filter((r) => r.ourInitiations !== 1 || r.wgInitiations !== 1);
  assert.deepEqual(retried, [], 'a round needed a retry');
});
