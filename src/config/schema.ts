/**
 * The configuration's schema, written once (TypeBox). docs/CONFIG.md documents every key.
 *
 * One schema serves three readers:
 *  - the TypeScript types below (`Static<>`): the configuration as the daemon uses it, every default filled in;
 *  - the loader (check-schema.ts), which reads a YAML file or an API body against it and reports problems in
 *    the file's words (line, key path, reason); the cross-field rules are in validate.ts;
 *  - the REST API (src/control/api.ts), whose route schemas are `inputSchema()` of these (plus Pick/Partial).
 *
 * The schemas describe the configuration as loaded (normalised). What a file or a body may leave out or
 * write shorter is annotated, and inputSchema() turns it into a JSON Schema of the accepted input:
 *  - `default`: the key may be left out (or null) and takes this value;
 *  - `single` (arrays): one value stands for a one-element list;
 *  - `contextual`: the key may be left out; validate.ts fills it in from the rest of the file;
 *  - `format`: a syntax the loader checks and normalises (formats.ts): prefix, address, wireguard-key, …;
 *  - `what` / `unit`: how problem messages name the expected value ("is required: a list of prefixes").
 *  - `discriminator` / `kinds` (unions of objects): the key that selects the variant, and every kind the data
 *    plane knows (a kind without a variant is "not supported yet").
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { MAX_ONRAMP_ID, MAX_SITE_ID } from '../common/ids.js';
import { DEFAULT_LANES, MAX_LANES } from '../common/lanes.js';
import { DEFAULT_DRAIN_IDLE_MS, FAILOVER_POLICIES, ONRAMP_TYPES } from '../dataplane/ports.js';
import { DEFAULT_TIMEOUTS } from '../flow/timeouts.js';
import { MAX_TTL as MAX_DNS_TTL } from '../gateway/dns.js';
import { DEFAULT_DLP_SCAN_BYTES } from '../gateway/dlp.js';
import { DEFAULT_CLASSIFY_BUFFER_BYTES, DEFAULT_CLASSIFY_WAIT_MS } from '../gateway/policy.js';
import { DEFAULT_RATE, RATE_INTERVAL_MS, type ProbeRate } from '../health/constants.js';
import { DEFAULT_PRIORITY, DEFAULT_WEIGHT } from '../route/route-table.js';
import {
  DEFAULT_CHILD_REKEY_SECONDS,
  DEFAULT_DPD_SECONDS,
  DEFAULT_DPD_TIMEOUT_SECONDS,
  DEFAULT_ESP_PROPOSALS,
  DEFAULT_IKE_PROPOSALS,
  DEFAULT_IKE_REKEY_SECONDS,
  DEFAULT_IPSEC_MTU,
  DEFAULT_REPLAY_WINDOW,
  DEFAULT_TRAFFIC_SELECTORS,
  IDENTITY_HINT,
  MAX_REPLAY_WINDOW,
  MIN_PSK_BYTES,
} from './ipsec.js';

// ─── Defaults and bounds ─────────────────────────────────────────────────────────────────────────────

export const DEFAULT_API_PORT = 8470;
export const DEFAULT_PREFERENCE = 100;
/** 1500-byte underlay minus the outer IPv4 header (20) and the GRE header without key (4). */
export const DEFAULT_GRE_MTU = 1476;
/**
 * wg-quick's and wireguard-go's default: a 1500-byte underlay minus WireGuard over IPv6 (40 IPv6 + 8 UDP + 32 of
 * WireGuard's own: 16 header, 16 authentication tag). Over IPv4 the 20 bytes left over hold the padding to 16 bytes
 * (whitepaper section 5.4.6): a 1420-byte packet leaves as 1484.
 */
export const DEFAULT_WIREGUARD_MTU = 1420;
export const DEFAULT_EGRESS_INTERFACE = 'tether-egress';
export const DEFAULT_PORT_RANGE = '1024-65535';
/** The Pipeline's own defaults (src/dataplane/pipeline.ts), written out so the file and export show them. */
export const DEFAULT_IPV4_CAPACITY = 1 << 16;
export const DEFAULT_IPV6_CAPACITY = 1 << 12;
export const DEFAULT_API_TOKEN_FILE = '/var/lib/tether/api-token';
export const DEFAULT_STORE_PATH = '/var/lib/tether/tether.db';
/** Per client address: a dashboard polls ~2 requests/s, the CLI a handful per command. */
export const DEFAULT_API_RATE = 50;
export const DEFAULT_API_BURST = 200;

export const MS_PER_SECOND = 1000;
export const MAX_U32 = 0xffffffff;
export const MAX_U16 = 0xffff;
export const MAX_PROTOCOL = 255;
export const MAX_RULE_ID = 65535;
/** A ClientHello or request head smaller than this is not worth waiting for; 64 KiB bounds the memory per flow. */
export const MIN_CLASSIFY_BUFFER_BYTES = 512;
export const MAX_CLASSIFY_BUFFER_BYTES = 64 * 1024;
/** 100 ms .. 60 s: below, a client on a slow link is cut; above, a silent client holds a buffer too long. */
export const MIN_CLASSIFY_WAIT_MS = 100;
export const MAX_CLASSIFY_WAIT_MS = 60_000;
/** 1 MiB per direction: DLP reads the start of a flow, not a whole download. */
export const MAX_DLP_SCAN_BYTES = 1024 * 1024;
/** One minute: short enough that a removed override stops being cached soon. */
export const DEFAULT_DNS_OVERRIDE_TTL = 60;
/** src/flow/flow-table.ts MAX_CAPACITY. */
export const MAX_FLOW_CAPACITY = 1 << 29;
/** RFC 791 §3.1: every IPv4 host accepts 576-byte datagrams. */
export const MIN_MTU = 576;
export const MAX_TIMEOUT_SECONDS = 30 * 24 * 3600;
/** Linux IFNAMSIZ (16) minus the terminating NUL. */
export const MAX_IFNAME = 15;

