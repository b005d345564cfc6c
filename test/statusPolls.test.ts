import { describe, expect, it } from 'vitest';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { harness } from './helpers/harness.js';
import { waitFor } from './helpers/tmp.js';

describe('polls in progress', () => {
  it('a poll that failed while its next page was being read ahead (and retried) is not shown in progress afterwards, and no read outlives it', async () => {
    // One poll only, the next one an hour away: what /healthz shows after it is this poll's.
    const h = await harness({ 'pollbridge.poller.cron': '0 0 * * * *', 'pollbridge.poller.backfillFrom': new Date(Date.now() - 3_600_000).toISOString() });
    for (let i = 0; i < 6; i++) h.sim.createReport();
    // Every list answer is slow, so page 2 is being read ahead (and answers 503 twice) when the
    // poll learns that page 1's commit failed.
    h.sim.faults.listDelayMs = 300;
    let queued = false;
    h.sim.faults.beforePage = (index) => {
      if (index === 0 && !queued) h.sim.faults.listFailures.push({ status: 503 }, { status: 503 });
      queued = true;
    };
    const { daemon, logs } = h.daemon({
      openStore: async (path) => {
        const store = await ThreadedStore.open(path);
        const commitPage = store.commitPage.bind(store);
        let refused = false;
        // The database refusing one write (a full disk, say): the poll fails on page 1.
        store.commitPage = (...args: Parameters<typeof commitPage>) => {
          if (refused) return commitPage(...args);
          refused = true;
          return Promise.reject(new Error('database or disk is full'));
        };
        return store;
      },
    });
    await daemon.start();
    await waitFor('the failed poll', () => logs.messages('poll failed; the next poll goes on from its last committed part').length > 0);
    const requests = h.sim.requestCount;
    // Long enough for an abandoned read's retry (10 ms waits, 300 ms answers) to come and go.
    await new Promise((r) => setTimeout(r, 1000));
    expect(h.sim.requestCount).toBe(requests);
    expect(logs.messages('page request failed; retrying').length).toBeLessThanOrEqual(2);
    const health = await daemon.health();
    expect(health.polls).toEqual([]);
  }, 30_000);
});
