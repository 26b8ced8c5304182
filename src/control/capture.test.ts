import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PacketBatch } from '../common/packet-batch.js';
import { buildIp, buildUdp, parsePacket } from '../wire/build.js';
import { arrOffConfig } from '../lab/demo.js';
import type { TetherConfig } from '../config/index.js';
import { apiRig } from '../../test/support/api.js';
import { registerCaptureRoutes, PCAPNG_CONTENT_TYPE } from './api-captures.js';
import { CaptureHub, DRAIN_INTERVAL_MS, MAX_CAPTURES, type CaptureTap, type OuterTap } from './capture.js';
import { NameBook } from './metrics.js';

const TOKEN = 'capture-token';
const HOST = '10.0.1.10';
const SERVER = '203.0.113.10';
const POOL = '198.51.100.1';

async function setup(config?: TetherConfig) {
  const rig = apiRig({ token: TOKEN, prefix: 'tether-capture-api-', config });
  let tap: CaptureTap | null = null;
  let outerTap: OuterTap | null = null;
  const attached: boolean[] = [];
  const hub = new CaptureHub({
    pipeline: rig.edge.pipeline,
    names: new NameBook(rig.edge.pipeline, rig.cfg, rig.ids),
    ids: () => rig.ids,
    attach: (t) => {
      tap = t;
      attached.push(t !== null);
    },
    attachOuter: (t) => {
      outerTap = t;
    },
    config: () => rig.cfg,
    now: () => rig.edge.now,
    timeOrigin: Date.UTC(2026, 0, 1),
  });
  registerCaptureRoutes(rig.app, hub);
  await rig.app.ready();
  const batch = new PacketBatch(4);
  /** One packet through the pipeline the way the edge's read loop runs it: tap before, process, tap after. */
  const send = (port: number, packet: Uint8Array) => {
    batch.clear();
    batch.push(packet, 0, packet.length, port);
    const t = tap;
    if (t !== null) t.before(batch, rig.edge.now);
    rig.edge.pipeline.process(batch, rig.edge.now);
    if (t !== null) t.after(batch, rig.edge.now, true);
    return { hop: batch.nextHop[0], out: parsePacket(batch.packet(0).slice()) };
  };
  const onramp = (name: string) => rig.ids.onramps.get(name)!;
  const underlay = new PacketBatch(4);
  /** One outer packet the way the underlay hands it over: read (before demux) or written (after sealing). */
  const outer = (packet: Uint8Array, sent: boolean) => {
    underlay.clear();
    underlay.push(packet, 0, packet.length, 0);
    const t = outerTap;
    if (t !== null) t.outer(underlay, null, 0, 1, sent);
  };
  return { rig, hub, send, outer, onramp, attached, isTapped: () => tap !== null, isOuterTapped: () => outerTap !== null };
}

/** Downloads the capture, checks the media type, and reads it back with tshark: one line per packet. */
async function tsharkLines(rig: Awaited<ReturnType<typeof setup>>['rig'], id: number): Promise<string[][]> {
  const res = await rig.inject({ method: 'GET', url: `/v1/captures/${id}/pcapng` });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], PCAPNG_CONTENT_TYPE);
  const file = join(rig.dir, `c${id}.pcapng`);
  writeFileSync(file, res.rawPayload);
  const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.interface_name', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'frame.comment'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.trim() === '' ? [] : out.trim().split('\n').map((l) => l.split('|'));
}

