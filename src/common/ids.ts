/**
 * Numeric identities shared by every engine. Everything on the packet path is a small integer:
 * no string keys, no objects per packet.
 *
 * Ports: a "port" is where a packet can enter or leave the edge. Port 0 is the Internet egress
 * (the edge's own uplink, behind source NAT). Ports 1..MAX_ONRAMP_ID are onramps.
 * NEXT_HOP_DROP marks a packet that goes nowhere (its drop reason says why).
 */
export const PORT_INTERNET = 0;
export const MAX_ONRAMP_ID = 0xfffe;
export const NEXT_HOP_DROP = 0xffff;

/** Zone 0 is the global zone: the Internet and every onramp without ARR. A site with ARR is zone = its site id. */
export const ZONE_GLOBAL = 0;
export const MAX_SITE_ID = 0xfffe;
