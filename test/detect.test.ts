import { describe, expect, it } from 'vitest';
import { readConfig } from '../src/config/load.js';
import type { ResourceConfig } from '../src/config/types.js';
import { detectChanges, eventTypeOf } from '../src/detect/changes.js';
import { pollPlan } from '../src/detect/window.js';
import { assembleNotifications, pageCommit } from '../src/deliver/notification.js';
import { instantFromMs, US_PER_SECOND } from '../src/time/instant.js';
import { instance } from './helpers/configs.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const T = (iso: string) => instantFromMs(Date.parse(iso));

function resource(overrides: Record<string, unknown> = {}): ResourceConfig {
  const file = writeJson(tempDir(), 'c.json', instance({
    'event.poller.configuration': {
      reports: {
        url: '/hubs/expense/reports',
        idField: 'ID',
        datesConfiguration: {
          updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
          createdDateField: 'CreateDate', createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
        },
        ...overrides,
      },
    },
  }));
  const result = readConfig(file, { env: {} });
  expect(result.issues).toEqual([]);
  return result.config!.instances[0]!.resources[0]!;
}

describe('poll plan', () => {
  const base = { pollDelaySec: 30, overlapSec: 60, settleSec: 5 };

  it('reads fresh from the cursor less pollDelay and the skew margin, to the provider\'s now less settle', () => {
    const p = pollPlan({ ...base, cursor: T('2026-11-22T07:00:00Z'), recheck: T('2026-11-22T07:00:00Z'), now: T('2026-11-22T07:15:00Z'), skewMs: -120_000 });
    expect(p.fresh).toEqual({ start: T('2026-11-22T06:59:29Z'), end: T('2026-11-22T07:12:55Z') });
    expect(p.providerNow).toBe(T('2026-11-22T07:13:00Z'));
  });

  it('reaches back the whole overlap while the skew is unknown', () => {
    const p = pollPlan({ ...base, cursor: T('2026-11-22T07:00:00Z'), recheck: T('2026-11-22T07:00:00Z'), now: T('2026-11-22T07:15:00Z'), skewMs: undefined });
    expect(p.fresh.start).toBe(T('2026-11-22T06:58:30Z'));
  });

  it('rechecks what aged past the overlap since the last recheck, once, and never beyond the cursor', () => {
    const p = pollPlan({ ...base, cursor: T('2026-11-22T07:14:00Z'), recheck: T('2026-11-22T07:12:00Z'), now: T('2026-11-22T07:15:00Z'), skewMs: 0 });
    expect(p.recheck).toEqual({ start: T('2026-11-22T07:11:30Z'), end: T('2026-11-22T07:14:00Z') });
    const fresh = pollPlan({ ...base, cursor: T('2026-11-22T07:14:00Z'), recheck: T('2026-11-22T07:14:00Z'), now: T('2026-11-22T07:14:30Z'), skewMs: 0 });
    expect(fresh.recheck).toBeUndefined();
  });

  it('still reads up to the cursor when our clock stepped back behind it: the read measures the skew again', () => {
    const p = pollPlan({ ...base, cursor: T('2026-11-22T07:00:00Z'), recheck: T('2026-11-22T06:59:00Z'), now: T('2026-11-22T06:55:00Z'), skewMs: 0 });
    expect(p.fresh.end).toBe(T('2026-11-22T07:00:00Z'));
    expect(p.fresh.start).toBeLessThan(p.fresh.end);
  });
});

describe('event type', () => {
  it('is CREATED when updated − created is within the tolerance, else UPDATED', () => {
    const created = T('2026-11-22T07:00:00Z');
    expect(eventTypeOf(created, created, 0)).toBe('CREATED');
    expect(eventTypeOf(created + 1, created, 0)).toBe('UPDATED');
    expect(eventTypeOf(created + 2 * US_PER_SECOND, created, 2)).toBe('CREATED');
    expect(eventTypeOf(created + 2 * US_PER_SECOND + 1, created, 2)).toBe('UPDATED');
    expect(eventTypeOf(created, undefined, 10)).toBe('UPDATED');
  });
});

