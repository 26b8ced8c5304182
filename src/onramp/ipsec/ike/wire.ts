/**
 * IKEv2 messages on the wire (RFC 7296 §3): parse into plain objects and build from them. Control-plane rate
 * (IKE, not ESP), so both sides allocate freely; neither throws on bad input — a malformed message is an
 * IkeWireResult with a reason the caller counts.
 *
 *   message = header (§3.1) ‖ payload chain (§3.2): each payload's generic header names the NEXT payload's type.
 *   The SK payload (§3.14) is always last; its "next payload" field names the first payload inside the ciphertext,
 *   and its body (IV ‖ ciphertext ‖ ICV) is opaque here: the engine opens it and parses the plaintext with
 *   parsePayloadChain(plain, firstPayload).
 *
 * Unknown payload types: skipped, unless their critical bit is set (§2.5) → UnsupportedCritical with the type,
 * so the caller can answer UNSUPPORTED_CRITICAL_PAYLOAD. Payloads tether does not use (CERT, CERTREQ, CP, EAP)
 * are kept raw so a caller can see them, and otherwise ignored.
 */
import { concatBytes, read16, read32, write16, write32 } from '../../../wire/bytes.js';
import {
  ATTRIBUTE_FORMAT_TV,
  ATTRIBUTE_KEY_LENGTH,
  CRITICAL_BIT,
  IKE_HEADER_LENGTH,
  IKE_MAJOR_VERSION,
  IKE_VERSION,
  LAST_PROPOSAL,
  LAST_TRANSFORM,
  MORE_PROPOSALS,
  MORE_TRANSFORMS,
  PAYLOAD_HEADER_LENGTH,
  PROPOSAL_HEADER_LENGTH,
  PayloadType,
  SPI_LENGTH,
  TRANSFORM_HEADER_LENGTH,
  TS_HEADER_LENGTH,
  TS_IPV4_ADDR_RANGE,
  TS_IPV6_ADDR_RANGE,
  TS_PAYLOAD_HEADER_LENGTH,
} from './constants.js';

export interface IkeHeader {
  /** 8 bytes each. */
  spiI: Uint8Array;
  spiR: Uint8Array;
  /** Exchange type (§3.1), see Exchange. */
  exchange: number;
  /** FLAG_INITIATOR | FLAG_RESPONSE (| FLAG_VERSION). */
  flags: number;
  messageId: number;
}

export interface Transform {
  type: number;
  id: number;
  /** Key Length attribute (§3.3.5) in bits, or null when absent. */
  keyLength: number | null;
  /** An attribute other than Key Length: the transform must not be chosen (§3.3.6). Never built. */
  unknownAttribute?: boolean;
}

export interface Proposal {
  /** Proposal Num (§3.3.1), from 1. */
  number: number;
  protocol: number;
  /** Empty in IKE_SA_INIT; 8 bytes for an IKE rekey; 4 for ESP. */
  spi: Uint8Array;
  transforms: Transform[];
}

/** One traffic selector (§3.13.1). */
export interface TsEntry {
  /** TS_IPV4_ADDR_RANGE (7) or TS_IPV6_ADDR_RANGE (8). */
  type: number;
  protocol: number;
  startPort: number;
  endPort: number;
  /** 4 or 16 bytes each. */
  start: Uint8Array;
  end: Uint8Array;
}

