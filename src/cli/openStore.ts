import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { SqliteStore } from '../store/sqliteStore.js';
import { configPath } from './options.js';
import { UserError } from './userError.js';

/**
 * Runs `use` on the database of `--db`, or else the one the config names (it must exist
 * already), with its path, and closes it afterwards whatever happens.
 */
export async function withCliStore<T>(opts: { db?: string; config?: string }, mode: { readonly: boolean }, use: (store: SqliteStore, path: string) => Promise<T>): Promise<T> {
  const path = opts.db ? resolve(opts.db) : loadConfig(configPath(opts.config)).database;
  if (!existsSync(path)) throw new UserError(`no database at ${path} (has the daemon run? pass --db FILE)`);
  const store = new SqliteStore(path, { readonly: mode.readonly });
  try {
    return await use(store, path);
  } finally {
    await store.close();
  }
}
