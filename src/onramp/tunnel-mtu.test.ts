import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseIpv4, parseIpv6 } from '../wire/addr.js';
import { Drop } from '../common/drop-reasons.js';
import { buildIcmpError, buildTcp, buildUdp, parsePacket } from '../wire/build.js';
import { transportChecksumFull, onesComplementSum, foldChecksum } from '../wire/checksum.js';
import { TCP_ACK_FLAG, TCP_SYN } from '../wire/constants.js';
import { inspect } from '../wire/inspect.js';
import { PacketInfo } from '../wire/packet-info.js';
import { ICMP_ERROR_ROOM, ICMP_ERROR_TOS } from '../wire/icmp-error.js';
import { clampTcpMss } from '../wire/rewrite.js';
import {
  MtuVerdict,
  writePacketTooBig,
  fragmentForTunnel,
  mayReportError,
  tunnelMaxMss,
  tunnelMtuVerdict,
} from './tunnel-mtu.js';
import { GreTunnelTable } from './gre/tunnel-table.js';

/** writePacketTooBig's error as its own array, or null when none may be sent. */
function packetTooBig(buf: Uint8Array, i: PacketInfo, mtu: number, source: number | Uint32Array): Uint8Array | null {
  const out = new Uint8Array(ICMP_ERROR_ROOM);
  const n = writePacketTooBig(out, 0, buf, i, mtu, source);
  return n === 0 ? null : out.slice(0, n);
}

const info = new PacketInfo();
const EDGE_INSIDE = parseIpv4('10.255.255.1');
const EDGE_INSIDE6 = parseIpv6('fd00:ffff::1')!;

function inspected(bytes: Uint8Array): PacketInfo {
  assert.equal(inspect(bytes, 0, bytes.length, info), Drop.None);
  return info;
}

function udp4(length: number, dontFragment: boolean): Uint8Array {
  return buildUdp({ src: '10.0.1.10', dst: '203.0.113.10', dontFragment, id: 0x4242 }, { srcPort: 5000, dstPort: 9, payload: new Uint8Array(length - 28).fill(0x5a) });
}

function udp6(length: number): Uint8Array {
  return buildUdp({ src: 'fd00:1::10', dst: '2001:db8::10' }, { srcPort: 5000, dstPort: 9, payload: new Uint8Array(length - 48).fill(0x5a) });
}

function tunnelMtu(config: { key?: number; v6?: boolean }): number {
  const t = new GreTunnelTable(1);
  const i = config.v6
    ? t.add({ onrampId: 1, local: '2001:db8:e::1', remote: '2001:db8:a::1', key: config.key })
    : t.add({ onrampId: 1, local: '192.0.2.1', remote: '198.51.100.1', key: config.key });
  return t.mtu[i];
}

test('IPv4 with DF over the tunnel MTU: ICMP fragmentation needed with the next-hop MTU, quoting up to 576 bytes', () => {
  for (const [key, mtu] of [[undefined, 1476], [7, 1472]] as const) {
    assert.equal(tunnelMtu({ key }), mtu);
    const packet = udp4(1500, true);
    assert.equal(tunnelMtuVerdict(inspected(packet), mtu), MtuVerdict.TooBig);
    const error = packetTooBig(packet, info, mtu, EDGE_INSIDE)!;
    const p = parsePacket(error);
    assert.equal(p.drop, Drop.None);
    assert.deepEqual([p.src, p.dst, p.icmp?.type, p.icmp?.code], ['10.255.255.1', '10.0.1.10', 3, 4]);
    assert.equal((error[20 + 6] << 8) | error[20 + 7], mtu, 'RFC 1191 next-hop MTU');
    assert.equal((error[20 + 4] << 8) | error[20 + 5], 0, 'unused half word');
    assert.equal(error.length, 576, 'RFC 1812 section 4.3.2.3: as much as fits in 576 bytes');
    assert.deepEqual(error.subarray(28), packet.subarray(0, 576 - 28));
    assert.equal(foldChecksum(onesComplementSum(error, 20, error.length, 0)), 0, 'ICMP checksum');
    assert.deepEqual(p.inner && [p.inner.src, p.inner.dst, p.inner.srcPort, p.inner.dstPort], ['10.0.1.10', '203.0.113.10', 5000, 9]);
    // Same bytes as the wire builder gives for this error: the module only decides the numbers.
    assert.deepEqual(error, buildIcmpError({ src: EDGE_INSIDE, dst: '10.0.1.10', tos: ICMP_ERROR_TOS }, { type: 3, code: 4, mtu, quote: 'max' }, packet));
  }
  assert.equal(tunnelMtuVerdict(inspected(udp4(1476, true)), 1476), MtuVerdict.Fits);
});

