import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { assembleNotifications } from '../deliver/notification.js';
import { makeDatabasePrivate } from './files.js';
import { migrate, requireMigrated } from './migrate.js';
import type {
  AttemptOutcome, AttemptRecord, AuthState, CalloutCounts, CalloutReceipt, CalloutRow, NotificationDraft, NotificationDetail, NotificationStatus, NotificationSummary, OutboxEntry,
  PageCommit, PageResult, Store, Stream, StreamProgress, StreamStatus,
} from './types.js';

type NotificationRow = {
  id: string; instance: string; resource: string; status: NotificationStatus; event_count: number; attempts: number;
  created_at: number; next_attempt_at: number; delivered_at: number | null; last_status: number | null; last_error: string | null;
};

const SUMMARY_COLUMNS = `n.id, n.instance, s.resource, n.status, n.event_count, n.attempts, n.created_at,
  n.next_attempt_at, n.delivered_at, n.last_status, n.last_error`;

/** What the deliverer needs of an outbox row. */
const OUTBOX_COLUMNS = 'id, seq, instance, stream_id AS streamId, body, attempts, replay_base AS replayBase, created_at AS createdAt';

const CALLOUT_COLUMNS = `id, instance, source, body, event_type AS eventType, object_type AS objectType, object_uri AS objectUri,
  event_date_time AS eventDateTime, context, notification_uri AS notificationUri, received_at AS receivedAt`;

type CalloutDbRow = Omit<CalloutRow, 'notification' | 'notificationUri'> & CalloutRow['notification'] & { notificationUri: string | null };

function calloutRow(r: CalloutDbRow): CalloutRow {
  return {
    id: r.id, instance: r.instance, source: r.source, body: r.body, receivedAt: r.receivedAt, notificationUri: r.notificationUri ?? undefined,
    notification: { eventType: r.eventType, objectType: r.objectType, objectUri: r.objectUri, eventDateTime: r.eventDateTime, context: r.context },
  };
}

const orUndefined = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

function summary(row: NotificationRow): NotificationSummary {
  return {
    id: row.id, instance: row.instance, resource: row.resource, status: row.status, eventCount: row.event_count,
    attempts: row.attempts, createdAt: row.created_at, nextAttemptAt: row.next_attempt_at,
    deliveredAt: orUndefined(row.delivered_at), lastStatus: orUndefined(row.last_status), lastError: orUndefined(row.last_error),
  };
}

export type SqliteStoreOptions = { readonly?: boolean };

/** A commit whose chain is broken: the one before it in its poll did not commit. */
class BrokenChainError extends Error {}

/** SQLite undid inOneCommit's transaction after an error of one of its calls: none of them took effect. */
class SharedCommitLostError extends Error {
  constructor() {
    super('the shared transaction was rolled back by SQLite after an error of one of its calls: none of them took effect');
    this.name = 'SharedCommitLostError';
  }
}

