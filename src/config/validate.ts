/**
 * The configuration's one validator: the schema (check-schema.ts reading schema.ts), then every rule that
 * relates one value to another — names that must exist, duplicate names and ids, one wire identity per onramp,
 * clashing listen addresses, routes that need an egress pool, ports that need TCP or UDP. The YAML loader
 * (load.ts), the API and the store all validate through validate(), so their rules and messages are one.
 */
import { formatPrefix, parsePrefix } from '../wire/addr.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { given, SchemaReader } from './check-schema.js';
import { canonicalAddress, protocolNumber } from './formats.js';
import { defaultOverSeconds, ipsecIdentity, MIN_REPLAY_WINDOW } from './ipsec.js';
import { ConfigError, describe, Problems } from './problems.js';
import { hostnamePatternProblem } from '../gateway/hostname-matcher.js';
import { DlpPolicy } from '../gateway/dlp.js';
import { TetherConfigSchema, type FirewallRuleConfig, type GatewayRuleConfig, type OnrampConfig, type TetherConfig, type WireGuardDeviceConfig } from './schema.js';

/** Reads and checks a plain value into `problems`; the configuration when there were none. */
export function validate(root: unknown, problems: Problems): TetherConfig | undefined {
  const r = new SchemaReader(problems);
  const cfg = r.read(TetherConfigSchema, root, '') as TetherConfig | undefined;
  if (cfg === undefined) return undefined;
  new Relations(cfg, r).check();
  return problems.list.length === 0 ? cfg : undefined;
}

/**
 * Validates a configuration given as plain values (an API body, a stored JSON document, a TetherConfig
 * built in code). Same rules and messages as loadConfig, without line numbers; throws ConfigError.
 */
export function validateConfig(value: unknown, source = 'config'): TetherConfig {
  const problems = new Problems();
  const cfg = validate(value, problems);
  if (cfg === undefined) throw new ConfigError(source, problems.list);
  return cfg;
}

const WILDCARDS = new Set(['0.0.0.0', '::']);

/** 127.0.0.0/8 (RFC 1122 §3.2.1.3), ::1 (RFC 4291 §2.5.3) and IPv4-mapped 127/8 (§2.5.5.2), in any spelling. */
export function isLoopback(address: string): boolean {
  const a = canonicalAddress(address).replace(/\/(32|128)$/, '');
  return /^(::ffff:)?127\./i.test(address) || /^(::ffff:)?127\./i.test(a) || /^::ffff:7f[0-9a-f]{2}:/i.test(a) || a === '::1';
}

/** The cross-field rules, over a configuration the schema has read (entries with problems included). */
class Relations {
  private readonly p: Problems;
  private readonly siteNames: Set<string>;
  private readonly onrampNames: Set<string>;

  constructor(private readonly cfg: TetherConfig, private readonly r: SchemaReader) {
    this.p = r.problems;
    this.siteNames = new Set(names(cfg.sites));
    this.onrampNames = new Set(names(cfg.onramps));
  }

  check(): void {
    this.api();
    this.sites();
    this.devices();
    this.egress();
    this.onramps();
    this.routes();
    this.firewall();
    this.gateway();
  }

  private path(o: object): string {
    return this.r.pathOf.get(o) ?? '';
  }

  private complete<T extends object>(list: readonly T[]): T[] {
    return list.filter((x) => !this.r.isIncomplete(x));
  }

  private noSuch(path: string, what: string, name: unknown, known: Set<string>, hint = ''): void {
    this.p.fail(path, `no ${what} named ${typeof name === 'string' ? `"${name}"` : String(name)} (${what}s: ${[...known].join(', ') || 'none'})${hint}`);
  }

  private sites(): void {
    const sites = this.cfg.sites;
    this.p.unique(sites.map((s) => [s.name, `${this.path(s)}.name`]), 'site name');
    this.p.unique(sites.map((s) => [s.id === undefined ? undefined : String(s.id), `${this.path(s)}.id`]), 'site id');
  }

