import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { CONNECTOR, NOTIFY_PATH, withCallout } from './helpers/callout.js';
import { harness } from './helpers/harness.js';
import { waitFor } from './helpers/tmp.js';

describe("Concur's callout, in-process on the threaded store", () => {
  it('turns each pushed notification into one signed event with the report, beside the polled ones', async () => {
    const h = await harness({}, {}, (c) => withCallout(c));
    const { daemon } = h.daemon();
    await daemon.start();
    h.sim.setCallout({ url: `${daemon.calloutUrl}${NOTIFY_PATH}`, ...CONNECTOR, retryDelaysMs: [50, 50, 50] });
    const reports = [h.sim.createReport({ ApprovalStatusCode: 'A_PEND' }), h.sim.createReport({ ApprovalStatusCode: 'A_PEND' })];
    await h.sim.calloutsSettled();
    expect(h.sim.callouts.delivered()).toHaveLength(2);
    const pushed = await waitFor('two pushed events', () => {
      const found = h.receiver.accepted.filter((r) => (r.raw as { notification?: unknown }).notification);
      return found.length >= 2 ? found : undefined;
    });
    expect(pushed.map((r) => r.events[0]!.objectId).sort()).toEqual(reports.map((r) => r.ID).sort());
    for (const r of pushed) {
      expect(r.events).toHaveLength(1);
      expect(r.events[0]).toMatchObject({ eventType: 'UPDATED', objectType: 'reports' });
      const raw = r.raw as { objectType: string; reports: { ReportDetails: { ReportID: string } }[]; notification: { EventType: string; source: string } };
      expect(raw.objectType).toBe('reports');
      expect(raw.reports[0]!.ReportDetails.ReportID).toBe(r.events[0]!.objectId);
      expect(raw.notification).toMatchObject({ EventType: 'Report Entered Expense Report Workflow Step - SUBMIT', source: 'push' });
    }
    // Polling announces the same reports on its own stream.
    await waitFor('both reports polled too', () => reports.every((rep) => h.receiver.accepted.some((r) => !(r.raw as { notification?: unknown }).notification && r.events.some((e) => e.objectId === rep.ID))) || undefined);
    expect(h.receiver.failures).toEqual([]);
  });

  it("still turns receipts answered 200 into events after the instance's callout was turned off", async () => {
    const h = await harness();
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    mkdirSync(join(h.dir, 'state'), { recursive: true });
    const store = await ThreadedStore.open(join(h.dir, 'state/pollbridge.db'));
    const objectUri = `${h.simUrl}/api/expense/expensereport/v1.1/report/${report.ID}`;
    await store.recordCallouts([{
      instance: 'ConcurTest', source: 'push', body: '<Notification/>', notificationUri: undefined, receivedAt: Date.now(),
      notification: { eventType: 'Report Entered Expense Report Workflow Step - SUBMIT', objectType: 'EXPRPT', objectUri, eventDateTime: '2026-11-26', context: '' },
    }]);
    await store.close();
    const { daemon } = h.daemon();
    await daemon.start();
    const pushed = await waitFor('the waiting receipt delivered as an event', () => h.receiver.accepted.find((r) => (r.raw as { notification?: unknown }).notification));
    expect(pushed.events[0]!.objectId).toBe(report.ID);
    expect(daemon.calloutUrl).toBeUndefined();
  });
});
