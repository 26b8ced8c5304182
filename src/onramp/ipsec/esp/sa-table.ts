/**
 * The ESP SA table: every installed child SA in a fixed number of slots (struct of arrays), found by inbound SPI
 * (a Map from number to slot: O(1), no allocation) and by onramp for sending (an array indexed by onramp id).
 *
 *   installChild(sa) ─► a free slot: inbound SPI → slot at once; outbound[onramp] = slot (the newest SA sends)
 *   removeChild(onramp, spi) ─► the slot freed; if it was sending, the onramp's newest remaining SA takes over
 *
 * Make-before-break (RFC 7296 §2.8): after a rekey both SAs are installed, the new one sends, and the old inbound
 * SPI keeps being accepted until the engine removes it (the peer may still send on it for a while).
 *
 * Sequence numbers without ESN (RFC 4303 §3.3.3): the first packet is 1; at ESP_SEQUENCE_EXHAUSTED the SA is
 * flagged so the engine rekeys (ChildSaUsage.sequenceExhausted); 2^32 − 1 is the last number ever sent.
 *
 * Pure: the native crypto contexts are the transport's, keyed by the slot numbers handed out here.
 */
import { MAX_ONRAMP_ID } from '../../../common/ids.js';
import type { ChildSa, ChildSaUsage, EspDirectionKeys } from '../types.js';
import { ESP_MAX_REPLAY_WINDOW, ESP_MAX_SEQUENCE, ESP_MIN_SPI, ESP_SEQUENCE_EXHAUSTED, espAlgorithm, type EspAlgorithm } from './constants.js';
import { EspReplayWindow } from './replay.js';
import { InboundSelectors } from './selectors.js';

const PORT_SPACE = MAX_ONRAMP_ID + 1;
/** outbound[] / lookups: no SA. */
export const NO_SA = -1;
/** Child SAs the table holds by default: two per onramp during a rekey, for many onramps. */
export const DEFAULT_SA_CAPACITY = 4096;

/** Per-SA status for `tether onramps`, the dashboard and /metrics (control plane: allocates). */
export interface EspSaStatus {
  onramp: number;
  spiIn: number;
  spiOut: number;
  /** This SA is the onramp's sending one. */
  sending: boolean;
  algorithm: string;
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
  replayDrops: number;
  icvFailures: number;
  /** Other inbound drops on this SA (padding, next header, inner packet). */
  otherDrops: number;
  lastInbound: number;
  sequence: number;
  sequenceExhausted: boolean;
  replayWindow: number;
  createdAt: number;
}

export class EspSaTable {
  readonly capacity: number;
  readonly used: Uint8Array;
  readonly onramp: Uint16Array;
  readonly spiIn: Uint32Array;
  readonly spiOut: Uint32Array;
  /** Last sequence number sent (0 = none yet). */
  readonly seqOut: Float64Array;
  readonly inPackets: Float64Array;
  readonly inBytes: Float64Array;
  readonly outPackets: Float64Array;
  readonly outBytes: Float64Array;
  readonly replayDrops: Float64Array;
  readonly icvFailures: Float64Array;
  readonly otherDrops: Float64Array;
  /** Monotonic ms of the last inbound packet that verified; 0 = none. */
  readonly lastInbound: Float64Array;
  readonly createdAt: Float64Array;
  /** Underlay path: addresses (IPv4 numbers) and ports (0 = raw ESP). */
  readonly localAddress: Uint32Array;
  readonly remoteAddress: Uint32Array;
  readonly localPort: Uint16Array;
  readonly remotePort: Uint16Array;
  readonly algIn: Array<EspAlgorithm | null>;
  readonly algOut: Array<EspAlgorithm | null>;
  readonly replay: Array<EspReplayWindow | null>;
  /** The inbound selector check per SA; null where the SA was negotiated for everything (route-based). */
  readonly selectors: Array<InboundSelectors | null>;
  private readonly names: string[];
  private readonly bySpi = new Map<number, number>();
  private readonly outbound = new Int32Array(PORT_SPACE).fill(NO_SA);
  private readonly free: number[] = [];

