#!/usr/bin/python3
# scapy's DNS codec as a second opinion for src/gateway/dns.ts's tests (run with Debian's /usr/bin/python3).
# stdin: JSON {"decode": [hex, ...], "build": [{"id", "qname", "qtype", "rd", "edns"}, ...]}
# stdout: one JSON line {"decoded": [...], "built": [hex, ...]}: each decoded message as
#   {id, qr, opcode, rd, ra, rcode, qd: [{name, type, class}], an: [{name, type, class, ttl, rdata}]}
# with names as scapy reads them (compression followed), or {"error": text} when scapy cannot read it.
import json, sys
from scapy.all import DNS, DNSQR, DNSRR, DNSRROPT, conf

conf.verb = 0
req = json.load(sys.stdin)

def name(n):
    return n.decode('latin1') if isinstance(n, bytes) else str(n)

def records(chain):
    # scapy 2.5 holds a section as a chain of layers (DNSRR / DNSRR / ...), not a list.
    out, i = [], 1
    while chain is not None and chain.getlayer(DNSRR, i) is not None:
        out.append(chain.getlayer(DNSRR, i))
        i += 1
    return out

def decode(h):
    try:
        m = DNS(bytes.fromhex(h))
        qd = [{'name': name(q.qname), 'type': q.qtype, 'class': q.qclass} for q in (m.qd or [])]
        an = [{'name': name(r.rrname), 'type': r.type, 'class': r.rclass, 'ttl': r.ttl, 'rdata': str(r.rdata)} for r in records(m.an)]
        return {'id': m.id, 'qr': m.qr, 'opcode': m.opcode, 'rd': m.rd, 'ra': m.ra, 'rcode': m.rcode,
                'qdcount': m.qdcount, 'ancount': m.ancount, 'qd': qd, 'an': an}
    except Exception as e:  # noqa: BLE001 — the test reports what scapy said
        return {'error': repr(e)}

def build(b):
    m = DNS(id=b['id'], rd=b.get('rd', 1), qd=DNSQR(qname=b['qname'], qtype=b['qtype']))
    if b.get('edns'):
        m.ar = DNSRROPT(rclass=4096)
    return bytes(m).hex()

print(json.dumps({'decoded': [decode(h) for h in req.get('decode', [])], 'built': [build(b) for b in req.get('build', [])]}))
