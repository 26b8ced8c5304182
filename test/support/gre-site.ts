/**
 * A GRE site router played by a test: the GRE packets it sends to the edge (RFC 2784 section 2; with a key,
 * RFC 2890 section 2.1), built whole so the test can write them into the TUN that stands for the site.
 */
import { buildIp } from '../../src/wire/build.js';
import { IPPROTO_GRE } from '../../src/wire/constants.js';

/** The base GRE header (RFC 2784 section 2). */
export const GRE_HEADER = 4;
/** RFC 2890 section 2.1: the K bit, and the 4-byte key field after the base header. */
const GRE_FLAG_KEY = 0x20;
export const GRE_KEY_FIELD = 4;
const GRE_PROTO_IPV4 = 0x0800;

/** GRE over IPv4 from `src` (the site's endpoint) to `dst` (the edge's), carrying `inner`. */
export function greFrame(src: string, dst: string, inner: Uint8Array, key?: number): Uint8Array {
  const header = key === undefined ? GRE_HEADER : GRE_HEADER + GRE_KEY_FIELD;
  const gre = new Uint8Array(header + inner.length);
  if (key !== undefined) {
    gre[0] = GRE_FLAG_KEY;
    new DataView(gre.buffer).setUint32(GRE_HEADER, key);
  }
  gre[2] = GRE_PROTO_IPV4 >>> 8;
  gre[3] = GRE_PROTO_IPV4 & 0xff;
  gre.set(inner, header);
  return buildIp({ src, dst }, IPPROTO_GRE, gre);
}
