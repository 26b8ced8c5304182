/**
 * The ESP codec around the crypto (RFC 4303 §2 tunnel mode; RFC 3948 for UDP encapsulation): lengths, the header,
 * the trailer (padding 1, 2, 3, …, pad length, next header), and checks of what decrypted. The crypto itself runs
 * in the native addon over whole batches (src/io/esp-crypto.ts), in place between these two halves:
 *
 *   seal: writeEspHeader + writeEspTrailer around the inner packet ─► native seal (writes IV, encrypts, ICV)
 *   open: parseEsp (SPI, sequence, length) ─► native open (ICV, decrypts in place) ─► readEspTrailer (inner length)
 *
 * Pure and allocation-free: every function works on a buffer and offsets.
 */
import { read32, write32 } from '../../../wire/bytes.js';
import {
  ESP_HEADER,
  ESP_SEQ,
  ESP_SPI,
  ESP_TRAILER,
  NAT_KEEPALIVE_BYTE,
  NAT_KEEPALIVE_LENGTH,
  NEXT_HEADER_IPV4,
  NEXT_HEADER_IPV6,
  NEXT_HEADER_NONE,
  NON_ESP_MARKER,
  type EspAlgorithm,
} from './constants.js';
import { EspDrop } from './drops.js';

const IP_VERSION_SHIFT = 4;
const IP_VERSION_4 = 4;
const IP_VERSION_6 = 6;

/** Bytes of padding for an inner packet of `inner` bytes: payload ‖ padding ‖ 2-byte trailer aligned (RFC 4303 §2.4). */
export function espPadding(alg: EspAlgorithm, inner: number): number {
  const rest = (inner + ESP_TRAILER) % alg.align;
  return rest === 0 ? 0 : alg.align - rest;
}

/** The whole ESP packet (header to ICV) for an inner packet of `inner` bytes. */
export function espSealedLength(alg: EspAlgorithm, inner: number): number {
  return ESP_HEADER + alg.ivLength + inner + espPadding(alg, inner) + ESP_TRAILER + alg.icvLength;
}

/** The most ESP adds to an inner packet (its longest padding included): the tunnel MTU's ESP term. */
export function espMaxOverhead(alg: EspAlgorithm): number {
  return ESP_HEADER + alg.ivLength + alg.align - 1 + ESP_TRAILER + alg.icvLength;
}

const OUTER_IPV4 = 20; // RFC 791 header without options
const OUTER_UDP = 8; // RFC 768 header, when ESP rides in UDP (RFC 3948 §2.1)

/**
 * The largest inner packet an ESP tunnel over an underlay of `underlayMtu` carries without fragmenting the outer
 * packet: underlay MTU − outer IPv4 header (20) − UDP header (8, with UDP encapsulation) − ESP header (8) − IV
 * (8 GCM / 16 CBC) − padding to the alignment (at most align − 1) − pad length and next header (2) − ICV (16 GCM,
 * 16/24/32 HMAC). AES-GCM in UDP over 1500: 1500 − 20 − 8 − 8 − 8 − 3 − 2 − 16 = 1435.
 */
export function espTunnelMtu(alg: EspAlgorithm, underlayMtu: number, udpEncapsulated: boolean): number {
  return underlayMtu - OUTER_IPV4 - (udpEncapsulated ? OUTER_UDP : 0) - espMaxOverhead(alg);
}

/** Smallest ESP packet this algorithm can produce (an empty payload, aligned): shorter ones are truncated. */
export function espMinLength(alg: EspAlgorithm): number {
  return espSealedLength(alg, 0);
}

/** SPI and sequence number at buf[at] (RFC 4303 §2.1, §2.2). */
export function writeEspHeader(buf: Uint8Array, at: number, spi: number, seq: number): void {
  write32(buf, at + ESP_SPI, spi);
  write32(buf, at + ESP_SEQ, seq);
}

/**
 * The trailer after an inner packet ending at buf[end]: padding 1, 2, 3, … (RFC 4303 §2.4, the default
 * monotonic pattern), pad length, next header (4 or 41 from the inner IP version). Returns where the ICV goes.
 */
export function writeEspTrailer(buf: Uint8Array, end: number, padding: number, nextHeader: number): number {
  for (let k = 1; k <= padding; k++) buf[end + k - 1] = k;
  buf[end + padding] = padding;
  buf[end + padding + 1] = nextHeader;
  return end + padding + ESP_TRAILER;
}

