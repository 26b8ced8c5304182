/**
 * The store validates a change of one entry through ConfigIndex (src/config/incremental.ts), in time
 * proportional to the change. This holds it to validateConfig: random sequences of the API's changes over a
 * configuration of 1,000 onramps; after each, the store accepts exactly when validateConfig of the whole
 * resulting document does, with the same configuration, or refuses with the same problems.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { ConfigError, ConfigIndex, validateConfig, type TetherConfig } from '../config/index.js';
import { ConfigStore, docToConfig, type EntryKind, type StoreDoc, type StoredEntry } from './store.js';

const ONRAMPS = 1000;
/** Onramps 1..ROUTED have a route and appear in firewall rules: removing or renaming them conflicts. */
const ROUTED = 20;

type Obj = Record<string, unknown>;

const key = (seed: string): string => createHash('sha256').update(seed).digest('base64');
const lan = (i: number): string => `10.${i >> 8}.${i & 0xff}.0/24`;

function bigConfig(): TetherConfig {
  const sites = [];
  const onramps: Obj[] = [];
  for (let i = 1; i <= ONRAMPS; i++) {
    sites.push({ name: `site-${i}` });
    onramps.push({ name: `site-${i}-wg`, type: 'wireguard', automatic_return_routing: true, site: `site-${i}`, wireguard: { device: i % 2 === 0 ? 'wg-0' : 'wg-1', public_key: key(`peer-${i}`), allowed_ips: [lan(i)] } });
  }
  onramps.push({ name: 'dc-gre', type: 'gre', automatic_return_routing: false, gre: { local: '192.0.2.1', remote: '192.0.2.50', key: 7 } });
  onramps.push({ name: 'dc-link', type: 'interconnect', automatic_return_routing: false, interconnect: { link: 'tt-dc' } });
  const routes: Obj[] = [{ prefix: '0.0.0.0/0', next_hop: 'internet' }];
  for (let i = 1; i <= ROUTED; i++) routes.push({ prefix: `172.16.${i}.0/24`, next_hop: { onramp: `site-${i}-wg` }, site: `site-${i}` });
  return validateConfig({
    sites,
    wireguard_devices: [
      { name: 'wg-0', listen_address: '192.0.2.1', listen_port: 51820, private_key: key('dev-0') },
      { name: 'wg-1', listen_address: '192.0.2.1', listen_port: 51821, private_key: key('dev-1') },
    ],
    onramps,
    routes,
    egress: { addresses: ['198.51.100.1', '198.51.100.2'] },
    firewall: { rules: [
      { name: 'from-routed', action: 'allow', sites: ['site-1', 'site-2'], onramps: ['site-3-wg'] },
      { name: 'no-telnet', action: 'deny', protocols: ['tcp'], destination_ports: ['23'] },
    ] },
  }, 'test');
}

/** One API change as the API makes it: a new entry object in the list (never one edited in place). */
type Mutation = (doc: StoreDoc) => void;

function entries(doc: StoreDoc, kind: EntryKind): StoredEntry[] {
  return doc.entries[kind] as StoredEntry[];
}

/** PATCH: a shallow merge into a new object (as the API's merge patch does at the levels it touches). */
function patch(kind: EntryKind, pick: number, fields: (v: Obj) => Obj): Mutation {
  return (doc) => {
    const list = entries(doc, kind);
    if (list.length === 0) return;
    const i = pick % list.length;
    const v = list[i].value as unknown as Obj;
    list[i] = { id: list[i].id, value: { ...v, ...fields(v) } as never };
  };
}

function create(kind: EntryKind, value: Obj, before?: number): Mutation {
  return (doc) => {
    const list = entries(doc, kind);
    const entry = { id: 0, value: structuredClone(value) } as unknown as StoredEntry;
    if (before === undefined || list.length === 0) list.push(entry); else list.splice(before % list.length, 0, entry);
  };
}

function remove(kind: EntryKind, pick: number): Mutation {
  return (doc) => {
    const list = entries(doc, kind);
    if (list.length > 0) list.splice(pick % list.length, 1);
  };
}