test('IPv6 over the tunnel MTU: packet too big with the MTU (never below 1280), quoting up to 1280 bytes', () => {
  const mtu = tunnelMtu({ v6: true });
  assert.equal(mtu, 1456);
  const packet = udp6(1500);
  assert.equal(tunnelMtuVerdict(inspected(packet), mtu), MtuVerdict.TooBig);
  const error = packetTooBig(packet, info, mtu, EDGE_INSIDE6)!;
  const p = parsePacket(error);
  assert.deepEqual([p.src, p.dst, p.icmp?.type, p.icmp?.code], ['fd00:ffff::1', 'fd00:1::10', 2, 0]);
  assert.equal(((error[44] << 24) | (error[45] << 16) | (error[46] << 8) | error[47]) >>> 0, 1456);
  assert.equal(error.length, 1280, 'RFC 4443 section 2.4 (c)');
  assert.deepEqual(error.subarray(48), packet.subarray(0, 1280 - 48));
  assert.equal(transportChecksumFull(error, inspected(error)), (error[42] << 8) | error[43], 'ICMPv6 checksum');

  // A tunnel below 1280 still carries 1280-byte IPv6 packets and never advertises less than 1280.
  assert.equal(tunnelMtuVerdict(inspected(udp6(1280)), 1200), MtuVerdict.Fits);
  const big = udp6(1281);
  assert.equal(tunnelMtuVerdict(inspected(big), 1200), MtuVerdict.TooBig);
  const small = packetTooBig(big, info, 1200, EDGE_INSIDE6)!;
  assert.equal(((small[44] << 24) | (small[45] << 16) | (small[46] << 8) | small[47]) >>> 0, 1280);
});

test('IPv4 with DF clear over the tunnel MTU: fragments that fit and reassemble to the original', () => {
  fc.assert(
    fc.property(fc.integer({ min: 100, max: 4000 }), fc.integer({ min: 68, max: 1476 }), (length, mtu) => {
      const packet = udp4(length, false);
      const verdict = tunnelMtuVerdict(inspected(packet), mtu);
      assert.equal(verdict, length <= mtu ? MtuVerdict.Fits : MtuVerdict.Fragment);
      if (verdict !== MtuVerdict.Fragment) return;
      const pieces = fragmentForTunnel(packet, info, mtu);
      const data = new Uint8Array(length - 20);
      let covered = 0;
      for (const [k, f] of pieces.entries()) {
        assert.ok(f.length <= mtu);
        const fi = parsePacket(f);
        assert.equal(fi.drop, Drop.None);
        assert.equal(fi.isFragment, true);
        assert.equal(fi.fragmentId, 0x4242);
        assert.equal(fi.moreFragments, k < pieces.length - 1);
        data.set(f.subarray(20), fi.fragmentOffset);
        covered += f.length - 20;
      }
      assert.equal(covered, length - 20);
      assert.deepEqual(data, packet.subarray(20));
    }),
    { numRuns: 100 },
  );
});

test('verdict oracle: random sizes, families, DF bits and MTUs', () => {
  fc.assert(
    fc.property(fc.boolean(), fc.boolean(), fc.integer({ min: 64, max: 3000 }), fc.integer({ min: 68, max: 9000 }), (v6, df, length, mtu) => {
      const packet = v6 ? udp6(Math.max(48, length)) : udp4(length, df);
      const verdict = tunnelMtuVerdict(inspected(packet), mtu);
      const limit = v6 ? Math.max(mtu, 1280) : mtu;
      const want = packet.length <= limit ? MtuVerdict.Fits : v6 || df ? MtuVerdict.TooBig : MtuVerdict.Fragment;
      assert.equal(verdict, want);
    }),
  );
});

