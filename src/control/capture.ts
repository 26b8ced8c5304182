/**
 * Packet captures with tether's decision per packet (`tether capture`, /v1/captures, docs/CAPTURE.md).
 *
 *   edge read loop:  tap.before(batch) ─ pipeline.process ─ tap.after(batch) ─ deliver
 *                     each packet's headers     per packet: selected? (port mask or flow), filter, rate
 *                     as received (256 bytes)   token; copies into the session's preallocated ring
 *   timer (100 ms):  drain ─ the ring's records → pcapng Enhanced Packet Blocks with comments → the session's file
 *
 * Zero cost without a capture: the edge holds no tap (one null test per batch). With one, the packet path does
 * numeric work only — a copy of each received packet's headers, mask and flow tests, and for at most `rate` packets per
 * second an inspection, the filter and two copies into the ring; names, comments and pcapng encoding happen
 * in the drain, off the packet path.
 *
 * Every packet appears as received (before any rewrite, interface by the side it came from) and, when
 * forwarded, as sent (after NAT, interface by the side it leaves on): the "onramp side" is the captured onramp
 * (or the site's onramps, or the flow's site's), the "outside side" is everything else (the Internet egress,
 * other onramps). The comment names the flow, the onramp it came in on, where it went and why.
 *
 * Bounded: packets (`count`), file bytes (`bytes`, estimated before a packet is taken so that the file never
 * exceeds it), duration, and a rate (packets/s copied; a token bucket: packets over it are skipped and
 * counted, the capture goes on). A capture that reaches count, bytes or duration stops and says which.
 * Secrets: only the inner packets as the pipeline sees them are captured — no keys, and outer packets only when
 * asked (`outer: true`, below).
 *
 * Outer packets (`outer: true`): the underlay's read batch as read (before demux) and every underlay write (after
 * sealing or encapsulation) go through OuterTap, on a third interface "underlay (outer)". An outer packet cannot
 * be tied to an onramp by the pipeline (it has not been demultiplexed yet), so it is selected by the selected
 * onramps' tunnel endpoints from the configuration: its outer IPv4 addresses are the onramp's local and remote
 * endpoint (either direction; an unknown one — WireGuard's 0.0.0.0 listen address, a learnt peer endpoint, IPsec's
 * remote 'any' — matches any address) and, for WireGuard, its UDP port on the edge's side is the device's
 * listen port. IPv6 endpoints are not matched. The filter applies to the outer header.
 */
import { performance } from 'node:perf_hooks';
import { Drop, DROP_REASON_NAMES } from '../common/drop-reasons.js';
import { NEXT_HOP_DROP, PORT_INTERNET } from '../common/ids.js';
import type { PacketBatch } from '../common/packet-batch.js';
import type { ConfigIds, TetherConfig } from '../config/index.js';
import { FLAG_ARR, RETURN_REASONS, type Pipeline } from '../dataplane/pipeline.js';
import { filterPredicate, type FilterPredicate } from '../wire/capture-filter.js';
import { inspect } from '../wire/inspect.js';
import { DST, PacketInfo, SRC } from '../wire/packet-info.js';
import { concatBytes } from '../wire/bytes.js';
import { enhancedPacketSize, interfaceDescription, LINKTYPE_RAW, sectionHeader, writeEnhancedPacket } from '../wire/pcapng.js';
import { AF_INET4, IPPROTO_UDP } from '../wire/constants.js';
import { formatIpv4, parseIpv4 } from '../wire/addr.js';
import type { NameBook } from './metrics.js';
import { laneFlowNumber, laneOfFlowNumber } from './flow-walk.js';

/** What the edge calls around pipeline.process while a capture runs. */
export interface CaptureTap {
  /** The batch as received (inner packets, before the pipeline rewrites them), at `now` (the pipeline's clock). */
  before(batch: PacketBatch, now: number): void;
  /** The batch as processed: nextHop, drop, flowNode per packet. `received`: before() saw this batch. */
  after(batch: PacketBatch, now: number, received: boolean): void;
}

/**
 * What the underlay calls with outer packets while an outer capture runs: batch[idx[k]] for k in [from, to), or
 * batch[from…to) when idx is null; `sent`: written to the underlay (after sealing), else read from it (before demux).
 */
export interface OuterTap {
  outer(batch: PacketBatch, idx: Uint32Array | null, from: number, to: number, sent: boolean): void;
}

export const CAPTURE_DEFAULTS = Object.freeze({
  /** Packets (each decision once: its received and sent copies count as one). */
  count: 10_000,
  /** The pcapng file, bytes: 16 MiB. */
  bytes: 16 * 1024 * 1024,
  /** Seconds. */
  durationS: 60,
  /** Packets per second copied at most; more are skipped and counted (rate_skipped). */
  rate: 5_000,
  /** Bytes of each packet kept (tcpdump's -s); 0 = all. */
  snaplen: 0,
});
/**
 * The most a request may ask for. A capture's file is kept in the daemon's memory until it is deleted or replaced,
 * so all captures together hold at most MAX_CAPTURES × (bytes + the 4 MiB ring): 4 × 132 MiB.
 */
export const CAPTURE_LIMITS = Object.freeze({ count: 10_000_000, bytes: 128 * 1024 * 1024, durationS: 24 * 3600, rate: 100_000 });
/** Concurrent captures (running or kept for download), at most. */
export const MAX_CAPTURES = 4;
/** How often rings are drained into pcapng, ms: the ring holds this long's worth at the rate limit. */
export const DRAIN_INTERVAL_MS = 100;
/** Per capture: ring bytes and records between drains (what does not fit until the next drain is skipped and counted). */
const RING_BYTES = 4 * 1024 * 1024;
const RING_RECORDS = 4096;
/** Upper bound of a comment's UTF-8 length, bytes: used to keep the file within `bytes` before encoding. */
const MAX_COMMENT_BYTES = 512;
const INTERFACE_ONRAMP = 0;
const INTERFACE_OUTSIDE = 1;
const INTERFACE_OUTER = 2;
/** An endpoint address not known in advance (0.0.0.0 listen address, learnt or 'any' remote): any address matches. */
const ANY_ADDR = 0;
const MICROS_PER_MS = 1000;
const MS_PER_S = 1000;
const PORT_SPACE = NEXT_HOP_DROP + 1;
/**
 * Bytes of each packet copied before the pipeline: every header it may rewrite lies within them (IPv4 60 + TCP
 * 60; an ICMP error's outer and embedded headers, 60 + 8 + 60 + 8).
 */
