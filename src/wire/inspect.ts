/**
 * Header inspection: one pass over an IP packet that validates what the data plane relies on and fills
 * a reused PacketInfo. Called for every packet, so it allocates nothing, never throws, and never reads a
 * byte outside [offset, offset + length): every read is preceded by a bounds check against `end`.
 *
 *   inspect ─┬─ IPv4: header, checksum, fragments ─┐
 *            └─ IPv6: header, extension chain ─────┴─ transport: TCP | UDP | ICMP/ICMPv6
 *                                                                  └─ error: embedded IP + transport (inner*)
 *
 * info is meaningful only when inspect returns Drop.None (0), with one exception: for Drop.UnsupportedProtocol
 * the IP header fields (family, offsets, length, protocol, addresses, TTL, fragment fields) are filled, so
 * that a caller handling that protocol itself (GRE at the edge's underlay) needs no second IP parser.
 */
import { Drop } from '../common/drop-reasons.js';
import {
  FRAGMENT_UNIT,
  ICMP4_DEST_UNREACHABLE,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_PARAMETER_PROBLEM,
  ICMP4_REDIRECT,
  ICMP4_SOURCE_QUENCH,
  ICMP4_TIMESTAMP,
  ICMP4_TIMESTAMP_REPLY,
  ICMP4_TIME_EXCEEDED,
  ICMP6_DEST_UNREACHABLE,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_INFO_MIN,
  ICMP6_PACKET_TOO_BIG,
  ICMP6_PARAMETER_PROBLEM,
  ICMP6_TIME_EXCEEDED,
  ICMP_CODE,
  ICMP_HEADER,
  ICMP_ID,
  ICMP_TYPE,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_DST,
  IPV4_IHL_MASK,
  IP_VERSION_4,
  IP_VERSION_6,
  IPV4_FLAGS_FRAGMENT,
  IPV4_FLAG_DF,
  IPV4_FLAG_MF,
  IPV4_FRAGMENT_OFFSET_MASK,
  IPV4_ID,
  IPV4_MAX_TOTAL_LENGTH,
  IPV4_MIN_HEADER,
  IPV4_PROTOCOL,
  IPV4_SRC,
  IPV4_TOTAL_LENGTH,
  IPV4_TTL,
  IPV6_DST,
  IPV6_EXT_AH,
  IPV6_EXT_DESTINATION,
  IPV6_EXT_FRAGMENT,
  IPV6_EXT_HOP_BY_HOP,
  IPV6_EXT_MIN,
  IPV6_EXT_ROUTING,
  IPV6_FRAGMENT_HEADER,
  IPV6_FRAG_ID_FIELD,
  IPV6_FRAG_M,
  IPV6_FRAG_OFFSET_FIELD,
  IPV6_FRAG_OFFSET_MASK,
  IPV6_HEADER,
  IPV6_HOP_LIMIT,
  IPV6_MAX_EXTENSION_HEADERS,
  IPV6_NEXT_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_SRC,
  TCP_ACK,
  TCP_DATA_OFFSET,
  TCP_FLAGS,
  TCP_MAX_WINDOW_SHIFT,
  TCP_MIN_HEADER,
  TCP_OPT_EOL,
  TCP_OPT_MSS,
  TCP_OPT_MSS_LENGTH,
  TCP_OPT_NOP,
  TCP_OPT_WINDOW_SCALE,
  TCP_OPT_WINDOW_SCALE_LENGTH,
  TCP_SEQ,
  TCP_SYN,
  TCP_WINDOW,
  UDP_HEADER,
  UDP_LENGTH,
} from './constants.js';
import type { PacketInfo } from './packet-info.js';
import { read32 } from './bytes.js';
import { ipv4FixedHeaderSum } from './checksum.js';


/**
 * Result of the last extension-chain walk (walkExtensions). Module-level scratch instead of a returned
 * object so the walk allocates nothing; inspect is not re-entrant across threads (there are none).
 */
let walkProtocol = 0;
let walkOffset = 0;
let walkHasFragment = false;
let walkFragmentOffset = 0;
let walkMoreFragments = false;
let walkFragmentId = 0;

