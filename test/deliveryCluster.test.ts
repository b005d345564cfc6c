import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { Deliverer, type DeliveryTarget } from '../src/deliver/deliverer.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { OutboxEntry, Store } from '../src/store/types.js';
import { captureLogger } from './helpers/harness.js';
import { enqueue } from './helpers/outbox.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { hash, rng } from './helpers/rng.js';
import { waitFor } from './helpers/tmp.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * One receiver for every callback path, counting what is in flight per notification id and per
 * path while it answers: a request that arrives for an id already in flight, or past a path's
 * concurrency, is a broken promise of the cluster. Answers fail now and then, as `fate` says.
 */
async function startReceiver(fate: (id: string, nth: number) => { status: number; delayMs: number }) {
  const inFlightById = new Map<string, number>();
  const inFlightByPath = new Map<string, number>();
  const maxByPath = new Map<string, number>();
  const twice: string[] = [];
  const arrivals: { id: string; path: string; instance: string }[] = [];
  const accepted: string[] = [];
  const tries = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void (async () => {
      const message = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message: { eventId: string; instanceName: string } }).message;
      const id = message.eventId;
      const path = req.url ?? '/';
      if ((inFlightById.get(id) ?? 0) > 0) twice.push(id);
      inFlightById.set(id, (inFlightById.get(id) ?? 0) + 1);
      const onPath = (inFlightByPath.get(path) ?? 0) + 1;
      inFlightByPath.set(path, onPath);
      maxByPath.set(path, Math.max(maxByPath.get(path) ?? 0, onPath));
      arrivals.push({ id, path, instance: message.instanceName });
      const nth = (tries.get(id) ?? 0) + 1;
      tries.set(id, nth);
      const { status, delayMs } = fate(id, nth);
      await sleep(delayMs);
      if (status === 200) accepted.push(id);
      // Out of flight before the answer leaves: the sender may start its next request the moment it has it.
      inFlightById.set(id, inFlightById.get(id)! - 1);
      inFlightByPath.set(path, inFlightByPath.get(path)! - 1);
      res.writeHead(status).end(status === 200 ? 'ok' : 'no');
    })());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cleanup.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { base, twice, arrivals, accepted, maxByPath };
}

type Replica = { store: Store; deliverer: Deliverer; attempts: OutboxEntry[]; logs: ReturnType<typeof captureLogger> };

async function replica(url: string, name: string, targets: ReadonlyMap<string, DeliveryTarget>, options: { claimMarginMs?: number; wrap?: (s: PgStore) => Store } = {}): Promise<Replica> {
  const opened = await PgStore.open(url, { replicaName: name });
  const store = options.wrap ? options.wrap(opened) : opened;
  const attempts: OutboxEntry[] = [];
  const logs = captureLogger();
  const deliverer = new Deliverer({
    store, http: createHttpClient({ timeoutMs: 5000 }), log: logs.log, targets: () => targets, idleCheckMs: 50, claimMarginMs: options.claimMarginMs,
    onAttempt: (entry) => attempts.push(entry),
  });
  cleanup.push(() => opened.close());
  cleanup.push(() => deliverer.stop(1000));
  return { store, deliverer, attempts, logs };
}

function target(url: string, concurrency: number, ordered: boolean, timeoutMs = 2000): DeliveryTarget {
  return {
    url, keys: { current: 'whsec_' + randomBytes(24).toString('base64'), previous: [] }, timeoutMs, concurrency, ordered,
    // Retries soon and many: every notification ends delivered.
    policy: { scheduleSec: Array.from({ length: 30 }, () => 0.05), maxRetryAfterSec: 1, jitter: 0 },
  };
}

