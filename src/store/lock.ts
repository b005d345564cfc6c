import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

/** The database cannot be opened for a reason the operator must fix (permissions, another daemon). */
export class StoreOpenError extends Error {}
export class DatabaseInUseError extends StoreOpenError {}

/**
 * Holds `<database>.lock` for the life of the daemon. SQLite's exclusive locking mode keeps an
 * OS file lock that the kernel drops when the process dies, so a kill -9 never leaves a stale
 * lock, while a second live daemon on the same database is refused. The database itself stays
 * in shared mode so that `status` and `events` can read it while the daemon runs.
 */
export function acquireDaemonLock(databasePath: string): { release(): void } {
  const lockPath = `${databasePath}.lock`;
  try {
    mkdirSync(dirname(databasePath), { recursive: true });
  } catch (err) {
    throw new StoreOpenError(`cannot create the database directory ${dirname(databasePath)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const lock = new Database(lockPath, { timeout: 0 });
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
