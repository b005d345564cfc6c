import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Deliverer, type DeliveryTarget } from '../src/deliver/deliverer.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import type { Store } from '../src/store/types.js';
import { captureLogger } from './helpers/harness.js';
import { enqueue as enqueueFor, openOutboxStore } from './helpers/outbox.js';
import { type Respond, startReceiver } from './helpers/receiver.js';
import { waitFor } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts every call made to `store`: a deliverer that spins shows as thousands of calls. */
function counting(store: Store): Store & { calls: number } {
  const counted = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        counted.calls++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Store & { calls: number };
  counted.calls = 0;
  return counted;
}

/**
 * The store the daemon uses (SQLite on its own thread) with `count` queued notifications of one
 * event each for the instance `Docs` (records `Docs-0`, `Docs-1`, …), a receiver, and a deliverer
 * whose targets (`targets`, by instance) the test may change.
 */
async function setup<S extends Store = Store>(count: number, respond: Respond, target: Partial<DeliveryTarget> = {}, wrap: (store: Store) => S = (s) => s as S) {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const receiver = await startReceiver(key, respond);
  cleanups.push(() => receiver.close());
  const store = await openOutboxStore();
  cleanups.push(() => store.close());
  const ids: string[] = [];
  const enqueue = async (n: number) => {
    ids.push(...await enqueueFor(store, 'Docs', n, ids.length));
    deliverer.wake();
  };
  const full: DeliveryTarget = {
    url: receiver.url, keys: { current: key, previous: [] }, timeoutMs: 2000, concurrency: 4, ordered: false,
    policy: { scheduleSec: [0.05, 0.05, 0.05], maxRetryAfterSec: 5, jitter: 0 },
    ...target,
  };
  const logs = captureLogger();
  const targets = new Map([['Docs', full]]);
  const wrapped = wrap(store);
  const deliverer = new Deliverer({ store: wrapped, http: createHttpClient({ timeoutMs: 5000 }), log: logs.log, targets: () => targets, idleCheckMs: 50 });
  cleanups.push(() => deliverer.stop(500));
  await enqueue(count);
  return { store, wrapped, receiver, deliverer, ids, logs, enqueue, key, targets, target: full };
}

