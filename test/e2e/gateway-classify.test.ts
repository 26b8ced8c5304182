/**
 * Hostname rules end to end (issue 12, "Must show"): the lab's two overlapping sites (site-a, site-b: the same
 * 10.0.1.10 behind their own WireGuard tunnels), an HTTPS server in the Internet namespace with its own test CA
 * (made with openssl at test start, in a temp dir) serving two names by SNI, and a plain HTTP server beside it.
 * A rule blocks blocked.lab.example for site-a only: curl from site-a is reset, from site-b gets the page, by SNI
 * and by Host. Bad input from a raw socket in site-a: a ClientHello split over three segments, a client that
 * connects and never sends, garbage first bytes, an oversized head. Root only: it fails loudly, never skips. Its
 * own namespace prefix per run; labUp removes leftovers of that prefix first, labDown everything it made.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config/index.js';
import { inNamespace, inNamespaceOk, LAB, runOk, type LabInfo } from '../../src/lab/index.js';
import { defaultConfig } from '../../src/lab/config.js';
import { edgeApi, metric } from '../support/live-site.js';
import { nsSpawn, type Child } from '../support/ns-child.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `gc${(process.pid % 1296).toString(36)}`;
const SERVER = LAB.internet.server;
const HTTPS_PORT = 8443;
const HTTP_PORT = 8080;
/** A port whose rule blocks when no name arrives in time (the never-sending client). */
const QUIET_PORT = 9443;
const BLOCKED = 'blocked.lab.example';
const OPEN = 'open.lab.example';
/** Long enough that a loaded machine's raw client finishes its pieces inside it (the fallback tests wait it out). */
const WAIT_MS = 5000;
const BUFFER_BYTES = 4096;
/** Generous behavioural bounds, not measurements. */
const CURL_TIMEOUT_S = 15;
const RAW_TIMEOUT_MS = 15_000;

let lab: LabInfo;
let dir: string;
let server: Child | null = null;

async function openssl(args: string[]): Promise<void> {
  await runOk('openssl', args, { context: 'test CA' });
}

/** A test CA and one leaf certificate per name, signed by it (RFC 5280 subjectAltName: curl checks it). */
async function makeCertificates(): Promise<void> {
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=tether test CA', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem')]);
  for (const name of [BLOCKED, OPEN]) {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name}\n`);
    await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`)]);
    await openssl(['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', join(dir, `${name}.ext`), '-out', join(dir, `${name}.pem`)]);
  }
}

/** HTTPS (two names by SNI) on HTTPS_PORT and QUIET_PORT, HTTP on HTTP_PORT; each answers "hello <name>". */
const SERVER_SCRIPT = `
const https = require('node:https'), http = require('node:http'), tls = require('node:tls'), fs = require('node:fs'), path = require('node:path');
const [dir, address, httpsPort, httpPort, quietPort, ...names] = process.argv.slice(1);
const ctx = {};
for (const n of names) ctx[n] = tls.createSecureContext({ key: fs.readFileSync(path.join(dir, n + '.key')), cert: fs.readFileSync(path.join(dir, n + '.pem')) });
const opts = { SNICallback: (n, cb) => cb(null, ctx[n] || ctx[names[0]]) };
const answer = (req, res) => res.end('hello ' + (req.socket.servername || String(req.headers.host).split(':')[0]) + '\\n');
let ready = 0;
const up = () => { if (++ready === 3) console.log('ready'); };
https.createServer(opts, answer).listen(Number(httpsPort), address, up);
https.createServer(opts, answer).listen(Number(quietPort), address, up);
http.createServer(answer).listen(Number(httpPort), address, up);
`;

async function startServer(): Promise<void> {
  server = nsSpawn(lab.names.internet, ['-e', SERVER_SCRIPT, dir, SERVER, String(HTTPS_PORT), String(HTTP_PORT), String(QUIET_PORT), BLOCKED, OPEN]);
  await server.waitFor('ready');
}

/** The ClientHello Node's TLS client sends for `name`, captured on a loopback listener. */
function clientHello(name: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const srv = createServer((sock) => {
      sock.once('data', (d: Buffer) => {
        resolve(d);
        sock.destroy();
        srv.close();
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      const c = tlsConnect({ host: '127.0.0.1', port, servername: name, rejectUnauthorized: false });
      c.on('error', () => undefined);
    });
    srv.on('error', reject);
  });
}

/**
 * A raw TCP client in a site: connects to SERVER:port, writes each piece (50 ms apart, no Nagle), then reads until
 * the connection closes, 300 ms after the first answer, or its bound (a generous one: the machine may be loaded).
 * Prints {"reset":bool,"first":byte or -1,"text":"…"}: what the client saw.
 */
