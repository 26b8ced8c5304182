/**
 * `npm run demo`: the problem and the answer in one run, in process (no root, no interfaces).
 *
 * Sites A and B both use 10.0.1.0/24 and both announce it. Their host 10.0.1.10 talks to a server
 * on the Internet and to a data-center server over the same source port. With Automatic Return
 * Routing every reply comes back to the site that asked; without it, the routing table has two
 * equal routes for 10.0.1.10 and some replies go to the wrong site.
 */
import { performance } from 'node:perf_hooks';
import { DROP_REASON_NAMES } from '../common/drop-reasons.js';
import { PacketBatch } from '../common/packet-batch.js';
import { NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import { Pipeline } from '../dataplane/pipeline.js';
import { NextHopKind } from '../route/route-table.js';
import { buildUdp, parsePacket } from '../wire/build.js';

const SITE_A_ONRAMP = 1;
const SITE_B_ONRAMP = 2;
const DC_ONRAMP = 3;
const HOST = '10.0.1.10';
const REQUESTS_PER_SITE = 20;

function portName(port: number): string {
  return port === PORT_INTERNET ? 'internet' : port === SITE_A_ONRAMP ? 'site-a' : port === SITE_B_ONRAMP ? 'site-b' : port === DC_ONRAMP ? 'dc' : `port ${port}`;
}

function run(arr: boolean): { right: number; wrong: number; refused: number; lines: string[] } {
  const edge = new Pipeline({
    onramps: [
      { id: SITE_A_ONRAMP, name: 'site-a', type: 'wireguard', site: 1, automaticReturnRouting: arr },
      { id: SITE_B_ONRAMP, name: 'site-b', type: 'wireguard', site: 2, automaticReturnRouting: arr },
      { id: DC_ONRAMP, name: 'dc', type: 'interconnect', site: 3, automaticReturnRouting: false },
    ],
    routes: [
      { prefix: '0.0.0.0/0', kind: NextHopKind.Internet },
      { prefix: '172.16.0.0/24', kind: NextHopKind.Onramp, port: DC_ONRAMP },
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: SITE_A_ONRAMP },
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: SITE_B_ONRAMP },
    ],
    egress: { addresses: ['198.51.100.1'] },
  });
  const batch = new PacketBatch(1);
  const send = (port: number, packet: Uint8Array) => {
    batch.clear();
    batch.push(packet, 0, packet.length, port);
    edge.process(batch, performance.now());
    return { hop: batch.nextHop[0], out: parsePacket(batch.packet(0)) };
  };
  let right = 0;
  let wrong = 0;
  let refused = 0;
  const lines: string[] = [];
  for (let i = 0; i < REQUESTS_PER_SITE; i++) {
    for (const site of [SITE_A_ONRAMP, SITE_B_ONRAMP]) {
      for (const server of ['203.0.113.10', '172.16.0.20']) {
        const srcPort = 40000 + i; // both sites use the very same tuple
        const request = send(site, buildUdp({ src: HOST, dst: server }, { srcPort, dstPort: 53 }));
        if (request.hop === NEXT_HOP_DROP) {
          // Without ARR both sites share one zone: the other site already holds this exact tuple.
          refused++;
          if (i === 0) lines.push(`  ${portName(site)} ${HOST}:${srcPort} -> ${server}:53  refused: ${DROP_REASON_NAMES[batch.drop[0]]} (the other site holds this tuple)`);
          continue;
        }
        const reply = send(request.hop, buildUdp({ src: server, dst: request.out.src }, { srcPort: 53, dstPort: request.out.srcPort }));
        const ok = reply.hop === site;
        if (ok) right++;
        else wrong++;
        if (i === 0) {
          lines.push(`  ${portName(site)} ${HOST}:${srcPort} -> ${server}:53  left as ${request.out.src}:${request.out.srcPort} via ${portName(request.hop)}; reply went to ${portName(reply.hop)}${ok ? '' : '  <-- wrong site'}`);
        }
      }
    }
  }
  return { right, wrong, refused, lines };
}

for (const arr of [true, false]) {
  const { right, wrong, refused, lines } = run(arr);
  console.log(`\nAutomatic Return Routing ${arr ? 'ON' : 'OFF'}: both sites send ${REQUESTS_PER_SITE} requests from ${HOST} to the Internet and to the data center`);
  for (const l of lines) console.log(l);
  console.log(`  replies to the site that asked: ${right}; to the other site: ${wrong}; requests refused: ${refused}`);
}
