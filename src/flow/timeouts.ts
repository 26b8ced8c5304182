/**
 * Flow idle timeouts, in milliseconds. A flow's deadline is (last accepted packet) + the timeout of
 * its current state; expiry removes it once the deadline has passed.
 *
 * The defaults are the floors the NAT behaviour RFCs set (an edge that forgets a flow earlier
 * breaks long-lived idle sessions), not Linux conntrack's values (which are shorter for UDP
 * and ICMP and much longer, 5 days, for established TCP).
 */
export interface FlowTimeouts {
  /** TCP after the first SYN (and SYN_SENT2, simultaneous open). */
  tcpSynSent: number;
  /** TCP after the SYN/ACK, before the final ACK of the handshake. */
  tcpSynRecv: number;
  /** TCP established. */
  tcpEstablished: number;
  /** TCP after the first FIN. */
  tcpFinWait: number;
  /** TCP after the first FIN was acknowledged (half closed). */
  tcpCloseWait: number;
  /** TCP after FINs in both directions, waiting for the last ACK. */
  tcpLastAck: number;
  /** TCP after the last ACK. */
  tcpTimeWait: number;
  /** TCP after a RST. */
  tcpClose: number;
  /** UDP before any packet in the reply direction. */
  udpUnreplied: number;
  /** UDP once the reply direction has been seen. */
  udpEstablished: number;
  /** ICMP / ICMPv6 queries (echo), replied or not. */
  icmp: number;
  /** Any other protocol before a reply. Defaults to udpUnreplied when absent. */
  otherUnreplied?: number;
  /** Any other protocol after a reply. Defaults to udpEstablished when absent. */
  otherEstablished?: number;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;

export const DEFAULT_TIMEOUTS: Readonly<Required<FlowTimeouts>> = Object.freeze({
  /** RFC 5382 REQ-5: transitory connection idle timeout >= 4 minutes (SYN_SENT/SYN_RECV are transitory). */
  tcpSynSent: 4 * MINUTE,
  /** RFC 5382 REQ-5: transitory >= 4 minutes. */
  tcpSynRecv: 4 * MINUTE,
  /** RFC 5382 REQ-5: established idle timeout >= 2 hours 4 minutes (7440 s): 2 h keep-alive interval (RFC 1122 4.2.3.6) plus 4 probes. */
  tcpEstablished: 7440 * SECOND,
  /** RFC 5382 REQ-5: transitory (a FIN has been seen) >= 4 minutes. */
  tcpFinWait: 4 * MINUTE,
  /** RFC 5382 REQ-5: transitory >= 4 minutes. */
  tcpCloseWait: 4 * MINUTE,
  /** RFC 5382 REQ-5: transitory >= 4 minutes. */
  tcpLastAck: 4 * MINUTE,
  /** 2 MSL (RFC 9293 section 3.3.2 TIME-WAIT), taking MSL = 60 s as Linux does; conntrack uses the same 120 s. */
  tcpTimeWait: 2 * MINUTE,
  /** After a RST the connection is gone; a short grace period absorbs in-flight segments. */
  tcpClose: 10 * SECOND,
  /** RFC 4787 REQ-5: a UDP mapping timer must not expire in less than 2 minutes. */
  udpUnreplied: 2 * MINUTE,
  /** RFC 4787 REQ-5: 5 minutes or more is RECOMMENDED. */
  udpEstablished: 5 * MINUTE,
  /** RFC 5508 REQ-1: ICMP query mapping timeout >= 60 s. */
  icmp: 60 * SECOND,
  /** No RFC covers other protocols: treated like UDP (connectionless, RFC 4787 values). */
  otherUnreplied: 2 * MINUTE,
  /** No RFC covers other protocols: treated like UDP (connectionless, RFC 4787 values). */
  otherEstablished: 5 * MINUTE,
});

/**
 * Largest timeout accepted. Deadlines are stored as milliseconds modulo 2^32 and compared with
 * serial-number arithmetic, which is exact while every deadline lies within 2^31 ms (24.8 days)
 * of the current time; 20 days leaves room for expiry running late.
 */
export const MAX_TIMEOUT_MS = 20 * 24 * 60 * MINUTE;

/** Defaults overlaid with the given values; throws RangeError on a negative or too-large value (control plane only). */
export function resolveTimeouts(partial: Partial<FlowTimeouts> | undefined): Required<FlowTimeouts> {
  const out: Required<FlowTimeouts> = { ...DEFAULT_TIMEOUTS };
  if (partial !== undefined) {
    for (const name of Object.keys(partial) as (keyof FlowTimeouts)[]) {
      const value = partial[name];
      if (value !== undefined) out[name] = value;
    }
    if (partial.otherUnreplied === undefined && partial.udpUnreplied !== undefined) out.otherUnreplied = partial.udpUnreplied;
    if (partial.otherEstablished === undefined && partial.udpEstablished !== undefined) out.otherEstablished = partial.udpEstablished;
  }
  for (const name of Object.keys(out) as (keyof FlowTimeouts)[]) {
    const value = out[name];
    if (!Number.isFinite(value) || value < 0 || value > MAX_TIMEOUT_MS) {
      throw new RangeError(`flow timeout ${name} must be within 0..${MAX_TIMEOUT_MS} ms, got ${value}`);
    }
  }
  return out;
}
