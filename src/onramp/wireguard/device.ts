/**
 * A WireGuard device as a pure state machine: datagrams in, datagrams out, time passed in (`now`, ms).
 * No sockets and no timers: the caller (src/io) owns the UDP socket and calls poll(now) at nextDeadline().
 *
 *   UDP datagram ─ receive() ─┬─ type 1 initiation ─ mac1 ─ [under load: mac2 / cookie reply, rate limit]
 *                             │                      ─ Noise IKpsk2 ─ response datagram ('send')
 *                             ├─ type 2 response ──── mac1 ─ … ─ session ─ staged packets / keepalive ('send')
 *                             ├─ type 3 cookie reply ─ store cookie for the next retry
 *                             └─ type 4 transport ─── index → keypair ─ replay pre-check ─ decrypt ─ replay
 *                                                     window ─ cryptokey routing check ─ inner IP ('data')
 *   IP packet ─ send(peer) ─── current keypair ? encrypt (type 4) : stage + handshake initiation
 *   poll(now) ─────────────── retransmits, keepalives, rekeys, key expiry (whitepaper §6, wireguard-go timers.go)
 *   addPeer / updatePeer / removePeer ── peers change on a running device (wireguard-go NewPeer, UAPI set, RemovePeer):
 *                             a removed or re-keyed peer's sessions end at once, its datagrams are dropped as Revoked
 *
 * Results are returned in objects and arrays owned by the device and reused: read them before the next call.
 *
 * Transport crypto goes through a WgAead (aead.ts) the caller hands in: the daemon's seals and opens whole
 * batches in the native addon, in the caller's own buffers, with the keys held there (installed when a session
 * is derived, removed at Reject-After-Time or when the session ends: no transport key stays in JS). A caller
 * that works on batches uses the two-phase calls (prepareSeal / prepareOpen … its batched AEAD call …
 * finishOpen); send() and receive() do the same for one packet, in buffers of their own.
 * Allocation: handshakes allocate freely; send() and receive() allocate the datagram (and its Outgoing record) or
 * the plaintext. The batch path allocates nothing: result records, ticket and index table are preallocated.
 *
 * Both ends initiating at once (docs/ARCHITECTURE.md "WireGuard: both ends initiating at once"): our own initiation's
 * state (Peer.initiation) is kept apart from the peer's initiation we answer (Peer.handshake), so the peer's response
 * to ours still completes it; and a retransmission that Rekey-Timeout holds back because we answered a handshake
 * meanwhile is deferred, not dropped as wireguard-go and the Linux driver drop it; a session a handshake pushes
 * out stays receivable for Rekey-Timeout (DISPLACED_GRACE_MS), as the peer may still be sending on it.
 *
 * Time: `now` is a monotonic clock (the daemon passes performance.now()); every timer (rekey, reject, keepalive,
 * retransmit, cookie age, rate limit, the handshake-flood guard) runs on it, so a wall-clock step neither expires
 * nor prolongs anything. The wall clock (`wallClock`, Unix-epoch ms) is read only to build an initiation's TAI64N
 * timestamp (§5.4.2). A peer refuses an initiation whose timestamp is not newer than the last it saw from us
 * (§5.1), so each peer's timestamps only grow: when the wall clock has stepped back, the next initiation carries
 * the last timestamp sent plus one step (nextTimestamp) instead of the clock's.
 */
import { randomFillSync } from 'node:crypto';
import { write32 } from '../../wire/bytes.js';
import { AF_INET4 } from '../../wire/constants.js';
import { UdpEndpoint } from '../../wire/endpoint.js';
import { CryptoEntries, CryptoStatus, headerCounter, NodeWgAead, sealedLength, type WgAead } from './aead.js';
import { AllowedIps, innerPacketLength } from './allowed-ips.js';
import {
  AEAD_TAG_LEN,
  COOKIE_RECEIVER_OFF,
  COOKIE_REPLY_LEN,
  DATA_COUNTER_OFF,
  DATA_HEADER_LEN,
  DATA_MIN_LEN,
  DATA_RECEIVER_OFF,
  INDEX_SLOT_BITS,
  INIT_LEN,
  INIT_MAC1_OFF,
  INIT_MAC2_OFF,
  INIT_SENDER_OFF,
  KEEPALIVE_TIMEOUT_MS,
  KEY_LEN,
  MAX_SAFE_COUNTER,
  MAX_STAGED_PACKETS,
  MAX_TIMER_HANDSHAKES,
  MSG_COOKIE_REPLY,
  MSG_INITIATION,
  MSG_RESPONSE,
  MSG_TRANSPORT,
  PADDING_MULTIPLE,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME_MS,
  REKEY_TIMEOUT_JITTER_MAX_MS,
  REKEY_TIMEOUT_MS,
  RESP_LEN,
  RESP_MAC1_OFF,
  RESP_MAC2_OFF,
  RESP_RECEIVER_OFF,
  TIMESTAMP_LEN,
  HANDSHAKE_INITIATION_RATE_MS,
  ZERO_KEY_MATERIAL_MS,
} from './constants.js';
import {
  checkMac1,
  consumeResponse,
  CookieChecker,
  CookieGenerator,
  createInitiation,
  createResponse,
  deriveTransportKeys,
  Handshake,
  HandshakeState,
  openInitiationStatic,
  openInitiationTimestamp,
  PeerKeys,
  readU32LE,
  StaticIdentity,
  nextTimestamp,
  tai64n,
  timestampAfter,
  writeU32LE,
} from './noise.js';
import { RateLimiter } from './ratelimit.js';
import { ReplayWindow } from './replay.js';
import { WG_DROP_COUNT, WgDrop } from './wg-drop.js';

/** Largest IP packet we encrypt: the 16-byte header and tag must still fit a UDP datagram. */
const MAX_PACKET_LEN = 65535 - DATA_HEADER_LEN - AEAD_TAG_LEN - PADDING_MULTIPLE;
const SLOT_COUNT = 1 << INDEX_SLOT_BITS;
const SLOT_MASK = SLOT_COUNT - 1;
const NEVER = Infinity;
/** Received counters at or above 2^53 cannot be held exactly in a JS number; no conforming peer gets there. */
const COUNTER_HIGH_WORD_LIMIT = 2 ** 21;
const RECEIVE_COUNTER_LIMIT = Math.min(REJECT_AFTER_MESSAGES, MAX_SAFE_COUNTER);
/**
 * How long a session that a handshake pushed out of previous/current/next stays receivable. The peer may still be
 * sending on it until its own handshake of the moment completes: when both ends rekey at once, each end's sending
 * session sits in the other's `previous`, and either end's handshake would otherwise drop it with packets in flight.
 * One Rekey-Timeout covers a handshake's round trip; never past the session's Reject-After-Time.
 */
const DISPLACED_GRACE_MS = REKEY_TIMEOUT_MS;
/** Displaced sessions held at once: one rotation displaces at most two. */
const DISPLACED_SLOTS = 2;

/** One datagram to send. */
export interface Outgoing {
  data: Uint8Array;
  /** Where to: a kept record (see wire/endpoint.ts), never edited after the datagram is queued. */
  endpoint: UdpEndpoint;
  /** Peer index it belongs to, or -1 (a cookie reply to an unauthenticated source). */
  peer: number;
}

export type ReceiveKind = 'data' | 'send' | 'drop' | 'none';

/**
 * The outcome of receive(). `kind`: 'data' (packet holds the inner IP packet from `peer`), 'send' (a handshake
 * answer is in `datagrams`), 'drop' (`reason` says why), 'none' (accepted, nothing to deliver: a keepalive or
 * a cookie). `datagrams` may be non-empty for any kind (e.g. packets staged during a handshake now flushed).
 */
