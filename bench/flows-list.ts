/**
 * `npm run bench:flows-list` — does listing flows hold forwarding back? In process, one thread, like the daemon:
 *
 *   packet stream   one batch of 256 established IPv4 UDP packets per event-loop turn (setImmediate), the way
 *                   TUN reads arrive, over a table of 1 M flows (--flows N)
 *   listing         a client process pages through GET /v1/flows?limit=L with the cursor, back to back (and,
 *                   second, with a filter that matches nothing: every request walks its whole slot budget)
 *
 *   idle_mpps / listing_mpps / filtered_mpps   the stream's rate with no request, while paging, while filtering:
 *                   packets per second of this process's CPU time (user + system), so that other load on the
 *                   machine, which takes the core away from stream and listing alike, does not enter the ratio;
 *                   *_wall_mpps are the same per second of wall-clock time
 *   ratio, filtered_ratio                      listing_mpps / idle_mpps (goal ≥ 0.9, issue 11)
 *   page_ms, filtered_page_ms                  mean time of one request as the client sees it
 *   unsliced_walk_ms                           one walk of every slot without yielding: how long a request
 *                                              that scanned the whole table held the loop (the old listing)
 *
 * Options: --json, --flows N (default 1,000,000), --limit L (default 1000), --seconds S per phase (default 5),
 * --wall-share (the listing's share measured on the wall clock, as in the daemon, instead of this process's CPU).
 */
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
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
const SECONDS = opt('--seconds', 5);
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

/** The client: pages through the listing with the cursor until stdin closes; prints request count and time. */
const CLIENT = `
const url = process.argv[1];
let stop = false;
process.stdin.on('data', () => { stop = true; }).on('end', () => { stop = true; });
(async () => {
  let requests = 0, ms = 0, items = 0, cursor = null;
  while (!stop) {
    const t = performance.now();
    const r = await (await fetch(url + (cursor === null ? '' : '&cursor=' + cursor))).json();
    ms += performance.now() - t;
    requests++;
    items += r.items.length;
    cursor = r.cursor;
  }
  process.stdout.write(JSON.stringify({ requests, ms, items }));
  process.exit(0);
})();
`;

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

  /** The stream's rate over one phase, optionally with a client paging `query`. */
  const phase = async (query: string | null): Promise<{ mpps: number; wallMpps: number; pageMs: number; requests: number }> => {
    const client = query === null ? null : spawn(process.execPath, ['-e', CLIENT, `${address}/v1/flows?${query}`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    client?.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const done = client === null ? null : new Promise<void>((resolve) => client.once('exit', () => resolve()));
    await new Promise((r) => setTimeout(r, 500)); // the client started, its first requests in flight
    forwarded = 0;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    const n = forwarded;
    client?.stdin?.end('stop');
    await done;
    const c = out === '' ? { requests: 0, ms: 0 } : (JSON.parse(out) as { requests: number; ms: number });
    return { mpps: n / ((cpu.user + cpu.system) / 1e6) / 1e6, wallMpps: n / wall / 1e6, pageMs: c.requests === 0 ? 0 : c.ms / c.requests, requests: c.requests };
  };

  running = true;
  setImmediate(step);
  const idle = await phase(null);
  log(`idle:      ${idle.mpps.toFixed(3)} Mpps`);
  const listing = await phase(`limit=${LIMIT}`);
  log(`listing:   ${listing.mpps.toFixed(3)} Mpps (${(listing.mpps / idle.mpps).toFixed(3)}×), ${listing.requests} pages, ${listing.pageMs.toFixed(1)} ms a page`);
  const filtered = await phase(`limit=${LIMIT}&src=192.0.2.0/24`);
  log(`filtered:  ${filtered.mpps.toFixed(3)} Mpps (${(filtered.mpps / idle.mpps).toFixed(3)}×), ${filtered.requests} requests, ${filtered.pageMs.toFixed(1)} ms a request`);
  const idleAfter = await phase(null);
  log(`idle again: ${idleAfter.mpps.toFixed(3)} Mpps`);
  running = false;

  // What one request held the loop for when it scanned every slot at once (no slices, no budget).
  const t = performance.now();
  await walkFlows([{ family: 4, table: pipeline.flows4 }], null, { ...NO_FILTER, dst: { family: 4, words: Uint32Array.of(0xc0000200, 0, 0, 0), length: 24 } }, { limit: Infinity, maxSlots: Infinity, sliceSlots: Infinity, between: async () => {} }, () => {});
  const unslicedMs = performance.now() - t;
  log(`unsliced walk of ${pipeline.flows4.capacity.toLocaleString()} slots: ${unslicedMs.toFixed(0)} ms`);
  await app.close();

  const idleMpps = (idle.mpps + idleAfter.mpps) / 2;
  const idleWall = (idle.wallMpps + idleAfter.wallMpps) / 2;
  const result = {
    flows: pipeline.flows4.size,
    limit: LIMIT,
    idle_mpps: round3(idleMpps),
    listing_mpps: round3(listing.mpps),
    ratio: round3(listing.mpps / idleMpps),
    page_ms: round3(listing.pageMs),
    idle_wall_mpps: round3(idleWall),
    listing_wall_mpps: round3(listing.wallMpps),
    filtered_wall_mpps: round3(filtered.wallMpps),
    filtered_mpps: round3(filtered.mpps),
    filtered_ratio: round3(filtered.mpps / idleMpps),
    filtered_page_ms: round3(filtered.pageMs),
    unsliced_walk_ms: round3(unslicedMs),
  };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else log(JSON.stringify(result, null, 2));
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

void main();
