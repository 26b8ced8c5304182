#!/usr/bin/python3
# The hostile sender of test/e2e/ipsec-hostile.test.ts, run inside the IPsec site's router namespace (site-d's
# underlay): raw IPv4 sockets (IP_HDRINCL), so source addresses and ports are whatever the test says, and an
# AF_PACKET socket to capture what the site's own strongSwan sends. Standard library only (scapy's sender is
# ~100× slower per packet; the flood needs thousands).
#
# argv[1] = command, its JSON on stdin (a mutant list outgrows one argument's 128 KiB); prints one JSON line.
#   send      {packets: [{src, dst, proto: 17|50, sport?, dport?, hex}], repeat?, burst?, pauseMs?}
#             → {sent}
#   capture   {iface, src, dst, kind: 'ike500' | 'ike4500' | 'esp4500', max, seconds}
#             prints {"ready": true} once listening, then {packets: [{sport, dport, hex}]} (UDP payloads) when it
#             has `max`, or when stdin closes (the test's traffic is over) and nothing more is queued; `seconds` only
#             bounds a test that never closes it (a fixed window ended before a loaded machine's traffic did)
#   initflood {src, dst, init (hex IKE_SA_INIT request), count, portBase, echoCookies, seconds, burst?, pauseMs?}
#             sends `count` copies of `init`, each from its own source port with its own SPIi; with echoCookies,
#             answers every COOKIE notify (RFC 7296 §2.6) by resending the request with the cookie first.
#             → {sent, cookiesEchoed, replies: {cookie, init_response, notify_<type>, other}}
import json, os, random, select, socket, struct, sys, time

IKE_PORT, NAT_T_PORT = 500, 4500
IKE_HEADER = 28
NOTIFY_COOKIE = 16390
PAYLOAD_NOTIFY = 41
FLAG_RESPONSE = 0x20
ETH_P_ALL = 0x0003
ETH_HEADER = 14


def checksum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def ipv4(src, dst, proto, payload):
    # The kernel fills in the total length and header checksum of an IP_HDRINCL packet (raw(7)); DF set, as a
    # real IKE/ESP sender does.
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), random.getrandbits(16), 0x4000, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def udp(src, dst, sport, dport, data):
    length = 8 + len(data)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 17, length)
    c = checksum(pseudo + struct.pack('!HHHH', sport, dport, length, 0) + data) or 0xffff
    return struct.pack('!HHHH', sport, dport, length, c) + data


def packet(p):
    data = bytes.fromhex(p['hex'])
    if p.get('proto', 17) == 50:
        return ipv4(p['src'], p['dst'], 50, data)
    return ipv4(p['src'], p['dst'], 17, udp(p['src'], p['dst'], p['sport'], p['dport'], data))


def raw_sender():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return s


class Pacer:
    # Bursts with a pause between them: the edge's underlay TUN queue is finite, and a drop there would be the
    # kernel's (uncounted by tether), not tether's.
    def __init__(self, cfg):
        self.burst, self.pause, self.n = cfg.get('burst', 64), cfg.get('pauseMs', 5) / 1000, 0

    def tick(self):
        self.n += 1
        if self.n % self.burst == 0:
            time.sleep(self.pause)


def cmd_send(cfg):
    s, pacer, sent = raw_sender(), Pacer(cfg), 0
    pkts = [(packet(p), p['dst']) for p in cfg['packets']]
    for _ in range(cfg.get('repeat', 1)):
        for b, dst in pkts:
            s.sendto(b, (dst, 0))
            sent += 1
            pacer.tick()
    return {'sent': sent}


def udp_of_frame(frame):
    if len(frame) < ETH_HEADER + 28 or frame[12:14] != b'\x08\x00':
        return None
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0f) * 4
    if ip[9] != 17 or len(ip) < ihl + 8:
        return None
    total = struct.unpack('!H', ip[2:4])[0]
    sport, dport = struct.unpack('!HH', ip[ihl:ihl + 4])
    return socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), sport, dport, bytes(ip[ihl + 8:total])


