import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Drop } from '../common/drop-reasons.js';
import { DEFAULT_TIMEOUTS, FlowKey, FlowTable, RemoveReason, TcpState } from './flow-table.js';
import { TcpTracker, seqGeq, seqGt, seqLeq, seqLt } from './tcp.js';
import { IPPROTO_TCP, TCP_ACK_FLAG as TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG } from '../wire/constants.js';

const SYN = TCP_SYN;
const SYNACK = TCP_SYN | TCP_ACK;
const ACK = TCP_ACK;
const FINACK = TCP_FIN | TCP_ACK;
const RSTACK = TCP_RST | TCP_ACK;
const ORIG = 0;
const REPLY = 1;
const WINDOW = 65535;

/**
 * Two endpoints talking through the table. snd[d] is what side d sends next (SND.NXT); a side
 * acknowledges everything the other has sent. send() advances snd only when the table accepts.
 */
class Conn {
  readonly removed: [number, RemoveReason][] = [];
  readonly table: FlowTable;
  readonly flow: number;
  readonly snd: [number, number];
  now = 0;
  window: [number, number] = [WINDOW, WINDOW];

  constructor(isnA = 1000, isnB = 5_000_000, capacity = 4) {
    this.table = new FlowTable({ capacity, addrWords: 1, hashSeed: 3, wheelTickMs: 1000, onRemove: (f, why) => this.removed.push([f, why]) });
    const o = new FlowKey().set4(0, IPPROTO_TCP, 0x0a000001, 0x0a000002, 40000, 80);
    const r = new FlowKey().reverseOf(o);
    this.flow = this.table.create(o, r, 1, 0);
    this.snd = [isnA >>> 0, isnB >>> 0];
  }

  get state(): number {
    return this.table.state(this.flow);
  }

  /** Send a segment from dir with the natural seq/ack; returns trackTcp's verdict. */
  send(dir: 0 | 1, flags: number, len = 0, windowScale = -1, over: { seq?: number; ack?: number; window?: number } = {}): number {
    const seq = over.seq ?? this.snd[dir];
    const ack = over.ack ?? ((flags & TCP_ACK) !== 0 ? this.snd[1 - dir] : 0);
    const verdict = this.table.trackTcp(this.flow, dir, flags, seq, ack, over.window ?? this.window[dir], len, windowScale, this.now);
    if (verdict === 0 && over.seq === undefined) {
      this.snd[dir] = (this.snd[dir] + len + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0)) >>> 0;
    }
    return verdict;
  }

  handshake(wsA = -1, wsB = -1): void {
    assert.equal(this.send(ORIG, SYN, 0, wsA), 0);
    assert.equal(this.state, TcpState.SynSent);
    assert.equal(this.send(REPLY, SYNACK, 0, wsB), 0);
    assert.equal(this.state, TcpState.SynRecv);
    assert.equal(this.send(ORIG, ACK), 0);
    assert.equal(this.state, TcpState.Established);
  }

  /** A rejected segment must leave state and deadline as they were. */
  rejects(expected: Drop, dir: 0 | 1, flags: number, len = 0, over: { seq?: number; ack?: number; window?: number } = {}): void {
    const state = this.state;
    const deadline = this.table.deadline(this.flow);
    const established = this.table.isEstablished(this.flow);
    const snd = [...this.snd];
    this.now += 1000;
    assert.equal(this.send(dir, flags, len, -1, over), expected);
    assert.equal(this.state, state);
    assert.equal(this.table.deadline(this.flow), deadline);
    assert.equal(this.table.isEstablished(this.flow), established);
    assert.deepEqual(this.snd, snd);
  }
}

test('serial-number comparisons wrap at 2^32', () => {
  assert.ok(seqLt(0xfffffff0, 0x10), 'seqLt(0xfffffff0, 0x10)');
  assert.ok(seqGt(0x10, 0xfffffff0), 'seqGt(0x10, 0xfffffff0)');
  assert.ok(seqLeq(5, 5) && seqGeq(5, 5), 'seqLeq(5, 5) && seqGeq(5, 5)');
  assert.ok(!seqLt(0x10, 0xfffffff0), '!seqLt(0x10, 0xfffffff0)');
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 0x7fffffff }), (a, d) => {
      const b = (a + d) >>> 0;
      return seqLt(a, b) && seqGt(b, a) && !seqGeq(a, b) && seqLeq(a, b);
    }),
  );
});

