/**
 * Flow logs on a real pipeline: flows end (expired on an advanced clock, deleted), and each
 * produces exactly one JSON line with the flow's tuple, translation, names, counters and verdicts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { buildTcp, buildUdp } from '../wire/build.js';
import { TCP_SYN } from '../wire/constants.js';
import { PipelineRig } from '../../test/support/pipeline-rig.js';
import { A_PRIMARY, DC_ONRAMP, DC_SERVER, HOST, twoSites } from '../../test/support/topology.js';
import { assignIds, toPipelineConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { FLOW_LOG_FILE_MODE, FlowLogger, flowLoggerFor, type FlowLogLine } from './flow-log.js';
import { NameBook } from './metrics.js';
import { GatewayPolicy, NameSource } from '../gateway/policy.js';
import { Firewall } from '../policy/firewall.js';
import { Drop } from '../common/drop-reasons.js';

const SERVER = '203.0.113.10';
const POOL = '198.51.100.1';
const WALL = Date.UTC(2025, 0, 2, 3, 4, 5);
const SECOND = 1000;

/** A writable that keeps what it is given. */
class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.text += chunk.toString('utf8');
    done();
  }

  lines(): FlowLogLine[] {
    assert.ok(this.text === '' || this.text.endsWith('\n'), 'lines end with a newline');
    return this.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as FlowLogLine);
  }
}

function lab(): { edge: PipelineRig; names: NameBook; ids: ReturnType<typeof assignIds> } {
  const cfg = defaultConfig();
  const ids = assignIds(cfg);
  const edge = new PipelineRig(toPipelineConfig(cfg, ids));
  return { edge, names: new NameBook(edge.pipeline, cfg, ids), ids };
}

function logger(edge: PipelineRig, destination: Writable | string, extra: Partial<ConstructorParameters<typeof FlowLogger>[0]> = {}): FlowLogger {
  const log = new FlowLogger({ pipeline: edge.pipeline, destination, clock: () => edge.now, wallClock: () => WALL, flushIntervalMs: 0, ...extra });
  log.start();
  return log;
}

test('an expired NAT flow: exactly one well-formed line with tuple, translation, names, counters, duration and verdicts', async () => {
  const { edge, names, ids } = lab();
  const A = ids.onramps.get('site-a-wg')!;
  const sink = new Sink();
  const log = logger(edge, sink, { names });
  const created = edge.now;
  const out = buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 443, payload: new Uint8Array(50) });
  const sent = edge.send(A, out);
  assert.equal(sent.hop, 0);
  edge.now += 2 * SECOND;
  const reply = buildUdp({ src: SERVER, dst: POOL }, { srcPort: 443, dstPort: sent.parsed.srcPort, payload: new Uint8Array(700) });
  assert.equal(edge.send(0, reply).hop, A);
  edge.now += 3 * SECOND;
  edge.send(A, out);

  edge.advance(60 * SECOND);
  assert.equal(log.flush(), 0, 'alive: nothing to log yet');
  // UDP established idle timeout: 5 minutes after the last packet. The clock jumps well past it.
  edge.advance(20 * 60 * SECOND);
  assert.equal(log.pending, 1);
  assert.equal(log.flush(), 1);
  await log.close();

  const lines = sink.lines();
  assert.equal(lines.length, 1);
  const line = lines[0];
  const lastPacket = created + 5 * SECOND;
  // The flow ended at its deadline, not when the late sweep found it.
  const duration = Math.floor((lastPacket + 5 * 60 * SECOND) / SECOND) - Math.floor(created / SECOND);
  assert.deepEqual(line, {
    time: new Date(WALL - (edge.now - (lastPacket + 5 * 60 * SECOND))).toISOString(),
    event: 'flow_end',
    reason: 'expired',
    family: 4,
    protocol: 'udp',
    src: HOST,
    src_port: 40000,
    dst: SERVER,
    dst_port: 443,
    translated: { src: POOL, src_port: sent.parsed.srcPort, dst: SERVER, dst_port: 443 },
    zone: ids.sites.get('site-a'),
    site: 'site-a',
    onramp: 'site-a-wg',
    return_onramp: 'site-a-wg',
    next_hop: 'internet',
    rule: 0,
    packets_orig: 2,
    packets_reply: 1,
    bytes_orig: 2 * out.length,
    bytes_reply: reply.length,
    duration_s: duration,
    established: true,
    arr: true,
    nat: true,
    clash: false,
    hairpin: false,
  });
  assert.equal(line.duration_s, 305);
  // Key order is fixed: the optional fields sit where the documentation lists them.
  assert.deepEqual(Object.keys(line).slice(0, 10), ['time', 'event', 'reason', 'family', 'protocol', 'src', 'src_port', 'dst', 'dst_port', 'translated']);
  assert.equal(edge.pipeline.onFlowEnd, null, 'close() unhooks');
});

