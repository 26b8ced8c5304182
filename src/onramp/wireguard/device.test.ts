import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  COOKIE_REPLY_LEN,
  DATA_MIN_LEN,
  INIT_LEN,
  INIT_MAC2_OFF,
  KEEPALIVE_TIMEOUT_MS,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_TIME_MS,
  REKEY_ATTEMPT_TIME_MS,
  REKEY_TIMEOUT_MS,
  RESP_LEN,
  RESP_MAC2_OFF,
} from './constants.js';
import { WireGuardDevice } from './device.js';
import { WgDrop } from './wg-drop.js';
import { RateLimiter } from './ratelimit.js';
import {
  ADDR_A,
  endpoint,
  ADDR_B,
  PORT_A,
  PORT_B,
  T0,
  copyOut,
  deliver,
  handshake,
  ipv4Packet,
  keyPair,
  pair,
  seededRandom,
} from '../../../test/support/wireguard.js';

const hex = (b: Uint8Array | null): string => (b ? Buffer.from(b).toString('hex') : 'null');
const dropTotal = (d: WireGuardDevice): number => d.drops.reduce((s, v) => s + v, 0);

test('A initiates: 148-byte initiation, 92-byte response, staged data delivered after the handshake', () => {
  const { a, b } = pair();
  const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 100);
  const { init, resp, confirm, delivered } = handshake(a, b, pkt, T0);
  assert.equal(init.length, 1);
  assert.equal(init[0].data.length, INIT_LEN);
  assert.equal(init[0].data[0], 1);
  assert.equal(resp.kind, 'send');
  assert.equal(resp.datagrams.length, 1);
  assert.equal(resp.datagrams[0].data.length, RESP_LEN);
  assert.equal(resp.datagrams[0].endpoint.addressText(), ADDR_A, 'B answers the source it heard from (roaming)');
  assert.equal(confirm.kind, 'send');
  assert.equal(confirm.datagrams.length, 1, 'the staged packet goes out at once');
  // 16-byte header + 120 bytes padded to 128 + 16-byte tag.
  assert.equal(confirm.datagrams[0].data.length, 16 + 128 + 16);
  assert.equal(delivered[0].kind, 'data');
  assert.equal(hex(delivered[0].packet), hex(pkt));
  assert.equal(a.peerStatus(0)!.hasSession, true);
  assert.equal(b.peerStatus(0)!.hasSession, true, 'B confirmed its session on the first data packet');

  // B answers over the same session, no new handshake.
  const back = ipv4Packet('10.0.2.9', '10.0.1.5', 33);
  const out = copyOut(b.send(0, back, T0 + 1));
  assert.equal(out.length, 1);
  assert.equal(out[0].data[0], 4);
  const [r] = deliver(a, out, ADDR_B, PORT_B, T0 + 1);
  assert.equal(r.kind, 'data');
  assert.equal(hex(r.packet), hex(back));
});

test('B initiates the other way, with a preshared key', () => {
  const psk = new Uint8Array(32).fill(7);
  const { a, b } = pair({ bEndpointForA: true, psk });
  const pkt = ipv4Packet('10.0.2.1', '10.0.1.1', 10);
  const init = copyOut(b.send(0, pkt, T0));
  assert.equal(init.length, 1);
  const [resp] = deliver(a, init, ADDR_B, PORT_B, T0);
  assert.equal(resp.kind, 'send');
  const [confirm] = deliver(b, resp.datagrams, ADDR_A, PORT_A, T0);
  const [data] = deliver(a, confirm.datagrams, ADDR_B, PORT_B, T0);
  assert.equal(data.kind, 'data');
  assert.equal(hex(data.packet), hex(pkt));
});

