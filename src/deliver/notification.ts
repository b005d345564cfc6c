import type { Change, Rejection } from '../detect/changes.js';
import type { NotificationDraft, PageCommit } from '../store/types.js';
import { isoFromInstant } from '../time/instant.js';

export type NotificationContext = {
  instanceName: string;
  elementKey: string;
  objectType: string;
  maxEvents: number;
  newId: () => string;
};

/**
 * A page as plain data for the store, with ids for as many notifications as the page could fill:
 * the fresh changes take them in order, and the ids of changes that turn out to be duplicates
 * are simply never used.
 */
export function pageCommit(changes: readonly Change[], rejected: readonly Rejection[], ctx: NotificationContext): PageCommit {
  const { instanceName, elementKey, objectType, maxEvents } = ctx;
  return {
    changes,
    notifications: { instanceName, elementKey, objectType, maxEvents, ids: Array.from({ length: Math.ceil(changes.length / maxEvents) }, () => ctx.newId()) },
    rejected: rejected.map((r) => ({ position: r.position, reason: r.reason, record: JSON.stringify(r.record) ?? 'undefined' })),
  };
}

/**
 * The fresh changes of a page (indexes in page order) as AMPLIFY-shaped notifications of at most
 * `maxEvents` events, `raw` holding exactly the records of those events. Runs inside the store's
 * transaction, so only fresh changes are ever serialised. The body is fixed here: every delivery
 * attempt signs and sends the same bytes.
 */
export function assembleNotifications(page: PageCommit, fresh: readonly number[]): NotificationDraft[] {
  const { instanceName, elementKey, objectType, maxEvents, ids } = page.notifications;
  const drafts: NotificationDraft[] = [];
  for (let start = 0, n = 0; start < fresh.length; start += maxEvents, n++) {
    const group = fresh.slice(start, start + maxEvents).map((i) => page.changes[i]!);
    const eventId = ids[n];
    if (eventId === undefined) throw new Error(`the page brought ${ids.length} notification ids; ${n + 1} are needed`);
    const message = {
      eventId,
      instanceName,
      elementKey,
      events: group.map((c) => ({ eventType: c.eventType, objectId: c.objectId, objectType, elementKey, date: isoFromInstant(c.updated) })),
      raw: { objectType, [objectType]: group.map((c) => c.record) },
    };
    drafts.push({ id: eventId, body: JSON.stringify({ message }), eventCount: group.length });
  }
  return drafts;
}
