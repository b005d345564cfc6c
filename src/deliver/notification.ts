import type { Change } from '../detect/changes.js';
import type { NotificationDraft } from '../store/types.js';
import { isoFromInstant } from '../time/instant.js';

export type NotificationContext = {
  instanceName: string;
  elementKey: string;
  objectType: string;
  maxEvents: number;
  newId: () => string;
};

/**
 * Groups changes into AMPLIFY-shaped notifications of at most `maxEvents` events, `raw` holding
 * exactly the records of those events. The body is serialised once here, so every delivery
 * attempt signs and sends the same bytes.
 */
export function buildNotifications(changes: readonly Change[], ctx: NotificationContext): NotificationDraft[] {
  const drafts: NotificationDraft[] = [];
  for (let i = 0; i < changes.length; i += ctx.maxEvents) {
    const group = changes.slice(i, i + ctx.maxEvents);
    const id = ctx.newId();
    const message = {
      eventId: id,
      instanceName: ctx.instanceName,
      elementKey: ctx.elementKey,
      events: group.map((c) => ({
        eventType: c.eventType,
        objectId: c.objectId,
        objectType: ctx.objectType,
        elementKey: ctx.elementKey,
        date: isoFromInstant(c.updated),
      })),
      raw: { objectType: ctx.objectType, [ctx.objectType]: group.map((c) => c.record) },
    };
    drafts.push({
      id,
      body: JSON.stringify({ message }),
      eventCount: group.length,
    });
  }
  return drafts;
}
