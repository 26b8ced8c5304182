/**
 * wire/inspect: the one parse every packet gets (IPv4 with options, IPv6 extension chains, TCP/UDP/ICMP/ICMPv6,
 * ICMP errors with their embedded headers, fragments). Each input is inspected at two offsets inside buffers
 * filled with two different sentinels and on an exact-size view; all three must agree, nothing may change, and
 * every 8th input also goes through the read guard, which throws on any read outside the packet.
 */
import { PacketInfo } from '../../src/wire/packet-info.js';
import { inspect } from '../../src/wire/inspect.js';
import { DROP_REASON_NAMES } from '../../src/common/drop-reasons.js';
import { readGuard, SentinelArena } from '../../test/support/bounds.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { packetFromSeeds } from '../mutate.js';
import type { Rng } from '../rng.js';
import { packetSeeds } from '../seeds.js';
import { offsetsInside, sameSignature, signature } from './packet-check.js';

const MAX_PACKET = 2048;
const GUARD_EVERY = 8;

export function inspectTarget(): FuzzTarget {
  const seeds = packetSeeds();
  const arena = new SentinelArena(MAX_PACKET);
  const info = new PacketInfo();
  const first: number[] = [];
  const again: number[] = [];
  let n = 0;
  return {
    name: 'wire/inspect',
    generate: (rng: Rng) => packetFromSeeds(rng, seeds, MAX_PACKET),
    run(input: Uint8Array, rng: Rng): string {
      const len = input.length;
      let at = arena.place(input, rng.int(arena.guard + 1), 0x00);
      const drop = inspect(arena.buf, at, len, info);
      signature(drop, info, at, first);
      if (drop === 0) offsetsInside(info, at, len);
      const changed = arena.changedOutside();
      if (changed !== null) throw new FuzzFailure(`inspect wrote outside the packet: ${changed}`);

      at = arena.place(input, rng.int(arena.guard + 1), 0xff);
      sameSignature(first, signature(inspect(arena.buf, at, len, info), info, at, again), 'sentinel 0xff');
      sameSignature(first, signature(inspect(arena.view(), 0, len, info), info, 0, again), 'exact-size view');
      if (n++ % GUARD_EVERY === 0) {
        sameSignature(first, signature(inspect(readGuard(arena.buf, at, at + len), at, len, info), info, at, again), 'read guard');
      }
      const name = DROP_REASON_NAMES[drop];
      if (name === undefined) throw new FuzzFailure(`inspect returned ${drop}, not a Drop reason`);
      return name;
    },
  };
}
