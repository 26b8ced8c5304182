// Observability across lanes end to end (docs/ARCHITECTURE.md "Lanes"): `tether run --lanes 2` with its API, the
// lanes topology (test/support/lanes-topology.ts: two overlapping data centers behind ARR interconnects, a server
// on the Internet). UDP flows from both sites, spread over both lanes by the kernel; then the API shows every lane:
// /v1/flows lists every flow with its site and onramp, a flow of lane 1 is found by id with its trail, a capture
// running during the traffic holds packets of flows of both lanes, /metrics' per-onramp packet counters equal what
// the sites sent, and the flow log has every lane's flows as whole lines in one file, those that ended just before a
// stop (SIGTERM) included.
// Namespaces tt-<pid>-lb-*; those of dead runs are removed first (test/support/netns.ts). Needs root; never skips.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LANE_FLOW_STRIDE } from '../../src/control/flow-walk.js';
import { LANES_BASE_PORT, lanesClientScript, lanesNamespaces, startLanesRig, type LanesRig } from '../support/lanes-topology.js';
import { pollUntil as poll } from '../support/lanes-daemon.js';

const PREFIX = `tt-${process.pid}-lb-`;
const NS = lanesNamespaces(PREFIX);
const FLOWS = 24;
const PER_FLOW = 20;
/** A light load: every datagram reaches the edge (the counters must equal what was sent), none queues up. */
const PACE_MS = 10;
const CLIENT_TIMEOUT_MS = 120_000;
const API = 'http://127.0.0.1:8470';

interface FlowItem { id: string; site: string; onramp: string; original: string }

