/**
 * Names → ids: the data plane's view of a validated configuration. Ids are deterministic, so a restart with
 * the same file gives every site, onramp and rule the id its flows and counters were recorded under.
 */
import { MAX_ONRAMP_ID, MAX_SITE_ID } from '../common/ids.js';
import type { PipelineConfig } from '../dataplane/pipeline.js';
import type { OnrampSpec, SiteSpec } from '../dataplane/ports.js';
import type { FlowTimeouts } from '../flow/timeouts.js';
import type { HealthSpec } from '../health/health.js';
import type { FirewallRuleSpec } from '../policy/firewall.js';
import { NameSource, type DlpProfileSpec, type GatewayPolicySpec, type GatewayRuleSpec } from '../gateway/policy.js';
import { NextHopKind, type RouteSpec } from '../route/route-table.js';
import type { IkePeerConfig, IkeIdentity, EspProposal, IkeProposal } from '../onramp/ipsec/types.js';
import { readFileSync } from 'node:fs';
import { portRangePair, protocolNumber } from './formats.js';
import { decodePsk, parseIdentity, parseProposal, prefixSelector, type Parsed } from './ipsec.js';
import { MAX_RULE_ID, MS_PER_SECOND, NAME_SOURCES, TIMEOUT_FIELDS, type FirewallRuleConfig, type GatewayRuleConfig, type IpsecOnrampConfig, type OnrampConfig, type TetherConfig } from './schema.js';

export interface ConfigIds {
  /** Site name → id (configured sites only). */
  sites: Map<string, number>;
  /** Onramp name → id. */
  onramps: Map<string, number>;
  /** Onramp name → its site id (an onramp without a site has a site id of its own). */
  onrampSite: Map<string, number>;
  /** firewall.rules[i] → rule id. */
  firewallRules: number[];
  /** gateway.rules[i] → rule id (a space of its own: gateway rule 3 and firewall rule 3 are two rules). */
  gatewayRules: number[];
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
  const gatewayRules = gatewayRuleIds(cfg.gateway.rules);
  return { sites, onramps, onrampSite, firewallRules, gatewayRules };
}

/** Gateway rules' ids as assignIds gives them (the API pins them into the store with it). */
export function gatewayRuleIds(rules: ReadonlyArray<{ id?: number }>): number[] {
  return assign(rules.map((r) => r.id), MAX_RULE_ID, 'gateway rule');
}

function lookup(map: Map<string, number>, name: string, what: string): number {
  const id = map.get(name);
  if (id === undefined) throw new RangeError(`no ${what} named ${name}`);
  return id;
}

/** The type-specific settings of an onramp (its `gre`, `wireguard`, `interconnect` or `ipsec` block): what its transport runs with. */
export function typeSettings(o: OnrampConfig): unknown {
  switch (o.type) {
    case 'wireguard': return o.wireguard;
    case 'gre': return o.gre;
    case 'interconnect': return o.interconnect;
    case 'ipsec': return o.ipsec;
  }
}

/** One onramp as the pipeline's port tables hold it, under the ids it was given. */
export function toOnrampSpec(o: OnrampConfig, id: number, site: number): OnrampSpec {
  return {
    id,
    name: o.name,
    type: o.type,
    site,
    automaticReturnRouting: o.automatic_return_routing,
    // Absent: the pipeline's fair share of each flow table among the onramps (docs/CONFIG.md).
    ...(o.max_flows !== undefined ? { maxFlows: o.max_flows } : {}),
    preference: o.preference,
    // The pipeline clamps TCP MSS to what the tunnel carries (RFC 4459 section 3.2).
    ...(o.type === 'gre' ? { mtu: o.gre.mtu } : {}),
    // A WireGuard peer's allowed IPs, or any other onramp's allowed_sources, are checked by the pipeline on the
    // packet it inspects anyway (ingress filtering, BCP 38).
    ...(o.type === 'wireguard' ? { mtu: o.wireguard.mtu, allowedSources: o.wireguard.allowed_ips } : {}),
    ...(o.type !== 'wireguard' && o.allowed_sources !== undefined ? { allowedSources: o.allowed_sources } : {}),
    // ESP's MSS clamp and too-big errors, as GRE's (the IPsec transport reads the same spec).
    ...(o.type === 'ipsec' ? { mtu: o.ipsec.mtu } : {}),
    // The edge's tunnel address: echo to it is the edge's own (probe replies, the site's probes), never a flow.
    ...(o.health_check?.source !== undefined ? { localAddress: o.health_check.source } : {}),
    // The source of the time-exceeded errors the edge sends into this onramp (traceroute's hop; docs/CONFIG.md).
    ...(o.icmp_source !== undefined ? { icmpSource: [...o.icmp_source] } : {}),
  };
}

