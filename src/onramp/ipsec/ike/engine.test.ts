import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DH_GROUPS, PRF_ALGORITHMS, INTEGRITY_ALGORITHMS, type IkeProposal, type EspProposal, type IkeSaStatus } from '../types.js';
import { Rig, assertCrosswise, mirror, peerConfig, ADDR_B, type Datagram } from '../../../../test/support/ike-rig.js';
import { CRITICAL_BIT, Exchange, FLAG_INITIATOR, FLAG_RESPONSE, NAT_T_PORT, NotifyType, PayloadType } from './constants.js';
import type { SkCodec } from './crypto.js';
import { buildEncryptedMessage, buildMessage, openEncrypted, parseMessage, type IkeMessage } from './wire.js';
import { IkeDrop } from './ike-drop.js';
import { HALF_OPEN_TIMEOUT_MS, RESTART_DELAY_MS, RETRANSMIT_BASE, RETRANSMIT_TIMEOUT_MS, RETRANSMIT_TRIES } from './engine.js';

const S = 1000;
const active = (s: IkeSaStatus): boolean => s.state !== 'idle';
const exchangeOf = (d: Datagram): number => d.bytes[18];
const isResponse = (d: Datagram): boolean => (d.bytes[19] & FLAG_RESPONSE) !== 0;

function established(rig: Rig): void {
  for (const side of [rig.a, rig.b]) {
    const st = side.engine.status().filter(active);
    assert.equal(st.length, 1, `${side.name}: ${JSON.stringify(st)}`);
    assert.equal(st[0].state, 'established', side.name);
    assert.equal(st[0].children.length, 1, side.name);
  }
  assert.equal(rig.a.sink.live().length, 1);
  assert.equal(rig.b.sink.live().length, 1);
  assertCrosswise(rig.a.sink.live()[0], rig.b.sink.live()[0]);
}

test('A initiates, B responds: one IKE SA, one child each side, keys crosswise, both up', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  established(rig);
  assert.deepEqual(rig.a.sink.states, [{ onramp: 7, up: true, reason: 'established' }]);
  assert.deepEqual(rig.b.sink.states, [{ onramp: 7, up: true, reason: 'established' }]);
  const [sa] = rig.a.engine.status().filter(active);
  assert.equal(sa.role, 'initiator');
  assert.equal(sa.algorithms, 'aes256gcm16-prfsha256-ecp256');
  assert.equal(sa.children[0].algorithms, 'aes128gcm16');
  assert.deepEqual(sa.children[0].localTs, ['0.0.0.0/0', '::/0']);
  assert.equal(rig.b.engine.status().filter(active)[0].role, 'responder');
  assert.equal(sa.natDetected, false);
  assert.deepEqual(rig.a.sink.live()[0].path, { localAddress: 0xc0000201, remoteAddress: 0xc0000202, localPort: 0, remotePort: 0 });
  assert.deepEqual([...rig.a.engine.drops].every((n) => n === 0), true);
  assert.deepEqual([...rig.b.engine.drops].every((n) => n === 0), true);
});

test('the responder matches any remote address (0.0.0.0) by identity, and every identity type works', () => {
  const ids = [
    { type: 'fqdn', value: 'site.example' },
    { type: 'ipv4', value: '192.0.2.1' },
    { type: 'ipv6', value: '2001:db8::1' },
    { type: 'rfc822', value: 'ops@site.example' },
    { type: 'key-id', value: Uint8Array.of(1, 2, 3, 4) },
  ] as const;
  for (const localId of ids) {
    const a = peerConfig({ localId });
    const rig = Rig.pair(a, mirror(a, { remoteAddress: '0.0.0.0' }));
    established(rig);
  }
});

test('a forced encapsulation (strongSwan kernel-libipsec) is seen as a NAT: IKE_AUTH and ESP on port 4500', () => {
  const a = peerConfig({ forceEncapsulation: true });
  const rig = Rig.started(a, mirror(a, { forceEncapsulation: false }));
  const ports: Array<[number, number]> = [];
  rig.run((d) => {
    ports.push([exchangeOf(d), d.localPort]);
    return true;
  });
  established(rig);
  assert.deepEqual(ports, [
    [Exchange.IkeSaInit, 500],
    [Exchange.IkeSaInit, 500],
    [Exchange.IkeAuth, NAT_T_PORT],
    [Exchange.IkeAuth, NAT_T_PORT],
  ]);
  assert.equal(rig.b.engine.status().filter(active)[0].natDetected, true);
  assert.deepEqual(rig.b.sink.live()[0].path.localPort, NAT_T_PORT);
  assert.deepEqual(rig.a.sink.live()[0].path.remotePort, NAT_T_PORT);
  // The SAs behind the NAT are the ones the transport sends NAT-keepalives to (RFC 3948 §2.3), at their 4500 end.
  const natPeers: Array<[number, number, number]> = [];
  rig.b.engine.natPeers((onramp, address, port) => natPeers.push([onramp, address, port]));
  assert.deepEqual(natPeers, [[7, 0xc0000201, NAT_T_PORT]]);
});

test('no NAT, no NAT-keepalive targets', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  established(rig);
  let visited = 0;
  rig.b.engine.natPeers(() => visited++);
  assert.equal(visited, 0);
});

