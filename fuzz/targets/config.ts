/**
 * config/loadConfig: YAML text to a validated configuration. Seeds are docs/examples/tether.yaml and the lab's
 * configuration as YAML; mutations work on lines (delete, duplicate, swap, splice from the other seed, indent
 * or dedent), on values (a scalar replaced by a boundary value, a wrong type, an alias, a long string) and on
 * bytes.
 *
 * Seven of eight inputs skip the YAML parser: the seeds' configuration trees, mutated as JSON (a value replaced,
 * removed, duplicated, an unknown key), go to validateConfig, the reader loadConfig hands its parse to.
 *
 * Checks: loadConfig (and validateConfig) returns or throws ConfigError (its contract: "never any other exception"); a configuration
 * it accepts compiles (assignIds, toPipelineConfig) and builds a Pipeline without throwing, since the validator
 * is what stands between a file and the data plane.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, assignIds, loadConfig, stringifyConfig, toPipelineConfig, validateConfig, type TetherConfig } from '../../src/config/index.js';
import { Pipeline } from '../../src/dataplane/pipeline.js';
import { defaultConfig } from '../../src/lab/config.js';
import type { FuzzTarget } from '../harness.js';
import { mutateBytes, mutateJson, type Json } from '../mutate.js';
import type { Rng } from '../rng.js';

const EXAMPLE = 'docs/examples/tether.yaml';
const MAX_TEXT = 64 * 1024;
/**
 * Inputs that start with this line are a configuration tree as JSON, for the schema reader and validator
 * (validateConfig) without the YAML parser; the rest are YAML text for loadConfig.
 */
const TREE_HEADER = '#tree\n';
/**
 * YAML text is this share of the inputs. Parsing a 150-line file is nine tenths of a text input's time (3 ms
 * here); the trees, mutated by the API target's structure-aware mutation, reach the same reader and validator
 * twenty times faster, so 10^6 inputs take minutes of a core rather than hours.
 */
const TEXT_SHARE = 0.125;
/** Flow tables of a configuration under test are built small: the point is the validation, not the memory. */
const SMALL_TABLE = 64;
/** Compiled configurations remembered as built (then forgotten all at once: a bound, not a cache policy). */
const BUILT_MAX = 10_000;
const VALUES = [
  '', '~', 'null', '0', '-1', '1', '65535', '65536', '4294967295', '4294967296', '1e309', '-0', '0x10', '.inf', 'NaN', 'true', 'no',
  '[]', '{}', '[1, 2]', '{a: 1}', '"x"', "''", '*anchor', '&anchor 5', '!!binary aGk=', '10.0.0.0/33', '10.0.0.256', '::', '::/0', '0.0.0.0/0',
  'fd00::/129', '1.2.3.4:70000', 'internet', 'drop', 'wireguard', 'gre', 'ipsec', 'interconnect', 'a'.repeat(300), '"\\u0000"', '|\n  block',
];

function lines(text: string): string[] {
  return text.split('\n');
}

function mutateText(rng: Rng, seed: string[], other: string[]): string {
  const out = seed.slice();
  const steps = 1 + rng.int(4);
  for (let s = 0; s < steps && out.length > 0; s++) {
    const i = rng.int(out.length);
    switch (rng.int(7)) {
      case 0:
        out.splice(i, 1);
        break;
      case 1:
        out.splice(i, 0, out[i]);
        break;
      case 2: {
        const j = rng.int(out.length);
        [out[i], out[j]] = [out[j], out[i]];
        break;
      }
      case 3:
        out.splice(i, 0, ...other.slice(rng.int(other.length), rng.int(other.length) + 1 + rng.int(6)));
        break;
      case 4:
        out[i] = rng.chance(0.5) ? `  ${out[i]}` : out[i].replace(/^ {1,2}/, '');
        break;
      default: {
        // Replace the value after "key:" or "- " with a boundary value.
        const m = /^(\s*(?:- )?[\w.-]+:\s*|\s*- )(.*)$/.exec(out[i]);
        if (m !== null) out[i] = `${m[1]}${rng.pick(VALUES)}`;
        break;
      }
    }
  }
  return out.join('\n');
}

export function configTarget(): FuzzTarget {
  const texts = [readFileSync(EXAMPLE, 'utf8'), stringifyConfig(defaultConfig())];
  const split = texts.map(lines);
  const bytes = texts.map((t) => new TextEncoder().encode(t));
  const trees = texts.map((t, i) => JSON.parse(JSON.stringify(loadConfig(t, `seed ${i}`))) as Json);
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const built = new Set<string>();
  return {
    name: 'config/yaml',
    generate(rng: Rng): Uint8Array {
      const k = rng.int(texts.length);
      if (!rng.chance(TEXT_SHARE)) return encoder.encode(TREE_HEADER + JSON.stringify(mutateJson(rng, trees[k])));
      if (rng.chance(0.75)) return encoder.encode(mutateText(rng, split[k], split[1 - k]));
      return mutateBytes(rng, bytes[k], bytes[1 - k], MAX_TEXT);
    },
    run(input: Uint8Array): string {
      const text = decoder.decode(input);
      const tree = text.startsWith(TREE_HEADER);
      const kind = tree ? 'tree' : 'yaml';
      let cfg: TetherConfig;
      try {
        cfg = tree ? validateConfig(JSON.parse(text.slice(TREE_HEADER.length)) as unknown, 'fuzz.json') : loadConfig(text, 'fuzz.yaml');
      } catch (e) {
        if (e instanceof ConfigError) return `${kind} refused`;
        throw e;
      }
      const compiled = toPipelineConfig(cfg, assignIds(cfg));
      // Most accepted mutants compile to a configuration seen before (a comment moved, a key reordered): a
      // Pipeline is built once per distinct compiled configuration, which takes a tenth of the run off.
      const key = JSON.stringify(compiled);
      if (built.has(key)) return `${kind} accepted`;
      if (built.size >= BUILT_MAX) built.clear();
      built.add(key);
      new Pipeline({ ...compiled, flows: { ...compiled.flows, capacity4: SMALL_TABLE, capacity6: SMALL_TABLE } });
      return `${kind} accepted`;
    },
  };
}