/**
 * The health engine's spec for an onramp (docs/HEALTH.md): `request` probes the target, `reply` counts the site's
 * probes to the source (the engine's 'reverse' mode), no health_check is passive (other evidence only).
 */
export function toHealthSpec(o: OnrampConfig): HealthSpec {
  const h = o.health_check;
  if (h === undefined) return { mode: 'passive' };
  if (h.type === 'reply') return { mode: 'reverse', rate: h.rate };
  return { mode: 'probe', rate: h.rate, source: h.source, target: h.target };
}

/** The configured sites' failover policies, under their ids (a site without one, or an onramp's own site, follows). */
export function toSiteSpecs(cfg: TetherConfig, ids: ConfigIds): SiteSpec[] {
  return cfg.sites.map((s) => ({
    id: lookup(ids.sites, s.name, 'site'),
    ...(s.failover !== undefined ? { failover: { policy: s.failover.policy, drainIdleMs: s.failover.drain_idle_seconds * MS_PER_SECOND } } : {}),
  }));
}

/** The data plane's view: names replaced by ids, seconds by milliseconds. Expects a validated config. */
export function toPipelineConfig(cfg: TetherConfig, ids: ConfigIds = assignIds(cfg)): PipelineConfig {
  const onramps: OnrampSpec[] = cfg.onramps.map((o) => toOnrampSpec(o, lookup(ids.onramps, o.name, 'onramp'), lookup(ids.onrampSite, o.name, 'onramp')));
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
  const rules: FirewallRuleSpec[] = cfg.firewall.rules.map((r, i) => selectors(r, ids, { id: ids.firewallRules[i], action: r.action }));
  const timeouts: Partial<FlowTimeouts> = {};
  for (const [key, field] of TIMEOUT_FIELDS) timeouts[field] = cfg.flows.timeouts[key] * MS_PER_SECOND;
  const out: PipelineConfig = {
    onramps,
    sites: toSiteSpecs(cfg, ids),
    routes,
    firewall: { rules, defaultAction: cfg.firewall.default_action },
    gateway: toGatewaySpec(cfg, ids),
    flows: { capacity4: cfg.flows.ipv4_capacity, capacity6: cfg.flows.ipv6_capacity, timeouts },
  };
  if (cfg.egress !== undefined) {
    const [portMin, portMax] = portRangePair(cfg.egress.port_range);
    out.egress = { addresses: [...cfg.egress.addresses], portMin, portMax };
    if (cfg.egress.max_ports_per_site !== undefined) out.egress.maxPortsPerSite = cfg.egress.max_ports_per_site;
  }
  return out;
}

/** The L3/L4 selectors firewall and gateway rules share, names turned into ids; written into `spec`. */
function selectors<S extends FirewallRuleSpec | GatewayRuleSpec>(r: FirewallRuleConfig | GatewayRuleConfig, ids: ConfigIds, spec: S): S {
  if (r.sites) spec.sites = r.sites.map((s) => lookup(ids.sites, s, 'site'));
  if (r.onramps) spec.onramps = r.onramps.map((s) => lookup(ids.onramps, s, 'onramp'));
  if (r.source_prefixes) spec.srcPrefixes = [...r.source_prefixes];
  if (r.destination_prefixes) spec.dstPrefixes = [...r.destination_prefixes];
  if (r.protocols) spec.protocols = r.protocols.map(protocolNumber);
  if (r.source_ports) spec.srcPorts = r.source_ports.map(portRangePair);
  if (r.destination_ports) spec.dstPorts = r.destination_ports.map(portRangePair);
  return spec;
}

const NAME_SOURCE_BITS: Record<(typeof NAME_SOURCES)[number], NameSource> = { sni: NameSource.Sni, http_host: NameSource.HttpHost, dns: NameSource.Dns };

