/**
 * onramp/gre: decapsulate (outer IPv4/IPv6, GRE flags, checksum, key, sequence), decapsulateInspected (the
 * underlay's path: the outer header as inspect() read it), and the GreOnramp receive path with its tunnel
 * table (keys, required checksums, RFC 2890 sequence order, keepalives).
 *
 * Checks: no throw; two placements with different sentinels and the exact-size view agree; decapsulate and
 * decapsulateInspected agree on every packet inspect() passes (their contract: "same results as decapsulate on
 * the same bytes"); the inner packet lies inside the outer one; nothing outside the input changed.
 */
import { Drop } from '../../src/common/drop-reasons.js';
import { GreDecap, decapsulate, decapsulateInspected, encapsulate4, encapsulate6, GRE_TX_CHECKSUM, GRE_TX_KEY, GRE_TX_SEQUENCE } from '../../src/onramp/gre/codec.js';
import { IPPROTO_GRE } from '../../src/onramp/gre/constants.js';
import { GRE_DROP_NAMES } from '../../src/onramp/gre/gre-drop.js';
import { GRE_RECEIVE_DROP, GRE_RECEIVE_REFLECT, GreOnramp } from '../../src/onramp/gre/onramp.js';
import type { GreTunnelConfig } from '../../src/onramp/gre/tunnel-table.js';
import { parseIpv4, parseIpv6 } from '../../src/wire/addr.js';
import { inspect } from '../../src/wire/inspect.js';
import { PacketInfo } from '../../src/wire/packet-info.js';
import { SentinelArena } from '../../test/support/bounds.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { packetFromSeeds } from '../mutate.js';
import type { Rng } from '../rng.js';
import { builtPackets, capturedSeeds } from '../seeds.js';

const MAX_PACKET = 2048;
const HEADROOM = 128;
const EDGE4 = '192.0.2.1';
const EDGE6 = '2001:db8:1::1';
const TUNNELS: GreTunnelConfig[] = [
  { onrampId: 1, local: EDGE4, remote: '198.51.100.2' },
  { onrampId: 2, local: EDGE4, remote: '198.51.100.3', key: 100, checksum: true, sequence: true },
  { onrampId: 3, local: EDGE4, remote: '198.51.100.3', key: 200 },
  { onrampId: 4, local: EDGE6, remote: '2001:db8:1::2' },
];
const TX_FLAGS = [0, GRE_TX_KEY | GRE_TX_CHECKSUM | GRE_TX_SEQUENCE, GRE_TX_KEY, 0];

function onramp(): GreOnramp {
  const g = new GreOnramp(8);
  for (const t of TUNNELS) g.tunnels.add(t);
  return g;
}

/** Outer packets as each tunnel's far end would send them: the inner seeds encapsulated by our own encoder. */
function greSeeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const [name, bytes] of capturedSeeds()) if (name.startsWith('gre-')) out.push(bytes);
  const inners = builtPackets().filter((_, i) => i % 3 === 0);
  let sequence = 0;
  for (const inner of inners) {
    for (let t = 0; t < TUNNELS.length; t++) {
      const { local, remote, key } = TUNNELS[t];
      const buf = new Uint8Array(HEADROOM + inner.length);
      buf.set(inner, HEADROOM);
      const o = remote.includes(':')
        ? encapsulate6(buf, HEADROOM, inner.length, 0, TX_FLAGS[t], key ?? 0, sequence++, addresses6(remote, local), 0, 4)
        : encapsulate4(buf, HEADROOM, inner.length, 0, TX_FLAGS[t], key ?? 0, sequence++, parseIpv4(remote), parseIpv4(local), 1);
      if (o >= 0) out.push(buf.slice(o));
    }
  }
  return out;
}

/** Source then destination, the word layout encapsulate6 reads. */
function addresses6(src: string, dst: string): Uint32Array {
  const words = new Uint32Array(8);
  words.set(parseIpv6(src) ?? [], 0);
  words.set(parseIpv6(dst) ?? [], 4);
  return words;
}

const DECAP_FIELDS = ['family', 'greFlags', 'protocolType', 'hasChecksum', 'hasKey', 'key', 'hasSequence', 'sequence', 'innerLength', 'ttl', 'tos'] as const;

