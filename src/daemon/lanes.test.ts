import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../config/index.js';
import type { EdgeStatus } from '../control/metrics.js';
import { Edge } from './edge.js';
import { LaneHost, LaneTraffic, mergeLaneStatus } from './lanes.js';
import { LiveEdge } from './live.js';
import { HandoffRing, MIN_RING_BYTES } from '../common/handoff-ring.js';
import { PacketBatch } from '../common/packet-batch.js';
import { EdgeCounter } from './transports/counters.js';
import { GreTransport } from './transports/gre.js';
import type { Deliverer } from './transports/transport.js';
import { ViaLaneZero } from './transports/via-lane-zero.js';
import { transportHost } from '../../test/support/transport-host.js';

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

// Two X25519 keys (any 32 bytes in base64 are one): the unit test never does a handshake.
const PRIVATE_KEY = Buffer.alloc(32, 1).toString('base64');
const PUBLIC_KEY = Buffer.alloc(32, 2).toString('base64');

/** The transport the edge delivers `port` with (its private delivery table: what the packet path uses). */
function deliveryOf(edge: Edge, port: number): Deliverer | null {
  return (edge as unknown as { delivery: { of(p: number): Deliverer | null } }).delivery.of(port);
}

function status(over: Partial<EdgeStatus>): EdgeStatus {
  return {
    tuns: [], edge: {}, pipelineDrops: {}, greDrops: {}, wireguard: [], flows: { ipv4: 0, ipv6: 0 },
    icmp: { timeExceededSent: 0, rateLimited: 0, noSource: 0, echoAnswered: 0 }, ipsec: [], esp: [], ...over,
  };
}