/** The embedded store: one SQLite file in WAL mode, fsync on every commit (synchronous=FULL). */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly stmts;
  /** The next commit number each stream's current chain accepts. */
  private readonly chains = new Map<number, { id: string; next: number }>();
  /** Inside inOneCommit: the writes are savepoints of its transaction. */
  private sharing = false;

  constructor(readonly path: string, options: SqliteStoreOptions = {}) {
    if (!options.readonly) {
      mkdirSync(dirname(path), { recursive: true });
      makeDatabasePrivate(path);
    }
    this.db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false, timeout: 5000 });
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
      // 16 MiB of page cache (default 2): the upper levels of a million-row seen index stay hot.
      this.db.pragma('cache_size = -16384');
      migrate(this.db);
    } else {
      requireMigrated(this.db);
    }
    this.stmts = { ...this.prepare(), ...this.prepareCallouts() };
  }

  private prepare() {
    const db = this.db;
    return {
      streamByKey: db.prepare(`SELECT id, instance, resource, cursor_us AS cursor, coalesce(recheck_us, cursor_us) AS recheck, origin_us AS origin,
        forgotten_us AS forgotten, skew_ms AS skewMs FROM streams WHERE instance = ? AND resource = ?`),
      insertStream: db.prepare('INSERT INTO streams (instance, resource, cursor_us, origin_us) VALUES (?, ?, ?, ?)'),
      insertSeen: db.prepare('INSERT OR IGNORE INTO seen (stream_id, object_id, updated_us) VALUES (?, ?, ?)'),
      insertNotification: db.prepare(`INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at)
        VALUES (?, ?, (SELECT instance FROM streams WHERE id = ?), ?, ?, ?, ?)`),
      insertRejected: db.prepare(`INSERT OR IGNORE INTO rejected_records (stream_id, seen_at, position, reason, record) VALUES (?, ?, ?, ?, ?)`),
      // Set as given: the poller moves both back on purpose when the provider's clock went back.
      progress: db.prepare(`UPDATE streams SET cursor_us = coalesce(:cursor, cursor_us),
        recheck_us = coalesce(:recheck, recheck_us, cursor_us),
        skew_ms = coalesce(:skewMs, skew_ms) WHERE id = :id`),
      completePoll: db.prepare(`UPDATE streams SET last_poll_at = ?, last_poll_ok = 1, last_poll_error = NULL, last_success_at = ? WHERE id = ?`),
      failPoll: db.prepare('UPDATE streams SET last_poll_at = ?, last_poll_ok = 0, last_poll_error = ? WHERE id = ?'),
      // INDEXED BY: left to itself the planner takes the status index and sorts every pending row.
      due: db.prepare(`SELECT ${OUTBOX_COLUMNS} FROM notifications INDEXED BY notifications_due
        WHERE status = 'pending' AND next_attempt_at <= ? AND instance IN (SELECT value FROM json_each(?))
        ORDER BY next_attempt_at, seq LIMIT ?`),
      nextDue: db.prepare(`SELECT min(at) AS at FROM (
          SELECT (SELECT next_attempt_at FROM notifications INDEXED BY notifications_due
            WHERE status = 'pending' AND instance IN (SELECT value FROM json_each(:unordered))
            ORDER BY next_attempt_at LIMIT 1) AS at
          UNION ALL
          SELECT next_attempt_at FROM notifications WHERE seq IN (
            SELECT min(seq) FROM notifications INDEXED BY notifications_status
            WHERE status = 'pending' AND instance IN (SELECT value FROM json_each(:ordered)) GROUP BY instance))`),
      insertAttempt: db.prepare(`INSERT OR REPLACE INTO attempts (notification_id, attempt, started_at, duration_ms, status_code, error, response_excerpt)
        VALUES (?, ?, ?, ?, ?, ?, ?)`),
      markDelivered: db.prepare(`UPDATE notifications SET status = 'delivered', attempts = ?, delivered_at = ?, last_status = ?, last_error = NULL WHERE id = ?`),
      markRetry: db.prepare(`UPDATE notifications SET attempts = ?, next_attempt_at = ?, last_status = ?, last_error = ? WHERE id = ?`),
      markDead: db.prepare(`UPDATE notifications SET status = 'dead', attempts = ?, last_status = ?, last_error = ? WHERE id = ?`),
      dueHeads: db.prepare(`SELECT ${OUTBOX_COLUMNS} FROM notifications WHERE seq IN (
          SELECT min(seq) FROM notifications INDEXED BY notifications_status
          WHERE status = 'pending' AND instance IN (SELECT value FROM json_each(?)) GROUP BY instance)
        AND next_attempt_at <= ?`),
      instancesWithPending: db.prepare(`SELECT DISTINCT instance FROM notifications WHERE status = 'pending'`).pluck(),
      // A 429 is about the rate, not an outage: another notification's success does not lift it.
      expedite: db.prepare(`UPDATE notifications SET next_attempt_at = ? WHERE status = 'pending' AND instance = ? AND next_attempt_at > ? AND attempts > 0
        AND last_status IS NOT 429`),
      loadAuth: db.prepare(`SELECT seed_hash AS seedHash, refresh_token AS refreshToken, geolocation, access_token AS accessToken,
        access_expires_at AS accessExpiresAt FROM auth_state WHERE instance = ?`),
      saveAuth: db.prepare(`INSERT INTO auth_state (instance, seed_hash, refresh_token, geolocation, access_token, access_expires_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (instance) DO UPDATE SET seed_hash = excluded.seed_hash, refresh_token = excluded.refresh_token,
        geolocation = excluded.geolocation, access_token = excluded.access_token, access_expires_at = excluded.access_expires_at,
        updated_at = excluded.updated_at`),
    };
  }

  private prepareCallouts() {
    const db = this.db;
    return {
      insertCallout: db.prepare(`INSERT INTO callouts (instance, source, body, event_type, object_type, object_uri, event_date_time, context,
        notification_uri, received_at) VALUES (:instance, :source, :body, :eventType, :objectType, :objectUri, :eventDateTime, :context,
        :notificationUri, :receivedAt) ON CONFLICT (instance, notification_uri) WHERE notification_uri IS NOT NULL DO NOTHING RETURNING id`),
      failedCallout: db.prepare('SELECT id FROM callouts WHERE instance = ? AND notification_uri = ?').pluck(),
      calloutsToIngest: db.prepare(`SELECT ${CALLOUT_COLUMNS} FROM callouts INDEXED BY callouts_to_ingest
        WHERE done_at IS NULL AND instance IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?`),
      calloutDone: db.prepare('UPDATE callouts SET done_at = ? WHERE id = ? AND done_at IS NULL'),
      insertCalloutEvent: db.prepare('INSERT OR IGNORE INTO callout_events (stream_id, event_key, notification_id, created_at) VALUES (?, ?, ?, ?)'),
      // A failed-queue receipt stays until its DELETE landed: Concur lists it until then, and it must stay one receipt.
      pruneCallouts: db.prepare(`DELETE FROM callouts WHERE instance = ? AND done_at < ? AND (notification_uri IS NULL OR deleted_at IS NOT NULL)`),
      // Through the partial index: only the waiting receipts are read, not every body kept.
      instancesWithWaitingCallouts: db.prepare('SELECT DISTINCT instance FROM callouts INDEXED BY callouts_to_ingest WHERE done_at IS NULL').pluck(),
      oldestWaitingCallout: db.prepare('SELECT min(received_at) FROM callouts WHERE instance = ? AND done_at IS NULL').pluck(),
      pruneCalloutEvents: db.prepare('DELETE FROM callout_events WHERE stream_id = ? AND created_at < ?'),
      calloutsToDelete: db.prepare(`SELECT id, notification_uri AS notificationUri FROM callouts INDEXED BY callouts_to_delete
        WHERE instance = ? AND notification_uri IS NOT NULL AND deleted_at IS NULL ORDER BY id`),
      calloutDeleted: db.prepare('UPDATE callouts SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL'),
    };
  }

  async openStream(instance: string, resource: string, initialCursor: number): Promise<Stream> {
    return this.openOne(instance, resource, initialCursor);
  }

  async openStreams(keys: { instance: string; resource: string; initialCursor: number }[]): Promise<Stream[]> {
    // IMMEDIATE: it reads before it writes, and a read lock that must grow to a write lock gets
    // SQLITE_BUSY at once, where a write lock asked for first waits out the busy timeout.
    return this.db.transaction(() => keys.map((k) => this.openOne(k.instance, k.resource, k.initialCursor))).immediate();
  }

  private openOne(instance: string, resource: string, initialCursor: number): Stream {
    if (!this.stmts.streamByKey.get(instance, resource)) this.stmts.insertStream.run(instance, resource, initialCursor, initialCursor);
    type Row = Omit<Stream, 'forgotten' | 'skewMs'> & { forgotten: number | null; skewMs: number | null };
    const row = this.stmts.streamByKey.get(instance, resource) as Row;
    return { ...row, forgotten: orUndefined(row.forgotten), skewMs: orUndefined(row.skewMs) };
  }

  async commitPage(streamId: number, page: PageCommit): Promise<PageResult> {
    const chain = page.chain;
    if (chain && chain.seq > 0) {
      const current = this.chains.get(streamId);
      if (current?.id !== chain.id || current.next !== chain.seq) {
        throw new BrokenChainError(`commit ${chain.seq} of a poll refused: an earlier commit of the same poll did not land`);
      }
    }
    const now = Date.now();
    const run = this.db.transaction((): PageResult => {
      for (const r of page.rejected) this.stmts.insertRejected.run(streamId, now, r.position, r.reason, r.record);
      // INSERT OR IGNORE tests and records novelty in one indexed step, inside the transaction,
      // also for a key repeated within the page. If assembling fails, the transaction rolls back.
      const fresh: number[] = [];
      page.changes.forEach((c, i) => {
        if (this.stmts.insertSeen.run(streamId, c.objectId, c.updated).changes === 1) fresh.push(i);
      });
      const notificationIds: string[] = [];
      for (const d of assembleNotifications(page, fresh)) {
        this.stmts.insertNotification.run(d.id, streamId, streamId, d.body, d.eventCount, now, now);
        notificationIds.push(d.id);
      }
      if (page.progress) this.saveProgress(streamId, page.progress);
      return { fresh: fresh.length, duplicates: page.changes.length - fresh.length, notificationIds };
    });
    const result = run.immediate();
    if (chain) this.chains.set(streamId, { id: chain.id, next: chain.seq + 1 });
    return result;
  }

  private saveProgress(streamId: number, p: StreamProgress): void {
    this.stmts.progress.run({ id: streamId, cursor: p.cursor ?? null, recheck: p.recheck ?? null, skewMs: p.skewMs === undefined ? null : Math.round(p.skewMs) });
  }

  async completePoll(streamId: number, progress: StreamProgress, at: number): Promise<void> {
    this.write(() => {
      this.saveProgress(streamId, progress);
      this.stmts.completePoll.run(at, at, streamId);
    });
  }

  async failPoll(streamId: number, error: string, at: number): Promise<void> {
    this.stmts.failPoll.run(at, error, streamId);
  }

  async pruneSeen(streamId: number, before: number): Promise<number> {
    return this.db.transaction(() => {
      this.db.prepare('UPDATE streams SET forgotten_us = max(coalesce(forgotten_us, ?), ?) WHERE id = ?').run(before, before, streamId);
      return this.db.prepare('DELETE FROM seen WHERE stream_id = ? AND updated_us < ?').run(streamId, before).changes;
    }).immediate();
  }

  async dueNotifications(now: number, limit: number, exclude: ReadonlySet<string>, instances: readonly string[]): Promise<OutboxEntry[]> {
    const rows = this.stmts.due.all(now, JSON.stringify(instances), limit + exclude.size) as OutboxEntry[];
    return rows.filter((r) => !exclude.has(r.id)).slice(0, limit);
  }

  async nextDueAt(unordered: readonly string[], ordered: readonly string[]): Promise<number | undefined> {
    const row = this.stmts.nextDue.get({ unordered: JSON.stringify(unordered), ordered: JSON.stringify(ordered) }) as { at: number | null };
    return orUndefined(row.at);
  }

  async recordAttempts(attempts: readonly { attempt: AttemptRecord; outcome: AttemptOutcome }[]): Promise<void> {
    this.write(() => {
      for (const { attempt, outcome } of attempts) this.writeAttempt(attempt, outcome);
    });
  }

  private writeAttempt(a: AttemptRecord, outcome: AttemptOutcome): void {
    this.stmts.insertAttempt.run(a.notificationId, a.attempt, a.startedAt, a.durationMs, a.statusCode ?? null, a.error ?? null, a.responseExcerpt ?? null);
    if (outcome.status === 'delivered') this.stmts.markDelivered.run(a.attempt, outcome.at, a.statusCode ?? null, a.notificationId);
    else if (outcome.status === 'pending') this.stmts.markRetry.run(a.attempt, outcome.nextAttemptAt, a.statusCode ?? null, a.error ?? null, a.notificationId);
    else this.stmts.markDead.run(a.attempt, a.statusCode ?? null, a.error ?? null, a.notificationId);
  }

  async dueHeads(now: number, instances: readonly string[]): Promise<OutboxEntry[]> {
    return this.stmts.dueHeads.all(JSON.stringify(instances), now) as OutboxEntry[];
  }

  async instancesWithPending(): Promise<string[]> {
    return this.stmts.instancesWithPending.all() as string[];
  }

  async expediteRetries(instance: string, now: number): Promise<number> {
    return this.stmts.expedite.run(now, instance, now).changes;
  }

  /**
   * Runs `calls` in one transaction: the transaction of each store method they call becomes a
   * savepoint (one that fails is undone alone) and the commit, with its fsync, is shared. Throws
   * when that commit fails: then none of them took effect, whatever they returned.
   */
  inOneCommit(calls: () => void): void {
    this.sharing = true;
    try {
      this.db.transaction(() => {
        calls();
        if (!this.db.inTransaction) throw new SharedCommitLostError();
      }).immediate();
    } finally {
      this.sharing = false;
    }
  }

  /** A write's transaction: its own, or a savepoint of inOneCommit's. */
  private write<T>(fn: () => T): T {
    // SQLITE_FULL, IOERR or NOMEM can undo inOneCommit's whole transaction, not only the failing
    // call's savepoint: a call after it would commit alone while the group is answered as failed.
    if (this.sharing && !this.db.inTransaction) throw new SharedCommitLostError();
    return this.db.transaction(fn).immediate();
  }

  async checkWritable(): Promise<void> {
    // Taking the write lock and writing the WAL header is what a real commit needs first.
    this.db.transaction(() => this.db.prepare('INSERT OR REPLACE INTO pollbridge_health (id, checked_at) VALUES (1, ?)').run(Date.now())).immediate();
  }

  async recordCallouts(receipts: readonly CalloutReceipt[]): Promise<{ id: number; duplicate: boolean }[]> {
    return this.write(() => receipts.map((r) => {
      const id = this.stmts.insertCallout.pluck().get({
        instance: r.instance, source: r.source, body: r.body, ...r.notification, notificationUri: r.notificationUri ?? null, receivedAt: r.receivedAt,
      }) as number | undefined;
      return id === undefined ? { id: this.stmts.failedCallout.get(r.instance, r.notificationUri) as number, duplicate: true } : { id, duplicate: false };
    }));
  }

  async calloutsToIngest(instances: readonly string[], limit: number, exclude: ReadonlySet<number>): Promise<CalloutRow[]> {
    const rows = this.stmts.calloutsToIngest.all(JSON.stringify(instances), limit + exclude.size) as CalloutDbRow[];
    return rows.filter((r) => !exclude.has(r.id)).slice(0, limit).map(calloutRow);
  }

  async completeCallout(receiptId: number, streamId: number, eventKey: string, draft: NotificationDraft): Promise<{ queued: boolean }> {
    return this.write(() => {
      const now = Date.now();
      if (this.stmts.calloutDone.run(now, receiptId).changes === 0) return { queued: false };
      if (this.stmts.insertCalloutEvent.run(streamId, eventKey, draft.id, now).changes === 0) return { queued: false };
      this.stmts.insertNotification.run(draft.id, streamId, streamId, draft.body, draft.eventCount, now, now);
      return { queued: true };
    });
  }

  async pruneCallouts(instance: string, streamId: number, now: number, retentionMs: number): Promise<number> {
    return this.db.transaction(() => {
      // A receipt still waiting (its instance left the config for a while) may be a re-send of
      // any event made within the retention before it arrived: those keys stay until it is done.
      const oldestWaiting = this.stmts.oldestWaitingCallout.get(instance) as number | null;
      this.stmts.pruneCalloutEvents.run(streamId, Math.min(now, oldestWaiting ?? now) - retentionMs);
      return this.stmts.pruneCallouts.run(instance, now - retentionMs).changes;
    }).immediate();
  }

  async instancesWithWaitingCallouts(): Promise<string[]> {
    return this.stmts.instancesWithWaitingCallouts.all() as string[];
  }

  async calloutsToDelete(instance: string): Promise<{ id: number; notificationUri: string }[]> {
    return this.stmts.calloutsToDelete.all(instance) as { id: number; notificationUri: string }[];
  }

  async markCalloutDeleted(receiptId: number, at: number): Promise<void> {
    this.stmts.calloutDeleted.run(at, receiptId);
  }

  async calloutCounts(): Promise<CalloutCounts[]> {
    const rows = this.db.prepare(`SELECT instance, count(*) AS received, count(*) FILTER (WHERE done_at IS NULL) AS awaitingEvent,
        count(*) FILTER (WHERE notification_uri IS NOT NULL AND deleted_at IS NULL) AS awaitingDelete, max(received_at) AS lastReceivedAt
      FROM callouts GROUP BY instance ORDER BY instance`).all() as (Omit<CalloutCounts, 'lastReceivedAt'> & { lastReceivedAt: number | null })[];
    return rows.map((r) => ({ ...r, lastReceivedAt: orUndefined(r.lastReceivedAt) }));
  }

  async loadAuthState(instance: string): Promise<AuthState | undefined> {
    const row = this.stmts.loadAuth.get(instance) as
      | { seedHash: string; refreshToken: string; geolocation: string | null; accessToken: string | null; accessExpiresAt: number | null }
      | undefined;
    return row && {
      ...row, geolocation: orUndefined(row.geolocation), accessToken: orUndefined(row.accessToken), accessExpiresAt: orUndefined(row.accessExpiresAt),
    };
  }

  async saveAuthState(instance: string, s: AuthState): Promise<void> {
    this.stmts.saveAuth.run(instance, s.seedHash, s.refreshToken, s.geolocation ?? null, s.accessToken ?? null, s.accessExpiresAt ?? null, Date.now());
  }

  async streams(): Promise<StreamStatus[]> {
    const rows = this.db.prepare(`SELECT s.instance, s.resource, s.cursor_us AS cursor, s.last_poll_at, s.last_poll_ok, s.last_poll_error,
        s.last_success_at,
        (SELECT count(*) FROM notifications n WHERE n.stream_id = s.id AND n.status = 'pending') AS pending,
        (SELECT count(*) FROM notifications n WHERE n.stream_id = s.id AND n.status = 'dead') AS dead,
        (SELECT count(*) FROM rejected_records r WHERE r.stream_id = s.id) AS rejected,
        (SELECT n.last_error FROM notifications n WHERE n.stream_id = s.id AND n.last_error IS NOT NULL
           ORDER BY n.seq DESC LIMIT 1) AS last_delivery_error
      FROM streams s ORDER BY s.instance, s.resource`).all() as Record<string, number | string | null>[];
    return rows.map((r) => ({
      instance: String(r.instance), resource: String(r.resource), cursor: Number(r.cursor),
      lastPollAt: orUndefined(r.last_poll_at as number | null),
      lastPollOk: r.last_poll_ok === null ? undefined : r.last_poll_ok === 1,
      lastPollError: orUndefined(r.last_poll_error as string | null),
      lastSuccessAt: orUndefined(r.last_success_at as number | null),
      pending: Number(r.pending), dead: Number(r.dead), rejected: Number(r.rejected),
      lastDeliveryError: orUndefined(r.last_delivery_error as string | null),
    }));
  }

  async notificationCounts(): Promise<Record<NotificationStatus, number>> {
    const counts = { pending: 0, delivered: 0, dead: 0 };
    for (const r of this.db.prepare('SELECT status, count(*) AS n FROM notifications GROUP BY status').all() as { status: NotificationStatus; n: number }[]) {
      counts[r.status] = r.n;
    }
    return counts;
  }

  async listNotifications(filter: { status?: NotificationStatus; limit: number }): Promise<NotificationSummary[]> {
    const where = filter.status ? 'WHERE n.status = ?' : '';
    const args = filter.status ? [filter.status, filter.limit] : [filter.limit];
    const rows = this.db.prepare(`SELECT ${SUMMARY_COLUMNS} FROM notifications n JOIN streams s ON s.id = n.stream_id ${where}
      ORDER BY n.seq DESC LIMIT ?`).all(...args) as NotificationRow[];
    return rows.map(summary);
  }

  async getNotification(id: string): Promise<NotificationDetail | undefined> {
    const row = this.db.prepare(`SELECT ${SUMMARY_COLUMNS}, n.body FROM notifications n JOIN streams s ON s.id = n.stream_id
      WHERE n.id = ?`).get(id) as (NotificationRow & { body: string }) | undefined;
    if (!row) return undefined;
    const attempts = this.db.prepare(`SELECT attempt, started_at, duration_ms, status_code, error, response_excerpt FROM attempts
      WHERE notification_id = ? ORDER BY attempt`).all(id) as Record<string, number | string | null>[];
    return {
      ...summary(row),
      body: row.body,
      attemptLog: attempts.map((a) => ({
        notificationId: id, attempt: Number(a.attempt), startedAt: Number(a.started_at), durationMs: Number(a.duration_ms),
        statusCode: orUndefined(a.status_code as number | null), error: orUndefined(a.error as string | null),
        responseExcerpt: orUndefined(a.response_excerpt as string | null),
      })),
    };
  }

  async replay(ids: readonly string[], now: number): Promise<string[]> {
    const stmt = this.db.prepare(`UPDATE notifications SET status = 'pending', next_attempt_at = ?, replay_base = attempts WHERE id = ? RETURNING id`);
    return this.db.transaction(() => ids.filter((id) => stmt.get(now, id) !== undefined))();
  }

  async replayDead(since: number | undefined, now: number): Promise<string[]> {
    const rows = this.db.prepare(`UPDATE notifications SET status = 'pending', next_attempt_at = ?, replay_base = attempts
      WHERE status = 'dead' AND created_at >= ? RETURNING id`).all(now, since ?? 0) as { id: string }[];
    return rows.map((r) => r.id);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