/** The names of sites, onramps, devices and rules: the one definition (the API's schemas are derived from it). */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$';
export const NAME_HINT = "a name of letters, digits, '-', '_' or '.' (up to 63, starting with a letter or digit)";

// ─── Building blocks ─────────────────────────────────────────────────────────────────────────────────

/** The annotations the loader reads besides JSON Schema's own keywords (see the file header). */
export interface Annotations {
  what?: string;
  unit?: string;
  single?: boolean;
  contextual?: boolean;
  kinds?: readonly string[];
  discriminator?: string;
  /** What a discriminated union's entries are called in messages ("settings for a gre onramp"). */
  noun?: string;
}
/** Every annotation key: inputSchema() removes them, so the API's JSON Schema validator never sees them. */
export const ANNOTATION_KEYS: ReadonlyArray<keyof Annotations> = ['what', 'unit', 'single', 'contextual', 'kinds', 'discriminator', 'noun'];

export const Name = Type.String({ pattern: NAME_PATTERN, what: NAME_HINT, description: "1-63 letters, digits, '-', '_' or '.', starting with a letter or digit" });
const Text = Type.String({ what: 'text' });
const FilePath = Type.String({ what: 'a file path' });
const Address = Type.String({ format: 'address', what: 'an IPv4 or IPv6 address', description: 'an IPv4 or IPv6 address' });
const Prefix = Type.String({ format: 'prefix', what: 'a prefix like 10.0.1.0/24 or 2001:db8::/32', description: 'a prefix like 10.0.1.0/24 or 2001:db8::/32; a bare address is a host prefix' });
const WireGuardKey = Type.String({ format: 'wireguard-key', what: 'a WireGuard key in base64 (44 characters, as printed by wg genkey / wg pubkey)' });
const IfName = Type.String({ format: 'ifname', what: `an interface name (1-${MAX_IFNAME} letters, digits, '-', '_' or '.')` });
const Int = (minimum: number, maximum: number, extra: Record<string, unknown> = {}): ReturnType<typeof Type.Integer> => Type.Integer({ minimum, maximum, ...extra });
/** A list where one value stands for a one-element list. */
const List = <T extends TSchema>(item: T, what: string, extra: Record<string, unknown> = {}): ReturnType<typeof Type.Array<T>> => Type.Array(item, { single: true, what, ...extra });
const Action = Type.Union([Type.Literal('allow'), Type.Literal('deny')]);
/** 53 or "1000-2000" (TCP/UDP); normalised to a number for one port. */
const Port = Type.Union([Int(0, MAX_U16), Type.String({ description: '"1000-2000"' })], { format: 'port-range' });
/** tcp, udp, icmp, icmpv6 (case-insensitive) or 0..255. */
const Protocol = Type.Union([Int(0, MAX_PROTOCOL), Type.String({ description: 'tcp, udp, icmp, icmpv6' })], { format: 'protocol' });

// ─── Sections ────────────────────────────────────────────────────────────────────────────────────────

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LogSchema = Type.Object({
  /** pino level. */
  level: Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)), { default: 'info' }),
  /** One JSON line per ended flow: 'off', 'stdout', or a file path. */
  flow_log: Type.String({ default: 'off', what: "'off', 'stdout' or a file path" }),
}, { additionalProperties: false, default: {} });

/** PEM files for HTTPS (Fastify's https option); paths, so settable only in the YAML file (docs/API.md). */
export const ApiTlsSchema = Type.Object({
  cert_file: FilePath,
  key_file: FilePath,
}, { additionalProperties: false });

/** A token bucket per client address: `requests_per_second` refill, `burst` capacity; 0 switches it off. */
export const ApiRateLimitSchema = Type.Object({
  requests_per_second: Int(0, MAX_U32, { default: DEFAULT_API_RATE, unit: 'requests per second' }),
  burst: Int(1, MAX_U32, { default: DEFAULT_API_BURST, unit: 'requests' }),
}, { additionalProperties: false, default: {} });

export const ApiSettingsSchema = Type.Object({
  /** Local only unless asked; a non-loopback address needs `tls` (or `insecure_http: true`, validate.ts). */
  listen: Type.String({ ...Address, default: '127.0.0.1' }),
  port: Int(1, MAX_U16, { default: DEFAULT_API_PORT }),
  /** Bearer token for every call (reads too); generated on first start with mode 0600. */
  token_file: Type.String({ ...FilePath, default: DEFAULT_API_TOKEN_FILE }),
  /** Reads (GET, POST /v1/explain) from loopback without the token. Off: any local user could read keys' peers and flows. */
  open_reads: Type.Boolean({ default: false }),
  /** Names besides the listen address and `localhost` that the Host header may carry (a DNS name the certificate is for). */
  allowed_hosts: List(Type.String({ what: 'a host name' }), 'host names', { default: [] }),
  tls: Type.Optional(ApiTlsSchema),
  /** Plain HTTP on a non-loopback address: the token crosses the network in clear text. */
  insecure_http: Type.Boolean({ default: false }),
  rate_limit: ApiRateLimitSchema,
}, { additionalProperties: false, default: {} });

