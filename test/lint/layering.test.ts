/**
 * The layering is a rule the build checks (eslint/layering.js): a wrong-way import fails `npm run lint`,
 * and so `npm test`. These run the project's own ESLint configuration on code that is not on disk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ESLint } from 'eslint';

const eslint = new ESLint({ cwd: process.cwd() });

async function layeringErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result.messages.filter((m) => m.ruleId === 'tether/layering').map((m) => m.message);
}

test('a file in src/wire importing from the daemon fails the lint', async () => {
  const errors = await layeringErrors('src/wire/wrong-way.ts', "import { Edge } from '../daemon/edge.js';\nexport const e = Edge;\n");
  assert.equal(errors.length, 1);
  assert.match(errors[0], /src\/wire may not import from src\/daemon/);
});

test('re-exports and dynamic imports are checked too; control never imports the daemon', async () => {
  assert.equal((await layeringErrors('src/flow/x.ts', "export * from '../dataplane/pipeline.js';\n")).length, 1);
  assert.equal((await layeringErrors('src/control/x.ts', "export const m = () => import('../daemon/edge.js');\n")).length, 1);
});

test('imports the right way pass: engines from wire, the daemon from control, a folder from itself', async () => {
  assert.deepEqual(await layeringErrors('src/flow/x.ts', "import { inspect } from '../wire/inspect.js';\nexport const f = inspect;\n"), []);
  assert.deepEqual(await layeringErrors('src/daemon/x.ts', "import { Pipeline } from '../dataplane/pipeline.js';\nexport const p = Pipeline;\n"), []);
  assert.deepEqual(await layeringErrors('src/wire/x.ts', "import { inspect } from './inspect.js';\nexport const f = inspect;\n"), []);
});

test('a new folder under src/ must be given its place in the layering', async () => {
  const errors = await layeringErrors('src/newroom/x.ts', "import { inspect } from '../wire/inspect.js';\nexport const f = inspect;\n");
  assert.equal(errors.length, 1);
  assert.match(errors[0], /not in the layering table/);
});
