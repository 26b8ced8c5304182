/**
 * `npm run bench` — the data plane core, in process, one core.
 *
 *   fastpath_mpps      established 64-byte IPv4 UDP packets over 1 M flows (both directions, SNAT'ed):
 *                      inspect, lookup, track, rewrite with incremental checksums, TTL, next hop
 *   reference_mpps     the same-run reference (bench/reference.ts): the fast path's memory accesses, none of its
 *                      logic; fastpath_vs_reference = fastpath_mpps / reference_mpps (goal, issue 10: >= 0.7)
 *   general_mpps       the same packets with the pipeline's specialised established path off (Pipeline.fastPath):
 *                      the general walk every packet took before; general_vs_reference likewise
 *   setup_per_s        new flows per second with 1,000 firewall rules (the allowing rule last),
 *                      a 100,000-route table and SNAT
 *   bytes_per_flow     (heap + typed arrays) of the flow table at 1 M IPv4 flows / flows;
 *                      bytes_per_flow_with_nat adds the egress NAT mappings those flows hold
 *   route_lookups_mps  IPv4 longest-prefix matches per second on the 100,000-route table
 *   classify_*_ns, reevaluate_ns   issue 12 (bench/policy.ts): a TLS flow's classification under 1,000 hostname
 *                      rules, and the re-evaluation of an established flow after a policy change
 *   esp                ESP seal/open, 1400 B and 64 B: the native batched crypto against node:crypto per packet
 *                      (bench/esp.ts), packets per second of CPU time
 *
 * The Linux kernel column: what this machine's kernel spends on the same job where it can be read
 * in the same run (conntrack's per-entry size from the slab allocator). Forwarding rates of the
 * kernel over real interfaces are measured by `npm run bench:lab`.
 *
 * Options: --json (one JSON object), --flows N (default 1,000,000), --quick (smaller, for a smoke run),
 * --no-huge-pages (the flow tables on ordinary 4 KiB pages instead of MADV_HUGEPAGE memory), --setup-only
 * (flow setup alone, one JSON line with setup_per_s and setup_per_cpu_s on this thread, then
 * setup_per_s_N_lanes and setup_per_cpu_s_N_lanes: the same flows on --lanes N worker threads, default 2, each
 * its own pipeline and NAT slice; --lanes 1 skips them), --fastpath-only (setup, then the fast path, reference and
 * general walk alone: one JSON line; for profiling and A/B runs), --source-ports fixed|spread (the setup flows'
 * source ports: fixed, the default, every host from port 40000 as in every earlier figure; spread, each host from
 * its own port of Linux's ephemeral range, as real clients). Environment: TETHER_PERF_CTL=<fifo> (see perfControl).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { formatIpv4 } from '../src/wire/addr.js';
import { DROP_REASON_NAMES } from '../src/common/drop-reasons.js';
import { PacketBatch } from '../src/common/packet-batch.js';
import { NEXT_HOP_DROP } from '../src/common/ids.js';
import { Pipeline } from '../src/dataplane/pipeline.js';
import type { OnrampSpec } from '../src/dataplane/ports.js';
import { FlowKey, FlowTable } from '../src/flow/flow-table.js';
import type { FirewallRuleSpec } from '../src/policy/firewall.js';
import { NextHopKind, RouteTable, type RouteSpec } from '../src/route/route-table.js';
import { hugePageAllocator, hugePageBytes, transparentHugePageMode } from '../src/io/memory.js';
import { buildUdp } from '../src/wire/build.js';
import { benchEsp } from './esp.js';
import { FastPathReference } from './reference.js';
import { benchClassify, benchReevaluate, GATEWAY_RULES, hostnameRulesSpec } from './policy.js';
import type { GatewayPolicySpec } from '../src/gateway/policy.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const wantHugePages = !args.includes('--no-huge-pages');
const quick = args.includes('--quick');
const setupOnly = args.includes('--setup-only');
const fastPathOnly = args.includes('--fastpath-only');
/**
 * The setup traffic's source ports. "fixed" (the default, the shape every earlier figure used): every host sends
 * from port 40000, so port preservation (RFC 4787 REQ-3) fails for all but the first mapping per pool address and
 * every other mapping searches the port bitmap. "spread": each host sends from its own port drawn from Linux's
 * ephemeral range (net.ipv4.ip_local_port_range, 32768..60999), as real clients do.
 */
