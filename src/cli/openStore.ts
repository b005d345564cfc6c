import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { describeDatabaseUrl, isPostgresUrl, loadConfig } from '../config/load.js';
import type { PollbridgeConfig } from '../config/types.js';
import { StoreOpenError } from '../store/files.js';
import { isDaemonLockHeld } from '../store/lock.js';
import { pgErrorText } from '../store/pg/pgErrors.js';
import { openPgStore } from '../store/pg/pgStore.js';
import { SqliteStore } from '../store/sqliteStore.js';
import type { Store } from '../store/types.js';
import { configPath } from './options.js';
import { UserError } from './userError.js';

const OPERATOR_CODES = /^SQLITE_(NOTADB|CANTOPEN|PERM|READONLY|CORRUPT|AUTH|IOERR)/;

/** A command's database: a SQLite file, or a PostgreSQL URL (`display` is it without its password, for messages). */
export type CliDatabase = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string; display: string };

/** Who sends from the database: SQLite's one daemon (as its lock file tells), or PostgreSQL's live replicas, by name. */
export type Senders = { kind: 'daemon'; running: boolean | undefined } | { kind: 'replicas'; names: string[] };

/** Whether anyone sends from the database now; undefined when that cannot be told. */
export const anyoneSending = (who: Senders): boolean | undefined => (who.kind === 'daemon' ? who.running : who.names.length > 0);

/** The database of `--db` (a file or a postgres:// URL), or else the one the config names. */
export function cliDatabase(opts: { db?: string; config?: string }, config?: PollbridgeConfig): CliDatabase {
  if (opts.db !== undefined) {
    if (!isPostgresUrl(opts.db)) return { kind: 'sqlite', path: resolve(opts.db) };
    let url: URL;
    try {
      url = new URL(opts.db);
    } catch {
      throw new UserError('--db is not a valid postgres:// URL');
    }
    return { kind: 'postgres', url: opts.db, display: describeDatabaseUrl(url) };
  }
  const loaded = config ?? loadConfig(configPath(opts.config));
  return loaded.databaseUrl ? { kind: 'postgres', url: loaded.databaseUrl, display: loaded.database } : { kind: 'sqlite', path: loaded.database };
}

/** Where a message may say the database is: never the URL's password. */
export const databaseName = (db: CliDatabase): string => (db.kind === 'sqlite' ? db.path : db.display);

function openSqlite(path: string, readonly: boolean): Store {
  if (!existsSync(path)) throw new UserError(`no database at ${path} (has the daemon run? pass --db FILE)`);
  try {
    return new SqliteStore(path, { readonly });
  } catch (err) {
    // Not a database, damaged or unreadable: the operator's to fix, not a bug.
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && OPERATOR_CODES.test(code)) throw new StoreOpenError(`cannot open the database ${path}: ${(err as Error).message}`);
    throw err;
  }
}

/**
 * Runs `use` on the command's database (see cliDatabase; a SQLite file must exist already) and
 * closes it afterwards whatever happens.
 */
export async function withCliStore<T>(
  opts: { db?: string; config?: string }, mode: { readonly: boolean; config?: PollbridgeConfig }, use: (store: Store, db: CliDatabase) => Promise<T>,
): Promise<T> {
  const db = cliDatabase(opts, mode.config);
  const store = db.kind === 'sqlite' ? openSqlite(db.path, mode.readonly) : await openPgStore(db.url, db.display, { readonly: mode.readonly, max: 2 });
  try {
    return await use(store, db);
  } finally {
    await store.close();
  }
}

/** Who sends what the database holds, now. */
export async function senders(db: CliDatabase): Promise<Senders> {
  if (db.kind === 'sqlite') return { kind: 'daemon', running: isDaemonLockHeld(db.path) };
  const client = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    // The database's clock decides who is alive, as it does for the replicas themselves.
    const { rows } = await client.query<{ name: string }>('SELECT name FROM replicas WHERE expires_at > now() ORDER BY name');
    return { kind: 'replicas', names: rows.map((r) => r.name) };
  } catch (err) {
    throw new StoreOpenError(`cannot read the replicas of ${db.display}: ${pgErrorText(err)}`);
  } finally {
    await client.end().catch(() => {});
  }
}
