#!/usr/bin/python3
# The IPsec site router of the ESP end-to-end test (test/e2e/esp-datapath.test.ts), played by scapy's ESP
# (scapy.layers.ipsec.SecurityAssociation, python3-cryptography) with static keys: run with Debian's
# /usr/bin/python3 inside the peer's namespace.
#
# argv[1]: JSON {iface, local, edge, udp, peerPort, toEdge: SA, fromEdge: SA, server, server6, serverPort, count, wait}
#   SA = {spi, crypt ('AES-GCM' | 'AES-CBC'), ckey (hex; GCM: key ‖ salt), auth (None | 'SHA2-256-128' | ...), akey}
# Sends `count` UDP datagrams from 10.0.1.10 to server:serverPort in ESP (sequence 1..count), as many from
# fd00:1::10 to [server6]:serverPort (IPv6 inside the IPv4 tunnel, sequence 101..), then a replay of
# the first, one with an unknown SPI and one with a flipped bit; sniffs (lfilter: scapy here ignores BPF
# filters) the edge's ESP for `wait` seconds and decrypts it. Prints one JSON line: the inner replies.
import json, sys, time
from scapy.all import IP, IPv6, UDP, Raw, AsyncSniffer, send, conf
from scapy.layers.ipsec import SecurityAssociation, ESP

cfg = json.loads(sys.argv[1])
conf.verb = 0
outer = IP(src=cfg['local'], dst=cfg['edge'])

def sa(d, nat_t):
    return SecurityAssociation(ESP, spi=d['spi'], crypt_algo=d['crypt'], crypt_key=bytes.fromhex(d['ckey']),
                               auth_algo=d['auth'], auth_key=bytes.fromhex(d['akey']) if d['akey'] else None,
                               tunnel_header=outer,
                               nat_t_header=UDP(sport=cfg['peerPort'], dport=4500) if nat_t else None)

to_edge = sa(cfg['toEdge'], cfg['udp'])
from_edge = SecurityAssociation(ESP, spi=cfg['fromEdge']['spi'], crypt_algo=cfg['fromEdge']['crypt'],
                                crypt_key=bytes.fromhex(cfg['fromEdge']['ckey']), auth_algo=cfg['fromEdge']['auth'],
                                auth_key=bytes.fromhex(cfg['fromEdge']['akey']) if cfg['fromEdge']['akey'] else None,
                                tunnel_header=IP(src=cfg['edge'], dst=cfg['local']))
wrong = dict(cfg['toEdge'], spi=0x7e7e7e7e)
stranger = sa(wrong, cfg['udp'])

def from_edge_esp(p):
    if IP not in p or p[IP].src != cfg['edge'] or p[IP].dst != cfg['local']:
        return False
    return p[IP].proto == 50 or (UDP in p and p[UDP].sport == 4500 and len(bytes(p[UDP].payload)) > 8)

sniffer = AsyncSniffer(iface=cfg['iface'], lfilter=from_edge_esp, store=True)
sniffer.start()
time.sleep(0.5)

def inner(n):
    return IP(src='10.0.1.10', dst=cfg['server']) / UDP(sport=41000 + n, dport=cfg['serverPort']) / Raw(('esp-e2e %d' % n).encode())

def inner6(n):
    return IPv6(src='fd00:1::10', dst=cfg['server6']) / UDP(sport=42000 + n, dport=cfg['serverPort']) / Raw(('esp-e2e v6 %d' % n).encode())

first = None
for n in range(1, cfg['count'] + 1):
    p = to_edge.encrypt(inner(n), seq_num=n)
    if first is None:
        first = p
    send(p)
for n in range(1, cfg['count'] + 1):
    send(to_edge.encrypt(inner6(n), seq_num=100 + n))
time.sleep(0.3)
send(first)                                            # replayed
send(stranger.encrypt(inner(90), seq_num=90))          # unknown SPI
bad = bytearray(bytes(to_edge.encrypt(inner(91), seq_num=91)))
bad[-20] ^= 0x01                                       # a flipped bit in the ciphertext / ICV
send(IP(bytes(bad)))
stray = IP(src='10.0.2.99', dst=cfg['server']) / UDP(sport=41099, dport=cfg['serverPort']) / Raw(b'stray')
send(to_edge.encrypt(stray, seq_num=92))               # authentic, from outside the SA's traffic selectors
time.sleep(cfg['wait'])
sniffer.stop()

replies, errors, others = [], [], []
for p in sniffer.results:
    try:
        esp_bytes = bytes(p[IP].payload) if p[IP].proto == 50 else bytes(p[UDP].payload)
        d = from_edge.decrypt(IP(src=cfg['edge'], dst=cfg['local'], proto=50) / ESP(esp_bytes))
        inner_ip = d[IPv6] if IPv6 in d else d[IP] if IP in d else None
        if inner_ip is None or UDP not in d:
            others.append(d.summary())
            continue
        replies.append({'src': inner_ip.src, 'dst': inner_ip.dst, 'sport': d[UDP].sport, 'dport': d[UDP].dport,
                        'payload': bytes(d[UDP].payload).decode(errors='replace'),
                        'encap': 'udp' if p[IP].proto == 17 else 'esp', 'seq': p[ESP].seq if ESP in p else None})
    except Exception as e:  # reported, the test fails on it
        errors.append(repr(e))
print(json.dumps({'replies': replies, 'errors': errors, 'others': others, 'sniffed': len(sniffer.results)}))
