import type pg from 'pg';
import type { NotificationDraft } from '../types.js';

/**
 * Queues `drafts` on the stream's instance's outbox, in order, inside the caller's transaction.
 * The transaction first takes its instance's outbox lock, held to its commit: a queue number
 * (`seq`) is taken when a row is inserted but seen by others only at commit, so without the lock
 * a poll and a callout of one instance committing together could show a later number before an
 * earlier one, and an ordered instance would send them out of order. With it, numbers become
 * visible in the order they were taken.
 */
export async function queueNotifications(client: pg.PoolClient, streamId: number, drafts: readonly NotificationDraft[], now: number): Promise<void> {
  if (drafts.length === 0) return;
  await client.query(`SELECT pg_advisory_xact_lock(hashtext('outbox:' || instance)) FROM streams WHERE id = $1`, [streamId]);
  await client.query(`INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at)
    SELECT d.id, $1, (SELECT instance FROM streams WHERE id = $1), d.body, d.event_count, $2, $2
    FROM unnest($3::text[], $4::text[], $5::int[]) WITH ORDINALITY AS d(id, body, event_count, n) ORDER BY d.n`,
  [streamId, now, drafts.map((d) => d.id), drafts.map((d) => d.body), drafts.map((d) => d.eventCount)]);
}
