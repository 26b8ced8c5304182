/**
 * Issue 8, "every onramp change applies live", end to end over real interfaces: the lab's edge and Internet
 * server, plus WireGuard sites this test builds itself (test/support/live-site.ts: their own namespaces and
 * wireguard-go, not part of the lab's startup configuration), configured through the daemon's API while it
 * runs. Root only: as in CI, it fails loudly, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { httpGet, inNamespace, LAB, udpExchange, type LabInfo } from '../../src/lab/index.js';
import { edgeApi, metric, newWgKeys, startLiveSite, type LiveSite } from '../support/live-site.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `l${(process.pid % 46656).toString(36)}`;
const DEVICE = 'wg-live';
/** The new device's endpoint, on the first new site's underlay (192.168.110.0/24). */
const LIVE_ENDPOINT = '192.168.110.1';
const SERVER_URL = `http://${LAB.internet.server}/`;
/** "Within seconds": the new site's first HTTP answer, from the moment the onramp's POST returned. */
const FIRST_TRAFFIC_LIMIT_MS = 10_000;
const KEEPALIVE_SECONDS = 1;

let lab: LabInfo;
const sites: LiveSite[] = [];
const edgeKeys = newWgKeys();

/** Polls `probe` until it is true or `limitMs` passes; returns the milliseconds it took, or -1. */
async function within(limitMs: number, probe: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if (await probe()) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 100));
  }
  return -1;
}

const served = async (site: LiveSite): Promise<boolean> => {
  try {
    return (await httpGet(site.ns, SERVER_URL, { timeoutMs: 1000 })).includes('"server":"inet"');
  } catch {
    return false;
  }
};
const echoed = async (site: LiveSite, payload: string, timeoutMs = 1500): Promise<boolean> =>
  (await udpExchange(site.ns, LAB.internet.server, LAB.echoPort, payload, { timeoutMs })).kind === 'reply';

function onramp(name: string, publicKey: string, allowedIps = [LAB.siteLan]): Record<string, unknown> {
  return { name, type: 'wireguard', site: 'site-live', automatic_return_routing: true, wireguard: { device: DEVICE, public_key: publicKey, allowed_ips: allowedIps } };
}

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX });
});

after(async () => {
  for (const s of sites) await s.stop();
});

test('a new WireGuard site added through the API (device, site, onramp) carries HTTP and UDP within seconds, with no restart', async () => {
  const device = await edgeApi(lab, 'POST', '/v1/wireguard/devices', { name: DEVICE, listen_address: LIVE_ENDPOINT, listen_port: LAB.wireguardPort, private_key: edgeKeys.privateKey });
  assert.equal(device.status, 201, JSON.stringify(device.body));
  assert.equal((await edgeApi(lab, 'POST', '/v1/sites', { name: 'site-live', prefixes: [LAB.siteLan] })).status, 201);
  const site = await startLiveSite(lab, 'lv1', 110, edgeKeys.publicKey, LIVE_ENDPOINT);
  sites.push(site);
  const created = await edgeApi(lab, 'POST', '/v1/onramps', onramp('site-live-wg', site.keys.publicKey));
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await site.startKeepalive(KEEPALIVE_SECONDS);
  const ms = await within(FIRST_TRAFFIC_LIMIT_MS, () => served(site));
  assert.ok(ms >= 0, `the new site got no HTTP answer within ${FIRST_TRAFFIC_LIMIT_MS} ms`);
  console.log(`# new WireGuard site: first HTTP answer ${ms} ms after the onramp was created`);
  assert.ok(await echoed(site, 'live udp'), 'and UDP');
});

