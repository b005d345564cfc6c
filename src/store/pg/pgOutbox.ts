/**
 * The delivering side of the PostgreSQL store: the outbox claimed FOR UPDATE SKIP LOCKED, attempts, and the callout receipts.
 *
 * Replicas share the outbox. A notification (a callout receipt) handed out is claimed for this
 * replica until claim_until (the database's clock, ctx.claimMs ahead): no other replica gets it
 * before then. A claim of this replica's own does not hide the row from this replica: its
 * deliverer keeps what it has in flight out with `exclude`, as on SQLite, and a row it let go of
 * without an attempt (a head it had no slot for) is offered to it again at once rather than
 * after the claim runs out. recordAttempts and completeCallout end the claim.
 */
import type pg from 'pg';
import type {
  AttemptOutcome, AttemptRecord, CalloutCounts, CalloutReceipt, CalloutRow, DeliveryGroup, NotificationDraft, OutboxEntry,
} from '../types.js';
import type { PgContext } from './context.js';
import { described } from './pgErrors.js';
import { queueNotifications } from './pgQueue.js';
import { inTransaction } from './pool.js';

/** What the deliverer needs of an outbox row, and its due time for ordering. */
const OUTBOX_COLUMNS = `id, seq, instance, stream_id AS "streamId", body, attempts, replay_base AS "replayBase", created_at AS "createdAt",
  next_attempt_at AS "nextAttemptAt"`;

const CALLOUT_COLUMNS = `id, instance, source, body, event_type AS "eventType", object_type AS "objectType", object_uri AS "objectUri",
  event_date_time AS "eventDateTime", context, notification_uri AS "notificationUri", received_at AS "receivedAt"`;

/** Free for this replica: never claimed, the claim ran out, or the claim is its own. ($me names the replica.) */
const CLAIM_FREE = (me: string, alias = '') => `(${alias}claimed_by IS NULL OR ${alias}claim_until < now() OR ${alias}claimed_by = ${me})`;

/** now() + claimMs, from a parameter in ms. */
const CLAIM_UNTIL = (ms: string) => `now() + ${ms}::double precision * interval '1 millisecond'`;

/**
 * Every replica's live claims on the notifications of some instances ($1). Read from the partial
 * index of claims (as many as are in flight in the cluster) and matched against the instances by
 * hash: a group of thousands of instances costs no more than one of a few.
 */
export const LIVE_CLAIMS_SQL = `SELECT count(*) AS n FROM notifications WHERE status = 'pending' AND claimed_by IS NOT NULL AND claim_until >= now()
  AND instance IN (SELECT unnest($1::text[]))`;

type OutboxRow = OutboxEntry & { nextAttemptAt: number };

type CalloutDbRow = Omit<CalloutRow, 'notification' | 'notificationUri'> & CalloutRow['notification'] & { notificationUri: string | null };

function calloutRow(r: CalloutDbRow): CalloutRow {
  return {
    id: r.id, instance: r.instance, source: r.source, body: r.body, receivedAt: r.receivedAt, notificationUri: r.notificationUri ?? undefined,
    notification: { eventType: r.eventType, objectType: r.objectType, objectUri: r.objectUri, eventDateTime: r.eventDateTime, context: r.context },
  };
}

/** Only what OutboxEntry names: the entry may cross to another thread, or be compared whole. */
function entry(r: OutboxRow, claimDeadline: number): OutboxEntry {
  return {
    id: r.id, seq: r.seq, instance: r.instance, streamId: r.streamId, body: r.body, attempts: r.attempts, replayBase: r.replayBase, createdAt: r.createdAt,
    claimDeadline,
  };
}

const byDue = (a: OutboxRow, b: OutboxRow): number => a.nextAttemptAt - b.nextAttemptAt || a.seq - b.seq;

/** Due rows of `instances`, free for this replica, oldest first, locked (SKIP LOCKED: never waits on another replica). */
async function lockDue(client: pg.PoolClient, ctx: PgContext, now: number, instances: readonly string[], exclude: readonly string[], limit: number): Promise<(OutboxRow & { mine: boolean })[]> {
  const { rows } = await client.query<OutboxRow & { mine: boolean }>(
    `SELECT ${OUTBOX_COLUMNS}, (claimed_by = $1 AND claim_until >= now()) IS TRUE AS mine FROM notifications
      WHERE status = 'pending' AND next_attempt_at <= $2 AND instance = ANY($3::text[]) AND id <> ALL($4::text[]) AND ${CLAIM_FREE('$1')}
      ORDER BY next_attempt_at, seq LIMIT $5 FOR UPDATE SKIP LOCKED`,
    [ctx.replica.id, now, instances, exclude, limit]);
  return rows;
}

