/**
 * The kernel side of the daemon (docs/UNDERLAY.md): which `ip` commands put
 * tether's TUN devices on the edge namespace's routing, and which take that back.
 *
 *   endpoint ADDR (WireGuard listen address, GRE local)  ── ip route replace ADDR/32 dev <underlay>
 *   egress pool ADDR                                      ── ip route replace ADDR/32 dev <egress>
 *   interconnect onramp n on link LINK                    ── ip rule add iif LINK lookup 1000+n priority 1000+n
 *                                                            ip route replace default dev tt-ic-<n> table 1000+n
 *
 * planNetwork() is pure (unit-tested without root); applyPlan() runs it through iproute2 (control plane, at
 * start and stop only) and returns what it managed to do, so that a half-done start can be undone.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/**
 * Policy-routing table (and rule priority) of interconnect onramp n: 1000 + n, clear of the kernel's reserved
 * tables (253 default, 254 main, 255 local) and of 220, the table strongSwan installs its routes in.
 */
export const INTERCONNECT_TABLE_BASE = 1000;
/** Default TUN names; the egress TUN's name is the config's `egress.interface`. */
export const DEFAULT_UNDERLAY_NAME = 'tt-underlay';
export const INTERCONNECT_TUN_PREFIX = 'tt-ic-';
/** Linux interface names hold at most 15 bytes (IFNAMSIZ - 1). */
export const MAX_INTERFACE_NAME = 15;

export interface NetworkSpec {
  underlay: string;
  /** Local tunnel endpoint addresses (IPv4 or IPv6 text) routed into the underlay TUN. */
  endpoints: string[];
  /** The egress TUN and the pool addresses routed into it; null without an egress. */
  egress: { tun: string; addresses: string[] } | null;
  interconnects: Array<{ onrampId: number; link: string; tun: string }>;
  mtu: number;
  /** The namespace has IPv6 (ipv6Enabled()): interconnect links get IPv6 rules too. Default true. */
  ipv6?: boolean;
}

/** One `ip` invocation and the one that takes it back (null: nothing to undo; the TUN goes with its fd). */
export interface IpStep {
  args: string[];
  undo: string[] | null;
}

export function interconnectTunName(onrampId: number): string {
  return `${INTERCONNECT_TUN_PREFIX}${onrampId}`;
}

export function interconnectTable(onrampId: number): number {
  return INTERCONNECT_TABLE_BASE + onrampId;
}

/** `ip route replace ADDR/32 (or /128) dev DEV` and its undo. */
export function hostRoute(addr: string, dev: string): IpStep {
  const v6 = addr.includes(':');
  const family = v6 ? ['-6'] : [];
  const prefix = `${addr}/${v6 ? 128 : 32}`;
  return { args: [...family, 'route', 'replace', prefix, 'dev', dev], undo: [...family, 'route', 'del', prefix, 'dev', dev] };
}

/** The TUNs every spec needs, in creation order. */
export function tunNames(spec: NetworkSpec): string[] {
  const names = [spec.underlay];
  if (spec.egress) names.push(spec.egress.tun);
  for (const ic of spec.interconnects) names.push(ic.tun);
  return names;
}

/**
 * Packets the kernel may queue on a TUN for the daemon to read (the device's txqueuelen): what it routes into
 * the TUN waits there while the daemon's one thread is busy or not scheduled, and beyond this is dropped
 * (counted as the TUN's TX drops). tun(4)'s default of 500 overflowed under a single IPsec TCP stream on a
 * busy 2-core machine, one drop per TCP retransmit (docs/PERFORMANCE.md, "What limits tether's IPsec
 * onramp"); 2048 (about 3 MB of 1500-byte packets, 50 ms at 0.5 Gbit/s) rides out those gaps.
 */
export const TUN_TX_QUEUE_PACKETS = 2048;

/**
 * The underlay TUN's queue: every tunnel site's outer packets share it (WireGuard, GRE, IPsec), so a burst from
 * several sites at once lands in this one queue while the daemon decrypts. bench:lab's burst figure (two
 * WireGuard sites, 3,000 64-byte datagrams each at one instant, three rounds; docs/PERFORMANCE.md "Bursts"):
 * with 2,048 tether delivered 77 % (the rest dropped here, tx_dropped), with 4,096 99 %, with 8,192 and 16,384
 * all of them. 8,192 holds the measured burst with room; at most ~19 MB of 1500-byte packets (skb truesize),
 * and the price is queueing delay while the daemon is behind (~80 ms of small packets at 100 k packets/s).
 */
