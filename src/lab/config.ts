/**
 * The lab's configuration: the topology `tether lab up` builds (docs/LAB.md), with its WireGuard keys. Lab
 * use only: the keys are public, in this source file, and the daemon never falls back to this topology
 * (`tether run` needs --config).
 */
import { validateConfig, type TetherConfig } from '../config/index.js';
import { LAB } from './topology.js';

/**
 * WireGuard keys of the lab topology. `site*Private` configure the sites' wireguard-go; the edge's public
 * keys are what the sites list as their peer.
 */
export const LAB_WIREGUARD_KEYS = Object.freeze({
  edgeAPrivate: 'uKsD1HqFHODBGCK4sEgtf1gdei84R+wr+BURGq4xSXg=',
  edgeAPublic: 'qDtHH12jvHHyA9D6lsNGoE9eRmLg1NE9k7ya29vASQQ=',
  edgeBPrivate: '6Im2P9/L8Bw1+B7S9m4WhP5Ej0msH+HfEFA+emYwT2Y=',
  edgeBPublic: 'iGeWyNjTIBj2bM+VHw5GY0DzQoO/e6g5lBcyFllPwAE=',
  siteAPrivate: 'YPAsZxPW6CaxIkQGOXwftadbRn+XrPKH1hL0PubyBVY=',
  siteAPublic: '6YyWdNpCbLJQ0DuWmDUPEjC8RLPA7cZmEY97x5rDPVo=',
  siteBPrivate: '8LkeVfJvH+gMWoz/oEGe2cTsn5lcjtkRCGh8Hj9MKGk=',
  siteBPublic: '22CkOjrAMDLhCWyzjG50Q9sSAbyZtlDM9RIHfOAQmCk=',
  /** site-c: the edge's devices for its primary (wg-c1) and backup (wg-c2) tunnels, and the router's two interfaces. */
  edgeC1Private: 'SPKG6QAkzTBlpafoWlNc55JGrONnGm4UxBdIYY8JREA=',
  edgeC1Public: 'pmBhIHB+14cGRYoAMr8+Zj0g2IzrbmsSOVXJGS8OM2k=',
  edgeC2Private: 'mHPxQHT888OcqFyRkcde/0G6UvoiM1l51H8c+Vyf02w=',
  edgeC2Public: 'vbo98fFLlSigZtaXS+N0BpBOV1yIAd8MlJ6JEkIDUgc=',
  siteC1Private: 'KOYWhkbByxh5eqjaXAqvSCLfZLJra/D8hBKyJWN5EHI=',
  siteC1Public: 'A2/0ss1y1T4OOlJCV8R1EKiysUXIk3YWF5CakN5Sp1I=',
  siteC2Private: 'mHcvNV+HbfdUbyCTFkHyXyHcj9DE2vU+h/BWsG8DXFU=',
  siteC2Public: 'e9knqw8Zk07sNeD+IYejDFeyLBQ04FiZBUXgGLZtK2Y=',
});

/** Probe rates of the health checks (src/health/constants.ts). */
export type LabProbeRate = 'low' | 'mid' | 'high';
export type LabFailoverPolicy = 'follow' | 'pin' | 'drain';

export interface LabConfigOptions {
  /** site-c's health-check rate; default 'mid' (one probe a second). */
  probeRate?: LabProbeRate;
  /** site-c's failover policy for established flows; default 'follow'. */
  failover?: LabFailoverPolicy;
  /** With 'drain': how long an established flow may idle before it moves back to the primary. Default 30. */
  drainIdleSeconds?: number;
  /** Adds site-d, the IPsec branch (strongSwan, site-d.ts), as an ipsec onramp answering on LAB.siteD.edgeEndpoint. */
  ipsecSite?: boolean;
}

/** The name of site-d's IPsec onramp. */
export const SITE_D_ONRAMP = 'site-d';