const portsArg = args.indexOf('--source-ports');
const SOURCE_PORTS = portsArg >= 0 ? args[portsArg + 1] : 'fixed';
if (SOURCE_PORTS !== 'fixed' && SOURCE_PORTS !== 'spread') throw new Error(`--source-ports must be fixed or spread, got ${SOURCE_PORTS}`);
/** Lanes for the setup-on-several-threads figure (--setup-only): worker threads, each its own pipeline and NAT slice. */
const lanesArg = args.indexOf('--lanes');
const SETUP_LANES = lanesArg >= 0 ? Number(args[lanesArg + 1]) : 2;
const flowsArg = args.indexOf('--flows');
const FLOWS = flowsArg >= 0 ? Number(args[flowsArg + 1]) : quick ? 100_000 : 1_000_000;
const ROUTES = quick ? 10_000 : 100_000;
const RULES = 1_000;
const BATCH = 256;
const SITES = 16;
const POOL_SIZE = 64;
/** The seed of every random table (routes, lookup addresses, rules): the same tables every run, in every lane. */
const SEED = 0x7e7e7;
/** Random destinations benchRoutes looks up. */
const LOOKUP_ADDRESSES = 1 << 16;

function log(msg: string): void {
  if (!json) process.stderr.write(`${msg}\n`);
}

/** Deterministic pseudo-random numbers (the same tables every run). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

function randomRoutes(count: number, onramps: number[], next: () => number): RouteSpec[] {
  const routes: RouteSpec[] = [{ prefix: '0.0.0.0/0', kind: NextHopKind.Internet }];
  for (let i = 0; i < count; i++) {
    const r = next();
    const length = 8 + (r % 25) > 24 && r % 4 !== 0 ? 16 + (r % 9) : 8 + (r % 25); // mostly /16–/24
    const toOnramp = next() % 4 === 0;
    routes.push({
      prefix: `${formatIpv4(next())}/${length}`,
      kind: toOnramp ? NextHopKind.Onramp : NextHopKind.Internet,
      port: toOnramp ? onramps[next() % onramps.length] : undefined,
      priority: 100 + (next() % 3),
    });
  }
  return routes;
}

/** 999 rules that never match the benchmark's traffic (it comes from 10/8 and goes to UDP 53), then one allow. */
function firewallRules(next: () => number): FirewallRuleSpec[] {
  const rules: FirewallRuleSpec[] = [];
  for (let i = 1; i < RULES; i++) {
    const port = 1000 + (next() % 60000);
    rules.push({
      id: i,
      action: 'deny',
      srcPrefixes: [`${100 + (next() % 100)}.${next() % 256}.0.0/16`],
      dstPrefixes: [`${formatIpv4(next() & 0xffffff00)}/24`],
      protocols: [next() % 2 === 0 ? 6 : 17],
      dstPorts: [[port, port + (next() % 10)]],
    });
  }
  rules.push({ id: RULES, action: 'allow' });
  return rules;
}

function makePipeline(capacity: number, routes: RouteSpec[], rules: FirewallRuleSpec[], allocate: ((bytes: number) => ArrayBuffer) | undefined, gateway?: GatewayPolicySpec, lane?: { index: number; count: number }): Pipeline {
  const onramps: OnrampSpec[] = [];
  for (let s = 1; s <= SITES; s++) onramps.push({ id: s, name: `site-${s}`, type: 'wireguard', site: s, automaticReturnRouting: true });
  const pool: string[] = [];
  for (let i = 0; i < POOL_SIZE; i++) pool.push(`198.51.${100 + (i >> 8)}.${(i & 0xff) + 1}`);
  return new Pipeline({
    onramps,
    routes,
    firewall: { rules, defaultAction: 'deny' },
    egress: { addresses: pool, portMin: 1024, portMax: 65535 },
    flows: { capacity4: capacity, capacity6: 1024 },
    allocate,
    ...(gateway !== undefined ? { gateway } : {}),
    ...(lane !== undefined ? { lane } : {}),
  });
}

/** The fixed shape's source port (SOURCE_PORTS "fixed"). */
const FIXED_SOURCE_PORT = 40000;
/** Linux's default ephemeral range (net.ipv4.ip_local_port_range): SOURCE_PORTS "spread". */
const EPHEMERAL_FIRST = 32768;
const EPHEMERAL_COUNT = 60999 - EPHEMERAL_FIRST + 1;

/**
 * Flow i: site (i % SITES) + 1; host n = i / SITES as 10.a.b.c, to 203.0.113.(n % 200):53, from port 40000
 * (`spread` false) or from a port of the ephemeral range drawn from n (`spread` true: the same host's port in
 * every site). Every site uses the same hosts: all of them overlap.
 */
