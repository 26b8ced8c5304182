/**
 * IPsec end to end through the daemon (issue 9, "Must show"): the lab with site-d, whose router runs strongSwan
 * (kernel-libipsec, ESP in UDP 4500) and dials tether's ipsec onramp on 192.168.106.1, next to the WireGuard sites
 * (all with host 10.0.1.10). In order:
 *   - HTTP and UDP from site-d's host and site-a's host at once, to the Internet server and the data center: every
 *     reply reaches the site that asked (the servers echo the client: checked at the receiving host);
 *   - `tether onramps`, GET /v1/stats and /metrics show site-d's IKE and child SA;
 *   - child and IKE SA rekeys under a checksummed TCP download, started by strongSwan (swanctl --rekey) and by
 *     tether (short lifetimes set through the API): every byte, the server's hash, no reset;
 *   - strongSwan killed (SIGKILL) and restarted mid-download: INITIAL_CONTACT makes tether drop the old IKE SA at
 *     once; one IKE SA left, the old child SPIs gone, the site's traffic flows again;
 *   - tether initiates (mode: initiate) toward site-d's strongSwan reconfigured as a responder;
 *   - DPD: site-d's charon SIGSTOPped → the onramp is down in the API; SIGCONT → up again.
 * Root only: as in CI, it fails loudly, never skips. Its own prefix per run; labUp removes leftovers of it first.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SITE_D_ONRAMP } from '../../src/lab/config.js';
import { httpRound, REQUESTS_PER_SITE } from '../../src/lab/demo.js';
import { sleep } from '../../src/lab/exec.js';
import {
  httpGet, inNamespace, inNamespaceOk, LAB, LINKS, startDownload, udpExchange, watchHealth, type LabInfo, type ServerReply,
} from '../../src/lab/index.js';
import { nodeTsArgs, TETHER_CLI } from '../../src/lab/paths.js';
import { siteDStrongSwan } from '../../src/lab/site-d.js';
import { DEFAULT_DPD_TIMEOUT_SECONDS } from '../../src/config/ipsec.js';
import type { IpsecSaView } from '../../src/control/ipsec-status.js';
import { edgeApi } from '../support/live-site.js';
import {
  missingStrongSwan, rekeyUnderTransfer, restartUnderTransfer, TRANSFER_BYTES, waitForEcho, type IpsecPeerSide, type IpsecSite, type IpsecTarget,
  type SwanChildSa, type SwanIkeSa,
} from '../support/strongswan.js';
import { assertDownloadIntact, labUpForTest, requireRoot } from '../support/lab-test.js';

const PREFIX = `s${(process.pid % 46656).toString(36)}`;
const API = 'http://127.0.0.1:8470';
const INTERNET: IpsecTarget = { address: LAB.internet.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort };
const DC: IpsecTarget = { address: LAB.dc.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort };
const INTERNET6: IpsecTarget = { address: LAB.internet6.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort };
/** The pool address the Internet server sees every site as (the lab's SNAT). */
const POOL = '198.51.100.1';

let lab: LabInfo;
let site: IpsecSite;
let tokenFile = '';

