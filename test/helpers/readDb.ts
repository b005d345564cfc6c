import Database from 'better-sqlite3';

/** The database as the daemon left it, read-only; undefined while it does not exist or has no tables yet. */
export function readDb<T>(path: string, read: (db: Database.Database) => T): T | undefined {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch {
    return undefined;
  }
  try {
    return read(db);
  } catch (err) {
    // Created, not (fully) migrated yet.
    if (/^no such (table|column)/.test((err as Error).message)) return undefined;
    throw err;
  } finally {
    db.close();
  }
}
