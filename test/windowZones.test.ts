import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { ResourceConfig } from '../src/config/types.js';
import { firstPageUrl } from '../src/poll/requestUrl.js';
import { createDateParser } from '../src/time/dateParser.js';
import { compileDateWriter } from '../src/time/dateWriter.js';
import { type Instant, instantFromMs } from '../src/time/instant.js';
import { instance } from './helpers/configs.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const CONCUR_MS = "yyyy-MM-dd'T'HH:mm:ss.SSS";
const hub = (macro: string) => `/hubs/expense/reports?where=modifiedDateAfter='\${${macro}}'`;

/** The resource as the daemon compiles it from a config file, with the instance's zone set or not. */
function resource(url: string, timezone?: string, dates: Record<string, string> = {}): ResourceConfig {
  const file = writeJson(tempDir(), 'c.json', instance({
    ...(timezone ? { 'pollbridge.poller.timezone': timezone } : {}),
    'event.poller.configuration': { reports: { url, datesConfiguration: { updatedDateField: 'LastModifiedDate', ...dates } } },
  }));
  return loadConfig(file).instances[0]!.resources[0]!;
}

const at = (iso: string): Instant => instantFromMs(Date.parse(iso));

function window(r: ResourceConfig, start: string, end: string) {
  const q = new URL(firstPageUrl(r, 'concur', 'https://concur.example', at(start), at(end))).searchParams;
  return { after: q.get('modifiedDateAfter'), before: q.get('modifiedDateBefore') };
}

/**
 * Reads the window back as a provider in `zone` would (Java: a wall-clock time that occurs twice
 * is the earlier instant) and checks that it holds [start, end] and is not upside down.
 */
function expectReadBackHolds(w: { after: string | null; before: string | null }, zone: string, start: string, end: string) {
  const read = createDateParser(CONCUR_MS, zone);
  const after = read(w.after)!;
  const before = read(w.before)!;
  expect(after).toBeLessThanOrEqual(at(start));
  expect(before).toBeGreaterThanOrEqual(at(end));
  expect(after).toBeLessThanOrEqual(before);
}

describe('a window is written in the zone the provider reads it in, both ends alike', () => {
  it('writes modifiedDateBefore in the configured zone, like modifiedDateAfter (Asia/Tokyo)', () => {
    const r = resource(hub(`date:${CONCUR_MS}`), 'Asia/Tokyo');
    const w = window(r, '2026-11-23T12:39:31.753Z', '2026-11-23T12:40:31.776Z');
    expect(w).toEqual({ after: '2026-11-23T21:39:31.753', before: '2026-11-23T21:40:31.776' });
  });

  it("takes the zone of the where clause's date macro: dateTimeZone's own zone, whatever is configured", () => {
    const r = resource(hub(`dateTimeZone:America/New_York:${CONCUR_MS}`), 'Asia/Tokyo');
    const w = window(r, '2026-11-23T12:39:31.753Z', '2026-11-23T12:40:31.776Z');
    expect(w).toEqual({ after: '2026-11-23T07:39:31.753', before: '2026-11-23T07:40:31.776' });
  });

  it('gmtDate is GMT whatever zone is configured, and so is the window end', () => {
    const r = resource(hub(`gmtDate:${CONCUR_MS}`), 'Asia/Tokyo', { updatedDateTimezone: 'America/Los_Angeles' });
    const w = window(r, '2026-11-23T12:39:31.753Z', '2026-11-23T12:40:31.776Z');
    expect(w).toEqual({ after: '2026-11-23T12:39:31.753', before: '2026-11-23T12:40:31.776' });
  });

  it("writes the end in the macro's pattern, rounded up so that the provider reads it at or after the end", () => {
    const r = resource(hub("date:yyyy-MM-dd'T'HH:mm:ss"), '+05:30');
    const w = window(r, '2026-11-23T12:39:31.753Z', '2026-11-23T12:40:31.776Z');
    expect(w).toEqual({ after: '2026-11-23T18:09:31', before: '2026-11-23T18:10:32' });
    const day = window(resource(hub('date:yyyy-MM-dd'), 'Asia/Tokyo'), '2026-11-23T12:39:31.753Z', '2026-11-23T16:40:31.776Z');
    expect(day).toEqual({ after: '2026-11-23', before: '2026-11-25' });
  });

  it('without a date macro in the URL, writes the end in the zone of the resource dates', () => {
    const r = resource("/hubs/expense/reports?where=modifiedDateAfter='2026-01-01'", undefined, { updatedDateTimezone: 'Asia/Tokyo' });
    expect(window(r, '2026-11-23T12:39:31.753Z', '2026-11-23T12:40:31.776Z').before).toBe('2026-11-23T21:40:31.776');
  });
});

