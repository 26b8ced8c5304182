/**
 * A WireGuard site for the daemon's end-to-end test (edge.test.ts), run in a site namespace with
 * `ip netns exec NS node --import tsx test/support/wg-peer.ts '<json>'`: tether's own WireGuard engine as
 * the peer, over a real kernel UDP socket. It sends one inner UDP datagram through the tunnel (the handshake
 * happens first: the packet is staged until the session exists), waits for the inner reply, prints it as one
 * JSON line on stdout and exits 0; exits 3 on timeout. Not a test file itself (no .test.ts).
 */
import dgram from 'node:dgram';
import { WireGuardDevice, keyFromBase64, type Outgoing } from '../../src/onramp/wireguard/index.js';
import { buildUdp, parsePacket } from '../../src/wire/build.js';
import { UdpEndpoint } from '../../src/wire/endpoint.js';

interface PeerArgs {
  privateKey: string;
  edgePublicKey: string;
  edge: { addr: string; port: number };
  bind: { addr: string; port: number };
  inner: { src: string; srcPort: number; dst: string; dstPort: number; payload: string };
  timeoutMs: number;
}

const POLL_MS = 50;
const args = JSON.parse(process.argv[2]) as PeerArgs;
const privateKey = keyFromBase64(args.privateKey);
const edgeKey = keyFromBase64(args.edgePublicKey);
if (!privateKey || !edgeKey) throw new Error('bad keys');

const device = new WireGuardDevice({
  privateKey,
  peers: [{ publicKey: edgeKey, allowedIps: ['0.0.0.0/0'], endpoint: args.edge }],
});
const sock = dgram.createSocket('udp4');
const sendAll = (list: Outgoing[]): void => {
  for (const o of list) sock.send(o.data, o.endpoint.port, o.endpoint.addressText());
};

sock.on('message', (msg, rinfo) => {
  const source = UdpEndpoint.parse(rinfo.address, rinfo.port);
  if (source === null) return;
  const r = device.receive(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), source, Date.now());
  sendAll(r.datagrams);
  if (r.kind === 'data' && r.packet !== null) {
    const p = parsePacket(r.packet);
    const payload = Buffer.from(r.packet.subarray(p.l4Offset + 8, p.ipLength)).toString();
    process.stdout.write(`${JSON.stringify({ src: p.src, srcPort: p.srcPort, dst: p.dst, dstPort: p.dstPort, payload })}\n`);
    process.exit(0);
  }
});

sock.bind(args.bind.port, args.bind.addr, () => {
  const i = args.inner;
  const packet = buildUdp({ src: i.src, dst: i.dst }, { srcPort: i.srcPort, dstPort: i.dstPort, payload: Buffer.from(i.payload) });
  sendAll(device.send(0, packet, Date.now()));
});
setInterval(() => sendAll(device.poll(Date.now())), POLL_MS);
setTimeout(() => {
  process.stderr.write('wg peer: no reply through the tunnel\n');
  process.exit(3);
}, args.timeoutMs);
