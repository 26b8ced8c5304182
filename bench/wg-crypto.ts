/**
 * `npm run bench:wg-crypto` — WireGuard transport-data seal/open, one core, in process: the native batch
 * (native/src/wireguard.cc through src/io/wg-crypto.ts, one call per batch of 256, contexts kept per session)
 * against node:crypto per packet (src/onramp/wireguard/aead.ts's NodeWgAead: a createCipheriv per packet, what
 * the device did before the addon), in the same run, on the same laid-out messages, at 1420 (the tunnel MTU),
 * 1400 and 64 bytes of inner packet. Open copies the sealed messages back before each call (a memcpy per packet,
 * counted in its time). Rates are packets per second of the process's CPU time (user + system), as bench/esp.ts
 * measures them; the `_wall` fields keep the wall-clock rates. Prints one JSON row per size.
 */
import { randomBytes } from 'node:crypto';
import { CryptoEntries, CryptoStatus } from '../src/common/crypto-entries.js';
import { WgCrypto } from '../src/io/wg-crypto.js';
import { NodeWgAead, WG_KEY_SLOTS, sealedLength, type WgAead } from '../src/onramp/wireguard/aead.js';
import { DATA_HEADER_LEN, MSG_TRANSPORT } from '../src/onramp/wireguard/constants.js';
import { timed } from './esp.js';

const BATCH = 256;
const SLOT = 2048;
const AT = 128;
const SIZES = [1420, 1400, 64];
const IPV4_VERSION_IHL = 0x45;

export interface WgCryptoBenchRow {
  size: number;
  native_seal_pps: number;
  native_open_pps: number;
  node_seal_pps: number;
  node_open_pps: number;
  seal_speedup: number;
  open_speedup: number;
  native_seal_pps_wall: number;
  native_open_pps_wall: number;
  node_seal_pps_wall: number;
  node_open_pps_wall: number;
}

/** Seal and open rates of `aead` over one batch of messages of `size`-byte packets. */
function rates(aead: WgAead, size: number): { seal: { cpu: number; wall: number }; open: { cpu: number; wall: number } } {
  const key = Uint8Array.from(randomBytes(32));
  aead.install(0, key, key); // the same key both ways: what is sealed opens
  const data = new Uint8Array(BATCH * SLOT);
  const e = new CryptoEntries(BATCH);
  const length = sealedLength(size);
  const view = new DataView(data.buffer);
  for (let k = 0; k < BATCH; k++) {
    const at = k * SLOT + AT;
    view.setUint32(at, MSG_TRANSPORT, true);
    view.setUint32(at + 8, k + 1, true); // counter
    data[at + DATA_HEADER_LEN] = IPV4_VERSION_IHL;
    e.push(at, length, 0, k);
  }
  const seal = timed(() => aead.seal(data, e));
  aead.seal(data, e);
  const sealed = data.slice();
  const open = timed(() => {
    data.set(sealed);
    const ok = aead.open(data, e);
    if (ok !== BATCH || e.status[0] !== CryptoStatus.Ok) throw new Error('wg-crypto bench: open failed');
    return ok;
  });
  aead.remove(0);
  return { seal, open };
}

export function benchWgCrypto(): WgCryptoBenchRow[] {
  const native = new WgCrypto(WG_KEY_SLOTS);
  const node = new NodeWgAead();
  return SIZES.map((size) => {
    const n = rates(native, size);
    const j = rates(node, size);
    return {
      size,
      native_seal_pps: Math.round(n.seal.cpu),
      native_open_pps: Math.round(n.open.cpu),
      node_seal_pps: Math.round(j.seal.cpu),
      node_open_pps: Math.round(j.open.cpu),
      seal_speedup: Math.round((n.seal.cpu / j.seal.cpu) * 10) / 10,
      open_speedup: Math.round((n.open.cpu / j.open.cpu) * 10) / 10,
      native_seal_pps_wall: Math.round(n.seal.wall),
      native_open_pps_wall: Math.round(n.open.wall),
      node_seal_pps_wall: Math.round(j.seal.wall),
      node_open_pps_wall: Math.round(j.open.wall),
    };
  });
}

if (process.argv[1]?.endsWith('wg-crypto.js') || process.argv[1]?.endsWith('wg-crypto.ts')) {
  for (const row of benchWgCrypto()) console.log(JSON.stringify(row));
}
