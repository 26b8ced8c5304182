/**
 * TCP resets the edge originates to cut a flow it forwards (gateway block, DLP block): one back to the sender of
 * an inspected segment, one on to its receiver in the segment's place. No options, no payload, written into a
 * caller's preallocated buffer (no allocation): an IPv4 or IPv6 header and a 20-byte TCP header, checksums
 * complete.
 *
 * Sequence numbers (RFC 9293 section 3.10.7.1; RFC 5961 section 3.2: a reset in a synchronized state is
 * accepted at once only when its sequence number is exactly the receiver's RCV.NXT, otherwise a challenge ACK
 * follows and the connection lives on):
 *   to the sender:   seq = the segment's ACK (what the sender expects next from its peer), ack = the segment's
 *                    end (seq + payload + SYN + FIN), flags RST|ACK; a segment without ACK gets seq 0 and ACK
 *                    set, as RFC 9293 section 3.10.7.1 answers a segment that carries no ACK.
 *   to the receiver: seq = the segment's seq (the segment is dropped, so the receiver still expects it),
 *                    ack = the segment's ack, flags RST|ACK.
 */
import { foldChecksum, onesComplementSum, pseudoHeaderSum4, pseudoHeaderSum6 } from './checksum.js';
import {
  AF_INET4,
  IPPROTO_TCP,
  IPV4_CHECKSUM,
  IPV4_DST,
  IPV4_FLAGS_FRAGMENT,
  IPV4_FLAG_DF,
  IPV4_MIN_HEADER,
  IPV4_PROTOCOL,
  IPV4_SRC,
  IPV4_TOTAL_LENGTH,
  IPV4_TTL,
  IPV6_DST,
  IPV6_HEADER,
  IPV6_HOP_LIMIT,
  IPV6_NEXT_HEADER,
  IPV6_PAYLOAD_LENGTH,
  IPV6_SRC,
  IP_VERSION_4,
  IP_VERSION_6,
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
} from './constants.js';
import { DST, SRC, type PacketInfo } from './packet-info.js';
import { write16 as put16, write32 as put32 } from './bytes.js';

/** Bytes a reset takes at most (IPv6 header + TCP header without options): the room a caller preallocates. */
export const TCP_RESET_ROOM = IPV6_HEADER + TCP_MIN_HEADER;
/** TTL / hop limit of the resets: the usual initial value (RFC 1700's default TTL, Linux's ip_default_ttl). */
export const TCP_RESET_TTL = 64;
/** TCP data offset of a header without options: 5 words, in the high nibble. */
const TCP_PLAIN_DATA_OFFSET = (TCP_MIN_HEADER >>> 2) << 4;
const SEQ_MOD = 0x100000000;

/**
 * Writes at out[at] the reset that answers the inspected TCP segment `info` back to its sender (addresses and
 * ports swapped). Returns its length.
 */
export function writeResetToSender(out: Uint8Array, at: number, info: PacketInfo): number {
  const hasAck = (info.tcpFlags & TCP_ACK_FLAG) !== 0;
  const end = segmentEnd(info);
  return writeReset(out, at, info, true, hasAck ? info.tcpAck : 0, end);
}

/**
 * Writes at out[at] the reset that goes on to the inspected segment's receiver in its place (same addresses
 * and ports as the segment). Returns its length.
 */
export function writeResetToReceiver(out: Uint8Array, at: number, info: PacketInfo): number {
  return writeReset(out, at, info, false, info.tcpSeq, info.tcpAck);
}

/** The sequence number after the segment: payload, plus one each for SYN and FIN (RFC 9293 section 3.4). */
function segmentEnd(info: PacketInfo): number {
  let n = info.tcpPayloadLength;
  if ((info.tcpFlags & TCP_SYN) !== 0) n++;
  if ((info.tcpFlags & TCP_FIN) !== 0) n++;
  return (info.tcpSeq + n) % SEQ_MOD;
}

function writeReset(out: Uint8Array, at: number, info: PacketInfo, swap: boolean, seq: number, ack: number): number {
  const a = info.addr;
  const from = swap ? DST : SRC;
  const to = swap ? SRC : DST;
  const v4 = info.family === AF_INET4;
  const ipLen = v4 ? IPV4_MIN_HEADER : IPV6_HEADER;
  const total = ipLen + TCP_MIN_HEADER;
  out.fill(0, at, at + total);
  let pseudo: number;
  if (v4) {
    out[at] = (IP_VERSION_4 << 4) | (IPV4_MIN_HEADER >>> 2);
    put16(out, at + IPV4_TOTAL_LENGTH, total);
    put16(out, at + IPV4_FLAGS_FRAGMENT, IPV4_FLAG_DF);
    out[at + IPV4_TTL] = TCP_RESET_TTL;
    out[at + IPV4_PROTOCOL] = IPPROTO_TCP;
    put32(out, at + IPV4_SRC, a[from]);
    put32(out, at + IPV4_DST, a[to]);
    put16(out, at + IPV4_CHECKSUM, foldChecksum(onesComplementSum(out, at, at + IPV4_MIN_HEADER, 0)));
    pseudo = pseudoHeaderSum4(a[from], a[to], IPPROTO_TCP, TCP_MIN_HEADER);
  } else {
    out[at] = IP_VERSION_6 << 4;
    put16(out, at + IPV6_PAYLOAD_LENGTH, TCP_MIN_HEADER);
    out[at + IPV6_NEXT_HEADER] = IPPROTO_TCP;
    out[at + IPV6_HOP_LIMIT] = TCP_RESET_TTL;
    for (let w = 0; w < 4; w++) {
      put32(out, at + IPV6_SRC + 4 * w, a[from + w]);
      put32(out, at + IPV6_DST + 4 * w, a[to + w]);
    }
    pseudo = pseudoHeaderSum6(a, from, to, IPPROTO_TCP, TCP_MIN_HEADER);
  }
  const t = at + ipLen;
  put16(out, t + TCP_SRC_PORT, swap ? info.dstPort : info.srcPort);
  put16(out, t + TCP_DST_PORT, swap ? info.srcPort : info.dstPort);
  put32(out, t + TCP_SEQ, seq);
  put32(out, t + TCP_ACK, ack);
  out[t + TCP_DATA_OFFSET] = TCP_PLAIN_DATA_OFFSET;
  out[t + TCP_FLAGS] = TCP_RST | TCP_ACK_FLAG;
  put16(out, t + TCP_CHECKSUM, foldChecksum(onesComplementSum(out, t, t + TCP_MIN_HEADER, pseudo)));
  return total;
}
