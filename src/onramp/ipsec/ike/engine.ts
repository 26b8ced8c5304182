/**
 * The IKEv2 engine (RFC 7296) as a pure state machine: datagrams in, datagrams out through an IkeSink, time
 * passed in (`now`, monotonic ms), randomness injected. No sockets, no timers: the daemon calls poll(now) at
 * nextDeadline(). Control-plane rate, so it allocates freely.
 *
 *   receive() ─ parse (wire.ts) ─┬─ IKE_SA_INIT request ─ peers by address ─ [cookie over the threshold] ─ proposal
 *                                │     ─ INVALID_KE / NO_PROPOSAL_CHOSEN, or keys (§2.14) + NAT detection (§2.23)
 *                                ├─ our SPI → IKE SA ─ message-ID window / response cache (§2.3) ─ SK open
 *                                │     ├─ IKE_AUTH: peer by IDi, PSK AUTH (§2.15), child SA: ESP proposal,
 *                                │     │   TS narrowing (§2.9), keys (§2.17) → IkeSink.installChild, peerState(up)
 *                                │     ├─ CREATE_CHILD_SA: child rekey (REKEY_SA, PFS), IKE rekey (§2.18)
 *                                │     └─ INFORMATIONAL: Delete (IKE / ESP), liveness check (§2.4)
 *                                └─ a response: our outstanding request's continuation
 *   poll() ─ retransmissions (RETRANSMIT_*), half-open expiry, lifetimes (rekey with jitter, hard expiry),
 *            sequence exhaustion, DPD, restarts of 'initiate' peers
 *
 * The contract with the transport that glues it to UDP 500/4500 (daemon/transports/ipsec.ts):
 * - receive(): the IKE message without the non-ESP marker; underlay addresses as IPv4 numbers; returns the
 *   IkeDrop it counted in `drops` (None when taken). Nothing throws on bad input.
 * - sendIke(): `localPort` 500 or 4500; on 4500 the transport prefixes the marker (RFC 3948 §2.2). An SA with
 *   natDetected (status) wants NAT keepalives (RFC 3948 §2.3) from the transport; the engine sends none.
 * - installChild() comes before removeChild() of the child it replaces (make-before-break on rekey).
 * - peerState(up) once a child is installed; peerState(down, reason) when the peer has no live IKE SA left (DPD,
 *   Delete, hard lifetime) or a setup fails (authentication failed, no proposal, no answer) — each change once,
 *   so a failing initiator's retries do not repeat it. removePeer() removes children without a peerState.
 * - poll(now) at nextDeadline(); with children installed that is at most USAGE_CHECK_MS away (childUsage).
 */
import { formatIpv4, parseIpv4 } from '../../../wire/addr.js';
import { write32 } from '../../../wire/bytes.js';
import type { DhGroup, IkePeerConfig, IkeSaStatus, IkeSink, TrafficSelector } from '../types.js';
import {
  CookieJar,
  SkCodec,
  authEqual,
  deriveChildKeys,
  deriveIkeKeys,
  deriveRekeyedIkeKeys,
  dhStart,
  natDetectionHash,
  pskAuth,
  type IkeSuite,
} from './crypto.js';
import {
  AUTH_SHARED_KEY_MIC,
  CHILD_SPI_LENGTH,
  Exchange,
  FLAG_INITIATOR,
  FLAG_RESPONSE,
  IKE_PORT,
  NAT_T_PORT,
  NONCE_LENGTH,
  NONCE_MAX_LENGTH,
  NONCE_MIN_LENGTH,
  NOTIFY_ERROR_LIMIT,
  NotifyType,
  PayloadType,
  ProtocolId,
  SPI_LENGTH,
} from './constants.js';
import { identityMatches, identityToWire } from './identity.js';
import { IKE_DROP_COUNT, IkeDrop } from './ike-drop.js';
import { dhGroupOf, dhNumber, espAnswer, espProposalsToWire, espSuiteName, ikeAnswer, ikeProposalsToWire, ikeSuiteName, selectEsp, selectIke, type EspSuite } from './proposals.js';
import type { ChildState, IkeSa, OutstandingRequest, PeerEntry } from './sa.js';
import { entryToTs, formatTs, narrowSelectors, selectorsWithin, tsToEntry } from './ts.js';
import { IkeWireError, buildEncryptedMessage, buildMessage, idBody, openEncrypted, parseHeader, parseMessage, type IkeMessage, type Payload, type Proposal } from './wire.js';

/** strongSwan's retransmission (charon.retransmit_timeout 4 s, retransmit_base 1.8, retransmit_tries 5). */
export const RETRANSMIT_TIMEOUT_MS = 4000;
export const RETRANSMIT_BASE = 1.8;
export const RETRANSMIT_TRIES = 5;
/** A responder SA that never sees IKE_AUTH is dropped after this (strongSwan's half_open_timeout, 30 s). */
export const HALF_OPEN_TIMEOUT_MS = 30_000;
/** Half-open SAs above which IKE_SA_INIT needs a cookie (strongSwan's charon.cookie_threshold default 10). */
export const DEFAULT_COOKIE_THRESHOLD = 10;
/** Half-open SAs above which IKE_SA_INIT is dropped even with a cookie (strongSwan's block_threshold is per IP; this is global). */
export const DEFAULT_HALF_OPEN_LIMIT = 1000;
/**
 * Half-open SAs one remote address may open with a cookie (strongSwan's charon.block_threshold is 5, but counts
 * every half-open SA, so five spoofed packets block an address). Only SAs opened while cookies are demanded
 * count, because only they prove the sender receives at that address: a flood from a host that does (on a peer's
 * address, or calling an `any` responder) fills at most this many slots of the global limit, and a spoofer
 * cannot spend a victim's share.
 */
export const DEFAULT_HALF_OPEN_PER_ADDRESS = 5;
/** An 'initiate' peer whose IKE SA failed or was deleted starts again after this. */
export const RESTART_DELAY_MS = 5000;
/**
 * How often poll() asks the data path about sequence exhaustion (childUsage) when nothing else is due. The data
 * path flags exhaustion with a margin (RFC 4303 §3.3.3); the daemon may also call poll() at once when it does.
 */
export const USAGE_CHECK_MS = 1000;
const NEVER = Number.POSITIVE_INFINITY;
/** RFC 4303 §2.1: SPIs 1..255 are reserved by IANA. */
const MIN_CHILD_SPI = 256;
const MS = 1000;
const DH_GROUP_LENGTH = 2;

export interface IkeEngineOptions {
  /** Random bytes (SPIs, nonces, jitter, cookie secrets); the daemon passes crypto.randomBytes. */
  random(n: number): Uint8Array;
  cookieThreshold?: number;
  halfOpenLimit?: number;
  halfOpenPerAddress?: number;
}

interface Received {
  message: IkeMessage;
  raw: Uint8Array;
  localAddress: number;
  localPort: number;
  remoteAddress: number;
  remotePort: number;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}
function addressBytes(a: number): Uint8Array {
  const b = new Uint8Array(4);
  write32(b, 0, a);
  return b;
}
function spiBytes(spi: number): Uint8Array {
  const b = new Uint8Array(CHILD_SPI_LENGTH);
  write32(b, 0, spi);
  return b;
}
function spiNumber(b: Uint8Array): number {
  return b.length === CHILD_SPI_LENGTH ? ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0 : -1;
}
const notify = (notifyType: number, data: Uint8Array = new Uint8Array(0), protocol = 0, spi: Uint8Array = new Uint8Array(0)): Payload => ({
  type: PayloadType.Notify,
  protocol,
  spi,
  notifyType,
  data,
});
/** The payload variant that can carry type T (IDi and IDr share one). */
type PayloadOf<T extends Payload['type']> = Payload extends infer P ? (P extends { type: infer U } ? (T extends U ? P : never) : never) : never;
/** §1.2: INVALID_KE_PAYLOAD names the group we want, two octets. */
function invalidKe(group: DhGroup): Payload {
  const data = new Uint8Array(DH_GROUP_LENGTH);
  data[0] = dhNumber(group) >>> 8;
  data[1] = dhNumber(group) & 0xff;
  return notify(NotifyType.InvalidKePayload, data);
}
function find<T extends Payload['type']>(payloads: readonly Payload[], type: T): PayloadOf<T> | undefined {
  return payloads.find((p) => p.type === type) as PayloadOf<T> | undefined;
}
function findNotify(payloads: readonly Payload[], type: number): Extract<Payload, { type: PayloadType.Notify }> | undefined {
  return payloads.find((p) => p.type === PayloadType.Notify && p.notifyType === type) as Extract<Payload, { type: PayloadType.Notify }> | undefined;
}
function errorNotify(payloads: readonly Payload[]): number | null {
  for (const p of payloads) if (p.type === PayloadType.Notify && p.notifyType < NOTIFY_ERROR_LIMIT) return p.notifyType;
  return null;
}
function selectorsOf(p: Extract<Payload, { type: PayloadType.TSi | PayloadType.TSr }> | undefined): TrafficSelector[] | null {
  if (p === undefined) return null;
  const out: TrafficSelector[] = [];
  for (const e of p.selectors) {
    const ts = entryToTs(e);
    if (ts !== null) out.push(ts);
  }
  return out;
}
const tsPayload = (type: PayloadType.TSi | PayloadType.TSr, ts: readonly TrafficSelector[]): Payload => ({ type, selectors: ts.map(tsToEntry) });

