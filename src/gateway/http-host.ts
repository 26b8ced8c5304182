/**
 * HTTP/1.x request → the host it is for, fed the client's TCP payload in order, one segment at a time.
 *
 *   [empty lines] request-line (RFC 9112 §3) ─ header fields (§5) ─ empty line
 *     host: the request-target's authority when it is in absolute-form (§3.2.2: the server MUST then
 *           ignore Host) or authority-form (CONNECT, §3.2.3); otherwise the Host field (RFC 9110 §7.2)
 *
 * The head is collected into one buffer of `maxBytes` (16 KiB by default; `too-large` past it) and parsed
 * when its empty line arrives; the method and the request line are checked as soon as they are in, so a
 * TLS or SSH client is `not-protocol` after its first bytes, not after 16 KiB. Lines end in CRLF or a bare
 * LF (§2.2 lets a recipient accept LF); a bare CR elsewhere is malformed (§2.2).
 *
 * Strict where leniency lets a request carry two names: two Host fields, a Host field with whitespace
 * before its colon (§5.1), obsolete line folding (§5.2), and an HTTP/1.1 request without Host (§3.2) are
 * all `malformed` (a server must answer 400 to each). `not-protocol`: no method token, a request line that
 * is not `method SP target SP HTTP/x.y`, or a version other than 1.x (the HTTP/2 preface `PRI * HTTP/2.0`
 * included). An HTTP/1.0 request without Host or absolute-form target: `no-name`; so is an empty Host.
 * The host comes back in names.ts's normal form without its port; userinfo (`user@`) is skipped; an
 * IP literal comes back as written, lower-cased, in brackets (`[2001:db8::1]`).
 */
import { CR, DOT, HTAB, LF, SPACE as SP, foldCase, isAlpha, isDigit } from './ascii.js';
import { hostnameFromBytes, nameProblemText } from './names.js';
import { DEFAULT_CLASSIFY_BUFFER, NEED_MORE, NOT_PROTOCOL, NO_NAME, TOO_LARGE, malformed, type ClassifyResult } from './result.js';

const COLON = 0x3a;
const SLASH = 0x2f;
const AT = 0x40;
const QUESTION = 0x3f;
const HASH = 0x23;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const ASTERISK = 0x2a;
const METHOD_DONE = -1;
/** Above this many bytes a typed-array copy beats a byte loop (the view it needs is one object per segment). */
const BULK_COPY = 32;
/** The longest registered method (IANA HTTP Method Registry) is 17 octets; 24 leaves room for a custom one. */
const MAX_METHOD = 24;
/** RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT. */
const VERSION_LENGTH = 8;
const HTTP_SLASH = [0x48, 0x54, 0x54, 0x50, 0x2f];
const CONNECT = 'CONNECT';
/** A port is at most 5 digits (≤ 65535, RFC 6335 §6). */
const MAX_PORT_DIGITS = 5;
const MAX_PORT = 65535;
/** "://" after a URI scheme (RFC 3986 §3). */
const SCHEME_SEPARATOR_LENGTH = 3;