test('status: a peer without an SA shows idle (with its restart time); an established one does not', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a, { ikeProposals: [{ encryption: ['aes128'], integrity: ['sha256'], prf: ['prfsha256'], dh: ['ecp256'] }] }));
  assert.deepEqual(
    rig.a.engine.status().map((s) => [s.state, s.role, s.rekeyAt]),
    [['idle', 'initiator', rig.now + RESTART_DELAY_MS]],
  );
  assert.deepEqual(rig.b.engine.status().map((s) => [s.state, s.role, s.remote]), [['idle', 'responder', '192.0.2.1:500']]);
});

test('updatePeer: timers change in place (SA kept); a new PSK ends the SA and starts over', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  const spi = rig.a.engine.status()[0].spiI;
  rig.a.engine.updatePeer({ ...a, dpdSeconds: 5, childLifetime: { rekeySeconds: 100, lifetimeSeconds: 200, jitterSeconds: 0 } }, rig.now);
  rig.run();
  assert.equal(rig.a.engine.status()[0].spiI, spi);
  assert.equal(rig.a.sink.removed.length, 0);
  const psk = new TextEncoder().encode('rotated');
  rig.b.engine.updatePeer({ ...mirror(a), psk }, rig.now);
  rig.a.engine.updatePeer({ ...a, psk }, rig.now);
  rig.advance(1);
  established(rig);
  assert.notEqual(rig.a.engine.status()[0].spiI, spi);
});

// --- the proposal matrix ------------------------------------------------------------------------------

test('every IKE proposal of the matrix negotiates (encryption × integrity × PRF × DH)', () => {
  const rows: string[] = [];
  const combos: IkeProposal[] = [];
  for (const encryption of ['aes128gcm16', 'aes256gcm16'] as const)
    for (const prf of PRF_ALGORITHMS) for (const dh of DH_GROUPS) combos.push({ encryption: [encryption], integrity: [], prf: [prf], dh: [dh] });
  for (const encryption of ['aes128', 'aes256'] as const)
    for (const integrity of INTEGRITY_ALGORITHMS)
      for (const prf of PRF_ALGORITHMS) for (const dh of DH_GROUPS) combos.push({ encryption: [encryption], integrity: [integrity], prf: [prf], dh: [dh] });
  for (const p of combos) {
    const a = peerConfig({ ikeProposals: [p] });
    const rig = Rig.pair(a, mirror(a));
    established(rig);
    rows.push(rig.b.engine.status().filter(active)[0].algorithms);
  }
  assert.equal(new Set(rows).size, combos.length);
});

test('every ESP proposal of the matrix negotiates (aes128gcm16, aes256gcm16, aes256-sha256), with and without PFS on rekey', () => {
  const esps: EspProposal[] = [
    { encryption: ['aes128gcm16'], integrity: [], dh: [] },
    { encryption: ['aes256gcm16'], integrity: [], dh: [] },
    { encryption: ['aes256'], integrity: ['sha256'], dh: [] },
    { encryption: ['aes256'], integrity: ['sha256'], dh: ['curve25519'] },
    { encryption: ['aes128gcm16'], integrity: [], dh: ['modp2048'] },
  ];
  for (const esp of esps) {
    const a = peerConfig({ espProposals: [esp] });
    const rig = Rig.pair(a, mirror(a));
    established(rig);
    const expected = [esp.encryption[0], ...esp.integrity].join('-');
    assert.equal(rig.a.engine.status().filter(active)[0].children[0].algorithms, expected);
    assert.equal(rig.a.sink.live()[0].inbound.integrityKey === null, esp.integrity.length === 0);
    // The rekey carries the PFS group.
    rig.advance(1800 * S);
    established(rig);
    assert.equal(rig.a.engine.status().filter(active)[0].children[0].algorithms, [expected, ...esp.dh].join('-'));
  }
});

test('the responder follows the initiator\'s preference among several proposals', () => {
  const a = peerConfig({
    ikeProposals: [
      { encryption: ['aes128'], integrity: ['sha384'], prf: ['prfsha384'], dh: ['ecp256'] },
      { encryption: ['aes256gcm16'], integrity: [], prf: ['prfsha256'], dh: ['ecp256'] },
    ],
  });
  const rig = Rig.pair(a, mirror(a, { ikeProposals: [...a.ikeProposals].reverse() }));
  established(rig);
  assert.equal(rig.b.engine.status().filter(active)[0].algorithms, 'aes128-sha384-prfsha384-ecp256');
});

// --- refusals -----------------------------------------------------------------------------------------

test('INVALID_KE_PAYLOAD: the initiator retries with the group the responder asks for', () => {
  const a = peerConfig({ ikeProposals: [{ encryption: ['aes256gcm16'], integrity: [], prf: ['prfsha256'], dh: ['ecp256', 'curve25519'] }] });
  const rig = Rig.pair(a, mirror(a, { ikeProposals: [{ encryption: ['aes256gcm16'], integrity: [], prf: ['prfsha256'], dh: ['curve25519'] }] }));
  established(rig);
  assert.equal(rig.b.engine.drops[IkeDrop.InvalidKe], 1);
  assert.equal(rig.a.engine.status().filter(active)[0].algorithms, 'aes256gcm16-prfsha256-curve25519');
});

