/**
 * `npm run bench:lane-ownership` — what the lanes' ownership directory costs flow setup (docs/ARCHITECTURE.md "Lanes").
 *
 * Sets up the same new source-NAT flows (UDP, a site toward the Internet, a 64-address pool) in pipelines built three
 * ways, round-robin in one process so every figure has same-run neighbours:
 *
 *   one_lane        no lanes (what `npm run bench` measures)
 *   lane_directory  lane 0 of 2 with the shared directory: each miss asks it (a flow key, an endpoint key) and each
 *                   new mapping claims its endpoint
 *   lane_foreign    the same, every endpoint already claimed by the other lane: each miss is listed for handoff
 *                   (the cost of finding it; the copy into the ring is the edge's, measured by its own counters)
 *
 * Reports the median setups per second of ROUNDS rounds each and the median extra nanoseconds per setup against
 * one_lane. Options: --json, --flows N (per round, default 200,000), --rounds N (default 5).
 */
import { performance } from 'node:perf_hooks';
import { PacketBatch } from '../src/common/packet-batch.js';
import { LaneDirectory, directoryBuckets } from '../src/common/lane-directory.js';
import { Pipeline, type PipelineConfig } from '../src/dataplane/pipeline.js';
import { NextHopKind } from '../src/route/route-table.js';
import { buildUdp } from '../src/wire/build.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const arg = (name: string, fallback: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const FLOWS = arg('--flows', 200_000);
const ROUNDS = arg('--rounds', 5);
const BATCH = 256;
const POOL_SIZE = 64;
const SITE = 1;
const OTHER_LANE = 1;
const PROTOCOL_UDP = 17;
const NS_PER_S = 1e9;

function config(): PipelineConfig {
  return {
    onramps: [{ id: SITE, name: 'site', type: 'interconnect', site: SITE, automaticReturnRouting: true }],
    routes: [{ prefix: '0.0.0.0/0', kind: NextHopKind.Internet }],
    egress: { addresses: Array.from({ length: POOL_SIZE }, (_, k) => `198.51.100.${k + 1}`), maxPortsPerSite: 0 },
    flows: { capacity4: FLOWS * 2, capacity6: 1 << 10 },
    hashSeed: 7,
  };
}

/** FLOWS first packets from distinct internal endpoints (10.x.y.z:port) to one server, in batches. */
function packets(): PacketBatch[] {
  const out: PacketBatch[] = [];
  for (let f = 0; f < FLOWS; f += BATCH) {
    const b = new PacketBatch(BATCH);
    for (let k = f; k < Math.min(FLOWS, f + BATCH); k++) {
      const host = `10.${(k >>> 14) & 0xff}.${(k >>> 6) & 0xff}.${(k & 0x3f) + 1}`;
      const p = buildUdp({ src: host, dst: '203.0.113.10' }, { srcPort: 10_000 + (k % 1000), dstPort: 53, payload: new Uint8Array(18) });
      b.push(p, 0, p.length, SITE);
    }
    out.push(b);
  }
  return out;
}

type Kind = 'one_lane' | 'lane_directory' | 'lane_foreign';

function round(kind: Kind, batches: PacketBatch[]): number {
  const cfg = config();
  let directory: LaneDirectory | null = null;
  if (kind !== 'one_lane') {
    directory = LaneDirectory.create(directoryBuckets(2 * FLOWS));
    cfg.lane = { index: 0, count: 2, directory: directory.buffer };
  }
  const pipeline = new Pipeline(cfg);
  if (kind === 'lane_foreign') {
    // Every endpoint's mapping "held" by lane 1: the zone of an ARR site is its site id.
    const addr = new Uint32Array(1);
    for (const b of batches) {
      for (let i = 0; i < b.count; i++) {
        const o = b.offset[i];
        addr[0] = ((b.data[o + 12] << 24) | (b.data[o + 13] << 16) | (b.data[o + 14] << 8) | b.data[o + 15]) >>> 0;
        directory!.claim(directory!.endpointHash(SITE, PROTOCOL_UDP, 4, addr, 0, (b.data[o + 20] << 8) | b.data[o + 21]), OTHER_LANE);
      }
    }
  }
  let now = 1_000_000;
  const t0 = performance.now();
  for (const b of batches) {
    for (let i = 0; i < b.count; i++) b.nextHop[i] = 0;
    pipeline.process(b, now);
    now += 0.001;
  }
  const seconds = (performance.now() - t0) / 1000;
  const set = pipeline.flows4.size + (pipeline.lanes?.handedOff ?? 0);
  if (set !== FLOWS) throw new Error(`${kind}: ${set} of ${FLOWS} flows set up or listed for handoff`);
  return FLOWS / seconds;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const batches = packets();
const kinds: Kind[] = ['one_lane', 'lane_directory', 'lane_foreign'];
const rates = new Map<Kind, number[]>(kinds.map((k) => [k, []]));
// One warm-up round each, then ROUNDS rounds round-robin; fresh pipelines and packets each time (setup rewrites them).
for (const k of kinds) round(k, packets());
for (let r = 0; r < ROUNDS; r++) for (const k of kinds) rates.get(k)!.push(round(k, r === 0 ? batches : packets()));
const result: Record<string, number> = { flows: FLOWS, rounds: ROUNDS };
for (const k of kinds) result[`${k}_setup_per_s`] = Math.round(median(rates.get(k)!));
for (const k of kinds.slice(1)) {
  const extra = rates.get(k)!.map((r, i) => NS_PER_S / r - NS_PER_S / rates.get('one_lane')![i]);
  result[`${k}_extra_ns_per_setup`] = Math.round(median(extra));
}
if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
else for (const [k, v] of Object.entries(result)) process.stdout.write(`${k.padEnd(36)} ${v.toLocaleString()}\n`);