export const UNDERLAY_TX_QUEUE_PACKETS = 8192;

/** A TUN brought up with its MTU and queue length (nothing to undo: the link goes with its fd). */
export function planLink(name: string, mtu: number, queue: number = TUN_TX_QUEUE_PACKETS): IpStep {
  return { args: ['link', 'set', 'dev', name, 'mtu', String(mtu), 'txqueuelen', String(queue), 'up'], undo: null };
}

/**
 * The rule and the default route that send everything arriving on an interconnect's link into its TUN, for IPv4
 * and, where the namespace has IPv6 (`ipv6`, see ipv6Enabled), for IPv6 too: the rules and tables of the two
 * families are separate in Linux, and a link carries both.
 */
export function planInterconnect(ic: NetworkSpec['interconnects'][number], ipv6 = true): IpStep[] {
  const table = String(interconnectTable(ic.onrampId));
  const families = ipv6 ? [[], ['-6']] : [[]];
  // Everything arriving on the link: forwarded traffic goes to tether; the local table's
  // rule (priority 0) still comes first, so the edge's own addresses on the link keep answering.
  return families.flatMap((family) => [
    {
      args: [...family, 'rule', 'add', 'iif', ic.link, 'lookup', table, 'priority', table],
      undo: [...family, 'rule', 'del', 'iif', ic.link, 'lookup', table, 'priority', table],
    },
    {
      args: [...family, 'route', 'replace', 'default', 'dev', ic.tun, 'table', table],
      undo: [...family, 'route', 'del', 'default', 'dev', ic.tun, 'table', table],
    },
  ]);
}

/** IPv6 is on in this process's network namespace (a kernel booted with ipv6.disable=1 has no /proc/sys/net/ipv6). */
export function ipv6Enabled(): boolean {
  try {
    return readFileSync('/proc/sys/net/ipv6/conf/all/disable_ipv6', 'utf8').trim() === '0';
  } catch {
    return false;
  }
}

/**
 * The `ip` steps of a whole spec, in order: links up with their MTU, then routes and rules. The transports
 * apply the same pieces one object at a time (planLink, hostRoute, planInterconnect); this is their sum.
 */
export function planNetwork(spec: NetworkSpec): IpStep[] {
  const steps: IpStep[] = [];
  for (const name of tunNames(spec)) steps.push(planLink(name, spec.mtu, name === spec.underlay ? UNDERLAY_TX_QUEUE_PACKETS : TUN_TX_QUEUE_PACKETS));
  for (const addr of spec.endpoints) steps.push(hostRoute(addr, spec.underlay));
  if (spec.egress) for (const addr of spec.egress.addresses) steps.push(hostRoute(addr, spec.egress.tun));
  for (const ic of spec.interconnects) steps.push(...planInterconnect(ic, spec.ipv6 ?? true));
  return steps;
}

