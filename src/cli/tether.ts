#!/usr/bin/env node
/**
 * The `tether` command line.
 *
 *   tether run --config FILE     the daemon: the data plane on real interfaces (docs/UNDERLAY.md), in the
 *                                current network namespace; JSON logs (pino) on stdout; SIGTERM/SIGINT stop it.
 *                                Once the store holds a configuration it wins over the file (the differences are
 *                                logged as a warning); --config-wins makes the file replace it.
 *
 * Exit codes: 0 after a clean stop, 2 for a bad configuration (the message names file, line and key), 1 when
 * the edge cannot start (not root, no /dev/net/tun, an `ip` command refused).
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { ConfigError, loadConfig, type TetherConfig } from '../config/index.js';
import { openStore, startControlPlane, storeDiffersWarning, type ControlPlane } from '../daemon/control.js';
import { registerClientCommands } from './api-client.js';
import { Edge } from '../daemon/edge.js';
import { laneCountProblem } from '../common/lanes.js';

const EXIT_OK = 0;
const EXIT_START_FAILED = 1;
const EXIT_BAD_CONFIG = 2;

/** Printed when `tether run` has no --config: the daemon has no built-in topology to fall back on. */
const NO_CONFIG_MESSAGE = 'tether run needs --config FILE (see docs/CONFIG.md; docs/examples/tether.yaml is a complete example)';

