#!/usr/bin/python3
"""GRE site peer for the tether lab (the machines have no kernel GRE).

Run with Debian's /usr/bin/python3 (python3-scapy), inside the GRE site namespace:

  ip netns exec <p>-site-gre /usr/bin/python3 src/lab/gre-peer.py \
      --proto udp --dst 203.0.113.10 --dport 7 --payload hello [--key 1001] [--count 3 --sport-step 1]

Builds inner IPv4 packets (UDP datagram, TCP SYN or ICMP echo request) from --inner-src (default 10.0.1.10),
wraps each in GRE (RFC 2784, optional RFC 2890 key) in an outer IPv4 header --outer-src -> --outer-dst
(default 192.168.103.2 -> 192.168.103.1), sends them through a raw socket, then prints every GRE packet
addressed to --outer-src that arrives within --wait seconds, one JSON object per line:

  {"outer": {"src": ..., "dst": ...}, "key": null, "inner": {"src", "dst", "proto", "sport", "dport",
   "tcp_flags", "payload", "icmp_type", "icmp_code", "quoted": {...}}}

and finally {"sent": N, "received": M}. A raw IPPROTO_GRE socket receives the replies; holding it also
stops this namespace's kernel from answering GRE with ICMP protocol unreachable while the peer runs.
"""
import argparse
import json
import select
import socket
import sys
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import GRE
from scapy.packet import Raw

IPPROTO_GRE = 47


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--outer-src', default='192.168.103.2')
    ap.add_argument('--outer-dst', default='192.168.103.1')
    ap.add_argument('--key', type=int, default=None, help='GRE key (RFC 2890); absent = no key field')
    ap.add_argument('--inner-src', default='10.0.1.10')
    ap.add_argument('--dst', default='203.0.113.10')
    ap.add_argument('--proto', choices=['udp', 'tcp', 'icmp'], default='udp')
    ap.add_argument('--sport', type=int, default=40000)
    ap.add_argument('--dport', type=int, default=7)
    ap.add_argument('--sport-step', type=int, default=0, help='added to the source port (ICMP id) per packet')
    ap.add_argument('--payload', default='', help='UTF-8 payload (UDP, ICMP)')
    ap.add_argument('--inner-hex', default=None, help='send these raw bytes as the inner packet instead')
    ap.add_argument('--count', type=int, default=1)
    ap.add_argument('--interval', type=float, default=0.0, help='seconds between packets')
    ap.add_argument('--wait', type=float, default=2.0, help='seconds to wait for replies after the last packet')
    ap.add_argument('--expect', type=int, default=0, help='stop waiting once this many replies arrived')
    return ap.parse_args()


def build_inner(a, i):
    if a.inner_hex is not None:
        return Raw(bytes.fromhex(a.inner_hex))
    sport = (a.sport + i * a.sport_step) & 0xFFFF
    ip = IP(src=a.inner_src, dst=a.dst, ttl=64)
    if a.proto == 'udp':
        return ip / UDP(sport=sport, dport=a.dport) / Raw(a.payload.encode())
    if a.proto == 'tcp':
        return ip / TCP(sport=sport, dport=a.dport, flags='S', seq=1000 + i, window=64240, options=[('MSS', 1460)])
    return ip / ICMP(type=8, id=sport, seq=i) / Raw(a.payload.encode())


def build_outer(a, inner):
    gre = GRE(proto=0x0800) if a.key is None else GRE(proto=0x0800, key_present=1, key=a.key)
    return bytes(IP(src=a.outer_src, dst=a.outer_dst, proto=IPPROTO_GRE, ttl=64) / gre / inner)


def describe_inner(pkt):
    if not isinstance(pkt, IP):
        return {'raw': bytes(pkt).hex()}
    d = {'src': pkt.src, 'dst': pkt.dst, 'proto': pkt.proto, 'len': pkt.len}
    if pkt.haslayer(TCP) and not pkt.haslayer(ICMP):
        t = pkt[TCP]
        d.update(sport=t.sport, dport=t.dport, tcp_flags=str(t.flags), seq=t.seq, ack=t.ack,
                 options=[[str(k), v if isinstance(v, int) else None] for k, v in t.options])
    elif pkt.haslayer(UDP) and not pkt.haslayer(ICMP):
        u = pkt[UDP]
        d.update(sport=u.sport, dport=u.dport, payload=bytes(u.payload).decode('utf-8', 'replace'))
    elif pkt.haslayer(ICMP):
        c = pkt[ICMP]
        d.update(icmp_type=c.type, icmp_code=c.code)
        if c.type in (0, 8):
            d.update(icmp_id=c.id, icmp_seq=c.seq, payload=bytes(c.payload).decode('utf-8', 'replace'))
        else:
            quoted = c.payload
            if isinstance(quoted, IP) or quoted.haslayer(IP):
                q = quoted if isinstance(quoted, IP) else quoted[IP]
                qd = {'src': q.src, 'dst': q.dst, 'proto': q.proto}
                l4 = bytes(q.payload)
                if q.proto in (6, 17) and len(l4) >= 4:
                    qd.update(sport=int.from_bytes(l4[0:2], 'big'), dport=int.from_bytes(l4[2:4], 'big'))
                d['quoted'] = qd
    return d


def describe(data):
    outer = IP(data)
    out = {'outer': {'src': outer.src, 'dst': outer.dst}, 'key': None, 'inner': None}
    if not outer.haslayer(GRE):
        out['raw'] = data.hex()
        return out
    g = outer[GRE]
    out['key'] = g.key if g.key_present else None
    out['gre_proto'] = g.proto
    out['inner'] = describe_inner(g.payload)
    return out


def main():
    a = parse_args()
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # implies IP_HDRINCL
    sent = 0
    for i in range(a.count):
        tx.sendto(build_outer(a, build_inner(a, i)), (a.outer_dst, 0))
        sent += 1
        if a.interval > 0 and i + 1 < a.count:
            time.sleep(a.interval)
    received = 0
    deadline = time.monotonic() + a.wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or (a.expect and received >= a.expect):
            break
        ready, _, _ = select.select([rx], [], [], left)
        if not ready:
            break
        data = rx.recv(65535)
        if len(data) < 20 or socket.inet_ntoa(data[16:20]) != a.outer_src:
            continue  # GRE for another endpoint of this namespace
        received += 1
        print(json.dumps(describe(data)), flush=True)
    print(json.dumps({'sent': sent, 'received': received}), flush=True)


if __name__ == '__main__':
    try:
        main()
    except PermissionError as e:
        sys.exit(f'gre-peer: raw sockets need root (CAP_NET_RAW): {e}')
