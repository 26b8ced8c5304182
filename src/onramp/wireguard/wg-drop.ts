/**
 * Why the WireGuard device dropped a datagram (or an outbound packet). One counter per reason.
 * WireGuard-specific, so kept apart from src/common/drop-reasons.ts; the data plane maps them when it counts.
 * Keep the numbering stable; append new reasons at the end.
 */
export const enum WgDrop {
  None = 0,
  Truncated = 1, // shorter than its message type requires, or a handshake message of the wrong size
  UnknownType = 2, // first 4 bytes are not 1..4 little-endian (reserved bytes must be zero)
  BadMac1 = 3, // mac1 does not verify (§5.4.4): not for us, or garbage
  CookieRequired = 4, // under load and mac2 missing or stale: a cookie reply was sent instead (§5.4.7)
  RateLimited = 5, // per-source handshake rate limit
  UnknownPeer = 6, // initiation from a static key we have not configured
  HandshakeFailed = 7, // a handshake field did not decrypt / a DH gave a low-order result
  ReplayedInitiation = 8, // TAI64N timestamp not newer than the last accepted one (§5.1)
  HandshakeFlood = 9, // initiations from one peer closer together than 20 ms
  UnknownIndex = 10, // receiver index matches no live session or pending handshake
  KeyExpired = 11, // session older than Reject-After-Time (§6.1)
  Replay = 12, // counter already seen, behind the window, or beyond the message limit
  DecryptFailed = 13, // transport packet does not authenticate
  AllowedIpsMismatch = 14, // inner source not routed to the sending peer (cryptokey routing, §2)
  BadInnerPacket = 15, // decrypted payload is not an IPv4/IPv6 packet or its length field lies
  CookieFailed = 16, // cookie reply does not decrypt (no matching mac1)
  UnexpectedResponse = 17, // response for a handshake we are not waiting on
  NoEndpoint = 18, // nothing to send to: the peer has no known endpoint
  QueueFull = 19, // staged queue overflow while the handshake runs: the oldest packet is dropped
  NoPeer = 20, // send() to a peer index that does not exist
  TooBig = 21, // outbound packet larger than a datagram can carry
  HandshakeTimeout = 22, // staged packets discarded after Rekey-Attempt-Time without a session
  Revoked = 23, // from a peer removed or re-keyed by the control plane: its key, or a session index it held
  SealFailed = 24, // the AEAD refused to seal an outbound packet (its session's keys gone, a crypto library error)
}

export const WG_DROP_COUNT = 25;

/** Names for metrics and logs (control plane only). */
export const WG_DROP_NAMES: readonly string[] = [
  'none',
  'truncated',
  'unknown_type',
  'bad_mac1',
  'cookie_required',
  'rate_limited',
  'unknown_peer',
  'handshake_failed',
  'replayed_initiation',
  'handshake_flood',
  'unknown_index',
  'key_expired',
  'replay',
  'decrypt_failed',
  'allowed_ips_mismatch',
  'bad_inner_packet',
  'cookie_failed',
  'unexpected_response',
  'no_endpoint',
  'queue_full',
  'no_peer',
  'too_big',
  'handshake_timeout',
  'revoked',
  'seal_failed',
];
