/**
 * The classifying state (src/dataplane/classify.ts, docs/POLICY.md "Hostname rules: how a flow is classified"):
 * a TCP flow whose first gateway rule needs a name passes its handshake, its client payload is held until SNI or
 * Host decides, then it is released in order (allow) or both ends are reset (block). Real ClientHellos captured
 * from curl and Chromium (src/gateway/testdata) drive it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Drop } from '../../src/common/drop-reasons.js';
import { ClassifyOutcome, GW_ACTION_ALLOW, GW_ACTION_BLOCK, gatewayWordAction, gatewayWordOutcome, gatewayWordRule, gatewayWordSource } from '../../src/dataplane/classify.js';
import { explain } from '../../src/dataplane/explain.js';
import { FLAG_CLASSIFYING, type PipelineConfig } from '../../src/dataplane/pipeline.js';
import { NameSource, type GatewayRuleSpec } from '../../src/gateway/policy.js';
import { buildTcp } from '../../src/wire/build.js';
import { TCP_ACK_FLAG, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../src/wire/constants.js';
import { PipelineRig, type Sent } from '../support/pipeline-rig.js';
import { A_PRIMARY, B_PRIMARY, HOST, INTERNET, POOL, SERVER, SITE_A, twoSites } from '../support/topology.js';

const hellos = JSON.parse(readFileSync(new URL('../../src/gateway/testdata/client-hellos.json', import.meta.url), 'utf8')).hex as Record<string, string>;
const fromHex = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
/** curl's ClientHello names www.example.org; Chromium's (about 1.8 KiB, post-quantum key share) video.example.com. */
const CURL_HELLO = fromHex(hellos.curl);
const CHROMIUM_HELLO = fromHex(hellos.chromium);
const enc = new TextEncoder();

const CLIENT_ISN = 1000;
const SERVER_ISN = 5000;
const CLIENT_PORT = 40000;
const WAIT_MS = 2000;

function config(rules: GatewayRuleSpec[], opts: { fallback?: 'allow' | 'block'; bufferBytes?: number; slots?: number } = {}): PipelineConfig {
  return {
    ...twoSites(),
    classifySlots: opts.slots,
    gateway: { rules, dlpProfiles: [], classify: { bufferBytes: opts.bufferBytes ?? 16384, waitMs: WAIT_MS, fallback: opts.fallback ?? 'allow' }, dlpScanBytes: 65536 },
  };
}

/** Site A may not reach *.example.org (SNI or Host); everything else is allowed. */
const BLOCK_EXAMPLE_ORG_FOR_A: GatewayRuleSpec[] = [{ id: 7, name: 'no example.org at A', action: 'block', sites: [SITE_A], hostnames: ['*.example.org'] }];

interface Conn {
  rig: PipelineRig;
  onramp: number;
  port: number;
  /** The flow's external (pool) port. */
  ext: number;
  /** Next client and server sequence numbers. */
  cseq: number;
  sseq: number;
  dstPort: number;
}

/** Opens a connection from `onramp` through its handshake (which passes unheld). */
function connect(rig: PipelineRig, onramp: number, dstPort = 443, port = CLIENT_PORT): Conn {
  const syn = rig.send(onramp, buildTcp({ src: HOST, dst: SERVER }, { srcPort: port, dstPort, seq: CLIENT_ISN, flags: TCP_SYN }));
  assert.equal(syn.hop, INTERNET, `SYN dropped: ${syn.drop}`);
  const ext = syn.parsed.srcPort;
  const synAck = rig.send(INTERNET, buildTcp({ src: SERVER, dst: POOL }, { srcPort: dstPort, dstPort: ext, seq: SERVER_ISN, ack: CLIENT_ISN + 1, flags: TCP_SYN | TCP_ACK_FLAG }));
  assert.equal(synAck.hop, onramp);
  const ack = rig.send(onramp, buildTcp({ src: HOST, dst: SERVER }, { srcPort: port, dstPort, seq: CLIENT_ISN + 1, ack: SERVER_ISN + 1, flags: TCP_ACK_FLAG }));
  assert.equal(ack.hop, INTERNET, 'the handshake passes');
  return { rig, onramp, port, ext, cseq: CLIENT_ISN + 1, sseq: SERVER_ISN + 1, dstPort };
}

