import { chmodSync, closeSync, constants, existsSync, fchmodSync, mkdirSync, openSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';

/** The database cannot be opened for a reason the operator must fix (permissions, another daemon). */
export class StoreOpenError extends Error {}
export class DatabaseInUseError extends StoreOpenError {}

/** Owner only: the database holds the provider's refresh and access tokens. */
const PRIVATE_MODE = 0o600;

/** Far longer than a probe's single read holds its shared lock, short enough for a refusal. */
const PROBE_WAIT_MS = 500;

const errorCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);

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
function makePrivate(path: string): void {
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

/**
 * Holds `<database>.lock` for the life of the daemon, beside the database's real path. SQLite's
 * exclusive locking mode keeps an OS file lock that the kernel drops when the process dies, so a
 * kill -9 never leaves a stale lock, while a second live daemon on the same database is refused.
 * The database itself stays in shared mode so that `status` and `events` can read it while the
 * daemon runs.
 */
export function acquireDaemonLock(databasePath: string): { release(): void } {
  try {
    mkdirSync(dirname(databasePath), { recursive: true });
  } catch (err) {
    throw new StoreOpenError(`cannot create the database directory ${dirname(databasePath)}: ${errorCode(err)}`);
  }
  const lockPath = `${realDatabasePath(databasePath)}.lock`;
  makePrivate(lockPath);
  // A probe (`status`, `replay`: isDaemonLockHeld) holds a shared lock for the moment of one
  // read; taking ours waits that out instead of calling the prober a daemon. A daemon holding
  // the lock holds it for its life, so this only delays the refusal of a second one.
  const lock = new Database(lockPath, { timeout: PROBE_WAIT_MS });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, started_at INTEGER NOT NULL)');
    lock.prepare('DELETE FROM holder').run();
    lock.prepare('INSERT INTO holder (pid, started_at) VALUES (?, ?)').run(process.pid, Date.now());
  } catch (err) {
    lock.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      throw new DatabaseInUseError(`database ${databasePath} is in use by another pollbridge daemon (lock ${lockPath} is held)`);
    }
    throw err;
  }
  return { release: () => lock.close() };
}

/**
 * Whether a daemon holds the lock of `databasePath` now, without waiting and without taking it:
 * for commands that change the outbox and must say who sends what they queued. The holder's
 * exclusive lock refuses even a read; `undefined` when the lock file cannot be read at all
 * (another user's service, for one).
 */
export function isDaemonLockHeld(databasePath: string): boolean | undefined {
  const lockPath = `${realDatabasePath(databasePath)}.lock`;
  // A database no daemon ever ran on has no lock file, and a read-only probe must not make one.
  if (!existsSync(lockPath)) return false;
  let probe: Database.Database;
  try {
    probe = new Database(lockPath, { readonly: true, fileMustExist: true, timeout: 0 });
  } catch {
    return undefined;
  }
  try {
    probe.prepare('SELECT count(*) FROM holder').get();
    return false;
  } catch (err) {
    return (err as { code?: string }).code === 'SQLITE_BUSY' ? true : undefined;
  } finally {
    probe.close();
  }
}
