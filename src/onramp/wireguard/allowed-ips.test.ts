import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AllowedIps, innerPacketLength } from './allowed-ips.js';
import { ipv4Packet } from '../../../test/support/wireguard.js';

const maskOf = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

/** Slow oracle for the inbound check: is the probe inside any prefix configured for that peer? */
function allowedOracle(table: { addr: number; len: number; peer: number }[], probe: number, peer: number): boolean {
  return table.some((e) => e.peer === peer && ((probe & maskOf(e.len)) >>> 0) === ((e.addr & maskOf(e.len)) >>> 0));
}

/** Slow oracle for the outbound fallback: the longest matching prefix, the earliest configured on a tie. */
function destinationOracle(table: { addr: number; len: number; peer: number }[], probe: number): number {
  let best = -1;
  let bestLen = -1;
  for (const e of table) {
    if (((probe & maskOf(e.len)) >>> 0) === ((e.addr & maskOf(e.len)) >>> 0) && e.len > bestLen) {
      best = e.peer;
      bestLen = e.len;
    }
  }
  return best;
}

const text = (a: number): string => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;

test('IPv4: the per-peer source check and the destination fallback agree with brute-force oracles', () => {
  // Addresses drawn from a small space so prefixes overlap often, across peers too.
  const addr = fc.integer({ min: 0, max: 15 }).map((x) => ((10 << 24) | (x << 4) | (x & 3)) >>> 0);
  fc.assert(
    fc.property(
      fc.array(fc.record({ addr, len: fc.integer({ min: 0, max: 32 }), peer: fc.integer({ min: 0, max: 4 }) }), { maxLength: 12 }),
      fc.array(addr, { minLength: 1, maxLength: 10 }),
      (table, probes) => {
        const t = new AllowedIps();
        for (const e of table) assert.ok(t.insert(`${text(e.addr)}/${e.len}`, e.peer), 'insert');
        for (const p of probes) {
          const pkt = ipv4Packet(text(p), text(p), 0);
          for (let peer = 0; peer <= 4; peer++) {
            assert.equal(t.sourceAllowed(pkt, pkt.length, peer), allowedOracle(table, p, peer), `probe ${text(p)} peer ${peer}`);
          }
          assert.equal(t.lookupDestination(pkt, pkt.length), destinationOracle(table, p), `destination ${text(p)}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('two sites on the same 10.0.1.0/24 behind one device: each peer is allowed its own LAN', () => {
  const t = new AllowedIps();
  t.insert('10.0.1.0/24', 0);
  t.insert('10.0.1.0/24', 1);
  const pkt = ipv4Packet('10.0.1.10', '203.0.113.10', 0);
  assert.equal(t.sourceAllowed(pkt, pkt.length, 0), true, 'site A');
  assert.equal(t.sourceAllowed(pkt, pkt.length, 1), true, 'site B: the prefix did not move away');
  assert.equal(t.sourceAllowed(pkt, pkt.length, 2), false, 'a peer without the prefix');
});

test('IPv6 prefixes match by all four words; families never mix', () => {
  const t = new AllowedIps();
  t.insert('fd00:1::/32', 1);
  t.insert('fd00:1:2:3::/64', 2);
  t.insert('0.0.0.0/0', 3);
  const v6 = (src: string): Uint8Array => {
    const p = new Uint8Array(40);
    p[0] = 0x60;
    const groups = src.split(':').map((g) => parseInt(g || '0', 16));
    for (let i = 0; i < 8; i++) {
      p[8 + i * 2] = groups[i] >> 8;
      p[9 + i * 2] = groups[i] & 0xff;
    }
    return p;
  };
  assert.equal(t.sourceAllowed(v6('fd00:1:2:3:0:0:0:1'), 40, 2), true);
  assert.equal(t.sourceAllowed(v6('fd00:1:2:3:0:0:0:1'), 40, 1), true, 'inside peer 1\'s /32 as well');
  assert.equal(t.sourceAllowed(v6('fd00:1:2:4:0:0:0:1'), 40, 2), false);
  assert.equal(t.sourceAllowed(v6('fd01:0:0:0:0:0:0:1'), 40, 3), false, 'the IPv4 default route does not match IPv6');
  assert.equal(t.sourceAllowed(v6('fd00:1:2:3:0:0:0:1'), 39, 2), false, 'too short to hold the header');
  assert.equal(t.insert('nonsense', 1), false);
});

test('inner packet length comes from the IP header and strips padding', () => {
  const p = ipv4Packet('10.0.0.1', '10.0.0.2', 10);
  const padded = new Uint8Array(48);
  padded.set(p);
  assert.equal(innerPacketLength(padded, padded.length), 30);
  assert.equal(innerPacketLength(padded, 29), -1, 'claims more than we hold');
  assert.equal(innerPacketLength(new Uint8Array([0x20]), 1), -1, 'not IPv4/IPv6');
  assert.equal(innerPacketLength(padded, 0), -1);
});
