/**
 * `tether onramps|routes|flows|explain|capture|gateway|config|dashboard …`: the CLI over the REST API (docs/API.md).
 * Tables for people, `--json` for scripts. The API address and token come from --api / --token-file, or
 * TETHER_API / TETHER_TOKEN_FILE, or the defaults (http://127.0.0.1:8470, /var/lib/tether/api-token).
 * Every call sends the token, reads included (the API needs it unless api.open_reads). An API over HTTPS
 * with a certificate of its own: NODE_EXTRA_CA_CERTS=cert.pem.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import YAML from 'yaml';
import { DEFAULT_API_TOKEN_FILE, stringifyConfig, type TetherConfig } from '../config/index.js';
import { readTokenFile } from '../control/token.js';
import { ipsecLines, type IpsecSaView } from '../control/ipsec-status.js';
import { PENALTY_DOWN } from '../health/constants.js';

const DEFAULT_API = 'http://127.0.0.1:8470';
const DEFAULT_TOKEN_FILE = DEFAULT_API_TOKEN_FILE;

interface ClientOptions {
  api?: string;
  tokenFile?: string;
  json?: boolean;
}

class ApiFailure extends Error {}

const apiBase = (opts: ClientOptions): string => (opts.api ?? process.env.TETHER_API ?? DEFAULT_API).replace(/\/+$/, '');

/** The token, from --token-file, TETHER_TOKEN_FILE or the default path; a clear error when it cannot be read. */
function token(opts: ClientOptions): string {
  const tokenFile = opts.tokenFile ?? process.env.TETHER_TOKEN_FILE ?? DEFAULT_TOKEN_FILE;
  try {
    return readTokenFile(tokenFile);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ApiFailure(code === undefined ? `${(e as Error).message} (--token-file)` : `cannot read the API token from ${tokenFile}: ${code} (--token-file FILE or TETHER_TOKEN_FILE; the daemon logs its api.token_file)`);
  }
}

async function call(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const base = apiBase(opts);
  const headers: Record<string, string> = { authorization: `Bearer ${token(opts)}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiFailure(`cannot reach the API at ${base}: ${(e as Error & { cause?: { code?: string } }).cause?.code ?? (e as Error).message} (is tether running? --api)`);
  }
  const text = await res.text();
  const data = text ? (JSON.parse(text) as unknown) : null;
  if (!res.ok) {
    const err = data as { error?: string; problems?: Array<{ path: string; message: string }> } | null;
    const problems = (err?.problems ?? []).map((p) => `  ${p.path || '(request)'}: ${p.message}`).join('\n');
    throw new ApiFailure(`${method} ${path}: ${res.status} ${err?.error ?? res.statusText}${problems ? `\n${problems}` : ''}`);
  }
  return data;
}

/** GET of a binary resource (a capture's pcapng): its bytes; errors as call() reports them. */
async function download(opts: ClientOptions, path: string): Promise<Buffer> {
  const base = apiBase(opts);
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token(opts)}` } });
  } catch (e) {
    throw new ApiFailure(`cannot reach the API at ${base}: ${(e as Error & { cause?: { code?: string } }).cause?.code ?? (e as Error).message} (is tether running? --api)`);
  }
  if (!res.ok) throw new ApiFailure(`GET ${path}: ${res.status} ${res.statusText}`);
  return Buffer.from(await res.arrayBuffer());
}

interface CaptureView {
  id: number;
  state: string;
  stop_reason: string | null;
  packets: number;
  bytes: number;
  rate_skipped: number;
  ring_skipped: number;
  download: string;
}

/** How often `tether capture` asks whether the capture stopped, ms. */
const CAPTURE_POLL_MS = 250;

/**
 * `tether capture`: starts a capture, waits until it stops at one of its limits (or Ctrl-C stops it), then writes
 * the pcapng to -w FILE, or to stdout when that is not a terminal (`tether capture … | tshark -r - -V`).
 */