export interface ReceiveResult {
  kind: ReceiveKind;
  reason: WgDrop;
  peer: number;
  /** receive(): the inner packet, a view of a buffer of its own. finishOpen(): null (see packetOffset). */
  packet: Uint8Array | null;
  /** 'data' from finishOpen(): where the inner packet is in the caller's buffer (decrypted in place), its length. */
  packetOffset: number;
  packetLength: number;
  datagrams: Outgoing[];
}

/** What prepareSeal() decided for the packet the caller seals (reused: read it before the next call). */
export interface SealTicket {
  /** The AEAD key slot (= the return value). */
  slot: number;
  /** The whole transport message: header, padded packet, tag (sealedLength of the packet). */
  length: number;
  /** Where it goes. */
  endpoint: UdpEndpoint | null;
}

export interface WireGuardPeerConfig {
  publicKey: Uint8Array;
  /** 32 bytes, or null/absent for none (all zeros, §5.4.3). */
  presharedKey?: Uint8Array | null;
  /** Prefixes routed to this peer, e.g. ["10.0.1.0/24", "fd00::/64"]. */
  allowedIps?: string[];
  endpoint?: { addr: string; port: number } | null;
  /** Persistent keepalive interval in seconds; 0 or absent turns it off. */
  persistentKeepalive?: number;
}

/**
 * A change to a running peer (updatePeer); absent fields stay as they are. What wireguard-go's `wg set` (UAPI
 * set_peer with update_only) changes in place, plus a new public key, which makes it a new peer at the same index.
 */
export interface WireGuardPeerChange {
  /** A new identity: the old key's sessions and handshake state end, the learned endpoint is forgotten. */
  publicKey?: Uint8Array;
  /** A new preshared key (null: none, §5.4.3): sessions made with the old one end at once. */
  presharedKey?: Uint8Array | null;
  /** Replaces the peer's prefixes. */
  allowedIps?: string[];
  /** A configured endpoint (the peer still roams, §2.1); null keeps the one last heard from. */
  endpoint?: { addr: string; port: number } | null;
  /** Persistent keepalive interval in seconds; 0 turns it off, a new non-zero one sends a keepalive now. */
  persistentKeepalive?: number;
}

export interface WireGuardDeviceOptions {
  privateKey: Uint8Array;
  peers?: WireGuardPeerConfig[];
  /** Source of randomness (ephemeral keys, indexes, cookie secret, jitter). Tests inject a seeded one. */
  randomFill?: (buf: Uint8Array) => void;
  /**
   * The wall clock, Unix-epoch ms, read only for TAI64N timestamps (§5.4.2). Absent: `now + wallClockOffsetMs`
   * (for a caller whose `now` is already close to wall time, as in tests).
   */
  wallClock?: () => number;
  /** Without `wallClock`: added to `now` for TAI64N timestamps. */
  wallClockOffsetMs?: number;
  /**
   * Check a decrypted packet's source against its peer's allowed IPs here (default true). A caller whose
   * pipeline inspects every packet anyway checks there instead (OnrampSpec.allowedSources, the same
   * route/prefix-list.ts) and passes false, so the packet is parsed once.
   */
  checkSources?: boolean;
  /** Transport-data AEAD (aead.ts); default NodeWgAead (node:crypto, one cipher object per packet). */
  aead?: WgAead;
}

/** One transport session (whitepaper §5.4.5): keys, counters and replay window. */
class Keypair {
  sendCounter = 0;
  readonly replay = new ReplayWindow();
  /** The AEAD holds this session's keys in `slot` (until Reject-After-Time or the session's end). */
  keysLive = true;
  constructor(
    /** Index-table slot of localIndex, and the AEAD's key slot. */
    readonly slot: number,
    readonly created: number,
    readonly isInitiator: boolean,
    readonly localIndex: number,
    readonly remoteIndex: number,
  ) {}
}

class Peer {
  /** Where the peer was last heard from (or configured); replaced, never edited (wire/endpoint.ts). */
  endpoint: UdpEndpoint | null = null;
  persistentKeepaliveMs = 0;
  /**
   * The responder's side: the peer's initiation we consume and answer (§5.4.3). It also holds what is per peer
   * whichever side we are on: the greatest TAI64N seen (§5.1), the flood guard, when we last sent a handshake.
   */
  readonly handshake = new Handshake();
  /** `handshake.localIndex` is in the index table (between allocating it and the session taking it over). */
  handshakeIndexLive = false;
  /**
   * Our own outstanding initiation (§5.4.2), apart from `handshake`: when both ends initiate at once, answering the
   * peer's initiation must not discard ours, or the peer's response to it would be refused and, the peer having
   * replaced its own initiation's state by answering ours (wireguard-go ConsumeMessageInitiation), neither end
   * would hold a session until a retry. Kept, our initiation completes when its response arrives.
   */
  readonly initiation = new Handshake();
  /** `initiation.localIndex` is in the index table. */
  initiationIndexLive = false;
  readonly cookies = new CookieGenerator();
  current: Keypair | null = null;
  previous: Keypair | null = null;
  next: Keypair | null = null;
  /** Sessions a handshake pushed out, still receivable until displacedUntil (DISPLACED_GRACE_MS). */
  readonly displaced: Array<Keypair | null> = new Array<Keypair | null>(DISPLACED_SLOTS).fill(null);
  readonly displacedUntil = new Float64Array(DISPLACED_SLOTS).fill(NEVER);
  staged: Uint8Array[] = [];

  // Timers (absolute ms; NEVER when not pending), wireguard-go timers.go.
  retransmitHandshakeAt = NEVER;
  sendKeepaliveAt = NEVER;
  newHandshakeAt = NEVER;
  zeroKeyMaterialAt = NEVER;
  persistentKeepaliveAt = NEVER;
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;

  lastHandshakeAt = -Infinity;
  /** TAI64N of the last initiation we sent: the next one must be later (§5.1), whatever the wall clock says. */
  readonly lastSentTimestamp = new Uint8Array(TIMESTAMP_LEN);
  rxBytes = 0;
  txBytes = 0;

  constructor(
    readonly index: number,
    /** Replaced by updatePeer (new public or preshared key); zeroed by removePeer. */
    public keys: PeerKeys,
  ) {}
}

/** Read-only view of a peer for the control plane and tests. */
export interface PeerStatus {
  publicKey: Uint8Array;
  endpoint: { addr: string; port: number } | null;
  hasSession: boolean;
  /** Send counter of the current session, -1 without one. */
  sendCounter: number;
  sessionCreated: number;
  lastHandshakeAt: number;
  staged: number;
  handshakeAttempts: number;
  rxBytes: number;
  txBytes: number;
}

export class WireGuardDevice {
  readonly publicKey: Uint8Array;
  /** Set by the caller when handshakes pile up (e.g. > 128 queued): handshakes then need a valid mac2 (§5.3). */
  underLoad = false;
  /** Drop counters indexed by WgDrop. */
  readonly drops = new Float64Array(WG_DROP_COUNT);

  private readonly identity: StaticIdentity;
  /** By peer index; a removed peer leaves null (indices are never reused: a caller's index never names another peer). */
  private readonly peers: Array<Peer | null> = [];
  private readonly peerByKey = new Map<string, number>();
  /** Public keys of removed or re-keyed peers: their initiations are counted as Revoked, not UnknownPeer. */
  private readonly revokedKeys = new Set<string>();
  private readonly allowed = new AllowedIps();
  private readonly cookieChecker: CookieChecker;
  private readonly rateLimiter = new RateLimiter();
  private readonly randomFill: (buf: Uint8Array) => void;
  /** Unix-epoch ms at the monotonic `now` (TAI64N only). */
  private readonly wallClock: (now: number) => number;
  private readonly checkSources: boolean;

