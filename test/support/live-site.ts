/**
 * WireGuard sites built by a test next to a running lab (issue 8): not part of the lab's startup topology or
 * configuration. Each has its own namespace, a veth into the lab's edge namespace, its own wireguard-go
 * interface and key, and 10.0.1.10 on the tunnel like every lab site. Names carry the lab's prefix, and an
 * earlier run's leftovers under the same names are removed first; stop() removes everything it made.
 *
 * Also: the running daemon's API from inside the edge namespace (curl), and its Prometheus counters.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inNamespaceOk, LAB, type LabInfo } from '../../src/lab/index.js';
import { keyToBase64, publicKeyFromPrivate } from '../../src/onramp/wireguard/index.js';

const SOCKET_DIR = '/var/run/wireguard';
const SOCKET_WAIT_MS = 10_000;
const EDGE_HOST = 254;
const ROUTER_HOST = 2;

export interface WgKeys {
  privateKey: string;
  publicKey: string;
}

export function newWgKeys(): WgKeys {
  const raw = randomBytes(32);
  return { privateKey: keyToBase64(raw), publicKey: keyToBase64(publicKeyFromPrivate(raw)) };
}

export interface LiveSite {
  ns: string;
  iface: string;
  keys: WgKeys;
  /** Where the site's wireguard-go sends its handshakes. */
  edgeEndpoint: string;
  /** Starts the persistent keepalive (wireguard-go then handshakes at once). */
  startKeepalive(seconds: number): Promise<void>;
  /** Bytes the site's wireguard-go received from the edge. */
  rxBytes(): Promise<number>;
  stop(): Promise<void>;
}