test('a deleted IPv6 flow and a TCP flow without ARR: family, text addresses, state, no return onramp', async () => {
  const edge = new PipelineRig(twoSites({ arr: false }));
  const sink = new Sink();
  const log = logger(edge, sink);
  const v6 = edge.send(A_PRIMARY, buildUdp({ src: 'fd00:1::10', dst: '2001:db8:0:0:0:0:0:1' }, { srcPort: 5353, dstPort: 53 }));
  assert.equal(v6.hop, 0);
  const syn = edge.send(A_PRIMARY, buildTcp({ src: HOST, dst: DC_SERVER }, { srcPort: 41000, dstPort: 22, seq: 1, flags: TCP_SYN }));
  assert.equal(syn.hop, DC_ONRAMP);
  edge.now += 1500;
  edge.pipeline.flows6.delete(0);
  edge.pipeline.flows4.delete(0);
  assert.equal(log.flush(), 2);
  await log.close();
  const [udp, tcp] = sink.lines();
  assert.equal(udp.reason, 'deleted');
  assert.equal(udp.family, 6);
  assert.equal(udp.src, 'fd00:1::10');
  assert.equal(udp.dst, '2001:db8::1');
  assert.equal(udp.translated?.src, '2001:db8:ee::1');
  assert.equal(udp.onramp, 'onramp-1');
  assert.equal(udp.site, '1', 'no configuration: the site id');
  assert.equal(udp.return_onramp, null, 'ARR off: the routing table picks the reply path');
  assert.equal(udp.arr, false);
  assert.equal(udp.established, false);
  assert.equal(udp.tcp_state, undefined);
  assert.equal(udp.duration_s, 1);
  assert.equal(tcp.protocol, 'tcp');
  assert.equal(tcp.tcp_state, 'syn_sent');
  assert.equal(tcp.next_hop, 'onramp-9');
  assert.equal(tcp.translated, undefined, 'not translated: no translated tuple');
  assert.equal(tcp.nat, false);
  assert.equal(tcp.packets_orig, 1);
  assert.equal(tcp.packets_reply, 0);
});

test('bounded: a full ring drops and counts; a destination that does not drain sheds lines', async () => {
  const edge = new PipelineRig(twoSites());
  const sink = new Sink();
  const log = logger(edge, sink, { capacity: 2 });
  for (let i = 0; i < 3; i++) edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 1000 + i, dstPort: 53 }));
  edge.advance(10 * 60 * SECOND);
  assert.equal(log.pending, 2);
  assert.equal(log.linesDropped, 1);
  assert.equal(log.flush(), 2);
  assert.equal(log.linesWritten, 2);
  await log.close();
  assert.equal(sink.lines().length, 2);

  // A stalled destination: writes are queued, never completed.
  const stalled = new Writable({ write: () => undefined });
  const edge2 = new PipelineRig(twoSites());
  const shed = logger(edge2, stalled, { maxPendingBytes: 10 });
  for (let round = 0; round < 2; round++) {
    edge2.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 2000 + round, dstPort: 53 }));
    edge2.advance(10 * 60 * SECOND);
    shed.flush();
  }
  assert.equal(shed.linesWritten, 1);
  assert.equal(shed.linesDropped, 1);
  await shed.close();
});

test('a hook already on the pipeline keeps being called; close() restores it', async () => {
  const edge = new PipelineRig(twoSites());
  const seen: number[] = [];
  const before = (_t: unknown, flow: number) => void seen.push(flow);
  edge.pipeline.onFlowEnd = before;
  const sink = new Sink();
  const log = logger(edge, sink);
  edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 3000, dstPort: 53 }));
  edge.advance(10 * 60 * SECOND);
  assert.deepEqual(seen, [0]);
  await log.close();
  assert.equal(edge.pipeline.onFlowEnd, before);
  assert.equal(sink.lines().length, 1, 'close() flushes');
});

