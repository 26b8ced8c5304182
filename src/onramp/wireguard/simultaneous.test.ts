/**
 * Both ends of a WireGuard tunnel initiating a handshake at the same instant (whitepaper §5.4, §6.4): the two
 * initiations cross on the wire, each end answers the other's, and each end's own initiation is still waiting for
 * its response. These tests drive two devices on a virtual clock in every order of delivery and check that the
 * tunnel comes up without waiting for a Rekey-Timeout retry, and that a retry which the Rekey-Timeout limit holds
 * back (because we answered a handshake less than Rekey-Timeout ago) is deferred, not lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MSG_INITIATION, MSG_RESPONSE, MSG_TRANSPORT, REKEY_TIMEOUT_JITTER_MAX_MS, REKEY_TIMEOUT_MS } from './constants.js';
import type { WireGuardDevice } from './device.js';
import { readU32LE } from './noise.js';
import { ADDR_A, ADDR_B, copyOut, deliver, ipv4Packet, pair, PORT_A, PORT_B, T0 } from '../../../test/support/wireguard.js';
import type { Outgoing } from './device.js';

const FROM_A = [ADDR_A, PORT_A] as const;
const FROM_B = [ADDR_B, PORT_B] as const;
/** Step of the virtual clock when polling timers. */
const POLL_STEP_MS = 5;

function types(list: Outgoing[]): number[] {
  return list.map((o) => readU32LE(o.data, 0));
}

/** The inner packets among delivery results (as their first payload byte, which the tests set apart). */
function deliveredMarks(results: ReturnType<typeof deliver>): number[] {
  return results.filter((r) => r.kind === 'data').map((r) => r.packet![r.packet!.length - 1]);
}

/** Both ends send their first packet at T0: each stages it and sends an initiation. */
function bothInitiate() {
  const { a, b } = pair({ bEndpointForA: true });
  const initA = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 4, 0xa1), T0));
  const initB = copyOut(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 4, 0xb1), T0));
  assert.deepEqual(types(initA), [MSG_INITIATION]);
  assert.deepEqual(types(initB), [MSG_INITIATION]);
  return { a, b, initA, initB };
}

/** After the handshake(s): more packets both ways go straight out as transport data (no new handshake). */
function assertSessionBothWays(a: WireGuardDevice, b: WireGuardDevice, now: number): void {
  const outA = copyOut(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 4, 0xa2), now));
  assert.deepEqual(types(outA), [MSG_TRANSPORT], 'A sends on a session');
  assert.deepEqual(deliveredMarks(deliver(b, outA, ...FROM_A, now)), [0xa2]);
  const outB = copyOut(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 4, 0xb2), now));
  assert.deepEqual(types(outB), [MSG_TRANSPORT], 'B sends on a session');
  assert.deepEqual(deliveredMarks(deliver(a, outB, ...FROM_B, now)), [0xb2]);
}

/** Polls both devices from `from` to `to` on the virtual clock; returns the message types each sent. */
function pollBoth(a: WireGuardDevice, b: WireGuardDevice, from: number, to: number): { a: number[]; b: number[] } {
  const sent = { a: [] as number[], b: [] as number[] };
  for (let t = from; t <= to; t += POLL_STEP_MS) {
    sent.a.push(...types(a.poll(t)));
    sent.b.push(...types(b.poll(t)));
  }
  return sent;
}

/** A datagram on a simulated path: when it arrives and at which end. */
interface InFlight {
  at: number;
  toA: boolean;
  data: Outgoing[];
}

/**
 * One step of a simulated path: delivers what is due at `now` (answers go back through `post`), then runs both
 * ends' timers. Returns the marks of the inner packets delivered to each end.
 */
function stepPath(flight: InFlight[], a: WireGuardDevice, b: WireGuardDevice, now: number, post: (list: Outgoing[], toA: boolean, now: number) => void): { a: number[]; b: number[] } {
  const got = { a: [] as number[], b: [] as number[] };
  for (let i = 0; i < flight.length; ) {
    const f = flight[i];
    if (f.at > now) {
      i++;
      continue;
    }
    flight.splice(i, 1);
    const results = f.toA ? deliver(a, f.data, ...FROM_B, now) : deliver(b, f.data, ...FROM_A, now);
    (f.toA ? got.a : got.b).push(...deliveredMarks(results));
    for (const r of results) post(r.datagrams, !f.toA, now);
  }
  post(a.poll(now), false, now);
  post(b.poll(now), true, now);
  return got;
}