export const StoreSettingsSchema = Type.Object({
  /** SQLite database; ':memory:' keeps nothing across restarts. */
  path: Type.String({ default: DEFAULT_STORE_PATH, what: "a file path (or ':memory:')" }),
}, { additionalProperties: false, default: {} });

/** How established flows move between the site's onramps (the policies: src/dataplane/ports.ts FAILOVER_POLICIES). */
export const SiteFailoverSchema = Type.Object({
  policy: Type.Union(FAILOVER_POLICIES.map((p) => Type.Literal(p)), {
    default: 'follow',
    description: "follow: replies go where the flow last arrived; pin: to the onramp that started it while it is not down; drain: failover at once, failback when idle",
  }),
  /** drain: a flow on a backup moves back to the preferred healthy onramp after this long without a packet. */
  drain_idle_seconds: Int(1, MAX_TIMEOUT_SECONDS, { default: DEFAULT_DRAIN_IDLE_MS / MS_PER_SECOND, unit: 'seconds' }),
}, { additionalProperties: false, what: 'the failover settings (policy, drain_idle_seconds)' });

export const SiteSchema = Type.Object({
  name: Name,
  /** Assigned when absent (assignIds). */
  id: Type.Optional(Int(1, MAX_SITE_ID, { description: 'data-plane site id; assigned when absent, then fixed' })),
  description: Type.Optional(Text),
  /** The site's private address space. Informational (overlap report); forwarding uses routes and ARR. */
  prefixes: List(Prefix, 'prefixes', { default: [], description: "the site's private address space (informational)" }),
  /** Failover and failback of established flows between the site's onramps; absent = policy follow. */
  failover: Type.Optional(SiteFailoverSchema),
}, { additionalProperties: false, $id: 'Site' });

/** One userspace WireGuard interface: the device-level half of WireGuard (its peers are onramps). */
export const WireGuardDeviceSchema = Type.Object({
  name: Name,
  /** Underlay address the UDP socket listens on; '0.0.0.0' or '::' = every edge address. */
  listen_address: Type.String({ ...Address, default: '0.0.0.0' }),
  listen_port: Int(1, MAX_U16),
  /** Exactly one of private_key and private_key_file (validate.ts). Secret: see redact(). */
  private_key: Type.Optional(Type.String({ ...WireGuardKey, description: 'base64 (wg genkey); secret: returned as "(redacted)"; send "(redacted)" to keep the stored one' })),
  private_key_file: Type.Optional(FilePath),
}, { additionalProperties: false, $id: 'WireGuardDevice' });

export const WireGuardPeerSchema = Type.Object({
  /** The wireguard_devices entry this peer belongs to; filled in when there is only one device. */
  device: Type.String({ ...Name, contextual: true }),
  public_key: Type.String({ ...WireGuardKey, description: 'base64 (wg pubkey)' }),
  /** Optional extra symmetric key (wg genpsk); at most one of preshared_key and preshared_key_file. Secret. */
  preshared_key: Type.Optional(Type.String({ ...WireGuardKey, description: 'secret: returned as "(redacted)"' })),
  preshared_key_file: Type.Optional(FilePath),
  /** Inner source prefixes accepted from this peer (cryptokey routing, WireGuard whitepaper §2). */
  allowed_ips: List(Prefix, 'prefixes', { minItems: 1, description: 'inner source prefixes accepted from this peer' }),
  /** Absent = learnt from the peer's first handshake. */
  endpoint: Type.Optional(Type.String({ format: 'endpoint', description: 'address:port or [v6]:port' })),
  persistent_keepalive: Int(0, MAX_U16, { default: 0, unit: 'seconds, 0 = off' }),
  /** Tunnel MTU (inner packet size); larger packets get MSS clamping, fragments or ICMP too-big (like GRE's). */
  mtu: Int(MIN_MTU, MAX_U16, { default: DEFAULT_WIREGUARD_MTU, unit: 'bytes' }),
}, { additionalProperties: false, what: 'the peer settings (public_key, allowed_ips, …)' });

export const GreSchema = Type.Object({
  /** The edge's tunnel endpoint address. */
  local: Address,
  /** The site's tunnel endpoint address (same family as local). */
  remote: Address,
  /** RFC 2890 §2.1 key; absent = no key field. */
  key: Type.Optional(Int(0, MAX_U32)),
  /** Tunnel MTU (inner packet size); larger packets get MSS clamping / ICMP too-big. */
  mtu: Int(MIN_MTU, MAX_U16, { default: DEFAULT_GRE_MTU, unit: 'bytes' }),
}, { additionalProperties: false, what: 'the tunnel settings (local, remote)' });

/** A rekey more often than this is a misconfiguration (and a CPU cost), not a security gain. */
export const MIN_REKEY_SECONDS = 60;
/** The longest SA lifetime accepted, a week: a longer one only postpones fresh keys (strongSwan's defaults are hours). */
export const MAX_LIFETIME_SECONDS = 7 * 24 * 3600;
/** DPD more rarely than hourly would leave dead SAs for hours. */
export const MAX_DPD_SECONDS = 3600;

/**
 * An SA's lifetime (strongSwan's rekey_time, rekey_time + over_time, rand_time): rekey at `rekey_seconds` minus a
 * random share of `jitter_seconds`, hard delete at `lifetime_seconds`. The last two are filled in from the first
 * (validate.ts): lifetime = rekey + 10 %, jitter = lifetime − rekey.
 */
