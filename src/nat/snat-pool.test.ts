import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NatEndpoint, SnatPool } from './snat-pool.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { formatIpv4, formatIpv6, parseAddress } from '../wire/addr.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';

const TCP = IPPROTO_TCP;
const UDP = IPPROTO_UDP;

function words(text: string): Uint32Array {
  const w = new Uint32Array(4);
  assert.notEqual(parseAddress(text, w), 0, text);
  return w;
}

function text(family: 4 | 6, w: Uint32Array): string {
  return family === 4 ? formatIpv4(w[0]) : formatIpv6(w);
}

/** Acquire returning [external address text, port] or null. */
function acquire(pool: SnatPool, zone: number, protocol: number, address: string, port: number): [string, number] | null {
  const family = address.includes(':') ? 6 : 4;
  const out = new Uint32Array(4);
  const ext = pool.acquire(zone, protocol, family, words(address), 0, port, out, 0);
  return ext < 0 ? null : [text(family, out), ext];
}

function release(pool: SnatPool, zone: number, protocol: number, address: string, port: number): boolean {
  return pool.release(zone, protocol, address.includes(':') ? 6 : 4, words(address), 0, port);
}

test('endpoint-independent mapping with port preservation and reference counting', () => {
  const pool = new SnatPool({ addresses: ['198.51.100.1'] });
  assert.deepEqual(acquire(pool, 1, TCP, '10.0.1.10', 40000), ['198.51.100.1', 40000]);
  // Second flow of the same endpoint (any destination): same mapping, one more reference.
  assert.deepEqual(acquire(pool, 1, TCP, '10.0.1.10', 40000), ['198.51.100.1', 40000]);
  assert.equal(pool.references(1, TCP, 4, words('10.0.1.10'), 0, 40000), 2);
  // Same internal address and port in another zone (overlapping site): a different external port, same parity.
  const other = acquire(pool, 2, TCP, '10.0.1.10', 40000)!;
  assert.notEqual(other[1], 40000);
  assert.equal(other[1] & 1, 0);
  // UDP is an independent space: the port is preserved.
  assert.deepEqual(acquire(pool, 2, UDP, '10.0.1.10', 40000), ['198.51.100.1', 40000]);
  assert.equal(pool.mappings, 3);
  assert.equal(release(pool, 1, TCP, '10.0.1.10', 40000), true);
  assert.equal(pool.mappings, 3);
  assert.equal(release(pool, 1, TCP, '10.0.1.10', 40000), true);
  assert.equal(pool.mappings, 2);
  assert.equal(release(pool, 1, TCP, '10.0.1.10', 40000), false);
  const into = new NatEndpoint();
  assert.equal(pool.lookupExternal(TCP, 4, words('198.51.100.1'), 0, 40000, into), false);
  assert.equal(pool.lookupExternal(TCP, 4, words('198.51.100.1'), 0, other[1], into), true);
  assert.deepEqual([into.zone, formatIpv4(into.addr[0]), into.port], [2, '10.0.1.10', 40000]);
});

test('ICMP echo identifiers and IPv6', () => {
  const pool = new SnatPool({ addresses: ['2001:db8::1', '198.51.100.1'], portMin: 1 });
  assert.deepEqual(acquire(pool, 0, IPPROTO_ICMPV6, 'fd00::5', 7), ['2001:db8::1', 7]);
  assert.deepEqual(acquire(pool, 0, IPPROTO_ICMP, '10.0.0.5', 7), ['198.51.100.1', 7]);
  const into = new NatEndpoint();
  assert.equal(pool.lookupExternal(IPPROTO_ICMPV6, 6, words('2001:db8::1'), 0, 7, into), true);
  assert.equal(formatIpv6(into.addr), 'fd00::5');
  assert.equal(pool.isPoolAddress6(words('2001:db8::1'), 0), true);
  assert.equal(pool.isPoolAddress6(words('2001:db8::2'), 0), false);
  assert.equal(pool.isPoolAddress4(words('198.51.100.1')[0]), true);
  assert.equal(pool.isPoolAddress4(words('198.51.100.2')[0]), false);
  // Unsupported protocol (GRE) and a family without pool addresses are refused, not thrown.
  assert.equal(pool.supportsProtocol(47), false);
  assert.equal(acquire(pool, 0, 47, '10.0.0.5', 0), null);
  const v4only = new SnatPool({ addresses: ['198.51.100.1'] });
  assert.equal(acquire(v4only, 0, TCP, 'fd00::5', 5000), null);
});