const HEADER_COPY = 256;
const WORD = 4;
/** Largest packet a batch slot holds (PacketBatch slots are smaller). */
const MAX_PACKET = 65536;

/** Why a packet went where it went (a record's `why`; the drain names it). */
const enum Why {
  Dropped = 0,
  Held = 1, // not forwarded, not dropped: an early fragment held for its first, a health probe's reply consumed
  NoFlow = 2, // forwarded without a flow of its own: an ICMP error (translated by its embedded header), the edge's echo reply
  Original = 3, // the flow's original direction: the next hop chosen by the routing table at setup
  OriginalMoved = 4, // the original direction, the recorded next hop down: the site's best healthy onramp
  Arr = 5, // a reply by ARR to the return onramp (aux: the return reason)
  ArrMoved = 6, // a reply by ARR, the return onramp down: the site's best healthy onramp
  Table = 7, // a reply of a flow without ARR: routed by its destination
  Outer = 8, // an outer packet on the underlay (aux: the endpoint it matched)
}

/** One selected onramp's tunnel endpoints (IPv4, ANY_ADDR: unknown), as outer packets are matched against them. */
export interface OuterEndpoint {
  onramp: string;
  local: number;
  remote: number;
  /** WireGuard: the device's listen port (the edge's side of the datagram); 0: any port, any protocol. */
  port: number;
}

/**
 * The onramp's tunnel endpoints from the configuration; null when it has none to match on (an interconnect, an
 * IPv6 endpoint, nothing known on either side).
 */
export function outerEndpoint(config: TetherConfig, name: string): OuterEndpoint | null {
  const o = config.onramps.find((x) => x.name === name);
  if (o === undefined) return null;
  const v4 = (text: string | undefined): number => {
    if (text === undefined) return ANY_ADDR;
    const a = parseIpv4(text);
    return a < 0 ? -1 : a;
  };
  let local: number;
  let remote: number;
  let port = 0;
  if (o.type === 'gre') {
    local = v4(o.gre.local);
    remote = v4(o.gre.remote);
  } else if (o.type === 'ipsec') {
    local = v4(o.ipsec.local_address);
    remote = o.ipsec.remote_address === 'any' ? ANY_ADDR : v4(o.ipsec.remote_address);
  } else if (o.type === 'wireguard') {
    const dev = config.wireguard_devices.find((d) => d.name === o.wireguard.device);
    if (dev === undefined) return null;
    local = v4(dev.listen_address);
    const endpoint = o.wireguard.endpoint;
    remote = endpoint === undefined ? ANY_ADDR : v4(endpoint.slice(0, endpoint.lastIndexOf(':')));
    port = dev.listen_port;
  } else {
    return null;
  }
  if (local < 0 || remote < 0 || (local === ANY_ADDR && remote === ANY_ADDR && port === 0)) return null;
  return { onramp: name, local, remote, port };
}

/** Index of the endpoint the outer packet (inspected into info) travels between, -1 for none. */
function matchOuter(endpoints: readonly OuterEndpoint[], info: PacketInfo): number {
  const src = info.addr[SRC];
  const dst = info.addr[DST];
  const udp = info.protocol === IPPROTO_UDP;
  for (let e = 0; e < endpoints.length; e++) {
    const { local, remote, port } = endpoints[e];
    if (port !== 0 && !udp) continue;
    const out = (local === ANY_ADDR || src === local) && (remote === ANY_ADDR || dst === remote) && (port === 0 || info.srcPort === port);
    const back = (local === ANY_ADDR || dst === local) && (remote === ANY_ADDR || src === remote) && (port === 0 || info.dstPort === port);
    if (out || back) return e;
  }
  return -1;
}

export type StopReason = 'count' | 'bytes' | 'duration' | 'stopped';

export interface CaptureRequest {
  onramp?: string;
  site?: string;
  flow?: string;
  filter?: string;
  count?: number;
  bytes?: number;
  duration_s?: number;
  rate?: number;
  snaplen?: number;
  /** Also the outer (underlay) packets between the selected onramps' endpoints; default false. */
  outer?: boolean;
}

export interface CaptureStatus {
  id: number;
  state: 'running' | 'stopped';
  /** Why it stopped: a limit it reached (count, bytes, duration) or a stop request. */
  stop_reason: StopReason | null;
  selection: { onramp?: string; site?: string; flow?: string };
  filter: string;
  outer: boolean;
  limits: { count: number; bytes: number; duration_s: number; rate: number; snaplen: number };
  started_at: string;
  /** Decisions captured (a packet received and sent counts once). */
  packets: number;
  /** Enhanced Packet Blocks written (received and sent copies). */
  records: number;
  /** pcapng file size so far, bytes. */
  bytes: number;
  /** Packets selected but skipped: over the rate limit; the ring full until the next drain. */
  rate_skipped: number;
  ring_skipped: number;
  /** Lanes that could not capture their part (daemon.lanes > 1); absent when none. */
  lane_errors?: string[];
}

/** A request the hub refuses: `path` names the field, `status` the HTTP status to answer with. */
export class CaptureError extends Error {
  constructor(
    readonly path: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'CaptureError';
  }
}