/**
 * Inspects the IP packet at buf[offset, offset+length) and fills `info`.
 * Returns Drop.None (0) or the reason to drop. Bytes after the IP packet's stated length (Ethernet
 * padding) are allowed and ignored.
 */
export function inspect(buf: Uint8Array, offset: number, length: number, info: PacketInfo): number {
  resetInfo(info);
  if (offset < 0 || length <= 0 || offset + length > buf.length) return Drop.Truncated;
  const version = buf[offset] >>> 4;
  if (version === IP_VERSION_4) return inspect4(buf, offset, length, info);
  if (version === IP_VERSION_6) return inspect6(buf, offset, length, info);
  return Drop.BadVersion;
}

/** Clears everything a previous packet may have left (addresses are overwritten by the family parsers). */
function resetInfo(info: PacketInfo): void {
  info.family = 0;
  info.csumPartial = false;
  info.protocol = 0;
  info.srcPort = 0;
  info.dstPort = 0;
  info.isFragment = false;
  info.fragmentOffset = 0;
  info.moreFragments = false;
  info.fragmentId = 0;
  info.dontFragment = false;
  info.hasTransportHeader = false;
  info.tcpFlags = 0;
  info.tcpSeq = 0;
  info.tcpAck = 0;
  info.tcpWindow = 0;
  info.tcpHeaderLength = 0;
  info.tcpPayloadLength = 0;
  info.tcpWindowScale = -1;
  info.tcpMss = 0;
  info.tcpMssOffset = 0;
  info.icmpType = 0;
  info.icmpCode = 0;
  info.icmpId = 0;
  info.isIcmpError = false;
  info.innerFamily = 0;
  info.innerL3Offset = 0;
  info.innerProtocol = 0;
  info.innerL4Offset = 0;
  info.innerL4Available = 0;
  info.innerSrcPort = 0;
  info.innerDstPort = 0;
}

/**
 * Reads an IPv4 header's source and destination (header at l3) into out[0] and out[4]; the other words are
 * zeroed so that a key built from all eight words never carries a previous IPv6 packet's bits.
 */
function readAddrs4(buf: Uint8Array, l3: number, out: Uint32Array): void {
  out[0] = read32(buf, l3 + IPV4_SRC);
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  out[4] = read32(buf, l3 + IPV4_DST);
  out[5] = 0;
  out[6] = 0;
  out[7] = 0;
}

/** Reads 4 IPv6 address words at buf[i..i+16) into out[at..at+4). */
function readAddr6(buf: Uint8Array, i: number, out: Uint32Array, at: number): void {
  out[at] = read32(buf, i);
  out[at + 1] = read32(buf, i + 4);
  out[at + 2] = read32(buf, i + 8);
  out[at + 3] = read32(buf, i + 12);
}

// --- IPv4 ---------------------------------------------------------------------------------------

