import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { errorCode, makePrivate, realDatabasePath, StoreOpenError } from './files.js';

export class DatabaseInUseError extends StoreOpenError {}

/** Far longer than a probe's single read holds its shared lock, short enough for a refusal. */
const PROBE_WAIT_MS = 500;

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