  // Index table (§5.4.2 "sender index"): low 16 bits are the slot, high 16 bits random.
  private readonly slotIndex = new Uint32Array(SLOT_COUNT);
  private readonly slotPeer = new Int32Array(SLOT_COUNT).fill(-1);
  private readonly slotKeypair: (Keypair | null)[] = new Array<Keypair | null>(SLOT_COUNT).fill(null);
  private readonly freeSlots = new Int32Array(SLOT_COUNT);
  private freeTop = SLOT_COUNT;
  /** Per slot: the index a revoked session or handshake held there (-1: none), until the slot is handed out again. */
  private readonly slotRevoked = new Float64Array(SLOT_COUNT).fill(-1);

  // Reused results and scratch.
  private readonly result: ReceiveResult = { kind: 'none', reason: WgDrop.None, peer: -1, packet: null, packetOffset: 0, packetLength: 0, datagrams: [] };
  private readonly sendOut: Outgoing[] = [];
  private readonly pollOut: Outgoing[] = [];
  private readonly aead: WgAead;
  /** send()'s and receive()'s one-message AEAD call. */
  private readonly one = new CryptoEntries(1);
  private readonly ticket: SealTicket = { slot: -1, length: 0, endpoint: null };
  private readonly random16 = new Uint16Array(1);
  /** random16's bytes: the send path draws timer jitter through it (no view made per packet). */
  private readonly random16Bytes = new Uint8Array(this.random16.buffer);
  private readonly random32 = new Uint8Array(KEY_LEN);

  constructor(options: WireGuardDeviceOptions) {
    this.identity = new StaticIdentity(options.privateKey);
    this.publicKey = this.identity.publicKey;
    this.cookieChecker = new CookieChecker(this.identity.cookieKey);
    this.randomFill = options.randomFill ?? ((b: Uint8Array) => void randomFillSync(b));
    const clock = options.wallClock;
    const offset = options.wallClockOffsetMs ?? 0;
    this.wallClock = clock !== undefined ? () => clock() : (now) => now + offset;
    this.checkSources = options.checkSources ?? true;
    this.aead = options.aead ?? new NodeWgAead();
    for (let i = 0; i < SLOT_COUNT; i++) this.freeSlots[i] = SLOT_COUNT - 1 - i;
    for (const p of options.peers ?? []) this.addPeer(p);
  }

  // --- configuration (control plane) ------------------------------------------------------------------------

  /** Adds a peer; returns its index. Throws on a malformed configuration (control plane, not packet input). */
  addPeer(config: WireGuardPeerConfig): number {
    if (config.publicKey.length !== KEY_LEN) throw new Error('wireguard: public key must be 32 bytes');
    if (config.presharedKey && config.presharedKey.length !== KEY_LEN) throw new Error('wireguard: preshared key must be 32 bytes');
    const keyText = keyId(config.publicKey);
    if (this.peerByKey.has(keyText)) throw new Error('wireguard: duplicate peer public key');
    const index = this.peers.length;
    const peer = new Peer(index, new PeerKeys(this.identity, config.publicKey, config.presharedKey ?? null));
    if (config.endpoint) {
      peer.endpoint = UdpEndpoint.parse(config.endpoint.addr, config.endpoint.port);
      if (peer.endpoint === null) throw new Error(`wireguard: bad endpoint address ${config.endpoint.addr}`);
    }
    peer.persistentKeepaliveMs = (config.persistentKeepalive ?? 0) * 1000;
    for (const prefix of config.allowedIps ?? []) {
      if (!this.allowed.insert(prefix, index)) throw new Error(`wireguard: bad allowed IP ${prefix}`);
    }
    this.peers.push(peer);
    this.peerByKey.set(keyText, index);
    this.revokedKeys.delete(keyText);
    return index;
  }

  /**
   * Removes a peer at once, as wireguard-go's RemovePeer: its sessions and pending handshake end (their index
   * table entries are freed), staged packets are discarded, its allowed IPs go, its keys are zeroed. From now on
   * its datagrams are dropped and counted as Revoked; its index is never handed to another peer. Returns false
   * when there is no such peer.
   */
  removePeer(index: number): boolean {
    const peer = this.peers[index];
    if (peer === undefined || peer === null) return false;
    this.endSessions(peer);
    const keyText = keyId(peer.keys.remoteStatic);
    this.peerByKey.delete(keyText);
    this.revokedKeys.add(keyText);
    this.allowed.removePeer(index);
    zeroKeys(peer.keys);
    peer.handshake.lastTimestamp.fill(0);
    peer.cookies.cookie.fill(0);
    peer.staged = [];
    peer.endpoint = null;
    peer.persistentKeepaliveMs = 0;
    peer.persistentKeepaliveAt = NEVER;
    this.peers[index] = null;
    return true;
  }

  /**
   * Changes a running peer (control plane). Everything is checked before anything changes: on a throw the peer
   * is as it was. A new public key or preshared key revokes the peer's sessions at once (their datagrams are
   * dropped as Revoked; the next packet either way starts a handshake with the new keys). Returns datagrams to
   * send now (a keepalive when persistent keepalive was turned on), reused by the next poll()/updatePeer().
   */
  updatePeer(index: number, change: WireGuardPeerChange, now: number): Outgoing[] {
    const out = this.pollOut;
    out.length = 0;
    const peer = this.peers[index];
    if (peer === undefined || peer === null) throw new Error(`wireguard: no peer ${index}`);
    if (change.publicKey !== undefined && change.publicKey.length !== KEY_LEN) throw new Error('wireguard: public key must be 32 bytes');
    if (change.presharedKey && change.presharedKey.length !== KEY_LEN) throw new Error('wireguard: preshared key must be 32 bytes');
    const oldKey = keyId(peer.keys.remoteStatic);
    const newKey = change.publicKey === undefined ? oldKey : keyId(change.publicKey);
    const rekey = newKey !== oldKey;
    if (rekey && this.peerByKey.has(newKey)) throw new Error('wireguard: duplicate peer public key');
    let endpoint: UdpEndpoint | null = null;
    if (change.endpoint) {
      endpoint = UdpEndpoint.parse(change.endpoint.addr, change.endpoint.port);
      if (endpoint === null) throw new Error(`wireguard: bad endpoint address ${change.endpoint.addr}`);
    }
    if (change.allowedIps !== undefined) {
      const scratch = new AllowedIps();
      for (const prefix of change.allowedIps) if (!scratch.insert(prefix, index)) throw new Error(`wireguard: bad allowed IP ${prefix}`);
    }

    const psk = change.presharedKey === undefined ? peer.keys.presharedKey : change.presharedKey ?? ZERO_KEY;
    if (rekey || !sameBytes(psk, peer.keys.presharedKey)) {
      this.endSessions(peer);
      const old = peer.keys;
      peer.keys = new PeerKeys(this.identity, change.publicKey ?? old.remoteStatic, psk);
      zeroKeys(old);
    }
    if (rekey) {
      // Another identity: nothing learned from the old key carries over (replay timestamp, cookie, endpoint).
      this.peerByKey.delete(oldKey);
      this.revokedKeys.add(oldKey);
      this.peerByKey.set(newKey, index);
      this.revokedKeys.delete(newKey);
      const hs = peer.handshake;
      hs.lastTimestamp.fill(0);
      hs.lastInitiationConsumption = -Infinity;
      hs.lastSentHandshake = -Infinity;
      peer.cookies.cookie.fill(0);
      peer.cookies.cookieSetAt = -Infinity;
      peer.cookies.hasLastMac1 = false;
      peer.staged = [];
      peer.endpoint = null;
      peer.lastHandshakeAt = -Infinity;
      peer.rxBytes = peer.txBytes = 0;
    }
    if (change.allowedIps !== undefined) {
      this.allowed.removePeer(index);
      for (const prefix of change.allowedIps) this.allowed.insert(prefix, index);
    }
    if (endpoint !== null) peer.endpoint = endpoint;
    if (change.persistentKeepalive !== undefined) {
      const ms = change.persistentKeepalive * 1000;
      const wasOff = peer.persistentKeepaliveMs === 0;
      peer.persistentKeepaliveMs = ms;
      if (ms === 0) peer.persistentKeepaliveAt = NEVER;
      else if (wasOff) this.sendKeepalive(peer, now, out); // wireguard-go (uapi.go) sends one when it is turned on
      else peer.persistentKeepaliveAt = now + ms;
    }
    return out;
  }

