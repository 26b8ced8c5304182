/**
 * Validation proportional to a change: a configuration that validateConfig accepted, one entry of one list
 * replaced, inserted or removed, and the verdict validateConfig would give the whole resulting document —
 * without reading the other 999 onramps again (issue 8: a change with 1,000 onramps in under 50 ms).
 *
 *   valid config ─ ConfigIndex (built once: keys that must be unique, names entries provide, names entries
 *                  reference, each a count)
 *   change ─ tryChange ─ the entry alone through the real validator, in a small configuration holding what it
 *            refers to (its site, its onramp, every WireGuard device, the settings): schema, defaults, its own
 *            cross-field rules
 *          ─ the index: no unique key taken twice, every name it references provided, no name still
 *            referenced taken away
 *          ─ the next configuration (the other entries are the previous configuration's own objects)
 *            or undefined: "not decided here" — then validateConfig over the whole document decides, and its
 *            problems (paths, messages, order) are the ones reported
 *
 * Why this is exact: the previous configuration had no problem, and every rule of validate.ts relates entries
 * either through one of the indexed keys (duplicate names, ids and wire identities, references by name) or
 * only to what the small configuration holds (the devices' listen addresses, the egress pool, the site of an
 * onramp). So a change with no problem in the small configuration and no clash in the index has none in the
 * whole; anything else goes to the full validator. The property test (incremental.test.ts) holds it to that
 * over random sequences of changes. When validate.ts gains a rule that relates entries some other way, the
 * rule's key belongs in keysOf / refsOf below.
 */
import { formatPrefix, parsePrefix } from '../wire/addr.js';
import { canonicalAddress } from './formats.js';
import { ipsecIdentity } from './ipsec.js';
import { Problems } from './problems.js';
import type { FirewallRuleConfig, OnrampConfig, RouteConfig, SiteConfig, TetherConfig, WireGuardDeviceConfig } from './schema.js';
import { validate } from './validate.js';

/** The configuration's lists, as the store and the API name them. */
export type ListKind = 'sites' | 'wireguard_devices' | 'onramps' | 'routes' | 'firewall_rules';

interface ListValue {
  sites: SiteConfig;
  wireguard_devices: WireGuardDeviceConfig;
  onramps: OnrampConfig;
  routes: RouteConfig;
  firewall_rules: FirewallRuleConfig;
}

/** One entry replaced (at `index`), inserted (before `index`; the list's length appends) or removed. */
export type EntryChange =
  | { op: 'replace' | 'insert'; kind: ListKind; index: number; value: unknown }
  | { op: 'remove'; kind: ListKind; index: number };

export function listOf<K extends ListKind>(cfg: TetherConfig, kind: K): Array<ListValue[K]> {
  const lists: { [L in ListKind]: unknown[] } = { sites: cfg.sites, wireguard_devices: cfg.wireguard_devices, onramps: cfg.onramps, routes: cfg.routes, firewall_rules: cfg.firewall.rules };
  return lists[kind] as Array<ListValue[K]>;
}

/** `cfg` with one list replaced (a new top-level object; the other lists are shared). */
function withList(cfg: TetherConfig, kind: ListKind, list: unknown[]): TetherConfig {
  if (kind === 'firewall_rules') return { ...cfg, firewall: { ...cfg.firewall, rules: list as FirewallRuleConfig[] } };
  return { ...cfg, [kind]: list };
}

// The keys below are validate.ts's (Relations): the same strings it compares, prefixed by what they are.

/** Values an entry holds that no other entry may hold: duplicate names, ids, wire identities, routes. */
function keysOf(kind: ListKind, v: unknown): string[] {
  switch (kind) {
    case 'sites': {
      const s = v as SiteConfig;
      return s.id === undefined ? [`site name ${s.name}`] : [`site name ${s.name}`, `site id ${s.id}`];
    }
    case 'wireguard_devices':
      return [`device name ${(v as WireGuardDeviceConfig).name}`];
    case 'onramps': {
      const o = v as OnrampConfig;
      const keys = [`onramp name ${o.name}`];
      if (o.id !== undefined) keys.push(`onramp id ${o.id}`);
      if (o.type === 'gre') keys.push(`gre ${canonicalAddress(o.gre.local)} → ${canonicalAddress(o.gre.remote)} key ${o.gre.key ?? 'none'}`);
      else if (o.type === 'interconnect') keys.push(`interconnect ${o.interconnect.link}`);
      else if (o.type === 'ipsec') keys.push(`ipsec ${ipsecIdentity(o.ipsec)}`);
      else keys.push(`peer ${o.wireguard.device}/${o.wireguard.public_key}`);
      return keys;
    }
    case 'routes': {
      const r = v as RouteConfig;
      const hop = typeof r.next_hop === 'string' ? r.next_hop : `onramp ${r.next_hop.onramp}`;
      return [`route ${formatPrefix(parsePrefix(r.prefix)!)} via ${hop} scope ${r.site ?? '*'}`];
    }
    case 'firewall_rules': {
      const r = v as FirewallRuleConfig;
      const keys: string[] = [];
      if (r.name !== undefined) keys.push(`rule name ${r.name}`);
      if (r.id !== undefined) keys.push(`rule id ${r.id}`);
      return keys;
    }
  }
}

