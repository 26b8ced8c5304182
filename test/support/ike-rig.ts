/**
 * Two IKE engines in memory: a fake clock, a "network" that carries sendIke() across (and can lose or copy
 * datagrams), and sinks that record installs, removals and peer states. Used by src/onramp/ipsec/ike/engine.test.ts.
 */
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { parseIpv4 } from '../../src/wire/addr.js';
import type { ChildSa, ChildSaUsage, IkePeerConfig, IkeSink, TrafficSelector } from '../../src/onramp/ipsec/types.js';
import { IkeEngine, type IkeEngineOptions } from '../../src/onramp/ipsec/ike/engine.js';

export const ADDR_A = '192.0.2.1';
export const ADDR_B = '192.0.2.2';
const utf8 = new TextEncoder();

export const ANY4: TrafficSelector = { family: 4, start: '0.0.0.0', end: '255.255.255.255', protocol: 0, startPort: 0, endPort: 65535 };
export const ANY6: TrafficSelector = { family: 6, start: '::', end: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', protocol: 0, startPort: 0, endPort: 65535 };

export function peerConfig(over: Partial<IkePeerConfig> = {}): IkePeerConfig {
  return {
    onramp: 7,
    name: 'site',
    localAddress: ADDR_A,
    remoteAddress: ADDR_B,
    localId: { type: 'fqdn', value: 'a.example' },
    remoteId: { type: 'fqdn', value: 'b.example' },
    psk: utf8.encode('correct horse battery staple'),
    mode: 'initiate',
    ikeProposals: [{ encryption: ['aes256gcm16'], integrity: [], prf: ['prfsha256'], dh: ['ecp256'] }],
    espProposals: [{ encryption: ['aes128gcm16'], integrity: [], dh: [] }],
    localTs: [ANY4, ANY6],
    remoteTs: [ANY4, ANY6],
    ikeLifetime: { rekeySeconds: 3600, lifetimeSeconds: 4000, jitterSeconds: 0 },
    childLifetime: { rekeySeconds: 1800, lifetimeSeconds: 2000, jitterSeconds: 0 },
    dpdSeconds: 30,
    // Longer than the whole retransmission schedule: the tries, not the timeout, end an unanswered check here.
    dpdTimeoutSeconds: 3600,
    replayWindow: 1024,
    forceEncapsulation: false,
    ...over,
  };
}

/** The responder's mirror of an initiator's config. */
export function mirror(c: IkePeerConfig, over: Partial<IkePeerConfig> = {}): IkePeerConfig {
  return peerConfig({
    ...c,
    localAddress: c.remoteAddress,
    remoteAddress: c.localAddress,
    localId: c.remoteId,
    remoteId: c.localId,
    localTs: c.remoteTs,
    remoteTs: c.localTs,
    mode: 'respond',
    ...over,
  });
}

export interface Datagram {
  to: Side;
  bytes: Uint8Array;
  /** As seen by the receiver. */
  localPort: number;
  remotePort: number;
}

export class RecordingSink implements IkeSink {
  installs: ChildSa[] = [];
  removed: Array<{ onramp: number; spi: number }> = [];
  states: Array<{ onramp: number; up: boolean; reason: string }> = [];
  usage = new Map<number, ChildSaUsage>();
  constructor(private readonly side: Side) {}
  sendIke(_onramp: number, message: Uint8Array, localPort: number, _remoteAddress: number, remotePort: number): void {
    this.side.rig.inFlight.push({ to: this.side.other(), bytes: message, localPort: remotePort, remotePort: localPort });
  }
  installChild(sa: ChildSa): void {
    this.installs.push(sa);
  }
  removeChild(onramp: number, inboundSpi: number): void {
    this.removed.push({ onramp, spi: inboundSpi });
  }
  peerState(onramp: number, up: boolean, reason: string): void {
    this.states.push({ onramp, up, reason });
  }
  childUsage(_onramp: number, inboundSpi: number): ChildSaUsage | null {
    if (!this.live().some((c) => c.inbound.spi === inboundSpi)) return null;
    return this.usage.get(inboundSpi) ?? { inboundPackets: 0, outboundPackets: 0, lastInbound: 0, sequenceExhausted: false };
  }
  /** Children installed and not removed. */
  live(): ChildSa[] {
    return this.installs.filter((c) => !this.removed.some((r) => r.spi === c.inbound.spi));
  }
}

export class Side {
  readonly sink: RecordingSink;
  engine: IkeEngine;
  constructor(
    readonly rig: Rig,
    readonly name: 'A' | 'B',
    readonly address: string,
    options: Partial<IkeEngineOptions> = {},
  ) {
    this.sink = new RecordingSink(this);
    this.engine = new IkeEngine(this.sink, { random: (n) => new Uint8Array(randomBytes(n)), ...options });
  }
  other(): Side {
    return this.name === 'A' ? this.rig.b : this.rig.a;
  }
}

export class Rig {
  now = 1_000_000;
  inFlight: Datagram[] = [];
  /** Every datagram delivered, in order (for mutation tests). */
  log: Datagram[] = [];
  readonly a: Side;
  readonly b: Side;
  constructor(optionsA: Partial<IkeEngineOptions> = {}, optionsB: Partial<IkeEngineOptions> = {}) {
    this.a = new Side(this, 'A', ADDR_A, optionsA);
    this.b = new Side(this, 'B', ADDR_B, optionsB);
  }

  deliver(d: Datagram): void {
    this.log.push(d);
    const from = d.to.other();
    d.to.engine.receive(d.bytes, parseIpv4(d.to.address), d.localPort, parseIpv4(from.address), d.remotePort, this.now);
  }

  /** Delivers until nothing is in flight; `filter` may drop (false) a datagram. */
  run(filter: (d: Datagram) => boolean = () => true, limit = 100): void {
    for (let i = 0; this.inFlight.length > 0; i++) {
      assert.ok(i < limit, 'message loop');
      const d = this.inFlight.shift() as Datagram;
      if (filter(d)) this.deliver(d);
    }
  }

  /** Advances the clock to `t`, polling both engines at each deadline on the way, delivering everything. */
  advance(ms: number, filter: (d: Datagram) => boolean = () => true): void {
    const end = this.now + ms;
    for (let i = 0; i < 10_000; i++) {
      this.run(filter);
      const next = Math.max(this.now, Math.min(this.a.engine.nextDeadline(), this.b.engine.nextDeadline()));
      if (next > end) break;
      this.now = next;
      this.a.engine.poll(this.now);
      this.b.engine.poll(this.now);
    }
    this.now = end;
    this.run(filter);
  }

  /** A ↔ B with the given configs, A initiating: its first IKE_SA_INIT is in flight, nothing delivered yet. */
  static started(a: IkePeerConfig, b: IkePeerConfig, optionsA: Partial<IkeEngineOptions> = {}, optionsB: Partial<IkeEngineOptions> = {}): Rig {
    const rig = new Rig(optionsA, optionsB);
    rig.b.engine.addPeer(b);
    rig.a.engine.addPeer(a);
    rig.a.engine.poll(rig.now);
    return rig;
  }

  /** A ↔ B with the given configs, A initiating; runs until quiet. */
  static pair(a: IkePeerConfig, b: IkePeerConfig, optionsA: Partial<IkeEngineOptions> = {}, optionsB: Partial<IkeEngineOptions> = {}): Rig {
    const rig = Rig.started(a, b, optionsA, optionsB);
    rig.run();
    return rig;
  }
}

/** The two ends of each child match crosswise: A's outbound is B's inbound and back. */
export function assertCrosswise(a: ChildSa, b: ChildSa): void {
  assert.equal(a.outbound.spi, b.inbound.spi);
  assert.equal(a.inbound.spi, b.outbound.spi);
  assert.deepEqual(a.outbound.encryptionKey, b.inbound.encryptionKey);
  assert.deepEqual(a.inbound.encryptionKey, b.outbound.encryptionKey);
  assert.deepEqual(a.outbound.integrityKey, b.inbound.integrityKey);
  assert.deepEqual(a.inbound.integrityKey, b.outbound.integrityKey);
  assert.notDeepEqual(a.inbound.encryptionKey, a.outbound.encryptionKey);
  assert.equal(a.outbound.encryption, b.inbound.encryption);
}