/** An API call (edgeApi: curl in the edge namespace with the token); throws unless it answers 2xx. */
async function api(method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await edgeApi(lab, method, path, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The daemon's /metrics text. */
function metricsText(): Promise<string> {
  return inNamespaceOk(lab.names.edge, 'curl', ['-sS', '-H', `authorization: Bearer ${readFileSync(tokenFile, 'utf8').trim()}`, `${API}/metrics`]);
}

/** site-d's IKE SAs as GET /v1/stats shows them. */
async function statsSas(): Promise<IpsecSaView[]> {
  const stats = (await api('GET', '/v1/stats')) as { onramps: Array<{ name: string; ipsec?: IpsecSaView[] }> };
  const o = stats.onramps.find((x) => x.name === SITE_D_ONRAMP);
  assert.ok(o !== undefined, `GET /v1/stats lists ${SITE_D_ONRAMP}: ${JSON.stringify(stats.onramps.map((x) => x.name))}`);
  return o.ipsec ?? [];
}

/** `tether` CLI in the edge namespace against the lab's API. */
function cli(...args: string[]) {
  return inNamespace(lab.names.edge, process.execPath, nodeTsArgs(TETHER_CLI, [...args, '--token-file', tokenFile]), { timeoutMs: 30_000 });
}

/** UDP echoes from `ns` to `target`, each with a payload naming the site; how many came back with its own payload and the site's address. */
async function udpOwn(ns: string, siteName: string, target: IpsecTarget, count: number): Promise<{ own: number; seen: string[] }> {
  const replies = await Promise.all(Array.from({ length: count }, (_, i) =>
    udpExchange(ns, target.address, target.udpPort, `${siteName} ${i}`, { timeoutMs: 3000 })));
  const seen = new Set<string>();
  let own = 0;
  for (const [i, r] of replies.entries()) {
    if (r.kind !== 'reply') continue;
    const reply = JSON.parse(r.payload) as ServerReply;
    if (reply.payload === `${siteName} ${i}`) own++;
    seen.add(reply.client.address);
  }
  return { own, seen: [...seen] };
}

before(async (t) => {
  requireRoot('the IPsec end-to-end test needs root (network namespaces, TUN devices); CI runs it as root');
  const missing = missingStrongSwan();
  if (missing !== null) throw new Error(missing);
  // labUp initiates from site-d's strongSwan once the daemon is ready.
  lab = await labUpForTest(t, { prefix: PREFIX, ipsecSite: true });
  tokenFile = join(lab.runDir, 'api-token');
  site = { swan: siteDStrongSwan(lab.names), hostNs: lab.names.siteD };
  await site.swan.waitEstablished('site-d\'s SA with tether');
  await waitForEcho(site, INTERNET, 'site-d through tether');
});

test('site-d (IPsec) and site-a (WireGuard), both 10.0.1.10, at once: HTTP and UDP to the Internet and the data center, every reply at the site that asked', async () => {
  const names = { 'site-a': lab.names.siteA, 'site-d': lab.names.siteD };
  const [inetHttp, dcHttp, ...udp] = await Promise.all([
    httpRound(names, INTERNET.address),
    httpRound(names, DC.address),
    udpOwn(lab.names.siteA, 'site-a', INTERNET, REQUESTS_PER_SITE),
    udpOwn(lab.names.siteD, 'site-d', INTERNET, REQUESTS_PER_SITE),
    udpOwn(lab.names.siteA, 'site-a', DC, REQUESTS_PER_SITE),
    udpOwn(lab.names.siteD, 'site-d', DC, REQUESTS_PER_SITE),
  ]);
  for (const r of inetHttp) {
    assert.equal(r.own, REQUESTS_PER_SITE, `HTTP to the Internet, ${r.site}: ${JSON.stringify(r)}`);
    assert.equal(r.foreign, 0, `${r.site} received another site's responses`);
    assert.deepEqual(r.seenAs, [POOL], `${r.site} is seen as the pool address`);
  }
  for (const r of dcHttp) {
    assert.equal(r.own, REQUESTS_PER_SITE, `HTTP to the data center, ${r.site}: ${JSON.stringify(r)}`);
    assert.equal(r.foreign, 0, `${r.site} received another site's responses`);
    assert.deepEqual(r.seenAs, [LAB.siteHost], `${r.site}: the data center sees the site's own address`);
  }
  const [aInet, dInet, aDc, dDc] = udp;
  for (const [what, r, seenAs] of [['site-a UDP to the Internet', aInet, POOL], ['site-d UDP to the Internet', dInet, POOL], ['site-a UDP to the data center', aDc, LAB.siteHost], ['site-d UDP to the data center', dDc, LAB.siteHost]] as const) {
    assert.equal(r.own, REQUESTS_PER_SITE, `${what}: ${JSON.stringify(r)}`);
    assert.deepEqual(r.seen, [seenAs], `${what}: the server saw ${JSON.stringify(r.seen)}`);
  }
});

test('IPv6 inside the IPv4 tunnel: site-d\'s fd00:1::10 reaches the Internet server over IPv6 (UDP and HTTP), NATed to the IPv6 pool address', async () => {
  const udp = await udpOwn(lab.names.siteD, 'site-d-v6', INTERNET6, REQUESTS_PER_SITE);
  assert.equal(udp.own, REQUESTS_PER_SITE, `UDP over IPv6: ${JSON.stringify(udp)}`);
  assert.deepEqual(udp.seen, [LAB.internet6.poolAddress], 'the server sees the IPv6 pool address');
  const reply = JSON.parse(await httpGet(lab.names.siteD, `http://[${LAB.internet6.server}]:${LAB.httpPort}/`)) as ServerReply;
  assert.equal(reply.client.address, LAB.internet6.poolAddress, `HTTP over IPv6: ${JSON.stringify(reply)}`);
});

test('tether onramps, GET /v1/stats and /metrics show site-d\'s IKE SA and child SA: established, algorithms, SPIs, rekey times, per-SA series', async () => {
  const swan = (await site.swan.waitEstablished('site-d\'s SA')).ike;
  const sas = await statsSas();
  assert.equal(sas.length, 1, `one IKE SA: ${JSON.stringify(sas)}`);
  const [sa] = sas;
  assert.equal(sa.state, 'established');
  assert.equal(sa.role, 'responder');
  // tether names suites in strongSwan's proposal syntax; strongSwan's list-sas in libstrongswan's names.
  assert.equal(sa.algorithms, LAB.siteD.ikeProposal, 'the IKE suite');
  assert.equal(swan.algorithms, 'AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256', 'the same suite at strongSwan');
  assert.equal(sa.spiI, swan.spiI.replace(/^0x/, '').padStart(16, '0'), 'the initiator SPI strongSwan shows');
  assert.ok(sa.rekeyInSeconds > 0, `an IKE rekey is scheduled: ${JSON.stringify(sa)}`);
  assert.equal(sa.children.length, 1, `one child SA: ${JSON.stringify(sa.children)}`);
  const [child] = sa.children;
  const swanChild = swan.children.find((c) => c.state === 'INSTALLED')!;
  // The ESP proposal's group is PFS on rekeys only (RFC 7296 §1.3.1): none in IKE_AUTH.
  assert.equal(child.algorithms, 'aes128gcm16', 'the ESP suite');
  assert.equal(swanChild.algorithms, 'AES_GCM_16_128', 'the same suite at strongSwan');
  assert.equal(child.spiIn, swanChild.spiOut.replace(/^0x/, ''), 'tether\'s inbound SPI is strongSwan\'s outbound');
  assert.equal(child.spiOut, swanChild.spiIn.replace(/^0x/, ''), 'tether\'s outbound SPI is strongSwan\'s inbound');
  assert.ok(child.rekeyInSeconds > 0, `a child rekey is scheduled: ${JSON.stringify(child)}`);
  assert.ok(child.counters !== null && child.counters.packetsIn > 0 && child.counters.packetsOut > 0, `ESP counters: ${JSON.stringify(child.counters)}`);

  const shown = await cli('onramps');
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`^${SITE_D_ONRAMP}: IKE established, responder, ${sa.algorithms}, .*SPIs ${sa.spiI}_i ${sa.spiR}_r, up \\S+, rekey in `, 'm'), shown.stdout);
  assert.match(shown.stdout, new RegExp(`^  child ${child.spiIn}_i ${child.spiOut}_o, ${child.algorithms}, .*rekey in .*in \\d+ pkts`, 'm'), shown.stdout);

  const metrics = await metricsText();
  assert.match(metrics, new RegExp(`^tether_ipsec_ike_sas\\{onramp="${SITE_D_ONRAMP}",state="established"\\} 1$`, 'm'));
  for (const direction of ['in', 'out']) {
    const m = new RegExp(`^tether_ipsec_child_packets_total\\{onramp="${SITE_D_ONRAMP}",spi="${child.spiIn}",direction="${direction}"\\} (\\d+)$`, 'm').exec(metrics);
    assert.ok(m !== null && Number(m[1]) > 0, `per-SA packet series, ${direction}: ${metrics.split('\n').filter((l) => l.startsWith('tether_ipsec')).join('\n')}`);
  }
  assert.match(metrics, new RegExp(`^tether_ipsec_child_replay_drops_total\\{onramp="${SITE_D_ONRAMP}",spi="${child.spiIn}"\\} 0$`, 'm'));
});

