/** The database's files: their real path, whatever links lead to them, and owner-only modes. */
import { chmodSync, closeSync, constants, fchmodSync, openSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/** The database cannot be opened for a reason the operator must fix (permissions, another daemon). */
export class StoreOpenError extends Error {}

/** Owner only: the database holds the provider's refresh and access tokens. */
const PRIVATE_MODE = 0o600;

export const errorCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);

/**
 * The database's path with every symbolic link resolved, also before the file exists: two
 * spellings of one database (a linked directory, a linked file) must be one database and one lock.
 */
export function realDatabasePath(path: string): string {
  const absolute = resolve(path);
  try {
    return realpathSync(absolute);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
  let target: string;
  try {
    target = readlinkSync(absolute);
  } catch {
    return join(realpathSync(dirname(absolute)), basename(absolute));
  }
  // A dangling link: SQLite creates the file it points at.
  return realDatabasePath(resolve(dirname(absolute), target));
}

/** Takes group and world access away from an existing file. */
function tighten(path: string, mustExist: boolean): void {
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch (err) {
    if (!mustExist && errorCode(err) === 'ENOENT') return;
    throw new StoreOpenError(`cannot read the mode of ${path}: ${errorCode(err)}`);
  }
  if ((mode & 0o077) === 0) return;
  try {
    chmodSync(path, mode & 0o700);
  } catch (err) {
    throw new StoreOpenError(`${path} is open to other users (mode ${mode.toString(8).padStart(4, '0')}) and pollbridge cannot change that (${errorCode(err)}): chmod 600 it as its owner`);
  }
}

/**
 * Creates `path` readable and writable by its owner only, whatever the umask, or tightens it if
 * it exists: files that an earlier pollbridge created world-readable are fixed on the next start.
 */
export function makePrivate(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, PRIVATE_MODE);
  } catch (err) {
    if (errorCode(err) === 'EEXIST') return tighten(path, true);
    throw new StoreOpenError(`cannot create ${path}: ${errorCode(err)}`);
  }
  try {
    // A umask such as 0277 would leave the owner without write access.
    fchmodSync(fd, PRIVATE_MODE);
  } finally {
    closeSync(fd);
  }
}

/**
 * Before the database is opened for writing: the file exists, owner only. SQLite creates its
 * `-wal` and `-shm` with the database's own mode, so new ones follow; old ones are tightened.
 */
export function makeDatabasePrivate(databasePath: string): void {
  const real = realDatabasePath(databasePath);
  makePrivate(real);
  for (const suffix of ['-wal', '-shm']) tighten(real + suffix, false);
}