function sameDecap(a: GreDecap, b: GreDecap, aBase: number, bBase: number, what: string): void {
  for (const f of DECAP_FIELDS) if (a[f] !== b[f]) throw new FuzzFailure(`${what}: ${f} ${a[f]} vs ${b[f]}`);
  if (a.innerOffset - aBase !== b.innerOffset - bBase || a.greOffset - aBase !== b.greOffset - bBase) {
    throw new FuzzFailure(`${what}: inner at +${a.innerOffset - aBase} vs +${b.innerOffset - bBase}, GRE at +${a.greOffset - aBase} vs +${b.greOffset - bBase}`);
  }
  for (let i = 0; i < a.addr.length; i++) if (a.addr[i] !== b.addr[i]) throw new FuzzFailure(`${what}: outer address word ${i} differs`);
}

export function greTarget(): FuzzTarget {
  const seeds = greSeeds();
  const arena = new SentinelArena(MAX_PACKET);
  const plain = onramp();
  const inspected = onramp();
  const info = new PacketInfo();
  const d1 = new GreDecap();
  const d2 = new GreDecap();
  const d3 = new GreDecap();
  return {
    name: 'onramp/gre',
    generate: (rng: Rng) => packetFromSeeds(rng, seeds, MAX_PACKET),
    run(input: Uint8Array, rng: Rng): string {
      const len = input.length;
      const at1 = arena.place(input, rng.int(arena.guard + 1), 0x00);
      const r1 = decapsulate(arena.buf, at1, len, d1);
      const r3 = decapsulate(arena.view(), 0, len, d3);
      if (r1 !== r3) throw new FuzzFailure(`decapsulate: ${GRE_DROP_NAMES[r1]} in a larger buffer, ${GRE_DROP_NAMES[r3]} on the exact-size view`);
      if (r1 === 0) {
        sameDecap(d1, d3, at1, 0, 'decapsulate, exact-size view');
        if (d1.innerOffset < at1 || d1.innerOffset + d1.innerLength > at1 + len) throw new FuzzFailure(`decapsulate: inner [${d1.innerOffset}, +${d1.innerLength}) outside the packet [${at1}, +${len})`);
      }
      const id1 = plain.receive(arena.buf, at1, len);
      let changed = arena.changedOutside();
      if (changed !== null) throw new FuzzFailure(`GRE receive wrote outside the packet: ${changed}`);

      const at2 = arena.place(input, rng.int(arena.guard + 1), 0xff);
      const r2 = decapsulate(arena.buf, at2, len, d2);
      if (r1 !== r2) throw new FuzzFailure(`decapsulate: ${GRE_DROP_NAMES[r1]} with sentinel 0x00, ${GRE_DROP_NAMES[r2]} with 0xff`);
      if (r1 === 0) sameDecap(d1, d2, at1, at2, 'decapsulate, sentinel 0xff');
      // The underlay's path: inspect the outer header once, then decapsulate from what it found.
      const seen = inspect(arena.buf, at2, len, info);
      if ((seen === Drop.None || seen === Drop.UnsupportedProtocol) && info.protocol === IPPROTO_GRE) {
        const r4 = decapsulateInspected(arena.buf, info, d2);
        if (r4 !== r1) throw new FuzzFailure(`decapsulateInspected says ${GRE_DROP_NAMES[r4]}, decapsulate ${GRE_DROP_NAMES[r1]}`);
        if (r4 === 0) sameDecap(d1, d2, at1, at2, 'decapsulateInspected');
        inspected.receiveInspected(arena.buf, len, info);
      }
      changed = arena.changedOutside();
      if (changed !== null) throw new FuzzFailure(`GRE receiveInspected wrote outside the packet: ${changed}`);
      if (id1 === GRE_RECEIVE_DROP) {
        const name = GRE_DROP_NAMES[plain.lastDrop];
        if (name === undefined) throw new FuzzFailure(`GRE drop ${plain.lastDrop} is not a known reason`);
        return name;
      }
      if (id1 === GRE_RECEIVE_REFLECT) return 'keepalive';
      if (!TUNNELS.some((t) => t.onrampId === id1)) throw new FuzzFailure(`GRE receive returned ${id1}, not a tunnel's onramp`);
      return `onramp ${id1}`;
    },
  };
}
