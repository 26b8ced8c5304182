/**
 * IPsec onramps: the IKEv2 engine (pure, src/onramp/ipsec/ike/engine.ts) glued to the ESP data path and its UDP
 * 500/4500 and protocol-50 claims (ipsec.ts). The Edge sees one OnrampTransport of type ipsec.
 *
 *   config (type: ipsec) ─ toIkePeerConfig ─┬─ engine.addPeer/updatePeer/removePeer (IKE: identities, PSK, proposals)
 *                                           └─ data.add/update/remove (local address claims, tunnel MTU, delivery)
 *   underlay: UDP 500, or 4500 with marker 0 ─ data.onIke ─ engine.receive ─┐
 *   one timer at engine.nextDeadline() ─ engine.poll ───────────────────────┤
 *                                                                           ▼ IkeSink
 *      sendIke ─ data.sendIke ─► underlay     installChild/removeChild/childUsage ─ data (the SA table)
 *      peerState(up/down) ─ the health driver (a dead peer is down at once; health and failover take it from there)
 *
 * Nothing the engine does on bad input may end the daemon: receive() and poll() run inside a guard that logs and
 * counts a throw (IpsecEngineError) instead of letting it reach the TUN read loop or the timer.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { PacketBatch } from '../../common/packet-batch.js';
import { MAX_ONRAMP_ID } from '../../common/ids.js';
import { toIkePeerConfig, type IpsecOnrampConfig } from '../../config/index.js';
import type { EspSaCounters, IpsecDropStats } from '../../control/metrics.js';
import type { TunDevice } from '../../io/tun.js';
import { IkeEngine } from '../../onramp/ipsec/ike/engine.js';
import { IKE_DROP_NAMES, IkeDrop } from '../../onramp/ipsec/ike/ike-drop.js';
import type { ChildSa, ChildSaUsage, IkeSaStatus, IkeSink } from '../../onramp/ipsec/types.js';
import { EdgeCounter, nonZero } from './counters.js';
import { IpsecTransport, type IkeDatagramPath } from './ipsec.js';
import type { OnrampTransport, TransportHost } from './transport.js';
import type { Underlay } from './underlay.js';

const PORT_SPACE = MAX_ONRAMP_ID + 1;
/** setTimeout's largest delay (a signed 32-bit millisecond count). */
const MAX_TIMER_MS = 0x7fffffff;
/**
 * An IPsec onramp that has never been up counts as alive this long after it was added: time for the peer to
 * start (a responder waits for the site's router to dial in). After it, or once an SA was up and died, it is down.
 */
export const IPSEC_SETUP_GRACE_MS = 30_000;
/**
 * NAT-keepalives (RFC 3948 §2.3) toward peers of UDP-encapsulated SAs, so a NAT on the way keeps its mapping: every
 * 20 s, strongSwan's default (charon.keep_alive), well inside the shortest UDP mapping timeouts NATs use (~30 s).
 */
export const NAT_KEEPALIVE_INTERVAL_MS = 20_000;

const enum PeerUp {
  Never = 0,
  Up = 1,
  Down = 2,
}

/** What the glue tells the health driver. */
export interface IpsecHealthSink {
  /** The IKE SA came up (a child installed) or died (DPD, Delete, lifetime, failed setup). */
  peerState(onramp: number, up: boolean, reason: string): void;
}

export class IpsecOnrampTransport implements OnrampTransport<IpsecOnrampConfig>, IkeSink {
  readonly type = 'ipsec';
  readonly data: IpsecTransport;
  readonly engine: IkeEngine;
  private readonly state = new Uint8Array(PORT_SPACE);
  private readonly addedAt = new Float64Array(PORT_SPACE);
  private health: IpsecHealthSink | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private keepalives: NodeJS.Timeout | null = null;
  private isOpen = false;

  constructor(
    private readonly host: TransportHost,
    underlay: Underlay,
  ) {
    this.data = new IpsecTransport(host, underlay);
    this.engine = new IkeEngine(this, { random: (n) => randomBytes(n) });
  }

  /** Where peer up/down goes (the Edge's health driver, set once it exists). */
  setHealth(sink: IpsecHealthSink): void {
    this.health = sink;
  }

  open(): void {
    if (this.isOpen) return;
    this.data.open();
    this.data.onIke(this.onIke);
    this.isOpen = true;
    this.keepalives = setInterval(this.sendKeepalives, NAT_KEEPALIVE_INTERVAL_MS);
    this.schedule();
  }