  private devices(): void {
    const devices = this.cfg.wireguard_devices;
    for (const d of devices) {
      const hasKey = given(this.r.rawOf.get(d) ?? {}, 'private_key') !== undefined;
      if (hasKey === (d.private_key_file !== undefined)) {
        this.p.fail(`${this.path(d)}.private_key`, hasKey ? 'give private_key or private_key_file, not both' : 'is required: private_key (base64) or private_key_file (a path)');
      }
    }
    this.p.unique(devices.map((d) => [d.name, `${this.path(d)}.name`]), 'device name');
    // Two sockets on one port clash when their addresses are equal or either is a wildcard.
    const ok = this.complete(devices);
    ok.forEach((d, i) => {
      const e = ok.slice(0, i).find((x) => x.listen_port === d.listen_port && (WILDCARDS.has(d.listen_address) || WILDCARDS.has(x.listen_address) || canonicalAddress(d.listen_address) === canonicalAddress(x.listen_address)));
      if (e !== undefined) this.p.fail(`${this.path(d)}.listen_port`, `${d.listen_address}:${d.listen_port} clashes with device "${e.name}" (${e.listen_address}:${e.listen_port})`);
    });
  }

  /**
   * The API on an address other hosts can reach carries the bearer token: only over TLS, or when the file says
   * in so many words that clear text is meant (a proxy on the same host terminates TLS, a lab network).
   */
  private api(): void {
    const a = this.cfg.api;
    if (a === undefined || typeof a.listen !== 'string') return;
    if (!isLoopback(a.listen) && a.tls === undefined && a.insecure_http !== true) {
      this.p.fail('api.listen', `${a.listen} is reachable from other hosts: give api.tls (cert_file, key_file), or set api.insecure_http: true to send the token in clear text`);
    }
  }

  private egress(): void {
    const e = this.cfg.egress;
    if (e === undefined || e.addresses === undefined) return;
    const paths = this.r.itemPaths.get(e.addresses) ?? [];
    this.p.unique(e.addresses.map((a, i) => [canonicalAddress(a), paths[i]]), 'address');
  }

  private onramps(): void {
    const onramps = this.cfg.onramps;
    const devices = this.cfg.wireguard_devices.filter((d) => d.name !== undefined);
    for (const o of onramps) {
      const p = this.path(o);
      if (o.site !== undefined && !this.siteNames.has(o.site)) this.noSuch(`${p}.site`, 'site', o.site, this.siteNames, '; leave site out for an onramp that is a site of its own');
      const ok = o.type === 'wireguard' ? this.peer(o, devices) : o.type === 'gre' ? this.gre(o) : o.type === 'ipsec' ? this.ipsec(o) : true;
      if (!ok) this.r.incomplete.add(o);
      if (o.type === 'wireguard' && o.allowed_sources !== undefined) {
        this.p.fail(`${p}.allowed_sources`, 'a WireGuard onramp accepts the sources in wireguard.allowed_ips (cryptokey routing); allowed_sources is for gre, interconnect and ipsec onramps');
      }
      this.healthCheck(o);
      this.icmpSource(o);
    }
    this.p.unique(onramps.map((o) => [o.name, `${this.path(o)}.name`]), 'onramp name');
    this.p.unique(onramps.map((o) => [o.id === undefined ? undefined : String(o.id), `${this.path(o)}.id`]), 'onramp id');
    // Unique identities on the wire: a GRE tunnel is (local, remote, key); a link belongs to one onramp.
    const ok = this.complete(onramps);
    const identity = (kind: OnrampConfig['type'], key: (x: OnrampConfig) => string, field: string, what: string): void => {
      this.p.unique(ok.map((x) => [x.type === kind ? key(x) : undefined, `${this.path(x)}.${field}`]), what);
    };
    identity('gre', (o) => (o.type === 'gre' ? `${canonicalAddress(o.gre.local)} → ${canonicalAddress(o.gre.remote)} key ${o.gre.key ?? 'none'}` : ''), 'gre.remote', 'GRE tunnel');
    identity('interconnect', (o) => (o.type === 'interconnect' ? o.interconnect.link : ''), 'interconnect.link', 'interconnect link');
    for (const o of ok) {
      if (o.type === 'interconnect' && o.interconnect.link === this.cfg.egress?.interface) {
        this.p.fail(`${this.path(o)}.interconnect.link`, 'is the egress interface (egress.interface); an onramp needs a link of its own');
      }
    }
    identity('wireguard', (o) => (o.type === 'wireguard' ? `${o.wireguard.device}/${o.wireguard.public_key}` : ''), 'wireguard.public_key', 'peer (device/public key)');
    // Two IPsec onramps the edge could not tell apart when a site connects: same addresses, or (remote any) same identity.
    identity('ipsec', (o) => (o.type === 'ipsec' ? ipsecIdentity(o.ipsec) : ''), 'ipsec.remote_address', 'IPsec peer');
  }

