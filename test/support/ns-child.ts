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
  /** The first line from index `from` on (default: any) that holds `text`. */
  waitFor(text: string, from?: number): Promise<string>;
  /** Writes `command` and a newline on stdin (spawned with `stdin`) and waits for the next line that holds `text`. */
  ask(command: string, text: string): Promise<string>;
  /** Resolves with stdout (its lines joined) when the child exits 0; rejects naming the code, stderr and stdout. */
  output(): Promise<string>;
  exited: Promise<number | null>;
}

export interface NsSpawnOptions {
  /** A pipe the test writes commands to (ask()); default none. */
  stdin?: boolean;
  /** Hears every stdout line as it arrives (e.g. to note when). */
  onLine?: (line: string) => void;
  /** How long waitFor waits (default START_TIMEOUT_MS). */
  waitMs?: number;
}

/** `node ARGS` in namespace `ns`; `opts` true: a stdin pipe (as { stdin: true }). */
export function nsSpawn(ns: string, args: string[], opts: boolean | NsSpawnOptions = false): Child {
  const o: NsSpawnOptions = typeof opts === 'boolean' ? { stdin: opts } : opts;
  const waitMs = o.waitMs ?? START_TIMEOUT_MS;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { stdio: [o.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  let buffered = '';
  const waiters: Array<{ text: string; resolve: (line: string) => void; reject: (e: Error) => void }> = [];
  const take = (line: string): void => {
    lines.push(line);
    o.onLine?.(line);
    for (let k = waiters.length - 1; k >= 0; k--) if (line.includes(waiters[k].text)) waiters.splice(k, 1)[0].resolve(line);
  };
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Its output is all read once its pipes close (after 'exit', unless a child of its own holds them).
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => {
    // A last line without its newline (a child that wrote its answer with process.stdout.write) is a line too.
    if (buffered !== '') take(buffered);
    buffered = '';
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
      take(line);
    }
  });
  const waitFor = (text: string, from = 0): Promise<string> => {
    const have = lines.slice(from).find((l) => l.includes(text));
    if (have !== undefined) return Promise.resolve(have);
    if (child.stdout === null || child.stdout.readableEnded) return Promise.reject(new Error(`${ns}: exited ${child.exitCode ?? child.signalCode} before "${text}": ${err}${lines.join('\n')}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${ns}: no "${text}" within ${waitMs} ms: ${err}${lines.join('\n')}`)), waitMs);
      waiters.push({ text, resolve: (l) => { clearTimeout(timer); resolve(l); }, reject: (e) => { clearTimeout(timer); reject(e); } });
    });
  };
  const ask = (command: string, text: string): Promise<string> => {
    const from = lines.length;
    child.stdin!.write(`${command}\n`);
    return waitFor(text, from);
  };
  const output = async (): Promise<string> => {
    const code = await closed;
    if (code !== 0) throw new Error(`${ns}: node ${args.join(' ').slice(0, 80)} exited ${code}: ${err}${lines.join('\n')}`);
    return lines.join('\n');
  };
  return { child, lines, waitFor, ask, output, exited };
}

/** An inline ES module `script` run by node in namespace `ns`, `args` its process.argv.slice(1). */
export function nsScript(ns: string, script: string, args: string[] = [], opts: boolean | NsSpawnOptions = false): Child {
  return nsSpawn(ns, ['--input-type=module', '-e', script, '--', ...args], opts);
}

/**
 * A `tether run` child's status: SIGUSR1 makes it log a 'status' line (src/cli/tether.ts), returned as the caller reads
 * it. Rejects when the child is gone or logs none within START_TIMEOUT_MS.
 */
export async function childStatus<T>(edge: Child): Promise<T> {
  const before = edge.lines.length;
  edge.child.kill('SIGUSR1');
  for (let waited = 0; ; waited += STATUS_POLL_MS) {
    const line = edge.lines.slice(before).find((l) => l.includes('"msg":"status"'));
    if (line !== undefined) return (JSON.parse(line) as { status: T }).status;
    if (edge.child.exitCode !== null || edge.child.signalCode !== null || waited > START_TIMEOUT_MS) {
      throw new Error(`no status line from the edge (${edge.child.exitCode !== null || edge.child.signalCode !== null ? 'it exited' : `none within ${START_TIMEOUT_MS} ms`}): ${edge.lines.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, STATUS_POLL_MS));
  }
}
