/**
 * Memory for the data plane's large tables. The flow table is read at random indices; at a
 * million flows that is a TLB miss per packet with 4 KiB pages. The native addon maps the memory
 * with MADV_HUGEPAGE (2 MiB pages) — see AllocHugePages in native/src/tether_io.cc.
 */
import { readFileSync } from 'node:fs';
import { loadNative } from './native.js';

/** An allocator for FlowTableOptions.allocate / PipelineConfig.allocate backed by huge pages. */
export function hugePageAllocator(): (bytes: number) => ArrayBuffer {
  const addon = loadNative();
  return (bytes: number) => addon.allocHugePages(bytes);
}

/** Transparent huge pages as the kernel reports them ("always", "madvise" or "never"), or "unknown". */
export function transparentHugePageMode(): string {
  try {
    const text = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
    return /\[(\w+)\]/.exec(text)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Anonymous memory of this process currently backed by huge pages, in bytes (from /proc/self/smaps_rollup). */
export function hugePageBytes(): number {
  try {
    const m = /AnonHugePages:\s+(\d+) kB/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