function flowPacket(i: number, spread: boolean): { site: number; packet: Uint8Array } {
  const site = (i % SITES) + 1;
  const n = Math.floor(i / SITES);
  const host = (0x0a000000 | (n & 0xffffff)) >>> 0;
  // Knuth's multiplicative hash of the host number: ports spread over the range, not in host order.
  const srcPort = spread ? EPHEMERAL_FIRST + ((Math.imul(n, 0x9e3779b1) >>> 0) % EPHEMERAL_COUNT) : FIXED_SOURCE_PORT;
  const packet = buildUdp(
    { src: host, dst: (0xcb007100 | (n % 200)) >>> 0 },
    { srcPort, dstPort: 53, payload: new Uint8Array(64 - 28) },
  );
  return { site, packet };
}

/** Every setup packet is 64 bytes (flowPacket): one slot each in one buffer, so a batch is filled with one copy. */
const SETUP_SLOT = 64;

/** The first packets of the flows, back to back, and their ingress ports: what a receive hands the pipeline. */
interface SetupTraffic {
  wire: Uint8Array;
  ingress: Uint16Array;
  count: number;
}

function setupTraffic(packets: Uint8Array[], ingress: number[]): SetupTraffic {
  const wire = new Uint8Array(packets.length * SETUP_SLOT);
  for (let i = 0; i < packets.length; i++) {
    if (packets[i].length !== SETUP_SLOT) throw new Error(`setup packet ${i} is ${packets[i].length} bytes, not ${SETUP_SLOT}`);
    wire.set(packets[i], i * SETUP_SLOT);
  }
  return { wire, ingress: Uint16Array.from(ingress), count: packets.length };
}

/**
 * Packets from..from+BATCH into the batch (slots of SETUP_SLOT bytes): one copy of the bytes, like a receive
 * into the batch's slab, not one push (and one view allocated) per packet.
 */
function fillBatch(batch: PacketBatch, traffic: SetupTraffic, from: number): void {
  const n = Math.min(BATCH, traffic.count - from);
  batch.data.set(traffic.wire.subarray(from * SETUP_SLOT, (from + n) * SETUP_SLOT));
  for (let k = 0; k < n; k++) {
    batch.offset[k] = k * SETUP_SLOT;
    batch.length[k] = SETUP_SLOT;
    batch.ingress[k] = traffic.ingress[from + k];
  }
  batch.count = n;
}

