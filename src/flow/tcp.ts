/**
 * TCP connection tracking: the state machine of Linux conntrack (nf_conntrack_proto_tcp.c,
 * tcp_conntracks[][][]) and the window checks of Guido van Rooij's "Real Stateful TCP Packet
 * Filtering in IP Filter", in the form Linux's tcp_in_window() uses (pf and Open vSwitch's
 * lib/conntrack-tcp.c implement the same four bounds).
 *
 * Per direction d (node = flow * 2 + d) we keep, all modulo 2^32:
 *   end[d]     td_end:    highest sequence number d has sent, plus its length (SYN and FIN count 1)
 *   maxEnd[d]  td_maxend: highest sequence number d may send = the peer's highest ack + window
 *   maxWin[d]  td_maxwin: largest window d advertised (scaled); 0 = d has sent nothing yet
 *   scale[d]   WSCALE_SEEN | shift, from d's SYN (RFC 7323 section 2)
 *
 * A segment from sender S to receiver R is in window when (Linux tcp_in_window):
 *   (I)   seq <= S.maxEnd                          it starts inside the window R offered
 *   (II)  seq + len >= S.end - R.maxWin            a retransmission at most one window back
 *   (III) ack <= R.end                             it does not acknowledge data R has not sent
 *   (IV)  ack >= R.end - S.maxWin (or 66000)       it does not acknowledge too far back
 * and a RST must also carry the exact expected sequence number (S.end, +-1 as pf allows) once
 * the handshake has completed: RFC 5961 section 3.2 blind-reset mitigation.
 *
 * A rejected segment changes nothing: every check runs on locals and the arrays are written
 * only after the segment is accepted.
 */
import { Drop } from '../common/drop-reasons.js';
import { TCP_ACK_FLAG, TCP_FIN, TCP_RST, TCP_SYN, TCP_URG } from '../wire/constants.js';

export const enum TcpState {
  None = 0,
  SynSent = 1,
  SynRecv = 2,
  Established = 3,
  FinWait = 4,
  CloseWait = 5,
  LastAck = 6,
  TimeWait = 7,
  Close = 8,
  /** Simultaneous open: both sides sent a SYN (RFC 9293 section 3.5, figure 7). */
  SynSent2 = 9,
}
export const TCP_STATE_COUNT = 10;


