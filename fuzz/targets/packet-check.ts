/**
 * Checks shared by the packet targets: what an inspection of the same bytes must say wherever they lie, and
 * that every offset it reports stays inside the packet.
 */
import { PacketInfo } from '../../src/wire/packet-info.js';
import { FuzzFailure } from '../harness.js';

/** inspect()'s result and PacketInfo as numbers, offsets relative to the packet's start (comparable across placements). */
export function signature(drop: number, info: PacketInfo, base: number, out: number[]): number[] {
  out.length = 0;
  out.push(drop, info.family, info.ipLength, info.protocol, info.srcPort, info.dstPort, info.tcpFlags, info.tcpMss, info.tcpWindowScale);
  out.push(info.fragmentOffset, +info.moreFragments, +info.isFragment, info.icmpType, info.icmpCode, info.icmpId, +info.isIcmpError);
  out.push(info.innerFamily, info.innerProtocol, info.innerSrcPort, info.innerDstPort, info.innerL4Available);
  for (let i = 0; i < info.addr.length; i++) out.push(info.addr[i]);
  if (drop === 0) {
    out.push(info.l3Offset - base, info.l4Offset - base, info.l4Length, info.ttlOffset - base);
    out.push(info.tcpMssOffset === 0 ? 0 : info.tcpMssOffset - base, info.innerL3Offset === 0 ? 0 : info.innerL3Offset - base, info.innerL4Offset === 0 ? 0 : info.innerL4Offset - base);
  }
  return out;
}

export function sameSignature(a: number[], b: number[], what: string): void {
  if (a.length !== b.length || a.some((v, i) => !Object.is(v, b[i]))) {
    throw new FuzzFailure(`${what}: inspection differs between placements of the same bytes (a read outside the packet?): [${a.join(',')}] vs [${b.join(',')}]`);
  }
}

/** Every offset a successful inspection reports lies inside [start, start + length). */
export function offsetsInside(info: PacketInfo, start: number, length: number): void {
  const end = start + length;
  const inside = (name: string, at: number, size: number): void => {
    if (at < start || at + size > end) throw new FuzzFailure(`inspect: ${name} ${at}+${size} outside the packet [${start}, ${end})`);
  };
  if (info.l3Offset !== start) throw new FuzzFailure(`inspect: l3Offset ${info.l3Offset}, packet at ${start}`);
  if (info.ipLength > length) throw new FuzzFailure(`inspect: ipLength ${info.ipLength} > ${length}`);
  inside('ttlOffset', info.ttlOffset, 1);
  inside('l4', info.l4Offset, info.l4Length);
  if (info.tcpMssOffset !== 0) inside('tcpMssOffset', info.tcpMssOffset, 2);
  if (info.isIcmpError) inside('inner transport', info.innerL4Offset, info.innerL4Available);
}
