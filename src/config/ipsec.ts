/**
 * `type: ipsec` onramps: the text the configuration holds (strongSwan's words, so a site's swanctl.conf and
 * tether's YAML read alike) and the IKE engine's records (src/onramp/ipsec/types.ts) it stands for.
 *
 *   proposal "aes256gcm16-prfsha256-ecp256" ─ parseProposal ─ IkeProposal / EspProposal (or a message naming
 *                                                              the bad keyword and the supported ones)
 *   identity "edge.example.com", "10.0.0.1", "user@example.com", "keyid:0a1b" ─ parseIdentity ─ IkeIdentity
 *   psk "text", "0xHEX", "0sBASE64" (swanctl.conf's secret syntax) ─ decodePsk ─ bytes (at least MIN_PSK_BYTES)
 *
 * Every function here is pure and reports problems as text; the caller (formats.ts, validate.ts, compile.ts)
 * says where. A secret is never part of a message.
 */
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6, parsePrefix } from '../wire/addr.js';
import { AF_INET4 } from '../wire/constants.js';
import {
  DH_GROUPS,
  ENCRYPTION_ALGORITHMS,
  INTEGRITY_ALGORITHMS,
  PRF_ALGORITHMS,
  type DhGroup,
  type EncryptionAlgorithm,
  type EspProposal,
  type IkeIdentity,
  type IkeProposal,
  type IntegrityAlgorithm,
  type PrfAlgorithm,
  type TrafficSelector,
} from '../onramp/ipsec/types.js';

// ─── Defaults ────────────────────────────────────────────────────────────────────────────────────────

/**
 * The union of what strongSwan 5.9.8 proposes by default (AES-CBC with HMAC-SHA2 and AES-GCM; ECP-256, ECP-384 and
 * Curve25519 before MODP-2048) and what Cloudflare documents for its IPsec onramps (AES-GCM-16 or AES-CBC-256 with
 * SHA-256; DH 20, 14), restricted to what tether implements (types.ts). AEAD first: one pass over each packet.
 * The first DH group is the one tether's KE payload uses when it initiates: ECP-256, strongSwan's first.
 */
export const DEFAULT_IKE_PROPOSALS: readonly string[] = [
  'aes256gcm16-aes128gcm16-prfsha256-prfsha384-prfsha512-ecp256-ecp384-curve25519-modp2048',
  'aes256-aes128-sha256-sha384-sha512-prfsha256-prfsha384-prfsha512-ecp256-ecp384-curve25519-modp2048',
];

/**
 * Without PFS first: the child SA of IKE_AUTH never carries a KE (RFC 7296 §1.2), and strongSwan's default ESP
 * proposal has no DH group. With PFS after it, so a site that rekeys its child SAs with PFS (esp_proposals with a
 * DH group in swanctl.conf) finds a match too.
 */
export const DEFAULT_ESP_PROPOSALS: readonly string[] = [
  'aes256gcm16-aes128gcm16',
  'aes256-aes128-sha256-sha384-sha512',
  'aes256gcm16-aes128gcm16-ecp256-ecp384-curve25519-modp2048',
  'aes256-aes128-sha256-sha384-sha512-ecp256-ecp384-curve25519-modp2048',
];

/** Route-based tunnels, as Cloudflare's onramps use: every inner address of both families. */
export const DEFAULT_TRAFFIC_SELECTORS: readonly string[] = ['0.0.0.0/0', '::/0'];

/**
 * strongSwan's defaults (swanctl.conf: rekey_time 4h for the IKE SA, 1h for a child SA; over_time 10 % of
 * rekey_time; rand_time = over_time): the SA is hard-deleted at rekey + 10 %, and the rekey comes up to that much
 * early, at random, so two peers rarely rekey at once (a collision, RFC 7296 §2.8.1).
 */
