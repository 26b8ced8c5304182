/**
 * The configuration store: the live configuration of the edge in SQLite (better-sqlite3), so that changes
 * made through the API (src/control/api.ts) survive a restart. docs/API.md, "Persistence".
 *
 *   YAML file ─ loadConfig ─ seedFrom (only when the store is empty) ─┐
 *                                                                    ▼
 *   API request ─ update(mutate) ─ BEGIN IMMEDIATE ─ the document in memory (re-read only when another
 *                 process wrote) ─ mutate a copy ─ validate: one changed entry through ConfigIndex (its schema
 *                 and the cross-references it touches), anything else through validateConfig ─ pin ids ─
 *                 write the rows that changed ─ the caller's apply (the running edge) ─ COMMIT
 *
 * Decisions:
 *  - One row per configuration object (site, WireGuard device, onramp, route, firewall rule) with its JSON,
 *    its position in its list (order matters: firewall rules are first-match, ids are assigned in list order)
 *    and an id. Sections that are not lists (log, api, store, flows, egress, firewall.default_action) are
 *    rows of `settings`. The JSON is the configuration's own snake_case shape: one schema everywhere.
 *  - Ids are pinned: sites, onramps and firewall rules get their data-plane id written into their object when
 *    they are stored, so deleting or inserting an entry never renumbers the others; the data plane's flows hold
 *    these ids. The row id is that id. Routes and WireGuard devices have no id in the configuration; their row
 *    id comes from a per-kind counter that never reuses.
 *  - Ids only grow: flows, NAT mappings, metric series and log lines name sites, onramps and rules by id, so an
 *    id, once handed out, never names another entry. `sequences` keeps, per kind, one above the highest id ever
 *    stored (persisted: across restarts too); a new entry without an id gets the next one, and a new entry may
 *    not bring an explicit id below it (that id may have belonged to a deleted entry).
 *  - Every write validates the resulting configuration inside the transaction (same rules and messages as the
 *    YAML file) and rolls back on any problem. A change of one entry is validated in time proportional to the
 *    change (src/config/incremental.ts: the entry's schema, the names and keys it touches); its verdict and
 *    result are those of validateConfig over the whole document, which decides whenever the index cannot
 *    (several entries, settings, any problem: its messages and paths are the ones reported).
 *  - The document stays in memory between writes (a snapshot whose rows hold the validated configuration's
 *    own entry objects): SQLite's data_version tells when another connection (another process) committed,
 *    and only then is it read again. A write touches only the rows whose entry changed (by identity: mutators
 *    replace an entry, never edit one in place) or whose position moved. Snapshot values are shared, never
 *    copied: whoever gets a document or a configuration from the store reads it and does not change it.
 *  - Concurrency: WAL mode (readers never block the writer) and busy_timeout; writes use BEGIN IMMEDIATE so a
 *    read-modify-write of two connections (two processes) is serialised instead of failing with SQLITE_BUSY
 *    on lock upgrade or losing an update.
 *  - The database file holds secrets (private keys given inline): it is created with mode 0600.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MAX_ONRAMP_ID, MAX_SITE_ID } from '../common/ids.js';
import { DEFAULT_LANES } from '../common/lanes.js';
import { ConfigError, ConfigIndex, MAX_RULE_ID, type EntryChange, type IndexedChange, type ConfigProblem, stringifyConfig, validateConfig, type ApiConfig, type EgressConfig, type FirewallRuleConfig, type FlowsConfig, type DaemonConfig, type LogConfig, type OnrampConfig, type RouteConfig, type SiteConfig, type StoreConfig, type TetherConfig, type WireGuardDeviceConfig } from '../config/index.js';

/** Bumped with every change of the tables below; open() migrates older stores or refuses newer ones. */
export const STORE_SCHEMA_VERSION = 1;
const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const DB_FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** The list kinds of the configuration, as stored. */
export type EntryKind = 'sites' | 'wireguard_devices' | 'onramps' | 'routes' | 'firewall_rules';
export const ENTRY_KINDS: readonly EntryKind[] = ['sites', 'wireguard_devices', 'onramps', 'routes', 'firewall_rules'];

export interface EntryValue {
  sites: SiteConfig;
  wireguard_devices: WireGuardDeviceConfig;
  onramps: OnrampConfig;
  routes: RouteConfig;
  firewall_rules: FirewallRuleConfig;
}

