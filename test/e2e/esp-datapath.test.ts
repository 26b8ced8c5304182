// The ESP data path end to end, on real interfaces (root), without IKE: the edge's underlay TUN and IPsec
// transport (test/support/esp-edge.ts) in one namespace, scapy's ESP as the site router in another
// (test/support/esp-peer.py, static keys), a UDP echo server in a third. The child SA is installed through
// installChild. For raw ESP (IP protocol 50) and ESP in UDP 4500, with AES-GCM and AES-CBC + HMAC-SHA2: the site's
// datagrams (IPv4 and IPv6 inside) are decrypted, reach the server, and the replies come back encrypted and decrypt at scapy; a replayed
// packet, an unknown SPI, a flipped bit and an authentic packet from outside the SA's selectors are counted drops. Namespaces tt-<pid>-esp*; those of dead runs go first.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createInterface } from 'node:readline';
import { parseIpv4 } from '../../src/wire/addr.js';
import { nsSh, removeStaleNamespaces, sh } from '../support/netns.js';

const NS = { edge: `tt-${process.pid}-espe`, peer: `tt-${process.pid}-espp`, srv: `tt-${process.pid}-esps` };
const UNDERLAY = `teu${process.pid}`;
const INNER = `tei${process.pid}`;
const EDGE = '192.168.104.1';
const PEER = '192.168.104.2';
const SERVER = '10.10.0.2';
const SERVER6 = 'fd00:10::2';
const SITE_HOST6 = 'fd00:1::10';
const SERVER_PORT = 7007;
const ONRAMP = 3;
const SCAPY_PYTHON = '/usr/bin/python3';
const DATAGRAMS = 3;
const SNIFF_SECONDS = 2;
const CHILD_READY_MS = 15_000;
const ANY4 = { family: 4, start: '0.0.0.0', end: '255.255.255.255', protocol: 0, startPort: 0, endPort: 0xffff };
const ANY6 = { family: 6, start: '::', end: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', protocol: 0, startPort: 0, endPort: 0xffff };

const ECHO = `
import select, socket
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.bind(('${SERVER}', ${SERVER_PORT}))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.bind(('${SERVER6}', ${SERVER_PORT}))
while True:
    for s in select.select([s4, s6], [], [])[0]:
        m, a = s.recvfrom(2048)
        s.sendto(b'echo:' + m, a)
`;

function removeOwn(): void {
  for (const ns of Object.values(NS)) {
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      /* not there */
    }
  }
}

function buildTopology(): void {
  removeStaleNamespaces();
  removeOwn();
  for (const ns of Object.values(NS)) sh('ip', 'netns', 'add', ns);
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-e', 'type', 'veth', 'peer', 'name', 'veth-p', 'netns', NS.peer);
  sh('ip', '-n', NS.edge, 'link', 'add', 'veth-s', 'type', 'veth', 'peer', 'name', 'veth-v', 'netns', NS.srv);
  // The edge's endpoint .1 is routed into the underlay TUN by the transport; proxy ARP answers for it on the link.
  nsSh(NS.edge, `
    ip link set lo up
    echo 1 > /proc/sys/net/ipv4/ip_forward
    echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter
    ip addr add 192.168.104.254/24 dev veth-e; ip link set veth-e up
    echo 1 > /proc/sys/net/ipv4/conf/veth-e/proxy_arp
    echo 0 > /proc/sys/net/ipv4/neigh/veth-e/proxy_delay
    ip addr add 10.10.0.1/24 dev veth-s; ip addr add fd00:10::1/64 dev veth-s nodad; ip link set veth-s up
    echo 1 > /proc/sys/net/ipv6/conf/all/forwarding`);
  nsSh(NS.peer, `
    ip link set lo up
    ip addr add ${PEER}/24 dev veth-p; ip link set veth-p up`);
  nsSh(NS.srv, `
    ip link set lo up
    ip addr add ${SERVER}/24 dev veth-v; ip addr add ${SERVER6}/64 dev veth-v nodad; ip link set veth-v up
    ip route add default via 10.10.0.1
    ip -6 route add default via fd00:10::1`);
}

