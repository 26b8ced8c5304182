/**
 * The lab's servers (run inside the internet and data-center namespaces by labUp):
 *   - HTTP on ADDRESS:80 — every response body is unique: the server's name, a random instance id, a request
 *     counter, and the client address and port the server saw (so a test can tell who the server thinks it
 *     talked to: the egress pool after NAT, or a site's own address through the interconnect).
 *   - UDP echo on ADDRESS:7 — replies to the sender with the same kind of JSON, the datagram's payload included.
 *   - GET /download?bytes=N — N bytes of an AES-128-CTR keystream under a fresh random key (incompressible,
 *     never periodic, so a misplaced or repeated segment changes the checksum), with the SHA-256 of exactly
 *     what was written in the trailer `x-sha256` (chunked encoding): the sender's half of a checksummed
 *     download (failover.ts has the receiver's).
 * Nothing listens on UDP 9: the kernel answers there with ICMP port unreachable.
 *
 * Usage: node --import tsx src/lab/servers.ts --name inet --address 203.0.113.10[,2001:db8:113::10] [--http 80] [--udp 7]
 * Every address (IPv4 or IPv6, comma-separated) gets both servers. Prints one JSON line {"ready":true,...} once all
 * are listening; logs one line per request.
 */
import { createSocket } from 'node:dgram';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import type { ServerReply } from './helpers.js';

const DOWNLOAD_PATH = '/download';
const DOWNLOAD_CHUNK = 64 * 1024;
const AES_128_KEY = 16;
const AES_BLOCK = 16;
/** Larger downloads are refused (a typo must not stream for an hour). */
const MAX_DOWNLOAD_BYTES = 4 * 1024 ** 3;

/** Streams `total` keystream bytes, respecting back-pressure; the trailer carries their SHA-256. */
function download(res: ServerResponse, total: number): void {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(AES_128_KEY), randomBytes(AES_BLOCK));
  const zeros = Buffer.alloc(DOWNLOAD_CHUNK);
  const hash = createHash('sha256');
  res.writeHead(200, { 'content-type': 'application/octet-stream', trailer: 'x-sha256', connection: 'close' });
  let sent = 0;
  const pump = (): void => {
    while (sent < total) {
      const chunk = cipher.update(zeros.subarray(0, Math.min(DOWNLOAD_CHUNK, total - sent)));
      sent += chunk.length;
      hash.update(chunk);
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.addTrailers({ 'x-sha256': hash.digest('hex') });
    res.end();
  };
  res.on('error', () => undefined);
  pump();
}

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
  const addresses = values.address.split(',');
  const name = values.name ?? 'server';
  const instance = randomBytes(4).toString('hex');
  let n = 0;
  let waiting = 2 * addresses.length;
  const ready = (): void => {
    if (--waiting === 0) console.log(JSON.stringify({ ready: true, server: name, address: addresses.join(','), http: Number(values.http), udp: Number(values.udp) }));
  };
  const closers: Array<() => void> = [];
  for (const address of addresses) closers.push(serve(address));
  const stop = (): void => { for (const close of closers) close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  /** Both servers on one address; returns what closes them. */
  function serve(address: string): () => void {
    const http = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://server');
      const bytes = Number(url.searchParams.get('bytes'));
      if (url.pathname === DOWNLOAD_PATH && Number.isSafeInteger(bytes) && bytes >= 0 && bytes <= MAX_DOWNLOAD_BYTES) {
        console.log(JSON.stringify({ download: { bytes, client: { address: req.socket.remoteAddress, port: req.socket.remotePort } } }));
        return download(res, bytes);
      }
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

    const udp = createSocket(address.includes(':') ? 'udp6' : 'udp4');
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
    return () => { http.close(); udp.close(); };
  }
}

main();
