/**
 * onramp/esp: the ESP receive path of the daemon's IPsec transport (src/daemon/transports/ipsec.ts) behind the
 * underlay demux, as the underlay TUN's read loop runs it: inspect → protocol 50 or UDP 4500 (RFC 3948 §2
 * classification: ESP, the non-ESP marker before IKE, a keepalive) or UDP 500 → SPI → length → anti-replay check
 * → the native batched open (ICV, decryption in place) → trailer (padding, next header, inner IP version) →
 * replay window update → the pipeline's input, compacted around the drops. Four child SAs on four onramps: AES-GCM
 * raw and in UDP, AES-CBC with HMAC-SHA2 raw and in UDP. No TUN (the underlay's writes are discarded).
 *
 * Seeds are ESP packets sealed by the oracle (test/support/esp-oracle.ts) around the fuzzer's inner packets, IKE
 * messages in UDP 500 and behind the marker on 4500, keepalives. Now and then a fresh packet (an unseen sequence
 * number) is sealed, sent as is or mutated, so mutants reach the decryption and the trailer checks instead of all
 * stopping at the replay window; a third of those carry a wrong trailer that authenticates (pad length, a padding
 * byte, next header 0/17/59/255, the inner IP version). Half the batches carry fresh valid packets before and
 * after the input, so the compaction around a dropped packet is exercised.
 *
 * Checks: no throw; at most one ESP drop reason counted per input, a known one; a packet handed on is exactly the
 * inner packet the oracle opens from the input under the SA its SPI names, tagged with an SA's onramp, inside its
 * slot; a drop decided after decryption (ICV, padding, next header, inner version) is the oracle's verdict too; the
 * fresh valid companions always come through, in order; nothing outside the input's bytes changed in the batch.
 */
import { DEFAULT_HEADROOM, DEFAULT_SLOT_SIZE, PacketBatch } from '../../src/common/packet-batch.js';
import { EdgeCounter } from '../../src/daemon/transports/counters.js';
import { IpsecTransport } from '../../src/daemon/transports/ipsec.js';
import { Underlay } from '../../src/daemon/transports/underlay.js';
import { ESP_DROP_COUNT, ESP_DROP_NAMES, ESP_HEADER, ROUTE_BASED, espAlgorithm } from '../../src/onramp/ipsec/esp/index.js';
import type { ChildSa, EncryptionAlgorithm, EspDirectionKeys, IntegrityAlgorithm } from '../../src/onramp/ipsec/types.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { buildIp, buildUdp } from '../../src/wire/build.js';
import { IPPROTO_ESP, IPPROTO_UDP, IPV4_IHL_MASK, IPV4_MIN_HEADER, UDP_HEADER } from '../../src/wire/constants.js';
import { oracleOpen, oraclePlaintext, oracleSealPlain } from '../../test/support/esp-oracle.js';
import { transportHost } from '../../test/support/transport-host.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { mutateBytes, packetFromSeeds } from '../mutate.js';
import type { Rng } from '../rng.js';
import { builtPackets } from '../seeds.js';

/** What one batch slot holds (DEFAULT_SLOT_SIZE − DEFAULT_HEADROOM): the TUN reads no more into a slot either. */
const MAX_PACKET = DEFAULT_SLOT_SIZE - DEFAULT_HEADROOM;
const PEER = '198.51.100.7';
const PEER_NAT_PORT = 4501;
const IKE_PORT = 500;
const NAT_T_PORT = 4500;
const REPLAY_WINDOW = 64;
const FRESH = 0.15;
const COMPANIONS = 0.5;
/** Share of fresh packets sealed with a wrong trailer that authenticates (bad padding, next header, inner version). */
const BAD_TRAILER = 0.3;
const NEXT_HEADERS = [4, 41, 59, 0, 17, 255];
const SENTINEL = 0xa5;
/** Drops decided by opening the packet, and what the oracle says of such a packet. */
const AFTER_ICV: ReadonlyMap<string, string> = new Map([
  ['icv_failed', 'icv'],
  ['bad_padding', 'padding'],
  ['bad_next_header', 'next-header'],
  ['dummy', 'next-header'],
  ['bad_inner_packet', 'inner'],
]);

interface Sa {
  child: ChildSa;
  udp: boolean;
  local: string;
  seq: number;
}

const SAS: ReadonlyArray<{ onramp: number; local: string; enc: EncryptionAlgorithm; integ: IntegrityAlgorithm | null; udp: boolean }> = [
  { onramp: 1, local: '192.0.2.1', enc: 'aes128gcm16', integ: null, udp: false },
  { onramp: 2, local: '192.0.2.2', enc: 'aes256gcm16', integ: null, udp: true },
  { onramp: 3, local: '192.0.2.3', enc: 'aes256', integ: 'sha256', udp: false },
  { onramp: 4, local: '192.0.2.4', enc: 'aes128', integ: 'sha512', udp: true },
];

