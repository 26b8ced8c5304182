/**
 * pcapng writer (draft-ietf-opsawg-pcapng, "PCAP Now Generic"): the blocks `tether capture` writes — a Section
 * Header Block, one Interface Description Block per side, and an Enhanced Packet Block per packet with its
 * decision in `opt_comment`. Pure: bytes in, bytes out; the caller decides when (off the packet path).
 *
 * Every block is  type(4) ‖ total length(4) ‖ body ‖ total length(4), 32-bit aligned (section 3.1). We write
 * little-endian; the Section Header's byte-order magic tells readers so (section 4.1). Options are
 * code(2) ‖ length(2) ‖ value padded to 4, ended by opt_endofopt (section 3.5).
 */

/** Block types (section 11.1). */
export const BLOCK_SECTION_HEADER = 0x0a0d0d0a;
export const BLOCK_INTERFACE_DESCRIPTION = 0x00000001;
export const BLOCK_ENHANCED_PACKET = 0x00000006;
/** Written as 1A2B3C4D in the writer's byte order: readers detect ours from it (section 4.1). */
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
export const PCAPNG_MAJOR = 1;
export const PCAPNG_MINOR = 0;
/** LINKTYPE_RAW: the packet starts with an IPv4 or IPv6 header (tcpdump.org link types). */
export const LINKTYPE_RAW = 101;

/** Option codes (section 3.5, 4.1, 4.2). */
export const OPT_ENDOFOPT = 0;
export const OPT_COMMENT = 1;
export const SHB_USERAPPL = 4;
export const IF_NAME = 2;
export const IF_DESCRIPTION = 3;
export const IF_TSRESOL = 9;
/** if_tsresol 6: timestamps count microseconds (10^-6 s), the default made explicit (section 4.2). */
export const TSRESOL_MICROSECONDS = 6;

/** Fixed parts, bytes: block header (type + length) and trailer (length). */
const BLOCK_FRAME = 12;
/** Section Header body before its options: magic, major, minor, section length (64 bits). */
const SHB_FIXED = 16;
/** Interface Description body before its options: link type, reserved, snap length. */
const IDB_FIXED = 8;
/** Enhanced Packet body before the packet: interface id, timestamp high, low, captured and original length. */
const EPB_FIXED = 20;
/** Option header: code and length. */
const OPTION_HEADER = 4;
/** Largest option value the 16-bit length holds. */
export const MAX_OPTION_LENGTH = 0xffff;
const TWO_POW_32 = 0x1_0000_0000;

const encoder = new TextEncoder();

/** n rounded up to a multiple of 4 (every field and block is 32-bit aligned, section 3.1). */
export function pad4(n: number): number {
  return (n + 3) & ~3;
}

interface Option {
  code: number;
  value: Uint8Array;
}

function optionsLength(options: readonly Option[]): number {
  if (options.length === 0) return 0;
  let n = OPTION_HEADER; // opt_endofopt
  for (const o of options) n += OPTION_HEADER + pad4(o.value.length);
  return n;
}

function writeOptions(view: DataView, out: Uint8Array, at: number, options: readonly Option[]): number {
  if (options.length === 0) return at;
  for (const o of options) {
    if (o.value.length > MAX_OPTION_LENGTH) throw new RangeError(`pcapng option ${o.code}: ${o.value.length} bytes, at most ${MAX_OPTION_LENGTH}`);
    view.setUint16(at, o.code, true);
    view.setUint16(at + 2, o.value.length, true);
    out.set(o.value, at + OPTION_HEADER);
    at += OPTION_HEADER + pad4(o.value.length);
  }
  view.setUint32(at, OPT_ENDOFOPT, true); // code 0, length 0
  return at + OPTION_HEADER;
}

function block(type: number, fixed: number, options: readonly Option[], fill: (view: DataView, out: Uint8Array) => void): Uint8Array {
  const total = BLOCK_FRAME + fixed + optionsLength(options);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, total, true);
  fill(view, out);
  writeOptions(view, out, 8 + fixed, options);
  view.setUint32(total - 4, total, true);
  return out;
}

/** A Section Header Block (section 4.1): section length unknown (-1), the writing application named. */
export function sectionHeader(application: string): Uint8Array {
  return block(BLOCK_SECTION_HEADER, SHB_FIXED, [{ code: SHB_USERAPPL, value: encoder.encode(application) }], (view) => {
    view.setUint32(8, BYTE_ORDER_MAGIC, true);
    view.setUint16(12, PCAPNG_MAJOR, true);
    view.setUint16(14, PCAPNG_MINOR, true);
    // -1: "not specified" (section 4.1), as a 64-bit two's complement.
    view.setUint32(16, 0xffffffff, true);
    view.setUint32(20, 0xffffffff, true);
  });
}