test('NO_PROPOSAL_CHOSEN: nothing established, the initiator tries again after RESTART_DELAY_MS', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a, { ikeProposals: [{ encryption: ['aes128'], integrity: ['sha256'], prf: ['prfsha256'], dh: ['ecp256'] }] }));
  assert.equal(rig.b.engine.drops[IkeDrop.NoProposal], 1);
  assert.equal(rig.a.engine.drops[IkeDrop.PeerError], 1);
  assert.deepEqual(rig.a.engine.status().filter(active), []);
  assert.deepEqual(rig.b.engine.status().filter(active), []);
  assert.equal(rig.a.engine.nextDeadline(), rig.now + RESTART_DELAY_MS);
  rig.advance(RESTART_DELAY_MS);
  assert.equal(rig.b.engine.drops[IkeDrop.NoProposal], 2);
});

test('no ESP overlap: NO_PROPOSAL_CHOSEN for the child; the initiator ends the IKE SA, nobody goes up', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a, { espProposals: [{ encryption: ['aes256'], integrity: ['sha512'], dh: [] }] }));
  assert.equal(rig.b.engine.drops[IkeDrop.NoProposal], 1);
  assert.equal(rig.a.sink.installs.length + rig.b.sink.installs.length, 0);
  assert.deepEqual(rig.a.sink.states, [{ onramp: 7, up: false, reason: 'no child SA (proposal or selectors refused)' }]);
  assert.deepEqual(rig.b.sink.states, [{ onramp: 7, up: false, reason: 'deleted' }]);
  assert.deepEqual(rig.a.engine.status().filter(active), []);
  assert.deepEqual(rig.b.engine.status().filter(active), []);
});

test('wrong PSK: AUTHENTICATION_FAILED, the responder keeps nothing, never up', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a, { psk: new TextEncoder().encode('another secret') }));
  assert.equal(rig.b.engine.drops[IkeDrop.AuthFailed], 1);
  assert.deepEqual(rig.b.engine.status().filter(active), []);
  assert.deepEqual(rig.a.engine.status().filter(active), []);
  assert.equal(rig.b.sink.installs.length + rig.a.sink.installs.length, 0);
  // Health learns why, once: the retries do not repeat it.
  assert.deepEqual(rig.b.sink.states, [{ onramp: 7, up: false, reason: 'authentication failed' }]);
  assert.deepEqual(rig.a.sink.states, [{ onramp: 7, up: false, reason: 'peer: authentication failed' }]);
  assert.equal(rig.a.engine.drops[IkeDrop.PeerError], 1);
  rig.advance(3 * RESTART_DELAY_MS);
  assert.equal(rig.b.engine.drops[IkeDrop.AuthFailed], 4);
  assert.equal(rig.a.sink.states.length + rig.b.sink.states.length, 2);
});

test('a peer removed while its SA is half-open is not authenticated afterwards', () => {
  const a = peerConfig();
  const rig = Rig.started(a, mirror(a));
  rig.deliver(rig.inFlight.shift() as Datagram); // IKE_SA_INIT request → B half-open
  rig.b.engine.removePeer(7, rig.now); // its only candidate gone, the half-open SA goes too
  assert.deepEqual(rig.b.engine.status(), []);
  rig.run();
  assert.equal(rig.b.engine.drops[IkeDrop.UnknownSpi], 1);
  assert.deepEqual(rig.b.sink.installs, []);
  assert.deepEqual(rig.b.engine.status(), []);
});

test('an unknown identity is refused like a wrong PSK', () => {
  const a = peerConfig({ localId: { type: 'fqdn', value: 'stranger.example' } });
  const rig = Rig.pair(a, mirror(a, { remoteId: { type: 'fqdn', value: 'a.example' } }));
  assert.equal(rig.b.engine.drops[IkeDrop.UnknownPeer], 1);
  assert.deepEqual(rig.b.engine.status().filter(active), []);
});

test('traffic selectors: the responder narrows a wider proposal to its configured ones', () => {
  const narrow = { family: 4 as const, start: '10.0.1.0', end: '10.0.1.255', protocol: 0, startPort: 0, endPort: 65535 };
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a, { remoteTs: [narrow] }));
  established(rig);
  assert.deepEqual(rig.b.engine.status().filter(active)[0].children[0].remoteTs, ['10.0.1.0/24']);
  assert.deepEqual(rig.a.engine.status().filter(active)[0].children[0].localTs, ['10.0.1.0/24']);
  assert.deepEqual(rig.a.engine.status().filter(active)[0].children[0].remoteTs, ['0.0.0.0/0', '::/0']);
  // The data path gets the narrowed selectors with the SA, for its inbound check (RFC 4301 §5.2 step 4).
  assert.deepEqual(rig.b.sink.installs[0]!.selectors.remote, [narrow]);
  assert.deepEqual(rig.a.sink.installs[0]!.selectors.local, [narrow]);
});

// --- retransmission, message IDs ----------------------------------------------------------------------

test('a lost IKE_AUTH request is retransmitted after RETRANSMIT_TIMEOUT_MS', () => {
  const a = peerConfig();
  const rig = Rig.started(a, mirror(a));
  let dropped = 0;
  rig.run((d) => !(exchangeOf(d) === Exchange.IkeAuth && !isResponse(d) && dropped++ === 0));
  assert.equal(rig.a.engine.nextDeadline(), rig.now + RETRANSMIT_TIMEOUT_MS);
  rig.advance(RETRANSMIT_TIMEOUT_MS);
  established(rig);
});