describe('lanes (no devices)', () => {
  it('with more than one lane, tunnel onramps run: lane 0 keeps their transports, lanes ≥ 1 deliver to them through lane 0', () => {
    const gre = loadConfig(WITH_GRE, 'edge.yaml');
    const rings = LaneHost.rings(2);
    const zero = new Edge({ config: gre, log: silent, hugePages: false, wiring: { index: 0, count: 2, rings } });
    const one = new Edge({ config: gre, log: silent, hugePages: false, wiring: { index: 1, count: 2, rings } });
    const branch = zero.ids.onramps.get('branch')!;
    assert.equal(one.ids.onramps.get('branch'), branch, 'every lane computes the same ids');
    assert.ok(deliveryOf(zero, branch) instanceof GreTransport, 'lane 0: the GRE transport itself');
    const via = deliveryOf(one, branch);
    assert.ok(via instanceof ViaLaneZero, 'lane 1: a stand-in that sends through lane 0');
    // Lane 0's health checks judge the tunnel; lane 1's pipeline hears it (lane-worker.ts 'health').
    assert.equal(one.pipeline.ports.up[branch], 1);
    one.applyLaneZeroHealth(branch, 'down');
    assert.equal(one.pipeline.ports.up[branch], 0, 'down on lane 1 too: its ARR and routes avoid the tunnel');
    one.applyLaneZeroHealth(branch, 'healthy');
    assert.equal(one.pipeline.ports.up[branch], 1);
    // Lane 0's NAT hands out its half of the ports (replies to tunnel sites' flows come back to lane 0 by port).
    assert.equal(zero.pipeline.snat?.portsInUse().find((u) => u.protocol === 17)?.total, 32256);

    // A live change on lane 1 adding a WireGuard onramp: a stand-in for it too (no keys used, no device opened).
    const live = new LiveEdge(one, gre);
    const withWg = loadConfig(WITH_GRE.replace('onramps:\n', `onramps:\n  - { name: wg-site, id: 9, type: wireguard, site: dc, automatic_return_routing: true, wireguard: { device: wg0, public_key: ${PUBLIC_KEY}, allowed_ips: [10.0.1.0/24] } }\n`) + `wireguard_devices: [{ name: wg0, private_key: ${PRIVATE_KEY}, listen_address: 192.168.104.1, listen_port: 51820 }]\n`, 'edge.yaml');
    live.applyConfig(withWg);
    const wg = one.ids.onramps.get('wg-site')!;
    assert.equal(wg, 9);
    assert.ok(deliveryOf(one, wg) instanceof ViaLaneZero);
    live.applyConfig(gre);
    assert.equal(deliveryOf(one, wg), null, 'removed with its onramp');
  });

  it('health across lanes: lane 1 publishes its per-onramp packet counts into the board lane 0\'s health checks read', () => {
    const gre = loadConfig(WITH_GRE, 'edge.yaml');
    const rings = LaneHost.rings(2);
    const traffic = LaneTraffic.create(2);
    const zero = new Edge({ config: gre, log: silent, hugePages: false, wiring: { index: 0, count: 2, rings, traffic } });
    const one = new Edge({ config: gre, log: silent, hugePages: false, wiring: { index: 1, count: 2, rings, traffic } });
    const branch = zero.ids.onramps.get('branch')!;
    const link = zero.ids.onramps.get('dc-link')!;
    one.pipeline.counters.txPackets[branch] = 7;
    one.pipeline.counters.rxPackets[link] = 11;
    one.publishTraffic();
    // What lane 0's EdgeHealth adds to its own counts at each look (HealthHost.lanes).
    const lanes = (zero as unknown as { health: { host: { lanes?: LaneTraffic } } }).health.host.lanes;
    assert.ok(lanes !== undefined, 'lane 0\'s health checks read the board');
    assert.deepEqual([lanes.sent(branch), lanes.received(branch), lanes.sent(link), lanes.received(link)], [7, 0, 0, 11]);
    assert.equal((one as unknown as { health: { host: { lanes?: LaneTraffic } } }).health.host.lanes, undefined, 'lanes ≥ 1 run no health checks');
  });

  it('ViaLaneZero: a forwarded packet goes to lane 0 as a delivery record with its next hop, published once per batch', () => {
    const ring = HandoffRing.create(MIN_RING_BYTES);
    const host = transportHost();
    const via = new ViaLaneZero('wireguard', host, ring);
    via.open();
    via.add({ name: 'wg-site' }, 5);
    assert.equal(host.delivery.of(5), via);
    const batch = new PacketBatch(2);
    batch.push(Uint8Array.of(0x45, 1, 2, 3), 0, 4, 1);
    batch.push(Uint8Array.of(0x45, 4, 5, 6), 0, 4, 1);
    via.deliver(batch, 0, 5);
    via.deliver(batch, 1, 5);
    assert.equal(ring.used, 0, 'nothing visible before the batch is finished');
    host.outputs.flush(batch);
    const consumer = new HandoffRing(ring.buffer);
    const got = new PacketBatch(4);
    assert.equal(consumer.pop(got), 2);
    assert.equal(consumer.delivery, true);
    assert.deepEqual([got.nextHop[0], got.nextHop[1], got.ingress[0]], [5, 5, 1]);
    assert.deepEqual([...got.packet(1)], [0x45, 4, 5, 6]);
    assert.equal(ring.bell, 1, 'one doorbell for the batch');
    assert.equal(host.counters[EdgeCounter.LaneDeliveredViaLane0], 2);
    assert.equal(via.acceptsOffload(), true, 'super-packets are segmented on lane 0, for the tunnel');
    via.remove(5);
    assert.equal(host.delivery.of(5), null);
  });

  it('mergeLaneStatus sums counters, drops and flows, and names each lane\'s TUN queues', () => {
    const own = status({ tuns: [{ name: 'tt-ic-1', packetsIn: 5, packetsOut: 4, dropsBusy: 0 }], edge: { lane_handed_off: 2 }, pipelineDrops: { no_route: 1 }, flows: { ipv4: 3, ipv6: 1 } });
    const other = status({ tuns: [{ name: 'tt-ic-1', packetsIn: 7, packetsOut: 6, dropsBusy: 1 }], edge: { lane_received: 2, lane_handed_off: 1 }, pipelineDrops: { no_route: 2, ttl: 1 }, flows: { ipv4: 4, ipv6: 0 } });
    const m = mergeLaneStatus(own, [other]);
    assert.deepEqual(m.tuns.map((t) => [t.name, t.packetsIn]), [['tt-ic-1', 5], ['tt-ic-1#1', 7]]);
    assert.deepEqual(m.edge, { lane_handed_off: 3, lane_received: 2 });
    assert.deepEqual(m.laneCounters, [{ lane_handed_off: 2 }, { lane_received: 2, lane_handed_off: 1 }], 'each lane\'s own lane counters, lane 0 first');
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
