/**
 * site-d, the lab's IPsec branch (issue 9, docs/LAB.md "site-d"): a router namespace running strongSwan
 * (strongswan.ts: charon with kernel-libipsec, ESP-in-UDP) with an underlay veth to the edge, and a host
 * namespace behind it whose 10.0.1.10 overlaps every other site's. Built only when labUp is given `ipsecSite`:
 * until tether answers IKE on the edge's endpoint (192.168.106.1) the site has nothing to talk to.
 *
 *   <p>-site-d (host)                <p>-site-d-rtr (router)                                   <p>-edge
 *   10.0.1.10/24 veth-lan ──────── veth-lan 10.0.1.1/24
 *   default via 10.0.1.1            charon (strongSwan), ipsec0 (TUN)
 *   MTU 1400                        table 220: default dev ipsec0 (once the SA is up) ── veth-edge ── veth-d
 *                                                                                192.168.106.2     192.168.106.254
 *                                                                                                 proxy ARP for .1
 *
 * The router's LAN route: charon installs `default dev ipsec0 src 10.0.1.1` in table 220 (with a `throw` for
 * the edge's address, so IKE and ESP-in-UDP keep using the veth) when the child SA comes up, so the host's
 * packets go into the tunnel and nowhere else; before that the router has no route off its LAN and underlay.
 * A rule `to 10.0.1.0/24 lookup main` (priority 210) keeps the LAN itself out of table 220.
 *
 * What tether's onramp must be for `siteDStrongSwan(names).initiate()` to bring the site up: IKEv2 responder on
 * 192.168.106.1 (UDP 500, then 4500: kernel-libipsec forces UDP encapsulation), local ID FQDN
 * LAB.siteD.edgeId, remote ID FQDN LAB.siteD.siteId, PSK LAB.siteD.psk, proposals LAB.siteD.ikeProposal /
 * espProposal (or a superset), selectors 0.0.0.0/0 (edge) ↔ 10.0.1.0/24 (site) — or 0.0.0.0/0 both ways,
 * which strongSwan narrows to its own.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ip, sysctl } from './exec.js';
import { removeStrongSwanRun, StrongSwan, type StrongSwanOptions } from './strongswan.js';
import { LAB, LINKS, type LabNames } from './topology.js';

/** Before charon's `from all lookup 220` (priority 220). */
const LAN_BYPASS_RULE_PRIORITY = 210;

/** The owner file of the lab's strongSwan directory: the lab (any process may drive it), not a pid. */
const LAB_OWNER = 'lab';

/** The router's strongSwan, initiator toward the edge's endpoint, route-based selectors. */
export function siteDStrongSwanOptions(names: LabNames): StrongSwanOptions {
  const d = LAB.siteD;
  return {
    name: 'site-d',
    namespace: names.siteDRouter,
    runDir: names.strongSwanDir,
    role: 'initiator',
    localAddress: d.router,
    remoteAddress: d.edgeEndpoint,
    localId: { type: 'fqdn', value: d.siteId },
    remoteId: { type: 'fqdn', value: d.edgeId },
    psk: d.psk,
    ikeProposals: [d.ikeProposal],
    espProposals: [d.espProposal],
    localTs: [LAB.siteLan, LAB.siteLan6],
    remoteTs: ['0.0.0.0/0', '::/0'],
    startAction: 'none',
    dpdDelaySeconds: 10,
    tunMtu: d.lanMtu,
  };
}

/** A handle on the site's strongSwan (running or not): initiate(), listSas(), rekeys, restart(). */
export function siteDStrongSwan(names: LabNames): StrongSwan {
  return new StrongSwan(siteDStrongSwanOptions(names));
}

