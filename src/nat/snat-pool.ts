/**
 * Source NAT pool for Internet egress (RFC 4787 for UDP, RFC 5382 for TCP, RFC 5508 for ICMP queries).
 *
 *   internal endpoint (zone, protocol, family, address, port)
 *        │  acquire: find-or-create the mapping, +1 reference per flow
 *        ▼
 *   mapping table (chained hash, struct of typed arrays, grows by doubling up to maxMappings)
 *        │
 *        ▼
 *   port space per (pool address, protocol slot): used-port bitmap + "has a free port" summaries,
 *   and external port -> mapping index (for the reverse lookup: hairpinning, RFC 4787 REQ-9)
 *
 * Behaviour (RFC 4787 section 12 requirement numbers):
 *   - REQ-1 endpoint-independent mapping: the key is the internal endpoint only, never the destination.
 *   - REQ-2 address pooling "paired": the external address is a pure function of (zone, internal address)
 *     (a seeded hash over the pool's addresses of that family). When that address has no free port the
 *     acquire FAILS (returns -1, the caller drops with Drop.NatExhausted) rather than using another
 *     address: switching would break pairing for the host's other mappings (RFC 4787 section 4.1).
 *   - REQ-3 port preservation when the internal port is free; never port overloading (one external
 *     (address, protocol, port) belongs to at most one internal endpoint). Port range preference:
 *     an internal port 0-1023 prefers an external port 0-1023 (when portMin allows), 1024-65535 prefers
 *     1024-65535; when the preferred range is full any pool port is used (REQ-3 is a SHOULD).
 *   - REQ-4 parity preservation: an even internal port gets an even external port and odd gets odd while
 *     one is free in the pool; after that, any free port (we prefer working over parity).
 *   Order of preference: the internal port itself; same range and parity; any range, same parity; anything.
 *
 * Per-site port quotas (issue 11, docs/FLOW-MODEL.md "Fair shares"): a mapping is charged to the site whose
 * flow created it (acquire's `site`; 0 = charged to nobody). A site may hold at most sitePortQuota(slot) ports of
 * each port space (one pool address, one protocol); past it acquire returns NAT_SITE_QUOTA and the caller drops
 * with Drop.NatQuotaExceeded. By default the quota is the fair share of the space's range among the sites
 * (common/fair-share.ts), so one site sending from 64 k source ports leaves every other site ports to map.
 *
 * Protocol spaces: TCP, UDP and ICMP queries are independent (RFC 5508 section 3.1: the ICMP "port" is the
 * echo identifier). ICMP and ICMPv6 share a slot: a pool address has one family so they never collide.
 * Other protocols are not translated (acquire returns -1; check supportsProtocol() first).
 *
 * Hot path: acquire/release/lookupExternal allocate nothing on the steady state. The only allocations are
 * the mapping table doubling (amortised, bounded by maxMappings) and the first use of a pool address for a
 * protocol (its port space, ~264 KiB, allocated once and kept) and the per-site counts growing to a new highest site id.
 */
