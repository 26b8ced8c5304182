/**
 * End to end over real interfaces (docs/LAB.md): the lab's namespaces, wireguard-go and
 * `wg` as the sites' routers, Debian's scapy as a GRE site, Node's HTTP and UDP servers, and the
 * tether daemon as the edge. Root only: as in CI, it fails loudly, never skips.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { type TetherConfig } from '../../src/config/index.js';
import { defaultConfig, LAB_WIREGUARD_KEYS } from '../../src/lab/config.js';
import { arrOffConfig, httpRound, REQUESTS_PER_SITE, udpRound } from '../../src/lab/demo.js';
import { grePeer, inNamespace, inNamespaceOk, labDown, labStatus, labUp, LAB, startDownload, udpExchange } from '../../src/lab/index.js';
import { nodeTsArgs, TETHER_CLI } from '../../src/lab/paths.js';
import type { LabInfo } from '../../src/lab/index.js';
import { keyFromBase64, WireGuardDevice } from '../../src/onramp/wireguard/index.js';
import { buildUdp } from '../../src/wire/build.js';
import { edgeStatus } from '../support/edge-status.js';
import { assertDownloadIntact, labUpForTest } from '../support/lab-test.js';

const PREFIX = `e${(process.pid % 46656).toString(36)}`;
const SECOND_GRE_ENDPOINT = LAB.siteGre.secondRouter;
/** The second GRE tunnel is narrow, so path-MTU discovery through it can be watched. */
const SECOND_GRE_MTU = 1200;

/** The lab's config plus a second GRE site whose tunnel ends at .3 and whose LAN is 10.0.1.0/24 again. */
function twoGreSitesConfig(): TetherConfig {
  const cfg = defaultConfig();
  cfg.sites.push({ name: 'site-gre-2', description: 'a second GRE branch, same LAN', prefixes: [LAB.siteLan] } as TetherConfig['sites'][number]);
  const gre = cfg.onramps.find((o) => o.type === 'gre')!;
  cfg.onramps.push({ ...structuredClone(gre), name: 'site-gre-2-tunnel', site: 'site-gre-2', gre: { ...(gre as { gre: object }).gre, remote: SECOND_GRE_ENDPOINT, mtu: SECOND_GRE_MTU } } as TetherConfig['onramps'][number]);
  return cfg;
}

interface StoppedStatus {
  edge: Record<string, number>;
  pipelineDrops: Record<string, number>;
  greDrops: Record<string, number>;
  wireguard: Array<{ device: string; drops: Record<string, number> }>;
}

/** The running daemon's counters (its SIGUSR1 status line). */
function edgeCounters(pid: number, logFile: string): Promise<StoppedStatus> {
  return edgeStatus<StoppedStatus>(pid, logFile);
}

let lab: LabInfo;

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX, config: twoGreSitesConfig() });
});

test('both sites (10.0.1.10 each) fetch from the Internet server at once over wireguard-go: every response reaches the site that asked, intact; the server sees the pool', async () => {
  const names = { 'site-a': lab.names.siteA, 'site-b': lab.names.siteB };
  for (const r of await httpRound(names, LAB.internet.server)) {
    assert.equal(r.own, REQUESTS_PER_SITE, `${r.site}: ${JSON.stringify(r)}`);
    assert.equal(r.foreign, 0, `${r.site} received another site's responses`);
    assert.deepEqual(r.seenAs, ['198.51.100.1'], `${r.site} is seen as the pool address`);
  }
});

test('both sites reach the data-center server from the identical source address and port; both get their replies', async () => {
  const [a, b] = await Promise.all(
    [lab.names.siteA, lab.names.siteB].map((ns, i) => udpExchange(ns, LAB.dc.server, LAB.echoPort, `site-${i}`, { sourcePort: 40000 })),
  );
  assert.equal(a.kind, 'reply', `site-a: ${JSON.stringify(a)}`);
  assert.equal(b.kind, 'reply', `site-b: ${JSON.stringify(b)}`);
  const seen = [a, b].map((r) => (r.kind === 'reply' ? (JSON.parse(r.payload) as { client: { address: string; port: number } }).client : null));
  assert.deepEqual(seen.map((c) => c?.address), [LAB.siteHost, LAB.siteHost], 'no address translation toward the data center');
  assert.equal(seen.filter((c) => c?.port === 40000).length, 1, 'exactly one flow keeps port 40000; the clashing one is rewritten');
});