/** Onramp indexes the sequences pick: mostly the routed ones (conflicts) and a few others. */
const onrampPick = (n: number): number => (n % 3 === 0 ? n % ROUTED : n % (ONRAMPS + 2));

/** The change number `op` with parameters a, b; `single` says whether it changes one entry only. */
function mutation(op: number, a: number, b: number): { m: Mutation; single: boolean } {
  const siteName = b % 5 === 0 ? 'nowhere' : `site-${1 + (b % ONRAMPS)}`;
  const onrampName = b % 7 === 0 ? 'nothing-wg' : b % 11 === 0 ? 'dc-gre' : `site-${1 + (b % ONRAMPS)}-wg`;
  switch (op) {
    case 0: return { m: patch('onramps', onrampPick(a), (v) => ({ preference: 1 + (b % 200), wireguard: v.type === 'wireguard' ? { ...(v.wireguard as Obj), allowed_ips: [b % 9 === 0 ? 'not-a-prefix' : lan(1 + (b % 300)).replace('/24', '/25')] } : v.wireguard })), single: true };
    case 1: return { m: patch('onramps', onrampPick(a), () => ({ site: b % 4 === 0 ? undefined : siteName })), single: true };
    case 2: return { m: patch('onramps', onrampPick(a), () => ({ name: b % 3 === 0 ? onrampName : `renamed-${b}` })), single: true };
    case 3: return { m: patch('onramps', onrampPick(a), (v) => (v.type === 'wireguard' ? { wireguard: { ...(v.wireguard as Obj), public_key: b % 2 === 0 ? key(`peer-${1 + (b % ONRAMPS)}`) : key(`fresh-${b}`), device: b % 5 === 0 ? 'wg-9' : `wg-${b % 2}` } } : { description: `d${b}` })), single: true };
    case 4: return { m: patch('onramps', onrampPick(a), () => ({ health_check: b % 3 === 0 ? { source: '10.255.0.1' } : { source: '10.255.0.1', target: b % 2 === 0 ? '10.255.0.1' : '10.255.0.2' } })), single: true };
    case 5: return { m: create('onramps', b % 3 === 0
      ? { name: `gre-${b % 4}`, type: 'gre', automatic_return_routing: false, gre: { local: '192.0.2.1', remote: b % 2 === 0 ? '192.0.2.50' : `192.0.2.${60 + (b % 4)}`, key: 7 } }
      : { name: b % 5 === 0 ? onrampName : `new-${b}-wg`, type: 'wireguard', automatic_return_routing: true, site: siteName, wireguard: { public_key: key(`new-${b % 6}`), allowed_ips: [lan(b % 400)] } }, a % 2 === 0 ? undefined : a), single: true };
    case 6: return { m: remove('onramps', onrampPick(a)), single: true };
    case 7: return { m: create('routes', { prefix: `172.17.${b % 8}.0/24`, next_hop: b % 4 === 0 ? 'internet' : b % 4 === 1 ? 'blackhole' : { onramp: onrampName }, ...(b % 3 === 0 ? { site: siteName } : {}) }), single: true };
    case 8: return { m: remove('routes', a), single: true };
    case 9: return { m: create('sites', { name: b % 3 === 0 ? `site-${1 + (b % ONRAMPS)}` : `extra-${b}` }, a % 2 === 0 ? undefined : a), single: true };
    case 10: return { m: a % 2 === 0 ? remove('sites', a % 40) : patch('sites', a % 40, () => ({ name: `site-renamed-${b}` })), single: true };
    case 11: return { m: create('firewall_rules', { name: b % 4 === 0 ? 'no-telnet' : `rule-${b}`, action: 'deny', sites: [siteName], onramps: [onrampName], ...(b % 5 === 0 ? { protocols: ['icmp'], destination_ports: ['80'] } : {}) }, a % 3 === 0 ? 0 : undefined), single: true };
    case 12: return { m: a % 2 === 0 ? remove('firewall_rules', a) : patch('firewall_rules', a, () => ({ onramps: [onrampName] })), single: true };
    case 13: return { m: patch('wireguard_devices', a, () => ({ listen_port: 51820 + (b % 3), ...(b % 4 === 0 ? { listen_address: '0.0.0.0' } : {}) })), single: true };
    case 14: return { m: b % 2 === 0 ? remove('wireguard_devices', a) : create('wireguard_devices', { name: b % 3 === 0 ? 'wg-0' : `wg-${2 + (b % 3)}`, listen_address: '192.0.2.2', listen_port: 51820 + (b % 3), private_key: key(`dev-${b}`) }), single: true };
    default: return { m: (doc) => { doc.settings.egress = { ...doc.settings.egress!, addresses: b % 2 === 0 ? ['198.51.100.9'] : [] }; }, single: false };
  }
}