import { fairShare } from '../common/fair-share.js';
import { finalMix, mixWord, modU32, randomSeed } from '../common/hash.js';
import { MAX_SITE_ID } from '../common/ids.js';
import type { LaneDirectory } from '../common/lane-directory.js';
import { laneCountProblem, laneFirst, laneLast, laneOfPort } from '../common/lanes.js';
import { AF_INET4, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/constants.js';
import { formatIpv4, formatIpv6, parseAddress } from '../wire/addr.js';

export interface SnatPoolOptions {
  /** Egress addresses, IPv4 and/or IPv6 text. */
  addresses: string[];
  /** Lowest external TCP/UDP port handed out, >= 1; default 1024. ICMP echo identifiers use all of 0..65535. */
  portMin?: number;
  /** Highest external port handed out; default 65535. */
  portMax?: number;
  /** Upper bound on live mappings (default 1 << 20); acquire returns -1 beyond it. */
  maxMappings?: number;
  /** Hash seed of the mapping table and the address pairing; random by default (hash-flooding defence). Tests pass a fixed one. */
  hashSeed?: number;
  /**
   * Mappings to make room for at once (default 1024; at most maxMappings): the pipeline sizes it to its flow
   * tables (a flow holds at most one mapping), so setup never stops to double and rehash the table.
   */
  initialMappings?: number;
  /** Where the mapping table's arrays get their memory (see FlowTableOptions.allocate); ordinary buffers by default. */
  allocate?: (bytes: number) => ArrayBuffer;
  /**
   * Lanes (common/lanes.ts): this pool is lane `lane` of `lanes` (default 0 of 1) and hands out only its slice of
   * every range — TCP/UDP [portMin, portMax], ICMP identifiers 0..65535 — so pools of different lanes never give
   * out the same external endpoint, and laneOfExternal() names the lane that owns a reply.
   */
  lane?: number;
  lanes?: number;
  /**
   * Lanes: the shared ownership directory (common/lane-directory.ts). The pool claims each mapping's internal
   * endpoint for its lane when it creates the mapping and releases it when the mapping goes, so a lane that sees a
   * new flow of that endpoint hands it here (RFC 4787 REQ-1 across lanes). Setup only: one hash and one write.
   */
  directory?: LaneDirectory;
}

/** An endpoint's directory value: its external port in the low 16 bits, the pool address index above. */
const DIRECTORY_ADDRESS_SHIFT = 16;

/** acquire's answer when the site is at its port quota for the paired address and protocol. */
export const NAT_SITE_QUOTA = -2;

/**
 * Per-site port quotas: `sites` sites share each pool address; `maxPorts` ports per site and port space,
 * 0 = no quota, absent = the fair share of the space's range among `sites` (fairShare).
 */
export interface SiteQuota {
  sites: number;
  maxPorts?: number;
}

/** A reverse-lookup result: the internal endpoint behind an external (address, port). */
export class NatEndpoint {
  zone = 0;
  port = 0;
  /** Internal address words; IPv4 uses word 0 (the others are written 0). */
  readonly addr = new Uint32Array(4);
}

export interface PortUsage {
  address: string;
  protocol: number;
  used: number;
  total: number;
}

// --- implementation constants ----------------------------------------------------------------
const PORT_SPACE = 65536;
/**
 * Reverse indexes (extToMapping) carved from one allocation, when the owner gives memory (opts.allocate: the
 * pipeline's huge pages): 8 spaces of 256 KiB = one 2 MiB huge page. acquire writes the index at a random port
 * of its space; on 4 KiB pages that was a TLB miss per new mapping.
 */
const REVERSE_SLAB_SPACES = 8;
const PORT_MASK = 0xffff;
/** Used-port bitmap: one bit per port. */
const BITMAP_WORDS = PORT_SPACE >>> 5;
/** Summary: one bit per bitmap word ("this word has a free port of that parity"), so a scan reads at most 64 words. */
const SUMMARY_WORDS = BITMAP_WORDS >>> 5;
/** Three summaries per space, in this order: even-free, odd-free, any-free. */
const SUMMARY_EVEN = 0;
const SUMMARY_ODD = SUMMARY_WORDS;
const SUMMARY_ANY = 2 * SUMMARY_WORDS;
const SUMMARY_TOTAL = 3 * SUMMARY_WORDS;
/** Bit i of a bitmap word is port 32*w + i, so even ports are the even bits. */
const EVEN_BITS = 0x55555555;
const ODD_BITS = 0xaaaaaaaa | 0;
const ALL_BITS = -1;
const PARITY_EVEN = 0;
const PARITY_ODD = 1;
const PARITY_ANY = 2;
/** RFC 4787 REQ-3: the two port ranges are 0-1023 and 1024-65535. */
const WELL_KNOWN_END = 1023;

const SLOT_TCP = 0;
const SLOT_UDP = 1;
const SLOT_ICMP = 2;
const SLOT_COUNT = 3;

/** Mapping record layout (Int32 words): the internal endpoint, its chain, its external side. */
const M_HASH = 0;
const M_NEXT = 1;
const M_ZONE = 2;
const M_PROTO_FAMILY = 3;
const M_PORT = 4;
/** Four words; IPv4 uses the first. */
const M_ADDR = 5;
/** Port space (address index * SLOT_COUNT + slot) of the external endpoint. */
const M_EXT_SPACE = 9;
const M_EXT_PORT = 10;
/** Flows holding the mapping. */
const M_REFS = 11;
/** The site charged for its external port (0: none). */
const M_SITE = 12;
const MAPPING_STRIDE = 13;
/** Site ids index the per-space usage counts. */
const SITE_SPACE = MAX_SITE_ID + 1;
/** Per-site counts start with room for this many site ids. */
const SITE_INITIAL = 64;

const NIL = -1;
const DEFAULT_PORT_MIN = 1024;
const DEFAULT_PORT_MAX = 65535;
const DEFAULT_MAX_MAPPINGS = 1 << 20;
const INITIAL_CAPACITY = 1024;
/** Packets of a pre-pass chunk forecast4 keeps notes for (Pipeline's PREFETCH_CHUNK is 64). */
const FORECAST_SLOTS = 256;
/** Salt so the address-pairing hash is independent of the mapping-table hash. */
const PAIRING_SALT = 0x27d4eb2f;
/** protoFam packs protocol (8 bits) and family (4 or 6) into one comparable word. */
const FAMILY_SHIFT = 8;

const EMPTY_I32 = new Int32Array(0);
const EMPTY_U32 = new Uint32Array(0);

/** Mixes an address (1 word for IPv4, 4 for IPv6) into a running hash. */
function mixAddress(h: number, family: number, addr: Uint32Array, offset: number): number {
  h = mixWord(h, addr[offset]);
  if (family === AF_INET6) {
    h = mixWord(h, addr[offset + 1]);
    h = mixWord(h, addr[offset + 2]);
    h = mixWord(h, addr[offset + 3]);
  }
  return h;
}

/** Seeded hash of (zone, address words): the address-pairing key (REQ-2). */
function hashZoneAddress(seed: number, zone: number, family: number, addr: Uint32Array, offset: number): number {
  return finalMix(mixAddress(mixWord(seed, zone), family, addr, offset));
}

/** hashZoneAddress of an IPv4 address given as a word (signed or not). */
function hashZoneAddress4(seed: number, zone: number, addr: number): number {
  return finalMix(mixWord(mixWord(seed, zone), addr));
}

/** Index of the lowest set bit of a non-zero word. */
function lowestBit(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Bits b..31 set. */
function bitsFrom(b: number): number {
  return ALL_BITS << b;
}

/** Bits 0..b set. */
function bitsUpTo(b: number): number {
  return b === 31 ? ALL_BITS : (1 << (b + 1)) - 1;
}

/** Protocol -> port-space slot, or -1 for protocols the pool does not translate. */
function protocolSlot(protocol: number): number {
  if (protocol === IPPROTO_TCP) return SLOT_TCP;
  if (protocol === IPPROTO_UDP) return SLOT_UDP;
  if (protocol === IPPROTO_ICMP || protocol === IPPROTO_ICMPV6) return SLOT_ICMP;
  return -1;
}

export class SnatPool {
  readonly portMin: number;
  readonly portMax: number;
  readonly maxMappings: number;
  readonly lane: number;
  readonly lanes: number;
  private readonly seed: number;
  /** Per protocol slot: the lane's slice of the slot's range (the whole range with one lane). */
  private readonly sliceMin = new Int32Array(SLOT_COUNT);
  private readonly sliceMax = new Int32Array(SLOT_COUNT);

  // --- pool addresses (index = position in opts.addresses) -----------------------------------
  private readonly addrCount: number;
  private readonly addrFamily: Uint8Array;
  /** Four words per address; IPv4 in word 0. */
  private readonly addrWords: Uint32Array;
  /** Global indices of the pool's addresses per family (pairing picks among them). */
  private readonly family4: Int32Array;
  private readonly family6: Int32Array;
  /** Open-addressed address -> index tables (for isPoolAddress and lookupExternal). */
  private readonly lookupMask: number;
  private readonly lookup4: Int32Array;
  /**
   * The lowest and highest IPv4 pool address (unsigned; low > high when there is none): flow setup asks for every
   * first packet whether it is addressed to the pool (hairpinning), and almost none is; one range compare answers.
   */
  private readonly low4: number;
  private readonly high4: number;
  private readonly lookup6: Int32Array;

  // --- port spaces, index = addressIndex * SLOT_COUNT + slot; allocated on first use ---------
  private readonly used: Uint32Array[];
  private readonly summary: Uint32Array[];
  /** External port -> mapping index, NIL when free. */
  private readonly extToMapping: Int32Array[];
  private readonly usedCount: Int32Array;
  /** Ports held per site, per space (index = site id); grown to the highest site id charged (few sites: a few bytes). */
  private readonly siteUsed: Int32Array[];
  /** Per protocol slot: the most ports of one space a site may hold; 0 = no quota. */
  private readonly siteQuota = new Int32Array(SLOT_COUNT);

  // --- mapping table: one record of MAPPING_STRIDE words per mapping, chained -----------------
  // A record keeps everything an acquire or release touches on one or two cache lines, instead of
  // one line per field (what made struct-of-arrays slow at a million mappings).
  private capacity = 0;
  private count = 0;
  private bucketMask = 0;
  private buckets: Int32Array = EMPTY_I32;
  private records: Int32Array = EMPTY_I32;
  private freeHead = NIL;
  /** forecast4's notes for prefetch(), per packet of the pre-pass chunk: the paired space (NIL: none), the port, the endpoint hash. */
  private readonly forecastSpace = new Int32Array(FORECAST_SLOTS).fill(NIL);
  private readonly forecastPort = new Int32Array(FORECAST_SLOTS);
  private readonly forecastHash = new Int32Array(FORECAST_SLOTS);
  private readonly allocate: (bytes: number) => ArrayBuffer;
  /** Whether `allocate` is the owner's (then the reverse indexes come from it too, REVERSE_SLAB_SPACES at a time). */
  private readonly ownerMemory: boolean;
  /** The slab the next reverse index is carved from, how many it holds already, and the bytes of all slabs. */
  private reverseSlab: ArrayBuffer | null = null;
  private reverseSlabUsed = 0;
  private reverseSlabBytes = 0;
  /** Lanes: where this pool's mappings are claimed (null without lanes). */
  private readonly directory: LaneDirectory | null;

  constructor(opts: SnatPoolOptions) {
    const portMin = opts.portMin ?? DEFAULT_PORT_MIN;
    const portMax = opts.portMax ?? DEFAULT_PORT_MAX;
    const maxMappings = opts.maxMappings ?? DEFAULT_MAX_MAPPINGS;
    // Port 0 is not a usable TCP/UDP source port, hence portMin >= 1.
    if (!Number.isInteger(portMin) || portMin < 1 || portMin > PORT_MASK) throw new RangeError(`snat: portMin must be an integer 1..65535, got ${portMin}`);
    if (!Number.isInteger(portMax) || portMax < portMin || portMax > PORT_MASK) throw new RangeError(`snat: portMax must be an integer ${portMin}..65535, got ${portMax}`);
    if (!Number.isInteger(maxMappings) || maxMappings < 1 || maxMappings > 1 << 28) throw new RangeError(`snat: maxMappings must be an integer 1..2^28, got ${maxMappings}`);
    if (!Array.isArray(opts.addresses)) throw new TypeError('snat: addresses must be an array of address strings');
    this.portMin = portMin;
    this.portMax = portMax;
    this.maxMappings = maxMappings;
    const lanes = opts.lanes ?? 1;
    const lane = opts.lane ?? 0;
    const lanesProblem = laneCountProblem(lanes);
    if (lanesProblem !== null) throw new RangeError(`snat: ${lanesProblem}`);
    if (!Number.isInteger(lane) || lane < 0 || lane >= lanes) throw new RangeError(`snat: lane must be an integer 0..${lanes - 1}, got ${lane}`);
    this.lane = lane;
    this.lanes = lanes;
    this.directory = opts.directory ?? null;
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      const min = slot === SLOT_ICMP ? 0 : portMin;
      const max = slot === SLOT_ICMP ? PORT_MASK : portMax;
      this.sliceMin[slot] = laneFirst(min, max, lane, lanes);
      this.sliceMax[slot] = laneLast(min, max, lane, lanes);
      // An empty slice would make every acquire of the slot fail: refuse it here, where the cause is known.
      if (this.sliceMin[slot] > this.sliceMax[slot]) throw new RangeError(`snat: port range ${min}..${max} is too small for ${lanes} lanes`);
    }
    this.seed = (opts.hashSeed ?? randomSeed()) | 0;

    const n = opts.addresses.length;
    this.addrCount = n;
    this.addrFamily = new Uint8Array(n);
    this.addrWords = new Uint32Array(n * 4);
    const v4: number[] = [];
    const v6: number[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const text = opts.addresses[i];
      const family = typeof text === 'string' ? parseAddress(text, this.addrWords, i * 4) : 0;
      if (family === 0) throw new RangeError(`snat: addresses[${i}] ${JSON.stringify(text)} is not an IPv4 or IPv6 address`);
      const canonical = family === AF_INET4 ? formatIpv4(this.addrWords[i * 4]) : formatIpv6(this.addrWords, i * 4);
      if (seen.has(canonical)) throw new RangeError(`snat: addresses[${i}] ${text} is listed twice`);
      seen.add(canonical);
      this.addrFamily[i] = family;
      (family === AF_INET4 ? v4 : v6).push(i);
    }
    this.family4 = Int32Array.from(v4);
    let low4 = 0xffffffff;
    let high4 = 0;
    for (const i of v4) {
      low4 = Math.min(low4, this.addrWords[i * 4]);
      high4 = Math.max(high4, this.addrWords[i * 4]);
    }
    this.low4 = low4;
    this.high4 = high4;
    this.family6 = Int32Array.from(v6);

    let tableSize = 4;
    while (tableSize < 2 * n) tableSize <<= 1;
    this.lookupMask = tableSize - 1;
    this.lookup4 = new Int32Array(tableSize).fill(NIL);
    this.lookup6 = new Int32Array(tableSize).fill(NIL);
    for (let i = 0; i < n; i++) {
      const table = this.addrFamily[i] === AF_INET4 ? this.lookup4 : this.lookup6;
      let h = this.addressHash(this.addrFamily[i], this.addrWords, i * 4) & this.lookupMask;
      while (table[h] !== NIL) h = (h + 1) & this.lookupMask;
      table[h] = i;
    }

    const spaces = n * SLOT_COUNT;
    this.used = new Array<Uint32Array>(spaces).fill(EMPTY_U32);
    this.summary = new Array<Uint32Array>(spaces).fill(EMPTY_U32);
    this.extToMapping = new Array<Int32Array>(spaces).fill(EMPTY_I32);
    this.usedCount = new Int32Array(spaces);
    this.siteUsed = new Array<Int32Array>(spaces).fill(EMPTY_I32);

    const initial = opts.initialMappings ?? INITIAL_CAPACITY;
    if (!Number.isInteger(initial) || initial < 1) throw new RangeError(`snat: initialMappings must be a positive integer, got ${initial}`);
    this.allocate = opts.allocate ?? ((bytes: number) => new ArrayBuffer(bytes));
    this.ownerMemory = opts.allocate !== undefined;
    this.grow(Math.min(initial, maxMappings));
  }

  /** True for the protocols the pool translates (TCP, UDP, ICMP, ICMPv6). */
  supportsProtocol(protocol: number): boolean {
    return protocolSlot(protocol) >= 0;
  }

  /** Bytes on `allocate`'s memory: the mapping table (records and buckets) and, when the owner gave it, the reverse indexes' slabs. */
  mappingTableBytes(): number {
    return this.records.byteLength + this.buckets.byteLength + this.reverseSlabBytes;
  }

  /** Live mappings (internal endpoints with at least one reference). */
  get mappings(): number {
    return this.count;
  }

  /**
   * Finds or creates the mapping of an internal endpoint and takes one reference on it (see the file header
   * for the allocation rules). Writes the external address to out[outOffset..] (IPv4: word 0 only; IPv6:
   * four words) and returns the external port, or -1 when the paired address has no free port, the table is
   * at maxMappings, the protocol is not translated, the pool has no address of that family or the input
   * port is not a 16-bit number; NAT_SITE_QUOTA when a new mapping would take `site` past its port quota.
   * A new mapping is charged to `site` (1..MAX_SITE_ID; 0 = nobody, no quota).
   */
  acquire(zone: number, protocol: number, family: 4 | 6, addr: Uint32Array, addrOffset: number, port: number, out: Uint32Array, outOffset: number, site = 0): number {
    const slot = protocolSlot(protocol);
    if (slot < 0 || (port & PORT_MASK) !== port) return -1;
    const pf = protocol | (family << FAMILY_SHIFT);
    const h = this.endpointHash(zone, pf, family, addr, addrOffset, port);
    let m = this.find(h, zone, pf, family, addr, addrOffset, port);
    if (m === NIL) {
      const candidates = family === AF_INET4 ? this.family4 : this.family6;
      if (candidates.length === 0) return -1;
      if (this.freeHead === NIL) {
        if (this.capacity >= this.maxMappings) return -1;
        this.grow(Math.min(this.capacity * 2, this.maxMappings));
      }
      // REQ-2 paired: the address depends on (zone, internal address) only; no fallback to another address.
      const addrIndex = candidates[modU32(hashZoneAddress(this.seed ^ PAIRING_SALT, zone, family, addr, addrOffset), candidates.length)];
      const space = addrIndex * SLOT_COUNT + slot;
      if (this.used[space].length === 0) this.initSpace(space);
      const quota = this.siteQuota[slot];
      if (site >= this.siteUsed[space].length) this.growSites(space, site);
      if (site !== 0 && quota !== 0 && this.siteUsed[space][site] >= quota) return NAT_SITE_QUOTA;
      const ext = this.choosePort(space, port, h);
      if (ext < 0) return -1;
      m = this.insert(h, zone, pf, family, addr, addrOffset, port);
      this.records[m * MAPPING_STRIDE + M_SITE] = site;
      this.siteUsed[space][site]++;
      this.markUsed(space, ext);
      this.extToMapping[space][ext] = m;
      this.usedCount[space]++;
      this.records[m * MAPPING_STRIDE + M_EXT_SPACE] = space;
      this.records[m * MAPPING_STRIDE + M_EXT_PORT] = ext;
      if (this.directory !== null) this.directory.claim(this.directory.endpointHash(zone, protocol, family, addr, addrOffset, port), this.lane, ext | (((space / SLOT_COUNT) | 0) << DIRECTORY_ADDRESS_SHIFT));
    }
    const at = m * MAPPING_STRIDE;
    const r = this.records;
    r[at + M_REFS]++;
    const a = ((r[at + M_EXT_SPACE] / SLOT_COUNT) | 0) * 4;
    out[outOffset] = this.addrWords[a];
    if (family === AF_INET6) {
      out[outOffset + 1] = this.addrWords[a + 1];
      out[outOffset + 2] = this.addrWords[a + 2];
      out[outOffset + 3] = this.addrWords[a + 3];
    }
    return r[at + M_EXT_PORT];
  }

  /**
   * Drops one reference of the internal endpoint's mapping; at zero the mapping and its external port are
   * freed. Returns false when no such mapping exists (a caller bug; nothing changes).
   */
  release(zone: number, protocol: number, family: 4 | 6, addr: Uint32Array, addrOffset: number, port: number): boolean {
    if (protocolSlot(protocol) < 0 || (port & PORT_MASK) !== port) return false;
    const pf = protocol | (family << FAMILY_SHIFT);
    const h = this.endpointHash(zone, pf, family, addr, addrOffset, port);
    const m = this.find(h, zone, pf, family, addr, addrOffset, port);
    if (m === NIL) return false;
    const at = m * MAPPING_STRIDE;
    const r = this.records;
    if (--r[at + M_REFS] > 0) return true;
    const space = r[at + M_EXT_SPACE];
    const ext = r[at + M_EXT_PORT];
    this.markFree(space, ext);
    this.extToMapping[space][ext] = NIL;
    this.usedCount[space]--;
    this.siteUsed[space][r[at + M_SITE]]--;
    this.remove(h, m);
    if (this.directory !== null) this.directory.release(this.directory.endpointHash(zone, protocol, family, addr, addrOffset, port), this.lane);
    return true;
  }

  /** References held on the internal endpoint's mapping (0 when none): for tests and diagnostics. */
  references(zone: number, protocol: number, family: 4 | 6, addr: Uint32Array, addrOffset: number, port: number): number {
    if (protocolSlot(protocol) < 0 || (port & PORT_MASK) !== port) return 0;
    const pf = protocol | (family << FAMILY_SHIFT);
    const m = this.find(this.endpointHash(zone, pf, family, addr, addrOffset, port), zone, pf, family, addr, addrOffset, port);
    return m === NIL ? 0 : this.records[m * MAPPING_STRIDE + M_REFS];
  }

  /**
   * The existing mapping of an internal endpoint, without taking a reference (explain, diagnostics):
   * writes the external address to out[outOffset..] and returns the external port, or -1 when the
   * endpoint has no mapping (a new flow would get one at setup).
   */
  peek(zone: number, protocol: number, family: 4 | 6, addr: Uint32Array, addrOffset: number, port: number, out: Uint32Array, outOffset: number): number {
    if (protocolSlot(protocol) < 0 || (port & PORT_MASK) !== port) return -1;
    const pf = protocol | (family << FAMILY_SHIFT);
    const m = this.find(this.endpointHash(zone, pf, family, addr, addrOffset, port), zone, pf, family, addr, addrOffset, port);
    if (m === NIL) return -1;
    const at = m * MAPPING_STRIDE;
    const a = ((this.records[at + M_EXT_SPACE] / SLOT_COUNT) | 0) * 4;
    for (let w = 0; w < (family === AF_INET6 ? 4 : 1); w++) out[outOffset + w] = this.addrWords[a + w];
    return this.records[at + M_EXT_PORT];
  }

  /**
   * Lanes: the mapping another lane's pool holds for an internal endpoint, as that lane claimed it in the ownership
   * directory (a hint: see common/lane-directory.ts). Writes its external address to out[outOffset..] and returns
   * its port, or -1 (no directory, no claim, this lane's own, or a claim that names no pool address of the family).
   * A hairpin flow set up here borrows it (RFC 4787 REQ-1: the sender keeps its one external endpoint) without
   * taking a reference: the mapping stays the other lane's.
   */
  peekOtherLane(zone: number, protocol: number, family: 4 | 6, addr: Uint32Array, addrOffset: number, port: number, out: Uint32Array, outOffset: number): number {
    const dir = this.directory;
    if (dir === null || protocolSlot(protocol) < 0) return -1;
    const owner = dir.ownerOf(dir.endpointHash(zone, protocol, family, addr, addrOffset, port));
    if (owner < 0 || owner === this.lane) return -1;
    const a = dir.value >>> DIRECTORY_ADDRESS_SHIFT;
    if (a >= this.addrCount || this.addrFamily[a] !== family) return -1;
    for (let w = 0; w < (family === AF_INET6 ? 4 : 1); w++) out[outOffset + w] = this.addrWords[a * 4 + w];
    return dir.value & PORT_MASK;
  }

  /**
   * Reverse lookup by external endpoint (hairpinning, RFC 4787 REQ-9; inbound replies). Writes the internal
   * zone, address (IPv4: word 0, others 0) and port into `into` and returns true when a mapping exists.
   */
  lookupExternal(protocol: number, family: 4 | 6, extAddr: Uint32Array, extOffset: number, extPort: number, into: NatEndpoint): boolean {
    const slot = protocolSlot(protocol);
    if (slot < 0 || (extPort & PORT_MASK) !== extPort) return false;
    const addrIndex = family === AF_INET4 ? this.addressIndex4(extAddr[extOffset]) : this.addressIndex6(extAddr, extOffset);
    if (addrIndex < 0) return false;
    const map = this.extToMapping[addrIndex * SLOT_COUNT + slot];
    if (map.length === 0) return false;
    const m = map[extPort];
    if (m === NIL) return false;
    const at = m * MAPPING_STRIDE;
    const r = this.records;
    into.zone = r[at + M_ZONE];
    into.port = r[at + M_PORT];
    into.addr[0] = r[at + M_ADDR];
    into.addr[1] = r[at + M_ADDR + 1];
    into.addr[2] = r[at + M_ADDR + 2];
    into.addr[3] = r[at + M_ADDR + 3];
    return true;
  }

  /**
   * `addr` signed or not. The range compare here, where callers inline it (flow setup asks for every first packet,
   * almost never of the pool); the table walk gets the word as int32: an unsigned word >= 2^31 passed to a call V8
   * does not inline is a heap-allocated number.
   */
  isPoolAddress4(addr: number): boolean {
    const u = addr >>> 0;
    if (u < this.low4 || u > this.high4) return false;
    return this.addressIndex4(addr | 0) >= 0;
  }

  isPoolAddress6(addr: Uint32Array, offset: number): boolean {
    return this.addressIndex6(addr, offset) >= 0;
  }

  /** Index of an IPv4 pool address (position in opts.addresses, the word signed or not), -1 when not in the pool. */
  addressIndex4(addr: number): number {
    addr >>>= 0;
    if (addr < this.low4 || addr > this.high4) return NIL;
    const mask = this.lookupMask;
    for (let h = this.addressHash4(addr) & mask; ; h = (h + 1) & mask) {
      const i = this.lookup4[h];
      if (i === NIL || this.addrWords[i * 4] === addr) return i;
    }
  }

  /** Index of an IPv6 pool address, -1 when not in the pool. */
  addressIndex6(addr: Uint32Array, offset: number): number {
    const mask = this.lookupMask;
    const words = this.addrWords;
    for (let h = this.addressHash(AF_INET6, addr, offset) & mask; ; h = (h + 1) & mask) {
      const i = this.lookup6[h];
      if (i === NIL) return NIL;
      const a = i * 4;
      if (words[a] === addr[offset] && words[a + 1] === addr[offset + 1] && words[a + 2] === addr[offset + 2] && words[a + 3] === addr[offset + 3]) return i;
    }
  }

  /** Sets the per-site port quotas (see SiteQuota); mappings already held are kept. */
  setSiteQuota(q: SiteQuota): void {
    const max = q.maxPorts;
    if (max !== undefined && (!Number.isInteger(max) || max < 0 || max > PORT_SPACE)) throw new RangeError(`snat: site port quota must be an integer 0..65536, got ${max}`);
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      const range = this.rangeMax(slot) - this.rangeMin(slot) + 1;
      // A single site (or none) has nobody to leave ports for: no quota, as before quotas existed.
      this.siteQuota[slot] = max !== undefined ? max : q.sites > 1 ? fairShare(range, q.sites) : 0;
    }
  }

  /** The quota in force for a protocol (ports of one pool address per site; 0 = none). */
  sitePortQuota(protocol: number): number {
    const slot = protocolSlot(protocol);
    return slot < 0 ? 0 : this.siteQuota[slot];
  }

  /** External ports `site` holds for `protocol`, summed over the pool addresses (tests, diagnostics). */
  portsOfSite(site: number, protocol: number): number {
    const slot = protocolSlot(protocol);
    let n = 0;
    if (slot < 0) return 0;
    for (let i = 0; i < this.addrCount; i++) {
      const counts = this.siteUsed[i * SLOT_COUNT + slot];
      if (site < counts.length) n += counts[site];
    }
    return n;
  }

  /** Ports in use per pool address and protocol (control plane; allocates). ICMP is reported as 1 or 58 by family. */
  portsInUse(): PortUsage[] {
    const result: PortUsage[] = [];
    for (let i = 0; i < this.addrCount; i++) {
      const family = this.addrFamily[i];
      const address = family === AF_INET4 ? formatIpv4(this.addrWords[i * 4]) : formatIpv6(this.addrWords, i * 4);
      const protocols = [IPPROTO_TCP, IPPROTO_UDP, family === AF_INET4 ? IPPROTO_ICMP : IPPROTO_ICMPV6];
      for (let slot = 0; slot < SLOT_COUNT; slot++) {
        const space = i * SLOT_COUNT + slot;
        result.push({ address, protocol: protocols[slot], used: this.usedCount[space], total: this.rangeMax(space) - this.rangeMin(space) + 1 });
      }
    }
    return result;
  }

  // --- port allocation -------------------------------------------------------------------------

  /**
   * The lane that owns an external port of `protocol` (common/lanes.ts): the pool of that lane hands it out, so a
   * reply to it belongs to that lane's flow. -1 for a port outside every lane's range or an untranslated protocol.
   * No allocation (per packet).
   */
  laneOfExternal(protocol: number, port: number): number {
    const slot = protocolSlot(protocol);
    if (slot < 0) return -1;
    return slot === SLOT_ICMP ? laneOfPort(0, PORT_MASK, this.lanes, port) : laneOfPort(this.portMin, this.portMax, this.lanes, port);
  }

  /**
   * The external range of a port space: TCP and UDP use [portMin, portMax]; ICMP echo identifiers
   * have no privileged range and use the whole 16-bit space (RFC 5508 section 3.1 maps the
   * identifier like a port, nothing more), so a site's identifier is preserved where free. With
   * lanes, this lane's slice of it.
   */
  private rangeMin(space: number): number {
    return this.sliceMin[space % SLOT_COUNT];
  }

  private rangeMax(space: number): number {
    return this.sliceMax[space % SLOT_COUNT];
  }

  private choosePort(space: number, port: number, h: number): number {
    const used = this.used[space];
    // REQ-3 port preservation: bits outside the space's range are permanently set, so this covers the range check.
    if ((used[port >>> 5] & (1 << (port & 31))) === 0) return port;
    const parity = port & 1;
    const min = this.rangeMin(space);
    const max = this.rangeMax(space);
    let lo = min;
    let hi = max;
    if (space % SLOT_COUNT !== SLOT_ICMP) {
      if (port <= WELL_KNOWN_END) hi = Math.min(max, WELL_KNOWN_END);
      else lo = Math.max(min, WELL_KNOWN_END + 1);
    }
    let ext = lo <= hi ? this.findFree(space, lo, hi, parity, h) : -1;
    if (ext < 0 && (lo !== min || hi !== max)) ext = this.findFree(space, min, max, parity, h);
    if (ext < 0) ext = this.findFree(space, min, max, PARITY_ANY, h);
    return ext;
  }

  /**
   * First free port in [lo, hi] with the given parity, scanning the summary (64 words, one bit per bitmap word)
   * circularly from a hashed start, so the cost is bounded by 64 summary words plus the bitmap words whose
   * summary bit says they have a free port of that parity (all but the two edge words do, in range).
   */
  private findFree(space: number, lo: number, hi: number, parity: number, start: number): number {
    const used = this.used[space];
    const summary = this.summary[space];
    const sumBase = parity === PARITY_EVEN ? SUMMARY_EVEN : parity === PARITY_ODD ? SUMMARY_ODD : SUMMARY_ANY;
    const parityBits = parity === PARITY_EVEN ? EVEN_BITS : parity === PARITY_ODD ? ODD_BITS : ALL_BITS;
    const loW = lo >>> 5;
    const hiW = hi >>> 5;
    const loS = loW >>> 5;
    const hiS = hiW >>> 5;
    const spanS = hiS - loS + 1;
    const startW = loW + modU32(start, hiW - loW + 1);
    const startS = startW >>> 5;
    const startBit = startW & 31;
    // spanS + 1 passes: the start summary word is visited twice, first its bits >= startBit, last its bits < startBit.
    for (let k = 0; k <= spanS; k++) {
      let s = startS + k;
      if (s > hiS) s -= spanS;
      let words = summary[sumBase + s];
      if (s === loS) words &= bitsFrom(loW & 31);
      if (s === hiS) words &= bitsUpTo(hiW & 31);
      if (k === 0) words &= bitsFrom(startBit);
      else if (k === spanS) words &= startBit === 0 ? 0 : bitsUpTo(startBit - 1);
      while (words !== 0) {
        const wordBit = words & -words;
        const w = (s << 5) | lowestBit(wordBit);
        let free = ~used[w] & parityBits;
        if (w === loW) free &= bitsFrom(lo & 31);
        if (w === hiW) free &= bitsUpTo(hi & 31);
        if (free !== 0) return (w << 5) | lowestBit(free);
        words ^= wordBit;
      }
    }
    return -1;
  }

  private initSpace(space: number): void {
    const used = new Uint32Array(BITMAP_WORDS).fill(ALL_BITS);
    const min = this.rangeMin(space);
    const max = this.rangeMax(space);
    // A word at a time (not a port at a time: 64 k steps per space were ~3 % of a million setups over 64 addresses).
    const loW = min >>> 5;
    const hiW = max >>> 5;
    for (let w = loW; w <= hiW; w++) {
      let free = ALL_BITS;
      if (w === loW) free &= bitsFrom(min & 31);
      if (w === hiW) free &= bitsUpTo(max & 31);
      used[w] = ~free;
    }
    const summary = new Uint32Array(SUMMARY_TOTAL);
    for (let w = 0; w < BITMAP_WORDS; w++) {
      const free = ~used[w];
      const bit = 1 << (w & 31);
      const s = w >>> 5;
      if ((free & EVEN_BITS) !== 0) summary[SUMMARY_EVEN + s] |= bit;
      if ((free & ODD_BITS) !== 0) summary[SUMMARY_ODD + s] |= bit;
      if (free !== 0) summary[SUMMARY_ANY + s] |= bit;
    }
    this.used[space] = used;
    this.summary[space] = summary;
    this.extToMapping[space] = this.reverseIndex().fill(NIL);
  }

  /** A new space's reverse index: from the owner's memory in slabs when it gave some, else an ordinary array. */
  private reverseIndex(): Int32Array {
    if (!this.ownerMemory) return new Int32Array(PORT_SPACE);
    if (this.reverseSlab === null || this.reverseSlabUsed === REVERSE_SLAB_SPACES) {
      const bytes = REVERSE_SLAB_SPACES * PORT_SPACE * Int32Array.BYTES_PER_ELEMENT;
      this.reverseSlab = this.allocate(bytes);
      this.reverseSlabUsed = 0;
      this.reverseSlabBytes += bytes;
    }
    return new Int32Array(this.reverseSlab, this.reverseSlabUsed++ * PORT_SPACE * Int32Array.BYTES_PER_ELEMENT, PORT_SPACE);
  }

  /** Makes room for `site` in a space's per-site counts (control-plane cost: only when a higher site id appears). */
  private growSites(space: number, site: number): void {
    if (site < 0 || site >= SITE_SPACE) throw new RangeError(`snat: site must be 0..${SITE_SPACE - 1}, got ${site}`);
    let n = Math.max(SITE_INITIAL, this.siteUsed[space].length);
    while (n <= site) n *= 2;
    const counts = new Int32Array(Math.min(n, SITE_SPACE));
    counts.set(this.siteUsed[space]);
    this.siteUsed[space] = counts;
  }

  private markUsed(space: number, port: number): void {
    const used = this.used[space];
    const summary = this.summary[space];
    const w = port >>> 5;
    const word = used[w] | (1 << (port & 31));
    used[w] = word;
    const free = ~word;
    const s = w >>> 5;
    const clear = ~(1 << (w & 31));
    if ((free & EVEN_BITS) === 0) summary[SUMMARY_EVEN + s] &= clear;
    if ((free & ODD_BITS) === 0) summary[SUMMARY_ODD + s] &= clear;
    if (free === 0) summary[SUMMARY_ANY + s] &= clear;
  }

  private markFree(space: number, port: number): void {
    const used = this.used[space];
    const summary = this.summary[space];
    const w = port >>> 5;
    used[w] &= ~(1 << (port & 31));
    const s = w >>> 5;
    const bit = 1 << (w & 31);
    summary[((port & 1) === 0 ? SUMMARY_EVEN : SUMMARY_ODD) + s] |= bit;
    summary[SUMMARY_ANY + s] |= bit;
  }

  // --- mapping table ---------------------------------------------------------------------------

  private endpointHash(zone: number, pf: number, family: number, addr: Uint32Array, offset: number, port: number): number {
    let h = mixWord(this.seed, zone);
    h = mixWord(h, pf);
    h = mixWord(h, port);
    return finalMix(mixAddress(h, family, addr, offset));
  }

  /**
   * The mapping-table bucket of an IPv4 internal endpoint (the same hash acquire and release compute), for
   * prefetch(). Words may be signed or unsigned.
   */
  bucket4(zone: number, protocol: number, addr: number, port: number): number {
    let h = mixWord(this.seed, zone);
    h = mixWord(h, protocol | (AF_INET4 << FAMILY_SHIFT));
    h = mixWord(h, port);
    return finalMix(mixWord(h, addr)) & this.bucketMask;
  }

  /**
   * bucket4, and what prefetch() needs to read the lines a new mapping's port choice reads first (flow setup's
   * pre-pass, Pipeline.prefetch, packet k of its chunk): the endpoint's paired space (REQ-2: the address acquire
   * pairs it with), its own port (port preservation, REQ-3: choosePort reads that port's bitmap word first, a
   * cold line in a space of 64 k ports) and its hash (where findFree starts when the port is taken). Only hashes
   * here: the loads come in prefetch()'s tight loops, where the misses of a chunk's setups overlap. Changes
   * nothing. An endpoint that already has a mapping gets its lines read for nothing (acquire reads none of them).
   */
  forecast4(k: number, zone: number, protocol: number, addr: number, port: number): number {
    const h = finalMix(mixWord(mixWord(mixWord(mixWord(this.seed, zone), protocol | (AF_INET4 << FAMILY_SHIFT)), port), addr));
    const bucket = h & this.bucketMask;
    const slot = protocolSlot(protocol);
    const candidates = this.family4;
    if (k >= FORECAST_SLOTS || slot < 0 || candidates.length === 0 || (port & PORT_MASK) !== port) return bucket;
    const space = candidates[modU32(hashZoneAddress4(this.seed ^ PAIRING_SALT, zone, addr), candidates.length)] * SLOT_COUNT + slot;
    if (this.used[space].length === 0) return bucket;
    this.forecastSpace[k] = space;
    this.forecastPort[k] = port;
    this.forecastHash[k] = h;
    return bucket;
  }

  /**
   * Memory-level parallelism for flow setup, like FlowTable.prefetch: `slots[0..count)` hold buckets
   * (bucket4) or -1. Reads every bucket head, then the head mappings' records, then the second ones, in loops of independent loads
   * so the cache misses of many setups overlap; acquire then finds the lines in cache. Overwrites slots;
   * returns a sum of what it read (keep it, so the loads stay). Changes nothing.
   */
  prefetch(slots: Int32Array, count: number): number {
    const buckets = this.buckets;
    const mask = this.bucketMask;
    const r = this.records;
    let acc = 0;
    for (let i = 0; i < count; i++) {
      const b = slots[i];
      const head = b >= 0 ? buckets[b & mask] : NIL;
      slots[i] = head;
      acc ^= head;
    }
    for (let i = 0; i < count; i++) {
      const m = slots[i];
      if (m < 0) continue;
      // The first and the last word: the two cache lines a 52-byte record can span.
      acc ^= r[m * MAPPING_STRIDE] ^ r[m * MAPPING_STRIDE + MAPPING_STRIDE - 1];
      slots[i] = r[m * MAPPING_STRIDE + M_NEXT];
    }
    // The records second in those chains: a new endpoint (every setup that takes a mapping) walks its whole chain
    // to find it absent, and at a load near 1 mapping per bucket a third of the chains hold more than the head.
    for (let i = 0; i < count; i++) {
      const m = slots[i];
      if (m >= 0) acc ^= r[m * MAPPING_STRIDE] ^ r[m * MAPPING_STRIDE + MAPPING_STRIDE - 1];
    }
    const n = Math.min(count, FORECAST_SLOTS);
    const spaces = this.forecastSpace;
    const ports = this.forecastPort;
    // The ports forecast4 named: each one's bitmap word and reverse-index slot (acquire writes it when the port is free).
    for (let k = 0; k < n; k++) {
      const space = spaces[k];
      if (space >= 0) acc ^= this.used[space][ports[k] >>> 5] ^ this.extToMapping[space][ports[k]];
    }
    // A port taken (its word is in cache now): the bitmap word and reverse-index line choosePort's first findFree starts at.
    for (let k = 0; k < n; k++) {
      const space = spaces[k];
      if (space < 0) continue;
      spaces[k] = NIL;
      const port = ports[k];
      const used = this.used[space];
      if ((used[port >>> 5] & (1 << (port & 31))) === 0) continue;
      let lo = this.rangeMin(space);
      let hi = this.rangeMax(space);
      if (space % SLOT_COUNT !== SLOT_ICMP) {
        if (port <= WELL_KNOWN_END) hi = Math.min(hi, WELL_KNOWN_END);
        else lo = Math.max(lo, WELL_KNOWN_END + 1);
      }
      if (lo > hi) continue;
      const startW = (lo >>> 5) + modU32(this.forecastHash[k], (hi >>> 5) - (lo >>> 5) + 1);
      acc ^= used[startW] ^ this.extToMapping[space][startW << 5];
    }
    return acc;
  }

  /** Must equal addressHash(AF_INET4, [addr]) (the table is built with addressHash). */
  private addressHash4(addr: number): number {
    return finalMix(mixWord(this.seed, addr));
  }

  private addressHash(family: number, addr: Uint32Array, offset: number): number {
    return finalMix(mixAddress(this.seed, family, addr, offset));
  }

  private find(h: number, zone: number, pf: number, family: number, addr: Uint32Array, offset: number, port: number): number {
    const r = this.records;
    const a0 = addr[offset] | 0;
    for (let m = this.buckets[h & this.bucketMask]; m !== NIL; m = r[m * MAPPING_STRIDE + M_NEXT]) {
      const at = m * MAPPING_STRIDE;
      if (r[at + M_HASH] !== h || r[at + M_ZONE] !== zone || r[at + M_PROTO_FAMILY] !== pf || r[at + M_PORT] !== port || r[at + M_ADDR] !== a0) continue;
      if (family === AF_INET6 && (r[at + M_ADDR + 1] !== (addr[offset + 1] | 0) || r[at + M_ADDR + 2] !== (addr[offset + 2] | 0) || r[at + M_ADDR + 3] !== (addr[offset + 3] | 0))) continue;
      return m;
    }
    return NIL;
  }

  private insert(h: number, zone: number, pf: number, family: number, addr: Uint32Array, offset: number, port: number): number {
    const r = this.records;
    const m = this.freeHead;
    const at = m * MAPPING_STRIDE;
    this.freeHead = r[at + M_NEXT];
    r[at + M_HASH] = h;
    r[at + M_ZONE] = zone;
    r[at + M_PROTO_FAMILY] = pf;
    r[at + M_PORT] = port;
    r[at + M_ADDR] = addr[offset];
    r[at + M_ADDR + 1] = family === AF_INET6 ? addr[offset + 1] : 0;
    r[at + M_ADDR + 2] = family === AF_INET6 ? addr[offset + 2] : 0;
    r[at + M_ADDR + 3] = family === AF_INET6 ? addr[offset + 3] : 0;
    r[at + M_REFS] = 0;
    const b = h & this.bucketMask;
    r[at + M_NEXT] = this.buckets[b];
    this.buckets[b] = m;
    this.count++;
    return m;
  }

  private remove(h: number, m: number): void {
    const r = this.records;
    const b = h & this.bucketMask;
    let prev = NIL;
    for (let i = this.buckets[b]; i !== m; i = r[i * MAPPING_STRIDE + M_NEXT]) prev = i;
    const after = r[m * MAPPING_STRIDE + M_NEXT];
    if (prev === NIL) this.buckets[b] = after;
    else r[prev * MAPPING_STRIDE + M_NEXT] = after;
    r[m * MAPPING_STRIDE + M_NEXT] = this.freeHead;
    this.freeHead = m;
    this.count--;
  }

  /** Grows the table to `capacity` entries (control-plane cost, amortised: only on doubling). */
  private grow(capacity: number): void {
    const old = this.capacity;
    const records = new Int32Array(this.allocate(capacity * MAPPING_STRIDE * 4), 0, capacity * MAPPING_STRIDE);
    records.set(this.records);
    this.records = records;
    this.capacity = capacity;
    // Load factor <= 1 on the chains.
    let buckets = 16;
    while (buckets < capacity) buckets <<= 1;
    this.bucketMask = buckets - 1;
    this.buckets = new Int32Array(this.allocate(buckets * 4), 0, buckets).fill(NIL);
    // grow() runs only when the free list is empty, so every old entry is live.
    for (let m = 0; m < old; m++) {
      const at = m * MAPPING_STRIDE;
      const b = records[at + M_HASH] & this.bucketMask;
      records[at + M_NEXT] = this.buckets[b];
      this.buckets[b] = m;
    }
    // The new entries form the free list.
    for (let m = capacity - 1; m >= old; m--) {
      records[m * MAPPING_STRIDE + M_NEXT] = this.freeHead;
      this.freeHead = m;
    }
  }
}
