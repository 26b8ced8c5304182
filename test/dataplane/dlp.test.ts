/**
 * DLP in the pipeline (issue 12 item 3): a flow whose gateway rule names DLP profiles is reassembled and scanned;
 * a `block` match drops the segment that completed it and cuts the flow with a reset each way; `log` records.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../../src/common/drop-reasons.js';
import { FLAG_DLP, type PipelineConfig } from '../../src/dataplane/pipeline.js';
import { RemoveReason } from '../../src/flow/flow-table.js';
import type { DlpProfileSpec, GatewayRuleSpec } from '../../src/gateway/policy.js';
import { buildTcp } from '../../src/wire/build.js';
import { TCP_ACK_FLAG, TCP_PSH, TCP_RST, TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, HOST, INTERNET, POOL, SERVER, SITE_A, twoSites } from '../support/topology.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function config(rules: GatewayRuleSpec[], profiles: DlpProfileSpec[], dlpScanBytes = 4096): PipelineConfig {
  return { ...twoSites(), gateway: { rules, dlpProfiles: profiles, classify: { bufferBytes: 16384, waitMs: 2000, fallback: 'allow' }, dlpScanBytes } };
}

const CARDS: DlpProfileSpec = { name: 'cards', cards: true, action: 'block' };
const RULES: GatewayRuleSpec[] = [{ id: 5, action: 'allow', sites: [SITE_A], dstPorts: [[80, 80]], dlp: ['cards'] }];

/** A TCP connection from `port` (a site onramp) to SERVER:80 through the egress pool; returns a sender of client data. */
function connect(rig: PipelineRig, port: number, srcPort: number) {
  const c = { seq: 1000, srv: 5000 };
  const syn = rig.send(port, buildTcp({ src: HOST, dst: SERVER }, { srcPort, dstPort: 80, seq: c.seq, flags: TCP_SYN }));
  assert.equal(syn.hop, INTERNET);
  const ext = syn.parsed.srcPort;
  c.seq++;
  assert.equal(rig.send(INTERNET, buildTcp({ src: SERVER, dst: POOL }, { srcPort: 80, dstPort: ext, seq: c.srv, ack: c.seq, flags: TCP_SYN | TCP_ACK_FLAG })).hop, port);
  c.srv++;
  assert.equal(rig.send(port, buildTcp({ src: HOST, dst: SERVER }, { srcPort, dstPort: 80, seq: c.seq, ack: c.srv })).hop, INTERNET);
  return {
    ext,
    /** Client data at stream offset `at` (default: the next byte). */
    send(data: Uint8Array, at?: number) {
      const seq = at === undefined ? c.seq : 1001 + at;
      const out = rig.send(port, buildTcp({ src: HOST, dst: SERVER }, { srcPort, dstPort: 80, seq, ack: c.srv, flags: TCP_ACK_FLAG | TCP_PSH, payload: data }));
      if (at === undefined) c.seq += data.length;
      return out;
    },
    reply(data: Uint8Array) {
      const out = rig.send(INTERNET, buildTcp({ src: SERVER, dst: POOL }, { srcPort: 80, dstPort: ext, seq: c.srv, ack: c.seq, flags: TCP_ACK_FLAG | TCP_PSH, payload: data }));
      c.srv += data.length;
      return out;
    },
  };
}

test('a card number in a POST from site A: the completing segment dropped, a reset each way, the flow cut and logged as such', () => {
  const rig = new PipelineRig(config(RULES, [CARDS]));
  const ended: RemoveReason[] = [];
  rig.pipeline.onFlowEnd = (table, flow, reason) => {
    ended.push(reason);
    assert.deepEqual(rig.pipeline.dlpEvents(table, flow).map((e) => [e.profile, e.detector, e.direction, e.offset, e.ruleId]), [['cards', 'card', 0, 27, 5]], 'the events are there when the flow log captures the flow');
  };
  const c = connect(rig, A_PRIMARY, 40000);
  assert.equal(rig.pipeline.counters.dlpFlowsScanned, 1);
  const body = 'POST /pay HTTP/1.1\r\n\r\ncard=4111 1111 1111 1111&cvv=1';
  // One byte per segment up to the last digit: nothing matched yet (the card is decided by the byte after it).
  const upto = body.indexOf('&');
  for (let i = 0; i < upto; i++) assert.equal(c.send(enc(body[i])).hop, INTERNET, `byte ${i} passes`);
  const cut = c.send(enc(body.slice(upto)));
  assert.equal(cut.drop, Drop.DlpBlocked);
  const [toClient, toServer] = rig.generated();
  assert.equal(toClient.hop, A_PRIMARY);
  assert.deepEqual([toClient.parsed.src, toClient.parsed.dst, toClient.parsed.srcPort, toClient.parsed.dstPort], [SERVER, HOST, 80, 40000]);
  assert.equal(toClient.parsed.tcp!.flags, TCP_RST, 'RFC 9293 section 3.10.7.1: <SEQ=SEG.ACK><CTL=RST>');
  assert.equal(toClient.parsed.tcp!.seq, 5001, 'the client\'s RCV.NXT');
  assert.equal(toServer.hop, INTERNET);
  assert.deepEqual([toServer.parsed.src, toServer.parsed.dst, toServer.parsed.srcPort, toServer.parsed.dstPort], [POOL, SERVER, c.ext, 80], 'translated as the flow sends');
  assert.equal(toServer.parsed.tcp!.seq, 1001 + upto, 'the server\'s RCV.NXT: the dropped segment\'s');
  assert.deepEqual(ended, [RemoveReason.DlpCut]);
  assert.equal(rig.pipeline.flows4.size, 0);
  assert.equal(rig.pipeline.counters.dlpFlowsCut, 1);
  assert.equal(rig.pipeline.counters.dlpMatches.get('cards'), 1);
  assert.equal(c.send(enc('more')).drop, Drop.TcpNoFlow, 'the flow is gone');
});

