/** The polling side of the PostgreSQL store: streams, page commits (fenced), progress, seen, auth state, status and the notification list. */
import type pg from 'pg';
import { assembleNotifications } from '../../deliver/notification.js';
import {
  type AuthState, LeaseLostError, type NotificationDetail, type NotificationStatus, type NotificationSummary, type PageCommit, type PageResult, type Stream,
  type StreamProgress, type StreamStatus,
} from '../types.js';
import type { PgContext } from './context.js';
import { queueNotifications } from './pgQueue.js';
import { described } from './pgErrors.js';
import { inTransaction } from './pool.js';

type Client = pg.PoolClient | pg.Pool;

/** A commit whose chain is broken: the one before it in its poll did not commit. */
class BrokenChainError extends Error {}

/** The store's own refusals reach the caller as they are; anything else says what failed. */
const REFUSALS = [LeaseLostError, BrokenChainError];

const orUndefined = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

// Unquoted names fold to lower case in PostgreSQL: camelCase aliases are quoted.
const STREAM_COLUMNS = `id, instance, resource, cursor_us AS cursor, coalesce(recheck_us, cursor_us) AS recheck, origin_us AS origin,
  forgotten_us AS forgotten, skew_ms AS "skewMs"`;

const SUMMARY_COLUMNS = `n.id, n.instance, s.resource, n.status, n.event_count, n.attempts, n.created_at,
  n.next_attempt_at, n.delivered_at, n.last_status, n.last_error`;

const AUTH_COLUMNS = `seed_hash AS "seedHash", refresh_token AS "refreshToken", geolocation, access_token AS "accessToken",
  access_expires_at AS "accessExpiresAt"`;

type NotificationRow = {
  id: string; instance: string; resource: string; status: NotificationStatus; event_count: number; attempts: number;
  created_at: number; next_attempt_at: number; delivered_at: number | null; last_status: number | null; last_error: string | null;
};

function summary(row: NotificationRow): NotificationSummary {
  return {
    id: row.id, instance: row.instance, resource: row.resource, status: row.status, eventCount: row.event_count,
    attempts: row.attempts, createdAt: row.created_at, nextAttemptAt: row.next_attempt_at,
    deliveredAt: orUndefined(row.delivered_at), lastStatus: orUndefined(row.last_status), lastError: orUndefined(row.last_error),
  };
}

/**
 * Each stream's writes, in this process, one after the other in the order they were made, as on
 * SQLite's single thread: a poll has several commits in flight, and on a pool they would
 * otherwise race, the later one's progress landing first (and the chain check seeing a commit
 * not yet ended as failed).
 */
const tails = new WeakMap<PgContext, Map<number, Promise<unknown>>>();

function inStreamOrder<T>(ctx: PgContext, streamId: number, fn: () => Promise<T>): Promise<T> {
  let streams = tails.get(ctx);
  if (!streams) tails.set(ctx, (streams = new Map()));
  const run = (streams.get(streamId) ?? Promise.resolve()).then(fn);
  const tail = run.then(() => {}, () => {});
  streams.set(streamId, tail);
  void tail.then(() => {
    if (streams.get(streamId) === tail) streams.delete(streamId);
  });
  return run;
}