test('well-known range and parity preserved when the port is taken', () => {
  const pool = new SnatPool({ addresses: ['198.51.100.1'], portMin: 500, portMax: 2000 });
  assert.deepEqual(acquire(pool, 1, UDP, '10.0.0.1', 600), ['198.51.100.1', 600]);
  const low = acquire(pool, 2, UDP, '10.0.0.1', 600)!;
  assert.ok(low[1] >= 500 && low[1] <= 1023 && low[1] % 2 === 0, `got ${low[1]}`);
  assert.deepEqual(acquire(pool, 1, UDP, '10.0.0.1', 1501), ['198.51.100.1', 1501]);
  const high = acquire(pool, 2, UDP, '10.0.0.1', 1501)!;
  assert.ok(high[1] >= 1024 && high[1] <= 2000 && high[1] % 2 === 1, `got ${high[1]}`);
  // Internal port outside the pool range: any pool port of the same parity.
  const outside = acquire(pool, 1, UDP, '10.0.0.1', 40001)!;
  assert.ok(outside[1] >= 1024 && outside[1] <= 2000 && outside[1] % 2 === 1, `got ${outside[1]}`);
});

test('exhaustion returns -1 and recovers after a release; paired pooling never switches address', () => {
  const pool = new SnatPool({ addresses: ['198.51.100.1', '198.51.100.2'], portMin: 2000, portMax: 2003 });
  const paired = acquire(pool, 1, TCP, '10.0.0.1', 1)![0];
  for (let p = 2; p <= 4; p++) assert.equal(acquire(pool, 1, TCP, '10.0.0.1', p)![0], paired);
  assert.equal(acquire(pool, 1, TCP, '10.0.0.1', 5), null);
  assert.equal(pool.portsInUse().find((u) => u.address === paired && u.protocol === TCP)!.used, 4);
  assert.ok(acquire(pool, 1, UDP, '10.0.0.1', 5) !== null); // other protocol space
  release(pool, 1, TCP, '10.0.0.1', 3);
  assert.deepEqual(acquire(pool, 1, TCP, '10.0.0.1', 5)![0], paired);
});

test('bucket4 is the bucket acquire files an IPv4 mapping in; prefetch() reads it, changes nothing', () => {
  const u16 = fc.integer({ min: 0, max: 0xffff });
  fc.assert(
    fc.property(u16, fc.constantFrom(TCP, UDP, IPPROTO_ICMP), fc.integer({ min: 0, max: 0xffffffff }), u16, fc.integer({ min: 1, max: 5000 }), (zone, protocol, addr, port, initialMappings) => {
      const pool = new SnatPool({ addresses: ['198.51.100.1'], hashSeed: 5, initialMappings });
      const internal = Uint32Array.of(addr, 0, 0, 0);
      const out = new Uint32Array(4);
      const ext = pool.acquire(zone, protocol, 4, internal, 0, port, out, 0);
      assert.ok(ext >= 0);
      const inner = pool as unknown as { endpointHash(z: number, pf: number, f: number, a: Uint32Array, o: number, p: number): number; bucketMask: number };
      const bucket = pool.bucket4(zone, protocol, addr | 0, port);
      assert.equal(bucket, inner.endpointHash(zone, protocol | (4 << 8), 4, internal, 0, port) & inner.bucketMask, 'signed or unsigned words: one hash');
      assert.equal(pool.bucket4(zone, protocol, addr >>> 0, port), bucket);
      const slots = Int32Array.of(bucket, -1);
      assert.equal(typeof pool.prefetch(slots, 2), 'number');
      assert.deepEqual([...slots], [-1, -1], 'what it read last: the chains\' second mappings, none (the one mapping is the head)');
      assert.equal(pool.acquire(zone, protocol, 4, internal, 0, port, out, 0), ext, 'unchanged: the same mapping');
      assert.equal(pool.references(zone, protocol, 4, internal, 0, port), 2);
    }),
    { numRuns: 200 },
  );
});

