import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/callout/groupCommit.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { CALLOUT_RESOURCE } from '../src/store/types.js';
import type { CalloutReceipt } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { rng } from './helpers/rng.js';
import { type OpenStore, pgStores } from './helpers/stores.js';
import { tempDir } from './helpers/tmp.js';

// Review of the shared commit of the database thread and of pruneCallouts: the answers keep the
// order of the calls, a commit that cannot start leaves nothing of any call of its group, and
// pruning never takes a receipt that still has work to do.

function receipt(n: number, notificationUri?: string): CalloutReceipt {
  return {
    instance: 'A', source: notificationUri ? 'failed-queue' : 'push', notificationUri, receivedAt: 1000 + n, body: `<Notification>${n}</Notification>`,
    notification: { eventType: 'SUBMIT', objectType: 'EXPRPT', objectUri: `https://concur.example/report/R${n}`, eventDateTime: '2026-11-26', context: '' },
  };
}

const draft = (id: string) => ({ id, body: `{"id":"${id}"}`, eventCount: 1 });

const delivered = (notificationId: string) => [{
  attempt: { notificationId, attempt: 1, startedAt: 5000, durationMs: 3, statusCode: 200, error: undefined, responseExcerpt: undefined },
  outcome: { status: 'delivered' as const, at: 5003 },
}];

function rows(path: string): { callouts: number; events: number; notifications: unknown[]; attempts: number } {
  const db = new Database(path, { readonly: true });
  const count = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  const result = {
    callouts: count('callouts'), events: count('callout_events'), attempts: count('attempts'),
    notifications: db.prepare('SELECT id, status FROM notifications ORDER BY id').all(),
  };
  db.close();
  return result;
}

const settle = (call: Promise<unknown>) => call.then((ok) => ({ ok }), (err: Error & { code?: string }) => ({ failed: err.code ?? err.message }));

describe('the database thread: order and failure of the shared commit', () => {
  it('a read made between shared writes sees the ones before it and not the ones after', async () => {
    const store = await ThreadedStore.open(join(tempDir(), 'p.db'));
    const results = await Promise.all([
      store.recordCallouts([receipt(1)]),
      store.calloutsToIngest(['A'], 100, new Set()).then((r) => r.map((c) => c.id)),
      store.recordCallouts([receipt(2)]),
      store.recordCallouts([receipt(3)]),
      store.calloutsToIngest(['A'], 100, new Set()).then((r) => r.map((c) => c.id)),
    ]);
    expect(results).toEqual([[{ id: 1, duplicate: false }], [1], [{ id: 2, duplicate: false }], [{ id: 3, duplicate: false }], [1, 2, 3]]);
    await store.close();
  });

  it('close made while shared writes wait: they are answered first and last', async () => {
    const path = join(tempDir(), 'p.db');
    const store = await ThreadedStore.open(path);
    const stream = await store.openStream('A', CALLOUT_RESOURCE, 0);
    const [r1] = await store.recordCallouts([receipt(1)]);
    const answers = [
      settle(store.completeCallout(r1!.id, stream.id, 'k1', draft('N1'))),
      settle(store.recordCallouts([receipt(2), receipt(3)])),
    ];
    await store.close();
    expect(await Promise.all(answers)).toEqual([{ ok: { queued: true } }, { ok: [{ id: 2, duplicate: false }, { id: 3, duplicate: false }] }]);
    expect(rows(path)).toEqual({ callouts: 3, events: 1, attempts: 0, notifications: [{ id: 'N1', status: 'pending' }] });
  });

  it('a group whose BEGIN IMMEDIATE stays busy: every call of it fails and none of them is visible', async () => {
    const path = join(tempDir(), 'p.db');
    const store = await ThreadedStore.open(path);
    const stream = await store.openStream('A', CALLOUT_RESOURCE, 0);
    const [r1, r2] = await store.recordCallouts([receipt(1), receipt(2)]);
    expect(await store.completeCallout(r1!.id, stream.id, 'k1', draft('N1'))).toEqual({ queued: true });
    const other = new Database(path);
    other.prepare('BEGIN IMMEDIATE').run();
    // Past the thread's busy timeout (5 s): the lock is released only once every call answered.
    const answers = await Promise.all([
      settle(store.recordCallouts([receipt(3)])),
      settle(store.completeCallout(r2!.id, stream.id, 'k2', draft('N2'))),
      settle(store.recordAttempts(delivered('N1'))),
    ]);
    other.prepare('ROLLBACK').run();
    other.close();
    expect(answers).toEqual([{ failed: 'SQLITE_BUSY' }, { failed: 'SQLITE_BUSY' }, { failed: 'SQLITE_BUSY' }]);
    expect(rows(path)).toEqual({ callouts: 2, events: 1, attempts: 0, notifications: [{ id: 'N1', status: 'pending' }] });
    // The same calls again, once the lock is free: each takes effect once.
    expect(await Promise.all([
      settle(store.recordCallouts([receipt(3)])),
      settle(store.completeCallout(r2!.id, stream.id, 'k2', draft('N2'))),
      settle(store.recordAttempts(delivered('N1'))),
      settle(store.recordAttempts(delivered('N1'))),
    ])).toEqual([{ ok: [{ id: 3, duplicate: false }] }, { ok: { queued: true } }, { ok: undefined }, { ok: undefined }]);
    await store.close();
    expect(rows(path)).toEqual({ callouts: 3, events: 2, attempts: 1, notifications: [{ id: 'N1', status: 'delivered' }, { id: 'N2', status: 'pending' }] });
  }, 20_000);
});

