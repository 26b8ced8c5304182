import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowKey, FlowTable } from '../flow/flow-table.js';
import { hugePageAllocator, hugePageBytes, transparentHugePageMode } from './memory.js';

test('huge-page memory: zero-filled, 2 MiB rounded, usable by the flow table, backed by huge pages where the kernel allows', () => {
  const allocate = hugePageAllocator();
  const buffer = allocate(3 * 1024 * 1024 + 5);
  assert.equal(buffer.byteLength, 4 * 1024 * 1024, 'rounded up to whole 2 MiB pages');
  const bytes = new Uint8Array(buffer);
  assert.equal(bytes.every((b) => b === 0), true, 'zero-filled');
  bytes.fill(7);
  assert.equal(bytes[bytes.length - 1], 7, 'writable to its last byte');

  const table = new FlowTable({ capacity: 1 << 16, addrWords: 1, hashSeed: 1, allocate });
  const orig = new FlowKey().set4(1, 17, 0x0a00010a, 0xcb00710a, 40000, 53);
  const reply = new FlowKey().reverseOf(orig);
  const flow = table.create(orig, reply, 1, 0);
  assert.equal(table.lookup(orig), flow * 2, 'the table works on that memory');
  assert.equal(table.lookup(reply), flow * 2 + 1, 'both directions');
  if (transparentHugePageMode() !== 'never') {
    assert.ok(hugePageBytes() > 0, `expected some AnonHugePages with THP "${transparentHugePageMode()}"`);
  }
});
