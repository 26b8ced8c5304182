/**
 * The running lab daemon's status (Edge.status(): counters by engine), read the way an operator can: SIGUSR1 makes
 * it log a 'status' line, which is parsed from its log. For end-to-end tests that compare tether's own counts with
 * what the peers saw.
 */
import { readFileSync } from 'node:fs';

/** Polls of the log for the new line, and the wait between them (ms): generous, the machine is shared. */
const STATUS_POLLS = 50;
const STATUS_POLL_MS = 100;

export async function edgeStatus<T>(pid: number, logFile: string): Promise<T> {
  const statusLines = () => readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"msg":"status"'));
  const before = statusLines().length;
  process.kill(pid, 'SIGUSR1');
  for (let poll = 0; poll < STATUS_POLLS; poll++) {
    const lines = statusLines();
    if (lines.length > before) return (JSON.parse(lines[lines.length - 1]) as { status: T }).status;
    await new Promise((r) => setTimeout(r, STATUS_POLL_MS));
  }
  throw new Error(`the edge (pid ${pid}) logged no status line in ${logFile}`);
}
