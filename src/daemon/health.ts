/**
 * Tunnel health in the running edge (docs/HEALTH.md): drives the pipeline's pure HealthEngine on the monotonic
 * clock, the loop src/health/health.ts's header draws:
 *
 *   one timer at min(engine.nextDeadline(), next WireGuard look) ─ poll(now) ─ buildProbe ─ a preallocated batch,
 *     next hop = the onramp ─ the edge's deliver (the transport encapsulates it like any packet routed there)
 *   the pipeline, per packet: replies to the probes and the site's probes (forwardLocal) ─ the engine
 *   every second: WireGuard session age ─ observe(alive)
 *   every TRAFFIC_LOOK_INTERVAL_MS (while some onramp is probed): the pipeline's per-onramp packet counts, with
 *     lanes every lane's (HealthHost.lanes) ─ traffic(): an onramp that was sent traffic and returned nothing for
 *     SILENCE_PROBE_MS is probed at once
 *   transitions ─ pipeline.setOnrampHealth (route penalty, up/down for ARR) ─ one log line each
 *
 * WireGuard evidence: a session is alive while its last handshake is younger than Reject-After-Time (180 s,
 * whitepaper section 6.1: after that the session's keys may not be used); a peer that never completed one is
 * measured from when it was added, so a new or idle peer gets the same 180 s as a session would (an idle site
 * whose session lapsed then counts as failing, which is what the issue asks: the tunnel carries nothing).
 *
 * Time: the engine, the pipeline and WireGuard's handshake times are all on the monotonic clock (performance.now()).
 */
import { performance } from 'node:perf_hooks';
import { PacketBatch } from '../common/packet-batch.js';
import { PORT_INTERNET } from '../common/ids.js';
import { Drop } from '../common/drop-reasons.js';
import { toHealthSpec, type OnrampConfig } from '../config/index.js';
import type { OnrampHealthView } from '../control/apply.js';
import type { OnrampHealthSample } from '../control/metrics.js';
import type { Pipeline } from '../dataplane/pipeline.js';
import { DOWN_CONSECUTIVE_FAILURES, buildProbe, priorityPenalty, type HealthSpec, type HealthState, type Probe } from '../health/index.js';
import { REJECT_AFTER_TIME_MS } from '../onramp/wireguard/constants.js';
import { inspect } from '../wire/inspect.js';
import { PacketInfo } from '../wire/packet-info.js';
import type { EdgeLogger } from './transports/transport.js';

/** How often WireGuard session ages are looked at (ms): one sample per second, like a probe at the mid rate. */
export const WIREGUARD_LOOK_INTERVAL_MS = 1_000;
/**
 * How often the per-onramp packet counts are looked at for silence (ms): a quarter of SILENCE_PROBE_MS, so a
 * silent onramp's probe goes out at most this late. A look costs one map walk over the probed onramps.
 */
export const TRAFFIC_LOOK_INTERVAL_MS = 25;
/** Probes sent per deliver call; more in one poll go in further rounds. */
const PROBE_BATCH = 64;
/** setTimeout's largest delay (a signed 32-bit millisecond count). */
const MAX_TIMER_MS = 0x7fffffff;

/** Is a WireGuard session alive: its last handshake (or, without one, the peer's addition) younger than Reject-After-Time? */
export function wireGuardAlive(lastHandshakeAt: number, addedAt: number, now: number): boolean {
  return now - Math.max(lastHandshakeAt, addedAt) < REJECT_AFTER_TIME_MS;
}

/** Does the edge send probes for this spec (HealthEngine's default: probes when a target is given)? */
function isProbed(spec: HealthSpec): boolean {
  return (spec.mode ?? (spec.target !== undefined ? 'probe' : 'passive')) === 'probe';
}

export interface HealthHost {
  readonly pipeline: Pipeline;
  readonly log: EdgeLogger;
  /** Sends the batch's packets into their next hops (nextHop set per packet): the edge's deliver and flush. */
  send(batch: PacketBatch): void;
  /** A WireGuard onramp's last handshake (Unix ms, -Infinity when none); undefined for other onramps. */
  lastHandshakeAt(onramp: number): number | undefined;
  /** An IPsec onramp's IKE SA up (true), dead or never up past its grace (false); undefined for other onramps. */
  ipsecAlive?(onramp: number, now: number): boolean | undefined;
  isRunning(): boolean;
  /** Hears every transition after it is applied to this pipeline (lanes: lane 0 passes it to the other lanes' pipelines). */
  onState?(onramp: number, state: HealthState): void;
  /**
   * Lane 0 with lanes: the other lanes' per-onramp packet counts (lanes.ts LaneTraffic, at most a publish period
   * old), added to this pipeline's for silence: an onramp whose traffic another lane reads or writes is not silent.
   */
  lanes?: { sent(onramp: number): number; received(onramp: number): number };
}

