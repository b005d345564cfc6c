import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { MigrationError, readMigrations } from '../migrate.js';
import { withClient } from './pool.js';

/** PostgreSQL's migrations, numbered as SQLite's. */
export const PG_MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/postgres/', import.meta.url));

/** One key for every pollbridge: replicas started together migrate one after the other. */
const MIGRATION_LOCK = 0x706f6c6c; // "poll"

/**
 * Applies every migration not yet recorded, each in its own transaction, under an advisory lock
 * that replicas starting at once take in turn. A database with a migration this code does not
 * know was written by a newer pollbridge: refused.
 */
export async function migratePg(pool: pg.Pool, migrations = readMigrations(PG_MIGRATIONS_DIR)): Promise<number[]> {
  return withClient(pool, async (client) => {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS pollbridge_migrations (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
      const applied = new Set((await client.query<{ id: number }>('SELECT id FROM pollbridge_migrations')).rows.map((r) => r.id));
      const known = new Set(migrations.map((m) => m.id));
      const unknown = [...applied].filter((id) => !known.has(id));
      if (unknown.length > 0) {
        throw new MigrationError(`database has migration ${unknown.join(', ')} that this pollbridge does not know: it was written by a newer version`);
      }
      const done: number[] = [];
      for (const m of migrations) {
        if (applied.has(m.id)) continue;
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO pollbridge_migrations (id, name, applied_at) VALUES ($1, $2, $3)', [m.id, m.name, Date.now()]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw new MigrationError(`migration ${m.name} failed: ${(err as Error).message}`);
        }
        done.push(m.id);
      }
      return done;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
    }
  });
}

/** For read-only commands: a database lacking a migration of this version is refused by name. */
export async function requireMigratedPg(pool: pg.Pool, migrations = readMigrations(PG_MIGRATIONS_DIR)): Promise<void> {
  const { rows } = await pool.query<{ present: boolean }>(`SELECT to_regclass('pollbridge_migrations') IS NOT NULL AS present`);
  const applied = new Set(rows[0]!.present ? (await pool.query<{ id: number }>('SELECT id FROM pollbridge_migrations')).rows.map((r) => r.id) : []);
  const missing = migrations.filter((m) => !applied.has(m.id)).map((m) => m.name);
  if (missing.length > 0) {
    throw new MigrationError(`database lacks migration ${missing.join(', ')}: it was written by an older pollbridge (or is not pollbridge's); run the daemon of this version once to migrate it`);
  }
}