test('forecast4 returns bucket4; it and prefetch() change nothing: a pool forecasting every endpoint first acquires and releases as its twin', () => {
  const endpoint = fc.record({
    zone: fc.integer({ min: 0, max: 3 }),
    protocol: fc.constantFrom(TCP, UDP, IPPROTO_ICMP, 47),
    addr: fc.integer({ min: 0, max: 0xffffffff }),
    // Mostly a few ports, so preserved ports get taken and the search's start word is forecast too; well-known ones too.
    port: fc.oneof(fc.constantFrom(53, 1000, 40000, 40001), fc.integer({ min: 0, max: 0xffff })),
    release: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(endpoint, { minLength: 1, maxLength: 300 }), fc.constantFrom(1, 2), fc.integer({ min: 0, max: 1 }), (steps, lanes, lane) => {
      const opts = { addresses: ['198.51.100.1', '198.51.100.7', '2001:db8::1'], hashSeed: 11, portMin: 40000, portMax: 40100, lane: lane % lanes, lanes };
      const forecasting = new SnatPool(opts);
      const twin = new SnatPool(opts);
      const out = new Uint32Array(4);
      const twinOut = new Uint32Array(4);
      for (const s of steps) {
        const internal = Uint32Array.of(s.addr, 0, 0, 0);
        const bucket = forecasting.bucket4(s.zone, s.protocol, s.addr, s.port);
        assert.equal(forecasting.forecast4(0, s.zone, s.protocol, s.addr | 0, s.port), bucket);
        assert.equal(forecasting.forecast4(1, s.zone, s.protocol, s.addr >>> 0, s.port), bucket);
        assert.equal(typeof forecasting.prefetch(Int32Array.of(bucket, -1, bucket), 3), 'number');
        const ext = forecasting.acquire(s.zone, s.protocol, 4, internal, 0, s.port, out, 0);
        assert.equal(ext, twin.acquire(s.zone, s.protocol, 4, internal, 0, s.port, twinOut, 0));
        if (ext >= 0) assert.equal(out[0], twinOut[0]);
        if (s.release && ext >= 0) assert.equal(forecasting.release(s.zone, s.protocol, 4, internal, 0, s.port), twin.release(s.zone, s.protocol, 4, internal, 0, s.port));
      }
      assert.equal(forecasting.mappings, twin.mappings);
    }),
    { numRuns: 150 },
  );
});

test('initialMappings and allocate: room made at once, on the given memory; bad sizes throw', () => {
  const asked: number[] = [];
  const pool = new SnatPool({ addresses: ['198.51.100.1'], initialMappings: 3000, allocate: (bytes) => { asked.push(bytes); return new ArrayBuffer(bytes); } });
  assert.deepEqual(asked, [3000 * 13 * 4, 4096 * 4], 'records, then buckets (a power of two >= the mappings)');
  assert.equal(pool.mappingTableBytes(), asked[0] + asked[1]);
  for (let i = 0; i < 3000; i++) assert.ok(acquire(pool, 1, UDP, `10.1.${i >> 8}.${i & 255}`, 7000));
  assert.deepEqual(asked.slice(2), [8 * 65536 * 4], 'no growth up to initialMappings; the UDP reverse index from one slab of 8 spaces');
  assert.equal(pool.mappingTableBytes(), asked[0] + asked[1] + asked[2]);
  assert.ok(acquire(pool, 1, UDP, '10.2.0.1', 7000));
  assert.equal(asked.length, 5, 'then it doubles on the same allocator');
  assert.throws(() => new SnatPool({ addresses: ['198.51.100.1'], initialMappings: 0 }), /initialMappings/);
});