describe('windows across a DST change', () => {
  const la = resource(hub(`date:${CONCUR_MS}`), 'America/Los_Angeles');
  const lordHowe = resource(hub(`date:${CONCUR_MS}`), 'Australia/Lord_Howe');

  it('America/Los_Angeles, spring: 01:59 PST to 03:01 PDT', () => {
    const [start, end] = ['2026-03-08T09:59:00Z', '2026-03-08T10:01:00Z'];
    const w = window(la, start, end);
    expect(w).toEqual({ after: '2026-03-08T01:59:00.000', before: '2026-03-08T03:01:00.000' });
    expectReadBackHolds(w, 'America/Los_Angeles', start, end);
  });

  it('America/Los_Angeles, autumn: across the whole repeated hour, 01:15 PDT to 02:15 PST', () => {
    const [start, end] = ['2026-11-01T08:15:00Z', '2026-11-01T10:15:00Z'];
    const w = window(la, start, end);
    expect(w).toEqual({ after: '2026-11-01T01:15:00.000', before: '2026-11-01T02:15:00.000' });
    expectReadBackHolds(w, 'America/Los_Angeles', start, end);
  });

  it('America/Los_Angeles, autumn: 01:45 PDT to 01:15 PST, in the repeated hour, is written to end past the repeat', () => {
    // "01:15" alone would be read as 01:15 PDT, before the start: a window upside down that
    // returns nothing, "succeeds" and moves the cursor past what it never read.
    const [start, end] = ['2026-11-01T08:45:00Z', '2026-11-01T09:15:00Z'];
    const w = window(la, start, end);
    expect(w).toEqual({ after: '2026-11-01T01:45:00.000', before: '2026-11-01T02:15:00.000' });
    expectReadBackHolds(w, 'America/Los_Angeles', start, end);
  });

  it('America/Los_Angeles, autumn: a window inside the second 01:xx starts an hour early, which only reads more', () => {
    const [start, end] = ['2026-11-01T09:20:00Z', '2026-11-01T09:40:00Z'];
    const w = window(la, start, end);
    expect(w).toEqual({ after: '2026-11-01T01:20:00.000', before: '2026-11-01T02:40:00.000' });
    expectReadBackHolds(w, 'America/Los_Angeles', start, end);
  });

  it('Australia/Lord_Howe, spring (+10:30 to +11): 01:50 to 02:40', () => {
    const [start, end] = ['2026-10-03T15:20:00Z', '2026-10-03T15:40:00Z'];
    const w = window(lordHowe, start, end);
    expect(w).toEqual({ after: '2026-10-04T01:50:00.000', before: '2026-10-04T02:40:00.000' });
    expectReadBackHolds(w, 'Australia/Lord_Howe', start, end);
  });

  it('Australia/Lord_Howe, autumn (+11 to +10:30): 01:40 to 01:40 again, half an hour later', () => {
    const [start, end] = ['2026-04-04T14:40:00Z', '2026-04-04T15:10:00Z'];
    const w = window(lordHowe, start, end);
    expect(w).toEqual({ after: '2026-04-05T01:40:00.000', before: '2026-04-05T02:10:00.000' });
    expectReadBackHolds(w, 'Australia/Lord_Howe', start, end);
  });
});

describe('writing one date so that it reads back on the right side of an instant', () => {
  const end = at('2026-11-23T12:40:31.776Z');

  it('rounds the start down and the end up to what the pattern can show', () => {
    const minutes = compileDateWriter("yyyy-MM-dd'T'HH:mm", 'Europe/Paris');
    expect(minutes.atOrBefore(end)).toBe('2026-11-23T13:40');
    expect(minutes.atOrAfter(end)).toBe('2026-11-23T13:41');
    expect(minutes.atOrAfter(at('2026-11-23T12:40:00.000Z'))).toBe('2026-11-23T13:40');
    expect(compileDateWriter(CONCUR_MS, 'UTC').atOrAfter(end + 1)).toBe('2026-11-23T12:40:31.777');
  });

  it('writes as it is what cannot be read back: a zone name, or no year', () => {
    expect(compileDateWriter("yyyy-MM-dd HH:mm z", 'America/Los_Angeles').atOrAfter(end)).toBe('2026-11-23 04:40 PST');
    expect(compileDateWriter('HH:mm', 'UTC').atOrAfter(end)).toBe('12:40');
  });
});