/**
 * Claims the chosen rows for this replica, each for its group's `claimMs` (the store's default for
 * the ungrouped), and returns them as entries with their local deadlines. `startedAt` is this
 * process's clock before the transaction: the claim's end by the database's clock comes later in
 * real time, so the deadline errs early.
 */
async function claimChosen(client: pg.PoolClient, ctx: PgContext, chosen: readonly { row: OutboxRow; group?: DeliveryGroup }[], startedAt: number): Promise<OutboxEntry[]> {
  const claimMsOf = (group?: DeliveryGroup): number => group?.claimMs ?? ctx.claimMs;
  const byMs = new Map<number, number[]>();
  for (const { row, group } of chosen) byMs.set(claimMsOf(group), [...(byMs.get(claimMsOf(group)) ?? []), row.seq]);
  for (const [ms, seqs] of byMs) {
    await client.query(`UPDATE notifications SET claimed_by = $1, claim_until = ${CLAIM_UNTIL('$2')} WHERE seq = ANY($3::bigint[])`, [ctx.replica.id, ms, seqs]);
  }
  return chosen.map(({ row, group }) => entry(row, startedAt + claimMsOf(group)));
}

/** The groups the asked instances fall in, each instance in its first group; the rest ungrouped. */
function batchesOf(instances: readonly string[], groups: readonly DeliveryGroup[] | undefined): { instances: string[]; group?: DeliveryGroup }[] {
  const asked = new Set(instances);
  const grouped = new Set<string>();
  const batches: { instances: string[]; group?: DeliveryGroup }[] = [];
  for (const group of groups ?? []) {
    const mine = group.instances.filter((name) => asked.has(name) && !grouped.has(name));
    for (const name of mine) grouped.add(name);
    if (mine.length > 0) batches.push({ instances: mine, group });
  }
  const loose = instances.filter((name) => !grouped.has(name));
  if (loose.length > 0) batches.push({ instances: loose });
  return batches;
}

/**
 * Takes the locks of the batches' groups, and returns what each may still claim: its `max` less
 * every replica's live claims on its instances (this one's included: those it is offered again
 * are among them and cost nothing). One group's claims are counted and taken by one replica at a
 * time; the locks are taken in the order of their numbers (pg_advisory_xact_lock is volatile:
 * evaluated after the sort), so that two replicas taking several never wait on each other in a
 * circle.
 */
async function groupBudgets(client: pg.PoolClient, batches: readonly { group?: DeliveryGroup }[]): Promise<Map<DeliveryGroup, number>> {
  const groups = batches.flatMap((b) => (b.group ? [b.group] : []));
  const budgets = new Map<DeliveryGroup, number>();
  if (groups.length === 0) return budgets;
  await client.query(`SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k) AS keys ORDER BY h`,
    [[...new Set(groups.map((g) => `deliver:${g.key}`))]]);
  for (const group of groups) {
    const { rows: [live] } = await client.query<{ n: number }>(LIVE_CLAIMS_SQL, [group.instances]);
    budgets.set(group, group.max - live!.n);
  }
  return budgets;
}

/** Whether `row` may be claimed within its group's budget, which it then uses (a row already this replica's costs nothing). */
function withinBudget(budgets: Map<DeliveryGroup, number>, group: DeliveryGroup | undefined, row: { mine: boolean }): boolean {
  if (!group || row.mine) return true;
  const left = budgets.get(group)!;
  if (left <= 0) return false;
  budgets.set(group, left - 1);
  return true;
}

export async function dueNotifications(ctx: PgContext, now: number, limit: number, exclude: ReadonlySet<string>, instances: readonly string[], groups?: readonly DeliveryGroup[]): Promise<OutboxEntry[]> {
  if (limit <= 0 || instances.length === 0) return [];
  // Taken before the claim: the claim's end by the database's clock comes later in real time.
  const startedAt = Date.now();
  const excluded = [...exclude];
  return described('dueNotifications', () => inTransaction(ctx.pool, async (client) => {
    const batches = batchesOf(instances, groups);
    const budgets = await groupBudgets(client, batches);
    const chosen: { row: OutboxRow; group?: DeliveryGroup }[] = [];
    for (const batch of batches) {
      const rows = await lockDue(client, ctx, now, batch.instances, excluded, limit);
      for (const row of rows) if (withinBudget(budgets, batch.group, row)) chosen.push({ row, group: batch.group });
    }
    return claimChosen(client, ctx, chosen.sort((a, b) => byDue(a.row, b.row)).slice(0, limit), startedAt);
  }));
}

