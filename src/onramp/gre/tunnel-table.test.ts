import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseAddress } from '../../wire/addr.js';
import { GreDecap } from './codec.js';
import { GreDrop } from './gre-drop.js';
import type { GreTunnelConfig } from './tunnel-table.js';
import { GreTunnelTable } from './tunnel-table.js';

/** A decapsulation record as if a packet came from `remote` to `local` with `key`. */
function packet(d: GreDecap, local: string, remote: string, key?: number): GreDecap {
  d.family = parseAddress(remote, d.addr, 0);
  parseAddress(local, d.addr, 4);
  d.hasKey = key !== undefined;
  d.key = key ?? 0;
  return d;
}

test('config: defaults, MTU per family and optional fields, and refusals', () => {
  const t = new GreTunnelTable(8);
  const a = t.add({ onrampId: 1, local: '192.0.2.1', remote: '198.51.100.1' });
  const b = t.add({ onrampId: 2, local: '192.0.2.1', remote: '198.51.100.1', key: 7 });
  const c = t.add({ onrampId: 3, local: '2001:db8:e::1', remote: '2001:db8:a::1' });
  const e = t.add({ onrampId: 4, local: '192.0.2.1', remote: '198.51.100.4', key: 7, checksum: true, sequence: true });
  assert.deepEqual([t.mtu[a], t.mtu[b], t.mtu[c], t.mtu[e]], [1476, 1472, 1456, 1464]);
  assert.throws(() => t.add({ onrampId: 5, local: '192.0.2.1', remote: '198.51.100.1', key: 7 }), /already exists/);
  assert.throws(() => t.add({ onrampId: 1, local: '192.0.2.9', remote: '198.51.100.9' }), /already has/);
  assert.throws(() => t.add({ onrampId: 6, local: '192.0.2.1', remote: '2001:db8::1' }), /not a IPv6/);
  assert.throws(() => t.add({ onrampId: 6, local: '192.0.2.1', remote: '198.51.100.6', mtu: 40 }), /MTU/);
  assert.throws(() => t.add({ onrampId: 0, local: '192.0.2.1', remote: '198.51.100.6' }), /onramp id/);
  assert.throws(() => t.add({ onrampId: 6, local: '192.0.2.1', remote: '198.51.100.6', key: -1 }), /key/);
  assert.equal(t.count, 4);
});

test('lookup: keyed and keyless tunnels of one endpoint pair are told apart; unknown key and unknown pair are drops', () => {
  const t = new GreTunnelTable(8);
  const plain = t.add({ onrampId: 1, local: '192.0.2.1', remote: '198.51.100.1' });
  const keyed = t.add({ onrampId: 2, local: '192.0.2.1', remote: '198.51.100.1', key: 7 });
  const onlyKeyed = t.add({ onrampId: 3, local: '192.0.2.1', remote: '198.51.100.3', key: 9 });
  const d = new GreDecap();
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.1')), plain);
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.1', 7)), keyed);
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.1', 8)), -GreDrop.UnknownKey);
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.3', 9)), onlyKeyed);
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.3')), -GreDrop.UnknownKey);
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.9')), -GreDrop.UnknownTunnel);
  assert.equal(t.lookup(packet(d, '192.0.2.2', '198.51.100.1')), -GreDrop.UnknownTunnel);
  assert.equal(t.onrampId[t.lookup(packet(d, '192.0.2.1', '198.51.100.1', 7))], 2);
});

test('remove moves the last tunnel into the hole and keeps lookups and onramp mapping right', () => {
  const t = new GreTunnelTable(4);
  t.add({ onrampId: 10, local: '192.0.2.1', remote: '198.51.100.1' });
  t.add({ onrampId: 11, local: '192.0.2.1', remote: '198.51.100.2' });
  t.add({ onrampId: 12, local: '192.0.2.1', remote: '198.51.100.3' });
  t.txPackets[2] = 5;
  assert.equal(t.remove(10), true);
  assert.equal(t.remove(10), false);
  const d = new GreDecap();
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.1')), -GreDrop.UnknownTunnel);
  const moved = t.tunnelOf(12);
  assert.equal(moved, 0);
  assert.equal(t.txPackets[moved], 5);
  assert.equal(t.lookup(packet(d, '192.0.2.1', '198.51.100.3')), moved);
  assert.deepEqual(t.onrampIds().sort(), [11, 12]);
});

// --- against an obviously correct oracle ----------------------------------------------------------

const LOCALS = ['192.0.2.1', '192.0.2.2', '2001:db8:e::1', '2001:db8:e::2'];
const REMOTES4 = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '0.0.0.1', '255.255.255.255'];
const REMOTES6 = ['2001:db8:a::1', '2001:db8:a::2', '2001:db8:a::1:0:0:1', '::1'];
const KEYS = [undefined, 0, 1, 7, 0xffffffff];

const endpointArb = fc.record({
  local: fc.integer({ min: 0, max: LOCALS.length - 1 }),
  remote: fc.integer({ min: 0, max: 4 }),
  key: fc.integer({ min: 0, max: KEYS.length - 1 }),
});

function endpoint(e: { local: number; remote: number; key: number }): { local: string; remote: string; key?: number } {
  const local = LOCALS[e.local];
  const remotes = local.includes(':') ? REMOTES6 : REMOTES4;
  return { local, remote: remotes[e.remote % remotes.length], key: KEYS[e.key] };
}

const opArb = fc.oneof(
  fc.record({ kind: fc.constant('add' as const), onrampId: fc.integer({ min: 1, max: 40 }), at: endpointArb }),
  fc.record({ kind: fc.constant('remove' as const), onrampId: fc.integer({ min: 1, max: 40 }) }),
);

test('lookup agrees with a linear-scan oracle over random adds, removes and packets', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), fc.array(endpointArb, { minLength: 1, maxLength: 30 }), (ops, probes) => {
      const table = new GreTunnelTable(16);
      const oracle = new Map<number, { local: string; remote: string; key?: number }>();
      for (const op of ops) {
        if (op.kind === 'remove') {
          assert.equal(table.remove(op.onrampId), oracle.delete(op.onrampId));
          continue;
        }
        const e = endpoint(op.at);
        const duplicate = [...oracle.values()].some((o) => o.local === e.local && o.remote === e.remote && o.key === e.key);
        const refuse = oracle.has(op.onrampId) || duplicate || oracle.size >= 16;
        const config: GreTunnelConfig = { onrampId: op.onrampId, ...e };
        if (refuse) assert.throws(() => table.add(config));
        else {
          table.add(config);
          oracle.set(op.onrampId, e);
        }
      }
      assert.equal(table.count, oracle.size);
      const d = new GreDecap();
      for (const probe of probes) {
        const e = endpoint(probe);
        const got = table.lookup(packet(d, e.local, e.remote, e.key));
        let want = -GreDrop.UnknownTunnel;
        for (const [id, o] of oracle) {
          if (o.local === e.local && o.remote === e.remote) {
            if (o.key === e.key) {
              want = id;
              break;
            }
            want = -GreDrop.UnknownKey;
          }
        }
        assert.equal(got >= 0 ? table.onrampId[got] : got, want);
      }
      for (const id of oracle.keys()) assert.equal(table.onrampId[table.tunnelOf(id)], id);
    }),
    { numRuns: 300 },
  );
});
