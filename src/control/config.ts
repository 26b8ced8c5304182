/**
 * The daemon's configuration file (`tether run --config FILE`): schema, loader, defaults, and the mapping
 * to the numeric world of the data plane. docs/CONFIG.md documents every key.
 *
 *   YAML text ─ parseDocument (positions kept) ─ toPlain: plain JS values + path → position table
 *             ─ validate: every key checked, ALL problems collected ─ TetherConfig (names, snake_case)
 *             ─ toPipelineConfig: names → ids (deterministic) ─ PipelineConfig (src/dataplane/pipeline.ts)
 *
 * Decisions:
 *  - TetherConfig keeps the file's snake_case keys: one schema for the YAML file, the JSON of the API
 *    (issue 4) and `tether config export` (stringifyConfig), with no renaming layer to drift.
 *  - Validation works on plain values, so validateConfig() also checks objects that did not come from a
 *    file (an API request body, a stored document); loadConfig() adds file, line and column to each problem.
 *  - The loaded config is normalised: every default is filled in, except ids (assigned by assignIds so a
 *    file that never names ids keeps not naming them on export) and secrets given as files (read by the daemon:
 *    this module does no I/O).
 *  - Null (`key:` with nothing after it) means "not given": an optional key takes its default, a required
 *    key is reported missing.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, stringify, type Document, type Node } from 'yaml';
import { formatPrefix, parseAddress, parsePrefix } from '../common/addr.js';
import { MAX_ONRAMP_ID, MAX_SITE_ID } from '../common/ids.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import type { PipelineConfig } from '../dataplane/pipeline.js';
import type { OnrampSpec } from '../dataplane/ports.js';
import { DEFAULT_TIMEOUTS, type FlowTimeouts } from '../flow/timeouts.js';
import { keyFromBase64 } from '../onramp/wireguard/index.js';
import type { FirewallRuleSpec } from '../policy/firewall.js';
import { DEFAULT_PRIORITY, DEFAULT_WEIGHT, NextHopKind, type RouteSpec } from '../route/route-table.js';

// ─── Schema ──────────────────────────────────────────────────────────────────────────────────────────

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export interface LogConfig {
  /** pino level. Default 'info'. */
  level: LogLevel;
  /** One JSON line per ended flow: 'off' (default), 'stdout', or a file path. */
  flow_log: string;
}

export interface ApiConfig {
  /** Address the REST API and dashboard listen on. Default 127.0.0.1 (issue 4: local only unless asked). */
  listen: string;
  /** TCP port. Default 8470. */
  port: number;
  /** Bearer token for mutating calls; generated on first start with mode 0600. */
  token_file: string;
}

export interface StoreConfig {
  /** SQLite database; ':memory:' keeps nothing across restarts. */
  path: string;
}

export interface SiteConfig {
  name: string;
  /** 1..65534; assigned when absent (assignIds). */
  id?: number;
  description?: string;
  /** The site's private address space. Informational (overlap report); forwarding uses routes and ARR. */
  prefixes: string[];
}

/** One userspace WireGuard interface: the device-level half of WireGuard (its peers are onramps). */
export interface WireGuardDeviceConfig {
  name: string;
  /** Underlay address the UDP socket listens on; '0.0.0.0' or '::' = every edge address. */
  listen_address: string;
  listen_port: number;
  /** Base64 (wg genkey). Exactly one of private_key and private_key_file. Secret: see redact(). */
  private_key?: string;
  private_key_file?: string;
}

export interface WireGuardPeerSettings {
  /** The wireguard_devices entry this peer belongs to; filled in when there is only one device. */
  device: string;
  public_key: string;
  /** Optional extra symmetric key (wg genpsk); at most one of preshared_key and preshared_key_file. Secret. */
  preshared_key?: string;
  preshared_key_file?: string;
  /** Inner source prefixes accepted from this peer (cryptokey routing, WireGuard whitepaper §2). */
  allowed_ips: string[];
  /** "address:port" or "[v6]:port"; absent = learnt from the peer's first handshake. */
  endpoint?: string;
  /** Seconds; 0 = off. */
  persistent_keepalive: number;
}

export interface GreSettings {
  /** The edge's tunnel endpoint address. */
  local: string;
  /** The site's tunnel endpoint address (same family as local). */
  remote: string;
  /** RFC 2890 key, 0..4294967295; absent = no key field. */
  key?: number;
  /** Tunnel MTU (inner packet size); larger packets get MSS clamping / ICMP too-big. Default 1476 (1500 − 24). */
  mtu: number;
}

export interface InterconnectSettings {
  /** The L3 link (interface name) whose packets belong to this onramp. */
  link: string;
}

export type OnrampKind = 'wireguard' | 'gre' | 'interconnect' | 'ipsec';
export const ONRAMP_KINDS: readonly OnrampKind[] = ['wireguard', 'gre', 'interconnect', 'ipsec'];

interface OnrampCommon {
  name: string;
  /** 1..65534; assigned when absent. */
  id?: number;
  description?: string;
  /** Site name; absent = the onramp forms a site of its own. */
  site?: string;
  automatic_return_routing: boolean;
  /** Failover order within the site: lower is preferred. Default 100. */
  preference: number;
  /** Flows this onramp may start and hold at once; 0 = no quota. */
  max_flows: number;
}

export interface WireGuardOnrampConfig extends OnrampCommon {
  type: 'wireguard';
  wireguard: WireGuardPeerSettings;
}
export interface GreOnrampConfig extends OnrampCommon {
  type: 'gre';
  gre: GreSettings;
}
export interface InterconnectOnrampConfig extends OnrampCommon {
  type: 'interconnect';
  interconnect: InterconnectSettings;
}
export type OnrampConfig = WireGuardOnrampConfig | GreOnrampConfig | InterconnectOnrampConfig;

export type NextHopConfig = 'internet' | 'blackhole' | { onramp: string };

export interface RouteConfig {
  prefix: string;
  next_hop: NextHopConfig;
  /** Lower wins. Default 100. */
  priority: number;
  /** ECMP share. Default 1. */
  weight: number;
  /** Site name: the route applies only to flows from that site. Absent = every site. */
  site?: string;
}

export interface EgressConfig {
  /** The egress TUN through which NAT'ed packets enter the kernel's routing. Default 'tether-egress'. */
  interface: string;
  /** Source NAT pool (IPv4 and/or IPv6). */
  addresses: string[];
  /** "min-max" external ports for TCP/UDP. Default "1024-65535". */
  port_range: string;
}

export type PortConfig = number | string;
export type ProtocolConfig = number | string;

export interface FirewallRuleConfig {
  /** Optional label, unique; shown with the rule id in flow explanations. */
  name?: string;
  /** 1..65535, reported in flows; assigned when absent. */
  id?: number;
  action: 'allow' | 'deny';
  sites?: string[];
  onramps?: string[];
  source_prefixes?: string[];
  destination_prefixes?: string[];
  /** 'tcp' | 'udp' | 'icmp' | 'icmpv6' or 0..255. */
  protocols?: ProtocolConfig[];
  /** 53 or "1000-2000". TCP and UDP only. */
  source_ports?: PortConfig[];
  destination_ports?: PortConfig[];
}

export interface FirewallConfig {
  default_action: 'allow' | 'deny';
  rules: FirewallRuleConfig[];
}

/** Idle timeouts in seconds (src/flow/timeouts.ts has their meaning and the RFC floors). */
export interface TimeoutsConfig {
  tcp_syn_sent: number;
  tcp_syn_recv: number;
  tcp_established: number;
  tcp_fin_wait: number;
  tcp_close_wait: number;
  tcp_last_ack: number;
  tcp_time_wait: number;
  tcp_close: number;
  udp_unreplied: number;
  udp_established: number;
  icmp: number;
  other_unreplied: number;
  other_established: number;
}

export interface FlowsConfig {
  /** Preallocated IPv4 flow slots. Default 65536. */
  ipv4_capacity: number;
  /** Preallocated IPv6 flow slots. Default 4096. */
  ipv6_capacity: number;
  timeouts: TimeoutsConfig;
}

