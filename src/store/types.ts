import type { Instant } from '../time/instant.js';

/**
 * Everything pollbridge keeps. Methods return promises so that a networked store (PostgreSQL)
 * implements the same interface; nothing here assumes SQLite.
 */
export interface Store {
  /** The stream of (instance, resource), created with `initialCursor` when new. */
  openStream(instance: string, resource: string, initialCursor: Instant): Promise<Stream>;
  /**
   * Many streams at once, in one transaction: a fleet's thousands of new rows cost one commit
   * (one fsync), not one each. In the order asked.
   */
  openStreams(keys: { instance: string; resource: string; initialCursor: Instant }[]): Promise<Stream[]>;
  /**
   * One page, atomically: the changes not seen before are recorded as seen and queued as
   * notifications, and the rejected records kept, all in one transaction. Returns what was queued.
   */
  commitPage(streamId: number, page: PageCommit): Promise<PageResult>;
  /** A poll ended with every part of its windows read: records the progress and the success. */
  completePoll(streamId: number, progress: StreamProgress, at: number, fence?: number): Promise<void>;
  failPoll(streamId: number, error: string, at: number, fence?: number): Promise<void>;
  /**
   * Forgets seen changes older than `before`: no window reaches back that far. Returns how many.
   * The stream remembers the furthest such instant (`forgotten`).
   */
  pruneSeen(streamId: number, before: Instant): Promise<number>;

  /**
   * Pending notifications of `instances` due at `now`, oldest first, skipping ids in `exclude`.
   * On a shared store each is claimed for this replica (`claimDeadline`), and no more are
   * returned than each group's `max` less those claimed by any replica.
   */
  dueNotifications(now: number, limit: number, exclude: ReadonlySet<string>, instances: readonly string[], groups?: readonly DeliveryGroup[]): Promise<OutboxEntry[]>;
  /**
   * When the next notification that could be sent falls due (ms), if any: the earliest pending
   * one of `unordered` instances, and the oldest pending one of each of `ordered` (those wait
   * behind it). Other instances' notifications (no longer in the config) do not count.
   */
  nextDueAt(unordered: readonly string[], ordered: readonly string[]): Promise<number | undefined>;
  /** Several finished attempts in one transaction (group commit: one fsync for all). */
  recordAttempts(attempts: readonly { attempt: AttemptRecord; outcome: AttemptOutcome }[]): Promise<void>;
  /**
   * For strictly ordered delivery: the oldest pending notification of each of `instances`, if it
   * is due (and, on a shared store, not claimed by another replica: it is claimed for this one,
   * within its group's `max` as dueNotifications counts it).
   */
  dueHeads(now: number, instances: readonly string[], groups?: readonly DeliveryGroup[]): Promise<OutboxEntry[]>;
  /** Instances that have pending notifications. */
  instancesWithPending(): Promise<string[]>;
  /** Throws when the database cannot take a write (read-only disk, lost lock): for health checks. */
  checkWritable(): Promise<void>;
  /**
   * A receiver is answering again: its instance's notifications waiting on backoff are due now,
   * except those last answered 429 (rate limited: they keep the wait the receiver asked for).
   */
  expediteRetries(instance: string, now: number): Promise<number>;

  /**
   * Callout receipts, all in one transaction (group commit): each is durable when this settles,
   * and only then may Concur be answered 200. A failed-queue item already received (same instance
   * and `notificationUri`) is not stored again: its existing row is returned, `duplicate` true.
   */
  recordCallouts(receipts: readonly CalloutReceipt[]): Promise<{ id: number; duplicate: boolean }[]>;
  /** Receipts of `instances` not yet turned into an event (or found a duplicate), oldest first, skipping `exclude`. */
  calloutsToIngest(instances: readonly string[], limit: number, exclude: ReadonlySet<number>): Promise<CalloutRow[]>;
  /**
   * A receipt's outcome, in one transaction: when (stream, `eventKey`) is new, `draft` is queued
   * on `streamId` (the instance's callout stream); either way the receipt is done. A receipt
   * already done changes nothing (`queued` false).
   */
  completeCallout(receiptId: number, streamId: number, eventKey: string, draft: NotificationDraft): Promise<{ queued: boolean }>;
  /**
   * Forgets `instance`'s receipts done more than `retentionMs` before `now` (ms; failed-queue ones
   * only once deleted at Concur) and the event keys of `streamId` made that long before `now` and
   * before the oldest receipt still waiting for its event: a re-send that late is no re-send.
   * Returns how many receipts.
   */
  pruneCallouts(instance: string, streamId: number, now: number, retentionMs: number): Promise<number>;
  /** Instances with receipts still waiting for their event. */
  instancesWithWaitingCallouts(): Promise<string[]>;
  /** Failed-queue receipts of `instance` committed but not yet deleted at Concur, oldest first. */
  calloutsToDelete(instance: string): Promise<{ id: number; notificationUri: string }[]>;
  markCalloutDeleted(receiptId: number, at: number): Promise<void>;
  /** Per instance with receipts: how many were received, wait for their event, wait for their DELETE at Concur. */
  calloutCounts(): Promise<CalloutCounts[]>;

