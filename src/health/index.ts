/** Tunnel health (health.ts explains the engine; judge.ts the state rules; constants.ts the figures). */
export * from './constants.js';
export * from './health.js';
export { HealthJudge, type HealthState, type TransitionReason } from './judge.js';
export { LossWindow } from './loss-window.js';
