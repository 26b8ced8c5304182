// Until the IPsec transport is wired in (issue 9), the edge accepts ipsec onramps in its configuration but refuses
// to run one, on every path, with one message that says so, and changes nothing. No kernel objects: the Edge is
// built and handed onramps without start().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig, type OnrampConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { buildApi } from '../control/api.js';
import { ApplyError } from '../control/apply.js';
import { ConfigStore } from '../control/store.js';
import { Edge, IPSEC_NOT_WIRED, type EdgeLogger } from './edge.js';
import { LiveEdge } from './live.js';

const log: EdgeLogger = { info() {}, warn() {}, error() {}, debug() {} };
const IPSEC = {
  name: 'branch-ipsec', type: 'ipsec', automatic_return_routing: true,
  ipsec: { local_address: '192.168.106.1', remote_address: '192.168.106.2', psk: 'correct horse battery staple' },
};

test('an ipsec onramp is refused by the edge with a message that names it, at start and live', () => {
  const base = defaultConfig();
  const withIpsec = validateConfig({ ...base, onramps: [...base.onramps, IPSEC] });
  assert.throws(() => new Edge({ config: withIpsec, log, hugePages: false, countersIntervalMs: 0 }), { message: IPSEC_NOT_WIRED('branch-ipsec') });
  assert.match(IPSEC_NOT_WIRED('x'), /^onramp x: type ipsec is valid configuration, but this edge has no IPsec transport yet/);

  const edge = new Edge({ config: base, log, hugePages: false, countersIntervalMs: 0 });
  const onramp = withIpsec.onramps.at(-1) as OnrampConfig;
  assert.throws(() => edge.addOnramp(onramp), { message: IPSEC_NOT_WIRED('branch-ipsec') });
  assert.equal(edge.ids.onramps.has('branch-ipsec'), false, 'nothing changed');
  assert.throws(() => edge.applyTransports(withIpsec, { ...edge.ids, onramps: new Map([...edge.ids.onramps, ['branch-ipsec', 99]]) }), (e: Error) => {
    assert.ok(e instanceof ApplyError, 'an ApplyError: the API answers 409, the store rolls back');
    assert.equal(e.path, `onramps[${withIpsec.onramps.length - 1}]`);
    assert.equal(e.message, IPSEC_NOT_WIRED('branch-ipsec'));
    return true;
  });
  assert.equal(edge.ids.onramps.has('branch-ipsec'), false, 'nothing changed');
  assert.deepEqual(edge.status().ipsec, [], 'no IKE SAs until the glue lands');
});

test('the API answers 409 with that message, and the store and the edge keep what they had', async () => {
  const cfg = defaultConfig();
  const edge = new Edge({ config: cfg, log, hugePages: false, countersIntervalMs: 0 });
  const store = ConfigStore.open(':memory:');
  store.seedFrom(cfg);
  const token = 'refusal-token-0123456789';
  const app = buildApi({ store, edge: new LiveEdge(edge, cfg), token });
  try {
    const r = await app.inject({ method: 'POST', url: '/v1/onramps', headers: { authorization: `Bearer ${token}` }, payload: IPSEC });
    assert.equal(r.statusCode, 409, r.body);
    const body = r.json() as { error: string; problems: Array<{ message: string }> };
    assert.equal(body.error, 'the change cannot be applied to the running edge');
    assert.equal(body.problems[0].message, IPSEC_NOT_WIRED('branch-ipsec'));
    assert.equal(store.load().onramps.some((o) => o.name === 'branch-ipsec'), false, 'the store rolled back');
    assert.equal(edge.pipeline.ports.list().some((p) => p.name === 'branch-ipsec'), false, 'the pipeline went back');
  } finally {
    await app.close();
    store.close();
  }
});