export interface StoredEntry<K extends EntryKind = EntryKind> {
  /** Row id: the object's own id for sites, onramps and firewall rules; a store counter for the others. */
  id: number;
  value: EntryValue[K];
}

/** Whether a kind's row id is the configuration object's `id` field (pinned data-plane id). */
export function hasConfigId(kind: EntryKind): boolean {
  return kind === 'sites' || kind === 'onramps' || kind === 'firewall_rules';
}

/** Path of a kind's list in TetherConfig, for problem paths ("firewall.rules[2]"). */
export function configListPath(kind: EntryKind): string {
  return kind === 'firewall_rules' ? 'firewall.rules' : kind;
}

export interface StoreSettings {
  log: LogConfig;
  api: ApiConfig;
  store: StoreConfig;
  flows: FlowsConfig;
  /** Absent in a store written before lanes: the default. */
  daemon?: DaemonConfig;
  egress?: EgressConfig;
  default_action: 'allow' | 'deny';
}

/** The whole configuration as the store holds it: settings, and each list with row ids, in order. */
export interface StoreDoc {
  settings: StoreSettings;
  entries: { [K in EntryKind]: Array<StoredEntry<K>> };
}

/** An id the store has no entry for. */
export class NotFoundError extends Error {
  constructor(readonly kind: EntryKind, readonly id: number | string) {
    super(`no ${kind} entry ${JSON.stringify(id)}`);
    this.name = 'NotFoundError';
  }
}

export interface UpdateResult<R> {
  result: R;
  /** The configuration before and after the change (validated, ids pinned). */
  previous: TetherConfig;
  config: TetherConfig;
}

/** A change validated and ready to write (ConfigStore.prepare); opaque to callers. */
export interface PreparedUpdate<R> {
  readonly snap: Snapshot;
  readonly doc: StoreDoc;
  readonly result: R;
  readonly previous: TetherConfig;
  readonly config: TetherConfig;
  /** Per kind, the id high-water mark to store. */
  readonly marks: ReadonlyArray<[GrowingKind, number]>;
  readonly indexed: IndexedChange | undefined;
  /** Whether the snapshot's index stays valid for the result (it took the change, or nothing changed). */
  readonly keepsIndex: boolean;
}

export interface OpenOptions {
  busyTimeoutMs?: number;
}

const SETTINGS_KEYS = ['log', 'api', 'store', 'flows', 'daemon', 'egress', 'default_action'] as const;

/** The configuration of a document (not validated). */
export function docToConfig(doc: StoreDoc): TetherConfig {
  const s = doc.settings;
  const e = doc.entries;
  return {
    version: 1,
    log: s.log,
    api: s.api,
    store: s.store,
    sites: e.sites.map((r) => r.value),
    wireguard_devices: e.wireguard_devices.map((r) => r.value),
    onramps: e.onramps.map((r) => r.value),
    routes: e.routes.map((r) => r.value),
    ...(s.egress !== undefined ? { egress: s.egress } : {}),
    firewall: { default_action: s.default_action, rules: e.firewall_rules.map((r) => r.value) },
    flows: s.flows,
    daemon: s.daemon ?? { lanes: DEFAULT_LANES },
  };
}

/** The kinds whose ids the data plane records (flows, NAT, metrics, logs): they only grow. */
type GrowingKind = 'sites' | 'onramps' | 'firewall_rules';
const GROWING_KINDS: readonly GrowingKind[] = ['sites', 'onramps', 'firewall_rules'];
const MAX_ID: Record<GrowingKind, number> = { sites: MAX_SITE_ID, onramps: MAX_ONRAMP_ID, firewall_rules: MAX_RULE_ID };

function idEntries(cfg: TetherConfig, kind: GrowingKind): Array<{ id?: number }> {
  return kind === 'sites' ? cfg.sites : kind === 'onramps' ? cfg.onramps : cfg.firewall.rules;
}

/**
 * The stored document held in memory: its rows' values are `config`'s own entry objects (so an unchanged row
 * is recognised by identity), `positions` each row's stored position, `stale` the rows whose stored JSON is not
 * the validated value's (written again by the next write). Valid while SQLite's data_version is `version`.
 */
