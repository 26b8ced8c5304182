/**
 * Why a packet was dropped. One byte per packet in a batch; one counter per reason.
 * Parsers never throw on bad input: they return one of these.
 * Keep the numbering stable (it appears in metrics); append new reasons at the end.
 */
export const enum Drop {
  None = 0,
  // --- wire: malformed or unsupported input -------------------------------------------------
  Truncated = 1, // shorter than the header it claims to be
  BadVersion = 2, // IP version nibble is neither 4 nor 6
  BadHeaderLength = 3, // IPv4 IHL < 5 or beyond the packet, TCP data offset < 5 or beyond the segment
  BadTotalLength = 4, // IPv4 total length / IPv6 payload length disagrees with the bytes we hold
  BadIpChecksum = 5, // IPv4 header checksum does not verify
  BadExtensionHeader = 6, // IPv6 extension chain malformed or too long
  UnsupportedProtocol = 7, // transport we do not track (counted, not forwarded)
  BadIcmp = 8, // ICMP message too short or malformed embedded header
  BadFragment = 9, // fragment offsets / lengths inconsistent
  FragmentTimeout = 10, // fragment waited too long for its first fragment
  FragmentOverflow = 11, // fragment memory bound reached
  BadAddress = 12, // source is multicast/broadcast/unspecified, or martian
  // --- flow table ---------------------------------------------------------------------------
  TableFull = 20, // no room and nothing evictable
  QuotaExceeded = 21, // onramp's flow quota reached
  TcpNoFlow = 22, // TCP segment without SYN and no flow
  TcpOutOfWindow = 23, // sequence/ack outside the tracked window
  TcpInvalid = 24, // invalid flag combination or state transition
  FlowOwnerMismatch = 25, // packet matched a flow but came in on a port that does not own that direction
  // --- policy / routing / NAT ---------------------------------------------------------------
  PolicyDeny = 30,
  NoRoute = 31,
  Blackhole = 32,
  NatExhausted = 33, // no free port in the egress pool
  NoNatMapping = 34, // inbound to the egress pool with no mapping (filtering)
  IcmpNoFlow = 35, // ICMP error whose embedded header matches no flow
  TtlExceeded = 36,
  NextHopDown = 37,
  ReplyNoFlow = 38, // packet from the Internet egress that matches no flow
  UnknownPort = 39, // packet tagged with an onramp id that is not configured
  SourceNotAllowed = 40, // source outside the prefixes its onramp may send from (WireGuard allowed IPs)
  // --- fair shares and filtering (issue 11) --------------------------------------------------
  NatQuotaExceeded = 41, // the site holds its share of the paired pool address's ports (per-site port quota)
  FragmentQuotaExceeded = 42, // the site holds its share of the early-fragment hold slots
  HairpinFiltered = 43, // hairpin to a mapping whose site never sent to the sender's mapping (RFC 4787 REQ-8)
  // --- gateway classification (issue 12; docs/POLICY.md "Hostname rules: how a flow is classified") ------------
  GatewayBlocked = 44, // a gateway rule blocks the flow: at setup, or the client payload that named it (both ends reset)
  ClassifyRetransmit = 45, // a client retransmission of bytes the classifier holds already (the held copy goes on)
  ClassifyGap = 46, // a client segment past a gap in the held bytes (dropped: the client resends from the gap)
  ClassifyTimeout = 47, // no name within classify.wait_ms and the fallback blocks (both ends reset)
  ClassifyTooLarge = 48, // the first payload exceeds classify.buffer_bytes undecided and the fallback blocks
  ClassifyNoBuffer = 49, // no free classify slot for the first payload and the fallback blocks
  ClassifyUnheld = 50, // a segment that cannot be held (GSO, partial checksum, too big) met held ones being released
  ClassifyReleaseOverflow = 51, // a held segment found no room in the pipeline's generated batch when released
  // --- DLP (issue 12) ----------------------------------------------------------------------------
  DlpBlocked = 52, // the segment that completed a match of a `block` DLP profile; the flow is cut (RST both ways)
  DlpReorder = 53, // a segment of a scanned flow past the reassembly hold window; its sender retransmits it
  // --- policy epochs (issue 12) ---------------------------------------------------------------
  PolicyCut = 54, // an established flow the changed policy no longer allows: cut at its next packet
}

/** Highest reason number + 1; size of counter arrays. */
export const DROP_REASON_COUNT = 55;

/** Names for metrics and logs (control plane only; never built per packet). */
export const DROP_REASON_NAMES: Readonly<Record<number, string>> = {
  [Drop.None]: 'none',
  [Drop.Truncated]: 'truncated',
  [Drop.BadVersion]: 'bad_version',
  [Drop.BadHeaderLength]: 'bad_header_length',
  [Drop.BadTotalLength]: 'bad_total_length',
  [Drop.BadIpChecksum]: 'bad_ip_checksum',
  [Drop.BadExtensionHeader]: 'bad_extension_header',
  [Drop.UnsupportedProtocol]: 'unsupported_protocol',
  [Drop.BadIcmp]: 'bad_icmp',
  [Drop.BadFragment]: 'bad_fragment',
  [Drop.FragmentTimeout]: 'fragment_timeout',
  [Drop.FragmentOverflow]: 'fragment_overflow',
  [Drop.BadAddress]: 'bad_address',
  [Drop.TableFull]: 'table_full',
  [Drop.QuotaExceeded]: 'quota_exceeded',
  [Drop.TcpNoFlow]: 'tcp_no_flow',
  [Drop.TcpOutOfWindow]: 'tcp_out_of_window',
  [Drop.TcpInvalid]: 'tcp_invalid',
  [Drop.FlowOwnerMismatch]: 'flow_owner_mismatch',
  [Drop.PolicyDeny]: 'policy_deny',
  [Drop.NoRoute]: 'no_route',
  [Drop.Blackhole]: 'blackhole',
  [Drop.NatExhausted]: 'nat_exhausted',
  [Drop.NoNatMapping]: 'no_nat_mapping',
  [Drop.IcmpNoFlow]: 'icmp_no_flow',
  [Drop.TtlExceeded]: 'ttl_exceeded',
  [Drop.NextHopDown]: 'next_hop_down',
  [Drop.ReplyNoFlow]: 'reply_no_flow',
  [Drop.UnknownPort]: 'unknown_port',
  [Drop.SourceNotAllowed]: 'source_not_allowed',
  [Drop.NatQuotaExceeded]: 'nat_quota_exceeded',
  [Drop.FragmentQuotaExceeded]: 'fragment_quota_exceeded',
  [Drop.HairpinFiltered]: 'hairpin_filtered',
  [Drop.GatewayBlocked]: 'gateway_blocked',
  [Drop.ClassifyRetransmit]: 'classify_retransmit',
  [Drop.ClassifyGap]: 'classify_gap',
  [Drop.ClassifyTimeout]: 'classify_timeout',
  [Drop.ClassifyTooLarge]: 'classify_too_large',
  [Drop.ClassifyNoBuffer]: 'classify_no_buffer',
  [Drop.ClassifyUnheld]: 'classify_unheld',
  [Drop.ClassifyReleaseOverflow]: 'classify_release_overflow',
  [Drop.DlpBlocked]: 'dlp_blocked',
  [Drop.DlpReorder]: 'dlp_reorder',
  [Drop.PolicyCut]: 'policy_cut',
};