  loadAuthState(instance: string): Promise<AuthState | undefined>;
  saveAuthState(instance: string, state: AuthState): Promise<void>;

  streams(): Promise<StreamStatus[]>;
  notificationCounts(): Promise<Record<NotificationStatus, number>>;
  listNotifications(filter: { status?: NotificationStatus; limit: number }): Promise<NotificationSummary[]>;
  getNotification(id: string): Promise<NotificationDetail | undefined>;
  /** Makes notifications pending and due now again; returns the ids that exist. */
  replay(ids: readonly string[], now: number): Promise<string[]>;
  replayDead(since: number | undefined, now: number): Promise<string[]>;

  close(): Promise<void>;
  /** Replicas sharing this database (PostgreSQL); absent where one daemon is alone on it (SQLite, held by its lock file). */
  readonly cluster?: ClusterStore;
  /**
   * Settles if the store stops working on its own, not by close() (the database thread died):
   * every call fails from then on.
   */
  readonly died?: Promise<Error>;
}

/**
 * A callback URL: at most `max` of its instances' notifications in flight at once, counted across
 * every replica. `key` names it the same on every replica (the URL). `claimMs`: how long a claim
 * of one of its notifications lasts, longer than any request to it may take (its instances'
 * longest delivery timeout and a margin); the store's default when left out.
 */
export type DeliveryGroup = { key: string; instances: readonly string[]; max: number; claimMs?: number };

/** A stream lease held by this replica: `fence` numbers the holding, higher with every new holder. */
export type Lease = { streamId: number; fence: number };

/** Who holds which stream, for `status`: the replica's name, or none (unheld, expired). */
export type LeaseHolder = { streamId: number; instance: string; resource: string; replica: string | undefined; fence: number; expiresAt: number | undefined };

/** A replica as the database knows it: alive while `expiresAt` (the database's clock) is ahead. */
export type ReplicaInfo = { id: string; name: string; host: string; pid: number; startedAt: number; expiresAt: number };

/**
 * The coordination of replicas on one database. Every time here is the database's clock, never
 * a replica's: replicas' clocks may disagree, the database's is one.
 */
export interface ClusterStore {
  /** This replica: a new id every start (two processes never share one), and its name (host, or --replica). */
  readonly replica: { id: string; name: string };
  /** Marks this replica alive for `ttlMs` more; returns every live replica, this one included, by id. */
  heartbeat(ttlMs: number): Promise<ReplicaInfo[]>;
  /**
   * One round of leases, in one transaction: renews the held leases in `keep` that have not
   * expired, takes those of `take` that are free or expired (a new fence each), and lets go of
   * `release`. Returns every lease held afterwards, with the database's time, so that the caller
   * can tell when each expires by its own clock.
   */
  syncLeases(round: { keep: readonly number[]; take: readonly number[]; release: readonly number[] }, ttlMs: number): Promise<{ held: Lease[]; dbNow: number }>;
  /** Every stream's holder, for `status` and /metrics. */
  leaseHolders(): Promise<LeaseHolder[]>;
  /**
   * Runs `refresh` while holding `instance`'s token lock, which one replica holds at a time: the
   * refresh of a rotating refresh token and the save of its result are one step across the
   * cluster. `refresh` gets the state stored when the lock was taken (another replica may have
   * refreshed just before).
   */
  withTokenLock<T>(instance: string, refresh: (stored: AuthState | undefined) => Promise<T>): Promise<T>;
  /** A clean stop: lets go of every lease and claim and leaves the replica list, so the others take over at once. */
  leave(): Promise<void>;
}

/** The fields of Concur's `<Notification>` (and of a failed-queue item), as text. */
export type CalloutNotification = {
  eventType: string;
  /** `EXPRPT` or `TRAVELREQ`. */
  objectType: string;
  objectUri: string;
  eventDateTime: string;
  /** Empty when Concur sent `<Context/>`. */
  context: string;
};

/** A callout notification as it arrived, before anything is fetched. */
export type CalloutReceipt = {
  instance: string;
  source: 'push' | 'failed-queue';
  /** The text as received: the pushed XML, or the failed-queue item (XML or JSON). */
  body: string;
  notification: CalloutNotification;
  /** A failed-queue item's URI at Concur, deleted there once the receipt is committed. */
  notificationUri: string | undefined;
  receivedAt: number;
};

export type CalloutRow = CalloutReceipt & { id: number };

