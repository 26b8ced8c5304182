/**
 * `node dist/bench/lab-uso.js` (root; `npx tsc -p tsconfig.build.json` first) — what UDP coalescing (USO,
 * native/src/tether_io.cc "UDP coalescing") saves per small datagram, IPv4 and IPv6, in process and same run
 * (docs/PERFORMANCE.md "64-byte UDP"). bench:lab's topology is IPv4 only; this measures the addon's write side
 * alone, which is where coalescing acts: a batch of 64 datagrams of one flow (36-byte payloads, as iperf3 -l 36;
 * full checksums), written by writeBatch into
 *   - a TUN with offloads: the run goes to the kernel as one super-packet, or
 *   - a TUN with a virtio-net header and no offloads (the reference): one writev per datagram,
 * and forwarded by the kernel in that write out of a veth that segments in software (tx-udp-segmentation
 * off, as bench:lab's Internet links): both sides pay the kernel's forwarding of every datagram that leaves. Rounds
 * alternate the four cases (--rounds, --ms per case); the figure is datagrams written per second of wall time, and
 * the veth's tx_packets must grow by at least as many as were written (the odd neighbour message besides).
 *
 * Own names: namespace `<prefix>-uso-<pid>` (--prefix, default `tu`); leftovers of that prefix are removed first.
 */
import { existsSync, readdirSync } from 'node:fs';
import { PacketBatch } from '../src/common/packet-batch.js';
import { buildUdp } from '../src/wire/build.js';
import { openTun, type TunDevice } from '../src/io/tun.js';
import { run } from '../src/lab/exec.js';

