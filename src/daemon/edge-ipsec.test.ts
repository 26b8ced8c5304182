// The edge takes ipsec onramps on every path (start configuration, live add, live change, removal) through its
// IPsec transport (transports/ipsec-onramps.ts), and refuses a broken one with a message that names it, changing
// nothing. No kernel objects: the Edge is built and handed onramps without start().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig, type OnrampConfig } from '../config/index.js';
import { buildApi } from '../control/api.js';
import { ConfigStore } from '../control/store.js';
import { defaultConfig } from '../lab/config.js';
import { Edge, type EdgeLogger } from './edge.js';
import { LiveEdge } from './live.js';

const log: EdgeLogger = { info() {}, warn() {}, error() {}, debug() {} };
const IPSEC = {
  name: 'branch-ipsec', type: 'ipsec', automatic_return_routing: true,
  ipsec: { local_address: '192.168.106.1', remote_address: '192.168.106.2', psk: 'correct horse battery staple' },
};

test('an ipsec onramp runs from the start configuration and live: added, changed, removed', () => {
  const base = defaultConfig();
  const withIpsec = validateConfig({ ...base, onramps: [...base.onramps, IPSEC] });
  const started = new Edge({ config: withIpsec, log, hugePages: false, countersIntervalMs: 0 });
  assert.ok(started.ids.onramps.has('branch-ipsec'));
  const [idle] = started.status().ipsec;
  assert.equal(idle.state, 'idle', 'a responder has no IKE SA until its peer dials in');
  assert.equal(idle.role, 'responder');

  const edge = new Edge({ config: base, log, hugePages: false, countersIntervalMs: 0 });
  const onramp = withIpsec.onramps.at(-1) as OnrampConfig;
  const id = edge.addOnramp(onramp);
  assert.equal(edge.ids.onramps.get('branch-ipsec'), id);
  const changed = validateConfig({ ...base, onramps: [...base.onramps, { ...IPSEC, ipsec: { ...IPSEC.ipsec, dpd_seconds: 5 } }] });
  edge.updateOnramp(changed.onramps.at(-1) as OnrampConfig);
  edge.removeOnramp('branch-ipsec');
  assert.equal(edge.ids.onramps.has('branch-ipsec'), false);
  assert.deepEqual(edge.status().esp, []);
});

test('an ipsec onramp whose pre-shared key file cannot be read is refused with its name, and nothing changes', () => {
  const base = defaultConfig();
  const edge = new Edge({ config: base, log, hugePages: false, countersIntervalMs: 0 });
  const broken = validateConfig({
    ...base,
    onramps: [...base.onramps, { ...IPSEC, ipsec: { local_address: '192.168.106.1', remote_address: '192.168.106.2', psk_file: '/nonexistent/tether-psk' } }],
  }).onramps.at(-1) as OnrampConfig;
  assert.throws(() => edge.addOnramp(broken), /onramp branch-ipsec: cannot read ipsec.psk_file \/nonexistent\/tether-psk: ENOENT/);
  assert.equal(edge.ids.onramps.has('branch-ipsec'), false, 'nothing changed');
  const id = edge.addOnramp(validateConfig({ ...base, onramps: [...base.onramps, IPSEC] }).onramps.at(-1) as OnrampConfig);
  assert.ok(id > 0, 'the same address is free again: the refused onramp claimed nothing');
});

test('through the API: an ipsec onramp is created live (the pipeline gets its port, status its idle IKE peer), the psk never returned', async () => {
  const cfg = defaultConfig();
  const edge = new Edge({ config: cfg, log, hugePages: false, countersIntervalMs: 0 });
  const store = ConfigStore.open(':memory:');
  store.seedFrom(cfg);
  const token = 'ipsec-live-token-0123456789';
  const app = buildApi({ store, edge: new LiveEdge(edge, cfg), token });
  const headers = { authorization: `Bearer ${token}` };
  try {
    const r = await app.inject({ method: 'POST', url: '/v1/onramps', headers, payload: IPSEC });
    assert.equal(r.statusCode, 201, r.body);
    assert.ok(edge.pipeline.ports.list().some((p) => p.name === 'branch-ipsec'), 'the pipeline has its port');
    assert.equal(edge.status().ipsec.find((s) => s.onramp === edge.ids.onramps.get('branch-ipsec'))?.state, 'idle');
    const read = await app.inject({ method: 'GET', url: '/v1/onramps/branch-ipsec', headers });
    assert.doesNotMatch(read.body, /correct horse/, 'the pre-shared key is never returned');
    const gone = await app.inject({ method: 'DELETE', url: '/v1/onramps/branch-ipsec', headers });
    assert.equal(gone.statusCode, 204, gone.body);
    assert.equal(edge.status().ipsec.length, 0);
  } finally {
    await app.close();
    store.close();
  }
});