test('a lost IKE_AUTH response: the retransmitted request gets the cached response, nothing is done twice', () => {
  const a = peerConfig();
  const rig = Rig.started(a, mirror(a));
  let dropped = 0;
  rig.run((d) => !(exchangeOf(d) === Exchange.IkeAuth && isResponse(d) && dropped++ === 0));
  rig.advance(RETRANSMIT_TIMEOUT_MS);
  established(rig);
  assert.equal(rig.b.engine.drops[IkeDrop.Retransmit], 1);
  assert.equal(rig.b.sink.installs.length, 1);
});

test('a retransmitted IKE_SA_INIT gets the same response, no second SA', () => {
  const a = peerConfig();
  const rig = Rig.started(a, mirror(a));
  const init = rig.inFlight.shift() as Datagram;
  rig.deliver(init);
  rig.deliver(init);
  assert.equal(rig.inFlight.length, 2);
  assert.deepEqual(rig.inFlight[0].bytes, rig.inFlight[1].bytes);
  assert.equal(rig.b.engine.drops[IkeDrop.Retransmit], 1);
  assert.equal(rig.b.engine.status().filter(active).length, 1);
  rig.run();
  established(rig);
  assert.equal(rig.a.engine.drops[IkeDrop.UnexpectedResponse], 1); // the second copy of the answer
});

test('initiate on a peer that already has an IKE SA (being set up, or up) starts no second one', () => {
  const a = peerConfig();
  const rig = Rig.started(a, mirror(a));
  // The poll after addPeer (mode 'initiate') sent the first IKE_SA_INIT; an operator's initiate right after adds none.
  rig.a.engine.initiate(a.onramp, rig.now);
  assert.equal(rig.inFlight.length, 1);
  rig.run();
  established(rig);
  rig.a.engine.initiate(a.onramp, rig.now);
  assert.equal(rig.inFlight.length, 0, 'nothing sent for an established peer');
  rig.advance(RESTART_DELAY_MS * 2);
  established(rig);
});

test('a request with an old message ID is dropped; the last one is answered from the cache', () => {
  const a = peerConfig({ dpdSeconds: 10 });
  const rig = Rig.pair(a, mirror(a, { dpdSeconds: 0 }));
  rig.advance(25 * S); // two liveness checks: message IDs 2 and 3
  const requests = rig.log.filter((d) => d.to === rig.b && !isResponse(d) && exchangeOf(d) !== Exchange.IkeSaInit);
  assert.equal(requests.length, 3);
  rig.deliver(requests[2]);
  assert.equal(rig.b.engine.drops[IkeDrop.Retransmit], 1);
  assert.equal(rig.inFlight.length, 1);
  rig.inFlight = [];
  rig.deliver(requests[1]);
  rig.deliver(requests[0]);
  assert.equal(rig.b.engine.drops[IkeDrop.OldMessageId], 2);
  assert.equal(rig.inFlight.length, 0);
});

// --- INFORMATIONAL ------------------------------------------------------------------------------------

test('delete: removing the peer on A deletes the IKE SA and its child on B; B reports down', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  const bChild = rig.b.sink.live()[0].inbound.spi;
  rig.a.engine.removePeer(7, rig.now);
  rig.run();
  assert.deepEqual(rig.b.engine.status().filter(active), []);
  assert.deepEqual(rig.b.sink.removed, [{ onramp: 7, spi: bChild }]);
  assert.deepEqual(rig.b.sink.states.at(-1), { onramp: 7, up: false, reason: 'deleted' });
  assert.equal(rig.a.sink.live().length, 0);
});

test('delete by the responder: the initiator cleans up and re-initiates after RESTART_DELAY_MS', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  rig.b.engine.removePeer(7, rig.now);
  rig.run();
  assert.deepEqual(rig.a.engine.status().filter(active), []);
  assert.deepEqual(rig.a.sink.states.at(-1)?.up, false);
  rig.b.engine.addPeer(mirror(a));
  rig.advance(RESTART_DELAY_MS);
  established(rig);
  assert.deepEqual(rig.a.sink.states.at(-1)?.up, true);
});

test('DPD: an idle peer that stops answering is dead after the retransmissions; down, cleaned up, re-initiated', () => {
  const a = peerConfig({ dpdSeconds: 10 });
  const rig = Rig.pair(a, mirror(a, { dpdSeconds: 0 }));
  established(rig);
  // Liveness checks while B answers: nothing changes.
  rig.advance(35 * S);
  established(rig);
  const dpds = rig.log.filter((d) => exchangeOf(d) === Exchange.Informational && !isResponse(d)).length;
  assert.ok(dpds >= 3, `${dpds} liveness checks`);
  // B goes silent.
  let lost = 0;
  const silent = (d: Datagram): boolean => (d.to === rig.b ? (lost++, false) : true);
  let giveUp = 0;
  for (let i = 0; i <= RETRANSMIT_TRIES; i++) giveUp += RETRANSMIT_TIMEOUT_MS * RETRANSMIT_BASE ** i;
  rig.advance(10 * S + giveUp + 1, silent);
  assert.equal(lost >= RETRANSMIT_TRIES + 1, true);
  assert.deepEqual(rig.a.sink.states.at(-1), { onramp: 7, up: false, reason: 'dead peer (no answer to DPD)' });
  assert.equal(rig.a.sink.live().length, 0);
  // B's old SA is still there (B does no DPD); A's INITIAL_CONTACT replaces it when B answers again.
  rig.advance(RESTART_DELAY_MS);
  assert.equal(rig.b.engine.status().filter(active).length, 1);
  established(rig);
});