export interface TetherConfig {
  version: 1;
  log: LogConfig;
  api: ApiConfig;
  store: StoreConfig;
  sites: SiteConfig[];
  wireguard_devices: WireGuardDeviceConfig[];
  onramps: OnrampConfig[];
  routes: RouteConfig[];
  /** Absent: no Internet egress (then no route may lead to the Internet). */
  egress?: EgressConfig;
  firewall: FirewallConfig;
  flows: FlowsConfig;
}

// ─── Defaults ────────────────────────────────────────────────────────────────────────────────────────

export const DEFAULT_API_PORT = 8470;
export const DEFAULT_PREFERENCE = 100;
/** 1500-byte underlay minus the outer IPv4 header (20) and the GRE header without key (4). */
export const DEFAULT_GRE_MTU = 1476;
export const DEFAULT_EGRESS_INTERFACE = 'tether-egress';
export const DEFAULT_PORT_RANGE = '1024-65535';
/** The Pipeline's own defaults (src/dataplane/pipeline.ts), written out so the file and export show them. */
export const DEFAULT_IPV4_CAPACITY = 1 << 16;
export const DEFAULT_IPV6_CAPACITY = 1 << 12;
export const REDACTED = '(redacted)';

const MS_PER_SECOND = 1000;
const MAX_U32 = 0xffffffff;
const MAX_U16 = 0xffff;
const MAX_PROTOCOL = 255;
const MAX_RULE_ID = 65535;
/** src/flow/flow-table.ts MAX_CAPACITY. */
const MAX_FLOW_CAPACITY = 1 << 29;
const MIN_MTU = 576; // RFC 791: every IPv4 host accepts 576-byte datagrams
const MAX_TIMEOUT_SECONDS = 30 * 24 * 3600;
/** Linux IFNAMSIZ (16) minus the terminating NUL. */
const MAX_IFNAME = 15;
/** Bounds the work a hostile file can cause through aliases (YAML "billion laughs"). */
const MAX_NODES = 200_000;

/** Which config key maps to which FlowTimeouts field. */
const TIMEOUT_FIELDS: ReadonlyArray<[keyof TimeoutsConfig, keyof FlowTimeouts]> = [
  ['tcp_syn_sent', 'tcpSynSent'],
  ['tcp_syn_recv', 'tcpSynRecv'],
  ['tcp_established', 'tcpEstablished'],
  ['tcp_fin_wait', 'tcpFinWait'],
  ['tcp_close_wait', 'tcpCloseWait'],
  ['tcp_last_ack', 'tcpLastAck'],
  ['tcp_time_wait', 'tcpTimeWait'],
  ['tcp_close', 'tcpClose'],
  ['udp_unreplied', 'udpUnreplied'],
  ['udp_established', 'udpEstablished'],
  ['icmp', 'icmp'],
  ['other_unreplied', 'otherUnreplied'],
  ['other_established', 'otherEstablished'],
];

export function defaultTimeouts(): TimeoutsConfig {
  const out = {} as TimeoutsConfig;
  for (const [key, field] of TIMEOUT_FIELDS) out[key] = DEFAULT_TIMEOUTS[field] / MS_PER_SECOND;
  return out;
}

const PROTOCOL_NAMES: Readonly<Record<string, number>> = {
  icmp: IPPROTO_ICMP,
  tcp: IPPROTO_TCP,
  udp: IPPROTO_UDP,
  icmpv6: IPPROTO_ICMPV6,
  'ipv6-icmp': IPPROTO_ICMPV6,
};

/**
 * WireGuard keys of the lab topology (defaultConfig). They are public, in this source file: lab use only,
 * on the lab's private underlay addresses. `site*Private` configure the sites' wireguard-go; the edge's public
 * keys are what the sites list as their peer.
 */
export const LAB_WIREGUARD_KEYS = Object.freeze({
  edgeAPrivate: 'uKsD1HqFHODBGCK4sEgtf1gdei84R+wr+BURGq4xSXg=',
  edgeAPublic: 'qDtHH12jvHHyA9D6lsNGoE9eRmLg1NE9k7ya29vASQQ=',
  edgeBPrivate: '6Im2P9/L8Bw1+B7S9m4WhP5Ej0msH+HfEFA+emYwT2Y=',
  edgeBPublic: 'iGeWyNjTIBj2bM+VHw5GY0DzQoO/e6g5lBcyFllPwAE=',
  siteAPrivate: 'YPAsZxPW6CaxIkQGOXwftadbRn+XrPKH1hL0PubyBVY=',
  siteAPublic: '6YyWdNpCbLJQ0DuWmDUPEjC8RLPA7cZmEY97x5rDPVo=',
  siteBPrivate: '8LkeVfJvH+gMWoz/oEGe2cTsn5lcjtkRCGh8Hj9MKGk=',
  siteBPublic: '22CkOjrAMDLhCWyzjG50Q9sSAbyZtlDM9RIHfOAQmCk=',
});

/**
 * The lab's topology (issue 3 §6). Underlay: the edge is x.1 and the site's router x.2 on
 * 192.168.101.0/24 (site-a), 192.168.102.0/24 (site-b), 192.168.103.0/24 (site-gre); the data center is
 * reached over the link `veth-dc`; the Internet egress pool is 198.51.100.1 (RFC 5737 TEST-NET-2).
 * Each overlapping WireGuard site has its own device: one device gives a prefix to one peer only, and
 * both sites' allowed IPs are 10.0.1.0/24.
 */
export function defaultConfig(): TetherConfig {
  const k = LAB_WIREGUARD_KEYS;
  const lan = '10.0.1.0/24';
  const onramp = (o: OnrampConfig): OnrampConfig => o;
  return {
    version: 1,
    log: { level: 'info', flow_log: 'off' },
    api: { listen: '127.0.0.1', port: DEFAULT_API_PORT, token_file: '/var/lib/tether/api-token' },
    store: { path: '/var/lib/tether/tether.db' },
    sites: [
      { name: 'site-a', description: 'branch A (lab)', prefixes: [lan] },
      { name: 'site-b', description: 'branch B (lab), same LAN as site-a', prefixes: [lan] },
      { name: 'site-gre', description: 'GRE branch (lab), same LAN again', prefixes: [lan] },
      { name: 'dc', description: 'data center', prefixes: ['172.16.0.0/24'] },
    ],
    wireguard_devices: [
      { name: 'wg-a', listen_address: '192.168.101.1', listen_port: 51820, private_key: k.edgeAPrivate },
      { name: 'wg-b', listen_address: '192.168.102.1', listen_port: 51820, private_key: k.edgeBPrivate },
    ],
    onramps: [
      onramp({
        name: 'site-a-wg', type: 'wireguard', site: 'site-a', automatic_return_routing: true,
        preference: DEFAULT_PREFERENCE, max_flows: 0,
        wireguard: { device: 'wg-a', public_key: k.siteAPublic, allowed_ips: [lan], endpoint: '192.168.101.2:51820', persistent_keepalive: 25 },
      }),
      onramp({
        name: 'site-b-wg', type: 'wireguard', site: 'site-b', automatic_return_routing: true,
        preference: DEFAULT_PREFERENCE, max_flows: 0,
        wireguard: { device: 'wg-b', public_key: k.siteBPublic, allowed_ips: [lan], endpoint: '192.168.102.2:51820', persistent_keepalive: 25 },
      }),
      onramp({
        name: 'site-gre-tunnel', type: 'gre', site: 'site-gre', automatic_return_routing: true,
        preference: DEFAULT_PREFERENCE, max_flows: 0,
        gre: { local: '192.168.103.1', remote: '192.168.103.2', mtu: DEFAULT_GRE_MTU },
      }),
      onramp({
        name: 'dc-link', type: 'interconnect', site: 'dc', automatic_return_routing: true,
        preference: DEFAULT_PREFERENCE, max_flows: 0,
        interconnect: { link: 'veth-dc' },
      }),
    ],
    routes: [
      { prefix: '0.0.0.0/0', next_hop: 'internet', priority: DEFAULT_PRIORITY, weight: DEFAULT_WEIGHT },
      { prefix: '172.16.0.0/24', next_hop: { onramp: 'dc-link' }, priority: DEFAULT_PRIORITY, weight: DEFAULT_WEIGHT },
    ],
    egress: { interface: DEFAULT_EGRESS_INTERFACE, addresses: ['198.51.100.1'], port_range: DEFAULT_PORT_RANGE },
    firewall: { default_action: 'allow', rules: [] },
    flows: { ipv4_capacity: DEFAULT_IPV4_CAPACITY, ipv6_capacity: DEFAULT_IPV6_CAPACITY, timeouts: defaultTimeouts() },
  };
}

