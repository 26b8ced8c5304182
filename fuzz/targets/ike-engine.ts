/**
 * onramp/ike-engine: IkeEngine.receive (src/onramp/ipsec/ike/engine.ts), the whole state machine behind the parser,
 * on a pair of engines wired in memory (test/support/ike-rig.ts). Seeds are the pair's own exchange, and half the time one of its last 64 datagrams (so mutants reach the SAs alive now): IKE_SA_INIT,
 * IKE_AUTH, CREATE_CHILD_SA rekeys of the child and of the IKE SA, DPD INFORMATIONALs (short lifetimes, the clock
 * advanced). An input is one octet naming the receiver (bit 0: engine A or B) and its port (bit 1: 500 or 4500),
 * then the datagram. Every 16th input the clock moves on (up to 10 s), so both engines answer, retransmit, rekey
 * and expire while the mutants arrive; the pair is rebuilt every REBUILD_EVERY inputs. DH values and nonces are
 * fresh per build, so a saved input replays against a new exchange (see "Seeds" in docs/FUZZING.md).
 *
 * Checks: no throw from receive(), poll() or status(); the verdict is a known drop reason; the datagram's bytes
 * are not changed; every child SA handed to the sink has key lengths that fit its algorithms and distinct SPIs.
 */
import { IKE_DROP_COUNT, IKE_DROP_NAMES } from '../../src/onramp/ipsec/ike/ike-drop.js';
import { encryptionKeyLength, integrityKeyLength } from '../../src/onramp/ipsec/ike/crypto.js';
import type { ChildSa } from '../../src/onramp/ipsec/types.js';
import { write32 } from '../../src/wire/bytes.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { mirror, peerConfig, Rig, type Datagram, type Side } from '../../test/support/ike-rig.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { fromSeeds } from '../mutate.js';
import type { Rng } from '../rng.js';

const MAX_MESSAGE = 2048;
const REBUILD_EVERY = 5000;
const ADVANCE_EVERY = 16;
const MAX_ADVANCE_MS = 10_000;
const FIX_LENGTH = 0.5;
/** RFC 7296 §3.1: the header's length field at octet 24 of the message (octet 25 of an input, after the meta octet). */
const LENGTH_FIELD = 24;
const HEADER = 28;
const TO_B = 1;
const NAT_T = 2;
const IKE_PORT = 500;
const NAT_T_PORT = 4500;
/** Short lifetimes so a few seconds of fuzzing clock see rekeys and expiries (seconds). */
const IKE_LIFETIME = { rekeySeconds: 40, lifetimeSeconds: 60, jitterSeconds: 0 };
const CHILD_LIFETIME = { rekeySeconds: 20, lifetimeSeconds: 30, jitterSeconds: 0 };
const DPD_SECONDS = 15;
const SETUP_MS = 70_000;
const RECENT = 64;

interface Pair {
  rig: Rig;
  seeds: Uint8Array[];
  recent: Uint8Array[];
  /** rig.log entries already copied into `recent`. */
  logged: number;
  /** Installs already checked, per side. */
  checked: Map<Side, number>;
}

function build(): Pair {
  const a = peerConfig({
    ikeProposals: [
      { encryption: ['aes256gcm16', 'aes128'], integrity: ['sha256'], prf: ['prfsha256', 'prfsha384'], dh: ['ecp256', 'curve25519'] },
    ],
    espProposals: [{ encryption: ['aes128gcm16', 'aes256'], integrity: ['sha256'], dh: ['ecp256'] }],
    ikeLifetime: IKE_LIFETIME,
    childLifetime: CHILD_LIFETIME,
    dpdSeconds: DPD_SECONDS,
    dpdTimeoutSeconds: 30,
    forceEncapsulation: true,
  });
  const rig = Rig.pair(a, mirror(a));
  rig.advance(SETUP_MS);
  const seeds = rig.log.map((d) => asInput(rig, d));
  if (seeds.length < 6) throw new Error(`the engine pair exchanged only ${seeds.length} datagrams while setting up`);
  return { rig, seeds, recent: [], logged: rig.log.length, checked: new Map([[rig.a, 0], [rig.b, 0]]) };
}