test('a capture of an onramp: each packet as received and as sent, with flow, onramp, next hop and why (routing table, ARR), read by tshark', async () => {
  const { rig, send, onramp, attached, isTapped } = await setup();
  try {
    const a = onramp('site-a-wg');
    const b = onramp('site-b-wg');
    send(a, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53 })); // before the capture: not in it
    assert.equal(isTapped(), false, 'no capture, no tap');
    const started = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg', filter: 'udp and host 203.0.113.10' } });
    assert.equal(started.statusCode, 201, started.body);
    const id = (started.json() as { id: number }).id;
    assert.equal(isTapped(), true);

    const out = send(a, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40001, dstPort: 53 }));
    assert.equal(out.out.src, POOL);
    send(b, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40001, dstPort: 53 })); // site-b: not selected
    send(a, buildUdp({ src: HOST, dst: '172.16.0.20' }, { srcPort: 5000, dstPort: 53 })); // site-a, filtered out
    const reply = send(0, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 53, dstPort: out.out.srcPort }));
    assert.equal(reply.hop, a);
    send(a, buildUdp({ src: HOST, dst: SERVER, ttl: 1 }, { srcPort: 40002, dstPort: 53 })); // dropped: TTL

    const status = (await rig.inject({ method: 'GET', url: `/v1/captures/${id}` })).json() as { packets: number; records: number; state: string };
    assert.deepEqual([status.packets, status.records, status.state], [3, 5, 'running']);
    const lines = await tsharkLines(rig, id);
    assert.equal(lines.length, 5, JSON.stringify(lines));
    const [reqIn, reqOut, repIn, repOut, dropped] = lines;
    assert.deepEqual(reqIn.slice(0, 5), ['onramp side', HOST, SERVER, '40001', '53']);
    assert.match(reqIn[5], /^received \(before rewrite\); flow 4-\d+ \(original direction\); in site-a-wg; out internet; routing table \(original direction/);
    assert.deepEqual(reqOut.slice(0, 3), ['outside side', POOL, SERVER], 'as sent: after source NAT');
    assert.match(reqOut[5], /^sent \(after rewrite\); flow 4-\d+/);
    const flow = /flow (4-\d+)/.exec(reqIn[5])![1];
    assert.deepEqual(repIn.slice(0, 3), ['outside side', SERVER, POOL]);
    assert.deepEqual(repOut.slice(0, 5), ['onramp side', SERVER, HOST, '53', '40001']);
    assert.match(repOut[5], new RegExp(`^sent \\(after rewrite\\); flow ${flow} \\(reply\\); in internet; out site-a-wg; ARR \\(return onramp recorded at setup\\)$`));
    assert.deepEqual(dropped.slice(0, 1), ['onramp side']);
    assert.match(dropped[5], /^received \(before rewrite\); in site-a-wg; dropped: ttl_exceeded$/);

    // The flow's own capture selects by flow id (404 for one that is not live).
    const byFlow = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { flow } });
    assert.equal(byFlow.statusCode, 201, byFlow.body);
    assert.equal((await rig.inject({ method: 'POST', url: '/v1/captures', payload: { flow: '4-65000' } })).statusCode, 404);

    const stopped = (await rig.inject({ method: 'POST', url: `/v1/captures/${id}/stop` })).json() as { state: string; stop_reason: string };
    assert.deepEqual([stopped.state, stopped.stop_reason], ['stopped', 'stopped']);
    assert.equal((await rig.inject({ method: 'DELETE', url: `/v1/captures/${(byFlow.json() as { id: number }).id}` })).statusCode, 204);
    assert.equal(isTapped(), false, 'no capture running: the tap is gone');
    assert.deepEqual(attached, [true, false]);
    assert.equal((await rig.inject({ method: 'GET', url: `/v1/captures/${id}/pcapng` })).statusCode, 200, 'a stopped capture stays for download');
  } finally {
    await rig.close();
  }
});

test('ARR off: replies go where the routing table says, and their comments say so', async () => {
  const { rig, send, onramp } = await setup(arrOffConfig());
  try {
    const a = onramp('site-a-wg');
    // Both sites' captures: without ARR a reply may go to either site (both route 10.0.1.0/24, ECMP by hash).
    const ids: number[] = [];
    for (const site of ['site-a', 'site-b']) {
      const started = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { site } });
      assert.equal(started.statusCode, 201, started.body);
      ids.push((started.json() as { id: number }).id);
    }
    const hops: number[] = [];
    for (let i = 0; i < 8; i++) {
      const out = send(a, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 41000 + i, dstPort: 7 }));
      hops.push(send(0, buildUdp({ src: SERVER, dst: POOL }, { srcPort: 7, dstPort: out.out.srcPort })).hop);
    }
    const lines = [...await tsharkLines(rig, ids[0]), ...await tsharkLines(rig, ids[1])];
    const replies = lines.filter((l) => l[5].startsWith('sent') && l[5].includes('(reply)'));
    assert.equal(replies.length, 8, JSON.stringify(lines));
    for (const r of replies) assert.match(r[5], /; in internet; out site-[ab]-wg; routing table \(a reply of a flow without ARR: routed by its destination\)$/);
    const astray = replies.filter((r) => r[5].includes('out site-b-wg'));
    assert.equal(astray.length, hops.filter((h) => h !== a).length, 'the comments name where each reply went');
  } finally {
    await rig.close();
  }
});

