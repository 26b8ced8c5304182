/**
 * The engine's timers run on the monotonic `now`; the wall clock only builds TAI64N timestamps (§5.4.2). These
 * tests step the injected wall clocks back one hour between handshakes, as an NTP correction or an operator can.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REJECT_AFTER_TIME_MS, REKEY_AFTER_TIME_MS, REKEY_TIMEOUT_JITTER_MAX_MS, REKEY_TIMEOUT_MS, TIMESTAMP_LEN } from './constants.js';
import { nextTimestamp, tai64n, timestampAfter } from './noise.js';
import { WgDrop } from './wg-drop.js';
import { ADDR_A, ADDR_B, PORT_A, PORT_B, T0, copyOut, deliver, handshake, ipv4Packet, pair } from '../../../test/support/wireguard.js';

const HOUR_MS = 3_600_000;
/** Monotonic time starts near zero, as performance.now() does: nothing may mistake it for wall time. */
const M0 = 1_000;
const MSG_INITIATION = 1;
const MSG_TRANSPORT = 4;

/** Two devices whose wall clocks the test moves: wall = T0 + (now - M0) + step. */
function steppedPair() {
  const clock = { now: M0, stepA: 0, stepB: 0 };
  const { a, b } = pair({ bEndpointForA: true, wallClockA: () => T0 + clock.now - M0 + clock.stepA, wallClockB: () => T0 + clock.now - M0 + clock.stepB });
  return { a, b, clock };
}

test('TAI64N after a step back: one resolution step past the last sent, carried into the seconds', () => {
  const last = tai64n(T0);
  const next = nextTimestamp(last, new Uint8Array(TIMESTAMP_LEN));
  assert.ok(timestampAfter(next, last));
  assert.ok(!timestampAfter(next, tai64n(T0 + 17)), 'the smallest later value tai64n() can produce (2^24 ns ≈ 16.8 ms)');
  const endOfSecond = tai64n(T0 - (T0 % 1000) + 999);
  const carried = nextTimestamp(endOfSecond, new Uint8Array(TIMESTAMP_LEN));
  assert.ok(timestampAfter(carried, endOfSecond));
  assert.deepEqual(carried, tai64n(T0 - (T0 % 1000) + 1000), 'the next second, zero nanoseconds');
});

test('wall clock one hour back: the rekey initiation and its retry are answered, none dropped as a replay or a flood', () => {
  const { a, b, clock } = steppedPair();
  const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 20);
  assert.equal(handshake(a, b, pkt, clock.now).delivered[0].kind, 'data');

  // Both clocks step back an hour. A's rekey must still carry a TAI64N newer than the last B saw (or B drops it
  // as a replay), and B's flood guard (one initiation per 20 ms) must not count the hour.
  clock.stepA = -HOUR_MS;
  clock.stepB = -HOUR_MS;
  clock.now = M0 + REKEY_AFTER_TIME_MS + 1;
  const rekey = copyOut(a.send(0, pkt, clock.now));
  assert.deepEqual(rekey.map((o) => o.data[0]), [MSG_TRANSPORT, MSG_INITIATION]);
  const [data, resp] = deliver(b, rekey, ADDR_A, PORT_A, clock.now);
  assert.equal(data.kind, 'data');
  assert.equal(resp.kind, 'send', `B answers the rekey (drop reason ${resp.reason})`);

  // The response is lost: A retries after Rekey-Timeout and B answers that one too.
  clock.now += REKEY_TIMEOUT_MS + REKEY_TIMEOUT_JITTER_MAX_MS + 1;
  const retry = copyOut(a.poll(clock.now)).filter((o) => o.data[0] === MSG_INITIATION);
  assert.equal(retry.length, 1);
  const [resp2] = deliver(b, retry, ADDR_A, PORT_A, clock.now);
  assert.equal(resp2.kind, 'send', `B answers the retry (drop reason ${resp2.reason})`);
  const [confirm] = deliver(a, resp2.datagrams, ADDR_B, PORT_B, clock.now);
  assert.equal(confirm.kind, 'send', 'A completes the handshake and confirms with a keepalive');
  assert.equal(deliver(b, confirm.datagrams, ADDR_A, PORT_A, clock.now)[0].kind, 'none');

  // Another hour back, and the next rekey is answered as well; data flows on the new session.
  clock.stepA -= HOUR_MS;
  clock.now += REKEY_AFTER_TIME_MS + 1;
  const next = copyOut(a.send(0, pkt, clock.now));
  const [, resp3] = deliver(b, next, ADDR_A, PORT_A, clock.now);
  assert.equal(resp3.kind, 'send', `B answers (drop reason ${resp3.reason})`);
  for (const d of [a, b]) {
    assert.equal(d.drops[WgDrop.ReplayedInitiation], 0);
    assert.equal(d.drops[WgDrop.HandshakeFlood], 0);
  }
});

test('a wall-clock step neither prolongs nor shortens a session: Reject-After-Time is counted on the monotonic clock', () => {
  const { a, b, clock } = steppedPair();
  const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 20);
  handshake(a, b, pkt, clock.now);
  const transport = (now: number) => copyOut(a.send(0, pkt, now)).filter((o) => o.data[0] === MSG_TRANSPORT);

  // An hour forward: nothing expires early.
  clock.stepA = clock.stepB = HOUR_MS;
  clock.now = M0 + 60_000;
  assert.equal(deliver(b, transport(clock.now), ADDR_A, PORT_A, clock.now)[0].kind, 'data');

  // An hour back: the session still ends at Reject-After-Time after it was made, on both sides.
  clock.stepA = clock.stepB = -HOUR_MS;
  clock.now = M0 + REJECT_AFTER_TIME_MS - 1;
  const last = transport(clock.now);
  assert.equal(last.length, 1, 'still used just before Reject-After-Time');
  assert.equal(deliver(b, last, ADDR_A, PORT_A, clock.now)[0].kind, 'data');
  clock.now = M0 + REJECT_AFTER_TIME_MS;
  assert.equal(deliver(b, last, ADDR_A, PORT_A, clock.now)[0].reason, WgDrop.KeyExpired, 'the receiver refuses it from then on');
  assert.equal(transport(clock.now).length, 0, 'the sender stops using it: the packet is staged for a new handshake');
  assert.equal(a.peerStatus(0)!.staged, 1);
});
