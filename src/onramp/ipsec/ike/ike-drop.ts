/**
 * Why the IKE engine dropped (or refused) a message. One counter per reason, like wg-drop.ts.
 * Keep the numbering stable; append new reasons at the end.
 */
export const enum IkeDrop {
  None = 0,
  Malformed = 1, // a length, count or field is wrong (wire.ts says which); also a bad nonce or KE size
  BadVersion = 2, // major version above 2 (§2.5)
  UnsupportedCritical = 3, // an unknown payload with the critical bit (§2.5)
  UnknownSpi = 4, // no IKE SA holds this SPI pair (§2.21.4)
  BadIcv = 5, // the SK payload does not authenticate (§3.14)
  UnknownPeer = 6, // no configured peer for this address / identity
  AuthFailed = 7, // AUTH does not verify: wrong PSK (§2.15); nothing is kept
  NoProposal = 8, // no configured proposal matches (NO_PROPOSAL_CHOSEN)
  InvalidKe = 9, // IKE_SA_INIT with an acceptable but unguessed DH group: INVALID_KE_PAYLOAD sent (§1.2)
  CookieRequired = 10, // over the half-open threshold without a valid cookie: COOKIE sent (§2.6)
  OldMessageId = 11, // a request outside the window, or older than the cached response (§2.3)
  UnexpectedResponse = 12, // a response to no request of ours
  BadKe = 13, // the peer's DH public value is invalid (off-curve, wrong size)
  TsUnacceptable = 14, // the peer's traffic selectors meet ours nowhere (§2.9)
  HalfOpenLimit = 15, // more half-open SAs than the hard limit, even with cookies
  UnexpectedExchange = 16, // an exchange type that is not valid in the SA's state
  Retransmit = 17, // a retransmitted request: answered from the response cache, not processed again (§2.3)
  PeerError = 18, // the peer answered with an error notify (AUTHENTICATION_FAILED, NO_PROPOSAL_CHOSEN, …)
  TemporaryFailure = 19, // a CREATE_CHILD_SA while another rekey is in progress: TEMPORARY_FAILURE sent (§2.25)
}

export const IKE_DROP_COUNT = 20;

/** Names for metrics and logs (control plane only). */
export const IKE_DROP_NAMES: readonly string[] = [
  'none',
  'malformed',
  'bad_version',
  'unsupported_critical',
  'unknown_spi',
  'bad_icv',
  'unknown_peer',
  'auth_failed',
  'no_proposal',
  'invalid_ke',
  'cookie_required',
  'old_message_id',
  'unexpected_response',
  'bad_ke',
  'ts_unacceptable',
  'half_open_limit',
  'unexpected_exchange',
  'retransmit',
  'peer_error',
  'temporary_failure',
];
