import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Deliverer, type DeliveryTarget } from '../src/deliver/deliverer.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { captureLogger } from './helpers/harness.js';
import { enqueue, openOutboxStore } from './helpers/outbox.js';
import { startReceiver } from './helpers/receiver.js';
import { waitFor } from './helpers/tmp.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('an ordered instance sharing its receiver with a busy unordered one', () => {
  it('is not starved by the unordered backlog', async () => {
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const receiver = await startReceiver(key, async () => { await sleep(5); return 200; });
    cleanups.push(() => receiver.close());
    const store = await openOutboxStore();
    cleanups.push(() => store.close());
    const target = (ordered: boolean): DeliveryTarget => ({
      url: receiver.url, keys: { current: key, previous: [] }, timeoutMs: 5000, concurrency: 4, ordered,
      policy: { scheduleSec: [1], maxRetryAfterSec: 5, jitter: 0 },
    });
    const targets = new Map([['Bulk', target(false)], ['Ledger', target(true)]]);
    const deliverer = new Deliverer({ store, http: createHttpClient({ timeoutMs: 5000 }), log: captureLogger().log, targets: () => targets, idleCheckMs: 50 });
    cleanups.push(() => deliverer.stop(500));
    const bulk = await enqueue(store, 'Bulk', 60);
    void deliverer.start();
    await waitFor('the bulk instance sending, 4 at a time', () => receiver.maxInFlight === 4);
    const [ledger] = await enqueue(store, 'Ledger', 1);
    deliverer.wake();
    await waitFor('everything delivered', async () => (await store.notificationCounts()).delivered === bulk.length + 1, 20_000);
    const sentBefore = receiver.seenIds.indexOf(ledger!);
    const pendingWhenQueued = bulk.length - receiver.seenIds.slice(0, sentBefore).length;
    // Sent within the next few free slots, not after the whole bulk backlog.
    expect(pendingWhenQueued, `ledger sent after ${sentBefore} of ${bulk.length} bulk requests`).toBeGreaterThan(20);
  }, 30_000);

  it('in a run that ends when idle, a failing ordered head gives the receiver up and the run ends, without spinning', async () => {
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const receiver = await startReceiver(key, (_n, body) => (body.includes('"Ledger-0"') ? 500 : 200));
    cleanups.push(() => receiver.close());
    const store = await openOutboxStore();
    cleanups.push(() => store.close());
    let calls = 0;
    const counted = new Proxy(store, {
      get(target, property, receiverArg) {
        const value = Reflect.get(target, property, receiverArg) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => { calls++; return (value as (...a: unknown[]) => unknown).apply(target, args); };
      },
    });
    const target = (ordered: boolean): DeliveryTarget => ({
      url: receiver.url, keys: { current: key, previous: [] }, timeoutMs: 5000, concurrency: 2, ordered,
      policy: { scheduleSec: [0.01, 0.01], maxRetryAfterSec: 5, jitter: 0 },
    });
    const targets = new Map([['Ledger', target(true)], ['Bulk', target(false)]]);
    await enqueue(store, 'Ledger', 3);
    await enqueue(store, 'Bulk', 3);
    const deliverer = new Deliverer({ store: counted, http: createHttpClient({ timeoutMs: 5000 }), log: captureLogger().log, targets: () => targets, idleCheckMs: 50 });
    cleanups.push(() => deliverer.stop(500));
    await deliverer.start({ untilIdle: true });
    // Ledger-0 failed once; the ones behind it were never sent; nothing was sent to the given-up receiver after.
    const pending = await store.listNotifications({ status: 'pending', limit: 10 });
    expect(pending.filter((n) => n.instance === 'Ledger').map((n) => n.attempts).toSorted()).toEqual([0, 0, 1]);
    expect(receiver.failures).toEqual([]);
    expect(receiver.seenIds.length).toBeLessThanOrEqual(6);
    expect(calls).toBeLessThan(60);
  });
});