const Lifetime = (rekey: number) => Type.Object({
  rekey_seconds: Int(MIN_REKEY_SECONDS, MAX_LIFETIME_SECONDS, { default: rekey, unit: 'seconds' }),
  lifetime_seconds: Int(MIN_REKEY_SECONDS, MAX_LIFETIME_SECONDS, { contextual: true, unit: 'seconds', description: 'hard delete; default rekey_seconds + 10 %' }),
  jitter_seconds: Int(0, MAX_LIFETIME_SECONDS, { contextual: true, unit: 'seconds', description: 'rekey up to this much early, at random; default lifetime_seconds − rekey_seconds' }),
}, { additionalProperties: false, default: {}, what: 'the lifetime settings (rekey_seconds, lifetime_seconds, jitter_seconds)' });

/** Identity keys (local_id, remote_id): strongSwan's spelling, checked and normalised by formats.ts. */
const IkeId = Type.String({ format: 'ike-id', what: IDENTITY_HINT });

/**
 * One IPsec site: IKEv2 (RFC 7296) with a pre-shared key, ESP (RFC 4303) in a route-based tunnel. Compiled to the
 * IKE engine's IkePeerConfig by compile.ts (toIkePeerConfig); the keys follow swanctl.conf's where one exists.
 */
export const IpsecSchema = Type.Object({
  /** The edge's underlay address the site connects to (IKE on UDP 500/4500, ESP). */
  local_address: Type.String({ format: 'ipv4-address', what: 'an IPv4 address (the edge\'s underlay address)' }),
  /** The site's underlay address; 'any': a responder that accepts the site from wherever, matched by remote_id. */
  remote_address: Type.String({ format: 'ipsec-remote', default: 'any', what: "an IPv4 address, or 'any'" }),
  /** What the edge calls itself in IKE_AUTH (IDi/IDr); default: local_address. */
  local_id: Type.Optional(IkeId),
  /** What the site must call itself; default: remote_address (required when that is 'any'). */
  remote_id: Type.Optional(IkeId),
  /** RFC 7296 §2.15 pre-shared key. Exactly one of psk and psk_file (validate.ts). Secret: see redact(). */
  psk: Type.Optional(Type.String({ format: 'psk', what: `a pre-shared key of at least ${MIN_PSK_BYTES} bytes (text, 0xHEX or 0sBASE64)`, description: 'text, 0x + hex or 0s + base64 (as in swanctl.conf); secret: returned as "(redacted)"; send "(redacted)" to keep the stored one' })),
  psk_file: Type.Optional(FilePath),
  /** initiate: the edge starts (and restarts) the IKE SA; respond: it waits for the site. */
  mode: Type.Union([Type.Literal('initiate'), Type.Literal('respond')], { default: 'respond', description: 'initiate: the edge connects to the site; respond: the site connects to the edge' }),
  ike_proposals: List(Type.String({ format: 'ike-proposal', what: 'an IKE proposal like aes256gcm16-prfsha256-ecp256' }), 'IKE proposals (strongSwan syntax)', { minItems: 1, default: [...DEFAULT_IKE_PROPOSALS] }),
  esp_proposals: List(Type.String({ format: 'esp-proposal', what: 'an ESP proposal like aes256gcm16 or aes256-sha256-ecp256' }), 'ESP proposals (strongSwan syntax)', { minItems: 1, default: [...DEFAULT_ESP_PROPOSALS] }),
  /** The edge's side of the tunnel (inner addresses reached through it from the site) and the site's side. */
  local_ts: List(Prefix, 'prefixes', { minItems: 1, default: [...DEFAULT_TRAFFIC_SELECTORS] }),
  remote_ts: List(Prefix, 'prefixes', { minItems: 1, default: [...DEFAULT_TRAFFIC_SELECTORS] }),
  ike_lifetime: Lifetime(DEFAULT_IKE_REKEY_SECONDS),
  child_lifetime: Lifetime(DEFAULT_CHILD_REKEY_SECONDS),
  dpd_seconds: Int(0, MAX_DPD_SECONDS, { default: DEFAULT_DPD_SECONDS, unit: 'seconds, 0 = off' }),
  /** An unanswered liveness check is retransmitted this long, then the peer is dead (its SAs end, the onramp is down). */
  dpd_timeout_seconds: Int(1, MAX_DPD_SECONDS, { default: DEFAULT_DPD_TIMEOUT_SECONDS, unit: 'seconds' }),
  /** ESP anti-replay window (RFC 4303 §3.4.3); 0 = off (Cloudflare's default), else at least 32. */
  replay_window: Int(0, MAX_REPLAY_WINDOW, { default: DEFAULT_REPLAY_WINDOW, unit: 'packets, 0 = off' }),
  /** ESP in UDP 4500 even without a NAT (strongSwan with kernel-libipsec does it anyway). */
  force_encapsulation: Type.Boolean({ default: false }),
  /** Tunnel MTU (inner packet size); larger packets get MSS clamping / fragmentation-needed, like GRE's. */
  mtu: Int(MIN_MTU, MAX_U16, { default: DEFAULT_IPSEC_MTU, unit: 'bytes' }),
}, { additionalProperties: false, what: 'the IPsec settings (local_address, psk, …)' });

export const InterconnectSchema = Type.Object({
  /** The L3 link (interface name) whose packets belong to this onramp. */
  link: Type.String({ ...IfName, description: 'interface name, up to 15 characters' }),
}, { additionalProperties: false, what: 'the link settings (link)' });