/** tether's established IKE SAs with site-d, and the inbound SPIs of the child SAs its ESP table holds (/metrics). */
async function tetherSas(): Promise<{ established: IpsecSaView[]; espSpis: string[] }> {
  const sas = await statsSas();
  const metrics = await metricsText();
  const espSpis = [...metrics.matchAll(new RegExp(`^tether_ipsec_child_packets_total\\{onramp="${SITE_D_ONRAMP}",spi="([0-9a-f]+)",direction="in"\\}`, 'gm'))].map((m) => m[1]);
  return { established: sas.filter((s) => s.state === 'established'), espSpis };
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; throws naming `what`. */
async function waitUntil<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, pollMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}\n${site.swan.tail(15)}`);
    await sleep(pollMs);
  }
}

/**
 * True when charon's IKE SA `ike` and child `child` are tether's `sa` and its only child: charon prints SPIs as
 * 0x… without leading zeros, and its child's inbound SPI is tether's outbound one.
 */
function sameSa(sa: IpsecSaView, ike: SwanIkeSa, child: SwanChildSa): boolean {
  const hex = (spi: string) => spi.replace(/^0x/, '');
  const c = sa.children[0];
  return sa.children.length === 1 && sa.spiI === hex(ike.spiI).padStart(16, '0') && sa.spiR === hex(ike.spiR).padStart(16, '0')
    && c.spiIn === hex(child.spiOut) && c.spiOut === hex(child.spiIn);
}

/**
 * charon's established IKE SA with the SPIs of tether's `sa` and its child installed, or undefined. Chosen by
 * SPIs and listed after tether's view was read: during an IKE rekey charon can still list the SA being replaced
 * (ESTABLISHED, the child on it) until it has answered the CREATE_CHILD_SA (RFC 7296 §2.18), so "charon's first
 * established SA" read before tether's view may be the old one.
 */
async function swanSaOf(sa: IpsecSaView): Promise<{ ike: SwanIkeSa; child: SwanChildSa } | undefined> {
  for (const ike of await site.swan.listSas()) {
    if (ike.name !== site.swan.connection || ike.state !== 'ESTABLISHED') continue;
    const child = ike.children.find((c) => c.name === site.swan.child && c.state === 'INSTALLED');
    if (child !== undefined && sameSa(sa, ike, child)) return { ike, child };
  }
  return undefined;
}

/** tether and strongSwan agree: one established IKE SA with one child, the same SPIs, and the ESP table holds only it. */
async function assertOneSa(what: string): Promise<IpsecSaView> {
  return waitUntil(`${what}: one IKE SA and one child SA on both sides, the same SPIs`, 20_000, async () => {
    const { ike, child } = await site.swan.waitEstablished(what);
    const { established, espSpis } = await tetherSas();
    if (established.length !== 1 || !sameSa(established[0], ike, child)) return undefined;
    const [sa] = established;
    if (espSpis.length !== 1 || espSpis[0] !== sa.children[0].spiIn) return undefined;
    return sa;
  });
}

test('strongSwan rekeys the child SA and then the IKE SA under a checksummed TCP download: no byte lost, no reset; tether follows', async () => {
  const before = await assertOneSa('before the rekeys');
  const r = await rekeyUnderTransfer(site, INTERNET);
  assertDownloadIntact(r.download, TRANSFER_BYTES, 'download across strongSwan\'s rekeys');
  assert.notEqual(r.childRekey!.after.spiIn, r.childRekey!.before.spiIn, 'a new child SA');
  assert.notEqual(r.ikeRekey!.after.spiI, r.ikeRekey!.before.spiI, 'a new IKE SA');
  const after = await assertOneSa('after strongSwan\'s rekeys');
  assert.notEqual(after.spiI, before.spiI, 'tether holds the new IKE SA only');
  assert.notEqual(after.children[0].spiIn, before.children[0].spiIn, 'tether holds the new child SA only');
});

/** Short enough to watch (the schema's minimum is 60 s); the IKE SA later than the child, so the two do not meet. */
const SHORT_CHILD_REKEY_SECONDS = 60;
const SHORT_IKE_REKEY_SECONDS = 75;
/** While tether's rekeys are awaited the download is held to this rate (tc tbf on site-d's LAN), so it spans them. */
const THROTTLE_RATE = '8mbit';
const THROTTLED_BYTES = 256 * 1024 * 1024;

test('tether rekeys the child SA and the IKE SA itself (short lifetimes set through the API) under a checksummed TCP download: no byte lost, no reset', async () => {
  const lifetimes = {
    child_lifetime: { rekey_seconds: SHORT_CHILD_REKEY_SECONDS, lifetime_seconds: SHORT_CHILD_REKEY_SECONDS * 2, jitter_seconds: 0 },
    ike_lifetime: { rekey_seconds: SHORT_IKE_REKEY_SECONDS, lifetime_seconds: SHORT_IKE_REKEY_SECONDS * 2, jitter_seconds: 0 },
  };
  await api('PATCH', `/v1/onramps/${SITE_D_ONRAMP}`, { ipsec: lifetimes });
  const stored = (await api('GET', `/v1/onramps/${SITE_D_ONRAMP}`)) as { ipsec: typeof lifetimes & { psk: string } };
  assert.deepEqual(stored.ipsec.child_lifetime, lifetimes.child_lifetime, JSON.stringify(stored));
  assert.equal(stored.ipsec.psk, '(redacted)', 'the PSK is never returned');
  const throttle = (on: boolean) => inNamespaceOk(lab.names.siteDRouter, 'tc', on
    ? ['qdisc', 'replace', 'dev', LINKS.siteCLan, 'root', 'tbf', 'rate', THROTTLE_RATE, 'burst', '32kb', 'latency', '400ms']
    : ['qdisc', 'del', 'dev', LINKS.siteCLan, 'root']);
  try {
    // New lifetimes apply to SAs made from now on: strongSwan rekeys both, and tether times the new ones.
    await site.swan.rekeyChild();
    await site.swan.rekeyIke();
    const start = await assertOneSa('the SAs with the short lifetimes');
    assert.ok(start.rekeyInSeconds <= SHORT_IKE_REKEY_SECONDS && start.children[0].rekeyInSeconds <= SHORT_CHILD_REKEY_SECONDS, `tether's rekey times: ${JSON.stringify(start)}`);
    await throttle(true);
    const dl = startDownload(site.hostNs, `http://${INTERNET.address}:${INTERNET.httpPort}/download?bytes=${THROTTLED_BYTES}`, { progressBytes: 1024 * 1024, idleTimeoutMs: 30_000 });
    let ended = false;
    const result = dl.result.finally(() => { ended = true; });
    const rekeyed = await waitUntil('tether\'s own child and IKE rekeys', (SHORT_IKE_REKEY_SECONDS + 45) * 1000, async () => {
      if (ended) throw new Error('the download ended before tether rekeyed');
      const { established } = await tetherSas();
      const sa = established[0];
      if (established.length !== 1 || sa.spiI === start.spiI || sa.children.length !== 1 || sa.children[0].spiIn === start.children[0].spiIn) return undefined;
      // charon's side of this very SA (by SPIs, read after tether's): not whichever SA charon lists first.
      const swan = await swanSaOf(sa);
      return swan === undefined ? undefined : { sa, swan };
    }, 1000);
    await throttle(false);
    assertDownloadIntact(await result, THROTTLED_BYTES, 'download across tether\'s rekeys');
    // tether started the new IKE SA (strongSwan's side of it is the responder's) and it carries the child.
    assert.equal(rekeyed.sa.role, 'initiator', `tether initiated the IKE rekey: ${JSON.stringify(rekeyed.sa)}`);
    assert.equal(rekeyed.swan.ike.initiator, false, 'strongSwan responded to the IKE rekey');
    await assertOneSa('after tether\'s rekeys');
    assert.match(site.swan.tail(400), /parsed CREATE_CHILD_SA request/, 'strongSwan answered tether\'s CREATE_CHILD_SA');
  } finally {
    await throttle(false).catch(() => undefined);
    await api('PATCH', `/v1/onramps/${SITE_D_ONRAMP}`, { ipsec: { child_lifetime: null, ike_lifetime: null } });
  }
  // Back to the default lifetimes: the SAs made next (strongSwan rekeys both) are timed by them.
  await site.swan.rekeyChild();
  await site.swan.rekeyIke();
  const restored = await assertOneSa('the SAs with the default lifetimes');
  assert.ok(restored.rekeyInSeconds > SHORT_IKE_REKEY_SECONDS * 2, `default IKE lifetime again: ${JSON.stringify(restored)}`);
});