test("reverse indexes carved from the owner's slabs stay apart: every external endpoint finds its own mapping", () => {
  const addresses = Array.from({ length: 10 }, (_, i) => `198.51.100.${i + 1}`);
  const asked: number[] = [];
  const pool = new SnatPool({ addresses, hashSeed: 5, initialMappings: 4096, allocate: (bytes) => { asked.push(bytes); return new ArrayBuffer(bytes); } });
  const plain = new SnatPool({ addresses, hashSeed: 5, initialMappings: 4096 });
  const into = new NatEndpoint();
  const expected: Array<[string, number, number, string, number]> = [];
  for (let i = 0; i < 3000; i++) {
    const host = `10.${i % 3}.${(i >> 8) & 255}.${i & 255}`;
    const protocol = i % 2 === 0 ? UDP : TCP;
    const got = acquire(pool, 1, protocol, host, 5000 + (i % 7));
    assert.ok(got);
    assert.deepEqual(got, acquire(plain, 1, protocol, host, 5000 + (i % 7)), 'the same mapping as on ordinary memory');
    expected.push([got[0], got[1], protocol, host, 5000 + (i % 7)]);
  }
  // 10 addresses x (UDP, TCP) = 20 spaces: three slabs of 8.
  assert.deepEqual(asked.slice(2), [8 * 65536 * 4, 8 * 65536 * 4, 8 * 65536 * 4]);
  for (const [ext, port, protocol, host, hostPort] of expected) {
    assert.equal(pool.lookupExternal(protocol, 4, words(ext), 0, port, into), true, `${ext}:${port}`);
    assert.deepEqual([formatIpv4(into.addr[0]), into.port], [host, hostPort]);
  }
});

test('maxMappings bounds the table; the table grows past its initial size', () => {
  const small = new SnatPool({ addresses: ['198.51.100.1'], maxMappings: 2 });
  assert.ok(acquire(small, 0, TCP, '10.0.0.1', 5000), 'acquire(small, 0, TCP, \'10.0.0.1\', 5000)');
  assert.ok(acquire(small, 0, TCP, '10.0.0.2', 5000), 'acquire(small, 0, TCP, \'10.0.0.2\', 5000)');
  assert.equal(acquire(small, 0, TCP, '10.0.0.3', 5000), null);
  release(small, 0, TCP, '10.0.0.1', 5000);
  assert.ok(acquire(small, 0, TCP, '10.0.0.3', 5000), 'acquire(small, 0, TCP, \'10.0.0.3\', 5000)');

  const pool = new SnatPool({ addresses: ['198.51.100.1'] });
  const seen = new Set<number>();
  for (let i = 0; i < 5000; i++) {
    const r = acquire(pool, i % 7, UDP, `10.0.${(i >>> 8) & 255}.${i & 255}`, 6000)!;
    assert.ok(!seen.has(r[1]), '!seen.has(r[1])');
    seen.add(r[1]);
  }
  const into = new NatEndpoint();
  for (let i = 0; i < 5000; i++) {
    assert.equal(pool.references(i % 7, UDP, 4, words(`10.0.${(i >>> 8) & 255}.${i & 255}`), 0, 6000), 1);
  }
  for (const port of seen) assert.equal(pool.lookupExternal(UDP, 4, words('198.51.100.1'), 0, port, into), true);
  assert.equal(pool.mappings, 5000);
});

