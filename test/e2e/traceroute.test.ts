/**
 * The edge is a hop (issue 13), end to end in the lab: Debian's traceroute (UDP, ICMP, TCP SYN), mtr and tracepath
 * from both overlapping sites (10.0.1.10 each, over wireguard-go) list the edge and the destination; ping -t 1
 * gets time exceeded from the edge; ping to the egress pool address is answered by the edge; a burst of 500
 * expiring probes (test/support/ttl-burst.py: sent from sockets, counted by scapy) meets the rate limit. Root only:
 * as in CI, it fails loudly, never skips.
 *
 * The lab's paths: site → edge (tether, hop 1: 198.51.100.1, the pool address, as neither site has a tunnel
 * address) → the edge namespace's kernel (the egress and interconnect TUNs hand packets to it) → the server.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { defaultConfig } from '../../src/lab/config.js';
import { inNamespace, labStatus, LAB, run } from '../../src/lab/index.js';
import type { LabInfo } from '../../src/lab/index.js';
import { SYSTEM_PYTHON } from '../../src/lab/paths.js';
import { DEFAULT_ICMP_PER_SOURCE_BURST, DEFAULT_ICMP_PER_SOURCE_PER_SECOND } from '../../src/dataplane/icmp-rate-limit.js';
import { edgeStatus } from '../support/edge-status.js';
import { labUpForTest } from '../support/lab-test.js';

/** This file's own lab prefix, per process (two runs at once do not meet; labUp removes what a run of the same prefix left). */
const PREFIX = `th${(process.pid % 1296).toString(36)}`;
/** The egress pool's address: the edge's source for both sites (neither has a tunnel address or icmp_source). */
const POOL = defaultConfig().egress!.addresses[0];
const INTERNET_SERVER = LAB.internet.server;
const DC_SERVER = LAB.dc.server;
/** Enough hops for the lab (3) with room; a hop waits at most 3 s for its answer (a shared, busy machine). */
const MAX_HOPS = '8';
const WAIT_SECONDS = '3';
/** The burst of expiring probes for the rate limit. */
const BURST_PROBES = 500;
/** Slack on the burst's elapsed time for the last probes still in flight when the sender returns (s). */
const IN_FLIGHT_SECONDS = 0.5;
const TOOLS = [
  ['traceroute', ['--version']],
  ['mtr', ['--version']],
  ['tracepath', ['-V']],
  ['ping', ['-V']],
  [SYSTEM_PYTHON, ['-c', 'import scapy']],
] as const;

let lab: LabInfo;
let sites: Array<[string, string]>;

interface IcmpStatus {
  icmp: { timeExceededSent: number; rateLimited: number; noSource: number; echoAnswered: number };
  flows: { ipv4: number; ipv6: number };
}

async function status(): Promise<IcmpStatus> {
  const s = await labStatus({ prefix: PREFIX });
  return edgeStatus<IcmpStatus>(s.edge!.pid!, lab.edgeLog!);
}

/** Runs a command in a namespace; its stdout, or a failure that shows the command and its output. */
async function inNs(ns: string, command: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await inNamespace(ns, command, args, { timeoutMs });
  assert.equal(r.code, 0, `${command} ${args.join(' ')} in ${ns} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** traceroute -n output: per hop, the addresses that answered ('*' when none). */
function tracerouteHops(out: string): string[] {
  return out.split('\n').filter((l) => /^\s*\d+\s/.test(l)).map((l) => l.trim().split(/\s+/)[1]);
}

/** mtr --report -n output: per hop, its address ('???' when none answered). */
function mtrHops(out: string): string[] {
  return out.split('\n').map((l) => /^\s*\d+\.\|--\s+(\S+)/.exec(l)?.[1]).filter((h): h is string => h !== undefined);
}

before(async (t) => {
  for (const [tool, args] of TOOLS) {
    const r = await run(tool, [...args]).catch((e: Error) => ({ code: -1, stderr: e.message, stdout: '' }));
    if (r.code !== 0) throw new Error(`${tool} is missing or broken (scripts/debian-deps.sh installs traceroute, mtr-tiny, iputils-tracepath, iputils-ping, python3-scapy): ${r.stderr}`);
  }
  lab = await labUpForTest(t, { prefix: PREFIX, config: defaultConfig() });
  sites = [['site-a', lab.names.siteA], ['site-b', lab.names.siteB]];
});

for (const [mode, flags] of [['UDP', []], ['ICMP', ['-I']], ['TCP SYN', ['-T', '-p', String(LAB.httpPort)]]] as const) {
  test(`traceroute (${mode}) from both overlapping sites to the Internet and the data center lists the edge and the destination`, async (t) => {
    for (const [site, ns] of sites) {
      for (const dst of [INTERNET_SERVER, DC_SERVER]) {
        const args = ['-n', ...flags, '-q', '1', '-w', WAIT_SECONDS, '-m', MAX_HOPS, dst];
        let out = await inNs(ns, 'traceroute', args);
        let hops = tracerouteHops(out);
        // One retry, the first attempt kept as a diagnostic: under load (three copies of this file at once) traceroute
        // now and then prints '*' for hops 2..8 although every answer reached the site's interface within milliseconds
        // (tcpdump on the site's WireGuard interface: the echo replies / SYN-ACKs, valid checksums; the site's kernel
        // answered the SYN-ACKs with RSTs), so the edge had done its part. A deterministic loss still fails the retry.
        if (hops[0] === POOL && hops.at(-1) !== dst) {
          t.diagnostic(`${site} → ${dst}: first attempt without the destination, retried once\n${out}\nthe edge's status: ${JSON.stringify(await status())}`);
          out = await inNs(ns, 'traceroute', args);
          hops = tracerouteHops(out);
        }
        // On a failure, the edge's status (drops, counters) says where the probes went (a test diagnostic, not an assertion).
        const why = hops[0] === POOL && hops.at(-1) === dst ? '' : `\nthe edge's status: ${JSON.stringify(await status())}`;
        assert.equal(hops[0], POOL, `${site} → ${dst}: the edge is hop 1\n${out}${why}`);
        assert.equal(hops.at(-1), dst, `${site} → ${dst}: the destination is the last hop\n${out}${why}`);
      }
    }
  });
}

