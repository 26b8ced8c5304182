/**
 * What stands between a request and the API's handlers (docs/API.md, "Authentication"), as one onRequest hook:
 *
 *   request ─ rate limit (token bucket per client address) ─ Host names this API ─ Origin is this API's own
 *           ─ bearer token (every call; reads from loopback only with api.open_reads) ─ the route
 *
 * and the rule that file paths come only from the YAML file (refuseNewPaths, keepRunningPaths).
 *
 * Decisions:
 *  - Reads need the token like writes. Reads show the flow table, the topology and peers' keys; "open on
 *    loopback" let any local user and any web page the operator opens (DNS rebinding: a name that resolves to
 *    the page's server, then to 127.0.0.1) read them. `api.open_reads: true` opens loopback reads again.
 *  - The Host header must name the listen address, `localhost` or a name in `api.allowed_hosts`; with a
 *    wildcard listen address any IP literal passes (rebinding needs a DNS name). Anything else is answered 421
 *    Misdirected Request (RFC 9110 §15.5.20): the request was meant for some other server.
 *  - A browser request whose Origin (RFC 6454 §7) is not this API's own scheme://host:port is refused with 403.
 *    No CORS headers are ever sent, so no other origin can read an answer either.
 *  - The rate limit runs first, so guessing the token costs requests too. Buckets are kept per address and
 *    forgotten once full again; the table is bounded (MAX_CLIENTS).
 *  - Routes registered with `config: { public: true }` (the dashboard's static files, /openapi.json) need no
 *    token: they hold no data, and the page must load to ask for the token; nor does a path with no route (404).
 *    Host, Origin and rate limit still apply to them.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ConfigError, isLoopback, type ApiConfig, type TetherConfig } from '../config/index.js';
import { formatPrefix, parsePrefix } from '../wire/addr.js';
import { tokenMatches } from './token.js';

/** Bounds the bucket table: beyond this many clients, full buckets are forgotten first, then the oldest. */
const MAX_CLIENTS = 4096;
const MS_PER_SECOND = 1000;
const WILDCARDS = new Set(['0.0.0.0', '::']);

/** The API's answer to a request it refuses here: status, message, the header or field at fault. */
export class GuardError extends Error {
  constructor(readonly statusCode: number, message: string, readonly path: string, readonly detail: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

// ─── Rate limit ──────────────────────────────────────────────────────────────────────────────────────

/** One token bucket per client key: `rate` tokens per second up to `burst`; a request takes one. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly rate: number, private readonly burst: number) {}

  /** 0 when the request may go ahead, else the milliseconds until one token is back. */
  take(key: string, now: number): number {
    if (this.rate <= 0) return 0;
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= MAX_CLIENTS) this.prune(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / MS_PER_SECOND);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) * MS_PER_SECOND) / this.rate);
  }

  private prune(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * this.rate) / MS_PER_SECOND >= this.burst) this.buckets.delete(key);
    }
    // Still full: forget the oldest (Map iteration is insertion order).
    for (const key of this.buckets.keys()) {
      if (this.buckets.size < MAX_CLIENTS) break;
      this.buckets.delete(key);
    }
  }
}

// ─── Host and Origin ─────────────────────────────────────────────────────────────────────────────────

