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
 *
 * The daemon reads with KeptDeviceDrops: each file opened once and re-read with pread at offset 0 (sysfs makes the
 * text anew on a read from offset 0), one system call per counter instead of readFileSync's open, fstat, read and
 * close (docs/PERFORMANCE.md "Cutting the daemon's CPU per wakeup").
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
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

/** False for a name with a slash or a dot-only name: it would leave the device's directory. */
function isDeviceName(device: string): boolean {
  return device !== '' && !device.includes('/') && device !== '.' && device !== '..';
}

/** One device's counters by kind. */
export type DeviceDropCounts = Record<KernelDropKind, number>;

/**
 * Reads one device's counters. Null when the device is gone (its directory is missing: a TUN closed with its
 * onramp); a single file that is unreadable or not a number reads as 0 (and the caller's other kinds still count).
 */
export function readDeviceDrops(device: string, root: string = SYS_CLASS_NET): DeviceDropCounts | null {
  if (!isDeviceName(device)) return null;
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

/** A statistics file's text fits in this: 20 digits of a u64 and a newline. */
const COUNTER_TEXT_BYTES = 24;
/** A kind whose file could not be opened (read as 0, like readDeviceDrops' unreadable file). */
const NO_FD = -1;

/**
 * readDeviceDrops with each device's files kept open: a read is one pread per counter. A kept file of a device that
 * is gone fails (sysfs: ENODEV once the device's node is removed), and so does one whose device was removed and made
 * again under the same name: the device's files are then closed and opened afresh once, so a new device of an old name is
 * read, and a device that is gone reads null as with readDeviceDrops. retain() closes the files of devices no longer
 * watched; close() all.
 */
export class KeptDeviceDrops {
  private readonly fds = new Map<string, number[]>();
  private readonly text = Buffer.alloc(COUNTER_TEXT_BYTES);

  constructor(private readonly root: string = SYS_CLASS_NET) {}

  read(device: string): DeviceDropCounts | null {
    if (!isDeviceName(device)) return null;
    const kept = this.fds.get(device);
    if (kept !== undefined) {
      const counts = this.readFds(kept);
      if (counts !== null) return counts;
      this.forget(device);
    }
    const fresh = this.open(device);
    if (fresh === null) return null;
    this.fds.set(device, fresh);
    const counts = this.readFds(fresh);
    if (counts === null) this.forget(device);
    return counts;
  }

  /** Closes the files of every device not in `devices`. */
  retain(devices: ReadonlySet<string>): void {
    for (const device of [...this.fds.keys()]) if (!devices.has(device)) this.forget(device);
  }

  close(): void {
    for (const device of [...this.fds.keys()]) this.forget(device);
  }

  /** How many devices have files open (for tests). */
  get devices(): number {
    return this.fds.size;
  }

  private forget(device: string): void {
    const fds = this.fds.get(device);
    if (fds === undefined) return;
    this.fds.delete(device);
    for (const fd of fds) if (fd !== NO_FD) closeSync(fd);
  }

  /** The device's files, one per kind (NO_FD: not readable); null when the first is missing (no such device). */
  private open(device: string): number[] | null {
    const dir = join(this.root, device, 'statistics');
    const fds: number[] = [];
    for (const kind of KERNEL_DROP_KINDS) {
      try {
        fds.push(openSync(join(dir, kind), 'r'));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && fds.every((fd) => fd === NO_FD)) {
          for (const fd of fds) if (fd !== NO_FD) closeSync(fd);
          return null;
        }
        fds.push(NO_FD);
      }
    }
    return fds;
  }

  /** The counts through kept files; null when a read fails (the device is gone or was made again). */
  private readFds(fds: number[]): DeviceDropCounts | null {
    const out = {} as DeviceDropCounts;
    const text = this.text;
    for (let k = 0; k < KERNEL_DROP_KINDS.length; k++) {
      const kind = KERNEL_DROP_KINDS[k];
      if (fds[k] === NO_FD) {
        out[kind] = 0;
        continue;
      }
      let n: number;
      try {
        n = readSync(fds[k], text, 0, text.length, 0);
      } catch {
        return null;
      }
      out[kind] = parseCounter(text.toString('latin1', 0, n)) ?? 0;
    }
    return out;
  }
}
