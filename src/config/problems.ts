/**
 * Configuration problems: what the loader and the validator report, and the collector they share.
 * Every problem names its key path and reason; a file's problems also carry line and column.
 */

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

/** Where a key path's key or value is in the file; { 0, 0 } for values that did not come from a file. */
export type Locator = (path: string, which: 'key' | 'value') => { line: number; column: number };
export const NO_POSITION = Object.freeze({ line: 0, column: 0 });

export function parentPath(path: string): string {
  const m = /(\[\d+\]|\.[^.[\]]*)$/.exec(path);
  if (m) return path.slice(0, m.index);
  return '';
}

export function childPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

const SHOWN_CHARS = 60;

/** A value as problem messages quote it (long text cut). Never used on secrets. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > SHOWN_CHARS ? `${v.slice(0, SHOWN_CHARS)}…` : v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

/** Collects the problems of one configuration. */
export class Problems {
  readonly list: ConfigProblem[] = [];
  /** Key path → the order in which the schema reader reached it (ties at one position sort by it). */
  private readonly visits = new Map<string, number>();
  constructor(private readonly locate: Locator = () => NO_POSITION) {}

  fail(path: string, message: string, which: 'key' | 'value' = 'value'): void {
    const { line, column } = this.locate(path, which);
    this.list.push({ path, line, column, message });
  }

  visit(path: string): void {
    if (!this.visits.has(path)) this.visits.set(path, this.visits.size);
  }

  /** Reports every value of `entries` seen twice, at its second occurrence. */
  unique(entries: Iterable<[string | undefined, string]>, what: string): void {
    const seen = new Map<string, string>();
    for (const [value, path] of entries) {
      if (value === undefined) continue;
      const first = seen.get(value);
      if (first !== undefined) this.fail(path, `duplicate ${what} ${JSON.stringify(value)} (already used at ${first})`);
      else seen.set(value, path);
    }
  }

  /**
   * In file order: by line and column; at one position (keys missing from one mapping) in the schema's key
   * order; then as reported.
   */
  sorted(): ConfigProblem[] {
    const rank = (p: ConfigProblem): number => this.visits.get(p.path) ?? Number.MAX_SAFE_INTEGER;
    return this.list
      .map((p, i) => ({ p, i }))
      .sort((a, b) => a.p.line - b.p.line || a.p.column - b.p.column || rank(a.p) - rank(b.p) || a.i - b.i)
      .map(({ p }) => p);
  }
}
