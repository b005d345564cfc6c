import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { AttemptOutcome, OutboxEntry, Store } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { describePg, freshPgDatabase, skipPg } from './helpers/pg.js';
import { PgRows } from './helpers/pgRows.js';
import { rng } from './helpers/rng.js';
import { tempDir } from './helpers/tmp.js';

// The delivering side of the store, the same on SQLite and on PostgreSQL (one replica: its own
// claims never hide a row from it). Rows are queued with SQL, not commitPage: that is the
// polling side's, tested apart.

type Row = { id: string; instance: string; nextAttemptAt: number; attempts?: number; lastStatus?: number };
type RowState = { id: string; status: string; attempts: number; next_attempt_at: number; delivered_at: number | null; last_status: number | null; last_error: string | null };

type Place = {
  store: Store;
  queue(rows: readonly Row[]): Promise<void>;
  /** Every notification as stored, and every attempt, in a fixed order. */
  dump(): Promise<{ rows: RowState[]; attempts: unknown[] }>;
};
type Kit = { name: string; place(): Promise<Place> };

const closers: { close(): Promise<void> }[] = [];
afterAll(async () => { await Promise.all(closers.splice(0).map((c) => c.close())); });

const STATE = 'id, status, attempts, next_attempt_at, delivered_at, last_status, last_error';
const ATTEMPTS = 'SELECT notification_id, attempt, started_at, duration_ms, status_code, error, response_excerpt FROM attempts ORDER BY notification_id, attempt';

const sqliteKit: Kit = {
  name: 'SQLite',
  async place() {
    const path = join(tempDir(), 'p.db');
    const store = await ThreadedStore.open(path);
    const db = new Database(path);
    closers.push(store, { close: async () => { db.close(); } });
    return {
      store,
      async queue(rows) {
        for (const r of rows) {
          db.prepare(`INSERT INTO streams (instance, resource, cursor_us, origin_us) VALUES (?, 'reports', 0, 0) ON CONFLICT DO NOTHING`).run(r.instance);
          db.prepare(`INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at, attempts, last_status)
            VALUES (?, (SELECT id FROM streams WHERE instance = ?), ?, ?, 1, ?, 7, ?, ?)`)
            .run(r.id, r.instance, r.instance, `{"id":"${r.id}"}`, r.nextAttemptAt, r.attempts ?? 0, r.lastStatus ?? null);
        }
      },
      async dump() {
        return { rows: db.prepare(`SELECT ${STATE} FROM notifications ORDER BY seq`).all() as RowState[], attempts: db.prepare(ATTEMPTS).all() };
      },
    };
  },
};

const pgKit: Kit = {
  name: 'PostgreSQL',
  async place() {
    const url = await freshPgDatabase('outbox');
    const store = await PgStore.open(url);
    const db = new PgRows(url);
    closers.push(store, db);
    return {
      store,
      async queue(rows) {
        for (const r of rows) {
          const streamId = await db.stream(r.instance);
          await db.query(`INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at, attempts, last_status)
            VALUES ($1, $2, $3, $4, 1, $5, 7, $6, $7)`, [r.id, streamId, r.instance, `{"id":"${r.id}"}`, r.nextAttemptAt, r.attempts ?? 0, r.lastStatus ?? null]);
        }
      },
      async dump() {
        return { rows: await db.query<RowState>(`SELECT ${STATE} FROM notifications ORDER BY seq`), attempts: await db.query(ATTEMPTS) };
      },
    };
  },
};

const KITS = skipPg ? [sqliteKit] : [sqliteKit, pgKit];

/** What the deliverer is told, without the claim's deadline (the SQLite store has none). */
const plain = (entries: OutboxEntry[]) => entries.map(({ claimDeadline: _, ...rest }) => rest);
const ids = (entries: OutboxEntry[]) => entries.map((e) => e.id);

const attempt = (id: string, n: number, outcome: AttemptOutcome, statusCode: number | undefined = outcome.status === 'delivered' ? 200 : 500) => ({
  attempt: { notificationId: id, attempt: n, startedAt: 1000 + n, durationMs: 3, statusCode, error: outcome.status === 'delivered' ? undefined : `HTTP ${statusCode}`, responseExcerpt: 'x' },
  outcome,
});

