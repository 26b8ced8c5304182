#!/usr/bin/env node
/**
 * The `tether` command line.
 *
 *   tether run [--config FILE]   the daemon: the data plane on real interfaces (docs/UNDERLAY.md), in the
 *                                current network namespace; JSON logs (pino) on stdout; SIGTERM/SIGINT stop it.
 *
 * Exit codes: 0 after a clean stop, 2 for a bad configuration (the message names file, line and key), 1 when
 * the edge cannot start (not root, no /dev/net/tun, an `ip` command refused).
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { ConfigError, defaultConfig, loadConfig, type TetherConfig } from '../control/config.js';
import { Edge } from '../daemon/edge.js';

const EXIT_OK = 0;
const EXIT_START_FAILED = 1;
const EXIT_BAD_CONFIG = 2;

/** Reads and validates the file; prints the problems and exits 2 on a bad one. */
function readConfig(path: string | undefined): { cfg: TetherConfig; source: string } {
  if (path === undefined) return { cfg: defaultConfig(), source: '(built-in lab default; no --config given)' };
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

function run(opts: { config?: string }): void {
  const { cfg, source } = readConfig(opts.config);
  // Synchronous destination: every line is out before process.exit().
  const log: Logger = pino({ level: cfg.log.level, base: { pid: process.pid } }, pino.destination({ dest: 1, sync: true }));
  log.info({ config: source }, opts.config === undefined ? 'no --config: running the lab topology (defaultConfig)' : 'configuration loaded');
  let edge: Edge;
  try {
    edge = new Edge({ config: cfg, log });
    edge.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message }, 'tether could not start');
    process.exit(EXIT_START_FAILED);
  }
  const shutdown = (signal: string): void => {
    log.info({ signal }, 'shutting down');
    try {
      edge.stop();
    } finally {
      process.exit(EXIT_OK);
    }
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

function main(argv: string[]): void {
  const program = new Command();
  program.name('tether').description('Edge router with Automatic Return Routing for sites with overlapping address spaces');
  program
    .command('run')
    .description('run the edge in this network namespace (root)')
    .option('-c, --config <file>', 'YAML configuration (docs/CONFIG.md); without it, the lab topology')
    .action(run);
  program.parse(argv);
}

main(process.argv);