test('handshake, data both ways, FIN both ways -> TIME_WAIT; timeouts follow the state', () => {
  const c = new Conn();
  assert.ok(!c.table.isEstablished(c.flow), '!c.table.isEstablished(c.flow)');
  c.handshake();
  assert.ok(c.table.isEstablished(c.flow), 'c.table.isEstablished(c.flow)');
  assert.equal(c.table.deadline(c.flow), c.now + DEFAULT_TIMEOUTS.tcpEstablished);
  c.now = 5000;
  assert.equal(c.send(ORIG, ACK | TCP_PSH, 500), 0);
  assert.equal(c.send(REPLY, ACK, 1460), 0);
  assert.equal(c.send(REPLY, ACK, 1460), 0);
  assert.equal(c.send(ORIG, ACK), 0);
  assert.equal(c.state, TcpState.Established);
  assert.equal(c.table.deadline(c.flow), 5000 + DEFAULT_TIMEOUTS.tcpEstablished);
  // Active close by the client.
  assert.equal(c.send(ORIG, FINACK), 0);
  assert.equal(c.state, TcpState.FinWait);
  assert.equal(c.table.deadline(c.flow), 5000 + DEFAULT_TIMEOUTS.tcpFinWait);
  assert.ok(c.table.isEstablished(c.flow), 'half-closed flows stay protected');
  assert.equal(c.send(REPLY, ACK), 0);
  assert.equal(c.state, TcpState.CloseWait);
  assert.equal(c.send(REPLY, ACK, 100), 0); // the server may still send
  assert.equal(c.send(ORIG, ACK), 0);
  assert.equal(c.send(REPLY, FINACK), 0);
  assert.equal(c.state, TcpState.LastAck);
  assert.equal(c.send(ORIG, ACK), 0);
  assert.equal(c.state, TcpState.TimeWait);
  assert.equal(c.table.deadline(c.flow), 5000 + DEFAULT_TIMEOUTS.tcpTimeWait);
  assert.ok(!c.table.isEstablished(c.flow), 'TIME_WAIT is evictable');
  // The deadline moved earlier (2 h -> 2 min): the flow must go within a tick of it.
  c.table.expire(5000 + DEFAULT_TIMEOUTS.tcpTimeWait - 1, 1_000_000);
  assert.deepEqual(c.removed, []);
  c.table.expire(5000 + DEFAULT_TIMEOUTS.tcpTimeWait + 1000, 1_000_000);
  assert.deepEqual(c.removed, [[c.flow, RemoveReason.Expired]]);
});

test('a deadline that moves earlier without a class change (ESTABLISHED -> FIN_WAIT) is honoured', () => {
  const c = new Conn();
  c.handshake();
  c.now = 3000;
  assert.equal(c.send(ORIG, FINACK), 0);
  assert.equal(c.state, TcpState.FinWait);
  const deadline = 3000 + DEFAULT_TIMEOUTS.tcpFinWait;
  assert.equal(c.table.deadline(c.flow), deadline);
  c.table.expire(deadline - 1, 1_000_000);
  assert.deepEqual(c.removed, []);
  c.table.expire(deadline + 1000, 1_000_000);
  assert.deepEqual(c.removed, [[c.flow, RemoveReason.Expired]]);
});

test('simultaneous close: FINs cross, then the last ACK -> TIME_WAIT', () => {
  const c = new Conn();
  c.handshake();
  const finA = c.snd[ORIG];
  assert.equal(c.send(ORIG, FINACK), 0);
  // B's FIN does not yet acknowledge A's FIN (they crossed).
  assert.equal(c.send(REPLY, FINACK, 0, -1, { ack: finA }), 0);
  assert.equal(c.state, TcpState.LastAck);
  assert.equal(c.send(ORIG, ACK), 0);
  assert.equal(c.state, TcpState.TimeWait);
  assert.equal(c.send(REPLY, ACK), 0);
  assert.equal(c.state, TcpState.TimeWait);
});

