/**
 * The lab's configuration: the topology `tether lab up` builds (docs/LAB.md), with its WireGuard keys. Lab
 * use only: the keys are public, in this source file, and the daemon never falls back to this topology
 * (`tether run` needs --config).
 */
import { validateConfig, type TetherConfig } from '../config/index.js';

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
});

/**
 * The lab's topology, every default filled in (by the configuration's own validator). Underlay: the edge is
 * x.1 and the site's router x.2 on 192.168.101.0/24 (site-a), 192.168.102.0/24 (site-b), 192.168.103.0/24
 * (site-gre); the data center is reached over the link `veth-dc`; the Internet egress pool is 198.51.100.1
 * (RFC 5737 §3, TEST-NET-2). Each overlapping WireGuard site has its own device: one device gives a prefix to
 * one peer only, and both sites' allowed IPs are 10.0.1.0/24.
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
