import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KERNEL_DROP_KINDS, type DeviceDropCounts } from '../io/kernel-drops.js';
import { KERNEL_DROPS_LOG_INTERVAL_MS, KernelDropWatch, type OwnedDevice } from './kernel-drops.js';

function counts(partial: Partial<DeviceDropCounts>): DeviceDropCounts {
  const c = {} as DeviceDropCounts;
  for (const k of KERNEL_DROP_KINDS) c[k] = partial[k] ?? 0;
  return c;
}

function rig(): { watch: KernelDropWatch; sys: Map<string, DeviceDropCounts>; owned: OwnedDevice[]; warnings: Array<{ obj: Record<string, unknown>; msg: string }> } {
  const sys = new Map<string, DeviceDropCounts>();
  const owned: OwnedDevice[] = [];
  const warnings: Array<{ obj: Record<string, unknown>; msg: string }> = [];
  const log = { info() {}, error() {}, debug() {}, warn: (obj: object, msg?: string) => warnings.push({ obj: obj as Record<string, unknown>, msg: msg ?? '' }) };
  const watch = new KernelDropWatch(() => owned, log, (d) => sys.get(d) ?? null);
  return { watch, sys, owned, warnings };
}

test('KernelDropWatch: every owned device with every kind; nonZero keeps the devices and kinds that count', () => {
  const { watch, sys, owned } = rig();
  owned.push({ device: 'tt-underlay', role: 'underlay', onramps: [1, 2] }, { device: 'tt-ic-3', role: 'interconnect', onramps: [3] });
  sys.set('tt-underlay', counts({ tx_dropped: 7 }));
  sys.set('tt-ic-3', counts({}));
  watch.refresh(0);
  const snap = watch.snapshot();
  assert.deepEqual(snap.map((d) => d.device), ['tt-underlay', 'tt-ic-3']);
  assert.deepEqual(Object.keys(snap[0].drops), [...KERNEL_DROP_KINDS]);
  assert.deepEqual(watch.nonZero(), [{ device: 'tt-underlay', role: 'underlay', onramps: [1, 2], drops: { tx_dropped: 7 } }]);
});

test('KernelDropWatch: a device that vanished keeps its last counts while owned, and leaves with its owner', () => {
  const { watch, sys, owned } = rig();
  owned.push({ device: 'tt-ic-1', role: 'interconnect', onramps: [1] });
  sys.set('tt-ic-1', counts({ rx_dropped: 2 }));
  watch.refresh(0);
  sys.delete('tt-ic-1');
  watch.refresh(1000);
  assert.equal(watch.snapshot()[0].drops.rx_dropped, 2);
  owned.length = 0;
  watch.refresh(2000);
  assert.deepEqual(watch.snapshot(), []);
});

test('KernelDropWatch: growth is logged once per interval per device, with the growth since the last line', () => {
  const { watch, sys, owned, warnings } = rig();
  owned.push({ device: 'tt-underlay', role: 'underlay', onramps: [1] });
  sys.set('tt-underlay', counts({ tx_dropped: 5 }));
  watch.refresh(0);
  assert.equal(warnings.length, 0, 'the first read is the baseline');
  sys.set('tt-underlay', counts({ tx_dropped: 8 }));
  watch.refresh(1000);
  assert.equal(warnings.length, 0, 'not before the interval since the baseline');
  watch.refresh(KERNEL_DROPS_LOG_INTERVAL_MS);
  assert.equal(warnings.length, 1);
  assert.deepEqual(warnings[0].obj.grew, { tx_dropped: 3 });
  assert.match(warnings[0].msg, /tt-underlay \(tx_dropped \+3\)/);
  sys.set('tt-underlay', counts({ tx_dropped: 9, rx_dropped: 1 }));
  watch.refresh(KERNEL_DROPS_LOG_INTERVAL_MS + 1000);
  assert.equal(warnings.length, 1, 'paced');
  watch.refresh(2 * KERNEL_DROPS_LOG_INTERVAL_MS);
  assert.equal(warnings.length, 2);
  assert.deepEqual(warnings[1].obj.grew, { tx_dropped: 1, rx_dropped: 1 });
  watch.refresh(4 * KERNEL_DROPS_LOG_INTERVAL_MS);
  assert.equal(warnings.length, 2, 'no growth, no line');
});