export interface CaptureHubOptions {
  pipeline: Pipeline;
  names: NameBook;
  /** The running edge's names → ids (live changes included). */
  ids: () => ConfigIds;
  /** Installs the tap on the edge's read loops (null: none; the packet path then costs nothing). */
  attach: (tap: CaptureTap | null) => void;
  /** Installs the outer tap on the underlay (null: none). Absent, or no `config`: `outer: true` is refused. */
  attachOuter?: (tap: OuterTap | null) => void;
  /** The running configuration: the selected onramps' tunnel endpoints for outer packets. */
  config?: () => TetherConfig;
  /** Wall-clock ms of monotonic time 0 (default performance.timeOrigin): packet timestamps. */
  timeOrigin?: number;
  /** Monotonic clock, ms (default performance.now()). */
  now?: () => number;
  /**
   * The other lanes (daemon.lanes > 1; docs/CAPTURE.md "Lanes"): each captures its own packets with the same
   * request and sends its pcapng blocks here (laneData), appended to the one file. Absent: one lane.
   */
  lanes?: CaptureLanes;
  /** The lane this hub taps (a lane's worker: its part of lane 0's captures); flow ids in comments carry it. Default 0. */
  lane?: number;
}

/** How a capture reaches the other lanes (the daemon's lane-observe.ts). */
export interface CaptureLanes {
  /** Lanes in all, lane 0 (this hub's) included. */
  readonly count: number;
  /** Starts capture `id` on `lane` (a flow capture: only on the flow's lane, with the lane's own flow id). */
  start(id: number, request: CaptureRequest, lane: number): void;
  /** Stops it there: the lane sends what it still holds, then a last message with `final`. */
  stop(id: number, lane: number): void;
}

/** What a lane sends of its part of a capture: pcapng blocks (no header: the file's is lane 0's) and its counts since the last. */
export interface LaneCaptureData {
  chunk: Uint8Array | null;
  packets: number;
  records: number;
  rateSkipped: number;
  ringSkipped: number;
  /** The lane's part ended (stopped, or its own limit): nothing more comes from it. */
  final: boolean;
  /** The lane could not start its part (its message). */
  error?: string;
}

const encoder = new TextEncoder();

function limit(value: number | undefined, fallback: number, max: number, path: string, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) throw new CaptureError(path, `${path} must be an integer from ${min} to ${max}, got ${value}`);
  return value;
}

export class CaptureSession {
  readonly id: number;
  state: 'running' | 'stopped' = 'running';
  stopReason: StopReason | null = null;
  readonly startedAt: Date;
  readonly startedMono: number;
  readonly selection: CaptureStatus['selection'];
  readonly filterText: string;
  readonly limits: CaptureStatus['limits'];
  /** Ports whose side is the onramp side (and, without a flow, the selection). */
  readonly mask: Uint8Array;
  /** --flow: family and index; -1 when not selecting a flow. */
  readonly flowFamily: number;
  readonly flowIndex: number;
  readonly filter: FilterPredicate;
  readonly matchAll: boolean;
  /** outer: true — the endpoints outer packets are matched against (empty: no outer packets). */
  readonly outer: boolean;
  readonly outerEndpoints: readonly OuterEndpoint[];

  packets = 0;
  records = 0;
  rateSkipped = 0;
  ringSkipped = 0;
  /** File bytes written plus the records in the ring at their upper bound (what the bytes limit checks). */
  committedBytes = 0;
  private tokens: number;
  private tokensAt: number;

  // The ring: records between drains (struct of arrays) and their bytes.
  readonly ring = new Uint8Array(RING_BYTES);
  ringUsed = 0;
  ringCount = 0;
  readonly rStart = new Uint32Array(RING_RECORDS);
  readonly rCaptured = new Uint32Array(RING_RECORDS);
  readonly rOriginal = new Uint32Array(RING_RECORDS);
  readonly rInterface = new Uint8Array(RING_RECORDS);
  readonly rSent = new Uint8Array(RING_RECORDS);
  readonly rTime = new Float64Array(RING_RECORDS);
  readonly rFamily = new Uint8Array(RING_RECORDS);
  readonly rNode = new Int32Array(RING_RECORDS);
  readonly rIngress = new Uint16Array(RING_RECORDS);
  readonly rHop = new Uint16Array(RING_RECORDS);
  readonly rDrop = new Uint8Array(RING_RECORDS);
  readonly rWhy = new Uint8Array(RING_RECORDS);
  readonly rAux = new Uint16Array(RING_RECORDS);

  /** The other lanes capturing their part, until each sent its last (CaptureHub.laneData). */
  readonly lanesOpen = new Set<number>();
  lanesTold = false;
  readonly laneWaiters: Array<() => void> = [];
  /** Lanes that could not start their part. */
  readonly laneErrors: string[] = [];

  /** The file so far: header, interfaces, then one chunk per drain. */
  readonly chunks: Uint8Array[] = [];
  fileBytes = 0;

  constructor(id: number, init: {
    now: number;
    selection: CaptureStatus['selection'];
    filterText: string;
    filter: FilterPredicate;
    limits: CaptureStatus['limits'];
    mask: Uint8Array;
    flowFamily: number;
    flowIndex: number;
    description: string;
    outer?: readonly OuterEndpoint[];
  }) {
    this.id = id;
    this.startedAt = new Date();
    this.startedMono = init.now;
    this.selection = init.selection;
    this.filterText = init.filterText;
    this.filter = init.filter;
    this.matchAll = init.filterText.trim() === '';
    this.limits = init.limits;
    this.mask = init.mask;
    this.flowFamily = init.flowFamily;
    this.flowIndex = init.flowIndex;
    this.outer = init.outer !== undefined;
    this.outerEndpoints = init.outer ?? [];
    this.tokens = this.burst();
    this.tokensAt = init.now;
    const snap = init.limits.snaplen;
    const header = concatBytes([
      sectionHeader(`tether capture ${init.description}`),
      interfaceDescription({ name: 'onramp side', description: `inner packets of ${init.description} as tether sees them`, linkType: LINKTYPE_RAW, snapLength: snap }),
      interfaceDescription({ name: 'outside side', description: 'the Internet egress and other onramps, inner packets as tether sees them', linkType: LINKTYPE_RAW, snapLength: snap }),
      ...(this.outer ? [interfaceDescription({ name: 'underlay (outer)', description: `outer (tunnel) packets between the endpoints of ${init.description}, as read from and written to the underlay`, linkType: LINKTYPE_RAW, snapLength: snap })] : []),
    ]);
    this.chunks.push(header);
    this.fileBytes = this.committedBytes = header.length;
  }