/** Reads and validates the file; prints the problems and exits 2 on a bad one (or none given). */
function readConfig(path: string | undefined): { cfg: TetherConfig; source: string } {
  if (path === undefined) {
    process.stderr.write(`tether: ${NO_CONFIG_MESSAGE}\n`);
    process.exit(EXIT_BAD_CONFIG);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    process.stderr.write(`tether: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    process.exit(EXIT_BAD_CONFIG);
  }
  try {
    return { cfg: loadConfig(text, path), source: path };
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`tether: bad configuration:\n${e.message}\n`);
      process.exit(EXIT_BAD_CONFIG);
    }
    throw e;
  }
}

/** Every file tether creates (token, store and its WAL/SHM, flow log) is private to its user: 0600 / 0700. */
const PRIVATE_UMASK = 0o077;

async function run(opts: { config?: string; api?: boolean; configWins?: boolean; offload?: boolean; gro?: boolean; lanes?: string }): Promise<void> {
  process.umask(PRIVATE_UMASK);
  const { cfg: fileCfg, source } = readConfig(opts.config);
  // The YAML seeds an empty store; afterwards the store (changed through the API) is what runs.
  let cfg = fileCfg;
  let opened: ReturnType<typeof openStore> | null = null;
  if (opts.api !== false) {
    try {
      opened = openStore(fileCfg, { configWins: opts.configWins === true });
      cfg = opened.config;
    } catch (e) {
      process.stderr.write(`tether: cannot open the configuration store ${fileCfg.store.path}: ${(e as Error).message}\n`);
      process.exit(EXIT_START_FAILED);
    }
  }
  // Synchronous destination: every line is out before process.exit().
  const log: Logger = pino({ level: cfg.log.level, base: { pid: process.pid } }, pino.destination({ dest: 1, sync: true }));
  log.info({ config: source, store: opened ? fileCfg.store.path : null, seeded: opened?.seeded ?? false, replaced: opened?.replaced ?? false }, 'configuration loaded');
  const differs = opened === null ? null : storeDiffersWarning(opened, source);
  if (differs !== null) log.warn({ config: source, store: fileCfg.store.path, differences: differs.differences }, differs.message);
  let edge: Edge;
  // `kill -USR1 PID` writes the counters to the log, for when the API is not reachable (status null until the edge
  // is built). Listened for from here on: a SIGUSR1 nobody listens for starts Node's inspector, and one sent as soon
  // as "lanes running" or "API listening" is logged (a test's first look) must be answered, not lost.
  let statusOf: (() => ReturnType<Edge['status']>) | null = null;
  process.on('SIGUSR1', () => log.info({ status: statusOf === null ? null : statusOf() }, 'status'));
  const lanes = opts.lanes === undefined ? cfg.daemon.lanes : Number(opts.lanes);
  const lanesProblem = laneCountProblem(lanes);
  if (lanesProblem !== null) {
    process.stderr.write(`tether: --lanes: ${lanesProblem}\n`);
    process.exit(EXIT_BAD_CONFIG);
  }
  try {
    // --no-offload overrides daemon.offload; otherwise the configuration decides.
    edge = new Edge({ config: cfg, log, startHealth: false, ...(opts.offload === false ? { offload: false } : {}), gro: opts.gro !== false, lanes });
    statusOf = () => edge.status();
    edge.start();
    await edge.lanesReady();
    log.info({ lanes }, 'lanes running');
  } catch (e) {
    log.fatal({ err: (e as Error).message }, 'tether could not start');
    process.exit(EXIT_START_FAILED);
  }
  let control: ControlPlane | null = null;
  if (opened !== null) {
    try {
      control = await startControlPlane(edge, opened.store, cfg, log);
    } catch (e) {
      log.fatal({ err: (e as Error).message }, 'the API could not start');
      edge.stop();
      process.exit(EXIT_START_FAILED);
    }
  }
  // Health probes start once the API is up (its start blocks the event loop; late replies would count as lost).
  edge.startHealth();
  const shutdown = (signal: string): void => {
    log.info({ signal }, 'shutting down');
    const stopped = control ? control.close() : Promise.resolve();
    stopped.catch((e: Error) => log.warn({ err: e.message }, 'control plane close')).finally(() => {
      try {
        edge.stop();
      } finally {
        process.exit(EXIT_OK);
      }
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

async function labCommand(action: 'up' | 'down' | 'status' | 'demo', opts: { prefix?: string; edge?: boolean; ipsecSite?: boolean }): Promise<void> {
  const lab = await import('../lab/index.js');
  const prefix = opts.prefix;
  try {
    if (action === 'up') {
      await lab.ensureLabTools();
      const info = await lab.labUp({ prefix, startEdge: opts.edge !== false, ipsecSite: opts.ipsecSite === true });
      const namespaces = opts.ipsecSite === true ? [...info.names.namespaces, ...info.names.ipsecNamespaces] : info.names.namespaces;
      console.log(JSON.stringify({ prefix: info.prefix, namespaces, config: info.configFile, edgeLog: info.edgeLog ?? null }, null, 2));
    } else if (action === 'down') {
      await lab.labDown({ prefix });
    } else if (action === 'status') {
      console.log(JSON.stringify(await lab.labStatus({ prefix }), null, 2));
    } else {
      const { runLabDemo } = await import('../lab/demo.js');
      process.exitCode = (await runLabDemo({ prefix, print: (line) => console.log(line) })) ? EXIT_OK : 1;
    }
  } catch (e) {
    console.error(`tether lab ${action}: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}

function main(argv: string[]): void {
  const program = new Command();
  program.name('tether').description('Edge router with Automatic Return Routing for sites with overlapping address spaces');
  program
    .command('run')
    .description('run the edge in this network namespace (root)')
    .option('-c, --config <file>', 'YAML configuration (docs/CONFIG.md); required')
    .option('--no-api', 'no REST API, store, metrics or dashboard (the data plane only)')
    .option('--config-wins', 'the file replaces the configuration in the store (validated like tether config import)')
    .option('--lanes <n>', 'worker threads with a pipeline and a queue of every egress and interconnect TUN each (docs/ARCHITECTURE.md "Lanes"; default: daemon.lanes of the configuration, 1)')
    .option('--no-offload', 'open the egress and interconnect TUNs without TSO/USO offloads (docs/UNDERLAY.md "Super-packets")')
    .option('--no-gro', 'write TCP segments to those TUNs one by one, not coalesced into super-packets (docs/PERFORMANCE.md "TUN offloads")')
    .action(run);
  const lab = program.command('lab').description('the network-namespace lab: overlapping WireGuard sites (one with a primary and a backup tunnel), a GRE site, a data center, the Internet (root; docs/LAB.md)');
  const prefixOption = '-p, --prefix <prefix>';
  const prefixHelp = 'name prefix of the lab\'s namespaces (default tt)';
  lab.command('up').description('build the lab and start the edge').option(prefixOption, prefixHelp).option('--no-edge', 'build the network only')
    .option('--ipsec-site', 'also build site-d, the strongSwan IPsec site, with its ipsec onramp (strongSwan dials the edge)').action((o) => labCommand('up', o));
  lab.command('down').description('remove the lab').option(prefixOption, prefixHelp).action((o) => labCommand('down', o));
  lab.command('status').description('what exists and runs').option(prefixOption, prefixHelp).action((o) => labCommand('status', o));
  lab.command('demo').description('the main job: overlapping sites with ARR on, then off, and what each site got back').option(prefixOption, prefixHelp).action((o) => labCommand('demo', o));
  registerClientCommands(program);
  void program.parseAsync(argv);
}

main(process.argv);
