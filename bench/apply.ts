/**
 * `npm run bench:apply` — live configuration changes with 1,000 onramps configured (issue 8), in process.
 *
 *   change_ms          one API change to one onramp (PATCH /v1/onramps/NAME, its WireGuard allowed IPs and
 *                      preference), one after the other: request parsing, validation, the store's write, the
 *                      pipeline's diff and the transports' diff on a real Edge (its engines: WireGuard peers
 *                      changed in place; the edge is not started, so no kernel calls) (wall time and this
 *                      process's CPU time: the machine may be shared)
 *   edge_apply_ms      of that, the running edge's part (LiveEdge.applyConfig: pipeline, transports, health)
 *   forwarding         established 64-byte IPv4 UDP flows from the 1,000 onramps to the Internet through the
 *                      same Edge's pipeline, one batch per turn of the event loop (as the daemon's TUN reads
 *                      run), alone and with a burst of 100 changes running at the same time (the next one
 *                      starts when the last has answered and its turn has come), and the longest pause
 *                      between two batches: the longest piece of a change that runs without letting
 *                      packets through
 *
 *   health_poll_us     the health engine's poll() with every onramp probed at mid (a probe a second each, answered
 *                      at once), called as the daemon calls it (every 25 ms traffic look, and after each reply)
 *                      over a simulated minute: the simple scan (every onramp each call) and the deadline index
 *                      (only those due); µs a call and ms of poll per simulated second
 *
 * The reference beside each figure is the same run's: forwarding without changes.
 * Options: --json (one JSON object), --onramps N (default 1,000), --changes N (default 100).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PacketBatch } from '../src/common/packet-batch.js';
import { validateConfig, type TetherConfig } from '../src/config/index.js';
import { buildApi } from '../src/control/api.js';
import { ConfigStore } from '../src/control/store.js';
import { Edge, type EdgeLogger } from '../src/daemon/edge.js';
import { LiveEdge } from '../src/daemon/live.js';
import { keyToBase64, publicKeyFromPrivate } from '../src/onramp/wireguard/index.js';
import { TRAFFIC_LOOK_INTERVAL_MS } from '../src/daemon/health.js';
import { HealthEngine, type Probe } from '../src/health/index.js';
import { buildIcmpEcho, buildUdp } from '../src/wire/build.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const numArg = (name: string, fallback: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const ONRAMPS = numArg('--onramps', 1000);
const CHANGES = numArg('--changes', 100);
const BATCH = 256;
/** Batches per forwarding run: long enough that 100 changes spread over it. */
const BATCHES = 20_000;
const FLOWS_PER_ONRAMP = 8;
const TOKEN = 'bench-token';
const SERVER = 0xcb00710a; // 203.0.113.10

const silent: EdgeLogger = { info() {}, warn() {}, error() {}, debug() {}, isLevelEnabled: () => false };

function log(msg: string): void {
  if (!json) process.stderr.write(`${msg}\n`);
}

/** Onramp i (1-based): WireGuard peer site-i-wg of site-i, inner prefix 10.(i>>8).(i&255).0/24. */
function lan(i: number): string {
  return `10.${i >> 8}.${i & 0xff}.0/24`;
}

