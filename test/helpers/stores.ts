import { PgStore } from '../../src/store/pg/pgStore.js';
import type { Store } from '../../src/store/types.js';
import { freshPgDatabase, skipPg } from './pg.js';

/** Opens a store at `path`: the same path opens the same database again (a reopen). */
export type OpenStore = (path: string) => Promise<Store>;

/** A SQLite test's path stands for a PostgreSQL database of its own, made at its first open. */
const databases = new Map<string, string>();

export const openPgAt: OpenStore = async (path) => {
  let url = databases.get(path);
  if (url === undefined) {
    url = await freshPgDatabase('store');
    databases.set(path, url);
  }
  return PgStore.open(url);
};

/** The PostgreSQL store for `describe.each`, absent only where PostgreSQL tests are skipped (helpers/pg.ts). */
export const pgStores: [string, OpenStore][] = skipPg ? [] : [['PgStore', openPgAt]];