function inspect4(buf: Uint8Array, o: number, length: number, info: PacketInfo): number {
  if (length < IPV4_MIN_HEADER) return Drop.Truncated;
  const headerLength = (buf[o] & IPV4_IHL_MASK) << 2;
  if (headerLength < IPV4_MIN_HEADER) return Drop.BadHeaderLength;
  const totalLength = (buf[o + IPV4_TOTAL_LENGTH] << 8) | buf[o + IPV4_TOTAL_LENGTH + 1];
  // RFC 791: total length counts header and data; more than we hold means the packet was cut short.
  if (totalLength > length) return Drop.BadTotalLength;
  if (headerLength > totalLength) return Drop.BadHeaderLength;

  // Header checksum (RFC 791 section 3.1): the sum over a correct header, field included, is 0xFFFF.
  // The common 20-byte header is summed unrolled; options take the loop.
  let sum = ipv4FixedHeaderSum(buf, o);
  for (let i = o + IPV4_MIN_HEADER; i < o + headerLength; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  if (sum !== 0xffff) return Drop.BadIpChecksum;

  const protocol = buf[o + IPV4_PROTOCOL];
  info.family = 4;
  info.l3Offset = o;
  info.ipLength = totalLength;
  info.protocol = protocol;
  info.ttl = buf[o + IPV4_TTL];
  info.ttlOffset = o + IPV4_TTL;
  readAddrs4(buf, o, info.addr);
  const l4 = o + headerLength;
  const l4Length = totalLength - headerLength;
  info.l4Offset = l4;
  info.l4Length = l4Length;

  const flagsFragment = (buf[o + IPV4_FLAGS_FRAGMENT] << 8) | buf[o + IPV4_FLAGS_FRAGMENT + 1];
  info.dontFragment = (flagsFragment & IPV4_FLAG_DF) !== 0;
  info.fragmentId = (buf[o + IPV4_ID] << 8) | buf[o + IPV4_ID + 1];
  const fragmentOffset = (flagsFragment & IPV4_FRAGMENT_OFFSET_MASK) * FRAGMENT_UNIT;
  const moreFragments = (flagsFragment & IPV4_FLAG_MF) !== 0;
  // Recorded before the protocol test: a caller handling a protocol we do not track (the edge's GRE demux)
  // reads the fragment fields of this inspection instead of parsing the header again.
  if (moreFragments || fragmentOffset !== 0) {
    info.isFragment = true;
    info.fragmentOffset = fragmentOffset;
    info.moreFragments = moreFragments;
  }
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMP) return Drop.UnsupportedProtocol;
  if (info.isFragment) {
    const drop = checkFragment(fragmentOffset, moreFragments, l4Length, protocol, IPV4_MAX_TOTAL_LENGTH - headerLength);
    if (drop !== Drop.None) return drop;
    if (fragmentOffset !== 0) return Drop.None; // no transport header in a non-first fragment
  }
  return inspectTransport(buf, l4, l4Length, protocol, 4, info);
}

/**
 * Sanity of one fragment's geometry (RFC 791 section 3.2; RFC 8200 section 4.5): every fragment but the
 * last carries a non-zero multiple of 8 bytes, and the reassembled payload cannot exceed `maxPayload`.
 * RFC 1858 section 3.2.2: a TCP fragment at offset 8 can only serve to overwrite the first fragment's
 * flags (the overlapping-fragment attack), so it is dropped.
 */
function checkFragment(fragmentOffset: number, moreFragments: boolean, payloadLength: number, protocol: number, maxPayload: number): number {
  if (moreFragments && (payloadLength === 0 || (payloadLength & (FRAGMENT_UNIT - 1)) !== 0)) return Drop.BadFragment;
  if (fragmentOffset + payloadLength > maxPayload) return Drop.BadFragment;
  if (protocol === IPPROTO_TCP && fragmentOffset === FRAGMENT_UNIT) return Drop.BadFragment;
  return Drop.None;
}

// --- IPv6 ---------------------------------------------------------------------------------------

function inspect6(buf: Uint8Array, o: number, length: number, info: PacketInfo): number {
  if (length < IPV6_HEADER) return Drop.Truncated;
  const payloadLength = (buf[o + IPV6_PAYLOAD_LENGTH] << 8) | buf[o + IPV6_PAYLOAD_LENGTH + 1];
  const ipLength = IPV6_HEADER + payloadLength;
  // Jumbograms (payload length 0 + hop-by-hop jumbo option, RFC 2675) never cross our links: a zero
  // payload length is taken literally and such a packet fails the extension walk below.
  if (ipLength > length) return Drop.BadTotalLength;
  info.family = 6;
  info.l3Offset = o;
  info.ipLength = ipLength;
  info.ttl = buf[o + IPV6_HOP_LIMIT];
  info.ttlOffset = o + IPV6_HOP_LIMIT;
  readAddr6(buf, o + IPV6_SRC, info.addr, 0);
  readAddr6(buf, o + IPV6_DST, info.addr, 4);
  const end = o + ipLength;
  const drop = walkExtensions(buf, o + IPV6_HEADER, buf[o + IPV6_NEXT_HEADER], end);
  if (drop !== Drop.None) return drop;
  const protocol = walkProtocol;
  const l4 = walkOffset;
  const l4Length = end - l4;
  info.protocol = protocol;
  info.l4Offset = l4;
  info.l4Length = l4Length;
  if (walkHasFragment) {
    info.fragmentId = walkFragmentId;
    // RFC 6946: an "atomic fragment" (offset 0, M clear) is a whole packet, not a fragment.
    if (walkFragmentOffset !== 0 || walkMoreFragments) {
      info.isFragment = true;
      info.fragmentOffset = walkFragmentOffset;
      info.moreFragments = walkMoreFragments;
    }
  }
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMPV6) return Drop.UnsupportedProtocol;
  if (info.isFragment) {
    const fragmentDrop = checkFragment(walkFragmentOffset, walkMoreFragments, l4Length, protocol, 0xffff);
    if (fragmentDrop !== Drop.None) return fragmentDrop;
    if (walkFragmentOffset !== 0) return Drop.None;
  }
  return inspectTransport(buf, l4, l4Length, protocol, 6, info);
}

