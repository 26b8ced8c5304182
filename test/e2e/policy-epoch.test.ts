/**
 * Issue 12, policy epochs, end to end in the lab: two overlapping sites download from the Internet server through
 * the edge (curl, rate-limited, over their WireGuard tunnels); a firewall rule denying site A's download is added
 * through the API while both run. Site A's download is cut (the flow is decided again at its next packet and
 * ended); site B's, which the rule does not concern, completes with the SHA-256 the server sent in its trailer.
 * The flow log names the cut: reason policy_cut, the epoch and the rule. Root only: fails loudly, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inNamespaceOk, LAB, type LabInfo } from '../../src/lab/index.js';
import { defaultConfig } from '../../src/lab/config.js';
import type { FlowLogLine } from '../../src/control/flow-log.js';
import { edgeApi, metric } from '../support/live-site.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `e${(process.pid % 46656).toString(36)}`;
const FILES = join(tmpdir(), `tether-${PREFIX}-epoch`);
const FLOW_LOG = `${FILES}-flows.jsonl`;
/** Bytes per second each curl may take: slow enough that both downloads overlap the change. */
const RATE = '1M';
/** Site A asks for far more than it can get before the cut; site B's completes in about ten seconds. */
const A_BYTES = 512 * 1024 * 1024;
const B_BYTES = 10 * 1024 * 1024;
/** Both downloads are under way (bytes on disk) before the rule is added. */
const STARTED_BYTES = 512 * 1024;
/** curl gives up when fewer than 1 byte/s arrive for this long: a download whose reset was lost ends instead of hanging. */
const STALL_SECONDS = 6;
const WAIT_MS = 60_000;
/**
 * Site A's receive buffer (net.ipv4.tcp_rmem, per namespace): min, default, max bytes. curl's --limit-rate paces its
 * reads, not the kernel's window: with this machine's 32 MiB maximum, under load (curl starved, then catching up)
 * site A's socket held megabytes the edge had passed before the cut (Recv-Q 1.3 MB seen), and Linux hands queued
 * data to the reader before the reset's error: a run counted 8.4 MB "after the cut". Capped, what is in flight or
 * queued at the cut is a few windows again.
 */
const SITE_A_TCP_RMEM = '4096 131072 262144';
const POLL_MS = 200;

let lab: LabInfo;

interface Curl {
  body: string;
  headers: string;
  exit: Promise<number>;
}

function curl(ns: string, name: string, bytes: number): Curl {
  const body = `${FILES}-${name}.body`;
  const headers = `${FILES}-${name}.headers`;
  const url = `http://${LAB.internet.server}/download?bytes=${bytes}`;
  const child = spawn('ip', ['netns', 'exec', ns, 'curl', '-s', '--limit-rate', RATE, '--speed-limit', '1', '--speed-time', String(STALL_SECONDS), '-D', headers, '-o', body, url], { stdio: 'ignore' });
  return { body, headers, exit: new Promise((resolve) => child.on('close', (code) => resolve(code ?? -1))) };
}

const size = (path: string): number => (existsSync(path) ? statSync(path).size : 0);

async function until(what: string, probe: () => boolean | Promise<boolean>): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < WAIT_MS) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** curl's exit status when the connection is reset while it receives (CURLE_RECV_ERROR). */
const CURL_RECV_ERROR = 56;

function cleanFiles(): void {
  for (const f of ['a.body', 'a.headers', 'b.body', 'b.headers', 'flows.jsonl']) rmSync(`${FILES}-${f}`, { force: true });
}

before(async (t) => {
  cleanFiles();
  const cfg = defaultConfig();
  cfg.log.flow_log = FLOW_LOG;
  lab = await labUpForTest(t, { prefix: PREFIX, config: cfg });
  await inNamespaceOk(lab.names.siteA, 'sysctl', ['-qw', `net.ipv4.tcp_rmem=${SITE_A_TCP_RMEM}`]);
});

after(async () => {
  cleanFiles();
});

test('a firewall rule added through the API cuts site A\'s running download; site B\'s completes intact; the flow log names the cut', async () => {
  const epochBefore = await metric(lab, /^tether_policy_epoch$/);
  assert.ok(epochBefore >= 1, 'the epoch is in /metrics');
  const a = curl(lab.names.siteA, 'a', A_BYTES);
  const b = curl(lab.names.siteB, 'b', B_BYTES);
  await until('both downloads to be under way', () => size(a.body) >= STARTED_BYTES && size(b.body) >= STARTED_BYTES);

  const rule = await edgeApi(lab, 'POST', '/v1/firewall/rules', { name: 'no-downloads-a', action: 'deny', sites: ['site-a'], protocols: ['tcp'], destination_ports: [80] });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  const ruleId = (rule.body as { id: number }).id;
  const cutAt = size(a.body);

  // Site A: the cut resets both ends (curl 56: "Failure when receiving data from the peer", the reset); without the
  // reset it would stall until the speed limit for STALL_SECONDS gave up (28), and a completed download (0) means
  // the flow was not cut at all.
  const aExit = await a.exit;
  assert.equal(aExit, CURL_RECV_ERROR, `site A's curl ended with ${aExit}, not ${CURL_RECV_ERROR} (reset by the cut)`);
  const aBytes = size(a.body);
  assert.ok(aBytes < A_BYTES, 'site A\'s download did not complete');
  // What was in flight when the rule came: at most a few windows (SITE_A_TCP_RMEM keeps them small).
  assert.ok(aBytes - cutAt < 4 * 1024 * 1024, `site A got ${aBytes - cutAt} bytes after the cut`);

  // Site B: complete, and exactly what the server sent.
  assert.equal(await b.exit, 0, 'site B\'s curl succeeded');
  const body = readFileSync(b.body);
  assert.equal(body.length, B_BYTES);
  const trailer = /^x-sha256: ([0-9a-f]{64})/m.exec(readFileSync(b.headers, 'utf8'));
  assert.ok(trailer !== null, 'the server\'s x-sha256 trailer arrived');
  assert.equal(createHash('sha256').update(body).digest('hex'), trailer[1], 'site B\'s bytes are the server\'s');

  // The flow log: site A's download, cut by the new epoch's rule.
  let cut: FlowLogLine | undefined;
  await until('the cut in the flow log', () => {
    const lines = existsSync(FLOW_LOG) ? readFileSync(FLOW_LOG, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as FlowLogLine) : [];
    cut = lines.find((l) => l.reason === 'policy_cut' && l.site === 'site-a' && l.dst === LAB.internet.server && l.dst_port === 80);
    return cut !== undefined;
  });
  assert.equal(cut!.cut?.by, 'firewall');
  assert.equal(cut!.cut?.rule, ruleId);
  assert.equal(cut!.cut?.rule_name, 'no-downloads-a');
  assert.ok(cut!.cut!.policy_epoch > epochBefore, `cut under epoch ${cut!.cut!.policy_epoch}, after ${epochBefore}`);
  assert.ok(cut!.bytes_reply >= STARTED_BYTES, `it is the download that ran: ${JSON.stringify(cut)}`);
  assert.ok(await metric(lab, /^tether_flows_cut_by_policy_total$/) >= 1);
  assert.equal(await metric(lab, /^tether_firewall_rule_hits_total\{rule_id="0"/) > 0, true, 'the default action allowed the downloads at setup');
});
