/**
 * What the first-payload classifiers (tls-sni.ts, http-host.ts) answer after each segment. Every kind but
 * `need-more` is final: the parser has decided and ignores what follows. The fixed kinds are shared
 * frozen objects, so a parser that is still waiting allocates nothing per segment.
 */
export type ClassifyResult =
  | { readonly kind: 'need-more' }
  /** The name the client asked for, in names.ts's normal form. */
  | { readonly kind: 'name'; readonly name: string }
  /** The protocol, but no name in it (a ClientHello without server_name; HTTP/1.0 without Host). */
  | { readonly kind: 'no-name' }
  /** Not this protocol at all: the flow's policy decides without a name. */
  | { readonly kind: 'not-protocol' }
  /** This protocol, broken: the reason names the field. */
  | { readonly kind: 'malformed'; readonly reason: string }
  /** More than the buffer bound before a decision. */
  | { readonly kind: 'too-large' };

export const NEED_MORE: ClassifyResult = Object.freeze({ kind: 'need-more' });
export const NO_NAME: ClassifyResult = Object.freeze({ kind: 'no-name' });
export const NOT_PROTOCOL: ClassifyResult = Object.freeze({ kind: 'not-protocol' });
export const TOO_LARGE: ClassifyResult = Object.freeze({ kind: 'too-large' });

export function malformed(reason: string): ClassifyResult {
  return { kind: 'malformed', reason };
}

/** 16 KiB: one full TLS record (RFC 8446 §5.1) and far more than any browser's request headers. */
export const DEFAULT_CLASSIFY_BUFFER = 16 * 1024;
