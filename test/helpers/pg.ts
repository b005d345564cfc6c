import pg from 'pg';
import { describe, inject } from 'vitest';

/**
 * Outside CI, POLLBRIDGE_SKIP_PG=1 skips the PostgreSQL tests on a machine without the server.
 * Nowhere else is one skipped: in CI, or without the variable, a missing server fails them.
 */
export const skipPg = process.env.POLLBRIDGE_SKIP_PG === '1' && !process.env.CI;

/** The server's admin URL; throws with the reason when the run has no server. */
export function pgAdminUrl(): string {
  const url = inject('pgAdminUrl');
  if (!url) {
    throw new Error(`PostgreSQL tests need a server and none could start: ${inject('pgError')}. `
      + 'Install it with .ci/setup-test-tools (Debian\'s postgresql package), set PG_BIN, or (outside CI) POLLBRIDGE_SKIP_PG=1 to skip them');
  }
  return url;
}

let counter = 0;

/** A new empty database on the run's server, for one test; its URL. */
export async function freshPgDatabase(prefix = 't'): Promise<string> {
  const admin = pgAdminUrl();
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

/** `describe` for PostgreSQL tests: skipped only as skipPg says. */
export const describePg: typeof describe.skip = skipPg ? describe.skip : describe;