test('simultaneous open: SYN both ways -> SYN_SENT2 -> SYN_RECV -> ESTABLISHED', () => {
  const c = new Conn();
  assert.equal(c.send(ORIG, SYN), 0);
  assert.equal(c.send(REPLY, SYN), 0);
  assert.equal(c.state, TcpState.SynSent2);
  assert.ok(!c.table.isEstablished(c.flow), '!c.table.isEstablished(c.flow)');
  assert.equal(c.send(ORIG, SYNACK, 0, -1, { seq: c.snd[ORIG] - 1 }), 0); // A re-sends its SYN, now with ACK
  assert.equal(c.state, TcpState.SynRecv);
  assert.equal(c.send(REPLY, SYNACK, 0, -1, { seq: c.snd[REPLY] - 1 }), 0); // B's SYN/ACK: ignored, accepted
  assert.equal(c.state, TcpState.SynRecv);
  assert.equal(c.send(ORIG, ACK, 10), 0);
  assert.equal(c.state, TcpState.Established);
  assert.ok(c.table.isEstablished(c.flow), 'c.table.isEstablished(c.flow)');
  assert.equal(c.send(REPLY, ACK, 10), 0);
});

test('RST: in window and exact -> CLOSE (and short timeout); inexact or out of window -> rejected, nothing changes', () => {
  const c = new Conn();
  c.handshake();
  assert.equal(c.send(ORIG, ACK, 1000), 0);
  c.rejects(Drop.TcpOutOfWindow, REPLY, RSTACK, 0, { seq: c.snd[REPLY] + 10 }); // in window, not exact (RFC 5961)
  c.rejects(Drop.TcpOutOfWindow, REPLY, TCP_RST, 0, { seq: c.snd[REPLY] + 1_000_000 }); // far out
  c.rejects(Drop.TcpOutOfWindow, ORIG, TCP_RST, 0, { seq: c.snd[ORIG] - 1_000_000 });
  assert.equal(c.state, TcpState.Established);
  c.now = 50_000;
  assert.equal(c.send(REPLY, TCP_RST, 0, -1, { seq: c.snd[REPLY] + 1 }), 0); // +-1 tolerated
  assert.equal(c.state, TcpState.Close);
  assert.equal(c.table.deadline(c.flow), 50_000 + DEFAULT_TIMEOUTS.tcpClose);
  assert.ok(!c.table.isEstablished(c.flow), '!c.table.isEstablished(c.flow)');
  c.table.expire(50_000 + DEFAULT_TIMEOUTS.tcpClose + 1000, 1_000_000);
  assert.deepEqual(c.removed, [[c.flow, RemoveReason.Expired]]);
});

test('RST answering a SYN is accepted only when it acknowledges the SYN (RFC 9293 3.10.7.3)', () => {
  const c = new Conn();
  assert.equal(c.send(ORIG, SYN), 0);
  c.rejects(Drop.TcpOutOfWindow, REPLY, RSTACK, 0, { seq: 0, ack: c.snd[ORIG] + 5 });
  c.rejects(Drop.TcpOutOfWindow, REPLY, TCP_RST, 0, { seq: 0 });
  assert.equal(c.send(REPLY, RSTACK, 0, -1, { seq: 0, ack: c.snd[ORIG] }), 0);
  assert.equal(c.state, TcpState.Close);
});

test('out-of-window data is rejected with no change; acks of unsent data are rejected', () => {
  const c = new Conn();
  c.handshake();
  assert.equal(c.send(ORIG, ACK, 1000), 0);
  // (I) beyond what the server's window allows
  c.rejects(Drop.TcpOutOfWindow, ORIG, ACK, 100, { seq: c.snd[ORIG] + WINDOW + 10 });
  // (II) more than a window behind
  c.rejects(Drop.TcpOutOfWindow, ORIG, ACK, 100, { seq: c.snd[ORIG] - 3 * WINDOW });
  // (III) acknowledges data the server has not sent
  c.rejects(Drop.TcpOutOfWindow, ORIG, ACK, 0, { ack: c.snd[REPLY] + 1 });
  c.rejects(Drop.TcpOutOfWindow, REPLY, ACK, 0, { ack: c.snd[ORIG] + 5000 });
  // (IV) acknowledges too far back
  c.rejects(Drop.TcpOutOfWindow, REPLY, ACK, 0, { ack: c.snd[ORIG] - 10 * WINDOW });
  // a retransmission within the window is fine, and so is the flow afterwards
  assert.equal(c.send(ORIG, ACK, 500, -1, { seq: c.snd[ORIG] - 1000 }), 0);
  assert.equal(c.send(REPLY, ACK, 10), 0);
  assert.equal(c.send(ORIG, ACK, 10), 0);
});