/** `ip ARGS`, throwing with its stderr. */
function ipOk(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

/**
 * A site `<prefix>-<role>` with underlay 192.168.<net>.0/24 (edge link `<role>` .254 with proxy ARP, router .2)
 * whose wireguard-go peers with `edgePublicKey` at `edgeEndpoint`:51820 (routed through the edge namespace).
 */
export async function startLiveSite(lab: LabInfo, role: string, net: number, edgePublicKey: string, edgeEndpoint: string): Promise<LiveSite> {
  const ns = `${lab.prefix}-${role}`;
  const iface = `${lab.prefix}${role}`.slice(0, 15);
  const edgeLink = `v-${role}`.slice(0, 15);
  const keys = newWgKeys();
  const underlay = `192.168.${net}`;
  const socket = join(SOCKET_DIR, `${iface}.sock`);
  // Leftovers of an earlier run under the same names.
  spawnSync('ip', ['-n', lab.names.edge, 'link', 'del', edgeLink]);
  spawnSync('ip', ['netns', 'del', ns]);
  rmSync(socket, { force: true });

  ipOk(['netns', 'add', ns]);
  ipOk(['-n', ns, 'link', 'set', 'lo', 'up']);
  ipOk(['-n', lab.names.edge, 'link', 'add', edgeLink, 'type', 'veth', 'peer', 'name', 'veth-edge', 'netns', ns]);
  ipOk(['-n', lab.names.edge, 'addr', 'add', `${underlay}.${EDGE_HOST}/24`, 'dev', edgeLink]);
  ipOk(['-n', ns, 'addr', 'add', `${underlay}.${ROUTER_HOST}/24`, 'dev', 'veth-edge']);
  await inNamespaceOk(lab.names.edge, 'sysctl', ['-q', '-w', `net.ipv4.conf.${edgeLink}.proxy_arp=1`]);
  await inNamespaceOk(lab.names.edge, 'sysctl', ['-q', '-w', `net.ipv4.conf.${edgeLink}.rp_filter=0`]);
  ipOk(['-n', lab.names.edge, 'link', 'set', edgeLink, 'up']);
  ipOk(['-n', ns, 'link', 'set', 'veth-edge', 'up']);
  // An endpoint on another site's underlay is reached through the edge namespace.
  if (!edgeEndpoint.startsWith(`${underlay}.`)) ipOk(['-n', ns, 'route', 'add', `${edgeEndpoint}/32`, 'via', `${underlay}.${EDGE_HOST}`]);

  const wg = spawn('ip', ['netns', 'exec', ns, 'wireguard-go', '-f', iface], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' },
  });
  wg.unref();
  const deadline = Date.now() + SOCKET_WAIT_MS;
  while (!existsSync(socket)) {
    if (Date.now() > deadline) throw new Error(`wireguard-go ${iface} in ${ns}: no control socket after ${SOCKET_WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const keyFile = join(lab.runDir, `${iface}.key`);
  writeFileSync(keyFile, `${keys.privateKey}\n`, { mode: 0o600 });
  await inNamespaceOk(ns, 'wg', ['set', iface, 'listen-port', String(LAB.wireguardPort), 'private-key', keyFile,
    'peer', edgePublicKey, 'endpoint', `${edgeEndpoint}:${LAB.wireguardPort}`, 'allowed-ips', '0.0.0.0/0']);
  ipOk(['-n', ns, 'addr', 'add', `${LAB.siteHost}/32`, 'dev', iface]);
  ipOk(['-n', ns, 'link', 'set', iface, 'up']);
  ipOk(['-n', ns, 'route', 'add', 'default', 'dev', iface, 'src', LAB.siteHost]);

  return {
    ns,
    iface,
    keys,
    edgeEndpoint,
    startKeepalive: async (seconds) => {
      await inNamespaceOk(ns, 'wg', ['set', iface, 'peer', edgePublicKey, 'persistent-keepalive', String(seconds)]);
    },
    rxBytes: async () => {
      const out = await inNamespaceOk(ns, 'wg', ['show', iface, 'transfer']);
      return Number(out.trim().split(/\s+/)[1] ?? 0);
    },
    stop: async () => {
      if (wg.pid !== undefined) { try { process.kill(wg.pid, 'SIGKILL'); } catch { /* gone */ } }
      spawnSync('ip', ['-n', lab.names.edge, 'link', 'del', edgeLink]);
      spawnSync('ip', ['netns', 'del', ns]);
      rmSync(socket, { force: true });
      rmSync(keyFile, { force: true });
    },
  };
}

export interface ApiAnswer {
  status: number;
  body: unknown;
}

/** The lab's API token as a curl header argument: every call carries it, reads and /metrics included. */
function tokenHeader(lab: LabInfo): string[] {
  return ['-H', `authorization: Bearer ${readFileSync(join(lab.runDir, 'api-token'), 'utf8').trim()}`];
}

/** One call to the daemon's API from inside the edge namespace, with the lab's token. */
export async function edgeApi(lab: LabInfo, method: string, path: string, body?: unknown): Promise<ApiAnswer> {
  const args = ['-s', '-X', method, ...tokenHeader(lab), '-w', '\n%{http_code}', `http://127.0.0.1:8470${path}`];
  if (body !== undefined) args.push('-H', `content-type: ${method === 'PATCH' ? 'application/merge-patch+json' : 'application/json'}`, '--data-binary', JSON.stringify(body));
  const out = await inNamespaceOk(lab.names.edge, 'curl', args);
  const nl = out.lastIndexOf('\n');
  const text = out.slice(0, nl);
  return { status: Number(out.slice(nl + 1)), body: text === '' ? null : JSON.parse(text) as unknown };
}

/** The daemon's Prometheus samples whose name and labels match `re`, each as [name{labels}, value]. */
export async function metricSamples(lab: LabInfo, re: RegExp): Promise<Array<[string, number]>> {
  const out = await inNamespaceOk(lab.names.edge, 'curl', ['-s', ...tokenHeader(lab), 'http://127.0.0.1:8470/metrics']);
  const samples: Array<[string, number]> = [];
  for (const line of out.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const at = line.lastIndexOf(' ');
    if (re.test(line.slice(0, at))) samples.push([line.slice(0, at), Number(line.slice(at + 1))]);
  }
  return samples;
}

/** The daemon's Prometheus samples whose name and labels match `re`, summed. */
export async function metric(lab: LabInfo, re: RegExp): Promise<number> {
  return (await metricSamples(lab, re)).reduce((sum, [, value]) => sum + value, 0);
}