/** Probe rates, from the health engine's table (src/health/constants.ts): low 10 s, mid 1 s, high 250 ms. */
export const HEALTH_CHECK_RATES = Object.keys(RATE_INTERVAL_MS) as ProbeRate[];
export const HEALTH_CHECK_TYPES = ['request', 'reply'] as const;

/**
 * Tunnel health checks (docs/HEALTH.md): ICMP echo carried inside the tunnel. Absent: passive (WireGuard handshake
 * age alone feeds the state). Cross-field rules (both addresses, one family) in validate.ts.
 */
export const HealthCheckSchema = Type.Object({
  /** `request`: the site side answers; a probe goes to this address. */
  target: Type.Optional(Type.String({ ...Address, description: 'address on the site side the probes go to (type request)' })),
  /** The edge's own address inside the tunnel: probes come from it, the site's probes to it are answered. */
  source: Type.Optional(Type.String({ ...Address, description: "the edge's tunnel address: probes come from it, echo requests to it are answered" })),
  rate: Type.Union(HEALTH_CHECK_RATES.map((r) => Type.Literal(r)), { default: DEFAULT_RATE, description: 'low (every 10 s), mid (every second) or high (every 250 ms)' }),
  /** request: the edge probes the target; reply: the site probes `source`, each answered probe counts as a success. */
  type: Type.Union(HEALTH_CHECK_TYPES.map((t) => Type.Literal(t)), { default: 'request', description: 'request: the edge probes the target; reply: the site probes the edge (answered and counted)' }),
}, { additionalProperties: false, what: 'the health check settings (target, source, rate, type)' });

/** The onramp kinds, from the data plane's list (src/dataplane/ports.ts). */
export const OnrampKindSchema = Type.Union(ONRAMP_TYPES.map((t) => Type.Literal(t)));

/** What every onramp has; `type` is any kind here and one literal in each variant below. */
const onrampCommon = {
  name: Name,
  id: Type.Optional(Int(1, MAX_ONRAMP_ID, { description: 'data-plane port id; assigned when absent, then fixed' })),
  description: Type.Optional(Text),
  type: OnrampKindSchema,
  /** Site name; absent = the onramp forms a site of its own. */
  site: Type.Optional(Name),
  automatic_return_routing: Type.Boolean({ description: 'ARR: replies of flows this onramp starts go back to it (new flows only)' }),
  /** Failover order within the site: lower is preferred. */
  preference: Int(0, MAX_U16, { default: DEFAULT_PREFERENCE, description: 'failover order within the site, lower preferred' }),
  /** Flows this onramp may start and hold at once, in each flow table; 0 = no quota; absent = the fair share (docs/CONFIG.md). */
  max_flows: Type.Optional(Int(0, MAX_FLOW_CAPACITY, { unit: 'flows; 0 = no quota; absent = fair share of the table' })),
  /** Absent: passive health (WireGuard handshake age only). */
  health_check: Type.Optional(HealthCheckSchema),
  /**
   * Inner source prefixes accepted from this onramp (ingress filtering, BCP 38 / RFC 2827); absent = any. A WireGuard
   * onramp filters by its peer's allowed_ips instead (validate.ts refuses both).
   */
  allowed_sources: Type.Optional(List(Prefix, 'prefixes', { minItems: 1, description: 'inner source prefixes accepted from this onramp; absent = any (WireGuard: allowed_ips)' })),
  /**
   * The edge's address in the ICMP errors it sends toward this onramp (time exceeded: the hop traceroute shows), at
   * most one per family. Absent (or a family missing): health_check.source, then the egress pool's first address.
   */
  icmp_source: Type.Optional(List(Address, 'IPv4 or IPv6 addresses', { maxItems: 2, description: "the edge's address in the ICMP errors it sends to this onramp (one per family)" })),
};

export const WireGuardOnrampSchema = Type.Object({ ...onrampCommon, type: Type.Literal('wireguard'), wireguard: WireGuardPeerSchema }, { additionalProperties: false });
export const GreOnrampSchema = Type.Object({ ...onrampCommon, type: Type.Literal('gre'), gre: GreSchema }, { additionalProperties: false });
export const InterconnectOnrampSchema = Type.Object({ ...onrampCommon, type: Type.Literal('interconnect'), interconnect: InterconnectSchema }, { additionalProperties: false });
export const IpsecOnrampSchema = Type.Object({ ...onrampCommon, type: Type.Literal('ipsec'), ipsec: IpsecSchema }, { additionalProperties: false });

export const OnrampSchema = Type.Union([WireGuardOnrampSchema, GreOnrampSchema, InterconnectOnrampSchema, IpsecOnrampSchema], {
  $id: 'Onramp', discriminator: 'type', kinds: ONRAMP_TYPES, noun: 'onramp',
});

export const NextHopSchema = Type.Union([
  Type.Literal('internet'),
  Type.Literal('blackhole'),
  Type.Object({ onramp: Name }, { additionalProperties: false }),
], { what: 'internet, blackhole, or a mapping "onramp: NAME"' });

export const RouteSchema = Type.Object({
  prefix: Type.String({ ...Prefix, what: 'a prefix like 10.0.1.0/24' }),
  next_hop: NextHopSchema,
  priority: Int(0, MAX_U32, { default: DEFAULT_PRIORITY, unit: 'lower wins' }),
  /** ECMP share. */
  weight: Int(1, MAX_U16, { default: DEFAULT_WEIGHT, description: 'ECMP share' }),
  /** Site name: the route applies only to flows from that site. Absent = every site. */
  site: Type.Optional(Name),
}, { additionalProperties: false, $id: 'Route' });