async function runCapture(opts: ClientOptions & Record<string, string | boolean | undefined>): Promise<void> {
  const toFile = opts.write as string | undefined;
  if (toFile === undefined && process.stdout.isTTY) throw new Error('a capture is binary pcapng: write it with -w FILE, or pipe it (tether capture … | tshark -r - -V)');
  const int = (name: string, field: string): Record<string, number> => {
    const v = opts[name] as string | undefined;
    if (v === undefined) return {};
    if (!/^[0-9]+$/.test(v)) throw new Error(`--${name} must be a whole number, got ${v}`);
    return { [field]: Number(v) };
  };
  const body = {
    ...(opts.onramp !== undefined ? { onramp: opts.onramp } : {}),
    ...(opts.site !== undefined ? { site: opts.site } : {}),
    ...(opts.flow !== undefined ? { flow: opts.flow } : {}),
    ...(opts.filter !== undefined ? { filter: opts.filter } : {}),
    ...(opts.outer === true ? { outer: true } : {}),
    ...int('count', 'count'), ...int('bytes', 'bytes'), ...int('duration', 'duration_s'), ...int('rate', 'rate'), ...int('snaplen', 'snaplen'),
  };
  let c = (await call(opts, 'POST', '/v1/captures', body)) as CaptureView;
  process.stderr.write(`capture ${c.id} running (Ctrl-C stops it)\n`);
  let interrupted = false;
  const onInt = (): void => {
    interrupted = true;
  };
  process.once('SIGINT', onInt);
  try {
    while (c.state === 'running' && !interrupted) {
      await new Promise((r) => setTimeout(r, CAPTURE_POLL_MS));
      c = (await call(opts, 'GET', `/v1/captures/${c.id}`)) as CaptureView;
    }
  } finally {
    process.removeListener('SIGINT', onInt);
  }
  if (c.state === 'running') c = (await call(opts, 'POST', `/v1/captures/${c.id}/stop`)) as CaptureView;
  const file = await download(opts, c.download);
  if (toFile !== undefined) writeFileSync(toFile, file);
  else process.stdout.write(file);
  const skipped = c.rate_skipped + c.ring_skipped > 0 ? `; skipped ${c.rate_skipped} over the rate limit, ${c.ring_skipped} with the ring full` : '';
  process.stderr.write(`capture ${c.id} stopped (${c.stop_reason === 'stopped' ? 'stop requested' : `${c.stop_reason} limit reached`}): ${c.packets} packets, ${file.length} bytes${toFile !== undefined ? ` in ${toFile}` : ''}${skipped}\n`);
}

/** A plain text table: columns padded to their widest cell. */
export function table(headers: string[], rows: Array<Array<string | number | boolean>>): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

function print(opts: ClientOptions, data: unknown, human: () => string): void {
  console.log(opts.json ? JSON.stringify(data, null, 2) : human());
}

async function guarded(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    console.error(`tether: ${(e as Error).message}`);
    process.exitCode = e instanceof ApiFailure ? 1 : 2;
  }
}

