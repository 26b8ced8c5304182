/**
 * Fair shares end to end (issue 11, "Must show"): a host in site-a sends one unanswered UDP datagram from each of
 * its 64 k source ports to the Internet server, over site-a's real wireguard-go tunnel; site-b, the same LAN
 * behind its own tunnel, still opens flows and gets its replies, and site-a's excess is dropped with a counted
 * reason on /metrics. Root only: it fails loudly, never skips. Its own prefix per run; labUp removes leftovers
 * of that prefix first, labDown everything it made.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { httpGetMany, inNamespaceOk, LAB, udpExchange, type LabInfo } from '../../src/lab/index.js';
import { metric } from '../support/live-site.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `q${(process.pid % 46656).toString(36)}`;
/** Every source port but 0. */
const FLOOD_PORTS = 65535;
/** The unanswered destination: the discard port, where the server has no listener. */
const DISCARD_PORT = 9;
/** Datagrams per pause, and the pause: ~20 k datagrams/s, so the tunnel carries them rather than drops them. */
const BURST = 64;
const PAUSE_S = 0.003;
/** Generous bounds, not measurements. */
const FLOOD_BOUND_S = 120;
const COUNTERS_BOUND_MS = 20_000;
const SITE_B_REQUESTS = 20;

/** Sends from every source port once, paced; prints how many were sent. Bounded in count (65,535) and time. */
const SENDER = `
import socket, sys, time
host, dst, dport, burst, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
sent = 0
for port in range(1, ${FLOOD_PORTS + 1}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
        s.sendto(b'flood', (dst, dport))
        sent += 1
    except OSError:
        pass  # a port this namespace already uses (its own wireguard-go)
    finally:
        s.close()
    if port % burst == 0:
        time.sleep(pause)
print(sent)
`;

let lab: LabInfo;

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX });
});

const refused = (): Promise<number> => metric(lab, /^tether_drops_total\{reason="(quota_exceeded|nat_quota_exceeded)"\}$/);
const siteAFlows = (): Promise<number> => metric(lab, /^tether_flows_active\{site="site-a",/);

test('site-a opens 64 k unanswered UDP flows from distinct source ports: site-b still opens flows and gets its replies; site-a\'s excess is dropped and counted', async (t) => {
  const before = await refused();
  const out = await inNamespaceOk(lab.names.siteA, 'timeout', [String(FLOOD_BOUND_S), 'python3', '-c', SENDER, LAB.siteHost, LAB.internet.server, String(DISCARD_PORT), String(BURST), String(PAUSE_S)]);
  const sent = Number(out.trim());
  assert.ok(sent > FLOOD_PORTS - 16, `site-a sent ${sent} datagrams`);

  // The flood's tail is still in the tunnel when the sender exits: wait (bounded) for the counters to settle.
  let dropped = 0;
  const deadline = Date.now() + COUNTERS_BOUND_MS;
  for (let last = -1; Date.now() < deadline; await new Promise((r) => setTimeout(r, 500))) {
    dropped = (await refused()) - before;
    if (dropped > 0 && dropped === last) break;
    last = dropped;
  }
  const held = await siteAFlows();
  t.diagnostic(`site-a sent ${sent}; it holds ${held} flows; ${dropped} refused (quota_exceeded + nat_quota_exceeded)`);
  assert.ok(dropped > 0, 'site-a\'s excess is dropped with a counted reason');
  assert.ok(held < sent, `site-a holds only its share (${held} flows)`);

  // site-b, the same LAN behind its own tunnel: new flows, and every reply comes back to it.
  const answers = await httpGetMany(lab.names.siteB, `http://${LAB.internet.server}/`, SITE_B_REQUESTS);
  for (const a of answers) assert.ok(a.ok, `site-b's request failed: ${a.error ?? `HTTP ${a.status}`}`);
  const echo = await udpExchange(lab.names.siteB, LAB.internet.server, 7, 'site-b after the flood', { sourcePort: 45000 });
  assert.equal(echo.kind, 'reply', `site-b's UDP echo: ${JSON.stringify(echo)}`);
});