test('a UDP datagram to a closed port on the Internet server brings port unreachable back to the site that sent it', async () => {
  const results = await Promise.all([lab.names.siteA, lab.names.siteB].map((ns) => udpExchange(ns, LAB.internet.server, LAB.closedUdpPort, 'hello')));
  assert.deepEqual(results.map((r) => r.kind), ['refused', 'refused']);
});

test('GRE: scapy packets from two tunnel endpoints carrying the same inner source get their replies in GRE, each at its own endpoint', async () => {
  const ask = (outerSrc: string, payload: string) =>
    grePeer(lab.names.siteGre, { outerSrc, proto: 'udp', sport: 41000, dst: LAB.internet.server, dport: LAB.echoPort, payload, count: 3, interval: 0.1, wait: 3, expect: 3 });
  const [first, second] = await Promise.all([ask(LAB.siteGre.router, 'first endpoint'), ask(SECOND_GRE_ENDPOINT, 'second endpoint')]);
  for (const [result, endpoint, payload] of [[first, LAB.siteGre.router, 'first endpoint'], [second, SECOND_GRE_ENDPOINT, 'second endpoint']] as const) {
    assert.ok(result.replies.length >= 3, `${endpoint}: ${result.replies.length} replies`);
    for (const reply of result.replies) {
      assert.equal(reply.outer.dst, endpoint, 'the reply comes back to the endpoint that asked');
      assert.equal(reply.outer.src, LAB.siteGre.edgeEndpoint);
      assert.equal(reply.inner?.dst, LAB.siteHost);
      assert.equal(reply.inner?.dport, 41000);
      assert.ok(reply.inner?.payload?.includes(payload), `the echo carries ${payload}: ${reply.inner?.payload}`);
    }
  }
});

/**
 * The WireGuard onramps' tunnel MTU (wireguard.mtu, default 1420). These run before the GRE path-MTU test: the
 * Internet server keeps one path MTU for the pool address; each of the two tests starts from none.
 */
const WG_TUNNEL_MTU = 1420;
/** A full Ethernet frame's IP packet: what a site host on a 1,500-byte LAN offers as its MTU. */
const LAN_MTU = 1500;
const DOWNLOAD_BYTES = 4 * 1024 * 1024;

test('WireGuard tunnel MTU: site-a\'s host on a 1,500-byte link downloads a few MB from the Internet server, complete and with the server\'s checksum', async () => {
  // site-a's host address sits on wireguard-go's own interface, whose MTU is 1420: its TCP would offer an MSS
  // that fits the tunnel. At 1,500 it offers 1460 like a host on an Ethernet LAN behind a router that does not clamp.
  const mtuOf = async () => (await inNamespaceOk(lab.names.siteA, 'ip', ['-o', 'link', 'show', lab.names.wgA])).match(/ mtu (\d+)/)?.[1];
  const had = await mtuOf();
  await inNamespaceOk(lab.names.siteA, 'ip', ['link', 'set', lab.names.wgA, 'mtu', String(LAN_MTU)]);
  try {
    const r = await startDownload(lab.names.siteA, `http://${LAB.internet.server}/download?bytes=${DOWNLOAD_BYTES}`, { idleTimeoutMs: 10_000 }).result;
    assertDownloadIntact(r, DOWNLOAD_BYTES);
  } finally {
    await inNamespaceOk(lab.names.siteA, 'ip', ['link', 'set', lab.names.wgA, 'mtu', had ?? String(WG_TUNNEL_MTU)]);
  }
});

test('WireGuard path MTU: a reply too big for the tunnel (DF set) brings fragmentation-needed back through the NAT to the server, which then fragments', async () => {
  // The echo's reply (the 1,360-byte payload in about 100 bytes of JSON, 28 of headers) is about 1,490 bytes, DF set:
  // it fits the server's 1,500-byte link, not the tunnel. The request (about 1,390 bytes) fits both.
  const ask = () => udpExchange(lab.names.siteA, LAB.internet.server, LAB.echoPort, 'y'.repeat(1360), { sourcePort: 43000, timeoutMs: 2000 });
  const routeToPool = () => inNamespaceOk(lab.names.internet, 'ip', ['route', 'get', '198.51.100.1']);
  assert.doesNotMatch(await routeToPool(), / mtu /, 'no path MTU learned before');
  try {
    const first = await ask();
    assert.equal(first.kind, 'timeout', `the echo cannot cross the ${WG_TUNNEL_MTU}-byte tunnel whole: ${JSON.stringify(first).slice(0, 200)}`);
    const route = await routeToPool();
    assert.match(route, new RegExp(`mtu ${WG_TUNNEL_MTU}`), `the server learned the path MTU from the edge's error: ${route}`);
    const second = await ask();
    assert.equal(second.kind, 'reply', `the next echo arrives in fragments that fit: ${JSON.stringify(second).slice(0, 200)}`);
    const status = await labStatus({ prefix: PREFIX });
    const counters = await edgeCounters(status.edge!.pid!, lab.edgeLog!);
    assert.ok((counters.edge.wg_too_big ?? 0) >= 1, `counted: ${JSON.stringify(counters.edge)}`);
    assert.ok((counters.edge.wg_too_big_reported ?? 0) >= 1, `counted: ${JSON.stringify(counters.edge)}`);
  } finally {
    // The server keeps the learned MTU on its route's next hop, for every flow to the pool address: a route made
    // afresh starts without it, so the GRE path-MTU test below sees the path as new.
    await inNamespaceOk(lab.names.internet, 'ip', ['route', 'del', LAB.internet.pool, 'via', LAB.internet.edge]);
    await inNamespaceOk(lab.names.internet, 'ip', ['route', 'add', LAB.internet.pool, 'via', LAB.internet.edge]);
  }
  assert.doesNotMatch(await routeToPool(), / mtu /, 'the learned path MTU is gone again');
});

