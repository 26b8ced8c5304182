// What lanes build on (docs/ARCHITECTURE.md "Lanes"), checked against this kernel: a TUN opened with
// IFF_MULTI_QUEUE hands a flow's packets to the queue that last wrote that flow (drivers/net/tun.c
// tun_flow_update / tun_automq_select_queue), and spreads flows it never saw written by their hash.
// One namespace tt-<pid>-mq (stale ones of dead runs removed first); the TUN's two queues stay with this process,
// a UDP echo in the namespace answers what we write. Needs root and /dev/net/tun; fails, never skips, without them.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { PacketBatch } from '../common/packet-batch.js';
import { buildUdp } from '../wire/build.js';
import { IPPROTO_UDP, IPV4_MIN_HEADER, IPV4_PROTOCOL, UDP_DST_PORT } from '../wire/constants.js';
import { read16 } from '../wire/bytes.js';
import { openTun, type TunDevice } from './tun.js';
import { nsSh, removeStaleNamespaces, sh } from '../../test/support/netns.js';

const NS = `tt-${process.pid}-mq`;
const TUN = `tmq${process.pid}`;
const ECHO_PORT = 5000;
const FLOWS = 64;
const FIRST_PORT = 20000;
const UNLEARNED_PORT = 30000;
/** Behavioural bound for replies to arrive (loaded machine), not a timing assertion. */
const WAIT_MS = 10_000;

const ECHO = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
process.stdin.on('data', () => { for (let f = 0; f < ${FLOWS}; f++) s.send(Buffer.from('x'), ${UNLEARNED_PORT} + f, '10.77.0.2'); });
s.bind(${ECHO_PORT}, '10.77.0.1', () => console.log('ready'));`;

describe('multi-queue TUN steering (real kernel, root)', () => {
  const queues: TunDevice[] = [];
  let echo: ChildProcess | null = null;
  /** Destination ports of the UDP replies each queue read. */
  const got: number[][] = [[], []];

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the multi-queue TUN test needs root (CAP_NET_ADMIN); it fails rather than skips');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing (modprobe tun)');
    removeStaleNamespaces();
    try { sh('ip', 'netns', 'del', NS); } catch { /* not there */ }
    sh('ip', 'netns', 'add', NS);
    queues.push(openTun(TUN, { multiQueue: true }), openTun(TUN, { multiQueue: true }));
    sh('ip', 'link', 'set', TUN, 'netns', NS);
    nsSh(NS, `ip link set lo up; ip addr add 10.77.0.1/24 dev ${TUN}; ip link set ${TUN} up`);
    queues.forEach((q, k) => q.startReading(new PacketBatch(64), k, (b) => {
      for (let i = 0; i < b.count; i++) {
        const at = b.offset[i];
        if (b.length[i] >= IPV4_MIN_HEADER + 4 && b.data[at + IPV4_PROTOCOL] === IPPROTO_UDP) got[k].push(read16(b.data, at + IPV4_MIN_HEADER + UDP_DST_PORT));
      }
    }));
    echo = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', ECHO], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      echo?.stdout?.once('data', () => resolve());
      echo?.once('exit', (code) => reject(new Error(`echo exited ${code}`)));
    });
  });

  after(() => {
    echo?.kill('SIGKILL');
    for (const q of queues) q.close();
    try { sh('ip', 'netns', 'del', NS); } catch { /* gone */ }
  });

  async function until(done: () => boolean): Promise<void> {
    for (let waited = 0; !done() && waited < WAIT_MS; waited += 50) await new Promise((r) => setTimeout(r, 50));
  }

  it('replies come back on the queue that wrote the flow; flows never written are spread by hash', async () => {
    const batch = new PacketBatch(1);
    for (let f = 0; f < FLOWS; f++) {
      const pkt = buildUdp({ src: '10.77.0.2', dst: '10.77.0.1' }, { srcPort: FIRST_PORT + f, dstPort: ECHO_PORT, payload: Uint8Array.of(f) });
      batch.count = 0;
      batch.push(pkt, 0, pkt.length, 0);
      assert.equal(queues[f % 2].writeBatch(batch, 0, 1), 1);
    }
    const learned = (): number => got[0].filter((p) => p < UNLEARNED_PORT).length + got[1].filter((p) => p < UNLEARNED_PORT).length;
    await until(() => learned() === FLOWS);
    for (const k of [0, 1]) {
      const wrong = got[k].filter((p) => p < UNLEARNED_PORT && (p - FIRST_PORT) % 2 !== k);
      assert.deepEqual(wrong, [], `queue ${k} read replies of flows written on the other queue`);
    }
    assert.equal(learned(), FLOWS, 'every reply read');

    echo?.stdin?.write('go\n');
    const unlearned = (k: number): number => got[k].filter((p) => p >= UNLEARNED_PORT).length;
    await until(() => unlearned(0) + unlearned(1) === FLOWS);
    assert.equal(unlearned(0) + unlearned(1), FLOWS);
    assert.ok(unlearned(0) > 0 && unlearned(1) > 0, `flows the kernel never saw written land on both queues: ${unlearned(0)} / ${unlearned(1)}`);
  });
});
