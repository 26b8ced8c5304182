import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, toHealthSpec, toOnrampSpec, validateConfig, type TetherConfig } from './index.js';

/** A one-onramp configuration with this health_check. */
function withCheck(check: unknown): unknown {
  return {
    onramps: [{ name: 'b', type: 'gre', automatic_return_routing: true, gre: { local: '192.0.2.1', remote: '192.0.2.2' }, health_check: check }],
  };
}

function problems(value: unknown): string[] {
  try {
    validateConfig(value);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems.map((p) => `${p.path}: ${p.message}`);
  }
  return [];
}

test('health_check: defaults (mid, request), the engine spec, and the local address on the port', () => {
  const cfg = validateConfig(withCheck({ target: '10.0.1.1', source: '100.64.0.1' })) as TetherConfig;
  const o = cfg.onramps[0];
  assert.deepEqual(o.health_check, { target: '10.0.1.1', source: '100.64.0.1', rate: 'mid', type: 'request' });
  assert.deepEqual(toHealthSpec(o), { mode: 'probe', rate: 'mid', source: '100.64.0.1', target: '10.0.1.1' });
  assert.equal(toOnrampSpec(o, 1, 1).localAddress, '100.64.0.1');
  const reply = validateConfig(withCheck({ source: 'fd00::1', type: 'reply', rate: 'high' })).onramps[0];
  assert.deepEqual(toHealthSpec(reply), { mode: 'reverse', rate: 'high' });
  const passive = validateConfig(withCheck(undefined)).onramps[0];
  assert.deepEqual(toHealthSpec(passive), { mode: 'passive' });
  assert.equal(toOnrampSpec(passive, 1, 1).localAddress, undefined);
});

test('health_check: both addresses for request, one family, source for reply, no target with reply, known rates', () => {
  assert.match(problems(withCheck({ target: '10.0.1.1' })).join('\n'), /health_check\.source: is required/);
  assert.match(problems(withCheck({ source: '100.64.0.1' })).join('\n'), /health_check\.target: is required with type request/);
  assert.match(problems(withCheck({ source: '100.64.0.1', target: 'fd00::1' })).join('\n'), /health_check\.target: must be of the same address family as source/);
  assert.match(problems(withCheck({ source: '100.64.0.1', target: '100.64.0.1' })).join('\n'), /must differ from source/);
  assert.match(problems(withCheck({ type: 'reply' })).join('\n'), /health_check\.source: is required: the edge's address/);
  assert.match(problems(withCheck({ type: 'reply', source: '100.64.0.1', target: '10.0.1.1' })).join('\n'), /target: is only for type request/);
  assert.notEqual(problems(withCheck({ source: '100.64.0.1', target: '10.0.1.1', rate: 'turbo' })).length, 0);
  assert.notEqual(problems(withCheck({ source: 'not-an-address', target: '10.0.1.1' })).length, 0);
  assert.notEqual(problems(withCheck({ source: '100.64.0.1', target: '10.0.1.1', interval: 5 })).length, 0, 'unknown keys are errors');
});
