/**
 * `npm run bench:capture` — what a running capture costs forwarding, in process, one core (issue 13).
 *
 * The edge's read loop as edge.ts runs it — tap.before(batch, now), pipeline.process, tap.after(batch) — over
 * established 64-byte UDP flows of 16 overlapping sites to the Internet and back (half each way, SNAT'ed),
 * batches of 128 in 2 KiB slots as the edge reads them. Scenarios, interleaved round by round in the same run
 * so that the machine's noise falls on all of them alike:
 *
 *   none            no capture: the edge holds no tap
 *   onramp          a capture of one onramp of 16, defaults (5,000 packets/s copied; the rest skipped, counted)
 *   onramp+filter   the same with a filter that every selected packet has to pass ("udp and port 53")
 *   onramp@100k     the same at the highest rate a capture may ask for (100,000 packets/s)
 *
 * The hub's drain (pcapng encoding) runs every 100 ms of the run on the same thread, as its timer does in the
 * daemon, and is counted in the time. Reports Mpps per CPU second (the process's CPU time: on a shared machine
 * wall time measures the neighbours) per scenario, the median of the rounds, and each against none.
 * Options: --json, --rounds N (default 9), --quick.
 */
import { performance } from 'node:perf_hooks';
import { PacketBatch } from '../src/common/packet-batch.js';
import { NEXT_HOP_DROP } from '../src/common/ids.js';
import { CaptureHub, DRAIN_INTERVAL_MS, type CaptureRequest, type CaptureTap } from '../src/control/capture.js';
import { NameBook } from '../src/control/metrics.js';
import { Pipeline } from '../src/dataplane/pipeline.js';
import type { OnrampSpec } from '../src/dataplane/ports.js';
import { NextHopKind } from '../src/route/route-table.js';
import { buildUdp } from '../src/wire/build.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick');
const roundsArg = args.indexOf('--rounds');
const ROUNDS = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 3 : 9;
const SITES = 16;
const FLOWS = 1 << 14;
const BATCH = 128;
/** Batches per round and scenario. */
const BATCHES = quick ? 2_000 : 8_000;
const PACKET_BYTES = 64;

function log(msg: string): void {
  if (!json) process.stderr.write(`${msg}\n`);
}

