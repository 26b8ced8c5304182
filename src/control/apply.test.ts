import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Drop } from '../common/drop-reasons.js';
import { PORT_INTERNET, ZONE_GLOBAL } from '../common/ids.js';
import { buildUdp } from '../wire/build.js';
import { PipelineRig } from '../../test/support/pipeline-rig.js';
import { toPipelineConfig, validateConfig, type TetherConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { ApplyError, LiveConfig, stableIds } from './apply.js';
import { NextHopKind } from '../route/route-table.js';

// The lab topology (defaultConfig): onramps site-a-wg 1, site-b-wg 2, site-gre-tunnel 3, dc-link 4.
const A = 1;
const B = 2;
const DC = 4;
const HOST = '10.0.1.10';

function setup(): { edge: PipelineRig; live: LiveConfig; cfg: TetherConfig } {
  const cfg = validateConfig(defaultConfig());
  const edge = new PipelineRig(toPipelineConfig(cfg));
  return { edge, live: new LiveConfig(edge.pipeline, cfg), cfg };
}

function udp(src: string, dst: string, srcPort: number, dstPort: number): Uint8Array {
  return buildUdp({ src, dst }, { srcPort, dstPort, payload: Uint8Array.of(1, 2, 3) });
}

test('a new route applies to new flows; an established flow keeps its path and keeps working', () => {
  const { edge, live, cfg } = setup();
  // Established: site-a → 10.9.1.1 goes to the Internet (default route).
  const before = edge.send(A, udp(HOST, '10.9.1.1', 40000, 7000));
  assert.equal(before.hop, PORT_INTERNET);
  const natPort = before.parsed.srcPort;

  const next = structuredClone(cfg);
  next.routes.push({ prefix: '10.9.0.0/16', next_hop: { onramp: 'dc-link' }, priority: 100, weight: 1 });
  const r = live.applyConfig(validateConfig(next));
  assert.deepEqual([r.routesAdded, r.routesRemoved], [1, 0]);
  assert.ok(edge.pipeline.routes.list().some((x) => x.prefix === '10.9.0.0/16' && x.kind === NextHopKind.Onramp && x.port === DC));

  // The established flow still goes out to the Internet, and its reply still comes back to site-a.
  assert.equal(edge.send(A, udp(HOST, '10.9.1.1', 40000, 7000)).hop, PORT_INTERNET);
  const reply = edge.send(PORT_INTERNET, udp('10.9.1.1', '198.51.100.1', 7000, natPort));
  assert.equal(reply.hop, A);
  assert.equal(reply.parsed.dst, HOST);
  // A new flow takes the new route.
  assert.equal(edge.send(A, udp(HOST, '10.9.1.1', 40001, 7000)).hop, DC);

  // Removing the route again: new flows go back to the Internet.
  const r2 = live.applyConfig(validateConfig(cfg));
  assert.deepEqual([r2.routesAdded, r2.routesRemoved], [0, 1]);
  assert.equal(edge.send(A, udp(HOST, '10.9.1.1', 40002, 7000)).hop, PORT_INTERNET);
  assert.equal(edge.send(A, udp(HOST, '10.9.1.1', 40001, 7000)).hop, DC, 'the flow set up over the route keeps it');
});

test('switching ARR off changes the port registry; flows of other onramps are untouched', () => {
  const { edge, live, cfg } = setup();
  const b = edge.send(B, udp(HOST, '172.16.0.10', 41000, 80));
  assert.equal(b.hop, DC);
  assert.equal(edge.pipeline.ports.arr[A], 1);

  const next = structuredClone(cfg);
  next.onramps[0].automatic_return_routing = false;
  const r = live.applyConfig(validateConfig(next));
  assert.deepEqual(r.onrampsChanged, ['site-a-wg']);
  assert.deepEqual(r.transportChanged, []);
  assert.equal(edge.pipeline.ports.arr[A], 0);
  assert.equal(edge.pipeline.ports.zone[A], ZONE_GLOBAL);
  assert.equal(edge.pipeline.ports.zone[B], 2);

  // site-b's established flow: both directions still work.
  assert.equal(edge.send(B, udp(HOST, '172.16.0.10', 41000, 80)).hop, DC);
  const back = edge.send(DC, udp('172.16.0.10', HOST, 80, 41000));
  assert.equal(back.hop, B);
  assert.equal(back.drop, Drop.None);
  // A new flow from site-a (no ARR): its reply is routed by the table, whose only match for 10.0.1.10 is the
  // default route: the reply goes astray to the Internet (why overlapping sites need ARR).
  assert.equal(edge.send(A, udp(HOST, '172.16.0.10', 42000, 80)).hop, DC);
  const astray = edge.send(DC, udp('172.16.0.10', HOST, 80, 42000));
  assert.equal(astray.hop, PORT_INTERNET);
});

test('firewall changes apply to new flows and, by the policy epoch, to established flows they now deny', () => {
  const { edge, live, cfg } = setup();
  assert.equal(edge.send(A, udp(HOST, '172.16.0.25', 43000, 25)).hop, DC);
  assert.equal(edge.send(A, udp(HOST, '172.16.0.26', 43000, 80)).hop, DC);
  const epoch = edge.pipeline.policyEpoch;
  const next = structuredClone(cfg);
  next.firewall.rules.push({ name: 'no-25', id: 7, action: 'deny', destination_ports: [25] });
  assert.equal(live.applyConfig(validateConfig(next)).firewallReplaced, true);
  assert.equal(edge.pipeline.policyEpoch, epoch + 1);
  assert.equal(edge.send(A, udp(HOST, '172.16.0.25', 43000, 25)).drop, Drop.PolicyCut, 'established flow the rule denies: cut');
  assert.equal(edge.send(A, udp(HOST, '172.16.0.26', 43000, 80)).hop, DC, 'established flow the rule does not concern: kept');
  const denied = edge.send(A, udp(HOST, '172.16.0.25', 43001, 25));
  assert.equal(denied.hop, -1);
  assert.equal(denied.drop, Drop.PolicyDeny);
  assert.equal(live.applyConfig(validateConfig(next)).firewallReplaced, false, 'unchanged: not rebuilt');
});

test('onramps added and removed live; transports and restart-only settings are reported', () => {
  const { edge, live, cfg } = setup();
  const next = structuredClone(cfg);
  next.onramps.push({ name: 'extra', id: 9, type: 'gre', site: 'site-b', automatic_return_routing: true, preference: 50, max_flows: 0, gre: { local: '192.168.120.1', remote: '192.168.120.2', mtu: 1476 } });
  next.routes.push({ prefix: '10.50.0.0/16', next_hop: { onramp: 'extra' }, priority: 100, weight: 1 });
  next.flows.ipv4_capacity = 1024;
  let r = live.applyConfig(validateConfig(next));
  assert.deepEqual(r.onrampsAdded, ['extra']);
  assert.deepEqual(r.transportChanged, ['extra']);
  assert.deepEqual(r.restartRequired, ['flows']);
  assert.equal(edge.pipeline.ports.configured[9], 1);
  assert.deepEqual(edge.pipeline.ports.onrampsOfSite(2), [9, B], 'preference 50 first');
  assert.equal(edge.send(A, udp(HOST, '10.50.0.1', 44000, 9)).hop, 9);

  // Health survives a change of the onramp's settings.
  edge.pipeline.setOnrampUp(9, false);
  next.onramps[4].preference = 60;
  r = live.applyConfig(validateConfig(next));
  assert.deepEqual(r.onrampsChanged, ['extra']);
  assert.equal(edge.pipeline.ports.up[9], 0);

  r = live.applyConfig(validateConfig(cfg));
  assert.deepEqual(r.onrampsRemoved, ['extra']);
  assert.equal(edge.pipeline.ports.configured[9], 0);
  assert.equal(edge.pipeline.routes.list().length, 2);
});

test('an Internet route without an egress pool in the running pipeline is refused before anything changes', () => {
  const cfg = validateConfig({ onramps: [{ name: 'x', type: 'interconnect', automatic_return_routing: true, interconnect: { link: 'eth9' } }] });
  const edge = new PipelineRig(toPipelineConfig(cfg));
  const live = new LiveConfig(edge.pipeline, cfg);
  const next = validateConfig({ ...structuredClone(cfg), egress: { addresses: ['198.51.100.1'] }, routes: [{ prefix: '0.0.0.0/0', next_hop: 'internet' }] });
  assert.throws(() => live.checkConfig(next), (e: unknown) => e instanceof ApplyError && e.path === 'routes[0].next_hop');
  assert.throws(() => live.applyConfig(next), ApplyError);
  assert.equal(edge.pipeline.routes.list().length, 0);
});

test('stableIds keeps the own site of a site-less onramp when an earlier one goes', () => {
  const two = validateConfig({
    onramps: [
      { name: 'p1', id: 1, type: 'interconnect', automatic_return_routing: true, interconnect: { link: 'e1' } },
      { name: 'p2', id: 2, type: 'interconnect', automatic_return_routing: true, interconnect: { link: 'e2' } },
    ],
  });
  const ids = stableIds(undefined, two);
  assert.equal(ids.onrampSite.get('p2'), 2);
  const one = validateConfig({ onramps: [two.onramps[1]] });
  assert.equal(stableIds(ids, one).onrampSite.get('p2'), 2, 'assignIds alone would renumber it to 1');
});

test('a site\'s failover policy applies live, to established flows too', () => {
  const { edge, live, cfg } = setup();
  const A_BACKUP = 9;
  // site-a gets a backup onramp (a second GRE tunnel); the policy starts as follow (no failover key).
  const next = validateConfig({ ...cfg, onramps: [...cfg.onramps, {
    name: 'site-a-gre', id: A_BACKUP, type: 'gre', site: 'site-a', automatic_return_routing: true, preference: 200,
    gre: { local: '192.168.111.1', remote: '192.168.111.2' },
  }] });
  live.applyConfig(next);
  const out = (port: number) => edge.send(port, udp(HOST, '203.0.113.10', 40000, 443));
  const natPort = out(A).parsed.srcPort;
  const reply = () => edge.send(PORT_INTERNET, udp('203.0.113.10', '198.51.100.1', 443, natPort)).hop;
  out(A_BACKUP);
  assert.equal(reply(), A_BACKUP, 'follow: the last arrival');
  out(A);
  next.sites[0].failover = { policy: 'pin', drain_idle_seconds: 30 };
  live.applyConfig(validateConfig(next));
  assert.equal(edge.pipeline.ports.siteFailover(edge.pipeline.ports.site[A]).policy, 'pin');
  out(A_BACKUP);
  assert.equal(reply(), A, 'pin: the flow stays where it was recorded');
  delete next.sites[0].failover;
  live.applyConfig(validateConfig(next));
  out(A_BACKUP);
  assert.equal(reply(), A_BACKUP, 'back to follow');
});

test('onramps replaced in place (the store shares every other entry) apply as the full diff applies them', () => {
  const changes: Array<(o: TetherConfig['onramps'][number]) => void> = [
    (o) => { o.automatic_return_routing = !o.automatic_return_routing; },
    (o) => { o.preference = 7; },
    (o) => { if (o.type === 'wireguard') o.wireguard.allowed_ips = ['10.0.1.0/25']; },
    (o) => { o.max_flows = 10; },
  ];
  for (const [k, edit] of changes.entries()) {
    const shared = setup();
    const full = setup();
    // As the store hands it over: a new top-level object and onramp list, the other entries the same objects.
    const next: TetherConfig = { ...shared.cfg, onramps: shared.cfg.onramps.slice() };
    const whole = structuredClone(shared.cfg);
    edit(whole.onramps[0]);
    next.onramps[0] = validateConfig(whole).onramps[0];
    const fast = shared.live.applyConfig(next);
    const slow = full.live.applyConfig(validateConfig(structuredClone(next)));
    assert.deepEqual(fast, slow, `change ${k}`);
    assert.deepEqual(shared.edge.pipeline.ports.list(), full.edge.pipeline.ports.list(), `change ${k}`);
    assert.deepEqual(shared.edge.pipeline.routes.list(), full.edge.pipeline.routes.list(), `change ${k}`);
  }
});