export class IkeEngine {
  /** Drops and refusals by reason (IkeDrop). */
  readonly drops = new Uint32Array(IKE_DROP_COUNT);
  private readonly peers = new Map<number, PeerEntry>();
  /** IKE SAs by hex of our SPI. */
  private readonly sas = new Map<string, IkeSa>();
  /** Responder SAs between IKE_SA_INIT and IKE_AUTH, by remote address, port and SPIi. */
  private readonly halfOpen = new Map<string, IkeSa>();
  /** Half-open SAs opened with a cookie, per remote address (IPv4 number), bounded by halfOpenPerAddress. */
  private readonly halfOpenByAddress = new Map<number, number>();
  /** Half-open SAs (by halfOpenKey) opened with a cookie, and the remote address each counts for. */
  private readonly cookieHalfOpen = new Map<string, number>();
  /** Every inbound child SPI in use, so a new one is unique. */
  private readonly childSpis = new Set<number>();
  private readonly cookies: CookieJar;
  readonly cookieThreshold: number;
  readonly halfOpenLimit: number;
  readonly halfOpenPerAddress: number;
  private usageCheckAt = 0;

  constructor(
    private readonly sink: IkeSink,
    private readonly options: IkeEngineOptions,
  ) {
    this.cookies = new CookieJar(options.random);
    this.cookieThreshold = options.cookieThreshold ?? DEFAULT_COOKIE_THRESHOLD;
    this.halfOpenLimit = options.halfOpenLimit ?? DEFAULT_HALF_OPEN_LIMIT;
    this.halfOpenPerAddress = options.halfOpenPerAddress ?? DEFAULT_HALF_OPEN_PER_ADDRESS;
  }

  // --- peers -------------------------------------------------------------------------------------

  addPeer(config: IkePeerConfig): void {
    if (this.peers.has(config.onramp)) throw new Error(`IKE peer for onramp ${config.onramp} exists`);
    const local = parseIpv4(config.localAddress);
    const remote = parseIpv4(config.remoteAddress);
    if (local < 0 || remote < 0) throw new Error(`IKE peer ${config.name}: bad address ${config.localAddress} / ${config.remoteAddress}`);
    if (config.mode === 'initiate' && remote === 0) throw new Error(`IKE peer ${config.name}: an initiator needs a remote address`);
    this.peers.set(config.onramp, { config, localAddress: local, remoteAddress: remote, restartAt: config.mode === 'initiate' ? 0 : NEVER, reported: 'unknown' });
  }

  /**
   * A changed peer. Timers, DPD, the replay window and the name apply in place (the running SAs keep going, new
   * timers from their next rekey on); anything the SAs were negotiated with (addresses, identities, PSK, proposals,
   * selectors, mode, encapsulation) ends them and the peer starts over.
   */
  updatePeer(config: IkePeerConfig, now: number): void {
    const peer = this.peers.get(config.onramp);
    if (peer !== undefined && negotiated(peer.config) === negotiated(config)) {
      peer.config = config;
      return;
    }
    this.removePeer(config.onramp, now);
    this.addPeer(config);
  }

  /** Ends the peer's SAs (with a Delete to the peer, best effort) and forgets it. */
  removePeer(onramp: number, now: number): void {
    const peer = this.peers.get(onramp);
    if (peer === undefined) return;
    for (const sa of new Set(this.sas.values())) {
      if (sa.peer === null) {
        // Half-open: the peer is no longer a candidate; with none left the SA goes.
        sa.candidates = sa.candidates.filter((c) => c !== peer);
        if (sa.candidates.length === 0) this.destroy(sa, 'removed');
        continue;
      }
      if (sa.peer !== peer) continue;
      if (sa.state === 'established' || sa.state === 'rekeying') this.sendDeleteIke(sa, now);
      this.destroy(sa, 'removed');
    }
    this.peers.delete(onramp);
  }

  /**
   * Starts an IKE SA to a peer now (mode 'initiate', or an operator's request). A peer that already has one, being
   * set up or up, keeps it: a second IKE SA to the same peer would only race the first (strongSwan's initiate reuses
   * the IKE SA it has too). Losing that SA re-arms the restart (afterLoss).
   */
  initiate(onramp: number, now: number): void {
    const peer = this.peers.get(onramp);
    if (peer === undefined || peer.remoteAddress === 0) return;
    peer.restartAt = NEVER;
    if (this.hasSa(peer)) return;
    const proposal = peer.config.ikeProposals[0];
    if (proposal === undefined || proposal.dh.length === 0) return;
    const sa = this.newSa('initiator', peer, [peer], this.uniqueSpi(), new Uint8Array(SPI_LENGTH), peer.localAddress, IKE_PORT, peer.remoteAddress, IKE_PORT, now);
    sa.ni = this.options.random(NONCE_LENGTH);
    this.sendInit(sa, proposal.dh[0], now);
  }

  // --- receive -----------------------------------------------------------------------------------

  /** One IKE datagram (without the non-ESP marker) from the underlay; addresses as IPv4 numbers. */
  receive(bytes: Uint8Array, localAddress: number, localPort: number, remoteAddress: number, remotePort: number, now: number): IkeDrop {
    const parsed = parseMessage(bytes);
    if (!parsed.ok) {
      if (parsed.error === IkeWireError.UnsupportedCritical) return this.unsupportedCritical(bytes, parsed.payloadType ?? 0, localAddress, localPort, remoteAddress, remotePort);
      return this.drop(parsed.error === IkeWireError.BadVersion ? IkeDrop.BadVersion : IkeDrop.Malformed);
    }
    const r: Received = { message: parsed.value, raw: bytes, localAddress, localPort, remoteAddress, remotePort };
    const h = r.message.header;
    const isResponse = (h.flags & FLAG_RESPONSE) !== 0;
    if (h.exchange === Exchange.IkeSaInit && !isResponse) return this.initRequest(r, now);
    const ours = (h.flags & FLAG_INITIATOR) !== 0 ? h.spiR : h.spiI;
    const sa = this.sas.get(hex(ours));
    if (sa === undefined) return this.drop(IkeDrop.UnknownSpi);
    if (isResponse) return this.response(sa, r, now);
    return this.request(sa, r, now);
  }

  /** §2.5: an IKE_SA_INIT request with an unknown critical payload gets UNSUPPORTED_CRITICAL_PAYLOAD (unprotected, no state). */
  private unsupportedCritical(bytes: Uint8Array, type: number, localAddress: number, localPort: number, remoteAddress: number, remotePort: number): IkeDrop {
    const h = parseHeader(bytes);
    const candidates = this.candidatesFor(localAddress, remoteAddress);
    if (h.ok && h.value.exchange === Exchange.IkeSaInit && (h.value.flags & FLAG_RESPONSE) === 0 && candidates.length > 0) {
      const r: Received = { message: { header: h.value, payloads: [] }, raw: bytes, localAddress, localPort, remoteAddress, remotePort };
      this.sendUnprotected(candidates[0].config.onramp, r, [notify(NotifyType.UnsupportedCriticalPayload, Uint8Array.of(type))]);
    }
    return this.drop(IkeDrop.UnsupportedCritical);
  }

  private drop(reason: IkeDrop): IkeDrop {
    this.drops[reason]++;
    return reason;
  }

