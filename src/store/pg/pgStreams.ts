/** The polling side of the PostgreSQL store: streams, page commits (fenced), progress, seen, auth state, status and the notification list. */
import type {
  AuthState, NotificationDetail, NotificationStatus, NotificationSummary, PageCommit, PageResult, Stream, StreamProgress, StreamStatus,
} from '../types.js';
import { notYet, type PgContext } from './context.js';

export async function openStreams(ctx: PgContext, keys: { instance: string; resource: string; initialCursor: number }[]): Promise<Stream[]> { throw notYet('openStreams'); }
export async function commitPage(ctx: PgContext, streamId: number, page: PageCommit): Promise<PageResult> { throw notYet('commitPage'); }
export async function completePoll(ctx: PgContext, streamId: number, progress: StreamProgress, at: number, fence?: number): Promise<void> { throw notYet('completePoll'); }
export async function failPoll(ctx: PgContext, streamId: number, error: string, at: number, fence?: number): Promise<void> { throw notYet('failPoll'); }
export async function pruneSeen(ctx: PgContext, streamId: number, before: number): Promise<number> { throw notYet('pruneSeen'); }
export async function checkWritable(ctx: PgContext): Promise<void> { throw notYet('checkWritable'); }
export async function loadAuthState(ctx: PgContext, instance: string): Promise<AuthState | undefined> { throw notYet('loadAuthState'); }
export async function saveAuthState(ctx: PgContext, instance: string, state: AuthState): Promise<void> { throw notYet('saveAuthState'); }
export async function streams(ctx: PgContext): Promise<StreamStatus[]> { throw notYet('streams'); }
export async function notificationCounts(ctx: PgContext): Promise<Record<NotificationStatus, number>> { throw notYet('notificationCounts'); }
export async function listNotifications(ctx: PgContext, filter: { status?: NotificationStatus; limit: number }): Promise<NotificationSummary[]> { throw notYet('listNotifications'); }
export async function getNotification(ctx: PgContext, id: string): Promise<NotificationDetail | undefined> { throw notYet('getNotification'); }
export async function replay(ctx: PgContext, ids: readonly string[], now: number): Promise<string[]> { throw notYet('replay'); }
export async function replayDead(ctx: PgContext, since: number | undefined, now: number): Promise<string[]> { throw notYet('replayDead'); }
