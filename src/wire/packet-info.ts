/**
 * PacketInfo: what header inspection learns about one IP packet, in one preallocated record
 * reused for every packet (never allocate one per packet). Filled by inspect() in inspect.ts.
 *
 * Offsets are absolute indices into the buffer that was inspected. Addresses are words
 * (see wire/addr.ts): addr[0..3] source, addr[4..7] destination; IPv4 uses addr[0] and addr[4].
 *
 * Ports carry the flow key's two 16-bit identifiers:
 *   - TCP/UDP: the ports.
 *   - ICMP / ICMPv6 queries (echo): the identifier, placed so that a request and its reply swap
 *     like ports do: request -> srcPort = id, dstPort = 0; reply -> srcPort = 0, dstPort = id.
 *   - ICMP errors: 0, 0 (errors are matched through their embedded header, inner* below).
 */
export const SRC = 0;
export const DST = 4;

export class PacketInfo {
  /** 4 or 6. */
  family = 0;
  /** Start of the IP header. */
  l3Offset = 0;
  /**
   * The TCP/UDP checksum field holds only the pseudo-header sum, to be completed by whoever sends the packet
   * (a TUN with offloads handed it over with VIRTIO_NET_HDR_F_NEEDS_CSUM). Not read from the bytes: inspect()
   * clears it and the pipeline sets it from the batch's virtio-net header. The rewrites then update the field
   * as the kernel's inet_proto_csum_replace4 does for CHECKSUM_PARTIAL (see rewrite.ts).
   */
  csumPartial = false;
  /** Bytes of the IP packet as its header states it (IPv4 total length; IPv6 40 + payload length). */
  ipLength = 0;
  /** Transport protocol (after the IPv6 extension-header chain). */
  protocol = 0;
  /** Start of the transport header (after IPv4 options / IPv6 extension headers). */
  l4Offset = 0;
  /** Bytes from l4Offset to the end of the IP packet. */
  l4Length = 0;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl = 0;
  /** Where the TTL/hop-limit byte is (absolute), for the decrement. */
  ttlOffset = 0;
  /** Source words [0..3], destination words [4..7]. */
  readonly addr = new Uint32Array(8);
  srcPort = 0;
  dstPort = 0;

  // --- fragments (IPv4 header fields; IPv6 fragment header) -------------------------------
  /** True when this packet is a fragment (MF set or offset != 0). */
  isFragment = false;
  /** Fragment offset in bytes. */
  fragmentOffset = 0;
  moreFragments = false;
  /** IPv4 identification (16 bits) or IPv6 fragment identification (32 bits). */
  fragmentId = 0;
  /** IPv4 DF bit. */
  dontFragment = false;
  /**
   * False for a non-first fragment: the transport header is not in this packet and
   * srcPort/dstPort/tcp* fields are meaningless.
   */
  hasTransportHeader = false;

  // --- TCP ---------------------------------------------------------------------------------
  /** Flag byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80). */
  tcpFlags = 0;
  tcpSeq = 0;
  tcpAck = 0;
  tcpWindow = 0;
  /** TCP header length in bytes (data offset * 4). */
  tcpHeaderLength = 0;
  /** Payload bytes after the TCP header. */
  tcpPayloadLength = 0;
  /** Window scale option shift (RFC 7323 section 2.2), -1 when absent. Parsed on SYN only. */
  tcpWindowScale = -1;
  /** MSS option value (RFC 9293 section 3.7.1), 0 when absent; tcpMssOffset is where its 2 bytes are, 0 when absent. */
  tcpMss = 0;
  tcpMssOffset = 0;

  // --- ICMP / ICMPv6 -----------------------------------------------------------------------
  icmpType = 0;
  icmpCode = 0;
  /** Echo identifier (queries only). */
  icmpId = 0;
  /** True for an ICMP error (destination unreachable, time exceeded, parameter problem, packet too big...). */
  isIcmpError = false;

  // --- the packet embedded in an ICMP error (RFC 792, RFC 4443 section 2.1) ----------------
  innerFamily = 0;
  innerL3Offset = 0;
  innerProtocol = 0;
  innerL4Offset = 0;
  /** Bytes of the embedded transport header actually present (often just 8). */
  innerL4Available = 0;
  readonly innerAddr = new Uint32Array(8);
  /** Same conventions as srcPort/dstPort, for the embedded packet as it was sent. */
  innerSrcPort = 0;
  innerDstPort = 0;
}