/** The host part of a Host header or URL authority ("[::1]:8470" → "::1"), lower case, without a final dot. */
export function hostOf(authority: string): string {
  const a = authority.trim().toLowerCase();
  const host = a.startsWith('[') ? a.slice(1, a.indexOf(']') < 0 ? a.length : a.indexOf(']')) : a.split(':').length === 2 ? a.split(':')[0] : a;
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

/** An IP address literal in canonical text; null for a name. */
function addressLiteral(text: string): string | null {
  if (text.includes('/')) return null;
  const p = parsePrefix(text);
  return p === null ? null : formatPrefix(p);
}

/** Whether `host` (from hostOf) names an API listening on `listen`. */
export function hostAllowed(host: string, listen: string, allowed: readonly string[]): boolean {
  if (host === 'localhost' || allowed.some((h) => h.toLowerCase() === host)) return true;
  const literal = addressLiteral(host);
  if (literal === null) return false;
  return WILDCARDS.has(listen) || literal === addressLiteral(listen);
}

// ─── The hook ────────────────────────────────────────────────────────────────────────────────────────

export interface GuardOptions {
  token: string;
  /** The api section of the running configuration (listen, open_reads, allowed_hosts, rate_limit). */
  settings: Pick<ApiConfig, 'listen' | 'open_reads' | 'allowed_hosts' | 'rate_limit'>;
  /** Whether the API is served over TLS (the scheme of its own origin). */
  https: boolean;
  /** Monotonic milliseconds (default performance.now()). */
  now?: () => number;
}

/** The one POST that only reads (src/control/api-flows.ts). */
export const READ_ONLY_POST = '/v1/explain';
/** Packet captures (api-captures.ts): every call needs the token, api.open_reads or not. */
export const CAPTURES_PATH = '/v1/captures';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No token needed (static files, the OpenAPI document); Host, Origin and rate limit still apply. */
    public?: boolean;
  }
}

/** Registers the guard as the first onRequest hook of `app` (before any route is added). */
export function registerGuard(app: FastifyInstance, options: GuardOptions): void {
  const { token, settings } = options;
  const limiter = new RateLimiter(settings.rate_limit.requests_per_second, settings.rate_limit.burst);
  const now = options.now ?? (() => performance.now());
  const scheme = options.https ? 'https' : 'http';

  app.addHook('onRequest', async (req: FastifyRequest) => {
    const wait = limiter.take(req.socket.remoteAddress ?? '', now());
    if (wait > 0) {
      throw new GuardError(429, 'too many requests from this address', '', `at most ${settings.rate_limit.requests_per_second} per second (bursts of ${settings.rate_limit.burst}); api.rate_limit`, { 'retry-after': String(Math.ceil(wait / MS_PER_SECOND)) });
    }

    const hostHeader = req.headers.host;
    if (hostHeader === undefined || !hostAllowed(hostOf(hostHeader), settings.listen, settings.allowed_hosts)) {
      throw new GuardError(421, 'this API does not answer to that host name', 'Host', `must name the listen address (${settings.listen}) or localhost${settings.allowed_hosts.length > 0 ? ` or ${settings.allowed_hosts.join(', ')}` : ''}; got ${hostHeader === undefined ? 'none' : JSON.stringify(hostHeader)}`);
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `${scheme}://${hostHeader.toLowerCase()}`) {
      throw new GuardError(403, 'cross-origin requests are refused', 'Origin', `must be this API's own origin (${scheme}://${hostHeader}) or absent; got ${JSON.stringify(origin)}`);
    }

    // No such route: the 404 says nothing the OpenAPI document does not.
    if (req.routeOptions.config?.public === true || req.is404) return;
    // Explain is a POST (it takes a packet description) but changes nothing: a read.
    // Captures hold packet payloads (the sites' traffic): they need the token even where reads are open.
    const reading = !req.url.startsWith(CAPTURES_PATH) && (req.method === 'GET' || req.method === 'HEAD' || (req.method === 'POST' && req.url.split('?')[0] === READ_ONLY_POST));
    if (reading && settings.open_reads && isLoopback(req.socket.remoteAddress ?? '')) return;
    const header = req.headers.authorization;
    if (header === undefined) {
      throw new GuardError(401, reading ? 'reads need the API token' : 'this call changes the configuration: it needs the API token', 'Authorization', 'missing; send "Authorization: Bearer <token>" (the token is in api.token_file)');
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m === null || !tokenMatches(m[1], token)) throw new GuardError(401, 'wrong API token', 'Authorization', m === null ? 'must be "Bearer <token>"' : 'does not match the token in api.token_file');
  });
}

// ─── File paths only from the YAML file ──────────────────────────────────────────────────────────────

/** Settings whose value is a file the daemon (root) opens at start; `except` values are not files. */
const PATH_SETTINGS: ReadonlyArray<{ path: readonly string[]; except: readonly string[] }> = [
  { path: ['api', 'token_file'], except: [] },
  { path: ['api', 'tls'], except: [] },
  { path: ['store', 'path'], except: [':memory:'] },
  { path: ['log', 'flow_log'], except: ['off', 'stdout'] },
];

