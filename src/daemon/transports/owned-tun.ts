/**
 * A TUN a transport owns (the underlay, the egress, each interconnect): opened with rp_filter off and the kernel's
 * own IPv6 traffic off (network.ts quietIpv6), brought up with its MTU and given its routes and rules under one
 * owner key, and registered as an output; closed in the reverse order. One place for that sequence, so every
 * transport's TUN comes and goes the same way.
 */
import { openTun, type TunDevice } from '../../io/tun.js';
import { disableRpFilter, planLink, quietIpv6, TUN_TX_QUEUE_PACKETS, type IpStep, type KernelObjects } from '../network.js';
import type { Output, TransportHost } from './transport.js';

export interface OwnedTun {
  readonly tun: TunDevice;
  readonly out: Output;
  /** The KernelObjects owner key its link, routes and rules were applied under. */
  readonly owner: string;
}

/**
 * Opens TUN `name` and applies its link (queue: its txqueuelen, network.ts) plus `steps` under `owner`; on failure
 * nothing is left behind. `offload`: with TUNSETOFFLOAD (src/io/tun.ts), for a TUN whose packets the edge forwards
 * as they are (egress, interconnect); its writes then coalesce TCP segments into super-packets (GRO) unless
 * host.gro is false.
 */
export function openOwnedTun(host: TransportHost, kernel: KernelObjects, owner: string, name: string, steps: IpStep[], opts: { offload?: boolean; queue?: number } = {}): OwnedTun {
  const tun = openTun(name, { offload: opts.offload === true, multiQueue: host.multiQueue === true });
  // Another lane's queue of a TUN lane 0 opened: the link, routes and rules are lane 0's.
  if (host.ownsKernel === false) return { tun, out: host.outputs.add(tun), owner };
  try {
    disableRpFilter(name);
    quietIpv6(name);
    kernel.apply(owner, [planLink(name, host.mtu, opts.queue ?? TUN_TX_QUEUE_PACKETS), ...steps]);
  } catch (e) {
    tun.close();
    throw e;
  }
  // GRO only where the kernel takes super-packets (offloads) and the edge has not been told otherwise (--no-gro).
  return { tun, out: host.outputs.add(tun, { gro: opts.offload === true && host.gro !== false }), owner };
}

/** Stops reading, takes its routes and rules back, unregisters its output and closes it. */
export function closeOwnedTun(host: TransportHost, kernel: KernelObjects, owned: OwnedTun): void {
  owned.tun.stopReading();
  const failed = kernel.release(owned.owner);
  if (failed.length > 0) host.log.warn({ failed, tun: owned.tun.name }, 'some routes or rules were already gone');
  host.outputs.remove(owned.out);
  owned.tun.close();
}
