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

/** One statement on the database of `url`, on a connection of its own: the test's view, not a store's. */
export async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Who holds which polled stream by the database's view, by instance name: running leases of
 * live replicas only (the callout streams, one per instance, left out).
 */
export async function holders(url: string): Promise<Map<string, string>> {
  const rows = await query<{ instance: string; replica: string }>(url, `
    SELECT s.instance, r.name AS replica FROM stream_leases l JOIN streams s ON s.id = l.stream_id
    JOIN replicas r ON r.id = l.replica_id AND r.expires_at > now() WHERE l.expires_at > now() AND s.resource <> '(callout)'`);
  return new Map(rows.map((r) => [r.instance, r.replica]));
}
