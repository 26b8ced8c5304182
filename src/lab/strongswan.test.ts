/**
 * The strongSwan rig's pure parts: swanctl.conf generation and the list-sas parser (swanctl --list-sas --pretty),
 * against text charon printed here and against a slow oracle (fast-check: any tree of sections, lists and values
 * printed the way swanctl prints it parses back to the same tree).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ikeSasFromVici, parsePrettyVici, swanctlConf, swanIdentity } from './strongswan.js';

/** swanctl --list-sas --pretty from strongSwan 5.9.8 here (two-charon rig, after an initiate), a CBC child rekeyed with PFS. */
const LIST_SAS = `list-sa event {
  site {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 192.168.77.1
    local-port = 4500
    local-id = a.lab
    remote-host = 192.168.77.2
    remote-port = 4500
    remote-id = 192.168.77.2
    initiator = yes
    initiator-spi = 283c717152c4052b
    responder-spi = 8d762ea0973a79d1
    nat-remote = yes
    nat-any = yes
    encr-alg = AES_GCM_16
    encr-keysize = 256
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = ECP_256
    established = 0
    rekey-time = 14400
    child-sas {
      lan-1 {
        name = lan
        uniqueid = 1
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = 6199ad65
        spi-out = 453d8e69
        encr-alg = AES_CBC
        encr-keysize = 256
        integ-alg = HMAC_SHA2_256_128
        dh-group = MODP_2048
        bytes-in = 252
        packets-in = 3
        bytes-out = 276
        packets-out = 3
        rekey-time = 3600
        life-time = 3960
        install-time = 0
        local-ts = [
          10.60.1.1/32
        ]
        remote-ts = [
          0.0.0.0/0
          ::/0
        ]
      }
    }
  }
}
list-sas reply {
}`;

test('list-sas (pretty) parses into the typed shape: state, SPIs, algorithms, counters, selectors', () => {
  const sas = ikeSasFromVici(parsePrettyVici(LIST_SAS));
  assert.equal(sas.length, 1);
  const [ike] = sas;
  assert.equal(ike.name, 'site');
  assert.equal(ike.state, 'ESTABLISHED');
  assert.equal(ike.initiator, true);
  assert.equal(ike.spiI, '283c717152c4052b');
  assert.equal(ike.spiR, '8d762ea0973a79d1');
  assert.equal(ike.remoteId, '192.168.77.2');
  assert.equal(ike.remotePort, 4500);
  assert.equal(ike.natRemote, true);
  assert.equal(ike.natLocal, false);
  assert.equal(ike.algorithms, 'AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256');
  assert.equal(ike.rekeyInSeconds, 14400);
  assert.equal(ike.children.length, 1);
  const [child] = ike.children;
  assert.equal(child.name, 'lan');
  assert.equal(child.state, 'INSTALLED');
  assert.equal(child.spiIn, '6199ad65');
  assert.equal(child.spiOut, '453d8e69');
  assert.equal(child.encap, true);
  assert.equal(child.algorithms, 'AES_CBC_256/HMAC_SHA2_256_128/MODP_2048');
  assert.equal(child.integrity, 'HMAC_SHA2_256_128');
  assert.equal(child.dhGroup, 'MODP_2048');
  assert.deepEqual([child.bytesIn, child.packetsIn, child.bytesOut, child.packetsOut], [252, 3, 276, 3]);
  assert.deepEqual(child.localTs, ['10.60.1.1/32']);
  assert.deepEqual(child.remoteTs, ['0.0.0.0/0', '::/0']);
});

test('list-sas with no SA, and garbage, parse to nothing rather than throwing', () => {
  assert.deepEqual(ikeSasFromVici(parsePrettyVici('list-sas reply {\n}\n')), []);
  assert.deepEqual(ikeSasFromVici(parsePrettyVici('}\n]\n = x\n{\n')), []);
});

type Tree = { [k: string]: string | string[] | Tree };