test('bad options throw', () => {
  assert.throws(() => new SnatPool({ addresses: ['10.0.0.300'] }), /addresses\[0\]/);
  assert.throws(() => new SnatPool({ addresses: ['10.0.0.1', '10.0.0.1'] }), /twice/);
  assert.throws(() => new SnatPool({ addresses: [], portMin: 0 }), /portMin/);
  assert.throws(() => new SnatPool({ addresses: [], portMin: 10, portMax: 9 }), /portMax/);
});

// --- model-based property test -----------------------------------------------------------------

const INTERNAL = ['10.0.0.1', '10.0.0.2', '10.0.0.3', 'fd00::1', 'fd00::1:0:0:1'];
const POOL = ['198.51.100.1', '198.51.100.2', '2001:db8::1', '2001:db8::2'];
const PROTOCOLS = [TCP, UDP, IPPROTO_ICMP];
const PORTS = [1, 2, 3, 80, 81, 1000, 1001, 1022, 1023, 1024, 1025, 1030, 1031, 5000, 65535];

interface Entry {
  address: string;
  port: number;
  refs: number;
}

type Op = { kind: 'acquire'; zone: number; protocol: number; address: number; port: number } | { kind: 'release'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('acquire' as const), zone: fc.integer({ min: 0, max: 2 }), protocol: fc.constantFrom(...PROTOCOLS), address: fc.integer({ min: 0, max: INTERNAL.length - 1 }), port: fc.constantFrom(...PORTS) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
);