test('no ICMP error about an ICMP error, a non-first fragment, or a source that is not a host', () => {
  const error = buildIcmpError({ src: '203.0.113.1', dst: '10.0.1.10', dontFragment: true }, { type: 3, code: 3, quote: 'max' }, udp4(1400, true));
  assert.equal(mayReportError(inspected(error)), false);
  assert.equal(packetTooBig(error, info, 500, EDGE_INSIDE), null);
  const later = fragmentForTunnel(udp4(3000, false), inspected(udp4(3000, false)), 1476)[1];
  assert.equal(mayReportError(inspected(later)), false);
  for (const src of ['0.0.0.0', '127.0.0.1', '224.0.0.1', '255.255.255.255']) {
    assert.equal(mayReportError(inspected(buildUdp({ src, dst: '10.0.0.1' }, { srcPort: 1, dstPort: 2 }))), false, src);
  }
  assert.equal(mayReportError(inspected(buildUdp({ src: '10.0.0.2', dst: '239.1.1.1' }, { srcPort: 1, dstPort: 2 }))), false);
  assert.equal(mayReportError(inspected(buildUdp({ src: 'fd00::1', dst: 'ff02::1' }, { srcPort: 1, dstPort: 2 }))), true, 'RFC 4443 (e.3)');
  assert.equal(mayReportError(inspected(buildUdp({ src: 'ff02::1', dst: 'fd00::1' }, { srcPort: 1, dstPort: 2 }))), false);
  assert.equal(mayReportError(inspected(buildUdp({ src: '::', dst: 'fd00::1' }, { srcPort: 1, dstPort: 2 }))), false);
  assert.equal(mayReportError(inspected(udp4(100, true))), true);
});

test('MSS clamping: SYNs through the tunnel announce at most MTU - 40 (IPv4) / - 60 (IPv6)', () => {
  assert.equal(tunnelMaxMss(4, 1476), 1436);
  assert.equal(tunnelMaxMss(6, 1456), 1396);
  assert.equal(tunnelMaxMss(6, 1200), 1220);
  const cases = [
    { ip: { src: '10.0.1.10', dst: '203.0.113.10' }, mss: 1460, mtu: 1476, flags: TCP_SYN, want: 1436 },
    { ip: { src: '10.0.1.10', dst: '203.0.113.10' }, mss: 1460, mtu: 1472, flags: TCP_SYN | TCP_ACK_FLAG, want: 1432 },
    { ip: { src: '10.0.1.10', dst: '203.0.113.10' }, mss: 1200, mtu: 1476, flags: TCP_SYN, want: 1200 },
    { ip: { src: 'fd00:1::10', dst: '2001:db8::10' }, mss: 1440, mtu: 1456, flags: TCP_SYN, want: 1396 },
  ];
  for (const c of cases) {
    const packet = buildTcp(c.ip, { srcPort: 40000, dstPort: 443, flags: c.flags, options: { mss: c.mss, sackPermitted: true, windowScale: 7 } });
    const i = inspected(packet);
    clampTcpMss(packet, i, tunnelMaxMss(i.family, c.mtu));
    const after = parsePacket(packet);
    assert.equal(after.tcp?.mss, c.want);
    assert.equal(transportChecksumFull(packet, inspected(packet)), (packet[i.l4Offset + 16] << 8) | packet[i.l4Offset + 17], 'TCP checksum stays valid');
  }
  // Not a SYN: no MSS option is looked at, nothing changes.
  const ack = buildTcp({ src: '10.0.1.10', dst: '203.0.113.10' }, { srcPort: 40000, dstPort: 443, flags: TCP_ACK_FLAG, options: { mss: 1460 } });
  const copy = ack.slice();
  clampTcpMss(ack, inspected(ack), tunnelMaxMss(4, 1000));
  assert.deepEqual(ack, copy);
});
