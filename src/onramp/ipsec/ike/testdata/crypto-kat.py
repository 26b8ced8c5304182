#!/usr/bin/python3
"""Known answers for src/onramp/ipsec/ike/crypto.test.ts, computed independently of node:crypto's wiring
with Python's hmac/hashlib straight from the text of RFC 7296 (§2.13 prf+, §2.14, §2.15, §2.17, §2.18, §2.23).
Run: /usr/bin/python3 src/onramp/ipsec/ike/testdata/crypto-kat.py > src/onramp/ipsec/ike/testdata/crypto-kat.json
"""
import hashlib, hmac, json

H = {'prfsha256': hashlib.sha256, 'prfsha384': hashlib.sha384, 'prfsha512': hashlib.sha512}
ENCR = {'aes128gcm16': 20, 'aes256gcm16': 36, 'aes128': 16, 'aes256': 32}  # key (+ 4-byte salt for GCM)
INTEG = {None: 0, 'sha256': 32, 'sha384': 48, 'sha512': 64}

def prf(alg, k, s): return hmac.new(k, s, H[alg]).digest()

def prf_plus(alg, k, s, n):
    out, t, i = b'', b'', 1
    while len(out) < n:
        t = prf(alg, k, t + s + bytes([i])); out += t; i += 1
    return out[:n]

def split(suite, skeyseed, ni, nr, spi_i, spi_r):
    d, a, e = H[suite['prf']]().digest_size, INTEG[suite['integrity']], ENCR[suite['encryption']]
    km = prf_plus(suite['prf'], skeyseed, ni + nr + spi_i + spi_r, 3 * d + 2 * a + 2 * e)
    names = [('skD', d), ('skAi', a), ('skAr', a), ('skEi', e), ('skEr', e), ('skPi', d), ('skPr', d)]
    out, at = {}, 0
    for name, n in names:
        out[name] = km[at:at + n].hex() if n else None; at += n
    return out

ni = bytes(range(0x00, 0x20))          # 32-byte Ni
nr = bytes(range(0x80, 0x98))          # 24-byte Nr: the nonces need not be equal in length
shared = bytes((7 * i + 3) & 0xff for i in range(64))
spi_i = bytes.fromhex('0102030405060708')
spi_r = bytes.fromhex('a1a2a3a4a5a6a7a8')
suites = [
    {'encryption': 'aes256gcm16', 'integrity': None, 'prf': 'prfsha256', 'dh': 'ecp256'},
    {'encryption': 'aes256', 'integrity': 'sha256', 'prf': 'prfsha384', 'dh': 'modp2048'},
    {'encryption': 'aes128', 'integrity': 'sha512', 'prf': 'prfsha512', 'dh': 'curve25519'},
]
out = {'ni': ni.hex(), 'nr': nr.hex(), 'shared': shared.hex(), 'spiI': spi_i.hex(), 'spiR': spi_r.hex(), 'ike': [], 'rekey': [], 'child': []}
for s in suites:
    out['ike'].append({'suite': s, 'keys': split(s, prf(s['prf'], ni + nr, shared), ni, nr, spi_i, spi_r)})

# §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the old PRF; new SPIs.
old_sk_d = bytes.fromhex('5a' * 48)
new_spi_i, new_spi_r = bytes.fromhex('1111111111111111'), bytes.fromhex('2222222222222222')
s = suites[0]
out['rekey'].append({'suite': s, 'oldPrf': 'prfsha384', 'oldSkD': old_sk_d.hex(), 'spiI': new_spi_i.hex(), 'spiR': new_spi_r.hex(),
                     'keys': split(s, prf('prfsha384', old_sk_d, shared + ni + nr), ni, nr, new_spi_i, new_spi_r)})

# §2.17: KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr): encr I->R, integ I->R, encr R->I, integ R->I.
sk_d = bytes.fromhex('c3' * 32)
for esp, pfs in [({'encryption': 'aes128gcm16', 'integrity': None}, False),
                 ({'encryption': 'aes256', 'integrity': 'sha256'}, False),
                 ({'encryption': 'aes256gcm16', 'integrity': None}, True)]:
    e, a = ENCR[esp['encryption']], INTEG[esp['integrity']]
    km = prf_plus('prfsha256', sk_d, (shared if pfs else b'') + ni + nr, 2 * (e + a))
    pair = lambda o: {'encryptionKey': km[o:o + e].hex(), 'integrityKey': km[o + e:o + e + a].hex() if a else None}
    out['child'].append({'prf': 'prfsha256', 'skD': sk_d.hex(), 'esp': esp, 'pfs': pfs,
                         'initiatorToResponder': pair(0), 'responderToInitiator': pair(e + a)})

# §2.15: AUTH = prf(prf(psk, "Key Pad for IKEv2"), RealMessage | NonceData | prf(SK_p, RestOfIDPayload))
psk = b'lab-only-psk-0123456789abcdef'
message = bytes((i * 13) & 0xff for i in range(300))
sk_p = bytes.fromhex('9e' * 32)
id_body = bytes([2, 0, 0, 0]) + b'sswa.lab'   # ID_FQDN, reserved, data
out['psk'] = {'prf': 'prfsha256', 'psk': psk.hex(), 'message': message.hex(), 'peerNonce': nr.hex(), 'skP': sk_p.hex(), 'idBody': id_body.hex(),
              'auth': prf('prfsha256', prf('prfsha256', psk, b'Key Pad for IKEv2'), message + nr + prf('prfsha256', sk_p, id_body)).hex()}

# §2.23: SHA-1(SPIi | SPIr | IP | port)
addr, port = bytes([192, 168, 250, 2]), 4500
out['nat'] = {'address': addr.hex(), 'port': port, 'hash': hashlib.sha1(spi_i + spi_r + addr + port.to_bytes(2, 'big')).hexdigest()}
print(json.dumps(out, indent=1))