export async function openStreams(ctx: PgContext, keys: { instance: string; resource: string; initialCursor: number }[]): Promise<Stream[]> {
  if (keys.length === 0) return [];
  // Inserted in one order whatever the caller's: replicas opening the same new streams at once
  // wait on each other's rows rather than deadlock.
  const sorted = [...keys].sort((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
  return described(`opening ${keys.length} streams`, () => inTransaction(ctx.pool, async (client) => {
    await client.query(`INSERT INTO streams (instance, resource, cursor_us, origin_us)
      SELECT k.instance, k.resource, k.cursor, k.cursor FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS k(instance, resource, cursor, n)
      ORDER BY k.n ON CONFLICT (instance, resource) DO NOTHING`,
    [sorted.map((k) => k.instance), sorted.map((k) => k.resource), sorted.map((k) => k.initialCursor)]);
    // A statement of its own: its snapshot sees the rows another replica committed meanwhile.
    const { rows } = await client.query<Stream & { forgotten: number | null; skewMs: number | null }>(`SELECT ${STREAM_COLUMNS}
      FROM streams JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(instance, resource, n) USING (instance, resource) ORDER BY k.n`,
    [keys.map((k) => k.instance), keys.map((k) => k.resource)]);
    return rows.map((r) => ({ ...r, forgotten: orUndefined(r.forgotten), skewMs: orUndefined(r.skewMs) }));
  }));
}

/**
 * The lease the call was made under is still this replica's, unexpired, and stays so until the
 * transaction ends: the row lock makes a takeover (an UPDATE of the row) wait for this commit.
 */
async function holdLease(client: pg.PoolClient, ctx: PgContext, streamId: number, fence: number | undefined): Promise<void> {
  if (fence === undefined) return;
  const { rowCount } = await client.query(`SELECT 1 FROM stream_leases
    WHERE stream_id = $1 AND replica_id = $2 AND fence = $3 AND expires_at > now() FOR UPDATE`, [streamId, ctx.replica.id, fence]);
  if (rowCount === 0) throw new LeaseLostError(streamId, fence);
}

function checkChain(ctx: PgContext, streamId: number, chain: PageCommit['chain']): void {
  if (!chain || chain.seq === 0) return;
  const current = ctx.chains.get(streamId);
  if (current?.id !== chain.id || current.next !== chain.seq) {
    throw new BrokenChainError(`commit ${chain.seq} of a poll refused: an earlier commit of the same poll did not land`);
  }
}

export async function commitPage(ctx: PgContext, streamId: number, page: PageCommit): Promise<PageResult> {
  return inStreamOrder(ctx, streamId, () => described(`commit of a page of stream ${streamId}`, async () => {
    checkChain(ctx, streamId, page.chain);
    const result = await inTransaction(ctx.pool, async (client) => {
      await holdLease(client, ctx, streamId, page.fence);
      const now = Date.now();
      await insertRejected(client, streamId, page.rejected, now);
      const fresh = await insertSeen(client, streamId, page.changes);
      const drafts = assembleNotifications(page, fresh);
      await queueNotifications(client, streamId, drafts, now);
      if (page.progress) await saveProgress(client, streamId, page.progress);
      return { fresh: fresh.length, duplicates: page.changes.length - fresh.length, notificationIds: drafts.map((d) => d.id) };
    });
    if (page.chain) ctx.chains.set(streamId, { id: page.chain.id, next: page.chain.seq + 1 });
    return result;
  }, REFUSALS));
}

async function insertRejected(client: pg.PoolClient, streamId: number, rejected: PageCommit['rejected'], now: number): Promise<void> {
  if (rejected.length === 0) return;
  await client.query(`INSERT INTO rejected_records (stream_id, seen_at, position, reason, record)
    SELECT $1, $2, r.position, r.reason, r.record FROM unnest($3::text[], $4::text[], $5::text[]) AS r(position, reason, record)
    ORDER BY r.reason COLLATE "C", md5(r.record) ON CONFLICT (stream_id, reason, md5(record)) DO NOTHING`,
  [streamId, now, rejected.map((r) => r.position), rejected.map((r) => r.reason), rejected.map((r) => r.record)]);
}

/**
 * Records the page's keys as seen in one statement; returns the indexes of the fresh changes, in
 * page order. A key repeated within the page is inserted once, and its first occurrence is the
 * fresh one, as one insert after another would make it. Inserted in key order: two commits of
 * the same keys at once (a lease changing hands) wait on each other rather than deadlock.
 */
async function insertSeen(client: pg.PoolClient, streamId: number, changes: PageCommit['changes']): Promise<number[]> {
  if (changes.length === 0) return [];
  const { rows } = await client.query<{ object_id: string; updated_us: number }>(`INSERT INTO seen (stream_id, object_id, updated_us)
    SELECT $1, c.object_id, c.updated_us FROM unnest($2::text[], $3::bigint[]) AS c(object_id, updated_us)
    ORDER BY c.updated_us, c.object_id COLLATE "C" ON CONFLICT DO NOTHING RETURNING object_id, updated_us`,
  [streamId, changes.map((c) => c.objectId), changes.map((c) => c.updated)]);
  const inserted = new Set(rows.map((r) => `${r.updated_us}\n${r.object_id}`));
  const fresh: number[] = [];
  changes.forEach((c, i) => {
    const key = `${c.updated}\n${c.objectId}`;
    if (inserted.delete(key)) fresh.push(i);
  });
  return fresh;
}

/** Set as given: the poller moves cursor and recheck back on purpose when the provider's clock went back. */
async function saveProgress(client: Client, streamId: number, p: StreamProgress): Promise<void> {
  await client.query(`UPDATE streams SET cursor_us = coalesce($2::bigint, cursor_us), recheck_us = coalesce($3::bigint, recheck_us, cursor_us),
    skew_ms = coalesce($4::bigint, skew_ms) WHERE id = $1`,
  [streamId, p.cursor ?? null, p.recheck ?? null, p.skewMs === undefined ? null : Math.round(p.skewMs)]);
}

export async function completePoll(ctx: PgContext, streamId: number, progress: StreamProgress, at: number, fence?: number): Promise<void> {
  await inStreamOrder(ctx, streamId, () => described(`recording the end of a poll of stream ${streamId}`, () => inTransaction(ctx.pool, async (client) => {
    await holdLease(client, ctx, streamId, fence);
    await saveProgress(client, streamId, progress);
    await client.query('UPDATE streams SET last_poll_at = $2, last_poll_ok = true, last_poll_error = NULL, last_success_at = $2 WHERE id = $1', [streamId, at]);
  }), REFUSALS));
}

export async function failPoll(ctx: PgContext, streamId: number, error: string, at: number, fence?: number): Promise<void> {
  await inStreamOrder(ctx, streamId, () => described(`recording a failed poll of stream ${streamId}`, () => inTransaction(ctx.pool, async (client) => {
    await holdLease(client, ctx, streamId, fence);
    await client.query('UPDATE streams SET last_poll_at = $2, last_poll_ok = false, last_poll_error = $3 WHERE id = $1', [streamId, at, error]);
  }), REFUSALS));
}

export async function pruneSeen(ctx: PgContext, streamId: number, before: number): Promise<number> {
  return described(`pruning the seen changes of stream ${streamId}`, () => inTransaction(ctx.pool, async (client) => {
    await client.query('UPDATE streams SET forgotten_us = greatest(coalesce(forgotten_us, $2), $2) WHERE id = $1', [streamId, before]);
    return (await client.query('DELETE FROM seen WHERE stream_id = $1 AND updated_us < $2', [streamId, before])).rowCount ?? 0;
  }));
}

export async function checkWritable(ctx: PgContext): Promise<void> {
  await described('a test write to the database', () => ctx.pool.query(`INSERT INTO pollbridge_health (id, checked_at) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`, [Date.now()]));
}

export async function loadAuthState(ctx: PgContext, instance: string): Promise<AuthState | undefined> {
  type Row = { seedHash: string; refreshToken: string; geolocation: string | null; accessToken: string | null; accessExpiresAt: number | null };
  const { rows } = await described(`reading the tokens of ${instance}`, () => ctx.pool.query<Row>(`SELECT ${AUTH_COLUMNS} FROM auth_state WHERE instance = $1`, [instance]));
  const row = rows[0];
  return row && {
    ...row, geolocation: orUndefined(row.geolocation), accessToken: orUndefined(row.accessToken), accessExpiresAt: orUndefined(row.accessExpiresAt),
  };
}

export async function saveAuthState(ctx: PgContext, instance: string, s: AuthState): Promise<void> {
  await described(`saving the tokens of ${instance}`, () => ctx.pool.query(`INSERT INTO auth_state
      (instance, seed_hash, refresh_token, geolocation, access_token, access_expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (instance) DO UPDATE SET seed_hash = excluded.seed_hash, refresh_token = excluded.refresh_token,
      geolocation = excluded.geolocation, access_token = excluded.access_token, access_expires_at = excluded.access_expires_at,
      updated_at = excluded.updated_at`,
  // BIGINT takes whole ms only; an expiry is a moment to stop using a token, so down, never later.
  [instance, s.seedHash, s.refreshToken, s.geolocation ?? null, s.accessToken ?? null, s.accessExpiresAt === undefined ? null : Math.floor(s.accessExpiresAt), Date.now()]));
}

type StreamStatusRow = {
  instance: string; resource: string; cursor: number; last_poll_at: number | null; last_poll_ok: boolean | null; last_poll_error: string | null;
  last_success_at: number | null; pending: number; dead: number; rejected: number; last_delivery_error: string | null; replica: string | null;
};

/** Counts by aggregate joins, not a subquery per stream: thousands of streams stay one pass over each table. */
export async function streams(ctx: PgContext): Promise<StreamStatus[]> {
  const { rows } = await described('reading the streams', () => ctx.pool.query<StreamStatusRow>(`
    WITH n AS (SELECT stream_id, count(*) FILTER (WHERE status = 'pending') AS pending, count(*) FILTER (WHERE status = 'dead') AS dead
        FROM notifications WHERE status IN ('pending', 'dead') GROUP BY stream_id),
      r AS (SELECT stream_id, count(*) AS rejected FROM rejected_records GROUP BY stream_id),
      e AS (SELECT DISTINCT ON (stream_id) stream_id, last_error FROM notifications WHERE last_error IS NOT NULL ORDER BY stream_id, seq DESC)
    SELECT s.instance, s.resource, s.cursor_us AS cursor, s.last_poll_at, s.last_poll_ok, s.last_poll_error, s.last_success_at,
      coalesce(n.pending, 0) AS pending, coalesce(n.dead, 0) AS dead, coalesce(r.rejected, 0) AS rejected, e.last_error AS last_delivery_error,
      l.replica_name AS replica
    FROM streams s LEFT JOIN n ON n.stream_id = s.id LEFT JOIN r ON r.stream_id = s.id LEFT JOIN e ON e.stream_id = s.id
      LEFT JOIN stream_leases l ON l.stream_id = s.id AND l.replica_id IS NOT NULL AND l.expires_at > now()
    ORDER BY s.instance COLLATE "C", s.resource COLLATE "C"`));
  return rows.map((r) => ({
    instance: r.instance, resource: r.resource, cursor: r.cursor,
    lastPollAt: orUndefined(r.last_poll_at), lastPollOk: orUndefined(r.last_poll_ok), lastPollError: orUndefined(r.last_poll_error),
    lastSuccessAt: orUndefined(r.last_success_at), pending: r.pending, dead: r.dead, rejected: r.rejected,
    lastDeliveryError: orUndefined(r.last_delivery_error), replica: orUndefined(r.replica),
  }));
}

export async function notificationCounts(ctx: PgContext): Promise<Record<NotificationStatus, number>> {
  const { rows } = await described('counting the notifications', () => ctx.pool.query<{ status: NotificationStatus; n: number }>(
    'SELECT status, count(*) AS n FROM notifications GROUP BY status'));
  const counts = { pending: 0, delivered: 0, dead: 0 };
  for (const r of rows) counts[r.status] = r.n;
  return counts;
}

export async function listNotifications(ctx: PgContext, filter: { status?: NotificationStatus; limit: number }): Promise<NotificationSummary[]> {
  const { rows } = await described('listing the notifications', () => ctx.pool.query<NotificationRow>(`SELECT ${SUMMARY_COLUMNS}
    FROM notifications n JOIN streams s ON s.id = n.stream_id WHERE $1::text IS NULL OR n.status = $1 ORDER BY n.seq DESC LIMIT $2`,
  [filter.status ?? null, filter.limit]));
  return rows.map(summary);
}

export async function getNotification(ctx: PgContext, id: string): Promise<NotificationDetail | undefined> {
  return described(`reading notification ${id}`, async () => {
    const { rows } = await ctx.pool.query<NotificationRow & { body: string }>(`SELECT ${SUMMARY_COLUMNS}, n.body
      FROM notifications n JOIN streams s ON s.id = n.stream_id WHERE n.id = $1`, [id]);
    const row = rows[0];
    if (!row) return undefined;
    type AttemptRow = { attempt: number; started_at: number; duration_ms: number; status_code: number | null; error: string | null; response_excerpt: string | null };
    const attempts = await ctx.pool.query<AttemptRow>(`SELECT attempt, started_at, duration_ms, status_code, error, response_excerpt FROM attempts
      WHERE notification_id = $1 ORDER BY attempt`, [id]);
    return {
      ...summary(row),
      body: row.body,
      attemptLog: attempts.rows.map((a) => ({
        notificationId: id, attempt: a.attempt, startedAt: a.started_at, durationMs: a.duration_ms, statusCode: orUndefined(a.status_code),
        error: orUndefined(a.error), responseExcerpt: orUndefined(a.response_excerpt),
      })),
    };
  });
}

/** A replay counts its attempts from where they stand: the retry budget starts afresh. */
const REPLAYED = `status = 'pending', next_attempt_at = $1, replay_base = attempts`;

export async function replay(ctx: PgContext, ids: readonly string[], now: number): Promise<string[]> {
  const { rows } = await described('replaying notifications', () => ctx.pool.query<{ id: string }>(
    `UPDATE notifications SET ${REPLAYED} WHERE id = ANY($2::text[]) RETURNING id`, [now, [...ids]]));
  const found = new Set(rows.map((r) => r.id));
  return ids.filter((id) => found.has(id));
}

export async function replayDead(ctx: PgContext, since: number | undefined, now: number): Promise<string[]> {
  const { rows } = await described('replaying dead notifications', () => ctx.pool.query<{ id: string }>(
    `UPDATE notifications SET ${REPLAYED} WHERE status = 'dead' AND created_at >= $2 RETURNING id`, [now, since ?? 0]));
  return rows.map((r) => r.id);
}