test('mismatched preshared keys never complete a handshake', () => {
  const ka = keyPair(11);
  const kb = keyPair(22);
  const a = new WireGuardDevice({
    privateKey: ka.priv,
    randomFill: seededRandom(1),
    peers: [{ publicKey: kb.pub, presharedKey: new Uint8Array(32).fill(1), allowedIps: ['10.0.2.0/24'], endpoint: { addr: ADDR_B, port: PORT_B } }],
  });
  const b = new WireGuardDevice({ privateKey: kb.priv, randomFill: seededRandom(2), peers: [{ publicKey: ka.pub, allowedIps: ['10.0.1.0/24'] }] });
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.1', '10.0.2.1', 1), T0));
  const [resp] = deliver(b, init, ADDR_A, PORT_A, T0);
  assert.equal(resp.kind, 'send', 'the responder cannot tell yet');
  const [r] = deliver(a, resp.datagrams, ADDR_B, PORT_B, T0);
  assert.equal(r.kind, 'drop');
  assert.equal(r.reason, WgDrop.HandshakeFailed);
});

test('replayed transport packets are dropped; reordered ones are accepted once', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const sent = [];
  for (let i = 0; i < 6; i++) sent.push(...copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 10, i), T0 + 10)));
  const reversed = deliver(b, sent.slice().reverse(), ADDR_A, PORT_A, T0 + 11);
  assert.deepEqual(reversed.map((r) => r.kind), ['data', 'data', 'data', 'data', 'data', 'data']);
  assert.equal(reversed[0].packet![25], 5);
  const again = deliver(b, sent, ADDR_A, PORT_A, T0 + 12);
  assert.deepEqual(again.map((r) => r.reason), new Array(6).fill(WgDrop.Replay));
  assert.equal(b.drops[WgDrop.Replay], 6);
});

test('a replayed handshake initiation is refused (TAI64N must increase, §5.1)', () => {
  const { a, b } = pair();
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0));
  assert.equal(deliver(b, init, ADDR_A, PORT_A, T0)[0].kind, 'send');
  const [again] = deliver(b, init, ADDR_A, PORT_A, T0 + 1000);
  assert.equal(again.reason, WgDrop.ReplayedInitiation);
});

test('an initiation from a key we do not know is dropped', () => {
  const { b, kb } = pair();
  const stranger = keyPair(33);
  const c = new WireGuardDevice({
    privateKey: stranger.priv,
    randomFill: seededRandom(3),
    peers: [{ publicKey: kb.pub, allowedIps: ['10.0.2.0/24'], endpoint: { addr: ADDR_B, port: PORT_B } }],
  });
  const init = copyOut(c.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0));
  const [r] = deliver(b, init, '198.51.100.7', 4000, T0);
  assert.equal(r.kind, 'drop');
  assert.equal(r.reason, WgDrop.UnknownPeer);
  assert.equal(r.datagrams.length, 0);
});

test('an initiation for another responder fails mac1', () => {
  const { a } = pair();
  const other = new WireGuardDevice({ privateKey: keyPair(44).priv, peers: [] });
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0));
  assert.equal(deliver(other, init, ADDR_A, PORT_A, T0)[0].reason, WgDrop.BadMac1);
});

test('garbage never throws and is always counted as one drop', () => {
  const { b } = pair();
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        // Plausible headers: a valid type with random bytes after it, at the right and wrong sizes.
        fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 200 })).map(([type, len]) => {
          const m = new Uint8Array(len);
          seededRandom(len * 7 + type)(m);
          if (len > 0) m[0] = type;
          if (len > 3) m[1] = m[2] = m[3] = 0;
          return m;
        }),
      ),
      (bytes) => {
        const before = dropTotal(b);
        const r = b.receive(bytes, endpoint('203.0.113.5', 999), T0);
        assert.equal(r.kind, 'drop');
        assert.equal(dropTotal(b), before + 1);
      },
    ),
    { numRuns: 400 },
  );
  assert.ok(b.drops[WgDrop.Truncated] > 0 && b.drops[WgDrop.UnknownType] > 0, 'b.drops[WgDrop.Truncated] > 0 && b.drops[WgDrop.UnknownType] > 0');
});

