/**
 * Big-endian (network byte order, RFC 1700 "Data Notations") reads and writes of 16- and 32-bit
 * fields. Everything that reads or writes header fields uses these; they allocate nothing and
 * read32 returns an unsigned number (>>> 0).
 */

export function read16(buf: Uint8Array, i: number): number {
  return (buf[i] << 8) | buf[i + 1];
}

export function read32(buf: Uint8Array, i: number): number {
  return ((buf[i] << 24) | (buf[i + 1] << 16) | (buf[i + 2] << 8) | buf[i + 3]) >>> 0;
}

export function write16(buf: Uint8Array, i: number, v: number): void {
  buf[i] = (v >>> 8) & 0xff;
  buf[i + 1] = v & 0xff;
}

export function write32(buf: Uint8Array, i: number, v: number): void {
  buf[i] = (v >>> 24) & 0xff;
  buf[i + 1] = (v >>> 16) & 0xff;
  buf[i + 2] = (v >>> 8) & 0xff;
  buf[i + 3] = v & 0xff;
}

/** The parts one after another in a new array (control-plane rate: allocates). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
