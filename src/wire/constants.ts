/**
 * Specification constants for the wire formats: field offsets (relative to the start of their
 * header), flag bits, type numbers and limits. Implementation choices live in the modules that use them.
 */

// --- IP versions, protocol numbers, address families ----------------------------------------------
/** The version nibble, the high 4 bits of an IP header's first byte (RFC 791 section 3.1, RFC 8200 section 3). */
export const IP_VERSION_4 = 4;
export const IP_VERSION_6 = 6;
/** The version nibble is the high half of byte 0: `byte >>> IP_VERSION_SHIFT`. */
export const IP_VERSION_SHIFT = 4;
/** Address families as tether stores them (PacketInfo.family, flow tables): the IP version number. */
export const AF_INET4 = 4;
export const AF_INET6 = 6;
/** IP protocol numbers (IANA "Assigned Internet Protocol Numbers"; RFC 790 for the first ones). */
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_GRE = 47;
/** IPsec ESP (RFC 4303 section 2): an IP protocol of its own, arriving through the underlay like GRE. */
export const IPPROTO_ESP = 50;
export const IPPROTO_ICMPV6 = 58;

// --- IPv4 (RFC 791 section 3.1) -----------------------------------------------------------------
export const IPV4_MIN_HEADER = 20;
/** IHL is 4 bits of 32-bit words: at most 15 * 4 bytes. */
export const IPV4_MAX_HEADER = 60;
export const IPV4_VERSION_IHL = 0;
/** The IHL nibble of the first byte: header length in 32-bit words. */
export const IPV4_IHL_MASK = 0x0f;
/** IHL counts 32-bit words: bytes = IHL * IPV4_IHL_UNIT. */
export const IPV4_IHL_UNIT = 4;
export const IPV4_TOS = 1;
export const IPV4_TOTAL_LENGTH = 2;
export const IPV4_ID = 4;
export const IPV4_FLAGS_FRAGMENT = 6;
export const IPV4_TTL = 8;
export const IPV4_PROTOCOL = 9;
export const IPV4_CHECKSUM = 10;
export const IPV4_SRC = 12;
export const IPV4_DST = 16;
/** Bits of the 16-bit flags/fragment-offset word. */
export const IPV4_FLAG_RESERVED = 0x8000;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_FRAGMENT_OFFSET_MASK = 0x1fff;
/** Fragment offsets count 8-byte units (RFC 791 section 3.1, "Fragment Offset"). */
export const FRAGMENT_UNIT = 8;
export const IPV4_MAX_TOTAL_LENGTH = 0xffff;
/** IPv4 option types (RFC 791 section 3.1): end of list, no-op; bit 0x80 is the "copied" flag. */
export const IPV4_OPT_EOL = 0;
export const IPV4_OPT_NOP = 1;
export const IPV4_OPT_COPIED = 0x80;

// --- IPv6 (RFC 8200 section 3) ------------------------------------------------------------------
export const IPV6_HEADER = 40;
export const IPV6_PAYLOAD_LENGTH = 4;
export const IPV6_NEXT_HEADER = 6;
export const IPV6_HOP_LIMIT = 7;
export const IPV6_SRC = 8;
export const IPV6_DST = 24;
/** An IPv6 address is 16 bytes (RFC 4291 section 2). */
export const IPV6_ADDR_BYTES = 16;
/** Extension header numbers (RFC 8200 section 4; AH: RFC 4302; ESP: RFC 4303). */
export const IPV6_EXT_HOP_BY_HOP = 0;
export const IPV6_EXT_ROUTING = 43;
export const IPV6_EXT_FRAGMENT = 44;
export const IPV6_EXT_ESP = 50;
export const IPV6_EXT_AH = 51;
export const IPV6_NO_NEXT_HEADER = 59;
export const IPV6_EXT_DESTINATION = 60;
/** Every extension header is a multiple of 8 bytes and at least 8 long; the fragment header is exactly 8. */
export const IPV6_EXT_MIN = 8;
export const IPV6_FRAGMENT_HEADER = 8;
/** Fragment header: offset (13 bits, 8-byte units) + 2 reserved bits + M flag in bytes 2..3; identification in 4..7. */
export const IPV6_FRAG_OFFSET_FIELD = 2;
export const IPV6_FRAG_ID_FIELD = 4;
export const IPV6_FRAG_OFFSET_MASK = 0xfff8;
export const IPV6_FRAG_M = 0x0001;
/** RFC 8200 section 4.4: segments left is byte 3 of a routing header. */
export const IPV6_ROUTING_SEGMENTS_LEFT = 3;
/**
 * Our bound on the extension chain. RFC 8200 section 4.1 recommends an order in which each header
 * appears at most once (destination options twice): 8 is generous for real traffic and bounds the walk.
 */
