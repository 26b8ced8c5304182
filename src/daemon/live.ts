/**
 * Live configuration of a running Edge: the EdgeLike the API (and so `tether config import` and the dashboard)
 * drives. One call applies one validated configuration to the pipeline and the transports together.
 *
 *   next config ─ LiveConfig.applyConfig (ports, routes, firewall) ─ Edge.applyTransports (WireGuard devices
 *   and peers, GRE tunnels, interconnect TUNs) ─┬─ ok: flows of removed onramps end (Pipeline.endFlowsOf),
 *                                               │     health checks follow the onramps (Edge.syncHealth)
 *                                               └─ ApplyError: the pipeline goes back to the previous config,
 *                                                  the transports undid their own steps; the caller (the store)
 *                                                  rolls back its transaction
 *
 * Everything runs synchronously between two packet batches (one JavaScript thread), so no packet ever sees
 * half a change: a removed or re-keyed peer is revoked when the call returns.
 */
import { LiveConfig, type ApplyResult, type EdgeLike, type OnrampHealthView } from '../control/apply.js';
import type { ConfigIds, TetherConfig } from '../config/index.js';
import type { Edge } from './edge.js';

export class LiveEdge implements EdgeLike {
  readonly live: LiveConfig;

  /** `config`: what `edge` runs now; `onApplied` hears every applied configuration (names for metrics and logs). */
  constructor(private readonly edge: Edge, config: TetherConfig, private readonly onApplied?: (config: TetherConfig, ids: ConfigIds) => void) {
    this.live = new LiveConfig(edge.pipeline, config, edge.ids);
  }

  get config(): TetherConfig {
    return this.live.config;
  }

  checkConfig(next: TetherConfig): void {
    this.live.checkConfig(next);
  }

  applyConfig(next: TetherConfig): ApplyResult {
    const previous = this.live.config;
    const result = this.live.applyConfig(next);
    let removedIds: number[];
    try {
      ({ removedIds } = this.edge.applyTransports(next, this.live.ids));
    } catch (e) {
      this.live.applyConfig(previous);
      throw e;
    }
    result.flowsEnded = this.edge.pipeline.endFlowsOf(removedIds);
    this.edge.syncHealth(this.live.config.onramps, this.live.ids.onramps);
    this.edge.appliedToLanes(this.live.config);
    this.onApplied?.(this.live.config, this.live.ids);
    return result;
  }

  onrampHealth(name: string): OnrampHealthView | undefined {
    const id = this.live.ids.onramps.get(name);
    return id === undefined ? undefined : this.edge.onrampHealth(id);
  }
}
