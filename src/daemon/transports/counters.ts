/** The device layer's own counters (the engines keep theirs: pipeline, GRE, WireGuard), shared by the transports. */

/** Edge-level counters, indexed into the Edge's `counters`. */
export const enum EdgeCounter {
  /** Underlay packets that are not valid IP (inspect failed on the outer header). */
  UnderlayMalformed = 0,
  /** Underlay packets for no endpoint we serve (protocol, address or port). */
  UnderlayNotForUs = 1,
  /** GRE packets GreOnramp refused (reasons in the GRE drops). */
  GreReceiveDrop = 2,
  /** GRE keepalives reflected to their sender. */
  GreReflected = 3,
  /** WireGuard datagrams the device refused (reasons in its drops). */
  WgReceiveDrop = 4,
  /** WireGuard inner packets bigger than a batch slot. */
  WgInnerTooBig = 5,
  /** WireGuard datagrams we could not send: IPv6 peer endpoint, or a wildcard device with no local address yet. */
  WgUnsendable = 6,
  /** Echo requests to an endpoint address, answered. */
  EchoReplied = 7,
  /** Packets for a GRE tunnel that exceed its MTU with DF set (dropped; an ICMP error goes back, see GreTooBigReported). */
  GreTooBig = 8,
  /** IPv4 packets without DF fragmented to fit a GRE tunnel (counted per original packet). */
  GreFragmented = 9,
  /** Packets GreOnramp.send refused. */
  GreSendDrop = 10,
  /** Forwarded packets whose next hop has no delivery here (an onramp removed while its flows live). */
  NoDelivery = 11,
  /** ICMP fragmentation-needed / packet-too-big sent back for packets too big for a GRE tunnel. */
  GreTooBigReported = 12,
  /** WireGuard datagrams from a peer whose onramp was removed or re-keyed (the engine's Revoked drops). */
  WgPeerRemoved = 13,
  /** Packets for a WireGuard onramp that exceed its tunnel MTU with DF set, or IPv6 (dropped; see WgTooBigReported). */
  WgTooBig = 14,
  /** IPv4 packets without DF fragmented to fit a WireGuard onramp's tunnel MTU (counted per original packet). */
  WgFragmented = 15,
  /** ICMP fragmentation-needed / packet-too-big sent back for packets too big for a WireGuard onramp. */
  WgTooBigReported = 16,
  /** Oversize packets for a WireGuard onramp that could not be inspected again (not sent). */
  WgSendDrop = 17,
  /** ESP packets the IPsec transport refused (reasons in its ESP drops: unknown SPI, replay, ICV, padding, …). */
  IpsecReceiveDrop = 18,
  /** NAT-keepalives (RFC 3948 §2.3) received on UDP 4500. */
  IpsecKeepalive = 19,
  /** IKE datagrams received (UDP 500, or 4500 after the non-ESP marker) and handed to the IKE engine. */
  IpsecIkeReceived = 20,
  /** Packets for an IPsec onramp not sent (no SA, sequence numbers exhausted, too big for the slot, crypto). */
  IpsecSendDrop = 21,
  /** Packets for an IPsec onramp that exceed its tunnel MTU with DF set, or IPv6 (dropped; see IpsecTooBigReported). */
  IpsecTooBig = 22,
  /** IPv4 packets without DF fragmented to fit an IPsec onramp's tunnel MTU (counted per original packet). */
  IpsecFragmented = 23,
  /** ICMP fragmentation-needed / packet-too-big sent back for packets too big for an IPsec onramp. */
  IpsecTooBigReported = 24,
  /** The IKE engine threw on a message or a timer (a bug: logged, the message dropped, the daemon carries on). */
  IpsecEngineError = 25,
  /** GSO super-packets (from a TUN with offloads) cut into segments in software for a next hop without offloads. */
  GsoSegmented = 26,
  /** The segments those made. */
  GsoSegments = 27,
  /** Partial checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM) completed in software for a next hop without offloads. */
  ChecksumCompleted = 28,
  /** Super-packets or partial checksums whose virtio-net header does not fit the packet (dropped). */
  GsoBad = 29,
  /** TCP segments coalesced into super-packets before a TUN write (GRO, dataplane/gro.ts). */
  GroSegments = 30,
  /** The super-packets those made (each one write instead of its segments'). */
  GroSuperPackets = 31,
  /** Lanes: packets handed to the lane that owns them: from the Internet, by NAT slice; a miss, by the ownership directory (docs/ARCHITECTURE.md "Lanes"). */
  LaneHandedOff = 32,
  /** Lanes: packets to hand off dropped because the ring to their lane was full. */
  LaneRingFull = 33,
  /** Lanes: packets other lanes handed to this one. */
  LaneReceived = 34,
  /** Lanes: handed-off packets longer than this lane's read slots (dropped). */
  LaneHandoffTooLong = 35,
  /** Lanes ≥ 1: forwarded packets whose next hop is a tunnel onramp, sent to lane 0 to deliver (ViaLaneZero). */
  LaneDeliveredViaLane0 = 36,
  /** Lane 0: those packets, delivered for the other lanes to their tunnel onramps. */
  LaneDeliveredForLanes = 37,
  /**
   * Lanes: first fragments this lane handed to another lane (by NAT port or the ownership directory), whose later
   * fragments, which the kernel gives to this lane too, follow them there (dataplane/fragment-steer.ts).
   */
  LaneFragmentsSteered = 38,
}

export const EDGE_COUNTER_NAMES: readonly string[] = [
  'underlay_malformed',
  'underlay_not_for_us',
  'gre_receive_drop',
  'gre_reflected',
  'wg_receive_drop',
  'wg_inner_too_big',
  'wg_unsendable',
  'echo_replied',
  'gre_too_big',
  'gre_fragmented',
  'gre_send_drop',
  'no_delivery',
  'gre_too_big_reported',
  'wg_peer_removed',
  'wg_too_big',
  'wg_fragmented',
  'wg_too_big_reported',
  'wg_send_drop',
  'ipsec_receive_drop',
  'ipsec_keepalive',
  'ipsec_ike_received',
  'ipsec_send_drop',
  'ipsec_too_big',
  'ipsec_fragmented',
  'ipsec_too_big_reported',
  'ipsec_engine_error',
  'gso_segmented',
  'gso_segments',
  'checksum_completed',
  'gso_bad',
  'gro_segments',
  'gro_super_packets',
  'lane_handed_off',
  'lane_ring_full',
  'lane_received',
  'lane_handoff_too_long',
  'lane_delivered_via_lane0',
  'lane_delivered_for_lanes',
  'lane_fragments_steered',
];

/** The non-zero entries of a counter array by name (allocates: control plane, for status and logs). */
export function nonZero(values: ArrayLike<number>, names: Readonly<Record<number, string>> | readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) out[(names as Record<number, string>)[i] ?? String(i)] = values[i];
  return out;
}