/** The client sends `data` as one segment at its next sequence number (or at `seq`). */
function sendData(c: Conn, data: Uint8Array, opts: { seq?: number; flags?: number } = {}): Sent {
  const seq = opts.seq ?? c.cseq;
  const out = c.rig.send(c.onramp, buildTcp({ src: HOST, dst: SERVER }, { srcPort: c.port, dstPort: c.dstPort, seq, ack: c.sseq, flags: opts.flags ?? (TCP_ACK_FLAG | TCP_PSH), payload: data }));
  if (opts.seq === undefined) c.cseq += data.length;
  return out;
}

function flowOf(rig: PipelineRig): number {
  const t = rig.pipeline.flows4;
  for (let f = 0; f < t.capacity; f++) if (t.isLive(f)) return f;
  return -1;
}

test('allowed by name: a ClientHello split over three segments is held, then released in order, translated; the flow records rule, SNI and name', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const c = connect(rig, A_PRIMARY);
  const p = rig.pipeline;
  const flow = flowOf(rig);
  assert.notEqual(p.flows4.flags(flow) & FLAG_CLASSIFYING, 0, 'waiting for its name');
  const cuts = [0, 100, 700, CHROMIUM_HELLO.length];
  const outs: Sent[] = [];
  for (let k = 0; k < 3; k++) {
    outs.push(sendData(c, CHROMIUM_HELLO.subarray(cuts[k], cuts[k + 1])));
  }
  assert.equal(outs[0].hop, -1);
  assert.equal(outs[0].drop, Drop.None, 'held, not dropped');
  assert.equal(outs[1].hop, -1);
  const released = rig.generated();
  assert.equal(released.length, 3, 'the three held segments leave together');
  for (let k = 0; k < 3; k++) {
    assert.equal(released[k].hop, INTERNET);
    assert.equal(released[k].parsed.src, POOL, 'translated like any packet of the flow');
    assert.equal(released[k].parsed.tcp!.seq, CLIENT_ISN + 1 + cuts[k], 'in order');
  }
  assert.equal(p.flows4.flags(flow) & FLAG_CLASSIFYING, 0, 'decided: the fast path from now on');
  const word = p.gatewayOf(p.flows4, flow);
  assert.equal(gatewayWordRule(word), 0, 'not a blocked name: no rule matched');
  assert.equal(gatewayWordSource(word), NameSource.Sni);
  assert.equal(gatewayWordOutcome(word), ClassifyOutcome.Name);
  assert.deepEqual(p.flowName(p.flows4, flow), { source: NameSource.Sni, name: 'video.example.com' });
  // Later packets take the fast path.
  const more = sendData(c, enc.encode('application data'));
  assert.equal(more.hop, INTERNET);
  assert.equal(p.classifySlotsInUse, 0);
  assert.equal(p.counters.classifyOutcomes[ClassifyOutcome.Name], 1);
  // SYN, ACK, three held segments, one more: each received once (a held one is not counted again when released).
  assert.equal(p.counters.rxPackets[A_PRIMARY], 6);
});

