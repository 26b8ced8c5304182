/**
 * tether's IKE engine on real UDP sockets, for end-to-end tests against strongSwan: ports 500 and 4500 on one
 * local address (RFC 3948 §2.2: on 4500 an IKE message follows a 4-byte zero non-ESP marker; anything else there is
 * ESP, and 0xFF alone a NAT keepalive, both dropped and counted: there is no ESP data path here). The engine is
 * polled at its nextDeadline(); time is performance.now(). Events (installs, removals, peer states) go to a
 * listener. Use it inside a network namespace through test/support/ike-host.ts.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { IkeEngine } from '../../src/onramp/ipsec/ike/engine.js';
import type { ChildSa, ChildSaUsage, IkePeerConfig, IkeSink } from '../../src/onramp/ipsec/types.js';
import { formatIpv4, parseIpv4 } from '../../src/wire/addr.js';

export const IKE_PORT = 500;
export const NAT_T_PORT = 4500;
/** RFC 3948 §2.2: the non-ESP marker before IKE on port 4500. */
const NON_ESP_MARKER = 4;
/** RFC 3948 §2.3: a NAT-keepalive is one 0xFF octet. */
const KEEPALIVE = 0xff;
/** Poll at least this often even when the engine has nothing due (it may be given new work by a command). */
const MAX_SLEEP_MS = 500;

export type IkeUdpEvent =
  | { event: 'install'; onramp: number; inboundSpi: number; outboundSpi: number; encryption: string; integrity: string | null; localPort: number; remotePort: number; inKey: string; outKey: string; inIntegrityKey: string; outIntegrityKey: string }
  | { event: 'remove'; onramp: number; inboundSpi: number }
  | { event: 'state'; onramp: number; up: boolean; reason: string }
  | { event: 'dropped'; what: 'esp' | 'keepalive'; bytes: number };

const hex = (b: Uint8Array | null): string => (b === null ? '' : Buffer.from(b).toString('hex'));

export class IkeUdp implements IkeSink {
  readonly engine: IkeEngine;
  private readonly sockets = new Map<number, dgram.Socket>();
  private readonly live = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    readonly localAddress: string,
    private readonly onEvent: (e: IkeUdpEvent) => void,
  ) {
    this.engine = new IkeEngine(this, { random: (n) => new Uint8Array(randomBytes(n)) });
  }

  /** Binds both ports; resolves when both listen. */
  async start(): Promise<void> {
    for (const port of [IKE_PORT, NAT_T_PORT]) {
      const s = dgram.createSocket('udp4');
      s.on('message', (msg, rinfo) => this.received(port, new Uint8Array(msg.buffer, msg.byteOffset, msg.length), rinfo));
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(port, this.localAddress, () => resolve());
      });
      this.sockets.set(port, s);
    }
    this.schedule();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.sockets.values()) s.close();
  }

  now(): number {
    return performance.now();
  }

  addPeer(config: IkePeerConfig): void {
    this.engine.addPeer(config);
    this.schedule();
  }

  removePeer(onramp: number): void {
    this.engine.removePeer(onramp, this.now());
    this.schedule();
  }

  initiate(onramp: number): void {
    this.engine.initiate(onramp, this.now());
    this.schedule();
  }

  private received(port: number, bytes: Uint8Array, rinfo: dgram.RemoteInfo): void {
    let message = bytes;
    if (port === NAT_T_PORT) {
      if (bytes.length === 1 && bytes[0] === KEEPALIVE) return this.onEvent({ event: 'dropped', what: 'keepalive', bytes: 1 });
      if (bytes.length < NON_ESP_MARKER || bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) {
        return this.onEvent({ event: 'dropped', what: 'esp', bytes: bytes.length });
      }
      message = bytes.subarray(NON_ESP_MARKER);
    }
    this.engine.receive(message, parseIpv4(this.localAddress), port, parseIpv4(rinfo.address), rinfo.port, this.now());
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    const wait = Math.min(MAX_SLEEP_MS, Math.max(0, this.engine.nextDeadline() - this.now()));
    this.timer = setTimeout(() => {
      this.engine.poll(this.now());
      this.schedule();
    }, wait);
  }

  // --- IkeSink ---

  sendIke(_onramp: number, message: Uint8Array, localPort: number, remoteAddress: number, remotePort: number): void {
    const s = this.sockets.get(localPort);
    if (s === undefined) throw new Error(`sendIke from port ${localPort}: only ${IKE_PORT} and ${NAT_T_PORT} are bound`);
    const out = localPort === NAT_T_PORT ? Buffer.concat([Buffer.alloc(NON_ESP_MARKER), message]) : Buffer.from(message);
    s.send(out, remotePort, formatIpv4(remoteAddress));
  }

  installChild(sa: ChildSa): void {
    this.live.add(sa.inbound.spi);
    this.onEvent({
      event: 'install',
      onramp: sa.onramp,
      inboundSpi: sa.inbound.spi,
      outboundSpi: sa.outbound.spi,
      encryption: sa.inbound.encryption,
      integrity: sa.inbound.integrity,
      localPort: sa.path.localPort,
      remotePort: sa.path.remotePort,
      inKey: hex(sa.inbound.encryptionKey),
      outKey: hex(sa.outbound.encryptionKey),
      inIntegrityKey: hex(sa.inbound.integrityKey),
      outIntegrityKey: hex(sa.outbound.integrityKey),
    });
  }

  removeChild(onramp: number, inboundSpi: number): void {
    this.live.delete(inboundSpi);
    this.onEvent({ event: 'remove', onramp, inboundSpi });
  }

  childUsage(_onramp: number, inboundSpi: number): ChildSaUsage | null {
    return this.live.has(inboundSpi) ? { inboundPackets: 0, outboundPackets: 0, lastInbound: 0, sequenceExhausted: false } : null;
  }

  peerState(onramp: number, up: boolean, reason: string): void {
    this.onEvent({ event: 'state', onramp, up, reason });
  }
}
