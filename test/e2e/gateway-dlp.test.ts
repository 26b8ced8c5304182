/**
 * DLP end to end (issue 12 item 3; docs/POLICY.md "DLP profiles"): the lab's two overlapping WireGuard sites
 * (both 10.0.1.10) POST to an HTTP server on the Internet side that counts the body bytes of each request it gets.
 * A gateway rule scans site-a's HTTP with the `cards` profile (action block): a body with a valid card number is
 * cut (curl sees the connection reset, the server never gets the whole body, the flow log says dlp_cut and names
 * the profile), a number failing Luhn passes, and site-b (no rule) passes with either. A body written a few bytes
 * per segment across the card number is cut too. Root only: fails loudly, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig } from '../../src/lab/config.js';
import { inNamespace, labNames, LAB } from '../../src/lab/index.js';
import type { LabInfo } from '../../src/lab/index.js';
import type { TetherConfig } from '../../src/config/index.js';
import type { FlowLogLine } from '../../src/control/flow-log.js';
import { nsSpawn, type Child } from '../support/ns-child.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `d${(process.pid % 46656).toString(36)}`;
const PORT = 8080;
const URL = `http://${LAB.internet.server}:${PORT}/post`;
const VALID = '4111 1111 1111 1111';
const NOT_LUHN = '4111 1111 1111 1112';
/** A form post with the number in the middle: bytes before it reach the server, the rest must not once it is cut. */
const body = (card: string): string => `${'a'.repeat(3000)}&card=${card}&${'b'.repeat(3000)}`;
const FLOW_LOG = join(labNames(PREFIX).runDir, 'flows.jsonl');
/** Behavioural waits: generous, the machine is shared. */
const REQUEST_TIMEOUT_S = 20;

/** The server: logs one JSON line per request, the body bytes it got and whether the body was complete. */
const SERVER = `
const http = require('node:http');
http.createServer((req, res) => {
  let bytes = 0;
  let done = false;
  req.on('data', (c) => { bytes += c.length; });
  req.on('end', () => { done = true; console.log(JSON.stringify({ bytes, complete: true })); res.end('ok ' + bytes); });
  req.on('close', () => { if (!done) console.log(JSON.stringify({ bytes, complete: false })); });
}).listen(${PORT}, '${LAB.internet.server}', () => console.log(JSON.stringify({ ready: true })));
`;

/** A client that writes the request a few bytes per segment (Nagle off, a pause between writes). */
const SLOW_CLIENT = `
const net = require('node:net');
const [host, port, chunk, text] = process.argv.slice(1);
const req = 'POST /post HTTP/1.1\\r\\nHost: ' + host + '\\r\\nContent-Type: application/x-www-form-urlencoded\\r\\nContent-Length: ' + text.length + '\\r\\nConnection: close\\r\\n\\r\\n';
const s = net.connect(Number(port), host, async () => {
  s.setNoDelay(true);
  s.write(req);
  for (let i = 0; i < text.length && !s.destroyed; i += Number(chunk)) {
    s.write(text.slice(i, i + Number(chunk)));
    await new Promise((r) => setTimeout(r, 10));
  }
});
let reply = '';
s.on('data', (d) => { reply += d; });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(0); });
s.on('close', () => { console.log(JSON.stringify({ reply: reply.split('\\r\\n')[0] })); process.exit(0); });
`;

interface Received { bytes: number; complete: boolean }

let lab: LabInfo;
let server: Child | null = null;
const received: Received[] = [];

function config(): TetherConfig {
  const cfg = defaultConfig();
  cfg.log.flow_log = FLOW_LOG;
  cfg.gateway.dlp_profiles.push({ name: 'cards', action: 'block', cards: true } as TetherConfig['gateway']['dlp_profiles'][number]);
  cfg.gateway.rules.push({ name: 'scan-a-http', action: 'allow', sites: ['site-a'], protocols: ['tcp'], destination_ports: [PORT], dlp: ['cards'] } as unknown as TetherConfig['gateway']['rules'][number]);
  return cfg;
}

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX, config: config() });
  server = nsSpawn(lab.names.internet, ['-e', SERVER], {
    onLine: (l) => {
      const line = JSON.parse(l) as Received & { ready?: boolean };
      if (line.ready !== true) received.push(line);
    },
  });
  await server.waitFor('{"ready":true}');
});

