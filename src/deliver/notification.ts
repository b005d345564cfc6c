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
 * A page as plain data for the store. Each change's event and record are serialised here, by
 * the poller, so that the thread that owns the database only joins text while it holds the write
 * lock. Ids come for as many notifications as the page could fill: the fresh changes take them
 * in order, and those of changes that turn out to be duplicates are simply never used.
 */
export function pageCommit(changes: readonly Change[], rejected: readonly Rejection[], ctx: NotificationContext): PageCommit {
  const { instanceName, elementKey, objectType, maxEvents } = ctx;
  // The text of JSON.stringify({ eventType, objectId, objectType, elementKey, date }), with the
  // parts every event of the page shares written once.
  const shared = `,"objectType":${JSON.stringify(objectType)},"elementKey":${JSON.stringify(elementKey)},"date":"`;
  return {
    changes: changes.map((c) => ({
      objectId: c.objectId,
      updated: c.updated,
      event: `{"eventType":"${c.eventType}","objectId":${JSON.stringify(c.objectId)}${shared}${isoFromInstant(c.updated)}"}`,
      record: JSON.stringify(c.record),
    })),
    notifications: { instanceName, elementKey, objectType, maxEvents, ids: Array.from({ length: Math.ceil(changes.length / maxEvents) }, () => ctx.newId()) },
    rejected: rejected.map((r) => ({ position: r.position, reason: r.reason, record: JSON.stringify(r.record) ?? 'undefined' })),
  };
}

/**
 * The fresh changes of a page (indexes in page order) as AMPLIFY-shaped notifications of at most
 * `maxEvents` events, `raw` holding exactly the records of those events: the JSON text of
 * `{ message: { eventId, instanceName, elementKey, events, raw: { objectType, [objectType]: records } } }`.
 * The body is fixed here: every delivery attempt signs and sends the same bytes.
 */
export function assembleNotifications(page: PageCommit, fresh: readonly number[]): NotificationDraft[] {
  const { instanceName, elementKey, objectType, maxEvents, ids } = page.notifications;
  const head = `,"instanceName":${JSON.stringify(instanceName)},"elementKey":${JSON.stringify(elementKey)},"events":[`;
  const type = JSON.stringify(objectType);
  // As in an object literal, a type named "objectType" leaves one key, holding the records.
  const rawHead = objectType === 'objectType' ? '],"raw":{"objectType":[' : `],"raw":{"objectType":${type},${type}:[`;
  const drafts: NotificationDraft[] = [];
  for (let start = 0, n = 0; start < fresh.length; start += maxEvents, n++) {
    const group = fresh.slice(start, start + maxEvents).map((i) => page.changes[i]!);
    const id = ids[n];
    if (id === undefined) throw new Error(`the page brought ${ids.length} notification ids; ${n + 1} are needed`);
    const events = group.map((c) => c.event).join(',');
    const records = group.map((c) => c.record).join(',');
    drafts.push({ id, body: `{"message":{"eventId":${JSON.stringify(id)}${head}${events}${rawHead}${records}]}}}`, eventCount: group.length });
  }
  return drafts;
}
