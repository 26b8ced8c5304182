/**
 * A Node child in a network namespace (e2e tests): its stdout kept line by line, waitFor(text) resolves with the first
 * line that holds `text` (rejects when the child exits first, or after START_TIMEOUT_MS: a generous behavioural bound on
 * a loaded machine, not a timed assertion).
 */
import { spawn, type ChildProcess } from 'node:child_process';

const START_TIMEOUT_MS = 60_000;
const STATUS_POLL_MS = 50;

export interface Child {
  child: ChildProcess;
  lines: string[];
  waitFor(text: string): Promise<string>;
  exited: Promise<number | null>;
}

/** `node ARGS` in namespace `ns`; `stdin`: a pipe the test writes commands to. */
export function nsSpawn(ns: string, args: string[], stdin = false): Child {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  let buffered = '';
  const waiters: Array<{ text: string; resolve: (line: string) => void; reject: (e: Error) => void }> = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`${ns}: exited ${code} before "${w.text}": ${err}${lines.join('\n')}`));
    resolve(code);
  }));
  child.stderr?.on('data', (b: Buffer) => { err += b.toString(); });
  child.stdout?.on('data', (b: Buffer) => {
    buffered += b.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      for (let k = waiters.length - 1; k >= 0; k--) if (line.includes(waiters[k].text)) waiters.splice(k, 1)[0].resolve(line);
    }
  });
  const waitFor = (text: string): Promise<string> => {
    const have = lines.find((l) => l.includes(text));
    if (have !== undefined) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${ns}: no "${text}" within ${START_TIMEOUT_MS} ms: ${err}${lines.join('\n')}`)), START_TIMEOUT_MS);
      waiters.push({ text, resolve: (l) => { clearTimeout(timer); resolve(l); }, reject: (e) => { clearTimeout(timer); reject(e); } });
    });
  };
  return { child, lines, waitFor, exited };
}


/** A `tether run` child's status: SIGUSR1 makes it log a 'status' line (src/cli/tether.ts), returned as the caller reads it. */
export async function childStatus<T>(edge: Child): Promise<T> {
  const before = edge.lines.length;
  edge.child.kill('SIGUSR1');
  for (;;) {
    const line = edge.lines.slice(before).find((l) => l.includes('"msg":"status"'));
    if (line !== undefined) return (JSON.parse(line) as { status: T }).status;
    await new Promise((r) => setTimeout(r, STATUS_POLL_MS));
  }
}