describe('detectChanges', () => {
  const origin = T('2026-11-22T00:00:00Z');

  it('keys each record by id and updated instant, typing CREATED and UPDATED', () => {
    const { changes, rejected } = detectChanges([
      { ID: 'A', CreateDate: '2026-11-22T07:00:00.1', LastModifiedDate: '2026-11-22T07:00:00.100' },
      { ID: 'B', CreateDate: '2026-11-22T06:00:00', LastModifiedDate: '2026-11-22T07:00:00.25' },
    ], resource(), origin, 'page 1');
    expect(rejected).toEqual([]);
    expect(changes.map((c) => [c.objectId, c.eventType, c.updated])).toEqual([
      ['A', 'CREATED', T('2026-11-22T07:00:00.100Z')],
      ['B', 'UPDATED', T('2026-11-22T07:00:00.250Z')],
    ]);
  });

  it('rejects records without an id or with an unreadable date, with their position, and keeps the rest', () => {
    const { changes, rejected } = detectChanges([
      { CreateDate: '2026-11-22T07:00:00', LastModifiedDate: '2026-11-22T07:00:00' },
      { ID: 'B', CreateDate: '2026-11-22T07:00:00', LastModifiedDate: 'not a date' },
      { ID: 'C', CreateDate: '2026-11-22T07:00:00', LastModifiedDate: '2026-11-22T07:00:00' },
      'not even an object',
    ], resource(), origin, 'page 3');
    expect(changes.map((c) => c.objectId)).toEqual(['C']);
    expect(rejected.map((r) => [r.position, r.reason])).toEqual([
      ['page 3 item 0', 'no usable id at "ID"'],
      ['page 3 item 1', 'unreadable LastModifiedDate "not a date"'],
      ['page 3 item 3', 'no usable id at "ID"'],
    ]);
  });

  it('skips changes from before the origin (no backfill) and counts them', () => {
    const { changes, history } = detectChanges([
      { ID: 'old', LastModifiedDate: '2026-11-21T23:59:59.999' },
      { ID: 'new', LastModifiedDate: '2026-11-22T00:00:00' },
    ], resource(), origin, 'page 1');
    expect(changes.map((c) => c.objectId)).toEqual(['new']);
    expect(history).toBe(1);
  });

  it('reads ids at dot paths and numeric ids', () => {
    const { changes } = detectChanges([{ meta: { id: 42 }, LastModifiedDate: '2026-11-22T07:00:00' }], resource({ idField: 'meta.id' }), origin, 'page 1');
    expect(changes[0]!.objectId).toBe('42');
  });

  it('with filterByUpdatedDate false, keys by created date so an object is announced once, as CREATED', () => {
    const r = resource({ filterByUpdatedDate: 'false' });
    const first = detectChanges([{ ID: 'A', CreateDate: '2026-11-22T07:00:00', LastModifiedDate: '2026-11-22T07:00:00' }], r, origin, 'p');
    const later = detectChanges([{ ID: 'A', CreateDate: '2026-11-22T07:00:00', LastModifiedDate: '2026-11-22T09:00:00' }], r, origin, 'p');
    expect(first.changes[0]).toMatchObject({ eventType: 'CREATED', updated: T('2026-11-22T07:00:00Z') });
    expect(later.changes[0]!.updated).toBe(first.changes[0]!.updated);
  });
});

describe('notification bodies', () => {
  it('hold at most maxEvents events each, raw holding exactly their records', () => {
    const changes = Array.from({ length: 23 }, (_, i) => ({
      objectId: `R${i}`, updated: T('2026-11-22T07:00:00Z') + i * 1000, eventType: 'UPDATED' as const, record: { ID: `R${i}` },
    }));
    let n = 0;
    const commit = pageCommit(changes, [], { instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 10, newId: () => `N${n++}` });
    const drafts = assembleNotifications(commit, changes.map((_, i) => i));
    expect(drafts.map((d) => d.eventCount)).toEqual([10, 10, 3]);
    const body = JSON.parse(drafts[2]!.body) as { message: Record<string, unknown> & { events: { objectId: string; date: string }[]; raw: { reports: { ID: string }[] } } };
    expect(body.message).toMatchObject({ eventId: 'N2', instanceName: 'Docs', elementKey: 'concur', raw: { objectType: 'reports' } });
    expect(body.message.events.map((e) => e.objectId)).toEqual(['R20', 'R21', 'R22']);
    expect(body.message.raw.reports.map((r) => r.ID)).toEqual(['R20', 'R21', 'R22']);
    expect(body.message.events[0]).toEqual({ eventType: 'UPDATED', objectId: 'R20', objectType: 'reports', elementKey: 'concur', date: '2026-11-22T07:00:00.020Z' });
  });

  it('are the JSON of the AMPLIFY message, byte for byte, whatever the names hold', () => {
    for (const objectType of ['reports', 'objectType', 're"ports\u2028']) {
      const record = { ID: 'A', Name: 'Tr\u00e9s "quoted"', Total: 12.5, Nested: { list: [1, null, true] } };
      const changes = [{ objectId: 'A', updated: T('2026-11-22T07:00:00Z'), eventType: 'CREATED' as const, record }];
      const ctx = { instanceName: 'Inst "1"', elementKey: 'concur', objectType, maxEvents: 10, newId: () => 'N0' };
      const [draft] = assembleNotifications(pageCommit(changes, [], ctx), [0]);
      const events = [{ eventType: 'CREATED', objectId: 'A', objectType, elementKey: 'concur', date: '2026-11-22T07:00:00.000Z' }];
      expect(draft!.body).toBe(JSON.stringify({ message: { eventId: 'N0', instanceName: 'Inst "1"', elementKey: 'concur', events, raw: { objectType, [objectType]: [record] } } }));
    }
  });

  it('hold only the fresh changes of a page, which take the ids in order; a page short of ids fails', () => {
    const changes = ['A', 'B', 'C', 'D', 'E', 'F'].map((id) => ({ objectId: id, updated: T('2026-11-22T07:00:00Z'), eventType: 'CREATED' as const, record: { ID: id } }));
    let n = 0;
    const commit = pageCommit(changes, [], { instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 2, newId: () => `N${n++}` });
    expect(commit.notifications.ids).toEqual(['N0', 'N1', 'N2']);
    const drafts = assembleNotifications(commit, [1, 4, 5]);
    expect(drafts.map((d) => [d.id, (JSON.parse(d.body) as { message: { events: { objectId: string }[] } }).message.events.map((e) => e.objectId)])).toEqual([
      ['N0', ['B', 'E']], ['N1', ['F']],
    ]);
    expect(() => assembleNotifications({ ...commit, notifications: { ...commit.notifications, ids: ['N0'] } }, [0, 1, 2])).toThrow(/1 notification ids; 2 are needed/);
  });
});
