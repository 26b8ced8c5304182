/**
 * The kernel's own drop counters of a network device (docs/OBSERVABILITY.md, "Kernel drops"): what the kernel
 * threw away before tether saw it, or after tether handed it over. tether's drop reasons cannot count these: a
 * packet the kernel drops at a TUN's queue never reaches the daemon.
 *
 * On a TUN the directions are the kernel's: **tx** is toward the daemon (the kernel "transmits" into the TUN, the
 * daemon reads), **rx** is from the daemon (its writes are "received"). So:
 *   tx_dropped      the TUN's queue toward the daemon (txqueuelen) was full: the daemon did not read fast enough
 *                   (where the burst loss of issue 10 was seen)
 *   rx_dropped      a packet the daemon wrote that the kernel could not take in (no memory, backlog full)
 *   rx_errors ...   malformed writes; tx/rx_fifo_errors, rx_over_errors: zero on a TUN today, read because a
 *                   driver may count there (they are part of every device's statistics, netdevice(7))
 *
 * Read from /sys/class/net/DEV/statistics/ (sysfs: one decimal number per file). sysfs shows the devices of the
 * network namespace of the process that mounted it: the daemon runs inside its namespace and so does /sys as
 * `ip netns exec` mounts it. Control plane only (a timer reads it, never the packet path).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The statistics files read per device, in label order (netdevice(7), Documentation/ABI/testing/sysfs-class-net-statistics). */
export const KERNEL_DROP_KINDS = ['tx_dropped', 'rx_dropped', 'rx_errors', 'tx_errors', 'rx_fifo_errors', 'tx_fifo_errors', 'rx_over_errors'] as const;
export type KernelDropKind = (typeof KERNEL_DROP_KINDS)[number];

export const SYS_CLASS_NET = '/sys/class/net';

/** The largest count read back exactly (counters are u64 in the kernel; beyond 2^53 a double rounds). */
const MAX_EXACT = Number.MAX_SAFE_INTEGER;
/** A sysfs statistics file is one unsigned decimal of at most 20 digits (u64) and a newline. */
const COUNTER_TEXT = /^([0-9]{1,20})\n?$/;

/** One statistics file's text → its count, or null when it is not one unsigned decimal number. */
export function parseCounter(text: string): number | null {
  const m = COUNTER_TEXT.exec(text);
  if (m === null) return null;
  const v = Number(m[1]);
  return v > MAX_EXACT ? MAX_EXACT : v;
}

/** One device's counters by kind. */
export type DeviceDropCounts = Record<KernelDropKind, number>;

/**
 * Reads one device's counters. Null when the device is gone (its directory is missing: a TUN closed with its
 * onramp); a single file that is unreadable or not a number reads as 0 (and the caller's other kinds still count).
 */
export function readDeviceDrops(device: string, root: string = SYS_CLASS_NET): DeviceDropCounts | null {
  // A name with a slash or a dot-only name would leave the device's directory.
  if (device === '' || device.includes('/') || device === '.' || device === '..') return null;
  const dir = join(root, device, 'statistics');
  const out = {} as DeviceDropCounts;
  let found = false;
  for (const kind of KERNEL_DROP_KINDS) {
    let text: string;
    try {
      text = readFileSync(join(dir, kind), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !found) {
        // The first file missing: the device (or its statistics) is not there at all.
        return null;
      }
      out[kind] = 0;
      continue;
    }
    found = true;
    out[kind] = parseCounter(text) ?? 0;
  }
  return out;
}
