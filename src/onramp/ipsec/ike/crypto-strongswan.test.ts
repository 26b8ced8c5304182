/**
 * Interop before the glue exists: strongSwan 5.9.8's own key derivation, captured from real exchanges between two
 * charons (testdata/strongswan-keys.sh: IKE_SA_INIT, IKE_AUTH, a child rekey with PFS, an IKE SA rekey, for four
 * proposal sets), reproduced by crypto.ts from the bytes on the wire and the logged g^ir alone:
 * SK_* (§2.14, §2.18), SK payload decryption of every encrypted message (§3.14, RFC 5282), both AUTH payloads
 * (§2.15), child KEYMAT (§2.17, with and without PFS) and NAT detection (§2.23).
 * The IKE parsing here is the bare minimum (header, payload chain), independent of wire.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  DH_GROUPS,
  ENCRYPTION_ALGORITHMS,
  INTEGRITY_ALGORITHMS,
  PRF_ALGORITHMS,
  type DhGroup,
  type EncryptionAlgorithm,
  type IntegrityAlgorithm,
  type PrfAlgorithm,
} from '../types.js';
import {
  deriveChildKeys,
  deriveIkeKeys,
  deriveRekeyedIkeKeys,
  dhPublicLength,
  natDetectionHash,
  pskAuth,
  SkCodec,
  type IkeKeys,
  type IkeSuite,
} from './crypto.js';

interface Capture {
  psk: string;
  initiator: string;
  responder: string;
  profiles: Record<string, { ike: string; esp: string; messages: Array<{ src: string; hex: string }>; logged: Array<[string, string]> }>;
}
const CAPTURE = JSON.parse(readFileSync(new URL('./testdata/strongswan-keys.json', import.meta.url), 'utf8')) as Capture;

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array | null): string => (b === null ? '' : Buffer.from(b).toString('hex'));
const ipBytes = (text: string): Uint8Array => Uint8Array.from(text.split('.').map(Number));

// RFC 7296 §3.1-3.3, §3.10, §3.14: the numbers this test reads.
const HEADER = 28;
const GENERIC = 4;
const FLAG_INITIATOR = 0x08;
const FLAG_RESPONSE = 0x20;
const enum Exchange { IkeSaInit = 34, IkeAuth = 35, CreateChildSa = 36, Informational = 37 }
const enum Payload { SA = 33, KE = 34, IDi = 35, IDr = 36, AUTH = 39, Nonce = 40, Notify = 41, SK = 46 }
const NAT_DETECTION_DESTINATION_IP = 16389;
const REKEY_SA = 16393;
const IKE_PORT = 500;

interface Message {
  bytes: Uint8Array;
  spiI: Uint8Array;
  spiR: Uint8Array;
  exchange: number;
  flags: number;
  messageId: number;
  firstPayload: number;
}
interface Payloads { [type: number]: Uint8Array[] }

function parseHeader(bytes: Uint8Array): Message {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.equal(v.getUint32(24), bytes.length, 'IKE header length = datagram');
  return { bytes, spiI: bytes.slice(0, 8), spiR: bytes.slice(8, 16), firstPayload: bytes[16], exchange: bytes[18], flags: bytes[19], messageId: v.getUint32(20) };
}

/** The payload chain from `at`: each payload's body (after its generic header), by type. */
function walk(bytes: Uint8Array, first: number, at: number, end: number): Payloads {
  const out: Payloads = {};
  let type = first;
  while (type !== 0) {
    assert.ok(at + GENERIC <= end, 'payload header inside the message');
    const next = bytes[at];
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    (out[type] ??= []).push(bytes.subarray(at + GENERIC, at + length));
    if (type === Payload.SK) break; // SK is last (§3.14); its body is the ciphertext
    at += length;
    type = next;
  }
  return out;
}

/** Opens a message's SK payload with the sender's codec; the inner payload chain. */
function openSk(m: Message, codec: SkCodec): Payloads {
  assert.equal(m.firstPayload, Payload.SK);
  const skLength = (m.bytes[HEADER + 2] << 8) | m.bytes[HEADER + 3];
  const plain = codec.open(m.bytes.subarray(0, HEADER + GENERIC), m.bytes.subarray(HEADER + GENERIC, HEADER + skLength));
  assert.ok(plain, `SK payload of exchange ${m.exchange} #${m.messageId} ${m.flags & FLAG_RESPONSE ? 'response' : 'request'} opens`);
  return walk(plain, m.bytes[HEADER], 0, plain.length);
}