export const EgressSchema = Type.Object({
  /** The egress TUN through which NAT'ed packets enter the kernel's routing. */
  interface: Type.String({ ...IfName, default: DEFAULT_EGRESS_INTERFACE }),
  /** Source NAT pool (IPv4 and/or IPv6). */
  addresses: List(Address, 'IPv4 or IPv6 addresses', { minItems: 1, description: 'source NAT pool' }),
  /** "min-max" external ports for TCP/UDP (one port is accepted and written as "p-p"). */
  port_range: Type.Unsafe<string>(Type.Union([Type.String({ description: '"min-max"' }), Int(1, MAX_U16)], { format: 'port-pool', default: DEFAULT_PORT_RANGE })),
  /** Ports of one pool address and protocol one site may hold; 0 = no quota; absent = the fair share (docs/CONFIG.md). */
  max_ports_per_site: Type.Optional(Int(0, MAX_U16 + 1, { unit: 'ports; 0 = no quota; absent = fair share of each pool address' })),
}, { additionalProperties: false, $id: 'Egress' });

/** The L3/L4 selectors firewall and gateway rules share (src/policy/firewall.ts has their semantics). */
const RuleSelectors = {
  sites: Type.Optional(List(Name, 'site names', { description: 'source sites' })),
  onramps: Type.Optional(List(Name, 'onramp names', { description: 'onramps the flow arrived on' })),
  source_prefixes: Type.Optional(List(Prefix, 'prefixes')),
  destination_prefixes: Type.Optional(List(Prefix, 'prefixes')),
  protocols: Type.Optional(List(Protocol, 'protocols (tcp, udp, icmp, icmpv6 or 0..255)')),
  /** TCP and UDP only (validate.ts). */
  source_ports: Type.Optional(List(Port, 'ports (53 or "1000-2000")')),
  destination_ports: Type.Optional(List(Port, 'ports (53 or "1000-2000")')),
};

export const FirewallRuleSchema = Type.Object({
  /** Optional label, unique; shown with the rule id in flow explanations. */
  name: Type.Optional(Name),
  /** Reported in flows; assigned when absent. */
  id: Type.Optional(Int(1, MAX_RULE_ID, { description: 'rule id; assigned when absent, then fixed' })),
  action: Action,
  ...RuleSelectors,
}, { additionalProperties: false, $id: 'FirewallRule' });

export const FirewallSchema = Type.Object({
  default_action: Type.Union(Action.anyOf, { default: 'allow' }),
  rules: Type.Array(FirewallRuleSchema, { default: [], what: 'mappings' }),
}, { additionalProperties: false, default: {} });

export const GATEWAY_ACTIONS = ['allow', 'block', 'log', 'override'] as const;
export const NAME_SOURCES = ['sni', 'http_host', 'dns'] as const;
const Fallback = Type.Union([Type.Literal('allow'), Type.Literal('block')]);

/** Gateway rules (docs/POLICY.md): the firewall's selectors plus a hostname read from DNS, TLS SNI or HTTP Host. */
export const GatewayRuleSchema = Type.Object({
  name: Type.Optional(Name),
  id: Type.Optional(Int(1, MAX_RULE_ID, { description: 'rule id; assigned when absent, then fixed' })),
  action: Type.Union(GATEWAY_ACTIONS.map((a) => Type.Literal(a)), { description: 'allow, block, log, or (DNS only) override' }),
  ...RuleSelectors,
  /** Exact names or "*.example.com" (subdomains, not the apex); absent = no hostname condition. */
  hostnames: Type.Optional(List(Type.String({ what: 'a host name or *.suffix' }), 'host names')),
  /** Where the name is read; absent = all three. */
  sources: Type.Optional(List(Type.Union(NAME_SOURCES.map((n) => Type.Literal(n))), 'sni, http_host or dns')),
  /** action override: the edge answers matching DNS queries itself. */
  override: Type.Optional(Type.Object({
    /** IPv4 addresses answer A queries, IPv6 AAAA; none of the query's family = an empty answer. */
    addresses: Type.Optional(List(Address, 'IPv4 or IPv6 addresses')),
    nxdomain: Type.Optional(Type.Boolean({ description: 'answer NXDOMAIN instead of addresses' })),
    ttl: Int(0, MAX_DNS_TTL, { default: DEFAULT_DNS_OVERRIDE_TTL, unit: 'seconds' }),
  }, { additionalProperties: false })),
  /** DLP profiles scanned on the clear-text flows this rule allows or logs. */
  dlp: Type.Optional(List(Name, 'DLP profile names')),
  /** A flow waiting for a name that does not come in time (or overflows the buffer); absent = classify.fallback. */
  fallback: Type.Optional(Fallback),
}, { additionalProperties: false, $id: 'GatewayRule' });

export const DlpProfileSchema = Type.Object({
  name: Name,
  /** block: the flow is cut (RST both ways); log: logged, the flow goes on. */
  action: Type.Union([Type.Literal('block'), Type.Literal('log')], { default: 'block' }),
  cards: Type.Optional(Type.Boolean({ description: 'payment card numbers (Luhn)' })),
  ibans: Type.Optional(Type.Boolean({ description: 'IBANs (ISO 13616, mod 97)' })),
  ssns: Type.Optional(Type.Boolean({ description: 'US social security numbers' })),
  keywords: Type.Optional(List(Type.String({ minLength: 1, what: 'a keyword' }), 'keywords')),
  regexes: Type.Optional(List(Type.String({ minLength: 1, what: 'a regular expression' }), 'regular expressions')),
}, { additionalProperties: false, $id: 'DlpProfile' });