describe('tether run --lanes 2: the API sees every lane (real interfaces, root)', () => {
  let rig: LanesRig | null = null;
  let dir = '';
  let token = '';

  /** curl inside the edge's namespace (the API listens on its loopback); `out`: write the body there. */
  const curl = (method: string, path: string, body?: object, out?: string): string =>
    execFileSync('ip', ['netns', 'exec', NS.edge, 'curl', '-sS', '--fail-with-body', '-X', method, '-H', `authorization: Bearer ${token}`,
      ...(body !== undefined ? ['-H', 'content-type: application/json', '-d', JSON.stringify(body)] : []), ...(out !== undefined ? ['-o', out] : []), `${API}${path}`], { encoding: 'utf8' });
  const get = <T>(path: string): T => JSON.parse(curl('GET', path)) as T;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lanes observability test needs root (CAP_NET_ADMIN): run it as root; it is never skipped');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing');
    for (const tool of ['curl', 'tshark']) execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    rig = await startLanesRig(PREFIX, { api: true, flowLog: true });
    dir = rig.dir;
    token = readFileSync(join(dir, 'token'), 'utf8').trim();
  });

  after(() => rig?.close());

  it('flows of both sites on both lanes: listed, found by id with their trail, captured, counted, logged', async () => {
    // A capture of dc1's onramp runs while the sites send.
    const capture = JSON.parse(curl('POST', '/v1/captures', { onramp: 'dc1-link', filter: 'udp' })) as { id: number };
    const script = lanesClientScript({ perFlow: PER_FLOW, paceMs: PACE_MS, timeoutMs: CLIENT_TIMEOUT_MS });
    await rig!.sendFromBothSites(script, FLOWS);

    // Both lanes read site packets (the kernel spreads the flows over the queues; lane 1's counts reach lane 0's
    // status within a second).
    const bothLanes = (tuns: Array<{ name: string; packetsIn: number }>): boolean => {
      const queues = tuns.filter((t) => t.name.startsWith('tt-ic-') && t.packetsIn > 0).map((t) => t.name);
      return queues.some((n) => !n.includes('#')) && queues.some((n) => n.endsWith('#1'));
    };
    const st = await rig!.edge.statusUntil((s) => bothLanes(s.tuns));
    assert.ok(bothLanes(st.tuns), `both lanes read site packets: ${JSON.stringify(st.tuns)}`);

    // Every flow, of both lanes, with its site and onramp.
    const page = get<{ total: number; items: FlowItem[]; cursor: string | null }>('/v1/flows?protocol=udp&limit=1000');
    assert.equal(page.cursor, null);
    assert.equal(page.items.length, 2 * FLOWS, JSON.stringify(page.items.map((f) => [f.id, f.site, f.original])));
    for (const site of ['dc1', 'dc2']) {
      const mine = page.items.filter((f) => f.site === site);
      assert.equal(mine.length, FLOWS, `${site}: one flow per socket`);
      assert.ok(mine.every((f) => f.onramp === `${site}-link`), `${site}: its onramp`);
    }
    const lane = (f: FlowItem): number => Math.floor(Number(f.id.split('-')[1]) / LANE_FLOW_STRIDE);
    const onLane1 = page.items.filter((f) => lane(f) === 1);
    const dc2OnLane1 = onLane1.filter((f) => f.site === 'dc2').length;
    assert.ok(onLane1.length > 0 && onLane1.length < 2 * FLOWS, `both lanes own flows: ${page.items.map((f) => f.id).join(' ')}`);

    // A flow of lane 1 by its id, with its trail.
    const one = get<FlowItem & { trail: string[] }>(`/v1/flows/${onLane1[0].id}`);
    assert.equal(one.id, onLane1[0].id);
    assert.ok(one.trail.some((l) => l.startsWith(`started by onramp ${one.onramp} (site ${one.site})`)), one.trail.join('\n'));
    assert.ok(one.trail.some((l) => /owned by lane 1/.test(l)), one.trail.join('\n'));

    // The capture: packets of dc1's flows of both lanes, in one pcapng.
    curl('POST', `/v1/captures/${capture.id}/stop`);
    const file = join(dir, 'dc1.pcapng');
    curl('GET', `/v1/captures/${capture.id}/pcapng`, undefined, file);
    const comments = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8' }).trim().split('\n');
    const captured = new Set(comments.map((c) => /flow (4-\d+)/.exec(c)?.[1]).filter((f) => f !== undefined));
    const dc1Lanes = new Set(page.items.filter((f) => f.site === 'dc1' && captured.has(f.id)).map(lane));
    const dc1Owners = new Set(page.items.filter((f) => f.site === 'dc1').map(lane));
    assert.deepEqual([...dc1Lanes].sort(), [...dc1Owners].sort(), `the capture holds dc1's flows of every lane that owns some: ${[...captured].join(' ')}`);
    assert.ok(dc1Owners.size === 2 || onLane1.some((f) => f.site === 'dc2'), 'a lane-1 flow exists');

    // /metrics: what each site sent, summed over the lanes (the other lane's counters arrive within a second). The
    // kernel also writes a few packets of its own into each TUN (IPv6 neighbour discovery and MLD once it is up):
    // the pipeline drops those, counted by onramp, so received minus dropped is what the site sent.
    const sent = FLOWS * PER_FLOW;
    const value = (text: string, series: string): number => Number(new RegExp(`${series.replace(/[{}]/g, '\\$&')} (\\d+)`).exec(text)?.[1] ?? -1);
    const fromSite = (text: string, onramp: string): number =>
      value(text, `tether_packets_total{onramp="${onramp}",direction="rx"}`) - value(text, `tether_port_drops_total{onramp="${onramp}"}`);
    const metrics = await poll(() => curl('GET', '/metrics'), (m) => fromSite(m, 'dc1-link') === sent && fromSite(m, 'dc2-link') === sent);
    assert.deepEqual([fromSite(metrics, 'dc1-link'), fromSite(metrics, 'dc2-link')], [sent, sent],
      metrics.split('\n').filter((l) => /^tether_(packets|port_drops|drops)_total/.test(l)).join('\n'));
    const flowsMetric = /tether_flow_table_flows\{family="ipv4"\} (\d+)/.exec(metrics)?.[1];
    assert.equal(Number(flowsMetric), 2 * FLOWS);

    // The flow log: removing dc2's onramp ends its flows on both lanes; each lane logs its own, lane 0 writes every
    // chunk of whole lines to the one file.
    curl('DELETE', '/v1/onramps/dc2-link');
    const logFile = join(dir, 'flows.log');
    type Ended = { reason: string; src_port: number; site: string; onramp: string };
    const ended = (): Ended[] => {
      const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      // Every line whole: JSON.parse throws on a half line or two lines run together.
      return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Ended);
    };
    const removed = (l: Ended[]): number[] => l.filter((e) => e.reason === 'onramp_removed').map((e) => e.src_port).sort((x, y) => x - y);
    const lines = await poll(ended, (l) => removed(l).length >= FLOWS);
    assert.deepEqual(removed(lines), Array.from({ length: FLOWS }, (_, k) => LANES_BASE_PORT + k), 'every dc2 flow of both lanes, once');
    // Each names the onramp and site it was set up with, though both lanes forgot the onramp before writing it.
    const named = lines.filter((e) => e.reason === 'onramp_removed').map((e) => `${e.site} ${e.onramp}`);
    assert.deepEqual(named, new Array<string>(FLOWS).fill('dc2 dc2-link'), 'the removed onramp and its site by name');
    assert.ok(dc2OnLane1 > 0 || dc1Owners.size === 2, 'the log covers a lane-1 flow');

    // Shutdown right after flows end: dc1's onramp removed (its flows end on both lanes, lane 1's when it applies
    // the change) and the daemon told to stop at once. Lane 0 has every lane flush its flow log before it closes it
    // (the ask follows the change on the lane's port), so lane 1's last lines, not yet due (250 ms), are there too.
    curl('DELETE', '/v1/onramps/dc1-link');
    rig!.edge.child.child.kill('SIGTERM');
    assert.equal(await rig!.edge.child.exited, 0, 'the daemon stopped cleanly');
    const both = Array.from({ length: FLOWS }, (_, k) => [LANES_BASE_PORT + k, LANES_BASE_PORT + k]).flat();
    assert.deepEqual(removed(ended()), both, 'every flow of dc2 and dc1 (the last ones ended just before the stop), once each');
    assert.equal(dc1Owners.size, 2, 'dc1 had flows on both lanes (24 flows hashed over two queues)');
  });
});
