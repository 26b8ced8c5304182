/**
 * IPsec's seams: the shapes the IKEv2 engine (ike/), the ESP data path (esp/, native ESP crypto, the daemon's
 * ipsec transport) and the configuration (config/compile.ts) exchange. Written first so the pieces can be built
 * side by side; each piece's own details stay in its own files.
 *
 *   config (type: ipsec) ── compile ──► IkePeerConfig ──► IkeEngine (pure: ike/engine.ts)
 *                                                            │  IkeSink: send IKE datagrams, install/remove child SAs,
 *                                                            │           peer up/down (health), status
 *   underlay: UDP 500, UDP 4500 (non-ESP marker 0 = IKE,     ▼
 *             else ESP-in-UDP, 0xFF = NAT keepalive),     daemon/transports/ipsec.ts ── ChildSa ──► EspSaTable (esp/)
 *             IP protocol 50 (raw ESP)                       ESP in: SPI → SA → anti-replay check → native decrypt (batch)
 *                                                            ESP out: next hop = onramp → its outbound SA → native encrypt
 *
 * Algorithm names follow strongSwan's proposal keywords where one exists, so a config reads like swanctl.conf.
 * IANA numbers: RFC 7296 §3.3.2 and the IKEv2 registry (Transform Type 1 ENCR, 2 PRF, 3 INTEG, 4 DH, 5 ESN).
 */

/** Transform Type 1 (encryption). GCM: RFC 4106 (ESP) / RFC 5282 (IKE); CBC: RFC 3602. */
export const ENCRYPTION_ALGORITHMS = ['aes128gcm16', 'aes256gcm16', 'aes128', 'aes256'] as const;
export type EncryptionAlgorithm = (typeof ENCRYPTION_ALGORITHMS)[number];

/** Transform Type 3 (integrity), RFC 4868. None with an AEAD cipher. */
export const INTEGRITY_ALGORITHMS = ['sha256', 'sha384', 'sha512'] as const;
export type IntegrityAlgorithm = (typeof INTEGRITY_ALGORITHMS)[number];

/** Transform Type 2 (PRF), RFC 4868: prfsha256, prfsha384, prfsha512. */
export const PRF_ALGORITHMS = ['prfsha256', 'prfsha384', 'prfsha512'] as const;
export type PrfAlgorithm = (typeof PRF_ALGORITHMS)[number];

/** Transform Type 4 (Diffie-Hellman): modp2048 = 14 (RFC 3526), ecp256 = 19, ecp384 = 20 (RFC 5903), curve25519 = 31 (RFC 8031). */
export const DH_GROUPS = ['modp2048', 'ecp256', 'ecp384', 'curve25519'] as const;
export type DhGroup = (typeof DH_GROUPS)[number];

/** One IKE SA proposal: every combination of the listed transforms is acceptable (RFC 7296 §3.3). */
export interface IkeProposal {
  encryption: EncryptionAlgorithm[];
  /** Empty when every encryption algorithm is AEAD (GCM). */
  integrity: IntegrityAlgorithm[];
  prf: PrfAlgorithm[];
  dh: DhGroup[];
}

/** One ESP proposal. `dh`: PFS groups for CREATE_CHILD_SA (none in IKE_AUTH's child, RFC 7296 §1.2); empty = no PFS. ESN always off. */
export interface EspProposal {
  encryption: EncryptionAlgorithm[];
  integrity: IntegrityAlgorithm[];
  dh: DhGroup[];
}

/** RFC 7296 §3.5 ID types tether accepts. */
export type IkeIdentity =
  | { type: 'fqdn'; value: string }
  | { type: 'ipv4'; value: string }
  | { type: 'ipv6'; value: string }
  | { type: 'rfc822'; value: string }
  | { type: 'key-id'; value: Uint8Array };

/** A traffic selector range (RFC 7296 §3.13.1), addresses as text; protocol 0 = any, ports 0..65535 = any. */
export interface TrafficSelector {
  family: 4 | 6;
  start: string;
  end: string;
  protocol: number;
  startPort: number;
  endPort: number;
}

