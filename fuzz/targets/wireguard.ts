/**
 * onramp/wireguard: WireGuardDevice.receive, all four message types, on device B of a device pair wired in
 * memory (test/support/wireguard.ts). Seeds are a real exchange between the pair: A's initiation, B's response,
 * A's transport packets (data and keepalive), a cookie reply from a device under load. Mutants of a handshake
 * message get a valid mac1 for B half the time, so they reach the Noise processing behind the mac1 check
 * instead of all stopping there. Now and then A sends a fresh transport packet (a valid, unseen counter), and
 * the pair is rebuilt every REBUILD_EVERY inputs so sessions never age out of the run.
 *
 * Checks: no throw; a known result kind and drop reason; a delivered packet lies inside the datagram; answers
 * are whole messages; nothing outside the datagram's bytes changed (decryption works in place).
 */
import { MSG_INITIATION, MSG_RESPONSE, INIT_LEN, INIT_MAC1_OFF, RESP_LEN, RESP_MAC1_OFF, LABEL_MAC1 } from '../../src/onramp/wireguard/constants.js';
import { hash, mac } from '../../src/onramp/wireguard/crypto.js';
import type { WireGuardDevice } from '../../src/onramp/wireguard/device.js';
import { WG_DROP_NAMES } from '../../src/onramp/wireguard/wg-drop.js';
import { SentinelArena } from '../../test/support/bounds.js';
import { ADDR_A, ADDR_B, PORT_A, PORT_B, T0, copyOut, deliver, endpoint, ipv4Packet, pair } from '../../test/support/wireguard.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { fromSeeds, mutateBytes } from '../mutate.js';
import type { Rng } from '../rng.js';

const MAX_DATAGRAM = 2048;
const REBUILD_EVERY = 20_000;
const FRESH_TRANSPORT = 0.05;
const REMAC = 0.5;
const KINDS = new Set(['data', 'send', 'drop', 'none']);
/** Smallest WireGuard message: the 4-byte type. */
const MIN_MESSAGE = 4;

interface Exchange {
  a: WireGuardDevice;
  b: WireGuardDevice;
  seeds: Uint8Array[];
  now: number;
}

/** A pair with a completed handshake, and the datagrams of the exchange as seeds. */
function exchange(): Exchange {
  const { a, b } = pair({ bEndpointForA: true });
  const seeds: Uint8Array[] = [];
  let now = T0;
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.10', '10.0.2.20', 40), now));
  seeds.push(...init.map((o) => o.data));
  const [resp] = deliver(b, init, ADDR_A, PORT_A, now);
  seeds.push(...resp.datagrams.map((o) => o.data));
  const [confirm] = deliver(a, resp.datagrams, ADDR_B, PORT_B, now);
  seeds.push(...confirm.datagrams.map((o) => o.data));
  deliver(b, confirm.datagrams, ADDR_A, PORT_A, now);
  for (const size of [0, 1, 20, 100, 600, 1400]) {
    now += 1;
    const packet = size === 0 ? new Uint8Array(0) : ipv4Packet('10.0.1.10', '10.0.2.20', size);
    seeds.push(...copyOut(a.send(0, packet, now)).map((o) => o.data));
  }
  // A cookie reply: a second pair whose responder is under load answers an initiation with one.
  const other = pair({ bEndpointForA: true });
  other.b.underLoad = true;
  const [cookie] = deliver(other.b, copyOut(other.a.send(0, ipv4Packet('10.0.1.10', '10.0.2.20', 40), now)), ADDR_A, PORT_A, now);
  seeds.push(...cookie.datagrams.map((o) => o.data));
  return { a, b, seeds: seeds.filter((s) => s.length > 0), now };
}

export function wireguardTarget(): FuzzTarget {
  let x = exchange();
  let mac1Key = hash(new TextEncoder().encode(LABEL_MAC1), x.b.publicKey);
  const from = endpoint(ADDR_A, PORT_A);
  const arena = new SentinelArena(MAX_DATAGRAM);
  let n = 0;
  return {
    name: 'onramp/wireguard',
    generate(rng: Rng): Uint8Array {
      if (++n % REBUILD_EVERY === 0) {
        x = exchange();
        mac1Key = hash(new TextEncoder().encode(LABEL_MAC1), x.b.publicKey);
      }
      if (rng.chance(FRESH_TRANSPORT)) {
        x.now += 1;
        const fresh = x.a.send(0, ipv4Packet('10.0.1.10', '10.0.2.20', rng.int(200)), x.now);
        // Half of them mutated: a fresh counter gets past the replay window to the decryption.
        if (fresh.length > 0) return rng.chance(0.5) ? fresh[0].data.slice() : mutateBytes(rng, fresh[0].data, null, MAX_DATAGRAM, 2);
      }
      const m = fromSeeds(rng, x.seeds, MAX_DATAGRAM);
      const type = m.length >= MIN_MESSAGE ? m[0] : 0;
      if (rng.chance(REMAC) && ((type === MSG_INITIATION && m.length === INIT_LEN) || (type === MSG_RESPONSE && m.length === RESP_LEN))) {
        const off = type === MSG_INITIATION ? INIT_MAC1_OFF : RESP_MAC1_OFF;
        m.set(mac(mac1Key, m.subarray(0, off)), off);
      }
      return m;
    },
    run(input: Uint8Array, rng: Rng): string {
      arena.place(input, rng.int(arena.guard + 1), 0x5a);
      const datagram = arena.view();
      x.now += rng.int(3);
      const r = x.b.receive(datagram, from, x.now);
      const changed = arena.changedOutside();
      if (changed !== null) throw new FuzzFailure(`receive wrote outside the datagram: ${changed}`);
      if (!KINDS.has(r.kind)) throw new FuzzFailure(`receive returned kind ${String(r.kind)}`);
      const name = WG_DROP_NAMES[r.reason];
      if (name === undefined) throw new FuzzFailure(`receive returned drop ${r.reason}, not a WgDrop`);
      if (r.kind === 'data') {
        const p = r.packet;
        if (p === null) throw new FuzzFailure('kind data without a packet');
        if (p.buffer === arena.buf.buffer && (p.byteOffset < datagram.byteOffset || p.byteOffset + p.length > datagram.byteOffset + datagram.length)) {
          throw new FuzzFailure(`delivered packet [${p.byteOffset}, +${p.length}) outside the datagram [${datagram.byteOffset}, +${datagram.length})`);
        }
      }
      for (const d of r.datagrams) if (d.data.length < MIN_MESSAGE) throw new FuzzFailure(`an answer of ${d.data.length} bytes`);
      return r.kind === 'drop' ? name : r.kind;
    },
  };
}