export async function nextDueAt(ctx: PgContext, unordered: readonly string[], ordered: readonly string[]): Promise<number | undefined> {
  if (unordered.length === 0 && ordered.length === 0) return undefined;
  const localNow = Date.now();
  return described('nextDueAt', async () => {
    // A row another replica holds counts from when its claim runs out (by this replica's clock,
    // from the time left on the database's): counted as due now, an idle replica would spin.
    const { rows: [row] } = await ctx.pool.query<{ at: number | null; wait: number | null }>(
      `WITH heads AS (
          SELECT h.* FROM unnest($3::text[]) AS i(name) CROSS JOIN LATERAL (
            SELECT next_attempt_at, claimed_by, claim_until FROM notifications
            WHERE status = 'pending' AND instance = i.name ORDER BY seq LIMIT 1) AS h),
        held AS (
          SELECT next_attempt_at, claim_until FROM notifications
          WHERE status = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> $1 AND claim_until >= now() AND instance = ANY($2::text[])
          UNION ALL
          SELECT next_attempt_at, claim_until FROM heads WHERE claimed_by IS NOT NULL AND claimed_by <> $1 AND claim_until >= now())
      SELECT least(
          (SELECT next_attempt_at FROM notifications WHERE status = 'pending' AND instance = ANY($2::text[]) AND ${CLAIM_FREE('$1')}
            ORDER BY next_attempt_at, seq LIMIT 1),
          (SELECT min(next_attempt_at) FROM heads WHERE ${CLAIM_FREE('$1')})) AS at,
        (SELECT min(greatest(next_attempt_at - $4, ceil(extract(epoch FROM claim_until - clock_timestamp()) * 1000)))::bigint FROM held) AS wait`,
      [ctx.replica.id, unordered, ordered, localNow]);
    const candidates = [row!.at, row!.wait === null ? null : localNow + row!.wait].filter((t): t is number => t !== null);
    return candidates.length === 0 ? undefined : Math.min(...candidates);
  });
}

export async function recordAttempts(ctx: PgContext, attempts: readonly { attempt: AttemptRecord; outcome: AttemptOutcome }[]): Promise<void> {
  if (attempts.length === 0) return;
  // In one order on every replica: two batches that share rows (a late attempt beside the new
  // holder's) lock them in the same order and wait for each other rather than deadlock.
  const sorted = [...attempts].sort((x, y) => (x.attempt.notificationId < y.attempt.notificationId ? -1 : x.attempt.notificationId > y.attempt.notificationId ? 1 : 0));
  await described('recordAttempts', () => inTransaction(ctx.pool, async (client) => {
    for (const { attempt: a, outcome } of sorted) {
      await client.query(`INSERT INTO attempts (notification_id, attempt, started_at, duration_ms, status_code, error, response_excerpt)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (notification_id, attempt) DO UPDATE SET started_at = excluded.started_at, duration_ms = excluded.duration_ms,
          status_code = excluded.status_code, error = excluded.error, response_excerpt = excluded.response_excerpt`,
      [a.notificationId, a.attempt, a.startedAt, a.durationMs, a.statusCode ?? null, a.error ?? null, a.responseExcerpt ?? null]);
      // The claim ends with the attempt: this replica's only. A claim another replica took after
      // this one's ran out stays its own (its request may be under way).
      const release = `claimed_by = CASE WHEN claimed_by = $1 THEN NULL ELSE claimed_by END,
        claim_until = CASE WHEN claimed_by = $1 THEN NULL ELSE claim_until END`;
      if (outcome.status === 'delivered') {
        await client.query(`UPDATE notifications SET status = 'delivered', attempts = $2, delivered_at = $3, last_status = $4, last_error = NULL, ${release}
          WHERE id = $5`, [ctx.replica.id, a.attempt, outcome.at, a.statusCode ?? null, a.notificationId]);
      } else if (outcome.status === 'pending') {
        await client.query(`UPDATE notifications SET attempts = $2, next_attempt_at = $3, last_status = $4, last_error = $5, ${release}
          WHERE id = $6`, [ctx.replica.id, a.attempt, outcome.nextAttemptAt, a.statusCode ?? null, a.error ?? null, a.notificationId]);
      } else {
        await client.query(`UPDATE notifications SET status = 'dead', attempts = $2, last_status = $3, last_error = $4, ${release}
          WHERE id = $5`, [ctx.replica.id, a.attempt, a.statusCode ?? null, a.error ?? null, a.notificationId]);
      }
    }
  }));
}