  /** A request on an existing SA: the window (§2.3), then SK, then by exchange. */
  private request(sa: IkeSa, r: Received, now: number): IkeDrop {
    const id = r.message.header.messageId;
    if (sa.state === 'init' && sa.role === 'initiator') return this.drop(IkeDrop.UnexpectedExchange);
    if (id === sa.cachedResponseId && sa.cachedResponse !== null) {
      // §2.3: a retransmission is answered from the cache only once it authenticates (so no amplification).
      if (this.open(sa, r) === null) return this.drop(IkeDrop.BadIcv);
      this.send(sa, sa.cachedResponse);
      return this.drop(IkeDrop.Retransmit);
    }
    if (id !== sa.nextPeerRequestId) return this.drop(IkeDrop.OldMessageId);
    const inner = this.open(sa, r);
    if (inner === null) return this.drop(IkeDrop.BadIcv);
    if (!inner.ok) {
      if (inner.error !== IkeWireError.UnsupportedCritical || inner.payloadType === undefined) return this.drop(IkeDrop.Malformed);
      // §2.5: an authenticated request with an unknown critical payload is refused, naming the payload type.
      this.authenticated(sa, r, now);
      sa.nextPeerRequestId = id + 1;
      this.respond(sa, id, r.message.header.exchange, [notify(NotifyType.UnsupportedCriticalPayload, Uint8Array.of(inner.payloadType))]);
      return this.drop(IkeDrop.UnsupportedCritical);
    }
    this.authenticated(sa, r, now);
    sa.nextPeerRequestId = id + 1;
    switch (r.message.header.exchange) {
      case Exchange.IkeAuth:
        if (sa.role !== 'responder' || sa.state !== 'init') return this.drop(IkeDrop.UnexpectedExchange);
        return this.authRequest(sa, r, inner.value, now);
      case Exchange.Informational:
        return this.informationalRequest(sa, id, inner.value, now);
      case Exchange.CreateChildSa:
        if (sa.state === 'deleting') {
          // §2.25: the SA is being deleted (rekeyed away): ask the peer to try again on the new one.
          this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.TemporaryFailure)]);
          return this.drop(IkeDrop.TemporaryFailure);
        }
        if (sa.state !== 'established' && sa.state !== 'rekeying') return this.drop(IkeDrop.UnexpectedExchange);
        return this.createChildRequest(sa, id, inner.value, now);
      default:
        return this.drop(IkeDrop.UnexpectedExchange);
    }
  }

  private response(sa: IkeSa, r: Received, now: number): IkeDrop {
    const out = sa.outstanding;
    const h = r.message.header;
    if (out === null || out.messageId !== h.messageId || out.exchange !== h.exchange) return this.drop(IkeDrop.UnexpectedResponse);
    let payloads: Payload[];
    if (h.exchange === Exchange.IkeSaInit) {
      payloads = r.message.payloads;
    } else {
      const inner = this.open(sa, r);
      if (inner === null) return this.drop(IkeDrop.BadIcv);
      if (!inner.ok) return this.drop(IkeDrop.Malformed);
      payloads = inner.value;
      this.authenticated(sa, r, now);
    }
    sa.outstanding = null;
    sa.nextRequestId = h.messageId + 1;
    out.onResponse(payloads, now, r.raw);
    this.pump(sa, now);
    return IkeDrop.None;
  }

  private open(sa: IkeSa, r: Received): ReturnType<typeof openEncrypted> {
    if (sa.opener === null) return null;
    return openEncrypted(r.raw, r.message, sa.opener);
  }

  /** §2.23: with a NAT, the last authenticated message's address and port are where we answer. */
  private authenticated(sa: IkeSa, r: Received, now: number): void {
    sa.lastInbound = now;
    if (sa.natDetected) {
      sa.remoteAddress = r.remoteAddress;
      sa.remotePort = r.remotePort;
      sa.localPort = r.localPort;
    }
  }

  // --- IKE_SA_INIT, responder --------------------------------------------------------------------

  private candidatesFor(localAddress: number, remoteAddress: number): PeerEntry[] {
    const exact: PeerEntry[] = [];
    const any: PeerEntry[] = [];
    for (const p of this.peers.values()) {
      if (p.localAddress !== 0 && p.localAddress !== localAddress) continue;
      if (p.remoteAddress === remoteAddress) exact.push(p);
      else if (p.remoteAddress === 0) any.push(p);
    }
    return [...exact, ...any];
  }

  private initRequest(r: Received, now: number): IkeDrop {
    const h = r.message.header;
    if (h.messageId !== 0 || h.spiR.some((b) => b !== 0) || (h.flags & FLAG_INITIATOR) === 0) return this.drop(IkeDrop.Malformed);
    const halfOpenKey = `${r.remoteAddress}:${r.remotePort}:${hex(h.spiI)}`;
    const existing = this.halfOpen.get(halfOpenKey);
    if (existing !== undefined) {
      // A retransmitted IKE_SA_INIT (§2.1): the same answer again.
      if (r.raw.length === existing.initRequest.length && r.raw.every((b, i) => b === existing.initRequest[i])) {
        this.send(existing, existing.initResponse);
        return this.drop(IkeDrop.Retransmit);
      }
      return this.drop(IkeDrop.OldMessageId);
    }
    const candidates = this.candidatesFor(r.localAddress, r.remoteAddress);
    if (candidates.length === 0) return this.drop(IkeDrop.UnknownPeer);
    const onramp = candidates[0].config.onramp;
    const sa = find(r.message.payloads, PayloadType.SA);
    const ke = find(r.message.payloads, PayloadType.KE);
    const nonce = find(r.message.payloads, PayloadType.Nonce);
    if (sa === undefined || ke === undefined || nonce === undefined) return this.drop(IkeDrop.Malformed);
    if (nonce.data.length < NONCE_MIN_LENGTH || nonce.data.length > NONCE_MAX_LENGTH) return this.drop(IkeDrop.Malformed);
    if (this.halfOpen.size >= this.halfOpenLimit) return this.drop(IkeDrop.HalfOpenLimit);
    const address = addressBytes(r.remoteAddress);
    const withCookie = this.halfOpen.size >= this.cookieThreshold;
    if (withCookie) {
      // §2.6: the cookie must be the first payload.
      const first = r.message.payloads[0];
      const ok = first.type === PayloadType.Notify && first.notifyType === NotifyType.Cookie && this.cookies.valid(first.data, nonce.data, address, h.spiI, now);
      if (!ok) {
        const cookie = this.cookies.cookie(nonce.data, address, h.spiI, now);
        this.sendUnprotected(onramp, r, [notify(NotifyType.Cookie, cookie)]);
        return this.drop(IkeDrop.CookieRequired);
      }
      if ((this.halfOpenByAddress.get(r.remoteAddress) ?? 0) >= this.halfOpenPerAddress) return this.drop(IkeDrop.HalfOpenLimit);
    }
    // The first candidate whose proposals accept the offer decides; candidates that cannot are dropped.
    let selection: ReturnType<typeof selectIke> = { ok: false, invalidKe: null };
    const fitting: PeerEntry[] = [];
    for (const c of candidates) {
      const s = selectIke(sa.proposals, c.config.ikeProposals, ke.group);
      if (s.ok) {
        if (!selection.ok) selection = s;
        fitting.push(c);
      } else if (!selection.ok && selection.invalidKe === null) selection = s;
    }
    if (!selection.ok) {
      if (selection.invalidKe !== null) {
        this.sendUnprotected(onramp, r, [invalidKe(selection.invalidKe)]);
        return this.drop(IkeDrop.InvalidKe);
      }
      this.sendUnprotected(onramp, r, [notify(NotifyType.NoProposalChosen)]);
      return this.drop(IkeDrop.NoProposal);
    }
    const suite = selection.suite;
    const dh = dhStart(suite.dh);
    const shared = dh.computeShared(ke.data);
    if (shared === null) {
      this.sendUnprotected(onramp, r, [notify(NotifyType.InvalidSyntax)]);
      return this.drop(IkeDrop.BadKe);
    }
    const ike = this.newSa('responder', null, fitting, h.spiI, this.uniqueSpi(), r.localAddress, r.localPort, r.remoteAddress, r.remotePort, now);
    ike.ni = nonce.data;
    ike.nr = this.options.random(NONCE_LENGTH);
    ike.initRequest = r.raw;
    ike.nextPeerRequestId = 1;
    ike.halfOpenKey = halfOpenKey;
    this.halfOpen.set(halfOpenKey, ike);
    if (withCookie) {
      this.cookieHalfOpen.set(halfOpenKey, r.remoteAddress);
      this.halfOpenByAddress.set(r.remoteAddress, (this.halfOpenByAddress.get(r.remoteAddress) ?? 0) + 1);
    }
    // §2.23 NAT detection: our view of their source and of our destination against their hashes.
    const zero = new Uint8Array(SPI_LENGTH);
    const srcHash = natDetectionHash(h.spiI, zero, address, r.remotePort);
    const dstHash = natDetectionHash(h.spiI, zero, addressBytes(r.localAddress), r.localPort);
    const srcNotifies = r.message.payloads.filter((p) => p.type === PayloadType.Notify && p.notifyType === NotifyType.NatDetectionSourceIp);
    const dstNotify = findNotify(r.message.payloads, NotifyType.NatDetectionDestinationIp);
    const natSupported = srcNotifies.length > 0 && dstNotify !== undefined;
    const remoteNat = natSupported && !srcNotifies.some((p) => p.type === PayloadType.Notify && authEqual(p.data, srcHash));
    const localNat = natSupported && !authEqual(dstNotify.data, dstHash);
    ike.natDetected = remoteNat || localNat || fitting.some((c) => c.config.forceEncapsulation);
    this.setKeys(ike, suite, deriveIkeKeys(suite, ike.ni, ike.nr, shared, ike.spiI, ike.spiR));
    const response: Payload[] = [
      { type: PayloadType.SA, proposals: [selection.answer] },
      { type: PayloadType.KE, group: dhNumber(suite.dh), data: dh.publicValue },
      { type: PayloadType.Nonce, data: ike.nr },
    ];
    if (natSupported) {
      response.push(notify(NotifyType.NatDetectionSourceIp, natDetectionHash(ike.spiI, ike.spiR, addressBytes(r.localAddress), r.localPort)));
      response.push(notify(NotifyType.NatDetectionDestinationIp, natDetectionHash(ike.spiI, ike.spiR, address, r.remotePort)));
    }
    ike.initResponse = buildMessage({ spiI: ike.spiI, spiR: ike.spiR, exchange: Exchange.IkeSaInit, flags: FLAG_RESPONSE, messageId: 0 }, response);
    this.send(ike, ike.initResponse);
    return IkeDrop.None;
  }

  /** An unencrypted answer to an IKE_SA_INIT we keep no state for (COOKIE, INVALID_KE, NO_PROPOSAL_CHOSEN). */
  private sendUnprotected(onramp: number, r: Received, payloads: Payload[]): void {
    const h = r.message.header;
    const bytes = buildMessage({ spiI: h.spiI, spiR: new Uint8Array(SPI_LENGTH), exchange: Exchange.IkeSaInit, flags: FLAG_RESPONSE, messageId: 0 }, payloads);
    this.sink.sendIke(onramp, bytes, r.localPort, r.remoteAddress, r.remotePort);
  }

  // --- IKE_AUTH, responder -----------------------------------------------------------------------

  private authRequest(sa: IkeSa, r: Received, payloads: Payload[], now: number): IkeDrop {
    const idi = find(payloads, PayloadType.IDi);
    const auth = find(payloads, PayloadType.AUTH);
    const suite = sa.suite as IkeSuite;
    const keys = sa.keys as NonNullable<IkeSa['keys']>;
    if (idi === undefined || auth === undefined) {
      this.respond(sa, r.message.header.messageId, Exchange.IkeAuth, [notify(NotifyType.InvalidSyntax)]);
      this.destroy(sa, 'malformed IKE_AUTH');
      return this.drop(IkeDrop.Malformed);
    }
    const peer = sa.candidates.find((c) => identityMatches(c.config.remoteId, idi.idType, idi.data));
    const expected = peer === undefined ? null : pskAuth(suite.prf, peer.config.psk, sa.initRequest, sa.nr, keys.skPi, idBody(idi.idType, idi.data));
    if (peer === undefined || expected === null || auth.method !== AUTH_SHARED_KEY_MIC || !authEqual(auth.data, expected)) {
      // §2.21.2: AUTHENTICATION_FAILED, and nothing of this SA is kept.
      this.respond(sa, r.message.header.messageId, Exchange.IkeAuth, [notify(NotifyType.AuthenticationFailed)]);
      this.destroy(sa, 'authentication failed');
      if (peer !== undefined) {
        // Health learns why a peer is not up (once; an SA of the peer that is up keeps it up).
        sa.peer = peer;
        this.afterLoss(sa, now, 'authentication failed');
      }
      return this.drop(peer === undefined ? IkeDrop.UnknownPeer : IkeDrop.AuthFailed);
    }
    sa.peer = peer;
    sa.candidates = [peer];
    if (findNotify(payloads, NotifyType.InitialContact) !== undefined) this.initialContact(sa);
    const ours = identityToWire(peer.config.localId);
    if (ours === null) {
      this.destroy(sa, 'bad local identity');
      return this.drop(IkeDrop.UnknownPeer);
    }
    const response: Payload[] = [
      { type: PayloadType.IDr, idType: ours.idType, data: ours.data },
      { type: PayloadType.AUTH, method: AUTH_SHARED_KEY_MIC, data: pskAuth(suite.prf, peer.config.psk, sa.initResponse, sa.ni, keys.skPr, idBody(ours.idType, ours.data)) },
    ];
    this.established(sa, now);
    const child = this.acceptChild(sa, payloads, null, sa.ni, sa.nr, false, now);
    if (typeof child === 'number') response.push(notify(child));
    else response.push(...child.payloads);
    this.respond(sa, r.message.header.messageId, Exchange.IkeAuth, response);
    // Up means traffic can flow: only with a child (the initiator ends an IKE SA that has none).
    if (typeof child !== 'number') {
      child.install();
      this.markUp(peer);
    }
    return IkeDrop.None;
  }

  /**
   * The responder's side of a child SA (IKE_AUTH's or a CREATE_CHILD_SA's): ESP proposal, traffic selectors,
   * keys. Returns the response payloads and an install() to run once the response is sent, or an error notify.
   */
  private acceptChild(
    sa: IkeSa,
    payloads: Payload[],
    ke: Extract<Payload, { type: PayloadType.KE }> | null,
    ni: Uint8Array,
    nr: Uint8Array,
    inCreateChild: boolean,
    now: number,
  ): { payloads: Payload[]; install: () => ChildState } | number {
    const peer = sa.peer as PeerEntry;
    const offered = find(payloads, PayloadType.SA);
    const tsi = selectorsOf(find(payloads, PayloadType.TSi));
    const tsr = selectorsOf(find(payloads, PayloadType.TSr));
    if (offered === undefined || tsi === null || tsr === null) return NotifyType.InvalidSyntax;
    const selection = selectEsp(offered.proposals, peer.config.espProposals, ke === null ? null : ke.group, inCreateChild);
    if (!selection.ok) {
      this.drops[IkeDrop.NoProposal]++;
      return NotifyType.NoProposalChosen;
    }
    const narrowedI = narrowSelectors(tsi, peer.config.remoteTs);
    const narrowedR = narrowSelectors(tsr, peer.config.localTs);
    if (narrowedI.length === 0 || narrowedR.length === 0) {
      this.drops[IkeDrop.TsUnacceptable]++;
      return NotifyType.TsUnacceptable;
    }
    let shared: Uint8Array | null = null;
    const out: Payload[] = [];
    const inSpi = this.uniqueChildSpi();
    out.push({ type: PayloadType.SA, proposals: [espAnswer(selection.number, spiBytes(inSpi), selection.suite)] });
    if (inCreateChild) out.push({ type: PayloadType.Nonce, data: nr });
    if (selection.suite.dh !== null && ke !== null) {
      const dh = dhStart(selection.suite.dh);
      shared = dh.computeShared(ke.data);
      if (shared === null) {
        this.childSpis.delete(inSpi);
        this.drops[IkeDrop.BadKe]++;
        return NotifyType.InvalidSyntax;
      }
      out.push({ type: PayloadType.KE, group: dhNumber(selection.suite.dh), data: dh.publicValue });
    }
    out.push(tsPayload(PayloadType.TSi, narrowedI), tsPayload(PayloadType.TSr, narrowedR));
    const install = (): ChildState => this.installChild(sa, false, inSpi, selection.peerSpi, selection.suite, ni, nr, shared, narrowedR, narrowedI, now);
    return { payloads: out, install };
  }

  /** Keys (§2.17) from the exchange's nonces; `weInitiated`: we were the initiator of the exchange that made it. */
  private installChild(
    sa: IkeSa,
    weInitiated: boolean,
    inSpi: number,
    outSpi: number,
    suite: EspSuite,
    ni: Uint8Array,
    nr: Uint8Array,
    shared: Uint8Array | null,
    localTs: TrafficSelector[],
    remoteTs: TrafficSelector[],
    now: number,
  ): ChildState {
    const peer = sa.peer as PeerEntry;
    const ikeSuite = sa.suite as IkeSuite;
    const keys = deriveChildKeys(ikeSuite.prf, (sa.keys as NonNullable<IkeSa['keys']>).skD, suite, ni, nr, shared);
    const inbound = weInitiated ? keys.responderToInitiator : keys.initiatorToResponder;
    const outbound = weInitiated ? keys.initiatorToResponder : keys.responderToInitiator;
    const life = peer.config.childLifetime;
    const child: ChildState = {
      inSpi,
      outSpi,
      suite,
      localTs,
      remoteTs,
      createdAt: now,
      rekeyAt: now + this.jittered(life.rekeySeconds, life.jitterSeconds),
      expireAt: now + life.lifetimeSeconds * MS,
      rekeying: false,
      superseded: false,
      collision: null,
    };
    sa.children.push(child);
    const udp = sa.natDetected;
    this.sink.installChild({
      onramp: peer.config.onramp,
      inbound: { spi: inSpi, encryption: suite.encryption, integrity: suite.integrity, encryptionKey: inbound.encryptionKey, integrityKey: inbound.integrityKey },
      outbound: { spi: outSpi, encryption: suite.encryption, integrity: suite.integrity, encryptionKey: outbound.encryptionKey, integrityKey: outbound.integrityKey },
      path: { localAddress: sa.localAddress, remoteAddress: sa.remoteAddress, localPort: udp ? sa.localPort : 0, remotePort: udp ? sa.remotePort : 0 },
      replayWindow: peer.config.replayWindow,
      selectors: { local: localTs, remote: remoteTs },
      createdAt: now,
    });
    return child;
  }

  // --- IKE_SA_INIT and IKE_AUTH, initiator ---------------------------------------------------------

  private sendInit(sa: IkeSa, group: NonNullable<ReturnType<typeof dhGroupOf>>, now: number): void {
    const peer = sa.peer as PeerEntry;
    sa.dh = dhStart(group);
    const payloads: Payload[] = [];
    if (sa.cookie !== null) payloads.push(notify(NotifyType.Cookie, sa.cookie));
    payloads.push(
      { type: PayloadType.SA, proposals: ikeProposalsToWire(peer.config.ikeProposals, new Uint8Array(0)) },
      { type: PayloadType.KE, group: dhNumber(group), data: sa.dh.publicValue },
      { type: PayloadType.Nonce, data: sa.ni },
    );
    const zero = new Uint8Array(SPI_LENGTH);
    // With forced encapsulation, a source hash that cannot match makes the responder see a NAT (as strongSwan's kernel-libipsec does).
    const src = peer.config.forceEncapsulation ? this.options.random(20) : natDetectionHash(sa.spiI, zero, addressBytes(sa.localAddress), sa.localPort);
    payloads.push(notify(NotifyType.NatDetectionSourceIp, src), notify(NotifyType.NatDetectionDestinationIp, natDetectionHash(sa.spiI, zero, addressBytes(sa.remoteAddress), sa.remotePort)));
    sa.initRequest = buildMessage({ spiI: sa.spiI, spiR: zero, exchange: Exchange.IkeSaInit, flags: FLAG_INITIATOR, messageId: 0 }, payloads);
    this.startRequest(sa, Exchange.IkeSaInit, sa.initRequest, 'init', now, (p, t, raw) => this.initResponse(sa, group, p, raw, t));
  }

  private initResponse(sa: IkeSa, group: NonNullable<ReturnType<typeof dhGroupOf>>, payloads: Payload[], raw: Uint8Array, now: number): void {
    const peer = sa.peer as PeerEntry;
    const parsedHeader = parseMessage(raw);
    const spiR = parsedHeader.ok ? parsedHeader.value.header.spiR : new Uint8Array(SPI_LENGTH);
    const cookie = findNotify(payloads, NotifyType.Cookie);
    if (cookie !== undefined && sa.cookie === null) {
      sa.cookie = cookie.data;
      sa.nextRequestId = 0;
      this.sendInit(sa, group, now);
      return;
    }
    const invalidKe = findNotify(payloads, NotifyType.InvalidKePayload);
    if (invalidKe !== undefined && invalidKe.data.length === DH_GROUP_LENGTH) {
      const asked = dhGroupOf((invalidKe.data[0] << 8) | invalidKe.data[1]);
      if (asked !== null && asked !== group && peer.config.ikeProposals.some((p) => p.dh.includes(asked))) {
        sa.nextRequestId = 0;
        this.sendInit(sa, asked, now);
        return;
      }
    }
    const error = errorNotify(payloads);
    const offered = find(payloads, PayloadType.SA);
    const ke = find(payloads, PayloadType.KE);
    const nonce = find(payloads, PayloadType.Nonce);
    if (error !== null || offered === undefined || ke === undefined || nonce === undefined || spiR.every((b) => b === 0)) {
      this.drops[error !== null ? IkeDrop.PeerError : IkeDrop.Malformed]++;
      this.fail(sa, error !== null ? `IKE_SA_INIT refused (notify ${error})` : 'malformed IKE_SA_INIT response', now);
      return;
    }
    const selection = offered.proposals.length === 1 ? selectIke(offered.proposals, peer.config.ikeProposals, ke.group) : null;
    if (selection === null || !selection.ok || selection.suite.dh !== group || nonce.data.length < NONCE_MIN_LENGTH || nonce.data.length > NONCE_MAX_LENGTH) {
      this.drops[IkeDrop.NoProposal]++;
      this.fail(sa, 'IKE_SA_INIT response proposal not ours', now);
      return;
    }
    const shared = (sa.dh as NonNullable<IkeSa['dh']>).computeShared(ke.data);
    if (shared === null) {
      this.drops[IkeDrop.BadKe]++;
      this.fail(sa, 'bad KE in IKE_SA_INIT response', now);
      return;
    }
    sa.spiR = spiR.slice();
    sa.nr = nonce.data;
    sa.initResponse = raw;
    const src = findNotify(payloads, NotifyType.NatDetectionSourceIp);
    const dst = findNotify(payloads, NotifyType.NatDetectionDestinationIp);
    const remoteNat = src !== undefined && !authEqual(src.data, natDetectionHash(sa.spiI, sa.spiR, addressBytes(sa.remoteAddress), sa.remotePort));
    const localNat = dst !== undefined && !authEqual(dst.data, natDetectionHash(sa.spiI, sa.spiR, addressBytes(sa.localAddress), sa.localPort));
    sa.natDetected = remoteNat || localNat || (src !== undefined && peer.config.forceEncapsulation);
    if (sa.natDetected) {
      // §2.23: everything after IKE_SA_INIT moves to port 4500.
      sa.localPort = NAT_T_PORT;
      sa.remotePort = NAT_T_PORT;
    }
    this.setKeys(sa, selection.suite, deriveIkeKeys(selection.suite, sa.ni, sa.nr, shared, sa.spiI, sa.spiR));
    this.sendAuth(sa, now);
  }

  private sendAuth(sa: IkeSa, now: number): void {
    const peer = sa.peer as PeerEntry;
    const suite = sa.suite as IkeSuite;
    const keys = sa.keys as NonNullable<IkeSa['keys']>;
    const ours = identityToWire(peer.config.localId);
    if (ours === null) {
      this.fail(sa, 'bad local identity', now);
      return;
    }
    const inSpi = this.uniqueChildSpi();
    const payloads: Payload[] = [
      { type: PayloadType.IDi, idType: ours.idType, data: ours.data },
      { type: PayloadType.AUTH, method: AUTH_SHARED_KEY_MIC, data: pskAuth(suite.prf, peer.config.psk, sa.initRequest, sa.nr, keys.skPi, idBody(ours.idType, ours.data)) },
      notify(NotifyType.InitialContact),
      { type: PayloadType.SA, proposals: espProposalsToWire(peer.config.espProposals, spiBytes(inSpi), false) },
      tsPayload(PayloadType.TSi, peer.config.localTs),
      tsPayload(PayloadType.TSr, peer.config.remoteTs),
    ];
    sa.state = 'auth';
    this.encryptedRequest(sa, Exchange.IkeAuth, payloads, 'auth', now, (p, t) => this.authResponse(sa, inSpi, p, t));
  }

  private authResponse(sa: IkeSa, inSpi: number, payloads: Payload[], now: number): void {
    const peer = sa.peer as PeerEntry;
    const suite = sa.suite as IkeSuite;
    const keys = sa.keys as NonNullable<IkeSa['keys']>;
    const idr = find(payloads, PayloadType.IDr);
    const auth = find(payloads, PayloadType.AUTH);
    if (idr === undefined || auth === undefined) {
      this.childSpis.delete(inSpi);
      const error = errorNotify(payloads);
      this.drops[error !== null ? IkeDrop.PeerError : IkeDrop.Malformed]++;
      this.fail(sa, error === NotifyType.AuthenticationFailed ? 'peer: authentication failed' : `IKE_AUTH refused (notify ${error})`, now);
      return;
    }
    const expected = pskAuth(suite.prf, peer.config.psk, sa.initResponse, sa.ni, keys.skPr, idBody(idr.idType, idr.data));
    if (!identityMatches(peer.config.remoteId, idr.idType, idr.data) || auth.method !== AUTH_SHARED_KEY_MIC || !authEqual(auth.data, expected)) {
      this.childSpis.delete(inSpi);
      this.drops[IkeDrop.AuthFailed]++;
      // §2.21.2: tell the responder in an INFORMATIONAL (best effort), then forget the SA.
      this.encryptedRequest(sa, Exchange.Informational, [notify(NotifyType.AuthenticationFailed)], 'delete-ike', now, () => {});
      this.fail(sa, 'responder authentication failed', now);
      return;
    }
    this.established(sa, now);
    const child = this.completeChild(sa, inSpi, payloads, null, sa.ni, sa.nr, now);
    if (child === null) {
      // A route-based tunnel without a child carries nothing: end the IKE SA, try again later.
      this.childSpis.delete(inSpi);
      this.sendDeleteIke(sa, now);
      this.fail(sa, 'no child SA (proposal or selectors refused)', now);
      return;
    }
    this.markUp(peer);
  }

  /** The initiator's side of a child SA answer: the proposal must be one of ours, the selectors within ours. */
  private completeChild(
    sa: IkeSa,
    inSpi: number,
    payloads: Payload[],
    dh: IkeSa['dh'],
    ni: Uint8Array,
    nr: Uint8Array,
    now: number,
  ): ChildState | null {
    const peer = sa.peer as PeerEntry;
    const answer = find(payloads, PayloadType.SA);
    const tsi = selectorsOf(find(payloads, PayloadType.TSi));
    const tsr = selectorsOf(find(payloads, PayloadType.TSr));
    if (answer === undefined || answer.proposals.length !== 1 || tsi === null || tsr === null) {
      this.drops[errorNotify(payloads) !== null ? IkeDrop.PeerError : IkeDrop.Malformed]++;
      return null;
    }
    const ke = find(payloads, PayloadType.KE);
    const selection = selectEsp(answer.proposals, peer.config.espProposals, ke === undefined ? null : ke.group, dh !== null);
    if (!selection.ok || tsi.length === 0 || tsr.length === 0 || !selectorsWithin(tsi, peer.config.localTs) || !selectorsWithin(tsr, peer.config.remoteTs)) {
      this.drops[IkeDrop.NoProposal]++;
      return null;
    }
    let shared: Uint8Array | null = null;
    if (dh !== null) {
      if (ke === undefined || selection.suite.dh !== dh.group) {
        this.drops[IkeDrop.NoProposal]++;
        return null;
      }
      shared = dh.computeShared(ke.data);
      if (shared === null) {
        this.drops[IkeDrop.BadKe]++;
        return null;
      }
    }
    return this.installChild(sa, true, inSpi, selection.peerSpi, selection.suite, ni, nr, shared, tsi, tsr, now);
  }

  // --- INFORMATIONAL -------------------------------------------------------------------------------

  private informationalRequest(sa: IkeSa, id: number, payloads: Payload[], now: number): IkeDrop {
    const response: Payload[] = [];
    let deleteIke = false;
    for (const p of payloads) {
      if (p.type !== PayloadType.Delete) continue;
      if (p.protocol === ProtocolId.IKE) {
        deleteIke = true;
      } else if (p.protocol === ProtocolId.ESP) {
        // §1.4.1: the SPIs are the sender's inbound ones (our outbound); we answer with ours.
        const ours: Uint8Array[] = [];
        for (const spi of p.spis) {
          const i = sa.children.findIndex((c) => c.outSpi === spiNumber(spi));
          if (i < 0) continue;
          ours.push(spiBytes(sa.children[i].inSpi));
          this.removeChild(sa, i);
        }
        if (ours.length > 0) response.push({ type: PayloadType.Delete, protocol: ProtocolId.ESP, spiSize: CHILD_SPI_LENGTH, spis: ours });
      }
    }
    // §2.21.2: an initiator that could not verify our AUTH says so in an INFORMATIONAL; the SA is void.
    if (deleteIke || findNotify(payloads, NotifyType.AuthenticationFailed) !== undefined) {
      this.respond(sa, id, Exchange.Informational, []);
      this.destroy(sa, 'deleted by peer');
      if (sa.replacedBy === null) this.afterLoss(sa, now);
      return IkeDrop.None;
    }
    if (sa.state === 'established' || sa.state === 'rekeying') this.respond(sa, id, Exchange.Informational, response);
    else this.respond(sa, id, Exchange.Informational, []);
    return IkeDrop.None;
  }

  private sendDeleteIke(sa: IkeSa, now: number): void {
    sa.outstanding = null;
    sa.queue = [];
    this.encryptedRequest(sa, Exchange.Informational, [{ type: PayloadType.Delete, protocol: ProtocolId.IKE, spiSize: 0, spis: [] }], 'delete-ike', now, () => {});
  }

  /** INITIAL_CONTACT (§2.4): the peer has no other IKE SA with us; ours with its identity are stale. */
  private initialContact(sa: IkeSa): void {
    for (const other of [...this.sas.values()]) {
      if (other === sa || other.peer !== sa.peer) continue;
      this.destroy(other, 'initial contact');
    }
  }

  // --- CREATE_CHILD_SA -----------------------------------------------------------------------------

  private createChildRequest(sa: IkeSa, id: number, payloads: Payload[], now: number): IkeDrop {
    const peer = sa.peer as PeerEntry;
    const offered = find(payloads, PayloadType.SA);
    const nonce = find(payloads, PayloadType.Nonce);
    const ke = find(payloads, PayloadType.KE) ?? null;
    if (offered === undefined || nonce === undefined || nonce.data.length < NONCE_MIN_LENGTH || nonce.data.length > NONCE_MAX_LENGTH) {
      this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.InvalidSyntax)]);
      return this.drop(IkeDrop.Malformed);
    }
    const nr = this.options.random(NONCE_LENGTH);
    if (offered.proposals.some((p) => p.protocol === ProtocolId.IKE)) return this.ikeRekeyRequest(sa, id, offered.proposals, nonce.data, nr, ke, now);
    const rekey = findNotify(payloads, NotifyType.RekeySa);
    let old: ChildState | undefined;
    if (rekey !== undefined) {
      old = sa.children.find((c) => c.outSpi === spiNumber(rekey.spi) && !c.superseded);
      if (old === undefined) {
        this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.ChildSaNotFound, new Uint8Array(0), ProtocolId.ESP, rekey.spi)]);
        return this.drop(IkeDrop.UnknownSpi);
      }
    }
    // §2.25: no new or rekeyed child while our IKE SA rekey is in flight (the children are about to move).
    if (sa.state === 'rekeying') {
      this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.TemporaryFailure)]);
      return this.drop(IkeDrop.TemporaryFailure);
    }
    const child = this.acceptChild(sa, payloads, ke, nonce.data, nr, true, now);
    if (typeof child === 'number') {
      if (child === NotifyType.NoProposalChosen && ke !== null) {
        const s = selectEsp(offered.proposals, peer.config.espProposals, ke.group, true);
        if (!s.ok && s.invalidKe !== null) {
          this.respond(sa, id, Exchange.CreateChildSa, [invalidKe(s.invalidKe)]);
          return this.drop(IkeDrop.InvalidKe);
        }
      }
      this.respond(sa, id, Exchange.CreateChildSa, [notify(child)]);
      return IkeDrop.NoProposal;
    }
    this.respond(sa, id, Exchange.CreateChildSa, child.payloads);
    child.install();
    if (old !== undefined) {
      // Ours in flight too: a collision (§2.8.1), settled when our response arrives. Else the initiator deletes the old one.
      if (old.rekeying) old.collision = min(nonce.data, nr);
      else old.superseded = true;
    }
    return IkeDrop.None;
  }

  private ikeRekeyRequest(sa: IkeSa, id: number, offered: Proposal[], ni: Uint8Array, nr: Uint8Array, ke: Extract<Payload, { type: PayloadType.KE }> | null, now: number): IkeDrop {
    const peer = sa.peer as PeerEntry;
    // §2.25: not while one of our child rekeys is in flight. Our own IKE rekey in flight is a collision (§2.8.2).
    if (sa.children.some((c) => c.rekeying) || sa.ikeCollision !== null) {
      this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.TemporaryFailure)]);
      return this.drop(IkeDrop.TemporaryFailure);
    }
    const collision = sa.state === 'rekeying';
    if (ke === null) {
      this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.InvalidSyntax)]);
      return this.drop(IkeDrop.Malformed);
    }
    const selection = selectIke(offered, peer.config.ikeProposals, ke.group);
    const spiI = offered.find((p) => p.protocol === ProtocolId.IKE && selection.ok && p.number === selection.answer.number)?.spi;
    if (!selection.ok || spiI === undefined || spiI.length !== SPI_LENGTH) {
      if (!selection.ok && selection.invalidKe !== null) {
        this.respond(sa, id, Exchange.CreateChildSa, [invalidKe(selection.invalidKe)]);
        return this.drop(IkeDrop.InvalidKe);
      }
      this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.NoProposalChosen)]);
      return this.drop(IkeDrop.NoProposal);
    }
    const dh = dhStart(selection.suite.dh);
    const shared = dh.computeShared(ke.data);
    if (shared === null) {
      this.respond(sa, id, Exchange.CreateChildSa, [notify(NotifyType.InvalidSyntax)]);
      return this.drop(IkeDrop.BadKe);
    }
    const spiR = this.uniqueSpi();
    const fresh = this.rekeyedSa(sa, 'responder', spiI, spiR, selection.suite, ni, nr, shared, now, !collision);
    this.respond(sa, id, Exchange.CreateChildSa, [
      { type: PayloadType.SA, proposals: [ikeAnswer(selection.answer.number, spiR, selection.suite)] },
      { type: PayloadType.Nonce, data: nr },
      { type: PayloadType.KE, group: dhNumber(selection.suite.dh), data: dh.publicValue },
    ]);
    if (collision) {
      sa.ikeCollision = { sa: fresh, lowest: min(ni, nr) };
      return IkeDrop.None;
    }
    // The initiator deletes the old SA (§2.18); should that never come, it lingers a while and goes.
    sa.replacedBy = fresh;
    sa.state = 'deleting';
    sa.expireAt = now + HALF_OPEN_TIMEOUT_MS;
    return IkeDrop.None;
  }

  /** The new IKE SA of a rekey (§2.18): keys from the old SK_d, the children move over (unless a collision is pending). */
  private rekeyedSa(
    old: IkeSa,
    role: IkeSa['role'],
    spiI: Uint8Array,
    spiR: Uint8Array,
    suite: IkeSuite,
    ni: Uint8Array,
    nr: Uint8Array,
    shared: Uint8Array,
    now: number,
    moveChildren = true,
  ): IkeSa {
    const oldKeys = old.keys as NonNullable<IkeSa['keys']>;
    const ours = role === 'initiator' ? spiI : spiR;
    const fresh = this.newSa(role, old.peer, old.candidates, spiI, spiR, old.localAddress, old.localPort, old.remoteAddress, old.remotePort, now, ours);
    fresh.natDetected = old.natDetected;
    fresh.ni = ni;
    fresh.nr = nr;
    this.setKeys(fresh, suite, deriveRekeyedIkeKeys(suite, (old.suite as IkeSuite).prf, oldKeys.skD, ni, nr, shared, spiI, spiR));
    if (moveChildren) {
      fresh.children = old.children;
      old.children = [];
    }
    this.established(fresh, now);
    return fresh;
  }

  /** Ours: rekey a child (make-before-break: the old one is deleted once the new one is installed). */
  private rekeyChild(sa: IkeSa, child: ChildState, now: number, group: DhGroup | null = null): void {
    const peer = sa.peer as PeerEntry;
    child.rekeying = true;
    const inSpi = this.uniqueChildSpi();
    const ni = this.options.random(NONCE_LENGTH);
    const pfs = group ?? peer.config.espProposals[0]?.dh[0] ?? null;
    const dh = pfs === null ? null : dhStart(pfs);
    const payloads: Payload[] = [
      notify(NotifyType.RekeySa, new Uint8Array(0), ProtocolId.ESP, spiBytes(child.inSpi)),
      { type: PayloadType.SA, proposals: espProposalsToWire(peer.config.espProposals, spiBytes(inSpi), true) },
      { type: PayloadType.Nonce, data: ni },
    ];
    if (dh !== null) payloads.push({ type: PayloadType.KE, group: dhNumber(dh.group), data: dh.publicValue });
    payloads.push(tsPayload(PayloadType.TSi, child.localTs), tsPayload(PayloadType.TSr, child.remoteTs));
    this.encryptedRequest(sa, Exchange.CreateChildSa, payloads, 'rekey-child', now, (p, t) => {
      const asked = findNotify(p, NotifyType.InvalidKePayload);
      const askedGroup = asked !== undefined && asked.data.length === DH_GROUP_LENGTH ? dhGroupOf((asked.data[0] << 8) | asked.data[1]) : null;
      if (askedGroup !== null && askedGroup !== pfs && peer.config.espProposals.some((e) => e.dh.includes(askedGroup)) && sa.children.includes(child)) {
        // §1.3: the responder wants another of our PFS groups; again at once with that one.
        this.childSpis.delete(inSpi);
        child.rekeying = false;
        this.rekeyChild(sa, child, t, askedGroup);
        return;
      }
      const nonce = find(p, PayloadType.Nonce);
      const fresh = nonce === undefined ? null : this.completeChild(sa, inSpi, p, dh, ni, nonce.data, t);
      if (fresh === null) {
        this.childSpis.delete(inSpi);
        child.rekeying = false;
        child.collision = null;
        // TEMPORARY_FAILURE or a refusal: try again a little later (randomly, so two peers do not collide
        // again, §2.25), before the hard lifetime.
        child.rekeyAt = Math.min(child.expireAt, t + this.retryDelay());
        return;
      }
      child.rekeying = false;
      const collision = child.collision;
      child.collision = null;
      if (!sa.children.includes(child)) return;
      // §2.8.1: after a collision both new children exist; the exchange holding the lowest of the four nonces is
      // redundant and its initiator deletes what it made. The survivor's initiator deletes the old child.
      if (collision !== null && lessThan(min(ni, nonce!.data), collision)) {
        child.superseded = true;
        this.deleteChild(sa, fresh, t);
        return;
      }
      this.deleteChild(sa, child, t);
    });
  }

  /** Ours: rekey the IKE SA (§2.18), children move to the new SA, then the old one is deleted. */
  private rekeyIke(sa: IkeSa, now: number): void {
    const peer = sa.peer as PeerEntry;
    const suite = sa.suite as IkeSuite;
    sa.state = 'rekeying';
    const spiI = this.uniqueSpi();
    const ni = this.options.random(NONCE_LENGTH);
    const dh = dhStart(suite.dh);
    const proposals = ikeProposalsToWire(peer.config.ikeProposals, spiI);
    const payloads: Payload[] = [
      { type: PayloadType.SA, proposals },
      { type: PayloadType.Nonce, data: ni },
      { type: PayloadType.KE, group: dhNumber(suite.dh), data: dh.publicValue },
    ];
    sa.reservedKey = hex(spiI);
    this.sas.set(sa.reservedKey, sa); // reserved until the new SA takes it
    this.encryptedRequest(sa, Exchange.CreateChildSa, payloads, 'rekey-ike', now, (p, t) => {
      this.sas.delete(hex(spiI));
      sa.reservedKey = null;
      const answer = find(p, PayloadType.SA);
      const nonce = find(p, PayloadType.Nonce);
      const ke = find(p, PayloadType.KE);
      const selection = answer !== undefined && answer.proposals.length === 1 && ke !== undefined ? selectIke(answer.proposals, peer.config.ikeProposals, ke.group) : null;
      const spiR = answer?.proposals[0]?.spi;
      const shared = selection?.ok && ke !== undefined && selection.suite.dh === dh.group ? dh.computeShared(ke.data) : null;
      if (selection === null || !selection.ok || nonce === undefined || spiR === undefined || spiR.length !== SPI_LENGTH || shared === null) {
        if (errorNotify(p) === null) this.drops[IkeDrop.Malformed]++;
        const pending = sa.ikeCollision;
        sa.ikeCollision = null;
        if (pending !== null && this.sas.get(pending.sa.key) === pending.sa) {
          // Ours failed, the peer's rekey stands: the children go to its SA, the peer deletes the old one.
          pending.sa.children = sa.children;
          sa.children = [];
          sa.replacedBy = pending.sa;
          sa.state = 'deleting';
          sa.expireAt = t + HALF_OPEN_TIMEOUT_MS;
          return;
        }
        sa.state = 'established';
        sa.rekeyAt = Math.min(sa.expireAt, t + this.retryDelay());
        return;
      }
      const collision = sa.ikeCollision;
      sa.ikeCollision = null;
      if (collision !== null && this.sas.get(collision.sa.key) === collision.sa && lessThan(min(ni, nonce.data), collision.lowest)) {
        // §2.8.2: our exchange holds the lowest nonce, so our new SA is redundant: the children go to the peer's,
        // we delete ours, and the peer (whose rekey survives) deletes the old SA.
        const redundant = this.rekeyedSa(sa, 'initiator', spiI, spiR, selection.suite, ni, nonce.data, shared, t, false);
        collision.sa.children = sa.children;
        sa.children = [];
        sa.replacedBy = collision.sa;
        sa.state = 'deleting';
        sa.expireAt = t + HALF_OPEN_TIMEOUT_MS;
        redundant.replacedBy = collision.sa;
        redundant.state = 'deleting';
        redundant.expireAt = t + HALF_OPEN_TIMEOUT_MS;
        this.encryptedRequest(redundant, Exchange.Informational, [{ type: PayloadType.Delete, protocol: ProtocolId.IKE, spiSize: 0, spis: [] }], 'delete-ike', t, () =>
          this.destroy(redundant, 'redundant rekey'),
        );
        return;
      }
      const fresh = this.rekeyedSa(sa, 'initiator', spiI, spiR, selection.suite, ni, nonce.data, shared, t);
      if (collision !== null) {
        // Ours survives: the peer's new SA is redundant and the peer deletes it.
        collision.sa.replacedBy = fresh;
        collision.sa.state = 'deleting';
        collision.sa.expireAt = t + HALF_OPEN_TIMEOUT_MS;
      }
      sa.replacedBy = fresh;
      sa.state = 'deleting';
      sa.expireAt = t + HALF_OPEN_TIMEOUT_MS;
      this.encryptedRequest(sa, Exchange.Informational, [{ type: PayloadType.Delete, protocol: ProtocolId.IKE, spiSize: 0, spis: [] }], 'delete-ike', t, () => this.destroy(sa, 'rekeyed'));
    });
  }

  private deleteChild(sa: IkeSa, child: ChildState, now: number): void {
    child.superseded = true;
    this.encryptedRequest(sa, Exchange.Informational, [{ type: PayloadType.Delete, protocol: ProtocolId.ESP, spiSize: CHILD_SPI_LENGTH, spis: [spiBytes(child.inSpi)] }], 'delete-child', now, () => {
      const i = sa.children.indexOf(child);
      if (i >= 0) this.removeChild(sa, i);
    });
  }

  private removeChild(sa: IkeSa, index: number): void {
    const [child] = sa.children.splice(index, 1);
    this.childSpis.delete(child.inSpi);
    this.sink.removeChild((sa.peer as PeerEntry).config.onramp, child.inSpi);
  }

  // --- requests and responses ----------------------------------------------------------------------

  private encryptedRequest(sa: IkeSa, exchange: number, payloads: Payload[], kind: OutstandingRequest['kind'], now: number, onResponse: OutstandingRequest['onResponse']): void {
    const go = (t: number): void => {
      if (!this.sas.has(sa.key)) return;
      const flags = sa.role === 'initiator' ? FLAG_INITIATOR : 0;
      const bytes = buildEncryptedMessage({ spiI: sa.spiI, spiR: sa.spiR, exchange, flags, messageId: sa.nextRequestId }, payloads, sa.sealer as SkCodec);
      this.startRequest(sa, exchange, bytes, kind, t, onResponse);
    };
    if (sa.outstanding !== null) sa.queue.push(go);
    else go(now);
  }

  private startRequest(sa: IkeSa, exchange: number, bytes: Uint8Array, kind: OutstandingRequest['kind'], now: number, onResponse: OutstandingRequest['onResponse']): void {
    const dpdTimeout = kind === 'dpd' && sa.peer !== null ? sa.peer.config.dpdTimeoutSeconds * MS : 0;
    const giveUpAt = dpdTimeout > 0 ? now + dpdTimeout : NEVER;
    sa.outstanding = { messageId: sa.nextRequestId, exchange, bytes, tries: 0, nextAt: Math.min(now + RETRANSMIT_TIMEOUT_MS, giveUpAt), onResponse, kind, giveUpAt };
    this.send(sa, bytes);
  }

  /** The next queued request once the window is free. */
  private pump(sa: IkeSa, now: number): void {
    while (sa.outstanding === null && sa.queue.length > 0 && this.sas.has(sa.key)) (sa.queue.shift() as (t: number) => void)(now);
  }

  private respond(sa: IkeSa, messageId: number, exchange: number, payloads: Payload[]): void {
    const flags = FLAG_RESPONSE | (sa.role === 'initiator' ? FLAG_INITIATOR : 0);
    const bytes = buildEncryptedMessage({ spiI: sa.spiI, spiR: sa.spiR, exchange, flags, messageId }, payloads, sa.sealer as SkCodec);
    sa.cachedResponse = bytes;
    sa.cachedResponseId = messageId;
    this.send(sa, bytes);
  }

  private send(sa: IkeSa, bytes: Uint8Array): void {
    const onramp = (sa.peer ?? sa.candidates[0]).config.onramp;
    this.sink.sendIke(onramp, bytes, sa.localPort, sa.remoteAddress, sa.remotePort);
  }

  // --- SA lifecycle --------------------------------------------------------------------------------

  private newSa(
    role: IkeSa['role'],
    peer: PeerEntry | null,
    candidates: PeerEntry[],
    spiI: Uint8Array,
    spiR: Uint8Array,
    localAddress: number,
    localPort: number,
    remoteAddress: number,
    remotePort: number,
    now: number,
    ours = role === 'initiator' ? spiI : spiR,
  ): IkeSa {
    const sa: IkeSa = {
      role,
      peer,
      candidates,
      spiI,
      spiR,
      key: hex(ours),
      state: 'init',
      suite: null,
      keys: null,
      sealer: null,
      opener: null,
      ni: new Uint8Array(0),
      nr: new Uint8Array(0),
      initRequest: new Uint8Array(0),
      initResponse: new Uint8Array(0),
      dh: null,
      localAddress,
      remoteAddress,
      localPort,
      remotePort,
      natDetected: false,
      nextRequestId: 0,
      nextPeerRequestId: 0,
      cachedResponse: null,
      cachedResponseId: -1,
      outstanding: null,
      queue: [],
      children: [],
      createdAt: now,
      establishedAt: 0,
      rekeyAt: NEVER,
      expireAt: NEVER,
      lastInbound: now,
      cookie: null,
      halfOpenKey: null,
      ikeCollision: null,
      reservedKey: null,
      replacedBy: null,
    };
    this.sas.set(sa.key, sa);
    return sa;
  }

  private setKeys(sa: IkeSa, suite: IkeSuite, keys: NonNullable<IkeSa['keys']>): void {
    sa.suite = suite;
    sa.keys = keys;
    const initiator = sa.role === 'initiator';
    sa.sealer = new SkCodec(suite, initiator ? keys.skEi : keys.skEr, initiator ? keys.skAi : keys.skAr);
    sa.opener = new SkCodec(suite, initiator ? keys.skEr : keys.skEi, initiator ? keys.skAr : keys.skAi);
  }

  private established(sa: IkeSa, now: number): void {
    const peer = sa.peer as PeerEntry;
    sa.state = 'established';
    sa.establishedAt = now;
    sa.lastInbound = now;
    this.releaseHalfOpen(sa);
    const life = peer.config.ikeLifetime;
    sa.rekeyAt = now + this.jittered(life.rekeySeconds, life.jitterSeconds);
    sa.expireAt = now + life.lifetimeSeconds * MS;
  }

  /** The SA is no longer half-open (established, or gone): its slot and its address's count are freed. */
  private releaseHalfOpen(sa: IkeSa): void {
    const key = sa.halfOpenKey;
    if (key === null) return;
    this.halfOpen.delete(key);
    sa.halfOpenKey = null;
    const address = this.cookieHalfOpen.get(key);
    if (address === undefined) return;
    this.cookieHalfOpen.delete(key);
    const left = (this.halfOpenByAddress.get(address) ?? 1) - 1;
    if (left > 0) this.halfOpenByAddress.set(address, left);
    else this.halfOpenByAddress.delete(address);
  }

  /** An SA gone for good: its children removed from the data path, its SPI forgotten. */
  private destroy(sa: IkeSa, _reason: string): void {
    this.sas.delete(sa.key);
    if (sa.reservedKey !== null) this.sas.delete(sa.reservedKey);
    sa.reservedKey = null;
    this.releaseHalfOpen(sa);
    sa.outstanding = null;
    sa.queue = [];
    while (sa.children.length > 0) this.removeChild(sa, sa.children.length - 1);
  }

  /** A failed setup or a dead/deleted SA: down to health if it was up, restart an initiator. */
  private fail(sa: IkeSa, reason: string, now: number): void {
    this.destroy(sa, reason);
    this.afterLoss(sa, now, reason);
  }

  private afterLoss(sa: IkeSa, now: number, reason = 'deleted'): void {
    const peer = sa.peer;
    if (peer === null || !this.peers.has(peer.config.onramp)) return;
    const alive = [...this.sas.values()].some((o) => o.peer === peer && (o.state === 'established' || o.state === 'rekeying'));
    if (!alive && peer.reported !== 'down') {
      peer.reported = 'down';
      this.sink.peerState(peer.config.onramp, false, reason);
    }
    if (peer.config.mode === 'initiate' && !this.hasSa(peer)) peer.restartAt = Math.min(peer.restartAt, now + RESTART_DELAY_MS);
  }

  /** Whether the peer has an IKE SA in any state (its own, being set up, up or rekeying). */
  private hasSa(peer: PeerEntry): boolean {
    for (const sa of this.sas.values()) if (sa.peer === peer) return true;
    return false;
  }

  private markUp(peer: PeerEntry): void {
    if (peer.reported === 'up') return;
    peer.reported = 'up';
    this.sink.peerState(peer.config.onramp, true, 'established');
  }

  private uniqueSpi(): Uint8Array {
    for (;;) {
      const spi = this.options.random(SPI_LENGTH);
      if (spi.some((b) => b !== 0) && !this.sas.has(hex(spi))) return spi;
    }
  }

  private uniqueChildSpi(): number {
    for (;;) {
      const b = this.options.random(CHILD_SPI_LENGTH);
      const spi = spiNumber(b);
      if (spi >= MIN_CHILD_SPI && !this.childSpis.has(spi)) {
        this.childSpis.add(spi);
        return spi;
      }
    }
  }

  /** After TEMPORARY_FAILURE: between one and two retransmission timeouts, at random. */
  private retryDelay(): number {
    return RETRANSMIT_TIMEOUT_MS + this.jittered(RETRANSMIT_TIMEOUT_MS / MS, RETRANSMIT_TIMEOUT_MS / MS);
  }

  /** `seconds` less a random share of `jitter` (strongSwan's rand_time), in ms. */
  private jittered(seconds: number, jitter: number): number {
    const r = this.options.random(2);
    const fraction = ((r[0] << 8) | r[1]) / 0x10000;
    return Math.max(0, seconds - jitter * fraction) * MS;
  }

  // --- time ------------------------------------------------------------------------------------------

  poll(now: number): void {
    if (now >= this.usageCheckAt) this.usageCheckAt = now + USAGE_CHECK_MS;
    for (const sa of new Set(this.sas.values())) {
      if (this.sas.get(sa.key) !== sa) continue;
      this.pollSa(sa, now);
    }
    for (const peer of this.peers.values()) {
      if (peer.restartAt <= now) this.initiate(peer.config.onramp, now);
    }
  }

  private pollSa(sa: IkeSa, now: number): void {
    const out = sa.outstanding;
    if (out !== null && out.nextAt <= now) {
      if (out.tries >= RETRANSMIT_TRIES || now >= out.giveUpAt) {
        this.fail(sa, out.kind === 'dpd' ? 'dead peer (no answer to DPD)' : `no answer to ${out.kind}`, now);
        return;
      }
      out.tries++;
      out.nextAt = Math.min(now + RETRANSMIT_TIMEOUT_MS * RETRANSMIT_BASE ** out.tries, out.giveUpAt);
      this.send(sa, out.bytes);
    }
    if (sa.state === 'init' && sa.role === 'responder' && now - sa.createdAt >= HALF_OPEN_TIMEOUT_MS) {
      this.destroy(sa, 'half-open timeout');
      return;
    }
    if (sa.state === 'deleting' && sa.expireAt <= now) {
      this.destroy(sa, 'replaced');
      return;
    }
    if (sa.state !== 'established' && sa.state !== 'rekeying') return;
    const peer = sa.peer as PeerEntry;
    if (sa.expireAt <= now) {
      this.sendDeleteIke(sa, now);
      this.destroy(sa, 'IKE SA lifetime');
      this.afterLoss(sa, now, 'IKE SA lifetime');
      return;
    }
    if (sa.state === 'established' && sa.rekeyAt <= now && sa.outstanding === null && sa.children.every((c) => !c.rekeying)) {
      this.rekeyIke(sa, now);
      return;
    }
    for (const child of [...sa.children]) {
      if (child.expireAt <= now) {
        this.deleteChild(sa, child, now);
        const i = sa.children.indexOf(child);
        if (i >= 0) this.removeChild(sa, i);
        continue;
      }
      if (child.rekeying || child.superseded || sa.state !== 'established') continue;
      const usage = this.sink.childUsage(peer.config.onramp, child.inSpi);
      if (child.rekeyAt <= now || (usage !== null && usage.sequenceExhausted)) this.rekeyChild(sa, child, now);
    }
    const dpd = peer.config.dpdSeconds * MS;
    if (dpd > 0 && sa.outstanding === null && sa.queue.length === 0 && now - this.lastInbound(sa) >= dpd) {
      this.encryptedRequest(sa, Exchange.Informational, [], 'dpd', now, () => {});
    }
  }

  private lastInbound(sa: IkeSa): number {
    let last = sa.lastInbound;
    const onramp = (sa.peer as PeerEntry).config.onramp;
    for (const c of sa.children) {
      const u = this.sink.childUsage(onramp, c.inSpi);
      if (u !== null && u.lastInbound > last) last = u.lastInbound;
    }
    return last;
  }

  nextDeadline(): number {
    let t = NEVER;
    for (const sa of this.sas.values()) {
      if (sa.outstanding !== null) t = Math.min(t, sa.outstanding.nextAt);
      if (sa.state === 'init' && sa.role === 'responder') t = Math.min(t, sa.createdAt + HALF_OPEN_TIMEOUT_MS);
      if (sa.state === 'deleting') t = Math.min(t, sa.expireAt);
      if (sa.state !== 'established' && sa.state !== 'rekeying') continue;
      t = Math.min(t, sa.expireAt, sa.state === 'established' ? sa.rekeyAt : NEVER);
      for (const c of sa.children) t = Math.min(t, c.expireAt, c.rekeying || c.superseded ? NEVER : c.rekeyAt);
      const dpd = (sa.peer as PeerEntry).config.dpdSeconds * MS;
      if (dpd > 0 && sa.outstanding === null) t = Math.min(t, this.lastInbound(sa) + dpd);
    }
    for (const p of this.peers.values()) t = Math.min(t, p.restartAt);
    for (const sa of this.sas.values()) if (sa.children.length > 0) return Math.min(t, this.usageCheckAt);
    return t;
  }

  // --- status ----------------------------------------------------------------------------------------

  /** Responder SAs between IKE_SA_INIT and IKE_AUTH now (bounded by halfOpenLimit; cookies above cookieThreshold, §2.6). */
  get halfOpenCount(): number {
    return this.halfOpen.size;
  }

  /** Every IKE SA, and an 'idle' row for each peer that has none (waiting for the peer, or for its restart). */
  /**
   * The underlay ends of the IKE SAs that detected a NAT and are past setup, for the transport's NAT-keepalives
   * (RFC 3948 §2.3; the engine sends none itself).
   */
  natPeers(visit: (onramp: number, remoteAddress: number, remotePort: number) => void): void {
    for (const [key, sa] of this.sas) {
      if (key !== sa.key || !sa.natDetected || sa.state === 'init' || sa.state === 'auth') continue;
      visit((sa.peer ?? sa.candidates[0]).config.onramp, sa.remoteAddress, sa.remotePort);
    }
  }

  status(): IkeSaStatus[] {
    const out: IkeSaStatus[] = [];
    const busy = new Set<PeerEntry>();
    for (const sa of this.sas.values()) busy.add(sa.peer ?? sa.candidates[0]);
    for (const peer of this.peers.values()) {
      if (busy.has(peer)) continue;
      out.push({
        onramp: peer.config.onramp,
        state: 'idle',
        role: peer.config.mode === 'initiate' ? 'initiator' : 'responder',
        spiI: '',
        spiR: '',
        remote: `${peer.config.remoteAddress}:${IKE_PORT}`,
        natDetected: false,
        algorithms: '',
        establishedAt: 0,
        rekeyAt: peer.restartAt === NEVER ? 0 : peer.restartAt,
        children: [],
      });
    }
    for (const [key, sa] of this.sas) {
      if (key !== sa.key) continue; // a reserved SPI of a rekey in flight
      const peer = sa.peer ?? sa.candidates[0];
      out.push({
        onramp: peer.config.onramp,
        state: sa.state === 'init' || sa.state === 'auth' ? 'connecting' : sa.state,
        role: sa.role,
        spiI: hex(sa.spiI),
        spiR: hex(sa.spiR),
        remote: `${formatIpv4(sa.remoteAddress)}:${sa.remotePort}`,
        natDetected: sa.natDetected,
        algorithms: sa.suite === null ? '' : ikeSuiteName(sa.suite),
        establishedAt: sa.establishedAt,
        rekeyAt: sa.rekeyAt,
        children: sa.children.map((c) => ({
          spiIn: c.inSpi.toString(16).padStart(8, '0'),
          spiOut: c.outSpi.toString(16).padStart(8, '0'),
          algorithms: espSuiteName(c.suite),
          establishedAt: c.createdAt,
          rekeyAt: c.rekeyAt,
          localTs: c.localTs.map(formatTs),
          remoteTs: c.remoteTs.map(formatTs),
        })),
      });
    }
    return out;
  }
}

/** What an SA was negotiated with, as a comparable string (control plane only). */
function negotiated(c: IkePeerConfig): string {
  const { name: _n, ikeLifetime: _i, childLifetime: _c, dpdSeconds: _d, dpdTimeoutSeconds: _dt, replayWindow: _r, psk, ...rest } = c;
  return JSON.stringify({ ...rest, psk: Array.from(psk) }, (_k, v: unknown) => (v instanceof Uint8Array ? Array.from(v) : v));
}

function lessThan(a: Uint8Array, b: Uint8Array): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return a.length < b.length;
}
function min(a: Uint8Array, b: Uint8Array): Uint8Array {
  return lessThan(a, b) ? a : b;
}