function parseSuite(proposal: string): IkeSuite {
  const parts = proposal.split('-');
  const pick = <T extends string>(all: readonly T[]): T | null => (parts.find((p) => (all as readonly string[]).includes(p)) as T | undefined) ?? null;
  return {
    encryption: pick<EncryptionAlgorithm>(ENCRYPTION_ALGORITHMS)!,
    integrity: pick<IntegrityAlgorithm>(INTEGRITY_ALGORITHMS),
    prf: pick<PrfAlgorithm>(PRF_ALGORITHMS) ?? 'prfsha256',
    dh: pick<DhGroup>(DH_GROUPS)!,
  };
}

/** What charon logged, in order; take() insists on the next entry's name. */
class Logged {
  private at = 0;
  constructor(private readonly entries: Array<[string, string]>) {}
  take(name: string): string {
    const e = this.entries[this.at++];
    assert.ok(e, `log: expected '${name}', found the end`);
    assert.equal(e[0], name, `log entry ${this.at - 1}`);
    return e[1];
  }
  ikeKeys(integrity: boolean): { shared: Uint8Array; keys: Record<string, string | null> } {
    const shared = hex(this.take('shared Diffie Hellman secret'));
    this.take('SKEYSEED');
    const skD = this.take('Sk_d secret');
    const skAi = integrity ? this.take('Sk_ai secret') : null;
    const skAr = integrity ? this.take('Sk_ar secret') : null;
    return { shared, keys: { skD, skAi, skAr, skEi: this.take('Sk_ei secret'), skEr: this.take('Sk_er secret'), skPi: this.take('Sk_pi secret'), skPr: this.take('Sk_pr secret') } };
  }
  childKeys(pfs: boolean, integrity: boolean): { shared: Uint8Array | null; seed: string; keys: unknown } {
    const shared = pfs ? hex(this.take('DH secret')) : null;
    const seed = this.take('seed');
    const ei = this.take('encryption initiator key');
    const er = this.take('encryption responder key');
    const ii = integrity ? this.take('integrity initiator key') : null;
    const ir = integrity ? this.take('integrity responder key') : null;
    return { shared, seed, keys: { initiatorToResponder: { encryptionKey: ei, integrityKey: ii }, responderToInitiator: { encryptionKey: er, integrityKey: ir } } };
  }
}

const keysHex = (k: IkeKeys): Record<string, string | null> => Object.fromEntries(Object.entries(k).map(([n, v]) => [n, v === null ? null : toHex(v)]));
const childHex = (c: ReturnType<typeof deriveChildKeys>) => ({
  initiatorToResponder: { encryptionKey: toHex(c.initiatorToResponder.encryptionKey), integrityKey: c.initiatorToResponder.integrityKey && toHex(c.initiatorToResponder.integrityKey) },
  responderToInitiator: { encryptionKey: toHex(c.responderToInitiator.encryptionKey), integrityKey: c.responderToInitiator.integrityKey && toHex(c.responderToInitiator.integrityKey) },
});

/** Proposal SPI of the first proposal in an SA payload body (§3.3.1). */
function proposalSpi(sa: Uint8Array): Uint8Array {
  const spiSize = sa[6];
  return sa.slice(8, 8 + spiSize);
}
const keData = (ke: Uint8Array): Uint8Array => ke.subarray(4); // DH group (2), reserved (2), data (§3.4)
const notifyType = (n: Uint8Array): number => (n[2] << 8) | n[3];
const notifyData = (n: Uint8Array): Uint8Array => n.subarray(4 + n[1]);

test('strongSwan 5.9.8 captures cover the four profiles', () => {
  assert.deepEqual(Object.keys(CAPTURE.profiles), ['gcm-ecp256', 'cbc-modp2048', 'gcm-x25519', 'cbc-ecp384']);
});