export type Payload =
  | { type: PayloadType.SA; proposals: Proposal[] }
  | { type: PayloadType.KE; group: number; data: Uint8Array }
  | { type: PayloadType.Nonce; data: Uint8Array }
  | { type: PayloadType.IDi | PayloadType.IDr; idType: number; data: Uint8Array }
  | { type: PayloadType.AUTH; method: number; data: Uint8Array }
  | { type: PayloadType.Notify; protocol: number; spi: Uint8Array; notifyType: number; data: Uint8Array }
  | { type: PayloadType.Delete; protocol: number; spiSize: number; spis: Uint8Array[] }
  | { type: PayloadType.Vendor; data: Uint8Array }
  | { type: PayloadType.TSi | PayloadType.TSr; selectors: TsEntry[] }
  /** `firstPayload`: the type of the first payload inside. `offset`: where the SK payload's generic header starts in the message (parse only). */
  | { type: PayloadType.SK; firstPayload: number; body: Uint8Array; offset?: number }
  | { type: PayloadType.CERT | PayloadType.CERTREQ | PayloadType.CP | PayloadType.EAP; data: Uint8Array };

export interface IkeMessage {
  header: IkeHeader;
  payloads: Payload[];
}

/** Why a message did not parse. Keep the numbering stable. */
export const enum IkeWireError {
  None = 0,
  /** Shorter than its header, or a length field runs past the end. */
  Truncated = 1,
  /** The header's length field disagrees with the datagram, or bytes are left over after the chain. */
  BadLength = 2,
  /** Major version above 2 (§2.5: answer INVALID_MAJOR_VERSION). */
  BadVersion = 3,
  /** An unknown payload with the critical bit set (§2.5: answer UNSUPPORTED_CRITICAL_PAYLOAD). */
  UnsupportedCritical = 4,
  /** A payload's body is inconsistent (a substructure length, count or field is wrong). */
  BadPayload = 5,
  /** A payload follows the SK payload. */
  SkNotLast = 6,
}

export type IkeWireResult<T> =
  | { ok: true; value: T }
  | { ok: false; error: IkeWireError; detail: string; /** UnsupportedCritical: the payload type. */ payloadType?: number };

function fail<T>(error: IkeWireError, detail: string, payloadType?: number): IkeWireResult<T> {
  return payloadType === undefined ? { ok: false, error, detail } : { ok: false, error, detail, payloadType };
}

const KNOWN_PAYLOADS: ReadonlySet<number> = new Set([
  PayloadType.SA,
  PayloadType.KE,
  PayloadType.IDi,
  PayloadType.IDr,
  PayloadType.CERT,
  PayloadType.CERTREQ,
  PayloadType.AUTH,
  PayloadType.Nonce,
  PayloadType.Notify,
  PayloadType.Delete,
  PayloadType.Vendor,
  PayloadType.TSi,
  PayloadType.TSr,
  PayloadType.SK,
  PayloadType.CP,
  PayloadType.EAP,
]);

/** §3.1: the header alone (the SPIs of a message are needed even when its payloads do not parse). */
export function parseHeader(bytes: Uint8Array): IkeWireResult<IkeHeader & { nextPayload: number; length: number }> {
  if (bytes.length < IKE_HEADER_LENGTH) return fail(IkeWireError.Truncated, `${bytes.length} bytes, an IKE header is ${IKE_HEADER_LENGTH}`);
  const version = bytes[17];
  if (version >>> 4 !== IKE_MAJOR_VERSION) return fail(IkeWireError.BadVersion, `major version ${version >>> 4}`);
  const length = read32(bytes, 24);
  if (length !== bytes.length) return fail(IkeWireError.BadLength, `header says ${length} bytes, datagram has ${bytes.length}`);
  return {
    ok: true,
    value: {
      spiI: bytes.slice(0, SPI_LENGTH),
      spiR: bytes.slice(SPI_LENGTH, 2 * SPI_LENGTH),
      nextPayload: bytes[16],
      exchange: bytes[18],
      flags: bytes[19],
      messageId: read32(bytes, 20),
      length,
    },
  };
}

/** A whole message: header and the (outer) payload chain. */
export function parseMessage(bytes: Uint8Array): IkeWireResult<IkeMessage> {
  const h = parseHeader(bytes);
  if (!h.ok) return h;
  const { nextPayload, length: _length, ...header } = h.value;
  const chain = parsePayloadChain(bytes, nextPayload, IKE_HEADER_LENGTH, bytes.length);
  if (!chain.ok) return chain;
  return { ok: true, value: { header, payloads: chain.value } };
}

