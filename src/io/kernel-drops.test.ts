import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { KERNEL_DROP_KINDS, KeptDeviceDrops, parseCounter, readDeviceDrops } from './kernel-drops.js';

test('parseCounter: sysfs fixtures (one decimal and a newline)', () => {
  assert.equal(parseCounter('0\n'), 0);
  assert.equal(parseCounter('1234\n'), 1234);
  assert.equal(parseCounter('18446744073709551615\n'), Number.MAX_SAFE_INTEGER, 'u64 max: clamped to what a double holds exactly');
  assert.equal(parseCounter('42'), 42, 'no newline');
  for (const bad of ['', '\n', '-1\n', '1 2\n', 'x\n', '0x10\n', '1e3\n', '123456789012345678901\n', ' 5\n']) assert.equal(parseCounter(bad), null, JSON.stringify(bad));
});

test('parseCounter: every safe integer round-trips; any other text is a number or null, never a throw', () => {
  fc.assert(fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), (n) => parseCounter(`${n}\n`) === n));
  fc.assert(fc.property(fc.string(), (t) => {
    const v = parseCounter(t);
    return v === null || (Number.isSafeInteger(v) && v >= 0);
  }));
});

test('readDeviceDrops: a device directory as sysfs lays it out; a missing device is null; a bad file reads 0', () => {
  const root = mkdtempSync(join(tmpdir(), 'tether-kdrops-'));
  try {
    const dir = join(root, 'tt-underlay', 'statistics');
    mkdirSync(dir, { recursive: true });
    KERNEL_DROP_KINDS.forEach((k, i) => writeFileSync(join(dir, k), `${i * 10}\n`));
    writeFileSync(join(dir, 'rx_errors'), 'garbage\n');
    const got = readDeviceDrops('tt-underlay', root);
    assert.ok(got !== null);
    assert.equal(got.tx_dropped, 0);
    assert.equal(got.rx_dropped, 10);
    assert.equal(got.rx_errors, 0, 'not a number: 0');
    assert.equal(got.rx_over_errors, (KERNEL_DROP_KINDS.length - 1) * 10);
    assert.equal(readDeviceDrops('tt-gone', root), null);
    assert.equal(readDeviceDrops('../tt-underlay', root), null, 'a name that leaves the directory');
    assert.equal(readDeviceDrops('', root), null);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('readDeviceDrops: the real /sys/class/net/lo has every kind', () => {
  const lo = readDeviceDrops('lo');
  assert.ok(lo !== null, '/sys/class/net/lo/statistics is readable');
  for (const k of KERNEL_DROP_KINDS) assert.ok(Number.isSafeInteger(lo[k]) && lo[k] >= 0, k);
});

test('KeptDeviceDrops: reads what readDeviceDrops reads, through files kept open (a rewritten value is seen), and closes them', () => {
  const root = mkdtempSync(join(tmpdir(), 'tether-kdrops-'));
  const kept = new KeptDeviceDrops(root);
  try {
    const dir = join(root, 'tt-underlay', 'statistics');
    mkdirSync(dir, { recursive: true });
    KERNEL_DROP_KINDS.forEach((k, i) => writeFileSync(join(dir, k), `${i * 10}\n`));
    writeFileSync(join(dir, 'rx_errors'), 'garbage\n');
    assert.deepEqual(kept.read('tt-underlay'), readDeviceDrops('tt-underlay', root));
    writeFileSync(join(dir, 'tx_dropped'), '12345\n'); // the same file, new text: the kept fd reads it from offset 0
    assert.equal(kept.read('tt-underlay')?.tx_dropped, 12345);
    assert.deepEqual(kept.read('tt-underlay'), readDeviceDrops('tt-underlay', root));
    assert.equal(kept.read('tt-gone'), null);
    assert.equal(kept.read('../tt-underlay'), null, 'a name that leaves the directory');
    assert.equal(kept.devices, 1, 'a missing device keeps nothing open');
    kept.retain(new Set(['tt-other']));
    assert.equal(kept.devices, 0);
    assert.equal(kept.read('tt-underlay')?.tx_dropped, 12345, 'opened again after retain dropped it');
  } finally {
    kept.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('KeptDeviceDrops on the real sysfs: a device removed reads null, one made again under its name is read afresh', () => {
  assert.equal(process.getuid?.(), 0, 'this test makes a veth pair: it needs root (it fails rather than skips)');
  const name = `tkd${process.pid}`.slice(0, 14);
  // This kernel has no dummy devices (MACHINE-NOTES): a veth pair, deleted with either end.
  const add = ['link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`];
  const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'ignore' });
  try { ip('link', 'del', name); } catch { /* not left over */ }
  const kept = new KeptDeviceDrops();
  try {
    ip(...add);
    assert.deepEqual(kept.read(name), readDeviceDrops(name));
    assert.equal(kept.devices, 1);
    ip('link', 'del', name);
    assert.equal(kept.read(name), null, 'the kept files fail (ENODEV), the device is gone');
    assert.equal(kept.devices, 0);
    ip(...add);
    assert.ok(kept.read(name) !== null);
    ip('link', 'del', name);
    ip(...add);
    assert.deepEqual(kept.read(name), readDeviceDrops(name), 'the old files fail, the new device is opened');
  } finally {
    kept.close();
    try { ip('link', 'del', name); } catch { /* gone */ }
  }
});