// ─── Errors and positions ────────────────────────────────────────────────────────────────────────────

export interface ConfigProblem {
  /** Key path, e.g. "onramps[2].automatic_return_routing"; "" for the document itself. */
  path: string;
  /** 1-based; 0 when unknown (a value that did not come from a file). */
  line: number;
  column: number;
  message: string;
}

/** Every problem of a configuration, one per line: "FILE:LINE:COL: PATH: REASON". */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(readonly source: string, problems: ConfigProblem[]) {
    super(problems.map((p) => formatProblem(source, p)).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function formatProblem(source: string, p: ConfigProblem): string {
  const where = p.line > 0 ? `${source}:${p.line}:${p.column}` : source;
  return `${where}: ${p.path === '' ? '(top level)' : p.path}: ${p.message}`;
}

/** Where a path's key and value start in the file (character offsets). */
interface Position {
  key: number;
  value: number;
}
type Locator = (path: string, which: 'key' | 'value') => { line: number; column: number };

const NO_POSITION = { line: 0, column: 0 };

function parentPath(path: string): string {
  const m = /(\[\d+\]|\.[^.[\]]*)$/.exec(path);
  if (m) return path.slice(0, m.index);
  return '';
}

function childPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

// ─── YAML → plain values, with positions ─────────────────────────────────────────────────────────────

class PlainBuilder {
  readonly positions = new Map<string, Position>();
  readonly problems: Array<{ path: string; offset: number; message: string }> = [];
  private nodes = 0;
  private readonly stack = new Set<Node>();

  constructor(private readonly doc: Document) {}

  /**
   * `pinned` >= 0: we are inside an alias, and every position is the alias's own (a problem in the second use
   * of an anchor is reported where that use is, not at the anchor).
   */
  convert(node: unknown, path: string, keyOffset: number, pinned = -1): unknown {
    const valueOffset = pinned >= 0 ? pinned : offsetOf(node, keyOffset);
    const at = (n: unknown, fallback: number): number => (pinned >= 0 ? pinned : offsetOf(n, fallback));
    if (!this.positions.has(path)) this.positions.set(path, { key: keyOffset, value: valueOffset });
    if (++this.nodes > MAX_NODES) {
      if (this.nodes === MAX_NODES + 1) this.problems.push({ path, offset: valueOffset, message: `the document is too large (more than ${MAX_NODES} values, aliases included)` });
      return null;
    }
    if (isAlias(node)) {
      const target = node.resolve(this.doc);
      if (target === undefined || this.stack.has(target as Node)) {
        const why = target === undefined ? 'refers to no anchor' : 'is inside the value it refers to (a cycle)';
        this.problems.push({ path, offset: valueOffset, message: `alias *${node.source} ${why}` });
        return null;
      }
      this.stack.add(target as Node);
      const out = this.convert(target, path, keyOffset, valueOffset);
      this.stack.delete(target as Node);
      return out;
    }
    if (isScalar(node)) return node.value ?? null;
    if (isSeq(node)) {
      this.stack.add(node);
      const out = node.items.map((item, i) => this.convert(item, `${path}[${i}]`, at(item, valueOffset), pinned));
      this.stack.delete(node);
      return out;
    }
    if (isMap(node)) {
      this.stack.add(node);
      const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      for (const pair of node.items) {
        const keyNode = isAlias(pair.key) ? pair.key.resolve(this.doc) : pair.key;
        const kOffset = at(pair.key, valueOffset);
        const key = isScalar(keyNode) ? keyNode.value : undefined;
        if (typeof key !== 'string' && typeof key !== 'number' && typeof key !== 'boolean') {
          this.problems.push({ path, offset: kOffset, message: 'keys must be plain words, got a complex key' });
          continue;
        }
        const name = String(key);
        out[name] = this.convert(pair.value, childPath(path, name), kOffset, pinned);
      }
      this.stack.delete(node);
      return out;
    }
    return null; // an absent value (`key:` with nothing after it)
  }
}

function offsetOf(node: unknown, fallback: number): number {
  const range = (node as { range?: unknown } | null)?.range;
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : fallback;
}

// ─── Validation ──────────────────────────────────────────────────────────────────────────────────────

type Obj = Record<string, unknown>;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const NAME_HINT = "a name of letters, digits, '-', '_' or '.' (up to 63, starting with a letter or digit)";
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const PORT_RANGE_RE = /^(\d{1,5})\s*-\s*(\d{1,5})$/;
const ENDPOINT_RE = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/;
const SHOWN_CHARS = 60;

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'string') {
    const s = v.length > SHOWN_CHARS ? `${v.slice(0, SHOWN_CHARS)}…` : v;
    return JSON.stringify(s);
  }
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Levenshtein distance, for "did you mean" on unknown keys. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length];
}

/** Reads one configuration, collecting every problem. Field readers return undefined after reporting. */
class Checker {
  readonly problems: ConfigProblem[] = [];
  constructor(private readonly locate: Locator) {}

  fail(path: string, message: string, which: 'key' | 'value' = 'value'): void {
    const { line, column } = this.locate(path, which);
    this.problems.push({ path, line, column, message });
  }

  /** A mapping with only `allowed` keys. Unknown keys are reported (typos must not pass silently). */
  object(v: unknown, path: string, allowed: readonly string[]): Obj | undefined {
    if (!isObj(v)) {
      this.fail(path, `must be a mapping (key: value lines), got ${describe(v)}`);
      return undefined;
    }
    for (const key of Object.keys(v)) {
      if (allowed.includes(key)) continue;
      let best = '';
      let bestDistance = 3;
      for (const a of allowed) {
        const d = editDistance(key.toLowerCase(), a);
        if (d < bestDistance) { best = a; bestDistance = d; }
      }
      const hint = best !== '' ? `did you mean "${best}"?` : `expected one of: ${allowed.join(', ')}`;
      this.fail(childPath(path, key), `unknown key "${key}"; ${hint}`, 'key');
    }
    return v;
  }

  /** The value of o[key], undefined when absent or null. */
  get(o: Obj, key: string): unknown {
    const v = Object.hasOwn(o, key) ? o[key] : undefined;
    return v === null ? undefined : v;
  }

  missing(path: string, what: string): undefined {
    this.fail(path, `is required: ${what}`);
    return undefined;
  }

