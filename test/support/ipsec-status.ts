/**
 * Made-up IPsec status for tests of what shows it (API, CLI, dashboard, metrics), until the IKE engine and the ESP
 * data path report real ones: one IKE SA per onramp with the child SAs given, and matching ESP counters.
 */
import type { IkeSaStatus } from '../../src/onramp/ipsec/types.js';
import type { EdgeStatus, EspSaCounters } from '../../src/control/metrics.js';

const MS_PER_SECOND = 1000;

/** An established IKE SA of `onramp` at monotonic `now` (ms): up 10 minutes, rekey in an hour; children by inbound SPI. */
export function ikeSa(onramp: number, now: number, childSpis: string[], state: IkeSaStatus['state'] = 'established'): IkeSaStatus {
  return {
    onramp, state, role: 'responder', spiI: `${onramp.toString(16).padStart(4, '0')}aaaabbbbcccc`, spiR: '1122334455667788', remote: '192.168.106.2:4500', natDetected: true,
    algorithms: 'aes256gcm16/prfsha256/ecp256',
    establishedAt: now - 600 * MS_PER_SECOND,
    rekeyAt: now + 3600 * MS_PER_SECOND,
    children: childSpis.map((spiIn, i) => ({
      spiIn, spiOut: `c${spiIn.slice(1)}`, algorithms: 'aes256gcm16', establishedAt: now - (60 + i) * MS_PER_SECOND, rekeyAt: now + 1800 * MS_PER_SECOND,
      localTs: ['0.0.0.0/0'], remoteTs: ['10.0.1.0/24'],
    })),
  };
}

/** The ESP data path's counters of one child SA, every counter derived from `n` so tests can tell them apart. */
export function espCounters(onramp: number, spiIn: string, n: number): EspSaCounters {
  return { onramp, spiIn, spiOut: `c${spiIn.slice(1)}`, packetsIn: n, bytesIn: n * 100, packetsOut: n + 1, bytesOut: (n + 1) * 100, replayDrops: n + 2, icvFailures: n + 3 };
}

/** Status with the IKE SAs given and counters for each of their child SAs. */
export function ipsecStatus(sas: IkeSaStatus[]): Pick<EdgeStatus, 'ipsec' | 'esp'> {
  return { ipsec: sas, esp: sas.flatMap((sa) => sa.children.map((c, i) => espCounters(sa.onramp, c.spiIn, 10 * (i + 1)))) };
}