test('mutated handshake and transport messages are dropped, never delivered, never thrown', () => {
  const { a, b } = pair();
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0))[0].data;
  // Fresh devices per case so state from one accepted message cannot mask another.
  fc.assert(
    fc.property(fc.integer({ min: 0, max: INIT_MAC2_OFF - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const { b: fresh } = pair();
      const m = init.slice();
      m[pos] ^= x;
      const r = fresh.receive(m, endpoint(ADDR_A, PORT_A), T0);
      assert.equal(r.kind, 'drop');
    }),
    { numRuns: 150 },
  );
  const [resp] = deliver(b, [{ data: init, endpoint: endpoint(ADDR_B, PORT_B), peer: 0 }], ADDR_A, PORT_A, T0);
  const respMsg = resp.datagrams[0].data;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: RESP_MAC2_OFF - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const m = respMsg.slice();
      m[pos] ^= x;
      const r = a.receive(m, endpoint(ADDR_B, PORT_B), T0);
      assert.equal(r.kind, 'drop');
    }),
    { numRuns: 150 },
  );
  // Now complete it and mutate transport packets anywhere.
  const [confirm] = deliver(a, resp.datagrams, ADDR_B, PORT_B, T0);
  deliver(b, confirm.datagrams, ADDR_A, PORT_A, T0);
  const data = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 60), T0 + 1))[0].data;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: data.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const m = data.slice();
      m[pos] ^= x;
      const before = dropTotal(b);
      const r = b.receive(m, endpoint(ADDR_A, PORT_A), T0 + 2);
      assert.equal(r.kind, 'drop');
      assert.equal(dropTotal(b), before + 1);
    }),
    { numRuns: 200 },
  );
  assert.equal(b.receive(data.subarray(0, DATA_MIN_LEN - 1), endpoint(ADDR_A, PORT_A), T0).reason, WgDrop.Truncated);
  assert.equal(b.receive(data, endpoint(ADDR_A, PORT_A), T0 + 3).kind, 'data', 'the unmutated packet still passes');
});

test('under load: a cookie reply first, then the retry with mac2 is answered', () => {
  const { a, b } = pair();
  b.underLoad = true;
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0));
  const [cookie] = deliver(b, init, ADDR_A, PORT_A, T0);
  assert.equal(cookie.kind, 'send');
  assert.equal(cookie.reason, WgDrop.CookieRequired);
  assert.equal(cookie.datagrams.length, 1);
  assert.equal(cookie.datagrams[0].data.length, COOKIE_REPLY_LEN);
  assert.equal(cookie.datagrams[0].data[0], 3);
  const [taken] = deliver(a, cookie.datagrams, ADDR_B, PORT_B, T0 + 1);
  assert.equal(taken.kind, 'none');
  // The retransmit timer fires after Rekey-Timeout (+ jitter).
  const t1 = a.nextDeadline();
  assert.ok(t1 >= T0 + REKEY_TIMEOUT_MS && t1 < T0 + REKEY_TIMEOUT_MS + 334, 't1 >= T0 + REKEY_TIMEOUT_MS && t1 < T0 + REKEY_TIMEOUT_MS + 334');
  const retry = copyOut(a.poll(t1));
  assert.equal(retry.length, 1);
  assert.notEqual(hex(retry[0].data.subarray(INIT_MAC2_OFF)), '00'.repeat(16), 'mac2 is set');
  const [resp] = deliver(b, retry, ADDR_A, PORT_A, t1);
  assert.equal(resp.kind, 'send');
  assert.equal(resp.datagrams[0].data.length, RESP_LEN);
  // The same retry from another source address fails mac2: the cookie is bound to the address.
  const [elsewhere] = deliver(b, retry, '198.51.100.1', PORT_A, t1);
  assert.equal(elsewhere.reason, WgDrop.CookieRequired);
});