  constructor(capacity = DEFAULT_SA_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`SA table capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.used = new Uint8Array(capacity);
    this.onramp = new Uint16Array(capacity);
    this.spiIn = new Uint32Array(capacity);
    this.spiOut = new Uint32Array(capacity);
    this.seqOut = new Float64Array(capacity);
    this.inPackets = new Float64Array(capacity);
    this.inBytes = new Float64Array(capacity);
    this.outPackets = new Float64Array(capacity);
    this.outBytes = new Float64Array(capacity);
    this.replayDrops = new Float64Array(capacity);
    this.icvFailures = new Float64Array(capacity);
    this.otherDrops = new Float64Array(capacity);
    this.lastInbound = new Float64Array(capacity);
    this.createdAt = new Float64Array(capacity);
    this.localAddress = new Uint32Array(capacity);
    this.remoteAddress = new Uint32Array(capacity);
    this.localPort = new Uint16Array(capacity);
    this.remotePort = new Uint16Array(capacity);
    this.algIn = new Array<EspAlgorithm | null>(capacity).fill(null);
    this.algOut = new Array<EspAlgorithm | null>(capacity).fill(null);
    this.replay = new Array<EspReplayWindow | null>(capacity).fill(null);
    this.selectors = new Array<InboundSelectors | null>(capacity).fill(null);
    this.names = new Array<string>(capacity).fill('');
    for (let s = capacity - 1; s >= 0; s--) this.free.push(s);
  }

  /** How many SAs are installed. */
  get size(): number {
    return this.capacity - this.free.length;
  }

  /**
   * Installs a child SA; returns its slot. Throws, naming the problem, for a taken inbound SPI, a reserved SPI,
   * keys of the wrong length, a bad replay window or a full table (nothing changed then).
   */
  install(sa: ChildSa): number {
    if (!Number.isInteger(sa.onramp) || sa.onramp < 1 || sa.onramp > MAX_ONRAMP_ID) throw new RangeError(`child SA for onramp ${sa.onramp}: not an onramp id`);
    checkSpi('inbound', sa.inbound.spi);
    checkSpi('outbound', sa.outbound.spi);
    if (this.bySpi.has(sa.inbound.spi)) throw new Error(`child SA for onramp ${sa.onramp}: inbound SPI ${hex(sa.inbound.spi)} is installed already`);
    if (sa.inbound.encryption !== sa.outbound.encryption || sa.inbound.integrity !== sa.outbound.integrity) {
      throw new Error(`child SA for onramp ${sa.onramp}: both directions must use the same algorithms (RFC 7296 §3.3)`);
    }
    const algIn = checkedAlgorithm(sa.onramp, 'inbound', sa.inbound);
    const algOut = checkedAlgorithm(sa.onramp, 'outbound', sa.outbound);
    if (!Number.isInteger(sa.replayWindow) || sa.replayWindow < 0 || sa.replayWindow > ESP_MAX_REPLAY_WINDOW) {
      throw new RangeError(`child SA for onramp ${sa.onramp}: replay window ${sa.replayWindow} is not in 0..${ESP_MAX_REPLAY_WINDOW}`);
    }
    let selectors: InboundSelectors | null;
    try {
      selectors = InboundSelectors.compile(sa.selectors.remote, sa.selectors.local);
    } catch (e) {
      throw new Error(`child SA for onramp ${sa.onramp}: ${(e as Error).message}`);
    }
    const s = this.free.pop();
    if (s === undefined) throw new Error(`child SA for onramp ${sa.onramp}: the ESP SA table is full (${this.capacity} SAs)`);
    this.used[s] = 1;
    this.onramp[s] = sa.onramp;
    this.spiIn[s] = sa.inbound.spi;
    this.spiOut[s] = sa.outbound.spi;
    this.seqOut[s] = 0;
    this.inPackets[s] = 0;
    this.inBytes[s] = 0;
    this.outPackets[s] = 0;
    this.outBytes[s] = 0;
    this.replayDrops[s] = 0;
    this.icvFailures[s] = 0;
    this.otherDrops[s] = 0;
    this.lastInbound[s] = 0;
    this.createdAt[s] = sa.createdAt;
    this.localAddress[s] = sa.path.localAddress >>> 0;
    this.remoteAddress[s] = sa.path.remoteAddress >>> 0;
    this.localPort[s] = sa.path.localPort;
    this.remotePort[s] = sa.path.remotePort;
    this.algIn[s] = algIn;
    this.algOut[s] = algOut;
    this.replay[s] = new EspReplayWindow(sa.replayWindow);
    this.selectors[s] = selectors;
    this.names[s] = sa.inbound.integrity === null ? sa.inbound.encryption : `${sa.inbound.encryption}-${sa.inbound.integrity}`;
    this.bySpi.set(sa.inbound.spi, s);
    this.outbound[sa.onramp] = s;
    return s;
  }

  /** Removes the onramp's SA of inbound SPI `spi`; returns its freed slot, or NO_SA when it holds none. */
  remove(onramp: number, spi: number): number {
    const s = this.bySpi.get(spi);
    if (s === undefined || this.onramp[s] !== onramp) return NO_SA;
    this.bySpi.delete(spi);
    this.used[s] = 0;
    this.algIn[s] = null;
    this.algOut[s] = null;
    this.replay[s] = null;
    this.selectors[s] = null;
    if (this.outbound[onramp] === s) this.outbound[onramp] = this.newestOf(onramp);
    this.free.push(s);
    return s;
  }

  /** Removes every SA of an onramp (the onramp was removed); returns the freed slots. */
  removeOnramp(onramp: number): number[] {
    const slots: number[] = [];
    for (let s = 0; s < this.capacity; s++) if (this.used[s] === 1 && this.onramp[s] === onramp) slots.push(s);
    for (const s of slots) this.remove(onramp, this.spiIn[s]);
    return slots;
  }

  /** The decrypted inner packet at data[offset, offset + length) lies inside slot s's selectors. Per packet. */
  admits(s: number, data: Uint8Array, offset: number, length: number): boolean {
    const check = this.selectors[s];
    return check === null || check.admits(data, offset, length);
  }

  /** The slot of inbound SPI `spi`, or NO_SA. Per packet: no allocation. */
  inbound(spi: number): number {
    const s = this.bySpi.get(spi);
    return s === undefined ? NO_SA : s;
  }

  /** The onramp's sending SA, or NO_SA. Per packet. */
  outboundOf(onramp: number): number {
    return this.outbound[onramp];
  }

  /** The next sequence number of slot `s` (counted as used), or -1 past 2^32 − 1 (never sent: RFC 4303 §3.3.3). */
  nextSequence(s: number): number {
    const seq = this.seqOut[s] + 1;
    if (seq > ESP_MAX_SEQUENCE) return -1;
    this.seqOut[s] = seq;
    return seq;
  }

  /** Gives back a sequence number taken by nextSequence whose packet was not sent after all (the last one taken). */
  returnSequence(s: number, seq: number): void {
    if (this.seqOut[s] === seq) this.seqOut[s] = seq - 1;
  }

  sequenceExhausted(s: number): boolean {
    return this.seqOut[s] >= ESP_SEQUENCE_EXHAUSTED;
  }

  /** What the IKE engine asks of the data path (IkeSink.childUsage), or null. Control plane: allocates. */
  usage(onramp: number, spi: number): ChildSaUsage | null {
    const s = this.bySpi.get(spi);
    if (s === undefined || this.onramp[s] !== onramp) return null;
    return {
      inboundPackets: this.inPackets[s],
      outboundPackets: this.outPackets[s],
      lastInbound: this.lastInbound[s],
      sequenceExhausted: this.sequenceExhausted(s),
    };
  }

  /** Every installed SA (control plane). */
  status(): EspSaStatus[] {
    const out: EspSaStatus[] = [];
    for (let s = 0; s < this.capacity; s++) {
      if (this.used[s] !== 1) continue;
      out.push({
        onramp: this.onramp[s],
        spiIn: this.spiIn[s],
        spiOut: this.spiOut[s],
        sending: this.outbound[this.onramp[s]] === s,
        algorithm: this.names[s],
        inPackets: this.inPackets[s],
        inBytes: this.inBytes[s],
        outPackets: this.outPackets[s],
        outBytes: this.outBytes[s],
        replayDrops: this.replayDrops[s],
        icvFailures: this.icvFailures[s],
        otherDrops: this.otherDrops[s],
        lastInbound: this.lastInbound[s],
        sequence: this.seqOut[s],
        sequenceExhausted: this.sequenceExhausted(s),
        replayWindow: this.replay[s]?.size ?? 0,
        createdAt: this.createdAt[s],
      });
    }
    return out;
  }

  /** The onramp's most recently installed remaining SA (a rekey's survivor), or NO_SA. */
  private newestOf(onramp: number): number {
    let best = NO_SA;
    for (let s = 0; s < this.capacity; s++) {
      if (this.used[s] === 1 && this.onramp[s] === onramp && (best === NO_SA || this.createdAt[s] >= this.createdAt[best])) best = s;
    }
    return best;
  }
}

function checkSpi(direction: string, spi: number): void {
  if (!Number.isInteger(spi) || spi < ESP_MIN_SPI || spi > 0xffffffff) throw new RangeError(`${direction} SPI ${spi} is reserved or not 32-bit (RFC 4303 §2.1)`);
}

function checkedAlgorithm(onramp: number, direction: string, keys: EspDirectionKeys): EspAlgorithm {
  const alg = espAlgorithm(keys.encryption, keys.integrity);
  const want = alg.keyLength + alg.saltLength;
  if (keys.encryptionKey.length !== want) {
    throw new Error(`child SA for onramp ${onramp}: ${direction} ${keys.encryption} key is ${keys.encryptionKey.length} bytes, needs ${want}`);
  }
  const integ = keys.integrityKey?.length ?? 0;
  if (integ !== alg.integKeyLength) {
    throw new Error(`child SA for onramp ${onramp}: ${direction} integrity key is ${integ} bytes, needs ${alg.integKeyLength}`);
  }
  return alg;
}

export function hex(spi: number): string {
  return `0x${(spi >>> 0).toString(16).padStart(8, '0')}`;
}