test('DPD timeout: an unanswered liveness check is given up after dpdTimeoutSeconds, retransmitted on the usual schedule within it', () => {
  const a = peerConfig({ dpdSeconds: 10, dpdTimeoutSeconds: 30 });
  const rig = Rig.pair(a, mirror(a, { dpdSeconds: 0 }));
  established(rig);
  let lost = 0;
  const silent = (d: Datagram): boolean => (d.to === rig.b ? (lost++, false) : true);
  // 10 s of silence, then the check at 10 s and its retransmissions at +4, +11.2, +24.2 s: dead at 10 + 30 s.
  rig.advance(10 * S + 30 * S - 1, silent);
  assert.notDeepEqual(rig.a.sink.states.at(-1), { onramp: 7, up: false, reason: 'dead peer (no answer to DPD)' }, 'not before the timeout');
  rig.advance(2, silent);
  assert.deepEqual(rig.a.sink.states.at(-1), { onramp: 7, up: false, reason: 'dead peer (no answer to DPD)' });
  assert.equal(lost, 4, 'the check and three retransmissions (4 s, then ×1.8) fit in 30 s');
  assert.equal(rig.a.sink.live().length, 0);
});

test('ESP traffic counts as liveness: no DPD while the child receives', () => {
  const a = peerConfig({ dpdSeconds: 10 });
  const rig = Rig.pair(a, mirror(a, { dpdSeconds: 0 }));
  const spi = rig.a.sink.live()[0].inbound.spi;
  for (let t = 0; t < 60; t += 5) {
    rig.a.sink.usage.set(spi, { inboundPackets: t, outboundPackets: t, lastInbound: rig.now, sequenceExhausted: false });
    rig.advance(5 * S);
  }
  assert.equal(rig.log.filter((d) => exchangeOf(d) === Exchange.Informational).length, 0);
});

// --- rekeys -------------------------------------------------------------------------------------------

test('child rekey by the initiator: new child installed on both sides before the old one is removed', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a, { childLifetime: { rekeySeconds: 5000, lifetimeSeconds: 6000, jitterSeconds: 0 } }));
  const old = rig.a.sink.live()[0].inbound.spi;
  rig.advance(1800 * S);
  established(rig);
  assert.notEqual(rig.a.sink.live()[0].inbound.spi, old);
  assert.deepEqual(rig.a.sink.removed.map((r) => r.spi), [old]);
  assert.equal(rig.b.sink.removed.length, 1);
  assert.equal(rig.a.sink.installs.length, 2);
  assert.deepEqual(rig.a.sink.states.length, 1); // never down
});

test('child rekey by the responder (its lifetime is shorter)', () => {
  const a = peerConfig({ childLifetime: { rekeySeconds: 5000, lifetimeSeconds: 6000, jitterSeconds: 0 } });
  const rig = Rig.pair(a, mirror(a, { childLifetime: { rekeySeconds: 100, lifetimeSeconds: 200, jitterSeconds: 0 } }));
  rig.advance(100 * S);
  established(rig);
  assert.equal(rig.b.sink.installs.length, 2);
  assert.equal(rig.a.sink.removed.length, 1);
});

test('simultaneous child rekey (§2.8.1): one survivor, both sides agree, the redundant one deleted', () => {
  const a = peerConfig();
  for (let run = 0; run < 8; run++) {
    const rig = Rig.pair(a, mirror(a));
    rig.advance(1800 * S);
    established(rig);
    assert.equal(rig.a.sink.installs.length, 3);
    assert.equal(rig.b.sink.installs.length, 3);
  }
});

test('a lost CREATE_CHILD_SA response: the retransmitted request gets the cached answer, one new child on each side', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a, { childLifetime: { rekeySeconds: 5000, lifetimeSeconds: 6000, jitterSeconds: 0 } }));
  let responses = 0; // the first is lost, the second is the cached copy
  rig.advance(1800 * S + RETRANSMIT_TIMEOUT_MS, (d) => !(exchangeOf(d) === Exchange.CreateChildSa && isResponse(d) && responses++ === 0));
  established(rig);
  assert.equal(responses, 2);
  assert.equal(rig.b.engine.drops[IkeDrop.Retransmit], 1);
  assert.equal(rig.a.sink.installs.length, 2);
  assert.equal(rig.b.sink.installs.length, 2);
});

test('DPD on the responder: a dead initiator marks the peer down; a responder does not re-initiate', () => {
  const a = peerConfig({ dpdSeconds: 0 });
  const rig = Rig.pair(a, mirror(a, { dpdSeconds: 10 }));
  rig.a.engine.removePeer(7, rig.now); // A vanishes without a word
  rig.inFlight = [];
  rig.advance(200 * S, (d) => d.to !== rig.a);
  assert.deepEqual(rig.b.sink.states.at(-1), { onramp: 7, up: false, reason: 'dead peer (no answer to DPD)' });
  assert.equal(rig.b.sink.live().length, 0);
  assert.deepEqual(rig.b.engine.status().map((s) => s.state), ['idle']);
  assert.equal(rig.b.engine.nextDeadline(), Number.POSITIVE_INFINITY);
});