  string(o: Obj, key: string, path: string, opts: { required?: boolean; what?: string } = {}): string | undefined {
    const p = childPath(path, key);
    const v = this.get(o, key);
    const what = opts.what ?? 'text';
    if (v === undefined) return opts.required ? this.missing(p, what) : undefined;
    if (typeof v !== 'string' || v === '') {
      this.fail(p, `must be ${what}, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  name(o: Obj, key: string, path: string, required: boolean): string | undefined {
    const s = this.string(o, key, path, { required, what: NAME_HINT });
    if (s !== undefined && !NAME_RE.test(s)) {
      this.fail(childPath(path, key), `must be ${NAME_HINT}, got ${describe(s)}`);
      return undefined;
    }
    return s;
  }

  ifname(o: Obj, key: string, path: string, required: boolean): string | undefined {
    const what = `an interface name (1-${MAX_IFNAME} letters, digits, '-', '_' or '.')`;
    const s = this.string(o, key, path, { required, what });
    if (s !== undefined && (!IFNAME_RE.test(s) || s === '.' || s === '..')) {
      this.fail(childPath(path, key), `must be ${what}, got ${describe(s)}`);
      return undefined;
    }
    return s;
  }

  bool(o: Obj, key: string, path: string, required: boolean): boolean | undefined {
    const p = childPath(path, key);
    const v = this.get(o, key);
    if (v === undefined) return required ? this.missing(p, 'true or false') : undefined;
    if (typeof v !== 'boolean') {
      this.fail(p, `must be true or false, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  int(o: Obj, key: string, path: string, min: number, max: number, opts: { required?: boolean; unit?: string } = {}): number | undefined {
    const p = childPath(path, key);
    const v = this.get(o, key);
    const what = `an integer ${min}..${max}${opts.unit ? ` (${opts.unit})` : ''}`;
    if (v === undefined) return opts.required ? this.missing(p, what) : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(p, `must be ${what}, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  choice<T extends string>(o: Obj, key: string, path: string, values: readonly T[], required: boolean): T | undefined {
    const p = childPath(path, key);
    const v = this.get(o, key);
    const what = `one of ${values.join(', ')}`;
    if (v === undefined) return required ? this.missing(p, what) : undefined;
    if (typeof v !== 'string' || !values.includes(v as T)) {
      this.fail(p, `must be ${what}, got ${describe(v)}`);
      return undefined;
    }
    return v as T;
  }

  /** A list; with `single`, one value is accepted as a one-element list. Returns [value, path] pairs. */
  list(o: Obj, key: string, path: string, opts: { required?: boolean; single?: boolean; nonEmpty?: boolean; what: string }): Array<[unknown, string]> | undefined {
    const p = childPath(path, key);
    const v = this.get(o, key);
    if (v === undefined) return opts.required ? this.missing(p, `a list of ${opts.what}`) : undefined;
    if (!Array.isArray(v)) {
      if (opts.single && !isObj(v)) return [[v, p]];
      this.fail(p, `must be a list of ${opts.what}, got ${describe(v)}`);
      return undefined;
    }
    if (opts.nonEmpty && v.length === 0) {
      this.fail(p, `must list at least one of ${opts.what}`);
      return undefined;
    }
    return v.map((item, i) => [item, `${p}[${i}]`]);
  }

  /** A prefix in canonical form; a bare address is a host prefix; host bits must be zero. */
  prefix(v: unknown, path: string): string | undefined {
    const parsed = typeof v === 'string' ? parsePrefix(v.trim()) : null;
    if (typeof v !== 'string' || parsed === null) {
      this.fail(path, `must be a prefix like 10.0.1.0/24 or 2001:db8::/32, got ${describe(v)}`);
      return undefined;
    }
    const text = v.trim();
    const slash = text.indexOf('/');
    if (slash >= 0) {
      const words = new Uint32Array(4);
      parseAddress(text.slice(0, slash), words);
      const count = parsed.family === 4 ? 1 : 4;
      for (let i = 0; i < count; i++) {
        if (words[i] !== parsed.words[i]) {
          this.fail(path, `has host bits set: ${text}; did you mean ${formatPrefix(parsed)}?`);
          return undefined;
        }
      }
    }
    return text;
  }

  address(v: unknown, path: string): string | undefined {
    if (typeof v !== 'string' || parseAddress(v, new Uint32Array(4)) === 0) {
      this.fail(path, `must be an IPv4 or IPv6 address, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  addressField(o: Obj, key: string, path: string, required: boolean): string | undefined {
    const v = this.get(o, key);
    if (v === undefined) return required ? this.missing(childPath(path, key), 'an IPv4 or IPv6 address') : undefined;
    return this.address(v, childPath(path, key));
  }

  /** A WireGuard key in base64 (44 characters, 32 bytes). */
  key(o: Obj, key: string, path: string, required: boolean): string | undefined {
    const what = 'a WireGuard key in base64 (44 characters, as printed by wg genkey / wg pubkey)';
    const v = this.get(o, key);
    const p = childPath(path, key);
    if (v === undefined) return required ? this.missing(p, what) : undefined;
    if (typeof v !== 'string' || keyFromBase64(v) === null) {
      // Never echo a secret back: it may be a real key with one character wrong.
      this.fail(p, `must be ${what}${typeof v === 'string' ? ` (got ${v.length} characters)` : `, got ${describe(v)}`}`);
      return undefined;
    }
    return v.trim();
  }

  /** "lo-hi" or one port. Returns [lo, hi]. */
  portRange(v: unknown, path: string, min: number): [number, number] | undefined {
    let lo = -1;
    let hi = -1;
    if (typeof v === 'number' && Number.isInteger(v)) {
      lo = hi = v;
    } else if (typeof v === 'string') {
      const m = PORT_RANGE_RE.exec(v.trim());
      if (m) { lo = Number(m[1]); hi = Number(m[2]); } else if (/^\d{1,5}$/.test(v.trim())) lo = hi = Number(v.trim());
    }
    if (lo < min || hi > MAX_U16 || lo > hi) {
      this.fail(path, `must be a port ${min}..65535 or a range like "1000-2000" (low first), got ${describe(v)}`);
      return undefined;
    }
    return [lo, hi];
  }

  /** Reports every value of `entries` (by name) seen twice, at its second occurrence. */
  unique(entries: Array<[string | undefined, string]>, what: string): void {
    const seen = new Map<string, string>();
    for (const [value, path] of entries) {
      if (value === undefined) continue;
      const first = seen.get(value);
      if (first !== undefined) this.fail(path, `duplicate ${what} ${JSON.stringify(value)} (already used at ${first})`);
      else seen.set(value, path);
    }
  }
}

const TOP_KEYS = ['version', 'log', 'api', 'store', 'sites', 'wireguard_devices', 'onramps', 'routes', 'egress', 'firewall', 'flows'] as const;
const ONRAMP_COMMON_KEYS = ['name', 'id', 'description', 'type', 'site', 'automatic_return_routing', 'preference', 'max_flows'];
const ONRAMP_KEYS = [...ONRAMP_COMMON_KEYS, ...ONRAMP_KINDS];

/** Validates and normalises a plain value (parsed YAML or JSON) into a TetherConfig. */
function check(root: unknown, c: Checker): TetherConfig | undefined {
  const top = c.object(root, '', TOP_KEYS);
  if (top === undefined) return undefined;
  c.int(top, 'version', '', 1, 1);

  const log = checkLog(c, top);
  const api = checkApi(c, top);
  const store = checkStore(c, top);
  const flows = checkFlows(c, top);
  const egress = checkEgress(c, top);
  const sites = checkSites(c, top);
  const siteNames = new Set(sites.map((s) => s.name));
  const devices = checkDevices(c, top);
  const onrampNames = new Set<string>();
  const onramps = checkOnramps(c, top, siteNames, devices, egress, onrampNames);
  const routes = checkRoutes(c, top, siteNames, onrampNames, egress);
  const firewall = checkFirewall(c, top, siteNames, onrampNames);
  return { version: 1, log, api, store, sites, wireguard_devices: devices, onramps, routes, ...(egress ? { egress } : {}), firewall, flows };
}

function section(c: Checker, top: Obj, key: string, allowed: readonly string[]): Obj {
  const v = c.get(top, key);
  if (v === undefined) return Object.create(null) as Obj;
  return c.object(v, key, allowed) ?? (Object.create(null) as Obj);
}

function checkLog(c: Checker, top: Obj): LogConfig {
  const o = section(c, top, 'log', ['level', 'flow_log']);
  return {
    level: c.choice(o, 'level', 'log', LOG_LEVELS, false) ?? 'info',
    flow_log: c.string(o, 'flow_log', 'log', { what: "'off', 'stdout' or a file path" }) ?? 'off',
  };
}

function checkApi(c: Checker, top: Obj): ApiConfig {
  const o = section(c, top, 'api', ['listen', 'port', 'token_file']);
  return {
    listen: c.addressField(o, 'listen', 'api', false) ?? '127.0.0.1',
    port: c.int(o, 'port', 'api', 1, MAX_U16) ?? DEFAULT_API_PORT,
    token_file: c.string(o, 'token_file', 'api', { what: 'a file path' }) ?? '/var/lib/tether/api-token',
  };
}

function checkStore(c: Checker, top: Obj): StoreConfig {
  const o = section(c, top, 'store', ['path']);
  return { path: c.string(o, 'path', 'store', { what: "a file path (or ':memory:')" }) ?? '/var/lib/tether/tether.db' };
}

function checkFlows(c: Checker, top: Obj): FlowsConfig {
  const o = section(c, top, 'flows', ['ipv4_capacity', 'ipv6_capacity', 'timeouts']);
  const timeouts = defaultTimeouts();
  const t = c.get(o, 'timeouts');
  if (t !== undefined) {
    const keys = TIMEOUT_FIELDS.map(([k]) => k);
    const to = c.object(t, 'flows.timeouts', keys);
    if (to !== undefined) {
      for (const k of keys) timeouts[k] = c.int(to, k, 'flows.timeouts', 1, MAX_TIMEOUT_SECONDS, { unit: 'seconds' }) ?? timeouts[k];
    }
  }
  return {
    ipv4_capacity: c.int(o, 'ipv4_capacity', 'flows', 1, MAX_FLOW_CAPACITY, { unit: 'flows' }) ?? DEFAULT_IPV4_CAPACITY,
    ipv6_capacity: c.int(o, 'ipv6_capacity', 'flows', 1, MAX_FLOW_CAPACITY, { unit: 'flows' }) ?? DEFAULT_IPV6_CAPACITY,
    timeouts,
  };
}

function checkEgress(c: Checker, top: Obj): EgressConfig | undefined {
  const v = c.get(top, 'egress');
  if (v === undefined) return undefined;
  const o = c.object(v, 'egress', ['interface', 'addresses', 'port_range']);
  if (o === undefined) return undefined;
  const addresses: string[] = [];
  const seen: Array<[string | undefined, string]> = [];
  for (const [item, p] of c.list(o, 'addresses', 'egress', { required: true, single: true, nonEmpty: true, what: 'IPv4 or IPv6 addresses' }) ?? []) {
    const a = c.address(item, p);
    if (a !== undefined) { addresses.push(a); seen.push([canonicalAddress(a), p]); }
  }
  c.unique(seen, 'address');
  let portRange = DEFAULT_PORT_RANGE;
  const pr = c.get(o, 'port_range');
  if (pr !== undefined) {
    const r = c.portRange(pr, 'egress.port_range', 1);
    if (r !== undefined) portRange = `${r[0]}-${r[1]}`;
  }
  return { interface: c.ifname(o, 'interface', 'egress', false) ?? DEFAULT_EGRESS_INTERFACE, addresses, port_range: portRange };
}

function canonicalAddress(text: string): string {
  const p = parsePrefix(text);
  return p === null ? text : formatPrefix(p);
}

/** Reads a list section, calling `each` per entry object; entries that are not mappings are reported. */
function entries<T>(c: Checker, parent: Obj, key: string, allowed: readonly string[], each: (o: Obj, path: string) => T | undefined, under = ''): T[] {
  const out: T[] = [];
  for (const [item, p] of c.list(parent, key, under, { what: 'mappings' }) ?? []) {
    const o = c.object(item, p, allowed);
    if (o === undefined) continue;
    const r = each(o, p);
    if (r !== undefined) out.push(r);
  }
  return out;
}


function checkSites(c: Checker, top: Obj): SiteConfig[] {
  const paths: string[] = [];
  const sites = entries(c, top, 'sites', ['name', 'id', 'description', 'prefixes'], (o, p) => {
    const name = c.name(o, 'name', p, true);
    const id = c.int(o, 'id', p, 1, MAX_SITE_ID);
    const description = c.string(o, 'description', p);
    const prefixes: string[] = [];
    for (const [item, ip] of c.list(o, 'prefixes', p, { single: true, what: 'prefixes' }) ?? []) {
      const pr = c.prefix(item, ip);
      if (pr !== undefined) prefixes.push(pr);
    }
    if (name === undefined) return undefined;
    paths.push(p);
    return { name, ...(id !== undefined ? { id } : {}), ...(description !== undefined ? { description } : {}), prefixes };
  });
  c.unique(sites.map((s, i) => [s.name, `${paths[i]}.name`]), 'site name');
  c.unique(sites.map((s, i) => [s.id === undefined ? undefined : String(s.id), `${paths[i]}.id`]), 'site id');
  return sites;
}

function checkDevices(c: Checker, top: Obj): WireGuardDeviceConfig[] {
  const paths: string[] = [];
  const devices = entries(c, top, 'wireguard_devices', ['name', 'listen_address', 'listen_port', 'private_key', 'private_key_file'], (o, p) => {
    const name = c.name(o, 'name', p, true);
    const listen = c.addressField(o, 'listen_address', p, false) ?? '0.0.0.0';
    const port = c.int(o, 'listen_port', p, 1, MAX_U16, { required: true });
    const key = c.key(o, 'private_key', p, false);
    const file = c.string(o, 'private_key_file', p, { what: 'a file path' });
    const hasKey = c.get(o, 'private_key') !== undefined;
    if (hasKey === (file !== undefined)) {
      c.fail(`${p}.private_key`, hasKey ? 'give private_key or private_key_file, not both' : 'is required: private_key (base64) or private_key_file (a path)');
    }
    if (name === undefined) return undefined;
    paths.push(p);
    // A device with a bad port is kept (port 0) so its peers are not reported as dangling; the problem is reported.
    return { name, listen_address: listen, listen_port: port ?? 0, ...(key !== undefined ? { private_key: key } : {}), ...(file !== undefined ? { private_key_file: file } : {}) };
  });
  c.unique(devices.map((d, i) => [d.name, `${paths[i]}.name`]), 'device name');
  // Two sockets on one port clash when their addresses are equal or either is a wildcard.
  devices.forEach((d, i) => {
    for (let j = 0; j < i; j++) {
      const e = devices[j];
      const wild = (a: string): boolean => a === '0.0.0.0' || a === '::';
      if (d.listen_port !== 0 && e.listen_port === d.listen_port && (wild(d.listen_address) || wild(e.listen_address) || canonicalAddress(d.listen_address) === canonicalAddress(e.listen_address))) {
        c.fail(`${paths[i]}.listen_port`, `${d.listen_address}:${d.listen_port} clashes with device "${e.name}" (${e.listen_address}:${e.listen_port})`);
        break;
      }
    }
  });
  return devices;
}

function checkOnramps(c: Checker, top: Obj, siteNames: Set<string>, devices: WireGuardDeviceConfig[], egress: EgressConfig | undefined, names: Set<string>): OnrampConfig[] {
  const paths: string[] = [];
  // Names of every entry, valid or not, so that a route to an onramp with a problem is not reported twice.
  const declared: Array<[string | undefined, string]> = [];
  const declaredIds: Array<[string | undefined, string]> = [];
  const onramps = entries(c, top, 'onramps', ONRAMP_KEYS, (o, p) => {
    const name = c.name(o, 'name', p, true);
    declared.push([name, `${p}.name`]);
    if (name !== undefined) names.add(name);
    const id = c.int(o, 'id', p, 1, MAX_ONRAMP_ID);
    declaredIds.push([id === undefined ? undefined : String(id), `${p}.id`]);
    const description = c.string(o, 'description', p);
    const type = c.choice(o, 'type', p, ONRAMP_KINDS, true);
    const site = c.name(o, 'site', p, false);
    if (site !== undefined && !siteNames.has(site)) {
      c.fail(`${p}.site`, `no site named "${site}" (sites: ${[...siteNames].join(', ') || 'none'}); leave site out for an onramp that is a site of its own`);
    }
    const arr = c.bool(o, 'automatic_return_routing', p, true);
    const preference = c.int(o, 'preference', p, 0, MAX_U16) ?? DEFAULT_PREFERENCE;
    const maxFlows = c.int(o, 'max_flows', p, 0, MAX_FLOW_CAPACITY, { unit: '0 = no quota' }) ?? 0;
    for (const kind of ONRAMP_KINDS) {
      if (kind !== type && kind !== 'ipsec' && c.get(o, kind) !== undefined && type !== undefined) {
        c.fail(`${p}.${kind}`, `settings for a ${kind} onramp, but this onramp's type is ${type}`, 'key');
      }
    }
    if (type === 'ipsec') {
      c.fail(`${p}.type`, 'ipsec is not supported yet; use wireguard, gre or interconnect');
      return undefined;
    }
    if (c.get(o, 'ipsec') !== undefined) c.fail(`${p}.ipsec`, 'ipsec is not supported yet', 'key');
    if (name === undefined || type === undefined || arr === undefined) {
      if (type === 'wireguard') checkPeer(c, o, p, devices);
      if (type === 'gre') checkGre(c, o, p);
      if (type === 'interconnect') checkInterconnect(c, o, p);
      return undefined;
    }
    const common: OnrampCommon = {
      name, ...(id !== undefined ? { id } : {}), ...(description !== undefined ? { description } : {}),
      ...(site !== undefined ? { site } : {}), automatic_return_routing: arr, preference, max_flows: maxFlows,
    };
    let out: OnrampConfig | undefined;
    if (type === 'wireguard') {
      const wireguard = checkPeer(c, o, p, devices);
      if (wireguard !== undefined) out = { ...common, type, wireguard };
    } else if (type === 'gre') {
      const gre = checkGre(c, o, p);
      if (gre !== undefined) out = { ...common, type, gre };
    } else {
      const interconnect = checkInterconnect(c, o, p);
      if (interconnect !== undefined) out = { ...common, type, interconnect };
    }
    if (out !== undefined) paths.push(p);
    return out;
  });
  c.unique(declared, 'onramp name');
  c.unique(declaredIds, 'onramp id');
  // Unique identities on the wire: a GRE tunnel is (local, remote, key); a link belongs to one onramp.
  c.unique(onramps.map((o, i) => [o.type === 'gre' ? `${canonicalAddress(o.gre.local)} → ${canonicalAddress(o.gre.remote)} key ${o.gre.key ?? 'none'}` : undefined, `${paths[i]}.gre.remote`]), 'GRE tunnel');
  c.unique(onramps.map((o, i) => [o.type === 'interconnect' ? o.interconnect.link : undefined, `${paths[i]}.interconnect.link`]), 'interconnect link');
  onramps.forEach((o, i) => {
    if (o.type === 'interconnect' && o.interconnect.link === egress?.interface) {
      c.fail(`${paths[i]}.interconnect.link`, 'is the egress interface (egress.interface); an onramp needs a link of its own');
    }
  });
  c.unique(onramps.map((o, i) => [o.type === 'wireguard' ? `${o.wireguard.device}/${o.wireguard.public_key}` : undefined, `${paths[i]}.wireguard.public_key`]), 'peer (device/public key)');
  return onramps;
}

function checkPeer(c: Checker, o: Obj, p: string, devices: WireGuardDeviceConfig[]): WireGuardPeerSettings | undefined {
  const wp = `${p}.wireguard`;
  const v = c.get(o, 'wireguard');
  if (v === undefined) return c.missing(wp, 'the peer settings (public_key, allowed_ips, …)');
  const w = c.object(v, wp, ['device', 'public_key', 'preshared_key', 'preshared_key_file', 'allowed_ips', 'endpoint', 'persistent_keepalive']);
  if (w === undefined) return undefined;
  let device = c.name(w, 'device', wp, false);
  if (device === undefined && c.get(w, 'device') === undefined) {
    if (devices.length === 1) device = devices[0].name;
    else c.fail(`${wp}.device`, devices.length === 0 ? 'no wireguard_devices are configured: add one (listen_port, private_key)' : `is required when there are several wireguard_devices (${devices.map((d) => d.name).join(', ')})`);
  } else if (device !== undefined && !devices.some((d) => d.name === device)) {
    c.fail(`${wp}.device`, `no wireguard device named "${device}" (devices: ${devices.map((d) => d.name).join(', ') || 'none'})`);
    device = undefined;
  }
  const publicKey = c.key(w, 'public_key', wp, true);
  const psk = c.key(w, 'preshared_key', wp, false);
  const pskFile = c.string(w, 'preshared_key_file', wp, { what: 'a file path' });
  if (c.get(w, 'preshared_key') !== undefined && pskFile !== undefined) c.fail(`${wp}.preshared_key`, 'give preshared_key or preshared_key_file, not both');
  const allowed: string[] = [];
  for (const [item, ip] of c.list(w, 'allowed_ips', wp, { required: true, single: true, nonEmpty: true, what: 'prefixes' }) ?? []) {
    const pr = c.prefix(item, ip);
    if (pr !== undefined) allowed.push(pr);
  }
  const endpointValue = c.get(w, 'endpoint');
  let endpoint: string | undefined;
  if (endpointValue !== undefined) {
    const m = typeof endpointValue === 'string' ? ENDPOINT_RE.exec(endpointValue.trim()) : null;
    const addr = m ? m[1] ?? m[2] : '';
    const port = m ? Number(m[3]) : 0;
    if (m === null || parseAddress(addr, new Uint32Array(4)) === 0 || port < 1 || port > MAX_U16 || (m[1] !== undefined) !== addr.includes(':')) {
      c.fail(`${wp}.endpoint`, `must be address:port like 192.0.2.1:51820 or [2001:db8::1]:51820 (no host names), got ${describe(endpointValue)}`);
    } else endpoint = (endpointValue as string).trim();
  }
  const keepalive = c.int(w, 'persistent_keepalive', wp, 0, MAX_U16, { unit: 'seconds, 0 = off' }) ?? 0;
  if (device === undefined || publicKey === undefined) return undefined;
  return {
    device, public_key: publicKey,
    ...(psk !== undefined ? { preshared_key: psk } : {}), ...(pskFile !== undefined ? { preshared_key_file: pskFile } : {}),
    allowed_ips: allowed, ...(endpoint !== undefined ? { endpoint } : {}), persistent_keepalive: keepalive,
  };
}

function checkGre(c: Checker, o: Obj, p: string): GreSettings | undefined {
  const gp = `${p}.gre`;
  const v = c.get(o, 'gre');
  if (v === undefined) return c.missing(gp, 'the tunnel settings (local, remote)');
  const g = c.object(v, gp, ['local', 'remote', 'key', 'mtu']);
  if (g === undefined) return undefined;
  const local = c.addressField(g, 'local', gp, true);
  const remote = c.addressField(g, 'remote', gp, true);
  const key = c.int(g, 'key', gp, 0, MAX_U32);
  const mtu = c.int(g, 'mtu', gp, MIN_MTU, MAX_U16, { unit: 'bytes' }) ?? DEFAULT_GRE_MTU;
  if (local === undefined || remote === undefined) return undefined;
  if (local.includes(':') !== remote.includes(':')) {
    c.fail(`${gp}.remote`, `must be of the same address family as local (${local}), got ${describe(remote)}`);
    return undefined;
  }
  if (canonicalAddress(local) === canonicalAddress(remote)) {
    c.fail(`${gp}.remote`, 'must differ from local');
    return undefined;
  }
  return { local, remote, ...(key !== undefined ? { key } : {}), mtu };
}

function checkInterconnect(c: Checker, o: Obj, p: string): InterconnectSettings | undefined {
  const ip = `${p}.interconnect`;
  const v = c.get(o, 'interconnect');
  if (v === undefined) return c.missing(ip, 'the link settings (link)');
  const s = c.object(v, ip, ['link']);
  if (s === undefined) return undefined;
  const link = c.ifname(s, 'link', ip, true);
  return link === undefined ? undefined : { link };
}

function checkRoutes(c: Checker, top: Obj, siteNames: Set<string>, onrampNames: Set<string>, egress: EgressConfig | undefined): RouteConfig[] {
  const paths: string[] = [];
  const keys: string[] = [];
  const routes = entries(c, top, 'routes', ['prefix', 'next_hop', 'priority', 'weight', 'site'], (o, p) => {
    const pv = c.get(o, 'prefix');
    const prefix = pv === undefined ? c.missing(`${p}.prefix`, 'a prefix like 10.0.1.0/24') : c.prefix(pv, `${p}.prefix`);
    const priority = c.int(o, 'priority', p, 0, MAX_U32, { unit: 'lower wins' }) ?? DEFAULT_PRIORITY;
    const weight = c.int(o, 'weight', p, 1, MAX_U16) ?? DEFAULT_WEIGHT;
    const site = c.name(o, 'site', p, false);
    if (site !== undefined && !siteNames.has(site)) c.fail(`${p}.site`, `no site named "${site}" (sites: ${[...siteNames].join(', ') || 'none'})`);
    const nhPath = `${p}.next_hop`;
    const nh = c.get(o, 'next_hop');
    const what = 'internet, blackhole, or a mapping "onramp: NAME"';
    let nextHop: NextHopConfig | undefined;
    if (nh === undefined) c.missing(nhPath, what);
    else if (nh === 'internet' || nh === 'blackhole') nextHop = nh;
    else if (isObj(nh)) {
      const m = c.object(nh, nhPath, ['onramp']);
      const name = m === undefined ? undefined : c.name(m, 'onramp', nhPath, true);
      if (name !== undefined && !onrampNames.has(name)) {
        c.fail(`${nhPath}.onramp`, `no onramp named "${name}" (onramps: ${[...onrampNames].join(', ') || 'none'})`);
      } else if (name !== undefined) nextHop = { onramp: name };
    } else c.fail(nhPath, `must be ${what}, got ${describe(nh)}`);
    if (nextHop === 'internet' && (egress === undefined || egress.addresses.length === 0)) {
      c.fail(nhPath, 'leads to the Internet, but no egress pool is configured (egress.addresses)');
    }
    if (prefix === undefined || nextHop === undefined) return undefined;
    paths.push(p);
    const hop = typeof nextHop === 'string' ? nextHop : `onramp ${nextHop.onramp}`;
    keys.push(`${formatPrefix(parsePrefix(prefix)!)} via ${hop} scope ${site ?? '*'}`);
    return { prefix, next_hop: nextHop, priority, weight, ...(site !== undefined ? { site } : {}) };
  });
  c.unique(keys.map((k, i) => [k, paths[i]]), 'route');
  return routes;
}

function checkFirewall(c: Checker, top: Obj, siteNames: Set<string>, onrampNames: Set<string>): FirewallConfig {
  const o = section(c, top, 'firewall', ['default_action', 'rules']);
  const defaultAction = c.choice(o, 'default_action', 'firewall', ['allow', 'deny'] as const, false) ?? 'allow';
  const declaredNames: Array<[string | undefined, string]> = [];
  const declaredIds: Array<[string | undefined, string]> = [];
  const ruleKeys = ['name', 'id', 'action', 'sites', 'onramps', 'source_prefixes', 'destination_prefixes', 'protocols', 'source_ports', 'destination_ports'];
  const rules = entries(c, o, 'rules', ruleKeys, (r, p) => {
    const name = c.name(r, 'name', p, false);
    const id = c.int(r, 'id', p, 1, MAX_RULE_ID);
    declaredNames.push([name, `${p}.name`]);
    declaredIds.push([id === undefined ? undefined : String(id), `${p}.id`]);
    const action = c.choice(r, 'action', p, ['allow', 'deny'] as const, true);
    const refs = (key: string, known: Set<string>, what: string): string[] | undefined => {
      const list = c.list(r, key, p, { single: true, what: `${what} names` });
      if (list === undefined) return undefined;
      const out: string[] = [];
      for (const [item, ip] of list) {
        if (typeof item !== 'string' || !known.has(item)) c.fail(ip, `no ${what} named ${describe(item)} (${what}s: ${[...known].join(', ') || 'none'})`);
        else out.push(item);
      }
      return out;
    };
    const sites = refs('sites', siteNames, 'site');
    const onramps = refs('onramps', onrampNames, 'onramp');
    const prefixes = (key: string): string[] | undefined => {
      const list = c.list(r, key, p, { single: true, what: 'prefixes' });
      if (list === undefined) return undefined;
      const out: string[] = [];
      for (const [item, ip] of list) { const pr = c.prefix(item, ip); if (pr !== undefined) out.push(pr); }
      return out;
    };
    const src = prefixes('source_prefixes');
    const dst = prefixes('destination_prefixes');
    let protocols: ProtocolConfig[] | undefined;
    const numbers: number[] = [];
    const plist = c.list(r, 'protocols', p, { single: true, what: 'protocols (tcp, udp, icmp, icmpv6 or 0..255)' });
    if (plist !== undefined) {
      protocols = [];
      for (const [item, ip] of plist) {
        const n = protocolNumber(item);
        if (n < 0) c.fail(ip, `must be tcp, udp, icmp, icmpv6 or a protocol number 0..255, got ${describe(item)}`);
        else { numbers.push(n); protocols.push(typeof item === 'string' ? item.toLowerCase() : n); }
      }
    }
    const ports = (key: string): PortConfig[] | undefined => {
      const list = c.list(r, key, p, { single: true, what: 'ports (53 or "1000-2000")' });
      if (list === undefined) return undefined;
      const out: PortConfig[] = [];
      for (const [item, ip] of list) {
        const range = c.portRange(item, ip, 0);
        if (range !== undefined) out.push(range[0] === range[1] ? range[0] : `${range[0]}-${range[1]}`);
      }
      if (out.length > 0 && numbers.length > 0 && numbers.some((n) => n !== IPPROTO_TCP && n !== IPPROTO_UDP)) {
        c.fail(`${p}.${key}`, 'ports apply to tcp and udp only; with other protocols listed this rule would never match them (split the rule)');
      }
      return out;
    };
    const srcPorts = ports('source_ports');
    const dstPorts = ports('destination_ports');
    if (action === undefined) return undefined;
    const rule: FirewallRuleConfig = { action };
    if (name !== undefined) rule.name = name;
    if (id !== undefined) rule.id = id;
    if (sites !== undefined) rule.sites = sites;
    if (onramps !== undefined) rule.onramps = onramps;
    if (src !== undefined) rule.source_prefixes = src;
    if (dst !== undefined) rule.destination_prefixes = dst;
    if (protocols !== undefined) rule.protocols = protocols;
    if (srcPorts !== undefined) rule.source_ports = srcPorts;
    if (dstPorts !== undefined) rule.destination_ports = dstPorts;
    return rule;
  }, 'firewall');
  c.unique(declaredNames, 'rule name');
  c.unique(declaredIds, 'rule id');
  return { default_action: defaultAction, rules };
}

/** A protocol name or number → IP protocol number, -1 when invalid. */
function protocolNumber(v: unknown): number {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= MAX_PROTOCOL ? v : -1;
  if (typeof v !== 'string') return -1;
  const n = PROTOCOL_NAMES[v.toLowerCase()];
  if (n !== undefined && Object.hasOwn(PROTOCOL_NAMES, v.toLowerCase())) return n;
  return /^\d{1,3}$/.test(v) && Number(v) <= MAX_PROTOCOL ? Number(v) : -1;
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.p.column - b.p.column || a.i - b.i)
    .map(({ p }) => p);
}

// ─── Public entry points ─────────────────────────────────────────────────────────────────────────────

/**
 * Parses and validates a YAML configuration. Throws ConfigError listing every problem (file, line, column,
 * key path, reason), one per line; never any other exception.
 */
export function loadConfig(text: string, fileName: string): TetherConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const where = (offset: number): { line: number; column: number } => {
    const { line, col } = lineCounter.linePos(offset);
    return { line: Math.max(1, line), column: Math.max(1, col) };
  };
  if (doc.errors.length > 0) {
    throw new ConfigError(fileName, doc.errors.map((e) => ({
      path: '',
      ...where(e.pos[0]),
      message: `YAML syntax: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`,
    })));
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    throw new ConfigError(fileName, [{ path: '', line: 1, column: 1, message: 'the file is empty; expected a mapping with sites, onramps, routes, …' }]);
  }
  const builder = new PlainBuilder(doc);
  const plain = builder.convert(doc.contents, '', 0);
  const locate: Locator = (path, which) => {
    for (let p = path; ; p = parentPath(p)) {
      const pos = builder.positions.get(p);
      if (pos !== undefined) return where(p === path && which === 'key' ? pos.key : pos.value);
      if (p === '') return { line: 1, column: 1 };
    }
  };
  const c = new Checker(locate);
  for (const pr of builder.problems) c.problems.push({ path: pr.path, ...where(pr.offset), message: pr.message });
  const cfg = builder.problems.length === 0 ? check(plain, c) : undefined;
  if (c.problems.length > 0 || cfg === undefined) throw new ConfigError(fileName, sortProblems(c.problems));
  return cfg;
}

/**
 * Validates a configuration given as plain values (an API body, a stored JSON document, a TetherConfig
 * built in code). Same rules and messages as loadConfig, without line numbers.
 */
export function validateConfig(value: unknown, source = 'config'): TetherConfig {
  const c = new Checker(() => NO_POSITION);
  const cfg = check(value, c);
  if (c.problems.length > 0 || cfg === undefined) throw new ConfigError(source, c.problems);
  return cfg;
}

/** The configuration as YAML (for `tether config export`); loadConfig reads it back to an equal object. */
export function stringifyConfig(cfg: TetherConfig): string {
  return stringify(cfg, { lineWidth: 0 });
}

/** A deep copy with every secret (private keys, preshared keys) replaced by "(redacted)": safe to log or return. */
export function redact(cfg: TetherConfig): TetherConfig {
  const copy = structuredClone(cfg);
  for (const d of copy.wireguard_devices) if (d.private_key !== undefined) d.private_key = REDACTED;
  for (const o of copy.onramps) {
    if (o.type === 'wireguard' && o.wireguard.preshared_key !== undefined) o.wireguard.preshared_key = REDACTED;
  }
  return copy;
}

// ─── Names → ids ─────────────────────────────────────────────────────────────────────────────────────

export interface ConfigIds {
  /** Site name → id (configured sites only). */
  sites: Map<string, number>;
  /** Onramp name → id. */
  onramps: Map<string, number>;
  /** Onramp name → its site id (an onramp without a site has a site id of its own). */
  onrampSite: Map<string, number>;
  /** firewall.rules[i] → rule id. */
  firewallRules: number[];
}

/** Lowest free ids, in list order, for entries without one; given ids are kept. */
function assign(given: Array<number | undefined>, max: number, what: string, taken = new Set<number>()): number[] {
  for (const id of given) if (id !== undefined) taken.add(id);
  let next = 1;
  return given.map((id) => {
    if (id !== undefined) return id;
    while (taken.has(next)) next++;
    if (next > max) throw new RangeError(`more than ${max} ${what}s`);
    taken.add(next);
    return next;
  });
}

/**
 * Deterministic ids: explicit ids are kept; the others get the lowest free id in file order (sites first, then
 * one site per site-less onramp, in onramp order). Adding an entry can shift later ones: give ids to pin them.
 */
export function assignIds(cfg: TetherConfig): ConfigIds {
  const siteIds = assign(cfg.sites.map((s) => s.id), MAX_SITE_ID, 'site');
  const sites = new Map(cfg.sites.map((s, i) => [s.name, siteIds[i]]));
  const siteless = cfg.onramps.filter((o) => o.site === undefined);
  const ownSiteIds = assign(siteless.map(() => undefined), MAX_SITE_ID, 'site', new Set(siteIds));
  const ownSite = new Map(siteless.map((o, i) => [o.name, ownSiteIds[i]]));
  const onrampIds = assign(cfg.onramps.map((o) => o.id), MAX_ONRAMP_ID, 'onramp');
  const onramps = new Map(cfg.onramps.map((o, i) => [o.name, onrampIds[i]]));
  const onrampSite = new Map<string, number>();
  for (const o of cfg.onramps) {
    const id = o.site === undefined ? ownSite.get(o.name) : sites.get(o.site);
    if (id === undefined) throw new RangeError(`onramp ${o.name}: no site named ${o.site}`);
    onrampSite.set(o.name, id);
  }
  const firewallRules = assign(cfg.firewall.rules.map((r) => r.id), MAX_RULE_ID, 'firewall rule');
  return { sites, onramps, onrampSite, firewallRules };
}

function lookup(map: Map<string, number>, name: string, what: string): number {
  const id = map.get(name);
  if (id === undefined) throw new RangeError(`no ${what} named ${name}`);
  return id;
}

function portRangePair(p: PortConfig): [number, number] {
  if (typeof p === 'number') return [p, p];
  const m = PORT_RANGE_RE.exec(p);
  if (m) return [Number(m[1]), Number(m[2])];
  return [Number(p), Number(p)];
}

/** The data plane's view: names replaced by ids, seconds by milliseconds. Expects a validated config. */
export function toPipelineConfig(cfg: TetherConfig, ids: ConfigIds = assignIds(cfg)): PipelineConfig {
  const onramps: OnrampSpec[] = cfg.onramps.map((o) => ({
    id: lookup(ids.onramps, o.name, 'onramp'),
    name: o.name,
    type: o.type,
    site: lookup(ids.onrampSite, o.name, 'onramp'),
    automaticReturnRouting: o.automatic_return_routing,
    maxFlows: o.max_flows,
    preference: o.preference,
    // The pipeline clamps TCP MSS to what the tunnel carries (RFC 4459 section 3.2).
    ...(o.type === 'gre' ? { mtu: o.gre.mtu } : {}),
    // A WireGuard peer's allowed IPs are checked by the pipeline on the packet it inspects anyway.
    ...(o.type === 'wireguard' ? { allowedSources: o.wireguard.allowed_ips } : {}),
  }));
  const routes: RouteSpec[] = cfg.routes.map((r) => {
    const spec: RouteSpec = {
      prefix: r.prefix,
      kind: r.next_hop === 'internet' ? NextHopKind.Internet : r.next_hop === 'blackhole' ? NextHopKind.Blackhole : NextHopKind.Onramp,
      priority: r.priority,
      weight: r.weight,
      siteScope: r.site === undefined ? 0 : lookup(ids.sites, r.site, 'site'),
    };
    if (typeof r.next_hop === 'object') spec.port = lookup(ids.onramps, r.next_hop.onramp, 'onramp');
    return spec;
  });
  const rules: FirewallRuleSpec[] = cfg.firewall.rules.map((r, i) => {
    const spec: FirewallRuleSpec = { id: ids.firewallRules[i], action: r.action };
    if (r.sites) spec.sites = r.sites.map((s) => lookup(ids.sites, s, 'site'));
    if (r.onramps) spec.onramps = r.onramps.map((s) => lookup(ids.onramps, s, 'onramp'));
    if (r.source_prefixes) spec.srcPrefixes = [...r.source_prefixes];
    if (r.destination_prefixes) spec.dstPrefixes = [...r.destination_prefixes];
    if (r.protocols) spec.protocols = r.protocols.map(protocolNumber);
    if (r.source_ports) spec.srcPorts = r.source_ports.map(portRangePair);
    if (r.destination_ports) spec.dstPorts = r.destination_ports.map(portRangePair);
    return spec;
  });
  const timeouts: Partial<FlowTimeouts> = {};
  for (const [key, field] of TIMEOUT_FIELDS) timeouts[field] = cfg.flows.timeouts[key] * MS_PER_SECOND;
  const out: PipelineConfig = {
    onramps,
    routes,
    firewall: { rules, defaultAction: cfg.firewall.default_action },
    flows: { capacity4: cfg.flows.ipv4_capacity, capacity6: cfg.flows.ipv6_capacity, timeouts },
  };
  if (cfg.egress !== undefined) {
    const [portMin, portMax] = portRangePair(cfg.egress.port_range);
    out.egress = { addresses: [...cfg.egress.addresses], portMin, portMax };
  }
  return out;
}
