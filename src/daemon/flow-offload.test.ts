// The native flow cache against the JS pipeline, through real TUNs (native/src/flow_cache.h, flow-offload.ts).
//
//   inj (written here) ─ kernel forwards ─► tA (port 1, an interconnect) / tB (port 0, the egress) ─ read by the addon:
//     a hit is forwarded by the cache, a miss by the pipeline here ─► the other TUN ─ kernel forwards ─► sink (read here)
//
// The oracle: each random packet of an installed flow goes in twice, once after a flush (the JS pipeline forwards it,
// and reinstalls its direction), once with the entry in place (the cache forwards it, JS is not called). Both come
// out of the same kernel path, so the bytes read on the sink must be equal, checksums included.
// Needs root and /dev/net/tun: without them the suite FAILS (it must not pass silently in CI).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import { PacketBatch } from '../common/packet-batch.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { NextHopKind } from '../route/route-table.js';
import { openTun, type TunDevice } from '../io/tun.js';
import { buildIcmpEcho, buildUdp } from '../wire/build.js';
import { isAlive } from '../lab/lab.js';
import { sh } from '../../test/support/netns.js';
import { FlowOffload } from './flow-offload.js';

const PREFIX = 'of-';
const NS = `${PREFIX}${process.pid}-cache`;
const IC = 1;
/** A second interconnect, another site with the same client addresses (overlapping 10.0.1.0/24, told apart by ARR). */
const IC2 = 2;
const SITE = 'dc';
const CLIENT = '10.0.1.2';
const SERVER = '203.0.113.7';
const POOL = '198.51.100.1';
const WAIT_MS = 5000;
const UDP_FLOWS = 3;
const ICMP_FLOWS = 2;
const ICMP_ID_BASE = 0x100;
const UDP_PORT_BASE = 4000;
const DNS_PORT = 53;
/** Two kernel hops and tether's: a TTL from here on stays above 1 at every router. */
const MIN_TTL = 4;
const RUNS = 60;

