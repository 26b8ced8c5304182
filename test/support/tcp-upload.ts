/**
 * A TCP upload checked end to end, for e2e tests: a sink in one namespace hashes what it receives and answers the
 * hash; an uploader in another sends `bytes` pseudo-random bytes and compares. Plain node scripts (`node -e`,
 * CommonJS), so they run in any namespace without the project's loader.
 */
import { inNamespace, inNamespaceOk } from '../../src/lab/index.js';

const LISTEN_POLL_MS = 100;
const LISTEN_WAIT_MS = 10_000;

function sinkScript(timeoutMs: number): string {
  return `
const net = require('node:net'); const { createHash } = require('node:crypto');
const [addr, port] = process.argv.slice(1);
setTimeout(() => process.exit(2), ${timeoutMs}).unref();
const srv = net.createServer((s) => { srv.close(); const h = createHash('sha256'); let n = 0;
  s.on('data', (b) => { h.update(b); n += b.length; }); s.on('end', () => s.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') }))); });
srv.listen(Number(port), addr, () => console.log('ready'));`;
}

const UPLOADER = `
const net = require('node:net'); const { createHash, createCipheriv, randomBytes } = require('node:crypto');
const [addr, port, total] = process.argv.slice(1);
const h = createHash('sha256'); const c = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
const s = net.connect(Number(port), addr); let left = Number(total); let reply = '';
const pump = () => { while (left > 0) { const b = c.update(Buffer.alloc(Math.min(left, 256 * 1024))); left -= b.length; h.update(b); if (!s.write(b)) return s.once('drain', pump); } s.end(); };
s.on('connect', pump); s.on('data', (b) => (reply += b)); s.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
s.on('close', () => { console.log(JSON.stringify({ sent: h.digest('hex'), reply: JSON.parse(reply || '{}') })); process.exit(0); });`;

export interface UploadResult {
  /** SHA-256 of what the uploader sent. */
  sent: string;
  /** What the sink counted and hashed. */
  reply: { bytes: number; sha256: string };
}

/**
 * Uploads `bytes` from namespace `fromNs` to a sink at address:port in `sinkNs` (one connection; the sink exits
 * after it). Throws when the sink does not listen or the uploader fails; the caller compares the hashes.
 */
export async function tcpUpload(sinkNs: string, address: string, port: number, fromNs: string, bytes: number, timeoutMs: number): Promise<UploadResult> {
  const sink = inNamespace(sinkNs, process.execPath, ['-e', sinkScript(timeoutMs), address, String(port)], { timeoutMs });
  try {
    for (let waited = 0; ; waited += LISTEN_POLL_MS) {
      const ss = await inNamespaceOk(sinkNs, 'ss', ['-ltn', `sport = :${port}`]);
      if (ss.includes(String(port))) break;
      if (waited > LISTEN_WAIT_MS) throw new Error(`the upload sink in ${sinkNs} did not listen on ${address}:${port}`);
      await new Promise((r) => setTimeout(r, LISTEN_POLL_MS));
    }
    const out = await inNamespaceOk(fromNs, process.execPath, ['-e', UPLOADER, address, String(port), String(bytes)], { timeoutMs });
    return JSON.parse(out.trim().split('\n').pop()!) as UploadResult;
  } finally {
    // The sink serves one connection and exits (or gives up after timeoutMs).
    await sink.catch(() => undefined);
  }
}
