/**
 * The configuration file (`tether run --config FILE`): YAML text → a validated TetherConfig, every problem
 * with its file, line and column.
 *
 *   YAML text ─ parseDocument (positions kept) ─ PlainBuilder: plain JS values + key path → position table
 *             ─ validate (validate.ts: the schema, then the cross-field rules; ALL problems collected)
 *             ─ TetherConfig (names, snake_case; every default filled in)
 *
 * Decisions:
 *  - Validation works on plain values, so an API body or a stored document is checked by the same code;
 *    this module only adds positions to the problems and sorts them in file order.
 *  - Ids stay as given (assignIds in compile.ts assigns the others) and secrets given as files are read by
 *    the daemon: this module does no I/O.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { childPath, ConfigError, parentPath, Problems, type Locator } from './problems.js';
import type { TetherConfig } from './schema.js';
import { validate } from './validate.js';

/** Bounds the work a hostile file can cause through aliases (YAML "billion laughs"). */
const MAX_NODES = 200_000;

/** Where a path's key and value start in the file (character offsets). */
interface Position {
  key: number;
  value: number;
}

/** YAML nodes → plain values, recording where each key path is. */
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

/**
 * Parses and validates a YAML configuration. Throws ConfigError listing every problem (file, line, column,
 * key path, reason), one per line, in file order; never any other exception.
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
  const problems = new Problems(locate);
  for (const pr of builder.problems) problems.list.push({ path: pr.path, ...where(pr.offset), message: pr.message });
  const cfg = builder.problems.length === 0 ? validate(plain, problems) : undefined;
  if (problems.list.length > 0 || cfg === undefined) throw new ConfigError(fileName, problems.sorted());
  return cfg;
}
