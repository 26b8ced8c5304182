#!/usr/bin/python3
"""The soak's hostile actors (src/lab/soak.ts, docs/SOAK.md). Plain Python, no scapy: the packets are built
with struct once per variant and sent through a raw socket, so a few hundred per second cost little CPU.

  --role site      inside the GRE site's namespace: the hostile site. Over its real GRE tunnel
                   (192.168.103.2 -> .1, RFC 2784) it sends, in turn:
                     spoof       inner sources outside its prefixes (10.200.x.y, the Internet server, the data
                                 center): the edge's source filter must drop them (source_not_allowed)
                     udp_flood   one unanswered UDP datagram from each of its source ports to the discard port:
                                 its flow and NAT-port quotas must hold (quota_exceeded, nat_quota_exceeded)
                     syn_flood   TCP SYNs from random ports, never completed (half-open flows)
                     inner_reply replies it invents: from the Internet server's echo port to 10.0.1.10
                     garbage     truncated GRE, GRE with a key the tunnel does not have, junk inner bytes
                   and on the WireGuard port of site-a's device (--wg-endpoint, routed through the edge) a
                   handshake flood: one initiation from a key the edge does not know (--initiation), repeated
                   (whitepaper 5.3: cookie replies under load).
  --role tunnel    inside a WireGuard site's host namespace: a compromised host in that branch sending, through
                   the site's real tunnel, from sources outside the onramp's allowed IPs (10.200.x.y, the
                   Internet server, another LAN): the edge must drop them (source_not_allowed).
  --role internet  inside the Internet server's namespace: forged replies to the pool address (--pool) from the
                   server's address with ports it never used and from addresses that never talked to anyone,
                   forged ICMP errors quoting made-up flows, forged echo replies, stray TCP RST/ACKs. Address-
                   and-port-dependent filtering and the flow table must drop them; none may reach a site.

Prints one JSON line of cumulative counts per second: {"role": ..., "sent": {kind: n}, "received": n}.
Runs for --seconds, at about --rate packets per second (and --flood-rate more of the site's UDP flood).
"""
import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_GRE = 1, 6, 17, 47
ETHERTYPE_IPV4 = 0x0800
GRE_FLAG_KEY = 0x2000
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10
ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_PORT_UNREACH = 0, 3, 3
DISCARD_PORT, ECHO_PORT, HTTP_PORT = 9, 7, 80
IPV4_HEADER = 20
# A packet variant is rebuilt each time it is sent (new ports, addresses), so the floods never repeat a flow.
REPORT_EVERY_S = 1.0


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, ident=0):
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, IPV4_HEADER + len(payload), ident, 0, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack('!H', checksum(hdr)) + hdr[12:]
    return hdr + payload


def pseudo(src, dst, proto, length):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, proto, length)


def udp(src, dst, sport, dport, data):
    seg = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    c = checksum(pseudo(src, dst, IPPROTO_UDP, len(seg)) + seg) or 0xFFFF
    return ipv4(src, dst, IPPROTO_UDP, seg[:6] + struct.pack('!H', c) + seg[8:])


def tcp(src, dst, sport, dport, flags, seq, ack=0):
    seg = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    c = checksum(pseudo(src, dst, IPPROTO_TCP, len(seg)) + seg)
    return ipv4(src, dst, IPPROTO_TCP, seg[:16] + struct.pack('!H', c) + seg[18:])


def icmp(src, dst, icmp_type, code, rest, data):
    msg = struct.pack('!BBH', icmp_type, code, 0) + rest + data
    return ipv4(src, dst, IPPROTO_ICMP, msg[:2] + struct.pack('!H', checksum(msg)) + msg[4:])


def gre(outer_src, outer_dst, inner, key=None):
    head = struct.pack('!HH', GRE_FLAG_KEY if key is not None else 0, ETHERTYPE_IPV4)
    if key is not None:
        head += struct.pack('!I', key)
    return ipv4(outer_src, outer_dst, IPPROTO_GRE, head + inner)


def rport():
    return random.randint(1024, 65535)


def site_kinds(a):
    """The hostile site's packets: (kind, bytes to send raw) generators, one per kind."""
    host = a.host
    server, dc = a.server, a.dc

    def spoof():
        # A GRE onramp has no allowed sources (only WireGuard's allowed IPs filter): these stay in the site's
        # own zone, NATed like its other flows; the zone keeps them from touching another site's flows.
        src = random.choice(['10.200.%d.%d' % (random.randint(0, 255), random.randint(1, 254)), server, dc, '10.0.2.10'])
        return gre(a.outer_src, a.outer_dst, udp(src, server, rport(), ECHO_PORT, b'spoofed'))

    def udp_flood():
        return gre(a.outer_src, a.outer_dst, udp(host, server, rport(), DISCARD_PORT, b'flood'))

    def syn_flood():
        return gre(a.outer_src, a.outer_dst, tcp(host, random.choice([server, dc]), rport(), HTTP_PORT, TCP_SYN, random.getrandbits(32)))

    def inner_reply():
        return gre(a.outer_src, a.outer_dst, udp(server, host, ECHO_PORT, rport(), b'{"forged":true}'))

    def garbage():
        pick = random.randint(0, 2)
        if pick == 0:
            return ipv4(a.outer_src, a.outer_dst, IPPROTO_GRE, b'\0\0')
        if pick == 1:
            return gre(a.outer_src, a.outer_dst, udp(host, server, rport(), ECHO_PORT, b'wrong key'), key=999)
        return gre(a.outer_src, a.outer_dst, os.urandom(random.randint(1, 60)))

    return [('spoof', spoof), ('udp_flood', udp_flood), ('syn_flood', syn_flood), ('inner_reply', inner_reply), ('garbage', garbage)]


