/**
 * TLS ClientHello → server name (SNI), fed the client's TCP payload in order, one segment at a time.
 *
 *   TLS records (RFC 8446 §5.1) ─ handshake bytes, reassembled across records ─ ClientHello (§4.1.2)
 *     ─ extensions (§4.2) ─ server_name (RFC 6066 §3) ─ host_name, in names.ts's normal form
 *
 * A handshake message may span records and a record may span segments (§5.1), so the parser carries the
 * record header and the handshake bytes between calls. Bounds: the ClientHello (its 4-byte handshake header
 * included) must fit `maxBytes` (16 KiB by default) or the answer is `too-large`; every record carries at
 * least one byte (zero-length handshake fragments are forbidden, §5.1) and records are at most 2^14 bytes,
 * so the bytes read before a decision are bounded too. One buffer of `maxBytes`, allocated once; `reset()`
 * makes the parser ready for the next flow.
 *
 * Decisions: the first record is not a handshake record, its version is not 3.x, or the first handshake
 * message is not a ClientHello → `not-protocol` (SSLv2-style hellos included). A record of another type
 * between the ClientHello's records → `malformed` (§5.1 forbids interleaving). Extensions are walked in
 * full: lengths must add up, two server_name extensions (§4.2) or two host_name entries (RFC 6066 §3) are
 * malformed. Unknown extensions — GREASE values (RFC 8701), Encrypted Client Hello (0xfe0d) — are skipped:
 * with ECH the name seen is the outer ClientHello's public name, the only one on the wire.
 */
import { read16 } from '../wire/bytes.js';
import { hostnameFromBytes, nameProblemText } from './names.js';
import { DEFAULT_CLASSIFY_BUFFER, NEED_MORE, NOT_PROTOCOL, NO_NAME, TOO_LARGE, malformed, type ClassifyResult } from './result.js';

/** RFC 8446 §5.1: ContentType handshake(22). */
const CONTENT_HANDSHAKE = 22;
const RECORD_HEADER = 5;
/** RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14. */
const MAX_RECORD = 1 << 14;
/** Record versions seen on ClientHellos: 0x0300 (SSL 3.0) … 0x0304. */
const VERSION_MAJOR = 3;
const MAX_VERSION_MINOR = 4;
/** RFC 8446 §4: HandshakeType client_hello(1); msg_type (1) + uint24 length. */
const HANDSHAKE_CLIENT_HELLO = 1;
const HANDSHAKE_HEADER = 4;
/** RFC 8446 §4.1.2: legacy_version (2) + random (32). */
const VERSION_AND_RANDOM = 34;
const MAX_SESSION_ID = 32;
const EXTENSION_HEADER = 4;
/** RFC 6066 §3: ExtensionType server_name(0); NameType host_name(0). */
const EXT_SERVER_NAME = 0;
const NAME_TYPE_HOST = 0;
const SERVER_NAME_ENTRY_HEADER = 3;
/** Above this many bytes a typed-array copy beats a byte loop (the view it needs is one object per record). */
const BULK_COPY = 32;

export class SniParser {
  private readonly hs: Uint8Array;
  private readonly maxBytes: number;
  private readonly recordHeader = new Uint8Array(RECORD_HEADER);
  private recordHave = 0;
  private recordLeft = 0;
  private records = 0;
  private hsLen = 0;
  /** Bytes of handshake message to collect: the header, then header + body. */
  private hsTarget = HANDSHAKE_HEADER;
  private hsKnown = false;
  private result: ClassifyResult = NEED_MORE;

  constructor(maxBytes = DEFAULT_CLASSIFY_BUFFER) {
    this.maxBytes = Math.max(maxBytes, HANDSHAKE_HEADER);
    this.hs = new Uint8Array(this.maxBytes);
  }

  reset(): void {
    this.recordHave = 0;
    this.recordLeft = 0;
    this.records = 0;
    this.hsLen = 0;
    this.hsTarget = HANDSHAKE_HEADER;
    this.hsKnown = false;
    this.result = NEED_MORE;
  }

  /** The decision so far (need-more until one is reached). */
  get current(): ClassifyResult {
    return this.result;
  }

  /** Feeds the next in-order payload bytes [offset, offset + length) of `seg`. */
  feed(seg: Uint8Array, offset = 0, length = seg.length - offset): ClassifyResult {
    if (this.result !== NEED_MORE) return this.result;
    const end = offset + length;
    let i = offset;
    while (i < end) {
      if (this.recordLeft === 0) {
        const r = this.recordByte(seg[i++]);
        if (r !== NEED_MORE) return (this.result = r);
        continue;
      }
      const n = Math.min(this.recordLeft, end - i, this.hsTarget - this.hsLen);
      if (n > BULK_COPY) this.hs.set(seg.subarray(i, i + n), this.hsLen);
      else for (let k = 0; k < n; k++) this.hs[this.hsLen + k] = seg[i + k];
      this.hsLen += n;
      this.recordLeft -= n;
      i += n;
      if (this.hsLen < this.hsTarget) continue;
      if (!this.hsKnown) {
        if (this.hs[0] !== HANDSHAKE_CLIENT_HELLO) return (this.result = NOT_PROTOCOL);
        const body = (this.hs[1] << 16) | (this.hs[2] << 8) | this.hs[3];
        if (HANDSHAKE_HEADER + body > this.maxBytes) return (this.result = TOO_LARGE);
        this.hsKnown = true;
        this.hsTarget = HANDSHAKE_HEADER + body;
        if (this.hsLen < this.hsTarget) continue;
      }
      return (this.result = parseClientHello(this.hs, HANDSHAKE_HEADER, this.hsTarget));
    }
    return NEED_MORE;
  }