interface Snapshot {
  version: number;
  doc: StoreDoc;
  config: TetherConfig;
  /** Built at the first change after a full validation, then kept up to date by each change. */
  index: ConfigIndex | null;
  positions: { [K in EntryKind]: Map<number, number> };
  stale: Set<StoredEntry>;
}

/** A document the caller may change: its own settings and lists; the entries are the snapshot's (replace, never edit). */
function docCopy(doc: StoreDoc): StoreDoc {
  const entries = {} as StoreDoc['entries'];
  for (const kind of ENTRY_KINDS) (entries as Record<EntryKind, StoredEntry[]>)[kind] = (doc.entries[kind] as StoredEntry[]).slice();
  return { settings: structuredClone(doc.settings), entries };
}

/**
 * The one entry `after` changed of `before` (same settings, one list differing by one entry); null when
 * nothing changed; undefined for anything else.
 */
function singleChange(before: StoreDoc, after: StoreDoc): EntryChange | null | undefined {
  for (const key of SETTINGS_KEYS) if (JSON.stringify(before.settings[key]) !== JSON.stringify(after.settings[key])) return undefined;
  let change: EntryChange | undefined;
  for (const kind of ENTRY_KINDS) {
    const a = before.entries[kind] as StoredEntry[];
    const b = after.entries[kind] as StoredEntry[];
    let lo = 0;
    while (lo < a.length && lo < b.length && a[lo] === b[lo]) lo++;
    if (lo === a.length && lo === b.length) continue;
    let hi = 0; // equal entries at the end
    while (hi < a.length - lo && hi < b.length - lo && a[a.length - 1 - hi] === b[b.length - 1 - hi]) hi++;
    const removed = a.length - lo - hi;
    const added = b.length - lo - hi;
    if (change !== undefined || removed > 1 || added > 1) return undefined;
    if (removed === 1 && added === 1) {
      if (a[lo].id !== b[lo].id) return undefined;
      change = { op: 'replace', kind, index: lo, value: b[lo].value };
    } else if (added === 1) change = { op: 'insert', kind, index: lo, value: b[lo].value };
    else change = { op: 'remove', kind, index: lo };
  }
  return change ?? null;
}

export class ConfigStore {
  private readonly db: Database.Database;
  private closed = false;
  /** The document as this connection last read or committed it. */
  private snap: Snapshot | null = null;

  private constructor(readonly path: string, db: Database.Database) {
    this.db = db;
  }