  /**
   * An IPsec site: one secret; an initiator needs the site's address, a responder for any address needs the site's
   * identity; lifetimes filled in (strongSwan's over_time and rand_time) and ordered; a replay window RFC 4303 allows.
   * False when the onramp cannot run as written.
   */
  private ipsec(o: OnrampConfig & { type: 'ipsec' }): boolean {
    const s = o.ipsec as Partial<typeof o.ipsec> | undefined;
    if (s === undefined || this.r.isIncomplete(s)) return false;
    const sp = this.path(s);
    const before = this.p.list.length;
    const hasKey = given(this.r.rawOf.get(s) ?? {}, 'psk') !== undefined;
    if (hasKey === (s.psk_file !== undefined)) {
      this.p.fail(`${sp}.psk`, hasKey ? 'give psk or psk_file, not both' : 'is required: psk (the pre-shared key) or psk_file (a path)');
    }
    if (s.remote_address === 'any') {
      if (s.mode === 'initiate') this.p.fail(`${sp}.remote_address`, "is required with mode initiate: the site's IPv4 address to connect to (any is for a responder)");
      if (s.remote_id === undefined) this.p.fail(`${sp}.remote_id`, 'is required when remote_address is any: the site is told apart by the identity it sends');
    }
    if (s.local_address !== undefined && s.local_address === s.remote_address) this.p.fail(`${sp}.remote_address`, 'must differ from local_address');
    for (const key of ['ike_lifetime', 'child_lifetime'] as const) {
      const l = s[key] as Partial<typeof o.ipsec.ike_lifetime> | undefined;
      if (l?.rekey_seconds === undefined) continue;
      const raw = this.r.rawOf.get(l) ?? {};
      if (given(raw, 'lifetime_seconds') === undefined) l.lifetime_seconds = l.rekey_seconds + defaultOverSeconds(l.rekey_seconds);
      if (given(raw, 'jitter_seconds') === undefined && l.lifetime_seconds !== undefined) l.jitter_seconds = Math.max(0, l.lifetime_seconds - l.rekey_seconds);
      const lp = this.path(l);
      if (l.lifetime_seconds !== undefined && l.lifetime_seconds <= l.rekey_seconds) {
        this.p.fail(`${lp}.lifetime_seconds`, `must be greater than rekey_seconds (${l.rekey_seconds}): the SA must be rekeyed before it is deleted`);
      } else if (l.jitter_seconds !== undefined && l.jitter_seconds >= l.rekey_seconds) {
        this.p.fail(`${lp}.jitter_seconds`, `must be less than rekey_seconds (${l.rekey_seconds})`);
      }
    }
    if (s.replay_window !== undefined && s.replay_window > 0 && s.replay_window < MIN_REPLAY_WINDOW) {
      this.p.fail(`${sp}.replay_window`, `must be 0 (off) or at least ${MIN_REPLAY_WINDOW} packets (RFC 4303 §3.4.3), got ${s.replay_window}`);
    }
    return this.p.list.length === before;
  }

  /** The peer's device (filled in when there is only one) and its secrets; false when the device is unknown. */
  private peer(o: OnrampConfig & { type: 'wireguard' }, devices: WireGuardDeviceConfig[]): boolean {
    const w = o.wireguard as Partial<typeof o.wireguard> | undefined;
    if (w === undefined) return false;
    const wp = this.path(w);
    const raw = this.r.rawOf.get(w) ?? {};
    let ok = true;
    if (given(raw, 'device') === undefined) {
      if (devices.length === 1) w.device = devices[0].name;
      else {
        ok = false;
        this.p.fail(`${wp}.device`, devices.length === 0 ? 'no wireguard_devices are configured: add one (listen_port, private_key)' : `is required when there are several wireguard_devices (${devices.map((d) => d.name).join(', ')})`);
      }
    } else if (w.device !== undefined && !devices.some((d) => d.name === w.device)) {
      ok = false;
      this.p.fail(`${wp}.device`, `no wireguard device named "${w.device}" (devices: ${devices.map((d) => d.name).join(', ') || 'none'})`);
    }
    if (given(raw, 'preshared_key') !== undefined && w.preshared_key_file !== undefined) this.p.fail(`${wp}.preshared_key`, 'give preshared_key or preshared_key_file, not both');
    return ok;
  }

