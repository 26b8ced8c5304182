import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildUdp } from '../wire/build.js';
import { apiRig } from '../../test/support/api.js';

const HOST = '10.0.1.10';
const SERVER = '203.0.113.10';

async function setup() {
  const rig = apiRig({ token: 'secret-token', metrics: true, prefix: 'tether-flows-api-' });
  await rig.app.ready();
  // Every call with the token, as the CLI and the dashboard send it.
  return { app: { inject: rig.inject }, edge: rig.edge, a: rig.ids.onramps.get('site-a-wg')!, b: rig.ids.onramps.get('site-b-wg')!, close: rig.close };
}

test('flows: both sites\' 10.0.1.10 side by side, filters, paging, one flow\'s decision trail', async () => {
  const { app, edge, a, b, close } = await setup();
  try {
    for (const onramp of [a, b]) edge.send(onramp, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53 }));
    edge.send(a, buildUdp({ src: HOST, dst: '172.16.0.20' }, { srcPort: 5000, dstPort: 80 }));
    const all = (await app.inject({ method: 'GET', url: '/v1/flows' })).json() as { total: number; items: Array<Record<string, unknown>> };
    assert.equal(all.total, 3);
    const internet = all.items.filter((f) => f.nextHop === 'internet');
    assert.deepEqual(internet.map((f) => [f.site, f.onramp]).sort(), [['site-a', 'site-a-wg'], ['site-b', 'site-b-wg']]);
    for (const f of internet) assert.match(String(f.original), /^10\.0\.1\.10:40000 -> 203\.0\.113\.10:53/);
    const onlyB = (await app.inject({ method: 'GET', url: '/v1/flows?site=site-b' })).json() as { total: number };
    assert.equal(onlyB.total, 1);
    const toDc = (await app.inject({ method: 'GET', url: '/v1/flows?dst=172.16.0.0/24&protocol=udp' })).json() as { total: number; items: Array<{ nextHop: string }> };
    assert.deepEqual([toDc.total, toDc.items[0].nextHop], [1, 'dc-link']);
    const page = (await app.inject({ method: 'GET', url: '/v1/flows?limit=1&offset=1' })).json() as { total: number; items: unknown[] };
    assert.deepEqual([page.total, page.items.length], [3, 1]);
    // Cursor paging: one flow a page, the last page's cursor null; every flow once.
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/flows?limit=1${cursor === null ? '' : `&cursor=${cursor}`}`;
      const p = (await app.inject({ method: 'GET', url })).json() as { items: Array<{ id: string }>; cursor: string | null };
      ids.push(...p.items.map((f) => f.id));
      cursor = p.cursor;
    } while (cursor !== null);
    assert.deepEqual(ids.sort(), all.items.map((f) => String(f.id)).sort());
    const badCursor = await app.inject({ method: 'GET', url: '/v1/flows?cursor=bm90LWEtY3Vyc29y' });
    assert.equal(badCursor.statusCode, 400);
    assert.equal((badCursor.json() as { problems: Array<{ path: string }> }).problems[0].path, 'cursor');
    const bad = await app.inject({ method: 'GET', url: '/v1/flows?src=10.0.1.300/24' });
    assert.equal(bad.statusCode, 400);
    assert.equal((bad.json() as { problems: Array<{ path: string }> }).problems[0].path, 'src');

    const id = String(internet[0].id);
    const one = (await app.inject({ method: 'GET', url: `/v1/flows/${id}` })).json() as { trail: string[]; arr: boolean };
    assert.equal(one.arr, true);
    assert.ok(one.trail.some((l) => /replies return by ARR/.test(l)), one.trail.join('\n'));
    assert.ok(one.trail.some((l) => /route for it in the table now: 0\.0\.0\.0\/0 -> the Internet/.test(l)), one.trail.join('\n'));
    assert.ok(one.trail.some((l) => /decided under the current policy \(epoch \d+\)/.test(l)), one.trail.join('\n'));
    // A policy change: the flow stays, decided under an older epoch until its next packet.
    const put = await app.inject({ method: 'PUT', url: '/v1/firewall', payload: { default_action: 'allow' } });
    assert.equal(put.statusCode, 200);
    const firewall = await app.inject({ method: 'POST', url: '/v1/firewall/rules', payload: { action: 'deny', destination_ports: [9] } });
    assert.equal(firewall.statusCode, 201, firewall.body);
    const stale = (await app.inject({ method: 'GET', url: `/v1/flows/${id}` })).json() as { trail: string[] };
    assert.ok(stale.trail.some((l) => /the policy changed since \(epoch \d+\): its next packet has it decided again/.test(l)), stale.trail.join('\n'));
    assert.equal((await app.inject({ method: 'GET', url: '/v1/flows/4-999' })).statusCode, 404);
  } finally {
    await close();
  }
});

test('explain, overlaps, stats and metrics over the API', async () => {
  const { app, edge, a, close } = await setup();
  try {
    edge.send(a, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 1234, dstPort: 53 }));
    const e = (await app.inject({ method: 'POST', url: '/v1/explain', payload: { onramp: 'site-b-wg', protocol: 'udp', src: HOST, dst: SERVER, src_port: 1234, dst_port: 53 } })).json() as { verdict: string; nextHop: string; trail: string[] };
    assert.equal(e.verdict, 'forward');
    assert.equal(e.nextHop, 'internet');
    assert.ok(e.trail.some((l) => /replies return to onramp site-b-wg/.test(l)), e.trail.join('\n'));
    const unknown = await app.inject({ method: 'POST', url: '/v1/explain', payload: { onramp: 'nope', protocol: 'udp', src: HOST, dst: SERVER } });
    assert.equal(unknown.statusCode, 400);

    const overlaps = (await app.inject({ method: 'GET', url: '/v1/overlaps' })).json() as { items: Array<{ prefix: string; onramps: Array<{ name: string }>; coveredByArr: boolean }> };
    const lan = overlaps.items.find((o) => o.prefix === '10.0.1.0/24')!;
    assert.ok(lan.onramps.length >= 3, JSON.stringify(lan));
    assert.equal(lan.coveredByArr, true);

    const stats = (await app.inject({ method: 'GET', url: '/v1/stats' })).json() as { onramps: Array<{ name: string; rxPackets: number; flowsActive: number }> };
    const siteA = stats.onramps.find((o) => o.name === 'site-a-wg')!;
    assert.deepEqual([siteA.rxPackets, siteA.flowsActive], [1, 1]);

    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.body, /tether_flows_created_total\{[^}]*onramp="site-a-wg"[^}]*\} 1/);
  } finally {
    await close();
  }
});