  /** Tokens the bucket holds at most: one drain interval's worth at the rate (and at least one packet). */
  private burst(): number {
    return Math.max(1, (this.limits.rate * DRAIN_INTERVAL_MS) / MS_PER_S);
  }

  /** Whether a packet at `now` would get a rate token (refills the bucket, takes nothing). */
  hasToken(now: number): boolean {
    const elapsed = now - this.tokensAt;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst(), this.tokens + (elapsed * this.limits.rate) / MS_PER_S);
      this.tokensAt = now;
    }
    return this.tokens >= 1;
  }

  /** Takes a rate token for a packet at `now`; false when the rate is used up. */
  takeToken(now: number): boolean {
    if (!this.hasToken(now)) return false;
    this.tokens -= 1;
    return true;
  }

  stop(reason: StopReason): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.stopReason = reason;
  }

  status(): CaptureStatus {
    return {
      id: this.id,
      state: this.state,
      stop_reason: this.stopReason,
      selection: this.selection,
      filter: this.filterText,
      outer: this.outer,
      limits: this.limits,
      started_at: this.startedAt.toISOString(),
      packets: this.packets,
      records: this.records,
      bytes: this.fileBytes,
      rate_skipped: this.rateSkipped,
      ring_skipped: this.ringSkipped,
      ...(this.laneErrors.length > 0 ? { lane_errors: [...this.laneErrors] } : {}),
    };
  }

  /** The pcapng file so far (a copy). */
  file(): Uint8Array {
    return concatBytes(this.chunks);
  }
}

/** Copies one packet into the session's ring; false when the ring is full until the next drain. */
function ringPush(s: CaptureSession, data: Uint8Array, offset: number, length: number, iface: number, sent: number, now: number): number {
  const captured = s.limits.snaplen > 0 && length > s.limits.snaplen ? s.limits.snaplen : length;
  const k = s.ringCount;
  if (k >= RING_RECORDS || s.ringUsed + captured > RING_BYTES) return -1;
  s.ring.set(data.subarray(offset, offset + captured), s.ringUsed);
  s.rStart[k] = s.ringUsed;
  s.rCaptured[k] = captured;
  s.rOriginal[k] = length;
  s.rInterface[k] = iface;
  s.rSent[k] = sent;
  s.rTime[k] = now;
  s.ringUsed += captured;
  s.ringCount = k + 1;
  s.committedBytes += enhancedPacketSize(captured, MAX_COMMENT_BYTES);
  return k;
}

export class CaptureHub implements CaptureTap, OuterTap {
  private readonly pipeline: Pipeline;
  private readonly names: NameBook;
  private readonly ids: () => ConfigIds;
  private readonly attach: (tap: CaptureTap | null) => void;
  private readonly attachOuter: ((tap: OuterTap | null) => void) | undefined;
  private readonly config: (() => TetherConfig) | undefined;
  private attachedOuter = false;
  private readonly lanes: CaptureLanes | undefined;
  private readonly lane: number;
  private readonly timeOrigin: number;
  private readonly clock: () => number;
  private readonly sessions = new Map<number, CaptureSession>();
  /** The running sessions, as an array for the packet path. */
  private running: CaptureSession[] = [];
  /**
   * Lanes: per batch slot, 1 while after() runs when the pipeline handed that packet to another lane (the owner
   * decides it and taps it there: once in the file, with its decision, docs/CAPTURE.md "Lanes"). Grown to the
   * largest batch seen.
   */
  private handed = new Uint8Array(0);
  private nextId = 1;
  private timer: NodeJS.Timeout | null = null;
  private attached = false;

  // before(): the first HEADER_COPY bytes of each packet as received (grown once to the largest batch seen).
  private shadow = new Uint8Array(0);
  /** The same memory as 32-bit words: the copy moves words where the packet is aligned (the common case). */
  private shadowWords = new Uint32Array(0);
  private shadowLength = new Uint32Array(0);
  /** The batch slab as words, for the batch it was made for. */
  private slabWords: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
  private slabOf: Uint8Array | null = null;
  private shadowCount = 0;
  /** One packet as received, put together from its copied headers and its (unchanged) rest. */
  private readonly scratch = new Uint8Array(MAX_PACKET);
  private readonly info = new PacketInfo();

  constructor(options: CaptureHubOptions) {
    this.pipeline = options.pipeline;
    this.names = options.names;
    this.ids = options.ids;
    this.attach = options.attach;
    this.attachOuter = options.attachOuter;
    this.config = options.config;
    this.lanes = options.lanes;
    this.lane = options.lane ?? 0;
    this.timeOrigin = options.timeOrigin ?? performance.timeOrigin;
    this.clock = options.now ?? (() => performance.now());
  }

