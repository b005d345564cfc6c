/** Replicas on one database: liveness, stream leases with fences, the token lock. */
import { hostname } from 'node:os';
import type pg from 'pg';
import type { AuthState, ClusterStore, Lease, LeaseHolder, ReplicaInfo } from '../types.js';
import type { PgContext } from './context.js';
import { withTokenLock } from './pgTokenLock.js';
import { inTransaction } from './pool.js';

/** A timestamptz as ms since the epoch, by the database's clock. */
const MS = (column: string): string => `floor(extract(epoch from ${column}) * 1000)::bigint`;

/** A replica's row is forgotten this long after it stopped renewing it: kill -9s would pile up otherwise. */
const FORGET_REPLICA_AFTER = `interval '1 day'`;

type ReplicaRow = { id: string; name: string; host: string; pid: number; started_at: number; expires_ms: number };

export class PgCluster implements ClusterStore {
  readonly replica: { id: string; name: string };

  /** `pool`: the connections lease rounds run on (the store's own by default). */
  constructor(private readonly ctx: PgContext, private readonly pool: pg.Pool = ctx.pool) {
    this.replica = ctx.replica;
  }

  async heartbeat(ttlMs: number): Promise<ReplicaInfo[]> {
    const { id, name } = this.replica;
    // One statement: the upsert's row comes from RETURNING, the others from the snapshot, so the
    // list always holds this replica with the expiry just written.
    const { rows } = await this.pool.query<ReplicaRow>(`
      WITH me AS (
        INSERT INTO replicas (id, name, host, pid, started_at, expires_at)
        VALUES ($1, $2, $3, $4, ${MS('now()')}, now() + $5 * interval '1 millisecond')
        ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
        RETURNING id, name, host, pid, started_at, ${MS('expires_at')} AS expires_ms
      ), forgotten AS (
        DELETE FROM replicas WHERE expires_at < now() - ${FORGET_REPLICA_AFTER} AND id <> $1
      )
      SELECT * FROM me
      UNION ALL
      SELECT id, name, host, pid, started_at, ${MS('expires_at')} FROM replicas WHERE expires_at > now() AND id <> $1
      ORDER BY id`, [id, name, hostname(), process.pid, ttlMs]);
    return rows.map((r) => ({ id: r.id, name: r.name, host: r.host, pid: r.pid, startedAt: r.started_at, expiresAt: r.expires_ms }));
  }

