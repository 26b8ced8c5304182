// The house rule, checked by the linter: which folder of src/ may import which.
//
// Imports flow one way, from I/O and control down to pure logic (docs/ARCHITECTURE.md draws it):
//
//   common, wire  ←  engines (flow, route, nat, policy, health, gateway)  ←  onramp, dataplane
//                 ←  io, config, control  ←  daemon  ←  lab, cli
//
// Control is handed the edge through an interface (control/apply.ts's EdgeLike) and never imports
// the daemon; io is the only folder that touches devices and sockets and imports no engine.
// bench/ and test/ may import anything under src/. A folder not in the table is an error: a new room
// in the house gets its row here and its box in docs/ARCHITECTURE.md.
import { dirname, relative, resolve, sep } from 'node:path';

const ENGINES = ['flow', 'route', 'nat', 'policy', 'health', 'gateway'];
const BASE = ['common', 'wire'];
const PURE = [...BASE, ...ENGINES, 'onramp', 'dataplane'];

/** Folder → the folders of src/ it may import from (besides itself). */
export const LAYERS = Object.freeze({
  common: [],
  wire: ['common'],
  ...Object.fromEntries(ENGINES.map((e) => [e, BASE])),
  onramp: [...BASE, ...ENGINES],
  dataplane: [...BASE, ...ENGINES, 'onramp'],
  io: BASE,
  config: PURE,
  control: [...PURE, 'config'],
  daemon: [...PURE, 'io', 'config', 'control'],
  lab: [...PURE, 'io', 'config', 'control', 'daemon'],
  cli: [...PURE, 'io', 'config', 'control', 'daemon', 'lab'],
});

/** The src/ folder a path lies in, or null when it is outside src/. */
function srcFolder(root, path) {
  const rel = relative(resolve(root, 'src'), path);
  if (rel.startsWith('..') || rel === '') return null;
  return rel.split(sep)[0];
}

const rule = {
  meta: {
    type: 'problem',
    docs: { description: 'imports between src/ folders follow the layering in docs/ARCHITECTURE.md' },
    schema: [],
    messages: {
      wrongWay: "src/{{from}} may not import from src/{{to}} (layering: src/{{from}} may import {{allowed}}; see docs/ARCHITECTURE.md)",
      unknownFolder: 'src/{{from}} is not in the layering table (eslint/layering.js): add its row and its place in docs/ARCHITECTURE.md',
    },
  },
  create(context) {
    const root = context.cwd;
    const file = context.filename;
    const from = srcFolder(root, file);
    if (from === null || !file.endsWith('.ts') || file.endsWith('.test.ts')) return {};
    const check = (node, source) => {
      if (typeof source !== 'string' || !source.startsWith('.')) return;
      const to = srcFolder(root, resolve(dirname(file), source));
      if (to === null || to === from || to.includes('.')) return;
      const allowed = LAYERS[from];
      if (allowed === undefined) {
        context.report({ node, messageId: 'unknownFolder', data: { from } });
      } else if (!allowed.includes(to)) {
        context.report({ node, messageId: 'wrongWay', data: { from, to, allowed: allowed.length ? allowed.join(', ') : 'nothing else' } });
      }
    };
    return {
      ImportDeclaration: (node) => check(node.source, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node.source, node.source.value),
      ExportAllDeclaration: (node) => check(node.source, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node.source, node.source.value),
    };
  },
};

export default { rules: { layering: rule } };
