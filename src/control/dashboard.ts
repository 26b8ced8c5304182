/**
 * The web dashboard (docs/DASHBOARD.md): three static files — plain HTML, CSS and JavaScript, no framework,
 * no build step, nothing from a CDN — served by the daemon's API server. The page reads the JSON API
 * (onramps, flows, routes, stats, overlaps, explain) and changes one thing: an onramp's ARR switch
 * (PATCH /v1/onramps/NAME). Every call carries the bearer token the page gets once per browser session
 * (pasted, or from the #token= fragment of the address `tether dashboard` prints).
 *
 *   GET /                 → index.html
 *   GET /dashboard/       → index.html
 *   GET /dashboard/NAME   → one of the assets, by exact name (a fixed table: no path is ever joined)
 *
 * Decisions:
 *  - The files are read once, when the plugin is registered: a request never touches the disk, and a broken
 *    install fails at start, not at the first page load.
 *  - A strict Content-Security-Policy: scripts, styles and fetches from this origin only, no inline script or
 *    style, no plugins, no framing, no form posts elsewhere. The page inserts every value with textContent,
 *    so data from the network (onramp names, flow tuples) can never become markup.
 *  - The files themselves are public routes (they hold no data, and the page must load to ask for the token);
 *    the API's Host, Origin and rate-limit checks still apply to them (src/control/api-guard.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * Where the assets live: next to this module (src/control/dashboard/ under tsx). tsc does not copy them into
 * dist/, so the compiled module (dist/src/control/dashboard.js) falls back to the source folder of the same
 * checkout (dist/src/control → src/control) when its own folder has no index.html.
 */
export const DASHBOARD_DIR = [
  fileURLToPath(new URL('./dashboard/', import.meta.url)),
  fileURLToPath(new URL('../../../src/control/dashboard/', import.meta.url)),
].find((d) => existsSync(join(d, 'index.html'))) ?? fileURLToPath(new URL('./dashboard/', import.meta.url));

export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const ASSETS: ReadonlyArray<readonly [name: string, type: string]> = [
  ['index.html', 'text/html; charset=utf-8'],
  ['app.js', 'text/javascript; charset=utf-8'],
  ['style.css', 'text/css; charset=utf-8'],
];

export interface DashboardOptions {
  /** The folder holding index.html, app.js and style.css (default: DASHBOARD_DIR). */
  dir?: string;
}

interface Asset {
  type: string;
  body: Buffer;
}

/** Registers the dashboard's routes on `app` (the API's Fastify instance). Reads the files now. */
export function registerDashboard(app: FastifyInstance, options: DashboardOptions = {}): void {
  const dir = options.dir ?? DASHBOARD_DIR;
  const assets = new Map<string, Asset>();
  for (const [name, type] of ASSETS) assets.set(name, { type, body: readFileSync(join(dir, name)) });

  const send = (reply: FastifyReply, asset: Asset): FastifyReply => reply
    .code(200)
    .header('content-type', asset.type)
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    // Small files that change with the daemon's version: always revalidate, never serve a stale page.
    .header('cache-control', 'no-cache')
    .send(asset.body);

  const index = assets.get('index.html') as Asset;
  const hidden = { schema: { hide: true }, config: { public: true } };
  app.get('/', hidden, async (_req, reply) => send(reply, index));
  app.get('/dashboard', hidden, async (_req, reply) => reply.redirect('/dashboard/'));
  app.get('/dashboard/', hidden, async (_req, reply) => send(reply, index));
  app.get<{ Params: { file: string } }>('/dashboard/:file', hidden, async (req, reply) => {
    const asset = assets.get(req.params.file);
    if (asset === undefined) return reply.code(404).send({ error: `no dashboard file ${JSON.stringify(req.params.file)}`, problems: [] });
    return send(reply, asset);
  });
}