export async function dueHeads(ctx: PgContext, now: number, instances: readonly string[], groups?: readonly DeliveryGroup[]): Promise<OutboxEntry[]> {
  if (instances.length === 0) return [];
  const startedAt = Date.now();
  return described('dueHeads', () => inTransaction(ctx.pool, async (client) => {
    const batches = batchesOf(instances, groups);
    const budgets = await groupBudgets(client, batches);
    const chosen: { row: OutboxRow; group?: DeliveryGroup }[] = [];
    for (const batch of batches) {
      // The head is each instance's oldest pending row, whoever holds it: one held by another
      // replica (or locked by its claim or its attempt right now) leaves the instance with
      // nothing, never with the row behind it. Locked rows are rechecked as they are now.
      const { rows } = await client.query<OutboxRow & { mine: boolean }>(
        `SELECT ${OUTBOX_COLUMNS}, (claimed_by = $1 AND claim_until >= now()) IS TRUE AS mine FROM notifications
          WHERE seq IN (SELECT h.seq FROM unnest($2::text[]) AS i(name) CROSS JOIN LATERAL (
              SELECT seq FROM notifications WHERE status = 'pending' AND instance = i.name ORDER BY seq LIMIT 1) AS h)
            AND status = 'pending' AND next_attempt_at <= $3 AND ${CLAIM_FREE('$1')}
          ORDER BY seq FOR UPDATE SKIP LOCKED`,
        [ctx.replica.id, batch.instances, now]);
      for (const row of rows) if (withinBudget(budgets, batch.group, row)) chosen.push({ row, group: batch.group });
    }
    return claimChosen(client, ctx, chosen.sort((a, b) => a.row.seq - b.row.seq), startedAt);
  }));
}

/** A clean stop (ClusterStore.leave): every notification and receipt this replica holds is free for the others at once. */
export async function releaseClaims(ctx: PgContext): Promise<void> {
  await described('releaseClaims', () => inTransaction(ctx.pool, async (client) => {
    // The conditions the partial indexes are built on: only rows that can be claimed are read.
    await client.query(`UPDATE notifications SET claimed_by = NULL, claim_until = NULL WHERE status = 'pending' AND claimed_by IS NOT NULL
      AND claimed_by = $1`, [ctx.replica.id]);
    await client.query('UPDATE callouts SET claimed_by = NULL, claim_until = NULL WHERE done_at IS NULL AND claimed_by = $1', [ctx.replica.id]);
  }));
}

export async function instancesWithPending(ctx: PgContext): Promise<string[]> {
  return described('instancesWithPending', async () =>
    (await ctx.pool.query<{ instance: string }>(`SELECT DISTINCT instance FROM notifications WHERE status = 'pending'`)).rows.map((r) => r.instance));
}

export async function expediteRetries(ctx: PgContext, instance: string, now: number): Promise<number> {
  return described('expediteRetries', async () => {
    // A 429 is about the rate, not an outage: another notification's success does not lift it.
    const result = await ctx.pool.query(`UPDATE notifications SET next_attempt_at = $1
      WHERE status = 'pending' AND instance = $2 AND next_attempt_at > $1 AND attempts > 0 AND last_status IS DISTINCT FROM 429`, [now, instance]);
    return result.rowCount ?? 0;
  });
}

export async function recordCallouts(ctx: PgContext, receipts: readonly CalloutReceipt[]): Promise<{ id: number; duplicate: boolean }[]> {
  if (receipts.length === 0) return [];
  return described('recordCallouts', () => inTransaction(ctx.pool, async (client) => {
    const results: { id: number; duplicate: boolean }[] = [];
    for (const r of receipts) {
      // Another replica committing the same failed-queue item first: the insert waits for it,
      // then does nothing, and the select (a new snapshot) finds its row.
      const { rows } = await client.query<{ id: number }>(`INSERT INTO callouts (instance, source, body, event_type, object_type, object_uri,
          event_date_time, context, notification_uri, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (instance, notification_uri) WHERE notification_uri IS NOT NULL DO NOTHING RETURNING id`,
      [r.instance, r.source, r.body, r.notification.eventType, r.notification.objectType, r.notification.objectUri,
        r.notification.eventDateTime, r.notification.context, r.notificationUri ?? null, r.receivedAt]);
      if (rows.length > 0) {
        results.push({ id: rows[0]!.id, duplicate: false });
        continue;
      }
      const existing = await client.query<{ id: number }>('SELECT id FROM callouts WHERE instance = $1 AND notification_uri = $2', [r.instance, r.notificationUri]);
      results.push({ id: existing.rows[0]!.id, duplicate: true });
    }
    return results;
  }));
}

