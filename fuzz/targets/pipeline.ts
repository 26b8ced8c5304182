/**
 * dataplane/pipeline: the whole packet walk (inspect, source filter, MSS clamp, ICMP errors, fragments, flow
 * match and setup with firewall, routes, NAT and ARR) over a small multi-site configuration, on batches of up
 * to eight packets tagged with random ingress ports, one of them not configured. Replies are made by mirroring
 * packets the pipeline forwarded earlier (addresses and ports swapped, sent back in on the port they left on),
 * so established flows, NAT reversal and ARR are walked too, not only setup.
 *
 * Input framing (so a saved input replays alone): u16 milliseconds to advance, then per packet a port byte,
 * a u16 length and the bytes; a record cut short by the end of the input is taken as far as it goes.
 *
 * Checks: no throw; every drop is a known reason; every next hop is a configured port; the batch metadata of
 * a forwarded packet lies inside it; nothing outside the packets' bytes in the batch changed.
 */
import { DROP_REASON_NAMES } from '../../src/common/drop-reasons.js';
import { NEXT_HOP_DROP } from '../../src/common/ids.js';
import { PacketBatch } from '../../src/common/packet-batch.js';
import { Pipeline } from '../../src/dataplane/pipeline.js';
import { NextHopKind } from '../../src/route/route-table.js';
import { read16, write16 } from '../../src/wire/bytes.js';
import { transportChecksumFull } from '../../src/wire/checksum.js';
import { IPPROTO_TCP, IPPROTO_UDP, IPV4_DST, IPV4_SRC, IPV6_DST, IPV6_SRC, TCP_ACK, TCP_ACK_FLAG, TCP_CHECKSUM, TCP_FLAGS, TCP_SEQ, TCP_SYN, UDP_CHECKSUM } from '../../src/wire/constants.js';
import { inspect } from '../../src/wire/inspect.js';
import { PacketInfo } from '../../src/wire/packet-info.js';
import { changedOutside } from '../../test/support/bounds.js';
import { A_BACKUP, A_PRIMARY, B_PRIMARY, DC_ONRAMP, INTERNET, twoSites } from '../../test/support/topology.js';
import { FuzzFailure, type FuzzTarget } from '../harness.js';
import { packetFromSeeds } from '../mutate.js';
import type { Rng } from '../rng.js';
import { packetSeeds } from '../seeds.js';

const EXTRA_SITE = 100;
const DOWN_SITE = 101;
/** An onramp id no configuration has: the pipeline must count it as UnknownPort. */
const UNCONFIGURED = 77;
const PORTS = [INTERNET, A_PRIMARY, A_BACKUP, B_PRIMARY, DC_ONRAMP, EXTRA_SITE, DOWN_SITE, UNCONFIGURED];
const BATCH = 8;
const SLOT = 2048;
const HEADROOM = 128;
const MAX_PACKET = SLOT - HEADROOM;
const SENTINEL = 0xa5;
const RING = 64;
const EXPIRE_EVERY = 64;
/** IPv4 / IPv6 address sizes in bytes. */
const ADDR4 = 4;
const ADDR6 = 16;
/** Record header of the framing: port byte, u16 length. */
const RECORD_HEADER = 3;
const TIME_HEADER = 2;

function multiSiteConfig() {
  const cfg = twoSites({ extraSites: 2, flows: { capacity4: 4096, capacity6: 1024 } });
  for (const o of cfg.onramps) {
    if (o.id === A_PRIMARY) o.mtu = 1400;
    if (o.id === B_PRIMARY) o.allowedSources = ['10.0.1.0/24', 'fd00:1::/64'];
    if (o.id === EXTRA_SITE) o.maxFlows = 50;
  }
  cfg.routes.push({ prefix: '192.0.2.0/24', kind: NextHopKind.Blackhole }, { prefix: '10.99.0.0/16', kind: NextHopKind.Onramp, port: DOWN_SITE });
  cfg.firewall = {
    defaultAction: 'allow',
    rules: [
      { id: 1, action: 'deny', protocols: [IPPROTO_TCP], dstPorts: [[23, 23]] },
      { id: 2, action: 'deny', sites: [EXTRA_SITE], dstPrefixes: ['172.16.0.0/24'] },
    ],
  };
  return cfg;
}

/** Swaps source and destination (addresses, ports) in place: the one's-complement sums stay valid. */
function mirror(p: Uint8Array, info: PacketInfo): void {
  const v4 = info.family === 4;
  const size = v4 ? ADDR4 : ADDR6;
  const src = info.l3Offset + (v4 ? IPV4_SRC : IPV6_SRC);
  const dst = info.l3Offset + (v4 ? IPV4_DST : IPV6_DST);
  const a = p.slice(src, src + size);
  p.copyWithin(src, dst, dst + size);
  p.set(a, dst);
  if ((info.protocol === IPPROTO_TCP || info.protocol === IPPROTO_UDP) && info.hasTransportHeader) {
    const sp = read16(p, info.l4Offset);
    write16(p, info.l4Offset, read16(p, info.l4Offset + 2));
    write16(p, info.l4Offset + 2, sp);
  }
}

