// Observability across lanes without threads (docs/ARCHITECTURE.md "Lanes"): lane 0 is the API rig's pipeline,
// lane 1 a second pipeline answered by a LaneObserver over a real MessageChannel, through the same LaneRequests
// lane 0's LaneHost uses. The merged listing is checked against each lane's own table (the oracle), and a lane that
// never answers gives a clear error, not a hang.
import assert from 'node:assert/strict';
import { MessageChannel } from 'node:worker_threads';
import { test } from 'node:test';
import { assignIds, toPipelineConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { buildUdp } from '../wire/build.js';
import { apiRig } from '../../test/support/api.js';
import { PipelineRig } from '../../test/support/pipeline-rig.js';
import { LaneUnanswered } from '../control/lane-view.js';
import { LANE_FLOW_STRIDE } from '../control/flow-walk.js';
import { LaneObserver, laneCaptures, laneFlowLog, laneFlowSource } from './lane-observe.js';
import { FlowLogger } from '../control/flow-log.js';
import { Writable } from 'node:stream';
import { LaneHost, LaneRequests, type LaneMessage, type LaneObservation, type LaneQuery } from './lanes.js';
import { CaptureHub, type CaptureTap } from '../control/capture.js';
import { registerCaptureRoutes } from '../control/api-captures.js';
import { NameBook } from '../control/metrics.js';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SERVER = '203.0.113.10';
/** A short deadline keeps the unanswered case quick (the answering lane keeps the daemon's: its walks yield). */
const TEST_TIMEOUT_MS = 300;

/** Lane 1: its own pipeline, and a LaneObserver answering on the far end of a MessageChannel (as its worker does). */
function laneOne(answering: boolean): { rig: PipelineRig; host: LaneObservation; close(): void } {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const rig = new PipelineRig({ ...toPipelineConfig(cfg, ids), lane: { index: 1, count: 2 } });
  const { port1, port2 } = new MessageChannel();
  const lane = { pipeline: rig.pipeline, ids, laneIndex: 1, setCaptureTap: (tap: CaptureTap | null) => { rig.tap = tap; } };
  const observer = new LaneObserver(lane, cfg, (m) => port2.postMessage(m), () => rig.now);
  if (answering) port2.on('message', (m: LaneMessage) => observer.handle(m));
  const requests = answering ? new LaneRequests() : new LaneRequests(TEST_TIMEOUT_MS, TEST_TIMEOUT_MS);
  const listeners: Array<(lane: number, m: LaneMessage) => void> = [];
  port1.on('message', (m: LaneMessage) => {
    if (m.kind === 'answer') requests.answered(m);
    else for (const fn of listeners) fn(1, m);
  });
  const host: LaneObservation = {
    count: 2,
    ask: <T>(k: number, query: LaneQuery) => requests.ask<T>(k, port1, query),
    counters: () => [observer.counters()],
    post: (m) => port1.postMessage(m),
    listen: (fn) => listeners.push(fn),
  };
  return { rig, host, close: () => { observer.close(); port1.close(); port2.close(); } };
}

test('lanes: listing, paging, lookup by id, /v1/stats and /metrics cover lane 1', async () => {
  const one = laneOne(true);
  const rig = apiRig({ token: 't', metrics: true, prefix: 'tether-lane-observe-', lanes: laneFlowSource(one.host), lane: { index: 0, count: 2 } });
  await rig.app.ready();
  try {
    const a = rig.ids.onramps.get('site-a-wg')!;
    const b = rig.ids.onramps.get('site-b-wg')!;
    // Overlapping sites (both 10.0.1.10): lane 0 gets three flows of site a, lane 1 two of site b.
    for (let k = 0; k < 3; k++) rig.edge.send(a, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 40000 + k, dstPort: 53 }));
    for (let k = 0; k < 2; k++) one.rig.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 40000 + k, dstPort: 53 }));
    const all = (await rig.inject({ method: 'GET', url: '/v1/flows' })).json() as { total: number; items: Array<{ id: string; site: string; onramp: string }>; cursor: string | null };
    assert.equal(all.total, 5);
    assert.equal(all.cursor, null);
    const bySite = (site: string): string[] => all.items.filter((f) => f.site === site).map((f) => f.id);
    assert.equal(bySite('site-a').length, 3);
    assert.equal(bySite('site-b').length, 2);
    // Lane 1's ids carry the lane above the slot; lane 0's are its slots.
    for (const id of bySite('site-b')) assert.ok(Number(id.split('-')[1]) >= LANE_FLOW_STRIDE, id);
    for (const id of bySite('site-a')) assert.ok(Number(id.split('-')[1]) < LANE_FLOW_STRIDE, id);
    // Paging one flow at a time walks both lanes, every flow once.
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/flows?limit=1${cursor === null ? '' : `&cursor=${cursor}`}`;
      const p = (await rig.inject({ method: 'GET', url })).json() as { items: Array<{ id: string }>; cursor: string | null };
      paged.push(...p.items.map((f) => f.id));
      cursor = p.cursor;
    } while (cursor !== null);
    assert.deepEqual(paged.sort(), all.items.map((f) => f.id).sort());
    // Filters and offset apply to the merged result.
    const onlyB = (await rig.inject({ method: 'GET', url: '/v1/flows?site=site-b' })).json() as { total: number; items: unknown[] };
    assert.deepEqual([onlyB.total, onlyB.items.length], [2, 2]);
    const skip = (await rig.inject({ method: 'GET', url: '/v1/flows?offset=3&limit=5' })).json() as { items: Array<{ site: string }> };
    assert.deepEqual(skip.items.map((f) => f.site), ['site-b', 'site-b']);
    // One flow of lane 1 with its trail.
    const id = bySite('site-b')[0];
    const flow = await rig.inject({ method: 'GET', url: `/v1/flows/${id}` });
    assert.equal(flow.statusCode, 200, flow.body);
    const body = flow.json() as { id: string; onramp: string; trail: string[] };
    assert.equal(body.id, id);
    assert.equal(body.onramp, 'site-b-wg');
    assert.ok(body.trail.some((l) => /owned by lane 1/.test(l)), body.trail.join('\n'));
    assert.equal((await rig.inject({ method: 'GET', url: `/v1/flows/4-${LANE_FLOW_STRIDE + 999}` })).statusCode, 404);
    assert.equal((await rig.inject({ method: 'GET', url: `/v1/flows/4-${2 * LANE_FLOW_STRIDE}` })).statusCode, 404, 'no lane 2');
    // Counters: lane 0's plus lane 1's, under the same names and labels.
    const stats = (await rig.inject({ method: 'GET', url: '/v1/stats' })).json() as { flows: { ipv4: number }; onramps: Array<{ name: string; rxPackets: number; flowsActive: number }> };
    assert.equal(stats.flows.ipv4, 5);
    const row = (name: string) => stats.onramps.find((o) => o.name === name)!;
    assert.deepEqual([row('site-a-wg').rxPackets, row('site-b-wg').rxPackets, row('site-b-wg').flowsActive], [3, 2, 2]);
    const metrics = (await rig.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /tether_packets_total\{onramp="site-b-wg",direction="rx"\} 2/);
    assert.match(metrics, /tether_packets_total\{onramp="internet",direction="tx"\} 5/);
    assert.match(metrics, /tether_flow_table_flows\{family="ipv4"\} 5/);
    // The NAT pool's slices add up to the whole range, the ports in use to both lanes'.
    const used = /tether_nat_ports_in_use\{address="198\.51\.100\.1",protocol="udp"\} (\d+)/.exec(metrics);
    assert.equal(used?.[1], '5', metrics);
    // The pipeline's other counters too: rule hits (the default action decided all five setups) and the edge's own
    // ICMP errors (a probe whose TTL runs out on lane 1).
    assert.match(metrics, /tether_firewall_rule_hits_total\{rule_id="0",rule="default"\} 5/);
    one.rig.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER, ttl: 1 }, { srcPort: 41000, dstPort: 33434 }));
    const after = (await rig.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(after, /tether_icmp_errors_sent_total\{type="time_exceeded"\} 1/);
  } finally {
    await rig.close();
    one.close();
  }
});

test('lanes: a lane that does not answer gives a 503 naming it, not a hang', async () => {
  const one = laneOne(false);
  const rig = apiRig({ token: 't', prefix: 'tether-lane-observe-', lanes: laneFlowSource(one.host), lane: { index: 0, count: 2 } });
  await rig.app.ready();
  try {
    const list = await rig.inject({ method: 'GET', url: '/v1/flows' });
    assert.equal(list.statusCode, 503, list.body);
    const problem = list.json() as { error: string; problems: Array<{ path: string; message: string }> };
    assert.equal(problem.problems[0].path, 'lanes[1]');
    assert.match(problem.problems[0].message, /lane 1 did not answer \(walk\) within 300 ms/);
    const one1 = await rig.inject({ method: 'GET', url: `/v1/flows/4-${LANE_FLOW_STRIDE}` });
    assert.equal(one1.statusCode, 503, one1.body);
    // The next listing is admitted: the stuck lane held nothing of lane 0's.
    assert.equal((await rig.inject({ method: 'GET', url: '/v1/flows?family=6&limit=1' })).statusCode, 503);
  } finally {
    await rig.close();
    one.close();
  }
});

test('LaneRequests: answers matched by id, late and unknown answers ignored, a silent port times out', async () => {
  const posted: LaneMessage[] = [];
  const requests = new LaneRequests(TEST_TIMEOUT_MS, TEST_TIMEOUT_MS);
  const port = { postMessage: (m: LaneMessage) => posted.push(m) };
  const first = requests.ask<string>(1, port, { what: 'flow', family: 4, slot: 1 });
  const second = requests.ask<string>(2, port, { what: 'flow', family: 4, slot: 2 });
  const [q1, q2] = posted as Array<Extract<LaneMessage, { kind: 'ask' }>>;
  requests.answered({ id: q2.id, value: 'two' });
  requests.answered({ id: 9999, value: 'nobody asked' });
  requests.answered({ id: q1.id, error: 'table gone' });
  assert.equal(await second, 'two');
  await assert.rejects(first, /lane 1 could not answer \(flow\): table gone/);
  const silent = requests.ask(3, port, { what: 'walk', request: { family: 4, slot: 0, filter: { ports: null, zone: -1, protocol: -1, established: -1, src: null, dst: null }, limit: 1, maxSlots: 1 } });
  await assert.rejects(silent, (e: unknown) => e instanceof LaneUnanswered && e.lane === 3 && /lane 3 did not answer \(walk\)/.test(e.message));
  requests.answered({ id: (posted[2] as { id: number }).id, value: 'too late' });
  assert.equal(requests.waiting, 0);
  // A lane whose thread ended: its questions fail at once.
  const gone = requests.ask(4, port, { what: 'flow', family: 6, slot: 0 });
  requests.failAll(4);
  await assert.rejects(gone, LaneUnanswered);
});

test('lanes: a capture taps every lane, one pcapng; a flow of lane 1 is captured by id on its lane', async () => {
  const one = laneOne(true);
  const lanes = laneFlowSource(one.host);
  const rig = apiRig({ token: 't', prefix: 'tether-lane-observe-', lanes, lane: { index: 0, count: 2 } });
  const capture = laneCaptures(one.host);
  const hub = new CaptureHub({
    pipeline: rig.edge.pipeline,
    names: new NameBook(rig.edge.pipeline, rig.cfg, rig.ids),
    ids: () => rig.ids,
    attach: (tap) => { rig.edge.tap = tap; },
    now: () => rig.edge.now,
    lanes: capture.lanes,
  });
  capture.attach(hub);
  registerCaptureRoutes(rig.app, hub, lanes);
  await rig.app.ready();
  try {
    const b = rig.ids.onramps.get('site-b-wg')!;
    const started = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { site: 'site-b', filter: 'udp' } });
    assert.equal(started.statusCode, 201, started.body);
    const id = (started.json() as { id: number }).id;
    // The start message reaches lane 1 before its packets do (a turn of the event loop: the channel is async).
    await waitFor(() => one.rig.tap !== null, 'lane 1 tapped');
    rig.edge.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 41000, dstPort: 53 }));
    one.rig.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 41001, dstPort: 53 }));
    one.rig.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 41002, dstPort: 53 }));
    await waitFor(async () => ((await rig.inject({ method: 'GET', url: `/v1/captures/${id}` })).json() as { packets: number }).packets === 3, 'both lanes\' packets in the capture');
    const stopped = (await rig.inject({ method: 'POST', url: `/v1/captures/${id}/stop` })).json() as { packets: number; records: number };
    assert.deepEqual([stopped.packets, stopped.records], [3, 6], 'each packet as received and as sent');
    assert.equal(one.rig.tap, null, 'lane 1 untapped once the capture stopped');
    const flows = tshark(await rig.inject({ method: 'GET', url: `/v1/captures/${id}/pcapng` }), rig.dir, 'all');
    const ids = new Set(flows.map((l) => /flow (4-\d+)/.exec(l)?.[1]));
    assert.equal(ids.size, 3, flows.join('\n'));
    assert.equal([...ids].filter((f) => Number(f!.split('-')[1]) >= LANE_FLOW_STRIDE).length, 2, 'two flows of lane 1, by their API ids');

    // One flow of lane 1, by the id /v1/flows gives it.
    const list = (await rig.inject({ method: 'GET', url: '/v1/flows?site=site-b' })).json() as { items: Array<{ id: string; original: string }> };
    const flow = list.items.find((f) => f.original.includes(':41002 '))!;
    const byFlow = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { flow: flow.id } });
    assert.equal(byFlow.statusCode, 201, byFlow.body);
    const flowCapture = (byFlow.json() as { id: number }).id;
    await waitFor(() => one.rig.tap !== null, 'lane 1 tapped for the flow');
    one.rig.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 41001, dstPort: 53 }));
    one.rig.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 41002, dstPort: 53 }));
    await waitFor(async () => ((await rig.inject({ method: 'GET', url: `/v1/captures/${flowCapture}` })).json() as { packets: number }).packets === 1, 'the flow\'s packet');
    await rig.inject({ method: 'POST', url: `/v1/captures/${flowCapture}/stop` });
    const lines = tshark(await rig.inject({ method: 'GET', url: `/v1/captures/${flowCapture}/pcapng` }), rig.dir, 'flow');
    assert.equal(lines.length, 2);
    for (const l of lines) assert.match(l, new RegExp(`flow ${flow.id} `));
    const gone = await rig.inject({ method: 'POST', url: '/v1/captures', payload: { flow: `4-${LANE_FLOW_STRIDE + 12345}` } });
    assert.equal(gone.statusCode, 404, gone.body);
  } finally {
    hub.close();
    await rig.close();
    one.close();
  }
});

/** Polls `check` (behaviour, not time: the bound only ends a broken run). */
async function waitFor(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let k = 0; k < 200; k++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`never: ${what}`);
}

/** The pcapng's comments, one per record, read by tshark. */
function tshark(res: { statusCode: number; rawPayload: Buffer }, dir: string, name: string): string[] {
  assert.equal(res.statusCode, 200);
  const file = join(dir, `${name}.pcapng`);
  writeFileSync(file, res.rawPayload);
  const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.trim() === '' ? [] : out.trim().split('\n');
}

test('lanes: a lane\'s flow log reaches lane 0\'s destination as whole lines, one write per chunk, counted', async () => {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const lane1 = new PipelineRig({ ...toPipelineConfig(cfg, ids), lane: { index: 1, count: 2 } });
  const messages: LaneMessage[] = [];
  const observer = new LaneObserver({ pipeline: lane1.pipeline, ids, laneIndex: 1, setCaptureTap: () => undefined }, cfg, (m) => messages.push(m), () => lane1.now);
  const writes: string[] = [];
  const destination = new Writable({ write: (chunk: Buffer, _e, done) => { writes.push(chunk.toString()); done(); } });
  const lane0 = new PipelineRig(toPipelineConfig(cfg, ids));
  const log = new FlowLogger({ pipeline: lane0.pipeline, destination, flushIntervalMs: 0 });
  const listeners: Array<(lane: number, m: LaneMessage) => void> = [];
  // Lane 0's flow log tells the lanes to log (flowLogStart) and takes their chunks.
  laneFlowLog({ count: 2, ask: () => Promise.reject(new Error('unused')), counters: () => [], post: (m) => observer.handle(m), listen: (fn) => listeners.push(fn) }, log);
  const b = ids.onramps.get('site-b-wg')!;
  for (let k = 0; k < 3; k++) lane1.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 42000 + k, dstPort: 53 }));
  // The flows end (expired) on lane 1; its logger's flush sends one chunk.
  lane1.advance(10 * 60 * 1000);
  observer.close();
  await new Promise((r) => setImmediate(r));
  const chunks = messages.filter((m): m is Extract<LaneMessage, { kind: 'flowLog' }> => m.kind === 'flowLog');
  assert.equal(chunks.length, 1);
  for (const m of chunks) for (const fn of listeners) fn(1, m);
  assert.equal(writes.length, 1, 'one write for the chunk');
  assert.ok(writes[0].endsWith('\n'));
  const lines = writes[0].trim().split('\n').map((l) => JSON.parse(l) as { src_port: number; onramp: string });
  assert.deepEqual(lines.map((l) => l.src_port).sort(), [42000, 42001, 42002]);
  assert.ok(lines.every((l) => l.onramp === 'site-b-wg'));
  assert.equal(log.linesWritten, 3);
  await log.close();
});

test('lanes: on shutdown lane 0 has every lane flush its flow log before closing it (flows lane 1 ended just before are in it); a silent lane is named, no hang', async () => {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const one = laneOne(true);
  const writes: string[] = [];
  const destination = new Writable({ write: (chunk: Buffer, _e, done) => { writes.push(chunk.toString()); done(); } });
  const log = new FlowLogger({ pipeline: new PipelineRig(toPipelineConfig(cfg, ids)).pipeline, destination, flushIntervalMs: 0 });
  try {
    const flush = laneFlowLog(one.host, log);
    // flowLogStart crosses the channel: lane 1 logs once its logger hooks the pipeline's flow ends.
    for (let waited = 0; one.rig.pipeline.onFlowEnd === null; waited++) {
      assert.ok(waited < 1000, 'lane 1 started its flow log');
      await new Promise((r) => setTimeout(r, 5));
    }
    const b = ids.onramps.get('site-b-wg')!;
    for (let k = 0; k < 3; k++) one.rig.send(b, buildUdp({ src: '10.0.1.10', dst: SERVER }, { srcPort: 43000 + k, dstPort: 53 }));
    // The flows end on lane 1; its logger holds their lines until its next flush (250 ms), and the daemon stops now.
    one.rig.advance(10 * 60 * 1000);
    assert.deepEqual(await flush(), [], 'lane 1 answered');
    // Its chunk came before its answer (one port, in order): in the log now, before the log closes.
    await log.close();
    const lines = writes.join('').trim().split('\n').map((l) => JSON.parse(l) as { src_port: number });
    assert.deepEqual(lines.map((l) => l.src_port).sort(), [43000, 43001, 43002]);
  } finally {
    one.close();
  }
  // A lane that never answers: the flush gives up at the lookup deadline and names it.
  const stuck = laneOne(false);
  try {
    const other = new FlowLogger({ pipeline: new PipelineRig(toPipelineConfig(cfg, ids)).pipeline, destination: new Writable({ write: (_c, _e, done) => done() }), flushIntervalMs: 0 });
    assert.deepEqual(await laneFlowLog(stuck.host, other)(), [1]);
    await other.close();
  } finally {
    stuck.close();
  }
});

test('lanes: a packet the pipeline hands to another lane is not tapped where it was read (its owner taps it with its decision: once in the file)', () => {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const directory = LaneHost.directory(2);
  const [zero, one] = [0, 1].map((index) => new PipelineRig({ ...toPipelineConfig(cfg, ids), lane: { index, count: 2, directory } }));
  const hub = new CaptureHub({
    pipeline: one.pipeline,
    names: new NameBook(one.pipeline, cfg, ids),
    ids: () => ids,
    attach: (tap) => { one.tap = tap; },
    now: () => one.now,
    lane: 1,
  });
  try {
    const a = ids.onramps.get('site-a-wg')!;
    const dc = ids.onramps.get('dc-link')!;
    // Lane 0 sets up a flow from site a to a data-center host (no NAT: the flow's key goes into the directory).
    const dcHost = '172.16.0.20';
    assert.equal(zero.send(a, buildUdp({ src: '10.0.1.10', dst: dcHost }, { srcPort: 5000, dstPort: 7 })).hop, dc);
    const session = hub.start({ onramp: 'dc-link' });
    // The data center's reply, read by lane 1: handed to lane 0 (not forwarded, not dropped here); lane 1 does not tap it.
    const reply = one.send(dc, buildUdp({ src: dcHost, dst: '10.0.1.10' }, { srcPort: 7, dstPort: 5000 }));
    assert.equal(one.pipeline.lanes!.count, 1, 'listed for lane 0');
    assert.deepEqual([reply.hop, reply.drop], [-1, 0]);
    assert.equal(session.packets, 0, 'the handed packet is lane 0\'s to tap');
    // A packet lane 1 decides itself is tapped as before.
    assert.equal(one.send(a, buildUdp({ src: '10.0.1.10', dst: dcHost }, { srcPort: 41000, dstPort: 7 })).hop, dc);
    assert.equal(session.packets, 1);
  } finally {
    hub.close();
  }
});
