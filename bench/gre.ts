/**
 * `npm run bench:gre` — the edge's GRE receive and send path, in process, no TUN, one core.
 *
 *   outer GRE packets (site tunnel) ─ Underlay.demux (inspect outer once) ─ GreTransport.receiveUnderlay
 *     ─ inner in place ─ Pipeline.process (inspect inner once, MSS clamp on SYNs) ─ DeliveryTable
 *     ─ GreTransport.deliver (length against the tunnel MTU, encapsulate in place) ─ data-center tunnel
 *
 * Two GRE onramps on one underlay: a site (ARR on) whose clients send to a data center reached over the second
 * tunnel, so every packet is received from one tunnel and sent into the other. Established flows only: every
 * flow is set up during the warm-up, and the measurement checks that each packet left on the data-center tunnel.
 *
 *   gre_udp64_mpps    inner IPv4/UDP packets of 64 bytes (88 bytes on the wire inside the outer IPv4 + GRE)
 *   gre_udp1400_mpps  inner IPv4/UDP packets of 1,400 bytes
 *   gre_syn_mix_mpps  64-byte UDP with every 8th packet a TCP SYN (a retransmitted SYN of its own flow, MSS 1460):
 *                     the share that MSS clamping (RFC 4459 section 3.2) rewrites
 *   …_cpu             the same packets per second of the process's CPU time (user + system) instead of wall
 *                     time: steadier than the wall-clock figure when other jobs share the cores
 *
 * Each batch is refilled from the outer packet templates before it is demultiplexed (the encapsulation writes
 * in place, so a batch can go round only once): the figures include that copy, as a TUN read would. The
 * underlay's TUN write is not measured: without a TUN, Underlay.queue has no output to note the packet's index in.
 *
 * Options: --json (one JSON object), --flows N (default 4,096), --seconds S (per figure, default 3).
 */
import { performance } from 'node:perf_hooks';
import { NEXT_HOP_DROP } from '../src/common/ids.js';
import { PacketBatch } from '../src/common/packet-batch.js';
import type { GreOnrampConfig } from '../src/config/index.js';
import { toOnrampSpec } from '../src/config/index.js';
import { EDGE_COUNTER_NAMES } from '../src/daemon/transports/counters.js';
import { GreTransport } from '../src/daemon/transports/gre.js';
import { DeliveryTable, TunOutputs, TunnelAddresses, type TransportHost } from '../src/daemon/transports/transport.js';
import { Underlay } from '../src/daemon/transports/underlay.js';
import { Pipeline } from '../src/dataplane/pipeline.js';
import { encapsulate4 } from '../src/onramp/gre/index.js';
import { NextHopKind } from '../src/route/route-table.js';
import { parseIpv4 } from '../src/wire/addr.js';
import { buildTcp, buildUdp } from '../src/wire/build.js';
import { IPPROTO_GRE, TCP_SYN } from '../src/wire/constants.js';
import { inspect } from '../src/wire/inspect.js';
import { DST, PacketInfo } from '../src/wire/packet-info.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
function option(name: string, fallback: string): string {
  const k = args.indexOf(name);
  return k >= 0 && k + 1 < args.length ? args[k + 1] : fallback;
}
const FLOWS = Number(option('--flows', '4096'));
const SECONDS = Number(option('--seconds', '3'));
/** The read batch size of the edge's TUN loops, and of `npm run bench`. */
const BATCH = 256;
const WARMUP_SECONDS = 0.5;
/** Every SYN_EVERY-th packet of the mixed figure is a TCP SYN. */
const SYN_EVERY = 8;
/** Inner IPv4 packet sizes (bytes, IP header included); UDP and IPv4 headers take 28 of them. */
const SMALL = 64;
const LARGE = 1400;
const IPV4_UDP_HEADERS = 28;
/** Tunnel MTU of both tunnels (1,500 minus the outer IPv4 and GRE headers, RFC 2784 section 2). */
const TUNNEL_MTU = 1476;
/** The MSS a SYN announces: Ethernet's 1,500-byte MTU minus IPv4 and TCP headers (RFC 9293 section 3.7.1). */
const SYN_MSS = 1460;
/** MTU of the edge's own TUNs (none is opened here; the host record wants one). */
const TUN_MTU = 1500;
/** Room in front of a template's inner packet for the outer headers (outer IPv4 + GRE with every option). */
const TEMPLATE_HEADROOM = 64;