/** A payload chain from `offset` to `end`, the first payload of type `first` (0 = an empty chain). */
export function parsePayloadChain(bytes: Uint8Array, first: number, offset = 0, end = bytes.length): IkeWireResult<Payload[]> {
  const payloads: Payload[] = [];
  let type = first;
  let at = offset;
  while (type !== PayloadType.None) {
    if (at + PAYLOAD_HEADER_LENGTH > end) return fail(IkeWireError.Truncated, `payload ${type} header at ${at} past the end (${end})`);
    const next = bytes[at];
    const critical = (bytes[at + 1] & CRITICAL_BIT) !== 0;
    const length = read16(bytes, at + 2);
    if (length < PAYLOAD_HEADER_LENGTH) return fail(IkeWireError.BadPayload, `payload ${type} length ${length}`);
    if (at + length > end) return fail(IkeWireError.Truncated, `payload ${type} (${length} bytes at ${at}) past the end (${end})`);
    const body = bytes.subarray(at + PAYLOAD_HEADER_LENGTH, at + length);
    if (!KNOWN_PAYLOADS.has(type)) {
      if (critical) return fail(IkeWireError.UnsupportedCritical, `unknown critical payload ${type}`, type);
    } else if (type === PayloadType.SK) {
      if (at + length !== end) return fail(IkeWireError.SkNotLast, `${end - at - length} bytes after the SK payload`);
      payloads.push({ type: PayloadType.SK, firstPayload: next, body: body.slice(), offset: at });
      return { ok: true, value: payloads };
    } else {
      const p = parseBody(type, body);
      if (typeof p === 'string') return fail(IkeWireError.BadPayload, p);
      payloads.push(p);
    }
    type = next;
    at += length;
  }
  if (at !== end) return fail(IkeWireError.BadLength, `${end - at} bytes after the last payload`);
  return { ok: true, value: payloads };
}

/** One known payload's body; a string says what is wrong. */
function parseBody(type: number, b: Uint8Array): Payload | string {
  switch (type) {
    case PayloadType.SA:
      return parseSa(b);
    case PayloadType.KE:
      if (b.length < 4) return `KE body ${b.length} bytes`;
      return { type, group: read16(b, 0), data: b.slice(4) };
    case PayloadType.Nonce:
    case PayloadType.Vendor:
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
    case PayloadType.CP:
    case PayloadType.EAP:
      return { type, data: b.slice() };
    case PayloadType.IDi:
    case PayloadType.IDr:
      if (b.length < 4) return `ID body ${b.length} bytes`;
      return { type, idType: b[0], data: b.slice(4) };
    case PayloadType.AUTH:
      if (b.length < 4) return `AUTH body ${b.length} bytes`;
      return { type, method: b[0], data: b.slice(4) };
    case PayloadType.Notify: {
      if (b.length < 4) return `Notify body ${b.length} bytes`;
      const spiSize = b[1];
      if (4 + spiSize > b.length) return `Notify SPI size ${spiSize} in ${b.length} bytes`;
      return { type, protocol: b[0], spi: b.slice(4, 4 + spiSize), notifyType: read16(b, 2), data: b.slice(4 + spiSize) };
    }
    case PayloadType.Delete: {
      if (b.length < 4) return `Delete body ${b.length} bytes`;
      const spiSize = b[1];
      const count = read16(b, 2);
      if (4 + spiSize * count !== b.length) return `Delete: ${count} SPIs of ${spiSize} bytes in ${b.length - 4}`;
      const spis: Uint8Array[] = [];
      for (let i = 0; i < count; i++) spis.push(b.slice(4 + i * spiSize, 4 + (i + 1) * spiSize));
      return { type, protocol: b[0], spiSize, spis };
    }
    case PayloadType.TSi:
    case PayloadType.TSr:
      return parseTs(type, b);
    default:
      return `payload ${type} has no parser`;
  }
}

