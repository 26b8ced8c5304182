/**
 * The running daemon's status, from an e2e test: SIGUSR1 makes `tether run` log a 'status' line (src/cli/tether.ts);
 * this waits for the next one in its log and returns it, typed as the caller reads it.
 */
import { readFileSync } from 'node:fs';

const STATUS_WAIT_MS = 5000;
const POLL_MS = 100;

export async function edgeStatus<T>(pid: number, logFile: string): Promise<T> {
  const statusLines = () => readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"msg":"status"'));
  const before = statusLines().length;
  process.kill(pid, 'SIGUSR1');
  for (let waited = 0; waited < STATUS_WAIT_MS; waited += POLL_MS) {
    const lines = statusLines();
    if (lines.length > before) return (JSON.parse(lines[lines.length - 1]) as { status: T }).status;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`the edge (pid ${pid}) logged no status line in ${logFile}`);
}
