/**
 * TCP resets the edge originates to cut a flow (a gateway block, a DLP block), written into a preallocated
 * buffer from the segment that triggered them: no allocation. Both are 20-byte TCP headers without options
 * (RFC 9293 section 3.1) behind a plain IPv4 (DF set) or IPv6 header, TTL / hop limit ORIGINATED_TTL.
 *
 *   writeResetToSender    back to the segment's sender, as if from its peer (RFC 9293 section 3.10.7.1, the
 *                         reset for a segment that is not acceptable): addresses and ports swapped;
 *                         with ACK on the segment: <SEQ=SEG.ACK><CTL=RST>; without: <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
 *                         <CTL=RST,ACK>. SEG.ACK is exactly what the sender expects next from its peer, so the
 *                         sender accepts it under RFC 5961 section 3.2's exact-match rule.
 *   writeResetToReceiver  on to the segment's receiver, as if from its sender: same addresses and ports, the
 *                         sequence number the caller gives (the receiver's RCV.NXT: the first byte it has not
 *                         been given), ACK = SEG.ACK. The caller translates it like the flow's packets.
 *
 * The caller checks the packet is TCP with its transport header (PacketInfo.protocol, hasTransportHeader).
 */
import { foldChecksum, onesComplementSum, pseudoHeaderSum4, pseudoHeaderSum6 } from './checksum.js';
import { write16, write32 } from './bytes.js';
import { writeIpv4Header } from './header.js';
import {
  AF_INET4,
  IPPROTO_TCP,
  IPV4_MIN_HEADER,
  IPV6_DST,
  IPV6_HEADER,
  IPV6_HOP_LIMIT,
  IPV6_NEXT_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_SRC,
  ORIGINATED_TTL,
  TCP_ACK,
  TCP_ACK_FLAG,
  TCP_CHECKSUM,
  TCP_DATA_OFFSET,
  TCP_DST_PORT,
  TCP_FIN,
  TCP_FLAGS,
  TCP_MIN_HEADER,
  TCP_RST,
  TCP_SEQ,
  TCP_SRC_PORT,
  TCP_SYN,
  TCP_URGENT,
  TCP_WINDOW,
} from './constants.js';
import { DST, SRC, type PacketInfo } from './packet-info.js';

/** Bytes a reset takes at most in the output buffer (IPv6 header + TCP header). */
export const TCP_RESET_ROOM = IPV6_HEADER + TCP_MIN_HEADER;
/** First word of an IPv6 header: version 6, traffic class 0, flow label 0 (RFC 8200 section 3). */
const IPV6_VERSION_WORD = 6 << 28;
/** Data offset 5 words (no options), in the high nibble of its byte. */
const DATA_OFFSET_PLAIN = (TCP_MIN_HEADER >>> 2) << 4;

/** Source (words 0..3) and destination (4..7) of the reset being written. */
const addr = new Uint32Array(8);

/**
 * The reset that answers `info`'s segment to its sender (see the file header), written at out[at]; returns its
 * length. `out` needs TCP_RESET_ROOM bytes from `at`.
 */
export function writeResetToSender(out: Uint8Array, at: number, info: PacketInfo): number {
  const words = info.family === AF_INET4 ? 1 : 4;
  for (let w = 0; w < words; w++) {
    addr[w] = info.addr[DST + w];
    addr[4 + w] = info.addr[SRC + w];
  }
  const hasAck = (info.tcpFlags & TCP_ACK_FLAG) !== 0;
  // SEG.LEN counts SYN and FIN (RFC 9293 section 3.4).
  const segLen = info.tcpPayloadLength + ((info.tcpFlags & TCP_SYN) !== 0 ? 1 : 0) + ((info.tcpFlags & TCP_FIN) !== 0 ? 1 : 0);
  const seq = hasAck ? info.tcpAck : 0;
  const ack = hasAck ? 0 : (info.tcpSeq + segLen) >>> 0;
  return writeReset(out, at, info.family, info.dstPort, info.srcPort, seq, ack, hasAck ? TCP_RST : TCP_RST | TCP_ACK_FLAG);
}

/**
 * The reset `info`'s sender would send its receiver, with sequence number `seq` (the receiver's RCV.NXT), written
 * at out[at]; returns its length. It acknowledges what the segment acknowledged.
 */
export function writeResetToReceiver(out: Uint8Array, at: number, info: PacketInfo, seq: number): number {
  const words = info.family === AF_INET4 ? 1 : 4;
  for (let w = 0; w < words; w++) {
    addr[w] = info.addr[SRC + w];
    addr[4 + w] = info.addr[DST + w];
  }
  const hasAck = (info.tcpFlags & TCP_ACK_FLAG) !== 0;
  return writeReset(out, at, info.family, info.srcPort, info.dstPort, seq >>> 0, hasAck ? info.tcpAck : 0, hasAck ? TCP_RST | TCP_ACK_FLAG : TCP_RST);
}

function writeReset(out: Uint8Array, at: number, family: number, srcPort: number, dstPort: number, seq: number, ack: number, flags: number): number {
  const v4 = family === AF_INET4;
  const l4 = at + (v4 ? IPV4_MIN_HEADER : IPV6_HEADER);
  if (v4) {
    writeIpv4Header(out, at, IPV4_MIN_HEADER + TCP_MIN_HEADER, 0, ORIGINATED_TTL, IPPROTO_TCP, addr[0], addr[4]);
  } else {
    write32(out, at, IPV6_VERSION_WORD);
    write16(out, at + IPV6_PAYLOAD_LENGTH, TCP_MIN_HEADER);
    out[at + IPV6_NEXT_HEADER] = IPPROTO_TCP;
    out[at + IPV6_HOP_LIMIT] = ORIGINATED_TTL;
    for (let w = 0; w < 4; w++) {
      write32(out, at + IPV6_SRC + 4 * w, addr[w]);
      write32(out, at + IPV6_DST + 4 * w, addr[4 + w]);
    }
  }
  write16(out, l4 + TCP_SRC_PORT, srcPort);
  write16(out, l4 + TCP_DST_PORT, dstPort);
  write32(out, l4 + TCP_SEQ, seq);
  write32(out, l4 + TCP_ACK, ack);
  out[l4 + TCP_DATA_OFFSET] = DATA_OFFSET_PLAIN;
  out[l4 + TCP_FLAGS] = flags;
  // RFC 9293 section 3.10.7.1 does not name a window; 0 says "send nothing more".
  write16(out, l4 + TCP_WINDOW, 0);
  write16(out, l4 + TCP_CHECKSUM, 0);
  write16(out, l4 + TCP_URGENT, 0);
  const pseudo = v4 ? pseudoHeaderSum4(addr[0], addr[4], IPPROTO_TCP, TCP_MIN_HEADER) : pseudoHeaderSum6(addr, 0, 4, IPPROTO_TCP, TCP_MIN_HEADER);
  write16(out, l4 + TCP_CHECKSUM, foldChecksum(onesComplementSum(out, l4, l4 + TCP_MIN_HEADER, pseudo)));
  return (v4 ? IPV4_MIN_HEADER : IPV6_HEADER) + TCP_MIN_HEADER;
}
