export * from './constants.js';
export * from './codec.js';
export * from './drops.js';
export * from './replay.js';
export * from './sa-table.js';
export * from './selectors.js';