test('bad requests: a filter that does not parse names the column and token; one selection exactly; unknown names; the token is needed', async () => {
  const { rig } = await setup();
  try {
    const bad = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg', filter: 'udp and (port 53' } });
    assert.equal(bad.statusCode, 400);
    const problem = (bad.json() as { problems: Array<{ path: string; message: string }> }).problems[0];
    assert.equal(problem.path, 'filter');
    assert.match(problem.message, /^'\(' at column 9 is not closed: expected '\)' at column 17 \(end of the expression\)$/);
    const two = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg', site: 'site-a' } });
    assert.equal(two.statusCode, 400);
    assert.match(two.body, /choose exactly one of onramp, site or flow \(got onramp and site\)/);
    assert.equal((await rig.inject({ method: 'POST', url: '/v1/captures', payload: {} })).statusCode, 400);
    const unknown = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'nope' } });
    assert.match(unknown.body, /no onramp named nope/);
    assert.equal((await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg', count: 0 } })).statusCode, 400);
    assert.equal((await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg', secret: 1 } })).statusCode, 400);
    const noToken = await rig.app.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg' } });
    assert.equal(noToken.statusCode, 401);
    assert.equal((await rig.app.inject({ method: 'GET', url: '/v1/captures' })).statusCode, 401);
    assert.equal((await rig.inject({ method: 'GET', url: '/v1/captures/99' })).statusCode, 404);
    for (let i = 0; i < MAX_CAPTURES; i++) assert.equal((await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg' } })).statusCode, 201);
    const tooMany = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg' } });
    assert.equal(tooMany.statusCode, 409);
    assert.match(tooMany.body, /4 captures exist already/);
  } finally {
    await rig.close();
  }
});

test('bounded: a capture stops at its packet count, its file size and its duration, and says which; the rate limit skips and counts', async () => {
  const { rig, hub, send, onramp, isTapped } = await setup();
  try {
    const a = onramp('site-a-wg');
    const start = async (payload: object) => (await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg', ...payload } })).json() as { id: number };
    const status = async (id: number) => (await rig.inject({ method: 'GET', url: `/v1/captures/${id}` })).json() as { state: string; stop_reason: string | null; packets: number; bytes: number; rate_skipped: number };
    const byCount = await start({ count: 3 });
    const bySize = await start({ bytes: 2048 });
    const byTime = await start({ duration_s: 1 });
    const byRate = await start({ rate: 20 }); // a burst of 2 (one drain interval's worth), then 20 per second
    for (let i = 0; i < 10; i++) send(a, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 42000 + i, dstPort: 53, payload: new Uint8Array(200) }));
    const c = await status(byCount.id);
    assert.deepEqual([c.state, c.stop_reason, c.packets], ['stopped', 'count', 3]);
    const s = await status(bySize.id);
    assert.deepEqual([s.state, s.stop_reason], ['stopped', 'bytes']);
    assert.ok(s.bytes <= 2048, `the file stays within its limit: ${s.bytes}`);
    const r = await status(byRate.id);
    assert.deepEqual([r.packets, r.rate_skipped], [2, 8]);
    rig.edge.now += 1000;
    hub.tick(); // the drain timer also ends captures whose time is up when no packet comes
    const t = await status(byTime.id);
    assert.deepEqual([t.state, t.stop_reason], ['stopped', 'duration']);
    assert.ok(DRAIN_INTERVAL_MS > 0);
    // Refilled after a second: 20 more tokens at most (the burst caps it at 2).
    send(a, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 43000, dstPort: 53 }));
    assert.equal((await status(byRate.id)).packets, 3);
    await rig.inject({ method: 'POST', url: `/v1/captures/${byRate.id}/stop` });
    assert.equal(isTapped(), false);
  } finally {
    await rig.close();
  }
});

test('outer packets only when asked: the underlay rx/tx between the onramp\'s endpoints, on a third interface, with their comment', async () => {
  const { rig, send, outer, onramp, isOuterTapped } = await setup();
  // site-a-wg: device wg-a listens on 192.168.101.1:51820, its peer is 192.168.101.2:51820 (the lab's).
  const fromSite = buildUdp({ src: '192.168.101.2', dst: '192.168.101.1' }, { srcPort: 51820, dstPort: 51820, payload: new Uint8Array(32) });
  const toSite = buildUdp({ src: '192.168.101.1', dst: '192.168.101.2' }, { srcPort: 51820, dstPort: 51820, payload: new Uint8Array(48) });
  const otherSite = buildUdp({ src: '192.168.102.2', dst: '192.168.102.1' }, { srcPort: 51820, dstPort: 51820 });
  const otherPort = buildUdp({ src: '192.168.101.2', dst: '192.168.101.1' }, { srcPort: 51820, dstPort: 500 });
  const gre = buildIp({ src: '192.168.103.2', dst: '192.168.103.1' }, 47, new Uint8Array([0, 0, 0x08, 0]));
  const underlayRound = () => {
    for (const [p, sent] of [[fromSite, false], [toSite, true], [otherSite, false], [otherPort, false], [gre, false]] as const) outer(p, sent);
  };
  try {
    const inner = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg' } });
    assert.equal(inner.statusCode, 201, inner.body);
    assert.equal((inner.json() as { outer: boolean }).outer, false);
    assert.equal(isOuterTapped(), false, 'no outer capture: the underlay holds no tap');
    underlayRound();
    const withOuter = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-a-wg', outer: true } });
    assert.equal(withOuter.statusCode, 201, withOuter.body);
    assert.equal((withOuter.json() as { outer: boolean }).outer, true);
    assert.equal(isOuterTapped(), true);
    underlayRound();
    send(onramp('site-a-wg'), buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40001, dstPort: 53 }));
    const greOuter = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { onramp: 'site-gre-tunnel', outer: true, filter: 'not udp' } });
    underlayRound();

    const none = await tsharkLines(rig, (inner.json() as { id: number }).id);
    assert.ok(none.every((l) => l[0] !== 'underlay (outer)') && none.length === 2, JSON.stringify(none));
    const lines = await tsharkLines(rig, (withOuter.json() as { id: number }).id);
    const outerLines = lines.filter((l) => l[0] === 'underlay (outer)');
    assert.equal(outerLines.length, 4, JSON.stringify(lines));
    assert.deepEqual(outerLines[0].slice(0, 5), ['underlay (outer)', '192.168.101.2', '192.168.101.1', '51820', '51820']);
    assert.equal(outerLines[0][5], 'outer packet, underlay rx (as read, before demux); onramp site-a-wg; endpoints 192.168.101.1:51820 (edge) and 192.168.101.2');
    assert.deepEqual(outerLines[1].slice(1, 3), ['192.168.101.1', '192.168.101.2']);
    assert.match(outerLines[1][5], /^outer packet, underlay tx \(as written, after encapsulation\); onramp site-a-wg;/);
    assert.equal(lines.filter((l) => l[0] !== 'underlay (outer)').length, 2, 'the inner packets as before');
    const greLines = await tsharkLines(rig, (greOuter.json() as { id: number }).id);
    assert.deepEqual(greLines.map((l) => [l[0], l[1], l[2], l[5]]), [['underlay (outer)', '192.168.103.2', '192.168.103.1', 'outer packet, underlay rx (as read, before demux); onramp site-gre-tunnel; endpoints 192.168.103.1 (edge) and 192.168.103.2']]);
    for (const id of [1, 2, 3]) await rig.inject({ method: 'POST', url: `/v1/captures/${id}/stop` });
    assert.equal(isOuterTapped(), false, 'the outer tap goes with the last outer capture');
  } finally {
    await rig.close();
  }
});