export async function calloutsToIngest(ctx: PgContext, instances: readonly string[], limit: number, exclude: ReadonlySet<number>): Promise<CalloutRow[]> {
  if (limit <= 0 || instances.length === 0) return [];
  return described('calloutsToIngest', async () => {
    // Claimed: two replicas never fetch the same receipt's object at once.
    const { rows } = await ctx.pool.query<CalloutDbRow>(
      `UPDATE callouts SET claimed_by = $1, claim_until = ${CLAIM_UNTIL('$2')}
        WHERE id IN (
          SELECT id FROM callouts WHERE done_at IS NULL AND instance = ANY($3::text[]) AND id <> ALL($4::bigint[]) AND ${CLAIM_FREE('$1')}
          ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED)
        RETURNING ${CALLOUT_COLUMNS}`,
      [ctx.replica.id, ctx.claimMs, instances, [...exclude], limit]);
    return rows.sort((a, b) => a.id - b.id).map(calloutRow);
  });
}

export async function completeCallout(ctx: PgContext, receiptId: number, streamId: number, eventKey: string, draft: NotificationDraft): Promise<{ queued: boolean }> {
  return described('completeCallout', () => inTransaction(ctx.pool, async (client) => {
    const now = Date.now();
    // A second completion running at once waits on the row, then finds it done: nothing queued.
    const done = await client.query(`UPDATE callouts SET done_at = $1, claimed_by = NULL, claim_until = NULL WHERE id = $2 AND done_at IS NULL`,
      [now, receiptId]);
    if (done.rowCount === 0) return { queued: false };
    const event = await client.query(`INSERT INTO callout_events (stream_id, event_key, notification_id, created_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT DO NOTHING`, [streamId, eventKey, draft.id, now]);
    if (event.rowCount === 0) return { queued: false };
    await queueNotifications(client, streamId, [draft], now);
    return { queued: true };
  }));
}

export async function pruneCallouts(ctx: PgContext, instance: string, streamId: number, now: number, retentionMs: number): Promise<number> {
  return described('pruneCallouts', () => inTransaction(ctx.pool, async (client) => {
    // A receipt still waiting (its instance left the config for a while) may be a re-send of
    // any event made within the retention before it arrived: those keys stay until it is done.
    const { rows: [oldest] } = await client.query<{ at: number | null }>('SELECT min(received_at) AS at FROM callouts WHERE instance = $1 AND done_at IS NULL', [instance]);
    await client.query('DELETE FROM callout_events WHERE stream_id = $1 AND created_at < $2', [streamId, Math.min(now, oldest!.at ?? now) - retentionMs]);
    // A failed-queue receipt stays until its DELETE landed: Concur lists it until then, and it must stay one receipt.
    const pruned = await client.query(`DELETE FROM callouts WHERE instance = $1 AND done_at < $2 AND (notification_uri IS NULL OR deleted_at IS NOT NULL)`,
      [instance, now - retentionMs]);
    return pruned.rowCount ?? 0;
  }));
}

export async function instancesWithWaitingCallouts(ctx: PgContext): Promise<string[]> {
  return described('instancesWithWaitingCallouts', async () =>
    (await ctx.pool.query<{ instance: string }>('SELECT DISTINCT instance FROM callouts WHERE done_at IS NULL')).rows.map((r) => r.instance));
}

export async function calloutsToDelete(ctx: PgContext, instance: string): Promise<{ id: number; notificationUri: string }[]> {
  return described('calloutsToDelete', async () => (await ctx.pool.query<{ id: number; notificationUri: string }>(
    `SELECT id, notification_uri AS "notificationUri" FROM callouts WHERE instance = $1 AND notification_uri IS NOT NULL AND deleted_at IS NULL ORDER BY id`,
    [instance])).rows);
}

export async function markCalloutDeleted(ctx: PgContext, receiptId: number, at: number): Promise<void> {
  await described('markCalloutDeleted', () => ctx.pool.query('UPDATE callouts SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL', [at, receiptId]));
}

export async function calloutCounts(ctx: PgContext): Promise<CalloutCounts[]> {
  return described('calloutCounts', async () => {
    const { rows } = await ctx.pool.query<Omit<CalloutCounts, 'lastReceivedAt'> & { lastReceivedAt: number | null }>(
      `SELECT instance, count(*) AS received, count(*) FILTER (WHERE done_at IS NULL) AS "awaitingEvent",
          count(*) FILTER (WHERE notification_uri IS NOT NULL AND deleted_at IS NULL) AS "awaitingDelete", max(received_at) AS "lastReceivedAt"
        FROM callouts GROUP BY instance ORDER BY instance COLLATE "C"`);
    return rows.map((r) => ({ ...r, lastReceivedAt: r.lastReceivedAt ?? undefined }));
  });
}