  /** One byte of a record header; checks each field as soon as it is in. */
  private recordByte(b: number): ClassifyResult {
    const h = this.recordHeader;
    h[this.recordHave++] = b;
    const first = this.records === 0;
    switch (this.recordHave) {
      case 1:
        if (b === CONTENT_HANDSHAKE) return NEED_MORE;
        return first ? NOT_PROTOCOL : malformed('a record of another type inside the ClientHello (RFC 8446 §5.1)');
      case 2:
        if (b === VERSION_MAJOR) return NEED_MORE;
        return first ? NOT_PROTOCOL : malformed('record version is not 3.x');
      case 3:
        if (b <= MAX_VERSION_MINOR) return NEED_MORE;
        return first ? NOT_PROTOCOL : malformed('record version is not 3.0–3.4');
      case 4:
        return NEED_MORE;
      default: {
        const len = read16(h, 3);
        this.recordHave = 0;
        this.records++;
        if (len === 0) return malformed('zero-length handshake record (RFC 8446 §5.1)');
        if (len > MAX_RECORD) return malformed('record longer than 2^14 octets (RFC 8446 §5.1)');
        this.recordLeft = len;
        return NEED_MORE;
      }
    }
  }
}

/** The ClientHello body in buf[p, end): its server name, or what is wrong with it. */
export function parseClientHello(buf: Uint8Array, p: number, end: number): ClassifyResult {
  if (end - p < VERSION_AND_RANDOM + 1) return malformed('ClientHello shorter than version and random');
  if (buf[p] !== VERSION_MAJOR) return malformed('ClientHello legacy_version is not 3.x');
  p += VERSION_AND_RANDOM;
  const sessionId = buf[p++];
  if (sessionId > MAX_SESSION_ID) return malformed('legacy_session_id longer than 32 octets');
  p += sessionId;
  if (p + 2 > end) return malformed('ClientHello ends before cipher_suites');
  const suites = read16(buf, p);
  p += 2;
  if (suites < 2 || suites % 2 !== 0) return malformed('cipher_suites length is not a positive even number');
  p += suites;
  if (p + 1 > end) return malformed('ClientHello ends before legacy_compression_methods');
  const compressions = buf[p++];
  if (compressions < 1) return malformed('no legacy_compression_methods');
  p += compressions;
  if (p > end) return malformed('ClientHello ends inside legacy_compression_methods');
  if (p === end) return NO_NAME; // TLS ≤ 1.2 may omit extensions (RFC 5246 §7.4.1.2)
  if (p + 2 > end) return malformed('ClientHello ends inside the extensions length');
  const extEnd = p + 2 + read16(buf, p);
  p += 2;
  if (extEnd !== end) return malformed('extensions length disagrees with the ClientHello length');
  let hostStart = -1;
  let hostEnd = -1;
  let sawServerName = false;
  while (p < extEnd) {
    if (p + EXTENSION_HEADER > extEnd) return malformed('extension header cut short');
    const type = read16(buf, p);
    const len = read16(buf, p + 2);
    p += EXTENSION_HEADER;
    if (p + len > extEnd) return malformed('extension longer than the extensions block');
    if (type === EXT_SERVER_NAME) {
      if (sawServerName) return malformed('two server_name extensions (RFC 8446 §4.2)');
      sawServerName = true;
      if (len < 2 || read16(buf, p) !== len - 2) return malformed('server_name list length disagrees with its extension');
      const listEnd = p + len;
      let q = p + 2;
      if (q === listEnd) return malformed('empty server_name list (RFC 6066 §3)');
      while (q < listEnd) {
        if (q + SERVER_NAME_ENTRY_HEADER > listEnd) return malformed('server_name entry cut short');
        const nameType = buf[q];
        const nameLen = read16(buf, q + 1);
        q += SERVER_NAME_ENTRY_HEADER;
        if (q + nameLen > listEnd) return malformed('server_name entry longer than its list');
        if (nameType === NAME_TYPE_HOST) {
          if (hostStart >= 0) return malformed('two host_name entries (RFC 6066 §3)');
          hostStart = q;
          hostEnd = q + nameLen;
        }
        q += nameLen;
      }
    }
    p += len;
  }
  if (hostStart < 0) return NO_NAME;
  const name = hostnameFromBytes(buf, hostStart, hostEnd);
  if (typeof name === 'number') return malformed(`server_name: ${nameProblemText(name)}`);
  return { kind: 'name', name };
}
