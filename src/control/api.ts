/**
 * The REST API (docs/API.md): sites, onramps, routes, the egress pool, firewall rules, gateway rules and DLP
 * profiles, and WireGuard devices,
 * read and changed live. Fastify, JSON Schema (TypeBox) on every route, OpenAPI at /openapi.json.
 *
 *   request ─ api-guard.ts: rate limit, Host, Origin, token (every call) ─ JSON Schema (types, unknown keys)
 *           ─ store.update: the whole resulting configuration through validateConfig (references,
 *             duplicates, conflicting routes), ids pinned, no new file path, EdgeLike.checkConfig, COMMIT
 *           ─ EdgeLike.applyConfig (live, established flows kept) ─ response, secrets "(redacted)"
 *
 * Decisions:
 *  - Bodies are the configuration file's own objects (snake_case, same keys, same defaults), so a body is
 *    exactly what one list item of the YAML file holds, and errors carry validateConfig's messages.
 *  - Resources are addressed by id, or by name for kinds that have names (`/v1/onramps/branch-a-wg`); an
 *    all-digit reference is an id. Sites, onramps and firewall rules use their pinned data-plane id; routes
 *    and WireGuard devices a store id (in responses as `id`, never part of the configuration).
 *  - Status codes: 400 when the request itself is wrong (types, unknown keys, a bad value, a reference to
 *    nothing, a duplicate or conflicting entry introduced by the body); 409 when the change is fine in itself
 *    but would break other resources (deleting a site an onramp uses, renaming an onramp a route names) or
 *    cannot be applied to the running edge; 404 unknown id; 401 token; 413 body too large; 421 Host, 403 Origin,
 *    429 rate limit (api-guard.ts).
 *  - Secrets: responses go through redact(); a body may send "(redacted)" back for a secret to keep the
 *    stored one (GET, edit, PUT works). Problem messages never echo secret values.
 *  - Every call needs the token, reads included (api.open_reads opens loopback reads); file paths are set
 *    only in the YAML file (api-guard.ts says why).
 */
import { Type, type TSchema } from '@sinclair/typebox';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  ConfigError,
  describe,
  EgressSchema as EgressConfigSchema,
  DlpProfileSchema,
  FirewallRuleSchema,
  FirewallSchema,
  gatewayRuleIds,
  GatewayRuleSchema,
  GatewaySchema,
  inputSchema,
  OnrampSchema as OnrampConfigSchema,
  REDACTED,
  redact,
  RouteSchema as RouteConfigSchema,
  SiteSchema as SiteConfigSchema,
  TetherConfigSchema,
  WireGuardDeviceSchema,
  type ApiConfig,
  type TetherConfig,
} from '../config/index.js';
import { GuardError, keepRunningPaths, refuseNewPaths, registerGuard } from './api-guard.js';
import { ApplyError, type ApplyResult, type EdgeLike } from './apply.js';
import { JsonBodyError, parseJsonBody } from './json-body.js';
import { configListPath, docToConfig, hasConfigId, NotFoundError, replaceDoc, type ConfigStore, type EntryKind, type StoreDoc, type StoredEntry } from './store.js';

export { loadOrCreateToken, tokenMatches } from './token.js';

declare module 'fastify' {
  /** OpenAPI fields read by the /openapi.json builder (onRoute hook below). */
  interface FastifySchema {
    summary?: string;
    tags?: string[];
    hide?: boolean;
  }
}

export const API_BODY_LIMIT = 256 * 1024;
// ─── Schemas ─────────────────────────────────────────────────────────────────────────────────────────

// Every configuration schema is the configuration's own (src/config/schema.ts), as input: what a body may
// leave out or write shorter is what the YAML file may. The store then runs the same validator as the loader.
const closed = { additionalProperties: false };
const SiteSchema = inputSchema(SiteConfigSchema);
const DeviceSchema = inputSchema(WireGuardDeviceSchema);
const OnrampSchema = inputSchema(OnrampConfigSchema);
const RouteSchema = inputSchema(RouteConfigSchema);
const RuleSchema = inputSchema(FirewallRuleSchema);
const EgressSchema = inputSchema(EgressConfigSchema);
const FirewallSettingsSchema = Type.Pick(FirewallSchema, ['default_action'], { additionalProperties: false, $id: 'FirewallSettings' });
const GatewayRuleInput = inputSchema(GatewayRuleSchema);
const DlpProfileInput = inputSchema(DlpProfileSchema);
const GatewaySettingsSchema = inputSchema(Type.Pick(GatewaySchema, ['classify', 'dlp_scan_bytes'], { additionalProperties: false, $id: 'GatewaySettings' }));
/** What the running edge adds to an onramp's configuration in responses (docs/API.md, "Onramp health"). */
const OnrampHealthSchema = Type.Object({
  state: Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('down')]),
  loss: Type.Number({ description: 'failed / all health samples of the last five minutes, 0..1' }),
  rtt_ms: Type.Union([Type.Number(), Type.Null()], { description: 'smoothed probe round-trip time; null before the first reply or without probes' }),
  since: Type.String({ description: 'when the state was entered (ISO 8601)' }),
  penalty: Type.Integer({ description: 'priority added to routes over this onramp: 0, 500000 (degraded), 1000000 (down)' }),
}, { description: 'the running edge\'s tunnel health (absent when the API runs without an edge)' });
/** What the running edge adds to a route in responses: its onramp's health penalty. */
const RouteLiveFields = {
  penalty: Type.Optional(Type.Integer({ description: "the next-hop onramp's health penalty (0 when healthy)" })),
  effective_priority: Type.Optional(Type.Integer({ description: 'priority + penalty: what the routing table compares' })),
};
const ConfigSchema = inputSchema(TetherConfigSchema);