describe('receipt groups, two in flight, through the database thread', () => {
  it('each add settles after its own commit, in the order of the adds, with ids in that order (seeded bursts)', async () => {
    for (let seed = 1; seed <= 8; seed++) {
      const random = rng(seed);
      const path = join(tempDir(), 'p.db');
      const store = await ThreadedStore.open(path);
      const commit = new GroupCommit<CalloutReceipt, { id: number; duplicate: boolean }>((r) => store.recordCallouts(r), 1 + Math.floor(random() * 8), 2);
      const settled: number[] = [];
      const adds: Promise<{ id: number; duplicate: boolean }>[] = [];
      for (let n = 0; n < 60; n++) {
        adds.push(commit.add(receipt(n)).then((r) => {
          settled.push(n);
          return r;
        }));
        if (random() < 0.3) await new Promise((r) => setImmediate(r));
      }
      const ids = (await Promise.all(adds)).map((r) => r.id);
      await store.close();
      expect(settled, `seed ${seed}`).toEqual(Array.from({ length: 60 }, (_, n) => n));
      expect(ids, `seed ${seed}`).toEqual(Array.from({ length: 60 }, (_, n) => n + 1));
      expect(rows(path).callouts, `seed ${seed}`).toBe(60);
    }
  });
});

describe('SqliteStore.inOneCommit', () => {
  it('a call that made SQLite undo the whole transaction: the calls after it do not commit alone, and the commit fails', async () => {
    const path = join(tempDir(), 'p.db');
    const store = new SqliteStore(path);
    const db = (store as unknown as { db: Database.Database }).db;
    const results: Promise<unknown>[] = [];
    // SQLITE_FULL, IOERR and NOMEM may roll back the whole transaction, not only the failing
    // statement (https://sqlite.org/lang_transaction.html, "Response To Errors Within A
    // Transaction"); a ROLLBACK between two calls leaves the connection in the same state.
    let thrown: unknown;
    try {
      store.inOneCommit(() => {
        results.push(store.recordCallouts([receipt(1)]));
        db.exec('ROLLBACK');
        results.push(store.recordCallouts([receipt(2)]));
        results.push(store.recordCallouts([receipt(3)]));
      });
    } catch (err) {
      thrown = err;
    }
    const answers = await Promise.all(results.map(settle));
    await store.close();
    // Told failed (the thread answers every call of the group with the commit's error): none may be there.
    expect(rows(path).callouts).toBe(0);
    expect((thrown as Error).message).toMatch(/rolled back/);
    expect(answers.slice(1)).toEqual([{ failed: expect.stringMatching(/rolled back/) as unknown }, { failed: expect.stringMatching(/rolled back/) as unknown }]);
  });
});

const stores: [string, OpenStore][] = [['SqliteStore', async (path) => new SqliteStore(path)], ...pgStores];

describe.each(stores)('pruneCallouts (%s)', (_name, open) => {
  it('keeps the keys a receipt still waiting for its event may repeat: a re-send received within the retention makes no second event', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const stream = await store.openStream('A', CALLOUT_RESOURCE, 0);
    const day = 86_400_000;
    const now = Date.now();
    const [first] = await store.recordCallouts([{ ...receipt(1), receivedAt: now }]);
    expect(await store.completeCallout(first!.id, stream.id, 'k1', draft('N1'))).toEqual({ queued: true });
    // Concur sent it again (our 200 was lost) a minute later; its instance then left the config
    // and came back after more than the retention (7 days): the prune runs before its ingestion.
    const [again] = await store.recordCallouts([{ ...receipt(1), receivedAt: now + 60_000 }]);
    expect(await store.pruneCallouts('A', stream.id, now + 8 * day, 7 * day)).toBe(1);
    expect(await store.completeCallout(again!.id, stream.id, 'k1', draft('N2'))).toEqual({ queued: false });
    // Once nothing waits, the key goes like any other: the same notification much later is new.
    expect(await store.pruneCallouts('A', stream.id, now + 16 * day, 7 * day)).toBe(1);
    const [late] = await store.recordCallouts([{ ...receipt(1), receivedAt: now + 16 * day }]);
    expect(await store.completeCallout(late!.id, stream.id, 'k1', draft('N3'))).toEqual({ queued: true });
    await store.close();
  });

  it('never takes a receipt being ingested, nor an undeleted failed-queue one; a re-listed one stays one receipt', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const stream = await store.openStream('A', CALLOUT_RESOURCE, 0);
    const [ingesting, listed] = (await store.recordCallouts([receipt(1), receipt(2, 'https://concur.example/n/2')])).map((r) => r.id);
    const inHand = await store.calloutsToIngest(['A'], 10, new Set());
    expect(inHand.map((r) => r.id)).toEqual([ingesting, listed]);
    await store.completeCallout(listed!, stream.id, 'k2', draft('N2'));
    // The ingester holds the first while the prune runs with every row older than its horizon.
    expect(await store.pruneCallouts('A', stream.id, Date.now() + 1000, 0)).toBe(0);
    expect(await store.completeCallout(ingesting!, stream.id, 'k1', draft('N1'))).toEqual({ queued: true });
    expect(await store.recordCallouts([receipt(2, 'https://concur.example/n/2')])).toEqual([{ id: listed, duplicate: true }]);
    expect(await store.pruneCallouts('A', stream.id, Date.now() + 1000, 0)).toBe(1);
    await store.markCalloutDeleted(listed!, Date.now());
    expect(await store.pruneCallouts('A', stream.id, Date.now() + 1000, 0)).toBe(1);
    expect(await store.calloutCounts()).toEqual([]);
    await store.close();
  });
});