test('a file destination is appended to, flushed on the interval and on close', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-flowlog-'));
  try {
    const path = join(dir, 'flows.jsonl');
    writeFileSync(path, '{"earlier":true}\n');
    const edge = new PipelineRig(twoSites());
    assert.equal(flowLoggerFor('off', { pipeline: edge.pipeline }), null);
    const log = flowLoggerFor(path, { pipeline: edge.pipeline, clock: () => edge.now, flushIntervalMs: 5 })!;
    log.start();
    edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 4000, dstPort: 53 }));
    edge.advance(10 * 60 * SECOND);
    // The interval writes it (no flush() call here).
    for (let i = 0; i < 200 && log.pending > 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(log.pending, 0);
    edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 4001, dstPort: 53 }));
    edge.advance(10 * 60 * SECOND);
    await log.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 3);
    assert.deepEqual(lines[0], { earlier: true });
    assert.deepEqual(lines.slice(1).map((l) => l.src_port), [4000, 4001]);
    assert.equal(log.lastError, null);
    // A file the logger creates is the operator's alone.
    const fresh = join(dir, 'new.jsonl');
    const second = flowLoggerFor(fresh, { pipeline: edge.pipeline, clock: () => edge.now, flushIntervalMs: 0 })!;
    second.start();
    edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 4002, dstPort: 53 }));
    edge.advance(10 * 60 * SECOND);
    second.flush();
    await second.close();
    assert.equal(statSync(fresh).mode & 0o777, FLOW_LOG_FILE_MODE);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file that cannot be opened is reported, not thrown', async () => {
  const edge = new PipelineRig(twoSites());
  const errors: Error[] = [];
  const log = new FlowLogger({ pipeline: edge.pipeline, destination: '/nonexistent-dir/flows.jsonl', flushIntervalMs: 0, onError: (e) => errors.push(e) });
  log.start();
  // Wait for the stream's open error itself (not a fixed delay: a loaded machine reports it later).
  for (let waited = 0; errors.length === 0 && waited < 5000; waited += 10) await new Promise((r) => setTimeout(r, 10));
  assert.equal(errors.length, 1, 'the open error was reported');
  edge.send(A_PRIMARY, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 5000, dstPort: 53 }));
  edge.advance(10 * 60 * SECOND);
  assert.equal(log.flush(), 0);
  assert.equal(log.linesDropped, 1, 'counted, not queued behind a dead stream');
  await log.close();
  assert.equal(errors.length, 1);
  assert.match(String(log.lastError), /ENOENT/);
});

test('gateway DNS: a blocked, an overridden and a logged query each give one gateway_dns line with the rule and the name', async () => {
  const { edge, names, ids } = lab();
  const A = ids.onramps.get('site-a-wg')!;
  const site = names.site(edge.pipeline.ports.site[A]);
  edge.pipeline.setGateway(new GatewayPolicy({
    rules: [
      { id: 3, name: 'no-ads', action: 'block', hostnames: ['ads.example'] },
      { id: 4, action: 'override', hostnames: ['intranet.example'], sources: NameSource.Dns, override: { addresses: ['192.0.2.7'], ttl: 30 } },
      { id: 5, action: 'log', hostnames: ['watched.example'] },
    ],
    dlpProfiles: [], classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes: 65536,
  }));
  const sink = new Sink();
  const log = logger(edge, sink, { names });
  // id 0x0102, RD, one question: labels, QTYPE A (1), QCLASS IN (1).
  const q = (name: string): Uint8Array => Uint8Array.from([1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    ...name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]), 0, 0, 1, 0, 1]);
  for (const name of ['ads.example', 'intranet.example', 'watched.example', 'other.example']) {
    edge.send(A, buildUdp({ src: HOST, dst: SERVER }, { srcPort: 40000, dstPort: 53, payload: q(name) }));
  }
  assert.equal(log.pending, 3);
  await log.close();
  const common = { time: new Date(WALL).toISOString(), event: 'gateway_dns', qtype: 1, family: 4, src: HOST, src_port: 40000, dst: SERVER, site, onramp: 'site-a-wg' };
  assert.deepEqual(sink.lines(), [
    { ...common, action: 'block', rule: 3, rule_name: 'no-ads', name: 'ads.example', rcode: 'NXDOMAIN', answers: 0 },
    { ...common, action: 'override', rule: 4, name: 'intranet.example', rcode: 'NOERROR', answers: 1 },
    { ...common, action: 'log', rule: 5, name: 'watched.example', rcode: null, answers: 0 },
  ]);
});

test('a flow cut by a policy change: reason policy_cut with the epoch, the layer and the rule', () => {
  const edge = new PipelineRig(twoSites());
  const sink = new Sink();
  const log = logger(edge, sink);
  const udp = (): Uint8Array => buildUdp({ src: HOST, dst: DC_SERVER }, { srcPort: 40000, dstPort: 443, payload: new Uint8Array(10) });
  assert.equal(edge.send(A_PRIMARY, udp()).hop, DC_ONRAMP);
  edge.pipeline.setFirewall(new Firewall([{ id: 9, action: 'deny', dstPorts: [[443, 443]] }], 'allow'));
  assert.equal(edge.send(A_PRIMARY, udp()).drop, Drop.PolicyCut);
  log.flush();
  const [line] = sink.lines();
  assert.equal(line.reason, 'policy_cut');
  assert.deepEqual([line.cut?.policy_epoch, line.cut?.by, line.cut?.rule], [edge.pipeline.policyEpoch, 'firewall', 9]);
  assert.equal(line.packets_orig, 1, 'the packet that met the new policy is not counted: it was dropped');
});
