/**
 * onramp/ike: the IKEv2 wire parser (`parseMessage`, src/onramp/ipsec/ike/wire.ts) and the SK payload's
 * decryption (`openEncrypted` with crypto.ts's `SkCodec`). Seeds are real strongSwan 5.9.8 exchanges whose keys
 * are known (src/onramp/ipsec/ike/testdata/strongswan-keys.json: four proposal sets, IKE_SA_INIT to delete).
 * Half the mutants get their header length made consistent again so they reach the payload parsers; one in
 * four is a strongSwan message decrypted, its inner payload chain mutated and sealed again under a fuzz SA's
 * keys, so the inner parsers see mutated plaintext behind a valid ICV.
 *
 * Checks: no throw; the same result on the exact-size copy and on two placements in sentinel-filled buffers;
 * the parser writes nothing; a message under a strongSwan SA's SPIs decrypts only when it is byte for byte a
 * captured one (every byte is authenticated: header and payloads before SK as AAD, §3.14 / RFC 5282 §5.1).
 */
import { readFileSync } from 'node:fs';
import { SkCodec, type IkeSuite } from '../../src/onramp/ipsec/ike/crypto.js';
import { openEncrypted, parseMessage, type IkeWireResult, type IkeMessage } from '../../src/onramp/ipsec/ike/wire.js';
import { DH_GROUPS, ENCRYPTION_ALGORITHMS, INTEGRITY_ALGORITHMS, PRF_ALGORITHMS } from '../../src/onramp/ipsec/types.js';
import { write32 } from '../../src/wire/bytes.js';
import { SentinelArena } from '../../test/support/bounds.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { fromSeeds, mutateBytes } from '../mutate.js';
import type { Rng } from '../rng.js';

/** Relative to the repository root, like fuzz/seeds.ts's SEED_FILE (the fuzz build does not copy data files). */
const CAPTURE_FILE = 'src/onramp/ipsec/ike/testdata/strongswan-keys.json';
const MAX_MESSAGE = 2048;
/** RFC 7296 §3.1 header, §3.2 generic payload header; the length field at octet 24; the Initiator flag. */
const HEADER = 28;
const GENERIC = 4;
const LENGTH_FIELD = 24;
const FLAG_INITIATOR = 0x08;
const SK = 46;
const FIX_LENGTH = 0.5;
const RESEAL = 0.25;
/** The fuzz SA: its own SPIs and keys, so resealed mutants never pose as a captured strongSwan message. */
const FUZZ_SPIS = 'f0f0f0f0f0f0f0f0' + '0f0f0f0f0f0f0f0f';
const FUZZ_SUITE: IkeSuite = { encryption: 'aes256gcm16', integrity: null, prf: 'prfsha256', dh: 'ecp256' };

/** IkeWireError's values (wire.ts keeps the numbering stable) as outcome labels. */
const WIRE_ERRORS = ['none', 'truncated', 'bad_length', 'bad_version', 'unsupported_critical', 'bad_payload', 'sk_not_last'];
const errorName = (e: number): string => WIRE_ERRORS[e] ?? `wire_error_${e}`;

interface Capture {
  profiles: Record<string, { ike: string; messages: Array<{ hex: string }>; logged: Array<[string, string]> }>;
}
interface Direction {
  fromI: SkCodec;
  fromR: SkCodec;
}

const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function suiteOf(proposal: string): IkeSuite {
  const parts = proposal.split('-');
  const pick = <T extends string>(all: readonly T[]): T | undefined => all.find((a) => parts.includes(a));
  return { encryption: pick(ENCRYPTION_ALGORITHMS)!, integrity: pick(INTEGRITY_ALGORITHMS) ?? null, prf: pick(PRF_ALGORITHMS)!, dh: pick(DH_GROUPS)! };
}

/** The SK_e/SK_a sets charon logged, in order (crypto-strongswan.test.ts shows crypto.ts derives the same). */
function loggedKeySets(logged: Array<[string, string]>): Array<Record<string, Uint8Array>> {
  const sets: Array<Record<string, Uint8Array>> = [];
  for (const [name, value] of logged) {
    if (name === 'Sk_d secret') sets.push({});
    const m = /^Sk_(ai|ar|ei|er) secret$/.exec(name);
    if (m && sets.length > 0) sets[sets.length - 1][m[1]] = Uint8Array.from(Buffer.from(value, 'hex'));
  }
  return sets;
}

/** A deterministic text of a parse result, for comparing two runs on the same bytes. */
function describe(r: IkeWireResult<unknown>): string {
  return JSON.stringify(r, (_k, v: unknown) => (v instanceof Uint8Array ? hexOf(v) : v));
}