test('child rekey: INVALID_KE_PAYLOAD for the PFS group is retried at once with the group asked for', () => {
  const a = peerConfig({ espProposals: [{ encryption: ['aes128gcm16'], integrity: [], dh: ['ecp256', 'curve25519'] }] });
  const rig = Rig.pair(a, mirror(a, { espProposals: [{ encryption: ['aes128gcm16'], integrity: [], dh: ['curve25519'] }], childLifetime: { rekeySeconds: 5000, lifetimeSeconds: 6000, jitterSeconds: 0 } }));
  rig.advance(1800 * S);
  established(rig);
  assert.equal(rig.b.engine.drops[IkeDrop.InvalidKe], 1);
  assert.equal(rig.a.engine.status().filter(active)[0].children[0].algorithms, 'aes128gcm16-curve25519');
});

test('sequence exhaustion rekeys the child at once', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  const spi = rig.a.sink.live()[0].inbound.spi;
  rig.a.sink.usage.set(spi, { inboundPackets: 1, outboundPackets: 2 ** 32 - 1000, lastInbound: rig.now, sequenceExhausted: true });
  rig.advance(1);
  established(rig);
  assert.notEqual(rig.a.sink.live()[0].inbound.spi, spi);
});

test('hard child lifetime without a successful rekey: the child is deleted', () => {
  const a = peerConfig({ espProposals: [{ encryption: ['aes128gcm16'], integrity: [], dh: ['ecp256'] }] });
  // B accepts the child without PFS in IKE_AUTH but refuses every rekey (it wants another group).
  const rig = Rig.pair(a, mirror(a, { espProposals: [{ encryption: ['aes128gcm16'], integrity: [], dh: ['ecp384'] }], childLifetime: { rekeySeconds: 9000, lifetimeSeconds: 9999, jitterSeconds: 0 } }));
  established(rig);
  rig.advance(2000 * S);
  assert.equal(rig.a.sink.live().length, 0);
  assert.equal(rig.b.sink.live().length, 0);
});

test('IKE SA rekey (§2.18): new SPIs, the child moves over, nothing removed, still up', () => {
  const a = peerConfig({ ikeLifetime: { rekeySeconds: 600, lifetimeSeconds: 700, jitterSeconds: 0 } });
  const rig = Rig.pair(a, mirror(a, { ikeLifetime: { rekeySeconds: 6000, lifetimeSeconds: 7000, jitterSeconds: 0 } }));
  const before = rig.a.engine.status().filter(active)[0];
  rig.advance(600 * S);
  established(rig);
  const after = rig.a.engine.status().filter(active)[0];
  assert.notEqual(after.spiI, before.spiI);
  assert.equal(after.spiI, rig.b.engine.status().filter(active)[0].spiI);
  assert.equal(after.spiR, rig.b.engine.status().filter(active)[0].spiR);
  assert.equal(rig.a.sink.removed.length + rig.b.sink.removed.length, 0);
  assert.equal(rig.a.sink.states.length, 1);
  // The new SA works: a child rekey runs over it, and a DPD.
  rig.advance(1800 * S);
  established(rig);
  assert.equal(rig.a.sink.removed.length, 1);
});

test('IKE SA rekey by the responder: roles swap on the new SA (B is its initiator), the child stays', () => {
  const a = peerConfig({ ikeLifetime: { rekeySeconds: 6000, lifetimeSeconds: 7000, jitterSeconds: 0 } });
  const rig = Rig.pair(a, mirror(a, { ikeLifetime: { rekeySeconds: 600, lifetimeSeconds: 700, jitterSeconds: 0 } }));
  rig.advance(600 * S);
  established(rig);
  assert.equal(rig.b.engine.status().filter(active)[0].role, 'initiator');
  assert.equal(rig.a.engine.status().filter(active)[0].role, 'responder');
  assert.equal(rig.a.sink.removed.length + rig.b.sink.removed.length, 0);
  // Both directions work on the new SA: a child rekey from A, a DPD from B.
  rig.advance(1800 * S);
  established(rig);
  assert.equal(rig.b.sink.removed.length, 1);
});

test('simultaneous IKE SA rekey (§2.8.2): both exchanges complete, the lowest nonce\'s SA is deleted, one SA left', () => {
  const life = { rekeySeconds: 600, lifetimeSeconds: 900, jitterSeconds: 0 };
  const a = peerConfig({ ikeLifetime: life });
  for (let run = 0; run < 8; run++) {
    const rig = Rig.pair(a, mirror(a, { ikeLifetime: life }));
    const before = rig.a.engine.status().filter(active)[0].spiI;
    rig.advance(600 * S);
    established(rig);
    const [sa] = rig.a.engine.status().filter(active);
    assert.notEqual(sa.spiI, before);
    assert.equal(sa.spiI, rig.b.engine.status().filter(active)[0].spiI);
    assert.equal(rig.a.engine.drops[IkeDrop.TemporaryFailure] + rig.b.engine.drops[IkeDrop.TemporaryFailure], 0);
    assert.equal(rig.a.sink.removed.length + rig.b.sink.removed.length, 0);
    // The survivor carries on: a child rekey over it.
    rig.advance(1200 * S);
    established(rig);
  }
});