test('GRE path MTU: a reply too big for the tunnel (DF set) brings fragmentation-needed back through the NAT to the server, which then fragments', async () => {
  const ask = () => grePeer(lab.names.siteGre, {
    outerSrc: SECOND_GRE_ENDPOINT, proto: 'udp', sport: 42000, dst: LAB.internet.server, dport: LAB.echoPort, payload: 'x'.repeat(1300), count: 1, wait: 2,
  });
  const first = await ask();
  assert.equal(first.replies.length, 0, `the echo (about 1.4 kB, DF) cannot cross the ${SECOND_GRE_MTU}-byte tunnel: ${JSON.stringify(first.replies)}`);
  const route = await inNamespace(lab.names.internet, 'ip', ['route', 'get', '198.51.100.1']);
  assert.match(route.stdout, new RegExp(`mtu ${SECOND_GRE_MTU}`), `the server learned the path MTU from the edge's error: ${route.stdout}`);
  const second = await ask();
  assert.ok(second.replies.length >= 2, `the next echo arrives in fragments that fit: ${second.replies.length} GRE packets`);
  for (const reply of second.replies) assert.equal(reply.outer.dst, SECOND_GRE_ENDPOINT, 'to the tunnel that asked');
});

test('a handshake flood puts the WireGuard device under load: cookie replies (whitepaper 5.3), and the sites keep working', async () => {
  const stranger = new WireGuardDevice({ privateKey: randomBytes(32), peers: [{ publicKey: keyFromBase64(LAB_WIREGUARD_KEYS.edgeAPublic)!, endpoint: { addr: LAB.siteA.edgeEndpoint, port: LAB.wireguardPort } }] });
  const [initiation] = stranger.send(0, buildUdp({ src: '10.9.9.9', dst: '203.0.113.10' }, { srcPort: 1, dstPort: 2 }), Date.now());
  const flood = [
    "const dgram = require('node:dgram');",
    'const [dst, port, hex, count] = process.argv.slice(1);',
    "const s = dgram.createSocket('udp4'); const types = {};",
    's.on(\'message\', (m) => { types[m[0]] = (types[m[0]] || 0) + 1; });',
    's.bind(0, () => { const b = Buffer.from(hex, \'hex\'); for (let i = 0; i < Number(count); i++) s.send(b, Number(port), dst);',
    '  setTimeout(() => { console.log(JSON.stringify(types)); process.exit(0); }, 1500); });',
  ].join('\n');
  const result = await inNamespace(lab.names.siteA, process.execPath, ['-e', flood, LAB.siteA.edgeEndpoint, String(LAB.wireguardPort), Buffer.from(initiation.data).toString('hex'), '300']);
  const replies = JSON.parse(result.stdout || '{}') as Record<string, number>;
  assert.ok((replies['3'] ?? 0) > 0, `cookie replies (type 3) once under load: ${result.stdout} ${result.stderr}`);
  assert.equal(replies['2'] ?? 0, 0, 'no handshake response for an unknown key');
  for (const r of await httpRound({ 'site-a': lab.names.siteA, 'site-b': lab.names.siteB }, LAB.internet.server)) {
    assert.equal(r.own, REQUESTS_PER_SITE, `${r.site} unaffected by the flood: ${JSON.stringify(r)}`);
  }
});