def cmd_capture(cfg):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((cfg['iface'], 0))
    print(json.dumps({'ready': True}), flush=True)
    out, deadline = [], time.time() + cfg['seconds']
    stdin = sys.stdin.fileno()
    listening = [s, stdin]
    while len(out) < cfg['max']:
        left = deadline - time.time()
        if left <= 0:
            break
        # Once stdin is closed only the frames already queued count: no more waiting.
        r, _, _ = select.select(listening, [], [], left if stdin in listening else 0)
        if stdin in r and os.read(stdin, 4096) == b'':
            listening = [s]
            continue
        if s not in r:
            if stdin in listening:
                continue
            break
        u = udp_of_frame(s.recv(65535))
        if u is None or u[0] != cfg['src'] or u[1] != cfg['dst']:
            continue
        _, _, sport, dport, data = u
        kind = cfg['kind']
        if kind == 'ike500' and dport == IKE_PORT:
            out.append({'sport': sport, 'dport': dport, 'hex': data.hex()})
        elif kind == 'ike4500' and dport == NAT_T_PORT and len(data) > 4 and data[:4] == b'\0\0\0\0':
            out.append({'sport': sport, 'dport': dport, 'hex': data.hex()})
        elif kind == 'esp4500' and dport == NAT_T_PORT and len(data) > 8 and data[:4] != b'\0\0\0\0':
            out.append({'sport': sport, 'dport': dport, 'hex': data.hex()})
    return {'packets': out}


def payload_chain(msg):
    # (type, offset, length) of each payload; stops at the first that does not fit.
    out, np, off = [], msg[16], IKE_HEADER
    while np != 0 and off + 4 <= len(msg):
        length = struct.unpack('!H', msg[off + 2:off + 4])[0]
        if length < 4 or off + length > len(msg):
            break
        out.append((np, off, length))
        np, off = msg[off], off + length
    return out


def with_cookie(msg, cookie):
    # §2.6: the COOKIE notify first, the original payloads after it.
    notify = struct.pack('!BBHBBH', msg[16], 0, 8 + len(cookie), 0, 0, NOTIFY_COOKIE) + cookie
    body = notify + msg[IKE_HEADER:]
    header = bytearray(msg[:IKE_HEADER])
    header[16] = PAYLOAD_NOTIFY
    header[24:28] = struct.pack('!I', IKE_HEADER + len(body))
    return bytes(header) + body


def cmd_initflood(cfg):
    init = bytes.fromhex(cfg['init'])
    snd, pacer = raw_sender(), Pacer(cfg)
    rcv = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    rcv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rcv.setblocking(False)
    sent, echoed, replies, by_spi = 0, 0, {}, {}
    src, dst, base = cfg['src'], cfg['dst'], cfg['portBase']

    def out(msg, port):
        snd.sendto(ipv4(src, dst, 17, udp(src, dst, port, IKE_PORT, msg)), (dst, 0))

    def drain():
        nonlocal echoed
        while True:
            try:
                b = rcv.recv(65535)
            except BlockingIOError:
                return
            ihl = (b[0] & 0x0f) * 4
            if socket.inet_ntoa(b[12:16]) != dst or len(b) < ihl + 8 + IKE_HEADER:
                continue
            sport, dport = struct.unpack('!HH', b[ihl:ihl + 4])
            msg = b[ihl + 8:]
            if sport != IKE_PORT or not (base <= dport < base + cfg['count']) or not (msg[19] & FLAG_RESPONSE):
                continue
            chain = payload_chain(msg)
            first = chain[0] if chain else None
            if first is not None and first[0] == PAYLOAD_NOTIFY:
                ntype = struct.unpack('!H', msg[first[1] + 6:first[1] + 8])[0]
                if ntype == NOTIFY_COOKIE:
                    replies['cookie'] = replies.get('cookie', 0) + 1
                    req = by_spi.get(msg[:8])
                    if cfg['echoCookies'] and req is not None:
                        spisize = msg[first[1] + 5]
                        out(with_cookie(req[0], msg[first[1] + 8 + spisize:first[1] + first[2]]), req[1])
                        echoed += 1
                    continue
                key = 'notify_%d' % ntype
            elif any(p[0] == 33 for p in chain) and msg[8:16] != b'\0' * 8:
                key = 'init_response'  # SA payload and a responder SPI: a half-open SA on the other side
            else:
                key = 'other'
            replies[key] = replies.get(key, 0) + 1

    for i in range(cfg['count']):
        msg = bytearray(init)
        spi = os.urandom(8)
        msg[0:8] = spi
        port = base + i
        by_spi[spi] = (bytes(msg), port)
        out(bytes(msg), port)
        sent += 1
        pacer.tick()
        if i % 32 == 0:
            drain()
    deadline = time.time() + cfg['seconds']
    while time.time() < deadline:
        select.select([rcv], [], [], 0.05)
        drain()
    return {'sent': sent, 'cookiesEchoed': echoed, 'replies': replies}


COMMANDS = {'send': cmd_send, 'capture': cmd_capture, 'initflood': cmd_initflood}

if __name__ == '__main__':
    print(json.dumps(COMMANDS[sys.argv[1]](json.loads(sys.stdin.readline()))), flush=True)
