/**
 * GRE codec (RFC 2784, RFC 2890; IPv6 outer per RFC 7676): an outer IPv4/IPv6 packet carrying GRE in, the
 * inner packet's place out; and the reverse, written in place into the headroom in front of an inner packet.
 *
 *   decapsulate ─ outer IPv4 (IHL, length, header checksum, no fragments) ┐
 *               └ outer IPv6 (payload length, HBH / dest-options skipped) ┴─ GRE: version 0, bits 1/4/5 zero,
 *                 protocol type IPv4|IPv6 + inner version nibble, [checksum verified], [key], [sequence]
 *                 ─ GreDecap: endpoints, key, sequence, inner offset/length
 *   encapsulate4/6 ─ GRE header (+checksum, +key, +sequence) and a fresh outer header (DF, TTL 64, IP id)
 *                    written just before the inner packet; returns the new start.
 *
 * Nothing here allocates, throws on bad input, or reads outside [offset, offset + length): every read is
 * preceded by a bound check against the outer packet's end. Results go to a caller-owned GreDecap.
 * Checksums reuse src/wire/checksum.ts.
 */
import { foldChecksum, onesComplementSum } from '../../wire/checksum.js';
import {
  AF_INET4,
  IPV4_DST,
  IPV4_FLAG_MF,
  IPV4_FLAGS_FRAGMENT,
  IPV4_FRAGMENT_OFFSET_MASK,
  IPV4_MAX_TOTAL_LENGTH,
  IPV4_MIN_HEADER,
  IPV4_PROTOCOL,
  IPV4_SRC,
  IPV4_TOS,
  IPV4_TOTAL_LENGTH,
  IPV4_TTL,
  IPV6_DST,
  IPV6_EXT_DESTINATION,
  IPV6_EXT_FRAGMENT,
  IPV6_EXT_HOP_BY_HOP,
  IPV6_EXT_MIN,
  IPV6_EXT_ROUTING,
  IPV6_HEADER,
  IPV6_HOP_LIMIT,
  IPV6_NEXT_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_ROUTING_SEGMENTS_LEFT,
  IPV6_SRC,
  IP_VERSION_4,
  IP_VERSION_6,
  IPV4_IHL_MASK,
} from '../../wire/constants.js';
import {
  GRE_BASE_HEADER,
  GRE_FLAG_C,
  GRE_FLAG_K,
  GRE_FLAG_S,
  GRE_FLAGS,
  GRE_MUST_BE_ZERO,
  GRE_OPTIONAL_FIELD,
  GRE_PROTO_IPV4,
  GRE_PROTO_IPV6,
  GRE_PROTOCOL_TYPE,
  GRE_VERSION_MASK,
  IPPROTO_GRE,
  OUTER_IPV4_HEADER,
  OUTER_IPV6_HEADER,
  OUTER_IPV6_MAX_EXTENSIONS,
  OUTER_TTL,
} from './constants.js';
import { GreDrop } from './gre-drop.js';
import { read16, read32, write16, write32 } from '../../wire/bytes.js';
import { writeIpv4Header } from '../../wire/header.js';
import type { PacketInfo } from '../../wire/packet-info.js';

/** First byte of the outer headers we emit: version 4, IHL 5 words; version 6 (traffic class high nibble 0). */
const OUTER_IPV6_VERSION_BYTE = 0x60;
/** The traffic class's high nibble sits in the low nibble of an IPv6 header's first byte (RFC 8200 section 3). */
const IPV6_TRAFFIC_CLASS_HIGH = 0x0f;

/** Which optional GRE fields encapsulation writes (bit set). */
export const GRE_TX_CHECKSUM = 1;
export const GRE_TX_KEY = 2;
export const GRE_TX_SEQUENCE = 4;

/**
 * What decapsulate() learned about one packet. One record per receiver, reused for every packet; fields are
 * meaningful only when decapsulate returned GreDrop.None. Offsets are absolute indices into the buffer.
 */