/** site-d's namespaces, underlay veth to the edge (proxy ARP for .1 at the edge), LAN and host route. */
export async function buildSiteD(names: LabNames): Promise<void> {
  const d = LAB.siteD;
  const router = names.siteDRouter;
  const host = names.siteD;
  for (const ns of names.ipsecNamespaces) {
    await ip(null, ['netns', 'add', ns], 'lab up: create namespace (IPsec site)');
    await ip(ns, ['link', 'set', 'lo', 'up']);
  }
  // Before the links exist (new interfaces copy conf.default): the router forwards between its LAN and ipsec0.
  await sysctl(router, 'net.ipv4.ip_forward', 1);
  await sysctl(router, 'net.ipv4.conf.all.rp_filter', 0);
  await sysctl(router, 'net.ipv4.conf.default.rp_filter', 0);
  await sysctl(router, 'net.ipv6.conf.all.forwarding', 1);

  await ip(names.edge, ['link', 'add', LINKS.edgeToSiteD, 'type', 'veth', 'peer', 'name', LINKS.towardEdge, 'netns', router], 'lab up: site-d underlay veth');
  await ip(names.edge, ['addr', 'add', `${d.underlay}.${LAB.edgeSiteHost}/24`, 'dev', LINKS.edgeToSiteD]);
  await ip(router, ['addr', 'add', `${d.router}/24`, 'dev', LINKS.towardEdge]);
  await ip(names.edge, ['link', 'set', LINKS.edgeToSiteD, 'up']);
  await ip(router, ['link', 'set', LINKS.towardEdge, 'up']);
  // The endpoint .1 is the daemon's (routed into its underlay TUN), as for every other site: proxy ARP.
  await sysctl(names.edge, `net.ipv4.conf.${LINKS.edgeToSiteD}.proxy_arp`, 1);
  await sysctl(names.edge, `net.ipv4.conf.${LINKS.edgeToSiteD}.rp_filter`, 0);

  await ip(router, ['link', 'add', LINKS.siteCLan, 'type', 'veth', 'peer', 'name', LINKS.siteCLan, 'netns', host], 'lab up: site-d LAN veth');
  for (const ns of [router, host]) await ip(ns, ['link', 'set', LINKS.siteCLan, 'mtu', String(d.lanMtu)]);
  await ip(router, ['addr', 'add', `${d.routerLan}/${d.lanPrefixLength}`, 'dev', LINKS.siteCLan]);
  await ip(host, ['addr', 'add', `${LAB.siteHost}/${d.lanPrefixLength}`, 'dev', LINKS.siteCLan]);
  await ip(router, ['link', 'set', LINKS.siteCLan, 'up']);
  await ip(host, ['link', 'set', LINKS.siteCLan, 'up']);
  await ip(host, ['route', 'add', 'default', 'via', d.routerLan]);
  // IPv6 inside too: the LAN's ULA prefix, the host's default route via the router.
  await ip(router, ['addr', 'add', `${d.routerLan6}/${d.lanPrefixLength6}`, 'dev', LINKS.siteCLan, 'nodad']);
  await ip(host, ['addr', 'add', `${LAB.siteHost6}/${d.lanPrefixLength6}`, 'dev', LINKS.siteCLan, 'nodad']);
  await ip(host, ['-6', 'route', 'add', 'default', 'via', d.routerLan6]);
  // charon's table 220 (rule priority 220) routes 0.0.0.0/0 into ipsec0, ahead of the main table, so replies
  // for the LAN that come out of the tunnel would go straight back into it: the LAN bypasses the tunnel first
  // (what strongSwan's bypass-lan plugin does with passthrough policies).
  await ip(router, ['rule', 'add', 'to', LAB.siteLan, 'lookup', 'main', 'priority', String(LAN_BYPASS_RULE_PRIORITY)]);
  await ip(router, ['-6', 'rule', 'add', 'to', LAB.siteLan6, 'lookup', 'main', 'priority', String(LAN_BYPASS_RULE_PRIORITY)]);
}

/** Starts the router's charon (its directory made afresh) and loads the connection; does not initiate. */
export async function startSiteDStrongSwan(names: LabNames): Promise<StrongSwan> {
  await removeStrongSwanRun(names.strongSwanDir);
  mkdirSync(names.strongSwanDir, { recursive: true, mode: 0o700 });
  // Not a pid: removeStaleStrongSwanRuns() leaves the lab's charon alone; labDown removes it.
  writeFileSync(join(names.strongSwanDir, 'owner'), `${LAB_OWNER}\n`);
  return StrongSwan.start(siteDStrongSwanOptions(names));
}

/** Kills the site's charon (by the pids under its directory, lab-<prefix>) and removes the directory; namespaces are labDown's. */
export async function removeSiteDStrongSwan(names: LabNames): Promise<void> {
  await removeStrongSwanRun(names.strongSwanDir);
}