test('acquire/release sequences agree with a Map oracle (EIM, no overloading, pairing, preservation, parity, exhaustion)', () => {
  fc.assert(
    fc.property(
      fc.record({ portMin: fc.integer({ min: 1, max: 1030 }), span: fc.integer({ min: 0, max: 40 }), seed: fc.integer(), initialMappings: fc.integer({ min: 1, max: 400 }) }),
      fc.array(opArb, { maxLength: 300 }),
      ({ portMin, span, seed, initialMappings }, ops) => {
        const portMax = Math.min(65535, portMin + span);
        // Sized small (grows while the ops run) or large (never grows): the same answers.
        const pool = new SnatPool({ addresses: POOL, portMin, portMax, hashSeed: seed, initialMappings });
        const slotOf = (protocol: number) => (protocol === IPPROTO_ICMP || protocol === IPPROTO_ICMPV6 ? 'icmp' : String(protocol));
        const oracle = new Map<string, Entry>(); // internal endpoint -> mapping
        const byExternal = new Map<string, string>(); // slot|ext address|ext port -> internal key
        const pairing = new Map<string, string>(); // zone|internal address -> external address, forever
        const usedOn = (slot: string, address: string) => [...byExternal.keys()].filter((k) => k.startsWith(`${slot}|${address}|`)).length;
        const isFree = (slot: string, address: string, port: number) => !byExternal.has(`${slot}|${address}|${port}`);
        const freeIn = (slot: string, address: string, lo: number, hi: number, parity: number) => {
          for (let p = lo; p <= hi; p++) if ((p & 1) === parity && isFree(slot, address, p)) return true;
          return false;
        };
        // ICMP echo identifiers have no privileged range: their space is all of 0..65535.
        const rangeOf = (slot: string): [number, number] => (slot === 'icmp' ? [0, 65535] : [portMin, portMax]);
        const live: string[] = [];
        for (const op of ops) {
          if (op.kind === 'acquire') {
            const address = INTERNAL[op.address];
            const v6 = address.includes(':');
            const protocol = op.protocol === IPPROTO_ICMP && v6 ? IPPROTO_ICMPV6 : op.protocol;
            const slot = slotOf(protocol);
            const [min, max] = rangeOf(slot);
            const key = `${op.zone}|${protocol}|${address}|${op.port}`;
            const pairKey = `${op.zone}|${address}`;
            const existing = oracle.get(key);
            const result = acquire(pool, op.zone, protocol, address, op.port);
            if (existing) {
              assert.deepEqual(result, [existing.address, existing.port], 'EIM: same endpoint, same mapping');
              existing.refs++;
              continue;
            }
            if (result === null) {
              // Only when the paired address (if known) is full; otherwise some address of the family is full.
              const candidates = pairing.has(pairKey) ? [pairing.get(pairKey)!] : POOL.filter((a) => a.includes(':') === v6);
              assert.ok(candidates.some((a) => usedOn(slot, a) === max - min + 1), 'exhaustion only when full');
              continue;
            }
            const [extAddress, extPort] = result;
            assert.equal(extAddress.includes(':'), v6, 'family preserved');
            if (pairing.has(pairKey)) assert.equal(extAddress, pairing.get(pairKey), 'paired pooling');
            pairing.set(pairKey, extAddress);
            assert.ok(extPort >= min && extPort <= max, 'port in pool range');
            assert.ok(isFree(slot, extAddress, extPort), 'no port overloading');
            const parity = op.port & 1;
            if (op.port >= min && op.port <= max && isFree(slot, extAddress, op.port)) {
              assert.equal(extPort, op.port, 'port preserved when free');
            } else {
              const [lo, hi] = slot === 'icmp' ? [min, max] : op.port <= 1023 ? [min, Math.min(max, 1023)] : [Math.max(min, 1024), max];
              if (freeIn(slot, extAddress, lo, hi, parity)) {
                assert.ok(extPort >= lo && extPort <= hi && (extPort & 1) === parity, 'range and parity preserved');
              } else if (freeIn(slot, extAddress, min, max, parity)) {
                assert.equal(extPort & 1, parity, 'parity preserved');
              }
            }
            oracle.set(key, { address: extAddress, port: extPort, refs: 1 });
            byExternal.set(`${slot}|${extAddress}|${extPort}`, key);
            live.push(key);
          } else {
            if (live.length === 0) {
              assert.equal(release(pool, 0, TCP, '10.0.0.1', 1), false);
              continue;
            }
            const index = op.pick % live.length;
            const key = live[index];
            const [zone, protocol, address, port] = key.split('|');
            assert.equal(release(pool, Number(zone), Number(protocol), address, Number(port)), true);
            const entry = oracle.get(key)!;
            if (--entry.refs === 0) {
              oracle.delete(key);
              byExternal.delete(`${slotOf(Number(protocol))}|${entry.address}|${entry.port}`);
              live.splice(index, 1);
            }
          }
        }
        // Final state: counts, references and the reverse index agree.
        assert.equal(pool.mappings, oracle.size);
        const into = new NatEndpoint();
        for (const [key, entry] of oracle) {
          const [zone, protocol, address, port] = key.split('|');
          const family = address.includes(':') ? 6 : 4;
          assert.equal(pool.references(Number(zone), Number(protocol), family, words(address), 0, Number(port)), entry.refs);
          assert.equal(pool.lookupExternal(Number(protocol), family, words(entry.address), 0, entry.port, into), true);
          assert.deepEqual([into.zone, text(family, into.addr), into.port], [Number(zone), address, Number(port)]);
        }
        for (const address of POOL) {
          const family = address.includes(':') ? 6 : 4;
          for (const protocol of [TCP, UDP, family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6]) {
            for (let p = portMin; p <= portMax; p++) {
              const mapped = byExternal.has(`${slotOf(protocol)}|${address}|${p}`);
              assert.equal(pool.lookupExternal(protocol, family, words(address), 0, p, into), mapped);
            }
          }
        }
        for (const u of pool.portsInUse()) {
          assert.equal(u.used, usedOn(slotOf(u.protocol), u.address));
          const [min, max] = rangeOf(slotOf(u.protocol));
          assert.equal(u.total, max - min + 1);
        }
      },
    ),
    { numRuns: 150 },
  );
});