export class GreDecap {
  /** Outer IP family: 4 or 6. */
  family = 0;
  /** Outer IP header start, and GRE header start / length. */
  outerOffset = 0;
  greOffset = 0;
  greLength = 0;
  /** First 16 bits of the GRE header as received (flags, ignored reserved bits, version). */
  greFlags = 0;
  /** GRE protocol type: 0x0800 or 0x86DD. */
  protocolType = 0;
  hasChecksum = false;
  hasKey = false;
  /** RFC 2890 key, unsigned 32 bits (0 when absent). */
  key = 0;
  hasSequence = false;
  /** RFC 2890 sequence number, unsigned 32 bits (0 when absent). */
  sequence = 0;
  /** The inner packet: buf[innerOffset, innerOffset + innerLength). Outer link padding is excluded. */
  innerOffset = 0;
  innerLength = 0;
  /** Outer TTL / hop limit and TOS / traffic class byte (for ECN handling by the caller, RFC 6040). */
  ttl = 0;
  tos = 0;
  /**
   * Outer addresses, the PacketInfo convention: [0..3] source = the tunnel's remote end, [4..7] destination =
   * our (local) end. IPv4 uses [0] and [4] with the other words zero.
   */
  readonly addr = new Uint32Array(8);
}

/** GRE header length for encapsulation options (GRE_TX_* bits). */
export function greHeaderLength(txFlags: number): number {
  return (
    GRE_BASE_HEADER +
    ((txFlags & GRE_TX_CHECKSUM) !== 0 ? GRE_OPTIONAL_FIELD : 0) +
    ((txFlags & GRE_TX_KEY) !== 0 ? GRE_OPTIONAL_FIELD : 0) +
    ((txFlags & GRE_TX_SEQUENCE) !== 0 ? GRE_OPTIONAL_FIELD : 0)
  );
}

// --- decapsulation ------------------------------------------------------------------------------

/**
 * Parses the outer IP packet at buf[offset, offset + length) carrying GRE and fills `out`.
 * Returns GreDrop.None or the reason to drop. Bytes after the outer packet's stated length are ignored.
 * Does not consult any tunnel configuration (see GreTunnelTable.lookup for that).
 */
export function decapsulate(buf: Uint8Array, offset: number, length: number, out: GreDecap): number {
  if (offset < 0 || length <= 0 || offset + length > buf.length) return GreDrop.Truncated;
  const version = buf[offset] >>> 4;
  let gre: number;
  let end: number;
  if (version === IP_VERSION_4) {
    if (length < IPV4_MIN_HEADER) return GreDrop.Truncated;
    const headerLength = (buf[offset] & IPV4_IHL_MASK) << 2;
    const totalLength = read16(buf, offset + IPV4_TOTAL_LENGTH);
    if (headerLength < IPV4_MIN_HEADER || totalLength > length || headerLength > totalLength) return GreDrop.BadOuterIp;
    // RFC 791 section 3.1: a correct header, checksum field included, sums to 0xFFFF (folds to 0 complemented).
    if (foldChecksum(onesComplementSum(buf, offset, offset + headerLength, 0)) !== 0) return GreDrop.BadOuterChecksum;
    if (buf[offset + IPV4_PROTOCOL] !== IPPROTO_GRE) return GreDrop.NotGre;
    const fragment = read16(buf, offset + IPV4_FLAGS_FRAGMENT);
    if ((fragment & (IPV4_FLAG_MF | IPV4_FRAGMENT_OFFSET_MASK)) !== 0) return GreDrop.OuterFragment;
    const a = out.addr;
    a[0] = read32(buf, offset + IPV4_SRC);
    a[1] = 0;
    a[2] = 0;
    a[3] = 0;
    a[4] = read32(buf, offset + IPV4_DST);
    a[5] = 0;
    a[6] = 0;
    a[7] = 0;
    out.family = 4;
    out.ttl = buf[offset + IPV4_TTL];
    out.tos = buf[offset + IPV4_TOS];
    gre = offset + headerLength;
    end = offset + totalLength;
  } else if (version === IP_VERSION_6) {
    if (length < IPV6_HEADER) return GreDrop.Truncated;
    end = offset + IPV6_HEADER + read16(buf, offset + IPV6_PAYLOAD_LENGTH);
    if (end > offset + length) return GreDrop.BadOuterIp;
    gre = skipExtensions(buf, offset + IPV6_HEADER, buf[offset + IPV6_NEXT_HEADER], end);
    if (gre < 0) return -gre;
    const a = out.addr;
    for (let i = 0; i < 4; i++) {
      a[i] = read32(buf, offset + IPV6_SRC + 4 * i);
      a[4 + i] = read32(buf, offset + IPV6_DST + 4 * i);
    }
    out.family = 6;
    out.ttl = buf[offset + IPV6_HOP_LIMIT];
    out.tos = ipv6TrafficClass(buf, offset);
  } else {
    return GreDrop.BadOuterIp;
  }
  out.outerOffset = offset;
  return parseGre(buf, gre, end, out);
}