interface Reply {
  ok: boolean;
  op: string;
  error?: string;
  status?: { drops: Record<string, number>; sas: Array<{ inPackets: number; outPackets: number; replayDrops: number; icvFailures: number }> };
  counters?: Record<string, number>;
}

/** The edge child: one JSON line per stdin command. */
class EdgeChild {
  private readonly waiting: Array<(r: Reply) => void> = [];
  stderr = '';
  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => this.waiting.shift()?.(JSON.parse(line) as Reply));
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }
  next(): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the ESP edge child did not answer; stderr: ${this.stderr}`)), CHILD_READY_MS);
      this.waiting.push((r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
  }
  async command(line: string): Promise<Reply> {
    const p = this.next();
    this.proc.stdin!.write(`${line}\n`);
    const r = await p;
    assert.ok(r.ok, `${line.split(' ')[0]}: ${r.error}`);
    return r;
  }
}

interface Variant {
  name: string;
  udp: boolean;
  encryption: 'aes128gcm16' | 'aes256gcm16' | 'aes128' | 'aes256';
  integrity: 'sha256' | 'sha384' | 'sha512' | null;
  scapyCrypt: string;
  scapyAuth: string | null;
  keyLength: number;
  integKeyLength: number;
}

const VARIANTS: Variant[] = [
  { name: 'raw ESP, AES-GCM-128', udp: false, encryption: 'aes128gcm16', integrity: null, scapyCrypt: 'AES-GCM', scapyAuth: null, keyLength: 20, integKeyLength: 0 },
  { name: 'raw ESP, AES-CBC-256 + HMAC-SHA2-256-128', udp: false, encryption: 'aes256', integrity: 'sha256', scapyCrypt: 'AES-CBC', scapyAuth: 'SHA2-256-128', keyLength: 32, integKeyLength: 32 },
  { name: 'ESP in UDP 4500, AES-GCM-256', udp: true, encryption: 'aes256gcm16', integrity: null, scapyCrypt: 'AES-GCM', scapyAuth: null, keyLength: 36, integKeyLength: 0 },
  { name: 'ESP in UDP 4500, AES-CBC-128 + HMAC-SHA2-512-256', udp: true, encryption: 'aes128', integrity: 'sha512', scapyCrypt: 'AES-CBC', scapyAuth: 'SHA2-512-256', keyLength: 16, integKeyLength: 64 },
];

describe('ESP data path with scapy as the site (real interfaces, root)', () => {
  let child: EdgeChild | null = null;
  let echo: ChildProcess | null = null;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'this test needs root (network namespaces, TUN devices); it never skips');
    assert.ok(existsSync(SCAPY_PYTHON), `${SCAPY_PYTHON} is missing (Debian's python3 with python3-scapy): it never skips`);
    const probe = spawnSync(SCAPY_PYTHON, ['-c', 'import scapy.layers.ipsec, cryptography']);
    assert.equal(probe.status, 0, `scapy's ipsec layer does not import: apt-get install python3-scapy python3-cryptography (${probe.stderr})`);
    buildTopology();
    echo = spawn('ip', ['netns', 'exec', NS.srv, SCAPY_PYTHON, '-c', ECHO], { stdio: 'ignore' });
    const proc = spawn(
      'ip',
      ['netns', 'exec', NS.edge, process.execPath, '--import', 'tsx', 'test/support/esp-edge.ts', JSON.stringify({ underlay: UNDERLAY, inner: INNER, local: EDGE, onramp: ONRAMP, siteNet: '10.0.1.0/24', siteNet6: 'fd00:1::/64' })],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    child = new EdgeChild(proc);
    const ready = await child.next();
    assert.equal(ready.op, 'ready', JSON.stringify(ready));
  });

  after(() => {
    child?.proc.stdin?.end();
    child?.proc.kill();
    echo?.kill();
    removeOwn();
  });

  let spi = 0x5000;
  for (const v of VARIANTS) {
    it(`${v.name}: datagrams reach the server and the replies decrypt at scapy; replay, unknown SPI, a flipped bit and a stray source are counted`, async () => {
      const inSpi = ++spi;
      const outSpi = spi + 0x1000;
      const keyIn = randomBytes(v.keyLength).toString('hex');
      const keyOut = randomBytes(v.keyLength).toString('hex');
      const ikeyIn = v.integKeyLength ? randomBytes(v.integKeyLength).toString('hex') : null;
      const ikeyOut = v.integKeyLength ? randomBytes(v.integKeyLength).toString('hex') : null;
      const sa = {
        onramp: ONRAMP,
        inbound: { spi: inSpi, encryption: v.encryption, integrity: v.integrity, encryptionKey: keyIn, integrityKey: ikeyIn },
        outbound: { spi: outSpi, encryption: v.encryption, integrity: v.integrity, encryptionKey: keyOut, integrityKey: ikeyOut },
        path: { localAddress: parseIpv4(EDGE), remoteAddress: parseIpv4(PEER), localPort: v.udp ? 4500 : 0, remotePort: v.udp ? 4501 : 0 },
        replayWindow: 1024,
        // As if narrowed to the site's 10.0.1.0/24 (RFC 7296 §2.9): the stray datagram from 10.0.2.99 is refused.
        selectors: {
          local: [ANY4, ANY6],
          remote: [{ ...ANY4, start: '10.0.1.0', end: '10.0.1.255' }, { ...ANY6, start: 'fd00:1::', end: 'fd00:1::ffff:ffff:ffff:ffff' }],
        },
      };
      const before = await child!.command(`install ${JSON.stringify(sa)}`);
      const peer = spawnSync('ip', ['netns', 'exec', NS.peer, SCAPY_PYTHON, 'test/support/esp-peer.py', JSON.stringify({
        iface: 'veth-p', local: PEER, edge: EDGE, udp: v.udp, peerPort: 4501, server: SERVER, server6: SERVER6, serverPort: SERVER_PORT, count: DATAGRAMS, wait: SNIFF_SECONDS,
        toEdge: { spi: inSpi, crypt: v.scapyCrypt, ckey: keyIn, auth: v.scapyAuth, akey: ikeyIn },
        fromEdge: { spi: outSpi, crypt: v.scapyCrypt, ckey: keyOut, auth: v.scapyAuth, akey: ikeyOut },
      })], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(peer.status, 0, `scapy peer failed: ${peer.stderr}`);
      const got = JSON.parse(peer.stdout.trim().split('\n').pop()!) as { replies: Array<{ src: string; dst: string; dport: number; payload: string; encap: string }>; errors: string[] };
      const st = await child!.command(`remove ${inSpi}`);
      console.log(`  ${v.name}: ${got.replies.length} replies decrypted at scapy; edge drops ${JSON.stringify(st.status!.drops)}`);
      assert.deepEqual(got.errors, [], 'every ESP packet from the edge decrypts at scapy');
      const payloads = got.replies.map((r) => r.payload).sort();
      const expected = Array.from({ length: DATAGRAMS }, (_, k) => [`echo:esp-e2e ${k + 1}`, `echo:esp-e2e v6 ${k + 1}`]).flat().sort();
      assert.deepEqual(payloads, expected, `replies: ${JSON.stringify(got.replies)}; edge stderr: ${child!.stderr}`);
      for (const r of got.replies) {
        const v6 = r.payload.includes('v6');
        assert.deepEqual([r.src, r.dst], v6 ? [SERVER6, SITE_HOST6] : [SERVER, '10.0.1.10'], 'IPv4 and IPv6 inside one IPv4 tunnel');
        assert.equal(r.encap, v.udp ? 'udp' : 'esp');
      }
      const delta = (name: string): number => (st.status!.drops[name] ?? 0) - (before.status!.drops[name] ?? 0);
      assert.equal(delta('replay'), 1, 'the replayed packet');
      assert.equal(delta('unknown_spi'), 1, 'the unknown SPI');
      assert.equal(delta('icv_failed'), 1, 'the flipped bit');
      assert.equal(delta('selector_mismatch'), 1, 'the authentic datagram from outside the SA’s selectors (RFC 4301 §5.2)');
    });
  }
});
