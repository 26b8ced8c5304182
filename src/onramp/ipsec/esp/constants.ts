/**
 * ESP's numbers (RFC 4303, RFC 4106, RFC 3602, RFC 4868, RFC 3948) and the per-algorithm layout the codec, the
 * SA table and the native crypto agree on. Pure: no I/O.
 *
 *   ESP packet (RFC 4303 §2): SPI (4) ‖ sequence number (4) ‖ IV ‖ payload ‖ padding ‖ pad length (1) ‖
 *                             next header (1) ‖ ICV
 *   encrypted: payload ‖ padding ‖ pad length ‖ next header; authenticated: everything before the ICV
 */
import { AES_BLOCK, CIPHERS, GCM_ICV_LENGTH, GCM_IV_LENGTH, INTEGRITY } from '../algorithms.js';
import type { EncryptionAlgorithm, IntegrityAlgorithm } from '../types.js';

/** SPI (4 bytes) and sequence number (4 bytes), RFC 4303 §2.1, §2.2. */
export const ESP_HEADER = 8;
export const ESP_SPI = 0;
export const ESP_SEQ = 4;
/** Pad length and next header, RFC 4303 §2.5, §2.6. */
export const ESP_TRAILER = 2;
/** Pad Length is one byte: at most 255 bytes of padding (RFC 4303 §2.4). */
export const ESP_MAX_PADDING = 255;
/** Next header values of tunnel mode (RFC 4303 §2.6; IANA protocol numbers). */
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;
/** A dummy packet for traffic flow confidentiality (RFC 4303 §2.6): the receiver discards it. */
export const NEXT_HEADER_NONE = 59;
/** SPI values 1..255 are reserved by IANA and 0 is local use only (RFC 4303 §2.1): never on the wire. */
export const ESP_MIN_SPI = 256;

/** No ESN (RFC 4303 §3.3.3): the 32-bit sequence number never cycles; packets past 2^32 − 1 are not sent. */
export const ESP_MAX_SEQUENCE = 0xffffffff;
/**
 * Sequence numbers left before 2^32 − 1 when the SA counts as exhausted and the IKE engine must rekey (RFC 4303
 * §3.3.3: "the sender ... establishes a new SA" before the counter cycles). 2^24 packets: tens of seconds at the
 * highest rate one core here reaches, ample for a CREATE_CHILD_SA exchange.
 */
export const ESP_SEQUENCE_REKEY_MARGIN = 2 ** 24;
export const ESP_SEQUENCE_EXHAUSTED = ESP_MAX_SEQUENCE - ESP_SEQUENCE_REKEY_MARGIN;

/** Anti-replay window default and smallest enabled size, in packets (issue 9: at least 1,024); 0 = off. */
export const ESP_DEFAULT_REPLAY_WINDOW = 1024;
/** Larger windows cost memory per SA (one bit a packet) and buy nothing on one path. */
export const ESP_MAX_REPLAY_WINDOW = 65536;

/** RFC 3948: UDP encapsulation port, and IKE's own port (RFC 7296 §2). */
export const IKE_PORT = 500;
export const NAT_T_PORT = 4500;
/** RFC 3948 §2.2: IKE on port 4500 starts with four zero bytes (the non-ESP marker) where ESP has its SPI. */
export const NON_ESP_MARKER = 4;
/** RFC 3948 §2.3: a NAT-keepalive is one byte, 0xFF. */
export const NAT_KEEPALIVE_BYTE = 0xff;
export const NAT_KEEPALIVE_LENGTH = 1;

/** Cipher families as the native addon numbers them (kCipher* in native/src/esp.cc). */
export const enum EspCipher {
  AesGcm16 = 1,
  AesCbc = 2,
}
/** Integrity algorithms as the native addon numbers them (kInteg* in native/src/esp.cc); None with GCM. */
export const enum EspInteg {
  None = 0,
  HmacSha256_128 = 1,
  HmacSha384_192 = 2,
  HmacSha512_256 = 3,
}

/** What an algorithm pair means on the wire. */
export interface EspAlgorithm {
  cipher: EspCipher;
  integ: EspInteg;
  /** AES key bytes (without GCM's salt). */
  keyLength: number;
  /** GCM's salt (RFC 4106 §4: the last 4 bytes of the keying material); 0 for CBC. */
  saltLength: number;
  /** Integrity key bytes (RFC 4868 §2.1.2: the hash's output size); 0 for GCM. */
  integKeyLength: number;
  /** Explicit IV in each packet: 8 for GCM (RFC 4106 §3.1), the AES block for CBC (RFC 3602 §2.1). */
  ivLength: number;
  /** The encrypted part's alignment: 4 for GCM (RFC 4106 §3.2, RFC 4303 §2.4), the 16-byte block for CBC. */
  align: number;
  /** Integrity check value: GCM's 16-byte tag (RFC 4106 §6), or the truncated HMAC (RFC 4868 §2.3). */
  icvLength: number;
}

/** GCM's encrypted part aligns to 4 bytes (RFC 4106 §3.2, RFC 4303 §2.4); CBC's to the AES block. */
const GCM_ALIGN = 4;

/** The native addon's number for each integrity algorithm. */
const NATIVE_INTEG: Record<IntegrityAlgorithm, EspInteg> = {
  sha256: EspInteg.HmacSha256_128,
  sha384: EspInteg.HmacSha384_192,
  sha512: EspInteg.HmacSha512_256,
};

/** The layout of an encryption (+ integrity) choice; throws naming the problem for a pair ESP cannot use. */
export function espAlgorithm(encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm | null): EspAlgorithm {
  switch (encryption) {
    case 'aes128gcm16':
    case 'aes256gcm16':
      if (integrity !== null) throw new Error(`ESP ${encryption} is AEAD: no integrity algorithm (got ${integrity})`);
      return {
        cipher: EspCipher.AesGcm16,
        integ: EspInteg.None,
        keyLength: CIPHERS[encryption].keyLength,
        saltLength: CIPHERS[encryption].saltLength,
        integKeyLength: 0,
        ivLength: GCM_IV_LENGTH,
        align: GCM_ALIGN,
        icvLength: GCM_ICV_LENGTH,
      };
    case 'aes128':
    case 'aes256': {
      if (integrity === null) throw new Error(`ESP ${encryption} needs an integrity algorithm (sha256, sha384 or sha512)`);
      const i = INTEGRITY[integrity];
      return {
        cipher: EspCipher.AesCbc,
        integ: NATIVE_INTEG[integrity],
        keyLength: CIPHERS[encryption].keyLength,
        saltLength: CIPHERS[encryption].saltLength,
        integKeyLength: i.keyLength,
        ivLength: AES_BLOCK,
        align: AES_BLOCK,
        icvLength: i.icvLength,
      };
    }
  }
}
