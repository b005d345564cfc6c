import pg from 'pg';
import { expect, it } from 'vitest';
import { describePg, freshPgDatabase } from './helpers/pg.js';

describePg('the test PostgreSQL server', () => {
  it('is a real server: a fresh database per test, isolated from the others', async () => {
    const [a, b] = [await freshPgDatabase(), await freshPgDatabase()];
    expect(a).not.toBe(b);
    const client = new pg.Client({ connectionString: a });
    await client.connect();
    try {
      const { rows } = await client.query<{ v: string }>('SELECT version() AS v');
      expect(rows[0]!.v).toMatch(/^PostgreSQL \d+/);
      await client.query('CREATE TABLE only_here (x int)');
    } finally {
      await client.end();
    }
    const other = new pg.Client({ connectionString: b });
    await other.connect();
    try {
      const { rows } = await other.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'only_here'`);
      expect(rows[0].n).toBe(0);
    } finally {
      await other.end();
    }
  });
});