test('mtr --report -c 3 from both sites lists the edge and the destination', async () => {
  for (const [site, ns] of sites) {
    for (const dst of [INTERNET_SERVER, DC_SERVER]) {
      const out = await inNs(ns, 'mtr', ['-n', '--report', '-c', '3', '-m', MAX_HOPS, dst]);
      const hops = mtrHops(out);
      assert.equal(hops[0], POOL, `${site} → ${dst}\n${out}`);
      assert.equal(hops.at(-1), dst, `${site} → ${dst}\n${out}`);
    }
  }
});

test('tracepath from both sites to the Internet server: the edge at hop 1, the server reached', async () => {
  for (const [site, ns] of sites) {
    const out = await inNs(ns, 'tracepath', ['-n', '-m', MAX_HOPS, INTERNET_SERVER]);
    assert.match(out, new RegExp(`^\\s*1:\\s+${POOL.replace(/\./g, '\\.')}\\s`, 'm'), `${site}\n${out}`);
    assert.match(out, new RegExp(`${INTERNET_SERVER.replace(/\./g, '\\.')}\\s+[\\d.]+ms reached`), `${site}\n${out}`);
  }
});

test('ping -t 1 from each site gets one time exceeded from the edge; ping to the pool address gets replies, no flow', async () => {
  for (const [site, ns] of sites) {
    const r = await inNamespace(ns, 'ping', ['-n', '-c', '1', '-W', WAIT_SECONDS, '-t', '1', INTERNET_SERVER]);
    const lines = r.stdout.split('\n').filter((l) => l.includes('Time to live exceeded'));
    assert.deepEqual(lines, [`From ${POOL} icmp_seq=1 Time to live exceeded`], `${site}: exactly one error for one probe\n${r.stdout}`);
  }
  const before = await status();
  for (const [site, ns] of sites) {
    const out = await inNs(ns, 'ping', ['-n', '-c', '3', '-i', '0.2', '-W', WAIT_SECONDS, POOL]);
    assert.match(out, /3 packets transmitted, 3 received/, `${site}\n${out}`);
    assert.match(out, new RegExp(`from ${POOL.replace(/\./g, '\\.')}: icmp_seq=1 ttl=64`), `${site}\n${out}`);
  }
  // From the Internet side too: the pool address is the edge's public face.
  const fromInternet = await inNs(lab.names.internet, 'ping', ['-n', '-c', '2', '-i', '0.2', '-W', WAIT_SECONDS, POOL]);
  assert.match(fromInternet, /2 packets transmitted, 2 received/, fromInternet);
  const after = await status();
  assert.equal(after.icmp.echoAnswered - before.icmp.echoAnswered, 8, `answered by the edge: ${JSON.stringify(after.icmp)}`);
});

test(`rate limit: ${BURST_PROBES} expiring probes in a burst from site-a get at most burst + rate × elapsed errors; site-b still gets its own`, async () => {
  const before = await status();
  const script = join(import.meta.dirname, '..', 'support', 'ttl-burst.py');
  const out = await inNs(lab.names.siteA, SYSTEM_PYTHON, [script, lab.names.wgA, INTERNET_SERVER, String(BURST_PROBES)]);
  const burst = JSON.parse(out.trim().split('\n').pop()!) as { sent: number; errors: number; sendSeconds: number };
  const elapsed = burst.sendSeconds + IN_FLIGHT_SECONDS;
  const bound = DEFAULT_ICMP_PER_SOURCE_BURST + DEFAULT_ICMP_PER_SOURCE_PER_SECOND * elapsed;
  // Site-b's 10.0.1.10 is another sender (another zone): its bucket is full.
  const b = await inNamespace(lab.names.siteB, 'ping', ['-n', '-c', '1', '-W', WAIT_SECONDS, '-t', '1', INTERNET_SERVER]);
  const after = await status();
  const sent = after.icmp.timeExceededSent - before.icmp.timeExceededSent;
  const limited = after.icmp.rateLimited - before.icmp.rateLimited;
  const report = `site saw ${burst.errors} errors for ${burst.sent} probes sent in ${burst.sendSeconds.toFixed(2)} s; tether sent ${sent}, rate-limited ${limited}; bound ${bound.toFixed(0)}`;
  assert.ok(burst.errors >= DEFAULT_ICMP_PER_SOURCE_BURST, `at least the burst comes back: ${report}`);
  assert.ok(burst.errors <= bound, `the site saw no more than the bound: ${report}`);
  assert.ok(sent - 1 <= bound, `tether sent no more than the bound (plus site-b's one): ${report}`);
  assert.ok(burst.errors <= sent, `the site saw no error tether did not count: ${report}`);
  // The rest were held back and counted (fewer when the tunnel itself lost some probes on the way in).
  assert.ok(limited > 0 && sent - 1 + limited <= BURST_PROBES, `the probes held back are counted as rate-limited: ${report}`);
  assert.match(b.stdout, /Time to live exceeded/, `site-b's own bucket: ${b.stdout}\n${report}`);
});
