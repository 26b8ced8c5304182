/** The ASCII octets and classes the gateway's parsers and detectors test bytes against (one copy). */

export const HTAB = 0x09;
export const LF = 0x0a;
export const CR = 0x0d;
export const SPACE = 0x20;
export const HYPHEN = 0x2d;
export const DOT = 0x2e;
export const DIGIT_0 = 0x30;
export const DIGIT_9 = 0x39;
export const UPPER_A = 0x41;
export const UPPER_Z = 0x5a;
export const UNDERSCORE = 0x5f;
export const LOWER_A = 0x61;
export const LOWER_Z = 0x7a;
/** 'A' | CASE_BIT = 'a'. */
export const CASE_BIT = 0x20;

export function isDigit(c: number): boolean {
  return c >= DIGIT_0 && c <= DIGIT_9;
}

export function isUpper(c: number): boolean {
  return c >= UPPER_A && c <= UPPER_Z;
}

export function isAlpha(c: number): boolean {
  return isUpper(c) || (c >= LOWER_A && c <= LOWER_Z);
}

export function isAlnum(c: number): boolean {
  return isDigit(c) || isAlpha(c);
}

/** ASCII upper case folded to lower; every other byte as it is. */
export function foldCase(c: number): number {
  return isUpper(c) ? c | CASE_BIT : c;
}
