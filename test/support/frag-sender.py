#!/usr/bin/python3
# The sending site of the IP-id end-to-end test (test/e2e/ip-id.test.ts): run with Debian's /usr/bin/python3
# (python3-scapy) inside a site's namespace.
#
# argv[1]: JSON {src, dst, sport, dport, id, site, bytes, fragsize, at, gap}
# Builds one UDP datagram src:sport -> dst:dport with IPv4 identification `id` and DF clear, whose payload is
# "<site> <sha256 of the body>\n" then `bytes` random bytes; scapy cuts it into fragments of at most `fragsize`
# data bytes (3 for the test's sizes). At wall-clock time `at` (seconds since the epoch: both sites start at
# the same moment) it sends the fragments through a raw socket (IP_HDRINCL: the kernel keeps the id and
# routes each fragment into the site's tunnel as it is), `gap` seconds apart. Prints one JSON line: the
# fragments' sizes, the id, the sha256, and when each fragment left (epoch seconds).
import hashlib, json, os, socket, sys, time
from scapy.all import IP, UDP, Raw, fragment, conf

cfg = json.loads(sys.argv[1])
conf.verb = 0
body = os.urandom(cfg['bytes'])
digest = hashlib.sha256(body).hexdigest()
payload = f"{cfg['site']} {digest}\n".encode() + body
datagram = IP(src=cfg['src'], dst=cfg['dst'], id=cfg['id'], flags=0, ttl=64) / UDP(sport=cfg['sport'], dport=cfg['dport']) / Raw(payload)
fragments = [bytes(f) for f in fragment(datagram, fragsize=cfg['fragsize'])]

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
late = time.time() - cfg['at']
if late < 0:
    time.sleep(-late)
sent_at = []
for i, f in enumerate(fragments):
    if i > 0:
        time.sleep(cfg['gap'])
    s.sendto(f, (cfg['dst'], 0))
    sent_at.append(time.time())
print(json.dumps({'site': cfg['site'], 'id': cfg['id'], 'sha256': digest, 'sizes': [len(f) for f in fragments],
                  'sentAt': sent_at, 'lateBy': max(late, 0)}))
