// The edge takes ipsec onramps on every path (start configuration, live add, live change, removal) through its
// IPsec transport (transports/ipsec-onramps.ts), and refuses a broken one with a message that names it, changing
// nothing. No kernel objects: the Edge is built and handed onramps without start().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig, type OnrampConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { Edge, type EdgeLogger } from './edge.js';

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