/** The name an entry is referred to by, if other entries can refer to it. */
function nameOf(kind: ListKind, v: unknown): string | undefined {
  if (kind === 'sites') return `site ${(v as SiteConfig).name}`;
  if (kind === 'wireguard_devices') return `device ${(v as WireGuardDeviceConfig).name}`;
  if (kind === 'onramps') return `onramp ${(v as OnrampConfig).name}`;
  return undefined;
}

/** The names an entry refers to (each must be some entry's nameOf). */
function refsOf(kind: ListKind, v: unknown): string[] {
  if (kind === 'onramps') {
    const o = v as OnrampConfig;
    const refs = o.site === undefined ? [] : [`site ${o.site}`];
    if (o.type === 'wireguard') refs.push(`device ${o.wireguard.device}`);
    return refs;
  }
  if (kind === 'routes') {
    const r = v as RouteConfig;
    const refs = r.site === undefined ? [] : [`site ${r.site}`];
    if (typeof r.next_hop === 'object') refs.push(`onramp ${r.next_hop.onramp}`);
    return refs;
  }
  if (kind === 'firewall_rules') {
    const r = v as FirewallRuleConfig;
    return [...(r.sites ?? []).map((s) => `site ${s}`), ...(r.onramps ?? []).map((o) => `onramp ${o}`)];
  }
  return [];
}

function bump(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n === 0) counts.delete(key); else counts.set(key, n);
}

function countIn(list: readonly string[], key: string): number {
  let n = 0;
  for (const k of list) if (k === key) n++;
  return n;
}

/** A change tryChange accepted: its configuration, and commit() once the change is stored. */
export interface IndexedChange {
  config: TetherConfig;
  /** Makes `config` (ids pinned by the store meanwhile: entries are read again here) the indexed configuration. */
  commit(): void;
}

/** The indexes of one valid configuration, kept between changes and updated by each. */
export class ConfigIndex {
  private readonly unique = new Map<string, number>();
  private readonly provided = new Map<string, number>();
  private readonly referenced = new Map<string, number>();
  /** Entries others refer to, by name: what the small configuration of a change is made of. */
  private readonly sites = new Map<string, SiteConfig>();
  private readonly onramps = new Map<string, OnrampConfig>();

  /** `config`: a configuration validateConfig returned (or tryChange, committed). */
  constructor(private config: TetherConfig) {
    for (const kind of ['sites', 'wireguard_devices', 'onramps', 'routes', 'firewall_rules'] as const) {
      for (const v of listOf(config, kind)) this.count(kind, v, 1);
    }
  }

  get current(): TetherConfig {
    return this.config;
  }

  private count(kind: ListKind, v: unknown, by: 1 | -1): void {
    for (const k of keysOf(kind, v)) bump(this.unique, k, by);
    for (const r of refsOf(kind, v)) bump(this.referenced, r, by);
    const name = nameOf(kind, v);
    if (name !== undefined) bump(this.provided, name, by);
    if (kind === 'sites') this.byName(this.sites, (v as SiteConfig).name, v as SiteConfig, by);
    if (kind === 'onramps') this.byName(this.onramps, (v as OnrampConfig).name, v as OnrampConfig, by);
  }

  private byName<T>(map: Map<string, T>, name: string, v: T, by: 1 | -1): void {
    if (by === 1) map.set(name, v);
    else if (map.get(name) === v) map.delete(name);
  }