/**
 * Walks an IPv6 extension-header chain starting at `pos` with next-header value `nextHeader`, every
 * header within [pos, end). Stops at the first non-extension header (a transport, ESP, no-next-header,
 * anything unknown) or after a fragment header with a non-zero offset (what follows is the middle of the
 * fragmentable part, RFC 8200 section 4.5). Results go to the walk* module variables.
 */
function walkExtensions(buf: Uint8Array, pos: number, nextHeader: number, end: number): number {
  walkHasFragment = false;
  walkFragmentOffset = 0;
  walkMoreFragments = false;
  walkFragmentId = 0;
  let count = 0;
  for (;;) {
    if (
      nextHeader !== IPV6_EXT_HOP_BY_HOP &&
      nextHeader !== IPV6_EXT_ROUTING &&
      nextHeader !== IPV6_EXT_FRAGMENT &&
      nextHeader !== IPV6_EXT_DESTINATION &&
      nextHeader !== IPV6_EXT_AH
    ) {
      break;
    }
    // RFC 8200 section 4.3: hop-by-hop options only immediately after the IPv6 header.
    if (nextHeader === IPV6_EXT_HOP_BY_HOP && count !== 0) return Drop.BadExtensionHeader;
    if (++count > IPV6_MAX_EXTENSION_HEADERS) return Drop.BadExtensionHeader;
    if (pos + IPV6_EXT_MIN > end) return Drop.BadExtensionHeader;
    let headerLength: number;
    if (nextHeader === IPV6_EXT_FRAGMENT) {
      // RFC 8200 section 4.5: one fragment header per packet; a second would be nonsense.
      if (walkHasFragment) return Drop.BadExtensionHeader;
      headerLength = IPV6_FRAGMENT_HEADER;
      const word = (buf[pos + IPV6_FRAG_OFFSET_FIELD] << 8) | buf[pos + IPV6_FRAG_OFFSET_FIELD + 1];
      walkHasFragment = true;
      walkFragmentOffset = word & IPV6_FRAG_OFFSET_MASK; // 13-bit count of 8-byte units, already shifted by 3
      walkMoreFragments = (word & IPV6_FRAG_M) !== 0;
      walkFragmentId = read32(buf, pos + IPV6_FRAG_ID_FIELD);
    } else if (nextHeader === IPV6_EXT_AH) {
      headerLength = (buf[pos + 1] + 2) << 2; // RFC 4302 section 2.2: length in 4-byte units, minus 2
    } else {
      headerLength = (buf[pos + 1] + 1) << 3; // RFC 8200 section 4.3..4.6: 8-byte units, not counting the first 8
    }
    if (pos + headerLength > end) return Drop.BadExtensionHeader;
    nextHeader = buf[pos];
    pos += headerLength;
    if (walkHasFragment && walkFragmentOffset !== 0) break;
  }
  walkProtocol = nextHeader;
  walkOffset = pos;
  return Drop.None;
}

// --- transport ----------------------------------------------------------------------------------

