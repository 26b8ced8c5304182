/**
 * The reference topology of the dataplane tests (docs/FLOW-MODEL.md):
 * sites A and B (and more) on the same 10.0.1.0/24, a data center 172.16.0.0/24 behind its own
 * onramp, the Internet behind the egress pool.
 */
import { NextHopKind } from '../../src/route/route-table.js';
import type { PipelineConfig } from '../../src/dataplane/pipeline.js';
import type { OnrampSpec } from '../../src/dataplane/ports.js';

export const SITE_A = 1;
export const SITE_B = 2;
export const SITE_DC = 9;
/** Site A has a primary and a backup tunnel. */
export const A_PRIMARY = 1;
export const A_BACKUP = 2;
export const B_PRIMARY = 3;
export const DC_ONRAMP = 9;
export const INTERNET = 0;

export const POOL = '198.51.100.1';
export const SERVER = '203.0.113.10';
export const DC_SERVER = '172.16.0.20';
export const HOST = '10.0.1.10';

export function onramp(id: number, site: number, arr: boolean, extra: Partial<OnrampSpec> = {}): OnrampSpec {
  return { id, name: `onramp-${id}`, type: 'wireguard', site, automaticReturnRouting: arr, ...extra };
}

/** Two overlapping sites with ARR (or without), a data center, the Internet. */
export function twoSites(opts: { arr?: boolean; extraSites?: number; flows?: PipelineConfig['flows'] } = {}): PipelineConfig {
  const arr = opts.arr ?? true;
  const onramps: OnrampSpec[] = [
    onramp(A_PRIMARY, SITE_A, arr, { preference: 10 }),
    onramp(A_BACKUP, SITE_A, arr, { preference: 20 }),
    onramp(B_PRIMARY, SITE_B, arr),
    onramp(DC_ONRAMP, SITE_DC, false, { type: 'interconnect' }),
  ];
  for (let i = 0; i < (opts.extraSites ?? 0); i++) onramps.push(onramp(100 + i, 100 + i, arr));
  return {
    onramps,
    routes: [
      { prefix: '0.0.0.0/0', kind: NextHopKind.Internet },
      { prefix: '::/0', kind: NextHopKind.Internet },
      { prefix: '172.16.0.0/24', kind: NextHopKind.Onramp, port: DC_ONRAMP },
      { prefix: 'fd00:dc::/64', kind: NextHopKind.Onramp, port: DC_ONRAMP },
      // Both sites announce the same LAN: the classic ambiguity, only consulted without ARR.
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: A_PRIMARY, priority: 100 },
      { prefix: '10.0.1.0/24', kind: NextHopKind.Onramp, port: B_PRIMARY, priority: 100 },
    ],
    egress: { addresses: [POOL, '2001:db8:ee::1'] },
    flows: opts.flows ?? { capacity4: 1 << 16, capacity6: 1 << 10 },
  };
}
