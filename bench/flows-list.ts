/**
 * `npm run bench:flows-list` — does listing flows hold forwarding back? In process, one thread, like the daemon:
 *
 *   packet stream   one batch of 256 established IPv4 UDP packets per event-loop turn (setImmediate), the way
 *                   TUN reads arrive, over a table of 1 M flows (--flows N)
 *   listing         a client process pages through GET /v1/flows?limit=L with the cursor, back to back (and,
 *                   filtered, with a filter that matches nothing: every request walks its whole slot budget)
 *
 * Phases of --seconds S each — idle, listing, filtered — in --rounds R rounds, the order turning each round: the
 * load of a shared machine drifts over a run, and interleaving spreads the drift over the three.
 *
 *   idle_mpps / listing_mpps / filtered_mpps   the stream's rate with no request, while paging, while filtering:
 *                   packets per second of this process's CPU time (user + system), so that other load on the
 *                   machine, which takes the core away from stream and listing alike, does not enter the ratio;
 *                   *_wall_mpps are the same per second of wall-clock time
 *   ratio, filtered_ratio                      listing_mpps / idle_mpps (goal ≥ 0.9, issue 11)
 *   thread_ratio, filtered_thread_ratio        the same per second of the main thread's CPU time (the packet
 *                                              loop's; /proc/self/task): without V8's and libuv's helper threads
 *   page_ms, filtered_page_ms                  mean time of one request as the client sees it
 *   unsliced_walk_ms                           one walk of every slot without yielding: how long a request
 *                                              that scanned the whole table held the loop (the old listing)
 *
 * Options: --json, --flows N (default 1,000,000), --limit L (default 1000), --seconds S per phase (default 2),
 * --rounds R (default 4), --wall-share (the listing's share measured on the wall clock, as in the daemon,
 * instead of this process's CPU).
 */
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import Fastify from 'fastify';
import { PacketBatch } from '../src/common/packet-batch.js';
import { NEXT_HOP_DROP } from '../src/common/ids.js';
import { Pipeline } from '../src/dataplane/pipeline.js';
import type { OnrampSpec } from '../src/dataplane/ports.js';
import { NextHopKind } from '../src/route/route-table.js';
import { buildUdp } from '../src/wire/build.js';
import { registerFlowRoutes } from '../src/control/api-flows.js';
import { NameBook } from '../src/control/metrics.js';
import { NO_FILTER, walkFlows } from '../src/control/flow-walk.js';
import type { TetherConfig } from '../src/config/index.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const FLOWS = opt('--flows', 1_000_000);
const LIMIT = opt('--limit', 1000);
const SECONDS = opt('--seconds', 2);
const ROUNDS = opt('--rounds', 4);
/** After the client is told to start, before the stream is counted: its first requests are in flight. */
const WARMUP_MS = 300;
const BATCH = 256;
const STREAM_BATCHES = 64;
const SITES = 16;
const SLOT_BYTES = 128;
const PAYLOAD = 36;

const log = (msg: string): void => {
  if (!json) process.stderr.write(`${msg}\n`);
};

/** Flow i: site (i % SITES) + 1, host 10.x.y.z (i / SITES), port 40000, to 203.0.113.(n % 200):53. */
function flowPacket(i: number): { site: number; packet: Uint8Array } {
  const n = Math.floor(i / SITES);
  const packet = buildUdp({ src: (0x0a000000 | (n & 0xffffff)) >>> 0, dst: (0xcb007100 | (n % 200)) >>> 0 }, { srcPort: 40000, dstPort: 53, payload: new Uint8Array(PAYLOAD) });
  return { site: (i % SITES) + 1, packet };
}

function makePipeline(): Pipeline {
  const onramps: OnrampSpec[] = [];
  for (let s = 1; s <= SITES; s++) onramps.push({ id: s, name: `site-${s}`, type: 'wireguard', site: s, automaticReturnRouting: true });
  const pool: string[] = [];
  for (let i = 0; i < 64; i++) pool.push(`198.51.100.${i + 1}`);
  return new Pipeline({
    onramps,
    routes: [{ prefix: '0.0.0.0/0', kind: NextHopKind.Internet }],
    firewall: { rules: [], defaultAction: 'allow' },
    egress: { addresses: pool, portMin: 1024, portMax: 65535 },
    flows: { capacity4: 1 << Math.ceil(Math.log2(FLOWS)), capacity6: 1024 },
  });
}