test('crossed initiations, each delivered before either response: both ends take the response to their own initiation and data flows both ways at once', () => {
  const { a, b, initA, initB } = bothInitiate();
  // Each end answers the other's initiation while its own is outstanding.
  const [atB] = deliver(b, initA, ...FROM_A, T0 + 1);
  const [atA] = deliver(a, initB, ...FROM_B, T0 + 1);
  assert.deepEqual(types(atB.datagrams), [MSG_RESPONSE]);
  assert.deepEqual(types(atA.datagrams), [MSG_RESPONSE]);
  // The responder's session is not used for sending until the initiator confirms it (§5.4.6).
  assert.equal(a.peerStatus(0)!.hasSession, false);
  assert.equal(b.peerStatus(0)!.hasSession, false);

  // The responses cross: each end still holds its own initiation's state and completes it.
  const [respAtA] = deliver(a, atB.datagrams, ...FROM_B, T0 + 2);
  const [respAtB] = deliver(b, atA.datagrams, ...FROM_A, T0 + 2);
  assert.equal(respAtA.kind, 'send', `A refused B's response: drop reason ${respAtA.reason}`);
  assert.equal(respAtB.kind, 'send', `B refused A's response: drop reason ${respAtB.reason}`);
  // Each flushes its staged first packet on its own session; the other end opens it.
  assert.deepEqual(deliveredMarks(deliver(b, respAtA.datagrams, ...FROM_A, T0 + 3)), [0xa1]);
  assert.deepEqual(deliveredMarks(deliver(a, respAtB.datagrams, ...FROM_B, T0 + 3)), [0xb1]);
  assertSessionBothWays(a, b, T0 + 4);
  // Nothing is left to retry: no initiation in the next Rekey-Timeout and its jitter.
  const sent = pollBoth(a, b, T0 + 5, T0 + REKEY_TIMEOUT_MS + REKEY_TIMEOUT_JITTER_MAX_MS + POLL_STEP_MS);
  assert.ok(!sent.a.includes(MSG_INITIATION) && !sent.b.includes(MSG_INITIATION), `a retry went out: ${JSON.stringify(sent)}`);
});

test('crossed initiations, B\'s answer reaching A before A\'s initiation reaches B: B completes its own handshake first, then answers A\'s; both converge', () => {
  const { a, b, initA, initB } = bothInitiate();
  const [atA] = deliver(a, initB, ...FROM_B, T0 + 1); // A answers B's initiation (A's own is still in flight)
  // A's response reaches B first: B's own handshake completes and B's staged packet goes out.
  const [respAtB] = deliver(b, atA.datagrams, ...FROM_A, T0 + 2);
  assert.equal(respAtB.kind, 'send');
  assert.equal(b.peerStatus(0)!.hasSession, true);
  // Then A's initiation: B answers it (its session from A's answer stays current until A confirms the new one).
  const [atB] = deliver(b, initA, ...FROM_A, T0 + 3);
  assert.deepEqual(types(atB.datagrams), [MSG_RESPONSE]);
  // B's packet confirms A's responder session; A's packet goes out on it.
  const fromB = deliver(a, respAtB.datagrams, ...FROM_B, T0 + 4);
  assert.deepEqual(deliveredMarks(fromB), [0xb1]);
  assert.deepEqual(deliveredMarks(deliver(b, fromB.flatMap((r) => r.datagrams), ...FROM_A, T0 + 5)), [0xa1]);
  // B's answer to A's initiation: A completes it too (a keepalive confirms it to B).
  const [respAtA] = deliver(a, atB.datagrams, ...FROM_B, T0 + 6);
  assert.notEqual(respAtA.kind, 'drop', `A refused B's response: drop reason ${respAtA.reason}`);
  deliver(b, respAtA.datagrams, ...FROM_A, T0 + 7);
  assertSessionBothWays(a, b, T0 + 8);
  const sent = pollBoth(a, b, T0 + 10, T0 + REKEY_TIMEOUT_MS + REKEY_TIMEOUT_JITTER_MAX_MS + POLL_STEP_MS);
  assert.ok(!sent.a.includes(MSG_INITIATION) && !sent.b.includes(MSG_INITIATION), `a retry went out: ${JSON.stringify(sent)}`);
});

