/**
 * The API token file (api.token_file). The daemon runs as root, so the file is opened the way a root process
 * must open a path that someone else might have prepared:
 *  - never through a symbolic link (O_NOFOLLOW): a link would make root read (and, on first start, write) a
 *    file of the link maker's choosing;
 *  - an existing file must be a regular file of the daemon's own user, readable by nobody else (mode & 077 = 0).
 *    A file that fails is refused with a message saying what to do; it is never chmod-ed into shape, because
 *    whoever could read or write it before may already know, or have chosen, the token.
 *  - a new file is created exclusively (O_EXCL), mode 0600, in a directory created with mode 0700.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

const TOKEN_BYTES = 32;
export const TOKEN_FILE_MODE = 0o600;
const TOKEN_DIR_MODE = 0o700;
/** Group and other permission bits. */
const NOT_OWNER_BITS = 0o077;

/** A token file tether will not use; the message says why and what to do. */
export class TokenFileError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`API token file ${path}: ${reason}`);
    this.name = 'TokenFileError';
  }
}

/** Opens `path` for reading without following a final symbolic link; null when it does not exist. */
function openNoFollow(path: string, flags: number): number | null {
  try {
    return openSync(path, flags | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new TokenFileError(path, 'is a symbolic link; tether opens the token file only directly (remove the link, or point api.token_file at the file itself)');
    throw e;
  }
}

/** Refuses a file that is not a regular file of ours, private to us. */
function checkOwnFile(path: string, fd: number): void {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new TokenFileError(path, 'is not a regular file');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new TokenFileError(path, `belongs to uid ${st.uid}, not to tether's user (uid ${uid}); remove it and tether creates a new one`);
  if ((st.mode & NOT_OWNER_BITS) !== 0) {
    throw new TokenFileError(path, `has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: others may have read it; remove it (tether creates a new token, mode 0600) or chmod 600 it if you know nobody did`);
  }
}

/**
 * The API token at `path`: read when the file exists (and passes the checks above), else generated (32 random
 * bytes, base64url) and written into a new file, mode 0600. An existing empty file of ours gets a new token.
 */
export function loadOrCreateToken(path: string): string {
  const fd = openNoFollow(path, constants.O_RDWR);
  if (fd !== null) {
    try {
      checkOwnFile(path, fd);
      const token = readFileSync(fd, 'utf8').trim();
      if (token.length > 0) return token;
      return writeToken(fd);
    } finally {
      closeSync(fd);
    }
  }
  mkdirSync(dirname(path), { recursive: true, mode: TOKEN_DIR_MODE });
  let created: number;
  try {
    created = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, TOKEN_FILE_MODE);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new TokenFileError(path, 'appeared while tether was creating it; start again');
    throw e;
  }
  try {
    return writeToken(created);
  } finally {
    closeSync(created);
  }
}

function writeToken(fd: number): string {
  const token = randomBytes(TOKEN_BYTES).toString('base64url');
  writeSync(fd, `${token}\n`, 0);
  return token;
}

/**
 * The token for a client (the CLI): read without following a symbolic link, nothing created. Throws
 * TokenFileError, or the open error (EACCES) for the caller to report.
 */
export function readTokenFile(path: string): string {
  const fd = openNoFollow(path, constants.O_RDONLY);
  if (fd === null) throw new TokenFileError(path, 'does not exist (the daemon creates it on its first start; --token-file)');
  try {
    const token = readFileSync(fd, 'utf8').trim();
    if (token.length === 0) throw new TokenFileError(path, 'is empty');
    return token;
  } finally {
    closeSync(fd);
  }
}

/** Constant-time comparison (hashing first makes the lengths equal, so the length leaks nothing either). */
export function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