function memory(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

function kernelConntrackObjectSize(): number | null {
  try {
    return Number(readFileSync('/sys/kernel/slab/nf_conntrack/object_size', 'utf8').trim());
  } catch {
    try {
      const line = readFileSync('/proc/slabinfo', 'utf8').split('\n').find((l) => l.startsWith('nf_conntrack '));
      return line ? Number(line.split(/\s+/)[3]) : null;
    } catch {
      return null;
    }
  }
}

/** Loads nf_conntrack (when we may) so its slab appears; harmless if it is built in or absent. */
function ensureConntrackLoaded(): void {
  try {
    execFileSync('modprobe', ['nf_conntrack'], { stdio: 'ignore' });
  } catch {
    /* not root or no module: the column shows n/a */
  }
}

// ---------------------------------------------------------------------------------------------

function benchRoutes(next: () => number): { routes: RouteSpec[]; mlps: number } {
  const onramps = Array.from({ length: SITES }, (_, i) => i + 1);
  const routes = randomRoutes(ROUTES, onramps, next);
  const table = new RouteTable();
  const t0 = performance.now();
  for (const r of routes) table.add(r);
  log(`routes: ${routes.length} added in ${(performance.now() - t0).toFixed(0)} ms`);
  const addrs = new Uint32Array(LOOKUP_ADDRESSES);
  for (let i = 0; i < addrs.length; i++) addrs[i] = next();
  let sink = 0;
  const LOOKUPS = quick ? 2_000_000 : 20_000_000;
  for (let i = 0; i < 200_000; i++) sink += table.lookup4(0, addrs[i & 0xffff], i);
  const start = performance.now();
  for (let i = 0; i < LOOKUPS; i++) sink += table.lookup4((i & 15) + 1, addrs[i & 0xffff], i);
  const seconds = (performance.now() - start) / 1000;
  if (sink === 42) log('');
  return { routes, mlps: LOOKUPS / seconds / 1e6 };
}

/**
 * One timed setup run: what it created, its wall window (on the shared clock: performance.timeOrigin + now) and its
 * CPU time (the process's: on a worker thread, all threads').
 */
interface SetupRun {
  created: number;
  startMs: number;
  endMs: number;
  cpuSeconds: number;
}

/** Warms the JIT up on a throwaway pipeline (so the timed run measures steady state), then builds the timed one, empty. */
function prepareSetup(
  routes: RouteSpec[],
  rules: FirewallRuleSpec[],
  traffic: SetupTraffic,
  allocate: ((bytes: number) => ArrayBuffer) | undefined,
  gateway?: GatewayPolicySpec,
  lane?: { index: number; count: number },
): Pipeline {
  const batch = new PacketBatch(BATCH, SETUP_SLOT, 0);
  const warm = makePipeline(1 << 16, routes, rules, undefined, gateway, lane);
  for (let i = 0; i < Math.min(traffic.count, 1 << 15); i += BATCH) {
    fillBatch(batch, traffic, i);
    warm.process(batch, 1000);
  }
  return makePipeline(1 << Math.ceil(Math.log2(Math.max(traffic.count, 2))), routes, rules, allocate, gateway, lane);
}

/**
 * TETHER_PERF_CTL=<fifo>: the one-thread timed setups tell `perf stat --control fifo:<fifo> -D -1` when to count
 * (enable before, disable after), so cycles and instructions per setup are read for setup alone, not the build.
 */
const PERF_CTL = process.env.TETHER_PERF_CTL;

function perfControl(command: 'enable' | 'disable'): void {
  if (PERF_CTL !== undefined && isMainThread) writeFileSync(PERF_CTL, `${command}\n`);
}

function timedSetup(pipeline: Pipeline, traffic: SetupTraffic): SetupRun {
  const batch = new PacketBatch(BATCH, SETUP_SLOT, 0);
  let created = 0;
  perfControl('enable');
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < traffic.count; i += BATCH) {
    fillBatch(batch, traffic, i);
    pipeline.process(batch, 1000);
    for (let k = 0; k < batch.count; k++) if (batch.nextHop[k] !== NEXT_HOP_DROP) created++;
  }
  const end = performance.now();
  perfControl('disable');
  const cpu = process.cpuUsage(cpuStart);
  if (created !== traffic.count) log(`setup: ${traffic.count - created} packets dropped (${dropSummary(pipeline)})`);
  return { created, startMs: performance.timeOrigin + start, endMs: performance.timeOrigin + end, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

function benchSetup(
  routes: RouteSpec[],
  rules: FirewallRuleSpec[],
  traffic: SetupTraffic,
  allocate: ((bytes: number) => ArrayBuffer) | undefined,
  gateway?: GatewayPolicySpec,
): { perSecond: number; perCpuSecond: number; pipeline: Pipeline } {
  const pipeline = prepareSetup(routes, rules, traffic, allocate, gateway);
  const run = timedSetup(pipeline, traffic);
  return { perSecond: run.created / ((run.endMs - run.startMs) / 1000), perCpuSecond: run.created / run.cpuSeconds, pipeline };
}

/** The first packets of flows 0..FLOWS, or of lane `lane` of `lanes`' share (flow i goes to lane i mod lanes). */
function setupPackets(spread: boolean, lane = 0, lanes = 1): { packets: Uint8Array[]; ingress: number[] } {
  const packets: Uint8Array[] = [];
  const ingress: number[] = [];
  for (let i = lane; i < FLOWS; i += lanes) {
    const f = flowPacket(i, spread);
    packets.push(f.packet);
    ingress.push(f.site);
  }
  return { packets, ingress };
}

/** The routes and rules main() builds, from the same seed and in the same order (a worker rebuilds them). */
function setupInputs(): { routes: RouteSpec[]; rules: FirewallRuleSpec[] } {
  const next = rng(SEED);
  const onramps = Array.from({ length: SITES }, (_, i) => i + 1);
  const routes = randomRoutes(ROUTES, onramps, next);
  for (let i = 0; i < LOOKUP_ADDRESSES; i++) next(); // benchRoutes' lookup addresses
  return { routes, rules: firewallRules(next) };
}

interface LaneData {
  lane: number;
  lanes: number;
  spread: boolean;
  hugePages: boolean;
}

type LaneMessage = { ready: true } | { run: SetupRun };

/**
 * Setup on `lanes` worker threads (issue 10, item 4: each lane its own Pipeline with its NAT slice), the same FLOWS
 * flows split between them (flow i to lane i mod lanes, as a flow hash would): every worker builds its pipeline and
 * warms up, then all start together; the figure is all flows over the wall time from the first start to the last
 * end. What the edge's setup does on this machine's cores, beside the one-thread figure.
 */
async function benchSetupLanes(lanes: number, spread: boolean, hugePages: boolean): Promise<{ perSecond: number; perCpuSecond: number }> {
  const workers: Worker[] = [];
  const ready: Promise<void>[] = [];
  const runs: Promise<SetupRun>[] = [];
  for (let lane = 0; lane < lanes; lane++) {
    const data: LaneData = { lane, lanes, spread, hugePages };
    const w = new Worker(new URL(import.meta.url), { argv: process.argv.slice(2), workerData: data });
    workers.push(w);
    let onReady: () => void = () => {};
    let onRun: (r: SetupRun) => void = () => {};
    ready.push(new Promise((resolve) => (onReady = resolve)));
    runs.push(new Promise((resolve) => (onRun = resolve)));
    const failed = new Promise<never>((_, reject) => {
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`setup lane ${lane} exited with ${code} before reporting`)));
    });
    ready[lane] = Promise.race([ready[lane], failed]);
    runs[lane] = Promise.race([runs[lane], failed]);
    w.on('message', (m: LaneMessage) => ('ready' in m ? onReady() : onRun(m.run)));
  }
  await Promise.all(ready);
  // process.cpuUsage is the whole process's: taken here, around the run, it is every lane's CPU time together.
  const cpuStart = process.cpuUsage();
  for (const w of workers) w.postMessage('go');
  const done = await Promise.all(runs);
  const cpu = process.cpuUsage(cpuStart);
  await Promise.all(workers.map((w) => w.terminate()));
  const created = done.reduce((sum, r) => sum + r.created, 0);
  if (created !== FLOWS) log(`setup on ${lanes} lanes: ${FLOWS - created} packets dropped`);
  const wall = (Math.max(...done.map((r) => r.endMs)) - Math.min(...done.map((r) => r.startMs))) / 1000;
  return { perSecond: created / wall, perCpuSecond: created / ((cpu.user + cpu.system) / 1e6) };
}

