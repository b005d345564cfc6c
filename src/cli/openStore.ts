import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { SqliteStore } from '../store/sqliteStore.js';
import { configPath } from './options.js';
import { UserError } from './userError.js';

/** The database of `--db`, or else the one the config names; it must exist already. */
export function openStoreForCli(opts: { db?: string; config?: string }, mode: { readonly: boolean }): SqliteStore {
  const path = opts.db ? resolve(opts.db) : loadConfig(configPath(opts.config)).database;
  if (!existsSync(path)) throw new UserError(`no database at ${path} (has the daemon run? pass --db FILE)`);
  return new SqliteStore(path, { readonly: mode.readonly });
}
