/**
 * The lab's names and addresses (docs/LAB.md, docs/UNDERLAY.md): one place, so the lab, its tests and the
 * quick start agree. Namespace and wireguard-go interface names carry a per-run prefix: namespaces, veth pairs
 * and /var/run/wireguard/NAME.sock outlive the processes that made them, and wireguard-go's control socket
 * directory is shared by every namespace, so two runs must never pick the same names.
 *
 *   site-a  [veth-edge 192.168.101.2] ── [veth-a 192.168.101.254, proxy ARP for .1] ┐
 *   site-b  [veth-edge 192.168.102.2] ── [veth-b 192.168.102.254, proxy ARP for .1] │
 *   site-gre[veth-edge 192.168.103.2] ── [veth-gre 192.168.103.254, proxy ARP for .1]├ edge (tether)
 *   inet    [veth-edge 192.168.200.2] ── [veth-inet 192.168.200.1, default route]   │
 *   dc      [veth-edge 172.31.0.2/30] ── [veth-dc 172.31.0.1/30]                      │
 *   site-c-rtr [veth-primary 192.168.104.2] ── [veth-c1 192.168.104.254, proxy ARP .1] │
 *              [veth-backup  192.168.105.2] ── [veth-c2 192.168.105.254, proxy ARP .1] ┘
 *   site-c (host 10.0.1.10) ── veth-lan ── site-c-rtr (LAN 10.0.1.1)
 *   site-d-rtr [veth-edge 192.168.106.2] ── [veth-d 192.168.106.254, proxy ARP .1]     (IPsec site, opt-in)
 *   site-d (host 10.0.1.10) ── veth-lan ── site-d-rtr (LAN 10.0.1.1, strongSwan, ipsec0)
 */
import { STRONGSWAN_RUN_ROOT } from './strongswan.js';

/** Prefix rule: a letter then up to 5 letters/digits, so "<p>wgc1" and every veth name stay within IFNAMSIZ-1 (15). */
export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,5}$/;
export const DEFAULT_PREFIX = 'tt';

/** Addresses shared by every run (namespaces isolate them). */
export const LAB = Object.freeze({
  siteLan: '10.0.1.0/24',
  siteHost: '10.0.1.10',
  /** IPv6 inside (site-d, the IPsec site, for now): the LAN's ULA prefix, the same in every site that has one. */
  siteLan6: 'fd00:1::/64',
  siteHost6: 'fd00:1::10',
  siteA: { underlay: '192.168.101', edgeEndpoint: '192.168.101.1', router: '192.168.101.2' },
  siteB: { underlay: '192.168.102', edgeEndpoint: '192.168.102.1', router: '192.168.102.2' },
  /** .3 is a second GRE endpoint on the same site router, for tests with two tunnels carrying the same inner source. */
  siteGre: { underlay: '192.168.103', edgeEndpoint: '192.168.103.1', router: '192.168.103.2', secondRouter: '192.168.103.3' },
  /** The edge's address on each site link (x.254/24); the endpoint x.1 is answered by proxy ARP. */
  edgeSiteHost: 254,
  internet: { edge: '192.168.200.1', router: '192.168.200.2', server: '203.0.113.10', pool: '198.51.100.0/24' },
  /** The same link and server over IPv6 (documentation prefixes, RFC 3849); the edge's IPv6 pool address. */
  internet6: { edge: '2001:db8:200::1', router: '2001:db8:200::2', prefixLength: 64, server: '2001:db8:113::10', pool: '2001:db8:51::/64', poolAddress: '2001:db8:51::1' },
  /**
   * The dual-tunnel site: a router with a primary (underlay .104) and a backup (underlay .105) WireGuard tunnel
   * to the edge, and a host 10.0.1.10 behind it on the LAN. Each tunnel has inside addresses of its own (a /30
   * per tunnel, in RFC 3927 link-local space as many providers number tunnel insides), so a health probe sent
   * into one tunnel is answered through the same tunnel; the router's LAN address would be answered over
   * whichever tunnel the router's default route uses.
   */
  siteC: {
    primary: { underlay: '192.168.104', edgeEndpoint: '192.168.104.1', router: '192.168.104.2', routerPort: 51820, edgeInside: '169.254.104.1', routerInside: '169.254.104.2', metric: 10, preference: 10 },
    backup: { underlay: '192.168.105', edgeEndpoint: '192.168.105.1', router: '192.168.105.2', routerPort: 51821, edgeInside: '169.254.105.1', routerInside: '169.254.105.2', metric: 20, preference: 20 },
    insidePrefixLength: 30,
    routerLan: '10.0.1.1',
    lanPrefixLength: 24,
    /** wireguard-go's default interface MTU. */
    lanMtu: 1420,
  },
  /**
   * The IPsec site (issue 9; built only with labUp's `ipsecSite`): a router running strongSwan (site-d.ts) with
   * an underlay veth to the edge, and a host 10.0.1.10 behind it on the LAN. strongSwan initiates to the edge's
   * endpoint .1 (where tether answers IKE once its IPsec onramp exists); route-based selectors: the LAN ↔
   * 0.0.0.0/0. The LAN's MTU is kernel-libipsec's TUN MTU, so the host's TCP offers an MSS that fits.
   */
  siteD: {
    underlay: '192.168.106', edgeEndpoint: '192.168.106.1', router: '192.168.106.2',
    routerLan: '10.0.1.1', lanPrefixLength: 24, lanMtu: 1400,
    routerLan6: 'fd00:1::1', lanPrefixLength6: 64,
    /** IKE identities (RFC 7296 §3.5, FQDN) and the lab's pre-shared key (lab only, public like the WireGuard keys). */
    siteId: 'site-d.lab.tether', edgeId: 'edge.lab.tether', psk: 'lab-only-ipsec-psk-site-d-0123456789',
    ikeProposal: 'aes256gcm16-prfsha256-ecp256', espProposal: 'aes128gcm16-ecp256',
  },
  dc: { edge: '172.31.0.1', router: '172.31.0.2', linkPrefixLength: 30, prefix: '172.16.0.0/24', server: '172.16.0.20', sites: '10.0.0.0/8' },
  wireguardPort: 51820,
  httpPort: 80,
  echoPort: 7,
  /** Nothing listens here: the kernel answers with ICMP port unreachable. */
  closedUdpPort: 9,
});

