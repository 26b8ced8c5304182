/**
 * The inbound selector check of a child SA (RFC 4301 §5.2, inbound processing step 4, tunnel mode): after an ESP
 * packet has decrypted and passed the replay check, its inner header must lie inside the traffic selectors the SA
 * was negotiated with (RFC 7296 §2.9) — source inside the peer's selectors, destination inside ours — or it is
 * discarded as an auditable event. Without it, a site whose SA was narrowed to 10.0.1.0/24 could send from any
 * address it likes, including another site's.
 *
 * Route-based tunnels (Cloudflare's onramps, strongSwan's `0.0.0.0/0 ↔ 0.0.0.0/0`) negotiate "everything" for a
 * family: packets of that family are admitted on the version nibble alone, without parsing. Only a family that is
 * narrowed (or not negotiated at all: an IPv4-only SA carries no IPv6) costs an inspect per packet.
 *
 * Matching, as RFC 4301 §4.4.1.1 defines the selector fields and RFC 7296 §3.13.1 encodes them:
 *   - addresses: start ≤ address ≤ end, compared as unsigned words (IPv6: four words, most significant first);
 *   - protocol 0 is any, else equal to the packet's (after IPv6 extension headers);
 *   - ports: TCP and UDP ports (the ones inspect reads; any other protocol's count as not available); ICMP and ICMPv6 as one 16-bit number, type in the high byte and code in the low
 *     (§3.13.1), checked on both sides; a packet whose ports are not available (a non-initial fragment, a protocol
 *     without ports) lies only inside "any" (0–65535) and OPAQUE (65535–0) — RFC 4301 §7.1 and §4.4.1.1.
 * A packet is admitted when one of the peer's selectors holds its source side and one of ours its destination
 * side (TSi and TSr are each a set: RFC 7296 §2.9).
 *
 * Pure; compiled once per SA (control path), checked per packet without allocation.
 */
import { Drop } from '../../../common/drop-reasons.js';
import { parseAddress } from '../../../wire/addr.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IP_VERSION_4, IP_VERSION_6 } from '../../../wire/constants.js';
import { inspect } from '../../../wire/inspect.js';
import { DST, PacketInfo, SRC } from '../../../wire/packet-info.js';
import type { TrafficSelector } from '../types.js';

const PORT_MAX = 0xffff;
/** RFC 7296 §3.13.1: start port 65535 with end port 0 is OPAQUE. */
const OPAQUE_START = PORT_MAX;
const OPAQUE_END = 0;
const ANY_PROTOCOL = 0;
const WORDS = { 4: 1, 6: 4 } as const;
/** Words per compiled selector: start address (4), end address (4). */
const ADDRESS_WORDS = 8;
const BYTE_BITS = 8;
/** The port value of a packet whose ports are not available (see matchPort). */
const NO_PORT = -1;

/** One side's selectors (the peer's: sources; ours: destinations), as flat arrays. */
class SideSelectors {
  readonly count: number;
  readonly family: Uint8Array;
  readonly protocol: Uint8Array;
  readonly startPort: Uint16Array;
  readonly endPort: Uint16Array;
  readonly words: Uint32Array;
  /** Some selector of this family covers every address, protocol and port. */
  readonly allOf4: boolean;
  readonly allOf6: boolean;

  constructor(selectors: readonly TrafficSelector[]) {
    const n = selectors.length;
    this.count = n;
    this.family = new Uint8Array(n);
    this.protocol = new Uint8Array(n);
    this.startPort = new Uint16Array(n);
    this.endPort = new Uint16Array(n);
    this.words = new Uint32Array(n * ADDRESS_WORDS);
    let all4 = false;
    let all6 = false;
    selectors.forEach((ts, k) => {
      this.family[k] = ts.family;
      this.protocol[k] = ts.protocol;
      this.startPort[k] = ts.startPort;
      this.endPort[k] = ts.endPort;
      const at = k * ADDRESS_WORDS;
      if (parseAddress(ts.start, this.words, at) !== ts.family || parseAddress(ts.end, this.words, at + WORDS[6]) !== ts.family) {
        throw new RangeError(`traffic selector ${ts.start}-${ts.end}: not IPv${ts.family} addresses`);
      }
      if (ts.protocol === ANY_PROTOCOL && ts.startPort === 0 && ts.endPort === PORT_MAX && this.coversAll(k, ts.family)) {
        if (ts.family === 4) all4 = true;
        else all6 = true;
      }
    });
    this.allOf4 = all4;
    this.allOf6 = all6;
  }

  private coversAll(k: number, family: 4 | 6): boolean {
    const at = k * ADDRESS_WORDS;
    for (let w = 0; w < WORDS[family]; w++) {
      if (this.words[at + w] !== 0 || this.words[at + WORDS[6] + w] !== 0xffff_ffff) return false;
    }
    return true;
  }

