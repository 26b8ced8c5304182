/**
 * A slow, obviously correct IPv4 reassembler for tests (RFC 791 section 3.2): what a receiver makes of the
 * fragments of one UDP datagram, checksum verified over the whole datagram.
 */
import { foldChecksum, onesComplementSum, pseudoHeaderSum4 } from '../../src/wire/checksum.js';
import { IPPROTO_UDP } from '../../src/wire/constants.js';

/** The receiver's reassembly key (RFC 791 section 3.2): source, destination, protocol, identification. */
export function reassemblyKey(f: Uint8Array): string {
  return `${f.subarray(12, 16).join('.')}>${f.subarray(16, 20).join('.')}/${f[9]}#${(f[4] << 8) | f[5]}`;
}

/** Reassembles IPv4 fragments of one UDP datagram (any order) and verifies its checksum. */
export function reassemble(fragments: Uint8Array[]): { payload: Uint8Array; checksumOk: boolean } {
  const parts = fragments.map((f) => {
    const headerLength = (f[0] & 0x0f) * 4;
    const offset = (((f[6] << 8) | f[7]) & 0x1fff) * 8;
    return { offset, data: f.subarray(headerLength, (f[2] << 8) | f[3]), header: f };
  });
  const udp = new Uint8Array(Math.max(...parts.map((p) => p.offset + p.data.length)));
  for (const p of parts) udp.set(p.data, p.offset);
  const h = parts[0].header;
  const src = ((h[12] << 24) | (h[13] << 16) | (h[14] << 8) | h[15]) >>> 0;
  const dst = ((h[16] << 24) | (h[17] << 16) | (h[18] << 8) | h[19]) >>> 0;
  const sum = onesComplementSum(udp, 0, udp.length, pseudoHeaderSum4(src, dst, IPPROTO_UDP, udp.length));
  return { payload: udp.subarray(8), checksumOk: foldChecksum(sum) === 0 };
}