test('strongSwan killed (SIGKILL) and restarted mid-download: INITIAL_CONTACT ends tether\'s old IKE SA at once, the old child leaves the ESP table, traffic flows again', async () => {
  const before = await assertOneSa('before the restart');
  const tetherSide: IpsecPeerSide = {
    name: 'tether', setProposals: async () => undefined, reset: async () => undefined, initiate: async () => undefined,
    ikeSaCount: async () => (await tetherSas()).established.length,
  };
  const r = await restartUnderTransfer(site, tetherSide, INTERNET);
  // The download ran through the restart: TCP retransmitted across the gap, nothing lost, no reset.
  assertDownloadIntact(r.download, TRANSFER_BYTES, 'download across strongSwan\'s restart');
  assert.notEqual(r.after.spiI, r.before.spiI, 'strongSwan made a new IKE SA');
  // Counted seconds after the restart: DPD alone would have needed its 10 s of silence and its 30 s timeout (the DPD
  // test below), so one SA here is INITIAL_CONTACT's doing.
  assert.equal(r.peerIkeSas, 1, 'tether holds one IKE SA: the new one (INITIAL_CONTACT, RFC 7296 §2.4)');
  const after = await assertOneSa('after the restart');
  assert.notEqual(after.spiI, before.spiI);
  const { espSpis } = await tetherSas();
  assert.ok(!espSpis.includes(before.children[0].spiIn), `the old child SA (${before.children[0].spiIn}) is gone from the ESP table: ${espSpis.join(' ')}`);
  await waitForEcho(site, DC, 'site-d to the data center after the restart');
});