const RAW_CLIENT = `
const net = require('node:net');
const [host, port, wait, ...hex] = process.argv.slice(1);
const pieces = hex.map((h) => Buffer.from(h, 'hex'));
const out = { reset: false, first: -1, text: '' };
const s = net.connect({ host, port: Number(port), noDelay: true }, async () => {
  for (const p of pieces) { s.write(p); await new Promise((r) => setTimeout(r, 50)); }
});
s.on('data', (d) => {
  if (out.first < 0) { out.first = d[0]; setTimeout(() => done(), 300); }
  out.text += d.toString('latin1').slice(0, 64);
});
s.on('error', (e) => { if (e.code === 'ECONNRESET') out.reset = true; else out.text += ' error ' + e.code; });
const done = () => { console.log(JSON.stringify(out)); process.exit(0); };
s.on('close', done);
setTimeout(done, Number(wait));
`;

interface RawResult { reset: boolean; first: number; text: string }

async function raw(ns: string, port: number, pieces: Uint8Array[], waitMs: number): Promise<RawResult> {
  const out = await inNamespaceOk(ns, process.execPath, ['-e', RAW_CLIENT, SERVER, String(port), String(waitMs), ...pieces.map((p) => Buffer.from(p).toString('hex'))], { timeoutMs: waitMs + RAW_TIMEOUT_MS });
  return JSON.parse(out.trim().split('\n').pop()!) as RawResult;
}

async function curl(ns: string, url: string, name: string, port: number): Promise<{ code: number; out: string; err: string }> {
  const r = await inNamespace(ns, 'curl', ['-sS', '-m', String(CURL_TIMEOUT_S), '--cacert', join(dir, 'ca.pem'), '--resolve', `${name}:${port}:${SERVER}`, url]);
  return { code: r.code ?? -1, out: r.stdout, err: r.stderr };
}

before(async (t) => {
  dir = mkdtempSync(join(tmpdir(), 'tether-gw-classify-'));
  const base = defaultConfig();
  const config = validateConfig({
    ...base,
    gateway: {
      classify: { wait_ms: WAIT_MS, buffer_bytes: BUFFER_BYTES, fallback: 'allow' },
      rules: [
        { name: 'quiet-port-a', action: 'allow', sites: ['site-a'], destination_ports: [QUIET_PORT], hostnames: ['*.lab.example'], fallback: 'block' },
        { name: 'no-blocked-at-a', action: 'block', sites: ['site-a'], hostnames: [BLOCKED] },
        { name: 'log-lab-at-a', action: 'log', sites: ['site-a'], hostnames: ['*.lab.example'] },
      ],
    },
  });
  lab = await labUpForTest(t, { prefix: PREFIX, config });
  await makeCertificates();
  await startServer();
});