/** RFC 9110 §5.6.2 tchar: "!#$%&'*+-.^_`|~", digits, letters — as a table, one read per byte. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

function isTchar(c: number): boolean {
  return TCHAR[c] === 1;
}

export class HttpHostParser {
  private readonly buf: Uint8Array;
  private len = 0;
  /** Where the current line starts (after leading empty lines, after the last LF). */
  private lineStart = 0;
  private headStart = -1;
  private requestLineEnd = -1;
  /** Octets of method so far; METHOD_DONE after its SP. */
  private methodLen = 0;
  private result: ClassifyResult = NEED_MORE;

  constructor(maxBytes = DEFAULT_CLASSIFY_BUFFER) {
    this.buf = new Uint8Array(Math.max(maxBytes, 1));
  }

  reset(): void {
    this.len = 0;
    this.lineStart = 0;
    this.headStart = -1;
    this.requestLineEnd = -1;
    this.methodLen = 0;
    this.result = NEED_MORE;
  }

  get current(): ClassifyResult {
    return this.result;
  }

  feed(seg: Uint8Array, offset = 0, length = seg.length - offset): ClassifyResult {
    if (this.result !== NEED_MORE) return this.result;
    const buf = this.buf;
    const end = offset + length;
    let i = offset;
    if (this.headStart < 0) {
      // RFC 9112 §2.2: ignore empty lines before the request line.
      while (i < end && (seg[i] === CR || seg[i] === LF)) i++;
      if (i === end) return NEED_MORE;
      this.headStart = 0;
    }
    const from = this.len;
    const n = Math.min(end - i, buf.length - from);
    if (n > BULK_COPY) buf.set(seg.subarray(i, i + n), from);
    else for (let k = 0; k < n; k++) buf[from + k] = seg[i + k];
    this.len = from + n;
    for (let at = from; at < this.len && this.methodLen >= 0; at++) {
      const r = this.checkMethodByte(buf[at]);
      if (r !== NEED_MORE) return (this.result = r);
    }
    // Search only what is held (a view: the buffer past len holds an earlier flow's bytes).
    const held = buf.subarray(0, this.len);
    let at = held.indexOf(LF, from);
    while (at >= 0) {
      const lineEnd = at > this.lineStart && buf[at - 1] === CR ? at - 1 : at;
      if (this.requestLineEnd < 0) {
        this.requestLineEnd = lineEnd;
        const r = checkRequestLine(buf, this.headStart, lineEnd);
        if (r !== NEED_MORE) return (this.result = r);
      } else if (lineEnd === this.lineStart) {
        return (this.result = parseRequestHead(buf, this.headStart, at + 1));
      }
      this.lineStart = at + 1;
      at = held.indexOf(LF, at + 1);
    }
    // No end of head yet: bytes that did not fit mean it is longer than the bound.
    if (n < end - i) return (this.result = TOO_LARGE);
    return NEED_MORE;
  }

  /** Until the first SP: the method must be a token of at most MAX_METHOD octets. */
  private checkMethodByte(c: number): ClassifyResult {
    if (this.methodLen < 0) return NEED_MORE;
    if (c === SP) {
      if (this.methodLen === 0) return NOT_PROTOCOL;
      this.methodLen = METHOD_DONE;
      return NEED_MORE;
    }
    return isTchar(c) && ++this.methodLen <= MAX_METHOD ? NEED_MORE : NOT_PROTOCOL;
  }
}

interface RequestLine {
  methodEnd: number;
  targetStart: number;
  targetEnd: number;
  minor: number;
}

/** request-line = method SP request-target SP HTTP-version, in buf[start, end); null when it is not one. */
function splitRequestLine(buf: Uint8Array, start: number, end: number): RequestLine | null {
  let p = start;
  while (p < end && isTchar(buf[p])) p++;
  if (p === start || p >= end || buf[p] !== SP) return null;
  const methodEnd = p;
  const targetStart = ++p;
  while (p < end && buf[p] > SP && buf[p] < 0x7f) p++;
  if (p === targetStart || p >= end || buf[p] !== SP) return null;
  const targetEnd = p++;
  if (end - p !== VERSION_LENGTH) return null;
  for (let k = 0; k < HTTP_SLASH.length; k++) if (buf[p + k] !== HTTP_SLASH[k]) return null;
  const major = buf[p + 5];
  const minor = buf[p + 7];
  if (major !== 0x31 || buf[p + 6] !== DOT || !isDigit(minor)) return null;
  return { methodEnd, targetStart, targetEnd, minor: minor - 0x30 };
}

function checkRequestLine(buf: Uint8Array, start: number, end: number): ClassifyResult {
  return splitRequestLine(buf, start, end) === null ? NOT_PROTOCOL : NEED_MORE;
}