test('under load: handshakes from one source are rate limited', () => {
  const { a, b } = pair();
  b.underLoad = true;
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0));
  const [cookie] = deliver(b, init, ADDR_A, PORT_A, T0);
  deliver(a, cookie.datagrams, ADDR_B, PORT_B, T0);
  const retry = copyOut(a.poll(a.nextDeadline()));
  const reasons = [];
  for (let i = 0; i < 10; i++) reasons.push(b.receive(retry[0].data, endpoint(ADDR_A, PORT_A), T0 + 6000).reason);
  // Burst of 5: the first is accepted, the next 4 pass the limiter but are replays, the rest are limited.
  assert.deepEqual(reasons, [
    WgDrop.None,
    WgDrop.ReplayedInitiation,
    WgDrop.ReplayedInitiation,
    WgDrop.ReplayedInitiation,
    WgDrop.ReplayedInitiation,
    WgDrop.RateLimited,
    WgDrop.RateLimited,
    WgDrop.RateLimited,
    WgDrop.RateLimited,
    WgDrop.RateLimited,
  ]);
});

test('rate limiter: 20/s with a burst of 5 per source, bounded table', () => {
  const rl = new RateLimiter(3);
  let allowed = 0;
  for (let i = 0; i < 10; i++) if (rl.allow('a', 0)) allowed++;
  assert.equal(allowed, 5);
  assert.equal(rl.allow('a', 49), false);
  assert.equal(rl.allow('a', 50), true, 'one token per 50 ms');
  assert.equal(rl.allow('b', 0), true, 'sources are independent');
  rl.allow('c', 0);
  rl.allow('d', 0);
  assert.equal(rl.size, 3, 'the oldest source was forgotten');
  // Over one simulated second of steady attempts every 10 ms a source gets the burst plus ~20.
  const steady = new RateLimiter();
  let n = 0;
  for (let t = 0; t < 1000; t += 10) if (steady.allow('x', t)) n++;
  assert.ok(n >= 24 && n <= 26, `got ${n}`);
});

test('cryptokey routing: inner sources outside the peer allowed IPs are dropped', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const spoofed = copyOut(a.send(0, ipv4Packet('10.0.3.5', '10.0.2.9', 10), T0 + 1));
  const [r] = deliver(b, spoofed, ADDR_A, PORT_A, T0 + 1);
  assert.equal(r.kind, 'drop');
  assert.equal(r.reason, WgDrop.AllowedIpsMismatch);
  // Outbound lookup by destination.
  assert.equal(a.peerForDestination(ipv4Packet('10.0.1.5', '10.0.2.77', 0)), 0);
  assert.equal(a.peerForDestination(ipv4Packet('10.0.1.5', '10.9.2.77', 0)), -1);
  // Padding is stripped by the IP length; a lying length field is a bad inner packet.
  const liar = ipv4Packet('10.0.1.5', '10.0.2.9', 10);
  liar[3] = 200;
  const [bad] = deliver(b, copyOut(a.send(0, liar, T0 + 2)), ADDR_A, PORT_A, T0 + 2);
  assert.equal(bad.reason, WgDrop.BadInnerPacket);
});

test('checkSources: false leaves the source check to the caller (the edge\'s pipeline filters by the same prefixes)', () => {
  const { a, b } = pair({ bChecksSources: false });
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const [r] = deliver(b, copyOut(a.send(0, ipv4Packet('10.0.3.5', '10.0.2.9', 10), T0 + 1)), ADDR_A, PORT_A, T0 + 1);
  assert.equal(r.kind, 'data');
  assert.equal(b.drops[WgDrop.AllowedIpsMismatch], 0);
  // The prefixes still route outbound packets.
  assert.equal(b.peerForDestination(ipv4Packet('10.0.2.9', '10.0.1.77', 0)), 0);
});