export const DEFAULT_IKE_REKEY_SECONDS = 4 * 3600;
export const DEFAULT_CHILD_REKEY_SECONDS = 3600;
/** over_time and rand_time default to this share of rekey_time (strongSwan), in percent (integer arithmetic). */
export const LIFETIME_MARGIN_PERCENT = 10;
const PERCENT = 100;

/** strongSwan's over_time for a rekey time: the default gap between rekey and hard delete, whole seconds. */
export function defaultOverSeconds(rekeySeconds: number): number {
  return Math.ceil((rekeySeconds * LIFETIME_MARGIN_PERCENT) / PERCENT);
}

/**
 * Dead-peer detection after 10 s without an inbound IKE or ESP packet. DPD is sent only on a silent tunnel (any
 * packet from the peer counts as alive), so it costs one small exchange per 10 idle seconds and nothing under
 * traffic. strongSwan's own default is off, which leaves a responder holding a rebooted site's SAs until they
 * expire; 10 s is the health engine's low probe interval, so a silent peer is noticed on the time scale of the
 * slowest health check (fast failover stays the health checks' job: docs/HEALTH.md).
 */
export const DEFAULT_DPD_SECONDS = 10;

/**
 * A liveness check unanswered for 30 s means a dead peer: the check is retransmitted on the usual schedule (4 s,
 * then ×1.8) within it, so about four tries. strongSwan gives up after its full retransmission schedule (~165 s),
 * which for an edge holds a dead site's SAs, and its onramp up, for minutes; Cisco's DPD gives up after about
 * 10–15 s. 30 s tolerates a few seconds of loss on a lossy link and still ends a dead site within 10 + 30 s.
 */
export const DEFAULT_DPD_TIMEOUT_SECONDS = 30;

/** The floor (RFC 4303 §3.4.3 asks for 32 and recommends 64; a fast link reorders more than that). */
export const DEFAULT_REPLAY_WINDOW = 1024;
/** RFC 4303 §3.4.3: a receiver that checks replays supports a window of at least 32. */
export const MIN_REPLAY_WINDOW = 32;
/** The bitmap costs window / 8 bytes per child SA (RFC 6479); 64 Ki packets is 8 KiB. */
export const MAX_REPLAY_WINDOW = 65536;

/**
 * The default tunnel MTU: the largest inner packet whose ESP-in-UDP datagram fits a 1500-byte IPv4 underlay with
 * the worst case tether negotiates (AES-CBC with HMAC-SHA2-512-256). Every term:
 */
const UNDERLAY_MTU = 1500;
/** Outer IPv4 header without options (RFC 791). */
const OUTER_IPV4_HEADER = 20;
/** UDP header of ESP-in-UDP (RFC 3948 §2.1): behind a NAT, and always with strongSwan's kernel-libipsec. */
const UDP_HEADER = 8;
/** ESP header: SPI (4) and sequence number (4) (RFC 4303 §2). */
const ESP_HEADER = 8;
/** AES-CBC's explicit IV, one block (RFC 3602 §3). AES-GCM's is 8. */
const CBC_IV = 16;
/** HMAC-SHA2-512-256's ICV (RFC 4868 §2.3); SHA2-256-128's and GCM's are 16. */
const WORST_ICV = 32;
/** Pad Length and Next Header, the trailer every ESP payload ends with (RFC 4303 §2.4, §2.6). */
const ESP_TRAILER = 2;
/** AES-CBC pads the payload and trailer to a multiple of its block (RFC 4303 §2.4, RFC 3602 §3). */
const CBC_BLOCK = 16;
/** 1500 − 20 − 8 − 8 − 16 − 32 = 1416 for the padded payload; 1408 is the largest multiple of 16; − 2 = 1406. */
export const DEFAULT_IPSEC_MTU =
  Math.floor((UNDERLAY_MTU - OUTER_IPV4_HEADER - UDP_HEADER - ESP_HEADER - CBC_IV - WORST_ICV) / CBC_BLOCK) * CBC_BLOCK - ESP_TRAILER;

