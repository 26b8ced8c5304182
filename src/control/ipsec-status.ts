/**
 * IPsec status as the API, the CLI and the dashboard show it (issue 9): the IKE engine's IkeSaStatus of each IKE SA,
 * its child SAs joined (by inbound SPI) to the ESP data path's counters, times made relative to the edge's clock.
 *
 *   Edge.ipsecStatus() ── { ike: IkeSaStatus[], esp: EspSaCounters[] } ── ipsecViews(…, now) ── GET /v1/stats:
 *   onramps[].ipsec (IpsecSaView[]) ── `tether onramps` (ipsecLines) and the dashboard's IPsec table
 *
 * Control plane only (allocates). Times: the engine stamps establishedAt / rekeyAt on the monotonic clock the edge
 * drives it with; the CLI and the browser have no such clock, so the views carry ages and countdowns in seconds.
 */
import type { IkeSaStatus } from '../onramp/ipsec/types.js';
import type { EspSaCounters } from './metrics.js';

const MS_PER_SECOND = 1000;

/** One child SA: what IKE negotiated and what ESP counted (counters null when the data path does not hold it). */
export interface IpsecChildView {
  spiIn: string;
  spiOut: string;
  algorithms: string;
  ageSeconds: number;
  rekeyInSeconds: number;
  localTs: string[];
  remoteTs: string[];
  counters: Omit<EspSaCounters, 'onramp' | 'spiIn' | 'spiOut'> | null;
}

/** One IKE SA of an onramp. */
export interface IpsecSaView {
  state: IkeSaStatus['state'];
  role: IkeSaStatus['role'];
  spiI: string;
  spiR: string;
  remote: string;
  natDetected: boolean;
  algorithms: string;
  ageSeconds: number;
  rekeyInSeconds: number;
  children: IpsecChildView[];
}

/** Seconds from `now` to `at` (ms), whole; 0 for an unset time (0) or a time passed. */
const until = (at: number, now: number): number => (at <= 0 ? 0 : Math.max(0, Math.round((at - now) / MS_PER_SECOND)));
const since = (at: number, now: number): number => (at <= 0 ? 0 : Math.max(0, Math.round((now - at) / MS_PER_SECOND)));

/** The IKE SAs of every onramp, by onramp id, with their child SAs' counters. */
export function ipsecViews(ike: readonly IkeSaStatus[], esp: readonly EspSaCounters[], now: number): Map<number, IpsecSaView[]> {
  const counters = new Map(esp.map((c) => [`${c.onramp}/${c.spiIn}`, c]));
  const out = new Map<number, IpsecSaView[]>();
  for (const sa of ike) {
    const view: IpsecSaView = {
      state: sa.state, role: sa.role, spiI: sa.spiI, spiR: sa.spiR, remote: sa.remote, natDetected: sa.natDetected, algorithms: sa.algorithms,
      ageSeconds: since(sa.establishedAt, now),
      rekeyInSeconds: until(sa.rekeyAt, now),
      children: sa.children.map((c) => {
        const n = counters.get(`${sa.onramp}/${c.spiIn}`);
        return {
          spiIn: c.spiIn, spiOut: c.spiOut, algorithms: c.algorithms,
          ageSeconds: since(c.establishedAt, now), rekeyInSeconds: until(c.rekeyAt, now),
          localTs: [...c.localTs], remoteTs: [...c.remoteTs],
          counters: n === undefined ? null : {
            packetsIn: n.packetsIn, bytesIn: n.bytesIn, packetsOut: n.packetsOut, bytesOut: n.bytesOut, replayDrops: n.replayDrops, icvFailures: n.icvFailures,
          },
        };
      }),
    };
    const list = out.get(sa.onramp);
    if (list === undefined) out.set(sa.onramp, [view]); else list.push(view);
  }
  return out;
}

const SECONDS_PER_MINUTE = 60;
const SECONDS_PER_HOUR = 3600;

/** 45s, 12m, 3h 40m. */
export function duration(seconds: number): string {
  if (seconds < SECONDS_PER_MINUTE) return `${seconds}s`;
  if (seconds < SECONDS_PER_HOUR) return `${Math.floor(seconds / SECONDS_PER_MINUTE)}m`;
  const m = Math.floor((seconds % SECONDS_PER_HOUR) / SECONDS_PER_MINUTE);
  return `${Math.floor(seconds / SECONDS_PER_HOUR)}h${m > 0 ? ` ${m}m` : ''}`;
}

/** `tether onramps`' lines for one ipsec onramp: its IKE SAs, each with its child SAs. */
export function ipsecLines(name: string, sas: readonly IpsecSaView[] | undefined): string[] {
  if (sas === undefined || sas.length === 0) return [`${name}: no IKE SA`];
  const lines: string[] = [];
  for (const sa of sas) {
    lines.push(`${name}: IKE ${sa.state}, ${sa.role}, ${sa.algorithms}, peer ${sa.remote}${sa.natDetected ? ' (NAT)' : ''}, SPIs ${sa.spiI}_i ${sa.spiR}_r, up ${duration(sa.ageSeconds)}, rekey in ${duration(sa.rekeyInSeconds)}`);
    if (sa.children.length === 0) lines.push('  no child SA');
    for (const c of sa.children) {
      const n = c.counters;
      const counted = n === null
        ? 'no data-path counters'
        : `in ${n.packetsIn} pkts ${n.bytesIn} B, out ${n.packetsOut} pkts ${n.bytesOut} B, replay drops ${n.replayDrops}, ICV failures ${n.icvFailures}`;
      lines.push(`  child ${c.spiIn}_i ${c.spiOut}_o, ${c.algorithms}, ${c.localTs.join(' ')} === ${c.remoteTs.join(' ')}, up ${duration(c.ageSeconds)}, rekey in ${duration(c.rekeyInSeconds)}; ${counted}`);
    }
  }
  return lines;
}