describe.each(KITS)('the outbox of the $name store', (kit) => {
  it('dueNotifications: due ones of the instances asked, by due time then queue order, limited, the excluded skipped without shortening', async () => {
    const { store, queue } = await kit.place();
    await queue([
      { id: 'A1', instance: 'A', nextAttemptAt: 50 }, { id: 'B1', instance: 'B', nextAttemptAt: 10 }, { id: 'A2', instance: 'A', nextAttemptAt: 10 },
      { id: 'A3', instance: 'A', nextAttemptAt: 200 }, { id: 'C1', instance: 'C', nextAttemptAt: 0 }, { id: 'A4', instance: 'A', nextAttemptAt: 50 },
    ]);
    expect(ids(await store.dueNotifications(100, 10, new Set(), ['A', 'B']))).toEqual(['B1', 'A2', 'A1', 'A4']);
    expect(ids(await store.dueNotifications(100, 2, new Set(), ['A', 'B']))).toEqual(['B1', 'A2']);
    expect(ids(await store.dueNotifications(100, 2, new Set(['B1', 'A1', 'C1']), ['A', 'B']))).toEqual(['A2', 'A4']);
    expect(ids(await store.dueNotifications(10, 10, new Set(), ['A']))).toEqual(['A2']);
    expect(await store.dueNotifications(100, 10, new Set(), [])).toEqual([]);
    expect(await store.dueNotifications(100, 0, new Set(), ['A'])).toEqual([]);
    expect(plain(await store.dueNotifications(100, 1, new Set(), ['C']))).toEqual([
      { id: 'C1', seq: expect.any(Number), instance: 'C', streamId: expect.any(Number), body: '{"id":"C1"}', attempts: 0, replayBase: 0, createdAt: 7 },
    ]);
  });

  it('dueHeads: each instance\'s oldest pending one, only when due; nextDueAt counts only what could be sent', async () => {
    const { store, queue } = await kit.place();
    await queue([
      { id: 'A1', instance: 'A', nextAttemptAt: 500 }, { id: 'A2', instance: 'A', nextAttemptAt: 0 }, { id: 'B1', instance: 'B', nextAttemptAt: 20 },
      { id: 'B2', instance: 'B', nextAttemptAt: 0 }, { id: 'C1', instance: 'C', nextAttemptAt: 300 },
    ]);
    expect(ids(await store.dueHeads(100, ['A', 'B', 'C', 'Z']))).toEqual(['B1']);
    expect(ids(await store.dueHeads(1000, ['A', 'C']))).toEqual(['A1', 'C1']);
    expect(await store.dueHeads(1000, [])).toEqual([]);
    // A2 is due but waits behind A1; unordered, it is due now.
    expect(await store.nextDueAt([], ['A'])).toBe(500);
    expect(await store.nextDueAt(['A'], [])).toBe(0);
    expect(await store.nextDueAt(['C'], ['B'])).toBe(20);
    expect(await store.nextDueAt(['Z'], ['Y'])).toBeUndefined();
    expect(await store.nextDueAt([], [])).toBeUndefined();
    await store.recordAttempts([attempt('B1', 1, { status: 'delivered', at: 30 })]);
    expect(ids(await store.dueHeads(100, ['B']))).toEqual(['B2']);
    expect(await store.nextDueAt([], ['B'])).toBe(0);
  });

  it('recordAttempts: delivered, retried and dead, the attempt replaced when written again; instancesWithPending', async () => {
    const { store, queue, dump } = await kit.place();
    await queue([{ id: 'N1', instance: 'A', nextAttemptAt: 0 }, { id: 'N2', instance: 'A', nextAttemptAt: 0 }, { id: 'N3', instance: 'B', nextAttemptAt: 0 }]);
    expect((await store.instancesWithPending()).sort()).toEqual(['A', 'B']);
    await store.recordAttempts([]);
    await store.recordAttempts([
      attempt('N1', 1, { status: 'pending', nextAttemptAt: 900 }, 503), attempt('N2', 1, { status: 'delivered', at: 1500 }),
      attempt('N3', 1, { status: 'dead' }, 410),
    ]);
    expect(ids(await store.dueNotifications(800, 10, new Set(), ['A', 'B']))).toEqual([]);
    await store.recordAttempts([attempt('N1', 1, { status: 'pending', nextAttemptAt: 700 }, 502), attempt('N1', 2, { status: 'delivered', at: 2000 })]);
    expect(await store.instancesWithPending()).toEqual([]);
    expect(await dump()).toEqual({
      rows: [
        { id: 'N1', status: 'delivered', attempts: 2, next_attempt_at: 700, delivered_at: 2000, last_status: 200, last_error: null },
        { id: 'N2', status: 'delivered', attempts: 1, next_attempt_at: 0, delivered_at: 1500, last_status: 200, last_error: null },
        { id: 'N3', status: 'dead', attempts: 1, next_attempt_at: 0, delivered_at: null, last_status: 410, last_error: 'HTTP 410' },
      ],
      attempts: [
        { notification_id: 'N1', attempt: 1, started_at: 1001, duration_ms: 3, status_code: 502, error: 'HTTP 502', response_excerpt: 'x' },
        { notification_id: 'N1', attempt: 2, started_at: 1002, duration_ms: 3, status_code: 200, error: null, response_excerpt: 'x' },
        { notification_id: 'N2', attempt: 1, started_at: 1001, duration_ms: 3, status_code: 200, error: null, response_excerpt: 'x' },
        { notification_id: 'N3', attempt: 1, started_at: 1001, duration_ms: 3, status_code: 410, error: 'HTTP 410', response_excerpt: 'x' },
      ],
    });
  });

  it('expediteRetries: the instance\'s retries waiting on backoff are due now, except those answered 429', async () => {
    const { store, queue } = await kit.place();
    await queue([
      { id: 'W1', instance: 'A', nextAttemptAt: 5000, attempts: 2, lastStatus: 503 }, { id: 'W2', instance: 'A', nextAttemptAt: 5000, attempts: 1, lastStatus: 429 },
      { id: 'W3', instance: 'A', nextAttemptAt: 5000, attempts: 1 }, { id: 'F1', instance: 'A', nextAttemptAt: 5000 },
      { id: 'D1', instance: 'A', nextAttemptAt: 50, attempts: 1, lastStatus: 500 }, { id: 'B1', instance: 'B', nextAttemptAt: 5000, attempts: 1, lastStatus: 500 },
    ]);
    expect(await store.expediteRetries('A', 100)).toBe(2);
    expect(ids(await store.dueNotifications(100, 10, new Set(), ['A', 'B']))).toEqual(['D1', 'W1', 'W3']);
    expect(await store.expediteRetries('A', 100)).toBe(0);
    expect(await store.expediteRetries('Z', 100)).toBe(0);
  });
});