/** Serial-number comparisons modulo 2^32 (RFC 1982 style, as the kernel's before()/after()). */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
export function seqLeq(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}
export function seqGeq(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** RFC 7323 section 2.3: a shift count above 14 is used as 14. */
const MAX_WSCALE = 14;
/** scale[] bit: this direction's SYN carried the window scale option. */
const WSCALE_SEEN = 0x80;
const WSCALE_SHIFT_MASK = 0x0f;
/** Linux MAXACKWINCONST: the ack bound (IV) before the sender has advertised any window. */
const MAX_ACK_WINDOW_DEFAULT = 66000;

// Segment classes, as conntrack's get_conntrack_index().
const IDX_SYN = 0;
const IDX_SYNACK = 1;
const IDX_FIN = 2;
const IDX_ACK = 3;
const IDX_RST = 4;
const IDX_NONE = 5;
const IDX_COUNT = 6;

/** Flags that decide validity; PSH, ECE and CWR never do (conntrack masks them too). */
const FLAG_CLASS_MASK = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK_FLAG | TCP_URG;
/** Valid combinations (conntrack tcp_valid_flags): SYN+FIN, SYN+RST, FIN without ACK, no flags... are not. */
const VALID_FLAGS = new Uint8Array(FLAG_CLASS_MASK + 1);
for (const f of [
  TCP_SYN,
  TCP_SYN | TCP_URG,
  TCP_SYN | TCP_ACK_FLAG,
  TCP_RST,
  TCP_RST | TCP_ACK_FLAG,
  TCP_FIN | TCP_ACK_FLAG,
  TCP_FIN | TCP_ACK_FLAG | TCP_URG,
  TCP_ACK_FLAG,
  TCP_ACK_FLAG | TCP_URG,
]) {
  VALID_FLAGS[f] = 1;
}

// Table entries beyond the states.
/** Invalid: drop with Drop.TcpInvalid. */
const IV = 0xff;
/** Ignore: accept when in window, change nothing (a retransmitted SYN/ACK, for instance). */
const IG = 0xfe;

const sSS = TcpState.SynSent;
const sSR = TcpState.SynRecv;
const sES = TcpState.Established;
const sFW = TcpState.FinWait;
const sCW = TcpState.CloseWait;
const sLA = TcpState.LastAck;
const sTW = TcpState.TimeWait;
const sCL = TcpState.Close;
const sS2 = TcpState.SynSent2;

/**
 * Next state by [direction][segment class][state], after conntrack's tcp_conntracks. Deviations,
 * all towards strictness (we never pick up connections mid-stream, flows start with a SYN):
 *   - a SYN in ESTABLISHED / FIN_WAIT / CLOSE_WAIT / LAST_ACK is invalid (conntrack ignores it);
 *   - a first segment other than a SYN is invalid (conntrack "assumes" ESTABLISHED on an ACK);
 *   - a reply-direction ACK before the SYN/ACK is invalid (conntrack ignores it);
 *   - only the original direction may reopen a TIME_WAIT/CLOSE flow with a SYN (conntrack also
 *     lets the reply side, with roles swapped; that would break who owns the flow for ARR/NAT).
 */
// prettier-ignore
const TRANSITIONS = Uint8Array.from([
  // ORIGINAL      sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
  /* syn    */     sSS, sSS, IG,  IV,  IV,  IV,  IV,  sSS, sSS, sS2,
  /* synack */     IV,  IV,  sSR, IV,  IV,  IV,  IV,  IV,  IV,  sSR,
  /* fin    */     IV,  IV,  sFW, sFW, sLA, sLA, sLA, sTW, sCL, IV,
  /* ack    */     IV,  IV,  sES, sES, sCW, sCW, sTW, sTW, sCL, IV,
  /* rst    */     IV,  sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */     IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,
  // REPLY         sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
  /* syn    */     IV,  sS2, IV,  IV,  IV,  IV,  IV,  IV,  IV,  sS2,
  /* synack */     IV,  sSR, IG,  IG,  IG,  IG,  IG,  IG,  IG,  sSR,
  /* fin    */     IV,  IV,  sFW, sFW, sLA, sLA, sLA, sTW, sCL, IV,
  /* ack    */     IV,  IV,  sSR, sES, sCW, sCW, sTW, sTW, sCL, IG,
  /* rst    */     IV,  sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */     IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,
]);
const DIR_STRIDE = IDX_COUNT * TCP_STATE_COUNT;

/** States in which the handshake has completed, where a RST must match the sequence exactly. */
function isSynchronized(state: number): boolean {
  return state >= sES && state <= sCL;
}

/** The window scale byte a SYN records: WSCALE_SEEN | shift, or 0 without the option. */
function scaleByte(windowScale: number): number {
  if (windowScale < 0) return 0;
  return WSCALE_SEEN | (windowScale > MAX_WSCALE ? MAX_WSCALE : windowScale);
}

/**
 * Per-direction window state for `capacity` flows (2 * capacity nodes): 13 bytes per direction.
 * `track` is the whole algorithm; the flow table owns the state byte and the deadlines.
 */
export class TcpTracker {
  readonly end: Uint32Array;
  readonly maxEnd: Uint32Array;
  readonly maxWin: Uint32Array;
  readonly scale: Uint8Array;

  constructor(capacity: number) {
    const nodes = capacity * 2;
    this.end = new Uint32Array(nodes);
    this.maxEnd = new Uint32Array(nodes);
    this.maxWin = new Uint32Array(nodes);
    this.scale = new Uint8Array(nodes);
  }

  /** Forget both directions of a flow (new flow, or a reopened one). */
  reset(flow: number): void {
    const n = flow * 2;
    this.end[n] = this.end[n + 1] = 0;
    this.maxEnd[n] = this.maxEnd[n + 1] = 0;
    this.maxWin[n] = this.maxWin[n + 1] = 0;
    this.scale[n] = this.scale[n + 1] = 0;
  }

  byteLength(): number {
    return this.end.byteLength + this.maxEnd.byteLength + this.maxWin.byteLength + this.scale.byteLength;
  }

  /**
   * One segment of the flow's direction dir (node = flow * 2 + dir) in state `state`.
   * Returns the next state (>= 0; equal to `state` when nothing changes) or -Drop.TcpInvalid /
   * -Drop.TcpOutOfWindow, in which case no array was written.
   * seq / ack are 32-bit (signed or unsigned, normalised here); window is the raw 16-bit field;
   * windowScale is the SYN's shift count or -1 when the option is absent.
   */
  track(
    node: number,
    state: number,
    flags: number,
    seq: number,
    ack: number,
    window: number,
    payloadLength: number,
    windowScale: number,
  ): number {
    const cls = flags & FLAG_CLASS_MASK;
    if (VALID_FLAGS[cls] === 0) return -Drop.TcpInvalid;
    const index =
      (flags & TCP_RST) !== 0
        ? IDX_RST
        : (flags & TCP_SYN) !== 0
          ? (flags & TCP_ACK_FLAG) !== 0
            ? IDX_SYNACK
            : IDX_SYN
          : (flags & TCP_FIN) !== 0
            ? IDX_FIN
            : (flags & TCP_ACK_FLAG) !== 0
              ? IDX_ACK
              : IDX_NONE;
    const dir = node & 1;
    const next = TRANSITIONS[dir * DIR_STRIDE + index * TCP_STATE_COUNT + state];
    if (next === IV) return -Drop.TcpInvalid;

    seq = seq >>> 0;
    ack = ack >>> 0;
    const isSyn = index === IDX_SYN || index === IDX_SYNACK;
    const end = (seq + payloadLength + (isSyn ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0)) >>> 0;
    const other = node ^ 1;

    // A bare SYN from the originator that (re)starts the connection: the first segment, a
    // retransmitted SYN (possibly with a new ISN, RFC 9293 section 3.4.1), or a new connection
    // reusing the tuple after TIME_WAIT / CLOSE (RFC 1122 4.2.2.13). There is no window to check
    // against: the responder has not spoken.
    if (index === IDX_SYN && dir === 0 && next === sSS) {
      this.scale[other] = 0;
      this.end[other] = 0;
      this.maxEnd[other] = 0;
      this.maxWin[other] = 0;
      this.end[node] = end;
      this.maxEnd[node] = end;
      this.maxWin[node] = window === 0 ? 1 : window;
      this.scale[node] = scaleByte(windowScale);
      return sSS;
    }

    // Sender's view, from the arrays or, for its first segment, staged from this SYN.
    const senderNew = this.maxWin[node] === 0;
    let sEnd = this.end[node];
    let sMaxEnd = this.maxEnd[node];
    let sMaxWin = this.maxWin[node];
    let sScale = this.scale[node];
    let rScale = this.scale[other];
    if (senderNew) {
      if (index === IDX_RST) {
        // The responder refuses the SYN. RFC 9293 section 3.10.7.3 (SYN-SENT): a RST is
        // acceptable only if its ACK acknowledges our SYN; it has no sequence space of its own yet.
        return (flags & TCP_ACK_FLAG) !== 0 && ack === this.end[other] ? next : -Drop.TcpOutOfWindow;
      }
      if (!isSyn) return -Drop.TcpInvalid; // unreachable with the table above; defensive
      sEnd = end;
      sMaxEnd = end;
      sMaxWin = window === 0 ? 1 : window;
      sScale = scaleByte(windowScale);
      // RFC 7323 section 2.2: scaling is in effect only when both SYNs carried the option.
      if ((sScale & rScale & WSCALE_SEEN) === 0) {
        sScale = 0;
        rScale = 0;
      }
      if (index === IDX_SYN) {
        // Simultaneous open: the second SYN acknowledges nothing, so nothing to check (Linux too).
        this.end[node] = sEnd;
        this.maxEnd[node] = sMaxEnd;
        this.maxWin[node] = sMaxWin;
        this.scale[node] = sScale;
        this.scale[other] = rScale;
        return next;
      }
    }

    const rEnd = this.end[other];
    let rMaxEnd = this.maxEnd[other];
    let rMaxWin = this.maxWin[other];
    // Windows in SYNs are never scaled (RFC 7323 section 2.2); afterwards, only if both SYNs agreed.
    const shift = !isSyn && (sScale & rScale & WSCALE_SEEN) !== 0 ? sScale & WSCALE_SHIFT_MASK : 0;
    const win = window << shift;
    // Without ACK the ack field means nothing; a RST|ACK with ack 0 comes from broken stacks.
    // Linux treats both as acknowledging exactly R.end.
    const sack = (flags & TCP_ACK_FLAG) === 0 || (index === IDX_RST && ack === 0) ? rEnd : ack;

    const maxAckWindow = sMaxWin === 0 ? MAX_ACK_WINDOW_DEFAULT : sMaxWin;
    if (
      !seqLeq(seq, sMaxEnd) || // (I)
      (rMaxWin !== 0 && !seqGeq(end, (sEnd - rMaxWin) >>> 0)) || // (II)
      !seqLeq(sack, rEnd) || // (III)
      !seqGeq(sack, (rEnd - maxAckWindow) >>> 0) // (IV)
    ) {
      return -Drop.TcpOutOfWindow;
    }
    if (index === IDX_RST && (isSynchronized(state) || rMaxWin === 0)) {
      // RFC 5961 section 3.2: an in-window but inexact RST would only earn a challenge ACK from
      // the endpoint; we drop it. +-1 tolerates stacks that send the RST at the FIN's number.
      // Before the peer has spoken (rMaxWin 0) there is no window at all, so exact it must be.
      const delta = (seq - sEnd) | 0;
      if (delta < -1 || delta > 1) return -Drop.TcpOutOfWindow;
    }
    if (next === IG) return state;

    // Accepted: update the sender, then what the receiver may send (Linux tcp_in_window).
    if (sMaxWin < win) sMaxWin = win;
    if (rMaxWin !== 0 && seqGt(end, sMaxEnd)) rMaxWin = (rMaxWin + ((end - sMaxEnd) >>> 0)) >>> 0;
    if (seqGt(end, sEnd)) sEnd = end;
    const rightEdge = (sack + win) >>> 0;
    if (seqGeq(rightEdge, rMaxEnd)) rMaxEnd = win === 0 ? (rightEdge + 1) >>> 0 : rightEdge;

    this.end[node] = sEnd;
    this.maxEnd[node] = sMaxEnd;
    this.maxWin[node] = sMaxWin;
    this.scale[node] = sScale;
    this.maxEnd[other] = rMaxEnd;
    this.maxWin[other] = rMaxWin;
    this.scale[other] = rScale;
    return next;
  }
}
