/**
 * Helpers shared by the WireGuard tests (and usable by later interop tests): seeded randomness, key pairs,
 * IPv4 packets, and a pair of devices wired to each other in memory.
 */
import { publicKeyFromPrivate } from '../../src/onramp/wireguard/crypto.js';
import type { WgAead } from '../../src/onramp/wireguard/aead.js';
import { WireGuardDevice, type Outgoing, type WireGuardPeerConfig } from '../../src/onramp/wireguard/device.js';
import { UdpEndpoint } from '../../src/wire/endpoint.js';

/** xorshift32 filling bytes: deterministic "randomness" for reproducible tests. */
export function seededRandom(seed: number): (b: Uint8Array) => void {
  let x = seed >>> 0 || 1;
  return (b: Uint8Array) => {
    for (let i = 0; i < b.length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      b[i] = x & 0xff;
    }
  };
}

export function keyPair(seed: number): { priv: Uint8Array; pub: Uint8Array } {
  const priv = new Uint8Array(32);
  seededRandom(seed)(priv);
  return { priv, pub: publicKeyFromPrivate(priv) };
}

/** A minimal IPv4 packet (UDP protocol number, no checksum care) from src to dst carrying `payloadLen` bytes. */
export function ipv4Packet(src: string, dst: string, payloadLen: number, fill = 0xab): Uint8Array {
  const p = new Uint8Array(20 + payloadLen).fill(fill);
  p[0] = 0x45;
  p[1] = 0;
  p[2] = (p.length >> 8) & 0xff;
  p[3] = p.length & 0xff;
  p[8] = 64;
  p[9] = 17;
  p.set(src.split('.').map(Number), 12);
  p.set(dst.split('.').map(Number), 16);
  return p;
}

/** Copies the datagrams out of a reused result array. */
export function copyOut(list: Outgoing[]): Outgoing[] {
  return list.map((o) => ({ ...o, data: o.data.slice() }));
}

export const T0 = 1_700_000_000_000;
export const ADDR_A = '192.0.2.1';
export const ADDR_B = '192.0.2.2';
export const PORT_A = 51820;
export const PORT_B = 51821;

/** Two devices: A (inner 10.0.1.0/24) and B (inner 10.0.2.0/24), each the other's peer 0. */
export function pair(options: {
  bEndpointForA?: boolean;
  psk?: Uint8Array;
  peerExtraA?: Partial<WireGuardPeerConfig>;
  bChecksSources?: boolean;
  /** Wall clocks (TAI64N only); absent: `now` is taken as wall time. */
  wallClockA?: () => number;
  wallClockB?: () => number;
  /** Transport AEADs (absent: the device's node:crypto one). */
  aeadA?: WgAead;
  aeadB?: WgAead;
} = {}) {
  const ka = keyPair(11);
  const kb = keyPair(22);
  const a = new WireGuardDevice({
    privateKey: ka.priv,
    randomFill: seededRandom(101),
    wallClock: options.wallClockA,
    aead: options.aeadA,
    peers: [
      {
        publicKey: kb.pub,
        presharedKey: options.psk ?? null,
        allowedIps: ['10.0.2.0/24'],
        endpoint: { addr: ADDR_B, port: PORT_B },
        ...options.peerExtraA,
      },
    ],
  });
  const b = new WireGuardDevice({
    privateKey: kb.priv,
    randomFill: seededRandom(202),
    wallClock: options.wallClockB,
    aead: options.aeadB,
    checkSources: options.bChecksSources ?? true,
    peers: [
      {
        publicKey: ka.pub,
        presharedKey: options.psk ?? null,
        allowedIps: ['10.0.1.0/24'],
        endpoint: options.bEndpointForA ? { addr: ADDR_A, port: PORT_A } : null,
      },
    ],
  });
  return { a, b, ka, kb };
}

/** A numeric endpoint from address text (tests name addresses as text). */
export function endpoint(addr: string, port: number): UdpEndpoint {
  const e = UdpEndpoint.parse(addr, port);
  if (e === null) throw new Error(`not an address: ${addr}`);
  return e;
}

/** Delivers datagrams A→B (or B→A) and returns the results' copies. */
export function deliver(to: WireGuardDevice, from: Outgoing[], srcAddr: string, srcPort: number, now: number) {
  const results = [];
  for (const o of copyOut(from)) {
    const r = to.receive(o.data, endpoint(srcAddr, srcPort), now);
    results.push({ kind: r.kind, reason: r.reason, peer: r.peer, packet: r.packet?.slice() ?? null, datagrams: copyOut(r.datagrams) });
  }
  return results;
}

/** Runs a complete handshake started by A sending `first`; returns what B delivered. */
export function handshake(a: WireGuardDevice, b: WireGuardDevice, first: Uint8Array, now: number) {
  const init = copyOut(a.send(0, first, now));
  const [resp] = deliver(b, init, ADDR_A, PORT_A, now);
  const [confirm] = deliver(a, resp.datagrams, ADDR_B, PORT_B, now);
  const delivered = deliver(b, confirm.datagrams, ADDR_A, PORT_A, now);
  return { init, resp, confirm, delivered };
}
