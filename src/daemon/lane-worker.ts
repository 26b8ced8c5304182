/**
 * A lane's thread (lanes.ts, docs/ARCHITECTURE.md "Lanes"): an Edge for lane `index` — its own pipeline and NAT
 * slice, its own queue of every egress and interconnect TUN, the handoff rings to and from the other lanes. Logs
 * go to lane 0; its status is sent every LANE_STATUS_INTERVAL_MS, its per-onramp packet counts published every
 * TRAFFIC_LOOK_INTERVAL_MS (for lane 0's health checks: lanes.ts LaneTraffic); configurations lane 0 applied, and
 * the health states lane 0's checks judged, are applied here.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Edge } from './edge.js';
import { LiveEdge } from './live.js';
import { LANE_STATUS_INTERVAL_MS, type LaneMessage, type LaneWorkerData } from './lanes.js';
import { LaneObserver } from './lane-observe.js';
import { TRAFFIC_LOOK_INTERVAL_MS } from './health.js';
import type { EdgeLogger } from './transports/transport.js';

const data = workerData as LaneWorkerData | null;
if (parentPort !== null && data !== null && typeof data === 'object' && 'tetherLane' in data) {
  const port = parentPort;
  const send = (m: LaneMessage): void => port.postMessage(m);
  const log: EdgeLogger = {
    info: (obj, msg) => send({ kind: 'log', level: 'info', obj, msg }),
    warn: (obj, msg) => send({ kind: 'log', level: 'warn', obj, msg }),
    error: (obj, msg) => send({ kind: 'log', level: 'error', obj, msg }),
    debug: () => undefined,
    isLevelEnabled: (level) => level !== 'debug',
  };
  try {
    const edge = new Edge({
      config: data.config,
      log,
      mtu: data.mtu,
      batchSize: data.batchSize,
      offload: data.offload,
      hugePages: data.hugePages,
      busyPollUs: data.busyPollUs,
      countersIntervalMs: 0,
      startHealth: false,
      wiring: data.tetherLane,
    });
    const observer = new LaneObserver(edge, data.config, send);
    const live = new LiveEdge(edge, data.config, (config, ids) => observer.renamed(config, ids));
    edge.start();
    const timer = setInterval(() => {
      send({ kind: 'status', status: edge.status() });
      send({ kind: 'counters', counters: observer.counters() });
    }, LANE_STATUS_INTERVAL_MS);
    // Lane 0's health checks look at every lane's per-onramp packet counts this often (lanes.ts LaneTraffic).
    const traffic = setInterval(() => edge.publishTraffic(), TRAFFIC_LOOK_INTERVAL_MS);
    port.on('message', (m: LaneMessage) => {
      if (m.kind === 'stop') {
        clearInterval(timer);
        clearInterval(traffic);
        observer.close();
        edge.stop();
        port.close();
      } else if (m.kind === 'apply') {
        try {
          live.applyConfig(m.config);
        } catch (e) {
          log.error({ err: (e as Error).message }, 'lane could not apply the configuration lane 0 applied');
        }
      } else if (m.kind === 'health') {
        edge.applyLaneZeroHealth(m.onramp, m.state);
      } else {
        observer.handle(m);
      }
    });
    send({ kind: 'ready' });
  } catch (e) {
    send({ kind: 'failed', error: (e as Error).message });
  }
}