  /** Starts a capture; throws CaptureError naming the field for a bad request (400) or when too many run (409). */
  start(request: CaptureRequest): CaptureSession {
    const chosen = (['onramp', 'site', 'flow'] as const).filter((k) => request[k] !== undefined);
    if (chosen.length !== 1) throw new CaptureError(chosen[1] ?? '', `choose exactly one of onramp, site or flow${chosen.length > 1 ? ` (got ${chosen.join(' and ')})` : ''}`);
    const filterText = request.filter ?? '';
    let filter: FilterPredicate;
    try {
      filter = filterPredicate(filterText);
    } catch (e) {
      throw new CaptureError('filter', (e as Error).message);
    }
    const limits = {
      count: limit(request.count, CAPTURE_DEFAULTS.count, CAPTURE_LIMITS.count, 'count'),
      bytes: limit(request.bytes, CAPTURE_DEFAULTS.bytes, CAPTURE_LIMITS.bytes, 'bytes', 1024),
      duration_s: limit(request.duration_s, CAPTURE_DEFAULTS.durationS, CAPTURE_LIMITS.durationS, 'duration_s'),
      rate: limit(request.rate, CAPTURE_DEFAULTS.rate, CAPTURE_LIMITS.rate, 'rate'),
      snaplen: limit(request.snaplen, CAPTURE_DEFAULTS.snaplen, 0xffff, 'snaplen', 0),
    };
    const ids = this.ids();
    const mask = new Uint8Array(PORT_SPACE);
    let flowFamily = 0;
    let flowIndex = -1;
    /** The lanes that capture besides this one: every lane, or a flow's own. */
    let laneTargets: number[] = [];
    for (let k = 1; k < (this.lanes?.count ?? 1); k++) laneTargets.push(k);
    let laneRequest: CaptureRequest = { ...request, outer: undefined };
    let description: string;
    const siteOnramps = (site: number): void => {
      for (const [name, s] of ids.onrampSite) if (s === site) mask[ids.onramps.get(name) ?? PORT_INTERNET] = 1;
      mask[PORT_INTERNET] = 0;
    };
    if (request.onramp !== undefined) {
      const id = ids.onramps.get(request.onramp);
      if (id === undefined) throw new CaptureError('onramp', `no onramp named ${request.onramp}`);
      mask[id] = 1;
      description = `onramp ${request.onramp}`;
    } else if (request.site !== undefined) {
      const site = ids.sites.get(request.site);
      if (site === undefined) throw new CaptureError('site', `no site named ${request.site}`);
      siteOnramps(site);
      description = `site ${request.site}`;
    } else {
      const m = /^([46])-(\d+)$/.exec(request.flow!);
      if (m === null) throw new CaptureError('flow', `a flow id is FAMILY-INDEX as /v1/flows lists it (4-17), got ${request.flow}`);
      flowFamily = Number(m[1]);
      flowIndex = Number(m[2]);
      const { lane, slot } = laneOfFlowNumber(flowIndex);
      laneTargets = laneTargets.filter((k) => k === lane);
      laneRequest = { ...laneRequest, flow: `${flowFamily}-${slot}` };
      description = `flow ${request.flow}`;
      if (lane === 0) laneTargets = [];
      else if (laneTargets.length === 0) throw new CaptureError('flow', `flow ${request.flow} is not a live flow (there is no lane ${lane})`, 404);
    }
    if (request.flow !== undefined && laneTargets.length > 0) {
      // Another lane's flow (its number ≥ LANE_FLOW_STRIDE never names a slot here, so this lane takes none of its
      // packets); that lane checks it is live (the route asked it first: api-captures.ts).
    } else if (request.flow !== undefined) {
      const table = flowFamily === AF_INET4 ? this.pipeline.flows4 : this.pipeline.flows6;
      if (flowIndex >= table.capacity || !table.isLive(flowIndex)) throw new CaptureError('flow', `flow ${request.flow} is not a live flow (it may have ended)`, 404);
      siteOnramps(this.pipeline.ports.site[table.ingressPort(flowIndex)]);
    }
    let outer: OuterEndpoint[] | undefined;
    if (request.outer === true) {
      if (this.attachOuter === undefined || this.config === undefined) throw new CaptureError('outer', 'outer packets cannot be captured here (no underlay)');
      const config = this.config();
      outer = [];
      for (const [name, onramp] of ids.onramps) {
        if (mask[onramp] !== 1) continue;
        const e = outerEndpoint(config, name);
        if (e !== null) outer.push(e);
      }
    }
    this.evictStopped();
    if (this.sessions.size >= MAX_CAPTURES) throw new CaptureError('', `${MAX_CAPTURES} captures exist already: stop or delete one (DELETE /v1/captures/ID)`, 409);
    const id = this.nextId++;
    const session = new CaptureSession(id, {
      now: this.clock(),
      selection: { onramp: request.onramp, site: request.site, flow: request.flow },
      filterText,
      filter,
      limits,
      mask,
      flowFamily,
      flowIndex,
      description,
      outer,
    });
    this.sessions.set(id, session);
    for (const k of laneTargets) {
      session.lanesOpen.add(k);
      this.lanes!.start(id, laneRequest, k);
    }
    this.refresh();
    return session;
  }

  get(id: number): CaptureSession | undefined {
    const s = this.sessions.get(id);
    if (s !== undefined) this.drain(s);
    return s;
  }

  list(): CaptureSession[] {
    for (const s of this.sessions.values()) this.drain(s);
    return [...this.sessions.values()];
  }

  stop(id: number): CaptureSession | undefined {
    const s = this.sessions.get(id);
    if (s === undefined) return undefined;
    this.drain(s);
    s.stop('stopped');
    this.refresh();
    return s;
  }

  delete(id: number): boolean {
    const s = this.sessions.get(id);
    if (s === undefined) return false;
    s.stop('stopped');
    this.tellLanes(s);
    this.sessions.delete(id);
    this.refresh();
    return true;
  }

  // --- the other lanes' parts (docs/CAPTURE.md "Lanes") ------------------------------------------------

