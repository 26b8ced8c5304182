/**
 * The Noise_IKpsk2 handshake of WireGuard (whitepaper §5.4.2 initiation, §5.4.3 response, §5.4.5 transport
 * keys) and the mac1/mac2/cookie layer (§5.4.4, §5.4.7). Pure functions over message bytes and per-peer
 * state; the device (device.ts) decides when to call them. Handshake path only: these allocate freely.
 *
 * Notation follows the whitepaper: C = chaining key, H = hash, HASH/MAC/HMAC/KDFn/AEAD/XAEAD from crypto.ts.
 */
import type { KeyObject } from 'node:crypto';
import {
  AEAD_TAG_LEN,
  CONSTRUCTION,
  COOKIE_ENC_OFF,
  COOKIE_LEN,
  COOKIE_NONCE_LEN,
  COOKIE_NONCE_OFF,
  COOKIE_RECEIVER_OFF,
  COOKIE_REFRESH_TIME_MS,
  COOKIE_REPLY_LEN,
  IDENTIFIER,
  INIT_EPHEMERAL_OFF,
  INIT_LEN,
  INIT_MAC1_OFF,
  INIT_SENDER_OFF,
  INIT_STATIC_OFF,
  INIT_TIMESTAMP_OFF,
  KEY_LEN,
  LABEL_COOKIE,
  LABEL_MAC1,
  MAC_LEN,
  MSG_COOKIE_REPLY,
  MSG_INITIATION,
  MSG_RESPONSE,
  RESP_EMPTY_OFF,
  RESP_EPHEMERAL_OFF,
  RESP_LEN,
  RESP_MAC1_OFF,
  RESP_RECEIVER_OFF,
  RESP_SENDER_OFF,
  TIMESTAMP_LEN,
} from './constants.js';
import {
  aeadOpen,
  aeadSealInto,
  dh,
  equalBytes,
  hash,
  kdf,
  mac,
  privateKeyObject,
  publicKeyOf,
  xaeadOpen,
  xaeadSeal,
} from './crypto.js';

const TEXT = new TextEncoder();
const EMPTY = new Uint8Array(0);
/** C0 = HASH(CONSTRUCTION); H0 = HASH(C0 || IDENTIFIER) (§5.4.2). */
export const INITIAL_CHAIN_KEY = hash(TEXT.encode(CONSTRUCTION));
export const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, TEXT.encode(IDENTIFIER));
const LABEL_MAC1_BYTES = TEXT.encode(LABEL_MAC1);
const LABEL_COOKIE_BYTES = TEXT.encode(LABEL_COOKIE);

