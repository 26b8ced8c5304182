/**
 * Both ends of a tunnel initiating at once, against wireguard-go (test/e2e/wg-simultaneous.test.ts): run in the
 * tether-side namespace with `ip netns exec NS node --import tsx test/support/wg-cross.ts '<json>'`. Tether's
 * WireGuard engine on a kernel UDP socket is one end; wireguard-go in the other namespace is the other.
 *
 * Each round starts both ends fresh (a new engine; the peer removed from wireguard-go and added again) and makes
 * the two initiations cross on purpose: the engine's first packet (an echo request) is staged and its initiation
 * held back; `ping` in wireguard-go's namespace makes wireguard-go initiate; once that initiation has arrived here
 * and `holdMs` has passed, the engine answers it with its own initiation outstanding, and the two are released in
 * the round's order ('initiation-first': our initiation, then our answer after a gap, so wireguard-go answers ours
 * first, replacing its own initiation's state, and refuses our answer; 'answer-first': our answer, which completes
 * wireguard-go's handshake, then our initiation after the gap). From then on datagrams flow freely. The round is done when both echo requests are answered (the engine answers wireguard-go's ping
 * itself). One JSON line per round on stdout; exits 0 when every round ran (converged or not: the test judges).
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { run, runOk, sleep } from '../../src/lab/exec.js';
import { MSG_INITIATION } from '../../src/onramp/wireguard/constants.js';
import { WG_DROP_NAMES, WireGuardDevice, keyFromBase64, type Outgoing } from '../../src/onramp/wireguard/index.js';
import { readU32LE } from '../../src/onramp/wireguard/noise.js';
import { buildIcmpEcho, parsePacket } from '../../src/wire/build.js';
import { UdpEndpoint } from '../../src/wire/endpoint.js';

export type CrossOrder = 'initiation-first' | 'answer-first';

export interface CrossArgs {
  /** Ours (wireguard-go's peer), base64; wireguard-go's public key (the engine's peer). */
  privateKey: string;
  publicKey: string;
  wgPublicKey: string;
  wgNamespace: string;
  wgInterface: string;
  /** Our underlay address and port (bound here), wireguard-go's. */
  local: { addr: string; port: number };
  remote: { addr: string; port: number };
  /** Inner addresses: ours (wireguard-go routes it to us), wireguard-go's. */
  innerLocal: string;
  innerRemote: string;
  rounds: Array<{ holdMs: number; order: CrossOrder }>;
  /** ping's -W, and the round's limit. */
  roundTimeoutMs: number;
}

export interface CrossRound {
  round: number;
  holdMs: number;
  order: CrossOrder;
  /** Our echo request answered, and wireguard-go's ping answered (ping exited 0). */
  ourReply: boolean;
  pingExit: number | null;
  /** Initiations we sent and wireguard-go sent during the round (1 each: no retry was needed). */
  ourInitiations: number;
  wgInitiations: number;
  elapsedMs: number;
  /** The engine's non-zero drop counters. */
  drops: Record<string, number>;
}

const POLL_MS = 10;
/** Between the two datagrams released after the hold: keeps their order through wireguard-go's handshake queue. */
const RELEASE_GAP_MS = 50;
const ECHO_ID = 0x7773;
const ICMP_ECHO_REQUEST = 8;
const ICMP_ECHO_REPLY = 0;
const ICMP_ID_OFF = 4;
const ICMP_SEQ_OFF = 6;
const ICMP_HEADER_LEN = 8;
const SEND_PAYLOAD = new TextEncoder().encode('both ends at once');

const args = JSON.parse(process.argv[2]) as CrossArgs;
const privateKey = keyFromBase64(args.privateKey);
const wgKey = keyFromBase64(args.wgPublicKey);
if (privateKey === null || wgKey === null) throw new Error('wg-cross: bad keys');

const sock = dgram.createSocket('udp4');

/** The current round's state; the socket and poll handlers act on it. */
let device: WireGuardDevice | null = null;
let holding = true;
let held: Uint8Array[] = [];
let wgInitiationSeen: (() => void) | null = null;
let roundNo = 0;
let ourReply = false;
let ourInitiations = 0;
let wgInitiations = 0;

function sendAll(list: Outgoing[]): void {
  for (const o of list) {
    if (readU32LE(o.data, 0) === MSG_INITIATION) ourInitiations++;
    sock.send(o.data, o.endpoint.port, o.endpoint.addressText());
  }
}

/** Hands a datagram to the engine and sends what it answers, or keeps the answer in `later` (copied). */
function feed(msg: Uint8Array, later?: Outgoing[]): void {
  if (device === null) return;
  const source = UdpEndpoint.parse(args.remote.addr, args.remote.port)!;
  const r = device.receive(msg, source, performance.now());
  if (later === undefined) sendAll(r.datagrams);
  else for (const o of r.datagrams) later.push({ ...o, data: o.data.slice() });
  if (r.kind !== 'data' || r.packet === null) return;
  const packet = r.packet.slice();
  const p = parsePacket(packet);
  const l4 = p.l4Offset;
  const type = packet[l4];
  const id = (packet[l4 + ICMP_ID_OFF] << 8) | packet[l4 + ICMP_ID_OFF + 1];
  const seq = (packet[l4 + ICMP_SEQ_OFF] << 8) | packet[l4 + ICMP_SEQ_OFF + 1];
  if (type === ICMP_ECHO_REQUEST && p.src === args.innerRemote) {
    const reply = buildIcmpEcho({ src: args.innerLocal, dst: args.innerRemote }, { type: 'reply', id, seq, payload: packet.subarray(l4 + ICMP_HEADER_LEN, p.ipLength) });
    sendAll(device.send(0, reply, performance.now()));
  } else if (type === ICMP_ECHO_REPLY && id === ECHO_ID && seq === roundNo) {
    ourReply = true;
  }
}

