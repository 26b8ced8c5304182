/**
 * IKEv2 numbers (RFC 7296 §3 and the IANA "IKEv2 Parameters" registry). Names follow the RFC's.
 * Only what tether speaks or must recognise is here; anything else parses as an unknown payload / transform / notify.
 */

/** §3.1: the fixed IKE header. */
export const IKE_HEADER_LENGTH = 28;
/** §3.2: every payload starts with next payload (1), critical bit + reserved (1), payload length (2). */
export const PAYLOAD_HEADER_LENGTH = 4;
/** §3.2: the critical bit in the second byte of the generic payload header. */
export const CRITICAL_BIT = 0x80;
/** §3.1: MjVer 2, MnVer 0. */
export const IKE_VERSION = 0x20;
export const IKE_MAJOR_VERSION = 2;
export const SPI_LENGTH = 8;
/** §3.3.1: an ESP/AH SPI is 4 bytes. */
export const CHILD_SPI_LENGTH = 4;
/** RFC 3948 §2.2: IKE on port 4500 is prefixed by four zero bytes (the non-ESP marker); the sink adds/strips it. */
export const NON_ESP_MARKER_LENGTH = 4;
export const IKE_PORT = 500;
export const NAT_T_PORT = 4500;
/** §2.10: nonces are at least 16 and at most 256 bytes, and at least half the PRF key size. We send 32. */
export const NONCE_MIN_LENGTH = 16;
export const NONCE_MAX_LENGTH = 256;
export const NONCE_LENGTH = 32;

/** §3.1 exchange types. */
export const enum Exchange {
  IkeSaInit = 34,
  IkeAuth = 35,
  CreateChildSa = 36,
  Informational = 37,
}

/** §3.1 flags. */
export const FLAG_INITIATOR = 0x08;
export const FLAG_VERSION = 0x10;
export const FLAG_RESPONSE = 0x20;

/** §3.2 payload types. */
export const enum PayloadType {
  None = 0,
  SA = 33,
  KE = 34,
  IDi = 35,
  IDr = 36,
  CERT = 37,
  CERTREQ = 38,
  AUTH = 39,
  Nonce = 40,
  Notify = 41,
  Delete = 42,
  Vendor = 43,
  TSi = 44,
  TSr = 45,
  SK = 46,
  CP = 47,
  EAP = 48,
  /** RFC 7383: encrypted fragment (tether does not announce fragmentation, so it never sees one). */
  SKF = 53,
}

/** §3.3.1 protocol IDs. */
export const enum ProtocolId {
  None = 0,
  IKE = 1,
  AH = 2,
  ESP = 3,
}

/** §3.3.2 transform types. */
export const enum TransformType {
  ENCR = 1,
  PRF = 2,
  INTEG = 3,
  DH = 4,
  ESN = 5,
}

/** Transform IDs (IANA): ENCR. */
export const ENCR_AES_CBC = 12;
export const ENCR_AES_GCM_16 = 20;
/** PRF (RFC 4868). */
export const PRF_HMAC_SHA2_256 = 5;
export const PRF_HMAC_SHA2_384 = 6;
export const PRF_HMAC_SHA2_512 = 7;
/** INTEG (RFC 4868): truncated to half the hash. */
export const AUTH_HMAC_SHA2_256_128 = 12;
export const AUTH_HMAC_SHA2_384_192 = 13;
export const AUTH_HMAC_SHA2_512_256 = 14;
/** DH groups (RFC 3526, RFC 5903, RFC 8031). */
export const DH_MODP2048 = 14;
export const DH_ECP256 = 19;
export const DH_ECP384 = 20;
export const DH_CURVE25519 = 31;
/** ESN (RFC 4303): off. */
export const ESN_NONE = 0;
export const ESN_YES = 1;

/** §3.3.5: Key Length attribute, TV format (AF bit set). */
export const ATTRIBUTE_FORMAT_TV = 0x8000;
export const ATTRIBUTE_KEY_LENGTH = 14;

/** §3.3.1 / §3.3.2: "last" markers in proposal and transform substructures. */
export const LAST_PROPOSAL = 0;
export const MORE_PROPOSALS = 2;
export const LAST_TRANSFORM = 0;
export const MORE_TRANSFORMS = 3;
export const PROPOSAL_HEADER_LENGTH = 8;
export const TRANSFORM_HEADER_LENGTH = 8;

/** §3.5 ID types. */
export const enum IdType {
  IPv4 = 1,
  FQDN = 2,
  RFC822 = 3,
  IPv6 = 5,
  KeyId = 11,
}

/** §3.8 authentication methods. */
export const AUTH_SHARED_KEY_MIC = 2;

/** §3.10.1 notify types: errors (< 16384) and status. */
export const enum NotifyType {
  UnsupportedCriticalPayload = 1,
  InvalidIkeSpi = 4,
  InvalidMajorVersion = 5,
  InvalidSyntax = 7,
  InvalidMessageId = 9,
  InvalidSpi = 11,
  NoProposalChosen = 14,
  InvalidKePayload = 17,
  AuthenticationFailed = 24,
  SinglePairRequired = 34,
  NoAdditionalSas = 35,
  InternalAddressFailure = 36,
  FailedCpRequired = 37,
  TsUnacceptable = 38,
  InvalidSelectors = 39,
  TemporaryFailure = 43,
  ChildSaNotFound = 44,
  InitialContact = 16384,
  SetWindowSize = 16385,
  AdditionalTsPossible = 16386,
  IpcompSupported = 16387,
  NatDetectionSourceIp = 16388,
  NatDetectionDestinationIp = 16389,
  Cookie = 16390,
  UseTransportMode = 16391,
  RekeySa = 16393,
  EspTfcPaddingNotSupported = 16394,
  NonFirstFragmentsAlso = 16395,
  MobikeSupported = 16396,
  Ikev2FragmentationSupported = 16430,
  SignatureHashAlgorithms = 16431,
}
/** §3.10.1: types below this are errors. */
export const NOTIFY_ERROR_LIMIT = 16384;

/** §3.13.1 traffic selector types. */
export const TS_IPV4_ADDR_RANGE = 7;
export const TS_IPV6_ADDR_RANGE = 8;
export const TS_HEADER_LENGTH = 8;
export const TS_PAYLOAD_HEADER_LENGTH = 4;