  /**
   * A lane's pcapng blocks and counts: appended to the one file in the order they arrive (each lane's in its own
   * time order), within the capture's count and bytes, which hold for the file as a whole. A stopped capture still
   * takes what its lanes held when it stopped, until each sent its last (`final`).
   */
  laneData(id: number, lane: number, data: LaneCaptureData): void {
    const s = this.sessions.get(id);
    if (s === undefined || !s.lanesOpen.has(lane)) return;
    s.rateSkipped += data.rateSkipped;
    s.ringSkipped += data.ringSkipped;
    if (data.error !== undefined) s.laneErrors.push(`lane ${lane}: ${data.error}`);
    const chunk = data.chunk;
    if (chunk !== null && chunk.length > 0 && s.packets < s.limits.count && s.stopReason !== 'bytes') {
      if (s.committedBytes + chunk.length > s.limits.bytes) {
        s.stop('bytes');
      } else {
        s.chunks.push(chunk);
        s.fileBytes += chunk.length;
        s.committedBytes += chunk.length;
        s.records += data.records;
        s.packets += data.packets;
        if (s.packets >= s.limits.count) s.stop('count');
      }
    }
    if (data.final) s.lanesOpen.delete(lane);
    if (s.lanesOpen.size === 0) for (const resolve of s.laneWaiters.splice(0)) resolve();
    if (s.state !== 'running') this.refresh();
  }