/** The names of site-c's onramps (primary preference 10, backup 20). */
export const SITE_C_ONRAMPS = Object.freeze({ primary: 'site-c-primary', backup: 'site-c-backup' });

/** Priorities of the data center's routes to site-c's LAN, one per tunnel (lower wins). */
export const SITE_C_ROUTE_PRIORITY = Object.freeze({ primary: 100, backup: 200 });

/**
 * The lab's topology, every default filled in (by the configuration's own validator). Underlay: the edge is
 * x.1 and the site's router x.2 on 192.168.101.0/24 (site-a), 192.168.102.0/24 (site-b), 192.168.103.0/24
 * (site-gre); the data center is reached over the link `veth-dc`; the Internet egress pool is 198.51.100.1
 * (RFC 5737 §3, TEST-NET-2). Each overlapping WireGuard site has its own device: one device gives a prefix to
 * one peer only, and both sites' allowed IPs are 10.0.1.0/24. The unit tests use it as their fixture; the lab
 * itself runs labTopologyConfig(), which adds the dual-tunnel site-c.
 */
export function defaultConfig(): TetherConfig {
  const k = LAB_WIREGUARD_KEYS;
  const lan = '10.0.1.0/24';
  return validateConfig({
    version: 1,
    sites: [
      { name: 'site-a', description: 'branch A (lab)', prefixes: [lan] },
      { name: 'site-b', description: 'branch B (lab), same LAN as site-a', prefixes: [lan] },
      { name: 'site-gre', description: 'GRE branch (lab), same LAN again', prefixes: [lan] },
      { name: 'dc', description: 'data center', prefixes: ['172.16.0.0/24'] },
    ],
    wireguard_devices: [
      { name: 'wg-a', listen_address: '192.168.101.1', listen_port: 51820, private_key: k.edgeAPrivate },
      { name: 'wg-b', listen_address: '192.168.102.1', listen_port: 51820, private_key: k.edgeBPrivate },
    ],
    onramps: [
      {
        name: 'site-a-wg', type: 'wireguard', site: 'site-a', automatic_return_routing: true,
        wireguard: { device: 'wg-a', public_key: k.siteAPublic, allowed_ips: [lan], endpoint: '192.168.101.2:51820', persistent_keepalive: 25 },
      },
      {
        name: 'site-b-wg', type: 'wireguard', site: 'site-b', automatic_return_routing: true,
        wireguard: { device: 'wg-b', public_key: k.siteBPublic, allowed_ips: [lan], endpoint: '192.168.102.2:51820', persistent_keepalive: 25 },
      },
      { name: 'site-gre-tunnel', type: 'gre', site: 'site-gre', automatic_return_routing: true, gre: { local: '192.168.103.1', remote: '192.168.103.2' } },
      { name: 'dc-link', type: 'interconnect', site: 'dc', automatic_return_routing: true, interconnect: { link: 'veth-dc' } },
    ],
    routes: [
      { prefix: '0.0.0.0/0', next_hop: 'internet' },
      { prefix: '172.16.0.0/24', next_hop: { onramp: 'dc-link' } },
    ],
    egress: { addresses: ['198.51.100.1'] },
  }, 'the lab configuration');
}

/**
 * The lab's own topology (what `tether lab up` runs): defaultConfig() plus site-c, the dual-tunnel branch —
 * two devices, one per tunnel (one device gives a prefix to one peer only), on 192.168.104.0/24 (primary,
 * preference 10) and 192.168.105.0/24 (backup, preference 20); each onramp also allows the router's tunnel-inside
 * /32, the source of its health probes' replies. Each onramp probes the router's inside address of its own tunnel
 * (health_check at `probeRate`), the site has the failover policy `failover`, and the data center's flows reach
 * site-c's LAN by routes over both tunnels (the primary preferred). Its onramps come last, so the others keep
 * their ids.
 */