/** The store's ids (pinned on its own) copied onto the entries validateConfig left without one. */
function withIdsOf(expected: TetherConfig, actual: TetherConfig): TetherConfig {
  const e = structuredClone(expected);
  const copy = (to: Array<{ id?: number }>, from: Array<{ id?: number }>): void => {
    to.forEach((x, i) => { if (x.id === undefined && from[i] !== undefined) x.id = from[i].id; });
  };
  copy(e.sites, actual.sites);
  copy(e.onramps, actual.onramps);
  copy(e.firewall.rules, actual.firewall.rules);
  return e;
}

test('incremental validation decides every change of one entry exactly as validateConfig of the whole document (1,000 onramps)', () => {
  const base = bigConfig();
  // Every verdict of the index, to show it decides (and is not merely falling back to the full validator).
  const verdicts: Array<TetherConfig | undefined> = [];
  const tryChange = ConfigIndex.prototype.tryChange;
  ConfigIndex.prototype.tryChange = function (this: ConfigIndex, ...args: Parameters<typeof tryChange>) {
    const r = tryChange.apply(this, args);
    verdicts.push(r?.config);
    return r;
  };
  let accepted = 0;
  let refused = 0;
  try {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(15), fc.nat(10_000), fc.nat(10_000)), { minLength: 30, maxLength: 30 }), (ops) => {
      const store = ConfigStore.open(':memory:');
      store.seedFrom(base);
      let current = store.load();
      for (const [op, a, b] of ops) {
        const { m, single } = mutation(op, a, b);
        const doc = structuredClone(store.read());
        m(doc);
        const changed = JSON.stringify(doc) !== JSON.stringify(store.read());
        let expected: TetherConfig | ConfigError;
        try {
          expected = validateConfig(docToConfig(doc), 'request');
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          expected = e;
        }
        verdicts.length = 0;
        let actual: TetherConfig | ConfigError;
        try {
          actual = store.update(m).config;
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          actual = e;
        }
        const what = `change ${op} (${a}, ${b})`;
        if (expected instanceof ConfigError) {
          refused++;
          assert.ok(actual instanceof ConfigError, `${what}: validateConfig refuses (${expected.message}), the store accepted`);
          assert.equal(actual.source, expected.source, what);
          assert.deepEqual(actual.problems, expected.problems, what);
          assert.ok(verdicts.every((v) => v === undefined), `${what}: the index accepted what validateConfig refuses`);
        } else {
          accepted++;
          assert.ok(!(actual instanceof ConfigError), `${what}: validateConfig accepts, the store refused: ${actual instanceof ConfigError ? actual.message : ''}`);
          assert.deepEqual(actual, withIdsOf(expected, actual), what);
          current = actual;
          if (single && changed) assert.ok(verdicts.length === 1 && verdicts[0] !== undefined, `${what}: a valid change of one entry is decided by the index`);
        }
      }
      // The rows (read back from SQLite, in their stored order) hold what the store answered last.
      assert.deepEqual(store.load(), current);
      store.close();
    }), { numRuns: 4 });
  } finally {
    ConfigIndex.prototype.tryChange = tryChange;
  }
  assert.ok(accepted > 20 && refused > 20, `both verdicts exercised (${accepted} accepted, ${refused} refused)`);
});
