/**
 * The strongSwan rig proven against itself (issue 9, "The peer"): two strongSwan 5.9.8 instances in two
 * namespaces, ESP in userspace (kernel-libipsec, ESP-in-UDP), no tether. The checks are
 * test/support/strongswan.ts's, written against an IpsecPeerSide: the same calls run against tether's IPsec
 * onramp once it exists, with the second strongSwan replaced.
 *
 *   ns tt-<pid>-ssw-site                                   ns tt-<pid>-ssw-peer
 *   host 10.0.1.10 (lo), charon "site"                     server 203.0.113.10 (lo): servers.ts, charon "peer"
 *   TS 10.0.1.0/24 ↔ 0.0.0.0/0, ipsec0                     TS 0.0.0.0/0 ↔ 10.0.1.0/24, ipsec0
 *   veth-ssw 192.168.250.1/24  ───────── veth ─────────    veth-ssw 192.168.250.2/24
 *
 * Root only; fails loudly (naming the Debian packages) when strongSwan is missing, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ip, sysctl } from '../../src/lab/exec.js';
import { LAB } from '../../src/lab/topology.js';
import { namespaceName, removeStaleNamespaces, sh } from '../support/netns.js';
import {
  echoesThrough, formatMatrix, startUdpEcho, udpEchoes, missingStrongSwan, proposalMatrix, removeStaleStrongSwanRuns, removeStrongSwanRun, restartUnderTransfer,
  rekeyUnderTransfer, runProposalMatrix, startLabServers, StrongSwan, strongSwanPeerSide, strongSwanRunDir, underlayVeth, waitForEcho,
  type IpsecSite, type IpsecTarget, type RunningServers,
} from '../support/strongswan.js';

const SITE_NS = namespaceName('ssw-site');
const PEER_NS = namespaceName('ssw-peer');
const LINK = 'veth-ssw';
const SITE_UNDERLAY = '192.168.250.1';
const PEER_UNDERLAY = '192.168.250.2';
const PSK = 'rig-test-psk-0123456789abcdef';
const TARGET: IpsecTarget = { address: LAB.internet.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort };
/** IPv6 inside (RFC 4193 addresses): the site's host and the server, over the same IPv4 underlay. */
const SITE_HOST6 = 'fd00:1::10';
const SITE_LAN6 = 'fd00:1::/64';
const SERVER6 = 'fd00:203::10';