/** Parses the transport header at l4 (avail bytes) of a whole packet or a first fragment. */
function inspectTransport(buf: Uint8Array, l4: number, avail: number, protocol: number, family: number, info: PacketInfo): number {
  if (protocol === IPPROTO_UDP) {
    if (avail < UDP_HEADER) return info.isFragment ? Drop.BadFragment : Drop.Truncated;
    const udpLength = (buf[l4 + UDP_LENGTH] << 8) | buf[l4 + UDP_LENGTH + 1];
    // RFC 768: the length counts header and data. A first fragment holds only part of the datagram, so
    // only the lower bound applies to it.
    if (udpLength < UDP_HEADER || (udpLength > avail && !info.isFragment)) return Drop.BadTotalLength;
    info.srcPort = (buf[l4] << 8) | buf[l4 + 1];
    info.dstPort = (buf[l4 + 2] << 8) | buf[l4 + 3];
    info.hasTransportHeader = true;
    return Drop.None;
  }
  if (protocol === IPPROTO_TCP) return inspectTcp(buf, l4, avail, info);
  if (family === 4) return inspectIcmp4(buf, l4, avail, info);
  return inspectIcmp6(buf, l4, avail, info);
}

function inspectTcp(buf: Uint8Array, l4: number, avail: number, info: PacketInfo): number {
  // RFC 1858: a first fragment must hold the whole TCP header (flags included), or flag-based filtering is moot.
  if (avail < TCP_MIN_HEADER) return info.isFragment ? Drop.BadFragment : Drop.Truncated;
  const headerLength = (buf[l4 + TCP_DATA_OFFSET] >>> 4) << 2;
  if (headerLength < TCP_MIN_HEADER) return Drop.BadHeaderLength;
  if (headerLength > avail) return info.isFragment ? Drop.BadFragment : Drop.BadHeaderLength;
  const flags = buf[l4 + TCP_FLAGS];
  info.srcPort = (buf[l4] << 8) | buf[l4 + 1];
  info.dstPort = (buf[l4 + 2] << 8) | buf[l4 + 3];
  info.tcpSeq = read32(buf, l4 + TCP_SEQ);
  info.tcpAck = read32(buf, l4 + TCP_ACK);
  info.tcpFlags = flags;
  info.tcpWindow = (buf[l4 + TCP_WINDOW] << 8) | buf[l4 + TCP_WINDOW + 1];
  info.tcpHeaderLength = headerLength;
  info.tcpPayloadLength = avail - headerLength;
  info.hasTransportHeader = true;
  // RFC 9293 section 3.7.1 / RFC 7323 section 2.2: MSS and window scale are only meaningful on a SYN.
  if ((flags & TCP_SYN) !== 0 && headerLength > TCP_MIN_HEADER) parseTcpOptions(buf, l4 + TCP_MIN_HEADER, l4 + headerLength, info);
  return Drop.None;
}

/**
 * Reads MSS and window scale from the option list in [pos, end). A malformed list (a length below 2 or
 * running past the header) ends parsing: the options found so far stand and the segment is not dropped,
 * as an end host would do (RFC 9293 section 3.1, "Options").
 */
function parseTcpOptions(buf: Uint8Array, pos: number, end: number, info: PacketInfo): void {
  while (pos < end) {
    const kind = buf[pos];
    if (kind === TCP_OPT_EOL) return;
    if (kind === TCP_OPT_NOP) {
      pos++;
      continue;
    }
    if (pos + 1 >= end) return;
    const optionLength = buf[pos + 1];
    if (optionLength < 2 || pos + optionLength > end) return;
    if (kind === TCP_OPT_MSS && optionLength === TCP_OPT_MSS_LENGTH) {
      info.tcpMss = (buf[pos + 2] << 8) | buf[pos + 3];
      info.tcpMssOffset = pos + 2;
    } else if (kind === TCP_OPT_WINDOW_SCALE && optionLength === TCP_OPT_WINDOW_SCALE_LENGTH) {
      const shift = buf[pos + 2];
      info.tcpWindowScale = shift > TCP_MAX_WINDOW_SHIFT ? TCP_MAX_WINDOW_SHIFT : shift;
    }
    pos += optionLength;
  }
}