describePg('the outbox of the PostgreSQL store', () => {
  // The same calls on both stores from one seed: the SQLite store's answers are the spec.
  it('answers as the SQLite store does, call for call, over 25 seeds', async () => {
    for (let seed = 1; seed <= 25; seed++) {
      try {
        await differential(seed);
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`, { cause: err });
      }
    }
  }, 120_000);
});

async function differential(seed: number): Promise<void> {
  const random = rng(seed);
  const int = (n: number) => Math.floor(random() * n);
  const some = <T>(xs: readonly T[], p = 0.6) => xs.filter(() => random() < p);
  const places = [await sqliteKit.place(), await pgKit.place()];
  const instances = ['A', 'B', 'C', 'D'];
  const known: string[] = [];
  const attemptsOf = new Map<string, number>();
  for (let step = 0; step < 40; step++) {
    const now = int(300);
    const roll = random();
    let call: (store: Store) => Promise<unknown>;
    if (roll < 0.2 || known.length === 0) {
      const rows = Array.from({ length: 1 + int(4) }, () => {
        const id = `s${seed}-${known.length}`;
        known.push(id);
        return { id, instance: instances[int(4)]!, nextAttemptAt: int(300) };
      });
      for (const place of places) await place.queue(rows);
      continue;
    } else if (roll < 0.45) {
      const limit = int(6);
      const exclude = new Set(some(known, 0.2));
      const asked = some(instances);
      call = async (store) => plain(await store.dueNotifications(now, limit, exclude, asked));
    } else if (roll < 0.6) {
      const asked = some(instances);
      call = async (store) => plain(await store.dueHeads(now, asked)).sort((a, b) => a.seq - b.seq);
    } else if (roll < 0.7) {
      const [unordered, ordered] = [some(instances, 0.4), some(instances, 0.4)];
      call = (store) => store.nextDueAt(unordered, ordered);
    } else if (roll < 0.9) {
      const batch = some(known, 0.25).map((id) => {
        const n = (attemptsOf.get(id) ?? 0) + 1;
        attemptsOf.set(id, n);
        const r = random();
        if (r < 0.5) return attempt(id, n, { status: 'pending', nextAttemptAt: int(400) }, r < 0.15 ? 429 : 500);
        return attempt(id, n, r < 0.85 ? { status: 'delivered', at: 1000 + step } : { status: 'dead' });
      });
      call = (store) => store.recordAttempts(batch);
    } else if (roll < 0.95) {
      const instance = instances[int(4)]!;
      call = (store) => store.expediteRetries(instance, now);
    } else {
      call = async (store) => (await store.instancesWithPending()).sort();
    }
    const [expected, got] = [await call(places[0]!.store), await call(places[1]!.store)];
    expect(got, `step ${step}`).toEqual(expected);
  }
  const [expected, got] = [await places[0]!.dump(), await places[1]!.dump()];
  expect(got).toEqual(expected);
}
