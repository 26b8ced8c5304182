#!/usr/bin/python3
# The server side of the IP-id end-to-end test (test/e2e/ip-id.test.ts): a plain UDP socket inside the
# server's namespace, so the server's own kernel reassembles the fragments (RFC 791 section 3.2).
#
# argv: PORT COUNT TIMEOUT_SECONDS
# Prints {"ready": true}, then one JSON line per datagram received: the sender's address and port, the
# length, the first line of the payload ("<site> <sha256>") and whether the rest hashes to that sha256;
# exits after COUNT datagrams or TIMEOUT_SECONDS, printing {"done": true, "received": N}.
import hashlib, json, socket, sys, time

port, count, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', port))
print(json.dumps({'ready': True}), flush=True)
deadline = time.time() + timeout
received = 0
while received < count and time.time() < deadline:
    s.settimeout(max(deadline - time.time(), 0.01))
    try:
        data, (addr, sport) = s.recvfrom(65535)
    except socket.timeout:
        break
    received += 1
    head, _, body = data.partition(b'\n')
    parts = head.decode(errors='replace').split(' ')
    declared = parts[1] if len(parts) > 1 else ''
    print(json.dumps({'from': addr, 'port': sport, 'length': len(data), 'site': parts[0],
                      'intact': hashlib.sha256(body).hexdigest() == declared}), flush=True)
print(json.dumps({'done': True, 'received': received}), flush=True)
