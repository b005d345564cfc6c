import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { Store } from '../types.js';
import { StoreOpenError } from '../files.js';
import { MigrationError } from '../migrate.js';
import type { PgContext } from './context.js';
import { pgErrorText } from './pgErrors.js';
import { PgCluster } from './pgCluster.js';
import { migratePg, requireMigratedPg } from './pgMigrate.js';
import * as outbox from './pgOutbox.js';
import * as polling from './pgStreams.js';
import { LOCK_WAIT_MS, TOKEN_LOCK_CONNECTIONS, TOKEN_LOCK_IDLE_MS } from './pgTokenLock.js';
import { createPool, type PgPoolOptions } from './pool.js';

export type PgStoreOptions = PgPoolOptions & {
  /** Commands that only read (`status`, `events list`) do not migrate: an unmigrated database is refused by name. */
  readonly?: boolean;
  /** This replica's name for people (status, /metrics): the host's by default. */
  replicaName?: string;
  /** How long a claim lasts (ms): see PgContext.claimMs. */
  claimMs?: number;
  /** A connection lost while idle: reported, never thrown. */
  onIdleError?: (err: Error) => void;
};

/** Default claim: beyond the longest delivery timeout a config allows (60 s) with room to spare. */
export const DEFAULT_CLAIM_MS = 90_000;

/**
 * The store on PostgreSQL, shared by every replica of a cluster. Calls run on a pool of
 * connections, each a transaction of its own; what must be one step (a page and its progress, a
 * lease check and the commit it guards) is one transaction.
 */
export class PgStore implements Store {
  readonly cluster: PgCluster;

  private constructor(private readonly ctx: PgContext, readonly url: string, private readonly leasePool: pg.Pool) {
    this.cluster = new PgCluster(ctx, leasePool);
  }

  static async open(url: string, options: PgStoreOptions = {}): Promise<PgStore> {
    const pool = createPool(url, options, options.onIdleError);
    try {
      if (options.readonly) await requireMigratedPg(pool);
      else await migratePg(pool);
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    // A lock's transaction is idle while its refresh talks to Concur (retries and Retry-After
    // waits included): the server must not end it after the 5 s of the others, or a second
    // replica refreshes with the token this one is spending.
    const lockPool = createPool(url, { max: TOKEN_LOCK_CONNECTIONS, connectTimeoutMs: LOCK_WAIT_MS, idleInTransactionMs: TOKEN_LOCK_IDLE_MS }, options.onIdleError);
    const ctx: PgContext = {
      pool, lockPool, replica: { id: randomUUID(), name: options.replicaName ?? hostname() }, claimMs: options.claimMs ?? DEFAULT_CLAIM_MS, chains: new Map(),
    };
    // Lease rounds on connections of their own: behind a burst of page commits holding every
    // connection of the main pool, a renewal would wait, fail, and stop this replica's polling.
    const leasePool = createPool(url, { max: 2, connectTimeoutMs: options.connectTimeoutMs }, options.onIdleError);
    return new PgStore(ctx, url, leasePool);
  }

  openStream: Store['openStream'] = async (instance, resource, initialCursor) => (await polling.openStreams(this.ctx, [{ instance, resource, initialCursor }]))[0]!;
  openStreams: Store['openStreams'] = (keys) => polling.openStreams(this.ctx, keys);
  commitPage: Store['commitPage'] = (streamId, page) => polling.commitPage(this.ctx, streamId, page);
  completePoll: Store['completePoll'] = (streamId, progress, at, fence) => polling.completePoll(this.ctx, streamId, progress, at, fence);
  failPoll: Store['failPoll'] = (streamId, error, at, fence) => polling.failPoll(this.ctx, streamId, error, at, fence);
  pruneSeen: Store['pruneSeen'] = (streamId, before) => polling.pruneSeen(this.ctx, streamId, before);
  checkWritable: Store['checkWritable'] = () => polling.checkWritable(this.ctx);
  loadAuthState: Store['loadAuthState'] = (instance) => polling.loadAuthState(this.ctx, instance);
  saveAuthState: Store['saveAuthState'] = (instance, state) => polling.saveAuthState(this.ctx, instance, state);
  streams: Store['streams'] = () => polling.streams(this.ctx);
  notificationCounts: Store['notificationCounts'] = () => polling.notificationCounts(this.ctx);
  listNotifications: Store['listNotifications'] = (filter) => polling.listNotifications(this.ctx, filter);
  getNotification: Store['getNotification'] = (id) => polling.getNotification(this.ctx, id);
  replay: Store['replay'] = (ids, now) => polling.replay(this.ctx, ids, now);
  replayDead: Store['replayDead'] = (since, now) => polling.replayDead(this.ctx, since, now);

  dueNotifications: Store['dueNotifications'] = (now, limit, exclude, instances, groups) => outbox.dueNotifications(this.ctx, now, limit, exclude, instances, groups);
  nextDueAt: Store['nextDueAt'] = (unordered, ordered) => outbox.nextDueAt(this.ctx, unordered, ordered);
  recordAttempts: Store['recordAttempts'] = (attempts) => outbox.recordAttempts(this.ctx, attempts);
  dueHeads: Store['dueHeads'] = (now, instances, groups) => outbox.dueHeads(this.ctx, now, instances, groups);
  instancesWithPending: Store['instancesWithPending'] = () => outbox.instancesWithPending(this.ctx);
  expediteRetries: Store['expediteRetries'] = (instance, now) => outbox.expediteRetries(this.ctx, instance, now);
  recordCallouts: Store['recordCallouts'] = (receipts) => outbox.recordCallouts(this.ctx, receipts);
  calloutsToIngest: Store['calloutsToIngest'] = (instances, limit, exclude) => outbox.calloutsToIngest(this.ctx, instances, limit, exclude);
  completeCallout: Store['completeCallout'] = (receiptId, streamId, eventKey, draft) => outbox.completeCallout(this.ctx, receiptId, streamId, eventKey, draft);
  pruneCallouts: Store['pruneCallouts'] = (instance, streamId, now, retentionMs) => outbox.pruneCallouts(this.ctx, instance, streamId, now, retentionMs);
  instancesWithWaitingCallouts: Store['instancesWithWaitingCallouts'] = () => outbox.instancesWithWaitingCallouts(this.ctx);
  calloutsToDelete: Store['calloutsToDelete'] = (instance) => outbox.calloutsToDelete(this.ctx, instance);
  markCalloutDeleted: Store['markCalloutDeleted'] = (receiptId, at) => outbox.markCalloutDeleted(this.ctx, receiptId, at);
  calloutCounts: Store['calloutCounts'] = () => outbox.calloutCounts(this.ctx);

  async close(): Promise<void> {
    await Promise.all([this.ctx.pool.end(), this.ctx.lockPool.end(), this.leasePool.end()]);
  }
}

/**
 * PgStore.open for the daemon and the commands: a database out of reach, refusing us or needing a
 * migration is the operator's to fix, said in one line naming it by `name` (never the URL, which
 * may hold a password), not a bug with a stack.
 */
export async function openPgStore(url: string, name: string, options: PgStoreOptions = {}): Promise<PgStore> {
  try {
    return await PgStore.open(url, options);
  } catch (err) {
    if (err instanceof MigrationError) throw new MigrationError(`${name}: ${err.message}`);
    throw new StoreOpenError(`cannot open the database ${name}: ${pgErrorText(err)}`);
  }
}
