import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';

/** Shipped beside `dist/` and `src/` alike, so both the build and the tests find the same files. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

export type Migration = { id: number; name: string; sql: string };

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_.*\.sql$/.test(f))
    .map((f) => ({ id: Number(f.split('_')[0]), name: f, sql: readFileSync(`${dir}/${f}`, 'utf8') }))
    .sort((a, b) => a.id - b.id);
}

export class MigrationError extends Error {}

/**
 * Applies every migration not yet recorded, each in its own transaction. A database that has a
 * migration this code does not know was written by a newer pollbridge: refuse rather than guess.
 */
export function migrate(db: Database.Database, migrations = readMigrations()): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS pollbridge_migrations (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const applied = new Set(
    (db.prepare('SELECT id FROM pollbridge_migrations').all() as { id: number }[]).map((r) => r.id),
  );
  const known = new Set(migrations.map((m) => m.id));
  const unknown = [...applied].filter((id) => !known.has(id));
  if (unknown.length > 0) {
    throw new MigrationError(
      `database has migration ${unknown.join(', ')} that this pollbridge does not know: it was written by a newer version`,
    );
  }
  const record = db.prepare('INSERT INTO pollbridge_migrations (id, name, applied_at) VALUES (?, ?, ?)');
  const done: number[] = [];
  for (const m of migrations) {
    if (applied.has(m.id)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.id, m.name, Date.now());
    }).immediate();
    done.push(m.id);
  }
  return done;
}

/**
 * A database opened read-only cannot be migrated: one that lacks a migration of this version
 * (the daemon of the version before still runs, or has not been started since the upgrade) is
 * refused by name, rather than failing later on a table or column it does not have yet.
 */
export function requireMigrated(db: Database.Database, migrations = readMigrations()): void {
  const recorded = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pollbridge_migrations'`).get() !== undefined;
  const applied = new Set(recorded ? (db.prepare('SELECT id FROM pollbridge_migrations').pluck().all() as number[]) : []);
  const missing = migrations.filter((m) => !applied.has(m.id)).map((m) => m.name);
  if (missing.length > 0) {
    throw new MigrationError(
      `database lacks migration ${missing.join(', ')}: it was written by an older pollbridge (or is not pollbridge's); run the daemon of this version once to migrate it`,
    );
  }
}