/**
 * The client, driven by lines on stdin: a query string starts paging through it with the cursor, back to back;
 * "pause" stops after the request in flight and prints that run's requests and time as one JSON line.
 */
const CLIENT = `
const url = process.argv[1];
let query = null, requests = 0, ms = 0, paused = null;
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'pause') { paused = query === null ? (report(), null) : true; query = null; return; }
  query = line; requests = 0; ms = 0; run(line);
});
function report() { process.stdout.write(JSON.stringify({ requests, ms }) + '\\n'); }
async function run(q) {
  let cursor = null;
  while (query === q) {
    const t = performance.now();
    const r = await (await fetch(url + q + (cursor === null ? '' : '&cursor=' + cursor))).json();
    ms += performance.now() - t;
    requests++;
    cursor = r.cursor;
  }
  if (paused) { paused = null; report(); }
}
`;

/** CPU time of this process's main thread (the packet loop's), ms: /proc/self/task/PID/stat, utime + stime. */
const CLOCK_TICKS_PER_S = 100;
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5), counted from the state (field 3) at index 0.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}

async function main(): Promise<void> {
  log(`tether flow-listing benchmark: ${FLOWS.toLocaleString()} flows, pages of ${LIMIT}, ${SECONDS} s a phase, node ${process.version}`);
  const pipeline = makePipeline();
  const batch = new PacketBatch(BATCH, SLOT_BYTES, 0);
  const streamPackets: Array<{ site: number; packet: Uint8Array }> = [];
  for (let i = 0; i < FLOWS; i += BATCH) {
    batch.clear();
    for (let k = 0; k < BATCH && i + k < FLOWS; k++) {
      const f = flowPacket(i + k);
      if (streamPackets.length < BATCH * STREAM_BATCHES && (i + k) % 61 === 0) streamPackets.push(f);
      batch.push(f.packet, 0, f.packet.length, f.site);
    }
    pipeline.process(batch, 1000);
  }
  log(`table: ${pipeline.flows4.size.toLocaleString()} flows`);

  // The stream: the same established flows over and over, restored before each batch (a receive copy).
  const stream = new PacketBatch(BATCH * STREAM_BATCHES, SLOT_BYTES, 0);
  for (const f of streamPackets) stream.push(f.packet, 0, f.packet.length, f.site);
  const pristine = stream.data.slice();
  let round = 0;
  let forwarded = 0;
  let running = true;
  const step = (): void => {
    if (!running) return;
    const base = (round++ % Math.floor(stream.count / BATCH)) * BATCH;
    batch.data.set(pristine.subarray(base * SLOT_BYTES, (base + BATCH) * SLOT_BYTES));
    for (let k = 0; k < BATCH; k++) {
      batch.offset[k] = k * SLOT_BYTES;
      batch.length[k] = stream.length[base + k];
      batch.ingress[k] = stream.ingress[base + k];
    }
    batch.count = BATCH;
    pipeline.process(batch, 2000);
    for (let k = 0; k < BATCH; k++) if (batch.nextHop[k] !== NEXT_HOP_DROP) forwarded++;
    setImmediate(step);
  };

  const app = Fastify();
  // The listing's share of the loop is measured on this process's CPU time (--wall-share: on the wall clock, as
  // the daemon does): other engineers' work on this machine takes the core away for wall-clock time in which
  // neither the stream nor the listing runs, and the wall-clock budget would refill during it.
  const cpuMs = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const listingClock = args.includes('--wall-share') ? undefined : cpuMs;
  registerFlowRoutes(app, { pipeline, names: new NameBook(pipeline), config: () => ({}) as TetherConfig, now: () => 2000, listingClock });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });

  const client = spawn(process.execPath, ['-e', CLIENT, `${address}/v1/flows?`], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: client.stdout! });
  const nextLine = (): Promise<string> => new Promise((resolve) => lines.once('line', resolve));

  interface Totals { forwarded: number; cpuMs: number; threadMs: number; wallMs: number; requests: number; requestMs: number }
  const zero = (): Totals => ({ forwarded: 0, cpuMs: 0, threadMs: 0, wallMs: 0, requests: 0, requestMs: 0 });
  const kinds = { idle: zero(), listing: zero(), filtered: zero() };
  const queries: Record<keyof typeof kinds, string | null> = { idle: null, listing: `limit=${LIMIT}`, filtered: `limit=${LIMIT}&src=192.0.2.0/24` };

  /** One sub-phase: the client paging `query` (or nothing), then the stream's count and clocks over SECONDS. */
  const phase = async (kind: keyof typeof kinds): Promise<void> => {
    const query = queries[kind];
    if (query !== null) client.stdin!.write(`${query}\n`);
    await new Promise((r) => setTimeout(r, WARMUP_MS)); // the client's first requests in flight
    forwarded = 0;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const thread0 = mainThreadCpuMs();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const cpu = process.cpuUsage(cpu0);
    const k = kinds[kind];
    k.threadMs += mainThreadCpuMs() - thread0;
    k.cpuMs += (cpu.user + cpu.system) / 1000;
    k.wallMs += performance.now() - t0;
    k.forwarded += forwarded;
    if (query !== null) {
      const reported = nextLine();
      client.stdin!.write('pause\n');
      const c = JSON.parse(await reported) as { requests: number; ms: number };
      k.requests += c.requests;
      k.requestMs += c.ms;
    }
  };

  running = true;
  setImmediate(step);
  // Rounds of the three, the order turning each round: the machine's load drifts over a run, and interleaving
  // spreads the drift over all three instead of favouring whichever phase came first.
  const order: Array<keyof typeof kinds> = ['idle', 'listing', 'filtered'];
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < order.length; i++) await phase(order[(i + r) % order.length]);
    log(`round ${r + 1}/${ROUNDS}`);
  }
  running = false;
  client.stdin!.end();
  client.kill();

  // What one request held the loop for when it scanned every slot at once (no slices, no budget).
  const t = performance.now();
  await walkFlows([{ family: 4, table: pipeline.flows4 }], null, { ...NO_FILTER, dst: { family: 4, words: Uint32Array.of(0xc0000200, 0, 0, 0), length: 24 } }, { limit: Infinity, maxSlots: Infinity, sliceSlots: Infinity, between: async () => {} }, () => {});
  const unslicedMs = performance.now() - t;
  await app.close();

  const mpps = (k: Totals, ms: number): number => k.forwarded / ms / 1e3;
  const { idle, listing, filtered } = kinds;
  const result = {
    flows: pipeline.flows4.size,
    limit: LIMIT,
    rounds: ROUNDS,
    seconds_per_phase: SECONDS,
    idle_mpps: round3(mpps(idle, idle.cpuMs)),
    listing_mpps: round3(mpps(listing, listing.cpuMs)),
    ratio: round3(mpps(listing, listing.cpuMs) / mpps(idle, idle.cpuMs)),
    filtered_mpps: round3(mpps(filtered, filtered.cpuMs)),
    filtered_ratio: round3(mpps(filtered, filtered.cpuMs) / mpps(idle, idle.cpuMs)),
    thread_ratio: round3(mpps(listing, listing.threadMs) / mpps(idle, idle.threadMs)),
    filtered_thread_ratio: round3(mpps(filtered, filtered.threadMs) / mpps(idle, idle.threadMs)),
    idle_wall_mpps: round3(mpps(idle, idle.wallMs)),
    listing_wall_mpps: round3(mpps(listing, listing.wallMs)),
    filtered_wall_mpps: round3(mpps(filtered, filtered.wallMs)),
    pages: listing.requests,
    page_ms: round3(listing.requests === 0 ? 0 : listing.requestMs / listing.requests),
    filtered_requests: filtered.requests,
    filtered_page_ms: round3(filtered.requests === 0 ? 0 : filtered.requestMs / filtered.requests),
    unsliced_walk_ms: round3(unslicedMs),
  };
  log(`idle ${result.idle_mpps} Mpps; listing ${result.listing_mpps} (${result.ratio}×, main thread ${result.thread_ratio}×), ${result.pages} pages of ${result.page_ms} ms; ` +
    `filtered ${result.filtered_mpps} (${result.filtered_ratio}×, main thread ${result.filtered_thread_ratio}×), ${result.filtered_requests} requests of ${result.filtered_page_ms} ms; unsliced walk ${result.unsliced_walk_ms} ms`);
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else log(JSON.stringify(result, null, 2));
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

void main();