/**
 * decapsulate() for an outer packet the caller has already inspected (src/wire/inspect.ts; the edge's
 * underlay demux): the IP header is not parsed again, its offsets, length, addresses, TTL and fragment fields
 * come from `outer` (inspect's result must be Drop.None or Drop.UnsupportedProtocol, which it returns for
 * GRE). Only what is GRE's own policy is checked here: no outer fragment, and, when IPv6 extension headers
 * precede GRE, which of them may (skipExtensions). Same results as decapsulate on the same bytes.
 */
export function decapsulateInspected(buf: Uint8Array, outer: PacketInfo, out: GreDecap): number {
  const l3 = outer.l3Offset;
  const end = l3 + outer.ipLength;
  let gre = outer.l4Offset;
  if (outer.family === AF_INET4) {
    if (outer.protocol !== IPPROTO_GRE) return GreDrop.NotGre;
    if (outer.isFragment) return GreDrop.OuterFragment;
    out.tos = buf[l3 + IPV4_TOS];
  } else {
    if (gre !== l3 + IPV6_HEADER) {
      gre = skipExtensions(buf, l3 + IPV6_HEADER, buf[l3 + IPV6_NEXT_HEADER], end);
      if (gre < 0) return -gre;
    } else if (outer.protocol !== IPPROTO_GRE) {
      return GreDrop.NotGre;
    }
    out.tos = ipv6TrafficClass(buf, l3);
  }
  out.family = outer.family;
  out.ttl = outer.ttl;
  out.addr.set(outer.addr);
  out.outerOffset = l3;
  return parseGre(buf, gre, end, out);
}

/** The IPv6 traffic class: the 8 bits after the version nibble (RFC 8200 section 3). */
function ipv6TrafficClass(buf: Uint8Array, l3: number): number {
  return ((buf[l3] & IPV6_TRAFFIC_CLASS_HIGH) << 4) | (buf[l3 + 1] >>> 4);
}

/**
 * Steps over the outer IPv6 extension headers that may precede GRE (RFC 8200 section 4): hop-by-hop (first
 * only), destination options (Linux ip6gre's tunnel encapsulation limit, RFC 2473 section 5.1) and a routing
 * header with no segments left (we are its final destination). Returns where GRE starts, or -GreDrop.
 */
function skipExtensions(buf: Uint8Array, pos: number, nextHeader: number, end: number): number {
  for (let count = 0; nextHeader !== IPPROTO_GRE; count++) {
    if (nextHeader === IPV6_EXT_FRAGMENT) return -GreDrop.OuterFragment;
    if (nextHeader !== IPV6_EXT_HOP_BY_HOP && nextHeader !== IPV6_EXT_DESTINATION && nextHeader !== IPV6_EXT_ROUTING) {
      return -GreDrop.NotGre;
    }
    // RFC 8200 section 4.3: hop-by-hop only right after the IPv6 header.
    if (count >= OUTER_IPV6_MAX_EXTENSIONS || (nextHeader === IPV6_EXT_HOP_BY_HOP && count !== 0)) return -GreDrop.OuterExtension;
    if (pos + IPV6_EXT_MIN > end) return -GreDrop.OuterExtension;
    const headerLength = (buf[pos + 1] + 1) << 3; // RFC 8200 sections 4.3-4.6: 8-byte units beyond the first 8
    if (pos + headerLength > end) return -GreDrop.OuterExtension;
    if (nextHeader === IPV6_EXT_ROUTING && buf[pos + IPV6_ROUTING_SEGMENTS_LEFT] !== 0) return -GreDrop.OuterExtension;
    nextHeader = buf[pos];
    pos += headerLength;
  }
  return pos;
}

