/**
 * FlowKey: one direction of a flow, (zone, protocol, source, destination, srcPort, dstPort).
 * A reusable scratch record: callers preallocate a few and refill them per packet; nothing
 * here allocates after construction.
 *
 * Addresses are words (see wire/addr.ts): IPv4 uses src[0] / dst[0]; IPv6 uses all four,
 * most significant word first. A table built with addrWords = 1 reads only word 0.
 * For ICMP queries the ports carry the echo identifier (see wire/packet-info.ts).
 */
export const ADDR_WORDS_MAX = 4;

export class FlowKey {
  zone = 0;
  protocol = 0;
  srcPort = 0;
  dstPort = 0;
  readonly src = new Uint32Array(ADDR_WORDS_MAX);
  readonly dst = new Uint32Array(ADDR_WORDS_MAX);

  /** Fill as an IPv4 key (words 1..3 cleared). Returns this. */
  set4(zone: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number): this {
    this.zone = zone;
    this.protocol = protocol;
    this.src[0] = src;
    this.dst[0] = dst;
    for (let w = 1; w < ADDR_WORDS_MAX; w++) {
      this.src[w] = 0;
      this.dst[w] = 0;
    }
    this.srcPort = srcPort;
    this.dstPort = dstPort;
    return this;
  }

  /**
   * Fill from an 8-word address array laid out like PacketInfo.addr: [0..3] source, [4..7]
   * destination (IPv4 uses [0] and [4]). Returns this.
   */
  setWords(zone: number, protocol: number, addr: Uint32Array, srcPort: number, dstPort: number): this {
    this.zone = zone;
    this.protocol = protocol;
    for (let w = 0; w < ADDR_WORDS_MAX; w++) {
      this.src[w] = addr[w];
      this.dst[w] = addr[ADDR_WORDS_MAX + w];
    }
    this.srcPort = srcPort;
    this.dstPort = dstPort;
    return this;
  }

  copyFrom(other: FlowKey): this {
    this.zone = other.zone;
    this.protocol = other.protocol;
    this.src.set(other.src);
    this.dst.set(other.dst);
    this.srcPort = other.srcPort;
    this.dstPort = other.dstPort;
    return this;
  }

  /** The same conversation seen from the other end: swap addresses and ports; same zone and protocol. */
  reverseOf(other: FlowKey): this {
    this.zone = other.zone;
    this.protocol = other.protocol;
    for (let w = 0; w < ADDR_WORDS_MAX; w++) {
      const s = other.src[w];
      this.src[w] = other.dst[w];
      this.dst[w] = s;
    }
    const sp = other.srcPort;
    this.srcPort = other.dstPort;
    this.dstPort = sp;
    return this;
  }
}