/** Interface names inside the namespaces (unique per namespace only; the veths are created directly in place). */
export const LINKS = Object.freeze({
  /** In every non-edge namespace: the link toward the edge. */
  towardEdge: 'veth-edge',
  edgeToSiteA: 'veth-a',
  edgeToSiteB: 'veth-b',
  edgeToSiteGre: 'veth-gre',
  edgeToInternet: 'veth-inet',
  edgeToSiteCPrimary: 'veth-c1',
  edgeToSiteCBackup: 'veth-c2',
  /** In site-c's router: its two underlay links, and the LAN toward the host (same name in the host namespace). */
  siteCPrimary: 'veth-primary',
  siteCBackup: 'veth-backup',
  siteCLan: 'veth-lan',
  /** The IPsec site's underlay at the edge (the router's end is towardEdge; its LAN is veth-lan like site-c's). */
  edgeToSiteD: 'veth-d',
  /** Must equal defaultConfig()'s interconnect.link. */
  edgeToDc: 'veth-dc',
});

export interface LabNames {
  prefix: string;
  edge: string;
  siteA: string;
  siteB: string;
  siteGre: string;
  internet: string;
  dc: string;
  /** The dual-tunnel site: its host 10.0.1.10 (clients run here) and its router (both tunnels). */
  siteC: string;
  siteCRouter: string;
  /** The IPsec site (opt-in): its host 10.0.1.10 and its strongSwan router. Not in `namespaces`: built only on request. */
  siteD: string;
  siteDRouter: string;
  ipsecNamespaces: string[];
  /** The strongSwan run directory of the IPsec site (outside /run: charon's own /run is bind-mounted over it). */
  strongSwanDir: string;
  /** wireguard-go interfaces (in siteA / siteB / siteCRouter); their sockets are /var/run/wireguard/<name>.sock. */
  wgA: string;
  wgB: string;
  /** site-c's primary and backup tunnels. */
  wgC1: string;
  wgC2: string;
  /** Every namespace, the edge first. */
  namespaces: string[];
  /** /run/tether-lab/<prefix>: config, keys, logs, state. */
  runDir: string;
}

export const RUN_ROOT = '/run/tether-lab';
export const WIREGUARD_SOCKET_DIR = '/var/run/wireguard';

export function labNames(prefix: string = DEFAULT_PREFIX): LabNames {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new Error(`lab prefix "${prefix}" must be a lowercase letter followed by at most 5 lowercase letters or digits`);
  }
  const n = {
    prefix,
    edge: `${prefix}-edge`,
    siteA: `${prefix}-site-a`,
    siteB: `${prefix}-site-b`,
    siteGre: `${prefix}-site-gre`,
    internet: `${prefix}-inet`,
    dc: `${prefix}-dc`,
    siteC: `${prefix}-site-c`,
    siteCRouter: `${prefix}-site-c-rtr`,
    siteD: `${prefix}-site-d`,
    siteDRouter: `${prefix}-site-d-rtr`,
    strongSwanDir: `${STRONGSWAN_RUN_ROOT}/lab-${prefix}`,
    wgA: `${prefix}wga`,
    wgB: `${prefix}wgb`,
    wgC1: `${prefix}wgc1`,
    wgC2: `${prefix}wgc2`,
    runDir: `${RUN_ROOT}/${prefix}`,
  };
  return {
    ...n,
    namespaces: [n.edge, n.siteA, n.siteB, n.siteGre, n.internet, n.dc, n.siteCRouter, n.siteC],
    ipsecNamespaces: [n.siteDRouter, n.siteD],
  };
}
