/**
 * Network namespaces for tests that need real interfaces. A run names its namespaces
 * tt-<pid>-<role>; a run that crashed cannot clean up after itself, so every run first deletes
 * the tt-<pid>-* namespaces of processes that are gone (never another live run's).
 */
import { execFileSync } from 'node:child_process';
import { isAlive } from '../../src/lab/lab.js';

/** Runs a command and returns its stdout; throws with its stderr on failure. */
export function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** This run's name for a namespace role. */
export function namespaceName(role: string): string {
  return `tt-${process.pid}-${role}`;
}

/** Deletes namespaces tt-<pid>-* whose process is gone. */
export function removeStaleNamespaces(): void {
  for (const line of sh('ip', 'netns', 'list').split('\n')) {
    const m = /^(tt-(\d+)-\S+)/.exec(line);
    if (m && Number(m[2]) !== process.pid && !isAlive(Number(m[2]))) {
      try {
        sh('ip', 'netns', 'del', m[1]);
      } catch {
        /* already gone */
      }
    }
  }
}

/** Runs a shell script inside a namespace; throws with its stderr on failure. */
export function nsSh(ns: string, script: string): void {
  sh('ip', 'netns', 'exec', ns, 'sh', '-ec', script);
}

/** Deletes these namespaces where they exist (a test's own, before it builds them and after). */
export function removeNamespaces(names: readonly string[]): void {
  for (const ns of names) {
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      /* not there */
    }
  }
}

/** Creates these namespaces, each with its loopback up. */
export function addNamespaces(names: readonly string[]): void {
  for (const ns of names) {
    sh('ip', 'netns', 'add', ns);
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
}