/** Removes namespaces of this file's prefix whose process is gone, and this run's own. */
function removeLeftovers(): void {
  for (const line of sh('ip', 'netns', 'list').split('\n')) {
    const m = /^(of-(\d+)-\S+)/.exec(line);
    if (m && (Number(m[2]) === process.pid || !isAlive(Number(m[2])))) {
      try {
        sh('ip', 'netns', 'del', m[1]);
      } catch {
        /* already gone */
      }
    }
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('native flow cache vs the JS pipeline, through real TUNs', () => {
  const tuns: TunDevice[] = [];
  let inj: TunDevice;
  let tunA: TunDevice;
  let tunB: TunDevice;
  let sink: TunDevice;
  let inj2: TunDevice;
  let tunA2: TunDevice;
  let sink2: TunDevice;
  const out2: Uint8Array[] = [];
  let pipeline: Pipeline;
  let offload: FlowOffload;
  const out: Uint8Array[] = [];
  let jsBatches = 0;
  const injBatch = new PacketBatch(1);
  /** The flows' external endpoints as the sink saw them: per UDP flow its mapped port, per ICMP flow its mapped id. */
  const mappedUdp: number[] = [];
  const mappedIcmp: number[] = [];
  const now = (): number => performance.now();

  /** Writes `packet` into an injector (site 1's by default) and returns what arrives on `sinkOut` (site 1's). */
  async function inject(packet: Uint8Array, via?: TunDevice, sinkOut: Uint8Array[] = out): Promise<Uint8Array> {
    const had = sinkOut.length;
    injBatch.clear();
    injBatch.push(packet, 0, packet.length, 0);
    assert.equal((via ?? inj).writeBatch(injBatch, 0, 1), 1);
    await until(() => sinkOut.length > had, 'the packet on the sink');
    return sinkOut[sinkOut.length - 1];
  }

  const tunOf = (port: number): TunDevice | null => (port === IC ? tunA : port === IC2 ? tunA2 : port === PORT_INTERNET ? tunB : null);

  function onBatch(batch: PacketBatch): void {
    jsBatches++;
    const t = now();
    offload.beforeProcess(batch);
    pipeline.process(batch, t);
    offload.afterProcess(batch);
    for (const b of [batch, pipeline.generated]) {
      for (let i = 0; i < b.count; i++) {
        const hop = b.nextHop[i];
        if (hop !== NEXT_HOP_DROP) tunOf(hop)?.writeBatch(b, i, i + 1);
      }
    }
    pipeline.generated.clear();
  }

  before(() => {
    assert.equal(process.getuid?.(), 0, 'the flow cache tests need root (CAP_NET_ADMIN); they fail rather than skip');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing: the flow cache tests cannot run (modprobe tun)');
    removeLeftovers();
    sh('ip', 'netns', 'add', NS);
    const ns = (...args: string[]): string => sh('ip', 'netns', 'exec', NS, ...args);
    ns('sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv4.ip_forward=1',
      'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0');
    sh('ip', '-n', NS, 'link', 'set', 'lo', 'up');
    const name = (role: string): string => `of${process.pid}${role}`;
    inj = openTun(name('i'));
    tunA = openTun(name('a'), { offload: true });
    tunB = openTun(name('b'), { offload: true });
    sink = openTun(name('s'));
    inj2 = openTun(name('j'));
    tunA2 = openTun(name('c'), { offload: true });
    sink2 = openTun(name('t'));
    tuns.push(inj, tunA, tunB, sink, inj2, tunA2, sink2);
    for (const t of tuns) {
      sh('ip', 'link', 'set', t.name, 'netns', NS);
      sh('ip', '-n', NS, 'link', 'set', t.name, 'up');
    }
    // From the injector: the pool's address into the egress TUN (replies), everything else into the interconnect's.
    // What tether writes to either goes to the sink.
    const ip = (...args: string[]): string => sh('ip', '-n', NS, ...args);
    ip('route', 'add', `${POOL}/32`, 'dev', tunB.name, 'table', '100');
    ip('route', 'add', 'default', 'dev', tunA.name, 'table', '100');
    ip('route', 'add', 'default', 'dev', sink.name, 'table', '101');
    ip('rule', 'add', 'iif', inj.name, 'lookup', '100');
    ip('rule', 'add', 'iif', tunA.name, 'lookup', '101');
    ip('rule', 'add', 'iif', tunB.name, 'lookup', '101');
    // The second site: its own injector into its interconnect, and what tether writes to that goes to its own sink.
    ip('route', 'add', `${POOL}/32`, 'dev', tunB.name, 'table', '102');
    ip('route', 'add', 'default', 'dev', tunA2.name, 'table', '102');
    ip('route', 'add', 'default', 'dev', sink2.name, 'table', '103');
    ip('rule', 'add', 'iif', inj2.name, 'lookup', '102');
    ip('rule', 'add', 'iif', tunA2.name, 'lookup', '103');

    pipeline = new Pipeline({
      hashSeed: 7,
      onramps: [
        { id: IC, name: SITE, type: 'interconnect', site: 1, automaticReturnRouting: true },
        { id: IC2, name: 'dc2', type: 'interconnect', site: 2, automaticReturnRouting: true },
      ],
      routes: [{ prefix: '0.0.0.0/0', kind: NextHopKind.Internet }],
      egress: { addresses: [POOL] },
    });
    offload = new FlowOffload(pipeline, tunOf, now);
    sink.startReading(new PacketBatch(16), 99, (b) => {
      for (let i = 0; i < b.count; i++) out.push(b.packet(i).slice());
    });
    sink2.startReading(new PacketBatch(16), 98, (b) => {
      for (let i = 0; i < b.count; i++) out2.push(b.packet(i).slice());
    });
    tunA.startReading(new PacketBatch(64, 65536 + 256), IC, onBatch);
    tunA2.startReading(new PacketBatch(64, 65536 + 256), IC2, onBatch);
    tunB.startReading(new PacketBatch(64, 65536 + 256), PORT_INTERNET, onBatch);
  });

  after(() => {
    offload?.close();
    for (const t of tuns) t.close();
    removeLeftovers();
  });

  const udpOut = (k: number, opts: { ttl?: number; tos?: number; id?: number; df?: boolean; payload?: Uint8Array; zero?: boolean } = {}): Uint8Array =>
    buildUdp({ src: CLIENT, dst: SERVER, ttl: opts.ttl ?? 64, tos: opts.tos ?? 0, id: opts.id ?? 1, dontFragment: opts.df ?? true },
      { srcPort: UDP_PORT_BASE + k, dstPort: DNS_PORT, payload: opts.payload ?? new Uint8Array(4), zeroChecksum: opts.zero ?? false });
  const udpBack = (k: number, opts: { ttl?: number; tos?: number; id?: number; df?: boolean; payload?: Uint8Array; zero?: boolean } = {}): Uint8Array =>
    buildUdp({ src: SERVER, dst: POOL, ttl: opts.ttl ?? 64, tos: opts.tos ?? 0, id: opts.id ?? 1, dontFragment: opts.df ?? true },
      { srcPort: DNS_PORT, dstPort: mappedUdp[k], payload: opts.payload ?? new Uint8Array(4), zeroChecksum: opts.zero ?? false });
  const icmpOut = (k: number, opts: { ttl?: number; tos?: number; id?: number; df?: boolean; payload?: Uint8Array; seq?: number } = {}): Uint8Array =>
    buildIcmpEcho({ src: CLIENT, dst: SERVER, ttl: opts.ttl ?? 64, tos: opts.tos ?? 0, id: opts.id ?? 1, dontFragment: opts.df ?? true },
      { type: 'request', id: ICMP_ID_BASE + k, seq: opts.seq ?? 1, payload: opts.payload ?? new Uint8Array(8) });
  const icmpBack = (k: number, opts: { ttl?: number; tos?: number; id?: number; df?: boolean; payload?: Uint8Array; seq?: number } = {}): Uint8Array =>
    buildIcmpEcho({ src: SERVER, dst: POOL, ttl: opts.ttl ?? 64, tos: opts.tos ?? 0, id: opts.id ?? 1, dontFragment: opts.df ?? true },
      { type: 'reply', id: mappedIcmp[k], seq: opts.seq ?? 1, payload: opts.payload ?? new Uint8Array(8) });

  it('sets up UDP and ICMP echo flows through the pipeline and installs both directions', async () => {
    for (let k = 0; k < UDP_FLOWS; k++) {
      const o = await inject(udpOut(k));
      mappedUdp.push((o[20] << 8) | o[21]);
      await inject(udpBack(k)); // the reply: the flow is ASSURED, the reply direction installed
      await inject(udpOut(k)); // the forward direction installed
    }
    for (let k = 0; k < ICMP_FLOWS; k++) {
      const o = await inject(icmpOut(k));
      mappedIcmp.push((o[24] << 8) | o[25]);
      await inject(icmpBack(k));
      await inject(icmpOut(k));
    }
    const s = offload.status();
    assert.equal(s.entries, 2 * (UDP_FLOWS + ICMP_FLOWS), JSON.stringify(s));
    // The next packet of each is the cache's: JS not called.
    const calls = jsBatches;
    const hits = s.hits;
    const reply = await inject(icmpBack(0, { seq: 2 }));
    assert.equal(reply[9], 1);
    assert.equal(jsBatches, calls, 'JS was called for a cached flow');
    assert.equal(offload.status().hits, hits + 1);
    assert.equal(offload.status().wakeupsWithoutJs > 0, true);
  });

  it('writes the same bytes as the JS pipeline for random packets of installed flows (fast-check)', async () => {
    const bytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          udp: fc.boolean(),
          flow: fc.nat(),
          back: fc.boolean(),
          ttl: fc.integer({ min: MIN_TTL, max: 255 }),
          tos: fc.integer({ min: 0, max: 255 }),
          id: fc.integer({ min: 0, max: 0xffff }),
          df: fc.boolean(),
          zero: fc.boolean(),
          seq: fc.integer({ min: 0, max: 0xffff }),
          payload: bytes(300),
        }),
        async (r) => {
          const packet = r.udp
            ? (r.back ? udpBack : udpOut)(r.flow % UDP_FLOWS, r)
            : (r.back ? icmpBack : icmpOut)(r.flow % ICMP_FLOWS, r);
          offload.invalidate(); // the JS pipeline forwards it (and installs its direction again)
          const calls = jsBatches;
          const viaJs = await inject(packet);
          assert.equal(jsBatches, calls + 1);
          const hits = offload.status().hits;
          const viaCache = await inject(packet);
          // An outbound packet without DF gets a new IP id per packet (FLAG_RENUMBER): JS's, both times.
          const cached = r.back || r.df;
          assert.equal(offload.status().hits, hits + (cached ? 1 : 0), `cache hit expected: ${cached}`);
          assert.equal(jsBatches, calls + (cached ? 1 : 2));
          if (cached) assert.deepEqual(Buffer.from(viaCache).toString('hex'), Buffer.from(viaJs).toString('hex'));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('folds the hits into the flow: counted and touched, so the flow stays', async () => {
    await inject(udpOut(0)); // installed again if the last flush left it out
    const calls = jsBatches;
    await inject(udpOut(0, { id: 3 }));
    await inject(udpOut(0));
    assert.equal(jsBatches, calls, 'the cache forwarded both');
    const before = offload.status().folded;
    offload.sync();
    assert.ok(offload.status().folded >= before + 2);
  });

  it('punts a packet of an installed flow whose TTL would expire: JS sends time exceeded', async () => {
    await inject(udpBack(1)); // installed again if the last flush left it out
    // TTL 2 from here arrives with 1 at tether: JS's (RFC 1812 section 5.3.1: time exceeded).
    const punts = offload.status().punts;
    const calls = jsBatches;
    const had = out.length;
    injBatch.clear();
    const p = udpBack(1, { ttl: 2 });
    injBatch.push(p, 0, p.length, 0);
    inj.writeBatch(injBatch, 0, 1);
    await until(() => jsBatches > calls, 'JS to get the expiring packet');
    assert.equal(offload.status().punts, punts + 1);
    // Time exceeded goes back toward the server (port 0, egress TUN, then the sink).
    await until(() => out.length > had, 'the time exceeded on the sink');
    assert.equal(out[out.length - 1][20], 11, 'ICMP time exceeded');
  });

  it('keeps two sites with the same addresses apart (ARR): each reply reaches its own site, cached', async () => {
    // Both sites' 10.0.1.2 send from the same port and echo id: the pool maps them apart.
    const k = 0;
    const udp1 = await inject(udpOut(k));
    const udp2 = await inject(udpOut(k), inj2);
    const ports = [(udp1[20] << 8) | udp1[21], (udp2[20] << 8) | udp2[21]];
    assert.notEqual(ports[0], ports[1]);
    const reply = (port: number, id: number): Uint8Array =>
      buildUdp({ src: SERVER, dst: POOL, id, dontFragment: true }, { srcPort: DNS_PORT, dstPort: port, payload: Uint8Array.of(id) });
    // Set up, installed (reply direction: the first reply; it counts as JS's), then only the cache's.
    await inject(reply(ports[0], 1));
    await inject(reply(ports[1], 1), undefined, out2);
    const hits = offload.status().hits;
    const calls = jsBatches;
    for (let n = 2; n < 8; n++) {
      for (const site of [0, 1]) {
        const got = await inject(reply(ports[site], n), undefined, site === 0 ? out : out2);
        assert.equal(got[got.length - 1], n, 'the reply itself');
        assert.equal((got[22] << 8) | got[23], UDP_PORT_BASE + k, 'translated back to the client port');
      }
    }
    assert.equal(offload.status().hits, hits + 12);
    assert.equal(jsBatches, calls);
  });

  it('forgets a flow when it ends, and everything on a policy change', async () => {
    const entries = offload.status().entries;
    assert.ok(entries > 0);
    pipeline.setSites([]); // any change an established flow may read: a flush
    assert.equal(offload.status().entries, 0);
    await inject(udpOut(2));
    assert.equal(offload.status().entries, 1);
    const removals = offload.status().removals;
    await inject(udpOut(2)); // a hit not folded yet: counted into the flow as it ends
    const folded = offload.status().folded;
    // The flows end (idle for an hour): the entry goes with its flow, no flush.
    const flushes = offload.status().flushes;
    pipeline.expire(now() + 3_600_000, 1 << 20);
    assert.equal(offload.status().entries, 0);
    assert.equal(offload.status().flushes, flushes);
    assert.equal(offload.status().removals, removals + 1);
    assert.equal(offload.status().folded, folded + 1);
  });
});