/** The next header value for the inner packet starting at buf[at] (tunnel mode), or -1 when it is not IP. */
export function nextHeaderOf(buf: Uint8Array, at: number, length: number): number {
  if (length < 1) return -1;
  const v = buf[at] >>> IP_VERSION_SHIFT;
  return v === IP_VERSION_4 ? NEXT_HEADER_IPV4 : v === IP_VERSION_6 ? NEXT_HEADER_IPV6 : -1;
}

export function espSpi(buf: Uint8Array, at: number): number {
  return read32(buf, at + ESP_SPI);
}

export function espSeq(buf: Uint8Array, at: number): number {
  return read32(buf, at + ESP_SEQ);
}

/**
 * Is an ESP packet of `length` bytes well-formed for `alg` before any crypto: long enough for header, IV, an
 * aligned trailer and the ICV, its encrypted part a whole number of alignment units (RFC 4303 §2.4). EspDrop.
 */
export function checkEspLength(alg: EspAlgorithm, length: number): EspDrop {
  if (length < espMinLength(alg)) return EspDrop.Truncated;
  const encrypted = length - ESP_HEADER - alg.ivLength - alg.icvLength;
  return encrypted % alg.align === 0 ? EspDrop.None : EspDrop.Truncated;
}

/** Where the inner packet starts in a decrypted ESP packet at buf[at]. */
export function espPayloadOffset(alg: EspAlgorithm, at: number): number {
  return at + ESP_HEADER + alg.ivLength;
}

/** Result of readEspTrailer: the inner packet's length, or the reason it is dropped. */
export class EspOpened {
  innerLength = 0;
  nextHeader = 0;
}

/**
 * Reads the decrypted trailer of the ESP packet at buf[at, at + length): padding checked to be 1, 2, 3, … (RFC
 * 4303 §2.4: the receiver should inspect it), next header 4 or 41 (59: a dummy, §2.6), and the inner packet's
 * IP version matching it. Fills `out`; returns EspDrop.None or the reason.
 */
export function readEspTrailer(alg: EspAlgorithm, buf: Uint8Array, at: number, length: number, out: EspOpened): EspDrop {
  const payload = at + ESP_HEADER + alg.ivLength;
  const end = at + length - alg.icvLength; // just past the next header byte
  const padding = buf[end - 2];
  const nextHeader = buf[end - 1];
  const inner = end - ESP_TRAILER - padding - payload;
  if (inner < 0) return EspDrop.BadPadding;
  for (let k = 1; k <= padding; k++) if (buf[payload + inner + k - 1] !== k) return EspDrop.BadPadding;
  if (nextHeader === NEXT_HEADER_NONE) return EspDrop.Dummy;
  if (nextHeader !== NEXT_HEADER_IPV4 && nextHeader !== NEXT_HEADER_IPV6) return EspDrop.BadNextHeader;
  if (nextHeaderOf(buf, payload, inner) !== nextHeader) return EspDrop.BadInnerPacket;
  out.innerLength = inner;
  out.nextHeader = nextHeader;
  return EspDrop.None;
}

/** What a datagram to UDP port 4500 carries (RFC 3948 §2). */
export const enum UdpEncap {
  Esp = 0,
  Ike = 1,
  Keepalive = 2,
  Malformed = 3,
}

/**
 * Classifies a UDP-4500 payload at buf[at, at + length): one byte 0xFF = NAT-keepalive (§2.3); four zero bytes =
 * the non-ESP marker before an IKE message (§2.2); else ESP, whose SPI is never zero (RFC 4303 §2.1). Anything
 * shorter than an ESP header is malformed.
 */
export function classifyUdpEncap(buf: Uint8Array, at: number, length: number): UdpEncap {
  if (length === NAT_KEEPALIVE_LENGTH) return buf[at] === NAT_KEEPALIVE_BYTE ? UdpEncap.Keepalive : UdpEncap.Malformed;
  if (length < NON_ESP_MARKER) return UdpEncap.Malformed;
  if (read32(buf, at) === 0) return UdpEncap.Ike;
  return length < ESP_HEADER ? UdpEncap.Malformed : UdpEncap.Esp;
}