interface Checked {
  name: string;
  spec: HealthSpec;
  specText: string;
  /** Wall ms when the onramp was added (WireGuard's grace for a peer that never handshook). */
  addedAt: number;
  /** The edge sends probes (mode 'probe'): its traffic is looked at for silence. */
  probed: boolean;
  transitions: number;
}

/** Health counters and state per onramp, for the metrics. */
export type OnrampHealthMetrics = OnrampHealthSample;

export class EdgeHealth {
  private readonly checked = new Map<number, Checked>();
  private readonly batch = new PacketBatch(PROBE_BATCH);
  private readonly info = new PacketInfo();
  private readonly probes: Probe[] = [];
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private nextLookAt = 0;
  private nextTrafficLookAt = 0;
  /** Checked onramps the edge probes. */
  private probedCount = 0;
  private started = false;
  /** pipeline.counters.healthEvidence as of the last round. */
  private evidenceSeen = 0;

  constructor(private readonly host: HealthHost) {}

  private get engine() {
    return this.host.pipeline.health;
  }

  /** Adds or updates an onramp's health check (idempotent: a live change and a restart of its transport agree). */
  set(id: number, onramp: OnrampConfig, now = performance.now()): void {
    const spec: HealthSpec = toHealthSpec(onramp);
    const text = JSON.stringify(spec);
    const have = this.checked.get(id);
    if (have === undefined) {
      this.engine.add(id, spec, now);
      this.checked.set(id, { name: onramp.name, spec, specText: text, addedAt: now, transitions: 0, probed: isProbed(spec) });
      if (isProbed(spec)) this.probedCount++;
    } else {
      have.name = onramp.name;
      if (have.specText !== text) {
        if (have.spec.mode === spec.mode) this.engine.update(id, spec, now);
        else this.restart(id, spec, now);
      }
      have.spec = spec;
      have.specText = text;
      if (have.probed !== isProbed(spec)) this.probedCount += have.probed ? -1 : 1;
      have.probed = isProbed(spec);
    }
    this.schedule();
  }

  /**
   * Another kind of evidence (probes, the site's probes, passive): the old state says nothing about the new checks
   * (and a down onramp turned passive would never see a success again), so the onramp starts over healthy.
   */
  private restart(id: number, spec: HealthSpec, now: number): void {
    const was = this.engine.status(id)?.state ?? 'healthy';
    this.engine.remove(id);
    this.engine.add(id, spec, now);
    if (was !== 'healthy') this.transition(id, was, 'healthy', 'reconfigured');
  }

  remove(id: number): void {
    this.engine.remove(id);
    if (this.checked.get(id)?.probed === true) this.probedCount--;
    this.checked.delete(id);
  }

  has(id: number): boolean {
    return this.checked.has(id);
  }

  /**
   * A tunnel's own verdict, given at once (IPsec: dead-peer detection found the peer gone after its
   * retransmissions, or the IKE SA was deleted): down counts as the three failed samples of the down rule, since
   * the tunnel already confirmed it; up is one success (it counts where successes do: reverse and passive checks).
   */
  tunnelState(id: number, up: boolean, now = performance.now()): void {
    if (!this.checked.has(id)) return;
    const samples = up ? 1 : DOWN_CONSECUTIVE_FAILURES;
    for (let k = 0; k < samples; k++) this.engine.observe(id, up, now);
    for (const e of this.engine.takeEvents()) this.transition(e.onramp, e.from, e.to, e.reason);
  }