/** §3.3: proposals ‖ transforms ‖ attributes, every length checked against its container. */
function parseSa(b: Uint8Array): Payload | string {
  const proposals: Proposal[] = [];
  let at = 0;
  for (;;) {
    if (at + PROPOSAL_HEADER_LENGTH > b.length) return `SA: proposal header at ${at} past ${b.length}`;
    const last = b[at];
    const length = read16(b, at + 2);
    const spiSize = b[at + 6];
    const count = b[at + 7];
    if (last !== LAST_PROPOSAL && last !== MORE_PROPOSALS) return `SA: proposal "last" byte ${last}`;
    if (length < PROPOSAL_HEADER_LENGTH + spiSize || at + length > b.length) return `SA: proposal length ${length}`;
    const end = at + length;
    const proposal: Proposal = { number: b[at + 4], protocol: b[at + 5], spi: b.slice(at + 8, at + 8 + spiSize), transforms: [] };
    let t = at + PROPOSAL_HEADER_LENGTH + spiSize;
    for (let i = 0; i < count; i++) {
      if (t + TRANSFORM_HEADER_LENGTH > end) return `SA: transform ${i} of proposal ${proposal.number} past its end`;
      const tLast = b[t];
      const tLength = read16(b, t + 2);
      if (tLast !== (i === count - 1 ? LAST_TRANSFORM : MORE_TRANSFORMS)) return `SA: transform "last" byte ${tLast}`;
      if (tLength < TRANSFORM_HEADER_LENGTH || t + tLength > end) return `SA: transform length ${tLength}`;
      const transform: Transform = { type: b[t + 4], id: read16(b, t + 6), keyLength: null };
      let a = t + TRANSFORM_HEADER_LENGTH;
      while (a < t + tLength) {
        if (a + 4 > t + tLength) return `SA: attribute at ${a} truncated`;
        const word = read16(b, a);
        if ((word & ATTRIBUTE_FORMAT_TV) !== 0) {
          if ((word & ~ATTRIBUTE_FORMAT_TV) === ATTRIBUTE_KEY_LENGTH) transform.keyLength = read16(b, a + 2);
          else transform.unknownAttribute = true;
          a += 4;
        } else {
          const aLength = read16(b, a + 2);
          if (a + 4 + aLength > t + tLength) return `SA: attribute length ${aLength}`;
          transform.unknownAttribute = true;
          a += 4 + aLength;
        }
      }
      proposal.transforms.push(transform);
      t += tLength;
    }
    if (t !== end) return `SA: ${end - t} bytes after the transforms of proposal ${proposal.number}`;
    proposals.push(proposal);
    at = end;
    if (last === LAST_PROPOSAL) break;
  }
  if (at !== b.length) return `SA: ${b.length - at} bytes after the last proposal`;
  return { type: PayloadType.SA, proposals };
}

const TS_ADDRESS_LENGTH: Record<number, number> = { [TS_IPV4_ADDR_RANGE]: 4, [TS_IPV6_ADDR_RANGE]: 16 };

/** §3.13: number of TSs, reserved, then each selector. */
function parseTs(type: PayloadType.TSi | PayloadType.TSr, b: Uint8Array): Payload | string {
  if (b.length < TS_PAYLOAD_HEADER_LENGTH) return `TS body ${b.length} bytes`;
  const count = b[0];
  const selectors: TsEntry[] = [];
  let at = TS_PAYLOAD_HEADER_LENGTH;
  for (let i = 0; i < count; i++) {
    if (at + TS_HEADER_LENGTH > b.length) return `TS ${i} past the end`;
    const tsType = b[at];
    const length = read16(b, at + 2);
    const addressLength = TS_ADDRESS_LENGTH[tsType];
    if (addressLength === undefined) return `TS type ${tsType}`;
    if (length !== TS_HEADER_LENGTH + 2 * addressLength || at + length > b.length) return `TS ${i} length ${length}`;
    selectors.push({
      type: tsType,
      protocol: b[at + 1],
      startPort: read16(b, at + 4),
      endPort: read16(b, at + 6),
      start: b.slice(at + 8, at + 8 + addressLength),
      end: b.slice(at + 8 + addressLength, at + length),
    });
    at += length;
  }
  if (at !== b.length) return `TS: ${b.length - at} bytes after ${count} selectors`;
  return { type, selectors };
}

