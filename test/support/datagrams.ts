/**
 * A fragmented datagram's identity for the datagram tables' tests (src/dataplane/datagram-table.ts and its users):
 * its fields, and its addresses as PacketInfo.addr lays them out (source words 0..3, destination 4..7).
 */
import { DST, SRC } from '../../src/wire/packet-info.js';

export interface Datagram {
  zone: number;
  protocol: number;
  family: 4 | 6;
  src: number[];
  dst: number[];
  ident: number;
}

const addr = new Uint32Array(8);

/** The datagram's addresses in one shared scratch array (the next call overwrites it). */
export function loadDatagram(d: Datagram): Uint32Array {
  for (let w = 0; w < 4; w++) {
    addr[SRC + w] = d.src[w];
    addr[DST + w] = d.dst[w];
  }
  return addr;
}