const SITE_ID = 1;
const DC_ID = 2;
const EDGE_SITE_ADDR = '192.0.2.1';
const EDGE_DC_ADDR = '192.0.2.2';
const SITE_REMOTE = '198.51.100.7';
const DC_REMOTE = '203.0.113.9';
const SERVER = '172.16.0.10';
const SERVER_PORT = 5001;

function log(msg: string): void {
  if (!json) process.stderr.write(`${msg}\n`);
}

/** Flow f's client: 10.1.0.0/16 addresses, ports from 10,000 up. */
function client(f: number): { src: string; srcPort: number } {
  return { src: `10.1.${(f >>> 8) & 0xff}.${f & 0xff}`, srcPort: 10_000 + (f >>> 16) };
}

/** The inner packet as the site's tunnel carries it: outer IPv4 from the site's endpoint to the edge, GRE. */
function greFromSite(inner: Uint8Array): Uint8Array {
  const buf = new Uint8Array(TEMPLATE_HEADROOM + inner.length);
  buf.set(inner, TEMPLATE_HEADROOM);
  const o = encapsulate4(buf, TEMPLATE_HEADROOM, inner.length, 0, 0, 0, 0, parseIpv4(SITE_REMOTE), parseIpv4(EDGE_SITE_ADDR), 0);
  if (o < 0) throw new Error(`encapsulate4: ${o}`);
  return buf.slice(o);
}

/** One outer packet per flow; with `synEvery`, every synEvery-th is a TCP SYN of its own flow instead. */
function templates(size: number, synEvery: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let f = 0; f < FLOWS; f++) {
    const { src, srcPort } = client(f);
    const ip = { src, dst: SERVER };
    const inner =
      synEvery > 0 && f % synEvery === synEvery - 1
        ? buildTcp(ip, { srcPort, dstPort: SERVER_PORT, seq: f, flags: TCP_SYN, options: { mss: SYN_MSS } })
        : buildUdp(ip, { srcPort, dstPort: SERVER_PORT, payload: new Uint8Array(size - IPV4_UDP_HEADERS) });
    out.push(greFromSite(inner));
  }
  return out;
}

function greOnramp(name: string, local: string, remote: string): GreOnrampConfig {
  return { name, type: 'gre', automatic_return_routing: true, preference: 100, max_flows: 0, gre: { local, remote, mtu: TUNNEL_MTU } };
}

/** The AFTER edge's per-batch work on the underlay (src/daemon/edge.ts onUnderlay + afterProcess), without TUNs. */
class GreEdge {
  readonly pipeline: Pipeline;
  readonly underlay: Underlay;
  readonly host: TransportHost;
  readonly delivery = new DeliveryTable();

  constructor() {
    const silent = { info() {}, warn() {}, error() {}, debug() {} };
    this.host = {
      log: silent,
      counters: new Float64Array(EDGE_COUNTER_NAMES.length),
      delivery: this.delivery,
      outputs: new TunOutputs(BATCH),
      feedback: new PacketBatch(BATCH),
      tunnelAddresses: new TunnelAddresses(),
      mtu: TUN_MTU,
      isRunning: () => true,
      readPlain: () => {},
    };
    const site = greOnramp('site-a', EDGE_SITE_ADDR, SITE_REMOTE);
    const dc = greOnramp('dc', EDGE_DC_ADDR, DC_REMOTE);
    this.pipeline = new Pipeline({
      onramps: [toOnrampSpec(site, SITE_ID, SITE_ID), toOnrampSpec(dc, DC_ID, DC_ID)],
      routes: [{ prefix: `${SERVER}/24`, kind: NextHopKind.Onramp, port: DC_ID }],
      firewall: { rules: [], defaultAction: 'allow' },
      flows: { capacity4: 1 << Math.ceil(Math.log2(2 * FLOWS)) },
      hashSeed: 12345,
    });
    this.underlay = new Underlay(this.host, 'tt-bench', BATCH);
    const gre = new GreTransport(this.host, this.underlay);
    gre.open();
    gre.add(site, SITE_ID);
    gre.add(dc, DC_ID);
  }

