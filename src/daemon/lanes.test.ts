import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../config/index.js';
import type { EdgeStatus } from '../control/metrics.js';
import { ApplyError } from '../control/apply.js';
import { Edge } from './edge.js';
import { mergeLaneStatus } from './lanes.js';
import { LiveEdge } from './live.js';

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

const INTERCONNECT_ONLY = `
sites: [{ name: dc }]
onramps:
  - { name: dc-link, type: interconnect, site: dc, automatic_return_routing: true, interconnect: { link: veth-dc } }
routes: [{ prefix: 0.0.0.0/0, next_hop: internet }]
egress: { interface: tt-egress, addresses: [198.51.100.1] }
daemon: { lanes: 2 }
`;
/** The same with a GRE onramp first. */
const WITH_GRE = INTERCONNECT_ONLY.replace('onramps:\n', 'onramps:\n  - { name: branch, type: gre, site: dc, automatic_return_routing: true, gre: { local: 192.168.103.1, remote: 192.168.103.2 } }\n');

function status(over: Partial<EdgeStatus>): EdgeStatus {
  return {
    tuns: [], edge: {}, pipelineDrops: {}, greDrops: {}, wireguard: [], flows: { ipv4: 0, ipv6: 0 },
    icmp: { timeExceededSent: 0, rateLimited: 0, noSource: 0, echoAnswered: 0 }, ipsec: [], esp: [], ...over,
  };
}

describe('lanes (no devices)', () => {
  it('with more than one lane, a tunnel onramp is refused at start and in a live change, naming it', () => {
    const gre = loadConfig(WITH_GRE, 'edge.yaml');
    assert.throws(() => new Edge({ config: gre, log: silent, hugePages: false }), /onramp branch is of type gre; with 2 lanes \(daemon\.lanes\) every onramp must be an interconnect/);
    // One lane: the same configuration is fine.
    assert.doesNotThrow(() => new Edge({ config: gre, log: silent, hugePages: false, lanes: 1 }));
    const cfg = loadConfig(INTERCONNECT_ONLY, 'edge.yaml');
    const edge = new Edge({ config: cfg, log: silent, hugePages: false });
    assert.equal(edge.laneCount, 2);
    const live = new LiveEdge(edge, cfg);
    assert.throws(() => live.checkConfig(gre), (e: unknown) => e instanceof ApplyError && e.path === 'onramps[0].type' && /onramp branch is of type gre/.test(e.message));
    assert.throws(() => live.applyConfig(gre), ApplyError);
    // The edge's NAT hands out lane 0's half of the ports.
    assert.equal(edge.pipeline.snat?.laneOfExternal(17, 1024), 0);
    assert.equal(edge.pipeline.snat?.portsInUse().find((u) => u.protocol === 17)?.total, 32256);
  });

  it('mergeLaneStatus sums counters, drops and flows, and names each lane\'s TUN queues', () => {
    const own = status({ tuns: [{ name: 'tt-ic-1', packetsIn: 5, packetsOut: 4, dropsBusy: 0 }], edge: { lane_handed_off: 2 }, pipelineDrops: { no_route: 1 }, flows: { ipv4: 3, ipv6: 1 } });
    const other = status({ tuns: [{ name: 'tt-ic-1', packetsIn: 7, packetsOut: 6, dropsBusy: 1 }], edge: { lane_received: 2, lane_handed_off: 1 }, pipelineDrops: { no_route: 2, ttl: 1 }, flows: { ipv4: 4, ipv6: 0 } });
    const m = mergeLaneStatus(own, [other]);
    assert.deepEqual(m.tuns.map((t) => [t.name, t.packetsIn]), [['tt-ic-1', 5], ['tt-ic-1#1', 7]]);
    assert.deepEqual(m.edge, { lane_handed_off: 3, lane_received: 2 });
    assert.deepEqual(m.pipelineDrops, { no_route: 3, ttl: 1 });
    assert.deepEqual(m.flows, { ipv4: 7, ipv6: 1 });
    assert.deepEqual(own.edge, { lane_handed_off: 2 }, 'the lane\'s own status is not changed');
    assert.equal(mergeLaneStatus(own, []), own);
  });

  it('mergeLaneStatus adds up every lane\'s busy polling (each lane\'s thread spins on its own queues)', () => {
    const spin = (sessions: number, packets: number): EdgeStatus['busyPoll'] => ({ budgetUs: 50, sessions, spinNs: sessions * 1000, packets });
    const m = mergeLaneStatus(status({ busyPoll: spin(2, 3) }), [status({ busyPoll: spin(5, 7) }), status({ busyPoll: spin(1, 0) })]);
    assert.deepEqual(m.busyPoll, { budgetUs: 50, sessions: 8, spinNs: 8000, packets: 10 });
    // A lane whose status has none yet (not running) adds nothing; lane 0 without one takes the others'.
    assert.deepEqual(mergeLaneStatus(status({ busyPoll: spin(2, 3) }), [status({})]).busyPoll, spin(2, 3));
    assert.deepEqual(mergeLaneStatus(status({}), [status({ busyPoll: spin(1, 1) })]).busyPoll, spin(1, 1));
  });
});
