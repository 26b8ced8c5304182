/**
 * Why the ESP data path dropped a packet (in or out). One counter per reason, like wg-drop.ts; kept apart from
 * src/common/drop-reasons.ts. Keep the numbering stable; append new reasons at the end.
 */
export const enum EspDrop {
  None = 0,
  Truncated = 1, // shorter than header + IV + one aligned block + ICV, or a ciphertext not a multiple of the block
  UnknownSpi = 2, // no inbound SA holds this SPI (RFC 4303 §3.4.2: discard, auditable event)
  Replay = 3, // sequence number seen already or left of the window (RFC 4303 §3.4.3)
  IcvFailed = 4, // integrity check value does not verify (RFC 4303 §3.4.4)
  BadPadding = 5, // pad length longer than the payload, or padding bytes not 1, 2, 3, … (RFC 4303 §2.4)
  BadNextHeader = 6, // next header neither IPv4 (4) nor IPv6 (41) in tunnel mode
  Dummy = 7, // next header 59: a traffic-flow-confidentiality dummy packet (RFC 4303 §2.6), discarded
  BadInnerPacket = 8, // decrypted payload is not an IP packet of its next header's version
  NoSa = 9, // outbound: the onramp has no child SA (not established, or deleted)
  SequenceExhausted = 10, // outbound: the SA's sequence number reached 2^32 − 1 (RFC 4303 §3.3.3): not sent
  TooBig = 11, // outbound: the ESP packet would not fit its batch slot
  Malformed = 12, // UDP-encapsulated packet that is neither IKE, keepalive nor ESP (RFC 3948 §2)
  OuterFragment = 13, // a fragment of an outer packet: the underlay does not reassemble (the peer must not fragment: DF)
  CryptoFailed = 14, // OpenSSL reported an error sealing or opening (not an ICV failure)
  NotAdded = 15, // outbound: no IPsec onramp of that id (removed while its flows live)
  SelectorMismatch = 16, // inbound: the decrypted packet lies outside the SA's traffic selectors (RFC 4301 §5.2 step 4)
}

export const ESP_DROP_COUNT = 17;

/** Names for metrics and logs (control plane only). */
export const ESP_DROP_NAMES: readonly string[] = [
  'none',
  'truncated',
  'unknown_spi',
  'replay',
  'icv_failed',
  'bad_padding',
  'bad_next_header',
  'dummy',
  'bad_inner_packet',
  'no_sa',
  'sequence_exhausted',
  'too_big',
  'malformed',
  'outer_fragment',
  'crypto_failed',
  'not_added',
  'selector_mismatch',
];
