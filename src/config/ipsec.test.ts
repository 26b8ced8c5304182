import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ConfigError,
  ConfigIndex,
  loadConfig,
  redact,
  REDACTED,
  stringifyConfig,
  toIkePeerConfig,
  toOnrampSpec,
  validateConfig,
  type IpsecOnrampConfig,
  type TetherConfig,
} from './index.js';
import {
  decodePsk,
  DEFAULT_ESP_PROPOSALS,
  DEFAULT_IKE_PROPOSALS,
  DEFAULT_IPSEC_MTU,
  parseIdentity,
  parseProposal,
  prefixSelector,
} from './ipsec.js';
import { DH_GROUPS, ENCRYPTION_ALGORITHMS, INTEGRITY_ALGORITHMS, PRF_ALGORITHMS } from '../onramp/ipsec/types.js';

const PSK = 'correct horse battery staple';

/** A YAML file with one ipsec onramp whose `ipsec` block is `block` (indented by the caller's lines). */
function file(block: string, extra = ''): string {
  return `onramps:
  - name: branch-ipsec
    type: ipsec
    automatic_return_routing: true
    ipsec:
${block.split('\n').filter((l) => l !== '').map((l) => `      ${l}`).join('\n')}
${extra}`;
}

function problems(text: string): string[] {
  try {
    loadConfig(text, 'ipsec.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems.map((p) => `${p.path}: ${p.message}`);
  }
  assert.fail('expected problems');
}

function onramp(cfg: TetherConfig, i = 0): IpsecOnrampConfig {
  const o = cfg.onramps[i];
  assert.equal(o.type, 'ipsec');
  return o as IpsecOnrampConfig;
}

test('ipsec: a minimal onramp loads with every default filled in', () => {
  const cfg = loadConfig(file(`local_address: 192.168.106.1\nremote_address: 192.168.106.2\npsk: ${PSK}`), 'ipsec.yaml');
  assert.deepEqual(onramp(cfg).ipsec, {
    local_address: '192.168.106.1',
    remote_address: '192.168.106.2',
    psk: PSK,
    mode: 'respond',
    ike_proposals: [...DEFAULT_IKE_PROPOSALS],
    esp_proposals: [...DEFAULT_ESP_PROPOSALS],
    local_ts: ['0.0.0.0/0', '::/0'],
    remote_ts: ['0.0.0.0/0', '::/0'],
    // strongSwan's 4 h / 1 h, over_time 10 %, rand_time = over_time.
    ike_lifetime: { rekey_seconds: 14400, lifetime_seconds: 15840, jitter_seconds: 1440 },
    child_lifetime: { rekey_seconds: 3600, lifetime_seconds: 3960, jitter_seconds: 360 },
    dpd_seconds: 10,
    dpd_timeout_seconds: 30,
    replay_window: 1024,
    force_encapsulation: false,
    mtu: 1406,
  });
  assert.equal(DEFAULT_IPSEC_MTU, 1406, '1500 − 20 IPv4 − 8 UDP − 8 ESP − 16 IV − 32 ICV = 1416 → 1408 (16-byte blocks) − 2 trailer');
  assert.equal(toOnrampSpec(cfg.onramps[0], 7, 3).mtu, 1406, 'the pipeline clamps MSS to the ESP tunnel MTU');
});

test('ipsec: the default proposals parse, and cover strongSwan 5.9.8 and Cloudflare', () => {
  const ike = DEFAULT_IKE_PROPOSALS.map((p) => parseProposal('ike', p));
  const esp = DEFAULT_ESP_PROPOSALS.map((p) => parseProposal('esp', p));
  for (const p of [...ike, ...esp]) assert.ok(p.ok, JSON.stringify(p));
  const ikeAll = ike.flatMap((p) => (p.ok ? [p.value] : []));
  const espAll = esp.flatMap((p) => (p.ok ? [p.value] : []));
  assert.deepEqual(new Set(ikeAll.flatMap((p) => p.encryption)), new Set(ENCRYPTION_ALGORITHMS));
  assert.deepEqual(new Set(ikeAll.flatMap((p) => p.dh)), new Set(DH_GROUPS));
  assert.deepEqual(new Set(ikeAll.flatMap((p) => p.prf)), new Set(PRF_ALGORITHMS));
  // Cloudflare: AES-CBC-256 + SHA-256 and AES-GCM-16; strongSwan's default ESP: AES-CBC + SHA-256, no PFS.
  assert.ok(espAll.some((p) => p.encryption.includes('aes256') && p.integrity.includes('sha256') && p.dh.length === 0));
  assert.ok(espAll.some((p) => p.encryption.includes('aes256gcm16') && p.dh.length === 0));
  assert.ok(espAll.some((p) => p.dh.includes('ecp384')), 'PFS on rekey');
});

test('ipsec: proposals in strongSwan syntax, aliases normalised, errors name the keyword and list the supported ones', () => {
  const gcm = parseProposal('ike', 'AES256GCM128-prfsha2_256-x25519');
  assert.deepEqual(gcm, { ok: true, value: { encryption: ['aes256gcm16'], integrity: [], prf: ['prfsha256'], dh: ['curve25519'] }, text: 'aes256gcm16-prfsha256-curve25519' });
  const cbc = parseProposal('ike', 'aes256-sha256-modp2048');
  assert.deepEqual(cbc.ok && cbc.value, { encryption: ['aes256'], integrity: ['sha256'], prf: ['prfsha256'], dh: ['modp2048'] }, 'PRF taken from the integrity algorithm');
  assert.deepEqual(parseProposal('esp', 'aes128-sha512-ecp384-noesn'), { ok: true, value: { encryption: ['aes128'], integrity: ['sha512'], dh: ['ecp384'] }, text: 'aes128-sha512-ecp384' });
  const bad = (kind: 'ike' | 'esp', text: string): string => {
    const p = kind === 'ike' ? parseProposal('ike', text) : parseProposal('esp', text);
    assert.ok(!p.ok, text);
    return p.error;
  };
  assert.equal(bad('ike', 'aes256-sha1-modp2048'), 'unknown keyword "sha1" in "aes256-sha1-modp2048"; supported: encryption aes128gcm16, aes256gcm16, aes128, aes256; integrity sha256, sha384, sha512; PRF prfsha256, prfsha384, prfsha512; DH modp2048, ecp256, ecp384, curve25519');
  assert.match(bad('esp', '3des-md5'), /^unknown keyword "3des".*PFS \(DH\) modp2048, ecp256, ecp384, curve25519; noesn$/);
  assert.match(bad('ike', 'aes256gcm16-sha256-prfsha256-ecp256'), /aes256gcm16 authenticates on its own .*remove sha256/);
  assert.match(bad('esp', 'aes256'), /^aes256 needs an integrity algorithm \(sha256, sha384, sha512\)$/);
  assert.match(bad('ike', 'aes256gcm16-ecp256'), /^needs a PRF .*no integrity algorithm to take it from$/);
  assert.match(bad('ike', 'aes256-sha256'), /^needs a Diffie-Hellman group/);
  assert.match(bad('esp', 'aes256gcm16-aes256-sha256'), /^mixes AEAD \(aes256gcm16\) and non-AEAD \(aes256\)/);
  assert.match(bad('esp', 'aes256gcm16-esn'), /^esn: extended sequence numbers are not supported/);
  assert.match(bad('esp', 'aes256gcm16-prfsha256'), /belongs in ike_proposals/);
  assert.match(bad('ike', ' '), /^is empty/);
  assert.match(bad('ike', 'sha256-ecp256'), /^has no encryption algorithm/);
});

test('ipsec: proposal parsing agrees with a slow oracle on random keyword lists (property)', () => {
  const keyword = fc.constantFrom(...ENCRYPTION_ALGORITHMS, ...INTEGRITY_ALGORITHMS, ...PRF_ALGORITHMS, ...DH_GROUPS, 'sha1', 'noesn', 'aes192');
  fc.assert(fc.property(fc.constantFrom<'ike' | 'esp'>('ike', 'esp'), fc.array(keyword, { minLength: 1, maxLength: 8 }), (kind, words) => {
    const p = kind === 'ike' ? parseProposal('ike', words.join('-')) : parseProposal('esp', words.join('-'));
    // The oracle: the rules written out plainly.
    const known = (w: string): boolean => [...ENCRYPTION_ALGORITHMS, ...INTEGRITY_ALGORITHMS, ...DH_GROUPS].includes(w as never) || (kind === 'ike' ? PRF_ALGORITHMS.includes(w as never) : w === 'noesn');
    const enc = words.filter((w) => ENCRYPTION_ALGORITHMS.includes(w as never));
    const integ = words.filter((w) => INTEGRITY_ALGORITHMS.includes(w as never));
    const prf = words.filter((w) => PRF_ALGORITHMS.includes(w as never));
    const dh = words.filter((w) => DH_GROUPS.includes(w as never));
    const gcm = enc.filter((e) => e.includes('gcm'));
    const valid = words.every(known) && enc.length > 0 && (gcm.length === 0 || gcm.length === enc.length)
      && (gcm.length > 0 ? integ.length === 0 : integ.length > 0)
      && (kind === 'esp' || ((prf.length > 0 || integ.length > 0) && dh.length > 0));
    assert.equal(p.ok, valid, `${kind} ${words.join('-')}: ${p.ok ? 'ok' : p.error}`);
    if (p.ok) {
      assert.deepEqual(new Set(p.value.encryption), new Set(enc));
      assert.deepEqual(new Set(p.value.dh), new Set(dh));
      // Normalised text parses to the same record (idempotent).
      const again = kind === 'ike' ? parseProposal('ike', p.text) : parseProposal('esp', p.text);
      assert.deepEqual(again, p);
    }
  }));
});

test('ipsec: identities in strongSwan spelling', () => {
  const id = (t: string): unknown => { const p = parseIdentity(t); return p.ok ? [p.value, p.text] : p.error; };
  assert.deepEqual(id('Edge.Example.com'), [{ type: 'fqdn', value: 'edge.example.com' }, 'edge.example.com']);
  assert.deepEqual(id('@edge'), [{ type: 'fqdn', value: 'edge' }, 'edge']);
  assert.deepEqual(id('192.0.2.1'), [{ type: 'ipv4', value: '192.0.2.1' }, '192.0.2.1']);
  assert.deepEqual(id('2001:DB8:0::1'), [{ type: 'ipv6', value: '2001:db8::1' }, '2001:db8::1']);
  assert.deepEqual(id('branch@Example.com'), [{ type: 'rfc822', value: 'branch@example.com' }, 'branch@example.com']);
  assert.deepEqual(id('keyid:#0A1b'), [{ type: 'key-id', value: Uint8Array.from([0x0a, 0x1b]) }, 'keyid:0a1b']);
  assert.match(id('keyid:xyz') as string, /^must be keyid: followed by/);
  assert.match(id('bad name') as string, /^must be an IKE identity/);
  assert.match(id('user@') as string, /user@domain needs a domain name/);
  assert.match(id('2001:db8::g') as string, /not an IPv6 address/);
  fc.assert(fc.property(fc.string(), (s) => { parseIdentity(s); }), { numRuns: 500 });
});

test('ipsec: pre-shared keys as text, 0x hex or 0s base64, at least 16 bytes; errors never quote the key', () => {
  assert.deepEqual(decodePsk('0x00112233445566778899aabbccddeeff'), { ok: true, value: Uint8Array.from(Buffer.from('00112233445566778899aabbccddeeff', 'hex')) });
  assert.deepEqual(decodePsk(`0s${Buffer.alloc(16, 7).toString('base64')}`), { ok: true, value: new Uint8Array(16).fill(7) });
  assert.deepEqual(decodePsk(PSK), { ok: true, value: new TextEncoder().encode(PSK) });
  const secret = 'hunter2-secret';
  const short = decodePsk(secret);
  assert.ok(!short.ok && /is too short: 14 bytes, at least 16/.test(short.error) && !short.error.includes(secret));
  assert.ok(!decodePsk('0xabc').ok);
  assert.ok(!decodePsk('0s!!!!').ok);
  fc.assert(fc.property(fc.string({ minLength: 0, maxLength: 80 }), (s) => {
    const r = decodePsk(s);
    if (!r.ok && s.length >= 6) assert.ok(!r.error.includes(s), 'the key is never echoed');
  }), { numRuns: 500 });
});

test('ipsec: secrets and relations between keys', () => {
  const secret = 'tiny-key-0123';
  const ps = problems(file(`local_address: 192.168.106.1\nremote_address: any\npsk: ${secret}\nmode: initiate\nreplay_window: 16\nike_lifetime: { rekey_seconds: 3600, lifetime_seconds: 3600 }\nchild_lifetime: { rekey_seconds: 600, jitter_seconds: 600 }`));
  assert.deepEqual(ps, [
    'onramps[0].ipsec.psk: is too short: 13 bytes, at least 16 (a random one: "0s" followed by the output of openssl rand -base64 32)',
    "onramps[0].ipsec.remote_address: is required with mode initiate: the site's IPv4 address to connect to (any is for a responder)",
    'onramps[0].ipsec.remote_id: is required when remote_address is any: the site is told apart by the identity it sends',
    'onramps[0].ipsec.ike_lifetime.lifetime_seconds: must be greater than rekey_seconds (3600): the SA must be rekeyed before it is deleted',
    'onramps[0].ipsec.child_lifetime.jitter_seconds: must be less than rekey_seconds (600)',
    'onramps[0].ipsec.replay_window: must be 0 (off) or at least 32 packets (RFC 4303 §3.4.3), got 16',
  ].sort((a, b) => ps.indexOf(a) - ps.indexOf(b)));
  assert.ok(ps.every((p) => !p.includes(secret)));
  assert.deepEqual(problems(file('local_address: 192.168.106.1\nremote_address: 192.168.106.2')), ['onramps[0].ipsec.psk: is required: psk (the pre-shared key) or psk_file (a path)']);
  assert.deepEqual(problems(file(`local_address: 192.168.106.1\nremote_address: 192.168.106.2\npsk: ${PSK}\npsk_file: /etc/k`)), ['onramps[0].ipsec.psk: give psk or psk_file, not both']);
  assert.deepEqual(problems(file(`local_address: 2001:db8::1\nremote_address: 192.168.106.1\npsk: ${PSK}`)), ["onramps[0].ipsec.local_address: must be an IPv4 address (the edge's underlay address), got \"2001:db8::1\""]);
  assert.deepEqual(problems(file(`local_address: 192.168.106.1\nremote_address: 192.168.106.1\npsk: ${PSK}`)), ['onramps[0].ipsec.remote_address: must differ from local_address']);
  assert.deepEqual(problems(file(`local_address: 192.168.106.1\npsk: "${REDACTED}"\nremote_id: branch.example.com`)), ['onramps[0].ipsec.psk: is "(redacted)", but there is no stored key to keep (a new onramp, or a file): give the key itself']);
  assert.deepEqual(problems(file(`local_address: 192.168.106.1\nremote_address: 192.168.106.2\npsk: ${PSK}\nike_proposals: [aes256gcm16-prfsha256-ecp256, aes256-sha1-modp2048]`)).map((p) => p.split(';')[0]), ['onramps[0].ipsec.ike_proposals[1]: unknown keyword "sha1" in "aes256-sha1-modp2048"']);
  // A responder for any address, told apart by identity; lifetimes filled from rekey alone.
  const ok = onramp(loadConfig(file(`local_address: 192.168.106.1\nremote_id: "@branch.example.com"\npsk_file: /etc/tether/branch.psk\nchild_lifetime: { rekey_seconds: 1000 }`), 'x.yaml'));
  assert.equal(ok.ipsec.remote_address, 'any');
  assert.equal(ok.ipsec.remote_id, 'branch.example.com');
  assert.deepEqual(ok.ipsec.child_lifetime, { rekey_seconds: 1000, lifetime_seconds: 1100, jitter_seconds: 100 });
});

test('ipsec: two onramps the edge could not tell apart are refused, in the file and incrementally', () => {
  const two = (a: string, b: string): string => `onramps:
  - { name: a, type: ipsec, automatic_return_routing: true, ipsec: { psk: ${PSK}, ${a} } }
  - { name: b, type: ipsec, automatic_return_routing: true, ipsec: { psk: ${PSK}, ${b} } }
`;
  assert.deepEqual(problems(two('local_address: 192.168.106.1, remote_address: 192.168.106.2', 'local_address: 192.168.106.1, remote_address: 192.168.106.2, remote_id: other')), [
    'onramps[1].ipsec.remote_address: duplicate IPsec peer "192.168.106.1 → 192.168.106.2" (already used at onramps[0].ipsec.remote_address)',
  ]);
  assert.deepEqual(problems(two('local_address: 192.168.106.1, remote_id: site.example', 'local_address: 192.168.106.1, remote_id: "@SITE.example"')), [
    'onramps[1].ipsec.remote_address: duplicate IPsec peer "192.168.106.1 → any, id site.example" (already used at onramps[0].ipsec.remote_address)',
  ]);
  // Distinguishable: another local address, another identity, or one with the site's address.
  loadConfig(two('local_address: 192.168.106.1, remote_id: site.example', 'local_address: 192.168.107.1, remote_id: site.example'), 'x.yaml');
  loadConfig(two('local_address: 192.168.106.1, remote_id: site.example', 'local_address: 192.168.106.1, remote_id: other.example'), 'x.yaml');
  const base = loadConfig(two('local_address: 192.168.106.1, remote_id: site.example', 'local_address: 192.168.106.1, remote_address: 192.168.106.2, remote_id: site.example'), 'x.yaml');
  const index = new ConfigIndex(base);
  const clash = { name: 'c', type: 'ipsec', automatic_return_routing: true, ipsec: { psk: PSK, local_address: '192.168.106.1', remote_id: 'site.example' } };
  assert.equal(index.tryChange({ op: 'insert', kind: 'onramps', index: 2, value: clash }), undefined, 'not decided here: the full validator reports the duplicate');
  const fine = index.tryChange({ op: 'insert', kind: 'onramps', index: 2, value: { ...clash, ipsec: { ...clash.ipsec, remote_id: 'third.example' } } });
  assert.ok(fine !== undefined);
  assert.deepEqual(fine.config, validateConfig({ ...base, onramps: [...base.onramps, { ...clash, ipsec: { ...clash.ipsec, remote_id: 'third.example' } }] }));
});

test('ipsec: redacted on every read; export and import round-trip', () => {
  const cfg = loadConfig(file(`local_address: 192.168.106.1\nremote_address: 192.168.106.2\npsk: ${PSK}\nlocal_id: edge.example.com`), 'ipsec.yaml');
  const red = redact(cfg);
  assert.equal(onramp(red).ipsec.psk, REDACTED);
  assert.equal(onramp(cfg).ipsec.psk, PSK, 'the original is untouched');
  assert.ok(!JSON.stringify(red).includes(PSK));
  assert.deepEqual(loadConfig(stringifyConfig(cfg), 'export.yaml'), cfg);
  const file2 = loadConfig(file('local_address: 192.168.106.1\nremote_address: 192.168.106.2\npsk_file: /etc/tether/k.psk'), 'x.yaml');
  assert.deepEqual(redact(file2), file2, 'a key file path is not a secret');
});

test('ipsec: toIkePeerConfig builds the engine record; the key file is read there, errors name the file', () => {
  const cfg = loadConfig(file(`local_address: 192.168.106.1\nremote_address: 192.168.106.2\npsk_file: /etc/tether/branch.psk\nmode: initiate\nlocal_ts: 100.64.0.0/10\nremote_ts: [10.0.1.0/24, "2001:db8:1::/48"]\nike_proposals: aes256gcm16-prfsha384-ecp384\nesp_proposals: aes256-sha256\nreplay_window: 0`), 'x.yaml');
  const files = new Map([['/etc/tether/branch.psk', new TextEncoder().encode(`${PSK}\n`)]]);
  const read = (path: string): Uint8Array => {
    const b = files.get(path);
    if (b === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return b;
  };
  const peer = toIkePeerConfig(onramp(cfg), 9, read);
  assert.deepEqual(peer, {
    onramp: 9,
    name: 'branch-ipsec',
    localAddress: '192.168.106.1',
    remoteAddress: '192.168.106.2',
    localId: { type: 'ipv4', value: '192.168.106.1' },
    remoteId: { type: 'ipv4', value: '192.168.106.2' },
    psk: new TextEncoder().encode(PSK),
    mode: 'initiate',
    ikeProposals: [{ encryption: ['aes256gcm16'], integrity: [], prf: ['prfsha384'], dh: ['ecp384'] }],
    espProposals: [{ encryption: ['aes256'], integrity: ['sha256'], dh: [] }],
    localTs: [{ family: 4, start: '100.64.0.0', end: '100.127.255.255', protocol: 0, startPort: 0, endPort: 65535 }],
    remoteTs: [
      { family: 4, start: '10.0.1.0', end: '10.0.1.255', protocol: 0, startPort: 0, endPort: 65535 },
      { family: 6, start: '2001:db8:1::', end: '2001:db8:1:ffff:ffff:ffff:ffff:ffff', protocol: 0, startPort: 0, endPort: 65535 },
    ],
    ikeLifetime: { rekeySeconds: 14400, lifetimeSeconds: 15840, jitterSeconds: 1440 },
    childLifetime: { rekeySeconds: 3600, lifetimeSeconds: 3960, jitterSeconds: 360 },
    dpdSeconds: 10,
    dpdTimeoutSeconds: 30,
    replayWindow: 0,
    forceEncapsulation: false,
  });
  files.clear();
  assert.throws(() => toIkePeerConfig(onramp(cfg), 9, read), { message: 'onramp branch-ipsec: cannot read ipsec.psk_file /etc/tether/branch.psk: ENOENT' });
  files.set('/etc/tether/branch.psk', new TextEncoder().encode('short\n'));
  assert.throws(() => toIkePeerConfig(onramp(cfg), 9, read), { message: /^onramp branch-ipsec: the pre-shared key in \/etc\/tether\/branch\.psk is too short: 5 bytes/ });
  // Responder for any address: the engine's 0.0.0.0, the identities as given.
  const any = loadConfig(file(`local_address: 192.168.106.1\npsk: ${PSK}\nremote_id: branch@example.com\nlocal_id: keyid:0102`), 'x.yaml');
  const p2 = toIkePeerConfig(onramp(any), 3);
  assert.equal(p2.remoteAddress, '0.0.0.0');
  assert.deepEqual(p2.remoteId, { type: 'rfc822', value: 'branch@example.com' });
  assert.deepEqual(p2.localId, { type: 'key-id', value: Uint8Array.from([1, 2]) });
});

test('ipsec: a prefix as a selector range agrees with a slow oracle (property)', () => {
  const bits = (n: number): string => (n >>> 0).toString(2).padStart(32, '0');
  fc.assert(fc.property(fc.boolean(), fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 4, maxLength: 4 }), fc.nat(128), (v6, words, len) => {
    const length = v6 ? len : len % 33;
    const all = (v6 ? words : [words[0]]).map(bits).join('');
    // Oracle: keep the first `length` bits, zeros after for the start, ones after for the end.
    const start = all.slice(0, length).padEnd(all.length, '0');
    const end = all.slice(0, length).padEnd(all.length, '1');
    const text = (b: string): string => {
      const ws = b.match(/.{32}/g)!.map((w) => parseInt(w, 2) >>> 0);
      if (!v6) return [ws[0] >>> 24, (ws[0] >>> 16) & 255, (ws[0] >>> 8) & 255, ws[0] & 255].join('.');
      return parseIdentityText(ws);
    };
    const masked = `${text(start)}/${length}`;
    const ts = prefixSelector(masked);
    assert.equal(ts.start, text(start));
    assert.equal(ts.end, text(end));
    assert.equal(ts.family, v6 ? 6 : 4);
  }));
});

/** IPv6 words as text through the identity parser's canonical form (RFC 5952). */
function parseIdentityText(ws: number[]): string {
  const full = ws.map((w) => [(w >>> 16).toString(16), (w & 0xffff).toString(16)].join(':')).join(':');
  const p = parseIdentity(full);
  assert.ok(p.ok);
  return p.text;
}
