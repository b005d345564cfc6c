import { createHash } from 'node:crypto';
import type { CalloutNotification, NotificationDraft } from '../store/types.js';

/** AMPLIFY's resource key for each object type Concur's callout names. */
const OBJECT_TYPES: Readonly<Record<string, string>> = { EXPRPT: 'reports', TRAVELREQ: 'requests' };

/** What the ingester got for a notification's ObjectURI: the object, or why not. */
export type Fetched = { object: unknown; error?: undefined } | { object?: undefined; error: string };

export type CalloutEventInput = {
  id: string;
  instanceName: string;
  elementKey: string;
  notification: CalloutNotification;
  source: 'push' | 'failed-queue';
  receivedAt: number;
  fetched: Fetched;
};

export function calloutObjectType(notification: CalloutNotification): string {
  return OBJECT_TYPES[notification.objectType] ?? notification.objectType.toLowerCase();
}

/** The object itself when it is wrapped in one root element (XML answers: `{ ReportDetails: {...} }`). */
function unwrapped(object: unknown): Record<string, unknown> | undefined {
  if (typeof object !== 'object' || object === null || Array.isArray(object)) return undefined;
  const record = object as Record<string, unknown>;
  const keys = Object.keys(record);
  const only = keys.length === 1 ? record[keys[0]!] : undefined;
  return typeof only === 'object' && only !== null && !Array.isArray(only) ? (only as Record<string, unknown>) : record;
}

const ID_FIELDS = ['ID', 'ReportID', 'ReportId', 'RequestID', 'RequestId', 'id'];

/** The object's id: its own id field when the fetch brought one, else the ObjectURI's last segment. */
export function calloutObjectId(notification: CalloutNotification, fetched: Fetched): string {
  const object = unwrapped(fetched.object);
  for (const field of ID_FIELDS) {
    const value = object?.[field];
    if (typeof value === 'string' && value !== '') return value;
  }
  const path = new URL(notification.objectUri).pathname.replace(/\/+$/, '');
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1)) || notification.objectUri;
}

/**
 * Which state of the object the event is about: its LastModifiedDate when it has one, else a
 * hash of all of it ('' when the fetch failed). A hash alone could differ on every read of an
 * object that carries, say, a signed image URL; the date is what Concur says changed.
 */
function objectVersion(fetched: Fetched): string {
  if (fetched.error !== undefined) return '';
  const modified = unwrapped(fetched.object)?.LastModifiedDate;
  if (typeof modified === 'string' && modified !== '') return `modified:${modified}`;
  return `hash:${createHash('sha256').update(JSON.stringify(fetched.object) ?? '').digest('base64url')}`;
}

/**
 * The event's identity: the notification's fields and the state of the object. Concur sends a
 * notification again when our 200 was lost: the same text about the same state makes no second
 * event, nor does the same notification read from Concur's failed queue after our answers to
 * its pushes were lost. A report sent back and submitted again the same day brings the same text (EventDateTime
 * is a date) but a new LastModifiedDate, and so a new event.
 */
export function calloutEventKey(notification: CalloutNotification, fetched: Fetched): string {
  const n = notification;
  // A push says `2012-05-01`, Concur's failed list `2012-05-01T19:45:25` for the same notification.
  const day = /^\d{4}-\d{2}-\d{2}/.exec(n.eventDateTime)?.[0] ?? n.eventDateTime;
  const parts = [n.objectType, n.objectUri, n.eventType, day, n.context, objectVersion(fetched)];
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url');
}

/**
 * The notification in the AMPLIFY envelope polling produces, so receivers handle both alike:
 * one `UPDATED` event, and `raw` holding the fetched object (none when the fetch failed, with
 * `fetchError` saying why) beside Concur's notification, which tells the workflow step.
 */
export function calloutNotification(input: CalloutEventInput): NotificationDraft {
  const { id, instanceName, elementKey, notification: n, fetched } = input;
  const objectType = calloutObjectType(n);
  const event = { eventType: 'UPDATED', objectId: calloutObjectId(n, fetched), objectType, elementKey, date: new Date(input.receivedAt).toISOString() };
  const raw: Record<string, unknown> = { objectType };
  raw[objectType] = fetched.error === undefined ? [fetched.object] : [];
  raw.notification = {
    EventType: n.eventType, ObjectType: n.objectType, ObjectURI: n.objectUri, EventDateTime: n.eventDateTime, Context: n.context,
    source: input.source, receivedAt: event.date,
  };
  if (fetched.error !== undefined) raw.fetchError = fetched.error;
  const body = JSON.stringify({ message: { eventId: id, instanceName, elementKey, events: [event], raw } });
  return { id, body, eventCount: 1 };
}