test('a number failing Luhn passes; site B (no rule) is not scanned; after dlpScanBytes both ways the flow leaves DLP', () => {
  const rig = new PipelineRig(config(RULES, [CARDS]));
  const a = connect(rig, A_PRIMARY, 40001);
  assert.equal(a.send(enc('card=4111 1111 1111 1112&')).hop, INTERNET);
  const b = connect(rig, B_PRIMARY, 40002);
  assert.equal(b.send(enc('card=4111 1111 1111 1111&')).hop, INTERNET);
  assert.equal(rig.pipeline.counters.dlpFlowsScanned, 1, 'site B\'s flow is not scanned');
  const scanned = (): number => {
    let n = 0;
    for (let f = 0; f < rig.pipeline.flows4.capacity; f++) if (rig.pipeline.flows4.isLive(f) && (rig.pipeline.flows4.flags(f) & FLAG_DLP) !== 0) n++;
    return n;
  };
  assert.equal(scanned(), 1);
  a.send(new Uint8Array(4096));
  assert.equal(scanned(), 1, 'the server direction is not done yet');
  a.reply(new Uint8Array(4096));
  a.send(enc('x'));
  assert.equal(scanned(), 0, 'both directions scanned: back on the fast path');
  assert.equal(a.send(enc('4111 1111 1111 1111 ')).hop, INTERNET, 'past dlpScanBytes nothing is scanned');
});

test('a log profile records profile, detector, direction and offset, and forwards; out-of-order segments are held', () => {
  const rig = new PipelineRig(config([{ id: 9, action: 'log', dlp: ['cards-log'] }], [{ name: 'cards-log', cards: true, action: 'log' }], 65536));
  const c = connect(rig, A_PRIMARY, 40003);
  const body = enc('x=5500 0000 0000 0004;');
  // Inside the TCP window but past the hold window (8 KiB ahead of the gap): dropped for the sender to resend.
  assert.equal(c.send(enc('late'), 20_000).drop, Drop.DlpReorder);
  // The second half first (held), then the first: the match is found once the gap fills.
  assert.equal(c.send(body.subarray(8), 8).hop, INTERNET);
  assert.equal(c.send(body.subarray(0, 8), 0).hop, INTERNET);
  const reply = c.reply(enc('ok 4111-1111-1111-1111\n'));
  assert.equal(reply.hop, A_PRIMARY);
  let flow = -1;
  for (let f = 0; f < rig.pipeline.flows4.capacity; f++) if (rig.pipeline.flows4.isLive(f)) flow = f;
  assert.deepEqual(rig.pipeline.dlpEvents(rig.pipeline.flows4, flow).map((e) => [e.profile, e.detector, e.direction, e.offset, e.action]), [
    ['cards-log', 'card', 0, 2, 'log'],
    ['cards-log', 'card', 1, 3, 'log'],
  ]);
  assert.equal(rig.pipeline.counters.dlpReorderDrops, 1);
  assert.equal(rig.pipeline.counters.dlpMatches.get('cards-log'), 2);
  assert.equal(rig.pipeline.flows4.flags(flow) & FLAG_DLP, 0, 'every profile matched both ways: nothing left to find, the flow leaves DLP');
});

test('IPv6: the same cut, resets of the right family and addresses (the server\'s translated to the pool)', () => {
  const rig = new PipelineRig(config(RULES, [CARDS]));
  const host = 'fd00:1::10';
  const server = '2001:db8::10';
  const pool = '2001:db8:ee::1';
  const syn = rig.send(A_PRIMARY, buildTcp({ src: host, dst: server }, { srcPort: 40010, dstPort: 80, seq: 1, flags: TCP_SYN }));
  assert.equal(syn.hop, INTERNET);
  assert.equal(syn.parsed.src, pool);
  const ext = syn.parsed.srcPort;
  assert.equal(rig.send(INTERNET, buildTcp({ src: server, dst: pool }, { srcPort: 80, dstPort: ext, seq: 900, ack: 2, flags: TCP_SYN | TCP_ACK_FLAG })).hop, A_PRIMARY);
  const data = enc('card=4111111111111111&');
  const out = rig.send(A_PRIMARY, buildTcp({ src: host, dst: server }, { srcPort: 40010, dstPort: 80, seq: 2, ack: 901, flags: TCP_ACK_FLAG | TCP_PSH, payload: data }));
  assert.equal(out.drop, Drop.DlpBlocked);
  const [toClient, toServer] = rig.generated();
  assert.deepEqual([toClient.hop, toClient.parsed.family, toClient.parsed.src, toClient.parsed.dst, toClient.parsed.tcp!.seq], [A_PRIMARY, 6, server, host, 901]);
  assert.deepEqual([toServer.hop, toServer.parsed.src, toServer.parsed.dst, toServer.parsed.srcPort, toServer.parsed.tcp!.seq], [INTERNET, pool, server, ext, 2]);
  assert.equal(rig.pipeline.flows6.size, 0);
});
