/**
 * A UDP endpoint in numbers: address family, address words (wire/addr.ts: IPv4 in addr[0], IPv6 in
 * addr[0..3]) and port. How the packet path names where a datagram came from or goes to without address
 * text: the edge fills one scratch record from the underlay packet's inspection per datagram, and a WireGuard
 * peer's endpoint is one of these, parsed once at configuration.
 *
 * A record that is kept (a peer's endpoint, a datagram's destination) is never edited afterwards: it is
 * replaced when the endpoint changes, so whoever holds a reference keeps a true value.
 */
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from './addr.js';
import { AF_INET4, AF_INET6 } from './constants.js';

export class UdpEndpoint {
  /** AF_INET4 or AF_INET6; 0 until set. */
  family = 0;
  readonly addr = new Uint32Array(4);
  port = 0;

  /** An endpoint from address text and a port (control plane); null when the text is not an IP address. */
  static parse(text: string, port: number): UdpEndpoint | null {
    const e = new UdpEndpoint();
    const v4 = parseIpv4(text);
    if (v4 >= 0) return e.set4(v4, port);
    const v6 = parseIpv6(text);
    if (v6 === null) return null;
    return e.set(AF_INET6, v6, 0, port);
  }

  /** Fills this record from words[at..] (one word for IPv4, four for IPv6); returns it. */
  set(family: number, words: Uint32Array, at: number, port: number): this {
    this.family = family;
    const a = this.addr;
    a[0] = words[at];
    if (family === AF_INET4) {
      a[1] = 0;
      a[2] = 0;
      a[3] = 0;
    } else {
      a[1] = words[at + 1];
      a[2] = words[at + 2];
      a[3] = words[at + 3];
    }
    this.port = port;
    return this;
  }

  /** Fills this record with an IPv4 address and port; returns it. */
  set4(addr: number, port: number): this {
    this.family = AF_INET4;
    const a = this.addr;
    a[0] = addr;
    a[1] = 0;
    a[2] = 0;
    a[3] = 0;
    this.port = port;
    return this;
  }

  equals(other: UdpEndpoint): boolean {
    const a = this.addr;
    const b = other.addr;
    return this.family === other.family && this.port === other.port && a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
  }

  /** A new record with the same value (to keep a borrowed one). */
  copy(): UdpEndpoint {
    return new UdpEndpoint().set(this.family, this.addr, 0, this.port);
  }

  /** The address as text (control plane, logs). */
  addressText(): string {
    return this.family === AF_INET4 ? formatIpv4(this.addr[0]) : formatIpv6(this.addr);
  }
}
