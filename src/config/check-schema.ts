/**
 * Reads a plain value (parsed YAML, an API body, a stored document) against a schema of schema.ts: every key
 * checked, every problem reported in the file's words, defaults filled in, formats normalised.
 *
 * The schema alone decides; nothing here knows the configuration's sections. Rules of reading:
 *  - Null means "not given": an optional key is left out, a key with a default takes it, a required key is
 *    reported missing. A wrong value of a key with a default is reported and the default is used.
 *  - Unknown keys are reported (with "did you mean" for near misses): typos must not pass silently.
 *  - A mapping with a problem in a required key is still returned, marked incomplete (and so is every mapping
 *    that holds it), so that its names still count for references and duplicates (validate.ts); validate.ts
 *    checks relations among complete entries only. Any other failed list item is dropped.
 */
import type { TSchema } from '@sinclair/typebox';
import { FORMATS } from './formats.js';
import { childPath, describe, type Problems } from './problems.js';

type Obj = Record<string, unknown>;
/** A schema as its JSON (TypeBox schemas are plain JSON Schema objects). */
type Json = Record<string, unknown> & { properties?: Record<string, Json>; anyOf?: Json[]; items?: Json; required?: string[] };

const HINT_DISTANCE = 3;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value of o[key], undefined when absent or null. */
export function given(o: Obj, key: string): unknown {
  const v = Object.hasOwn(o, key) ? o[key] : undefined;
  return v === null ? undefined : v;
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

/** How a problem names what a schema expects ("an integer 1..65535 (bytes)"). */
export function expected(s: Json): string {
  if (typeof s.what === 'string' && s.type !== 'array') return s.what;
  if (s.type === 'boolean') return 'true or false';
  if (s.type === 'integer') return `an integer ${String(s.minimum)}..${String(s.maximum)}${typeof s.unit === 'string' ? ` (${s.unit})` : ''}`;
  if (s.type === 'array') return `a list of ${String(s.what)}`;
  if (Array.isArray(s.anyOf) && s.anyOf.every((v) => v.const !== undefined)) return `one of ${s.anyOf.map((v) => String(v.const)).join(', ')}`;
  return 'text';
}

export class SchemaReader {
  /** Every object read → its key path. */
  readonly pathOf = new WeakMap<object, string>();
  /** Every object read → the plain mapping it was read from. */
  readonly rawOf = new WeakMap<object, Obj>();
  /** Every list read → the key path of each item kept. */
  readonly itemPaths = new WeakMap<readonly unknown[], string[]>();
  /** Entries of lists of mappings with a problem in a required key. */
  readonly incomplete = new WeakSet<object>();

  constructor(readonly problems: Problems) {}

  /** The value read, or undefined after reporting why not. */
  read(schema: TSchema, v: unknown, path: string): unknown {
    const s = schema as unknown as Json;
    const p = this.problems;
    if (typeof s.format === 'string' && FORMATS[s.format] !== undefined) {
      return FORMATS[s.format](v, path, p, expected(s), minimumOf(s));
    }
    if (s.type === 'object' || typeof s.discriminator === 'string') return this.readMapping(s, v, path);
    if (s.type === 'array') return this.readList(s, v, path);
    if (Array.isArray(s.anyOf)) return this.readUnion(s, v, path);
    if (s.const !== undefined) {
      if (v === s.const) return v;
      p.fail(path, `must be ${String(s.const)}, got ${describe(v)}`);
      return undefined;
    }
    if (s.type === 'boolean') {
      if (typeof v === 'boolean') return v;
    } else if (s.type === 'integer') {
      if (typeof v === 'number' && Number.isInteger(v) && v >= (s.minimum as number) && v <= (s.maximum as number)) return v;
    } else if (s.type === 'string') {
      if (typeof v === 'string' && v !== '' && (typeof s.pattern !== 'string' || new RegExp(s.pattern).test(v))) return v;
    }
    p.fail(path, `must be ${expected(s)}, got ${describe(v)}`);
    return undefined;
  }

  /** Whether a value read is an object with a problem in a required key (kept so its names still count). */
  isIncomplete(v: unknown): boolean {
    return typeof v === 'object' && v !== null && this.incomplete.has(v);
  }

  /** A mapping (an object schema or a discriminated union); incomplete objects are returned marked. */
  readMapping(s: Json, v: unknown, path: string): Obj | undefined {
    if (!isObj(v)) {
      this.problems.fail(path, `must be a mapping (key: value lines), got ${describe(v)}`);
      return undefined;
    }
    const out = Object.create(null) as Obj;
    let complete: boolean;
    if (typeof s.discriminator === 'string') {
      complete = this.readVariant(s, v, path, out);
    } else {
      this.unknownKeys(v, path, Object.keys(s.properties ?? {}));
      complete = this.readProperties(s, v, path, out);
    }
    const plain = { ...out };
    this.pathOf.set(plain, path);
    this.rawOf.set(plain, v);
    if (!complete) this.incomplete.add(plain);
    return plain;
  }

  private unknownKeys(v: Obj, path: string, allowed: readonly string[]): void {
    for (const key of Object.keys(v)) {
      if (allowed.includes(key)) continue;
      let best = '';
      let bestDistance = HINT_DISTANCE;
      for (const a of allowed) {
        const d = editDistance(key.toLowerCase(), a);
        if (d < bestDistance) { best = a; bestDistance = d; }
      }
      const hint = best !== '' ? `did you mean "${best}"?` : `expected one of: ${allowed.join(', ')}`;
      this.problems.visit(childPath(path, key));
      this.problems.fail(childPath(path, key), `unknown key "${key}"; ${hint}`, 'key');
    }
  }

  /** Reads `s`'s properties of `v` into `out`; false when a required one is missing or wrong. */
  private readProperties(s: Json, v: Obj, path: string, out: Obj, skip: ReadonlySet<string> = new Set()): boolean {
    let complete = true;
    const required = new Set(s.required ?? []);
    for (const [key, ps] of Object.entries(s.properties ?? {})) {
      if (skip.has(key)) continue;
      const kp = childPath(path, key);
      this.problems.visit(kp);
      const raw = given(v, key);
      let value = raw === undefined ? undefined : this.read(ps as unknown as TSchema, raw, kp);
      const broken = value === undefined ? raw !== undefined : this.isIncomplete(value);
      if (broken && ps.default !== undefined) value = undefined;
      if (value === undefined && ps.default !== undefined) value = this.read(ps as unknown as TSchema, structuredClone(ps.default), kp);
      if (value !== undefined) out[key] = value;
      if (raw === undefined && value === undefined && required.has(key) && ps.contextual !== true) {
        this.problems.fail(kp, `is required: ${expected(ps)}`);
        complete = false;
      } else if (broken && ps.default === undefined && required.has(key)) complete = false;
    }
    return complete;
  }

  /**
   * A discriminated union: the discriminator selects the variant. A kind the data plane knows but the schema
   * has no variant for is "not supported yet"; settings of another kind than the selected one are reported.
   */
  private readVariant(s: Json, v: Obj, path: string, out: Obj): boolean {
    const disc = s.discriminator as string;
    const kinds = s.kinds as readonly string[];
    const variants = s.anyOf ?? [];
    const kindOf = (variant: Json): string => String(variant.properties?.[disc]?.const);
    const supported = variants.map(kindOf);
    const allowed = [...new Set([...variants.flatMap((variant) => Object.keys(variant.properties ?? {})), ...kinds])];
    this.unknownKeys(v, path, allowed);
    const kind = given(v, disc);
    const variant = variants.find((x) => kindOf(x) === kind);
    const noun = String(s.noun);
    if (typeof kind === 'string' && kinds.includes(kind)) {
      for (const other of kinds) {
        if (other === kind || given(v, other) === undefined) continue;
        if (supported.includes(other)) this.problems.fail(childPath(path, other), `settings for a ${other} ${noun}, but this ${noun}'s ${disc} is ${kind}`, 'key');
        else if (variant !== undefined) this.problems.fail(childPath(path, other), `${other} is not supported yet`, 'key');
      }
    }
    if (variant !== undefined) return this.readProperties(variant, v, path, out);
    // No variant: the common keys are still read (their problems reported), the entry is incomplete.
    const first = variants[0];
    const common = { ...first, properties: Object.fromEntries(Object.entries(first.properties ?? {}).filter(([k]) => !kinds.includes(k))) };
    const dp = childPath(path, disc);
    const discSchema: Json = { anyOf: kinds.map((k) => ({ const: k })) };
    let reported = false;
    const check = (): void => {
      if (reported) return;
      reported = true;
      this.problems.visit(dp);
      if (kind === undefined) this.problems.fail(dp, `is required: ${expected(discSchema)}`);
      else if (typeof kind !== 'string' || !kinds.includes(kind)) this.problems.fail(dp, `must be ${expected(discSchema)}, got ${describe(kind)}`);
      else this.problems.fail(dp, `${kind} is not supported yet; use ${supported.slice(0, -1).join(', ')} or ${supported[supported.length - 1]}`);
    };
    // Read in the schema's key order so ties at one position sort as the keys are written.
    for (const key of Object.keys(common.properties)) {
      if (key === disc) check();
      else this.readProperties({ ...common, properties: { [key]: common.properties[key] } }, v, path, out);
    }
    check();
    return false;
  }

  private readList(s: Json, v: unknown, path: string): unknown[] | undefined {
    const p = this.problems;
    let items: Array<[unknown, string]>;
    if (!Array.isArray(v)) {
      if (s.single !== true || isObj(v)) {
        p.fail(path, `must be a list of ${String(s.what)}, got ${describe(v)}`);
        return undefined;
      }
      items = [[v, path]];
    } else {
      if (typeof s.minItems === 'number' && v.length < s.minItems) {
        p.fail(path, `must list at least one of ${String(s.what)}`);
        return undefined;
      }
      items = v.map((item, i) => [item, `${path}[${i}]`]);
    }
    const itemSchema = s.items as Json;
    const mappings = itemSchema.type === 'object' || typeof itemSchema.discriminator === 'string';
    const out: unknown[] = [];
    const paths: string[] = [];
    for (const [item, ip] of items) {
      const value = mappings ? this.readMapping(itemSchema, item, ip) : this.read(itemSchema as unknown as TSchema, item, ip);
      if (value === undefined) continue;
      out.push(value);
      paths.push(ip);
    }
    this.itemPaths.set(out, paths);
    return out;
  }

  /** A union of literals and at most one object: a choice, or a mapping. */
  private readUnion(s: Json, v: unknown, path: string): unknown {
    const choices = (s.anyOf ?? []).filter((x) => x.const !== undefined).map((x) => x.const);
    const mapping = (s.anyOf ?? []).find((x) => x.type === 'object');
    if (choices.includes(v)) return v;
    if (mapping !== undefined && isObj(v)) return this.read(mapping as unknown as TSchema, v, path);
    this.problems.fail(path, `must be ${expected(s)}, got ${describe(v)}`);
    return undefined;
  }
}

/** The smallest integer a format accepts (port ranges: 0 for rules, 1 for the egress pool). */
function minimumOf(s: Json): number {
  if (typeof s.minimum === 'number') return s.minimum;
  const int = (s.anyOf ?? []).find((x) => x.type === 'integer');
  return typeof int?.minimum === 'number' ? int.minimum : 0;
}
