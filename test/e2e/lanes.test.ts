// Lanes end to end (docs/ARCHITECTURE.md "Lanes"): `tether run --lanes 2` in a namespace, two data centers with
// the same host address (172.16.0.20, overlapping sites behind ARR interconnects) sending many UDP flows from the
// same source ports to a server on the Internet through the edge's NAT. Checks, with two lanes: every flow's
// datagrams arrive in order, both lanes carried flows, NAT gives the two sites' identical endpoints different
// external ports, every echo returns to the site and socket that sent it; and, after the kernel's multi-queue TUN
// has forgotten which queue each flow was written on (drivers/net/tun.c TUN_FLOW_EXPIRE, 3 s), replies the kernel
// hands to the wrong lane are handed to the flow's owner and still arrive.
// Namespaces tt-<pid>-ln-*; those of dead runs are removed first (test/support/netns.ts). Needs root; never skips.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { LANES_POOL as POOL, lanesClientScript, startLanesRig, type LanesRig } from '../support/lanes-topology.js';
import { LANES, type LanesStatus } from '../support/lanes-daemon.js';

const PREFIX = `tt-${process.pid}-ln-`;
const FLOWS = 48;
const PER_FLOW = 150;
/**
 * Pause between rounds of one datagram per flow: keeps the offered load (2 sites x FLOWS / PACE_MS) under what the
 * Node echo server reads on a shared core. UDP may still lose a datagram under load; order may never be broken.
 */
const PACE_MS = 5;
const CLIENT_TIMEOUT_MS = 60_000;
/** drivers/net/tun.c forgets a flow's queue after TUN_FLOW_EXPIRE (3 s) without a write; twice that and a cleanup pass. */
const KERNEL_FORGETS_MS = 8_000;
const CLIENT_SCRIPT = lanesClientScript({ perFlow: PER_FLOW, paceMs: PACE_MS, timeoutMs: CLIENT_TIMEOUT_MS });

interface Tally {
  echoes: number[];
  late: number[];
  wrong: string[];
}

describe('tether run --lanes 2 (real interfaces, root)', () => {
  let rig: LanesRig | null = null;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lanes test needs root (CAP_NET_ADMIN): run it as root; it is never skipped');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing');
    rig = await startLanesRig(PREFIX, { lanes: Number(process.env.LN_LANES ?? LANES) });
  });

  after(() => rig?.close());

  it('two overlapping sites, many flows: in order per flow, both lanes used, distinct NAT ports, echoes back to their site; late replies handed to their lane', async () => {
    const { edge, server } = rig!;
    const clients = await rig!.sendFromBothSites(CLIENT_SCRIPT, FLOWS);
    // Every datagram in, in order, per flow at the server (NAT endpoints: one per site and flow).
    let report: Record<string, [string, number, ...number[]]> = {};
    let previous = -1;
    for (let tries = 0; tries < 100; tries++) {
      report = JSON.parse(await server.ask('report', '{')) as typeof report;
      // Until all arrived, or nothing more arrives (what is still queued is read within the pause).
      const total = Object.values(report).reduce((n, r) => n + r.length - 2, 0);
      if (total >= 2 * FLOWS * PER_FLOW || total === previous) break;
      previous = total;
      await new Promise((r) => setTimeout(r, 200));
    }
    const endpoints = Object.keys(report);
    assert.equal(endpoints.length, 2 * FLOWS, 'one NAT endpoint per site and flow (the two sites use the same address and ports)');
    let arrived = 0;
    for (const [endpoint, [site, flow, ...seqs]] of Object.entries(report)) {
      assert.equal(endpoint.split(':')[0], POOL);
      for (let k = 1; k < seqs.length; k++) assert.ok(seqs[k] > seqs[k - 1], `${site} flow ${flow} (${endpoint}): ${seqs[k]} after ${seqs[k - 1]}: out of order`);
      arrived += seqs.length;
    }
    // The other lane's status reaches lane 0 once a second (LANE_STATUS_INTERVAL_MS): poll until it has posted this
    // traffic (a short run can end before its first post).
    const lanesSeen = (s: LanesStatus): string[] => s.tuns.filter((t) => t.name.startsWith('tt-ic-') && t.packetsIn > 0).map((t) => t.name);
    const first = await edge.statusUntil((s) => s.flows.ipv4 === 2 * FLOWS && lanesSeen(s).some((n) => n.endsWith('#1')));
    // Losses are UDP's right under load (the diagnostic says where); more than half lost is a broken path.
    assert.ok(arrived > FLOWS * PER_FLOW, `${arrived} of ${2 * FLOWS * PER_FLOW} datagrams arrived: ${JSON.stringify(first)}`);
    const queues = lanesSeen(first);
    assert.ok(queues.some((n) => !n.includes('#')) && queues.some((n) => n.endsWith('#1')), `both lanes read site packets: ${JSON.stringify(first.tuns)}`);
    assert.equal(first.flows.ipv4, 2 * FLOWS, 'the flows of both lanes, summed');

    // The kernel forgets each flow's queue; replies are then hashed to either queue and half reach the wrong lane.
    await new Promise((r) => setTimeout(r, KERNEL_FORGETS_MS));
    server.child.stdin!.write('late\n');
    const tallies = await Promise.all(clients.map(async (c) => JSON.parse(await c.waitFor('{"echoes"')) as Tally));
    for (const [k, t] of tallies.entries()) {
      assert.deepEqual(t.wrong, [], `site ${k + 1}: nothing of another site or flow`);
      assert.ok(t.echoes.every((n) => n > 0), `site ${k + 1}: echoes back to every flow, in order: ${JSON.stringify(t.echoes)}`);
      assert.deepEqual(t.late, new Array<number>(FLOWS).fill(1), `site ${k + 1}: every late reply back`);
    }
    // The other lane's counters reach lane 0's status once a second (LANE_STATUS_INTERVAL_MS): poll until they agree.
    const last = await edge.statusUntil((s) => s.edge.lane_received === s.edge.lane_handed_off);
    assert.ok((last.edge.lane_handed_off ?? 0) > 0, `replies handed to their lane: ${JSON.stringify(last.edge)}`);
    assert.equal(last.edge.lane_received ?? 0, last.edge.lane_handed_off, `every handed-off packet received by its lane: ${JSON.stringify(last.edge)}`);
  });
});