/** The gateway section as src/gateway/policy.ts runs it. */
export function toGatewaySpec(cfg: TetherConfig, ids: ConfigIds): GatewayPolicySpec {
  const g = cfg.gateway;
  const rules = g.rules.map((r, i) => {
    const spec = selectors(r, ids, { id: ids.gatewayRules[i], action: r.action } as GatewayRuleSpec);
    if (r.name !== undefined) spec.name = r.name;
    if (r.hostnames) spec.hostnames = [...r.hostnames];
    if (r.sources) spec.sources = r.sources.reduce((mask, s) => mask | NAME_SOURCE_BITS[s], 0);
    if (r.override) spec.override = { addresses: [...(r.override.addresses ?? [])], ttl: r.override.ttl, ...(r.override.nxdomain === true ? { nxdomain: true } : {}) };
    if (r.dlp) spec.dlp = [...r.dlp];
    if (r.fallback) spec.fallback = r.fallback;
    return spec;
  });
  const dlpProfiles: DlpProfileSpec[] = g.dlp_profiles.map((d) => ({ ...d, keywords: d.keywords ? [...d.keywords] : undefined, regexes: d.regexes ? [...d.regexes] : undefined }));
  return {
    rules,
    dlpProfiles,
    classify: { bufferBytes: g.classify.buffer_bytes, waitMs: g.classify.wait_ms, fallback: g.classify.fallback },
    dlpScanBytes: g.dlp_scan_bytes,
  };
}

/** Reads a secret file's bytes (the daemon's file system; tests pass their own). */
export type SecretReader = (path: string) => Uint8Array;

const readSecretFile: SecretReader = (path) => readFileSync(path);
/** The end of a line a key file ends with (echo KEY > file): not part of the key. */
const TRAILING_NEWLINE = /\r?\n$/;

/**
 * One ipsec onramp as the IKE engine runs it (src/onramp/ipsec/types.ts), under its onramp id. Expects a validated
 * onramp: its proposals, identities and inline key have been checked. The key file is read here, at every call (a
 * start, a live change): an error names the onramp and the file, never the key.
 */
export function toIkePeerConfig(o: IpsecOnrampConfig, id: number, read: SecretReader = readSecretFile): IkePeerConfig {
  const s = o.ipsec;
  const what = `onramp ${o.name}`;
  const must = <T>(p: Parsed<T>, key: string): T => {
    if (!p.ok) throw new Error(`${what}: ipsec.${key} ${p.error}`);
    return p.value;
  };
  let pskText: string;
  if (s.psk_file !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = read(s.psk_file);
    } catch (e) {
      throw new Error(`${what}: cannot read ipsec.psk_file ${s.psk_file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    pskText = new TextDecoder().decode(bytes).replace(TRAILING_NEWLINE, '');
  } else {
    pskText = s.psk ?? '';
  }
  const psk = decodePsk(pskText);
  if (!psk.ok) throw new Error(`${what}: the pre-shared key ${s.psk_file !== undefined ? `in ${s.psk_file} ` : ''}${psk.error}`);
  const remoteAny = s.remote_address === 'any';
  const identity = (text: string | undefined, fallback: string, key: string): IkeIdentity => {
    if (text !== undefined) return must(parseIdentity(text), key);
    if (fallback === 'any') throw new Error(`${what}: ipsec.${key} is required when remote_address is any`);
    return { type: 'ipv4', value: fallback };
  };
  const lifetime = (l: typeof s.ike_lifetime): IkePeerConfig['ikeLifetime'] => ({
    rekeySeconds: l.rekey_seconds,
    lifetimeSeconds: l.lifetime_seconds,
    jitterSeconds: l.jitter_seconds,
  });
  return {
    onramp: id,
    name: o.name,
    localAddress: s.local_address,
    // The engine's spelling of "any address" (types.ts): a responder matched by identity.
    remoteAddress: remoteAny ? '0.0.0.0' : s.remote_address,
    localId: identity(s.local_id, s.local_address, 'local_id'),
    remoteId: identity(s.remote_id, s.remote_address, 'remote_id'),
    psk: psk.value,
    mode: s.mode,
    ikeProposals: s.ike_proposals.map((p, i): IkeProposal => must(parseProposal('ike', p), `ike_proposals[${i}]`)),
    espProposals: s.esp_proposals.map((p, i): EspProposal => must(parseProposal('esp', p), `esp_proposals[${i}]`)),
    localTs: s.local_ts.map(prefixSelector),
    remoteTs: s.remote_ts.map(prefixSelector),
    ikeLifetime: lifetime(s.ike_lifetime),
    childLifetime: lifetime(s.child_lifetime),
    dpdSeconds: s.dpd_seconds,
    dpdTimeoutSeconds: s.dpd_timeout_seconds,
    replayWindow: s.replay_window,
    forceEncapsulation: s.force_encapsulation,
  };
}
