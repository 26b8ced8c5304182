/**
 * WireGuard constants. Specification values (whitepaper "WireGuard: Next Generation Kernel Network Tunnel",
 * J. A. Donenfeld, §5.4 message formats and §6 timers) are kept apart from our implementation choices below them,
 * as wireguard-go does (device/constants.go).
 */

// --- §5.4: message types and sizes --------------------------------------------------------------------------
export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_TRANSPORT = 4;

export const KEY_LEN = 32;
export const AEAD_TAG_LEN = 16;
export const MAC_LEN = 16;
export const TIMESTAMP_LEN = 12;
export const COOKIE_NONCE_LEN = 24;
export const COOKIE_LEN = 16;

/** Handshake initiation (§5.4.2): type|reserved(4) sender(4) ephemeral(32) static(32+16) timestamp(12+16) mac1 mac2. */
export const INIT_SENDER_OFF = 4;
export const INIT_EPHEMERAL_OFF = 8;
export const INIT_STATIC_OFF = 40;
export const INIT_TIMESTAMP_OFF = 88;
export const INIT_MAC1_OFF = 116;
export const INIT_MAC2_OFF = 132;
export const INIT_LEN = 148;

/** Handshake response (§5.4.3): type|reserved(4) sender(4) receiver(4) ephemeral(32) empty(0+16) mac1 mac2. */
export const RESP_SENDER_OFF = 4;
export const RESP_RECEIVER_OFF = 8;
export const RESP_EPHEMERAL_OFF = 12;
export const RESP_EMPTY_OFF = 44;
export const RESP_MAC1_OFF = 60;
export const RESP_MAC2_OFF = 76;
export const RESP_LEN = 92;

/** Cookie reply (§5.4.7): type|reserved(4) receiver(4) nonce(24) cookie(16+16). */
export const COOKIE_RECEIVER_OFF = 4;
export const COOKIE_NONCE_OFF = 8;
export const COOKIE_ENC_OFF = 32;
export const COOKIE_REPLY_LEN = 64;

/** Transport data (§5.4.6): type|reserved(4) receiver(4) counter(8, little-endian) encrypted packet (padded to 16). */
export const DATA_RECEIVER_OFF = 4;
export const DATA_COUNTER_OFF = 8;
export const DATA_HEADER_LEN = 16;
export const DATA_MIN_LEN = DATA_HEADER_LEN + AEAD_TAG_LEN; // an encrypted keepalive
export const PADDING_MULTIPLE = 16;

// --- §6.1: timers and limits ---------------------------------------------------------------------------------
/** 2^60: exactly representable as a double. */
export const REKEY_AFTER_MESSAGES = 2 ** 60;
/**
 * 2^64 - 2^13 - 1 is not representable as a double; our counters are JS numbers and we refuse received counters
 * at or above 2^53 (MAX_SAFE_COUNTER) anyway, which no conforming peer reaches in practice (285 years at 1 Mpps).
 */
export const REJECT_AFTER_MESSAGES = 2 ** 64 - 2 ** 13 - 1;
export const MAX_SAFE_COUNTER = Number.MAX_SAFE_INTEGER; // 2^53 - 1
export const REKEY_AFTER_TIME_MS = 120_000;
export const REJECT_AFTER_TIME_MS = 180_000;
export const REKEY_ATTEMPT_TIME_MS = 90_000;
export const REKEY_TIMEOUT_MS = 5_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;
/** Cookie secret rotation and cookie lifetime (§5.4.7: "changes every two minutes"). */
export const COOKIE_REFRESH_TIME_MS = 120_000;

// --- implementation constants (wireguard-go device/constants.go) -------------------------------------------
/** Retransmit jitter added to Rekey-Timeout, [0, 333) ms (wireguard-go RekeyTimeoutJitterMaxMs). */
export const REKEY_TIMEOUT_JITTER_MAX_MS = 334;
/** Rekey-Attempt-Time / Rekey-Timeout: how many initiations before giving up. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME_MS / REKEY_TIMEOUT_MS;
/** Minimum spacing between two initiations consumed from one peer (wireguard-go HandshakeInitationRate, 50/s). */
export const HANDSHAKE_INITIATION_RATE_MS = 20;
/** Packets queued per peer while its handshake runs (wireguard-go QueueStagedSize). */
export const MAX_STAGED_PACKETS = 128;
/** Per-source handshake rate limit when under load (wireguard-go ratelimiter: 20/s, burst 5). */
export const RATELIMIT_PACKETS_PER_SECOND = 20;
export const RATELIMIT_BURST = 5;
/** Bound on the rate limiter's table; the oldest source is forgotten first. */
export const RATELIMIT_MAX_ENTRIES = 4096;
/** Key material is wiped 3 × Reject-After-Time after the last session derivation (wireguard-go timers.go). */
export const ZERO_KEY_MATERIAL_MS = REJECT_AFTER_TIME_MS * 3;
/** Receiver indexes carry a slot number in their low 16 bits: at most 65,536 live sessions and handshakes. */
export const INDEX_SLOT_BITS = 16;

// --- Noise protocol names (§5.4) ------------------------------------------------------------------------------
export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';