test('blocked by SNI for site A: a reset to each end (the client\'s from the server\'s address, the server\'s translated), the flow ends, the rule is counted', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const p = rig.pipeline;
  let ended: { rule: number; name: string | undefined; action: number } | null = null;
  p.onFlowEnd = (table, flow) => {
    ended = { rule: gatewayWordRule(p.gatewayOf(table, flow)), name: p.flowName(table, flow)?.name, action: gatewayWordAction(p.gatewayOf(table, flow)) };
  };
  const c = connect(rig, A_PRIMARY);
  const flow = flowOf(rig);
  const out = sendData(c, CURL_HELLO);
  assert.equal(out.hop, -1);
  assert.equal(out.drop, Drop.GatewayBlocked);
  const [toClient, toServer] = rig.generated();
  assert.equal(toClient.hop, A_PRIMARY);
  assert.equal(toClient.parsed.src, SERVER);
  assert.equal(toClient.parsed.dst, HOST);
  assert.equal(toClient.parsed.srcPort, 443);
  assert.equal(toClient.parsed.dstPort, CLIENT_PORT);
  assert.equal(toClient.parsed.tcp!.flags & TCP_RST, TCP_RST);
  assert.equal(toClient.parsed.tcp!.seq, SERVER_ISN + 1, 'exactly what the client expects next (RFC 5961 section 3.2)');
  assert.equal(toServer.hop, INTERNET);
  assert.equal(toServer.parsed.src, POOL);
  assert.equal(toServer.parsed.srcPort, c.ext);
  assert.equal(toServer.parsed.tcp!.flags & TCP_RST, TCP_RST);
  assert.equal(toServer.parsed.tcp!.seq, CLIENT_ISN + 1, 'the server\'s RCV.NXT: the held bytes never reached it');
  assert.equal(p.flows4.isLive(flow), false, 'the flow ended');
  assert.deepEqual(ended, { rule: 7, name: 'www.example.org', action: GW_ACTION_BLOCK }, 'the flow log sees rule, name and action');
  assert.equal(p.flowName(p.flows4, flow), undefined, 'the name goes with the flow');
  assert.equal(p.counters.gatewayRuleHits[7], 1);
  assert.equal(p.counters.gatewayResets, 1);
  assert.equal(p.counters.drops[Drop.GatewayBlocked], 1);
  // The client's retransmission finds no flow.
  assert.equal(sendData(c, CURL_HELLO, { seq: CLIENT_ISN + 1 }).drop, Drop.TcpNoFlow);
});

test('plain HTTP: decided by Host; blocked for site A, another name allowed with the Host recorded; site B never waits', () => {
  const request = enc.encode('GET / HTTP/1.1\r\nHost: news.example.org\r\nUser-Agent: t\r\n\r\n');
  const a = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const ca = connect(a, A_PRIMARY, 80);
  assert.equal(sendData(ca, request.subarray(0, 20)).hop, -1);
  assert.equal(sendData(ca, request.subarray(20)).drop, Drop.GatewayBlocked);
  assert.equal(a.pipeline.counters.gatewayRuleHits[7], 1);
  const other = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const co = connect(other, A_PRIMARY, 80);
  const flow = flowOf(other);
  assert.equal(sendData(co, enc.encode('GET / HTTP/1.1\r\nHost: WWW.Example.COM:80\r\n\r\n')).hop, INTERNET, 'decided by its only segment: it walks on, nothing was held');
  assert.deepEqual(other.pipeline.flowName(other.pipeline.flows4, flow), { source: NameSource.HttpHost, name: 'www.example.com' });
  const b = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const cb = connect(b, B_PRIMARY, 80);
  assert.equal(b.pipeline.flows4.flags(flowOf(b)) & FLAG_CLASSIFYING, 0, 'the rule is site A\'s: B decides at setup');
  assert.equal(sendData(cb, request).hop, INTERNET);
});

test('a retransmission of held bytes is dropped (the held copy goes on); a segment past a gap is dropped and resent later', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const c = connect(rig, A_PRIMARY);
  const hello = CHROMIUM_HELLO;
  const first = hello.subarray(0, 600);
  assert.equal(sendData(c, first).hop, -1);
  assert.equal(sendData(c, first, { seq: CLIENT_ISN + 1 }).drop, Drop.ClassifyRetransmit);
  // Bytes 1200.. arrive before 600..1200: dropped, the gap waits.
  assert.equal(sendData(c, hello.subarray(1200), { seq: CLIENT_ISN + 1 + 1200 }).drop, Drop.ClassifyGap);
  // A retransmission overlapping held bytes and new ones: the new part is fed.
  assert.equal(sendData(c, hello.subarray(300, 1200), { seq: CLIENT_ISN + 1 + 300 }).hop, -1);
  c.cseq = CLIENT_ISN + 1 + 1200;
  assert.equal(sendData(c, hello.subarray(1200)).hop, -1, 'joins the held ones');
  const released = rig.generated();
  assert.equal(released.length, 3);
  assert.deepEqual(released.map((s) => s.parsed.tcp!.seq - CLIENT_ISN - 1), [0, 300, 1200]);
  const flow = flowOf(rig);
  assert.deepEqual(rig.pipeline.flowName(rig.pipeline.flows4, flow), { source: NameSource.Sni, name: 'video.example.com' });
});