export type CalloutCounts = { instance: string; received: number; awaitingEvent: number; awaitingDelete: number; lastReceivedAt: number | undefined };

export type Stream = {
  id: number;
  instance: string;
  resource: string;
  /** In the provider's time: every change stamped before it has been read at least once. */
  cursor: Instant;
  /** Every change stamped before it was read again once older than the overlap (≤ cursor). */
  recheck: Instant;
  /** Changes stamped before it are history (first start without backfill). */
  origin: Instant;
  /** Seen changes before it were pruned: they are history too, whatever the retention says now. */
  forgotten: Instant | undefined;
  /** The provider's clock minus ours at the last read, ms. */
  skewMs: number | undefined;
};

/**
 * How far a stream got, stored as given: the poller moves it forward, and back only when the
 * provider's clock went back.
 */
export type StreamProgress = { cursor?: Instant; recheck?: Instant; skewMs?: number };

/** One change, keyed for deduplication by (objectId, updated), its event and record as JSON text. */
export type PageChange = { objectId: string; updated: Instant; event: string; record: string };

/** A page to commit, as plain data: it may cross to the thread that owns the database. */
export type PageCommit = {
  changes: readonly PageChange[];
  /** How fresh changes become notifications, and the ids those take, in order. */
  notifications: { instanceName: string; elementKey: string; objectType: string; maxEvents: number; ids: readonly string[] };
  rejected: readonly RejectedRecord[];
  /** Moved in the same transaction: the page's changes and the progress they make are one. */
  progress?: StreamProgress;
  /**
   * On a shared store, the lease the poll ran under: the commit is refused (LeaseLostError) unless
   * this replica still holds the stream's lease with this fence, checked in the same transaction.
   */
  fence?: number;
  /**
   * The poll's commits, numbered from 0: one is refused unless the one numbered before it in the
   * same chain committed. Commits run while later pages are read; without this, a later part's
   * progress could land after an earlier part's commit failed, and step over its records.
   */
  chain?: { id: string; seq: number };
};

export type NotificationDraft = { id: string; body: string; eventCount: number };

export type RejectedRecord = { position: string; reason: string; record: string };

export type PageResult = { fresh: number; duplicates: number; notificationIds: string[] };

export type NotificationStatus = 'pending' | 'delivered' | 'dead';

export type OutboxEntry = {
  id: string; seq: number; instance: string; streamId: number; body: string; attempts: number; replayBase: number; createdAt: number;
  /**
   * On a shared store, until when (ms, this process's clock) the notification is this replica's
   * to send: a request that could not end before then is not started, as another replica may
   * claim the notification after it.
   */
  claimDeadline?: number;
};

export type AttemptRecord = {
  notificationId: string;
  attempt: number;
  startedAt: number;
  durationMs: number;
  statusCode: number | undefined;
  error: string | undefined;
  responseExcerpt: string | undefined;
};

export type AttemptOutcome =
  | { status: 'delivered'; at: number }
  | { status: 'pending'; nextAttemptAt: number }
  | { status: 'dead' };

export type AuthState = {
  seedHash: string;
  refreshToken: string;
  geolocation: string | undefined;
  /** The last access token and when to stop using it (ms since epoch). */
  accessToken: string | undefined;
  accessExpiresAt: number | undefined;
};

export type StreamStatus = {
  instance: string;
  resource: string;
  cursor: Instant;
  lastPollAt: number | undefined;
  lastPollOk: boolean | undefined;
  lastPollError: string | undefined;
  lastSuccessAt: number | undefined;
  pending: number;
  dead: number;
  /** Records kept as unreadable (no id, bad date). */
  rejected: number;
  lastDeliveryError: string | undefined;
  /** On a shared store: the replica holding the stream's lease now, if any. */
  replica?: string | undefined;
};

export type NotificationSummary = {
  id: string;
  instance: string;
  resource: string;
  status: NotificationStatus;
  eventCount: number;
  attempts: number;
  createdAt: number;
  nextAttemptAt: number;
  deliveredAt: number | undefined;
  lastStatus: number | undefined;
  lastError: string | undefined;
};

export type NotificationDetail = NotificationSummary & { body: string; attemptLog: AttemptRecord[] };

/**
 * The resource name of an instance's callout stream: the events pushed by Concur are a stream of
 * their own beside the polled ones (neither suppresses the other). Parentheses cannot clash with
 * a resource of `event.poller.configuration` that anyone would name so.
 */
export const CALLOUT_RESOURCE = '(callout)';

/** A page or poll end refused: this replica no longer holds the stream's lease it polled under. */
export class LeaseLostError extends Error {
  constructor(streamId: number, fence: number) {
    super(`stream ${streamId}: the lease (fence ${fence}) is no longer this replica's; the commit is refused`);
    this.name = 'LeaseLostError';
  }
}
