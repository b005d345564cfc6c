/** The delivering side of the PostgreSQL store: the outbox claimed FOR UPDATE SKIP LOCKED, attempts, and the callout receipts. */
import type {
  AttemptOutcome, AttemptRecord, CalloutCounts, CalloutReceipt, CalloutRow, DeliveryGroup, NotificationDraft, OutboxEntry,
} from '../types.js';
import { notYet, type PgContext } from './context.js';

export async function dueNotifications(ctx: PgContext, now: number, limit: number, exclude: ReadonlySet<string>, instances: readonly string[], groups?: readonly DeliveryGroup[]): Promise<OutboxEntry[]> { throw notYet('dueNotifications'); }
export async function nextDueAt(ctx: PgContext, unordered: readonly string[], ordered: readonly string[]): Promise<number | undefined> { throw notYet('nextDueAt'); }
export async function recordAttempts(ctx: PgContext, attempts: readonly { attempt: AttemptRecord; outcome: AttemptOutcome }[]): Promise<void> { throw notYet('recordAttempts'); }
export async function dueHeads(ctx: PgContext, now: number, instances: readonly string[]): Promise<OutboxEntry[]> { throw notYet('dueHeads'); }
export async function instancesWithPending(ctx: PgContext): Promise<string[]> { throw notYet('instancesWithPending'); }
export async function expediteRetries(ctx: PgContext, instance: string, now: number): Promise<number> { throw notYet('expediteRetries'); }
export async function recordCallouts(ctx: PgContext, receipts: readonly CalloutReceipt[]): Promise<{ id: number; duplicate: boolean }[]> { throw notYet('recordCallouts'); }
export async function calloutsToIngest(ctx: PgContext, instances: readonly string[], limit: number, exclude: ReadonlySet<number>): Promise<CalloutRow[]> { throw notYet('calloutsToIngest'); }
export async function completeCallout(ctx: PgContext, receiptId: number, streamId: number, eventKey: string, draft: NotificationDraft): Promise<{ queued: boolean }> { throw notYet('completeCallout'); }
export async function pruneCallouts(ctx: PgContext, instance: string, streamId: number, now: number, retentionMs: number): Promise<number> { throw notYet('pruneCallouts'); }
export async function instancesWithWaitingCallouts(ctx: PgContext): Promise<string[]> { throw notYet('instancesWithWaitingCallouts'); }
export async function calloutsToDelete(ctx: PgContext, instance: string): Promise<{ id: number; notificationUri: string }[]> { throw notYet('calloutsToDelete'); }
export async function markCalloutDeleted(ctx: PgContext, receiptId: number, at: number): Promise<void> { throw notYet('markCalloutDeleted'); }
export async function calloutCounts(ctx: PgContext): Promise<CalloutCounts[]> { throw notYet('calloutCounts'); }