test('a client that connects and never sends gets the fallback after the wait: allow (nothing to release) or block (both ends reset)', () => {
  const allow = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  connect(allow, A_PRIMARY);
  const flow = flowOf(allow);
  allow.advance(WAIT_MS - 1);
  assert.notEqual(allow.pipeline.flows4.flags(flow) & FLAG_CLASSIFYING, 0);
  allow.advance(1);
  assert.equal(allow.pipeline.flows4.flags(flow) & FLAG_CLASSIFYING, 0);
  assert.equal(gatewayWordOutcome(allow.pipeline.gatewayOf(allow.pipeline.flows4, flow)), ClassifyOutcome.Timeout);
  assert.equal(gatewayWordAction(allow.pipeline.gatewayOf(allow.pipeline.flows4, flow)), GW_ACTION_ALLOW);
  assert.equal(allow.pipeline.counters.gatewayRuleHits[7], 1, 'the fallback counts for the rule waited on');

  const block = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A, { fallback: 'block' }));
  const c = connect(block, A_PRIMARY);
  sendData(c, CURL_HELLO.subarray(0, 50));
  block.advance(WAIT_MS);
  const [toClient, toServer] = block.generated();
  assert.equal(toClient.hop, A_PRIMARY);
  assert.equal(toClient.parsed.tcp!.flags & TCP_RST, TCP_RST);
  assert.equal(toServer.hop, INTERNET);
  assert.equal(block.pipeline.flows4.size, 0);
  assert.equal(block.pipeline.counters.classifyOutcomes[ClassifyOutcome.Timeout], 1);
  assert.equal(block.pipeline.classifySlotsInUse, 0, 'the slot came back');
});

test('the wait is checked on packets too: a late payload gets the fallback without the expiry pass', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A, { fallback: 'block' }));
  const c = connect(rig, A_PRIMARY);
  rig.now += WAIT_MS;
  assert.equal(sendData(c, CURL_HELLO).drop, Drop.ClassifyTimeout);
  assert.equal(rig.pipeline.flows4.size, 0);
});

test('garbage first bytes: decided with no name (the hostname rule cannot match: allowed); an oversized head: the fallback', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const c = connect(rig, A_PRIMARY);
  const flow = flowOf(rig);
  assert.equal(sendData(c, Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x0d, 0x0a])).hop, INTERNET);
  assert.equal(gatewayWordOutcome(rig.pipeline.gatewayOf(rig.pipeline.flows4, flow)), ClassifyOutcome.NotProtocol);
  assert.equal(rig.pipeline.flowName(rig.pipeline.flows4, flow), undefined);

  const small = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A, { fallback: 'block', bufferBytes: 512 }));
  const cs = connect(small, A_PRIMARY);
  assert.equal(sendData(cs, enc.encode(`GET / HTTP/1.1\r\nX-Pad: ${'a'.repeat(400)}\r\n`)).hop, -1);
  assert.equal(sendData(cs, enc.encode(`X-More: ${'b'.repeat(400)}\r\n`)).drop, Drop.ClassifyTooLarge);
  assert.equal(small.pipeline.counters.classifyOutcomes[ClassifyOutcome.TooLarge], 1);
});

test('the pool is bounded: with one slot, a second flow\'s payload gets the fallback (counted), the first still classifies', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A, { slots: 1 }));
  const c1 = connect(rig, A_PRIMARY, 443, 40001);
  const c2 = connect(rig, A_PRIMARY, 443, 40002);
  assert.equal(sendData(c1, CHROMIUM_HELLO.subarray(0, 100)).hop, -1);
  assert.equal(sendData(c2, CHROMIUM_HELLO.subarray(0, 100)).hop, INTERNET, 'no slot: fallback allow, walks on');
  assert.equal(rig.pipeline.counters.classifyOutcomes[ClassifyOutcome.NoBuffer], 1);
  assert.equal(sendData(c1, CHROMIUM_HELLO.subarray(100, 1000)).hop, -1);
  assert.equal(sendData(c1, CHROMIUM_HELLO.subarray(1000)).hop, -1);
  assert.equal(rig.generated().length, 3);
});

