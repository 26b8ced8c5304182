/**
 * IKEv2 Diffie-Hellman (RFC 7296 §1.2, §3.4 KE payload) over node:crypto, with the KE data formats of:
 *   modp2048   RFC 3526 group 14: g^x mod p, big-endian, zero-padded to the prime's 256 bytes (RFC 7296 §3.4)
 *   ecp256/384 RFC 5903 §7: x ‖ y, no 0x04 point-format octet; the shared secret is x alone (§7)
 *   curve25519 RFC 8031 §2: the 32 raw bytes of RFC 7748; an all-zero shared secret is refused (§2.3)
 * Every peer value is checked before use (RFC 7296 §5, "Diffie-Hellman validation"): wrong length, a point
 * not on the curve, or a MODP value outside 2..p-2 gives null, never an exception.
 */
import { createDiffieHellman, createDiffieHellmanGroup, createECDH, generateKeyPairSync, type DiffieHellman, type ECDH, type KeyObject } from 'node:crypto';
import type { DhGroup } from '../types.js';
import { dh as x25519, privateKeyObject, publicKeyOf } from '../../wireguard/crypto.js';

/** KE data length per group (RFC 3526 §3: 2048-bit prime; RFC 5903 §7: 2 coordinates; RFC 8031 §2). */
const PUBLIC_LENGTH: Readonly<Record<DhGroup, number>> = {
  modp2048: 256,
  ecp256: 64,
  ecp384: 96,
  curve25519: 32,
};

/** OpenSSL's names: RFC 3526 group 14 is Node's 'modp14'; RFC 5903's curves are NIST P-256 / P-384. */
const MODP_GROUP_NAME = 'modp14';
/** RFC 3526 §3's prime and generator (taken from OpenSSL once; the tests compare it with the RFC's text). */
const MODP2048_PRIME = createDiffieHellmanGroup(MODP_GROUP_NAME).getPrime();
const MODP2048_GENERATOR = 2;
/** p - 1: with 0 and 1 the values a peer may not send (RFC 7296 §5; NIST SP 800-56A §5.6.2.3.1). */
const MODP2048_P_MINUS_ONE = toBigInt(MODP2048_PRIME) - 1n;
const ECP_CURVE: Readonly<Record<'ecp256' | 'ecp384', string>> = { ecp256: 'prime256v1', ecp384: 'secp384r1' };

/** SEC 1 §2.3.3: the uncompressed point format octet, which RFC 5903 §7 leaves out of the KE payload. */
const EC_UNCOMPRESSED = 0x04;

/** One side of one Diffie-Hellman exchange: our public value for the KE payload, and g^ir from the peer's. */
export interface DhExchange {
  readonly group: DhGroup;
  readonly publicValue: Uint8Array;
  /** g^ir in the group's shared-secret format, or null when the peer's value is invalid. */
  computeShared(peerValue: Uint8Array): Uint8Array | null;
}

/** The KE payload's data length for a group. */
export function dhPublicLength(group: DhGroup): number {
  return PUBLIC_LENGTH[group];
}

/** A fresh exchange with a new random private value. */
export function dhStart(group: DhGroup): DhExchange {
  return dhStartWithPrivate(group, null);
}

/**
 * An exchange with a given private value (RFC test vectors), or a random one when `privateValue` is null.
 * MODP: the exponent, big-endian; ECP: the scalar, big-endian, the curve's length; curve25519: the 32 raw bytes.
 */
export function dhStartWithPrivate(group: DhGroup, privateValue: Uint8Array | null): DhExchange {
  switch (group) {
    case 'modp2048':
      return new ModpExchange(privateValue);
    case 'ecp256':
    case 'ecp384':
      return new EcpExchange(group, privateValue);
    case 'curve25519':
      return new X25519Exchange(privateValue);
  }
}

/** Left-pads a big-endian integer to `length` bytes (Node may drop leading zero bytes). */
function leftPad(value: Uint8Array, length: number): Uint8Array {
  if (value.length === length) return new Uint8Array(value);
  const out = new Uint8Array(length);
  out.set(value.subarray(Math.max(0, value.length - length)), Math.max(0, length - value.length));
  return out;
}

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt('0x' + Buffer.from(bytes).toString('hex'));
}

class ModpExchange implements DhExchange {
  readonly group = 'modp2048' as const;
  readonly publicValue: Uint8Array;
  private readonly dh: DiffieHellman;

  constructor(privateValue: Uint8Array | null) {
    this.dh = createDiffieHellman(MODP2048_PRIME, MODP2048_GENERATOR);
    if (privateValue) this.dh.setPrivateKey(Buffer.from(privateValue));
    this.dh.generateKeys();
    this.publicValue = leftPad(this.dh.getPublicKey(), PUBLIC_LENGTH.modp2048);
  }

  computeShared(peerValue: Uint8Array): Uint8Array | null {
    if (peerValue.length !== PUBLIC_LENGTH.modp2048) return null;
    const y = toBigInt(peerValue);
    if (y <= 1n || y >= MODP2048_P_MINUS_ONE) return null;
    try {
      return leftPad(this.dh.computeSecret(Buffer.from(peerValue)), PUBLIC_LENGTH.modp2048);
    } catch {
      return null;
    }
  }
}

class EcpExchange implements DhExchange {
  readonly publicValue: Uint8Array;
  private readonly ecdh: ECDH;

  constructor(
    readonly group: 'ecp256' | 'ecp384',
    privateValue: Uint8Array | null,
  ) {
    this.ecdh = createECDH(ECP_CURVE[group]);
    if (privateValue) this.ecdh.setPrivateKey(Buffer.from(privateValue));
    else this.ecdh.generateKeys();
    // getPublicKey() is 0x04 ‖ x ‖ y (SEC 1 §2.3.3); the KE payload carries x ‖ y (RFC 5903 §7).
    this.publicValue = new Uint8Array(this.ecdh.getPublicKey().subarray(1));
  }

  computeShared(peerValue: Uint8Array): Uint8Array | null {
    const length = PUBLIC_LENGTH[this.group];
    if (peerValue.length !== length) return null;
    const point = Buffer.alloc(length + 1);
    point[0] = EC_UNCOMPRESSED;
    point.set(peerValue, 1);
    try {
      // OpenSSL decodes the point and refuses one that is not on the curve (RFC 5903 §7 requires the check).
      // The secret is the x coordinate, already the field's length (RFC 5903 §7).
      return leftPad(this.ecdh.computeSecret(point), length / 2);
    } catch {
      return null;
    }
  }
}

class X25519Exchange implements DhExchange {
  readonly group = 'curve25519' as const;
  readonly publicValue: Uint8Array;
  private readonly key: KeyObject;

  constructor(privateValue: Uint8Array | null) {
    this.key = privateValue ? privateKeyObject(privateValue) : generateKeyPairSync('x25519').privateKey;
    this.publicValue = publicKeyOf(this.key);
  }

  computeShared(peerValue: Uint8Array): Uint8Array | null {
    if (peerValue.length !== PUBLIC_LENGTH.curve25519) return null;
    // The shared helper returns null for an all-zero result, as RFC 8031 §2.3 requires.
    return x25519(this.key, peerValue);
  }
}