test('tether initiates (mode: initiate, set through the API) toward site-d\'s strongSwan reconfigured as a responder: established, traffic passes', async () => {
  // strongSwan waits (a responder clears what dies, restarts nothing); its SA with tether goes first.
  await site.swan.reconfigure({ role: 'responder' });
  await site.swan.terminate();
  await waitUntil('tether\'s side of the terminated SA gone', 20_000, async () => ((await tetherSas()).established.length === 0 ? true : undefined));
  await api('PATCH', `/v1/onramps/${SITE_D_ONRAMP}`, { ipsec: { mode: 'initiate' } });
  const { ike } = await site.swan.waitEstablished('the IKE SA tether initiated', 30_000);
  assert.equal(ike.initiator, false, 'strongSwan is the responder');
  assert.equal(ike.remoteHost, LAB.siteD.edgeEndpoint);
  const sa = await assertOneSa('tether initiating');
  assert.equal(sa.role, 'initiator');
  await waitForEcho(site, INTERNET, 'site-d to the Internet, tether initiating');
  await waitForEcho(site, DC, 'site-d to the data center, tether initiating');
  const inet = JSON.parse(await httpGet(site.hostNs, `http://${INTERNET.address}/`)) as ServerReply;
  assert.equal(inet.client.address, POOL, 'HTTP too, seen as the pool address');
});