describePg('two deliverers on one PostgreSQL outbox', () => {
  it('never send one notification twice at once, keep each callback URL\'s concurrency between them, and an ordered instance in order', { timeout: 180_000 }, async () => {
    for (const seed of [1, 2, 3]) {
      const url = await freshPgDatabase('deliver');
      const random = rng(seed);
      const receiver = await startReceiver((id, nth) => {
        const h = hash(`${seed}:${id}:${nth}`);
        return { status: h % 5 === 0 ? 500 : 200, delayMs: (h >>> 8) % 25 };
      });
      const shared = `${receiver.base}/shared`;
      const alone = `${receiver.base}/alone`;
      // Ledger has a URL of its own, where one request at a time shows its order; Journal, ordered
      // too, shares /shared with Bulk1 and Bulk2: its heads count against that URL's 3 as theirs do.
      const targets = new Map([
        ['Bulk1', target(shared, 3, false)], ['Bulk2', target(shared, 3, false)], ['Ledger', target(`${receiver.base}/ordered`, 3, true)], ['Bulk3', target(alone, 2, false)],
        ['Journal', target(shared, 3, true)],
      ]);
      const [a, b] = [await replica(url, 'r0', targets), await replica(url, 'r1', targets)];
      const queued = new Map<string, string[]>();
      const add = async (instance: string, n: number): Promise<void> => {
        const ids = await enqueue(a.store, instance, n, queued.get(instance)?.length ?? 0);
        queued.set(instance, [...(queued.get(instance) ?? []), ...ids]);
      };
      await add('Bulk1', 20);
      await add('Ledger', 5);
      await add('Journal', 5);
      void a.deliverer.start();
      void b.deliverer.start();
      // More arrives while both deliver, in seeded batches.
      for (let i = 0; i < 12; i++) {
        const instance = ['Bulk1', 'Bulk2', 'Bulk3', 'Ledger', 'Journal'][Math.floor(random() * 5)]!;
        await add(instance, 1 + Math.floor(random() * 8));
        a.deliverer.wake();
        b.deliverer.wake();
        await sleep(Math.floor(random() * 100));
      }
      const all = [...queued.values()].flat();
      const detail = `seed ${seed}`;
      await waitFor(`${detail}: every notification delivered`, async () => (await a.store.notificationCounts()).delivered === all.length, 60_000);

      expect(receiver.twice, `${detail}: in flight twice at once`).toEqual([]);
      expect(new Set(receiver.accepted), detail).toEqual(new Set(all));
      expect(receiver.maxByPath.get('/shared'), detail).toBeLessThanOrEqual(3);
      expect(receiver.maxByPath.get('/alone'), detail).toBeLessThanOrEqual(2);
      expect(receiver.maxByPath.get('/ordered'), detail).toBe(1);
      // Strictly in order: a Ledger notification is sent only once every one before it was accepted.
      const ledger = queued.get('Ledger')!;
      const acceptedSoFar = new Set<string>();
      let accIndex = 0;
      for (const arrival of receiver.arrivals.filter((r) => r.instance === 'Ledger')) {
        while (accIndex < receiver.accepted.length && receiver.accepted[accIndex] !== arrival.id) acceptedSoFar.add(receiver.accepted[accIndex++]!);
        const position = ledger.indexOf(arrival.id);
        expect(ledger.slice(0, position).filter((id) => !acceptedSoFar.has(id)), `${detail}: ${arrival.id} sent before those`).toEqual([]);
      }
      expect(receiver.accepted.filter((id) => ledger.includes(id)), detail).toEqual(ledger);
      // Both took part: one deliverer doing everything proves nothing about two.
      expect(a.attempts.length, detail).toBeGreaterThan(0);
      expect(b.attempts.length, detail).toBeGreaterThan(0);
      for (const c of cleanup.splice(0).reverse()) await c();
    }
  });

  it('a deliverer paused between claiming and sending does not start what its claim no longer covers: it goes out under a new claim', { timeout: 60_000 }, async () => {
    const url = await freshPgDatabase('deliver');
    const receiver = await startReceiver(() => ({ status: 200, delayMs: 5 }));
    const targets = new Map([['Docs', target(`${receiver.base}/hook`, 4, false, 1000)]]);
    let pausedDeadline: number | undefined;
    const paused: string[] = [];
    // A claim of 3 s (the 1 s timeout and a 2 s margin), and a request of at most 1 s: started
    // more than a second into the claim, it could outlive it.
    const a = await replica(url, 'r0', targets, {
      claimMarginMs: 2000,
      wrap: (store) => Object.assign(Object.create(store) as Store, {
        dueNotifications: async (...args: Parameters<Store['dueNotifications']>) => {
          const due = await store.dueNotifications(...args);
          if (pausedDeadline === undefined && due.length > 0) {
            // The process stops here (a GC pause, a frozen VM) with the claims in hand.
            pausedDeadline = due[0]!.claimDeadline;
            paused.push(...due.map((e) => e.id));
            await sleep(2200);
          }
          return due;
        },
      }),
    });
    const ids = await enqueue(a.store, 'Docs', 3);
    void a.deliverer.start();
    await waitFor('the pause', () => pausedDeadline !== undefined);
    const b = await replica(url, 'r1', targets, { claimMarginMs: 2000 });
    void b.deliverer.start();
    await waitFor('every notification delivered', async () => (await a.store.notificationCounts()).delivered === ids.length, 30_000);
    expect(pausedDeadline).toBeDefined();
    expect(paused.length).toBeGreaterThan(0);
    expect(a.attempts.filter((e) => e.claimDeadline === pausedDeadline), 'sent under the claim the pause outlasted').toEqual([]);
    expect(receiver.twice).toEqual([]);
    expect(new Set(receiver.accepted)).toEqual(new Set(ids));
  });

  it('a replica whose callback URL is full with another replica\'s requests waits, rather than asking the database again at once', { timeout: 30_000 }, async () => {
    const url = await freshPgDatabase('deliver');
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const receiver = await startReceiver(() => ({ status: 200, delayMs: 0 }));
    const targets = new Map([['Docs', target(`${receiver.base}/hook`, 1, false)]]);
    const a = await replica(url, 'r0', targets);
    let bReads = 0;
    const b = await replica(url, 'r1', targets, {
      wrap: (store) => Object.assign(Object.create(store) as Store, {
        dueNotifications: (...args: Parameters<Store['dueNotifications']>) => {
          bReads++;
          return store.dueNotifications(...args);
        },
      }),
    });
    const ids = await enqueue(a.store, 'Docs', 3);
    // a claims the first and holds the URL's one slot until its attempt is recorded, which waits on \`held\`.
    const recordAttempts = a.store.recordAttempts;
    Object.assign(a.store, { recordAttempts: async (...args: Parameters<Store['recordAttempts']>) => { await held; return recordAttempts(...args); } });
    void a.deliverer.start();
    await waitFor('a request of a', () => receiver.arrivals.length === 1);
    void b.deliverer.start();
    const from = bReads;
    const startedAt = Date.now();
    await waitFor('a second of b waiting', () => Date.now() - startedAt > 1000);
    // Every due notification waits behind a's slot: b has nothing to do but look now and then.
    expect(bReads - from).toBeLessThanOrEqual(15);
    expect(receiver.arrivals).toHaveLength(1);
    release();
    await waitFor('every notification delivered', async () => (await a.store.notificationCounts()).delivered === ids.length, 20_000);
  });
});
