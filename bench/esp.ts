/**
 * ESP seal/open throughput, one core, in process: the native batched crypto (native/src/esp.cc, one call per
 * batch of 256, contexts kept per SA) against node:crypto per packet (a cipher object per packet: the IV changes
 * every packet), in the same run, at 1400 and 64 bytes of inner packet, AES-GCM-16-128 and AES-CBC-256 +
 * HMAC-SHA2-256-128. The ESP layout (header, padding, trailer) is written once; open copies the sealed packets
 * back before each call (a memcpy per packet, counted in its time). Rates are packets per second of the
 * process's CPU time (user + system): on a shared machine wall-clock rates measure the other jobs as much as
 * the code (the `_wall` fields keep them).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, type CipherGCM, type DecipherGCM } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EspCrypto, EspEntries, EspStatus } from '../src/io/esp-crypto.js';
import { ESP_HEADER, espAlgorithm, espPadding, espSealedLength, writeEspHeader, writeEspTrailer, type EspAlgorithm } from '../src/onramp/ipsec/esp/index.js';
import type { EncryptionAlgorithm, IntegrityAlgorithm } from '../src/onramp/ipsec/types.js';

const BATCH = 256;
const SLOT = 2048;
const AT = 128;
const RUN_MS = 400;

export interface EspBenchRow {
  algorithm: string;
  size: number;
  native_seal_pps: number;
  native_open_pps: number;
  node_seal_pps: number;
  node_open_pps: number;
  native_seal_pps_wall: number;
  native_open_pps_wall: number;
  node_seal_pps_wall: number;
  node_open_pps_wall: number;
}

const US_PER_S = 1e6;
const MS_PER_S = 1e3;

/** Packets per CPU second and per wall second of `fn` (which returns how many packets it did). */
export function timed(fn: () => number): { cpu: number; wall: number } {
  fn(); // warm up
  let packets = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  let now = start;
  while (now - start < RUN_MS) {
    packets += fn();
    now = performance.now();
  }
  const cpu = process.cpuUsage(cpu0);
  return { cpu: (packets * US_PER_S) / (cpu.user + cpu.system), wall: (packets * MS_PER_S) / (now - start) };
}

function one(enc: EncryptionAlgorithm, integ: IntegrityAlgorithm | null, size: number): EspBenchRow {
  const alg: EspAlgorithm = espAlgorithm(enc, integ);
  const key = randomBytes(alg.keyLength + alg.saltLength);
  const ikey = integ === null ? null : randomBytes(alg.integKeyLength);
  const crypto = new EspCrypto(1, BATCH);
  const ctx = { cipher: alg.cipher, integ: alg.integ, encryptionKey: key, integrityKey: ikey };
  crypto.install(0, ctx, ctx);
  const data = new Uint8Array(BATCH * SLOT);
  const e = new EspEntries(BATCH);
  const length = espSealedLength(alg, size);
  for (let k = 0; k < BATCH; k++) {
    const at = k * SLOT + AT;
    writeEspHeader(data, at, 0x1000, k + 1);
    const payload = at + ESP_HEADER + alg.ivLength;
    data[payload] = 0x45;
    writeEspTrailer(data, payload + size, espPadding(alg, size), 4);
    e.push(at, length, 0, k);
  }
  const nativeSeal = timed(() => crypto.seal(data, e));
  crypto.seal(data, e);
  const sealed = data.slice();
  const nativeOpen = timed(() => {
    data.set(sealed);
    const ok = crypto.open(data, e);
    if (ok !== BATCH || e.status[0] !== EspStatus.Ok) throw new Error('ESP bench: open failed');
    return ok;
  });

  // node:crypto, one packet at a time, the way a JS ESP would.
  const plain = Buffer.from(data.subarray(AT + ESP_HEADER + alg.ivLength, AT + length - alg.icvLength));
  const header = Buffer.from(data.subarray(AT, AT + ESP_HEADER));
  const bits = alg.keyLength * 8;
  const gcm = integ === null;
  const nonce = Buffer.alloc(12);
  const iv = Buffer.alloc(16);
  let ct = Buffer.alloc(0);
  let tag = Buffer.alloc(0);
  const nodeSeal = timed(() => {
    for (let k = 0; k < BATCH; k++) {
      if (gcm) {
        const c = createCipheriv(`aes-${bits}-gcm`, key.subarray(0, alg.keyLength), nonce) as CipherGCM;
        c.setAAD(header);
        ct = c.update(plain);
        c.final();
        tag = c.getAuthTag();
      } else {
        const c = createCipheriv(`aes-${bits}-cbc`, key, iv);
        c.setAutoPadding(false);
        ct = c.update(plain);
        c.final();
        tag = createHmac('sha256', ikey!).update(header).update(iv).update(ct).digest().subarray(0, alg.icvLength);
      }
    }
    return BATCH;
  });
  const nodeOpen = timed(() => {
    for (let k = 0; k < BATCH; k++) {
      if (gcm) {
        const d = createDecipheriv(`aes-${bits}-gcm`, key.subarray(0, alg.keyLength), nonce) as DecipherGCM;
        d.setAAD(header);
        d.setAuthTag(tag);
        d.update(ct);
        d.final();
      } else {
        createHmac('sha256', ikey!).update(header).update(iv).update(ct).digest();
        const d = createDecipheriv(`aes-${bits}-cbc`, key, iv);
        d.setAutoPadding(false);
        d.update(ct);
        d.final();
      }
    }
    return BATCH;
  });
  crypto.remove(0);
  return {
    algorithm: integ === null ? enc : `${enc}-${integ}`,
    size,
    native_seal_pps: Math.round(nativeSeal.cpu),
    native_open_pps: Math.round(nativeOpen.cpu),
    node_seal_pps: Math.round(nodeSeal.cpu),
    node_open_pps: Math.round(nodeOpen.cpu),
    native_seal_pps_wall: Math.round(nativeSeal.wall),
    native_open_pps_wall: Math.round(nativeOpen.wall),
    node_seal_pps_wall: Math.round(nodeSeal.wall),
    node_open_pps_wall: Math.round(nodeOpen.wall),
  };
}

/** Every row: AES-GCM-128 and AES-CBC-256/SHA-256 at 1400 and 64 bytes. */
export function benchEsp(): EspBenchRow[] {
  const rows: EspBenchRow[] = [];
  for (const [enc, integ] of [['aes128gcm16', null], ['aes256', 'sha256']] as Array<[EncryptionAlgorithm, IntegrityAlgorithm | null]>) {
    for (const size of [1400, 64]) rows.push(one(enc, integ, size));
  }
  return rows;
}