  /** One read batch: demux, process, deliver (the edge's onUnderlay and afterProcess, in that order). */
  onUnderlay(batch: PacketBatch): void {
    const now = performance.now();
    const j = this.underlay.demux(batch, now);
    batch.count = j;
    if (j > 0) this.pipeline.process(batch, now);
    const n = batch.count;
    const delivery = this.delivery;
    this.host.outputs.reset();
    for (let i = 0; i < n; i++) {
      const hop = batch.nextHop[i];
      if (hop === NEXT_HOP_DROP) continue;
      const transport = delivery.of(hop);
      if (transport !== null) transport.deliver(batch, i, hop, now);
    }
    this.host.outputs.flush(batch);
    this.underlay.flushTx();
  }
}

/** Copies BATCH templates, starting at template `first`, into the batch as a TUN read would leave them. */
function refill(batch: PacketBatch, packets: Uint8Array[], first: number): void {
  batch.clear();
  for (let k = 0; k < BATCH; k++) {
    const p = packets[(first + k) % packets.length];
    batch.push(p, 0, p.length, 0);
  }
}

/** Every packet of the last batch left on the data-center tunnel as GRE (checked once, outside the timing). */
function checkDelivered(batch: PacketBatch, info: PacketInfo): void {
  if (batch.count !== BATCH) throw new Error(`${BATCH - batch.count} packets of the batch were not received`);
  const dc = parseIpv4(DC_REMOTE);
  for (let i = 0; i < batch.count; i++) {
    if (batch.nextHop[i] !== DC_ID) throw new Error(`packet ${i}: next hop ${batch.nextHop[i]}, drop ${batch.drop[i]}`);
    inspect(batch.data, batch.offset[i], batch.length[i], info);
    if (info.protocol !== IPPROTO_GRE || info.addr[DST] !== dc) throw new Error(`packet ${i}: not GRE to the data center's endpoint`);
  }
}

/** Packets per second (millions) through the edge for `seconds`, after a warm-up that sets every flow up. */
function measure(edge: GreEdge, packets: Uint8Array[]): { wall: number; cpu: number } {
  const batch = new PacketBatch(BATCH);
  let first = 0;
  const warmEnd = performance.now() + WARMUP_SECONDS * 1000;
  // At least one pass over every template, so every flow exists before the clock starts.
  for (let sent = 0; sent < packets.length || performance.now() < warmEnd; sent += BATCH) {
    refill(batch, packets, first);
    edge.onUnderlay(batch);
    first = (first + BATCH) % packets.length;
  }
  checkDelivered(batch, new PacketInfo());
  let count = 0;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const end = start + SECONDS * 1000;
  let now = start;
  while (now < end) {
    for (let r = 0; r < 16; r++) {
      refill(batch, packets, first);
      edge.onUnderlay(batch);
      first = (first + BATCH) % packets.length;
      count += batch.count;
    }
    now = performance.now();
  }
  const cpu = process.cpuUsage(cpuStart);
  // Microseconds of CPU time: packets per microsecond is millions of packets per second.
  return { wall: count / ((now - start) / 1000) / 1e6, cpu: count / (cpu.user + cpu.system) };
}

function main(): void {
  const results: Record<string, number | string> = {};
  const cases: Array<[string, Uint8Array[]]> = [
    ['gre_udp64_mpps', templates(SMALL, 0)],
    ['gre_udp1400_mpps', templates(LARGE, 0)],
    ['gre_syn_mix_mpps', templates(SMALL, SYN_EVERY)],
  ];
  for (const [name, packets] of cases) {
    // A fresh edge per figure: each starts from an empty flow table and fresh tunnel counters.
    const mpps = measure(new GreEdge(), packets);
    results[name] = Number(mpps.wall.toFixed(3));
    results[`${name}_cpu`] = Number(mpps.cpu.toFixed(3));
    log(`${name.padEnd(18)} ${mpps.wall.toFixed(3)} Mpps, ${mpps.cpu.toFixed(3)} Mpps per CPU second`);
  }
  results.flows = FLOWS;
  results.batch = BATCH;
  results.node = process.version;
  if (json) process.stdout.write(`${JSON.stringify(results)}\n`);
}

main();
