/**
 * TUN offloads end to end (issue 10, item 1): with the daemon's defaults the egress and interconnect TUNs take GSO
 * super-packets. Large TCP transfers, each checked by SHA-256 at both ends, cross the edge
 *   - between the data center (an interconnect onramp) and the Internet server, through source NAT, both ways:
 *     super-packets go TUN to TUN whole and the kernel segments them;
 *   - from the Internet server to a WireGuard site: the edge segments them in software before encrypting;
 * and the daemon's own counters show super-packets were read and written, and segmented for WireGuard.
 * Root only: it fails loudly, never skips. Its own lab prefix, so leftovers of an earlier run are removed first.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { inNamespaceOk, labStatus, LAB, startDownload } from '../../src/lab/index.js';
import type { LabInfo } from '../../src/lab/index.js';
import { defaultConfig } from '../../src/lab/config.js';
import { edgeStatus } from '../support/edge-status.js';
import { tcpUpload } from '../support/tcp-upload.js';
import { assertDownloadIntact, labUpForTest } from '../support/lab-test.js';

const PREFIX = `g${(process.pid % 46656).toString(36)}`;
const DOWNLOAD_BYTES = 32 * 1024 * 1024;
const UPLOAD_BYTES = 32 * 1024 * 1024;
const UPLOAD_PORT = 5999;
const TRANSFER_TIMEOUT_MS = 120_000;

interface TunStatus {
  name: string;
  packetsIn: number;
  packetsOut: number;
  gsoIn?: number;
  gsoOut?: number;
}
interface Status {
  tuns: TunStatus[];
  edge: Record<string, number>;
  pipelineDrops: Record<string, number>;
}

let lab: LabInfo;

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX, config: defaultConfig() });
  // The data center reaches the Internet server through the edge (the lab routes it only toward the sites and the pool).
  await inNamespaceOk(lab.names.dc, 'ip', ['route', 'add', `${LAB.internet.server}/32`, 'via', LAB.dc.edge, 'src', LAB.dc.server]);
});

async function status(): Promise<Status> {
  const s = await labStatus({ prefix: PREFIX });
  return edgeStatus<Status>(s.edge!.pid!, lab.edgeLog!);
}

test('interconnect ↔ Internet through SNAT with offloads: 32 MiB each way arrive intact, and super-packets crossed the edge whole', async () => {
  const before = await status();
  const down = await startDownload(lab.names.dc, `http://${LAB.internet.server}/download?bytes=${DOWNLOAD_BYTES}`, { idleTimeoutMs: 20_000 }).result;
  assertDownloadIntact(down, DOWNLOAD_BYTES);

  const up = await tcpUpload(lab.names.internet, LAB.internet.server, UPLOAD_PORT, lab.names.dc, UPLOAD_BYTES, TRANSFER_TIMEOUT_MS);
  assert.equal(up.reply.bytes, UPLOAD_BYTES, `every byte arrived at the server: ${JSON.stringify(up)}`);
  assert.equal(up.reply.sha256, up.sent, 'what the server received is what the data center sent');

  const after = await status();
  const gso = (s: Status, dir: 'gsoIn' | 'gsoOut') => s.tuns.reduce((n, t) => n + (t[dir] ?? 0), 0);
  assert.ok(gso(after, 'gsoIn') > gso(before, 'gsoIn'), `super-packets were read: ${JSON.stringify(after.tuns)}`);
  assert.ok(gso(after, 'gsoOut') > gso(before, 'gsoOut'), `super-packets were written for the kernel to segment: ${JSON.stringify(after.tuns)}`);
  assert.equal(after.edge.gso_bad ?? 0, 0, `no super-packet refused: ${JSON.stringify(after.edge)}`);
});

test('Internet → WireGuard site with offloads: a 32 MiB download arrives intact, the edge segments the server\'s super-packets before encrypting', async () => {
  const before = await status();
  const r = await startDownload(lab.names.siteA, `http://${LAB.internet.server}/download?bytes=${DOWNLOAD_BYTES}`, { idleTimeoutMs: 20_000 }).result;
  assertDownloadIntact(r, DOWNLOAD_BYTES);
  const after = await status();
  assert.ok((after.edge.gso_segmented ?? 0) > (before.edge.gso_segmented ?? 0), `super-packets were segmented in software: ${JSON.stringify(after.edge)}`);
  assert.ok((after.edge.gso_segments ?? 0) > (after.edge.gso_segmented ?? 0), `into several segments each: ${JSON.stringify(after.edge)}`);
  assert.equal(after.edge.gso_bad ?? 0, 0);
});
