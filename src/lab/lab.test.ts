/**
 * The lab without the daemon (root only; CI runs as root): labUp({ startEdge: false }), then tun-probe.ts plays
 * the edge's TUN side in the edge namespace, with the routes the daemon would add (docs/UNDERLAY.md). Checks:
 *  - each WireGuard site's wireguard-go handshake initiation (UDP to x.1:51820) arrives in the underlay TUN as raw
 *    IP, addressed with the right keys (mac1 for the edge's public key; the sealed static is the site's);
 *  - a scapy GRE packet to 192.168.103.1 arrives in the underlay TUN as raw IP (GRE, inner 10.0.1.10);
 *  - the IPsec site's strongSwan (labUp's ipsecSite) initiates: its IKE_SA_INIT (UDP 500 to 192.168.106.1) arrives
 *    in the underlay TUN; labDown kills its charon;
 *  - a packet written into the egress TUN from the pool address reaches the internet server, and its reply (and a
 *    port unreachable for UDP 9) comes back to the TUN;
 *  - the DC and Internet servers answer over the edge's own routes;
 *  - labUp removes leftovers of the same prefix first; labDown leaves nothing behind.
 * Fails loudly when not root or a tool is missing. Unique prefix per run; always cleans up.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { LAB_WIREGUARD_KEYS } from './config.js';
import { keyFromBase64 } from '../onramp/wireguard/index.js';
import { INIT_LEN, INIT_MAC1_OFF, MSG_INITIATION } from '../onramp/wireguard/constants.js';
import { checkMac1, openInitiationStatic, StaticIdentity } from '../onramp/wireguard/noise.js';
import { IPPROTO_GRE, GRE_BASE_HEADER } from '../onramp/gre/constants.js';
import { buildUdp, parsePacket, type ParsedPacket } from '../wire/build.js';
import { ICMP4_CODE_PORT_UNREACHABLE as ICMP_PORT_UNREACHABLE, ICMP4_DEST_UNREACHABLE as ICMP_DEST_UNREACHABLE, IPPROTO_ICMP, IPPROTO_UDP, UDP_HEADER } from '../wire/constants.js';
import { grePeer, httpGet, labDown, labStatus, labUp, LAB, runOk, type LabInfo, type ServerReply } from './index.js';
import { labSourceFile, REPO_ROOT } from './paths.js';
import { siteDStrongSwan } from './site-d.js';
import { isCharon } from './strongswan.js';
import { WIREGUARD_SOCKET_DIR } from './topology.js';

const ETHERTYPE_IPV4 = 0x0800;
/** RFC 7296 §3.1: IKE on UDP 500, version 2.0 (major 2 in the high nibble), exchange type 34 = IKE_SA_INIT. */
const IKE_PORT = 500;
const IKE_VERSION_2 = 0x20;
const IKE_SA_INIT = 34;
/** wireguard-go retries a lost initiation after REKEY_TIMEOUT (5 s) plus up to 333 ms of jitter. */
const HANDSHAKE_WAIT_MS = 12_000;
const PACKET_WAIT_MS = 5_000;

interface Seen { tun: string; bytes: Uint8Array; p: ParsedPacket }