test('crossed initiations, both responses lost: each end retries after Rekey-Timeout and the retry completes', () => {
  const { a, b, initA, initB } = bothInitiate();
  deliver(b, initA, ...FROM_A, T0 + 1);
  deliver(a, initB, ...FROM_B, T0 + 1);
  // Both responses are lost. A retry goes out within Rekey-Timeout + jitter of the first initiation.
  let retry: Outgoing[] = [];
  let t = T0 + 2;
  for (; t <= T0 + REKEY_TIMEOUT_MS + REKEY_TIMEOUT_JITTER_MAX_MS + POLL_STEP_MS && retry.length === 0; t += POLL_STEP_MS) retry = copyOut(a.poll(t));
  assert.deepEqual(types(retry), [MSG_INITIATION]);
  const [atB] = deliver(b, retry, ...FROM_A, t);
  const [respAtA] = deliver(a, atB.datagrams, ...FROM_B, t);
  assert.deepEqual(deliveredMarks(deliver(b, respAtA.datagrams, ...FROM_A, t)), [0xa1]);
  assertSessionBothWays(a, b, t + 1);
});

test('a retry held back by Rekey-Timeout (we answered the peer\'s crossing initiation since) is deferred, not lost', () => {
  // A initiates at T0; its initiation is lost. B's initiation reaches A 400 ms later (more than the largest retry
  // jitter), A answers, and A's answer is refused or lost (a wireguard-go peer refuses it: its own initiation's
  // state was replaced by answering A's). A's retry, due at T0 + 5 s + jitter, would be less than Rekey-Timeout
  // after A's answer, which counts as a handshake sent (wireguard-go SendHandshakeResponse sets lastSentHandshake).
  const { a, b } = pair({ bEndpointForA: true });
  a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 4, 0xa1), T0); // lost
  const answeredAt = T0 + REKEY_TIMEOUT_JITTER_MAX_MS + 66;
  const initB = copyOut(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 4, 0xb1), answeredAt - 1));
  const [atA] = deliver(a, initB, ...FROM_B, answeredAt);
  assert.deepEqual(types(atA.datagrams), [MSG_RESPONSE]); // lost
  let retry: Outgoing[] = [];
  let t = answeredAt + POLL_STEP_MS;
  const bound = answeredAt + REKEY_TIMEOUT_MS + REKEY_TIMEOUT_JITTER_MAX_MS + POLL_STEP_MS;
  for (; t <= bound && retry.length === 0; t += POLL_STEP_MS) retry = copyOut(a.poll(t));
  assert.deepEqual(types(retry), [MSG_INITIATION], 'A retried within Rekey-Timeout + jitter of its answer');
  assert.ok(t > answeredAt + REKEY_TIMEOUT_MS, 'and not sooner than Rekey-Timeout after it');
  assert.equal(a.peerStatus(0)!.handshakeAttempts, 1, 'the held-back retry was not counted as an attempt');
  const [atB] = deliver(b, retry, ...FROM_A, t);
  const [respAtA] = deliver(a, atB.datagrams, ...FROM_B, t);
  assert.deepEqual(deliveredMarks(deliver(b, respAtA.datagrams, ...FROM_A, t)), [0xa1]);
  assertSessionBothWays(a, b, t + 1);
});

test('many rounds of crossed initiations in random delivery orders all converge without a retry', () => {
  // Deterministic shuffles: four messages in flight at most, each end's own messages kept in its send order.
  let seed = 12345;
  const nextRandom = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 0x1_0000_0000;
  };
  for (let round = 0; round < 50; round++) {
    const { a, b, initA, initB } = bothInitiate();
    // Queues per direction; each step delivers the head of a random non-empty queue (FIFO per direction).
    const toB: Outgoing[][] = [initA];
    const toA: Outgoing[][] = [initB];
    const got = { a: [] as number[], b: [] as number[] };
    let t = T0 + 1;
    while (toA.length > 0 || toB.length > 0) {
      const pickA = toA.length > 0 && (toB.length === 0 || nextRandom() < 0.5);
      const batch = (pickA ? toA : toB).shift()!;
      const results = pickA ? deliver(a, batch, ...FROM_B, t) : deliver(b, batch, ...FROM_A, t);
      (pickA ? got.a : got.b).push(...deliveredMarks(results));
      for (const r of results) if (r.datagrams.length > 0) (pickA ? toB : toA).push(r.datagrams);
      t++;
    }
    assert.deepEqual(got, { a: [0xb1], b: [0xa1] }, `round ${round}: first packets delivered both ways`);
    assertSessionBothWays(a, b, t);
  }
});

