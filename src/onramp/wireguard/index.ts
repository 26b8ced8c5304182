/** WireGuard onramp: the protocol as a pure state machine (see device.ts for the picture). */
export {
  WireGuardDevice,
  type Outgoing,
  type PeerStatus,
  type ReceiveKind,
  type ReceiveResult,
  type WireGuardDeviceOptions,
  type WireGuardPeerChange,
  type WireGuardPeerConfig,
} from './device.js';
export { WgDrop, WG_DROP_COUNT, WG_DROP_NAMES } from './wg-drop.js';
export { keyFromBase64, keyToBase64, publicKeyFromPrivate } from './crypto.js';