interface PathField {
  /** Where it is, as validateConfig names it ("onramps[3].wireguard.preshared_key_file"). */
  path: string;
  /** The same place by entry name ("onramps[branch-a].wireguard.preshared_key_file"), stable across reordering. */
  identity: string;
  value: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Every file path of a configuration: the settings above and every key ending in `_file`, anywhere. List
 * entries in `skip` are left out (entries two configurations share: their paths are the same in both).
 */
export function pathFields(cfg: TetherConfig, skip?: ReadonlySet<unknown>): PathField[] {
  const out: PathField[] = [];
  const walk = (v: unknown, path: string, identity: string): void => {
    if (Array.isArray(v)) {
      v.forEach((item, i) => {
        if (skip?.has(item) !== true) walk(item, `${path}[${i}]`, `${identity}[${isObj(item) && typeof item.name === 'string' ? item.name : i}]`);
      });
    } else if (isObj(v)) {
      for (const [k, x] of Object.entries(v)) {
        const p = path === '' ? k : `${path}.${k}`;
        const id = identity === '' ? k : `${identity}.${k}`;
        if (k.endsWith('_file') && typeof x === 'string') out.push({ path: p, identity: id, value: x });
        else walk(x, p, id);
      }
    }
  };
  walk(cfg, '', '');
  for (const s of PATH_SETTINGS) {
    if (s.path[1].endsWith('_file')) continue; // found by the walk
    const value = (cfg as unknown as Obj)[s.path[0]] as Obj | undefined;
    const x = value?.[s.path[1]];
    if (typeof x === 'string' && !s.except.includes(x)) out.push({ path: s.path.join('.'), identity: s.path.join('.'), value: x });
  }
  return out;
}

/**
 * Refuses a configuration change that sets a file path to anything the running configuration does not already
 * have in the same place (ConfigError: the API answers 400 naming the field). Removing one is allowed. The
 * daemon runs as root: a path set through the API would make it read any file as its token or a key, or
 * append flow logs to any file, at the next start.
 */
export function refuseNewPaths(next: TetherConfig, previous: TetherConfig): void {
  // Entries both configurations hold (the store shares the ones a change did not touch) hold the same paths:
  // only the others are walked, so a change of one entry with 1,000 configured is not a walk of 1,000.
  const entries = (c: TetherConfig): Set<unknown> => new Set<unknown>([...c.sites, ...c.wireguard_devices, ...c.onramps, ...c.routes, ...c.firewall.rules]);
  const shared = entries(previous);
  const inNext = entries(next);
  for (const e of shared) if (!inNext.has(e)) shared.delete(e);
  const had = new Map(pathFields(previous, shared).map((f) => [f.identity, f.value]));
  const problems = pathFields(next, shared)
    .filter((f) => had.get(f.identity) !== f.value)
    .map((f) => ({ path: f.path, line: 0, column: 0, message: `is a file path: it can be set only in the YAML file, at start (running value: ${had.has(f.identity) ? JSON.stringify(had.get(f.identity)) : 'none'})` }));
  if (problems.length > 0) throw new ConfigError('request', problems);
}

/**
 * PUT /v1/config: a path setting the body leaves out keeps its running value (an exported configuration
 * without them, or a hand-written one, imports without touching them). `always`: copy every path setting,
 * given or not (at start, the file's paths replace the store's).
 */
export function keepRunningPaths(body: Obj, running: TetherConfig, always = false): void {
  for (const s of PATH_SETTINGS) {
    const current = (running as unknown as Obj)[s.path[0]] as Obj | undefined;
    const section = isObj(body[s.path[0]]) ? (body[s.path[0]] as Obj) : (body[s.path[0]] = {}) as Obj;
    if (current?.[s.path[1]] === undefined) {
      if (always) delete section[s.path[1]];
      continue;
    }
    if (always || section[s.path[1]] === undefined) section[s.path[1]] = structuredClone(current[s.path[1]]);
  }
}
