/** GRE onramp (RFC 2784, RFC 2890): codec, tunnel table, the onramp. Its MTU policy is every tunnel's: ../tunnel-mtu.ts. */
export {
  GreDecap,
  GRE_TX_CHECKSUM,
  GRE_TX_KEY,
  GRE_TX_SEQUENCE,
  decapsulate,
  decapsulateInspected,
  encapsulate4,
  encapsulate6,
  greHeaderLength,
} from './codec.js';
export { GreTunnelTable, type GreTunnelConfig } from './tunnel-table.js';
export { GreOnramp, GRE_RECEIVE_DROP, GRE_RECEIVE_REFLECT } from './onramp.js';
export { GreDrop, GRE_DROP_COUNT, GRE_DROP_NAMES } from './gre-drop.js';
export { DEFAULT_MTU_IPV4_OUTER, DEFAULT_MTU_IPV6_OUTER, GRE_PROTO_IPV4, GRE_PROTO_IPV6, IPPROTO_GRE } from './constants.js';
