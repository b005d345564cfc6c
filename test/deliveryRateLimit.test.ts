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

describe('a receiver that rate-limits some notifications and accepts others', () => {
  // A 429 is about the rate, not about being down: a success of another notification says nothing
  // about it. Bringing it forward would skip the receiver's Retry-After and, under steady traffic,
  // burn its retries at the pace of the other notifications' successes.
  it("keeps a 429's Retry-After when another notification is accepted", async () => {
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const receiver = await startReceiver(key, (_n, body) => (body.includes('"Docs-0"')
      ? { status: 429, body: 'slow down', headers: { 'retry-after': '3600' } }
      : 200));
    cleanups.push(() => receiver.close());
    const store = await openOutboxStore();
    cleanups.push(() => store.close());
    const target: DeliveryTarget = {
      url: receiver.url, keys: { current: key, previous: [] }, timeoutMs: 2000, concurrency: 1, ordered: false,
      policy: { scheduleSec: [0.05, 0.05, 0.05], maxRetryAfterSec: 7200, jitter: 0 },
    };
    const logs = captureLogger();
    const deliverer = new Deliverer({ store, http: createHttpClient({ timeoutMs: 5000 }), log: logs.log, targets: () => new Map([['Docs', target]]), idleCheckMs: 50 });
    cleanups.push(() => deliverer.stop(500));
    const [limited] = await enqueue(store, 'Docs', 1);
    void deliverer.start();
    await waitFor('the first attempt, answered 429', async () => (await store.getNotification(limited!))!.attempts === 1);
    const asked = (await store.getNotification(limited!))!.attemptLog[0]!.startedAt + 3600_000;
    const [accepted] = await enqueue(store, 'Docs', 1, 1);
    deliverer.wake();
    // Logged after the backlog was (or was not) brought forward.
    await waitFor('the other notification delivered', () => logs.messages('notification delivered').some((l) => l.eventId === accepted));
    const after = (await store.getNotification(limited!))!;
    expect(after.attempts).toBe(1);
    expect(after.nextAttemptAt).toBeGreaterThanOrEqual(asked);
  });
});