test('without a fixed seed, every pool and every pipeline hashes with a random seed of its own (hash flooding)', () => {
  const seedOf = (pool: SnatPool | null): number => (pool as unknown as { seed: number }).seed;
  const pools = Array.from({ length: 8 }, () => seedOf(new SnatPool({ addresses: ['198.51.100.1'] })));
  assert.ok(new Set(pools).size > 1, 'pools draw their seeds at random');
  const egress = { addresses: ['198.51.100.1'], portMin: 1024, portMax: 65535 };
  const pipelines = Array.from({ length: 8 }, () => seedOf(new Pipeline({ onramps: [], routes: [], egress }).snat));
  assert.ok(new Set(pipelines).size > 1, 'the pipeline passes its own random seed to the NAT pool');
  assert.equal(seedOf(new Pipeline({ onramps: [], routes: [], egress, hashSeed: 7 }).snat), 7, 'a fixed seed is kept');
});

test('lanes: each lane hands out only its slice, and laneOfExternal names the lane of every port it gave', () => {
  const lanes = [0, 1].map((lane) => new SnatPool({ addresses: ['198.51.100.1'], portMin: 1024, portMax: 1100, lane, lanes: 2, hashSeed: 7 }));
  const owner = new Map<string, number>();
  // The same internal endpoints on both lanes (two flows of one endpoint steered to two lanes): never one external port twice.
  for (const protocol of [TCP, UDP, IPPROTO_ICMP]) {
    for (let p = 0; p < 30; p++) {
      lanes.forEach((pool, lane) => {
        const got = acquire(pool, 1, protocol, '10.0.1.10', 1030 + p);
        assert.ok(got !== null, `lane ${lane} protocol ${protocol}: mapped`);
        const key = `${protocol}/${got[1]}`;
        assert.equal(owner.has(key), false, `${key} handed out twice`);
        owner.set(key, lane);
        assert.equal(pool.laneOfExternal(protocol, got[1]), lane);
      });
    }
  }
  // TCP 1024..1062 is lane 0's slice (39 ports), 1063..1100 lane 1's (38): port preservation within the slice.
  assert.deepEqual(acquire(lanes[0], 2, TCP, '10.0.1.11', 1061), ['198.51.100.1', 1061]);
  assert.notEqual(acquire(lanes[1], 2, TCP, '10.0.1.11', 1061)![1], 1061);
  assert.deepEqual(lanes[1].portsInUse().filter((u) => u.protocol === TCP).map((u) => u.total), [38]);
  assert.equal(lanes[0].laneOfExternal(TCP, 1000), -1);
  assert.equal(lanes[0].laneOfExternal(47, 1050), -1);
  assert.throws(() => new SnatPool({ addresses: ['198.51.100.1'], lane: 2, lanes: 2 }), /lane must be an integer 0\.\.1, got 2/);
  assert.throws(() => new SnatPool({ addresses: ['198.51.100.1'], portMin: 2000, portMax: 2000, lane: 1, lanes: 2 }), /too small for 2 lanes/);
});

test('a new port space starts with exactly its slice free: the word-at-a-time bitmap against a port-by-port one', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 1, max: 8 }), fc.nat(7), (a, b, lanes, laneSeed) => {
      const portMin = Math.max(1, Math.min(a, b));
      const portMax = Math.max(a, b, portMin);
      const lane = laneSeed % lanes;
      let pool: SnatPool;
      try {
        pool = new SnatPool({ addresses: ['198.51.100.1'], portMin, portMax, lane, lanes, hashSeed: 3 });
      } catch {
        return; // a slice too small for the lanes: refused at construction (tested above)
      }
      assert.ok(acquire(pool, 1, UDP, '10.0.0.1', 1) !== null, 'the space is made by its first mapping');
      const inner = pool as unknown as { used: Uint32Array[]; sliceMin: Int32Array; sliceMax: Int32Array };
      const space = 1; // address 0, the UDP slot
      const lo = inner.sliceMin[1];
      const hi = inner.sliceMax[1];
      const oracle = new Uint32Array(65536 / 32).fill(0xffffffff);
      for (let p = lo; p <= hi; p++) oracle[p >>> 5] &= ~(1 << (p & 31));
      const ext = pool.peek(1, UDP, 4, Uint32Array.of(0x0a000001), 0, 1, new Uint32Array(4), 0);
      oracle[ext >>> 5] |= 1 << (ext & 31);
      assert.deepEqual([...inner.used[space]], [...oracle]);
    }),
    { numRuns: 200 },
  );
});

