/**
 * The kernel side of the daemon (docs/UNDERLAY.md, helper-notes/EDGE-CONTRACT.md): which `ip` commands put
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
import { writeFileSync } from 'node:fs';

/** Policy-routing table (and rule priority) of interconnect onramp n: 1000 + n (EDGE-CONTRACT.md). */
export const INTERCONNECT_TABLE_BASE = 1000;
/** Default TUN names (EDGE-CONTRACT.md); the egress TUN's name is the config's `egress.interface`. */
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

function hostRoute(addr: string, dev: string): IpStep {
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

/** The `ip` steps, in order: links up with their MTU, then routes and rules. */
export function planNetwork(spec: NetworkSpec): IpStep[] {
  const steps: IpStep[] = [];
  for (const name of tunNames(spec)) {
    steps.push({ args: ['link', 'set', 'dev', name, 'mtu', String(spec.mtu), 'up'], undo: null });
  }
  for (const addr of spec.endpoints) steps.push(hostRoute(addr, spec.underlay));
  if (spec.egress) for (const addr of spec.egress.addresses) steps.push(hostRoute(addr, spec.egress.tun));
  for (const ic of spec.interconnects) {
    const table = String(interconnectTable(ic.onrampId));
    // Everything arriving on the link (EDGE-CONTRACT.md): forwarded traffic goes to tether; the local table's
    // rule (priority 0) still comes first, so the edge's own addresses on the link keep answering.
    const rule = ['rule', 'add', 'iif', ic.link, 'lookup', table, 'priority', table];
    steps.push({ args: rule, undo: ['rule', 'del', 'iif', ic.link, 'lookup', table, 'priority', table] });
    steps.push({
      args: ['route', 'replace', 'default', 'dev', ic.tun, 'table', table],
      undo: ['route', 'del', 'default', 'dev', ic.tun, 'table', table],
    });
  }
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
 * rp_filter = 0 on our own TUNs (EDGE-CONTRACT.md): replies of NAT'ed flows and decapsulated packets enter the
 * kernel through a TUN whose routes do not cover their source. Per namespace: /proc/sys/net reflects the
 * network namespace of this process.
 */
export function disableRpFilter(dev: string): void {
  writeFileSync(`/proc/sys/net/ipv4/conf/${dev}/rp_filter`, '0\n');
}