const args = process.argv.slice(2);
function option(name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const PREFIX = option('--prefix', 'tu');
const ROUNDS = Number(option('--rounds', '5'));
const CASE_MS = Number(option('--ms', '1000'));
const json = args.includes('--json');
const NS = `${PREFIX}-uso-${process.pid}`;
/** Datagrams per writeBatch: one super-packet's worth (kUsoMaxSegments in the addon). */
const DATAGRAMS = 64;
/** iperf3 -l 36: the payload of bench:lab's "64-byte UDP" (36 + 8 UDP + 20 IPv4; over IPv6 the packet is 84 bytes). */
const PAYLOAD = 36;
const PORT = 9000;
const DUMMY = 'uso-sink';
/** A locally administered MAC nobody has: the sink's peer drops every frame as not its own. */
const SINK_MAC = '02:00:00:00:00:02';

async function sh(cmd: string, a: string[]): Promise<string> {
  const r = await run(cmd, a, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${a.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}
const inNs = (cmd: string, a: string[]): Promise<string> => sh('ip', ['netns', 'exec', NS, cmd, ...a]);

async function removeLeftovers(): Promise<void> {
  for (const ns of (existsSync('/run/netns') ? readdirSync('/run/netns') : []).filter((n) => n.startsWith(`${PREFIX}-uso-`))) {
    await run('ip', ['netns', 'del', ns]);
  }
}

interface Case { family: 4 | 6; coalesced: boolean; tun: TunDevice; batch: PacketBatch }

/** 64 datagrams of one flow from the TUN's far side to the sink: consecutive IPv4 ids, full checksums. */
function batchOf(family: 4 | 6, net: number): PacketBatch {
  const batch = new PacketBatch(DATAGRAMS);
  for (let k = 0; k < DATAGRAMS; k++) {
    const payload = new Uint8Array(PAYLOAD).fill(k);
    const ip = family === 4 ? { src: `10.${net}.0.2`, dst: '10.93.0.2', id: 1000 + k } : { src: `fd${net}::2`, dst: 'fd93::2' };
    const p = buildUdp(ip, { srcPort: PORT, dstPort: PORT, payload });
    batch.push(p, 0, p.length, 0);
  }
  return batch;
}

async function txPackets(): Promise<number> {
  return Number((await inNs('cat', [`/sys/class/net/${DUMMY}/statistics/tx_packets`])).trim());
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (a network namespace, TUNs, a veth)');
  await removeLeftovers();
  await sh('ip', ['netns', 'add', NS]);
  const tuns: TunDevice[] = [];
  try {
    await inNs('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    // A veth whose peer drops what it gets (a MAC not its own): the kernel resolves, segments and transmits each datagram.
    await inNs('ip', ['link', 'add', DUMMY, 'type', 'veth', 'peer', 'name', `${DUMMY}-p`]);
    await inNs('ip', ['addr', 'add', '10.93.0.1/24', 'dev', DUMMY]);
    await inNs('ip', ['addr', 'add', 'fd93::1/64', 'dev', DUMMY, 'nodad']);
    for (const dev of [DUMMY, `${DUMMY}-p`]) await inNs('ip', ['link', 'set', dev, 'up']);
    for (const dst of ['10.93.0.2', 'fd93::2']) await inNs('ip', ['neigh', 'replace', dst, 'lladdr', SINK_MAC, 'dev', DUMMY, 'nud', 'permanent']);
    await inNs('ethtool', ['-K', DUMMY, 'tx-udp-segmentation', 'off']);
    const with_ = openTun('', { offload: true });
    const without = openTun('', { vnetHdr: true });
    tuns.push(with_, without);
    for (const [tun, net] of [[with_, 91], [without, 92]] as const) {
      await sh('ip', ['link', 'set', tun.name, 'netns', NS]);
      await inNs('ip', ['addr', 'add', `10.${net}.0.1/24`, 'dev', tun.name]);
      await inNs('ip', ['addr', 'add', `fd${net}::1/64`, 'dev', tun.name, 'nodad']);
      await inNs('ip', ['link', 'set', tun.name, 'up']);
    }
    const cases: Case[] = [];
    for (const family of [4, 6] as const) {
      cases.push({ family, coalesced: true, tun: with_, batch: batchOf(family, 91) });
      cases.push({ family, coalesced: false, tun: without, batch: batchOf(family, 92) });
    }
    const rates = new Map<Case, number[]>(cases.map((c) => [c, []]));
    let check = '';
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of cases) {
        const before = c.tun.counters();
        const tx0 = await txPackets();
        let written = 0;
        const t0 = performance.now();
        let t = t0;
        while (t - t0 < CASE_MS) {
          written += c.tun.writeBatch(c.batch);
          t = performance.now();
        }
        const after = c.tun.counters();
        const sent = (await txPackets()) - tx0;
        rates.get(c)!.push((written * 1000) / (t - t0));
        const merged = after.coalescedOut - before.coalescedOut;
        if (c.coalesced !== merged > 0 || sent < written) check += ` IPv${c.family} ${c.coalesced ? 'coalesced' : 'one by one'}: written ${written}, merged ${merged}, left the sink ${sent};`;
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const out = Object.fromEntries(cases.map((c) => [`ipv${c.family}_${c.coalesced ? 'coalesced' : 'one_by_one'}_dps`, rates.get(c)!.map(Math.round)]));
    const ratio = (family: 4 | 6): number => median(rates.get(cases.find((c) => c.family === family && c.coalesced)!)!) / median(rates.get(cases.find((c) => c.family === family && !c.coalesced)!)!);
    const result = { bench: 'lab-uso', date: new Date().toISOString(), rounds: ROUNDS, ms_per_case: CASE_MS, datagrams_per_batch: DATAGRAMS, payload_bytes: PAYLOAD, ...out, ratio_ipv4: ratio(4), ratio_ipv6: ratio(6), problems: check.trim() };
    if (json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      for (const c of cases) process.stdout.write(`IPv${c.family} ${c.coalesced ? 'coalesced (USO)' : 'one writev each'}: median ${(median(rates.get(c)!) / 1e6).toFixed(3)} M datagrams/s (${rates.get(c)!.map((r) => (r / 1e6).toFixed(3)).join(' ')})\n`);
      process.stdout.write(`coalesced / one by one: IPv4 ${result.ratio_ipv4.toFixed(2)}, IPv6 ${result.ratio_ipv6.toFixed(2)}${check === '' ? '' : `\nPROBLEMS:${check}`}\n`);
    }
    if (check !== '') process.exitCode = 1;
  } finally {
    for (const t of tuns) t.close();
    await run('ip', ['netns', 'del', NS]);
  }
}

void main().catch((e: unknown) => {
  process.stderr.write(`lab-uso: ${(e as Error).message}\n`);
  process.exit(1);
});
