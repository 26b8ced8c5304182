#!/usr/bin/python3
"""Turns strongswan-keys.sh's captures into strongswan-keys.json: per profile the IKE messages on the link
(UDP payloads in order, the non-ESP marker of port 4500 removed) and what the initiator's charon logged at
"ike 4, chd 4", in log order. Only raw data: crypto-strongswan.test.ts does the protocol work itself.
Usage: /usr/bin/python3 strongswan-keys.py OUTDIR > strongswan-keys.json
"""
import json, os, re, struct, sys

LOGGED = ['shared Diffie Hellman secret', 'SKEYSEED', 'Sk_d secret', 'Sk_ai secret', 'Sk_ar secret', 'Sk_ei secret',
          'Sk_er secret', 'Sk_pi secret', 'Sk_pr secret', "IDx'", 'AUTH = prf(prf(secret, keypad), octets)', 'DH secret',
          'seed', 'encryption initiator key', 'encryption responder key', 'integrity initiator key', 'integrity responder key']
HEAD = re.compile(r'^\S+ \d+\[(?:IKE|CHD)\] (.+?) => (\d+) bytes @')
ROW = re.compile(r'^\S+ \d+\[(?:IKE|CHD)\]\s+\d+: ((?:[0-9A-F]{2} )+)')

def log_values(path):
    out, current, want = [], None, 0
    for line in open(path, encoding='utf8', errors='replace'):
        m = HEAD.match(line)
        if m:
            current = [m.group(1), ''] if m.group(1) in LOGGED else None
            want = int(m.group(2))
            if current is not None:
                out.append(current)
            continue
        r = ROW.match(line)
        if r and current is not None and len(current[1]) < 2 * want:
            current[1] += r.group(1).replace(' ', '').lower()
    return out

def messages(path):
    data = open(path, 'rb').read()
    magic = struct.unpack('<I', data[:4])[0]
    endian = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
    linktype = struct.unpack(endian + 'I', data[20:24])[0]
    at, out = 24, []
    while at + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + 'IIII', data[at:at + 16])
        frame = data[at + 16:at + 16 + caplen]
        at += 16 + caplen
        ip = frame[14:] if linktype == 1 else frame[16:]   # Ethernet or Linux cooked
        if ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        src, dst = '.'.join(map(str, ip[12:16])), '.'.join(map(str, ip[16:20]))
        sport, dport, ulen = struct.unpack('>HHH', ip[ihl:ihl + 6])
        payload = ip[ihl + 8:ihl + ulen]
        if dport == 4500 or sport == 4500:
            if len(payload) < 4 or payload[:4] != b'\0\0\0\0':
                continue   # ESP or a keepalive
            payload = payload[4:]
        out.append({'src': src, 'dst': dst, 'sport': sport, 'dport': dport, 'hex': payload.hex()})
    return out

root = sys.argv[1]
profiles = {}
script = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'strongswan-keys.sh')).read()
for name, ike, esp in re.findall(r'"([a-z0-9-]+)\|([a-z0-9-]+)\|([a-z0-9-]+)"', script):
    d = os.path.join(root, name)
    profiles[name] = {'ike': ike, 'esp': esp, 'messages': messages(os.path.join(d, 'link.pcap')),
                      'logged': log_values(os.path.join(d, 'ikc-a.log'))}
print(json.dumps({'strongswan': '5.9.8', 'psk': 'lab-only-psk-0123456789abcdef', 'initiator': '192.168.251.1',
                  'responder': '192.168.251.2', 'profiles': profiles}, indent=1))
