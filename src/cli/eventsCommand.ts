import type { NotificationStatus } from '../store/types.js';
import { isoOrDash, table } from './format.js';
import { senders, type Senders, withCliStore } from './openStore.js';
import { parseIsoOption } from './options.js';
import { UserError } from './userError.js';

type StoreOpts = { db?: string; config?: string };

/**
 * Notification ids are ULIDs, written in upper case; Crockford's base 32 reads either case the
 * same, and an id copied from a lower-casing log viewer or typed by hand must still be found.
 */
export const canonicalId = (id: string): string => id.toUpperCase();

const STATUSES = ['pending', 'delivered', 'dead'];

export async function eventsListCommand(opts: StoreOpts & { status?: string; json?: boolean; limit: number }): Promise<void> {
  if (opts.status && !STATUSES.includes(opts.status)) throw new UserError(`--status must be one of ${STATUSES.join(', ')}, got "${opts.status}"`);
  await withCliStore(opts, { readonly: true }, async (store) => {
    const rows = await store.listNotifications({ status: opts.status as NotificationStatus | undefined, limit: opts.limit });
    if (opts.json) {
      process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      return;
    }
    process.stdout.write(table(
      ['ID', 'INSTANCE', 'RESOURCE', 'STATUS', 'EVENTS', 'ATTEMPTS', 'CREATED', 'LAST'],
      rows.map((r) => [r.id, r.instance, r.resource, r.status, String(r.eventCount), String(r.attempts), isoOrDash(r.createdAt),
        r.lastError ?? (r.lastStatus === undefined ? '' : String(r.lastStatus))]),
    ));
  });
}

export async function eventsShowCommand(id: string, opts: StoreOpts & { json?: boolean }): Promise<void> {
  await withCliStore(opts, { readonly: true }, async (store) => {
    const n = await store.getNotification(canonicalId(id));
    if (!n) throw new UserError(`no notification ${id}`);
    if (opts.json) {
      process.stdout.write(JSON.stringify({ ...n, body: JSON.parse(n.body) as unknown }, null, 2) + '\n');
      return;
    }
    process.stdout.write(`${n.id}  ${n.instance}/${n.resource}  ${n.status}  ${n.eventCount} event(s)  created ${isoOrDash(n.createdAt)}\n`);
    if (n.status === 'pending') process.stdout.write(`next attempt ${isoOrDash(n.nextAttemptAt)}\n`);
    process.stdout.write(table(
      ['ATTEMPT', 'AT', 'MS', 'STATUS', 'ERROR', 'RESPONSE'],
      n.attemptLog.map((a) => [String(a.attempt), isoOrDash(a.startedAt), String(a.durationMs), a.statusCode === undefined ? '-' : String(a.statusCode),
        a.error ?? '', (a.responseExcerpt ?? '').replace(/\s+/g, ' ').slice(0, 60)]),
    ));
    process.stdout.write(JSON.stringify(JSON.parse(n.body), null, 2) + '\n');
  });
}

/** Replay only queues: the daemon on the database (the replicas, on PostgreSQL) sends, and the operator must know if there is none. */
export function whoSends(who: Senders): string {
  if (who.kind === 'replicas') {
    if (who.names.length === 0) return 'no replica is running on this database: they are sent when `pollbridge run` starts on it';
    return `the replicas running on this database (${who.names.join(', ')}) send them within seconds`;
  }
  if (who.running === true) return 'the daemon running on this database sends them within seconds';
  if (who.running === false) return 'no daemon is running on this database: they are sent when `pollbridge run` (or `run --once`) starts';
  return 'they are sent by the daemon on this database, when it runs (whether one runs now could not be told: its lock file is not readable)';
}

export async function replayCommand(ids: string[], opts: StoreOpts & { dead?: boolean; since?: string }): Promise<void> {
  if (!opts.dead && ids.length === 0) throw new UserError('name notification ids to replay, or --dead');
  const since = parseIsoOption('--since', opts.since);
  await withCliStore(opts, { readonly: false }, async (store, db) => {
    const now = Date.now();
    const replayed = opts.dead ? await store.replayDead(since, now) : await store.replay(ids.map(canonicalId), now);
    const missing = ids.filter((id) => !replayed.includes(canonicalId(id)));
    process.stdout.write(`${replayed.length} notification(s) queued for delivery again; ${whoSends(await senders(db))}\n`);
    if (!opts.dead && missing.length > 0) throw new UserError(`no notification ${missing.join(', ')}`);
  });
}