  /**
   * Ends a peer's sessions and pending handshake: every index-table entry of the peer is freed and remembered
   * as revoked, and the timers that serve sessions stop (a later send starts a fresh handshake).
   */
  private endSessions(peer: Peer): void {
    const slotPeer = this.slotPeer;
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      if (slotPeer[slot] !== peer.index) continue;
      const kp = this.slotKeypair[slot];
      if (kp !== null) this.retireKeys(kp);
      this.slotRevoked[slot] = this.slotIndex[slot];
      slotPeer[slot] = -1;
      this.slotKeypair[slot] = null;
      // To the bottom of the free stack: handed out last, so the revoked index is recognised as long as possible.
      this.freeSlots.copyWithin(1, 0, this.freeTop);
      this.freeSlots[0] = slot;
      this.freeTop++;
    }
    peer.previous = peer.current = peer.next = null;
    peer.displaced.fill(null);
    peer.displacedUntil.fill(NEVER);
    peer.handshakeIndexLive = peer.initiationIndexLive = false;
    peer.handshake.clear();
    peer.initiation.clear();
    peer.retransmitHandshakeAt = peer.sendKeepaliveAt = peer.newHandshakeAt = peer.zeroKeyMaterialAt = NEVER;
    peer.handshakeAttempts = 0;
    peer.needAnotherKeepalive = false;
    peer.sentLastMinuteHandshake = false;
  }

  /** Peer slots ever used, removed ones included (indices are never reused). */
  get peerCount(): number {
    return this.peers.length;
  }

  /** The peer whose public key this is, or -1. */
  findPeer(publicKey: Uint8Array): number {
    return this.peerByKey.get(keyId(publicKey)) ?? -1;
  }

  /** Starts the persistent keepalive (wireguard-go sends one when a peer with it comes up). */
  start(now: number): Outgoing[] {
    const out = this.pollOut;
    out.length = 0;
    for (const peer of this.peers) {
      if (peer !== null && peer.persistentKeepaliveMs > 0) this.sendKeepalive(peer, now, out);
    }
    return out;
  }

  peerStatus(index: number): PeerStatus | null {
    const peer = this.peers[index];
    if (peer === undefined || peer === null) return null;
    return {
      publicKey: peer.keys.remoteStatic,
      endpoint: peer.endpoint === null ? null : { addr: peer.endpoint.addressText(), port: peer.endpoint.port },
      hasSession: peer.current !== null,
      sendCounter: peer.current ? peer.current.sendCounter : -1,
      sessionCreated: peer.current ? peer.current.created : -1,
      lastHandshakeAt: peer.lastHandshakeAt,
      staged: peer.staged.length,
      handshakeAttempts: peer.handshakeAttempts,
      rxBytes: peer.rxBytes,
      txBytes: peer.txBytes,
    };
  }

  /** Cryptokey routing for outbound packets: the peer for this IP packet's destination, or -1. */
  peerForDestination(packet: Uint8Array): number {
    return this.allowed.lookupDestination(packet, packet.length);
  }

  // --- receive ----------------------------------------------------------------------------------------------

  /**
   * Handles one UDP datagram from `src`, which is borrowed for the call (the caller may reuse the record: what
   * is kept is copied). Never throws on any input.
   */
  receive(datagram: Uint8Array, src: UdpEndpoint, now: number): ReceiveResult {
    this.freshResult();
    const len = datagram.length;
    if (len < 4) return this.drop(WgDrop.Truncated);
    // The type is a little-endian u32: the three reserved bytes must be zero (wireguard-go reads it so).
    const type = readU32LE(datagram, 0);
    switch (type) {
      case MSG_TRANSPORT:
        return this.receiveTransport(datagram, src, now);
      case MSG_INITIATION:
        if (len !== INIT_LEN) return this.drop(WgDrop.Truncated);
        return this.receiveInitiation(datagram, src, now);
      case MSG_RESPONSE:
        if (len !== RESP_LEN) return this.drop(WgDrop.Truncated);
        return this.receiveResponse(datagram, src, now);
      case MSG_COOKIE_REPLY:
        if (len !== COOKIE_REPLY_LEN) return this.drop(WgDrop.Truncated);
        return this.receiveCookieReply(datagram, now);
      default:
        return this.drop(WgDrop.UnknownType);
    }
  }

  /** The reused result, emptied. */
  private freshResult(): ReceiveResult {
    const r = this.result;
    r.kind = 'none';
    r.reason = WgDrop.None;
    r.peer = -1;
    r.packet = null;
    r.datagrams.length = 0;
    return r;
  }

  /** A receiver index with no live entry: Revoked when a removed or re-keyed peer's session held it last. */
  private dropUnknownIndex(receiver: number): ReceiveResult {
    return this.drop(this.slotRevoked[receiver & SLOT_MASK] === receiver ? WgDrop.Revoked : WgDrop.UnknownIndex);
  }

  private drop(reason: WgDrop): ReceiveResult {
    this.drops[reason]++;
    const r = this.result;
    r.kind = 'drop';
    r.reason = reason;
    return r;
  }

  /**
   * mac1 always; under load also mac2 (else answer with a cookie reply) and the per-source rate limit
   * (§5.3, §5.4.7). Returns WgDrop.None when the handshake message may be processed.
   */
  private admitHandshake(msg: Uint8Array, mac1Off: number, mac2Off: number, src: UdpEndpoint, now: number): WgDrop {
    if (!checkMac1(msg, mac1Off, this.identity.mac1Key)) return WgDrop.BadMac1;
    if (!this.underLoad) return WgDrop.None;
    const source = sourceBytes(src);
    if (!this.cookieChecker.checkMac2(msg, mac2Off, source, now)) {
      const senderIndex = readU32LE(msg, INIT_SENDER_OFF); // same offset in initiation and response
      const reply = this.cookieChecker.createReply(msg, mac1Off, senderIndex, source, now, this.randomFill);
      this.result.datagrams.push({ data: reply, endpoint: src.copy(), peer: -1 });
      return WgDrop.CookieRequired;
    }
    if (!this.rateLimiter.allow(rateLimitKey(src), now)) return WgDrop.RateLimited;
    return WgDrop.None;
  }

  /** A refused handshake is a counted drop; when a cookie reply went out the caller still has to send it. */
  private refuseHandshake(reason: WgDrop): ReceiveResult {
    const r = this.drop(reason);
    if (reason === WgDrop.CookieRequired) r.kind = 'send';
    return r;
  }

  private receiveInitiation(msg: Uint8Array, src: UdpEndpoint, now: number): ReceiveResult {
    const admit = this.admitHandshake(msg, INIT_MAC1_OFF, INIT_MAC2_OFF, src, now);
    if (admit !== WgDrop.None) return this.refuseHandshake(admit);
    const partial = openInitiationStatic(this.identity, msg);
    if (!partial) return this.drop(WgDrop.HandshakeFailed);
    const peerIndex = this.findPeer(partial.remoteStatic);
    if (peerIndex < 0) return this.drop(this.revokedKeys.has(keyId(partial.remoteStatic)) ? WgDrop.Revoked : WgDrop.UnknownPeer);
    const peer = this.peers[peerIndex]!;
    const consumed = openInitiationTimestamp(peer.keys, msg, partial);
    if (!consumed) return this.drop(WgDrop.HandshakeFailed);
    const hs = peer.handshake;
    // §5.1: replay protection by TAI64N, and wireguard-go's flood guard between two initiations.
    if (!timestampAfter(consumed.timestamp, hs.lastTimestamp)) return this.drop(WgDrop.ReplayedInitiation);
    if (now - hs.lastInitiationConsumption <= HANDSHAKE_INITIATION_RATE_MS) return this.drop(WgDrop.HandshakeFlood);

    this.releaseHandshakeIndex(peer);
    hs.state = HandshakeState.InitiationConsumed;
    hs.chainKey = consumed.chainKey;
    hs.hash = consumed.hash;
    hs.remoteEphemeral.set(consumed.remoteEphemeral);
    hs.remoteIndex = consumed.remoteIndex;
    hs.localEphemeral = null;
    hs.lastTimestamp.set(consumed.timestamp);
    hs.lastInitiationConsumption = now;

    this.setEndpoint(peer, src);
    this.timersAnyAuthenticatedPacketTraversal(peer, now);
    this.timersAnyAuthenticatedPacketReceived(peer);
    const r = this.result;
    r.peer = peerIndex;
    if (!this.sendResponse(peer, now, r.datagrams)) return this.drop(WgDrop.HandshakeFailed);
    r.kind = 'send';
    return r;
  }

  private receiveResponse(msg: Uint8Array, src: UdpEndpoint, now: number): ReceiveResult {
    const admit = this.admitHandshake(msg, RESP_MAC1_OFF, RESP_MAC2_OFF, src, now);
    if (admit !== WgDrop.None) return this.refuseHandshake(admit);
    const receiver = readU32LE(msg, RESP_RECEIVER_OFF);
    const slot = this.lookupIndex(receiver);
    if (slot < 0) return this.dropUnknownIndex(receiver);
    if (this.slotKeypair[slot] !== null) return this.drop(WgDrop.UnknownIndex);
    const peer = this.peers[this.slotPeer[slot]]!;
    const hs = peer.initiation;
    if (!peer.initiationIndexLive || hs.state !== HandshakeState.InitiationCreated || hs.localIndex !== receiver) return this.drop(WgDrop.UnexpectedResponse);
    if (!consumeResponse(this.identity, peer.keys, hs, msg)) return this.drop(WgDrop.HandshakeFailed);

    this.setEndpoint(peer, src);
    this.timersAnyAuthenticatedPacketTraversal(peer, now);
    this.timersAnyAuthenticatedPacketReceived(peer);
    this.beginSymmetricSession(peer, hs, now);
    this.timersSessionDerived(peer, now);
    this.timersHandshakeComplete(peer, now);
    const r = this.result;
    r.peer = peer.index;
    // Confirm the session to the responder at once: staged data, or a keepalive (wireguard-go SendKeepalive).
    this.sendKeepalive(peer, now, r.datagrams);
    r.kind = r.datagrams.length > 0 ? 'send' : 'none';
    return r;
  }

  private receiveCookieReply(msg: Uint8Array, now: number): ReceiveResult {
    const receiver = readU32LE(msg, COOKIE_RECEIVER_OFF);
    const slot = this.lookupIndex(receiver);
    if (slot < 0) return this.dropUnknownIndex(receiver);
    const peer = this.peers[this.slotPeer[slot]]!;
    if (!peer.cookies.consumeReply(msg, peer.keys.cookieKey, now)) return this.drop(WgDrop.CookieFailed);
    this.result.peer = peer.index;
    return this.result;
  }

  /** One transport message through the same two phases as a batch, opened in a copy (the caller's stays as it was). */
  private receiveTransport(msg: Uint8Array, src: UdpEndpoint, now: number): ReceiveResult {
    const slot = this.prepareOpen(msg, 0, msg.length, now);
    if (slot < 0) return this.result;
    const copy = new Uint8Array(msg.length);
    copy.set(msg);
    const one = this.one;
    one.clear();
    one.push(0, copy.length, slot, 0);
    this.aead.open(copy, one);
    const r = this.finishOpen(copy, 0, copy.length, one.status[0], src, now);
    if (r.kind === 'data') r.packet = new Uint8Array(copy.buffer, r.packetOffset, r.packetLength);
    return r;
  }

  /**
   * First half of receiving a transport message (type 4) at data[off, off + len), for a caller that opens them
   * in batches: finds the session by receiver index and refuses, before any decryption, an expired session and a
   * counter the replay window already holds (§5.4.6: the window itself moves only in finishOpen, after the
   * message authenticated). Returns the AEAD key slot to open the message with, or minus the WgDrop reason
   * (counted; WgDrop.Revoked for a removed or re-keyed peer). No allocation.
   */
  prepareOpen(data: Uint8Array, off: number, len: number, now: number): number {
    if (len < DATA_MIN_LEN) return -this.drop(WgDrop.Truncated).reason;
    if (readU32LE(data, off) !== MSG_TRANSPORT) return -this.drop(WgDrop.UnknownType).reason;
    const receiver = readU32LE(data, off + DATA_RECEIVER_OFF);
    const slot = this.lookupIndex(receiver);
    if (slot < 0) return -this.dropUnknownIndex(receiver).reason;
    const kp = this.slotKeypair[slot];
    if (kp === null) return -this.drop(WgDrop.UnknownIndex).reason;
    if (now - kp.created >= REJECT_AFTER_TIME_MS) return -this.drop(WgDrop.KeyExpired).reason;
    if (readU32LE(data, off + DATA_COUNTER_OFF + 4) >= COUNTER_HIGH_WORD_LIMIT) return -this.drop(WgDrop.Replay).reason;
    // Cheap check first so replays cost no decryption.
    if (!kp.replay.check(headerCounter(data, off), RECEIVE_COUNTER_LIMIT)) return -this.drop(WgDrop.Replay).reason;
    return slot;
  }

  /**
   * Second half: the message prepareOpen() gave a slot for, after the AEAD opened it in place with `status`. On
   * success the replay window takes the counter (a second copy in the same batch is refused here), the session
   * is confirmed, timers run, and a 'data' result locates the inner packet in `data` (packetOffset, packetLength:
   * the padding cut off). Datagrams to send (staged packets on a confirmed session, a rekey) come in `datagrams`.
   */
  finishOpen(data: Uint8Array, off: number, len: number, status: number, src: UdpEndpoint, now: number): ReceiveResult {
    const r = this.freshResult();
    const receiver = readU32LE(data, off + DATA_RECEIVER_OFF);
    const slot = this.lookupIndex(receiver);
    // The session may have ended between the two halves (a handshake in the same batch rotated it out).
    if (slot < 0) return this.dropUnknownIndex(receiver);
    const kp = this.slotKeypair[slot];
    if (kp === null) return this.drop(WgDrop.UnknownIndex);
    if (status !== CryptoStatus.Ok) return this.drop(WgDrop.DecryptFailed);
    if (!kp.replay.update(headerCounter(data, off), RECEIVE_COUNTER_LIMIT)) return this.drop(WgDrop.Replay);

    const peer = this.peers[this.slotPeer[slot]]!;
    r.peer = peer.index;
    if (peer.next === kp) {
      // First packet on the responder's new session confirms it (§5.4.5, wireguard-go ReceivedWithKeypair).
      this.displace(peer, peer.previous, now);
      peer.previous = peer.current;
      peer.current = kp;
      peer.next = null;
      this.timersHandshakeComplete(peer, now);
      this.sendStaged(peer, now, r.datagrams);
    }
    this.keepKeyFreshReceiving(peer, now, r.datagrams);
    this.timersAnyAuthenticatedPacketTraversal(peer, now);
    this.timersAnyAuthenticatedPacketReceived(peer);
    this.setEndpoint(peer, src);
    peer.rxBytes += len;
    const plainOff = off + DATA_HEADER_LEN;
    const plainLen = len - DATA_MIN_LEN;
    if (plainLen === 0) return r; // keepalive (§6.5)
    this.timersDataReceived(peer, now);
    const ipLen = innerPacketLength(data, plainLen, plainOff);
    if (ipLen < 0) return this.drop(WgDrop.BadInnerPacket);
    if (this.checkSources && !this.allowed.sourceAllowed(data.subarray(plainOff, plainOff + ipLen), ipLen, peer.index)) return this.drop(WgDrop.AllowedIpsMismatch);
    r.kind = 'data';
    r.packetOffset = plainOff;
    r.packetLength = ipLen;
    return r;
  }

  // --- send -------------------------------------------------------------------------------------------------

  /**
   * Encrypts an IP packet for `peerIndex`. Returns the datagrams to send now (the transport packet, and maybe a
   * handshake initiation); when no session is ready the packet is staged (at most 128, oldest dropped) and a
   * handshake starts. The array is reused by the next send().
   */
  send(peerIndex: number, packet: Uint8Array, now: number): Outgoing[] {
    const out = this.sendOut;
    out.length = 0;
    const peer = this.peers[peerIndex];
    if (peer === undefined || peer === null) {
      this.drops[WgDrop.NoPeer]++;
      return out;
    }
    if (packet.length > MAX_PACKET_LEN) {
      this.drops[WgDrop.TooBig]++;
      return out;
    }
    const kp = peer.current;
    if (peer.staged.length === 0 && kp !== null && this.usable(kp, now)) {
      this.encryptAndQueue(peer, kp, packet, now, out);
      this.keepKeyFreshSending(peer, now, out);
      return out;
    }
    this.stage(peer, packet.slice());
    this.sendStaged(peer, now, out);
    return out;
  }

  private usable(kp: Keypair, now: number): boolean {
    return kp.sendCounter < RECEIVE_COUNTER_LIMIT && now - kp.created < REJECT_AFTER_TIME_MS;
  }

  private stage(peer: Peer, packet: Uint8Array): void {
    if (peer.staged.length >= MAX_STAGED_PACKETS) {
      peer.staged.shift();
      this.drops[WgDrop.QueueFull]++;
    }
    peer.staged.push(packet);
  }

  /** wireguard-go SendStagedPackets: encrypt what waits if a session is usable, else ask for a handshake. */
  private sendStaged(peer: Peer, now: number, out: Outgoing[]): void {
    if (peer.staged.length === 0) return;
    const kp = peer.current;
    if (kp === null || !this.usable(kp, now)) {
      this.sendInitiation(peer, now, false, out);
      return;
    }
    const staged = peer.staged;
    peer.staged = [];
    for (let i = 0; i < staged.length; i++) this.encryptAndQueue(peer, kp, staged[i], now, out);
    this.keepKeyFreshSending(peer, now, out);
  }

  /** One packet sealed in a datagram of its own (staged packets, keepalives, a caller without batches). */
  private encryptAndQueue(peer: Peer, kp: Keypair, packet: Uint8Array, now: number, out: Outgoing[]): void {
    if (peer.endpoint === null) {
      this.drops[WgDrop.NoEndpoint]++;
      return;
    }
    const len = packet.length;
    // Zero-filled, so the §5.4.6 padding to 16 bytes is already there.
    const datagram = new Uint8Array(sealedLength(len));
    this.writeTransportHeader(datagram, 0, kp);
    datagram.set(packet, DATA_HEADER_LEN);
    const one = this.one;
    one.clear();
    one.push(0, datagram.length, kp.slot, 0);
    if (this.aead.seal(datagram, one) !== 1) {
      this.drops[WgDrop.SealFailed]++;
      return;
    }
    out.push({ data: datagram, endpoint: peer.endpoint, peer: peer.index });
    this.transportSent(peer, len, datagram.length, now);
  }

  /**
   * Fast path of send() for a caller that seals whole batches in its own buffer: when `peerIndex` has a usable
   * session, nothing staged and an endpoint, writes the transport header (type 4, receiver index, counter) at
   * data[off - 16, off), zeroes the padding after the packet (§5.4.6, to 16 bytes), takes the counter and runs
   * the timers as send() does. The caller then seals data[off - 16, off - 16 + ticket.length) with the returned
   * key slot (`ticket` says where to send it); it must have room for the header before and the padding and tag
   * after (sealedLength). `out` receives a handshake initiation when the session wants rekeying. Returns -1,
   * having changed nothing, when the packet must go through send() instead (no session yet, packets staged, no
   * endpoint, no such peer, too big). No allocation.
   */
  prepareSeal(peerIndex: number, data: Uint8Array, off: number, len: number, now: number, out: Outgoing[]): number {
    const peer = this.peers[peerIndex];
    if (peer === undefined || peer === null || len > MAX_PACKET_LEN || peer.endpoint === null || peer.staged.length !== 0) return -1;
    const kp = peer.current;
    if (kp === null || !kp.keysLive || !this.usable(kp, now)) return -1;
    const at = off - DATA_HEADER_LEN;
    const total = sealedLength(len);
    this.writeTransportHeader(data, at, kp);
    data.fill(0, off + len, at + total - AEAD_TAG_LEN);
    const t = this.ticket;
    t.slot = kp.slot;
    t.length = total;
    t.endpoint = peer.endpoint;
    this.transportSent(peer, len, total, now);
    this.keepKeyFreshSending(peer, now, out);
    return kp.slot;
  }

  /** The last prepareSeal()'s decision. */
  get sealTicket(): Readonly<SealTicket> {
    return this.ticket;
  }

  /** §5.4.6 header: type 4, the peer's index for the session, the next counter (64-bit little-endian). */
  private writeTransportHeader(data: Uint8Array, at: number, kp: Keypair): void {
    const counter = kp.sendCounter++;
    writeU32LE(data, at, MSG_TRANSPORT);
    writeU32LE(data, at + DATA_RECEIVER_OFF, kp.remoteIndex);
    writeU32LE(data, at + DATA_COUNTER_OFF, counter >>> 0);
    writeU32LE(data, at + DATA_COUNTER_OFF + 4, Math.floor(counter / 0x1_0000_0000) >>> 0);
  }

  private transportSent(peer: Peer, len: number, total: number, now: number): void {
    peer.txBytes += total;
    this.timersAnyAuthenticatedPacketTraversal(peer, now);
    this.timersAnyAuthenticatedPacketSent(peer);
    if (len > 0) this.timersDataSent(peer, now);
  }

  /** §6.2: the initiator rekeys after Rekey-After-Time or Rekey-After-Messages (wireguard-go keepKeyFreshSending). */
  private keepKeyFreshSending(peer: Peer, now: number, out: Outgoing[]): void {
    const kp = peer.current;
    if (kp === null) return;
    if (kp.sendCounter > REKEY_AFTER_MESSAGES || (kp.isInitiator && now - kp.created > REKEY_AFTER_TIME_MS)) {
      this.sendInitiation(peer, now, false, out);
    }
  }

  /**
   * §6.2: if the initiator's session is close to Reject-After-Time when data arrives, rekey now, once
   * (Reject-After-Time − Keepalive-Timeout − Rekey-Timeout).
   */
  private keepKeyFreshReceiving(peer: Peer, now: number, out: Outgoing[]): void {
    if (peer.sentLastMinuteHandshake) return;
    const kp = peer.current;
    if (kp !== null && kp.isInitiator && now - kp.created > REJECT_AFTER_TIME_MS - KEEPALIVE_TIMEOUT_MS - REKEY_TIMEOUT_MS) {
      peer.sentLastMinuteHandshake = true;
      this.sendInitiation(peer, now, false, out);
    }
  }

  private sendKeepalive(peer: Peer, now: number, out: Outgoing[]): void {
    if (peer.staged.length === 0) peer.staged.push(new Uint8Array(0));
    this.sendStaged(peer, now, out);
  }

  // --- handshakes -------------------------------------------------------------------------------------------

  /**
   * Sends an initiation unless one handshake message (initiation or response) went out less than Rekey-Timeout
   * ago (§6.1; wireguard-go SendHandshakeInitiation): then returns false and sends nothing.
   */
  private sendInitiation(peer: Peer, now: number, isRetry: boolean, out: Outgoing[]): boolean {
    if (!isRetry) peer.handshakeAttempts = 0;
    if (now - peer.handshake.lastSentHandshake < REKEY_TIMEOUT_MS) return false;
    if (peer.endpoint === null) {
      this.drops[WgDrop.NoEndpoint]++;
      return true;
    }
    peer.handshake.lastSentHandshake = now;
    const hs = peer.initiation;
    this.releaseInitiationIndex(peer);
    const index = this.allocIndex(peer.index, null);
    if (index < 0) return true;
    peer.initiationIndexLive = true;
    const msg = new Uint8Array(INIT_LEN);
    this.randomFill(this.random32);
    const timestamp = tai64n(this.wallClock(now));
    // A wall clock that stepped back must not make our initiations look replayed to the peer (§5.1).
    if (!timestampAfter(timestamp, peer.lastSentTimestamp)) nextTimestamp(peer.lastSentTimestamp, timestamp);
    peer.lastSentTimestamp.set(timestamp);
    if (!createInitiation(this.identity, peer.keys, hs, index, this.random32, timestamp, msg)) {
      this.random32.fill(0);
      this.releaseInitiationIndex(peer);
      this.drops[WgDrop.HandshakeFailed]++;
      return true;
    }
    this.random32.fill(0);
    peer.cookies.addMacs(msg, INIT_MAC1_OFF, peer.keys.mac1Key, now);
    this.timersAnyAuthenticatedPacketTraversal(peer, now);
    this.timersAnyAuthenticatedPacketSent(peer);
    out.push({ data: msg, endpoint: peer.endpoint, peer: peer.index });
    this.timersHandshakeInitiated(peer, now);
    return true;
  }

  private sendResponse(peer: Peer, now: number, out: Outgoing[]): boolean {
    const hs = peer.handshake;
    hs.lastSentHandshake = now;
    const index = this.allocIndex(peer.index, null);
    if (index < 0) return false;
    peer.handshakeIndexLive = true;
    const msg = new Uint8Array(RESP_LEN);
    this.randomFill(this.random32);
    const ok = createResponse(peer.keys, hs, index, this.random32, msg);
    this.random32.fill(0);
    if (!ok) {
      this.releaseHandshakeIndex(peer);
      hs.clear();
      return false;
    }
    peer.cookies.addMacs(msg, RESP_MAC1_OFF, peer.keys.mac1Key, now);
    this.beginSymmetricSession(peer, hs, now);
    this.timersSessionDerived(peer, now);
    this.timersAnyAuthenticatedPacketTraversal(peer, now);
    this.timersAnyAuthenticatedPacketSent(peer);
    if (peer.endpoint !== null) out.push({ data: msg, endpoint: peer.endpoint, peer: peer.index });
    return true;
  }

  /**
   * §5.4.5 and wireguard-go BeginSymmetricSession: derive the keypair of the completed handshake `hs` (our
   * initiation, its response consumed; or the peer's initiation, our response created) and rotate
   * current/previous/next.
   */
  private beginSymmetricSession(peer: Peer, hs: Handshake, now: number): void {
    const isInitiator = hs.state === HandshakeState.ResponseConsumed;
    const [sendRaw, recvRaw] = deriveTransportKeys(hs, isInitiator);
    const slot = hs.localIndex & SLOT_MASK;
    // The AEAD keeps its own copy of the keys (the addon's, outside the JS heap); ours are gone at once.
    try {
      this.aead.install(slot, sendRaw, recvRaw);
    } finally {
      sendRaw.fill(0);
      recvRaw.fill(0);
    }
    const kp = new Keypair(slot, now, isInitiator, hs.localIndex, hs.remoteIndex);
    // The handshake's index now names the session.
    this.slotKeypair[slot] = kp;
    if (isInitiator) peer.initiationIndexLive = false;
    else peer.handshakeIndexLive = false;
    hs.clear();
    // wireguard-go's rotation; what it drops is displaced instead (DISPLACED_GRACE_MS), except a `next` the peer
    // never confirmed.
    if (isInitiator) {
      if (peer.next !== null) {
        this.displace(peer, peer.previous, now);
        peer.previous = peer.next;
        peer.next = null;
        this.displace(peer, peer.current, now);
      } else {
        this.displace(peer, peer.previous, now);
        peer.previous = peer.current;
      }
      peer.current = kp;
    } else {
      this.dropKeypair(peer.next);
      peer.next = kp;
      this.displace(peer, peer.previous, now);
      peer.previous = null;
    }
  }

  private dropKeypair(kp: Keypair | null): void {
    if (kp !== null) this.freeIndex(kp.localIndex);
  }

  /** Keeps a session receivable for DISPLACED_GRACE_MS (capped at its Reject-After-Time); the oldest held goes first. */
  private displace(peer: Peer, kp: Keypair | null, now: number): void {
    if (kp === null) return;
    let i = peer.displaced.indexOf(null);
    if (i < 0) {
      i = 0;
      for (let j = 1; j < DISPLACED_SLOTS; j++) if (peer.displacedUntil[j] < peer.displacedUntil[i]) i = j;
      this.dropKeypair(peer.displaced[i]);
    }
    peer.displaced[i] = kp;
    peer.displacedUntil[i] = Math.min(now + DISPLACED_GRACE_MS, kp.created + REJECT_AFTER_TIME_MS);
  }

  /** Drops the displaced sessions whose grace is over (all of them with `now` = Infinity). */
  private dropDisplaced(peer: Peer, now: number): void {
    for (let i = 0; i < DISPLACED_SLOTS; i++) {
      if (peer.displaced[i] !== null && peer.displacedUntil[i] <= now) {
        this.dropKeypair(peer.displaced[i]);
        peer.displaced[i] = null;
        peer.displacedUntil[i] = NEVER;
      }
    }
  }

  /** The session's keys leave the AEAD (its end, or Reject-After-Time: nothing may be sealed or opened with them). */
  private retireKeys(kp: Keypair): void {
    if (!kp.keysLive) return;
    kp.keysLive = false;
    this.aead.remove(kp.slot);
  }

  /** §6.1: a session older than Reject-After-Time neither sends nor receives: its keys go from the AEAD now. */
  private expireKeys(peer: Peer, now: number): void {
    if (peer.previous !== null && now - peer.previous.created >= REJECT_AFTER_TIME_MS) this.retireKeys(peer.previous);
    if (peer.current !== null && now - peer.current.created >= REJECT_AFTER_TIME_MS) this.retireKeys(peer.current);
    if (peer.next !== null && now - peer.next.created >= REJECT_AFTER_TIME_MS) this.retireKeys(peer.next);
  }

  /** When the next of the peer's sessions reaches Reject-After-Time (NEVER when none holds keys). */
  private keysExpireAt(peer: Peer): number {
    let t = NEVER;
    if (peer.previous !== null && peer.previous.keysLive) t = Math.min(t, peer.previous.created + REJECT_AFTER_TIME_MS);
    if (peer.current !== null && peer.current.keysLive) t = Math.min(t, peer.current.created + REJECT_AFTER_TIME_MS);
    if (peer.next !== null && peer.next.keysLive) t = Math.min(t, peer.next.created + REJECT_AFTER_TIME_MS);
    return t;
  }

  private releaseHandshakeIndex(peer: Peer): void {
    if (peer.handshakeIndexLive) {
      this.freeIndex(peer.handshake.localIndex);
      peer.handshakeIndexLive = false;
    }
  }

  private releaseInitiationIndex(peer: Peer): void {
    if (peer.initiationIndexLive) {
      this.freeIndex(peer.initiation.localIndex);
      peer.initiationIndexLive = false;
    }
  }

  private setEndpoint(peer: Peer, src: UdpEndpoint): void {
    // Roaming (§2.1): the last authenticated source is where we answer. A new record only when it moved.
    if (peer.endpoint === null || !peer.endpoint.equals(src)) peer.endpoint = src.copy();
  }

  // --- timers (§6; wireguard-go timers.go) ------------------------------------------------------------------

  private jitter(): number {
    this.randomFill(this.random16Bytes);
    return this.random16[0] % REKEY_TIMEOUT_JITTER_MAX_MS;
  }

  private timersDataSent(peer: Peer, now: number): void {
    if (peer.newHandshakeAt === NEVER) peer.newHandshakeAt = now + KEEPALIVE_TIMEOUT_MS + REKEY_TIMEOUT_MS + this.jitter();
  }

  private timersDataReceived(peer: Peer, now: number): void {
    if (peer.sendKeepaliveAt === NEVER) peer.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT_MS;
    else peer.needAnotherKeepalive = true;
  }

  private timersAnyAuthenticatedPacketSent(peer: Peer): void {
    peer.sendKeepaliveAt = NEVER;
  }

  private timersAnyAuthenticatedPacketReceived(peer: Peer): void {
    peer.newHandshakeAt = NEVER;
  }

  private timersHandshakeInitiated(peer: Peer, now: number): void {
    peer.retransmitHandshakeAt = now + REKEY_TIMEOUT_MS + this.jitter();
  }

  private timersHandshakeComplete(peer: Peer, now: number): void {
    peer.retransmitHandshakeAt = NEVER;
    peer.handshakeAttempts = 0;
    peer.sentLastMinuteHandshake = false;
    peer.lastHandshakeAt = now;
  }

  private timersSessionDerived(peer: Peer, now: number): void {
    peer.zeroKeyMaterialAt = now + ZERO_KEY_MATERIAL_MS;
  }

  private timersAnyAuthenticatedPacketTraversal(peer: Peer, now: number): void {
    if (peer.persistentKeepaliveMs > 0) peer.persistentKeepaliveAt = now + peer.persistentKeepaliveMs;
  }

  /** The earliest time poll() has work, or Infinity. */
  nextDeadline(): number {
    let t = NEVER;
    for (const p of this.peers) {
      if (p === null) continue;
      t = Math.min(t, p.retransmitHandshakeAt, p.sendKeepaliveAt, p.newHandshakeAt, p.zeroKeyMaterialAt, p.persistentKeepaliveAt, this.keysExpireAt(p));
      for (let i = 0; i < DISPLACED_SLOTS; i++) t = Math.min(t, p.displacedUntil[i]);
    }
    return t;
  }

  /** Runs every timer due at `now`; returns the datagrams to send (reused by the next poll()). */
  poll(now: number): Outgoing[] {
    const out = this.pollOut;
    out.length = 0;
    for (const peer of this.peers) {
      if (peer === null) continue;
      if (peer.retransmitHandshakeAt <= now) {
        peer.retransmitHandshakeAt = NEVER;
        if (peer.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
          // §6.4: give up after Rekey-Attempt-Time; discard what waited for the session.
          peer.sendKeepaliveAt = NEVER;
          this.drops[WgDrop.HandshakeTimeout] += peer.staged.length;
          peer.staged = [];
          if (peer.zeroKeyMaterialAt === NEVER) peer.zeroKeyMaterialAt = now + ZERO_KEY_MATERIAL_MS;
        } else if (this.sendInitiation(peer, now, true, out)) {
          peer.handshakeAttempts++;
        } else {
          // Held back: we answered a handshake less than Rekey-Timeout ago. wireguard-go (expiredRetransmitHandshake
          // → SendHandshakeInitiation returning early, nothing re-armed) and the Linux driver (send.c, "rate
          // limited") drop the retry here; when both ends initiated at once and each refused the other's answer,
          // neither would try again until new data or a persistent keepalive. Deferred instead, with fresh jitter,
          // and not counted as an attempt.
          peer.retransmitHandshakeAt = peer.handshake.lastSentHandshake + REKEY_TIMEOUT_MS + this.jitter();
        }
      }
      if (peer.sendKeepaliveAt <= now) {
        peer.sendKeepaliveAt = NEVER;
        this.sendKeepalive(peer, now, out);
        if (peer.needAnotherKeepalive) {
          peer.needAnotherKeepalive = false;
          peer.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT_MS;
        }
      }
      if (peer.newHandshakeAt <= now) {
        // Sent data and heard nothing back for Keepalive-Timeout + Rekey-Timeout: the session may be dead.
        peer.newHandshakeAt = NEVER;
        this.sendInitiation(peer, now, false, out);
      }
      if (peer.zeroKeyMaterialAt <= now) {
        peer.zeroKeyMaterialAt = NEVER;
        this.dropKeypair(peer.previous);
        this.dropKeypair(peer.current);
        this.dropKeypair(peer.next);
        this.dropDisplaced(peer, Infinity);
        peer.previous = peer.current = peer.next = null;
        this.releaseHandshakeIndex(peer);
        this.releaseInitiationIndex(peer);
        peer.handshake.clear();
        peer.initiation.clear();
      }
      if (peer.persistentKeepaliveAt <= now) {
        peer.persistentKeepaliveAt = NEVER;
        if (peer.persistentKeepaliveMs > 0) this.sendKeepalive(peer, now, out);
      }
      this.dropDisplaced(peer, now);
      this.expireKeys(peer, now);
    }
    return out;
  }

  // --- index table ------------------------------------------------------------------------------------------

  private allocIndex(peer: number, kp: Keypair | null): number {
    if (this.freeTop === 0) return -1;
    const slot = this.freeSlots[--this.freeTop];
    this.randomFill(this.random16Bytes);
    const index = ((this.random16[0] << INDEX_SLOT_BITS) | slot) >>> 0;
    this.slotIndex[slot] = index;
    this.slotPeer[slot] = peer;
    this.slotKeypair[slot] = kp;
    this.slotRevoked[slot] = -1;
    return index;
  }

  private freeIndex(index: number): void {
    const slot = index & SLOT_MASK;
    if (this.slotPeer[slot] < 0 || this.slotIndex[slot] !== index) return;
    const kp = this.slotKeypair[slot];
    if (kp !== null) this.retireKeys(kp);
    this.slotPeer[slot] = -1;
    this.slotKeypair[slot] = null;
    this.freeSlots[this.freeTop++] = slot;
  }

  /** The slot of a live receiver index, or -1. */
  private lookupIndex(index: number): number {
    const slot = index & SLOT_MASK;
    return this.slotPeer[slot] >= 0 && this.slotIndex[slot] === index ? slot : -1;
  }
}