export const IPV6_MAX_EXTENSION_HEADERS = 8;

// --- MTU and MSS -------------------------------------------------------------------------------
/** RFC 791: every IPv4 host must take 68-byte datagrams unfragmented. */
export const MIN_MTU_IPV4 = 68;
/** RFC 8200 section 5: every IPv6 link carries 1280-byte packets. */
export const MIN_MTU_IPV6 = 1280;
/** TCP MSS = MTU - IP header - TCP header (RFC 9293 section 3.7.1; RFC 8200 section 8.3 for IPv6). */
export const MSS_OVERHEAD_IPV4 = 40;
export const MSS_OVERHEAD_IPV6 = 60;

// --- TCP (RFC 9293 section 3.1) -----------------------------------------------------------------
export const TCP_MIN_HEADER = 20;
export const TCP_SRC_PORT = 0;
export const TCP_DST_PORT = 2;
export const TCP_SEQ = 4;
export const TCP_ACK = 8;
export const TCP_DATA_OFFSET = 12;
export const TCP_FLAGS = 13;
export const TCP_WINDOW = 14;
export const TCP_CHECKSUM = 16;
export const TCP_URGENT = 18;
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK_FLAG = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;
/** Option kinds (RFC 9293 section 3.2; RFC 7323; RFC 2018). */
export const TCP_OPT_EOL = 0;
export const TCP_OPT_NOP = 1;
export const TCP_OPT_MSS = 2;
export const TCP_OPT_WINDOW_SCALE = 3;
export const TCP_OPT_SACK_PERMITTED = 4;
export const TCP_OPT_TIMESTAMPS = 8;
export const TCP_OPT_MSS_LENGTH = 4;
export const TCP_OPT_WINDOW_SCALE_LENGTH = 3;
export const TCP_OPT_SACK_PERMITTED_LENGTH = 2;
export const TCP_OPT_TIMESTAMPS_LENGTH = 10;
/** RFC 7323 section 2.3: a shift above 14 is treated as 14. */
export const TCP_MAX_WINDOW_SHIFT = 14;

// --- UDP (RFC 768) ------------------------------------------------------------------------------
export const UDP_HEADER = 8;
export const UDP_SRC_PORT = 0;
export const UDP_DST_PORT = 2;
export const UDP_LENGTH = 4;
export const UDP_CHECKSUM = 6;

// --- ICMP (RFC 792) and ICMPv6 (RFC 4443) -------------------------------------------------------
/** Type, code, checksum and a 32-bit "rest of header" word: every message has at least these 8 bytes. */
export const ICMP_HEADER = 8;
export const ICMP_TYPE = 0;
export const ICMP_CODE = 1;
export const ICMP_CHECKSUM = 2;
export const ICMP_ID = 4;
export const ICMP_SEQ = 6;
/** ICMPv4 parameter problem pointer (RFC 792) is one byte at offset 4. */
export const ICMP4_POINTER = 4;
/** ICMPv4 "fragmentation needed" next-hop MTU (RFC 1191 section 4) is the low 16 bits at offset 6. */
export const ICMP4_NEXT_HOP_MTU = 6;
/** ICMPv6 packet-too-big MTU and parameter-problem pointer are 32 bits at offset 4 (RFC 4443 sections 3.2, 3.4). */
export const ICMP6_MTU = 4;
export const ICMP6_POINTER = 4;

export const ICMP4_ECHO_REPLY = 0;
export const ICMP4_DEST_UNREACHABLE = 3;
export const ICMP4_SOURCE_QUENCH = 4;
export const ICMP4_REDIRECT = 5;
export const ICMP4_ECHO_REQUEST = 8;
export const ICMP4_TIME_EXCEEDED = 11;
export const ICMP4_PARAMETER_PROBLEM = 12;
export const ICMP4_TIMESTAMP = 13;
export const ICMP4_TIMESTAMP_REPLY = 14;
export const ICMP4_CODE_PORT_UNREACHABLE = 3;
export const ICMP4_CODE_FRAGMENTATION_NEEDED = 4;

export const ICMP6_DEST_UNREACHABLE = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_PARAMETER_PROBLEM = 4;
/** RFC 4443 section 2.1: types 0..127 are errors, 128..255 informational. */
export const ICMP6_INFO_MIN = 128;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;
/** TTL / hop limit of packets the edge originates or answers (Linux's default, net.ipv4.ip_default_ttl). */
export const ORIGINATED_TTL = 64;

/** RFC 1812 section 4.3.2.3: an ICMPv4 error should not exceed 576 bytes. */
export const ICMP4_ERROR_MAX = 576;
/** RFC 4443 section 2.4 (c): an ICMPv6 error must not exceed the minimum IPv6 MTU. */
export const ICMP6_ERROR_MAX = 1280;