// --- building -----------------------------------------------------------------------------------

function u16(v: number): Uint8Array {
  const b = new Uint8Array(2);
  write16(b, 0, v);
  return b;
}

/** A 4-byte "type ‖ 3 reserved" or "a ‖ b ‖ 16-bit" prefix as most bodies start. */
function prefix(b0: number, b1: number, w: number): Uint8Array {
  const b = new Uint8Array(4);
  b[0] = b0;
  b[1] = b1;
  write16(b, 2, w);
  return b;
}

function buildTransform(t: Transform, last: boolean): Uint8Array {
  const attributeLength = t.keyLength === null ? 0 : 4;
  const b = new Uint8Array(TRANSFORM_HEADER_LENGTH + attributeLength);
  b[0] = last ? LAST_TRANSFORM : MORE_TRANSFORMS;
  write16(b, 2, b.length);
  b[4] = t.type;
  write16(b, 6, t.id);
  if (t.keyLength !== null) {
    write16(b, 8, ATTRIBUTE_FORMAT_TV | ATTRIBUTE_KEY_LENGTH);
    write16(b, 10, t.keyLength);
  }
  return b;
}

function buildProposal(p: Proposal, last: boolean): Uint8Array {
  const transforms = p.transforms.map((t, i) => buildTransform(t, i === p.transforms.length - 1));
  const head = new Uint8Array(PROPOSAL_HEADER_LENGTH);
  head[0] = last ? LAST_PROPOSAL : MORE_PROPOSALS;
  head[4] = p.number;
  head[5] = p.protocol;
  head[6] = p.spi.length;
  head[7] = p.transforms.length;
  const out = concatBytes([head, p.spi, ...transforms]);
  write16(out, 2, out.length);
  return out;
}

function buildTsEntry(e: TsEntry): Uint8Array {
  const b = new Uint8Array(TS_HEADER_LENGTH + e.start.length + e.end.length);
  b[0] = e.type;
  b[1] = e.protocol;
  write16(b, 2, b.length);
  write16(b, 4, e.startPort);
  write16(b, 6, e.endPort);
  b.set(e.start, 8);
  b.set(e.end, 8 + e.start.length);
  return b;
}

/** A payload's body (without its generic header). */
export function buildBody(p: Payload): Uint8Array {
  switch (p.type) {
    case PayloadType.SA:
      return concatBytes(p.proposals.map((q, i) => buildProposal(q, i === p.proposals.length - 1)));
    case PayloadType.KE:
      return concatBytes([u16(p.group), new Uint8Array(2), p.data]);
    case PayloadType.IDi:
    case PayloadType.IDr:
      return concatBytes([prefix(p.idType, 0, 0), p.data]);
    case PayloadType.AUTH:
      return concatBytes([prefix(p.method, 0, 0), p.data]);
    case PayloadType.Notify:
      return concatBytes([prefix(p.protocol, p.spi.length, p.notifyType), p.spi, p.data]);
    case PayloadType.Delete:
      return concatBytes([prefix(p.protocol, p.spiSize, p.spis.length), ...p.spis]);
    case PayloadType.TSi:
    case PayloadType.TSr:
      return concatBytes([prefix(p.selectors.length, 0, 0), ...p.selectors.map(buildTsEntry)]);
    case PayloadType.SK:
      return p.body;
    default:
      return p.data;
  }
}

