/**
 * The control plane over an in-process pipeline, for API and browser tests: the lab's default
 * configuration, a store in a temporary directory, buildApi with the flow routes (and metrics).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApi } from '../../src/control/api.js';
import { registerFlowRoutes } from '../../src/control/api-flows.js';
import { LiveConfig } from '../../src/control/apply.js';
import { assignIds, toPipelineConfig, type ConfigIds, type TetherConfig } from '../../src/config/index.js';
import { defaultConfig } from '../../src/lab/config.js';
import { createMetrics, NameBook, type EdgeStatus, type IpsecDropStats } from '../../src/control/metrics.js';
import { ConfigStore } from '../../src/control/store.js';
import type { OtherLanes } from '../../src/control/lane-view.js';
import { PipelineRig } from './pipeline-rig.js';

export interface ApiRig {
  app: FastifyInstance;
  edge: PipelineRig;
  store: ConfigStore;
  cfg: TetherConfig;
  ids: ConfigIds;
  /** A temporary directory, removed by close(). */
  dir: string;
  /** app.inject with the token, as every client sends it. */
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/** Builds (does not listen): call app.ready() / app.listen(); `extend` may register more routes first. */
export function apiRig(opts: {
  token: string;
  metrics?: boolean;
  prefix?: string;
  extend?: (app: FastifyInstance) => void;
  /** The configuration (default: the lab's). */
  config?: TetherConfig;
  /** The edge's IPsec status (made up by the test: test/support/ipsec-status.ts). */
  ipsec?: () => Pick<EdgeStatus, 'ipsec' | 'esp'>;
  /** The API's clock (rate limits), for the fuzzer's many requests a second. */
  now?: () => number;
  /** The edge's IPsec drops (GET /v1/stats's `ipsecDrops`). */
  ipsecDrops?: () => IpsecDropStats;
  /** Lanes other than this pipeline's (daemon.lanes > 1): listings, flows by id, /v1/stats and /metrics cover them. */
  lanes?: OtherLanes;
  /** The pipeline is lane `index` of `count` (its NAT slice). */
  lane?: { index: number; count: number };
}): ApiRig {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix ?? 'tether-api-'));
  const cfg = opts.config ?? defaultConfig();
  const ids = assignIds(cfg);
  const edge = new PipelineRig({ ...toPipelineConfig(cfg, ids), ...(opts.lane !== undefined ? { lane: opts.lane } : {}) });
  const store = ConfigStore.open(join(dir, 'tether.db'));
  store.seedFrom(cfg);
  const names = new NameBook(edge.pipeline, cfg, ids);
  const app = buildApi({ store, edge: new LiveConfig(edge.pipeline, cfg, ids), token: opts.token, now: opts.now });
  opts.extend?.(app);
  registerFlowRoutes(app, {
    pipeline: edge.pipeline,
    names,
    config: () => store.load(),
    now: () => edge.now,
    metrics: opts.metrics ? createMetrics({ pipeline: edge.pipeline, names, ...(opts.lanes !== undefined ? { lanes: () => opts.lanes!.counters() } : {}) }) : undefined,
    ...(opts.lanes !== undefined ? { lanes: opts.lanes } : {}),
    ...(opts.ipsec !== undefined ? { ipsec: opts.ipsec } : {}),
    ...(opts.ipsecDrops !== undefined ? { ipsecDrops: opts.ipsecDrops } : {}),
  });
  return {
    app,
    edge,
    store,
    cfg,
    ids,
    dir,
    inject: (options) => app.inject({ ...options, headers: { authorization: `Bearer ${opts.token}`, ...options.headers } }),
    close: async () => {
      const closing = app.close();
      app.server.closeAllConnections(); // keep-alive sockets (a browser's, fetch's) would hold close() for up to a minute
      await closing;
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
