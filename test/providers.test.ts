import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { concurDate, STATIC_TOKEN, BASIC_CREDENTIALS } from '../src/sim/concurSim.js';
import { harness } from './helpers/harness.js';
import { asGenericApi } from './helpers/simConfig.js';
import { waitFor } from './helpers/tmp.js';

const ago = (ms: number) => new Date(Date.now() - ms).toISOString();

async function streamState(database: string) {
  const store = new SqliteStore(database, { readonly: true });
  try {
    return (await store.streams())[0]!;
  } finally {
    await store.close();
  }
}

describe('Concur auth', () => {
  it('caches the access token across polls and refreshes once on a 401', async () => {
    const h = await harness();
    const { daemon } = h.daemon({ since: undefined });
    await daemon.start();
    await waitFor('two polls', async () => (await streamState(daemon.config.database)).lastPollOk && h.sim.listQueries.length >= 2);
    expect(h.sim.tokenRequestCount).toBe(1);
    h.sim.revokeAccessTokens();
    h.sim.createReport();
    await waitFor('the report after the 401', () => h.events().length === 1);
    expect(h.sim.tokenRequestCount).toBe(2);
  });

  it('stores when to stop using the token (expires_in as a string, less a tenth of it), and refreshes past it', async () => {
    const h = await harness({}, { tokenLifetimeSec: 61 });
    const first = h.daemon();
    await first.daemon.runOnce();
    expect(h.sim.tokenRequestCount).toBe(1);
    const store = new SqliteStore(first.config.database);
    const saved = await store.loadAuthState('ConcurTest');
    // 61 s less a tenth of it (6.1 s) as the safety margin: stored as good for at most 54.9 s more.
    expect(saved!.accessExpiresAt! - Date.now()).toBeLessThanOrEqual(54_900);
    expect(saved!.accessExpiresAt! - Date.now()).toBeGreaterThan(44_900);
    await store.saveAuthState('ConcurTest', { ...saved!, accessExpiresAt: Date.now() - 1 });
    await store.close();
    const second = h.daemon();
    await second.daemon.runOnce();
    // Refreshed with the rotated refresh token: the configured one was spent by the first.
    expect(h.sim.tokenRequestCount).toBe(2);
    expect(second.logs.messages('poll finished')).toHaveLength(1);
  });

  it('a refused refresh fails the poll with one clear error, marks the stream failing, and recovers by itself', async () => {
    const h = await harness();
    h.sim.faults.tokenError = { status: 400, error: 'invalid_grant' };
    const failing = h.daemon();
    expect(await failing.daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    const errors = failing.logs.lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error).toMatch(/token refresh refused by http:\/\/127\.0\.0\.1:\d+\/oauth2\/v0\/token: HTTP 400, invalid_grant/);
    expect(h.sim.tokenRequestCount).toBe(1);
    expect(await streamState(failing.config.database)).toMatchObject({ lastPollOk: false, lastPollError: expect.stringMatching(/invalid_grant/) });

    h.sim.faults.tokenError = undefined;
    h.sim.createReport();
    const healed = h.daemon({ since: Date.now() * 1000 - 60_000_000 });
    expect(await healed.daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.events()).toHaveLength(1);
    expect(await streamState(healed.config.database)).toMatchObject({ lastPollOk: true });
  });

  it('a new process polls with the stored access token while it is valid, without a refresh', async () => {
    const h = await harness();
    await h.daemon().daemon.runOnce();
    await h.daemon().daemon.runOnce();
    expect(h.sim.tokenRequestCount).toBe(1);
    expect(h.sim.listQueries).toHaveLength(2);
  });

  it('a stored access token that is refused is replaced with the stored, rotated refresh token', async () => {
    const h = await harness();
    await h.daemon().daemon.runOnce();
    h.sim.revokeAccessTokens();
    h.sim.createReport();
    const second = h.daemon({ since: Date.now() * 1000 - 60_000_000 });
    expect(await second.daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    // The configured refresh token was spent by the first refresh: only the rotated one works.
    expect(h.sim.tokenRequestCount).toBe(2);
    expect(h.events()).toHaveLength(1);
    const third = h.daemon();
    expect(await third.daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.sim.tokenRequestCount).toBe(2);
  });
});

describe('rate limits and faults', () => {
  it.each([
    ['429 with Retry-After', { status: 429, retryAfter: '1' }],
    ['503 with Retry-After', { status: 503, retryAfter: '1' }],
    ['500', { status: 500 }],
    ['a dropped connection', { status: 0, reset: true }],
  ])('retries %s within the poll and delivers', async (_name, failure) => {
    const h = await harness();
    h.sim.createReport();
    h.sim.faults.listFailures.push(failure);
    const { daemon } = h.daemon({ since: Date.now() * 1000 - 60_000_000 });
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.events()).toHaveLength(1);
    expect(h.sim.listQueries.length).toBeGreaterThanOrEqual(2);
  });

  it('a poll that still fails leaves the cursor where it was, and the next poll reads the window again', async () => {
    const h = await harness();
    const first = h.daemon();
    await first.daemon.runOnce();
    const before = await streamState(first.config.database);
    h.sim.createReport();
    h.sim.faults.listFailures.push(...Array.from({ length: 4 }, () => ({ status: 500 })));
    const failing = h.daemon();
    expect(await failing.daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    const after = await streamState(failing.config.database);
    expect(after.cursor).toBe(before.cursor);
    expect(after.lastPollError).toMatch(/answered 500/);
    expect(h.events()).toHaveLength(0);
    await h.daemon().daemon.runOnce();
    expect(h.events()).toHaveLength(1);
  });
});

describe('paging', () => {
  it('asks Concur for at most 100 per page, within a closed window', async () => {
    const h = await harness({ 'event.poller.configuration': { reports: { url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss}'", pageSize: 100 } } });
    await h.daemon().daemon.runOnce();
    const q = h.sim.listQueries[0]!;
    expect(q.get('limit')).toBe('100');
    expect(q.get('user')).toBe('ALL');
    expect(q.get('modifiedDateAfter')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
    // Both ends as the where clause writes them: the end rounded up to the next second.
    expect(q.get('modifiedDateBefore')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
    expect(q.get('modifiedDateBefore')! >= q.get('modifiedDateAfter')!).toBe(true);
  });

  it('stops with an error on a NextPage that repeats, or a chain that never ends', async () => {
    const h = await harness();
    h.sim.createReport();
    h.sim.faults.repeatNextPage = true;
    const looping = h.daemon();
    expect(await looping.daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    expect(looping.logs.lines.find((l) => l.level === 'error')!.error).toMatch(/was already read: the provider is looping/);
    h.sim.faults.repeatNextPage = false;
    h.sim.faults.endlessPages = true;
    const endless = h.daemon({ maxPages: 20 });
    expect(await endless.daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    expect(endless.logs.lines.find((l) => l.level === 'error')!.error).toMatch(/more than 20 pages/);
  });

  it('loses nothing when records change during a sweep and offsets shift', async () => {
    const h = await harness();
    const since = Date.now() * 1000 - 60_000_000;
    const base = Date.now() - 10_000;
    const reports = Array.from({ length: 12 }, (_, i) => h.sim.createReport({}, { modifiedMs: base + i }));
    // While the second request is served, the first report changes: it leaves the closed window
    // and every later report moves up one place, so a second page by offset would skip one.
    let changed = false;
    h.sim.faults.beforePage = () => {
      if (h.sim.listQueries.length === 2 && !changed) {
        changed = true;
        h.sim.updateReport(reports[0]!.ID);
      }
    };
    const { daemon, logs } = h.daemon({ since });
    await daemon.runOnce();
    const ids = new Set(h.events().map((e) => e.objectId));
    expect(reports.every((r) => ids.has(r.ID))).toBe(true);
    // Twelve records, three a page: the window is cut into parts that each fit one request.
    expect(logs.messages('poll finished')[0]!.requests).toBeGreaterThanOrEqual(4);
    // The update itself is outside this window; the next poll announces it, once.
    await h.daemon().daemon.runOnce();
    const keys = h.events().map((e) => `${e.objectId}@${e.date}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(h.events()).toHaveLength(13);
  });

  it('loses nothing when many records share one LastModifiedDate across page boundaries', async () => {
    const h = await harness();
    const ms = Date.now() - 10_000;
    const reports = Array.from({ length: 8 }, () => h.sim.createReport({}, { modifiedMs: ms }));
    await h.daemon({ since: (ms - 1000) * 1000 }).daemon.runOnce();
    expect(h.events().map((e) => e.objectId).sort()).toEqual(reports.map((r) => r.ID).sort());
    expect(new Set(h.events().map((e) => e.date))).toEqual(new Set([new Date(ms).toISOString()]));
  });
});

describe('clock skew', () => {
  it('measures a provider clock 30 s behind from the Date header, warns, and reads windows in its time so no change is missed', async () => {
    const h = await harness({ 'pollbridge.poller.overlapSeconds': '5' });
    h.sim.faults.clockOffsetMs = -30_000;
    const { daemon, logs } = h.daemon();
    await daemon.start();
    await waitFor('a first poll', () => logs.messages('poll finished').length >= 1);
    // Stamped 30 s in our past: before cursor − 5 s, so only the widened overlap reaches it.
    const report = h.sim.createReport();
    await waitFor('the report', () => h.events().length === 1);
    expect(h.events()[0]!.objectId).toBe(report.ID);
    expect(logs.messages('provider clock is far from ours; windows are read in its time')).toHaveLength(1);
    const skew = logs.messages('poll finished').at(-1)!.skewMs as number;
    expect(skew).toBeGreaterThan(-32_000);
    expect(skew).toBeLessThan(-28_000);
  });
});

describe('resource options', () => {
  it('honours pollDelay and the overlap in modifiedDateAfter, and pageSize as limit', async () => {
    const h = await harness({
      'pollbridge.poller.overlapSeconds': '10',
      'event.poller.configuration': { reports: { url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'", pageSize: 7, pollDelay: 20 } },
    });
    const since = Date.parse('2026-01-01T00:00:00Z');
    await h.daemon({ since: since * 1000 }).daemon.runOnce();
    // One millisecond before the window: whether Concur's "after" includes its instant is unknown.
    expect(h.sim.listQueries[0]!.get('modifiedDateAfter')).toBe('2025-12-31T23:59:29.999');
    expect(h.sim.listQueries[0]!.get('limit')).toBe('7');
  });

  it('createdCheckTolerance turns a quick first edit into CREATED', async () => {
    const h = await harness({
      'event.poller.configuration': {
        reports: {
          url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'",
          createdCheckTolerance: '5',
          datesConfiguration: { updatedDateField: 'LastModifiedDate', createdDateField: 'CreateDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS", createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS" },
        },
      },
    });
    const t0 = Date.now() - 30_000;
    const quick = h.sim.createReport({}, { modifiedMs: t0 });
    h.sim.updateReport(quick.ID, { modifiedMs: t0 + 2000 });
    const slow = h.sim.createReport({}, { modifiedMs: t0 });
    h.sim.updateReport(slow.ID, { modifiedMs: t0 + 9000 });
    await h.daemon({ since: (Date.now() - 60_000) * 1000, }).daemon.runOnce();
    const types = Object.fromEntries(h.events().map((e) => [e.objectId, e.eventType]));
    expect(types).toEqual({ [quick.ID]: 'CREATED', [slow.ID]: 'UPDATED' });
  });
});

describe('generic REST element and several instances', () => {
  it('polls any list endpoint with items/nextPage paths, each instance to its own callback with its own key', async () => {
    const h = await harness({}, {}, (base) => {
      const concur = base.instances[0]!;
      const generic = {
        ...concur,
        name: 'GenericTickets',
        element: { key: 'tickets-api' },
        provider: { baseUrl: concur.provider.baseUrl, auth: { type: 'bearer', token: STATIC_TOKEN } },
        configuration: {
          ...concur.configuration,
          'event.poller.configuration': {
            reports: {
              url: '/generic/v1/reports?updated_since=${date:yyyy-MM-dd\'T\'HH:mm:ss.SSSXXX}&per_page=2',
              idField: 'id',
              'pollbridge.items': 'data.items',
              'pollbridge.nextPage': 'links.next',
              datesConfiguration: { updatedDateField: 'updated_at', createdDateField: 'created_at' },
            },
          },
        },
      };
      const basic = {
        ...generic,
        name: 'GenericBasic',
        provider: { baseUrl: concur.provider.baseUrl, auth: { type: 'basic', ...BASIC_CREDENTIALS } },
      };
      return { ...base, instances: [concur, generic, basic] };
    });
    const reports = Array.from({ length: 5 }, () => h.sim.createReport());
    const { daemon } = h.daemon({ since: (Date.now() - 60_000) * 1000 });
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    const byInstance = new Map<string, string[]>();
    for (const r of h.receiver.accepted) {
      const name = (JSON.parse(r.body) as { message: { instanceName: string } }).message.instanceName;
      byInstance.set(name, [...(byInstance.get(name) ?? []), ...r.events.map((e) => e.objectId)]);
    }
    for (const name of ['ConcurTest', 'GenericTickets', 'GenericBasic']) {
      expect(byInstance.get(name)?.sort()).toEqual(reports.map((r) => r.ID).sort());
    }
    expect(h.sim.listQueries.filter((q) => q.has('per_page')).length).toBeGreaterThanOrEqual(6);
  });
});

describe('bad upstream data', () => {
  it.each([
    ['an HTML error page', { status: 200, contentType: 'text/html', body: '<html><body>Service Unavailable</body></html>' }, /answered 200 with invalid JSON \(text\/html\): <html><body>Service Unavailable/],
    ['truncated JSON', { status: 200, body: '{"Items": [' }, /invalid JSON/],
    ['a body without Items', { status: 200, body: '{"items": []}' }, /page 1 from .* has no array at "Items"/],
    ['a 403 for a revoked token', { status: 403, body: '{"Message":"Forbidden"}' }, /answered 403: {"Message":"Forbidden"}/],
  ])('%s fails the poll with a clear error and does not move the cursor', async (_name, failure, message) => {
    const h = await harness();
    const first = h.daemon();
    await first.daemon.runOnce();
    const before = await streamState(first.config.database);
    h.sim.faults.listFailures.push(failure);
    const bad = h.daemon();
    expect(await bad.daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    expect(bad.logs.lines.find((l) => l.level === 'error')).toMatchObject({ instance: 'ConcurTest', resource: 'reports', error: expect.stringMatching(message) });
    expect((await streamState(bad.config.database)).cursor).toBe(before.cursor);
  });

  it('a record without an id or with a bad date is logged with its position and kept; the others are delivered', async () => {
    const h = await harness();
    h.sim.faults.rawItems = [
      { Name: 'no id', LastModifiedDate: concurDate(Date.now()) },
      { ID: 'BADDATE', LastModifiedDate: '31/12/2026' },
    ];
    const good = h.sim.createReport();
    const { daemon, logs } = h.daemon({ since: (Date.now() - 60_000) * 1000 });
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.events().map((e) => e.objectId)).toEqual([good.ID]);
    expect(logs.messages('record rejected').map((l) => [l.instance, l.resource, l.position, l.reason])).toEqual([
      ['ConcurTest', 'reports', 'page 1 item 0', 'no usable id at "ID"'],
      ['ConcurTest', 'reports', 'page 1 item 1', 'unreadable LastModifiedDate "31/12/2026"'],
    ]);
    expect(logs.messages('poll finished')[0]).toMatchObject({ rejected: 2, fresh: 1 });
    const store = new SqliteStore(daemon.config.database, { readonly: true });
    expect((await store.streams())[0]!.rejected).toBe(2);
    await store.close();
  });
});

describe('first run', () => {
  it('does not backfill by default; backfillFrom and --since do, with a progress line once a backfill is long (then every few seconds, not every page)', async () => {
    const h = await harness({ 'event.poller.configuration': { reports: { url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'", pageSize: 2 } } });
    const old = Date.now() - 3_600_000;
    for (let i = 0; i < 30; i++) h.sim.createReport({}, { modifiedMs: old + i });
    await h.daemon().daemon.runOnce();
    expect(h.events()).toHaveLength(0);

    const h2 = await harness({
      'pollbridge.poller.backfillFrom': ago(7_200_000),
      'event.poller.configuration': { reports: { url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'", pageSize: 2 } },
    });
    for (let i = 0; i < 30; i++) h2.sim.createReport({}, { modifiedMs: old + i });
    const { daemon, logs } = h2.daemon();
    await daemon.runOnce();
    expect(h2.events()).toHaveLength(30);
    expect(logs.messages('poll progress').map((l) => l.page)).toEqual([11]);
  });
});

describe('seen retention', () => {
  it('forgets seen changes older than the retention and never announces such old records again', async () => {
    // No date filter at all: the API returns every record on every poll.
    const h = await harness({}, {}, (base) => asGenericApi(base, '/generic/v1/reports?per_page=50', { 'pollbridge.poller.seenRetentionDays': '1' }));
    const old = h.sim.createReport({}, { modifiedMs: Date.now() - 2 * 86_400_000 });
    const recent = h.sim.createReport({}, { modifiedMs: Date.now() - 60_000 });
    const first = h.daemon({ since: (Date.now() - 3 * 86_400_000) * 1000 });
    await first.daemon.runOnce();
    expect(h.events().map((e) => e.objectId).sort()).toEqual([old.ID, recent.ID].sort());
    // After the poll the cursor is now: the two-day-old change falls behind the one-day retention.
    expect(first.logs.messages('forgot seen changes older than the retention')[0]).toMatchObject({ pruned: 1 });
    for (let i = 0; i < 2; i++) {
      const again = h.daemon();
      await again.daemon.runOnce();
      expect(again.logs.messages('poll finished')[0]).toMatchObject({ fresh: 0, history: 1, duplicates: 1 });
    }
    expect(h.events()).toHaveLength(2);
  });
});