  close(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.data.onIke(null);
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.keepalives !== null) clearInterval(this.keepalives);
    this.timer = this.keepalives = null;
    this.timerAt = Infinity;
    this.data.close();
  }

  tuns(): TunDevice[] {
    return this.data.tuns();
  }

  routes(): string[] {
    return this.data.routes();
  }

  deliver(batch: PacketBatch, i: number, port: number, now: number): void {
    this.data.deliver(batch, i, port, now);
  }

  // --- onramps (control plane) ----------------------------------------------------------------------------

  add(o: IpsecOnrampConfig, id: number): void {
    const peer = toIkePeerConfig(o, id);
    this.data.add({ type: 'ipsec', name: o.name, local: peer.localAddress, mtu: o.ipsec.mtu }, id);
    try {
      this.engine.addPeer(peer);
    } catch (e) {
      this.data.remove(id);
      throw new Error(`onramp ${o.name}: ${(e as Error).message}`);
    }
    this.state[id] = PeerUp.Never;
    this.addedAt[id] = performance.now();
    this.schedule();
  }

  update(o: IpsecOnrampConfig, id: number): void {
    const peer = toIkePeerConfig(o, id);
    this.data.update({ type: 'ipsec', name: o.name, local: peer.localAddress, mtu: o.ipsec.mtu }, id);
    this.engine.updatePeer(peer, performance.now());
    this.schedule();
  }

  remove(id: number): void {
    this.guard(() => this.engine.removePeer(id, performance.now()));
    this.data.remove(id);
    this.state[id] = PeerUp.Never;
    this.schedule();
  }

  /** The onramp's tunnel MTU in force (for the pipeline's MSS clamp). */
  mtuOf(id: number): number {
    return this.data.mtuOf(id);
  }

  /**
   * Health evidence, looked at once a second: undefined for a port that is not an IPsec onramp; else whether its
   * IKE SA is up (with IPSEC_SETUP_GRACE_MS for one that was never up).
   */
  alive(id: number, now: number): boolean | undefined {
    if (!this.data.serves(id)) return undefined;
    const s = this.state[id] as PeerUp;
    if (s === PeerUp.Up) return true;
    return s === PeerUp.Never && now - this.addedAt[id] < IPSEC_SETUP_GRACE_MS;
  }

  // --- status (control plane) -----------------------------------------------------------------------------

  ikeStatus(): IkeSaStatus[] {
    return this.engine.status();
  }

  espStatus(): EspSaCounters[] {
    return this.data.status().sas.map((s) => ({
      onramp: s.onramp,
      spiIn: spiText(s.spiIn),
      spiOut: spiText(s.spiOut),
      packetsIn: s.inPackets,
      bytesIn: s.inBytes,
      packetsOut: s.outPackets,
      bytesOut: s.outBytes,
      replayDrops: s.replayDrops,
      icvFailures: s.icvFailures,
    }));
  }

  /** Drops by reason: IKE (the engine's) and ESP (the data path's), for the API's stats. */
  drops(): { ike: Record<string, number>; esp: Record<string, number> } {
    return { ike: nonZero(this.engine.drops, IKE_DROP_NAMES), esp: this.data.status().drops };
  }

  /** drops(), the engine throws the guard caught, and the half-open SAs now (GET /v1/stats's `ipsecDrops`). */
  dropStats(): IpsecDropStats {
    return { ...this.drops(), engineErrors: this.host.counters[EdgeCounter.IpsecEngineError], halfOpen: this.engine.halfOpenCount };
  }

  // --- IkeSink ----------------------------------------------------------------------------------------------

  sendIke(onramp: number, message: Uint8Array, localPort: number, remoteAddress: number, remotePort: number): void {
    this.data.sendIke(onramp, message, localPort, remoteAddress, remotePort);
  }

  installChild(sa: ChildSa): void {
    this.data.installChild(sa);
  }

  removeChild(onramp: number, inboundSpi: number): void {
    this.data.removeChild(onramp, inboundSpi);
  }

  childUsage(onramp: number, inboundSpi: number): ChildSaUsage | null {
    return this.data.childUsage(onramp, inboundSpi);
  }

  peerState(onramp: number, up: boolean, reason: string): void {
    this.state[onramp] = up ? PeerUp.Up : PeerUp.Down;
    this.host.log.info({ onramp, up, reason }, up ? 'IPsec peer up' : 'IPsec peer down');
    this.health?.peerState(onramp, up, reason);
  }

  // --- IKE datagrams and the timer ----------------------------------------------------------------------------

  private readonly onIke = (message: Uint8Array, path: IkeDatagramPath, now: number): void => {
    this.guard(() => {
      const drop = this.engine.receive(message, path.localAddress, path.localPort, path.remoteAddress, path.remotePort, now);
      if (drop !== IkeDrop.None && this.host.log.isLevelEnabled?.('debug')) this.host.log.debug({ drop: IKE_DROP_NAMES[drop] }, 'IKE message dropped');
    });
    this.schedule();
  };

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    if (!this.isOpen) return;
    this.guard(() => this.engine.poll(performance.now()));
    this.schedule();
  };

  private readonly sendKeepalives = (): void => {
    this.engine.natPeers((onramp, address, port) => this.data.sendNatKeepalive(onramp, address, port));
  };

  /** One timer at the engine's next deadline (re-armed only when that moved earlier, or after it fired). */
  private schedule(): void {
    if (!this.isOpen) return;
    const at = this.engine.nextDeadline();
    if (!Number.isFinite(at) || at >= this.timerAt) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now())));
  }

  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.host.counters[EdgeCounter.IpsecEngineError]++;
      this.host.log.error({ err: (e as Error).message }, 'IKE engine error (counted, the message dropped)');
    }
  }
}

function spiText(spi: number): string {
  return (spi >>> 0).toString(16).padStart(8, '0');
}