/** A lane of benchSetupLanes: build, report ready, wait for the go, set up its share, report. */
function laneMain(): void {
  const data = workerData as LaneData;
  const port = parentPort!;
  const { routes, rules } = setupInputs();
  const share = setupPackets(data.spread, data.lane, data.lanes);
  const traffic = setupTraffic(share.packets, share.ingress);
  let allocate: ((bytes: number) => ArrayBuffer) | undefined;
  if (data.hugePages) {
    try {
      allocate = hugePageAllocator();
    } catch (e) {
      log(`lane ${data.lane}: huge pages unavailable (${(e as Error).message}); ordinary memory`);
    }
  }
  const pipeline = prepareSetup(routes, rules, traffic, allocate, undefined, { index: data.lane, count: data.lanes });
  gc();
  port.once('message', () => port.postMessage({ run: timedSetup(pipeline, traffic) } satisfies LaneMessage));
  port.postMessage({ ready: true } satisfies LaneMessage);
}

/**
 * Rounds of fast path, reference and general walk, alternated, so all three see the same machine (shared and
 * noisy): 25 rounds of 800 batches (~205 k packets, 12.5 passes over the slab, 20-60 ms) each. Three rounds of
 * ~1.7 M packets before: the same packets in all, but a round of the fast path and the reference's next one
 * could meet very different neighbours (the reference swung 3.4-9.5 Mpps between rounds). Short rounds give
 * each figure many chances at a quiet moment, and each pair of neighbouring rounds meets nearly the same machine.
 */
const ALTERNATIONS = 25;

interface FastPathResult {
  /** Best of the alternations, Mpps. */
  mpps: number;
  referenceMpps: number;
  /** The same pipeline with its specialised established path off (Pipeline.fastPath): the general walk. */
  generalMpps: number;
  runs: number[];
  referenceRuns: number[];
  /** The median over the alternations of fast path / reference in the same alternation (neighbouring rounds). */
  pairRatio: number;
  /**
   * The same rounds per second of this process's CPU time (process.cpuUsage: user + system), best of the
   * alternations: what a round cost when it ran, without the time other processes held the core. On a
   * shared 2-core machine wall time swings 2-10x with the other engineers' load; CPU time much less.
   */
  cpuMpps: number;
  referenceCpuMpps: number;
  generalCpuMpps: number;
  /** One packet per sampled flow, both directions, as sent (bench/policy.ts re-evaluates them). */
  slab: PacketBatch;
  generalRuns: number[];
}

