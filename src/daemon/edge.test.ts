// The daemon end to end, on real interfaces (the lab's topology of docs/UNDERLAY.md, scaled down). Each run builds its
// own namespaces tt-<pid>-{edge,dc,inet,site}, removes those of dead earlier runs first, and deletes its own
// in `after`. `tether run` runs inside the edge namespace as a child process (the CLI, as operators run it);
// the hosts are Node dgram children started with `ip netns exec`, and the WireGuard site is tether's own
// WireGuard engine over a kernel UDP socket (test-wg-peer.ts).
// Needs root and /dev/net/tun: without them the suite FAILS (it must not pass silently in CI).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PacketBatch } from '../common/packet-batch.js';
import { LAB_WIREGUARD_KEYS } from '../lab/config.js';
import { openTun, type TunDevice } from '../io/tun.js';
import { buildIcmpEcho, buildUdp, parsePacket } from '../../src/wire/build.js';
import { IPPROTO_GRE } from '../wire/constants.js';
import type { EdgeStatus } from './edge.js';
import { planNetwork } from './network.js';
import { nsSh, removeStaleNamespaces, sh } from '../../test/support/netns.js';
import { nsScript, nsSpawn, type Child } from '../../test/support/ns-child.js';
import { GRE_HEADER, GRE_KEY_FIELD, greFrame as greSiteFrame } from '../../test/support/gre-site.js';

const PREFIX = `tt-${process.pid}-`;
type Namespaces = Record<'edge' | 'dc' | 'inet' | 'site' | 'gre', string>;
function namespaces(prefix: string): Namespaces {
  return { edge: `${prefix}edge`, dc: `${prefix}dc`, inet: `${prefix}inet`, site: `${prefix}site`, gre: `${prefix}gre` };
}
const NS = namespaces(PREFIX);
/** The GRE site's TUN: the test writes its GRE packets there and reads what the edge sends back. */
const GRE_TUN = `tg${process.pid}`;
const CLI = ['--import', 'tsx', 'src/cli/tether.ts', 'run'];
/** A generous bound on the daemon's start (a loaded 2-core machine builds the API slowly); not a timed assertion. */
const START_TIMEOUT_MS = 30_000;
/**
 * How long a client waits for its answer through the daemon: generous, a behavioural bound (at load 20 the first
 * datagram sent after "tether started" came back after 2.3 to 5.9 s, behind the API's start; 5 s failed 4 times).
 */
const CHILD_TIMEOUT_MS = 30_000;
const EXIT_BAD_CONFIG = 2;

const DC_HOST = '172.16.0.20';
const SERVER = '203.0.113.10';
const ECHO_PORT = 7;
const POOL = '198.51.100.1';
// IPv6 beside IPv4 on the same links (documentation and ULA prefixes).
const DC_HOST6 = 'fd00:dc::20';
const SERVER6 = '2001:db8:113::10';
const POOL6 = '2001:db8:51::1';
const WG_EDGE = '192.168.101.1';
const WG_SITE = '192.168.101.2';
const WG_PORT = 51820;
const SITE_HOST = '10.0.1.10';
const DC_ONRAMP_ID = 1;
const GRE_EDGE = '192.168.103.1';
const GRE_SITE = '192.168.103.2';

function removeOwnNamespaces(NS: Namespaces): void {
  for (const ns of Object.values(NS)) {
    try { sh('ip', 'netns', 'del', ns); } catch { /* not created */ }
  }
}

