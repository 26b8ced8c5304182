import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyFromBase64, keyToBase64, publicKeyFromPrivate } from '../onramp/wireguard/index.js';
import { LAB_WIREGUARD_KEYS } from './config.js';

test('the lab keys are consistent key pairs', () => {
  const k = LAB_WIREGUARD_KEYS;
  for (const [priv, pub] of [[k.edgeAPrivate, k.edgeAPublic], [k.edgeBPrivate, k.edgeBPublic], [k.siteAPrivate, k.siteAPublic], [k.siteBPrivate, k.siteBPublic],
    [k.edgeC1Private, k.edgeC1Public], [k.edgeC2Private, k.edgeC2Public], [k.siteC1Private, k.siteC1Public], [k.siteC2Private, k.siteC2Public]]) {
    const raw = keyFromBase64(priv);
    assert.ok(raw);
    assert.equal(keyToBase64(publicKeyFromPrivate(raw)), pub);
  }
});
