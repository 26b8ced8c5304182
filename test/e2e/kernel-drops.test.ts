/**
 * No silent loss (issue 10): a burst that overflows a deliberately tiny TUN queue shows up as the kernel's drops in
 * /metrics and in `tether onramps`. The lab's underlay TUN gets a queue of TINY_QUEUE packets and the daemon is
 * stopped (SIGSTOP) while site-a sends a burst through its real wireguard-go tunnel: the kernel queues TINY_QUEUE
 * of them for the daemon and drops the rest (the TUN's tx_dropped), which the daemon reads off its timer once it
 * runs again. Behaviour only, no timing. Root only: it fails loudly, never skips. Its own prefix per run; labUp
 * removes leftovers of that prefix first, labDown everything it made.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../src/lab/exec.js';
import { inNamespace, inNamespaceOk, LAB, type LabInfo } from '../../src/lab/index.js';
import { nodeTsArgs, TETHER_CLI } from '../../src/lab/paths.js';
import { DEFAULT_UNDERLAY_NAME } from '../../src/daemon/network.js';
import { metric } from '../support/live-site.js';
import { labUpForTest } from '../support/lab-test.js';

const PREFIX = `k${(process.pid % 46656).toString(36)}`;
/** The deliberately tiny queue (packets) of the underlay TUN during the burst. */
const TINY_QUEUE = 8;
/** Datagrams in the burst: many times the queue. */
const BURST = 300;
const DISCARD_PORT = 9;
/** Generous bounds, not measurements. */
const KERNEL_BOUND_MS = 20_000;
const METRICS_BOUND_MS = 30_000;

/** Sends `count` datagrams back to back from the site's host; prints how many. */
const SENDER = `
import socket, sys
host, dst, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, 0))
sent = 0
for i in range(count):
    try:
        s.sendto(b'burst %d' % i, (dst, port))
        sent += 1
    except OSError:
        pass
print(sent)
`;

let lab: LabInfo;

before(async (t) => {
  lab = await labUpForTest(t, { prefix: PREFIX });
});

const underlayDrops = (): Promise<number> => metric(lab, new RegExp(`^tether_kernel_drops_total\\{device="${DEFAULT_UNDERLAY_NAME}",role="underlay",kind="tx_dropped"\\}$`));

/** The kernel's own count, read from the edge namespace (what the daemon must come to show). */
async function kernelTxDropped(): Promise<number> {
  const out = await inNamespaceOk(lab.names.edge, 'cat', [`/sys/class/net/${DEFAULT_UNDERLAY_NAME}/statistics/tx_dropped`]);
  return Number(out.trim());
}

test('a burst into a tiny underlay queue while the daemon does not read: the kernel\'s tx_dropped shows in /metrics and tether onramps', async (t) => {
  const edge = lab.processes.find((p) => p.name === 'edge');
  assert.ok(edge !== undefined, 'the lab started the daemon');
  const before = await underlayDrops();
  await inNamespaceOk(lab.names.edge, 'ip', ['link', 'set', 'dev', DEFAULT_UNDERLAY_NAME, 'txqueuelen', String(TINY_QUEUE)]);
  const kernel0 = await kernelTxDropped();
  process.kill(edge.pid, 'SIGSTOP');
  let kernelDropped = 0;
  try {
    const out = await inNamespaceOk(lab.names.siteA, 'python3', ['-c', SENDER, LAB.siteHost, LAB.internet.server, String(DISCARD_PORT), String(BURST)]);
    assert.equal(Number(out.trim()), BURST, 'site-a sent the whole burst');
    // wireguard-go encrypts and sends on its own schedule: wait (bounded) until the kernel has dropped at the TUN.
    for (const deadline = Date.now() + KERNEL_BOUND_MS; Date.now() < deadline; await sleep(200)) {
      kernelDropped = (await kernelTxDropped()) - kernel0;
      if (kernelDropped >= BURST - TINY_QUEUE - 1) break;
    }
  } finally {
    process.kill(edge.pid, 'SIGCONT');
  }
  assert.ok(kernelDropped > 0, `the kernel dropped at ${DEFAULT_UNDERLAY_NAME} while the daemon was stopped (${kernelDropped})`);

  let shown = 0;
  for (const deadline = Date.now() + METRICS_BOUND_MS; Date.now() < deadline; await sleep(500)) {
    shown = (await underlayDrops()) - before;
    if (shown >= kernelDropped) break;
  }
  t.diagnostic(`burst ${BURST}, queue ${TINY_QUEUE}: the kernel dropped ${kernelDropped}; /metrics shows ${shown} more`);
  assert.ok(shown >= kernelDropped, `tether_kernel_drops_total{device="${DEFAULT_UNDERLAY_NAME}",kind="tx_dropped"} grew by the kernel's count (${shown} of ${kernelDropped})`);

  const cli = await inNamespace(lab.names.edge, process.execPath, nodeTsArgs(TETHER_CLI, ['onramps', '--token-file', join(lab.runDir, 'api-token')]), { timeoutMs: 30_000 });
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /^Kernel drops/m, cli.stdout);
  // The underlay carries every tunnel onramp's outer packets: site-a's WireGuard onramp shows its drops; the
  // data center's interconnect, on a TUN of its own, does not.
  const line = new RegExp(`^site-a-wg: .*${DEFAULT_UNDERLAY_NAME} tx_dropped (\\d+)`, 'm').exec(cli.stdout);
  assert.ok(line !== null && Number(line[1]) >= kernelDropped, cli.stdout);
  assert.doesNotMatch(cli.stdout, /^dc-link: /m, cli.stdout);

  const stats = JSON.parse(await inNamespaceOk(lab.names.edge, 'curl', ['-s', '-H', `authorization: Bearer ${readFileSync(join(lab.runDir, 'api-token'), 'utf8').trim()}`, 'http://127.0.0.1:8470/v1/stats'])) as { kernelDrops: Array<{ device: string; role: string; drops: Record<string, number> }> };
  const underlay = stats.kernelDrops.find((d) => d.device === DEFAULT_UNDERLAY_NAME);
  assert.ok(underlay !== undefined && underlay.role === 'underlay' && (underlay.drops.tx_dropped ?? 0) >= kernelDropped, JSON.stringify(stats.kernelDrops));
});