let runDir = '';
let site: IpsecSite;
let peer: StrongSwan;
let servers: RunningServers | undefined;
let echo6: RunningServers | undefined;

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the strongSwan rig test needs root (network namespaces, TUN devices); CI runs it as root');
  const missing = missingStrongSwan();
  if (missing !== null) throw new Error(missing);
  removeStaleNamespaces();
  await removeStaleStrongSwanRuns();
  for (const ns of [SITE_NS, PEER_NS]) {
    try { sh('ip', 'netns', 'del', ns); } catch { /* not there */ }
    await ip(null, ['netns', 'add', ns]);
    await ip(ns, ['link', 'set', 'lo', 'up']);
    await sysctl(ns, 'net.ipv4.conf.all.rp_filter', 0);
    await sysctl(ns, 'net.ipv4.conf.default.rp_filter', 0);
  }
  await underlayVeth({ ns: SITE_NS, name: LINK, address: SITE_UNDERLAY }, { ns: PEER_NS, name: LINK, address: PEER_UNDERLAY });
  await ip(SITE_NS, ['addr', 'add', `${LAB.siteHost}/32`, 'dev', 'lo']);
  await ip(PEER_NS, ['addr', 'add', `${TARGET.address}/32`, 'dev', 'lo']);
  // nodad: the addresses are usable at once (no duplicate address detection on lo).
  await ip(SITE_NS, ['addr', 'add', `${SITE_HOST6}/128`, 'dev', 'lo', 'nodad']);
  await ip(PEER_NS, ['addr', 'add', `${SERVER6}/128`, 'dev', 'lo', 'nodad']);
  servers = await startLabServers(PEER_NS, 'peer', TARGET.address, TARGET);
  echo6 = await startUdpEcho(PEER_NS, SERVER6, TARGET.udpPort);

  runDir = await strongSwanRunDir(`t${process.pid}`);
  // Identities of two kinds (FQDN and IPv4 address) and a route-based child, as a branch router and a cloud edge.
  const siteSwan = await StrongSwan.start({
    name: 'site', namespace: SITE_NS, runDir, role: 'initiator',
    localAddress: SITE_UNDERLAY, remoteAddress: PEER_UNDERLAY,
    localId: { type: 'fqdn', value: 'branch.rig.lab' }, remoteId: { type: 'ipv4', value: PEER_UNDERLAY },
    psk: PSK, localTs: [LAB.siteLan], remoteTs: ['0.0.0.0/0'], dpdDelaySeconds: 2,
  });
  peer = await StrongSwan.start({
    name: 'peer', namespace: PEER_NS, runDir, role: 'responder',
    localAddress: PEER_UNDERLAY, remoteAddress: SITE_UNDERLAY,
    localId: { type: 'ipv4', value: PEER_UNDERLAY }, remoteId: { type: 'fqdn', value: 'branch.rig.lab' },
    psk: PSK, localTs: ['0.0.0.0/0'], remoteTs: [LAB.siteLan], dpdDelaySeconds: 2,
  });
  site = { swan: siteSwan, hostNs: SITE_NS };
});

after(async () => {
  await servers?.stop();
  await echo6?.stop();
  if (runDir !== '') await removeStrongSwanRun(runDir);
  for (const ns of [SITE_NS, PEER_NS]) {
    try { sh('ip', 'netns', 'del', ns); } catch { /* not there */ }
  }
});

test('the site initiates with the defaults: the SA is up over ESP-in-UDP on 4500, and UDP echoes cross it', async () => {
  await site.swan.initiate();
  const { ike, child } = await site.swan.waitEstablished('the default SA');
  assert.equal(ike.localId, 'branch.rig.lab');
  assert.equal(ike.remoteId, PEER_UNDERLAY, 'an IPv4 identity travels as the address');
  assert.equal(ike.remotePort, 4500, 'kernel-libipsec forces UDP encapsulation (IKE moves to 4500)');
  assert.equal(child.encap, true);
  assert.deepEqual(child.localTs, [LAB.siteLan]);
  assert.deepEqual(child.remoteTs, ['0.0.0.0/0']);
  assert.equal(await echoesThrough(site, TARGET, 3), 3);
  const after = await site.swan.established();
  assert.ok(after !== null && after.child.packetsOut >= 3 && after.child.packetsIn >= 3, `child SA counters: ${JSON.stringify(after?.child)}`);
});

test('every proposal of issue 9 §2 negotiates and passes traffic (the matrix is printed)', async () => {
  const rows = await runProposalMatrix(site, strongSwanPeerSide(peer), TARGET, proposalMatrix());
  process.stdout.write(`${formatMatrix(rows, 'strongSwan')}\n`);
  const failed = rows.filter((r) => !r.ok);
  assert.deepEqual(failed, [], `failed rows:\n${failed.map((r) => JSON.stringify(r)).join('\n')}`);
});

test('child SA and IKE SA rekeyed under a TCP transfer: every byte arrives, intact, no reset', async () => {
  await site.swan.terminate();
  await peer.terminate();
  await site.swan.reconfigure({ ikeProposals: ['aes256gcm16-prfsha256-ecp256'], espProposals: ['aes128gcm16-ecp256'] });
  await strongSwanPeerSide(peer).setProposals('aes256gcm16-prfsha256-ecp256', 'aes128gcm16-ecp256');
  await site.swan.initiate();
  const r = await rekeyUnderTransfer(site, TARGET);
  assert.equal(r.download.error, undefined, `the transfer failed: ${JSON.stringify(r.download)}`);
  assert.equal(r.download.sha256, r.download.serverSha256, 'the bytes received are the bytes sent');
  assert.notEqual(r.childRekey?.after.spiIn, r.childRekey?.before.spiIn);
  assert.equal(r.childRekey?.after.dhGroup, 'ECP_256', 'the child rekey used PFS');
  assert.notEqual(r.ikeRekey?.after.spiI, r.ikeRekey?.before.spiI);
});

