#!/usr/bin/python3
"""The soak's ICMP traffic from one site's host (src/lab/soak.ts): echo requests to each --target in turn,
--rate per second, each carrying "soak <site> <seq>" (RFC 792: the reply carries the request's data back),
so the host can tell its own replies from another site's. A raw ICMP socket sees every echo reply that reaches
this namespace: a reply naming another site is a misdelivered reply.

Prints one JSON line of cumulative counts per second: {"icmp": {"sent", "ok", "lost", "foreign", "stray"}}.
  ok       replies to this host's own requests
  lost     requests without a reply within --timeout seconds
  foreign  replies naming another site's request (must stay 0)
  stray    echo replies naming no soak request (forged ones that found a mapping of this site)
"""
import argparse
import json
import os
import select
import socket
import struct
import time

from soak_hostile import checksum  # the same directory: Python puts the script's own first on sys.path

ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
IPV4_MIN_HEADER = 20
ICMP_HEADER = 8
REPORT_EVERY_S = 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--site', required=True)
    ap.add_argument('--targets', required=True, help='comma-separated addresses')
    ap.add_argument('--seconds', type=float, required=True)
    ap.add_argument('--rate', type=float, default=5.0)
    ap.add_argument('--timeout', type=float, default=3.0)
    a = ap.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    targets = a.targets.split(',')
    own = ('soak %s ' % a.site).encode()
    counts = {'sent': 0, 'ok': 0, 'lost': 0, 'foreign': 0, 'stray': 0}
    pending = {}
    start = time.monotonic()
    due = start
    next_report = start + REPORT_EVERY_S
    seq = 0
    end = start + a.seconds
    while True:
        now = time.monotonic()
        if now >= end and not pending:
            break
        if now < end and now >= due:
            seq = (seq + 1) & 0xFFFF
            data = own + str(seq).encode()
            msg = struct.pack('!BBHHH', ICMP_ECHO_REQUEST, 0, 0, ident, seq) + data
            msg = msg[:2] + struct.pack('!H', checksum(msg)) + msg[4:]
            try:
                s.sendto(msg, (targets[seq % len(targets)], 0))
                pending[seq] = now
                counts['sent'] += 1
            except OSError:
                counts['lost'] += 1
            due = max(due + 1.0 / a.rate, now - 1)
        for q, t in list(pending.items()):
            if now - t > a.timeout:
                del pending[q]
                counts['lost'] += 1
        if now >= next_report:
            print(json.dumps({'icmp': counts}), flush=True)
            next_report += REPORT_EVERY_S
        ready = select.select([s], [], [], 0.02)[0]
        while ready:
            pkt = s.recv(65535)
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) >= ihl + ICMP_HEADER and pkt[ihl] == ICMP_ECHO_REPLY:
                data = pkt[ihl + ICMP_HEADER:]
                (q,) = struct.unpack('!H', pkt[ihl + 6:ihl + 8])
                if data.startswith(own):
                    if data == own + str(q).encode() and pending.pop(q, None) is not None:
                        counts['ok'] += 1
                elif data.startswith(b'soak '):
                    counts['foreign'] += 1
                else:
                    counts['stray'] += 1
            ready = select.select([s], [], [], 0)[0]
        if now >= end and time.monotonic() - end > a.timeout + 1:
            break
    counts['lost'] += len(pending)
    print(json.dumps({'icmp': counts}), flush=True)


if __name__ == '__main__':
    main()