test('endpoints are numeric: a datagram from a new source moves the peer (roaming) and answers go there', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  deliver(b, copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0 + 1)), '198.51.100.7', 4444, T0 + 1);
  assert.deepEqual(b.peerStatus(0)?.endpoint, { addr: '198.51.100.7', port: 4444 });
  const [out] = b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 10), T0 + 2);
  assert.equal(out.endpoint.addressText(), '198.51.100.7');
  assert.equal(out.endpoint.port, 4444);
  assert.throws(() => b.addPeer({ publicKey: new Uint8Array(32).fill(9), endpoint: { addr: 'not-an-address', port: 1 } }), /bad endpoint/);
});

test('keepalive: after 10 s of receiving without sending, the receiver sends an empty packet', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  assert.deepEqual(copyOut(b.poll(T0 + KEEPALIVE_TIMEOUT_MS - 1)), []);
  const ka = copyOut(b.poll(T0 + KEEPALIVE_TIMEOUT_MS));
  assert.equal(ka.length, 1);
  assert.equal(ka[0].data.length, DATA_MIN_LEN, 'an encrypted empty packet');
  const [r] = deliver(a, ka, ADDR_B, PORT_B, T0 + KEEPALIVE_TIMEOUT_MS);
  assert.equal(r.kind, 'none');
  assert.equal(r.reason, WgDrop.None);
});

test('persistent keepalive fires at its interval when the link is otherwise idle', () => {
  const { a, b } = pair({ peerExtraA: { persistentKeepalive: 25 } });
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  deliver(a, copyOut(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 1), T0)), ADDR_B, PORT_B, T0);
  const times: number[] = [];
  for (let now = a.nextDeadline(); now < T0 + 120_000; now = a.nextDeadline()) {
    const out = copyOut(a.poll(now));
    if (out.some((o) => o.data.length === DATA_MIN_LEN)) times.push(now);
  }
  assert.ok(times.length >= 3, `keepalives at ${times.map((t) => t - T0)}`);
  for (let i = 1; i < times.length; i++) assert.equal(times[i] - times[i - 1], 25_000);
});

test('rekey after 120 s by the initiator; after 180 s the old session is refused', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 20);
  // Keep traffic flowing both ways so no keepalive / dead-peer timer gets in the way.
  assert.equal(copyOut(a.send(0, pkt, T0 + REKEY_AFTER_TIME_MS)).length, 1, 'not yet');
  const late = copyOut(a.send(0, pkt, T0 + REKEY_AFTER_TIME_MS + 1));
  assert.equal(late.length, 2, 'data on the old session plus an initiation');
  assert.equal(late[0].data[0], 4);
  assert.equal(late[1].data[0], 1);
  // The old session is still accepted before Reject-After-Time...
  assert.equal(deliver(b, [late[0]], ADDR_A, PORT_A, T0 + REKEY_AFTER_TIME_MS + 1)[0].kind, 'data');
  // ...and refused from then on.
  // (At 150 s the unanswered rekey is tried again alongside the data: Rekey-Timeout has long passed.)
  const stale = copyOut(a.send(0, pkt, T0 + 150_000)).filter((o) => o.data[0] === 4);
  assert.equal(stale.length, 1);
  assert.equal(deliver(b, stale, ADDR_A, PORT_A, T0 + REJECT_AFTER_TIME_MS)[0].reason, WgDrop.KeyExpired);
  // The sender stops using it too: the packet is staged and a handshake is (re)started.
  const staged = copyOut(a.send(0, pkt, T0 + REJECT_AFTER_TIME_MS));
  assert.ok(staged.every((o) => o.data[0] === 1), 'staged.every((o) => o.data[0] === 1)');
  assert.equal(a.peerStatus(0)!.staged, 1);
  // Completing the new handshake flushes it.
  const [resp] = deliver(b, staged, ADDR_A, PORT_A, T0 + REJECT_AFTER_TIME_MS);
  const [confirm] = deliver(a, resp.datagrams, ADDR_B, PORT_B, T0 + REJECT_AFTER_TIME_MS);
  const [data] = deliver(b, confirm.datagrams, ADDR_A, PORT_A, T0 + REJECT_AFTER_TIME_MS);
  assert.equal(data.kind, 'data');
});

