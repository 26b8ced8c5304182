/**
 * The control plane around a running Edge: the configuration store (seeded from the YAML file when
 * empty, authoritative afterwards), the REST API with the flow routes, Prometheus metrics and the
 * dashboard, and the flow log. `tether run` starts it after the data plane.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApi, loadOrCreateToken } from '../control/api.js';
import { registerFlowRoutes } from '../control/api-flows.js';
import type { EdgeLike } from '../control/apply.js';
import type { TetherConfig } from '../config/index.js';
import { flowLoggerFor, type FlowLogger } from '../control/flow-log.js';
import { registerDashboard } from '../control/dashboard.js';
import { createMetrics, NameBook } from '../control/metrics.js';
import { ConfigStore } from '../control/store.js';
import type { Edge } from './edge.js';
import { LiveEdge } from './live.js';

export interface ControlPlane {
  api: FastifyInstance;
  store: ConfigStore;
  flowLog: FlowLogger | null;
  /** Where the API listens ("http://127.0.0.1:8470"). */
  url: string;
  close(): Promise<void>;
}

/**
 * Opens the store at cfg.store.path and seeds it from `fileConfig` when it is empty; returns the
 * configuration the edge must run (the store's, so a restart restores every change made through
 * the API).
 */
export function openStore(fileConfig: TetherConfig): { store: ConfigStore; config: TetherConfig; seeded: boolean } {
  mkdirSync(dirname(fileConfig.store.path), { recursive: true, mode: 0o700 });
  const store = ConfigStore.open(fileConfig.store.path);
  const seeded = store.seedFrom(fileConfig);
  return { store, config: store.load(), seeded };
}

/** Starts the API (and metrics, flow routes, flow log) for a started edge. */
export async function startControlPlane(edge: Edge, store: ConfigStore, cfg: TetherConfig, log: Logger): Promise<ControlPlane> {
  const pipeline = edge.pipeline;
  const names = new NameBook(pipeline, cfg, edge.ids);
  const flowLog = flowLoggerFor(cfg.log.flow_log, { pipeline, names, onError: (err) => log.warn({ err: err.message }, 'flow log') });
  flowLog?.start();
  // Every change applies to the pipeline and the transports at once; it also renames what metrics, flows and
  // the flow log print.
  const live = new LiveEdge(edge, cfg, (config, ids) => names.update(config, ids));
  const applier: EdgeLike = live;
  const token = loadOrCreateToken(cfg.api.token_file);
  const api = buildApi({ store, edge: applier, token, logger: log as unknown as FastifyBaseLogger });
  const metrics = createMetrics({ pipeline, edge, names, flowLog: flowLog ?? undefined });
  registerFlowRoutes(api, { pipeline, names, config: () => live.config, now: () => performance.now(), metrics });
  registerDashboard(api);
  const address = await api.listen({ host: cfg.api.listen, port: cfg.api.port });
  log.info({ api: address, token_file: cfg.api.token_file, store: cfg.store.path }, 'API listening');
  return {
    api,
    store,
    flowLog,
    url: address,
    close: async () => {
      await api.close();
      await flowLog?.close();
      store.close();
    },
  };
}