function makePipeline(): Pipeline {
  const onramps: OnrampSpec[] = [];
  for (let s = 1; s <= SITES; s++) onramps.push({ id: s, name: `site-${s}`, type: 'wireguard', site: s, automaticReturnRouting: true });
  return new Pipeline({
    onramps,
    routes: [{ prefix: '0.0.0.0/0', kind: NextHopKind.Internet }],
    egress: { addresses: ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4'], portMin: 1024, portMax: 65535 },
    flows: { capacity4: FLOWS * 2, capacity6: 1024 },
  });
}

/** Each flow's first packet (it sets the flow up) and its reply as the Internet sends it, in one slab. */
function traffic(pipeline: Pipeline): { slab: PacketBatch; pristine: Uint8Array } {
  const slab = new PacketBatch(FLOWS * 2, PACKET_BYTES * 2, 0);
  const one = new PacketBatch(1);
  for (let i = 0; i < FLOWS; i++) {
    const site = (i % SITES) + 1;
    const n = Math.floor(i / SITES);
    const packet = buildUdp({ src: (0x0a000000 | n) >>> 0, dst: (0xcb007100 | (n % 200)) >>> 0 }, { srcPort: 40000, dstPort: 53, payload: new Uint8Array(PACKET_BYTES - 28) });
    one.clear();
    one.push(packet, 0, packet.length, site);
    pipeline.process(one, 1000);
    const out = one.packet(0);
    const u32 = (at: number): number => ((out[at] << 24) | (out[at + 1] << 16) | (out[at + 2] << 8) | out[at + 3]) >>> 0;
    const reply = buildUdp({ src: u32(16), dst: u32(12) }, { srcPort: (out[22] << 8) | out[23], dstPort: (out[20] << 8) | out[21], payload: new Uint8Array(PACKET_BYTES - 28) });
    slab.push(packet, 0, packet.length, site);
    slab.push(reply, 0, reply.length, 0);
  }
  return { slab, pristine: slab.data.slice() };
}

interface Scenario {
  name: string;
  request: CaptureRequest | null;
  mpps: number[];
  captured: number;
  skipped: number;
}

function main(): void {
  const pipeline = makePipeline();
  const { slab, pristine } = traffic(pipeline);
  let tap: CaptureTap | null = null;
  const ids = { sites: new Map<string, number>(), onramps: new Map<string, number>(), onrampSite: new Map<string, number>(), firewallRules: [] as number[], gatewayRules: [] as number[] };
  for (let s = 1; s <= SITES; s++) {
    ids.onramps.set(`site-${s}`, s);
    ids.onrampSite.set(`site-${s}`, s);
    ids.sites.set(`site-${s}`, s);
  }
  const hub = new CaptureHub({ pipeline, names: new NameBook(pipeline), ids: () => ids, attach: (t) => (tap = t) });
  // The edge's batch: 2 KiB slots, 128 packets (edge.ts's defaults).
  const batch = new PacketBatch(BATCH);
  const slots = FLOWS * 2;
  let cursor = 0;

  const run = (): number => {
    let sent = 0;
    let lastDrain = performance.now();
    for (let b = 0; b < BATCHES; b++) {
      // The TUN read: each packet copied into its slot.
      batch.count = 0;
      for (let k = 0; k < BATCH; k++) {
        const j = cursor;
        cursor = (cursor + 7919) % slots; // a stride through the flows, both directions mixed
        const at = k * batch.slotSize + batch.headroom;
        batch.data.set(pristine.subarray(slab.offset[j], slab.offset[j] + slab.length[j]), at);
        batch.offset[k] = at;
        batch.length[k] = slab.length[j];
        batch.ingress[k] = slab.ingress[j];
      }
      batch.count = BATCH;
      const now = performance.now();
      const t = tap as CaptureTap | null;
      if (t !== null) t.before(batch, now);
      pipeline.process(batch, now);
      if (t !== null) t.after(batch, now, true);
      for (let k = 0; k < BATCH; k++) if (batch.nextHop[k] !== NEXT_HOP_DROP) sent++;
      if (now - lastDrain >= DRAIN_INTERVAL_MS) {
        hub.tick();
        lastDrain = now;
      }
    }
    return sent;
  };

  const big = { count: 10_000_000, bytes: 128 * 1024 * 1024, duration_s: 24 * 3600 };
  const scenarios: Scenario[] = [
    { name: 'none', request: null, mpps: [], captured: 0, skipped: 0 },
    { name: 'onramp', request: { onramp: 'site-1', ...big }, mpps: [], captured: 0, skipped: 0 },
    { name: 'onramp+filter', request: { onramp: 'site-1', filter: 'udp and port 53', ...big }, mpps: [], captured: 0, skipped: 0 },
    { name: 'onramp@100k', request: { onramp: 'site-1', ...big, rate: 100_000 }, mpps: [], captured: 0, skipped: 0 },
  ];
  run(); // warm-up: the JIT, the flow table in cache
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of scenarios) {
      const session = s.request === null ? null : hub.start(s.request);
      if (session !== null) run(); // the tap's own warm-up
      // CPU time of this process, not wall time: the machine is shared, and what a capture costs is CPU.
      const start = process.cpuUsage();
      const sent = run();
      const used = process.cpuUsage(start);
      const seconds = (used.user + used.system) / 1e6;
      if (sent !== BATCHES * BATCH) log(`${s.name}: ${BATCHES * BATCH - sent} packets dropped`);
      s.mpps.push(sent / seconds / 1e6);
      if (session !== null) {
        hub.tick();
        s.captured += session.packets;
        s.skipped += session.rateSkipped + session.ringSkipped;
        hub.delete(session.id);
      }
    }
    log(`round ${r + 1}/${ROUNDS}: ${scenarios.map((s) => `${s.name} ${s.mpps[r].toFixed(2)}`).join(', ')} Mpps`);
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const base = median(scenarios[0].mpps);
  const result = Object.fromEntries(scenarios.map((s) => [s.name, {
    mpps: Number(median(s.mpps).toFixed(3)),
    vs_none: Number((median(s.mpps) / base).toFixed(3)),
    min_mpps: Number(Math.min(...s.mpps).toFixed(3)),
    max_mpps: Number(Math.max(...s.mpps).toFixed(3)),
    captured_per_round: Math.round(s.captured / ROUNDS / 2),
    skipped_per_round: Math.round(s.skipped / ROUNDS / 2),
  }]));
  if (json) {
    console.log(JSON.stringify({ rounds: ROUNDS, batches: BATCHES, batch: BATCH, flows: FLOWS, sites: SITES, scenarios: result }));
    return;
  }
  console.log('scenario        Mpps/CPU-s     vs none  min..max        captured/round  skipped/round');
  for (const s of scenarios) {
    const x = result[s.name];
    console.log(`${s.name.padEnd(16)}${x.mpps.toFixed(2).padStart(13)}  ${x.vs_none.toFixed(3).padStart(7)}  ${x.min_mpps.toFixed(2)}..${x.max_mpps.toFixed(2)}${String(x.captured_per_round).padStart(16)}${String(x.skipped_per_round).padStart(15)}`);
  }
}

main();
