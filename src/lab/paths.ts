/** Where the lab's own files are, whether it runs from src/ through tsx or from a build under dist/. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

function findRepoRoot(): string {
  let dir = HERE;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tether') return dir;
      } catch { /* not ours; keep looking */ }
    }
    const up = dirname(dir);
    if (up === dir) return resolve(HERE, '..', '..');
    dir = up;
  }
}

/** The repository root (the directory of tether's package.json): the cwd for `node --import tsx …` children. */
export const REPO_ROOT = findRepoRoot();

/** A file of src/lab in the source tree (the .py and the .ts scripts the lab runs in namespaces). */
export function labSourceFile(name: string): string {
  return join(REPO_ROOT, 'src', 'lab', name);
}

/** The daemon's entry point. */
export const TETHER_CLI = join(REPO_ROOT, 'src', 'cli', 'tether.ts');

/** Debian's python (python3-scapy installs for it, not for a pyenv python earlier on PATH). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/** Arguments that run a TypeScript file with Node through tsx (the child's cwd must be REPO_ROOT). */
export function nodeTsArgs(file: string, args: readonly string[] = []): string[] {
  return ['--import', 'tsx', file, ...args];
}