/** Deterministic keys (the same seed gives the same inputs): a byte pattern per SA and direction. */
function keys(enc: EncryptionAlgorithm, integ: IntegrityAlgorithm | null, spi: number): EspDirectionKeys {
  const alg = espAlgorithm(enc, integ);
  const pattern = (n: number, salt: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + spi + salt) & 0xff);
  return { spi, encryption: enc, integrity: integ, encryptionKey: pattern(alg.keyLength + alg.saltLength, 1), integrityKey: integ === null ? null : pattern(alg.integKeyLength, 2) };
}

/** An underlay without a TUN: whatever the transport would write (IKE answers) is dropped. */
class QuietUnderlay extends Underlay {
  override queue(): void {}
  override flushTx(): void {
    this.tx.count = 0;
  }
}

/** One IKE_SA_INIT-shaped header (28 bytes) and a payload: what the IKE handler gets (the engine is not run here). */
const IKE_BYTES = Uint8Array.from({ length: 60 }, (_, i) => (i < 8 ? i + 1 : i === 17 ? 0x20 : i === 18 ? 34 : i === 19 ? 0x08 : 0));

export function espTarget(): FuzzTarget {
  const host = transportHost();
  const underlay = new QuietUnderlay(host, 'fz-esp', 4);
  const transport = new IpsecTransport(host, underlay, { saCapacity: 8, queue: 4 });
  transport.open();
  let ikeMessages = 0;
  transport.onIke(() => {
    ikeMessages++;
  });
  const sas: Sa[] = SAS.map((s, k) => {
    transport.add({ type: 'ipsec', name: `fz-${k}`, local: s.local }, s.onramp);
    const child: ChildSa = {
      onramp: s.onramp,
      inbound: keys(s.enc, s.integ, 0x1000 * (k + 1)),
      outbound: keys(s.enc, s.integ, 0x1000 * (k + 1) + 1),
      path: { localAddress: parseIpv4(s.local), remoteAddress: parseIpv4(PEER), localPort: s.udp ? NAT_T_PORT : 0, remotePort: s.udp ? PEER_NAT_PORT : 0 },
      replayWindow: REPLAY_WINDOW,
      selectors: ROUTE_BASED,
      createdAt: 0,
    };
    transport.installChild(child);
    return { child, udp: s.udp, local: s.local, seq: 0 };
  });
  const inners = builtPackets().filter((p) => p.length <= 1400);
  let ivCounter = 0;

  const outer = (sa: Sa, esp: Uint8Array): Uint8Array =>
    sa.udp ? buildUdp({ src: PEER, dst: sa.local }, { srcPort: PEER_NAT_PORT, dstPort: NAT_T_PORT, payload: esp }) : buildIp({ src: PEER, dst: sa.local }, IPPROTO_ESP, esp);

  /** A fresh ESP packet (the SA's next sequence number) around `inner`; `rng`: a wrong trailer now and then. */
  const seal = (sa: Sa, inner: Uint8Array, rng: Rng | null): Uint8Array => {
    const k = sa.child.inbound;
    const iv = Uint8Array.from({ length: k.encryption.endsWith('gcm16') ? 8 : 16 }, (_, i) => (ivCounter * 7 + i) & 0xff);
    ivCounter++;
    const plain = oraclePlaintext(k, inner);
    if (rng !== null && rng.chance(BAD_TRAILER)) {
      const n = plain.length;
      const what = rng.int(4);
      if (what === 0) plain[n - 2] = rng.int(256); // pad length
      else if (what === 1) plain[n - 1] = rng.pick(NEXT_HEADERS);
      else if (what === 2 && plain[n - 2] > 0) plain[n - 3] ^= 1 + rng.int(255); // a padding byte
      else plain[0] = (rng.int(16) << 4) | (plain[0] & 0x0f); // the inner IP version
    }
    return outer(sa, oracleSealPlain(k, k.spi, ++sa.seq, plain, iv));
  };

  const seeds: Uint8Array[] = [];
  for (let i = 0; i < inners.length; i++) seeds.push(seal(sas[i % sas.length], inners[i], null));
  for (const sa of sas) {
    if (!sa.udp) continue;
    seeds.push(buildUdp({ src: PEER, dst: sa.local }, { srcPort: PEER_NAT_PORT, dstPort: NAT_T_PORT, payload: Uint8Array.of(0xff) }));
    const marked = new Uint8Array(4 + IKE_BYTES.length);
    marked.set(IKE_BYTES, 4);
    seeds.push(buildUdp({ src: PEER, dst: sa.local }, { srcPort: PEER_NAT_PORT, dstPort: NAT_T_PORT, payload: marked }));
    seeds.push(buildUdp({ src: PEER, dst: sa.local }, { srcPort: IKE_PORT, dstPort: IKE_PORT, payload: IKE_BYTES }));
  }
  const batch = new PacketBatch(3);
  let now = 0;

  const fresh = (rng: Rng, badTrailers: boolean): { sa: Sa; inner: Uint8Array; packet: Uint8Array } => {
    const sa = rng.pick(sas);
    const inner = rng.pick(inners);
    return { sa, inner, packet: seal(sa, inner, badTrailers ? rng : null) };
  };

  /**
   * What the oracle makes of an outer packet's ESP part (raw, or in UDP to 4500 without the marker) under the SA
   * its SPI names: the inner packet, a reason ('icv', 'padding', 'next-header', 'length'), or null (not ESP of ours).
   */
  const oracle = (p: Uint8Array): ReturnType<typeof oracleOpen> | null => {
    if (p.length < IPV4_MIN_HEADER) return null;
    const ihl = (p[0] & IPV4_IHL_MASK) * 4;
    const end = Math.min(p.length, (p[2] << 8) | p[3]);
    const at = ihl + (p[9] === IPPROTO_UDP ? UDP_HEADER : 0);
    if (at + ESP_HEADER > end) return null;
    const spi = ((p[at] << 24) | (p[at + 1] << 16) | (p[at + 2] << 8) | p[at + 3]) >>> 0;
    const sa = sas.find((x) => x.child.inbound.spi === spi);
    return sa === undefined ? null : oracleOpen(sa.child.inbound, p.subarray(at, end));
  };

  return {
    name: 'onramp/esp',
    generate(rng: Rng): Uint8Array {
      if (rng.chance(FRESH)) {
        const f = fresh(rng, true);
        return rng.chance(0.5) ? f.packet : mutateBytes(rng, f.packet, null, MAX_PACKET, 2);
      }
      return packetFromSeeds(rng, seeds, MAX_PACKET);
    },
    run(input: Uint8Array, rng: Rng): string {
      const withCompanions = rng.chance(COMPANIONS);
      const before = withCompanions ? fresh(rng, false) : null;
      const after = withCompanions ? fresh(rng, false) : null;
      batch.clear();
      batch.data.fill(SENTINEL);
      if (before !== null) batch.push(before.packet, 0, before.packet.length, 0);
      const slot = batch.count;
      batch.push(input, 0, input.length, 0);
      if (after !== null) batch.push(after.packet, 0, after.packet.length, 0);
      const inOff = batch.offset[slot];
      const inLen = input.length;
      const drops = Float64Array.from(transport.drops);
      const ike = ikeMessages;
      const keepalives = host.counters[EdgeCounter.IpsecKeepalive];
      const kept = underlay.demux(batch, now++);

      // Nothing outside the input's bytes changed (companions are checked by their content below).
      const slotStart = slot * batch.slotSize;
      for (let b = slotStart; b < slotStart + batch.slotSize; b++) {
        if ((b < inOff || b >= inOff + inLen) && batch.data[b] !== SENTINEL) throw new FuzzFailure(`byte ${b - inOff} relative to the input changed outside it`);
      }
      let moved = -1;
      for (let r = 0; r < ESP_DROP_COUNT; r++) {
        const d = transport.drops[r] - drops[r];
        if (d === 0) continue;
        if (d !== 1 || moved !== -1) throw new FuzzFailure(`drop counters moved by more than one input: ${ESP_DROP_NAMES[r]} +${d}`);
        moved = r;
      }
      const expected = (before !== null ? 1 : 0) + (after !== null ? 1 : 0);
      if (kept < expected || kept > expected + 1) throw new FuzzFailure(`${kept} packets handed on, ${expected} companions`);
      const inputKept = kept - expected === 1;
      if (inputKept && moved !== -1) throw new FuzzFailure(`the input was both handed on and dropped (${ESP_DROP_NAMES[moved]})`);
      let j = 0;
      const check = (want: Uint8Array | null, what: string): void => {
        const off = batch.offset[j];
        const len = batch.length[j];
        const home = Math.floor(off / batch.slotSize);
        if (off < home * batch.slotSize || off + len > (home + 1) * batch.slotSize) throw new FuzzFailure(`${what}: [${off}, +${len}) leaves its slot`);
        const onramp = batch.ingress[j];
        if (!SAS.some((s) => s.onramp === onramp)) throw new FuzzFailure(`${what}: tagged with onramp ${onramp}`);
        const got = batch.data.subarray(off, off + len);
        if (want === null || got.length !== want.length || got.some((v, i) => v !== want[i])) {
          throw new FuzzFailure(`${what}: handed on ${len} bytes that are not the inner packet the oracle opens`);
        }
        j++;
      };
      if (before !== null) check(before.inner, 'the companion before');
      const opened = inputKept || (moved !== -1 && AFTER_ICV.has(ESP_DROP_NAMES[moved])) ? oracle(input) : null;
      if (inputKept) check(opened !== null && typeof opened !== 'string' ? opened.inner : null, 'the input');
      if (after !== null) check(after.inner, 'the companion after');
      if (inputKept) return 'delivered';
      if (moved !== -1) {
        const name = ESP_DROP_NAMES[moved];
        const want = AFTER_ICV.get(name);
        // After the ICV the oracle must agree on the verdict (it does not look at the inner packet's version).
        if (want !== undefined && (typeof opened === 'string' ? opened : 'inner') !== want) throw new FuzzFailure(`dropped as ${name}, the oracle says ${typeof opened === 'string' ? opened : 'an inner packet'}`);
        return name;
      }
      if (ikeMessages > ike) return 'ike';
      if (host.counters[EdgeCounter.IpsecKeepalive] > keepalives) return 'keepalive';
      return 'underlay';
    },
  };
}