/** The figure to compare with: DPD's idle time, then the unanswered check's retransmissions for dpd_timeout_seconds (RFC 7296 §2.4). */
const DPD_SECONDS = 10;
const DPD_GIVE_UP_MS = (DPD_SECONDS + DEFAULT_DPD_TIMEOUT_SECONDS) * 1000;
/** Generous bounds, not measurements. */
const DPD_SLACK_MS = 30_000;
const RECOVERY_BOUND_MS = 60_000;

test('DPD: site-d\'s charon stopped (SIGSTOP) → tether\'s onramp is down in the API after DPD and its retransmissions; continued (SIGCONT) → up again (degraded)', async (t) => {
  const health = watchHealth(lab.names.edge, API, tokenFile, 250);
  const pid = site.swan.processId;
  assert.ok(pid !== null, 'site-d\'s charon is running');
  try {
    await health.ready;
    // The previous test's terminate was a Delete: down, then degraded once the SA was back (healthy takes five
    // clean minutes, docs/HEALTH.md). Up is what counts here: not down.
    const lastState = () => health.seen.filter((s) => s.onramp === SITE_D_ONRAMP).at(-1)?.state;
    await waitUntil('site-d not down before the stop', 20_000, async () => (lastState() !== undefined && lastState() !== 'down' ? true : undefined));
    assert.equal((await assertOneSa('before the stop')).role, 'initiator', 'tether initiates (the previous test), so it brings the SA back itself');
    const stoppedAt = Date.now();
    process.kill(pid, 'SIGSTOP');
    let downAt: number | null;
    try {
      downAt = await health.reached(SITE_D_ONRAMP, 'down', stoppedAt, DPD_GIVE_UP_MS + DPD_SLACK_MS);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.ok(downAt !== null, `site-d down within ${DPD_GIVE_UP_MS + DPD_SLACK_MS} ms of the stop: ${JSON.stringify(health.seen)} ${JSON.stringify(health.errors)}`);
    t.diagnostic(`DPD: down in the API ${downAt - stoppedAt} ms after charon stopped (DPD ${DPD_SECONDS} s + its ${DEFAULT_DPD_TIMEOUT_SECONDS} s timeout = ${DPD_GIVE_UP_MS} ms)`);
    assert.ok(downAt - stoppedAt >= DPD_SECONDS * 1000, 'not before DPD could have asked');
    assert.equal((await tetherSas()).espSpis.length, 0, 'the dead peer\'s child SAs are gone from the ESP table');
    const contAt = Date.now();
    // Back from down is degraded (three good samples), not yet healthy (five clean minutes).
    const upAt = await health.reached(SITE_D_ONRAMP, 'degraded', contAt, RECOVERY_BOUND_MS);
    assert.ok(upAt !== null, `site-d up (degraded) again within ${RECOVERY_BOUND_MS} ms: ${JSON.stringify(health.seen)}`);
    t.diagnostic(`DPD: up (degraded) again ${upAt - contAt} ms after charon continued`);
    await assertOneSa('after the return');
    await waitForEcho(site, INTERNET, 'site-d after the return');
  } finally {
    health.stop();
    // Back to the lab's terms: tether responds, strongSwan dials in.
    await api('PATCH', `/v1/onramps/${SITE_D_ONRAMP}`, { ipsec: { mode: null } });
    await site.swan.reconfigure({ role: 'initiator' });
  }
  await site.swan.terminate();
  await site.swan.initiate();
  assert.equal((await assertOneSa('strongSwan initiating again')).role, 'responder');
  await waitForEcho(site, DC, 'site-d to the data center, strongSwan initiating again');
});
