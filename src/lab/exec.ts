/**
 * Running the lab's tools (ip, wg, wireguard-go, sysctl, node, python3) as child processes: control plane only,
 * never per packet. Every failure names the command line and carries its stderr, so a broken lab says which
 * step broke and why instead of "exit code 1".
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when the process was killed by a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunOptions {
  /** Written to the child's stdin, which is then closed. */
  input?: string;
  /** Kills the child (SIGKILL) after this many milliseconds. Default 30 s. */
  timeoutMs?: number;
  /** Extra environment variables on top of process.env. */
  env?: Record<string, string>;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** One command line as a shell user would type it (for messages only; arguments with spaces are quoted). */
export function formatCommand(command: string, args: readonly string[]): string {
  return [command, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** A lab step that failed: the message names the command and shows its stderr. */
export class LabCommandError extends Error {
  readonly command: string;
  readonly result: CommandResult;
  constructor(command: string, result: CommandResult, context?: string) {
    const status = result.signal !== null ? `killed by ${result.signal}` : `exit ${result.code}`;
    const detail = (result.stderr.trim() || result.stdout.trim() || '(no output)').split('\n').slice(-20).join('\n  ');
    super(`${context ? context + ': ' : ''}\`${command}\` failed (${status}):\n  ${detail}`);
    this.name = 'LabCommandError';
    this.command = command;
    this.result = result;
  }
}

/** Runs a command to completion and returns its output and status; never throws for a non-zero exit. */
export function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = e.code === 'ENOENT' ? 'not found (is it installed and on PATH?)' : e.message;
      reject(new Error(`cannot run \`${formatCommand(command, args)}\`: ${why}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code, signal });
    });
    child.stdin.on('error', () => { /* the child may exit without reading its input */ });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command and throws LabCommandError unless it exits 0; returns its stdout. */
export async function runOk(command: string, args: readonly string[], opts: RunOptions & { context?: string } = {}): Promise<string> {
  const result = await run(command, args, opts);
  if (result.code !== 0) throw new LabCommandError(formatCommand(command, args), result, opts.context);
  return result.stdout;
}

/** `ip …` (iproute2), optionally inside a namespace (`ip -n NS …`). */
export function ip(ns: string | null, args: readonly string[], context?: string): Promise<string> {
  return runOk('ip', ns === null ? args : ['-n', ns, ...args], { context });
}

/** `ip netns exec NS command args…`: a command inside a namespace, to completion. */
export function inNamespace(ns: string, command: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<CommandResult> {
  return run('ip', ['netns', 'exec', ns, command, ...args], opts);
}

/** Like inNamespace, but throws LabCommandError unless the command exits 0; returns its stdout. */
export async function inNamespaceOk(ns: string, command: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<string> {
  const fullArgs = ['netns', 'exec', ns, command, ...args];
  const result = await run('ip', fullArgs, opts);
  if (result.code !== 0) throw new LabCommandError(formatCommand('ip', fullArgs), result);
  return result.stdout;
}

/** `sysctl -w key=value` inside a namespace. */
export async function sysctl(ns: string, key: string, value: string | number): Promise<void> {
  await inNamespaceOk(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