const Problem = Type.Object({
  path: Type.String({ description: 'the field, relative to the request body ("" = the body itself)' }),
  message: Type.String(),
  resource: Type.Optional(Type.String({ description: 'when the problem lies in another resource: its URL' })),
});
const ErrorSchema = Type.Object({ error: Type.String(), problems: Type.Array(Problem) }, { $id: 'Error' });
const RefParams = Type.Object({ ref: Type.String({ description: 'numeric id, or name for kinds that have names' }) }, closed);
const BeforeQuery = Type.Object({ before: Type.Optional(Type.String({ description: 'insert before this entry (id or name) instead of at the end' })) }, closed);

/**
 * A schema for JSON merge patches (RFC 7396) of `s`: every property optional and nullable (null removes it),
 * nested objects likewise.
 */
function patchSchema(s: TSchema): TSchema {
  const o = s as Record<string, unknown>;
  if (o.type === 'object' && o.properties !== undefined) {
    const props: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o.properties as Record<string, TSchema>)) props[k] = { anyOf: [patchSchema(v), { type: 'null' }] };
    const { required: _required, $id: _id, ...rest } = o;
    return { ...rest, properties: props } as unknown as TSchema;
  }
  if (Array.isArray(o.anyOf)) return { ...o, anyOf: (o.anyOf as TSchema[]).map(patchSchema) } as unknown as TSchema;
  return s;
}

function withId(s: TSchema): TSchema {
  const o = s as Record<string, unknown>;
  const { $id: _id, ...rest } = o;
  return { ...rest, properties: { id: Type.Integer({ description: 'the resource id' }), ...(o.properties as object) }, required: ['id', ...((o.required as string[] | undefined) ?? [])] } as unknown as TSchema;
}

/** The response item of a kind: onramps gain `health`, routes `penalty` and `effective_priority` (from the running edge). */
function withLive(kind: EntryKind, s: TSchema): TSchema {
  const o = s as unknown as { properties: object };
  if (kind === 'onramps') return { ...(s as object), properties: { ...o.properties, health: Type.Optional(OnrampHealthSchema) } } as unknown as TSchema;
  if (kind === 'routes') return { ...(s as object), properties: { ...o.properties, ...RouteLiveFields } } as unknown as TSchema;
  return s;
}

// ─── Resources ───────────────────────────────────────────────────────────────────────────────────────

interface ResourceKind {
  kind: EntryKind;
  url: string;
  what: string;
  schema: TSchema;
  named: boolean;
}

const RESOURCES: ResourceKind[] = [
  { kind: 'sites', url: '/v1/sites', what: 'site', schema: SiteSchema, named: true },
  { kind: 'wireguard_devices', url: '/v1/wireguard/devices', what: 'WireGuard device', schema: DeviceSchema, named: true },
  { kind: 'onramps', url: '/v1/onramps', what: 'onramp', schema: OnrampSchema, named: true },
  { kind: 'routes', url: '/v1/routes', what: 'route', schema: RouteSchema, named: false },
  { kind: 'firewall_rules', url: '/v1/firewall/rules', what: 'firewall rule', schema: RuleSchema, named: true },
];
const URL_OF: Record<EntryKind, string> = Object.fromEntries(RESOURCES.map((r) => [r.kind, r.url])) as Record<EntryKind, string>;

type Obj = Record<string, unknown>;
function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7396 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return patch;
  const out: Obj = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Secret fields by kind: "(redacted)" in a body keeps the stored value. */
function restoreSecrets(kind: EntryKind, value: Obj, stored: Obj | undefined): void {
  if (stored === undefined) return;
  if (kind === 'wireguard_devices' && value.private_key === REDACTED && typeof stored.private_key === 'string') value.private_key = stored.private_key;
  if (kind === 'onramps' && isObj(value.wireguard) && value.wireguard.preshared_key === REDACTED && isObj(stored.wireguard) && typeof stored.wireguard.preshared_key === 'string') {
    value.wireguard.preshared_key = stored.wireguard.preshared_key;
  }
  if (kind === 'onramps' && isObj(value.ipsec) && value.ipsec.psk === REDACTED && isObj(stored.ipsec) && typeof stored.ipsec.psk === 'string') {
    value.ipsec.psk = stored.ipsec.psk;
  }
}

