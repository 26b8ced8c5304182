/**
 * The lab's IPsec site (site-d, issue 9) with a strongSwan stand-in where tether's IPsec onramp will be: the lab
 * is built without the daemon (labUp({ startEdge: false, ipsecSite: true })), the edge namespace owns the
 * endpoint 192.168.106.1 itself and runs a strongSwan responder there, and the kernel forwards what comes out of
 * its tunnel (SNAT toward the Internet, as the lab's edge would). What it proves is the site's half: the host
 * 10.0.1.10 behind the router, the router's LAN route into ipsec0, the charon configuration (LAB.siteD's terms)
 * — so that once tether answers IKE on 192.168.106.1, `siteDStrongSwan(names).initiate()` brings the site up.
 * The same checks (test/support/strongswan.ts) run against tether by replacing the stand-in.
 *
 * Root only; fails loudly when a tool is missing, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { inNamespaceOk, ip } from '../../src/lab/exec.js';
import { httpGet, LAB, LINKS, startDownload, udpExchange, type LabInfo, type ServerReply } from '../../src/lab/index.js';
import { siteDStrongSwan, siteDStrongSwanOptions } from '../../src/lab/site-d.js';
import {
  checkProposal, missingStrongSwan, proposalMatrix, removeStaleStrongSwanRuns, removeStrongSwanRun, StrongSwan, strongSwanPeerSide,
  strongSwanRunDir, waitForEcho, type IpsecSite, type IpsecTarget,
} from '../support/strongswan.js';
import { labUpForTest, requireRoot } from '../support/lab-test.js';

const PREFIX = `i${randomBytes(3).readUIntBE(0, 3).toString(36).slice(0, 4)}`;
const TARGET: IpsecTarget = { address: LAB.internet.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort };
/** A few MB through the site's 1,400-byte LAN and the tunnel, checksummed end to end. */
const DOWNLOAD_BYTES = 8 * 1024 * 1024;

let lab: LabInfo;
let runDir = '';
let standIn: StrongSwan;
let site: IpsecSite;

before(async (t) => {
  requireRoot('the IPsec site test needs root (network namespaces, TUN devices); CI runs it as root');
  const missing = missingStrongSwan();
  if (missing !== null) throw new Error(missing);
  await removeStaleStrongSwanRuns();
  lab = await labUpForTest(t, { prefix: PREFIX, startEdge: false, ipsecSite: true });
  const edge = lab.names.edge;
  const d = LAB.siteD;
  // Where the daemon would route the endpoint into its underlay TUN, the stand-in owns it.
  await ip(edge, ['addr', 'add', `${d.edgeEndpoint}/32`, 'dev', LINKS.edgeToSiteD]);
  await inNamespaceOk(edge, 'nft', ['-f', '-'], {
    input: `table ip ${PREFIX}ipsec {\n  chain egress {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname "${LINKS.edgeToInternet}" masquerade\n  }\n}\n`,
  });
  runDir = await strongSwanRunDir(`t${process.pid}`);
  const siteOpts = siteDStrongSwanOptions(lab.names);
  standIn = await StrongSwan.start({
    name: 'edge', namespace: edge, runDir, role: 'responder',
    localAddress: d.edgeEndpoint, remoteAddress: d.router,
    localId: siteOpts.remoteId, remoteId: siteOpts.localId, psk: d.psk,
    ikeProposals: siteOpts.ikeProposals, espProposals: siteOpts.espProposals,
    localTs: ['0.0.0.0/0'], remoteTs: [LAB.siteLan],
  });
  site = { swan: siteDStrongSwan(lab.names), hostNs: lab.names.siteD };
});

after(async () => {
  if (runDir !== '') await removeStrongSwanRun(runDir);
});

test('site-d initiates with the lab\'s terms; its host 10.0.1.10 reaches the Internet and the data center through the tunnel', async () => {
  assert.ok(site.swan.processId !== null, 'labUp started site-d\'s charon');
  await site.swan.initiate();
  const { ike, child } = await site.swan.waitEstablished('site-d\'s SA');
  assert.equal(ike.remoteHost, LAB.siteD.edgeEndpoint);
  assert.equal(ike.algorithms, 'AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256');
  assert.deepEqual(child.localTs, [LAB.siteLan]);
  assert.deepEqual(child.remoteTs, ['0.0.0.0/0']);
  const routes = await inNamespaceOk(lab.names.siteDRouter, 'ip', ['route', 'show', 'table', '220']);
  assert.match(routes, /^default dev ipsec0 .*src 10\.0\.1\.1/m, 'the router\'s LAN route into the tunnel');
  await waitForEcho(site, TARGET, 'site-d UDP echo');
  const inet = JSON.parse(await httpGet(lab.names.siteD, `http://${LAB.internet.server}/`)) as ServerReply;
  assert.deepEqual([inet.server, inet.client.address], ['inet', LAB.internet.edge], 'SNAT by the stand-in edge');
  const dc = await udpExchange(lab.names.siteD, LAB.dc.server, LAB.echoPort, 'site-d to the dc');
  assert.equal(dc.kind, 'reply');
  assert.equal(dc.kind === 'reply' && (JSON.parse(dc.payload) as ServerReply).client.address, LAB.siteHost, 'the data center sees the site\'s own address');
});

test('a checksummed download through the 1,400-byte LAN and the tunnel arrives complete', async () => {
  const r = await startDownload(lab.names.siteD, `http://${LAB.internet.server}/download?bytes=${DOWNLOAD_BYTES}`).result;
  assert.equal(r.error, undefined, JSON.stringify(r));
  assert.equal(r.bytes, DOWNLOAD_BYTES);
  assert.equal(r.sha256, r.serverSha256);
});

test('the rig\'s checks run on the lab\'s site: one IKE and one ESP row of the matrix, against the stand-in', async () => {
  const cases = proposalMatrix();
  const picked = [cases.find((c) => c.ike.startsWith('aes256-sha384'))!, cases.find((c) => c.esp.startsWith('aes256-sha256'))!];
  for (const c of picked) {
    const row = await checkProposal(site, strongSwanPeerSide(standIn), TARGET, c);
    assert.ok(row.ok, JSON.stringify(row));
  }
});