export function writeU32LE(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

export function readU32LE(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

/** Our long-term identity and the keys derived from it once. */
export class StaticIdentity {
  readonly privateKey: KeyObject;
  readonly publicKey: Uint8Array;
  /** HASH(LABEL_MAC1 || our public key): peers key mac1 of messages to us with it (§5.4.4). */
  readonly mac1Key: Uint8Array;
  /** HASH(LABEL_COOKIE || our public key): we encrypt cookie replies with it (§5.4.7). */
  readonly cookieKey: Uint8Array;
  /** H after mixing our public key in, the responder's starting hash (§5.4.2). */
  readonly initialHashForUs: Uint8Array;

  constructor(privateRaw: Uint8Array) {
    this.privateKey = privateKeyObject(privateRaw);
    this.publicKey = publicKeyOf(this.privateKey);
    this.mac1Key = hash(LABEL_MAC1_BYTES, this.publicKey);
    this.cookieKey = hash(LABEL_COOKIE_BYTES, this.publicKey);
    this.initialHashForUs = hash(INITIAL_HASH, this.publicKey);
  }
}

/** What we know of one peer's keys, computed once when it is configured. */
export class PeerKeys {
  readonly remoteStatic: Uint8Array;
  readonly presharedKey: Uint8Array;
  /** DH(our static, their static), computed once (wireguard-go precomputedStaticStatic); null if unusable. */
  readonly staticStatic: Uint8Array | null;
  readonly mac1Key: Uint8Array;
  readonly cookieKey: Uint8Array;
  readonly initialHash: Uint8Array;

  constructor(id: StaticIdentity, remoteStatic: Uint8Array, presharedKey: Uint8Array | null) {
    this.remoteStatic = new Uint8Array(remoteStatic);
    this.presharedKey = presharedKey ? new Uint8Array(presharedKey) : new Uint8Array(KEY_LEN);
    this.staticStatic = dh(id.privateKey, remoteStatic);
    this.mac1Key = hash(LABEL_MAC1_BYTES, remoteStatic);
    this.cookieKey = hash(LABEL_COOKIE_BYTES, remoteStatic);
    this.initialHash = hash(INITIAL_HASH, remoteStatic);
  }
}

export const enum HandshakeState {
  Zeroed = 0,
  InitiationCreated = 1,
  InitiationConsumed = 2,
  ResponseCreated = 3,
  ResponseConsumed = 4,
}

/** Per-peer handshake state (wireguard-go device.Handshake). Times are ms on the caller's clock. */
export class Handshake {
  state = HandshakeState.Zeroed;
  hash: Uint8Array = new Uint8Array(KEY_LEN);
  chainKey: Uint8Array = new Uint8Array(KEY_LEN);
  localEphemeral: KeyObject | null = null;
  remoteEphemeral = new Uint8Array(KEY_LEN);
  localIndex = 0;
  remoteIndex = 0;
  /** Greatest TAI64N timestamp accepted from this peer: initiations must carry a larger one (§5.1). */
  lastTimestamp = new Uint8Array(TIMESTAMP_LEN);
  lastInitiationConsumption = -Infinity;
  lastSentHandshake = -Infinity;

  clear(): void {
    this.state = HandshakeState.Zeroed;
    this.hash.fill(0);
    this.chainKey.fill(0);
    this.localEphemeral = null;
    this.remoteEphemeral.fill(0);
    this.localIndex = 0;
    this.remoteIndex = 0;
  }
}

/**
 * TAI64N of a Unix time in ms (§5.4.2 "TIMESTAMP()"): 8-byte big-endian 2^62 + 10 + seconds, then 4-byte
 * big-endian nanoseconds. Like wireguard-go, the nanoseconds are rounded down to 2^24 ns (~16.8 ms) so the
 * timestamp does not leak a precise clock.
 */
export function tai64n(unixMs: number, out: Uint8Array = new Uint8Array(TIMESTAMP_LEN)): Uint8Array {
  const secs = Math.floor(unixMs / 1000) + 10;
  const hi = 0x40000000 + Math.floor(secs / 0x1_0000_0000);
  const lo = secs >>> 0;
  const nanos = (Math.floor(unixMs - Math.floor(unixMs / 1000) * 1000) * 1_000_000) & ~0xffffff;
  const view = new DataView(out.buffer, out.byteOffset, TIMESTAMP_LEN);
  view.setUint32(0, hi >>> 0);
  view.setUint32(4, lo);
  view.setUint32(8, nanos >>> 0);
  return out;
}

/** Bytes of TAI64N's seconds field; the 4-byte nanoseconds follow. */
const TAI64N_NANOS_OFF = 8;
/** tai64n()'s resolution: nanoseconds are multiples of 2^24 (the whitening above). */
const TAI64N_NANOS_STEP = 0x1000000;
const NANOS_PER_SECOND = 1_000_000_000;

/**
 * Writes into `out` the smallest timestamp tai64n() can produce that is after `last`: one resolution step
 * later, carried into the seconds at a second's end. An initiation built when the wall clock has stepped back
 * carries it, so the peer still sees our timestamps grow (§5.1: it refuses one not greater than the last).
 */
export function nextTimestamp(last: Uint8Array, out: Uint8Array): Uint8Array {
  const src = new DataView(last.buffer, last.byteOffset, TIMESTAMP_LEN);
  const dst = new DataView(out.buffer, out.byteOffset, TIMESTAMP_LEN);
  let hi = src.getUint32(0);
  let lo = src.getUint32(4);
  let nanos = src.getUint32(TAI64N_NANOS_OFF) + TAI64N_NANOS_STEP;
  if (nanos >= NANOS_PER_SECOND) {
    nanos = 0;
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi = (hi + 1) >>> 0;
  }
  dst.setUint32(0, hi);
  dst.setUint32(4, lo);
  dst.setUint32(TAI64N_NANOS_OFF, nanos);
  return out;
}

/** Big-endian byte comparison: true when a > b. */
export function timestampAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TIMESTAMP_LEN; i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return false;
}

// --- initiation (§5.4.2) -------------------------------------------------------------------------------------

/**
 * Builds a handshake initiation into `out` (148 bytes, macs not yet written) and leaves `hs` in
 * InitiationCreated. `ephemeralRaw` is 32 fresh random bytes. False when a DH fails (a bad peer key).
 */
export function createInitiation(
  id: StaticIdentity,
  peer: PeerKeys,
  hs: Handshake,
  localIndex: number,
  ephemeralRaw: Uint8Array,
  timestamp: Uint8Array,
  out: Uint8Array,
): boolean {
  if (!peer.staticStatic) return false;
  const ephemeral = privateKeyObject(ephemeralRaw);
  const ephemeralPub = publicKeyOf(ephemeral);
  out.fill(0, 0, INIT_LEN);
  writeU32LE(out, 0, MSG_INITIATION);
  writeU32LE(out, INIT_SENDER_OFF, localIndex);
  out.set(ephemeralPub, INIT_EPHEMERAL_OFF);

  let c = INITIAL_CHAIN_KEY;
  let h = peer.initialHash;
  [c] = kdf(1, c, ephemeralPub);
  h = hash(h, ephemeralPub);
  const es = dh(ephemeral, peer.remoteStatic);
  if (!es) return false;
  let k: Uint8Array;
  [c, k] = kdf(2, c, es);
  aeadSealInto(k, 0, id.publicKey, h, out, INIT_STATIC_OFF);
  h = hash(h, out.subarray(INIT_STATIC_OFF, INIT_TIMESTAMP_OFF));
  [c, k] = kdf(2, c, peer.staticStatic);
  aeadSealInto(k, 0, timestamp, h, out, INIT_TIMESTAMP_OFF);
  h = hash(h, out.subarray(INIT_TIMESTAMP_OFF, INIT_MAC1_OFF));

  hs.state = HandshakeState.InitiationCreated;
  hs.chainKey = c;
  hs.hash = h;
  hs.localEphemeral = ephemeral;
  hs.localIndex = localIndex;
  hs.remoteIndex = 0;
  return true;
}

/** What the responder learns from a valid initiation before it touches any peer state. */
export interface ConsumedInitiation {
  remoteStatic: Uint8Array;
  remoteEphemeral: Uint8Array;
  remoteIndex: number;
  chainKey: Uint8Array;
  hash: Uint8Array;
  timestamp: Uint8Array;
}

/**
 * First half of consuming an initiation: recovers the initiator's static key. Returns the partial state
 * (chainKey/hash after the static) or null when it does not decrypt.
 */
export function openInitiationStatic(
  id: StaticIdentity,
  msg: Uint8Array,
): { remoteStatic: Uint8Array; chainKey: Uint8Array; hash: Uint8Array } | null {
  const e = msg.subarray(INIT_EPHEMERAL_OFF, INIT_STATIC_OFF);
  let h = hash(id.initialHashForUs, e);
  const [c0] = kdf(1, INITIAL_CHAIN_KEY, e);
  const es = dh(id.privateKey, e);
  if (!es) return null;
  const [c, k] = kdf(2, c0, es);
  const encStatic = msg.subarray(INIT_STATIC_OFF, INIT_TIMESTAMP_OFF);
  const remoteStatic = aeadOpen(k, 0, encStatic, h);
  if (!remoteStatic) return null;
  h = hash(h, encStatic);
  return { remoteStatic: new Uint8Array(remoteStatic), chainKey: c, hash: h };
}

/** Second half, once the peer is known: decrypts the timestamp. Null when it does not authenticate. */
export function openInitiationTimestamp(
  peer: PeerKeys,
  msg: Uint8Array,
  partial: { remoteStatic: Uint8Array; chainKey: Uint8Array; hash: Uint8Array },
): ConsumedInitiation | null {
  if (!peer.staticStatic) return null;
  const [c, k] = kdf(2, partial.chainKey, peer.staticStatic);
  const encTimestamp = msg.subarray(INIT_TIMESTAMP_OFF, INIT_MAC1_OFF);
  const timestamp = aeadOpen(k, 0, encTimestamp, partial.hash);
  if (!timestamp) return null;
  return {
    remoteStatic: partial.remoteStatic,
    remoteEphemeral: new Uint8Array(msg.subarray(INIT_EPHEMERAL_OFF, INIT_STATIC_OFF)),
    remoteIndex: readU32LE(msg, INIT_SENDER_OFF),
    chainKey: c,
    hash: hash(partial.hash, encTimestamp),
    timestamp: new Uint8Array(timestamp),
  };
}

// --- response (§5.4.3) ---------------------------------------------------------------------------------------

/**
 * The part of §5.4.3 both sides compute alike: mix the responder's ephemeral, DH(e_r, e_i), DH(e_r, s_i) and
 * the preshared key into (C, H); returns the new C and H and the key for the empty AEAD. Null if a DH failed.
 */
function mixResponse(
  hs: Handshake,
  responderEphemeral: Uint8Array,
  ee: Uint8Array | null,
  se: Uint8Array | null,
  peer: PeerKeys,
): { c: Uint8Array; h: Uint8Array; k: Uint8Array } | null {
  if (!ee || !se) return null;
  const [c1] = kdf(1, hs.chainKey, responderEphemeral);
  const [c2] = kdf(1, c1, ee);
  const [c3] = kdf(1, c2, se);
  const [c, tau, k] = kdf(3, c3, peer.presharedKey);
  return { c, h: hash(hash(hs.hash, responderEphemeral), tau), k };
}

/** Builds a handshake response into `out` (92 bytes, macs not yet written); `hs` must be InitiationConsumed. */
export function createResponse(
  peer: PeerKeys,
  hs: Handshake,
  localIndex: number,
  ephemeralRaw: Uint8Array,
  out: Uint8Array,
): boolean {
  if (hs.state !== HandshakeState.InitiationConsumed) return false;
  const ephemeral = privateKeyObject(ephemeralRaw);
  const ephemeralPub = publicKeyOf(ephemeral);
  out.fill(0, 0, RESP_LEN);
  writeU32LE(out, 0, MSG_RESPONSE);
  writeU32LE(out, RESP_SENDER_OFF, localIndex);
  writeU32LE(out, RESP_RECEIVER_OFF, hs.remoteIndex);
  out.set(ephemeralPub, RESP_EPHEMERAL_OFF);

  const mixed = mixResponse(hs, ephemeralPub, dh(ephemeral, hs.remoteEphemeral), dh(ephemeral, peer.remoteStatic), peer);
  if (!mixed) return false;
  const { c, k } = mixed;
  let h = mixed.h;
  aeadSealInto(k, 0, EMPTY, h, out, RESP_EMPTY_OFF);
  h = hash(h, out.subarray(RESP_EMPTY_OFF, RESP_EMPTY_OFF + AEAD_TAG_LEN));

  hs.state = HandshakeState.ResponseCreated;
  hs.chainKey = c;
  hs.hash = h;
  hs.localIndex = localIndex;
  hs.localEphemeral = null;
  return true;
}

/**
 * Consumes a response for the handshake `hs` (which must be InitiationCreated); on success `hs` is
 * ResponseConsumed and carries the responder's index. Touches nothing on failure.
 */
export function consumeResponse(id: StaticIdentity, peer: PeerKeys, hs: Handshake, msg: Uint8Array): boolean {
  if (hs.state !== HandshakeState.InitiationCreated || !hs.localEphemeral) return false;
  const e = msg.subarray(RESP_EPHEMERAL_OFF, RESP_EMPTY_OFF);
  const mixed = mixResponse(hs, e, dh(hs.localEphemeral, e), dh(id.privateKey, e), peer);
  if (!mixed) return false;
  const { c, k } = mixed;
  let h = mixed.h;
  const empty = msg.subarray(RESP_EMPTY_OFF, RESP_MAC1_OFF);
  if (!aeadOpen(k, 0, empty, h)) return false;
  h = hash(h, empty);
  hs.state = HandshakeState.ResponseConsumed;
  hs.chainKey = c;
  hs.hash = h;
  hs.remoteIndex = readU32LE(msg, RESP_SENDER_OFF);
  hs.localEphemeral = null;
  return true;
}

/** §5.4.5: (T_send_i = T_recv_r, T_recv_i = T_send_r) = KDF2(C, ε). Returns [send, receive] for our side. */
export function deriveTransportKeys(hs: Handshake, isInitiator: boolean): [Uint8Array, Uint8Array] {
  const [t1, t2] = kdf(2, hs.chainKey, EMPTY);
  return isInitiator ? [t1, t2] : [t2, t1];
}

// --- mac1 / mac2 / cookies (§5.4.4, §5.4.7) -----------------------------------------------------------------

/** mac1 = MAC(HASH(LABEL_MAC1 || receiver public key), msg[0 .. mac1Off]); constant-time check. */
export function checkMac1(msg: Uint8Array, mac1Off: number, ourMac1Key: Uint8Array): boolean {
  const expected = mac(ourMac1Key, msg.subarray(0, mac1Off));
  return equalBytes(expected, 0, msg, mac1Off, MAC_LEN);
}

/**
 * The initiator/responder side of §5.4.4: writes mac1 (keyed by the receiver's public key) and mac2 (keyed by
 * the receiver's cookie when we hold one younger than two minutes, else zeros). Remembers mac1 in `state`:
 * a cookie reply to this message is bound to it.
 */
export class CookieGenerator {
  lastMac1 = new Uint8Array(MAC_LEN);
  hasLastMac1 = false;
  cookie = new Uint8Array(COOKIE_LEN);
  cookieSetAt = -Infinity;

  addMacs(msg: Uint8Array, mac1Off: number, peerMac1Key: Uint8Array, now: number): void {
    const mac1 = mac(peerMac1Key, msg.subarray(0, mac1Off));
    msg.set(mac1, mac1Off);
    this.lastMac1.set(mac1);
    this.hasLastMac1 = true;
    const mac2Off = mac1Off + MAC_LEN;
    if (now - this.cookieSetAt >= COOKIE_REFRESH_TIME_MS) {
      msg.fill(0, mac2Off, mac2Off + MAC_LEN);
      return;
    }
    msg.set(mac(this.cookie, msg.subarray(0, mac2Off)), mac2Off);
  }

  /** Takes the cookie from a cookie reply to our last message; false when it does not decrypt. */
  consumeReply(msg: Uint8Array, peerCookieKey: Uint8Array, now: number): boolean {
    if (!this.hasLastMac1) return false;
    const cookie = xaeadOpen(
      peerCookieKey,
      msg.subarray(COOKIE_NONCE_OFF, COOKIE_ENC_OFF),
      msg.subarray(COOKIE_ENC_OFF, COOKIE_REPLY_LEN),
      this.lastMac1,
    );
    if (!cookie) return false;
    this.cookie.set(cookie);
    this.cookieSetAt = now;
    return true;
  }
}

/**
 * The receiving side of §5.4.7: a secret that changes every two minutes; cookie = MAC(secret, source address
 * bytes || port); mac2 = MAC(cookie, msg[0 .. mac2Off]).
 */
export class CookieChecker {
  private readonly secret = new Uint8Array(KEY_LEN);
  private secretSetAt = -Infinity;

  constructor(private readonly cookieKey: Uint8Array) {}

  checkMac2(msg: Uint8Array, mac2Off: number, src: Uint8Array, now: number): boolean {
    if (now - this.secretSetAt > COOKIE_REFRESH_TIME_MS) return false; // no cookie handed out is still valid
    const cookie = mac(this.secret, src);
    const expected = mac(cookie, msg.subarray(0, mac2Off));
    return equalBytes(expected, 0, msg, mac2Off, MAC_LEN);
  }

  /**
   * A cookie reply (64 bytes) to `msg` whose sender index is `receiverIndex`. `randomFill` supplies the secret
   * when it is due for rotation and the 24-byte nonce.
   */
  createReply(
    msg: Uint8Array,
    mac1Off: number,
    receiverIndex: number,
    src: Uint8Array,
    now: number,
    randomFill: (b: Uint8Array) => void,
  ): Uint8Array {
    if (now - this.secretSetAt > COOKIE_REFRESH_TIME_MS) {
      randomFill(this.secret);
      this.secretSetAt = now;
    }
    const cookie = mac(this.secret, src);
    const out = new Uint8Array(COOKIE_REPLY_LEN);
    writeU32LE(out, 0, MSG_COOKIE_REPLY);
    writeU32LE(out, COOKIE_RECEIVER_OFF, receiverIndex);
    const nonce = out.subarray(COOKIE_NONCE_OFF, COOKIE_NONCE_OFF + COOKIE_NONCE_LEN);
    randomFill(nonce);
    out.set(xaeadSeal(this.cookieKey, nonce, cookie, msg.subarray(mac1Off, mac1Off + MAC_LEN)), COOKIE_ENC_OFF);
    return out;
  }
}