  /**
   * The configuration after `change`, equal to what validateConfig returns for the whole resulting document;
   * undefined when the index cannot decide (validate the whole document then).
   */
  tryChange(change: EntryChange): IndexedChange | undefined {
    const { kind, index } = change;
    const list = listOf(this.config, kind) as unknown[];
    if (index < 0 || index > list.length || (change.op !== 'insert' && index === list.length)) return undefined;
    const old = change.op === 'insert' ? undefined : list[index];
    let value: unknown;
    if (change.op !== 'remove') {
      value = this.readAlone(kind, index, change.op, change.value);
      if (value === undefined) return undefined;
    }
    const oldKeys = old === undefined ? [] : keysOf(kind, old);
    const newKeys = value === undefined ? [] : keysOf(kind, value);
    for (const k of newKeys) {
      if ((this.unique.get(k) ?? 0) - countIn(oldKeys, k) + countIn(newKeys, k) > 1) return undefined;
    }
    const oldName = old === undefined ? undefined : nameOf(kind, old);
    const newName = value === undefined ? undefined : nameOf(kind, value);
    const oldRefs = old === undefined ? [] : refsOf(kind, old);
    // A name taken away while something else still refers to it (an entry never refers to its own kind).
    if (oldName !== undefined && oldName !== newName && (this.provided.get(oldName) ?? 0) === 1 && (this.referenced.get(oldName) ?? 0) - countIn(oldRefs, oldName) > 0) return undefined;
    if (value !== undefined) {
      for (const r of refsOf(kind, value)) {
        if ((this.provided.get(r) ?? 0) - (r === oldName ? 1 : 0) + (r === newName ? 1 : 0) <= 0) return undefined;
      }
    }
    const next = list.slice();
    if (change.op === 'replace') next[index] = value;
    else if (change.op === 'insert') next.splice(index, 0, value);
    else next.splice(index, 1);
    const config = withList(this.config, kind, next);
    return {
      config,
      commit: () => {
        if (old !== undefined) this.count(kind, old, -1);
        if (value !== undefined) this.count(kind, value, 1);
        this.config = config;
      },
    };
  }

  /**
   * The entry read by the real validator in a small configuration: the settings, every WireGuard device (a
   * peer's device is filled in when there is one; devices' listen addresses clash pairwise) and the sites and
   * onramps the entry names. Undefined on any problem.
   */
  private readAlone(kind: ListKind, index: number, op: 'replace' | 'insert', raw: unknown): unknown {
    const c = this.config;
    const sites = new Map<string, SiteConfig>();
    const onramps = new Map<string, OnrampConfig>();
    const wantSite = (name: unknown): void => {
      const s = typeof name === 'string' ? this.sites.get(name) : undefined;
      if (s !== undefined) sites.set(s.name, s);
    };
    const wantOnramp = (name: unknown): void => {
      const o = typeof name === 'string' ? this.onramps.get(name) : undefined;
      if (o === undefined) return;
      onramps.set(o.name, o);
      wantSite(o.site);
    };
    // The raw value's references, read loosely: a wrong shape is the validator's to report.
    const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const names = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);
    if (kind === 'onramps') wantSite(r.site);
    if (kind === 'routes') {
      wantSite(r.site);
      const nh = r.next_hop;
      if (typeof nh === 'object' && nh !== null) wantOnramp((nh as Record<string, unknown>).onramp);
    }
    if (kind === 'firewall_rules') {
      for (const s of names(r.sites)) wantSite(s);
      for (const o of names(r.onramps)) wantOnramp(o);
    }
    let devices: unknown[] = c.wireguard_devices;
    if (kind === 'wireguard_devices') {
      devices = devices.slice();
      devices.splice(index, op === 'replace' ? 1 : 0, raw);
    }
    const small: Record<string, unknown> = {
      version: c.version, log: c.log, api: c.api, store: c.store, flows: c.flows, daemon: c.daemon,
      ...(c.egress !== undefined ? { egress: c.egress } : {}),
      sites: kind === 'sites' ? [raw] : [...sites.values()],
      wireguard_devices: devices,
      onramps: kind === 'onramps' ? [raw] : [...onramps.values()],
      routes: kind === 'routes' ? [raw] : [],
      firewall: { default_action: c.firewall.default_action, rules: kind === 'firewall_rules' ? [raw] : [] },
    };
    const problems = new Problems();
    // The validator fills in and normalises the objects it returns; the shared entries above are read, not changed.
    const out = validate(structuredClone(small), problems);
    if (out === undefined) return undefined;
    return kind === 'wireguard_devices' ? out.wireguard_devices[index] : listOf(out, kind)[0];
  }
}
