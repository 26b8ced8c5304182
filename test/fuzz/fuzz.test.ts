/**
 * The fuzzer's short pass (docs/FUZZING.md): every target of fuzz/ for a few hundred to a few thousand inputs
 * from a fixed seed. Zero failures: no throw, no write outside an input, no unknown drop reason, no 5xx.
 * The long pass (`npm run fuzz -- --count 1000000`) is run by hand; its figures are in docs/FUZZING.md.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runTarget } from '../../fuzz/harness.js';
import { TARGETS } from '../../fuzz/targets/index.js';

const SHORT: Readonly<Record<string, number>> = {
  'wire/inspect': 3000,
  'dataplane/pipeline': 1500,
  'onramp/gre': 1500,
  'onramp/wireguard': 1000,
  'onramp/ike': 2000,
  'onramp/ike-engine': 1000,
  'onramp/esp': 2000,
  'gateway/tls-sni': 2000,
  'gateway/http-host': 2000,
  'gateway/dns': 3000,
  'wire/capture-filter': 3000,
  'config/yaml': 150,
  'control/api': 150,
};
const SEED = 20240611;

test('every fuzz target has a short-pass count', () => {
  assert.deepEqual([...TARGETS.keys()].sort(), Object.keys(SHORT).sort());
});

for (const [name, make] of TARGETS) {
  test(`fuzz ${name}: ${SHORT[name]} inputs, no failures`, async () => {
    const report = await runTarget(make, { count: SHORT[name], seed: SEED, saveDir: null });
    assert.equal(report.failures, 0, formatReport(report));
    assert.equal(report.inputs, SHORT[name]);
  });
}
