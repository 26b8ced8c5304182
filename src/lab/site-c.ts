/**
 * site-c, the lab's dual-tunnel branch (docs/LAB.md, issue 8 scope item 4): a router namespace with a primary
 * and a backup WireGuard tunnel to the edge, each over its own underlay veth, and a host namespace behind it
 * whose 10.0.1.10 overlaps every other site's.
 *
 *   <p>-site-c (host)                <p>-site-c-rtr (router)                                 <p>-edge
 *   10.0.1.10/24 veth-lan ──────── veth-lan 10.0.1.1/24
 *   default via 10.0.1.1            <p>wgc1 169.254.104.2/30, default metric 10 ── veth-primary ── veth-c1
 *                                   <p>wgc2 169.254.105.2/30, default metric 20 ── veth-backup ─── veth-c2
 *
 * The router fails over the way a branch router does: two default routes, the primary's with the lower
 * metric. A real router withdraws the primary's route when its own tracking (keepalives, BFD) sees the tunnel
 * fail; here cutSiteCPrimary() does both halves of a cut at once — the primary's underlay link goes down, then
 * the router withdraws the primary's default route — so what is measured afterwards is the edge's part.
 */
import { ip, sysctl } from './exec.js';
import { LAB, LINKS, type LabNames } from './topology.js';

type Tunnel = 'primary' | 'backup';

/** site-c's router and host: forwarding, the LAN veth, the host's default route (the underlay veths are lab.ts's). */
export async function buildSiteC(names: LabNames): Promise<void> {
  const router = names.siteCRouter;
  const c = LAB.siteC;
  // Before the links exist (new interfaces copy conf.default). rp_filter off: after a failover, packets for a
  // flow arrive on the backup while the reverse route to their source may still name the primary.
  await sysctl(router, 'net.ipv4.ip_forward', 1);
  await sysctl(router, 'net.ipv4.conf.all.rp_filter', 0);
  await sysctl(router, 'net.ipv4.conf.default.rp_filter', 0);
  await ip(router, ['link', 'add', LINKS.siteCLan, 'type', 'veth', 'peer', 'name', LINKS.siteCLan, 'netns', names.siteC], 'lab up: site-c LAN veth');
  // The LAN's MTU is the tunnels' (wireguard-go's 1420), so the host's TCP offers an MSS that fits them: the
  // edge clamps the MSS only on onramps with a configured MTU (GRE), and a full 1,500-byte packet sent into a
  // WireGuard onramp does not arrive.
  for (const ns of [router, names.siteC]) await ip(ns, ['link', 'set', LINKS.siteCLan, 'mtu', String(c.lanMtu)]);
  await ip(router, ['addr', 'add', `${c.routerLan}/${c.lanPrefixLength}`, 'dev', LINKS.siteCLan]);
  await ip(names.siteC, ['addr', 'add', `${LAB.siteHost}/${c.lanPrefixLength}`, 'dev', LINKS.siteCLan]);
  await ip(router, ['link', 'set', LINKS.siteCLan, 'up']);
  await ip(names.siteC, ['link', 'set', LINKS.siteCLan, 'up']);
  await ip(names.siteC, ['route', 'add', 'default', 'via', c.routerLan]);
}

/** The router's default route through one tunnel (`ip route add …` arguments). */
export function siteCDefaultRoute(names: LabNames, tunnel: Tunnel): string[] {
  const iface = tunnel === 'primary' ? names.wgC1 : names.wgC2;
  return ['default', 'dev', iface, 'metric', String(LAB.siteC[tunnel].metric)];
}

/**
 * Cuts site-c's primary tunnel: its underlay link goes down at the edge's end (the router's end loses carrier;
 * its routes stay, marked linkdown, so wireguard-go's packets are dropped there rather than leaking into the
 * backup tunnel), then the router withdraws the primary's default route and forwards over the backup. Returns
 * the wall-clock time (Date.now()) taken just before the link went down: the moment of the cut.
 */
export async function cutSiteCPrimary(names: LabNames): Promise<number> {
  const at = Date.now();
  await ip(names.edge, ['link', 'set', LINKS.edgeToSiteCPrimary, 'down'], 'cut site-c primary: underlay link down');
  await ip(names.siteCRouter, ['route', 'del', ...siteCDefaultRoute(names, 'primary')], 'cut site-c primary: the router withdraws its route');
  return at;
}

/** Undoes cutSiteCPrimary(): the primary's underlay link comes back, then the router's primary default route. */
export async function restoreSiteCPrimary(names: LabNames): Promise<void> {
  await ip(names.edge, ['link', 'set', LINKS.edgeToSiteCPrimary, 'up'], 'restore site-c primary: underlay link up');
  await ip(names.siteCRouter, ['route', 'replace', ...siteCDefaultRoute(names, 'primary')], 'restore site-c primary: the router\'s route');
}

/** The router's end of one tunnel's underlay link (where the edge's packets to that tunnel arrive). */
export function siteCUnderlayLink(tunnel: Tunnel): string {
  return tunnel === 'primary' ? LINKS.siteCPrimary : LINKS.siteCBackup;
}
