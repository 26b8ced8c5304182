/**
 * The configuration: one schema (schema.ts), read from YAML (load.ts) or plain values (validate.ts) with
 * the same rules, compiled to the data plane's ids (compile.ts). docs/CONFIG.md documents every key.
 */
export * from './schema.js';
export { ConfigError, describe, type ConfigProblem } from './problems.js';
export { loadConfig } from './load.js';
export { isLoopback, validateConfig } from './validate.js';
export { assignIds, gatewayRuleIds, toGatewaySpec, toHealthSpec, toIkePeerConfig, toOnrampSpec, toPipelineConfig, typeSettings, type ConfigIds, type SecretReader } from './compile.js';
export { redact, REDACTED, stringifyConfig } from './output.js';
export { ConfigIndex, listOf, type EntryChange, type IndexedChange, type ListKind } from './incremental.js';