function parseGre(buf: Uint8Array, gre: number, end: number, out: GreDecap): number {
  if (gre + GRE_BASE_HEADER > end) return GreDrop.Truncated;
  const flags = read16(buf, gre + GRE_FLAGS);
  if ((flags & GRE_VERSION_MASK) !== 0) return GreDrop.BadVersion;
  if ((flags & GRE_MUST_BE_ZERO) !== 0) return GreDrop.ReservedBits;
  const hasChecksum = (flags & GRE_FLAG_C) !== 0;
  const hasKey = (flags & GRE_FLAG_K) !== 0;
  const hasSequence = (flags & GRE_FLAG_S) !== 0;
  const greLength =
    GRE_BASE_HEADER + (hasChecksum ? GRE_OPTIONAL_FIELD : 0) + (hasKey ? GRE_OPTIONAL_FIELD : 0) + (hasSequence ? GRE_OPTIONAL_FIELD : 0);
  const inner = gre + greLength;
  if (inner >= end) return GreDrop.Truncated; // an empty payload carries nothing to forward
  const protocolType = read16(buf, gre + GRE_PROTOCOL_TYPE);
  const innerVersion = buf[inner] >>> 4;
  if (protocolType === GRE_PROTO_IPV4) {
    if (innerVersion !== IP_VERSION_4) return GreDrop.BadInner;
  } else if (protocolType === GRE_PROTO_IPV6) {
    if (innerVersion !== IP_VERSION_6) return GreDrop.BadInner;
  } else {
    return GreDrop.UnsupportedProtocol;
  }
  let pos = gre + GRE_BASE_HEADER;
  if (hasChecksum) {
    // RFC 2784 section 2.2: one's-complement sum over GRE header and payload; with the field in place a
    // correct packet sums to 0xFFFF. Checked last among the cheap tests: it is a pass over the packet.
    if (foldChecksum(onesComplementSum(buf, gre, end, 0)) !== 0) return GreDrop.BadChecksum;
    pos += GRE_OPTIONAL_FIELD; // checksum + Reserved1 (RFC 2784 section 2.3: sent as zero; not checked)
  }
  out.key = 0;
  if (hasKey) {
    out.key = read32(buf, pos);
    pos += GRE_OPTIONAL_FIELD;
  }
  out.sequence = hasSequence ? read32(buf, pos) : 0;
  out.greOffset = gre;
  out.greLength = greLength;
  out.greFlags = flags;
  out.protocolType = protocolType;
  out.hasChecksum = hasChecksum;
  out.hasKey = hasKey;
  out.hasSequence = hasSequence;
  out.innerOffset = inner;
  out.innerLength = end - inner;
  return GreDrop.None;
}

// --- encapsulation ------------------------------------------------------------------------------

/** GRE protocol type for the inner packet at buf[at] (from its version nibble), or -1. */
function protocolTypeOf(buf: Uint8Array, at: number): number {
  const v = buf[at] >>> 4;
  return v === IP_VERSION_4 ? GRE_PROTO_IPV4 : v === IP_VERSION_6 ? GRE_PROTO_IPV6 : -1;
}

/** Writes the GRE header at buf[gre..) for a payload ending at `end`, checksum last (it covers the header). */
function writeGre(buf: Uint8Array, gre: number, end: number, txFlags: number, protocolType: number, key: number, sequence: number): void {
  const hasChecksum = (txFlags & GRE_TX_CHECKSUM) !== 0;
  write16(
    buf,
    gre + GRE_FLAGS,
    (hasChecksum ? GRE_FLAG_C : 0) | ((txFlags & GRE_TX_KEY) !== 0 ? GRE_FLAG_K : 0) | ((txFlags & GRE_TX_SEQUENCE) !== 0 ? GRE_FLAG_S : 0),
  );
  write16(buf, gre + GRE_PROTOCOL_TYPE, protocolType);
  let pos = gre + GRE_BASE_HEADER;
  const checksumAt = pos;
  if (hasChecksum) {
    write32(buf, pos, 0); // checksum zero while summing; Reserved1 zero (RFC 2784 section 2.3)
    pos += GRE_OPTIONAL_FIELD;
  }
  if ((txFlags & GRE_TX_KEY) !== 0) {
    write32(buf, pos, key);
    pos += GRE_OPTIONAL_FIELD;
  }
  if ((txFlags & GRE_TX_SEQUENCE) !== 0) write32(buf, pos, sequence);
  if (hasChecksum) write16(buf, checksumAt, foldChecksum(onesComplementSum(buf, gre, end, 0)));
}