test('hostile input: garbage, an unknown key, replays, a wrong GRE key, truncated packets — counted drops, no crash, other sites unaffected', async () => {
  const endpointA = LAB.siteA.edgeEndpoint;
  // Garbage and truncated datagrams on the WireGuard port, from site A's underlay link.
  for (const payload of [randomBytes(148), randomBytes(3), Buffer.from([4, 0, 0, 0]), randomBytes(1400)]) {
    await udpExchange(lab.names.siteA, endpointA, LAB.wireguardPort, payload, { timeoutMs: 300 });
  }
  // A well-formed handshake initiation from a key the edge does not know.
  const stranger = new WireGuardDevice({ privateKey: randomBytes(32), peers: [{ publicKey: keyFromBase64(LAB_WIREGUARD_KEYS.edgeAPublic)!, endpoint: { addr: endpointA, port: LAB.wireguardPort } }] });
  const [initiation] = stranger.send(0, buildUdp({ src: '10.9.9.9', dst: '203.0.113.10' }, { srcPort: 1, dstPort: 2 }), Date.now());
  await udpExchange(lab.names.siteA, endpointA, LAB.wireguardPort, initiation.data, { timeoutMs: 300 });
  // Replays: capture one of site A's transport packets on its link and send it three more times. Only a
  // transport data message (type 4, the first byte of the UDP payload) on its way TO the edge: a handshake
  // initiation caught instead would meet the cookie check while the device is still under load from the flood
  // test, and the edge's own packets to site A's router (whose wireguard-go listens on the same port) would be
  // replayed at site A. The test is in Python (lfilter), not a BPF filter: scapy compiles BPF through libpcap
  // or tcpdump, neither of which the lab installs, and without them it ignores the filter.
  const replay = inNamespace(lab.names.siteA, '/usr/bin/python3', ['-c', [
    'from scapy.all import IP, UDP, sniff, sendp',
    'def ours(q):',
    `    return IP in q and UDP in q and q[IP].dst == '${endpointA}' and q[UDP].dport == ${LAB.wireguardPort} and bytes(q[UDP].payload)[:1] == b'\\x04' and len(q) > 120`,
    "p = sniff(iface='veth-edge', lfilter=ours, count=1, timeout=15)",
    // A packet caught leaving this host may carry a partial UDP checksum (offloaded to the NIC, here veth); the
    // copies get a full one, as a real on-path attacker's replays would have.
    'if p: p[0][UDP].chksum = None',
    "sendp(p[0], iface='veth-edge', count=3, verbose=0) if p else None",
    "print('replayed' if p else 'nothing captured')",
  ].join('\n')], { timeoutMs: 30_000 });
  // Site A's traffic until the sniffer (Python importing scapy takes a second or more) has caught one.
  let caught = false;
  const replayDone = replay.finally(() => { caught = true; });
  for (let round = 0; round < 20 && !caught; round++) {
    await new Promise((r) => setTimeout(r, 300));
    await udpRound({ 'site-a': lab.names.siteA, 'site-b': lab.names.siteB }, LAB.internet.server);
  }
  const replayed = await replayDone;
  assert.match(replayed.stdout, /replayed/, `the replay script: ${replayed.stderr}`);
  // GRE with a key the tunnel does not have, and truncated GRE.
  await grePeer(lab.names.siteGre, { key: 999, count: 2, wait: 0.5 });
  await inNamespace(lab.names.siteGre, '/usr/bin/python3', ['-c', `from scapy.all import IP, send\nsend(IP(src='${LAB.siteGre.router}', dst='${LAB.siteGre.edgeEndpoint}', proto=47)/b'\\x00\\x00', count=2, verbose=0)`]);

  // Nothing crashed, and both WireGuard sites still get every answer.
  const status = await labStatus({ prefix: PREFIX });
  assert.equal(status.edge?.alive, true, 'the edge is still running');
  for (const r of await httpRound({ 'site-a': lab.names.siteA, 'site-b': lab.names.siteB }, LAB.internet.server)) {
    assert.equal(r.own, REQUESTS_PER_SITE, `${r.site} unaffected: ${JSON.stringify(r)}`);
  }
  // Every piece of hostile input was counted.
  const counters = await edgeCounters(status.edge!.pid!, lab.edgeLog!);
  const wgA = counters.wireguard.find((d) => d.device === 'wg-a')!.drops;
  const total = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
  assert.ok(total(wgA) >= 6, `WireGuard drops counted on wg-a: ${JSON.stringify(wgA)}`);
  assert.ok(Object.keys(wgA).some((k) => /replay/i.test(k)), `replays counted: ${JSON.stringify(wgA)}`);
  assert.ok(total(counters.greDrops) >= 4, `GRE drops counted: ${JSON.stringify(counters.greDrops)}`);
});