  /**
   * Starts the timer. The first time, every check starts over at `now`: nothing has been judged yet, and the time
   * between building the edge and starting it (opening devices, the control plane) must not count as missed probes.
   */
  start(now = performance.now()): void {
    if (!this.started) {
      this.started = true;
      for (const [id, c] of this.checked) {
        this.engine.remove(id);
        this.engine.add(id, c.spec, now);
      }
    }
    this.schedule();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  /** The API's view of one onramp (since as an ISO time), or undefined when it is not checked. */
  view(id: number): OnrampHealthView | undefined {
    const s = this.engine.status(id);
    if (s === undefined) return undefined;
    // The engine's clock is monotonic; people read wall time.
    const since = new Date(Date.now() - (performance.now() - s.since)).toISOString();
    return { state: s.state, loss: s.loss, rtt_ms: s.rttMs === null ? null : Math.round(s.rttMs * 1000) / 1000, since, penalty: priorityPenalty(s.state) };
  }

  /** Every checked onramp's state (control plane: a lane that applied a new configuration is told them all again). */
  states(): Array<[number, HealthState]> {
    const out: Array<[number, HealthState]> = [];
    for (const id of this.checked.keys()) {
      const s = this.engine.status(id);
      if (s !== undefined) out.push([id, s.state]);
    }
    return out;
  }

  metrics(): OnrampHealthMetrics[] {
    const out: OnrampHealthMetrics[] = [];
    for (const [id, c] of this.checked) {
      const v = this.view(id);
      const k = this.engine.counters(id);
      if (v === undefined || k === undefined) continue;
      out.push({ ...v, onramp: id, probesSent: k.probesSent, probesLost: k.timeouts, repliesMatched: k.repliesMatched, siteProbesAnswered: k.siteProbesAnswered, transitions: c.transitions });
    }
    return out;
  }

  /**
   * After each batch: when the pipeline handed the engine evidence (a reply, a site probe), a round runs in the
   * next event-loop turn, so re-probes go out and transitions are logged and applied at once (several batches in
   * one turn share it).
   */
  afterPackets(): void {
    const seen = this.host.pipeline.counters.healthEvidence;
    if (seen === this.evidenceSeen) return;
    this.evidenceSeen = seen;
    if (this.timerAt <= performance.now() || !this.host.isRunning()) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = performance.now();
    this.timer = setTimeout(this.onTimer, 0);
  }

  /** One round: probes due, WireGuard evidence, transitions. The timer calls it; tests may too. */
  run(now: number): void {
    const engine = this.engine;
    if (now >= this.nextLookAt) {
      this.nextLookAt = now + WIREGUARD_LOOK_INTERVAL_MS;
      for (const [id, c] of this.checked) {
        const last = this.host.lastHandshakeAt(id);
        if (last !== undefined) engine.observe(id, wireGuardAlive(last, c.addedAt, now), now);
        const ipsec = this.host.ipsecAlive?.(id, now);
        if (ipsec !== undefined) engine.observe(id, ipsec, now);
      }
    }
    if (this.probedCount > 0 && now >= this.nextTrafficLookAt) {
      this.nextTrafficLookAt = now + TRAFFIC_LOOK_INTERVAL_MS;
      const { txPackets, rxPackets } = this.host.pipeline.counters;
      const lanes = this.host.lanes;
      for (const [id, c] of this.checked) {
        if (!c.probed) continue;
        if (lanes === undefined) engine.traffic(id, txPackets[id], rxPackets[id], now);
        else engine.traffic(id, txPackets[id] + lanes.sent(id), rxPackets[id] + lanes.received(id), now);
      }
    }
    const probes = this.probes;
    probes.length = 0;
    engine.poll(now, probes);
    this.sendProbes(probes);
    for (const e of engine.takeEvents()) this.transition(e.onramp, e.from, e.to, e.reason);
  }

  private sendProbes(probes: Probe[]): void {
    const batch = this.batch;
    for (let k = 0; k < probes.length; k += PROBE_BATCH) {
      batch.clear();
      for (let q = k; q < Math.min(probes.length, k + PROBE_BATCH); q++) {
        const p = probes[q];
        const bytes = buildProbe(p);
        const i = batch.push(bytes, 0, bytes.length, PORT_INTERNET);
        if (i < 0) break;
        // The transports read what the pipeline records for a packet it forwards: record the probe the same way.
        if (inspect(batch.data, batch.offset[i], batch.length[i], this.info) !== Drop.None) continue;
        batch.record(i, this.info);
        batch.nextHop[i] = p.onramp;
        batch.drop[i] = Drop.None;
      }
      if (batch.count > 0) this.host.send(batch);
    }
  }

  /** One transition: the route penalty and up/down in the pipeline, one log line. */
  private transition(onramp: number, from: HealthState, to: HealthState, reason: string): void {
    const c = this.checked.get(onramp);
    if (c === undefined) return;
    c.transitions++;
    const pipeline = this.host.pipeline;
    if (pipeline.ports.configured[onramp] === 1) pipeline.setOnrampHealth(onramp, to);
    this.host.onState?.(onramp, to);
    const s = this.engine.status(onramp);
    this.host.log.info({ onramp: c.name, from, to, reason, loss: s?.loss ?? null, rtt_ms: s?.rttMs ?? null, penalty: priorityPenalty(to) }, 'onramp health');
  }

  private schedule(): void {
    if (!this.host.isRunning() || this.checked.size === 0) return;
    const at = Math.min(this.engine.nextDeadline(), this.nextLookAt, this.probedCount > 0 ? this.nextTrafficLookAt : Infinity);
    if (at >= this.timerAt) return; // the pending timer fires first and reschedules
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now())));
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    if (!this.host.isRunning()) return;
    this.run(performance.now());
    this.schedule();
  };
}