/** The identification payload's body as AUTH signs it (§2.15: "the ID payload ... excluding the fixed header"). */
export function idBody(idType: number, data: Uint8Array): Uint8Array {
  return concatBytes([prefix(idType, 0, 0), data]);
}

/** The chain: each payload's generic header carries the next one's type; `last` goes into the last header. */
export function buildPayloadChain(payloads: readonly Payload[], last = PayloadType.None): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i];
    const body = buildBody(p);
    const head = new Uint8Array(PAYLOAD_HEADER_LENGTH);
    head[0] = i + 1 < payloads.length ? payloads[i + 1].type : p.type === PayloadType.SK ? p.firstPayload : last;
    write16(head, 2, PAYLOAD_HEADER_LENGTH + body.length);
    parts.push(head, body);
  }
  return concatBytes(parts);
}

function headerBytes(h: IkeHeader, nextPayload: number, length: number): Uint8Array {
  const b = new Uint8Array(IKE_HEADER_LENGTH);
  b.set(h.spiI, 0);
  b.set(h.spiR, SPI_LENGTH);
  b[16] = nextPayload;
  b[17] = IKE_VERSION;
  b[18] = h.exchange;
  b[19] = h.flags;
  write32(b, 20, h.messageId);
  write32(b, 24, length);
  return b;
}

/** An unencrypted message (IKE_SA_INIT, or a test's). */
export function buildMessage(header: IkeHeader, payloads: readonly Payload[]): Uint8Array {
  const chain = buildPayloadChain(payloads);
  const first = payloads.length > 0 ? payloads[0].type : PayloadType.None;
  return concatBytes([headerBytes(header, first, IKE_HEADER_LENGTH + chain.length), chain]);
}

/** What buildEncryptedMessage needs of an SK codec (crypto.ts's SkCodec fits). */
export interface SkSealer {
  sealedLength(plainLength: number): number;
  seal(aad: Uint8Array, plain: Uint8Array): Uint8Array;
}

/** §3.14: header ‖ SK(inner payloads); the AAD is every byte before the IV, lengths already final. */
export function buildEncryptedMessage(header: IkeHeader, inner: readonly Payload[], sealer: SkSealer): Uint8Array {
  const plain = buildPayloadChain(inner);
  const first = inner.length > 0 ? inner[0].type : PayloadType.None;
  const sealedLength = sealer.sealedLength(plain.length);
  const total = IKE_HEADER_LENGTH + PAYLOAD_HEADER_LENGTH + sealedLength;
  const aad = new Uint8Array(IKE_HEADER_LENGTH + PAYLOAD_HEADER_LENGTH);
  aad.set(headerBytes(header, PayloadType.SK, total), 0);
  aad[IKE_HEADER_LENGTH] = first;
  write16(aad, IKE_HEADER_LENGTH + 2, PAYLOAD_HEADER_LENGTH + sealedLength);
  const body = sealer.seal(aad, plain);
  return concatBytes([aad, body]);
}

/** What openEncrypted needs of an SK codec. */
export interface SkOpener {
  open(aad: Uint8Array, body: Uint8Array): Uint8Array | null;
}

/**
 * The inner payloads of a message whose last payload is SK: null if there is no SK payload or it does not
 * authenticate (the caller counts a bad ICV), else the parse result of the plaintext chain.
 */
export function openEncrypted(bytes: Uint8Array, message: IkeMessage, opener: SkOpener): IkeWireResult<Payload[]> | null {
  const sk = message.payloads[message.payloads.length - 1];
  if (sk === undefined || sk.type !== PayloadType.SK || sk.offset === undefined) return null;
  const aad = bytes.subarray(0, sk.offset + PAYLOAD_HEADER_LENGTH);
  const plain = sk.body.length === 0 ? null : opener.open(aad, sk.body);
  if (plain === null) return null;
  return parsePayloadChain(plain, sk.firstPayload);
}