export const GatewaySchema = Type.Object({
  classify: Type.Object({
    /** Bytes of a flow's first payload held while waiting for its name. */
    buffer_bytes: Int(MIN_CLASSIFY_BUFFER_BYTES, MAX_CLASSIFY_BUFFER_BYTES, { default: DEFAULT_CLASSIFY_BUFFER_BYTES, unit: 'bytes' }),
    /** How long a flow may wait for its name. */
    wait_ms: Int(MIN_CLASSIFY_WAIT_MS, MAX_CLASSIFY_WAIT_MS, { default: DEFAULT_CLASSIFY_WAIT_MS, unit: 'milliseconds' }),
    fallback: Type.Union(Fallback.anyOf, { default: 'allow' }),
  }, { additionalProperties: false, default: {} }),
  /** Bytes of each direction of a clear-text flow scanned by DLP. */
  dlp_scan_bytes: Int(1, MAX_DLP_SCAN_BYTES, { default: DEFAULT_DLP_SCAN_BYTES, unit: 'bytes' }),
  dlp_profiles: Type.Array(DlpProfileSchema, { default: [], what: 'mappings' }),
  rules: Type.Array(GatewayRuleSchema, { default: [], what: 'mappings' }),
}, { additionalProperties: false, default: {} });

/** Which config key maps to which FlowTimeouts field (src/flow/timeouts.ts has their meaning and the RFC floors). */
export const TIMEOUT_FIELDS = [
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
] as const;

/** Idle timeouts in seconds. */
export const TimeoutsSchema = Type.Object(
  Object.fromEntries(TIMEOUT_FIELDS.map(([key, field]) => [key, Int(1, MAX_TIMEOUT_SECONDS, { default: DEFAULT_TIMEOUTS[field] / MS_PER_SECOND, unit: 'seconds' })])) as
    Record<(typeof TIMEOUT_FIELDS)[number][0], ReturnType<typeof Type.Integer>>,
  { additionalProperties: false, default: {} },
);

export const FlowsSchema = Type.Object({
  /** Preallocated IPv4 flow slots. */
  ipv4_capacity: Int(1, MAX_FLOW_CAPACITY, { default: DEFAULT_IPV4_CAPACITY, unit: 'flows' }),
  /** Preallocated IPv6 flow slots. */
  ipv6_capacity: Int(1, MAX_FLOW_CAPACITY, { default: DEFAULT_IPV6_CAPACITY, unit: 'flows' }),
  timeouts: TimeoutsSchema,
}, { additionalProperties: false, default: {} });

/**
 * Busy-poll budget, µs (docs/PERFORMANCE.md "Busy polling"): after a wakeup with packets the daemon spins on its TUNs
 * this long for the next one before it sleeps. Off by default, like Linux's net.core.busy_poll: on the 2-core lab
 * machine it did not move ping's or a request/response's p50, and traffic with a packet every few tens of µs would
 * keep the thread spinning (up to a core) for what costs ~10 % of one without it.
 */
export const DEFAULT_BUSY_POLL_US = 0;
/** Beyond a millisecond a spin is a core (kBusyPollMaxUs in native/src/tether_io.cc). */
export const MAX_BUSY_POLL_US = 1000;

/**
 * The native flow cache (docs/ARCHITECTURE.md "Native flow cache"; docs/PERFORMANCE.md "Latency"): established UDP and
 * ICMP echo flows between the egress and interconnect TUNs forwarded inside the addon, never entering JavaScript. On by
 * default: ping's added latency per pass fell from 64–100 µs to ~35–45 µs on the lab machine, the 64-byte UDP ratio
 * did not fall, and the oracle test shows the bytes equal to the JS pipeline's.
 */
export const DEFAULT_FLOW_CACHE = true;

/** How the daemon runs its data plane; read at start (a change needs a restart). */
export const DaemonSchema = Type.Object({
  /** TUNSETOFFLOAD on the egress and interconnect TUNs (docs/UNDERLAY.md "Super-packets"); `tether run --no-offload` overrides. */
  offload: Type.Boolean({ default: true }),
  busy_poll_us: Int(0, MAX_BUSY_POLL_US, { default: DEFAULT_BUSY_POLL_US, unit: 'microseconds' }),
  /** Lanes: worker threads, each with a pipeline and its own queue of every egress and interconnect TUN (docs/ARCHITECTURE.md "Lanes"). */
  lanes: Int(1, MAX_LANES, { default: DEFAULT_LANES, unit: 'threads' }),
  /** The native flow cache (one lane only: with lanes it stays off). */
  flow_cache: Type.Boolean({ default: DEFAULT_FLOW_CACHE }),
}, { additionalProperties: false, default: {} });

const listOf = <T extends TSchema>(item: T): ReturnType<typeof Type.Array<T>> => Type.Array(item, { default: [], what: 'mappings' });

export const TetherConfigSchema = Type.Object({
  version: Int(1, 1, { default: 1 }) as unknown as ReturnType<typeof Type.Literal<1>>,
  log: LogSchema,
  api: ApiSettingsSchema,
  store: StoreSettingsSchema,
  sites: listOf(SiteSchema),
  wireguard_devices: listOf(WireGuardDeviceSchema),
  onramps: listOf(OnrampSchema),
  routes: listOf(RouteSchema),
  /** Absent: no Internet egress (then no route may lead to the Internet). */
  egress: Type.Optional(EgressSchema),
  firewall: FirewallSchema,
  gateway: GatewaySchema,
  flows: FlowsSchema,
  daemon: DaemonSchema,
}, { additionalProperties: false, $id: 'Config', description: 'the whole configuration, as in the YAML file (docs/CONFIG.md)' });

