import { readFileSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { SimReport } from '../src/sim/concurSim.js';
import { instantFromMs } from '../src/time/instant.js';
import { harness } from './helpers/harness.js';
import { waitFor } from './helpers/tmp.js';
import { asGenericApi, withResource } from './helpers/simConfig.js';

/**
 * The edges where a change used to be missed, each through the in-process daemon on the threaded
 * store (the daemon's own) against the simulator. Each announces what the old sweep skipped.
 */

const MIN = 60_000;

function streamRow(database: string) {
  const db = new Database(database, { readonly: true });
  try {
    return db.prepare('SELECT cursor_us AS cursor, recheck_us AS recheck, skew_ms AS skewMs, forgotten_us AS forgotten FROM streams').get() as
      { cursor: number; recheck: number | null; skewMs: number | null; forgotten: number | null };
  } finally {
    db.close();
  }
}

const versionsOf = (reports: SimReport[]) => reports.map((r) => `${r.ID}@${new Date(`${r.LastModifiedDate}Z`).toISOString()}`);

/** Seven old reports, two a page; `change` runs while list request number `at` is served. */
async function mutatedSweep(at: number, change: (h: Awaited<ReturnType<typeof harness>>, reports: SimReport[]) => void, resourceFields: Record<string, unknown> = {}) {
  const h = await harness({}, {}, (base) => withResource(base, { pageSize: 2, ...resourceFields }));
  const base = Date.now() - 10 * MIN;
  const reports = Array.from({ length: 7 }, (_, i) => h.sim.createReport({}, { modifiedMs: base + i * 1000 }));
  let done = false;
  h.sim.faults.beforePage = () => {
    if (!done && h.sim.listQueries.length === at) {
      done = true;
      change(h, reports);
    }
  };
  // Backfill from before the reports: the first window holds them all, and no later one does.
  const since = instantFromMs(base - MIN);
  await h.daemon({ since }).daemon.runOnce();
  h.sim.faults.beforePage = undefined;
  await h.daemon().daemon.runOnce();
  const announced = new Set(h.events().map((e) => `${e.objectId}@${e.date}`));
  return { h, reports, announced };
}

describe('offsets that shift under a sweep', () => {
  // The request at which the change lands decides which record an offset sweep skips: try each.
  for (const at of [2, 3, 4, 5]) {
    it(`announces every report when one changes, then two more, while request ${at} and later are served (updates)`, async () => {
      const { reports, announced } = await mutatedSweep(at, (h, r) => {
        h.sim.updateReport(r[0]!.ID);
        const later = h.sim.faults.beforePage;
        let next = false;
        h.sim.faults.beforePage = () => {
          later?.(0);
          if (!next && h.sim.listQueries.length === at + 2) {
            next = true;
            h.sim.updateReport(r[1]!.ID);
            h.sim.updateReport(r[2]!.ID);
          }
        };
      });
      for (const v of versionsOf(reports)) expect(announced, v).toContain(v);
    });

    it(`announces every report that stood when an unsubmitted one is deleted while request ${at} is served`, async () => {
      const { reports, announced } = await mutatedSweep(at, (h, r) => h.sim.deleteReport(r[1]!.ID));
      for (const v of versionsOf([reports[0]!, ...reports.slice(2)])) expect(announced, v).toContain(v);
    });

    it(`with filterByUpdatedDate false, an update of an older record while request ${at} is served skips nothing`, async () => {
      const { h, reports } = await mutatedSweep(at, (hh, r) => hh.sim.updateReport(r[0]!.ID), {
        filterByUpdatedDate: false,
        datesConfiguration: {
          updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
          createdDateField: 'CreateDate', createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
        },
      });
      // Keyed by the created date: one CREATED event per report, none missed, none twice.
      expect(h.events().map((e) => e.objectId).sort()).toEqual(reports.map((r) => r.ID).sort());
    });
  }
});

describe('progress under steady change, slow APIs and failures', () => {
  it('keeps what a failed poll committed: the next poll starts after the parts it finished', async () => {
    const h = await harness();
    const base = Date.now() - 20 * MIN;
    for (let i = 0; i < 30; i++) h.sim.createReport({}, { modifiedMs: base + i * 20_000 });
    // Part way through, the provider fails for longer than the poll's retries.
    h.sim.faults.beforePage = () => {
      if (h.sim.listQueries.length === 6) h.sim.faults.listFailures.push(...Array.from({ length: 4 }, () => ({ status: 500 })));
    };
    const first = h.daemon({ since: instantFromMs(base - MIN) });
    expect(await first.daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    const announcedBefore = h.events().length;
    expect(announcedBefore).toBeGreaterThan(0);
    const cursor = streamRow(first.config.database).cursor;
    expect(cursor).toBeGreaterThan(instantFromMs(base));

    h.sim.faults.beforePage = undefined;
    const asked = h.sim.listQueries.length;
    await h.daemon().daemon.runOnce();
    const resumedAfter = Date.parse(`${h.sim.listQueries[asked]!.get('modifiedDateAfter')}Z`);
    expect(instantFromMs(resumedAfter)).toBeGreaterThan(instantFromMs(base));
    expect(new Set(h.events().map((e) => e.objectId)).size).toBe(30);
    expect(h.events()).toHaveLength(30);
  });

  it('reads new changes without re-reading the overlap first: a poll after a busy minute costs a request or two', async () => {
    const h = await harness();
    // Thirty changes in the last minute (the overlap), announced by a first poll.
    const base = Date.now() - 50_000;
    for (let i = 0; i < 30; i++) h.sim.createReport({}, { modifiedMs: base + i * 1000 });
    await h.daemon({ since: instantFromMs(base - 5000) }).daemon.runOnce();
    expect(h.events()).toHaveLength(30);
    h.sim.createReport();
    const asked = h.sim.listQueries.length;
    await h.daemon().daemon.runOnce();
    expect(h.events()).toHaveLength(31);
    // Three a page: re-reading the overlap would take eleven requests.
    expect(h.sim.listQueries.length - asked).toBeLessThanOrEqual(3);
  });

  it('a backfill reads its window once: parts already older than the overlap need no recheck', async () => {
    const h = await harness();
    const base = Date.now() - 30 * MIN;
    for (let i = 0; i < 120; i++) h.sim.createReport({}, { modifiedMs: base + i * 10_000 });
    const first = h.daemon({ since: instantFromMs(base - MIN) });
    await first.daemon.runOnce();
    expect(h.events()).toHaveLength(120);
    // 40 pages of three: parts aim at 70 % of a page, and an overflowing answer costs one more.
    expect(h.sim.listQueries.length).toBeLessThanOrEqual(100);
    const row = streamRow(first.config.database);
    expect(row.recheck).toBeGreaterThanOrEqual(instantFromMs(base + 119 * 10_000));
    const asked = h.sim.listQueries.length;
    await h.daemon().daemon.runOnce();
    expect(h.sim.listQueries.length - asked).toBeLessThanOrEqual(2);
  });

  it('moves the cursor on every poll while records change on every request', async () => {
    const h = await harness();
    const base = Date.now() - 5 * MIN;
    for (let i = 0; i < 12; i++) h.sim.createReport({}, { modifiedMs: base + i * 1000 });
    h.sim.faults.beforePage = () => {
      h.sim.createReport();
      h.sim.randomChange();
    };
    const cursors: number[] = [];
    for (let i = 0; i < 3; i++) {
      // The cursor stops at the provider's clock, which its `Date` gives to the second.
      const second = Math.floor(h.sim.now() / 1000);
      await waitFor('the provider\'s next second', () => Math.floor(h.sim.now() / 1000) > second, 2000);
      const run = h.daemon({ since: instantFromMs(base - MIN) });
      await run.daemon.runOnce();
      expect(run.logs.messages('poll finished')[0]).toMatchObject({ settled: true });
      cursors.push(streamRow(run.config.database).cursor);
    }
    expect(cursors[1]).toBeGreaterThan(cursors[0]!);
    expect(cursors[2]).toBeGreaterThan(cursors[1]!);
  });
});

describe('clocks', () => {
  // Overlap 0 with the skew unknown once read an empty window, measured nothing and stayed ahead.
  it.each(['60', '0'])('a cursor left ahead by a local clock that was stepped back is pulled back to the provider\'s clock, and nothing is lost (overlap %s s)', async (overlap) => {
    const h = await harness({ 'pollbridge.poller.overlapSeconds': overlap });
    const first = h.daemon();
    await first.daemon.runOnce();
    // As if the last poll ran while our clock was five minutes ahead.
    const db = new Database(first.config.database);
    db.prepare('UPDATE streams SET cursor_us = ?, recheck_us = ?, skew_ms = NULL').run(instantFromMs(Date.now() + 5 * MIN), instantFromMs(Date.now() + 5 * MIN));
    db.close();
    const report = h.sim.createReport();
    for (let i = 0; i < 2; i++) await h.daemon().daemon.runOnce();
    expect(h.events().map((e) => e.objectId)).toEqual([report.ID]);
    expect(streamRow(first.config.database).cursor).toBeLessThan(instantFromMs(Date.now() + 5000));
  });

  it('remembers the measured skew across a restart: a provider 120 s behind, a change, a restart, the change announced', async () => {
    const h = await harness();
    h.sim.faults.clockOffsetMs = -120_000;
    const first = h.daemon();
    await first.daemon.runOnce();
    const skew = streamRow(first.config.database).skewMs!;
    expect(skew).toBeGreaterThan(-122_000);
    expect(skew).toBeLessThan(-118_000);
    const report = h.sim.createReport();
    const asked = h.sim.listQueries.length;
    await h.daemon().daemon.runOnce();
    expect(h.events().map((e) => e.objectId)).toEqual([report.ID]);
    // The restarted daemon's first window already ended at the provider's now, not at ours.
    const before = Date.parse(`${h.sim.listQueries[asked]!.get('modifiedDateBefore')}Z`);
    expect(before).toBeLessThan(h.sim.now() + 2000);
  });
});

describe('seen retention', () => {
  it('raising seenRetentionDays after a prune does not announce the forgotten records again', async () => {
    // No date filter: every record on every poll.
    const h = await harness({}, {}, (base) => asGenericApi(base, '/generic/v1/reports?per_page=50', { 'pollbridge.poller.seenRetentionDays': '1' }));
    h.sim.createReport({}, { modifiedMs: Date.now() - 2 * 86_400_000 });
    const first = h.daemon({ since: instantFromMs(Date.now() - 3 * 86_400_000) });
    await first.daemon.runOnce();
    expect(h.events()).toHaveLength(1);
    expect(first.logs.messages('forgot seen changes older than the retention')[0]).toMatchObject({ pruned: 1 });
    expect(streamRow(first.config.database).forgotten).not.toBeNull();

    // The operator raises the retention to a week: the two-day-old record is still history.
    const config = JSON.parse(readFileSync(h.configFile, 'utf8')) as { instances: { configuration: Record<string, unknown> }[] };
    config.instances[0]!.configuration['pollbridge.poller.seenRetentionDays'] = '7';
    writeFileSync(h.configFile, JSON.stringify(config));
    const again = h.daemon();
    await again.daemon.runOnce();
    expect(again.logs.messages('poll finished')[0]).toMatchObject({ fresh: 0, history: 1 });
    expect(h.events()).toHaveLength(1);
  });
});

describe('ties on one LastModifiedDate', () => {
  it('announces every report when ties come in a new order on every request, straddling page boundaries', async () => {
    // The order is random: several runs, each from scratch.
    for (let run = 0; run < 5; run++) {
      const h = await harness();
      const base = Date.now() - 5 * MIN;
      // Groups of 2 and 3 on one stamp each, three a page: offsets would cut through the groups.
      const reports = [2, 3, 2, 3, 2].flatMap((n, g) => Array.from({ length: n }, () => h.sim.createReport({}, { modifiedMs: base + g * 1000 })));
      h.sim.faults.shuffleTies = true;
      await h.daemon({ since: instantFromMs(base - MIN) }).daemon.runOnce();
      expect(h.events().map((e) => e.objectId).sort(), `run ${run}`).toEqual(reports.map((r) => r.ID).sort());
    }
  });
});