export interface InterfaceSpec {
  /** if_name: shown by tshark as the frame's interface. */
  name: string;
  description?: string;
  linkType?: number;
  /** Largest captured length; 0 = no limit (section 4.2). */
  snapLength?: number;
}

/** An Interface Description Block (section 4.2) with if_name, if_description and if_tsresol (microseconds). */
export function interfaceDescription(spec: InterfaceSpec): Uint8Array {
  const options: Option[] = [{ code: IF_NAME, value: encoder.encode(spec.name) }];
  if (spec.description !== undefined) options.push({ code: IF_DESCRIPTION, value: encoder.encode(spec.description) });
  options.push({ code: IF_TSRESOL, value: Uint8Array.of(TSRESOL_MICROSECONDS) });
  return block(BLOCK_INTERFACE_DESCRIPTION, IDB_FIXED, options, (view) => {
    view.setUint16(8, spec.linkType ?? LINKTYPE_RAW, true);
    view.setUint16(10, 0, true);
    view.setUint32(12, spec.snapLength ?? 0, true);
  });
}

/** Bytes an Enhanced Packet Block of `captured` packet bytes and a `commentBytes`-byte comment takes (0: none). */
export function enhancedPacketSize(captured: number, commentBytes: number): number {
  const options = commentBytes > 0 ? OPTION_HEADER + pad4(commentBytes) + OPTION_HEADER : 0;
  return BLOCK_FRAME + EPB_FIXED + pad4(captured) + options;
}

/**
 * Writes an Enhanced Packet Block (section 4.3) at out[at…]: `captured` bytes of the packet from
 * packet[offset…], its `original` length, the timestamp in microseconds since 1970 (if_tsresol 6), and the
 * comment (UTF-8 bytes, or null). The caller sized `out` with enhancedPacketSize. Returns the bytes written.
 */
export function writeEnhancedPacket(
  out: Uint8Array,
  at: number,
  interfaceId: number,
  timestampMicros: number,
  packet: Uint8Array,
  offset: number,
  captured: number,
  original: number,
  comment: Uint8Array | null,
): number {
  const commentBytes = comment === null ? 0 : comment.length;
  if (commentBytes > MAX_OPTION_LENGTH) throw new RangeError(`pcapng comment: ${commentBytes} bytes, at most ${MAX_OPTION_LENGTH}`);
  if (captured > original) throw new RangeError(`pcapng packet: captured length ${captured} exceeds its original length ${original}`);
  const total = enhancedPacketSize(captured, commentBytes);
  const view = new DataView(out.buffer, out.byteOffset + at, total);
  view.setUint32(0, BLOCK_ENHANCED_PACKET, true);
  view.setUint32(4, total, true);
  view.setUint32(8, interfaceId, true);
  const ts = Math.max(0, Math.floor(timestampMicros));
  view.setUint32(12, Math.floor(ts / TWO_POW_32), true);
  view.setUint32(16, ts % TWO_POW_32, true);
  view.setUint32(20, captured, true);
  view.setUint32(24, original, true);
  out.set(packet.subarray(offset, offset + captured), at + 28);
  // Padding after the packet must be zero-filled (section 4.3).
  out.fill(0, at + 28 + captured, at + 28 + pad4(captured));
  let o = 28 + pad4(captured);
  if (comment !== null && commentBytes > 0) {
    view.setUint16(o, OPT_COMMENT, true);
    view.setUint16(o + 2, commentBytes, true);
    out.set(comment, at + o + OPTION_HEADER);
    out.fill(0, at + o + OPTION_HEADER + commentBytes, at + o + OPTION_HEADER + pad4(commentBytes));
    o += OPTION_HEADER + pad4(commentBytes);
    view.setUint32(o, OPT_ENDOFOPT, true);
    o += OPTION_HEADER;
  }
  view.setUint32(o, total, true);
  return total;
}

/** An Enhanced Packet Block as a new array (tests and the control plane). */
export function enhancedPacket(interfaceId: number, timestampMicros: number, packet: Uint8Array, comment: string | null, original = packet.length): Uint8Array {
  const c = comment === null ? null : encoder.encode(comment);
  const out = new Uint8Array(enhancedPacketSize(packet.length, c === null ? 0 : c.length));
  writeEnhancedPacket(out, 0, interfaceId, timestampMicros, packet, 0, packet.length, original, c);
  return out;
}