test('a rekey keeps the previous session usable for packets in flight', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 20);
  const t = T0 + REKEY_AFTER_TIME_MS + 10;
  const out = copyOut(a.send(0, pkt, t));
  const inflight = copyOut(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 5), t)); // B, old session
  const [resp] = deliver(b, [out[1]], ADDR_A, PORT_A, t);
  const [confirm] = deliver(a, resp.datagrams, ADDR_B, PORT_B, t);
  assert.equal(confirm.datagrams.length, 1, 'keepalive confirming the new session');
  deliver(b, confirm.datagrams, ADDR_A, PORT_A, t);
  assert.equal(deliver(a, inflight, ADDR_B, PORT_B, t)[0].kind, 'data', 'previous session still decrypts');
  assert.equal(deliver(b, [out[0]], ADDR_A, PORT_A, t)[0].kind, 'data');
});

test('handshake retries every Rekey-Timeout and gives up after Rekey-Attempt-Time', () => {
  const { a } = pair();
  const first = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0));
  assert.equal(first.length, 1);
  let sent = 1;
  let now = T0;
  while (now < T0 + REKEY_ATTEMPT_TIME_MS + 10 * REKEY_TIMEOUT_MS) {
    const next = a.nextDeadline();
    if (next === Infinity || next > T0 + 10 * REJECT_AFTER_TIME_MS) break;
    now = next;
    sent += copyOut(a.poll(now)).filter((o) => o.data[0] === 1).length;
    if (a.peerStatus(0)!.staged === 0) break;
  }
  // As wireguard-go: retries while attempts <= MaxTimerHandshakes (90 s / 5 s = 18), so 1 + 19 initiations.
  assert.equal(sent, 20);
  assert.equal(a.peerStatus(0)!.staged, 0, 'staged packets discarded');
  assert.equal(a.drops[WgDrop.HandshakeTimeout], 1);
  assert.ok(now - T0 >= REKEY_ATTEMPT_TIME_MS, 'now - T0 >= REKEY_ATTEMPT_TIME_MS');
});

test('a stale cookie reply or one for an unknown index is dropped', () => {
  const { a, b } = pair();
  b.underLoad = true;
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0));
  const [cookie] = deliver(b, init, ADDR_A, PORT_A, T0);
  const bad = cookie.datagrams[0].data.slice();
  bad[40] ^= 1;
  assert.equal(a.receive(bad, endpoint(ADDR_B, PORT_B), T0).reason, WgDrop.CookieFailed);
  const unknown = cookie.datagrams[0].data.slice();
  unknown[4] ^= 0xff;
  assert.equal(a.receive(unknown, endpoint(ADDR_B, PORT_B), T0).reason, WgDrop.UnknownIndex);
});

test('removePeer: its sessions, handshakes and keys are gone at once; its datagrams are dropped as revoked', () => {
  const { a, b, ka } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const inFlight = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0 + 1));
  assert.equal(b.removePeer(0), true);
  assert.equal(b.removePeer(0), false, 'removing twice is a no-op');
  assert.equal(b.peerStatus(0), null);
  assert.equal(b.findPeer(ka.pub), -1);
  assert.equal(b.nextDeadline(), Infinity, 'no timer of the removed peer is left');
  const [late] = deliver(b, inFlight, ADDR_A, PORT_A, T0 + 2);
  assert.equal(late.reason, WgDrop.Revoked, 'a packet on its session is dropped and counted as revoked');
  // A fresh handshake from the removed key is refused too, and answered with nothing.
  a.poll(T0 + REKEY_TIMEOUT_MS * 10);
  const init = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0 + REKEY_TIMEOUT_MS * 20));
  const [r] = deliver(b, init, ADDR_A, PORT_A, T0 + REKEY_TIMEOUT_MS * 20);
  assert.equal(r.reason, WgDrop.Revoked);
  assert.equal(r.datagrams.length, 0);
  assert.equal(b.drops[WgDrop.Revoked], 2);
  assert.equal(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 1), T0).length, 0, 'nothing is sent to it');
  assert.equal(b.drops[WgDrop.NoPeer], 1);
});

