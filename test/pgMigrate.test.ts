import { afterEach, expect, it } from 'vitest';
import { MigrationError, readMigrations } from '../src/store/migrate.js';
import { migratePg, PG_MIGRATIONS_DIR, requireMigratedPg } from '../src/store/pg/pgMigrate.js';
import { createPool } from '../src/store/pg/pool.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';

const pools: { end(): Promise<void> }[] = [];
afterEach(async () => { await Promise.all(pools.splice(0).map((p) => p.end())); });

describePg('PostgreSQL migrations', () => {
  it('are numbered as SQLite\'s, one for one', () => {
    expect(readMigrations(PG_MIGRATIONS_DIR).map((m) => m.id)).toEqual(readMigrations().map((m) => m.id));
  });

  it('three replicas starting at once migrate once, in turn; a read-only open then passes', async () => {
    const url = await freshPgDatabase();
    const [a, b, c] = [createPool(url), createPool(url), createPool(url)];
    pools.push(a, b, c);
    const done = await Promise.all([migratePg(a), migratePg(b), migratePg(c)]);
    expect(done.flat().sort()).toEqual(readMigrations(PG_MIGRATIONS_DIR).map((m) => m.id));
    await expect(requireMigratedPg(a)).resolves.toBeUndefined();
  });

  it('refuses a database migrated by a newer pollbridge, and a read-only open of an unmigrated one', async () => {
    const url = await freshPgDatabase();
    const pool = createPool(url);
    pools.push(pool);
    await expect(requireMigratedPg(pool)).rejects.toThrow(/lacks migration 0001_initial.sql/);
    await migratePg(pool);
    await pool.query(`INSERT INTO pollbridge_migrations VALUES (999, '0999_future.sql', 0)`);
    await expect(migratePg(pool)).rejects.toThrow(MigrationError);
    await expect(migratePg(pool)).rejects.toThrow(/999/);
  });
});
