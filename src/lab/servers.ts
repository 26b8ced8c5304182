/**
 * The lab's servers (run inside the internet and data-center namespaces by labUp):
 *   - HTTP on ADDRESS:80 — every response body is unique: the server's name, a random instance id, a request
 *     counter, and the client address and port the server saw (so a test can tell who the server thinks it
 *     talked to: the egress pool after NAT, or a site's own address through the interconnect).
 *   - UDP echo on ADDRESS:7 — replies to the sender with the same kind of JSON, the datagram's payload included.
 * Nothing listens on UDP 9: the kernel answers there with ICMP port unreachable.
 *
 * Usage: node --import tsx src/lab/servers.ts --name inet --address 203.0.113.10 [--http 80] [--udp 7]
 * Prints one JSON line {"ready":true,...} once both are listening; logs one line per request.
 */
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import type { ServerReply } from './helpers.js';

function main(): void {
  const { values } = parseArgs({
    options: {
      name: { type: 'string', default: 'server' },
      address: { type: 'string' },
      http: { type: 'string', default: '80' },
      udp: { type: 'string', default: '7' },
    },
  });
  if (values.address === undefined) throw new Error('servers.ts: --address is required');
  const address = values.address;
  const name = values.name ?? 'server';
  const instance = randomBytes(4).toString('hex');
  let n = 0;
  let waiting = 2;
  const ready = (): void => {
    if (--waiting === 0) console.log(JSON.stringify({ ready: true, server: name, address, http: Number(values.http), udp: Number(values.udp) }));
  };

  const http = createServer((req, res) => {
    const reply: ServerReply = {
      server: name,
      instance,
      n: ++n,
      client: { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 },
      path: `${req.method} ${req.url}`,
    };
    const body = JSON.stringify(reply);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
    console.log(JSON.stringify({ http: reply }));
  });
  http.on('error', (e) => { console.error(`http server on ${address}:${values.http}: ${e.message}`); process.exit(1); });
  http.listen(Number(values.http), address, ready);

  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    const reply: ServerReply = {
      server: name,
      instance,
      n: ++n,
      client: { address: rinfo.address, port: rinfo.port },
      payload: msg.toString('utf8'),
    };
    udp.send(JSON.stringify(reply), rinfo.port, rinfo.address);
    console.log(JSON.stringify({ udp: reply }));
  });
  udp.on('error', (e) => { console.error(`udp echo on ${address}:${values.udp}: ${e.message}`); process.exit(1); });
  udp.bind(Number(values.udp), address, ready);

  const stop = (): void => { http.close(); udp.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