function printPretty(name: string, t: Tree, depth: number): string[] {
  const pad = '  '.repeat(depth);
  const out = [`${pad}${name} {`];
  for (const [k, v] of Object.entries(t)) {
    if (typeof v === 'string') out.push(`${pad}  ${k} = ${v}`);
    else if (Array.isArray(v)) out.push(`${pad}  ${k} = [`, ...v.map((x) => `${pad}    ${x}`), `${pad}  ]`);
    else out.push(...printPretty(k, v, depth + 1));
  }
  out.push(`${pad}}`);
  return out;
}

test('property: any tree of sections, lists and values printed as swanctl --pretty does parses back to itself', () => {
  const key = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
  // Values are the rest of the line (spaces inside allowed); list items one a line, never "]" alone.
  const value = fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/).filter((v) => v !== ']' && v !== '}' && !v.endsWith('{') && !v.endsWith('['));
  const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
    tree: fc.dictionary(key, fc.oneof({ depthSize: 'small' }, value, fc.array(value, { maxLength: 4 }), tie('tree')), { maxKeys: 5 }),
  }));
  fc.assert(fc.property(tree, (t) => {
    const text = `${printPretty('list-sa event', t, 0).join('\n')}\n`;
    assert.deepEqual(parsePrettyVici(text), [JSON.parse(JSON.stringify(t)) as Tree]);
  }));
});

test('identities: FQDN and e-mail with their type prefix, addresses bare (strongSwan parses them to bytes), key IDs as hex', () => {
  assert.equal(swanIdentity({ type: 'fqdn', value: '10.0.0.1' }), 'fqdn:10.0.0.1');
  assert.equal(swanIdentity({ type: 'email', value: 'a@b.example' }), 'email:a@b.example');
  assert.equal(swanIdentity({ type: 'ipv4', value: '192.0.2.1' }), '192.0.2.1');
  assert.equal(swanIdentity({ type: 'ipv6', value: '2001:db8::1' }), '2001:db8::1');
  assert.equal(swanIdentity({ type: 'keyid', value: '0a0b' }), 'keyid:#0a0b');
  assert.throws(() => swanIdentity({ type: 'ipv4', value: 'example.com' }), /not an ipv4 address/);
  assert.throws(() => swanIdentity({ type: 'keyid', value: 'xyz' }), /hex bytes expected/);
});

test('swanctl.conf: proposals, selectors, lifetimes, DPD and the secret as given; a quote in the PSK is escaped', () => {
  const conf = swanctlConf({
    name: 'x', namespace: 'ns', runDir: '/var/tmp/x', localAddress: '192.0.2.1', remoteAddress: '%any', role: 'responder',
    localId: { type: 'fqdn', value: 'edge.example' }, remoteId: { type: 'keyid', value: '0102' }, psk: 'p"s\\k',
    ikeProposals: ['aes128-sha256-prfsha256-modp2048', 'aes256gcm16-prfsha384-ecp384'], espProposals: ['aes256-sha256-curve25519'],
    localTs: ['0.0.0.0/0', '::/0'], remoteTs: ['10.0.1.0/24'], ikeLifetime: { rekeySeconds: 600, overOrLifeSeconds: 60, randSeconds: 5 },
    childLifetime: { rekeySeconds: 300, overOrLifeSeconds: 330 }, dpdDelaySeconds: 3, startAction: 'trap',
  });
  for (const line of [
    'proposals = aes128-sha256-prfsha256-modp2048, aes256gcm16-prfsha384-ecp384', 'esp_proposals = aes256-sha256-curve25519',
    'local_ts = 0.0.0.0/0, ::/0', 'remote_ts = 10.0.1.0/24', 'remote_addrs = %any', 'dpd_delay = 3s', 'start_action = trap',
    'rekey_time = 600s', 'over_time = 60s', 'rand_time = 5s', 'rekey_time = 300s', 'life_time = 330s', 'id = "fqdn:edge.example"', 'id = "keyid:#0102"',
    'secret = "p\\"s\\\\k"', 'dpd_action = clear', 'close_action = none',
  ]) assert.ok(conf.includes(line), `missing "${line}" in:\n${conf}`);
});
