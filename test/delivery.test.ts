import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ulid } from 'ulid';
import { afterEach, describe, expect, it } from 'vitest';
import { Deliverer, type DeliveryTarget } from '../src/deliver/deliverer.js';
import { pageCommit } from '../src/deliver/notification.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import type { Store } from '../src/store/types.js';
import { captureLogger } from './helpers/harness.js';
import { type Respond, startReceiver } from './helpers/receiver.js';
import { tempDir, waitFor } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A real store with `count` queued notifications of one event each, a receiver, and a deliverer. */
async function setup(count: number, respond: Respond, target: Partial<DeliveryTarget> = {}, wrap: (store: SqliteStore) => Store = (s) => s) {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const receiver = await startReceiver(key, respond);
  cleanups.push(() => receiver.close());
  const store = new SqliteStore(join(tempDir(), 'p.db'));
  cleanups.push(() => store.close());
  const stream = await store.openStream('Docs', 'reports', 0);
  const ids: string[] = [];
  const enqueue = async (n: number) => {
    const start = ids.length;
    const changes = Array.from({ length: n }, (_, i) => ({ objectId: `R${start + i}`, updated: 1000 + start + i, eventType: 'UPDATED' as const, record: { ID: `R${start + i}` } }));
    const result = await store.commitPage(stream.id, pageCommit(changes, [], {
      instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 1, newId: ulid,
    }));
    ids.push(...result.notificationIds);
    deliverer.wake();
  };
  const full: DeliveryTarget = {
    url: receiver.url, keys: { current: key, previous: [] }, timeoutMs: 2000, concurrency: 4, ordered: false,
    policy: { scheduleSec: [0.05, 0.05, 0.05], maxRetryAfterSec: 5, jitter: 0 },
    ...target,
  };
  const logs = captureLogger();
  const deliverer = new Deliverer({ store: wrap(store), http: createHttpClient({ timeoutMs: 5000 }), log: logs.log, targets: () => new Map([['Docs', full]]), idleCheckMs: 50 });
  cleanups.push(() => deliverer.stop(500));
  await enqueue(count);
  return { store, receiver, deliverer, ids, logs, enqueue, key };
}

