/**
 * What differs between the YAML file given at start and the store (which is what runs once it holds a
 * configuration). `tether run` logs the differences as a warning with how to take the file instead, so that
 * removing a peer from the file and restarting never silently leaves the peer in place.
 *
 * One line per difference, naming the section or the entry and the keys that differ, never a value: the
 * configuration holds secrets (private and preshared keys).
 *
 *   "api: differs (port)"
 *   "onramps: site-c-gre is only in the store"
 *   "onramps: site-a-wg differs (automatic_return_routing, wireguard)"
 *   "routes: 10.8.0.0/16 -> onramp dc-link is only in the file"
 *   "firewall.rules: the same rules in another order"
 */
import type { TetherConfig } from '../config/index.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** JSON with object keys sorted: two spellings of one value compare equal. */
function canon(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (isObj(v)) return `{${Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** The top-level keys of two objects whose values differ. */
function changedKeys(a: Obj, b: Obj): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => canon(a[k]) !== canon(b[k])).sort();
}

/** Without `id` when the file's entry has none: the store pins ids the file may leave out. */
function comparable(entry: Obj, fileHasId: boolean): Obj {
  if (fileHasId) return entry;
  const { id: _id, ...rest } = entry;
  return rest;
}

function routeLabel(r: Obj): string {
  const hop = isObj(r.next_hop) ? `onramp ${String(r.next_hop.onramp)}` : String(r.next_hop);
  return `${String(r.prefix)} -> ${hop}${r.site !== undefined ? ` (site ${String(r.site)})` : ''}`;
}

/** Differences of one list, entries matched by name (or, for routes, by content). */
function listDifferences(what: string, fileList: Obj[], storeList: Obj[], out: string[]): void {
  const named = fileList.every((e) => typeof e.name === 'string') && storeList.every((e) => typeof e.name === 'string');
  if (!named) {
    // Routes (no names): an entry is its content.
    const key = (e: Obj, fileHasId: boolean): string => canon(comparable(e, fileHasId));
    const storeKeys = storeList.map((e) => key(e, false));
    const fileKeys = fileList.map((e) => key(e, false));
    fileList.forEach((e, i) => { if (!storeKeys.includes(fileKeys[i])) out.push(`${what}: ${what === 'routes' ? routeLabel(e) : `entry ${i + 1}`} is only in the file`); });
    storeList.forEach((e, i) => { if (!fileKeys.includes(storeKeys[i])) out.push(`${what}: ${what === 'routes' ? routeLabel(e) : `entry ${i + 1}`} is only in the store`); });
    return;
  }
  const inStore = new Map(storeList.map((e) => [e.name as string, e]));
  const inFile = new Map(fileList.map((e) => [e.name as string, e]));
  for (const [name, f] of inFile) {
    const s = inStore.get(name);
    if (s === undefined) { out.push(`${what}: ${name} is only in the file`); continue; }
    const keys = changedKeys(comparable(f, f.id !== undefined), comparable(s, f.id !== undefined));
    if (keys.length > 0) out.push(`${what}: ${name} differs (${keys.join(', ')})`);
  }
  for (const name of inStore.keys()) if (!inFile.has(name)) out.push(`${what}: ${name} is only in the store`);
  const common = (list: Obj[], other: Map<string, Obj>): string[] => list.map((e) => e.name as string).filter((n) => other.has(n));
  if (what === 'firewall.rules' && canon(common(fileList, inStore)) !== canon(common(storeList, inFile))) out.push(`${what}: the rules are in another order (first match wins)`);
}

/** Every difference between the file's configuration and the store's (both validated); empty when the same. */
export function configDifferences(file: TetherConfig, store: TetherConfig): string[] {
  const out: string[] = [];
  const f = file as unknown as Obj;
  const s = store as unknown as Obj;
  for (const section of ['log', 'api', 'store', 'flows', 'daemon']) {
    const keys = changedKeys(f[section] as Obj, s[section] as Obj);
    if (keys.length > 0) out.push(`${section}: differs (${keys.join(', ')})`);
  }
  if (file.egress === undefined && store.egress !== undefined) out.push('egress: only in the store');
  else if (file.egress !== undefined && store.egress === undefined) out.push('egress: only in the file');
  else if (file.egress !== undefined && store.egress !== undefined) {
    const keys = changedKeys(file.egress as unknown as Obj, store.egress as unknown as Obj);
    if (keys.length > 0) out.push(`egress: differs (${keys.join(', ')})`);
  }
  if (file.firewall.default_action !== store.firewall.default_action) out.push('firewall: differs (default_action)');
  const lists: Array<[string, unknown[], unknown[]]> = [
    ['sites', file.sites, store.sites],
    ['wireguard_devices', file.wireguard_devices, store.wireguard_devices],
    ['onramps', file.onramps, store.onramps],
    ['routes', file.routes, store.routes],
    ['firewall.rules', file.firewall.rules, store.firewall.rules],
  ];
  for (const [what, a, b] of lists) listDifferences(what, a as Obj[], b as Obj[], out);
  return out;
}
