/**
 * The ESP data path of the edge with real TUNs, for the ESP end-to-end test (test/e2e/esp-datapath.test.ts):
 * run inside the edge's namespace. The underlay TUN and the IPsec transport are the daemon's own
 * (src/daemon/transports/{underlay,ipsec}.ts); the pipeline is replaced by a plain TUN ("inner"): decrypted
 * packets of the onramp are written there for the kernel to route, and whatever the kernel routes into it is
 * delivered to the onramp (encrypted). Child SAs are installed directly through installChild (no IKE).
 *
 *   argv[2]: JSON { underlay, inner, local, onramp, siteNet }
 *   stdin lines: `install <ChildSa JSON, keys as hex>`, `remove <inbound SPI>`, `status` → one JSON line on stdout
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { PacketBatch } from '../../src/common/packet-batch.js';
import { EDGE_COUNTER_NAMES } from '../../src/daemon/transports/counters.js';
import { IpsecTransport } from '../../src/daemon/transports/ipsec.js';
import { DeliveryTable, TunOutputs, TunnelAddresses, type TransportHost } from '../../src/daemon/transports/transport.js';
import { Underlay } from '../../src/daemon/transports/underlay.js';
import { disableRpFilter } from '../../src/daemon/network.js';
import { openTun } from '../../src/io/tun.js';
import type { ChildSa, EspDirectionKeys } from '../../src/onramp/ipsec/types.js';
import { sh } from './netns.js';

const BATCH = 64;
const cfg = JSON.parse(process.argv[2]) as { underlay: string; inner: string; local: string; onramp: number; siteNet: string; siteNet6?: string };
const log = { info() {}, debug() {}, warn: (o: object, m?: string) => console.error('warn', m, JSON.stringify(o)), error: (o: object, m?: string) => console.error('error', m, JSON.stringify(o)) };
const host: TransportHost = {
  log,
  counters: new Float64Array(EDGE_COUNTER_NAMES.length),
  delivery: new DeliveryTable(),
  outputs: new TunOutputs(BATCH * 2),
  feedback: new PacketBatch(4),
  tunnelAddresses: new TunnelAddresses(),
  mtu: 1500,
  isRunning: () => true,
  readPlain: () => {},
};
const underlay = new Underlay(host, cfg.underlay, BATCH);
const ipsec = new IpsecTransport(host, underlay);
ipsec.open();
ipsec.add({ type: 'ipsec', name: 'site-esp', local: cfg.local }, cfg.onramp);
const utun = underlay.open();
const inner = openTun(cfg.inner);
disableRpFilter(cfg.inner);
if (cfg.siteNet6 === undefined) {
  // No IPv6 on the stand-in for the pipeline: the kernel's router solicitations would go into the tunnel.
  writeFileSync(`/proc/sys/net/ipv6/conf/${cfg.inner}/disable_ipv6`, '1\n');
} else {
  // IPv6 inside, but no address of the TUN's own (no link-local: nothing of the kernel's goes into the tunnel).
  writeFileSync(`/proc/sys/net/ipv6/conf/${cfg.inner}/addr_gen_mode`, '1\n');
}
sh('ip', 'link', 'set', cfg.inner, 'up');
sh('ip', 'route', 'replace', cfg.siteNet, 'dev', cfg.inner);
if (cfg.siteNet6 !== undefined) sh('ip', '-6', 'route', 'replace', cfg.siteNet6, 'dev', cfg.inner);
const innerOut = host.outputs.add(inner);

// Underlay → demux (ESP opened in one call per batch) → the onramp's inner packets into the inner TUN.
utun.startReading(new PacketBatch(BATCH), 0, (b) => {
  host.outputs.reset();
  const n = underlay.demux(b, performance.now());
  for (let i = 0; i < n; i++) if (b.ingress[i] === cfg.onramp) innerOut.idx[innerOut.n++] = i;
  host.outputs.flush(b);
  underlay.flushTx();
});
// Inner TUN → the onramp (ESP sealed in one call per batch) → underlay.
inner.startReading(new PacketBatch(BATCH), 0, (b) => {
  host.outputs.reset();
  const now = performance.now();
  for (let i = 0; i < b.count; i++) ipsec.deliver(b, i, cfg.onramp, now);
  host.outputs.flush(b);
  underlay.flushTx();
});

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
type Wire<T> = Omit<T, 'encryptionKey' | 'integrityKey'> & { encryptionKey: string; integrityKey: string | null };
const keysOf = (k: Wire<EspDirectionKeys>): EspDirectionKeys => ({ ...k, encryptionKey: hex(k.encryptionKey), integrityKey: k.integrityKey === null ? null : hex(k.integrityKey) });

createInterface({ input: process.stdin }).on('line', (line) => {
  const [op, ...rest] = line.split(' ');
  const arg = rest.join(' ');
  try {
    if (op === 'install') {
      const w = JSON.parse(arg) as Omit<ChildSa, 'inbound' | 'outbound'> & { inbound: Wire<EspDirectionKeys>; outbound: Wire<EspDirectionKeys> };
      ipsec.installChild({ ...w, inbound: keysOf(w.inbound), outbound: keysOf(w.outbound), createdAt: performance.now() });
    } else if (op === 'remove') {
      ipsec.removeChild(cfg.onramp, Number(arg));
    }
    const counters: Record<string, number> = {};
    EDGE_COUNTER_NAMES.forEach((name, k) => {
      if (host.counters[k] !== 0) counters[name] = host.counters[k];
    });
    console.log(JSON.stringify({ ok: true, op, status: ipsec.status(), counters }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, op, error: (e as Error).message }));
  }
});
process.stdin.on('end', () => {
  inner.close();
  underlay.close();
  process.exit(0);
});
console.log(JSON.stringify({ ok: true, op: 'ready' }));
