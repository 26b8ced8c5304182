/**
 * The native flow cache end to end in the lab (daemon.flow_cache; docs/ARCHITECTURE.md "Native flow cache"): real
 * ping from the data-center server through the dc-link interconnect to the Internet server (SNAT out of the egress
 * TUN, ARR back). Replies come back; the cache forwards the established flow's packets (hits, wakeups with no JS
 * call); the pipeline's per-onramp counters grow with every ping; a firewall rule denying ICMP stops the pings at
 * once (the policy epoch flushes the cache, JS decides again and cuts); the flow, kept alive by the cache's hits for
 * longer than its ICMP timeout, expires once the pings stop. Root only: fails loudly, never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureLabTools, LAB, labDown, labUp, type LabInfo } from '../../src/lab/index.js';
import { defaultConfig } from '../../src/lab/config.js';
import { inNamespace, inNamespaceOk } from '../../src/lab/exec.js';
import { edgeApi, metric } from '../support/live-site.js';

const PREFIX = `of${(process.pid % 46656).toString(36)}`;
/** The ICMP idle timeout of this lab, seconds: short, so the test sees the flow expire. */
const ICMP_TIMEOUT_S = 3;
/** Pings kept up longer than the timeout: only the cache's hits (folded into the flow) keep the flow alive. */
const PING_INTERVAL_S = 0.2;
const PINGS = 30;
const WAIT_MS = 30_000;
/** The ping running across the policy change: long enough to outlast it. */
const RUNNING_PINGS = 60;
const RUNNING_INTERVAL_S = 0.1;
/** Cache hits (requests and replies) the running ping makes before the rule is added. */
const CACHED_BEFORE_RULE = 10;
const POLL_MS = 200;

let lab: LabInfo;

async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < WAIT_MS) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** ping's "N received" from its summary. */
function received(out: string): number {
  const m = /(\d+) received/.exec(out);
  return m === null ? 0 : Number(m[1]);
}

const ping = async (count: number, interval = PING_INTERVAL_S): Promise<string> =>
  (await inNamespace(lab.names.dc, 'ping', ['-n', '-c', String(count), '-i', String(interval), '-W', '1', LAB.internet.server])).stdout;

const dcRx = (): Promise<number> => metric(lab, /^tether_packets_total\{onramp="dc-link",direction="rx"\}/);
const dcFlows = (): Promise<number> => metric(lab, /^tether_flows_active\{.*onramp="dc-link"/);

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the end-to-end tests need root (network namespaces, TUN devices); CI runs them as root');
  await ensureLabTools();
  const cfg = defaultConfig();
  cfg.daemon.flow_cache = true;
  cfg.flows.timeouts.icmp = ICMP_TIMEOUT_S;
  lab = await labUp({ prefix: PREFIX, config: cfg });
  // The data center reaches the Internet server through the edge (the lab routes only the sites and the pool there).
  await inNamespaceOk(lab.names.dc, 'ip', ['route', 'replace', `${LAB.internet.server}/32`, 'via', LAB.dc.edge]);
});

after(async () => {
  await labDown({ prefix: PREFIX });
});

test('ping through an interconnect with the flow cache: replies, hits without JS, counters per ping, kept alive while pinging', async (t) => {
  const rx0 = await dcRx();
  const out = await ping(PINGS);
  assert.equal(received(out), PINGS, `every echo answered:\n${out}`);
  // Every request counted at the pipeline's dc-link counters, the cached ones by the addon.
  assert.ok((await dcRx()) - rx0 >= PINGS, 'per-onramp rx counters grew per ping');
  const hits = await metric(lab, /^tether_flow_cache_packets_total/);
  // The first exchange sets the flow up and the second installs the request direction: the rest are the cache's.
  assert.ok(hits >= 2 * (PINGS - 3), `cache hits: ${hits}`);
  assert.ok(await metric(lab, /^tether_flow_cache_events_total\{event="wakeup_without_js"\}/) >= PINGS - 3, 'wakeups without a JS call');
  assert.ok(await metric(lab, /^tether_flow_cache_entries/) >= 2);
  // Follow-through: after a hit the addon reads the TUN it just wrote; the lab's Internet server is a namespace on this
  // kernel, so its reply is queued within the write (softirq) and read there, not after a libuv iteration.
  const followReads = await metric(lab, /^tether_flow_cache_events_total\{event="follow_read"\}/);
  const followPackets = await metric(lab, /^tether_flow_cache_events_total\{event="follow_packet"\}/);
  t.diagnostic(`follow-through: ${followReads} reads found ${followPackets} packets`);
  assert.ok(followReads > 0 && followPackets > 0, `follow-through reads ${followReads}, packets found ${followPackets}`);
  // 30 pings at 0.2 s: 6 s, twice the ICMP timeout; one flow (ping keeps its id), still there.
  assert.ok((await dcFlows()) >= 1, 'the flow outlived its idle timeout while the cache carried it');
  // Once the pings stop, the flow expires (and its entries go with it).
  await until('the ping flow to expire', async () => (await dcFlows()) === 0);
  await until('the cache entries to go', async () => (await metric(lab, /^tether_flow_cache_entries/)) === 0);
});

test('a firewall rule denying ICMP stops a running ping at once (the policy epoch flushes the cache)', async () => {
  const hits = await metric(lab, /^tether_flow_cache_packets_total/);
  // One ping process (one flow: ping keeps its id) across the change.
  const running = ping(RUNNING_PINGS, RUNNING_INTERVAL_S);
  await until('the running ping to be cached', async () => (await metric(lab, /^tether_flow_cache_packets_total/)) >= hits + CACHED_BEFORE_RULE);
  const rule = await edgeApi(lab, 'POST', '/v1/firewall/rules', { name: 'no-icmp-dc', action: 'deny', sites: ['dc'], protocols: ['icmp'] });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  const out = await running;
  const seqs = [...out.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1]));
  assert.ok(seqs.length >= CACHED_BEFORE_RULE / 2 && seqs.length < RUNNING_PINGS, `some answered, then none:\n${out}`);
  // Answered: a run from the first; nothing after the cut (no cached packet slipped through).
  assert.deepEqual(seqs, seqs.map((_, k) => k + 1), `answers stop at the cut:\n${out}`);
  assert.ok(await metric(lab, /^tether_flows_cut_by_policy_total/) >= 1, 'the flow was cut by the new epoch');
});