function benchFastPath(pipeline: Pipeline, packets: Uint8Array[], ingress: number[], next: () => number, allocate: ((bytes: number) => ArrayBuffer) | undefined): FastPathResult {
  // Half of each batch goes out (site → Internet), half comes back (Internet → site), flows drawn at random.
  const slab = new PacketBatch(BATCH * 64, 128, 0);
  const outBatch = new PacketBatch(BATCH, 128, 0);
  // First pass: learn each sampled flow's translated form so replies can be built.
  const samples = Math.min(BATCH * 64, packets.length);
  for (let k = 0; k < samples; k++) {
    const i = next() % packets.length;
    outBatch.clear();
    outBatch.push(packets[i], 0, packets[i].length, ingress[i]);
    pipeline.process(outBatch, 2000);
    const out = outBatch.packet(0);
    if (k % 2 === 0) {
      slab.push(packets[i], 0, packets[i].length, ingress[i]);
    } else {
      // The reply: swap addresses and ports of the translated packet.
      const reply = buildUdp(
        { src: readU32(out, 16), dst: readU32(out, 12) },
        { srcPort: (out[22] << 8) | out[23], dstPort: (out[20] << 8) | out[21], payload: new Uint8Array(36) },
      );
      // It comes back in where the flow went out (the Internet, or an onramp a random route chose).
      slab.push(reply, 0, reply.length, outBatch.nextHop[0]);
    }
  }
  const pristine = slab.data.slice();
  const batch = new PacketBatch(BATCH, 128, 0);
  const rounds = Math.round((quick ? 2_000 : 20_000) / ALTERNATIONS);
  const reference = new FastPathReference(pipeline.flows4, pipeline.flows4.bucketCount, pipeline.ports.zone, allocate ?? ((bytes) => new ArrayBuffer(bytes)));
  const pipelineStep = (b: PacketBatch, now: number): void => pipeline.process(b, now);
  const referenceStep = (b: PacketBatch, now: number): void => reference.process(b, now);
  const generalStep = (b: PacketBatch, now: number): void => {
    pipeline.fastPath = false;
    pipeline.process(b, now);
    pipeline.fastPath = true;
  };
  const run = (count: number, step: (b: PacketBatch, now: number) => void): number => {
    let sent = 0;
    for (let r = 0; r < count; r++) {
      const base = (r % 64) * BATCH;
      // Restore the packets (they were rewritten in place last time) — the cost of a receive copy.
      batch.data.set(pristine.subarray(base * 128, (base + BATCH) * 128));
      for (let k = 0; k < BATCH; k++) {
        batch.offset[k] = k * 128;
        batch.length[k] = slab.length[base + k];
        batch.ingress[k] = slab.ingress[base + k];
      }
      batch.count = BATCH;
      step(batch, 3000);
      for (let k = 0; k < BATCH; k++) if (batch.nextHop[k] !== NEXT_HOP_DROP) sent++;
    }
    return sent;
  };
  const cpuRuns: number[][] = [[], [], []];
  const timed = (step: (b: PacketBatch, now: number) => void, what: string, cpuTo: number[]): number => {
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    const forwarded = run(rounds, step);
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpuStart);
    const total = rounds * BATCH;
    if (forwarded !== total) log(`${what}: ${total - forwarded} of ${total} packets dropped (${dropSummary(pipeline)})`);
    cpuTo.push(total / ((cpu.user + cpu.system) / 1e6) / 1e6);
    return total / seconds / 1e6;
  };
  run(200, pipelineStep);
  run(200, referenceStep);
  run(200, generalStep);
  const runs: number[] = [];
  const referenceRuns: number[] = [];
  const generalRuns: number[] = [];
  for (let a = 0; a < ALTERNATIONS; a++) {
    runs.push(timed(pipelineStep, 'fast path', cpuRuns[0]));
    referenceRuns.push(timed(referenceStep, 'reference', cpuRuns[1]));
    generalRuns.push(timed(generalStep, 'general walk', cpuRuns[2]));
  }
  if (reference.sink === 42) log('');
  slab.data.set(pristine);
  return {
    mpps: Math.max(...runs),
    pairRatio: median(runs.map((v, a) => v / referenceRuns[a])),
    referenceMpps: Math.max(...referenceRuns),
    generalMpps: Math.max(...generalRuns),
    cpuMpps: Math.max(...cpuRuns[0]),
    referenceCpuMpps: Math.max(...cpuRuns[1]),
    generalCpuMpps: Math.max(...cpuRuns[2]),
    runs,
    referenceRuns,
    generalRuns,
    slab,
  };
}