type Row = Record<string, unknown>;
const s = (v: unknown): string => (v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** An onramp's health for the table: "healthy", "degraded loss 0.4% rtt 12.3ms", "down since 12:03:04". */
export function healthCell(h: unknown): string {
  if (h === undefined || h === null || typeof h !== 'object') return '?';
  const x = h as { state: string; loss: number; rtt_ms: number | null; since: string };
  const parts = [x.state];
  if (x.loss > 0) parts.push(`loss ${(x.loss * 100).toFixed(1)}%`);
  if (x.rtt_ms !== null && x.state !== 'down') parts.push(`rtt ${x.rtt_ms.toFixed(1)}ms`);
  if (x.state !== 'healthy') parts.push(`since ${x.since.slice(11, 19)}`);
  return parts.join(' ');
}

/** A route's priority with its health penalty: "100 (+1000000 down = 1000100)". */
export function priorityCell(r: Row): string {
  const penalty = typeof r.penalty === 'number' ? r.penalty : 0;
  if (penalty === 0) return s(r.priority);
  return `${s(r.priority)} (+${penalty} ${penalty >= PENALTY_DOWN ? 'down' : 'degraded'} = ${s(r.effective_priority)})`;
}

/** Below the onramp table: each ipsec onramp's IKE and child SAs (state, role, algorithms, SPIs, rekey, counters). */
export function ipsecSection(list: Row[], live: Map<unknown, Row>): string[] {
  const ipsec = list.filter((o) => o.type === 'ipsec');
  if (ipsec.length === 0) return [];
  return ['', 'IPsec:', ...ipsec.flatMap((o) => {
    const l = live.get(o.name);
    return l === undefined ? [`${s(o.name)}: not running`] : ipsecLines(s(o.name), l.ipsec as IpsecSaView[] | undefined);
  })];
}

/**
 * Below the onramp table, only when non-zero: the kernel's drops at the devices each onramp's packets pass through
 * (GET /v1/stats' onramps[].kernelDrops and internet.kernelDrops, "DEVICE KIND": count; docs/OBSERVABILITY.md).
 */
export function kernelDropsSection(stats: { onramps: Row[]; internet?: Row } | null): string[] {
  if (stats === null) return [];
  const lines: string[] = [];
  const add = (name: string, drops: unknown): void => {
    if (drops === null || typeof drops !== 'object') return;
    const parts = Object.entries(drops as Record<string, number>).filter(([, n]) => n > 0).map(([what, n]) => `${what} ${n}`);
    if (parts.length > 0) lines.push(`${name}: ${parts.join(', ')}`);
  };
  for (const o of stats.onramps) add(s(o.name), o.kernelDrops);
  if (stats.internet !== undefined) add('internet', stats.internet.kernelDrops);
  return lines.length === 0 ? [] : ['', 'Kernel drops (packets the kernel dropped at the devices these pass through; tx_dropped: the TUN\'s queue toward tether was full):', ...lines];
}

export function registerClientCommands(program: Command): void {
  const common = (c: Command): Command =>
    c.option('--api <url>', `API address (default ${DEFAULT_API}, or TETHER_API)`).option('--token-file <file>', `API token (default ${DEFAULT_TOKEN_FILE}, or TETHER_TOKEN_FILE)`).option('--json', 'JSON output for scripts');

  const onramps = common(program.command('onramps').description('list onramps; --arr on|off NAME switches Automatic Return Routing'));
  onramps.option('--arr <on|off>', 'switch ARR on the onramp named by the argument').argument('[name]').action((name: string | undefined, opts: ClientOptions & { arr?: string }) =>
    guarded(async () => {
      if (opts.arr !== undefined) {
        if (name === undefined || (opts.arr !== 'on' && opts.arr !== 'off')) throw new Error('usage: tether onramps NAME --arr on|off');
        const updated = await call(opts, 'PATCH', `/v1/onramps/${encodeURIComponent(name)}`, { automatic_return_routing: opts.arr === 'on' });
        print(opts, updated, () => `onramp ${name}: automatic_return_routing ${opts.arr} (new flows; established flows keep their decision)`);
        return;
      }
      const list = (await call(opts, 'GET', '/v1/onramps')) as Row[];
      const stats = (await call(opts, 'GET', '/v1/stats').catch(() => null)) as { onramps: Row[]; internet?: Row } | null;
      const live = new Map((stats?.onramps ?? []).map((o) => [o.name, o]));
      print(opts, list, () => [table(['name', 'type', 'site', 'arr', 'state', 'health', 'flows', 'rx pkts', 'tx pkts'], list.map((o) => {
        const l = live.get(o.name);
        return [s(o.name), s(o.type), s(o.site), o.automatic_return_routing ? 'on' : 'off', l ? (l.up ? 'up' : 'down') : '?', healthCell(o.health), s(l?.flowsActive), s(l?.rxPackets), s(l?.txPackets)];
      })), ...ipsecSection(list, live), ...kernelDropsSection(stats)].join('\n'));
    }));

  common(program.command('routes').description('list routes')).action((opts: ClientOptions) =>
    guarded(async () => {
      const list = (await call(opts, 'GET', '/v1/routes')) as Row[];
      print(opts, list, () => table(['id', 'prefix', 'next hop', 'priority', 'weight', 'site'], list.map((r) => [s(r.id), s(r.prefix), typeof r.next_hop === 'object' ? `onramp ${(r.next_hop as Row).onramp}` : s(r.next_hop), priorityCell(r), s(r.weight), s(r.site)])));
    }));

  const flows = common(program.command('flows').description('list flows (filters as in GET /v1/flows), or one flow with its decision trail'));
  for (const f of ['site', 'onramp', 'src', 'dst', 'protocol', 'state', 'family', 'limit', 'offset', 'cursor']) flows.option(`--${f} <${f}>`, `filter: ${f}`);
  flows.argument('[id]', 'a flow id ("4-12") for its decision trail').action((id: string | undefined, opts: ClientOptions & Record<string, string>) =>
    guarded(async () => {
      if (id !== undefined) {
        const one = (await call(opts, 'GET', `/v1/flows/${encodeURIComponent(id)}`)) as Row & { trail: string[] };
        print(opts, one, () => [`flow ${one.id}: ${one.original}`, `  reply key ${one.reply}`, ...one.trail.map((t) => `  - ${t}`)].join('\n'));
        return;
      }
      const query = new URLSearchParams();
      for (const f of ['site', 'onramp', 'src', 'dst', 'protocol', 'state', 'family', 'limit', 'offset', 'cursor']) if (opts[f] !== undefined) query.set(f, opts[f]);
      const page = (await call(opts, 'GET', `/v1/flows${query.size ? `?${query}` : ''}`)) as { total: number; items: Row[]; cursor: string | null };
      print(opts, page, () => `${table(['id', 'site', 'onramp', 'original', 'reply', 'next hop', 'arr', 'state', 'pkts'], page.items.map((f) => [
        s(f.id), s(f.site), s(f.onramp), s(f.original), s(f.reply), s(f.nextHop), f.arr ? 'arr' : 'table', s(f.state), (f.packets as number[]).join('/'),
      ]))}\n${page.items.length} of ${page.total} flows${page.cursor === null ? '' : ` (more: --cursor ${page.cursor})`}`);
    }));

  common(program.command('explain').description('what would happen to a packet, and why (sends nothing)'))
    .requiredOption('--onramp <name>', 'the onramp it arrives on (or "internet")')
    .requiredOption('--src <address>')
    .requiredOption('--dst <address>')
    .option('--protocol <p>', 'tcp, udp, icmp or a number', 'udp')
    .option('--sport <port>', 'source port', '40000')
    .option('--dport <port>', 'destination port', '53')
    .option('--ttl <n>', 'TTL / hop limit as it arrives (1: what the edge does with an expiring packet)')
    .option('--sni <name>', 'TCP: the TLS server name its ClientHello would carry (what hostname rules decide)')
    .option('--host <name>', 'TCP: the HTTP Host its request would carry (what hostname rules decide)')
    .action((opts: ClientOptions & { onramp: string; src: string; dst: string; protocol: string; sport: string; dport: string; ttl?: string; sni?: string; host?: string }) =>
      guarded(async () => {
        const protocol = /^[0-9]+$/.test(opts.protocol) ? Number(opts.protocol) : opts.protocol;
        const e = (await call(opts, 'POST', '/v1/explain', { onramp: opts.onramp, protocol, src: opts.src, dst: opts.dst, src_port: Number(opts.sport), dst_port: Number(opts.dport), ...(opts.ttl !== undefined ? { ttl: Number(opts.ttl) } : {}), ...(opts.sni !== undefined ? { sni: opts.sni } : {}), ...(opts.host !== undefined ? { host: opts.host } : {}) })) as { verdict: string; nextHop: string | null; dropReason: string | null; trail: string[] };
        print(opts, e, () => [`${e.verdict === 'forward' ? `forward to ${e.nextHop ?? '(the routing table, per packet)'}` : `drop (${e.dropReason})`}`, ...e.trail.map((t) => `  - ${t}`)].join('\n'));
      }));

  common(program.command('capture').description('capture an onramp\'s, a site\'s or a flow\'s packets as pcapng, each with tether\'s decision in its comment (docs/CAPTURE.md)'))
    .option('--onramp <name>', 'capture this onramp')
    .option('--site <name>', 'capture every onramp of this site')
    .option('--flow <id>', 'capture one flow (its id as tether flows lists it, 4-17)')
    .option('--filter <expr>', 'tcpdump-like filter: host, net, port, src/dst, tcp/udp/icmp/ip/ip6, and/or/not, ( )')
    .option('--count <n>', 'stop after n packets (default 10000)')
    .option('--bytes <n>', 'stop before the file exceeds n bytes (default 16 MiB)')
    .option('--duration <s>', 'stop after s seconds (default 60)')
    .option('--rate <n>', 'copy at most n packets per second, skip (and count) the rest (default 5000)')
    .option('--snaplen <n>', 'keep the first n bytes of each packet (default all)')
    .option('--outer', "also the tunnels' outer packets on the underlay (ciphertext; GRE's carry the inner in clear)")
    .option('-w, --write <file>', 'write the pcapng here (default: stdout when it is not a terminal)')
    .action((opts: ClientOptions & Record<string, string | boolean | undefined>) => guarded(() => runCapture(opts)));

  common(program.command('dashboard').description('prints the dashboard\'s address with the token in its fragment (never sent to the server; the page keeps it for the browser session)')).action((opts: ClientOptions) =>
    guarded(async () => {
      const url = `${apiBase(opts)}/#token=${encodeURIComponent(token(opts))}`;
      print(opts, { url }, () => `${url}\n(open it in a browser on this host or through an SSH tunnel; it carries the API token: do not paste it anywhere else)`);
    }));

  // Gateway rules and DLP profiles (docs/POLICY.md): a rule or profile is given as one YAML mapping, exactly as a
  // list item of the configuration's gateway section (tether gateway add '{action: block, sites: site-b, hostnames: "*.example-social.com"}').
  const gateway = program.command('gateway').description('gateway rules and DLP profiles (docs/POLICY.md); every change is a new policy epoch');
  const yamlItem = (text: string, what: string): Row => {
    const v = YAML.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`the ${what} must be one YAML mapping, e.g. '{action: block, hostnames: "*.example.com"}'`);
    return v as Row;
  };
  const list = (v: unknown): string => (v === undefined ? '' : Array.isArray(v) ? v.map(s).join(',') : s(v));
  common(gateway.command('rules').description('list gateway rules in order (first match wins)')).action((opts: ClientOptions) =>
    guarded(async () => {
      const rules = (await call(opts, 'GET', '/v1/gateway/rules')) as Row[];
      print(opts, rules, () => table(['id', 'name', 'action', 'sites', 'protocols', 'ports', 'hostnames', 'sources', 'dlp'], rules.map((r) => [
        s(r.id), s(r.name), s(r.action), list(r.sites), list(r.protocols), list(r.destination_ports), list(r.hostnames), list(r.sources), list(r.dlp),
      ])));
    }));
  common(gateway.command('add').description('add a gateway rule (or, with --profile, a DLP profile) given as a YAML mapping').argument('<yaml>'))
    .option('--before <ref>', 'insert before this rule (id or name) instead of at the end')
    .option('--profile', 'the mapping is a DLP profile ({name: finance, cards: true})')
    .action((text: string, opts: ClientOptions & { before?: string; profile?: boolean }) =>
      guarded(async () => {
        const what = opts.profile === true ? 'DLP profile' : 'gateway rule';
        const url = opts.profile === true ? '/v1/gateway/dlp-profiles' : '/v1/gateway/rules';
        const created = (await call(opts, 'POST', `${url}${opts.before !== undefined ? `?before=${encodeURIComponent(opts.before)}` : ''}`, yamlItem(text, what))) as Row;
        print(opts, created, () => `${what} ${s(created.id ?? created.name)}${created.id !== undefined && created.name !== undefined ? ` (${s(created.name)})` : ''} added; established flows are decided again at their next packet`);
      }));
  common(gateway.command('remove').description('remove a gateway rule (id or name), or with --profile a DLP profile (name)').argument('<ref>'))
    .option('--profile', 'remove a DLP profile')
    .action((ref: string, opts: ClientOptions & { profile?: boolean }) =>
      guarded(async () => {
        const url = opts.profile === true ? '/v1/gateway/dlp-profiles' : '/v1/gateway/rules';
        await call(opts, 'DELETE', `${url}/${encodeURIComponent(ref)}`);
        print(opts, { removed: ref }, () => `${opts.profile === true ? 'DLP profile' : 'gateway rule'} ${ref} removed`);
      }));
  common(gateway.command('profiles').description('list DLP profiles')).action((opts: ClientOptions) =>
    guarded(async () => {
      const profiles = (await call(opts, 'GET', '/v1/gateway/dlp-profiles')) as Row[];
      print(opts, profiles, () => table(['name', 'action', 'detectors'], profiles.map((p) => [
        s(p.name), s(p.action), ['cards', 'ibans', 'ssns'].filter((d) => p[d] === true).concat(p.keywords ? [`keywords(${(p.keywords as unknown[]).length})`] : [], p.regexes ? [`regexes(${(p.regexes as unknown[]).length})`] : []).join(','),
      ])));
    }));

  const config = program.command('config').description('configuration import and export over the API');
  common(config.command('export').description('the whole configuration as YAML (secrets redacted; file paths as they run)')).action((opts: ClientOptions) =>
    guarded(async () => {
      const cfg = (await call(opts, 'GET', '/v1/config')) as TetherConfig;
      console.log(opts.json ? JSON.stringify(cfg, null, 2) : stringifyConfig(cfg));
    }));
  common(config.command('import').description('replace the whole configuration from a YAML file (validated by the daemon; file paths must be the running ones or left out)').argument('<file>')).action((file: string, opts: ClientOptions) =>
    guarded(async () => {
      const cfg = YAML.parse(readFileSync(file, 'utf8')) as unknown;
      const result = await call(opts, 'PUT', '/v1/config', cfg);
      print(opts, result, () => `imported ${file}`);
    }));
}