test('strongSwan killed and restarted mid-transfer: INITIAL_CONTACT clears the stale SA on the other side, the transfer completes', async () => {
  const r = await restartUnderTransfer(site, strongSwanPeerSide(peer), TARGET);
  assert.notEqual(r.after.spiI, r.before.spiI, 'a new IKE SA');
  assert.equal(r.peerIkeSas, 1, 'the other side holds only the new IKE SA');
  assert.equal(r.download.error, undefined, `the transfer failed: ${JSON.stringify(r.download)}`);
  assert.equal(r.download.sha256, r.download.serverSha256);
});

test('the other side initiates: the site (responder too) accepts and traffic passes', async () => {
  await site.swan.terminate();
  await peer.terminate();
  await strongSwanPeerSide(peer).initiate();
  const { ike } = await site.swan.waitEstablished('the SA the other side initiated');
  assert.equal(ike.initiator, false);
  await waitForEcho(site, TARGET, 'after the other side initiated');
});

test('IPv4 and IPv6 inside one child SA: selectors 0.0.0.0/0 and ::/0 toward the site\'s two prefixes', async () => {
  await site.swan.terminate();
  await peer.terminate();
  await site.swan.reconfigure({ localTs: [LAB.siteLan, SITE_LAN6], remoteTs: ['0.0.0.0/0', '::/0'] });
  await peer.reconfigure({ localTs: ['0.0.0.0/0', '::/0'], remoteTs: [LAB.siteLan, SITE_LAN6] });
  await site.swan.initiate();
  const { child } = await site.swan.waitEstablished('the dual-stack child SA');
  assert.deepEqual(child.remoteTs, ['0.0.0.0/0', '::/0']);
  assert.equal(await udpEchoes(SITE_NS, SERVER6, TARGET.udpPort, 'inside-v6'), true, 'IPv6 through the tunnel');
  assert.equal(await echoesThrough(site, TARGET, 1, 'inside-v4'), 1, 'IPv4 through the same SA');
  await site.swan.reconfigure({ localTs: [LAB.siteLan], remoteTs: ['0.0.0.0/0'] });
  await peer.reconfigure({ localTs: ['0.0.0.0/0'], remoteTs: [LAB.siteLan] });
});

test('e-mail and key-ID identities (RFC 7296 §3.5) authenticate both ways; a wrong PSK does not', async () => {
  await site.swan.terminate();
  await peer.terminate();
  const email = { type: 'email', value: 'branch@rig.lab' } as const;
  const keyId = { type: 'keyid', value: '7465746865722d65646765' } as const;
  await site.swan.reconfigure({ localId: email, remoteId: keyId });
  await peer.reconfigure({ localId: keyId, remoteId: email });
  await site.swan.initiate();
  const { ike } = await site.swan.waitEstablished('the SA with e-mail and key-ID identities');
  assert.equal(ike.localId, 'branch@rig.lab');
  await waitForEcho(site, TARGET, 'with e-mail and key-ID identities');
  await site.swan.terminate();
  await peer.reconfigure({ psk: `${PSK}-wrong` });
  const r = await site.swan.tryInitiate(undefined, 5);
  assert.equal(r.ok, false, 'a wrong PSK must not authenticate');
  assert.equal(await site.swan.established(), null);
  assert.match(readFileSync(site.swan.log, 'utf8'), /AUTHENTICATION_FAILED/);
});