describe('delivery', () => {
  it('pauses while the store cannot record attempts, rather than resending in a tight loop', async () => {
    let broken = true;
    // The real store, but recording fails as on a full disk until `broken` is cleared.
    const failingWrites = (store: SqliteStore): Store => Object.assign(Object.create(store) as Store, {
      recordAttempts: (batch: Parameters<Store['recordAttempts']>[0]) => (broken ? Promise.reject(new Error('database or disk is full')) : store.recordAttempts(batch)),
    });
    const { store, receiver, deliverer, ids, logs } = await setup(1, () => 200, {}, failingWrites);
    void deliverer.start();
    await waitFor('the notification sent again after the pause', () => receiver.seenIds.length >= 2);
    broken = false;
    await waitFor('delivery recorded', async () => (await store.getNotification(ids[0]!))!.status === 'delivered');
    // A tight loop sends it hundreds of times in the pause it skips.
    expect(receiver.seenIds.length).toBeLessThanOrEqual(3);
    expect(new Set(receiver.seenIds)).toEqual(new Set([ids[0]]));
    expect(logs.lines.find((l) => l.message === 'could not record a delivery attempt; it will be sent again')).toMatchObject({ error: 'database or disk is full' });
  });

  it('retries with the same id and the same bytes until a 2xx, and records every attempt', async () => {
    const { store, receiver, deliverer, ids } = await setup(1, (n) => (n <= 2 ? { status: 500, body: 'x'.repeat(5000) } : 200));
    void deliverer.start();
    await waitFor('delivery recorded', async () => (await store.getNotification(ids[0]!))!.status === 'delivered');
    expect(receiver.seenIds).toEqual([ids[0], ids[0], ids[0]]);
    const n = await store.getNotification(ids[0]!);
    expect(n).toMatchObject({ status: 'delivered', attempts: 3 });
    expect(n!.attemptLog.map((a) => [a.attempt, a.statusCode, a.error])).toEqual([[1, 500, 'HTTP 500'], [2, 500, 'HTTP 500'], [3, 200, undefined]]);
    expect(n!.attemptLog[0]!.responseExcerpt).toHaveLength(2048);
    expect(receiver.accepted[0]!.body).toBe(n!.body);
  });

  it('dead-letters at once on 410 Gone, and after the last retry otherwise; dead letters are kept', async () => {
    const { store, deliverer, ids } = await setup(2, (_n, body) => (body.includes('"R0"') ? 410 : 500));
    void deliverer.start();
    await waitFor('both dead', async () => (await store.notificationCounts()).dead === 2);
    expect(await store.getNotification(ids[0]!)).toMatchObject({ status: 'dead', attempts: 1, lastError: expect.stringMatching(/410 Gone/) });
    expect(await store.getNotification(ids[1]!)).toMatchObject({ status: 'dead', attempts: 4, lastError: expect.stringMatching(/no retries left after 4/) });
  });

  it('honours Retry-After on 429 and 503 over the schedule', async () => {
    const { store, receiver, deliverer, ids } = await setup(2, (n) => (n <= 2 ? { status: n === 1 ? 429 : 503, body: 'slow down', headers: { 'retry-after': '1' } } : 200), {
      policy: { scheduleSec: [3600], maxRetryAfterSec: 5, jitter: 0 },
    });
    void deliverer.start();
    await waitFor('both delivered after Retry-After, not after an hour', async () => (await store.notificationCounts()).delivered === 2);
    expect(receiver.accepted).toHaveLength(2);
    const attempts = await Promise.all(ids.map(async (id) => (await store.getNotification(id))!.attemptLog.map((a) => a.statusCode)));
    expect(attempts.flat().sort()).toEqual([200, 200, 429, 503]);
  });

  it('retries timeouts and refused connections', async () => {
    const { store, deliverer, ids } = await setup(1, () => 'hang', { timeoutMs: 200 });
    void deliverer.start();
    await waitFor('two timed-out attempts', async () => (await store.getNotification(ids[0]!))!.attempts >= 2);
    expect((await store.getNotification(ids[0]!))!.attemptLog[0]!.error).toMatch(/timed out/);

    const refused = await setup(1, () => 200, { url: 'http://127.0.0.1:9/unreachable' });
    void refused.deliverer.start();
    await waitFor('a refused attempt', async () => (await refused.store.getNotification(refused.ids[0]!))!.attempts >= 1);
    const n = await refused.store.getNotification(refused.ids[0]!);
    expect(n!.attemptLog[0]!.error).toMatch(/ECONNREFUSED/);
    expect(n!.status).not.toBe('delivered');
  });

  it('keeps at most `concurrency` requests in flight to one callback URL', async () => {
    const { receiver, deliverer } = await setup(12, async () => {
      await sleep(100);
      return 200;
    });
    void deliverer.start();
    await waitFor('all delivered', () => receiver.accepted.length === 12);
    expect(receiver.maxInFlight).toBe(4);
  });

  it('sends the whole backlog, in order, as soon as a receiver that was down answers again', async () => {
    let down = true;
    const { store, receiver, deliverer, enqueue, ids } = await setup(10, () => (down ? 503 : 200), {
      concurrency: 1,
      policy: { scheduleSec: [0.05, 600, 600], maxRetryAfterSec: 5, jitter: 0 },
    });
    void deliverer.start();
    await waitFor('every notification waiting on a long backoff', async () => {
      const waiting = await store.listNotifications({ status: 'pending', limit: 100 });
      return waiting.length === 10 && waiting.every((n) => n.attempts === 2);
    });
    down = false;
    await enqueue(1);
    await waitFor('the backlog', () => receiver.accepted.length === 11);
    expect(receiver.accepted.map((r) => r.id)).toEqual([ids[10], ...ids.slice(0, 10)]);
  });

  it('in ordered mode, waits behind a failing notification and keeps order', async () => {
    let failHead = true;
    const { receiver, deliverer, ids } = await setup(5, (_n, body) => (failHead && body.includes('"R0"') ? 500 : 200), {
      ordered: true,
      policy: { scheduleSec: [0.1, 0.1, 0.1, 0.1, 0.1, 0.1], maxRetryAfterSec: 5, jitter: 0 },
    });
    void deliverer.start();
    await waitFor('two failures of the head', () => receiver.seenIds.length >= 2);
    expect(new Set(receiver.seenIds)).toEqual(new Set([ids[0]]));
    failHead = false;
    await waitFor('all five', () => receiver.accepted.length === 5);
    expect(receiver.accepted.map((r) => r.id)).toEqual(ids);
  });

  it('on stop, lets a delivery in flight finish within the grace period', async () => {
    const { store, deliverer, ids, receiver } = await setup(1, async () => {
      await sleep(300);
      return 200;
    });
    void deliverer.start();
    await waitFor('the request in flight', () => receiver.seenIds.length === 1);
    await deliverer.stop(5000);
    expect(await store.getNotification(ids[0]!)).toMatchObject({ status: 'delivered', attempts: 1 });
  });

  it('on stop, aborts a hung delivery after the grace period without charging it an attempt', async () => {
    const { store, deliverer, ids, receiver, logs } = await setup(1, () => 'hang');
    void deliverer.start();
    await waitFor('the request in flight', () => receiver.seenIds.length === 1);
    await deliverer.stop(200);
    expect(await store.getNotification(ids[0]!)).toMatchObject({ status: 'pending', attempts: 0 });
    expect(logs.messages('aborting deliveries still in flight after the grace period')).toHaveLength(1);
  });

  it("a hung receiver's backlog never holds back another instance's notifications", async () => {
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const hung = await startReceiver(key, () => 'hang');
    const fine = await startReceiver(key, () => 200);
    cleanups.push(() => hung.close(), () => fine.close());
    const store = new SqliteStore(join(tempDir(), 'p.db'));
    cleanups.push(() => store.close());
    for (const [instance, count] of [['Slow', 20], ['Fast', 3]] as const) {
      const stream = await store.openStream(instance, 'reports', 0);
      const changes = Array.from({ length: count }, (_, i) => ({ objectId: `${instance}${i}`, updated: 1000 + i, eventType: 'UPDATED' as const, record: {} }));
      await store.commitPage(stream.id, pageCommit(changes, [], {
        instanceName: instance, elementKey: 'concur', objectType: 'reports', maxEvents: 1, newId: ulid,
      }));
    }
    const target = (url: string): DeliveryTarget => ({
      url, keys: { current: key, previous: [] }, timeoutMs: 60_000, concurrency: 4, ordered: false,
      policy: { scheduleSec: [1], maxRetryAfterSec: 5, jitter: 0 },
    });
    const deliverer = new Deliverer({
      store, http: createHttpClient({ timeoutMs: 60_000 }), log: captureLogger().log, idleCheckMs: 50,
      targets: () => new Map([['Slow', target(hung.url)], ['Fast', target(fine.url)]]),
    });
    cleanups.push(() => deliverer.stop(100));
    void deliverer.start();
    await waitFor('the fast instance delivered', () => fine.accepted.length === 3);
    expect(hung.seenIds).toHaveLength(4);
  });
});