test('property: both ends send their first packet within 400 ms of each other over a path that delays (0-600 ms, reordering) and loses some of the first handshake messages: both packets arrive within 30 s, with no new data to prompt a retry', () => {
  const SIM_END_MS = 30_000;
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 400 }),
      fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 16 }),
      fc.array(fc.boolean(), { maxLength: 4 }),
      (bStartsAfter, latencies, lost) => {
        const { a, b } = pair({ bEndpointForA: true });
        // In flight: [arrival time, to A?, datagram]; the n-th datagram sent takes latencies[n % length].
        const flight: InFlight[] = [];
        let sentCount = 0;
        let handshakeCount = 0;
        const post = (list: Outgoing[], toA: boolean, now: number): void => {
          for (const o of copyOut(list)) {
            const isHandshake = readU32LE(o.data, 0) !== MSG_TRANSPORT;
            // The first handshake messages may be lost (`lost`), data never: the point is the handshake.
            if (isHandshake && lost[handshakeCount++] === true) continue;
            flight.push({ at: now + latencies[sentCount++ % latencies.length], toA, data: [o] });
          }
        };
        const got = { a: [] as number[], b: [] as number[] };
        post(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 4, 0xa1), T0), false, T0);
        let bSent = false;
        let now = T0;
        while (now <= T0 + SIM_END_MS && (got.a.length === 0 || got.b.length === 0)) {
          const bStart = bSent ? Infinity : T0 + bStartsAfter;
          const nextArrival = flight.reduce((m, f) => Math.min(m, f.at), Infinity);
          now = Math.max(now, Math.min(bStart, nextArrival, a.nextDeadline(), b.nextDeadline()));
          if (now > T0 + SIM_END_MS) break;
          if (!bSent && now >= bStart) {
            bSent = true;
            post(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 4, 0xb1), now), true, now);
          }
          const step = stepPath(flight, a, b, now, post);
          got.a.push(...step.a);
          got.b.push(...step.b);
        }
        assert.deepEqual(got, { a: [0xb1], b: [0xa1] }, `not both delivered within ${SIM_END_MS} ms`);
      },
    ),
    { numRuns: 120 },
  );
});

test('after crossed initiations, steady traffic both ways through the rekeys that follow loses no packet in flight', () => {
  // Both ends come up as initiators of their own session (the first test), created at the same instant: they
  // rekey together after Rekey-After-Time, so their rekey initiations cross again. A packet sent on a session the
  // other end is displacing at that moment must still be received.
  const ONE_WAY_MS = 30;
  const SEND_EVERY_MS = 10;
  const SIM_END_MS = 2 * 120_000 + 30_000;
  const { a, b, initA, initB } = bothInitiate();
  const flight: InFlight[] = [];
  const post = (list: Outgoing[], toA: boolean, now: number): void => {
    for (const o of copyOut(list)) flight.push({ at: now + ONE_WAY_MS, toA, data: [o] });
  };
  post(initA, false, T0);
  post(initB, true, T0);
  const got = { a: 0, b: 0 };
  let sent = { a: 1, b: 1 }; // the staged first packets
  let nextSend = T0 + SEND_EVERY_MS;
  let now = T0;
  while (now <= T0 + SIM_END_MS) {
    const nextArrival = flight.reduce((m, f) => Math.min(m, f.at), Infinity);
    now = Math.min(nextSend, nextArrival, a.nextDeadline(), b.nextDeadline());
    if (now === nextSend) {
      post(a.send(0, ipv4Packet('10.0.1.5', '10.0.2.9', 4, 0xa3), now), false, now);
      post(b.send(0, ipv4Packet('10.0.2.9', '10.0.1.5', 4, 0xb3), now), true, now);
      sent = { a: sent.a + 1, b: sent.b + 1 };
      nextSend += SEND_EVERY_MS;
    }
    const step = stepPath(flight, a, b, now, post);
    got.a += step.a.length;
    got.b += step.b.length;
  }
  // Everything sent more than a one-way delay before the end arrived.
  const inFlightAtEnd = Math.ceil(ONE_WAY_MS / SEND_EVERY_MS);
  assert.ok(got.b >= sent.a - inFlightAtEnd && got.a >= sent.b - inFlightAtEnd, `sent ${JSON.stringify(sent)}, delivered to a ${got.a}, to b ${got.b}`);
});