export function pipelineTarget(): FuzzTarget {
  const seeds = packetSeeds();
  const pipeline = new Pipeline({ ...multiSiteConfig(), hashSeed: 7 });
  pipeline.setOnrampUp(DOWN_SITE, false);
  const batch = new PacketBatch(BATCH, SLOT, HEADROOM);
  const info = new PacketInfo();
  const ring: Array<{ bytes: Uint8Array; hop: number }> = [];
  let ringNext = 0;
  let now = 1_000_000;
  let runs = 0;

  /** A reply to something forwarded earlier, entering where that packet left; a SYN becomes a SYN-ACK. */
  function reply(rng: Rng): { port: number; bytes: Uint8Array } | null {
    if (ring.length === 0) return null;
    const sent = rng.pick(ring);
    const p = sent.bytes.slice();
    if (inspect(p, 0, p.length, info) !== 0) return null;
    mirror(p, info);
    if (info.protocol === IPPROTO_TCP && info.hasTransportHeader && (info.tcpFlags & TCP_SYN) !== 0) {
      const o = info.l4Offset;
      p[o + TCP_FLAGS] = TCP_SYN | TCP_ACK_FLAG;
      const seq = ((p[o + TCP_SEQ] << 24) | (p[o + TCP_SEQ + 1] << 16) | (p[o + TCP_SEQ + 2] << 8) | p[o + TCP_SEQ + 3]) >>> 0;
      const ack = (seq + 1) >>> 0;
      p.set([ack >>> 24, (ack >>> 16) & 0xff, (ack >>> 8) & 0xff, ack & 0xff], o + TCP_ACK);
      p.set([rng.u32() & 0xff, rng.u32() & 0xff, 0, 0], o + TCP_SEQ);
      if (inspect(p, 0, p.length, info) === 0) write16(p, o + TCP_CHECKSUM, transportChecksumFull(p, info));
    } else if (info.protocol === IPPROTO_UDP && rng.chance(0.1)) {
      write16(p, info.l4Offset + UDP_CHECKSUM, 0);
    }
    return { port: sent.hop, bytes: p };
  }

  return {
    name: 'dataplane/pipeline',
    generate(rng: Rng): Uint8Array {
      const parts: number[] = [];
      const step = rng.chance(0.1) ? rng.int(0x10000) : rng.int(100);
      parts.push(step >>> 8, step & 0xff);
      const n = 1 + rng.int(BATCH);
      for (let k = 0; k < n; k++) {
        let port = rng.int(PORTS.length);
        let bytes: Uint8Array;
        const r = rng.chance(0.3) ? reply(rng) : null;
        if (r !== null) {
          port = PORTS.indexOf(r.port);
          bytes = rng.chance(0.3) ? packetFromSeeds(rng, [r.bytes], MAX_PACKET) : r.bytes;
        } else {
          bytes = packetFromSeeds(rng, seeds, MAX_PACKET);
        }
        parts.push(port < 0 ? 0 : port, bytes.length >>> 8, bytes.length & 0xff, ...bytes);
      }
      return Uint8Array.from(parts);
    },
    run(input: Uint8Array): string {
      batch.clear();
      batch.data.fill(SENTINEL);
      let at = TIME_HEADER;
      while (at < input.length && batch.count < BATCH) {
        const port = PORTS[input[at] % PORTS.length];
        const want = at + 2 < input.length ? (input[at + 1] << 8) | input[at + 2] : 0;
        const len = Math.min(want, input.length - at - RECORD_HEADER, MAX_PACKET);
        if (len <= 0) break;
        batch.push(input, at + RECORD_HEADER, len, port);
        at += RECORD_HEADER + len;
      }
      now += input.length >= TIME_HEADER ? (input[0] << 8) | input[1] : 0;
      pipeline.process(batch, now);
      if (++runs % EXPIRE_EVERY === 0) pipeline.expire(now);
      const configured = pipeline.ports.configured;
      let outcome = 'empty';
      for (let i = 0; i < batch.count; i++) {
        const hop = batch.nextHop[i];
        const drop = batch.drop[i];
        const off = batch.offset[i];
        const len = batch.length[i];
        const name = DROP_REASON_NAMES[drop];
        if (name === undefined) throw new FuzzFailure(`packet ${i}: drop ${drop} is not a known reason`);
        if (hop !== NEXT_HOP_DROP) {
          if (configured[hop] !== 1) throw new FuzzFailure(`packet ${i}: next hop ${hop} is not a configured port`);
          if (batch.l3Offset[i] !== off || batch.l4Offset[i] < off || batch.l4Offset[i] > off + len || (batch.mssOffset[i] !== 0 && (batch.mssOffset[i] < off || batch.mssOffset[i] + 2 > off + len))) {
            throw new FuzzFailure(`packet ${i}: metadata outside the packet (l3 ${batch.l3Offset[i]}, l4 ${batch.l4Offset[i]}, mss ${batch.mssOffset[i]}, packet [${off}, ${off + len}))`);
          }
          ring[ringNext] = { bytes: batch.packet(i).slice(), hop };
          ringNext = (ringNext + 1) % RING;
        }
        const slot = i * SLOT;
        const changed = changedOutside(batch.data, off, len, SENTINEL, slot, slot + SLOT);
        if (changed !== null) throw new FuzzFailure(`packet ${i}: the pipeline wrote outside it: ${changed}`);
        // The batch's outcome is its first packet's (the counts stay one per input).
        if (i === 0) outcome = hop !== NEXT_HOP_DROP ? 'forwarded' : drop === 0 ? 'held' : name;
      }
      const g = pipeline.generated;
      for (let i = 0; i < g.count; i++) {
        if (DROP_REASON_NAMES[g.drop[i]] === undefined) throw new FuzzFailure(`generated packet ${i}: drop ${g.drop[i]} is not a known reason`);
        if (g.nextHop[i] !== NEXT_HOP_DROP && configured[g.nextHop[i]] !== 1) throw new FuzzFailure(`generated packet ${i}: next hop ${g.nextHop[i]} is not configured`);
      }
      return outcome;
    },
  };
}
