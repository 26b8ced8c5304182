/**
 * The API's JSON body parser (application/json and application/merge-patch+json): JSON.parse, then a refusal of
 * the keys that pollute prototypes once a body is merged into an object (`__proto__` anywhere, `prototype`
 * inside a `constructor` object), each refusal naming where it is, as every other 400 of the API does:
 *
 *   {"name":"x","gre":{"__proto__":{}}}  →  problem { path: "gre.__proto__", message: "key __proto__ is not allowed" }
 *
 * Fastify's own parser refuses them too, but as "Body is not valid JSON" with no field. JSON.parse itself
 * is safe (it defines `__proto__` as an own data property instead of calling the setter); the danger is the
 * code after it that copies or merges. Paths are written like the schema's problems: `a.b[0].c`.
 */

/** What went wrong in a body, and where (empty path: the whole body). */
export class JsonBodyError extends Error {
  constructor(readonly path: string, readonly detail: string, summary: string) {
    super(summary);
    this.name = 'JsonBodyError';
  }
}

const PROTO_KEY = '__proto__';
const CONSTRUCTOR_KEY = 'constructor';
const PROTOTYPE_KEY = 'prototype';

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path === '' ? key : `${path}.${key}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One place in the value being walked: its key in its parent (index for arrays), and the parent's place. */
interface Place {
  value: unknown;
  key: string | number | null;
  parent: Place | null;
}

/** `a.b[0].c`, built only for the place reported (a path per place would cost depth² on a deep body). */
function pathOf(place: Place): string {
  const keys: Array<string | number> = [];
  for (let p: Place | null = place; p !== null && p.key !== null; p = p.parent) keys.push(p.key);
  let path = '';
  for (let i = keys.length - 1; i >= 0; i--) path = join(path, keys[i]);
  return path;
}

/**
 * The first key of `value`, in document order, that must not be in a body, or null. Iterative: the body limit
 * bounds the work, and a deeply nested body cannot overflow the stack.
 */
export function forbiddenKey(value: unknown): { path: string; key: string } | null {
  const stack: Place[] = [{ value, key: null, parent: null }];
  while (stack.length > 0) {
    const place = stack.pop()!;
    const v = place.value;
    if (place.key === PROTO_KEY) return { path: pathOf(place), key: PROTO_KEY };
    if (place.key === CONSTRUCTOR_KEY && isObject(v) && Object.hasOwn(v, PROTOTYPE_KEY)) {
      return { path: join(pathOf(place), PROTOTYPE_KEY), key: `${CONSTRUCTOR_KEY}.${PROTOTYPE_KEY}` };
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], key: i, parent: place });
    } else if (isObject(v)) {
      const keys = Object.keys(v);
      for (let i = keys.length - 1; i >= 0; i--) stack.push({ value: v[keys[i]], key: keys[i], parent: place });
    }
  }
  return null;
}

/** Parses a request body; throws JsonBodyError (empty, not JSON, a forbidden key) naming the problem. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') throw new JsonBodyError('', 'is empty: a JSON value is required', 'the request body is empty');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new JsonBodyError('', (e as Error).message, 'the request body is not valid JSON');
  }
  const bad = forbiddenKey(value);
  if (bad !== null) throw new JsonBodyError(bad.path, `key ${bad.key} is not allowed`, `body: key ${bad.key} is not allowed`);
  return value;
}