  /** Opens (creating when needed, mode 0600) the store at `path`; ':memory:' keeps nothing. */
  static open(path: string, options: OpenOptions = {}): ConfigStore {
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: DIR_MODE });
      // Create the file ourselves so it never exists with the umask's mode; SQLite gives its -wal and -shm
      // files the database file's permissions.
      closeSync(openSync(path, 'a', DB_FILE_MODE));
    }
    const db = new Database(path);
    try {
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS))}`);
      if (path !== ':memory:') db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL'); // WAL + NORMAL: durable across process crashes, atomic across power loss
      db.pragma('foreign_keys = ON');
      const store = new ConfigStore(path, db);
      store.migrate();
      return store;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  private migrate(): void {
    this.db.transaction(() => {
      this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
      const row = this.db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined;
      if (row !== undefined && row.version > STORE_SCHEMA_VERSION) {
        throw new Error(`store ${this.path}: schema version ${row.version} is newer than this tether understands (${STORE_SCHEMA_VERSION})`);
      }
      if (row === undefined) {
        this.db.exec(`
          CREATE TABLE settings (key TEXT PRIMARY KEY, body TEXT NOT NULL);
          CREATE TABLE entries (
            kind TEXT NOT NULL,
            id INTEGER NOT NULL,
            position INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (kind, id)
          );
          CREATE INDEX entries_order ON entries (kind, position);
          CREATE TABLE sequences (kind TEXT PRIMARY KEY, next INTEGER NOT NULL);
        `);
        this.db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(STORE_SCHEMA_VERSION);
      }
    }).immediate();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  /** True when the store has never been seeded or written. */
  isEmpty(): boolean {
    return this.db.prepare("SELECT 1 FROM settings WHERE key = 'log'").get() === undefined;
  }

  /**
   * Seeds an empty store with `cfg` (the YAML file, or defaultConfig). Returns false, changing nothing, when
   * the store already holds a configuration: the store wins over the file after the first start.
   */
  seedFrom(cfg: TetherConfig): boolean {
    return this.db.transaction(() => {
      if (!this.isEmpty()) return false;
      const next = validateConfig(structuredClone(cfg), 'seed');
      const put = this.db.prepare('INSERT INTO sequences (kind, next) VALUES (?, ?) ON CONFLICT (kind) DO UPDATE SET next = excluded.next');
      for (const [kind, mark] of this.pinIds(next, null)) put.run(kind, mark);
      this.writeDoc(this.configToDoc(next), null);
      this.snap = null;
      return true;
    }).immediate();
  }

  /** The stored configuration, validated. Throws when the store is empty. */
  load(): TetherConfig {
    return this.db.transaction(() => {
      if (this.isEmpty()) throw new Error(`store ${this.path} is empty: seed it first`);
      return validateConfig(docToConfig(this.readDoc()), `store ${this.path}`);
    }).deferred();
  }

  /** For `tether config export`: the whole configuration, secrets included (stringifyConfig for YAML). */
  exportConfig(): TetherConfig {
    return this.load();
  }

  exportYaml(): string {
    return stringifyConfig(this.exportConfig());
  }

  /**
   * The whole document with row ids (a consistent snapshot). Its own settings and lists; the entries are
   * shared with the store's memory: read them, do not change them.
   */
  read(): StoreDoc {
    return docCopy(this.snapshot().doc);
  }

  list<K extends EntryKind>(kind: K): Array<StoredEntry<K>> {
    return this.selectEntries(kind);
  }

  get<K extends EntryKind>(kind: K, id: number): StoredEntry<K> | undefined {
    const row = this.db.prepare('SELECT id, body FROM entries WHERE kind = ? AND id = ?').get(kind, id) as { id: number; body: string } | undefined;
    return row === undefined ? undefined : { id: row.id, value: JSON.parse(row.body) as EntryValue[K] };
  }

  /**
   * The one write primitive: in an IMMEDIATE transaction, reads the document, lets `mutate` change it (and
   * return a result), validates the whole resulting configuration (throws ConfigError: rolled back), pins ids,
   * calls `check` (may throw to refuse the change: rolled back), writes what changed, calls `apply` (the running
   * edge takes the change; may throw: rolled back) and commits.
   */
  update<R>(mutate: (doc: StoreDoc) => R, check?: (next: TetherConfig, previous: TetherConfig) => void, apply?: (next: TetherConfig, previous: TetherConfig) => void): UpdateResult<R> {
    return this.commit(null, mutate, check, apply);
  }

  /**
   * The first half of update, without writing anything: the change made to a copy of the document in memory,
   * validated, ids chosen and `check` passed. commit() writes it (the API lets waiting packets through in
   * between, so that only the write and the running edge's part of a change pause forwarding).
   */
  prepare<R>(mutate: (doc: StoreDoc) => R, check?: (next: TetherConfig, previous: TetherConfig) => void): PreparedUpdate<R> {
    const snap = this.snapshot();
    const previous = snap.config;
    const doc = docCopy(snap.doc);
    const result = mutate(doc);
    // One entry changed: validated against the index (its verdict is validateConfig's); otherwise, or when
    // the index cannot decide, the whole document (its problems are the ones reported).
    const change = singleChange(snap.doc, doc);
    const indexed = change ? (snap.index ??= new ConfigIndex(previous)).tryChange(change) : undefined;
    // Nothing changed: the snapshot's configuration is valid as it is.
    const config = change === null ? previous : indexed?.config ?? validateConfig(docToConfig(doc), 'request');
    const marks = this.pinIds(config, previous);
    check?.(config, previous);
    return { snap, doc, result, previous, config, marks, indexed, keepsIndex: indexed !== undefined || change === null };
  }

  /**
   * Writes a prepared change in an IMMEDIATE transaction, calls `apply` and commits. When the document changed
   * since `prepared` was made (another request of this process, or another process, committed) or there is
   * none, the change is prepared again inside the transaction from `mutate` and `check`.
   */
  commit<R>(prepared: PreparedUpdate<R> | null, mutate: (doc: StoreDoc) => R, check?: (next: TetherConfig, previous: TetherConfig) => void, apply?: (next: TetherConfig, previous: TetherConfig) => void): UpdateResult<R> {
    let committed: Snapshot | undefined;
    let p = prepared;
    const r = this.db.transaction((): UpdateResult<R> => {
      if (p === null || this.snap !== p.snap || p.snap.version !== this.dataVersion()) p = this.prepare(mutate, check);
      const put = this.db.prepare('INSERT INTO sequences (kind, next) VALUES (?, ?) ON CONFLICT (kind) DO UPDATE SET next = excluded.next');
      for (const [kind, next] of p.marks) put.run(kind, next);
      const next = this.normalisedDoc(p.doc, p.config, p.snap);
      const positions = this.writeDoc(next, p.snap);
      apply?.(p.config, p.previous);
      committed = { version: 0, doc: next, config: p.config, index: p.keepsIndex ? p.snap.index : null, positions, stale: new Set() };
      return { result: p.result, previous: p.previous, config: p.config };
    }).immediate();
    // Committed: the index takes the change (tryChange left it as it was, for a rollback). SQLite's
    // data_version moves only for other connections' commits, so this one's own leaves the snapshot valid.
    p!.indexed?.commit();
    if (committed !== undefined) this.snap = { ...committed, version: this.dataVersion() };
    return r;
  }

  /** The document in memory, read again (and validated) only when another connection has committed since. */
  private snapshot(): Snapshot {
    if (this.snap !== null && this.snap.version === this.dataVersion()) return this.snap;
    this.snap = null;
    const snap = this.db.transaction((): Snapshot => {
      if (this.isEmpty()) throw new Error(`store ${this.path} is empty: seed it first`);
      const { doc: stored, positions } = this.readDocWithPositions();
      const config = validateConfig(docToConfig(stored), `store ${this.path}`);
      const doc = this.normalisedDoc(stored, config, null);
      const stale = new Set<StoredEntry>();
      for (const kind of ENTRY_KINDS) {
        (doc.entries[kind] as StoredEntry[]).forEach((row, i) => {
          if (JSON.stringify(row.value) !== JSON.stringify((stored.entries[kind] as StoredEntry[])[i].value)) stale.add(row);
        });
      }
      return { version: this.dataVersion(), doc, config, index: null, positions, stale };
    }).deferred();
    this.snap = snap;
    return snap;
  }

  private dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  /**
   * Replaces the whole stored configuration with `cfg` (`tether run --config-wins`): the same replacement as
   * PUT /v1/config (entries keep their row ids where they keep their identity), validated and committed as one.
   */
  replaceWith(cfg: TetherConfig, check?: (next: TetherConfig, previous: TetherConfig) => void): UpdateResult<void> {
    if (this.isEmpty()) {
      this.seedFrom(cfg);
      const config = this.load();
      return { result: undefined, previous: config, config };
    }
    return this.update((doc) => {
      const next = structuredClone(cfg);
      // Sites, onramps and rules the file gives no id keep the one they have in the store (by name), so
      // resource URLs and the flows' ids stay what they were.
      const current = docToConfig(doc);
      const keepIds = (list: Array<{ name?: string; id?: number }>, stored: Array<{ name?: string; id?: number }>): void => {
        const taken = new Set(list.map((x) => x.id).filter((id) => id !== undefined));
        for (const x of list) {
          const id = x.name === undefined ? undefined : stored.find((s) => s.name === x.name)?.id;
          if (x.id === undefined && id !== undefined && !taken.has(id)) { x.id = id; taken.add(id); }
        }
      };
      keepIds(next.sites, current.sites);
      keepIds(next.onramps, current.onramps);
      keepIds(next.firewall.rules, current.firewall.rules);
      replaceDoc(doc, next as unknown as Partial<TetherConfig> & Obj);
    }, check);
  }

  /** Adds an entry at the end of its list (or before the entry `beforeId`); returns its row id. */
  create<K extends EntryKind>(kind: K, value: EntryValue[K], check?: (next: TetherConfig, previous: TetherConfig) => void, beforeId?: number): UpdateResult<StoredEntry<K>> {
    let index = -1;
    const r = this.update((doc) => {
      const list = doc.entries[kind] as Array<StoredEntry<K>>;
      const entry: StoredEntry<K> = { id: 0, value };
      if (beforeId === undefined) list.push(entry);
      else {
        const at = list.findIndex((e) => e.id === beforeId);
        if (at < 0) throw new NotFoundError(kind, beforeId);
        list.splice(at, 0, entry);
      }
      index = list.indexOf(entry);
      return index;
    }, check);
    return { ...r, result: this.entryAt(kind, index) };
  }

  /** Replaces entry `id` with `value` (same position). */
  replace<K extends EntryKind>(kind: K, id: number, value: EntryValue[K], check?: (next: TetherConfig, previous: TetherConfig) => void): UpdateResult<StoredEntry<K>> {
    let index = -1;
    const r = this.update((doc) => {
      const list = doc.entries[kind] as Array<StoredEntry<K>>;
      index = list.findIndex((e) => e.id === id);
      if (index < 0) throw new NotFoundError(kind, id);
      list[index] = { id, value };
    }, check);
    return { ...r, result: this.entryAt(kind, index) };
  }

  remove<K extends EntryKind>(kind: K, id: number, check?: (next: TetherConfig, previous: TetherConfig) => void): UpdateResult<StoredEntry<K>> {
    return this.update((doc) => {
      const list = doc.entries[kind] as Array<StoredEntry<K>>;
      const index = list.findIndex((e) => e.id === id);
      if (index < 0) throw new NotFoundError(kind, id);
      return list.splice(index, 1)[0];
    }, check);
  }

  /** One above the highest id ever stored for `kind` (1 for a kind never written). */
  idHighWater(kind: GrowingKind): number {
    const row = this.db.prepare('SELECT next FROM sequences WHERE kind = ?').get(kind) as { next: number } | undefined;
    return row?.next ?? 1;
  }

  // ─── internals ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * Gives every site, onramp and firewall rule without an id the next id of its kind, refuses a new entry's
   * explicit id below the kind's high-water mark; returns the raised marks (for the caller to store).
   */
  private pinIds(cfg: TetherConfig, previous: TetherConfig | null): Array<[GrowingKind, number]> {
    const problems: ConfigProblem[] = [];
    const marks: Array<[GrowingKind, number]> = [];
    for (const kind of GROWING_KINDS) {
      const mark = this.idHighWater(kind);
      const had = new Set(previous === null ? [] : idEntries(previous, kind).map((e) => e.id));
      const list = idEntries(cfg, kind);
      let next = mark;
      list.forEach((e, i) => {
        if (e.id === undefined) return;
        if (!had.has(e.id) && e.id < mark) problems.push({ path: `${configListPath(kind)}[${i}].id`, line: 0, column: 0, message: `${e.id} may have belonged to a deleted entry: ids are never reused (leave id out, or use ${mark} or more)` });
        next = Math.max(next, e.id + 1);
      });
      list.forEach((e, i) => {
        if (e.id !== undefined) return;
        if (next > MAX_ID[kind]) problems.push({ path: `${configListPath(kind)}[${i}]`, line: 0, column: 0, message: `no ${kind === 'firewall_rules' ? 'rule' : kind.slice(0, -1)} id left (ids only grow, up to ${MAX_ID[kind]})` });
        else e.id = next++;
      });
      if (next !== mark) marks.push([kind, next]);
    }
    if (problems.length > 0) throw new ConfigError('request', problems);
    return marks;
  }

  private entryAt<K extends EntryKind>(kind: K, index: number): StoredEntry<K> {
    const rows = this.selectEntries(kind);
    return rows[index];
  }

  private selectEntries<K extends EntryKind>(kind: K): Array<StoredEntry<K>> {
    const rows = this.db.prepare('SELECT id, body FROM entries WHERE kind = ? ORDER BY position').all(kind) as Array<{ id: number; body: string }>;
    return rows.map((r) => ({ id: r.id, value: JSON.parse(r.body) as EntryValue[K] }));
  }

  private readDoc(): StoreDoc {
    return this.readDocWithPositions().doc;
  }

  private readDocWithPositions(): { doc: StoreDoc; positions: Snapshot['positions'] } {
    const settings = Object.create(null) as Record<string, unknown>;
    for (const row of this.db.prepare('SELECT key, body FROM settings').all() as Array<{ key: string; body: string }>) {
      settings[row.key] = JSON.parse(row.body);
    }
    const entries = {} as StoreDoc['entries'];
    const positions = {} as Snapshot['positions'];
    for (const kind of ENTRY_KINDS) {
      const rows = this.db.prepare('SELECT id, position, body FROM entries WHERE kind = ? ORDER BY position').all(kind) as Array<{ id: number; position: number; body: string }>;
      (entries as Record<EntryKind, StoredEntry[]>)[kind] = rows.map((r) => ({ id: r.id, value: JSON.parse(r.body) as never }));
      positions[kind] = new Map(rows.map((r) => [r.id, r.position]));
    }
    return { doc: { settings: settings as unknown as StoreSettings, entries }, positions };
  }

  /** The document of a validated configuration: values normalised (defaults filled in), ids pinned. */
  private configToDoc(cfg: TetherConfig): StoreDoc {
    const doc: StoreDoc = {
      settings: { log: cfg.log, api: cfg.api, store: cfg.store, flows: cfg.flows, daemon: cfg.daemon, default_action: cfg.firewall.default_action },
      entries: { sites: [], wireguard_devices: [], onramps: [], routes: [], firewall_rules: [] },
    };
    if (cfg.egress !== undefined) doc.settings.egress = cfg.egress;
    const values = this.listsOf(cfg);
    for (const kind of ENTRY_KINDS) {
      (doc.entries as Record<EntryKind, StoredEntry[]>)[kind] = values[kind].map((value) => ({ id: 0, value }));
    }
    return doc;
  }

  private listsOf(cfg: TetherConfig): { [K in EntryKind]: Array<EntryValue[K]> } {
    return { sites: cfg.sites, wireguard_devices: cfg.wireguard_devices, onramps: cfg.onramps, routes: cfg.routes, firewall_rules: cfg.firewall.rules };
  }

  /**
   * `doc` with the validated values of `cfg` (same order), keeping doc's row ids. A row of `snap` whose value
   * `cfg` still holds (the same object: an entry the change did not touch) is kept as it is.
   */
  private normalisedDoc(doc: StoreDoc, cfg: TetherConfig, snap: Snapshot | null): StoreDoc {
    const values = this.listsOf(cfg);
    const out: StoreDoc = {
      settings: { log: cfg.log, api: cfg.api, store: cfg.store, flows: cfg.flows, daemon: cfg.daemon, default_action: cfg.firewall.default_action },
      entries: { sites: [], wireguard_devices: [], onramps: [], routes: [], firewall_rules: [] },
    };
    if (cfg.egress !== undefined) out.settings.egress = cfg.egress;
    for (const kind of ENTRY_KINDS) {
      const rows = doc.entries[kind] as StoredEntry[];
      (out.entries as Record<EntryKind, StoredEntry[]>)[kind] = (values[kind] as unknown[]).map((value, i) => {
        const row = rows[i];
        if (snap !== null && row.value === value) return row;
        return { id: hasConfigId(kind) ? (value as { id: number }).id : row.id, value } as StoredEntry;
      });
    }
    return out;
  }

  /**
   * Writes the rows of `doc` that differ from `before` (null: an empty store): rows that are not `before`'s own
   * objects (or are stale there), rows gone, and rows whose position must move to keep the list's order
   * (positions only need to increase along the list: a removal leaves a gap, an insertion at the end moves
   * nothing). Row ids 0 are assigned. Returns every row's position.
   */
  private writeDoc(doc: StoreDoc, before: Snapshot | null): Snapshot['positions'] {
    const putSetting = this.db.prepare('INSERT INTO settings (key, body) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET body = excluded.body');
    const delSetting = this.db.prepare('DELETE FROM settings WHERE key = ?');
    for (const key of SETTINGS_KEYS) {
      const value = doc.settings[key];
      if (value === undefined) delSetting.run(key);
      else if (before === null || JSON.stringify(before.doc.settings[key]) !== JSON.stringify(value)) putSetting.run(key, JSON.stringify(value));
    }
    const del = this.db.prepare('DELETE FROM entries WHERE kind = ? AND id = ?');
    const put = this.db.prepare('INSERT INTO entries (kind, id, position, body) VALUES (?, ?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET position = excluded.position, body = excluded.body');
    const move = this.db.prepare('UPDATE entries SET position = ? WHERE kind = ? AND id = ?');
    const positions = {} as Snapshot['positions'];
    for (const kind of ENTRY_KINDS) {
      const rows = doc.entries[kind] as StoredEntry[];
      const old = before === null ? [] : (before.doc.entries[kind] as StoredEntry[]);
      const oldPositions = before === null ? new Map<number, number>() : before.positions[kind];
      for (const row of rows) {
        if (row.id !== 0) continue;
        row.id = hasConfigId(kind) ? (row.value as { id: number }).id : this.nextId(kind);
      }
      const oldRows = new Map(old.map((o) => [o.id, o]));
      const keep = new Set(rows.map((r) => r.id));
      for (const o of old) if (!keep.has(o.id)) del.run(kind, o.id);
      const at = new Map<number, number>();
      let last = -1;
      for (const row of rows) {
        const had = oldPositions.get(row.id);
        const position = had !== undefined && had > last ? had : last + 1;
        last = position;
        at.set(row.id, position);
        const prev = oldRows.get(row.id);
        const same = prev !== undefined && (prev === row ? !before!.stale.has(prev) : JSON.stringify(prev.value) === JSON.stringify(row.value) && !before!.stale.has(prev));
        if (!same) put.run(kind, row.id, position, JSON.stringify(row.value));
        else if (position !== had) move.run(position, kind, row.id);
      }
      positions[kind] = at;
    }
    return positions;
  }

  private nextId(kind: EntryKind): number {
    const row = this.db.prepare('SELECT next FROM sequences WHERE kind = ?').get(kind) as { next: number } | undefined;
    const id = row?.next ?? 1;
    this.db.prepare('INSERT INTO sequences (kind, next) VALUES (?, ?) ON CONFLICT (kind) DO UPDATE SET next = excluded.next').run(kind, id + 1);
    return id;
  }
}

type Obj = Record<string, unknown>;

/**
 * Replaces a document's content with a whole configuration (PUT /v1/config, `tether run --config-wins`).
 * Entries keep their row ids when they keep their identity (same id for sites, onramps and rules; same name
 * for devices; same position and content for routes) so that resource URLs stay valid across an import.
 */
export function replaceDoc(doc: StoreDoc, cfg: Partial<TetherConfig> & Obj): void {
  const s = doc.settings;
  const keep = <T>(key: string, fallback: T): T => (cfg[key] === undefined ? fallback : (cfg[key] as T));
  s.log = keep('log', {}) as never;
  s.api = keep('api', {}) as never;
  s.store = keep('store', {}) as never;
  s.flows = keep('flows', {}) as never;
  if (cfg.egress === undefined) delete s.egress; else s.egress = cfg.egress;
  const fw = (cfg.firewall ?? {}) as Partial<TetherConfig['firewall']>;
  s.default_action = (fw.default_action ?? undefined) as never;
  const lists: Record<EntryKind, Obj[]> = {
    sites: (cfg.sites ?? []) as unknown as Obj[],
    wireguard_devices: (cfg.wireguard_devices ?? []) as unknown as Obj[],
    onramps: (cfg.onramps ?? []) as unknown as Obj[],
    routes: (cfg.routes ?? []) as unknown as Obj[],
    firewall_rules: (fw.rules ?? []) as unknown as Obj[],
  };
  for (const kind of Object.keys(lists) as EntryKind[]) {
    const old = doc.entries[kind] as StoredEntry[];
    const used = new Set<number>();
    (doc.entries as Record<EntryKind, StoredEntry[]>)[kind] = lists[kind].map((value) => {
      // Sites, onramps and rules: the store takes the id from the (pinned) value. One imported without an id
      // keeps the id of the entry of the same name (a file written by hand keeps its onramps and their flows;
      // ids only grow, so a new id would end every flow of the "new" onramp).
      if (hasConfigId(kind) && value.id === undefined && typeof value.name === 'string') {
        const named = old.find((o) => (o.value as { name?: string }).name === value.name);
        if (named !== undefined) value.id = named.id;
      }
      const same = hasConfigId(kind) ? undefined
        : kind === 'wireguard_devices' ? old.find((o) => !used.has(o.id) && (o.value as { name: string }).name === value.name)
          : old.find((o) => !used.has(o.id) && JSON.stringify(o.value) === JSON.stringify(value));
      if (same !== undefined) used.add(same.id);
      return { id: same?.id ?? 0, value } as unknown as StoredEntry;
    });
  }
}