sock.on('message', (msg) => {
  const data = new Uint8Array(msg.buffer, msg.byteOffset, msg.length).slice();
  const isInitiation = data.length >= 4 && readU32LE(data, 0) === MSG_INITIATION;
  if (isInitiation) wgInitiations++;
  if (holding) {
    held.push(data);
    if (isInitiation && wgInitiationSeen !== null) wgInitiationSeen();
    return;
  }
  feed(data);
});

const poll = setInterval(() => {
  if (device !== null && !holding) sendAll(device.poll(performance.now()));
}, POLL_MS);

async function oneRound(round: number, holdMs: number, order: CrossOrder): Promise<CrossRound> {
  const wg = (...a: string[]) => runOk('ip', ['netns', 'exec', args.wgNamespace, 'wg', 'set', args.wgInterface, ...a]);
  // Fresh ends: wireguard-go forgets the peer (sessions, handshake, timestamps); a new engine here.
  await wg('peer', args.publicKey, 'remove');
  await wg('peer', args.publicKey, 'endpoint', `${args.local.addr}:${args.local.port}`, 'allowed-ips', `${args.innerLocal}/32`);
  device = new WireGuardDevice({
    privateKey: privateKey!,
    wallClock: Date.now,
    peers: [{ publicKey: wgKey!, allowedIps: [`${args.innerRemote}/32`], endpoint: args.remote }],
  });
  roundNo = round;
  holding = true;
  held = [];
  ourReply = false;
  ourInitiations = wgInitiations = 0;
  const started = performance.now();

  // Our first packet: staged, its initiation held back.
  const request = buildIcmpEcho({ src: args.innerLocal, dst: args.innerRemote }, { type: 'request', id: ECHO_ID, seq: round, payload: SEND_PAYLOAD });
  const ours = device.send(0, request, performance.now()).map((o) => ({ ...o, data: o.data.slice() }));
  // wireguard-go's first packet: its initiation arrives here and is held too.
  const seen = new Promise<void>((resolve) => { wgInitiationSeen = resolve; });
  const ping = spawn('ip', ['netns', 'exec', args.wgNamespace, 'ping', '-n', '-c', '1', '-W', String(Math.ceil(args.roundTimeoutMs / 1000)), args.innerLocal], { stdio: 'ignore' });
  const pingDone = new Promise<number | null>((resolve) => ping.on('exit', (code) => resolve(code)));
  let pingExit: number | null = null;
  void pingDone.then((c) => { pingExit = c; });
  await Promise.race([seen, sleep(args.roundTimeoutMs)]);
  wgInitiationSeen = null;
  await sleep(holdMs);

  const theirs = held;
  held = [];
  holding = false;
  if (order === 'initiation-first') {
    // Ours out, theirs consumed in the same tick: the engine answers with its own initiation outstanding, before
    // wireguard-go's response to it can arrive. Our answer leaves after the gap, so wireguard-go has taken our
    // initiation first and replaced its own initiation's state (it will refuse our answer).
    sendAll(ours);
    const answers: Outgoing[] = [];
    for (const m of theirs) feed(m, answers);
    await sleep(RELEASE_GAP_MS);
    sendAll(answers);
  } else {
    // Our answer first (wireguard-go completes its own handshake with it), our initiation after the gap.
    for (const m of theirs) feed(m);
    await sleep(RELEASE_GAP_MS);
    sendAll(ours);
  }
  const deadline = started + args.roundTimeoutMs;
  while ((!ourReply || pingExit === null) && performance.now() < deadline) await sleep(POLL_MS);
  if (pingExit === null) ping.kill();
  const drops: Record<string, number> = {};
  device.drops.forEach((n, i) => { if (n > 0) drops[WG_DROP_NAMES[i]] = n; });
  const result: CrossRound = { round, holdMs, order, ourReply, pingExit, ourInitiations, wgInitiations, elapsedMs: Math.round(performance.now() - started), drops };
  device = null;
  return result;
}

sock.bind(args.local.port, args.local.addr, () => {
  void (async () => {
    for (let i = 0; i < args.rounds.length; i++) {
      const r = args.rounds[i];
      process.stdout.write(`${JSON.stringify(await oneRound(i + 1, r.holdMs, r.order))}\n`);
    }
    clearInterval(poll);
    sock.close();
    // wireguard-go keeps nothing of ours between test runs.
    await run('ip', ['netns', 'exec', args.wgNamespace, 'wg', 'set', args.wgInterface, 'peer', args.publicKey, 'remove']);
  })().catch((e: unknown) => {
    process.stderr.write(`wg-cross: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(2);
  });
});