/** ICMPv4 query types whose identifier we track: echo (RFC 792) and timestamp (RFC 792). Returns 1 request, 2 reply, 0 other. */
function icmp4QueryKind(type: number): number {
  if (type === ICMP4_ECHO_REQUEST || type === ICMP4_TIMESTAMP) return 1;
  if (type === ICMP4_ECHO_REPLY || type === ICMP4_TIMESTAMP_REPLY) return 2;
  return 0;
}

function icmp6QueryKind(type: number): number {
  if (type === ICMP6_ECHO_REQUEST) return 1;
  if (type === ICMP6_ECHO_REPLY) return 2;
  return 0;
}

const QUERY_REQUEST = 1;

/*
 * The ICMP checksum is NOT verified here: it costs a pass over the whole message, echo payloads are the
 * end hosts' business, and for errors the pipeline verifies it on its slow path before translating them.
 */

function inspectIcmp4(buf: Uint8Array, l4: number, avail: number, info: PacketInfo): number {
  if (avail < ICMP_HEADER) return info.isFragment ? Drop.BadFragment : Drop.BadIcmp;
  const type = buf[l4 + ICMP_TYPE];
  info.icmpType = type;
  info.icmpCode = buf[l4 + ICMP_CODE];
  const query = icmp4QueryKind(type);
  if (query !== 0) return setIcmpQuery(buf, l4, query, info);
  // RFC 792 errors we translate. Source quench is deprecated (RFC 6633) and redirects only concern the
  // sender's own link: both, and every other type, are not forwarded.
  if (type !== ICMP4_DEST_UNREACHABLE && type !== ICMP4_TIME_EXCEEDED && type !== ICMP4_PARAMETER_PROBLEM) return Drop.UnsupportedProtocol;
  info.isIcmpError = true;
  info.hasTransportHeader = true;
  return inspectEmbedded4(buf, l4 + ICMP_HEADER, l4 + avail, info);
}

function inspectIcmp6(buf: Uint8Array, l4: number, avail: number, info: PacketInfo): number {
  if (avail < ICMP_HEADER) return info.isFragment ? Drop.BadFragment : Drop.BadIcmp;
  const type = buf[l4 + ICMP_TYPE];
  info.icmpType = type;
  info.icmpCode = buf[l4 + ICMP_CODE];
  const query = icmp6QueryKind(type);
  if (query !== 0) return setIcmpQuery(buf, l4, query, info);
  // RFC 4443 errors; neighbour discovery, MLD and the rest stay on their link.
  if (type !== ICMP6_DEST_UNREACHABLE && type !== ICMP6_PACKET_TOO_BIG && type !== ICMP6_TIME_EXCEEDED && type !== ICMP6_PARAMETER_PROBLEM) {
    return Drop.UnsupportedProtocol;
  }
  info.isIcmpError = true;
  info.hasTransportHeader = true;
  return inspectEmbedded6(buf, l4 + ICMP_HEADER, l4 + avail, info);
}

/** Echo/timestamp: the identifier plays the port so that request and reply swap like ports (packet-info.ts). */
function setIcmpQuery(buf: Uint8Array, l4: number, query: number, info: PacketInfo): number {
  const id = (buf[l4 + ICMP_ID] << 8) | buf[l4 + ICMP_ID + 1];
  info.icmpId = id;
  if (query === QUERY_REQUEST) info.srcPort = id;
  else info.dstPort = id;
  info.hasTransportHeader = true;
  return Drop.None;
}

/**
 * The IPv4 packet quoted by an ICMPv4 error, in [pos, end). Its header checksum is not verified (routers
 * quote the header as they saw it, possibly after their own changes); its total length is not checked
 * against the quote (the quote is truncated by design).
 */