// ─── Types ───────────────────────────────────────────────────────────────────────────────────────────

export type TetherConfig = Static<typeof TetherConfigSchema>;
export type LogConfig = Static<typeof LogSchema>;
export type ApiConfig = Static<typeof ApiSettingsSchema>;
export type StoreConfig = Static<typeof StoreSettingsSchema>;
export type SiteConfig = Static<typeof SiteSchema>;
export type SiteFailoverConfig = Static<typeof SiteFailoverSchema>;
export type WireGuardDeviceConfig = Static<typeof WireGuardDeviceSchema>;
export type WireGuardPeerSettings = Static<typeof WireGuardPeerSchema>;
export type GreSettings = Static<typeof GreSchema>;
export type InterconnectSettings = Static<typeof InterconnectSchema>;
export type IpsecSettings = Static<typeof IpsecSchema>;
export type HealthCheckConfig = Static<typeof HealthCheckSchema>;
export type WireGuardOnrampConfig = Static<typeof WireGuardOnrampSchema>;
export type GreOnrampConfig = Static<typeof GreOnrampSchema>;
export type InterconnectOnrampConfig = Static<typeof InterconnectOnrampSchema>;
export type IpsecOnrampConfig = Static<typeof IpsecOnrampSchema>;
export type OnrampConfig = Static<typeof OnrampSchema>;
export type OnrampKind = Static<typeof OnrampKindSchema>;
export type NextHopConfig = Static<typeof NextHopSchema>;
export type RouteConfig = Static<typeof RouteSchema>;
export type EgressConfig = Static<typeof EgressSchema>;
export type PortConfig = Static<typeof Port>;
export type ProtocolConfig = Static<typeof Protocol>;
export type FirewallRuleConfig = Static<typeof FirewallRuleSchema>;
export type FirewallConfig = Static<typeof FirewallSchema>;
export type GatewayRuleConfig = Static<typeof GatewayRuleSchema>;
export type DlpProfileConfigEntry = Static<typeof DlpProfileSchema>;
export type GatewayConfig = Static<typeof GatewaySchema>;
export type TimeoutsConfig = Static<typeof TimeoutsSchema>;
export type FlowsConfig = Static<typeof FlowsSchema>;
export type DaemonConfig = Static<typeof DaemonSchema>;
/** The daemon section with every default: what a store written before the section existed runs with. */
export const DEFAULT_DAEMON: DaemonConfig = { offload: true, busy_poll_us: DEFAULT_BUSY_POLL_US, lanes: DEFAULT_LANES, flow_cache: DEFAULT_FLOW_CACHE };

// ─── The accepted input, for the API ─────────────────────────────────────────────────────────────────

type Json = Record<string, unknown>;

/**
 * The JSON Schema of what a file or an API body may hold for `schema`: keys with a default or filled in from
 * context become optional, `single` lists also take one value, a discriminated union becomes one object whose
 * discriminator is any kind (the loader then reports a kind without support by name), and the loader's
 * annotations are removed. Formats stay as documentation; the loader checks them.
 */
export function inputSchema(schema: TSchema): TSchema {
  return toInput(schema as unknown as Json) as unknown as TSchema;
}

function toInput(s: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(s)) if (!(ANNOTATION_KEYS as readonly string[]).includes(k) && k !== 'default') out[k] = v;
  if (Array.isArray(s.anyOf) && typeof s.discriminator === 'string') return { ...flatten(s), ...pick(out, ['$id', 'description']) };
  if (s.type === 'object' && s.properties !== undefined) {
    const props: Json = {};
    const required: string[] = [];
    for (const [k, v] of Object.entries(s.properties as Record<string, Json>)) {
      props[k] = toInput(v);
      if (((s.required as string[] | undefined) ?? []).includes(k) && v.default === undefined && v.contextual !== true) required.push(k);
    }
    out.properties = props;
    if (required.length > 0) out.required = required; else delete out.required;
    return out;
  }
  if (s.type === 'array' && s.items !== undefined) {
    const items = toInput(s.items as Json);
    const list = { ...out, items };
    return s.single === true ? { anyOf: [items, list], ...pick(out, ['description']) } : list;
  }
  if (Array.isArray(s.anyOf)) {
    // JSON Schema ties a format to one type; a union's format (a port or a range) is the loader's alone.
    delete out.format;
    out.anyOf = (s.anyOf as Json[]).map(toInput);
  }
  return out;
}

/** A discriminated union as one object: the variants' keys, each optional but the common required ones. */
function flatten(s: Json): Json {
  const variants = s.anyOf as Json[];
  const props: Json = {};
  const required = new Set<string>((variants[0].required as string[] | undefined) ?? []);
  for (const v of variants) {
    const vreq = new Set((v.required as string[] | undefined) ?? []);
    for (const r of required) if (!vreq.has(r)) required.delete(r);
    for (const [k, p] of Object.entries(v.properties as Record<string, Json>)) {
      if (k === s.discriminator) props[k] = { anyOf: (s.kinds as string[]).map((kind) => ({ const: kind, type: 'string' })) };
      else props[k] ??= toInput(p);
    }
  }
  const req = [...required].filter((k) => k === s.discriminator || (((variants[0].properties as Record<string, Json>)[k].default === undefined)));
  return { type: 'object', additionalProperties: false, properties: props, required: req };
}

function pick(o: Json, keys: string[]): Json {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}
