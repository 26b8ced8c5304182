/**
 * The control plane around a running Edge: the configuration store (seeded from the YAML file when
 * empty, authoritative afterwards — the differences logged at start, `--config-wins` to take the file),
 * the REST API with the flow routes, Prometheus metrics and the dashboard, and the flow log. `tether run`
 * starts it after the data plane.
 *
 * File paths (api.token_file, api.tls, log.flow_log, store.path) always come from the file: the API refuses
 * to set them (src/control/api-guard.ts), and at start the file's replace whatever the store holds.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApi, loadOrCreateToken } from '../control/api.js';
import { keepRunningPaths } from '../control/api-guard.js';
import { configDifferences } from '../control/config-diff.js';
import { registerFlowRoutes } from '../control/api-flows.js';
import { registerCaptureRoutes } from '../control/api-captures.js';
import { CaptureHub } from '../control/capture.js';
import type { EdgeLike } from '../control/apply.js';
import type { TetherConfig } from '../config/index.js';
import { flowLoggerFor, type FlowLogger } from '../control/flow-log.js';
import { registerDashboard } from '../control/dashboard.js';
import { createMetrics, NameBook } from '../control/metrics.js';
import { ConfigStore } from '../control/store.js';
import type { Edge } from './edge.js';
import { LiveEdge } from './live.js';
import { laneCaptures, laneFlowLog, laneFlowSource } from './lane-observe.js';

export interface ControlPlane {
  api: FastifyInstance;
  store: ConfigStore;
  flowLog: FlowLogger | null;
  /** Where the API listens ("http://127.0.0.1:8470"). */
  url: string;
  close(): Promise<void>;
}

export interface OpenedStore {
  store: ConfigStore;
  /** What the edge runs: the store's configuration (a restart restores every change made through the API). */
  config: TetherConfig;
  /** The store was empty and now holds the file. */
  seeded: boolean;
  /** --config-wins: the file replaced the store's configuration. */
  replaced: boolean;
  /** How the file differs from the store it did not replace (configDifferences); empty when the same. */
  differences: string[];
}

/**
 * Opens the store at cfg.store.path and seeds it from `fileConfig` when it is empty. A store that already
 * holds a configuration wins, unless `configWins`: then the file replaces it, through the same validation
 * as PUT /v1/config. Either way the file's file paths replace the store's.
 */
export function openStore(fileConfig: TetherConfig, options: { configWins?: boolean } = {}): OpenedStore {
  mkdirSync(dirname(fileConfig.store.path), { recursive: true, mode: 0o700 });
  const store = ConfigStore.open(fileConfig.store.path);
  try {
    const seeded = store.seedFrom(fileConfig);
    let replaced = false;
    let differences: string[] = [];
    if (!seeded && options.configWins === true) {
      store.replaceWith(fileConfig);
      replaced = true;
    } else if (!seeded) {
      store.update((doc) => keepRunningPaths(doc.settings as unknown as Record<string, unknown>, fileConfig, true));
      differences = configDifferences(fileConfig, store.load());
    }
    return { store, config: store.load(), seeded, replaced, differences };
  } catch (e) {
    store.close();
    throw e;
  }
}

/** The warning `tether run` logs when the file differs from the store that runs (null: nothing to say). */
export function storeDiffersWarning(opened: OpenedStore, source: string): { differences: string[]; message: string } | null {
  if (opened.differences.length === 0) return null;
  return {
    differences: opened.differences,
    message: `the configuration store ${opened.store.path} differs from ${source} and is what runs (${opened.differences.join('; ')}); to take the file: tether config import ${source} (live), or restart with tether run --config ${source} --config-wins`,
  };
}

/** Starts the API (and metrics, flow routes, flow log) for a started edge. */
export async function startControlPlane(edge: Edge, store: ConfigStore, cfg: TetherConfig, log: Logger): Promise<ControlPlane> {
  const pipeline = edge.pipeline;
  const names = new NameBook(pipeline, cfg, edge.ids);
  const flowLog = flowLoggerFor(cfg.log.flow_log, { pipeline, names, onError: (err) => log.warn({ err: err.message }, 'flow log') });
  flowLog?.start();
  // Every change applies to the pipeline, the transports and the health checks at once; it also renames what
  // metrics, flows and the flow log print.
  const live = new LiveEdge(edge, cfg, (config, ids) => names.update(config, ids));
  const applier: EdgeLike = live;
  const token = loadOrCreateToken(cfg.api.token_file);
  const tls = cfg.api.tls;
  const https = tls === undefined ? undefined : { cert: readFileSync(tls.cert_file), key: readFileSync(tls.key_file) };
  const api = buildApi({ store, edge: applier, token, settings: cfg.api, https, logger: log as unknown as FastifyBaseLogger });
  // Process metrics (RSS, V8 heap, open descriptors, event-loop lag): what an operator and the soak watch for leaks.
  // With lanes, flows, per-onramp counters and NAT gauges cover every lane (lane-observe.ts).
  const laneHost = edge.otherLanes();
  const lanes = laneHost === null ? undefined : laneFlowSource(laneHost);
  const metrics = createMetrics({ pipeline, edge, names, flowLog: flowLog ?? undefined, processMetrics: true, ...(lanes !== undefined ? { lanes: () => lanes.counters() } : {}) });
  registerFlowRoutes(api, { pipeline, names, config: () => live.config, now: () => performance.now(), metrics, ipsec: () => edge.ipsecStatus(), ipsecDrops: () => edge.ipsecDrops(), kernelDrops: () => edge.kernelDrops(), lanes });
  // Packet captures: the hub installs its tap on the edge's read loops only while a capture runs; with lanes, each
  // lane taps its own and sends its blocks to this hub's file.
  const laneCapture = laneHost === null ? null : laneCaptures(laneHost);
  // Each lane logs its own ended flows; their chunks of whole lines go to this log's destination.
  const flushLanesLog = laneHost !== null && flowLog !== null ? laneFlowLog(laneHost, flowLog) : null;
  const captures = new CaptureHub({
    ...(laneCapture !== null ? { lanes: laneCapture.lanes } : {}),
    pipeline,
    names,
    ids: () => edge.ids,
    attach: (tap) => edge.setCaptureTap(tap),
    attachOuter: (tap) => edge.setOuterCaptureTap(tap),
    config: () => live.config,
  });
  laneCapture?.attach(captures);
  registerCaptureRoutes(api, captures, lanes);
  registerDashboard(api);
  const address = await api.listen({ host: cfg.api.listen, port: cfg.api.port });
  log.info({ api: address, token_file: cfg.api.token_file, store: cfg.store.path, tls: tls !== undefined, open_reads: cfg.api.open_reads }, 'API listening');
  return {
    api,
    store,
    flowLog,
    url: address,
    close: async () => {
      captures.close();
      await api.close();
      // The lanes' last ended flows (held up to their flush period) reach the log before it closes.
      const silent = (await flushLanesLog?.()) ?? [];
      if (silent.length > 0) log.warn({ lanes: silent }, 'flow log: lanes did not flush their last lines before shutdown');
      await flowLog?.close();
      store.close();
    },
  };
}
