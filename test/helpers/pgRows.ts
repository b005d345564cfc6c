import pg from 'pg';

/**
 * Rows written straight into a PostgreSQL store's database, for tests of the delivering side:
 * streams and notifications as a poll would leave them, without going through the polling side.
 */
export class PgRows {
  private readonly pool: pg.Pool;

  constructor(url: string) {
    this.pool = new pg.Pool({ connectionString: url, max: 2 });
  }

  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.pool.query<R>(sql, params)).rows;
  }

  /** The stream of (instance, resource), made if new; its id. */
  async stream(instance: string, resource = 'reports'): Promise<number> {
    // Looked up first: an insert that conflicts would still take a number, and ids would differ from SQLite's.
    const [known] = await this.query<{ id: number }>('SELECT id FROM streams WHERE instance = $1 AND resource = $2', [instance, resource]);
    if (known) return known.id;
    const [row] = await this.query<{ id: number }>(`INSERT INTO streams (instance, resource, cursor_us, origin_us) VALUES ($1, $2, 0, 0)
      ON CONFLICT (instance, resource) DO UPDATE SET instance = excluded.instance RETURNING id`, [instance, resource]);
    return row!.id;
  }

  /** Queues notifications, in the order given (their seq follows it), due at `nextAttemptAt` (0 by default). */
  async notifications(rows: readonly { id: string; instance: string; nextAttemptAt?: number }[]): Promise<void> {
    for (const r of rows) {
      const streamId = await this.stream(r.instance);
      await this.query(`INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at)
        VALUES ($1, $2, $3, $4, 1, $5, 0)`, [r.id, streamId, r.instance, `{"id":"${r.id}"}`, r.nextAttemptAt ?? 0]);
    }
  }

  /** Every row of the outbox, oldest first, with its claim. */
  async outbox(): Promise<{ id: string; instance: string; status: string; claimed_by: string | null; live: boolean }[]> {
    return this.query(`SELECT id, instance, status, claimed_by, coalesce(claim_until >= now(), false) AS live FROM notifications ORDER BY seq`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
