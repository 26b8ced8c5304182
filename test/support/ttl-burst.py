#!/usr/bin/python3
"""A burst of expiring probes from a site (the edge's ICMP rate limit, test/e2e/traceroute.test.ts).

Sends COUNT UDP datagrams with TTL 1 from the site's host to DST (one source port each, as traceroute does),
as fast as scapy goes, while sniffing the site's tunnel interface for the ICMP time exceeded that come back.
Prints one JSON line: sent, errors (time exceeded about our probes), sendSeconds (first to last probe).

usage: ttl-burst.py IFACE DST COUNT
"""
import json
import sys
import time

from scapy.all import IP, UDP, ICMP, AsyncSniffer, conf, send  # noqa: E402

# Traceroute's first destination port (RFC 1393's era convention; Debian's traceroute starts there too).
BASE_PORT = 33434
# Wait for the last errors to come back after the last probe (generous: the machine is shared).
DRAIN_SECONDS = 2.0

iface, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conf.verb = 0
probes = [IP(dst=dst, ttl=1) / UDP(sport=40000 + (i % 20000), dport=BASE_PORT) for i in range(count)]
sniffer = AsyncSniffer(iface=iface, filter='icmp and icmp[0] == 11', store=True)
sniffer.start()
time.sleep(0.5)
first = time.monotonic()
send(probes, iface=iface)
last = time.monotonic()
time.sleep(DRAIN_SECONDS)
captured = sniffer.stop()
errors = sum(1 for p in captured if ICMP in p and p[ICMP].type == 11 and p[IP].dst == probes[0][IP].src)
print(json.dumps({'sent': count, 'errors': errors, 'sendSeconds': last - first}))