  /**
   * health_check: type request probes `target` from `source` (both needed, one family: the probe is one IP packet);
   * type reply answers the site's probes to `source` (a target would never be used: refused rather than ignored).
   */
  private healthCheck(o: OnrampConfig): void {
    const h = o.health_check as Partial<NonNullable<OnrampConfig['health_check']>> | undefined;
    if (h === undefined || this.r.isIncomplete(h)) return;
    const hp = this.path(h);
    if (h.source === undefined) {
      this.p.fail(`${hp}.source`, h.type === 'reply'
        ? "is required: the edge's address inside the tunnel, which the site's probes are sent to"
        : "is required with a health check: the edge's address inside the tunnel, which the probes come from");
      return;
    }
    if (h.type === 'reply') {
      if (h.target !== undefined) this.p.fail(`${hp}.target`, 'is only for type request (the edge probes it); with type reply the site probes source');
      return;
    }
    if (h.target === undefined) {
      this.p.fail(`${hp}.target`, 'is required with type request: an address on the site side that answers ICMP echo');
      return;
    }
    if (h.source.includes(':') !== h.target.includes(':')) {
      this.p.fail(`${hp}.target`, `must be of the same address family as source (${h.source}), got ${describe(h.target)}`);
    } else if (canonicalAddress(h.source) === canonicalAddress(h.target)) {
      this.p.fail(`${hp}.target`, 'must differ from source');
    }
  }

  /** icmp_source: one address per family (the error's family is the offending packet's). */
  private icmpSource(o: OnrampConfig): void {
    const list = o.icmp_source;
    if (list === undefined || list.length < 2) return;
    if (list.length > 2) {
      this.p.fail(`${this.path(o)}.icmp_source`, `takes at most two addresses (one IPv4, one IPv6), got ${list.length}`);
    } else if (list[0].includes(':') === list[1].includes(':')) {
      this.p.fail(`${this.path(o)}.icmp_source`, `takes one address per family (IPv4, IPv6), got two ${list[0].includes(':') ? 'IPv6' : 'IPv4'} addresses: ${list.join(', ')}`);
    }
  }

  /** Both tunnel ends of one family and distinct; false otherwise. */
  private gre(o: OnrampConfig & { type: 'gre' }): boolean {
    const g = o.gre as Partial<typeof o.gre> | undefined;
    if (g?.local === undefined || g.remote === undefined) return false;
    const gp = this.path(g);
    if (g.local.includes(':') !== g.remote.includes(':')) {
      this.p.fail(`${gp}.remote`, `must be of the same address family as local (${g.local}), got ${describe(g.remote)}`);
      return false;
    }
    if (canonicalAddress(g.local) === canonicalAddress(g.remote)) {
      this.p.fail(`${gp}.remote`, 'must differ from local');
      return false;
    }
    return true;
  }

  private routes(): void {
    const egress = this.cfg.egress;
    const keys: Array<[string | undefined, string]> = [];
    for (const route of this.cfg.routes) {
      const p = this.path(route);
      let ok = !this.r.isIncomplete(route);
      if (route.site !== undefined && !this.siteNames.has(route.site)) this.noSuch(`${p}.site`, 'site', route.site, this.siteNames);
      const nh = route.next_hop as typeof route.next_hop | undefined;
      if (typeof nh === 'object' && nh.onramp !== undefined && !this.onrampNames.has(nh.onramp)) {
        this.noSuch(`${p}.next_hop.onramp`, 'onramp', nh.onramp, this.onrampNames);
        ok = false;
      }
      if (nh === 'internet' && (egress === undefined || this.r.isIncomplete(egress) || egress.addresses.length === 0)) {
        this.p.fail(`${p}.next_hop`, 'leads to the Internet, but no egress pool is configured (egress.addresses)');
      }
      if (!ok || nh === undefined) continue;
      const hop = typeof nh === 'string' ? nh : `onramp ${nh.onramp}`;
      keys.push([`${formatPrefix(parsePrefix(route.prefix)!)} via ${hop} scope ${route.site ?? '*'}`, p]);
    }
    this.p.unique(keys, 'route');
  }

