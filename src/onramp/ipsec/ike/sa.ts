/**
 * The IKE engine's per-SA state (engine.ts drives it). Plain records: an IKE SA, its child SAs and its one
 * outstanding request (tether keeps a window of 1, §2.3, as strongSwan does by default).
 */
import type { IkePeerConfig, TrafficSelector } from '../types.js';
import type { DhExchange, IkeKeys, IkeSuite, SkCodec } from './crypto.js';
import type { EspSuite } from './proposals.js';
import type { Payload } from './wire.js';

/** A configured peer and what the engine remembers about it between IKE SAs. */
export interface PeerEntry {
  config: IkePeerConfig;
  /** Underlay addresses as numbers; 0 = any (responder). */
  localAddress: number;
  remoteAddress: number;
  /** Mode 'initiate': when to (re)start an IKE SA if none is up or connecting; Infinity = not scheduled. */
  restartAt: number;
  /** The last state told to IkeSink.peerState ('unknown' before the first), so each change is reported once. */
  reported: 'unknown' | 'up' | 'down';
}

export interface ChildState {
  /** Our SPI (the peer sends with it) and the peer's. */
  inSpi: number;
  outSpi: number;
  suite: EspSuite;
  localTs: TrafficSelector[];
  remoteTs: TrafficSelector[];
  createdAt: number;
  rekeyAt: number;
  expireAt: number;
  /** A CREATE_CHILD_SA rekeying this child is outstanding (ours) or was answered (superseded: delete pending). */
  rekeying: boolean;
  /** A rekey replaced this child: it is deleted once its successor is installed (§2.8). */
  superseded: boolean;
  /** The peer rekeyed this child while our rekey of it was in flight (§2.8.1): the lowest nonce of its exchange. */
  collision: Uint8Array | null;
}

/** Our request in flight: retransmitted by poll until its response arrives or the tries run out. */
export interface OutstandingRequest {
  messageId: number;
  exchange: number;
  bytes: Uint8Array;
  tries: number;
  nextAt: number;
  /** Monotonic ms after which the request is given up even with tries left (a DPD check: dpdTimeoutSeconds); Infinity otherwise. */
  giveUpAt: number;
  /** Called with the decrypted response payloads (or IKE_SA_INIT's plain ones). */
  onResponse(payloads: Payload[], now: number, raw: Uint8Array): void;
  /** What this request is, for status and for a collision check. */
  kind: 'init' | 'auth' | 'dpd' | 'delete-ike' | 'delete-child' | 'rekey-child' | 'rekey-ike';
}

export type IkeSaState = 'init' | 'auth' | 'established' | 'rekeying' | 'deleting';

export interface IkeSa {
  role: 'initiator' | 'responder';
  /** Null for a responder until IKE_AUTH names the peer; `candidates` are the peers its address could be. */
  peer: PeerEntry | null;
  candidates: PeerEntry[];
  spiI: Uint8Array;
  spiR: Uint8Array;
  /** Hex of our SPI: the key in the engine's table. */
  key: string;
  state: IkeSaState;
  suite: IkeSuite | null;
  keys: IkeKeys | null;
  sealer: SkCodec | null;
  opener: SkCodec | null;
  ni: Uint8Array;
  nr: Uint8Array;
  /** IKE_SA_INIT request and response, every byte, for AUTH (§2.15). */
  initRequest: Uint8Array;
  initResponse: Uint8Array;
  dh: DhExchange | null;
  localAddress: number;
  remoteAddress: number;
  localPort: number;
  remotePort: number;
  natDetected: boolean;
  /** Our next request's message ID, and the peer's next expected (§2.3). */
  nextRequestId: number;
  nextPeerRequestId: number;
  /** The last response we sent, for a retransmitted request (§2.3). */
  cachedResponse: Uint8Array | null;
  /** The message ID that response answered (-1: none). */
  cachedResponseId: number;
  outstanding: OutstandingRequest | null;
  /** Requests waiting for the window (window size 1). */
  queue: Array<(now: number) => void>;
  children: ChildState[];
  createdAt: number;
  establishedAt: number;
  rekeyAt: number;
  expireAt: number;
  /** Monotonic ms of the last authenticated IKE message from the peer. */
  lastInbound: number;
  /** Initiator: a COOKIE the responder asked us to echo (§2.6). */
  cookie: Uint8Array | null;
  /** A half-open responder SA's table key (address, port, SPIi), for retransmitted IKE_SA_INIT requests. */
  halfOpenKey: string | null;
  /**
   * The peer rekeyed this IKE SA while our rekey of it was in flight (§2.8.2): its new SA (children not moved
   * yet) and the lowest nonce of its exchange. Settled when our response arrives.
   */
  ikeCollision: { sa: IkeSa; lowest: Uint8Array } | null;
  /** Our new SPI of an IKE rekey in flight, held in the engine's table so no one else draws it. */
  reservedKey: string | null;
  /** This SA replaced another in an IKE rekey, or was replaced: no peerState, no children removed on its delete. */
  replacedBy: IkeSa | null;
}
