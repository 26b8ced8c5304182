#!/usr/bin/python3
"""Writes fuzz/seeds/packets.json: real packets built by Scapy (python3-scapy), the fuzzer's byte seeds.

Run from the repository root: /usr/bin/python3 fuzz/seeds/make-seeds.py
Each entry keeps the Scapy expression that produced it, so a seed can be regenerated or extended.
"""
import json
from scapy.all import IP, IPv6, TCP, UDP, ICMP, GRE, Raw, DNS, DNSQR, fragment, raw
from scapy.layers.inet import IPOption_RR, IPOption_Router_Alert
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6PacketTooBig, ICMPv6DestUnreach, ICMPv6TimeExceeded,
                                IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting, RouterAlert)

site = '10.0.1.10'
server = '203.0.113.10'
pool = '198.51.100.1'
site6 = 'fd00:1::10'
server6 = '2001:db8::10'

syn = IP(src=site, dst=server, id=9, flags='DF')/TCP(sport=40000, dport=443, flags='S', seq=1000,
    options=[('MSS', 1460), ('SAckOK', b''), ('Timestamp', (123456, 0)), ('NOP', None), ('WScale', 7)])
dns = IP(src=site, dst='8.8.8.8', id=0x1c46, flags='DF')/UDP(sport=53535, dport=53)/DNS(rd=1, qd=DNSQR(qname='example.com'))
reply_syn_ack = IP(src=server, dst=pool, flags='DF')/TCP(sport=443, dport=1024, flags='SA', seq=5000, ack=1001,
    options=[('MSS', 1400), ('WScale', 8)])

exprs = {
    'tcp-syn-linux': syn,
    'udp-dns-query': dns,
    'tcp-syn-ack-from-internet': reply_syn_ack,
    'ipv4-options-rr-ra': IP(src=site, dst=server, options=[IPOption_RR(routers=['0.0.0.0'] * 3), IPOption_Router_Alert()])/UDP(sport=5000, dport=53)/b'opts',
    'icmp-echo': IP(src=site, dst=server)/ICMP(type=8, id=0x1234, seq=1)/b'ping',
    'icmp-port-unreachable': IP(src=server, dst=pool)/ICMP(type=3, code=3)/raw(IP(src=pool, dst=server)/UDP(sport=1024, dport=53)/b'q')[:28],
    'icmp-frag-needed-quoting-options': IP(src='192.0.2.254', dst=pool)/ICMP(type=3, code=4, nexthopmtu=1400)/raw(IP(src=pool, dst=server, options=[IPOption_Router_Alert()])/TCP(sport=1024, dport=443, flags='A'))[:32],
    'icmp-time-exceeded-quoting-icmp': IP(src='192.0.2.254', dst=pool)/ICMP(type=11, code=0)/raw(IP(src=pool, dst=server)/ICMP(type=8, id=1024, seq=7)/b'xxxxxxxx'),
    'ipv4-first-fragment': fragment(IP(src=site, dst=server, id=77)/UDP(sport=6000, dport=7000)/(b'a' * 100), fragsize=48)[0],
    'ipv4-middle-fragment': fragment(IP(src=site, dst=server, id=77)/UDP(sport=6000, dport=7000)/(b'a' * 100), fragsize=48)[1],
    'ipv4-last-fragment': fragment(IP(src=site, dst=server, id=77)/UDP(sport=6000, dport=7000)/(b'a' * 100), fragsize=48)[2],
    'ipv6-udp': IPv6(src=site6, dst=server6)/UDP(sport=5353, dport=53)/b'q',
    'ipv6-ext-chain-tcp': IPv6(src=site6, dst=server6)/IPv6ExtHdrHopByHop(options=[RouterAlert()])/IPv6ExtHdrRouting(addresses=[], segleft=0)/IPv6ExtHdrDestOpt()/TCP(sport=40001, dport=443, flags='S', options=[('MSS', 1440)]),
    'ipv6-first-fragment': IPv6(src=site6, dst=server6)/IPv6ExtHdrFragment(offset=0, m=1, id=0xabcd)/UDP(sport=6001, dport=7001, len=120)/(b'b' * 32),
    'ipv6-last-fragment': IPv6(src=site6, dst=server6)/IPv6ExtHdrFragment(offset=5, m=0, id=0xabcd, nh=17)/(b'b' * 72),
    'icmpv6-echo': IPv6(src=site6, dst=server6)/ICMPv6EchoRequest(id=0x99, seq=3, data=b'ping6'),
    'icmpv6-packet-too-big': IPv6(src='2001:db8::1', dst='2001:db8:ee::1')/ICMPv6PacketTooBig(mtu=1280)/raw(IPv6(src='2001:db8:ee::1', dst=server6)/TCP(sport=1024, dport=443, flags='A')/(b'd' * 40)),
    'icmpv6-unreachable-quoting-ext': IPv6(src='2001:db8::1', dst='2001:db8:ee::1')/ICMPv6DestUnreach(code=4)/raw(IPv6(src='2001:db8:ee::1', dst=server6)/IPv6ExtHdrDestOpt()/UDP(sport=1025, dport=53)),
    'icmpv6-time-exceeded-quoting-fragment': IPv6(src='2001:db8::1', dst='2001:db8:ee::1')/ICMPv6TimeExceeded()/raw(IPv6(src='2001:db8:ee::1', dst=server6)/IPv6ExtHdrFragment(m=1, id=5)/UDP(sport=1026, dport=53)/(b'e' * 16)),
    'gre-plain-v4-in-v4': IP(src='198.51.100.2', dst='192.0.2.1', id=1, flags='DF')/GRE()/syn,
    'gre-key-seq-csum-v4-in-v4': IP(src='198.51.100.3', dst='192.0.2.1', id=2, flags='DF')/GRE(chksum_present=1, key_present=1, key=100, seqnum_present=1, seqence_number=7)/dns,
    'gre-key-v6-in-v4': IP(src='198.51.100.3', dst='192.0.2.1', id=3, flags='DF')/GRE(key_present=1, key=200, proto=0x86dd)/IPv6(src=site6, dst=server6)/UDP(sport=5353, dport=53)/b'q',
    'gre-v4-in-v6': IPv6(src='2001:db8:1::2', dst='2001:db8:1::1')/GRE()/dns,
    'gre-keepalive': IP(src='198.51.100.2', dst='192.0.2.1')/GRE()/IP(src='192.0.2.1', dst='198.51.100.2')/GRE(proto=0),
}

out = []
for name, pkt in exprs.items():
    b = raw(pkt)
    out.append({'name': name, 'scapy': repr(pkt) if len(repr(pkt)) < 400 else repr(pkt)[:397] + '...', 'hex': b.hex()})
with open('fuzz/seeds/packets.json', 'w') as f:
    json.dump(out, f, indent=1)
    f.write('\n')
print(len(out), 'seeds')