export function labTopologyConfig(opts: LabConfigOptions = {}): TetherConfig {
  const k = LAB_WIREGUARD_KEYS;
  const c = LAB.siteC;
  const cfg = defaultConfig();
  const policy = opts.failover ?? 'follow';
  const failover = policy === 'drain' ? { policy, drain_idle_seconds: opts.drainIdleSeconds ?? 30 } : { policy };
  const onramp = (name: string, device: string, t: typeof c.primary, publicKey: string): Record<string, unknown> => ({
    name, type: 'wireguard', site: 'site-c', automatic_return_routing: true, preference: t.preference,
    wireguard: { device, public_key: publicKey, allowed_ips: [LAB.siteLan, `${t.routerInside}/32`], endpoint: `${t.router}:${t.routerPort}`, persistent_keepalive: 25 },
    health_check: { target: t.routerInside, source: t.edgeInside, rate: opts.probeRate ?? 'mid' },
  });
  const d = LAB.siteD;
  // site-d: tether responds; strongSwan's ids, PSK and proposals (site-d.ts); route-based selectors 0.0.0.0/0 both
  // ways, which strongSwan narrows to its LAN (RFC 7296 §2.9). DPD every 10 s, like the site's own.
  const siteD = opts.ipsecSite ? [{
    name: SITE_D_ONRAMP, type: 'ipsec', site: 'site-d', automatic_return_routing: true,
    ipsec: {
      local_address: d.edgeEndpoint, remote_address: d.router, local_id: d.edgeId, remote_id: d.siteId, psk: d.psk,
      ike_proposals: [d.ikeProposal], esp_proposals: [d.espProposal], dpd_seconds: 10,
    },
  }] : [];
  return validateConfig({
    ...cfg,
    sites: [...cfg.sites, ...(opts.ipsecSite ? [{ name: 'site-d', description: 'IPsec branch (lab): strongSwan, the same LAN again', prefixes: [LAB.siteLan, LAB.siteLan6] }] : []), {
      name: 'site-c', description: 'dual-tunnel branch (lab): primary and backup WireGuard, same LAN again', prefixes: [LAB.siteLan],
      failover,
    }],
    wireguard_devices: [
      ...cfg.wireguard_devices,
      { name: 'wg-c1', listen_address: c.primary.edgeEndpoint, listen_port: LAB.wireguardPort, private_key: k.edgeC1Private },
      { name: 'wg-c2', listen_address: c.backup.edgeEndpoint, listen_port: LAB.wireguardPort, private_key: k.edgeC2Private },
    ],
    onramps: [
      ...cfg.onramps,
      onramp(SITE_C_ONRAMPS.primary, 'wg-c1', c.primary, k.siteC1Public),
      onramp(SITE_C_ONRAMPS.backup, 'wg-c2', c.backup, k.siteC2Public),
      ...siteD,
    ],
    // The data center reaches site-c's LAN over the primary, over the backup while the primary's health penalty
    // makes it lose (docs/HEALTH.md). Scoped to the data center's flows: the LAN overlaps every other site's.
    // With site-d, IPv6 inside: the Internet over IPv6, NATed to the IPv6 pool address.
    ...(opts.ipsecSite && cfg.egress !== undefined ? { egress: { ...cfg.egress, addresses: [...cfg.egress.addresses, LAB.internet6.poolAddress] } } : {}),
    routes: [
      ...cfg.routes,
      ...(opts.ipsecSite ? [{ prefix: '::/0', next_hop: 'internet' }] : []),
      { prefix: LAB.siteLan, next_hop: { onramp: SITE_C_ONRAMPS.primary }, priority: SITE_C_ROUTE_PRIORITY.primary, site: 'dc' },
      { prefix: LAB.siteLan, next_hop: { onramp: SITE_C_ONRAMPS.backup }, priority: SITE_C_ROUTE_PRIORITY.backup, site: 'dc' },
    ],
  }, 'the lab configuration');
}
