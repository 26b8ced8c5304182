// The addon loader: it finds the built addon, and its missing-addon error tells how to build it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadNative, NativeAddonMissingError, TUN_FLAG_MULTI_QUEUE, TUN_FLAG_OFFLOAD, TUN_FLAG_VNET_HDR } from './native.js';

describe('native addon loader', () => {
  it('loads the addon built by npm ci (fails, not skips, when it is missing)', () => {
    const addon = loadNative();
    assert.equal(typeof addon.openTun, 'function');
    assert.equal(typeof addon.allocHugePages, 'function');
    assert.equal(loadNative(), addon, 'loaded once');
  });

  it('exports exactly the TUN, memory, flow cache, ESP and WireGuard crypto entry points, with the flag bits native.ts mirrors', () => {
    const addon = loadNative();
    assert.deepEqual(Object.keys(addon).sort(), [
      'EspCrypto', 'TUN_FLAG_MULTI_QUEUE', 'TUN_FLAG_OFFLOAD', 'TUN_FLAG_VNET_HDR', 'WgCrypto', 'allocHugePages', 'busyPollCounters',
      'flowCacheEnable', 'flowCacheFlush', 'flowCacheFold', 'flowCacheInstall', 'flowCacheLookup', 'flowCacheRemove', 'flowCacheStats', 'flowCacheTake',
      'openTun', 'setBusyPoll',
    ]);
    assert.equal(addon.TUN_FLAG_MULTI_QUEUE, TUN_FLAG_MULTI_QUEUE);
    assert.equal(addon.TUN_FLAG_VNET_HDR, TUN_FLAG_VNET_HDR);
    assert.equal(addon.TUN_FLAG_OFFLOAD, TUN_FLAG_OFFLOAD);
  });

  it('names the fix in the missing-addon error', () => {
    const e = new NativeAddonMissingError('native/build/Release/tether_io.node not found');
    assert.equal(e.name, 'NativeAddonMissingError');
    assert.match(e.message, /not built .*tether_io\.node not found.*run npm ci \/ npm run build:native/);
  });
});