test('the API in the edge namespace: tether flows and the dashboard show both sites\' 10.0.1.10 side by side; tether onramps --arr off switches new flows', async () => {
  const cli = (...args: string[]) => inNamespace(lab.names.edge, process.execPath, nodeTsArgs(TETHER_CLI, args), { timeoutMs: 30_000 });
  // Every call needs the token, reads included: the operator points the CLI at api.token_file.
  const tokenFile = join(lab.runDir, 'api-token');
  const withToken = (...args: string[]) => cli(...args, '--token-file', tokenFile);
  const refused = await cli('flows', '--json', '--token-file', '/nonexistent');
  assert.notEqual(refused.code, 0, 'a read without the token is refused');
  assert.match(refused.stderr, /cannot read the API token from \/nonexistent|\/nonexistent: does not exist/);
  await Promise.all([lab.names.siteA, lab.names.siteB].map((ns) => udpExchange(ns, LAB.internet.server, LAB.echoPort, 'side by side', { sourcePort: 45000 })));
  // The earlier tests left many UDP flows from 10.0.1.10 to the Internet server (hostile input, floods), listed in
  // table order: a full page (the API's largest) holds these two wherever they sit.
  const listed = await withToken('flows', '--json', '--src', '10.0.1.10/32', '--dst', `${LAB.internet.server}/32`, '--protocol', 'udp', '--limit', '1000');
  assert.equal(listed.code, 0, listed.stderr);
  const page = JSON.parse(listed.stdout) as { items: Array<{ site: string; onramp: string; original: string }> };
  const sideBySide = page.items.filter((f) => f.original.startsWith('10.0.1.10:45000 '));
  assert.deepEqual(sideBySide.map((f) => `${f.site}/${f.onramp}`).sort(), ['site-a/site-a-wg', 'site-b/site-b-wg'], listed.stdout);

  // The same flows in the dashboard the daemon serves, in headless Chromium inside the edge namespace, opened
  // at the address `tether dashboard` prints (the token in the fragment).
  const dashboard = await withToken('dashboard', '--json');
  assert.equal(dashboard.code, 0, dashboard.stderr);
  const url = (JSON.parse(dashboard.stdout) as { url: string }).url;
  assert.match(url, /^http:\/\/127\.0\.0\.1:8470\/#token=/);
  const probe = await inNamespace(lab.names.edge, process.execPath, nodeTsArgs(join(import.meta.dirname, 'dashboard-probe.ts'), [url, join(lab.runDir, 'dashboard.png')]), { timeoutMs: 60_000 });
  assert.equal(probe.code, 0, probe.stderr);
  const rows = (JSON.parse(probe.stdout) as { rows: string[] }).rows.filter((r) => r.includes('10.0.1.10:45000'));
  assert.deepEqual(rows.map((r) => r.split(' ')[0]).sort(), ['site-a-wg', 'site-b-wg'], `the dashboard shows both sites' 10.0.1.10 side by side: ${JSON.stringify(rows)}`);

  const switched = await cli('onramps', 'site-b-wg', '--arr', 'off', '--token-file', tokenFile);
  assert.equal(switched.code, 0, switched.stderr);
  const noToken = await cli('onramps', 'site-a-wg', '--arr', 'off', '--token-file', '/nonexistent');
  assert.notEqual(noToken.code, 0, 'a change without the token is refused');
  const explained = await withToken('explain', '--json', '--onramp', 'site-b-wg', '--src', LAB.siteHost, '--dst', LAB.internet.server, '--sport', '45001', '--dport', '7');
  assert.equal((JSON.parse(explained.stdout) as { replies: { by: string } }).replies.by, 'routing-table', explained.stdout);
  const onramps = JSON.parse((await withToken('onramps', '--json')).stdout) as Array<{ name: string; automatic_return_routing: boolean }>;
  assert.deepEqual(onramps.filter((o) => o.name.startsWith('site-')).map((o) => [o.name, o.automatic_return_routing]).sort(), [['site-a-wg', true], ['site-b-wg', false], ['site-gre-2-tunnel', true], ['site-gre-tunnel', true]]);
});

test('with ARR off on the site onramps and both sites\' routes configured, replies go astray', async () => {
  await labDown({ prefix: PREFIX });
  const off = await labUp({ prefix: PREFIX, config: arrOffConfig() });
  const results = await udpRound({ 'site-a': off.names.siteA, 'site-b': off.names.siteB }, LAB.internet.server);
  const astray = results.reduce((n, r) => n + (REQUESTS_PER_SITE - r.own), 0);
  assert.ok(astray > 0, `expected answers to go to the wrong site without ARR: ${JSON.stringify(results)}`);
});