/** Pre-shared keys shorter than this are refused: 128 bits if random (RFC 7296 §2.15 asks for as much entropy as the keys it protects). */
export const MIN_PSK_BYTES = 16;
/** Bounds what a key file or body can make us hold. */
export const MAX_PSK_BYTES = 1024;

// ─── Proposals ───────────────────────────────────────────────────────────────────────────────────────

/** strongSwan's other spellings of what tether supports (its proposal_keywords.txt). */
const ALIASES: Readonly<Record<string, string>> = {
  aes128gcm128: 'aes128gcm16',
  aes256gcm128: 'aes256gcm16',
  sha2_256: 'sha256',
  sha2_384: 'sha384',
  sha2_512: 'sha512',
  prfsha2_256: 'prfsha256',
  prfsha2_384: 'prfsha384',
  prfsha2_512: 'prfsha512',
  x25519: 'curve25519',
};

const GCM = new Set<EncryptionAlgorithm>(['aes128gcm16', 'aes256gcm16']);
const has = <T extends string>(list: readonly T[], v: string): v is T => (list as readonly string[]).includes(v);

/** The keywords a proposal may hold, for messages. */
export function supportedKeywords(kind: 'ike' | 'esp'): string {
  const parts = [`encryption ${ENCRYPTION_ALGORITHMS.join(', ')}`, `integrity ${INTEGRITY_ALGORITHMS.join(', ')}`];
  if (kind === 'ike') parts.push(`PRF ${PRF_ALGORITHMS.join(', ')}`);
  parts.push(`${kind === 'ike' ? 'DH' : 'PFS (DH)'} ${DH_GROUPS.join(', ')}`);
  if (kind === 'esp') parts.push('noesn');
  return parts.join('; ');
}

export type Parsed<T> = { ok: true; value: T; text: string } | { ok: false; error: string };

/**
 * A strongSwan proposal string: keywords joined by '-', any order, every combination acceptable (RFC 7296 §3.3).
 * IKE without a PRF takes the PRFs of its integrity algorithms (as strongSwan does). `text` is the normalised
 * proposal (aliases replaced, lower case, each keyword once).
 */
export function parseProposal(kind: 'ike', text: string): Parsed<IkeProposal>;
export function parseProposal(kind: 'esp', text: string): Parsed<EspProposal>;
export function parseProposal(kind: 'ike' | 'esp', text: string): Parsed<IkeProposal | EspProposal> {
  const fail = (error: string): Parsed<never> => ({ ok: false, error });
  const encryption: EncryptionAlgorithm[] = [];
  const integrity: IntegrityAlgorithm[] = [];
  const prf: PrfAlgorithm[] = [];
  const dh: DhGroup[] = [];
  const words: string[] = [];
  const add = <T extends string>(list: T[], v: T): void => {
    if (!list.includes(v)) { list.push(v); words.push(v); }
  };
  const trimmed = text.trim().toLowerCase();
  if (trimmed === '') return fail(`is empty; write one like ${kind === 'ike' ? DEFAULT_IKE_PROPOSALS[0] : 'aes256gcm16'}`);
  for (const raw of trimmed.split('-')) {
    const w = ALIASES[raw] ?? raw;
    if (has(ENCRYPTION_ALGORITHMS, w)) add(encryption, w);
    else if (has(INTEGRITY_ALGORITHMS, w)) add(integrity, w);
    else if (kind === 'ike' && has(PRF_ALGORITHMS, w)) add(prf, w);
    else if (has(DH_GROUPS, w)) add(dh, w);
    else if (kind === 'esp' && w === 'noesn') continue;
    else if (kind === 'esp' && w === 'esn') return fail('esn: extended sequence numbers are not supported (tether sends 32-bit sequence numbers and rekeys before they run out, RFC 4303 §3.3.3); leave esn out');
    else if (kind === 'esp' && has(PRF_ALGORITHMS, w)) return fail(`${w}: a PRF belongs in ike_proposals; ESP proposals take encryption, integrity and PFS groups`);
    else return fail(`unknown keyword "${raw}" in "${text.trim()}"; supported: ${supportedKeywords(kind)}`);
  }
  if (encryption.length === 0) return fail(`has no encryption algorithm (${ENCRYPTION_ALGORITHMS.join(', ')})`);
  const aead = encryption.filter((e) => GCM.has(e));
  const plain = encryption.filter((e) => !GCM.has(e));
  if (aead.length > 0 && plain.length > 0) return fail(`mixes AEAD (${aead.join(', ')}) and non-AEAD (${plain.join(', ')}) encryption; write them as two proposals`);
  if (aead.length > 0 && integrity.length > 0) return fail(`${aead[0]} authenticates on its own (a 16-byte ICV, RFC 4106 / RFC 5282): remove ${integrity.join(', ')} or write a separate proposal for it`);
  if (plain.length > 0 && integrity.length === 0) return fail(`${plain[0]} needs an integrity algorithm (${INTEGRITY_ALGORITHMS.join(', ')})`);
  if (kind === 'esp') return { ok: true, value: { encryption, integrity, dh }, text: words.join('-') };
  if (prf.length === 0) {
    if (integrity.length === 0) return fail(`needs a PRF (${PRF_ALGORITHMS.join(', ')}): ${aead[0]} has no integrity algorithm to take it from`);
    for (const i of integrity) prf.push(`prf${i}` as PrfAlgorithm);
  }
  if (dh.length === 0) return fail(`needs a Diffie-Hellman group (${DH_GROUPS.join(', ')})`);
  return { ok: true, value: { encryption, integrity, prf, dh }, text: words.join('-') };
}