const ZERO_KEY = new Uint8Array(KEY_LEN);

/** A public key as a map key (control plane and handshakes only). */
function keyId(publicKey: Uint8Array): string {
  return Buffer.from(publicKey).toString('base64');
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Zeroes a peer's key material (wireguard-go RemovePeer → ZeroAndFlushAll). */
function zeroKeys(keys: PeerKeys): void {
  keys.remoteStatic.fill(0);
  keys.presharedKey.fill(0);
  keys.staticStatic?.fill(0);
  keys.mac1Key.fill(0);
  keys.cookieKey.fill(0);
  keys.initialHash.fill(0);
}

/** Source address bytes || port (little-endian), what cookies are bound to (§5.4.7; wireguard-go DstToBytes). */
function sourceBytes(src: UdpEndpoint): Uint8Array {
  const words = src.family === AF_INET4 ? 1 : 4;
  const out = new Uint8Array(words * 4 + 2);
  for (let i = 0; i < words; i++) write32(out, i * 4, src.addr[i]);
  out[words * 4] = src.port & 0xff;
  out[words * 4 + 1] = (src.port >>> 8) & 0xff;
  return out;
}

/** The rate limiter's key for a source address (handshake path, under load only: a string for IPv6 is fine). */
function rateLimitKey(src: UdpEndpoint): number | string {
  return src.family === AF_INET4 ? src.addr[0] : src.addressText();
}
