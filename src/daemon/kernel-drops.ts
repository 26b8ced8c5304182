/**
 * The kernel's drop counters of every device the edge owns (issue 10, "no silent loss"; docs/OBSERVABILITY.md,
 * "Kernel drops"), read on a timer off the packet path and kept as a snapshot for /metrics, GET /v1/stats and
 * `tether onramps`. A device whose counters grew is logged (warn), at most once per LOG_INTERVAL_MS per device
 * with the growth since its last line, so that a loss nobody scrapes still leaves a trace.
 *
 * The daemon owns TUN devices only: WireGuard, GRE, IKE and ESP-in-UDP all arrive as raw IP through the underlay
 * TUN (docs/UNDERLAY.md), so there is no UDP or raw socket whose receive queue could overflow unseen.
 */
import { KERNEL_DROP_KINDS, KeptDeviceDrops, type DeviceDropCounts } from '../io/kernel-drops.js';
import type { KernelDeviceDrops } from '../control/metrics.js';
import type { EdgeLogger } from './transports/transport.js';

/** How often the counters are read: a scrape or `tether onramps` sees them at most this old. */
export const KERNEL_DROPS_INTERVAL_MS = 1000;
/** At most one warning per device per this long (a sustained overflow would otherwise log every second). */
export const KERNEL_DROPS_LOG_INTERVAL_MS = 10_000;

/** A device the edge owns and what it carries. */
export interface OwnedDevice {
  device: string;
  role: string;
  onramps: number[];
}

export type DeviceReader = (device: string) => DeviceDropCounts | null;

function zeros(): DeviceDropCounts {
  const z = {} as DeviceDropCounts;
  for (const k of KERNEL_DROP_KINDS) z[k] = 0;
  return z;
}

function total(c: DeviceDropCounts): number {
  let t = 0;
  for (const k of KERNEL_DROP_KINDS) t += c[k];
  return t;
}

interface Seen {
  counts: DeviceDropCounts;
  /** The counts the last warning reported up to. */
  logged: DeviceDropCounts;
  lastLogAt: number;
}

export class KernelDropWatch {
  private readonly seen = new Map<string, Seen>();
  private snap: KernelDeviceDrops[] = [];
  /** The default reader's open files (none with a reader given). */
  private readonly kept: KeptDeviceDrops | null;
  private readonly read: DeviceReader;

  /** `read`: a device's counts (default: sysfs through kept-open files, KeptDeviceDrops). */
  constructor(
    private readonly devices: () => OwnedDevice[],
    private readonly log: EdgeLogger,
    read?: DeviceReader,
  ) {
    const kept = read === undefined ? new KeptDeviceDrops() : null;
    this.kept = kept;
    this.read = read ?? ((d) => kept!.read(d));
  }

  /** Closes the files the default reader keeps open (a later refresh opens them again). */
  close(): void {
    this.kept?.close();
  }

  /**
   * Reads every owned device now (`now`: ms on any monotonic clock, for the log's pacing). A device that is gone
   * keeps the counts last read until it leaves the owned list. The first read of a device is its baseline for
   * the log: drops from before it was ours (a leftover of the same name) are shown but not warned about.
   */
  refresh(now: number): void {
    const owned = this.devices();
    const next: KernelDeviceDrops[] = [];
    const keep = new Set<string>();
    for (const d of owned) {
      keep.add(d.device);
      const counts = this.read(d.device);
      let s = this.seen.get(d.device);
      if (s === undefined) {
        const first = counts ?? zeros();
        s = { counts: first, logged: { ...first }, lastLogAt: now };
        this.seen.set(d.device, s);
      } else if (counts !== null) {
        s.counts = counts;
      }
      if (total(s.counts) > total(s.logged) && now - s.lastLogAt >= KERNEL_DROPS_LOG_INTERVAL_MS) {
        const grew: Record<string, number> = {};
        for (const k of KERNEL_DROP_KINDS) if (s.counts[k] > s.logged[k]) grew[k] = s.counts[k] - s.logged[k];
        this.log.warn({ device: d.device, role: d.role, onramps: d.onramps, grew, since_ms: Math.round(now - s.lastLogAt) },
          `the kernel dropped packets at ${d.device} (${Object.entries(grew).map(([k, v]) => `${k} +${v}`).join(', ')}): see tether_kernel_drops_total`);
        s.logged = { ...s.counts };
        s.lastLogAt = now;
      }
      next.push({ device: d.device, role: d.role, onramps: [...d.onramps], drops: { ...s.counts } });
    }
    for (const name of [...this.seen.keys()]) if (!keep.has(name)) this.seen.delete(name);
    this.kept?.retain(keep);
    this.snap = next;
  }

  /** Every owned device with every kind, zeros included (as last read). */
  snapshot(): KernelDeviceDrops[] {
    return this.snap;
  }

  /** Devices with a non-zero count, non-zero kinds only. */
  nonZero(): KernelDeviceDrops[] {
    const out: KernelDeviceDrops[] = [];
    for (const d of this.snap) {
      const drops: Record<string, number> = {};
      for (const [k, v] of Object.entries(d.drops)) if (v > 0) drops[k] = v;
      if (Object.keys(drops).length > 0) out.push({ ...d, drops });
    }
    return out;
  }
}