function inspectEmbedded4(buf: Uint8Array, pos: number, end: number, info: PacketInfo): number {
  if (pos + IPV4_MIN_HEADER > end) return Drop.BadIcmp;
  if (buf[pos] >>> 4 !== IP_VERSION_4) return Drop.BadIcmp;
  const headerLength = (buf[pos] & IPV4_IHL_MASK) << 2;
  if (headerLength < IPV4_MIN_HEADER || pos + headerLength > end) return Drop.BadIcmp;
  // A quoted non-first fragment has no ports: nothing to match it to.
  const flagsFragment = (buf[pos + IPV4_FLAGS_FRAGMENT] << 8) | buf[pos + IPV4_FLAGS_FRAGMENT + 1];
  if ((flagsFragment & IPV4_FRAGMENT_OFFSET_MASK) !== 0) return Drop.BadIcmp;
  const protocol = buf[pos + IPV4_PROTOCOL];
  readAddrs4(buf, pos, info.innerAddr);
  info.innerFamily = 4;
  info.innerL3Offset = pos;
  info.innerProtocol = protocol;
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMP) return Drop.UnsupportedProtocol;
  return inspectEmbeddedTransport(buf, pos + headerLength, end, protocol, info);
}

function inspectEmbedded6(buf: Uint8Array, pos: number, end: number, info: PacketInfo): number {
  if (pos + IPV6_HEADER > end) return Drop.BadIcmp;
  if (buf[pos] >>> 4 !== IP_VERSION_6) return Drop.BadIcmp;
  readAddr6(buf, pos + IPV6_SRC, info.innerAddr, 0);
  readAddr6(buf, pos + IPV6_DST, info.innerAddr, 4);
  info.innerFamily = 6;
  info.innerL3Offset = pos;
  // The quoted chain must lie within the message; a malformed one makes the error unusable.
  if (walkExtensions(buf, pos + IPV6_HEADER, buf[pos + IPV6_NEXT_HEADER], end) !== Drop.None) return Drop.BadIcmp;
  if (walkHasFragment && walkFragmentOffset !== 0) return Drop.BadIcmp;
  const protocol = walkProtocol;
  info.innerProtocol = protocol;
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMPV6) return Drop.UnsupportedProtocol;
  return inspectEmbeddedTransport(buf, walkOffset, end, protocol, info);
}

/**
 * The first bytes of the quoted transport header: RFC 792 guarantees 8 (ports, or ICMP type/code/checksum/id),
 * which is all the flow match needs. An error about an error is malformed (RFC 1122 section 3.2.2,
 * RFC 4443 section 2.4 (e): no error is ever sent about an ICMP error).
 */
function inspectEmbeddedTransport(buf: Uint8Array, l4: number, end: number, protocol: number, info: PacketInfo): number {
  const available = end - l4;
  if (available < ICMP_HEADER) return Drop.BadIcmp; // TCP, UDP and ICMP alike need 8 bytes
  info.innerL4Offset = l4;
  info.innerL4Available = available;
  if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) {
    info.innerSrcPort = (buf[l4] << 8) | buf[l4 + 1];
    info.innerDstPort = (buf[l4 + 2] << 8) | buf[l4 + 3];
    return Drop.None;
  }
  const type = buf[l4 + ICMP_TYPE];
  const query = info.innerFamily === 4 ? icmp4QueryKind(type) : icmp6QueryKind(type);
  if (query === 0) {
    // Errors about errors are malformed; errors about other informational messages match no flow.
    const isError = info.innerFamily === 4 ? isIcmp4Error(type) : type < ICMP6_INFO_MIN;
    return isError ? Drop.BadIcmp : Drop.UnsupportedProtocol;
  }
  const id = (buf[l4 + ICMP_ID] << 8) | buf[l4 + ICMP_ID + 1];
  if (query === QUERY_REQUEST) info.innerSrcPort = id;
  else info.innerDstPort = id;
  return Drop.None;
}

/** ICMPv4 error types (RFC 1122 section 3.2.2): destination unreachable, source quench, redirect, time exceeded, parameter problem. */
function isIcmp4Error(type: number): boolean {
  return (
    type === ICMP4_DEST_UNREACHABLE ||
    type === ICMP4_SOURCE_QUENCH ||
    type === ICMP4_REDIRECT ||
    type === ICMP4_TIME_EXCEEDED ||
    type === ICMP4_PARAMETER_PROBLEM
  );
}
