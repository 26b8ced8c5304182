/** Every fuzz target, by name (the order `npm run fuzz` runs them in). */
import type { TargetFactory } from '../harness.js';
import { inspectTarget } from './inspect.js';
import { pipelineTarget } from './pipeline.js';
import { greTarget } from './gre.js';
import { wireguardTarget } from './wireguard.js';
import { configTarget } from './config.js';
import { apiTarget } from './api.js';
import { ikeTarget } from './ike.js';
import { ikeEngineTarget } from './ike-engine.js';
import { espTarget } from './esp.js';
import { dnsTarget, httpHostTarget, tlsSniTarget } from './gateway.js';
import { captureFilterTarget } from './capture-filter.js';

export const TARGETS: ReadonlyMap<string, TargetFactory> = new Map<string, TargetFactory>([
  ['wire/inspect', inspectTarget],
  ['dataplane/pipeline', pipelineTarget],
  ['onramp/gre', greTarget],
  ['onramp/wireguard', wireguardTarget],
  ['onramp/ike', ikeTarget],
  ['onramp/ike-engine', ikeEngineTarget],
  ['onramp/esp', espTarget],
  ['gateway/tls-sni', tlsSniTarget],
  ['gateway/http-host', httpHostTarget],
  ['gateway/dns', dnsTarget],
  ['wire/capture-filter', captureFilterTarget],
  ['config/yaml', configTarget],
  ['control/api', apiTarget],
]);
