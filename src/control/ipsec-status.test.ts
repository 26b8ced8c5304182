// IPsec status shown to people (issue 9), with made-up IKE and ESP status until the engines report real ones:
// GET /v1/stats joins each child SA to its counters and makes times relative; `tether onramps` prints them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../config/index.js';
import { defaultConfig } from '../lab/config.js';
import { apiRig } from '../../test/support/api.js';
import { ikeSa, ipsecStatus } from '../../test/support/ipsec-status.js';
import { duration, ipsecLines, ipsecViews, type IpsecSaView } from './ipsec-status.js';
import { ipsecSection } from '../cli/api-client.js';

const IPSEC = { name: 'branch-ipsec', type: 'ipsec', automatic_return_routing: true, ipsec: { local_address: '192.168.106.1', remote_address: '192.168.106.2', psk: 'correct horse battery staple' } };

test('ipsecViews: child SAs joined to their counters by inbound SPI, times relative to the edge clock', () => {
  const now = 5_000_000;
  const status = ipsecStatus([ikeSa(7, now, ['a0000001', 'a0000002'])]);
  status.esp = status.esp.filter((c) => c.spiIn === 'a0000001');
  const views = ipsecViews(status.ipsec, status.esp, now);
  assert.deepEqual([...views.keys()], [7]);
  const [sa] = views.get(7)!;
  assert.deepEqual([sa.state, sa.role, sa.ageSeconds, sa.rekeyInSeconds, sa.natDetected], ['established', 'responder', 600, 3600, true]);
  assert.deepEqual(sa.children.map((c) => [c.spiIn, c.ageSeconds, c.rekeyInSeconds, c.counters?.packetsIn ?? null]), [['a0000001', 60, 1800, 10], ['a0000002', 61, 1800, null]]);
  assert.equal(ipsecViews(status.ipsec, status.esp, now + 4000 * 1000).get(7)![0].rekeyInSeconds, 0, 'a rekey time passed is 0, not negative');
});

test('tether onramps: IKE state, role, algorithms, SPIs, rekey times, child SAs and their counters', () => {
  const st = ipsecStatus([ikeSa(7, 5_000_000, ['a0000001'])]);
  const sas = ipsecViews(st.ipsec, st.esp, 5_000_000).get(7)!;
  assert.deepEqual(ipsecLines('branch-ipsec', sas), [
    'branch-ipsec: IKE established, responder, aes256gcm16/prfsha256/ecp256, peer 192.168.106.2:4500 (NAT), SPIs 0007aaaabbbbcccc_i 1122334455667788_r, up 10m, rekey in 1h',
    '  child a0000001_i c0000001_o, aes256gcm16, 0.0.0.0/0 === 10.0.1.0/24, up 1m, rekey in 30m; in 10 pkts 1000 B, out 11 pkts 1100 B, replay drops 12, ICV failures 13',
  ]);
  assert.deepEqual(ipsecLines('x', []), ['x: no IKE SA']);
  assert.deepEqual([duration(0), duration(59), duration(60), duration(3600), duration(3660 + 59)], ['0s', '59s', '1m', '1h', '1h 1m']);
  assert.deepEqual(ipsecSection([{ name: 'gre-only', type: 'gre' }], new Map()), [], 'nothing without ipsec onramps');
  assert.deepEqual(ipsecSection([{ name: 'x', type: 'ipsec' }], new Map()), ['', 'IPsec:', 'x: not running']);
});

test('GET /v1/stats: ipsec onramps carry their IKE SAs, child SAs and counters; others none', async () => {
  const base = defaultConfig();
  const cfg = validateConfig({ ...base, onramps: [...base.onramps, IPSEC] });
  let made = { ipsec: [] as ReturnType<typeof ikeSa>[], esp: [] as ReturnType<typeof ipsecStatus>['esp'] };
  const rig = apiRig({ token: 't0ken-0123456789', config: cfg, ipsec: () => made });
  try {
    await rig.app.ready();
    const id = rig.ids.onramps.get('branch-ipsec')!;
    const stats = async (): Promise<Array<Record<string, unknown>>> => ((await rig.inject({ method: 'GET', url: '/v1/stats' })).json() as { onramps: Array<Record<string, unknown>> }).onramps;
    let onramps = await stats();
    assert.deepEqual(onramps.find((o) => o.name === 'branch-ipsec')!.ipsec, [], 'no SA yet');
    assert.ok(onramps.filter((o) => o.type !== 'ipsec').every((o) => !('ipsec' in o)));
    made = ipsecStatus([ikeSa(id, rig.edge.now, ['a0000001'])]);
    onramps = await stats();
    const [sa] = onramps.find((o) => o.name === 'branch-ipsec')!.ipsec as IpsecSaView[];
    assert.equal(sa.state, 'established');
    assert.equal(sa.children[0].spiIn, 'a0000001');
    assert.deepEqual(sa.children[0].counters, { packetsIn: 10, bytesIn: 1000, packetsOut: 11, bytesOut: 1100, replayDrops: 12, icvFailures: 13 });
    const live = new Map(onramps.map((o) => [o.name, o]));
    const lines = ipsecSection([{ name: 'branch-ipsec', type: 'ipsec' }], live);
    assert.match(lines[2], /^branch-ipsec: IKE established, responder/);
  } finally {
    await rig.close();
  }
});

test('GET /v1/stats: ipsecDrops carries IKE and ESP drops by reason, the engine\'s caught throws and its half-open SAs', async () => {
  const drops = { ike: { malformed: 3, cookie_required: 2 }, esp: { unknown_spi: 5, replay: 1 }, engineErrors: 0, halfOpen: 7 };
  const rig = apiRig({ token: 't0ken-0123456789', ipsecDrops: () => drops });
  const plain = apiRig({ token: 't0ken-0123456789' });
  try {
    await rig.app.ready();
    await plain.app.ready();
    assert.deepEqual((await rig.inject({ method: 'GET', url: '/v1/stats' })).json().ipsecDrops, drops);
    assert.equal((await plain.inject({ method: 'GET', url: '/v1/stats' })).json().ipsecDrops, undefined, 'absent without an IPsec source');
  } finally {
    await rig.close();
    await plain.close();
  }
});