test('a removed key added again is a new peer at a new index, with the settings it is added with', () => {
  const { a, b, ka } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  b.removePeer(0);
  const again = b.addPeer({ publicKey: ka.pub, allowedIps: ['10.0.9.0/24'] });
  assert.equal(again, 1, 'indices are never reused');
  assert.equal(b.findPeer(ka.pub), again);
  assert.equal(b.peerStatus(again)!.hasSession, false, 'nothing of the removed peer comes back');
  const t = T0 + 10_000;
  const a2 = new WireGuardDevice({ privateKey: keyPair(11).priv, randomFill: seededRandom(5), peers: [{ publicKey: keyPair(22).pub, allowedIps: ['10.0.2.0/24'], endpoint: { addr: ADDR_B, port: PORT_B } }] });
  const { delivered } = handshake(a2, b, ipv4Packet('10.0.9.5', '10.0.2.9', 5), t);
  assert.equal(delivered[0].kind, 'data');
  assert.equal(delivered[0].peer, again);
  const [old] = deliver(b, copyOut(a2.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 5), t + 1)), ADDR_A, PORT_A, t + 1);
  assert.equal(old.reason, WgDrop.AllowedIpsMismatch, 'the allowed IPs are the new ones');
});

test('updatePeer: a new preshared key ends the sessions at once; a handshake with the new key works', () => {
  const psk1 = new Uint8Array(32).fill(1);
  const psk2 = new Uint8Array(32).fill(2);
  const { a, b } = pair({ psk: psk1 });
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const inFlight = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0 + 1));
  b.updatePeer(0, { presharedKey: psk2 }, T0 + 2);
  assert.equal(b.peerStatus(0)!.hasSession, false);
  assert.equal(deliver(b, inFlight, ADDR_A, PORT_A, T0 + 2)[0].reason, WgDrop.Revoked);
  // A still on the old key: its handshake fails on B.
  const t = T0 + REKEY_TIMEOUT_MS * 2;
  const a2 = new WireGuardDevice({ privateKey: keyPair(11).priv, randomFill: seededRandom(7), peers: [{ publicKey: keyPair(22).pub, presharedKey: psk1, allowedIps: ['10.0.2.0/24'], endpoint: { addr: ADDR_B, port: PORT_B } }] });
  const [old] = deliver(b, copyOut(a2.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 1), t)), ADDR_A, PORT_A, t);
  assert.equal(old.kind, 'send', 'the initiation itself does not use the preshared key');
  const [confirm] = deliver(a2, old.datagrams, ADDR_B, PORT_B, t);
  assert.equal(confirm.kind, 'drop', 'but the response does not verify with the old one');
  // A with the new key: a full handshake and data.
  const a3 = new WireGuardDevice({ privateKey: keyPair(11).priv, randomFill: seededRandom(8), peers: [{ publicKey: keyPair(22).pub, presharedKey: psk2, allowedIps: ['10.0.2.0/24'], endpoint: { addr: ADDR_B, port: PORT_B } }] });
  const { delivered } = handshake(a3, b, ipv4Packet('10.0.1.5', '10.0.2.9', 5), t + 1000);
  assert.equal(delivered[0].kind, 'data');
});

