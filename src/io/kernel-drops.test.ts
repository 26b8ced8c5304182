import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { KERNEL_DROP_KINDS, parseCounter, readDeviceDrops } from './kernel-drops.js';

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
