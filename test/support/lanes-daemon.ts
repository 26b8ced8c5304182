/**
 * `tether run --lanes N` for the lanes e2e tests (docs/ARCHITECTURE.md "Lanes"), one way: started, then waited for
 * until it logs "lanes running" and every other lane has posted its status to lane 0 (the merged status shows lane
 * k's TUN queues as "<tun>#k": src/daemon/lanes.ts mergeLaneStatus; a lane posts every LANE_STATUS_INTERVAL_MS), so
 * a test's first look at the status already covers every lane; stopped with stop().
 *   startLanesDaemon: in a namespace of the test's own topology (test/support/ns-child.ts);
 *   labUpLanes: the lab's daemon (labUpForTest with --lanes), its status read from the lab's log.
 * Waits are generous behavioural bounds on a loaded 2-core machine, not timed assertions.
 */
import type { SuiteContext, TestContext } from 'node:test';
import { labStatus, type LabInfo, type LabUpOptions } from '../../src/lab/index.js';
import { edgeStatus } from './edge-status.js';
import { labUpForTest } from './lab-test.js';
import { childStatus, nsSpawn, type Child } from './ns-child.js';
import { readFileSync } from 'node:fs';

/** The lanes every lanes test runs with. */
export const LANES = 2;
/** A quarter of LANE_STATUS_INTERVAL_MS (src/daemon/lanes.ts): another lane's post is seen soon after it lands. */
const POLL_MS = 250;
/** POLLS x POLL_MS = 20 s: generous for a lane's first post, or for its counters to catch up with traffic. */
const POLLS = 80;
/** How long the lab's daemon may take to log "lanes running" (its log is a file, read by polling). */
const LAB_START_MS = 90_000;

/** What the lanes tests read of the merged status (the daemon's `status` line). */
export interface LanesStatus {
  tuns: Array<{ name: string; packetsIn: number }>;
  edge: Record<string, number>;
  flows: { ipv4: number; ipv6: number };
}

export interface LanesDaemon<S extends LanesStatus = LanesStatus> {
  lanes: number;
  /** The merged status now (every lane's part at most LANE_STATUS_INTERVAL_MS old). */
  status(): Promise<S>;
  /** The status once `done` holds (other lanes post once a second), or the last one read after POLLS tries. */
  statusUntil(done: (s: S) => boolean): Promise<S>;
}

/** The daemon in a test's own namespace; `child` has its log lines. */
export interface NsLanesDaemon<S extends LanesStatus = LanesStatus> extends LanesDaemon<S> {
  child: Child;
  /** SIGKILL (the tests' after(): nothing of its state is checked after). */
  stop(): void;
}

/** `read` until `done` holds or POLLS reads were made; the last value read. */
export async function pollUntil<T>(read: () => T | Promise<T>, done: (v: T) => boolean): Promise<T> {
  let v = await read();
  for (let k = 0; k < POLLS && !done(v); k++) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    v = await read();
  }
  return v;
}

/** Every lane 1..lanes-1 has posted a status: its TUN queues are in the merged status. */
function everyLanePosted(lanes: number, s: LanesStatus): boolean {
  for (let k = 1; k < lanes; k++) if (!s.tuns.some((t) => t.name.endsWith(`#${k}`))) return false;
  return true;
}

async function lanesUp<S extends LanesStatus>(lanes: number, status: () => Promise<S>): Promise<LanesDaemon<S>> {
  const statusUntil = (done: (s: S) => boolean): Promise<S> => pollUntil(status, done);
  const s = await statusUntil((st) => everyLanePosted(lanes, st));
  if (!everyLanePosted(lanes, s)) throw new Error(`not every one of ${lanes} lanes posted its status within ${POLLS * POLL_MS} ms: ${JSON.stringify(s.tuns)}`);
  return { lanes, status, statusUntil };
}

/**
 * `tether run --lanes N --config FILE` in namespace `ns` (`api`: with its API, waited for too; default --no-api).
 * A daemon that does not come up is killed here (nobody else holds it) and the error says what it logged.
 */
export async function startLanesDaemon<S extends LanesStatus = LanesStatus>(ns: string, configFile: string, o: { lanes?: number; api?: boolean } = {}): Promise<NsLanesDaemon<S>> {
  const lanes = o.lanes ?? LANES;
  const child = nsSpawn(ns, ['--import', 'tsx', 'src/cli/tether.ts', 'run', ...(o.api === true ? [] : ['--no-api']), '--lanes', String(lanes), '--config', configFile]);
  const stop = (): void => void child.child.kill('SIGKILL');
  try {
    await child.waitFor('"lanes running"');
    if (o.api === true) await child.waitFor('"API listening"');
    return { ...(await lanesUp(lanes, () => childStatus<S>(child))), child, stop };
  } catch (e) {
    stop();
    throw e;
  }
}

/** The lab (labUpForTest: labDown, which stops the daemon too, registered with `t`) with `tether run --lanes N`. */
export async function labUpLanes<S extends LanesStatus = LanesStatus>(
  t: TestContext | SuiteContext, opts: Omit<LabUpOptions, 'daemonArgs'> & { prefix: string }, lanes = LANES,
): Promise<LanesDaemon<S> & { lab: LabInfo }> {
  const lab = await labUpForTest(t, { ...opts, daemonArgs: ['--lanes', String(lanes)] });
  const log = lab.edgeLog!;
  for (let waited = 0; !readFileSync(log, 'utf8').includes('"lanes running"'); waited += POLL_MS) {
    if (waited > LAB_START_MS) throw new Error(`the daemon's lanes did not start: ${readFileSync(log, 'utf8').slice(-4000)}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const status = async (): Promise<S> => edgeStatus<S>((await labStatus({ prefix: opts.prefix })).edge!.pid!, log);
  return { ...(await lanesUp(lanes, status)), lab };
}