function config(): TetherConfig {
  const key = (seed: number): Uint8Array => new Uint8Array(createHash('sha256').update(`bench-key-${seed}`).digest());
  const sites = [];
  const onramps = [];
  for (let i = 1; i <= ONRAMPS; i++) {
    sites.push({ name: `site-${i}` });
    onramps.push({
      name: `site-${i}-wg`, type: 'wireguard', site: `site-${i}`, automatic_return_routing: true,
      wireguard: { device: 'wg-0', public_key: keyToBase64(publicKeyFromPrivate(key(i))), allowed_ips: [lan(i)] },
    });
  }
  return validateConfig({
    sites,
    wireguard_devices: [{ name: 'wg-0', listen_address: '192.0.2.1', listen_port: 51820, private_key: keyToBase64(key(0)) }],
    onramps,
    routes: [{ prefix: '0.0.0.0/0', next_hop: 'internet' }],
    egress: { addresses: ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4'] },
  }, 'bench');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Simulated time for the health poll figure: a minute of probes at mid. */
const HEALTH_SIMULATED_MS = 60_000;

/**
 * HealthEngine.poll() with ONRAMPS probed onramps, called as the daemon calls it: at every traffic look, and
 * after each reply (the round afterPackets schedules when a batch brought evidence). Returns the mean wall
 * time of one call (µs) and the poll time per simulated second (ms).
 */
function healthPollCost(scan: boolean): { perPollUs: number; perSecondMs: number } {
  const engine = new HealthEngine({ scan });
  for (let id = 1; id <= ONRAMPS; id++) {
    // spread the first probes over the first second, as onramps added one by one would be
    engine.add(id, { source: '100.64.0.1', target: `10.${id >> 8}.${id & 255}.1` }, (id * 1_000) / ONRAMPS);
  }
  const probes: Probe[] = [];
  const replies: Probe[] = [];
  let spent = 0;
  let polls = 0;
  const poll = (t: number): void => {
    probes.length = 0;
    const t0 = performance.now();
    engine.poll(t, probes);
    spent += performance.now() - t0;
    polls++;
    replies.push(...probes);
  };
  for (let t = 0; t < HEALTH_SIMULATED_MS; t += TRAFFIC_LOOK_INTERVAL_MS) {
    poll(t);
    for (const p of replies.splice(0)) {
      const reply = buildIcmpEcho({ src: p.dstAddr, dst: p.srcAddr }, { type: 'reply', id: p.id, seq: p.seq });
      engine.receive(p.onramp, reply, 0, reply.length, t + 1);
      poll(t + 1);
    }
  }
  return { perPollUs: (spent / polls) * 1_000, perSecondMs: spent / (HEALTH_SIMULATED_MS / 1_000) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-apply-'));
  const cfg = config();
  const store = ConfigStore.open(join(dir, 'tether.db'));
  store.seedFrom(cfg);
  const running = store.load();
  const edge = new Edge({ config: running, log: silent, hugePages: false });
  const live = new LiveEdge(edge, running);
  // The running edge's part of each change, timed apart.
  const edgeMs: number[] = [];
  const applyToEdge = live.applyConfig.bind(live);
  live.applyConfig = (next) => {
    const t = performance.now();
    try {
      return applyToEdge(next);
    } finally {
      edgeMs.push(performance.now() - t);
    }
  };
  const app = buildApi({ store, edge: live, token: TOKEN });
  await app.ready();
  log(`${ONRAMPS} onramps (WireGuard peers, one site each), store ${join(dir, 'tether.db')}`);

  // Established flows: FLOWS_PER_ONRAMP hosts behind every onramp, to the Internet server.
  const packets: Uint8Array[] = [];
  const ingress: number[] = [];
  for (let i = 1; i <= ONRAMPS; i++) {
    const id = edge.ids.onramps.get(`site-${i}-wg`)!;
    for (let h = 1; h <= FLOWS_PER_ONRAMP; h++) {
      packets.push(buildUdp({ src: ((10 << 24) | ((i >> 8) << 16) | ((i & 0xff) << 8) | h) >>> 0, dst: SERVER }, { srcPort: 40000, dstPort: 53, payload: new Uint8Array(64 - 28) }));
      ingress.push(id);
    }
  }
  const batch = new PacketBatch(BATCH);
  let cursor = 0;
  let forwarded = 0;
  const forwardOne = (): void => {
    batch.clear();
    for (let k = 0; k < BATCH; k++) {
      const p = packets[cursor];
      batch.push(p, 0, p.length, ingress[cursor]);
      cursor = (cursor + 1) % packets.length;
    }
    edge.pipeline.process(batch, performance.now());
    for (let k = 0; k < batch.count; k++) if (batch.nextHop[k] === 0) forwarded++;
  };
  for (let k = 0; k < Math.ceil(packets.length / BATCH) * 2; k++) forwardOne(); // set the flows up

  let change = 0;
  /** CPU time (user + system) of the last change: unlike wall time, not inflated by other work on the machine. */
  let lastCpuMs = 0;
  const applyOne = async (): Promise<number> => {
    const i = 1 + ((change * 7919) % ONRAMPS);
    const narrow = change % 2 === 0;
    change++;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const r = await app.inject({
      method: 'PATCH', url: `/v1/onramps/site-${i}-wg`,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/merge-patch+json' },
      payload: { preference: narrow ? 50 : 100, wireguard: { allowed_ips: [narrow ? lan(i).replace('/24', '/25') : lan(i)] } },
    });
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    lastCpuMs = (c.user + c.system) / 1000;
    if (r.statusCode !== 200) throw new Error(`change ${change}: ${r.statusCode} ${r.body}`);
    return ms;
  };

  // Time per change (warm-up first: the first requests compile the routes' validators).
  for (let k = 0; k < 10; k++) await applyOne();
  edgeMs.length = 0;
  const times: number[] = [];
  const cpu: number[] = [];
  for (let k = 0; k < CHANGES; k++) {
    times.push(await applyOne());
    cpu.push(lastCpuMs);
  }
  times.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  const edgeSorted = edgeMs.slice().sort((a, b) => a - b);

  // Forwarding alone, then with the burst: one batch per turn of the event loop (setImmediate, after I/O,
  // as the daemon's TUN reads run); a change due every BATCHES / CHANGES batches starts once the one before
  // has answered, and runs in the same event loop, between batches, as the API's requests do.
  const run = (withChanges: boolean): Promise<{ mpps: number; maxPauseMs: number; forwardedShare: number; changes: number }> => new Promise((resolve, reject) => {
    forwarded = 0;
    const every = Math.floor(BATCHES / CHANGES);
    let maxPause = 0;
    let b = 0;
    let due = 0;
    let done = 0;
    let inFlight = false;
    let last = performance.now();
    const t0 = last;
    const tick = (): void => {
      const now = performance.now();
      maxPause = Math.max(maxPause, now - last);
      forwardOne();
      last = performance.now();
      b++;
      if (withChanges && b % every === 0) due++;
      if (due > done && !inFlight) {
        inFlight = true;
        applyOne().then(() => { done++; inFlight = false; }, reject);
      }
      if (b < BATCHES || inFlight || due > done) setImmediate(tick);
      else {
        const s = (performance.now() - t0) / 1000;
        resolve({ mpps: (b * BATCH) / s / 1e6, maxPauseMs: maxPause, forwardedShare: forwarded / (b * BATCH), changes: done });
      }
    };
    setImmediate(tick);
  });
  const alone = await run(false);
  const burst = await run(true);
  const aloneAgain = await run(false);

  const healthPoll = { scan: healthPollCost(true), index: healthPollCost(false) };

  const result = {
    onramps: ONRAMPS,
    health_poll_us: healthPoll,
    changes: CHANGES,
    change_ms: { median: percentile(times, 0.5), p95: percentile(times, 0.95), max: times[times.length - 1] },
    change_cpu_ms: { median: percentile(cpu, 0.5), p95: percentile(cpu, 0.95), max: cpu[cpu.length - 1] },
    edge_apply_ms: { median: percentile(edgeSorted, 0.5), p95: percentile(edgeSorted, 0.95), max: edgeSorted[edgeSorted.length - 1] },
    load_average: loadavg()[0],
    forwarding_mpps: { alone: (alone.mpps + aloneAgain.mpps) / 2, with_burst: burst.mpps },
    longest_pause_ms: { alone: Math.max(alone.maxPauseMs, aloneAgain.maxPauseMs), with_burst: burst.maxPauseMs },
    forwarded_share: { alone: alone.forwardedShare, with_burst: burst.forwardedShare },
    burst_changes: burst.changes,
  };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    const f = (v: number, d = 2): string => v.toFixed(d);
    console.log(`change to one onramp, ${ONRAMPS} configured (${CHANGES} changes): median ${f(result.change_ms.median)} ms, p95 ${f(result.change_ms.p95)} ms, max ${f(result.change_ms.max)} ms`);
    console.log(`  CPU time per change: median ${f(result.change_cpu_ms.median)} ms, p95 ${f(result.change_cpu_ms.p95)} ms (load average ${f(result.load_average, 1)})`);
    console.log(`  of which the running edge's part: median ${f(result.edge_apply_ms.median)} ms, p95 ${f(result.edge_apply_ms.p95)} ms`);
    console.log(`forwarding, 64-byte UDP, established: ${f(result.forwarding_mpps.alone, 3)} Mpps alone | ${f(result.forwarding_mpps.with_burst, 3)} Mpps with ${result.burst_changes} changes at the same time`);
    console.log(`longest pause between two batches: ${f(result.longest_pause_ms.alone)} ms alone | ${f(result.longest_pause_ms.with_burst)} ms with the burst`);
    const hp = result.health_poll_us;
    console.log(`health poll, ${ONRAMPS} probed onramps (each look and each reply): ${f(hp.scan.perPollUs, 2)} µs a call, ${f(hp.scan.perSecondMs, 1)} ms/s scan | ${f(hp.index.perPollUs, 2)} µs a call, ${f(hp.index.perSecondMs, 1)} ms/s deadline index`);
    console.log(`packets forwarded (not dropped): ${f(result.forwarded_share.alone * 100, 1)} % alone | ${f(result.forwarded_share.with_burst * 100, 1)} % with the burst`);
  }
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
}

await main();