test('server-first protocols: the server\'s banner decides the flow at once with no name; a client FIN without a name decides too', () => {
  const rig = new PipelineRig(config([{ id: 3, action: 'block', hostnames: ['mail.example.org'], fallback: 'block' }]));
  const c = connect(rig, A_PRIMARY, 25);
  const flow = flowOf(rig);
  const banner = rig.send(INTERNET, buildTcp({ src: SERVER, dst: POOL }, { srcPort: 25, dstPort: c.ext, seq: SERVER_ISN + 1, ack: CLIENT_ISN + 1, flags: TCP_ACK_FLAG | TCP_PSH, payload: enc.encode('220 mail.example.org ESMTP\r\n') }));
  assert.equal(banner.hop, A_PRIMARY, 'the banner passes');
  assert.equal(gatewayWordOutcome(rig.pipeline.gatewayOf(rig.pipeline.flows4, flow)), ClassifyOutcome.ServerFirst);
  c.sseq += 28;
  assert.equal(sendData(c, enc.encode('EHLO me\r\n')).hop, INTERNET);

  const fin = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const cf = connect(fin, A_PRIMARY, 80);
  assert.equal(sendData(cf, enc.encode('GET / HTTP/1.1\r\nHost: a.example.org\r\n')).hop, -1);
  const out = sendData(cf, new Uint8Array(0), { flags: TCP_ACK_FLAG | TCP_FIN });
  assert.equal(out.hop, -1, 'the FIN leaves with the held request, in order');
  assert.equal(fin.generated().length, 2);
  assert.equal(gatewayWordOutcome(fin.pipeline.gatewayOf(fin.pipeline.flows4, flowOf(fin))), ClassifyOutcome.Closed);
});

test('a rule without a hostname condition decides at setup (a block never creates the flow); no gateway rules: nothing waits', () => {
  const rig = new PipelineRig(config([{ id: 4, action: 'block', sites: [SITE_A], dstPorts: [[23, 23]] }, ...BLOCK_EXAMPLE_ORG_FOR_A]));
  const syn = rig.send(A_PRIMARY, buildTcp({ src: HOST, dst: SERVER }, { srcPort: CLIENT_PORT, dstPort: 23, seq: CLIENT_ISN, flags: TCP_SYN }));
  assert.equal(syn.drop, Drop.GatewayBlocked);
  assert.equal(rig.pipeline.flows4.size, 0);
  assert.equal(rig.pipeline.counters.gatewayRuleHits[4], 1);
  // SYN data (TCP Fast Open) toward a flow that needs a name is refused: the plain SYN that follows sets it up.
  const tfo = rig.send(A_PRIMARY, buildTcp({ src: HOST, dst: SERVER }, { srcPort: CLIENT_PORT, dstPort: 443, seq: CLIENT_ISN, flags: TCP_SYN, payload: CURL_HELLO }));
  assert.equal(tfo.drop, Drop.ClassifyUnheld);

  const none = new PipelineRig(twoSites());
  const c = connect(none, A_PRIMARY);
  assert.equal(none.pipeline.flows4.flags(flowOf(none)) & FLAG_CLASSIFYING, 0);
  assert.equal(sendData(c, CURL_HELLO).hop, INTERNET);
});

test('a reset from either end while waiting ends the wait; the slot comes back', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const c = connect(rig, A_PRIMARY);
  sendData(c, CURL_HELLO.subarray(0, 10));
  assert.equal(rig.pipeline.classifySlotsInUse, 1);
  const rst = rig.send(A_PRIMARY, buildTcp({ src: HOST, dst: SERVER }, { srcPort: CLIENT_PORT, dstPort: 443, seq: CLIENT_ISN + 1, ack: SERVER_ISN + 1, flags: TCP_RST | TCP_ACK_FLAG }));
  assert.equal(rst.hop, INTERNET);
  assert.equal(rig.pipeline.classifySlotsInUse, 0);
  assert.equal(rig.pipeline.classifyingFlows, 0);
});