/** Runs `ip ARGS`; throws an Error carrying iproute2's message. */
export function ip(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

/**
 * Removes rules an earlier run left behind (a daemon killed with SIGKILL cannot clean up): `ip rule add` is not
 * idempotent, and a duplicate rule would outlive this run's stop().
 */
export function removeStaleRules(steps: IpStep[]): void {
  for (const step of steps) {
    if (step.args[0] !== 'rule' || step.undo === null) continue;
    for (let i = 0; i < 16; i++) {
      try {
        ip(step.undo);
      } catch {
        break;
      }
    }
  }
}

/**
 * Applies the steps in order. On failure, undoes what was done and throws. Returns the undo list (in the
 * order to run it: reverse of setup).
 */
export function applyPlan(steps: IpStep[]): string[][] {
  const undo: string[][] = [];
  try {
    for (const step of steps) {
      ip(step.args);
      if (step.undo) undo.unshift(step.undo);
    }
  } catch (e) {
    undoPlan(undo);
    throw e;
  }
  return undo;
}

/** Runs undo steps; failures (a route already gone with its TUN) are collected, never thrown. */
export function undoPlan(undo: string[][]): string[] {
  const failed: string[] = [];
  for (const args of undo) {
    try {
      ip(args);
    } catch (e) {
      failed.push((e as Error).message);
    }
  }
  return failed;
}

/**
 * rp_filter = 0 on our own TUNs (docs/UNDERLAY.md): replies of NAT'ed flows and decapsulated packets enter the
 * kernel through a TUN whose routes do not cover their source. Per namespace: /proc/sys/net reflects the
 * network namespace of this process.
 */
export function disableRpFilter(dev: string): void {
  writeFileSync(`/proc/sys/net/ipv4/conf/${dev}/rp_filter`, '0\n');
}

/**
 * What the kernel itself would send on a fresh TUN, and the per-device IPv6 settings that keep it quiet
 * (docs/UNDERLAY.md "A quiet TUN"). Measured on this kernel with a dual-stack edge (conf/all/forwarding = 1):
 * on `up`, every TUN sent MLDv2 reports (RFC 3810 §6.1) for ff02::2 from its link-local address, which it had
 * joined because the device forwards (RFC 4291 §2.8: routers listen on all-routers); with forwarding off the
 * kernel sends router solicitations instead (RFC 4861 §6.3.7). tether read them as the sites' packets:
 * `unsupported_protocol` on egress and interconnect, `underlay_malformed` on the underlay.
 *
 * In this order (the kernel acts on each write at once):
 *
 *   force_mld_version = 1     MLDv1 (RFC 2710 §4) sends a Done only for a group this node was the last to report;
 *                             a device not yet up has reported none, so leaving all-routers (next line) sends
 *                             nothing. Under MLDv2 the leave is queued as a state-change report (RFC 3810 §6.1)
 *                             and goes out as soon as the device is up: measured, 2 per TUN.
 *   forwarding = 0            this device acts as a host towards tether: it leaves all-routers and sends no
 *                             MLD. Forwarding through it is unchanged: Linux forwards IPv6 when
 *                             conf/all/forwarding is on, whatever the devices' own settings (ip-sysctl.rst).
 *   addr_gen_mode = 1 (none)  no link-local address (RFC 4862 §5.3 skipped): nothing to solicit routers or
 *                             neighbours from. A TUN is point to point; routes name the device, no neighbour.
 *   accept_ra = 0             a router advertisement written into the TUN changes none of the edge's routes.
 *
 * disable_ipv6 would silence it too, but the kernel then refuses IPv6 routes into the device ("IPv6 is disabled
 * on nexthop device"): an IPv6 endpoint, egress address or interconnect added later would fail. These settings
 * keep IPv6 through every TUN working as configured. Writing conf/all/forwarding after start copies 1 to every
 * device again (the kernel's rule), and MLD reports come back: set it before the daemon starts.
 */
export const QUIET_IPV6_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ['force_mld_version', '1'],
  ['forwarding', '0'],
  ['addr_gen_mode', '1'],
  ['accept_ra', '0'],
];

/**
 * Applies QUIET_IPV6_SETTINGS to `dev`, before it is brought up (the kernel acts on `up`). A device without IPv6
 * state (a kernel booted with ipv6.disable=1, or an MTU below IPv6's 1280, RFC 8200 §5) has no directory there
 * and nothing to quiet.
 */
export function quietIpv6(dev: string): void {
  const dir = `/proc/sys/net/ipv6/conf/${dev}`;
  if (!existsSync(dir)) return;
  for (const [key, value] of QUIET_IPV6_SETTINGS) writeFileSync(`${dir}/${key}`, `${value}\n`);
}

/**
 * Kernel objects applied one owner at a time (a TUN's link, one endpoint's host route, one interconnect's rule
 * and table): each owner's undo steps are kept apart, so taking one onramp away removes exactly what it added
 * and nothing of the others. Every transport holds its own.
 */
export class KernelObjects {
  private readonly owners = new Map<string, { undo: string[][]; applied: string[] }>();

  /** Applies `steps` for `owner` (all or nothing: a failure undoes this owner's steps and throws). */
  apply(owner: string, steps: IpStep[]): void {
    if (this.owners.has(owner)) throw new Error(`${owner}: its routes and rules are already applied`);
    removeStaleRules(steps);
    const undo = applyPlan(steps);
    this.owners.set(owner, { undo, applied: steps.filter((s) => s.undo !== null).map((s) => `ip ${s.args.join(' ')}`) });
  }

  has(owner: string): boolean {
    return this.owners.has(owner);
  }

  /** Undoes what `owner` applied; returns the steps that failed (already gone), never throws. */
  release(owner: string): string[] {
    const entry = this.owners.get(owner);
    if (entry === undefined) return [];
    this.owners.delete(owner);
    return undoPlan(entry.undo);
  }

  /** Undoes everything, last applied first. */
  releaseAll(): string[] {
    const failed: string[] = [];
    for (const owner of [...this.owners.keys()].reverse()) failed.push(...this.release(owner));
    return failed;
  }

  /** The `ip` commands in force that have an undo (routes and rules), in the order they were applied. */
  applied(): string[] {
    return [...this.owners.values()].flatMap((e) => e.applied);
  }
}