after(async () => {
  server?.child.kill('SIGTERM');
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

test('HTTPS by SNI: blocked.lab.example is reset from site-a and served to site-b; another name passes site-a, its trail names the rule', async () => {
  const url = `https://${BLOCKED}:${HTTPS_PORT}/`;
  const a = await curl(lab.names.siteA, url, BLOCKED, HTTPS_PORT);
  assert.notEqual(a.code, 0, `site-a must not get the page: ${a.out}`);
  assert.match(a.err, /reset/i, 'the edge reset the connection');
  const b = await curl(lab.names.siteB, url, BLOCKED, HTTPS_PORT);
  assert.equal(b.code, 0, b.err);
  assert.equal(b.out.trim(), `hello ${BLOCKED}`);
  const open = await curl(lab.names.siteA, `https://${OPEN}:${HTTPS_PORT}/`, OPEN, HTTPS_PORT);
  assert.equal(open.code, 0, open.err);
  assert.equal(open.out.trim(), `hello ${OPEN}`);
  // The allowed flow is still in the table (closing): its trail names the rule and the name.
  const list = await edgeApi(lab, 'GET', `/v1/flows?site=site-a&protocol=tcp&dst=${SERVER}/32`);
  const items = (list.body as { items: Array<{ id: string; original: string }> }).items.filter((f) => f.original.includes(`:${HTTPS_PORT}`));
  const trails = await Promise.all(items.map(async (f) => ((await edgeApi(lab, 'GET', `/v1/flows/${f.id}`)).body as { trail: string[] }).trail));
  assert.ok(trails.some((t) => t.includes(`gateway rule 3 (log-lab-at-a) logged by SNI ${OPEN}`)), JSON.stringify(trails));
  assert.ok(await metric(lab, /^tether_gateway_resets_total$/) >= 1);
});

test('plain HTTP by Host: reset from site-a, served to site-b', async () => {
  const url = `http://${BLOCKED}:${HTTP_PORT}/`;
  const a = await curl(lab.names.siteA, url, BLOCKED, HTTP_PORT);
  assert.notEqual(a.code, 0, `site-a must not get the page: ${a.out}`);
  assert.match(a.err, /reset/i);
  const b = await curl(lab.names.siteB, url, BLOCKED, HTTP_PORT);
  assert.equal(b.code, 0, b.err);
  assert.equal(b.out.trim(), `hello ${BLOCKED}`);
});

test('a ClientHello split over three TCP segments is still decided: blocked name reset, open name answered by the server', async () => {
  for (const [name, blocked] of [[BLOCKED, true], [OPEN, false]] as const) {
    const hello = await clientHello(name);
    const cut1 = 20;
    const cut2 = Math.floor(hello.length / 2);
    const r = await raw(lab.names.siteA, HTTPS_PORT, [hello.subarray(0, cut1), hello.subarray(cut1, cut2), hello.subarray(cut2)], RAW_TIMEOUT_MS);
    if (blocked) assert.equal(r.reset, true, `${name}: ${JSON.stringify(r)}`);
    else assert.equal(r.first, 0x16, `${name}: the server's handshake record (RFC 8446 section 5.1) arrives: ${JSON.stringify(r)}`);
  }
});

test('a client that connects and never sends gets its rule\'s fallback (block) after the wait', async () => {
  const before = await metric(lab, /^tether_gateway_classify_total\{outcome="timeout"\}$/);
  const r = await raw(lab.names.siteA, QUIET_PORT, [], WAIT_MS + RAW_TIMEOUT_MS);
  assert.equal(r.reset, true, JSON.stringify(r));
  assert.equal(await metric(lab, /^tether_gateway_classify_total\{outcome="timeout"\}$/), before + 1);
  assert.ok(await metric(lab, /^tether_drops_total\{reason="classify_timeout"\}$/) >= 0);
});

test('garbage first bytes are decided with no name (the server answers); an oversized head gets the fallback (allow), counted', async (t) => {
  const notProtocol = (): Promise<number> => metric(lab, /^tether_gateway_classify_total\{outcome="not_protocol"\}$/);
  const tooLarge = (): Promise<number> => metric(lab, /^tether_gateway_classify_total\{outcome="too_large"\}$/);
  const [np0, tl0] = [await notProtocol(), await tooLarge()];
  const garbage = await raw(lab.names.siteA, HTTP_PORT, [Uint8Array.from([0x00, 0x01, 0xfe, 0x20, 0x0d, 0x0a, 0x0d, 0x0a])], RAW_TIMEOUT_MS);
  assert.equal(garbage.reset, false, JSON.stringify(garbage));
  assert.match(garbage.text, /^HTTP\/1\.1 400/, 'the server itself refused it');
  assert.equal(await notProtocol(), np0 + 1);
  const head = new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: ${BLOCKED}\r\nX-Pad: ${'a'.repeat(BUFFER_BYTES)}`);
  // Two writes: a first piece that leaves the head incomplete, then the rest, past buffer_bytes at once (five writes
  // of 1,000 bytes 50 ms apart could outlast the wait on a loaded machine, and the outcome would be the timeout).
  const pieces = [head.subarray(0, 1000), head.subarray(1000)];
  const big = await raw(lab.names.siteA, HTTP_PORT, [...pieces, new TextEncoder().encode('\r\n\r\n')], RAW_TIMEOUT_MS);
  assert.equal(big.first, 0x48, `the server's "HTTP/1.1 200" arrives once the fallback released the head: ${JSON.stringify(big)}`);
  assert.equal(big.reset, false, `the fallback allows: ${JSON.stringify(big)}`);
  const all: Record<string, number> = {};
  for (const o of ['name', 'no_name', 'not_protocol', 'malformed', 'too_large', 'timeout', 'no_buffer', 'server_first', 'closed']) all[o] = await metric(lab, new RegExp(`^tether_gateway_classify_total\\{outcome="${o}"\\}$`));
  for (const d of ['classify_unheld', 'classify_retransmit', 'classify_gap', 'classify_too_large']) all[d] = await metric(lab, new RegExp(`^tether_drops_total\\{reason="${d}"\\}$`));
  t.diagnostic(JSON.stringify({ big, all }));
  assert.equal(await tooLarge(), tl0 + 1);
});

test('no crash: the edge still answers its API and classifies after all of it', async () => {
  const status = await edgeApi(lab, 'GET', '/v1/flows?limit=1');
  assert.equal(status.status, 200);
  const log = readFileSync(lab.edgeLog!, 'utf8');
  assert.doesNotMatch(log, /uncaught|TypeError|RangeError/i);
});