test('explain: a hypothetical flow with --sni / --host gets the decision its name would; without one, the wait is explained', () => {
  const p = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A)).pipeline;
  const packet = { onramp: A_PRIMARY, protocol: 6, src: HOST, dst: SERVER, srcPort: CLIENT_PORT, dstPort: 443 };
  const blocked = explain(p, { ...packet, sni: 'www.example.org' });
  assert.equal(blocked.verdict, 'drop');
  assert.equal(blocked.dropReason, 'gateway_blocked');
  assert.deepEqual(blocked.gateway, { ruleId: 7, action: 'block', by: 'sni', waitsOn: null });
  assert.ok(blocked.trail.some((l) => l.includes('gateway rule 7 (no example.org at A) blocks SNI www.example.org')), blocked.trail.join('\n'));
  const byHost = explain(p, { ...packet, dstPort: 80, host: 'www.example.com' });
  assert.equal(byHost.verdict, 'forward');
  assert.deepEqual(byHost.gateway, { ruleId: 0, action: 'allow', by: 'host', waitsOn: null });
  const waits = explain(p, packet);
  assert.equal(waits.verdict, 'forward');
  assert.deepEqual(waits.gateway, { ruleId: 0, action: 'allow', by: 'waits', waitsOn: 7 });
  assert.ok(waits.trail.some((l) => l.includes('needs the flow\'s name')));
  const siteB = explain(p, { ...packet, onramp: B_PRIMARY, sni: 'www.example.org' });
  assert.equal(siteB.verdict, 'forward');
  assert.ok(siteB.trail.includes('gateway: no rule matches; the firewall\'s decision stands'));
});

test('the server speaks while client bytes are held: they are released first, then the server\'s segment goes on to the client, intact', () => {
  const rig = new PipelineRig(config(BLOCK_EXAMPLE_ORG_FOR_A));
  const c = connect(rig, A_PRIMARY, 25);
  assert.equal(sendData(c, enc.encode('EHLO')).hop, -1, 'no line end yet: held');
  const banner = rig.send(INTERNET, buildTcp({ src: SERVER, dst: POOL }, { srcPort: 25, dstPort: c.ext, seq: SERVER_ISN + 1, ack: CLIENT_ISN + 1, flags: TCP_ACK_FLAG | TCP_PSH, payload: enc.encode('220 hi\r\n') }));
  assert.equal(banner.hop, A_PRIMARY);
  assert.equal(banner.parsed.dst, HOST, 'translated back for the client, not as the released packet');
  assert.equal(banner.parsed.dstPort, CLIENT_PORT);
  assert.equal(banner.parsed.tcp!.payloadLength, 8);
  const released = rig.generated();
  assert.equal(released.length, 1);
  assert.equal(released[0].hop, INTERNET);
  assert.equal(released[0].parsed.src, POOL);
  assert.equal(gatewayWordOutcome(rig.pipeline.gatewayOf(rig.pipeline.flows4, flowOf(rig))), ClassifyOutcome.ServerFirst);
});

test('explain on a classified flow\'s packet: the trail names the rule, the action and the name', () => {
  const rig = new PipelineRig(config([{ id: 9, name: 'log-all', action: 'log', hostnames: ['*'] }]));
  const c = connect(rig, A_PRIMARY);
  sendData(c, CHROMIUM_HELLO.subarray(0, 1000));
  const waiting = explain(rig.pipeline, { onramp: A_PRIMARY, protocol: 6, src: HOST, dst: SERVER, srcPort: CLIENT_PORT, dstPort: 443 });
  assert.ok(waiting.trail.some((l) => l.startsWith('the flow is classifying')), waiting.trail.join('\n'));
  sendData(c, CHROMIUM_HELLO.subarray(1000));
  const e = explain(rig.pipeline, { onramp: A_PRIMARY, protocol: 6, src: HOST, dst: SERVER, srcPort: CLIENT_PORT, dstPort: 443 });
  assert.ok(e.trail.includes('gateway rule 9 (log-all) logged by SNI video.example.com'), e.trail.join('\n'));
});
