/**
 * GRE constants. Specification values (RFC 2784 "Generic Routing Encapsulation", RFC 2890 "Key and Sequence
 * Number Extensions to GRE", RFC 7676 "IPv6 Support for GRE") come first; our implementation choices follow.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |C| |K|S| Reserved0       | Ver |         Protocol Type         |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |      Checksum (optional)      |       Reserved1 (Optional)    |   present when C
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                         Key (optional)                        |   present when K
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                 Sequence Number (Optional)                    |   present when S
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */

/** GRE's IANA protocol number lives with the other IP constants; re-exported for the GRE room's users. */
export { IPPROTO_GRE, MIN_MTU_IPV4, MIN_MTU_IPV6, MSS_OVERHEAD_IPV4, MSS_OVERHEAD_IPV6 } from '../../wire/constants.js';

// --- RFC 2784 section 2 / RFC 2890 section 2: the header ---------------------------------------
/** The mandatory part: flags + version (16 bits) and protocol type (16 bits). */
export const GRE_BASE_HEADER = 4;
/** Each optional field (checksum + reserved1, key, sequence number) is one 32-bit word. */
export const GRE_OPTIONAL_FIELD = 4;
export const GRE_MAX_HEADER = GRE_BASE_HEADER + 3 * GRE_OPTIONAL_FIELD;
export const GRE_FLAGS = 0;
export const GRE_PROTOCOL_TYPE = 2;

/** Bits of the first 16-bit word. */
export const GRE_FLAG_C = 0x8000; // checksum present (RFC 2784 section 2.1)
export const GRE_FLAG_K = 0x2000; // key present (RFC 2890 section 2)
export const GRE_FLAG_S = 0x1000; // sequence number present (RFC 2890 section 2)
/**
 * RFC 2784 section 2.5: "A receiver MUST discard a packet where any of bits 1-5 are non-zero, unless that
 * receiver implements RFC 1701." Bits 2 and 3 are K and S (RFC 2890); what is left is bit 1 (RFC 1701 routing
 * present), bit 4 (strict source route) and bit 5 (top bit of RFC 1701's recursion control).
 */
export const GRE_MUST_BE_ZERO = 0x4000 | 0x0800 | 0x0400;
/** RFC 2784 section 2.5: bits 6-12 "MUST be sent as zero and MUST be ignored on receipt". */
export const GRE_IGNORED_BITS = 0x03f8;
/** RFC 2784 section 2.3.1: the version MUST be 0 (version 1 is PPTP's enhanced GRE, RFC 2637). */
export const GRE_VERSION_MASK = 0x0007;

/** Protocol types (RFC 2784 section 2.4: Ethernet protocol types, RFC 1700 "ETHER TYPES"). */
export const GRE_PROTO_IPV4 = 0x0800;
export const GRE_PROTO_IPV6 = 0x86dd;

// --- outer IP ----------------------------------------------------------------------------------
/** Outer headers we emit: no IPv4 options, no IPv6 extension headers. */
export const OUTER_IPV4_HEADER = 20;
export const OUTER_IPV6_HEADER = 40;
/** TTL / hop limit of the outer header we emit (RFC 1700 / RFC 1122 section 3.2.1.7 default). */
export const OUTER_TTL = 64;
/**
 * IPv6 extension headers we step over before GRE: hop-by-hop and destination options (Linux ip6gre sends the
 * RFC 2473 tunnel encapsulation limit as a destination option by default). Bound on the chain we walk.
 */
export const OUTER_IPV6_MAX_EXTENSIONS = 4;

// --- MTU ---------------------------------------------------------------------------------------
export const ETHERNET_MTU = 1500;
/** 1500 - 20 (outer IPv4) - 4 (GRE): Linux's gre0 default. */
export const DEFAULT_MTU_IPV4_OUTER = ETHERNET_MTU - OUTER_IPV4_HEADER - GRE_BASE_HEADER;
/** 1500 - 40 (outer IPv6) - 4 (GRE). */
export const DEFAULT_MTU_IPV6_OUTER = ETHERNET_MTU - OUTER_IPV6_HEADER - GRE_BASE_HEADER;

// --- implementation choices --------------------------------------------------------------------
/** Tunnels per table unless the caller says otherwise ("a few hundred" expected). */
export const DEFAULT_MAX_TUNNELS = 1024;
