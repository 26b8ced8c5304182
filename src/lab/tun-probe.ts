/**
 * A stand-in for the edge's TUN side, for testing the lab without the daemon (lab.test.ts) and for poking at
 * a lab by hand. Run inside the edge namespace:
 *
 *   ip netns exec <p>-edge node --import tsx src/lab/tun-probe.ts \
 *       --underlay tt-underlay --endpoints 192.168.101.1,192.168.102.1,192.168.103.1 \
 *       --egress tt-egress --pool 198.51.100.1
 *
 * It opens the two TUNs (src/io/tun.ts), brings them up and adds the routes the daemon would add
 * (docs/UNDERLAY.md: ADDR/32 dev tt-underlay per endpoint, POOL/32 dev tt-egress, rp_filter=0 and the quiet IPv6
 * settings on both), then
 *   - prints every packet read from either TUN as a JSON line {"tun":"underlay"|"egress","hex":"…"};
 *   - writes every JSON line {"tun":"underlay"|"egress","hex":"…"} read on stdin into that TUN.
 * Prints {"ready":true} once the routes exist. Exits on stdin EOF or SIGTERM (the TUNs and routes vanish).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { PacketBatch } from '../common/packet-batch.js';
import { openTun, type TunDevice } from '../io/tun.js';
import { quietIpv6 } from '../daemon/network.js';

const BATCH = 64;
const INGRESS_UNUSED = 0;

function main(): void {
  const { values } = parseArgs({
    options: {
      underlay: { type: 'string', default: 'tt-underlay' },
      egress: { type: 'string', default: 'tt-egress' },
      endpoints: { type: 'string', default: '' },
      pool: { type: 'string', default: '' },
    },
  });
  const tuns: Record<string, TunDevice> = {
    underlay: openTun(values.underlay ?? 'tt-underlay'),
    egress: openTun(values.egress ?? 'tt-egress'),
  };
  const routes: Array<[string, string]> = [
    ...(values.endpoints ?? '').split(',').filter(Boolean).map((a): [string, string] => [a, tuns.underlay.name]),
    ...(values.pool ?? '').split(',').filter(Boolean).map((a): [string, string] => [a, tuns.egress.name]),
  ];
  for (const [role, tun] of Object.entries(tuns)) {
    quietIpv6(tun.name); // as the daemon's TUNs: no MLD or router solicitations of the kernel's in the output
    execFileSync('ip', ['link', 'set', tun.name, 'up']);
    writeFileSync(`/proc/sys/net/ipv4/conf/${tun.name}/rp_filter`, '0');
    const batch = new PacketBatch(BATCH);
    tun.startReading(batch, INGRESS_UNUSED, (b) => {
      for (let i = 0; i < b.count; i++) {
        process.stdout.write(JSON.stringify({ tun: role, hex: Buffer.from(b.packet(i)).toString('hex') }) + '\n');
      }
    });
  }
  for (const [addr, dev] of routes) execFileSync('ip', ['route', 'replace', `${addr}/32`, 'dev', dev]);

  const out = new PacketBatch(1);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    const msg = JSON.parse(line) as { tun: string; hex: string };
    const tun = tuns[msg.tun];
    if (tun === undefined) throw new Error(`tun-probe: unknown tun "${msg.tun}"`);
    const bytes = Buffer.from(msg.hex, 'hex');
    out.clear();
    out.push(bytes, 0, bytes.length, INGRESS_UNUSED);
    tun.writeBatch(out);
  });
  const stop = (): void => {
    for (const tun of Object.values(tuns)) tun.close();
    process.exit(0);
  };
  lines.on('close', stop);
  process.on('SIGTERM', stop);
  process.stdout.write(JSON.stringify({ ready: true, underlay: tuns.underlay.name, egress: tuns.egress.name }) + '\n');
}

main();
