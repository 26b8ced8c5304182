// Until the IPsec transport is wired in (issue 9), the edge accepts ipsec onramps in its configuration but refuses
// to run one, on every path, with one message that says so, and changes nothing. No kernel objects: the Edge is
// built and handed onramps without start().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig, type OnrampConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { Edge, IPSEC_NOT_WIRED, type EdgeLogger } from './edge.js';

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
    assert.equal(e.message, IPSEC_NOT_WIRED('branch-ipsec'));
    return true;
  });
  assert.equal(edge.ids.onramps.has('branch-ipsec'), false, 'nothing changed');
  assert.deepEqual(edge.status().ipsec, [], 'no IKE SAs until the glue lands');
});