test('a request of an unexpected exchange is not answered from another request\'s cache', () => {
  const a = peerConfig({ dpdSeconds: 10 });
  const rig = Rig.pair(a, mirror(a, { dpdSeconds: 0 }));
  const auth = rig.log.find((d) => exchangeOf(d) === Exchange.IkeAuth && !isResponse(d)) as Datagram;
  const sent = rig.inFlight.length;
  rig.deliver(auth); // ID 1 again: answered from the cache (the IKE_AUTH response)
  assert.equal(rig.inFlight.length, sent + 1);
  assert.deepEqual(rig.inFlight.at(-1)?.bytes, rig.log.find((d) => exchangeOf(d) === Exchange.IkeAuth && isResponse(d))?.bytes);
  rig.inFlight = [];
});

test('hard IKE lifetime: a rekey that never gets through ends in a delete at lifetimeSeconds; an initiator starts over', () => {
  const a = peerConfig({ ikeLifetime: { rekeySeconds: 600, lifetimeSeconds: 700, jitterSeconds: 0 } });
  const rig = Rig.pair(a, mirror(a, { ikeLifetime: { rekeySeconds: 6000, lifetimeSeconds: 7000, jitterSeconds: 0 } }));
  rig.advance(700 * S, (d) => exchangeOf(d) !== Exchange.CreateChildSa);
  assert.deepEqual(rig.a.sink.states.at(-1), { onramp: 7, up: false, reason: 'IKE SA lifetime' });
  assert.equal(rig.a.sink.live().length, 0);
  assert.equal(rig.b.sink.live().length, 0); // B got the Delete
  rig.advance(RESTART_DELAY_MS);
  established(rig);
});

test('an unknown critical payload inside SK is refused with UNSUPPORTED_CRITICAL_PAYLOAD (§2.5)', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  // A request sealed with A's keys whose inner chain is one empty payload of unknown type 200, critical bit set.
  const sa = [...rig.a.engine['sas'].values()][0];
  const sealer = sa.sealer as SkCodec;
  const chain = Uint8Array.of(0, CRITICAL_BIT, 0, 4);
  const bytes = buildEncryptedMessage({ spiI: sa.spiI, spiR: sa.spiR, exchange: Exchange.Informational, flags: FLAG_INITIATOR, messageId: sa.nextRequestId }, [], {
    sealedLength: () => sealer.sealedLength(chain.length),
    seal: (aad, _plain) => {
      aad[28] = 200; // the SK payload names the first inner payload
      return sealer.seal(aad, chain);
    },
  });
  rig.deliver({ to: rig.b, bytes, localPort: 500, remotePort: 500 });
  assert.equal(rig.b.engine.drops[IkeDrop.UnsupportedCritical], 1);
  const answer = rig.inFlight.pop() as Datagram;
  assert.ok(isResponse(answer));
  const opened = openEncrypted(answer.bytes, (parseMessage(answer.bytes) as { ok: true; value: IkeMessage }).value, sa.opener as SkCodec);
  assert.ok(opened !== null && opened.ok);
  assert.deepEqual(opened.value, [{ type: PayloadType.Notify, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.UnsupportedCriticalPayload, data: Uint8Array.of(200) }]);
  established(rig);
});

test('an IKE_SA_INIT with an unknown critical payload gets UNSUPPORTED_CRITICAL_PAYLOAD, and no state', () => {
  const a = peerConfig();
  const rig = Rig.started(a, mirror(a));
  const init = rig.inFlight.shift() as Datagram;
  const m = (parseMessage(init.bytes) as { ok: true; value: IkeMessage }).value;
  const bytes = buildMessage(m.header, [{ type: PayloadType.Vendor, data: Uint8Array.of(1) }, ...m.payloads]);
  bytes[16] = 200;
  bytes[29] = CRITICAL_BIT;
  rig.deliver({ ...init, bytes });
  assert.equal(rig.b.engine.drops[IkeDrop.UnsupportedCritical], 1);
  assert.deepEqual(rig.b.engine.status().filter(active), []);
  const answer = (parseMessage((rig.inFlight.shift() as Datagram).bytes) as { ok: true; value: IkeMessage }).value;
  assert.deepEqual(answer.payloads, [{ type: PayloadType.Notify, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.UnsupportedCriticalPayload, data: Uint8Array.of(200) }]);
});

// --- cookies ------------------------------------------------------------------------------------------

const FLOOD_ONRAMP = 8;

/** A flooder's next IKE_SA_INIT with fresh SPIs: its previous SA forgotten, since a peer with an SA starts no second. */
function floodInit(flood: Rig): Datagram {
  flood.a.engine.removePeer(FLOOD_ONRAMP, flood.now);
  flood.a.engine.addPeer(peerConfig({ onramp: FLOOD_ONRAMP }));
  flood.a.engine.initiate(FLOOD_ONRAMP, flood.now);
  return flood.inFlight.pop() as Datagram;
}