export function ikeTarget(): FuzzTarget {
  const capture = JSON.parse(readFileSync(CAPTURE_FILE, 'utf8')) as Capture;
  const seeds: Uint8Array[] = [];
  const captured = new Set<string>();
  /** SPIi ‖ SPIr (hex) → the two directions' codecs. */
  const sas = new Map<string, Direction>();
  const encrypted: Array<{ bytes: Uint8Array; codec: SkCodec }> = [];
  for (const profile of Object.values(capture.profiles)) {
    const suite = suiteOf(profile.ike);
    const sets = loggedKeySets(profile.logged);
    const messages = profile.messages.map((m) => Uint8Array.from(Buffer.from(m.hex, 'hex')));
    // The first IKE_SA_INIT response names the first SA; the rekeyed SA is the other SPI pair seen.
    const spiPairs: string[] = [];
    for (const m of messages) {
      seeds.push(m);
      captured.add(hexOf(m));
      const spis = hexOf(m.subarray(0, 16));
      if (!spis.endsWith('0000000000000000') && !spiPairs.includes(spis)) spiPairs.push(spis);
    }
    spiPairs.forEach((spis, i) => {
      const k = sets[i];
      sas.set(spis, { fromI: new SkCodec(suite, k.ei, k.ai ?? null), fromR: new SkCodec(suite, k.er, k.ar ?? null) });
    });
  }
  const fuzzKey = Uint8Array.from({ length: 36 }, (_, i) => 0x5a ^ i);
  const fuzzSa: Direction = { fromI: new SkCodec(FUZZ_SUITE, fuzzKey, null), fromR: new SkCodec(FUZZ_SUITE, fuzzKey.map((b) => b ^ 0xff), null) };
  sas.set(FUZZ_SPIS, fuzzSa);
  const codecOf = (bytes: Uint8Array): SkCodec | null => {
    const sa = sas.get(hexOf(bytes.subarray(0, 16)));
    return sa === undefined ? null : bytes[19] & FLAG_INITIATOR ? sa.fromI : sa.fromR;
  };
  // Plaintexts of every captured encrypted message, for the reseal mutants.
  const plaintexts: Array<{ header: Uint8Array; first: number; plain: Uint8Array }> = [];
  for (const m of seeds) {
    const parsed = parseMessage(m);
    const codec = codecOf(m);
    if (!parsed.ok || codec === null || m[16] !== SK) continue;
    const skLength = (m[HEADER + 2] << 8) | m[HEADER + 3];
    const plain = codec.open(m.subarray(0, HEADER + GENERIC), m.subarray(HEADER + GENERIC, HEADER + skLength));
    if (plain) plaintexts.push({ header: m.slice(0, HEADER), first: m[HEADER], plain });
    encrypted.push({ bytes: m, codec });
  }
  if (plaintexts.length === 0) throw new Error(`no captured message decrypts with the logged keys (${CAPTURE_FILE})`);

  /** A captured message's inner chain, mutated, sealed again under the fuzz SA. */
  function reseal(rng: Rng): Uint8Array {
    const { header, first, plain } = rng.pick(plaintexts);
    const inner = mutateBytes(rng, plain, rng.pick(plaintexts).plain, MAX_MESSAGE - 200);
    const codec = header[19] & FLAG_INITIATOR ? fuzzSa.fromI : fuzzSa.fromR;
    const bodyLength = codec.sealedLength(inner.length);
    const aad = new Uint8Array(HEADER + GENERIC);
    aad.set(header);
    aad.set(Buffer.from(FUZZ_SPIS, 'hex'), 0);
    aad[16] = SK;
    write32(aad, LENGTH_FIELD, HEADER + GENERIC + bodyLength);
    aad[HEADER] = rng.chance(0.9) ? first : rng.int(256);
    aad[HEADER + 2] = (GENERIC + bodyLength) >>> 8;
    aad[HEADER + 3] = (GENERIC + bodyLength) & 0xff;
    const out = new Uint8Array(aad.length + bodyLength);
    out.set(aad);
    out.set(codec.seal(aad, inner), aad.length);
    return out;
  }

  const arena = new SentinelArena(MAX_MESSAGE);
  return {
    name: 'onramp/ike',
    generate(rng: Rng): Uint8Array {
      if (rng.chance(RESEAL)) return reseal(rng);
      const p = fromSeeds(rng, seeds, MAX_MESSAGE);
      if (p.length >= HEADER && rng.chance(FIX_LENGTH)) write32(p, LENGTH_FIELD, p.length);
      return p;
    },
    run(input: Uint8Array, rng: Rng): string {
      const exact = input.slice();
      const r = parseMessage(exact);
      const text = describe(r);
      for (const sentinel of [0x00, 0xff]) {
        const at = arena.place(input, rng.int(arena.guard + 1), sentinel);
        const placed = arena.buf.subarray(at, at + input.length);
        const again = describe(parseMessage(placed));
        if (again !== text) throw new FuzzFailure(`parseMessage differs at offset ${at} with sentinel ${sentinel}: ${again.slice(0, 200)} vs ${text.slice(0, 200)}`);
        const changed = arena.changedOutside();
        if (changed !== null) throw new FuzzFailure(`parseMessage wrote outside the message: ${changed}`);
        for (let i = 0; i < input.length; i++) if (placed[i] !== input[i]) throw new FuzzFailure(`parseMessage changed byte ${i} of the message`);
      }
      if (!r.ok) return errorName(r.error);
      const codec = codecOf(exact);
      if (codec === null) return 'parsed, unknown SA';
      const inner = openEncrypted(exact, r.value as IkeMessage, codec);
      if (inner === null) return 'parsed, not opened';
      const spis = hexOf(exact.subarray(0, 16));
      if (spis !== FUZZ_SPIS && !captured.has(hexOf(exact))) {
        throw new FuzzFailure('a changed message under a strongSwan SA decrypted: the ICV does not cover every byte');
      }
      return inner.ok ? 'opened, inner chain parsed' : `opened, inner ${errorName(inner.error)}`;
    },
  };
}