/** The redacted entries of a document, with their ids, per kind. */
function redactedEntries(doc: StoreDoc): Record<EntryKind, Obj[]> {
  const red = redact(docToConfig(doc));
  const lists: Record<EntryKind, unknown[]> = {
    sites: red.sites, wireguard_devices: red.wireguard_devices, onramps: red.onramps, routes: red.routes, firewall_rules: red.firewall.rules,
  };
  const out = {} as Record<EntryKind, Obj[]>;
  for (const r of RESOURCES) {
    out[r.kind] = (doc.entries[r.kind] as StoredEntry[]).map((e, i) => ({ id: e.id, ...(lists[r.kind][i] as Obj) }));
  }
  return out;
}

// ─── Errors ──────────────────────────────────────────────────────────────────────────────────────────

export interface ApiProblem {
  path: string;
  message: string;
  resource?: string;
}

class HttpError extends Error {
  constructor(readonly statusCode: number, message: string, readonly problems: ApiProblem[] = []) {
    super(message);
  }
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  data?: unknown;
}

/** Ajv errors → one problem per field ("must be integer or string, got true"). */
function schemaProblems(errors: AjvError[]): ApiProblem[] {
  const byPath = new Map<string, { types: string[]; messages: string[]; data: unknown }>();
  const add = (path: string, data: unknown): { types: string[]; messages: string[]; data: unknown } => {
    let e = byPath.get(path);
    if (e === undefined) byPath.set(path, (e = { types: [], messages: [], data }));
    return e;
  };
  for (const err of errors) {
    const path = err.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc === '' ? seg : `${acc}.${seg}`), '');
    if (err.keyword === 'additionalProperties') {
      const key = String(err.params.additionalProperty);
      add(path === '' ? key : `${path}.${key}`, undefined).messages.push(`unknown key "${key}"`);
    } else if (err.keyword === 'required') {
      const key = String(err.params.missingProperty);
      add(path === '' ? key : `${path}.${key}`, undefined).messages.push('is required');
    } else if (err.keyword === 'type') {
      if (err.params.type !== 'null') add(path, err.data).types.push(String(err.params.type));
    } else if (err.keyword === 'const') {
      add(path, err.data).types.push(JSON.stringify(err.params.allowedValue));
    } else if (err.keyword === 'anyOf') {
      add(path, err.data);
    } else {
      add(path, err.data).messages.push(err.message ?? err.keyword);
    }
  }
  const out: ApiProblem[] = [];
  for (const [path, e] of byPath) {
    const secret = /(private|preshared)_key$/.test(path);
    const got = secret || e.data === undefined ? '' : `, got ${describe(e.data)}`;
    if (e.messages.length > 0) out.push({ path, message: `${[...new Set(e.messages)].join('; ')}${e.types.length > 0 || e.messages.some((m) => m.startsWith('must')) ? got : ''}` });
    else if (e.types.length > 0) out.push({ path, message: `must be ${[...new Set(e.types)].join(' or ')}${got}` });
    else out.push({ path, message: `has the wrong shape${got}` });
  }
  return out;
}

const LIST_PATH_RE = /^(sites|wireguard_devices|onramps|routes|firewall\.rules)\[(\d+)\](?:\.(.*))?$/;

/**
 * validateConfig's problems → API problems. `edited` is the path of what the request changed ("routes[3]",
 * "egress", "" for the whole configuration); problems inside it get paths relative to the body, the others
 * name the resource they lie in. Returns whether every problem lies in the edited part.
 */
function configProblems(err: ConfigError, edited: string | null, doc: StoreDoc): { problems: ApiProblem[]; own: boolean } {
  let own = true;
  const problems = err.problems.map((p): ApiProblem => {
    if (edited === '') return { path: p.path, message: p.message };
    if (edited !== null && (p.path === edited || p.path.startsWith(`${edited}.`) || p.path.startsWith(`${edited}[`))) {
      const rest = p.path.slice(edited.length);
      return { path: rest.startsWith('.') ? rest.slice(1) : rest, message: p.message };
    }
    own = false;
    const m = LIST_PATH_RE.exec(p.path);
    if (m !== null) {
      const kind = (m[1] === 'firewall.rules' ? 'firewall_rules' : m[1]) as EntryKind;
      const entry = (doc.entries[kind] as StoredEntry[])[Number(m[2])];
      if (entry !== undefined) return { path: m[3] ?? '', message: p.message, resource: `${URL_OF[kind]}/${entry.id}` };
    }
    return { path: p.path, message: p.message, resource: '/v1/config' };
  });
  return { problems, own };
}

// ─── The application ─────────────────────────────────────────────────────────────────────────────────

export interface ApiOptions {
  store: ConfigStore;
  /** The running edge; absent: changes are stored only (applied at the next start). */
  edge?: EdgeLike;
  /** Bearer token for every call (loadOrCreateToken). */
  token: string;
  /** The running configuration's api section (open_reads, listen, allowed_hosts, rate_limit); default: the store's. */
  settings?: ApiConfig;
  /** PEM key and certificate: the API speaks HTTPS (api.tls). */
  https?: { key: string | Buffer; cert: string | Buffer };
  /** Monotonic milliseconds for the rate limit (default performance.now()). */
  now?: () => number;
  /** pino logger (the daemon's); absent: no logging. */
  logger?: FastifyBaseLogger;
  /** Largest request body in bytes (default 256 KiB). */
  bodyLimit?: number;
}

