import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AllowedIps, innerPacketLength } from './allowed-ips.js';
import { ipv4Packet } from './test-helpers.js';

/** Slow oracle: the longest matching prefix by brute force over (prefix, peer) pairs, last writer wins. */
function oracle(table: { addr: number; len: number; peer: number }[], probe: number): number {
  const owner = new Map<string, number>();
  for (const e of table) {
    const mask = e.len === 0 ? 0 : (0xffffffff << (32 - e.len)) >>> 0;
    owner.set(`${(e.addr & mask) >>> 0}/${e.len}`, e.peer);
  }
  let best = -1;
  let bestLen = -1;
  for (const [key, peer] of owner) {
    const [net, len] = key.split('/').map(Number);
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    if (((probe & mask) >>> 0) === net && len > bestLen) {
      best = peer;
      bestLen = len;
    }
  }
  return best;
}

const text = (a: number): string => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;

test('IPv4 longest-prefix match agrees with a brute-force oracle', () => {
  // Addresses drawn from a small space so prefixes overlap often.
  const addr = fc.integer({ min: 0, max: 15 }).map((x) => ((10 << 24) | (x << 4) | (x & 3)) >>> 0);
  fc.assert(
    fc.property(
      fc.array(fc.record({ addr, len: fc.integer({ min: 0, max: 32 }), peer: fc.integer({ min: 0, max: 4 }) }), { maxLength: 12 }),
      fc.array(addr, { minLength: 1, maxLength: 10 }),
      (table, probes) => {
        const t = new AllowedIps();
        for (const e of table) assert.ok(t.insert(`${text(e.addr)}/${e.len}`, e.peer));
        for (const p of probes) {
          const pkt = ipv4Packet(text(p), text(p), 0);
          assert.equal(t.lookupSource(pkt, pkt.length), oracle(table, p), `probe ${text(p)}`);
        }
      },
    ),
    { numRuns: 300 },
  );
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
  assert.equal(t.lookupSource(v6('fd00:1:2:3:0:0:0:1'), 40), 2);
  assert.equal(t.lookupSource(v6('fd00:1:2:4:0:0:0:1'), 40), 1);
  assert.equal(t.lookupSource(v6('fd01:0:0:0:0:0:0:1'), 40), -1, 'the IPv4 default route does not match IPv6');
  assert.equal(t.lookupSource(v6('fd00:1:2:3:0:0:0:1'), 39), -1, 'too short to hold the header');
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