test('invalid flag combinations and SYN on an established flow -> TcpInvalid, nothing changes', () => {
  const c = new Conn();
  c.rejects(Drop.TcpInvalid, ORIG, ACK); // the first segment must be a SYN
  c.rejects(Drop.TcpInvalid, ORIG, SYNACK);
  c.rejects(Drop.TcpInvalid, ORIG, TCP_SYN | TCP_FIN);
  assert.equal(c.state, TcpState.None);
  c.handshake();
  c.rejects(Drop.TcpInvalid, ORIG, TCP_SYN | TCP_FIN);
  c.rejects(Drop.TcpInvalid, ORIG, TCP_SYN | TCP_RST);
  c.rejects(Drop.TcpInvalid, ORIG, 0);
  c.rejects(Drop.TcpInvalid, ORIG, TCP_FIN); // FIN without ACK
  c.rejects(Drop.TcpInvalid, ORIG, TCP_FIN | TCP_URG | TCP_PSH);
  c.rejects(Drop.TcpInvalid, ORIG, SYN, 0, { seq: c.snd[ORIG] });
  c.rejects(Drop.TcpInvalid, REPLY, SYN);
  assert.equal(c.send(ORIG, ACK | TCP_URG | TCP_PSH | 0xc0, 5), 0); // URG/PSH/ECE/CWR are fine
});

test('window scaling applies only when both SYNs carry the option (RFC 7323)', () => {
  for (const [wsA, wsB, scaled] of [
    [7, 7, true],
    [7, -1, false],
    [-1, 7, false],
  ] as const) {
    const c = new Conn();
    c.window = [1000, 1000];
    c.handshake(wsA, wsB);
    assert.equal(c.send(REPLY, ACK), 0); // the server's first scaled window: 1000 << 7 = 128000
    const far = c.snd[ORIG] + 100_000;
    const verdict = c.send(ORIG, ACK, 100, -1, { seq: far });
    assert.equal(verdict, scaled ? 0 : Drop.TcpOutOfWindow, `ws ${wsA}/${wsB}`);
  }
});

test('sequence numbers wrap around 2^32', () => {
  const c = new Conn(0xffffff00, 0xfffffff0);
  c.handshake();
  for (let i = 0; i < 10; i++) {
    assert.equal(c.send(ORIG, ACK, 100), 0);
    assert.equal(c.send(REPLY, ACK, 3), 0);
  }
  assert.ok(c.snd[ORIG] < 0x1000 && c.snd[REPLY] < 0x1000, 'both sides wrapped');
  c.rejects(Drop.TcpOutOfWindow, ORIG, ACK, 10, { seq: c.snd[ORIG] + WINDOW + 10 });
  c.rejects(Drop.TcpOutOfWindow, ORIG, ACK, 0, { ack: c.snd[REPLY] + 1 });
  assert.equal(c.send(ORIG, ACK, 10, -1, { seq: c.snd[ORIG] - 500 }), 0); // retransmission across the wrap
  assert.equal(c.send(ORIG, FINACK), 0);
  assert.equal(c.send(REPLY, FINACK), 0);
  assert.equal(c.send(ORIG, ACK), 0);
  assert.equal(c.state, TcpState.TimeWait);
});

test('a SYN in the original direction reopens a TIME_WAIT flow; the reply direction may not', () => {
  const c = new Conn();
  c.handshake();
  c.send(ORIG, FINACK);
  c.send(REPLY, FINACK);
  c.send(ORIG, ACK);
  assert.equal(c.state, TcpState.TimeWait);
  c.rejects(Drop.TcpInvalid, REPLY, SYN);
  c.snd[ORIG] += 1_000_000; // a new ISN
  assert.equal(c.send(ORIG, SYN), 0);
  assert.equal(c.state, TcpState.SynSent);
  assert.ok(!c.table.isEstablished(c.flow), '!c.table.isEstablished(c.flow)');
  assert.equal(c.table.deadline(c.flow), c.now + DEFAULT_TIMEOUTS.tcpSynSent);
  c.snd[REPLY] += 7_000_000;
  assert.equal(c.send(REPLY, SYNACK), 0);
  assert.equal(c.send(ORIG, ACK), 0);
  assert.equal(c.state, TcpState.Established);
});