for (const [name, profile] of Object.entries(CAPTURE.profiles)) {
  test(`strongSwan ${name} (${profile.ike} / ${profile.esp}): keys, SK payloads, AUTH, child KEYMAT and IKE rekey reproduced`, () => {
    const suite = parseSuite(profile.ike);
    const espSuite = parseSuite(profile.esp);
    const esp = { encryption: espSuite.encryption, integrity: espSuite.integrity };
    const psk = new TextEncoder().encode(CAPTURE.psk);
    const log = new Logged(profile.logged);

    // Retransmissions (same SPIs, message ID and direction) count once.
    const seen = new Set<string>();
    const messages = profile.messages.map((m) => parseHeader(hex(m.hex))).filter((m) => {
      const key = `${toHex(m.spiI)}${toHex(m.spiR)}:${m.messageId}:${m.flags & FLAG_RESPONSE}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    const find = (exchange: number, response: boolean, from = 0): Message => {
      const m = messages.slice(from).find((x) => x.exchange === exchange && Boolean(x.flags & FLAG_RESPONSE) === response);
      assert.ok(m, `exchange ${exchange} ${response ? 'response' : 'request'}`);
      return m;
    };

    // --- IKE_SA_INIT, in the clear: nonces, KE, SPIs, NAT detection ---
    const initReq = find(Exchange.IkeSaInit, false);
    const initResp = find(Exchange.IkeSaInit, true);
    const reqPayloads = walk(initReq.bytes, initReq.firstPayload, HEADER, initReq.bytes.length);
    const respPayloads = walk(initResp.bytes, initResp.firstPayload, HEADER, initResp.bytes.length);
    const ni = reqPayloads[Payload.Nonce][0];
    const nr = respPayloads[Payload.Nonce][0];
    const spiI = initResp.spiI;
    const spiR = initResp.spiR;
    assert.equal(keData(reqPayloads[Payload.KE][0]).length, dhPublicLength(suite.dh), 'KEi data length');
    assert.equal(keData(respPayloads[Payload.KE][0]).length, dhPublicLength(suite.dh), 'KEr data length');
    // encap=yes fakes NAT_DETECTION_SOURCE_IP to force UDP encapsulation; the destination hash is genuine.
    const natD = (p: Payloads) => notifyData(p[Payload.Notify].find((n) => notifyType(n) === NAT_DETECTION_DESTINATION_IP)!);
    assert.equal(toHex(natD(reqPayloads)), toHex(natDetectionHash(spiI, new Uint8Array(8), ipBytes(CAPTURE.responder), IKE_PORT)), 'NAT-D in the request (SPIr 0)');
    assert.equal(toHex(natD(respPayloads)), toHex(natDetectionHash(spiI, spiR, ipBytes(CAPTURE.initiator), IKE_PORT)), 'NAT-D in the response');

    // --- §2.14 keys from the logged g^ir ---
    const logged = log.ikeKeys(suite.integrity !== null);
    const shared = { modp2048: 256, ecp256: 32, ecp384: 48, curve25519: 32 }[suite.dh];
    assert.equal(logged.shared.length, shared, 'g^ir in the group format (RFC 3526 / RFC 5903 §7 x only / RFC 8031)');
    const keys = deriveIkeKeys(suite, ni, nr, logged.shared, spiI, spiR);
    assert.deepEqual(keysHex(keys), logged.keys, 'SK_d, SK_a*, SK_e*, SK_p*');
    const fromI = new SkCodec(suite, keys.skEi, keys.skAi);
    const fromR = new SkCodec(suite, keys.skEr, keys.skAr);
    const codecFor = (m: Message): SkCodec => (m.flags & FLAG_INITIATOR ? fromI : fromR);

    // --- IKE_AUTH: decrypt both, recompute both AUTH payloads (§2.15) ---
    const authReq = openSk(find(Exchange.IkeAuth, false), fromI);
    const authResp = openSk(find(Exchange.IkeAuth, true), fromR);
    const idI = authReq[Payload.IDi][0];
    const idR = authResp[Payload.IDr][0];
    assert.equal(toHex(idI), log.take("IDx'"), "IDi body = strongSwan's IDx'");
    const authI = pskAuth(suite.prf, psk, initReq.bytes, nr, keys.skPi, idI);
    assert.equal(toHex(authI), log.take('AUTH = prf(prf(secret, keypad), octets)'));
    assert.equal(toHex(authReq[Payload.AUTH][0].subarray(4)), toHex(authI), "initiator's AUTH payload (method 2, shared key MIC)");
    assert.equal(authReq[Payload.AUTH][0][0], 2);
    assert.equal(toHex(idR), log.take("IDx'"));
    const authR = pskAuth(suite.prf, psk, initResp.bytes, ni, keys.skPr, idR);
    assert.equal(toHex(authR), log.take('AUTH = prf(prf(secret, keypad), octets)'));
    assert.equal(toHex(authResp[Payload.AUTH][0].subarray(4)), toHex(authR), "responder's AUTH payload");
    assert.notEqual(toHex(pskAuth(suite.prf, new TextEncoder().encode('wrong'), initReq.bytes, nr, keys.skPi, idI)), toHex(authI));

    // --- IKE_AUTH's child: KEYMAT = prf+(SK_d, Ni | Nr) (§2.17) ---
    const child = log.childKeys(false, esp.integrity !== null);
    assert.equal(child.seed, toHex(ni) + toHex(nr));
    assert.deepEqual(childHex(deriveChildKeys(suite.prf, keys.skD, esp, ni, nr, null)), child.keys, 'IKE_AUTH child keys');

    // --- CREATE_CHILD_SA rekeying the child with PFS: KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr) ---
    const ccsReqMsg = find(Exchange.CreateChildSa, false);
    const ccsReq = openSk(ccsReqMsg, fromI);
    assert.ok(ccsReq[Payload.Notify]?.some((n) => notifyType(n) === REKEY_SA), 'the first CREATE_CHILD_SA rekeys the child');
    const ccsResp = openSk(find(Exchange.CreateChildSa, true), fromR);
    const pfs = log.childKeys(true, esp.integrity !== null);
    const ni2 = ccsReq[Payload.Nonce][0];
    const nr2 = ccsResp[Payload.Nonce][0];
    assert.equal(keData(ccsReq[Payload.KE][0]).length, dhPublicLength(espSuite.dh), 'PFS KE length');
    assert.equal(pfs.seed, toHex(pfs.shared) + toHex(ni2) + toHex(nr2));
    assert.deepEqual(childHex(deriveChildKeys(suite.prf, keys.skD, esp, ni2, nr2, pfs.shared)), pfs.keys, 'PFS child keys');

    // --- CREATE_CHILD_SA rekeying the IKE SA (§2.18): new SPIs from the SA payloads, SKEYSEED from the old SK_d ---
    const ikeReqMsg = messages.find((m) => m.exchange === Exchange.CreateChildSa && !(m.flags & FLAG_RESPONSE) && m.messageId > ccsReqMsg.messageId);
    assert.ok(ikeReqMsg, 'the IKE rekey request');
    const ikeReq = openSk(ikeReqMsg, fromI);
    const ikeRespMsg = messages.find((m) => m.exchange === Exchange.CreateChildSa && m.flags & FLAG_RESPONSE && m.messageId === ikeReqMsg.messageId);
    assert.ok(ikeRespMsg);
    const ikeResp = openSk(ikeRespMsg, fromR);
    const newSpiI = proposalSpi(ikeReq[Payload.SA][0]);
    const newSpiR = proposalSpi(ikeResp[Payload.SA][0]);
    assert.equal(newSpiI.length, 8, 'an IKE SA proposal carries an 8-byte SPI (§3.3.1)');
    const rekeyed = log.ikeKeys(suite.integrity !== null);
    const newKeys = deriveRekeyedIkeKeys(suite, suite.prf, keys.skD, ikeReq[Payload.Nonce][0], ikeResp[Payload.Nonce][0], rekeyed.shared, newSpiI, newSpiR);
    assert.deepEqual(keysHex(newKeys), rekeyed.keys, 'rekeyed IKE SA keys');

    // --- every encrypted message opens with its SA's and direction's key; tampering is caught ---
    const newFromI = new SkCodec(suite, newKeys.skEi, newKeys.skAi);
    const newFromR = new SkCodec(suite, newKeys.skEr, newKeys.skAr);
    let opened = 0;
    for (const m of messages.filter((x) => x.exchange !== Exchange.IkeSaInit)) {
      const old = toHex(m.spiI) === toHex(spiI) && toHex(m.spiR) === toHex(spiR);
      const isNew = toHex(m.spiI) === toHex(newSpiI) && toHex(m.spiR) === toHex(newSpiR);
      assert.ok(old || isNew, 'a message of one of the two IKE SAs');
      openSk(m, old ? codecFor(m) : m.flags & FLAG_INITIATOR ? newFromI : newFromR);
      const tampered = new Uint8Array(m.bytes);
      tampered[tampered.length - 1] ^= 1;
      assert.equal((old ? codecFor(m) : newFromI).open(tampered.subarray(0, HEADER + GENERIC), tampered.subarray(HEADER + GENERIC)), null);
      opened++;
    }
    assert.ok(opened >= 8, `opened ${opened} encrypted messages`);
    assert.ok(messages.some((m) => m.exchange === Exchange.Informational), 'an INFORMATIONAL (delete) among them');
  });
}
