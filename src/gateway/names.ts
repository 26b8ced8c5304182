/**
 * Host names as the gateway compares them: the one normal form every parser (TLS SNI, HTTP Host, DNS)
 * hands to the hostname matcher, so a rule written once matches the same name however it arrived.
 *
 * Normal form: ASCII letters folded to lower case (DNS names compare case-insensitively, RFC 4343 §3),
 * one trailing dot dropped (the root label; RFC 6066 §3 forbids it in SNI but clients send it and
 * `example.com.` is `example.com`), labels 1–63 octets, the whole ≤ 253 octets (RFC 1035 §2.3.4: 255
 * octets on the wire less the first length octet and the root). Characters: letters, digits, `-`, and `_`
 * (not LDH, but real names carry it: `_dmarc`, some CDNs). IDNA names are compared as the A-labels
 * (`xn--…`) clients put on the wire; nothing here converts Unicode.
 */
import { DOT, HYPHEN, UNDERSCORE, foldCase, isAlnum } from './ascii.js';

/** RFC 1035 §2.3.4: a label is at most 63 octets. */
export const MAX_LABEL_LENGTH = 63;
/** RFC 1035 §2.3.4: 255 octets in wire form = 253 characters of text without the trailing dot. */
export const MAX_NAME_LENGTH = 253;

/** Why a byte string is not a host name (the parsers' malformed reasons quote these). */
export const enum NameProblem {
  Empty = 1,
  TooLong = 2,
  EmptyLabel = 3,
  LabelTooLong = 4,
  BadCharacter = 5,
}

export function nameProblemText(p: NameProblem): string {
  switch (p) {
    case NameProblem.Empty: return 'empty host name';
    case NameProblem.TooLong: return 'host name longer than 253 octets';
    case NameProblem.EmptyLabel: return 'host name has an empty label';
    case NameProblem.LabelTooLong: return 'host name label longer than 63 octets';
    case NameProblem.BadCharacter: return 'host name has a character other than letters, digits, "-", "_" and "."';
  }
}

/** Lower-cased byte if `c` may stand in a host name, else -1. */
export function hostByte(c: number): number {
  if (isAlnum(c)) return foldCase(c);
  if (c === HYPHEN || c === UNDERSCORE || c === DOT) return c;
  return -1;
}

/**
 * The normal form of bytes [start, end) of `buf` as a host name, or the problem. Allocates the string
 * (once per flow: the parsers call it when they have decided).
 */
export function hostnameFromBytes(buf: Uint8Array, start: number, end: number): string | NameProblem {
  if (end > start && buf[end - 1] === DOT) end--;
  const length = end - start;
  if (length <= 0) return NameProblem.Empty;
  if (length > MAX_NAME_LENGTH) return NameProblem.TooLong;
  let label = 0;
  let upper = false;
  for (let i = start; i < end; i++) {
    const raw = buf[i];
    const c = hostByte(raw);
    if (c < 0) return NameProblem.BadCharacter;
    if (c !== raw) upper = true;
    if (c === DOT) {
      if (label === 0) return NameProblem.EmptyLabel;
      label = 0;
    } else if (++label > MAX_LABEL_LENGTH) {
      return NameProblem.LabelTooLong;
    }
  }
  if (label === 0) return NameProblem.EmptyLabel;
  // Every byte is ASCII now: one string from the bytes, folded once if it had capitals.
  const text = String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  return upper ? text.toLowerCase() : text;
}

/** The same check on a string (configuration, API): the normal form, or the problem. */
export function normalizeHostname(text: string): string | NameProblem {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A non-ASCII character can never be a host name byte: map it to one hostByte rejects.
    bytes[i] = c > 0x7f ? 0 : c;
  }
  return hostnameFromBytes(bytes, 0, bytes.length);
}