function fastPathFigures(fast: FastPathResult) {
  return {
    fastpath_mpps: round(fast.mpps, 2),
    reference_mpps: round(fast.referenceMpps, 2),
    fastpath_vs_reference: round(fast.mpps / fast.referenceMpps, 2),
    fastpath_vs_reference_median_pair: round(fast.pairRatio, 2),
    fastpath_runs_mpps: fast.runs.map((v) => round(v, 2)),
    reference_runs_mpps: fast.referenceRuns.map((v) => round(v, 2)),
    general_mpps: round(fast.generalMpps, 2),
    general_vs_reference: round(fast.generalMpps / fast.referenceMpps, 2),
    general_runs_mpps: fast.generalRuns.map((v) => round(v, 2)),
    fastpath_cpu_mpps: round(fast.cpuMpps, 2),
    reference_cpu_mpps: round(fast.referenceCpuMpps, 2),
    fastpath_vs_reference_cpu: round(fast.cpuMpps / fast.referenceCpuMpps, 2),
    general_vs_reference_cpu: round(fast.generalCpuMpps / fast.referenceCpuMpps, 2),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function dropSummary(pipeline: Pipeline): string {
  const parts: string[] = [];
  pipeline.counters.drops.forEach((count, reason) => {
    if (count > 0) parts.push(`${DROP_REASON_NAMES[reason]} ${count}`);
  });
  return parts.join(', ');
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

function benchMemory(): number {
  // The flow table alone, filled to FLOWS IPv4 flows.
  gc();
  const before = memory();
  const table = new FlowTable({ capacity: FLOWS, addrWords: 1 });
  const orig = new FlowKey();
  const reply = new FlowKey();
  for (let i = 0; i < FLOWS; i++) {
    orig.zone = (i % SITES) + 1;
    orig.protocol = 17;
    orig.src[0] = (0x0a000000 | (i >>> 4)) >>> 0;
    orig.dst[0] = 0xcb007101;
    orig.srcPort = 1024 + (i & 0xfff);
    orig.dstPort = 53;
    reply.reverseOf(orig);
    reply.zone = 0;
    reply.dst[0] = 0xc6336401;
    reply.dstPort = i & 0xffff;
    reply.src[0] = (0xcb007101 + (i >>> 16)) >>> 0;
    if (table.create(orig, reply, orig.zone, 0) < 0) throw new Error(`memory bench: flow ${i} not created`);
  }
  gc();
  const bytes = memory() - before;
  if (table.size !== FLOWS) throw new Error('memory bench: wrong size');
  return bytes / FLOWS;
}

async function main(): Promise<void> {
  const next = rng(SEED);
  log(`tether core benchmark: ${FLOWS.toLocaleString()} flows, ${ROUTES.toLocaleString()} routes, ${RULES} firewall rules, batches of ${BATCH}, node ${process.version}, huge pages ${wantHugePages ? 'on' : 'off'} (THP ${transparentHugePageMode()})`);
  const bytesPerFlow = fastPathOnly ? 0 : benchMemory();
  gc();
  const { routes, mlps } = benchRoutes(next);
  const rules = firewallRules(next);
  const spread = SOURCE_PORTS === 'spread';
  const { packets, ingress } = setupPackets(spread);
  const traffic = setupTraffic(packets, ingress);
  gc();
  const memBefore = memory();
  let allocate: ((bytes: number) => ArrayBuffer) | undefined;
  if (wantHugePages) {
    try {
      allocate = hugePageAllocator();
    } catch (e) {
      log(`huge pages unavailable (${(e as Error).message}); ordinary memory`);
    }
  }
  const { perSecond, perCpuSecond, pipeline } = benchSetup(routes, rules, traffic, allocate);
  if (setupOnly) {
    // Flow setup alone, also per second of this process's CPU time: steadier than wall time on a shared machine.
    // Then the same flows on SETUP_LANES worker threads (this thread's pipeline and packets let go first).
    const single = { setup_per_s: Math.round(perSecond), setup_per_cpu_s: Math.round(perCpuSecond) };
    const lanes = SETUP_LANES > 1 ? await benchSetupLanes(SETUP_LANES, spread, allocate !== undefined) : null;
    const result: Record<string, unknown> = { ...single, source_ports: SOURCE_PORTS, flows: FLOWS, node: process.version };
    if (lanes !== null) {
      result[`setup_per_s_${SETUP_LANES}_lanes`] = Math.round(lanes.perSecond);
      result[`setup_per_cpu_s_${SETUP_LANES}_lanes`] = Math.round(lanes.perCpuSecond);
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  gc();
  // External (huge-page) buffers are not in arrayBuffers: count the flow table's own arrays instead, and the
  // NAT mapping table's (on the same memory since the pipeline passes its allocator on).
  const external = allocate ? pipeline.flows4.memoryBytes() + (pipeline.snat?.mappingTableBytes() ?? 0) : 0;
  const pipelineBytesPerFlow = (memory() - memBefore + external) / pipeline.flows4.size;
  const hugeBytes = hugePageBytes();
  const fast = benchFastPath(pipeline, packets, ingress, next, allocate);
  if (fastPathOnly) {
    // The fast path's figures alone (and setup's, which fills its table): a shorter hold of the CPU lock.
    process.stdout.write(`${JSON.stringify({ ...fastPathFigures(fast), setup_per_s: Math.round(perSecond), flows: FLOWS, node: process.version })}\n`);
    return;
  }
  ensureConntrackLoaded();
  const kernelBytes = kernelConntrackObjectSize();
  const reevaluation = benchReevaluate(pipeline, fast.slab, BATCH);
  const classify = benchClassify(quick ? 20_000 : 100_000, next);
  // Setup again with 1,000 hostname rules loaded (SNI and Host, every port): the setup flows (UDP) cannot carry
  // those names, so each is decided at setup by the rules' L3/L4 part — what the rules cost a flow they do not classify.
  const withRules = benchSetup(routes, rules, traffic, allocate, hostnameRulesSpec());
  const esp = benchEsp();

  const result = {
    ...fastPathFigures(fast),
    setup_per_s: Math.round(perSecond),
    setup_with_hostname_rules_per_s: Math.round(withRules.perSecond),
    bytes_per_flow: round(bytesPerFlow, 1),
    bytes_per_flow_with_nat: round(pipelineBytesPerFlow, 1),
    route_lookups_mps: round(mlps, 1),
    kernel_conntrack_bytes_per_flow: kernelBytes,
    huge_pages: allocate !== undefined,
    huge_page_bytes: hugeBytes,
    transparent_huge_pages: transparentHugePageMode(),
    flows: FLOWS,
    routes: ROUTES + 1,
    firewall_rules: RULES,
    node: process.version,
    ...classify,
    reevaluate_ns: reevaluation.reevaluate_ns,
    reevaluated_flows: reevaluation.reevaluated,
    esp,
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const rows: Array<[string, string, string, string]> = [
    ['fast path (established, 64 B, 1 M flows)', `${result.fastpath_mpps} Mpps`, '≥ 5 Mpps', 'n/a in process (see bench:lab)'],
    ['reference: same memory accesses, no logic', `${result.reference_mpps} Mpps`, '', ''],
    ['fast path / reference (same run)', `${result.fastpath_vs_reference}`, '≥ 0.7', ''],
    ['general walk (specialised path off) / reference', `${result.general_vs_reference}`, '', ''],
    ['flow setup (1,000 rules, 100 k routes, SNAT)', `${result.setup_per_s.toLocaleString()} /s`, '≥ 1,000,000 /s', ''],
    [`  the same with ${GATEWAY_RULES.toLocaleString()} hostname rules loaded`, `${result.setup_with_hostname_rules_per_s.toLocaleString()} /s`, '', ''],
    ['memory per IPv4 flow (flow table)', `${result.bytes_per_flow} B`, '≤ 128 B', kernelBytes ? `${kernelBytes} B (nf_conntrack slab object)` : 'n/a'],
    ['memory per IPv4 flow (+ NAT mapping)', `${result.bytes_per_flow_with_nat} B`, '', ''],
    ['route lookups (100 k IPv4 routes)', `${result.route_lookups_mps} M/s`, '≥ 10 M/s', ''],
    [`classification per TLS flow (SNI, ${GATEWAY_RULES.toLocaleString()} hostname rules)`, `${result.classify_per_flow_ns} ns (SNI ${result.classify_sni_ns} + decide ${result.classify_decide_ns}; the plain scan: ${result.classify_decide_scan_ns})`, '', ''],
    ['re-evaluation per flow after a policy change', `${result.reevaluate_ns} ns (${result.reevaluated_flows.toLocaleString()} flows)`, '', ''],
    ...esp.map((r): [string, string, string, string] => [
      `ESP seal/open, ${r.size} B, ${r.algorithm}`,
      `${kpps(r.native_seal_pps)} / ${kpps(r.native_open_pps)} kpps (CPU)`,
      `node:crypto per packet: ${kpps(r.node_seal_pps)} / ${kpps(r.node_open_pps)} kpps (CPU)`,
      'n/a (no esp4 here)',
    ]),
  ];
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c].length), ['metric', 'tether', 'target', 'Linux kernel'][c].length));
  const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ');
  console.log(line(['metric', 'tether', 'target', 'Linux kernel']));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

function kpps(pps: number): string {
  return String(Math.round(pps / 1000));
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

if (isMainThread) {
  main().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
} else {
  laneMain();
}
