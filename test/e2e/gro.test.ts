/**
 * GRO on the way in, end to end (issue 10 item 1, issue 9's IPsec throughput): TCP uploads from the lab's IPsec
 * site (site-d: strongSwan, kernel-libipsec, ESP in UDP) and from a WireGuard site (site-a: wireguard-go) through
 * tether to a real TCP server on the Internet side (and from the IPsec site over IPv6). Their decrypted segments leave through the egress TUN with
 * offloads, coalesced into super-packets (dataplane/gro.ts) that the kernel segments again or hands whole to the
 * server. Each upload is checked by SHA-256 at both ends, and the edge's gro_segments / gro_super_packets
 * counters moved. Then the same with `tether run --no-offload`: intact, and nothing coalesced.
 * Root only: it fails loudly, never skips. Its own lab prefix, so leftovers of an earlier run are removed first.
 */
import { before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { labStatus, LAB, type LabInfo } from '../../src/lab/index.js';
import { siteDStrongSwan } from '../../src/lab/site-d.js';
import { edgeStatus } from '../support/edge-status.js';
import { missingStrongSwan, waitForEcho, type IpsecSite, type IpsecTarget } from '../support/strongswan.js';
import { tcpUpload } from '../support/tcp-upload.js';
import { labUpForTest, requireRoot } from '../support/lab-test.js';

const PREFIX = `r${(process.pid % 46656).toString(36)}`;
const UPLOAD_BYTES = 16 * 1024 * 1024;
const TRANSFER_TIMEOUT_MS = 120_000;
const INTERNET: IpsecTarget = { address: LAB.internet.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort };
/** A port of its own per upload: the sink serves one connection. */
let nextPort = 5980;

interface Status {
  tuns: Array<{ name: string; gsoOut?: number }>;
  edge: Record<string, number>;
}

/** The lab with these daemon arguments for one test `t` (labDown at its end; labUp removes what came before). */
async function up(t: TestContext, daemonArgs: string[]): Promise<LabInfo> {
  const lab = await labUpForTest(t, { prefix: PREFIX, ipsecSite: true, daemonArgs });
  const site: IpsecSite = { swan: siteDStrongSwan(lab.names), hostNs: lab.names.siteD };
  await site.swan.waitEstablished('site-d\'s SA');
  await waitForEcho(site, INTERNET, 'site-d UDP echo');
  return lab;
}

async function status(l: LabInfo): Promise<Status> {
  const s = await labStatus({ prefix: PREFIX });
  return edgeStatus<Status>(s.edge!.pid!, l.edgeLog!);
}

/** One upload from `fromNs` to the Internet server, checked; the edge's counters before and after. */
async function upload(l: LabInfo, fromNs: string, server: string = LAB.internet.server): Promise<{ before: Status; after: Status }> {
  const before = await status(l);
  const r = await tcpUpload(l.names.internet, server, nextPort++, fromNs, UPLOAD_BYTES, TRANSFER_TIMEOUT_MS);
  assert.equal(r.reply.bytes, UPLOAD_BYTES, `every byte arrived at the server: ${JSON.stringify(r)}`);
  assert.equal(r.reply.sha256, r.sent, 'what the server received is what the site sent');
  return { before, after: await status(l) };
}

const moved = (s: { before: Status; after: Status }, name: string): number => (s.after.edge[name] ?? 0) - (s.before.edge[name] ?? 0);

before(async () => {
  requireRoot();
  const missing = missingStrongSwan();
  if (missing !== null) throw new Error(missing);
});

test('with offloads (the default): uploads from the IPsec and the WireGuard site arrive intact, coalesced into super-packets', async (t) => {
  const l = await up(t, []);
  const uploads = [
    ['IPsec site-d', l.names.siteD, LAB.internet.server],
    ['IPsec site-d over IPv6', l.names.siteD, LAB.internet6.server],
    ['WireGuard site-a', l.names.siteA, LAB.internet.server],
  ] as const;
  for (const [what, ns, server] of uploads) {
    const s = await upload(l, ns, server);
    const segments = moved(s, 'gro_segments');
    const supers = moved(s, 'gro_super_packets');
    assert.ok(supers > 0, `${what}: super-packets were written: ${JSON.stringify(s.after.edge)}`);
    assert.ok(segments >= 2 * supers, `${what}: two segments or more in each (${segments} in ${supers})`);
    assert.equal(s.after.edge.gso_bad ?? 0, 0, `${what}: no super-packet refused`);
    t.diagnostic(`${what}: ${segments} segments in ${supers} super-packets`);
  }
});

test('with --no-offload: the same uploads arrive intact, nothing coalesced', async (t) => {
  const l = await up(t, ['--no-offload']);
  for (const ns of [l.names.siteD, l.names.siteA]) {
    const s = await upload(l, ns);
    assert.equal(s.after.edge.gro_segments ?? 0, 0, `no GRO without offloads: ${JSON.stringify(s.after.edge)}`);
    assert.equal(s.after.tuns.reduce((n, t) => n + (t.gsoOut ?? 0), 0), 0, 'no super-packet written');
  }
});