function buildTopology(NS: Namespaces, GRE_TUN: string): void {
  for (const ns of Object.values(NS)) {
    sh('ip', 'netns', 'add', ns);
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
  // Links are created inside the namespaces, so their names never meet the host's or another run's.
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-dc', 'type', 'veth', 'peer', 'name', 'dc0', 'netns', NS.dc);
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-inet', 'type', 'veth', 'peer', 'name', 'inet0', 'netns', NS.inet);
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-site', 'type', 'veth', 'peer', 'name', 'site0', 'netns', NS.site);
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-gre', 'type', 'veth', 'peer', 'name', 'gre0', 'netns', NS.gre);
  nsSh(NS.edge, `
    echo 1 > /proc/sys/net/ipv4/ip_forward
    echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
    ip addr add fd00:31::1/64 dev veth-dc nodad
    ip addr add 2001:db8:200::1/64 dev veth-inet nodad
    for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
    ip addr add 172.31.0.1/30 dev veth-dc; ip link set veth-dc up
    ip addr add 192.168.200.1/24 dev veth-inet; ip link set veth-inet up
    ip addr add 192.168.101.254/24 dev veth-site; ip link set veth-site up
    echo 1 > /proc/sys/net/ipv4/conf/veth-site/proxy_arp
    ip addr add 192.168.103.254/24 dev veth-gre; ip link set veth-gre up
    echo 1 > /proc/sys/net/ipv4/conf/veth-gre/proxy_arp
    ip route add default via 192.168.200.2
    ip route add 172.16.0.0/24 via 172.31.0.2
    ip -6 route add default via 2001:db8:200::2
    ip -6 route add fd00:dc::/64 via fd00:31::2`);
  nsSh(NS.dc, `
    ip addr add 172.31.0.2/30 dev dc0; ip link set dc0 up
    ip addr add ${DC_HOST}/32 dev lo
    ip route add default via 172.31.0.1
    ip addr add fd00:31::2/64 dev dc0 nodad
    ip addr add ${DC_HOST6}/128 dev lo
    ip -6 route add default via fd00:31::1`);
  nsSh(NS.inet, `
    ip addr add 192.168.200.2/24 dev inet0; ip link set inet0 up
    ip addr add ${SERVER}/32 dev lo
    ip route add 198.51.100.0/24 via 192.168.200.1
    ip addr add 2001:db8:200::2/64 dev inet0 nodad
    ip addr add ${SERVER6}/128 dev lo
    ip -6 route add 2001:db8:51::/64 via 2001:db8:200::1`);
  nsSh(NS.site, `
    ip addr add ${WG_SITE}/24 dev site0; ip link set site0 up`);
  // The GRE site router's endpoint .2 lives behind a TUN the test process holds: the namespace forwards
  // between it and the underlay link (proxy ARP answers for .2), so the test sees GRE exactly as sent.
  sh('ip', 'link', 'set', 'dev', GRE_TUN, 'netns', NS.gre);
  nsSh(NS.gre, `
    echo 1 > /proc/sys/net/ipv4/ip_forward
    for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
    ip addr add 192.168.103.3/24 dev gre0; ip link set gre0 up
    echo 1 > /proc/sys/net/ipv4/conf/gre0/proxy_arp
    ip link set ${GRE_TUN} up
    echo 0 > /proc/sys/net/ipv4/conf/${GRE_TUN}/rp_filter
    ip route add ${GRE_SITE}/32 dev ${GRE_TUN}`);
}

/** The WireGuard site's onramp, as a YAML list entry. */
const SITE_A_WG_ONRAMP = `  - name: site-a-wg
    type: wireguard
    site: site-a
    automatic_return_routing: true
    wireguard:
      device: wg-a
      public_key: ${LAB_WIREGUARD_KEYS.siteAPublic}
      allowed_ips: [10.0.1.0/24]
`;

/** The edge's WireGuard device, as the YAML `wireguard_devices` section. */
function wgDevice(keyFile: string): string {
  return `wireguard_devices:
  - name: wg-a
    listen_address: ${WG_EDGE}
    listen_port: ${WG_PORT}
    private_key_file: ${keyFile}
`;
}

function config(keyFile: string): string {
  const dir = dirname(keyFile);
  return `version: 1
log: { level: info }
store: { path: ${dir}/tether.db }
api: { listen: 127.0.0.1, port: 8470, token_file: ${dir}/api-token }
sites:
  - name: dc
  - name: site-a
  - name: site-gre
${wgDevice(keyFile)}onramps:
  - name: dc-link
    id: ${DC_ONRAMP_ID}
    type: interconnect
    site: dc
    automatic_return_routing: true
    interconnect: { link: veth-dc }
${SITE_A_WG_ONRAMP}  - name: site-gre-tunnel
    type: gre
    site: site-gre
    automatic_return_routing: true
    gre: { local: ${GRE_EDGE}, remote: ${GRE_SITE} }
routes:
  - { prefix: 0.0.0.0/0, next_hop: internet }
  - { prefix: "::/0", next_hop: internet }
  - { prefix: 172.16.0.0/24, next_hop: { onramp: dc-link } }
  - { prefix: "fd00:dc::/64", next_hop: { onramp: dc-link } }
egress:
  interface: tt-egress
  addresses: [${POOL}, "${POOL6}"]
`;
}

/**
 * A UDP echo server (IPv4 and IPv6) that answers with who wrote to it; prints "ready" once both are bound. It runs
 * until its stdin closes (the suite's `after` kills it; a test process that dies closes the pipe), not for a fixed
 * time: the daemon's start and the clients' tsx start-up on a loaded machine outlasted a fixed lifetime, and the
 * later echoes found no server.
 */
const ECHO_SERVER = `
import dgram from 'node:dgram';
let bound = 0;
for (const [type, address] of [['udp4', '${SERVER}'], ['udp6', '${SERVER6}']]) {
  const s = dgram.createSocket(type);
  s.on('message', (m, r) => s.send(JSON.stringify({ seen: r.address + ':' + r.port, data: m.toString() }), r.port, r.address));
  s.bind(${ECHO_PORT}, address, () => { if (++bound === 2) console.log('ready'); });
}
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();`;

/** Sends one datagram from bind address:port to the server's address of the same family, port 7, and prints the reply with its source. */
const UDP_CLIENT = `
import dgram from 'node:dgram';
const [bind, port, text] = process.argv.slice(1);
const v6 = bind.includes(':');
const s = dgram.createSocket(v6 ? 'udp6' : 'udp4');
s.on('message', (m, r) => { console.log(JSON.stringify({ from: r.address + ':' + r.port, reply: JSON.parse(m.toString()) })); process.exit(0); });
s.bind(Number(port), bind, () => s.send(text, ${ECHO_PORT}, v6 ? '${SERVER6}' : '${SERVER}'));
setTimeout(() => { console.error('no reply'); process.exit(3); }, ${CHILD_TIMEOUT_MS});`;

/** A WireGuard site's one exchange through the edge (test/support/wg-peer.ts): what came back, as it printed it. */
function wgPeer(ns: string, payload: string, timeoutMs = CHILD_TIMEOUT_MS): Promise<string> {
  return nsSpawn(ns, ['--import', 'tsx', 'test/support/wg-peer.ts', JSON.stringify({
    privateKey: LAB_WIREGUARD_KEYS.siteAPrivate,
    edgePublicKey: LAB_WIREGUARD_KEYS.edgeAPublic,
    edge: { addr: WG_EDGE, port: WG_PORT },
    bind: { addr: WG_SITE, port: WG_PORT },
    inner: { src: SITE_HOST, srcPort: 4000, dst: SERVER, dstPort: ECHO_PORT, payload },
    timeoutMs,
  })]).output();
}

describe('tether run (real interfaces, root)', () => {
  let dir = '';
  let daemon: Child | null = null;
  let server: Child | null = null;
  let greTun: TunDevice | null = null;
  const fromEdge: Uint8Array[] = [];

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the daemon tests need root (CAP_NET_ADMIN): run them as root; they are never skipped');
    assert.ok(existsSync('/dev/net/tun'), '/dev/net/tun is missing');
    removeStaleNamespaces();
    removeOwnNamespaces(NS);
    greTun = openTun(GRE_TUN);
    greTun.startReading(new PacketBatch(16), 0, (b) => {
      for (let i = 0; i < b.count; i++) fromEdge.push(b.packet(i).slice());
    });
    buildTopology(NS, GRE_TUN);
    dir = mkdtempSync(join(tmpdir(), PREFIX));
    const keyFile = join(dir, 'wg-a.key');
    writeFileSync(keyFile, `${LAB_WIREGUARD_KEYS.edgeAPrivate}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'edge.yaml'), config(keyFile));
    server = nsScript(NS.inet, ECHO_SERVER, [], true);
    await server.waitFor('ready');
    daemon = nsSpawn(NS.edge, [...CLI, '--config', join(dir, 'edge.yaml')], { waitMs: START_TIMEOUT_MS });
    await daemon.waitFor('"tether started"');
    // Fully up: the API's start follows "tether started" and blocks the event loop (src/cli/tether.ts), for
    // seconds on a loaded machine; a datagram sent meanwhile waits for it.
    await daemon.waitFor('"API listening"');
  });

  after(() => {
    daemon?.child.kill('SIGKILL');
    server?.child.kill('SIGKILL');
    greTun?.close();
    removeOwnNamespaces(NS);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('logs its onramps, TUNs and routes at start, and never the private key', () => {
    const start = daemon?.lines.find((l) => l.includes('"tether started"')) ?? '';
    const record = JSON.parse(start) as { tuns: string[]; routes: string[] };
    assert.deepEqual(record.tuns, ['tt-underlay', 'tt-egress', `tt-ic-${DC_ONRAMP_ID}`]);
    assert.ok(record.routes.includes(`ip route replace ${WG_EDGE}/32 dev tt-underlay`));
    assert.ok(record.routes.includes(`ip route replace ${POOL}/32 dev tt-egress`));
    assert.ok(daemon?.lines.every((l) => !l.includes(LAB_WIREGUARD_KEYS.edgeAPrivate)));
  });

  it('carries a UDP datagram from the data center to the Internet (SNAT to the pool) and its reply back', async () => {
    const out = await nsScript(NS.dc, UDP_CLIENT, [DC_HOST, '5555', 'from-dc']).output();
    const got = JSON.parse(out) as { from: string; reply: { seen: string; data: string } };
    assert.equal(got.from, `${SERVER}:${ECHO_PORT}`);
    assert.equal(got.reply.data, 'from-dc');
    assert.equal(got.reply.seen.split(':')[0], POOL, 'the server sees the egress pool address');
  });

  it('carries an IPv6 datagram from the data center over the same interconnect to the Internet (NAT to the IPv6 pool) and back', async () => {
    const out = await nsScript(NS.dc, UDP_CLIENT, [DC_HOST6, '5556', 'from-dc-v6']).output();
    const got = JSON.parse(out) as { from: string; reply: { seen: string; data: string } };
    assert.equal(got.from, `${SERVER6}:${ECHO_PORT}`);
    assert.equal(got.reply.data, 'from-dc-v6');
    assert.equal(got.reply.seen.slice(0, got.reply.seen.lastIndexOf(':')), POOL6, 'the server sees the IPv6 pool address');
  });

  it('a WireGuard site completes a handshake over the underlay and its datagram reaches the Internet and back', async () => {
    const got = JSON.parse(await wgPeer(NS.site, 'from-site-a')) as { src: string; srcPort: number; dst: string; dstPort: number; payload: string };
    assert.equal(got.src, SERVER);
    assert.equal(got.srcPort, ECHO_PORT);
    assert.equal(got.dst, SITE_HOST);
    assert.equal(got.dstPort, 4000);
    const reply = JSON.parse(got.payload) as { seen: string; data: string };
    assert.equal(reply.data, 'from-site-a');
    assert.equal(reply.seen.split(':')[0], POOL);
  });

  it('a GRE site gets its datagram answered in GRE, and pings to the tunnel endpoint are answered', async () => {
    assert.ok(greTun);
    const inner = buildUdp({ src: SITE_HOST, dst: SERVER }, { srcPort: 4001, dstPort: ECHO_PORT, payload: Buffer.from('from-gre') });
    const batch = new PacketBatch(2);
    batch.push(greFrame(inner), 0, GRE_HEADER + inner.length + 20, 0);
    const ping = buildIcmpEcho({ src: GRE_SITE, dst: GRE_EDGE }, { type: 'request', id: 77, seq: 1, payload: Buffer.from('ping') });
    batch.push(ping, 0, ping.length, 0);
    assert.equal(greTun.writeBatch(batch), 2);
    const deadline = Date.now() + CHILD_TIMEOUT_MS;
    const find = (pred: (p: ReturnType<typeof parsePacket>, bytes: Uint8Array) => boolean): Uint8Array | undefined =>
      fromEdge.find((b) => pred(parsePacket(b), b));
    const isGre = (p: ReturnType<typeof parsePacket>): boolean => p.protocol === IPPROTO_GRE && p.src === GRE_EDGE && p.dst === GRE_SITE;
    const isEcho = (p: ReturnType<typeof parsePacket>): boolean => p.icmp?.type === 0 && p.icmp.id === 77 && p.src === GRE_EDGE;
    while ((!find(isGre) || !find(isEcho)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(find(isEcho), 'echo reply from the tunnel endpoint');
    const outer = find(isGre);
    assert.ok(outer, 'a GRE packet back from the edge endpoint');
    const innerBack = outer.subarray(20 + GRE_HEADER);
    const p = parsePacket(innerBack);
    assert.equal(p.src, SERVER);
    assert.equal(p.dst, SITE_HOST);
    assert.equal(p.dstPort, 4001);
    const reply = JSON.parse(Buffer.from(innerBack.subarray(p.l4Offset + 8, p.ipLength)).toString()) as { seen: string; data: string };
    assert.equal(reply.data, 'from-gre');
    assert.equal(reply.seen.split(':')[0], POOL);
  });

  it('SIGTERM stops it with exit 0 and removes its routes and rules', async () => {
    assert.ok(daemon);
    const before = sh('ip', '-n', NS.edge, 'rule');
    assert.match(before, new RegExp(`iif veth-dc .*lookup ${1000 + DC_ONRAMP_ID}`));
    daemon.child.kill('SIGTERM');
    assert.equal(await daemon.exited, 0);
    assert.doesNotMatch(sh('ip', '-n', NS.edge, 'rule'), /lookup 1001/);
    assert.equal(sh('ip', '-n', NS.edge, 'route', 'show', 'table', String(1000 + DC_ONRAMP_ID)).trim(), '');
    const routes = sh('ip', '-n', NS.edge, 'route');
    assert.doesNotMatch(routes, /198\.51\.100\.1|192\.168\.101\.1 |192\.168\.103\.1 /);
    assert.doesNotMatch(sh('ip', '-n', NS.edge, 'link'), /tt-underlay|tt-egress|tt-ic-/);
    daemon = null;
  });
});

/** GRE over IPv4 from the GRE site to the edge endpoint (test/support/gre-site.ts). */
function greFrame(inner: Uint8Array, key?: number): Uint8Array {
  return greSiteFrame(GRE_SITE, GRE_EDGE, inner, key);
}

/**
 * An Edge in the edge namespace, in a child process driven over stdin: `add NAME` adds the onramp NAME of the
 * second configuration (which the edge did not start with), `remove NAME` removes it, `status` answers
 * status(). One JSON line answers each command.
 */
const LIVE_EDGE = `
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
const [root, base, more] = process.argv.slice(1);
const { Edge } = await import(root + '/src/daemon/edge.ts');
const { loadConfig } = await import(root + '/src/config/index.ts');
const log = { info() {}, warn() {}, debug() {}, error(o, m) { process.stderr.write(m + ' ' + JSON.stringify(o) + '\\n'); } };
const edge = new Edge({ config: loadConfig(readFileSync(base, 'utf8'), base), log, hugePages: false, countersIntervalMs: 0 });
const onramps = loadConfig(readFileSync(more, 'utf8'), more).onramps;
const answer = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
edge.start();
answer({ ready: true });
createInterface({ input: process.stdin }).on('line', (line) => {
  const [op, name] = line.split(' ');
  try {
    if (op === 'add') answer({ id: edge.addOnramp(onramps.find((o) => o.name === name)) });
    else if (op === 'remove') answer({ removed: edge.removeOnramp(name) ?? name });
    else answer({ status: edge.status() });
  } catch (e) {
    answer({ error: e.message });
  }
});
process.stdin.on('end', () => { edge.stop(); process.exit(0); });`;

describe('Edge: GRE tunnels and WireGuard peers added and removed while it runs (real interfaces, root)', () => {
  const LNS = namespaces(`tt-${process.pid}-l`);
  const LGRE_TUN = `tl${process.pid}`;
  let dir = '';
  let edge: Child | null = null;
  let server: Child | null = null;
  let greTun: TunDevice | null = null;
  const fromEdge: Uint8Array[] = [];

  /** One command to the running Edge, its one JSON answer (an error answer fails the test). */
  async function command(line: string): Promise<Record<string, unknown>> {
    assert.ok(edge);
    const got = JSON.parse(await edge.ask(line, '{')) as Record<string, unknown>;
    assert.equal(got.error, undefined, `${line}: ${String(got.error)}`);
    return got;
  }
  const status = async (): Promise<EdgeStatus> => (await command('status')).status as EdgeStatus;

  function sites(): string {
    return `sites:
  - name: site-a
  - name: site-gre
${wgDevice(join(dir, 'wg-a.key'))}routes:
  - { prefix: 0.0.0.0/0, next_hop: internet }
egress:
  interface: tt-egress
  addresses: [${POOL}]
`;
  }
  const LATER_ONRAMPS = `onramps:
${SITE_A_WG_ONRAMP}  - name: gre-1
    type: gre
    site: site-gre
    automatic_return_routing: true
    gre: { local: ${GRE_EDGE}, remote: ${GRE_SITE}, key: 1 }
  - name: gre-2
    type: gre
    site: site-gre
    automatic_return_routing: true
    gre: { local: ${GRE_EDGE}, remote: ${GRE_SITE}, key: 2 }
`;

  /** Sends one UDP datagram from the GRE site through the tunnel with `key`; resolves with the GRE answer or null. */
  async function throughGre(key: number, srcPort: number, waitMs: number): Promise<Uint8Array | null> {
    assert.ok(greTun);
    const inner = buildUdp({ src: SITE_HOST, dst: SERVER }, { srcPort, dstPort: ECHO_PORT, payload: Buffer.from(`gre-${key}`) });
    const batch = new PacketBatch(1);
    const outer = greFrame(inner, key);
    batch.push(outer, 0, outer.length, 0);
    assert.equal(greTun.writeBatch(batch), 1);
    const isAnswer = (b: Uint8Array): boolean => {
      const p = parsePacket(b);
      return p.protocol === IPPROTO_GRE && p.src === GRE_EDGE && parsePacket(b.subarray(20 + GRE_HEADER + GRE_KEY_FIELD)).dstPort === srcPort;
    };
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      const found = fromEdge.find(isAnswer);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
    return null;
  }

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the daemon tests need root (CAP_NET_ADMIN): run them as root; they are never skipped');
    removeOwnNamespaces(LNS);
    greTun = openTun(LGRE_TUN);
    greTun.startReading(new PacketBatch(16), 0, (b) => {
      for (let i = 0; i < b.count; i++) fromEdge.push(b.packet(i).slice());
    });
    buildTopology(LNS, LGRE_TUN);
    dir = mkdtempSync(join(tmpdir(), `tt-${process.pid}-l`));
    writeFileSync(join(dir, 'wg-a.key'), `${LAB_WIREGUARD_KEYS.edgeAPrivate}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'base.yaml'), `version: 1\n${sites()}`);
    writeFileSync(join(dir, 'more.yaml'), `version: 1\n${sites()}${LATER_ONRAMPS}`);
    server = nsScript(LNS.inet, ECHO_SERVER, [], true);
    await server.waitFor('ready');
    edge = nsSpawn(LNS.edge, ['--import', 'tsx', '--input-type=module', '-e', LIVE_EDGE, '--', process.cwd(), join(dir, 'base.yaml'), join(dir, 'more.yaml')],
      { stdin: true, waitMs: START_TIMEOUT_MS });
    assert.equal(await edge.waitFor('{'), '{"ready":true}', 'the edge started');
  });

  after(() => {
    edge?.child.kill('SIGKILL');
    server?.child.kill('SIGKILL');
    greTun?.close();
    removeOwnNamespaces(LNS);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('an added GRE tunnel carries traffic, its endpoint is routed in; removed, its packets are dropped and counted', async () => {
    assert.equal(await throughGre(1, 4101, 300), null, 'no tunnel yet');
    assert.doesNotMatch(sh('ip', '-n', LNS.edge, 'route'), /192\.168\.103\.1 dev tt-underlay/);
    const first = await command('add gre-1');
    const second = await command('add gre-2');
    assert.ok(Number(second.id) > Number(first.id));
    assert.match(sh('ip', '-n', LNS.edge, 'route'), /192\.168\.103\.1 dev tt-underlay/);
    const answer = await throughGre(1, 4102, CHILD_TIMEOUT_MS);
    assert.ok(answer, 'an answer through the added tunnel');
    const back = answer.subarray(20 + GRE_HEADER + GRE_KEY_FIELD);
    const reply = JSON.parse(Buffer.from(back.subarray(parsePacket(back).l4Offset + 8, parsePacket(back).ipLength)).toString()) as { seen: string; data: string };
    assert.equal(reply.data, 'gre-1');
    assert.equal(reply.seen.split(':')[0], POOL);

    await command('remove gre-1');
    const before = await status();
    assert.equal(await throughGre(1, 4103, 500), null, 'nothing comes back through a removed tunnel');
    const afterRemoval = await status();
    assert.equal(afterRemoval.edge.gre_receive_drop ?? 0, (before.edge.gre_receive_drop ?? 0) + 1, 'the removed tunnel\'s packet is counted');
    assert.equal(afterRemoval.greDrops.unknown_key ?? 0, (before.greDrops.unknown_key ?? 0) + 1);
    assert.ok(await throughGre(2, 4104, CHILD_TIMEOUT_MS), 'the other tunnel on the same endpoint still works');
    await command('remove gre-2');
    assert.doesNotMatch(sh('ip', '-n', LNS.edge, 'route'), /192\.168\.103\.1 dev tt-underlay/, 'the last tunnel takes its endpoint route along');
  });

  it('an added WireGuard peer completes a handshake and carries traffic; removed, its packets are dropped and counted', async () => {
    await command('add site-a-wg');
    const got = JSON.parse(await wgPeer(LNS.site, 'wg-live')) as { dst: string; payload: string };
    assert.equal(got.dst, SITE_HOST);
    assert.equal((JSON.parse(got.payload) as { data: string }).data, 'wg-live');
    assert.equal((await status()).wireguard[0].peers.length, 1);

    await command('remove site-a-wg');
    await assert.rejects(wgPeer(LNS.site, 'wg-revoked', 1500), /exited 3/, 'no answer to a removed peer');
    const after = await status();
    assert.ok((after.edge.wg_peer_removed ?? 0) > 0, 'the removed peer\'s datagrams are counted');
    assert.deepEqual(after.wireguard[0].peers, []);
  });
});