  /**
   * Resolves once every lane sent its last part of a stopped capture, or after `timeoutMs` (a lane that does not
   * answer: the file has what came); at once without lanes.
   */
  settled(id: number, timeoutMs: number): Promise<void> {
    const s = this.sessions.get(id);
    if (s === undefined || s.lanesOpen.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      s.laneWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** A capture no longer running: its lanes stop too (once). */
  private tellLanes(s: CaptureSession): void {
    if (s.lanesTold || this.lanes === undefined) return;
    s.lanesTold = true;
    for (const k of s.lanesOpen) this.lanes.stop(s.id, k);
  }

  /** Stops every capture and the timer (the control plane closes). */
  close(): void {
    for (const s of this.sessions.values()) s.stop('stopped');
    this.refresh();
  }

  /** Makes room: with all slots taken, the oldest stopped capture is forgotten. */
  private evictStopped(): void {
    if (this.sessions.size < MAX_CAPTURES) return;
    for (const s of this.sessions.values()) {
      if (s.state === 'stopped') {
        this.sessions.delete(s.id);
        return;
      }
    }
  }

  /** The running list, the tap and the drain timer follow the sessions. */
  private refresh(): void {
    for (const s of this.sessions.values()) if (s.state !== 'running') this.tellLanes(s);
    this.running = [...this.sessions.values()].filter((s) => s.state === 'running');
    const want = this.running.length > 0;
    if (want !== this.attached) {
      this.attached = want;
      this.attach(want ? this : null);
    }
    const wantOuter = this.running.some((s) => s.outer);
    if (wantOuter !== this.attachedOuter && this.attachOuter !== undefined) {
      this.attachedOuter = wantOuter;
      this.attachOuter(wantOuter ? this : null);
    }
    if (want && this.timer === null) {
      this.timer = setInterval(() => this.tick(), DRAIN_INTERVAL_MS);
      this.timer.unref();
    } else if (!want && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** The drain timer: encodes every ring, stops captures whose duration is up. */
  tick(): void {
    const now = this.clock();
    let changed = false;
    for (const s of this.running) {
      this.drain(s);
      if (s.state === 'running' && now - s.startedMono >= s.limits.duration_s * MS_PER_S) s.stop('duration');
      if (s.state !== 'running') changed = true;
    }
    if (changed) this.refresh();
  }

  // --- the packet path (while a capture runs) ----------------------------------------------------------

  /**
   * The pipeline rewrites headers only (addresses, ports, checksums, TTL, the MSS option, an ICMP error's embedded
   * header), in place; payloads and lengths stay. So the packet as received is its first HEADER_COPY bytes as
   * they were, copied here, and the rest as it is after processing: a loop over at most HEADER_COPY bytes a
   * packet (in 32-bit words when the packet starts on a word, as slots and decapsulated packets do), no allocation.
   */
  before(batch: PacketBatch, now: number): void {
    // With every running capture's rate used up at `now`, after() (same `now`) can take no packet of this batch:
    // nothing to copy. Under a load far above the rate, most batches end here.
    let wanted = false;
    for (let k = 0; k < this.running.length; k++) if (this.running[k].hasToken(now)) wanted = true;
    if (!wanted) {
      this.shadowCount = 0;
      return;
    }
    const n = batch.count;
    if (this.shadowLength.length < batch.capacity) {
      this.shadow = new Uint8Array(batch.capacity * HEADER_COPY);
      this.shadowWords = new Uint32Array(this.shadow.buffer);
      this.shadowLength = new Uint32Array(batch.capacity);
    }
    const data = batch.data;
    if (this.slabOf !== data) {
      this.slabOf = data;
      this.slabWords = data.byteOffset % WORD === 0 ? new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2) : new Uint32Array(0);
    }
    const shadow = this.shadow;
    const shadowWords = this.shadowWords;
    const slabWords = this.slabWords;
    for (let i = 0; i < n; i++) {
      const from = batch.offset[i];
      const length = batch.length[i] < HEADER_COPY ? batch.length[i] : HEADER_COPY;
      const to = i * HEADER_COPY;
      if ((from & (WORD - 1)) === 0 && slabWords.length > 0) {
        // Whole words: up to 3 bytes past the packet, inside its slot (slots are word multiples).
        const words = (length + WORD - 1) >>> 2;
        const fw = from >>> 2;
        const tw = to >>> 2;
        for (let w = 0; w < words; w++) shadowWords[tw + w] = slabWords[fw + w];
      } else {
        for (let b = 0; b < length; b++) shadow[to + b] = data[from + b];
      }
      this.shadowLength[i] = length;
    }
    this.shadowCount = n;
  }

  /** Packet i of the batch as it was received, into scratch[0…length). */
  private received(batch: PacketBatch, i: number): number {
    const length = batch.length[i];
    const head = this.shadowLength[i];
    const scratch = this.scratch;
    scratch.set(this.shadow.subarray(i * HEADER_COPY, i * HEADER_COPY + head), 0);
    if (length > head) scratch.set(batch.data.subarray(batch.offset[i] + head, batch.offset[i] + length), head);
    return length;
  }

  after(batch: PacketBatch, now: number, received: boolean): void {
    const sessions = this.running;
    let stopped = false;
    // The packets this batch hands to other lanes (the pipeline lists them until the edge pushes them: handMisses).
    const lanes = this.pipeline.lanes;
    const handing = lanes !== null && lanes.count > 0;
    if (handing) {
      if (this.handed.length < batch.capacity) this.handed = new Uint8Array(batch.capacity);
      for (let k = 0; k < lanes.count; k++) this.handed[lanes.index[k]] = 1;
    }
    for (let k = 0; k < sessions.length; k++) {
      const s = sessions[k];
      if (s.state !== 'running') continue;
      this.afterOne(s, batch, now, received && this.shadowCount === batch.count, handing);
      if (s.state !== 'running') stopped = true;
    }
    if (handing) for (let k = 0; k < lanes.count; k++) this.handed[lanes.index[k]] = 0;
    // The copy belongs to this batch only.
    this.shadowCount = 0;
    if (stopped) this.refresh();
  }

  private afterOne(s: CaptureSession, batch: PacketBatch, now: number, received: boolean, handing: boolean): void {
    const n = batch.count;
    const mask = s.mask;
    const info = this.info;
    const pipeline = this.pipeline;
    const handed = this.handed;
    if (now - s.startedMono >= s.limits.duration_s * MS_PER_S) {
      s.stop('duration');
      return;
    }
    for (let i = 0; i < n; i++) {
      if (handing && handed[i] === 1) continue;
      const hop = batch.nextHop[i];
      const forwarded = hop !== NEXT_HOP_DROP;
      const ingress = batch.ingress[i];
      const node = forwarded ? batch.flowNode[i] : -1;
      if (s.flowIndex >= 0) {
        if (node < 0 || node >> 1 !== s.flowIndex || batch.family[i] !== s.flowFamily) continue;
      } else if (mask[ingress] === 0 && (!forwarded || mask[hop] === 0)) {
        continue;
      }
      // The filter matches the packet as received or as sent (a reply's pool address, or its site's).
      let assembled = false;
      if (!s.matchAll) {
        let match = forwarded && inspect(batch.data, batch.offset[i], batch.length[i], info) === 0 && s.filter(info);
        if (!match && received) {
          assembled = true;
          match = inspect(this.scratch, 0, this.received(batch, i), info) === 0 && s.filter(info);
        }
        if (!match) continue;
      }
      if (!s.takeToken(now)) {
        s.rateSkipped++;
        continue;
      }
      const slots = (received ? 1 : 0) + (forwarded ? 1 : 0);
      const estimate = slots * enhancedPacketSize(batch.length[i], MAX_COMMENT_BYTES);
      if (s.committedBytes + estimate > s.limits.bytes) {
        s.stop('bytes');
        return;
      }
      // The decision, numerically (the drain names it).
      let why: number;
      let aux = 0;
      const family = batch.family[i];
      if (!forwarded) {
        why = batch.drop[i] !== 0 ? Why.Dropped : Why.Held;
      } else if (node < 0) {
        why = Why.NoFlow;
      } else {
        const table = family === AF_INET4 ? pipeline.flows4 : pipeline.flows6;
        const flow = node >> 1;
        if ((node & 1) === 0) {
          aux = table.nextHop(flow);
          why = hop === aux ? Why.Original : Why.OriginalMoved;
        } else if ((table.flags(flow) & FLAG_ARR) !== 0) {
          const ret = table.returnPort(flow);
          why = hop === ret ? Why.Arr : Why.ArrMoved;
          aux = hop === ret ? table.returnReason(flow) : ret;
        } else {
          why = Why.Table;
        }
      }
      const first = s.ringCount;
      if (received) {
        const length = assembled ? batch.length[i] : this.received(batch, i);
        if (ringPush(s, this.scratch, 0, length, mask[ingress] === 1 ? INTERFACE_ONRAMP : INTERFACE_OUTSIDE, 0, now) < 0) {
          s.ringSkipped++;
          continue;
        }
      }
      if (forwarded && ringPush(s, batch.data, batch.offset[i], batch.length[i], mask[hop] === 1 ? INTERFACE_ONRAMP : INTERFACE_OUTSIDE, 1, now) < 0 && !received) {
        s.ringSkipped++;
        continue;
      }
      for (let r = first; r < s.ringCount; r++) {
        s.rFamily[r] = family;
        s.rNode[r] = node;
        s.rIngress[r] = ingress;
        s.rHop[r] = hop;
        s.rDrop[r] = batch.drop[i];
        s.rWhy[r] = why;
        s.rAux[r] = aux;
      }
      if (++s.packets >= s.limits.count) {
        s.stop('count');
        return;
      }
    }
  }

  /**
   * Outer packets on the underlay (OuterTap): per running outer capture, per packet, an inspection of the outer
   * header, the endpoint match, the filter, a rate token and one copy into the ring. No allocation.
   */
  outer(batch: PacketBatch, idx: Uint32Array | null, from: number, to: number, sent: boolean): void {
    const now = this.clock();
    const sessions = this.running;
    let stopped = false;
    for (let k = 0; k < sessions.length; k++) {
      const s = sessions[k];
      if (s.state !== 'running' || s.outerEndpoints.length === 0) continue;
      this.outerOne(s, batch, idx, from, to, sent, now);
      if (s.state !== 'running') stopped = true;
    }
    if (stopped) this.refresh();
  }

  private outerOne(s: CaptureSession, batch: PacketBatch, idx: Uint32Array | null, from: number, to: number, sent: boolean, now: number): void {
    if (now - s.startedMono >= s.limits.duration_s * MS_PER_S) {
      s.stop('duration');
      return;
    }
    const info = this.info;
    for (let q = from; q < to; q++) {
      const i = idx === null ? q : idx[q];
      const offset = batch.offset[i];
      const length = batch.length[i];
      // GRE and ESP are protocols the flow model does not track: inspect still reads their IP header.
      const bad = inspect(batch.data, offset, length, info);
      if ((bad !== Drop.None && bad !== Drop.UnsupportedProtocol) || info.family !== AF_INET4) continue;
      const e = matchOuter(s.outerEndpoints, info);
      if (e < 0 || (!s.matchAll && !s.filter(info))) continue;
      if (!s.takeToken(now)) {
        s.rateSkipped++;
        continue;
      }
      if (s.committedBytes + enhancedPacketSize(length, MAX_COMMENT_BYTES) > s.limits.bytes) {
        s.stop('bytes');
        return;
      }
      const r = ringPush(s, batch.data, offset, length, INTERFACE_OUTER, sent ? 1 : 0, now);
      if (r < 0) {
        s.ringSkipped++;
        continue;
      }
      s.rFamily[r] = AF_INET4;
      s.rNode[r] = -1;
      s.rIngress[r] = 0;
      s.rHop[r] = 0;
      s.rDrop[r] = 0;
      s.rWhy[r] = Why.Outer;
      s.rAux[r] = e;
      if (++s.packets >= s.limits.count) {
        s.stop('count');
        return;
      }
    }
  }

  // --- off the packet path -----------------------------------------------------------------------------

  /** Encodes the session's ring into pcapng (one chunk) and empties the ring. */
  drain(s: CaptureSession): void {
    const n = s.ringCount;
    if (n === 0) return;
    const comments: Uint8Array[] = new Array(n);
    let size = 0;
    for (let r = 0; r < n; r++) {
      const c = encoder.encode(this.comment(s, r));
      comments[r] = c.length > MAX_COMMENT_BYTES ? c.subarray(0, MAX_COMMENT_BYTES) : c;
      size += enhancedPacketSize(s.rCaptured[r], comments[r].length);
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (let r = 0; r < n; r++) {
      const micros = (this.timeOrigin + s.rTime[r]) * MICROS_PER_MS;
      at += writeEnhancedPacket(out, at, s.rInterface[r], micros, s.ring, s.rStart[r], s.rCaptured[r], s.rOriginal[r], comments[r]);
    }
    s.chunks.push(out);
    s.fileBytes += size;
    s.records += n;
    s.committedBytes = s.fileBytes;
    s.ringCount = 0;
    s.ringUsed = 0;
  }

  /** The record's comment: side, flow, the onramp it came in on, where it went and why. */
  private comment(s: CaptureSession, r: number): string {
    const names = this.names;
    if (s.rWhy[r] === Why.Outer) {
      const e = s.outerEndpoints[s.rAux[r]];
      const addr = (a: number): string => (a === ANY_ADDR ? 'any' : formatIpv4(a));
      return `outer packet, underlay ${s.rSent[r] === 1 ? 'tx (as written, after encapsulation)' : 'rx (as read, before demux)'}; onramp ${e.onramp}; endpoints ${addr(e.local)}${e.port !== 0 ? `:${e.port}` : ''} (edge) and ${addr(e.remote)}`;
    }
    const parts: string[] = [s.rSent[r] === 1 ? 'sent (after rewrite)' : 'received (before rewrite)'];
    const node = s.rNode[r];
    if (node >= 0) parts.push(`flow ${s.rFamily[r]}-${laneFlowNumber(this.lane, node >> 1)} (${(node & 1) === 0 ? 'original direction' : 'reply'})`);
    parts.push(`in ${names.onramp(s.rIngress[r])}`);
    const hop = s.rHop[r];
    const aux = s.rAux[r];
    switch (s.rWhy[r]) {
      case Why.Dropped:
        parts.push(`dropped: ${DROP_REASON_NAMES[s.rDrop[r]] ?? s.rDrop[r]}`);
        break;
      case Why.Held:
        parts.push('not forwarded: held (an early fragment) or taken by the edge (a health probe reply)');
        break;
      case Why.NoFlow:
        parts.push(`out ${names.onramp(hop)}`, 'no flow of its own: an ICMP error translated by its embedded header, or the edge\'s own answer');
        break;
      case Why.Original:
        parts.push(`out ${names.onramp(hop)}`, 'routing table (original direction: the next hop chosen at flow setup)');
        break;
      case Why.OriginalMoved:
        parts.push(`out ${names.onramp(hop)}`, `failover (next hop ${names.onramp(aux)} is down: the best healthy onramp of its site)`);
        break;
      case Why.Arr: {
        const reason = RETURN_REASONS[aux] ?? 'recorded';
        const text = reason === 'recorded' ? 'return onramp recorded at setup' : reason === 'last-arrival' ? 'return onramp where the flow last arrived (site failover policy)' : reason === 'failover' ? 'failover: return onramp moved while the recorded one was down' : 'return onramp drained back after the flow was idle';
        parts.push(`out ${names.onramp(hop)}`, `ARR (${text})`);
        break;
      }
      case Why.ArrMoved:
        parts.push(`out ${names.onramp(hop)}`, `ARR failover (return onramp ${names.onramp(aux)} is down: the best healthy onramp of its site)`);
        break;
      default:
        parts.push(`out ${names.onramp(hop)}`, 'routing table (a reply of a flow without ARR: routed by its destination)');
    }
    return parts.join('; ');
  }
}
