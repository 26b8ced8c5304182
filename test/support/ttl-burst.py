#!/usr/bin/python3
"""A burst of expiring probes from a site (the edge's ICMP rate limit, test/e2e/traceroute.test.ts).

Sends COUNT UDP datagrams with TTL 1 from the site's host to DST (one source port each, as traceroute does),
in bursts of BURST from plain sockets opened beforehand, while sniffing the site's tunnel interface for the ICMP
time exceeded that come back. Not scapy's send(): under load (load 20) it took 8 s for 500 probes, slower than the
edge's rate, and nothing was rate-limited. Prints one JSON line: sent, errors (time exceeded about our probes),
sendSeconds (first to last probe).

usage: ttl-burst.py IFACE DST COUNT
"""
import json
import socket
import sys
import time

from scapy.all import IP, ICMP, AsyncSniffer, conf  # noqa: E402

# Traceroute's first destination port (RFC 1393's era convention; Debian's traceroute starts there too).
BASE_PORT = 33434
BASE_SOURCE_PORT = 40000
# Probes sent back to back, then a short pause: far above the edge's 100/s, never more than the site's tunnel
# queues (wireguard-go's TUN: 500 packets) take at once.
BURST = 50
PAUSE_SECONDS = 0.005
# Wait for the last errors to come back after the last probe (generous: the machine is shared).
DRAIN_SECONDS = 2.0

iface, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conf.verb = 0
socks = []
for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    s.bind(('', BASE_SOURCE_PORT + i))
    socks.append(s)
# The source address the kernel picks toward dst (the errors come back to it).
route = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
route.connect((dst, BASE_PORT))
source = route.getsockname()[0]
route.close()
sniffer = AsyncSniffer(iface=iface, filter='icmp and icmp[0] == 11', store=True)
sniffer.start()
time.sleep(0.5)
sent = 0
first = time.monotonic()
for i, s in enumerate(socks):
    try:
        s.sendto(b'', (dst, BASE_PORT))
        sent += 1
    except OSError:
        pass  # a full queue (ENOBUFS): not sent, not counted
    if i % BURST == BURST - 1:
        time.sleep(PAUSE_SECONDS)
last = time.monotonic()
time.sleep(DRAIN_SECONDS)
captured = sniffer.stop()
errors = sum(1 for p in captured if ICMP in p and p[ICMP].type == 11 and p[IP].dst == source)
print(json.dumps({'sent': sent, 'errors': errors, 'sendSeconds': last - first}))
