/**
 * A lane that only claims and releases (lane-directory.test.ts): run as a worker thread, it claims and releases its
 * own keys in the shared LaneDirectory it is given, `rounds` times, while another worker does the same with keys in
 * the same buckets; it ends with all of them claimed and posts 'done'. Keys of lane L: ((2L + j + 1) << 10) | bucket,
 * j in 0..1, every bucket of the smallest directory: two keys a lane a bucket, so two lanes fill a bucket exactly.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LaneDirectory, MIN_DIRECTORY_BUCKETS } from '../../src/common/lane-directory.js';

export const KEYS_PER_BUCKET_PER_LANE = 2;

/** Lane `lane`'s key j of `bucket`. */
export function claimerKey(lane: number, j: number, bucket: number): number {
  return ((lane * KEYS_PER_BUCKET_PER_LANE + j + 1) << 10) | bucket;
}

interface ClaimerData {
  directory: SharedArrayBuffer;
  lane: number;
  rounds: number;
}

if (parentPort !== null && workerData !== null && (workerData as ClaimerData).directory instanceof SharedArrayBuffer) {
  const { directory, lane, rounds } = workerData as ClaimerData;
  const dir = new LaneDirectory(directory);
  for (let r = 0; r < rounds; r++) {
    for (let b = 0; b < MIN_DIRECTORY_BUCKETS; b++) for (let j = 0; j < KEYS_PER_BUCKET_PER_LANE; j++) dir.claim(claimerKey(lane, j, b), lane, r);
    // Release every other round's keys again, so claims meet the other lane's releases in the same buckets.
    if (r < rounds - 1) for (let b = 0; b < MIN_DIRECTORY_BUCKETS; b++) for (let j = 0; j < KEYS_PER_BUCKET_PER_LANE; j++) dir.release(claimerKey(lane, j, b), lane);
  }
  parentPort.postMessage('done');
}