/** One IPsec onramp as the IKE engine runs it (compiled from `type: ipsec` config). */
export interface IkePeerConfig {
  /** The onramp id (pipeline port). */
  onramp: number;
  name: string;
  /** Underlay addresses (IPv4 text). Remote '0.0.0.0' = any address (responder only; matched by identity). */
  localAddress: string;
  remoteAddress: string;
  localId: IkeIdentity;
  remoteId: IkeIdentity;
  /** RFC 7296 §2.15 shared secret (raw bytes). Never logged, never returned by the API. */
  psk: Uint8Array;
  /** 'initiate': tether starts the IKE SA (and restarts it after a delete or DPD); 'respond': waits for the peer. */
  mode: 'initiate' | 'respond';
  ikeProposals: IkeProposal[];
  espProposals: EspProposal[];
  /** Our side's selectors (the inner addresses tether reaches through this onramp) and the site's; default 0.0.0.0/0 and ::/0 both. */
  localTs: TrafficSelector[];
  remoteTs: TrafficSelector[];
  /** Lifetimes in seconds: rekey at `rekey` (minus up to `jitter`), hard delete at `lifetime` (> rekey). */
  ikeLifetime: { rekeySeconds: number; lifetimeSeconds: number; jitterSeconds: number };
  childLifetime: { rekeySeconds: number; lifetimeSeconds: number; jitterSeconds: number };
  /** Dead-peer detection: an empty INFORMATIONAL after this long without an inbound IKE or ESP packet; 0 = off. */
  dpdSeconds: number;
  /**
   * How long an unanswered liveness check is retransmitted before the peer is declared dead (RFC 7296 §2.4 leaves
   * it to the implementation); the ordinary retransmission schedule applies within it.
   */
  dpdTimeoutSeconds: number;
  /** ESP anti-replay window in packets (≥ 1024 by default; 0 = off). */
  replayWindow: number;
  /** Force UDP encapsulation (port 4500) even without a NAT (strongSwan with kernel-libipsec does). */
  forceEncapsulation: boolean;
}

/** ESP's crypto for one direction of one child SA. GCM: key ‖ 4-byte salt (RFC 4106 §8.1); CBC: key, plus an HMAC key. */
export interface EspDirectionKeys {
  spi: number;
  encryption: EncryptionAlgorithm;
  /** null with GCM. */
  integrity: IntegrityAlgorithm | null;
  encryptionKey: Uint8Array;
  integrityKey: Uint8Array | null;
}

/** Where ESP goes on the underlay: raw IP protocol 50, or ESP-in-UDP (RFC 3948) between these ports. */
export interface EspPath {
  localAddress: number;
  remoteAddress: number;
  /** 0 = raw ESP (no UDP). */
  localPort: number;
  remotePort: number;
}

/** A child SA the engine hands the data path when it is established (IKE_AUTH or CREATE_CHILD_SA). */
export interface ChildSa {
  onramp: number;
  /** Inbound: the SPI we chose, the peer sends with it. */
  inbound: EspDirectionKeys;
  outbound: EspDirectionKeys;
  path: EspPath;
  replayWindow: number;
  /**
   * The traffic selectors the SA was negotiated with (RFC 7296 §2.9, after narrowing): `remote` the peer's (inner
   * sources it may send from), `local` ours (inner destinations). The data path admits only decrypted packets
   * inside them (RFC 4301 §5.2 step 4; esp/selectors.ts).
   */
  selectors: { local: readonly TrafficSelector[]; remote: readonly TrafficSelector[] };
  /** Monotonic ms; the engine rekeys and deletes by its own timers, the data path only counts. */
  createdAt: number;
}

/** Data-path facts the engine needs (DPD idleness, sequence exhaustion → rekey). */
export interface ChildSaUsage {
  inboundPackets: number;
  outboundPackets: number;
  /** Monotonic ms of the last inbound packet whose ICV verified; 0 = none. */
  lastInbound: number;
  /** The outbound sequence number is near 2^32 (no ESN): rekey now (RFC 4303 §3.3.3). */
  sequenceExhausted: boolean;
}

/** What the engine asks of the world (the daemon's ipsec transport implements it; tests record it). */
export interface IkeSink {
  /** One IKE message to the peer, from our `localPort` (500, or 4500 where the transport prefixes the 4-byte non-ESP marker: RFC 3948 §2.2). */
  sendIke(onramp: number, message: Uint8Array, localPort: number, remoteAddress: number, remotePort: number): void;
  /** A new child SA: inbound at once; outbound becomes the onramp's current one (make-before-break on rekey). */
  installChild(sa: ChildSa): void;
  /** A deleted or expired child SA, by its inbound SPI. */
  removeChild(onramp: number, inboundSpi: number): void;
  /** Usage of a child SA by inbound SPI, or null if the data path does not hold it. */
  childUsage(onramp: number, inboundSpi: number): ChildSaUsage | null;
  /** The IKE SA is up (a child SA installed) or down (DPD failed, deleted, auth failed): health takes it from there. */
  peerState(onramp: number, up: boolean, reason: string): void;
}

/** Status for `tether onramps`, the dashboard and /metrics (control plane: may allocate). */
export interface IkeSaStatus {
  onramp: number;
  state: 'idle' | 'connecting' | 'established' | 'rekeying' | 'deleting';
  role: 'initiator' | 'responder';
  spiI: string;
  spiR: string;
  remote: string;
  natDetected: boolean;
  algorithms: string;
  establishedAt: number;
  rekeyAt: number;
  children: Array<{
    spiIn: string;
    spiOut: string;
    algorithms: string;
    establishedAt: number;
    rekeyAt: number;
    localTs: string[];
    remoteTs: string[];
  }>;
}