test('isPoolAddress4 (a range compare, then the hash table) against a set of the pool', () => {
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  fc.assert(
    fc.property(fc.uniqueArray(u32, { minLength: 0, maxLength: 12 }), fc.array(u32, { maxLength: 40 }), (pool4, probes) => {
      const addresses = [...pool4.map((a) => formatIpv4(a)), '2001:db8::1'];
      const pool = new SnatPool({ addresses, hashSeed: 9 });
      const set = new Set(pool4);
      // Each pool address, its neighbours (the range's edges) and random ones; signed or unsigned words.
      for (const a of [...pool4, ...pool4.map((x) => (x + 1) >>> 0), ...pool4.map((x) => (x - 1) >>> 0), ...probes]) {
        assert.equal(pool.isPoolAddress4(a), set.has(a), formatIpv4(a));
        assert.equal(pool.isPoolAddress4(a | 0), set.has(a), `${formatIpv4(a)} signed`);
      }
    }),
    { numRuns: 300 },
  );
});

test('lanes: each mapping\'s endpoint is claimed in the shared directory while it lives; another lane reads its external endpoint', async () => {
  const { LaneDirectory, MIN_DIRECTORY_BUCKETS } = await import('../common/lane-directory.js');
  const dir = LaneDirectory.create(MIN_DIRECTORY_BUCKETS, 99);
  const opts = { addresses: ['198.51.100.1', '198.51.100.2', '2001:db8::1'], lanes: 2, directory: dir, hashSeed: 5 };
  const lane0 = new SnatPool({ ...opts, lane: 0 });
  const lane1 = new SnatPool({ ...opts, lane: 1, directory: new LaneDirectory(dir.buffer) });
  const host = Uint32Array.of(0x0a000105);
  const out = new Uint32Array(4);
  const ext = lane1.acquire(3, IPPROTO_UDP, 4, host, 0, 5000, out, 0);
  assert.ok(ext >= 0);
  assert.equal(lane1.laneOfExternal(IPPROTO_UDP, ext), 1);
  assert.equal(dir.ownerOf(dir.endpointHash(3, IPPROTO_UDP, 4, host, 0, 5000)), 1);
  // Lane 0 reads lane 1's external endpoint; lane 1 itself gets -1 (its own pool answers peek).
  const seen = new Uint32Array(4);
  assert.equal(lane0.peekOtherLane(3, IPPROTO_UDP, 4, host, 0, 5000, seen, 0), ext);
  assert.equal(seen[0], out[0]);
  assert.equal(lane1.peekOtherLane(3, IPPROTO_UDP, 4, host, 0, 5000, seen, 0), -1);
  // Another zone, protocol or port is another endpoint.
  assert.equal(lane0.peekOtherLane(4, IPPROTO_UDP, 4, host, 0, 5000, seen, 0), -1);
  assert.equal(lane0.peekOtherLane(3, IPPROTO_TCP, 4, host, 0, 5000, seen, 0), -1);
  // A second reference keeps the claim; the last release clears it.
  lane1.acquire(3, IPPROTO_UDP, 4, host, 0, 5000, out, 0);
  lane1.release(3, IPPROTO_UDP, 4, host, 0, 5000);
  assert.equal(lane0.peekOtherLane(3, IPPROTO_UDP, 4, host, 0, 5000, seen, 0), ext);
  lane1.release(3, IPPROTO_UDP, 4, host, 0, 5000);
  assert.equal(lane0.peekOtherLane(3, IPPROTO_UDP, 4, host, 0, 5000, seen, 0), -1);
  assert.equal(dir.used(), 0);
});