  /** One of the selectors holds (address words at `addr[from..]`, protocol, port); port NO_PORT = not available. */
  holds(family: number, addr: Uint32Array, from: number, protocol: number, port: number): boolean {
    const n = family === 4 ? 1 : 4;
    for (let k = 0; k < this.count; k++) {
      if (this.family[k] !== family) continue;
      const p = this.protocol[k];
      if (p !== ANY_PROTOCOL && p !== protocol) continue;
      if (!matchPort(this.startPort[k], this.endPort[k], port)) continue;
      const at = k * ADDRESS_WORDS;
      if (compareWords(addr, from, this.words, at, n) < 0) continue;
      if (compareWords(addr, from, this.words, at + WORDS[6], n) > 0) continue;
      return true;
    }
    return false;
  }
}

function matchPort(start: number, end: number, port: number): boolean {
  if (start === 0 && end === PORT_MAX) return true;
  if (start === OPAQUE_START && end === OPAQUE_END) return port === NO_PORT;
  return port !== NO_PORT && start <= port && port <= end;
}

/** Sign of (a[ai..ai+n) − b[bi..bi+n)) as unsigned words, most significant first. */
function compareWords(a: Uint32Array, ai: number, b: Uint32Array, bi: number, n: number): number {
  for (let w = 0; w < n; w++) {
    const x = a[ai + w];
    const y = b[bi + w];
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function hasPorts(protocol: number): boolean {
  return protocol === IPPROTO_TCP || protocol === IPPROTO_UDP;
}

/** What route-based tunnels negotiate (RFC 7296 §2.9 with Cloudflare's and strongSwan's 0.0.0.0/0, ::/0): everything. */
export const EVERY_SELECTOR: readonly TrafficSelector[] = [
  { family: 4, start: '0.0.0.0', end: '255.255.255.255', protocol: ANY_PROTOCOL, startPort: 0, endPort: PORT_MAX },
  { family: 6, start: '::', end: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', protocol: ANY_PROTOCOL, startPort: 0, endPort: PORT_MAX },
];

/** A child SA's selectors when both sides are route-based. */
export const ROUTE_BASED: { local: readonly TrafficSelector[]; remote: readonly TrafficSelector[] } = { local: EVERY_SELECTOR, remote: EVERY_SELECTOR };

export class InboundSelectors {
  private readonly peer: SideSelectors;
  private readonly ours: SideSelectors;
  private readonly all4: boolean;
  private readonly all6: boolean;
  private readonly info = new PacketInfo();

  /**
   * The check for an SA negotiated with `remote` (the peer's selectors: inner sources) and `local` (ours: inner
   * destinations); null when both cover everything of both families, so the data path skips the call.
   */
  static compile(remote: readonly TrafficSelector[], local: readonly TrafficSelector[]): InboundSelectors | null {
    const check = new InboundSelectors(new SideSelectors(remote), new SideSelectors(local));
    return check.all4 && check.all6 ? null : check;
  }

  private constructor(peer: SideSelectors, ours: SideSelectors) {
    this.peer = peer;
    this.ours = ours;
    this.all4 = peer.allOf4 && ours.allOf4;
    this.all6 = peer.allOf6 && ours.allOf6;
  }

  /** The decrypted inner packet at buf[offset, offset + length) lies inside the SA's selectors. Per packet. */
  admits(buf: Uint8Array, offset: number, length: number): boolean {
    if (length <= 0) return false;
    const version = buf[offset] >>> 4;
    if (version === IP_VERSION_4 && this.all4) return true;
    if (version === IP_VERSION_6 && this.all6) return true;
    const info = this.info;
    // A protocol tether does not track still has its addresses and protocol read (inspect.ts); the pipeline drops
    // it later under its own reason, the selectors are checked all the same.
    const parsed = inspect(buf, offset, length, info);
    if (parsed !== Drop.None && parsed !== Drop.UnsupportedProtocol) return false;
    const protocol = info.protocol;
    let srcPort = NO_PORT;
    let dstPort = NO_PORT;
    if (info.hasTransportHeader) {
      if (hasPorts(protocol)) {
        srcPort = info.srcPort;
        dstPort = info.dstPort;
      } else if (protocol === IPPROTO_ICMP || protocol === IPPROTO_ICMPV6) {
        srcPort = dstPort = (info.icmpType << BYTE_BITS) | info.icmpCode;
      }
    }
    return this.peer.holds(info.family, info.addr, SRC, protocol, srcPort) && this.ours.holds(info.family, info.addr, DST, protocol, dstPort);
  }
}
