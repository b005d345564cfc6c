import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { StoreOpenError } from '../store/files.js';
import { SqliteStore } from '../store/sqliteStore.js';
import { configPath } from './options.js';
import { UserError } from './userError.js';

const OPERATOR_CODES = /^SQLITE_(NOTADB|CANTOPEN|PERM|READONLY|CORRUPT|AUTH|IOERR)/;

/**
 * Runs `use` on the database of `--db`, or else the one the config names (it must exist
 * already), with its path, and closes it afterwards whatever happens.
 */
export async function withCliStore<T>(opts: { db?: string; config?: string }, mode: { readonly: boolean }, use: (store: SqliteStore, path: string) => Promise<T>): Promise<T> {
  const path = opts.db ? resolve(opts.db) : loadConfig(configPath(opts.config)).database;
  if (!existsSync(path)) throw new UserError(`no database at ${path} (has the daemon run? pass --db FILE)`);
  let store: SqliteStore;
  try {
    store = new SqliteStore(path, { readonly: mode.readonly });
  } catch (err) {
    // Not a database, damaged or unreadable: the operator's to fix, not a bug.
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && OPERATOR_CODES.test(code)) throw new StoreOpenError(`cannot open the database ${path}: ${(err as Error).message}`);
    throw err;
  }
  try {
    return await use(store, path);
  } finally {
    await store.close();
  }
}