def tunnel_kinds(a):
    def tunnel_spoof():
        src = random.choice(['10.200.%d.%d' % (random.randint(0, 255), random.randint(1, 254)), a.server, '10.0.2.10'])
        return udp(src, random.choice([a.server, a.dc]), rport(), ECHO_PORT, b'spoofed')

    return [('tunnel_spoof', tunnel_spoof)]


def internet_kinds(a):
    server, pool = a.server, a.pool

    def forged_udp():
        # From the server's address but a port it never answered from, or from an address nobody talked to.
        if random.random() < 0.5:
            return udp(server, pool, random.choice([53, 123, 8080, rport()]), rport(), b'{"forged":true}')
        return udp('203.0.113.%d' % random.randint(100, 200), pool, ECHO_PORT, rport(), b'{"forged":true}')

    def forged_icmp_error():
        quoted = udp(pool, server, rport(), ECHO_PORT, b'')[:IPV4_HEADER + 8]
        return icmp(server, pool, ICMP_UNREACH, ICMP_PORT_UNREACH, b'\0\0\0\0', quoted)

    def forged_echo_reply():
        return icmp(server, pool, ICMP_ECHO_REPLY, 0, struct.pack('!HH', random.getrandbits(16), random.getrandbits(16)), b'forged')

    def forged_tcp():
        flags = random.choice([TCP_RST, TCP_ACK, TCP_RST | TCP_ACK])
        return tcp(server, pool, HTTP_PORT, rport(), flags, random.getrandbits(32), random.getrandbits(32))

    return [('forged_udp', forged_udp), ('forged_icmp_error', forged_icmp_error), ('forged_echo_reply', forged_echo_reply), ('forged_tcp', forged_tcp)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--role', choices=['site', 'tunnel', 'internet'], required=True)
    ap.add_argument('--seconds', type=float, required=True)
    ap.add_argument('--rate', type=float, default=400.0, help='packets per second, all kinds together')
    ap.add_argument('--flood-rate', type=float, default=0.0, help='site: UDP flood packets per second on top of --rate')
    ap.add_argument('--outer-src', default='192.168.103.2')
    ap.add_argument('--outer-dst', default='192.168.103.1')
    ap.add_argument('--host', default='10.0.1.10')
    ap.add_argument('--server', default='203.0.113.10')
    ap.add_argument('--dc', default='172.16.0.20')
    ap.add_argument('--pool', default='198.51.100.1')
    ap.add_argument('--wg-endpoint', default=None, help='ADDR:PORT of a WireGuard device to flood with --initiation')
    ap.add_argument('--initiation', default=None, help='hex of one handshake initiation')
    ap.add_argument('--handshake-burst', type=int, default=200, help='initiations per second in the flood')
    a = ap.parse_args()

    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    # The GRE site holds a raw GRE socket: what comes back is counted, and the namespace's kernel does not
    # answer the edge's GRE with protocol unreachable.
    listen = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE) if a.role == 'site' else None
    wg = None
    if a.role == 'site' and a.wg_endpoint and a.initiation:
        wg = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host, port = a.wg_endpoint.rsplit(':', 1)
        wg_to = (host, int(port))
        initiation = bytes.fromhex(a.initiation)
    kinds = {'site': site_kinds, 'tunnel': tunnel_kinds, 'internet': internet_kinds}[a.role](a)
    sent = {k: 0 for k, _ in kinds}
    if wg is not None:
        sent['handshake_flood'] = 0
    received = 0
    errors = 0
    start = time.monotonic()
    next_report = start + REPORT_EVERY_S
    # Two schedules: the mixed kinds in turn at --rate, and the site's UDP flood alone at --flood-rate (a flood
    # big enough to meet the site's flow and NAT-port quotas within the unreplied-UDP timeout, 120 s).
    flood = [k for k in kinds if k[0] == 'udp_flood']
    schedules = [[kinds, 1.0 / a.rate, start, 0]]
    if flood and a.flood_rate > 0:
        schedules.append([flood, 1.0 / a.flood_rate, start, 0])
    while True:
        now = time.monotonic()
        if now - start >= a.seconds:
            break
        for sched in schedules:
            pool, step, due, i = sched
            while now >= due:
                kind, make = pool[i % len(pool)]
                i += 1
                pkt = make()
                dst = socket.inet_ntoa(pkt[16:20])
                try:
                    raw.sendto(pkt, (dst, 0))
                    sent[kind] += 1
                except OSError:
                    errors += 1
                due += step
                if due < now - 1:
                    due = now  # fell behind (the machine is busy): do not burst to catch up
            sched[2], sched[3] = due, i
        if now >= next_report:
            if wg is not None:
                for _ in range(a.handshake_burst):
                    try:
                        wg.sendto(initiation, wg_to)
                        sent['handshake_flood'] += 1
                    except OSError:
                        errors += 1
                while select.select([wg], [], [], 0)[0]:
                    wg.recv(2048)
                    received += 1
            print(json.dumps({'role': a.role, 'sent': sent, 'received': received, 'errors': errors}), flush=True)
            next_report += REPORT_EVERY_S
        if listen is not None:
            while select.select([listen], [], [], 0)[0]:
                listen.recv(65535)
                received += 1
        wait = min([sc[2] for sc in schedules] + [next_report]) - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.05))
    print(json.dumps({'role': a.role, 'sent': sent, 'received': received, 'errors': errors}), flush=True)


if __name__ == '__main__':
    sys.exit(main())