describe('tether run: configuration errors', () => {
  it('a bad config exits 2 naming the file, line and key', () => {
    const dir = mkdtempSync(join(tmpdir(), PREFIX));
    try {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, 'version: 1\nonramps:\n  - name: x\n    type: interconnect\n    automatic_return_routing: maybe\n    interconnect: { link: veth-x }\n');
      const r = spawnSync(process.execPath, [...CLI, '--config', file], { encoding: 'utf8' });
      assert.equal(r.status, EXIT_BAD_CONFIG, r.stderr);
      assert.match(r.stderr, new RegExp(`${file.replace(/[.]/g, '\\.')}:5:\\d+: onramps\\[0\\]\\.automatic_return_routing`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing file exits 2', () => {
    const r = spawnSync(process.execPath, [...CLI, '--config', '/nonexistent/tether.yaml'], { encoding: 'utf8' });
    assert.equal(r.status, EXIT_BAD_CONFIG);
    assert.match(r.stderr, /ENOENT/);
  });
});

describe('planNetwork', () => {
  it('routes endpoints into the underlay, the pool into the egress, and each interconnect link into its TUN', () => {
    const steps = planNetwork({
      underlay: 'tt-underlay',
      endpoints: ['192.168.101.1', '2001:db8::1'],
      egress: { tun: 'tt-egress', addresses: ['198.51.100.1'] },
      interconnects: [{ onrampId: 4, link: 'veth-dc', tun: 'tt-ic-4' }],
      mtu: 1500,
    });
    assert.deepEqual(steps.map((s) => s.args.join(' ')), [
      'link set dev tt-underlay mtu 1500 txqueuelen 8192 up',
      'link set dev tt-egress mtu 1500 txqueuelen 2048 up',
      'link set dev tt-ic-4 mtu 1500 txqueuelen 2048 up',
      'route replace 192.168.101.1/32 dev tt-underlay',
      '-6 route replace 2001:db8::1/128 dev tt-underlay',
      'route replace 198.51.100.1/32 dev tt-egress',
      'rule add iif veth-dc lookup 1004 priority 1004',
      'route replace default dev tt-ic-4 table 1004',
      '-6 rule add iif veth-dc lookup 1004 priority 1004',
      '-6 route replace default dev tt-ic-4 table 1004',
    ]);
    assert.deepEqual(steps.filter((s) => s.undo).map((s) => s.undo?.join(' ')), [
      'route del 192.168.101.1/32 dev tt-underlay',
      '-6 route del 2001:db8::1/128 dev tt-underlay',
      'route del 198.51.100.1/32 dev tt-egress',
      'rule del iif veth-dc lookup 1004 priority 1004',
      'route del default dev tt-ic-4 table 1004',
      '-6 rule del iif veth-dc lookup 1004 priority 1004',
      '-6 route del default dev tt-ic-4 table 1004',
    ]);
    const v4only = planNetwork({ underlay: 'u', endpoints: [], egress: null, interconnects: [{ onrampId: 4, link: 'veth-dc', tun: 'tt-ic-4' }], mtu: 1500, ipv6: false });
    assert.ok(v4only.every((s) => s.args[0] !== '-6'), 'no IPv6 steps where the namespace has no IPv6');
  });
});