test('updatePeer: a new public key is a new identity at the same index; the old key is revoked', () => {
  const { a, b, ka } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const c = keyPair(44);
  b.updatePeer(0, { publicKey: c.pub }, T0 + 1);
  assert.equal(b.findPeer(ka.pub), -1);
  assert.equal(b.findPeer(c.pub), 0);
  assert.equal(b.peerStatus(0)!.endpoint, null, 'the endpoint learned from the old key is forgotten');
  const [late] = deliver(b, copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0 + 2)), ADDR_A, PORT_A, T0 + 2);
  assert.equal(late.reason, WgDrop.Revoked);
  const cDev = new WireGuardDevice({ privateKey: c.priv, randomFill: seededRandom(9), peers: [{ publicKey: keyPair(22).pub, allowedIps: ['10.0.2.0/24'], endpoint: { addr: ADDR_B, port: PORT_B } }] });
  const { delivered } = handshake(cDev, b, ipv4Packet('10.0.1.5', '10.0.2.9', 5), T0 + 10_000);
  assert.equal(delivered[0].kind, 'data');
  assert.equal(delivered[0].peer, 0);
  // Refused changes leave the peer as it was.
  const other = b.addPeer({ publicKey: keyPair(55).pub });
  assert.throws(() => b.updatePeer(0, { publicKey: keyPair(55).pub }, T0), /duplicate/);
  assert.throws(() => b.updatePeer(0, { allowedIps: ['10.0.1.0/24', 'nope'] }, T0), /bad allowed IP/);
  assert.throws(() => b.updatePeer(0, { endpoint: { addr: 'nope', port: 1 } }, T0), /bad endpoint/);
  assert.throws(() => b.updatePeer(99, {}, T0), /no peer/);
  assert.equal(b.findPeer(c.pub), 0);
  assert.equal(other, 1);
  assert.equal(b.peerStatus(0)!.hasSession, true, 'the refused changes did not end the session');
});

test('updatePeer: narrowed allowed IPs apply to the next packet; keepalive and endpoint change in place', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  assert.equal(deliver(b, copyOut(a.send(0, ipv4Packet('10.0.1.200', '10.0.2.9', 10), T0 + 1)), ADDR_A, PORT_A, T0 + 1)[0].kind, 'data');
  b.updatePeer(0, { allowedIps: ['10.0.1.0/25'] }, T0 + 2);
  assert.equal(b.peerStatus(0)!.hasSession, true, 'the session stays');
  assert.equal(deliver(b, copyOut(a.send(0, ipv4Packet('10.0.1.200', '10.0.2.9', 10), T0 + 3)), ADDR_A, PORT_A, T0 + 3)[0].reason, WgDrop.AllowedIpsMismatch);
  assert.equal(deliver(b, copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0 + 4)), ADDR_A, PORT_A, T0 + 4)[0].kind, 'data');
  const ka = b.updatePeer(0, { persistentKeepalive: 25, endpoint: { addr: '198.51.100.9', port: 1234 } }, T0 + 5);
  assert.equal(ka.length, 1, 'turning persistent keepalive on sends one at once');
  assert.equal(ka[0].endpoint.addressText(), '198.51.100.9');
  assert.equal(b.nextDeadline() <= T0 + 5 + 25_000, true);
  b.updatePeer(0, { persistentKeepalive: 0 }, T0 + 6);
  assert.deepEqual(copyOut(b.poll(T0 + 5 + 25_000)).length, 0, 'turned off: no keepalive at the old interval');
});

test('a removed peer\'s session indices are handed out last: a new peer\'s handshake does not make them unknown', () => {
  const { a, b } = pair();
  handshake(a, b, ipv4Packet('10.0.1.5', '10.0.2.9', 1), T0);
  const late = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 10), T0 + 1));
  b.removePeer(0);
  const c = keyPair(66);
  b.addPeer({ publicKey: c.pub, allowedIps: ['10.0.1.0/24'] });
  const cDev = new WireGuardDevice({ privateKey: c.priv, randomFill: seededRandom(12), peers: [{ publicKey: keyPair(22).pub, allowedIps: ['10.0.2.0/24'], endpoint: { addr: ADDR_B, port: PORT_B } }] });
  handshake(cDev, b, ipv4Packet('10.0.1.5', '10.0.2.9', 5), T0 + 2);
  assert.equal(deliver(b, late, ADDR_A, PORT_A, T0 + 3)[0].reason, WgDrop.Revoked);
});
