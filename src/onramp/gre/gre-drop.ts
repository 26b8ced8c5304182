/**
 * Why the GRE onramp dropped a packet, one counter per reason. GRE-specific, so kept apart from
 * src/common/drop-reasons.ts (as WireGuard's wg-drop.ts is); the data plane maps them when it counts.
 * Keep the numbering stable; append new reasons at the end.
 */
export const enum GreDrop {
  None = 0,
  Truncated = 1, // shorter than the outer IP header, the GRE header it announces, or an empty payload
  BadOuterIp = 2, // outer version / IHL / total length / payload length inconsistent with the bytes
  BadOuterChecksum = 3, // outer IPv4 header checksum does not verify
  NotGre = 4, // outer protocol / next header is not 47
  OuterFragment = 5, // outer IPv4 or IPv6 fragment: we do not reassemble tunnel packets
  OuterExtension = 6, // outer IPv6 extension chain we do not step over (routing with segments left, too long, malformed)
  BadVersion = 7, // GRE version != 0 (RFC 2784 section 2.3.1; version 1 is PPTP)
  ReservedBits = 8, // bit 1, 4 or 5 set (RFC 2784 section 2.5: RFC 1701 routing / strict route / recursion)
  BadChecksum = 9, // C set and the GRE checksum does not verify (RFC 2784 section 2.2)
  UnsupportedProtocol = 10, // protocol type is neither IPv4 nor IPv6 (transparent Ethernet, MPLS, ...)
  BadInner = 11, // inner packet's version nibble disagrees with the protocol type
  UnknownTunnel = 12, // no tunnel for the (local, remote) endpoint pair
  UnknownKey = 13, // the endpoint pair is configured, but not with this key (or with a key and the packet has none, or vice versa)
  MissingChecksum = 14, // tunnel configured to require checksums, packet has none
  MissingSequence = 15, // tunnel configured for sequencing, packet has no sequence number
  OutOfOrder = 16, // sequence number older than the next expected one (RFC 2890 section 2.2)
  NoHeadroom = 17, // encapsulation: not enough room in front of the inner packet
  TooBig = 18, // encapsulation: the outer packet would exceed 65535 bytes; or inner over the tunnel MTU and not fragmentable
  NoTunnel = 19, // send to an onramp id that is not a configured GRE tunnel
}

export const GRE_DROP_COUNT = 20;

/** Names for metrics and logs (control plane only). */
export const GRE_DROP_NAMES: readonly string[] = [
  'none',
  'truncated',
  'bad_outer_ip',
  'bad_outer_checksum',
  'not_gre',
  'outer_fragment',
  'outer_extension',
  'bad_version',
  'reserved_bits',
  'bad_checksum',
  'unsupported_protocol',
  'bad_inner',
  'unknown_tunnel',
  'unknown_key',
  'missing_checksum',
  'missing_sequence',
  'out_of_order',
  'no_headroom',
  'too_big',
  'no_tunnel',
];