after(async () => {
  server?.child.kill();
});

/** What the server logs for the next request (it logs once per request: complete or not). */
async function nextReceived(before: number): Promise<Received> {
  for (let i = 0; i < REQUEST_TIMEOUT_S * 10 && received.length <= before; i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(received.length > before, 'the server logged no request');
  return received[before];
}

/** curl's POST from a site's host: its exit code and what it printed. */
async function curlPost(ns: string, text: string): Promise<{ code: number | null; out: string; got: Received }> {
  const before = received.length;
  // No "Expect: 100-continue": the body goes at once, as a browser's form post does.
  const r = await inNamespace(ns, 'curl', ['-sS', '--max-time', String(REQUEST_TIMEOUT_S), '-H', 'Expect:', '--data-binary', '@-', URL], { input: text, timeoutMs: (REQUEST_TIMEOUT_S + 10) * 1000 });
  return { code: r.code, out: r.stdout + r.stderr, got: await nextReceived(before) };
}

function flowLog(): FlowLogLine[] {
  if (!existsSync(FLOW_LOG)) return [];
  return readFileSync(FLOW_LOG, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as FlowLogLine);
}

test('site-a: a POST with a valid card number is reset, the server never gets the whole body; the flow log names the profile', async () => {
  const text = body(VALID);
  const r = await curlPost(lab.names.siteA, text);
  // 56: failure receiving (connection reset by peer); 52: empty reply; either way no response.
  assert.ok(r.code === 56 || r.code === 52, `curl should fail with a reset or an empty reply: exit ${r.code}: ${r.out}`);
  assert.equal(r.got.complete, false, `the server got the whole body: ${JSON.stringify(r.got)}`);
  assert.ok(r.got.bytes < text.length);
  let cut: FlowLogLine | undefined;
  for (let i = 0; i < 50 && cut === undefined; i++) {
    cut = flowLog().find((l) => l.reason === 'dlp_cut' && l.dst_port === PORT);
    if (cut === undefined) await new Promise((res) => setTimeout(res, 200));
  }
  assert.ok(cut !== undefined, `no dlp_cut line in the flow log: ${JSON.stringify(flowLog())}`);
  assert.equal(cut.site, 'site-a');
  assert.deepEqual(cut.dlp?.map((d) => [d.profile, d.detector, d.direction, d.action]), [['cards', 'card', 'client_to_server', 'block']]);
  assert.ok(!JSON.stringify(cut).includes('4111'), 'the matched bytes are never logged');
});

test('site-a: a number failing Luhn passes whole', async () => {
  const text = body(NOT_LUHN);
  const r = await curlPost(lab.names.siteA, text);
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out, `ok ${text.length}`);
  assert.deepEqual(r.got, { bytes: text.length, complete: true });
});

test('site-b (same addresses, no rule): both numbers pass whole', async () => {
  for (const card of [VALID, NOT_LUHN]) {
    const text = body(card);
    const r = await curlPost(lab.names.siteB, text);
    assert.equal(r.code, 0, `${card}: ${r.out}`);
    assert.deepEqual(r.got, { bytes: text.length, complete: true });
  }
});

test('site-a: a body written 5 bytes per segment across the card number is still cut', async () => {
  const text = `name=x&card=${VALID}&amount=12`;
  const before = received.length;
  const r = await inNamespace(lab.names.siteA, process.execPath, ['-e', SLOW_CLIENT, LAB.internet.server, String(PORT), '5', text], { timeoutMs: (REQUEST_TIMEOUT_S + 10) * 1000 });
  const result = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { error?: string; reply?: string };
  assert.ok(result.error === 'ECONNRESET' || result.error === 'EPIPE' || result.reply === '', `the client should see a reset: ${r.stdout} ${r.stderr}`);
  const got = await nextReceived(before);
  assert.equal(got.complete, false);
  assert.ok(got.bytes < text.length, `the server got ${got.bytes} of ${text.length} bytes`);
});