/** The probe's packets, and waiters for packets matching a predicate (each packet satisfies one waiter). */
class Probe {
  readonly seen: Seen[] = [];
  private waiters: Array<{ match: (s: Seen) => boolean; resolve: (s: Seen) => void }> = [];
  readonly ready: Promise<void>;
  constructor(readonly child: ChildProcessWithoutNullStreams, stderr: string[]) {
    let onReady!: () => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise((resolve, reject) => { onReady = resolve; onFail = reject; });
    child.on('exit', (code) => onFail(new Error(`tun-probe exited (${code}): ${stderr.join('')}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { ready?: boolean; tun?: string; hex?: string };
      if (msg.ready) return onReady();
      const bytes = Buffer.from(msg.hex ?? '', 'hex');
      const s: Seen = { tun: msg.tun ?? '', bytes, p: parsePacket(bytes) };
      const w = this.waiters.findIndex((x) => x.match(s));
      if (w >= 0) this.waiters.splice(w, 1)[0].resolve(s);
      else this.seen.push(s);
    });
  }
  waitFor(what: string, match: (s: Seen) => boolean, timeoutMs = PACKET_WAIT_MS): Promise<Seen> {
    const i = this.seen.findIndex(match);
    if (i >= 0) return Promise.resolve(this.seen.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (s: Seen) => { clearTimeout(t); resolve(s); } };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        const got = this.seen.map((s) => `${s.tun}: ${s.p.src}->${s.p.dst} proto ${s.p.protocol}`).join('; ');
        reject(new Error(`no ${what} within ${timeoutMs} ms (other packets: ${got || 'none'})`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
  write(tun: 'underlay' | 'egress', packet: Uint8Array): void {
    this.child.stdin.write(JSON.stringify({ tun, hex: Buffer.from(packet).toString('hex') }) + '\n');
  }
}

function udpPayload(s: Seen): Uint8Array {
  return s.bytes.subarray(s.p.l4Offset + UDP_HEADER, s.p.l4Offset + s.p.l4Length);
}

describe('lab (root, no daemon): underlay and egress paths', { timeout: 60_000 }, () => {
  const prefix = `lt${randomBytes(3).readUIntBE(0, 3).toString(36).slice(0, 4)}`;
  let info: LabInfo;
  let probe: Probe;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab test must run as root (CI runs it as root; it is never skipped)');
    // Leftovers of a run that died halfway: a namespace of the same prefix and a stale wireguard-go socket.
    await runOk('ip', ['netns', 'add', `${prefix}-edge`]);
    mkdirSync(WIREGUARD_SOCKET_DIR, { recursive: true });
    writeFileSync(`${WIREGUARD_SOCKET_DIR}/${prefix}wga.sock`, '');
    info = await labUp({ prefix, startEdge: false, ipsecSite: true });
    const stderr: string[] = [];
    const child = spawn('ip', ['netns', 'exec', info.names.edge, process.execPath, '--import', 'tsx', labSourceFile('tun-probe.ts'),
      '--underlay', 'tt-underlay', '--egress', 'tt-egress',
      '--endpoints', [LAB.siteA.edgeEndpoint, LAB.siteB.edgeEndpoint, LAB.siteGre.edgeEndpoint, LAB.siteD.edgeEndpoint].join(','),
      '--pool', '198.51.100.1'], { cwd: REPO_ROOT, stdio: 'pipe' });
    child.stderr.on('data', (b: Buffer) => stderr.push(b.toString()));
    probe = new Probe(child, stderr);
    await probe.ready;
  });

  after(async () => {
    probe?.child.stdin.end();
    probe?.child.kill('SIGTERM');
    const charon = siteDStrongSwan(info.names).processId;
    await labDown({ prefix });
    assert.ok(charon !== null && !isCharon(charon), 'labDown kills the IPsec site\'s charon');
    assert.equal(existsSync(info.names.strongSwanDir), false, 'labDown removes the IPsec site\'s strongSwan directory');
    const status = await labStatus({ prefix });
    assert.deepEqual(Object.values(status.namespaces).filter(Boolean), [], 'labDown removes every namespace');
    assert.equal(existsSync(`${WIREGUARD_SOCKET_DIR}/${prefix}wga.sock`), false, 'labDown removes the wireguard-go sockets');
    assert.equal(existsSync(info?.runDir ?? '/nonexistent'), false, 'labDown removes the run directory');
  });

  it('delivers each WireGuard site\'s handshake initiation into the underlay TUN, with the lab keys', async () => {
    const k = LAB_WIREGUARD_KEYS;
    const sites = [
      { router: LAB.siteA.router, endpoint: LAB.siteA.edgeEndpoint, edgePrivate: k.edgeAPrivate, sitePublic: k.siteAPublic },
      { router: LAB.siteB.router, endpoint: LAB.siteB.edgeEndpoint, edgePrivate: k.edgeBPrivate, sitePublic: k.siteBPublic },
    ];
    await Promise.all(sites.map(async (site) => {
      const s = await probe.waitFor(`WireGuard initiation from ${site.router}`, (x) => x.tun === 'underlay' &&
        x.p.protocol === IPPROTO_UDP && x.p.src === site.router && x.p.dst === site.endpoint && x.p.dstPort === LAB.wireguardPort &&
        udpPayload(x)[0] === MSG_INITIATION, HANDSHAKE_WAIT_MS);
      assert.equal(s.p.srcPort, LAB.wireguardPort, 'the site listens on 51820 (the config\'s endpoint)');
      const msg = udpPayload(s);
      assert.equal(msg.length, INIT_LEN);
      const edgePrivate = keyFromBase64(site.edgePrivate);
      assert.ok(edgePrivate);
      const edge = new StaticIdentity(edgePrivate);
      assert.ok(checkMac1(msg, INIT_MAC1_OFF, edge.mac1Key), 'mac1 is keyed with the edge device\'s public key');
      const opened = openInitiationStatic(edge, msg);
      assert.ok(opened, 'the initiation decrypts with the edge device\'s private key');
      assert.deepEqual(Buffer.from(opened.remoteStatic).toString('base64'), site.sitePublic);
    }));
    const status = await labStatus({ prefix });
    assert.ok(status.processes.filter((p) => p.name.startsWith('wg-')).every((p) => p.alive));
  });

  it('delivers a scapy GRE packet to 192.168.103.1 into the underlay TUN as raw IP', async () => {
    const sent = await grePeer(info.names.siteGre, { proto: 'udp', dst: LAB.internet.server, dport: LAB.echoPort, sport: 41000, payload: 'gre-probe', wait: 0.1 });
    assert.equal(sent.sent, 1);
    const s = await probe.waitFor('GRE packet from 192.168.103.2', (x) => x.tun === 'underlay' && x.p.src === LAB.siteGre.router &&
      x.p.dst === LAB.siteGre.edgeEndpoint && x.p.protocol === IPPROTO_GRE);
    const gre = s.bytes.subarray(s.p.l4Offset);
    assert.equal((gre[0] << 8) | gre[1], 0, 'no GRE flags (no key in the default config)');
    assert.equal((gre[2] << 8) | gre[3], ETHERTYPE_IPV4);
    const inner = parsePacket(gre.subarray(GRE_BASE_HEADER));
    assert.deepEqual([inner.src, inner.dst, inner.protocol, inner.srcPort, inner.dstPort],
      [LAB.siteHost, LAB.internet.server, IPPROTO_UDP, 41000, LAB.echoPort]);
  });

  it('the IPsec site\'s strongSwan initiates toward 192.168.106.1: its IKE_SA_INIT arrives in the underlay TUN', async () => {
    const swan = siteDStrongSwan(info.names);
    assert.ok(swan.processId !== null, 'labUp started site-d\'s charon');
    // Nothing answers yet (no tether): the initiation fails, its first message is what is checked.
    const attempt = swan.tryInitiate(undefined, 2);
    const s = await probe.waitFor('IKE_SA_INIT from 192.168.106.2', (x) => x.tun === 'underlay' && x.p.protocol === IPPROTO_UDP &&
      x.p.src === LAB.siteD.router && x.p.dst === LAB.siteD.edgeEndpoint && x.p.dstPort === IKE_PORT);
    const ike = udpPayload(s);
    // RFC 7296 §3.1: initiator SPI (8, non-zero), responder SPI (8, zero), next payload, version 2.0, exchange type.
    assert.notEqual(Buffer.from(ike.subarray(0, 8)).readBigUInt64BE(), 0n);
    assert.equal(Buffer.from(ike.subarray(8, 16)).readBigUInt64BE(), 0n);
    assert.equal(ike[17], IKE_VERSION_2);
    assert.equal(ike[18], IKE_SA_INIT);
    assert.equal((await attempt).ok, false);
  });

  it('routes a packet written into the egress TUN to the internet server and its reply back', async () => {
    const payload = new TextEncoder().encode('egress-probe');
    probe.write('egress', buildUdp({ src: '198.51.100.1', dst: LAB.internet.server }, { srcPort: 40000, dstPort: LAB.echoPort, payload }));
    const reply = await probe.waitFor('UDP echo reply to 198.51.100.1', (x) => x.tun === 'egress' && x.p.protocol === IPPROTO_UDP &&
      x.p.src === LAB.internet.server && x.p.dst === '198.51.100.1' && x.p.dstPort === 40000);
    const body = JSON.parse(new TextDecoder().decode(udpPayload(reply))) as ServerReply;
    assert.deepEqual([body.server, body.client, body.payload], ['inet', { address: '198.51.100.1', port: 40000 }, 'egress-probe']);

    probe.write('egress', buildUdp({ src: '198.51.100.1', dst: LAB.internet.server }, { srcPort: 40001, dstPort: LAB.closedUdpPort, payload }));
    const unreachable = await probe.waitFor('ICMP port unreachable to 198.51.100.1', (x) => x.tun === 'egress' && x.p.protocol === IPPROTO_ICMP &&
      x.p.dst === '198.51.100.1');
    assert.equal(unreachable.p.icmp?.type, ICMP_DEST_UNREACHABLE);
    assert.equal(unreachable.p.icmp?.code, ICMP_PORT_UNREACHABLE);
    assert.equal(unreachable.p.inner?.srcPort, 40001);
  });

  it('reaches the internet and data-center servers over the edge namespace\'s own routes', async () => {
    const inet = JSON.parse(await httpGet(info.names.edge, `http://${LAB.internet.server}/`)) as ServerReply;
    assert.deepEqual([inet.server, inet.client.address], ['inet', LAB.internet.edge]);
    const dc = JSON.parse(await httpGet(info.names.edge, `http://${LAB.dc.server}/`)) as ServerReply;
    assert.deepEqual([dc.server, dc.client.address], ['dc', LAB.dc.edge]);
    const again = JSON.parse(await httpGet(info.names.edge, `http://${LAB.dc.server}/`)) as ServerReply;
    assert.notEqual(again.n, dc.n, 'every response is unique');
  });
});