  async syncLeases(round: { keep: readonly number[]; take: readonly number[]; release: readonly number[] }, ttlMs: number): Promise<{ held: Lease[]; dbNow: number }> {
    const { id, name } = this.replica;
    const ttl = `now() + $2 * interval '1 millisecond'`;
    const own = [...new Set([...round.keep, ...round.release])].sort((a, b) => a - b);
    return inTransaction(this.pool, async (client) => {
      // A round waits for a lock a third of a lease at most: it fails, and the next one tries again.
      await client.query(`SET LOCAL lock_timeout = ${Math.max(100, Math.round(ttlMs / 3))}`);
      // Every row of the round is locked first, and judged by the statements after, whose
      // snapshots are taken once the rows are ours: a holder that committed its lease or its first
      // heartbeat while we waited is seen. This replica's own leases are waited for (a page commit
      // of ours holds its lease's row a moment), in one order, so that rounds cannot deadlock.
      if (own.length > 0) await client.query('SELECT stream_id FROM stream_leases WHERE stream_id = ANY($1::bigint[]) ORDER BY stream_id FOR UPDATE', [own]);
      let take: number[] = [];
      if (round.take.length > 0) {
        await client.query(`INSERT INTO stream_leases (stream_id)
          SELECT id FROM streams WHERE id = ANY($1::bigint[]) ORDER BY id ON CONFLICT (stream_id) DO NOTHING`, [round.take]);
        // Another's are not waited for: a row locked by its holder's commit is taken next round,
        // and one locked by a holder cut off mid-commit once the server has ended its session.
        take = (await client.query<{ stream_id: number }>('SELECT stream_id FROM stream_leases WHERE stream_id = ANY($1::bigint[]) ORDER BY stream_id FOR UPDATE SKIP LOCKED', [round.take]))
          .rows.map((r) => r.stream_id);
      }
      if (round.release.length > 0) {
        await client.query(`UPDATE stream_leases SET replica_id = NULL, replica_name = NULL, expires_at = NULL
          WHERE stream_id = ANY($1::bigint[]) AND replica_id = $2`, [round.release, id]);
      }
      // A lease that has run out is not renewed: another replica may have polled under a newer
      // fence meanwhile, or may be about to. One of `take` still this replica's and running is
      // renewed too, same fence: a round whose answer was lost took it.
      const renew = [...round.keep, ...take];
      if (renew.length > 0) {
        await client.query(`UPDATE stream_leases SET expires_at = ${ttl}
          WHERE stream_id = ANY($1::bigint[]) AND replica_id = $3 AND expires_at > now()`, [renew, ttlMs, id]);
      }
      if (take.length > 0) {
        await client.query(`UPDATE stream_leases l SET replica_id = $3, replica_name = $4, fence = l.fence + 1, expires_at = ${ttl}
          WHERE l.stream_id = ANY($1::bigint[])
            AND (l.replica_id IS NULL OR l.expires_at IS NULL OR l.expires_at <= now()
              OR (l.replica_id <> $3 AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = l.replica_id AND r.expires_at > now())))`,
        [take, ttlMs, id, name]);
      }
      const { rows } = await client.query<{ stream_id: number; fence: number; now_ms: number }>(`
        SELECT stream_id, fence, ${MS('now()')} AS now_ms FROM stream_leases WHERE replica_id = $1 AND expires_at > now() ORDER BY stream_id`, [id]);
      const dbNow = rows[0]?.now_ms ?? (await client.query<{ now_ms: number }>(`SELECT ${MS('now()')} AS now_ms`)).rows[0]!.now_ms;
      return { held: rows.map((r) => ({ streamId: r.stream_id, fence: r.fence })), dbNow };
    });
  }

  async leaseHolders(): Promise<LeaseHolder[]> {
    // A holder counts only while both its lease and its heartbeat run: either lapsed, the stream is anyone's.
    const { rows } = await this.pool.query<{ id: number; instance: string; resource: string; replica: string | null; fence: number | null; expires_ms: number | null }>(`
      SELECT s.id, s.instance, s.resource, r.name AS replica, l.fence,
        CASE WHEN r.id IS NULL THEN NULL ELSE ${MS('l.expires_at')} END AS expires_ms
      FROM streams s
      LEFT JOIN stream_leases l ON l.stream_id = s.id
      LEFT JOIN replicas r ON r.id = l.replica_id AND r.expires_at > now() AND l.expires_at > now()
      ORDER BY s.instance, s.resource`);
    return rows.map((r) => ({
      streamId: r.id, instance: r.instance, resource: r.resource, replica: r.replica ?? undefined, fence: r.fence ?? 0, expiresAt: r.expires_ms ?? undefined,
    }));
  }

  withTokenLock<T>(instance: string, refresh: (stored: AuthState | undefined) => Promise<T>): Promise<T> {
    return withTokenLock(this.ctx, instance, refresh);
  }

  async leave(): Promise<void> {
    const { id } = this.replica;
    await inTransaction(this.pool, async (client) => {
      await client.query('UPDATE stream_leases SET replica_id = NULL, replica_name = NULL, expires_at = NULL WHERE replica_id = $1', [id]);
      await client.query('UPDATE notifications SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = $1', [id]);
      await client.query('UPDATE callouts SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = $1', [id]);
      await client.query('DELETE FROM replicas WHERE id = $1', [id]);
    });
  }
}