test('cookies (§2.6): over the threshold the responder answers COOKIE statelessly; the initiator echoes it', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a), {}, { cookieThreshold: 0 });
  established(rig);
  assert.equal(rig.b.engine.drops[IkeDrop.CookieRequired], 1);
});

test('an IKE_SA_INIT flood: cookies demanded, half-open SAs bounded, the real site still connects', () => {
  const a = peerConfig();
  const rig = new Rig({}, { cookieThreshold: 5 });
  rig.b.engine.addPeer(mirror(a, { remoteAddress: '0.0.0.0' }));
  rig.a.engine.addPeer(a);
  // The flood: IKE_SA_INITs from A's address with fresh SPIs, never followed by IKE_AUTH.
  const flood = new Rig();
  for (let i = 0; i < 50; i++) {
    const init = floodInit(flood);
    rig.b.engine.receive(init.bytes, 0xc0000202, 500, 0xc0000201, 500, rig.now);
  }
  assert.equal(rig.b.engine.status().filter(active).length, 5);
  assert.equal(rig.b.engine.drops[IkeDrop.CookieRequired], 45);
  rig.inFlight = [];
  rig.a.engine.poll(rig.now);
  rig.run();
  assert.equal(rig.a.engine.status().filter(active)[0].state, 'established');
});

test('half-open SAs per address: a cookie-answering flood from one address holds at most halfOpenPerAddress slots with cookies, which free at the half-open timeout', () => {
  const a = peerConfig();
  // Cookies demanded from the start; the flood here echoes them (the rig's initiator does, §2.6).
  const rig = new Rig({}, { cookieThreshold: 0, halfOpenPerAddress: 3 });
  rig.b.engine.addPeer(mirror(a));
  // The flood: IKE_SA_INITs from A's address (a cookie-answering attacker there), never followed by IKE_AUTH.
  const flood = new Rig();
  for (let i = 0; i < 20; i++) {
    const first = floodInit(flood);
    rig.b.engine.receive(first.bytes, 0xc0000202, 500, 0xc0000201, 500, rig.now);
    // B's COOKIE back to the flooder, which retries with it (§2.6).
    const cookie = rig.inFlight.pop() as Datagram;
    flood.a.engine.receive(cookie.bytes, 0xc0000201, 500, 0xc0000202, 500, rig.now);
    const again = flood.inFlight.pop() as Datagram;
    rig.b.engine.receive(again.bytes, 0xc0000202, 500, 0xc0000201, 500, rig.now);
    rig.inFlight = [];
  }
  assert.equal(rig.b.engine.halfOpenCount, 3, 'one address holds three slots');
  assert.equal(rig.b.engine.drops[IkeDrop.HalfOpenLimit], 17);
  // The half-open SAs time out and free their address's slots.
  rig.advance(HALF_OPEN_TIMEOUT_MS + 1);
  assert.equal(rig.b.engine.halfOpenCount, 0);
  rig.a.engine.addPeer(a);
  rig.a.engine.initiate(7, rig.now);
  rig.run();
  assert.equal(rig.a.engine.status().filter(active)[0].state, 'established', 'the real peer at that address connects once the slots are free');
});

// --- hostile input ------------------------------------------------------------------------------------

test('property: any mutation of any message is a counted drop or harmless; no throw; another peer unaffected', () => {
  const a = peerConfig();
  const rig = Rig.pair(a, mirror(a));
  // Replay the whole conversation of a second pair and rekeys, to collect every message type.
  rig.advance(1800 * S);
  const messages = rig.log.map((d) => d);
  const target = new Rig();
  target.b.engine.addPeer(mirror(a, { onramp: 9, remoteAddress: '0.0.0.0', remoteId: { type: 'fqdn', value: 'other.example' } }));
  const other = peerConfig({ onramp: 9, localId: { type: 'fqdn', value: 'other.example' } });
  target.a.engine.addPeer(other);
  target.a.engine.poll(target.now);
  target.run();
  const good = JSON.stringify(target.b.engine.status().filter(active));
  fc.assert(
    fc.property(
      fc.constantFrom(...messages),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.option(fc.nat(), { nil: null }),
      (d, flips, cut) => {
        let bytes = d.bytes.slice();
        for (const [at, v] of flips) bytes[at % bytes.length] = v;
        if (cut !== null) bytes = bytes.subarray(0, cut % (bytes.length + 1));
        const before = Array.from(rig.b.engine.drops).reduce((s, n) => s + n, 0);
        rig.b.engine.receive(bytes, 0xc0000202, d.localPort, 0xc0000201, d.remotePort, rig.now);
        target.b.engine.receive(bytes, 0xc0000202, d.localPort, 0xc0000201, d.remotePort, target.now);
        const after = Array.from(rig.b.engine.drops).reduce((s, n) => s + n, 0);
        rig.inFlight = [];
        target.inFlight = [];
        // An unchanged byte string that is a valid IKE_SA_INIT may start a half-open SA; anything else is a drop.
        assert.ok(after === before + 1 || bytes[18] === Exchange.IkeSaInit, `no drop counted for a mutated ${bytes[18]}`);
        assert.equal(JSON.stringify(target.b.engine.status().filter(active).filter((s) => s.state === 'established')), good);
      },
    ),
    { numRuns: 500 },
  );
  void ADDR_B;
});