/** Builds the API (not listening: the caller calls listen({ host: api.listen, port: api.port }), or inject). */
export function buildApi(options: ApiOptions): FastifyInstance {
  const { store, edge, token } = options;
  const app = Fastify({
    ...(options.https !== undefined ? { https: options.https } : {}),
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: options.bodyLimit ?? API_BODY_LIMIT,
    // Unknown keys are errors and types are never coerced ("yes" is not true): the configuration's own rules.
    // Formats (prefixes, keys, …) are checked by the configuration's validator, with its messages.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: true, verbose: true, validateFormats: false } },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  // Responses are written as they are (schemas document them); fast-json-stringify would drop or coerce fields.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  const openapi: { paths: Record<string, Record<string, unknown>> } = { paths: {} };
  app.addHook('onRoute', (route) => {
    const schema = route.schema as Record<string, unknown> | undefined;
    if (schema === undefined || schema.hide === true) return;
    const path = route.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (method === 'HEAD') continue;
      const op: Record<string, unknown> = { summary: schema.summary, tags: schema.tags };
      const params: unknown[] = [];
      for (const [where, key] of [['path', 'params'], ['query', 'querystring']] as const) {
        const s = schema[key] as { properties?: Record<string, unknown>; required?: string[] } | undefined;
        for (const [name, p] of Object.entries(s?.properties ?? {})) params.push({ name, in: where, required: where === 'path' || (s?.required ?? []).includes(name), schema: p });
      }
      if (params.length > 0) op.parameters = params;
      if (schema.body !== undefined) op.requestBody = { required: true, content: { [method === 'PATCH' ? 'application/merge-patch+json' : 'application/json']: { schema: schema.body } } };
      const responses: Record<string, unknown> = {};
      for (const [code, s] of Object.entries((schema.response ?? {}) as Record<string, unknown>)) {
        responses[code] = code === '204' ? { description: 'done' } : { description: code.startsWith('2') ? 'ok' : 'error', content: { 'application/json': { schema: s } } };
      }
      op.responses = responses;
      if (route.config?.public !== true) op.security = [{ bearer: [] }];
      (openapi.paths[path] ??= {})[method.toLowerCase()] = op;
    }
  });

  // JSON bodies, and merge patches (application/merge-patch+json): parsed by parseJsonBody, whose refusals (empty,
  // not JSON, a __proto__ or constructor.prototype key) name the problem and where it is.
  const jsonParser = (_req: FastifyRequest, body: string | Buffer, done: (err: Error | null, value?: unknown) => void): void => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (e) {
      done(e as Error);
    }
  };
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonParser);
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, jsonParser);

  registerGuard(app, { token, settings: options.settings ?? store.load().api, https: options.https !== undefined, now: options.now });

  app.setErrorHandler((error: FastifyError | HttpError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof HttpError) return reply.code(error.statusCode).send({ error: error.message, problems: error.problems });
    if (error instanceof JsonBodyError) return reply.code(400).send({ error: error.message, problems: [{ path: error.path, message: error.detail }] });
    if (error instanceof GuardError) return reply.code(error.statusCode).headers(error.headers).send({ error: error.message, problems: [{ path: error.path, message: error.detail }] });
    const fe = error as FastifyError & { validation?: AjvError[]; validationContext?: string };
    if (fe.validation !== undefined) {
      const where = fe.validationContext === 'body' ? 'the request body' : `the ${fe.validationContext ?? 'request'}`;
      return reply.code(400).send({ error: `${where} does not match the schema`, problems: schemaProblems(fe.validation) });
    }
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: 'request body too large', problems: [{ path: '', message: `larger than ${options.bodyLimit ?? API_BODY_LIMIT} bytes` }] });
    }
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply.code(fe.statusCode).send({ error: fe.message, problems: [] });
    }
    req.log.error({ err: { message: error.message, name: error.name } }, 'API request failed');
    return reply.code(500).send({ error: 'internal error', problems: [] });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, problems: [] });
  });

  /**
   * Runs a change through the store and applies it; maps every failure to its status. In two turns of the
   * event loop: first the change is made and validated (store.prepare: nothing written, nothing applied);
   * then, after the packets waiting meanwhile have been forwarded, the store writes it and the running edge
   * applies it in one transaction (store.commit) — so forwarding pauses only for the write and the edge's part.
   */
  const change = async <R>(reply: FastifyReply, edited: (doc: StoreDoc) => string | null, mutate: (doc: StoreDoc) => R, deleting = false): Promise<{ result: R; doc: StoreDoc; applied: ApplyResult | undefined }> => {
    let editedPath: string | null = null;
    let mutated: StoreDoc | undefined;
    let applied: ApplyResult | undefined;
    let previous: TetherConfig | undefined;
    try {
      // The edge applies the change inside the store's transaction: when it cannot (ApplyError: a TUN, an
      // address, a port), the store rolls back too, and both stay exactly as they were.
      const tracked = (doc: StoreDoc): R => {
        const result = mutate(doc);
        editedPath = edited(doc);
        mutated = doc;
        return result;
      };
      const check = (next: TetherConfig, prev: TetherConfig): void => {
        refuseNewPaths(next, prev);
        edge?.checkConfig?.(next, prev);
      };
      const prepared = store.prepare(tracked, check);
      await new Promise((resolve) => setImmediate(resolve));
      // Prepared again inside the transaction when another change was committed meanwhile.
      const r = store.commit(prepared, tracked, check, edge === undefined ? undefined : (next, prev) => {
        applied = edge.applyConfig(next);
        previous = prev;
      });
      if (applied !== undefined) {
        if (applied.restartRequired.length > 0) void reply.header('x-tether-restart-required', applied.restartRequired.join(','));
        reply.log.info({ applied }, 'configuration changed');
      }
      return { result: r.result, doc: store.read(), applied };
    } catch (e) {
      // Applied, but the commit itself failed: the edge goes back to what the store still holds.
      if (applied !== undefined && previous !== undefined && edge !== undefined) edge.applyConfig(previous);
      if (e instanceof NotFoundError) throw new HttpError(404, `no ${e.kind.replace(/_/g, ' ').replace(/s$/, '')} ${JSON.stringify(String(e.id))}`);
      if (e instanceof ConfigError) {
        const { problems, own } = configProblems(e, editedPath, mutated ?? store.read());
        if (deleting || !own) throw new HttpError(409, 'the change conflicts with other resources', problems);
        throw new HttpError(400, 'invalid configuration', problems);
      }
      if (e instanceof ApplyError) {
        const doc = mutated ?? store.read();
        const [problem] = configProblems(new ConfigError('edge', [{ path: e.path, line: 0, column: 0, message: e.message }]), editedPath, doc).problems;
        throw new HttpError(409, 'the change cannot be applied to the running edge', [problem]);
      }
      throw e;
    }
  };

  const resolve = (res: ResourceKind, doc: StoreDoc, ref: string): number => {
    const list = doc.entries[res.kind] as StoredEntry[];
    const index = /^\d+$/.test(ref)
      ? list.findIndex((e) => e.id === Number(ref))
      : res.named ? list.findIndex((e) => (e.value as { name?: string }).name === ref) : -1;
    if (index < 0) throw new HttpError(404, `no ${res.what} ${JSON.stringify(ref)}`, [{ path: 'ref', message: `no ${res.what} with ${res.named ? 'this id or name' : 'this id'}` }]);
    return index;
  };

  /** An entry as the API answers it: onramps with the running edge's health, routes with their penalty. */
  const live = (kind: EntryKind, entry: Obj): Obj => {
    if (edge?.onrampHealth === undefined) return entry;
    if (kind === 'onramps') {
      const health = edge.onrampHealth(entry.name as string);
      return health === undefined ? entry : { ...entry, health };
    }
    if (kind === 'routes' && isObj(entry.next_hop) && typeof entry.next_hop.onramp === 'string') {
      const penalty = edge.onrampHealth(entry.next_hop.onramp)?.penalty ?? 0;
      return { ...entry, penalty, effective_priority: (entry.priority as number) + penalty };
    }
    return entry;
  };
  const entriesOf = (doc: StoreDoc, kind: EntryKind): Obj[] => redactedEntries(doc)[kind].map((e) => live(kind, e));

  /** One entry, redacted: only that entry goes through redact() (a change's answer with 1,000 onramps). */
  const entryOf = (doc: StoreDoc, kind: EntryKind, id: number): Obj => {
    const entry = (doc.entries[kind] as StoredEntry[]).find((e) => e.id === id);
    if (entry === undefined) throw new HttpError(500, 'entry vanished');
    const alone = { ...doc, entries: { sites: [], wireguard_devices: [], onramps: [], routes: [], firewall_rules: [], [kind]: [entry] } } as StoreDoc;
    return live(kind, redactedEntries(alone)[kind][0]);
  };

  /** The body as a configuration value: `id` checked against the entry's id and removed where not a config field. */
  const bodyValue = (res: ResourceKind, body: Obj, id: number | undefined): Obj => {
    const value = structuredClone(body);
    if (value.id !== undefined && id !== undefined && value.id !== id) {
      throw new HttpError(400, 'invalid configuration', [{ path: 'id', message: `cannot be changed (this ${res.what} is ${id})` }]);
    }
    if (!hasConfigId(res.kind)) delete value.id;
    else if (id !== undefined) value.id = id;
    return value;
  };

  const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema, 413: ErrorSchema };
  /** Routes and devices have no id in the configuration, but a body may carry the one GET returned. */
  const withRefId = (s: TSchema): TSchema => {
    const props = (s as unknown as { properties: object }).properties;
    return Object.hasOwn(props, 'id') ? s : ({ ...(s as object), properties: { id: Type.Integer({ description: 'ignored when equal to the resource id' }), ...props } } as unknown as TSchema);
  };

  for (const res of RESOURCES) {
    const tags = [res.url.split('/').slice(2).join(' ')];
    const item = withLive(res.kind, withId(res.schema));
    const body = withRefId(res.schema);
    const { $id: _drop, ...bodyPlain } = body as unknown as Obj;

    app.get(res.url, { schema: { summary: `List ${res.what}s`, tags, response: { 200: Type.Array(item), ...errors } } }, async () => entriesOf(store.read(), res.kind));

    app.get<{ Params: { ref: string } }>(`${res.url}/:ref`, { schema: { summary: `One ${res.what}`, tags, params: RefParams, response: { 200: item, ...errors } } }, async (req) => {
      const doc = store.read();
      const index = resolve(res, doc, req.params.ref);
      return entriesOf(doc, res.kind)[index];
    });

    app.post<{ Body: Obj; Querystring: { before?: string } }>(res.url, {
      schema: { summary: `Create a ${res.what}`, tags, body: bodyPlain, querystring: BeforeQuery, response: { 201: item, ...errors } },
    }, async (req, reply) => {
      const path = configListPath(res.kind);
      let index = -1;
      const out = await change(reply, () => `${path}[${index}]`, (doc) => {
        const list = doc.entries[res.kind] as StoredEntry[];
        const value = bodyValue(res, req.body, undefined);
        if (!hasConfigId(res.kind)) delete value.id;
        const entry = { id: 0, value } as unknown as StoredEntry;
        if (req.query.before === undefined) list.push(entry);
        else list.splice(resolve(res, doc, req.query.before), 0, entry);
        index = list.indexOf(entry);
        return index;
      });
      const created = (out.doc.entries[res.kind] as StoredEntry[])[out.result];
      return reply.code(201).header('location', `${res.url}/${created.id}`).send(entryOf(out.doc, res.kind, created.id));
    });

    const update = async (req: FastifyRequest<{ Params: { ref: string }; Body: Obj }>, reply: FastifyReply, patch: boolean): Promise<Obj> => {
      const path = configListPath(res.kind);
      let index = -1;
      let id = -1;
      const out = await change(reply, () => `${path}[${index}]`, (doc) => {
        const list = doc.entries[res.kind] as StoredEntry[];
        index = resolve(res, doc, req.params.ref);
        const current = list[index];
        id = current.id;
        const stored = current.value as unknown as Obj;
        const merged = patch ? mergePatch(stored, req.body) as Obj : req.body;
        const value = bodyValue(res, merged, id);
        restoreSecrets(res.kind, value, stored);
        list[index] = { id, value } as unknown as StoredEntry;
      });
      return entryOf(out.doc, res.kind, id);
    };

    app.put<{ Params: { ref: string }; Body: Obj }>(`${res.url}/:ref`, {
      schema: { summary: `Replace a ${res.what}`, tags, params: RefParams, body: bodyPlain, response: { 200: item, ...errors } },
    }, async (req, reply) => update(req, reply, false));

    app.patch<{ Params: { ref: string }; Body: Obj }>(`${res.url}/:ref`, {
      schema: { summary: `Change some fields of a ${res.what} (JSON merge patch: null removes a field)`, tags, params: RefParams, body: patchSchema(bodyPlain as unknown as TSchema), response: { 200: item, ...errors } },
    }, async (req, reply) => update(req, reply, true));

    app.delete<{ Params: { ref: string } }>(`${res.url}/:ref`, {
      schema: { summary: `Delete a ${res.what}`, tags, params: RefParams, response: { 204: Type.Null(), ...errors } },
    }, async (req, reply) => {
      await change(reply, () => null, (doc) => {
        const list = doc.entries[res.kind] as StoredEntry[];
        list.splice(resolve(res, doc, req.params.ref), 1);
      }, true);
      return reply.code(204).send();
    });
  }

  // The egress pool: a single object, absent when there is no Internet egress.
  const egressTags = ['egress'];
  const egressOut = (doc: StoreDoc): Obj => {
    const e = docToConfig(doc).egress;
    if (e === undefined) throw new HttpError(404, 'no egress pool is configured', [{ path: '', message: 'PUT /v1/egress to create one' }]);
    return e as unknown as Obj;
  };
  app.get('/v1/egress', { schema: { summary: 'The Internet egress pool', tags: egressTags, response: { 200: EgressSchema, ...errors } } }, async () => egressOut(store.read()));
  const { $id: _e, ...egressBody } = EgressSchema as unknown as Obj;
  app.put<{ Body: Obj }>('/v1/egress', { schema: { summary: 'Create or replace the egress pool (takes effect at the next start)', tags: egressTags, body: egressBody, response: { 200: EgressSchema, ...errors } } }, async (req, reply) => {
    const out = await change(reply, () => 'egress', (doc) => { doc.settings.egress = req.body as never; });
    return egressOut(out.doc);
  });
  app.patch<{ Body: Obj }>('/v1/egress', { schema: { summary: 'Change fields of the egress pool (merge patch)', tags: egressTags, body: patchSchema(egressBody as unknown as TSchema), response: { 200: EgressSchema, ...errors } } }, async (req, reply) => {
    const out = await change(reply, () => 'egress', (doc) => {
      if (doc.settings.egress === undefined) throw new HttpError(404, 'no egress pool is configured', [{ path: '', message: 'PUT /v1/egress to create one' }]);
      doc.settings.egress = mergePatch(doc.settings.egress, req.body) as never;
    });
    return egressOut(out.doc);
  });
  app.delete('/v1/egress', { schema: { summary: 'Remove the egress pool (no route may lead to the Internet)', tags: egressTags, response: { 204: Type.Null(), ...errors } } }, async (_req, reply) => {
    await change(reply, () => null, (doc) => {
      if (doc.settings.egress === undefined) throw new HttpError(404, 'no egress pool is configured');
      delete doc.settings.egress;
    }, true);
    return reply.code(204).send();
  });

  // Firewall settings (the rules are /v1/firewall/rules).
  const { $id: _f, ...fwBody } = FirewallSettingsSchema as unknown as Obj;
  app.get('/v1/firewall', { schema: { summary: 'Firewall settings', tags: ['firewall'], response: { 200: FirewallSettingsSchema, ...errors } } }, async () => ({ default_action: store.read().settings.default_action }));
  app.put<{ Body: { default_action: 'allow' | 'deny' } }>('/v1/firewall', { schema: { summary: 'Change the default action (new flows)', tags: ['firewall'], body: fwBody, response: { 200: FirewallSettingsSchema, ...errors } } }, async (req, reply) => {
    const out = await change(reply, () => 'firewall', (doc) => { doc.settings.default_action = req.body.default_action; });
    return { default_action: out.doc.settings.default_action };
  });

  // The gateway (docs/POLICY.md). The store keeps the section as one settings blob; its rules and DLP profiles are
  // resources over that blob: rules addressed by id or name, profiles by name. A rule without an id in the blob
  // (written in YAML without one) gets assignIds' id; the first change through the API pins every rule's id into
  // the blob, so URLs, metrics and flow logs keep naming the same rule. A new rule takes the highest id + 1.
  const gatewayLists = [
    { key: 'rules', url: '/v1/gateway/rules', what: 'gateway rule', schema: GatewayRuleInput, ids: true },
    { key: 'dlp_profiles', url: '/v1/gateway/dlp-profiles', what: 'DLP profile', schema: DlpProfileInput, ids: false },
  ] as const;
  type GatewayList = (typeof gatewayLists)[number];
  /** The list as stored (read only), with ids for rules. */
  const gatewayItems = (doc: StoreDoc, l: GatewayList): Obj[] => {
    const list = ((doc.settings.gateway as Obj | undefined)?.[l.key] ?? []) as Obj[];
    if (!l.ids) return list.map((x) => ({ ...x }));
    const ids = gatewayRuleIds(list as Array<{ id?: number }>);
    return list.map((x, i) => ({ ...x, id: ids[i] }));
  };
  /** The list inside a document being changed, every rule's id pinned. */
  const gatewayListFor = (doc: StoreDoc, l: GatewayList): Obj[] => {
    const g = { ...((doc.settings.gateway ?? {}) as Obj) };
    const list = ((g[l.key] ?? []) as Obj[]).map((x) => ({ ...x }));
    if (l.ids) gatewayRuleIds(list as Array<{ id?: number }>).forEach((id, i) => { list[i].id = id; });
    g[l.key] = list;
    doc.settings.gateway = g as never;
    return list;
  };
  const gatewayIndex = (l: GatewayList, items: Obj[], ref: string): number => {
    const index = l.ids && /^\d+$/.test(ref) ? items.findIndex((x) => x.id === Number(ref)) : items.findIndex((x) => x.name === ref);
    if (index < 0) throw new HttpError(404, `no ${l.what} ${JSON.stringify(ref)}`, [{ path: 'ref', message: `no ${l.what} with ${l.ids ? 'this id or name' : 'this name'}` }]);
    return index;
  };
  for (const l of gatewayLists) {
    const tags = ['gateway'];
    const { $id: _g, ...body } = l.schema as unknown as Obj;
    const item = l.ids ? withId(l.schema) : l.schema;
    const answer = (doc: StoreDoc, key: unknown): Obj => {
      const items = gatewayItems(doc, l);
      return items[gatewayIndex(l, items, String(key))];
    };
    app.get(l.url, { schema: { summary: `List ${l.what}s`, tags, response: { 200: Type.Array(item), ...errors } } }, async () => gatewayItems(store.read(), l));
    app.get<{ Params: { ref: string } }>(`${l.url}/:ref`, { schema: { summary: `One ${l.what}`, tags, params: RefParams, response: { 200: item, ...errors } } }, async (req) => answer(store.read(), req.params.ref));
    app.post<{ Body: Obj; Querystring: { before?: string } }>(l.url, {
      schema: { summary: `Create a ${l.what}`, tags, body, querystring: BeforeQuery, response: { 201: item, ...errors } },
    }, async (req, reply) => {
      let index = -1;
      const value = structuredClone(req.body);
      const out = await change(reply, () => `gateway.${l.key}[${index}]`, (doc) => {
        const list = gatewayListFor(doc, l);
        if (l.ids && value.id === undefined) value.id = list.reduce((m, x) => Math.max(m, x.id as number), 0) + 1;
        index = req.query.before === undefined ? list.length : gatewayIndex(l, list, req.query.before);
        list.splice(index, 0, value);
      });
      const key = l.ids ? value.id : value.name;
      return reply.code(201).header('location', `${l.url}/${String(key)}`).send(answer(out.doc, key));
    });
    const update = async (req: FastifyRequest<{ Params: { ref: string }; Body: Obj }>, reply: FastifyReply, patch: boolean): Promise<Obj> => {
      let index = -1;
      let key: unknown;
      const out = await change(reply, () => `gateway.${l.key}[${index}]`, (doc) => {
        const list = gatewayListFor(doc, l);
        index = gatewayIndex(l, list, req.params.ref);
        const value = structuredClone(patch ? mergePatch(list[index], req.body) as Obj : req.body);
        if (l.ids) {
          if (value.id !== undefined && value.id !== list[index].id) throw new HttpError(400, 'invalid configuration', [{ path: 'id', message: `cannot be changed (this ${l.what} is ${String(list[index].id)})` }]);
          value.id = list[index].id;
        }
        list[index] = value;
        key = l.ids ? value.id : value.name;
      });
      return answer(out.doc, key);
    };
    app.put<{ Params: { ref: string }; Body: Obj }>(`${l.url}/:ref`, {
      schema: { summary: `Replace a ${l.what}`, tags, params: RefParams, body, response: { 200: item, ...errors } },
    }, async (req, reply) => update(req, reply, false));
    app.patch<{ Params: { ref: string }; Body: Obj }>(`${l.url}/:ref`, {
      schema: { summary: `Change some fields of a ${l.what} (JSON merge patch: null removes a field)`, tags, params: RefParams, body: patchSchema(body as unknown as TSchema), response: { 200: item, ...errors } },
    }, async (req, reply) => update(req, reply, true));
    app.delete<{ Params: { ref: string } }>(`${l.url}/:ref`, {
      schema: { summary: `Delete a ${l.what}`, tags, params: RefParams, response: { 204: Type.Null(), ...errors } },
    }, async (req, reply) => {
      await change(reply, () => null, (doc) => {
        const list = gatewayListFor(doc, l);
        list.splice(gatewayIndex(l, list, req.params.ref), 1);
      }, true);
      return reply.code(204).send();
    });
  }
  // Gateway settings: classify and dlp_scan_bytes (the rules and profiles above are kept).
  const { $id: _gs, ...gwBody } = GatewaySettingsSchema as unknown as Obj;
  const gatewaySettings = (): Obj => {
    const g = store.load().gateway;
    return { classify: g.classify, dlp_scan_bytes: g.dlp_scan_bytes };
  };
  app.get('/v1/gateway', { schema: { summary: 'Gateway settings (classify, DLP scan length)', tags: ['gateway'], response: { 200: GatewaySettingsSchema, ...errors } } }, async () => gatewaySettings());
  app.put<{ Body: Obj }>('/v1/gateway', { schema: { summary: 'Replace the gateway settings (rules and DLP profiles are kept)', tags: ['gateway'], body: gwBody, response: { 200: GatewaySettingsSchema, ...errors } } }, async (req, reply) => {
    await change(reply, () => 'gateway', (doc) => {
      const g: Obj = { ...((doc.settings.gateway ?? {}) as Obj) };
      delete g.classify;
      delete g.dlp_scan_bytes;
      doc.settings.gateway = { ...g, ...structuredClone(req.body) } as never;
    });
    return gatewaySettings();
  });

  // The whole configuration (`tether config export` / `import` over the API).
  app.get('/v1/config', { schema: { summary: 'The whole configuration, secrets redacted', tags: ['config'], response: { 200: ConfigSchema, ...errors } } }, async () => redact(store.load()));
  const { $id: _c, ...configBody } = ConfigSchema as unknown as Obj;
  app.put<{ Body: Obj }>('/v1/config', { schema: { summary: 'Replace the whole configuration (secrets sent as "(redacted)" keep the stored ones, by name)', tags: ['config'], body: configBody, response: { 200: ConfigSchema, ...errors } } }, async (req, reply) => {
    await change(reply, () => '', (doc) => {
      const cfg = structuredClone(req.body) as Partial<TetherConfig> & Obj;
      const byName = <T extends { name?: string }>(list: T[] | undefined, name: string | undefined): T | undefined => list?.find((x) => x.name === name);
      const current = docToConfig(doc);
      for (const d of (cfg.wireguard_devices ?? []) as unknown as Obj[]) restoreSecrets('wireguard_devices', d, byName(current.wireguard_devices, d.name as string) as unknown as Obj | undefined);
      for (const o of (cfg.onramps ?? []) as unknown as Obj[]) restoreSecrets('onramps', o, byName(current.onramps, o.name as string) as unknown as Obj | undefined);
      keepRunningPaths(cfg, current);
      replaceDoc(doc, cfg);
    });
    return redact(store.load());
  });

  app.get('/openapi.json', { schema: { hide: true }, config: { public: true } }, async () => ({
    openapi: '3.1.0',
    info: { title: 'tether API', version: '1', description: 'Live configuration of a tether edge. docs/API.md.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the token in api.token_file' } },
      schemas: Object.fromEntries([SiteSchema, DeviceSchema, OnrampSchema, RouteSchema, RuleSchema, EgressSchema, FirewallSettingsSchema, GatewayRuleInput, DlpProfileInput, GatewaySettingsSchema, ErrorSchema].map((s) => [s.$id, s])),
    },
    paths: openapi.paths,
  }));

  return app;
}