/**
 * Wraps the inner packet at buf[innerOffset, innerOffset + innerLength) in GRE and an outer IPv4 header
 * (src -> dst, DF set, TTL 64, TOS 0, identification ipId), written into the bytes just before it.
 * `floor` is the lowest index the headers may use (the start of the packet's slot). Returns the outer
 * packet's offset (its length is innerLength + 20 + greHeaderLength(txFlags)), or -GreDrop.
 *
 * TOS 0 is RFC 6040 section 4.1 "compatibility mode" (outer Not-ECT) and the RFC 2983 pipe model for DSCP.
 */

/**
 * Common part of encapsulate4/6: checks the inner packet, the headroom and the length the outer header will
 * state (`lengthBase` bytes of outer header count in it: the IPv4 total length counts its header, the IPv6
 * payload length does not), then writes the GRE header. Returns the outer header's offset or -GreDrop.
 */
function placeGre(
  buf: Uint8Array,
  innerOffset: number,
  innerLength: number,
  floor: number,
  outerHeader: number,
  lengthBase: number,
  txFlags: number,
  key: number,
  sequence: number,
): number {
  if (innerLength <= 0 || innerOffset < 0 || innerOffset + innerLength > buf.length) return -GreDrop.BadInner;
  const protocolType = protocolTypeOf(buf, innerOffset);
  if (protocolType < 0) return -GreDrop.BadInner;
  const greLength = greHeaderLength(txFlags);
  const o = innerOffset - greLength - outerHeader;
  if (o < floor || o < 0) return -GreDrop.NoHeadroom;
  if (lengthBase + greLength + innerLength > IPV4_MAX_TOTAL_LENGTH) return -GreDrop.TooBig; // both length fields are 16 bits
  writeGre(buf, o + outerHeader, innerOffset + innerLength, txFlags, protocolType, key, sequence);
  return o;
}

export function encapsulate4(
  buf: Uint8Array,
  innerOffset: number,
  innerLength: number,
  floor: number,
  txFlags: number,
  key: number,
  sequence: number,
  src: number,
  dst: number,
  ipId: number,
): number {
  const o = placeGre(buf, innerOffset, innerLength, floor, OUTER_IPV4_HEADER, OUTER_IPV4_HEADER, txFlags, key, sequence);
  if (o < 0) return o;
  const total = innerOffset + innerLength - o;
  writeIpv4Header(buf, o, total, ipId, OUTER_TTL, IPPROTO_GRE, src, dst);
  return o;
}

/**
 * As encapsulate4 with an outer IPv6 header: source words addr[srcAt..srcAt+4), destination addr[dstAt..+4),
 * hop limit 64, traffic class 0, flow label 0. IPv6 has no DF bit: routers never fragment (RFC 8200 section 5).
 */
export function encapsulate6(
  buf: Uint8Array,
  innerOffset: number,
  innerLength: number,
  floor: number,
  txFlags: number,
  key: number,
  sequence: number,
  addr: Uint32Array,
  srcAt: number,
  dstAt: number,
): number {
  const o = placeGre(buf, innerOffset, innerLength, floor, OUTER_IPV6_HEADER, 0, txFlags, key, sequence);
  if (o < 0) return o;
  const payloadLength = innerOffset + innerLength - o - OUTER_IPV6_HEADER;
  write32(buf, o, 0);
  buf[o] = OUTER_IPV6_VERSION_BYTE;
  write16(buf, o + IPV6_PAYLOAD_LENGTH, payloadLength);
  buf[o + IPV6_NEXT_HEADER] = IPPROTO_GRE;
  buf[o + IPV6_HOP_LIMIT] = OUTER_TTL;
  for (let i = 0; i < 4; i++) {
    write32(buf, o + IPV6_SRC + 4 * i, addr[srcAt + i]);
    write32(buf, o + IPV6_DST + 4 * i, addr[dstAt + i]);
  }
  return o;
}
