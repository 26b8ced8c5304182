#!/usr/bin/python3
# Hostile DNS datagrams for test/e2e/gateway-dns.test.ts, sent with scapy (Debian's /usr/bin/python3) from a
# site's namespace: argv DST SPORT; stdin: JSON list of hex payloads, each sent once to DST:53 from
# SPORT, SPORT+1, ... (one flow each). Prints the number sent.
import json, sys
from scapy.all import IP, UDP, Raw, conf, send

conf.verb = 0
dst, sport = sys.argv[1], int(sys.argv[2])
payloads = json.load(sys.stdin)
for i, h in enumerate(payloads):
    send(IP(dst=dst) / UDP(sport=sport + i, dport=53) / Raw(load=bytes.fromhex(h)))
print(len(payloads))