function asciiEquals(buf: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) if (buf[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

function asciiEqualsFolded(buf: Uint8Array, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const c = buf[start + i];
    if (foldCase(c) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * A whole request head in buf[start, end) (request line through the empty line): its host. Exported for
 * tests and for callers that hold the head already.
 */
export function parseRequestHead(buf: Uint8Array, start: number, end: number): ClassifyResult {
  let lineEnd = buf.indexOf(LF, start);
  if (lineEnd < 0 || lineEnd >= end) return NOT_PROTOCOL;
  const line = splitRequestLine(buf, start, lineEnd > start && buf[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd);
  if (line === null) return NOT_PROTOCOL;
  let hostStart = -1;
  let hostEnd = -1;
  let p = lineEnd + 1;
  while (true) {
    lineEnd = buf.indexOf(LF, p);
    if (lineEnd < 0 || lineEnd >= end) return malformed('header section does not end with an empty line');
    let e = lineEnd;
    if (e > p && buf[e - 1] === CR) e--;
    if (e === p) break;
    const first = buf[p];
    if (first === SP || first === HTAB) return malformed('obsolete line folding (RFC 9112 §5.2)');
    let q = p;
    while (q < e && isTchar(buf[q])) q++;
    if (q === e || buf[q] !== COLON) {
      if (q < e && (buf[q] === SP || buf[q] === HTAB)) return malformed('whitespace between a field name and its colon (RFC 9112 §5.1)');
      return malformed('header line without a "name:" (RFC 9112 §5)');
    }
    if (q === p) return malformed('empty header field name');
    for (let k = q + 1; k < e; k++) {
      const c = buf[k];
      if (c === CR || c === 0 || c === LF) return malformed('bare CR or NUL in a header field (RFC 9112 §2.2)');
    }
    if (asciiEqualsFolded(buf, p, q, 'host')) {
      if (hostStart >= 0) return malformed('two Host header fields (RFC 9112 §3.2)');
      let vs = q + 1;
      let ve = e;
      while (vs < ve && (buf[vs] === SP || buf[vs] === HTAB)) vs++;
      while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
      hostStart = vs;
      hostEnd = ve;
    }
    p = lineEnd + 1;
  }
  // The request-target's authority wins when it has one (RFC 9112 §3.2.2, §3.2.3).
  const { targetStart: ts, targetEnd: te } = line;
  if (asciiEquals(buf, start, line.methodEnd, CONNECT)) {
    const r = authorityHost(buf, ts, te, 'CONNECT target');
    if (r.kind !== 'no-name') return r;
    return malformed('CONNECT target without a host (RFC 9112 §3.2.3)');
  }
  if (buf[ts] !== SLASH && !(te - ts === 1 && buf[ts] === ASTERISK)) {
    const authority = absoluteFormAuthority(buf, ts, te);
    if (authority < 0) return malformed('request-target is none of origin-, absolute-, authority- or asterisk-form (RFC 9112 §3.2)');
    let ae = authority;
    while (ae < te && buf[ae] !== SLASH && buf[ae] !== QUESTION && buf[ae] !== HASH) ae++;
    const r = authorityHost(buf, authority, ae, 'request-target');
    if (r.kind !== 'no-name') {
      if (line.minor >= 1 && hostStart < 0) return malformed('HTTP/1.1 request without Host (RFC 9112 §3.2)');
      return r;
    }
  }
  if (hostStart < 0) return line.minor >= 1 ? malformed('HTTP/1.1 request without Host (RFC 9112 §3.2)') : NO_NAME;
  return authorityHost(buf, hostStart, hostEnd, 'Host');
}

/** Where the authority of an absolute-form target `scheme://authority…` starts, or -1. */
function absoluteFormAuthority(buf: Uint8Array, start: number, end: number): number {
  if (start >= end || !isAlpha(buf[start])) return -1;
  let p = start + 1;
  while (p < end && (isAlpha(buf[p]) || isDigit(buf[p]) || buf[p] === 0x2b || buf[p] === 0x2d || buf[p] === DOT)) p++;
  if (end - p < SCHEME_SEPARATOR_LENGTH || buf[p] !== COLON || buf[p + 1] !== SLASH || buf[p + 2] !== SLASH) return -1;
  return p + SCHEME_SEPARATOR_LENGTH;
}

/** authority = [ userinfo "@" ] host [ ":" port ] (RFC 3986 §3.2) in buf[start, end) → the host. */
function authorityHost(buf: Uint8Array, start: number, end: number, what: string): ClassifyResult {
  for (let k = end - 1; k >= start; k--) {
    if (buf[k] === AT) {
      start = k + 1;
      break;
    }
  }
  if (start === end) return NO_NAME;
  let hostEnd: number;
  let name: string;
  if (buf[start] === OPEN_BRACKET) {
    hostEnd = buf.indexOf(CLOSE_BRACKET, start);
    if (hostEnd < 0 || hostEnd >= end) return malformed(`${what}: IP literal without "]"`);
    name = '[';
    for (let k = start + 1; k < hostEnd; k++) {
      const c = buf[k];
      const ok = isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46) || c === COLON || c === DOT;
      if (!ok) return malformed(`${what}: IP literal with a character other than hex digits, ":" and "."`);
      name += String.fromCharCode(c >= 0x41 && c <= 0x46 ? c | 0x20 : c);
    }
    name += ']';
    hostEnd++;
  } else {
    hostEnd = start;
    while (hostEnd < end && buf[hostEnd] !== COLON) hostEnd++;
    const host = hostnameFromBytes(buf, start, hostEnd);
    if (typeof host === 'number') return malformed(`${what}: ${nameProblemText(host)}`);
    name = host;
  }
  if (hostEnd < end) {
    if (buf[hostEnd] !== COLON) return malformed(`${what}: text after the host that is not ":port"`);
    const digits = end - hostEnd - 1;
    let port = 0;
    for (let k = hostEnd + 1; k < end; k++) {
      if (!isDigit(buf[k])) return malformed(`${what}: port is not a number`);
      port = port * 10 + buf[k] - 0x30;
    }
    if (digits > MAX_PORT_DIGITS || port > MAX_PORT) return malformed(`${what}: port above 65535`);
  }
  return { kind: 'name', name };
}
