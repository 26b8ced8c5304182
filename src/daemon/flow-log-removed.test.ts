// The flow log names the onramp and site of a flow whose onramp was removed live through the API (docs/OBSERVABILITY.md
// "Flow log"): the line an operator greps later says `site-a-wg`, not the onramp's id. The daemon's order is the one
// that lost the names: LiveEdge ends the removed onramp's flows, then tells the name book (onApplied), and the
// logger writes its lines at the next flush. No kernel objects: the Edge is built without start().
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { PacketBatch } from '../common/packet-batch.js';
import { NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import { buildApi } from '../control/api.js';
import { FlowLogger, type FlowLogLine } from '../control/flow-log.js';
import { NameBook } from '../control/metrics.js';
import { ConfigStore } from '../control/store.js';
import { defaultConfig } from '../lab/config.js';
import { buildUdp } from '../wire/build.js';
import { Edge, type EdgeLogger } from './edge.js';
import { LiveEdge } from './live.js';
import { HOST, SERVER } from '../../test/support/topology.js';

const log: EdgeLogger = { info() {}, warn() {}, error() {}, debug() {} };
const TOKEN = 'flow-log-removed-token-0123456789';
const SRC_PORT = 40000;
const DST_PORT = 443;

test('an onramp removed through the API with a flow open: the flow\'s line names its onramp and site, not their ids', async () => {
  const cfg = defaultConfig();
  const edge = new Edge({ config: cfg, log, hugePages: false, countersIntervalMs: 0 });
  const names = new NameBook(edge.pipeline, cfg, edge.ids);
  const store = ConfigStore.open(':memory:');
  store.seedFrom(cfg);
  const app = buildApi({ store, edge: new LiveEdge(edge, cfg, (config, ids) => names.update(config, ids)), token: TOKEN });
  let text = '';
  const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => { text += chunk.toString(); done(); } });
  const flowLog = new FlowLogger({ pipeline: edge.pipeline, names, destination: sink, flushIntervalMs: 0 });
  flowLog.start();
  try {
    const a = edge.ids.onramps.get('site-a-wg')!;
    const batch = new PacketBatch(1);
    const packet = buildUdp({ src: HOST, dst: SERVER }, { srcPort: SRC_PORT, dstPort: DST_PORT, payload: new Uint8Array(20) });
    batch.push(packet, 0, packet.length, a);
    edge.pipeline.process(batch, performance.now());
    assert.equal(batch.nextHop[0] === NEXT_HOP_DROP ? -1 : batch.nextHop[0], PORT_INTERNET, `site-a's datagram leaves for the Internet (drop ${batch.drop[0]})`);
    assert.equal(edge.pipeline.flows4.size, 1, 'one flow open');

    const r = await app.inject({ method: 'DELETE', url: '/v1/onramps/site-a-wg', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.statusCode, 204, r.body);
    assert.equal(names.onramp(a), String(a), 'the name book has forgotten the onramp by the time the line is written');
    assert.equal(flowLog.flush(), 1);
    const [line] = text.trim().split('\n').map((l) => JSON.parse(l) as FlowLogLine);
    assert.equal(line.reason, 'onramp_removed');
    assert.equal(line.src_port, SRC_PORT);
    assert.equal(line.onramp, 'site-a-wg');
    assert.equal(line.site, 'site-a');
    assert.equal(line.return_onramp, 'site-a-wg');
    assert.equal(line.next_hop, 'internet');
  } finally {
    await flowLog.close();
    await app.close();
    store.close();
  }
});