test('TCP eviction: TIME_WAIT flows are evictable, FIN_WAIT flows are not', () => {
  const removed: [number, RemoveReason][] = [];
  const t = new FlowTable({ capacity: 2, addrWords: 1, hashSeed: 1, onRemove: (f, why) => removed.push([f, why]) });
  const flows: number[] = [];
  for (let i = 0; i < 2; i++) {
    const o = new FlowKey().set4(0, IPPROTO_TCP, 1, 2, 1000 + i, 80);
    const f = t.create(o, new FlowKey().reverseOf(o), 1, 0);
    flows.push(f);
    t.trackTcp(f, 0, SYN, 100, 0, WINDOW, 0, -1, 0);
    t.trackTcp(f, 1, SYNACK, 900, 101, WINDOW, 0, -1, 0);
    t.trackTcp(f, 0, ACK, 101, 901, WINDOW, 0, -1, 0);
    assert.equal(t.trackTcp(f, 0, FINACK, 101, 901, WINDOW, 0, -1, 0), 0);
    assert.equal(t.state(f), TcpState.FinWait);
  }
  const o = new FlowKey().set4(0, IPPROTO_TCP, 1, 2, 2000, 80);
  const r = new FlowKey().reverseOf(o);
  assert.equal(t.create(o, r, 2, 1000), -Drop.TableFull);
  // Finish the second flow's close: TIME_WAIT.
  const f = flows[1];
  assert.equal(t.trackTcp(f, 1, FINACK, 901, 102, WINDOW, 0, -1, 0), 0);
  assert.equal(t.trackTcp(f, 0, ACK, 102, 902, WINDOW, 0, -1, 0), 0);
  assert.equal(t.state(f), TcpState.TimeWait);
  assert.equal(t.create(o, r, 2, 1000), f);
  assert.deepEqual(removed, [[f, RemoveReason.Evicted]]);
  assert.equal(t.state(flows[0]), TcpState.FinWait);
});

test('a rejected segment never writes the window arrays (random segments against a live connection)', () => {
  const flagArb = fc.constantFrom(SYN, SYNACK, ACK, ACK | TCP_PSH, FINACK, TCP_RST, RSTACK, TCP_FIN, 0, TCP_SYN | TCP_FIN, TCP_SYN | TCP_RST);
  const segArb = fc.record({
    dir: fc.constantFrom(0, 1),
    flags: flagArb,
    seqDelta: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -200_000, max: 200_000 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
    ackDelta: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -200_000, max: 200_000 })),
    len: fc.constantFrom(0, 1, 100, 1460),
    window: fc.constantFrom(0, 1, 1000, 65535),
    ws: fc.constantFrom(-1, 0, 7, 14, 15),
  });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.array(segArb, { maxLength: 60 }), (isnA, isnB, segs) => {
      const tcp = new TcpTracker(1);
      let state: number = tcp.track(0, TcpState.None, SYN, isnA, 0, WINDOW, 0, 7);
      state = tcp.track(1, state, SYNACK, isnB, isnA + 1, WINDOW, 0, 7);
      state = tcp.track(0, state, ACK, isnA + 1, isnB + 1, WINDOW, 0, -1);
      assert.equal(state, TcpState.Established);
      for (const s of segs) {
        const before = [...tcp.end, ...tcp.maxEnd, ...tcp.maxWin, ...tcp.scale];
        const node = s.dir;
        // seq/ack relative to what each side has sent so far
        const seq = (tcp.end[node] + s.seqDelta) >>> 0;
        const ack = (tcp.end[node ^ 1] + s.ackDelta) >>> 0;
        const r = tcp.track(node, state, s.flags, seq, ack, s.window, s.len, s.ws);
        if (r < 0) {
          assert.ok(r === -Drop.TcpInvalid || r === -Drop.TcpOutOfWindow, 'r === -Drop.TcpInvalid || r === -Drop.TcpOutOfWindow');
          assert.deepEqual([...tcp.end, ...tcp.maxEnd, ...tcp.maxWin, ...tcp.scale], before);
        } else {
          assert.ok(r < 10, 'r < 10');
          state = r;
        }
      }
    }),
    { numRuns: 200 },
  );
});