describe('delivery', () => {
  it('pauses while the store cannot record attempts, rather than resending in a tight loop', async () => {
    let broken = true;
    // The real store, but recording fails as on a full disk until `broken` is cleared.
    const failingWrites = (store: Store): Store => Object.assign(Object.create(store) as Store, {
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
    const { store, deliverer, ids } = await setup(2, (_n, body) => (body.includes('"Docs-0"') ? 410 : 500));
    void deliverer.start();
    await waitFor('both dead', async () => (await store.notificationCounts()).dead === 2);
    expect(await store.getNotification(ids[0]!)).toMatchObject({ status: 'dead', attempts: 1, lastError: expect.stringMatching(/410 Gone/) });
    expect(await store.getNotification(ids[1]!)).toMatchObject({ status: 'dead', attempts: 4, lastError: expect.stringMatching(/no retries left after 4/) });
  });

  it('waits out a Retry-After on 429 and 503 that is longer than the schedule', async () => {
    const { store, receiver, deliverer, ids } = await setup(1, (n) => (n <= 2 ? { status: n === 1 ? 429 : 503, body: 'slow down', headers: { 'retry-after': '1' } } : 200), {
      policy: { scheduleSec: [0.05, 0.05], maxRetryAfterSec: 5, jitter: 0 },
    });
    void deliverer.start();
    await waitFor('delivered after two Retry-Afters', async () => (await store.getNotification(ids[0]!))!.status === 'delivered');
    expect(receiver.accepted).toHaveLength(1);
    const log = (await store.getNotification(ids[0]!))!.attemptLog;
    expect(log.map((a) => a.statusCode)).toEqual([429, 503, 200]);
    // Each retry was due no earlier than the second the receiver asked for, not after 50 ms.
    expect(log[1]!.startedAt - log[0]!.startedAt).toBeGreaterThanOrEqual(1000);
    expect(log[2]!.startedAt - log[1]!.startedAt).toBeGreaterThanOrEqual(1000);
  });

  it('a 503 with Retry-After: 0 does not burn the schedule', async () => {
    const { store, receiver, deliverer, ids } = await setup(1, () => ({ status: 503, body: 'maintenance', headers: { 'retry-after': '0' } }), {
      policy: { scheduleSec: [0.05, 0.05, 3600], maxRetryAfterSec: 5, jitter: 0 },
    });
    void deliverer.start();
    await waitFor('the third attempt', async () => (await store.getNotification(ids[0]!))!.attempts >= 3);
    const n = (await store.getNotification(ids[0]!))!;
    // The third retry waits the schedule's hour: "0" does not make it due at once.
    expect(n).toMatchObject({ status: 'pending', attempts: 3 });
    expect(n.nextAttemptAt - n.attemptLog[2]!.startedAt).toBeGreaterThanOrEqual(3_600_000);
    expect(receiver.seenIds).toHaveLength(3);
  });

  it('does not follow redirects: a 3xx is a failed attempt, and nothing reaches its Location', async () => {
    let location = '';
    const { store, deliverer, ids, key } = await setup(1, () => ({ status: 307, body: 'moved', headers: { location } }), {
      policy: { scheduleSec: [3600], maxRetryAfterSec: 5, jitter: 0 },
    });
    const elsewhere = await startReceiver(key);
    cleanups.push(() => elsewhere.close());
    location = elsewhere.url;
    void deliverer.start();
    await waitFor('one attempt', async () => (await store.getNotification(ids[0]!))!.attempts === 1);
    const n = (await store.getNotification(ids[0]!))!;
    expect(n).toMatchObject({ status: 'pending', lastStatus: 307 });
    expect(n.attemptLog[0]).toMatchObject({ statusCode: 307, error: 'HTTP 307', responseExcerpt: 'moved' });
    expect(elsewhere.requests).toBe(0);
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
    expect(new Set(receiver.accepted.map((r) => r.id)).size).toBe(12);
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

  it('in ordered mode beside an unordered instance, sends each notification once and a failing head waits its backoff', async () => {
    // The unordered instance makes the deliverer read the outbox twice in a step: the head read
    // first must not be acted on once its request has ended meanwhile.
    let headFailures = 0;
    const { store, receiver, deliverer, ids, targets, target } = await setup(10, (_n, body) => {
      if (body.includes('"Docs-0"') && headFailures < 1) {
        headFailures++;
        return 500;
      }
      return 200;
    }, { ordered: true, policy: { scheduleSec: [0.3, 0.3], maxRetryAfterSec: 5, jitter: 0 } });
    targets.set('Other', { ...target, ordered: false });
    const others = await enqueueFor(store, 'Other', 10);
    void deliverer.start();
    await waitFor('all twenty', async () => (await store.notificationCounts()).delivered === 20);
    await deliverer.stop(1000);
    expect(receiver.seenIds.filter((id) => ids.includes(id))).toEqual([ids[0], ...ids]);
    expect(receiver.seenIds.filter((id) => others.includes(id)).toSorted()).toEqual(others.toSorted());
    const head = (await store.getNotification(ids[0]!))!;
    expect(head.attemptLog.map((a) => [a.attempt, a.statusCode])).toEqual([[1, 500], [2, 200]]);
    expect(head.attemptLog[1]!.startedAt - head.attemptLog[0]!.startedAt).toBeGreaterThanOrEqual(300);
  });

  it('does not spin while the due notifications wait behind an ordered head that is backing off', async () => {
    const { wrapped, store, receiver, deliverer, ids } = await setup(5, (_n, body) => (body.includes('"Docs-0"') ? 500 : 200), {
      ordered: true, policy: { scheduleSec: [3600], maxRetryAfterSec: 5, jitter: 0 },
    }, counting);
    void deliverer.start();
    await waitFor('the head failed', async () => (await store.getNotification(ids[0]!))!.attempts === 1);
    const before = wrapped.calls;
    await sleep(500);
    // About two calls per idle check (every 50 ms); a loop that spins makes thousands.
    expect(wrapped.calls - before).toBeLessThan(60);
    expect(receiver.seenIds).toEqual([ids[0]]);
  });

  it('keeps the outbox of an instance that left the config, without spinning, and sends it when the instance is back', async () => {
    const { wrapped, store, receiver, deliverer, ids, targets, target } = await setup(1, () => 200, {}, counting);
    const gone = await enqueueFor(store, 'Gone', 3);
    void deliverer.start();
    await waitFor('the configured instance delivered', () => receiver.accepted.length === 1);
    const before = wrapped.calls;
    await sleep(500);
    expect(wrapped.calls - before).toBeLessThan(60);
    expect(receiver.seenIds).toEqual([ids[0]]);
    expect((await store.notificationCounts()).pending).toBe(3);
    targets.set('Gone', target);
    deliverer.wake();
    await waitFor('the returning instance delivered', () => receiver.accepted.length === 4);
    expect(receiver.accepted.slice(1).map((r) => r.id).toSorted()).toEqual(gone.toSorted());
  });

  it('survives a store error after a successful delivery (bringing the backlog forward fails)', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(async () => { process.off('unhandledRejection', onUnhandled); });
    const failingExpedite = (store: Store): Store => Object.assign(Object.create(store) as Store, {
      expediteRetries: () => Promise.reject(new Error('disk I/O error')),
    });
    const { store, receiver, deliverer, ids, logs, enqueue } = await setup(1, () => 200, {}, failingExpedite);
    void deliverer.start();
    await waitFor('the first delivered', async () => (await store.getNotification(ids[0]!))!.status === 'delivered');
    await enqueue(1);
    await waitFor('the second delivered: delivery goes on', async () => (await store.getNotification(ids[1]!))!.status === 'delivered');
    expect(receiver.accepted.map((r) => r.id)).toEqual(ids);
    expect(unhandled).toEqual([]);
    expect(logs.messages('could not bring forward the backlog of a receiver that answers again')[0]).toMatchObject({ instance: 'Docs', error: 'disk I/O error' });
  });

  it('in ordered mode, a dead-lettered head no longer holds back the ones behind it', async () => {
    const { store, receiver, deliverer, ids } = await setup(3, (_n, body) => (body.includes('"Docs-0"') ? 410 : 200), { ordered: true });
    void deliverer.start();
    await waitFor('the other two', () => receiver.accepted.length === 2);
    expect(receiver.seenIds).toEqual(ids);
    expect(await store.getNotification(ids[0]!)).toMatchObject({ status: 'dead', attempts: 1 });
  });

  it('in ordered mode, waits behind a failing notification and keeps order', async () => {
    let failHead = true;
    const { receiver, deliverer, ids } = await setup(5, (_n, body) => (failHead && body.includes('"Docs-0"') ? 500 : 200), {
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
    const store = await openOutboxStore();
    cleanups.push(() => store.close());
    for (const [instance, count] of [['Slow', 20], ['Fast', 3]] as const) await enqueueFor(store, instance, count);
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
