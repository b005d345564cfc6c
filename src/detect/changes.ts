import type { ResourceConfig } from '../config/types.js';
import { type Instant, US_PER_SECOND } from '../time/instant.js';
import { pathReader } from '../util/dotPath.js';

export type EventType = 'CREATED' | 'UPDATED';

/** One change of one record, keyed for deduplication by (objectId, updated). */
export type Change = { objectId: string; updated: Instant; eventType: EventType; record: unknown };

export type Rejection = { position: string; reason: string; record: unknown };

/** AMPLIFY's rule: created and updated within the tolerance means the record is new. */
export function eventTypeOf(updated: Instant, created: Instant | undefined, toleranceSec: number): EventType {
  if (created === undefined) return 'UPDATED';
  return updated - created <= Math.round(toleranceSec * US_PER_SECOND) ? 'CREATED' : 'UPDATED';
}

function objectIdOf(value: unknown): string | undefined {
  if (typeof value === 'string' && value.trim() !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

/**
 * Turns the records of one page into changes. A record without an id or with an unreadable date
 * is returned as a rejection with its position, never dropped silently, and never stops the
 * rest of the page. Records changed before `origin` (the first start, without backfill) are
 * history and skipped. With `filterByUpdatedDate: false` (AMPLIFY: creations only) the created
 * date is the key, so each object is announced once.
 */
export function detectChanges(records: readonly unknown[], resource: ResourceConfig, origin: Instant, pageLabel: string) {
  const changes: Change[] = [];
  const rejected: Rejection[] = [];
  let history = 0;
  const idOf = pathReader(resource.idField);
  const updatedOf = pathReader(resource.updatedDateField);
  const createdOf = resource.createdDateField ? pathReader(resource.createdDateField) : undefined;
  records.forEach((record, i) => {
    const position = (): string => `${pageLabel} item ${i}`;
    const objectId = objectIdOf(idOf(record));
    if (objectId === undefined) {
      rejected.push({ position: position(), reason: `no usable id at "${resource.idField}"`, record });
      return;
    }
    const rawUpdated = updatedOf(record);
    const updated = resource.parseUpdatedDate(rawUpdated);
    let created: Instant | undefined;
    if (createdOf && resource.parseCreatedDate) {
      const rawCreated = createdOf(record);
      created = resource.parseCreatedDate(rawCreated);
      if (created === undefined && (rawCreated !== undefined || !resource.filterByUpdatedDate)) {
        rejected.push({ position: position(), reason: `unreadable ${resource.createdDateField} ${JSON.stringify(rawCreated)}`, record });
        return;
      }
    }
    if (updated === undefined) {
      rejected.push({ position: position(), reason: `unreadable ${resource.updatedDateField} ${JSON.stringify(rawUpdated)}`, record });
      return;
    }
    const key = resource.filterByUpdatedDate ? updated : (created ?? updated);
    if (key < origin) {
      history++;
      return;
    }
    changes.push({
      objectId,
      updated: key,
      eventType: resource.filterByUpdatedDate ? eventTypeOf(updated, created, resource.createdCheckToleranceSec) : 'CREATED',
      record,
    });
  });
  return { changes, rejected, history };
}
