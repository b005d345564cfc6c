import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import { LeaseLostError, type PageCommit } from '../src/store/types.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { waitFor } from './helpers/tmp.js';

// Issue 16: a replica paused past its lease must never commit a page or move a cursor. The
// leases are set here by SQL, as another replica's takeover would set them.

const closers: (() => Promise<void>)[] = [];
afterEach(async () => { await Promise.all(closers.splice(0).map((c) => c())); });

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  closers.push(() => c.end());
  return c;
}

/**
 * A store, a connection `sql` that plays the other replica, and `watch`, which sees who waits
 * on whom (pg_stat_activity is a snapshot for the length of a transaction: not `sql`'s).
 */
async function setup(): Promise<{ url: string; store: PgStore; sql: pg.Client; watch: pg.Client; streamId: number }> {
  const url = await freshPgDatabase('fence');
  const store = await PgStore.open(url);
  closers.push(() => store.close());
  const { id } = await store.openStream('Docs', 'reports', 1000);
  return { url, store, sql: await client(url), watch: await client(url), streamId: id };
}

/** The pid of the store's connection waiting on a lock in a statement that starts with `sqlStart`. */
async function waiting(watch: pg.Client, sqlStart: string): Promise<number | undefined> {
  const { rows } = await watch.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity
    WHERE application_name = 'pollbridge' AND wait_event_type = 'Lock' AND starts_with(query, $1)`, [sqlStart]);
  return rows[0]?.pid;
}

const page = (objectId: string, id: string, fence: number, cursor: number): PageCommit => ({
  changes: [{ objectId, updated: 5000, event: '{}', record: '{}' }],
  notifications: { instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 100, ids: [id] },
  rejected: [{ position: 'p', reason: 'no usable id', record: `{"${objectId}":1}` }],
  progress: { cursor, recheck: cursor },
  fence,
});

/** This replica holds the stream's lease with `fence`, for a minute (or expired a second ago). */
async function lease(sql: pg.Client, streamId: number, replicaId: string, fence: number, expired = false): Promise<void> {
  await sql.query(`INSERT INTO stream_leases (stream_id, replica_id, replica_name, fence, expires_at)
    VALUES ($1, $2, 'me', $3, now() + $4::interval) ON CONFLICT (stream_id) DO UPDATE
    SET replica_id = excluded.replica_id, replica_name = excluded.replica_name, fence = excluded.fence, expires_at = excluded.expires_at`,
  [streamId, replicaId, fence, expired ? '-1 second' : '1 minute']);
}

const TAKEOVER = `UPDATE stream_leases SET replica_id = 'other', replica_name = 'other', fence = fence + 1, expires_at = now() + interval '1 minute'
  WHERE stream_id = $1`;

/** What a refused commit must not have left: rows, notifications, progress. */
async function written(sql: pg.Client, streamId: number): Promise<unknown> {
  const one = async (q: string) => (await sql.query(q, [streamId])).rows[0] as Record<string, unknown>;
  return {
    ...(await one('SELECT cursor_us, recheck_us, last_poll_at, last_poll_error FROM streams WHERE id = $1')),
    ...(await one('SELECT count(*) AS seen FROM seen WHERE stream_id = $1')),
    ...(await one('SELECT count(*) AS notifications FROM notifications WHERE stream_id = $1')),
    ...(await one('SELECT count(*) AS rejected FROM rejected_records WHERE stream_id = $1')),
  };
}

const NOTHING = { cursor_us: 1000, recheck_us: null, last_poll_at: null, last_poll_error: null, seen: 0, notifications: 0, rejected: 0 };

describePg('fenced commits on PostgreSQL', () => {
  it('the lease still held with the fence polled under: the page, its progress and the poll end commit', async () => {
    const { store, sql, streamId } = await setup();
    await lease(sql, streamId, store.cluster.replica.id, 3);
    expect(await store.commitPage(streamId, page('A', 'N1', 3, 2000))).toEqual({ fresh: 1, duplicates: 0, notificationIds: ['N1'] });
    await store.completePoll(streamId, { cursor: 3000 }, 77, 3);
    await store.failPoll(streamId, 'HTTP 500', 78, 3);
    expect(await written(sql, streamId)).toEqual({ cursor_us: 3000, recheck_us: 2000, last_poll_at: 78, last_poll_error: 'HTTP 500', seen: 1, notifications: 1, rejected: 1 });
    // status names the holder while its lease lasts, and no one once it expired.
    expect((await store.streams()).map((s) => s.replica)).toEqual(['me']);
    await lease(sql, streamId, store.cluster.replica.id, 3, true);
    expect((await store.streams()).map((s) => s.replica)).toEqual([undefined]);
  });

  it('a lease taken over, expired, re-taken with a new fence, or never held: refused, and nothing written', async () => {
    const { store, sql, streamId } = await setup();
    const me = store.cluster.replica.id;
    const refusals: [string, () => Promise<void>][] = [
      ['never held', async () => {}],
      ['taken over', async () => { await lease(sql, streamId, me, 3); await sql.query(TAKEOVER, [streamId]); }],
      ['expired', () => lease(sql, streamId, me, 3, true)],
      ['re-taken by this replica under a newer fence', () => lease(sql, streamId, me, 4)],
      ['released', async () => { await sql.query('UPDATE stream_leases SET replica_id = NULL, replica_name = NULL, expires_at = NULL WHERE stream_id = $1', [streamId]); }],
    ];
    for (const [how, arrange] of refusals) {
      await arrange();
      await expect(store.commitPage(streamId, page('A', `N-${how}`, 3, 2000)), how).rejects.toThrow(LeaseLostError);
      await expect(store.completePoll(streamId, { cursor: 9000 }, 77, 3), how).rejects.toThrow(LeaseLostError);
      await expect(store.failPoll(streamId, 'late', 78, 3), how).rejects.toThrow(/lease \(fence 3\) is no longer this replica's/);
      expect(await written(sql, streamId), how).toEqual(NOTHING);
    }
    // Unfenced (a lone `run --once`, tests): no check, as on SQLite.
    expect((await store.commitPage(streamId, { ...page('A', 'N9', 0, 2000), fence: undefined })).fresh).toBe(1);
  });

  it('a takeover issued while a commit holds the lease waits for that commit to end', async () => {
    const { url, store, sql, watch, streamId } = await setup();
    await lease(sql, streamId, store.cluster.replica.id, 3);
    // Another transaction holds the page's seen key, uncommitted: the commit takes the lease row
    // lock, then waits on that key, mid-transaction, for as long as the test says.
    await sql.query('BEGIN');
    await sql.query('INSERT INTO seen (stream_id, object_id, updated_us) VALUES ($1, $2, 5000)', [streamId, 'A']);
    const ended: string[] = [];
    const commit = store.commitPage(streamId, page('A', 'N1', 3, 2000)).then((r) => { ended.push('commit'); return r; });
    const committer = await waitFor('the commit to wait on the key', () => waiting(watch, 'INSERT INTO seen'));

    const taker = await client(url);
    const takerPid = (await taker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const takeover = taker.query(TAKEOVER, [streamId]).then((r) => { ended.push('takeover'); return r.rowCount; });
    const blockers = await waitFor('the takeover to wait', async () => {
      const { rows } = await watch.query<{ blockers: number[] }>('SELECT pg_blocking_pids($1) AS blockers', [takerPid]);
      return rows[0]!.blockers.length > 0 ? rows[0]!.blockers : undefined;
    });
    expect(blockers).toEqual([committer]);
    expect(ended).toEqual([]);

    await sql.query('ROLLBACK');
    expect(await commit).toEqual({ fresh: 1, duplicates: 0, notificationIds: ['N1'] });
    expect(await takeover).toBe(1);
    expect(ended).toEqual(['commit', 'takeover']);
    expect((await sql.query('SELECT replica_id, fence FROM stream_leases')).rows).toEqual([{ replica_id: 'other', fence: 4 }]);
    // The paused replica's next page, under the fence it no longer holds: refused.
    await expect(store.commitPage(streamId, page('B', 'N2', 3, 4000))).rejects.toThrow(LeaseLostError);
    expect(await written(sql, streamId)).toMatchObject({ cursor_us: 2000, seen: 1, notifications: 1 });
  });

  it('a commit issued while a takeover is uncommitted waits for it, then sees it and is refused', async () => {
    const { store, sql, watch, streamId } = await setup();
    await lease(sql, streamId, store.cluster.replica.id, 3);
    await sql.query('BEGIN');
    await sql.query(TAKEOVER, [streamId]);
    const commit = store.commitPage(streamId, page('A', 'N1', 3, 2000)).then(() => 'committed', (err: Error) => err);
    await waitFor('the commit to wait on the lease row', () => waiting(watch, 'SELECT 1 FROM stream_leases'));
    await sql.query('COMMIT');
    expect(await commit).toBeInstanceOf(LeaseLostError);
    expect(await written(sql, streamId)).toEqual(NOTHING);
  });
});