test('narrowing allowed_ips through the API takes effect on the next packet (dropped and counted); widening it back restores traffic', async () => {
  const site = sites[0];
  assert.ok(await echoed(site, 'before'), 'traffic flows first');
  const before = await metric(lab, /^tether_drops_total\{.*reason="source_not_allowed"/);
  const narrowed = await edgeApi(lab, 'PATCH', '/v1/onramps/site-live-wg', { wireguard: { allowed_ips: ['10.0.2.0/24'] } });
  assert.equal(narrowed.status, 200, JSON.stringify(narrowed.body));
  assert.equal(await echoed(site, 'narrowed', 800), false, 'the very next datagram from 10.0.1.10 is refused');
  assert.ok(await metric(lab, /^tether_drops_total\{.*reason="source_not_allowed"/) > before, 'and counted');
  assert.equal((await edgeApi(lab, 'PATCH', '/v1/onramps/site-live-wg', { wireguard: { allowed_ips: [LAB.siteLan] } })).status, 200);
  assert.ok(await echoed(site, 'widened'), 'the next datagram after widening is answered');
});

test('deleting the onramp stops its traffic within a second: its flows end, its packets are dropped and counted', async () => {
  const site = sites[0];
  assert.ok(await echoed(site, 'still here'));
  const endedBefore = await metric(lab, /^tether_flows_ended_onramp_removed_total/);
  const deleted = await edgeApi(lab, 'DELETE', '/v1/onramps/site-live-wg');
  assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
  assert.equal(await echoed(site, 'after delete', 1000), false, 'nothing comes back within a second of the delete');
  assert.equal(await served(site), false);
  assert.ok(await metric(lab, /^tether_flows_ended_onramp_removed_total/) > endedBefore, 'its flows ended at once');
  const revoked = await within(5000, async () => (await metric(lab, /^tether_edge_events_total\{event="wg_peer_removed"\}/)) > 0);
  assert.ok(revoked >= 0, 'the removed peer\'s datagrams are dropped and counted (wg_peer_removed)');
});

test('a different peer added under a new name gets a new id and never reaches the old one, whose packets stay dropped and counted', async () => {
  const old = sites[0];
  const list = (await edgeApi(lab, 'GET', '/v1/onramps')).body as Array<{ id: number; name: string }>;
  const highest = Math.max(...list.map((o) => o.id));
  const site = await startLiveSite(lab, 'lv2', 111, edgeKeys.publicKey, LIVE_ENDPOINT);
  sites.push(site);
  const created = await edgeApi(lab, 'POST', '/v1/onramps', onramp('site-live-2-wg', site.keys.publicKey));
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.ok((created.body as { id: number }).id > highest, `ids only grow: ${JSON.stringify(created.body)} after ${highest}`);
  await site.startKeepalive(KEEPALIVE_SECONDS);
  const oldRx = await old.rxBytes();
  const droppedBefore = await metric(lab, /^tether_edge_events_total\{event="wg_peer_removed"\}/);
  assert.ok(await within(FIRST_TRAFFIC_LIMIT_MS, () => served(site)) >= 0, 'the new peer carries traffic');
  assert.ok(await echoed(site, 'new peer'));
  assert.equal(await echoed(old, 'old peer', 1000), false, 'the old peer still gets nothing');
  await new Promise((r) => setTimeout(r, (KEEPALIVE_SECONDS + 1) * 1000));
  assert.equal(await old.rxBytes(), oldRx, 'not one byte went to the old peer');
  assert.ok(await metric(lab, /^tether_edge_events_total\{event="wg_peer_removed"\}/) > droppedBefore, 'the old peer\'s datagrams keep being dropped and counted');
});

test('a change the kernel refuses is rolled back: 409 naming the onramp and the reason; the store and the running edge are as before', async () => {
  const before = (await edgeApi(lab, 'GET', '/v1/config')).body;
  const rules = (await inNamespace(lab.names.edge, 'ip', ['rule'])).stdout;
  const refused = await edgeApi(lab, 'POST', '/v1/onramps', { name: 'dc-typo', type: 'interconnect', site: 'site-live', automatic_return_routing: false, interconnect: { link: 'veth-nosuch' } });
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  const problem = (refused.body as { problems: Array<{ message: string }> }).problems[0];
  assert.match(problem.message, /onramp dc-typo: link veth-nosuch does not exist/);
  assert.deepEqual((await edgeApi(lab, 'GET', '/v1/config')).body, before, 'the store is unchanged');
  assert.equal((await inNamespace(lab.names.edge, 'ip', ['rule'])).stdout, rules, 'no rule was left behind');
  assert.ok(await echoed(sites[1], 'still fine'), 'the running edge still carries traffic');
  const recreated = await edgeApi(lab, 'POST', '/v1/sites', { name: 'site-after' });
  assert.equal(recreated.status, 201);
});