function asInput(rig: Rig, d: Datagram): Uint8Array {
  const meta = (d.to === rig.b ? TO_B : 0) | (d.localPort === NAT_T_PORT ? NAT_T : 0);
  const out = new Uint8Array(1 + d.bytes.length);
  out[0] = meta;
  out.set(d.bytes, 1);
  return out;
}

/** The seeds plus the last RECENT datagrams the pair exchanged: mutants of those hit the SAs alive now. */
function refresh(pair: Pair): void {
  const log = pair.rig.log;
  for (let i = pair.logged; i < log.length; i++) pair.recent.push(asInput(pair.rig, log[i]));
  pair.logged = log.length;
  if (pair.recent.length > RECENT) pair.recent.splice(0, pair.recent.length - RECENT);
}

function checkInstalls(pair: Pair): void {
  for (const side of [pair.rig.a, pair.rig.b]) {
    const installs = side.sink.installs;
    for (let i = pair.checked.get(side) ?? 0; i < installs.length; i++) checkChild(installs[i]);
    pair.checked.set(side, installs.length);
  }
}

function checkChild(sa: ChildSa): void {
  for (const d of [sa.inbound, sa.outbound]) {
    if (d.encryptionKey.length !== encryptionKeyLength(d.encryption)) throw new FuzzFailure(`child SA ${d.spi}: ${d.encryption} key of ${d.encryptionKey.length} bytes`);
    if ((d.integrityKey?.length ?? 0) !== integrityKeyLength(d.integrity)) throw new FuzzFailure(`child SA ${d.spi}: ${d.integrity} key of ${d.integrityKey?.length} bytes`);
  }
  if (sa.inbound.spi === sa.outbound.spi || sa.inbound.spi === 0) throw new FuzzFailure(`child SA SPIs ${sa.inbound.spi}/${sa.outbound.spi}`);
}

export function ikeEngineTarget(): FuzzTarget {
  let pair = build();
  let count = 0;
  return {
    name: 'onramp/ike-engine',
    generate(rng: Rng): Uint8Array {
      const pool = pair.recent.length > 0 && rng.chance(0.5) ? pair.recent : pair.seeds;
      const p = fromSeeds(rng, pool, MAX_MESSAGE + 1);
      if (p.length > HEADER && rng.chance(FIX_LENGTH)) write32(p, LENGTH_FIELD + 1, p.length - 1);
      return p;
    },
    run(input: Uint8Array, rng: Rng): string {
      if (++count % REBUILD_EVERY === 0) pair = build();
      const { rig } = pair;
      if (input.length === 0) return 'empty';
      const meta = input[0];
      const to = meta & TO_B ? rig.b : rig.a;
      const from = to.other();
      const port = meta & NAT_T ? NAT_T_PORT : IKE_PORT;
      const message = input.slice(1);
      const copy = message.slice();
      const verdict = to.engine.receive(message, parseIpv4(to.address), port, parseIpv4(from.address), port, rig.now);
      if (!Number.isInteger(verdict) || verdict < 0 || verdict >= IKE_DROP_COUNT) throw new FuzzFailure(`receive returned ${verdict}`);
      for (let i = 0; i < copy.length; i++) if (message[i] !== copy[i]) throw new FuzzFailure(`receive changed byte ${i} of the datagram`);
      // The engines answer each other (and the mutant's answer goes to the other engine, as on a wire).
      rig.run(() => true, 1000);
      if (count % ADVANCE_EVERY === 0) rig.advance(1 + rng.int(MAX_ADVANCE_MS));
      checkInstalls(pair);
      refresh(pair);
      rig.a.engine.status();
      rig.b.engine.status();
      return IKE_DROP_NAMES[verdict] ?? `drop ${verdict}`;
    },
  };
}