  private firewall(): void {
    const rules = this.cfg.firewall.rules;
    for (const rule of rules) {
      const p = this.path(rule);
      this.references(rule.sites, 'site', this.siteNames);
      this.references(rule.onramps, 'onramp', this.onrampNames);
      this.ports(rule, p, 'source_ports');
      this.ports(rule, p, 'destination_ports');
    }
    this.p.unique(rules.map((r) => [r.name, `${this.path(r)}.name`]), 'rule name');
    this.p.unique(rules.map((r) => [r.id === undefined ? undefined : String(r.id), `${this.path(r)}.id`]), 'rule id');
  }

  /** Gateway rules: the firewall's selector rules, plus hostnames, sources, overrides and DLP profile names. */
  private gateway(): void {
    const g = this.cfg.gateway;
    const profiles = new Set(names(g.dlp_profiles));
    this.p.unique(g.dlp_profiles.map((d) => [d.name, `${this.path(d)}.name`]), 'DLP profile name');
    for (const d of this.complete(g.dlp_profiles)) {
      try {
        new DlpPolicy([d]);
      } catch (e) {
        this.p.fail(this.path(d), (e as Error).message);
      }
    }
    for (const rule of g.rules) {
      const p = this.path(rule);
      this.references(rule.sites, 'site', this.siteNames);
      this.references(rule.onramps, 'onramp', this.onrampNames);
      this.references(rule.dlp, 'DLP profile', profiles);
      this.ports(rule, p, 'source_ports');
      this.ports(rule, p, 'destination_ports');
      const hostPaths = rule.hostnames === undefined ? [] : this.r.itemPaths.get(rule.hostnames) ?? [];
      (rule.hostnames ?? []).forEach((h, i) => {
        const problem = typeof h === 'string' ? hostnamePatternProblem(h) : null;
        if (problem !== null) this.p.fail(hostPaths[i] ?? `${p}.hostnames`, problem);
      });
      if (rule.action === 'override') {
        const o = rule.override;
        if (o === undefined) this.p.fail(`${p}.override`, 'is required with action override: addresses to answer with, or nxdomain: true');
        else if (o.nxdomain === true && (o.addresses ?? []).length > 0) this.p.fail(`${p}.override`, 'give addresses or nxdomain: true, not both');
        if (rule.sources === undefined || rule.sources.some((s) => s !== 'dns')) this.p.fail(`${p}.sources`, 'action override answers DNS queries: set sources: [dns]');
        if ((rule.hostnames ?? []).length === 0) this.p.fail(`${p}.hostnames`, 'action override needs the names it answers for');
      } else if (rule.override !== undefined) {
        this.p.fail(`${p}.override`, `is only for action override (this rule's action is ${rule.action})`);
      }
    }
    this.p.unique(g.rules.map((r) => [r.name, `${this.path(r)}.name`]), 'gateway rule name');
    this.p.unique(g.rules.map((r) => [r.id === undefined ? undefined : String(r.id), `${this.path(r)}.id`]), 'gateway rule id');
  }

  private references(list: string[] | undefined, what: string, known: Set<string>): void {
    if (list === undefined) return;
    const paths = this.r.itemPaths.get(list) ?? [];
    list.forEach((name, i) => { if (!known.has(name)) this.noSuch(paths[i], what, name, known); });
  }

  /** Ports match TCP and UDP only: with another protocol listed, the rule would silently never match it. */
  private ports(rule: FirewallRuleConfig | GatewayRuleConfig, p: string, key: 'source_ports' | 'destination_ports'): void {
    const ports = rule[key];
    const protocols = (rule.protocols ?? []).map(protocolNumber);
    if (ports !== undefined && ports.length > 0 && protocols.length > 0 && protocols.some((n) => n !== IPPROTO_TCP && n !== IPPROTO_UDP)) {
      this.p.fail(`${p}.${key}`, 'ports apply to tcp and udp only; with other protocols listed this rule would never match them (split the rule)');
    }
  }
}

/** The names of a list's entries, entries with problems included (a name with a problem is left out). */
function names(list: ReadonlyArray<{ name?: string }>): string[] {
  return list.map((x) => x.name).filter((n): n is string => n !== undefined);
}