// ─── Identities ──────────────────────────────────────────────────────────────────────────────────────

export const IDENTITY_HINT = 'an IKE identity: an FQDN (edge.example.com), an IPv4 or IPv6 address, user@domain, or keyid:HEX';

const LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const HEX_RE = /^(?:[0-9a-fA-F]{2})+$/;
/** RFC 1035 §2.3.4: 255 octets on the wire, 253 characters as text. */
const MAX_FQDN = 253;
/** The ID payload's length field is 16 bits (RFC 7296 §3.5); nobody needs more than this. */
const MAX_KEY_ID_BYTES = 256;
const KEY_ID_PREFIX = 'keyid:';

function isFqdn(text: string): boolean {
  return text.length > 0 && text.length <= MAX_FQDN && text.split('.').every((l) => LABEL_RE.test(l));
}

/**
 * An identity in strongSwan's spelling: an address, `user@domain` (ID_RFC822_ADDR), `@name` or `name` (ID_FQDN),
 * `keyid:HEX` or `keyid:#HEX` (ID_KEY_ID). `text` is the canonical form (addresses and names compared as such).
 */
export function parseIdentity(text: string): Parsed<IkeIdentity> {
  const t = text.trim();
  if (t.toLowerCase().startsWith(KEY_ID_PREFIX)) {
    const hex = t.slice(KEY_ID_PREFIX.length).replace(/^#/, '');
    if (!HEX_RE.test(hex) || hex.length / 2 > MAX_KEY_ID_BYTES) return { ok: false, error: `must be keyid: followed by 1-${MAX_KEY_ID_BYTES} bytes in hex (keyid:0a1b2c), got ${JSON.stringify(t)}` };
    return { ok: true, value: { type: 'key-id', value: Uint8Array.from(Buffer.from(hex, 'hex')) }, text: `${KEY_ID_PREFIX}${hex.toLowerCase()}` };
  }
  if (parseIpv4(t) >= 0) return { ok: true, value: { type: 'ipv4', value: t }, text: t };
  if (t.includes(':')) {
    const v6 = parseIpv6(t);
    if (v6 === null) return { ok: false, error: `must be ${IDENTITY_HINT}, got ${JSON.stringify(t)} (not an IPv6 address)` };
    const value = formatIpv6(v6);
    return { ok: true, value: { type: 'ipv6', value }, text: value };
  }
  const at = t.indexOf('@');
  if (at > 0) {
    const local = t.slice(0, at);
    const domain = t.slice(at + 1);
    if (!isFqdn(domain) || /\s/.test(local)) return { ok: false, error: `must be ${IDENTITY_HINT}, got ${JSON.stringify(t)} (user@domain needs a domain name after @)` };
    return { ok: true, value: { type: 'rfc822', value: `${local}@${domain.toLowerCase()}` }, text: `${local}@${domain.toLowerCase()}` };
  }
  const name = at === 0 ? t.slice(1) : t;
  if (!isFqdn(name)) return { ok: false, error: `must be ${IDENTITY_HINT}, got ${JSON.stringify(t)}` };
  return { ok: true, value: { type: 'fqdn', value: name.toLowerCase() }, text: name.toLowerCase() };
}

// ─── Pre-shared keys ─────────────────────────────────────────────────────────────────────────────────

/**
 * swanctl.conf's secret syntax: `0x` + hex, `0s` + base64, else the text's UTF-8 bytes. Errors never quote the key.
 */
export function decodePsk(text: string): { ok: true; value: Uint8Array } | { ok: false; error: string } {
  let bytes: Uint8Array;
  if (/^0x/i.test(text)) {
    const hex = text.slice(2);
    if (!HEX_RE.test(hex)) return { ok: false, error: `starts with 0x but is not hex (an even number of 0-9, a-f after it; ${text.length} characters given)` };
    bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
  } else if (/^0s/i.test(text)) {
    const b64 = text.slice(2);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return { ok: false, error: `starts with 0s but is not base64 (${text.length} characters given)` };
    bytes = Uint8Array.from(Buffer.from(b64, 'base64'));
  } else {
    bytes = new TextEncoder().encode(text);
  }
  if (bytes.length < MIN_PSK_BYTES) return { ok: false, error: `is too short: ${bytes.length} bytes, at least ${MIN_PSK_BYTES} (a random one: "0s" followed by the output of openssl rand -base64 32)` };
  if (bytes.length > MAX_PSK_BYTES) return { ok: false, error: `is too long: ${bytes.length} bytes, at most ${MAX_PSK_BYTES}` };
  return { ok: true, value: bytes };
}

// ─── Traffic selectors ───────────────────────────────────────────────────────────────────────────────

const MAX_PORT = 65535;

/** A prefix as an address range selector (any protocol, any port; RFC 7296 §3.13.1). */
export function prefixSelector(prefix: string): TrafficSelector {
  const p = parsePrefix(prefix);
  if (p === null) throw new RangeError(`not a prefix: ${prefix}`);
  const end = Uint32Array.from(p.words);
  const count = p.family === AF_INET4 ? 1 : 4;
  for (let i = 0; i < count; i++) {
    const bits = Math.max(0, Math.min(32, p.length - 32 * i));
    end[i] = bits === 32 ? end[i] : (end[i] | (bits === 0 ? 0xffffffff : (0xffffffff >>> bits))) >>> 0;
  }
  const text = (w: Uint32Array): string => (p.family === AF_INET4 ? formatIpv4(w[0]) : formatIpv6(w));
  return { family: p.family, start: text(p.words), end: text(end), protocol: 0, startPort: 0, endPort: MAX_PORT };
}

// ─── Relations ───────────────────────────────────────────────────────────────────────────────────────

/**
 * What tells an IPsec onramp apart when a site connects (validate.ts and incremental.ts compare it): the underlay
 * addresses, or with remote_address any the local address and the identity the site sends in IKE_AUTH (an onramp
 * with the site's address is more specific than one for any, so those two do not clash).
 */
export function ipsecIdentity(s: { local_address: string; remote_address: string; remote_id?: string }): string {
  return s.remote_address === 'any' ? `${s.local_address} → any, id ${s.remote_id ?? '(none)'}` : `${s.local_address} → ${s.remote_address}`;
}
